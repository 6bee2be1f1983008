//! A stand-in signature scheme for very large simulations. NOT SECURE.
//!
//! A "signature" is a keyed hash of the message under the public key, so anyone who knows the
//! public key can make one. What it keeps is what the simulator checks: a chat altered in flight, or
//! attributed to another key, fails verification; so forged-chat tests hold for alteration, while
//! Ed25519 (`--real-crypto`) is needed to test re-signing attacks. It costs about 1 us instead of
//! about 30 us per verification, which is what makes 100,000-node runs possible.

use std::hash::{DefaultHasher, Hasher};

use p2p_chat_core::{Keys, PublicKey, Signature};

pub struct CheapKeys {
    public: PublicKey,
}

impl CheapKeys {
    /// Node `index`'s key: distinct per index, the same every run.
    pub fn new(index: u64) -> CheapKeys {
        let mut pk = [0u8; 32];
        for (i, chunk) in pk.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&hash(i as u64, &index.to_le_bytes(), b"cheap-key").to_le_bytes());
        }
        CheapKeys { public: PublicKey(pk) }
    }
}

fn hash(round: u64, a: &[u8], b: &[u8]) -> u64 {
    // `DefaultHasher::new()` has fixed keys: deterministic within one build, which is all a
    // simulation needs.
    let mut h = DefaultHasher::new();
    h.write_u64(round);
    h.write(a);
    h.write(b);
    h.finish()
}

fn mac(public: &PublicKey, msg: &[u8]) -> Signature {
    let mut sig = [0u8; 64];
    for (i, chunk) in sig.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&hash(i as u64, &public.0, msg).to_le_bytes());
    }
    Signature(sig)
}

impl Keys for CheapKeys {
    fn public_key(&self) -> PublicKey {
        self.public
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        mac(&self.public, msg)
    }
    fn verify(&self, public: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        mac(public, msg).0 == sig.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_alteration_and_misattribution() {
        let (a, b) = (CheapKeys::new(1), CheapKeys::new(2));
        let sig = a.sign(b"hello");
        assert!(a.verify(&a.public_key(), b"hello", &sig));
        assert!(!a.verify(&a.public_key(), b"hellO", &sig));
        assert!(!a.verify(&b.public_key(), b"hello", &sig));
        assert_ne!(a.public_key(), b.public_key());
    }
}
