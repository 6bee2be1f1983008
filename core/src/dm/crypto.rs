//! The sessions interface: what the node asks of a double ratchet, and nothing more.
//!
//! One implementation holds this identity's X25519 keys and one session (or a few, while two
//! first contacts cross) per peer. The node never sees a key or a chain; it hands plaintext in and
//! gets ciphertext out. See the [module docs](super) for why this is a trait.

use serde::{Deserialize, Serialize};

use crate::identity::PeerId;
use crate::random::Rng;

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct DhKey(pub [u8; 32]);

/// The X25519 keys an identity publishes in its bundle.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Prekeys {
    /// Long-term: authenticates the session (Olm's triple Diffie-Hellman uses it).
    pub identity: DhKey,
    /// Medium-term, for first contact while the owner is offline (Olm's fallback key): not used up
    /// by a first message, so a bundle stays valid however many peers read it; replaced by
    /// [`DmCrypto::rotate_prekey`] and a new bundle.
    pub prekey: DhKey,
}

/// Why the crypto refused. None of these changes a committed session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("no session with this peer; start one from its bundle")]
    NoSession,
    #[error("the peer's keys are unusable")]
    BadKeys,
    /// Altered, replayed, from another session, or its key is gone (too old, too far ahead).
    #[error("the message cannot be decrypted")]
    Undecryptable,
}

/// A double ratchet with this identity's keys.
///
/// `rng` is the node's seeded RNG: an implementation that draws randomness must draw it from there
/// (the stand-in does); one that cannot (vodozemac) documents it. Implementations keep a bounded
/// number of sessions.
pub trait DmCrypto: Send {
    /// The keys to publish in this identity's bundle.
    fn prekeys(&self) -> Prekeys;

    /// Makes a new prekey (the previous one still opens first messages already in flight until the
    /// next rotation) and returns the keys to publish.
    fn rotate_prekey(&mut self, rng: &mut Rng) -> Prekeys;

    /// Whether a committed session with `peer` exists.
    fn has_session(&self, peer: &PeerId) -> bool;

    /// Starts a session with `peer` from the keys in its verified bundle (first contact), in
    /// front of any session already there.
    fn start_session(&mut self, rng: &mut Rng, peer: PeerId, theirs: &Prekeys) -> Result<(), CryptoError>;

    /// Encrypts for `peer` with the newest session; the ratchet moves on.
    fn encrypt(&mut self, rng: &mut Rng, peer: &PeerId, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;

    /// Decrypts a message `from` claims to have sent. What it does to the sessions (a ratchet
    /// step, a used-up key, a new session from a first message) stays *pending* until
    /// [`confirm`](DmCrypto::confirm) or [`discard`](DmCrypto::discard), one of which the caller
    /// calls next: it first checks, inside the plaintext, that `from` really wrote it and that it
    /// agrees with its envelope. Otherwise anyone could install a session under `from`'s name and
    /// read the replies, or burn a genuine message's key by relabelling its envelope.
    fn decrypt(&mut self, rng: &mut Rng, from: &PeerId, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError>;

    /// The message just decrypted from `from` was authentic: its session's new state is kept, and
    /// that session is the one used for replies.
    fn confirm(&mut self, from: &PeerId);

    /// The message just decrypted from `from` was not authentic: the sessions stay as they were.
    fn discard(&mut self, from: &PeerId);

    /// Everything to make this ratchet again after a restart (the account and the committed
    /// sessions; secret keys in the clear), for the implementation's own constructor to read back;
    /// `None` if it cannot be saved. The application calls it after each batch of direct-message
    /// events, so what is on disk never lags a message shown.
    fn save(&self) -> Option<Vec<u8>> {
        None
    }
}
