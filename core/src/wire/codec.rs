//! The codec: a message to the bytes of its frame and a payload back to a message, and the
//! `Hello` to its bytes and back. bincode 2 (standard configuration, with an allocation limit)
//! defines the bytes; the frequent messages and the hello are written and read by hand in `direct`,
//! to the very same bytes, and everything else goes through bincode itself. The only place, with
//! `direct`, that knows bincode.

use std::sync::Arc;

use super::direct::{decode_direct, encode_direct, put_len, put_varint, Reader, IHAVE};
use super::framing::{finish_frame, start_frame, HEADER_BYTES};
use super::{Hello, Ids, Message, RoomMessage, WireError, MAX_IDS_PER_FRAME, PROTOCOL_VERSION, VERSION_BYTES};
use crate::chat::{Chat, ChatId};
use crate::identity::{PublicKey, Signature};
use crate::sync::SyncRange;

/// bincode's own cap on what one decode may allocate: a 10-byte frame claiming a 2^60-element vector
/// fails here instead of reserving memory.
pub(super) const DECODE_LIMIT_BYTES: usize = 1 << 20;

pub(super) fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>()
}

/// Appends one frame to `out`. Fails (leaving `out` as it was) if the payload would exceed
/// `max_frame_bytes`.
pub fn encode_into(msg: &Message, out: &mut Vec<u8>, max_frame_bytes: usize) -> Result<(), WireError> {
    let start = out.len();
    // bincode writes field by field (byte by byte for ids, keys and signatures): room made up
    // front spares the buffer its doublings from a few bytes.
    out.reserve(HEADER_BYTES + VERSION_BYTES + size_hint(msg));
    start_frame(out);
    if !encode_direct(msg, out) {
        if let Err(e) = bincode::serde::encode_into_std_write(msg, out, config()) {
            out.truncate(start);
            return Err(WireError::Malformed(e.to_string()));
        }
    }
    finish_frame(out, start, max_frame_bytes)
}

/// `frame_size_hint` of an `IHave` of `n` ids.
pub(crate) fn ihave_frame_size(n: usize) -> usize {
    HEADER_BYTES + VERSION_BYTES + 4 + 16 * n
}

/// Appends the frame of `Message::IHave { ids }`, exactly as `encode_into` would, for a caller
/// that holds the ids but not in a list of their own (at most `MAX_IDS_PER_FRAME`).
pub(crate) fn encode_ihave_into<'a>(
    ids: impl ExactSizeIterator<Item = &'a ChatId>,
    out: &mut Vec<u8>,
    max_frame_bytes: usize,
) -> Result<(), WireError> {
    debug_assert!(ids.len() <= MAX_IDS_PER_FRAME);
    let start = out.len();
    out.reserve(ihave_frame_size(ids.len()));
    start_frame(out);
    out.push(IHAVE);
    put_len(out, ids.len());
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    finish_frame(out, start, max_frame_bytes)
}

/// About the size of `msg`'s frame, a little over rather than under. Only sizes a buffer.
pub fn frame_size_hint(msg: &Message) -> usize {
    HEADER_BYTES + VERSION_BYTES + size_hint(msg)
}

/// About the encoded size of `msg`, a little over rather than under. Only sizes a buffer.
fn size_hint(msg: &Message) -> usize {
    const ID: usize = 16;
    let chat = |c: &Chat| {
        let text = match &c.body {
            crate::chat::Body::Text(t) => t.len(),
            crate::chat::Body::Sealed(s) => s.len(),
            // A join's invite proof, the longest operation.
            crate::chat::Body::Op(_) => 512,
            _ => 0,
        };
        // Id, room, author, signature, and a few bytes each for lengths, tags and counters.
        ID + 16 + 32 + 64 + 16 + c.username.len() + text
    };
    let ranges = |ranges: &[SyncRange]| {
        let ids = |r: &SyncRange| match &r.summary {
            crate::sync::Summary::Ids(v) => ID * v.len(),
            crate::sync::Summary::Fingerprint { .. } => 24,
        };
        4 + ranges.iter().map(|r| 2 * ID + 4 + ids(r)).sum::<usize>()
    };
    match msg {
        Message::Chat { chat: c, .. } | Message::Reply { chat: c, .. } => chat(c),
        Message::IHave { ids } | Message::IWant { ids } | Message::Graft { ids } => 4 + ID * ids.len(),
        Message::Sync { ranges: r } => ranges(r),
        Message::PeerResponse { addrs } | Message::RoomPeers { addrs, .. } => 20 + 24 * addrs.len(),
        Message::Room { msg, .. } => {
            20 + match msg {
                RoomMessage::IHave { ids } | RoomMessage::IWant { ids } | RoomMessage::Graft { ids } => {
                    4 + ID * ids.len()
                }
                RoomMessage::Sync { ranges: r } => ranges(r),
                RoomMessage::Prune => 0,
                RoomMessage::KeysWanted { epochs } => 4 + ID * epochs.len(),
                RoomMessage::Keys { keys } => 4 + (ID + 32) * keys.len(),
            }
        }
        Message::Subscribe { .. } | Message::Unsubscribe { .. } | Message::FindRoom { .. } => 56,
        Message::Bundle { bundle } => 160 + bundle.bundle.mailboxes.iter().map(|m| 34 + m.addr.len()).sum::<usize>(),
        Message::BundleRequest { .. } | Message::Deposited { .. } | Message::Collect { .. } => 56,
        Message::Dm { envelope } | Message::Deposit { envelope } => envelope_size(envelope),
        Message::Mail { envelopes, .. } => 4 + envelopes.iter().map(envelope_size).sum::<usize>(),
        Message::MailAck { ack } => 112 + ID * ack.ids.len(),
        Message::ToRelay { bytes, .. } | Message::FromRelay { bytes, .. } => 16 + bytes.len(),
        Message::Relayed { entries } => 4 + 100 * entries.len(),
        Message::Observed { .. }
        | Message::DialBack { .. }
        | Message::DialBackResult { .. }
        | Message::Reservation { .. }
        | Message::CircuitOpen { .. }
        | Message::CircuitOpened { .. }
        | Message::CircuitRefused { .. }
        | Message::CircuitIncoming { .. }
        | Message::CircuitEnd { .. }
        | Message::CircuitClosed { .. }
        | Message::PunchConnect { .. }
        | Message::PunchSync => 64,
        Message::Prune
        | Message::Reserve
        | Message::Ping { .. }
        | Message::Pong { .. }
        | Message::PeerRequest
        | Message::Announce { .. } => 16,
    }
}

/// About the encoded size of an envelope: ids, expiry, and the ciphertext with its length.
fn envelope_size(e: &crate::dm::Envelope) -> usize {
    16 + 32 + 32 + 10 + 4 + e.ciphertext.len()
}

/// One frame in a fresh buffer.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    // Every message the core builds is within limits by construction; an error here is a bug.
    encode_into(msg, &mut out, usize::MAX).expect("encoding a message into memory cannot fail");
    out
}

/// Decodes one payload (what follows the length prefix).
pub fn decode_payload(payload: &[u8]) -> Result<Message, WireError> {
    decode_payload_with(payload, &no_known_chats)
}

/// What `known` is when the caller keeps no chats.
pub(super) fn no_known_chats(_: &ChatId) -> Option<Arc<Chat>> {
    None
}

/// `decode_payload`, with a chat the frame carries taken from `known` (a copy the caller keeps of
/// the chat of that id) when it is that very chat, byte for byte: nearly every chat frame a node
/// receives carries a chat it, or the process, has already, and building it again cost three
/// allocations (the chat and its two strings) and their frees.
pub(super) fn decode_payload_with(
    payload: &[u8],
    known: &impl Fn(&ChatId) -> Option<Arc<Chat>>,
) -> Result<Message, WireError> {
    if payload.len() < VERSION_BYTES {
        return Err(WireError::Malformed("payload shorter than the version field".into()));
    }
    let theirs = u16::from_be_bytes([payload[0], payload[1]]);
    if theirs != PROTOCOL_VERSION {
        return Err(WireError::Version { theirs, ours: PROTOCOL_VERSION });
    }
    let body = &payload[VERSION_BYTES..];
    if let Some(msg) = decode_direct(body, known) {
        return Ok(msg);
    }
    match bincode::serde::decode_from_slice::<Message, _>(body, config()) {
        Ok((msg, used)) if used == body.len() => Ok(msg),
        Ok((_, used)) => Err(WireError::Malformed(format!("{} trailing bytes after the message", body.len() - used))),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

/// The ids of `payload` if it is an `IHave` that `decode_direct` reads (which then reads it as
/// exactly these ids); `None` for anything else.
pub(super) fn ihave_in_place(payload: &[u8]) -> Option<Ids<'_>> {
    let (version, body) = payload.split_at_checked(VERSION_BYTES)?;
    if version != PROTOCOL_VERSION.to_be_bytes() {
        return None;
    }
    let mut r = Reader(body);
    if r.byte()? != IHAVE {
        return None;
    }
    let n = r.len()?;
    let ids = r.bytes(n.checked_mul(size_of::<ChatId>())?)?;
    r.0.is_empty().then_some(Ids(ids))
}

/// The handshake payload (the version travels in the handshake frame's header). Written as bincode
/// writes it, directly (see `encode_direct`): every handshake sends one, and bincode's serde path
/// went through the key and the signature a byte at a time.
pub fn encode_hello(hello: &Hello) -> Vec<u8> {
    if hello.username.len() > usize::from(u16::MAX) {
        return bincode::serde::encode_to_vec(hello, config()).expect("encoding into memory cannot fail");
    }
    let mut out = Vec::with_capacity(32 + 64 + 3 + hello.username.len() + 3);
    out.extend_from_slice(&hello.public_key.0);
    out.extend_from_slice(&hello.binding.0);
    put_len(&mut out, hello.username.len());
    out.extend_from_slice(hello.username.as_bytes());
    put_varint(&mut out, u128::from(hello.listen_port));
    out
}

pub fn decode_hello(bytes: &[u8]) -> Result<Hello, WireError> {
    let mut r = Reader(bytes);
    let direct = (|| {
        let (public_key, binding) = (PublicKey(r.array()?), Signature(r.array()?));
        let username = r.string()?;
        let listen_port = u16::try_from(r.varint()?).ok()?;
        r.0.is_empty().then_some(Hello { public_key, binding, username, listen_port })
    })();
    if let Some(hello) = direct {
        return Ok(hello);
    }
    match bincode::serde::decode_from_slice::<Hello, _>(bytes, config()) {
        Ok((hello, used)) if used == bytes.len() => Ok(hello),
        Ok(_) => Err(WireError::Malformed("trailing bytes after Hello".into())),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::direct::VARINT_U16;
    use super::*;
    use crate::chat::Body;
    use crate::identity::Ed25519Keys;
    use quickcheck::QuickCheck;

    fn bincode_hello(bytes: &[u8]) -> Result<Hello, WireError> {
        match bincode::serde::decode_from_slice::<Hello, _>(bytes, config()) {
            Ok((hello, used)) if used == bytes.len() => Ok(hello),
            Ok(_) => Err(WireError::Malformed("trailing bytes after Hello".into())),
            Err(e) => Err(WireError::Malformed(e.to_string())),
        }
    }

    #[test]
    fn huge_claimed_vector_is_refused_without_allocating() {
        // IHave claiming u64::MAX ids in a tiny frame.
        let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
        payload.extend_from_slice(&[IHAVE, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(decode_payload(&payload), Err(WireError::Malformed(_))));
    }

    /// The hello is written and read as bincode does, and any mangling of it reads alike.
    #[test]
    fn hello_is_coded_as_bincode_codes_it() {
        fn prop(seed: u8, name: String, port: u16, at: usize, to: u8, cut: usize) -> bool {
            let keys = Ed25519Keys::from_seed(u64::from(seed));
            let public_key = crate::identity::Keys::public_key(&keys);
            let binding = crate::identity::Keys::sign(&keys, name.as_bytes());
            let hello = Hello { public_key, binding, username: name, listen_port: port };
            let bytes = encode_hello(&hello);
            let mut changed = bytes.clone();
            changed[at % bytes.len()] = to;
            let alike = |b: &[u8]| decode_hello(b) == bincode_hello(b);
            bytes == bincode::serde::encode_to_vec(&hello, config()).unwrap()
                && decode_hello(&bytes) == Ok(hello)
                && alike(&changed)
                && alike(&bytes[..cut % (bytes.len() + 1)])
        }
        QuickCheck::new().tests(1000).quickcheck(prop as fn(u8, String, u16, usize, u8, usize) -> bool);
        let keys = Ed25519Keys::from_seed(1);
        for n in [0, 250, 251, 65535, 65536] {
            for port in [0, 250, 251, 7000, u16::MAX] {
                let public_key = crate::identity::Keys::public_key(&keys);
                let binding = crate::identity::Keys::sign(&keys, b"x");
                let hello = Hello { public_key, binding, username: "y".repeat(n), listen_port: port };
                let bytes = encode_hello(&hello);
                assert_eq!(bytes, bincode::serde::encode_to_vec(&hello, config()).unwrap(), "{n} {port}");
                assert_eq!(decode_hello(&bytes), Ok(hello));
            }
        }
    }

    /// A chat frame is read as the kept copy only when it carries that very chat; a chat that
    /// differs in any field, under the same id, is read as itself.
    #[test]
    fn known_chats_are_reused_only_when_equal() {
        let keys = Ed25519Keys::from_seed(1);
        let id = ChatId::new_v7(5, &[3; 10]);
        let kept = Arc::new(Chat::new(&keys, id, "alice", Body::Text("hi".into())));
        let known = |i: &ChatId| (*i == id).then(|| kept.clone());
        let variants = [
            Chat::new(&keys, id, "alice", Body::Text("hI".into())),
            Chat::new(&keys, id, "alicE", Body::Text("hi".into())),
            Chat::new(&keys, id, "alice", Body::Join),
            Chat::new(&Ed25519Keys::from_seed(2), id, "alice", Body::Text("hi".into())),
            Chat { signature: Signature([7; 64]), ..(*kept).clone() },
        ];
        let read = |chat: Arc<Chat>| {
            let framed = encode(&Message::Reply { hops: 1, chat });
            match decode_payload_with(&framed[HEADER_BYTES..], &known) {
                Ok(Message::Reply { chat, .. }) => chat,
                other => panic!("{other:?}"),
            }
        };
        assert!(Arc::ptr_eq(&read(Arc::new((*kept).clone())), &kept));
        for v in variants {
            let back = read(Arc::new(v.clone()));
            assert!(!Arc::ptr_eq(&back, &kept));
            assert_eq!(*back, v);
        }
    }

    #[test]
    fn ihave_without_a_list_is_the_ihave_frame() {
        for n in [0, 1, 7, 250, 251, MAX_IDS_PER_FRAME] {
            let ids: Vec<ChatId> = (0..n as u128).map(ChatId::from_u128).collect();
            let msg = Message::IHave { ids: ids.clone() };
            let mut out = vec![9];
            encode_ihave_into(ids.iter(), &mut out, usize::MAX).unwrap();
            assert_eq!(out[1..], encode(&msg));
            assert_eq!(ihave_frame_size(n), frame_size_hint(&msg));
            let mut small = vec![9];
            let err = encode_into(&msg, &mut small, 3).unwrap_err();
            assert_eq!(encode_ihave_into(ids.iter(), &mut small, 3), Err(err));
            assert_eq!(small, [9]);
        }
    }

    /// An `IHave` left in place holds the ids `decode_payload` reads; anything else is not one.
    #[test]
    fn ihave_in_place_is_what_decode_reads() {
        for n in [0, 1, 250, 251, 1500] {
            let ids: Vec<ChatId> = (0..n as u128).map(ChatId::from_u128).collect();
            let framed = encode(&Message::IHave { ids: ids.clone() });
            let payload = &framed[HEADER_BYTES..];
            assert_eq!(ihave_in_place(payload).map(|i| (i.len(), i.iter().collect::<Vec<_>>())), Some((n, ids)));
            assert!(ihave_in_place(&payload[..payload.len() - 1]).is_none());
            let mut longer = payload.to_vec();
            longer.push(0);
            assert!(ihave_in_place(&longer).is_none());
            let mut other_version = payload.to_vec();
            other_version[1] ^= 1;
            assert!(ihave_in_place(&other_version).is_none());
        }
        for msg in [Message::IWant { ids: vec![ChatId::MAX] }, Message::Graft { ids: vec![] }, Message::Prune] {
            assert!(ihave_in_place(&encode(&msg)[HEADER_BYTES..]).is_none());
        }
        // Not the shortest length form: bincode's business, not this path's.
        let mut odd = PROTOCOL_VERSION.to_be_bytes().to_vec();
        odd.extend_from_slice(&[IHAVE, VARINT_U16, 1, 0]);
        odd.extend_from_slice(&[0; 16]);
        assert!(ihave_in_place(&odd).is_none());
    }
}
