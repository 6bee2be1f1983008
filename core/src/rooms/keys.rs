//! A room's name on the wire and its keys, all derived from one 32-byte secret.
//!
//! - A **public** room's secret is derived from its name, so anyone who knows the name can join.
//! - A **private** room's secret is random and travels only in invite codes; its id is derived
//!   from the secret like any other, so no name gives it: `/join #team` without the invite lands
//!   in the public room called `#team`, which has another secret, another id and other keys.
//! - The network's **default** room has no secret: its chats are signed but not sealed, as chats
//!   were before rooms, and every node is in it.
//!
//! From the secret, HKDF-SHA256 derives the room's id (what frames name the room by), its seal key
//! (XChaCha20-Poly1305 over every chat's text) and its membership key (HMAC-SHA256 tags that prove,
//! per connection, that a peer holds the secret; see [`RoomKeys::tag`]).

use core::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::identity::hex;

/// What frames call a room by: 16 bytes of a hash of its secret. Tells nothing of the name or key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct RoomId(pub [u8; 16]);

impl RoomId {
    /// The network's default room, which every node is in.
    pub const DEFAULT: RoomId = RoomId([0; 16]);

    pub fn is_default(&self) -> bool {
        *self == RoomId::DEFAULT
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}
impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.short())
    }
}

/// The one secret a room's keys come from. Whoever holds it is a member.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSecret(pub [u8; 32]);

impl fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomSecret(..)")
    }
}

/// Bytes of the nonce that leads a sealed text.
pub const NONCE_BYTES: usize = 24;
/// Bytes the seal adds to a text: the nonce and the Poly1305 tag.
pub const SEAL_OVERHEAD: usize = NONCE_BYTES + 16;

/// The form of a room name that identifies it: `#Rust`, `rust` and ` #rust ` are one room.
pub fn normalize(name: &str) -> String {
    name.trim().trim_start_matches('#').to_lowercase()
}

/// A room's derived keys.
#[derive(Clone)]
pub struct RoomKeys {
    pub id: RoomId,
    seal: [u8; 32],
    member: [u8; 32],
}

impl fmt::Debug for RoomKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomKeys({:?})", self.id)
    }
}

impl RoomKeys {
    /// The secret of the public room called `name` (normalised first).
    pub fn public_secret(name: &str) -> RoomSecret {
        let hk = Hkdf::<Sha256>::new(Some(b"p2p-chat/room/public/v1"), normalize(name).as_bytes());
        let mut s = [0u8; 32];
        hk.expand(b"secret", &mut s).expect("32 bytes is a valid HKDF-SHA256 length");
        RoomSecret(s)
    }

    pub fn new(secret: &RoomSecret) -> RoomKeys {
        let hk = Hkdf::<Sha256>::new(Some(b"p2p-chat/room/v1"), &secret.0);
        let (mut id, mut seal, mut member) = ([0u8; 16], [0u8; 32], [0u8; 32]);
        for (info, out) in [(&b"id"[..], &mut id[..]), (b"seal", &mut seal), (b"member", &mut member)] {
            hk.expand(info, out).expect("16 and 32 bytes are valid HKDF-SHA256 lengths");
        }
        // The all-zero id names the default room; a secret that hashed to it (2^-128) would merge
        // the two, so it is nudged.
        if id == RoomId::DEFAULT.0 {
            id[0] = 1;
        }
        RoomKeys { id: RoomId(id), seal, member }
    }

    /// Proof, for one connection, that the sender holds the room's secret: an HMAC over the
    /// connection's Noise handshake hash (`binding`, the same at both ends and at no other
    /// connection) and which end sends it. A tag shows nothing of the room to whoever cannot
    /// compute it, cannot be replayed on another connection, and cannot be echoed back by the peer
    /// (the direction differs).
    pub fn tag(&self, binding: &[u8; 32], from_initiator: bool) -> [u8; 32] {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.member).expect("HMAC takes a key of any length");
        mac.update(b"p2p-chat/room/member/v1");
        mac.update(binding);
        mac.update(&[u8::from(from_initiator)]);
        mac.finalize().into_bytes().into()
    }

    /// `text` sealed with the room key: the nonce, then the ciphertext and its tag. `aad` binds
    /// the seal to the chat it is the body of (see `Chat`).
    pub fn seal(&self, nonce: [u8; NONCE_BYTES], aad: &[u8], text: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.seal).into());
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: text, aad })
            .expect("sealing into memory cannot fail");
        let mut out = Vec::with_capacity(NONCE_BYTES + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// The text of `sealed`, if it was sealed with this room's key over the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ct) = sealed.split_at_checked(NONCE_BYTES)?;
        let cipher = XChaCha20Poly1305::new((&self.seal).into());
        cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_gives_one_public_room_and_never_a_private_one() {
        let a = RoomKeys::new(&RoomKeys::public_secret("#Rust"));
        let b = RoomKeys::new(&RoomKeys::public_secret(" rust"));
        assert_eq!(a.id, b.id);
        let private = RoomKeys::new(&RoomSecret([7; 32]));
        assert_ne!(private.id, a.id);
        assert_ne!(RoomKeys::new(&RoomKeys::public_secret("go")).id, a.id);
        assert!(!a.id.is_default());
    }

    #[test]
    fn seal_opens_only_with_the_key_and_the_same_context() {
        let k = RoomKeys::new(&RoomSecret([1; 32]));
        let other = RoomKeys::new(&RoomSecret([2; 32]));
        let s = k.seal([9; NONCE_BYTES], b"chat 1", b"hello");
        assert_eq!(k.open(b"chat 1", &s).as_deref(), Some(&b"hello"[..]));
        assert_eq!(k.open(b"chat 2", &s), None);
        assert_eq!(other.open(b"chat 1", &s), None);
        let mut flipped = s.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(k.open(b"chat 1", &flipped), None);
        assert_eq!(k.open(b"chat 1", &s[..10]), None);
        assert_eq!(s.len(), 5 + SEAL_OVERHEAD);
    }

    #[test]
    fn tags_differ_by_connection_direction_and_room() {
        let k = RoomKeys::new(&RoomSecret([1; 32]));
        let t = k.tag(&[3; 32], true);
        assert_eq!(t, k.tag(&[3; 32], true));
        assert_ne!(t, k.tag(&[3; 32], false));
        assert_ne!(t, k.tag(&[4; 32], true));
        assert_ne!(t, RoomKeys::new(&RoomSecret([2; 32])).tag(&[3; 32], true));
    }
}
