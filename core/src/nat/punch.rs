//! Hole punching: two nodes joined by a circuit dial each other at once, each from its listening
//! port, so that each NAT has a mapping for the other's packets when they arrive (TCP
//! simultaneous open). The model is libp2p's DCUtR:
//!
//! 1. The end that accepted the circuit (the *initiator* here) sends `PunchConnect` with its
//!    listening port, and times the answer.
//! 2. The other end (the *follower*) answers `PunchConnect` with its own port.
//! 3. The initiator sends `PunchSync` and dials half a round trip later; the follower dials when
//!    `PunchSync` arrives. Both packets leave at about the same moment.
//!
//! Each end dials only the IP that the relay saw the other end's connection come from (told in
//! `CircuitIncoming`/`CircuitOpened`), at the port the other end names: a peer cannot make a
//! node dial anywhere else. Attempts are bounded per circuit ([`MAX_ATTEMPTS`]) and punch dials
//! per node by a token bucket ([`PUNCH_DIALS`]). The connection that comes up plays the roles of
//! the circuit (the opener of the circuit is the handshake's dialer), and replaces the circuit.

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::node::ConnId;
use crate::rate::{RateLimit, Tokens};
use crate::time::Time;

/// Attempts per circuit before giving up (DCUtR makes 3).
pub const MAX_ATTEMPTS: u8 = 3;
/// How long an end waits for the other's next step before the attempt counts as failed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Punch dials a node makes, whoever asks: 20 a minute, 5 at once.
pub const PUNCH_DIALS: RateLimit = RateLimit::per_minute(20.0, 5.0);
/// Circuits punched through at once.
pub const MAX_PUNCHES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Initiator: `PunchConnect` sent at this time, its answer awaited.
    Asked(Time),
    /// Initiator: dial `addr` at this time.
    DialAt(Time, SocketAddr),
    /// Follower: answered, `PunchSync` awaited until this time, then dial `addr`.
    AwaitSync(Time, SocketAddr),
    /// A punch dial is in flight as this connection.
    Dialing(ConnId),
    /// Punched, or given up.
    Over,
}

#[derive(Clone, Copy, Debug)]
struct Punch {
    /// The IP the relay saw the other end come from: the only one dialed.
    peer_ip: IpAddr,
    initiator: bool,
    attempts: u8,
    step: Step,
    /// The circuit closed while a punch dial was in flight (the dial outlives it).
    gone: bool,
}

/// What the node does next for a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send `PunchConnect` with our port over the circuit.
    Connect,
    /// Send `PunchSync` over the circuit.
    Sync,
    /// Dial this address from the listening port.
    Dial(SocketAddr),
    Nothing,
}

/// The hole punches of a node, by the circuit (relayed connection) they start from.
pub struct Punches {
    by_leg: BTreeMap<ConnId, Punch>,
    dials: Tokens,
}

impl Punches {
    pub fn new(now: Time) -> Punches {
        Punches { by_leg: BTreeMap::new(), dials: Tokens::full(PUNCH_DIALS.burst, now) }
    }

    /// A circuit came up; `initiator`: this end accepted it, and starts the punch. Returns
    /// `Next::Connect` if the node should start now.
    pub fn leg_up(&mut self, now: Time, leg: ConnId, peer_ip: IpAddr, initiator: bool) -> Next {
        if self.by_leg.len() >= MAX_PUNCHES {
            return Next::Nothing;
        }
        let step = if initiator { Step::Asked(now) } else { Step::Over };
        // A follower waits for `PunchConnect`: `Over` until it comes (see `on_connect`).
        self.by_leg.insert(leg, Punch { peer_ip, initiator, attempts: 0, step, gone: false });
        if initiator {
            Next::Connect
        } else {
            Next::Nothing
        }
    }

    /// Circuit `leg` closed: its punch goes, once a dial in flight has finished.
    pub fn leg_down(&mut self, leg: ConnId) {
        match self.by_leg.get_mut(&leg) {
            Some(p) if matches!(p.step, Step::Dialing(_)) => p.gone = true,
            _ => drop(self.by_leg.remove(&leg)),
        }
    }

    /// `PunchConnect { port }` came over circuit `leg`.
    pub fn on_connect(&mut self, now: Time, leg: ConnId, port: u16) -> Next {
        let Some(p) = self.by_leg.get_mut(&leg) else { return Next::Nothing };
        if port == 0 || p.attempts >= MAX_ATTEMPTS {
            return Next::Nothing;
        }
        let addr = SocketAddr::new(p.peer_ip, port);
        match (p.initiator, p.step) {
            (true, Step::Asked(at)) => {
                // Half the round trip the answer took: when our `PunchSync` reaches the follower.
                p.step = Step::DialAt(now + now.since(at) / 2, addr);
                Next::Sync
            }
            (false, Step::Over | Step::AwaitSync(..)) => {
                p.step = Step::AwaitSync(now + STEP_TIMEOUT, addr);
                Next::Connect
            }
            _ => Next::Nothing,
        }
    }

    /// `PunchSync` came over circuit `leg`: the follower dials now, if the node's rate allows.
    pub fn on_sync(&mut self, now: Time, leg: ConnId) -> Next {
        let Some(p) = self.by_leg.get_mut(&leg) else { return Next::Nothing };
        match p.step {
            Step::AwaitSync(_, addr) if !p.initiator => {
                p.attempts += 1;
                p.step = Step::Over;
                if self.dials.take(now, PUNCH_DIALS) {
                    Next::Dial(addr)
                } else {
                    Next::Nothing
                }
            }
            _ => Next::Nothing,
        }
    }

    /// The punch dial of circuit `leg` is connection `conn`.
    pub fn dialing(&mut self, leg: ConnId, conn: ConnId) {
        if let Some(p) = self.by_leg.get_mut(&leg) {
            p.step = Step::Dialing(conn);
        }
    }

    /// Whether `conn` is a punch dial in flight.
    pub fn is_dial(&self, conn: ConnId) -> bool {
        self.by_leg.values().any(|p| p.step == Step::Dialing(conn))
    }

    /// The punch dial `conn` came up: the circuit it replaces.
    pub fn succeeded(&mut self, conn: ConnId) -> Option<ConnId> {
        let (&leg, p) = self.by_leg.iter_mut().find(|(_, p)| p.step == Step::Dialing(conn))?;
        p.step = Step::Over;
        if p.gone {
            self.by_leg.remove(&leg);
        }
        Some(leg)
    }

    /// The punch dial `conn` failed or closed before it came up. Returns the circuit and what
    /// to do for it: the initiator tries again while it has attempts left.
    pub fn failed(&mut self, now: Time, conn: ConnId) -> Option<(ConnId, Next)> {
        let (&leg, p) = self.by_leg.iter_mut().find(|(_, p)| p.step == Step::Dialing(conn))?;
        if p.gone {
            self.by_leg.remove(&leg);
            return Some((leg, Next::Nothing));
        }
        Some((leg, retry(now, p)))
    }

    /// Steps due by `now`: dials of initiators, and steps that timed out (retried or given up).
    pub fn due(&mut self, now: Time) -> Vec<(ConnId, Next)> {
        let mut out = Vec::new();
        for (leg, p) in &mut self.by_leg {
            match p.step {
                Step::DialAt(at, addr) if at <= now => {
                    p.attempts += 1;
                    p.step = Step::Over;
                    if self.dials.take(now, PUNCH_DIALS) {
                        out.push((*leg, Next::Dial(addr)));
                    } else {
                        out.push((*leg, retry(now, p)));
                    }
                }
                Step::Asked(at) if now.since(at) >= STEP_TIMEOUT => {
                    p.attempts += 1;
                    out.push((*leg, retry(now, p)));
                }
                Step::AwaitSync(until, _) if until <= now => p.step = Step::Over,
                _ => {}
            }
        }
        out.retain(|(_, n)| *n != Next::Nothing);
        out
    }

    pub fn next_due(&self) -> Option<Time> {
        self.by_leg
            .values()
            .filter_map(|p| match p.step {
                Step::DialAt(at, _) => Some(at),
                Step::Asked(at) => Some(at + STEP_TIMEOUT),
                Step::AwaitSync(until, _) => Some(until),
                _ => None,
            })
            .min()
    }
}

/// After a failed attempt: the initiator asks again while attempts remain; the follower waits.
fn retry(now: Time, p: &mut Punch) -> Next {
    if p.initiator && p.attempts < MAX_ATTEMPTS {
        p.step = Step::Asked(now);
        Next::Connect
    } else {
        p.step = Step::Over;
        Next::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn the_initiator_syncs_and_dials_half_a_round_trip_later_and_the_follower_at_once() {
        let t0 = Time::ZERO;
        let (leg, conn) = (ConnId(1), ConnId(2));
        let mut a = Punches::new(t0);
        let mut b = Punches::new(t0);
        assert_eq!(a.leg_up(t0, leg, IP, true), Next::Connect);
        assert_eq!(b.leg_up(t0, leg, IP, false), Next::Nothing);
        assert_eq!(b.on_connect(t0, leg, 4000), Next::Connect);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(a.on_connect(t1, leg, 5000), Next::Sync);
        assert_eq!(b.on_sync(t1, leg), Next::Dial(SocketAddr::new(IP, 4000)));
        assert_eq!(a.next_due(), Some(t1 + Duration::from_millis(50)));
        assert!(a.due(t1).is_empty());
        assert_eq!(a.due(t1 + Duration::from_millis(50)), vec![(leg, Next::Dial(SocketAddr::new(IP, 5000)))]);
        a.dialing(leg, conn);
        assert!(a.is_dial(conn));
        assert_eq!(a.succeeded(conn), Some(leg));
        assert!(!a.is_dial(conn));
    }

    #[test]
    fn attempts_are_bounded_and_a_sync_without_connect_dials_nothing() {
        let t0 = Time::ZERO;
        let leg = ConnId(1);
        let mut a = Punches::new(t0);
        a.leg_up(t0, leg, IP, true);
        let mut dials = 0;
        for i in 0..10u64 {
            let now = t0 + Duration::from_secs(i);
            if a.on_connect(now, leg, 1) == Next::Sync {
                // Half the round trip since the ask: due within the second.
                for (_, n) in a.due(now + Duration::from_secs(1)) {
                    if let Next::Dial(_) = n {
                        dials += 1;
                        a.dialing(leg, ConnId(100 + i));
                        a.failed(now, ConnId(100 + i));
                    }
                }
            }
        }
        assert_eq!(dials, usize::from(MAX_ATTEMPTS));
        let mut b = Punches::new(t0);
        b.leg_up(t0, leg, IP, false);
        assert_eq!(b.on_sync(t0, leg), Next::Nothing);
        assert_eq!(b.on_connect(t0, leg, 0), Next::Nothing);
        assert_eq!(b.on_connect(t0, ConnId(9), 1), Next::Nothing);
    }
}
