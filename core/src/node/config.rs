//! The node's tunables and their defaults.

use super::*;

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
