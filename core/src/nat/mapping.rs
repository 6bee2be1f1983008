//! Port mapping at the router (UPnP IGD): the node asks the runtime to have the home router
//! forward its listening port, keeps the mapping alive, and removes it on leaving.
//!
//! The core decides; the runtime only talks to the router. [`Mapper`] asks for a mapping
//! ([`MapRequest::Map`]) as the node starts, renews it at half its lease, and removes it
//! ([`MapRequest::Unmap`]) when the node leaves. The runtime answers each `Map` with what the
//! router granted ([`Mapped`]) or why not ([`MapFailure`]).
//!
//! A mapped address is only a candidate: the router may itself sit behind another NAT (a carrier's),
//! or a firewall may still drop what it forwards. The node asks peers to dial it back at the mapped
//! address (see [`super::reach`]) and claims "reachable (port mapping)" only once one did. A mapping
//! that no peer can reach is removed and not asked for again.
//!
//! Failures do not storm the router: no gateway at all gives up at once (a network without one does
//! not grow one); a router that refuses or does not answer is asked [`MAX_ATTEMPTS`] times in all,
//! [`RETRY`] and then four times that apart. The model is libp2p's and iroh's port mapping services:
//! one lease, renewed at its half, released on exit.

use core::net::SocketAddr;
use std::time::Duration;

use crate::time::Time;

/// The lease asked for. An hour: a node that dies without removing its mapping leaves it behind
/// for at most that long, and renewing at its half costs one request every half hour.
pub const LEASE: Duration = Duration::from_secs(3600);
/// How long the runtime may take to answer a request (a gateway search, then two requests to
/// the router, each bounded by the runtime) before it counts as a failure.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The wait after the first failure; each later one waits four times the one before.
pub const RETRY: Duration = Duration::from_secs(60);
/// Requests made for one mapping at most, before giving up for the rest of the run.
pub const MAX_ATTEMPTS: u32 = 3;
/// How often a mapping the router granted for ever (lease 0, as some routers only do) is asked
/// for again: the router may have restarted and forgotten it.
const PERMANENT_RENEW: Duration = Duration::from_secs(1800);

/// What the node asks the runtime to do at the router ([`crate::Output::PortMapping`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapRequest {
    /// Forward TCP port `external` of the router to `internal` on this host for `lease`; answer
    /// with [`crate::Input::PortMapped`]. The router may grant another external port.
    Map { internal: u16, external: u16, lease: Duration },
    /// Remove the mapping of TCP port `external`. No answer is expected.
    Unmap { external: u16 },
}

/// What the router granted: the address peers can dial, and for how long (zero: for ever).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub external: SocketAddr,
    pub lease: Duration,
}

/// Why there is no mapping.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapFailure {
    /// No router answered the search: the network has none that maps ports (or it is off).
    #[error("no UPnP router found: {0}")]
    NoGateway(String),
    /// A router was found and refused, or did not answer a request.
    #[error("the router refused: {0}")]
    Refused(String),
}

/// What became of an answer (see [`Mapper::on_answer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A new external address, to be checked by dial-backs before it is claimed.
    Candidate(SocketAddr),
    /// The mapping held is renewed, at the same address.
    Renewed,
    /// No mapping; `gave_up`: none is asked for again this run.
    Failed { failure: MapFailure, gave_up: bool },
    /// Granted after the node stopped wanting it: remove it again.
    Unwanted(MapRequest),
    /// Not asked for: nothing changes.
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A request is due at this time.
    Waiting(Time),
    /// A request is out; its answer is overdue at `until`. `held`: the mapping being renewed.
    Asking { until: Time, held: Option<SocketAddr> },
    /// The router forwards `external` to us; renewed at `renew`.
    Held { external: SocketAddr, renew: Time },
    /// Given up, abandoned, or removed as the node left.
    Stopped,
}

/// The mapping of one listening port (see the module docs).
#[derive(Debug)]
pub struct Mapper {
    internal: u16,
    state: State,
    /// Failures in a row.
    failures: u32,
}

impl Mapper {
    /// Wants the router to forward its port `internal`: the first request is due at `now`.
    pub fn new(now: Time, internal: u16) -> Mapper {
        Mapper { internal, state: State::Waiting(now), failures: 0 }
    }

    /// When something is due: a request, a renewal, or an answer overdue.
    pub fn next_due(&self) -> Option<Time> {
        match self.state {
            State::Waiting(at) => Some(at),
            State::Asking { until, .. } => Some(until),
            State::Held { renew, .. } => Some(renew),
            State::Stopped => None,
        }
    }

    /// The mapping held (or being renewed) at the router.
    pub fn external(&self) -> Option<SocketAddr> {
        match self.state {
            State::Held { external, .. } | State::Asking { held: Some(external), .. } => Some(external),
            _ => None,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// What is due at `now`: a request to send, or (`Err`) an answer that never came, taken as a
    /// failure.
    pub fn due(&mut self, now: Time) -> Option<Result<MapRequest, Answer>> {
        match self.state {
            State::Waiting(at) if at <= now => {
                self.state = State::Asking { until: now + ANSWER_TIMEOUT, held: None };
                let external = self.internal;
                Some(Ok(MapRequest::Map { internal: self.internal, external, lease: LEASE }))
            }
            State::Held { external, renew } if renew <= now => {
                self.state = State::Asking { until: now + ANSWER_TIMEOUT, held: Some(external) };
                Some(Ok(MapRequest::Map { internal: self.internal, external: external.port(), lease: LEASE }))
            }
            State::Asking { until, .. } if until <= now => {
                Some(Err(self.fail(now, MapFailure::Refused("no answer in time".into()))))
            }
            _ => None,
        }
    }

    /// The runtime's answer to the last `Map`.
    pub fn on_answer(&mut self, now: Time, answer: Result<Mapped, MapFailure>) -> Answer {
        let held = match (self.state, &answer) {
            (State::Asking { held, .. }, _) => held,
            (State::Stopped, Ok(m)) => return Answer::Unwanted(MapRequest::Unmap { external: m.external.port() }),
            _ => return Answer::Ignored,
        };
        match answer {
            Ok(m) => {
                self.failures = 0;
                let half = if m.lease.is_zero() { PERMANENT_RENEW } else { m.lease / 2 };
                self.state = State::Held { external: m.external, renew: now + half };
                if held == Some(m.external) {
                    Answer::Renewed
                } else {
                    Answer::Candidate(m.external)
                }
            }
            Err(f) => self.fail(now, f),
        }
    }

    fn fail(&mut self, now: Time, failure: MapFailure) -> Answer {
        self.failures += 1;
        let gave_up = matches!(failure, MapFailure::NoGateway(_)) || self.failures >= MAX_ATTEMPTS;
        self.state = if gave_up { State::Stopped } else { State::Waiting(now + RETRY * 4u32.pow(self.failures - 1)) };
        Answer::Failed { failure, gave_up }
    }

    /// Stops for good (the node leaves, or no peer could reach us through the mapping): the
    /// request that removes the mapping, if one is held.
    pub fn stop(&mut self) -> Option<MapRequest> {
        let held = self.external();
        self.state = State::Stopped;
        held.map(|a| MapRequest::Unmap { external: a.port() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Time {
        Time::ZERO + Duration::from_secs(s)
    }

    fn mapped(port: u16) -> Result<Mapped, MapFailure> {
        Ok(Mapped { external: SocketAddr::from(([198, 51, 100, 7], port)), lease: LEASE })
    }

    #[test]
    fn asks_at_once_then_renews_at_half_the_lease() {
        let mut m = Mapper::new(at(0), 7000);
        assert_eq!(m.next_due(), Some(at(0)));
        let req = MapRequest::Map { internal: 7000, external: 7000, lease: LEASE };
        assert_eq!(m.due(at(0)), Some(Ok(req)));
        assert_eq!(m.due(at(1)), None, "one request at a time");
        let addr = SocketAddr::from(([198, 51, 100, 7], 7000));
        assert_eq!(m.on_answer(at(2), mapped(7000)), Answer::Candidate(addr));
        assert_eq!(m.external(), Some(addr));
        assert_eq!(m.next_due(), Some(at(2) + LEASE / 2));
        assert_eq!(m.due(at(2) + LEASE / 2), Some(Ok(req)));
        assert_eq!(m.on_answer(at(1803), mapped(7000)), Answer::Renewed);
        // The router gave another port on renewal: a new candidate, to be checked again.
        assert_eq!(m.due(at(1803) + LEASE / 2), Some(Ok(req)));
        let other = SocketAddr::from(([198, 51, 100, 7], 7001));
        assert_eq!(m.on_answer(at(3604), mapped(7001)), Answer::Candidate(other));
    }

    #[test]
    fn no_gateway_gives_up_at_once_and_a_refusing_router_is_asked_three_times() {
        let mut m = Mapper::new(at(0), 7000);
        m.due(at(0));
        let none = MapFailure::NoGateway("timed out".into());
        assert_eq!(m.on_answer(at(2), Err(none.clone())), Answer::Failed { failure: none, gave_up: true });
        assert_eq!(m.next_due(), None);

        let mut m = Mapper::new(at(0), 7000);
        let no = MapFailure::Refused("ConflictInMappingEntry".into());
        let mut asked = vec![];
        let mut t = at(0);
        while let Some(due) = m.next_due() {
            t = due;
            if let Some(Ok(_)) = m.due(t) {
                asked.push(t);
                let a = m.on_answer(t, Err(no.clone()));
                assert!(matches!(a, Answer::Failed { .. }));
            }
        }
        assert_eq!(asked, vec![at(0), at(60), at(300)]);
        assert!(m.is_stopped());
        assert_eq!(m.due(t + Duration::from_secs(86_400)), None);
    }

    #[test]
    fn an_answer_that_never_comes_is_a_failure() {
        let mut m = Mapper::new(at(0), 7000);
        m.due(at(0));
        assert_eq!(m.next_due(), Some(at(0) + ANSWER_TIMEOUT));
        assert!(matches!(m.due(at(0) + ANSWER_TIMEOUT), Some(Err(Answer::Failed { gave_up: false, .. }))));
        assert_eq!(m.next_due(), Some(at(0) + ANSWER_TIMEOUT + RETRY));
        // A late answer to the request given up on is not taken.
        assert_eq!(m.on_answer(at(61), mapped(7000)), Answer::Ignored);
    }

    #[test]
    fn stopping_removes_what_is_held_and_what_comes_after() {
        let mut m = Mapper::new(at(0), 7000);
        m.due(at(0));
        m.on_answer(at(1), mapped(7000));
        assert_eq!(m.stop(), Some(MapRequest::Unmap { external: 7000 }));
        assert_eq!(m.stop(), None);
        // Asked, then stopped before the answer: the mapping granted late is removed.
        let mut m = Mapper::new(at(0), 7000);
        m.due(at(0));
        assert_eq!(m.stop(), None);
        assert_eq!(m.on_answer(at(1), mapped(7000)), Answer::Unwanted(MapRequest::Unmap { external: 7000 }));
    }
}
