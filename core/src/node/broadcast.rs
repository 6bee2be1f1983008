//! Chats: written here (signed and spread), or arriving (checked once, delivered once, and passed
//! on by the gossip rule: pushed to eager neighbours, announced in batches to lazy ones).

use super::*;

impl Node {
    pub(super) fn on_command(&mut self, now: Time, cmd: Command) {
        match cmd {
            Command::Chat(text) => {
                if self.leaving {
                    return;
                }
                if text.len() > MAX_TEXT_BYTES {
                    return self.emit(Event::Warning(format!(
                        "chat not sent: {} bytes, the limit is {MAX_TEXT_BYTES}",
                        text.len()
                    )));
                }
                self.originate(now, Body::Text(text));
            }
            Command::Connect(addr) => {
                self.book.add(addr, Source::Manual, now);
                let busy = self.conns.values().any(|c| c.listen_addr() == Some(addr) || c.addr() == addr);
                if !busy && !self.leaving {
                    self.dial(now, addr);
                }
            }
            Command::AddKnown(addrs) => {
                for a in addrs {
                    self.book.add(a, Source::Restored, now);
                }
            }
            Command::Say { .. }
            | Command::JoinPublic(_)
            | Command::JoinInvite(_)
            | Command::CreateRoom { .. }
            | Command::Rejoin(_)
            | Command::Part(_)
            | Command::Invite { .. } => {
                if !self.leaving {
                    self.on_room_command(now, cmd);
                }
            }
            Command::Block(_)
            | Command::Unblock(_)
            | Command::Blocks
            | Command::Members(_)
            | Command::Moderate { .. } => self.on_moderation_command(now, cmd),
            Command::Dm { .. } | Command::DmRead { .. } | Command::Typing { .. } | Command::AddBundle(_) => {
                if !self.leaving {
                    self.on_dm_command(now, cmd);
                }
            }
            Command::Leave => {
                if self.leaving {
                    return;
                }
                if self.joined {
                    self.originate(now, Body::Leave);
                }
                self.leaving = true;
                // Announcements still waiting for their batch go out with the last bytes.
                self.flush_ihave();
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                for c in conns {
                    self.close(now, c, CloseReason::Leaving, false);
                }
                self.stop_mapping(now);
            }
        }
    }

    /// Signs, delivers and spreads a chat of our own.
    pub(super) fn originate(&mut self, now: Time, body: Body) {
        let id = ChatId::new_v7(now.as_millis(), &self.rng.bytes());
        let leave = body == Body::Leave;
        let chat = Arc::new(Chat::new(&*self.keys, id, self.username.as_str(), body));
        self.main.dedup.insert(chat.clone(), 0);
        self.arm_expire(&chat.id);
        self.stats.chats_sent += 1;
        self.emit(Event::Chat(Delivery { chat: chat.clone(), opened: None, hops: 0, origin: Origin::Local }));
        if leave {
            // We close right after; nobody could fetch it from us later, so tell everyone now.
            for conn in self.up_conns() {
                self.send_chat(conn, &chat, self.config.ttl, 1);
            }
        } else {
            self.spread(now, RoomIx::DEFAULT, None, &[], &chat, self.config.ttl, 1);
        }
    }

    /// Seals, signs, delivers and spreads a chat of our own in room `ix`.
    pub(super) fn originate_in(&mut self, now: Time, ix: RoomIx, text: &str) {
        if text.len() > MAX_TEXT_BYTES {
            let msg = format!("chat not sent: {} bytes, the limit is {MAX_TEXT_BYTES}", text.len());
            return self.emit(Event::Refused(msg));
        }
        let keys = match self.sealing_keys(ix) {
            Ok(k) => k,
            Err(e) => return self.emit(Event::Refused(e)),
        };
        let id = ChatId::new_v7(now.as_millis(), &self.rng.bytes());
        let nonce = self.rng.bytes();
        let Some(j) = self.rooms.get_mut(ix) else { return };
        let chat = Arc::new(Chat::sealed(&*self.keys, id, &keys, self.username.as_str(), text, nonce));
        j.room.dedup.insert(chat.clone(), 0);
        self.arm_expire(&chat.id);
        self.stats.chats_sent += 1;
        let opened = Some(text.to_owned());
        self.emit(Event::Chat(Delivery { chat: chat.clone(), opened, hops: 0, origin: Origin::Local }));
        self.spread(now, ix, None, &[], &chat, self.config.ttl, 1);
    }

    /// A chat from a neighbour: `ttl` is `Some` for a pushed `Chat`, `None` for a `Reply`.
    pub(super) fn on_chat(
        &mut self,
        now: Time,
        from: Option<ConnId>,
        chat: Arc<Chat>,
        ttl: Option<u8>,
        hops: u8,
        verified: Option<bool>,
    ) {
        let member = |ix: &RoomIx| {
            *ix == RoomIx::DEFAULT || from.is_none_or(|f| self.conns.get(&f).is_some_and(|c| c.in_room(*ix)))
        };
        let Some(ix) = self.room_ix(&chat.room).filter(member) else {
            // A room this node is not in, or from a neighbour that never proved it is in it.
            self.stats.foreign_room_frames += 1;
            self.stats.foreign_room_bytes += wire::frame_size_hint(&Message::Reply { hops, chat }) as u64;
            return;
        };
        if ix != RoomIx::DEFAULT {
            self.stats.room_frames_in += 1;
            self.stats.room_chat_frames_in += u64::from(from.is_some());
        }
        let Some(room) = room_mut!(self, ix) else { return };
        let slot = match room.dedup.check_slot(&chat.id, now) {
            Ok(slot) => slot,
            Err(Verdict::Duplicate) => {
                self.stats.duplicates += 1;
                if let Some(conn) = from {
                    self.known_by(ix, conn, &chat.id);
                }
                // A pushed duplicate means the eager link it came over is redundant.
                if let (Some(conn), Some(_)) = (from, ttl) {
                    if room_mut!(self, ix).is_some_and(|r| r.gossip.on_duplicate(conn)) {
                        self.stats.prunes_sent += 1;
                        self.send_in(conn, ix, Message::Prune);
                    }
                }
                return;
            }
            // The start of a room's log, older than its chats are kept: the log keeps it.
            Err(Verdict::TooOld) if ix != RoomIx::DEFAULT && matches!(chat.body, Body::Op(_)) => {
                return self.on_old_op(now, from, ix, chat, verified);
            }
            // Too old or too new (`New` is never the error). Not necessarily malice (clock skew, a
            // slow catch-up): refuse without penalty.
            Err(_) => {
                self.stats.chats_refused += 1;
                return;
            }
        };
        if !chat.is_well_formed() || !verified.unwrap_or_else(|| chat.verify(&*self.keys)) {
            self.stats.chats_refused += 1;
            if let Some(conn) = from {
                self.penalize(now, conn, Penalty::BadChat, "sent a chat whose signature does not verify");
            }
            return;
        }
        // A room's chat must open with its epoch's key (a member that sealed junk is caught
        // here), and an operation must be one of this room's.
        let (opened, held) = match self.room_verdict(ix, &chat) {
            moderation::RoomVerdict::Deliver(text) => (text, false),
            moderation::RoomVerdict::Hold => (None, true),
            moderation::RoomVerdict::Refuse(why) => {
                self.stats.chats_refused += 1;
                if let (Some(conn), Some(why)) = (from, why) {
                    self.penalize(now, conn, Penalty::BadChat, why);
                }
                return;
            }
        };
        let chat = match &self.interner {
            Some(i) => i.intern(chat),
            None => chat,
        };
        let Some(room) = room_mut!(self, ix) else { return };
        // Nothing between the check and here touches `dedup`, so the slot still holds.
        room.dedup.insert_at(slot, chat.clone(), hops);
        // Whoever announced it holds it: the forwarding rule skips them.
        let (requested, holders) = room.gossip.take_received(&chat.id);
        if let (Some(conn), Some(_)) = (from, ttl) {
            room.gossip.on_first(conn);
        }
        self.arm_expire(&chat.id);
        self.stats.chats_received += 1;
        if let Some(c) = from.and_then(|f| self.conns.get_mut(&f)) {
            c.score.reward();
        }
        // Pushed chats and grafted ones are live and spread on; anything else came by
        // anti-entropy: history that the neighbours get by their own syncs.
        let live_ttl = match (ttl, requested) {
            (Some(t), _) => Some(t),
            (None, Requested::Graft) => Some(self.config.ttl),
            (None, _) => None,
        };
        if live_ttl.is_none() {
            self.stats.chats_repaired += 1;
        }
        // "Caught up" is about age, not path: a chat written a moment ago that happened to come by
        // a sync round is still news to the user.
        let old = now.since(Time::from_millis(chat.timestamp_ms())) >= CAUGHT_UP_AFTER;
        let origin = if live_ttl.is_none() && old { Origin::Repair } else { Origin::Live };
        if held {
            self.hold(ix, chat.id);
        } else if !self.is_blocked(&chat.author_id()) || matches!(chat.body, Body::Op(_)) {
            self.emit(Event::Chat(Delivery { chat: chat.clone(), opened, hops, origin }));
        }
        if matches!(chat.body, Body::Op(_)) {
            self.apply_op(now, ix, &chat, origin);
        }
        if let Some(ttl) = live_ttl {
            self.spread(now, ix, from, &holders, &chat, ttl, hops.saturating_add(1));
        } else if now.since(Time::from_millis(chat.timestamp_ms())) < RECENT {
            // A recent chat that reached us only by sync (a healed partition, say): its id goes to
            // lazy neighbours, and whoever lacks it grafts and gets it pushed down the tree,
            // instead of waiting for sync rounds to carry it node by node.
            self.spread(now, ix, from, &holders, &chat, 0, hops.saturating_add(1));
        }
    }

    /// Applies the forwarding rule of `gossip` to a chat accepted just now.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spread(
        &mut self,
        now: Time,
        ix: RoomIx,
        from: Option<ConnId>,
        holders: &[ConnId],
        chat: &Arc<Chat>,
        ttl: u8,
        next_hops: u8,
    ) {
        let Some(room) = room_mut!(self, ix) else { return };
        let batched = |c: ConnId| room.ihave.iter().any(|(b, _)| *b == c);
        let targets = room.gossip.targets(&mut self.rng, from, ttl, holders, batched);
        if !targets.eager().is_empty() {
            // Encoded into each neighbour's queue: a chat frame is a few copies of its fields,
            // cheaper for the two or so eager neighbours than a buffer of its own to copy from.
            let msg = Message::Chat { ttl: ttl.saturating_sub(1), hops: next_hops, chat: chat.clone() };
            let mut frame_len = wire::frame_size_hint(&msg);
            for &conn in targets.eager() {
                let buf = tx_buf(&mut self.tx, conn, frame_len);
                let before = buf.len();
                // No limit: a chat is within any sane one by construction (`Chat::is_well_formed`).
                wire::encode_into(&msg, buf, usize::MAX).expect("encoding a message into memory cannot fail");
                frame_len = buf.len() - before;
                self.stats.frames_out += 1;
                self.stats.bytes_out += frame_len as u64;
                if from.is_some() {
                    self.stats.chats_relayed += 1;
                }
                if ix != RoomIx::DEFAULT {
                    self.stats.room_frames_out += 1;
                }
            }
        }
        let Some(room) = room_mut!(self, ix) else { return };
        if room.ihave.is_empty() && !targets.lazy().is_empty() {
            // Room for a couple of chats' announcements: most batches hold no more.
            room.ihave.reserve_exact(IHAVE_FIRST_ROOM);
        }
        for &conn in targets.lazy() {
            room.ihave.push((conn, chat.id));
            self.timers.set_if_unset(Timer::IHave, now + self.config.ihave_delay);
        }
    }

    pub(super) fn send_chat(&mut self, conn: ConnId, chat: &Arc<Chat>, ttl: u8, hops: u8) {
        self.send(conn, &Message::Chat { ttl, hops, chat: chat.clone() });
    }

    /// `conn` has shown it holds `id` (sent or announced it): announcing it back would tell it
    /// nothing. Two lazy neighbours that get a chat at about the same time would otherwise each
    /// announce it to the other.
    pub(super) fn known_by(&mut self, ix: RoomIx, conn: ConnId, id: &ChatId) {
        let Some(room) = room_mut!(self, ix) else { return };
        if !room.ihave.iter().any(|(c, _)| *c == conn) {
            return;
        }
        room.ihave.retain(|(c, i)| !(*c == conn && i == id));
        // The batch timer stops when the last announcement goes this way (not when a closed
        // connection took it: that timer fires on an empty batch, as it always has).
        if room.ihave.is_empty() {
            room.ihave = Vec::new();
            if self.rooms.iter().all(|(_, j)| j.room.ihave.is_empty()) && self.main.ihave.is_empty() {
                self.timers.clear(Timer::IHave);
            }
        }
    }

    /// Sends every room's waiting announcements.
    pub(super) fn flush_ihave(&mut self) {
        self.timers.clear(Timer::IHave);
        for ix in std::iter::once(RoomIx::DEFAULT).chain(self.rooms.ixs()) {
            let Some(room) = room_mut!(self, ix) else { continue };
            let mut batch = std::mem::take(&mut room.ihave);
            // By neighbour, each one's ids in the order they were queued.
            batch.sort_by_key(|(c, _)| *c);
            for group in batch.chunk_by(|a, b| a.0 == b.0) {
                let conn = group[0].0;
                for frame in group.chunks(MAX_IDS_PER_FRAME) {
                    self.stats.ihave_ids_sent += frame.len() as u64;
                    if ix == RoomIx::DEFAULT {
                        self.send_ihave(conn, frame);
                    } else {
                        let ids = frame.iter().map(|(_, id)| *id).collect();
                        self.send_in(conn, ix, Message::IHave { ids });
                    }
                }
            }
        }
    }
}
