//! The moderation commands: `/block`, `/unblock`, `/blocks`, `/whois`, and in the current private
//! room `/kick`, `/ban`, `/unban`, `/op`, `/deop`, `/members`, `/redact`.
//!
//! Names are turned into keys here (`name#id`, as for `/msg`); whether an operation is allowed is
//! the node's to decide, and its refusal (`Event::Refused`) says why.

use p2p_chat_core::{Action, Body, Chat, Command, RoomId};

use super::Ctx;
use crate::commands::Moderation;

impl Ctx {
    pub(super) fn block(&self, who: &str, on: bool) {
        match self.resolve(who) {
            Ok(peer) if peer == self.me_id => self.say("!!! you cannot block yourself".into()),
            Ok(peer) => self.handle.command(if on { Command::Block(peer) } else { Command::Unblock(peer) }),
            Err(e) => self.say(format!("!!! {e}")),
        }
    }

    /// Every key seen this run using `name`, the first one first.
    pub(super) fn whois(&self, name: &str) -> String {
        let names = self.shared.names.lock().unwrap_or_else(|e| e.into_inner());
        let keys = names.keys(name);
        if keys.is_empty() {
            return format!("nobody called {} has been seen", crate::ui::clean_name(name));
        }
        let mut out = format!("{} key(s) use the name {}:", keys.len(), crate::ui::clean_name(name));
        for (i, peer) in keys.iter().enumerate() {
            let first = if i == 0 { "  (seen first)" } else { "" };
            out += &format!("\n  {}  {peer}{first}", self.style.who(name, peer));
        }
        out
    }

    /// The current room, if it is one that can be moderated.
    fn moderated_room(&self) -> Option<RoomId> {
        let room = self.shared.rooms.lock().current();
        if room.is_default() || self.conversation().is_some() {
            self.say("!!! moderation is for private rooms: /room #name makes one current".into());
            return None;
        }
        Some(room)
    }

    pub(super) fn moderate(&self, what: Moderation, who: &str) {
        let Some(room) = self.moderated_room() else { return };
        let peer = match self.resolve(who) {
            Ok(p) => p,
            Err(e) => return self.say(format!("!!! {e}")),
        };
        self.handle.command(Command::Moderate { room, action: what.on(peer) });
    }

    pub(super) fn members(&self) {
        if let Some(room) = self.moderated_room() {
            self.handle.command(Command::Members(room));
        }
    }

    /// Redacts your last chat in the current room, or the `n`-th last that `/history` shows.
    pub(super) fn redact(&self, n: Option<usize>) {
        let Some(room) = self.moderated_room() else { return };
        let chats = self.room_chats(room, crate::commands::HISTORY_DEFAULT.max(n.unwrap_or(0)) * 4);
        let mut texts = chats.iter().rev().filter(|c| matches!(c.body, Body::Sealed(_)));
        let chosen = match n {
            None => texts.find(|c| c.author_id() == self.me_id),
            Some(n) => texts.nth(n - 1),
        };
        match chosen {
            Some(c) => self.handle.command(Command::Moderate { room, action: Action::Redact(c.id) }),
            None => self.say("!!! no such chat here (/history lists them, the last one first)".into()),
        }
    }

    /// The newest `n` chats of `room` this program holds (the database, or memory), oldest first.
    pub(super) fn room_chats(&self, room: RoomId, n: usize) -> Vec<Chat> {
        match &self.store {
            Some(s) => s.recent_in(room, n).unwrap_or_default(),
            None => {
                let h = self
                    .shared
                    .history
                    .lock()
                    .map(|h| h.iter().filter(|c| c.room == room).map(|c| (**c).clone()).collect::<Vec<_>>());
                let h = h.unwrap_or_default();
                let skip = h.len().saturating_sub(n);
                h.into_iter().skip(skip).collect()
            }
        }
    }
}
