//! NAT in the simulator (`--nat F --symmetric-share S --upnp-share U`): a share F of the nodes
//! (never a bootstrap node) sits behind NAT, a share S of those behind a symmetric one. Nobody can
//! dial a node behind NAT (as an unsolicited connection at a router is dropped); its own dials go
//! out as usual. Every node runs the core's NAT traversal: dial-backs tell each node whether it is
//! reachable, and nodes behind NAT are reached through relays.
//!
//! With `--upnp-share U`, the routers of a share U of the nodes behind NAT map a port when asked
//! (the core's `Output::PortMapping`): from the grant until the node removes it, the node can be
//! dialed at its address. Every other node is told that no router answered, as a runtime is when
//! its search finds none.
//!
//! Hole punching (the core's `Output::Punch`) is modelled as TCP simultaneous open: a punch dial
//! to a node behind NAT gets through only if that node punches back within [`PUNCH_WINDOW`] and
//! neither end is behind a symmetric NAT (which maps the punch to a new port, not the one
//! announced). The two punches then make one connection, outbound at both ends, as on a real
//! network. A punch to a node not behind NAT is an ordinary dial.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use p2p_chat_core::nat::{Path, Reachability};
use p2p_chat_core::random::Rng;
use p2p_chat_core::{Event, Input, Time};
use serde::Serialize;

use p2p_chat_core::nat::mapping::{MapFailure, MapRequest, Mapped};

use super::{addr, index_of, Cid, Ev, Inc, Link, World};

/// How long a router takes to answer a mapping request.
const ROUTER_RTT: Duration = Duration::from_millis(5);

/// How far apart two punches may leave and still meet. A SYN that reaches a NAT before the
/// node behind it has sent its own is dropped, and TCP sends it again after its first
/// retransmission timeout (a second on Linux), by when the mapping exists.
pub(super) const PUNCH_WINDOW: Duration = Duration::from_secs(1);

/// Which nodes are behind NAT, and when each incarnation found its first peer.
pub(super) struct NatModel {
    behind: Vec<bool>,
    symmetric: Vec<bool>,
    /// Behind a router that maps ports when asked, and whether it holds a mapping now.
    upnp: Vec<bool>,
    mapped: Vec<bool>,
    started: Vec<Time>,
    first_peer: Vec<Option<Time>>,
    /// Punch dials waiting for the other end's, by (dialer, dialed): the dialer's incarnation and
    /// connection, and when it left.
    punching: BTreeMap<(u32, u32), (Inc, Cid, Time)>,
}

impl NatModel {
    /// `shares`: behind NAT, of those symmetric, and of those with a router that maps ports.
    pub(super) fn new(nodes: usize, bootstrap: usize, shares: (f64, f64, f64), seed: u64) -> NatModel {
        let (share, symmetric_share, upnp_share) = shares;
        let mut rng = Rng::new(seed ^ 0x6e61_7400_0000_0000);
        let behind: Vec<bool> = (0..nodes).map(|i| i >= bootstrap && rng.unit() < share).collect();
        let symmetric = behind.iter().map(|b| *b && rng.unit() < symmetric_share).collect();
        // Drawn apart from the rest, so that `--upnp-share` leaves who is behind which NAT as it was.
        let mut rng = Rng::new(seed ^ 0x7570_6e70_0000_0000);
        let upnp = behind.iter().map(|b| *b && rng.unit() < upnp_share).collect();
        NatModel {
            behind,
            symmetric,
            upnp,
            mapped: vec![false; nodes],
            started: vec![Time::ZERO; nodes],
            first_peer: vec![None; nodes],
            punching: BTreeMap::new(),
        }
    }

    /// Whether a dial to node `i` can reach it.
    pub(super) fn dialable(&self, i: usize) -> bool {
        !self.behind[i] || self.mapped[i]
    }

    pub(super) fn started(&mut self, i: usize, now: Time) {
        self.started[i] = now;
        self.first_peer[i] = None;
    }

    pub(super) fn record(&mut self, i: usize, now: Time, e: &Event) {
        if matches!(e, Event::PeerUp(_)) && self.first_peer[i].is_none() {
            self.first_peer[i] = Some(now);
        }
    }
}

/// What NAT traversal did, for the report (fields at its top level).
#[derive(Debug, Clone, Serialize)]
pub struct NatReport {
    /// Share of nodes behind NAT, and of those behind a symmetric one, as modelled.
    pub nat_share: f64,
    pub symmetric_share: f64,
    /// Share of live nodes that found themselves reachable, and behind NAT, by dial-backs.
    pub reachable_share: f64,
    pub found_behind_nat_share: f64,
    /// Share of live nodes behind NAT holding at least one relay reservation at the end.
    pub reserved_share: f64,
    /// Share of the connections at the end by path (each connection counted at both ends).
    pub paths_direct: f64,
    pub paths_punched: f64,
    pub paths_relayed: f64,
    /// Circuits and bytes per relaying node at the end (over nodes carrying at least one).
    pub relays: usize,
    pub relay_circuits_max: usize,
    pub relay_circuits_mean: f64,
    pub relay_bytes_max: u64,
    pub relay_bytes_mean: f64,
    /// The most circuits a relay allows (`RelayLimits::max_circuits`).
    pub relay_circuits_limit: usize,
    /// Hole punches the live nodes attempted (one a side), and those that gave a connection.
    pub punch_attempts: u64,
    pub punch_successes: u64,
    /// Share of live nodes behind a router that maps ports that claim reachability through it.
    pub upnp_share: f64,
    pub mapped_share: f64,
    /// The longest any live node behind NAT took from starting to its first peer.
    pub nat_first_peer_s_max: f64,
    /// Live nodes behind NAT with no peer at all at the end (must be 0).
    pub nat_isolated: usize,
}

impl World {
    pub(super) fn nat_dialable(&self, i: usize) -> bool {
        self.nat.as_ref().is_none_or(|n| n.dialable(i))
    }

    /// Node `i` punches towards `addr` from its listening port (see the module's doc).
    pub(super) fn punch(&mut self, i: usize, conn: Cid, addr: SocketAddr) {
        let now = self.now;
        let inc = self.slots[i].inc;
        let Some(j) = index_of(addr).filter(|&j| j < self.slots.len() && !self.nat_dialable(j)) else {
            return self.dial(i, conn, addr);
        };
        let cut = self.partitioned && self.slots[i].group != self.slots[j].group;
        let Some(model) = self.nat.as_mut() else { return self.dial(i, conn, addr) };
        let theirs = model.punching.remove(&(j as u32, i as u32));
        let Some((j_inc, j_conn, left)) = theirs.filter(|t| t.0 == self.slots[j].inc) else {
            // The first of the two: it waits at the other end's NAT for the other's punch.
            model.punching.insert((i as u32, j as u32), (inc, conn, now));
            return self.push(now + PUNCH_WINDOW, Ev::PunchExpired { node: i as u32, inc, conn });
        };
        let open = !cut && !model.symmetric[i] && !model.symmetric[j] && now.since(left) <= PUNCH_WINDOW;
        let lat = self.latency();
        if !open {
            self.push(now + lat, Ev::DialFailed { node: i as u32, inc, conn });
            return self.push(now + lat, Ev::DialFailed { node: j as u32, inc: j_inc, conn: j_conn });
        }
        // One connection, outbound at both ends: each sees it connected when the other's SYN
        // arrives.
        let at = now + lat;
        let base_us = lat.as_micros() as u32;
        self.insert_link(i, Link::new(conn, j as u32, j_inc, j_conn, base_us, at));
        self.insert_link(j, Link::new(j_conn, i as u32, inc, conn, base_us, at));
        self.push(at, Ev::Connected { node: i as u32, inc, conn });
        self.push(at, Ev::Connected { node: j as u32, inc: j_inc, conn: j_conn });
    }

    /// Node `i` asks its router for a mapping, or to remove one.
    pub(super) fn port_mapping(&mut self, i: usize, req: MapRequest) {
        let Some(model) = self.nat.as_mut() else { return };
        let inc = self.slots[i].inc;
        match req {
            MapRequest::Map { .. } => {
                let granted = model.upnp[i];
                self.push(self.now + ROUTER_RTT, Ev::PortMapped { node: i as u32, inc, granted });
            }
            MapRequest::Unmap { .. } => model.mapped[i] = false,
        }
    }

    pub(super) fn port_mapped(&mut self, i: usize, inc: Inc, granted: bool) {
        let Some(model) = self.nat.as_mut() else { return };
        if granted {
            model.mapped[i] = true;
        }
        if self.slots[i].inc != inc {
            return;
        }
        let answer = match granted {
            true => Ok(Mapped { external: addr(i), lease: p2p_chat_core::nat::mapping::LEASE }),
            false => Err(MapFailure::NoGateway("no router answered".into())),
        };
        self.input(i, Input::PortMapped(answer));
    }

    /// A punch that met none from the other end in time fails, as a dial whose SYN went unanswered.
    pub(super) fn punch_expired(&mut self, i: usize, inc: Inc, conn: Cid) {
        let Some(model) = self.nat.as_mut() else { return };
        let mine = (i as u32, 0)..=(i as u32, u32::MAX);
        let waiting = model.punching.range(mine).find(|(_, v)| v.0 == inc && v.1 == conn).map(|(k, _)| *k);
        if let Some(k) = waiting {
            model.punching.remove(&k);
            if self.slots[i].inc == inc {
                self.input(i, Input::DialFailed(conn.id()));
            }
        }
    }

    pub fn nat_report(&self) -> Option<NatReport> {
        let model = self.nat.as_ref()?;
        let live: Vec<usize> = (0..self.node_count()).filter(|&i| self.is_live(i)).collect();
        let share = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        let (mut reachable, mut behind_found, mut reserved, mut natted, mut isolated) = (0, 0, 0, 0, 0);
        let (mut direct, mut punched, mut relayed) = (0usize, 0usize, 0usize);
        let (mut attempts, mut successes) = (0, 0);
        let (mut upnp, mut mapped) = (0, 0);
        let mut loads = Vec::new();
        let mut first_peer_max: f64 = 0.0;
        for (i, node) in self.live() {
            match node.reachability() {
                Reachability::Reachable(_) | Reachability::Mapped(_) => reachable += 1,
                Reachability::BehindNat => behind_found += 1,
                _ => {}
            }
            for p in node.peers() {
                match p.path {
                    Path::Direct => direct += 1,
                    Path::Punched => punched += 1,
                    Path::Relayed { .. } => relayed += 1,
                }
            }
            attempts += node.stats().punch_attempts;
            successes += node.stats().punch_successes;
            let (circuits, _) = node.relay_load();
            if circuits > 0 {
                loads.push((circuits, node.stats().relay_bytes));
            }
            if model.upnp[i] {
                upnp += 1;
                mapped += usize::from(matches!(node.reachability(), Reachability::Mapped(_)));
            }
            if model.behind[i] {
                natted += 1;
                reserved += usize::from(node.relays_held() > 0);
                isolated += usize::from(node.peer_count() == 0);
                if let Some(t) = model.first_peer[i] {
                    first_peer_max = first_peer_max.max(t.since(model.started[i]).as_secs_f64());
                }
            }
        }
        let behind = model.behind.iter().filter(|b| **b).count();
        let symmetric = model.symmetric.iter().filter(|s| **s).count();
        let paths = (direct + punched + relayed).max(1);
        let mean = |f: &dyn Fn(&(usize, u64)) -> f64| {
            if loads.is_empty() {
                0.0
            } else {
                loads.iter().map(f).sum::<f64>() / loads.len() as f64
            }
        };
        Some(NatReport {
            nat_share: share(behind, model.behind.len()),
            symmetric_share: share(symmetric, behind),
            reachable_share: share(reachable, live.len()),
            found_behind_nat_share: share(behind_found, live.len()),
            reserved_share: share(reserved, natted),
            paths_direct: direct as f64 / paths as f64,
            paths_punched: punched as f64 / paths as f64,
            paths_relayed: relayed as f64 / paths as f64,
            relays: loads.len(),
            relay_circuits_max: loads.iter().map(|l| l.0).max().unwrap_or(0),
            relay_circuits_mean: mean(&|l| l.0 as f64),
            relay_bytes_max: loads.iter().map(|l| l.1).max().unwrap_or(0),
            relay_bytes_mean: mean(&|l| l.1 as f64),
            relay_circuits_limit: self.config.nat.relay.as_ref().map_or(0, |r| r.max_circuits),
            upnp_share: share(upnp, natted),
            mapped_share: share(mapped, upnp),
            punch_attempts: attempts,
            punch_successes: successes,
            nat_first_peer_s_max: first_peer_max,
            nat_isolated: isolated,
        })
    }
}
