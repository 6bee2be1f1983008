//! Moderation in the simulator (`--kicks N`, with `--rooms`): every room is private, made by an
//! owner that does not crash (`Command::CreateRoom`), and its other members join with the
//! owner's invite as they start. Shortly before the fault phase the owner makes one member an
//! admin; during the fault phase's first 60% (so across `--partition`) the owner and the admin
//! take turns removing N members in all, every other one with a ban. Removal targets neither
//! crash nor write chats of that room, and a removed node never joins it again.
//!
//! Two things are checked. **Convergence:** after heal, every live member of every room holds
//! the same membership (each identity's role and ban, from the room's log), and no removed node is
//! a member in it. **No reading after removal:** each chat of a room written by a member whose
//! log had already taken in a removal is kept, and at the end the simulator tries every key the
//! removed node holds for the room (`Node::room_info`: the first epoch's and each later one it
//! was handed) on it directly. A chat written in the other half of a partition by a member that
//! had not heard of the removal yet is not counted: nobody there could know.

use std::sync::Arc;
use std::time::Duration;

use p2p_chat_core::rooms::Membership;
use p2p_chat_core::{Action, Chat, Command, Input, PublicKey, Time};
use serde::Serialize;

use super::{addr, Ev, World};

/// How long the owners' invites stay valid: the whole run.
const INVITE_VALID: Duration = Duration::from_secs(86_400);

/// What moderation did, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ModerationReport {
    pub kicks: usize,
    /// Removals that took effect at the owner or admin issuing them.
    pub removals: usize,
    /// Removals not issued (the issuer did not know the target or was not an admin yet).
    pub removals_refused: usize,
    /// Chats written after their writer knew of a removal, tried with the removed nodes' keys.
    pub chats_after_removal: usize,
    /// Of those, (chat, removed node) pairs the removed node could open: must be 0.
    pub removed_can_read: usize,
    /// Whether every live member of every room ended with the same membership, without the
    /// removed nodes.
    pub moderation_converged: bool,
    /// When they first agreed after heal (and went on agreeing to the end).
    pub moderation_converge_s_after_heal: Option<f64>,
}

pub struct Moderation {
    kicks: usize,
    /// Per room: the owner, and the member the owner makes an admin.
    owner: Vec<u32>,
    admin: Vec<Option<u32>>,
    /// Per room: the owner's invite, once made.
    code: Vec<Option<String>>,
    /// The room whose `CreateRoom` is being carried out.
    creating: Option<u16>,
    /// The planned removals: room, issuer, target, and whether a ban.
    plan: Vec<(u16, u32, u32, bool)>,
    /// Removals that took effect at their issuer: room and target.
    removed: Vec<(u16, u32)>,
    refused: usize,
    /// The chat being written and the removed nodes its writer knew of.
    watch: Option<Vec<u32>>,
    /// Chats written after a removal their writer knew of, with the removed nodes.
    watched: Vec<(u16, Arc<Chat>, Vec<u32>)>,
    agreed_since: Option<Time>,
}

impl Moderation {
    /// Owners, admins and the removals, for `kicks` removals over the rooms; `steady(i)` says
    /// whether node `i` stays up all run.
    pub fn plan(
        w: &mut World,
        kicks: usize,
        fault_start: Time,
        fault: Duration,
        steady: impl Fn(usize) -> bool,
    ) -> Moderation {
        let rooms = w.rooms.members.len();
        let mut m = Moderation {
            kicks,
            owner: Vec::with_capacity(rooms),
            admin: Vec::with_capacity(rooms),
            code: vec![None; rooms],
            creating: None,
            plan: Vec::new(),
            removed: Vec::new(),
            refused: 0,
            watch: None,
            watched: Vec::new(),
            agreed_since: None,
        };
        let mut candidates: Vec<Vec<u32>> = Vec::with_capacity(rooms);
        for r in 0..rooms {
            let all = w.rooms.members[r].clone();
            let mut up: Vec<u32> = all.iter().copied().filter(|&x| steady(x as usize)).collect();
            let owner = if up.is_empty() { all[0] } else { up.swap_remove(w.rng.below(up.len())) };
            let admin = (!up.is_empty()).then(|| up.swap_remove(w.rng.below(up.len())));
            m.owner.push(owner);
            m.admin.push(admin);
            // At least two other steady members stay: someone is left to agree.
            let keep = up.len().min(2);
            let mut targets = up;
            let n = targets.len();
            w.rng.choose_k(&mut targets, n);
            targets.truncate(targets.len() - keep);
            candidates.push(targets);
        }
        let mut per_room = vec![0usize; rooms];
        for k in 0..kicks {
            // Round robin over the rooms that still have someone to remove.
            let Some(r) = (0..rooms).map(|j| (k + j) % rooms.max(1)).find(|&r| !candidates[r].is_empty()) else {
                break;
            };
            let target = candidates[r].pop().expect("not empty");
            let issuer = match m.admin[r] {
                Some(a) if per_room[r] % 2 == 1 => a,
                _ => m.owner[r],
            };
            per_room[r] += 1;
            m.plan.push((r as u16, issuer, target, k % 2 == 1));
            let at = fault_start + fault.mul_f64(0.05 + 0.55 * k as f64 / kicks.max(1) as f64);
            w.push(at, Ev::Kick(k as u32));
        }
        let grant_at = Time::from_millis(fault_start.as_millis().saturating_sub(3000));
        for r in 0..rooms {
            if m.admin[r].is_some() {
                w.push(grant_at, Ev::Grant(r as u16));
            }
        }
        m
    }

    /// The chat was written (or refused): nothing more to watch.
    pub fn unwatch(&mut self) {
        self.watch = None;
    }

    /// Whether `node` is to be removed from `room` at some point.
    pub fn is_target(&self, room: u16, node: usize) -> bool {
        self.plan.iter().any(|&(r, _, t, _)| r == room && t as usize == node)
    }

    fn is_removed(&self, room: u16, node: usize) -> bool {
        self.removed.iter().any(|&(r, t)| r == room && t as usize == node)
    }

    /// The owner's invite came out: the room's id is known from now on.
    pub fn invited(&mut self, code: &str) -> Option<u16> {
        let r = self.creating.take()?;
        self.code[r as usize] = Some(code.to_owned());
        Some(r)
    }

    /// A chat just written: kept if its writer knew of a removal.
    pub fn wrote(&mut self, room: Option<u16>, chat: &Arc<Chat>) {
        if let (Some(r), Some(targets)) = (room, self.watch.take()) {
            if !targets.is_empty() {
                self.watched.push((r, chat.clone(), targets));
            }
        }
    }
}

/// Whether `key` was removed or banned, and is not a member again.
fn removed(s: &Membership, key: &PublicKey) -> bool {
    s.out.contains_key(key) && !s.members.contains_key(key)
}

impl World {
    fn public_key_of(&self, i: usize) -> PublicKey {
        self.keys(i).public_key()
    }

    /// Node `i` starts: it makes the rooms it owns, and joins the others it was not removed from
    /// whose invite is out.
    pub(super) fn join_private(&mut self, i: usize, rooms: &[u16]) {
        for &r in rooms {
            let Some(m) = self.moderation.as_ref() else { return };
            if m.is_removed(r, i) {
                continue;
            }
            let cmd = match (&m.code[r as usize], m.owner[r as usize] as usize == i) {
                (None, true) => {
                    let name = self.rooms.names[r as usize].clone();
                    self.moderation.as_mut().expect("above").creating = Some(r);
                    Command::CreateRoom { name, addrs: vec![addr(i)], valid_for: INVITE_VALID }
                }
                (Some(code), _) => Command::JoinInvite(code.clone()),
                (None, false) => continue,
            };
            self.input(i, Input::Command(cmd));
        }
    }

    /// Room `r`'s invite is out: its members already up join.
    pub(super) fn invite_members(&mut self, r: u16) {
        let Some(code) = self.moderation.as_ref().and_then(|m| m.code[r as usize].clone()) else { return };
        let owner = self.moderation.as_ref().map(|m| m.owner[r as usize] as usize);
        for x in self.rooms.members[r as usize].clone() {
            let x = x as usize;
            if Some(x) != owner && self.slots[x].node.is_some() {
                self.input(x, Input::Command(Command::JoinInvite(code.clone())));
            }
        }
    }

    pub(super) fn grant(&mut self, r: u16) {
        let Some(admin) = self.moderation.as_ref().and_then(|m| m.admin[r as usize]) else { return };
        let owner = self.moderation.as_ref().map_or(0, |m| m.owner[r as usize] as usize);
        let who = self.public_key_of(admin as usize).peer_id();
        let room = self.rooms.ids[r as usize];
        self.input(owner, Input::Command(Command::Moderate { room, action: Action::Op(who) }));
    }

    pub(super) fn kick(&mut self, k: usize) {
        let Some(&(r, issuer, target, ban)) = self.moderation.as_ref().map(|m| &m.plan[k]) else { return };
        let (issuer, room) = (issuer as usize, self.rooms.ids[r as usize]);
        let key = self.public_key_of(target as usize);
        let action = if ban { Action::Ban(key.peer_id()) } else { Action::Kick(key.peer_id()) };
        self.input(issuer, Input::Command(Command::Moderate { room, action }));
        let gone = self.slots[issuer].node.as_ref().and_then(|n| n.membership(&room)).is_some_and(|s| removed(s, &key));
        let m = self.moderation.as_mut().expect("above");
        if gone {
            m.removed.push((r, target));
            self.metrics.room_removed(r, target as usize);
        } else {
            m.refused += 1;
        }
    }

    /// Before node `i` writes a chat in room `r`: the removals from it that `i` knows of.
    pub(super) fn watch(&mut self, i: usize, r: u16) {
        let Some(m) = self.moderation.as_ref() else { return };
        let room = self.rooms.ids[r as usize];
        let Some(s) = self.slots[i].node.as_ref().and_then(|n| n.membership(&room)) else { return };
        let known: Vec<u32> = m
            .removed
            .iter()
            .filter(|&&(rr, _)| rr == r)
            .map(|&(_, t)| t)
            .filter(|&t| removed(s, &self.public_key_of(t as usize)))
            .collect();
        self.moderation.as_mut().expect("above").watch = Some(known);
    }

    /// Whether every live member of every room holds the same membership, without the removed.
    fn moderation_agrees(&self) -> bool {
        let Some(m) = self.moderation.as_ref() else { return true };
        for r in 0..self.rooms.members.len() as u16 {
            let removed: Vec<PublicKey> =
                m.removed.iter().filter(|&&(rr, _)| rr == r).map(|&(_, t)| self.public_key_of(t as usize)).collect();
            let mut first: Option<&Membership> = None;
            for &x in &self.rooms.members[r as usize] {
                if m.is_removed(r, x as usize) {
                    continue;
                }
                let Some(node) = self.slots[x as usize].node.as_ref() else { continue };
                let Some(s) = node.membership(&self.rooms.ids[r as usize]) else { return false };
                if removed.iter().any(|k| s.members.contains_key(k)) {
                    return false;
                }
                match &first {
                    None => first = Some(s),
                    Some(f) if *f != s => return false,
                    Some(_) => {}
                }
            }
        }
        true
    }

    /// Checked every half second after heal: notes when the members came to agree.
    pub fn moderation_settled(&mut self) -> bool {
        if self.moderation.is_none() {
            return true;
        }
        let agrees = self.moderation_agrees();
        let now = self.now;
        let m = self.moderation.as_mut().expect("above");
        if !agrees {
            m.agreed_since = None;
        } else if m.agreed_since.is_none() {
            m.agreed_since = Some(now);
        }
        agrees
    }

    /// (chat, removed node) pairs where the removed node holds a key of the room that opens a
    /// chat written after its removal.
    fn removed_can_read(&self) -> usize {
        let Some(m) = self.moderation.as_ref() else { return 0 };
        let mut n = 0;
        for (r, chat, targets) in &m.watched {
            for &t in targets {
                let Some(info) =
                    self.slots[t as usize].node.as_ref().and_then(|x| x.room_info(&self.rooms.ids[*r as usize]))
                else {
                    continue;
                };
                let first = info.keys();
                let mut keys =
                    std::iter::once(first.clone()).chain(info.epochs.iter().map(|(e, k)| first.for_epoch(*e, k)));
                if keys.any(|k| chat.open(&k).is_some()) {
                    n += 1;
                }
            }
        }
        n
    }

    pub fn moderation_report(&self) -> Option<ModerationReport> {
        let m = self.moderation.as_ref()?;
        let converged = self.moderation_agrees();
        let can_read = self.removed_can_read();
        let heal_at = self.heal_at;
        Some(ModerationReport {
            kicks: m.kicks,
            removals: m.removed.len(),
            removals_refused: m.refused,
            chats_after_removal: m.watched.len(),
            removed_can_read: can_read,
            moderation_converged: converged,
            moderation_converge_s_after_heal: m.agreed_since.filter(|_| converged).map(|t| {
                if t > heal_at {
                    t.since(heal_at).as_secs_f64()
                } else {
                    0.0
                }
            }),
        })
    }
}
