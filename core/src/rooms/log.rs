//! A private room's membership log: signed operations (join, remove, ban, unban, grant and revoke
//! admin, redact, rekey) and the one deterministic rule that turns any set of them into the room's
//! membership.
//!
//! Each operation travels as a chat of the room (`Body::Op`), so it is signed by its author, bound
//! to its room and its id, and spread, synced and stored like any chat. This module sees only the
//! verified operations and decides what they do.
//!
//! ## The rule
//!
//! Operations are applied in the order of their ids (UUIDv7: the author's clock, then random
//! bits, so two ids never tie), each checked against the state that the operations before it
//! made; one that its author had no right to make at that point does nothing. The state is a pure
//! function of the *set* of operations, so every member that holds the same operations, whatever
//! order they arrived in, computes the same membership. Two admins who remove each other in a
//! partition: the earlier removal wins and the later one, by a member no longer there, does
//! nothing. A ban crossing a grant: whichever id is first decides.
//!
//! - The **owner** (whose key the room's id is derived from) is always a member and an admin; no
//!   operation touches it.
//! - `Join`: the author joins with an invite signed by a member, issued after the author's last
//!   removal or ban (so no invite from before a ban lets it back in), while not banned.
//! - `Remove`, `Ban`: by an admin; the target is not the owner. A ban also holds while the target
//!   is away, until `Unban` (by an admin).
//! - `Grant`, `Revoke`: admin rights, by the owner only, to a member.
//! - `Redact`: of a chat by its author, or by an admin.
//! - `Rekey`: a new room key (see `epoch`), by an admin. It names, as a digest, the removals its
//!   author had seen; when the room's removals differ from those of its newest rekey (two
//!   partitions removed different members), the key may be known to a removed member, and the
//!   room is *stale* until an admin rekeys again.
//!
//! Memory is bounded: at most [`MAX_OPS`] operations per room and [`MAX_OPS_PER_AUTHOR`] per
//! author; beyond them an operation is refused with a typed error.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chat::ChatId;
use crate::identity::{PublicKey, Signature};

/// Most operations a room's log holds.
pub const MAX_OPS: usize = 4096;
/// Most operations of one author a room's log holds: a hostile member cannot fill the log alone.
pub const MAX_OPS_PER_AUTHOR: usize = 512;

/// What an invite said, as its holder shows it in `Join` (the room's name and secret are left
/// out: every member has them, and the secret must not travel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinProof {
    pub addrs: Vec<SocketAddr>,
    pub issued_ms: u64,
    pub expires_ms: u64,
    pub inviter: PublicKey,
    pub signature: Signature,
}

/// One operation. Its author, id and room are those of the chat it travels in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Join(JoinProof),
    Remove(PublicKey),
    Ban(PublicKey),
    Unban(PublicKey),
    Grant(PublicKey),
    Revoke(PublicKey),
    /// Hide the chat `chat`, written by `author`, everywhere.
    Redact {
        chat: ChatId,
        author: PublicKey,
    },
    /// A new room key: `check` commits to it (see `epoch::check`), `seen` is the digest of the
    /// removals its author had seen ([`Membership::removals`]).
    Rekey {
        check: [u8; 32],
        seen: [u8; 32],
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

/// Why an operation was not taken into the log. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("the room's log is full ({MAX_OPS} operations)")]
    Full,
    #[error("this author has {MAX_OPS_PER_AUTHOR} operations in the room's log already")]
    AuthorFull,
    #[error("already in the log")]
    Duplicate,
}

/// What an operation did when the log was last computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Applied,
    /// Its author had no right to it at that point, or it changed nothing.
    Ignored,
}

/// The membership the operations make.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Membership {
    pub members: BTreeMap<PublicKey, Role>,
    pub banned: BTreeSet<PublicKey>,
    /// Per identity removed or banned: the id of the last such operation. Invites issued before
    /// it do not let it back in; its chats after it are refused.
    pub out: BTreeMap<PublicKey, ChatId>,
    /// Redacted chats and their authors.
    pub redacted: BTreeMap<ChatId, PublicKey>,
    /// The newest rekey in force: its id (the epoch), its key check, and the removals it saw.
    pub epoch: Option<(ChatId, [u8; 32], [u8; 32])>,
    /// Digest of the ids of every removal and ban that took effect (SHA-256 over them in order).
    pub removals: [u8; 32],
}

impl Membership {
    pub fn role(&self, who: &PublicKey) -> Option<Role> {
        self.members.get(who).copied()
    }

    pub fn is_admin(&self, who: &PublicKey) -> bool {
        self.role(who).is_some_and(|r| r >= Role::Admin)
    }

    /// Whether a removal took effect that the room's key has not been changed for since.
    pub fn is_stale(&self) -> bool {
        match &self.epoch {
            Some((_, _, seen)) => *seen != self.removals,
            None => self.removals != no_removals(),
        }
    }
}

/// The digest of no removals.
pub fn no_removals() -> [u8; 32] {
    Sha256::digest(b"p2p-chat/room/removals/v1").into()
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    author: PublicKey,
    op: Op,
    effect: Effect,
}

/// A room's log and the membership it makes.
#[derive(Clone, Debug)]
pub struct MemberLog {
    owner: PublicKey,
    ops: BTreeMap<ChatId, Entry>,
    per_author: BTreeMap<PublicKey, usize>,
    state: Membership,
    removals: Sha256,
}

impl MemberLog {
    pub fn new(owner: PublicKey) -> MemberLog {
        let mut log = MemberLog {
            owner,
            ops: BTreeMap::new(),
            per_author: BTreeMap::new(),
            state: Membership::default(),
            removals: Sha256::new(),
        };
        log.reset();
        log
    }

    pub fn owner(&self) -> &PublicKey {
        &self.owner
    }

    pub fn state(&self) -> &Membership {
        &self.state
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn contains(&self, id: &ChatId) -> bool {
        self.ops.contains_key(id)
    }

    /// What the operation `id` did, if it is in the log.
    pub fn effect(&self, id: &ChatId) -> Option<Effect> {
        self.ops.get(id).map(|e| e.effect)
    }

    /// The operation `id` and its author.
    pub fn get(&self, id: &ChatId) -> Option<(&PublicKey, &Op)> {
        self.ops.get(id).map(|e| (&e.author, &e.op))
    }

    /// Takes in a verified operation (whose invite, for a `Join`, the caller checked) and
    /// recomputes the membership: only from it on, when it is the newest (the usual case), else
    /// from the start.
    pub fn insert(&mut self, id: ChatId, author: PublicKey, op: Op) -> Result<Effect, LogError> {
        if self.ops.contains_key(&id) {
            return Err(LogError::Duplicate);
        }
        if self.ops.len() >= MAX_OPS {
            return Err(LogError::Full);
        }
        let n = self.per_author.get(&author).copied().unwrap_or(0);
        if n >= MAX_OPS_PER_AUTHOR {
            return Err(LogError::AuthorFull);
        }
        self.per_author.insert(author, n + 1);
        let newest = self.ops.last_key_value().is_none_or(|(last, _)| *last < id);
        self.ops.insert(id, Entry { author, op, effect: Effect::Ignored });
        if newest {
            self.apply(id);
        } else {
            self.reset();
            let ids: Vec<ChatId> = self.ops.keys().copied().collect();
            for i in ids {
                self.apply(i);
            }
        }
        Ok(self.ops[&id].effect)
    }

    /// Every operation, in the order the rule applies them.
    pub fn iter(&self) -> impl Iterator<Item = (ChatId, &PublicKey, &Op, Effect)> {
        self.ops.iter().map(|(id, e)| (*id, &e.author, &e.op, e.effect))
    }

    fn reset(&mut self) {
        self.state = Membership::default();
        self.state.members.insert(self.owner, Role::Owner);
        self.removals = Sha256::new();
        self.removals.update(b"p2p-chat/room/removals/v1");
        self.state.removals = self.removals.clone().finalize().into();
    }

    /// Applies operation `id` to the state the operations before it made.
    fn apply(&mut self, id: ChatId) {
        let Some(e) = self.ops.get(&id) else { return };
        let (author, op) = (e.author, e.op.clone());
        let s = &mut self.state;
        let admin = s.is_admin(&author);
        let owner = self.owner;
        let applied = match op {
            Op::Join(proof) => {
                let invited_after_out = s.out.get(&author).is_none_or(|o| proof.issued_ms > o.timestamp_ms());
                let ok = !s.members.contains_key(&author)
                    && !s.banned.contains(&author)
                    && invited_after_out
                    && s.members.contains_key(&proof.inviter);
                if ok {
                    s.members.insert(author, Role::Member);
                }
                ok
            }
            Op::Remove(who) | Op::Ban(who) if !admin || who == owner => false,
            Op::Remove(who) => {
                let ok = s.members.remove(&who).is_some();
                if ok {
                    s.out.insert(who, id);
                    self.removals.update(id.0);
                }
                ok
            }
            Op::Ban(who) => {
                s.members.remove(&who);
                let ok = s.banned.insert(who);
                if ok {
                    s.out.insert(who, id);
                    self.removals.update(id.0);
                }
                ok
            }
            Op::Unban(who) => admin && s.banned.remove(&who),
            Op::Grant(who) => {
                let ok = author == owner && s.role(&who) == Some(Role::Member);
                if ok {
                    s.members.insert(who, Role::Admin);
                }
                ok
            }
            Op::Revoke(who) => {
                let ok = author == owner && s.role(&who) == Some(Role::Admin);
                if ok {
                    s.members.insert(who, Role::Member);
                }
                ok
            }
            Op::Redact { chat, author: of } => {
                let ok = (of == author && s.members.contains_key(&author)) || admin;
                ok && s.redacted.insert(chat, of).is_none()
            }
            Op::Rekey { check, seen } => {
                if admin {
                    s.epoch = Some((id, check, seen));
                }
                admin
            }
        };
        s.removals = self.removals.clone().finalize().into();
        if let Some(e) = self.ops.get_mut(&id) {
            e.effect = if applied { Effect::Applied } else { Effect::Ignored };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }
    fn id(n: u64) -> ChatId {
        ChatId::new_v7(n, &[0; 10])
    }
    fn join(inviter: u8, issued_ms: u64) -> Op {
        Op::Join(JoinProof {
            addrs: vec![],
            issued_ms,
            expires_ms: u64::MAX,
            inviter: k(inviter),
            signature: Signature([0; 64]),
        })
    }

    #[test]
    fn admins_remove_owners_grant_and_a_ban_refuses_older_invites() {
        let mut log = MemberLog::new(k(0));
        assert_eq!(log.insert(id(1), k(1), join(0, 1)), Ok(Effect::Applied));
        assert_eq!(log.insert(id(2), k(2), join(1, 2)), Ok(Effect::Applied), "any member may invite");
        assert_eq!(log.insert(id(3), k(1), Op::Remove(k(2))), Ok(Effect::Ignored), "not an admin");
        assert_eq!(log.insert(id(4), k(1), Op::Grant(k(1))), Ok(Effect::Ignored), "only the owner grants");
        assert_eq!(log.insert(id(5), k(0), Op::Grant(k(1))), Ok(Effect::Applied));
        assert_eq!(log.insert(id(6), k(1), Op::Ban(k(2))), Ok(Effect::Applied));
        assert_eq!(log.insert(id(7), k(1), Op::Remove(k(0))), Ok(Effect::Ignored), "the owner stays");
        assert!(log.state().is_stale(), "a removal without a new key");
        assert_eq!(log.insert(id(8), k(2), join(0, 7)), Ok(Effect::Ignored), "banned");
        assert_eq!(log.insert(id(9), k(0), Op::Unban(k(2))), Ok(Effect::Applied));
        assert_eq!(log.insert(id(10), k(2), join(0, 5)), Ok(Effect::Ignored), "an invite from before the ban");
        assert_eq!(log.insert(id(11), k(2), join(0, 10)), Ok(Effect::Applied));
        assert_eq!(log.insert(id(11), k(2), join(0, 10)), Err(LogError::Duplicate));
        let seen = log.state().removals;
        assert_eq!(log.insert(id(12), k(1), Op::Rekey { check: [1; 32], seen }), Ok(Effect::Applied));
        assert!(!log.state().is_stale());
    }

    #[test]
    fn two_admins_removing_each_other_leave_the_earlier_removal() {
        let mut log = MemberLog::new(k(0));
        for (i, who) in [(1, 1), (2, 2)] {
            log.insert(id(i), k(who), join(0, i)).unwrap();
            log.insert(id(10 + i), k(0), Op::Grant(k(who))).unwrap();
        }
        // Inserted newest first: the rule is by id, not by arrival.
        log.insert(id(21), k(2), Op::Remove(k(1))).unwrap();
        log.insert(id(20), k(1), Op::Remove(k(2))).unwrap();
        assert_eq!(log.effect(&id(20)), Some(Effect::Applied));
        assert_eq!(log.effect(&id(21)), Some(Effect::Ignored));
        assert!(log.state().members.contains_key(&k(1)) && !log.state().members.contains_key(&k(2)));
    }

    #[test]
    fn an_author_cannot_fill_the_log() {
        let mut log = MemberLog::new(k(0));
        for i in 0..MAX_OPS_PER_AUTHOR as u64 {
            log.insert(id(i), k(9), Op::Unban(k(1))).unwrap();
        }
        assert_eq!(log.insert(id(1 << 40), k(9), Op::Unban(k(1))), Err(LogError::AuthorFull));
        assert_eq!(log.len(), MAX_OPS_PER_AUTHOR);
    }
}
