//! The node's timers: every periodic or deadline job has a deadline of its own in one table (as
//! quinn-proto's `TimerTable`), `poll_timeout` reports the earliest with its reason, and
//! `on_timeout` runs whatever is due. A job that has nothing to do is not armed: a node alone
//! does not wake to sync, and one with all its peers does not wake to dial.

use super::*;

/// What a deadline is for ("say why you wake"): each has its own entry in the node's table, except
/// `Want`, whose deadlines `gossip` keeps with the chats they are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// A lazily announced chat is due to be requested (or its announcer grafted).
    Want,
    /// Batched lazy announcements are due to go out (`Config::ihave_delay` after the first).
    IHave,
    /// A connection is due a ping, or a close for silence or for a handshake that took too long.
    Liveness,
    /// Fewer connections than `Config::target_peers`: dial more (again every `Config::tick` while
    /// short).
    Dial,
    /// Dial one known address beyond the target, so halves that healed find each other.
    Explore,
    /// Announce this node's arrival (a `Join` chat) to the network, once a first peer stayed.
    Join,
    /// An anti-entropy round with a random neighbour.
    Sync,
    /// Ask a random neighbour for addresses.
    Exchange,
    /// Put the connected peers' addresses back in the address book.
    Announce,
    /// The oldest held chat leaves the retention window.
    Expire,
    /// A room has too few member neighbours: dial members, or look for them.
    Rooms,
    /// NAT traversal: a round of dial-backs, a dial-back or an ask overdue, a relayed circuit's
    /// time up, a port mapping to ask the router for or renew (or its answer overdue).
    Nat,
    /// Direct messages: an envelope due a retry or expiring, mail expiring at this mailbox, or
    /// a round (a bundle waited for, a mailbox to collect from or to replace).
    Dm,
}

impl Timer {
    /// Every timer kept in the table, in the order a tie is reported.
    const TABLE: [Timer; 12] = [
        Timer::IHave,
        Timer::Liveness,
        Timer::Dial,
        Timer::Explore,
        Timer::Join,
        Timer::Sync,
        Timer::Exchange,
        Timer::Announce,
        Timer::Expire,
        Timer::Rooms,
        Timer::Dm,
        Timer::Nat,
    ];

    /// Its place in `TABLE` (and in `Timers`): read on every announcement queued and chat kept,
    /// so a match, not a search.
    fn slot(self) -> usize {
        match self {
            Timer::IHave => 0,
            Timer::Liveness => 1,
            Timer::Dial => 2,
            Timer::Explore => 3,
            Timer::Join => 4,
            Timer::Sync => 5,
            Timer::Exchange => 6,
            Timer::Announce => 7,
            Timer::Expire => 8,
            Timer::Rooms => 9,
            Timer::Dm => 10,
            Timer::Nat => 11,
            Timer::Want => unreachable!("Want's deadlines are gossip's, not in the table"),
        }
    }
}

/// The deadline of each timer; `Time::MAX` when not armed.
pub(super) struct Timers([Time; Timer::TABLE.len()]);

impl Timers {
    pub(super) fn new() -> Timers {
        Timers([Time::MAX; Timer::TABLE.len()])
    }

    pub(super) fn get(&self, t: Timer) -> Option<Time> {
        Some(self.0[t.slot()]).filter(|at| *at != Time::MAX)
    }

    pub(super) fn set(&mut self, t: Timer, at: Time) {
        self.0[t.slot()] = at;
    }

    /// Arms `t` at `at` unless it is due sooner already.
    pub(super) fn set_min(&mut self, t: Timer, at: Time) {
        let slot = &mut self.0[t.slot()];
        *slot = (*slot).min(at);
    }

    /// Arms `t` at `at` unless it is armed already.
    pub(super) fn set_if_unset(&mut self, t: Timer, at: Time) {
        if self.get(t).is_none() {
            self.set(t, at);
        }
    }

    pub(super) fn clear(&mut self, t: Timer) {
        self.0[t.slot()] = Time::MAX;
    }

    /// Whether `t` is due at `now`; if so it is disarmed (its job re-arms it if it recurs).
    fn take_due(&mut self, t: Timer, now: Time) -> bool {
        let due = self.0[t.slot()] <= now;
        if due {
            self.clear(t);
        }
        due
    }

    /// The earliest deadline and its timer.
    pub(super) fn next(&self) -> Option<(Time, Timer)> {
        let (i, at) = self.0.iter().enumerate().min_by_key(|(i, at)| (**at, *i))?;
        (*at != Time::MAX).then(|| (*at, Timer::TABLE[i]))
    }
}

impl Node {
    pub(super) fn on_timeout(&mut self, now: Time) {
        if self.wants_due().is_some_and(|t| t <= now) {
            self.request_wants(now);
        }
        if self.timers.take_due(Timer::IHave, now) {
            self.flush_ihave();
        }
        if self.timers.take_due(Timer::Expire, now) {
            self.expire(now);
        }
        if self.timers.take_due(Timer::Liveness, now) {
            self.check_liveness(now);
        }
        if self.timers.take_due(Timer::Dm, now) {
            self.dm_timeout(now);
        }
        if self.timers.take_due(Timer::Nat, now) {
            self.nat_timeout(now);
        }
        if self.leaving {
            for t in
                [Timer::Dial, Timer::Explore, Timer::Join, Timer::Sync, Timer::Exchange, Timer::Announce, Timer::Rooms]
            {
                self.timers.clear(t);
            }
            return;
        }
        if self.timers.take_due(Timer::Explore, now) {
            self.explore(now);
        }
        if self.timers.take_due(Timer::Join, now) {
            self.join(now);
        }
        if self.timers.take_due(Timer::Exchange, now) {
            self.exchange(now);
        }
        if self.timers.take_due(Timer::Announce, now) {
            self.announce_neighbours(now);
        }
        if self.timers.take_due(Timer::Sync, now) {
            self.sync_round(now);
        }
        if self.timers.take_due(Timer::Rooms, now) {
            self.rooms_round(now);
        }
        // Last: the jobs above may close a connection (a room's round gives up a spare peer),
        // which asks for a dial at once (`arm_dial`); this round makes it.
        if self.timers.take_due(Timer::Dial, now) {
            self.dial_round(now);
        }
        // A job that re-armed itself at `now` would wake the node again at once, for ever.
        debug_assert!(
            self.poll_timeout().is_none_or(|(t, _)| t > now),
            "a timer is still due after it ran: {:?}",
            self.poll_timeout()
        );
    }

    /// Arms the jobs that need established peers, as the first of them comes up. Each of them
    /// finding no peer leaves itself unarmed, so a node alone does not wake for them.
    pub(super) fn arm_peer_timers(&mut self, now: Time) {
        let c = &self.config;
        if !self.joined && c.announce_presence {
            // At a tick rather than at the first handshake: a first neighbour that was full and
            // only referred us elsewhere is gone by then, and would have taken it along.
            self.timers.set_if_unset(Timer::Join, now + c.tick);
        }
        self.timers.set_if_unset(Timer::Exchange, now + c.tick);
        self.timers.set_if_unset(Timer::Announce, now + c.announce_interval);
        if c.repair && self.timers.get(Timer::Sync).is_none() {
            let at = now + self.sync_wait();
            self.timers.set(Timer::Sync, at);
        }
    }

    /// Dials again at once after a connection went or a dial failed, unless the node is leaving (the
    /// dial budget bounds how often). Waiting for the next round instead left a node of a crowd
    /// joining through three bootstrap nodes short of peers for seconds: each refusal cost it up
    /// to a `tick`.
    pub(super) fn arm_dial(&mut self, now: Time) {
        if !self.leaving {
            self.timers.set_min(Timer::Dial, now);
        }
    }

    /// Arms expiry for a chat with this id just taken in.
    pub(super) fn arm_expire(&mut self, id: &ChatId) {
        // A chat stays in the window while its millisecond is not older than `now - retention`:
        // it leaves a millisecond after `timestamp + retention`, not at it (at it, the expiry
        // would keep it and be due again at once).
        let at = Time::from_millis(id.timestamp_ms() + 1) + self.config.retention;
        self.timers.set_min(Timer::Expire, at);
    }

    /// The earliest want of any room.
    pub(super) fn wants_due(&self) -> Option<Time> {
        let rooms = self.rooms.iter().filter_map(|(_, j)| j.room.gossip.next_deadline());
        rooms.chain(self.main.gossip.next_deadline()).min()
    }

    /// Asks for the lazily announced chats whose wait is over, per room and neighbour in one frame.
    fn request_wants(&mut self, now: Time) {
        for ix in std::iter::once(RoomIx::DEFAULT).chain(self.rooms.ixs()) {
            let Some(room) = room_mut!(self, ix) else { continue };
            if room.gossip.next_deadline().is_none_or(|t| t > now) {
                continue;
            }
            let mut wants: BTreeMap<(ConnId, bool), Vec<ChatId>> = BTreeMap::new();
            for w in room.gossip.poll_wants(now) {
                wants.entry((w.conn, w.graft)).or_default().push(w.id);
            }
            for ((conn, graft), ids) in wants {
                if graft {
                    self.stats.grafts_sent += 1;
                    self.send_in(conn, ix, Message::Graft { ids });
                } else {
                    self.stats.iwant_ids_sent += ids.len() as u64;
                    self.send_in(conn, ix, Message::IWant { ids });
                }
            }
        }
    }

    /// Forgets chats and bans that are over, and arms for the next chat to go.
    fn expire(&mut self, now: Time) {
        self.banned.forget_expired(now);
        for ix in std::iter::once(RoomIx::DEFAULT).chain(self.rooms.ixs()) {
            let Some(room) = room_mut!(self, ix) else { continue };
            room.dedup.expire(now);
            let oldest = room.dedup.iter().next().map(|c| c.id);
            if let Some(oldest) = oldest {
                self.arm_expire(&oldest);
            }
        }
    }

    /// Dials until the target is met, a few at a time; again a tick later while still short.
    fn dial_round(&mut self, now: Time) {
        let want = self.config.target_peers.min(self.config.max_peers).saturating_sub(self.conns.len());
        if want == 0 {
            return;
        }
        let n = want.min(MAX_PENDING_DIALS.saturating_sub(self.pending_dials()));
        if n > 0 {
            self.dial_more(now, n);
        }
        // Those no one can dial, through the relays they named, once the dials are made.
        let want = self.config.target_peers.min(self.config.max_peers).saturating_sub(self.conns.len());
        let n = want.min(MAX_PENDING_DIALS.saturating_sub(self.pending_dials()));
        self.dial_relayed(now, n);
        self.timers.set(Timer::Dial, now + self.config.tick);
    }

    /// Exploration: a node content with its peers never dials again, so two groups that each
    /// filled their members' peer sets during a partition would stay apart after it heals. Up to
    /// twice the target, one dial at a time.
    fn explore(&mut self, now: Time) {
        let soft_cap = (2 * self.config.target_peers).min(self.config.max_peers);
        let content = self.conns.len() >= self.config.target_peers.min(self.config.max_peers);
        if content && self.conns.len() < soft_cap && self.pending_dials() == 0 {
            self.dial_more(now, 1);
        }
        let wait = self.config.explore_interval.mul_f64(0.5 + self.rng.unit());
        self.timers.set(Timer::Explore, now + wait);
    }

    /// Outbound connections not established yet. Counted only when dialing: each connection
    /// looked at is a cache miss in a large simulation.
    fn pending_dials(&self) -> usize {
        self.conns.values().filter(|c| !matches!(c.phase, Phase::Up(_)) && c.direction() == Direction::Outbound).count()
    }

    fn join(&mut self, now: Time) {
        if !self.joined && self.peer_count() > 0 {
            self.joined = true;
            self.originate(now, Body::Join);
        }
    }

    /// Peer exchange: often while short of peers, rarely once content.
    fn exchange(&mut self, now: Time) {
        let up = self.up_conns();
        if up.is_empty() {
            return;
        }
        let conn = up[self.rng.below(up.len())];
        self.request_peers(conn);
        let short = self.conns.len() < self.config.target_peers;
        let wait = if short { self.config.exchange_interval / 6 } else { self.config.exchange_interval };
        self.timers.set(Timer::Exchange, now + wait);
    }

    /// Our neighbours' addresses stay in the book (one may have been evicted for a learned
    /// address since). Each peer told its listen port in its hello, so nothing needs sending for
    /// this: `Announce` frames are still understood, no longer sent.
    fn announce_neighbours(&mut self, now: Time) {
        let addrs: Vec<SocketAddr> = self
            .conns
            .values()
            .filter_map(|c| match c.phase {
                Phase::Up(_) => c.listen_addr(),
                _ => None,
            })
            .collect();
        if addrs.is_empty() {
            return;
        }
        for a in addrs {
            self.book.add(a, Source::Inbound, now);
            self.book.touch(&a);
        }
        self.timers.set(Timer::Announce, now + self.config.announce_interval);
    }

    /// An anti-entropy round in every room, each with a random neighbour in it.
    fn sync_round(&mut self, now: Time) {
        let up = self.up_conns();
        if !self.config.repair || up.is_empty() {
            return;
        }
        let conn = up[self.rng.below(up.len())];
        self.start_sync(now, conn, RoomIx::DEFAULT);
        for ix in self.rooms.ixs() {
            let members: Vec<ConnId> = up.iter().copied().filter(|c| self.conns[c].in_room(ix)).collect();
            if !members.is_empty() {
                let conn = members[self.rng.below(members.len())];
                self.start_sync(now, conn, ix);
            }
        }
        let at = now + self.sync_wait();
        self.timers.set(Timer::Sync, at);
    }

    /// Jitter keeps neighbours from syncing in lockstep.
    fn sync_wait(&mut self) -> Duration {
        self.config.sync_interval.mul_f64(0.75 + self.rng.unit() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_timer_has_its_place_in_the_table() {
        for (i, t) in Timer::TABLE.iter().enumerate() {
            assert_eq!(t.slot(), i, "{t:?}");
        }
    }
}
