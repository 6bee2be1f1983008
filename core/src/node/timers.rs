//! What the node does when a deadline comes: wants that are due, the batched announcements, and
//! the periodic maintenance (expiry, liveness, dialing, peer exchange, anti-entropy).

use super::*;

impl Node {
    pub(super) fn on_timeout(&mut self, now: Time) {
        let mut wants: BTreeMap<(ConnId, bool), Vec<ChatId>> = BTreeMap::new();
        for w in self.gossip.poll_wants(now) {
            wants.entry((w.conn, w.graft)).or_default().push(w.id);
        }
        for ((conn, graft), ids) in wants {
            if graft {
                self.stats.grafts_sent += 1;
                self.send(conn, &Message::Graft { ids });
            } else {
                self.stats.iwant_ids_sent += ids.len() as u64;
                self.send(conn, &Message::IWant { ids });
            }
        }
        if self.ihave_due.is_some_and(|t| now >= t) {
            self.flush_ihave();
        }
        if now >= self.next_tick {
            self.maintain(now);
            self.next_tick = now + self.config.tick;
        }
    }

    pub(super) fn maintain(&mut self, now: Time) {
        self.dedup.expire(now);
        self.banned.retain(|_, t| *t > now);

        if now >= self.next_liveness {
            self.check_liveness(now);
        }
        if self.leaving {
            return;
        }

        // Dial until the target is met. Pending dials are counted only when they matter: each
        // connection looked at is a cache miss in a large simulation.
        let want = self.config.target_peers.min(self.config.max_peers).saturating_sub(self.conns.len());
        // Exploration: a node content with its peers never dials again, so two groups that
        // each filled their members' peer sets during a partition would stay apart after it heals.
        let soft_cap = (2 * self.config.target_peers).min(self.config.max_peers);
        let explore = now >= self.next_explore && self.conns.len() < soft_cap;
        let pending = if want > 0 || explore {
            self.conns
                .values()
                .filter(|c| !matches!(c.phase, Phase::Up(_)))
                .filter(|c| c.direction() == Direction::Outbound)
                .count()
        } else {
            0
        };
        let mut n = want.min(MAX_PENDING_DIALS.saturating_sub(pending));
        if n == 0 && explore && pending == 0 {
            n = 1;
            self.next_explore = now + self.config.explore_interval.mul_f64(0.5 + self.rng.unit());
        }
        if n > 0 {
            self.dial_more(now, n);
        }

        // What follows needs the established peers: found only on a tick that uses them.
        let announce = !self.joined && self.config.announce_presence;
        let sync = self.config.repair && now >= self.next_sync;
        if !(announce || sync || now >= self.next_exchange || now >= self.next_announce) {
            return;
        }
        let up = self.up_conns();
        if up.is_empty() {
            return;
        }
        // Announced at a tick rather than at the first handshake: a first neighbour that was
        // full and only referred us elsewhere is gone by now, and would have taken it along.
        if announce {
            self.joined = true;
            self.originate(now, Body::Join);
        }
        // Peer exchange: often while short of peers, rarely once content.
        if now >= self.next_exchange {
            let conn = up[self.rng.below(up.len())];
            self.request_peers(conn);
            let short = self.conns.len() < self.config.target_peers;
            let wait = if short { self.config.exchange_interval / 6 } else { self.config.exchange_interval };
            self.next_exchange = now + wait;
        }
        if now >= self.next_announce {
            // Our neighbours' addresses stay in the book (one may have been evicted for a
            // learned address since). Each peer told its listen port in its hello, so nothing
            // needs sending for this: `Announce` frames are still understood, no longer sent.
            let addrs: Vec<SocketAddr> = up.iter().filter_map(|c| self.conns.get(c)?.listen_addr()).collect();
            for a in addrs {
                self.book.add(a, Source::Inbound, now);
                self.book.touch(&a);
            }
            self.next_announce = now + self.config.announce_interval;
        }
        if self.config.repair && now >= self.next_sync {
            let conn = up[self.rng.below(up.len())];
            self.start_sync(now, conn);
            // Jitter keeps neighbours from syncing in lockstep.
            self.next_sync = now + self.config.sync_interval.mul_f64(0.75 + self.rng.unit() / 2.0);
        }
    }
}
