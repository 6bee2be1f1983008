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
}

/// A signed chat. Immutable once made: nodes share it behind an `Arc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub id: ChatId,
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
const CHAT_DOMAIN: &[u8] = b"p2p-chat/chat/v1";

impl Chat {
    /// Makes and signs a chat. The id's time is the signed timestamp.
    pub fn new(keys: &dyn Keys, id: ChatId, username: &str, body: Body) -> Chat {
        let author = keys.public_key();
        let bytes = signed_bytes(id, &author, username, &body);
        Chat { id, author, username: username.to_owned(), body, signature: keys.sign(&bytes) }
    }

    pub fn timestamp_ms(&self) -> u64 {
        self.id.timestamp_ms()
    }

    pub fn author_id(&self) -> PeerId {
        self.author.peer_id()
    }

    /// The exact bytes the author signed: everything in the chat except the signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(self.id, &self.author, &self.username, &self.body)
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
        write_signed(self.id, &self.author, &self.username, &self.body, |b| {
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        });
        keys.verify(&self.author, &buf[..at], &self.signature)
    }

    /// Size limits; checked before the (expensive) signature.
    pub fn is_well_formed(&self) -> bool {
        let text_ok = match &self.body {
            Body::Text(t) => t.len() <= MAX_TEXT_BYTES,
            Body::Join | Body::Leave => true,
        };
        text_ok && self.username.len() <= MAX_USERNAME_BYTES
    }
}

fn signed_bytes(id: ChatId, author: &PublicKey, username: &str, body: &Body) -> Vec<u8> {
    let mut out = Vec::with_capacity(signed_len(username, body));
    write_signed(id, author, username, body, |b| out.extend_from_slice(b));
    out
}

/// The length of what `write_signed` writes.
fn signed_len(username: &str, body: &Body) -> usize {
    let body = match body {
        Body::Text(t) => 1 + 4 + t.len(),
        Body::Join | Body::Leave => 1,
    };
    CHAT_DOMAIN.len() + 16 + 32 + 4 + username.len() + body
}

/// The bytes the author signs, piece by piece, to `put`.
fn write_signed(id: ChatId, author: &PublicKey, username: &str, body: &Body, mut put: impl FnMut(&[u8])) {
    put(CHAT_DOMAIN);
    put(&id.0);
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
    }
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
        for body in [Body::Text("x".repeat(300)), Body::Text(String::new()), Body::Join, Body::Leave] {
            let c = Chat::new(&k, ChatId::new_v7(5, &[1; 10]), "alice", body);
            assert_eq!(c.signed_bytes().len(), signed_len(&c.username, &c.body));
            assert!(c.verify(&k));
        }
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
        // Re-signed by someone else under the victim's name: valid, but bound to another key.
        let mallory = Ed25519Keys::from_seed(2);
        let forged = Chat::new(&mallory, c.id, "alice", c.body.clone());
        assert!(forged.verify(&k));
        assert_ne!(forged.author_id(), c.author_id());
    }
}
