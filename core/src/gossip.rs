//! When a chat is forwarded, and how a missed chat is fetched: Plumtree over the neighbour set.
//!
//! After Leitão, Pereira and Rodrigues, "Epidemic Broadcast Trees" (SRDS 2007). Each link to a
//! neighbour is either *eager* (full chats are pushed over it) or *lazy* (only ids, in `IHave`). The
//! eager links form a spanning tree that shapes itself to the traffic:
//! - A node forwards a chat only the first time it accepts it (see `dedup`), never a duplicate: the
//!   full chat to every eager neighbour but the sender (while the frame's `ttl` is above zero), the id
//!   to up to `lazy_fanout` lazy neighbours.
//! - Chats arriving a second time over an eager link mean the link is redundant: the receiver makes
//!   it lazy and sends `Prune`, so the sender does too (section 3.3, "prune").
//! - A node that hears of a chat by `IHave` and has not received it `lazy_wait` later sends `Graft`
//!   to the announcer: the link becomes eager on both sides and the announcer sends the chat. If that
//!   goes unanswered for `want_timeout`, the next announcer is asked. This heals the tree around a
//!   relay that died mid-broadcast, a link that broke, or a TTL that ran out.
//! - Anti-entropy (module `sync`) catches whatever both paths missed: partitions, nodes that were
//!   offline. Chats it fetches are history; they are not pushed on.
//!
//! Deviations from the paper, and why:
//! - A new link starts eager only while the node has fewer than `fanout` eager links (the paper makes
//!   every link eager). The cap keeps the first chats after start-up from flooding every link, and
//!   gives the seed's `--fanout` a meaning; a node over the cap says `Prune` at once so both ends agree.
//! - A node left without any eager link (its eager neighbours all gone) grafts a random lazy one.
//! - The paper prunes on the first duplicate. With several senders at once that over-prunes: two
//!   chats racing around one cycle get *two* of its links pruned, cutting a node off, which then
//!   grafts, which makes new cycles (measured: RMR 1.1 with 30 senders 5 ms apart, 0.0 with 100 ms
//!   gaps). Here each eager link keeps a moving average of how often it brought a chat first, and is
//!   pruned once that falls below [`PRUNE_BELOW`]: a tree link that loses an occasional race stays,
//!   a link that mostly brings duplicates goes.
//! - With `repair` off, the node behaves as the seed described: push to `fanout` random neighbours
//!   while the TTL lasts, nothing else. It exists to measure what repair buys.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::chat::ChatId;
use crate::conn_map::ConnTable;
use crate::node::ConnId;
use crate::random::Rng;
use crate::time::Time;

/// Most ids awaiting a lazy repair at once; beyond it new announcements are ignored (anti-entropy
/// still catches them).
pub const MAX_MISSING: usize = 8192;
/// Most announcers remembered per missing id.
const MAX_ANNOUNCERS: usize = 4;
/// Weight of the newest observation in a link's usefulness average.
const USEFUL_WEIGHT: f32 = 0.25;
/// An eager link whose usefulness falls below this is pruned (three duplicates in a row from a
/// fresh link).
pub const PRUNE_BELOW: f32 = 0.25;
/// Usefulness of a new or newly grafted link.
const USEFUL_START: f32 = 0.5;

/// Where a chat goes: pushed whole to the eager neighbours, announced to the lazy ones. One list,
/// the eager first: it is made for every chat accepted, so up to `INLINE_TARGETS` neighbours it
/// is held in place, with no allocation at all.
#[derive(Debug)]
pub struct Targets {
    conns: ConnList,
    /// How many of `conns` are eager.
    eager: usize,
}

impl Targets {
    pub fn eager(&self) -> &[ConnId] {
        &self.conns.as_slice()[..self.eager]
    }

    pub fn lazy(&self) -> &[ConnId] {
        &self.conns.as_slice()[self.eager..]
    }
}

/// Neighbours a `Targets` holds without allocating: more than most nodes have (`max_peers` is 50
/// by default, a simulated node has a dozen or so).
const INLINE_TARGETS: usize = 32;

/// A list of connections, in place while it is short. Large, but only ever a temporary on the
/// stack: boxing the inline variant would bring back the allocation it is there to avoid.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum ConnList {
    Inline { conns: [ConnId; INLINE_TARGETS], len: usize },
    Heap(Vec<ConnId>),
}

impl ConnList {
    fn with_capacity(n: usize) -> ConnList {
        if n <= INLINE_TARGETS {
            ConnList::Inline { conns: [ConnId(0); INLINE_TARGETS], len: 0 }
        } else {
            ConnList::Heap(Vec::with_capacity(n))
        }
    }

    /// Appends the connections of `set` except `from` and `holders`; room was made for all of
    /// them (see `with_capacity`). Generic rather than through `dyn Iterator`: it runs for every
    /// neighbour of every chat accepted, and a call per item was a third of `targets`. A plain
    /// loop keeping the length in a local, rather than the free slots zipped with the filter and
    /// the length bumped through its reference: 8% fewer instructions here (500 nodes).
    fn extend_except<'s>(&mut self, set: impl Iterator<Item = &'s ConnId>, from: Option<ConnId>, holders: &[ConnId]) {
        let wanted = |c: &ConnId| Some(*c) != from && !holders.contains(c);
        match self {
            ConnList::Inline { conns, len } => {
                let mut n = *len;
                for c in set.filter(|c| wanted(c)) {
                    let Some(slot) = conns.get_mut(n) else {
                        debug_assert!(false, "more neighbours than room was made for");
                        break;
                    };
                    *slot = *c;
                    n += 1;
                }
                *len = n;
            }
            ConnList::Heap(v) => v.extend(set.copied().filter(|c| wanted(c))),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            ConnList::Inline { len, .. } => *len = (*len).min(n),
            ConnList::Heap(v) => v.truncate(n),
        }
    }

    fn as_slice(&self) -> &[ConnId] {
        match self {
            ConnList::Inline { conns, len } => &conns[..*len],
            ConnList::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [ConnId] {
        match self {
            ConnList::Inline { conns, len } => &mut conns[..*len],
            ConnList::Heap(v) => v,
        }
    }
}

/// Why a chat that just arrived was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// Nobody asked: it was pushed.
    No,
    /// Grafted after an `IHave`: a live chat that took the lazy path. It is pushed on.
    Graft,
    /// Asked for by anti-entropy: history. It is not pushed on.
    Sync,
}

#[derive(Debug)]
struct Missing {
    announcers: Vec<ConnId>,
    /// When to ask (again).
    due: Time,
    /// How many requests were sent so far.
    asked: usize,
    kind: Requested,
}

#[derive(Debug)]
pub struct Gossip {
    fanout: usize,
    lazy_fanout: usize,
    lazy_wait: Duration,
    want_timeout: Duration,
    /// Plumtree on; off gives the seed's random push.
    tree: bool,
    /// Eager links, with how useful each has been (moving average of "brought a chat first").
    /// Sorted vectors rather than B-trees: a few links each, in every node of a simulator.
    eager: ConnTable<f32>,
    lazy: ConnTable<()>,
    missing: BTreeMap<ChatId, Missing>,
}

/// A request due now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    pub conn: ConnId,
    pub id: ChatId,
    /// `true`: send as a `Graft` (lazy repair); `false`: a plain `IWant` (sync).
    pub graft: bool,
}

impl Gossip {
    pub fn new(fanout: usize, lazy_fanout: usize, lazy_wait: Duration, want_timeout: Duration, tree: bool) -> Gossip {
        Gossip {
            fanout,
            lazy_fanout,
            lazy_wait,
            want_timeout,
            tree,
            eager: ConnTable::default(),
            lazy: ConnTable::default(),
            missing: BTreeMap::new(),
        }
    }

    /// A neighbour is up. Returns `false` if the link starts lazy: the caller then sends `Prune`
    /// so the neighbour agrees. `extra`: the node already has the peers it wanted (an explored or
    /// surplus link); such a link starts lazy unless the node has no eager link at all, so
    /// exploration does not keep adding cycles to a settled tree.
    pub fn on_peer_up(&mut self, conn: ConnId, extra: bool) -> bool {
        let room = if extra { self.eager.is_empty() } else { self.eager.len() < self.fanout.max(1) };
        if room {
            self.eager.insert(conn, USEFUL_START);
            true
        } else {
            self.lazy.insert(conn, ());
            false
        }
    }

    /// A neighbour is gone. Returns a lazy neighbour to graft if no eager link is left.
    pub fn on_peer_down(&mut self, conn: ConnId, rng: &mut Rng) -> Option<ConnId> {
        self.eager.remove(&conn);
        self.lazy.remove(&conn);
        for m in self.missing.values_mut() {
            m.announcers.retain(|c| *c != conn);
        }
        self.missing.retain(|_, m| !m.announcers.is_empty());
        self.shed_missing();
        if self.tree && self.eager.is_empty() && !self.lazy.is_empty() {
            let pick = *self.lazy.keys().nth(rng.below(self.lazy.len()))?;
            self.graft(pick);
            return Some(pick);
        }
        None
    }

    /// The neighbour sent `Prune`: the link becomes lazy.
    pub fn prune(&mut self, conn: ConnId) {
        if self.tree && self.eager.remove(&conn).is_some() {
            self.lazy.insert(conn, ());
        }
    }

    /// A pushed chat arrived first over this link.
    pub fn on_first(&mut self, conn: ConnId) {
        if let Some(u) = self.eager.get_mut(&conn) {
            *u += USEFUL_WEIGHT * (1.0 - *u);
        }
    }

    /// A pushed chat arrived again over this link. Returns `true` if the link is now pruned: the
    /// caller sends `Prune`.
    pub fn on_duplicate(&mut self, conn: ConnId) -> bool {
        let Some(u) = self.eager.get_mut(&conn) else { return false };
        *u -= USEFUL_WEIGHT * *u;
        if !self.tree || *u >= PRUNE_BELOW {
            return false;
        }
        self.prune(conn);
        true
    }

    /// The neighbour sent `Graft` (or we grafted it).
    pub fn graft(&mut self, conn: ConnId) {
        if self.lazy.remove(&conn).is_some() || !self.eager.contains_key(&conn) {
            self.eager.insert(conn, USEFUL_START);
        }
    }

    pub fn is_eager(&self, conn: ConnId) -> bool {
        self.eager.contains_key(&conn)
    }

    /// Where a newly accepted chat goes (the forwarding rule). `holders`: neighbours that have
    /// shown they hold the chat (they announced it); they are sent nothing. `batched`: whether an
    /// announcement to a neighbour is already waiting for the next `IHave` batch. The ids go to
    /// `lazy_fanout` lazy neighbours, those with a batch waiting first: each chat is announced as
    /// widely, while a busy node sends one batch to a few neighbours instead of a small one to
    /// each of a different few per chat.
    pub fn targets(
        &self,
        rng: &mut Rng,
        from: Option<ConnId>,
        ttl: u8,
        holders: &[ConnId],
        batched: impl Fn(ConnId) -> bool,
    ) -> Targets {
        // Runs for every chat accepted: the list is allocated once, at its final size, and the
        // chosen ones are kept in place (`choose_k` moves them to the front) rather than copied.
        if !self.tree {
            let mut all = ConnList::with_capacity(self.eager.len() + self.lazy.len());
            all.extend_except(self.eager.keys(), from, holders);
            all.extend_except(self.lazy.keys(), from, holders);
            let n = if ttl > 0 { self.fanout } else { 0 };
            let n = rng.choose_k(all.as_mut_slice(), n).len();
            all.truncate(n);
            return Targets { eager: n, conns: all };
        }
        let mut conns = ConnList::with_capacity(self.eager.len() + self.lazy.len());
        if ttl > 0 {
            conns.extend_except(self.eager.keys(), from, holders);
        }
        let eager = conns.as_slice().len();
        conns.extend_except(self.lazy.keys(), from, holders);
        if ttl == 0 {
            // TTL spent: the eager neighbours only hear of it, and graft if they need it.
            conns.extend_except(self.eager.keys(), from, holders);
        }
        let lazy = &mut conns.as_mut_slice()[eager..];
        if lazy.len() > self.lazy_fanout {
            // Those with a batch waiting move to the front, each group keeping its order: what a
            // stable sort on `!batched` gives, with `batched` asked once per neighbour instead of
            // at every comparison (it was a tenth of the cost of accepting a chat).
            let mut waiting = 0;
            for i in 0..lazy.len() {
                if batched(lazy[i]) {
                    lazy[waiting..=i].rotate_right(1);
                    waiting += 1;
                }
            }
            let picked = if waiting >= self.lazy_fanout {
                rng.choose_k(&mut lazy[..waiting], self.lazy_fanout).len()
            } else {
                waiting + rng.choose_k(&mut lazy[waiting..], self.lazy_fanout - waiting).len()
            };
            conns.truncate(eager + picked);
        }
        Targets { conns, eager }
    }

    /// Neighbours that announced `id` to us, while it is missing.
    pub fn announcers(&self, id: &ChatId) -> &[ConnId] {
        self.missing.get(id).map_or(&[], |m| &m.announcers)
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
            let m = Missing { announcers: vec![from], due: now + self.lazy_wait, asked: 0, kind: Requested::Graft };
            self.missing.insert(id, m);
        }
    }

    /// We asked `from` for `id` directly (after a sync): wait for the answer, then leave it to the
    /// next sync.
    pub fn on_asked(&mut self, id: ChatId, from: ConnId, now: Time) {
        if self.missing.len() < MAX_MISSING || self.missing.contains_key(&id) {
            let m = Missing { announcers: vec![from], due: now + self.want_timeout, asked: 1, kind: Requested::Sync };
            self.missing.insert(id, m);
        }
    }

    /// The chat arrived; says whether and why we had asked for it.
    pub fn on_received(&mut self, id: &ChatId) -> Requested {
        self.take_received(id).0
    }

    /// `on_received`, also handing back who announced the chat (what `announcers` says before):
    /// one search, and the list moved rather than copied. Nothing is missing most of the time.
    pub fn take_received(&mut self, id: &ChatId) -> (Requested, Vec<ConnId>) {
        if self.missing.is_empty() {
            return (Requested::No, Vec::new());
        }
        let taken = match self.missing.remove(id) {
            Some(m) => (if m.asked > 0 { m.kind } else { Requested::No }, m.announcers),
            None => (Requested::No, Vec::new()),
        };
        self.shed_missing();
        taken
    }

    /// An emptied `BTreeMap` keeps its root leaf, 11 slots of `Missing` (over 600 bytes). Nothing is
    /// missing most of the time, and a simulator holds thousands of nodes: give it back.
    fn shed_missing(&mut self) {
        if self.missing.is_empty() {
            self.missing = BTreeMap::new();
        }
    }

    /// Requests due at `now`. Each missing id is asked of its announcers in turn; once all were
    /// asked it is dropped and left to anti-entropy. Grafting makes the link eager here at once.
    pub fn poll_wants(&mut self, now: Time) -> Vec<Want> {
        let mut wants = Vec::new();
        let mut done = Vec::new();
        for (id, m) in self.missing.iter_mut().filter(|(_, m)| m.due <= now) {
            if m.asked >= m.announcers.len() {
                done.push(*id);
                continue;
            }
            let graft = m.kind == Requested::Graft;
            wants.push(Want { conn: m.announcers[m.asked], id: *id, graft });
            m.asked += 1;
            m.due = now + self.want_timeout;
        }
        for id in done {
            self.missing.remove(&id);
        }
        self.shed_missing();
        for w in wants.iter().filter(|w| w.graft) {
            self.graft(w.conn);
        }
        wants
    }

    pub fn next_deadline(&self) -> Option<Time> {
        self.missing.values().map(|m| m.due).min()
    }

    pub fn missing_len(&self) -> usize {
        self.missing.len()
    }

    pub fn eager_len(&self) -> usize {
        self.eager.len()
    }
}

#[cfg(feature = "prefetch")]
impl Gossip {
    /// The neighbour tables a chat is forwarded by (see [`crate::memory`]).
    pub(crate) fn memory(&self, f: crate::memory::Regions<'_>) {
        for (first, _) in self.eager.iter().take(1) {
            f((first as *const ConnId).cast(), self.eager.len() * size_of::<(ConnId, f32)>());
        }
        for (first, _) in self.lazy.iter().take(1) {
            f((first as *const ConnId).cast(), self.lazy.len() * size_of::<(ConnId, ())>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gossip(tree: bool) -> Gossip {
        Gossip::new(3, 2, Duration::from_millis(100), Duration::from_secs(1), tree)
    }

    fn with_peers(tree: bool, n: u64) -> Gossip {
        let mut g = gossip(tree);
        for c in 0..n {
            g.on_peer_up(ConnId(c), false);
        }
        g
    }

    #[test]
    fn links_start_eager_up_to_fanout() {
        let mut g = gossip(true);
        assert!(g.on_peer_up(ConnId(0), false));
        assert!(g.on_peer_up(ConnId(1), false));
        assert!(g.on_peer_up(ConnId(2), false));
        assert!(!g.on_peer_up(ConnId(3), false));
        // Surplus links start lazy, unless there is no eager link at all.
        let mut h = gossip(true);
        assert!(h.on_peer_up(ConnId(0), true));
        assert!(!h.on_peer_up(ConnId(1), true));

        assert_eq!(g.eager_len(), 3);
    }

    #[test]
    fn tree_targets_exclude_sender_and_respect_ttl() {
        let g = with_peers(true, 10);
        let mut rng = Rng::new(1);
        let t = g.targets(&mut rng, Some(ConnId(1)), 5, &[], |_| false);
        assert_eq!(t.eager(), [ConnId(0), ConnId(2)]);
        assert_eq!(t.lazy().len(), 2);
        assert!(t.lazy().iter().all(|c| c.0 >= 3));
        let spent = g.targets(&mut rng, None, 0, &[], |_| false);
        assert!(spent.eager().is_empty());
        assert_eq!(spent.lazy().len(), 2);
    }

    #[test]
    fn announcements_join_waiting_batches_and_skip_holders() {
        let g = with_peers(true, 10); // eager 0..3, lazy 3..10; lazy_fanout 2
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            let t = g.targets(&mut rng, None, 5, &[], |c| c == ConnId(7) || c == ConnId(9));
            assert_eq!(sorted(t.lazy().to_vec()), vec![ConnId(7), ConnId(9)]);
            let t = g.targets(&mut rng, None, 5, &[], |c| c == ConnId(8));
            assert!(t.lazy().contains(&ConnId(8)) && t.lazy().len() == 2);
            let t = g.targets(&mut rng, None, 5, &[ConnId(1), ConnId(8)], |c| c == ConnId(8));
            assert_eq!(t.eager(), [ConnId(0), ConnId(2)], "a holder gets nothing pushed");
            assert!(!t.lazy().contains(&ConnId(8)) && t.lazy().len() == 2, "nor announced");
        }
    }

    /// Beyond what a `Targets` holds in place, the same rules.
    #[test]
    fn many_neighbours_are_chosen_alike() {
        for tree in [true, false] {
            let g = with_peers(tree, INLINE_TARGETS as u64 + 10);
            let mut rng = Rng::new(4);
            let t = g.targets(&mut rng, Some(ConnId(1)), 5, &[ConnId(2)], |c| c.0 % 5 == 0);
            let all: Vec<ConnId> = t.eager().iter().chain(t.lazy()).copied().collect();
            let mut distinct = sorted(all.clone());
            distinct.dedup();
            assert_eq!(distinct.len(), all.len());
            assert!(!all.contains(&ConnId(1)) && !all.contains(&ConnId(2)));
            // Eager 0..3 (less the sender and the holder), two lazy ones with batches waiting;
            // without the tree, three of them all.
            let expected = if tree { (1, 2) } else { (3, 0) };
            assert_eq!((t.eager().len(), t.lazy().len()), expected);
            assert!(!tree || t.lazy().iter().all(|c| c.0 % 5 == 0));
        }
    }

    fn sorted(mut v: Vec<ConnId>) -> Vec<ConnId> {
        v.sort();
        v
    }

    #[test]
    fn plain_push_picks_fanout_random_peers() {
        let g = with_peers(false, 10);
        let mut rng = Rng::new(1);
        let t = g.targets(&mut rng, Some(ConnId(3)), 5, &[], |_| false);
        assert_eq!((t.eager().len(), t.lazy().len()), (3, 0));
        assert!(!t.eager().contains(&ConnId(3)));
        assert!(g.targets(&mut rng, None, 0, &[], |_| false).eager().is_empty());
    }

    #[test]
    fn prune_and_graft_move_links() {
        let mut g = with_peers(true, 4);
        g.prune(ConnId(0));
        assert!(!g.is_eager(ConnId(0)));
        g.graft(ConnId(0));
        assert!(g.is_eager(ConnId(0)));
    }

    #[test]
    fn a_link_is_pruned_when_it_mostly_brings_duplicates() {
        let mut g = with_peers(true, 3);
        // A useful link survives an occasional lost race.
        for _ in 0..5 {
            g.on_first(ConnId(0));
            assert!(!g.on_duplicate(ConnId(0)));
        }
        assert!(g.is_eager(ConnId(0)));
        // A fresh link bringing only duplicates goes on the third.
        assert!(!g.on_duplicate(ConnId(1)));
        assert!(!g.on_duplicate(ConnId(1)));
        assert!(g.on_duplicate(ConnId(1)));
        assert!(!g.is_eager(ConnId(1)));
        assert!(!g.on_duplicate(ConnId(1)), "a lazy link is not pruned twice");
    }

    #[test]
    fn losing_every_eager_link_grafts_a_lazy_one() {
        let mut g = with_peers(true, 5);
        let mut rng = Rng::new(3);
        assert_eq!(g.on_peer_down(ConnId(0), &mut rng), None);
        assert_eq!(g.on_peer_down(ConnId(1), &mut rng), None);
        let grafted = g.on_peer_down(ConnId(2), &mut rng).expect("a lazy link is grafted");
        assert!(g.is_eager(grafted));
    }

    #[test]
    fn lazy_repair_grafts_each_announcer_in_turn_then_gives_up() {
        let mut g = with_peers(true, 5);
        let id = ChatId::new_v7(1, &[0; 10]);
        let t0 = Time::from_millis(1000);
        g.on_ihave(id, ConnId(3), t0);
        g.on_ihave(id, ConnId(4), t0);
        assert!(g.poll_wants(t0).is_empty());
        assert_eq!(g.next_deadline(), Some(t0 + Duration::from_millis(100)));
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(g.poll_wants(t1), vec![Want { conn: ConnId(3), id, graft: true }]);
        assert!(g.is_eager(ConnId(3)));
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(g.poll_wants(t2), vec![Want { conn: ConnId(4), id, graft: true }]);
        assert!(g.poll_wants(t2 + Duration::from_secs(1)).is_empty());
        assert_eq!(g.missing_len(), 0);
    }

    #[test]
    fn arrival_cancels_and_says_why_it_was_asked() {
        let mut g = gossip(true);
        let id = ChatId::new_v7(1, &[0; 10]);
        g.on_ihave(id, ConnId(1), Time::ZERO);
        assert_eq!(g.on_received(&id), Requested::No);
        g.on_asked(id, ConnId(1), Time::ZERO);
        assert_eq!(g.on_received(&id), Requested::Sync);
        g.on_ihave(id, ConnId(1), Time::ZERO);
        g.poll_wants(Time::from_millis(100));
        assert_eq!(g.on_received(&id), Requested::Graft);
        assert_eq!(g.next_deadline(), None);
    }
}
