//! The address book: whom we know (bootstrap, peer exchange, inbound and restored addresses), and
//! when to dial them.
//!
//! Rules, all here so they can be read in one place:
//! - A failed dial doubles the wait before the next one: `base * 2^failures`, capped at `max`
//!   ([`BOOTSTRAP_BACKOFF_MAX`] for a bootstrap address), times a random factor in [0.5, 1.5) so
//!   that nodes that lost the same peer do not retry in lockstep.
//! - Addresses learned by peer exchange that were never reached and failed [`FORGET_AFTER_FAILURES`]
//!   times are forgotten (stale peer cleanup). Bootstrap addresses are never forgotten.
//! - The book holds at most `cap` addresses; a new one replaces the worst entry learned by exchange
//!   (never reached, then most failures; at random among equals). A book full of addresses that
//!   all answered keeps a reservoir sample of those offered since it filled (Vitter's algorithm
//!   R, see [`RESERVOIR_WINDOW`]), so a bootstrap node refers a crowd across everyone who came,
//!   not to the last few arrivals or to the lowest addresses.
//! - Dials go to the addresses that failed least, at random among equals.
//! - A banned address is not dialed until its ban ends (see `AddressBook::ban`).
//!
//! The book is sized for a simulator running a hundred thousand nodes: an IPv4 address costs 12
//! bytes (address, failures, flags, next attempt) in a vector sorted by address, so lookups are a
//! binary search and iteration is in address order, the same on every run. The rare extras (the
//! first 8 bytes of the identity key an address answered with, a ban, a next attempt too far off)
//! live in small side tables, flagged in the entry.

use core::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use crate::identity::PublicKey;
use crate::random::Rng;
use crate::time::Time;

pub const FORGET_AFTER_FAILURES: u8 = 6;

/// The longest wait before a bootstrap address is dialed again, however often it failed. A
/// bootstrap node with every handshake slot taken refuses a newcomer at once (and cheaply: no
/// handshake), and a newcomer that knows no one else has nothing better to do than to try again;
/// with the full `backoff_max` (60 s, times up to 1.5) the last of 100,000 simulated nodes
/// arriving through one bootstrap node waited over a minute after the crowd had been served, with
/// the bootstrap node idle. Other addresses, fewer failures first, are still dialed before it.
pub const BOOTSTRAP_BACKOFF_MAX: Duration = Duration::from_secs(8);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Source {
    Bootstrap,
    /// Given by the user (`connect -a`, or a `Connect` command).
    Manual,
    /// Remembered from an earlier run (the CLI's database).
    Restored,
    /// Learned from a `PeerResponse`.
    Exchange,
    /// A peer that connected to us and told us its listen port.
    Inbound,
}

impl Source {
    const ALL: [Source; 5] = [Source::Bootstrap, Source::Manual, Source::Restored, Source::Exchange, Source::Inbound];
}

/// What the book knows about one address (a copy; the stored form is packed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub source: Source,
    /// Failed dials or dropped connections since the last success, saturating at 255.
    pub failures: u8,
    pub next_attempt: Time,
    /// The address was reached at least once (a handshake completed, or it announced itself).
    pub reached: bool,
    /// The address turned out to be this node itself.
    pub is_self: bool,
}

// Flag bits of a stored entry; the low three hold the `Source`.
const SOURCE_MASK: u8 = 0b111;
const REACHED: u8 = 1 << 3;
const IS_SELF: u8 = 1 << 4;
const HAS_PEER: u8 = 1 << 5;
const BANNED: u8 = 1 << 6;
/// The next attempt is too far from the book's epoch for a slot: it is in the `far` side table.
const FAR: u8 = 1 << 7;

/// Past this much time since the epoch, the next update moves the epoch up to now, so that the
/// next attempts set from now on (now, or now plus a backoff) fit a slot's 32 bits.
const REBASE_AFTER_US: u64 = 1 << 31;

/// An IPv4 address and port as six big-endian bytes, so byte order is address order.
#[derive(Clone, Copy, PartialEq, Eq)]
struct V4([u8; 6]);

/// Byte order, compared as one number: every lookup in the book is a binary search over these,
/// and comparing the six bytes one by one was most of the cost of adding an address.
impl Ord for V4 {
    fn cmp(&self, other: &V4) -> core::cmp::Ordering {
        self.number().cmp(&other.number())
    }
}

impl PartialOrd for V4 {
    fn partial_cmp(&self, other: &V4) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

trait Key: Copy + Ord {
    fn addr(self) -> SocketAddr;
}

impl Key for V4 {
    fn addr(self) -> SocketAddr {
        let [a, b, c, d, p0, p1] = self.0;
        SocketAddr::from(([a, b, c, d], u16::from_be_bytes([p0, p1])))
    }
}

impl V4 {
    /// The six bytes as a big-endian number, which orders as the bytes do.
    fn number(self) -> u64 {
        let [a, b, c, d, p0, p1] = self.0;
        u64::from_be_bytes([0, 0, a, b, c, d, p0, p1])
    }

    fn new(a: SocketAddrV4) -> V4 {
        let [a0, a1, a2, a3] = a.ip().octets();
        let [p0, p1] = a.port().to_be_bytes();
        V4([a0, a1, a2, a3, p0, p1])
    }
}

impl Key for SocketAddrV6 {
    fn addr(self) -> SocketAddr {
        SocketAddr::V6(self)
    }
}

/// One stored entry: 12 bytes for an IPv4 address.
#[derive(Clone, Copy)]
struct Slot<K> {
    key: K,
    failures: u8,
    flags: u8,
    /// The next attempt, in microseconds after the book's epoch; 0 also stands for any time before
    /// it. Every epoch was once "now", so a time before it is past, and "past" is all a dial
    /// decision asks of it: exact for every decision, in 4 bytes instead of a `Time`'s 8.
    next: u32,
}

impl<K: Key> Slot<K> {
    fn source(&self) -> Source {
        Source::ALL[(self.flags & SOURCE_MASK) as usize]
    }

    fn set_source(&mut self, s: Source) {
        self.flags = (self.flags & !SOURCE_MASK) | s as u8;
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The first 8 bytes of the identity key an address answered with: all the dial round needs to
/// recognise a connected peer behind another address. A different key with the same first bytes
/// would only skip one dial, and finding one takes about 2^64 tries; 14 bytes an entry with its
/// IPv4 address instead of 38, in a side table of a few dozen in every node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct KeyTag([u8; 8]);

impl KeyTag {
    pub fn of(key: &PublicKey) -> KeyTag {
        let mut tag = [0; 8];
        tag.copy_from_slice(&key.0[..8]);
        KeyTag(tag)
    }
}

/// The entries of one address family, sorted by address, with their side tables.
struct Table<K> {
    slots: Vec<Slot<K>>,
    /// The tag of the identity key each flagged address last answered with, sorted by address. Of
    /// the key rather than of its peer id: the node checks it against its connected peers, whose
    /// keys it holds, before every dial, and hashing all of theirs for that was 2% of the
    /// simulator's instructions.
    peers: Vec<(K, KeyTag)>,
    /// Until when each flagged address is banned, sorted by address.
    bans: Vec<(K, Time)>,
    /// The next attempt of each `FAR` address (over an hour off: only with a huge backoff).
    far: Vec<(K, Time)>,
}

impl<K: Key> Table<K> {
    fn new() -> Table<K> {
        Table { slots: Vec::new(), peers: Vec::new(), bans: Vec::new(), far: Vec::new() }
    }

    fn entry(&self, s: &Slot<K>, epoch: Time) -> Entry {
        Entry {
            source: s.source(),
            failures: s.failures,
            next_attempt: self.next_attempt(s, epoch),
            reached: s.has(REACHED),
            is_self: s.has(IS_SELF),
        }
    }

    /// Whether the next attempt of `s` has come. Inline, unlike `next_attempt`: a dial round asks
    /// it of every entry, and only a `FAR` one needs the side table.
    #[inline(always)]
    fn due(&self, s: &Slot<K>, epoch: Time, now: Time) -> bool {
        if s.has(FAR) {
            return self.next_attempt(s, epoch) <= now;
        }
        epoch.as_micros() + u64::from(s.next) <= now.as_micros()
    }

    fn next_attempt(&self, s: &Slot<K>, epoch: Time) -> Time {
        if s.has(FAR) {
            let i = self.far.binary_search_by(|(a, _)| a.cmp(&s.key)).expect("a far entry has its time");
            return self.far[i].1;
        }
        Time::from_micros(epoch.as_micros() + u64::from(s.next))
    }

    /// Sets the next attempt of the slot at `i`. The usual case, a slot not `FAR` given a time
    /// within its reach, is a store here; only the rest goes through the side table.
    #[inline(always)]
    fn set_next_attempt(&mut self, i: usize, t: Time, epoch: Time) {
        let s = &mut self.slots[i];
        if !s.has(FAR) {
            if let Ok(d) = u32::try_from(t.as_micros().saturating_sub(epoch.as_micros())) {
                s.next = d;
                return;
            }
        }
        self.set_next_attempt_far(i, t, epoch);
    }

    #[inline(never)]
    fn set_next_attempt_far(&mut self, i: usize, t: Time, epoch: Time) {
        let s = &mut self.slots[i];
        let k = s.key;
        if s.has(FAR) {
            s.flags &= !FAR;
            side_remove(&mut self.far, k);
        }
        match u32::try_from(t.as_micros().saturating_sub(epoch.as_micros())) {
            Ok(d) => self.slots[i].next = d,
            Err(_) => {
                self.slots[i].flags |= FAR;
                self.slots[i].next = 0;
                side_set(&mut self.far, k, t);
            }
        }
    }

    /// Re-expresses every next attempt from `old` as from `new` (later): those before `new` become
    /// 0, which they may, being past.
    fn rebase(&mut self, old: Time, new: Time) {
        let shift = new.as_micros() - old.as_micros();
        for s in self.slots.iter_mut().filter(|s| !s.has(FAR)) {
            s.next = u32::try_from(u64::from(s.next).saturating_sub(shift)).expect("only gets smaller");
        }
    }

    fn find(&self, k: K) -> Result<usize, usize> {
        self.slots.binary_search_by(|s| s.key.cmp(&k))
    }

    fn get_mut(&mut self, k: K) -> Option<&mut Slot<K>> {
        self.find(k).ok().map(|i| &mut self.slots[i])
    }

    fn remove_at(&mut self, i: usize) {
        let s = self.slots.remove(i);
        let k = s.key;
        if s.has(HAS_PEER) {
            side_remove(&mut self.peers, k);
        }
        if s.has(BANNED) {
            side_remove(&mut self.bans, k);
        }
        if s.has(FAR) {
            side_remove(&mut self.far, k);
        }
    }

    fn peer(&self, s: &Slot<K>) -> Option<KeyTag> {
        if !s.has(HAS_PEER) {
            return None;
        }
        self.peers.binary_search_by(|(a, _)| a.cmp(&s.key)).ok().map(|i| self.peers[i].1)
    }

    fn banned_at(&self, s: &Slot<K>, now: Time) -> bool {
        s.has(BANNED) && self.bans.binary_search_by(|(a, _)| a.cmp(&s.key)).is_ok_and(|i| self.bans[i].1 > now)
    }

    fn ban_until(&self, k: K) -> Option<Time> {
        self.bans.binary_search_by(|(a, _)| a.cmp(&k)).ok().map(|i| self.bans[i].1)
    }

    /// `AddressBook::dial_candidates` over this table: offers each ready address to `skip` and
    /// keeps the best `n` (failures, draw) in `best`, sorted. An entry with more failures than the
    /// worst of a full `best` is passed over before its address is built or its peer looked up.
    fn dial_pass(
        &self,
        epoch: Time,
        now: Time,
        n: usize,
        best: &mut Vec<(u8, u64, SocketAddr)>,
        rng: &mut Rng,
        skip: &mut impl FnMut(&SocketAddr, Option<KeyTag>) -> bool,
    ) {
        for s in &self.slots {
            if s.has(IS_SELF) || !self.due(s, epoch, now) || self.banned_at(s, now) {
                continue;
            }
            let failures = s.failures;
            if best.len() == n && failures > best[n - 1].0 {
                continue;
            }
            let addr = s.key.addr();
            if skip(&addr, self.peer(s)) {
                continue;
            }
            let key = (failures, rng.u64());
            if best.len() == n {
                if key >= (best[n - 1].0, best[n - 1].1) {
                    continue;
                }
                best.pop();
            }
            let at = best.partition_point(|b| (b.0, b.1) < key);
            best.insert(at, (key.0, key.1, addr));
        }
    }

    /// `AddressBook::sample_for_exchange` over this table, `seen` counting the addresses offered
    /// so far: the first `n` fill `out`, each later one takes a random place or none, one draw
    /// each. The address is only built where it is kept.
    fn sample_pass(&self, n: usize, rng: &mut Rng, now: Time, out: &mut Vec<SocketAddr>, seen: &mut usize) {
        let good = |s: &Slot<K>| s.flags & (REACHED | IS_SELF) == REACHED && !self.banned_at(s, now);
        let mut slots = self.slots.iter();
        while out.len() < n {
            let Some(s) = slots.next() else { return };
            if good(s) {
                out.push(s.key.addr());
                *seen += 1;
            }
        }
        // `out` is full: `j < n` is `j < out.len()`.
        for s in slots {
            if good(s) {
                let j = rng.below(*seen + 1);
                if let Some(o) = out.get_mut(j) {
                    *o = s.key.addr();
                }
                *seen += 1;
            }
        }
    }
}

fn side_set<K: Ord, V>(side: &mut Vec<(K, V)>, k: K, v: V) {
    match side.binary_search_by(|(a, _)| a.cmp(&k)) {
        Ok(i) => side[i].1 = v,
        Err(i) => {
            // Grows by one: a few dozen peer ids of 38 bytes each in every node, added one
            // connection at a time, where doubling left a quarter of the room unused.
            side.reserve_exact(1);
            side.insert(i, (k, v));
        }
    }
}

fn side_remove<K: Ord, V>(side: &mut Vec<(K, V)>, k: K) {
    if let Ok(i) = side.binary_search_by(|(a, _)| a.cmp(&k)) {
        side.remove(i);
    }
}

/// The worst eviction score in `slots` (see `evict_score`; 0 if none may go) and how many slots
/// have it. Plain numbers kept with a compare or two, as every slot of a full book is scored for
/// every address it is offered.
fn worst_slots<K>(slots: &[Slot<K>], floor: u8) -> (u32, usize) {
    let mut worst = (0u32, 0usize);
    for s in slots {
        let score = evict_score(s, floor);
        if score > worst.0 {
            worst = (score, 1);
        } else if score != 0 && score == worst.0 {
            worst.1 += 1;
        }
    }
    worst
}

/// The index of the `n`-th slot (from 0) whose eviction score is `score`.
fn nth_slot<K>(slots: &[Slot<K>], floor: u8, score: u32, n: usize) -> usize {
    let mut seen = 0;
    for (i, s) in slots.iter().enumerate() {
        if evict_score(s, floor) == score {
            if seen == n {
                return i;
            }
            seen += 1;
        }
    }
    unreachable!("`worst_slots` counted {} slots of score {score}", seen + 1)
}

/// How readily a slot is given up for a new address of a source at `floor` or weaker: 0 never
/// (more trusted than the newcomer), else higher the sooner: never reached first, then most
/// failures. [`GOOD_SCORE`] is a reached address that has not failed since.
#[inline(always)]
fn evict_score<K>(s: &Slot<K>, floor: u8) -> u32 {
    if s.flags & SOURCE_MASK >= floor {
        GOOD_SCORE + ((u32::from(s.flags & REACHED == 0) << 8) | u32::from(s.failures))
    } else {
        0
    }
}

const GOOD_SCORE: u32 = 1;

/// Runs `$body` with `$t` bound to the table for `$addr`'s family and `$k` to its key there.
macro_rules! with_table {
    ($self:ident . $tables:ident, $addr:expr, |$t:ident, $k:ident| $body:expr) => {
        match $addr {
            SocketAddr::V4(a) => {
                let $t = &$self.$tables.0;
                let $k = V4::new(a);
                $body
            }
            SocketAddr::V6(a) => {
                let $t = &$self.$tables.1;
                let $k = a;
                $body
            }
        }
    };
    (mut $self:ident . $tables:ident, $addr:expr, |$t:ident, $k:ident| $body:expr) => {
        match $addr {
            SocketAddr::V4(a) => {
                let $t = &mut $self.$tables.0;
                let $k = V4::new(a);
                $body
            }
            SocketAddr::V6(a) => {
                let $t = &mut $self.$tables.1;
                let $k = a;
                $body
            }
        }
    };
}

/// How many entries a table of the book grows by (see `AddressBook::add`).
const GROW_SLOTS: usize = 32;

/// A book full of good addresses (all reached, none failing) takes the `k`-th one offered since
/// it filled with probability `cap / (cap + k)`, replacing one at random: a uniform sample of all
/// of them (a reservoir). The count stops at this many times `cap`, so the book never freezes:
/// a new address still gets in with probability at least 1/65, and an old one is replaced after
/// about `RESERVOIR_WINDOW * cap` offers.
///
/// Why: a bootstrap node's book is where it refers newcomers, and it fills with the newcomers
/// themselves (each inbound peer's listen address). Replacing the last entry in address order, as
/// before, kept the lowest addresses for ever, and replacing the newest would keep only the last
/// arrivals: either way every newcomer of a crowd was sent to the same few hundred nodes, which
/// filled up, or to nodes that joined a moment before it, which strings the overlay out in arrival
/// order (hops grow with the crowd). A uniform sample of the arrivals gives each newcomer
/// neighbours from the whole network, as HyParView's random walks do.
pub const RESERVOIR_WINDOW: u64 = 64;

pub struct AddressBook {
    /// IPv4 entries, then IPv6 ones: together in `SocketAddr` order.
    tables: (Table<V4>, Table<SocketAddrV6>),
    /// What slots' next attempts count from (see `Slot::next`).
    epoch: Time,
    cap: usize,
    backoff_base: Duration,
    backoff_max: Duration,
    /// Good addresses offered since the book was full of good addresses (see [`RESERVOIR_WINDOW`]).
    offers: u64,
    /// A SplitMix64 state for the book's own choices, secret to the node (see `seeded`): which
    /// entry goes when a new one comes is not for a peer to predict and steer.
    draws: u64,
}

impl AddressBook {
    pub fn new(cap: usize, backoff_base: Duration, backoff_max: Duration) -> AddressBook {
        AddressBook {
            tables: (Table::new(), Table::new()),
            epoch: Time::ZERO,
            cap,
            backoff_base,
            backoff_max,
            offers: 0,
            draws: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The same book with its choices drawn from `seed` (a node's own random number).
    pub fn seeded(mut self, seed: u64) -> AddressBook {
        self.draws = seed;
        self
    }

    /// A number below `n` (> 0), from the book's own SplitMix64 stream: 8 bytes of state where
    /// the node's generator is a hundred, in every node of a large simulation.
    fn below(&mut self, n: u64) -> u64 {
        self.draws = self.draws.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.draws;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((u128::from(z ^ (z >> 31)) * u128::from(n)) >> 64) as u64
    }

    pub fn len(&self) -> usize {
        self.tables.0.slots.len() + self.tables.1.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<Entry> {
        with_table!(self.tables, *addr, |t, k| t.find(k).ok().map(|i| t.entry(&t.slots[i], self.epoch)))
    }

    /// The tag of the identity key the address answered with when last reached.
    pub fn peer_tag(&self, addr: &SocketAddr) -> Option<KeyTag> {
        with_table!(self.tables, *addr, |t, k| t.find(k).ok().and_then(|i| t.peer(&t.slots[i])))
    }

    /// Until when the address is banned (possibly already past).
    pub fn banned_until(&self, addr: &SocketAddr) -> Option<Time> {
        with_table!(self.tables, *addr, |t, k| t.ban_until(k))
    }

    /// Every entry, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, Entry)> + '_ {
        let (t4, t6, epoch) = (&self.tables.0, &self.tables.1, self.epoch);
        let v4 = t4.slots.iter().map(move |s| (s.key.addr(), t4.entry(s, epoch)));
        let v6 = t6.slots.iter().map(move |s| (s.key.addr(), t6.entry(s, epoch)));
        v4.chain(v6)
    }

    /// Adds an address if unknown (an address already known keeps its history, but a stronger
    /// source, e.g. a bootstrap flag, wins). Returns whether it was added.
    pub fn add(&mut self, addr: SocketAddr, source: Source, now: Time) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        self.advance_epoch(now);
        // Where it goes, from the one search that also finds it if known.
        let free = with_table!(mut self.tables, addr, |t, k| match t.find(k) {
            Ok(i) => {
                let s = &mut t.slots[i];
                s.set_source(s.source().min(source));
                None
            }
            Err(i) => Some(i),
        });
        let Some(mut at) = free else { return false };
        if self.len() >= self.cap {
            if !self.evict_one(source) {
                return false;
            }
            // The evicted entry may have been before it.
            at = with_table!(self.tables, addr, |t, k| t.find(k).unwrap_err());
        }
        let epoch = self.epoch;
        // Grows by at most `GROW_SLOTS` at a time, never past the cap: doubling left up to half
        // of every node's book unused (a book of 140 addresses held room for 256). Each insert
        // moves the entries after it anyway, so a copy every `GROW_SLOTS` inserts costs little.
        let room = self.cap.saturating_sub(self.len()).clamp(1, GROW_SLOTS);
        with_table!(mut self.tables, addr, |t, k| {
            if t.slots.len() == t.slots.capacity() {
                t.slots.reserve_exact(room);
            }
            t.slots.insert(at, Slot { key: k, failures: 0, flags: source as u8, next: 0 });
            // Now is within a slot's reach of the epoch `advance_epoch` just moved: the inline store.
            t.set_next_attempt(at, now, epoch);
        });
        true
    }

    /// Moves the epoch up to `now` once it is far behind (see [`REBASE_AFTER_US`]).
    fn advance_epoch(&mut self, now: Time) {
        if now.as_micros().saturating_sub(self.epoch.as_micros()) > REBASE_AFTER_US {
            self.tables.0.rebase(self.epoch, now);
            self.tables.1.rebase(self.epoch, now);
            self.epoch = now;
        }
    }

    /// Makes room by dropping the least useful exchange-learned entry (never reached, most
    /// failures; one at random among equals); never drops anything more trusted than what would
    /// replace it. When every candidate is as good as an entry gets (reached, no failure), the
    /// newcomer only gets in with the reservoir's odds (see [`RESERVOIR_WINDOW`]). Returns whether
    /// there is room now. It runs for every new address a full book is offered, so it reads the
    /// packed slots directly rather than decoding each entry.
    fn evict_one(&mut self, incoming: Source) -> bool {
        let floor = incoming.max(Source::Exchange) as u8;
        let (w4, n4) = worst_slots(&self.tables.0.slots, floor);
        let (w6, n6) = worst_slots(&self.tables.1.slots, floor);
        let worst = w4.max(w6);
        if worst == 0 {
            return false;
        }
        let ties = if w4 == worst { n4 } else { 0 } + if w6 == worst { n6 } else { 0 };
        if worst == GOOD_SCORE {
            self.offers = (self.offers + 1).min(RESERVOIR_WINDOW * self.cap as u64);
            if self.below(self.cap as u64 + self.offers) >= self.cap as u64 {
                return false;
            }
        }
        let mut pick = self.below(ties as u64) as usize;
        if w4 == worst {
            if pick < n4 {
                let i = nth_slot(&self.tables.0.slots, floor, worst, pick);
                self.tables.0.remove_at(i);
                return true;
            }
            pick -= n4;
        }
        let i = nth_slot(&self.tables.1.slots, floor, worst, pick);
        self.tables.1.remove_at(i);
        true
    }

    /// Addresses worth dialing now, at most `n`: those that failed least first, random among
    /// equals. (Preferring addresses that worked before would keep a newcomer redialing full
    /// bootstrap nodes instead of the peers they referred it to.) `skip` sees each address ready
    /// to dial, in address order (the node's check relies on it), and the tag of the identity key
    /// it last answered with.
    ///
    /// One pass, keeping only the best `n`: each ready address gets a random draw, and the `n`
    /// smallest (failures, draw) win, which is a uniform random order among equals.
    pub fn dial_candidates(
        &self,
        now: Time,
        n: usize,
        rng: &mut Rng,
        mut skip: impl FnMut(&SocketAddr, Option<KeyTag>) -> bool,
    ) -> Vec<SocketAddr> {
        if n == 0 {
            return Vec::new();
        }
        let mut best: Vec<(u8, u64, SocketAddr)> = Vec::with_capacity(n.min(self.len()));
        let (v4, v6, epoch) = (&self.tables.0, &self.tables.1, self.epoch);
        v4.dial_pass(epoch, now, n, &mut best, rng, &mut skip);
        v6.dial_pass(epoch, now, n, &mut best, rng, &mut skip);
        best.into_iter().map(|(_, _, a)| a).collect()
    }

    /// A dial is in flight: do not pick the address again until it resolves.
    pub fn on_dial(&mut self, addr: &SocketAddr, now: Time) {
        self.advance_epoch(now);
        let (until, epoch) = (now + self.backoff_max, self.epoch);
        with_table!(mut self.tables, *addr, |t, k| if let Ok(i) = t.find(k) {
            t.set_next_attempt(i, until, epoch);
        })
    }

    pub fn on_connected(&mut self, addr: &SocketAddr, peer: PublicKey, now: Time) {
        self.advance_epoch(now);
        let epoch = self.epoch;
        with_table!(mut self.tables, *addr, |t, k| if let Ok(i) = t.find(k) {
            let s = &mut t.slots[i];
            s.failures = 0;
            s.flags |= REACHED | HAS_PEER;
            t.set_next_attempt(i, now, epoch);
            side_set(&mut t.peers, k, KeyTag::of(&peer));
        })
    }

    pub fn touch(&mut self, addr: &SocketAddr) {
        with_table!(mut self.tables, *addr, |t, k| if let Some(s) = t.get_mut(k) {
            s.flags |= REACHED;
        })
    }

    /// A dial failed or an established connection dropped: back off, and forget addresses that
    /// never worked. Returns the time of the next attempt, if the address is kept.
    pub fn on_failure(&mut self, addr: &SocketAddr, now: Time, rng: &mut Rng) -> Option<Time> {
        self.advance_epoch(now);
        let (base, max, epoch) = (self.backoff_base, self.backoff_max, self.epoch);
        with_table!(mut self.tables, *addr, |t, k| {
            let i = t.find(k).ok()?;
            let s = &mut t.slots[i];
            s.failures = s.failures.saturating_add(1);
            if s.source() >= Source::Exchange && !s.has(REACHED) && s.failures >= FORGET_AFTER_FAILURES {
                t.remove_at(i);
                return None;
            }
            let exp = base.saturating_mul(1u32 << (s.failures - 1).min(16));
            let max = if s.source() == Source::Bootstrap { max.min(BOOTSTRAP_BACKOFF_MAX) } else { max };
            let wait = exp.min(max).mul_f64(0.5 + rng.unit());
            t.set_next_attempt(i, now + wait, epoch);
            Some(now + wait)
        })
    }

    pub fn ban(&mut self, addr: &SocketAddr, until: Time) {
        with_table!(mut self.tables, *addr, |t, k| if let Some(s) = t.get_mut(k) {
            s.flags |= BANNED;
            side_set(&mut t.bans, k, until);
        })
    }

    pub fn mark_self(&mut self, addr: &SocketAddr) {
        with_table!(mut self.tables, *addr, |t, k| if let Some(s) = t.get_mut(k) {
            s.flags |= IS_SELF;
        })
    }

    /// Addresses to share in a `PeerResponse`: ones we have reached, at most `n`, random (a
    /// reservoir sample, so nothing but the answer is allocated, and that once: a book that
    /// answers usually fills it).
    pub fn sample_for_exchange(&self, n: usize, rng: &mut Rng, now: Time) -> Vec<SocketAddr> {
        if n == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(n.min(self.len()));
        let mut seen = 0usize;
        self.tables.0.sample_pass(n, rng, now, &mut out, &mut seen);
        self.tables.1.sample_pass(n, rng, now, &mut out, &mut seen);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn book() -> AddressBook {
        AddressBook::new(4, Duration::from_millis(500), Duration::from_secs(60))
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = book();
        let mut rng = Rng::new(1);
        let now = Time::from_millis(1000);
        b.add(addr(1), Source::Bootstrap, now);
        let mut waits = Vec::new();
        for _ in 0..12 {
            let next = b.on_failure(&addr(1), now, &mut rng).unwrap();
            waits.push(next.since(now));
        }
        assert!(waits[0] >= Duration::from_millis(250) && waits[0] < Duration::from_millis(750));
        assert!(waits[3] >= Duration::from_secs(2) && waits[3] < Duration::from_secs(6));
        assert!(waits.iter().all(|w| *w < BOOTSTRAP_BACKOFF_MAX.mul_f64(1.5)), "{waits:?}");
        // A learned address waits up to the book's own cap.
        b.add(addr(2), Source::Exchange, now);
        b.touch(&addr(2));
        let waits: Vec<Duration> = (0..12).map(|_| b.on_failure(&addr(2), now, &mut rng).unwrap().since(now)).collect();
        assert!(waits[11] >= Duration::from_secs(30) && waits[11] < Duration::from_secs(90), "{waits:?}");
    }

    /// A book full of good addresses keeps a uniform sample of those offered: of 20,000 offered
    /// one by one (as a bootstrap node's inbound peers are), each fifth of the arrivals holds
    /// about a fifth of the book, not the first or the last few hundred.
    #[test]
    fn a_full_book_of_good_addresses_keeps_a_uniform_sample() {
        let cap = 256;
        let mut b = AddressBook::new(cap, Duration::from_millis(500), Duration::from_secs(60)).seeded(7);
        let a = |i: u32| SocketAddr::from((core::net::Ipv4Addr::from(0x0a00_0000 + i), 7000));
        let n = 20_000;
        for i in 0..n {
            if b.add(a(i), Source::Inbound, Time::ZERO) {
                b.on_connected(&a(i), PublicKey([1; 32]), Time::ZERO);
            }
        }
        assert_eq!(b.len(), cap);
        let mut fifths = [0usize; 5];
        for (addr, _) in b.iter() {
            let SocketAddr::V4(v4) = addr else { unreachable!() };
            fifths[((u32::from(*v4.ip()) - 0x0a00_0000) * 5 / n) as usize] += 1;
        }
        // 51 each on average; binomial spread.
        assert!(fifths.iter().all(|f| (30..75).contains(f)), "{fifths:?}");
    }

    #[test]
    fn unreachable_exchanged_addresses_are_forgotten_but_bootstrap_kept() {
        let mut b = book();
        let mut rng = Rng::new(1);
        let now = Time::ZERO;
        b.add(addr(1), Source::Bootstrap, now);
        b.add(addr(2), Source::Exchange, now);
        for _ in 0..FORGET_AFTER_FAILURES {
            b.on_failure(&addr(1), now, &mut rng);
            b.on_failure(&addr(2), now, &mut rng);
        }
        assert!(b.get(&addr(1)).is_some());
        assert!(b.get(&addr(2)).is_none());
    }

    #[test]
    fn cap_evicts_exchange_entries_only() {
        let mut b = book();
        let now = Time::ZERO;
        for p in 1..=4 {
            assert!(b.add(addr(p), Source::Bootstrap, now));
        }
        assert!(!b.add(addr(9), Source::Exchange, now));
        let mut b = book();
        b.add(addr(1), Source::Bootstrap, now);
        for p in 2..=4 {
            b.add(addr(p), Source::Exchange, now);
        }
        assert!(b.add(addr(9), Source::Manual, now));
        assert_eq!(b.len(), 4);
        assert!(b.get(&addr(1)).is_some());
    }

    /// The entry evicted is the least useful one: never reached before reached, then most
    /// failures, then one at random among equals, of either address family.
    #[test]
    fn eviction_takes_the_least_useful_entry() {
        let mut rng = Rng::new(1);
        let now = Time::ZERO;
        let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 7000));
        let mut gone = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let mut b = book().seeded(seed);
            for a in [addr(1), addr(2), addr(3), v6] {
                b.add(a, Source::Exchange, now);
            }
            assert!(b.add(addr(9), Source::Exchange, now));
            gone.extend([addr(1), addr(2), addr(3), v6].into_iter().filter(|a| b.get(a).is_none()));
        }
        assert_eq!(gone.len(), 4, "any of four equals may go: {gone:?}");
        // A failure makes an entry worse than its equals; a reached one is kept over both.
        let mut b = book();
        for p in 1..=4 {
            b.add(addr(p), Source::Exchange, now);
        }
        b.on_failure(&addr(2), now, &mut rng);
        b.on_connected(&addr(1), PublicKey([1; 32]), now);
        assert!(b.add(addr(10), Source::Exchange, now));
        assert!(b.get(&addr(2)).is_none());
        for p in 11..20 {
            assert!(b.add(addr(p), Source::Exchange, now));
            assert!(b.get(&addr(1)).is_some());
        }
    }

    #[test]
    fn candidates_skip_banned_self_and_waiting() {
        let mut b = book();
        let mut rng = Rng::new(2);
        let now = Time::from_millis(10);
        for p in 1..=4 {
            b.add(addr(p), Source::Manual, now);
        }
        b.ban(&addr(1), now + Duration::from_secs(10));
        b.mark_self(&addr(2));
        b.on_dial(&addr(3), now);
        assert_eq!(b.dial_candidates(now, 10, &mut rng, |_, _| false), vec![addr(4)]);
        assert!(b.dial_candidates(now, 10, &mut rng, |a, _| *a == addr(4)).is_empty());
    }

    #[test]
    fn candidates_are_offered_in_address_order() {
        let mut b = AddressBook::new(16, Duration::from_millis(500), Duration::from_secs(60));
        let mut rng = Rng::new(3);
        let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 1));
        for a in [addr(7), v6, addr(2), addr(300), addr(5)] {
            b.add(a, Source::Exchange, Time::ZERO);
        }
        let mut seen = Vec::new();
        let _ = b.dial_candidates(Time::ZERO, 2, &mut rng, |a, _| {
            seen.push(*a);
            false
        });
        assert_eq!(seen, vec![addr(2), addr(5), addr(7), addr(300), v6]);
    }

    #[test]
    fn entries_are_small() {
        assert_eq!(core::mem::size_of::<Slot<V4>>(), 12);
    }

    #[test]
    fn iteration_is_in_address_order_across_families() {
        let mut b = AddressBook::new(16, Duration::from_millis(500), Duration::from_secs(60));
        let v6 = |p: u16| SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], p));
        let mut added = vec![addr(300), v6(2), SocketAddr::from(([10, 0, 0, 1], 1)), addr(2), v6(1), addr(256)];
        for a in &added {
            assert!(b.add(*a, Source::Exchange, Time::ZERO));
        }
        added.sort();
        assert_eq!(b.iter().map(|(a, _)| a).collect::<Vec<_>>(), added);
        for a in &added {
            assert_eq!(b.get(a).map(|e| e.source), Some(Source::Exchange));
        }
    }

    #[test]
    fn side_tables_follow_their_entries() {
        let mut b = book();
        let mut rng = Rng::new(1);
        let peer = PublicKey([7; 32]);
        b.add(addr(1), Source::Exchange, Time::ZERO);
        b.on_connected(&addr(1), peer, Time::ZERO);
        b.ban(&addr(1), Time::from_millis(5));
        b.ban(&addr(9), Time::from_millis(5));
        assert_eq!(b.peer_tag(&addr(1)), Some(KeyTag::of(&peer)));
        assert_eq!(b.banned_until(&addr(1)), Some(Time::from_millis(5)));
        assert_eq!(b.banned_until(&addr(9)), None, "only known addresses are banned");
        let seen = std::cell::Cell::new(None);
        let _ = b.dial_candidates(Time::from_millis(10), 1, &mut rng, |_, p| {
            seen.set(p);
            false
        });
        assert_eq!(seen.get(), Some(KeyTag::of(&peer)));
        // Forgotten with its side entries: re-added, it starts afresh.
        with_table!(mut b.tables, addr(1), |t, k| if let Ok(i) = t.find(k) {
            t.remove_at(i)
        });
        assert!(b.add(addr(1), Source::Exchange, Time::ZERO));
        assert_eq!((b.peer_tag(&addr(1)), b.banned_until(&addr(1))), (None, None));
        assert!(b.tables.0.peers.is_empty() && b.tables.0.bans.is_empty());
    }

    /// Next attempts are exact however far off (a side table past a slot's reach) and however
    /// long the book lives (the epoch moves up); one long past reads as past.
    #[test]
    fn next_attempts_survive_long_backoffs_and_long_runs() {
        let hour = Duration::from_secs(3600);
        let mut b = AddressBook::new(16, Duration::from_secs(1), 5 * hour);
        let mut rng = Rng::new(1);
        let t0 = Time::from_millis(1_800_000_000_000);
        let ready = |b: &AddressBook, now: Time| {
            let mut rng = Rng::new(2);
            let mut c = b.dial_candidates(now, 16, &mut rng, |_, _| false);
            c.sort();
            c
        };
        b.add(addr(1), Source::Bootstrap, t0);
        b.add(addr(2), Source::Bootstrap, t0);
        b.on_dial(&addr(2), t0);
        assert_eq!(b.get(&addr(2)).unwrap().next_attempt, t0 + 5 * hour);
        assert_eq!(b.tables.0.far.len(), 1);
        assert_eq!(ready(&b, t0 + 5 * hour - Duration::from_micros(1)), vec![addr(1)]);
        assert_eq!(ready(&b, t0 + 5 * hour), vec![addr(1), addr(2)]);
        // Two hours on the epoch moves; what was set before is exact or past, as it was.
        let t1 = t0 + 2 * hour;
        let next = b.on_failure(&addr(1), t1, &mut rng).unwrap();
        assert_eq!(b.epoch, t1);
        assert_eq!(b.get(&addr(1)).unwrap().next_attempt, next);
        assert_eq!(b.get(&addr(2)).unwrap().next_attempt, t0 + 5 * hour);
        b.add(addr(3), Source::Bootstrap, t1);
        b.on_connected(&addr(2), PublicKey([7; 32]), t1);
        assert!(b.tables.0.far.is_empty());
        assert_eq!(ready(&b, t1), vec![addr(2), addr(3)]);
        assert_eq!(ready(&b, next), vec![addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn candidates_fewest_failures_first_random_among_equals() {
        let mut b = AddressBook::new(64, Duration::from_millis(500), Duration::from_secs(60));
        let mut rng = Rng::new(3);
        let now = Time::ZERO;
        for p in 1..=20 {
            b.add(addr(p), Source::Bootstrap, now);
        }
        // Ports 11..=20 failed once, 16..=20 twice; all are ready again later.
        for p in 11..=20 {
            b.on_failure(&addr(p), now, &mut rng);
        }
        for p in 16..=20 {
            b.on_failure(&addr(p), now, &mut rng);
        }
        let later = now + Duration::from_secs(100);
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let c = b.dial_candidates(later, 13, &mut rng, |_, _| false);
            assert_eq!(c.len(), 13);
            let fails: Vec<u8> = c.iter().map(|a| b.get(a).unwrap().failures).collect();
            assert!(fails.windows(2).all(|w| w[0] <= w[1]), "{fails:?}");
            assert_eq!(fails.iter().filter(|f| **f == 0).count(), 10);
            assert_eq!(fails.iter().filter(|f| **f == 1).count(), 3);
            firsts.insert(c[0]);
        }
        assert_eq!(firsts.len(), 10, "every untried address comes first sometimes");
        assert!(b.dial_candidates(later, 0, &mut rng, |_, _| false).is_empty());
    }

    #[test]
    fn exchange_sample_is_reached_addresses_only_and_uniform() {
        let mut b = AddressBook::new(64, Duration::from_millis(500), Duration::from_secs(60));
        let mut rng = Rng::new(4);
        let now = Time::ZERO;
        for p in 1..=40 {
            b.add(addr(p), Source::Exchange, now);
            if p % 2 == 0 {
                b.touch(&addr(p));
            }
        }
        b.mark_self(&addr(2));
        b.ban(&addr(4), now + Duration::from_secs(1));
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..2000 {
            let s = b.sample_for_exchange(6, &mut rng, now);
            assert_eq!(s.len(), 6);
            let mut d = s.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 6);
            for a in s {
                *counts.entry(a.port()).or_insert(0) += 1;
            }
        }
        assert!(counts.keys().all(|p| p % 2 == 0 && *p != 2 && *p != 4));
        assert_eq!(counts.len(), 18);
        // 2000 * 6 / 18 = 666 each on average.
        assert!(counts.values().all(|c| (500..850).contains(c)), "{counts:?}");
        assert_eq!(b.sample_for_exchange(100, &mut rng, now).len(), 18);
    }
}
