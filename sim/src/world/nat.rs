//! NAT in the simulator (`--nat F --symmetric-share S`): a share F of the nodes (never a bootstrap
//! node) sits behind NAT, a share S of those behind a symmetric one. Nobody can dial a node behind
//! NAT (as an unsolicited connection at a router is dropped); its own dials go out as usual. Every
//! node runs the core's NAT traversal: dial-backs tell each node whether it is reachable, and
//! nodes behind NAT are reached through relays.
//!
//! Cone and symmetric NATs behave alike here, since the core does no hole punching (which is what
//! would tell them apart); the split is kept so a run says what it modelled.

use p2p_chat_core::nat::{Path, Reachability};
use p2p_chat_core::random::Rng;
use p2p_chat_core::{Event, Time};
use serde::Serialize;

use super::World;

/// Which nodes are behind NAT, and when each incarnation found its first peer.
pub(super) struct NatModel {
    behind: Vec<bool>,
    symmetric: Vec<bool>,
    started: Vec<Time>,
    first_peer: Vec<Option<Time>>,
}

impl NatModel {
    pub(super) fn new(nodes: usize, bootstrap: usize, share: f64, symmetric_share: f64, seed: u64) -> NatModel {
        let mut rng = Rng::new(seed ^ 0x6e61_7400_0000_0000);
        let behind: Vec<bool> = (0..nodes).map(|i| i >= bootstrap && rng.unit() < share).collect();
        let symmetric = behind.iter().map(|b| *b && rng.unit() < symmetric_share).collect();
        NatModel { behind, symmetric, started: vec![Time::ZERO; nodes], first_peer: vec![None; nodes] }
    }

    /// Whether a dial to node `i` can reach it.
    pub(super) fn dialable(&self, i: usize) -> bool {
        !self.behind[i]
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
    /// The longest any live node behind NAT took from starting to its first peer.
    pub nat_first_peer_s_max: f64,
    /// Live nodes behind NAT with no peer at all at the end (must be 0).
    pub nat_isolated: usize,
}

impl World {
    pub(super) fn nat_dialable(&self, i: usize) -> bool {
        self.nat.as_ref().is_none_or(|n| n.dialable(i))
    }

    pub fn nat_report(&self) -> Option<NatReport> {
        let model = self.nat.as_ref()?;
        let live: Vec<usize> = (0..self.node_count()).filter(|&i| self.is_live(i)).collect();
        let share = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        let (mut reachable, mut behind_found, mut reserved, mut natted, mut isolated) = (0, 0, 0, 0, 0);
        let (mut direct, mut relayed) = (0usize, 0usize);
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
                    // The simulator models no NAT mapping a punch could open: none is punched.
                    Path::Direct | Path::Punched => direct += 1,
                    Path::Relayed { .. } => relayed += 1,
                }
            }
            let (circuits, _) = node.relay_load();
            if circuits > 0 {
                loads.push((circuits, node.stats().relay_bytes));
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
        let paths = (direct + relayed).max(1);
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
            paths_punched: 0.0,
            paths_relayed: relayed as f64 / paths as f64,
            relays: loads.len(),
            relay_circuits_max: loads.iter().map(|l| l.0).max().unwrap_or(0),
            relay_circuits_mean: mean(&|l| l.0 as f64),
            relay_bytes_max: loads.iter().map(|l| l.1).max().unwrap_or(0),
            relay_bytes_mean: mean(&|l| l.1 as f64),
            relay_circuits_limit: self.config.nat.relay.as_ref().map_or(0, |r| r.max_circuits),
            nat_first_peer_s_max: first_peer_max,
            nat_isolated: isolated,
        })
    }
}
