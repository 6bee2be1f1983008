//! What a typed line asks for: a chat, or one of the `/` commands, with its arguments checked.
//! Only parsing lives here; `session` carries the commands out.

/// How every invite code starts (the core's invite format, version 1).
pub const INVITE_PREFIX: &str = "p2pchat-invite2:";

/// Chats `/history` shows without a number.
pub const HISTORY_DEFAULT: usize = 20;

#[derive(Debug, PartialEq, Eq)]
pub enum Typed<'a> {
    /// Text for the current room.
    Chat(&'a str),
    Help,
    Quit,
    Peers,
    Stats,
    Id,
    Clear,
    History(usize),
    /// `/join #name`: the public room of this (normalised) name.
    JoinPublic(String),
    /// `/join p2pchat-invite2:...`.
    JoinInvite(&'a str),
    /// `/create #name`: a new private room.
    Create(String),
    Invite,
    Rooms,
    /// `/room [what]`: what follows, for `RoomList::pick`.
    Room(&'a str),
    /// `/part [what]`: `None` is the current room.
    Part(Option<&'a str>),
    /// `/msg name#id text`: a direct message.
    Msg {
        to: &'a str,
        text: &'a str,
    },
    /// `/dms`: the conversations; `/dms name#id`: one of them.
    Dms(Option<&'a str>),
    /// `/block name#id`, `/unblock name#id`, `/blocks`.
    Block(&'a str),
    Unblock(&'a str),
    Blocks,
    /// `/whois name`: every key seen using the name.
    Whois(&'a str),
    /// A moderation command of the current room and its `name#id`: `/kick`, `/ban`, `/unban`,
    /// `/op`, `/deop`.
    Moderate(Moderation, &'a str),
    Members,
    /// `/redact`: your last chat in the current room; `/redact N`: the N-th last in `/history`.
    Redact(Option<usize>),
    /// A command used wrongly: what to say.
    Wrong(String),
    Unknown(&'a str),
}

/// What a moderation command asks of the current room's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moderation {
    Kick,
    Ban,
    Unban,
    Op,
    Deop,
}

impl Moderation {
    /// The core's action on `peer`.
    pub fn on(self, peer: p2p_chat_core::PeerId) -> p2p_chat_core::Action {
        use p2p_chat_core::Action;
        match self {
            Moderation::Kick => Action::Kick(peer),
            Moderation::Ban => Action::Ban(peer),
            Moderation::Unban => Action::Unban(peer),
            Moderation::Op => Action::Op(peer),
            Moderation::Deop => Action::Deop(peer),
        }
    }
}

/// Reads one line as typed (without its line ending). `None` for a blank line.
pub fn parse(line: &str) -> Option<Typed<'_>> {
    if line.trim().is_empty() {
        return None;
    }
    let Some(cmd) = line.strip_prefix('/') else { return Some(Typed::Chat(line)) };
    let (word, rest) = cmd.trim().split_once(char::is_whitespace).unwrap_or((cmd.trim(), ""));
    let rest = rest.trim();
    let one_word = |usage: &str| (rest.split_whitespace().count() > 1).then(|| Typed::Wrong(format!("usage: {usage}")));
    Some(match word {
        "help" => Typed::Help,
        "quit" | "exit" => Typed::Quit,
        "peers" => Typed::Peers,
        "stats" => Typed::Stats,
        "id" => Typed::Id,
        "clear" => Typed::Clear,
        "history" if rest.is_empty() => Typed::History(HISTORY_DEFAULT),
        "history" => match rest.parse() {
            Ok(n) => Typed::History(n),
            Err(_) => Typed::Wrong("usage: /history [N]".into()),
        },
        "join" => {
            if let Some(wrong) = one_word("/join #name, or /join followed by an invite code") {
                return Some(wrong);
            }
            if rest.is_empty() {
                Typed::Wrong("usage: /join #name (a public room), or /join followed by an invite code".into())
            } else if is_invite(rest) {
                Typed::JoinInvite(rest)
            } else {
                match crate::rooms::check_name(rest) {
                    Ok(name) => Typed::JoinPublic(name),
                    Err(e) => Typed::Wrong(e),
                }
            }
        }
        "create" if rest.is_empty() => Typed::Wrong("usage: /create #name (a new private room)".into()),
        "create" => one_word("/create #name").unwrap_or_else(|| match crate::rooms::check_name(rest) {
            Ok(name) => Typed::Create(name),
            Err(e) => Typed::Wrong(e),
        }),
        "invite" if rest.is_empty() => Typed::Invite,
        "invite" => Typed::Wrong("usage: /invite (a fresh invite code for the current room)".into()),
        "rooms" => Typed::Rooms,
        "room" => one_word("/room #name, /room N, or /room - for everyone").unwrap_or(Typed::Room(rest)),
        "part" => one_word("/part [#name]").unwrap_or(Typed::Part((!rest.is_empty()).then_some(rest))),
        "msg" => match rest.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Typed::Msg { to, text: text.trim_start() },
            _ => Typed::Wrong("usage: /msg name#id text (the 8 hex digits shown beside the name)".into()),
        },
        "dms" => one_word("/dms [name#id]").unwrap_or(Typed::Dms((!rest.is_empty()).then_some(rest))),
        "block" | "unblock" | "whois" | "kick" | "ban" | "unban" | "op" | "deop" => {
            let usage = if word == "whois" { "/whois name".to_owned() } else { format!("/{word} name#id") };
            if rest.is_empty() || rest.split_whitespace().count() > 1 {
                return Some(Typed::Wrong(format!("usage: {usage}")));
            }
            match word {
                "block" => Typed::Block(rest),
                "unblock" => Typed::Unblock(rest),
                "whois" => Typed::Whois(rest),
                "kick" => Typed::Moderate(Moderation::Kick, rest),
                "ban" => Typed::Moderate(Moderation::Ban, rest),
                "unban" => Typed::Moderate(Moderation::Unban, rest),
                "op" => Typed::Moderate(Moderation::Op, rest),
                _ => Typed::Moderate(Moderation::Deop, rest),
            }
        }
        "blocks" => Typed::Blocks,
        "members" => Typed::Members,
        "redact" if rest.is_empty() => Typed::Redact(None),
        "redact" => match rest.parse() {
            Ok(n) if n > 0 => Typed::Redact(Some(n)),
            _ => Typed::Wrong("usage: /redact [N] (N: the N-th last chat in /history; none: your last)".into()),
        },
        _ => Typed::Unknown(word),
    })
}

/// Whether `text` looks like an invite code (it may still fail its checks).
pub fn is_invite(text: &str) -> bool {
    text.trim().starts_with(INVITE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_chats_or_commands() {
        assert_eq!(parse("  "), None);
        assert_eq!(parse("hello /join"), Some(Typed::Chat("hello /join")));
        assert_eq!(parse("/history"), Some(Typed::History(20)));
        assert_eq!(parse("/history 5"), Some(Typed::History(5)));
        assert!(matches!(parse("/history x"), Some(Typed::Wrong(_))));
        assert_eq!(parse("/join #Rust"), Some(Typed::JoinPublic("rust".into())));
        assert_eq!(parse("/join dev"), Some(Typed::JoinPublic("dev".into())));
        assert_eq!(parse("/join p2pchat-invite2:abc"), Some(Typed::JoinInvite("p2pchat-invite2:abc")));
        assert!(matches!(parse("/join"), Some(Typed::Wrong(_))));
        assert!(matches!(parse("/join #a #b"), Some(Typed::Wrong(_))));
        assert_eq!(parse("/create #team"), Some(Typed::Create("team".into())));
        assert!(matches!(parse("/create"), Some(Typed::Wrong(w)) if w.starts_with("usage: /create")));
        assert_eq!(parse("/room"), Some(Typed::Room("")));
        assert_eq!(parse("/room #dev"), Some(Typed::Room("#dev")));
        assert_eq!(parse("/part"), Some(Typed::Part(None)));
        assert_eq!(parse("/part #dev"), Some(Typed::Part(Some("#dev"))));
        assert_eq!(parse("/invite"), Some(Typed::Invite));
        assert_eq!(parse("/rooms"), Some(Typed::Rooms));
        assert_eq!(parse("/msg bob#1234abcd hi  there"), Some(Typed::Msg { to: "bob#1234abcd", text: "hi  there" }));
        assert!(matches!(parse("/msg bob#1234abcd"), Some(Typed::Wrong(_))));
        assert_eq!(parse("/dms"), Some(Typed::Dms(None)));
        assert_eq!(parse("/dms bob#1234abcd"), Some(Typed::Dms(Some("bob#1234abcd"))));
        assert_eq!(parse("/frob x"), Some(Typed::Unknown("frob")));
        assert_eq!(parse("/kick bob#1234abcd"), Some(Typed::Moderate(Moderation::Kick, "bob#1234abcd")));
        assert!(matches!(parse("/ban"), Some(Typed::Wrong(w)) if w == "usage: /ban name#id"));
        assert_eq!(parse("/block bob#1234abcd"), Some(Typed::Block("bob#1234abcd")));
        assert_eq!(parse("/whois bob"), Some(Typed::Whois("bob")));
        assert_eq!(parse("/redact"), Some(Typed::Redact(None)));
        assert_eq!(parse("/redact 2"), Some(Typed::Redact(Some(2))));
        assert!(matches!(parse("/redact 0"), Some(Typed::Wrong(_))));
        assert_eq!(parse("/members"), Some(Typed::Members));
    }

    #[test]
    fn the_prefix_is_the_cores() {
        use p2p_chat_core::rooms::{Invite, RoomSecret};
        use p2p_chat_core::{Keys, Time};
        let k = p2p_chat_core::Ed25519Keys::from_seed(1);
        let code =
            Invite::new(&k, "team", RoomSecret([1; 32]), k.public_key(), Vec::new(), Time::ZERO, Time::from_millis(1))
                .to_code();
        assert!(is_invite(&code), "{code}");
    }
}
