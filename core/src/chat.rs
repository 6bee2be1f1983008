//! What a chat is and what its author signs.
//!
//! A chat is the unit that gossip spreads. Join and Leave announcements are chats too (with a
//! different [`Body`]), so they are signed, deduplicated and repaired exactly like text. The hop
//! counter (TTL) is *not* part of a chat: it travels beside it in the wire frame and changes at every
//! relay, so it is left out of the signature.

use core::fmt;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::identity::{Keys, PeerId, PublicKey, Signature};
use crate::rooms::{Op, RoomId, RoomKeys, MAX_INVITE_ADDRS, NONCE_BYTES, SEAL_OVERHEAD};

/// A UUIDv7: 48 bits of Unix milliseconds, then random bits. Ids sort by creation time, which is what
/// lets history be shown in order and lets range-based sync split the id space by time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChatId(pub [u8; 16]);

impl ChatId {
    pub const MIN: ChatId = ChatId([0; 16]);
    pub const MAX: ChatId = ChatId([0xff; 16]);

    pub fn new_v7(unix_ms: u64, random: &[u8; 10]) -> ChatId {
        ChatId(*uuid::Builder::from_unix_timestamp_millis(unix_ms, random).as_uuid().as_bytes())
    }

    /// The smallest id that any chat created at or after `unix_ms` can have.
    pub fn lower_bound(unix_ms: u64) -> ChatId {
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
        ChatId(b)
    }

    pub fn timestamp_ms(&self) -> u64 {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&self.0[..6]);
        u64::from_be_bytes(b)
    }

    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    pub fn from_u128(v: u128) -> ChatId {
        ChatId(v.to_be_bytes())
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).fmt(f)
    }
}
impl fmt::Debug for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChatId({self})")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Text(String),
    /// The author has come online.
    Join,
    /// The author is leaving on purpose (not a crash).
    Leave,
    /// Text sealed with the room's key (every room but the default one): see [`Chat::open`].
    Sealed(Vec<u8>),
    /// An operation of a private room's membership log (see [`crate::rooms::log`]): signed like
    /// any chat, not sealed.
    Op(Op),
}

/// A signed chat. Immutable once made: nodes share it behind an `Arc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub id: ChatId,
    /// The room it was written in, signed: a chat cannot be replayed into another room.
    pub room: RoomId,
    pub author: PublicKey,
    pub username: String,
    pub body: Body,
    pub signature: Signature,
}

/// Where a node gets the copy of a chat it keeps. Chats are immutable and signed, so nodes that
/// share a process (the simulator's thousands of virtual nodes) can keep one copy of each between
/// them, as the simulator does; a real node, alone in its process, needs none and keeps what it
/// decoded. One interner serves every node that shares it, through `&self`: each node holding a
/// box of its own was, at 100,000 nodes, one more cold line to read for nearly every chat frame.
pub trait ChatInterner: Send + Sync {
    /// `chat` was just verified and accepted: the copy to keep, equal to it (an unequal chat that
    /// claims the same id must come back as itself).
    fn intern(&self, chat: Arc<Chat>) -> Arc<Chat>;

    /// The copy kept of the chat `id`, if any: a frame that carries that very chat is then read
    /// as it, without building another copy only to drop it.
    fn get(&self, _id: &ChatId) -> Option<Arc<Chat>> {
        None
    }
}

/// Longest username, in bytes, that a node accepts.
pub const MAX_USERNAME_BYTES: usize = 64;
/// Longest chat text, in bytes, that a node accepts.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Separates chat signatures from every other use of the same key (the handshake signs too).
const CHAT_DOMAIN: &[u8] = b"p2p-chat/chat/v2";

impl Chat {
    /// Makes and signs a chat of the default room. The id's time is the signed timestamp.
    pub fn new(keys: &dyn Keys, id: ChatId, username: &str, body: Body) -> Chat {
        Chat::in_room(keys, id, RoomId::DEFAULT, username, body)
    }

    /// Makes and signs a chat of `room` (whose text, if it is not the default room, is sealed
    /// already: see [`Chat::sealed`]).
    pub fn in_room(keys: &dyn Keys, id: ChatId, room: RoomId, username: &str, body: Body) -> Chat {
        let author = keys.public_key();
        let bytes = signed_bytes(id, room, &author, username, &body);
        Chat { id, room, author, username: username.to_owned(), body, signature: keys.sign(&bytes) }
    }

    /// Makes a chat of a room other than the default: `text` is sealed with the room key under a
    /// fresh `nonce`, bound to the chat's id, room, author and name, and the author signs the
    /// sealed chat. Whoever relays or stores it without the key holds ciphertext.
    pub fn sealed(
        keys: &dyn Keys,
        id: ChatId,
        room: &RoomKeys,
        username: &str,
        text: &str,
        nonce: [u8; NONCE_BYTES],
    ) -> Chat {
        let aad = seal_context(id, room.id, &keys.public_key(), username);
        let body = Body::Sealed(room.seal(nonce, &aad, text.as_bytes()));
        Chat::in_room(keys, id, room.id, username, body)
    }

    /// The text of a sealed chat, if `room` holds its key and nothing of it was changed.
    pub fn open(&self, room: &RoomKeys) -> Option<String> {
        let Body::Sealed(sealed) = &self.body else { return None };
        if room.id != self.room {
            return None;
        }
        let aad = seal_context(self.id, self.room, &self.author, &self.username);
        String::from_utf8(room.open(&aad, sealed)?).ok()
    }

    pub fn timestamp_ms(&self) -> u64 {
        self.id.timestamp_ms()
    }

    pub fn author_id(&self) -> PeerId {
        self.author.peer_id()
    }

    /// The exact bytes the author signed: everything in the chat except the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(self.id, self.room, &self.author, &self.username, &self.body)
    }

    pub fn verify(&self, keys: &dyn Keys) -> bool {
        // Every chat a node accepts is verified, and nearly all are short: their signed bytes are
        // put together on the stack instead of in an allocation.
        const ON_STACK: usize = 256;
        let mut buf = [0u8; ON_STACK];
        let mut at = 0;
        if signed_len(&self.username, &self.body) > ON_STACK {
            return keys.verify(&self.author, &self.signed_bytes(), &self.signature);
        }
        write_signed(self.id, self.room, &self.author, &self.username, &self.body, |b| {
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        });
        keys.verify(&self.author, &buf[..at], &self.signature)
    }

    /// Size limits; checked before the (expensive) signature.
    pub fn is_well_formed(&self) -> bool {
        // Presence is the default room's; a room's chats are text, sealed.
        let body_ok = match &self.body {
            Body::Text(t) => t.len() <= MAX_TEXT_BYTES && self.room.is_default(),
            Body::Join | Body::Leave => self.room.is_default(),
            Body::Sealed(s) => s.len() <= MAX_TEXT_BYTES + SEAL_OVERHEAD && !self.room.is_default(),
            Body::Op(Op::Join(p)) => p.addrs.len() <= MAX_INVITE_ADDRS && !self.room.is_default(),
            Body::Op(_) => !self.room.is_default(),
        };
        body_ok && self.username.len() <= MAX_USERNAME_BYTES
    }
}

fn signed_bytes(id: ChatId, room: RoomId, author: &PublicKey, username: &str, body: &Body) -> Vec<u8> {
    let mut out = Vec::with_capacity(signed_len(username, body));
    write_signed(id, room, author, username, body, |b| out.extend_from_slice(b));
    out
}

/// What a sealed text is bound to: the chat around it, so it cannot be moved into another chat,
/// room, author or name.
fn seal_context(id: ChatId, room: RoomId, author: &PublicKey, username: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 16 + 32 + username.len());
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&room.0);
    out.extend_from_slice(&author.0);
    out.extend_from_slice(username.as_bytes());
    out
}

/// The length of what `write_signed` writes.
fn signed_len(username: &str, body: &Body) -> usize {
    let body = match body {
        Body::Text(t) => 1 + 4 + t.len(),
        Body::Sealed(s) => 1 + 4 + s.len(),
        Body::Join | Body::Leave => 1,
        Body::Op(op) => 1 + 4 + op_bytes(op).len(),
    };
    CHAT_DOMAIN.len() + 16 + 16 + 32 + 4 + username.len() + body
}

/// The bytes the author signs, piece by piece, to `put`.
fn write_signed(id: ChatId, room: RoomId, author: &PublicKey, username: &str, body: &Body, mut put: impl FnMut(&[u8])) {
    put(CHAT_DOMAIN);
    put(&id.0);
    put(&room.0);
    put(&author.0);
    // Length prefixes keep (username, text) pairs unambiguous.
    put(&(username.len() as u32).to_be_bytes());
    put(username.as_bytes());
    match body {
        Body::Text(t) => {
            put(&[0]);
            put(&(t.len() as u32).to_be_bytes());
            put(t.as_bytes());
        }
        Body::Join => put(&[1]),
        Body::Leave => put(&[2]),
        Body::Sealed(s) => {
            put(&[3]);
            put(&(s.len() as u32).to_be_bytes());
            put(s);
        }
        Body::Op(op) => {
            let bytes = op_bytes(op);
            put(&[4]);
            put(&(bytes.len() as u32).to_be_bytes());
            put(&bytes);
        }
    }
}

/// An operation's bytes as its author signs them: its bincode encoding (section 3 of PROTOCOL.md).
pub fn op_bytes(op: &Op) -> Vec<u8> {
    bincode::serde::encode_to_vec(op, bincode::config::standard()).expect("encoding into memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Ed25519Keys;

    #[test]
    fn id_carries_time_and_sorts_by_it() {
        let a = ChatId::new_v7(1_700_000_000_000, &[0xff; 10]);
        let b = ChatId::new_v7(1_700_000_000_001, &[0; 10]);
        assert!(a < b);
        assert_eq!(a.timestamp_ms(), 1_700_000_000_000);
        assert!(ChatId::lower_bound(1_700_000_000_000) <= a);
        assert!(ChatId::lower_bound(1_700_000_000_001) > a);
    }

    #[test]
    fn signed_len_is_the_signed_length() {
        let k = Ed25519Keys::from_seed(1);
        for body in
            [Body::Text("x".repeat(300)), Body::Text(String::new()), Body::Join, Body::Leave, Body::Sealed(vec![1; 50])]
        {
            let c = Chat::new(&k, ChatId::new_v7(5, &[1; 10]), "alice", body);
            assert_eq!(c.signed_bytes().len(), signed_len(&c.username, &c.body));
            assert!(c.verify(&k));
        }
    }

    #[test]
    fn a_sealed_chat_opens_only_in_its_room_and_unchanged() {
        use crate::rooms::{RoomKeys, RoomSecret};
        let k = Ed25519Keys::from_seed(1);
        let room = RoomKeys::new(&RoomSecret([4; 32]));
        let c = Chat::sealed(&k, ChatId::new_v7(5, &[1; 10]), &room, "alice", "secret plans", [8; 24]);
        assert!(c.verify(&k) && c.is_well_formed());
        assert_eq!(c.open(&room).as_deref(), Some("secret plans"));
        assert!(!format!("{c:?}").contains("secret plans"));
        assert_eq!(c.open(&RoomKeys::new(&RoomSecret([5; 32]))), None);
        // Re-signed under another name or author, the seal no longer opens.
        let mallory = Ed25519Keys::from_seed(2);
        let stolen = Chat::in_room(&mallory, c.id, c.room, "alice", c.body.clone());
        assert!(stolen.verify(&k));
        assert_eq!(stolen.open(&room), None);
        let renamed = Chat::in_room(&k, c.id, c.room, "bob", c.body.clone());
        assert_eq!(renamed.open(&room), None);
        // Text in a room, or sealed text in the default room, is not well formed.
        assert!(!Chat::in_room(&k, c.id, c.room, "a", Body::Text("x".into())).is_well_formed());
        assert!(!Chat::new(&k, c.id, "a", c.body.clone()).is_well_formed());
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let k = Ed25519Keys::from_seed(1);
        let c = Chat::new(&k, ChatId::new_v7(5, &[1; 10]), "alice", Body::Text("hi".into()));
        assert!(c.verify(&k));
        let mut t = c.clone();
        t.body = Body::Text("hI".into());
        assert!(!t.verify(&k));
        let mut u = c.clone();
        u.username = "bob".into();
        assert!(!u.verify(&k));
        let mut i = c.clone();
        i.id = ChatId::new_v7(6, &[1; 10]);
        assert!(!i.verify(&k));
        let mut r = c.clone();
        r.room = crate::rooms::RoomId([9; 16]);
        assert!(!r.verify(&k));
        // Re-signed by someone else under the victim's name: valid, but bound to another key.
        let mallory = Ed25519Keys::from_seed(2);
        let forged = Chat::new(&mallory, c.id, "alice", c.body.clone());
        assert!(forged.verify(&k));
        assert_ne!(forged.author_id(), c.author_id());
    }
}
