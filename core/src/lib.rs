//! # p2p-chat-core
//!
//! The whole p2p-chat protocol as a pure, deterministic state machine: bytes, timer ticks and user
//! commands go in; frames to send, connections to open or close, the next wake-up time and
//! application events come out. It does no I/O, reads no clock and owns no global randomness, so the
//! same seed and the same inputs always give the same outputs. The mio and smol runtimes drive it
//! over real TCP; the simulator drives thousands of copies of it on virtual time.
//!
//! ## The run-loop contract
//!
//! After **every** input (`accept`, `handle_input`), drain [`Node::poll_output`] until it returns
//! `None`, then ask [`Node::poll_timeout`] when to wake next, and why, and feed [`Input::Timeout`]
//! at that time. Every input carries `now`; time never goes backwards. Outputs of one connection come in the order
//! they must be written; [`Output::Close`] comes after that connection's last `Transmit`.
//!
//! ```no_run
//! use p2p_chat_core::{Config, Ed25519Keys, Input, Node, Output, Time, Command};
//!
//! fn now() -> Time { unimplemented!("the runtime's clock") }
//!
//! let mut node = Node::new(Config::default(), Box::new(Ed25519Keys::from_seed(1)), 42, now());
//! node.handle_input(now(), Input::Command(Command::Connect("127.0.0.1:8080".parse().unwrap())));
//! loop {
//!     while let Some(out) = node.poll_output() {
//!         match out {
//!             Output::Transmit { conn, bytes } => { /* write bytes to the socket of `conn` */ }
//!             Output::Dial { conn, addr } => { /* connect; later Input::Connected / DialFailed */ }
//!             Output::Punch { conn, addr, port } => { /* the same, from local port `port` */ }
//!             Output::Close { conn } => { /* flush and close the socket */ }
//!             Output::PortMapping(req) => { /* ask the router, off the loop; a Map is answered with
//!                                              Input::PortMapped */ }
//!             Output::Event(event) => { /* show it to the user */ }
//!         }
//!     }
//!     // `None`: nothing is due until an input arrives. `why` names the timer, for traces.
//!     let wake_at = node.poll_timeout().map(|(at, why)| at);
//!     // Wait for socket readiness or `wake_at`, whichever is first, then feed what happened:
//!     // node.accept(now(), remote)                       for a new inbound connection,
//!     // node.handle_input(now(), Input::Received(conn, &buf)) for bytes,
//!     // node.handle_input(now(), Input::Timeout)         when `wake_at` has passed.
//!     # break;
//! }
//! ```
//!
//! ## Modules
//! - [`wire`]: frames and message types; the only place that knows bincode.
//! - [`identity`]: keys, `PeerId`, the key file, the `Keys` signing interface.
//! - [`chat`]: what a chat is and what its author signs.
//! - [`handshake`]: the Noise XX handshake that opens each connection, bound to the identity key.
//! - [`session`]: the encrypted records that carry frames after it.
//! - [`dedup`]: seen ids and the recent chats kept for repair.
//! - [`gossip`]: the forwarding rule and lazy repair.
//! - [`sync`]: anti-entropy by range-based set reconciliation.
//! - [`dm`]: end-to-end encrypted direct messages: key bundles, envelopes, mailbox, outbox.
//! - [`membership`]: address book, backoff, bans, scores, rate limits.
//! - [`nat`]: reachability (dial-back), port mapping at the router, relays and their circuits, hole
//!   punching.
//! - [`serve`]: what answering a peer costs, and when the node stops answering.
//! - [`rooms`]: room ids and keys, invite codes, and what a node keeps per room.
//! - [`node`]: the state machine tying them together.
//! - [`app`]: the interface runtimes offer to applications (no I/O here either).

#![forbid(unsafe_code)]

pub mod app;
pub mod chat;
mod conn_map;
pub mod dedup;
pub mod dm;
pub mod gossip;
pub mod handshake;

/// Where a node's memory is, for a driver that holds many nodes and prefetches it ahead of their
/// inputs (the simulator, at 100,000 nodes; feature `prefetch`). The core only names regions: it
/// reads nothing through them, and a driver's hint changes no state and no result.
#[cfg(feature = "prefetch")]
pub mod memory {
    /// What a driver is told: the start and length of a region worth having in cache.
    pub type Regions<'a> = &'a mut dyn FnMut(*const u8, usize);

    /// The region `v` occupies.
    #[inline]
    pub fn of<T: ?Sized>(v: &T, f: Regions<'_>) {
        f((v as *const T).cast(), size_of_val(v));
    }
}
pub mod identity;
pub mod membership;
mod name;
pub mod nat;
pub mod node;
pub mod random;
pub mod rate;
pub mod rooms;
pub mod serve;
pub mod session;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod wire;

pub use chat::{Body, Chat, ChatId, ChatInterner};
pub use identity::{Ed25519Keys, KeyFileError, Keys, PeerId, PublicKey, Signature};
pub use node::{Action, MemberChange, MemberEntry};
pub use node::{
    CloseReason, Command, Config, ConfigError, ConnId, Delivery, Direction, DmConfig, DmDelivery, DmSnapshot, Event,
    Input, Node, Origin, Output, PeerSummary, Stats, Timer,
};
pub use rooms::{Access, Invite, Op, Role, RoomId, RoomInfo, RoomSummary};
pub use time::Time;
