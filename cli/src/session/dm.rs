//! The direct message commands: `/msg name#id text`, `/dms` (the conversations, with unread
//! counts) and `/dms name#id` (one conversation, which is then read).

use p2p_chat_core::{Command, PeerId};

use super::Ctx;
use crate::dm::{line_text, TargetError};

/// Messages `/dms name#id` shows.
const CONVERSATION_SHOWN: usize = 50;

impl Ctx {
    fn resolve(&self, target: &str) -> Result<PeerId, TargetError> {
        let connected: Vec<(PeerId, String)> = self.handle.peers().into_iter().map(|p| (p.peer, p.username)).collect();
        self.dms().resolve(target, &connected)
    }

    fn dms(&self) -> std::sync::MutexGuard<'_, crate::dm::Dms> {
        self.shared.dms.lock().unwrap_or_else(|e| e.into_inner())
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

    pub(super) fn conversation_text(&self, target: &str) -> String {
        let peer = match self.resolve(target) {
            Ok(p) => p,
            Err(e) => return format!("!!! {e}"),
        };
        let mut dms = self.dms();
        let who = self.style.who(&dms.name(&peer), &peer);
        let lines = dms.open(&peer, CONVERSATION_SHOWN);
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
