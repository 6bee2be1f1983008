use super::*;
use crate::identity::Ed25519Keys;
use quickcheck::{QuickCheck, TestResult};

const NOW: Time = Time::from_micros(1_000_000_000);

fn peer(i: u8) -> PeerId {
    PeerId([i; 32])
}

fn env(n: u32, to: PeerId, len: usize) -> Envelope {
    let mut id = [0; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    Envelope { id: DmId(id), from: peer(0), to, expires_at: NOW + crate::dm::DEFAULT_EXPIRY, ciphertext: vec![7; len] }
}

fn small() -> MailboxConfig {
    MailboxConfig {
        recipients_max: 2,
        per_recipient_count: 20,
        per_recipient_bytes: 20 * 1000,
        per_sender_count: 5,
        per_sender_bytes: 4000,
        total_count: 30,
        total_bytes: 30 * 1000,
    }
}

#[test]
fn deposit_collect_ack() {
    let bob = Ed25519Keys::from_seed(2);
    let (me, b) = (peer(100), bob.public_key().peer_id());
    let mut mb = Mailbox::new(me, small());
    assert!(mb.serve(b));
    assert_eq!(mb.deposit(NOW, peer(1), env(1, peer(9), 10)), Err(DepositError::NotServed));
    for n in 1..=3 {
        assert_eq!(mb.deposit(NOW, peer(1), env(n, b, 300)), Ok(Deposit::Stored));
    }
    assert_eq!(mb.deposit(NOW, peer(1), env(2, b, 300)), Ok(Deposit::AlreadyHeld));
    // Pages, oldest first.
    let page: Vec<DmId> = mb.collect(&b, None, 500).iter().map(|e| e.id).collect();
    assert_eq!(page, vec![env(1, b, 0).id]);
    let rest: Vec<DmId> = mb.collect(&b, Some(page[0]), 10_000).iter().map(|e| e.id).collect();
    assert_eq!(rest.len(), 2);
    assert!(mb.collect(&peer(9), None, 10_000).is_empty());
    // Only Bob's own signed ack, for this mailbox, drops his envelopes.
    let forged = Ack { recipient: bob.public_key(), ..Ack::new(&Ed25519Keys::from_seed(3), me, page.clone()) };
    assert_eq!(mb.acknowledge(&bob, &forged), Err(AckError::BadSignature));
    assert_eq!(mb.acknowledge(&bob, &Ack::new(&bob, peer(101), page.clone())), Err(AckError::OtherMailbox));
    assert_eq!(mb.acknowledge(&bob, &Ack::new(&bob, me, page.clone())), Ok(1));
    assert_eq!(mb.acknowledge(&bob, &Ack::new(&bob, me, page)), Ok(0), "a replayed ack changes nothing");
    assert_eq!(mb.usage().count, 2);
    assert_eq!(mb.sender_usage(&peer(1)).count, 2);
}

#[test]
fn expiry_and_limits() {
    let mut mb = Mailbox::new(peer(100), small());
    assert!(mb.serve(peer(1)) && mb.serve(peer(2)) && mb.serve(peer(1)));
    assert!(!mb.serve(peer(3)), "recipients_max");
    let mut e = env(1, peer(1), 10);
    e.expires_at = NOW;
    assert_eq!(mb.deposit(NOW, peer(5), e.clone()), Err(DepositError::Expired));
    e.expires_at = NOW + MAX_EXPIRY + core::time::Duration::from_secs(1);
    assert_eq!(mb.deposit(NOW, peer(5), e.clone()), Err(DepositError::ExpiryTooFar));
    assert_eq!(mb.deposit(NOW, peer(5), env(1, peer(1), MAX_CIPHERTEXT + 1)), Err(DepositError::TooLarge));
    e.expires_at = NOW + core::time::Duration::from_secs(60);
    mb.deposit(NOW, peer(5), e.clone()).unwrap();
    mb.deposit(NOW, peer(5), env(2, peer(1), 10)).unwrap();
    assert_eq!(mb.poll_timeout(), Some(e.expires_at));
    assert_eq!(mb.expire(e.expires_at), 1);
    assert_eq!(mb.usage().count, 1);
    mb.stop_serving(&peer(1));
    assert_eq!(mb.usage(), Usage::default());
    assert_eq!(mb.sender_usage(&peer(5)), Usage::default());
    // Serialised and back, it holds the same.
    mb.serve(peer(1));
    mb.deposit(NOW, peer(5), env(3, peer(1), 10)).unwrap();
    let back: Mailbox = serde_json::from_str(&serde_json::to_string(&mb).unwrap()).unwrap();
    assert_eq!(back.collect(&peer(1), None, 10_000), mb.collect(&peer(1), None, 10_000));
}

/// A flooding sender fills its own quota and no more: every honest sender that stays within its
/// quota gets its envelopes in, nothing held is ever pushed out, and every limit holds, whatever
/// the order of deposits and expiries. A failure prints the operations that broke it.
#[test]
fn a_flooding_sender_cannot_push_out_others() {
    fn prop(ops: Vec<(u8, u8, u16)>) -> TestResult {
        let c = small();
        let mut mb = Mailbox::new(peer(100), c.clone());
        mb.serve(peer(1));
        let mut now = NOW;
        let mut held: std::collections::BTreeSet<DmId> = Default::default();
        let mut n = 0u32;
        for (op, who, size) in ops {
            n += 1;
            // Sender 0 floods (every op it can); senders 1..=3 are honest, at most 4 envelopes each.
            let sender = peer(who % 4);
            let honest = who % 4 != 0;
            match op % 8 {
                0..=5 => {
                    let len = usize::from(size % 600);
                    let e = Envelope { expires_at: now + crate::dm::DEFAULT_EXPIRY, ..env(n, peer(1), len) };
                    let fits_own = mb.sender_usage(&sender).count < 4;
                    match mb.deposit(now, sender, e.clone()) {
                        Ok(_) => {
                            held.insert(e.id);
                        }
                        // Honest senders within their quota are refused only if the sender quota
                        // in bytes is what they hit (their own doing), never for the flooder.
                        Err(DepositError::SenderFull) => {}
                        Err(err) if honest && fits_own => {
                            return TestResult::error(format!("honest deposit refused: {err}"));
                        }
                        Err(_) => {}
                    }
                }
                6 => {
                    now = now + core::time::Duration::from_secs(3600 * 24);
                    let before = mb.usage().count;
                    let gone = mb.expire(now);
                    if before - gone != mb.usage().count {
                        return TestResult::error("expiry miscounted");
                    }
                    held.retain(|id| mb.collect(&peer(1), None, usize::MAX).iter().any(|e| e.id == *id));
                }
                _ => {}
            }
            // Nothing held disappeared except by expiry.
            let now_held: std::collections::BTreeSet<DmId> =
                mb.collect(&peer(1), None, usize::MAX).iter().map(|e| e.id).collect();
            if now_held != held {
                return TestResult::error("held set changed behind our back");
            }
            let (t, r) = (mb.usage(), mb.recipient_usage(&peer(1)));
            if t.count > c.total_count
                || t.bytes > c.total_bytes
                || r.count > c.per_recipient_count
                || r.bytes > c.per_recipient_bytes
            {
                return TestResult::error("a global or recipient limit broke");
            }
            for s in 0..4 {
                let u = mb.sender_usage(&peer(s));
                if u.count > c.per_sender_count || u.bytes > c.per_sender_bytes {
                    return TestResult::error(format!("sender {s}'s quota broke"));
                }
            }
        }
        TestResult::passed()
    }
    QuickCheck::new().tests(300).quickcheck(prop as fn(Vec<(u8, u8, u16)>) -> TestResult);
}
