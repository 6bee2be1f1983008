//! "Have I seen this chat?" — and the recent chats themselves.
//!
//! An id is looked up in the recent chats themselves, which repair (`IWant`, sync) must serve
//! anyway: one structure avoids keeping every id twice. They are a deque sorted by id, 9 bytes a
//! chat with the id read from the chat it points to. Ids are UUIDv7, ordered by time, so a new chat
//! lands at or near the back and the oldest leave from the front; a lookup is a binary search. (A
//! `BTreeMap` cost over 50 bytes a chat, and the Bloom filter in front of it 4 more plus its
//! rebuilds, in a simulator that keeps the same hundred chats in thousands of nodes.)
//!
//! Memory is bounded by `max_chats` and by `retention`. To stay exactly-once after forgetting, the
//! map keeps a *floor*: the newest id ever evicted. Any id at or below the floor, and any chat older
//! than the retention window, is refused as too old rather than risk delivering it twice.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::chat::{Chat, ChatId};
use crate::sync::IdSet;
use crate::time::Time;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    New,
    Duplicate,
    /// Older than the retention window or the floor: refused, it might be a replay.
    TooOld,
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
    floor: Option<ChatId>,
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
            floor: None,
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
        if ts < self.oldest_ms(now) || self.floor.is_some_and(|f| *id <= f) {
            return Err(Verdict::TooOld);
        }
        match self.find(id) {
            Ok(_) => Err(Verdict::Duplicate),
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
                self.floor = self.floor.max(Some(chat.id));
            }
        }
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

    /// The oldest id this node would still accept: where sync ranges start.
    pub fn lower_bound(&self, now: Time) -> ChatId {
        let by_time = ChatId::lower_bound(self.oldest_ms(now));
        match self.floor {
            Some(f) => by_time.max(ChatId::from_u128(f.as_u128().saturating_add(1))),
            None => by_time,
        }
    }

    /// Forgets chats older than the retention window, and gives back room that was left unused
    /// after a burst.
    pub fn expire(&mut self, now: Time) {
        let gone = self.first_from(&ChatId::lower_bound(self.oldest_ms(now)));
        if gone > 0 {
            self.floor = self.floor.max(Some(self.chats[gone - 1].id));
            self.chats.drain(..gone);
            self.hops.drain(..gone);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Body;
    use crate::identity::Ed25519Keys;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn chat(ms: u64, r: u8) -> Arc<Chat> {
        let k = Ed25519Keys::from_seed(1);
        Arc::new(Chat::new(&k, ChatId::new_v7(ms, &[r; 10]), "a", Body::Join))
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

    /// After eviction by count, an evicted id is refused, never delivered a second time.
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
            assert_eq!(d.check(&c.id, now), Verdict::TooOld);
        }
        for c in &chats[10..] {
            assert_eq!(d.check(&c.id, now), Verdict::Duplicate);
        }
        assert!(d.lower_bound(now) > chats[9].id);
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
