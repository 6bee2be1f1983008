//! What a node keeps per room: the room's chats and its gossip tree ([`Room`]; the default room's
//! is the node's own), and for every other room its keys, name and who is known to be in it
//! ([`Joined`], in [`Rooms`]).

use core::net::SocketAddr;
use std::collections::BTreeSet;

use super::keys::{RoomId, RoomKeys, RoomSecret, FIRST_EPOCH};
use super::log::MemberLog;
use crate::chat::ChatId;
use crate::dedup::Dedup;
use crate::gossip::Gossip;
use crate::identity::PublicKey;
use crate::node::ConnId;

/// Most rooms a node is in besides the default one. A connection's rooms are a bit set of 64.
pub(crate) const MAX_ROOMS: usize = 63;
/// Most member addresses kept per room to dial.
pub(crate) const MAX_CANDIDATES: usize = 32;
/// Most distinct authors counted per room (the member count shown is at least this many).
const MAX_AUTHORS: usize = 4096;
/// Most epoch keys a node keeps per room: older ones are forgotten (their chats no longer open).
pub(crate) const MAX_EPOCHS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone who knows the name can join.
    Public,
    /// Only with an invite code.
    Private,
}

/// What the application is told when the node joins a room: enough to show it, and (with
/// `--persist`) to join it again after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    pub id: RoomId,
    /// Normalised: no `#`, lower case.
    pub name: String,
    pub access: Access,
    pub secret: RoomSecret,
    /// A private room's owner, whose key its id and keys are derived from.
    pub owner: Option<PublicKey>,
    /// The keys of the room's epochs after the first that this node was handed, oldest first
    /// (see `keys`): kept so that a restart still opens the chats sealed with them.
    pub epochs: Vec<(ChatId, [u8; 32])>,
}

impl RoomInfo {
    /// The room's keys of its first epoch.
    pub fn keys(&self) -> RoomKeys {
        RoomKeys::with_owner(&self.secret, self.owner.as_ref())
    }

    /// The keys of the epoch a sealed text names, if this node holds them.
    pub fn keys_for(&self, epoch: ChatId) -> Option<RoomKeys> {
        let first = self.keys();
        if epoch == FIRST_EPOCH {
            return Some(first);
        }
        self.epochs.iter().find(|(e, _)| *e == epoch).map(|(e, k)| first.for_epoch(*e, k))
    }
}

/// A room as `/rooms` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSummary {
    pub id: RoomId,
    pub name: String,
    pub access: Access,
    /// Neighbours that proved they are in it.
    pub neighbours: usize,
    /// Members known: distinct authors seen, this node and its member neighbours.
    pub members: usize,
    /// Chats held for repair and catch-up.
    pub held: usize,
}

/// One room's gossip: its chats (seen ids and the recent ones kept for repair), its Plumtree
/// neighbours and wants, and its announcements waiting for the next batch.
pub struct Room {
    pub(crate) dedup: Dedup,
    pub(crate) gossip: Gossip,
    /// Ids to announce, with the neighbour each goes to, in the order they were queued.
    pub(crate) ihave: Vec<(ConnId, ChatId)>,
}

impl Room {
    pub(crate) fn new(dedup: Dedup, gossip: Gossip) -> Room {
        Room { dedup, gossip, ihave: Vec::new() }
    }
}

/// What a node keeps of a private room's keys and moderation besides the log itself.
#[derive(Default)]
pub(crate) struct Moderation {
    /// Chats held whose epoch key has not come yet, delivered when it does (at most
    /// [`MAX_WAITING`]; past it the oldest are only held, never shown).
    pub(crate) waiting: Vec<ChatId>,
    /// Epoch keys handed over before their rekey arrived, checked when it does (at most
    /// [`MAX_UNCHECKED`]).
    pub(crate) unchecked: Vec<(ChatId, [u8; 32])>,
    /// Epoch keys sent, to whom: each is sent once (at most [`MAX_KEYS_SENT`] remembered).
    pub(crate) keys_sent: BTreeSet<(PublicKey, ChatId)>,
    /// Rounds the room has been stale (see `log`), for the admins that rekey it.
    pub(crate) stale_rounds: u32,
    /// The chats that carried the log's operations, to hand a new member neighbour those that
    /// sync no longer offers (older than the retention window). As many as the log holds.
    pub(crate) ops: std::collections::BTreeMap<ChatId, std::sync::Arc<crate::chat::Chat>>,
    /// The name each key of the room was last seen with (operations and chats), for showing
    /// operations and `/members`.
    pub(crate) names: std::collections::BTreeMap<PublicKey, String>,
}

pub(crate) const MAX_WAITING: usize = 256;
pub(crate) const MAX_UNCHECKED: usize = 8;
pub(crate) const MAX_KEYS_SENT: usize = 4096;

/// A room's place in a node: 0 is the default room, 1 to [`MAX_ROOMS`] the others. Stable while
/// the node is in the room; a connection's rooms are a bit set of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RoomIx(pub u8);

impl RoomIx {
    pub(crate) const DEFAULT: RoomIx = RoomIx(0);

    pub(crate) fn bit(self) -> u64 {
        1 << self.0
    }
}

/// A room other than the default one that the node is in.
pub(crate) struct Joined {
    pub(crate) info: RoomInfo,
    pub(crate) keys: RoomKeys,
    pub(crate) room: Room,
    /// Member addresses to dial while the room has too few member neighbours (from invites and
    /// `RoomPeers`), newest last.
    pub(crate) candidates: Vec<SocketAddr>,
    /// The addresses of the invites this node joined with (at most `MAX_INVITE_ADDRS` each, the
    /// newest [`MAX_CANDIDATES`] kept): dialed again now and then while the room is short of
    /// member neighbours or its log knows of no member beyond them (see `Node::rooms_round`).
    pub(crate) seeds: Vec<SocketAddr>,
    authors: BTreeSet<PublicKey>,
    /// Rounds of looking for members that found none since the last one found (see
    /// `Node::rooms_round`): the wider searches back off with it.
    pub(crate) idle_rounds: u32,
    /// `neighbours` at the last round, to tell progress.
    pub(crate) last_neighbours: usize,
    /// Rounds until a room with enough member neighbours looks beyond them.
    pub(crate) explore_in: u32,
    /// A private room's membership log (`None` for a public room).
    pub(crate) log: Option<MemberLog>,
    /// Moderation's bookkeeping (see `node/moderation.rs`).
    pub(crate) moderation: Moderation,
}

impl Joined {
    pub(crate) fn new(info: RoomInfo, room: Room) -> Joined {
        let keys = info.keys();
        let log = info.owner.map(MemberLog::new);
        Joined {
            info,
            keys,
            log,
            moderation: Moderation::default(),
            room,
            candidates: Vec::new(),
            seeds: Vec::new(),
            authors: BTreeSet::new(),
            idle_rounds: 0,
            last_neighbours: 0,
            explore_in: 0,
        }
    }

    pub(crate) fn saw_author(&mut self, author: PublicKey) {
        if self.authors.len() < MAX_AUTHORS {
            self.authors.insert(author);
        }
    }

    pub(crate) fn add_candidate(&mut self, addr: SocketAddr) {
        self.candidates.retain(|a| *a != addr);
        if self.candidates.len() >= MAX_CANDIDATES {
            self.candidates.remove(0);
        }
        self.candidates.push(addr);
    }

    pub(crate) fn add_seed(&mut self, addr: SocketAddr) {
        self.seeds.retain(|a| *a != addr);
        if self.seeds.len() >= MAX_CANDIDATES {
            self.seeds.remove(0);
        }
        self.seeds.push(addr);
    }

    /// `neighbours`: how many neighbours proved they are in it (the node knows, from its
    /// connections).
    pub(crate) fn summary(&self, me: &PublicKey, neighbours: usize) -> RoomSummary {
        let others = self.authors.iter().filter(|a| *a != me).count();
        RoomSummary {
            id: self.info.id,
            name: self.info.name.clone(),
            access: self.info.access,
            neighbours,
            members: 1 + others.max(neighbours),
            held: self.room.dedup.len(),
        }
    }
}

/// The rooms a node is in besides the default one, by slot.
#[derive(Default)]
pub(crate) struct Rooms {
    slots: Vec<Option<Box<Joined>>>,
}

impl Rooms {
    pub(crate) fn get(&self, ix: RoomIx) -> Option<&Joined> {
        self.slots.get(usize::from(ix.0).checked_sub(1)?)?.as_deref()
    }

    pub(crate) fn get_mut(&mut self, ix: RoomIx) -> Option<&mut Joined> {
        self.slots.get_mut(usize::from(ix.0).checked_sub(1)?)?.as_deref_mut()
    }

    pub(crate) fn find(&self, id: &RoomId) -> Option<RoomIx> {
        self.iter().find(|(_, j)| j.info.id == *id).map(|(ix, _)| ix)
    }

    /// Takes a room into the first free slot; `None` if every slot is taken.
    pub(crate) fn insert(&mut self, joined: Joined) -> Option<RoomIx> {
        let free = self.slots.iter().position(Option::is_none);
        let i = match free {
            Some(i) => i,
            None if self.slots.len() < MAX_ROOMS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return None,
        };
        self.slots[i] = Some(Box::new(joined));
        Some(RoomIx(u8::try_from(i + 1).expect("at most 63 slots")))
    }

    pub(crate) fn remove(&mut self, ix: RoomIx) -> Option<Box<Joined>> {
        let taken = self.slots.get_mut(usize::from(ix.0).checked_sub(1)?)?.take();
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        taken
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (RoomIx, &Joined)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| Some((RoomIx(i as u8 + 1), s.as_deref()?)))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slots in use, for loops that need the node mutably.
    pub(crate) fn ixs(&self) -> Vec<RoomIx> {
        self.iter().map(|(ix, _)| ix).collect()
    }
}
