//! What a run measured: the standard figures of the gossip literature, and the checks that make a
//! run pass (every chat everywhere, exactly once, nothing forged).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use p2p_chat_core::{ChatId, Time};

use crate::id_hash::IdMap;

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
    index: IdMap<u32>,
    /// Per node, the chats its current incarnation delivered (bit `index[id]`): a few bytes a
    /// node instead of a set of 16-byte ids.
    have: Vec<Vec<u64>>,
    /// By bit, for chats sent in the run: when, and every delivery. Recorded on every delivery,
    /// so found by the bit `mark` has just looked up, not by a search of `sent`.
    sends: Vec<Option<Send>>,
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

struct Send {
    at: Time,
    deliveries: Vec<Delivery>,
}

impl Metrics {
    pub fn new(n: usize) -> Metrics {
        Metrics {
            sent: BTreeMap::new(),
            index: IdMap::default(),
            have: vec![Vec::new(); n],
            sends: Vec::new(),
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
        let (bit, _) = self.mark(node, id);
        if self.sends.len() <= bit {
            self.sends.resize_with(bit + 1, || None);
        }
        match &mut self.sends[bit] {
            Some(send) => send.at = at,
            slot => *slot = Some(Send { at, deliveries: Vec::new() }),
        }
    }

    /// Records that `node` has `id`; says which bit is `id`'s and whether `node` had it already.
    fn mark(&mut self, node: usize, id: ChatId) -> (usize, bool) {
        let next = self.index.len() as u32;
        let bit = *self.index.entry(id).or_insert(next) as usize;
        let words = &mut self.have[node];
        if words.len() <= bit / 64 {
            words.resize(bit / 64 + 1, 0);
        }
        let had = words[bit / 64] & (1 << (bit % 64)) != 0;
        words[bit / 64] |= 1 << (bit % 64);
        (bit, had)
    }

    fn has_bit(&self, node: usize, bit: usize) -> bool {
        self.have[node].get(bit / 64).is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    pub fn delivered(&mut self, node: usize, id: ChatId, at: Time, hops: u8) {
        if self.forged.contains(&id) {
            self.forged_delivered += 1;
        }
        let (bit, had) = self.mark(node, id);
        if had {
            self.duplicates += 1;
        }
        if self.in_window {
            self.window_deliveries += 1;
        }
        if let Some(Some(send)) = self.sends.get_mut(bit) {
            send.deliveries.push(Delivery::new(at.since(send.at), hops));
        }
    }

    /// Every delivery of the chat `id` sent in the run, if it was delivered anywhere.
    pub fn deliveries_of(&self, id: &ChatId) -> Option<&[Delivery]> {
        let send = self.sends.get(*self.index.get(id)? as usize)?.as_ref()?;
        (!send.deliveries.is_empty()).then_some(send.deliveries.as_slice())
    }

    /// The chats sent in the run that were delivered anywhere, in id order, with their deliveries.
    pub fn deliveries(&self) -> impl Iterator<Item = (&ChatId, &[Delivery])> {
        self.sent.keys().filter_map(|id| Some((id, self.deliveries_of(id)?)))
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
        // Each id looked up once, not once per node.
        let bits: Vec<Option<usize>> = self.sent.keys().map(|id| self.index.get(id).map(|&b| b as usize)).collect();
        live.iter().map(|&n| bits.iter().filter(|b| !b.is_some_and(|b| self.has_bit(n, b))).count()).sum()
    }
}

/// Where the `q` quantile (0..=1) of `len` sorted values is; `None` when there are none.
pub fn quantile_rank(len: usize, q: f64) -> Option<usize> {
    (len > 0).then(|| ((len - 1) as f64 * q).round() as usize)
}
