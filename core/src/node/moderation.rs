//! Moderation at the node: personal blocks, and a private room's membership log wired to chats,
//! commands, room keys and timers (docs/PROTOCOL.md 9.3).
//!
//! - **Blocks** are this node's alone: a blocked identity's chats and direct messages are not
//!   shown, its direct messages are dropped before they are opened (no receipt goes back, so it
//!   is not told), and nothing is sent about it. At most [`MAX_BLOCKS`].
//! - **Operations** (`rooms::log`) travel as chats of the room. One arriving is checked (its
//!   signature like any chat's; a `Join`'s invite against the room's secret and owner), taken
//!   into the log, shown (`Event::Membership`), and spread like a chat. A forged, misdirected or
//!   unauthorised operation changes nothing: the first two are refused and cost the sender, the
//!   last is kept (another member may hold the operations that make it valid) and ignored.
//! - **Keys.** An admin who removes or bans a member rekeys at once: a fresh random key, whose
//!   check goes in a `Rekey` operation and which goes to each remaining member in a direct
//!   message (`RoomKey`, sealed with the direct-message cryptography, held by mailboxes for a
//!   member away). A member's inviter hands it the current key when its `Join` arrives. A room
//!   whose removals differ from those its newest rekey saw (a partition) is rekeyed by its owner,
//!   or after [`STALE_ROUNDS`] rounds by any admin. A chat is sealed only with the current epoch's
//!   key; one sealed with a key this node does not hold yet is kept and shown when the key comes.

use super::*;
use crate::dm::Body as DmBody;
use crate::rooms::log::Effect;
use crate::rooms::{Invite, JoinProof, Op, Role, FIRST_EPOCH};

/// Most identities one node blocks.
pub const MAX_BLOCKS: usize = 1024;
/// Rounds (of `ROOM_ROUND`, 2 s) a stale room waits for its owner before an admin rekeys it.
const STALE_ROUNDS: u32 = 5;
/// Names remembered per room, for showing operations.
const MAX_NAMES: usize = 4096;

/// What a user may ask of a private room's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Kick(PeerId),
    Ban(PeerId),
    Unban(PeerId),
    Op(PeerId),
    Deop(PeerId),
    Redact(ChatId),
}

/// An operation of a room's log, as this node applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChange {
    pub room: RoomId,
    pub id: ChatId,
    pub by: PublicKey,
    pub by_name: String,
    pub op: Op,
    /// The name the operation's target was last seen with, if any.
    pub target_name: Option<String>,
    /// Whether it took effect (its author had the right, and it changed something).
    pub applied: bool,
    pub origin: Origin,
}

/// A member as `/members` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEntry {
    pub key: PublicKey,
    pub name: Option<String>,
    pub role: Option<Role>,
    pub banned: bool,
}

/// What to do with a room chat that checked out.
pub(super) enum RoomVerdict {
    /// Deliver, with its text if sealed.
    Deliver(Option<String>),
    /// Keep and spread, deliver when its epoch's key comes.
    Hold,
    /// Drop; `Some` names the penalty's reason.
    Refuse(Option<&'static str>),
}

impl Node {
    pub fn blocked(&self) -> Vec<PeerId> {
        self.blocked.iter().copied().collect()
    }

    pub(super) fn is_blocked(&self, peer: &PeerId) -> bool {
        !self.blocked.is_empty() && self.blocked.contains(peer)
    }

    /// The membership of a private room this node is in.
    pub fn members(&self, room: &RoomId) -> Vec<MemberEntry> {
        let Some(j) = self.rooms.find(room).and_then(|ix| self.rooms.get(ix)) else { return Vec::new() };
        let Some(log) = &j.log else { return Vec::new() };
        let s = log.state();
        let name = |k: &PublicKey| j.moderation.names.get(k).cloned();
        let mut out: Vec<MemberEntry> = s
            .members
            .iter()
            .map(|(k, r)| MemberEntry { key: *k, name: name(k), role: Some(*r), banned: false })
            .collect();
        out.extend(s.banned.iter().map(|k| MemberEntry { key: *k, name: name(k), role: None, banned: true }));
        out
    }

    pub(super) fn on_moderation_command(&mut self, now: Time, cmd: Command) {
        match cmd {
            Command::Block(peer) => {
                if self.blocked.len() >= MAX_BLOCKS && !self.blocked.contains(&peer) {
                    return self.emit(Event::Refused(format!("at most {MAX_BLOCKS} identities can be blocked")));
                }
                self.blocked.insert(peer);
                self.emit(Event::Blocks(self.blocked()));
            }
            Command::Unblock(peer) => {
                self.blocked.remove(&peer);
                self.emit(Event::Blocks(self.blocked()));
            }
            Command::Blocks => self.emit(Event::Blocks(self.blocked())),
            Command::Members(room) => {
                let members = self.members(&room);
                self.emit(Event::Members { room, members });
            }
            Command::Moderate { room, action } => self.moderate(now, room, action),
            _ => unreachable!("not a moderation command"),
        }
    }

    /// The key of `who` among those the room knows (members, banned, authors).
    fn key_of(&self, ix: RoomIx, who: &PeerId) -> Option<PublicKey> {
        let j = self.rooms.get(ix)?;
        let s = j.log.as_ref()?.state();
        let known = s.members.keys().chain(s.banned.iter()).chain(s.out.keys()).chain(j.moderation.names.keys());
        let found = known.copied().find(|k| k.peer_id() == *who);
        found.or_else(|| self.conns.values().filter_map(|c| c.peer_key()).find(|k| k.peer_id() == *who))
    }

    fn moderate(&mut self, now: Time, room: RoomId, action: Action) {
        let Some(ix) = self.rooms.find(&room) else {
            return self.emit(Event::Refused(format!("not in room {}", room.short())));
        };
        let j = self.rooms.get(ix).expect("found above");
        let label = format!("#{}", j.info.name);
        let Some(log) = &j.log else {
            return self.emit(Event::Refused(format!("{label} is public: nobody moderates it")));
        };
        let me = self.public_key();
        let s = log.state();
        let (owner, admin) = (*log.owner() == me, s.is_admin(&me));
        let target = |node: &Node, who: &PeerId| {
            node.key_of(ix, who).ok_or_else(|| format!("{} is not known in {label}", who.short()))
        };
        let op = match action {
            Action::Kick(_) | Action::Ban(_) | Action::Unban(_) if !admin => {
                Err("only the owner or an admin can remove, ban or unban members".to_owned())
            }
            Action::Op(_) | Action::Deop(_) if !owner => Err("only the owner can make or unmake admins".to_owned()),
            Action::Kick(who) => target(self, &who).and_then(|k| match s.role(&k) {
                None => Err(format!("{} is not a member of {label}", who.short())),
                Some(Role::Owner) => Err("the owner cannot be removed".into()),
                Some(_) => Ok(Op::Remove(k)),
            }),
            Action::Ban(who) => target(self, &who).and_then(|k| {
                if k == *log.owner() {
                    Err("the owner cannot be banned".into())
                } else if s.banned.contains(&k) {
                    Err(format!("{} is banned already", who.short()))
                } else {
                    Ok(Op::Ban(k))
                }
            }),
            Action::Unban(who) => target(self, &who).and_then(|k| {
                if s.banned.contains(&k) {
                    Ok(Op::Unban(k))
                } else {
                    Err(format!("{} is not banned", who.short()))
                }
            }),
            Action::Op(who) => target(self, &who).and_then(|k| match s.role(&k) {
                Some(Role::Member) => Ok(Op::Grant(k)),
                Some(_) => Err(format!("{} is an admin already", who.short())),
                None => Err(format!("{} is not a member of {label}", who.short())),
            }),
            Action::Deop(who) => target(self, &who).and_then(|k| match s.role(&k) {
                Some(Role::Admin) => Ok(Op::Revoke(k)),
                _ => Err(format!("{} is not an admin", who.short())),
            }),
            Action::Redact(chat) => {
                let author = j.room.dedup.get(&chat).map(|c| c.chat.author);
                match author {
                    None => Err("no such chat is held in this room".into()),
                    Some(a) if a != me && !admin => {
                        Err("only its author, the owner or an admin can redact a chat".into())
                    }
                    Some(a) => Ok(Op::Redact { chat, author: a }),
                }
            }
        };
        match op {
            Ok(op) => {
                let removal = matches!(op, Op::Remove(_) | Op::Ban(_));
                let id = ChatId::new_v7(now.as_millis(), &self.rng.bytes());
                self.issue(now, ix, id, op);
                if removal {
                    self.rekey(now, ix);
                }
            }
            Err(e) => self.emit(Event::Refused(e)),
        }
    }

    /// Signs, applies and spreads an operation of our own.
    pub(super) fn issue(&mut self, now: Time, ix: RoomIx, id: ChatId, op: Op) {
        let Some(j) = self.rooms.get_mut(ix) else { return };
        let chat = Arc::new(Chat::in_room(&*self.keys, id, j.info.id, self.username.as_str(), Body::Op(op)));
        j.room.dedup.insert(chat.clone(), 0);
        self.arm_expire(&chat.id);
        self.emit(Event::Chat(Delivery { chat: chat.clone(), opened: None, hops: 0, origin: Origin::Local }));
        self.apply_op(now, ix, &chat, Origin::Local);
        self.spread(now, ix, None, &[], &chat, self.config.ttl, 1);
    }

    /// A new key for room `ix`: kept, published as a `Rekey`, and handed to every member.
    fn rekey(&mut self, now: Time, ix: RoomIx) {
        let key: [u8; 32] = self.rng.bytes();
        let id = ChatId::new_v7(now.as_millis(), &self.rng.bytes());
        let Some(j) = self.rooms.get_mut(ix) else { return };
        let Some(log) = &j.log else { return };
        let seen = log.state().removals;
        j.moderation.stale_rounds = 0;
        keep_key(&mut j.info, id, key);
        let info = j.info.clone();
        self.emit(Event::RoomUpdated(info));
        self.issue(now, ix, id, Op::Rekey { check: RoomKeys::epoch_check(&key), seen });
    }

    /// What to do with a room chat that verified: an operation is checked, a sealed text opened
    /// with its epoch's key.
    pub(super) fn room_verdict(&mut self, ix: RoomIx, chat: &Chat) -> RoomVerdict {
        let Some(j) = self.rooms.get_mut(ix) else { return RoomVerdict::Deliver(None) };
        if let Body::Op(op) = &chat.body {
            let Some(log) = &j.log else { return RoomVerdict::Refuse(Some("sent an operation for a public room")) };
            if let Op::Join(proof) = op {
                let (name, secret) = (&j.info.name, &j.info.secret);
                if !Invite::proves(&*self.keys, name, secret, log.owner(), proof) {
                    return RoomVerdict::Refuse(Some("sent a join whose invite does not verify"));
                }
            }
            return RoomVerdict::Deliver(None);
        }
        if let Some(log) = &j.log {
            let s = log.state();
            let removed =
                s.out.get(&chat.author).is_some_and(|at| chat.id > *at) && !s.members.contains_key(&chat.author);
            // Written after its author was removed (it may not have known yet): not a member's.
            if removed || s.redacted.contains_key(&chat.id) {
                return RoomVerdict::Refuse(None);
            }
        }
        let Body::Sealed(sealed) = &chat.body else {
            return RoomVerdict::Refuse(Some("sent a room chat in the clear"));
        };
        let epoch = RoomKeys::sealed_epoch(sealed).unwrap_or(FIRST_EPOCH);
        match j.info.keys_for(epoch) {
            Some(keys) => match chat.open(&keys) {
                Some(text) => {
                    j.saw_author(chat.author);
                    remember_name(&mut j.moderation.names, chat.author, &chat.username);
                    RoomVerdict::Deliver(Some(text))
                }
                None => RoomVerdict::Refuse(Some("sent a room chat that does not open")),
            },
            // A later epoch whose key has not come (or never will, for a removed member).
            None if j.log.is_some() && epoch != FIRST_EPOCH => RoomVerdict::Hold,
            None => RoomVerdict::Refuse(Some("sent a room chat that does not open")),
        }
    }

    /// A chat held for its epoch's key: remembered, to be delivered when the key comes.
    pub(super) fn hold(&mut self, ix: RoomIx, id: ChatId) {
        let Some(j) = self.rooms.get_mut(ix) else { return };
        let w = &mut j.moderation.waiting;
        if w.len() >= crate::rooms::MAX_WAITING {
            w.remove(0);
        }
        w.push(id);
    }

    /// Takes an operation (verified, and held now) into its room's log, says what it did, and
    /// acts on it.
    pub(super) fn apply_op(&mut self, now: Time, ix: RoomIx, chat: &Arc<Chat>, origin: Origin) {
        let Body::Op(op) = &chat.body else { return };
        let Some(j) = self.rooms.get_mut(ix) else { return };
        let Some(log) = j.log.as_mut() else { return };
        let Ok(effect) = log.insert(chat.id, chat.author, op.clone()) else { return };
        j.moderation.ops.insert(chat.id, chat.clone());
        remember_name(&mut j.moderation.names, chat.author, &chat.username);
        let target = match op {
            Op::Remove(k) | Op::Ban(k) | Op::Unban(k) | Op::Grant(k) | Op::Revoke(k) => Some(*k),
            Op::Redact { author, .. } => Some(*author),
            Op::Join(_) | Op::Rekey { .. } => None,
        };
        let target_name = target.and_then(|k| j.moderation.names.get(&k).cloned());
        let room = j.info.id;
        let applied = effect == Effect::Applied;
        let mut redacted = None;
        let mut checked = None;
        if applied {
            match op {
                Op::Redact { chat: gone, .. } => {
                    j.room.dedup.remove(gone);
                    j.moderation.waiting.retain(|w| w != gone);
                    redacted = Some(*gone);
                }
                // A key that came before its rekey can be checked now.
                Op::Rekey { check, .. } => {
                    let at = j.moderation.unchecked.iter().position(|(e, _)| *e == chat.id);
                    checked = at
                        .map(|i| j.moderation.unchecked.remove(i))
                        .filter(|(_, key)| RoomKeys::epoch_check(key) == *check);
                }
                _ => {}
            }
        }
        let (by, by_name, op) = (chat.author, chat.username.clone(), op.clone());
        let change = MemberChange { room, id: chat.id, by, by_name, op, target_name, applied, origin };
        // Forgotten first: whoever reads the membership line finds the chat gone already.
        if let Some(gone) = redacted {
            self.emit(Event::Redacted { room, chat: gone });
        }
        self.emit(Event::Membership(Box::new(change)));
        if let Some((epoch, key)) = checked {
            self.take_key(now, ix, epoch, key);
        }
        self.hand_keys(now, ix);
    }

    /// A key handed to this node in a direct message.
    pub(super) fn on_room_key(&mut self, now: Time, room: RoomId, epoch: ChatId, key: [u8; 32]) {
        let Some(ix) = self.rooms.find(&room) else { return };
        let Some(j) = self.rooms.get_mut(ix) else { return };
        let Some(log) = &j.log else { return };
        if j.info.epochs.iter().any(|(e, _)| *e == epoch) {
            return;
        }
        match log.get(&epoch) {
            Some((_, Op::Rekey { check, .. })) if *check == RoomKeys::epoch_check(&key) => {
                self.take_key(now, ix, epoch, key)
            }
            Some(_) => {}
            // Its rekey has not come yet: checked when it does.
            None => {
                let u = &mut j.moderation.unchecked;
                if u.len() >= crate::rooms::MAX_UNCHECKED {
                    u.remove(0);
                }
                u.push((epoch, key));
            }
        }
    }

    /// Keeps a checked key, delivers the chats that waited for it, and passes it on where owed.
    fn take_key(&mut self, now: Time, ix: RoomIx, epoch: ChatId, key: [u8; 32]) {
        let Some(j) = self.rooms.get_mut(ix) else { return };
        keep_key(&mut j.info, epoch, key);
        let info = j.info.clone();
        self.emit(Event::RoomUpdated(info));
        let Some(j) = self.rooms.get_mut(ix) else { return };
        let waiting = std::mem::take(&mut j.moderation.waiting);
        let mut still = Vec::new();
        let mut ready = Vec::new();
        for id in waiting {
            let Some(stored) = j.room.dedup.get(&id) else { continue };
            let chat = stored.chat;
            let Body::Sealed(sealed) = &chat.body else { continue };
            let epoch = RoomKeys::sealed_epoch(sealed).unwrap_or(FIRST_EPOCH);
            match j.info.keys_for(epoch).and_then(|k| chat.open(&k)) {
                Some(text) => ready.push((chat, text, stored.hops)),
                None => still.push(id),
            }
        }
        j.moderation.waiting = still;
        for (chat, text, hops) in ready {
            if let Some(j) = self.rooms.get_mut(ix) {
                j.saw_author(chat.author);
            }
            if !self.is_blocked(&chat.author_id()) {
                let old = now.since(Time::from_millis(chat.timestamp_ms())) >= CAUGHT_UP_AFTER;
                let origin = if old { Origin::Repair } else { Origin::Live };
                self.emit(Event::Chat(Delivery { chat, opened: Some(text), hops, origin }));
            }
        }
        self.hand_keys(now, ix);
    }

    /// Hands the current key of room `ix` to the members that this node owes it: all of them if
    /// it made the key, and those it invited otherwise. Each once.
    fn hand_keys(&mut self, now: Time, ix: RoomIx) {
        let me = self.public_key();
        let Some(j) = self.rooms.get(ix) else { return };
        let Some(log) = &j.log else { return };
        let s = log.state();
        // The epoch in force saw other removals than this log holds: a removal may not have
        // reached it yet (the rekey came first), and a member it lists may be out. The key waits.
        if s.is_stale() {
            return;
        }
        let Some((epoch, _, _)) = s.epoch else { return };
        let Some(key) = j.info.epochs.iter().find(|(e, _)| *e == epoch).map(|(_, k)| *k) else { return };
        let mine = log.get(&epoch).is_some_and(|(a, _)| *a == me);
        let invited: BTreeSet<PublicKey> = log
            .iter()
            .filter_map(|(_, a, op, _)| match op {
                Op::Join(JoinProof { inviter, .. }) if *inviter == me => Some(*a),
                _ => None,
            })
            .collect();
        let owed: Vec<PublicKey> = s
            .members
            .keys()
            .filter(|k| **k != me && (mine || invited.contains(k)))
            .filter(|k| !j.moderation.keys_sent.contains(&(**k, epoch)))
            .copied()
            .collect();
        let room = j.info.id;
        for k in owed {
            if self.send_room_key(now, k.peer_id(), room, epoch, key) {
                if let Some(j) = self.rooms.get_mut(ix) {
                    let sent = &mut j.moderation.keys_sent;
                    if sent.len() >= crate::rooms::MAX_KEYS_SENT {
                        sent.pop_first();
                    }
                    sent.insert((k, epoch));
                }
            }
        }
    }

    /// Every room round: keys still owed (a member's bundle came), stale rooms rekeyed, and keys
    /// this node lacks asked of a member neighbour (`room_keys`).
    pub(super) fn moderation_round(&mut self, now: Time) {
        let me = self.public_key();
        for ix in self.rooms.ixs() {
            let Some(j) = self.rooms.get_mut(ix) else { continue };
            let Some(log) = &j.log else { continue };
            let s = log.state();
            let due = if s.is_stale() && s.is_admin(&me) {
                j.moderation.stale_rounds += 1;
                *log.owner() == me || j.moderation.stale_rounds >= STALE_ROUNDS
            } else {
                j.moderation.stale_rounds = 0;
                false
            };
            if due {
                self.rekey(now, ix);
            } else {
                self.hand_keys(now, ix);
            }
            self.want_keys(ix);
        }
    }

    /// Whether this node was removed from room `ix`, and by what: its chats would be refused.
    pub(super) fn removed_from(&self, ix: RoomIx) -> Option<String> {
        let j = self.rooms.get(ix)?;
        let s = j.log.as_ref()?.state();
        let me = self.public_key();
        if s.members.contains_key(&me) || !s.out.contains_key(&me) {
            return None;
        }
        let how = if s.banned.contains(&me) { "banned from" } else { "removed from" };
        Some(format!("you were {how} #{}", j.info.name))
    }

    /// The keys to seal a chat of room `ix` with: the current epoch's.
    pub(super) fn sealing_keys(&self, ix: RoomIx) -> Result<RoomKeys, String> {
        if let Some(why) = self.removed_from(ix) {
            return Err(format!("chat not sent: {why}"));
        }
        let j = self.rooms.get(ix).ok_or("not in that room")?;
        let epoch = j.log.as_ref().and_then(|l| l.state().epoch).map_or(FIRST_EPOCH, |(e, _, _)| e);
        j.info.keys_for(epoch).ok_or_else(|| {
            format!("chat not sent: #{} has a new key that has not reached you yet (try again shortly)", j.info.name)
        })
    }

    /// Joining a private room by invite: a `Join` for its log, unless the log shows that no
    /// invite from then lets this node back in.
    pub(super) fn join_op(&mut self, now: Time, ix: RoomIx, invite: &Invite) -> Result<(), String> {
        let me = self.public_key();
        let Some(j) = self.rooms.get(ix) else { return Ok(()) };
        let Some(log) = &j.log else { return Ok(()) };
        let s = log.state();
        if s.banned.contains(&me) {
            return Err(format!("cannot join: you are banned from #{}", j.info.name));
        }
        if s.out.get(&me).is_some_and(|o| invite.issued_ms <= o.timestamp_ms()) {
            return Err(format!("cannot join: you were removed from #{} after this invite was made", j.info.name));
        }
        if s.members.contains_key(&me) {
            return Ok(());
        }
        let id = ChatId::new_v7(now.as_millis(), &self.rng.bytes());
        self.issue(now, ix, id, Op::Join(invite.proof()));
        Ok(())
    }

    /// Operations from an earlier run (the database): taken into their logs whatever their age,
    /// without being shown again.
    pub(super) fn restore_op(&mut self, ix: RoomIx, chat: &Chat) {
        if !matches!(self.room_verdict(ix, chat), RoomVerdict::Deliver(_)) {
            return;
        }
        let Body::Op(op) = &chat.body else { return };
        let Some(j) = self.rooms.get_mut(ix) else { return };
        remember_name(&mut j.moderation.names, chat.author, &chat.username);
        if let Some(log) = j.log.as_mut() {
            if log.insert(chat.id, chat.author, op.clone()).is_ok() {
                j.moderation.ops.insert(chat.id, Arc::new(chat.clone()));
            }
        }
    }

    /// An operation older than the retention window (a member neighbour handing over the log's
    /// start): checked like any, taken into the log and shown, not held for sync.
    pub(super) fn on_old_op(
        &mut self,
        now: Time,
        from: Option<ConnId>,
        ix: RoomIx,
        chat: Arc<Chat>,
        verified: Option<bool>,
    ) {
        let known = self.rooms.get(ix).and_then(|j| j.log.as_ref()).is_none_or(|l| l.contains(&chat.id));
        if known {
            self.stats.duplicates += 1;
            return;
        }
        let why = if !chat.is_well_formed() || !verified.unwrap_or_else(|| chat.verify(&*self.keys)) {
            Some("sent a chat whose signature does not verify")
        } else {
            match self.room_verdict(ix, &chat) {
                RoomVerdict::Deliver(_) => None,
                RoomVerdict::Refuse(why) => why.or(Some("")),
                RoomVerdict::Hold => Some(""),
            }
        };
        if let Some(why) = why {
            self.stats.chats_refused += 1;
            if let (Some(conn), false) = (from, why.is_empty()) {
                self.penalize(now, conn, Penalty::BadChat, why);
            }
            return;
        }
        self.emit(Event::Chat(Delivery { chat: chat.clone(), opened: None, hops: 1, origin: Origin::Repair }));
        self.apply_op(now, ix, &chat, Origin::Repair);
    }

    /// A new member neighbour of room `ix` gets the log's operations that sync no longer offers
    /// (older than the retention window), once per connection, each charged to its credit like
    /// any answer: without them, a member that joined later would judge newer operations against
    /// a log missing its start (an admin made on the first day, a ban).
    pub(super) fn send_old_ops(&mut self, now: Time, conn: ConnId, ix: RoomIx) {
        let Some(j) = self.rooms.get(ix) else { return };
        if j.log.is_none() {
            return;
        }
        let lower = j.room.dedup.lower_bound(now);
        let old: Vec<Arc<Chat>> = j.moderation.ops.range(..lower).map(|(_, c)| c.clone()).collect();
        for chat in old {
            let msg = Message::Reply { hops: 1, chat };
            if self.afford(conn, wire::frame_size_hint(&msg)).is_err() {
                break;
            }
            self.stats.room_frames_out += 1;
            self.send(conn, &msg);
        }
    }
}

/// Keeps an epoch's key in the room's info, the oldest dropped past `MAX_EPOCHS`.
fn keep_key(info: &mut RoomInfo, epoch: ChatId, key: [u8; 32]) {
    if info.epochs.iter().any(|(e, _)| *e == epoch) {
        return;
    }
    if info.epochs.len() >= crate::rooms::MAX_EPOCHS {
        info.epochs.remove(0);
    }
    info.epochs.push((epoch, key));
    info.epochs.sort_by_key(|(e, _)| *e);
}

fn remember_name(names: &mut BTreeMap<PublicKey, String>, key: PublicKey, name: &str) {
    if names.len() < MAX_NAMES || names.contains_key(&key) {
        names.insert(key, name.to_owned());
    }
}

impl Node {
    /// Seals `key` for `to` and queues it like a receipt (retried until handed over, held by
    /// mailboxes). False if it cannot be sealed yet (no bundle: one is asked for).
    fn send_room_key(&mut self, now: Time, to: PeerId, room: RoomId, epoch: ChatId, key: [u8; 32]) -> bool {
        if !self.can_seal_for(&to) {
            self.want_bundle(to);
            return false;
        }
        self.send_silent(now, to, DmBody::RoomKey { room, epoch, key });
        true
    }
}
