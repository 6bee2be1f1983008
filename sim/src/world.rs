//! The simulated world: virtual nodes running the real `Node`, a TCP-like network between them,
//! and the faults the scenario injects. Everything random comes from one seeded RNG, and events are
//! ordered by (virtual time, sequence number), so a seed replays a run exactly.
//!
//! Network model:
//! - A connection is two ordered byte streams. Each connection draws a base latency from the
//!   scenario's range; each piece of data adds a little jitter but never overtakes earlier data on
//!   the same connection, as with TCP.
//! - What a node transmits is cut at random points into up to three pieces, so frames arrive split
//!   and merged as on a real socket.
//! - TCP does not lose bytes inside a connection, so "loss P" is modelled as what loss does to TCP:
//!   with probability P a piece is retransmitted (delayed by an RTO of 200 ms plus two base
//!   latencies), and with probability P/50 the connection breaks (both ends see it closed).
//! - A partition resets every connection between the two halves, and dials across it fail, until
//!   it heals. A crash drops a node and everything in flight to it; its peers see the connection
//!   reset. A restart is a fresh `Node` (same key and address, no memory) that must catch up.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use p2p_chat_core::random::Rng;
use p2p_chat_core::wire::{self, Message};
use p2p_chat_core::{Body, Chat, ChatId, Config, ConnId, Ed25519Keys, Event, Input, Keys, Node, Origin, Output, Time};

use crate::cheap_keys::CheapKeys;
use crate::metrics::Metrics;
use crate::shared_chats::SharedChats;
use crate::Params;

/// Virtual time starts here (a fixed Unix time, so chat ids are the same every run).
pub const T0_MS: u64 = 1_800_000_000_000;
const PORT: u16 = 7000;
/// Retransmission timeout added to a "lost" piece (Linux's minimum RTO).
const RTO: Duration = Duration::from_millis(200);

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], PORT))
}

fn index_of(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v4) if v4.port() == PORT && v4.ip().octets()[0] == 10 => {
            let o = v4.ip().octets();
            Some(((o[1] as usize) << 16) | ((o[2] as usize) << 8) | o[3] as usize)
        }
        _ => None,
    }
}

#[derive(Debug)]
enum Ev {
    Start(usize),
    Wake(usize, u32),
    Accept { to: usize, from: usize, from_inc: u32, dialer_conn: ConnId },
    Connected { node: usize, inc: u32, conn: ConnId },
    DialFailed { node: usize, inc: u32, conn: ConnId },
    Bytes { node: usize, inc: u32, conn: ConnId, bytes: Vec<u8> },
    Closed { node: usize, inc: u32, conn: ConnId },
    SendChat(usize),
    Forge(usize),
    Crash(usize),
    FaultStart,
    Heal,
    Check,
}

struct Entry {
    at: Time,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Slot {
    node: Option<Node>,
    inc: u32,
    wake_at: Option<Time>,
    group: u8,
    /// Scheduled to crash during the fault phase (never chooses to send).
    crashes: bool,
}

#[derive(Clone, Copy)]
struct Link {
    peer: usize,
    peer_inc: u32,
    peer_conn: ConnId,
    base: Duration,
    /// Nothing sent later on this direction arrives before this.
    clock: Time,
}

pub struct World {
    p: Params,
    slots: Vec<Slot>,
    queue: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    links: BTreeMap<(usize, u32, ConnId), Link>,
    rng: Rng,
    pub now: Time,
    partitioned: bool,
    lossy: bool,
    pub metrics: Metrics,
    /// The one copy of each chat that every node keeps.
    chats: SharedChats,
    pub events: u64,
    /// End of the fault phase: heal, restart, stop losing.
    pub heal_at: Time,
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
        let crashing: Vec<usize> = order.into_iter().filter(|&i| i >= 3 || n <= 3).take(crash_n).collect();
        let mut slots: Vec<Slot> =
            (0..n).map(|_| Slot { node: None, inc: 0, wake_at: None, group: 0, crashes: false }).collect();
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
        let mut w = World {
            metrics: Metrics::new(n),
            p,
            slots,
            queue: BinaryHeap::new(),
            seq: 0,
            links: BTreeMap::new(),
            rng,
            now: t0,
            partitioned: false,
            lossy: false,
            chats: SharedChats::default(),
            events: 0,
            heal_at,
        };
        for i in 0..n {
            let at = t0 + join.mul_f64(i as f64 / n as f64);
            w.push(at, Ev::Start(i));
        }
        w.push(t0, Ev::Check);
        w.push(fault_start, Ev::FaultStart);
        let fault = Duration::from_secs_f64(w.p.fault_s);
        for i in crashing {
            let share = if w.p.crash_at_once { 0.25 } else { w.rng.unit() * 0.5 };
            w.push(fault_start + fault.mul_f64(share), Ev::Crash(i));
        }
        let senders: Vec<usize> = (0..n).filter(|&i| !w.slots[i].crashes).collect();
        for m in 0..w.p.messages {
            let s = senders[w.rng.below(senders.len())];
            // Chats are spread over the fault phase's first 80%, in order.
            let at = fault_start + fault.mul_f64(0.8 * m as f64 / w.p.messages.max(1) as f64);
            w.push(at, Ev::SendChat(s));
        }
        for _ in 0..w.p.forgeries {
            let at = fault_start + fault.mul_f64(w.rng.unit() * 0.8);
            let i = w.rng.below(n);
            w.push(at, Ev::Forge(i));
        }
        w.push(heal_at, Ev::Heal);
        w
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Entry { at, seq: self.seq, ev }));
    }

    fn config(&self, i: usize) -> Config {
        let bootstrap = (0..self.p.nodes.min(3)).filter(|&b| b != i).map(addr).collect();
        Config {
            username: format!("n{i}"),
            listen_port: PORT,
            bootstrap,
            fanout: self.p.fanout,
            ttl: self.p.ttl,
            repair: self.p.repair,
            announce_presence: self.p.joins,
            target_peers: self.p.target_peers.min(self.p.nodes.saturating_sub(1)).max(1),
            ..Config::default()
        }
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
    pub fn run_until(&mut self, until: Time, mut progress: impl FnMut(&World)) {
        let mut next_progress = self.now;
        while let Some(Reverse(e)) = self.queue.peek() {
            if e.at > until {
                break;
            }
            let Reverse(e) = self.queue.pop().expect("peeked");
            self.now = e.at;
            self.events += 1;
            self.apply(e.ev);
            if self.now >= next_progress {
                progress(self);
                next_progress = self.now + Duration::from_secs(1);
            }
        }
        self.now = self.now.max(until);
    }

    fn apply(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Start(i) => {
                let seed =
                    self.p.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((self.slots[i].inc as u64) << 48);
                let mut node = Node::new(self.config(i), self.keys(i), seed, now);
                node.share_chats(Box::new(self.chats.clone()));
                self.slots[i].node = Some(node);
                self.slots[i].wake_at = None;
                self.metrics.restarted(i);
                self.after_input(i);
            }
            Ev::Wake(i, inc) => {
                let s = &mut self.slots[i];
                if s.inc == inc && s.wake_at == Some(now) {
                    s.wake_at = None;
                    self.input(i, Input::Timeout);
                }
            }
            Ev::Accept { to, from, from_inc, dialer_conn } => self.accept(to, from, from_inc, dialer_conn),
            Ev::Connected { node, inc, conn } => {
                if self.slots[node].inc == inc {
                    self.input(node, Input::Connected(conn));
                }
            }
            Ev::DialFailed { node, inc, conn } => {
                if self.slots[node].inc == inc {
                    self.input(node, Input::DialFailed(conn));
                }
            }
            Ev::Bytes { node, inc, conn, bytes } => {
                if self.slots[node].inc == inc && self.links.contains_key(&(node, inc, conn)) {
                    self.input(node, Input::Received(conn, &bytes));
                }
            }
            Ev::Closed { node, inc, conn } => {
                if self.slots[node].inc == inc && self.links.remove(&(node, inc, conn)).is_some() {
                    self.input(node, Input::Closed(conn));
                }
            }
            Ev::SendChat(i) => {
                let text = format!("chat {} from n{i}", self.metrics.sent_len());
                self.input(i, Input::Command(p2p_chat_core::Command::Chat(text)));
            }
            Ev::Forge(i) => self.forge(i),
            Ev::Crash(i) => self.crash(i),
            Ev::FaultStart => {
                self.lossy = self.p.loss > 0.0;
                let baseline: Vec<p2p_chat_core::Stats> = self.live().map(|(_, n)| n.stats().clone()).collect();
                self.metrics.baseline(&baseline);
                if !self.p.partition {
                    return;
                }
                self.partitioned = true;
                let cross: Vec<(usize, u32, ConnId)> = self
                    .links
                    .iter()
                    .filter(|((n, _, _), l)| self.slots[*n].group != self.slots[l.peer].group)
                    .map(|(k, _)| *k)
                    .collect();
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
                        self.push(now, Ev::Start(i));
                    }
                }
            }
            Ev::Check => {
                let target = self.p.target_peers.min(self.p.nodes.saturating_sub(1)).max(1);
                let full = self.live().all(|(_, n)| n.peers().len() >= target.min(3));
                if full && self.metrics.full_peer_set_at.is_none() {
                    self.metrics.full_peer_set_at = Some(now);
                } else if !full {
                    self.push(now + Duration::from_millis(500), Ev::Check);
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

    fn accept(&mut self, to: usize, from: usize, from_inc: u32, dialer_conn: ConnId) {
        let now = self.now;
        let cut = self.partitioned && self.slots[to].group != self.slots[from].group;
        let remote = SocketAddr::from(([10, (from >> 16) as u8, (from >> 8) as u8, from as u8], 40_000));
        let dialer_alive = self.slots[from].inc == from_inc;
        let accepted = match self.slots[to].node.as_mut() {
            Some(n) if !cut && dialer_alive => n.accept(now, remote),
            _ => None,
        };
        let base = self.latency();
        match accepted {
            Some(conn) => {
                let to_inc = self.slots[to].inc;
                let connected_at = now + base;
                self.links.insert(
                    (to, to_inc, conn),
                    Link { peer: from, peer_inc: from_inc, peer_conn: dialer_conn, base, clock: connected_at },
                );
                self.links.insert(
                    (from, from_inc, dialer_conn),
                    Link { peer: to, peer_inc: to_inc, peer_conn: conn, base, clock: now },
                );
                self.push(connected_at, Ev::Connected { node: from, inc: from_inc, conn: dialer_conn });
                self.after_input(to);
            }
            None => self.push(now + base, Ev::DialFailed { node: from, inc: from_inc, conn: dialer_conn }),
        }
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.p.latency_ms;
        Duration::from_micros(lo * 1000 + self.rng.below(((hi - lo) * 1000 + 1) as usize) as u64)
    }

    /// Both ends of a connection see it closed (after the link's latency); nothing more is sent.
    fn reset(&mut self, n: usize, inc: u32, conn: ConnId) {
        let Some(l) = self.links.get_mut(&(n, inc, conn)) else { return };
        if l.clock == Time::MAX {
            return;
        }
        l.clock = Time::MAX;
        let l = *l;
        if let Some(p) = self.links.get_mut(&(l.peer, l.peer_inc, l.peer_conn)) {
            p.clock = Time::MAX;
        }
        let at = self.now + l.base;
        self.push(at, Ev::Closed { node: n, inc, conn });
        self.push(at, Ev::Closed { node: l.peer, inc: l.peer_inc, conn: l.peer_conn });
    }

    fn crash(&mut self, i: usize) {
        let Some(node) = self.slots[i].node.take() else { return };
        self.metrics.retire(node.stats());
        let inc = self.slots[i].inc;
        let mine: Vec<ConnId> =
            self.links.range((i, inc, ConnId(0))..=(i, inc, ConnId(u64::MAX))).map(|(k, _)| k.2).collect();
        for conn in mine {
            if let Some(l) = self.links.remove(&(i, inc, conn)) {
                let at = self.now + l.base;
                self.push(at, Ev::Closed { node: l.peer, inc: l.peer_inc, conn: l.peer_conn });
            }
        }
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
        if self.links.contains_key(&(i, inc, conn)) {
            self.input(i, Input::Received(conn, &bytes));
        }
    }

    fn after_input(&mut self, i: usize) {
        let now = self.now;
        loop {
            let Some(node) = self.slots[i].node.as_mut() else { return };
            let Some(out) = node.poll_output() else { break };
            match out {
                Output::Transmit { conn, bytes } => self.transmit(i, conn, bytes),
                Output::Dial { conn, addr } => {
                    let inc = self.slots[i].inc;
                    let lat = self.latency();
                    match index_of(addr).filter(|&j| j < self.slots.len()) {
                        Some(j) => {
                            self.push(now + lat, Ev::Accept { to: j, from: i, from_inc: inc, dialer_conn: conn })
                        }
                        None => self.push(now + lat, Ev::DialFailed { node: i, inc, conn }),
                    }
                }
                Output::Close { conn } => {
                    let inc = self.slots[i].inc;
                    // A reset link already told the peer.
                    if let Some(l) = self.links.remove(&(i, inc, conn)).filter(|l| l.clock != Time::MAX) {
                        let at = (now + l.base).max(l.clock);
                        self.push(at, Ev::Closed { node: l.peer, inc: l.peer_inc, conn: l.peer_conn });
                    }
                }
                Output::Event(e) => self.record(i, e),
            }
        }
        let s = &mut self.slots[i];
        if let Some((t, _)) = s.node.as_ref().and_then(|n| n.poll_timeout()) {
            if s.wake_at != Some(t) {
                s.wake_at = Some(t);
                let inc = s.inc;
                self.push(t, Ev::Wake(i, inc));
            }
        }
    }

    fn record(&mut self, i: usize, e: Event) {
        if let Event::Chat(d) = e {
            if d.origin == Origin::Local {
                if matches!(d.chat.body, Body::Text(_)) {
                    self.metrics.sent(d.chat.id, self.now);
                    self.metrics.have[i].insert(d.chat.id);
                }
            } else {
                self.metrics.delivered(i, d.chat.id, self.now, d.hops);
            }
        }
    }

    fn transmit(&mut self, i: usize, conn: ConnId, bytes: Vec<u8>) {
        let inc = self.slots[i].inc;
        let Some(l) = self.links.get(&(i, inc, conn)).copied() else { return };
        if l.clock == Time::MAX {
            return; // being reset
        }
        let pieces = 1 + self.rng.below(3);
        let mut cuts: Vec<usize> = (1..pieces).map(|_| self.rng.below(bytes.len().max(1))).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut start = 0;
        let mut clock = l.clock;
        for end in cuts.into_iter().chain(std::iter::once(bytes.len())) {
            if end <= start {
                continue;
            }
            let jitter = Duration::from_micros(self.rng.below(l.base.as_micros() as usize / 10 + 1) as u64);
            let mut at = self.now + l.base + jitter;
            if self.lossy && self.rng.unit() < self.p.loss {
                if self.rng.unit() < 0.02 {
                    return self.reset(i, inc, conn);
                }
                at = at + RTO + l.base * 2;
            }
            clock = clock.max(at);
            let piece = bytes[start..end].to_vec();
            self.push(clock, Ev::Bytes { node: l.peer, inc: l.peer_inc, conn: l.peer_conn, bytes: piece });
            start = end;
        }
        if let Some(link) = self.links.get_mut(&(i, inc, conn)) {
            link.clock = clock;
        }
    }

    pub fn node_count(&self) -> usize {
        self.slots.len()
    }

    pub fn is_live(&self, i: usize) -> bool {
        self.slots[i].node.is_some()
    }
}
