//! Who we know and how we treat them: the address book (bootstrap, peer exchange, inbound and
//! restored addresses), dial backoff with jitter, bans, peer scores and per-peer rate limits.
//!
//! Rules, all here so they can be read in one place:
//! - A failed dial doubles the wait before the next one: `base * 2^failures`, capped at `max`, times
//!   a random factor in [0.5, 1.5) so that nodes that lost the same peer do not retry in lockstep.
//! - Addresses learned by peer exchange that were never reached and failed [`FORGET_AFTER_FAILURES`]
//!   times are forgotten (stale peer cleanup). Bootstrap addresses are never forgotten.
//! - The book holds at most `cap` addresses; a new one replaces the worst entry learned by exchange.
//! - A peer's score starts at 0, falls on bad behaviour (see [`Penalty`]), rises slowly with useful
//!   chats; at [`BAN_SCORE`] the connection is closed and the address banned for a while.

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::identity::PeerId;
use crate::random::Rng;
use crate::time::Time;

pub const FORGET_AFTER_FAILURES: u32 = 6;
pub const BAN_SCORE: i32 = -100;
pub const MAX_SCORE: i32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Bootstrap,
    /// Given by the user (`connect -a`, or a `Connect` command).
    Manual,
    /// Remembered from an earlier run (the CLI's database).
    Restored,
    /// Learned from a `PeerResponse`.
    Exchange,
    /// A peer that connected to us and told us its listen port.
    Inbound,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub source: Source,
    pub peer_id: Option<PeerId>,
    pub failures: u32,
    pub next_attempt: Time,
    pub last_seen: Option<Time>,
    pub banned_until: Option<Time>,
    /// The address turned out to be this node itself.
    pub is_self: bool,
}

pub struct AddressBook {
    entries: BTreeMap<SocketAddr, Entry>,
    cap: usize,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl AddressBook {
    pub fn new(cap: usize, backoff_base: Duration, backoff_max: Duration) -> AddressBook {
        AddressBook { entries: BTreeMap::new(), cap, backoff_base, backoff_max }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&Entry> {
        self.entries.get(addr)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &Entry)> {
        self.entries.iter()
    }

    /// Adds an address if unknown (an address already known keeps its history, but a stronger
    /// source, e.g. a bootstrap flag, wins). Returns whether it was added.
    pub fn add(&mut self, addr: SocketAddr, source: Source, now: Time) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        if let Some(e) = self.entries.get_mut(&addr) {
            e.source = e.source.min(source);
            return false;
        }
        if self.entries.len() >= self.cap && !self.evict_one(source) {
            return false;
        }
        self.entries.insert(
            addr,
            Entry {
                source,
                peer_id: None,
                failures: 0,
                next_attempt: now,
                last_seen: None,
                banned_until: None,
                is_self: false,
            },
        );
        true
    }

    /// Makes room by dropping the least useful exchange-learned entry; never drops anything more
    /// trusted than what would replace it.
    fn evict_one(&mut self, incoming: Source) -> bool {
        let worst = self
            .entries
            .iter()
            .filter(|(_, e)| e.source >= Source::Exchange && e.source >= incoming)
            .max_by_key(|(_, e)| (e.last_seen.is_none(), e.failures))
            .map(|(a, _)| *a);
        match worst {
            Some(a) => {
                self.entries.remove(&a);
                true
            }
            None => false,
        }
    }

    /// Addresses worth dialing now, at most `n`: those that failed least first, random among
    /// equals. (Preferring addresses that worked before would keep a newcomer redialing full
    /// bootstrap nodes instead of the peers they referred it to.)
    pub fn dial_candidates(
        &self,
        now: Time,
        n: usize,
        rng: &mut Rng,
        skip: impl Fn(&SocketAddr, &Entry) -> bool,
    ) -> Vec<SocketAddr> {
        let mut ready: Vec<(u32, SocketAddr)> = self
            .entries
            .iter()
            .filter(|(a, e)| {
                !e.is_self && e.next_attempt <= now && e.banned_until.is_none_or(|t| t <= now) && !skip(a, e)
            })
            .map(|(a, e)| (e.failures, *a))
            .collect();
        // Shuffle, then stable-sort, so ties stay random.
        let len = ready.len();
        rng.choose_k(&mut ready, len);
        ready.sort_by_key(|(failures, _)| *failures);
        ready.into_iter().take(n).map(|(_, a)| a).collect()
    }

    /// A dial is in flight: do not pick the address again until it resolves.
    pub fn on_dial(&mut self, addr: &SocketAddr, now: Time) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.next_attempt = now + self.backoff_max;
        }
    }

    pub fn on_connected(&mut self, addr: &SocketAddr, peer: PeerId, now: Time) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.failures = 0;
            e.peer_id = Some(peer);
            e.last_seen = Some(now);
            e.next_attempt = now;
        }
    }

    pub fn touch(&mut self, addr: &SocketAddr, now: Time) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.last_seen = Some(now);
        }
    }

    /// A dial failed or an established connection dropped: back off, and forget addresses that
    /// never worked. Returns the time of the next attempt, if the address is kept.
    pub fn on_failure(&mut self, addr: &SocketAddr, now: Time, rng: &mut Rng) -> Option<Time> {
        let e = self.entries.get_mut(addr)?;
        e.failures = e.failures.saturating_add(1);
        if e.source >= Source::Exchange && e.last_seen.is_none() && e.failures >= FORGET_AFTER_FAILURES {
            self.entries.remove(addr);
            return None;
        }
        let exp = self.backoff_base.saturating_mul(1u32 << (e.failures - 1).min(16));
        let wait = exp.min(self.backoff_max).mul_f64(0.5 + rng.unit());
        e.next_attempt = now + wait;
        Some(e.next_attempt)
    }

    pub fn ban(&mut self, addr: &SocketAddr, until: Time) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.banned_until = Some(until);
        }
    }

    pub fn mark_self(&mut self, addr: &SocketAddr) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.is_self = true;
        }
    }

    /// Addresses to share in a `PeerResponse`: ones we have reached, at most `n`, random.
    pub fn sample_for_exchange(&self, n: usize, rng: &mut Rng, now: Time) -> Vec<SocketAddr> {
        let mut good: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| e.last_seen.is_some() && !e.is_self && e.banned_until.is_none_or(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        rng.choose_k(&mut good, n).to_vec()
    }
}

/// Why a peer's score drops, and by how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Penalty {
    /// A frame that does not decode.
    BadFrame,
    /// A chat whose signature fails, or that breaks the size limits.
    BadChat,
    /// A message that breaks the protocol (too many ids, a reply nobody asked for, ...).
    ProtocolViolation,
    /// More traffic than the rate limit allows.
    Flood,
}

impl Penalty {
    pub fn points(self) -> i32 {
        match self {
            Penalty::BadFrame => 25,
            Penalty::BadChat => 20,
            Penalty::ProtocolViolation => 10,
            Penalty::Flood => 2,
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Time,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub fn new(rate_per_s: f64, burst: f64, now: Time) -> TokenBucket {
        TokenBucket { tokens: burst, last: now, rate: rate_per_s, burst }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Time) -> bool {
        let dt = now.since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn book() -> AddressBook {
        AddressBook::new(4, Duration::from_millis(500), Duration::from_secs(60))
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = book();
        let mut rng = Rng::new(1);
        let now = Time::from_millis(1000);
        b.add(addr(1), Source::Bootstrap, now);
        let mut waits = Vec::new();
        for _ in 0..12 {
            let next = b.on_failure(&addr(1), now, &mut rng).unwrap();
            waits.push(next.since(now));
        }
        assert!(waits[0] >= Duration::from_millis(250) && waits[0] < Duration::from_millis(750));
        assert!(waits[3] >= Duration::from_secs(2) && waits[3] < Duration::from_secs(6));
        assert!(waits.iter().all(|w| *w < Duration::from_secs(90)));
    }

    #[test]
    fn unreachable_exchanged_addresses_are_forgotten_but_bootstrap_kept() {
        let mut b = book();
        let mut rng = Rng::new(1);
        let now = Time::ZERO;
        b.add(addr(1), Source::Bootstrap, now);
        b.add(addr(2), Source::Exchange, now);
        for _ in 0..FORGET_AFTER_FAILURES {
            b.on_failure(&addr(1), now, &mut rng);
            b.on_failure(&addr(2), now, &mut rng);
        }
        assert!(b.get(&addr(1)).is_some());
        assert!(b.get(&addr(2)).is_none());
    }

    #[test]
    fn cap_evicts_exchange_entries_only() {
        let mut b = book();
        let now = Time::ZERO;
        for p in 1..=4 {
            assert!(b.add(addr(p), Source::Bootstrap, now));
        }
        assert!(!b.add(addr(9), Source::Exchange, now));
        let mut b = book();
        b.add(addr(1), Source::Bootstrap, now);
        for p in 2..=4 {
            b.add(addr(p), Source::Exchange, now);
        }
        assert!(b.add(addr(9), Source::Manual, now));
        assert_eq!(b.len(), 4);
        assert!(b.get(&addr(1)).is_some());
    }

    #[test]
    fn candidates_skip_banned_self_and_waiting() {
        let mut b = book();
        let mut rng = Rng::new(2);
        let now = Time::from_millis(10);
        for p in 1..=4 {
            b.add(addr(p), Source::Manual, now);
        }
        b.ban(&addr(1), now + Duration::from_secs(10));
        b.mark_self(&addr(2));
        b.on_dial(&addr(3), now);
        assert_eq!(b.dial_candidates(now, 10, &mut rng, |_, _| false), vec![addr(4)]);
        assert!(b.dial_candidates(now, 10, &mut rng, |a, _| *a == addr(4)).is_empty());
    }

    #[test]
    fn token_bucket_limits_rate() {
        let mut t = TokenBucket::new(10.0, 5.0, Time::ZERO);
        assert_eq!((0..100).filter(|_| t.take(Time::ZERO)).count(), 5);
        assert_eq!((0..100).filter(|_| t.take(Time::from_millis(1000))).count(), 5);
        assert_eq!((0..100).filter(|_| t.take(Time::from_millis(1300))).count(), 3);
    }
}
