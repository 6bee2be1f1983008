//! The messages: what two connected nodes say to each other, and the `Hello` each sends inside
//! the handshake. Types only; how they become bytes is `codec`'s business, and the layout those
//! bytes take is specified in docs/PROTOCOL.md.

use core::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::chat::{Chat, ChatId};
use crate::dm::{Ack, DmId, Envelope, SignedBundle};
use crate::identity::{PeerId, PublicKey, Signature};
use crate::nat::reach::DialBackOutcome;
use crate::nat::{RelayRefusal, RelayedAddr};
use crate::rooms::RoomId;
use crate::sync::SyncRange;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A chat (text, join or leave). `ttl`: how many more times it may be pushed eagerly; `hops`:
    /// how many links it has crossed, this one included. Neither is signed: both change per hop.
    Chat {
        ttl: u8,
        hops: u8,
        chat: Arc<Chat>,
    },
    /// A chat sent because it was asked for (`IWant`, `Graft`) or found missing by `Sync`, not
    /// pushed: a duplicate of it says nothing about the tree.
    Reply {
        hops: u8,
        chat: Arc<Chat>,
    },
    /// Lazy push: "I have these chats" (ids only).
    IHave {
        ids: Vec<ChatId>,
    },
    /// "Send me these chats", after an `IHave` or a sync found them missing.
    IWant {
        ids: Vec<ChatId>,
    },
    /// Plumtree: "stop pushing full chats to me; ids are enough".
    Prune,
    /// Plumtree: "push full chats to me again", and send these missing ones now.
    Graft {
        ids: Vec<ChatId>,
    },
    /// One round of range-based set reconciliation (anti-entropy).
    Sync {
        ranges: Vec<SyncRange>,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    PeerRequest,
    PeerResponse {
        addrs: Vec<SocketAddr>,
    },
    /// "I listen on this port". Honoured when received; no longer sent, since the hello carries the
    /// port (kept so that the message numbering, and older peers, stay as they were).
    Announce {
        listen_port: u16,
    },
    /// Gossip of a room other than the default one (chats name their room themselves). Sent only
    /// to a neighbour whose `Subscribe` for that room checked out.
    Room {
        room: RoomId,
        msg: RoomMessage,
    },
    /// "I am in a room": `tag` is the room's membership tag for this connection and this sender
    /// (see `RoomKeys::tag`), which only a member can make or check. `public` names the room's id
    /// when the room is public, so that non-members can point newcomers to it (`FindRoom`).
    Subscribe {
        tag: [u8; 32],
        public: Option<RoomId>,
    },
    /// "I left the room I subscribed to with this tag."
    Unsubscribe {
        tag: [u8; 32],
    },
    /// "Who is in this public room?" Answered with `RoomPeers` by a node that knows members, else
    /// passed on to one more neighbour while `ttl` lasts, the answer coming back the same way.
    FindRoom {
        room: RoomId,
        ttl: u8,
    },
    /// Addresses of members of `room`, answering a `FindRoom`.
    RoomPeers {
        room: RoomId,
        addrs: Vec<SocketAddr>,
    },
    /// A signed key bundle (docs/PROTOCOL.md 9.2): the sender's own, on connecting and when it
    /// changes, or another's, answering a `BundleRequest`.
    Bundle {
        bundle: Box<SignedBundle>,
    },
    /// "Whose is this peer's bundle?" Answered with `Bundle` by a node that holds it, else passed on
    /// to one more neighbour while `ttl` lasts, the answer coming back the same way.
    BundleRequest {
        peer: PeerId,
        ttl: u8,
    },
    /// A direct message handed to its recipient, by its sender.
    Dm {
        envelope: Box<Envelope>,
    },
    /// "Hold this for its recipient": to a mailbox its recipient's bundle names.
    Deposit {
        envelope: Box<Envelope>,
    },
    /// A mailbox's answer to a `Deposit`.
    Deposited {
        id: DmId,
        to: PeerId,
        outcome: DepositOutcome,
    },
    /// "Send me what you hold for me" (the connection's peer), after the id `after`.
    Collect {
        after: Option<DmId>,
    },
    /// Envelopes a mailbox holds for the connection's peer: a page answering `Collect`, or one just
    /// deposited while the recipient is connected. `more`: further pages wait.
    Mail {
        envelopes: Vec<Envelope>,
        more: bool,
    },
    /// The recipient's signed word that a mailbox may drop these envelopes.
    MailAck {
        ack: Box<Ack>,
    },
    /// "I see you at this address": the connection's far end, as the sender sees it.
    Observed {
        addr: SocketAddr,
    },
    /// "Dial me back at `port` of the IP this connection comes from" (never another IP).
    DialBack {
        port: u16,
        nonce: u64,
    },
    /// What a dial-back asked for with `nonce` found, and the address it dialed.
    DialBackResult {
        nonce: u64,
        outcome: DialBackOutcome,
        dialed: SocketAddr,
    },
    /// "Keep me reachable through you": a reservation at a relay, for as long as this connection.
    Reserve,
    /// A relay's answer to `Reserve`: held (`None`), or refused and why.
    Reservation {
        refused: Option<RelayRefusal>,
    },
    /// Nodes reachable through relays: the sender's own reservation, or some it knows of,
    /// answering `PeerRequest`.
    Relayed {
        entries: Vec<RelayedAddr>,
    },
    /// To a relay: "open a circuit to this peer, which holds a reservation with you".
    CircuitOpen {
        to: PeerId,
    },
    /// From a relay: the circuit asked for to `to` is open as `circuit`; `addr` is where the
    /// relay sees `to` from (the only IP a hole punch dials).
    CircuitOpened {
        circuit: u32,
        to: PeerId,
        addr: SocketAddr,
    },
    /// From a relay: no circuit to `to`, and why.
    CircuitRefused {
        to: PeerId,
        reason: RelayRefusal,
    },
    /// From a relay, to a node holding a reservation: `from` opened `circuit` to it. The
    /// opener speaks first (the handshake's dialer). `addr` is where the relay sees `from` from.
    CircuitIncoming {
        circuit: u32,
        from: PeerId,
        addr: SocketAddr,
    },
    /// To a relay: bytes of the connection that `circuit` carries, for its other end.
    ToRelay {
        circuit: u32,
        bytes: Vec<u8>,
    },
    /// From a relay: bytes of the connection that `circuit` carries, from its other end.
    FromRelay {
        circuit: u32,
        bytes: Vec<u8>,
    },
    /// To a relay: "I closed `circuit`".
    CircuitEnd {
        circuit: u32,
    },
    /// From a relay: `circuit` is closed, and why.
    CircuitClosed {
        circuit: u32,
        reason: RelayRefusal,
    },
    /// Over a circuit: "let us punch a hole; I listen at `port`" (asked by the end that accepted
    /// the circuit, answered by the other with its own port).
    PunchConnect {
        port: u16,
    },
    /// Over a circuit, from the end that accepted it: "dial now" (it dials half a round trip later).
    PunchSync,
}

/// What a mailbox did with a deposit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepositOutcome {
    /// Held until collected or expired.
    Stored,
    /// This node does not hold mail for that recipient.
    NotServed,
    /// A quota is full, or the envelope is expired, too large or expires too far ahead.
    Refused,
}

/// What `Message::Room` carries: the default room's gossip messages, for one room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomMessage {
    IHave {
        ids: Vec<ChatId>,
    },
    IWant {
        ids: Vec<ChatId>,
    },
    Prune,
    Graft {
        ids: Vec<ChatId>,
    },
    Sync {
        ranges: Vec<SyncRange>,
    },
    /// Private rooms only, from a member to a member neighbour: "hand me the keys of these
    /// epochs" (ids of `Rekey` operations, at most `MAX_KEYS_WANTED`), for chats it holds that it
    /// cannot open and for the epoch in force.
    KeysWanted {
        epochs: Vec<ChatId>,
    },
    /// The answer: those of the keys asked for that the asker may hold (docs/PROTOCOL.md 9.3).
    /// The connection is encrypted and bound to the asker's identity, so only it reads them.
    Keys {
        keys: Vec<(ChatId, [u8; 32])>,
    },
}

impl RoomMessage {
    /// The same message, of the default room (`None`: one only rooms carry).
    pub fn into_message(self) -> Option<Message> {
        Some(match self {
            RoomMessage::IHave { ids } => Message::IHave { ids },
            RoomMessage::IWant { ids } => Message::IWant { ids },
            RoomMessage::Prune => Message::Prune,
            RoomMessage::Graft { ids } => Message::Graft { ids },
            RoomMessage::Sync { ranges } => Message::Sync { ranges },
            RoomMessage::KeysWanted { .. } | RoomMessage::Keys { .. } => return None,
        })
    }

    /// `msg` as a message of a room, if it is one of those a room carries.
    pub fn from_message(msg: Message) -> Option<RoomMessage> {
        Some(match msg {
            Message::IHave { ids } => RoomMessage::IHave { ids },
            Message::IWant { ids } => RoomMessage::IWant { ids },
            Message::Prune => RoomMessage::Prune,
            Message::Graft { ids } => RoomMessage::Graft { ids },
            Message::Sync { ranges } => RoomMessage::Sync { ranges },
            _ => return None,
        })
    }
}

/// Who a peer is, sent encrypted inside the Noise handshake (see `handshake`), never as a frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub public_key: PublicKey,
    /// The identity key's signature over the sender's Noise static key: binds the encrypted
    /// session to the Ed25519 identity.
    pub binding: Signature,
    pub username: String,
    /// The port this node accepts connections on; 0 if it does not listen.
    pub listen_port: u16,
}

impl Message {
    /// Short name for logs and stats.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Chat { .. } => "Chat",
            Message::Reply { .. } => "Reply",
            Message::Prune => "Prune",
            Message::Graft { .. } => "Graft",
            Message::IHave { .. } => "IHave",
            Message::IWant { .. } => "IWant",
            Message::Sync { .. } => "Sync",
            Message::Ping { .. } => "Ping",
            Message::Pong { .. } => "Pong",
            Message::PeerRequest => "PeerRequest",
            Message::PeerResponse { .. } => "PeerResponse",
            Message::Announce { .. } => "Announce",
            Message::Room { .. } => "Room",
            Message::Subscribe { .. } => "Subscribe",
            Message::Unsubscribe { .. } => "Unsubscribe",
            Message::FindRoom { .. } => "FindRoom",
            Message::RoomPeers { .. } => "RoomPeers",
            Message::Bundle { .. } => "Bundle",
            Message::BundleRequest { .. } => "BundleRequest",
            Message::Dm { .. } => "Dm",
            Message::Deposit { .. } => "Deposit",
            Message::Deposited { .. } => "Deposited",
            Message::Collect { .. } => "Collect",
            Message::Mail { .. } => "Mail",
            Message::MailAck { .. } => "MailAck",
            Message::Observed { .. } => "Observed",
            Message::DialBack { .. } => "DialBack",
            Message::DialBackResult { .. } => "DialBackResult",
            Message::Reserve => "Reserve",
            Message::Reservation { .. } => "Reservation",
            Message::Relayed { .. } => "Relayed",
            Message::CircuitOpen { .. } => "CircuitOpen",
            Message::CircuitOpened { .. } => "CircuitOpened",
            Message::CircuitRefused { .. } => "CircuitRefused",
            Message::CircuitIncoming { .. } => "CircuitIncoming",
            Message::ToRelay { .. } => "ToRelay",
            Message::FromRelay { .. } => "FromRelay",
            Message::CircuitEnd { .. } => "CircuitEnd",
            Message::CircuitClosed { .. } => "CircuitClosed",
            Message::PunchConnect { .. } => "PunchConnect",
            Message::PunchSync => "PunchSync",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fatal: the stream cannot be resynchronised; nothing of the frame was buffered.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// Fatal: the peer speaks another protocol.
    #[error("peer speaks protocol version {theirs}, this node speaks version {ours}")]
    Version { theirs: u16, ours: u16 },
    /// The frame was skipped; the stream stays usable.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl WireError {
    /// Whether the connection must be closed (the decoder then refuses further input).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, WireError::Malformed(_))
    }
}
