//! The node's public surface: what goes in (`Input`, `Command`), what comes out (`Output`,
//! `Event`), and what can be asked of it (`PeerSummary`, `Stats`, `Timer`).

use super::*;

/// A connection, named by the node. Runtimes map it to their socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
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
    /// The router's answer to the last [`Output::PortMapping`] that asked for a mapping.
    PortMapped(Result<crate::nat::mapping::Mapped, crate::nat::mapping::MapFailure>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Sign and send a chat to the default room.
    Chat(String),
    /// Seal, sign and send a chat to a room this node is in.
    Say {
        room: RoomId,
        text: String,
    },
    /// Join (or start) the public room of this name.
    JoinPublic(String),
    /// Join a private room by an invite code (checked: form, signature, expiry).
    JoinInvite(String),
    /// Start a private room of this name; `Event::Invite` then gives its first invite code (as
    /// `Command::Invite` would, with these `addrs` and `valid_for`).
    CreateRoom {
        name: String,
        addrs: Vec<SocketAddr>,
        valid_for: Duration,
    },
    /// Be in a room again that an earlier run was in (the CLI's database).
    Rejoin(RoomInfo),
    /// Leave a room: stop relaying it, and tell the neighbours in it.
    Part(RoomId),
    /// Make an invite code for a room, valid for `valid_for`, naming `addrs` (where this node can
    /// be reached, as the caller knows it) beside member neighbours' addresses.
    Invite {
        room: RoomId,
        addrs: Vec<SocketAddr>,
        valid_for: Duration,
    },
    /// Dial an address now (and keep it in the address book).
    Connect(SocketAddr),
    /// Addresses known from an earlier run: dialed when the node needs peers.
    AddKnown(Vec<SocketAddr>),
    /// Send a direct message (end-to-end encrypted; held by the recipient's mailboxes while it is
    /// offline). `Event::Dm` shows it at once, `Event::DmState` follows it.
    Dm {
        to: PeerId,
        text: String,
    },
    /// The user saw these messages from `from`: a read receipt goes back (unless read receipts are
    /// off, `DmConfig::read_receipts`).
    DmRead {
        from: PeerId,
        ids: Vec<DmId>,
    },
    /// The user started (`on`) or stopped typing to `to`: told to `to` if connected (unless typing
    /// notices are off, `DmConfig::typing`), never stored.
    Typing {
        to: PeerId,
        on: bool,
    },
    /// A bundle learned out of band (a contact's, from a shared room or a code): kept if it verifies.
    AddBundle(Box<SignedBundle>),
    /// Stop showing this identity's chats and direct messages and refuse its direct messages
    /// (it is not told). `Event::Blocks` answers. The application keeps the list across runs.
    Block(PeerId),
    Unblock(PeerId),
    /// `Event::Blocks` with every blocked identity.
    Blocks,
    /// Moderate a private room (checked against its membership first: `Event::Refused` says
    /// why not).
    Moderate {
        room: RoomId,
        action: Action,
    },
    /// `Event::Members` for a room.
    Members(RoomId),
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
    /// Open a TCP connection to `addr` from local port `port` (the listening port, bound again
    /// with SO_REUSEADDR and SO_REUSEPORT) for a hole punch; answer with `Connected` or
    /// `DialFailed`. The peer dials us at the same moment: the connection may come up as a TCP
    /// simultaneous open.
    Punch {
        conn: ConnId,
        addr: SocketAddr,
        port: u16,
    },
    /// Flush what was transmitted, then close. The node has already forgotten the connection.
    Close {
        conn: ConnId,
    },
    /// Ask the router for a port mapping, or remove one (see [`crate::nat::mapping`]); a `Map`
    /// is answered with [`Input::PortMapped`]. Off the event loop: a router may take seconds.
    PortMapping(crate::nat::mapping::MapRequest),
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
        reason: CloseReason,
    },
    /// A dial failed; `retry_at` is when the address will be tried again, if it is kept.
    DialFailed {
        addr: SocketAddr,
        retry_at: Option<Time>,
    },
    /// Something the user may want to know (a misbehaving peer, a refused chat).
    Warning(String),
    /// The node is now in this room (joined, created or rejoined).
    RoomJoined(RoomInfo),
    /// The node left this room.
    RoomParted(RoomId),
    /// An invite code made for a room (`Command::Invite`, `Command::CreateRoom`).
    Invite {
        room: RoomId,
        code: String,
    },
    /// A command could not be carried out, and why (an unknown room, a bad invite code...).
    Refused(String),
    /// A direct message: received (shown once), or written here (`outgoing`).
    Dm(Box<DmDelivery>),
    /// An outgoing direct message's new state (Queued, Sent, Stored, Delivered, Read, Expired).
    DmState {
        id: DmId,
        to: PeerId,
        state: DmState,
    },
    /// What this node knows of its reachability changed (see [`crate::nat::reach`]).
    Reachability(crate::nat::Reachability),
    /// `from` started (`on`) or stopped typing to this node.
    Typing {
        from: PeerId,
        on: bool,
    },
    /// An operation of a private room's membership log, as this node applied it.
    Membership(Box<MemberChange>),
    /// A chat was redacted: the application forgets it (its text, on screen and on disk).
    Redacted {
        room: RoomId,
        chat: ChatId,
    },
    /// A room's keys changed (an epoch's key came): what to keep to rejoin it.
    RoomUpdated(RoomInfo),
    /// The identities blocked, after `Block`, `Unblock` or `Blocks`.
    Blocks(Vec<PeerId>),
    /// The members of a room, answering `Command::Members`.
    Members {
        room: RoomId,
        members: Vec<MemberEntry>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// As signed (a room's text sealed in it): what to store and to restore from.
    pub chat: Arc<Chat>,
    /// The text of a room's chat, opened with the room key (`None` in the default room, whose
    /// chats carry their text in the clear).
    pub opened: Option<String>,
    /// Links crossed to get here (0: our own chat).
    pub hops: u8,
    pub origin: Origin,
}

impl Delivery {
    /// The text to show, if the chat is text.
    pub fn text(&self) -> Option<&str> {
        match (&self.opened, &self.chat.body) {
            (Some(t), _) => Some(t),
            (None, Body::Text(t)) => Some(t),
            _ => None,
        }
    }
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
    /// A connection of its own, or a circuit through a relay.
    pub path: crate::nat::Path,
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
    /// Frames of rooms other than the default one received and sent (chats and their gossip).
    pub room_frames_in: u64,
    pub room_frames_out: u64,
    /// Of `room_frames_in`, chat frames (`Chat`, `Reply`): a room's RMR numerator.
    pub room_chat_frames_in: u64,
    /// Frames of a room this node is not in that reached it anyway (dropped, the sender
    /// penalised): a leak, always 0 among honest nodes.
    pub foreign_room_frames: u64,
    pub foreign_room_bytes: u64,
    /// Direct-message envelopes handed to their recipients directly, and texts received.
    pub dms_sent: u64,
    pub dms_received: u64,
    /// Envelopes for this node refused on opening (forged, altered, undecryptable).
    pub dms_refused: u64,
    /// Deposits taken and refused as a mailbox.
    pub mail_stored: u64,
    pub mail_refused: u64,
    /// Dial-backs asked of peers, and made for peers (see [`crate::nat::reach`]).
    pub dial_backs_asked: u64,
    pub dial_backs_done: u64,
    /// Reservations relays granted this node.
    pub reservations_held: u64,
    /// Circuits this node asked relays for, and relayed connections that came up (either way).
    pub circuits_asked: u64,
    pub circuits_up: u64,
    /// As a relay: circuits refused, and bytes carried.
    pub circuits_refused: u64,
    pub relay_bytes: u64,
    /// Hole punches: dials made at a synchronised moment, and those that came up as direct
    /// connections replacing a circuit.
    pub punch_attempts: u64,
    pub punch_successes: u64,
    /// Port mappings asked of the router (renewals included), those it granted, and those a
    /// dial-back then reached (see [`crate::nat::mapping`]).
    pub port_map_attempts: u64,
    pub port_map_successes: u64,
    pub port_map_verified: u64,
}

/// Why a connection ended (in [`Event::PeerDown`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("connection closed by peer")]
    ByPeer,
    #[error("leaving")]
    Leaving,
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("peer went silent")]
    Silent,
    #[error("banned for misbehaviour")]
    Banned,
    #[error("peer is banned")]
    PeerIsBanned,
    #[error("handshake slots full")]
    HandshakeSlotsFull,
    #[error("full: referred to other peers")]
    Full,
    #[error("full: made room for a newcomer")]
    MadeRoom,
    #[error("duplicate connection")]
    Duplicate,
    #[error("too slow to read what it was sent")]
    TooSlow,
    #[error("session nonces exhausted")]
    NoncesExhausted,
    #[error("relay: {0}")]
    Relay(crate::nat::RelayRefusal),
    #[error("{0}")]
    Handshake(#[from] crate::handshake::HandshakeError),
    #[error("{0}")]
    Record(#[from] crate::session::SessionError),
    #[error("{0}")]
    Frame(#[from] WireError),
}
