//! When a chat is forwarded, and how a missed chat is fetched.
//!
//! The forwarding rule, in full:
//! - A node forwards a chat only the first time it accepts it (see `dedup`), never a duplicate.
//! - **Eager push**: to `fanout` neighbours drawn at random, excluding the one it came from, if the
//!   frame's `ttl` is above zero; they receive `ttl - 1`. The originator sends `ttl = config.ttl`.
//!   This is the seed's epidemic push ("infect and die"), bounded by the TTL.
//! - **Lazy push**: the chat's id, in an `IHave`, to `lazy_fanout` further random neighbours, whatever
//!   the TTL. A neighbour that has not received the chat a short while (`lazy_wait`) after the
//!   announcement asks for it with `IWant`; if that goes unanswered for `want_timeout` it asks the
//!   next announcer. This is the lazy half of Plumtree (Leitão, Pereira, Rodrigues, "Epidemic
//!   Broadcast Trees", SRDS 2007, section 3.3) and of gossipsub's IHAVE/IWANT.
//! - **Anti-entropy** (module `sync`), periodically with one random neighbour and at once with every
//!   new neighbour, catches whatever both pushes missed: long partitions, nodes that were offline.
//!
//! Deviation from Plumtree: the eager set is redrawn at random for each chat instead of being pruned
//! into a tree, so no tree repair is needed under churn; redundancy is bounded by `fanout` instead.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::chat::ChatId;
use crate::node::ConnId;
use crate::random::Rng;
use crate::time::Time;

/// Most ids awaiting a lazy repair at once; beyond it new announcements are ignored (anti-entropy
/// still catches them).
pub const MAX_MISSING: usize = 8192;
/// Most announcers remembered per missing id.
const MAX_ANNOUNCERS: usize = 4;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub eager: Vec<ConnId>,
    pub lazy: Vec<ConnId>,
}

#[derive(Debug)]
struct Missing {
    announcers: Vec<ConnId>,
    /// When to ask (again).
    due: Time,
    /// How many `IWant`s were sent so far.
    asked: usize,
}

#[derive(Debug)]
pub struct Gossip {
    fanout: usize,
    lazy_fanout: usize,
    lazy_wait: Duration,
    want_timeout: Duration,
    missing: BTreeMap<ChatId, Missing>,
}

impl Gossip {
    pub fn new(fanout: usize, lazy_fanout: usize, lazy_wait: Duration, want_timeout: Duration) -> Gossip {
        Gossip { fanout, lazy_fanout, lazy_wait, want_timeout, missing: BTreeMap::new() }
    }

    /// Where a newly accepted chat goes. `peers` are the established neighbours.
    pub fn targets(&self, rng: &mut Rng, peers: &[ConnId], from: Option<ConnId>, ttl: u8) -> Targets {
        let mut candidates: Vec<ConnId> = peers.iter().copied().filter(|c| Some(*c) != from).collect();
        let eager_n = if ttl > 0 { self.fanout } else { 0 };
        let chosen = rng.choose_k(&mut candidates, eager_n + self.lazy_fanout);
        let split = eager_n.min(chosen.len());
        Targets { eager: chosen[..split].to_vec(), lazy: chosen[split..].to_vec() }
    }

    /// A neighbour announced a chat we do not have.
    pub fn on_ihave(&mut self, id: ChatId, from: ConnId, now: Time) {
        if let Some(m) = self.missing.get_mut(&id) {
            if m.announcers.len() < MAX_ANNOUNCERS && !m.announcers.contains(&from) {
                m.announcers.push(from);
            }
            return;
        }
        if self.missing.len() < MAX_MISSING {
            self.missing.insert(id, Missing { announcers: vec![from], due: now + self.lazy_wait, asked: 0 });
        }
    }

    /// We asked `from` for `id` directly (after a sync): wait for the answer, then give up to sync.
    pub fn on_asked(&mut self, id: ChatId, from: ConnId, now: Time) {
        if self.missing.len() < MAX_MISSING || self.missing.contains_key(&id) {
            self.missing.insert(id, Missing { announcers: vec![from], due: now + self.want_timeout, asked: 1 });
        }
    }

    /// The chat arrived; returns whether we had asked for it (it is a repair).
    pub fn on_received(&mut self, id: &ChatId) -> bool {
        self.missing.remove(id).is_some_and(|m| m.asked > 0)
    }

    pub fn on_conn_closed(&mut self, conn: ConnId) {
        for m in self.missing.values_mut() {
            m.announcers.retain(|c| *c != conn);
        }
        self.missing.retain(|_, m| !m.announcers.is_empty());
    }

    /// Requests due at `now`, as (neighbour, id). Each missing id is asked of its announcers in
    /// turn; once all were asked it is dropped and left to anti-entropy.
    pub fn poll_wants(&mut self, now: Time) -> Vec<(ConnId, ChatId)> {
        let mut wants = Vec::new();
        let mut done = Vec::new();
        for (id, m) in self.missing.iter_mut().filter(|(_, m)| m.due <= now) {
            if m.asked >= m.announcers.len() {
                done.push(*id);
                continue;
            }
            wants.push((m.announcers[m.asked], *id));
            m.asked += 1;
            m.due = now + self.want_timeout;
        }
        for id in done {
            self.missing.remove(&id);
        }
        wants
    }

    pub fn next_deadline(&self) -> Option<Time> {
        self.missing.values().map(|m| m.due).min()
    }

    pub fn missing_len(&self) -> usize {
        self.missing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gossip() -> Gossip {
        Gossip::new(3, 2, Duration::from_millis(100), Duration::from_secs(1))
    }

    #[test]
    fn targets_exclude_sender_and_respect_ttl() {
        let g = gossip();
        let mut rng = Rng::new(1);
        let peers: Vec<ConnId> = (0..10).map(ConnId).collect();
        let t = g.targets(&mut rng, &peers, Some(ConnId(3)), 5);
        assert_eq!((t.eager.len(), t.lazy.len()), (3, 2));
        assert!(!t.eager.contains(&ConnId(3)) && !t.lazy.contains(&ConnId(3)));
        let t0 = g.targets(&mut rng, &peers, None, 0);
        assert_eq!((t0.eager.len(), t0.lazy.len()), (0, 2));
        let few = g.targets(&mut rng, &peers[..2], None, 5);
        assert_eq!((few.eager.len(), few.lazy.len()), (2, 0));
    }

    #[test]
    fn lazy_repair_asks_each_announcer_in_turn_then_gives_up() {
        let mut g = gossip();
        let id = ChatId::new_v7(1, &[0; 10]);
        let t0 = Time::from_millis(1000);
        g.on_ihave(id, ConnId(1), t0);
        g.on_ihave(id, ConnId(2), t0);
        assert!(g.poll_wants(t0).is_empty());
        assert_eq!(g.next_deadline(), Some(t0 + Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(g.poll_wants(t1), vec![(ConnId(1), id)]);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(g.poll_wants(t2), vec![(ConnId(2), id)]);
        assert!(g.poll_wants(t2 + Duration::from_secs(1)).is_empty());
        assert_eq!(g.missing_len(), 0);
    }

    #[test]
    fn arrival_cancels_and_reports_repair() {
        let mut g = gossip();
        let id = ChatId::new_v7(1, &[0; 10]);
        g.on_ihave(id, ConnId(1), Time::ZERO);
        assert!(!g.on_received(&id));
        g.on_asked(id, ConnId(1), Time::ZERO);
        assert!(g.on_received(&id));
        assert_eq!(g.next_deadline(), None);
    }
}
