//! Direct messages in the simulator (`--dms N`): N messages between random pairs over the fault
//! phase's first 80%, half of them (when `--churn` crashes any) to a node that will crash, so many
//! reach recipients offline at send time and wait in mailboxes until the recipient is back.
//!
//! Every node runs the core's direct messages with the deterministic stand-in ratchet. A crashed
//! node keeps its direct-message state (ratchet and snapshot), as `--persist` keeps it on disk:
//! the node that restarts at heal is the same recipient. Each pair is given the other's bundle
//! when the message is sent (`Command::AddBundle`), as contacts would be: a bundle walk across
//! 10,000 nodes rarely finds one (docs/PROTOCOL.md 9.2), and this run measures delivery, not
//! discovery.

use std::collections::BTreeMap;

use p2p_chat_core::dm::{DmCrypto, DmId, DmState, SignedBundle, StandInCrypto};
use p2p_chat_core::random::Rng;
use p2p_chat_core::{Command, DmSnapshot, Event, Input, Node, Time};

use serde::Serialize;

use super::{Ev, World};

/// What the messages did, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct DmReport {
    pub dms: usize,
    pub dm_delivery_ratio: f64,
    pub dm_latency_ms_p50: f64,
    pub dm_latency_ms_p99: f64,
    pub dm_expired: u64,
    /// Messages shown twice to their recipient (must be 0).
    pub dm_duplicates: u64,
    /// Planned messages never sent, an end having no bundle (no neighbour) at the time.
    pub dm_skipped: usize,
    /// What mailboxes held, per live node, at the fullest check of the run.
    pub mailbox_bytes_per_node_mean: f64,
    pub mailbox_bytes_per_node_max: usize,
}

#[derive(Default)]
pub struct Dms {
    /// The planned messages: sender and recipient.
    plan: Vec<(u32, u32)>,
    /// Sent messages: when.
    sent: BTreeMap<DmId, Time>,
    /// Delivered: how often, and how long after sending the first time.
    delivered: BTreeMap<DmId, (u32, u64)>,
    expired: u64,
    /// Planned messages not sent: an end had no bundle yet (it never had a neighbour).
    skipped: usize,
    /// Crashed nodes' direct messages, until they restart.
    saved: BTreeMap<usize, (Box<dyn DmCrypto>, DmSnapshot)>,
    /// Bundles to hand a node that is down when it comes back.
    contacts: BTreeMap<usize, Vec<SignedBundle>>,
    mailbox_mean_max: f64,
    mailbox_max: usize,
}

impl Dms {
    /// Plans `n` messages from nodes that stay up: half (if any crash) to one that will crash.
    pub fn plan(w: &mut World, n: usize, first: Time, span: std::time::Duration) -> Dms {
        let nodes = w.slots.len();
        let stay: Vec<usize> = (0..nodes).filter(|&i| !w.slots[i].crashes).collect();
        let crash: Vec<usize> = (0..nodes).filter(|&i| w.slots[i].crashes).collect();
        let mut plan = Vec::with_capacity(n);
        for k in 0..n {
            let from = stay[w.rng.below(stay.len())];
            let to = loop {
                let to = if !crash.is_empty() && w.rng.unit() < 0.5 {
                    crash[w.rng.below(crash.len())]
                } else {
                    w.rng.below(nodes)
                };
                if to != from {
                    break to;
                }
            };
            plan.push((from as u32, to as u32));
            w.push(first + span.mul_f64(0.8 * k as f64 / n.max(1) as f64), Ev::SendDm(k as u32));
        }
        Dms { plan, ..Dms::default() }
    }

    /// A node starting: direct messages on, with what it kept if it crashed.
    pub fn start(&mut self, i: usize, node: Node, seed: u64, now: Time) -> Node {
        match self.saved.remove(&i) {
            Some((crypto, snapshot)) => {
                let mut node = node.with_dm(crypto);
                node.restore_dm(now, snapshot);
                for b in self.contacts.remove(&i).unwrap_or_default() {
                    node.handle_input(now, Input::Command(Command::AddBundle(Box::new(b))));
                }
                node
            }
            None => node.with_dm(Box::new(StandInCrypto::new(&mut Rng::new(seed ^ 0xd1_d1d1)))),
        }
    }

    pub fn crashed(&mut self, i: usize, node: Node) {
        if let Some(kept) = node.into_dm() {
            self.saved.insert(i, kept);
        }
    }

    pub fn record(&mut self, now: Time, e: &Event) {
        match e {
            Event::Dm(d) if d.outgoing => {
                self.sent.entry(d.id).or_insert(now);
            }
            Event::Dm(d) => {
                let at = self.sent.get(&d.id).copied().unwrap_or(now);
                let e = self.delivered.entry(d.id).or_insert((0, now.since(at).as_millis() as u64));
                e.0 += 1;
            }
            Event::DmState { state: DmState::Expired, .. } => self.expired += 1,
            _ => {}
        }
    }

    /// Samples what the live nodes' mailboxes hold.
    pub fn sample(&mut self, w: &World) {
        let (mut sum, mut n) = (0usize, 0usize);
        for (_, node) in w.live() {
            let b = node.mailbox_usage().bytes;
            sum += b;
            n += 1;
            self.mailbox_max = self.mailbox_max.max(b);
        }
        if n > 0 {
            self.mailbox_mean_max = self.mailbox_mean_max.max(sum as f64 / n as f64);
        }
    }

    /// Whether every message sent has reached its recipient.
    pub fn settled(&self) -> bool {
        self.sent.len() + self.skipped == self.plan.len() && self.sent.keys().all(|id| self.delivered.contains_key(id))
    }

    pub fn report(&self) -> DmReport {
        let mut lat: Vec<u64> = self.delivered.values().map(|(_, l)| *l).collect();
        lat.sort_unstable();
        let q = |f: f64| if lat.is_empty() { 0.0 } else { lat[((lat.len() - 1) as f64 * f).round() as usize] as f64 };
        DmReport {
            dms: self.plan.len(),
            dm_delivery_ratio: self.delivered.len() as f64 / self.plan.len().max(1) as f64,
            dm_latency_ms_p50: q(0.5),
            dm_latency_ms_p99: q(0.99),
            dm_expired: self.expired,
            dm_skipped: self.skipped,
            dm_duplicates: self.delivered.values().map(|(n, _)| u64::from(n.saturating_sub(1))).sum(),
            mailbox_bytes_per_node_mean: self.mailbox_mean_max,
            mailbox_bytes_per_node_max: self.mailbox_max,
        }
    }
}

impl World {
    /// Message `k` of the plan goes out; each end is given the other's bundle first.
    pub(super) fn send_dm(&mut self, k: usize) {
        let Some((from, to)) = self.dms.as_ref().map(|d| d.plan[k]) else { return };
        let (from, to) = (from as usize, to as usize);
        let (Some(theirs), Some(ours)) = (self.dm_bundle(to), self.dm_bundle(from)) else {
            if let Some(d) = self.dms.as_mut() {
                d.skipped += 1;
            }
            return;
        };
        let peer = theirs.peer_id();
        if self.slots[to].node.is_some() {
            self.input(to, Input::Command(Command::AddBundle(Box::new(ours))));
        } else if let Some(d) = self.dms.as_mut() {
            d.contacts.entry(to).or_default().push(ours);
        }
        self.input(from, Input::Command(Command::AddBundle(Box::new(theirs))));
        let text = format!("dm {k} from n{from}");
        self.input(from, Input::Command(Command::Dm { to: peer, text }));
    }

    /// Node `i`'s bundle: from the node, or from what it kept while down.
    fn dm_bundle(&self, i: usize) -> Option<SignedBundle> {
        match self.slots[i].node.as_ref() {
            Some(n) => n.own_bundle().cloned(),
            None => self.dms.as_ref()?.saved.get(&i).and_then(|(_, s)| s.own_bundle().cloned()),
        }
    }
}
