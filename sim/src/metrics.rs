//! What a run measured: the standard figures of the gossip literature, and the checks that make a
//! run pass (every chat everywhere, exactly once, nothing forged).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::hint::value;
use p2p_chat_core::{ChatId, Time};

use crate::id_hash::IdMap;

/// Delivery times are kept in units of 10 us after the chat was sent: a u32 spans 11.9 hours of
/// virtual time.
const UNIT_US: u64 = 10;

fn units(after: Duration) -> u32 {
    (after.as_micros() as u64 / UNIT_US).min(u32::MAX as u64) as u32
}

/// Milliseconds of a time in units; 0 for none.
pub fn ms(units: Option<u32>) -> f64 {
    units.map_or(0.0, |a| (a as u64 * UNIT_US) as f64 / 1000.0)
}

/// One chat's delivery times (in units), as the sorted multiset the latency quantiles and the plot
/// are computed from. A run of 100,000 nodes records ten million deliveries, so a record apiece
/// (five bytes, and as many again to sort them) would be most of the simulator's own memory.
/// Deliveries arrive in time order, nearly all within a few units of the one before, so each is
/// the Elias-gamma code of its gap to the previous time, one to five bits for most.
#[derive(Clone, Debug, Default)]
pub struct Times {
    /// The codes, least significant bit first: a gap `g` is `z` zeros, a one, then the `z` low
    /// bits of `g + 1`, which has `z + 1` bits.
    bits: Vec<u64>,
    len_bits: u64,
    /// The latest time coded (0 before any).
    last: u32,
    coded: usize,
    /// Times earlier than `last`, which a gap cannot code, unordered: virtual time steps back
    /// when an event was scheduled before the queue's current time (a node's timer may be).
    late: Vec<u32>,
}

impl Times {
    pub fn push(&mut self, t: u32) {
        let Some(gap) = t.checked_sub(self.last) else {
            self.late.push(t);
            return;
        };
        let v = gap as u64 + 1;
        let z = 63 - v.leading_zeros() as u64;
        // The marker one, then the low bits of `v`: at most 33 bits, which fit one u64.
        let code = ((v ^ (1 << z)) << 1) | 1;
        let at = self.len_bits + z;
        self.len_bits = at + z + 1;
        while (self.bits.len() as u64) * 64 < self.len_bits {
            // Grown by a quarter, not doubled: the codes are most of what a chat keeps, and all
            // of them are held at the run's peak, when doubling would leave a third of the room
            // unused.
            if self.bits.len() == self.bits.capacity() {
                self.bits.reserve_exact((self.bits.len() / 4).max(4));
            }
            self.bits.push(0);
        }
        let (word, off) = ((at / 64) as usize, at % 64);
        self.bits[word] |= code << off;
        if off + z + 1 > 64 {
            self.bits[word + 1] |= code >> (64 - off);
        }
        self.last = t;
        self.coded += 1;
    }

    pub fn len(&self) -> usize {
        self.coded + self.late.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The 64 bits from bit `at` on (zeros past the end).
    fn peek(&self, at: u64) -> u64 {
        let (word, off) = ((at / 64) as usize, at % 64);
        let lo = self.bits.get(word).map_or(0, |w| w >> off);
        let hi = if off == 0 { 0 } else { self.bits.get(word + 1).map_or(0, |w| w << (64 - off)) };
        lo | hi
    }

    /// The times in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut late = self.late.clone();
        late.sort_unstable();
        Merge { a: self.coded().peekable(), b: late.into_iter().peekable() }
    }

    /// The times in no particular order, to count them.
    pub fn unordered(&self) -> impl Iterator<Item = u32> + '_ {
        self.coded().chain(self.late.iter().copied())
    }

    /// The coded times, in order.
    fn coded(&self) -> impl Iterator<Item = u32> + '_ {
        let (mut at, mut prev) = (0u64, 0u32);
        std::iter::from_fn(move || {
            if at >= self.len_bits {
                return None;
            }
            let z = self.peek(at).trailing_zeros() as u64;
            let low = if z == 0 { 0 } else { self.peek(at + z + 1) & (u64::MAX >> (64 - z)) };
            at += 2 * z + 1;
            prev = (prev as u64 + ((1 << z) | low) - 1) as u32;
            Some(prev)
        })
    }
}

/// Two sorted sequences as one.
struct Merge<A: Iterator<Item = u32>, B: Iterator<Item = u32>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = u32>, B: Iterator<Item = u32>> Iterator for Merge<A, B> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            _ => self.b.next(),
        }
    }
}

pub struct Metrics {
    /// Chats written, with their send time.
    pub sent: BTreeMap<ChatId, Time>,
    /// A small number for each chat delivered anywhere, so that `have` can be bit sets.
    index: IdMap<u32>,
    /// The chats each node's current incarnation delivered: node `n`'s bit `index[id]` is bit
    /// `index[id] % 64` of `have[n * words + index[id] / 64]`. One table rather than a Vec a node,
    /// whose header and heap block cost more than the few words of bits.
    have: Vec<u64>,
    /// Words of `have` a node: enough for every chat so far (it grows as chats come).
    words: usize,
    nodes: usize,
    /// By bit, for chats sent in the run: when, and its deliveries. Recorded on every delivery,
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
    /// The room of each chat sent in the run, by bit (`None`: the default room, for everyone).
    room_of: Vec<Option<u16>>,
    /// Each room's members, ascending (see `crate::rooms`).
    pub room_members: Vec<Vec<u32>>,
    /// Each room's members removed from it (`--kicks`), ascending: no longer expected to
    /// deliver its chats, and a delivery to them is not a leak (one written by a member that had
    /// not heard of the removal opens with the old key; what a removed node could read of those
    /// written after is checked by `world::moderation`).
    pub room_removed: Vec<Vec<u32>>,
    /// Deliveries of a room's chat at a node not in the room: must stay 0.
    pub room_leak_deliveries: u64,
    /// Deliveries of rooms' chats since the fault phase began: the rooms' RMR denominator.
    pub room_window_deliveries: u64,
}

/// Sums of node counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub chat_frames_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub room_chat_frames_in: u64,
    pub foreign_room_frames: u64,
    pub foreign_room_bytes: u64,
}

impl Totals {
    pub fn add(&mut self, s: &p2p_chat_core::Stats) {
        self.chat_frames_in += s.chat_frames_in;
        self.frames_out += s.frames_out;
        self.bytes_out += s.bytes_out;
        self.room_chat_frames_in += s.room_chat_frames_in;
        self.foreign_room_frames += s.foreign_room_frames;
        self.foreign_room_bytes += s.foreign_room_bytes;
    }
}

/// What is kept of a chat's deliveries: what the report shows of them, not each one.
struct Send {
    at: Time,
    times: Times,
    /// Time and hops of the latest delivery (the last recorded among equally late ones): LDH.
    farthest: Option<(u32, u8)>,
    /// Every delivery's time and hops, in the order recorded, mixed for the run's fingerprint
    /// (which only tells two runs apart: no need for SipHash on every delivery).
    hash: u64,
}

impl Send {
    fn new(at: Time) -> Send {
        Send { at, times: Times::default(), farthest: None, hash: 0 }
    }
}

/// What the report shows of one chat's deliveries.
pub struct Delivered<'a> {
    pub times: &'a Times,
    /// Hops of the latest delivery.
    pub farthest_hops: u8,
    /// Hash of every delivery's time and hops, in the order they happened.
    pub hash: u64,
}

impl Metrics {
    pub fn new(n: usize) -> Metrics {
        Metrics {
            sent: BTreeMap::new(),
            index: IdMap::default(),
            have: Vec::new(),
            words: 0,
            nodes: n,
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
            room_of: Vec::new(),
            room_members: Vec::new(),
            room_removed: Vec::new(),
            room_leak_deliveries: 0,
            room_window_deliveries: 0,
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

    /// A chat was written by `node` (which has it, then) in `room` (`None`: the default room).
    pub fn sent(&mut self, node: usize, id: ChatId, at: Time, room: Option<u16>) {
        self.sent.insert(id, at);
        let (bit, _) = self.mark(node, id);
        if self.sends.len() <= bit {
            self.sends.resize_with(bit + 1, || None);
        }
        if room.is_some() || !self.room_of.is_empty() {
            if self.room_of.len() <= bit {
                self.room_of.resize(bit + 1, None);
            }
            self.room_of[bit] = room;
        }
        match &mut self.sends[bit] {
            Some(send) => send.at = at,
            slot => *slot = Some(Send::new(at)),
        }
    }

    /// Cache hint for the bits a delivery to `node` reads and sets.
    pub fn prefetch(&self, node: usize) {
        if let Some(row) = self.have.get(node * self.words..(node + 1) * self.words) {
            value(row);
        }
    }

    /// Records that `node` has `id`; says which bit is `id`'s and whether `node` had it already.
    fn mark(&mut self, node: usize, id: ChatId) -> (usize, bool) {
        let next = self.index.len() as u32;
        let bit = *self.index.entry(id).or_insert(next) as usize;
        if bit / 64 >= self.words {
            self.widen(bit / 64 + 1);
        }
        let word = &mut self.have[node * self.words + bit / 64];
        let had = *word & (1 << (bit % 64)) != 0;
        *word |= 1 << (bit % 64);
        (bit, had)
    }

    /// Gives every node `words` words of bits (once every 64 chats).
    fn widen(&mut self, words: usize) {
        let mut have = vec![0; self.nodes * words];
        if self.words > 0 {
            for (new, old) in have.chunks_exact_mut(words).zip(self.have.chunks_exact(self.words)) {
                new[..self.words].copy_from_slice(old);
            }
        }
        self.have = have;
        self.words = words;
    }

    fn has_bit(&self, node: usize, bit: usize) -> bool {
        bit / 64 < self.words && self.have[node * self.words + bit / 64] & (1 << (bit % 64)) != 0
    }

    pub fn delivered(&mut self, node: usize, id: ChatId, at: Time, hops: u8) {
        if self.forged.contains(&id) {
            self.forged_delivered += 1;
        }
        let (bit, had) = self.mark(node, id);
        if had {
            self.duplicates += 1;
        }
        if let Some(&Some(room)) = self.room_of.get(bit) {
            if !self.is_member(room, node) && !self.is_removed(room, node) {
                self.room_leak_deliveries += 1;
            }
            if self.in_window {
                self.room_window_deliveries += 1;
            }
        }
        if self.in_window {
            self.window_deliveries += 1;
        }
        if let Some(Some(send)) = self.sends.get_mut(bit) {
            let after = units(at.since(send.at));
            send.times.push(after);
            if send.farthest.is_none_or(|(t, _)| after >= t) {
                send.farthest = Some((after, hops));
            }
            let d = ((after as u64) << 8) | hops as u64;
            send.hash = (send.hash.rotate_left(23) ^ d).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    /// The deliveries of the chat `id` sent in the run, if it was delivered anywhere.
    fn delivered_of(&self, id: &ChatId) -> Option<Delivered<'_>> {
        let send = self.sends.get(*self.index.get(id)? as usize)?.as_ref()?;
        let (_, farthest_hops) = send.farthest?;
        Some(Delivered { times: &send.times, farthest_hops, hash: send.hash })
    }

    /// The chats sent in the run that were delivered anywhere, in id order, with their deliveries.
    pub fn deliveries(&self) -> impl Iterator<Item = (&ChatId, Delivered<'_>)> {
        self.sent.keys().filter_map(|id| Some((id, self.delivered_of(id)?)))
    }

    pub fn crashed(&mut self, _node: usize) {
        self.crashes += 1;
    }

    /// A fresh incarnation starts with nothing delivered.
    pub fn restarted(&mut self, node: usize) {
        if self.words > 0 {
            self.have[node * self.words..][..self.words].fill(0);
        }
    }

    fn is_member(&self, room: u16, node: usize) -> bool {
        self.room_members.get(room as usize).is_some_and(|m| m.binary_search(&(node as u32)).is_ok())
    }

    fn is_removed(&self, room: u16, node: usize) -> bool {
        self.room_removed.get(room as usize).is_some_and(|m| m.binary_search(&(node as u32)).is_ok())
    }

    /// `node` was removed from `room`.
    pub fn room_removed(&mut self, room: u16, node: usize) {
        if self.room_removed.len() <= room as usize {
            self.room_removed.resize(room as usize + 1, Vec::new());
        }
        let r = &mut self.room_removed[room as usize];
        if let Err(at) = r.binary_search(&(node as u32)) {
            r.insert(at, node as u32);
        }
    }

    fn room_of_bit(&self, bit: Option<usize>) -> Option<u16> {
        bit.and_then(|b| self.room_of.get(b).copied().flatten())
    }

    /// (chat, node) pairs still missing among `live` nodes: a room's chat is missing only at its
    /// members.
    pub fn missing(&self, live: &[usize]) -> usize {
        // Each id looked up once, not once per node.
        let bits: Vec<Option<usize>> = self.sent.keys().map(|id| self.index.get(id).map(|&b| b as usize)).collect();
        if self.room_of.is_empty() {
            return live.iter().map(|&n| bits.iter().filter(|b| !b.is_some_and(|b| self.has_bit(n, b))).count()).sum();
        }
        self.per_room(live, &bits).iter().map(|(_, missing)| missing).sum()
    }

    /// (chat, node) pairs that should be delivered among `live` nodes.
    pub fn expected(&self, live: &[usize]) -> usize {
        let bits: Vec<Option<usize>> = self.sent.keys().map(|id| self.index.get(id).map(|&b| b as usize)).collect();
        if self.room_of.is_empty() {
            return bits.len() * live.len();
        }
        self.per_room(live, &bits).iter().map(|(expected, _)| expected).sum()
    }

    /// Per audience (the default room first, then each room), pairs expected and missing.
    fn per_room(&self, live: &[usize], bits: &[Option<usize>]) -> Vec<(usize, usize)> {
        let mut out = vec![(0, 0); 1 + self.room_members.len()];
        for b in bits {
            let (slot, audience): (usize, Box<dyn Iterator<Item = usize>>) = match self.room_of_bit(*b) {
                None => (0, Box::new(live.iter().copied())),
                Some(r) => (
                    1 + r as usize,
                    Box::new(
                        self.room_members[r as usize]
                            .iter()
                            .map(|&m| m as usize)
                            .filter(move |m| live.binary_search(m).is_ok() && !self.is_removed(r, *m)),
                    ),
                ),
            };
            for n in audience {
                out[slot].0 += 1;
                if !b.is_some_and(|b| self.has_bit(n, b)) {
                    out[slot].1 += 1;
                }
            }
        }
        out
    }

    /// The lowest delivery ratio of any room that had chats (the default room not counted), or
    /// `None` without rooms.
    pub fn room_delivery_min(&self, live: &[usize]) -> Option<f64> {
        if self.room_members.is_empty() {
            return None;
        }
        let bits: Vec<Option<usize>> = self.sent.keys().map(|id| self.index.get(id).map(|&b| b as usize)).collect();
        let per = self.per_room(live, &bits);
        let ratios = per[1..].iter().filter(|(e, _)| *e > 0).map(|(e, m)| (e - m) as f64 / *e as f64);
        Some(ratios.fold(1.0, f64::min))
    }
}

/// Where the `q` quantile (0..=1) of `len` sorted values is; `None` when there are none.
pub fn quantile_rank(len: usize, q: f64) -> Option<usize> {
    (len > 0).then(|| ((len - 1) as f64 * q).round() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_come_back_sorted_whatever_the_gaps() {
        let pushed = [0, 0, 3, 3, 3, 4, 70, 69, 1_000_000, 5, u32::MAX - 1, u32::MAX, u32::MAX, 2];
        let mut t = Times::default();
        for &v in &pushed {
            t.push(v);
        }
        let mut want = pushed.to_vec();
        want.sort_unstable();
        assert_eq!(t.iter().collect::<Vec<_>>(), want);
        assert_eq!(t.len(), pushed.len());

        let mut t = Times::default();
        t.push(u32::MAX);
        assert_eq!(t.iter().collect::<Vec<_>>(), [u32::MAX]);
        assert!(Times::default().is_empty() && Times::default().iter().next().is_none());
    }
}
