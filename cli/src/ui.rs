//! How things look: chat lines, joins and leaves, peers and stats tables, colors.
//!
//! Colors are plain ANSI codes, used only when stdout is a terminal and `NO_COLOR` is unset. Text
//! from the network is stripped of control characters before it reaches the terminal, so a peer
//! cannot move the cursor or rewrite the screen.

use std::time::Duration;

use chrono::{Local, TimeZone};
use p2p_chat_core::{Body, Chat, Delivery, Event, Origin, PeerId, PeerSummary, Stats};

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
        let code = PALETTE[id.0[0] as usize % PALETTE.len()];
        self.paint(code, &format!("{}#{}", clean(username), id.short()))
    }

    pub fn chat_line(&self, d: &Delivery) -> String {
        let c = &d.chat;
        let who = self.who(&c.username, &c.author_id());
        let line = match &c.body {
            Body::Text(t) => format!("[{}] {who}: {}", clock(c.timestamp_ms()), clean(t)),
            Body::Join => self.paint(GREEN, &format!("[{}] *** {who} joined", clock(c.timestamp_ms()))),
            Body::Leave => self.paint(YELLOW, &format!("[{}] *** {who} left", clock(c.timestamp_ms()))),
        };
        if d.origin == Origin::Repair {
            // Fetched after the fact: history the user missed, not something said just now.
            self.paint(DIM, &format!("{line}  (while you were away)"))
        } else {
            line
        }
    }

    pub fn history_line(&self, c: &Chat) -> String {
        self.chat_line(&Delivery { chat: std::sync::Arc::new(c.clone()), hops: 0, origin: Origin::Live })
    }

    /// One line for an event, or `None` for events not shown.
    pub fn event_line(&self, e: &Event) -> Option<String> {
        Some(match e {
            Event::Chat(d) if d.origin == Origin::Local && matches!(d.chat.body, Body::Join | Body::Leave) => {
                return None
            }
            Event::Chat(d) => self.chat_line(d),
            Event::PeerUp(p) => self.paint(
                BLUE,
                &format!("--- connected to {} ({}, {})", self.who(&p.username, &p.peer), p.addr, direction(p)),
            ),
            Event::PeerDown { peer, username, reason, .. } => {
                self.paint(BLUE, &format!("--- disconnected from {}: {reason}", self.who(username, peer)))
            }
            Event::DialFailed { addr, retry_at } => {
                let when = match retry_at {
                    Some(t) => {
                        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
                        let secs = t.as_millis().saturating_sub(now_ms) as f64 / 1000.0;
                        format!("retrying in {secs:.1}s")
                    }
                    None => "giving up on it".into(),
                };
                self.paint(YELLOW, &format!("!!! could not reach {addr}, {when}"))
            }
            Event::Warning(w) => self.paint(RED, &format!("!!! {}", clean(w))),
        })
    }

    pub fn peers_table(&self, peers: &[PeerSummary]) -> String {
        if peers.is_empty() {
            return "no peers connected".into();
        }
        let mut out = format!("{} peer(s):\n", peers.len());
        out += &format!("  {:<26} {:<22} {:<9} {:>6} {:>10}\n", "peer", "address", "direction", "score", "latency");
        for p in peers {
            let who = format!("{}#{}", clean(&p.username), p.peer.short());
            let rtt = p.rtt.map(|d| format!("{:.2}ms", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "-".into());
            out +=
                &format!("  {:<26} {:<22} {:<9} {:>6} {:>10}\n", who, p.addr.to_string(), direction(p), p.score, rtt);
        }
        out.trim_end().to_owned()
    }

    pub fn stats_table(&self, s: &Stats, peers: usize, uptime: Duration, history: usize) -> String {
        let secs = uptime.as_secs();
        [
            format!("peers connected    {peers}"),
            format!("chats sent         {}", s.chats_sent),
            format!("chats received     {} ({} caught up after being away)", s.chats_received, s.chats_repaired),
            format!("chats relayed      {}", s.chats_relayed),
            format!("duplicates dropped {}", s.duplicates),
            format!("chats refused      {} (bad signature, size or time)", s.chats_refused),
            format!("bytes in / out     {} / {}", s.bytes_in, s.bytes_out),
            format!("frames in / out    {} / {}", s.frames_in, s.frames_out),
            format!(
                "gossip             {} prunes, {} grafts, {} sync rounds",
                s.prunes_sent, s.grafts_sent, s.sync_frames_sent
            ),
            format!("chats held         {history}"),
            format!("uptime             {}h{:02}m{:02}s", secs / 3600, secs / 60 % 60, secs % 60),
        ]
        .join("\n")
    }
}

fn direction(p: &PeerSummary) -> &'static str {
    match p.direction {
        p2p_chat_core::Direction::Inbound => "inbound",
        p2p_chat_core::Direction::Outbound => "outbound",
    }
}

/// Local wall-clock time of a chat.
pub fn clock(ms: u64) -> String {
    match Local.timestamp_millis_opt(ms as i64).single() {
        Some(t) => t.format("%H:%M:%S").to_string(),
        None => "--:--:--".into(),
    }
}

/// Text from the network with every control character (escape sequences included) replaced.
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

pub const HELP: &str = "\
commands:
  /help          show this help
  /peers         list connected peers (id, username, address, direction, score, latency)
  /history [N]   show the last N chats (default 20)
  /stats         show network statistics
  /id            show your peer id and public key
  /clear         clear the screen
  /quit          announce that you leave, and exit
anything else is sent as a chat.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_text_cannot_carry_escape_sequences() {
        assert_eq!(clean("hi\x1b[2Jthere\r\n"), "hi\u{fffd}[2Jthere\u{fffd}\u{fffd}");
        assert_eq!(clean("ünïcödé ok"), "ünïcödé ok");
    }

    /// A chat signed by Mallory's key under the name "alice" is shown with Mallory's id: a
    /// username alone is never what identifies a sender.
    #[test]
    fn a_borrowed_username_shows_the_signers_id() {
        use p2p_chat_core::{ChatId, Ed25519Keys, Keys};
        let (alice, mallory) = (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2));
        let chat = Chat::new(&mallory, ChatId::new_v7(1_800_000_000_000, &[1; 10]), "alice", Body::Text("hi".into()));
        let line = Style { color: false }.history_line(&chat);
        assert!(line.contains(&format!("alice#{}", mallory.public_key().peer_id().short())), "{line}");
        assert!(!line.contains(&alice.public_key().peer_id().short()), "{line}");
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
