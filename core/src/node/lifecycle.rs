//! The life of a connection: accepted or dialed, its handshake, established (or refused, or
//! referred elsewhere when the node is full), watched for silence, and closed. Also whom to dial
//! next and whom to give up for a newcomer.

use super::*;

/// How long a new inbound peer is safe from `give_up_spare_peer`.
const SPARE_GRACE: Duration = Duration::from_secs(10);

impl Node {
    /// A peer connected to us. Returns the id to report its bytes under, or `None` if the node
    /// refuses it (too many connections from its address, every handshake slot taken by a dialer
    /// that has only just connected, or leaving): the caller then closes the socket.
    pub fn accept(&mut self, now: Time, remote: SocketAddr) -> Option<ConnId> {
        self.check_clock(now);
        // A full node still accepts, to refer the newcomer elsewhere (see `establish`).
        // Both counts in one pass with nothing collected: this runs for every connection accepted,
        // and each connection looked at is a cache line of its own in a large simulation.
        let (mut same_ip, mut handshaking) = (0, 0);
        for c in self.conns.values() {
            same_ip += usize::from(c.addr().ip() == remote.ip());
            handshaking +=
                usize::from(matches!((c.direction(), &c.phase), (Direction::Inbound, Phase::Handshaking(_))));
        }
        if self.leaving || same_ip >= self.config.max_conns_per_ip {
            return None;
        }
        if handshaking >= self.config.max_handshaking.max(1) {
            match self.handshake_victim(now, remote) {
                Some(victim) => self.close(now, victim, CloseReason::HandshakeSlotsFull, false),
                None => return None,
            }
        }
        let conn = self.new_conn(now, remote, Direction::Inbound, true);
        Some(conn)
    }

    /// Whom a newcomer from `remote` displaces when the inbound handshake slots are full: `None`
    /// to refuse the newcomer itself. In this order:
    /// - a handshake older than a fifth of `handshake_timeout` (a second by default, several round
    ///   trips on any sane link) whose dialer has not sent its first message (an honest dialer
    ///   sends it at once; a connection that never will, slowloris, never does), the oldest first;
    /// - if the newcomer is from another network group (IPv4 /16, IPv6 /32), the oldest silent
    ///   handshake of the group holding the most of them, if those are more than
    ///   `max_handshaking / GROUP_HANDSHAKE_SHARE` (256 of 2,048 by default): many half-open
    ///   connections from few networks are an attack, not a crowd;
    /// - a handshake older than that grace whose dialer spoke but has not finished, the oldest.
    ///
    /// While none of these exists, the newcomer is refused: the slots hold dialers that have barely
    /// had time to speak. Displacing the oldest silent one at once, as before, collapsed under a
    /// crowd: 10,000 simulated nodes joining through three bootstrap nodes arrived faster than 64 a
    /// round trip, so every handshake was displaced before its first message came back, and 97%
    /// of the nodes still had no peer after eight seconds. Refused, a dialer backs off and tries
    /// again, so a crowd is served at the rate the slots complete handshakes. To keep every slot
    /// from honest dialers, an attacker must open 2,048 connections a second from at least eight
    /// network groups (by default), and keeps none of them for more than a second.
    pub(super) fn handshake_victim(&self, now: Time, remote: SocketAddr) -> Option<ConnId> {
        let grace = self.config.handshake_timeout / 5;
        // Rare, so the handshakes themselves (each behind a pointer) are only read here. Ids grow
        // with time: the first found of each kind is the oldest.
        let mut oldest_progressed = None;
        let mut young_silent: Vec<(u64, ConnId)> = Vec::new();
        for (id, c) in self.conns.iter() {
            let (Direction::Inbound, Phase::Handshaking(hs)) = (c.direction(), &c.phase) else { continue };
            match (now.since(c.since) >= grace, hs.progressed()) {
                (true, false) => return Some(*id),
                (true, true) => oldest_progressed = oldest_progressed.or(Some(*id)),
                (false, false) => young_silent.push((net_group(c.addr().ip()), *id)),
                (false, true) => {}
            }
        }
        let mine = net_group(remote.ip());
        let share = (self.config.max_handshaking / GROUP_HANDSHAKE_SHARE).max(1);
        let in_group = |g: u64| young_silent.iter().filter(|(h, _)| *h == g).count();
        let crowded = young_silent
            .iter()
            .map(|(g, id)| (in_group(*g), std::cmp::Reverse(*id), *g))
            .max()
            .filter(|(n, _, g)| *n > share && *g != mine);
        crowded.map(|(_, std::cmp::Reverse(id), _)| id).or(oldest_progressed)
    }

    pub(super) fn new_conn(
        &mut self,
        now: Time,
        addr: SocketAddr,
        direction: Direction,
        handshake_now: bool,
    ) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Box::new(Conn {
                addr: ConnAddr::new(addr, direction),
                phase: Phase::Dialing,
                session: None,
                decoder: Frames::default(),
                since: now,
                last_recv: now,
                score: Score::default(),
                ping: 0,
                ping_out: false,
                last_ping: now,
                rtt_us: NO_RTT,
                chat_tokens: Tokens::full(self.config.chat_rate.burst, now),
                control_tokens: Tokens::full(self.config.control_rate.burst, now),
                asked_peers: false,
                peer_answers: Tokens::full(PEER_ANSWERS.burst, now),
                credit: Credit::full(&self.config.serve),
                unsent: 0,
                served: None,
                rooms: 0,
                binding: [0; 32],
                peer_rooms: None,
            }),
        );
        self.timers.set_min(Timer::Liveness, now + self.config.handshake_timeout);
        if handshake_now {
            self.start_handshake(conn);
        }
        conn
    }

    /// The dialer speaks first; the acceptor waits for it.
    pub(super) fn start_handshake(&mut self, conn: ConnId) {
        // Behind NAT, the port is no use to anyone: told, it would only spread by peer exchange
        // as an address nobody can dial.
        // Through the router's mapping, the port peers dial is the one it forwards.
        let port = match self.reachability() {
            crate::nat::Reachability::BehindNat => 0,
            crate::nat::Reachability::Mapped(a) => a.port(),
            _ => self.config.listen_port,
        };
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let (keys, me, rng) = (&*self.keys, &self.identity, &mut self.rng);
        let name = self.username.as_str();
        if c.direction() == Direction::Outbound {
            let (hs, first) = Handshake::dial(keys, me, rng, name, port);
            c.phase = Phase::Handshaking(hs);
            self.transmit_raw(conn, first);
        } else {
            c.phase = Phase::Handshaking(Handshake::accept(keys, me, rng, name, port));
        }
    }

    pub(super) fn dial(&mut self, now: Time, addr: SocketAddr) {
        self.book.on_dial(&addr, now);
        let conn = self.new_conn(now, addr, Direction::Outbound, false);
        self.stats.dials += 1;
        self.out.push_back(Output::Dial { conn, addr });
    }

    /// Closes a connection we decided to drop. `backoff`: count it as a failure of the address.
    pub(super) fn close(&mut self, now: Time, conn: ConnId, reason: CloseReason, backoff: bool) {
        self.drop_conn(now, conn, reason, backoff, false);
    }

    pub(super) fn drop_conn(&mut self, now: Time, conn: ConnId, reason: CloseReason, backoff: bool, by_peer: bool) {
        let Some(mut c) = self.conns.remove(&conn) else { return };
        self.main.ihave.retain(|(c, _)| *c != conn);
        if self.main.ihave.is_empty() {
            // As everywhere: an idle node holds no buffer.
            self.main.ihave = Vec::new();
        }
        let pending = self.tx.remove(conn);
        let leg = self.is_leg(conn);
        if !by_peer {
            if let (Some(mut bytes), Some(session)) = (pending, c.session.as_mut()) {
                if session.seal_in_place(&mut bytes).is_ok() {
                    if let Some(bytes) = self.through_relay(conn, bytes) {
                        self.out.push_back(Output::Transmit { conn, bytes });
                    }
                }
            }
            if !leg {
                self.out.push_back(Output::Close { conn });
            }
        }
        self.nat_conn_down(now, conn);
        let was_up = matches!(c.phase, Phase::Up(_));
        self.up_peers -= usize::from(was_up);
        self.arm_dial(now);
        if c.direction() == Direction::Outbound && (backoff || by_peer || !was_up) && !leg {
            // An outbound peer that went away is retried after a backoff: automatic reconnection.
            self.book.on_failure(&c.addr(), now, &mut self.rng);
        }
        if let Phase::Up(p) = c.phase {
            if let Some(g) = self.main.gossip.on_peer_down(conn, &mut self.rng) {
                self.stats.grafts_sent += 1;
                self.send(g, &Message::Graft { ids: Vec::new() });
            }
            self.leave_rooms_of(now, conn, c.rooms);
            let username = p.username.as_str().to_owned();
            let peer = p.public_key.peer_id();
            self.dm_peer_down(now, conn, peer);
            self.emit(Event::PeerDown { conn, peer, username, reason });
        }
    }

    pub(super) fn up_conns(&self) -> Vec<ConnId> {
        let mut up = Vec::with_capacity(self.conns.len());
        up.extend(self.conns.iter().filter(|(_, c)| matches!(c.phase, Phase::Up(_))).map(|(id, _)| *id));
        up
    }

    /// `peer`: the peer id, when the caller has it already (a SHA-256 of the key, 2% of the
    /// simulator's instructions when computed twice per handshake).
    pub(super) fn summary(&self, conn: ConnId, c: &Conn, peer: Option<PeerId>) -> Option<PeerSummary> {
        let Phase::Up(p) = &c.phase else { return None };
        Some(PeerSummary {
            conn,
            peer: peer.unwrap_or_else(|| p.public_key.peer_id()),
            public_key: p.public_key,
            username: p.username.as_str().to_owned(),
            addr: c.addr(),
            listen_addr: c.listen_addr(),
            path: self.path(conn),
            direction: c.direction(),
            score: c.score.get(),
            rtt: c.rtt(),
            since: c.since,
        })
    }

    pub(super) fn on_handshake_bytes(&mut self, now: Time, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Phase::Handshaking(hs) = &mut c.phase else { return };
        match hs.handle(&*self.keys, bytes) {
            Ok(Progress::Continue(send)) => self.transmit_raw(conn, send),
            Ok(Progress::Done(done)) => {
                let done = *done;
                c.session = Some(done.session);
                c.binding = done.binding;
                // Our last handshake message leaves before anything the session seals.
                self.transmit_raw(conn, done.send);
                self.establish(now, conn, done.hello);
                // Bytes that followed the handshake are the session's first records (already
                // counted in `bytes_in`); `establish` may have closed the connection instead.
                if !done.leftover.is_empty() && self.conns.get(&conn).is_some_and(|c| matches!(c.phase, Phase::Up(_))) {
                    self.on_records(now, conn, &done.leftover);
                }
            }
            Err(e) => {
                let (listen_addr, addr) = (c.listen_addr(), c.addr());
                if e == HandshakeError::SelfConnection {
                    if let Some(a) = listen_addr {
                        self.book.mark_self(&a);
                    }
                } else {
                    self.emit(Event::Warning(format!("handshake with {addr} failed: {e}")));
                }
                self.close(now, conn, e.into(), true);
            }
        }
    }

    pub(super) fn establish(&mut self, now: Time, conn: ConnId, hello: wire::Hello) {
        let peer = hello.public_key.peer_id();
        if self.banned.is_banned(&peer, now) {
            return self.close(now, conn, CloseReason::PeerIsBanned, false);
        }
        if self.peer_count() >= self.config.max_peers {
            self.make_room(now, conn);
        }
        if self.peer_count() >= self.config.max_peers {
            // Full: refer the newcomer to peers we know rather than just refuse it, or a
            // bootstrap node that filled up would leave every later joiner stranded.
            let exclude = self.conns.get(&conn).and_then(|c| c.listen_addr());
            let addrs = self
                .book
                .sample_for_exchange(32, &mut self.rng, now)
                .into_iter()
                .filter(|a| Some(*a) != exclude)
                .collect();
            self.send(conn, &Message::PeerResponse { addrs });
            return self.close(now, conn, CloseReason::Full, false);
        }
        // Two connections to one peer (both dialed at once, or one peer at two addresses): keep the
        // one dialed by the smaller PeerId, which both sides compute alike. Same dialer: the dialer
        // keeps the older one and the other side lets it decide.
        let dup = self.conns.iter().find_map(|(id, c)| match &c.phase {
            // The same key is the same peer id.
            Phase::Up(p) if p.public_key == hello.public_key => Some((*id, c.direction())),
            _ => None,
        });
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.direction() == Direction::Inbound && hello.listen_port != 0 {
            c.addr.set_listen(Listen::Port(hello.listen_port));
        }
        let direction = c.direction();
        let listen_addr = c.listen_addr();
        if let Some((other, other_dir)) = dup {
            let me = self.peer_id();
            let dialer_of = |d: Direction| if d == Direction::Outbound { me } else { peer };
            // A connection of its own beats a circuit through a relay (a hole punch's purpose);
            // both ends see one of each, and decide alike.
            let (new_leg, other_leg) = (self.is_leg(conn), self.is_leg(other));
            let keep_new = if new_leg != other_leg {
                other_leg
            } else if other_dir == direction {
                false
            } else {
                dialer_of(direction) < dialer_of(other_dir)
            };
            if let Some(a) = listen_addr {
                self.book.add(a, Source::Inbound, now);
                self.book.on_connected(&a, hello.public_key, now);
            }
            if keep_new {
                self.close(now, other, CloseReason::Duplicate, false);
            } else if other_dir == direction && direction == Direction::Inbound && new_leg == other_leg {
                // The dialer will close one of its two; until then both stay.
            } else {
                return self.close(now, conn, CloseReason::Duplicate, false);
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.phase = Phase::Up(Peer { public_key: hello.public_key, username: Name::new(&hello.username) });
        self.up_peers += 1;
        c.since = now;
        let due = c.liveness_due(&self.config);
        self.timers.set_min(Timer::Liveness, due);
        self.arm_peer_timers(now);
        if let Some(a) = listen_addr {
            self.book.add(a, Source::Inbound, now);
            self.book.on_connected(&a, hello.public_key, now);
        }
        let extra = self.peer_count() > self.config.target_peers;
        if !self.main.gossip.on_peer_up(conn, extra) && self.config.repair {
            self.stats.prunes_sent += 1;
            self.send(conn, &Message::Prune);
        }
        if let Some(s) = self.summary(conn, &self.conns[&conn], Some(peer)) {
            self.emit(Event::PeerUp(Box::new(s)));
        }
        self.send_subscriptions(conn);
        self.dm_peer_up(now, conn, peer);
        self.nat_peer_up(now, conn, peer);
        if !self.conns.contains_key(&conn) {
            return;
        }
        // A new neighbour is asked for addresses while we know few: what lets a newcomer spread
        // out from the bootstrap nodes at once. One answer holds 32, so a couple of neighbours
        // stock the book; asking every new neighbour while short of peers (as before) cost 7% of
        // all frames and did not find a full peer set sooner (simulator, 3,000 nodes, also with
        // arrivals over a minute). A node with a stocked book learns from the periodic exchange.
        if self.book.len() < HUNGRY_BOOK {
            self.request_peers(conn);
        }
        // (Gone already if what came up with it made room: see `give_up_spare_peer`.)
        if self.config.repair && self.conns.get(&conn).is_some_and(|c| c.direction() == Direction::Outbound) {
            // Catch up at once with every new neighbour, rather than at the next periodic round.
            // A round settles both sides' differences, so the dialer alone opens it: when both
            // did, every new link cost two rounds (a third of all sync frames).
            self.start_sync(now, conn, RoomIx::DEFAULT);
        }
    }

    /// A full node takes a newcomer that dialed it by closing one of its newer inbound peers.
    /// Without this, nodes that arrived early fill up and refer late joiners only to one another,
    /// and a late joiner can dial a hundred full nodes without finding a place (found by the
    /// simulator, with nodes arriving over a minute). The choice narrows as Bitcoin Core's inbound
    /// eviction does, so that someone who completes handshakes at will mostly churns their own
    /// connections:
    /// - outbound peers (this node chose them) and the older half of the inbound ones (by
    ///   connection time) are never closed, so the node cannot be eclipsed this way;
    /// - nor are links of the gossip trees: they carry chats now, and a newcomer has earned nothing;
    /// - nor peers it shares a room with, unless it has more than `ROOM_CROWDED` member neighbours
    ///   in each room they share and the peer has been up for `ROOM_GRACE`;
    /// - nor the [`PROTECTED_FASTEST`] of the rest with the shortest measured round trip (Bitcoin
    ///   Core keeps 8 of its 125 inbound slots so): an attacker can connect from many networks, but
    ///   not from near every node it wants to churn;
    /// - among the rest, the victim comes from the network group (IPv4 /16, IPv6 /32) holding the
    ///   most inbound connections, where many connections from few places accumulate, and is
    ///   chosen at random within it.
    ///
    /// Each rule spares at most all but one of the candidates it is given, so a newcomer always
    /// gets in.
    pub(super) fn make_room(&mut self, now: Time, newcomer: ConnId) {
        if self.conns.get(&newcomer).is_none_or(|c| c.direction() != Direction::Inbound) {
            return;
        }
        let spare = self.spare_room_bits();
        let mut inbound: Vec<(Time, ConnId, u64, u32)> = self
            .conns
            .iter()
            // A neighbour in a room with this node carries that room's tree: given up only where
            // this node has plenty of others (a room's owner that every invitee dials first
            // would otherwise fill up with members and turn every later one away for ever).
            .filter(|(id, c)| {
                **id != newcomer
                    && c.direction() == Direction::Inbound
                    && (c.rooms == 0 || (c.rooms & !spare == 0 && c.since + super::rooms::ROOM_GRACE <= now))
            })
            .filter_map(|(id, c)| match &c.phase {
                Phase::Up(_) => Some((c.since, *id, net_group(c.addr().ip()), c.rtt_us)),
                _ => None,
            })
            .collect();
        if inbound.len() < 2 {
            return;
        }
        inbound.sort_unstable();
        let in_group = |g: u64| inbound.iter().filter(|(_, _, h, _)| *h == g).count();
        let newer = &inbound[inbound.len() / 2..];
        let mut candidates: Vec<(ConnId, u64, u32)> = newer
            .iter()
            .filter(|(_, id, _, _)| {
                !self.main.gossip.is_eager(*id) && !self.rooms.iter().any(|(_, j)| j.room.gossip.is_eager(*id))
            })
            .map(|(_, id, g, rtt)| (*id, *g, *rtt))
            .collect();
        if candidates.is_empty() {
            // A node whose newer inbound peers all carry the tree (a tiny `max_peers`): a newcomer
            // still gets in.
            candidates = newer.iter().map(|(_, id, g, rtt)| (*id, *g, *rtt)).collect();
        }
        // Stable: among equal round trips (unmeasured ones), the older first, as before.
        candidates.sort_by_key(|(_, _, rtt)| *rtt);
        let fastest = candidates
            .iter()
            .take(PROTECTED_FASTEST.min(candidates.len() - 1))
            .take_while(|(_, _, rtt)| *rtt != NO_RTT)
            .count();
        candidates.drain(..fastest);
        let crowded = candidates.iter().map(|(_, g, _)| in_group(*g)).max().unwrap_or(0);
        candidates.retain(|(_, g, _)| in_group(*g) == crowded);
        let (victim, _, _) = candidates[self.rng.below(candidates.len())];
        self.close(now, victim, CloseReason::MadeRoom, false);
    }

    /// The rooms in which this node has more than `ROOM_CROWDED` member neighbours, by bit: a
    /// neighbour in only those, and in none of their trees' eager links, can be given up.
    fn spare_room_bits(&self) -> u64 {
        let mut bits = 0;
        for ix in self.rooms.ixs() {
            if self.room_neighbours(ix) > super::rooms::ROOM_CROWDED {
                bits |= ix.bit();
            }
        }
        bits
    }

    /// A full node about to dial for something only that peer serves (a room short of members, a
    /// direct message's mailbox) gives up its newest inbound peer that shares no room and carries
    /// no chats of the default room's tree. Without this a node at `max_peers` could never reach
    /// them: its dials would wait for a slot that its inbound peers keep filled. A peer up for less
    /// than `SPARE_GRACE` is kept: its subscriptions may still be on the way. Whether one went.
    pub(super) fn give_up_spare_peer(&mut self, now: Time) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(id, c)| {
                c.direction() == Direction::Inbound
                    && c.since + SPARE_GRACE <= now
                    && c.rooms == 0
                    && matches!(c.phase, Phase::Up(_))
                    && !self.main.gossip.is_eager(**id)
            })
            .max_by_key(|(_, c)| c.since)
            .map(|(id, _)| *id);
        if let Some(v) = victim {
            self.close(now, v, CloseReason::MadeRoom, false);
        }
        victim.is_some()
    }

    pub(super) fn request_peers(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.asked_peers = true;
            self.send(conn, &Message::PeerRequest);
        }
    }

    /// Closes handshakes and dials that took too long and peers gone silent, and pings quiet
    /// ones.
    pub(super) fn check_liveness(&mut self, now: Time) {
        let mut to_close = Vec::new();
        let mut to_ping = Vec::new();
        for (id, c) in self.conns.iter() {
            match c.liveness(now, &self.config) {
                Some(Liveness::Close(why)) => to_close.push((*id, why)),
                Some(Liveness::Ping) => to_ping.push(*id),
                None => {}
            }
        }
        for (id, why) in to_close {
            self.close(now, id, why, true);
        }
        for id in to_ping {
            let nonce = self.rng.u64();
            if let Some(c) = self.conns.get_mut(&id) {
                c.ping = nonce;
                c.ping_out = true;
                c.last_ping = now;
            }
            self.send(id, &Message::Ping { nonce });
        }
        match self.conns.values().map(|c| c.liveness_due(&self.config)).min() {
            Some(due) => self.timers.set(Timer::Liveness, due),
            None => self.timers.clear(Timer::Liveness),
        }
    }

    /// Dials up to `n` addresses from the book that are not connected already.
    pub(super) fn dial_more(&mut self, now: Time, n: usize) {
        // Every candidate in the book is checked against these: sorted once here, instead of
        // a walk over all connections per candidate.
        // Filled at their final size (collecting from a flatten or a filter grows the
        // buffer a few times over).
        let mut busy_addrs = Vec::with_capacity(2 * self.conns.len());
        for c in self.conns.values() {
            busy_addrs.push(c.addr());
            busy_addrs.extend(c.listen_addr());
        }
        busy_addrs.sort_unstable();
        // The connected peers' keys only once a candidate with a known peer gets past the
        // address check: most rounds need none.
        let conns = &self.conns;
        let mut up_peers: Option<Vec<KeyTag>> = None;
        // The book offers candidates in address order, so one walk along the sorted list
        // answers them all, where a binary search each was a third of the dial round.
        let mut busy_rest = &busy_addrs[..];
        let busy = |a: &SocketAddr, peer: Option<KeyTag>| {
            while busy_rest.first().is_some_and(|b| b < a) {
                busy_rest = &busy_rest[1..];
            }
            if busy_rest.first() == Some(a) {
                return true;
            }
            let Some(p) = peer else { return false };
            let up = up_peers.get_or_insert_with(|| {
                let mut up = Vec::with_capacity(conns.len());
                for c in conns.values() {
                    if let Phase::Up(u) = &c.phase {
                        up.push(KeyTag::of(&u.public_key));
                    }
                }
                up.sort_unstable();
                up
            });
            up.binary_search(&p).is_ok()
        };
        for addr in self.book.dial_candidates(now, n, &mut self.rng, busy) {
            if !self.dial_bucket.take(now, self.config.dial_rate) {
                break;
            }
            self.dial(now, addr);
        }
    }
}

/// The network an address belongs to, as Bitcoin Core groups peers: the /16 of an IPv4 address,
/// the /32 of an IPv6 one. One operator rarely holds addresses in many groups.
pub(super) fn net_group(ip: IpAddr) -> u64 {
    let v4 = |a: Ipv4Addr| u64::from(u32::from(a) >> 16);
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or((u128::from(a) >> 96) as u64 | 1 << 32, v4),
    }
}

pub(super) fn conn_name(c: &Conn) -> String {
    match &c.phase {
        Phase::Up(p) => format!("{}#{}", p.username, p.public_key.peer_id().short()),
        _ => "(handshaking)".into(),
    }
}
