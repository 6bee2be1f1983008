//! Forward secrecy and recovery after a compromise, with vodozemac's ratchet. The attacker holds
//! every envelope ever sent and, at some point, a full copy of Bob's state (keys and sessions).

use super::*;
use crate::dm::envelope::{open, seal, Body, Envelope, Message};
use crate::dm::replay::ReplayGuard;
use crate::dm::{DmId, DEFAULT_EXPIRY};
use crate::identity::{Ed25519Keys, Keys};
use crate::time::Time;

const NOW: Time = Time::from_micros(1_700_000_000_000_000);

struct Side {
    keys: Ed25519Keys,
    olm: OlmCrypto,
    rng: Rng,
    replay: ReplayGuard,
}

impl Side {
    fn new(seed: u64) -> Side {
        Side {
            keys: Ed25519Keys::from_seed(seed),
            olm: OlmCrypto::new(),
            rng: Rng::new(seed),
            replay: ReplayGuard::new(100),
        }
    }
    fn id(&self) -> PeerId {
        self.keys.public_key().peer_id()
    }
    fn send(&mut self, to: PeerId, text: &str) -> Envelope {
        let id = DmId::generate(NOW, &mut self.rng);
        let m = Message {
            id,
            sender: self.keys.public_key(),
            to,
            sent_at: NOW,
            expires_at: NOW + DEFAULT_EXPIRY,
            body: Body::Text(text.into()),
        };
        seal(&mut self.olm, &self.keys, &mut self.rng, &m).unwrap()
    }
    fn open(&mut self, env: &Envelope) -> bool {
        open(&mut self.olm, &self.keys, &mut self.rng, &mut self.replay, NOW, env).is_ok()
    }
    /// What an attacker who copied this side's state could do with a ciphertext.
    fn stolen(&self) -> OlmCrypto {
        OlmCrypto::from_pickle(self.olm.pickle())
    }
}

fn pair() -> (Side, Side) {
    let (mut a, b) = (Side::new(1), Side::new(2));
    a.olm.start_session(&mut a.rng, b.id(), &b.olm.prekeys()).unwrap();
    (a, b)
}

fn can_read(thief: &mut OlmCrypto, from: PeerId, env: &Envelope) -> bool {
    thief.decrypt(&mut Rng::new(0), &from, &env.ciphertext).is_ok()
}

#[test]
fn a_captured_message_stays_unreadable_after_the_keys_leak() {
    let (mut a, mut b) = pair();
    let captured = a.send(b.id(), "secret");
    // Had the attacker taken Bob's state before he read it, it could read it: the test is live.
    assert!(can_read(&mut b.stolen(), a.id(), &captured));
    assert!(b.open(&captured));
    // Once read, its key is gone: Bob's state, stolen now, cannot read it again...
    assert!(!can_read(&mut b.stolen(), a.id(), &captured));
    // ...nor after the conversation moved on through both ratchets.
    let reply = b.send(a.id(), "ok");
    assert!(a.open(&reply));
    let next = a.send(b.id(), "more");
    assert!(b.open(&next));
    let mut thief = b.stolen();
    assert!(!can_read(&mut thief, a.id(), &captured));
    assert!(!can_read(&mut thief, a.id(), &next));
    // Alice's stolen state cannot read Bob's old reply either.
    assert!(!can_read(&mut a.stolen(), b.id(), &reply));
}

#[test]
fn the_conversation_recovers_after_a_compromise() {
    let (mut a, mut b) = pair();
    assert!(b.open(&a.send(b.id(), "hello")));
    assert!(a.open(&b.send(a.id(), "hi")));
    let mut thief = b.stolen();
    // Until the ratchet turns, the thief reads what Alice sends on the current chain...
    let exposed = a.send(b.id(), "exposed");
    assert!(can_read(&mut thief, a.id(), &exposed));
    assert!(b.open(&exposed));
    // ...but Bob's next reply brings a fresh ratchet key the thief never saw, and what Alice
    // sends after reading it is out of the thief's reach.
    assert!(a.open(&b.send(a.id(), "turn")));
    let healed = a.send(b.id(), "healed");
    assert!(!can_read(&mut thief, a.id(), &healed));
    assert!(b.open(&healed));
}

#[test]
fn state_survives_a_restart_and_a_prekey_rotation() {
    let (mut a, mut b) = pair();
    // Bob rotates his prekey while Alice's first message is in flight: it still opens.
    let first = a.send(b.id(), "in flight");
    b.olm.rotate_prekey(&mut b.rng);
    assert!(b.open(&first));
    let mut b2 = Side { olm: OlmCrypto::from_pickle(b.olm.pickle()), ..Side::new(2) };
    assert_eq!(b2.olm.prekeys(), b.olm.prekeys());
    assert!(b2.olm.has_session(&a.id()));
    assert!(a.open(&b2.send(a.id(), "after restart")));
    assert!(b2.open(&a.send(b.id(), "and back")));
}

#[test]
fn a_saved_ratchet_reads_back_with_its_keys_and_sessions() {
    let mut alice = Side::new(1);
    let bob = Side::new(2);
    alice.olm.start_session(&mut alice.rng, bob.id(), &bob.olm.prekeys()).unwrap();
    let bytes = alice.olm.save().expect("Olm saves");
    let back = OlmCrypto::restore(&bytes).expect("reads back");
    assert_eq!(back.prekeys(), alice.olm.prekeys());
    assert!(back.has_session(&bob.id()));
    assert!(OlmCrypto::restore(b"not a save").is_none());
}
