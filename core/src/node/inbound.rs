//! The inbound path of an established connection: records are opened, frames decoded (chats of
//! one read verified in one batch), each message checked against the peer's rate and the protocol's
//! limits, and acted on. A peer that breaks a rule loses score (see `membership`), and is banned
//! when it runs out.

use super::*;

impl Node {
    pub(super) fn on_bytes(&mut self, now: Time, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        self.stats.bytes_in += bytes.len() as u64;
        c.last_recv = now;
        c.credit.earn(bytes.len(), &self.config.serve);
        match c.phase {
            Phase::Dialing => {}
            Phase::Handshaking(_) => self.on_handshake_bytes(now, conn, bytes),
            Phase::Up(_) => self.on_records(now, conn, bytes),
        }
    }

    /// Bytes of an established connection: records to open, then frames to act on.
    pub(super) fn on_records(&mut self, now: Time, conn: ConnId, bytes: &[u8]) {
        let max_frame = wire::limit(self.config.max_frame_bytes);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(session) = c.session.as_mut() else { return };
        // Not kept between reads: an idle node holds no scratch buffer (see `poll_output`). Sized
        // for everything that could open now; most reads are small enough for the stack, so they
        // cost no allocation at all.
        let room = session.buffered() + bytes.len();
        // Two sizes on the stack: the buffer is zeroed first, and zeroing a kilobyte for a read
        // of a hundred bytes was 1% of the simulator's instructions.
        let mut tiny;
        let mut small;
        let mut large = Vec::new();
        let plain = if room <= TINY_READ_BYTES {
            tiny = [0u8; TINY_READ_BYTES];
            &mut tiny[..room]
        } else if room <= SMALL_READ_BYTES {
            small = [0u8; SMALL_READ_BYTES];
            &mut small[..room]
        } else {
            large.resize(room, 0);
            &mut large[..]
        };
        let opened = session.open_into(bytes, plain);
        // Nearly every read holds at most one frame: it is kept on its own, and a list is made
        // only from a second frame on (for `preverify`'s batch), so most reads allocate none.
        let mut first = None;
        let mut more = Vec::new();
        // A chat frame is read as the copy already kept of its chat where there is one: the
        // interner's, which has nearly every chat of a simulation, or else our own, which a
        // duplicate finds.
        let (interner, dedup) = (&self.interner, &self.main.dedup);
        let known = |id: &ChatId| match interner {
            Some(i) => i.get(id),
            None => dedup.get(id).map(|s| s.chat),
        };
        if let Ok(n) = opened {
            c.decoder.decode_each_with(&plain[..n], max_frame, &known, |frame| match first {
                None => first = Some(frame),
                Some(_) => more.push(frame),
            });
        }
        match opened {
            Ok(_) => match first {
                None => {}
                Some(Frame::Message(Err(e))) if more.is_empty() && e.is_fatal() => self.on_fatal_frame(now, conn, e),
                Some(frame) if more.is_empty() => self.on_frame(now, conn, frame, None),
                Some(frame) => {
                    more.insert(0, frame);
                    self.on_frames(now, conn, more);
                }
            },
            Err(e) => {
                self.stats.bad_frames += 1;
                let msg = format!("closing connection to {} ({}): {e}", conn_name(c), c.addr());
                self.emit(Event::Warning(msg));
                self.close(now, conn, e.into(), true);
            }
        }
    }

    /// Acts on the frames decoded from one read. Everything that arrived is decoded first, so
    /// the new chats among it can be verified in one batch; then each frame is acted on in order.
    pub(super) fn on_frames(&mut self, now: Time, conn: ConnId, mut frames: Vec<Frame<'_>>) {
        let fatal = match frames.last() {
            Some(Frame::Message(Err(e))) if e.is_fatal() => match frames.pop() {
                Some(Frame::Message(Err(e))) => Some(e),
                _ => unreachable!("matched above"),
            },
            _ => None,
        };
        let verdicts = self.preverify(now, &frames);
        for (i, frame) in frames.into_iter().enumerate() {
            if !self.conns.contains_key(&conn) {
                return;
            }
            self.on_frame(now, conn, frame, verdicts.get(i).copied().flatten());
        }
        if let Some(e) = fatal {
            self.on_fatal_frame(now, conn, e);
        }
    }

    pub(super) fn on_frame(&mut self, now: Time, conn: ConnId, frame: Frame<'_>, verified: Option<bool>) {
        match frame {
            Frame::Message(Ok(msg)) => {
                self.stats.frames_in += 1;
                self.on_message(now, conn, msg, verified);
            }
            Frame::IHave(ids) => {
                self.stats.frames_in += 1;
                if self.admit(now, conn, false) {
                    self.on_ihave(now, conn, RoomIx::DEFAULT, ids.len(), ids.iter());
                }
            }
            Frame::Message(Err(e)) => {
                self.stats.bad_frames += 1;
                self.penalize(now, conn, Penalty::BadFrame, &e.to_string());
            }
        }
    }

    /// The stream cannot be read past `e`: the connection closes.
    pub(super) fn on_fatal_frame(&mut self, now: Time, conn: ConnId, e: WireError) {
        if let Some(c) = self.conns.get(&conn) {
            self.stats.bad_frames += 1;
            let msg = format!("closing connection to {} ({}): {e}", conn_name(c), c.addr());
            self.emit(Event::Warning(msg));
            self.close(now, conn, e.into(), true);
        }
    }

    /// Batch-verifies the signatures of the chats among `frames` that would be accepted if valid.
    /// Returns, per frame, the verdict where one was computed (empty if none was).
    pub(super) fn preverify(&self, now: Time, frames: &[Frame<'_>]) -> Vec<Option<bool>> {
        let candidate = |f: &Frame<'_>| match f {
            Frame::Message(Ok(Message::Chat { chat, .. } | Message::Reply { chat, .. }))
                if chat.is_well_formed() && self.main.dedup.check(&chat.id, now) == Verdict::New =>
            {
                Some(())
            }
            _ => None,
        };
        // Fewer than two is the common case, and a batch of one saves nothing: found out
        // without building any list.
        if frames.iter().filter_map(candidate).nth(1).is_none() {
            return Vec::new();
        }
        let mut verdicts = vec![None; frames.len()];
        let candidates: Vec<(usize, &Arc<Chat>)> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| candidate(f).is_some())
            .filter_map(|(i, f)| match f {
                Frame::Message(Ok(Message::Chat { chat, .. } | Message::Reply { chat, .. })) => Some((i, chat)),
                _ => None,
            })
            .collect();
        let signed: Vec<Vec<u8>> = candidates.iter().map(|(_, c)| c.signed_bytes()).collect();
        let items: Vec<_> =
            candidates.iter().zip(&signed).map(|((_, c), bytes)| (&c.author, bytes.as_slice(), &c.signature)).collect();
        for ((i, _), ok) in candidates.iter().zip(self.keys.verify_batch(&items)) {
            verdicts[*i] = Some(ok);
        }
        verdicts
    }

    /// Whether a frame from `conn` may be acted on: the connection is still there and within its
    /// rate (for chats or for everything else); over it, it is penalised.
    pub(super) fn admit(&mut self, now: Time, conn: ConnId, is_chat: bool) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        let allowed = if is_chat {
            c.chat_tokens.take(now, self.config.chat_rate)
        } else {
            c.control_tokens.take(now, self.config.control_rate)
        };
        if !allowed {
            self.penalize(now, conn, Penalty::Flood, "over the rate limit");
        }
        allowed
    }

    /// An `IHave` of `count` ids, of room `ix`.
    pub(super) fn on_ihave(
        &mut self,
        now: Time,
        conn: ConnId,
        ix: RoomIx,
        count: usize,
        ids: impl Iterator<Item = ChatId>,
    ) {
        if count > MAX_IDS_PER_FRAME {
            return self.penalize(now, conn, Penalty::ProtocolViolation, "IHave too long");
        }
        if !self.config.repair {
            return;
        }
        let Some(room) = room_mut!(self, ix) else { return };
        // Whether any announcement to `conn` waits, asked once per frame rather than per id:
        // nothing below queues one.
        let queued_for = room.ihave.iter().any(|(c, _)| *c == conn);
        for id in ids {
            if queued_for {
                self.known_by(ix, conn, &id);
            }
            let Some(room) = room_mut!(self, ix) else { return };
            if room.dedup.check(&id, now) == Verdict::New {
                room.gossip.on_ihave(id, conn, now);
            }
        }
    }

    /// A gossip message of room `ix` (the default room's own, or carried by `Message::Room`).
    pub(super) fn on_gossip(&mut self, now: Time, conn: ConnId, ix: RoomIx, msg: Message) {
        match msg {
            Message::Prune => {
                if let Some(room) = room_mut!(self, ix) {
                    room.gossip.prune(conn);
                }
            }
            Message::Graft { ids } => {
                if ids.len() > MAX_IDS_PER_FRAME {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "Graft too long");
                }
                if let Some(room) = room_mut!(self, ix) {
                    room.gossip.graft(conn);
                }
                self.answer_wants(now, conn, ix, &ids);
            }
            Message::IHave { ids } => self.on_ihave(now, conn, ix, ids.len(), ids.into_iter()),
            Message::IWant { ids } => {
                if ids.len() > MAX_IDS_PER_FRAME {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "IWant too long");
                }
                self.answer_wants(now, conn, ix, &ids);
            }
            Message::Sync { ranges } => {
                let too_big = ranges.len() > MAX_RANGES_PER_FRAME
                    || ranges.iter().any(|r| matches!(&r.summary, Summary::Ids(v) if v.len() > MAX_IDS_PER_FRAME));
                if too_big {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "sync frame too large");
                }
                if self.config.repair {
                    self.on_sync(now, conn, ix, &ranges);
                }
            }
            _ => unreachable!("not a gossip message"),
        }
    }

    /// `verified`: the chat's signature verdict if `preverify` computed it.
    pub(super) fn on_message(&mut self, now: Time, conn: ConnId, msg: Message, verified: Option<bool>) {
        // A circuit's bytes are bounded by the circuit's own limits (`nat::relay`), not by the
        // frame rate: a busy relayed connection would otherwise cost its relay its standing.
        let circuit_bytes = matches!(msg, Message::ToRelay { .. } | Message::FromRelay { .. });
        if !circuit_bytes && !self.admit(now, conn, matches!(msg, Message::Chat { .. } | Message::Reply { .. })) {
            return;
        }
        match msg {
            Message::Chat { ttl, hops, chat } => {
                self.stats.chat_frames_in += 1;
                self.on_chat(now, Some(conn), chat, Some(ttl), hops, verified);
            }
            Message::Reply { hops, chat } => {
                self.stats.chat_frames_in += 1;
                self.on_chat(now, Some(conn), chat, None, hops, verified);
            }
            msg @ (Message::Prune
            | Message::Graft { .. }
            | Message::IHave { .. }
            | Message::IWant { .. }
            | Message::Sync { .. }) => self.on_gossip(now, conn, RoomIx::DEFAULT, msg),
            whole @ Message::Room { .. } => {
                let bytes = wire::frame_size_hint(&whole);
                let Message::Room { room, msg } = whole else { unreachable!("matched above") };
                self.on_room_message(now, conn, room, msg, bytes);
            }
            Message::Subscribe { tag, public } => self.on_subscribe(now, conn, tag, public),
            Message::Unsubscribe { tag } => self.on_unsubscribe(now, conn, tag),
            Message::FindRoom { room, ttl } => self.on_find_room(now, conn, room, ttl),
            Message::RoomPeers { room, addrs } => self.on_room_peers(now, conn, room, addrs),
            msg @ (Message::Bundle { .. }
            | Message::BundleRequest { .. }
            | Message::Dm { .. }
            | Message::Deposit { .. }
            | Message::Deposited { .. }
            | Message::Collect { .. }
            | Message::Mail { .. }
            | Message::MailAck { .. }) => self.on_dm_message(now, conn, msg),
            msg @ (Message::Observed { .. }
            | Message::DialBack { .. }
            | Message::DialBackResult { .. }
            | Message::Reserve
            | Message::Reservation { .. }
            | Message::Relayed { .. }
            | Message::CircuitOpen { .. }
            | Message::CircuitOpened { .. }
            | Message::CircuitRefused { .. }
            | Message::CircuitIncoming { .. }
            | Message::ToRelay { .. }
            | Message::FromRelay { .. }
            | Message::CircuitEnd { .. }
            | Message::CircuitClosed { .. }
            | Message::PunchConnect { .. }
            | Message::PunchSync) => self.on_nat_message(now, conn, msg),
            Message::Ping { nonce } => self.answer(now, conn, &Message::Pong { nonce }),
            Message::Pong { nonce } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if c.ping_out && c.ping == nonce {
                        let rtt = now.since(c.last_ping).as_micros();
                        c.rtt_us = rtt.min(u128::from(NO_RTT - 1)) as u32;
                        c.ping_out = false;
                    }
                }
            }
            Message::PeerRequest => {
                // An honest peer asks as it comes up and then every `exchange_interval / 6` at
                // most: more often is answered with nothing, as an address list is a dozen times
                // the request and the credit would pay for thousands.
                let Some(c) = self.conns.get_mut(&conn) else { return };
                if !c.peer_answers.take(now, PEER_ANSWERS) {
                    self.stats.answers_refused += 1;
                    return;
                }
                let addrs = self.book.sample_for_exchange(32, &mut self.rng, now);
                let addrs = addrs
                    .into_iter()
                    .filter(|a| Some(*a) != self.conns.get(&conn).and_then(|c| c.listen_addr()))
                    .collect();
                self.answer(now, conn, &Message::PeerResponse { addrs });
                let entries = self.relayed_for_exchange(now);
                if !entries.is_empty() {
                    self.answer(now, conn, &Message::Relayed { entries });
                }
            }
            Message::PeerResponse { addrs } => {
                if addrs.len() > MAX_ADDRS_PER_FRAME {
                    return self.penalize(now, conn, Penalty::ProtocolViolation, "oversized PeerResponse");
                }
                // Not asked for: ignored, not punished. A full node refers a newcomer elsewhere with
                // one before closing (see `establish`), and a newcomer that knows many addresses
                // had not asked; taking unasked addresses would let any peer fill the book.
                if !self.conns.get_mut(&conn).is_some_and(|c| std::mem::take(&mut c.asked_peers)) {
                    return;
                }
                for a in addrs {
                    self.book.add(a, Source::Exchange, now);
                }
            }
            Message::Announce { listen_port } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if listen_port != 0 {
                        c.addr.set_listen(Listen::Port(listen_port));
                        let a = SocketAddr::new(c.addr().ip(), listen_port);
                        self.book.add(a, Source::Inbound, now);
                        self.book.touch(&a);
                    }
                }
            }
        }
    }

    pub(super) fn penalize(&mut self, now: Time, conn: ConnId, why: Penalty, detail: &str) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.score.penalize(why) == Standing::Kept {
            if !why.is_quiet() {
                let msg = format!("peer {} ({}): {detail}", conn_name(c), c.addr());
                self.emit(Event::Warning(msg));
            }
            return;
        }
        let until = now + self.config.ban_duration;
        if let Some(a) = c.listen_addr() {
            self.book.ban(&a, until);
        }
        if let Phase::Up(p) = &c.phase {
            self.banned.ban(p.public_key.peer_id(), until, now);
        }
        let msg = format!(
            "banned peer {} ({}) for {}s: {detail}",
            conn_name(c),
            c.addr(),
            self.config.ban_duration.as_secs()
        );
        self.stats.peers_banned += 1;
        self.emit(Event::Warning(msg));
        self.close(now, conn, CloseReason::Banned, false);
    }
}
