//! One chat session: start the node on the chosen runtime, show what happens, obey the user.
//!
//! Three threads: the runtime's (network), the display thread (stores each delivered chat, then
//! prints it — in that order, so nothing shown can be lost), and this one (reads the user's lines).

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use p2p_chat_core::app::{NodeHandle, Runtime, Start};
use p2p_chat_core::{Chat, Command, Config, Ed25519Keys, Event, Keys};
use p2p_chat_runtime_mio::MioRuntime;
use p2p_chat_runtime_smol::SmolRuntime;

use crate::args::{NodeArgs, RuntimeKind};
use crate::keyfile;
use crate::store::Store;
use crate::ui::{Style, HELP};

/// Chats kept in memory for `/history` without `--persist`.
const MEMORY_HISTORY: usize = 1_000;

pub fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("invalid address {addr:?} (expected host:port)"))?
        .next()
        .with_context(|| format!("address {addr:?} resolves to nothing"))
}

/// Where output goes: stdout, or rustyline's printer so incoming chats do not garble the line
/// being typed.
type Printer = Arc<Mutex<Box<dyn FnMut(String) + Send>>>;

fn print(p: &Printer, line: String) {
    if let Ok(mut f) = p.lock() {
        f(line);
    }
}

pub fn run(node: NodeArgs, listen: Option<SocketAddr>, connect: Vec<SocketAddr>) -> Result<()> {
    let style = Style::detect();
    let store = if node.persist { Some(Arc::new(Store::open(&node.db_path)?)) } else { None };
    let identity = node.identity.clone().or_else(|| node.persist.then(|| node.db_path.join("identity.key")));
    let keys = match &identity {
        Some(path) => keyfile::load_or_create(path)?,
        None => Ed25519Keys::from_secret(keyfile::os_random()?),
    };
    let me = keys.public_key();
    let bootstrap = node.bootstrap.iter().map(|a| resolve(a)).collect::<Result<Vec<_>>>()?;
    let (restore, known) = match &store {
        Some(s) => {
            let known = s.peers()?.into_iter().filter_map(|(a, _)| a.parse().ok()).collect();
            (s.recent_chats(node.max_history as usize)?, known)
        }
        None => (Vec::new(), Vec::new()),
    };
    let restored = restore.len();
    let web = crate::web::Web::prepare(&node.web, &restore)?;
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
        ..Config::default()
    };
    let (tx, events) = channel();
    let start = Start {
        config,
        keys: Box::new(keys),
        seed: u64::from_le_bytes(keyfile::os_random()?),
        listen,
        restore,
        known,
        connect,
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
    let web = web.map(|w| w.serve(handle.clone(), &node.username, me)).transpose()?;
    let listening = match handle.local_addr() {
        Some(a) => format!("listening on {a}"),
        None => "not listening".into(),
    };
    // Written, not println!: a closed stdout (`listen | head`) must not kill the node.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "p2p-chat: you are {} ({listening}; peer id {})",
        style.who(&node.username, &me.peer_id()),
        me.peer_id()
    );
    if let Some(s) = &store {
        let _ = writeln!(
            out,
            "history: {} ({} chats, {restored} loaded to share)",
            node.db_path.display(),
            s.chat_count()?
        );
    }
    if let Some(s) = &store {
        // Stored but not shown when the last run died: show them now, once.
        let pending = s.unshown()?;
        if !pending.is_empty() {
            let _ = writeln!(out, "{} chat(s) that arrived just before the last run ended:", pending.len());
            for c in &pending {
                let _ = writeln!(out, "{}", style.history_line(c));
            }
            let pending: Vec<Arc<Chat>> = pending.into_iter().map(Arc::new).collect();
            s.mark_shown(&pending)?;
        }
    }
    if let Some(w) = &web {
        let _ = writeln!(out, "{}", w.banner());
    }
    let _ = writeln!(out, "type /help for commands");
    let _ = out.flush();
    drop(out);

    let interactive = std::io::stdin().is_terminal() && !node.web.headless;
    let mut editor =
        if interactive { Some(rustyline::DefaultEditor::new().context("cannot set up the terminal")?) } else { None };
    let printer: Printer = match editor.as_mut().map(|e| e.create_external_printer()) {
        Some(Ok(mut p)) => Arc::new(Mutex::new(Box::new(move |line: String| {
            let _ = rustyline::ExternalPrinter::print(&mut p, line + "\n");
        }))),
        _ => Arc::new(Mutex::new(Box::new(|line: String| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }))),
    };
    let history = Arc::new(Mutex::new(VecDeque::new()));
    let display = {
        let (printer, store, history, handle) = (printer.clone(), store.clone(), history.clone(), handle.clone());
        std::thread::Builder::new()
            .name("display".into())
            .spawn(move || display(events, style, printer, store, history, handle))
            .context("cannot start the display thread")?
    };

    let started = Instant::now();
    let identity =
        format!("you are {}\npeer id    {}\npublic key {}", style.who(&node.username, &me.peer_id()), me.peer_id(), me);
    let ctx = Ctx {
        handle: handle.clone(),
        style,
        store: store.clone(),
        history,
        started,
        printer: printer.clone(),
        identity,
    };
    let result = match editor {
        _ if node.web.headless => {
            crate::web::run_headless(web.as_ref());
            Ok(())
        }
        Some(mut ed) => loop {
            match ed.readline("> ") {
                Ok(line) => {
                    let _ = ed.add_history_entry(line.as_str());
                    if !ctx.line(&line) {
                        break Ok(());
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof) => {
                    break Ok(())
                }
                Err(e) => break Err(e).context("reading the terminal"),
            }
        },
        None => {
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
        }
    };
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

fn save_peers(store: &Store, handle: &dyn NodeHandle) {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let peers: Vec<(String, u64)> = handle.known_addresses().into_iter().map(|a| (a.to_string(), now_ms)).collect();
    if let Err(e) = store.put_peers(&peers) {
        tracing::warn!("could not save known peers: {e}");
    }
}

/// The display thread: store, then show, every event, in order.
fn display(
    events: Receiver<Event>,
    style: Style,
    printer: Printer,
    store: Option<Arc<Store>>,
    history: Arc<Mutex<VecDeque<Arc<Chat>>>>,
    handle: Arc<dyn NodeHandle>,
) {
    while let Ok(first) = events.recv() {
        // Take everything waiting, so a burst costs one database commit.
        let mut batch = vec![first];
        batch.extend(events.try_iter());
        let chats: Vec<Arc<Chat>> =
            batch.iter().filter_map(|e| if let Event::Chat(d) = e { Some(d.chat.clone()) } else { None }).collect();
        let shown = chats.clone();
        if let Some(s) = &store {
            if let Err(e) = s.put_chats(&chats) {
                print(&printer, format!("!!! could not save history: {e}"));
            }
            if batch.iter().any(|e| matches!(e, Event::PeerUp(_))) {
                save_peers(s, &*handle);
            }
        }
        if let Ok(mut h) = history.lock() {
            for c in chats {
                h.push_back(c);
                if h.len() > MEMORY_HISTORY {
                    h.pop_front();
                }
            }
        }
        for e in &batch {
            if let Some(line) = style.event_line(e) {
                print(&printer, line);
            }
        }
        if let Some(s) = &store {
            if let Err(e) = s.mark_shown(&shown) {
                print(&printer, format!("!!! could not save history: {e}"));
            }
        }
    }
}

struct Ctx {
    handle: Arc<dyn NodeHandle>,
    style: Style,
    store: Option<Arc<Store>>,
    history: Arc<Mutex<VecDeque<Arc<Chat>>>>,
    started: Instant,
    printer: Printer,
    /// What `/id` prints.
    identity: String,
}

impl Ctx {
    fn say(&self, text: String) {
        print(&self.printer, text);
    }

    /// Handles one input line; `false` means quit.
    fn line(&self, line: &str) -> bool {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return true;
        }
        let Some(cmd) = line.strip_prefix('/') else {
            self.handle.command(Command::Chat(line.to_owned()));
            return true;
        };
        let mut words = cmd.split_whitespace();
        match words.next().unwrap_or("") {
            "help" => self.say(HELP.into()),
            "quit" | "exit" => return false,
            "peers" => self.say(self.style.peers_table(&self.handle.peers())),
            "stats" => {
                let held = self.history.lock().map(|h| h.len()).unwrap_or(0);
                let peers = self.handle.peers().len();
                self.say(self.style.stats_table(&self.handle.stats(), peers, self.started.elapsed(), held));
            }
            "id" => self.say(self.identity.clone()),
            "clear" => self.say("\x1b[2J\x1b[H".into()),
            "history" => match words.next().map(str::parse::<usize>).unwrap_or(Ok(20)) {
                Ok(n) => self.say(self.history_text(n)),
                Err(_) => self.say("usage: /history [N]".into()),
            },
            other => self.say(format!("unknown command /{other}; type /help for the list")),
        }
        true
    }

    fn history_text(&self, n: usize) -> String {
        let chats: Vec<Chat> = match &self.store {
            Some(s) => match s.recent_chats(n) {
                Ok(c) => c,
                Err(e) => return format!("!!! cannot read history: {e}"),
            },
            None => {
                let h = self
                    .history
                    .lock()
                    .map(|h| h.iter().map(|c| (**c).clone()).collect::<Vec<_>>())
                    .unwrap_or_default();
                let skip = h.len().saturating_sub(n);
                h.into_iter().skip(skip).collect()
            }
        };
        if chats.is_empty() {
            return "no history yet".into();
        }
        let mut out = format!("last {} chat(s):", chats.len());
        for c in &chats {
            out.push('\n');
            out += &self.style.history_line(c);
        }
        out
    }
}

pub fn check_username(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > p2p_chat_core::chat::MAX_USERNAME_BYTES {
        bail!("username must be 1 to {} bytes long", p2p_chat_core::chat::MAX_USERNAME_BYTES);
    }
    if name.chars().any(|c| c.is_control()) {
        bail!("username must not contain control characters");
    }
    Ok(())
}
