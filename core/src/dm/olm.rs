//! The production double ratchet: vodozemac's Olm (audited), behind [`DmCrypto`].
//!
//! Olm is Signal's X3DH-style first contact (a triple Diffie-Hellman over the peer's identity
//! key, its prekey and a fresh base key) followed by the double ratchet: forward secrecy from the
//! symmetric chains, recovery after a compromise from the Diffie-Hellman step on every change of
//! speaker. Sessions use Matrix's `m.olm.v1` configuration (version 1).
//!
//! Determinism: vodozemac draws its X25519 keys (the account's, each session's base key, each
//! ratchet step) from the OS-seeded thread RNG and offers no way to pass one in, so the `rng`
//! arguments are unused here and a node running this does not replay byte for byte. That is why
//! it sits behind the `olm` feature, off in the simulator, which uses [`StandInCrypto`]
//! (super::StandInCrypto) instead. Everything it decides (which session, what is refused) still
//! depends only on its inputs.

use serde::{Deserialize, Serialize};
use vodozemac::olm::{Account, AccountPickle, OlmMessage, Session, SessionConfig, SessionPickle};
use vodozemac::Curve25519PublicKey;

use super::crypto::{CryptoError, DhKey, DmCrypto, Prekeys};
use super::sessions::Sessions;
use crate::identity::PeerId;
use crate::random::Rng;

pub struct OlmCrypto {
    account: Account,
    prekey: DhKey,
    sessions: Sessions<Session>,
}

/// Everything to restore an [`OlmCrypto`] after a restart. It holds secret keys in the clear:
/// whoever stores it must protect it as it does the identity key file.
#[derive(Serialize, Deserialize)]
pub struct OlmPickle {
    account: AccountPickle,
    prekey: DhKey,
    sessions: Vec<(PeerId, Vec<SessionPickle>)>,
}

fn curve(key: &DhKey) -> Curve25519PublicKey {
    Curve25519PublicKey::from_bytes(key.0)
}

/// One byte of message type (Olm's: 0 first contact, 1 normal), then Olm's own encoding.
fn encode(message: &OlmMessage) -> Vec<u8> {
    let (kind, body) = message.to_parts();
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(kind as u8);
    out.extend_from_slice(&body);
    out
}

/// Only the canonical encoding, so that no altered envelope opens, not even as the genuine one.
/// Olm alone would take two kinds of change: its decoder skips unknown fields (a flipped tag bit
/// turns the ratchet counter into one, read back as its default) and checks its MAC over the
/// message as re-encoded; and X25519 ignores a public key's top bit, which an honest key never
/// sets (it is a number below 2^255 - 19).
fn decode(bytes: &[u8]) -> Option<OlmMessage> {
    let (&kind, body) = bytes.split_first()?;
    let message = OlmMessage::from_parts(usize::from(kind), body).ok()?;
    let keys = match &message {
        OlmMessage::PreKey(m) => {
            vec![m.one_time_key(), m.base_key(), m.identity_key(), m.message().ratchet_key()]
        }
        OlmMessage::Normal(m) => vec![m.ratchet_key()],
    };
    let canonical_keys = keys.iter().all(|k| k.as_bytes()[31] & 0x80 == 0);
    (canonical_keys && encode(&message) == bytes).then_some(message)
}

impl OlmCrypto {
    /// A new identity's keys (from the OS RNG; see the module docs).
    pub fn new() -> OlmCrypto {
        let mut account = Account::new();
        let prekey = fresh_prekey(&mut account);
        OlmCrypto { account, prekey, sessions: Sessions::new() }
    }

    pub fn pickle(&self) -> OlmPickle {
        OlmPickle {
            account: self.account.pickle(),
            prekey: self.prekey,
            sessions: self.sessions.iter().map(|(id, s)| (*id, s.iter().map(Session::pickle).collect())).collect(),
        }
    }

    pub fn from_pickle(pickle: OlmPickle) -> OlmCrypto {
        let sessions = Sessions::restored(
            pickle.sessions.into_iter().map(|(id, s)| (id, s.into_iter().map(Session::from_pickle).collect())),
        );
        let account = Account::from_pickle(pickle.account);
        OlmCrypto { account, prekey: pickle.prekey, sessions }
    }

    /// Reads back what [`DmCrypto::save`] wrote; `None` if the bytes are not such a save.
    pub fn restore(bytes: &[u8]) -> Option<OlmCrypto> {
        serde_json::from_slice(bytes).ok().map(OlmCrypto::from_pickle)
    }
}

impl Default for OlmCrypto {
    fn default() -> Self {
        OlmCrypto::new()
    }
}

/// Makes a fallback key and returns it. The account keeps the previous one too, so first
/// messages made from the last bundle still open.
fn fresh_prekey(account: &mut Account) -> DhKey {
    account.generate_fallback_key();
    let key = account.fallback_key().into_values().next().expect("a fallback key was just generated");
    account.mark_keys_as_published();
    DhKey(key.to_bytes())
}

impl DmCrypto for OlmCrypto {
    fn prekeys(&self) -> Prekeys {
        Prekeys { identity: DhKey(self.account.curve25519_key().to_bytes()), prekey: self.prekey }
    }

    fn rotate_prekey(&mut self, _rng: &mut Rng) -> Prekeys {
        self.prekey = fresh_prekey(&mut self.account);
        self.prekeys()
    }

    fn has_session(&self, peer: &PeerId) -> bool {
        self.sessions.has(peer)
    }

    fn start_session(&mut self, _rng: &mut Rng, peer: PeerId, theirs: &Prekeys) -> Result<(), CryptoError> {
        let session = self
            .account
            .create_outbound_session(SessionConfig::version_1(), curve(&theirs.identity), curve(&theirs.prekey))
            .map_err(|_| CryptoError::BadKeys)?;
        self.sessions.add(peer, session);
        Ok(())
    }

    fn encrypt(&mut self, _rng: &mut Rng, peer: &PeerId, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let message = self.sessions.current(peer)?.encrypt(plaintext).map_err(|_| CryptoError::NoSession)?;
        Ok(encode(&message))
    }

    fn decrypt(&mut self, _rng: &mut Rng, from: &PeerId, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let message = decode(ciphertext).ok_or(CryptoError::Undecryptable)?;
        let first_contact = match &message {
            OlmMessage::PreKey(m) => Some(m.session_id()),
            OlmMessage::Normal(_) => None,
        };
        let known = self.sessions.of(from);
        for s in known.iter().filter(|s| first_contact.as_ref().is_none_or(|id| *id == s.session_id())) {
            // On a copy (vodozemac's sessions are not `Clone`; a pickle is the copy), kept only
            // if `confirm` follows.
            let mut copy = Session::from_pickle(s.pickle());
            if let Ok(plain) = copy.decrypt(&message) {
                self.sessions.hold(*from, copy);
                return Ok(plain);
            }
        }
        let Some(id) = first_contact else { return Err(CryptoError::Undecryptable) };
        // A first message of a session already held was refused by it (its key is used up, or
        // too old): making the session again from the message would reopen it.
        if known.iter().any(|s| s.session_id() == id) {
            return Err(CryptoError::Undecryptable);
        }
        let OlmMessage::PreKey(pre) = &message else { unreachable!("first contact is a pre-key message") };
        // Mutable only because a one-time key would be used up; bundles publish the fallback key
        // instead, which stays, so a refused message leaves the account as it was.
        let created = self
            .account
            .create_inbound_session(SessionConfig::version_1(), pre.identity_key(), pre)
            .map_err(|_| CryptoError::Undecryptable)?;
        self.sessions.hold(*from, created.session);
        Ok(created.plaintext)
    }

    fn confirm(&mut self, from: &PeerId) {
        self.sessions.confirm(from, |a, b| a.session_id() == b.session_id());
    }

    fn discard(&mut self, from: &PeerId) {
        self.sessions.discard(from);
    }

    fn save(&self) -> Option<Vec<u8>> {
        // JSON: vodozemac's pickles do not read back from a format that is not self-describing.
        serde_json::to_vec(&self.pickle()).ok()
    }
}

#[cfg(test)]
#[path = "olm_tests.rs"]
mod tests;
