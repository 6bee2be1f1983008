//! The node's side of getting through NAT (see [`crate::nat`] for the rules): telling peers where
//! they are seen from, dial-backs asked and answered, reservations, the relay service, and the
//! circuits that carry some of the node's connections. The state machines live in `crate::nat`;
//! this module turns their answers into frames, dials and connections.

use super::*;
use crate::nat::client::Client;
use crate::nat::mapping::{Answer, MapFailure, MapRequest, Mapped, Mapper};
use crate::nat::punch::{Next, Punches};
use crate::nat::reach::{DialBackOutcome, Prober, Reach};
use crate::nat::relay::{Forward, Relay};
use crate::nat::{Path, Reachability, RelayRefusal, RelayedAddr, MAX_CIRCUIT_CHUNK, MAX_RELAYED_PER_FRAME};

/// The node's NAT state, or, when NAT traversal is off, a return from the function at hand.
macro_rules! nat {
    ($node:expr) => {
        match $node.nat.as_deref_mut() {
            Some(n) => n,
            None => return,
        }
    };
}

/// Everything the node keeps for NAT traversal. Boxed in the node: a simulator without NAT holds
/// one pointer per node for it.
pub(super) struct Nat {
    pub(super) reach: Reach,
    prober: Prober,
    pub(super) relay: Option<Relay>,
    pub(super) client: Client,
    punches: Punches,
    /// Connections that a hole punch opened, while they last.
    punched: std::collections::BTreeSet<ConnId>,
    /// The router's mapping of the listening port, when asked for (see `wants_mapping`).
    mapper: Option<Mapper>,
}

/// Whether the node asks the router for a port mapping: NAT traversal and mapping are on, and
/// it listens.
pub(super) fn wants_mapping(config: &Config) -> bool {
    config.nat != crate::nat::NatConfig::off() && config.nat.port_mapping && config.listen_port != 0
}

impl Nat {
    pub(super) fn new(config: &Config, now: Time) -> Nat {
        Nat {
            reach: Reach::new(config.listen_port != 0),
            prober: Prober::new(now),
            relay: config.nat.relay.clone().map(Relay::new),
            client: Client::default(),
            punches: Punches::new(now),
            punched: std::collections::BTreeSet::new(),
            mapper: wants_mapping(config).then(|| Mapper::new(now, config.listen_port)),
        }
    }

    fn next_due(&self) -> Option<Time> {
        let relay = self.relay.as_ref().and_then(Relay::next_due);
        let reserve = self.client.next_due();
        let punch = self.punches.next_due();
        let map = self.mapper.as_ref().and_then(Mapper::next_due);
        [self.reach.next_due(), self.prober.next_due(), relay, reserve, punch, map].into_iter().flatten().min()
    }
}

impl Node {
    /// What this node knows of its own reachability.
    pub fn reachability(&self) -> Reachability {
        match &self.nat {
            Some(n) => n.reach.state(),
            None if self.config.listen_port == 0 => Reachability::NotListening,
            None => Reachability::Unknown,
        }
    }

    /// Circuits this node relays now, and reservations it holds for others.
    pub fn relay_load(&self) -> (usize, usize) {
        self.nat.as_ref().and_then(|n| n.relay.as_ref()).map_or((0, 0), |r| (r.circuits(), r.reservations()))
    }

    /// Relays holding a reservation for this node now.
    pub fn relays_held(&self) -> usize {
        self.nat.as_ref().map_or(0, |n| n.client.held().count())
    }

    pub(super) fn arm_nat(&mut self) {
        match self.nat.as_ref().and_then(|n| n.next_due()) {
            Some(t) => self.timers.set(Timer::Nat, t),
            None => self.timers.clear(Timer::Nat),
        }
    }

    /// How `conn` reaches its peer.
    pub(super) fn path(&self, conn: ConnId) -> Path {
        match self.nat.as_ref().and_then(|n| n.client.leg(conn)).and_then(|l| self.conns.get(&l.relay)) {
            Some(relay) => Path::Relayed { relay: conn_name(relay) },
            None if self.nat.as_ref().is_some_and(|n| n.punched.contains(&conn)) => Path::Punched,
            None => Path::Direct,
        }
    }

    pub(super) fn is_leg(&self, conn: ConnId) -> bool {
        self.nat.as_ref().is_some_and(|n| n.client.has_legs() && n.client.leg(conn).is_some())
    }

    /// Up connections of their own (not circuits), in connection order.
    fn direct_up(&self, outbound_only: bool) -> Vec<ConnId> {
        let client = self.nat.as_ref().map(|n| &n.client);
        self.conns
            .iter()
            .filter(|(id, c)| matches!(c.phase, Phase::Up(_)) && client.is_none_or(|l| l.leg(**id).is_none()))
            .filter(|(_, c)| !outbound_only || c.direction() == Direction::Outbound)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A connection came up: tell the peer where we see it from, and ask of it what is due.
    pub(super) fn nat_peer_up(&mut self, now: Time, conn: ConnId, peer: PeerId) {
        let Some(nat) = self.nat.as_deref() else { return };
        if let Some(leg) = nat.client.leg(conn) {
            // The relay chose the far end: it must be the peer the circuit was asked for.
            if leg.circuit != 0 && leg.peer != peer && self.conns[&conn].direction() == Direction::Outbound {
                let msg = format!("a relay joined us to {} instead of the peer asked for", peer.short());
                self.emit(Event::Warning(msg));
                return self.close(now, conn, CloseReason::Relay(RelayRefusal::Gone), false);
            }
            self.stats.circuits_up += 1;
            // The end that accepted the circuit starts a hole punch, if both ends listen.
            let initiator = self.conns[&conn].direction() == Direction::Inbound;
            if let (Some(seen), true) = (leg.seen, self.config.listen_port != 0) {
                let next = nat!(self).punches.leg_up(now, conn, seen.ip(), initiator);
                self.punch_next(now, conn, next);
                self.arm_nat();
            }
            return;
        }
        if nat!(self).punches.succeeded(conn).is_some() {
            self.stats.punch_successes += 1;
            nat!(self).punched.insert(conn);
        }
        let addr = self.conns[&conn].addr();
        if self.config.nat.dial_back {
            self.send(conn, &Message::Observed { addr });
        }
        if self.reachability() == Reachability::BehindNat {
            self.reserve_relays(now);
        }
    }

    /// Whatever of `conn` the NAT state held goes with it. For a circuit, the relay is told.
    pub(super) fn nat_conn_down(&mut self, now: Time, conn: ConnId) {
        nat!(self).reach.conn_down(conn);
        nat!(self).punched.remove(&conn);
        if let Some((leg, next)) = nat!(self).punches.failed(now, conn) {
            self.punch_next(now, leg, next);
        }
        if let Some(leg) = nat!(self).client.remove(conn) {
            nat!(self).punches.leg_down(conn);
            if leg.circuit != 0 && self.conns.contains_key(&leg.relay) {
                self.send(leg.relay, &Message::CircuitEnd { circuit: leg.circuit });
            }
            return;
        }
        for leg in nat!(self).client.relay_down(conn) {
            self.drop_conn(now, leg, CloseReason::Relay(RelayRefusal::Gone), false, true);
        }
        if let Some(relay) = nat!(self).relay.as_mut() {
            for (circuit, other) in relay.conn_down(conn) {
                self.send(other, &Message::CircuitClosed { circuit, reason: RelayRefusal::Gone });
            }
        }
        if self.reachability() == Reachability::BehindNat {
            self.reserve_relays(now);
        }
        self.arm_nat();
    }

    /// Bytes for `conn` (a record, or handshake bytes) go through its relay if it is a circuit.
    /// Returns them if it is not.
    pub(super) fn through_relay(&mut self, conn: ConnId, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let Some(leg) = self.nat.as_ref().and_then(|n| n.client.leg(conn)).copied() else { return Some(bytes) };
        // Asked for and not open: nothing is sent on it before it opens.
        if leg.circuit != 0 {
            for chunk in bytes.chunks(MAX_CIRCUIT_CHUNK) {
                self.send(leg.relay, &Message::ToRelay { circuit: leg.circuit, bytes: chunk.to_vec() });
            }
        }
        None
    }

    pub(super) fn nat_timeout(&mut self, now: Time) {
        for p in nat!(self).prober.expired(now) {
            self.out.push_back(Output::Close { conn: p.probe });
            let msg = Message::DialBackResult { nonce: p.nonce, outcome: DialBackOutcome::Unreachable, dialed: p.addr };
            self.send(p.asker, &msg);
        }
        nat!(self).reach.expire(now);
        self.mapping_due(now);
        for (leg, next) in nat!(self).punches.due(now) {
            self.punch_next(now, leg, next);
        }
        // Reservations a relay never answered give their place up (to another relay, if due).
        nat!(self).client.to_reserve(now, &[]);
        if self.reachability() == Reachability::BehindNat {
            self.reserve_relays(now);
        }
        if self.config.nat.dial_back && nat!(self).reach.round_due(now) {
            // In random order: in connection order every newcomer would ask the bootstrap
            // nodes, whose dial-back rate then refuses most of them.
            let mut candidates = self.direct_up(false);
            let n = candidates.len();
            self.rng.choose_k(&mut candidates, n);
            let port = nat!(self).reach.dial_port(self.config.listen_port);
            for (conn, nonce) in nat!(self).reach.round(now, &candidates, &mut self.rng) {
                self.stats.dial_backs_asked += 1;
                self.send(conn, &Message::DialBack { port, nonce });
            }
        }
        if let Some(relay) = nat!(self).relay.as_mut() {
            for (circuit, a, b) in relay.expire(now) {
                for end in [a, b] {
                    self.send(end, &Message::CircuitClosed { circuit, reason: RelayRefusal::Expired });
                }
            }
        }
        self.arm_nat();
    }

    /// A dial this node made finished (`Some(true)`: connected, `Some(false)`: failed); `None` if
    /// `conn` is not a dial-back probe.
    pub(super) fn probe_done(&mut self, conn: ConnId, connected: bool) -> Option<()> {
        let p = self.nat.as_mut()?.prober.finish(conn)?;
        if connected {
            self.out.push_back(Output::Close { conn });
        }
        let outcome = if connected { DialBackOutcome::Reachable } else { DialBackOutcome::Unreachable };
        self.send(p.asker, &Message::DialBackResult { nonce: p.nonce, outcome, dialed: p.addr });
        self.arm_nat();
        Some(())
    }

    pub(super) fn is_punch_dial(&self, conn: ConnId) -> bool {
        self.nat.as_ref().is_some_and(|n| n.punches.is_dial(conn))
    }

    /// A punch dial failed: the connection goes, quietly (the address is nobody's to retry), and
    /// the punch is tried again or given up.
    pub(super) fn punch_failed(&mut self, now: Time, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.tx.remove(conn);
        }
        if let Some((leg, next)) = nat!(self).punches.failed(now, conn) {
            self.punch_next(now, leg, next);
        }
        self.arm_nat();
    }

    /// Carries out the next step of the hole punch over circuit `leg`.
    fn punch_next(&mut self, now: Time, leg: ConnId, next: Next) {
        match next {
            Next::Connect => self.send(leg, &Message::PunchConnect { port: self.config.listen_port }),
            Next::Sync => self.send(leg, &Message::PunchSync),
            Next::Dial(addr) => {
                // The direct connection plays the circuit's roles: the circuit's opener dials.
                let Some(direction) = self.conns.get(&leg).map(|c| c.direction()) else { return };
                let conn = self.new_conn(now, addr, direction, false);
                if let Some(c) = self.conns.get_mut(&conn) {
                    // Not an address for the book: only the punch opens it.
                    c.addr.set_listen(Listen::Relayed);
                }
                nat!(self).punches.dialing(leg, conn);
                self.stats.punch_attempts += 1;
                self.out.push_back(Output::Punch { conn, addr, port: self.config.listen_port });
            }
            Next::Nothing => {}
        }
    }

    pub(super) fn is_probe(&self, conn: ConnId) -> bool {
        self.nat.as_ref().is_some_and(|n| n.prober.is_probe(conn))
    }

    /// Asks relays for reservations until enough are held or asked for: peers this node dialed
    /// itself (so they are reachable), directly.
    fn reserve_relays(&mut self, now: Time) {
        if !self.config.nat.use_relays {
            return;
        }
        let candidates = self.direct_up(true);
        for relay in nat!(self).client.to_reserve(now, &candidates) {
            self.send(relay, &Message::Reserve);
        }
    }

    /// Opens circuits to up to `n` peers known to be reachable through a relay this node is
    /// connected to, and not connected yet: how a node reaches those it cannot dial.
    pub(super) fn dial_relayed(&mut self, now: Time, n: usize) {
        if !self.config.nat.use_relays || n == 0 {
            return;
        }
        let known: Vec<RelayedAddr> = nat!(self).client.known(now).copied().collect();
        if known.is_empty() {
            return;
        }
        // Peer ids are hashes of the keys: computed once a round, and only when there is
        // something to dial.
        let me = self.peer_id();
        let mut relays: Vec<(PeerId, ConnId)> =
            self.direct_up(false).into_iter().filter_map(|c| Some((self.peer_of(c)?, c))).collect();
        relays.sort_unstable();
        let up: Vec<PeerId> = self.conns.keys().filter_map(|c| self.peer_of(*c)).collect();
        let mut opened = 0;
        for e in known {
            if opened == n || nat!(self).client.is_full() {
                break;
            }
            if e.peer == me || e.relay == me || up.contains(&e.peer) || nat!(self).client.has_leg_to(&e.peer) {
                continue;
            }
            // A relay not connected is not dialed for it: `Relayed` comes unasked, and taking
            // addresses from it would let any peer fill the address book.
            let Ok(i) = relays.binary_search_by(|(p, _)| p.cmp(&e.relay)) else { continue };
            let relay = relays[i].1;
            if nat!(self).client.is_held_off(now, relay, &e.peer) {
                continue;
            }
            let conn = self.new_conn(now, self.conns[&relay].addr(), Direction::Outbound, false);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.addr.set_listen(Listen::Relayed);
            }
            nat!(self).client.asked(conn, relay, e.peer);
            self.stats.circuits_asked += 1;
            self.send(relay, &Message::CircuitOpen { to: e.peer });
            opened += 1;
        }
    }

    /// What this node tells a peer that asked for addresses, of nodes reachable through relays.
    pub(super) fn relayed_for_exchange(&mut self, now: Time) -> Vec<RelayedAddr> {
        let me = self.peer_id();
        let relay_addr = self.reachability().addr();
        let Some(nat) = self.nat.as_deref_mut() else { return Vec::new() };
        let mut entries: Vec<RelayedAddr> = match &nat.relay {
            Some(r) => r.reserved_peers().map(|p| RelayedAddr { relay: me, relay_addr, peer: *p }).collect(),
            None => Vec::new(),
        };
        entries.extend(nat.client.known(now).copied());
        entries.truncate(MAX_RELAYED_PER_FRAME);
        entries
    }

    /// A NAT traversal message from `conn`.
    pub(super) fn on_nat_message(&mut self, now: Time, conn: ConnId, msg: Message) {
        let Some(c) = self.conns.get(&conn) else { return };
        let ip = c.addr().ip();
        let Some(nat) = self.nat.as_deref() else {
            // All of it off: a peer asking for a service is told no; the rest is not for us.
            let no = match msg {
                Message::Reserve => Message::Reservation { refused: Some(RelayRefusal::Disabled) },
                Message::CircuitOpen { to } => Message::CircuitRefused { to, reason: RelayRefusal::Disabled },
                Message::DialBack { port, nonce } => {
                    let dialed = SocketAddr::new(ip, port);
                    Message::DialBackResult { nonce, outcome: DialBackOutcome::Refused, dialed }
                }
                _ => return,
            };
            return self.send(conn, &no);
        };
        let leg = nat.client.leg(conn).is_some();
        match msg {
            // Where a peer sees us from through a relay says nothing of us.
            Message::Observed { addr } if !leg => nat!(self).reach.on_observed(now, addr),
            Message::DialBack { port, nonce } if !leg && self.config.nat.dial_back => {
                match nat!(self).prober.check(now, conn, ip, port) {
                    Ok(addr) => {
                        let probe = ConnId(self.next_conn);
                        self.next_conn += 1;
                        nat!(self).prober.start(now, probe, conn, nonce, addr);
                        self.stats.dial_backs_done += 1;
                        self.out.push_back(Output::Dial { conn: probe, addr });
                    }
                    Err(_) => {
                        let dialed = SocketAddr::new(ip, port);
                        self.send(conn, &Message::DialBackResult { nonce, outcome: DialBackOutcome::Refused, dialed });
                    }
                }
            }
            // A prober that names another port than the one asked did not dial us.
            Message::DialBackResult { dialed, .. } if dialed.port() != nat.reach.dial_port(self.config.listen_port) => {
            }
            Message::DialBackResult { nonce, outcome, dialed } => {
                if let Some(state) = nat!(self).reach.on_answer(conn, nonce, outcome, dialed) {
                    self.emit(Event::Reachability(state));
                    if let Reachability::Mapped(_) = state {
                        self.stats.port_map_verified += 1;
                    }
                    if state == Reachability::BehindNat {
                        self.reserve_relays(now);
                    }
                }
                if nat!(self).reach.mapping_unreached() {
                    self.emit(Event::Warning(
                        "no peer could dial in through the router's port mapping: removed".into(),
                    ));
                    self.stop_mapping(now);
                }
            }
            Message::Reserve => {
                let peer = self.peer_of(conn);
                let answer = match (nat!(self).relay.as_mut(), peer) {
                    (Some(r), Some(p)) if !leg => r.reserve(conn, p).err(),
                    _ => Some(RelayRefusal::Disabled),
                };
                self.send(conn, &Message::Reservation { refused: answer });
            }
            Message::Reservation { refused } => {
                if nat!(self).client.answered(conn, refused.is_none()) {
                    self.stats.reservations_held += 1;
                    self.announce_reservation(conn);
                } else if let Some(why) = refused {
                    let name = conn_name(&self.conns[&conn]);
                    self.emit(Event::Warning(format!("relay {name} refused a reservation: {why}")));
                    self.reserve_relays(now);
                }
            }
            Message::Relayed { entries } => {
                if entries.len() > MAX_RELAYED_PER_FRAME {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "Relayed too long");
                }
                nat!(self).client.learn(now, entries);
                self.arm_dial(now);
            }
            Message::CircuitOpen { to } => self.on_circuit_open(now, conn, to),
            Message::CircuitIncoming { circuit, from, addr } => {
                self.on_circuit_incoming(now, conn, circuit, from, addr)
            }
            Message::CircuitOpened { circuit, to, addr } => match nat!(self).client.opened(conn, circuit, to, addr) {
                Some(leg) => {
                    if let Some(c) = self.conns.get_mut(&leg) {
                        c.since = now;
                        c.last_recv = now;
                    }
                    self.start_handshake(leg);
                }
                None => self.send(conn, &Message::CircuitEnd { circuit }),
            },
            Message::CircuitRefused { to, reason } => {
                if let Some(leg) = nat!(self).client.refused_open(now, conn, to) {
                    let name = conn_name(&self.conns[&conn]);
                    let msg = format!("relay {name} refused a circuit to {}: {reason}", to.short());
                    self.emit(Event::Warning(msg));
                    self.drop_conn(now, leg, CloseReason::Relay(reason), false, true);
                }
            }
            Message::ToRelay { circuit, bytes } => self.on_to_relay(now, conn, circuit, bytes),
            Message::FromRelay { circuit, bytes } => {
                if let Some(leg) = nat!(self).client.by_circuit(conn, circuit) {
                    self.on_bytes(now, leg, &bytes);
                }
            }
            Message::CircuitEnd { circuit } => {
                if let Some(other) = nat!(self).relay.as_mut().and_then(|r| r.end(conn, circuit)) {
                    self.send(other, &Message::CircuitClosed { circuit, reason: RelayRefusal::Gone });
                }
            }
            Message::CircuitClosed { circuit, reason } => {
                if let Some(leg) = nat!(self).client.by_circuit(conn, circuit) {
                    self.drop_conn(now, leg, CloseReason::Relay(reason), false, true);
                }
            }
            Message::PunchConnect { port } if leg => {
                let next = nat!(self).punches.on_connect(now, conn, port);
                self.punch_next(now, conn, next);
            }
            Message::PunchSync if leg => {
                let next = nat!(self).punches.on_sync(now, conn);
                self.punch_next(now, conn, next);
            }
            // Over a circuit, or with dial-backs off, or punching over a direct connection: not
            // for us.
            Message::Observed { .. } | Message::DialBack { .. } | Message::PunchConnect { .. } | Message::PunchSync => {
            }
            _ => unreachable!("not a NAT message"),
        }
        self.arm_nat();
    }

    /// A request to the router is due, or its answer overdue.
    fn mapping_due(&mut self, now: Time) {
        let Some(mapper) = nat!(self).mapper.as_mut() else { return };
        match mapper.due(now) {
            Some(Ok(req)) => {
                self.stats.port_map_attempts += 1;
                self.out.push_back(Output::PortMapping(req));
            }
            Some(Err(answer)) => self.on_map_answer(now, answer),
            None => {}
        }
    }

    /// The runtime's answer to a `MapRequest::Map`.
    pub(super) fn port_mapped(&mut self, now: Time, answer: Result<Mapped, MapFailure>) {
        let mapper = self.nat.as_mut().and_then(|n| n.mapper.as_mut());
        let answer = match (mapper, answer) {
            (Some(m), answer) => m.on_answer(now, answer),
            // Never asked for: a mapping granted anyway is not kept.
            (None, Ok(m)) => Answer::Unwanted(MapRequest::Unmap { external: m.external.port() }),
            (None, Err(_)) => Answer::Ignored,
        };
        if matches!(answer, Answer::Candidate(_) | Answer::Renewed) {
            self.stats.port_map_successes += 1;
        }
        self.on_map_answer(now, answer);
        self.arm_nat();
    }

    fn on_map_answer(&mut self, now: Time, answer: Answer) {
        match answer {
            // Claimed only once a peer dialed in through it (see `Reach::set_mapped`).
            Answer::Candidate(addr) => nat!(self).reach.set_mapped(now, Some(addr)),
            Answer::Renewed | Answer::Ignored => {}
            Answer::Failed { failure, gave_up } => {
                // A mapping that could not be renewed is gone, or soon will be.
                nat!(self).reach.set_mapped(now, None);
                // Quiet without a router: most networks have none that maps ports.
                if gave_up && !matches!(failure, MapFailure::NoGateway(_)) {
                    self.emit(Event::Warning(format!("port mapping: {failure}; not asked again")));
                }
            }
            Answer::Unwanted(req) => self.out.push_back(Output::PortMapping(req)),
        }
    }

    /// No more mapping: the one held is removed at the router (the node leaves, or nobody could
    /// reach it through it).
    pub(super) fn stop_mapping(&mut self, now: Time) {
        let Some(mapper) = nat!(self).mapper.as_mut() else { return };
        if let Some(req) = mapper.stop() {
            self.out.push_back(Output::PortMapping(req));
        }
        nat!(self).reach.set_mapped(now, None);
        self.arm_nat();
    }

    /// The router's mapping this node holds, if any.
    pub fn port_mapping(&self) -> Option<SocketAddr> {
        self.nat.as_ref()?.mapper.as_ref()?.external()
    }

    /// Tells the neighbours that this node can be reached through `relay`.
    fn announce_reservation(&mut self, relay: ConnId) {
        let Some(relay_peer) = self.peer_of(relay) else { return };
        let entry =
            RelayedAddr { relay: relay_peer, relay_addr: self.conns[&relay].listen_addr(), peer: self.peer_id() };
        for conn in self.direct_up(false) {
            self.send(conn, &Message::Relayed { entries: vec![entry] });
        }
    }

    /// As a relay: `from` asks for a circuit to `to`. Every limit is checked first.
    fn on_circuit_open(&mut self, now: Time, from: ConnId, to: PeerId) {
        let opener = self.peer_of(from);
        let leg = self.is_leg(from);
        let opened = match (nat!(self).relay.as_mut(), opener) {
            (Some(r), Some(opener)) if !leg => r.open(now, from, to).map(|(c, t)| (c, t, opener)),
            _ => Err(RelayRefusal::Disabled),
        };
        match opened {
            Ok((circuit, target, opener)) => {
                let (from_addr, to_addr) = (self.conns[&from].addr(), self.conns[&target].addr());
                self.send(target, &Message::CircuitIncoming { circuit, from: opener, addr: from_addr });
                self.send(from, &Message::CircuitOpened { circuit, to, addr: to_addr });
            }
            Err(reason) => {
                self.stats.circuits_refused += 1;
                self.send(from, &Message::CircuitRefused { to, reason });
            }
        }
    }

    /// From a relay this node holds a reservation at: `from` opened `circuit` to us.
    fn on_circuit_incoming(&mut self, now: Time, relay: ConnId, circuit: u32, from: PeerId, seen: SocketAddr) {
        let held = nat!(self).client.held().any(|c| c == relay);
        if !held || nat!(self).client.is_full() || self.leaving || circuit == 0 {
            return self.send(relay, &Message::CircuitEnd { circuit });
        }
        let conn = self.new_conn(now, self.conns[&relay].addr(), Direction::Inbound, false);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.addr.set_listen(Listen::Relayed);
        }
        nat!(self).client.incoming(conn, relay, circuit, from, seen);
        self.start_handshake(conn);
    }

    /// As a relay: bytes for the other end of `circuit`, within the circuit's limits and while
    /// the other end keeps up.
    fn on_to_relay(&mut self, now: Time, from: ConnId, circuit: u32, bytes: Vec<u8>) {
        let Some(relay) = nat!(self).relay.as_mut() else { return };
        match relay.forward(now, from, circuit, bytes.len()) {
            Forward::To(other) => {
                let queued = self.tx.get(other).map_or(0, Vec::len);
                let unsent = self.conns.get(&other).map_or(0, |c| c.unsent as usize);
                if queued + unsent >= self.config.serve.read_pause {
                    relay.close(circuit);
                    for end in [from, other] {
                        self.send(end, &Message::CircuitClosed { circuit, reason: RelayRefusal::TooSlow });
                    }
                    return;
                }
                self.stats.relay_bytes += bytes.len() as u64;
                self.send(other, &Message::FromRelay { circuit, bytes });
            }
            Forward::Close { other, reason } => {
                for end in [from, other] {
                    self.send(end, &Message::CircuitClosed { circuit, reason });
                }
            }
            Forward::Unknown => {}
        }
    }
}
