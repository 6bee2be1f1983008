//! The node: one peer of the chat network as a deterministic state machine.
//!
//! It owns the connections and ties the other modules together: `handshake` opens each
//! connection, `session` encrypts it, `dedup` decides what is new, `gossip` decides where a chat goes, `sync` repairs what
//! was missed, `membership` decides whom to dial and whom to drop. The run-loop contract is in the
//! crate docs.

mod api;
mod broadcast;
mod config;
mod conn;
mod dm;
mod inbound;
mod lifecycle;
mod moderation;
mod nat;
mod output;
#[cfg(feature = "prefetch")]
mod prefetch;
mod repair;
mod room_keys;
mod rooms;
mod timers;

pub use api::{CloseReason, Command, ConnId, Delivery, Direction, Event, Input, Origin, Output, PeerSummary, Stats};
pub use config::{Config, ConfigError};
use conn::{Conn, ConnAddr, Listen, Liveness, Peer, PeerRooms, Phase, NO_RTT};
use dm::Dm;
pub use dm::{DmConfig, DmDelivery, DmSnapshot, BUNDLE_TTL, DM_REQUESTS, MAX_MAIL_PAGE};
use lifecycle::conn_name;
pub use moderation::{Action, MemberChange, MemberEntry, MAX_BLOCKS};
use output::tx_buf;
pub use timers::Timer;
use timers::Timers;

use core::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::chat::{Body, Chat, ChatId, ChatInterner, MAX_TEXT_BYTES};
use crate::conn_map::{ConnMap, ConnTable};
use crate::dedup::{Dedup, Verdict};
use crate::dm::{DmId, DmState, SignedBundle};
use crate::gossip::{Gossip, Requested};
use crate::handshake::{Handshake, HandshakeError, Progress, StaticIdentity};
use crate::identity::{Keys, PeerId, PublicKey};
use crate::membership::{AddressBook, Bans, KeyTag, Penalty, Score, Source, Standing};
use crate::name::Name;
use crate::random::Rng;
use crate::rate::{RateLimit, Tokens};
use crate::rooms::{Joined, Room, RoomId, RoomInfo, RoomIx, RoomKeys, Rooms};
use crate::serve::{Credit, Refusal, ServeLimits, Served, ID_WALK_COST};
use crate::session::{self, Session};
use crate::sync::{self, IdSet, Summary};
use crate::time::Time;
use crate::wire::{
    self, Frame, Frames, Message, WireError, MAX_ADDRS_PER_FRAME, MAX_IDS_PER_FRAME, MAX_RANGES_PER_FRAME,
};

/// The fields are in two groups (`repr(C)` keeps them in this order): first those that nearly
/// every input reads or writes (a frame in, the outputs and the next timeout after it), then those
/// that only connection changes, timers and commands touch. A simulator at 100,000 nodes finds
/// every node cold in cache and hints the hot group ahead of its inputs (`Node::HOT_BYTES`, 560
/// bytes): in the compiler's order what a frame touches was spread over the whole node, 18 lines,
/// all of which were hinted.
#[cfg_attr(feature = "prefetch", repr(C))]
pub struct Node {
    // ----- hot: read or written by nearly every input -----
    /// Every deadline but the gossip's wants (see `timers`): read after every input.
    timers: Timers,
    /// The latest `now` given, to check that time never goes backwards.
    #[cfg(debug_assertions)]
    last_now: Time,
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
    keys: Box<dyn Keys>,
    joined: bool,
    leaving: bool,
    /// The default room's chats and gossip tree. Its announcements wait in one list for all
    /// neighbours, so that a batch costs one allocation instead of one per neighbour (and the
    /// map's own); a few dozen at most, so scans are cheap.
    main: Room,
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
    banned: Bans,
    dial_bucket: Tokens,
    /// The rooms this node is in besides the default one.
    rooms: Rooms,
    /// `FindRoom`s passed on and not answered yet: where an answer goes back to.
    walks: Vec<Walk>,
    /// Members of public rooms seen in answers passed back (see `rooms`): a later `FindRoom` for
    /// the same room is answered at once.
    room_hints: Vec<(RoomId, SocketAddr, Time)>,
    /// Direct messages, when on (`Node::with_dm`): boxed, so a node without them (most of a
    /// simulator's) holds one pointer.
    dm: Option<Box<Dm>>,
    /// Identities whose chats and direct messages this node does not show (see `moderation`).
    blocked: BTreeSet<PeerId>,
    /// Reachability, the relay service and circuits (see `nat`); `None` with all of it off (a
    /// simulator without NAT holds a pointer a node for it).
    nat: Option<Box<nat::Nat>>,
}

/// A `FindRoom` passed on for a neighbour: its answer is passed back to `from` until `until`.
struct Walk {
    room: RoomId,
    from: ConnId,
    until: Time,
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

/// How often a peer's `PeerRequest`s are answered: three at once (a newcomer asks as it comes up,
/// and again at its first exchange a second later), then one every 4 s (a node short of peers asks
/// every `exchange_interval / 6`, 5 s by default).
const PEER_ANSWERS: RateLimit = RateLimit::new(0.25, 3.0);

/// Below this many known addresses, every new neighbour is asked for more.
const HUNGRY_BOOK: usize = 64;
/// Most dials in flight at once.
const MAX_PENDING_DIALS: usize = 4;

/// A room's chats and gossip, as `config` sets them: the default room's and every other's alike.
fn new_room(config: &Config) -> Room {
    Room::new(
        Dedup::new(config.retention, config.max_chats, config.max_clock_skew),
        Gossip::new(config.fanout, config.lazy_fanout, config.lazy_wait, config.want_timeout, config.repair),
    )
}

/// The room at `ix` of `node`, reached through the node's fields so that only they are borrowed
/// (the caller can use the node's RNG and queues beside it). `None` if the node left that room.
macro_rules! room_mut {
    ($node:expr, $ix:expr) => {
        match $ix {
            RoomIx::DEFAULT => Some(&mut $node.main),
            ix => $node.rooms.get_mut(ix).map(|j| &mut j.room),
        }
    };
}
use room_mut;

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
        let mut book =
            AddressBook::new(config.address_book_cap, config.backoff_base, config.backoff_max).seeded(rng.u64());
        for addr in bootstrap {
            book.add(*addr, Source::Bootstrap, now);
        }
        Node {
            main: new_room(&config),
            rooms: Rooms::default(),
            walks: Vec::new(),
            room_hints: Vec::new(),
            dm: None,
            blocked: config.blocked.iter().take(MAX_BLOCKS).copied().collect(),
            nat: (config.nat != crate::nat::NatConfig::off()).then(|| Box::new(nat::Nat::new(&config, now))),
            keys,
            identity,
            rng,
            conns: ConnTable::default(),
            next_conn: 0,
            up_peers: 0,
            book,
            banned: Bans::default(),
            out: VecDeque::new(),
            tx: ConnMap::default(),
            interner: None,
            dial_bucket: Tokens::full(config.dial_rate.burst, now),
            #[cfg(debug_assertions)]
            last_now: now,
            timers: {
                let mut t = Timers::new();
                t.set(Timer::Dial, now);
                t.set(Timer::Explore, now + config.explore_interval);
                if nat::wants_mapping(&config) {
                    // The mapping is asked for at once: inbound connections wait for it.
                    t.set(Timer::Nat, now);
                }
                t
            },
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
        self.main.dedup.iter()
    }

    /// Recent chats of room `room` held for repair, oldest first (sealed, as they travel).
    pub fn recent_chats_in(&self, room: &RoomId) -> Vec<Arc<Chat>> {
        let room = self.room_ix(room).and_then(|ix| self.room_ref(ix));
        room.map(|r| r.dedup.iter().cloned().collect()).unwrap_or_default()
    }

    /// Chats held for repair and catch-up.
    pub fn held_chats(&self) -> usize {
        self.main.dedup.len()
    }

    /// Whether the node has finished leaving (no connections left).
    pub fn is_closed(&self) -> bool {
        self.leaving && self.conns.is_empty()
    }

    /// Loads chats from an earlier run (the CLI's database) so this node can serve them to peers
    /// that missed them. They are not delivered again. Chats that fail verification, or are out of
    /// the retention window, are skipped, as are chats of rooms the node is not in (rejoin rooms
    /// first: `Command::Rejoin`). Returns how many were taken.
    pub fn restore(&mut self, now: Time, chats: impl IntoIterator<Item = Chat>) -> usize {
        let mut taken = 0;
        for chat in chats {
            let Some(ix) = self.room_ix(&chat.room) else { continue };
            if matches!(chat.body, Body::Op(_)) && chat.is_well_formed() && chat.verify(&*self.keys) {
                // A room's log outlives the retention window of its chats.
                self.restore_op(ix, &chat);
            }
            let Some(room) = room_mut!(self, ix) else { continue };
            if room.dedup.check(&chat.id, now) == Verdict::New && chat.is_well_formed() && chat.verify(&*self.keys) {
                let id = chat.id;
                room.dedup.insert(Arc::new(chat), 0);
                self.arm_expire(&id);
                taken += 1;
            }
        }
        taken
    }

    pub fn handle_input(&mut self, now: Time, input: Input<'_>) {
        self.check_clock(now);
        match input {
            Input::Connected(conn) if self.is_probe(conn) => drop(self.probe_done(conn, true)),
            Input::DialFailed(conn) | Input::Closed(conn) if self.is_probe(conn) => drop(self.probe_done(conn, false)),
            Input::DialFailed(conn) if self.is_punch_dial(conn) => self.punch_failed(now, conn),
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
                    self.arm_dial(now);
                    self.emit(Event::DialFailed { addr: c.addr(), retry_at });
                }
            }
            Input::Received(conn, bytes) => self.on_bytes(now, conn, bytes),
            Input::Closed(conn) => self.drop_conn(now, conn, CloseReason::ByPeer, false, true),
            Input::Backlog(conn, bytes) => self.on_backlog(now, conn, bytes),
            Input::Command(cmd) => self.on_command(now, cmd),
            Input::Timeout => self.on_timeout(now),
            Input::PortMapped(answer) => self.port_mapped(now, answer),
        }
    }

    /// Time never goes backwards (the run-loop contract); checked in debug builds.
    pub(super) fn check_clock(&mut self, now: Time) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(now >= self.last_now, "time went backwards: {now} after {}", self.last_now);
            self.last_now = now;
        }
        let _ = now;
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
                // A circuit's records travel inside frames to its relay, queued (and sealed)
                // in turn.
                if self.nat.as_ref().is_some_and(|n| n.client.has_legs()) {
                    if let Some(bytes) = self.through_relay(conn, bytes) {
                        return Some(Output::Transmit { conn, bytes });
                    }
                    continue;
                }
                return Some(Output::Transmit { conn, bytes });
            }
            // After 2^64 records: not in this universe, but never a panic.
            let when = c.last_recv;
            self.drop_conn(when, conn, CloseReason::NoncesExhausted, false, false);
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
        let want = self.wants_due().map(|t| (t, Timer::Want));
        match (want, self.timers.next()) {
            (Some(w), Some(t)) => Some(if w.0 <= t.0 { w } else { t }),
            (w, t) => w.or(t),
        }
    }
}
