//! Getting through NAT: what a node knows of its own reachability, and the relays that carry
//! connections to nodes nobody can dial.
//!
//! - [`reach`]: peers tell a node the address they see it from, and a few of them dial it back at
//!   its listening port (AutoNAT-style); the node concludes "reachable at ADDR" or "behind NAT".
//!   Also the prober's side: answering dial-back requests without becoming a tool for scanning
//!   or flooding others.
//! - [`relay`]: the relay service a node offers (reservations and circuits, all of them bounded
//!   before any work is done: circuits per node and per peer, bytes and time per circuit, the rate
//!   at which a peer may open them).
//! - [`punch`]: two ends of a circuit dial each other at once (TCP simultaneous open) and move
//!   to the direct connection when it comes up.
//! - [`mapping`]: asking the home router (UPnP IGD, through the runtime) to forward the
//!   listening port, renewing it, and removing it on leaving; the mapped address is checked by
//!   dial-backs before it is claimed.
//! - [`client`]: the other end: the reservations a node behind NAT holds, the relayed addresses
//!   it has heard of, and the circuits it uses as connections.
//!
//! A relayed connection is an ordinary connection of the node (its own `ConnId`, handshake and
//! Noise session) whose bytes travel inside `ToRelay`/`FromRelay` frames on the connection to the
//! relay: the relay forwards ciphertext it cannot read, and the runtimes never see the circuit.
//! The model is libp2p's circuit relay v2 (reservations, limited circuits), simplified: a
//! reservation lasts as long as the connection to the relay, and a relay id names one circuit on
//! both of its legs.

pub mod client;
pub mod mapping;
pub mod punch;
pub mod reach;
pub mod relay;

use core::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::PeerId;
use crate::rate::RateLimit;

pub use reach::Reachability;
pub use relay::RelayLimits;

/// What a node does about NAT. `NatConfig::default()` is what the CLI runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    /// Ask peers to dial this node back to learn whether it is reachable, and answer such asks.
    pub dial_back: bool,
    /// Relay for unreachable nodes within these limits (`None`: do not relay, `--no-relay`).
    pub relay: Option<RelayLimits>,
    /// Behind NAT, hold reservations at relays and accept connections through them.
    pub use_relays: bool,
    /// Ask the router to forward the listening port (UPnP IGD; `--no-port-mapping` turns it off).
    pub port_mapping: bool,
}

impl Default for NatConfig {
    fn default() -> NatConfig {
        NatConfig { dial_back: true, relay: Some(RelayLimits::default()), use_relays: true, port_mapping: true }
    }
}

impl NatConfig {
    /// None of it: for a simulator that models no NAT, where every node can be dialed.
    pub fn off() -> NatConfig {
        NatConfig { dial_back: false, relay: None, use_relays: false, port_mapping: false }
    }
}

/// How a connection reaches its peer, as `/peers` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Path {
    /// A TCP connection of its own.
    Direct,
    /// A TCP connection of its own, opened by a hole punch over a circuit it replaced.
    Punched,
    /// A circuit through the relay named `name#id`.
    Relayed { relay: String },
}

impl core::fmt::Display for Path {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Path::Direct => f.write_str("direct"),
            Path::Punched => f.write_str("direct (hole-punched)"),
            Path::Relayed { relay } => write!(f, "relayed via {relay}"),
        }
    }
}

/// Where a node behind NAT can be reached: through the relay `relay` (found at `relay_addr`, when
/// the sender knows where). Passed on in peer exchange (`Message::Relayed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RelayedAddr {
    pub relay: PeerId,
    pub relay_addr: Option<SocketAddr>,
    pub peer: PeerId,
}

/// Why a relay refused a reservation or a circuit, or closed a circuit. On the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RelayRefusal {
    #[error("this node does not relay")]
    Disabled,
    #[error("the relay is at its limit")]
    Full,
    #[error("the relay carries as many circuits for this peer as it allows")]
    PeerFull,
    #[error("the peer holds no reservation at this relay")]
    NoReservation,
    #[error("circuits asked for too fast")]
    RateLimited,
    #[error("the circuit carried as many bytes as the relay allows")]
    BytesExceeded,
    #[error("the circuit lasted as long as the relay allows")]
    Expired,
    #[error("the other end did not read fast enough")]
    TooSlow,
    #[error("the other end went away")]
    Gone,
}

/// Bytes of a connection's stream carried by one `ToRelay`/`FromRelay` frame at most: well under
/// the frame limit, so a relay's frames never come near it.
pub const MAX_CIRCUIT_CHUNK: usize = 16 * 1024;

/// Entries of one `Relayed` message at most; a receiver refuses longer lists.
pub const MAX_RELAYED_PER_FRAME: usize = 16;

/// How often a node asks for dial-backs again once it knows its reachability: addresses change
/// (a new lease, another network), and a mapping may have been added at the router.
pub const RECHECK: Duration = Duration::from_secs(600);

/// The rate at which a peer may open circuits at a relay: four at once, then one every five
/// seconds (an honest node opens one per peer it wants, and keeps it).
pub const CIRCUIT_OPENS: RateLimit = RateLimit::new(0.2, 4.0);
