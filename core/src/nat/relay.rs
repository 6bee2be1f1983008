//! The relay service: reservations for nodes nobody can dial, and circuits that join another peer
//! to one of them. Every limit is checked before the work it bounds is done: reservations and
//! circuits per relay, circuits per peer (as either end), the rate at which a peer opens them,
//! and the bytes and time each circuit may use. A circuit past its bytes or time is closed at both
//! ends with the reason; a refused ask is answered with the reason and changes nothing.
//!
//! The relay forwards what one end sends as it comes (`ToRelay` in, `FromRelay` out): it is the
//! ends' Noise session, which the relay cannot read. A circuit's id is chosen by the relay and
//! names it on both legs.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{RelayRefusal, CIRCUIT_OPENS};
use crate::identity::PeerId;
use crate::node::ConnId;
use crate::rate::Tokens;
use crate::time::Time;

/// What a relay allows. The defaults carry a few chat connections per relayed node for half an
/// hour each (a chat connection moves a few kilobytes a minute); a connection that outlives its
/// circuit is opened again through a relay, so the limits bound a relay's work, not a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Nodes holding a reservation at once.
    pub max_reservations: usize,
    /// Circuits at once (`--relay-limit`).
    pub max_circuits: usize,
    /// Circuits one peer may be an end of at once.
    pub max_circuits_per_peer: usize,
    /// Bytes one circuit may carry, both ways together.
    pub circuit_bytes: u64,
    /// How long one circuit may last.
    pub circuit_duration: Duration,
}

impl Default for RelayLimits {
    fn default() -> RelayLimits {
        RelayLimits {
            max_reservations: 32,
            max_circuits: 16,
            max_circuits_per_peer: 4,
            circuit_bytes: 4 << 20,
            circuit_duration: Duration::from_secs(30 * 60),
        }
    }
}

struct Circuit {
    /// The end that opened it, and the end that held the reservation.
    opener: ConnId,
    target: ConnId,
    bytes: u64,
    until: Time,
}

impl Circuit {
    fn other(&self, conn: ConnId) -> Option<ConnId> {
        if conn == self.opener {
            Some(self.target)
        } else if conn == self.target {
            Some(self.opener)
        } else {
            None
        }
    }
}

/// What to do with bytes that came in on a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Pass them to this connection.
    To(ConnId),
    /// The circuit is over (bytes or time used up): tell both ends, forward nothing.
    Close { other: ConnId, reason: RelayRefusal },
    /// No such circuit with this connection at an end (closed a moment ago, or made up).
    Unknown,
}

/// Counters for `/stats` and the simulator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub circuits_opened: u64,
    pub circuits_refused: u64,
    pub reservations_refused: u64,
    pub bytes_relayed: u64,
}

/// A node's relay service (see the module docs).
pub struct Relay {
    limits: RelayLimits,
    reservations: BTreeMap<ConnId, PeerId>,
    circuits: BTreeMap<u32, Circuit>,
    /// Each peer's circuit-open rate: an entry per connection that asked, gone with it.
    opens: BTreeMap<ConnId, Tokens>,
    next_id: u32,
    pub stats: RelayStats,
}

impl Relay {
    pub fn new(limits: RelayLimits) -> Relay {
        Relay {
            limits,
            reservations: BTreeMap::new(),
            circuits: BTreeMap::new(),
            opens: BTreeMap::new(),
            next_id: 1,
            stats: RelayStats::default(),
        }
    }

    pub fn limits(&self) -> &RelayLimits {
        &self.limits
    }

    /// `peer`, connected as `conn`, asks to be reachable through this relay.
    pub fn reserve(&mut self, conn: ConnId, peer: PeerId) -> Result<(), RelayRefusal> {
        if !self.reservations.contains_key(&conn) && self.reservations.len() >= self.limits.max_reservations {
            self.stats.reservations_refused += 1;
            return Err(RelayRefusal::Full);
        }
        self.reservations.insert(conn, peer);
        Ok(())
    }

    /// The peer connected as `from` asks for a circuit to `to`. Returns the circuit's id and the
    /// target's connection.
    pub fn open(&mut self, now: Time, from: ConnId, to: PeerId) -> Result<(u32, ConnId), RelayRefusal> {
        let r = self.check_open(now, from, to);
        match r {
            Ok(target) => {
                let id = self.free_id();
                let until = now + self.limits.circuit_duration;
                self.circuits.insert(id, Circuit { opener: from, target, bytes: 0, until });
                self.stats.circuits_opened += 1;
                Ok((id, target))
            }
            Err(e) => {
                self.stats.circuits_refused += 1;
                Err(e)
            }
        }
    }

    fn check_open(&mut self, now: Time, from: ConnId, to: PeerId) -> Result<ConnId, RelayRefusal> {
        let tokens = self.opens.entry(from).or_insert_with(|| Tokens::full(CIRCUIT_OPENS.burst, now));
        if !tokens.take(now, CIRCUIT_OPENS) {
            return Err(RelayRefusal::RateLimited);
        }
        let target = self.reservations.iter().find(|(c, p)| **p == to && **c != from).map(|(c, _)| *c);
        let target = target.ok_or(RelayRefusal::NoReservation)?;
        if self.circuits.len() >= self.limits.max_circuits {
            return Err(RelayRefusal::Full);
        }
        let ends = |c: ConnId| self.circuits.values().filter(|x| x.other(c).is_some()).count();
        if ends(from) >= self.limits.max_circuits_per_peer || ends(target) >= self.limits.max_circuits_per_peer {
            return Err(RelayRefusal::PeerFull);
        }
        Ok(target)
    }

    fn free_id(&mut self) -> u32 {
        // At most `max_circuits` are taken, so this finds one within that many steps.
        while self.circuits.contains_key(&self.next_id) || self.next_id == 0 {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// `len` bytes came from `from` on circuit `id`.
    pub fn forward(&mut self, now: Time, from: ConnId, id: u32, len: usize) -> Forward {
        let Some(c) = self.circuits.get_mut(&id) else { return Forward::Unknown };
        let Some(other) = c.other(from) else { return Forward::Unknown };
        c.bytes += len as u64;
        let reason = if c.bytes > self.limits.circuit_bytes {
            RelayRefusal::BytesExceeded
        } else if now >= c.until {
            RelayRefusal::Expired
        } else {
            self.stats.bytes_relayed += len as u64;
            return Forward::To(other);
        };
        self.circuits.remove(&id);
        Forward::Close { other, reason }
    }

    /// The end `from` closed circuit `id`: the other end to tell, if it was one.
    pub fn end(&mut self, from: ConnId, id: u32) -> Option<ConnId> {
        let other = self.circuits.get(&id)?.other(from)?;
        self.circuits.remove(&id);
        Some(other)
    }

    /// Closes circuit `id` from the relay's side (the other end is too slow): its two ends.
    pub fn close(&mut self, id: u32) -> Option<(ConnId, ConnId)> {
        self.circuits.remove(&id).map(|c| (c.opener, c.target))
    }

    /// `conn` went away: its reservation and rate go, and its circuits close. Returns each
    /// circuit's id and other end, to be told.
    pub fn conn_down(&mut self, conn: ConnId) -> Vec<(u32, ConnId)> {
        self.reservations.remove(&conn);
        self.opens.remove(&conn);
        let gone: Vec<(u32, ConnId)> =
            self.circuits.iter().filter_map(|(id, c)| c.other(conn).map(|o| (*id, o))).collect();
        for (id, _) in &gone {
            self.circuits.remove(id);
        }
        gone
    }

    /// Circuits whose time is up at `now`, taken out: id and both ends.
    pub fn expire(&mut self, now: Time) -> Vec<(u32, ConnId, ConnId)> {
        let gone: Vec<(u32, ConnId, ConnId)> =
            self.circuits.iter().filter(|(_, c)| c.until <= now).map(|(id, c)| (*id, c.opener, c.target)).collect();
        for (id, _, _) in &gone {
            self.circuits.remove(id);
        }
        gone
    }

    pub fn next_due(&self) -> Option<Time> {
        self.circuits.values().map(|c| c.until).min()
    }

    pub fn circuits(&self) -> usize {
        self.circuits.len()
    }

    pub fn reservations(&self) -> usize {
        self.reservations.len()
    }

    /// Whether `conn` holds a reservation here.
    pub fn has_reservation(&self, conn: ConnId) -> bool {
        self.reservations.contains_key(&conn)
    }

    /// The peers holding reservations, in connection order.
    pub fn reserved_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.reservations.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    #[test]
    fn circuits_are_bounded_per_relay_per_peer_and_in_rate() {
        let limits = RelayLimits { max_circuits: 6, max_circuits_per_peer: 4, ..RelayLimits::default() };
        let mut r = Relay::new(limits);
        let t = Time::ZERO;
        r.reserve(ConnId(1), peer(1)).unwrap();
        r.reserve(ConnId(2), peer(2)).unwrap();
        assert_eq!(r.open(t, ConnId(9), peer(7)), Err(RelayRefusal::NoReservation));
        // A hostile peer opens as fast as it may: its burst of four, then the rate refuses it.
        let mut opened = 0;
        for _ in 0..10 {
            if r.open(t, ConnId(9), peer(1)).is_ok() {
                opened += 1;
            }
        }
        assert_eq!(opened, 3, "one of its burst went to the unknown peer above");
        // Later, within its rate, it reaches its share of circuits and no more.
        assert!(r.open(t + Duration::from_secs(5), ConnId(9), peer(2)).is_ok());
        assert_eq!(r.open(t + Duration::from_secs(10), ConnId(9), peer(2)), Err(RelayRefusal::PeerFull));
        // Others still get circuits until the relay's own limit.
        assert!(r.open(t, ConnId(10), peer(2)).is_ok());
        assert!(r.open(t, ConnId(11), peer(2)).is_ok());
        assert_eq!(r.open(t, ConnId(12), peer(2)), Err(RelayRefusal::Full));
        assert_eq!(r.circuits(), 6);
        assert_eq!(r.stats.circuits_refused, 10);
    }

    #[test]
    fn a_circuit_ends_past_its_bytes_or_its_time_and_with_either_end() {
        let limits = RelayLimits { circuit_bytes: 100, ..RelayLimits::default() };
        let mut r = Relay::new(limits.clone());
        let t = Time::ZERO;
        r.reserve(ConnId(1), peer(1)).unwrap();
        let (id, target) = r.open(t, ConnId(5), peer(1)).unwrap();
        assert_eq!(target, ConnId(1));
        assert_eq!(r.forward(t, ConnId(5), id, 60), Forward::To(ConnId(1)));
        assert_eq!(r.forward(t, ConnId(7), id, 1), Forward::Unknown, "not an end of it");
        assert_eq!(
            r.forward(t, ConnId(1), id, 60),
            Forward::Close { other: ConnId(5), reason: RelayRefusal::BytesExceeded }
        );
        assert_eq!(r.forward(t, ConnId(5), id, 1), Forward::Unknown);
        let (id, _) = r.open(t, ConnId(5), peer(1)).unwrap();
        assert_eq!(r.next_due(), Some(t + limits.circuit_duration));
        assert_eq!(r.expire(t + limits.circuit_duration), vec![(id, ConnId(5), ConnId(1))]);
        let (id, _) = r.open(t, ConnId(5), peer(1)).unwrap();
        assert_eq!(r.conn_down(ConnId(1)), vec![(id, ConnId(5))]);
        assert_eq!(r.open(t + Duration::from_secs(60), ConnId(5), peer(1)), Err(RelayRefusal::NoReservation));
    }

    #[test]
    fn reservations_are_bounded() {
        let mut r = Relay::new(RelayLimits { max_reservations: 2, ..RelayLimits::default() });
        assert!(r.reserve(ConnId(1), peer(1)).is_ok());
        assert!(r.reserve(ConnId(2), peer(2)).is_ok());
        assert!(r.reserve(ConnId(1), peer(1)).is_ok(), "asking again keeps it");
        assert_eq!(r.reserve(ConnId(3), peer(3)), Err(RelayRefusal::Full));
    }
}
