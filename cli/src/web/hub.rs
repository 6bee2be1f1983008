//! What the page shows, kept once for every open tab.
//!
//! The hub turns each node event into an `Item` (the page's log line), keeps the last
//! [`LOG_ITEMS`] of them, and broadcasts each to every tab. A tab that opens gets a snapshot (the
//! log, the peers, the stats) and its subscription under one lock, so it misses nothing and sees
//! nothing twice; one that falls more than [`BROADCAST_CAPACITY`] messages behind gets a fresh
//! snapshot instead. Every tab therefore shows the same log, in the same order.
//!
//! The hub also keeps the rooms and the direct-message conversations as the page lists them,
//! with the terminal's own state types (`rooms::RoomList`, `dm::Dms`), one instance for every tab:
//! unread counts are the node's, not a tab's, and a room or conversation a tab shows is read
//! (the tab says so, `FromPage::Read`). Room, DM and moderation commands are read by the
//! terminal's parser (`commands::parse`) and become the same `NodeHandle` commands as there; the
//! node decides whether an operation is allowed, and its refusal is a warning line. The hub keeps
//! what the page needs besides: the blocked identities (whose chats every tab hides), the names
//! seen this run (`/whois` and the "not the first" marker) and the node's reachability.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use p2p_chat_core::app::NodeHandle;
use p2p_chat_core::nat::Reachability;
use p2p_chat_core::{
    Action, Body, Chat, ChatId, Command, Delivery, Direction, Event, MemberChange, MemberEntry, Op, Origin, PeerId,
    PeerSummary, PublicKey, Role, RoomId, RoomInfo, Stats,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::commands::Typed;
use crate::display::Clock;
use crate::dm::{DmLine, Dms};
use crate::rooms::{Pick, RoomList, INVITE_VALID};
use crate::ui::When;

/// Log items kept for tabs that open later (and the most `/history` shows).
pub const LOG_ITEMS: usize = 1_000;
/// Messages a tab may fall behind before it is sent a fresh snapshot instead.
const BROADCAST_CAPACITY: usize = 1_024;
/// Addresses remembered as unreachable; past this the oldest report is forgotten.
const MAX_UNREACHABLE: usize = 1_000;

/// The node's own identity, as the page's header shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Me {
    #[serde(flatten)]
    who: Who,
    key: String,
    /// Where peers can reach this node, if it listens.
    listening: Option<String>,
    /// Whether `/quit` from the page stops the node (no terminal to quit it from).
    headless: bool,
    #[serde(skip)]
    peer: PeerId,
}

impl Me {
    pub fn new(username: &str, key: &PublicKey, listening: Option<SocketAddr>, headless: bool) -> Me {
        Me {
            who: Who::new(username, &key.peer_id()),
            key: key.to_string(),
            listening: listening.map(|a| a.to_string()),
            headless,
            peer: key.peer_id(),
        }
    }
}

/// A user as shown: the name they chose and the id their key gives them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Who {
    name: String,
    id: String,
    short: String,
}

impl Who {
    fn new(name: &str, id: &PeerId) -> Who {
        Who { name: name.to_owned(), id: id.to_string(), short: id.short() }
    }
}

/// One line of the page's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Item {
    Chat {
        #[serde(skip)]
        key: ChatId,
        id: String,
        /// The room's id, 32 hex digits (zeros: the default room).
        room: String,
        /// Signed time, unix milliseconds.
        ts: u64,
        from: Who,
        /// `text`, `join` or `leave`.
        body: &'static str,
        text: Option<String>,
        /// `local` (written here), `live`, `repair` (fetched by catch-up) or `history` (from
        /// disk, from before this run).
        origin: &'static str,
        /// When it was said, as the terminal marks it: `now`, `late` (this run, but it came by
        /// catch-up), `away` (missed while offline), `earlier` (the room's backlog); `None` for
        /// history from disk.
        when: Option<&'static str>,
        hops: u8,
        /// Another key used this name first this run (`/whois name` lists them).
        not_first: bool,
    },
    /// An operation on a private room's membership, as the node applied it (or ignored it).
    Member {
        ts: u64,
        room: String,
        /// `join`, `remove`, `ban`, `unban`, `grant`, `revoke`, `redact` or `rekey`.
        op: &'static str,
        by: Who,
        target: Option<Who>,
        /// Whether it took effect; if not, its author had no right to it then.
        applied: bool,
    },
    /// What this node knows of its reachability changed.
    Reachability {
        ts: u64,
        text: String,
    },
    PeerUp {
        ts: u64,
        peer: Who,
        addr: String,
        direction: &'static str,
    },
    PeerDown {
        ts: u64,
        peer: Who,
        reason: String,
    },
    /// Said once per address, and once more if the node gives up on it, as the terminal does.
    DialFailed {
        ts: u64,
        addr: String,
        /// When the node tries again, unix milliseconds; `None`: it gave up on the address.
        retry_at: Option<u64>,
    },
    /// An address that could not be reached is connected now.
    Reachable {
        ts: u64,
        addr: String,
    },
    Warning {
        ts: u64,
        text: String,
    },
    /// This node joined (`joined`) or left a room.
    Room {
        ts: u64,
        room: String,
        name: String,
        access: &'static str,
        joined: bool,
    },
    /// An invite code made for a room, to pass on.
    Invite {
        ts: u64,
        room: String,
        name: String,
        code: String,
    },
}

impl Item {
    /// `opened`: a room chat's text, opened with the room's key.
    fn of_chat(c: &Chat, opened: Option<&str>, origin: &'static str, when: Option<When>, hops: u8) -> Item {
        let (body, text) = match &c.body {
            Body::Text(t) => ("text", Some(t.clone())),
            Body::Join => ("join", None),
            Body::Leave => ("leave", None),
            Body::Sealed(_) => ("text", opened.map(str::to_owned)),
            Body::Op(_) => ("op", None),
        };
        Item::Chat {
            key: c.id,
            id: c.id.to_string(),
            room: c.room.to_string(),
            ts: c.timestamp_ms(),
            from: Who::new(&c.username, &c.author_id()),
            body,
            text,
            origin,
            when: when.map(|w| match w {
                When::Now => "now",
                When::Late => "late",
                When::WhileAway => "away",
                When::Earlier => "earlier",
            }),
            hops,
            not_first: false,
        }
    }

    fn of_member(c: &MemberChange) -> Item {
        let target = |k: &PublicKey| Some(Who::new(c.target_name.as_deref().unwrap_or("?"), &k.peer_id()));
        let (op, target) = match &c.op {
            Op::Join(_) => ("join", None),
            Op::Remove(k) => ("remove", target(k)),
            Op::Ban(k) => ("ban", target(k)),
            Op::Unban(k) => ("unban", target(k)),
            Op::Grant(k) => ("grant", target(k)),
            Op::Revoke(k) => ("revoke", target(k)),
            Op::Redact { author, .. } => ("redact", target(author)),
            Op::Rekey { .. } => ("rekey", None),
        };
        Item::Member {
            ts: c.id.timestamp_ms(),
            room: c.room.to_string(),
            op,
            by: Who::new(&c.by_name, &c.by.peer_id()),
            target,
            applied: c.applied,
        }
    }

    /// The item for an event, or `None` for events the page does not show (as the terminal does
    /// not show this node's own joins and leaves) and for the room and direct-message events,
    /// which the hub reads with its room list and conversations.
    pub fn of_event(e: &Event, now_ms: u64, clock: &Clock) -> Option<Item> {
        Some(match e {
            // Membership operations are shown from `Event::Membership`, which says what they did.
            Event::Chat(d) if matches!(d.chat.body, Body::Op(_)) => return None,
            Event::Chat(Delivery { chat, origin: Origin::Local, .. })
                if !matches!(chat.body, Body::Text(_) | Body::Sealed(_)) =>
            {
                return None
            }
            Event::Chat(d) => {
                let origin = match d.origin {
                    Origin::Local => "local",
                    Origin::Live => "live",
                    Origin::Repair => "repair",
                };
                Item::of_chat(&d.chat, d.opened.as_deref(), origin, Some(clock.when(d)), d.hops)
            }
            Event::PeerUp(p) => Item::PeerUp {
                ts: now_ms,
                peer: Who::new(&p.username, &p.peer),
                addr: p.addr.to_string(),
                direction: direction(p.direction),
            },
            Event::PeerDown { peer, username, reason, .. } => {
                Item::PeerDown { ts: now_ms, peer: Who::new(username, peer), reason: reason.to_string() }
            }
            Event::DialFailed { addr, retry_at } => {
                Item::DialFailed { ts: now_ms, addr: addr.to_string(), retry_at: retry_at.map(|t| t.as_millis()) }
            }
            Event::Warning(w) | Event::Refused(w) => Item::Warning { ts: now_ms, text: w.clone() },
            // A join or a key change that did not apply is no news (as in the terminal).
            Event::Membership(c) if !c.applied && matches!(c.op, Op::Join(_) | Op::Rekey { .. }) => return None,
            Event::Membership(c) => Item::of_member(c),
            Event::Reachability(r) => Item::Reachability { ts: now_ms, text: r.to_string() },
            Event::RoomJoined(_) | Event::RoomParted(_) | Event::Invite { .. } => return None,
            Event::Dm(_) | Event::DmState { .. } | Event::Typing { .. } => return None,
            Event::Redacted { .. } | Event::RoomUpdated(_) | Event::Blocks(_) | Event::Members { .. } => return None,
        })
    }

    fn is_chat(&self) -> bool {
        matches!(self, Item::Chat { .. })
    }
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// A connected peer, as the page's peer list shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Peer {
    #[serde(flatten)]
    who: Who,
    addr: String,
    listen_addr: Option<String>,
    direction: &'static str,
    score: i32,
    rtt_ms: Option<f64>,
    /// `direct`, or `relayed via name#id`.
    path: String,
}

impl Peer {
    fn of(p: &PeerSummary) -> Peer {
        Peer {
            who: Who::new(&p.username, &p.peer),
            addr: p.addr.to_string(),
            listen_addr: p.listen_addr.map(|a| a.to_string()),
            direction: direction(p.direction),
            score: p.score,
            rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
            path: p.path.to_string(),
        }
    }
}

/// A room in the page's list: the default room first, then the others in the order joined.
#[derive(Clone, Debug, Serialize)]
pub struct RoomView {
    id: String,
    /// `everyone` for the default room; otherwise the room's name, without `#`.
    name: String,
    access: &'static str,
    unread: usize,
}

fn room_views(list: &RoomList) -> Vec<RoomView> {
    let everyone = RoomView {
        id: RoomId::DEFAULT.to_string(),
        name: crate::rooms::DEFAULT_NAME.into(),
        access: "public",
        unread: list.unread(&RoomId::DEFAULT),
    };
    let others = list.entries().iter().map(|e| RoomView {
        id: e.info.id.to_string(),
        name: e.info.name.clone(),
        access: crate::rooms::access(e.info.access),
        unread: e.unread,
    });
    std::iter::once(everyone).chain(others).collect()
}

/// A direct-message conversation in the page's list, the most recent first.
#[derive(Clone, Debug, Serialize)]
pub struct ConversationView {
    peer: Who,
    held: usize,
    unread: usize,
    last_ms: u64,
}

fn conversation_views(dms: &Dms) -> Vec<ConversationView> {
    dms.list()
        .into_iter()
        .map(|(peer, held, unread, last_ms)| ConversationView {
            peer: Who::new(&dms.name(&peer), &peer),
            held,
            unread,
            last_ms,
        })
        .collect()
}

/// One direct message, as the page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DmView {
    id: String,
    /// The other side of the conversation.
    peer: Who,
    outgoing: bool,
    text: String,
    ts: u64,
    /// An outgoing message's last state: `queued`, `sent`, `stored`, `delivered`, `read` or
    /// `expired`.
    state: Option<&'static str>,
}

impl DmView {
    fn of(l: &DmLine) -> DmView {
        DmView {
            id: l.id.to_string(),
            peer: Who::new(&l.name, &l.peer),
            outgoing: l.outgoing,
            text: l.text.clone(),
            ts: l.at_ms,
            state: l.state.map(crate::dm::state_name),
        }
    }
}

/// A member of a private room, as `/members` lists them.
#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    #[serde(flatten)]
    who: Who,
    /// `owner`, `admin`, `member` or `banned`.
    role: &'static str,
}

/// The counters `/stats` shows in the terminal.
#[derive(Clone, Debug, Serialize)]
pub struct WebStats {
    peers: usize,
    chats_sent: u64,
    chats_received: u64,
    chats_repaired: u64,
    chats_relayed: u64,
    duplicates: u64,
    chats_refused: u64,
    bytes_in: u64,
    bytes_out: u64,
    frames_in: u64,
    frames_out: u64,
    prunes_sent: u64,
    grafts_sent: u64,
    sync_frames_sent: u64,
    chats_held: usize,
    uptime_s: u64,
}

/// What the server sends a tab.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum ToPage {
    /// Everything at once: at open, and again after falling behind.
    Hello {
        me: Box<Me>,
        items: Vec<Item>,
        rooms: Vec<RoomView>,
        conversations: Vec<ConversationView>,
        /// Every conversation's messages held, oldest first.
        dms: Vec<DmView>,
        peers: Vec<Peer>,
        stats: WebStats,
        /// The identities blocked: their chats are not shown.
        blocked: Vec<Who>,
        /// What the node knows of its reachability, as `/id` says it.
        reachability: String,
    },
    /// The identities blocked now, after `/block`, `/unblock` or `/blocks`.
    Blocks {
        blocked: Vec<Who>,
    },
    /// A chat was redacted: the page forgets it.
    Redacted {
        id: String,
    },
    /// The members of a private room, answering `/members`, with this node's own role in it.
    Members {
        room: String,
        members: Vec<MemberView>,
        mine: Option<&'static str>,
    },
    /// What the node knows of its reachability changed.
    Reachability {
        text: String,
    },
    Rooms {
        rooms: Vec<RoomView>,
    },
    Conversations {
        conversations: Vec<ConversationView>,
    },
    /// A direct message, or a new state of one already sent (same `id`).
    Dm {
        dm: DmView,
    },
    /// For one tab: show this room, or this conversation (a `/room` or `/dms name#id` it typed).
    Show {
        room: Option<String>,
        peer: Option<Who>,
    },
    Item {
        item: Item,
    },
    Peers {
        peers: Vec<Peer>,
    },
    Stats {
        stats: WebStats,
    },
    /// The answer to one tab's `/history`.
    History {
        items: Vec<Item>,
    },
    /// A line for one tab: the answer to a command.
    Notice {
        text: String,
    },
    /// The node has stopped.
    Bye,
}

/// What a tab asks.
#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum FromPage {
    /// A chat for a room (its id; none: the default room).
    Chat {
        text: String,
        #[serde(default)]
        room: Option<String>,
    },
    /// A room or direct-message command as typed (`/join #dev`, `/msg bob#1234abcd hi`...),
    /// with the room the tab shows, for `/invite` and `/part`.
    Line {
        line: String,
        #[serde(default)]
        room: Option<String>,
    },
    /// A direct message to a peer id (64 hex digits).
    Dm {
        to: String,
        text: String,
    },
    /// The tab shows this room, or this conversation (a peer id): it is read.
    Read {
        #[serde(default)]
        room: Option<String>,
        #[serde(default)]
        peer: Option<String>,
    },
    Connect {
        addr: String,
    },
    History {
        n: usize,
        #[serde(default)]
        room: Option<String>,
    },
    Peers,
    Stats,
    Quit,
}

struct Log {
    items: VecDeque<Item>,
    /// Messages to every tab, serialized once.
    tx: broadcast::Sender<Arc<str>>,
    /// Events the node's callback could not hand over, already told to the page.
    dropped_told: u64,
    /// Addresses that failed to answer, and whether the node still retries them.
    unreachable: BTreeMap<SocketAddr, bool>,
    /// The rooms and their unread counts; "current" is the room a tab last showed.
    rooms: RoomList,
    dms: Dms,
    /// The identities blocked, as the node last said.
    blocked: Vec<PeerId>,
    /// Every key seen this run using each name, the first one first (this node's own first).
    names: crate::names::Names,
    reachability: Reachability,
}

/// What a tab gets when it opens.
pub struct Snapshot {
    pub items: Vec<Item>,
    rooms: Vec<RoomView>,
    conversations: Vec<ConversationView>,
    dms: Vec<DmView>,
    blocked: Vec<Who>,
    reachability: String,
}

pub struct Hub {
    me: Me,
    clock: Clock,
    log: Mutex<Log>,
    handle: Arc<dyn NodeHandle>,
    dropped: Arc<AtomicU64>,
    started: Instant,
    quit: Mutex<mpsc::Sender<()>>,
}

pub fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

pub fn json(m: &ToPage) -> Arc<str> {
    // Serializing these types cannot fail: every map key is a string.
    serde_json::to_string(m).unwrap_or_default().into()
}

impl Hub {
    /// `rooms` and `dms` are what the node was in and said before this run (from disk), so that
    /// `history` opens and names its rooms.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: Me,
        clock: Clock,
        history: &[Chat],
        rooms: &[RoomInfo],
        dm_lines: Vec<DmLine>,
        handle: Arc<dyn NodeHandle>,
        dropped: Arc<AtomicU64>,
        started: Instant,
        quit: mpsc::Sender<()>,
    ) -> Hub {
        let mut list = RoomList::default();
        for r in rooms {
            list.joined(r);
        }
        let items = history
            .iter()
            .filter(|c| c.room.is_default() || list.get(&c.room).is_some())
            .map(|c| Item::of_chat(c, list.open(c).as_deref(), "history", None, 0))
            .collect();
        let mut dms = Dms::default();
        let peers: std::collections::BTreeSet<PeerId> = dm_lines.iter().map(|l| l.peer).collect();
        for l in dm_lines {
            dms.add(l);
        }
        for p in peers {
            dms.open(&p, 0); // shown in an earlier run: read
        }
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let mut names = crate::names::Names::default();
        names.learn(&me.who.name, me.peer);
        let log = Log {
            items,
            tx,
            dropped_told: 0,
            unreachable: BTreeMap::new(),
            rooms: list,
            dms,
            blocked: Vec::new(),
            names,
            reachability: handle.reachability(),
        };
        Hub { me, clock, log: Mutex::new(log), handle, dropped, started, quit: Mutex::new(quit) }
    }

    /// The identities blocked in earlier runs, before any event says so.
    pub fn blocked(&self, list: Vec<PeerId>) {
        if let Ok(mut log) = self.log.lock() {
            log.blocked = list;
        }
    }

    pub fn handle(&self) -> &Arc<dyn NodeHandle> {
        &self.handle
    }

    /// Adds the item for `e` to the log and sends it to every tab.
    pub fn event(&self, e: &Event) {
        let now = now_ms();
        let Ok(mut log) = self.log.lock() else { return };
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > log.dropped_told {
            let text = format!(
                "{} event(s) came faster than the web page could take them and are not shown here",
                dropped - log.dropped_told
            );
            log.dropped_told = dropped;
            push(&mut log, Item::Warning { ts: now, text });
        }
        // A peer that cannot be reached is said once, and once more when it is given up or back.
        let mut back = None;
        match e {
            Event::DialFailed { addr, retry_at } => {
                let before = log.unreachable.insert(*addr, retry_at.is_some());
                if log.unreachable.len() > MAX_UNREACHABLE {
                    log.unreachable.pop_first();
                }
                let gave_up = before == Some(true) && retry_at.is_none();
                if before.is_some() && !gave_up {
                    return;
                }
            }
            Event::PeerUp(p) => {
                back = log.unreachable.remove(&p.addr).map(|_| p.addr);
                log.dms.learn(p.peer, &p.username);
                learn_name(&mut log, &p.username, p.peer);
            }
            Event::Chat(d) => {
                log.dms.learn(d.chat.author_id(), &d.chat.username);
                learn_name(&mut log, &d.chat.username, d.chat.author_id());
                let before = log.rooms.unread(&d.chat.room);
                log.rooms.delivered(d);
                if log.rooms.unread(&d.chat.room) != before {
                    send(&log, &ToPage::Rooms { rooms: room_views(&log.rooms) });
                }
            }
            // A room taken in again (rejoined at start) is no news.
            Event::RoomJoined(info) if log.rooms.joined(info) => {
                let item = Item::Room {
                    ts: now,
                    room: info.id.to_string(),
                    name: info.name.clone(),
                    access: crate::rooms::access(info.access),
                    joined: true,
                };
                // The list first: a tab that shows the room on this item finds its name.
                send(&log, &ToPage::Rooms { rooms: room_views(&log.rooms) });
                push(&mut log, item);
            }
            Event::RoomParted(id) => {
                let Some(entry) = log.rooms.get(id) else { return };
                let item = Item::Room {
                    ts: now,
                    room: id.to_string(),
                    name: entry.info.name.clone(),
                    access: crate::rooms::access(entry.info.access),
                    joined: false,
                };
                log.rooms.parted(id);
                push(&mut log, item);
                send(&log, &ToPage::Rooms { rooms: room_views(&log.rooms) });
            }
            Event::Invite { room, code } => {
                let name = log.rooms.get(room).map_or_else(String::new, |e| e.info.name.clone());
                push(&mut log, Item::Invite { ts: now, room: room.to_string(), name, code: code.clone() });
            }
            Event::Refused(_) => log.rooms.refused(),
            Event::Dm(d) => {
                let peer = if d.outgoing { d.to } else { d.from };
                let line = DmLine {
                    id: d.id,
                    peer,
                    name: log.dms.name(&peer),
                    outgoing: d.outgoing,
                    text: d.text.clone(),
                    at_ms: d.sent_at.as_millis(),
                    state: None,
                };
                send(&log, &ToPage::Dm { dm: DmView::of(&line) });
                log.dms.add(line);
                send(&log, &ToPage::Conversations { conversations: conversation_views(&log.dms) });
            }
            Event::DmState { id, to, state } => {
                if let Some(line) = log.dms.set_state(to, id, *state) {
                    send(&log, &ToPage::Dm { dm: DmView::of(&line) });
                }
            }
            Event::Redacted { chat, .. } => {
                log.items.retain(|i| !matches!(i, Item::Chat { key, .. } if key == chat));
                send(&log, &ToPage::Redacted { id: chat.to_string() });
                return;
            }
            Event::Blocks(list) => {
                log.blocked = list.clone();
                send(&log, &ToPage::Blocks { blocked: blocked_views(&log) });
                return;
            }
            Event::Members { room, members } => {
                let views = members.iter().map(|m| member_view(&log, m)).collect();
                let mine = members.iter().find(|m| m.key.peer_id() == self.me.peer).map(|m| role(m).1);
                send(&log, &ToPage::Members { room: room.to_string(), members: views, mine });
                return;
            }
            Event::Reachability(r) => {
                log.reachability = *r;
                send(&log, &ToPage::Reachability { text: r.to_string() });
            }
            _ => {}
        }
        if let Some(mut item) = Item::of_event(e, now, &self.clock) {
            if let (Item::Chat { not_first, .. }, Event::Chat(d)) = (&mut item, e) {
                *not_first = log.names.not_first(&d.chat.username, &d.chat.author_id());
            }
            push(&mut log, item);
        }
        if let Some(addr) = back {
            push(&mut log, Item::Reachable { ts: now, addr: addr.to_string() });
        }
    }

    /// Tells every tab that the node stopped.
    pub fn bye(&self) {
        if let Ok(log) = self.log.lock() {
            let _ = log.tx.send(json(&ToPage::Bye));
        }
    }

    pub fn broadcast(&self, m: &ToPage) {
        if let Ok(log) = self.log.lock() {
            if log.tx.receiver_count() > 0 {
                let _ = log.tx.send(json(m));
            }
        }
    }

    pub fn tabs(&self) -> usize {
        self.log.lock().map(|l| l.tx.receiver_count()).unwrap_or(0)
    }

    /// A snapshot of the log, the rooms and the conversations, and a subscription to what follows
    /// it, taken together.
    pub fn subscribe(&self) -> Option<(Snapshot, broadcast::Receiver<Arc<str>>)> {
        let log = self.log.lock().ok()?;
        let dms = log.dms.list().iter().rev().flat_map(|(p, ..)| log.dms.lines(p)).map(DmView::of).collect();
        let snapshot = Snapshot {
            items: log.items.iter().cloned().collect(),
            rooms: room_views(&log.rooms),
            conversations: conversation_views(&log.dms),
            dms,
            blocked: blocked_views(&log),
            reachability: log.reachability.to_string(),
        };
        Some((snapshot, log.tx.subscribe()))
    }

    /// The last `n` chats of a room in the log, oldest first.
    pub fn history(&self, n: usize, room: Option<&str>) -> Vec<Item> {
        let Ok(log) = self.log.lock() else { return Vec::new() };
        let room = room_of(&log.rooms, room).ok().unwrap_or_default().to_string();
        let in_room = |i: &&Item| matches!(i, Item::Chat { room: r, .. } if *r == room);
        let mut out: Vec<Item> = log.items.iter().rev().filter(in_room).take(n).cloned().collect();
        out.reverse();
        out
    }

    /// Peers and stats, asked of the node. Blocks for as long as the node takes to answer (the
    /// runtimes bound it to half a second): call it off the web thread's event loop.
    pub fn query(&self) -> (Vec<Peer>, WebStats) {
        let peers = self.handle.peers();
        let stats = self.handle.stats();
        let held = self.log.lock().map(|l| l.items.iter().filter(|i| i.is_chat()).count()).unwrap_or(0);
        let web_stats = web_stats(&stats, peers.len(), held, self.started.elapsed().as_secs());
        (peers.iter().map(Peer::of).collect(), web_stats)
    }

    pub fn hello(&self, s: Snapshot, peers: Vec<Peer>, stats: WebStats) -> ToPage {
        let Snapshot { items, rooms, conversations, dms, blocked, reachability } = s;
        ToPage::Hello {
            me: Box::new(self.me.clone()),
            items,
            rooms,
            conversations,
            dms,
            peers,
            stats,
            blocked,
            reachability,
        }
    }

    pub fn headless(&self) -> bool {
        self.me.headless
    }

    /// Asks the session to stop (headless nodes only: the caller checks).
    pub fn quit(&self) {
        if let Ok(q) = self.quit.lock() {
            let _ = q.send(());
        }
    }

    /// Sends a chat written on the page to a room (`None`: the default room).
    pub fn chat(&self, text: String, room: Option<&str>) -> Result<(), String> {
        let room =
            self.log.lock().map_err(|_| "the web interface failed".to_owned()).and_then(|l| room_of(&l.rooms, room))?;
        if text.trim().is_empty() {
            return Err("nothing to send".into());
        }
        if text.len() > p2p_chat_core::chat::MAX_TEXT_BYTES {
            return Err(format!(
                "too long: {} bytes, the most a chat can carry is {}",
                text.len(),
                p2p_chat_core::chat::MAX_TEXT_BYTES
            ));
        }
        self.handle.command(if room.is_default() { Command::Chat(text) } else { Command::Say { room, text } });
        Ok(())
    }

    /// Sends a direct message to `to` (a peer id, or `name#id` as `/msg` takes it).
    pub fn dm(&self, to: &str, text: String) -> Result<(), String> {
        if text.trim().is_empty() {
            return Err("nothing to send".into());
        }
        let peer = self.resolve(to)?;
        self.handle.command(Command::Dm { to: peer, text });
        Ok(())
    }

    /// Whom `target` means, as `/msg` resolves it. Asks the node for its peers: may block.
    fn resolve(&self, target: &str) -> Result<PeerId, String> {
        let connected: Vec<(PeerId, String)> = self.handle.peers().into_iter().map(|p| (p.peer, p.username)).collect();
        let log = self.log.lock().map_err(|_| "the web interface failed".to_owned())?;
        log.dms.resolve(target, &connected).map_err(|e| e.to_string())
    }

    /// A tab shows a room or a conversation: it is read, and every tab is told.
    pub fn read(&self, room: Option<&str>, peer: Option<&str>) {
        let Ok(mut log) = self.log.lock() else { return };
        if let Some(p) = peer {
            let Ok(peer) = log.dms.resolve(p, &[]) else { return };
            let before = log.dms.list().iter().find(|c| c.0 == peer).map_or(0, |c| c.2);
            log.dms.open(&peer, 0);
            if before > 0 {
                send(&log, &ToPage::Conversations { conversations: conversation_views(&log.dms) });
            }
        } else if let Ok(id) = room_of(&log.rooms, room) {
            let before = log.rooms.unread(&id);
            log.rooms.switch(id);
            if before > 0 {
                send(&log, &ToPage::Rooms { rooms: room_views(&log.rooms) });
            }
        }
    }

    /// Carries out a room or direct-message command typed on the page; the answer for that tab.
    /// `room` is the room the tab shows. May block (it asks the node for peers and rooms): call
    /// it off the web thread's event loop.
    pub fn line(&self, line: &str, room: Option<&str>) -> Option<ToPage> {
        let notice = |text: String| Some(ToPage::Notice { text });
        let typed = crate::commands::parse(line)?;
        let local = self.handle.local_addr();
        let lock = || self.log.lock().ok();
        match typed {
            Typed::JoinPublic(name) => self.handle.command(Command::JoinPublic(name)),
            Typed::JoinInvite(code) => self.handle.command(Command::JoinInvite(code.to_owned())),
            Typed::Create(name) => self.handle.command(Command::CreateRoom {
                name,
                addrs: crate::rooms::invite_addrs(local),
                valid_for: INVITE_VALID,
            }),
            Typed::Invite => {
                let room = room_of(&lock()?.rooms, room);
                match room {
                    Ok(id) if !id.is_default() => self.handle.command(Command::Invite {
                        room: id,
                        addrs: crate::rooms::invite_addrs(local),
                        valid_for: INVITE_VALID,
                    }),
                    Ok(_) => {
                        return notice(
                            "the default room has no invite: everyone is in it. /create #name starts a private room"
                                .into(),
                        )
                    }
                    Err(e) => return notice(e),
                }
            }
            Typed::Part(what) => {
                let picked = {
                    let log = lock()?;
                    match what {
                        Some(w) => log.rooms.pick(w),
                        None => {
                            room_of(&log.rooms, room)
                                .map(|id| if id.is_default() { Pick::Default } else { Pick::Room(id) })
                        }
                    }
                };
                match picked {
                    Ok(Pick::Room(id)) => self.handle.command(Command::Part(id)),
                    Ok(Pick::Default) => {
                        return notice(
                            "everyone is in the default room and stays in it: /quit leaves the network".into(),
                        )
                    }
                    Err(e) => return notice(e),
                }
            }
            Typed::Room(what) => {
                let picked = lock()?.rooms.pick(what);
                return match picked {
                    Ok(Pick::Default) => Some(ToPage::Show { room: Some(RoomId::DEFAULT.to_string()), peer: None }),
                    Ok(Pick::Room(id)) => Some(ToPage::Show { room: Some(id.to_string()), peer: None }),
                    Err(e) => notice(e),
                };
            }
            Typed::Rooms => {
                let summaries = self.handle.rooms();
                let peers = self.handle.peers().len();
                let style = crate::ui::Style { color: false };
                return notice(style.rooms_table(&lock()?.rooms, &summaries, peers));
            }
            Typed::Msg { to, text } => return self.dm(to, text.to_owned()).err().and_then(notice),
            Typed::Dms(None) => {
                let log = lock()?;
                if log.dms.list().is_empty() {
                    return notice("no direct messages yet: /msg name#id text starts a conversation".into());
                }
                return notice("your conversations are listed under Direct messages".into());
            }
            Typed::Dms(Some(who)) => {
                return match self.resolve(who) {
                    Ok(peer) => {
                        let name = lock()?.dms.name(&peer);
                        Some(ToPage::Show { room: None, peer: Some(Who::new(&name, &peer)) })
                    }
                    Err(e) => notice(e),
                }
            }
            Typed::Block(who) | Typed::Unblock(who) => {
                let on = matches!(typed, Typed::Block(_));
                match self.resolve(who) {
                    Ok(peer) if peer == self.me.peer => return notice("you cannot block yourself".into()),
                    Ok(peer) => self.handle.command(if on { Command::Block(peer) } else { Command::Unblock(peer) }),
                    Err(e) => return notice(e),
                }
            }
            Typed::Blocks => self.handle.command(Command::Blocks),
            Typed::Whois(name) => return notice(whois(&lock()?.names, name)),
            Typed::Moderate(what, who) => {
                let room = match moderated(&lock()?.rooms, room) {
                    Ok(r) => r,
                    Err(e) => return notice(e),
                };
                let peer = match self.resolve(who) {
                    Ok(p) => p,
                    Err(e) => return notice(e),
                };
                self.handle.command(Command::Moderate { room, action: what.on(peer) });
            }
            Typed::Members => match moderated(&lock()?.rooms, room) {
                Ok(r) => self.handle.command(Command::Members(r)),
                Err(e) => return notice(e),
            },
            Typed::Redact(n) => {
                let log = lock()?;
                let id = match moderated(&log.rooms, room) {
                    Ok(r) => r,
                    Err(e) => return notice(e),
                };
                let here = id.to_string();
                let mut texts = log.items.iter().rev().filter_map(|i| match i {
                    Item::Chat { key, room: r, body: "text", from, .. } if *r == here => Some((*key, from)),
                    _ => None,
                });
                let me = self.me.peer.to_string();
                let chosen = match n {
                    None => texts.find(|(_, from)| from.id == me),
                    Some(n) => texts.nth(n.saturating_sub(1)),
                }
                .map(|(chat, _)| chat);
                drop(log);
                match chosen {
                    Some(chat) => self.handle.command(Command::Moderate { room: id, action: Action::Redact(chat) }),
                    None => return notice("no such chat here (/history lists them, the last one first)".into()),
                }
            }
            Typed::Wrong(usage) => return notice(usage),
            Typed::Unknown(other) => return notice(format!("unknown command /{other}; type /help for the list")),
            _ => return notice("the page handles that command itself".into()),
        }
        None
    }
}

/// The room a tab names by its id (`None` or empty: the default room); an error if this node is
/// not in it.
fn room_of(list: &RoomList, id: Option<&str>) -> Result<RoomId, String> {
    let id = id.unwrap_or_default();
    if id.is_empty() || id == RoomId::DEFAULT.to_string() {
        return Ok(RoomId::DEFAULT);
    }
    list.entries()
        .iter()
        .find(|e| e.info.id.to_string() == id)
        .map(|e| e.info.id)
        .ok_or_else(|| "this node is not in that room (any more)".to_owned())
}

/// The private room a tab shows, for the moderation commands.
fn moderated(list: &RoomList, id: Option<&str>) -> Result<RoomId, String> {
    match room_of(list, id)? {
        r if r.is_default() => Err("moderation is for private rooms: show one first".into()),
        r => Ok(r),
    }
}

/// Notes a key using a name, for the `(not the first name)` marker and `/whois`.
fn learn_name(log: &mut Log, name: &str, id: PeerId) {
    log.names.learn(name, id);
}

fn whois(names: &crate::names::Names, name: &str) -> String {
    let keys = names.keys(name);
    if keys.is_empty() {
        return format!("nobody called {name} has been seen");
    }
    let mut out = format!("{} key(s) use the name {name}:", keys.len());
    for (i, peer) in keys.iter().enumerate() {
        let first = if i == 0 { "  (seen first)" } else { "" };
        out += &format!("\n  {name}#{}  {peer}{first}", peer.short());
    }
    out
}

fn blocked_views(log: &Log) -> Vec<Who> {
    log.blocked.iter().map(|p| Who::new(&log.dms.name(p), p)).collect()
}

fn role(m: &MemberEntry) -> (Option<Role>, &'static str) {
    let name = match (m.role, m.banned) {
        (Some(Role::Owner), _) => "owner",
        (Some(Role::Admin), _) => "admin",
        (Some(Role::Member), _) => "member",
        (None, _) => "banned",
    };
    (m.role, name)
}

fn member_view(log: &Log, m: &MemberEntry) -> MemberView {
    let peer = m.key.peer_id();
    let name = m.name.clone().unwrap_or_else(|| log.dms.name(&peer));
    MemberView { who: Who::new(&name, &peer), role: role(m).1 }
}

/// Sends a message to every tab, if there is one.
fn send(log: &Log, m: &ToPage) {
    if log.tx.receiver_count() > 0 {
        let _ = log.tx.send(json(m));
    }
}

fn push(log: &mut Log, item: Item) {
    if log.tx.receiver_count() > 0 {
        let _ = log.tx.send(json(&ToPage::Item { item: item.clone() }));
    }
    log.items.push_back(item);
    if log.items.len() > LOG_ITEMS {
        log.items.pop_front();
    }
}

fn web_stats(s: &Stats, peers: usize, chats_held: usize, uptime_s: u64) -> WebStats {
    WebStats {
        peers,
        chats_sent: s.chats_sent,
        chats_received: s.chats_received,
        chats_repaired: s.chats_repaired,
        chats_relayed: s.chats_relayed,
        duplicates: s.duplicates,
        chats_refused: s.chats_refused,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        frames_in: s.frames_in,
        frames_out: s.frames_out,
        prunes_sent: s.prunes_sent,
        grafts_sent: s.grafts_sent,
        sync_frames_sent: s.sync_frames_sent,
        chats_held,
        uptime_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_chat_core::{ChatId, Ed25519Keys, Keys};

    fn chat(text: &str) -> Arc<Chat> {
        let k = Ed25519Keys::from_seed(4);
        Arc::new(Chat::new(&k, ChatId::new_v7(1_800_000_000_000, &[2; 10]), "<b>bob</b>", Body::Text(text.into())))
    }

    /// Names and text go to the page as JSON strings, never as markup: what makes them text in
    /// the page is that the page only ever sets `textContent`.
    #[test]
    fn a_chat_becomes_a_json_item_with_its_text_as_a_string() {
        let c = chat("<script>alert(1)</script>");
        let clock = Clock { started_ms: 1_900_000_000_000, first_online_ms: Some(1_700_000_000_000) };
        let item = Item::of_event(
            &Event::Chat(Delivery { chat: c.clone(), opened: None, hops: 2, origin: Origin::Repair }),
            0,
            &clock,
        );
        let v: serde_json::Value = serde_json::from_str(&json(&ToPage::Item { item: item.unwrap() })).unwrap();
        assert_eq!(v["t"], "item");
        assert_eq!(v["item"]["kind"], "chat");
        assert_eq!(v["item"]["text"], "<script>alert(1)</script>");
        assert_eq!(v["item"]["from"]["name"], "<b>bob</b>");
        assert_eq!(v["item"]["from"]["short"], c.author_id().short());
        assert_eq!(v["item"]["origin"], "repair");
        assert_eq!(v["item"]["when"], "away", "said before this run, after this history's first: missed");
        assert_eq!(v["item"]["hops"], 2);
    }

    #[test]
    fn own_joins_and_leaves_are_not_shown() {
        let k = Ed25519Keys::from_seed(5);
        let join = Arc::new(Chat::new(&k, ChatId::new_v7(1, &[1; 10]), "me", Body::Join));
        let clock = Clock { started_ms: 0, first_online_ms: None };
        let local = Event::Chat(Delivery { chat: join.clone(), opened: None, hops: 0, origin: Origin::Local });
        assert!(Item::of_event(&local, 0, &clock).is_none());
        let live = Event::Chat(Delivery { chat: join, opened: None, hops: 1, origin: Origin::Live });
        assert!(Item::of_event(&live, 0, &clock).is_some());
    }

    #[test]
    fn an_unreachable_address_is_said_once_then_when_given_up() {
        let (quit, _) = mpsc::channel();
        let handle: Arc<dyn NodeHandle> = Arc::new(NoNode);
        let me = Me::new("me", &Ed25519Keys::from_seed(1).public_key(), None, false);
        let clock = Clock { started_ms: 0, first_online_ms: None };
        let hub = Hub::new(me, clock, &[], &[], Vec::new(), handle, Arc::default(), Instant::now(), quit);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let retry = Some(p2p_chat_core::Time::from_millis(5));
        for _ in 0..5 {
            hub.event(&Event::DialFailed { addr, retry_at: retry });
        }
        hub.event(&Event::DialFailed { addr, retry_at: None });
        hub.event(&Event::DialFailed { addr, retry_at: None });
        let kinds: Vec<Option<u64>> = hub
            .log
            .lock()
            .unwrap()
            .items
            .iter()
            .map(|i| match i {
                Item::DialFailed { retry_at, .. } => *retry_at,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, [Some(5), None]);
    }

    /// A redacted chat leaves the log that later tabs get; a chat under a name another key used
    /// first is marked.
    #[test]
    fn a_redacted_chat_leaves_the_log_and_a_second_key_of_a_name_is_marked() {
        let (quit, _) = mpsc::channel();
        let me = Me::new("me", &Ed25519Keys::from_seed(1).public_key(), None, false);
        let clock = Clock { started_ms: 0, first_online_ms: None };
        let hub = Hub::new(me, clock, &[], &[], Vec::new(), Arc::new(NoNode), Arc::default(), Instant::now(), quit);
        let say = |seed: u64, n: u8| {
            let k = Ed25519Keys::from_seed(seed);
            let c = Arc::new(Chat::new(&k, ChatId::new_v7(1, &[n; 10]), "bob", Body::Text("hi".into())));
            hub.event(&Event::Chat(Delivery { chat: c.clone(), opened: None, hops: 1, origin: Origin::Live }));
            c.id
        };
        let (first, second) = (say(7, 1), say(8, 2));
        let marks = |hub: &Hub| -> Vec<(ChatId, bool)> {
            let log = hub.log.lock().unwrap();
            log.items
                .iter()
                .filter_map(|i| match i {
                    Item::Chat { key, not_first, .. } => Some((*key, *not_first)),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(marks(&hub), [(first, false), (second, true)]);
        hub.event(&Event::Redacted { room: RoomId::DEFAULT, chat: first });
        assert_eq!(marks(&hub), [(second, true)]);
    }

    struct NoNode;

    impl NodeHandle for NoNode {
        fn local_addr(&self) -> Option<SocketAddr> {
            None
        }
        fn command(&self, _: Command) {}
        fn peers(&self) -> Vec<PeerSummary> {
            Vec::new()
        }
        fn rooms(&self) -> Vec<p2p_chat_core::RoomSummary> {
            Vec::new()
        }
        fn stats(&self) -> Stats {
            Stats::default()
        }
        fn known_addresses(&self) -> Vec<SocketAddr> {
            Vec::new()
        }
        fn reachability(&self) -> p2p_chat_core::nat::Reachability {
            p2p_chat_core::nat::Reachability::Unknown
        }
        fn shutdown(&self) {}
    }

    #[test]
    fn page_requests_parse() {
        let m: FromPage = serde_json::from_str(r#"{"t":"chat","text":"hi"}"#).unwrap();
        assert!(matches!(m, FromPage::Chat { text, room: None } if text == "hi"));
        let m: FromPage = serde_json::from_str(r#"{"t":"history","n":5}"#).unwrap();
        assert!(matches!(m, FromPage::History { n: 5, room: None }));
        assert!(serde_json::from_str::<FromPage>(r#"{"t":"exec","cmd":"rm"}"#).is_err());
        let _ = Ed25519Keys::from_seed(1).public_key();
    }
}
