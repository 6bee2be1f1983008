//! The key bundle an identity publishes, signed by its Ed25519 key, and the book of the newest
//! bundle seen from each peer.
//!
//! A bundle says: to write to me, start a session with these X25519 keys ([`Prekeys`]), and while
//! I am offline leave envelopes with these mailboxes. Its `version` (the owner's clock when it
//! made it) orders bundles: a newer one replaces an older one, an older one is refused. A bundle
//! is accepted only if signed by the identity it names, so a peer id leads to its owner's keys
//! whoever relayed them.
//!
//! Signed bytes (big-endian): `"p2p-chat/dm-bundle/v1"`, identity (32), the X25519 identity and
//! prekey (32 each), version (8, microseconds), the number of mailboxes (1), then for each its
//! peer id (32), its address's length (1) and the address (UTF-8).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::crypto::Prekeys;
use crate::identity::{Keys, PeerId, PublicKey, Signature};
use crate::time::Time;

const DOMAIN: &[u8] = b"p2p-chat/dm-bundle/v1";
/// Most mailboxes one bundle names.
pub const MAX_MAILBOXES: usize = 4;
/// Longest mailbox address ("host:port"), in bytes.
pub const MAX_ADDR_BYTES: usize = 255;
/// How far a bundle's version may be ahead of the receiver's clock: further would let a bad
/// clock publish a bundle that its owner's later, correct ones could never replace.
pub const MAX_CLOCK_AHEAD_US: u64 = 10 * 60 * 1_000_000;

/// A node that holds envelopes for the bundle's owner while it is offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxAddr {
    pub peer: PeerId,
    pub addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBundle {
    pub identity: PublicKey,
    pub keys: Prekeys,
    pub mailboxes: Vec<MailboxAddr>,
    pub version: Time,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBundle {
    pub bundle: KeyBundle,
    pub signature: Signature,
}

/// Why a bundle was refused; the book is unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("more than {MAX_MAILBOXES} mailboxes, or an address longer than {MAX_ADDR_BYTES} bytes")]
    TooLarge,
    #[error("not signed by the identity it names")]
    BadSignature,
    #[error("a newer bundle of this identity is already known")]
    Stale,
    #[error("its version is ahead of this node's clock")]
    FromTheFuture,
    #[error("the book is full")]
    Full,
}

impl KeyBundle {
    fn signed_bytes(&self) -> Option<Vec<u8>> {
        if self.mailboxes.len() > MAX_MAILBOXES || self.mailboxes.iter().any(|m| m.addr.len() > MAX_ADDR_BYTES) {
            return None;
        }
        let mut out = Vec::with_capacity(DOMAIN.len() + 105 + self.mailboxes.len() * 64);
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&self.identity.0);
        out.extend_from_slice(&self.keys.identity.0);
        out.extend_from_slice(&self.keys.prekey.0);
        out.extend_from_slice(&self.version.as_micros().to_be_bytes());
        out.push(self.mailboxes.len() as u8);
        for m in &self.mailboxes {
            out.extend_from_slice(&m.peer.0);
            out.push(m.addr.len() as u8);
            out.extend_from_slice(m.addr.as_bytes());
        }
        Some(out)
    }
}

impl SignedBundle {
    /// Signs `bundle` with `keys`, which must be the identity it names.
    pub fn sign(keys: &dyn Keys, bundle: KeyBundle) -> Result<SignedBundle, BundleError> {
        if bundle.identity != keys.public_key() {
            return Err(BundleError::BadSignature);
        }
        let bytes = bundle.signed_bytes().ok_or(BundleError::TooLarge)?;
        Ok(SignedBundle { signature: keys.sign(&bytes), bundle })
    }

    pub fn verify(&self, keys: &dyn Keys) -> Result<(), BundleError> {
        let bytes = self.bundle.signed_bytes().ok_or(BundleError::TooLarge)?;
        if keys.verify(&self.bundle.identity, &bytes, &self.signature) {
            Ok(())
        } else {
            Err(BundleError::BadSignature)
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.bundle.identity.peer_id()
    }
}

/// What [`BundleBook::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// The first bundle of this peer.
    New,
    /// Newer than the one held, which it replaced.
    Replaced,
    /// The very bundle already held.
    Unchanged,
}

/// The newest verified bundle of each peer, for at most `capacity` peers. Full, it gives up the
/// bundle least recently received or used that the node does not still need: a node that meets
/// many peers (a bootstrap node sees thousands) must still learn the bundle of the next one it
/// writes to.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BundleBook {
    #[serde(with = "super::pairs")]
    bundles: BTreeMap<PeerId, SignedBundle>,
    capacity: usize,
    /// When each bundle was last received or used; not saved (a restored book starts even).
    #[serde(skip)]
    used: BTreeMap<PeerId, Time>,
}

impl BundleBook {
    pub fn new(capacity: usize) -> BundleBook {
        BundleBook { bundles: BTreeMap::new(), capacity, used: BTreeMap::new() }
    }

    /// Verifies `bundle` and keeps it if it is the newest of its identity. A bundle of the same
    /// version but other content is refused as stale: an owner never signs two of one version.
    /// Full, it takes the place of the bundle least recently received or used among those
    /// `needed` says may go; `Full` if none may.
    pub fn insert(
        &mut self,
        keys: &dyn Keys,
        now: Time,
        bundle: SignedBundle,
        needed: impl Fn(&PeerId) -> bool,
    ) -> Result<Update, BundleError> {
        let peer = bundle.peer_id();
        let held = self.bundles.get(&peer);
        if held == Some(&bundle) {
            self.used.insert(peer, now);
            return Ok(Update::Unchanged);
        }
        if held.is_some_and(|h| h.bundle.version >= bundle.bundle.version) {
            return Err(BundleError::Stale);
        }
        if bundle.bundle.version.as_micros() > now.as_micros().saturating_add(MAX_CLOCK_AHEAD_US) {
            return Err(BundleError::FromTheFuture);
        }
        let victim = if held.is_none() && self.bundles.len() >= self.capacity {
            let oldest = self
                .bundles
                .keys()
                .filter(|p| !needed(p))
                .min_by_key(|p| (self.used.get(*p).copied().unwrap_or(Time::ZERO), **p));
            Some(*oldest.ok_or(BundleError::Full)?)
        } else {
            None
        };
        bundle.verify(keys)?;
        if let Some(v) = victim {
            self.remove(&v);
        }
        self.used.insert(peer, now);
        Ok(match self.bundles.insert(peer, bundle) {
            Some(_) => Update::Replaced,
            None => Update::New,
        })
    }

    /// `peer`'s bundle was just used: the last to go when the book is full.
    pub fn touch(&mut self, peer: &PeerId, now: Time) {
        if self.bundles.contains_key(peer) {
            self.used.insert(*peer, now);
        }
    }

    pub fn get(&self, peer: &PeerId) -> Option<&SignedBundle> {
        self.bundles.get(peer)
    }

    pub fn remove(&mut self, peer: &PeerId) -> Option<SignedBundle> {
        self.used.remove(peer);
        self.bundles.remove(peer)
    }

    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dm::crypto::DhKey;
    use crate::identity::Ed25519Keys;

    fn bundle(keys: &Ed25519Keys, version: u64) -> KeyBundle {
        KeyBundle {
            identity: keys.public_key(),
            keys: Prekeys { identity: DhKey([1; 32]), prekey: DhKey([2; 32]) },
            mailboxes: vec![MailboxAddr { peer: PeerId([9; 32]), addr: "10.0.0.1:7000".into() }],
            version: Time::from_micros(version),
        }
    }

    #[test]
    fn a_bundle_not_signed_by_its_identity_is_refused() {
        let (alice, mallory) = (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2));
        let now = Time::from_micros(1000);
        // Mallory cannot sign as Alice...
        assert_eq!(SignedBundle::sign(&mallory, bundle(&alice, 1)).err(), Some(BundleError::BadSignature));
        // ...nor swap keys or mailboxes into Alice's signed bundle, nor graft Alice's signature.
        let good = SignedBundle::sign(&alice, bundle(&alice, 1)).unwrap();
        let mut book = BundleBook::new(8);
        let mut swapped = good.clone();
        swapped.bundle.keys.prekey = DhKey([66; 32]);
        assert_eq!(book.insert(&alice, now, swapped, |_| false), Err(BundleError::BadSignature));
        let mut rerouted = good.clone();
        rerouted.bundle.mailboxes[0].peer = PeerId([66; 32]);
        assert_eq!(book.insert(&alice, now, rerouted, |_| false), Err(BundleError::BadSignature));
        let mut grafted = SignedBundle::sign(&mallory, bundle(&mallory, 1)).unwrap();
        grafted.signature = good.signature;
        assert_eq!(book.insert(&alice, now, grafted, |_| false), Err(BundleError::BadSignature));
        assert!(book.is_empty());
        assert_eq!(book.insert(&alice, now, good, |_| false), Ok(Update::New));
    }

    #[test]
    fn newer_replaces_older_and_older_is_refused() {
        let alice = Ed25519Keys::from_seed(1);
        let now = Time::from_micros(1000);
        let mut book = BundleBook::new(8);
        let (v1, v2) = (
            SignedBundle::sign(&alice, bundle(&alice, 1)).unwrap(),
            SignedBundle::sign(&alice, bundle(&alice, 2)).unwrap(),
        );
        assert_eq!(book.insert(&alice, now, v2.clone(), |_| false), Ok(Update::New));
        assert_eq!(book.insert(&alice, now, v2.clone(), |_| false), Ok(Update::Unchanged));
        assert_eq!(book.insert(&alice, now, v1.clone(), |_| false), Err(BundleError::Stale));
        assert_eq!(book.get(&alice.public_key().peer_id()), Some(&v2));
        let mut book = BundleBook::new(8);
        book.insert(&alice, now, v1, |_| false).unwrap();
        assert_eq!(book.insert(&alice, now, v2, |_| false), Ok(Update::Replaced));
        let far = SignedBundle::sign(&alice, bundle(&alice, 1000 + MAX_CLOCK_AHEAD_US + 1)).unwrap();
        assert_eq!(book.insert(&alice, now, far, |_| false), Err(BundleError::FromTheFuture));
    }

    #[test]
    fn limits_hold() {
        let alice = Ed25519Keys::from_seed(1);
        let mut b = bundle(&alice, 1);
        b.mailboxes = vec![b.mailboxes[0].clone(); MAX_MAILBOXES + 1];
        assert_eq!(SignedBundle::sign(&alice, b).err(), Some(BundleError::TooLarge));
        let mut book = BundleBook::new(1);
        let bob = Ed25519Keys::from_seed(2);
        let now = Time::from_micros(10);
        book.insert(&alice, now, SignedBundle::sign(&alice, bundle(&alice, 1)).unwrap(), |_| false).unwrap();
        // Full of bundles still needed: the newcomer is refused.
        let bobs = SignedBundle::sign(&bob, bundle(&bob, 1)).unwrap();
        assert_eq!(book.insert(&bob, now, bobs, |_| true), Err(BundleError::Full));
        assert!(book.get(&alice.public_key().peer_id()).is_some());
    }

    /// Full, the book gives up the bundle least recently received or used among those not needed,
    /// and a forged newcomer takes no place.
    #[test]
    fn a_full_book_gives_up_the_least_recently_used() {
        let keys: Vec<Ed25519Keys> = (1..=4).map(Ed25519Keys::from_seed).collect();
        let id = |i: usize| keys[i].public_key().peer_id();
        let signed = |i: usize| SignedBundle::sign(&keys[i], bundle(&keys[i], 1)).unwrap();
        let mut book = BundleBook::new(2);
        let t = Time::from_micros;
        book.insert(&keys[0], t(10), signed(0), |_| false).unwrap();
        book.insert(&keys[0], t(20), signed(1), |_| false).unwrap();
        book.touch(&id(0), t(30));
        let mut forged = signed(2);
        forged.bundle.mailboxes.clear();
        assert_eq!(book.insert(&keys[0], t(40), forged, |_| false), Err(BundleError::BadSignature));
        assert!(book.get(&id(0)).is_some() && book.get(&id(1)).is_some());
        // 1 was used last at 20, 0 at 30: 1 goes.
        assert_eq!(book.insert(&keys[0], t(40), signed(2), |_| false), Ok(Update::New));
        assert!(book.get(&id(1)).is_none() && book.get(&id(0)).is_some());
        // 0 is the oldest now, but still needed: 2 goes instead.
        assert_eq!(book.insert(&keys[0], t(50), signed(3), |p| *p == id(0)), Ok(Update::New));
        assert!(book.get(&id(2)).is_none() && book.get(&id(0)).is_some() && book.get(&id(3)).is_some());
    }
}
