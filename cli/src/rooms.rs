//! What the program knows of the rooms the node is in: their names and keys (to label and open
//! their chats), which one is current (where typed lines go), and how many chats each has that
//! the user has not looked at.
//!
//! The display thread keeps the list from the node's events (`RoomJoined`, `RoomParted`); the
//! command handler reads it, switches the current room, and waits here for the answer to a
//! `/join` so that the lines typed after it already go to the new room. Member and neighbour
//! counts are the node's (`NodeHandle::rooms`), asked for when `/rooms` is typed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use p2p_chat_core::rooms::{normalize, RoomKeys};
use p2p_chat_core::{Access, Body, Chat, Delivery, Origin, RoomId, RoomInfo};

/// Longest room name the commands accept, in bytes (after `#` is taken off).
pub const MAX_NAME_BYTES: usize = 64;
/// How long an invite code works for joining (the room's secret in it does not expire).
pub const INVITE_VALID: Duration = Duration::from_secs(24 * 3600);
/// How long a `/join` waits for the node's answer before the next typed line is taken.
pub const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// What the default room is called on screen.
pub const DEFAULT_NAME: &str = "everyone";

/// A room the node is in, besides the default one.
pub struct Entry {
    /// Its keys too: every epoch's this node was handed (`Event::RoomUpdated`).
    pub info: RoomInfo,
    pub unread: usize,
}

/// The rooms, in the order they were joined; the default room is not among them.
#[derive(Default)]
pub struct RoomList {
    rooms: Vec<Entry>,
    current: RoomId,
    default_unread: usize,
    /// Counts answers to room commands (a room joined or left, a command refused): a `/join` or
    /// `/part` waits for it to move.
    answers: u64,
    /// The room of the last answer if it was a join, `None` otherwise.
    pub last_joined: Option<RoomId>,
    /// A direct-message conversation is open instead of `current`: its chats count as unread.
    in_conversation: bool,
}

/// How a name or number typed after `/room` or `/part` was understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    Default,
    Room(RoomId),
}

impl RoomList {
    /// Takes a room in (again): `true` if it was not in the list.
    pub fn joined(&mut self, info: &RoomInfo) -> bool {
        self.answers += 1;
        self.last_joined = Some(info.id);
        if self.get(&info.id).is_some() {
            return false;
        }
        self.rooms.push(Entry { info: info.clone(), unread: 0 });
        true
    }

    /// A room's keys changed (a new epoch's came).
    pub fn updated(&mut self, info: &RoomInfo) {
        if let Some(e) = self.rooms.iter_mut().find(|e| e.info.id == info.id) {
            e.info = info.clone();
        }
    }

    /// A command about rooms was refused.
    pub fn refused(&mut self) {
        self.answers += 1;
        self.last_joined = None;
    }

    /// Forgets a room (an answer, as a `/part` waits for it); the default room becomes current if
    /// it was: `true` then.
    pub fn parted(&mut self, id: &RoomId) -> bool {
        self.answers += 1;
        self.last_joined = None;
        let Some(at) = self.rooms.iter().position(|e| e.info.id == *id) else { return false };
        self.rooms.remove(at);
        let was_current = self.current == *id;
        if was_current {
            self.switch(RoomId::DEFAULT);
        }
        was_current
    }

    pub fn get(&self, id: &RoomId) -> Option<&Entry> {
        self.rooms.iter().find(|e| e.info.id == *id)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.rooms
    }

    /// `#name` of a room in the list, or `None` for the default room and rooms not in it.
    pub fn label(&self, id: &RoomId) -> Option<String> {
        self.get(id).map(|e| format!("#{}", crate::ui::clean_name(&e.info.name)))
    }

    /// `#name`, or `everyone` for the default room: the room as the status bar and notes name it.
    pub fn title(&self, id: &RoomId) -> String {
        self.label(id).unwrap_or_else(|| {
            if id.is_default() {
                DEFAULT_NAME.into()
            } else {
                format!("room {}", id.short())
            }
        })
    }

    pub fn current(&self) -> RoomId {
        self.current
    }

    /// Whether a direct-message conversation, not `current`, is where typed lines go.
    pub fn in_conversation(&self) -> bool {
        self.in_conversation
    }

    /// A direct-message conversation is opened: the current room's chats count as unread again.
    pub fn leave_for_conversation(&mut self) {
        self.in_conversation = true;
    }

    /// Makes a room current and its chats read.
    pub fn switch(&mut self, to: RoomId) {
        self.current = to;
        self.in_conversation = false;
        match self.rooms.iter_mut().find(|e| e.info.id == to) {
            Some(e) => e.unread = 0,
            None => self.default_unread = 0,
        }
    }

    /// Every room, the default one first, then the others in the order they were joined.
    pub fn ids(&self) -> Vec<RoomId> {
        std::iter::once(RoomId::DEFAULT).chain(self.rooms.iter().map(|e| e.info.id)).collect()
    }

    pub fn unread(&self, id: &RoomId) -> usize {
        self.get(id).map_or(if id.is_default() { self.default_unread } else { 0 }, |e| e.unread)
    }

    /// Counts a delivered chat as unread if it is someone's text in a room that is not current.
    pub fn delivered(&mut self, d: &Delivery) {
        let room = d.chat.room;
        if (room == self.current && !self.in_conversation)
            || d.origin == Origin::Local
            || !matches!(d.chat.body, Body::Text(_) | Body::Sealed(_))
        {
            return;
        }
        if room.is_default() {
            self.default_unread += 1;
        } else if let Some(e) = self.rooms.iter_mut().find(|e| e.info.id == room) {
            e.unread += 1;
        }
    }

    /// The text of a stored chat of a room in the list (its sealed text opened with the key of
    /// the epoch it names, if this node holds it).
    pub fn open(&self, c: &Chat) -> Option<String> {
        let Body::Sealed(sealed) = &c.body else { return None };
        let epoch = RoomKeys::sealed_epoch(sealed)?;
        self.get(&c.room).and_then(|e| c.open(&e.info.keys_for(epoch)?))
    }

    /// A room chosen by what follows `/room` or `/part`: nothing, `-` or `everyone` for the
    /// default room, a number from `/rooms`, or a name (with or without `#`).
    pub fn pick(&self, what: &str) -> Result<Pick, String> {
        let what = what.trim();
        if what.is_empty() || what == "-" || what == DEFAULT_NAME || what == "0" {
            return Ok(Pick::Default);
        }
        if let Ok(n) = what.parse::<usize>() {
            return match self.rooms.get(n - 1) {
                Some(e) => Ok(Pick::Room(e.info.id)),
                None => Err(format!("no room number {n}: /rooms lists them")),
            };
        }
        let name = normalize(what);
        let found: Vec<&Entry> = self.rooms.iter().filter(|e| e.info.name == name).collect();
        match found[..] {
            [e] => Ok(Pick::Room(e.info.id)),
            [] => Err(format!("you are not in #{}: /rooms lists your rooms", crate::ui::clean_name(&name))),
            _ => Err(format!(
                "{} rooms are called #{}: give its number from /rooms instead",
                found.len(),
                crate::ui::clean_name(&name)
            )),
        }
    }
}

/// The list, shared by the display thread and the command handler.
#[derive(Default)]
pub struct Rooms {
    list: Mutex<RoomList>,
    answered: Condvar,
}

impl Rooms {
    pub fn lock(&self) -> MutexGuard<'_, RoomList> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes a `/join` waiting for its answer.
    pub fn notify(&self) {
        self.answered.notify_all();
    }

    /// The number of answers so far, to wait for the next one with `await_answer`.
    pub fn answers(&self) -> u64 {
        self.lock().answers
    }

    /// Waits (at most `limit`) for an answer after the `seen`-th, and hands over the list.
    pub fn await_answer(&self, seen: u64, limit: Duration) -> MutexGuard<'_, RoomList> {
        let end = Instant::now() + limit;
        let mut list = self.lock();
        while list.answers == seen {
            let Some(left) = end.checked_duration_since(Instant::now()) else { break };
            list = self.answered.wait_timeout(list, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        list
    }

    /// Waits (at most `limit`) until every room of `ids` is in the list.
    pub fn await_rooms(&self, ids: &[RoomId], limit: Duration) {
        let end = Instant::now() + limit;
        let mut list = self.lock();
        while !ids.iter().all(|id| list.get(id).is_some()) {
            let Some(left) = end.checked_duration_since(Instant::now()) else { break };
            list = self.answered.wait_timeout(list, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// The id of the public room of this name.
pub fn public_id(name: &str) -> RoomId {
    RoomKeys::new(&RoomKeys::public_secret(name)).id
}

/// "public" or "private".
pub fn access(a: Access) -> &'static str {
    match a {
        Access::Public => "public",
        Access::Private => "private",
    }
}

/// Checks a room name as typed: `Ok` with its normalised form.
pub fn check_name(typed: &str) -> Result<String, String> {
    let name = normalize(typed);
    if name.is_empty() {
        return Err("a room needs a name, as in #rust".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("a room name is at most {MAX_NAME_BYTES} bytes"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace() || c == ',') {
        return Err("a room name has no spaces, commas or control characters".into());
    }
    Ok(name)
}

/// Where an invite says this node can be reached, given where it listens (`local`): that
/// address; bound to every interface (0.0.0.0, the default), 127.0.0.1 with its port, and the
/// address this machine uses toward other networks, if it has one. The node adds its member
/// neighbours' addresses.
pub fn invite_addrs(local: Option<SocketAddr>) -> Vec<SocketAddr> {
    let Some(local) = local else { return Vec::new() };
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let loopback: IpAddr = if local.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() };
    let mut addrs = vec![SocketAddr::new(loopback, local.port())];
    addrs.extend(outward_ip(local.is_ipv4()).map(|ip| SocketAddr::new(ip, local.port())));
    addrs
}

/// The source address the system would use toward the wider network: found by "connecting" a
/// UDP socket, which sends nothing.
fn outward_ip(v4: bool) -> Option<IpAddr> {
    let (bind, probe) = if v4 { ("0.0.0.0:0", "192.0.2.1:9") } else { ("[::]:0", "[2001:db8::1]:9") };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(probe).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_chat_core::rooms::RoomSecret;

    fn info(name: &str, private: bool) -> RoomInfo {
        let secret = if private { RoomSecret([name.len() as u8; 32]) } else { RoomKeys::public_secret(name) };
        let access = if private { Access::Private } else { Access::Public };
        let owner = private.then_some(p2p_chat_core::PublicKey([1; 32]));
        let id = RoomKeys::with_owner(&secret, owner.as_ref()).id;
        RoomInfo { id, name: name.into(), access, secret, owner, epochs: Vec::new() }
    }

    #[test]
    fn rooms_are_picked_by_name_number_or_dash_and_a_shared_name_asks_for_the_number() {
        let mut l = RoomList::default();
        let (dev, team, team2) = (info("dev", false), info("team", true), info("team", false));
        for r in [&dev, &team, &team2] {
            assert!(l.joined(r));
        }
        assert!(!l.joined(&dev), "once");
        assert_eq!(l.pick("#DEV"), Ok(Pick::Room(dev.id)));
        assert_eq!(l.pick("2"), Ok(Pick::Room(team.id)));
        assert_eq!(l.pick("-"), Ok(Pick::Default));
        assert!(l.pick("#team").unwrap_err().contains("2 rooms are called #team"));
        assert!(l.pick("#nope").unwrap_err().contains("not in #nope"));
        assert!(l.pick("9").is_err());
    }

    #[test]
    fn unread_counts_rooms_not_current_and_switching_reads_them() {
        let mut l = RoomList::default();
        let dev = info("dev", false);
        l.joined(&dev);
        let k = p2p_chat_core::Ed25519Keys::from_seed(1);
        let keys = dev.keys();
        let chat = Chat::sealed(&k, p2p_chat_core::ChatId::new_v7(1, &[1; 10]), &keys, "bob", "hi", [3; 24]);
        let d = Delivery { chat: chat.clone().into(), opened: Some("hi".into()), hops: 1, origin: Origin::Live };
        l.delivered(&d);
        l.delivered(&d);
        assert_eq!(l.unread(&dev.id), 2);
        assert_eq!(l.open(&chat).as_deref(), Some("hi"));
        assert_eq!(l.ids(), [RoomId::DEFAULT, dev.id]);
        l.switch(dev.id);
        assert_eq!(l.unread(&dev.id), 0);
        l.delivered(&d);
        assert_eq!(l.unread(&dev.id), 0, "the current room's chats are read as they come");
        l.leave_for_conversation();
        l.delivered(&d);
        assert_eq!(l.unread(&dev.id), 1, "with a conversation open, the room's chats are unread");
        l.switch(dev.id);
        assert!(l.parted(&dev.id), "it was current");
        assert_eq!(l.current(), RoomId::DEFAULT);
        assert_eq!(l.open(&chat), None, "no key once parted");
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name(" #Rust"), Ok("rust".into()));
        assert!(check_name("#").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }
}
