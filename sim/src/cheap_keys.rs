//! A stand-in signature scheme and transport crypto for very large simulations. NOT SECURE.
//!
//! A "signature" is a keyed hash of the message under the public key, so anyone who knows the
//! public key can make one. What it keeps is what the simulator checks: a chat altered in flight, or
//! attributed to another key, fails verification; so forged-chat tests hold for alteration, while
//! Ed25519 (`--real-crypto`) is needed to test re-signing attacks. It costs about 1 us instead of
//! about 30 us per verification, which is what makes 100,000-node runs possible.

use p2p_chat_core::{Keys, PublicKey, Signature};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver};
use snow::types::{Cipher, Dh, Hash, Random};

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
    // The stand-in hash rather than `DefaultHasher`, whose algorithm is not promised to stay the
    // same between Rust releases: a key, and with it every run, must replay from the seed alone.
    let mut h = CheapHash::default();
    h.input(&round.to_le_bytes());
    h.input(&(a.len() as u64).to_le_bytes());
    h.input(a);
    h.input(b);
    let mut digest = [0u8; 32];
    h.result(&mut digest);
    u64::from_le_bytes(digest[24..].try_into().expect("8 bytes"))
}

/// One pass of the stand-in hash over the key and the message, spread over the 64 bytes: a chat is
/// checked by every node that receives it, and 64 bits of the message are all a stand-in needs to
/// catch an alteration, so hashing it once per 8 bytes of signature would be wasted. `CheapHash`
/// rather than `hash`: SipHash cost four times as much per byte, on every chat every node receives.
fn mac(public: &PublicKey, msg: &[u8]) -> Signature {
    let mut hasher = CheapHash::default();
    hasher.input(&public.0);
    hasher.input(msg);
    let mut digest = [0u8; 32];
    hasher.result(&mut digest);
    // The digest's last word is the one that depends on every lane.
    let h = u64::from_le_bytes(digest[24..].try_into().expect("8 bytes"));
    let mut sig = [0u8; 64];
    for (i, chunk) in sig.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&spread(h.wrapping_add(MIX.wrapping_mul(i as u64))).to_le_bytes());
    }
    Signature(sig)
}

/// SplitMix64's finaliser: every output bit depends on every input bit.
fn spread(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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
    fn transport_crypto(&self) -> BoxedCryptoResolver {
        Box::new(CheapTransport)
    }
}

/// The real Noise handshake and record layer run unchanged over a "Diffie-Hellman" whose public key
/// is its private key, a "cipher" that copies and a "hash" that only mixes words: every byte and
/// every state transition is the production code's, without the ~40 us of X25519 per exchange, the
/// per-record AEAD and the few dozen BLAKE2s compressions of each handshake's key derivation.
struct CheapTransport;

/// Every handshake boxes two of these and a hash. Their initial values are all zeros, and a box
/// made from a value the compiler can see is zero is allocated with `calloc`, which glibc serves
/// without its per-thread cache: about 170 instructions instead of about 60 for `malloc`, three
/// times per handshake and side. `black_box` hides the value, so the box is a `malloc` and a copy.
fn boxed<T>(value: T) -> Box<T> {
    Box::new(std::hint::black_box(value))
}

impl CryptoResolver for CheapTransport {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        None
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        matches!(choice, DHChoice::Curve25519).then(|| boxed(CheapDh([0; 32])) as Box<dyn Dh>)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        matches!(choice, HashChoice::Blake2s).then(|| boxed(CheapHash::default()) as Box<dyn Hash>)
    }
    fn resolve_cipher(&self, _: &CipherChoice) -> Option<Box<dyn Cipher>> {
        Some(Box::new(CheapCipher))
    }
}

/// Commutative, like X25519: dh(a, B) = a xor b = dh(b, A).
struct CheapDh([u8; 32]);

impl Dh for CheapDh {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        self.0.copy_from_slice(&privkey[..32]);
    }
    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        rng.try_fill_bytes(&mut self.0)
    }
    fn pubkey(&self) -> &[u8] {
        &self.0
    }
    fn privkey(&self) -> &[u8] {
        &self.0
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(pubkey)) {
            *o = a ^ b;
        }
        Ok(())
    }
}

/// Stands in for BLAKE2s (same name and lengths). The hash only feeds the handshake hash and the
/// keys derived from it, and the copy cipher ignores both, so nothing on the wire depends on it:
/// swapping it for BLAKE2s changes no byte a node sends. It still mixes every input byte, in
/// order, so different handshakes get different keys, as they would with the real hash.
#[derive(Default)]
struct CheapHash {
    lanes: [u64; 4],
    /// Input bytes not yet mixed (fewer than 8), little-endian.
    pending: u64,
    len: u64,
}

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl CheapHash {
    /// Mixes the `len / 8`-th word of input, `len` being counted before it.
    fn mix(&mut self, word: u64) {
        let lane = &mut self.lanes[(self.len / 8 % 4) as usize];
        *lane = (*lane ^ word).wrapping_mul(MIX).rotate_left(29);
    }
}

/// Up to 8 bytes as a little-endian word.
fn le_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

impl Hash for CheapHash {
    fn name(&self) -> &'static str {
        "BLAKE2s"
    }
    fn block_len(&self) -> usize {
        64
    }
    fn hash_len(&self) -> usize {
        32
    }
    fn reset(&mut self) {
        *self = CheapHash::default();
    }
    fn input(&mut self, mut data: &[u8]) {
        // Complete a word left partial by the last call, then take whole words, then keep the rest
        // for the next call. A handshake hashes many short pieces (keys, a length, a tag byte), so
        // the partial words are taken whole rather than byte by byte.
        let filled = (self.len % 8) as usize;
        if filled > 0 {
            let take = data.len().min(8 - filled);
            self.pending |= le_word(&data[..take]) << (8 * filled);
            data = &data[take..];
            if filled + take == 8 {
                let word = std::mem::take(&mut self.pending);
                self.mix(word);
            }
            self.len += take as u64;
        }
        // Every handshake hashes a few kilobytes (HMAC pads, keys): the lane is carried along
        // rather than derived from `len` at every word.
        let mut words = data.chunks_exact(8);
        let mut lane = (self.len / 8 % 4) as usize;
        for w in &mut words {
            let word = u64::from_le_bytes(w.try_into().expect("chunks of 8"));
            self.lanes[lane] = (self.lanes[lane] ^ word).wrapping_mul(MIX).rotate_left(29);
            lane = (lane + 1) % 4;
        }
        let rest = words.remainder();
        self.len += (data.len() - rest.len()) as u64;
        // Nothing is pending unless all of `data` went into completing the partial word, when
        // `rest` is empty.
        self.pending |= le_word(rest);
        self.len += rest.len() as u64;
    }
    fn result(&mut self, out: &mut [u8]) {
        let (pending, len) = (self.pending, self.len);
        self.mix(pending ^ len);
        let mut acc = len;
        for (chunk, lane) in out[..32].chunks_mut(8).zip(self.lanes) {
            acc = (acc ^ lane).wrapping_mul(MIX);
            chunk.copy_from_slice(&(acc ^ (acc >> 31)).to_le_bytes());
        }
        self.reset();
    }
    /// Snow's HKDF is two or three HMACs, each hashing two 64-byte pads besides its input: a dozen
    /// passes of the hash per key derivation, a few key derivations per handshake. A stand-in needs
    /// only outputs that differ from each other and from those of any other input, which one pass
    /// over the chaining key and the input key material, spread once per output, gives.
    fn hkdf(
        &mut self,
        chaining_key: &[u8],
        input_key_material: &[u8],
        outputs: usize,
        out1: &mut [u8],
        out2: &mut [u8],
        out3: &mut [u8],
    ) {
        self.reset();
        self.input(&(chaining_key.len() as u64).to_le_bytes());
        self.input(chaining_key);
        self.input(input_key_material);
        let mut digest = [0u8; 32];
        self.result(&mut digest);
        for (n, out) in [out1, out2, out3].into_iter().take(outputs).enumerate() {
            let salt = MIX.wrapping_mul(n as u64 + 1);
            for (o, d) in out[..32].chunks_mut(8).zip(digest.chunks(8)) {
                let word = u64::from_le_bytes(d.try_into().expect("chunks of 8"));
                o.copy_from_slice(&spread(word ^ salt).to_le_bytes());
            }
        }
    }
}

/// Copies the plaintext and appends the nonce as a 16-byte "tag", so a replayed or reordered
/// record still fails to open, as with the real cipher.
struct CheapCipher;

const TAG: usize = 16;

impl Cipher for CheapCipher {
    fn name(&self) -> &'static str {
        "ChaChaPoly"
    }
    fn set(&mut self, _key: &[u8; 32]) {}
    fn encrypt(&self, nonce: u64, _ad: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        out[..plaintext.len()].copy_from_slice(plaintext);
        out[plaintext.len()..plaintext.len() + TAG].fill(0);
        out[plaintext.len()..plaintext.len() + 8].copy_from_slice(&nonce.to_le_bytes());
        plaintext.len() + TAG
    }
    fn decrypt(&self, nonce: u64, _ad: &[u8], ciphertext: &[u8], out: &mut [u8]) -> Result<usize, snow::Error> {
        let n = ciphertext.len().checked_sub(TAG).ok_or(snow::Error::Decrypt)?;
        if ciphertext[n..n + 8] != nonce.to_le_bytes() {
            return Err(snow::Error::Decrypt);
        }
        out[..n].copy_from_slice(&ciphertext[..n]);
        Ok(n)
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

    #[test]
    fn cheap_hash_sees_every_byte_however_fed() {
        let digest = |pieces: &[&[u8]]| {
            let mut h = CheapHash::default();
            pieces.iter().for_each(|p| h.input(p));
            let mut out = [0u8; 32];
            h.result(&mut out);
            out
        };
        let data: Vec<u8> = (0..100u8).collect();
        let whole = digest(&[&data]);
        assert_eq!(whole, digest(&[&data[..3], &data[3..50], &data[50..]]));
        let mut altered = data.clone();
        altered[77] ^= 1;
        assert_ne!(whole, digest(&[&altered]));
        assert_ne!(whole, digest(&[&data[..99]]));
        assert_eq!(whole, digest(&[&data]), "result resets the state");
    }

    #[test]
    fn cheap_hkdf_outputs_differ() {
        let derive = |ck: &[u8], ikm: &[u8]| {
            let mut out = [[0u8; 64]; 3];
            let [a, b, c] = &mut out;
            CheapHash::default().hkdf(ck, ikm, 3, a, b, c);
            out
        };
        let out = derive(&[1; 32], b"key material");
        assert_ne!(out[0], out[1]);
        assert_ne!(out[1], out[2]);
        assert_ne!(out, derive(&[1; 32], b"key materiaL"));
        assert_ne!(out, derive(&[2; 32], b"key material"));
    }
}
