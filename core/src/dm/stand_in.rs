//! A deterministic stand-in for the double ratchet, for the simulator and tests. NOT SECURE.
//!
//! It keeps what the node and the simulator observe of a ratchet, and draws every random byte from
//! the caller's RNG so runs replay: sessions per peer, every decryption's effect pending until the
//! message is confirmed authentic, one key per message deleted once used (a replayed or re-sent message is refused),
//! a 16-byte tag that refuses any alteration, skipped keys kept for out-of-order messages within a
//! window, and gaps beyond it refused (Olm's numbers: 40 keys, a gap of 2000).
//!
//! What it leaves out on purpose: the body is copied, not encrypted; the session root travels in
//! the clear in every message; there is no Diffie-Hellman step, so no recovery after a compromise.
//! Confidentiality is only tested against [`olm`](super) (feature `olm`).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::crypto::{CryptoError, DhKey, DmCrypto, Prekeys};
use super::sessions::Sessions;
use crate::identity::PeerId;
use crate::random::Rng;

/// Keys kept for messages that have not arrived yet while later ones did.
const SKIPPED_MAX: usize = 40;
/// How far ahead of the chain a message may be.
const GAP_MAX: u64 = 2000;
const TAG_BYTES: usize = 16;
const HEADER_BYTES: usize = 32 + 8;

pub struct StandInCrypto {
    prekeys: Prekeys,
    sessions: Sessions<Session>,
}

#[derive(Clone)]
struct Session {
    root: [u8; 32],
    send: Chain,
    recv: Chain,
    skipped: BTreeMap<u64, [u8; 32]>,
}

#[derive(Clone)]
struct Chain {
    key: [u8; 32],
    n: u64,
}

impl Chain {
    fn new(root: &[u8; 32], label: &[u8]) -> Chain {
        Chain { key: h(&[root, label]), n: 0 }
    }
    /// The key of message `n`, and the chain moves past it.
    fn step(&mut self) -> [u8; 32] {
        let mk = h(&[&self.key, &[1]]);
        self.key = h(&[&self.key, &[2]]);
        self.n += 1;
        mk
    }
}

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut d = Sha256::new();
    for p in parts {
        d.update((p.len() as u32).to_le_bytes());
        d.update(p);
    }
    d.finalize().into()
}

fn tag(mk: &[u8; 32], header: &[u8], body: &[u8]) -> [u8; TAG_BYTES] {
    h(&[b"stand-in tag", mk, header, body])[..TAG_BYTES].try_into().expect("16 bytes")
}

impl Session {
    fn new(root: [u8; 32], initiator: bool) -> Session {
        let (send, recv) = if initiator { (&b"i2r"[..], &b"r2i"[..]) } else { (&b"r2i"[..], &b"i2r"[..]) };
        Session { root, send: Chain::new(&root, send), recv: Chain::new(&root, recv), skipped: BTreeMap::new() }
    }

    fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let n = self.send.n;
        let mk = self.send.step();
        let mut out = Vec::with_capacity(HEADER_BYTES + plaintext.len() + TAG_BYTES);
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(plaintext);
        let t = tag(&mk, &out[..HEADER_BYTES], plaintext);
        out.extend_from_slice(&t);
        out
    }

    /// Decrypts on a copy, returned only if the tag holds.
    fn decrypt(&self, n: u64, header: &[u8], body: &[u8], t: &[u8]) -> Option<(Session, Vec<u8>)> {
        let mut s = self.clone();
        let mk = if n < s.recv.n {
            s.skipped.remove(&n)?
        } else {
            if n - s.recv.n > GAP_MAX {
                return None;
            }
            while s.recv.n < n {
                let k = s.recv.n;
                s.skipped.insert(k, s.recv.step());
                if s.skipped.len() > SKIPPED_MAX {
                    s.skipped.pop_first();
                }
            }
            s.recv.step()
        };
        (tag(&mk, header, body)[..] == *t).then(|| (s, body.to_vec()))
    }
}

impl StandInCrypto {
    /// This identity's keys, drawn from the node's RNG.
    pub fn new(rng: &mut Rng) -> StandInCrypto {
        let prekeys = Prekeys { identity: DhKey(rng.bytes()), prekey: DhKey(rng.bytes()) };
        StandInCrypto { prekeys, sessions: Sessions::new() }
    }
}

impl DmCrypto for StandInCrypto {
    fn prekeys(&self) -> Prekeys {
        self.prekeys
    }

    fn rotate_prekey(&mut self, rng: &mut Rng) -> Prekeys {
        self.prekeys.prekey = DhKey(rng.bytes());
        self.prekeys
    }

    fn has_session(&self, peer: &PeerId) -> bool {
        self.sessions.has(peer)
    }

    fn start_session(&mut self, rng: &mut Rng, peer: PeerId, theirs: &Prekeys) -> Result<(), CryptoError> {
        let fresh: [u8; 32] = rng.bytes();
        let root = h(&[b"stand-in root", &fresh, &theirs.identity.0, &theirs.prekey.0]);
        self.sessions.add(peer, Session::new(root, true));
        Ok(())
    }

    fn encrypt(&mut self, _rng: &mut Rng, peer: &PeerId, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.sessions.current(peer)?.encrypt(plaintext))
    }

    fn decrypt(&mut self, _rng: &mut Rng, from: &PeerId, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if ciphertext.len() < HEADER_BYTES + TAG_BYTES {
            return Err(CryptoError::Undecryptable);
        }
        let (header, rest) = ciphertext.split_at(HEADER_BYTES);
        let (body, t) = rest.split_at(rest.len() - TAG_BYTES);
        let root: [u8; 32] = header[..32].try_into().expect("32 bytes");
        let n = u64::from_be_bytes(header[32..].try_into().expect("8 bytes"));
        let known = self.sessions.of(from).iter().find(|s| s.root == root);
        let base = known.cloned().unwrap_or_else(|| Session::new(root, false));
        let (s, plain) = base.decrypt(n, header, body, t).ok_or(CryptoError::Undecryptable)?;
        self.sessions.hold(*from, s);
        Ok(plain)
    }

    fn confirm(&mut self, from: &PeerId) {
        self.sessions.confirm(from, |a, b| a.root == b.root);
    }

    fn discard(&mut self, from: &PeerId) {
        self.sessions.discard(from);
    }
}
