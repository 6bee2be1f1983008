//! How things look: chat lines, joins and leaves, peers and stats tables, colors.
//!
//! Colors are plain ANSI codes, used only when stdout is a terminal and `NO_COLOR` is unset. Text
//! from the network is stripped of control characters before it reaches the terminal, so a peer
//! cannot move the cursor or rewrite the screen.

use std::time::Duration;

use chrono::{Local, TimeZone};
use p2p_chat_core::{
    Body, Chat, Delivery, Event, MemberChange, Op, Origin, PeerId, PeerSummary, PublicKey, RoomSummary, Stats,
};

use crate::rooms::RoomList;

/// What a shown line is, for the full-screen view's colors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chat,
    /// A chat of this node's user.
    Own,
    Joined,
    Left,
    /// Connections, disconnections, reachability.
    Network,
    Warning,
    /// Said before this run: backlog, or missed while away.
    Missed,
    /// Answers to commands, notes.
    Info,
}

/// One thing for the screen: a line, or `/clear`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// A line of text; `Who` marks a sender's `name#id` in it, for the full-screen view's colors.
    Line(Kind, String, Option<Who>),
    Clear,
}

/// Where a sender's `name#id` sits in a line (a byte range), and its color slot in the palette.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Who {
    pub at: std::ops::Range<usize>,
    pub slot: usize,
}

/// When a chat was said, as far as this identity is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// While this run was up.
    Now,
    /// While this run was up, but it reached this node only through catch-up, seconds later.
    Late,
    /// Before this run, after this identity first used this history: missed while offline.
    WhileAway,
    /// Before this identity was ever here (or with no history on disk): the room's backlog.
    Earlier,
}

#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const BLUE: &str = "\x1b[34m";
/// Sender colors: bright, readable on dark and light backgrounds.
const PALETTE: [&str; 6] = ["\x1b[91m", "\x1b[92m", "\x1b[93m", "\x1b[94m", "\x1b[95m", "\x1b[96m"];

impl Style {
    pub fn detect() -> Style {
        use std::io::IsTerminal;
        Style { color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// `username#1f2e3d4c`, in the sender's stable color.
    pub fn who(&self, username: &str, id: &PeerId) -> String {
        let code = PALETTE[palette_slot(id)];
        self.paint(code, &format!("{}#{}", clean_name(username), id.short()))
    }

    /// Where `who(username, id)` first appears in `line`, shown without colors.
    pub fn find_who(line: &str, username: &str, id: &PeerId) -> Option<Who> {
        let token = format!("{}#{}", clean_name(username), id.short());
        line.find(&token).map(|start| Who { at: start..start + token.len(), slot: palette_slot(id) })
    }

    /// A chat's line: `[HH:MM:SS] name#id: text`, with `#room ` after the time for a chat of a
    /// room other than the default (`room`, its label).
    pub fn chat_line(&self, d: &Delivery, when: When, room: Option<&str>) -> String {
        let c = &d.chat;
        let who = self.who(&c.username, &c.author_id());
        let at = match room {
            Some(r) => format!("[{}] {r}", clock(c.timestamp_ms())),
            None => format!("[{}]", clock(c.timestamp_ms())),
        };
        let line = match &c.body {
            Body::Text(_) | Body::Sealed(_) => {
                format!("{at} {who}: {}", clean(d.text().unwrap_or("(sealed: not a room of yours)")))
            }
            Body::Join => self.paint(GREEN, &format!("{at} *** {who} joined")),
            Body::Leave => self.paint(YELLOW, &format!("{at} *** {who} left")),
            Body::Op(_) => self.paint(DIM, &format!("{at} *** {who} changed the room's membership")),
        };
        match when {
            When::Now => line,
            When::Late => self.paint(DIM, &format!("{line}  (arrived late)")),
            When::WhileAway => self.paint(DIM, &format!("{line}  (while you were away)")),
            When::Earlier => self.paint(DIM, &format!("{line}  (earlier in this room)")),
        }
    }

    /// A stored chat's line, its room's text opened with the key `rooms` holds.
    pub fn history_line(&self, c: &Chat, rooms: &RoomList) -> String {
        let d = Delivery { chat: std::sync::Arc::new(c.clone()), opened: rooms.open(c), hops: 0, origin: Origin::Live };
        let label = if c.room.is_default() { None } else { Some(rooms.title(&c.room)) };
        self.chat_line(&d, When::Now, label.as_deref())
    }

    /// The kind of line `chat_line` makes.
    pub fn chat_kind(d: &Delivery, when: When) -> Kind {
        match (&d.chat.body, when) {
            (_, When::WhileAway | When::Earlier) => Kind::Missed,
            (Body::Join, _) => Kind::Joined,
            (Body::Leave, _) => Kind::Left,
            (Body::Text(_) | Body::Sealed(_), _) if d.origin == Origin::Local => Kind::Own,
            (Body::Text(_) | Body::Sealed(_), _) => Kind::Chat,
            (Body::Op(_), _) => Kind::Info,
        }
    }

    /// One line for an event, or `None` for events not shown. `when` is for chats; `rooms` names
    /// the rooms (a parted room is still in it when its line is made).
    pub fn event_line(&self, e: &Event, when: When, rooms: &RoomList) -> Option<(Kind, String)> {
        Some(match e {
            Event::Chat(d) if d.origin == Origin::Local && matches!(d.chat.body, Body::Join | Body::Leave) => {
                return None
            }
            // `Event::Membership` says what an operation did.
            Event::Chat(d) if matches!(d.chat.body, Body::Op(_)) => return None,
            // A join or rekey this node's log cannot place yet (its inviter's join not here): not news.
            Event::Membership(c) if !c.applied && matches!(c.op, Op::Join(_) | Op::Rekey { .. }) => return None,
            Event::Membership(c) => (Kind::Joined, self.membership_line(c, &rooms.title(&c.room))),
            Event::Chat(d) => {
                let label = if d.chat.room.is_default() { None } else { Some(rooms.title(&d.chat.room)) };
                (Style::chat_kind(d, when), self.chat_line(d, when, label.as_deref()))
            }
            Event::PeerUp(p) => (
                Kind::Network,
                self.paint(
                    BLUE,
                    &format!("--- connected to {} ({}, {})", self.who(&p.username, &p.peer), p.addr, direction(p)),
                ),
            ),
            Event::PeerDown { peer, username, reason, .. } => (
                Kind::Network,
                self.paint(BLUE, &format!("--- disconnected from {}: {reason}", self.who(username, peer))),
            ),
            Event::DialFailed { addr, retry_at } => {
                let then = match retry_at {
                    Some(t) => format!("retrying in the background ({}; /peers shows the tries)", retry_in(*t)),
                    None => "giving up on it".into(),
                };
                (Kind::Network, self.paint(YELLOW, &format!("!!! could not reach {addr}, {then}")))
            }
            Event::Warning(w) => (Kind::Warning, self.paint(RED, &format!("!!! {}", clean(w)))),
            Event::Refused(w) => (Kind::Warning, self.paint(RED, &format!("!!! {}", clean(w)))),
            Event::RoomJoined(r) => {
                (Kind::Info, format!("--- you are in #{} ({})", clean_name(&r.name), crate::rooms::access(r.access)))
            }
            Event::RoomParted(id) => (Kind::Info, format!("--- you left {}", rooms.title(id))),
            // On a line of its own, whole, so that it can be copied or picked out by a script.
            Event::Invite { room, code } => (Kind::Info, format!("--- invite code for {}: {code}", rooms.title(room))),
            Event::Reachability(r) => (Kind::Network, self.paint(BLUE, &format!("--- reachability: {r}"))),
            Event::Dm(_) | Event::DmState { .. } | Event::Typing { .. } => return None,
            // Shown by the display, which knows the names (`Blocks`, `Members`), or not at all.
            Event::Redacted { .. } | Event::RoomUpdated(_) | Event::Blocks(_) | Event::Members { .. } => return None,
        })
    }

    /// `[HH:MM:SS] #room *** name#id was removed by owner#id`, and the like for every operation.
    pub fn membership_line(&self, c: &MemberChange, room: &str) -> String {
        let at = format!("[{}] {room} ***", clock(c.id.timestamp_ms()));
        let by = self.who(&c.by_name, &c.by.peer_id());
        let target = |k: &PublicKey| self.who(c.target_name.as_deref().unwrap_or("?"), &k.peer_id());
        let what = match &c.op {
            Op::Join(_) => format!("{by} joined with an invite"),
            Op::Remove(k) => format!("{} was removed by {by}", target(k)),
            Op::Ban(k) => format!("{} was banned by {by}", target(k)),
            Op::Unban(k) => format!("{} was unbanned by {by}", target(k)),
            Op::Grant(k) => format!("{} was made an admin by {by}", target(k)),
            Op::Revoke(k) => format!("{} is no longer an admin (by {by})", target(k)),
            Op::Redact { author, .. } => format!("a chat by {} was redacted by {by}", target(author)),
            Op::Rekey { .. } => format!("the room's key was changed by {by}"),
        };
        if c.applied {
            self.paint(GREEN, &format!("{at} {what}"))
        } else {
            self.paint(DIM, &format!("{at} {what} (ignored: {by} had no right to it then)"))
        }
    }

    pub fn note(&self, kind: Kind, text: &str) -> String {
        match kind {
            Kind::Network => self.paint(BLUE, text),
            Kind::Warning => self.paint(RED, text),
            _ => text.to_owned(),
        }
    }

    pub fn peers_table(&self, peers: &[PeerSummary]) -> String {
        if peers.is_empty() {
            return "no peers connected".into();
        }
        let mut out = format!("{} peer(s):\n", peers.len());
        out += &format!(
            "  {:<26} {:<22} {:<9} {:>6} {:>10}  {}\n",
            "peer", "address", "direction", "score", "latency", "path"
        );
        for p in peers {
            let who = format!("{}#{}", clean_name(&p.username), p.peer.short());
            let rtt = p.rtt.map(|d| format!("{:.2}ms", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "-".into());
            let (addr, dir, path) = (p.addr.to_string(), direction(p), p.path.to_string());
            out += &format!("  {:<26} {:<22} {:<9} {:>6} {:>10}  {}\n", who, addr, dir, p.score, rtt, clean(&path));
        }
        out.trim_end().to_owned()
    }

    pub fn stats_table(&self, s: &Stats, peers: usize, uptime: Duration, history: usize) -> String {
        let secs = uptime.as_secs();
        [
            format!("peers connected    {peers}"),
            format!("chats sent         {}", s.chats_sent),
            format!(
                "chats received     {} ({} of them caught up by sync, 5 s or more late)",
                s.chats_received, s.chats_repaired
            ),
            format!("chats relayed      {}", s.chats_relayed),
            format!("duplicates dropped {}", s.duplicates),
            format!("chats refused      {} (bad signature, size or time)", s.chats_refused),
            format!("bytes in / out     {} / {}", s.bytes_in, s.bytes_out),
            format!("frames in / out    {} / {}", s.frames_in, s.frames_out),
            format!(
                "gossip             {} prunes, {} grafts, {} sync rounds",
                s.prunes_sent, s.grafts_sent, s.sync_frames_sent
            ),
            format!("room frames in / out {} / {}", s.room_frames_in, s.room_frames_out),
            format!(
                "foreign room frames {} ({} bytes: frames of rooms this node is not in, always 0 among honest peers)",
                s.foreign_room_frames, s.foreign_room_bytes
            ),
            format!("dial-backs         {} asked of peers, {} made for peers", s.dial_backs_asked, s.dial_backs_done),
            format!(
                "relays used        {} reservations held, {} circuits asked, {} relayed connections up",
                s.reservations_held, s.circuits_asked, s.circuits_up
            ),
            format!("relaying           {} bytes carried, {} circuits refused", s.relay_bytes, s.circuits_refused),
            format!("hole punches       {} attempts, {} succeeded", s.punch_attempts, s.punch_successes),
            format!(
                "port mapping       {} asked of the router, {} granted, {} reached by a dial-back",
                s.port_map_attempts, s.port_map_successes, s.port_map_verified
            ),
            format!("chats held         {history}"),
            format!("uptime             {}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60),
        ]
        .join("\n")
    }
}

impl Style {
    /// `/rooms`: the default room first, then the others in the order they were joined, numbered
    /// for `/room N`; `>` marks the current one. Counts are the node's (`summaries`).
    pub fn rooms_table(&self, rooms: &RoomList, summaries: &[RoomSummary], peers: usize) -> String {
        let mark = |id| if rooms.current() == id { ">" } else { " " };
        let mut out = format!(
            "{} room(s); > marks the current one (where your lines go; /room N or /room #name switches):\n",
            rooms.entries().len() + 1
        );
        out += &format!(
            "    {:>2}  {:<24} {:<8} {:>7} {:>10} {:>6}\n",
            "#", "room", "access", "members", "neighbours", "unread"
        );
        let default = p2p_chat_core::RoomId::DEFAULT;
        let unread = rooms.unread(&default);
        out += &format!(
            "  {} {:>2}  {:<24} {:<8} {:>7} {:>10} {unread:>6}\n",
            mark(default),
            0,
            "everyone",
            "default",
            "all",
            peers
        );
        for (i, e) in rooms.entries().iter().enumerate() {
            let s = summaries.iter().find(|s| s.id == e.info.id);
            let (members, neighbours) =
                s.map_or(("?".into(), "?".into()), |s| (s.members.to_string(), s.neighbours.to_string()));
            out += &format!(
                "  {} {:>2}  {:<24} {:<8} {members:>7} {neighbours:>10} {:>6}\n",
                mark(e.info.id),
                i + 1,
                format!("#{}", clean_name(&e.info.name)),
                crate::rooms::access(e.info.access),
                e.unread
            );
        }
        out.trim_end().to_owned()
    }
}

/// A sender's color: the same for one id everywhere, one of `PALETTE_SIZE`.
pub fn palette_slot(id: &PeerId) -> usize {
    id.0[0] as usize % PALETTE_SIZE
}

pub const PALETTE_SIZE: usize = PALETTE.len();

fn direction(p: &PeerSummary) -> &'static str {
    match p.direction {
        p2p_chat_core::Direction::Inbound => "inbound",
        p2p_chat_core::Direction::Outbound => "outbound",
    }
}

/// "next try in 12.3s", from the core's wall-clock `retry_at`.
pub fn retry_in(t: p2p_chat_core::Time) -> String {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    format!("next try in {:.1}s", t.as_millis().saturating_sub(now_ms) as f64 / 1000.0)
}

/// Local wall-clock time of a chat.
pub fn clock(ms: u64) -> String {
    match Local.timestamp_millis_opt(ms as i64).single() {
        Some(t) => t.format("%H:%M:%S").to_string(),
        None => "--:--:--".into(),
    }
}

/// Text from the network with every control character (escape sequences included) replaced, and
/// the bidirectional embeddings, overrides and isolates too: they would make a terminal reorder
/// the rest of the line, so a chat could disguise what follows it. Right-to-left letters and the
/// left-to-right and right-to-left marks are kept.
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() || is_bidi_control(c) { '\u{fffd}' } else { c }).collect()
}

/// A username as shown: `clean`, and a `#` (which this program refuses in names, but another
/// client could send) shown as U+FFFD, so no name can end in what looks like another user's id.
pub fn clean_name(s: &str) -> String {
    clean(s).replace('#', "\u{fffd}")
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

pub const HELP: &str = "\
commands:
  /help            show this help
  /peers           list connected peers (id, username, address, direction,
                   score, latency) and the addresses that could not be reached
  /history [N]     show the last N chats of the current room (default 20), or
                   of the open conversation in the full-screen view
  /stats           show network statistics
  /id              show your peer id and public key
  /clear           clear the screen
  /quit            announce that you leave, and exit
rooms (every node is in the default room, \"everyone\"):
  /join #name      join the public room of that name (anyone who knows the
                   name can join it); it becomes the current room
  /join CODE       join a private room with an invite code (p2pchat-invite2:...)
  /create #name    start a private room and print its invite code
  /invite          print a fresh invite code for the current (private) room;
                   a code is valid for 24 hours and lets whoever holds it in
  /rooms           list your rooms: access, members, neighbours, unread chats
  /room #name      make a room current: your lines go there (also /room N,
                   the number from /rooms); /room or /room - is \"everyone\"
  /part [#name]    leave the current room, or the one named
direct messages (end-to-end encrypted; held for an offline recipient):
  /msg name#id text  send one to the peer with that id (the 8 hex digits
                   beside its name, or its full 64-hex peer id)
  /dms             your conversations, with unread counts
  /dms name#id     one conversation's last 50 messages; your lines then go
                   there (/room leaves it)
moderation (a private room's owner and admins; blocks are yours alone):
  /members         the current private room's members and their roles
  /kick name#id    remove a member (owner or admin); the room gets a new key
  /ban name#id     remove and keep out: no invite from before the ban works
  /unban name#id   lift a ban (a new invite is still needed)
  /op name#id      make a member an admin (owner only); /deop undoes it
  /redact [N]      hide your last chat here, or the N-th last in /history
                   (an admin may redact anyone's) from every member
  /block name#id   stop showing that key's chats and direct messages, and
                   refuse its messages (it is not told); /unblock, /blocks
  /whois name      every key seen using that name
anything else is sent as a chat to the current room.
limits: a chat holds at most 4,096 bytes (the full-screen view sends a longer
line as several chats; line mode refuses it); a username is 1 to 64 bytes,
without '#'; a room name 1 to 64 bytes, without spaces or commas.
full-screen keys:
  Enter              send (each line of a paste is its own chat)
  Up / Down          lines you sent before
  Ctrl-N / Ctrl-P    next / previous room or conversation (also Alt-Right /
                     Alt-Left); in a conversation lines go as direct messages
  PageUp / PageDown  scroll back and forth (the mouse wheel too)
  End                back to the newest line (on an empty line; or Ctrl-End)
  Ctrl-A / Ctrl-E    start / end of the line
  Ctrl-U / Ctrl-K    delete to the start / to the end of the line
  Ctrl-W             delete the word before the cursor
  Ctrl-C             clear the line; on an empty line, twice to leave
  Ctrl-D             leave (on an empty line)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_text_cannot_carry_escape_sequences() {
        assert_eq!(clean("hi\x1b[2Jthere\r\n"), "hi\u{fffd}[2Jthere\u{fffd}\u{fffd}");
        assert_eq!(clean("ünïcödé ok"), "ünïcödé ok");
        assert_eq!(clean("abc\u{202e}fed שלום"), "abc\u{fffd}fed שלום");
    }

    /// A chat signed by Mallory's key under the name "alice" is shown with Mallory's id: a
    /// username alone is never what identifies a sender.
    #[test]
    fn a_borrowed_username_shows_the_signers_id() {
        use p2p_chat_core::{ChatId, Ed25519Keys, Keys};
        let (alice, mallory) = (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2));
        let chat = Chat::new(&mallory, ChatId::new_v7(1_800_000_000_000, &[1; 10]), "alice", Body::Text("hi".into()));
        let line = Style { color: false }.history_line(&chat, &RoomList::default());
        assert!(line.contains(&format!("alice#{}", mallory.public_key().peer_id().short())), "{line}");
        assert!(!line.contains(&alice.public_key().peer_id().short()), "{line}");
    }

    #[test]
    fn a_name_cannot_imitate_an_id_suffix() {
        let s = Style { color: false };
        assert_eq!(s.who("alice#3d785535", &PeerId([7; 32])), "alice\u{fffd}3d785535#07070707");
    }

    #[test]
    fn no_color_means_plain_text() {
        let s = Style { color: false };
        let id = PeerId([7; 32]);
        assert_eq!(s.who("bob", &id), "bob#07070707");
        let colored = Style { color: true }.who("bob", &id);
        assert!(colored.starts_with("\x1b[") && colored.contains("bob#07070707"));
    }
}
