//! The interface every runtime offers to an application (the CLI, benchmarks, tests).
//!
//! Nothing here does I/O: these are the shapes the mio and smol drivers share, so the CLI can
//! start either without knowing which it got (after quinn's `Runtime` trait, the only thing that
//! separates its tokio and smol backends).

use core::net::SocketAddr;

use crate::chat::Chat;
use crate::dm::DmCrypto;
use crate::identity::Keys;
use crate::nat::Reachability;
use crate::node::{Command, Config, DmSnapshot, Event, Input, Node, PeerSummary, Stats};
use crate::rooms::{RoomInfo, RoomSummary};
use crate::time::Time;

/// Everything a runtime needs to start a node.
pub struct Start {
    pub config: Config,
    pub keys: Box<dyn Keys>,
    /// Seeds the node's RNG (the CLI draws it from the OS).
    pub seed: u64,
    /// Where to accept connections (`None`: do not listen). Port 0 picks a free port; the node's
    /// `config.listen_port` is then set to the port actually bound.
    pub listen: Option<SocketAddr>,
    /// Rooms an earlier run was in (the database), joined again before `restore`.
    pub rooms: Vec<RoomInfo>,
    /// Chats from the database, served to peers that missed them (see `Node::restore`).
    pub restore: Vec<Chat>,
    /// Addresses known from an earlier run.
    pub known: Vec<SocketAddr>,
    /// Addresses to dial at once.
    pub connect: Vec<SocketAddr>,
    /// Direct messages: on with this ratchet, and what an earlier run saved of them (`None`: off).
    pub dm: Option<DmStart>,
    /// Called on the runtime's thread for every event, in order. Keep it short (push to a channel).
    pub on_event: Box<dyn FnMut(Event) + Send>,
}

/// What turns direct messages on (see `Node::with_dm`).
pub struct DmStart {
    pub crypto: Box<dyn DmCrypto>,
    /// What an earlier run saved (`DmSave::snapshot`), given back before any input.
    pub restore: Option<DmSnapshot>,
}

/// What to save of direct messages, taken in one go by the runtime's loop: the node's snapshot
/// and the ratchet's own state (`DmCrypto::save`).
pub struct DmSave {
    pub snapshot: DmSnapshot,
    pub crypto: Option<Vec<u8>>,
}

impl DmSave {
    pub fn of(node: &Node) -> Option<DmSave> {
        Some(DmSave { snapshot: node.dm_state()?, crypto: node.dm_crypto_save() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("invalid settings: {0}")]
    Config(#[from] crate::node::ConfigError),
}

/// A running node. Cheap to call from any thread; every call returns promptly.
pub trait NodeHandle: Send + Sync {
    /// The address actually listened on, if listening.
    fn local_addr(&self) -> Option<SocketAddr>;
    /// Hands a command to the node (wakes its loop).
    fn command(&self, cmd: Command);
    fn peers(&self) -> Vec<PeerSummary>;
    /// The rooms the node is in besides the default one.
    fn rooms(&self) -> Vec<RoomSummary>;
    fn stats(&self) -> Stats;
    /// Addresses worth remembering for the next run.
    fn known_addresses(&self) -> Vec<SocketAddr>;
    /// What the node knows of its reachability (see [`crate::nat::reach`]).
    fn reachability(&self) -> Reachability;
    /// What to save of direct messages now (`None`: they are off, or the loop has stopped).
    fn dm_save(&self) -> Option<DmSave> {
        None
    }
    /// Sends `Leave`, flushes what it can for at most about a second, closes every connection and
    /// stops the loop. Idempotent.
    fn shutdown(&self);
}

/// How an application starts a node on a given runtime.
pub trait Runtime {
    fn start(start: Start) -> Result<Box<dyn NodeHandle>, StartError>;
}

/// What a `NodeHandle` reports about a node, taken in one go by the runtime's loop.
#[derive(Clone, Debug, Default)]
pub struct NodeState {
    pub peers: Vec<PeerSummary>,
    pub rooms: Vec<RoomSummary>,
    pub stats: Stats,
    pub known: Vec<SocketAddr>,
    pub reachability: Reachability,
}

impl NodeState {
    pub fn of(node: &Node) -> NodeState {
        NodeState {
            peers: node.peers(),
            rooms: node.rooms(),
            stats: node.stats().clone(),
            known: node.known_addresses(),
            reachability: node.reachability(),
        }
    }
}

/// The node a runtime drives: made from the start settings, with direct messages on if asked
/// (and what an earlier run saved of them given back).
pub fn node(config: Config, keys: Box<dyn Keys>, seed: u64, now: Time, dm: Option<DmStart>) -> Node {
    let node = Node::new(config, keys, seed, now);
    let Some(dm) = dm else { return node };
    let mut node = node.with_dm(dm.crypto);
    if let Some(s) = dm.restore {
        node.restore_dm(now, s);
    }
    node
}

/// What a runtime does with a new node before its loop starts: the rooms of an earlier run, then
/// that run's chats (which need their rooms), the addresses it knew, and the first dials.
pub fn prime(
    node: &mut Node,
    now: Time,
    rooms: Vec<RoomInfo>,
    restore: Vec<Chat>,
    known: Vec<SocketAddr>,
    connect: Vec<SocketAddr>,
) {
    for room in rooms {
        node.handle_input(now, Input::Command(Command::Rejoin(room)));
    }
    node.restore(now, restore);
    node.handle_input(now, Input::Command(Command::AddKnown(known)));
    for addr in connect {
        node.handle_input(now, Input::Command(Command::Connect(addr)));
    }
}
