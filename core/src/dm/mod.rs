//! End-to-end encrypted direct messages: the building blocks, each a small sans-IO state machine
//! that the node drives (nothing here sends, reads a clock or draws from the OS).
//!
//! - [`bundle`]: the signed key bundle an identity publishes, and the book of the newest ones seen.
//! - [`crypto`]: the [`DmCrypto`] sessions interface (a double ratchet); [`stand_in`] is its
//!   deterministic, insecure implementation for the simulator and tests, [`olm`] (feature `olm`)
//!   the production one, vodozemac's audited Olm.
//! - [`envelope`]: what travels (ciphertext padded to a size bucket, addressed, expiring) and what
//!   it carries inside (a signed message, receipt or typing notice); sealing and opening.
//! - [`replay`]: the ids already opened, so a message is accepted once.
//! - [`mailbox`]: envelopes held for offline recipients, under quotas.
//! - [`outbox`]: the sender's pending envelopes, their retries and their delivery state.
//!
//! ## Why the ratchet sits behind a trait
//!
//! The core replays from a seed, but no audited double-ratchet crate takes the caller's RNG:
//! vodozemac (0.11) draws every X25519 key it makes (session base keys and each ratchet step)
//! from the OS-seeded thread RNG of the `rand` crate; Signal's libsignal takes an RNG but is not
//! published as a crate and is AGPL. Writing a ratchet ourselves is not an option. So the core
//! defines the narrow [`DmCrypto`] interface, as [`Keys`](crate::Keys) does for signatures: every
//! method that may need randomness is handed the node's seeded [`Rng`](crate::random::Rng), the
//! stand-in uses it and replays exactly, and the vodozemac implementation (behind the `olm` feature,
//! off in the simulator) cannot and says so. Everything else in this module (padding, replay,
//! quotas, retries) is deterministic whichever implementation runs.

pub mod bundle;
pub mod crypto;
pub mod envelope;
pub mod mailbox;
#[cfg(feature = "olm")]
pub mod olm;
pub mod outbox;
mod pad;
pub mod replay;
mod sessions;
pub mod stand_in;

use core::fmt;
use core::time::Duration;

use serde::{Deserialize, Serialize};

pub use bundle::Update;
pub use bundle::{BundleBook, BundleError, KeyBundle, MailboxAddr, SignedBundle};
pub use crypto::{CryptoError, DhKey, DmCrypto, Prekeys};
pub use envelope::{open, seal, Body, Envelope, Message, OpenError, ReceiptKind, SealError};
pub use mailbox::{Ack, Deposit, DepositError, Mailbox, MailboxConfig, Usage};
pub use outbox::{DmState, Outbox, OutboxConfig, StateChange};
pub use replay::ReplayGuard;
pub use stand_in::StandInCrypto;

/// How long a direct message is kept for its recipient (outboxes, mailboxes) unless the sender
/// asks for less.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest expiry anyone accepts: the default, plus an hour for clocks that disagree.
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600 + 3600);

/// A direct message's id: a UUIDv7 like [`ChatId`](crate::ChatId), so ids sort by creation time.
/// Receipts and typing notices have ids of their own.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DmId(pub [u8; 16]);

impl DmId {
    pub fn new_v7(unix_ms: u64, random: &[u8; 10]) -> DmId {
        DmId(*uuid::Builder::from_unix_timestamp_millis(unix_ms, random).as_uuid().as_bytes())
    }

    /// A fresh id for a message made at `now`, its random bits from the node's RNG.
    pub fn generate(now: crate::Time, rng: &mut crate::random::Rng) -> DmId {
        DmId::new_v7(now.as_millis(), &rng.bytes())
    }
}

impl fmt::Display for DmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).fmt(f)
    }
}
impl fmt::Debug for DmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmId({self})")
    }
}

/// Maps kept as lists of pairs when serialised, so formats whose map keys must be strings (JSON)
/// can hold them too.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, K: Serialize, V: Serialize>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map)
    }

    pub fn deserialize<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
