//! The direct message commands: `/msg name#id text`, `/dms` (the conversations, with unread
//! counts) and `/dms name#id` (one conversation, which is then read and open); the open
//! conversation, where typed lines go as direct messages; and the typing notices it sends.
//!
//! Typing notices: "started" at the first key typed in an open conversation (not in a line that
//! starts with `/`), again every `dm::TYPING_SEND_EVERY` while keys keep coming, and "stopped"
//! once that long passes without a key, when the line is sent, or when the conversation is left.
//! The node sends them only to a recipient it is connected to, and not at all with `--no-typing`.

use std::time::Instant;

use p2p_chat_core::{Command, PeerId};

use super::Ctx;
use crate::dm::{line_text, TargetError, TYPING_SEND_EVERY};

/// The typing notice last sent.
#[derive(Clone, Copy)]
pub(super) struct TypingSent {
    to: PeerId,
    /// When "started" was last sent, and when the last key was typed.
    sent_at: Instant,
    key_at: Instant,
}

/// Messages `/dms name#id` shows.
const CONVERSATION_SHOWN: usize = 50;

impl Ctx {
    pub(super) fn resolve(&self, target: &str) -> Result<PeerId, TargetError> {
        let connected: Vec<(PeerId, String)> = self.handle.peers().into_iter().map(|p| (p.peer, p.username)).collect();
        self.dms().resolve(target, &connected)
    }

    pub(super) fn dms(&self) -> std::sync::MutexGuard<'_, crate::dm::Dms> {
        self.shared.dms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open conversation, where typed lines go.
    pub(super) fn conversation(&self) -> Option<PeerId> {
        if !self.shared.rooms.lock().in_conversation() {
            return None;
        }
        self.dms().current()
    }

    /// Opens the conversation with `peer`: typed lines go to it as direct messages.
    pub(super) fn open_conversation(&self, peer: PeerId) {
        self.typing_stopped();
        self.shared.rooms.lock().leave_for_conversation();
        let who = {
            let mut dms = self.dms();
            dms.set_current(Some(peer));
            self.style.who(&dms.name(&peer), &peer)
        };
        self.say(format!(
            "--- current conversation: {who} (your lines go there as direct messages; /history shows it)"
        ));
    }

    /// A key typed into the input line while a conversation may be open.
    pub(super) fn typing_key(&self) {
        let Some(to) = self.conversation() else { return };
        let now = Instant::now();
        match self.typing.get() {
            Some(t) if t.to == to && t.sent_at.elapsed() < TYPING_SEND_EVERY => {
                self.typing.set(Some(TypingSent { key_at: now, ..t }));
            }
            _ => {
                self.typing_stopped();
                self.handle.command(Command::Typing { to, on: true });
                self.typing.set(Some(TypingSent { to, sent_at: now, key_at: now }));
            }
        }
    }

    /// Says "stopped" once no key has come for `TYPING_SEND_EVERY`.
    pub(super) fn typing_idle(&self) {
        if self.typing.get().is_some_and(|t| t.key_at.elapsed() >= TYPING_SEND_EVERY) {
            self.typing_stopped();
        }
    }

    /// Says "stopped" if "started" was said.
    pub(super) fn typing_stopped(&self) {
        if let Some(t) = self.typing.take() {
            self.handle.command(Command::Typing { to: t.to, on: false });
        }
    }

    pub(super) fn msg(&self, to: &str, text: &str) {
        match self.resolve(to) {
            // Shown when the node has it (`Event::Dm`), with the other messages.
            Ok(peer) => self.handle.command(Command::Dm { to: peer, text: text.to_owned() }),
            Err(e) => self.say(format!("!!! {e}")),
        }
    }

    pub(super) fn dms_text(&self) -> String {
        let dms = self.dms();
        let list = dms.list();
        if list.is_empty() {
            return "no direct messages yet: /msg name#id text starts a conversation".into();
        }
        let mut out = String::from("direct messages (/dms name#id shows one):");
        for (peer, held, unread, at_ms) in list {
            let who = self.style.who(&dms.name(&peer), &peer);
            out += &format!("\n  {who}  {held} message(s), {unread} unread, last at {}", crate::ui::clock(at_ms));
        }
        out
    }

    /// `/dms name#id`: the conversation's last messages, and it becomes the open one, so that
    /// plain lines answer in it (as picking it on the full-screen view's room line does).
    pub(super) fn show_conversation(&self, target: &str) {
        match self.resolve(target) {
            Ok(peer) => {
                self.say(self.conversation_of(peer, CONVERSATION_SHOWN));
                self.open_conversation(peer);
            }
            Err(e) => self.say(format!("!!! {e}")),
        }
    }

    /// The last `n` messages with `peer`, which are then read.
    pub(super) fn conversation_of(&self, peer: PeerId, n: usize) -> String {
        let mut dms = self.dms();
        let who = self.style.who(&dms.name(&peer), &peer);
        let lines = dms.open(&peer, n);
        if lines.is_empty() {
            return format!("no direct messages with {who} yet");
        }
        let mut out = format!("last {} direct message(s) with {who}:", lines.len());
        for l in &lines {
            out.push('\n');
            out += &line_text(l, &who);
        }
        out
    }
}
