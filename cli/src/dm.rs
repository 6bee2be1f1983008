//! Direct messages as the user sees them: who a `name#id` is, the conversations and their unread
//! counts, and the lines that show them. The node encrypts and delivers; this only keeps what the
//! user was shown (and, with `--persist`, stores it through `store`).

use std::collections::{BTreeMap, VecDeque};

use p2p_chat_core::dm::{DmId, DmState};
use p2p_chat_core::PeerId;
use serde::{Deserialize, Serialize};

/// Messages kept in memory per conversation (the database keeps them all).
pub const MEMORY_PER_CONVERSATION: usize = 500;
/// A typing notice goes out at the first key typed in an open conversation, again after this
/// long if the typing goes on (so the other side's display does not expire it), and "stopped"
/// after this long without a key, or when the line is sent.
pub const TYPING_SEND_EVERY: std::time::Duration = std::time::Duration::from_secs(3);
/// How long "name#id is typing…" stays on screen without a fresh notice.
pub const TYPING_SHOWN: std::time::Duration = std::time::Duration::from_secs(5);
/// Peers remembered as typing; past it those whose notice is stale are forgotten.
pub const MAX_TYPING: usize = 64;
/// Names remembered for ids (peers met, chat authors, contacts); past it the oldest entry goes.
const MAX_NAMES: usize = 10_000;

/// One message of a conversation, as shown to the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmLine {
    pub id: DmId,
    /// The other side of the conversation, and its name when the message was shown.
    pub peer: PeerId,
    pub name: String,
    pub outgoing: bool,
    pub text: String,
    /// When it was written (unix ms, the sender's clock).
    pub at_ms: u64,
    /// An outgoing message's last state.
    pub state: Option<DmState>,
}

#[derive(Default)]
struct Conversation {
    lines: VecDeque<DmLine>,
    unread: usize,
}

/// Every conversation, and the names of the ids the user may write to.
#[derive(Default)]
pub struct Dms {
    /// Names by id, with the order they were learned in (to forget the oldest first).
    names: BTreeMap<PeerId, (String, u64)>,
    learned: u64,
    conversations: BTreeMap<PeerId, Conversation>,
    /// The conversation the full-screen view has open (typed lines go there): its messages are
    /// read as they come.
    current: Option<PeerId>,
}

/// Why `/msg` or `/dms` could not tell whom a `name#id` means.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{0:?} is not a peer: write name#id with the 8 hex digits shown beside the name, or the full 64-hex peer id"
    )]
    Malformed(String),
    #[error("no known peer has the id {0}: /peers lists the connected ones; the full 64-hex peer id always works")]
    Unknown(String),
    #[error("the id {0} is ambiguous ({1}): use the full 64-hex peer id")]
    Ambiguous(String, String),
}

impl Dms {
    /// Remembers `peer`'s name (a peer met, a chat's author, a message's sender).
    pub fn learn(&mut self, peer: PeerId, name: &str) {
        self.learned += 1;
        self.names.insert(peer, (name.to_owned(), self.learned));
        if self.names.len() > MAX_NAMES {
            let oldest = self.names.iter().min_by_key(|(_, (_, at))| *at).map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.names.remove(&id);
            }
        }
    }

    pub fn name(&self, peer: &PeerId) -> String {
        self.names.get(peer).map_or_else(|| "?".to_owned(), |(n, _)| n.clone())
    }

    /// Whom `target` (`name#1234abcd`, `#1234abcd`, `1234abcd` or a full peer id) means, among the
    /// ids known here and `also` (the connected peers).
    pub fn resolve(&self, target: &str, also: &[(PeerId, String)]) -> Result<PeerId, TargetError> {
        let id = target.rsplit_once('#').map_or(target, |(_, id)| id).to_ascii_lowercase();
        if id.len() == 64 {
            return parse_full(&id).ok_or_else(|| TargetError::Malformed(target.to_owned()));
        }
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TargetError::Malformed(target.to_owned()));
        }
        let mut found: BTreeMap<PeerId, String> = BTreeMap::new();
        let known = self.names.iter().map(|(p, (n, _))| (*p, n.clone()));
        let talked = self.conversations.keys().map(|p| (*p, self.name(p)));
        for (peer, name) in known.chain(talked).chain(also.iter().cloned()) {
            if peer.short() == id {
                found.entry(peer).or_insert(name);
            }
        }
        match found.len() {
            0 => Err(TargetError::Unknown(id)),
            1 => Ok(*found.keys().next().expect("one")),
            _ => {
                let all: Vec<String> =
                    found.iter().map(|(p, n)| format!("{}#{}… = {p}", crate::ui::clean_name(n), p.short())).collect();
                Err(TargetError::Ambiguous(id, all.join(", ")))
            }
        }
    }

    /// Adds a message; a received one counts as unread until its conversation is opened.
    pub fn add(&mut self, line: DmLine) {
        if !self.names.contains_key(&line.peer) && line.name != "?" {
            self.learn(line.peer, &line.name.clone());
        }
        let c = self.conversations.entry(line.peer).or_default();
        if let Some(same) = c.lines.iter_mut().find(|l| l.id == line.id) {
            *same = line;
            return;
        }
        if !line.outgoing && self.current != Some(line.peer) {
            c.unread += 1;
        }
        // In time order: messages loaded from the database, then those of this run.
        let at = c.lines.iter().rposition(|l| l.at_ms <= line.at_ms).map_or(0, |i| i + 1);
        c.lines.insert(at, line);
        if c.lines.len() > MEMORY_PER_CONVERSATION {
            c.lines.pop_front();
        }
    }

    /// Records an outgoing message's new state; the line to store again, if it is known.
    pub fn set_state(&mut self, peer: &PeerId, id: &DmId, state: DmState) -> Option<DmLine> {
        let line = self.conversations.get_mut(peer)?.lines.iter_mut().find(|l| l.id == *id)?;
        line.state = Some(state);
        Some(line.clone())
    }

    /// The conversation with `peer`, newest last (at most `n` messages), now read.
    pub fn open(&mut self, peer: &PeerId, n: usize) -> Vec<DmLine> {
        let Some(c) = self.conversations.get_mut(peer) else { return Vec::new() };
        c.unread = 0;
        let skip = c.lines.len().saturating_sub(n);
        c.lines.iter().skip(skip).cloned().collect()
    }

    /// The open conversation, if one is.
    pub fn current(&self) -> Option<PeerId> {
        self.current
    }

    /// Opens the conversation with `peer` (its messages now read), or closes the open one.
    pub fn set_current(&mut self, peer: Option<PeerId>) {
        self.current = peer;
        if let Some(c) = peer.and_then(|p| self.conversations.get_mut(&p)) {
            c.unread = 0;
        }
    }

    /// The peers of every conversation, in a fixed order (by id), for the room line.
    pub fn peers(&self) -> Vec<PeerId> {
        self.conversations.keys().copied().collect()
    }

    pub fn unread(&self, peer: &PeerId) -> usize {
        self.conversations.get(peer).map_or(0, |c| c.unread)
    }

    /// The conversation with `peer`, oldest first, without marking it read.
    pub fn lines(&self, peer: &PeerId) -> impl Iterator<Item = &DmLine> {
        self.conversations.get(peer).into_iter().flat_map(|c| c.lines.iter())
    }

    /// Every conversation: the peer, its messages held, unread ones, the newest message's time;
    /// the most recent first.
    pub fn list(&self) -> Vec<(PeerId, usize, usize, u64)> {
        let mut all: Vec<_> = self
            .conversations
            .iter()
            .map(|(p, c)| (*p, c.lines.len(), c.unread, c.lines.back().map_or(0, |l| l.at_ms)))
            .collect();
        all.sort_by_key(|(_, _, _, at)| std::cmp::Reverse(*at));
        all
    }
}

fn parse_full(hex: &str) -> Option<PeerId> {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(PeerId(out))
}

/// A state as one lowercase word (`sent`, `delivered`...).
pub fn state_name(state: DmState) -> &'static str {
    match state {
        DmState::Queued => "queued",
        DmState::Sent => "sent",
        DmState::Stored => "stored",
        DmState::Delivered => "delivered",
        DmState::Read => "read",
        DmState::Expired => "expired",
    }
}

/// A state change worth a line (`--- dm to name#id delivered`); `Queued` and `Sent` are not.
pub fn state_word(state: DmState) -> Option<&'static str> {
    match state {
        DmState::Queued | DmState::Sent => None,
        DmState::Stored => Some("stored (a mailbox holds it until the recipient is back)"),
        DmState::Delivered => Some("delivered"),
        DmState::Read => Some("read"),
        DmState::Expired => Some("expired (never delivered)"),
    }
}

/// A message's line: `[HH:MM:SS] [dm] name#id: text` received, `[HH:MM:SS] [dm to name#id] text`
/// sent. `who` is the other side, as `Style::who` shows it.
pub fn line_text(line: &DmLine, who: &str) -> String {
    let at = crate::ui::clock(line.at_ms);
    let text = crate::ui::clean(&line.text);
    if line.outgoing {
        let state = line.state.and_then(state_word).map(|s| format!(" ({})", s.split(' ').next().unwrap_or(s)));
        format!("[{at}] [dm to {who}] {text}{}", state.unwrap_or_default())
    } else {
        format!("[{at}] [dm] {who}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(first: u8) -> PeerId {
        let mut id = [7u8; 32];
        id[0] = first;
        PeerId(id)
    }

    #[test]
    fn targets_resolve_by_short_or_full_id_and_say_what_is_wrong() {
        let mut d = Dms::default();
        d.learn(peer(1), "bob");
        let bob = peer(1);
        assert_eq!(d.resolve(&format!("bob#{}", bob.short()), &[]), Ok(bob));
        assert_eq!(d.resolve(&bob.short().to_uppercase(), &[]), Ok(bob));
        // The name part is only a reminder: the id decides.
        assert_eq!(d.resolve(&format!("robert#{}", bob.short()), &[]), Ok(bob));
        let stranger = peer(9);
        assert_eq!(d.resolve(&stranger.to_string(), &[]), Ok(stranger));
        assert!(matches!(d.resolve("bob#0000000", &[]), Err(TargetError::Malformed(_))));
        assert!(matches!(d.resolve(&format!("x#{}", stranger.short()), &[]), Err(TargetError::Unknown(_))));
        assert_eq!(d.resolve(&stranger.short(), &[(stranger, "sam".into())]), Ok(stranger));
        // Two ids with the same first 4 bytes.
        let mut twin = bob;
        twin.0[31] = 0;
        d.learn(twin, "bobby");
        assert!(matches!(d.resolve(&bob.short(), &[]), Err(TargetError::Ambiguous(..))));
    }

    #[test]
    fn conversations_count_unread_until_opened_and_keep_time_order() {
        let mut d = Dms::default();
        let bob = peer(1);
        let line = |n: u8, at_ms, outgoing| DmLine {
            id: DmId([n; 16]),
            peer: bob,
            name: "bob".into(),
            outgoing,
            text: format!("m{n}"),
            at_ms,
            state: None,
        };
        d.add(line(2, 20, false));
        d.add(line(1, 10, true));
        d.add(line(3, 30, false));
        assert_eq!(d.list(), vec![(bob, 3, 2, 30)]);
        let texts: Vec<String> = d.open(&bob, 2).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["m2", "m3"]);
        assert_eq!(d.list()[0].2, 0);
        assert_eq!(d.set_state(&bob, &DmId([1; 16]), DmState::Read).map(|l| l.state), Some(Some(DmState::Read)));
        d.add(line(4, 40, false));
        assert_eq!(d.unread(&bob), 1);
        d.set_current(Some(bob));
        assert_eq!(d.unread(&bob), 0, "opening reads it");
        d.add(line(5, 50, false));
        assert_eq!(d.unread(&bob), 0, "the open conversation's messages are read as they come");
        assert_eq!(d.peers(), [bob]);
    }
}
