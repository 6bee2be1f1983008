//! Epoch keys a private room's member lacks, asked of its member neighbours (docs/PROTOCOL.md 9.3).
//!
//! A rekey's maker hands the new key to every member in a direct message, and only the key in
//! force: a member that missed one (away in a partition while newer rekeys came, a message that
//! never arrived, no bundle to seal for when the key was new) could never open the chats sealed
//! with it. So every room round a member that holds chats it cannot open, or lacks the key in
//! force, asks one member neighbour for those epochs (`KeysWanted`), and the neighbour answers
//! with the keys the asker may hold (`Keys`) over their connection, which is encrypted and bound
//! to both identities.
//!
//! The asker may hold an epoch's key if, in the answerer's log, it is a member and its last
//! `Join` came before that epoch's `Rekey`: it was a member, without a break, from before the key
//! until now. An answerer whose log is stale answers nothing: a removal may be missing from it
//! (see `hand_keys`). A key that came is checked against its `Rekey` like one from a direct
//! message.

use super::*;
use crate::rooms::log::Effect;
use crate::rooms::{Op, FIRST_EPOCH};
use crate::wire::RoomMessage;

/// Most epochs one `KeysWanted` names, and one `Keys` answers.
pub const MAX_KEYS_WANTED: usize = 16;

impl Node {
    /// The epochs of room `ix` whose keys this node, a member, lacks: the one in force and those
    /// of the chats held for their key, each a `Rekey` of its log.
    fn keys_missing(&self, ix: RoomIx) -> Vec<ChatId> {
        let me = self.public_key();
        let Some(j) = self.rooms.get(ix) else { return Vec::new() };
        let Some(log) = &j.log else { return Vec::new() };
        if !log.state().members.contains_key(&me) {
            return Vec::new();
        }
        let current = log.state().epoch.map(|(e, _, _)| e);
        let held = j.moderation.waiting.iter().filter_map(|id| {
            let stored = j.room.dedup.get(id)?;
            let Body::Sealed(sealed) = &stored.chat.body else { return None };
            RoomKeys::sealed_epoch(sealed)
        });
        let mut want: BTreeSet<ChatId> = current.into_iter().chain(held).collect();
        want.retain(|e| {
            *e != FIRST_EPOCH
                && j.info.keys_for(*e).is_none()
                && matches!(log.get(e), Some((_, Op::Rekey { .. })))
                && log.effect(e) == Some(Effect::Applied)
        });
        want.into_iter().rev().take(MAX_KEYS_WANTED).collect()
    }

    /// Asks one member neighbour of room `ix`, at random, for the keys this node lacks.
    pub(super) fn want_keys(&mut self, ix: RoomIx) {
        let epochs = self.keys_missing(ix);
        if epochs.is_empty() {
            return;
        }
        let members: Vec<ConnId> =
            self.up_conns().into_iter().filter(|c| self.conns.get(c).is_some_and(|c| c.in_room(ix))).collect();
        if members.is_empty() {
            return;
        }
        let conn = members[self.rng.below(members.len())];
        self.send_room(conn, ix, RoomMessage::KeysWanted { epochs });
    }

    /// A member neighbour asks for keys: those it may hold go back, within its credit.
    pub(super) fn on_keys_wanted(&mut self, now: Time, conn: ConnId, ix: RoomIx, epochs: Vec<ChatId>) {
        if epochs.len() > MAX_KEYS_WANTED {
            return self.penalize(now, conn, Penalty::ProtocolViolation, "asked for too many room keys");
        }
        let Some(asker) = self.conns.get(&conn).and_then(|c| c.peer_key()) else { return };
        let Some(j) = self.rooms.get(ix) else { return };
        let Some(log) = &j.log else { return };
        let s = log.state();
        if s.is_stale() || !s.members.contains_key(&asker) {
            return;
        }
        let joined = log
            .iter()
            .filter(|(_, a, op, effect)| **a == asker && matches!(op, Op::Join(_)) && *effect == Effect::Applied)
            .map(|(id, _, _, _)| id)
            .last();
        let keys: Vec<(ChatId, [u8; 32])> = epochs
            .iter()
            .filter(|e| joined.is_none_or(|at| at < **e) && log.effect(e) == Some(Effect::Applied))
            .filter(|e| matches!(log.get(e), Some((_, Op::Rekey { .. }))))
            .filter_map(|e| j.info.epochs.iter().find(|(x, _)| x == e).copied())
            .collect();
        if keys.is_empty() {
            return;
        }
        let msg = RoomMessage::Keys { keys };
        let size = wire::frame_size_hint(&Message::Room { room: j.info.id, msg: msg.clone() });
        if self.afford(conn, size).is_ok() {
            self.send_room(conn, ix, msg);
        }
    }

    /// Keys from a member neighbour: each taken if its `Rekey` is in the log and checks out.
    pub(super) fn on_keys(&mut self, now: Time, conn: ConnId, ix: RoomIx, keys: Vec<(ChatId, [u8; 32])>) {
        if keys.len() > MAX_KEYS_WANTED {
            return self.penalize(now, conn, Penalty::ProtocolViolation, "sent too many room keys");
        }
        let Some(j) = self.rooms.get(ix) else { return };
        let Some(log) = &j.log else { return };
        let room = j.info.id;
        // Only for rekeys already held: one this node has not seen would wait unchecked, and an
        // unasked-for flood of those would push out keys that came by direct message.
        let known: Vec<(ChatId, [u8; 32])> = keys.into_iter().filter(|(e, _)| log.contains(e)).collect();
        for (epoch, key) in known {
            self.on_room_key(now, room, epoch, key);
        }
    }
}
