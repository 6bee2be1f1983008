//! One chat session: start the node on the chosen runtime, show what happens, obey the user.
//!
//! Threads: the runtime's (network), the display thread (`display`: stores each delivered chat,
//! then shows it), one that waits for a signal to leave cleanly (`signals`), and this one, which
//! reads the user's lines: through the full-screen view (`tui`) on a terminal, or line by line from
//! standard input with `--plain` or when standard input is not a terminal. Both show the same
//! lines, formatted by `ui`.
//!
//! Typed lines are read by `commands`; the room commands are carried out in `rooms`, the direct
//! message commands in `dm`.

mod dm;
mod moderation;
mod rooms;

use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use p2p_chat_core::app::{DmStart, NodeHandle, Runtime, Start};
use p2p_chat_core::dm::olm::OlmCrypto;
use p2p_chat_core::dm::DmCrypto;
use p2p_chat_core::nat::{NatConfig, Reachability, RelayLimits};
use p2p_chat_core::{Chat, Command, Config, DmConfig, DmSnapshot, Ed25519Keys, Keys, RoomId, RoomInfo};
use p2p_chat_runtime_mio::MioRuntime;
use p2p_chat_runtime_smol::SmolRuntime;

use crate::args::{NodeArgs, RuntimeKind, DEFAULT_DB_PATH};
use crate::commands::Typed;
use crate::display::{Clock, Display, Printer, Shared};
use crate::keyfile;
use crate::store::Store;
use crate::tui::{RoomTab, Status};
use crate::ui::{Kind, Out, Style, HELP};

/// `host:port` to an address: a malformed one and a host that does not resolve are told apart.
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    let well_formed = addr.rsplit_once(':').filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    let Some((host, _)) = well_formed else {
        bail!("invalid address {addr:?}: expected host:port, with a port from 0 to 65535");
    };
    match addr.to_socket_addrs() {
        Ok(mut found) => found.next().with_context(|| format!("cannot resolve host {host:?}: it has no address")),
        Err(e) => bail!("cannot resolve host {host:?} in {addr:?}: {e}"),
    }
}

pub fn run(node: NodeArgs, listen: Option<SocketAddr>, connect: Vec<SocketAddr>) -> Result<()> {
    let full_screen =
        !node.plain && !node.web.headless && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // The full-screen view colors lines itself; escape codes in its text would be shown as text.
    let style = if full_screen { Style { color: false } } else { Style::detect() };
    let persist = node.persist || node.db_path.is_some();
    let db_path = node.db_path.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH));
    let store = if persist { Some(Arc::new(Store::open(&db_path)?)) } else { None };
    let identity = node.identity.clone().or_else(|| persist.then(|| db_path.join("identity.key")));
    let keys = match &identity {
        Some(path) => keyfile::load_or_create(path)?,
        None => Ed25519Keys::from_secret(keyfile::os_random()?),
    };
    let me = keys.public_key();
    let bootstrap = node.bootstrap.iter().map(|a| resolve(a)).collect::<Result<Vec<_>>>()?;
    let started_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let join_at_start = node
        .join
        .iter()
        .map(|n| crate::rooms::check_name(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let (rooms, restore, known, first_online_ms) = match &store {
        Some(s) => {
            let known = s.peers()?.into_iter().filter_map(|(a, _)| a.parse().ok()).collect();
            (s.rooms()?, s.recent_chats(node.max_history as usize)?, known, Some(s.first_online_ms(started_ms)?))
        }
        None => (Vec::new(), Vec::new(), Vec::new(), None),
    };
    // The rooms are known before anything is shown, so that stored chats show with their room.
    let shared = Arc::new(Shared::default());
    for r in &rooms {
        shared.rooms.lock().joined(r);
    }
    let dm = dm_start(store.as_deref(), &shared)?;
    let room_ids: Vec<RoomId> = rooms.iter().map(|r: &RoomInfo| r.id).collect();
    let restored = restore.len();
    let web_dms = match (&store, node.web.web) {
        (Some(s), Some(_)) => s.dms()?,
        _ => Vec::new(),
    };
    // Blocks of earlier runs hold from the first input.
    let blocked = match &store {
        Some(s) => s.blocks()?,
        None => Vec::new(),
    };
    let web = crate::web::Web::prepare(&node.web, &restore, &rooms, web_dms, &blocked)?;
    let web_tap = web.as_ref().map(|w| w.tap());
    let max_peers = node.max_peers as usize;
    let config = Config {
        username: node.username.clone(),
        bootstrap,
        max_peers,
        target_peers: max_peers.min(Config::default().target_peers),
        fanout: node.fanout as usize,
        ttl: node.ttl,
        retention: std::time::Duration::from_secs(node.retention_hours as u64 * 3600),
        max_chats: node.max_history as usize,
        dm: DmConfig { read_receipts: !node.no_read_receipts, typing: !node.no_typing, ..DmConfig::default() },
        blocked,
        nat: NatConfig {
            relay: (!node.no_relay)
                .then(|| RelayLimits { max_circuits: node.relay_limit as usize, ..RelayLimits::default() }),
            port_mapping: !node.no_port_mapping,
            ..NatConfig::default()
        },
        ..Config::default()
    };
    config.validate()?;
    let (tx, events) = channel();
    let start = Start {
        config,
        keys: Box::new(keys),
        seed: u64::from_le_bytes(keyfile::os_random()?),
        listen,
        rooms,
        restore,
        known,
        connect,
        dm: Some(dm),
        on_event: Box::new(move |e| {
            if let Some(t) = &web_tap {
                t.send(&e);
            }
            let _ = tx.send(e);
        }),
    };
    let handle: Arc<dyn NodeHandle> = Arc::from(match node.runtime {
        RuntimeKind::Mio => MioRuntime::start(start)?,
        RuntimeKind::Smol => SmolRuntime::start(start)?,
    });
    if let Some(s) = &store {
        // The ratchet's keys are on disk before its bundle is published.
        save_dm(s, &*handle);
    }
    let (out_tx, out_rx) = channel::<Out>();
    let printer: Printer = if full_screen {
        Arc::new(move |o| drop(out_tx.send(o)))
    } else {
        Arc::new(|o| {
            // Written, not println!: a closed stdout (`listen | head`) must not kill the node.
            let mut out = std::io::stdout().lock();
            let _ = match o {
                Out::Line(_, text, _) => writeln!(out, "{text}"),
                Out::Clear => write!(out, "\x1b[2J\x1b[H"),
            };
            let _ = out.flush();
        })
    };
    if full_screen {
        crate::log::show_in(Some(printer.clone()));
    }
    let info = |text: String| printer(Out::Line(Kind::Info, text, None));
    let web_clock = Clock { started_ms, first_online_ms };
    let web = web.map(|w| w.serve(handle.clone(), &node.username, me, web_clock)).transpose()?;
    let listening = match handle.local_addr() {
        Some(a) => format!("listening on {a}"),
        None => "not listening".into(),
    };
    info(format!(
        "p2p-chat: you are {} ({listening}; peer id {})",
        style.who(&node.username, &me.peer_id()),
        me.peer_id()
    ));
    if let Some(s) = &store {
        info(format!("history: {} ({} chats, {restored} loaded to share)", db_path.display(), s.chat_count()?));
        // Stored but not shown when the last run died: show them now, once.
        let pending = s.unshown()?;
        if !pending.is_empty() {
            info(format!("{} chat(s) that arrived just before the last run ended:", pending.len()));
            let list = shared.rooms.lock();
            for c in &pending {
                info(style.history_line(c, &list));
            }
            drop(list);
            let pending: Vec<Arc<Chat>> = pending.into_iter().map(Arc::new).collect();
            s.mark_shown(&pending)?;
        }
    }
    if let Some(w) = &web {
        w.banner().lines().for_each(|l| info(l.to_owned()));
    }
    info(if full_screen { HELLO_FULL_SCREEN.into() } else { "type /help for commands".into() });

    let display = {
        let d = Display {
            style,
            printer: printer.clone(),
            store: store.clone(),
            shared: shared.clone(),
            handle: handle.clone(),
            clock: Clock { started_ms, first_online_ms },
            me: (node.username.clone(), me.peer_id()),
        };
        std::thread::Builder::new()
            .name("display".into())
            .spawn(move || d.run(events))
            .context("cannot start the display thread")?
    };

    let identity =
        format!("you are {}\npeer id    {}\npublic key {}", style.who(&node.username, &me.peer_id()), me.peer_id(), me);
    let mut ctx = Ctx {
        handle: handle.clone(),
        style,
        store: store.clone(),
        shared,
        started: Instant::now(),
        printer: printer.clone(),
        identity,
        me: format!("{}#{}", crate::ui::clean(&node.username), me.peer_id().short()),
        me_id: me.peer_id(),
        verifier: Ed25519Keys::from_secret(keyfile::os_random()?),
        typing: std::cell::Cell::new(None),
    };
    // The display thread takes the rejoined rooms in first: a `/join` then waits for its own answer.
    ctx.shared.rooms.await_rooms(&room_ids, crate::rooms::ANSWER_WAIT);
    for (i, name) in join_at_start.iter().enumerate() {
        ctx.join_public(name, i == 0);
    }
    crate::signals::leave_on_signals(handle.clone(), store.clone())?;
    let result = if node.web.headless {
        crate::web::run_headless(web.as_ref());
        Ok(())
    } else if full_screen {
        crate::tui::run(&mut ctx, &out_rx)
    } else {
        let stdin = std::io::stdin();
        let mut result = Ok(());
        for line in stdin.lock().lines() {
            match line {
                Ok(l) => {
                    if !ctx.line(&l) {
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e).context("reading standard input");
                    break;
                }
            }
        }
        result
    };
    crate::log::show_in(None);
    if let Some(s) = &store {
        save_dm(s, &*handle);
    }
    // Leave, flush, then let the display thread show and store the last events.
    handle.shutdown();
    if let Some(s) = &store {
        save_peers(s, &*handle);
    }
    drop(ctx);
    drop(handle);
    let _ = display.join();
    result
}

/// The first line of the full-screen view.
const HELLO_FULL_SCREEN: &str =
    "type /help for commands · PageUp/PageDown or the wheel scroll · Ctrl-C clears the line, twice leaves";

pub fn save_peers(store: &Store, handle: &dyn NodeHandle) {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let peers: Vec<(String, u64)> = handle.known_addresses().into_iter().map(|a| (a.to_string(), now_ms)).collect();
    if let Err(e) = store.put_peers(&peers) {
        tracing::warn!("could not save known peers: {e}");
    }
}

/// Saves what the node keeps of direct messages and the ratchet's state, if they are on and the
/// node still runs.
pub fn save_dm(store: &Store, handle: &dyn NodeHandle) {
    let Some(save) = handle.dm_save() else { return };
    if let Err(e) = store.put_dm_state(&save.snapshot.to_bytes(), save.crypto.as_deref()) {
        tracing::warn!("could not save direct messages: {e}");
    }
}

/// Direct messages' start: the ratchet and the node's snapshot from the database (new keys on
/// the first run, or without `--persist`), and the conversations shown before.
fn dm_start(store: Option<&Store>, shared: &Shared) -> Result<DmStart> {
    let Some(s) = store else { return Ok(DmStart { crypto: Box::new(OlmCrypto::new()), restore: None }) };
    let crate::store::SavedDm { snapshot, ratchet } = s.dm_state()?;
    let crypto: Box<dyn DmCrypto> = match ratchet {
        Some(bytes) => Box::new(
            OlmCrypto::restore(&bytes)
                .context("the database's direct-message keys do not decode; they were not replaced")?,
        ),
        None => Box::new(OlmCrypto::new()),
    };
    let restore = match snapshot {
        Some(bytes) => {
            Some(DmSnapshot::from_bytes(&bytes).context("the database's direct-message state does not decode")?)
        }
        None => None,
    };
    let mut dms = shared.dms.lock().unwrap_or_else(|e| e.into_inner());
    let lines = s.dms()?;
    let peers: std::collections::BTreeSet<_> = lines.iter().map(|l| l.peer).collect();
    for l in lines {
        dms.add(l);
    }
    // Shown in an earlier run: read.
    for p in peers {
        dms.open(&p, 0);
    }
    Ok(DmStart { crypto, restore })
}

struct Ctx {
    handle: Arc<dyn NodeHandle>,
    style: Style,
    store: Option<Arc<Store>>,
    shared: Arc<Shared>,
    started: Instant,
    printer: Printer,
    /// What `/id` prints.
    identity: String,
    /// `name#1234abcd`, for the status bar.
    me: String,
    me_id: p2p_chat_core::PeerId,
    /// Checks the signature of an invite code being joined; it signs nothing.
    verifier: Ed25519Keys,
    /// The typing notice last sent, while the user types in an open conversation.
    typing: std::cell::Cell<Option<dm::TypingSent>>,
}

impl crate::tui::Session for Ctx {
    fn line(&mut self, line: &str) -> bool {
        Ctx::line(self, line)
    }

    fn chat(&mut self, text: &str) {
        Ctx::chat(self, text);
    }

    fn step_room(&mut self, step: isize) {
        // The rooms, the default one first, then the conversations.
        let (mut places, here) = {
            let list = self.shared.rooms.lock();
            let rooms: Vec<Place> = list.ids().into_iter().map(Place::Room).collect();
            (rooms, if list.in_conversation() { None } else { Some(Place::Room(list.current())) })
        };
        let open = self.dms().current();
        places.extend(self.dms().peers().into_iter().map(Place::Dm));
        let here = here.or(open.map(Place::Dm)).unwrap_or(Place::Room(RoomId::DEFAULT));
        let at = places.iter().position(|p| *p == here).unwrap_or(0) as isize;
        match places[(at + step).rem_euclid(places.len() as isize) as usize] {
            Place::Room(id) => self.switch(id),
            Place::Dm(peer) => self.open_conversation(peer),
        }
    }

    fn typed(&mut self) {
        self.typing_key();
    }

    fn tick(&mut self) {
        self.typing_idle();
    }

    fn status(&self) -> Status {
        let peers = self.handle.peers();
        let inbound = peers.iter().filter(|p| p.direction == p2p_chat_core::Direction::Inbound).count();
        let reach = match (self.handle.reachability(), self.handle.local_addr()) {
            (Reachability::Reachable(a), _) => format!("reachable {a}"),
            (Reachability::Mapped(a), _) => format!("reachable {a} (port mapping)"),
            (Reachability::BehindNat, _) => "behind NAT".into(),
            (_, Some(a)) if inbound > 0 => format!("reachable {a}"),
            (_, Some(a)) => format!("listening {a}"),
            (_, None) => "outgoing only".into(),
        };
        let list = self.shared.rooms.lock();
        let tab =
            |id: RoomId| RoomTab { name: list.title(&id), unread: list.unread(&id), current: list.current() == id };
        let in_conversation = list.in_conversation();
        let tab = |id: RoomId| RoomTab { current: tab(id).current && !in_conversation, ..tab(id) };
        let mut rooms = vec![tab(RoomId::DEFAULT)];
        rooms.extend(list.entries().iter().map(|e| tab(e.info.id)));
        let mut room = list.title(&list.current());
        drop(list);
        let dms = self.dms();
        let open = dms.current().filter(|_| in_conversation);
        for peer in dms.peers() {
            let name = format!("@{}", self.style.who(&dms.name(&peer), &peer));
            if open == Some(peer) {
                room = name.clone();
            }
            rooms.push(RoomTab { name, unread: dms.unread(&peer), current: open == Some(peer) });
        }
        let typing = self.shared.typing_now().iter().map(|p| self.style.who(&dms.name(p), p)).collect();
        Status { me: self.me.clone(), peers: peers.len(), room, reach, rooms, typing }
    }
}

/// Where typed lines go: a room, or a direct-message conversation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Room(RoomId),
    Dm(p2p_chat_core::PeerId),
}

impl Ctx {
    fn say(&self, text: String) {
        (self.printer)(Out::Line(Kind::Info, text, None));
    }

    /// Sends a chat to the current room, or a direct message in the open conversation.
    fn chat(&self, text: &str) {
        let text = text.to_owned();
        if let Some(peer) = self.conversation() {
            self.typing_stopped();
            return self.handle.command(Command::Dm { to: peer, text });
        }
        let room = self.shared.rooms.lock().current();
        self.handle.command(if room.is_default() { Command::Chat(text) } else { Command::Say { room, text } });
    }

    /// Handles one input line; `false` means quit.
    fn line(&self, line: &str) -> bool {
        let line = line.trim_end_matches(['\r', '\n']);
        let Some(typed) = crate::commands::parse(line) else { return true };
        match typed {
            Typed::Chat(text) => self.chat(text),
            Typed::Help => self.say(HELP.into()),
            Typed::Quit => return false,
            Typed::Peers => {
                let mut text = self.style.peers_table(&self.handle.peers());
                if let Ok(u) = self.shared.unreachable.lock() {
                    for (addr, r) in u.iter() {
                        let next = r.retry_at.map_or_else(|| "given up".to_owned(), crate::ui::retry_in);
                        text += &format!("\n  unreachable {addr}: {} failed tries, {next}", r.tries);
                    }
                }
                self.say(text)
            }
            Typed::Stats => {
                let held = self.shared.history.lock().map(|h| h.len()).unwrap_or(0);
                let peers = self.handle.peers().len();
                let unreachable = self.shared.unreachable.lock().map(|u| u.len()).unwrap_or(0);
                let mut text = self.style.stats_table(&self.handle.stats(), peers, self.started.elapsed(), held);
                text += &format!("\nunreachable        {unreachable} address(es), still tried (see /peers)");
                self.say(text);
            }
            Typed::Id => self.say(format!("{}\n{}", self.identity, self.handle.reachability())),
            Typed::Clear => (self.printer)(Out::Clear),
            Typed::History(n) => match self.conversation() {
                Some(peer) => self.say(self.conversation_of(peer, n)),
                None => self.say(self.history_text(n)),
            },
            Typed::JoinPublic(name) => self.join_public(&name, true),
            Typed::JoinInvite(code) => self.join_invite(code),
            Typed::Create(name) => self.create(&name),
            Typed::Invite => self.invite(),
            Typed::Rooms => self.say(self.rooms_text()),
            Typed::Room(what) => self.pick_room(what),
            Typed::Part(what) => self.part(what),
            Typed::Msg { to, text } => self.msg(to, text),
            Typed::Dms(None) => self.say(self.dms_text()),
            Typed::Dms(Some(who)) => self.show_conversation(who),
            Typed::Block(who) => self.block(who, true),
            Typed::Unblock(who) => self.block(who, false),
            Typed::Blocks => self.handle.command(Command::Blocks),
            Typed::Whois(name) => self.say(self.whois(name)),
            Typed::Moderate(what, who) => self.moderate(what, who),
            Typed::Members => self.members(),
            Typed::Redact(n) => self.redact(n),
            Typed::Wrong(usage) => self.say(usage),
            Typed::Unknown(other) => self.say(format!("unknown command /{other}; type /help for the list")),
        }
        true
    }
}

pub fn check_username(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > p2p_chat_core::chat::MAX_USERNAME_BYTES {
        bail!(
            "username must be 1 to {} bytes long (this one is {} bytes)",
            p2p_chat_core::chat::MAX_USERNAME_BYTES,
            name.len()
        );
    }
    if name.chars().any(|c| c.is_control()) {
        bail!("username must not contain control characters");
    }
    if name.contains('#') {
        // `name#1234abcd` is how a user is shown: a `#` in the name could imitate another's id.
        bail!("username must not contain '#': it separates the name from the id (as in alice#1f2e3d4c)");
    }
    Ok(())
}
