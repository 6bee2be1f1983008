//! Anti-entropy: range-based set reconciliation of the recent-chat sets of two neighbours.
//!
//! After Meyer, "Range-Based Set Reconciliation" (2023), as used by Negentropy. Ids are UUIDv7, so
//! the id space is ordered by time. One side sends a fingerprint (count, wrapping sum of ids) of a
//! range; the other compares it with its own. Equal: done. Different: it either lists its ids in the
//! range (when there are few) or splits the range into [`SPLIT`] parts of equal count and sends
//! their fingerprints. A listed range is settled at once: each side pushes what the other lacks and
//! asks for what it lacks itself.
//!
//! Two nodes already in step exchange one fingerprint (about 50 bytes) per round, however long
//! their history. Messages carry explicit bounds, so a reply needs no state on either side.
//!
//! Deviations from the paper: when a reply would exceed [`MAX_RANGES_PER_FRAME`] ranges, the excess
//! is dropped rather than queued, and the next round resumes it. Chats are pushed in bounded
//! portions: the node answering decides how many of [`Reply::push`] it sends (by its per-round
//! bound and the peer's credit, see `serve`), and answers the rest of each listed range with a
//! fingerprint of it ([`continue_from`]), which the peer's answer turns into the next portion.
//! Every reply stays bounded, and a node far behind is served in as many rounds as it takes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::chat::ChatId;
use crate::wire::{MAX_IDS_PER_FRAME, MAX_RANGES_PER_FRAME};

/// How many parts a mismatched range is split into.
pub const SPLIT: usize = 8;
/// A range with at most this many ids is listed instead of split.
pub const LIST_AT_MOST: usize = 32;

/// The half-open id range `[lower, upper)` and what the sender knows of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRange {
    pub lower: ChatId,
    pub upper: ChatId,
    pub summary: Summary,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Summary {
    /// Number of ids and their wrapping sum (as big-endian u128).
    Fingerprint { count: u32, hash: u128 },
    /// Every id the sender has in the range.
    Ids(Vec<ChatId>),
}

/// What to do after reading a peer's sync frame.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Ranges to send back (empty: nothing more to say).
    pub ranges: Vec<SyncRange>,
    /// Chats we have and the peer lacks, ascending within each listed range.
    pub push: Vec<ChatId>,
    /// Where each listed range's pushes start in `push`, and the range's upper bound: what
    /// [`continue_from`] needs to resume a range cut short.
    pub push_ranges: Vec<(usize, ChatId)>,
    /// Chats the peer has and we lack.
    pub want: Vec<ChatId>,
}

/// A set of ids as reconciliation reads it.
pub trait IdSet {
    /// The ids in `[lower, upper)`, ascending.
    fn ids_in(&self, lower: ChatId, upper: ChatId) -> impl Iterator<Item = ChatId> + '_;
    fn has(&self, id: &ChatId) -> bool;

    /// How many ids `[lower, upper)` holds: what answering a range will walk, known before walking.
    fn count_in(&self, lower: ChatId, upper: ChatId) -> usize {
        self.ids_in(lower, upper).count()
    }
}

impl<V> IdSet for BTreeMap<ChatId, V> {
    fn ids_in(&self, lower: ChatId, upper: ChatId) -> impl Iterator<Item = ChatId> + '_ {
        self.range((Bound::Included(lower), Bound::Excluded(upper))).map(|(id, _)| *id)
    }

    fn has(&self, id: &ChatId) -> bool {
        self.contains_key(id)
    }
}

pub fn fingerprint(set: &impl IdSet, lower: ChatId, upper: ChatId) -> Summary {
    let (count, hash) =
        set.ids_in(lower, upper).fold((0u32, 0u128), |(c, h), id| (c + 1, h.wrapping_add(id.as_u128())));
    Summary::Fingerprint { count, hash }
}

/// The opening frame: one fingerprint over everything from `lower` on.
pub fn initiate(set: &impl IdSet, lower: ChatId) -> Vec<SyncRange> {
    vec![SyncRange { lower, upper: ChatId::MAX, summary: fingerprint(set, lower, ChatId::MAX) }]
}

/// Answers a peer's sync frame. Ranges that are empty or inverted are ignored.
pub fn respond(set: &impl IdSet, incoming: &[SyncRange]) -> Reply {
    let mut reply = Reply::default();
    for r in incoming.iter().filter(|r| r.lower < r.upper) {
        match &r.summary {
            Summary::Fingerprint { .. } => {
                if fingerprint(set, r.lower, r.upper) == r.summary {
                    continue;
                }
                let mine: Vec<ChatId> = set.ids_in(r.lower, r.upper).collect();
                if mine.len() <= LIST_AT_MOST {
                    reply.ranges.push(SyncRange { lower: r.lower, upper: r.upper, summary: Summary::Ids(mine) });
                } else {
                    let step = mine.len().div_ceil(SPLIT);
                    let mut lower = r.lower;
                    for chunk_start in (step..mine.len()).step_by(step) {
                        let upper = mine[chunk_start];
                        reply.ranges.push(SyncRange { lower, upper, summary: fingerprint(set, lower, upper) });
                        lower = upper;
                    }
                    reply.ranges.push(SyncRange { lower, upper: r.upper, summary: fingerprint(set, lower, r.upper) });
                }
            }
            Summary::Ids(theirs) => {
                // A peer lists its ids in order (ours does): sorted already, they need no copy.
                let sorted: Cow<[ChatId]> = if theirs.is_sorted() {
                    Cow::Borrowed(theirs)
                } else {
                    let mut v = theirs.clone();
                    v.sort_unstable();
                    Cow::Owned(v)
                };
                let (lower, upper) = (r.lower.as_u128(), r.upper.as_u128());
                let theirs = &sorted[sorted.partition_point(|id| id.as_u128() < lower)..];
                let theirs = &theirs[..theirs.partition_point(|id| id.as_u128() < upper)];
                reply.push_ranges.push((reply.push.len(), r.upper));
                merge(set.ids_in(r.lower, r.upper), theirs, &mut reply);
            }
        }
    }
    reply.ranges.truncate(MAX_RANGES_PER_FRAME);
    reply.want.dedup();
    reply.want.truncate(MAX_IDS_PER_FRAME);
    reply
}

/// The ranges to send back when the pushes of a reply stop before `push[cut]`: the rest of each
/// listed range with pushes left, as a fingerprint. The peer lacks those chats, so its fingerprint
/// differs and its answer asks for the next portion.
pub fn continue_from(set: &impl IdSet, reply: &Reply, cut: usize) -> Vec<SyncRange> {
    let mut out = Vec::new();
    for (i, &(start, upper)) in reply.push_ranges.iter().enumerate() {
        let end = reply.push_ranges.get(i + 1).map_or(reply.push.len(), |r| r.0);
        let from = start.max(cut);
        if from < end {
            let lower = reply.push[from];
            out.push(SyncRange { lower, upper, summary: fingerprint(set, lower, upper) });
        }
    }
    out
}

/// Settles a listed range in one walk of both sorted lists: `mine`, the ids we hold in the range,
/// and `theirs`, the peer's in the range. Ours that the peer lacks are pushed; theirs that we lack
/// are wanted, as often as they are listed. (Instead of a search of the peer's list for each of
/// ours and of our set for each of theirs.)
/// Ids compare as big-endian numbers, which order as their bytes do, in a few instructions.
fn merge(mine: impl Iterator<Item = ChatId>, theirs: &[ChatId], reply: &mut Reply) {
    let mut i = 0;
    for id in mine {
        let n = id.as_u128();
        while i < theirs.len() && theirs[i].as_u128() < n {
            reply.want.push(theirs[i]);
            i += 1;
        }
        if i < theirs.len() && theirs[i].as_u128() == n {
            while i < theirs.len() && theirs[i].as_u128() == n {
                i += 1;
            }
        } else {
            reply.push.push(id);
        }
    }
    reply.want.extend_from_slice(&theirs[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    /// An id as authors make them: a time and random bits (here drawn from `r`, so that a
    /// quickcheck input replays). Ids whose random bits are a pattern, such as `[r; 10]`, can
    /// have equal sums in a range by construction (156+177+45 = 113+173+92), and a fingerprint of
    /// sums cannot tell such sets apart; random bits make that as unlikely as a 74-bit collision.
    fn id(ms: u64, r: u8) -> ChatId {
        let mut z = (ms << 8 | u64::from(r)).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let mut random = [r; 10];
        random[..8].copy_from_slice(&z.to_be_bytes());
        ChatId::new_v7(ms, &random)
    }

    /// Runs rounds between two sets until quiet; returns (rounds, bytes of sync ranges sent).
    fn reconcile(a: &mut BTreeMap<ChatId, ()>, b: &mut BTreeMap<ChatId, ()>) -> (usize, usize) {
        let mut msg = initiate(a, ChatId::MIN);
        let mut from_a = true;
        let mut rounds = 0;
        let mut bytes = 0;
        while !msg.is_empty() {
            rounds += 1;
            assert!(rounds < 100, "reconciliation did not terminate");
            bytes += crate::wire::encode(&crate::wire::Message::Sync { ranges: msg.clone() }).len();
            let (me, other) = if from_a { (&mut *b, &mut *a) } else { (&mut *a, &mut *b) };
            let reply = respond(me, &msg);
            for id in reply.push {
                other.insert(id, ());
            }
            for id in reply.want {
                assert!(other.contains_key(&id));
                me.insert(id, ());
            }
            msg = reply.ranges;
            from_a = !from_a;
        }
        (rounds, bytes)
    }

    /// Like `reconcile`, but each side pushes at most `cap` chats per answer and sends the rest
    /// of its listed ranges back as fingerprints (`continue_from`), as the node does when a round's
    /// bound or the peer's credit cuts the answer.
    fn reconcile_capped(a: &mut BTreeMap<ChatId, ()>, b: &mut BTreeMap<ChatId, ()>, cap: usize) -> usize {
        let mut msg = initiate(a, ChatId::MIN);
        let mut from_a = true;
        let mut rounds = 0;
        while !msg.is_empty() {
            rounds += 1;
            assert!(rounds < 10_000, "reconciliation did not terminate");
            let (me, other) = if from_a { (&mut *b, &mut *a) } else { (&mut *a, &mut *b) };
            let reply = respond(me, &msg);
            let sent = cap.min(reply.push.len());
            for id in &reply.push[..sent] {
                other.insert(*id, ());
            }
            let mut back = reply.ranges.clone();
            if sent < reply.push.len() {
                back.extend(continue_from(me, &reply, sent));
            }
            for id in reply.want {
                me.insert(id, ());
            }
            msg = back;
            from_a = !from_a;
        }
        rounds
    }

    /// However small the portion each answer may push, two sets still end equal, in one session.
    #[test]
    fn answers_cut_short_resume_until_equal() {
        fn prop(xs: Vec<(u16, u8)>, ys: Vec<(u16, u8)>, cap: u8) -> TestResult {
            let mut a: BTreeMap<ChatId, ()> = xs.iter().map(|&(t, r)| (id(t as u64, r), ())).collect();
            let mut b: BTreeMap<ChatId, ()> = ys.iter().map(|&(t, r)| (id(t as u64, r), ())).collect();
            let union: BTreeMap<ChatId, ()> = a.iter().chain(b.iter()).map(|(k, _)| (*k, ())).collect();
            for _ in 0..20 {
                reconcile_capped(&mut a, &mut b, 1 + cap as usize % 8);
                if a == union && b == union {
                    return TestResult::passed();
                }
            }
            TestResult::error(format!("not reconciled: {} {} {}", a.len(), b.len(), union.len()))
        }
        QuickCheck::new().tests(300).quickcheck(prop as fn(Vec<(u16, u8)>, Vec<(u16, u8)>, u8) -> TestResult);
    }

    #[test]
    fn a_new_node_is_served_in_bounded_portions() {
        let mut a: BTreeMap<ChatId, ()> = BTreeMap::new();
        let mut b: BTreeMap<ChatId, ()> = (0..2_000).map(|i| (id(i, (i % 251) as u8), ())).collect();
        let rounds = reconcile_capped(&mut a, &mut b, 100);
        assert_eq!(a.len(), 2_000, "after {rounds} rounds");
    }

    #[test]
    fn in_step_sets_cost_one_small_frame() {
        let set: BTreeMap<ChatId, ()> = (0..10_000).map(|i| (id(i, (i % 251) as u8), ())).collect();
        let (mut a, mut b) = (set.clone(), set);
        let (rounds, bytes) = reconcile(&mut a, &mut b);
        assert_eq!(rounds, 1);
        assert!(bytes < 80, "{bytes} bytes");
    }

    #[test]
    fn any_two_sets_end_equal() {
        fn prop(xs: Vec<(u16, u8)>, ys: Vec<(u16, u8)>) -> TestResult {
            let mut a: BTreeMap<ChatId, ()> = xs.iter().map(|&(t, r)| (id(t as u64, r), ())).collect();
            let mut b: BTreeMap<ChatId, ()> = ys.iter().map(|&(t, r)| (id(t as u64, r), ())).collect();
            let union: BTreeMap<ChatId, ()> = a.iter().chain(b.iter()).map(|(k, _)| (*k, ())).collect();
            // Repeat whole sessions, as the node's periodic anti-entropy does, until settled.
            for _ in 0..20 {
                reconcile(&mut a, &mut b);
                if a == union && b == union {
                    return TestResult::passed();
                }
            }
            TestResult::error(format!("not reconciled: {} {} {}", a.len(), b.len(), union.len()))
        }
        QuickCheck::new().tests(300).quickcheck(prop as fn(Vec<(u16, u8)>, Vec<(u16, u8)>) -> TestResult);
    }

    /// The one-walk settling of a listed range answers as searching each list for the other's
    /// ids did, whatever the peer lists: unsorted, repeated, out of range.
    #[test]
    fn listed_ranges_settle_as_by_search() {
        fn by_search(set: &BTreeMap<ChatId, ()>, r: &SyncRange) -> Reply {
            let Summary::Ids(theirs) = &r.summary else { unreachable!() };
            let mut sorted = theirs.clone();
            sorted.sort_unstable();
            let mut reply = Reply::default();
            for id in set.ids_in(r.lower, r.upper) {
                if sorted.binary_search(&id).is_err() {
                    reply.push.push(id);
                }
            }
            for id in sorted {
                if id >= r.lower && id < r.upper && !set.has(&id) {
                    reply.want.push(id);
                }
            }
            reply.want.dedup();
            reply
        }
        fn prop(mine: Vec<(u8, u8)>, theirs: Vec<(u8, u8)>, bounds: (u8, u8)) -> TestResult {
            let set: BTreeMap<ChatId, ()> = mine.iter().map(|&(t, r)| (id(t as u64, r % 4), ())).collect();
            let theirs: Vec<ChatId> = theirs.iter().map(|&(t, r)| id(t as u64, r % 4)).collect();
            let (lower, upper) = (id(bounds.0 as u64, 0), id(bounds.1 as u64, 0));
            if lower >= upper {
                return TestResult::discard();
            }
            let r = SyncRange { lower, upper, summary: Summary::Ids(theirs) };
            let mut got = respond(&set, std::slice::from_ref(&r));
            got.push_ranges.clear();
            TestResult::from_bool(got == by_search(&set, &r))
        }
        QuickCheck::new().tests(1000).quickcheck(prop as fn(Vec<(u8, u8)>, Vec<(u8, u8)>, (u8, u8)) -> TestResult);
    }

    #[test]
    fn a_few_differences_in_a_large_set_cost_little() {
        let set: BTreeMap<ChatId, ()> = (0..10_000).map(|i| (id(i, (i % 251) as u8), ())).collect();
        let mut a = set.clone();
        let mut b = set;
        a.remove(&id(5000, (5000 % 251) as u8));
        b.remove(&id(77, 77));
        let (rounds, bytes) = reconcile(&mut a, &mut b);
        assert_eq!(a, b);
        assert!(rounds <= 8, "{rounds} rounds");
        assert!(bytes < 20_000, "{bytes} bytes");
    }
}
