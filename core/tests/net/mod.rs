//! An in-memory network of real `Node`s for the core's own tests: no sockets, no sleeps.
//!
//! Deliberately small; the `sim` crate is the full simulator (faults, metrics, scale). Here a
//! connection is a pair of ordered links with a few ms of latency, bytes are split at random points
//! as TCP may, and a test can drop frames, kill nodes and watch events.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::Duration;

use p2p_chat_core::nat::mapping::{MapFailure, MapRequest, Mapped};
use p2p_chat_core::random::Rng;
use p2p_chat_core::testing::Client;
use p2p_chat_core::{Config, ConnId, Ed25519Keys, Event, Input, Node, Output, Time};

pub const T0_MS: u64 = 1_800_000_000_000;

pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, (i & 255) as u8], 7000))
}

fn index_of(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v4) if v4.port() == 7000 => {
            let o = v4.ip().octets();
            Some(((o[2] as usize) << 8) | o[3] as usize)
        }
        _ => None,
    }
}

#[derive(Debug)]
enum Ev {
    Wake(usize),
    Accept { to: usize, from: usize, dialer_conn: ConnId },
    Connected { node: usize, conn: ConnId },
    DialFailed { node: usize, conn: ConnId },
    Bytes { node: usize, conn: ConnId, bytes: Vec<u8> },
    Closed { node: usize, conn: ConnId },
    PortMapped { node: usize, answer: Result<Mapped, MapFailure> },
}

/// The router in front of a node, as far as port mapping goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Router {
    /// None that maps ports: every request finds no gateway.
    NoUpnp,
    /// Maps ports, and a mapping makes the node dialable at its address.
    Maps,
    /// Grants mappings, but behind another NAT: the node stays out of reach.
    MapsUselessly,
}

/// Decides, per event at a node, whether that node dies right there.
pub type KillHook = Box<dyn FnMut(usize, &Event) -> bool>;

pub struct Net {
    pub nodes: Vec<Option<Node>>,
    pub now: Time,
    queue: BinaryHeap<Reverse<(Time, u64, usize)>>,
    events: BTreeMap<usize, Ev>,
    seq: u64,
    /// (node, conn) -> (peer node, peer conn)
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    /// Last delivery time per directed link, to keep each connection in order.
    link_clock: BTreeMap<(usize, ConnId), Time>,
    wake_at: Vec<Option<Time>>,
    pub rng: Rng,
    /// Share of frames dropped in flight (whole frames: a model of a relay that failed mid-send).
    pub frame_loss: f64,
    pub delivered: Vec<Vec<Event>>,
    /// Called on every event, may kill nodes: (net-visible node index, event).
    pub kill_on: Option<KillHook>,
    /// Each node's side of a partition: nodes on different sides cannot reach each other.
    side: Vec<u8>,
    /// Nodes behind NAT: a dial to them fails, as an unsolicited connection at a router does.
    pub behind_nat: Vec<bool>,
    /// Each node's router (for port mapping), and the requests each node made of it.
    pub routers: Vec<Router>,
    pub map_requests: Vec<Vec<(Time, MapRequest)>>,
}

impl Net {
    pub fn new(n: usize, seed: u64, config: impl Fn(usize) -> Config) -> Net {
        Net::new_with(n, seed, config, |_, node| node)
    }

    /// `new`, each node passed through `build` as it is made (to turn features on).
    pub fn new_with(n: usize, seed: u64, config: impl Fn(usize) -> Config, build: impl Fn(usize, Node) -> Node) -> Net {
        let now = Time::from_millis(T0_MS);
        let mut net = Net {
            nodes: Vec::new(),
            now,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            links: BTreeMap::new(),
            link_clock: BTreeMap::new(),
            wake_at: vec![None; n],
            rng: Rng::new(seed),
            frame_loss: 0.0,
            delivered: vec![Vec::new(); n],
            kill_on: None,
            side: vec![0; n],
            behind_nat: vec![false; n],
            routers: vec![Router::NoUpnp; n],
            map_requests: vec![Vec::new(); n],
        };
        for i in 0..n {
            let mut c = config(i);
            c.listen_port = 7000;
            let node = Node::new(c, Box::new(Ed25519Keys::from_seed(i as u64)), seed ^ (i as u64) << 20, now);
            net.nodes.push(Some(build(i, node)));
            net.after_input(i);
        }
        net
    }

    /// Config where every node bootstraps from node 0.
    pub fn star_config(i: usize) -> Config {
        Config {
            username: format!("n{i}"),
            bootstrap: if i == 0 { vec![] } else { vec![addr(0)] },
            ..Config::default()
        }
    }

    fn push(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.events.insert(self.seq as usize, ev);
        self.queue.push(Reverse((at, self.seq, self.seq as usize)));
    }

    fn latency(&mut self) -> Duration {
        Duration::from_micros(2_000 + self.rng.below(8_000) as u64)
    }

    /// Schedules delivery on a directed link, never before what was sent on it earlier.
    fn send_on_link(&mut self, from: usize, conn: ConnId, ev_for_peer: impl FnOnce(usize, ConnId) -> Ev) {
        let Some(&(peer, peer_conn)) = self.links.get(&(from, conn)) else { return };
        let lat = self.latency();
        let at = (self.now + lat).max(*self.link_clock.get(&(from, conn)).unwrap_or(&Time::ZERO));
        self.link_clock.insert((from, conn), at);
        let ev = ev_for_peer(peer, peer_conn);
        self.push(at, ev);
    }

    /// Node `i` asks its router for a mapping, or to remove one.
    fn port_mapping(&mut self, i: usize, req: MapRequest) {
        self.map_requests[i].push((self.now, req));
        let router = self.routers[i];
        match req {
            MapRequest::Map { external, lease, .. } => {
                let answer = match router {
                    Router::NoUpnp => Err(MapFailure::NoGateway("no answer to the search".into())),
                    Router::Maps | Router::MapsUselessly => {
                        if router == Router::Maps {
                            self.behind_nat[i] = false;
                        }
                        Ok(Mapped { external: SocketAddr::new(addr(i).ip(), external), lease })
                    }
                };
                let at = self.now + self.latency();
                self.push(at, Ev::PortMapped { node: i, answer });
            }
            MapRequest::Unmap { .. } => {
                if router == Router::Maps {
                    self.behind_nat[i] = true;
                }
            }
        }
    }

    pub fn command(&mut self, i: usize, cmd: p2p_chat_core::Command) {
        if let Some(n) = self.nodes[i].as_mut() {
            n.handle_input(self.now, Input::Command(cmd));
            self.after_input(i);
        }
    }

    /// Splits the network: every connection between nodes of different sides breaks now, and
    /// dials across fail until `heal`.
    pub fn partition(&mut self, side: impl Fn(usize) -> u8) {
        self.side = (0..self.nodes.len()).map(side).collect();
        let cut: Vec<(usize, ConnId)> =
            self.links.iter().filter(|((a, _), (b, _))| self.side[*a] != self.side[*b]).map(|(k, _)| *k).collect();
        for (node, conn) in cut {
            self.links.remove(&(node, conn));
            self.input(node, Input::Closed(conn));
        }
    }

    pub fn heal(&mut self) {
        self.side.iter_mut().for_each(|s| *s = 0);
    }

    pub fn kill(&mut self, i: usize) {
        if self.nodes[i].take().is_none() {
            return;
        }
        let mine: Vec<ConnId> = self.links.keys().filter(|(n, _)| *n == i).map(|(_, c)| *c).collect();
        for conn in mine {
            self.send_on_link(i, conn, |node, conn| Ev::Closed { node, conn });
            self.links.remove(&(i, conn));
        }
    }

    /// Takes node `i` off the network with its state, as a laptop put to sleep: its links go (its
    /// peers see them close) and nothing reaches it until `resume`.
    pub fn pause(&mut self, i: usize) -> Paused {
        let conns: Vec<ConnId> = self.links.keys().filter(|(n, _)| *n == i).map(|(_, c)| *c).collect();
        let node = self.nodes[i].take().expect("a live node");
        for &conn in &conns {
            self.send_on_link(i, conn, |node, conn| Ev::Closed { node, conn });
            self.links.remove(&(i, conn));
        }
        Paused { node, conns }
    }

    /// Brings a paused node back: it learns that its connections closed while it slept, and dials
    /// again as it would.
    pub fn resume(&mut self, i: usize, paused: Paused) {
        self.nodes[i] = Some(paused.node);
        self.wake_at[i] = None;
        for conn in paused.conns {
            self.input(i, Input::Closed(conn));
        }
        self.after_input(i);
    }

    fn after_input(&mut self, i: usize) {
        loop {
            let Some(node) = self.nodes[i].as_mut() else { return };
            let Some(out) = node.poll_output() else { break };
            match out {
                Output::Transmit { conn, bytes } => self.transmit(i, conn, bytes),
                Output::Dial { conn, addr } | Output::Punch { conn, addr, .. } => {
                    let lat = self.latency();
                    let open = |j: usize| j < self.nodes.len() && self.nodes[j].is_some() && !self.behind_nat[j];
                    match index_of(addr).filter(|&j| open(j)) {
                        Some(j) => self.push(self.now + lat, Ev::Accept { to: j, from: i, dialer_conn: conn }),
                        None => self.push(self.now + lat * 2, Ev::DialFailed { node: i, conn }),
                    }
                }
                Output::Close { conn } => {
                    self.send_on_link(i, conn, |node, conn| Ev::Closed { node, conn });
                    self.links.remove(&(i, conn));
                }
                Output::PortMapping(req) => self.port_mapping(i, req),
                Output::Event(e) => {
                    let kill = self.kill_on.as_mut().is_some_and(|f| f(i, &e));
                    self.delivered[i].push(e);
                    if kill {
                        self.kill(i);
                        return;
                    }
                }
            }
        }
        let Some(node) = self.nodes[i].as_ref() else { return };
        if let Some((t, _)) = node.poll_timeout() {
            // A deadline already past (a node resumed after a pause) is due now, not back then.
            let t = t.max(self.now);
            if self.wake_at[i] != Some(t) {
                self.wake_at[i] = Some(t);
                self.push(t, Ev::Wake(i));
            }
        }
    }

    /// Splits the bytes into records (to drop some) and then into random pieces (as TCP may). A
    /// dropped record is what an attacker deleting bytes would cause: the next record fails to
    /// open, and the connection resets.
    fn transmit(&mut self, i: usize, conn: ConnId, bytes: Vec<u8>) {
        let mut kept = Vec::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        while rest.len() >= 4 {
            let len = 4 + u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let (frame, tail) = rest.split_at(len.min(rest.len()));
            if self.frame_loss == 0.0 || self.rng.unit() >= self.frame_loss {
                kept.extend_from_slice(frame);
            }
            rest = tail;
        }
        let mut data = &kept[..];
        while !data.is_empty() {
            let n = (1 + self.rng.below(600)).min(data.len());
            let piece = data[..n].to_vec();
            data = &data[n..];
            self.send_on_link(i, conn, move |node, conn| Ev::Bytes { node, conn, bytes: piece });
        }
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Time) {
        while let Some(Reverse((at, _, key))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let ev = self.events.remove(&key).expect("every queued event is stored");
            self.apply(ev);
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn apply(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Wake(i) => {
                if self.wake_at[i] == Some(now) {
                    self.wake_at[i] = None;
                    if let Some(n) = self.nodes[i].as_mut() {
                        n.handle_input(now, Input::Timeout);
                        self.after_input(i);
                    }
                }
            }
            Ev::Accept { to, from, dialer_conn } => {
                let remote = SocketAddr::from(([10, 0, (from >> 8) as u8, (from & 255) as u8], 40000));
                let dialer_alive = self.nodes[from].is_some() && self.side[from] == self.side[to];
                let accepted = match self.nodes[to].as_mut() {
                    Some(n) if dialer_alive => n.accept(now, remote),
                    _ => None,
                };
                match accepted {
                    Some(conn) => {
                        self.links.insert((to, conn), (from, dialer_conn));
                        self.links.insert((from, dialer_conn), (to, conn));
                        let lat = self.latency();
                        let at = now + lat;
                        self.link_clock.insert((to, conn), at);
                        self.push(at, Ev::Connected { node: from, conn: dialer_conn });
                        self.after_input(to);
                    }
                    None => {
                        let lat = self.latency();
                        self.push(now + lat, Ev::DialFailed { node: from, conn: dialer_conn });
                    }
                }
            }
            Ev::Connected { node, conn } => self.input(node, Input::Connected(conn)),
            Ev::PortMapped { node, answer } => self.input(node, Input::PortMapped(answer)),
            Ev::DialFailed { node, conn } => self.input(node, Input::DialFailed(conn)),
            Ev::Bytes { node, conn, bytes } => {
                if self.links.contains_key(&(node, conn)) {
                    self.input(node, Input::Received(conn, &bytes));
                }
            }
            Ev::Closed { node, conn } => {
                self.links.remove(&(node, conn));
                self.input(node, Input::Closed(conn));
            }
        }
    }

    fn input(&mut self, i: usize, input: Input<'_>) {
        if let Some(n) = self.nodes[i].as_mut() {
            n.handle_input(self.now, input);
            self.after_input(i);
        }
    }

    /// Chat ids delivered at node `i`, with how often each was delivered.
    /// The invite code node `i` was last given.
    pub fn last_invite(&self, i: usize) -> String {
        self.delivered[i]
            .iter()
            .rev()
            .find_map(|e| match e {
                p2p_chat_core::Event::Invite { code, .. } => Some(code.clone()),
                _ => None,
            })
            .expect("an invite code")
    }

    pub fn chats_at(&self, i: usize) -> BTreeMap<p2p_chat_core::ChatId, usize> {
        let mut m = BTreeMap::new();
        for e in &self.delivered[i] {
            if let Event::Chat(d) = e {
                *m.entry(d.chat.id).or_insert(0) += 1;
            }
        }
        m
    }
}

/// A node taken off the network by `Net::pause`.
pub struct Paused {
    pub node: Node,
    conns: Vec<ConnId>,
}

/// A hostile peer that completes an honest handshake with a node, then writes whatever frames a
/// test wants, sealed in its session as a real peer would (the core's test client).
pub struct Mallory {
    pub client: Client,
    /// The node's id for the connection from Mallory.
    pub conn: ConnId,
}

impl Mallory {
    /// Dials `node` from `from` and completes the handshake as identity `seed`.
    pub fn connect(node: &mut Node, seed: u64, from: SocketAddr, now: Time) -> Mallory {
        let (mut client, first) = Client::dial(seed, "mallory");
        let conn = node.accept(now, from).expect("the node accepts");
        node.handle_input(now, Input::Received(conn, &first));
        let reply = client.receive(&Mallory::drain(node, conn)).expect("the node's handshake reply");
        assert!(client.is_up(), "the node finished the handshake");
        node.handle_input(now, Input::Received(conn, &reply));
        // Opened now to keep the session's nonces in step; the messages wait in the client.
        client.receive(&Mallory::drain(node, conn)).expect("the node seals correctly");
        Mallory { client, conn }
    }

    /// Sends raw plaintext bytes (frames, or garbage) through the session.
    pub fn send(&mut self, node: &mut Node, now: Time, plaintext: &[u8]) {
        let sealed = self.client.seal(plaintext).unwrap();
        node.handle_input(now, Input::Received(self.conn, &sealed));
    }

    /// Opens bytes the node wrote to Mallory: the messages in them (and any not taken before).
    pub fn open(&mut self, bytes: &[u8]) -> Vec<p2p_chat_core::wire::Message> {
        self.client.receive(bytes).expect("the node seals correctly and its frames decode");
        self.client.take_messages()
    }

    /// Everything the node wants to write to `conn` (other outputs are dropped).
    fn drain(node: &mut Node, conn: ConnId) -> Vec<u8> {
        let mut bytes = Vec::new();
        while let Some(o) = node.poll_output() {
            if let Output::Transmit { conn: c, bytes: b } = o {
                if c == conn {
                    bytes.extend(b);
                }
            }
        }
        bytes
    }
}
