//! What a run measured: the standard figures of the gossip literature, and the checks that make a
//! run pass (every chat everywhere, exactly once, nothing forged).

use std::collections::{BTreeMap, BTreeSet};

use p2p_chat_core::{ChatId, Time};

pub struct Metrics {
    /// Chats written, with their send time.
    pub sent: BTreeMap<ChatId, Time>,
    /// Per node, the chats its current incarnation delivered.
    pub have: Vec<BTreeSet<ChatId>>,
    /// Per chat, (delivery time, hops) of every delivery.
    pub deliveries: BTreeMap<ChatId, Vec<(Time, u8)>>,
    /// Deliveries of a chat already delivered by the same incarnation: must stay 0.
    pub duplicates: u64,
    pub forged: BTreeSet<ChatId>,
    pub forged_delivered: u64,
    pub crashes: u64,
    pub full_peer_set_at: Option<Time>,
    /// Deliveries of any chat (joins included) since the fault phase began: RMR's denominator.
    pub window_deliveries: u64,
    /// Counters of crashed incarnations, which vanish with them.
    pub retired: Totals,
    /// Counters at the start of the fault phase.
    pub at_fault_start: Totals,
    pub in_window: bool,
}

/// Sums of node counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub chat_frames_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
}

impl Totals {
    pub fn add(&mut self, s: &p2p_chat_core::Stats) {
        self.chat_frames_in += s.chat_frames_in;
        self.frames_out += s.frames_out;
        self.bytes_out += s.bytes_out;
    }
}

impl Metrics {
    pub fn new(n: usize) -> Metrics {
        Metrics {
            sent: BTreeMap::new(),
            have: vec![BTreeSet::new(); n],
            deliveries: BTreeMap::new(),
            duplicates: 0,
            forged: BTreeSet::new(),
            forged_delivered: 0,
            crashes: 0,
            full_peer_set_at: None,
            window_deliveries: 0,
            retired: Totals::default(),
            at_fault_start: Totals::default(),
            in_window: false,
        }
    }

    pub fn baseline(&mut self, live: &[p2p_chat_core::Stats]) {
        let mut t = self.retired;
        for s in live {
            t.add(s);
        }
        self.at_fault_start = t;
        self.in_window = true;
    }

    pub fn retire(&mut self, s: &p2p_chat_core::Stats) {
        self.retired.add(s);
    }

    pub fn sent_len(&self) -> usize {
        self.sent.len()
    }

    pub fn sent(&mut self, id: ChatId, at: Time) {
        self.sent.insert(id, at);
    }

    pub fn delivered(&mut self, node: usize, id: ChatId, at: Time, hops: u8) {
        if self.forged.contains(&id) {
            self.forged_delivered += 1;
        }
        if !self.have[node].insert(id) {
            self.duplicates += 1;
        }
        if self.in_window {
            self.window_deliveries += 1;
        }
        if self.sent.contains_key(&id) {
            self.deliveries.entry(id).or_default().push((at, hops));
        }
    }

    pub fn crashed(&mut self, _node: usize) {
        self.crashes += 1;
    }

    /// A fresh incarnation starts with nothing delivered.
    pub fn restarted(&mut self, node: usize) {
        self.have[node].clear();
    }

    /// (chat, node) pairs still missing among `live` nodes.
    pub fn missing(&self, live: &[usize]) -> usize {
        live.iter().map(|&n| self.sent.keys().filter(|id| !self.have[n].contains(id)).count()).sum()
    }
}

/// The `q` quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
