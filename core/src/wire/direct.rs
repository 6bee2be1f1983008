//! bincode's bytes, written and read by hand for the frequent messages and the hello.
//!
//! Id lists (`IHave`, `IWant`, `Graft`) and chats (`Chat`, `Reply`) are nearly all the frames, and
//! bincode's serde path goes through every id, key and signature one byte at a time, at several
//! times the cost of everything else in a frame. `encode_direct` and `decode_direct` write and read the very bytes bincode
//! does (checked by the tests), fields in declaration order: variant numbers, integers and lengths
//! as varints, `u8`s and fixed arrays as raw bytes. Sync rounds, pings and the field-less messages
//! go the same way: after the chats and id lists they were most of what still took the bincode
//! path. Only the common forms are handled here (lengths below 2^16, everything written the
//! shortest way); anything else, malformed input included, takes the bincode path and gets its
//! exact result and error.

use core::net::SocketAddr;
use std::sync::Arc;

use super::codec::DECODE_LIMIT_BYTES;
use super::Message;
use crate::chat::{Body, Chat, ChatId};
use crate::identity::{PublicKey, Signature};
use crate::rooms::RoomId;
use crate::sync::{Summary, SyncRange};

/// bincode's variant numbers: places in `Message`, in `Body` and in `Summary`.
const CHAT: u8 = 0;
const REPLY: u8 = 1;
pub(super) const IHAVE: u8 = 2;
const IWANT: u8 = 3;
const PRUNE: u8 = 4;
const GRAFT: u8 = 5;
const SYNC: u8 = 6;
const PING: u8 = 7;
const PONG: u8 = 8;
const PEER_REQUEST: u8 = 9;
const PEER_RESPONSE: u8 = 10;
const ANNOUNCE: u8 = 11;
const TEXT: u8 = 0;
const JOIN: u8 = 1;
const LEAVE: u8 = 2;
const SEALED: u8 = 3;
const FINGERPRINT: u8 = 0;
const IDS: u8 = 1;
const V4: u8 = 0;
const V6: u8 = 1;
/// bincode's varint: below this, the value itself in one byte.
const VARINT_MAX_BYTE: u8 = 250;
/// bincode's varint: this byte, then the value as a little-endian `u16`; the next three bytes
/// likewise announce a `u32`, a `u64` and a `u128`.
pub(super) const VARINT_U16: u8 = 251;
const VARINT_U32: u8 = 252;
const VARINT_U64: u8 = 253;
const VARINT_U128: u8 = 254;
/// Largest sync or address list read here. bincode refuses a message whose fields claim more than
/// `DECODE_LIMIT_BYTES`, and it claims more than they take on the wire (16 bytes for a varint
/// `u128` however short: 56 for a fingerprinted range of 35 bytes or more, 10 for an IPv4 address
/// of 6); below this size no such frame can reach the limit, so reading it here cannot accept
/// what bincode would refuse.
const DIRECT_LIST_MAX_BYTES: usize = DECODE_LIMIT_BYTES / 4;

/// Writes `msg` if it is an id list or a chat whose lengths are all below 2^16; false (nothing
/// written) otherwise.
pub(super) fn encode_direct(msg: &Message, out: &mut Vec<u8>) -> bool {
    let short = |n: usize| n <= usize::from(u16::MAX);
    match msg {
        Message::IHave { ids } | Message::IWant { ids } | Message::Graft { ids } if short(ids.len()) => {
            out.push(match msg {
                Message::IHave { .. } => IHAVE,
                Message::IWant { .. } => IWANT,
                _ => GRAFT,
            });
            put_len(out, ids.len());
            for id in ids {
                out.extend_from_slice(&id.0);
            }
        }
        Message::Chat { chat, .. } | Message::Reply { chat, .. }
            if short(chat.username.len())
                && !matches!(&chat.body, Body::Text(t) if !short(t.len()))
                && !matches!(&chat.body, Body::Sealed(s) if !short(s.len()))
                && !matches!(&chat.body, Body::Op(_)) =>
        {
            match msg {
                Message::Chat { ttl, hops, .. } => out.extend_from_slice(&[CHAT, *ttl, *hops]),
                Message::Reply { hops, .. } => out.extend_from_slice(&[REPLY, *hops]),
                _ => unreachable!("matched above"),
            }
            out.extend_from_slice(&chat.id.0);
            out.extend_from_slice(&chat.room.0);
            out.extend_from_slice(&chat.author.0);
            put_len(out, chat.username.len());
            out.extend_from_slice(chat.username.as_bytes());
            match &chat.body {
                Body::Text(t) => {
                    out.push(TEXT);
                    put_len(out, t.len());
                    out.extend_from_slice(t.as_bytes());
                }
                Body::Join => out.push(JOIN),
                Body::Leave => out.push(LEAVE),
                Body::Sealed(b) => {
                    out.push(SEALED);
                    put_len(out, b.len());
                    out.extend_from_slice(b);
                }
                Body::Op(_) => unreachable!("operations take the bincode path"),
            }
            out.extend_from_slice(&chat.signature.0);
        }
        Message::Sync { ranges }
            if short(ranges.len())
                && ranges.iter().all(|r| !matches!(&r.summary, Summary::Ids(ids) if !short(ids.len()))) =>
        {
            out.push(SYNC);
            put_len(out, ranges.len());
            for r in ranges {
                out.extend_from_slice(&r.lower.0);
                out.extend_from_slice(&r.upper.0);
                match &r.summary {
                    Summary::Fingerprint { count, hash } => {
                        out.push(FINGERPRINT);
                        put_varint(out, u128::from(*count));
                        put_varint(out, *hash);
                    }
                    Summary::Ids(ids) => {
                        out.push(IDS);
                        put_len(out, ids.len());
                        for id in ids {
                            out.extend_from_slice(&id.0);
                        }
                    }
                }
            }
        }
        Message::Ping { nonce } | Message::Pong { nonce } => {
            out.push(if matches!(msg, Message::Ping { .. }) { PING } else { PONG });
            put_varint(out, u128::from(*nonce));
        }
        Message::Prune => out.push(PRUNE),
        Message::PeerRequest => out.push(PEER_REQUEST),
        Message::PeerResponse { addrs } if short(addrs.len()) => {
            // serde's form for a compact format: the variant, the address's octets, the port (an
            // IPv6 address's flow and scope are not sent).
            out.push(PEER_RESPONSE);
            put_len(out, addrs.len());
            for a in addrs {
                match a {
                    SocketAddr::V4(a) => {
                        out.push(V4);
                        out.extend_from_slice(&a.ip().octets());
                    }
                    SocketAddr::V6(a) => {
                        out.push(V6);
                        out.extend_from_slice(&a.ip().octets());
                    }
                }
                put_varint(out, u128::from(a.port()));
            }
        }
        Message::Announce { listen_port } => {
            out.push(ANNOUNCE);
            put_varint(out, u128::from(*listen_port));
        }
        _ => return false,
    }
    true
}

/// An integer as bincode's varint writes it, whatever its type: the shortest form that holds it.
pub(super) fn put_varint(out: &mut Vec<u8>, n: u128) {
    if n <= u128::from(VARINT_MAX_BYTE) {
        out.push(n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(VARINT_U16);
        out.extend_from_slice(&n.to_le_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(VARINT_U32);
        out.extend_from_slice(&n.to_le_bytes());
    } else if let Ok(n) = u64::try_from(n) {
        out.push(VARINT_U64);
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(VARINT_U128);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// A length below 2^16 as bincode's varint writes it.
pub(super) fn put_len(out: &mut Vec<u8>, n: usize) {
    match u8::try_from(n) {
        Ok(n) if n <= VARINT_MAX_BYTE => out.push(n),
        _ => {
            out.push(VARINT_U16);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
    }
}

/// Reads `body` if it is a well-formed message in a form `encode_direct` writes; a chat in it is
/// `known`'s copy if that is equal.
pub(super) fn decode_direct(body: &[u8], known: &impl Fn(&ChatId) -> Option<Arc<Chat>>) -> Option<Message> {
    let mut r = Reader(body);
    let msg = match r.byte()? {
        tag @ (IHAVE | IWANT | GRAFT) => {
            let ids = r.ids()?;
            match tag {
                IHAVE => Message::IHave { ids },
                IWANT => Message::IWant { ids },
                _ => Message::Graft { ids },
            }
        }
        CHAT => {
            let (ttl, hops) = (r.byte()?, r.byte()?);
            Message::Chat { ttl, hops, chat: r.chat(known)? }
        }
        REPLY => {
            let hops = r.byte()?;
            Message::Reply { hops, chat: r.chat(known)? }
        }
        SYNC if body.len() <= DIRECT_LIST_MAX_BYTES => {
            let n = r.len()?;
            // At least 35 bytes a range: a claimed count beyond that is malformed, not a reason
            // to reserve room.
            let mut ranges = Vec::with_capacity(n.min(r.0.len() / 35));
            for _ in 0..n {
                let (lower, upper) = (ChatId(r.array()?), ChatId(r.array()?));
                let summary = match r.byte()? {
                    FINGERPRINT => {
                        let count = u32::try_from(r.varint()?).ok()?;
                        Summary::Fingerprint { count, hash: r.varint()? }
                    }
                    IDS => Summary::Ids(r.ids()?),
                    _ => return None,
                };
                ranges.push(SyncRange { lower, upper, summary });
            }
            Message::Sync { ranges }
        }
        tag @ (PING | PONG) => {
            let nonce = u64::try_from(r.varint()?).ok()?;
            if tag == PING {
                Message::Ping { nonce }
            } else {
                Message::Pong { nonce }
            }
        }
        PRUNE => Message::Prune,
        PEER_REQUEST => Message::PeerRequest,
        PEER_RESPONSE if body.len() <= DIRECT_LIST_MAX_BYTES => {
            let n = r.len()?;
            // At least 6 bytes an address.
            let mut addrs = Vec::with_capacity(n.min(r.0.len() / 6));
            for _ in 0..n {
                let ip = match r.byte()? {
                    V4 => core::net::IpAddr::from(r.array::<4>()?),
                    V6 => core::net::IpAddr::from(r.array::<16>()?),
                    _ => return None,
                };
                addrs.push(SocketAddr::new(ip, u16::try_from(r.varint()?).ok()?));
            }
            Message::PeerResponse { addrs }
        }
        ANNOUNCE => Message::Announce { listen_port: u16::try_from(r.varint()?).ok()? },
        _ => return None,
    };
    r.0.is_empty().then_some(msg)
}

/// What is left of a payload being read by `decode_direct`.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    pub(super) fn byte(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// A length in the shortest varint form below 2^16.
    pub(super) fn len(&mut self) -> Option<usize> {
        match self.byte()? {
            n if n <= VARINT_MAX_BYTE => Some(usize::from(n)),
            VARINT_U16 => {
                Some(u16::from_le_bytes(self.array()?)).filter(|n| *n > u16::from(VARINT_MAX_BYTE)).map(usize::from)
            }
            _ => None,
        }
    }

    /// An integer of any width in bincode's shortest varint form.
    pub(super) fn varint(&mut self) -> Option<u128> {
        let (n, below) = match self.byte()? {
            n if n <= VARINT_MAX_BYTE => return Some(u128::from(n)),
            VARINT_U16 => (u128::from(u16::from_le_bytes(self.array()?)), u128::from(VARINT_MAX_BYTE)),
            VARINT_U32 => (u128::from(u32::from_le_bytes(self.array()?)), u128::from(u16::MAX)),
            VARINT_U64 => (u128::from(u64::from_le_bytes(self.array()?)), u128::from(u32::MAX)),
            VARINT_U128 => (u128::from_le_bytes(self.array()?), u128::from(u64::MAX)),
            _ => return None,
        };
        // A value that would have fit a shorter form is not how `put_varint` writes it.
        (n > below).then_some(n)
    }

    /// A list of ids: a length, then the ids back to back.
    fn ids(&mut self) -> Option<Vec<ChatId>> {
        let n = self.len()?;
        let ids = self.bytes(n.checked_mul(size_of::<ChatId>())?)?;
        Some(ids.chunks_exact(size_of::<ChatId>()).map(|id| ChatId(id.try_into().expect("16 bytes"))).collect())
    }

    pub(super) fn string(&mut self) -> Option<String> {
        let n = self.len()?;
        std::str::from_utf8(self.bytes(n)?).ok().map(str::to_owned)
    }

    /// A string's bytes, not yet checked to be UTF-8.
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.bytes(n)
    }

    /// A chat: `known`'s copy of its id if that is the same chat, else a new one.
    fn chat(&mut self, known: &impl Fn(&ChatId) -> Option<Arc<Chat>>) -> Option<Arc<Chat>> {
        let id = ChatId(self.array()?);
        let room = RoomId(self.array()?);
        let author = PublicKey(self.array()?);
        let username = self.raw_string()?;
        let tag = self.byte()?;
        let text = match tag {
            TEXT | SEALED => Ok(self.raw_string()?),
            JOIN => Err(Body::Join),
            LEAVE => Err(Body::Leave),
            _ => return None,
        };
        let signature = Signature(self.array()?);
        if let Some(kept) = known(&id) {
            let same_body = match (&kept.body, &text) {
                (Body::Text(k), Ok(t)) => tag == TEXT && k.as_bytes() == *t,
                (Body::Sealed(k), Ok(t)) => tag == SEALED && k == t,
                (k, Err(b)) => k == b,
                _ => false,
            };
            // Equal bytes are valid UTF-8, as the copy's strings are.
            if same_body
                && kept.room == room
                && kept.author == author
                && kept.signature == signature
                && kept.username.as_bytes() == username
            {
                return Some(kept);
            }
        }
        let utf8 = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
        let username = utf8(username)?;
        let body = match text {
            Ok(t) if tag == SEALED => Body::Sealed(t.to_vec()),
            Ok(t) => Body::Text(utf8(t)?),
            Err(b) => b,
        };
        Some(Arc::new(Chat { id, room, author, username, body, signature }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::arbitrary::{arb_id, bincode_body, bincode_decode, decode_body, framed_body, AnyMessage};
    use super::super::codec::no_known_chats;
    use super::super::framing::HEADER_BYTES;
    use super::super::{decode_payload, encode, PROTOCOL_VERSION, VERSION_BYTES};
    use super::*;
    use crate::identity::Ed25519Keys;
    use quickcheck::{Gen, QuickCheck};

    /// The id-list shortcut writes and reads exactly bincode's bytes, at every length form.
    #[test]
    fn id_lists_are_coded_as_bincode_codes_them() {
        let mut g = Gen::new(16);
        for n in [0, 1, 7, 250, 251, 252, 1024, 65535, 65536, 70000] {
            let ids: Vec<ChatId> = (0..n).map(|_| arb_id(&mut g)).collect();
            for msg in [
                Message::IHave { ids: ids.clone() },
                Message::IWant { ids: ids.clone() },
                Message::Graft { ids: ids.clone() },
            ] {
                let framed = encode(&msg);
                assert_eq!(framed[HEADER_BYTES + VERSION_BYTES..], bincode_body(&msg), "{} of {n}", msg.kind());
                // bincode's allocation limit refuses lists past 2^16 ids; the shortcut stays below.
                let back = decode_payload(&framed[HEADER_BYTES..]);
                assert_eq!(back, bincode_decode(&framed[HEADER_BYTES + VERSION_BYTES..]));
                assert_eq!(back.is_ok(), n < 65536, "{n}");
            }
        }
    }

    /// Whatever the shortcut declines (other messages, other length forms, malformed lists) gets
    /// bincode's result, errors included.
    #[test]
    fn id_list_decoding_agrees_with_bincode_on_any_bytes() {
        fn prop(tag: u8, len: Vec<u8>, ids: Vec<u8>) -> bool {
            let mut body = vec![tag % 13];
            body.extend(len.iter().take(3));
            body.extend(ids);
            let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
            payload.extend_from_slice(&body);
            decode_payload(&payload) == bincode_decode(&body)
        }
        QuickCheck::new().tests(3000).quickcheck(prop as fn(u8, Vec<u8>, Vec<u8>) -> bool);
        for body in [vec![IHAVE, 251, 5, 0], vec![IWANT, 251, 0, 1], vec![GRAFT, 2], vec![IHAVE, 0, 0]] {
            let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
            payload.extend_from_slice(&body);
            assert_eq!(decode_payload(&payload), bincode_decode(&body), "{body:?}");
        }
        let mut non_shortest = vec![IHAVE, 251, 1, 0];
        non_shortest.extend_from_slice(&[9; 16]);
        assert_eq!(decode_direct(&non_shortest, &no_known_chats), None);
    }

    /// Every message, whichever path codes it, gets bincode's bytes; and any mangling of those
    /// bytes (a byte changed, the end cut off) decodes as bincode decodes it.
    #[test]
    fn direct_coding_agrees_with_bincode() {
        fn prop(m: AnyMessage, at: usize, to: u8, cut: usize) -> bool {
            let framed = encode(&m.0);
            let body = &framed[HEADER_BYTES + VERSION_BYTES..];
            if body != bincode_body(&m.0) {
                return false;
            }
            let decodes_alike = |body: &[u8]| {
                let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
                payload.extend_from_slice(body);
                decode_payload(&payload) == bincode_decode(body)
            };
            let mut changed = body.to_vec();
            if let Some(b) = changed.get_mut(at % body.len()) {
                *b = to;
            }
            decodes_alike(body) && decodes_alike(&changed) && decodes_alike(&body[..cut % (body.len() + 1)])
        }
        QuickCheck::new().tests(3000).quickcheck(prop as fn(AnyMessage, usize, u8, usize) -> bool);
    }

    /// Integers at every varint width, written and read as bincode does; forms bincode reads but
    /// never writes (not the shortest) and sync frames too large for the shortcut get its result.
    #[test]
    fn sync_and_pings_are_coded_as_bincode_codes_them() {
        let widths = [0, 250, 251, 65535, 65536, u32::MAX as u128, 1 << 32, u64::MAX as u128, 1 << 64, u128::MAX];
        let mut msgs = vec![Message::Prune, Message::PeerRequest];
        for n in widths {
            let id = ChatId::from_u128(n);
            let count = u32::try_from(n).unwrap_or(u32::MAX);
            let summary = Summary::Fingerprint { count, hash: n };
            msgs.push(Message::Sync { ranges: vec![SyncRange { lower: id, upper: ChatId::MAX, summary }] });
            msgs.push(Message::Ping { nonce: u64::try_from(n).unwrap_or(u64::MAX) });
            msgs.push(Message::Pong { nonce: u64::try_from(n).unwrap_or(7) });
            msgs.push(Message::Announce { listen_port: u16::try_from(n).unwrap_or(u16::MAX) });
        }
        let ids: Vec<ChatId> = (0..300).map(ChatId::from_u128).collect();
        let listed =
            |n: usize| SyncRange { lower: ChatId::MIN, upper: ChatId::MAX, summary: Summary::Ids(ids[..n].to_vec()) };
        msgs.push(Message::Sync { ranges: vec![listed(0), listed(251), listed(300)] });
        msgs.push(Message::Sync { ranges: (0..300).map(|i| listed(i % 3)).collect() });
        msgs.push(Message::Sync { ranges: Vec::new() });
        let ports = [0, 250, 251, 7000, u16::MAX];
        let v4 = ports.map(|p| SocketAddr::from(([10, 0, 0, 1], p)));
        let v6 = ports.map(|p| SocketAddr::from(([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], p)));
        msgs.push(Message::PeerResponse { addrs: v4.iter().chain(&v6).copied().collect() });
        msgs.push(Message::PeerResponse { addrs: Vec::new() });
        for msg in msgs {
            let body = framed_body(&msg);
            assert_eq!(body, bincode_body(&msg), "{msg:?}");
            assert_eq!(decode_body(&body), Ok(msg.clone()));
            assert_eq!(decode_direct(&body, &no_known_chats), Some(msg));
        }
        for body in [
            vec![PING, 252, 5, 0, 0, 0],
            vec![PONG, 251, 250, 0],
            vec![PING, 254, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            vec![ANNOUNCE, 252, 1, 0, 1, 0],
            vec![SYNC, 1],
            vec![SYNC, 0, 1],
            vec![PRUNE, 0],
            vec![PEER_REQUEST],
        ] {
            assert_eq!(decode_body(&body), bincode_decode(&body), "{body:?}");
        }
        let mut non_shortest = vec![SYNC, 1];
        non_shortest.extend_from_slice(&[0; 32]);
        non_shortest.extend_from_slice(&[FINGERPRINT, 252, 3, 0, 0, 0, 0]);
        assert_eq!(decode_direct(&non_shortest, &no_known_chats), None);
        assert!(matches!(decode_body(&non_shortest), Ok(Message::Sync { .. })));
        // Past the shortcut's size, bincode reads it (and its limit decides).
        let many: Vec<ChatId> = (0..1000).map(ChatId::from_u128).collect();
        let big = Message::Sync {
            ranges: (0..40)
                .map(|_| SyncRange { lower: ChatId::MIN, upper: ChatId::MAX, summary: Summary::Ids(many.clone()) })
                .collect(),
        };
        let body = framed_body(&big);
        assert!(body.len() > DIRECT_LIST_MAX_BYTES);
        assert_eq!(body, bincode_body(&big));
        assert_eq!(decode_body(&body), bincode_decode(&body));
        let many = Message::PeerResponse { addrs: vec![SocketAddr::from(([1, 2, 3, 4], 5)); 50_000] };
        let body = framed_body(&many);
        assert!(body.len() > DIRECT_LIST_MAX_BYTES);
        assert_eq!(body, bincode_body(&many));
        assert_eq!(decode_body(&body), Ok(many));
        // IPv6 flow and scope are not sent, by either path.
        let scoped =
            Message::PeerResponse { addrs: vec![SocketAddr::V6(core::net::SocketAddrV6::new([1; 8].into(), 9, 7, 3))] };
        let body = framed_body(&scoped);
        assert_eq!(body, bincode_body(&scoped));
        assert_eq!(decode_body(&body), bincode_decode(&body));
    }

    #[test]
    fn long_chats_are_coded_as_bincode_codes_them() {
        let keys = Ed25519Keys::from_seed(1);
        for n in [250, 251, 65535, 65536, 70000] {
            let text = "x".repeat(n);
            for (name, body) in [("", Body::Text(text.clone())), (text.as_str(), Body::Join)] {
                let chat = Arc::new(Chat::new(&keys, ChatId::MAX, name, body));
                for msg in [Message::Chat { ttl: 3, hops: 250, chat: chat.clone() }, Message::Reply { hops: 9, chat }] {
                    let framed = encode(&msg);
                    assert_eq!(framed[HEADER_BYTES + VERSION_BYTES..], bincode_body(&msg), "{n}");
                    let back = decode_payload(&framed[HEADER_BYTES..]);
                    assert_eq!(back, bincode_decode(&framed[HEADER_BYTES + VERSION_BYTES..]));
                    assert_eq!(back, Ok(msg));
                }
            }
        }
    }
}
