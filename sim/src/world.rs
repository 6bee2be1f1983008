//! The simulated world: virtual nodes running the real `Node`, a TCP-like network between them,
//! and the faults the scenario injects. Everything random comes from one seeded RNG, and events are
//! ordered by (virtual time, sequence number), so a seed replays a run exactly.
//!
//! Network model:
//! - A connection is two ordered byte streams. Each connection draws a base latency from the
//!   scenario's range; each piece of data adds a little jitter but never overtakes earlier data on
//!   the same connection, as with TCP.
//! - One in four of a node's transmits reaches the peer in two or three reads, cut at random
//!   points, so frames arrive split as on a real socket; the rest arrive in one read, as small
//!   writes do. The reads of one transmit follow each other in one event: a socket read returns
//!   whatever has arrived, and a separate event per piece only doubled the events.
//! - TCP does not lose bytes inside a connection, so "loss P" is modelled as what loss does to TCP:
//!   with probability P a piece is retransmitted (delayed by an RTO of 200 ms plus two base
//!   latencies), and with probability P/50 the connection breaks (both ends see it closed).
//! - A partition resets every connection between the two halves, and dials across it fail, until
//!   it heals. A crash drops a node and everything in flight to it; its peers see the connection
//!   reset. A restart is a fresh `Node` (same key and address, no memory) that must catch up.

mod dms;
mod moderation;
mod nat;
pub use dms::DmReport;
pub use moderation::ModerationReport;
pub use nat::NatReport;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::hint::lines;
use p2p_chat_core::random::Rng;
use p2p_chat_core::wire::{self, Message};
use p2p_chat_core::{Body, Chat, ChatId, Config, ConnId, Ed25519Keys, Event, Input, Keys, Node, Origin, Output, Time};

use crate::attack::{self, Attacker, Tally};
use crate::cheap_keys::CheapKeys;
use crate::metrics::Metrics;
use crate::rooms::SimRooms;

/// How often joins of rooms are checked for a first member neighbour.
const ROOM_CHECK_EVERY: Duration = Duration::from_millis(250);
use crate::shared_chats::SharedChats;
use crate::Params;

/// Virtual time starts here (a fixed Unix time, so chat ids are the same every run).
pub const T0_MS: u64 = 1_800_000_000_000;
const PORT: u16 = 7000;
/// Retransmission timeout added to a "lost" piece (Linux's minimum RTO).
const RTO: Duration = Duration::from_millis(200);
/// Events in one chunk of a queue bucket (6 KiB; see `Queue`).
const CHUNK_EVENTS: usize = 256;

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(ip(i), PORT)
}

/// Node `i`'s IP address: `10.a.b.c` with the index's low byte in `a`, so the nodes spread evenly
/// over 256 network groups (the /16 the core's eviction rules count by), as an arriving crowd
/// does. With the high byte there, 100,000 nodes fell in two groups, and each group's young
/// handshakes at a bootstrap node were displaced by the other's as a flood from few networks
/// (see the core's `handshake_victim`).
fn ip(i: usize) -> IpAddr {
    IpAddr::from([10, i as u8, (i >> 8) as u8, (i >> 16) as u8])
}

fn index_of(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v4) if v4.port() == PORT && v4.ip().octets()[0] == 10 => {
            let o = v4.ip().octets();
            Some(((o[3] as usize) << 16) | ((o[2] as usize) << 8) | o[1] as usize)
        }
        _ => None,
    }
}

/// A node's `ConnId` in four bytes (a node opens far fewer than 2^32 connections in a run): the
/// queue and the links hold millions of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cid(u32);

/// How often the swarm's invariants are checked during a run (see `World::check_invariants`).
const INVARIANTS_EVERY: Duration = Duration::from_secs(5);

/// One event as `--check-determinism` compares two runs: its number, virtual time, what it is,
/// and for a transmit a hash of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    pub index: u64,
    pub at: Time,
    ev: Ev,
    bytes: Option<(usize, u64)>,
}

impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t0 = Time::from_millis(T0_MS);
        write!(f, "event #{} at virtual {:.6} s: {:?}", self.index, self.at.since(t0).as_secs_f64(), self.ev)?;
        if let Some((len, hash)) = self.bytes {
            write!(f, " ({len} bytes, hash {hash:016x})")?;
        }
        Ok(())
    }
}

/// Sees every event of a run, in order; returning false stops the run.
pub trait Tracer {
    /// Whether events are traced at all: a run without a tracer compiles to none of it.
    const ON: bool;
    fn step(&mut self, t: Trace) -> bool;
}

/// No tracing.
pub struct NoTrace;

impl Tracer for NoTrace {
    const ON: bool = false;
    fn step(&mut self, _: Trace) -> bool {
        true
    }
}

/// A broken invariant, with when it was first seen.
#[derive(Clone, Debug, Default)]
pub struct Invariants {
    pub checks: u64,
    pub violations: u64,
    pub first: Option<String>,
}

impl Cid {
    fn of(c: ConnId) -> Cid {
        Cid(u32::try_from(c.0).expect("fewer than 2^32 connections a node"))
    }

    fn id(self) -> ConnId {
        ConnId(self.0.into())
    }
}

/// A node's incarnation: it is restarted at most once a run (crashed in the fault phase, started
/// again at the heal), so two bytes are plenty, and they make an event 16 bytes rather than 20.
type Inc = u16;

/// A scheduled event. Nodes are `u32` indices and payloads live in `World::bufs`, so an event is
/// small and plain (16 bytes): the queue moves these around on every push and pop. `Bytes` is the
/// transmit `bufs[buf]`, read by the peer in pieces (see `Bufs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Start(u32),
    Wake(u32, Inc),
    Accept {
        to: u32,
        from: u32,
        from_inc: Inc,
        dialer_conn: Cid,
    },
    Connected {
        node: u32,
        inc: Inc,
        conn: Cid,
    },
    DialFailed {
        node: u32,
        inc: Inc,
        conn: Cid,
    },
    /// The router's answer to a node's port-mapping request (`nat::ROUTER_RTT` after it).
    PortMapped {
        node: u32,
        inc: Inc,
        granted: bool,
    },
    /// A punch dial that met no punch from the other end in time (see `nat::PUNCH_WINDOW`).
    PunchExpired {
        node: u32,
        inc: Inc,
        conn: Cid,
    },
    Bytes {
        node: u32,
        inc: Inc,
        conn: Cid,
        buf: u32,
    },
    Closed {
        node: u32,
        inc: Inc,
        conn: Cid,
    },
    SendChat(u32),
    /// Direct message `k` of the plan (`--dms`).
    SendDm(u32),
    /// Removal `k` of the plan (`--kicks`).
    Kick(u32),
    /// A room's owner makes its admin (`--kicks`).
    Grant(u16),
    /// A room's invite is out: its members up join (`--kicks`).
    Invited(u16),
    Forge(u32),
    Crash(u32),
    FaultStart,
    Heal,
    Check,
    /// See whether room members that joined have found a member neighbour yet.
    RoomCheck,
    /// Check the swarm's invariants (see `World::check_invariants`).
    Invariants,
    /// Attacker `a` dials honest node `victim` (see `crate::attack`).
    AttackerDial {
        a: u32,
        victim: u32,
    },
    AttackerConnected {
        a: u32,
        conn: u32,
    },
    /// A victim's transmit `bufs[buf]` reaches attacker `a`.
    AttackerBytes {
        a: u32,
        conn: u32,
        buf: u32,
    },
    AttackerClosed {
        a: u32,
        conn: u32,
    },
    /// Every attacker connection past its catch-up sends its next paced record.
    AttackerTick(u32),
    /// The fault phase is over: the attackers close their connections and leave.
    AttackStop,
}

/// A queued event with its virtual time in microseconds. In a radix bucket its place stands for
/// its sequence number, and in `Queue::current` the order is (time, sequence number) itself.
struct Timed {
    at: u64,
    ev: Ev,
}

// The queue holds tens of events a node at its peak: each byte here is kilobytes at scale.
const _: () = assert!(std::mem::size_of::<Timed>() == 24);

/// How many events ahead `World::prefetch` hints an event's slot, then the tables it points to,
/// then its connection, then the connection's boxed state (ciphers, a held partial frame): each
/// stage reads lines the one before hinted. Chosen at 30,000 nodes, where an event takes about
/// 2 us (16, 8, 2 did worse; 4, 2, 1 no better). The links and the transmit's bytes have a stage
/// of their own, before the node's tables: in one stage they would be some 18 lines at once, more
/// than the core tracks, and the hints would wait.
const PREFETCH_SLOT_AHEAD: usize = 8;
const PREFETCH_LINKS_AHEAD: usize = 6;
const PREFETCH_TABLES_AHEAD: usize = 4;
const PREFETCH_CONN_AHEAD: usize = 2;
const PREFETCH_SESSION_AHEAD: usize = 1;

/// Events a refill aims to add to `Queue::current`: enough that a refill is rare, few enough that
/// the rare event scheduled inside the window (a timer) is inserted into a short list.
const WINDOW_EVENTS: usize = 32;
/// Most microseconds a refill's window spans: under the network's least latency (10 ms by
/// default), so what a node sends lands inside the window only under a shorter latency, and then
/// is merely inserted rather than appended.
const MAX_WINDOW_US: u64 = 4096;

/// The event queue: a radix heap on virtual time with a sorted run at its front. Bucket `b`
/// (1..=64) holds the events whose time first differs from `last` at bit `b - 1`, and `current`
/// every event at or before `last`, in (time, sequence number) order. Every bucket stays in push
/// order, because a refill only spreads a bucket into empty lower ones, so a bucket's events at
/// equal times are in sequence order; a refill takes from the lowest bucket the events up to a
/// little past its earliest (`window_us`), and a stable sort by time puts them in exactly the
/// order a binary heap on (time, sequence number) gives, while an event moves only a few times,
/// through contiguous memory, instead of down a large heap on every pop. Taking a window rather
/// than only the earliest time is what lets `World::run_until` look a few events ahead. An event
/// pushed at or before `last` (the network never does that, a node's timer might) is inserted
/// into `current` after those at its time or earlier, as it was pushed after them.
struct Queue {
    last: u64,
    /// The events at or before `last`, in (time, sequence number) order.
    current: std::collections::VecDeque<Timed>,
    /// Each bucket is held in chunks of `CHUNK_EVENTS`: the one being filled in `tails`, the full
    /// ones before it in `full`. Far buckets fill over a long time and drain at once: in one `Vec`
    /// a bucket would be regrown by `realloc`, copying every event at each doubling, and its room
    /// dropped or left empty after each drain. Chunks are never copied, and a drained one goes to
    /// `spare` for the next bucket that fills one, so the queue holds little more room than its
    /// largest crowd of events needed.
    tails: [Vec<Timed>; 65],
    full: [Vec<Vec<Timed>>; 65],
    /// Drained chunks, empty, each with room for `CHUNK_EVENTS`.
    spare: Vec<Vec<Timed>>,
    /// The earliest time in each bucket (`u64::MAX` in an empty one), kept up as events come in so
    /// that a refill reads its bucket once: finding the earliest first would be a second pass over
    /// a bucket that can hold thousands of events, more than the L1 cache, missing as often as the
    /// first.
    earliest: [u64; 65],
    /// Bit `b - 1` is set when bucket `b` (1..=64) is not empty.
    nonempty: u64,
    /// How far past a bucket's earliest event a refill takes events, adapted towards
    /// `WINDOW_EVENTS` a refill: the event rate varies a hundredfold with the node count and the
    /// phase of a run.
    window_us: u64,
}

impl Queue {
    fn new(last: u64) -> Queue {
        Queue {
            last,
            current: Default::default(),
            tails: std::array::from_fn(|_| Vec::new()),
            full: std::array::from_fn(|_| Vec::new()),
            spare: Vec::new(),
            earliest: [u64::MAX; 65],
            nonempty: 0,
            window_us: 1,
        }
    }

    /// Events must be pushed in sequence-number order.
    fn push(&mut self, at: Time, ev: Ev) {
        let at = at.as_micros();
        if at > self.last {
            return self.push_bucket(Timed { at, ev });
        }
        // After every event at `at` or before, which were all pushed before this one.
        if self.current.back().is_none_or(|e| e.at <= at) {
            self.current.push_back(Timed { at, ev });
        } else {
            let k = self.current.partition_point(|e| e.at <= at);
            self.current.insert(k, Timed { at, ev });
        }
    }

    /// Into the bucket of an event after `last`. Inlined into the refill's loop, where most events
    /// come through (left to itself, the compiler calls it there, ~2% more instructions).
    #[inline(always)]
    fn push_bucket(&mut self, e: Timed) {
        let b = 64 - (e.at ^ self.last).leading_zeros() as usize;
        self.earliest[b] = self.earliest[b].min(e.at);
        let tail = &mut self.tails[b];
        if tail.len() == tail.capacity() {
            // Full, or none yet.
            let next = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK_EVENTS));
            let filled = std::mem::replace(tail, next);
            if !filled.is_empty() {
                self.full[b].push(filled);
            }
        }
        tail.push(e);
        self.nonempty |= 1 << (b - 1);
    }

    /// Tops `current` up with the next window of events once it holds no more than
    /// `PREFETCH_SLOT_AHEAD` (so that the events at a window's end are hinted as early as the
    /// others); false when no event is left. Every event in a bucket is after every event in
    /// `current`, so the window goes at its back.
    fn refill(&mut self) -> bool {
        if self.current.len() > PREFETCH_SLOT_AHEAD {
            return true;
        }
        if self.nonempty == 0 {
            return !self.current.is_empty();
        }
        let kept = self.current.len();
        let b = self.nonempty.trailing_zeros() as usize + 1;
        self.nonempty &= !(1 << (b - 1));
        let mut full = std::mem::take(&mut self.full[b]);
        let mut tail = std::mem::take(&mut self.tails[b]);
        let earliest = std::mem::replace(&mut self.earliest[b], u64::MAX);
        // Bucket `b` holds times that share `last`'s bits from `b` up and have bit `b - 1` set.
        // The new `last` stays among them, so the events of the higher buckets still first
        // differ from it at the same bit, and those of bucket `b` after it go to the lower
        // buckets, all empty: every bucket stays in push order.
        let span_end = self.last | (u64::MAX >> (64 - b));
        let window_end = earliest.saturating_add(self.window_us - 1);
        self.last = window_end.min(span_end);
        for mut chunk in full.drain(..) {
            self.spread(chunk.drain(..));
            self.spare.push(chunk);
        }
        self.spread(tail.drain(..));
        // Stable: events at equal times stay in push order.
        self.current.make_contiguous()[kept..].sort_by_key(|e| e.at);
        let taken = self.current.len() - kept;
        if taken > 2 * WINDOW_EVENTS {
            self.window_us = (self.window_us / 2).max(1);
        } else if taken < WINDOW_EVENTS / 2 && window_end <= span_end {
            self.window_us = (self.window_us * 2).min(MAX_WINDOW_US);
        }
        // Bucket `b` is empty (see above): it keeps its list and its last chunk, empty, for reuse.
        (self.full[b], self.tails[b]) = (full, tail);
        true
    }

    /// A drained bucket's events, in push order: those up to `last` to `current`, the rest to the
    /// lower buckets.
    #[inline(always)]
    fn spread(&mut self, events: impl Iterator<Item = Timed>) {
        for e in events {
            if e.at <= self.last {
                self.current.push_back(e);
            } else {
                self.push_bucket(e);
            }
        }
    }

    fn peek_at(&mut self) -> Option<Time> {
        if self.refill() {
            self.current.front().map(|e| Time::from_micros(e.at))
        } else {
            None
        }
    }

    fn pop(&mut self) -> Option<(Time, Ev)> {
        if self.refill() {
            self.current.pop_front().map(|e| (Time::from_micros(e.at), e.ev))
        } else {
            None
        }
    }

    /// The event `k` places after the next one, with its time, if it is already in `current`.
    fn ahead(&self, k: usize) -> Option<(Time, Ev)> {
        self.current.get(k).map(|e| (Time::from_micros(e.at), e.ev))
    }
}

/// Transmitted buffers in flight, each with where the peer's reads of it end (besides its end):
/// kept here rather than in the event, which they would make a third larger. A slot is reused once
/// its transmit has been delivered (or dropped, when the receiving end is gone).
#[derive(Default)]
struct Bufs {
    slots: Vec<(Vec<u8>, [u32; 2])>,
    free: Vec<u32>,
}

impl Bufs {
    fn add(&mut self, bytes: Vec<u8>, cuts: [u32; 2]) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = (bytes, cuts);
                i
            }
            None => {
                self.slots.push((bytes, cuts));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn take(&mut self, i: u32) -> (Vec<u8>, [u32; 2]) {
        self.free.push(i);
        std::mem::take(&mut self.slots[i as usize])
    }
}

/// A node and what the world keeps beside it. Nearly every event reads `inc` and `links` before
/// the node runs and `wake_at` after: kept in the slot, next to the node's own fields, rather than
/// in tables of their own, which at 100,000 nodes cost a cache miss apiece. In this order
/// (`repr(C)`), so that they and the node's hot fields (`Node::HOT_BYTES`) are one run of memory,
/// the first `SLOT_HOT_BYTES` of the slot: what `World::prefetch` hints.
#[repr(C)]
struct Slot {
    /// The open connections of the current incarnation (a crash removes them all), sorted by
    /// `ConnId`: iterating nodes then this gives a fixed order.
    links: Vec<Link>,
    wake_at: Option<Time>,
    /// Another wake-up of this incarnation still queued, not at `wake_at` (`Time::MAX` for none).
    /// A node's deadline mostly leaves its next tick for an earlier one (an announcement batch
    /// to flush) and comes back: a wake-up is already queued for the tick, and is taken up again
    /// rather than queued twice, once to fire and once to be found stale.
    spare_wake: Time,
    inc: Inc,
    group: u8,
    /// Scheduled to crash during the fault phase (never chooses to send).
    crashes: bool,
    node: Option<Node>,
}

/// The bytes of a slot that nearly every event touches. `Option<Node>` is the size of a `Node`,
/// so the node starts where the option does.
const SLOT_HOT_BYTES: usize = std::mem::offset_of!(Slot, node) + Node::HOT_BYTES;
const _: () = assert!(size_of::<Option<Node>>() == size_of::<Node>());

/// One end of a connection: 24 bytes, as a node keeps over a dozen of them.
#[derive(Clone, Copy)]
struct Link {
    /// Nothing sent later on this direction arrives before this.
    clock: Time,
    conn: Cid,
    peer: u32,
    peer_conn: Cid,
    /// The base latency in microseconds (at most a minute, under 2^26) in the low `BASE_BITS`
    /// bits, the peer's incarnation (at most 2) above: apart, they made the link 32 bytes.
    base_and_peer_inc: u32,
}

const _: () = assert!(std::mem::size_of::<Link>() == 24);

impl Link {
    const BASE_BITS: u32 = 26;

    fn new(conn: Cid, peer: u32, peer_inc: Inc, peer_conn: Cid, base_us: u32, clock: Time) -> Link {
        assert!(base_us >> Self::BASE_BITS == 0 && u32::from(peer_inc) >> (32 - Self::BASE_BITS) == 0);
        Link { clock, conn, peer, peer_conn, base_and_peer_inc: base_us | u32::from(peer_inc) << Self::BASE_BITS }
    }

    fn base_us(&self) -> u32 {
        self.base_and_peer_inc & ((1 << Self::BASE_BITS) - 1)
    }

    fn base(&self) -> Duration {
        Duration::from_micros(self.base_us() as u64)
    }

    fn peer_inc(&self) -> Inc {
        (self.base_and_peer_inc >> Self::BASE_BITS) as Inc
    }
}

pub struct World {
    p: Params,
    slots: Vec<Slot>,
    queue: Queue,
    bufs: Bufs,
    rng: Rng,
    pub now: Time,
    partitioned: bool,
    lossy: bool,
    pub metrics: Metrics,
    /// The one copy of each chat that every node keeps.
    chats: Arc<SharedChats>,
    /// Every node's tuning, shared (see `World::config`).
    config: Arc<Config>,
    pub events: u64,
    /// End of the fault phase: heal, restart, stop losing.
    pub heal_at: Time,
    /// Where `Ev::Check` starts looking for a node short of peers.
    check_from: usize,
    /// The attacker peers (none unless `Params::attackers`). A link whose `peer` is
    /// `slots.len() + a` goes to attacker `a`.
    pub attackers: Vec<Attacker>,
    pub tally: Tally,
    pub invariants: Invariants,
    /// Who is in which room (`--rooms`).
    pub rooms: SimRooms,
    /// Whether an `Ev::RoomCheck` is queued.
    room_check_queued: bool,
    /// Direct messages (`--dms`), when asked for.
    dms: Option<Box<dms::Dms>>,
    /// Private rooms' owners, admins and removals (`--kicks`), when asked for.
    moderation: Option<Box<moderation::Moderation>>,
    /// Which nodes are behind NAT (`--nat`), when any are.
    nat: Option<Box<nat::NatModel>>,
}

impl World {
    pub fn new(p: Params) -> World {
        let mut rng = Rng::new(p.seed);
        let t0 = Time::from_millis(T0_MS);
        let n = p.nodes;
        let crash_n = ((n as f64) * p.churn).round() as usize;
        // Never crash the bootstrap nodes' majority: the scenario is about the others.
        let mut order: Vec<usize> = (0..n).collect();
        rng.choose_k(&mut order, n);
        let crashing: Vec<usize> =
            order.into_iter().filter(|&i| i >= p.bootstrap || n <= p.bootstrap).take(crash_n).collect();
        let mut slots: Vec<Slot> = (0..n)
            .map(|_| Slot {
                node: None,
                links: Vec::new(),
                inc: 0,
                wake_at: None,
                spare_wake: Time::MAX,
                group: 0,
                crashes: false,
            })
            .collect();
        for &i in &crashing {
            slots[i].crashes = true;
        }
        if p.partition {
            for (i, s) in slots.iter_mut().enumerate() {
                s.group = (i % 2) as u8;
            }
        }
        let join = Duration::from_secs_f64(p.join_s);
        let fault_start = t0 + join + Duration::from_secs_f64(p.settle_s);
        let heal_at = fault_start + Duration::from_secs_f64(p.fault_s);
        let config = World::config(&p);
        let rooms = SimRooms::new(p.rooms, n, p.messages, &mut rng);
        let mut metrics = Metrics::new(n);
        metrics.room_members = rooms.members.clone();
        let mut w = World {
            metrics,
            rooms,
            room_check_queued: false,
            p,
            slots,
            queue: Queue::new(t0.as_micros()),
            bufs: Bufs::default(),
            rng,
            now: t0,
            partitioned: false,
            lossy: false,
            chats: Arc::default(),
            config,
            events: 0,
            heal_at,
            check_from: 0,
            attackers: Vec::new(),
            tally: Tally::default(),
            invariants: Invariants::default(),
            dms: None,
            moderation: None,
            nat: None,
        };
        if w.p.nat > 0.0 {
            let (bootstrap, seed) = (w.p.bootstrap, w.p.seed);
            let shares = (w.p.nat, w.p.symmetric_share, w.p.upnp_share);
            w.nat = Some(Box::new(nat::NatModel::new(n, bootstrap, shares, seed)));
        }
        for i in 0..n {
            let at = t0 + join.mul_f64(i as f64 / n as f64);
            w.push(at, Ev::Start(i as u32));
        }
        w.push(t0, Ev::Check);
        w.push(t0 + INVARIANTS_EVERY, Ev::Invariants);
        w.push(fault_start, Ev::FaultStart);
        let fault = Duration::from_secs_f64(w.p.fault_s);
        for i in crashing {
            let share = if w.p.crash_at_once { 0.25 } else { w.rng.unit() * 0.5 };
            w.push(fault_start + fault.mul_f64(share), Ev::Crash(i as u32));
        }
        if w.p.kicks > 0 && !w.rooms.is_empty() {
            let steady: Vec<bool> = w.slots.iter().map(|s| !s.crashes).collect();
            let kicks = w.p.kicks;
            let m = moderation::Moderation::plan(&mut w, kicks, fault_start, fault, |i| steady[i]);
            w.moderation = Some(Box::new(m));
        }
        let senders: Vec<usize> = (0..n).filter(|&i| !w.slots[i].crashes).collect();
        for m in 0..w.p.messages {
            // A room's chat is written by one of its members that does not crash, if it has one.
            let room = w.rooms.plan_room(m);
            let members: Vec<usize> = match room {
                Some(r) => {
                    let all = &w.rooms.members[r as usize];
                    // Nor one to be removed from it (`--kicks`).
                    let target = |x: usize| w.moderation.as_ref().is_some_and(|m| m.is_target(r, x));
                    let steady: Vec<usize> =
                        all.iter().map(|&x| x as usize).filter(|&x| !w.slots[x].crashes && !target(x)).collect();
                    if steady.is_empty() {
                        all.iter().map(|&x| x as usize).collect()
                    } else {
                        steady
                    }
                }
                None => senders.clone(),
            };
            let s = members[w.rng.below(members.len())];
            // Chats are spread over the fault phase's first 80%, in order.
            let at = fault_start + fault.mul_f64(0.8 * m as f64 / w.p.messages.max(1) as f64);
            w.push(at, Ev::SendChat(s as u32));
        }
        for _ in 0..w.p.forgeries {
            let at = fault_start + fault.mul_f64(w.rng.unit() * 0.8);
            let i = w.rng.below(n);
            w.push(at, Ev::Forge(i as u32));
        }
        // Removals rekey through direct messages: every node has them under `--kicks`.
        if w.p.dms > 0 || w.moderation.is_some() {
            let n = w.p.dms;
            let d = dms::Dms::plan(&mut w, n, fault_start, fault);
            w.dms = Some(Box::new(d));
        }
        w.push(heal_at, Ev::Heal);
        if w.p.attackers > 0 {
            w.arm_attackers(fault_start);
        }
        w
    }

    /// Picks each attacker's victims and schedules their dials over the first 100 ms of the fault phase.
    fn arm_attackers(&mut self, start: Time) {
        let n = self.p.nodes;
        for (a, kind) in self.p.attack_kinds().into_iter().enumerate() {
            let mut victims: Vec<u32> = (0..n as u32).collect();
            let k = attack::VICTIMS_EACH.min(n);
            self.rng.choose_k(&mut victims, k);
            victims.truncate(k);
            for &v in &victims {
                let at = start + Duration::from_micros(self.rng.below(100_000) as u64);
                self.push(at, Ev::AttackerDial { a: a as u32, victim: v });
            }
            self.attackers.push(Attacker {
                kind,
                victims,
                conns: Vec::new(),
                identities: 0,
                next_conn: 0,
                ids: Vec::new(),
            });
            self.push(start, Ev::AttackerTick(a as u32));
        }
        self.push(self.heal_at, Ev::AttackStop);
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.queue.push(at, ev);
    }

    /// Where `(n, inc, conn)`'s link is in `slots[n].links`, if it is open.
    fn find(&self, n: usize, inc: Inc, conn: Cid) -> Option<usize> {
        if self.slots[n].inc != inc {
            return None;
        }
        self.slots[n].links.binary_search_by_key(&conn, |l| l.conn).ok()
    }

    fn link_mut(&mut self, n: usize, inc: Inc, conn: Cid) -> Option<&mut Link> {
        let k = self.find(n, inc, conn)?;
        Some(&mut self.slots[n].links[k])
    }

    fn remove_link(&mut self, n: usize, inc: Inc, conn: Cid) -> Option<Link> {
        let k = self.find(n, inc, conn)?;
        Some(self.slots[n].links.remove(k))
    }

    /// Only ever for a node's current incarnation (`accept` checks both ends are alive).
    fn insert_link(&mut self, n: usize, l: Link) {
        let v = &mut self.slots[n].links;
        match v.binary_search_by_key(&l.conn, |l| l.conn) {
            Ok(k) => v[k] = l,
            Err(k) => {
                // A node's links change a few times a minute: room for just these beats doubling
                // in every node.
                v.reserve_exact(1);
                v.insert(k, l);
            }
        }
    }

    /// The tuning every node runs with: built once and shared, as the nodes differ only in name
    /// and bootstrap list (see `bootstrap`).
    fn config(p: &Params) -> Arc<Config> {
        Arc::new(Config {
            listen_port: PORT,
            fanout: p.fanout,
            ttl: p.ttl,
            repair: p.repair,
            announce_presence: p.joins,
            target_peers: p.target_peers.min(p.nodes.saturating_sub(1)).max(1),
            max_peers: p.max_peers,
            // Without `--nat` every node can be dialed: there is nothing to find out and nothing
            // to relay, and the core's NAT traversal stays off.
            nat: if p.nat > 0.0 {
                // Port mapping only where some router does it (`--upnp-share`, world/nat.rs).
                let port_mapping = p.upnp_share > 0.0;
                p2p_chat_core::nat::NatConfig { port_mapping, ..p2p_chat_core::nat::NatConfig::default() }
            } else {
                p2p_chat_core::nat::NatConfig::off()
            },
            ..Config::default()
        })
    }

    fn bootstrap(&self, i: usize) -> Vec<SocketAddr> {
        // Each node is told of three bootstrap nodes (all of them when there are only three).
        let mut wellknown: Vec<usize> = (0..self.p.nodes.min(self.p.bootstrap.max(1))).filter(|&b| b != i).collect();
        if wellknown.len() > 3 {
            let mut rng = Rng::new(self.p.seed ^ (i as u64).wrapping_mul(0xa076_1d64_78bd_642f));
            rng.choose_k(&mut wellknown, 3);
            wellknown.truncate(3);
        }
        wellknown.into_iter().map(addr).collect()
    }

    fn keys(&self, i: usize) -> Box<dyn Keys> {
        if self.p.real_crypto {
            Box::new(Ed25519Keys::from_seed(i as u64))
        } else {
            Box::new(CheapKeys::new(i as u64))
        }
    }

    pub fn live(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.node.as_ref().map(|n| (i, n)))
    }

    /// Runs events up to `until`, calling `progress` about once per virtual second.
    pub fn run_until(&mut self, until: Time, progress: impl FnMut(&World)) {
        self.run_until_traced(until, progress, &mut NoTrace);
    }

    /// `run_until`, showing `tracer` every event before it runs. False if the tracer stopped it.
    pub fn run_until_traced<T: Tracer>(
        &mut self,
        until: Time,
        mut progress: impl FnMut(&World),
        tracer: &mut T,
    ) -> bool {
        let mut next_progress = self.now;
        while let Some(at) = self.queue.peek_at() {
            if at > until {
                break;
            }
            let (at, ev) = self.queue.pop().expect("peeked");
            if T::ON && !tracer.step(self.trace(at, ev)) {
                return false;
            }
            self.prefetch();
            self.now = at;
            self.events += 1;
            self.apply(ev);
            if self.now >= next_progress {
                progress(self);
                next_progress = self.now + Duration::from_secs(1);
            }
        }
        self.now = self.now.max(until);
        true
    }

    fn trace(&self, at: Time, ev: Ev) -> Trace {
        let bytes = match ev {
            Ev::Bytes { buf, .. } | Ev::AttackerBytes { buf, .. } => {
                let b = &self.bufs.slots[buf as usize].0;
                let hash =
                    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3));
                Some((b.len(), hash))
            }
            _ => None,
        };
        Trace { index: self.events, at, ev, bytes }
    }

    /// Checks what must hold of the whole swarm at any time, and records what does not:
    /// - no node has more peers than `max_peers`, nor holds more chats than `max_chats`;
    /// - a node's peer count agrees with the peers it lists, and each listed peer's connection is
    ///   open in the network;
    /// - neighbour relations are symmetric: when node A has had B as a peer for longer than a
    ///   handshake and its replies can take (`grace`) and neither end has closed the connection,
    ///   B has A as a peer on that same connection, and each knows the other by its real id.
    ///
    /// Eager/lazy symmetry (Plumtree's: B pushes to A eagerly exactly when A does to B, once
    /// prunes and grafts have arrived) is not checked: the node's public API does not show
    /// which neighbours are eager.
    pub fn check_invariants(&mut self) {
        let now = self.now;
        let (max_peers, max_chats) = (self.config.max_peers, self.config.max_chats);
        let hi = Duration::from_millis(self.p.latency_ms.1);
        let grace = 2 * RTO + 6 * hi + Duration::from_secs(1);
        // Compact, as a large run checks a million neighbour relations: each node's id and each
        // established connection by the first 4 bytes of an id (a false match is a 2^-32 chance).
        let tag = |id: p2p_chat_core::PeerId| u32::from_le_bytes(id.0[..4].try_into().expect("4 bytes"));
        let ids: Vec<u32> = self.slots.iter().map(|s| s.node.as_ref().map_or(0, |n| tag(n.peer_id()))).collect();
        // (node, its connection, the peer's id tag, since when in ms of virtual time), sorted: a
        // node's peers come in connection order.
        let mut ups: Vec<(u32, u32, u32, u32)> =
            Vec::with_capacity(self.slots.iter().filter_map(|s| s.node.as_ref()).map(|n| n.peer_count()).sum());
        let t0 = Time::from_millis(T0_MS);
        let mut broken: Vec<String> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(n) = s.node.as_ref() else { continue };
            let peers = n.peers();
            if n.peer_count() > max_peers || n.peer_count() != peers.len() {
                broken.push(format!("n{i} counts {} peers, lists {} (most {max_peers})", n.peer_count(), peers.len()));
            }
            if n.held_chats() > max_chats {
                broken.push(format!("n{i} holds {} chats (most {max_chats})", n.held_chats()));
            }
            // A connection through a relay rides on the links to the relay and has none of its
            // own: only direct ones are checked against the links.
            for p in peers.into_iter().filter(|p| p.path == p2p_chat_core::nat::Path::Direct) {
                let since_ms = p.since.since(t0).as_millis() as u32;
                ups.push((i as u32, Cid::of(p.conn).0, tag(p.peer), since_ms));
            }
        }
        for &(i, conn, peer_tag, since_ms) in &ups {
            let (i, s) = (i as usize, &self.slots[i as usize]);
            let Some(k) = self.find(i, s.inc, Cid(conn)) else {
                broken.push(format!("n{i} lists a peer on connection {conn}, which is not open"));
                continue;
            };
            let l = s.links[k];
            let j = l.peer as usize;
            let since = t0 + Duration::from_millis(since_ms.into());
            if since + grace > now || l.clock == Time::MAX || j >= self.slots.len() {
                continue;
            }
            if self.find(j, l.peer_inc(), l.peer_conn).is_none_or(|k| self.slots[j].links[k].clock == Time::MAX) {
                continue; // closed at the other end, which this end has yet to hear
            }
            match ups.binary_search_by_key(&(j as u32, l.peer_conn.0), |&(n, c, _, _)| (n, c)) {
                Err(_) => broken.push(format!(
                    "n{i} has had n{j} as a peer for {:.1} s, n{j} does not have n{i}",
                    now.since(since).as_secs_f64()
                )),
                Ok(q) if ups[q].2 != ids[i] || peer_tag != ids[j] => {
                    broken.push(format!("n{i} and n{j} do not know each other by their ids"))
                }
                Ok(_) => {}
            }
        }
        self.invariants.checks += 1;
        self.violate(broken);
    }

    fn violate(&mut self, broken: Vec<String>) {
        if let Some(first) = broken.first().filter(|_| self.invariants.first.is_none()) {
            let t = self.now.since(Time::from_millis(T0_MS)).as_secs_f64();
            self.invariants.first = Some(format!("at virtual {t:.3} s: {first}"));
        }
        self.invariants.violations += broken.len() as u64;
    }

    /// Hints the memory of the events coming up, in stages, each once the lines it reads have had
    /// time to arrive: the slot's hot part (and a transmit's entry in `bufs`) a few events ahead,
    /// then the links and the transmit's bytes, then the node's tables (connections, chats, gossip
    /// neighbours, queues), then the connection itself, then what it points to (its ciphers, a
    /// partial frame).
    /// At 100,000 nodes nearly every event's node is in no cache, and unhinted its loads stall one
    /// after the other; hinted, they overlap the events before it.
    fn prefetch(&self) {
        if let Some((_, ev)) = self.queue.ahead(PREFETCH_SLOT_AHEAD) {
            let (node, other, buf) = ev.reads();
            for i in node.into_iter().chain(other) {
                lines((&self.slots[i as usize] as *const Slot).cast(), SLOT_HOT_BYTES);
            }
            if let Some(b) = buf {
                lines((&self.bufs.slots[b as usize] as *const (Vec<u8>, [u32; 2])).cast(), 1);
                // Bytes may deliver a chat: a bit in the node's row of the delivery table.
                if let Some(i) = node {
                    self.metrics.prefetch(i as usize);
                }
            }
        }
        if let Some(ev) = self.ahead(PREFETCH_LINKS_AHEAD) {
            let (node, _, buf) = ev.reads();
            if let Some(i) = node {
                let s = &self.slots[i as usize];
                lines(s.links.as_ptr().cast(), s.links.len() * size_of::<Link>());
            }
            if let Some(b) = buf {
                let bytes = &self.bufs.slots[b as usize].0;
                // The reads open and copy all of it; a rare large transmit is not hinted whole.
                lines(bytes.as_ptr(), bytes.len().min(1024));
            }
        }
        if let Some(ev) = self.ahead(PREFETCH_TABLES_AHEAD) {
            if let Some(n) = ev.reads().0.and_then(|i| self.slots[i as usize].node.as_ref()) {
                n.tables_memory(&mut lines);
            }
        }
        if let Some(ev) = self.ahead(PREFETCH_CONN_AHEAD) {
            if let (Some(i), Some(conn)) = (ev.reads().0, ev.conn()) {
                if let Some(n) = &self.slots[i as usize].node {
                    n.conn_memory(conn.id(), &mut lines);
                }
            }
        }
        if let Some(ev) = self.ahead(PREFETCH_SESSION_AHEAD) {
            if let (Some(i), Some(conn)) = (ev.reads().0, ev.conn()) {
                if let Some(n) = &self.slots[i as usize].node {
                    n.session_memory(conn.id(), &mut lines);
                }
            }
        }
    }

    /// The event `k` places ahead (fewer than `PREFETCH_SLOT_AHEAD`, so that its slot was hinted),
    /// unless it is a stale wake-up: a node's deadline moves as inputs come, a move to a time no
    /// wake-up is queued for queues another `Ev::Wake`, and some of those that come up find it
    /// moved again. Their node's tables would be hinted for nothing.
    fn ahead(&self, k: usize) -> Option<Ev> {
        match self.queue.ahead(k)? {
            (at, Ev::Wake(i, inc)) => {
                let s = &self.slots[i as usize];
                (s.inc == inc && s.wake_at == Some(at)).then_some(Ev::Wake(i, inc))
            }
            (_, ev) => Some(ev),
        }
    }

    fn apply(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Start(i) => {
                let i = i as usize;
                let seed =
                    self.p.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((self.slots[i].inc as u64) << 48);
                let (name, bootstrap) = (format!("n{i}"), self.bootstrap(i));
                let mut node =
                    Node::with_shared_config(self.config.clone(), &name, &bootstrap, self.keys(i), seed, now);
                node.share_chats(self.chats.clone());
                if let Some(d) = self.dms.as_mut() {
                    node = d.start(i, node, seed, now);
                }
                self.slots[i].node = Some(node);
                self.slots[i].wake_at = None;
                self.slots[i].spare_wake = Time::MAX;
                self.metrics.restarted(i);
                if let Some(m) = self.nat.as_mut() {
                    m.started(i, now);
                }
                self.after_input(i);
                self.join_rooms(i);
            }
            Ev::Wake(i, inc) => {
                let i = i as usize;
                let s = &mut self.slots[i];
                if s.inc != inc {
                    return;
                }
                if s.wake_at == Some(now) {
                    s.wake_at = None;
                    self.input(i, Input::Timeout);
                } else if s.spare_wake == now {
                    s.spare_wake = Time::MAX;
                }
            }
            Ev::Accept { to, from, from_inc, dialer_conn } => {
                self.accept(to as usize, from as usize, from_inc, dialer_conn)
            }
            Ev::Connected { node, inc, conn } => {
                let node = node as usize;
                if self.slots[node].inc == inc {
                    self.input(node, Input::Connected(conn.id()));
                }
            }
            Ev::DialFailed { node, inc, conn } => {
                let node = node as usize;
                if self.slots[node].inc == inc {
                    self.input(node, Input::DialFailed(conn.id()));
                }
            }
            Ev::PunchExpired { node, inc, conn } => self.punch_expired(node as usize, inc, conn),
            Ev::PortMapped { node, inc, granted } => self.port_mapped(node as usize, inc, granted),
            Ev::Bytes { node, inc, conn, buf } => {
                let node = node as usize;
                let (bytes, cuts) = self.bufs.take(buf);
                let mut start = 0;
                for end in [cuts[0] as usize, cuts[1] as usize, bytes.len()] {
                    // A node may close the connection on any piece (a bad frame, say).
                    if end > start && self.find(node, inc, conn).is_some() {
                        self.input(node, Input::Received(conn.id(), &bytes[start..end]));
                        start = end;
                    }
                }
            }
            Ev::Closed { node, inc, conn } => {
                let node = node as usize;
                if self.remove_link(node, inc, conn).is_some() {
                    self.input(node, Input::Closed(conn.id()));
                }
            }
            Ev::SendChat(i) => {
                let text = format!("chat {} from n{i}", self.metrics.sent_len());
                let room = self.rooms.next_room();
                let cmd = match room {
                    Some(r) => {
                        self.watch(i as usize, r);
                        p2p_chat_core::Command::Say { room: self.rooms.ids[r as usize], text }
                    }
                    None => p2p_chat_core::Command::Chat(text),
                };
                self.input(i as usize, Input::Command(cmd));
                if let Some(m) = self.moderation.as_mut() {
                    m.unwatch();
                }
            }
            Ev::RoomCheck => {
                let slots = &self.slots;
                let looking = self.rooms.check(now, |n, id| {
                    let node = slots[n].node.as_ref()?;
                    Some(node.rooms().iter().find(|r| r.id == id).map_or(0, |r| r.neighbours))
                });
                self.room_check_queued = looking;
                if looking {
                    self.push(now + ROOM_CHECK_EVERY, Ev::RoomCheck);
                }
            }
            Ev::SendDm(k) => self.send_dm(k as usize),
            Ev::Kick(k) => self.kick(k as usize),
            Ev::Grant(r) => self.grant(r),
            Ev::Invited(r) => self.invite_members(r),
            Ev::Forge(i) => self.forge(i as usize),
            Ev::Crash(i) => self.crash(i as usize),
            Ev::FaultStart => {
                self.lossy = self.p.loss > 0.0;
                let baseline: Vec<p2p_chat_core::Stats> = self.live().map(|(_, n)| n.stats().clone()).collect();
                self.metrics.baseline(&baseline);
                if !self.p.partition {
                    return;
                }
                self.partitioned = true;
                let mut cross: Vec<(usize, Inc, Cid)> = Vec::new();
                for (n, s) in self.slots.iter().enumerate() {
                    let (inc, group) = (s.inc, s.group);
                    for l in &s.links {
                        if self.slots.get(l.peer as usize).is_some_and(|p| p.group != group) {
                            cross.push((n, inc, l.conn));
                        }
                    }
                }
                for (n, inc, conn) in cross {
                    self.reset(n, inc, conn);
                }
            }
            Ev::Heal => {
                self.partitioned = false;
                self.lossy = false;
                for i in 0..self.slots.len() {
                    if self.slots[i].node.is_none() {
                        self.slots[i].inc += 1;
                        self.push(now, Ev::Start(i as u32));
                    }
                }
            }
            Ev::Check => {
                let target = self.p.target_peers.min(self.p.nodes.saturating_sub(1)).max(1);
                let short = |s: &Slot| s.node.as_ref().is_some_and(|n| n.peer_count() < target.min(3));
                // From the node found short last time: most checks find one at once there, where
                // a walk from the first node read every connection of every node before it, each
                // a cache miss of its own at 100,000 nodes. Only a check that finds none from there
                // walks the nodes before it too.
                let from = self.check_from.min(self.slots.len());
                let (after, before) = (&self.slots[from..], &self.slots[..from]);
                let found = match after.iter().position(short) {
                    Some(k) => Some(from + k),
                    None => before.iter().position(short),
                };
                let full = found.is_none();
                self.check_from = found.unwrap_or(0);
                if full && self.metrics.full_peer_set_at.is_none() {
                    self.metrics.full_peer_set_at = Some(now);
                } else if !full {
                    self.push(now + Duration::from_millis(500), Ev::Check);
                }
            }
            Ev::Invariants => {
                self.check_invariants();
                if let Some(mut d) = self.dms.take() {
                    d.sample(self);
                    self.dms = Some(d);
                }
                self.push(now + INVARIANTS_EVERY, Ev::Invariants);
            }
            Ev::AttackerDial { a, victim } => self.attacker_dial(a as usize, victim as usize),
            Ev::AttackerConnected { a, conn } => {
                let a = a as usize;
                if let Some(k) = self.attacker_conn(a, conn) {
                    let first = std::mem::take(&mut self.attackers[a].conns[k].first);
                    self.attacker_send(a, k, first);
                }
            }
            Ev::AttackerBytes { a, conn, buf } => self.attacker_bytes(a as usize, conn, buf),
            Ev::AttackerClosed { a, conn } => {
                let a = a as usize;
                if let Some(k) = self.attacker_conn(a, conn) {
                    let c = self.attackers[a].conns.remove(k);
                    self.tally.closed_by_victims += 1;
                    self.tally.close(self.attackers[a].kind, &c);
                    // Again at once, under a fresh identity.
                    if now < self.heal_at {
                        self.push(now + Duration::from_millis(1), Ev::AttackerDial { a: a as u32, victim: c.victim });
                    }
                }
            }
            Ev::AttackerTick(a) => self.attacker_tick(a as usize),
            Ev::AttackStop => {
                for a in 0..self.attackers.len() {
                    while !self.attackers[a].conns.is_empty() {
                        self.attacker_close(a, 0);
                    }
                }
            }
        }
    }

    fn input(&mut self, i: usize, input: Input<'_>) {
        let now = self.now;
        if let Some(n) = self.slots[i].node.as_mut() {
            n.handle_input(now, input);
            self.after_input(i);
        }
    }

    /// Node `i` dials `addr`: accepted there after a link latency, or failed as late if nobody
    /// can be dialed at it.
    fn dial(&mut self, i: usize, conn: Cid, addr: SocketAddr) {
        let (now, inc, lat) = (self.now, self.slots[i].inc, self.latency());
        match index_of(addr).filter(|&j| j < self.slots.len() && self.nat_dialable(j)) {
            Some(j) => {
                self.push(now + lat, Ev::Accept { to: j as u32, from: i as u32, from_inc: inc, dialer_conn: conn })
            }
            None => self.push(now + lat, Ev::DialFailed { node: i as u32, inc, conn }),
        }
    }

    fn accept(&mut self, to: usize, from: usize, from_inc: Inc, dialer_conn: Cid) {
        let now = self.now;
        let cut = self.partitioned && self.slots[to].group != self.slots[from].group;
        let remote = SocketAddr::new(ip(from), 40_000);
        let dialer_alive = self.slots[from].inc == from_inc;
        let accepted = match self.slots[to].node.as_mut() {
            Some(n) if !cut && dialer_alive => n.accept(now, remote).map(Cid::of),
            _ => None,
        };
        let base = self.latency();
        match accepted {
            Some(conn) => {
                let to_inc = self.slots[to].inc;
                let connected_at = now + base;
                let base_us = base.as_micros() as u32;
                self.insert_link(to, Link::new(conn, from as u32, from_inc, dialer_conn, base_us, connected_at));
                self.insert_link(from, Link::new(dialer_conn, to as u32, to_inc, conn, base_us, now));
                self.push(connected_at, Ev::Connected { node: from as u32, inc: from_inc, conn: dialer_conn });
                self.after_input(to);
            }
            None => self.push(now + base, Ev::DialFailed { node: from as u32, inc: from_inc, conn: dialer_conn }),
        }
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.p.latency_ms;
        Duration::from_micros(lo * 1000 + self.rng.below(((hi - lo) * 1000 + 1) as usize) as u64)
    }

    /// Both ends of a connection see it closed (after the link's latency); nothing more is sent.
    fn reset(&mut self, n: usize, inc: Inc, conn: Cid) {
        let Some(l) = self.link_mut(n, inc, conn) else { return };
        if l.clock == Time::MAX {
            return;
        }
        l.clock = Time::MAX;
        let l = *l;
        if (l.peer as usize) < self.slots.len() {
            if let Some(p) = self.link_mut(l.peer as usize, l.peer_inc(), l.peer_conn) {
                p.clock = Time::MAX;
            }
        }
        let at = self.now + l.base();
        self.push(at, Ev::Closed { node: n as u32, inc, conn });
        self.push_closed(at, &l);
    }

    /// Node `i`, just started, joins its rooms (`--rooms`).
    fn join_rooms(&mut self, i: usize) {
        if self.rooms.of(i).is_empty() {
            return;
        }
        if self.moderation.is_some() {
            let rooms = self.rooms.of(i).to_vec();
            self.join_private(i, &rooms);
        } else {
            let names: Vec<String> = self.rooms.of(i).iter().map(|&r| self.rooms.names[r as usize].clone()).collect();
            for name in names {
                self.input(i, Input::Command(p2p_chat_core::Command::JoinPublic(name)));
            }
        }
        self.rooms.joined(i, self.now);
        if !self.room_check_queued {
            self.room_check_queued = true;
            self.push(self.now + ROOM_CHECK_EVERY, Ev::RoomCheck);
        }
    }

    fn crash(&mut self, i: usize) {
        self.rooms.crashed(i);
        let Some(node) = self.slots[i].node.take() else { return };
        self.metrics.retire(node.stats());
        if let Some(d) = self.dms.as_mut() {
            d.crashed(i, node);
        }
        // In `ConnId` order; the emptied Vec keeps its capacity for the restart.
        let mut mine = std::mem::take(&mut self.slots[i].links);
        for l in &mine {
            let at = self.now + l.base();
            self.push_closed(at, l);
        }
        mine.clear();
        self.slots[i].links = mine;
        self.slots[i].inc += 1;
        self.metrics.crashed(i);
    }

    /// A malicious neighbour injects a chat it altered after signing: it must never be delivered.
    fn forge(&mut self, i: usize) {
        let Some(node) = self.slots[i].node.as_ref() else { return };
        let Some(conn) = node.peers().first().map(|p| p.conn) else { return };
        let inc = self.slots[i].inc;
        let victim = self.keys((i + 1) % self.p.nodes);
        let id = ChatId::new_v7(self.now.as_millis(), &self.rng.bytes());
        let mut chat = Chat::new(&*victim, id, &format!("n{}", (i + 1) % self.p.nodes), Body::Text("genuine".into()));
        chat.body = Body::Text("forged".into());
        self.metrics.forged.insert(id);
        let bytes = wire::encode(&Message::Chat { ttl: 3, hops: 1, chat: Arc::new(chat) });
        if self.find(i, inc, Cid::of(conn)).is_some() {
            self.input(i, Input::Received(conn, &bytes));
        }
    }

    /// The other end of `l` sees it closed at `at`: an honest node, or an attacker.
    fn push_closed(&mut self, at: Time, l: &Link) {
        match (l.peer as usize).checked_sub(self.slots.len()) {
            Some(a) => self.push(at, Ev::AttackerClosed { a: a as u32, conn: l.peer_conn.0 }),
            None => self.push(at, Ev::Closed { node: l.peer, inc: l.peer_inc(), conn: l.peer_conn }),
        }
    }

    /// Where attacker `a`'s connection `conn` is in its list, if it is open.
    fn attacker_conn(&self, a: usize, conn: u32) -> Option<usize> {
        self.attackers[a].conns.iter().position(|c| c.id == conn)
    }

    /// Attacker `a` dials `victim` under a fresh identity. A victim that is down, or refuses, is
    /// tried again a second later.
    fn attacker_dial(&mut self, a: usize, victim: usize) {
        let now = self.now;
        if now >= self.heal_at {
            return;
        }
        // An address of its own per attacker (outside the honest 10.0.0.0/8), a port per identity.
        let generation = self.attackers[a].identities;
        self.attackers[a].identities += 1;
        let remote = SocketAddr::from(([11, (a >> 16) as u8, (a >> 8) as u8, a as u8], 20_000 + generation as u16));
        let base = self.latency();
        let accepted = self.slots[victim].node.as_mut().and_then(|n| n.accept(now, remote));
        let Some(victim_conn) = accepted.map(Cid::of) else {
            self.push(now + base + Duration::from_secs(1), Ev::AttackerDial { a: a as u32, victim: victim as u32 });
            return;
        };
        let seed = attack::identity_seed(self.p.seed, a, generation);
        let (client, first) = p2p_chat_core::testing::Client::dial(seed, &format!("attacker{a}"));
        let id = self.attackers[a].next_conn;
        self.attackers[a].next_conn += 1;
        let connected_at = now + base;
        let base_us = base.as_micros() as u32;
        let peer = (self.slots.len() + a) as u32;
        self.insert_link(victim, Link::new(victim_conn, peer, 0, Cid(id), base_us, connected_at));
        self.attackers[a].conns.push(attack::Conn {
            id,
            client,
            victim: victim as u32,
            victim_inc: self.slots[victim].inc,
            victim_conn: victim_conn.0,
            base_us,
            clock: connected_at,
            first,
            caught_up_at: None,
            flood_base: None,
            in_flight: 0,
            input_event: u64::MAX,
            input_bytes: 0,
        });
        self.push(connected_at, Ev::AttackerConnected { a: a as u32, conn: id });
        self.after_input(victim);
    }

    /// Attacker `a` writes `bytes` on its connection `k`: they reach the victim in order, whole.
    fn attacker_send(&mut self, a: usize, k: usize, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let c = &self.attackers[a].conns[k];
        let (victim, inc, conn, base_us) = (c.victim, c.victim_inc, Cid(c.victim_conn), c.base_us);
        let jitter = Duration::from_micros(self.rng.below(base_us as usize / 10 + 1) as u64);
        let c = &mut self.attackers[a].conns[k];
        let at = (self.now + Duration::from_micros(base_us.into()) + jitter).max(c.clock);
        c.clock = at;
        let buf = self.bufs.add(bytes, [0, 0]);
        self.push(at, Ev::Bytes { node: victim, inc, conn, buf });
    }

    /// Attacker `a` closes its connection `k` (the victim sees it after the link's latency).
    fn attacker_close(&mut self, a: usize, k: usize) {
        let c = self.attackers[a].conns.remove(k);
        let at = (self.now + Duration::from_micros(c.base_us.into())).max(c.clock);
        self.push(at, Ev::Closed { node: c.victim, inc: c.victim_inc, conn: Cid(c.victim_conn) });
        self.tally.close(self.attackers[a].kind, &c);
    }

    /// A victim's transmit on attacker `a`'s connection `conn`, measured on its way.
    fn transmit_to_attacker(&mut self, a: usize, conn: u32, buf: u32, len: usize, at: Time) {
        self.push(at, Ev::AttackerBytes { a: a as u32, conn, buf });
        let events = self.events;
        let Some(k) = self.attacker_conn(a, conn) else { return };
        let c = &mut self.attackers[a].conns[k];
        c.in_flight += len as u64;
        if c.input_event != events {
            (c.input_event, c.input_bytes) = (events, 0);
        }
        c.input_bytes += len as u64;
        let t = &mut self.tally;
        t.in_flight_bytes_max = t.in_flight_bytes_max.max(c.in_flight);
        t.answer_per_read_bytes_max = t.answer_per_read_bytes_max.max(c.input_bytes);
        // What one read may make a node queue for a peer: its watermark, plus the answer that
        // crossed it and a frame (see the core's `serve`).
        let serve = &self.config.serve;
        let cap = (serve.answer_watermark + serve.round_bytes + self.config.max_frame_bytes) as u64;
        if c.input_bytes > cap && c.input_bytes - (len as u64) <= cap {
            let (victim, queued) = (c.victim, c.input_bytes);
            self.violate(vec![format!("n{victim} queued {queued} bytes for attacker{a} in one input (cap {cap})")]);
        }
    }

    fn attacker_bytes(&mut self, a: usize, conn: u32, buf: u32) {
        let (bytes, _) = self.bufs.take(buf);
        let Some(k) = self.attacker_conn(a, conn) else { return };
        let now = self.now;
        let c = &mut self.attackers[a].conns[k];
        c.in_flight = c.in_flight.saturating_sub(bytes.len() as u64);
        let reply = match c.client.receive(&bytes) {
            Ok(reply) => reply,
            Err(_) => {
                self.tally.client_errors += 1;
                return self.attacker_close(a, k);
            }
        };
        let messages = c.client.take_messages();
        let catch_up = c.client.is_up() && c.caught_up_at.is_none();
        self.attacker_send(a, k, reply);
        if catch_up {
            let c = &mut self.attackers[a].conns[k];
            c.caught_up_at = Some(now);
            let sealed = c.client.seal(&p2p_chat_core::testing::flood::sync_everything());
            self.tally.connections += 1;
            self.tally.per_kind[self.attackers[a].kind as usize].0 += 1;
            if let Ok(sealed) = sealed {
                self.attacker_send(a, k, sealed);
            }
        }
        self.attackers[a].learn(messages);
    }

    /// Attacker `a`'s connections past their catch-up each send one tick's record of floods.
    fn attacker_tick(&mut self, a: usize) {
        let now = self.now;
        if now >= self.heal_at {
            return;
        }
        self.push(now + attack::TICK, Ev::AttackerTick(a as u32));
        let ready = |c: &attack::Conn| c.caught_up_at.is_some_and(|t| now >= t + attack::CATCH_UP);
        if !self.attackers[a].conns.iter().any(ready) {
            return;
        }
        let batch = self.attackers[a].kind.batch(&self.attackers[a].asked_ids());
        for k in 0..self.attackers[a].conns.len() {
            let c = &mut self.attackers[a].conns[k];
            if !ready(c) {
                continue;
            }
            if c.flood_base.is_none() {
                c.flood_base = Some((c.client.bytes_out, c.client.bytes_in));
            }
            if let Ok(sealed) = c.client.seal(&batch) {
                self.attacker_send(a, k, sealed);
            }
        }
    }

    /// Victim `i` banned the peer on `conn`: counted if it was an attacker.
    fn attacker_banned(&mut self, i: usize, conn: ConnId) {
        let inc = self.slots[i].inc;
        for at in &self.attackers {
            if at
                .conns
                .iter()
                .any(|c| c.victim as usize == i && c.victim_inc == inc && u64::from(c.victim_conn) == conn.0)
            {
                self.tally.bans += 1;
                self.tally.per_kind[at.kind as usize].1 += 1;
                return;
            }
        }
    }

    fn after_input(&mut self, i: usize) {
        let now = self.now;
        loop {
            let Some(node) = self.slots[i].node.as_mut() else { return };
            let Some(out) = node.poll_output() else { break };
            match out {
                Output::Transmit { conn, bytes } => self.transmit(i, conn, bytes),
                Output::Punch { conn, addr, .. } => self.punch(i, Cid::of(conn), addr),
                Output::Dial { conn, addr } => self.dial(i, Cid::of(conn), addr),
                Output::Close { conn } => {
                    let inc = self.slots[i].inc;
                    // A reset link already told the peer.
                    if let Some(l) = self.remove_link(i, inc, Cid::of(conn)).filter(|l| l.clock != Time::MAX) {
                        let at = (now + l.base()).max(l.clock);
                        self.push_closed(at, &l);
                    }
                }
                Output::Event(e) => self.record(i, e),
                Output::PortMapping(req) => self.port_mapping(i, req),
            }
        }
        let s = &mut self.slots[i];
        if let Some((t, _)) = s.node.as_ref().and_then(|n| n.poll_timeout()) {
            // A deadline already past (a restarted node's retries, restored from its snapshot)
            // is due now: queued at its own time it would turn the world's clock back.
            let t = t.max(now);
            if s.wake_at != Some(t) {
                let queued = s.wake_at.replace(t);
                if s.spare_wake == t {
                    s.spare_wake = queued.unwrap_or(Time::MAX);
                } else {
                    // Of two wake-ups still queued, the later is the likelier to come back to.
                    if let Some(q) = queued {
                        s.spare_wake = if s.spare_wake == Time::MAX { q } else { s.spare_wake.max(q) };
                    }
                    let inc = s.inc;
                    self.push(t, Ev::Wake(i as u32, inc));
                }
            }
        }
    }

    fn record(&mut self, i: usize, e: Event) {
        if let Some(d) = self.dms.as_mut() {
            d.record(self.now, &e);
        }
        if let Some(m) = self.nat.as_mut() {
            m.record(i, self.now, &e);
        }
        if let Event::PeerDown { conn, reason, .. } = &e {
            if !self.attackers.is_empty() && matches!(reason, p2p_chat_core::CloseReason::Banned) {
                self.attacker_banned(i, *conn);
            }
            return;
        }
        if let Event::Invite { room, code } = &e {
            if let Some(r) = self.moderation.as_mut().and_then(|m| m.invited(code)) {
                self.rooms.ids[r as usize] = *room;
                self.push(self.now, Ev::Invited(r));
            }
            return;
        }
        if let Event::Chat(d) = e {
            if d.origin == Origin::Local {
                if matches!(d.chat.body, Body::Text(_) | Body::Sealed(_)) {
                    let room = self.rooms.ids.iter().position(|r| *r == d.chat.room).map(|r| r as u16);
                    self.metrics.sent(i, d.chat.id, self.now, room);
                    if let Some(m) = self.moderation.as_mut() {
                        m.wrote(room, &d.chat);
                    }
                }
            } else {
                self.metrics.delivered(i, d.chat.id, self.now, d.hops);
            }
        }
    }

    fn transmit(&mut self, i: usize, conn: ConnId, bytes: Vec<u8>) {
        let (inc, conn) = (self.slots[i].inc, Cid::of(conn));
        let Some(k) = self.find(i, inc, conn) else { return };
        let l = self.slots[i].links[k];
        if l.clock == Time::MAX {
            return; // being reset
        }
        let len = bytes.len();
        if len == 0 {
            return;
        }
        // Most writes are read whole, as a small write is on a real socket; one in four is read in
        // pieces cut at one or two random points, so frames and records still arrive split many
        // thousands of times a run.
        let mut cuts = [0u32; 2];
        if self.rng.below(4) == 0 {
            cuts[1] = self.rng.below(len) as u32;
            if self.rng.below(2) == 0 {
                cuts[0] = self.rng.below(len) as u32;
            }
            if cuts[0] > cuts[1] {
                cuts.swap(0, 1);
            }
        }
        let jitter = Duration::from_micros(self.rng.below(l.base_us() as usize / 10 + 1) as u64);
        let mut at = self.now + l.base() + jitter;
        if self.lossy && self.rng.unit() < self.p.loss {
            if self.rng.unit() < 0.02 {
                return self.reset(i, inc, conn);
            }
            at = at + RTO + l.base() * 2;
        }
        let clock = l.clock.max(at);
        let buf = self.bufs.add(bytes, cuts);
        if l.peer as usize >= self.slots.len() {
            self.transmit_to_attacker(l.peer as usize - self.slots.len(), l.peer_conn.0, buf, len, clock);
        } else {
            self.push(clock, Ev::Bytes { node: l.peer, inc: l.peer_inc(), conn: l.peer_conn, buf });
        }
        self.slots[i].links[k].clock = clock;
    }

    /// Whether every direct message sent has arrived (true without `--dms`).
    pub fn dms_settled(&self) -> bool {
        self.dms.as_ref().is_none_or(|d| d.settled())
    }

    pub fn dm_report(&self) -> Option<DmReport> {
        self.dms.as_ref().map(|d| d.report())
    }

    pub fn node_count(&self) -> usize {
        self.slots.len()
    }

    pub fn is_live(&self, i: usize) -> bool {
        self.slots[i].node.is_some()
    }
}

impl Ev {
    /// The node the event runs, another node whose slot it reads (an accept's dialer), and its
    /// transmit's entry in `bufs`.
    fn reads(self) -> (Option<u32>, Option<u32>, Option<u32>) {
        match self {
            Ev::Start(i) | Ev::Wake(i, _) | Ev::SendChat(i) | Ev::Forge(i) | Ev::Crash(i) => (Some(i), None, None),
            Ev::Accept { to, from, .. } => (Some(to), Some(from), None),
            Ev::Connected { node, .. }
            | Ev::DialFailed { node, .. }
            | Ev::PunchExpired { node, .. }
            | Ev::PortMapped { node, .. }
            | Ev::Closed { node, .. } => (Some(node), None, None),
            Ev::Bytes { node, buf, .. } => (Some(node), None, Some(buf)),
            Ev::FaultStart
            | Ev::Heal
            | Ev::Check
            | Ev::RoomCheck
            | Ev::Invariants
            | Ev::AttackStop
            | Ev::SendDm(_)
            | Ev::Kick(_)
            | Ev::Grant(_)
            | Ev::Invited(_) => (None, None, None),
            Ev::AttackerDial { victim, .. } => (Some(victim), None, None),
            Ev::AttackerConnected { .. } | Ev::AttackerClosed { .. } | Ev::AttackerTick(_) => (None, None, None),
            Ev::AttackerBytes { buf, .. } => (None, None, Some(buf)),
        }
    }

    /// The connection the event is an input on.
    fn conn(self) -> Option<Cid> {
        match self {
            Ev::Connected { conn, .. }
            | Ev::DialFailed { conn, .. }
            | Ev::PunchExpired { conn, .. }
            | Ev::Bytes { conn, .. }
            | Ev::Closed { conn, .. } => Some(conn),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};
    use std::collections::BTreeSet;

    /// The queue pops exactly what a heap on (time, sequence number) would, for any mix of pushes
    /// and pops: pushes far ahead (through many buckets and chunks), at the current time, and
    /// into the window already taken. A failing case prints the operations that replay it.
    #[test]
    fn the_queue_pops_in_time_then_push_order() {
        fn prop(ops: Vec<(u8, u32)>) -> TestResult {
            let mut q = Queue::new(0);
            let mut heap = BTreeSet::new();
            let (mut now, mut seq) = (0u64, 0u32);
            // Each op pushes a burst, so buckets fill past a chunk; a pop takes a few.
            for &(kind, x) in &ops {
                if kind % 3 == 0 {
                    for _ in 0..(x % 8).min(heap.len() as u32) {
                        let Some((at, Ev::Start(s))) = q.pop() else { return TestResult::error("queue ran dry") };
                        let expected = heap.pop_first().expect("the reference has as many");
                        if (at.as_micros(), s) != expected {
                            return TestResult::error(format!("popped {:?}, expected {expected:?}", (at, s)));
                        }
                        now = at.as_micros();
                    }
                } else {
                    let burst = 1 + (x % 300) as u64;
                    for k in 0..burst {
                        // Ahead by up to 2^(x's low bits) microseconds, or (a node's timer) now.
                        let ahead = if kind % 3 == 1 { (x as u64 ^ (k * 7919)) % (1 << (x % 31)) } else { 0 };
                        q.push(Time::from_micros(now + ahead), Ev::Start(seq));
                        heap.insert((now + ahead, seq));
                        seq += 1;
                    }
                }
            }
            while let Some((at, ev)) = q.pop() {
                let Ev::Start(s) = ev else { unreachable!() };
                if Some((at.as_micros(), s)) != heap.pop_first() {
                    return TestResult::error(format!("popped {:?} out of order while draining", (at, s)));
                }
            }
            TestResult::from_bool(heap.is_empty())
        }
        QuickCheck::new().tests(300).quickcheck(prop as fn(Vec<(u8, u32)>) -> TestResult);
    }
}
