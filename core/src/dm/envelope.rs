//! What travels, and what it carries inside.
//!
//! An [`Envelope`] is what mailboxes and relays see: its id, sender and recipient peer ids, its
//! expiry, and ciphertext whose plaintext was padded to a size bucket. The sender's peer id is in
//! the clear because the recipient needs it to pick the session (and a mailbox learns who deposits
//! anyway); hiding it (sealed sender) is not attempted.
//!
//! Inside is a [`Message`], signed by the sender's identity key over the envelope's fields again.
//! [`open`] accepts it only if the signature holds and every field agrees with the envelope, so a
//! message altered, re-addressed (an envelope for B re-sent to C), relabelled (another id or
//! expiry), replayed or not from its claimed sender is refused. The signature is what binds a
//! session to an identity: a first message makes a session that is kept only once the message
//! inside proves to be from the peer it claims (the price: a signed message is not deniable, as
//! Olm's are on their own).
//!
//! ## The signed plaintext
//!
//! All integers big-endian. Signed: `"p2p-chat/dm/v1"` then every field below but the signature.
//!
//! | field      | bytes | |
//! |------------|-------|-|
//! | kind       | 1     | 1 text, 2 delivered, 3 read, 4 typing started, 5 typing stopped, 6 room key |
//! | id         | 16    | UUIDv7, equal to the envelope's |
//! | sender     | 32    | Ed25519 public key; its peer id equals the envelope's `from` |
//! | to         | 32    | recipient peer id, equal to the envelope's `to` |
//! | sent_at    | 8     | microseconds since the Unix epoch |
//! | expires_at | 8     | microseconds, equal to the envelope's |
//! | body       | ...   | text: length (4) and UTF-8; receipts: count (2) and 16-byte ids; typing: none; room key: room id (16), epoch (16), key (32) |
//! | signature  | 64    | |
//!
//! Then [`pad`](super::pad) and the ratchet.

use serde::{Deserialize, Serialize};

use super::crypto::{CryptoError, DmCrypto};
use super::pad::{pad, unpad, MAX_PLAINTEXT};
use super::replay::{Replay, ReplayGuard};
use super::{DmId, MAX_EXPIRY};
use crate::chat::ChatId;
use crate::identity::{Keys, PeerId, PublicKey, Signature};
use crate::random::Rng;
use crate::rooms::RoomId;
use crate::time::Time;

/// Separates these signatures from every other use of the identity key.
const DOMAIN: &[u8] = b"p2p-chat/dm/v1";
/// Most ids one receipt covers.
pub const MAX_RECEIPT_IDS: usize = 256;
/// Longest ciphertext anyone accepts: the largest bucket and room for the ratchet's header and MAC.
pub const MAX_CIPHERTEXT: usize = 16384 + 512;
const FIXED_BYTES: usize = 1 + 16 + 32 + 32 + 8 + 8;
const SIGNATURE_BYTES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: DmId,
    pub from: PeerId,
    pub to: PeerId,
    pub expires_at: Time,
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Text(String),
    /// The messages `of`, from the receipt's recipient, reached the receipt's sender (or were read).
    Receipt {
        kind: ReceiptKind,
        of: Vec<DmId>,
    },
    /// The sender started (`true`) or stopped typing.
    Typing(bool),
    /// The key of a private room's epoch (see `rooms::keys`), handed to a member.
    RoomKey {
        room: RoomId,
        epoch: ChatId,
        key: [u8; 32],
    },
}

/// A direct message as its recipient sees it once opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: DmId,
    pub sender: PublicKey,
    pub to: PeerId,
    pub sent_at: Time,
    pub expires_at: Time,
    pub body: Body,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the message's sender is not this identity")]
    NotMine,
    #[error("the message does not fit the largest size bucket")]
    TooLarge,
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

/// Why an envelope was refused. Nothing was kept: no session, no replay entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("addressed to someone else")]
    NotForMe,
    #[error("expired")]
    Expired,
    #[error("expires further ahead than anyone keeps messages")]
    ExpiryTooFar,
    #[error("{0}")]
    Replayed(#[from] Replay),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("the plaintext is not a well-formed message")]
    Malformed,
    #[error("not signed by its claimed sender")]
    BadSignature,
    #[error("the signed message disagrees with its envelope")]
    Mismatch,
}

/// Signs `msg` as this identity, pads it and encrypts it for `msg.to`, with whom `crypto` must
/// have a session (started from the recipient's verified bundle, or made by its first message).
pub fn seal(crypto: &mut dyn DmCrypto, keys: &dyn Keys, rng: &mut Rng, msg: &Message) -> Result<Envelope, SealError> {
    if msg.sender != keys.public_key() {
        return Err(SealError::NotMine);
    }
    let mut plain = encode_unsigned(msg).ok_or(SealError::TooLarge)?;
    let signature = keys.sign(&[DOMAIN, &plain].concat());
    plain.extend_from_slice(&signature.0);
    let padded = pad(&plain).ok_or(SealError::TooLarge)?;
    let ciphertext = crypto.encrypt(rng, &msg.to, &padded)?;
    Ok(Envelope { id: msg.id, from: msg.sender.peer_id(), to: msg.to, expires_at: msg.expires_at, ciphertext })
}

/// Opens an envelope addressed to this identity. On success the message is recorded in `replay`
/// and a first message's session is kept; on any error nothing is kept.
pub fn open(
    crypto: &mut dyn DmCrypto,
    keys: &dyn Keys,
    rng: &mut Rng,
    replay: &mut ReplayGuard,
    now: Time,
    env: &Envelope,
) -> Result<Message, OpenError> {
    let me = keys.public_key().peer_id();
    if env.to != me {
        return Err(OpenError::NotForMe);
    }
    if env.expires_at <= now {
        return Err(OpenError::Expired);
    }
    if env.expires_at > now + MAX_EXPIRY {
        return Err(OpenError::ExpiryTooFar);
    }
    if env.ciphertext.len() > MAX_CIPHERTEXT {
        return Err(OpenError::Malformed);
    }
    // Before decrypting: a replay is refused without touching the ratchet.
    replay.check(env.id, env.expires_at)?;
    let padded = crypto.decrypt(rng, &env.from, &env.ciphertext)?;
    match authentic(keys, env, &padded) {
        Ok(msg) => {
            crypto.confirm(&env.from);
            replay.insert(env.id, env.expires_at);
            Ok(msg)
        }
        Err(e) => {
            crypto.discard(&env.from);
            Err(e)
        }
    }
}

/// The message inside, if it is signed by the sender the envelope names and agrees with it.
fn authentic(keys: &dyn Keys, env: &Envelope, padded: &[u8]) -> Result<Message, OpenError> {
    let plain = unpad(padded).ok_or(OpenError::Malformed)?;
    let split = plain.len().checked_sub(SIGNATURE_BYTES).ok_or(OpenError::Malformed)?;
    let (signed, sig) = plain.split_at(split);
    let msg = decode_unsigned(signed).ok_or(OpenError::Malformed)?;
    let sig = Signature(sig.try_into().expect("64 bytes"));
    // Cheap comparisons before the signature.
    if msg.sender.peer_id() != env.from || msg.to != env.to || msg.id != env.id || msg.expires_at != env.expires_at {
        return Err(OpenError::Mismatch);
    }
    if !keys.verify(&msg.sender, &[DOMAIN, signed].concat(), &sig) {
        return Err(OpenError::BadSignature);
    }
    Ok(msg)
}

fn kind_byte(body: &Body) -> u8 {
    match body {
        Body::Text(_) => 1,
        Body::Receipt { kind: ReceiptKind::Delivered, .. } => 2,
        Body::Receipt { kind: ReceiptKind::Read, .. } => 3,
        Body::Typing(true) => 4,
        Body::Typing(false) => 5,
        Body::RoomKey { .. } => 6,
    }
}

/// Every field but the signature, or `None` if it cannot fit a bucket.
fn encode_unsigned(msg: &Message) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(FIXED_BYTES + 64);
    out.push(kind_byte(&msg.body));
    out.extend_from_slice(&msg.id.0);
    out.extend_from_slice(&msg.sender.0);
    out.extend_from_slice(&msg.to.0);
    out.extend_from_slice(&msg.sent_at.as_micros().to_be_bytes());
    out.extend_from_slice(&msg.expires_at.as_micros().to_be_bytes());
    match &msg.body {
        Body::Text(t) => {
            if t.len() > MAX_PLAINTEXT {
                return None;
            }
            out.extend_from_slice(&(t.len() as u32).to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        Body::Receipt { of, .. } => {
            if of.len() > MAX_RECEIPT_IDS {
                return None;
            }
            out.extend_from_slice(&(of.len() as u16).to_be_bytes());
            of.iter().for_each(|id| out.extend_from_slice(&id.0));
        }
        Body::Typing(_) => {}
        Body::RoomKey { room, epoch, key } => {
            out.extend_from_slice(&room.0);
            out.extend_from_slice(&epoch.0);
            out.extend_from_slice(key);
        }
    }
    (out.len() + SIGNATURE_BYTES <= MAX_PLAINTEXT).then_some(out)
}

fn decode_unsigned(bytes: &[u8]) -> Option<Message> {
    let mut r = Reader(bytes);
    let kind = r.take::<1>()?[0];
    let id = DmId(r.take()?);
    let sender = PublicKey(r.take()?);
    let to = PeerId(r.take()?);
    let sent_at = Time::from_micros(u64::from_be_bytes(r.take()?));
    let expires_at = Time::from_micros(u64::from_be_bytes(r.take()?));
    let body = match kind {
        1 => {
            let len = u32::from_be_bytes(r.take()?) as usize;
            Body::Text(String::from_utf8(r.slice(len)?.to_vec()).ok()?)
        }
        2 | 3 => {
            let n = usize::from(u16::from_be_bytes(r.take()?));
            if n > MAX_RECEIPT_IDS {
                return None;
            }
            let of = (0..n).map(|_| r.take().map(DmId)).collect::<Option<Vec<_>>>()?;
            Body::Receipt { kind: if kind == 2 { ReceiptKind::Delivered } else { ReceiptKind::Read }, of }
        }
        4 | 5 => Body::Typing(kind == 4),
        6 => Body::RoomKey { room: RoomId(r.take()?), epoch: ChatId(r.take()?), key: r.take()? },
        _ => return None,
    };
    r.0.is_empty().then_some(Message { id, sender, to, sent_at, expires_at, body })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn slice(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.slice(N)?.try_into().ok()
    }
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
