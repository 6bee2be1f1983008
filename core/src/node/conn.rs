//! One connection's state: its phase (dialing, handshaking, up), its far end, and when it is due
//! a ping or a close for silence.

use super::*;

pub(super) enum Phase {
    Dialing,
    Handshaking(Box<Handshake>),
    Up(Peer),
}

/// The peer id is not kept: it is the hash of the public key, needed only when a peer leaves or is
/// named, and a dozen connections in every node of a simulator would hold 32 bytes each for it.
pub(super) struct Peer {
    pub(super) public_key: PublicKey,
    /// Inline when short (see [`Name`]): most are, and a `Box<str>` was a heap chunk per
    /// connection besides its 16 bytes.
    pub(super) username: Name,
}

/// One connection. A node holds a dozen or so (see `Node::conns`), and a simulator
/// holds thousands of nodes: fields that are the same for every connection of a node (rate
/// limits) stay in `Config`, and fields that can be derived from others are.
pub(super) struct Conn {
    /// Read through `addr()`, `direction()` and `listen_addr()`.
    pub(super) addr: ConnAddr,
    pub(super) phase: Phase,
    /// Set once the handshake is done; every frame in and out passes through it.
    pub(super) session: Option<Session>,
    /// Its limit is `Config::max_frame_bytes`.
    pub(super) decoder: Frames,
    /// When the connection opened (dial answered or accepted) until it is up, then when it came
    /// up: the handshake timeout needs the one, the peer summary the other.
    pub(super) since: Time,
    pub(super) last_recv: Time,
    pub(super) score: Score,
    /// The nonce of the ping sent at `last_ping`, while `ping_out` (its pong not back yet). Not
    /// an `Option<u64>`, which is twice the size, the flag being kept beside the other small ones.
    pub(super) ping: u64,
    pub(super) ping_out: bool,
    pub(super) last_ping: Time,
    /// The last round-trip time in microseconds, [`NO_RTT`] until one is measured.
    pub(super) rtt_us: u32,
    /// Rates are `Config::chat_rate` and `Config::control_rate`.
    pub(super) chat_tokens: Tokens,
    pub(super) control_tokens: Tokens,
    pub(super) asked_peers: bool,
    /// `PeerRequest`s it may still have answered (`PEER_ANSWERS`).
    pub(super) peer_answers: Tokens,
    /// What answering this peer may still cost (see [`crate::serve`]).
    pub(super) credit: Credit,
    /// Bytes the runtime has not written yet (`Input::Backlog`).
    pub(super) unsent: u32,
    /// Chats sent in answer to its requests: made at its first answered request.
    pub(super) served: Option<Box<Served>>,
    /// The rooms (`RoomIx` bits) the peer proved it is in and this node is in too.
    pub(super) rooms: u64,
    /// See `handshake::Done::binding`; zero until the handshake is done.
    pub(super) binding: [u8; 32],
    /// What the peer said of its rooms: made at its first `Subscribe`.
    pub(super) peer_rooms: Option<Box<PeerRooms>>,
}

/// The rooms a peer said it is in, kept so that a room this node joins later finds its members
/// among its neighbours, and so that `FindRoom` can point to public rooms' members.
pub(super) struct PeerRooms {
    /// Tags of its subscriptions (at most `MAX_ROOMS`), with the public room each names.
    pub(super) tags: Vec<([u8; 32], Option<RoomId>)>,
    /// Subscriptions and unsubscriptions it may still send (`ROOM_CHANGES`).
    pub(super) changes: Tokens,
}

/// Where the peer of a connection accepts connections. Always at the connection's own IP, so only
/// the port is kept (an `Option<SocketAddr>` is eight times the size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listen {
    Unknown,
    /// The address we dialed, exactly as dialed.
    Dialed,
    /// Told by the peer (hello or `Announce`).
    Port(u16),
    /// A circuit through a relay: where the peer listens, if anywhere, is no use to us.
    Relayed,
}

/// `Conn::rtt_us` before the first pong. Longer round trips (71 minutes) are kept as one less.
pub(super) const NO_RTT: u32 = u32::MAX;

/// A connection's far end, in 16 bytes: its address, which side dialed, and where the peer
/// accepts connections. A `SocketAddr` alone is 32: an IPv6 address (with its flow info and
/// scope, kept exactly) is boxed, and the direction and listen port fill what an IPv4 one leaves
/// of the 16 (and the box's padding). In a simulator every node holds a dozen or so
/// connections, all IPv4: every 16 bytes less brings a boxed `Conn` into a smaller size class of
/// the allocator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ConnAddr {
    V4 { ip: Ipv4Addr, port: u16, direction: Direction, listen: Listen },
    V6 { addr: Box<SocketAddrV6>, direction: Direction, listen: Listen },
}

impl ConnAddr {
    /// A connection we dialed listens where we dialed it; of one that dialed us we know nothing
    /// yet.
    pub(super) fn new(addr: SocketAddr, direction: Direction) -> ConnAddr {
        let listen = if direction == Direction::Outbound { Listen::Dialed } else { Listen::Unknown };
        match addr {
            SocketAddr::V4(a) => ConnAddr::V4 { ip: *a.ip(), port: a.port(), direction, listen },
            SocketAddr::V6(a) => ConnAddr::V6 { addr: Box::new(a), direction, listen },
        }
    }

    pub(super) fn get(&self) -> SocketAddr {
        match self {
            ConnAddr::V4 { ip, port, .. } => SocketAddr::V4(SocketAddrV4::new(*ip, *port)),
            ConnAddr::V6 { addr, .. } => SocketAddr::V6(**addr),
        }
    }

    pub(super) fn direction(&self) -> Direction {
        match self {
            ConnAddr::V4 { direction, .. } | ConnAddr::V6 { direction, .. } => *direction,
        }
    }

    pub(super) fn listen(&self) -> Listen {
        match self {
            ConnAddr::V4 { listen, .. } | ConnAddr::V6 { listen, .. } => *listen,
        }
    }

    pub(super) fn set_listen(&mut self, to: Listen) {
        match self {
            // A circuit's far end is the relay's address: what the peer says of its port is not.
            ConnAddr::V4 { listen, .. } | ConnAddr::V6 { listen, .. } if *listen != Listen::Relayed => *listen = to,
            _ => {}
        }
    }
}

/// What the liveness pass does with a connection (see `Conn::liveness`).
pub(super) enum Liveness {
    Close(CloseReason),
    Ping,
}

impl Conn {
    /// The peer's identity key, once the handshake is done.
    pub(super) fn peer_key(&self) -> Option<PublicKey> {
        match &self.phase {
            Phase::Up(p) => Some(p.public_key),
            _ => None,
        }
    }

    pub(super) fn in_room(&self, ix: RoomIx) -> bool {
        ix == RoomIx::DEFAULT || self.rooms & ix.bit() != 0
    }

    /// Whether the peer named `room` as a public room it is in.
    pub(super) fn advertises(&self, room: &RoomId) -> bool {
        self.peer_rooms.as_ref().is_some_and(|p| p.tags.iter().any(|(_, r)| r.as_ref() == Some(room)))
    }

    pub(super) fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    pub(super) fn direction(&self) -> Direction {
        self.addr.direction()
    }

    pub(super) fn listen_addr(&self) -> Option<SocketAddr> {
        match self.addr.listen() {
            Listen::Unknown | Listen::Relayed => None,
            Listen::Dialed => Some(self.addr()),
            Listen::Port(port) => Some(SocketAddr::new(self.addr().ip(), port)),
        }
    }

    pub(super) fn rtt(&self) -> Option<Duration> {
        (self.rtt_us != NO_RTT).then(|| Duration::from_micros(self.rtt_us.into()))
    }

    /// What the liveness pass does with this connection at `now`: close it (a handshake or dial
    /// that took too long, a peer gone silent), ping it, or nothing. `liveness_due` says when this
    /// could first be other than nothing: the two state one rule, so they stay side by side.
    pub(super) fn liveness(&self, now: Time, config: &Config) -> Option<Liveness> {
        match self.phase {
            Phase::Dialing | Phase::Handshaking(_) if now.since(self.since) >= config.handshake_timeout => {
                Some(Liveness::Close(CloseReason::HandshakeTimeout))
            }
            Phase::Up(_) if now.since(self.last_recv) >= config.stale_after => {
                Some(Liveness::Close(CloseReason::Silent))
            }
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
    pub(super) fn liveness_due(&self, config: &Config) -> Time {
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
