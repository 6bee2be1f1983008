//! The node: one peer of the chat network as a deterministic state machine.
//!
//! It owns the connections and ties the other modules together: `handshake` opens each
//! connection, `session` encrypts it, `dedup` decides what is new, `gossip` decides where a chat goes, `sync` repairs what
//! was missed, `membership` decides whom to dial and whom to drop. The run-loop contract is in the
//! crate docs.

mod prefetch;

use core::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::chat::{Body, Chat, ChatId, ChatInterner, MAX_TEXT_BYTES};
use crate::conn_map::{ConnMap, ConnTable};
use crate::dedup::{Dedup, Verdict};
use crate::gossip::{Gossip, Requested};
use crate::handshake::{Handshake, HandshakeError, Progress, StaticIdentity};
use crate::identity::{Keys, PeerId, PublicKey};
use crate::membership::{AddressBook, KeyTag, Penalty, Source, BAN_SCORE, MAX_SCORE};
use crate::name::Name;
use crate::random::Rng;
use crate::rate::Tokens;
use crate::serve::{Credit, Refusal, ServeLimits, Served, ID_WALK_COST};
use crate::session::{self, Session};
use crate::sync::{self, IdSet, Summary};
use crate::time::Time;
use crate::wire::{
    self, Frame, Frames, Message, WireError, MAX_ADDRS_PER_FRAME, MAX_IDS_PER_FRAME, MAX_RANGES_PER_FRAME,
};

/// A connection, named by the node. Runtimes map it to their socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Tunables. `Config::default()` is what the CLI runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub username: String,
    /// The port this node accepts connections on (0: does not listen). Told to peers so they can
    /// pass it on in peer exchange.
    pub listen_port: u16,
    pub bootstrap: Vec<SocketAddr>,
    /// Most established connections, inbound and outbound together.
    pub max_peers: usize,
    /// Most inbound connections still in their handshake. When full, a newcomer displaces one that
    /// has had a fifth of `handshake_timeout` to speak and has not, or a silent one of a network
    /// group holding more than an eighth of the slots, so connections that never finish
    /// (slowloris) cannot lock honest peers out; while there is none, the newcomer is refused, so
    /// a crowd of honest dialers at a bootstrap node does not evict every handshake before it
    /// completes (see `Node::accept`).
    pub max_handshaking: usize,
    /// Most connections from one IP address.
    pub max_conns_per_ip: usize,
    /// The node dials until it has this many connections. Six: with the peers that dial it and
    /// exploration, a node ends with about a dozen (HyParView's active view is five). At eight
    /// (Bitcoin Core's outbound count) it had sixteen: in the simulator at 10,000 nodes and 1%
    /// loss that cost 6% more events and 10% more memory a node for no better delivery (RMR
    /// 0.30 against 0.21, the same p99 latency, the same recovery from a partition or from half
    /// the nodes crashing at once).
    pub target_peers: usize,
    /// Eager-push fanout.
    pub fanout: usize,
    /// Neighbours told of each chat by id only. Three: a node hears of each chat from three lazy
    /// neighbours on average besides its tree parent, so one in twenty (e^-3) in a tree gap waits
    /// for anti-entropy; at two, one in seven did, and a 20-node test missed a chat for seconds.
    /// At six, `IHave` batches were half of all frames.
    pub lazy_fanout: usize,
    /// Eager hops a chat may take after the first.
    pub ttl: u8,
    /// Lazy push and anti-entropy. Off gives the seed's plain push gossip (for comparison only).
    pub repair: bool,
    /// Announce arriving and leaving as signed Join/Leave chats to the whole network. Every join
    /// reaches every node, so a network of N nodes carries N^2 join deliveries: simulations of very
    /// large networks switch it off to measure the chats themselves.
    pub announce_presence: bool,
    pub max_frame_bytes: usize,
    /// How long chats are kept for repair and catch-up, and the oldest chat accepted.
    pub retention: Duration,
    /// Most chats kept for repair and catch-up.
    pub max_chats: usize,
    /// How far in the future a chat's timestamp may be.
    pub max_clock_skew: Duration,
    /// Period of the maintenance timer (dialing, pings, expiry).
    pub tick: Duration,
    pub sync_interval: Duration,
    /// A quiet link is pinged this often: half of `stale_after`, so a peer that vanished without
    /// a word is noticed by the second unanswered ping. At 5 s, pings and pongs were an eighth of
    /// all frames once lazy announcements had been trimmed (simulator, 3,000 nodes).
    pub ping_interval: Duration,
    /// A connection silent this long is closed.
    pub stale_after: Duration,
    pub handshake_timeout: Duration,
    pub exchange_interval: Duration,
    /// How often a node that has its target of peers still dials one more known address (up to
    /// twice the target), so the overlay keeps mixing and halves that healed find each other.
    pub explore_interval: Duration,
    /// How often the addresses of connected peers are put back in the address book.
    pub announce_interval: Duration,
    /// Lazy announcements (`IHave`) wait this long to go out together, as the Plumtree paper
    /// allows: ids of chats that arrive close together share one frame per neighbour instead of
    /// one frame each. Zero sends them as soon as possible. It delays only the repair path; the
    /// eager push is never held back.
    pub ihave_delay: Duration,
    /// How long an announced chat may take to arrive by the tree before the node grafts the
    /// announcer. Short enough that a faster path replaces a slow tree branch (Plumtree's own
    /// optimisation): with few announcers a chat, 150 ms cost 12-17% in latency in the
    /// simulator, 80 ms nothing. At 50 ms a small low-latency network kept grafting and pruning
    /// the same links (RMR 0.14 instead of 0.00 in `the_eager_tree_keeps_redundancy_low`).
    pub lazy_wait: Duration,
    pub want_timeout: Duration,
    pub ban_duration: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Most addresses kept. A few hundred is ample: a node needs `target_peers` neighbours and some
    /// spares (HyParView keeps a passive view of ~30), and exchange refreshes the book every
    /// `exchange_interval`; a larger book only holds more stale addresses and costs memory per node.
    pub address_book_cap: usize,
    /// Per-peer limit on chat frames (rate per second, burst).
    pub chat_rate: (f64, f64),
    /// Per-peer limit on every other frame.
    pub control_rate: (f64, f64),
    /// Most dials the node makes on its own per minute, and the burst it may save up, so addresses
    /// poured in by peer exchange (bogus or unreachable) cannot make it dial without bound. Dials
    /// the user asks for are not counted.
    pub dials_per_minute: (f64, f64),
    /// What each peer's requests may cost this node, and how much may wait for a peer (see
    /// [`crate::serve`]).
    pub serve: ServeLimits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            username: "Anonymous".into(),
            listen_port: 0,
            bootstrap: Vec::new(),
            max_peers: 50,
            max_handshaking: 64,
            max_conns_per_ip: 32,
            target_peers: 6,
            fanout: 3,
            lazy_fanout: 3,
            ttl: 32,
            repair: true,
            announce_presence: true,
            max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
            retention: Duration::from_secs(24 * 3600),
            max_chats: 10_000,
            max_clock_skew: Duration::from_secs(300),
            tick: Duration::from_secs(1),
            sync_interval: Duration::from_secs(2),
            ping_interval: Duration::from_secs(10),
            stale_after: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(5),
            exchange_interval: Duration::from_secs(30),
            explore_interval: Duration::from_secs(10),
            announce_interval: Duration::from_secs(30),
            ihave_delay: Duration::from_millis(250),
            lazy_wait: Duration::from_millis(80),
            want_timeout: Duration::from_secs(1),
            ban_duration: Duration::from_secs(600),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            address_book_cap: 256,
            chat_rate: (20_000.0, 40_000.0),
            control_rate: (2_000.0, 4_000.0),
            dials_per_minute: (60.0, 16.0),
            serve: ServeLimits::default(),
        }
    }
}

/// What the caller feeds in (besides [`Node::accept`]).
#[derive(Debug)]
pub enum Input<'a> {
    /// An outbound connection asked for by [`Output::Dial`] is established.
    Connected(ConnId),
    /// An outbound connection could not be established.
    DialFailed(ConnId),
    /// Bytes arrived on a connection.
    Received(ConnId, &'a [u8]),
    /// The connection was closed or reset by the other side (or failed).
    Closed(ConnId),
    /// The runtime holds this many bytes of the connection's transmits not yet written: reported
    /// whenever it changes. The node stops answering a peer that has too much waiting, asks the
    /// runtime to stop reading it (see [`Node::wants_read`]), and drops it past
    /// [`ServeLimits::max_backlog`].
    Backlog(ConnId, usize),
    /// The user asked for something.
    Command(Command),
    /// The time given by [`Node::poll_timeout`] has come.
    Timeout,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Sign and send a chat.
    Chat(String),
    /// Dial an address now (and keep it in the address book).
    Connect(SocketAddr),
    /// Addresses known from an earlier run: dialed when the node needs peers.
    AddKnown(Vec<SocketAddr>),
    /// Announce `Leave`, then close every connection. The node refuses new connections after.
    Leave,
}

/// What the caller must do, pulled with [`Node::poll_output`].
#[derive(Debug)]
pub enum Output {
    /// Write these bytes (whole frames, possibly several) to the connection, in order.
    Transmit {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    /// Open a TCP connection; answer with `Connected` or `DialFailed`.
    Dial {
        conn: ConnId,
        addr: SocketAddr,
    },
    /// Flush what was transmitted, then close. The node has already forgotten the connection.
    Close {
        conn: ConnId,
    },
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A chat accepted for the first time: shown to the user exactly once.
    Chat(Delivery),
    /// Boxed: the summary is 190 bytes, and every `Output` (a frame to send, nearly always) was
    /// as large as this rare variant, moved through the output queue and `poll_output`.
    PeerUp(Box<PeerSummary>),
    PeerDown {
        conn: ConnId,
        peer: PeerId,
        username: String,
        reason: String,
    },
    /// A dial failed; `retry_at` is when the address will be tried again, if it is kept.
    DialFailed {
        addr: SocketAddr,
        retry_at: Option<Time>,
    },
    /// Something the user may want to know (a misbehaving peer, a refused chat).
    Warning(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub chat: Arc<Chat>,
    /// Links crossed to get here (0: our own chat).
    pub hops: u8,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Written by this node's user.
    Local,
    /// Arrived by push (eager or lazy announcement), as it spread.
    Live,
    /// Fetched by anti-entropy because we were missing it, and at least 5 s old: catch-up after
    /// being away.
    Repair,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSummary {
    pub conn: ConnId,
    pub peer: PeerId,
    pub public_key: PublicKey,
    pub username: String,
    /// Remote socket address of the connection.
    pub addr: SocketAddr,
    /// Where the peer accepts connections, if it does.
    pub listen_addr: Option<SocketAddr>,
    pub direction: Direction,
    pub score: i32,
    pub rtt: Option<Duration>,
    pub since: Time,
}

/// Counters, for `/stats`, the simulator and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Chats written here.
    pub chats_sent: u64,
    /// Chats of others delivered here.
    pub chats_received: u64,
    /// Of which fetched by repair.
    pub chats_repaired: u64,
    /// Chat frames pushed eagerly to neighbours.
    pub chats_relayed: u64,
    /// Chat frames received, duplicates included (the simulator's RMR numerator).
    pub chat_frames_in: u64,
    pub duplicates: u64,
    /// Refused: bad signature, oversized, too old or too new.
    pub chats_refused: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub bad_frames: u64,
    pub ihave_ids_sent: u64,
    pub iwant_ids_sent: u64,
    pub sync_frames_sent: u64,
    pub prunes_sent: u64,
    pub grafts_sent: u64,
    pub dials: u64,
    pub peers_banned: u64,
    /// Bytes of answers to requests (replies, sync, addresses, pongs), as charged to the asking
    /// peers' credit (see [`crate::serve`]).
    pub answer_bytes: u64,
    /// Requests not answered, or answered in part, because the peer's credit did not cover them.
    pub answers_refused: u64,
    /// Requests not answered because too much already waited to be written to the peer.
    pub answers_deferred: u64,
    /// Chats asked for again after they had been sent to the same peer, and not sent again.
    pub repeats_ignored: u64,
}

/// What the next timeout is for ("say why you wake").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Periodic maintenance: dialing, pings, peer exchange, anti-entropy, expiry.
    Tick,
    /// A lazily announced chat is due to be requested.
    Want,
    /// Batched lazy announcements are due to go out.
    IHave,
}

enum Phase {
    Dialing,
    Handshaking(Box<Handshake>),
    Up(Peer),
}

/// The peer id is not kept: it is the hash of the public key, needed only when a peer leaves or is
/// named, and a dozen connections in every node of a simulator would hold 32 bytes each for it.
struct Peer {
    public_key: PublicKey,
    /// Inline when short (see [`Name`]): most are, and a `Box<str>` was a heap chunk per
    /// connection besides its 16 bytes.
    username: Name,
}

/// One connection. A node holds a dozen or so (see `Node::conns`), and a simulator
/// holds thousands of nodes: fields that are the same for every connection of a node (rate
/// limits) stay in `Config`, and fields that can be derived from others are.
struct Conn {
    /// Read through `addr()`, `direction()` and `listen_addr()`.
    addr: ConnAddr,
    phase: Phase,
    /// Set once the handshake is done; every frame in and out passes through it.
    session: Option<Session>,
    /// Its limit is `Config::max_frame_bytes`.
    decoder: Frames,
    /// When the connection opened (dial answered or accepted) until it is up, then when it came
    /// up: the handshake timeout needs the one, the peer summary the other.
    since: Time,
    last_recv: Time,
    /// Between `BAN_SCORE` less the largest penalty and `MAX_SCORE`: two bytes hold it.
    score: i16,
    /// The nonce of the ping sent at `last_ping`, while `ping_out` (its pong not back yet). Not
    /// an `Option<u64>`, which is twice the size, the flag being kept beside the other small ones.
    ping: u64,
    ping_out: bool,
    last_ping: Time,
    /// The last round-trip time in microseconds, [`NO_RTT`] until one is measured.
    rtt_us: u32,
    /// Rates are `Config::chat_rate` and `Config::control_rate`.
    chat_tokens: Tokens,
    control_tokens: Tokens,
    asked_peers: bool,
    /// What answering this peer may still cost (see [`crate::serve`]).
    credit: Credit,
    /// Bytes the runtime has not written yet (`Input::Backlog`).
    unsent: u32,
    /// Chats sent in answer to its requests: made at its first answered request.
    served: Option<Box<Served>>,
}

/// Where the peer of a connection accepts connections. Always at the connection's own IP, so only
/// the port is kept (an `Option<SocketAddr>` is eight times the size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listen {
    Unknown,
    /// The address we dialed, exactly as dialed.
    Dialed,
    /// Told by the peer (hello or `Announce`).
    Port(u16),
}

/// `Conn::rtt_us` before the first pong. Longer round trips (71 minutes) are kept as one less.
const NO_RTT: u32 = u32::MAX;

/// A connection's far end, in 16 bytes: its address, which side dialed, and where the peer
/// accepts connections. A `SocketAddr` alone is 32: an IPv6 address (with its flow info and
/// scope, kept exactly) is boxed, and the direction and listen port fill what an IPv4 one leaves
/// of the 16 (and the box's padding). In a simulator every node holds a dozen or so
/// connections, all IPv4: every 16 bytes less brings a boxed `Conn` into a smaller size class of
/// the allocator.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ConnAddr {
    V4 { ip: Ipv4Addr, port: u16, direction: Direction, listen: Listen },
    V6 { addr: Box<SocketAddrV6>, direction: Direction, listen: Listen },
}

impl ConnAddr {
    /// A connection we dialed listens where we dialed it; of one that dialed us we know nothing
    /// yet.
    fn new(addr: SocketAddr, direction: Direction) -> ConnAddr {
        let listen = if direction == Direction::Outbound { Listen::Dialed } else { Listen::Unknown };
        match addr {
            SocketAddr::V4(a) => ConnAddr::V4 { ip: *a.ip(), port: a.port(), direction, listen },
            SocketAddr::V6(a) => ConnAddr::V6 { addr: Box::new(a), direction, listen },
        }
    }

    fn get(&self) -> SocketAddr {
        match self {
            ConnAddr::V4 { ip, port, .. } => SocketAddr::V4(SocketAddrV4::new(*ip, *port)),
            ConnAddr::V6 { addr, .. } => SocketAddr::V6(**addr),
        }
    }

    fn direction(&self) -> Direction {
        match self {
            ConnAddr::V4 { direction, .. } | ConnAddr::V6 { direction, .. } => *direction,
        }
    }

    fn listen(&self) -> Listen {
        match self {
            ConnAddr::V4 { listen, .. } | ConnAddr::V6 { listen, .. } => *listen,
        }
    }

    fn set_listen(&mut self, to: Listen) {
        match self {
            ConnAddr::V4 { listen, .. } | ConnAddr::V6 { listen, .. } => *listen = to,
        }
    }
}

/// What the liveness pass does with a connection (see `Conn::liveness`).
enum Liveness {
    Close(&'static str),
    Ping,
}

impl Conn {
    fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    fn direction(&self) -> Direction {
        self.addr.direction()
    }

    fn listen_addr(&self) -> Option<SocketAddr> {
        match self.addr.listen() {
            Listen::Unknown => None,
            Listen::Dialed => Some(self.addr()),
            Listen::Port(port) => Some(SocketAddr::new(self.addr().ip(), port)),
        }
    }

    fn rtt(&self) -> Option<Duration> {
        (self.rtt_us != NO_RTT).then(|| Duration::from_micros(self.rtt_us.into()))
    }

    /// What the liveness pass does with this connection at `now`: close it (a handshake or dial
    /// that took too long, a peer gone silent), ping it, or nothing. `liveness_due` says when this
    /// could first be other than nothing: the two state one rule, so they stay side by side.
    fn liveness(&self, now: Time, config: &Config) -> Option<Liveness> {
        match self.phase {
            Phase::Dialing | Phase::Handshaking(_) if now.since(self.since) > config.handshake_timeout => {
                Some(Liveness::Close("handshake timed out"))
            }
            Phase::Up(_) if now.since(self.last_recv) > config.stale_after => Some(Liveness::Close("peer went silent")),
            // A peer that spoke lately is alive: only quiet links are pinged (most of a busy
            // node's links carry something every few seconds), and every link now and then to
            // keep its round-trip time fresh.
            Phase::Up(_)
                if now.since(self.last_ping) >= config.ping_interval
                    && (now.since(self.last_recv) >= config.ping_interval
                        || now.since(self.last_ping) >= config.ping_interval * RTT_REFRESH) =>
            {
                Some(Liveness::Ping)
            }
            _ => None,
        }
    }

    /// The earliest time `liveness` could find this connection timed out, gone silent or due a
    /// ping, if nothing more arrives on it. Input only moves it later (`last_recv`), except the
    /// handshake's end, which `establish` reports.
    fn liveness_due(&self, config: &Config) -> Time {
        match self.phase {
            Phase::Up(_) => {
                let quiet = self.last_recv + config.ping_interval;
                let refresh = self.last_ping + config.ping_interval * RTT_REFRESH;
                let ping = (self.last_ping + config.ping_interval).max(quiet.min(refresh));
                ping.min(self.last_recv + config.stale_after)
            }
            Phase::Dialing | Phase::Handshaking(_) => self.since + config.handshake_timeout,
        }
    }
}

/// The fields are in two groups (`repr(C)` keeps them in this order): first those that nearly
/// every input reads or writes (a frame in, the outputs and the next timeout after it), then those
/// that only connection changes, timers and commands touch. A simulator at 100,000 nodes finds
/// every node cold in cache and hints the hot group ahead of its inputs (`Node::HOT_BYTES`, 560
/// bytes): in the compiler's order what a frame touches was spread over the whole node, 18 lines,
/// all of which were hinted.
#[repr(C)]
pub struct Node {
    // ----- hot: read or written by nearly every input -----
    /// When the batched `ihave` goes out. First: its tag is the niche of `Option<Node>`, which a
    /// driver reads before every input.
    ihave_due: Option<Time>,
    /// Boxed: measured, connections held in place in one block that is reallocated as they come
    /// and go cost more resident memory (freed blocks of every size) than a box each.
    conns: ConnTable<Box<Conn>>,
    /// Shared by every node that was given the same tuning (see [`Node::with_shared_config`]):
    /// a simulator runs thousands of nodes that differ only in name, and a copy each was 432
    /// bytes a node, plus its name's and bootstrap list's heap.
    config: Arc<Config>,
    interner: Option<Arc<dyn ChatInterner>>,
    out: VecDeque<Output>,
    /// Frames queued per connection, sealed by `poll_output`. Each buffer starts with
    /// `session::HEADER_BYTES` of room, so that it is sealed in place and handed out as the
    /// transmit itself (see `Session::seal_in_place`).
    tx: ConnMap<Vec<u8>>,
    /// Ids to announce, with the neighbour each goes to, in the order they were queued: one list
    /// for all neighbours, so that a batch costs one allocation instead of one per neighbour (and
    /// the map's own); a few dozen at most, so scans are cheap.
    ihave: Vec<(ConnId, ChatId)>,
    next_tick: Time,
    keys: Box<dyn Keys>,
    joined: bool,
    leaving: bool,
    dedup: Dedup,
    gossip: Gossip,
    /// Last of the group: its last few counters are cold, and are not hinted.
    stats: Stats,
    // ----- cold: connection changes, timers, commands -----
    /// Used when a new chat is spread to more lazy neighbours than it goes to, and by dials.
    rng: Rng,
    /// This node's own name, which `config.username` need not be.
    username: Name,
    identity: StaticIdentity,
    next_conn: u64,
    /// Connections in `Phase::Up`: counted as they come up and go, since counting them walked
    /// every connection, a cache miss each in a large simulation, three times per handshake.
    up_peers: usize,
    book: AddressBook,
    banned: BTreeMap<PeerId, Time>,
    dial_bucket: Tokens,
    next_sync: Time,
    next_exchange: Time,
    next_explore: Time,
    next_announce: Time,
    /// No connection needs a look from `maintain`'s liveness pass before this (see
    /// `Conn::liveness_due`): pings go out every 10 s and silence is judged over 20, so most
    /// ticks would walk every connection, each a cache miss in a large simulation, to find
    /// nothing to do. Early is harmless; it is never late.
    next_liveness: Time,
}

/// A chat fetched by sync is shown as caught up (`Origin::Repair`) only if at least this old.
const CAUGHT_UP_AFTER: Duration = Duration::from_secs(5);

/// Chats fetched by sync younger than this are announced on (see `on_chat`).
const RECENT: Duration = Duration::from_secs(60);

/// A busy link is still pinged every this many ping intervals, to keep its round-trip time fresh.
const RTT_REFRESH: u32 = 6;

/// Announcements a node's batch makes room for when it gets its first.
const IHAVE_FIRST_ROOM: usize = 8;

/// Reads up to this size are opened into a buffer on the stack (see `on_records`).
const SMALL_READ_BYTES: usize = 1024;
/// Most reads (a chat, an announcement, a want) fit in this much.
const TINY_READ_BYTES: usize = 256;

/// Inbound peers with the shortest measured round trips that a full node keeps when it makes room
/// for a newcomer (see `Node::make_room`). Bitcoin Core keeps 8 of 125 inbound slots for the
/// fastest; 4 of our 50.
const PROTECTED_FASTEST: usize = 4;

/// A network group whose silent handshakes fill more than one part in this many of the handshake
/// slots gives one up to a newcomer from elsewhere (see `Node::handshake_victim`): more than 8 of
/// the default 64.
const GROUP_HANDSHAKE_SHARE: usize = 8;

/// Below this many known addresses, every new neighbour is asked for more.
const HUNGRY_BOOK: usize = 64;
/// Most dials in flight at once.
const MAX_PENDING_DIALS: usize = 4;

impl Node {
    /// A node at time `now`; `seed` drives every random choice it makes.
    pub fn new(config: Config, keys: Box<dyn Keys>, seed: u64, now: Time) -> Node {
        let username = Name::new(&config.username);
        let config = Arc::new(config);
        Node::build(Arc::clone(&config), username, &config.bootstrap, keys, seed, now)
    }

    /// A node like [`Node::new`]'s, but with tuning shared with other nodes: for running many
    /// nodes in one process (the simulator), where each keeping its own `Config` would cost
    /// memory for nothing. `username` and `bootstrap` are this node's; the shared config's
    /// `username` and `bootstrap` are not used. (There is no accessor for the config: for such a
    /// node it would show the shared name, not the node's; see [`Node::username`].)
    pub fn with_shared_config(
        config: Arc<Config>,
        username: &str,
        bootstrap: &[SocketAddr],
        keys: Box<dyn Keys>,
        seed: u64,
        now: Time,
    ) -> Node {
        Node::build(config, Name::new(username), bootstrap, keys, seed, now)
    }

    fn build(
        config: Arc<Config>,
        username: Name,
        bootstrap: &[SocketAddr],
        keys: Box<dyn Keys>,
        seed: u64,
        now: Time,
    ) -> Node {
        let mut rng = Rng::new(seed);
        let identity = StaticIdentity::new(&*keys, &mut rng);
        let mut book = AddressBook::new(config.address_book_cap, config.backoff_base, config.backoff_max);
        for addr in bootstrap {
            book.add(*addr, Source::Bootstrap, now);
        }
        Node {
            dedup: Dedup::new(config.retention, config.max_chats, config.max_clock_skew),
            gossip: Gossip::new(
                config.fanout,
                config.lazy_fanout,
                config.lazy_wait,
                config.want_timeout,
                config.repair,
            ),
            keys,
            identity,
            rng,
            conns: ConnTable::default(),
            next_conn: 0,
            up_peers: 0,
            book,
            banned: BTreeMap::new(),
            out: VecDeque::new(),
            tx: ConnMap::default(),
            ihave: Vec::new(),
            ihave_due: None,
            interner: None,
            dial_bucket: Tokens::full(config.dials_per_minute.1, now),
            next_tick: now,
            next_sync: now + config.sync_interval,
            next_exchange: now,
            next_explore: now + config.explore_interval,
            next_announce: now + config.announce_interval,
            next_liveness: Time::MAX,
            joined: false,
            leaving: false,
            stats: Stats::default(),
            username,
            config,
        }
    }

    /// Keeps accepted chats as the interner's copies (see [`ChatInterner`]).
    pub fn share_chats(&mut self, interner: Arc<dyn ChatInterner>) {
        self.interner = Some(interner);
    }

    /// Computed (a hash of the key) rather than kept: it is asked for rarely, and a simulator
    /// would hold 32 bytes in every node for it.
    pub fn peer_id(&self) -> PeerId {
        self.keys.public_key().peer_id()
    }

    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// The name this node goes by in handshakes and on its chats.
    pub fn username(&self) -> &str {
        self.username.as_str()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How many peers are connected (handshake done): `peers().len()` without building them.
    pub fn peer_count(&self) -> usize {
        debug_assert_eq!(self.up_peers, self.conns.values().filter(|c| matches!(c.phase, Phase::Up(_))).count());
        self.up_peers
    }

    /// Established neighbours, in connection order.
    pub fn peers(&self) -> Vec<PeerSummary> {
        self.conns.iter().filter_map(|(id, c)| self.summary(*id, c, None)).collect()
    }

    /// Addresses of peers reached at some point: what the CLI persists to reconnect after restart.
    pub fn known_addresses(&self) -> Vec<SocketAddr> {
        self.book.iter().filter(|(_, e)| e.reached && !e.is_self).map(|(a, _)| a).collect()
    }

    /// Recent chats held for repair, oldest first.
    pub fn recent_chats(&self) -> impl Iterator<Item = &Arc<Chat>> {
        self.dedup.iter()
    }

    /// Chats held for repair and catch-up.
    pub fn held_chats(&self) -> usize {
        self.dedup.len()
    }

    /// Whether the node has finished leaving (no connections left).
    pub fn is_closed(&self) -> bool {
        self.leaving && self.conns.is_empty()
    }

    /// Loads chats from an earlier run (the CLI's database) so this node can serve them to peers
    /// that missed them. They are not delivered again. Chats that fail verification, or are out of
    /// the retention window, are skipped. Returns how many were taken.
    pub fn restore(&mut self, now: Time, chats: impl IntoIterator<Item = Chat>) -> usize {
        let mut taken = 0;
        for chat in chats {
            if self.dedup.check(&chat.id, now) == Verdict::New && chat.is_well_formed() && chat.verify(&*self.keys) {
                self.dedup.insert(Arc::new(chat), 0);
                taken += 1;
            }
        }
        taken
    }

    /// A peer connected to us. Returns the id to report its bytes under, or `None` if the node
    /// refuses it (too many connections from its address, every handshake slot taken by a dialer
    /// that has only just connected, or leaving): the caller then closes the socket.
    pub fn accept(&mut self, now: Time, remote: SocketAddr) -> Option<ConnId> {
        // A full node still accepts, to refer the newcomer elsewhere (see `establish`).
        // Both counts in one pass with nothing collected: this runs for every connection accepted,
        // and each connection looked at is a cache line of its own in a large simulation.
        let (mut same_ip, mut handshaking) = (0, 0);
        for c in self.conns.values() {
            same_ip += usize::from(c.addr().ip() == remote.ip());
            handshaking +=
                usize::from(matches!((c.direction(), &c.phase), (Direction::Inbound, Phase::Handshaking(_))));
        }
        if self.leaving || same_ip >= self.config.max_conns_per_ip {
            return None;
        }
        if handshaking >= self.config.max_handshaking.max(1) {
            match self.handshake_victim(now, remote) {
                Some(victim) => self.close(now, victim, "handshake slots full", false),
                None => return None,
            }
        }
        let conn = self.new_conn(now, remote, Direction::Inbound, true);
        Some(conn)
    }

    /// Whom a newcomer from `remote` displaces when the inbound handshake slots are full: `None`
    /// to refuse the newcomer itself. In this order:
    /// - a handshake older than a fifth of `handshake_timeout` (a second by default, several round
    ///   trips on any sane link) whose dialer has not sent its first message (an honest dialer
    ///   sends it at once; a connection that never will, slowloris, never does), the oldest first;
    /// - if the newcomer is from another network group (IPv4 /16, IPv6 /32), the oldest silent
    ///   handshake of the group holding the most of them, if those are more than
    ///   `max_handshaking / GROUP_HANDSHAKE_SHARE` (8 of 64 by default): many half-open
    ///   connections from few networks are an attack, not a crowd;
    /// - a handshake older than that grace whose dialer spoke but has not finished, the oldest.
    ///
    /// While none of these exists, the newcomer is refused: the slots hold dialers that have barely
    /// had time to speak. Displacing the oldest silent one at once, as before, collapsed under a
    /// crowd: 10,000 simulated nodes joining through three bootstrap nodes arrived faster than 64 a
    /// round trip, so every handshake was displaced before its first message came back, and 97%
    /// of the nodes still had no peer after eight seconds. Refused, a dialer backs off and tries
    /// again, so a crowd is served at the rate the slots complete handshakes. To keep every slot
    /// from honest dialers, an attacker must open 64 connections a second from at least eight
    /// network groups (by default), and keeps none of them for more than a second.
    fn handshake_victim(&self, now: Time, remote: SocketAddr) -> Option<ConnId> {
        let grace = self.config.handshake_timeout / 5;
        // Rare, so the handshakes themselves (each behind a pointer) are only read here. Ids grow
        // with time: the first found of each kind is the oldest.
        let mut oldest_progressed = None;
        let mut young_silent: Vec<(u64, ConnId)> = Vec::new();
        for (id, c) in self.conns.iter() {
            let (Direction::Inbound, Phase::Handshaking(hs)) = (c.direction(), &c.phase) else { continue };
            match (now.since(c.since) >= grace, hs.progressed()) {
                (true, false) => return Some(*id),
                (true, true) => oldest_progressed = oldest_progressed.or(Some(*id)),
                (false, false) => young_silent.push((net_group(c.addr().ip()), *id)),
                (false, true) => {}
            }
        }
        let mine = net_group(remote.ip());
        let share = (self.config.max_handshaking / GROUP_HANDSHAKE_SHARE).max(1);
        let in_group = |g: u64| young_silent.iter().filter(|(h, _)| *h == g).count();
        let crowded = young_silent
            .iter()
            .map(|(g, id)| (in_group(*g), std::cmp::Reverse(*id), *g))
            .max()
            .filter(|(n, _, g)| *n > share && *g != mine);
        crowded.map(|(_, std::cmp::Reverse(id), _)| id).or(oldest_progressed)
    }

    pub fn handle_input(&mut self, now: Time, input: Input<'_>) {
        match input {
            Input::Connected(conn) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if matches!(c.phase, Phase::Dialing) {
                        c.since = now;
                        c.last_recv = now;
                        self.start_handshake(conn);
                    }
                }
            }
            Input::DialFailed(conn) => {
                if let Some(c) = self.conns.remove(&conn) {
                    self.tx.remove(conn);
                    let retry_at = self.book.on_failure(&c.addr(), now, &mut self.rng);
                    self.emit(Event::DialFailed { addr: c.addr(), retry_at });
                }
            }
            Input::Received(conn, bytes) => self.on_bytes(now, conn, bytes),
            Input::Closed(conn) => self.drop_conn(now, conn, "connection closed by peer", false, true),
            Input::Backlog(conn, bytes) => self.on_backlog(now, conn, bytes),
            Input::Command(cmd) => self.on_command(now, cmd),
            Input::Timeout => self.on_timeout(now),
        }
    }

    /// The next thing to do. Call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if self.config.ihave_delay.is_zero() {
            self.flush_ihave();
        }
        loop {
            let Some((conn, mut bytes)) = self.tx.pop_first() else {
                self.release_queues();
                return None;
            };
            // Frames are queued only for established connections, which all have a session.
            let Some(c) = self.conns.get_mut(&conn) else { continue };
            let Some(session) = c.session.as_mut() else { continue };
            if session.seal_in_place(&mut bytes).is_ok() {
                return Some(Output::Transmit { conn, bytes });
            }
            // After 2^64 records: not in this universe, but never a panic.
            let when = c.last_recv;
            self.drop_conn(when, conn, "session nonces exhausted", false, false);
        }
    }

    /// Frees the buffer of the drained output queue (`tx` frees its own). Emptied, a `VecDeque`
    /// keeps its capacity; a node spends nearly all its time idle between inputs, and a simulator
    /// holds thousands of them, so it is given back and allocated again by the next input that has
    /// something to say.
    fn release_queues(&mut self) {
        if self.out.is_empty() {
            self.out = VecDeque::new();
        }
    }

    /// When to feed `Input::Timeout` next, and why. Changes only after an input.
    pub fn poll_timeout(&self) -> Option<(Time, Timer)> {
        if self.is_closed() {
            return None;
        }
        let mut next = (self.next_tick, Timer::Tick);
        for due in [self.gossip.next_deadline().map(|t| (t, Timer::Want)), self.ihave_due.map(|t| (t, Timer::IHave))] {
            if let Some(d) = due.filter(|d| d.0 < next.0) {
                next = d;
            }
        }
        Some(next)
    }

    // ----- connections -----

    fn new_conn(&mut self, now: Time, addr: SocketAddr, direction: Direction, handshake_now: bool) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Box::new(Conn {
                addr: ConnAddr::new(addr, direction),
                phase: Phase::Dialing,
                session: None,
                decoder: Frames::default(),
                since: now,
                last_recv: now,
                score: 0,
                ping: 0,
                ping_out: false,
                last_ping: now,
                rtt_us: NO_RTT,
                chat_tokens: Tokens::full(self.config.chat_rate.1, now),
                control_tokens: Tokens::full(self.config.control_rate.1, now),
                asked_peers: false,
                credit: Credit::full(&self.config.serve),
                unsent: 0,
                served: None,
            }),
        );
        self.next_liveness = self.next_liveness.min(now + self.config.handshake_timeout);
        if handshake_now {
            self.start_handshake(conn);
        }
        conn
    }

    /// The dialer speaks first; the acceptor waits for it.
    fn start_handshake(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let (keys, me, rng) = (&*self.keys, &self.identity, &mut self.rng);
        let (name, port) = (self.username.as_str(), self.config.listen_port);
        if c.direction() == Direction::Outbound {
            let (hs, first) = Handshake::dial(keys, me, rng, name, port);
            c.phase = Phase::Handshaking(hs);
            self.transmit_raw(conn, first);
        } else {
            c.phase = Phase::Handshaking(Handshake::accept(keys, me, rng, name, port));
        }
    }

    fn dial(&mut self, now: Time, addr: SocketAddr) {
        self.book.on_dial(&addr, now);
        let conn = self.new_conn(now, addr, Direction::Outbound, false);
        self.stats.dials += 1;
        self.out.push_back(Output::Dial { conn, addr });
    }

    /// Closes a connection we decided to drop. `backoff`: count it as a failure of the address.
    fn close(&mut self, now: Time, conn: ConnId, reason: &str, backoff: bool) {
        self.drop_conn(now, conn, reason, backoff, false);
    }

    fn drop_conn(&mut self, now: Time, conn: ConnId, reason: &str, backoff: bool, by_peer: bool) {
        let Some(mut c) = self.conns.remove(&conn) else { return };
        self.ihave.retain(|(c, _)| *c != conn);
        if self.ihave.is_empty() {
            // As everywhere: an idle node holds no buffer.
            self.ihave = Vec::new();
        }
        let pending = self.tx.remove(conn);
        if !by_peer {
            if let (Some(mut bytes), Some(session)) = (pending, c.session.as_mut()) {
                if session.seal_in_place(&mut bytes).is_ok() {
                    self.out.push_back(Output::Transmit { conn, bytes });
                }
            }
            self.out.push_back(Output::Close { conn });
        }
        let was_up = matches!(c.phase, Phase::Up(_));
        self.up_peers -= usize::from(was_up);
        if c.direction() == Direction::Outbound && (backoff || by_peer || !was_up) {
            // An outbound peer that went away is retried after a backoff: automatic reconnection.
            self.book.on_failure(&c.addr(), now, &mut self.rng);
        }
        if let Phase::Up(p) = c.phase {
            if let Some(g) = self.gossip.on_peer_down(conn, &mut self.rng) {
                self.stats.grafts_sent += 1;
                self.send(g, &Message::Graft { ids: Vec::new() });
            }
            let username = p.username.as_str().to_owned();
            let peer = p.public_key.peer_id();
            self.emit(Event::PeerDown { conn, peer, username, reason: reason.to_owned() });
        }
    }

    fn up_conns(&self) -> Vec<ConnId> {
        let mut up = Vec::with_capacity(self.conns.len());
        up.extend(self.conns.iter().filter(|(_, c)| matches!(c.phase, Phase::Up(_))).map(|(id, _)| *id));
        up
    }

    /// `peer`: the peer id, when the caller has it already (a SHA-256 of the key, 2% of the
    /// simulator's instructions when computed twice per handshake).
    fn summary(&self, conn: ConnId, c: &Conn, peer: Option<PeerId>) -> Option<PeerSummary> {
        let Phase::Up(p) = &c.phase else { return None };
        Some(PeerSummary {
            conn,
            peer: peer.unwrap_or_else(|| p.public_key.peer_id()),
            public_key: p.public_key,
            username: p.username.as_str().to_owned(),
            addr: c.addr(),
            listen_addr: c.listen_addr(),
            direction: c.direction(),
            score: c.score.into(),
            rtt: c.rtt(),
            since: c.since,
        })
    }

    fn penalize(&mut self, now: Time, conn: ConnId, why: Penalty, detail: &str) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        // Exact: the score is above `BAN_SCORE` here, and the largest penalty small.
        c.score = c.score.saturating_sub(i16::try_from(why.points()).unwrap_or(i16::MAX));
        if i32::from(c.score) > BAN_SCORE {
            if !why.is_quiet() {
                let msg = format!("peer {} ({}): {detail}", conn_name(c), c.addr());
                self.emit(Event::Warning(msg));
            }
            return;
        }
        let until = now + self.config.ban_duration;
        if let Some(a) = c.listen_addr() {
            self.book.ban(&a, until);
        }
        if let Phase::Up(p) = &c.phase {
            self.banned.insert(p.public_key.peer_id(), until);
        }
        let msg = format!(
            "banned peer {} ({}) for {}s: {detail}",
            conn_name(c),
            c.addr(),
            self.config.ban_duration.as_secs()
        );
        self.stats.peers_banned += 1;
        self.emit(Event::Warning(msg));
        self.close(now, conn, "banned for misbehaviour", false);
    }

    // ----- bytes and messages -----

    fn on_bytes(&mut self, now: Time, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        self.stats.bytes_in += bytes.len() as u64;
        c.last_recv = now;
        c.credit.earn(bytes.len(), &self.config.serve);
        match c.phase {
            Phase::Dialing => {}
            Phase::Handshaking(_) => self.on_handshake_bytes(now, conn, bytes),
            Phase::Up(_) => self.on_records(now, conn, bytes),
        }
    }

    /// Bytes of an established connection: records to open, then frames to act on.
    fn on_records(&mut self, now: Time, conn: ConnId, bytes: &[u8]) {
        let max_frame = wire::limit(self.config.max_frame_bytes);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(session) = c.session.as_mut() else { return };
        // Not kept between reads: an idle node holds no scratch buffer (see `poll_output`). Sized
        // for everything that could open now; most reads are small enough for the stack, so they
        // cost no allocation at all.
        let room = session.buffered() + bytes.len();
        // Two sizes on the stack: the buffer is zeroed first, and zeroing a kilobyte for a read
        // of a hundred bytes was 1% of the simulator's instructions.
        let mut tiny;
        let mut small;
        let mut large = Vec::new();
        let plain = if room <= TINY_READ_BYTES {
            tiny = [0u8; TINY_READ_BYTES];
            &mut tiny[..room]
        } else if room <= SMALL_READ_BYTES {
            small = [0u8; SMALL_READ_BYTES];
            &mut small[..room]
        } else {
            large.resize(room, 0);
            &mut large[..]
        };
        let opened = session.open_into(bytes, plain);
        // Nearly every read holds at most one frame: it is kept on its own, and a list is made
        // only from a second frame on (for `preverify`'s batch), so most reads allocate none.
        let mut first = None;
        let mut more = Vec::new();
        // A chat frame is read as the copy already kept of its chat where there is one: the
        // interner's, which has nearly every chat of a simulation, or else our own, which a
        // duplicate finds.
        let (interner, dedup) = (&self.interner, &self.dedup);
        let known = |id: &ChatId| match interner {
            Some(i) => i.get(id),
            None => dedup.get(id).map(|s| s.chat),
        };
        if let Ok(n) = opened {
            c.decoder.decode_each_with(&plain[..n], max_frame, &known, |frame| match first {
                None => first = Some(frame),
                Some(_) => more.push(frame),
            });
        }
        match opened {
            Ok(_) => match first {
                None => {}
                Some(Frame::Message(Err(e))) if more.is_empty() && e.is_fatal() => self.on_fatal_frame(now, conn, e),
                Some(frame) if more.is_empty() => self.on_frame(now, conn, frame, None),
                Some(frame) => {
                    more.insert(0, frame);
                    self.on_frames(now, conn, more);
                }
            },
            Err(e) => {
                self.stats.bad_frames += 1;
                let msg = format!("closing connection to {} ({}): {e}", conn_name(c), c.addr());
                self.emit(Event::Warning(msg));
                self.close(now, conn, &e.to_string(), true);
            }
        }
    }

    fn on_handshake_bytes(&mut self, now: Time, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Phase::Handshaking(hs) = &mut c.phase else { return };
        match hs.handle(&*self.keys, bytes) {
            Ok(Progress::Continue(send)) => self.transmit_raw(conn, send),
            Ok(Progress::Done(done)) => {
                let done = *done;
                c.session = Some(done.session);
                // Our last handshake message leaves before anything the session seals.
                self.transmit_raw(conn, done.send);
                self.establish(now, conn, done.hello);
                // Bytes that followed the handshake are the session's first records (already
                // counted in `bytes_in`); `establish` may have closed the connection instead.
                if !done.leftover.is_empty() && self.conns.get(&conn).is_some_and(|c| matches!(c.phase, Phase::Up(_))) {
                    self.on_records(now, conn, &done.leftover);
                }
            }
            Err(e) => {
                let (listen_addr, addr) = (c.listen_addr(), c.addr());
                if e == HandshakeError::SelfConnection {
                    if let Some(a) = listen_addr {
                        self.book.mark_self(&a);
                    }
                } else {
                    self.emit(Event::Warning(format!("handshake with {addr} failed: {e}")));
                }
                self.close(now, conn, &e.to_string(), true);
            }
        }
    }

    /// Handshake bytes go out as they are, ahead of the sealed frames in `tx`.
    fn transmit_raw(&mut self, conn: ConnId, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.stats.bytes_out += bytes.len() as u64;
            self.out.push_back(Output::Transmit { conn, bytes });
        }
    }

    /// Acts on the frames decoded from one read. Everything that arrived is decoded first, so
    /// the new chats among it can be verified in one batch; then each frame is acted on in order.
    fn on_frames(&mut self, now: Time, conn: ConnId, mut frames: Vec<Frame<'_>>) {
        let fatal = match frames.last() {
            Some(Frame::Message(Err(e))) if e.is_fatal() => match frames.pop() {
                Some(Frame::Message(Err(e))) => Some(e),
                _ => unreachable!("matched above"),
            },
            _ => None,
        };
        let verdicts = self.preverify(now, &frames);
        for (i, frame) in frames.into_iter().enumerate() {
            if !self.conns.contains_key(&conn) {
                return;
            }
            self.on_frame(now, conn, frame, verdicts.get(i).copied().flatten());
        }
        if let Some(e) = fatal {
            self.on_fatal_frame(now, conn, e);
        }
    }

    fn on_frame(&mut self, now: Time, conn: ConnId, frame: Frame<'_>, verified: Option<bool>) {
        match frame {
            Frame::Message(Ok(msg)) => {
                self.stats.frames_in += 1;
                self.on_message(now, conn, msg, verified);
            }
            Frame::IHave(ids) => {
                self.stats.frames_in += 1;
                if self.admit(now, conn, false) {
                    self.on_ihave(now, conn, ids.len(), ids.iter());
                }
            }
            Frame::Message(Err(e)) => {
                self.stats.bad_frames += 1;
                self.penalize(now, conn, Penalty::BadFrame, &e.to_string());
            }
        }
    }

    /// The stream cannot be read past `e`: the connection closes.
    fn on_fatal_frame(&mut self, now: Time, conn: ConnId, e: WireError) {
        if let Some(c) = self.conns.get(&conn) {
            self.stats.bad_frames += 1;
            let msg = format!("closing connection to {} ({}): {e}", conn_name(c), c.addr());
            self.emit(Event::Warning(msg));
            self.close(now, conn, &e.to_string(), true);
        }
    }

    /// Batch-verifies the signatures of the chats among `frames` that would be accepted if valid.
    /// Returns, per frame, the verdict where one was computed (empty if none was).
    fn preverify(&self, now: Time, frames: &[Frame<'_>]) -> Vec<Option<bool>> {
        let candidate = |f: &Frame<'_>| match f {
            Frame::Message(Ok(Message::Chat { chat, .. } | Message::Reply { chat, .. }))
                if chat.is_well_formed() && self.dedup.check(&chat.id, now) == Verdict::New =>
            {
                Some(())
            }
            _ => None,
        };
        // Fewer than two is the common case, and a batch of one saves nothing: found out
        // without building any list.
        if frames.iter().filter_map(candidate).nth(1).is_none() {
            return Vec::new();
        }
        let mut verdicts = vec![None; frames.len()];
        let candidates: Vec<(usize, &Arc<Chat>)> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| candidate(f).is_some())
            .filter_map(|(i, f)| match f {
                Frame::Message(Ok(Message::Chat { chat, .. } | Message::Reply { chat, .. })) => Some((i, chat)),
                _ => None,
            })
            .collect();
        let signed: Vec<Vec<u8>> = candidates.iter().map(|(_, c)| c.signed_bytes()).collect();
        let items: Vec<_> =
            candidates.iter().zip(&signed).map(|((_, c), bytes)| (&c.author, bytes.as_slice(), &c.signature)).collect();
        for ((i, _), ok) in candidates.iter().zip(self.keys.verify_batch(&items)) {
            verdicts[*i] = Some(ok);
        }
        verdicts
    }

    /// Whether a frame from `conn` may be acted on: the connection is still there and within its
    /// rate (for chats or for everything else); over it, it is penalised.
    fn admit(&mut self, now: Time, conn: ConnId, is_chat: bool) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        let allowed = if is_chat {
            c.chat_tokens.take(now, self.config.chat_rate)
        } else {
            c.control_tokens.take(now, self.config.control_rate)
        };
        if !allowed {
            self.penalize(now, conn, Penalty::Flood, "over the rate limit");
        }
        allowed
    }

    /// An `IHave` of `count` ids.
    fn on_ihave(&mut self, now: Time, conn: ConnId, count: usize, ids: impl Iterator<Item = ChatId>) {
        if count > MAX_IDS_PER_FRAME {
            return self.penalize(now, conn, Penalty::ProtocolViolation, "IHave too long");
        }
        if !self.config.repair {
            return;
        }
        // Whether any announcement to `conn` waits, asked once per frame rather than per id:
        // nothing below queues one.
        let queued_for = self.ihave.iter().any(|(c, _)| *c == conn);
        for id in ids {
            if queued_for {
                self.known_by(conn, &id);
            }
            if self.dedup.check(&id, now) == Verdict::New {
                self.gossip.on_ihave(id, conn, now);
            }
        }
    }

    /// `verified`: the chat's signature verdict if `preverify` computed it.
    fn on_message(&mut self, now: Time, conn: ConnId, msg: Message, verified: Option<bool>) {
        if !self.admit(now, conn, matches!(msg, Message::Chat { .. } | Message::Reply { .. })) {
            return;
        }
        match msg {
            Message::Chat { ttl, hops, chat } => {
                self.stats.chat_frames_in += 1;
                self.on_chat(now, Some(conn), chat, Some(ttl), hops, verified);
            }
            Message::Reply { hops, chat } => {
                self.stats.chat_frames_in += 1;
                self.on_chat(now, Some(conn), chat, None, hops, verified);
            }
            Message::Prune => {
                self.gossip.prune(conn);
            }
            Message::Graft { ids } => {
                if ids.len() > MAX_IDS_PER_FRAME {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "Graft too long");
                }
                self.gossip.graft(conn);
                self.answer_wants(now, conn, &ids);
            }
            Message::IHave { ids } => self.on_ihave(now, conn, ids.len(), ids.into_iter()),
            Message::IWant { ids } => {
                if ids.len() > MAX_IDS_PER_FRAME {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "IWant too long");
                }
                self.answer_wants(now, conn, &ids);
            }
            Message::Sync { ranges } => {
                let too_big = ranges.len() > MAX_RANGES_PER_FRAME
                    || ranges.iter().any(|r| matches!(&r.summary, Summary::Ids(v) if v.len() > MAX_IDS_PER_FRAME));
                if too_big {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "sync frame too large");
                }
                if self.config.repair {
                    self.on_sync(now, conn, &ranges);
                }
            }
            Message::Ping { nonce } => self.answer(now, conn, &Message::Pong { nonce }),
            Message::Pong { nonce } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if c.ping_out && c.ping == nonce {
                        let rtt = now.since(c.last_ping).as_micros();
                        c.rtt_us = rtt.min(u128::from(NO_RTT - 1)) as u32;
                        c.ping_out = false;
                    }
                }
            }
            Message::PeerRequest => {
                let addrs = self.book.sample_for_exchange(32, &mut self.rng, now);
                let addrs = addrs
                    .into_iter()
                    .filter(|a| Some(*a) != self.conns.get(&conn).and_then(|c| c.listen_addr()))
                    .collect();
                self.answer(now, conn, &Message::PeerResponse { addrs });
            }
            Message::PeerResponse { addrs } => {
                let asked = self.conns.get_mut(&conn).is_some_and(|c| std::mem::take(&mut c.asked_peers));
                if !asked || addrs.len() > MAX_ADDRS_PER_FRAME {
                    return self.penalize(
                        now,
                        conn,
                        Penalty::ProtocolViolation,
                        "unsolicited or oversized PeerResponse",
                    );
                }
                for a in addrs {
                    self.book.add(a, Source::Exchange, now);
                }
            }
            Message::Announce { listen_port } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if listen_port != 0 {
                        c.addr.set_listen(Listen::Port(listen_port));
                        let a = SocketAddr::new(c.addr().ip(), listen_port);
                        self.book.add(a, Source::Inbound, now);
                        self.book.touch(&a);
                    }
                }
            }
        }
    }

    fn establish(&mut self, now: Time, conn: ConnId, hello: wire::Hello) {
        let peer = hello.public_key.peer_id();
        if self.banned.get(&peer).is_some_and(|t| *t > now) {
            return self.close(now, conn, "peer is banned", false);
        }
        if self.peer_count() >= self.config.max_peers {
            self.make_room(now, conn);
        }
        if self.peer_count() >= self.config.max_peers {
            // Full: refer the newcomer to peers we know rather than just refuse it, or a
            // bootstrap node that filled up would leave every later joiner stranded.
            let exclude = self.conns.get(&conn).and_then(|c| c.listen_addr());
            let addrs = self
                .book
                .sample_for_exchange(32, &mut self.rng, now)
                .into_iter()
                .filter(|a| Some(*a) != exclude)
                .collect();
            self.send(conn, &Message::PeerResponse { addrs });
            return self.close(now, conn, "full: referred to other peers", false);
        }
        // Two connections to one peer (both dialed at once, or one peer at two addresses): keep the
        // one dialed by the smaller PeerId, which both sides compute alike. Same dialer: the dialer
        // keeps the older one and the other side lets it decide.
        let dup = self.conns.iter().find_map(|(id, c)| match &c.phase {
            // The same key is the same peer id.
            Phase::Up(p) if p.public_key == hello.public_key => Some((*id, c.direction())),
            _ => None,
        });
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.direction() == Direction::Inbound && hello.listen_port != 0 {
            c.addr.set_listen(Listen::Port(hello.listen_port));
        }
        let direction = c.direction();
        let listen_addr = c.listen_addr();
        if let Some((other, other_dir)) = dup {
            let me = self.peer_id();
            let dialer_of = |d: Direction| if d == Direction::Outbound { me } else { peer };
            let keep_new = if other_dir == direction { false } else { dialer_of(direction) < dialer_of(other_dir) };
            if let Some(a) = listen_addr {
                self.book.add(a, Source::Inbound, now);
                self.book.on_connected(&a, hello.public_key, now);
            }
            if keep_new {
                self.close(now, other, "duplicate connection", false);
            } else if other_dir == direction && direction == Direction::Inbound {
                // The dialer will close one of its two; until then both stay.
            } else {
                return self.close(now, conn, "duplicate connection", false);
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.phase = Phase::Up(Peer { public_key: hello.public_key, username: Name::new(&hello.username) });
        self.up_peers += 1;
        c.since = now;
        self.next_liveness = self.next_liveness.min(c.liveness_due(&self.config));
        if let Some(a) = listen_addr {
            self.book.add(a, Source::Inbound, now);
            self.book.on_connected(&a, hello.public_key, now);
        }
        let extra = self.peer_count() > self.config.target_peers;
        if !self.gossip.on_peer_up(conn, extra) && self.config.repair {
            self.stats.prunes_sent += 1;
            self.send(conn, &Message::Prune);
        }
        if let Some(s) = self.summary(conn, &self.conns[&conn], Some(peer)) {
            self.emit(Event::PeerUp(Box::new(s)));
        }
        // A new neighbour is asked for addresses while we know few: what lets a newcomer spread
        // out from the bootstrap nodes at once. One answer holds 32, so a couple of neighbours
        // stock the book; asking every new neighbour while short of peers (as before) cost 7% of
        // all frames and did not find a full peer set sooner (simulator, 3,000 nodes, also with
        // arrivals over a minute). A node with a stocked book learns from the periodic exchange.
        if self.book.len() < HUNGRY_BOOK {
            self.request_peers(conn);
        }
        if self.config.repair && self.conns[&conn].direction() == Direction::Outbound {
            // Catch up at once with every new neighbour, rather than at the next periodic round.
            // A round settles both sides' differences, so the dialer alone opens it: when both
            // did, every new link cost two rounds (a third of all sync frames).
            self.start_sync(now, conn);
        }
    }

    /// A full node takes a newcomer that dialed it by closing one of its newer inbound peers.
    /// Without this, nodes that arrived early fill up and refer late joiners only to one another,
    /// and a late joiner can dial a hundred full nodes without finding a place (found by the
    /// simulator, with nodes arriving over a minute). The choice narrows as Bitcoin Core's inbound
    /// eviction does, so that someone who completes handshakes at will mostly churns their own
    /// connections:
    /// - outbound peers (this node chose them) and the older half of the inbound ones (by
    ///   connection time) are never closed, so the node cannot be eclipsed this way;
    /// - nor are links of the gossip tree: they carry chats now, and a newcomer has earned nothing;
    /// - nor the [`PROTECTED_FASTEST`] of the rest with the shortest measured round trip (Bitcoin
    ///   Core keeps 8 of its 125 inbound slots so): an attacker can connect from many networks, but
    ///   not from near every node it wants to churn;
    /// - among the rest, the victim comes from the network group (IPv4 /16, IPv6 /32) holding the
    ///   most inbound connections, where many connections from few places accumulate, and is
    ///   chosen at random within it.
    ///
    /// Each rule spares at most all but one of the candidates it is given, so a newcomer always
    /// gets in.
    fn make_room(&mut self, now: Time, newcomer: ConnId) {
        if self.conns.get(&newcomer).is_none_or(|c| c.direction() != Direction::Inbound) {
            return;
        }
        let mut inbound: Vec<(Time, ConnId, u64, u32)> = self
            .conns
            .iter()
            .filter(|(id, c)| **id != newcomer && c.direction() == Direction::Inbound)
            .filter_map(|(id, c)| match &c.phase {
                Phase::Up(_) => Some((c.since, *id, net_group(c.addr().ip()), c.rtt_us)),
                _ => None,
            })
            .collect();
        if inbound.len() < 2 {
            return;
        }
        inbound.sort_unstable();
        let in_group = |g: u64| inbound.iter().filter(|(_, _, h, _)| *h == g).count();
        let newer = &inbound[inbound.len() / 2..];
        let mut candidates: Vec<(ConnId, u64, u32)> = newer
            .iter()
            .filter(|(_, id, _, _)| !self.gossip.is_eager(*id))
            .map(|(_, id, g, rtt)| (*id, *g, *rtt))
            .collect();
        if candidates.is_empty() {
            // A node whose newer inbound peers all carry the tree (a tiny `max_peers`): a newcomer
            // still gets in.
            candidates = newer.iter().map(|(_, id, g, rtt)| (*id, *g, *rtt)).collect();
        }
        // Stable: among equal round trips (unmeasured ones), the older first, as before.
        candidates.sort_by_key(|(_, _, rtt)| *rtt);
        let fastest = candidates
            .iter()
            .take(PROTECTED_FASTEST.min(candidates.len() - 1))
            .take_while(|(_, _, rtt)| *rtt != NO_RTT)
            .count();
        candidates.drain(..fastest);
        let crowded = candidates.iter().map(|(_, g, _)| in_group(*g)).max().unwrap_or(0);
        candidates.retain(|(_, g, _)| in_group(*g) == crowded);
        let (victim, _, _) = candidates[self.rng.below(candidates.len())];
        self.close(now, victim, "full: made room for a newcomer", false);
    }

    fn request_peers(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.asked_peers = true;
            self.send(conn, &Message::PeerRequest);
        }
    }

    // ----- chats -----

    fn on_command(&mut self, now: Time, cmd: Command) {
        match cmd {
            Command::Chat(text) => {
                if self.leaving {
                    return;
                }
                if text.len() > MAX_TEXT_BYTES {
                    return self.emit(Event::Warning(format!(
                        "chat not sent: {} bytes, the limit is {MAX_TEXT_BYTES}",
                        text.len()
                    )));
                }
                self.originate(now, Body::Text(text));
            }
            Command::Connect(addr) => {
                self.book.add(addr, Source::Manual, now);
                let busy = self.conns.values().any(|c| c.listen_addr() == Some(addr) || c.addr() == addr);
                if !busy && !self.leaving {
                    self.dial(now, addr);
                }
            }
            Command::AddKnown(addrs) => {
                for a in addrs {
                    self.book.add(a, Source::Restored, now);
                }
            }
            Command::Leave => {
                if self.leaving {
                    return;
                }
                if self.joined {
                    self.originate(now, Body::Leave);
                }
                self.leaving = true;
                // Announcements still waiting for their batch go out with the last bytes.
                self.flush_ihave();
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                for c in conns {
                    self.close(now, c, "leaving", false);
                }
            }
        }
    }

    /// Signs, delivers and spreads a chat of our own.
    fn originate(&mut self, now: Time, body: Body) {
        let id = ChatId::new_v7(now.as_millis(), &self.rng.bytes());
        let leave = body == Body::Leave;
        let chat = Arc::new(Chat::new(&*self.keys, id, self.username.as_str(), body));
        self.dedup.insert(chat.clone(), 0);
        self.stats.chats_sent += 1;
        self.emit(Event::Chat(Delivery { chat: chat.clone(), hops: 0, origin: Origin::Local }));
        if leave {
            // We close right after; nobody could fetch it from us later, so tell everyone now.
            for conn in self.up_conns() {
                self.send_chat(conn, &chat, self.config.ttl, 1);
            }
        } else {
            self.spread(now, None, &[], &chat, self.config.ttl, 1);
        }
    }

    /// A chat from a neighbour: `ttl` is `Some` for a pushed `Chat`, `None` for a `Reply`.
    fn on_chat(
        &mut self,
        now: Time,
        from: Option<ConnId>,
        chat: Arc<Chat>,
        ttl: Option<u8>,
        hops: u8,
        verified: Option<bool>,
    ) {
        let slot = match self.dedup.check_slot(&chat.id, now) {
            Ok(slot) => slot,
            Err(Verdict::Duplicate) => {
                self.stats.duplicates += 1;
                if let Some(conn) = from {
                    self.known_by(conn, &chat.id);
                }
                // A pushed duplicate means the eager link it came over is redundant.
                if let (Some(conn), Some(_)) = (from, ttl) {
                    if self.gossip.on_duplicate(conn) {
                        self.stats.prunes_sent += 1;
                        self.send(conn, &Message::Prune);
                    }
                }
                return;
            }
            // Too old or too new (`New` is never the error). Not necessarily malice (clock skew, a
            // slow catch-up): refuse without penalty.
            Err(_) => {
                self.stats.chats_refused += 1;
                return;
            }
        };
        if !chat.is_well_formed() || !verified.unwrap_or_else(|| chat.verify(&*self.keys)) {
            self.stats.chats_refused += 1;
            if let Some(conn) = from {
                self.penalize(now, conn, Penalty::BadChat, "sent a chat whose signature does not verify");
            }
            return;
        }
        let chat = match &self.interner {
            Some(i) => i.intern(chat),
            None => chat,
        };
        // Nothing between the check and here touches `dedup`, so the slot still holds.
        self.dedup.insert_at(slot, chat.clone(), hops);
        // Whoever announced it holds it: the forwarding rule skips them.
        let (requested, holders) = self.gossip.take_received(&chat.id);
        if let (Some(conn), Some(_)) = (from, ttl) {
            self.gossip.on_first(conn);
        }
        self.stats.chats_received += 1;
        if let Some(c) = from.and_then(|f| self.conns.get_mut(&f)) {
            c.score = (c.score + 1).min(MAX_SCORE as i16);
        }
        // Pushed chats and grafted ones are live and spread on; anything else came by
        // anti-entropy: history that the neighbours get by their own syncs.
        let live_ttl = match (ttl, requested) {
            (Some(t), _) => Some(t),
            (None, Requested::Graft) => Some(self.config.ttl),
            (None, _) => None,
        };
        if live_ttl.is_none() {
            self.stats.chats_repaired += 1;
        }
        // "Caught up" is about age, not path: a chat written a moment ago that happened to come by
        // a sync round is still news to the user.
        let old = now.since(Time::from_millis(chat.timestamp_ms())) >= CAUGHT_UP_AFTER;
        let origin = if live_ttl.is_none() && old { Origin::Repair } else { Origin::Live };
        self.emit(Event::Chat(Delivery { chat: chat.clone(), hops, origin }));
        if let Some(ttl) = live_ttl {
            self.spread(now, from, &holders, &chat, ttl, hops.saturating_add(1));
        } else if now.since(Time::from_millis(chat.timestamp_ms())) < RECENT {
            // A recent chat that reached us only by sync (a healed partition, say): its id goes to
            // lazy neighbours, and whoever lacks it grafts and gets it pushed down the tree,
            // instead of waiting for sync rounds to carry it node by node.
            self.spread(now, from, &holders, &chat, 0, hops.saturating_add(1));
        }
    }

    /// Applies the forwarding rule of `gossip` to a chat accepted just now.
    fn spread(
        &mut self,
        now: Time,
        from: Option<ConnId>,
        holders: &[ConnId],
        chat: &Arc<Chat>,
        ttl: u8,
        next_hops: u8,
    ) {
        let batched = |c: ConnId| self.ihave.iter().any(|(b, _)| *b == c);
        let targets = self.gossip.targets(&mut self.rng, from, ttl, holders, batched);
        if !targets.eager().is_empty() {
            // Encoded into each neighbour's queue: a chat frame is a few copies of its fields,
            // cheaper for the two or so eager neighbours than a buffer of its own to copy from.
            let msg = Message::Chat { ttl: ttl.saturating_sub(1), hops: next_hops, chat: chat.clone() };
            let mut frame_len = wire::frame_size_hint(&msg);
            for &conn in targets.eager() {
                let buf = tx_buf(&mut self.tx, &self.conns, conn, frame_len);
                let before = buf.len();
                // No limit: a chat is within any sane one by construction (`Chat::is_well_formed`).
                wire::encode_into(&msg, buf, usize::MAX).expect("encoding a message into memory cannot fail");
                frame_len = buf.len() - before;
                self.stats.frames_out += 1;
                self.stats.bytes_out += frame_len as u64;
                if from.is_some() {
                    self.stats.chats_relayed += 1;
                }
            }
        }
        if self.ihave.is_empty() && !targets.lazy().is_empty() {
            // Room for a couple of chats' announcements: most batches hold no more.
            self.ihave.reserve_exact(IHAVE_FIRST_ROOM);
        }
        for &conn in targets.lazy() {
            self.ihave.push((conn, chat.id));
            self.ihave_due.get_or_insert(now + self.config.ihave_delay);
        }
    }

    /// Answers an `IWant` or a `Graft` with the chats of `ids` still held, as far as `conn`'s
    /// credit and queue allow (see [`crate::serve`]). Chats sent to it before are not sent again;
    /// asking for many of them costs score, as does asking beyond the credit.
    fn answer_wants(&mut self, now: Time, conn: ConnId, ids: &[ChatId]) {
        let sent = self.send_chats(now, conn, ids, usize::MAX);
        if sent.repeats > 0 {
            let flood =
                self.conns.get_mut(&conn).and_then(|c| c.served.as_mut()).is_some_and(|s| !s.repeat(sent.repeats, now));
            if flood {
                self.penalize(now, conn, Penalty::Greedy, "asked again for chats already sent to it");
            }
        }
        if let Some(why) = sent.refused {
            self.refuse(now, conn, why);
        }
    }

    /// Sends `conn` the chats of `ids` it was not sent before, in order, as `Reply` frames, until
    /// `round_bytes` of them, its credit or its queue runs out. Ids not held are passed over.
    fn send_chats(&mut self, now: Time, conn: ConnId, ids: &[ChatId], round_bytes: usize) -> SentChats {
        let mut out = SentChats { done: 0, repeats: 0, refused: None };
        let oldest = self.dedup.lower_bound(now);
        let cap = self.config.max_chats;
        let mut round = 0usize;
        for id in ids {
            let Some(c) = self.conns.get(&conn) else { break };
            if c.served.as_ref().is_some_and(|s| s.was_sent(id)) {
                out.repeats += 1;
                self.stats.repeats_ignored += 1;
                out.done += 1;
                continue;
            }
            let Some(stored) = self.dedup.get(id) else {
                out.done += 1;
                continue;
            };
            let msg = Message::Reply { hops: stored.hops.saturating_add(1), chat: stored.chat };
            let cost = wire::frame_size_hint(&msg);
            if round > 0 && round + cost > round_bytes {
                break;
            }
            if let Err(why) = self.afford(conn, cost) {
                out.refused = Some(why);
                break;
            }
            round += cost;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.served.get_or_insert_with(|| Box::new(Served::new(now))).remember(*id, oldest, cap);
            }
            self.send(conn, &msg);
            out.done += 1;
        }
        out
    }

    /// Sends an answer (a pong, addresses) if `conn`'s credit and queue allow it.
    fn answer(&mut self, now: Time, conn: ConnId, msg: &Message) {
        match self.afford(conn, wire::frame_size_hint(msg)) {
            Ok(()) => self.send(conn, msg),
            Err(why) => self.refuse(now, conn, why),
        }
    }

    /// Charges `cost` to `conn`'s credit, unless too much waits for it already (checked first:
    /// a slow link is not charged) or its credit does not cover it.
    fn afford(&mut self, conn: ConnId, cost: usize) -> Result<(), Refusal> {
        let queued = self.tx.get(conn).map_or(0, Vec::len);
        let Some(c) = self.conns.get_mut(&conn) else { return Err(Refusal::Backlogged) };
        if queued + c.unsent as usize >= self.config.serve.answer_watermark {
            return Err(Refusal::Backlogged);
        }
        if !c.credit.spend(cost) {
            return Err(Refusal::OverBudget);
        }
        self.stats.answer_bytes += cost as u64;
        Ok(())
    }

    fn refuse(&mut self, now: Time, conn: ConnId, why: Refusal) {
        match why {
            Refusal::Backlogged => self.stats.answers_deferred += 1,
            Refusal::OverBudget => {
                self.stats.answers_refused += 1;
                self.penalize(now, conn, Penalty::Greedy, "asked for more than its credit covers");
            }
        }
    }

    /// The runtime reports what it has not written to `conn` yet.
    fn on_backlog(&mut self, now: Time, conn: ConnId, bytes: usize) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.unsent = u32::try_from(bytes).unwrap_or(u32::MAX);
        if bytes > self.config.serve.max_backlog {
            let msg = format!("peer {} ({}) too slow: {bytes} bytes unsent", conn_name(c), c.addr());
            self.emit(Event::Warning(msg));
            self.close(now, conn, "too slow to read what it was sent", false);
        }
    }

    /// Whether the runtime should read from `conn` now. While more than
    /// [`ServeLimits::read_pause`] bytes wait to be written to it, no: what it sends would only ask
    /// for more. Call again after reporting a smaller [`Input::Backlog`].
    pub fn wants_read(&self, conn: ConnId) -> bool {
        let queued = self.tx.get(conn).map_or(0, Vec::len);
        self.conns.get(&conn).is_none_or(|c| queued + (c.unsent as usize) < self.config.serve.read_pause)
    }

    fn send_chat(&mut self, conn: ConnId, chat: &Arc<Chat>, ttl: u8, hops: u8) {
        self.send(conn, &Message::Chat { ttl, hops, chat: chat.clone() });
    }

    // ----- repair -----

    fn start_sync(&mut self, now: Time, conn: ConnId) {
        let ranges = sync::initiate(&self.dedup, self.dedup.lower_bound(now));
        self.stats.sync_frames_sent += 1;
        self.send(conn, &Message::Sync { ranges });
    }

    /// Answers a reconciliation round, bounded before the work: each range is charged for the
    /// ids answering it walks (counted first, by two searches) and is answered only if `conn`'s
    /// credit covers it. At most `ServeLimits::round_bytes` of chats are pushed; the rest of each
    /// listed range goes back as a fingerprint, and the peer's answer asks for the next portion.
    fn on_sync(&mut self, now: Time, conn: ConnId, ranges: &[sync::SyncRange]) {
        let mut answered = 0;
        for r in ranges {
            let listed = match &r.summary {
                Summary::Ids(v) => v.len(),
                Summary::Fingerprint { .. } => 0,
            };
            let walk = if r.lower < r.upper { 3 * self.dedup.count_in(r.lower, r.upper) } else { 0 };
            if let Err(why) = self.afford(conn, (walk + listed) * ID_WALK_COST) {
                self.refuse(now, conn, why);
                break;
            }
            answered += 1;
        }
        if answered == 0 || !self.conns.contains_key(&conn) {
            return;
        }
        let reply = sync::respond(&self.dedup, &ranges[..answered]);
        let sent = self.send_chats(now, conn, &reply.push, self.config.serve.round_bytes);
        let mut back = reply.ranges.clone();
        match sent.refused {
            Some(why) => self.refuse(now, conn, why),
            None if sent.done < reply.push.len() => back.extend(sync::continue_from(&self.dedup, &reply, sent.done)),
            None => {}
        }
        back.truncate(MAX_RANGES_PER_FRAME);
        let want: Vec<ChatId> = reply.want.into_iter().filter(|id| self.dedup.check(id, now) == Verdict::New).collect();
        for id in &want {
            self.gossip.on_asked(*id, conn, now);
        }
        if !want.is_empty() {
            self.stats.iwant_ids_sent += want.len() as u64;
            self.send(conn, &Message::IWant { ids: want });
        }
        if !back.is_empty() {
            let msg = Message::Sync { ranges: back };
            match self.afford(conn, wire::frame_size_hint(&msg)) {
                Ok(()) => {
                    self.stats.sync_frames_sent += 1;
                    self.send(conn, &msg);
                }
                Err(why) => self.refuse(now, conn, why),
            }
        }
    }

    /// `conn` has shown it holds `id` (sent or announced it): announcing it back would tell it
    /// nothing. Two lazy neighbours that get a chat at about the same time would otherwise each
    /// announce it to the other.
    fn known_by(&mut self, conn: ConnId, id: &ChatId) {
        if !self.ihave.iter().any(|(c, _)| *c == conn) {
            return;
        }
        self.ihave.retain(|(c, i)| !(*c == conn && i == id));
        // The batch timer stops when the last announcement goes this way (not when a closed
        // connection took it: that timer fires on an empty batch, as it always has).
        if self.ihave.is_empty() {
            self.ihave = Vec::new();
            self.ihave_due = None;
        }
    }

    fn flush_ihave(&mut self) {
        self.ihave_due = None;
        let mut batch = std::mem::take(&mut self.ihave);
        // By neighbour, each one's ids in the order they were queued.
        batch.sort_by_key(|(c, _)| *c);
        for group in batch.chunk_by(|a, b| a.0 == b.0) {
            let conn = group[0].0;
            for frame in group.chunks(MAX_IDS_PER_FRAME) {
                self.stats.ihave_ids_sent += frame.len() as u64;
                self.send_ihave(conn, frame);
            }
        }
    }

    // ----- timers -----

    fn on_timeout(&mut self, now: Time) {
        let mut wants: BTreeMap<(ConnId, bool), Vec<ChatId>> = BTreeMap::new();
        for w in self.gossip.poll_wants(now) {
            wants.entry((w.conn, w.graft)).or_default().push(w.id);
        }
        for ((conn, graft), ids) in wants {
            if graft {
                self.stats.grafts_sent += 1;
                self.send(conn, &Message::Graft { ids });
            } else {
                self.stats.iwant_ids_sent += ids.len() as u64;
                self.send(conn, &Message::IWant { ids });
            }
        }
        if self.ihave_due.is_some_and(|t| now >= t) {
            self.flush_ihave();
        }
        if now >= self.next_tick {
            self.maintain(now);
            self.next_tick = now + self.config.tick;
        }
    }

    fn maintain(&mut self, now: Time) {
        self.dedup.expire(now);
        self.banned.retain(|_, t| *t > now);

        if now >= self.next_liveness {
            self.check_liveness(now);
        }
        if self.leaving {
            return;
        }

        // Dial until the target is met. Pending dials are counted only when they matter: each
        // connection looked at is a cache miss in a large simulation.
        let want = self.config.target_peers.min(self.config.max_peers).saturating_sub(self.conns.len());
        // Exploration: a node content with its peers never dials again, so two groups that
        // each filled their members' peer sets during a partition would stay apart after it heals.
        let soft_cap = (2 * self.config.target_peers).min(self.config.max_peers);
        let explore = now >= self.next_explore && self.conns.len() < soft_cap;
        let pending = if want > 0 || explore {
            self.conns
                .values()
                .filter(|c| !matches!(c.phase, Phase::Up(_)))
                .filter(|c| c.direction() == Direction::Outbound)
                .count()
        } else {
            0
        };
        let mut n = want.min(MAX_PENDING_DIALS.saturating_sub(pending));
        if n == 0 && explore && pending == 0 {
            n = 1;
            self.next_explore = now + self.config.explore_interval.mul_f64(0.5 + self.rng.unit());
        }
        if n > 0 {
            self.dial_more(now, n);
        }

        // What follows needs the established peers: found only on a tick that uses them.
        let announce = !self.joined && self.config.announce_presence;
        let sync = self.config.repair && now >= self.next_sync;
        if !(announce || sync || now >= self.next_exchange || now >= self.next_announce) {
            return;
        }
        let up = self.up_conns();
        if up.is_empty() {
            return;
        }
        // Announced at a tick rather than at the first handshake: a first neighbour that was
        // full and only referred us elsewhere is gone by now, and would have taken it along.
        if announce {
            self.joined = true;
            self.originate(now, Body::Join);
        }
        // Peer exchange: often while short of peers, rarely once content.
        if now >= self.next_exchange {
            let conn = up[self.rng.below(up.len())];
            self.request_peers(conn);
            let short = self.conns.len() < self.config.target_peers;
            let wait = if short { self.config.exchange_interval / 6 } else { self.config.exchange_interval };
            self.next_exchange = now + wait;
        }
        if now >= self.next_announce {
            // Our neighbours' addresses stay in the book (one may have been evicted for a
            // learned address since). Each peer told its listen port in its hello, so nothing
            // needs sending for this: `Announce` frames are still understood, no longer sent.
            let addrs: Vec<SocketAddr> = up.iter().filter_map(|c| self.conns.get(c)?.listen_addr()).collect();
            for a in addrs {
                self.book.add(a, Source::Inbound, now);
                self.book.touch(&a);
            }
            self.next_announce = now + self.config.announce_interval;
        }
        if self.config.repair && now >= self.next_sync {
            let conn = up[self.rng.below(up.len())];
            self.start_sync(now, conn);
            // Jitter keeps neighbours from syncing in lockstep.
            self.next_sync = now + self.config.sync_interval.mul_f64(0.75 + self.rng.unit() / 2.0);
        }
    }

    /// Closes handshakes and dials that took too long and peers gone silent, and pings quiet
    /// ones. Each connection is a block of its own, in no cache in a large simulation: hinted all
    /// at once first, their loads overlap instead of stalling the loop one by one.
    fn check_liveness(&mut self, now: Time) {
        for c in self.conns.values() {
            crate::hint::value(&**c);
        }
        let mut to_close = Vec::new();
        let mut to_ping = Vec::new();
        for (id, c) in self.conns.iter() {
            match c.liveness(now, &self.config) {
                Some(Liveness::Close(why)) => to_close.push((*id, why)),
                Some(Liveness::Ping) => to_ping.push(*id),
                None => {}
            }
        }
        for (id, why) in to_close {
            self.close(now, id, why, true);
        }
        for id in to_ping {
            let nonce = self.rng.u64();
            if let Some(c) = self.conns.get_mut(&id) {
                c.ping = nonce;
                c.ping_out = true;
                c.last_ping = now;
            }
            self.send(id, &Message::Ping { nonce });
        }
        self.next_liveness = self.conns.values().map(|c| c.liveness_due(&self.config)).min().unwrap_or(Time::MAX);
    }

    /// Dials up to `n` addresses from the book that are not connected already.
    fn dial_more(&mut self, now: Time, n: usize) {
        // Every candidate in the book is checked against these: sorted once here, instead of
        // a walk over all connections per candidate.
        // Filled at their final size (collecting from a flatten or a filter grows the
        // buffer a few times over).
        let mut busy_addrs = Vec::with_capacity(2 * self.conns.len());
        for c in self.conns.values() {
            busy_addrs.push(c.addr());
            busy_addrs.extend(c.listen_addr());
        }
        busy_addrs.sort_unstable();
        // The connected peers' keys only once a candidate with a known peer gets past the
        // address check: most rounds need none.
        let conns = &self.conns;
        let mut up_peers: Option<Vec<KeyTag>> = None;
        // The book offers candidates in address order, so one walk along the sorted list
        // answers them all, where a binary search each was a third of the dial round.
        let mut busy_rest = &busy_addrs[..];
        let busy = |a: &SocketAddr, peer: Option<KeyTag>| {
            while busy_rest.first().is_some_and(|b| b < a) {
                busy_rest = &busy_rest[1..];
            }
            if busy_rest.first() == Some(a) {
                return true;
            }
            let Some(p) = peer else { return false };
            let up = up_peers.get_or_insert_with(|| {
                let mut up = Vec::with_capacity(conns.len());
                for c in conns.values() {
                    if let Phase::Up(u) = &c.phase {
                        up.push(KeyTag::of(&u.public_key));
                    }
                }
                up.sort_unstable();
                up
            });
            up.binary_search(&p).is_ok()
        };
        for addr in self.book.dial_candidates(now, n, &mut self.rng, busy) {
            let (per_minute, burst) = self.config.dials_per_minute;
            if !self.dial_bucket.take(now, (per_minute / 60.0, burst)) {
                break;
            }
            self.dial(now, addr);
        }
    }

    // ----- output -----

    fn send(&mut self, conn: ConnId, msg: &Message) {
        let buf = tx_buf(&mut self.tx, &self.conns, conn, wire::frame_size_hint(msg));
        let before = buf.len();
        match wire::encode_into(msg, buf, self.config.max_frame_bytes) {
            Ok(()) => {
                self.stats.frames_out += 1;
                self.stats.bytes_out += (buf.len() - before) as u64;
            }
            Err(e) => {
                let err: WireError = e;
                self.out.push_back(Output::Event(Event::Warning(format!("could not send {}: {err}", msg.kind()))));
            }
        }
    }

    /// `send` of an `IHave` of the ids of `batch`, without building its list.
    fn send_ihave(&mut self, conn: ConnId, batch: &[(ConnId, ChatId)]) {
        let buf = tx_buf(&mut self.tx, &self.conns, conn, wire::ihave_frame_size(batch.len()));
        let before = buf.len();
        match wire::encode_ihave_into(batch.iter().map(|(_, id)| id), buf, self.config.max_frame_bytes) {
            Ok(()) => {
                self.stats.frames_out += 1;
                self.stats.bytes_out += (buf.len() - before) as u64;
            }
            Err(e) => {
                self.out.push_back(Output::Event(Event::Warning(format!("could not send IHave: {e}"))));
            }
        }
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }
}

/// `conn`'s queue in `tx`, with room for a frame of about `frame` bytes and the record around it.
fn tx_buf<'a>(
    tx: &'a mut ConnMap<Vec<u8>>,
    conns: &ConnTable<Box<Conn>>,
    conn: ConnId,
    frame: usize,
) -> &'a mut Vec<u8> {
    let buf = tx.entry(conn);
    if buf.is_empty() {
        // `poll_output` seals the queue through the connection's session: most queues go to
        // other neighbours than the input came from (a chat on to the eager ones, a batch of
        // announcements), whose state a large simulation finds in no cache. Hinted now, their
        // loads overlap each other and the rest of the input instead of stalling one by one.
        if let Some(c) = conns.get(&conn) {
            crate::hint::value(&**c);
        }
        buf.reserve_exact(session::HEADER_BYTES + frame + session::TAG_BYTES);
        buf.extend_from_slice(&[0; session::HEADER_BYTES]);
    } else {
        // A frame after the first (a few in a hundred queues): room for the tag too, or sealing
        // grows the buffer a second time.
        buf.reserve(frame + session::TAG_BYTES);
    }
    buf
}

/// What `Node::send_chats` did with a list of ids.
struct SentChats {
    /// How many of the ids were dealt with (sent, not held, or sent before), from the first.
    done: usize,
    /// Of which sent to the same peer before.
    repeats: usize,
    /// Why it stopped before the end, if not for the round's bound.
    refused: Option<Refusal>,
}

/// The network an address belongs to, as Bitcoin Core groups peers: the /16 of an IPv4 address,
/// the /32 of an IPv6 one. One operator rarely holds addresses in many groups.
fn net_group(ip: IpAddr) -> u64 {
    let v4 = |a: Ipv4Addr| u64::from(u32::from(a) >> 16);
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or((u128::from(a) >> 96) as u64 | 1 << 32, v4),
    }
}

fn conn_name(c: &Conn) -> String {
    match &c.phase {
        Phase::Up(p) => format!("{}#{}", p.username, p.public_key.peer_id().short()),
        _ => "(handshaking)".into(),
    }
}
