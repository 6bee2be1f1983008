//! Who a node is: its Ed25519 key pair, the `PeerId` derived from the public key, the key file
//! format, and the one small `Keys` interface through which every signature is made and checked.
//!
//! `Keys` exists so the simulator can run hundreds of thousands of nodes with a cheap stand-in
//! scheme; production and every forgery test use [`Ed25519Keys`]. The core does no file I/O: the key
//! file is produced and parsed here as bytes, and the CLI reads and writes it (mode 0600).

use core::fmt;

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// An Ed25519 public key: the user's permanent identity.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

/// A 64-byte signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

/// SHA-256 of the public key. Shown short beside every username, so two users named "Bob" are
/// never confused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerId(pub [u8; 32]);

impl PublicKey {
    pub fn peer_id(&self) -> PeerId {
        PeerId(Sha256::digest(self.0).into())
    }
}

impl PeerId {
    /// The first 8 hex digits: what users see after `#`.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}
impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex(&self.0[..4]))
    }
}
impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex(&self.0[..4]))
    }
}

// serde only derives arrays up to 32; a fixed 64-byte tuple keeps the wire at exactly 64 bytes.
impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(64)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut out = [0u8; 64];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature(out))
            }
        }
        d.deserialize_tuple(64, V)
    }
}

/// Signing with this node's key and checking anyone's signature. Implementations must be
/// deterministic: the same message and key give the same signature.
pub trait Keys: Send {
    fn public_key(&self) -> PublicKey;
    fn sign(&self, msg: &[u8]) -> Signature;
    fn verify(&self, public: &PublicKey, msg: &[u8], sig: &Signature) -> bool;

    /// Checks many signatures at once: `true` where valid, in order. Schemes that can batch
    /// override it (Ed25519 batch verification costs about half as much per signature).
    fn verify_batch(&self, items: &[(&PublicKey, &[u8], &Signature)]) -> Vec<bool> {
        items.iter().map(|(pk, msg, sig)| self.verify(pk, msg, sig)).collect()
    }

    /// The primitives that encrypt connections (Noise's Diffie-Hellman, cipher and hash; never its
    /// RNG, which the node supplies). Production uses X25519, ChaCha20-Poly1305 and BLAKE2s; the
    /// simulator substitutes cheap insecure ones, as it does for signatures.
    fn transport_crypto(&self) -> snow::resolvers::BoxedCryptoResolver {
        Box::new(snow::resolvers::DefaultResolver)
    }
}

/// The production scheme.
pub struct Ed25519Keys {
    signing: SigningKey,
    public: PublicKey,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("not a p2p-chat key file (expected first line {KEY_FILE_HEADER:?})")]
    BadHeader,
    #[error("key file is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("key file's public key does not match its secret key")]
    Mismatch,
}

const KEY_FILE_HEADER: &str = "p2p-chat ed25519 secret key v1";

impl Ed25519Keys {
    /// From 32 secret bytes; the caller draws them from the OS (CLI) or a seeded RNG (tests).
    pub fn from_secret(secret: [u8; 32]) -> Ed25519Keys {
        let signing = SigningKey::from_bytes(&secret);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Ed25519Keys { signing, public }
    }

    /// Deterministic keys for tests and simulations.
    pub fn from_seed(seed: u64) -> Ed25519Keys {
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&seed.to_le_bytes());
        secret[8..16].copy_from_slice(b"p2pchat!");
        Ed25519Keys::from_secret(Sha256::digest(secret).into())
    }

    /// The key file: a header line, the secret key and the public key in hex. The public key is
    /// redundant on purpose, so a damaged file is detected instead of yielding another identity.
    pub fn to_key_file(&self) -> String {
        format!("{KEY_FILE_HEADER}\nsecret {}\npublic {}\n", hex(self.signing.as_bytes()), hex(&self.public.0))
    }

    pub fn from_key_file(bytes: &[u8]) -> Result<Ed25519Keys, KeyFileError> {
        let text = core::str::from_utf8(bytes).map_err(|_| KeyFileError::Corrupt("not UTF-8"))?;
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(KEY_FILE_HEADER) {
            return Err(KeyFileError::BadHeader);
        }
        let field = |line: Option<&str>, name: &str| -> Result<[u8; 32], KeyFileError> {
            let line = line.ok_or(KeyFileError::Corrupt("missing line"))?.trim();
            let value = line.strip_prefix(name).ok_or(KeyFileError::Corrupt("unexpected line"))?.trim();
            let raw = unhex(value).ok_or(KeyFileError::Corrupt("bad hex"))?;
            raw.try_into().map_err(|_| KeyFileError::Corrupt("wrong key length"))
        };
        let secret = field(lines.next(), "secret")?;
        let public = field(lines.next(), "public")?;
        let keys = Ed25519Keys::from_secret(secret);
        if keys.public.0 != public {
            return Err(KeyFileError::Mismatch);
        }
        Ok(keys)
    }
}

impl Keys for Ed25519Keys {
    fn public_key(&self) -> PublicKey {
        self.public
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }
    fn verify(&self, public: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        verify_ed25519(public, msg, sig)
    }

    /// One batch equation for all; only if it fails are they checked one by one to find the bad
    /// ones. The batch uses dalek's deterministic transcript randomness, so it stays reproducible.
    /// Batch and single checks can disagree on deliberately malformed signatures (cofactored vs
    /// cofactorless equations); that only concerns keys an attacker made, never an honest author's.
    fn verify_batch(&self, items: &[(&PublicKey, &[u8], &Signature)]) -> Vec<bool> {
        let single = || items.iter().map(|(pk, msg, sig)| verify_ed25519(pk, msg, sig)).collect();
        if items.len() < 2 {
            return single();
        }
        let keys: Option<Vec<VerifyingKey>> =
            items.iter().map(|(pk, _, _)| VerifyingKey::from_bytes(&pk.0).ok()).collect();
        let Some(keys) = keys else { return single() };
        let msgs: Vec<&[u8]> = items.iter().map(|(_, msg, _)| *msg).collect();
        let sigs: Vec<ed25519_dalek::Signature> =
            items.iter().map(|(_, _, sig)| ed25519_dalek::Signature::from_bytes(&sig.0)).collect();
        if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
            vec![true; items.len()]
        } else {
            single()
        }
    }
}

/// Plain (non-strict) verification: malleability does not matter because chats are deduplicated by
/// id, not by signature, and it is about 15% faster.
pub fn verify_ed25519(public: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&public.0) else {
        return false;
    };
    key.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig.0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let k = Ed25519Keys::from_seed(1);
        let sig = k.sign(b"hello");
        assert!(k.verify(&k.public_key(), b"hello", &sig));
        assert!(!k.verify(&k.public_key(), b"hellp", &sig));
        let other = Ed25519Keys::from_seed(2);
        assert!(!k.verify(&other.public_key(), b"hello", &sig));
    }

    #[test]
    fn batch_verification_finds_the_bad_one() {
        let k = Ed25519Keys::from_seed(1);
        let other = Ed25519Keys::from_seed(2);
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 40]).collect();
        let sigs: Vec<Signature> = msgs.iter().map(|m| k.sign(m)).collect();
        let (pk, opk) = (k.public_key(), other.public_key());
        let mut items: Vec<(&PublicKey, &[u8], &Signature)> =
            msgs.iter().zip(&sigs).map(|(m, s)| (&pk, m.as_slice(), s)).collect();
        assert_eq!(k.verify_batch(&items), vec![true; 8]);
        items[5].0 = &opk;
        let mut expected = vec![true; 8];
        expected[5] = false;
        assert_eq!(k.verify_batch(&items), expected);
    }

    #[test]
    fn key_file_round_trip_and_corruption() {
        let k = Ed25519Keys::from_seed(7);
        let file = k.to_key_file();
        let back = Ed25519Keys::from_key_file(file.as_bytes()).unwrap();
        assert_eq!(back.public_key(), k.public_key());

        assert_eq!(Ed25519Keys::from_key_file(b"garbage").err(), Some(KeyFileError::BadHeader));
        // One flipped hex digit in the secret is caught by the public key check.
        let mut flipped = file.clone().into_bytes();
        let pos = file.find("\nsecret ").unwrap() + 8;
        flipped[pos] = if flipped[pos] == b'0' { b'1' } else { b'0' };
        assert_eq!(Ed25519Keys::from_key_file(&flipped).err(), Some(KeyFileError::Mismatch));
        assert!(Ed25519Keys::from_key_file(&file.as_bytes()[..50]).is_err());
    }

    #[test]
    fn peer_id_short_is_8_hex() {
        let id = Ed25519Keys::from_seed(3).public_key().peer_id();
        assert_eq!(id.short().len(), 8);
        assert!(id.to_string().starts_with(&id.short()));
    }
}
