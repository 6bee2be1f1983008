//! The command line: every flag of the original description, plus runtime, TTL and identity.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "p2p-chat",
    version,
    about = "Peer-to-peer terminal chat: signed chats spread by gossip, no server",
    after_help = "Once running, type /help for the interactive commands."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Start a node that accepts incoming connections
    Listen(ListenArgs),
    /// Connect to an existing peer
    Connect(ConnectArgs),
    /// Run a deterministic simulation of many virtual nodes of the real protocol
    Simulate(p2p_chat_sim::SimulateArgs),
    /// Measure throughput, latency and memory over real TCP on 127.0.0.1 (see docs/PERFORMANCE.md)
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Port to listen on (0 picks a free port)
    #[arg(short, long, default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Address of the peer to connect to (host:port)
    #[arg(short, long)]
    pub address: String,
    /// Also listen on this port (0: do not listen)
    #[arg(short = 'l', long, default_value_t = 0)]
    pub listen_port: u16,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Your username: 1 to 64 bytes, no '#' (shown with the first 8 hex digits of your key, e.g.
    /// alice#1f2e3d4c)
    #[arg(short, long, default_value = "Anonymous")]
    pub username: String,
    /// Bootstrap node address (host:port); repeat for several
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Maximum connected peers
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_peers: u32,
    /// Gossip fanout: how many neighbours get each chat in full (the rest get its id)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fanout: u32,
    /// Eager gossip hops a chat may take (missed chats are still repaired past it)
    #[arg(long, default_value_t = 32)]
    pub ttl: u8,
    /// Hours of chats kept to hand to peers that were away (catch-up window)
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=24 * 365))]
    pub retention_hours: u32,
    /// Most chats kept for catch-up (the smaller of this and --retention-hours wins)
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_history: u32,
    /// Save chat history, known peers and the identity key to disk, in --db-path
    #[arg(long)]
    pub persist: bool,
    /// Database directory (history.redb and identity.key live there); giving it implies --persist
    /// [default: ./p2p-chat-db]
    #[arg(long)]
    pub db_path: Option<PathBuf>,
    /// Address to listen on; the default, 0.0.0.0, is reachable from other machines. 127.0.0.1
    /// keeps the node to this machine
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Line mode instead of the full-screen view: one line per event, `[HH:MM:SS] name#id: text`
    /// for chats (the mode used when standard input is not a terminal)
    #[arg(long)]
    pub plain: bool,
    /// Accepted for compatibility: signatures are always verified
    #[arg(long)]
    pub verify_signatures: bool,
    /// Network runtime
    #[arg(long, value_enum, default_value_t = RuntimeKind::Mio)]
    pub runtime: RuntimeKind,
    /// Identity key file (created with mode 0600 if missing) [default: <db-path>/identity.key with
    /// --persist, otherwise a fresh key for this run]
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Public rooms to join at start, comma-separated, with or without '#' (quote a '#' for the
    /// shell: --join '#rust'); the first becomes the current room
    #[arg(long, value_delimiter = ',', value_name = "ROOMS")]
    pub join: Vec<String>,
    /// Send no read receipts for direct messages, and show none
    #[arg(long)]
    pub no_read_receipts: bool,
    /// Send no typing notices for direct messages, and show none
    #[arg(long)]
    pub no_typing: bool,
    /// Relay for nodes behind NAT: the most circuits carried at once (each also bounded in bytes
    /// and time; see SECURITY.md)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub relay_limit: u32,
    /// Relay for no one (a node behind NAT still uses relays itself)
    #[arg(long)]
    pub no_relay: bool,
    /// Do not ask the router to forward the listening port (UPnP IGD). By default the node asks
    /// once at start, in the background, and keeps the mapping only if peers can dial in through it
    #[arg(long)]
    pub no_port_mapping: bool,
    #[command(flatten)]
    pub web: crate::web::WebArgs,
}

/// Where `--persist` keeps its files without `--db-path`.
pub const DEFAULT_DB_PATH: &str = "./p2p-chat-db";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// One mio event loop
    Mio,
    /// smol (async-io)
    Smol,
}
