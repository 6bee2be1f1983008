//! What answering a peer costs this node, and when it stops answering.
//!
//! A node serves its neighbours: chats they ask for (`IWant`, `Graft`), reconciliation rounds
//! (`Sync`), addresses (`PeerRequest`) and pongs. Each answer can be far larger than the request
//! (one 62-byte `Sync` with an empty summary asks for every chat held), so every answer is charged
//! to the asking connection, and checked before it is built:
//!
//! - **Credit.** Each connection starts with [`ServeLimits::burst_bytes`] of credit, enough for one
//!   honest catch-up of the retention window, and earns [`ServeLimits::earn_per_byte`] bytes of it
//!   for every byte it sends (up to the burst again). Credit does not grow with time alone: a peer
//!   that asks without speaking gets at most its burst, and after that at most `earn_per_byte`
//!   times what it sends, however slowly it paces its requests. An answer that does not fit is
//!   cut, and the request costs the peer score ([`Refusal::OverBudget`]).
//! - **Never twice.** A chat sent to a peer in answer to a request is remembered for that connection
//!   for as long as the chat is held (the retention window); asking for it again gets nothing, and
//!   asking again often costs score ([`Served::repeat`]). Honest peers rarely ask twice: only when
//!   a request crosses the answer in flight.
//! - **Backpressure before work.** While more than [`ServeLimits::answer_watermark`] bytes wait to
//!   be written to a peer (queued here or unsent by the runtime), its requests go unanswered (no
//!   penalty: a slow link is not an offence), so no read, however crafted, queues more than the
//!   watermark plus one answer. Past [`ServeLimits::read_pause`] the runtime stops reading the
//!   peer (see `Node::wants_read`), and past [`ServeLimits::max_backlog`] it is disconnected.
//!
//! Cost units are bytes: the encoded size of what is sent, plus [`ID_WALK_COST`] for each id a
//! reconciliation answer walks over.

use std::collections::BTreeSet;

use crate::chat::ChatId;
use crate::rate::{RateLimit, Tokens};
use crate::time::Time;

/// Credit charged for each held id a reconciliation answer walks over (fingerprinting, listing,
/// splitting): it is bounded like the bytes, so 64 ranges over a large history cannot buy a
/// second of the loop for the price of one frame.
pub const ID_WALK_COST: usize = 1;

/// What a node lets each peer make it do. `ServeLimits::default()` is what the CLI runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Credit a connection starts with and can save up to: one honest catch-up of the retention
    /// window (10,000 chats of 400 bytes).
    pub burst_bytes: u32,
    /// Credit earned per byte received from the peer: the sustained amplification the node allows.
    pub earn_per_byte: u32,
    /// Most chat bytes one reconciliation answer pushes; the rest follows in the next round.
    pub round_bytes: usize,
    /// Above this many bytes waiting for a peer, its requests are not answered.
    pub answer_watermark: usize,
    /// Above this many bytes waiting for a peer, the runtime stops reading from it.
    pub read_pause: usize,
    /// Above this many bytes unsent by the runtime, the peer is too slow and is disconnected.
    pub max_backlog: usize,
}

impl Default for ServeLimits {
    fn default() -> ServeLimits {
        ServeLimits {
            burst_bytes: 4 * 1024 * 1024,
            earn_per_byte: 2,
            round_bytes: 256 * 1024,
            answer_watermark: 256 * 1024,
            read_pause: 512 * 1024,
            max_backlog: 8 * 1024 * 1024,
        }
    }
}

/// Why an answer was not given in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The connection's credit does not cover it: the peer loses score.
    OverBudget,
    /// Too much waits to be written to the peer already: nothing is charged, the peer may ask again.
    Backlogged,
}

/// A connection's credit, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit(u32);

impl Credit {
    pub fn full(limits: &ServeLimits) -> Credit {
        Credit(limits.burst_bytes)
    }

    /// The peer sent `bytes`.
    pub fn earn(&mut self, bytes: usize, limits: &ServeLimits) {
        let earned = u32::try_from(bytes).unwrap_or(u32::MAX).saturating_mul(limits.earn_per_byte);
        self.0 = self.0.saturating_add(earned).min(limits.burst_bytes);
    }

    /// Takes `cost` if there is that much.
    pub fn spend(&mut self, cost: usize) -> bool {
        match u32::try_from(cost) {
            Ok(c) if c <= self.0 => {
                self.0 -= c;
                true
            }
            _ => false,
        }
    }

    pub fn left(self) -> usize {
        self.0 as usize
    }
}

/// Repeated requests a connection may make (ids already sent to it) before they cost score: a
/// few a second, as crossing requests come; a flood of them is an attack.
const REPEATS: RateLimit = RateLimit::new(4.0, 64.0);

/// What was sent to one connection in answer to its requests: made on its first answered request,
/// so the many connections that never ask cost nothing.
#[derive(Debug)]
pub struct Served {
    /// Ids sent in answers, within the retention window. At most `max_chats` (see `remember`).
    sent: BTreeSet<ChatId>,
    repeats: Tokens,
}

impl Served {
    pub fn new(now: Time) -> Served {
        Served { sent: BTreeSet::new(), repeats: Tokens::full(REPEATS.burst, now) }
    }

    /// Whether `id` was sent to this peer before.
    pub fn was_sent(&self, id: &ChatId) -> bool {
        self.sent.contains(id)
    }

    /// Records that `id` goes to the peer now. Ids below `oldest` (no longer held, so never asked
    /// for again) are forgotten, and past `cap` the oldest go first.
    pub fn remember(&mut self, id: ChatId, oldest: ChatId, cap: usize) {
        while self.sent.first().is_some_and(|f| *f < oldest) || self.sent.len() >= cap.max(1) {
            self.sent.pop_first();
        }
        self.sent.insert(id);
    }

    /// The peer asked for `n` chats it had been sent already: whether that is still within what
    /// crossing requests explain.
    pub fn repeat(&mut self, n: usize, now: Time) -> bool {
        (0..n).all(|_| self.repeats.take(now, REPEATS))
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> ChatId {
        ChatId::new_v7(ms, &[7; 10])
    }

    #[test]
    fn credit_is_earned_by_speaking_never_by_waiting() {
        let limits = ServeLimits { burst_bytes: 1000, earn_per_byte: 2, ..ServeLimits::default() };
        let mut c = Credit::full(&limits);
        assert!(c.spend(1000));
        assert!(!c.spend(1));
        c.earn(10, &limits);
        assert_eq!(c.left(), 20);
        c.earn(10_000, &limits);
        assert_eq!(c.left(), 1000, "capped at the burst");
        assert!(!c.spend(usize::MAX));
    }

    #[test]
    fn sent_ids_are_forgotten_when_no_longer_held_or_past_the_cap() {
        let mut s = Served::new(Time::ZERO);
        for ms in 0..10 {
            s.remember(id(ms), id(0), 100);
        }
        assert!(s.was_sent(&id(3)));
        s.remember(id(10), id(5), 100);
        assert!(!s.was_sent(&id(3)) && s.was_sent(&id(5)) && s.was_sent(&id(10)));
        assert_eq!(s.len(), 6);
        for ms in 11..20 {
            s.remember(id(ms), id(0), 4);
        }
        assert_eq!(s.len(), 4);
        assert!(s.was_sent(&id(19)) && !s.was_sent(&id(15)));
    }

    #[test]
    fn a_few_repeats_are_free_a_flood_is_not() {
        let mut s = Served::new(Time::ZERO);
        assert!(s.repeat(3, Time::ZERO));
        assert!(!s.repeat(300, Time::ZERO));
    }
}
