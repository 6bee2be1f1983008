//! The relay client: the reservations a node behind NAT holds, the relayed addresses a node has
//! heard of, and which of the node's connections are circuits through which relay.
//!
//! A circuit ("leg" here, seen from one end) is a connection of the node like any other; this
//! module only remembers how its bytes travel. While a circuit the node asked for is not open
//! yet, its id is 0 (a relay never gives out 0).

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::RelayedAddr;
use crate::identity::PeerId;
use crate::node::ConnId;
use crate::time::Time;

/// Circuits a node is an end of at once (asked for and accepted together).
pub const MAX_LEGS: usize = 16;
/// Relays a node behind NAT holds a reservation at: one more than needed, so one going away
/// leaves the node reachable while it finds another.
pub const RESERVATIONS: usize = 2;
/// Relayed addresses kept; the newest win.
const BOOK_CAP: usize = 128;
/// How long a relayed address heard of is kept.
const BOOK_TTL: Duration = Duration::from_secs(600);
/// How long a relay may take to answer a reservation before it counts as refused: one that never
/// answers must not hold a place of the few.
pub const RESERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a relay that refused a circuit to a peer is not asked for it again. A relay at its
/// limit stays there for a while; asked again at every dial round, it refused thousands of
/// circuits a second, each a warning on the user's screen.
pub const REFUSED_WAIT: Duration = Duration::from_secs(60);

/// How one connection of the node travels through a relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub relay: ConnId,
    /// 0 while asked for and not open yet.
    pub circuit: u32,
    pub peer: PeerId,
    /// Where the relay sees the other end from, once the circuit is open.
    pub seen: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Asked for at this time, not answered yet.
    Asked(Time),
    Held,
}

#[derive(Default)]
pub struct Client {
    legs: BTreeMap<ConnId, Leg>,
    reservations: BTreeMap<ConnId, Held>,
    /// Relay connections that refused a reservation: not asked again while connected.
    refused: BTreeSet<ConnId>,
    /// Circuits refused, by relay connection and peer: not asked for again before this time.
    /// At most [`BOOK_CAP`], as the addresses they were asked for.
    held_off: BTreeMap<(ConnId, PeerId), Time>,
    book: VecDeque<(RelayedAddr, Time)>,
}

impl Client {
    pub fn leg(&self, conn: ConnId) -> Option<&Leg> {
        self.legs.get(&conn)
    }

    pub fn has_legs(&self) -> bool {
        !self.legs.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.legs.len() >= MAX_LEGS
    }

    /// The connection that circuit `circuit` of relay connection `relay` carries.
    pub fn by_circuit(&self, relay: ConnId, circuit: u32) -> Option<ConnId> {
        if circuit == 0 {
            return None;
        }
        self.legs.iter().find(|(_, l)| l.relay == relay && l.circuit == circuit).map(|(c, _)| *c)
    }

    /// A circuit asked for, to `peer` through `relay`, carried as connection `conn`.
    pub fn asked(&mut self, conn: ConnId, relay: ConnId, peer: PeerId) {
        self.legs.insert(conn, Leg { relay, circuit: 0, peer, seen: None });
    }

    /// Whether a circuit to `peer` is asked for or open.
    pub fn has_leg_to(&self, peer: &PeerId) -> bool {
        self.legs.values().any(|l| l.peer == *peer)
    }

    /// The relay opened the circuit asked for to `peer`: its connection.
    pub fn opened(&mut self, relay: ConnId, circuit: u32, peer: PeerId, seen: SocketAddr) -> Option<ConnId> {
        let (conn, leg) = self.legs.iter_mut().find(|(_, l)| l.relay == relay && l.circuit == 0 && l.peer == peer)?;
        leg.circuit = circuit;
        leg.seen = Some(seen);
        Some(*conn)
    }

    /// The relay refused the circuit asked for to `peer`: its connection. The relay is not asked
    /// for `peer` again for [`REFUSED_WAIT`].
    pub fn refused_open(&mut self, now: Time, relay: ConnId, peer: PeerId) -> Option<ConnId> {
        let leg = self.legs.iter().find(|(_, l)| l.relay == relay && l.circuit == 0 && l.peer == peer).map(|(c, _)| *c);
        if leg.is_some() {
            self.held_off.retain(|_, until| *until > now);
            if self.held_off.len() >= BOOK_CAP {
                let soonest = self.held_off.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k);
                soonest.map(|k| self.held_off.remove(&k));
            }
            self.held_off.insert((relay, peer), now + REFUSED_WAIT);
        }
        leg
    }

    /// Whether `relay` refused a circuit to `peer` less than [`REFUSED_WAIT`] ago.
    pub fn is_held_off(&self, now: Time, relay: ConnId, peer: &PeerId) -> bool {
        self.held_off.get(&(relay, *peer)).is_some_and(|until| *until > now)
    }

    /// A circuit someone opened to this node, carried as `conn`.
    pub fn incoming(&mut self, conn: ConnId, relay: ConnId, circuit: u32, peer: PeerId, seen: SocketAddr) {
        self.legs.insert(conn, Leg { relay, circuit, peer, seen: Some(seen) });
    }

    pub fn remove(&mut self, conn: ConnId) -> Option<Leg> {
        self.legs.remove(&conn)
    }

    /// The connection to a relay went: its reservation, and the connections it carried.
    pub fn relay_down(&mut self, relay: ConnId) -> Vec<ConnId> {
        self.reservations.remove(&relay);
        self.refused.remove(&relay);
        self.held_off.retain(|(r, _), _| *r != relay);
        self.legs.iter().filter(|(_, l)| l.relay == relay).map(|(c, _)| *c).collect()
    }

    /// Relays still to ask for a reservation, from `candidates` (relay connections in order of
    /// preference), so that [`RESERVATIONS`] are held or asked for.
    pub fn to_reserve(&mut self, now: Time, candidates: &[ConnId]) -> Vec<ConnId> {
        let overdue: Vec<ConnId> = self
            .reservations
            .iter()
            .filter(|(_, h)| matches!(h, Held::Asked(at) if now.since(*at) >= RESERVE_TIMEOUT))
            .map(|(c, _)| *c)
            .collect();
        for c in overdue {
            self.reservations.remove(&c);
            self.refused.insert(c);
        }
        let mut picked = Vec::new();
        for &c in candidates {
            if self.reservations.len() >= RESERVATIONS {
                break;
            }
            if self.reservations.contains_key(&c) || self.refused.contains(&c) {
                continue;
            }
            self.reservations.insert(c, Held::Asked(now));
            picked.push(c);
        }
        picked
    }

    /// A relay's answer. `true` if the reservation is held now.
    pub fn answered(&mut self, relay: ConnId, ok: bool) -> bool {
        match self.reservations.get_mut(&relay) {
            Some(h) if ok => {
                *h = Held::Held;
                true
            }
            Some(_) => {
                self.reservations.remove(&relay);
                self.refused.insert(relay);
                false
            }
            None => false,
        }
    }

    /// When an unanswered reservation counts as refused.
    pub fn next_due(&self) -> Option<Time> {
        self.reservations
            .values()
            .filter_map(|h| match h {
                Held::Asked(at) => Some(*at + RESERVE_TIMEOUT),
                Held::Held => None,
            })
            .min()
    }

    /// Relay connections where a reservation is held.
    pub fn held(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.reservations.iter().filter(|(_, h)| **h == Held::Held).map(|(c, _)| *c)
    }

    /// Drops every reservation (the node found it is reachable): the relays to tell, if any.
    pub fn release_all(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.reservations).into_keys().collect()
    }

    /// Relayed addresses heard of at `now`; kept until [`BOOK_TTL`], the oldest going first.
    pub fn learn(&mut self, now: Time, entries: impl IntoIterator<Item = RelayedAddr>) {
        for e in entries {
            self.book.retain(|(x, _)| x.peer != e.peer || x.relay != e.relay);
            if self.book.len() >= BOOK_CAP {
                self.book.pop_front();
            }
            self.book.push_back((e, now));
        }
    }

    /// Relayed addresses still fresh at `now`, the newest first.
    pub fn known(&mut self, now: Time) -> impl Iterator<Item = &RelayedAddr> {
        self.book.retain(|(_, at)| now.since(*at) < BOOK_TTL);
        self.book.iter().rev().map(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    #[test]
    fn a_refused_circuit_is_not_asked_of_that_relay_again_for_a_while() {
        let mut c = Client::default();
        let now = Time::from_micros(1_000_000);
        c.asked(ConnId(10), ConnId(1), peer(2));
        assert_eq!(c.refused_open(now, ConnId(1), peer(2)), Some(ConnId(10)));
        assert!(c.is_held_off(now, ConnId(1), &peer(2)));
        assert!(!c.is_held_off(now, ConnId(3), &peer(2)), "another relay may still be asked");
        assert!(!c.is_held_off(now, ConnId(1), &peer(4)), "and this one for another peer");
        assert!(!c.is_held_off(now + REFUSED_WAIT, ConnId(1), &peer(2)), "asked again after the wait");
        // A refusal of nothing asked for holds nothing off, and the list stays bounded.
        assert_eq!(c.refused_open(now, ConnId(1), peer(5)), None);
        assert!(!c.is_held_off(now, ConnId(1), &peer(5)));
        for n in 0..=BOOK_CAP as u64 {
            let mut id = [0xee; 32];
            id[..8].copy_from_slice(&n.to_le_bytes());
            let p = PeerId(id);
            c.asked(ConnId(100 + n), ConnId(1), p);
            c.refused_open(now + Duration::from_micros(n), ConnId(1), p);
        }
        assert!(c.held_off.len() <= BOOK_CAP);
        c.relay_down(ConnId(1));
        assert!(c.held_off.is_empty(), "gone with the relay's connection");
    }

    #[test]
    fn legs_are_found_by_circuit_once_open() {
        let mut c = Client::default();
        c.asked(ConnId(10), ConnId(1), peer(2));
        assert_eq!(c.by_circuit(ConnId(1), 0), None);
        let seen = SocketAddr::from(([10, 0, 0, 1], 7000));
        assert_eq!(c.opened(ConnId(1), 7, peer(2), seen), Some(ConnId(10)));
        assert_eq!(c.by_circuit(ConnId(1), 7), Some(ConnId(10)));
        c.incoming(ConnId(11), ConnId(1), 8, peer(3), seen);
        assert_eq!(c.relay_down(ConnId(1)), vec![ConnId(10), ConnId(11)]);
    }

    #[test]
    fn reservations_are_asked_of_few_relays_and_not_again_of_one_that_refused() {
        let mut c = Client::default();
        let relays = [ConnId(1), ConnId(2), ConnId(3)];
        let t = Time::ZERO;
        assert_eq!(c.to_reserve(t, &relays), vec![ConnId(1), ConnId(2)]);
        assert!(c.answered(ConnId(1), true));
        assert!(!c.answered(ConnId(2), false));
        assert_eq!(c.to_reserve(t, &relays), vec![ConnId(3)]);
        assert_eq!(c.held().collect::<Vec<_>>(), vec![ConnId(1)]);
        // A relay that never answers gives its place up.
        assert_eq!(c.next_due(), Some(t + RESERVE_TIMEOUT));
        assert_eq!(c.to_reserve(t + RESERVE_TIMEOUT, &[ConnId(4)]), vec![ConnId(4)]);
    }

    #[test]
    fn the_book_keeps_the_newest_and_forgets_the_old() {
        let mut c = Client::default();
        let e = |n: u8| RelayedAddr { relay: peer(1), relay_addr: None, peer: peer(n) };
        c.learn(Time::ZERO, (0..200).map(|n| e(n as u8)));
        assert_eq!(c.known(Time::ZERO).count(), BOOK_CAP);
        assert_eq!(c.known(Time::ZERO).next(), Some(&e(199)));
        assert_eq!(c.known(Time::ZERO + BOOK_TTL).count(), 0);
    }
}
