//! The direct messages already opened, so each is accepted once.
//!
//! An id is remembered until the message expires: after that its envelope is refused as expired
//! anyway. Memory is bounded by `capacity`; when it is full the entry that expires first is
//! forgotten and its expiry becomes the *floor*: every message that expires at or before the
//! floor is refused from then on, since it could be one that was forgotten. Serialisable, so a
//! restart does not reopen the window.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::DmId;
use crate::time::Time;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplayGuard {
    #[serde(with = "super::pairs")]
    seen: BTreeMap<DmId, Time>,
    by_expiry: BTreeSet<(Time, DmId)>,
    floor: Time,
    capacity: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Replay {
    #[error("this message was already accepted")]
    Seen,
    #[error("this message expires no later than one that was forgotten")]
    BelowFloor,
}

impl ReplayGuard {
    /// Remembers at most `capacity` ids (at least one).
    pub fn new(capacity: usize) -> ReplayGuard {
        ReplayGuard { seen: BTreeMap::new(), by_expiry: BTreeSet::new(), floor: Time::ZERO, capacity: capacity.max(1) }
    }

    /// Whether a message could be new. Changes nothing.
    pub fn check(&self, id: DmId, expires_at: Time) -> Result<(), Replay> {
        if self.seen.contains_key(&id) {
            Err(Replay::Seen)
        } else if expires_at <= self.floor {
            Err(Replay::BelowFloor)
        } else {
            Ok(())
        }
    }

    /// Records an accepted message (after [`check`](Self::check) passed and it opened).
    pub fn insert(&mut self, id: DmId, expires_at: Time) {
        if self.seen.insert(id, expires_at).is_some() {
            return;
        }
        self.by_expiry.insert((expires_at, id));
        while self.seen.len() > self.capacity {
            let Some((at, old)) = self.by_expiry.pop_first() else { break };
            self.seen.remove(&old);
            self.floor = self.floor.max(at);
        }
    }

    /// Forgets what has expired by `now`; such messages are refused as expired before they get here.
    pub fn expire(&mut self, now: Time) {
        while let Some(&(at, id)) = self.by_expiry.first() {
            if at > now {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    fn id(i: u16) -> DmId {
        let mut b = [0; 16];
        b[..2].copy_from_slice(&i.to_be_bytes());
        DmId(b)
    }

    /// Whatever arrives, in whatever order, within any capacity: nothing is accepted twice, and
    /// memory stays within the capacity. A message's expiry is signed with it, so each id has one.
    #[test]
    fn nothing_is_accepted_twice() {
        fn prop(capacity: u8, arrivals: Vec<u16>) -> TestResult {
            let mut g = ReplayGuard::new(usize::from(capacity % 16));
            let mut accepted = std::collections::BTreeSet::new();
            for i in arrivals {
                let i = i % 64;
                let exp = Time::from_micros(u64::from(i.wrapping_mul(37) % 11) + 1);
                if g.check(id(i), exp).is_ok() {
                    if !accepted.insert(i) {
                        return TestResult::error(format!("{i} accepted twice"));
                    }
                    g.insert(id(i), exp);
                }
                if g.len() > usize::from(capacity % 16).max(1) {
                    return TestResult::error("over capacity");
                }
            }
            TestResult::passed()
        }
        QuickCheck::new().tests(500).quickcheck(prop as fn(u8, Vec<u16>) -> TestResult);
    }

    #[test]
    fn expiry_forgets_and_round_trips() {
        let mut g = ReplayGuard::new(10);
        g.insert(id(1), Time::from_micros(5));
        assert_eq!(g.check(id(1), Time::from_micros(5)), Err(Replay::Seen));
        let back: ReplayGuard = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(back.check(id(1), Time::from_micros(5)), Err(Replay::Seen));
        g.expire(Time::from_micros(5));
        assert!(g.is_empty());
    }
}
