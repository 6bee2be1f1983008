//! Answering peers: anti-entropy rounds, chats asked for by id, and the limits every answer is
//! charged against (see [`crate::serve`]): the asking peer's credit, what was sent to it before, and
//! what already waits to be written to it.

use super::*;

impl Node {
    pub(super) fn start_sync(&mut self, now: Time, conn: ConnId, ix: RoomIx) {
        let Some(room) = self.room_ref(ix) else { return };
        let ranges = sync::initiate(&room.dedup, room.dedup.lower_bound(now));
        self.stats.sync_frames_sent += 1;
        self.send_in(conn, ix, Message::Sync { ranges });
    }

    /// Answers a reconciliation round, bounded before the work: each range is charged for the
    /// ids answering it walks (counted first, by two searches) and is answered only if `conn`'s
    /// credit covers it. At most `ServeLimits::round_bytes` of chats are pushed; the rest of each
    /// listed range goes back as a fingerprint, and the peer's answer asks for the next portion.
    pub(super) fn on_sync(&mut self, now: Time, conn: ConnId, ix: RoomIx, ranges: &[sync::SyncRange]) {
        let mut answered = 0;
        for r in ranges {
            let Some(room) = self.room_ref(ix) else { return };
            let listed = match &r.summary {
                Summary::Ids(v) => v.len(),
                Summary::Fingerprint { .. } => 0,
            };
            let walk = if r.lower < r.upper { 3 * room.dedup.count_in(r.lower, r.upper) } else { 0 };
            if let Err(why) = self.afford(conn, (walk + listed) * ID_WALK_COST) {
                self.refuse(now, conn, why);
                break;
            }
            answered += 1;
        }
        if answered == 0 || !self.conns.contains_key(&conn) {
            return;
        }
        let Some(room) = self.room_ref(ix) else { return };
        let mut reply = sync::respond(&room.dedup, &ranges[..answered]);
        let sent = self.send_chats(now, conn, ix, &reply.push, self.config.serve.round_bytes);
        let mut back = std::mem::take(&mut reply.ranges);
        match sent.refused {
            Some(why) => self.refuse(now, conn, why),
            None if sent.done < reply.push.len() => {
                let Some(room) = self.room_ref(ix) else { return };
                back.extend(sync::continue_from(&room.dedup, &reply, sent.done));
            }
            None => {}
        }
        back.truncate(MAX_RANGES_PER_FRAME);
        let Some(room) = room_mut!(self, ix) else { return };
        let want: Vec<ChatId> = reply.want.into_iter().filter(|id| room.dedup.check(id, now) == Verdict::New).collect();
        for id in &want {
            room.gossip.on_asked(*id, conn, now);
        }
        if !want.is_empty() {
            self.stats.iwant_ids_sent += want.len() as u64;
            self.send_in(conn, ix, Message::IWant { ids: want });
        }
        if !back.is_empty() {
            let msg = Message::Sync { ranges: back };
            match self.afford(conn, wire::frame_size_hint(&msg)) {
                Ok(()) => {
                    self.stats.sync_frames_sent += 1;
                    self.send_in(conn, ix, msg);
                }
                Err(why) => self.refuse(now, conn, why),
            }
        }
    }

    /// Answers an `IWant` or a `Graft` with the chats of `ids` still held, as far as `conn`'s
    /// credit and queue allow (see [`crate::serve`]). Chats sent to it before are not sent again;
    /// asking for many of them costs score, as does asking beyond the credit.
    pub(super) fn answer_wants(&mut self, now: Time, conn: ConnId, ix: RoomIx, ids: &[ChatId]) {
        let sent = self.send_chats(now, conn, ix, ids, usize::MAX);
        if sent.repeats > 0 {
            let flood =
                self.conns.get_mut(&conn).and_then(|c| c.served.as_mut()).is_some_and(|s| !s.repeat(sent.repeats, now));
            if flood {
                self.penalize(now, conn, Penalty::Greedy, "asked again for chats already sent to it");
            }
        }
        if let Some(why) = sent.refused {
            self.refuse(now, conn, why);
        }
    }

    /// Sends `conn` the chats of `ids` it was not sent before, in order, as `Reply` frames, until
    /// `round_bytes` of them, its credit or its queue runs out. Ids not held are passed over.
    /// Only chats of room `ix` are looked up: a neighbour gets nothing of a room it is not in.
    pub(super) fn send_chats(
        &mut self,
        now: Time,
        conn: ConnId,
        ix: RoomIx,
        ids: &[ChatId],
        round_bytes: usize,
    ) -> SentChats {
        let mut out = SentChats { done: 0, repeats: 0, refused: None };
        let Some(room) = self.room_ref(ix) else { return out };
        let oldest = room.dedup.lower_bound(now);
        let cap = self.config.max_chats;
        let mut round = 0usize;
        for id in ids {
            let Some(c) = self.conns.get(&conn) else { break };
            if c.served.as_ref().is_some_and(|s| s.was_sent(id)) {
                out.repeats += 1;
                self.stats.repeats_ignored += 1;
                out.done += 1;
                continue;
            }
            let Some(stored) = self.room_ref(ix).and_then(|r| r.dedup.get(id)) else {
                out.done += 1;
                continue;
            };
            let msg = Message::Reply { hops: stored.hops.saturating_add(1), chat: stored.chat };
            let cost = wire::frame_size_hint(&msg);
            if round > 0 && round + cost > round_bytes {
                break;
            }
            if let Err(why) = self.afford(conn, cost) {
                out.refused = Some(why);
                break;
            }
            round += cost;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.served.get_or_insert_with(|| Box::new(Served::new(now))).remember(*id, oldest, cap);
            }
            if ix != RoomIx::DEFAULT {
                self.stats.room_frames_out += 1;
            }
            self.send(conn, &msg);
            out.done += 1;
        }
        out
    }

    /// Sends an answer (a pong, addresses) if `conn`'s credit and queue allow it.
    pub(super) fn answer(&mut self, now: Time, conn: ConnId, msg: &Message) {
        match self.afford(conn, wire::frame_size_hint(msg)) {
            Ok(()) => self.send(conn, msg),
            Err(why) => self.refuse(now, conn, why),
        }
    }

    /// Charges `cost` to `conn`'s credit, unless too much waits for it already (checked first:
    /// a slow link is not charged) or its credit does not cover it.
    pub(super) fn afford(&mut self, conn: ConnId, cost: usize) -> Result<(), Refusal> {
        let queued = self.tx.get(conn).map_or(0, Vec::len);
        let Some(c) = self.conns.get_mut(&conn) else { return Err(Refusal::Backlogged) };
        if queued + c.unsent as usize >= self.config.serve.answer_watermark {
            return Err(Refusal::Backlogged);
        }
        if !c.credit.spend(cost) {
            return Err(Refusal::OverBudget);
        }
        self.stats.answer_bytes += cost as u64;
        Ok(())
    }

    pub(super) fn refuse(&mut self, now: Time, conn: ConnId, why: Refusal) {
        match why {
            Refusal::Backlogged => self.stats.answers_deferred += 1,
            Refusal::OverBudget => {
                self.stats.answers_refused += 1;
                self.penalize(now, conn, Penalty::Greedy, "asked for more than its credit covers");
            }
        }
    }

    /// The runtime reports what it has not written to `conn` yet.
    pub(super) fn on_backlog(&mut self, now: Time, conn: ConnId, bytes: usize) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.unsent = u32::try_from(bytes).unwrap_or(u32::MAX);
        if bytes > self.config.serve.max_backlog {
            let msg = format!("peer {} ({}) too slow: {bytes} bytes unsent", conn_name(c), c.addr());
            self.emit(Event::Warning(msg));
            self.close(now, conn, CloseReason::TooSlow, false);
        }
    }

    /// Whether the runtime should read from `conn` now. While more than
    /// [`ServeLimits::read_pause`] bytes wait to be written to it, no: what it sends would only ask
    /// for more. Call again after reporting a smaller [`Input::Backlog`].
    pub fn wants_read(&self, conn: ConnId) -> bool {
        let queued = self.tx.get(conn).map_or(0, Vec::len);
        self.conns.get(&conn).is_none_or(|c| queued + (c.unsent as usize) < self.config.serve.read_pause)
    }
}

/// What `Node::send_chats` did with a list of ids.
pub(super) struct SentChats {
    /// How many of the ids were dealt with (sent, not held, or sent before), from the first.
    done: usize,
    /// Of which sent to the same peer before.
    repeats: usize,
    /// Why it stopped before the end, if not for the round's bound.
    refused: Option<Refusal>,
}
