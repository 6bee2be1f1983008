//! "Have I seen this chat?" — and the recent chats themselves.
//!
//! An id is looked up in the recent chats themselves, which repair (`IWant`, sync) must serve
//! anyway: one structure avoids keeping every id twice. They are a deque sorted by id, 9 bytes a
//! chat with the id read from the chat it points to. Ids are UUIDv7, ordered by time, so a new chat
//! lands at or near the back and the oldest leave from the front; a lookup is a binary search. (A
//! `BTreeMap` cost over 50 bytes a chat, and a Bloom filter in front of it 4 more plus its
//! rebuilds, in a simulator that keeps the same hundred chats in thousands of nodes.)
//!
//! Memory is bounded by `max_chats` and by `retention`. A chat older than the retention window is
//! refused by its timestamp: nothing needs remembering for it. A chat evicted because more than
//! `max_chats` are held is still inside the window, so its id goes into [`Forgotten`]: growable
//! Bloom filters (Almeida et al., "Scalable Bloom Filters", 2007) of the ids evicted, in two
//! generations by timestamp that are dropped as the window passes them. A chat that arrives late,
//! below the newest id evicted (the *floor*), is accepted if the filter has never seen its id, and
//! refused if the filter may have: exactly-once holds, and a false positive refuses a chat never
//! seen at a rate of at most [`FORGOTTEN_FP_RATE`] (1 in 1,000) of the late chats looked up.
//! Nothing is allocated for it until a chat is first evicted by count.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use growable_bloom_filter::GrowableBloom;

use crate::chat::{Chat, ChatId};
use crate::sync::IdSet;
use crate::time::Time;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    New,
    Duplicate,
    /// Older than the retention window: refused, it might be a replay.
    TooOld,
    /// Evicted by count (at or below the floor, and the filter of evicted ids holds it) or, at
    /// the filter's false-positive rate, a chat never seen: refused rather than risk a second
    /// delivery.
    Evicted,
    /// Timestamp further in the future than the allowed clock skew.
    TooNew,
}

/// Where a chat not yet held goes in a `Dedup`, as of the `check_slot` that found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(usize);

/// A recent chat and how many hops it took to reach this node (served on with repairs, so the
/// simulator can measure the last delivery hop).
#[derive(Clone, Debug)]
pub struct Stored {
    pub chat: Arc<Chat>,
    pub hops: u8,
}

pub struct Dedup {
    /// Sorted by `chat.id`, no id twice.
    chats: VecDeque<Arc<Chat>>,
    /// The hops of each of `chats`, at the same position: apart, a chat costs 9 bytes instead of
    /// the 16 of a padded `Stored`, in every node of a simulator.
    hops: VecDeque<u8>,
    /// The ids evicted by count within the window, and the floor; made on the first eviction, so a
    /// node that never holds `max_chats` chats pays one pointer for it.
    forgotten: Option<Box<Forgotten>>,
    /// `retention` and `max_skew` in microseconds, as `Time + Duration` would saturate them:
    /// every id checked (several per chat frame) compares against both, and converting a
    /// `Duration` there each time was most of the cost of the check.
    retention_us: u64,
    max_chats: usize,
    max_skew_us: u64,
}

impl Dedup {
    pub fn new(retention: Duration, max_chats: usize, max_skew: Duration) -> Dedup {
        Dedup {
            chats: VecDeque::new(),
            hops: VecDeque::new(),
            forgotten: None,
            retention_us: micros(retention),
            max_chats: max_chats.max(1),
            max_skew_us: micros(max_skew),
        }
    }

    /// Classifies an id without recording it. Callers verify the signature of a `New` chat and
    /// only then `insert` it, so a forged chat cannot claim the id of a real one.
    pub fn check(&self, id: &ChatId, now: Time) -> Verdict {
        match self.check_slot(id, now) {
            Ok(_) => Verdict::New,
            Err(v) => v,
        }
    }

    /// `check`, with where a `New` id goes (for `insert_at`); any other verdict is the error.
    /// A chat accepted is searched for once instead of twice.
    pub fn check_slot(&self, id: &ChatId, now: Time) -> Result<Slot, Verdict> {
        let ts = id.timestamp_ms();
        if ts > Time::from_micros(now.as_micros().saturating_add(self.max_skew_us)).as_millis() {
            return Err(Verdict::TooNew);
        }
        if ts < self.oldest_ms(now) {
            return Err(Verdict::TooOld);
        }
        match self.find(id) {
            Ok(_) => Err(Verdict::Duplicate),
            // Above the floor nothing was evicted by count: a live chat costs no filter lookup.
            Err(_) if self.forgotten.as_ref().is_some_and(|f| f.may_hold(id)) => Err(Verdict::Evicted),
            Err(at) => Ok(Slot(at)),
        }
    }

    /// The oldest timestamp (ms) still within the retention window at `now`.
    fn oldest_ms(&self, now: Time) -> u64 {
        Time::from_micros(now.as_micros().saturating_sub(self.retention_us)).as_millis()
    }

    /// Records a chat (already checked `New` and verified). Evicts the oldest beyond `max_chats`.
    pub fn insert(&mut self, chat: Arc<Chat>, hops: u8) {
        match self.find(&chat.id) {
            Ok(i) => {
                self.chats[i] = chat;
                self.hops[i] = hops;
                self.evict_over_max();
            }
            Err(i) => self.insert_at(Slot(i), chat, hops),
        }
    }

    /// Records a chat at the `slot` that `check_slot` gave for its id, with the set unchanged
    /// since. Evicts the oldest beyond `max_chats`.
    pub fn insert_at(&mut self, slot: Slot, chat: Arc<Chat>, hops: u8) {
        debug_assert_eq!(self.find(&chat.id), Err(slot.0), "a stale slot");
        self.chats.insert(slot.0, chat);
        self.hops.insert(slot.0, hops);
        self.evict_over_max();
    }

    fn evict_over_max(&mut self) {
        while self.chats.len() > self.max_chats {
            self.hops.pop_front();
            if let Some(chat) = self.chats.pop_front() {
                let generation_ms = self.generation_ms();
                self.forgotten
                    .get_or_insert_with(|| Box::new(Forgotten::new(generation_ms, GENERATION_MAX_IDS)))
                    .insert(chat.id);
            }
        }
    }

    /// How long a span of timestamps one generation of evicted ids covers: the whole window a chat
    /// may be accepted in (`retention` back, `max_skew` ahead), so that it meets at most two.
    fn generation_ms(&self) -> u64 {
        self.retention_us.saturating_add(self.max_skew_us).div_ceil(1000).max(1)
    }

    /// Where `id` is, or where it would go: what a binary search answers. Nearly every lookup is
    /// of a chat from the last few seconds (a push, an `IHave`, the checks around them), which sits
    /// at or near the back, so the search gallops from the back: a new id costs one comparison and
    /// a recent one a few, instead of a binary search over every chat held, each comparison a read
    /// through a chat's pointer.
    fn find(&self, id: &ChatId) -> Result<usize, usize> {
        let at = |i: usize| self.chats[i].id.cmp(id);
        // Every chat from `hi` on has a larger id.
        let mut hi = self.chats.len();
        let mut step = 1;
        let lo = loop {
            if hi == 0 {
                return Err(0);
            }
            let probe = hi.saturating_sub(step);
            match at(probe) {
                Ordering::Equal => return Ok(probe),
                Ordering::Less => break probe + 1,
                Ordering::Greater => {
                    hi = probe;
                    step *= 2;
                }
            }
        };
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match at(mid) {
                Ordering::Equal => return Ok(mid),
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
            }
        }
        Err(lo)
    }

    /// The position of the first chat whose id is not below `id`.
    fn first_from(&self, id: &ChatId) -> usize {
        self.chats.partition_point(|c| c.id < *id)
    }

    /// Forgets a held chat (a redacted one): it is no longer served. Its id is not remembered
    /// here; the room's log keeps it as a tombstone, so that the chat is not taken again.
    pub fn remove(&mut self, id: &ChatId) -> bool {
        let Ok(i) = self.find(id) else { return false };
        self.chats.remove(i);
        self.hops.remove(i);
        true
    }

    pub fn get(&self, id: &ChatId) -> Option<Stored> {
        self.find(id).ok().map(|i| Stored { chat: self.chats[i].clone(), hops: self.hops[i] })
    }

    pub fn contains(&self, id: &ChatId) -> bool {
        self.find(id).is_ok()
    }

    /// The recent chats in id (time) order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Chat>> {
        self.chats.iter()
    }

    pub fn len(&self) -> usize {
        self.chats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chats.is_empty()
    }

    /// The oldest id this node would still accept: where sync ranges start. The floor does not
    /// raise it: a chat below the floor that this node never saw is accepted, and a neighbour's
    /// sync must be able to offer it. (What it offers that this node has evicted is refused by the
    /// filter, and a neighbour sends each chat at most once a connection: `serve::Served`.)
    pub fn lower_bound(&self, now: Time) -> ChatId {
        ChatId::lower_bound(self.oldest_ms(now))
    }

    /// The newest id evicted by count and still remembered: ids not held above it were never
    /// seen. `None` when nothing evicted is still inside the window.
    pub fn floor(&self) -> Option<ChatId> {
        self.forgotten.as_ref().map(|f| f.floor)
    }

    /// Forgets chats older than the retention window, and evicted ids once the window has passed
    /// them (the timestamp check refuses those), and gives back room that was left unused after a
    /// burst.
    pub fn expire(&mut self, now: Time) {
        let oldest_ms = self.oldest_ms(now);
        let gone = self.first_from(&ChatId::lower_bound(oldest_ms));
        if gone > 0 {
            self.chats.drain(..gone);
            self.hops.drain(..gone);
        }
        if self.forgotten.as_mut().is_some_and(|f| f.expire(oldest_ms)) {
            self.forgotten = None;
        }
        if self.chats.capacity() > 4 * self.chats.len().max(16) {
            self.chats.shrink_to(2 * self.chats.len());
            self.hops.shrink_to(2 * self.hops.len());
        }
    }
}

/// What sync reads: the ids held, in order.
impl IdSet for Dedup {
    fn ids_in(&self, lower: ChatId, upper: ChatId) -> impl Iterator<Item = ChatId> + '_ {
        let (from, to) = (self.first_from(&lower), self.first_from(&upper));
        self.chats.range(from..to.max(from)).map(|c| c.id)
    }

    fn has(&self, id: &ChatId) -> bool {
        self.contains(id)
    }

    fn count_in(&self, lower: ChatId, upper: ChatId) -> usize {
        self.first_from(&upper).saturating_sub(self.first_from(&lower))
    }
}

#[cfg(feature = "prefetch")]
impl Dedup {
    /// The tables a chat or an announcement is looked up in (see [`crate::memory`]): only their
    /// newest `HINTED` entries, where `find` starts and nearly always ends (a new chat is among the
    /// newest), so the hint stays a few lines however many chats are kept.
    pub(crate) fn memory(&self, f: crate::memory::Regions<'_>) {
        const HINTED: usize = 16;
        fn newest<T>(d: &VecDeque<T>, f: crate::memory::Regions<'_>) {
            let (a, b) = d.as_slices();
            let in_b = b.len().min(HINTED);
            crate::memory::of(&b[b.len() - in_b..], f);
            let in_a = a.len().min(HINTED - in_b);
            crate::memory::of(&a[a.len() - in_a..], f);
        }
        newest(&self.chats, f);
        newest(&self.hops, f);
    }
}

/// `d` in microseconds, saturating as `Time`'s arithmetic does.
fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// The most of the late chats looked up in [`Forgotten`] (those below the floor, not held) that a
/// false positive refuses although this node never saw them: the bound of the filter's sum of
/// false-positive rates, however far it grows.
pub const FORGOTTEN_FP_RATE: f64 = 0.001;
/// The filter's tightening ratio: each sub-filter it adds as it grows is built for this share of
/// the previous one's false-positive rate, so the rates sum to at most `first / (1 - ratio)`.
const FILTER_TIGHTENING: f64 = 0.8515625;
/// Ids the first sub-filter of a generation holds (2.4 KB); each one added holds twice as many.
const FILTER_START_IDS: usize = 1024;
/// The most ids one generation records: ten sub-filters, 2.8 MB, so the two together stay under
/// 6 MB (about 2.7 bytes an id). Past it, ids evicted in that generation are not recorded, and
/// every id up to the newest of them is refused ([`Forgotten::unrecorded`]), as a plain floor would.
const GENERATION_MAX_IDS: usize = 1_000_000;

/// The ids evicted by count that are still inside the window, as Bloom filters by generation: a
/// generation holds the ids whose timestamps fall in one span of `span_ms` (the whole acceptance
/// window, so at most two spans can hold an id still acceptable).
pub struct Forgotten {
    span_ms: u64,
    /// Ids one generation records at most: `GENERATION_MAX_IDS`.
    max_ids: usize,
    /// The newest id evicted by count: ids above it that are not held were never seen.
    floor: ChatId,
    /// At most two, by span, older first.
    generations: Vec<Generation>,
    /// The newest id evicted while its generation was full: ids up to it are refused unheard.
    unrecorded: Option<ChatId>,
}

struct Generation {
    /// Which span: the ids' timestamps divided by `span_ms`.
    span: u64,
    ids: usize,
    filter: GrowableBloom,
}

impl Forgotten {
    fn new(span_ms: u64, max_ids: usize) -> Forgotten {
        Forgotten { span_ms, max_ids, floor: ChatId::MIN, generations: Vec::with_capacity(2), unrecorded: None }
    }

    fn span_of(&self, id: &ChatId) -> u64 {
        id.timestamp_ms() / self.span_ms
    }

    /// Records an id evicted by count.
    ///
    /// Only an accepted chat is evicted, and its timestamp was at most `max_skew` ahead of the
    /// clock then; so once an id of span `n` is evicted, the window starts at or after span
    /// `n - 1`, and any id of an older span is refused by its timestamp: its generation can go,
    /// and such an id needs no recording. Two generations are all there ever are.
    fn insert(&mut self, id: ChatId) {
        self.floor = self.floor.max(id);
        let span = self.span_of(&id);
        let newest = self.generations.last().map_or(span, |g| g.span).max(span);
        self.generations.retain(|g| g.span + 1 >= newest);
        if span + 1 < newest {
            return;
        }
        let at = match self.generations.iter().position(|g| g.span >= span) {
            Some(at) if self.generations[at].span == span => at,
            found => {
                let at = found.unwrap_or(self.generations.len());
                let filter = growable_bloom_filter::GrowableBloomBuilder::new()
                    .estimated_insertions(FILTER_START_IDS)
                    .desired_error_ratio(FORGOTTEN_FP_RATE * (1.0 - FILTER_TIGHTENING))
                    .tightening_ratio(FILTER_TIGHTENING)
                    .build();
                self.generations.insert(at, Generation { span, ids: 0, filter });
                at
            }
        };
        let g = &mut self.generations[at];
        if g.ids >= self.max_ids {
            self.unrecorded = self.unrecorded.max(Some(id));
        } else {
            g.filter.insert(id.as_u128());
            g.ids += 1;
        }
    }

    /// Whether `id` (within the window, not held) may have been evicted: `false` is certain, `true`
    /// is wrong for at most [`FORGOTTEN_FP_RATE`] of the ids below the floor.
    fn may_hold(&self, id: &ChatId) -> bool {
        if *id > self.floor {
            return false;
        }
        if self.unrecorded.is_some_and(|u| *id <= u) {
            return true;
        }
        let span = self.span_of(id);
        self.generations.iter().any(|g| g.span == span && g.filter.contains(id.as_u128()))
    }

    /// Drops the generations the window (from `oldest_ms` on) has passed. Whether nothing is left.
    fn expire(&mut self, oldest_ms: u64) -> bool {
        let span_ms = self.span_ms;
        self.generations.retain(|g| (g.span + 1).saturating_mul(span_ms) > oldest_ms);
        if self.unrecorded.is_some_and(|u| u.timestamp_ms() < oldest_ms) {
            self.unrecorded = None;
        }
        self.generations.is_empty() && self.unrecorded.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Body;
    use crate::identity::Ed25519Keys;
    use quickcheck::{QuickCheck, TestResult};

    const NOW_MS: u64 = 1_800_000_000_000;

    /// A chat with the id `(ms, r)`. Dedup never verifies: one signed chat, relabelled, saves
    /// signing each.
    fn chat(ms: u64, r: u8) -> Arc<Chat> {
        thread_local! {
            static SIGNED: Chat = Chat::new(&Ed25519Keys::from_seed(1), ChatId::MIN, "a", Body::Join);
        }
        let mut c = SIGNED.with(Chat::clone);
        c.id = ChatId::new_v7(ms, &[r; 10]);
        Arc::new(c)
    }

    fn dedup(max: usize) -> Dedup {
        Dedup::new(Duration::from_secs(3600), max, Duration::from_secs(60))
    }

    #[test]
    fn new_then_duplicate() {
        let now = Time::from_millis(NOW_MS);
        let mut d = dedup(100);
        let c = chat(NOW_MS - 10, 1);
        assert_eq!(d.check(&c.id, now), Verdict::New);
        d.insert(c.clone(), 0);
        assert_eq!(d.check(&c.id, now), Verdict::Duplicate);
        assert_eq!(d.check(&chat(NOW_MS - 10, 2).id, now), Verdict::New);
    }

    #[test]
    fn skew_window_both_ways() {
        let now = Time::from_millis(NOW_MS);
        let d = dedup(100);
        assert_eq!(d.check(&chat(NOW_MS + 61_000, 1).id, now), Verdict::TooNew);
        assert_eq!(d.check(&chat(NOW_MS - 3_601_000, 1).id, now), Verdict::TooOld);
    }

    /// After eviction by count, an evicted id is refused, never delivered a second time; sync
    /// ranges still start at the retention window, below the floor.
    #[test]
    fn evicted_ids_stay_refused() {
        let now = Time::from_millis(NOW_MS);
        let mut d = dedup(10);
        let chats: Vec<_> = (0..20).map(|i| chat(NOW_MS - 1000 + i, 1)).collect();
        for c in &chats {
            d.insert(c.clone(), 0);
        }
        assert_eq!(d.len(), 10);
        for c in &chats[..10] {
            assert_eq!(d.check(&c.id, now), Verdict::Evicted);
        }
        for c in &chats[10..] {
            assert_eq!(d.check(&c.id, now), Verdict::Duplicate);
        }
        assert_eq!(d.floor(), Some(chats[9].id));
        assert_eq!(d.lower_bound(now), ChatId::lower_bound(NOW_MS - 3_600_000));
    }

    /// A chat below the floor that this node never saw is accepted, once: it is the oldest held,
    /// so evicted at once, and the filter refuses it from then on.
    #[test]
    fn an_unseen_chat_below_the_floor_is_accepted_once() {
        let now = Time::from_millis(NOW_MS);
        let mut d = dedup(10);
        for i in 0..20 {
            d.insert(chat(NOW_MS - 1000 + 2 * i, 1), 0);
        }
        let late = chat(NOW_MS - 1000 + 3, 2);
        assert!(late.id < d.floor().unwrap());
        assert_eq!(d.check(&late.id, now), Verdict::New);
        d.insert(late.clone(), 0);
        assert_eq!(d.len(), 10);
        assert!(!d.contains(&late.id));
        assert_eq!(d.check(&late.id, now), Verdict::Evicted);
    }

    /// Anti-entropy reaches below the floor: in a round this node opens, a neighbour holding a chat
    /// it never saw, older than every chat it holds, lists it, and it is the one chat this node
    /// then asks for (the evicted ones the neighbour lists too are refused by the filter).
    #[test]
    fn a_sync_round_finds_an_unseen_chat_below_the_floor() {
        let now = Time::from_millis(NOW_MS);
        let mut d = dedup(10);
        let mut peer = std::collections::BTreeMap::new();
        for i in 0..20 {
            let c = chat(NOW_MS - 1000 + 2 * i, 1);
            peer.insert(c.id, ());
            d.insert(c, 0);
        }
        let late = chat(NOW_MS - 1000 + 3, 2);
        peer.insert(late.id, ());
        assert!(d.lower_bound(now) <= late.id && late.id < d.floor().unwrap());
        let opening = crate::sync::initiate(&d, d.lower_bound(now));
        let answer = crate::sync::respond(&peer, &opening);
        let settled = crate::sync::respond(&d, &answer.ranges);
        let asked: Vec<ChatId> = settled.want.into_iter().filter(|id| d.check(id, now) == Verdict::New).collect();
        assert_eq!(asked, vec![late.id]);
    }

    /// A node that never holds more than `max_chats` allocates no filter, whatever expires.
    #[test]
    fn no_filter_without_eviction_by_count() {
        let mut d = dedup(100);
        for i in 0..100 {
            d.insert(chat(NOW_MS + i, 1), 0);
        }
        assert!(d.forgotten.is_none());
        let later = Time::from_millis(NOW_MS + 3_600_000 + 50);
        d.expire(later);
        assert_eq!(d.len(), 50);
        assert!(d.forgotten.is_none(), "expiry by time records nothing");
        assert_eq!(d.check(&chat(NOW_MS + 10, 1).id, later), Verdict::TooOld);
        assert_eq!(d.check(&chat(NOW_MS + 10, 2).id, later), Verdict::TooOld);
    }

    /// Evicted ids are remembered by generation as the window moves across several generations:
    /// never more than two, every id evicted refused until the window passes it (then by its
    /// timestamp), and once nothing evicted is inside the window the filters are gone.
    #[test]
    fn generations_follow_the_window() {
        let mut d = dedup(10);
        let span_ms = d.generation_ms();
        let mut evicted = Vec::new();
        let mut now_ms = NOW_MS;
        // Three and a half spans of one chat every 20 s (13 minutes of them per hour held at most).
        while now_ms < NOW_MS + 7 * span_ms / 2 {
            let now = Time::from_millis(now_ms);
            let c = chat(now_ms, 1);
            assert_eq!(d.check(&c.id, now), Verdict::New);
            let oldest = d.iter().next().map(|c| c.id);
            d.insert(c, 0);
            if d.len() == 10 && oldest != d.iter().next().map(|c| c.id) {
                evicted.extend(oldest);
            }
            d.expire(now);
            assert_eq!(d.forgotten.is_some(), !evicted.is_empty());
            assert!(d.forgotten.as_ref().is_none_or(|f| f.generations.len() <= 2));
            for id in evicted.iter().rev().take(400) {
                let v = d.check(id, now);
                assert!(v == Verdict::Evicted || v == Verdict::TooOld, "{id} at {now_ms}: {v:?}");
                assert_eq!(v == Verdict::TooOld, id.timestamp_ms() < now_ms - 3_600_000);
            }
            now_ms += 20_000;
        }
        // Past the last generation's span, and its ids past the retention window.
        let last = d.floor().unwrap();
        let newest_ms = d.iter().last().unwrap().timestamp_ms();
        let end_ms = ((last.timestamp_ms() / span_ms + 1) * span_ms).max(newest_ms + 1) + 3_600_000;
        d.expire(Time::from_millis(end_ms));
        assert!(d.forgotten.is_none());
        assert!(d.is_empty());
        assert_eq!(d.check(&last, Time::from_millis(end_ms)), Verdict::TooOld);
    }

    /// A full generation records no more: the ids it left out, and every id below them, are
    /// refused as a plain floor would, until the window passes them.
    #[test]
    fn a_full_generation_falls_back_to_a_floor() {
        let mut f = Forgotten::new(10_000_000, 100);
        let id = |ms: u64, r: u8| ChatId::new_v7(NOW_MS + ms, &[r; 10]);
        for ms in 0..150 {
            f.insert(id(ms, 1));
        }
        assert_eq!(f.generations[0].ids, 100);
        assert_eq!(f.unrecorded, Some(id(149, 1)));
        assert!(f.may_hold(&id(120, 2)), "unseen, but below an unrecorded id");
        assert!(f.may_hold(&id(40, 1)));
        assert!(!f.may_hold(&id(150, 2)), "above the floor");
        assert!(!f.expire(NOW_MS + 149));
        assert!(f.expire(NOW_MS + 10_000_000 * (NOW_MS / 10_000_000 + 1)), "the window passed everything");
    }

    /// Whatever the order chats are offered, evicted and expired in: none is delivered twice, and
    /// every one not delivered before and inside the window is accepted. (The filters hold at most
    /// a few hundred ids here, where a false positive has odds far below one in a billion.)
    #[test]
    fn every_chat_at_most_once_and_unseen_ones_accepted() {
        fn prop(offers: Vec<(u16, u8, u8)>, max: u8) -> TestResult {
            let mut d = Dedup::new(Duration::from_secs(20), 1 + max as usize % 16, Duration::from_secs(5));
            let mut delivered = std::collections::BTreeSet::new();
            let mut now_ms = NOW_MS;
            for (t, r, step) in offers {
                // A hundred ids, from the 20 s before `NOW_MS` to 5 s after (so offered again
                // and again, evicted and expired), and a clock that moves on by 0.5 s every
                // third offer or so: across generations (25 s each) within a run.
                let c = chat(NOW_MS - 20_000 + (t % 50) as u64 * 500, r % 2);
                now_ms += u64::from(step % 3 == 0) * 500;
                let now = Time::from_millis(now_ms);
                if step % 7 == 0 {
                    d.expire(now);
                }
                let fresh = !delivered.contains(&c.id);
                let in_window = c.id.timestamp_ms() >= now_ms - 20_000 && c.id.timestamp_ms() <= now_ms + 5_000;
                match d.check_slot(&c.id, now) {
                    Ok(slot) => {
                        if !fresh {
                            return TestResult::error(format!("{} delivered twice", c.id));
                        }
                        delivered.insert(c.id);
                        d.insert_at(slot, c, 0);
                    }
                    Err(v) if fresh && in_window => {
                        return TestResult::error(format!("{} never seen, in the window, refused: {v:?}", c.id));
                    }
                    Err(_) => {}
                }
                if d.forgotten.as_ref().is_some_and(|f| f.generations.len() > 2) {
                    return TestResult::error("more than two generations");
                }
            }
            TestResult::passed()
        }
        QuickCheck::new().tests(500).quickcheck(prop as fn(Vec<(u16, u8, u8)>, u8) -> TestResult);
    }

    /// Of ids never seen below the floor, the filter refuses at most the documented share, with a
    /// generation grown well past its first sub-filter.
    #[test]
    fn unseen_late_ids_are_refused_at_most_at_the_documented_rate() {
        const EVICTED: u64 = 200_000;
        let mut f = Forgotten::new(u64::MAX, GENERATION_MAX_IDS);
        for i in 0..EVICTED {
            f.insert(ChatId::new_v7(NOW_MS + i, &[1; 10]));
        }
        let refused = (0..EVICTED).filter(|&i| f.may_hold(&ChatId::new_v7(NOW_MS + i, &[2; 10]))).count();
        let rate = refused as f64 / EVICTED as f64;
        assert!(rate <= FORGOTTEN_FP_RATE, "{refused} of {EVICTED} refused: {rate}");
        assert!((0..EVICTED).all(|i| f.may_hold(&ChatId::new_v7(NOW_MS + i, &[1; 10]))));
    }

    /// The galloping search answers exactly what a binary search does, for every id held, every
    /// gap between them and both ends.
    #[test]
    fn find_agrees_with_binary_search() {
        for n in 0..40u64 {
            let mut d = dedup(1000);
            for i in 0..n {
                d.insert(chat(NOW_MS + 2 * i, 1), 0);
            }
            for ms in NOW_MS - 1..NOW_MS + 2 * n + 1 {
                let id = chat(ms, 1).id;
                assert_eq!(d.find(&id), d.chats.binary_search_by(|c| c.id.cmp(&id)), "{n} chats, at {ms}");
            }
        }
    }

    #[test]
    fn expiry_forgets_and_rebuilds() {
        let mut d = dedup(100_000);
        for i in 0..2000 {
            d.insert(chat(NOW_MS + i, (i % 200) as u8), 0);
        }
        d.expire(Time::from_millis(NOW_MS + 3_600_000 + 1500));
        assert_eq!(d.len(), 500);
        assert_eq!(
            d.check(&chat(NOW_MS + 1999, (1999 % 200) as u8).id, Time::from_millis(NOW_MS + 3_600_000 + 1500)),
            Verdict::Duplicate
        );
    }
}
