//! What a run measured: the standard figures of the gossip literature, and the checks that make a
//! run pass (every chat everywhere, exactly once, nothing forged).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use p2p_chat_core::{ChatId, Time};

/// A delivery: how long after the chat was sent, in units of 10 us (a u32 spans 11.9 hours of
/// virtual time), and over how many hops. Five bytes, packed, because a run of 100,000 nodes records
/// ten million of them (fields are only ever copied out, never borrowed).
#[derive(Clone, Copy, Debug)]
#[repr(C, packed)]
pub struct Delivery {
    pub after: u32,
    pub hops: u8,
}

impl Delivery {
    const UNIT_US: u64 = 10;

    fn new(after: Duration, hops: u8) -> Delivery {
        let units = (after.as_micros() as u64 / Self::UNIT_US).min(u32::MAX as u64) as u32;
        Delivery { after: units, hops }
    }

    /// Milliseconds of `after` units; 0 for none.
    pub fn ms(after: Option<u32>) -> f64 {
        after.map_or(0.0, |a| (a as u64 * Self::UNIT_US) as f64 / 1000.0)
    }
}

pub struct Metrics {
    /// Chats written, with their send time.
    pub sent: BTreeMap<ChatId, Time>,
    /// A small number for each chat delivered anywhere, so that `have` can be bit sets.
    index: HashMap<ChatId, u32>,
    /// Per node, the chats its current incarnation delivered (bit `index[id]`): a few bytes a
    /// node instead of a set of 16-byte ids.
    have: Vec<Vec<u64>>,
    /// Per chat sent in the run, every delivery.
    pub deliveries: BTreeMap<ChatId, Vec<Delivery>>,
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
            index: HashMap::new(),
            have: vec![Vec::new(); n],
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

    /// A chat was written by `node` (which has it, then).
    pub fn sent(&mut self, node: usize, id: ChatId, at: Time) {
        self.sent.insert(id, at);
        self.mark(node, id);
    }

    /// Records that `node` has `id`; says whether it had it already.
    fn mark(&mut self, node: usize, id: ChatId) -> bool {
        let next = self.index.len() as u32;
        let bit = *self.index.entry(id).or_insert(next) as usize;
        let words = &mut self.have[node];
        if words.len() <= bit / 64 {
            words.resize(bit / 64 + 1, 0);
        }
        let had = words[bit / 64] & (1 << (bit % 64)) != 0;
        words[bit / 64] |= 1 << (bit % 64);
        had
    }

    fn has(&self, node: usize, id: &ChatId) -> bool {
        self.index.get(id).is_some_and(|&bit| {
            let bit = bit as usize;
            self.have[node].get(bit / 64).is_some_and(|w| w & (1 << (bit % 64)) != 0)
        })
    }

    pub fn delivered(&mut self, node: usize, id: ChatId, at: Time, hops: u8) {
        if self.forged.contains(&id) {
            self.forged_delivered += 1;
        }
        if self.mark(node, id) {
            self.duplicates += 1;
        }
        if self.in_window {
            self.window_deliveries += 1;
        }
        if let Some(sent_at) = self.sent.get(&id) {
            self.deliveries.entry(id).or_default().push(Delivery::new(at.since(*sent_at), hops));
        }
    }

    pub fn crashed(&mut self, _node: usize) {
        self.crashes += 1;
    }

    /// A fresh incarnation starts with nothing delivered.
    pub fn restarted(&mut self, node: usize) {
        self.have[node] = Vec::new();
    }

    /// (chat, node) pairs still missing among `live` nodes.
    pub fn missing(&self, live: &[usize]) -> usize {
        live.iter().map(|&n| self.sent.keys().filter(|id| !self.has(n, id)).count()).sum()
    }
}

/// Where the `q` quantile (0..=1) of `len` sorted values is; `None` when there are none.
pub fn quantile_rank(len: usize, q: f64) -> Option<usize> {
    (len > 0).then(|| ((len - 1) as f64 * q).round() as usize)
}
