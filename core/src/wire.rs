//! The wire format: every message type, and the framing that carries them over a byte stream.
//!
//! A frame is a 4-byte big-endian payload length, then the payload: a 2-byte big-endian protocol
//! version, then the message in bincode (standard configuration, with an allocation limit). All
//! encoding goes through this module, so swapping bincode is a one-file change.
//!
//! The version leads the payload, before any bincode, so a node can tell "another version" from
//! "garbage" even when the other version's messages would not decode.

use core::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::chat::{Body, Chat, ChatId};
use crate::identity::{PublicKey, Signature};
use crate::sync::{Summary, SyncRange};

/// 2: connections are encrypted (Noise XX, see `handshake`); version 1 was plaintext.
pub const PROTOCOL_VERSION: u16 = 2;

/// Default largest payload a node accepts: far above any legal message (a chat is at most ~4.3 KB,
/// a sync or id list at most ~20 KB), far below what would hurt memory.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 256 * 1024;

/// bincode's own cap on what one decode may allocate: a 10-byte frame claiming a 2^60-element vector
/// fails here instead of reserving memory.
const DECODE_LIMIT_BYTES: usize = 1 << 20;

const HEADER_BYTES: usize = 4;
/// What a decoder with nothing pending may keep allocated.
const IDLE_BUF_BYTES: usize = 4096;
const VERSION_BYTES: usize = 2;

/// Most ids in one `IHave`, `IWant` or sync id list, and most addresses in a `PeerResponse`. The
/// receiver refuses larger lists; senders split.
pub const MAX_IDS_PER_FRAME: usize = 1024;
pub const MAX_ADDRS_PER_FRAME: usize = 64;
pub const MAX_RANGES_PER_FRAME: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A chat (text, join or leave). `ttl`: how many more times it may be pushed eagerly; `hops`:
    /// how many links it has crossed, this one included. Neither is signed: both change per hop.
    Chat {
        ttl: u8,
        hops: u8,
        chat: Arc<Chat>,
    },
    /// A chat sent because it was asked for (`IWant`, `Graft`) or found missing by `Sync`, not
    /// pushed: a duplicate of it says nothing about the tree.
    Reply {
        hops: u8,
        chat: Arc<Chat>,
    },
    /// Lazy push: "I have these chats" (ids only).
    IHave {
        ids: Vec<ChatId>,
    },
    /// "Send me these chats", after an `IHave` or a sync found them missing.
    IWant {
        ids: Vec<ChatId>,
    },
    /// Plumtree: "stop pushing full chats to me; ids are enough".
    Prune,
    /// Plumtree: "push full chats to me again", and send these missing ones now.
    Graft {
        ids: Vec<ChatId>,
    },
    /// One round of range-based set reconciliation (anti-entropy).
    Sync {
        ranges: Vec<SyncRange>,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    PeerRequest,
    PeerResponse {
        addrs: Vec<SocketAddr>,
    },
    /// "I listen on this port". Honoured when received; no longer sent, since the hello carries the
    /// port (kept so that the message numbering, and older peers, stay as they were).
    Announce {
        listen_port: u16,
    },
}

/// Who a peer is, sent encrypted inside the Noise handshake (see `handshake`), never as a frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub public_key: PublicKey,
    /// The identity key's signature over the sender's Noise static key: binds the encrypted
    /// session to the Ed25519 identity.
    pub binding: Signature,
    pub username: String,
    /// The port this node accepts connections on; 0 if it does not listen.
    pub listen_port: u16,
}

impl Message {
    /// Short name for logs and stats.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Chat { .. } => "Chat",
            Message::Reply { .. } => "Reply",
            Message::Prune => "Prune",
            Message::Graft { .. } => "Graft",
            Message::IHave { .. } => "IHave",
            Message::IWant { .. } => "IWant",
            Message::Sync { .. } => "Sync",
            Message::Ping { .. } => "Ping",
            Message::Pong { .. } => "Pong",
            Message::PeerRequest => "PeerRequest",
            Message::PeerResponse { .. } => "PeerResponse",
            Message::Announce { .. } => "Announce",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fatal: the stream cannot be resynchronised; nothing of the frame was buffered.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// Fatal: the peer speaks another protocol.
    #[error("peer speaks protocol version {theirs}, this node speaks version {ours}")]
    Version { theirs: u16, ours: u16 },
    /// The frame was skipped; the stream stays usable.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl WireError {
    /// Whether the connection must be closed (the decoder then refuses further input).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, WireError::Malformed(_))
    }
}

fn config() -> impl bincode::config::Config {
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

/// Room for the length prefix, then the version: the start of every frame `out` gets.
fn start_frame(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; HEADER_BYTES]);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
}

/// Writes the length prefix of the frame begun at `start`, or takes the frame back out if it is
/// over `max_frame_bytes`.
fn finish_frame(out: &mut Vec<u8>, start: usize, max_frame_bytes: usize) -> Result<(), WireError> {
    let len = out.len() - start - HEADER_BYTES;
    if len > max_frame_bytes {
        out.truncate(start);
        return Err(WireError::TooLarge { len, max: max_frame_bytes });
    }
    out[start..start + HEADER_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
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
            _ => 0,
        };
        // Id, author, signature, and a few bytes each for lengths, tags and counters.
        ID + 32 + 64 + 16 + c.username.len() + text
    };
    match msg {
        Message::Chat { chat: c, .. } | Message::Reply { chat: c, .. } => chat(c),
        Message::IHave { ids } | Message::IWant { ids } | Message::Graft { ids } => 4 + ID * ids.len(),
        Message::Sync { ranges } => {
            let ids = |r: &SyncRange| match &r.summary {
                crate::sync::Summary::Ids(v) => ID * v.len(),
                crate::sync::Summary::Fingerprint { .. } => 24,
            };
            4 + ranges.iter().map(|r| 2 * ID + 4 + ids(r)).sum::<usize>()
        }
        Message::PeerResponse { addrs } => 4 + 24 * addrs.len(),
        Message::Prune
        | Message::Ping { .. }
        | Message::Pong { .. }
        | Message::PeerRequest
        | Message::Announce { .. } => 16,
    }
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
fn no_known_chats(_: &ChatId) -> Option<Arc<Chat>> {
    None
}

/// `decode_payload`, with a chat the frame carries taken from `known` (a copy the caller keeps of
/// the chat of that id) when it is that very chat, byte for byte: nearly every chat frame a node
/// receives carries a chat it, or the process, has already, and building it again cost three
/// allocations (the chat and its two strings) and their frees.
pub(crate) fn decode_payload_with(
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

// Id lists (`IHave`, `IWant`, `Graft`) and chats (`Chat`, `Reply`) are nearly all the frames, and
// bincode's serde path goes through every id, key and signature one byte at a time, at several
// times the cost of everything else in a frame. These two write and read the very bytes bincode
// does (checked by the tests), fields in declaration order: variant numbers, integers and lengths
// as varints, `u8`s and fixed arrays as raw bytes. Sync rounds, pings and the field-less messages
// go the same way: after the chats and id lists they were most of what still took the bincode
// path. Only the common forms are handled here (lengths below 2^16, everything written the
// shortest way); anything else, malformed input included, takes the bincode path and gets its
// exact result and error.

/// bincode's variant numbers: places in `Message`, in `Body` and in `Summary`.
const CHAT: u8 = 0;
const REPLY: u8 = 1;
const IHAVE: u8 = 2;
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
const FINGERPRINT: u8 = 0;
const IDS: u8 = 1;
const V4: u8 = 0;
const V6: u8 = 1;
/// bincode's varint: below this, the value itself in one byte.
const VARINT_MAX_BYTE: u8 = 250;
/// bincode's varint: this byte, then the value as a little-endian `u16`; the next three bytes
/// likewise announce a `u32`, a `u64` and a `u128`.
const VARINT_U16: u8 = 251;
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
fn encode_direct(msg: &Message, out: &mut Vec<u8>) -> bool {
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
            if short(chat.username.len()) && !matches!(&chat.body, Body::Text(t) if !short(t.len())) =>
        {
            match msg {
                Message::Chat { ttl, hops, .. } => out.extend_from_slice(&[CHAT, *ttl, *hops]),
                Message::Reply { hops, .. } => out.extend_from_slice(&[REPLY, *hops]),
                _ => unreachable!("matched above"),
            }
            out.extend_from_slice(&chat.id.0);
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
fn put_varint(out: &mut Vec<u8>, n: u128) {
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
fn put_len(out: &mut Vec<u8>, n: usize) {
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
fn decode_direct(body: &[u8], known: &impl Fn(&ChatId) -> Option<Arc<Chat>>) -> Option<Message> {
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

/// A frame read by [`Frames::decode_each_with`]. `IHave` is the most frequent frame of all, and
/// its ids are only looked at once each: left in the bytes they arrived in, they need no list
/// (an allocation and a free per frame). Only frames read where they lie are left so; one
/// buffered across reads comes as a `Message`.
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    Message(Result<Message, WireError>),
    IHave(Ids<'a>),
}

/// The ids of an `IHave`, as they are on the wire: 16 bytes each.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ids<'a>(&'a [u8]);

impl<'a> Ids<'a> {
    pub(crate) fn len(&self) -> usize {
        self.0.len() / size_of::<ChatId>()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = ChatId> + 'a {
        self.0.chunks_exact(size_of::<ChatId>()).map(|id| ChatId(id.try_into().expect("16 bytes")))
    }
}

/// The ids of `payload` if it is an `IHave` that `decode_direct` reads (which then reads it as
/// exactly these ids); `None` for anything else.
fn ihave_in_place(payload: &[u8]) -> Option<Ids<'_>> {
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

/// What is left of a payload being read by `decode_direct`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// A length in the shortest varint form below 2^16.
    fn len(&mut self) -> Option<usize> {
        match self.byte()? {
            n if n <= VARINT_MAX_BYTE => Some(usize::from(n)),
            VARINT_U16 => {
                Some(u16::from_le_bytes(self.array()?)).filter(|n| *n > u16::from(VARINT_MAX_BYTE)).map(usize::from)
            }
            _ => None,
        }
    }

    /// An integer of any width in bincode's shortest varint form.
    fn varint(&mut self) -> Option<u128> {
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

    fn string(&mut self) -> Option<String> {
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
        let author = PublicKey(self.array()?);
        let username = self.raw_string()?;
        let text = match self.byte()? {
            TEXT => Ok(self.raw_string()?),
            JOIN => Err(Body::Join),
            LEAVE => Err(Body::Leave),
            _ => return None,
        };
        let signature = Signature(self.array()?);
        if let Some(kept) = known(&id) {
            let same_body = match (&kept.body, &text) {
                (Body::Text(k), Ok(t)) => k.as_bytes() == *t,
                (k, Err(b)) => k == b,
                _ => false,
            };
            // Equal bytes are valid UTF-8, as the copy's strings are.
            if same_body && kept.author == author && kept.signature == signature && kept.username.as_bytes() == username
            {
                return Some(kept);
            }
        }
        let utf8 = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
        let username = utf8(username)?;
        let body = match text {
            Ok(t) => Body::Text(utf8(t)?),
            Err(b) => b,
        };
        Some(Arc::new(Chat { id, author, username, body, signature }))
    }
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

/// Splits a byte stream, fed in arbitrary chunks, into messages.
///
/// Memory: at most one partial frame (bounded by `max_frame_bytes`) plus the last chunk pushed.
#[derive(Debug)]
pub struct FrameDecoder {
    frames: Frames,
    /// A frame's length is a `u32`, so a larger limit is no limit.
    max_frame_bytes: u32,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder { frames: Frames::default(), max_frame_bytes: limit(max_frame_bytes) }
    }

    /// Adds received bytes. Ignored after a fatal error.
    pub fn push(&mut self, bytes: &[u8]) {
        self.frames.push(bytes);
    }

    /// Decodes every whole frame of what was buffered followed by `bytes`, in order, into `out`
    /// (a fatal error comes last: nothing follows it, ever), and keeps the partial frame at the
    /// end. Same frames as `push` then `next_frame`, but bytes that make whole frames are decoded
    /// where they lie instead of being copied, and a connection between frames holds no buffer
    /// at all: thousands of simulated connections, or many idle real ones, cost nothing here.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<Result<Message, WireError>>) {
        self.decode_each(bytes, |frame| out.push(frame));
    }

    /// `decode`, handing each frame to `each` as it is read: a caller that mostly gets one frame
    /// per read need not build a list for it.
    pub fn decode_each(&mut self, bytes: &[u8], each: impl FnMut(Result<Message, WireError>)) {
        self.frames.decode_each(bytes, self.max_frame_bytes, each);
    }

    /// Bytes held that do not yet make a whole frame.
    pub fn buffered(&self) -> usize {
        self.frames.buffered()
    }

    /// The next whole message, `None` when more bytes are needed. After a fatal error it returns
    /// `None` forever and holds no bytes.
    pub fn next_frame(&mut self) -> Option<Result<Message, WireError>> {
        self.frames.next_frame(self.max_frame_bytes)
    }
}

/// A frame size limit in the four bytes a frame's length takes.
pub(crate) fn limit(max_frame_bytes: usize) -> u32 {
    u32::try_from(max_frame_bytes).unwrap_or(u32::MAX)
}

/// A [`FrameDecoder`] without its limit, which is given at each call instead: what a node's
/// connections hold, as they all share one limit (`Config::max_frame_bytes`).
///
/// One word: between frames (nearly always, as records carry whole frames) it holds nothing,
/// the partial frame, its read position and the failed flag being boxed together. Every
/// connection of a simulator's hundred thousand nodes holds one, where a `Vec`, a position, the
/// limit and the flag took five words.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    pending: Option<Box<Pending>>,
}

/// Bytes pushed that are not decoded yet, `buf[start..]`; or, once `failed`, none ever again.
#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    start: usize,
    failed: bool,
}

impl Frames {
    fn failed(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.failed)
    }

    /// Adds received bytes. Ignored after a fatal error.
    fn push(&mut self, bytes: &[u8]) {
        let p = self.pending.get_or_insert_with(Box::default);
        if p.failed {
            return;
        }
        if p.start == p.buf.len() {
            // Everything so far was decoded: an idle connection should not keep the largest burst
            // it ever received.
            if p.buf.capacity() > IDLE_BUF_BYTES {
                p.buf = Vec::new();
            } else {
                p.buf.clear();
            }
            p.start = 0;
        } else if p.start > p.buf.len() / 2 {
            p.buf.drain(..p.start);
            p.start = 0;
        }
        p.buf.extend_from_slice(bytes);
    }

    /// [`FrameDecoder::decode_each`] with the limit `max`.
    pub(crate) fn decode_each(&mut self, bytes: &[u8], max: u32, mut each: impl FnMut(Result<Message, WireError>)) {
        self.decode_each_with(bytes, max, &no_known_chats, |frame| {
            each(match frame {
                Frame::Message(m) => m,
                Frame::IHave(ids) => Ok(Message::IHave { ids: ids.iter().collect() }),
            })
        });
    }

    /// `decode_each`, reading chats as `decode_payload_with` does, and leaving an `IHave` read
    /// where it lies in `bytes` (see [`Frame`]).
    pub(crate) fn decode_each_with<'b>(
        &mut self,
        bytes: &'b [u8],
        max: u32,
        known: &impl Fn(&ChatId) -> Option<Arc<Chat>>,
        mut each: impl FnMut(Frame<'b>),
    ) {
        if self.failed() {
            return;
        }
        if self.buffered() > 0 {
            self.push(bytes);
            while let Some(frame) = self.next_frame_with(max, known) {
                each(Frame::Message(frame));
            }
        } else {
            let mut rest = bytes;
            while let Some(payload) = self.payload_at(max, &mut rest) {
                each(match payload {
                    Err(e) => Frame::Message(Err(e)),
                    Ok(p) => match ihave_in_place(p) {
                        Some(ids) => Frame::IHave(ids),
                        None => Frame::Message(self.decode(p, known)),
                    },
                });
            }
            if self.failed() {
                return;
            }
            if !rest.is_empty() {
                let p = self.pending.get_or_insert_with(Box::default);
                p.buf.clear();
                p.start = 0;
                p.buf.extend_from_slice(rest);
            }
        }
        if self.buffered() == 0 && !self.failed() {
            self.pending = None;
        }
    }

    /// Takes the first whole frame off `avail`, if there is one.
    fn frame_at(
        &mut self,
        max: u32,
        avail: &mut &[u8],
        known: &impl Fn(&ChatId) -> Option<Arc<Chat>>,
    ) -> Option<Result<Message, WireError>> {
        Some(match self.payload_at(max, avail)? {
            Ok(payload) => self.decode(payload, known),
            Err(e) => Err(e),
        })
    }

    /// Decodes a frame's payload; a fatal error ends the stream.
    fn decode(&mut self, payload: &[u8], known: &impl Fn(&ChatId) -> Option<Arc<Chat>>) -> Result<Message, WireError> {
        match decode_payload_with(payload, known) {
            Err(e) if e.is_fatal() => Err(self.fail(e)),
            other => other,
        }
    }

    /// Takes the payload of the first whole frame off `avail`, if there is one: an error if its
    /// length is over the limit (fatal: the stream has failed).
    fn payload_at<'b>(&mut self, max: u32, avail: &mut &'b [u8]) -> Option<Result<&'b [u8], WireError>> {
        if self.failed() || avail.len() < HEADER_BYTES {
            return None;
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
        if len > max {
            let (len, max) = (len as usize, max as usize);
            return Some(Err(self.fail(WireError::TooLarge { len, max })));
        }
        let len = len as usize;
        if avail.len() < HEADER_BYTES + len {
            return None;
        }
        let payload = &avail[HEADER_BYTES..HEADER_BYTES + len];
        *avail = &avail[HEADER_BYTES + len..];
        Some(Ok(payload))
    }

    fn buffered(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.buf.len() - p.start)
    }

    fn next_frame(&mut self, max: u32) -> Option<Result<Message, WireError>> {
        self.next_frame_with(max, &no_known_chats)
    }

    fn next_frame_with(
        &mut self,
        max: u32,
        known: &impl Fn(&ChatId) -> Option<Arc<Chat>>,
    ) -> Option<Result<Message, WireError>> {
        let mut p = self.pending.take()?;
        if p.failed {
            self.pending = Some(p);
            return None;
        }
        let mut avail = &p.buf[p.start..];
        let before = avail.len();
        let frame = self.frame_at(max, &mut avail, known);
        let taken = before - avail.len();
        if !self.failed() {
            p.start += taken;
            self.pending = Some(p);
        }
        frame
    }

    /// Drops what is buffered and refuses everything from now on. The flag is kept in the box
    /// (a few bytes, after an error that ends the connection) so that the decoder stays one word.
    fn fail(&mut self, e: WireError) -> WireError {
        self.pending = Some(Box::new(Pending { buf: Vec::new(), start: 0, failed: true }));
        e
    }

    /// Whether the decoder holds a buffer for bytes (tests: an idle one should not).
    #[cfg(test)]
    fn holds_buffer(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.failed)
    }
}

impl Frames {
    /// Cache hint (see [`crate::hint`]) for a held partial frame, which the next bytes extend.
    pub(crate) fn prefetch(&self) {
        if let Some(pending) = &self.pending {
            crate::hint::value(&**pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Ed25519Keys;
    use crate::sync::{Summary, SyncRange};
    use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

    fn arb_id(g: &mut Gen) -> ChatId {
        let mut b = [0u8; 16];
        for x in &mut b {
            *x = u8::arbitrary(g);
        }
        ChatId(b)
    }

    fn arb_addr(g: &mut Gen) -> SocketAddr {
        if bool::arbitrary(g) {
            SocketAddr::from((u32::arbitrary(g).to_be_bytes(), u16::arbitrary(g)))
        } else {
            SocketAddr::from((u128::arbitrary(g).to_be_bytes(), u16::arbitrary(g)))
        }
    }

    #[derive(Clone, Debug)]
    struct AnyMessage(Message);

    impl Arbitrary for AnyMessage {
        fn arbitrary(g: &mut Gen) -> Self {
            let keys = Ed25519Keys::from_seed(u64::arbitrary(g) % 8);
            let ids = |g: &mut Gen| (0..usize::arbitrary(g) % 8).map(|_| arb_id(g)).collect::<Vec<_>>();
            let msg = match u8::arbitrary(g) % 14 {
                11 => Message::Prune,
                12 => Message::Graft { ids: ids(g) },
                13 => Message::Reply {
                    hops: u8::arbitrary(g),
                    chat: Arc::new(Chat::new(&keys, arb_id(g), &String::arbitrary(g), Body::Leave)),
                },
                0..=2 => {
                    let body = match u8::arbitrary(g) % 3 {
                        0 => Body::Text(String::arbitrary(g)),
                        1 => Body::Join,
                        _ => Body::Leave,
                    };
                    let chat = Chat::new(&keys, arb_id(g), &String::arbitrary(g), body);
                    Message::Chat { ttl: u8::arbitrary(g), hops: u8::arbitrary(g), chat: Arc::new(chat) }
                }
                3 => Message::IHave { ids: ids(g) },
                4 => Message::IWant { ids: ids(g) },
                5 => Message::Sync {
                    ranges: (0..usize::arbitrary(g) % 4)
                        .map(|_| SyncRange {
                            lower: arb_id(g),
                            upper: arb_id(g),
                            summary: if bool::arbitrary(g) {
                                Summary::Fingerprint { count: u32::arbitrary(g), hash: u128::arbitrary(g) }
                            } else {
                                Summary::Ids(ids(g))
                            },
                        })
                        .collect(),
                },
                6 => Message::Ping { nonce: u64::arbitrary(g) },
                7 => Message::Pong { nonce: u64::arbitrary(g) },
                8 => Message::PeerRequest,
                9 => Message::PeerResponse { addrs: (0..usize::arbitrary(g) % 5).map(|_| arb_addr(g)).collect() },
                _ => Message::Announce { listen_port: u16::arbitrary(g) },
            };
            AnyMessage(msg)
        }
    }

    #[test]
    fn every_message_round_trips() {
        fn prop(m: AnyMessage) -> bool {
            let bytes = encode(&m.0);
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            d.push(&bytes);
            matches!(d.next_frame(), Some(Ok(ref back)) if *back == m.0) && d.next_frame().is_none()
        }
        QuickCheck::new().tests(300).quickcheck(prop as fn(AnyMessage) -> bool);
    }

    /// Many frames, cut at arbitrary points, come out whole and in order.
    #[test]
    fn any_chunking_yields_the_same_frames() {
        fn prop(msgs: Vec<AnyMessage>, cuts: Vec<u8>) -> bool {
            let mut stream = Vec::new();
            for m in &msgs {
                encode_into(&m.0, &mut stream, DEFAULT_MAX_FRAME_BYTES).unwrap();
            }
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            let mut out = Vec::new();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = (cuts.get(i).copied().unwrap_or(7) as usize % 40 + 1).min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                i += 1;
                while let Some(f) = d.next_frame() {
                    out.push(f.unwrap());
                }
            }
            out.len() == msgs.len() && out.iter().zip(&msgs).all(|(a, b)| *a == b.0)
        }
        QuickCheck::new().tests(200).quickcheck(prop as fn(Vec<AnyMessage>, Vec<u8>) -> bool);
    }

    /// Arbitrary bytes in arbitrary chunks never panic, and memory stays bounded.
    #[test]
    fn garbage_never_panics() {
        fn prop(chunks: Vec<Vec<u8>>) -> TestResult {
            let max = 1024;
            let mut d = FrameDecoder::new(max);
            for c in &chunks {
                d.push(c);
                while let Some(r) = d.next_frame() {
                    let _ = r;
                }
                if d.buffered() > max + 4 + c.len() {
                    return TestResult::failed();
                }
            }
            TestResult::passed()
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Vec<Vec<u8>>) -> TestResult);
    }

    /// `decode` (frames decoded in place) gives exactly what `push` then `next_frame` gives, for
    /// valid frames, garbage and anything between, cut anywhere; and it holds no buffer between
    /// frames.
    #[test]
    fn decode_in_place_matches_push_and_next_frame() {
        fn prop(msgs: Vec<AnyMessage>, garbage: Vec<u8>, at: u8, cuts: Vec<u8>) -> bool {
            let mut stream = Vec::new();
            for m in &msgs {
                encode_into(&m.0, &mut stream, DEFAULT_MAX_FRAME_BYTES).unwrap();
            }
            let at = (at as usize).min(stream.len());
            stream.splice(at..at, garbage);
            let (mut a, mut b) = (FrameDecoder::new(2048), FrameDecoder::new(2048));
            let (mut via_push, mut via_decode) = (Vec::new(), Vec::new());
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = (cuts.get(i).copied().unwrap_or(50) as usize % 300 + 1).min(rest.len());
                a.push(&rest[..n]);
                while let Some(f) = a.next_frame() {
                    via_push.push(f);
                }
                b.decode(&rest[..n], &mut via_decode);
                if b.buffered() == 0 && b.frames.holds_buffer() {
                    return false;
                }
                rest = &rest[n..];
                i += 1;
            }
            via_push == via_decode && a.buffered() == b.buffered()
        }
        QuickCheck::new().tests(1000).quickcheck(prop as fn(Vec<AnyMessage>, Vec<u8>, u8, Vec<u8>) -> bool);
    }

    /// Valid frames with arbitrary payload bytes: an error value, never a panic, and the stream
    /// goes on (a malformed frame is skipped).
    #[test]
    fn framed_garbage_is_skipped() {
        fn prop(payload: Vec<u8>) -> bool {
            let mut stream = Vec::new();
            stream.extend_from_slice(&((payload.len() + 2) as u32).to_be_bytes());
            stream.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
            stream.extend_from_slice(&payload);
            stream.extend_from_slice(&encode(&Message::Ping { nonce: 9 }));
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            d.push(&stream);
            let _first = d.next_frame();
            matches!(d.next_frame(), Some(Ok(Message::Ping { nonce: 9 })))
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn oversized_length_fails_before_buffering() {
        let mut d = FrameDecoder::new(1000);
        d.push(&[0, 0, 0x10, 0]); // 4096 bytes announced
        assert_eq!(d.next_frame(), Some(Err(WireError::TooLarge { len: 4096, max: 1000 })));
        d.push(&[0; 5000]);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.next_frame(), None);
    }

    #[test]
    fn other_version_is_a_clear_fatal_error() {
        let mut frame = encode(&Message::PeerRequest);
        frame[4..6].copy_from_slice(&7u16.to_be_bytes());
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        d.push(&frame);
        let err = d.next_frame().unwrap().unwrap_err();
        assert!(err.is_fatal());
        assert_eq!(err.to_string(), "peer speaks protocol version 7, this node speaks version 2");
    }

    #[test]
    fn huge_claimed_vector_is_refused_without_allocating() {
        // IHave (variant 4) claiming u64::MAX ids in a tiny frame.
        let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
        payload.extend_from_slice(&[4, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(decode_payload(&payload), Err(WireError::Malformed(_))));
    }

    fn bincode_body(msg: &Message) -> Vec<u8> {
        bincode::serde::encode_to_vec(msg, config()).unwrap()
    }

    fn bincode_decode(body: &[u8]) -> Result<Message, WireError> {
        match bincode::serde::decode_from_slice::<Message, _>(body, config()) {
            Ok((msg, used)) if used == body.len() => Ok(msg),
            Ok((_, used)) => {
                Err(WireError::Malformed(format!("{} trailing bytes after the message", body.len() - used)))
            }
            Err(e) => Err(WireError::Malformed(e.to_string())),
        }
    }

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

    fn framed_body(msg: &Message) -> Vec<u8> {
        encode(msg)[HEADER_BYTES + VERSION_BYTES..].to_vec()
    }

    fn decode_body(body: &[u8]) -> Result<Message, WireError> {
        let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
        payload.extend_from_slice(body);
        decode_payload(&payload)
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

    fn bincode_hello(bytes: &[u8]) -> Result<Hello, WireError> {
        match bincode::serde::decode_from_slice::<Hello, _>(bytes, config()) {
            Ok((hello, used)) if used == bytes.len() => Ok(hello),
            Ok(_) => Err(WireError::Malformed("trailing bytes after Hello".into())),
            Err(e) => Err(WireError::Malformed(e.to_string())),
        }
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
