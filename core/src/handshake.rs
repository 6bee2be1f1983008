//! The connection handshake: each side proves it holds the private key of the public key it claims.
//!
//! Both sides send `Hello` (public key, a fresh 32-byte nonce, username, listen port) as soon as the
//! connection is up. On the other's `Hello`, each signs
//! `"p2p-chat/handshake/v1" || their nonce || my key || their key` and sends it as `Auth`. A valid
//! `Auth` over *our* fresh nonce can only come from the holder of the claimed key, so a `PeerId`
//! cannot be claimed by anyone else, and an old `Auth` cannot be replayed.
//!
//! This authenticates but does not encrypt: a man in the middle who relays both handshakes
//! unchanged can still read the session. The security work replaces this module with a Noise
//! handshake bound to the same identity; nothing outside this module depends on how the proof is
//! made.

use crate::identity::{Keys, PublicKey};
use crate::wire::{Hello, Message};

const DOMAIN: &[u8] = b"p2p-chat/handshake/v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("expected {expected} during the handshake, got {got}")]
    Unexpected { expected: &'static str, got: &'static str },
    #[error("the peer's handshake signature does not verify for the key it claims")]
    BadSignature,
    #[error("connected to ourselves")]
    SelfConnection,
    #[error("username longer than {0} bytes")]
    UsernameTooLong(usize),
}

#[derive(Debug)]
pub struct Handshake {
    my_nonce: [u8; 32],
    theirs: Option<Hello>,
}

fn transcript(signer_nonce_seen: &[u8; 32], signer: &PublicKey, other: &PublicKey) -> Vec<u8> {
    let mut t = Vec::with_capacity(DOMAIN.len() + 96);
    t.extend_from_slice(DOMAIN);
    t.extend_from_slice(signer_nonce_seen);
    t.extend_from_slice(&signer.0);
    t.extend_from_slice(&other.0);
    t
}

impl Handshake {
    /// `nonce` must be fresh randomness (from the node's seeded RNG).
    pub fn new(nonce: [u8; 32]) -> Handshake {
        Handshake { my_nonce: nonce, theirs: None }
    }

    pub fn hello(&self, keys: &dyn Keys, username: &str, listen_port: u16) -> Message {
        Message::Hello(Hello {
            public_key: keys.public_key(),
            nonce: self.my_nonce,
            username: username.to_owned(),
            listen_port,
        })
    }

    /// Feeds one message received before the handshake finished. Returns a message to send (our
    /// `Auth`), or, once the peer's `Auth` verifies, the peer's `Hello`.
    pub fn handle(&mut self, keys: &dyn Keys, msg: Message) -> Result<Progress, HandshakeError> {
        match (msg, &self.theirs) {
            (Message::Hello(hello), None) => {
                if hello.public_key == keys.public_key() {
                    return Err(HandshakeError::SelfConnection);
                }
                if hello.username.len() > crate::chat::MAX_USERNAME_BYTES {
                    return Err(HandshakeError::UsernameTooLong(crate::chat::MAX_USERNAME_BYTES));
                }
                let sig = keys.sign(&transcript(&hello.nonce, &keys.public_key(), &hello.public_key));
                self.theirs = Some(hello);
                Ok(Progress::Send(Message::Auth { signature: sig }))
            }
            (Message::Auth { signature }, Some(hello)) => {
                let t = transcript(&self.my_nonce, &hello.public_key, &keys.public_key());
                if keys.verify(&hello.public_key, &t, &signature) {
                    Ok(Progress::Done(hello.clone()))
                } else {
                    Err(HandshakeError::BadSignature)
                }
            }
            (other, None) => Err(HandshakeError::Unexpected { expected: "Hello", got: other.kind() }),
            (other, Some(_)) => Err(HandshakeError::Unexpected { expected: "Auth", got: other.kind() }),
        }
    }
}

#[derive(Debug)]
pub enum Progress {
    Send(Message),
    Done(Hello),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Ed25519Keys;

    fn run(
        a_keys: &Ed25519Keys,
        b_keys: &Ed25519Keys,
        tamper: impl Fn(Message) -> Message,
    ) -> Result<Hello, HandshakeError> {
        let mut a = Handshake::new([1; 32]);
        let mut b = Handshake::new([2; 32]);
        let a_hello = a.hello(a_keys, "a", 1);
        let b_hello = b.hello(b_keys, "b", 2);
        let Progress::Send(b_auth) = b.handle(b_keys, a_hello)? else { panic!() };
        let Progress::Send(_a_auth) = a.handle(a_keys, b_hello)? else { panic!() };
        match a.handle(a_keys, tamper(b_auth))? {
            Progress::Done(h) => Ok(h),
            Progress::Send(_) => panic!("no further message expected"),
        }
    }

    #[test]
    fn honest_handshake_completes() {
        let (a, b) = (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2));
        let hello = run(&a, &b, |m| m).unwrap();
        assert_eq!(hello.public_key, b.public_key());
        assert_eq!(hello.username, "b");
    }

    #[test]
    fn auth_from_another_key_fails() {
        let (a, b, m) = (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2), Ed25519Keys::from_seed(3));
        // Mallory claims b's key but can only sign with her own.
        let forged = |_msg| {
            let t = transcript(&[1; 32], &b.public_key(), &a.public_key());
            Message::Auth { signature: m.sign(&t) }
        };
        assert_eq!(run(&a, &b, forged).unwrap_err(), HandshakeError::BadSignature);
    }

    #[test]
    fn replayed_auth_for_another_nonce_fails() {
        let (a, b) = (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2));
        let replay = |_msg| {
            let t = transcript(&[9; 32], &b.public_key(), &a.public_key());
            Message::Auth { signature: b.sign(&t) }
        };
        assert_eq!(run(&a, &b, replay).unwrap_err(), HandshakeError::BadSignature);
    }

    #[test]
    fn out_of_order_and_self_are_errors() {
        let a = Ed25519Keys::from_seed(1);
        let mut h = Handshake::new([0; 32]);
        assert!(matches!(h.handle(&a, Message::PeerRequest), Err(HandshakeError::Unexpected { .. })));
        let own = Handshake::new([5; 32]).hello(&a, "me", 0);
        assert_eq!(h.handle(&a, own).unwrap_err(), HandshakeError::SelfConnection);
    }
}
