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
//!
//! A private room's keys come from its secret *and its owner's key*: an invite that named another
//! owner would lead to another room, so every member agrees on who the owner is.
//!
//! **Epochs.** A private room's chats are sealed with the key of the room's current *epoch*. Epoch
//! zero's key comes from the secret; each later epoch (after a member is removed) has a random key
//! of its own, handed to each remaining member sealed with the direct-message cryptography (see
//! `node/moderation.rs`). Its seal key is derived from it, and a sealed text names its epoch, so
//! whoever holds only the secret, or an older epoch's key, cannot open it.

use core::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::chat::ChatId;
use crate::identity::{hex, PublicKey};

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

/// Bytes of the nonce in a sealed text.
pub const NONCE_BYTES: usize = 24;
/// Bytes of the epoch id that leads a sealed text.
pub const EPOCH_BYTES: usize = 16;
/// Bytes the seal adds to a text: the epoch id, the nonce and the Poly1305 tag.
pub const SEAL_OVERHEAD: usize = EPOCH_BYTES + NONCE_BYTES + 16;
/// The epoch whose key comes from the room's secret.
pub const FIRST_EPOCH: ChatId = ChatId::MIN;

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
    /// The epoch `seal` belongs to.
    epoch: ChatId,
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

    /// The keys of a room without an owner (a public room).
    pub fn new(secret: &RoomSecret) -> RoomKeys {
        RoomKeys::with_owner(secret, None)
    }

    /// The keys of a room: with `owner`, a private room's, bound to its owner's key.
    pub fn with_owner(secret: &RoomSecret, owner: Option<&PublicKey>) -> RoomKeys {
        let mut ikm = secret.0.to_vec();
        if let Some(o) = owner {
            ikm.extend_from_slice(&o.0);
        }
        let hk = Hkdf::<Sha256>::new(Some(b"p2p-chat/room/v1"), &ikm);
        let (mut id, mut seal, mut member) = ([0u8; 16], [0u8; 32], [0u8; 32]);
        for (info, out) in [(&b"id"[..], &mut id[..]), (b"seal", &mut seal), (b"member", &mut member)] {
            hk.expand(info, out).expect("16 and 32 bytes are valid HKDF-SHA256 lengths");
        }
        // The all-zero id names the default room; a secret that hashed to it (2^-128) would merge
        // the two, so it is nudged.
        if id == RoomId::DEFAULT.0 {
            id[0] = 1;
        }
        RoomKeys { id: RoomId(id), seal, member, epoch: FIRST_EPOCH }
    }

    /// The same room's keys for epoch `epoch`, whose key is `key`.
    pub fn for_epoch(&self, epoch: ChatId, key: &[u8; 32]) -> RoomKeys {
        let mut seal = [0u8; 32];
        epoch_hkdf(key).expand(b"seal", &mut seal).expect("32 bytes is a valid HKDF-SHA256 length");
        RoomKeys { id: self.id, seal, member: self.member, epoch }
    }

    pub fn epoch(&self) -> ChatId {
        self.epoch
    }

    /// What a rekey publishes of its key: a commitment that lets a member check a key it was
    /// handed, and tells nothing of it.
    pub fn epoch_check(key: &[u8; 32]) -> [u8; 32] {
        let mut check = [0u8; 32];
        epoch_hkdf(key).expand(b"check", &mut check).expect("32 bytes is a valid HKDF-SHA256 length");
        check
    }

    /// The epoch a sealed text names.
    pub fn sealed_epoch(sealed: &[u8]) -> Option<ChatId> {
        Some(ChatId(sealed.get(..EPOCH_BYTES)?.try_into().ok()?))
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

    /// `text` sealed with the room key of this epoch: the epoch id, the nonce, then the
    /// ciphertext and its tag. `aad` binds the seal to the chat it is the body of (see `Chat`).
    pub fn seal(&self, nonce: [u8; NONCE_BYTES], aad: &[u8], text: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.seal).into());
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: text, aad })
            .expect("sealing into memory cannot fail");
        let mut out = Vec::with_capacity(EPOCH_BYTES + NONCE_BYTES + ct.len());
        out.extend_from_slice(&self.epoch.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// The text of `sealed`, if it was sealed with this room's key of this epoch over the same
    /// `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (epoch, rest) = sealed.split_at_checked(EPOCH_BYTES)?;
        if epoch != self.epoch.0 {
            return None;
        }
        let (nonce, ct) = rest.split_at_checked(NONCE_BYTES)?;
        let cipher = XChaCha20Poly1305::new((&self.seal).into());
        cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad }).ok()
    }
}

fn epoch_hkdf(key: &[u8; 32]) -> Hkdf<Sha256> {
    Hkdf::<Sha256>::new(Some(b"p2p-chat/room/epoch/v1"), key)
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
    fn an_epochs_key_opens_only_its_epoch_and_an_owner_makes_another_room() {
        let k = RoomKeys::new(&RoomSecret([1; 32]));
        let e1 = k.for_epoch(ChatId([1; 16]), &[7; 32]);
        let s = e1.seal([9; NONCE_BYTES], b"c", b"after");
        assert_eq!(RoomKeys::sealed_epoch(&s), Some(ChatId([1; 16])));
        assert_eq!(e1.open(b"c", &s).as_deref(), Some(&b"after"[..]));
        assert_eq!(k.open(b"c", &s), None, "the secret alone does not open a later epoch");
        assert_eq!(k.for_epoch(ChatId([1; 16]), &[8; 32]).open(b"c", &s), None);
        assert_ne!(RoomKeys::epoch_check(&[7; 32]), RoomKeys::epoch_check(&[8; 32]));
        let owned = RoomKeys::with_owner(&RoomSecret([1; 32]), Some(&PublicKey([3; 32])));
        let other = RoomKeys::with_owner(&RoomSecret([1; 32]), Some(&PublicKey([4; 32])));
        assert!(owned.id != k.id && owned.id != other.id);
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
