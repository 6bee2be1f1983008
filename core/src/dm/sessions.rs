//! The sessions a ratchet keeps per peer, whatever the ratchet: a few per peer, newest first (two
//! first contacts can cross; a restarted peer starts anew), the least recently used peer's dropped
//! past a bound, and what the last decryption from each peer made of its session held apart until
//! the message is confirmed (see `DmCrypto::confirm`).

use std::collections::BTreeMap;

use super::crypto::CryptoError;
use crate::identity::PeerId;

/// Sessions kept per peer.
const SESSIONS_PER_PEER: usize = 3;
/// Peers with sessions; past it the least recently used peer's sessions are dropped.
const PEERS_MAX: usize = 4096;
/// Pending (unconfirmed) sessions, over all peers.
const PENDING_MAX: usize = 64;

pub(super) struct Sessions<S> {
    /// Newest first, each list non-empty.
    peers: BTreeMap<PeerId, Peer<S>>,
    /// What the last decryption from each peer made of its session, until confirmed.
    pending: BTreeMap<PeerId, S>,
    /// Ticks of use, to find the least recently used peer.
    tick: u64,
}

struct Peer<S> {
    sessions: Vec<S>,
    used: u64,
}

impl<S> Sessions<S> {
    pub(super) fn new() -> Sessions<S> {
        Sessions { peers: BTreeMap::new(), pending: BTreeMap::new(), tick: 0 }
    }

    /// Sessions restored after a restart (nothing pending, no use recorded).
    #[cfg(feature = "olm")]
    pub(super) fn restored(peers: impl IntoIterator<Item = (PeerId, Vec<S>)>) -> Sessions<S> {
        let peers =
            peers.into_iter().filter(|(_, s)| !s.is_empty()).map(|(id, sessions)| (id, Peer { sessions, used: 0 }));
        Sessions { peers: peers.collect(), pending: BTreeMap::new(), tick: 0 }
    }

    /// Every peer's sessions, newest first: what a ratchet saves.
    #[cfg(feature = "olm")]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&PeerId, &[S])> {
        self.peers.iter().map(|(id, p)| (id, p.sessions.as_slice()))
    }

    pub(super) fn has(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// `peer`'s sessions, newest first (none if there are none).
    pub(super) fn of(&self, peer: &PeerId) -> &[S] {
        self.peers.get(peer).map_or(&[], |p| &p.sessions)
    }

    /// The session to send to `peer` on: the newest.
    pub(super) fn current(&mut self, peer: &PeerId) -> Result<&mut S, CryptoError> {
        self.tick += 1;
        let p = self.peers.get_mut(peer).ok_or(CryptoError::NoSession)?;
        p.used = self.tick;
        Ok(&mut p.sessions[0])
    }

    /// Puts `session` in front of `peer`'s.
    pub(super) fn add(&mut self, peer: PeerId, session: S) {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.peers.entry(peer).or_insert_with(|| Peer { sessions: Vec::new(), used: tick });
        entry.used = tick;
        entry.sessions.insert(0, session);
        entry.sessions.truncate(SESSIONS_PER_PEER);
        if self.peers.len() > PEERS_MAX {
            let oldest = self.peers.iter().min_by_key(|(_, p)| p.used).map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.peers.remove(&id);
            }
        }
    }

    /// Holds what a decryption from `from` made of its session, until `confirm` or `discard`.
    pub(super) fn hold(&mut self, from: PeerId, session: S) {
        if self.pending.len() >= PENDING_MAX && !self.pending.contains_key(&from) {
            self.pending.pop_first();
        }
        self.pending.insert(from, session);
    }

    /// The held session of `from` replaces the one it came from (`same` tells them apart) and
    /// goes in front: the session that last received is the one to answer on.
    pub(super) fn confirm(&mut self, from: &PeerId, same: impl Fn(&S, &S) -> bool) {
        let Some(s) = self.pending.remove(from) else { return };
        if let Some(p) = self.peers.get_mut(from) {
            p.sessions.retain(|old| !same(old, &s));
        }
        self.add(*from, s);
    }

    pub(super) fn discard(&mut self, from: &PeerId) {
        self.pending.remove(from);
    }
}
