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
    ///
    /// 2,048: the slots are what a bootstrap node serves a crowd at, one handshake per slot per
    /// couple of round trips. 100,000 simulated nodes arriving within 5 s through one bootstrap
    /// node queued at about 280 handshakes a second with 64 slots (a third still had no peer at
    /// 60 s), about 1,950 with 512 (the last had its peers only after about 60 s), and about
    /// 7,000 with 2,048 (every node had three peers 25 s in). A slot holds one handshake's state,
    /// about 2.8 KB in a real process with its socket, so all of them take under 6 MB; an attacker
    /// keeping the slots busy must open 2,048 connections a second from at least eight network
    /// groups.
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
    /// How often a node short of peers dials again, and how long after its first peer it announces
    /// its arrival and first asks for addresses (see `Timer`).
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
    /// Per-peer limit on chat frames.
    pub chat_rate: RateLimit,
    /// Per-peer limit on every other frame.
    pub control_rate: RateLimit,
    /// Most dials the node makes on its own, and the burst it may save up, so addresses poured in
    /// by peer exchange (bogus or unreachable) cannot make it dial without bound. Dials the user
    /// asks for are not counted.
    pub dial_rate: RateLimit,
    /// What each peer's requests may cost this node, and how much may wait for a peer (see
    /// [`crate::serve`]).
    pub serve: ServeLimits,
    /// Direct messages (used once turned on with `Node::with_dm`).
    pub dm: DmConfig,
    /// Identities blocked from the start (the application's saved `/block`s), so that nothing of
    /// theirs is shown before the application could block them again. At most `MAX_BLOCKS` are
    /// taken.
    pub blocked: Vec<PeerId>,
    /// Reachability, relaying and relays (see [`crate::nat`]).
    pub nat: crate::nat::NatConfig,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            username: "Anonymous".into(),
            listen_port: 0,
            bootstrap: Vec::new(),
            max_peers: 50,
            max_handshaking: 2048,
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
            chat_rate: RateLimit::new(20_000.0, 40_000.0),
            control_rate: RateLimit::new(2_000.0, 4_000.0),
            dial_rate: RateLimit::per_minute(60.0, 16.0),
            serve: ServeLimits::default(),
            dm: DmConfig::default(),
            blocked: Vec::new(),
            nat: crate::nat::NatConfig::default(),
        }
    }
}

/// A `Config` that cannot run, and which field says so. Nothing was started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("username must be 1 to {max} bytes, not {len}")]
    UsernameLength { len: usize, max: usize },
    #[error("username must not contain '#': it separates a name from its key's id")]
    UsernameHash,
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("{field} must be longer than zero")]
    NoTime { field: &'static str },
    #[error("target_peers ({target}) must not exceed max_peers ({max})")]
    TargetOverMax { target: usize, max: usize },
    #[error("ping_interval ({ping:?}) must be shorter than stale_after ({stale:?}), or quiet links close unpinged")]
    PingAfterStale { ping: Duration, stale: Duration },
    #[error("max_frame_bytes must be 1 KiB to {max} bytes, not {value}")]
    FrameLimit { value: usize, max: usize },
    #[error("{field} must be a positive rate and burst")]
    Rate { field: &'static str },
    #[error("serve limits must rise: answer_watermark <= read_pause <= max_backlog")]
    ServeOrder,
}

impl Config {
    /// Checks that the node can run with these settings: the limits a zero or an inverted pair
    /// would break (a zero tick wakes the node for ever, a zero `max_peers` never connects).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let max = crate::chat::MAX_USERNAME_BYTES;
        if self.username.is_empty() || self.username.len() > max {
            return Err(ConfigError::UsernameLength { len: self.username.len(), max });
        }
        if self.username.contains('#') {
            return Err(ConfigError::UsernameHash);
        }
        for (field, n) in [
            ("max_peers", self.max_peers),
            ("max_handshaking", self.max_handshaking),
            ("max_conns_per_ip", self.max_conns_per_ip),
            ("fanout", self.fanout),
            ("max_chats", self.max_chats),
            ("address_book_cap", self.address_book_cap),
        ] {
            if n == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        for (field, d) in [
            ("retention", self.retention),
            ("tick", self.tick),
            ("sync_interval", self.sync_interval),
            ("ping_interval", self.ping_interval),
            ("stale_after", self.stale_after),
            ("handshake_timeout", self.handshake_timeout),
            ("exchange_interval", self.exchange_interval),
            ("explore_interval", self.explore_interval),
            ("announce_interval", self.announce_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::NoTime { field });
            }
        }
        if self.target_peers > self.max_peers {
            return Err(ConfigError::TargetOverMax { target: self.target_peers, max: self.max_peers });
        }
        if self.ping_interval >= self.stale_after {
            return Err(ConfigError::PingAfterStale { ping: self.ping_interval, stale: self.stale_after });
        }
        let frame_max = wire::DEFAULT_MAX_FRAME_BYTES * 16;
        if !(1024..=frame_max).contains(&self.max_frame_bytes) {
            return Err(ConfigError::FrameLimit { value: self.max_frame_bytes, max: frame_max });
        }
        for (field, rate) in
            [("chat_rate", self.chat_rate), ("control_rate", self.control_rate), ("dial_rate", self.dial_rate)]
        {
            if !(rate.per_sec > 0.0 && rate.burst >= 1.0) {
                return Err(ConfigError::Rate { field });
            }
        }
        let s = &self.serve;
        if !(s.answer_watermark <= s.read_pause && s.read_pause <= s.max_backlog) {
            return Err(ConfigError::ServeOrder);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_broken_rule_is_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.username = "a#1".into()), ConfigError::UsernameHash);
        assert!(matches!(bad(|c| c.username = "x".repeat(65)), ConfigError::UsernameLength { len: 65, .. }));
        assert_eq!(bad(|c| c.max_peers = 0), ConfigError::Zero { field: "max_peers" });
        assert_eq!(bad(|c| c.tick = Duration::ZERO), ConfigError::NoTime { field: "tick" });
        assert!(matches!(bad(|c| c.target_peers = 99), ConfigError::TargetOverMax { .. }));
        assert!(matches!(bad(|c| c.ping_interval = c.stale_after), ConfigError::PingAfterStale { .. }));
        assert_eq!(bad(|c| c.control_rate = RateLimit::new(0.0, 10.0)), ConfigError::Rate { field: "control_rate" });
        assert_eq!(bad(|c| c.serve.read_pause = c.serve.max_backlog + 1), ConfigError::ServeOrder);
    }
}
