//! The display thread: stores each delivered chat, then shows it (in that order, so nothing shown
//! can be lost), and turns the node's events into what a person wants to read:
//!
//! - a peer that cannot be reached is said once, and once more when it is back; the tries go on
//!   quietly and `/peers` lists them;
//! - a chat written while no peer is connected is said to be queued, and the first connection
//!   says that the queued chats go out now;
//! - a chat said before this run is marked "(while you were away)" when this history was already
//!   in use then, and "(earlier in this room)" when it is backlog from before this identity's first
//!   run here (or when there is no history on disk to tell);
//! - two keys using one username are pointed out, once per new key;
//! - the rooms joined and left are kept in `rooms::Rooms` (and with `--persist`, in the database),
//!   and a chat of a room that is not current counts as unread there.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use p2p_chat_core::app::NodeHandle;
use p2p_chat_core::dm::{DmId, DmState};
use p2p_chat_core::{Body, Chat, Command, Delivery, DmDelivery, Event, Origin, PeerId, Time};

use crate::dm::DmLine;

use crate::rooms::Rooms;
use crate::store::Store;
use crate::ui::{Kind, Out, Style, When};

/// Chats kept in memory for `/history` without `--persist`.
pub const MEMORY_HISTORY: usize = 1_000;
/// How often direct messages' state is saved when no event comes (a mailbox's deposits come with
/// none); it is saved after every batch of direct-message events too.
const DM_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Addresses remembered as unreachable; past this the oldest report is forgotten.
const MAX_UNREACHABLE: usize = 1_000;

/// Where shown lines go: stdout in plain mode, the full-screen view otherwise.
pub type Printer = Arc<dyn Fn(Out) + Send + Sync>;

/// A peer address that failed to answer.
#[derive(Clone, Copy, Debug)]
pub struct Unreachable {
    pub tries: u32,
    /// When the node tries again; `None`: it gave up on the address.
    pub retry_at: Option<Time>,
}

/// What the display thread and the command handler both read.
#[derive(Default)]
pub struct Shared {
    pub history: Mutex<VecDeque<Arc<Chat>>>,
    pub unreachable: Mutex<BTreeMap<SocketAddr, Unreachable>>,
    pub rooms: Rooms,
    pub dms: Mutex<crate::dm::Dms>,
    /// Peers typing to this node, and when they said so last (`Event::Typing`); never stored.
    pub typing: Mutex<BTreeMap<PeerId, std::time::Instant>>,
    /// Every key seen this run using each name, the first one first (`/whois`).
    pub names: Mutex<crate::names::Names>,
}

impl Shared {
    /// The peers whose typing notice is fresh (younger than `dm::TYPING_SHOWN`).
    pub fn typing_now(&self) -> Vec<PeerId> {
        let typing = self.typing.lock().unwrap_or_else(|e| e.into_inner());
        typing.iter().filter(|(_, at)| at.elapsed() < crate::dm::TYPING_SHOWN).map(|(p, _)| *p).collect()
    }
}

/// Tells when a chat was said, relative to this run and this history.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// When this run started (unix ms).
    pub started_ms: u64,
    /// When a node first ran on this history, if there is one on disk.
    pub first_online_ms: Option<u64>,
}

/// A chat pushed live is taken as said before the run only if signed this much before it began, so
/// a sender whose clock runs a little behind ours does not have its news marked as missed.
pub const LIVE_SKEW_MS: u64 = 2_000;

impl Clock {
    pub fn when(&self, d: &Delivery) -> When {
        let ts = d.chat.timestamp_ms();
        let before_run = match d.origin {
            Origin::Local => false,
            Origin::Live => ts.saturating_add(LIVE_SKEW_MS) < self.started_ms,
            Origin::Repair => ts < self.started_ms,
        };
        if !before_run {
            if d.origin == Origin::Repair {
                When::Late
            } else {
                When::Now
            }
        } else {
            match self.first_online_ms {
                Some(first) if ts >= first => When::WhileAway,
                _ => When::Earlier,
            }
        }
    }
}

pub struct Display {
    pub style: Style,
    pub printer: Printer,
    pub store: Option<Arc<Store>>,
    pub shared: Arc<Shared>,
    pub handle: Arc<dyn NodeHandle>,
    pub clock: Clock,
    /// This node's own username and id, so a stranger using the same name is pointed out.
    pub me: (String, PeerId),
}

struct State {
    connected: usize,
    /// Own chats written while no peer was connected.
    queued: usize,
}

impl Display {
    fn say(&self, kind: Kind, text: String) {
        (self.printer)(Out::Line(kind, text, None));
    }

    /// An event's line, with its sender marked for the full-screen view's colors.
    fn say_event(&self, e: &Event, when: When) {
        let line = self.style.event_line(e, when, &self.shared.rooms.lock());
        let Some((kind, mut text)) = line else { return };
        // A new key using a name another key used first is marked on each of its chats.
        if let Event::Chat(d) = e {
            let names = self.shared.names.lock().unwrap_or_else(|e| e.into_inner());
            if names.not_first(&d.chat.username, &d.chat.author_id()) {
                text += &format!("  (not the first {}: /whois)", crate::ui::clean_name(&d.chat.username));
            }
        }
        let who = match e {
            Event::Chat(d) => Style::find_who(&text, &d.chat.username, &d.chat.author_id()),
            Event::PeerUp(p) => Style::find_who(&text, &p.username, &p.peer),
            Event::PeerDown { username, peer, .. } => Style::find_who(&text, username, peer),
            _ => None,
        };
        (self.printer)(Out::Line(kind, text, who));
    }

    /// Runs until the node's event channel closes.
    pub fn run(self, events: Receiver<Event>) {
        let mut st = State { connected: 0, queued: 0 };
        self.shared.names.lock().unwrap_or_else(|e| e.into_inner()).learn(&self.me.0, self.me.1);
        loop {
            let first = match events.recv_timeout(DM_SAVE_EVERY) {
                Ok(e) => e,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // What a mailbox took for others comes with no event.
                    if let Some(s) = &self.store {
                        crate::session::save_dm(s, &*self.handle);
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            // Take everything waiting, so a burst costs one database commit.
            let mut batch = vec![first];
            batch.extend(events.try_iter());
            let chats: Vec<Arc<Chat>> =
                batch.iter().filter_map(|e| if let Event::Chat(d) = e { Some(d.chat.clone()) } else { None }).collect();
            if let Some(s) = &self.store {
                if let Err(e) = s.put_chats(&chats) {
                    self.say(Kind::Warning, format!("!!! could not save history: {e}"));
                }
                if batch.iter().any(|e| matches!(e, Event::PeerUp(_))) {
                    crate::session::save_peers(s, &*self.handle);
                }
            }
            if let Ok(mut h) = self.shared.history.lock() {
                for c in &chats {
                    h.push_back(c.clone());
                    if h.len() > MEMORY_HISTORY {
                        h.pop_front();
                    }
                }
            }
            for e in &batch {
                self.show(&mut st, e);
            }
            if let Some(s) = &self.store {
                if let Err(e) = s.mark_shown(&chats) {
                    self.say(Kind::Warning, format!("!!! could not save history: {e}"));
                }
                if batch.iter().any(|e| matches!(e, Event::Dm(_) | Event::DmState { .. })) {
                    crate::session::save_dm(s, &*self.handle);
                }
            }
        }
    }

    fn show(&self, st: &mut State, e: &Event) {
        match e {
            Event::DialFailed { addr, retry_at } => {
                let mut map = match self.shared.unreachable.lock() {
                    Ok(m) => m,
                    Err(_) => return,
                };
                let first = !map.contains_key(addr);
                let entry = map.entry(*addr).or_insert(Unreachable { tries: 0, retry_at: *retry_at });
                entry.tries += 1;
                let gave_up = entry.retry_at.is_some() && retry_at.is_none();
                entry.retry_at = *retry_at;
                if map.len() > MAX_UNREACHABLE {
                    map.pop_first();
                }
                drop(map);
                if first || gave_up {
                    self.say_event(e, When::Now);
                }
                return;
            }
            Event::PeerUp(p) => {
                st.connected += 1;
                self.dms().learn(p.peer, &p.username);
                self.name_check(&p.username, p.peer);
                // Dialed by us (its address) or dialing in (the address it listens on).
                let back = self.shared.unreachable.lock().ok().and_then(|mut m| {
                    let by_listen = p.listen_addr.and_then(|a| m.remove(&a).map(|_| a));
                    m.remove(&p.addr).map(|_| p.addr).or(by_listen)
                });
                self.say_event(e, When::Now);
                if let Some(addr) = back {
                    let text = format!("--- {addr} is reachable again");
                    self.say(Kind::Network, self.style.note(Kind::Network, &text));
                }
                if st.queued > 0 {
                    let n = std::mem::take(&mut st.queued);
                    self.say(
                        Kind::Network,
                        self.style.note(Kind::Network, &format!("--- the {n} chat(s) queued while alone go out now")),
                    );
                }
                return;
            }
            Event::PeerDown { .. } => {
                st.connected = st.connected.saturating_sub(1);
                crate::memory::peer_left();
            }
            Event::Chat(d) => {
                self.name_check(&d.chat.username, d.chat.author_id());
                self.dms().learn(d.chat.author_id(), &d.chat.username);
                self.shared.rooms.lock().delivered(d);
            }
            Event::RoomJoined(info) => {
                if let Some(Err(e)) = self.store.as_ref().map(|s| s.put_room(info)) {
                    self.say(Kind::Warning, format!("!!! could not save the room: {e}"));
                }
                self.shared.rooms.lock().joined(info);
                // Said before a waiting `/join` goes on, so its answer comes first.
                self.say_event(e, When::Now);
                self.shared.rooms.notify();
                return;
            }
            Event::RoomParted(id) => {
                if let Some(Err(e)) = self.store.as_ref().map(|s| s.remove_room(id)) {
                    self.say(Kind::Warning, format!("!!! could not forget the room: {e}"));
                }
                // Said while the room still has its name.
                self.say_event(e, When::Now);
                if self.shared.rooms.lock().parted(id) {
                    self.say(Kind::Info, "--- current room: everyone (your lines go there)".into());
                }
                self.shared.rooms.notify();
                return;
            }
            Event::Refused(_) => {
                self.shared.rooms.lock().refused();
                self.say_event(e, When::Now);
                self.shared.rooms.notify();
                return;
            }
            Event::Redacted { chat, .. } => {
                if let Some(Err(e)) = self.store.as_ref().map(|s| s.remove_chat(chat)) {
                    self.say(Kind::Warning, format!("!!! could not forget the redacted chat: {e}"));
                }
                if let Ok(mut h) = self.shared.history.lock() {
                    h.retain(|c| c.id != *chat);
                }
                return;
            }
            Event::RoomUpdated(info) => {
                if let Some(Err(e)) = self.store.as_ref().map(|s| s.put_room(info)) {
                    self.say(Kind::Warning, format!("!!! could not save the room's new key: {e}"));
                }
                let more = {
                    let mut list = self.shared.rooms.lock();
                    let before = list.get(&info.id).map_or(0, |e| e.info.epochs.len());
                    list.updated(info);
                    info.epochs.len() > before
                };
                if more {
                    let title = self.shared.rooms.lock().title(&info.id);
                    self.say(Kind::Info, format!("--- {title}: the room's new key reached you"));
                }
                return;
            }
            Event::Blocks(list) => return self.show_blocks(list),
            Event::Members { room, members } => return self.show_members(room, members),
            Event::Dm(d) => return self.show_dm(d),
            Event::DmState { id, to, state } => return self.show_dm_state(id, to, *state),
            Event::Typing { from, on } => return self.typing(*from, *on),
            Event::Warning(_) | Event::Invite { .. } | Event::Membership(_) | Event::Reachability(_) => {}
        }
        let when = match e {
            Event::Chat(d) => self.clock.when(d),
            _ => When::Now,
        };
        self.say_event(e, when);
        if let Event::Chat(d) = e {
            if d.origin == Origin::Local && matches!(d.chat.body, Body::Text(_)) && st.connected == 0 {
                st.queued += 1;
                self.say(Kind::Info, "    (no peer connected: queued, it goes out when a peer connects)".into());
            }
        }
    }

    fn dms(&self) -> std::sync::MutexGuard<'_, crate::dm::Dms> {
        self.shared.dms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A direct message: stored, then shown, then (received) acknowledged as read.
    fn show_dm(&self, d: &DmDelivery) {
        let peer = if d.outgoing { d.to } else { d.from };
        let name = self.dms().name(&peer);
        let line = DmLine {
            id: d.id,
            peer,
            name: name.clone(),
            outgoing: d.outgoing,
            text: d.text.clone(),
            at_ms: d.sent_at.as_millis(),
            state: None,
        };
        if let Some(Err(e)) = self.store.as_ref().map(|s| s.put_dms(std::slice::from_ref(&line))) {
            self.say(Kind::Warning, format!("!!! could not save the direct message: {e}"));
        }
        let who = self.style.who(&name, &peer);
        let text = crate::dm::line_text(&line, &who);
        self.dms().add(line);
        let kind = if d.outgoing { Kind::Own } else { Kind::Chat };
        let at = Style::find_who(&text, &name, &peer);
        (self.printer)(Out::Line(kind, text, at));
        if !d.outgoing {
            // Its message ends the sender's typing.
            self.shared.typing.lock().unwrap_or_else(|e| e.into_inner()).remove(&d.from);
            // On the screen now: read.
            self.handle.command(Command::DmRead { from: d.from, ids: vec![d.id] });
        }
    }

    /// Plain mode prints nothing for it (a line per notice would be noise); the full-screen
    /// view's status bar shows it while it is fresh.
    fn typing(&self, from: PeerId, on: bool) {
        let mut typing = self.shared.typing.lock().unwrap_or_else(|e| e.into_inner());
        if !on {
            typing.remove(&from);
            return;
        }
        typing.insert(from, std::time::Instant::now());
        if typing.len() > crate::dm::MAX_TYPING {
            typing.retain(|_, at| at.elapsed() < crate::dm::TYPING_SHOWN);
            while typing.len() > crate::dm::MAX_TYPING {
                typing.pop_first();
            }
        }
    }

    fn show_dm_state(&self, id: &DmId, to: &PeerId, state: DmState) {
        // A message never shown (a room's key handed over by the node, retried after a restart)
        // has no state to tell.
        let Some(line) = self.dms().set_state(to, id, state) else { return };
        if let Some(s) = &self.store {
            if let Err(e) = s.put_dms(&[line]) {
                self.say(Kind::Warning, format!("!!! could not save the direct message: {e}"));
            }
        }
        let Some(word) = crate::dm::state_word(state) else { return };
        let who = self.style.who(&self.dms().name(to), to);
        self.say(Kind::Network, self.style.note(Kind::Network, &format!("--- dm to {who} {word}")));
    }

    fn show_blocks(&self, list: &[PeerId]) {
        if let Some(Err(e)) = self.store.as_ref().map(|s| s.put_blocks(list)) {
            self.say(Kind::Warning, format!("!!! could not save the blocks: {e}"));
        }
        let text = if list.is_empty() {
            "--- nobody is blocked".to_owned()
        } else {
            let who: Vec<String> = list.iter().map(|p| self.style.who(&self.dms().name(p), p)).collect();
            format!("--- blocked (their chats and direct messages are not shown): {}", who.join(", "))
        };
        self.say(Kind::Info, text);
    }

    fn show_members(&self, room: &p2p_chat_core::RoomId, members: &[p2p_chat_core::MemberEntry]) {
        let title = self.shared.rooms.lock().title(room);
        if members.is_empty() {
            return self.say(Kind::Info, format!("{title} keeps no membership (a public room)"));
        }
        let mut out = format!("members of {title}:");
        for m in members {
            let name = m.name.clone().unwrap_or_else(|| self.dms().name(&m.key.peer_id()));
            let role = match (m.role, m.banned) {
                (Some(p2p_chat_core::Role::Owner), _) => "owner",
                (Some(p2p_chat_core::Role::Admin), _) => "admin",
                (Some(p2p_chat_core::Role::Member), _) => "member",
                (None, _) => "banned",
            };
            out += &format!(
                "
  {:<26} {role}",
                self.style.who(&name, &m.key.peer_id())
            );
        }
        self.say(Kind::Info, out);
    }

    /// Says so when a second key uses a name already seen this run.
    fn name_check(&self, name: &str, id: PeerId) {
        let mut names = self.shared.names.lock().unwrap_or_else(|e| e.into_inner());
        let new = names.learn(name, id);
        let ids = names.keys(name);
        if new && ids.len() > 1 {
            let all: Vec<String> = ids.iter().map(|i| self.style.who(name, i)).collect();
            self.say(
                Kind::Warning,
                self.style.note(
                    Kind::Warning,
                    &format!(
                        "!!! {} keys use the name {}: {} (the part after # tells them apart)",
                        ids.len(),
                        crate::ui::clean_name(name),
                        all.join(", ")
                    ),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_chat_core::{ChatId, Ed25519Keys};

    fn delivery(ms: u64, origin: Origin) -> Delivery {
        let k = Ed25519Keys::from_seed(3);
        let chat = Chat::new(&k, ChatId::new_v7(ms, &[1; 10]), "bob", Body::Text("hi".into()));
        Delivery { chat: Arc::new(chat), opened: None, hops: 1, origin }
    }

    #[test]
    fn chats_from_before_the_run_are_backlog_or_missed() {
        let clock = Clock { started_ms: 10_000, first_online_ms: Some(5_000) };
        assert_eq!(clock.when(&delivery(11_000, Origin::Live)), When::Now);
        assert_eq!(clock.when(&delivery(11_000, Origin::Repair)), When::Late);
        // Missed while offline, even if only a moment old and so delivered as live.
        assert_eq!(clock.when(&delivery(7_000, Origin::Live)), When::WhileAway);
        // A live chat signed a moment before the run began: a sender's clock behind ours.
        assert_eq!(clock.when(&delivery(9_000, Origin::Live)), When::Now);
        assert_eq!(clock.when(&delivery(9_000, Origin::Repair)), When::WhileAway);
        assert_eq!(clock.when(&delivery(6_000, Origin::Repair)), When::WhileAway);
        assert_eq!(clock.when(&delivery(4_000, Origin::Repair)), When::Earlier);
        let first_run = Clock { started_ms: 10_000, first_online_ms: None };
        assert_eq!(first_run.when(&delivery(9_000, Origin::Repair)), When::Earlier);
    }
}
