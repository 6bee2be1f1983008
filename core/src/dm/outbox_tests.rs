use super::*;
use quickcheck::{QuickCheck, TestResult};

const NOW: Time = Time::from_micros(1_000_000_000);

fn env(n: u8, to: u8) -> Envelope {
    Envelope {
        id: DmId([n; 16]),
        from: PeerId([0; 32]),
        to: PeerId([to; 32]),
        expires_at: NOW + crate::dm::DEFAULT_EXPIRY,
        ciphertext: vec![1; 300],
    }
}

#[test]
fn a_message_moves_forward_through_its_states() {
    let mut o = Outbox::new(OutboxConfig::default());
    let mut rng = Rng::new(1);
    let e = env(1, 9);
    o.push(NOW, e.clone()).unwrap();
    assert_eq!(o.push(NOW, e.clone()), Err(OutboxError::Duplicate));
    assert_eq!(o.state(&e.id), Some(DmState::Queued));
    assert_eq!(o.due(NOW), vec![&e]);
    assert_eq!(o.attempted(NOW, &mut rng, &e.id), Some(StateChange { id: e.id, to: e.to, state: DmState::Sent }));
    assert!(o.due(NOW).is_empty());
    assert_eq!(o.stored(NOW, &e.id), Some(StateChange { id: e.id, to: e.to, state: DmState::Stored }));
    // Stored: the next try is after `retry_stored`.
    assert_eq!(o.poll_timeout(), Some((NOW + OutboxConfig::default().retry_stored, OutboxTimer::Retry)));
    assert_eq!(o.receipt(&PeerId([8; 32]), ReceiptKind::Delivered, &e.id), Err(OutboxError::NotTheRecipient));
    let to = e.to;
    assert_eq!(
        o.receipt(&to, ReceiptKind::Delivered, &e.id),
        Ok(vec![StateChange { id: e.id, to: e.to, state: DmState::Delivered }])
    );
    assert!(o.due(NOW + crate::dm::DEFAULT_EXPIRY).is_empty(), "delivered: nothing left to send");
    assert_eq!(o.stored(NOW, &e.id), None, "never backwards");
    assert_eq!(
        o.receipt(&to, ReceiptKind::Read, &e.id),
        Ok(vec![StateChange { id: e.id, to: e.to, state: DmState::Read }])
    );
    assert_eq!(o.receipt(&to, ReceiptKind::Delivered, &e.id), Ok(vec![]));
    // A delivered message leaves at expiry without being reported expired.
    assert!(o.expire(e.expires_at).is_empty());
    assert!(o.is_empty());
}

#[test]
fn undelivered_messages_expire_and_survive_a_restart() {
    let mut o = Outbox::new(OutboxConfig::default());
    let mut rng = Rng::new(1);
    let (a, b) = (env(1, 9), env(2, 9));
    o.push(NOW, a.clone()).unwrap();
    o.push(NOW, b.clone()).unwrap();
    o.attempted(NOW, &mut rng, &a.id);
    let back: Outbox = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
    assert_eq!(back.state(&a.id), Some(DmState::Sent));
    assert_eq!(back.poll_timeout(), o.poll_timeout());
    let mut o = back;
    let gone = o.expire(a.expires_at);
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|c| c.state == DmState::Expired));
    assert!(o.is_empty());
    assert_eq!(o.push(a.expires_at, a.clone()), Err(OutboxError::Expired));
}

/// Retries back off: every wait is at least three quarters of the doubled wait (capped) and never
/// more than it, whatever the seed; nothing is due before its time, and the outbox never
/// holds more than its capacity. A failure prints the seed.
#[test]
fn retries_back_off_within_bounds() {
    fn prop(seed: u64, attempts: u8) -> TestResult {
        let config = OutboxConfig { capacity: 1, ..OutboxConfig::default() };
        let mut o = Outbox::new(config.clone());
        let mut rng = Rng::new(seed);
        let e = env(1, 9);
        o.push(NOW, e.clone()).unwrap();
        if o.push(NOW, env(2, 9)) != Err(OutboxError::Full) {
            return TestResult::error(format!("seed {seed}: over capacity"));
        }
        let mut now = NOW;
        for i in 0..u32::from(attempts % 30) {
            o.attempted(now, &mut rng, &e.id);
            let (at, why) = o.poll_timeout().unwrap();
            let full = config.retry_first.saturating_mul(1 << i.min(20)).min(config.retry_max);
            let wait = at.since(now);
            if why != OutboxTimer::Retry || wait > full || wait < full.mul_f64(0.75) {
                return TestResult::error(format!("seed {seed}: attempt {i} waits {wait:?} of {full:?}"));
            }
            if !o.due(at - core::time::Duration::from_micros(1)).is_empty() || o.due(at).is_empty() {
                return TestResult::error(format!("seed {seed}: due at the wrong time"));
            }
            now = at;
        }
        TestResult::passed()
    }
    QuickCheck::new().tests(300).quickcheck(prop as fn(u64, u8) -> TestResult);
}

#[test]
fn a_read_receipt_ahead_of_its_delivered_receipt_reports_both_in_order() {
    let mut o = Outbox::new(OutboxConfig::default());
    let mut rng = Rng::new(3);
    let e = env(2, 9);
    o.push(NOW, e.clone()).unwrap();
    o.attempted(NOW, &mut rng, &e.id);
    o.stored(NOW, &e.id);
    let (id, to) = (e.id, e.to);
    assert_eq!(
        o.receipt(&to, ReceiptKind::Read, &id),
        Ok(vec![StateChange { id, to, state: DmState::Delivered }, StateChange { id, to, state: DmState::Read },])
    );
    assert_eq!(o.receipt(&to, ReceiptKind::Delivered, &id), Ok(vec![]), "the late delivered receipt changes nothing");
}
