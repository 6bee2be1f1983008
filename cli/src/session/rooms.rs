//! The room commands: `/join`, `/create`, `/invite`, `/rooms`, `/room`, `/part`, and `/history`,
//! which shows the current room's chats.
//!
//! A `/join` or `/create` waits for the node's answer (a moment; at most `rooms::ANSWER_WAIT`) and
//! makes the room current, so that the next line typed, even by a script, goes to it; a `/part`
//! waits too, so that after leaving the current room the next line goes to the default room.

use std::net::SocketAddr;

use p2p_chat_core::rooms::{Invite, RoomKeys};
use p2p_chat_core::{Access, Body, Chat, Command, RoomId, Time};

use super::Ctx;
use crate::rooms::{public_id, Pick, ANSWER_WAIT, INVITE_VALID};

impl Ctx {
    /// Joins the public room `name` (normalised), and makes it current if `current`.
    pub(super) fn join_public(&self, name: &str, current: bool) {
        let id = public_id(name);
        self.join(Some(id), Command::JoinPublic(name.to_owned()), current);
    }

    pub(super) fn join_invite(&self, code: &str) {
        // Read here only to know the room; the node checks the code again and says what is wrong.
        let now = Time::from_millis(chrono::Utc::now().timestamp_millis().max(0) as u64);
        let id = Invite::from_code(code, &self.verifier, now)
            .ok()
            .map(|i| RoomKeys::with_owner(&i.secret, Some(&i.owner)).id);
        self.join(id, Command::JoinInvite(code.to_owned()), true);
    }

    pub(super) fn create(&self, name: &str) {
        let cmd = Command::CreateRoom { name: name.to_owned(), addrs: self.invite_addrs(), valid_for: INVITE_VALID };
        self.join(None, cmd, true);
    }

    /// Sends a joining command and waits for its answer. `id`: the room, when known beforehand.
    fn join(&self, id: Option<RoomId>, cmd: Command, current: bool) {
        let rooms = &self.shared.rooms;
        if let Some(id) = id.filter(|id| rooms.lock().get(id).is_some()) {
            // Already in it (the node is still told: an invite's addresses are worth dialing).
            self.handle.command(cmd);
            return self.switch(id);
        }
        let seen = rooms.answers();
        self.handle.command(cmd);
        let joined = rooms.await_answer(seen, ANSWER_WAIT).last_joined;
        match (joined, id) {
            (Some(j), Some(id)) if j != id => {}
            (Some(j), _) if current => self.switch(j),
            _ => {}
        }
    }

    /// Makes `id` current (closing an open conversation), and says so.
    pub(super) fn switch(&self, id: RoomId) {
        self.typing_stopped();
        self.dms().set_current(None);
        let title = {
            let mut list = self.shared.rooms.lock();
            list.switch(id);
            list.title(&id)
        };
        self.say(format!("--- current room: {title} (your lines go there)"));
    }

    pub(super) fn pick_room(&self, what: &str) {
        let picked = self.shared.rooms.lock().pick(what);
        match picked {
            Ok(Pick::Default) => self.switch(RoomId::DEFAULT),
            Ok(Pick::Room(id)) => self.switch(id),
            Err(e) => self.say(format!("!!! {e}")),
        }
    }

    pub(super) fn part(&self, what: Option<&str>) {
        let picked = {
            let list = self.shared.rooms.lock();
            match what {
                Some(w) => list.pick(w),
                None if list.current().is_default() => Ok(Pick::Default),
                None => Ok(Pick::Room(list.current())),
            }
        };
        match picked {
            Ok(Pick::Default) => {
                self.say("!!! everyone is in the default room and stays in it: /quit leaves the network".into())
            }
            Ok(Pick::Room(id)) => {
                // Waited for, so that the lines typed next go to the room that is current then.
                let seen = self.shared.rooms.answers();
                self.handle.command(Command::Part(id));
                drop(self.shared.rooms.await_answer(seen, ANSWER_WAIT));
            }
            Err(e) => self.say(format!("!!! {e}")),
        }
    }

    pub(super) fn invite(&self) {
        let list = self.shared.rooms.lock();
        let current = list.current();
        let problem = match list.get(&current) {
            None => Some(
                "the default room has no invite: everyone is in it. /create #name starts a private room".to_owned(),
            ),
            Some(e) if e.info.access == Access::Public => {
                let name = crate::ui::clean_name(&e.info.name);
                Some(format!("#{name} is public: anyone can /join #{name}, no invite needed"))
            }
            Some(_) => None,
        };
        drop(list);
        match problem {
            Some(p) => self.say(format!("!!! {p}")),
            None => self.handle.command(Command::Invite {
                room: current,
                addrs: self.invite_addrs(),
                valid_for: INVITE_VALID,
            }),
        }
    }

    pub(super) fn rooms_text(&self) -> String {
        let summaries = self.handle.rooms();
        let peers = self.handle.peers().len();
        self.style.rooms_table(&self.shared.rooms.lock(), &summaries, peers)
    }

    fn invite_addrs(&self) -> Vec<SocketAddr> {
        crate::rooms::invite_addrs(self.handle.local_addr())
    }

    /// The last `n` chats of the current room, opened with its key.
    pub(super) fn history_text(&self, n: usize) -> String {
        let room = self.shared.rooms.lock().current();
        if let Some(Err(e)) = self.store.as_ref().map(|s| s.recent_in(room, 1)) {
            return format!("!!! cannot read history: {e}");
        }
        // A room's membership operations are not chats to read (`/members` shows what they made).
        let mut chats: Vec<Chat> =
            self.room_chats(room, n * 4).into_iter().filter(|c| !matches!(c.body, Body::Op(_))).collect();
        chats.drain(..chats.len().saturating_sub(n));
        let list = self.shared.rooms.lock();
        // The default room's history reads as it did before there were rooms.
        let place = if room.is_default() { String::new() } else { format!(" in {}", list.title(&room)) };
        if chats.is_empty() {
            return format!("no history yet{place}");
        }
        let mut out = format!("last {} chat(s){place}:", chats.len());
        for c in &chats {
            out.push('\n');
            out += &self.style.history_line(c, &list);
        }
        out
    }
}
