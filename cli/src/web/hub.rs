//! What the page shows, kept once for every open tab.
//!
//! The hub turns each node event into an `Item` (the page's log line), keeps the last
//! [`LOG_ITEMS`] of them, and broadcasts each to every tab. A tab that opens gets a snapshot (the
//! log, the peers, the stats) and its subscription under one lock, so it misses nothing and sees
//! nothing twice; one that falls more than [`BROADCAST_CAPACITY`] messages behind gets a fresh
//! snapshot instead. Every tab therefore shows the same log, in the same order.
//!
//! The page is the default room's: chats of other rooms (and the room events) are left out of it;
//! the terminal shows them.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use p2p_chat_core::app::NodeHandle;
use p2p_chat_core::{Body, Chat, Command, Delivery, Direction, Event, Origin, PeerId, PeerSummary, PublicKey, Stats};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::display::Clock;
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
}

impl Me {
    pub fn new(username: &str, key: &PublicKey, listening: Option<SocketAddr>, headless: bool) -> Me {
        Me {
            who: Who::new(username, &key.peer_id()),
            key: key.to_string(),
            listening: listening.map(|a| a.to_string()),
            headless,
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
        id: String,
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
}

impl Item {
    fn of_chat(c: &Chat, origin: &'static str, when: Option<When>, hops: u8) -> Item {
        let (body, text) = match &c.body {
            Body::Text(t) => ("text", Some(t.clone())),
            Body::Join => ("join", None),
            Body::Leave => ("leave", None),
            Body::Sealed(_) => ("text", None),
        };
        Item::Chat {
            id: c.id.to_string(),
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
        }
    }

    /// The item for an event, or `None` for events the page does not show (as the terminal does
    /// not show this node's own joins and leaves; nor other rooms' chats, which the page leaves
    /// to the terminal).
    pub fn of_event(e: &Event, now_ms: u64, clock: &Clock) -> Option<Item> {
        Some(match e {
            Event::Chat(d) if !d.chat.room.is_default() => return None,
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
                Item::of_chat(&d.chat, origin, Some(clock.when(d)), d.hops)
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
            Event::RoomJoined(_) | Event::RoomParted(_) | Event::Invite { .. } => return None,
            Event::Dm(_) | Event::DmState { .. } | Event::Typing { .. } => return None,
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
        }
    }
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
        me: Me,
        items: Vec<Item>,
        peers: Vec<Peer>,
        stats: WebStats,
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
    Chat { text: String },
    Connect { addr: String },
    History { n: usize },
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
    pub fn new(
        me: Me,
        clock: Clock,
        history: &[Chat],
        handle: Arc<dyn NodeHandle>,
        dropped: Arc<AtomicU64>,
        started: Instant,
        quit: mpsc::Sender<()>,
    ) -> Hub {
        let items =
            history.iter().filter(|c| c.room.is_default()).map(|c| Item::of_chat(c, "history", None, 0)).collect();
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Hub {
            me,
            clock,
            log: Mutex::new(Log { items, tx, dropped_told: 0, unreachable: BTreeMap::new() }),
            handle,
            dropped,
            started,
            quit: Mutex::new(quit),
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
            Event::PeerUp(p) => back = log.unreachable.remove(&p.addr).map(|_| p.addr),
            _ => {}
        }
        if let Some(item) = Item::of_event(e, now, &self.clock) {
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

    /// A snapshot of the log and a subscription to what follows it, taken together.
    pub fn subscribe(&self) -> Option<(Vec<Item>, broadcast::Receiver<Arc<str>>)> {
        let log = self.log.lock().ok()?;
        Some((log.items.iter().cloned().collect(), log.tx.subscribe()))
    }

    /// The last `n` chats of the log, oldest first.
    pub fn history(&self, n: usize) -> Vec<Item> {
        let Ok(log) = self.log.lock() else { return Vec::new() };
        let mut out: Vec<Item> = log.items.iter().rev().filter(|i| i.is_chat()).take(n).cloned().collect();
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

    pub fn hello(&self, items: Vec<Item>, peers: Vec<Peer>, stats: WebStats) -> ToPage {
        ToPage::Hello { me: self.me.clone(), items, peers, stats }
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

    /// Sends a chat written on the page.
    pub fn chat(&self, text: String) -> Result<(), String> {
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
        self.handle.command(Command::Chat(text));
        Ok(())
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
        let hub = Hub::new(me, clock, &[], handle, Arc::default(), Instant::now(), quit);
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
        fn shutdown(&self) {}
    }

    #[test]
    fn page_requests_parse() {
        let m: FromPage = serde_json::from_str(r#"{"t":"chat","text":"hi"}"#).unwrap();
        assert!(matches!(m, FromPage::Chat { text } if text == "hi"));
        let m: FromPage = serde_json::from_str(r#"{"t":"history","n":5}"#).unwrap();
        assert!(matches!(m, FromPage::History { n: 5 }));
        assert!(serde_json::from_str::<FromPage>(r#"{"t":"exec","cmd":"rm"}"#).is_err());
        let _ = Ed25519Keys::from_seed(1).public_key();
    }
}
