//! Whether this node can be dialed, found out by asking peers to dial it (AutoNAT-style), and the
//! prober's side of that: dialing others back, bounded.
//!
//! The asking side (`Reach`): every peer tells a node the address it sees it from
//! (`Message::Observed`). Once a node has one, it asks up to three peers to dial it back at its
//! listening port (`DialBack`); each answers with what happened (`DialBackResult`). The last three
//! answers decide by majority (a tie by the latest): reachable at the address a prober dialed, or
//! behind NAT. A new observed IP starts over, and so does a port mapping at the router (see
//! [`super::mapping`]): dial-backs are then asked at the mapped port, and one that reached it makes
//! the state `Mapped`. Answers are taken only from peers that were asked, for the nonce they were
//! given, so a peer cannot talk a node into a state unasked.
//!
//! The prober's side (`Prober`): a dial-back goes only to the IP the asking connection comes
//! from, never to an address the asker names, so a node cannot be made to dial a third party; at
//! a port of 1024 or above, at most one per asking connection at a time, at most
//! [`MAX_PROBES`] at once and [`PROBE_RATE`] over time. A probe is a bare TCP connect, closed at
//! once: no bytes are sent, so there is nothing to amplify.

use core::net::{IpAddr, SocketAddr};
use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::node::ConnId;
use crate::random::Rng;
use crate::rate::{RateLimit, Tokens};
use crate::time::Time;

/// What a node knows of its own reachability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reachability {
    /// Not found out yet (no peer has answered).
    #[default]
    Unknown,
    /// The node does not accept connections at all.
    NotListening,
    /// Peers dialed it back here.
    Reachable(SocketAddr),
    /// Peers dialed it back here, at the port the router forwards to it (see [`super::mapping`]).
    Mapped(SocketAddr),
    /// Peers could not dial it back: inbound connections come only through relays.
    BehindNat,
}

impl core::fmt::Display for Reachability {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reachability::Unknown => f.write_str("reachability not known yet"),
            Reachability::NotListening => f.write_str("not listening"),
            Reachability::Reachable(a) => write!(f, "reachable at {a}"),
            Reachability::Mapped(a) => write!(f, "reachable at {a} (port mapping)"),
            Reachability::BehindNat => f.write_str("behind NAT"),
        }
    }
}

impl Reachability {
    /// Where peers can dial this node, if they can (directly or through the router's mapping).
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Reachability::Reachable(a) | Reachability::Mapped(a) => Some(*a),
            _ => None,
        }
    }
}

/// What a prober did with a dial-back. On the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DialBackOutcome {
    /// The TCP connection opened.
    Reachable,
    /// It was refused, or timed out.
    Unreachable,
    /// The prober would not dial (its limits, or a port below 1024): says nothing either way.
    Refused,
}

/// Answers kept to decide by majority.
const ANSWERS: usize = 3;
/// Probers asked per round.
const PROBERS: usize = 3;
/// How long an ask may wait for its answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(15);
/// How soon a round is tried again while nothing is known (probers may have refused, busy).
const RETRY: Duration = Duration::from_secs(5);

struct Ask {
    conn: ConnId,
    nonce: u64,
    until: Time,
}

/// The asking side (see the module docs).
pub struct Reach {
    state: Reachability,
    /// Newest last: reachable or not, and the address the prober dialed.
    answers: VecDeque<(bool, SocketAddr)>,
    observed: Option<IpAddr>,
    asks: Vec<Ask>,
    next_round: Option<Time>,
    /// The address the router forwards to us, while a mapping is held: dial-backs are asked at
    /// its port, and a dial-back that reached it makes the state `Mapped`.
    mapped: Option<SocketAddr>,
}

impl Reach {
    pub fn new(listening: bool) -> Reach {
        let state = if listening { Reachability::Unknown } else { Reachability::NotListening };
        Reach { state, answers: VecDeque::new(), observed: None, asks: Vec::new(), next_round: None, mapped: None }
    }

    /// The router forwards `mapped` to us now (`None`: no longer). What was found out before
    /// says nothing of it: answers and asks are forgotten (an answer to an ask made before the
    /// mapping existed would count against it), and a round starts at once.
    pub fn set_mapped(&mut self, now: Time, mapped: Option<SocketAddr>) {
        if self.state == Reachability::NotListening || self.mapped == mapped {
            return;
        }
        self.mapped = mapped;
        self.answers.clear();
        self.asks.clear();
        self.next_round = Some(now);
    }

    /// The port to ask dial-backs at: the mapped one while a mapping is held, else `listen_port`.
    pub fn dial_port(&self, listen_port: u16) -> u16 {
        self.mapped.map_or(listen_port, |a| a.port())
    }

    pub fn state(&self) -> Reachability {
        self.state
    }

    /// A peer sees this node at `addr`. A new IP (the first, or another network) starts a round.
    pub fn on_observed(&mut self, now: Time, addr: SocketAddr) {
        if self.state == Reachability::NotListening || self.observed == Some(addr.ip()) {
            return;
        }
        self.observed = Some(addr.ip());
        self.answers.clear();
        self.next_round = Some(now);
    }

    /// Whether a round is due at `now`.
    pub fn round_due(&self, now: Time) -> bool {
        self.next_round.is_some_and(|t| t <= now)
    }

    /// Starts a round: up to [`PROBERS`] of `candidates` not asked already, each with a nonce.
    pub fn round(&mut self, now: Time, candidates: &[ConnId], rng: &mut Rng) -> Vec<(ConnId, u64)> {
        self.asks.retain(|a| a.until > now);
        let wait = if matches!(self.state, Reachability::Unknown) { RETRY } else { super::RECHECK };
        self.next_round = Some(now + wait);
        let mut picked = Vec::new();
        for &conn in candidates {
            if self.asks.len() >= PROBERS {
                break;
            }
            if self.asks.iter().any(|a| a.conn == conn) {
                continue;
            }
            let nonce = rng.u64();
            self.asks.push(Ask { conn, nonce, until: now + ASK_TIMEOUT });
            picked.push((conn, nonce));
        }
        picked
    }

    /// A prober's answer. Returns the new state if it changed. Unasked answers change nothing.
    pub fn on_answer(
        &mut self,
        conn: ConnId,
        nonce: u64,
        outcome: DialBackOutcome,
        dialed: SocketAddr,
    ) -> Option<Reachability> {
        let i = self.asks.iter().position(|a| a.conn == conn && a.nonce == nonce)?;
        self.asks.swap_remove(i);
        let reachable = match outcome {
            DialBackOutcome::Reachable => true,
            DialBackOutcome::Unreachable => false,
            DialBackOutcome::Refused => return None,
        };
        if self.answers.len() == ANSWERS {
            self.answers.pop_front();
        }
        self.answers.push_back((reachable, dialed));
        let yes = self.answers.iter().filter(|(r, _)| *r).count();
        let no = self.answers.len() - yes;
        let (latest, _) = *self.answers.back()?;
        let reachable = if yes == no { latest } else { yes > no };
        let state = if reachable {
            let addr = self.answers.iter().rev().find(|(r, _)| *r).map(|(_, a)| *a)?;
            if self.mapped == Some(addr) {
                Reachability::Mapped(addr)
            } else {
                Reachability::Reachable(addr)
            }
        } else {
            Reachability::BehindNat
        };
        (state != self.state).then(|| {
            self.state = state;
            state
        })
    }

    /// Whether the mapping held reached nobody: every answer since it came (two at least, so
    /// that one prober's bad luck does not remove it) says unreachable.
    pub fn mapping_unreached(&self) -> bool {
        self.mapped.is_some() && self.answers.len() >= 2 && self.answers.iter().all(|(r, _)| !r)
    }

    /// Forgets asks whose answer is overdue.
    pub fn expire(&mut self, now: Time) {
        self.asks.retain(|a| a.until > now);
    }

    pub fn conn_down(&mut self, conn: ConnId) {
        self.asks.retain(|a| a.conn != conn);
    }

    /// When a round or an ask's timeout is due.
    pub fn next_due(&self) -> Option<Time> {
        self.asks.iter().map(|a| a.until).chain(self.next_round).min()
    }
}

/// Most dial-backs in flight at once.
pub const MAX_PROBES: usize = 4;
/// Dial-backs a node makes for others: four at once, then one every two seconds.
pub const PROBE_RATE: RateLimit = RateLimit::new(0.5, 4.0);
/// How long a dial-back may take to connect.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a prober would not dial back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeRefusal {
    #[error("a dial-back for this connection is already under way")]
    InFlight,
    #[error("too many dial-backs under way")]
    Busy,
    #[error("dial-backs asked for too fast")]
    RateLimited,
    #[error("port {0} is below 1024")]
    Port(u16),
}

/// A dial-back under way: the probe connection, who asked, and what to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub probe: ConnId,
    pub asker: ConnId,
    pub nonce: u64,
    pub addr: SocketAddr,
    pub until: Time,
}

/// The prober's side (see the module docs).
pub struct Prober {
    probes: Vec<Probe>,
    tokens: Tokens,
}

impl Prober {
    pub fn new(now: Time) -> Prober {
        Prober { probes: Vec::new(), tokens: Tokens::full(PROBE_RATE.burst, now) }
    }

    /// Whether `asker`, whose connection comes from `ip`, may have a dial-back to `port`; if so,
    /// the address to dial. Checked before anything is done; a refusal changes nothing but the
    /// rate's tokens.
    pub fn check(&mut self, now: Time, asker: ConnId, ip: IpAddr, port: u16) -> Result<SocketAddr, ProbeRefusal> {
        if port < 1024 {
            return Err(ProbeRefusal::Port(port));
        }
        if self.probes.iter().any(|p| p.asker == asker) {
            return Err(ProbeRefusal::InFlight);
        }
        if self.probes.len() >= MAX_PROBES {
            return Err(ProbeRefusal::Busy);
        }
        if !self.tokens.take(now, PROBE_RATE) {
            return Err(ProbeRefusal::RateLimited);
        }
        Ok(SocketAddr::new(ip, port))
    }

    /// Records a probe `check` allowed, dialed as connection `probe`.
    pub fn start(&mut self, now: Time, probe: ConnId, asker: ConnId, nonce: u64, addr: SocketAddr) {
        self.probes.push(Probe { probe, asker, nonce, addr, until: now + PROBE_TIMEOUT });
    }

    /// The probe dialed as `conn`, if it is one, finished.
    pub fn finish(&mut self, conn: ConnId) -> Option<Probe> {
        let i = self.probes.iter().position(|p| p.probe == conn)?;
        Some(self.probes.swap_remove(i))
    }

    pub fn is_probe(&self, conn: ConnId) -> bool {
        self.probes.iter().any(|p| p.probe == conn)
    }

    /// Probes that took too long, taken out.
    pub fn expired(&mut self, now: Time) -> Vec<Probe> {
        let (gone, kept) = self.probes.iter().partition(|p| p.until <= now);
        self.probes = kept;
        gone
    }

    pub fn next_due(&self) -> Option<Time> {
        self.probes.iter().map(|p| p.until).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn answers_decide_by_majority_and_only_asked_ones_count() {
        let mut rng = Rng::new(1);
        let mut r = Reach::new(true);
        let t = Time::ZERO;
        assert!(!r.round_due(t));
        r.on_observed(t, addr("203.0.113.5:40000"));
        assert!(r.round_due(t));
        let asks = r.round(t, &[ConnId(1), ConnId(2), ConnId(3), ConnId(4)], &mut rng);
        assert_eq!(asks.len(), 3);
        let at = addr("203.0.113.5:7000");
        // A peer that was not asked, or a wrong nonce, changes nothing.
        assert_eq!(r.on_answer(ConnId(4), asks[0].1, DialBackOutcome::Reachable, at), None);
        assert_eq!(r.on_answer(asks[0].0, asks[0].1 ^ 1, DialBackOutcome::Reachable, at), None);
        assert_eq!(r.state(), Reachability::Unknown);
        assert_eq!(r.on_answer(asks[0].0, asks[0].1, DialBackOutcome::Unreachable, at), Some(Reachability::BehindNat));
        // A tie goes to the latest; then the majority holds against one dissenter.
        assert_eq!(
            r.on_answer(asks[1].0, asks[1].1, DialBackOutcome::Reachable, at),
            Some(Reachability::Reachable(at))
        );
        assert_eq!(r.on_answer(asks[2].0, asks[2].1, DialBackOutcome::Refused, at), None);
        assert_eq!(r.state(), Reachability::Reachable(at));
    }

    #[test]
    fn a_mapping_counts_only_from_answers_after_it_and_is_claimed_once_reached() {
        let mut rng = Rng::new(2);
        let mut r = Reach::new(true);
        let t = Time::ZERO;
        r.on_observed(t, addr("203.0.113.5:40000"));
        let before = r.round(t, &[ConnId(1)], &mut rng);
        let mapped = addr("203.0.113.5:7100");
        r.set_mapped(t, Some(mapped));
        assert_eq!(r.dial_port(7000), 7100);
        assert!(r.round_due(t), "a round at once, at the mapped port");
        // The answer to the ask made before the mapping is not taken.
        let at = addr("203.0.113.5:7000");
        assert_eq!(r.on_answer(before[0].0, before[0].1, DialBackOutcome::Unreachable, at), None);
        let asks = r.round(t, &[ConnId(1), ConnId(2)], &mut rng);
        assert_eq!(
            r.on_answer(asks[0].0, asks[0].1, DialBackOutcome::Reachable, mapped),
            Some(Reachability::Mapped(mapped))
        );
        assert_eq!(r.state().addr(), Some(mapped));
        assert!(!r.mapping_unreached());
        // Two answers in a row that could not reach it: the mapping is of no use.
        r.set_mapped(t, None);
        r.set_mapped(t, Some(mapped));
        let asks = r.round(t, &[ConnId(1), ConnId(2)], &mut rng);
        r.on_answer(asks[0].0, asks[0].1, DialBackOutcome::Unreachable, mapped);
        assert!(!r.mapping_unreached(), "one prober's bad luck is not enough");
        r.on_answer(asks[1].0, asks[1].1, DialBackOutcome::Unreachable, mapped);
        assert!(r.mapping_unreached());
        assert_eq!(r.state(), Reachability::BehindNat);
    }

    #[test]
    fn a_node_that_does_not_listen_never_asks() {
        let mut r = Reach::new(false);
        r.on_observed(Time::ZERO, addr("203.0.113.5:40000"));
        assert!(!r.round_due(Time::ZERO));
        assert_eq!(r.state(), Reachability::NotListening);
    }

    #[test]
    fn the_prober_dials_only_the_askers_ip_within_its_limits() {
        let t = Time::ZERO;
        let mut h = Prober::new(t);
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(h.check(t, ConnId(1), ip, 22), Err(ProbeRefusal::Port(22)));
        let a = h.check(t, ConnId(1), ip, 7000).unwrap();
        assert_eq!(a, SocketAddr::new(ip, 7000));
        h.start(t, ConnId(100), ConnId(1), 9, a);
        assert_eq!(h.check(t, ConnId(1), ip, 7001), Err(ProbeRefusal::InFlight));
        for c in 2..5 {
            let a = h.check(t, ConnId(c), ip, 7000).unwrap();
            h.start(t, ConnId(100 + c), ConnId(c), 9, a);
        }
        assert_eq!(h.check(t, ConnId(9), ip, 7000), Err(ProbeRefusal::Busy));
        assert_eq!(h.finish(ConnId(100)).map(|p| p.asker), Some(ConnId(1)));
        // The burst of four is spent: the rate refuses until tokens come back.
        assert_eq!(h.check(t, ConnId(9), ip, 7000), Err(ProbeRefusal::RateLimited));
        assert!(h.check(t + Duration::from_secs(2), ConnId(9), ip, 7000).is_ok());
        assert_eq!(h.expired(t + PROBE_TIMEOUT).len(), 3);
    }
}
