//! Rooms at the node: joining and leaving them, telling neighbours which rooms this node is in
//! and learning theirs, finding members of a room, and the room commands. How a room's chats
//! spread is the default room's rule, per room (`broadcast`, `repair`, `inbound` take the room).

use super::*;
use crate::rooms::{Access, Invite, RoomInfo, RoomSecret, RoomSummary, MAX_INVITE_ADDRS, MAX_ROOMS};
use crate::wire::RoomMessage;

/// Member neighbours a room wants: below this, the node dials members it knows of and, for a
/// public room, asks for more. Three keep a room's tree connected through one loss.
pub(super) const ROOM_TARGET: usize = 3;

/// How far a `FindRoom` walks: the asker's neighbour, and five more beyond it. A node that knows
/// no member of a room sends one walk to each neighbour: at 10,000 nodes, a room of 5 members is
/// known (advertised to neighbours) by about 80 nodes, and a round of walks visits about 100.
const FIND_TTL: u8 = 6;
/// Members of public rooms remembered (from neighbours' subscriptions and from answers passed
/// back), at most this many, and this many per room, for this long. A bootstrap node, which nearly
/// every newcomer meets first, so learns a few members of most public rooms.
const MAX_ROOM_HINTS: usize = 256;
const HINTS_PER_ROOM: usize = 4;
const ROOM_HINT_TTL: Duration = Duration::from_secs(300);
/// How long a passed-on `FindRoom` waits for its answer.
const WALK_TIMEOUT: Duration = Duration::from_secs(10);
/// Most `FindRoom`s passed on and waiting at once.
const MAX_WALKS: usize = 64;
/// Most member addresses in one `RoomPeers`.
const MAX_ROOM_PEERS: usize = 8;
/// How often a peer may subscribe or unsubscribe: joining every room at once (a restart) is
/// allowed, then one change a second. Each costs a tag check per room this node is in.
const ROOM_CHANGES: RateLimit = RateLimit::new(1.0, 2.0 * MAX_ROOMS as f64);
/// How often a room short of members looks for more.
const ROOM_ROUND: Duration = Duration::from_secs(2);
/// Rounds between looks beyond the member neighbours of a room that has enough (10 s).
const EXPLORE_ROUNDS: u32 = 5;
/// Rounds between dials of an invite's addresses by a member short of member neighbours (10 s).
const SEED_ROUNDS: u32 = 5;
/// A node with more member neighbours in a room than this may give one up for a newcomer (see
/// `make_room`): the room's tree keeps two spare paths through it.
pub(super) const ROOM_CROWDED: usize = 2 * ROOM_TARGET;
/// How long a member neighbour is safe from `make_room`: time to learn, through this node, of the
/// room's other members (a round of `FindRoom` and the dials it leads to).
pub(super) const ROOM_GRACE: Duration = Duration::from_secs(20);

impl Node {
    /// The rooms this node is in besides the default one.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        let me = self.public_key();
        self.rooms.iter().map(|(ix, j)| j.summary(&me, self.room_neighbours(ix))).collect()
    }

    /// What this node holds of a room it is in besides the default one: its secret, owner, and
    /// the keys of the later epochs it was handed (`RoomInfo::keys_for` opens with them). Read
    /// only: for an application or a simulator that checks what this node could decrypt.
    pub fn room_info(&self, room: &RoomId) -> Option<&RoomInfo> {
        self.rooms.find(room).and_then(|ix| self.rooms.get(ix)).map(|j| &j.info)
    }

    /// The membership a private room's log makes, as this node holds it (`None`: not in the
    /// room, or the room is public). Read only: two members that took in the same operations
    /// hold equal ones.
    pub fn membership(&self, room: &RoomId) -> Option<&crate::rooms::Membership> {
        self.rooms.find(room).and_then(|ix| self.rooms.get(ix)).and_then(|j| j.log.as_ref()).map(|l| l.state())
    }

    /// Neighbours that proved they are in room `ix` (not the default room, which all are in).
    pub(super) fn room_neighbours(&self, ix: RoomIx) -> usize {
        self.conns.values().filter(|c| c.rooms & ix.bit() != 0).count()
    }

    /// The room with this id, if this node is in it (the default room always).
    pub(super) fn room_ix(&self, id: &RoomId) -> Option<RoomIx> {
        if id.is_default() {
            Some(RoomIx::DEFAULT)
        } else {
            self.rooms.find(id)
        }
    }

    /// Addresses of every connection, and where their peers listen.
    fn busy_addrs(&self) -> Vec<SocketAddr> {
        self.conns.values().flat_map(|c| [Some(c.addr()), c.listen_addr()]).flatten().collect()
    }

    /// Whether `addr` was found to be this node's own.
    fn is_own(&self, addr: &SocketAddr) -> bool {
        self.book.get(addr).is_some_and(|e| e.is_self)
    }

    pub(super) fn room_ref(&self, ix: RoomIx) -> Option<&Room> {
        match ix {
            RoomIx::DEFAULT => Some(&self.main),
            ix => self.rooms.get(ix).map(|j| &j.room),
        }
    }

    /// Sends `msg` of room `ix` to `conn`, wrapped in `Message::Room` unless it is the default
    /// room's. Only to a neighbour in that room: nothing of a room goes to a non-member.
    pub(super) fn send_in(&mut self, conn: ConnId, ix: RoomIx, msg: Message) {
        if ix == RoomIx::DEFAULT {
            return self.send(conn, &msg);
        }
        if let Some(msg) = RoomMessage::from_message(msg) {
            self.send_room(conn, ix, msg);
        }
    }

    /// Sends `msg` of room `ix` (not the default room) to `conn`, a neighbour in that room.
    pub(super) fn send_room(&mut self, conn: ConnId, ix: RoomIx, msg: RoomMessage) {
        let (Some(j), Some(c)) = (self.rooms.get(ix), self.conns.get(&conn)) else { return };
        if !c.in_room(ix) {
            debug_assert!(false, "room traffic for a non-member");
            return;
        }
        let room = j.info.id;
        self.stats.room_frames_out += 1;
        self.send(conn, &Message::Room { room, msg });
    }

    pub(super) fn on_room_command(&mut self, now: Time, cmd: Command) {
        match cmd {
            Command::Say { room, text } => match self.rooms.find(&room) {
                Some(ix) => self.originate_in(now, ix, &text),
                None => self.emit(Event::Refused(format!("not in room {}", room.short()))),
            },
            Command::JoinPublic(name) => {
                let name = crate::rooms::normalize(&name);
                if name.is_empty() {
                    return self.emit(Event::Refused("a room needs a name".into()));
                }
                let secret = RoomKeys::public_secret(&name);
                let id = RoomKeys::new(&secret).id;
                let info = RoomInfo { id, name, access: Access::Public, secret, owner: None, epochs: Vec::new() };
                self.join_room(now, info, &[]);
            }
            Command::JoinInvite(code) => match Invite::from_code(&code, &*self.keys, now) {
                Ok(i) => {
                    let id = RoomKeys::with_owner(&i.secret, Some(&i.owner)).id;
                    let (name, secret, owner) = (i.name.clone(), i.secret.clone(), Some(i.owner));
                    let info = RoomInfo { id, name, access: Access::Private, secret, owner, epochs: Vec::new() };
                    let addrs: Vec<SocketAddr> = i.addrs.iter().filter(|a| !self.is_own(a)).copied().collect();
                    // Already in it, its log may say that this invite does not let us back in.
                    if let Some(ix) = self.rooms.find(&id) {
                        if let Err(e) = self.join_op(now, ix, &i) {
                            return self.emit(Event::Refused(e));
                        }
                        self.join_room(now, info, &addrs);
                    } else if self.join_room(now, info, &addrs) {
                        if let Some(ix) = self.rooms.find(&id) {
                            if let Err(e) = self.join_op(now, ix, &i) {
                                self.emit(Event::Refused(e));
                            }
                        }
                    }
                }
                Err(e) => self.emit(Event::Refused(format!("cannot join: {e}"))),
            },
            Command::CreateRoom { name, addrs, valid_for } => {
                let name = crate::rooms::normalize(&name);
                if name.is_empty() {
                    return self.emit(Event::Refused("a room needs a name".into()));
                }
                let secret = RoomSecret(self.rng.bytes());
                let owner = Some(self.public_key());
                let id = RoomKeys::with_owner(&secret, owner.as_ref()).id;
                let info = RoomInfo { id, name, access: Access::Private, secret, owner, epochs: Vec::new() };
                if self.join_room(now, info, &[]) {
                    self.invite(now, id, addrs, valid_for);
                }
            }
            Command::Rejoin(info) => {
                if info.keys().id != info.id {
                    return self.emit(Event::Refused(format!("room {}: its secret does not match its id", info.name)));
                }
                self.join_room(now, info, &[]);
            }
            Command::Part(room) => match self.rooms.find(&room) {
                Some(ix) => self.part_room(ix),
                None => self.emit(Event::Refused(format!("not in room {}", room.short()))),
            },
            Command::Invite { room, addrs, valid_for } => self.invite(now, room, addrs, valid_for),
            _ => unreachable!("not a room command"),
        }
    }

    fn invite(&mut self, now: Time, room: RoomId, mut addrs: Vec<SocketAddr>, valid_for: Duration) {
        let Some(ix) = self.rooms.find(&room) else {
            return self.emit(Event::Refused(format!("not in room {}", room.short())));
        };
        let j = self.rooms.get(ix).expect("found above");
        if j.info.access == Access::Public {
            let msg = format!("#{} is public: anyone can /join #{}", j.info.name, j.info.name);
            return self.emit(Event::Refused(msg));
        }
        let Some(owner) = j.info.owner else {
            return self.emit(Event::Refused(format!("#{} has no owner: it cannot be joined", j.info.name)));
        };
        if let Some(why) = self.removed_from(ix) {
            return self.emit(Event::Refused(format!("no invite: {why}")));
        }
        // Where the invited can reach the room: here, and at member neighbours.
        for c in self.conns.values().filter(|c| c.in_room(ix)) {
            addrs.extend(c.listen_addr());
        }
        addrs.dedup();
        addrs.truncate(MAX_INVITE_ADDRS);
        let invite = Invite::new(&*self.keys, &j.info.name, j.info.secret.clone(), owner, addrs, now, now + valid_for);
        self.emit(Event::Invite { room, code: invite.to_code() });
    }

    /// Takes `info` into the rooms, tells every neighbour, and finds the members among them.
    /// Whether the node is in the room now.
    fn join_room(&mut self, now: Time, info: RoomInfo, addrs: &[SocketAddr]) -> bool {
        if let Some(ix) = self.rooms.find(&info.id) {
            // Already in it: an invite's addresses are still worth dialing.
            if let Some(j) = self.rooms.get_mut(ix) {
                addrs.iter().for_each(|a| {
                    j.add_candidate(*a);
                    j.add_seed(*a);
                });
            }
            self.timers.set_min(Timer::Rooms, now);
            return true;
        }
        let mut joined = Joined::new(info.clone(), new_room(&self.config));
        addrs.iter().for_each(|a| {
            joined.add_candidate(*a);
            joined.add_seed(*a);
        });
        let Some(ix) = self.rooms.insert(joined) else {
            self.emit(Event::Refused(format!("already in {MAX_ROOMS} rooms: /part one first")));
            return false;
        };
        self.emit(Event::RoomJoined(info));
        for conn in self.up_conns() {
            self.subscribe(conn, ix);
            // A neighbour that subscribed before this node joined is a member already.
            let known = self.conns.get(&conn).and_then(|c| c.peer_rooms.as_ref()).map(|p| p.tags.clone());
            for (tag, _) in known.unwrap_or_default() {
                self.match_tag(now, conn, &tag);
            }
        }
        self.timers.set_min(Timer::Rooms, now);
        true
    }

    /// Leaves room `ix`: every neighbour is told (those in it stop sending it), its state dropped.
    fn part_room(&mut self, ix: RoomIx) {
        let Some(j) = self.rooms.get(ix) else { return };
        let keys = j.keys.clone();
        let id = j.info.id;
        for conn in self.up_conns() {
            let Some(c) = self.conns.get_mut(&conn) else { continue };
            let tag = keys.tag(&c.binding, c.direction() == Direction::Outbound);
            c.rooms &= !ix.bit();
            self.send(conn, &Message::Unsubscribe { tag });
        }
        self.rooms.remove(ix);
        self.emit(Event::RoomParted(id));
    }

    /// Tells `conn` this node is in room `ix`.
    fn subscribe(&mut self, conn: ConnId, ix: RoomIx) {
        let (Some(j), Some(c)) = (self.rooms.get(ix), self.conns.get(&conn)) else { return };
        let tag = j.keys.tag(&c.binding, c.direction() == Direction::Outbound);
        let public = (j.info.access == Access::Public).then_some(j.info.id);
        self.send(conn, &Message::Subscribe { tag, public });
    }

    /// A new neighbour is told of every room this node is in.
    pub(super) fn send_subscriptions(&mut self, conn: ConnId) {
        for ix in self.rooms.ixs() {
            self.subscribe(conn, ix);
        }
    }

    pub(super) fn on_subscribe(&mut self, now: Time, conn: ConnId, tag: [u8; 32], public: Option<RoomId>) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let p = c.peer_rooms.get_or_insert_with(|| {
            Box::new(PeerRooms { tags: Vec::new(), changes: Tokens::full(ROOM_CHANGES.burst, now) })
        });
        if !p.changes.take(now, ROOM_CHANGES) {
            return self.penalize(now, conn, Penalty::Flood, "subscribes and unsubscribes too often");
        }
        if !p.tags.iter().any(|(t, _)| *t == tag) {
            if p.tags.len() >= MAX_ROOMS {
                return self.penalize(now, conn, Penalty::ProtocolViolation, "subscribed to too many rooms");
            }
            p.tags.push((tag, public));
        }
        let matched = self.match_tag(now, conn, &tag);
        // It names a public room this node is in, with a tag that does not prove it.
        if let (Some(id), None) = (public, matched) {
            if self.rooms.find(&id).is_some() {
                return self.penalize(now, conn, Penalty::ProtocolViolation, "claims a room it is not in");
            }
            if let Some(a) = self.conns.get(&conn).and_then(|c| c.listen_addr()) {
                self.hint(now, id, a);
            }
        }
    }

    /// Remembers `addr` as a member of the public room `room`.
    fn hint(&mut self, now: Time, room: RoomId, addr: SocketAddr) {
        self.room_hints.retain(|(r, a, until)| *until > now && !(*r == room && *a == addr));
        if self.room_hints.iter().filter(|(r, _, _)| *r == room).count() >= HINTS_PER_ROOM {
            if let Some(i) = self.room_hints.iter().position(|(r, _, _)| *r == room) {
                self.room_hints.remove(i);
            }
        }
        if self.room_hints.len() >= MAX_ROOM_HINTS {
            self.room_hints.remove(0);
        }
        self.room_hints.push((room, addr, now + ROOM_HINT_TTL));
    }

    /// Whether `tag`, from `conn`, proves membership of a room this node is in; if so, `conn`
    /// becomes a neighbour of that room's tree.
    fn match_tag(&mut self, now: Time, conn: ConnId, tag: &[u8; 32]) -> Option<RoomIx> {
        let c = self.conns.get(&conn)?;
        // The peer dialed us: its tag is the initiator's.
        let from_initiator = c.direction() == Direction::Inbound;
        let ix = self.rooms.iter().find(|(_, j)| j.keys.tag(&c.binding, from_initiator) == *tag).map(|(ix, _)| ix)?;
        if c.in_room(ix) {
            return Some(ix);
        }
        let outbound = c.direction() == Direction::Outbound;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.rooms |= ix.bit();
        }
        let extra = self.room_neighbours(ix) > self.config.target_peers;
        let room = room_mut!(self, ix)?;
        if !room.gossip.on_peer_up(conn, extra) && self.config.repair {
            self.stats.prunes_sent += 1;
            self.send_in(conn, ix, Message::Prune);
        }
        if self.config.repair && outbound {
            self.start_sync(now, conn, ix);
        }
        self.send_old_ops(now, conn, ix);
        Some(ix)
    }

    pub(super) fn on_unsubscribe(&mut self, now: Time, conn: ConnId, tag: [u8; 32]) {
        let Some(p) = self.conns.get_mut(&conn).and_then(|c| c.peer_rooms.as_mut()) else { return };
        if !p.changes.take(now, ROOM_CHANGES) {
            return self.penalize(now, conn, Penalty::Flood, "subscribes and unsubscribes too often");
        }
        p.tags.retain(|(t, _)| *t != tag);
        let Some(c) = self.conns.get(&conn) else { return };
        let from_initiator = c.direction() == Direction::Inbound;
        let found = self.rooms.iter().find(|(ix, j)| c.in_room(*ix) && j.keys.tag(&c.binding, from_initiator) == tag);
        if let Some((ix, _)) = found {
            self.leave_rooms_of(now, conn, ix.bit());
            if let Some(c) = self.conns.get_mut(&conn) {
                c.rooms &= !ix.bit();
            }
        }
    }

    /// `conn` is no longer a neighbour in the rooms of `bits` (it left them, or went).
    pub(super) fn leave_rooms_of(&mut self, now: Time, conn: ConnId, bits: u64) {
        let _ = now;
        for ix in self.rooms.ixs() {
            if bits & ix.bit() == 0 {
                continue;
            }
            let Some(j) = self.rooms.get_mut(ix) else { continue };
            j.room.ihave.retain(|(c, _)| *c != conn);
            if let Some(g) = j.room.gossip.on_peer_down(conn, &mut self.rng) {
                self.stats.grafts_sent += 1;
                self.send_in(g, ix, Message::Graft { ids: Vec::new() });
            }
        }
        self.walks.retain(|w| w.from != conn);
        self.timers.set_min(Timer::Rooms, now);
    }

    /// Room traffic from `conn`: acted on as the default room's is, in that room, if `conn` proved
    /// it is in it and this node is. Anything else is counted as a leak and dropped (a peer may
    /// send a frame or two after this node left a room, before it hears so).
    pub(super) fn on_room_message(&mut self, now: Time, conn: ConnId, room: RoomId, msg: RoomMessage, bytes: usize) {
        let ix = self.rooms.find(&room).filter(|ix| self.conns.get(&conn).is_some_and(|c| c.in_room(*ix)));
        let Some(ix) = ix else {
            self.stats.foreign_room_frames += 1;
            self.stats.foreign_room_bytes += bytes as u64;
            return;
        };
        self.stats.room_frames_in += 1;
        match msg {
            RoomMessage::KeysWanted { epochs } => self.on_keys_wanted(now, conn, ix, epochs),
            RoomMessage::Keys { keys } => self.on_keys(now, conn, ix, keys),
            msg => {
                if let Some(msg) = msg.into_message() {
                    self.on_gossip(now, conn, ix, msg);
                }
            }
        }
    }

    /// A neighbour looks for members of a public room. Answering costs the asker's credit, and
    /// passing the walk on sends one frame for the one received: no amplification, and the
    /// control rate bounds both.
    pub(super) fn on_find_room(&mut self, now: Time, conn: ConnId, room: RoomId, ttl: u8) {
        let ix = self.rooms.find(&room);
        let asker = self.conns.get(&conn).and_then(|c| c.listen_addr());
        let mut addrs: Vec<SocketAddr> = self
            .conns
            .iter()
            .filter(|(id, c)| **id != conn && (ix.is_some_and(|ix| c.in_room(ix)) || c.advertises(&room)))
            .filter_map(|(_, c)| c.listen_addr())
            .collect();
        self.room_hints.retain(|(_, _, until)| *until > now);
        for (_, a, _) in self.room_hints.iter().filter(|(r, a, _)| *r == room && Some(*a) != asker) {
            if !addrs.contains(a) {
                addrs.push(*a);
            }
        }
        addrs.truncate(MAX_ROOM_PEERS);
        if !addrs.is_empty() || ix.is_some() {
            // A member with no member neighbour answers with none: the asker is its neighbour, and
            // it has told the asker it is in the room.
            return self.answer(now, conn, &Message::RoomPeers { room, addrs });
        }
        self.walks.retain(|w| w.until > now);
        if ttl == 0 || self.walks.iter().any(|w| w.room == room && w.from == conn) {
            return;
        }
        let others: Vec<ConnId> = self.up_conns().into_iter().filter(|c| *c != conn).collect();
        if others.is_empty() {
            return;
        }
        let next = others[self.rng.below(others.len())];
        if self.walks.len() >= MAX_WALKS {
            self.walks.remove(0);
        }
        self.walks.push(Walk { room, from: conn, until: now + WALK_TIMEOUT });
        self.send(next, &Message::FindRoom { room, ttl: ttl.min(FIND_TTL) - 1 });
    }

    /// Members of a room: kept to dial if this node is in it and asked, passed back if it asked
    /// for a neighbour, ignored otherwise.
    pub(super) fn on_room_peers(&mut self, now: Time, conn: ConnId, room: RoomId, addrs: Vec<SocketAddr>) {
        if addrs.len() > MAX_ROOM_PEERS {
            return self.penalize(now, conn, Penalty::ProtocolViolation, "oversized RoomPeers");
        }
        self.walks.retain(|w| w.until > now);
        if let Some(ix) = self.rooms.find(&room) {
            // The answerer may be a member itself: its own listen address counts too. Addresses
            // already connected, or this node's own, are no news: only news makes the room look
            // again at once (an answer naming only neighbours would otherwise ask again, for ever).
            let from = self.conns.get(&conn).and_then(|c| c.listen_addr());
            let busy = self.busy_addrs();
            let news: Vec<SocketAddr> =
                addrs.iter().chain(from.iter()).filter(|a| !busy.contains(a) && !self.is_own(a)).copied().collect();
            if let (Some(j), false) = (self.rooms.get_mut(ix), news.is_empty()) {
                news.iter().for_each(|a| j.add_candidate(*a));
                self.timers.set_min(Timer::Rooms, now);
            }
            return;
        }
        if let Some(i) = self.walks.iter().position(|w| w.room == room) {
            let back = self.walks.remove(i).from;
            // The neighbour it came from is worth naming: it answered, so it is a member or
            // knows them.
            let mut addrs = addrs;
            addrs.extend(self.conns.get(&conn).and_then(|c| c.listen_addr()));
            addrs.truncate(MAX_ROOM_PEERS);
            // Remembered, so that the next walk for this room stops here.
            for a in &addrs {
                self.hint(now, room, *a);
            }
            self.send(back, &Message::RoomPeers { room, addrs });
        }
    }

    /// Whether every member that private room `ix`'s log lists, but the owner (always listed), is
    /// this node or a member neighbour: likely a group of members that found only one another,
    /// since the others' joins would be in the log.
    fn alone_in(&self, ix: RoomIx) -> bool {
        let Some(log) = self.rooms.get(ix).and_then(|j| j.log.as_ref()) else { return false };
        let me = self.public_key();
        let near: BTreeSet<PublicKey> =
            self.conns.values().filter(|c| c.in_room(ix)).filter_map(|c| c.peer_key()).collect();
        log.state().members.keys().all(|k| *k == me || k == log.owner() || near.contains(k))
    }

    /// Rooms with too few member neighbours dial members they know of. A public room with none
    /// sends a walk to every neighbour; one with some asks one of them for its members. Again every
    /// `ROOM_ROUND` while the node is in any room, searches backing off when they find nothing new.
    pub(super) fn rooms_round(&mut self, now: Time) {
        let busy = self.busy_addrs();
        for ix in self.rooms.ixs() {
            let neighbours = self.room_neighbours(ix);
            let alone = self.alone_in(ix);
            let Some(j) = self.rooms.get_mut(ix) else { continue };
            j.candidates.retain(|a| !busy.contains(a));
            let content = neighbours >= ROOM_TARGET;
            if content {
                // Members content with their neighbours in two groups that formed apart (a
                // partition, a crowd) would never meet: now and then, each looks beyond them, as
                // the default room's exploration does.
                j.idle_rounds = 0;
                j.explore_in = j.explore_in.saturating_sub(1);
                if j.explore_in > 0 || (neighbours >= 2 * ROOM_TARGET && !alone) {
                    continue;
                }
                j.explore_in = EXPLORE_ROUNDS;
            }
            if neighbours > j.last_neighbours || !j.candidates.is_empty() {
                j.idle_rounds = 0;
            }
            // Short of members (or alone with the few it has), with nobody left to try: the
            // invite's addresses again. Its inviter may have been full and makes room for a member
            // now (see `make_room`); a private room's members that reached only one another have
            // no other way to the rest, since no walk looks for a private room.
            let seed_round = if content { alone } else { j.idle_rounds % SEED_ROUNDS == SEED_ROUNDS - 1 };
            if seed_round && j.candidates.is_empty() {
                j.candidates = j.seeds.iter().filter(|a| !busy.contains(a)).copied().collect();
            }
            j.last_neighbours = neighbours;
            // Searched every round for a minute, then every 8th: a room short of members may be
            // split in groups that each found only themselves (a partition, a crowd), and a room
            // with fewer members than the target stays short for ever.
            let idle = j.idle_rounds;
            let search = content || idle < 30 || idle.is_multiple_of(8);
            let (room, public) = (j.info.id, j.info.access == Access::Public);
            let Some(j) = self.rooms.get(ix) else { continue };
            let next = j.candidates.iter().rev().find(|a| !self.is_own(a)).copied();
            if let Some(addr) = next {
                if self.up_peers >= self.config.max_peers {
                    // Full: a room short of members is worth more than a spare peer.
                    self.give_up_spare_peer(now);
                }
                if self.up_peers < self.config.max_peers && self.dial_bucket.take(now, self.config.dial_rate) {
                    if let Some(j) = self.rooms.get_mut(ix) {
                        j.candidates.retain(|a| *a != addr);
                    }
                    self.dial(now, addr);
                }
            } else {
                let up = self.up_conns();
                // Rounds with neighbours and nothing found count towards backing off (each of
                // them, or the count would stop at the first round without a search).
                if let Some(j) = self.rooms.get_mut(ix).filter(|_| !up.is_empty()) {
                    j.idle_rounds = j.idle_rounds.saturating_add(1);
                }
                if !search {
                    continue;
                }
                if neighbours > 0 {
                    // A member neighbour names its own; one walk through the rest finds members
                    // beyond them (two groups of members that found each other only within
                    // themselves would otherwise stay apart).
                    let (members, others): (Vec<ConnId>, Vec<ConnId>) =
                        up.into_iter().partition(|c| self.conns[c].in_room(ix));
                    if !members.is_empty() {
                        let conn = members[self.rng.below(members.len())];
                        self.send(conn, &Message::FindRoom { room, ttl: 0 });
                    }
                    // Walks only for public rooms: a private room's id is not shown to non-members.
                    // Short, through every other neighbour; content, through one.
                    if public && !content {
                        for conn in others {
                            self.send(conn, &Message::FindRoom { room, ttl: FIND_TTL });
                        }
                    } else if public && !others.is_empty() {
                        let conn = others[self.rng.below(others.len())];
                        self.send(conn, &Message::FindRoom { room, ttl: FIND_TTL });
                    }
                } else if public {
                    for conn in up {
                        self.send(conn, &Message::FindRoom { room, ttl: FIND_TTL });
                    }
                }
            }
        }
        self.moderation_round(now);
        if !self.rooms.is_empty() {
            self.timers.set(Timer::Rooms, now + ROOM_ROUND);
        }
    }
}
