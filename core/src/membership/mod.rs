//! Who we know and how we treat them: the address book and its dial backoff ([`book`]), and each
//! peer's standing: its score, the penalties that lower it, and the bans it ends in ([`Score`],
//! [`Bans`]). (Rate limits are in `rate`, the cost of answers in `serve`.)
//!
//! A peer's score starts at 0 on each connection, rises by 1 for each new valid chat it delivers
//! (up to [`MAX_SCORE`]), and falls by a [`Penalty`] for each broken rule; at [`BAN_SCORE`] the
//! connection is closed and the peer's key (and listen address, if it has one) is banned for a
//! while.

pub mod book;

use std::collections::BTreeMap;

pub use book::{AddressBook, Entry, KeyTag, Source, FORGET_AFTER_FAILURES};

use crate::identity::PeerId;
use crate::time::Time;

pub const BAN_SCORE: i32 = -100;
pub const MAX_SCORE: i32 = 100;

/// Why a peer's score drops, and by how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Penalty {
    /// A frame that does not decode.
    BadFrame,
    /// A chat whose signature fails, or that breaks the size limits.
    BadChat,
    /// A message that breaks the protocol (too many ids, an unasked `PeerResponse`, ...).
    ProtocolViolation,
    /// More traffic than the rate limit allows.
    Flood,
    /// Requests whose answers cost more than the peer's credit, or that ask again for chats
    /// already sent to it (see `serve`).
    Greedy,
}

impl Penalty {
    pub fn points(self) -> i32 {
        match self {
            Penalty::BadFrame => 25,
            Penalty::BadChat => 20,
            Penalty::ProtocolViolation => 10,
            Penalty::Flood => 2,
            Penalty::Greedy => 5,
        }
    }

    /// Penalties that come in floods are not each reported to the user; the ban is.
    pub fn is_quiet(self) -> bool {
        matches!(self, Penalty::Flood | Penalty::Greedy)
    }
}

/// One connection's score: between `BAN_SCORE` less the largest penalty and `MAX_SCORE`, so two
/// bytes hold it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Score(i16);

/// What a penalty did to a score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Still above `BAN_SCORE`.
    Kept,
    /// At or below it: the peer is to be banned.
    Banned,
}

impl Score {
    pub fn get(self) -> i32 {
        self.0.into()
    }

    /// A new valid chat from the peer.
    pub fn reward(&mut self) {
        self.0 = (self.0 + 1).min(MAX_SCORE as i16);
    }

    pub fn penalize(&mut self, why: Penalty) -> Standing {
        self.0 = self.0.saturating_sub(i16::try_from(why.points()).unwrap_or(i16::MAX));
        if i32::from(self.0) > BAN_SCORE {
            Standing::Kept
        } else {
            Standing::Banned
        }
    }
}

/// Banned identity keys and until when. Bounded by the bans of one `ban_duration`: each comes
/// from a peer that completed a handshake and broke rules, and expired ones are dropped as each new
/// one is added and when `forget_expired` runs.
#[derive(Debug, Default)]
pub struct Bans(BTreeMap<PeerId, Time>);

impl Bans {
    pub fn ban(&mut self, peer: PeerId, until: Time, now: Time) {
        self.forget_expired(now);
        self.0.insert(peer, until);
    }

    pub fn is_banned(&self, peer: &PeerId, now: Time) -> bool {
        self.0.get(peer).is_some_and(|t| *t > now)
    }

    pub fn forget_expired(&mut self, now: Time) {
        self.0.retain(|_, t| *t > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_bad_frames_ban_a_new_peer_and_good_chats_buy_slack() {
        let mut s = Score::default();
        assert!((0..3).all(|_| s.penalize(Penalty::BadFrame) == Standing::Kept));
        assert_eq!(s.penalize(Penalty::BadFrame), Standing::Banned);
        let mut t = Score::default();
        (0..500).for_each(|_| t.reward());
        assert_eq!(t.get(), MAX_SCORE);
        assert!((0..99).all(|_| t.penalize(Penalty::Flood) == Standing::Kept));
        assert_eq!(t.penalize(Penalty::Flood), Standing::Banned);
    }

    #[test]
    fn bans_end() {
        let mut b = Bans::default();
        let p = crate::identity::Ed25519Keys::from_seed(1);
        let id = crate::identity::Keys::public_key(&p).peer_id();
        b.ban(id, Time::from_millis(1000), Time::ZERO);
        assert!(b.is_banned(&id, Time::from_millis(999)));
        assert!(!b.is_banned(&id, Time::from_millis(1000)));
    }
}
