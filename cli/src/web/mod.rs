//! The web interface: the node serves a chat page to a browser on this machine.
//!
//! Everything the page shows comes from the node's events and `NodeHandle` queries, and
//! everything it does goes through `NodeHandle::command`, exactly as the terminal does: the web
//! server makes no protocol decision. It runs on its own thread, on a private single-threaded tokio
//! runtime with axum (hyper's HTTP/1.1 and tungstenite's WebSocket underneath), so the node's own
//! runtimes (mio or smol) stay as they are.
//!
//! - `hub`: keeps the recent log, turns events into what the page reads, and tells every open tab.
//! - `server`: the HTTP routes, the guards (Host, token and cookie, Origin) and the page's files.
//! - `assets/`: the page, plain HTML, CSS and JavaScript modules, embedded in the binary.
//!
//! How it is wired into a session: `Web::prepare` before the node starts (it binds the port, so a
//! taken port stops the program before the node runs), `Web::tap` in the node's event callback,
//! `Web::serve` once the node runs, and `run_headless` instead of reading standard input when the
//! node has no terminal view.

mod hub;
mod server;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use p2p_chat_core::app::NodeHandle;
use p2p_chat_core::{Chat, Event, PeerId, PublicKey, RoomInfo};

/// Where `--web` listens when given no address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8090";
/// Events waiting for the web thread; past this they are counted, not kept (the page says so).
const TAP_CAPACITY: usize = 4096;

#[derive(Args, Debug, Clone, Default)]
pub struct WebArgs {
    /// Serve the chat page on this address (default 127.0.0.1:8090; port 0 picks a free port) and
    /// print the URL to open, which carries a secret token
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_ADDR)]
    pub web: Option<SocketAddr>,
    /// Allow --web on an address other machines can reach (the page controls your identity and
    /// travels without encryption: see SECURITY.md)
    #[arg(long, requires = "web")]
    pub web_public: bool,
    /// No terminal view: standard input is not read; the node runs until Ctrl-C, SIGTERM or /quit
    /// on the web page
    #[arg(long)]
    pub headless: bool,
}

/// The web interface between `prepare` and `serve`: the port is bound, nothing is served yet.
pub struct Web {
    listener: TcpListener,
    addr: SocketAddr,
    public: bool,
    token: String,
    tap: tokio::sync::mpsc::Sender<Event>,
    events: tokio::sync::mpsc::Receiver<Event>,
    dropped: Arc<AtomicU64>,
    history: Vec<Chat>,
    rooms: Vec<RoomInfo>,
    dms: Vec<crate::dm::DmLine>,
    blocked: Vec<PeerId>,
    headless: bool,
}

/// Hands the node's events to the web thread. Called on the runtime's thread, so it never waits.
#[derive(Clone)]
pub struct Tap {
    tx: tokio::sync::mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl Tap {
    pub fn send(&self, e: &Event) {
        if self.tx.try_send(e.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The web interface, serving. Dropped once the node has stopped, it waits (a second at most)
/// for the open tabs to be told so, which the process ending would otherwise cut short.
pub struct Running {
    url: String,
    warning: Option<String>,
    quit: mpsc::Receiver<()>,
    done: mpsc::Receiver<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.done.recv_timeout(Duration::from_secs(1));
    }
}

impl Web {
    /// Binds the web port, or returns `None` without `--web`. `history` is the chats restored from
    /// disk: the page opens on the most recent of them; `rooms` and `dms`, the rooms rejoined and
    /// the direct messages from disk; `blocked`, the identities blocked in earlier runs.
    pub fn prepare(
        args: &WebArgs,
        history: &[Chat],
        rooms: &[RoomInfo],
        dms: Vec<crate::dm::DmLine>,
        blocked: &[PeerId],
    ) -> Result<Option<Web>> {
        let Some(addr) = args.web else { return Ok(None) };
        if !addr.ip().is_loopback() && !args.web_public {
            bail!(
                "--web {addr} would be reachable from other machines; add --web-public if that is what you \
                 want (read SECURITY.md first), or use a loopback address such as {DEFAULT_ADDR}"
            );
        }
        let listener = TcpListener::bind(addr).with_context(|| format!("cannot serve the web interface on {addr}"))?;
        listener.set_nonblocking(true).context("cannot set up the web interface's socket")?;
        let addr = listener.local_addr().context("cannot read the web interface's address")?;
        let token = crate::keyfile::os_random::<16>()?.iter().map(|b| format!("{b:02x}")).collect();
        let (tap, events) = tokio::sync::mpsc::channel(TAP_CAPACITY);
        let skip = history.len().saturating_sub(hub::LOG_ITEMS);
        Ok(Some(Web {
            listener,
            addr,
            public: !addr.ip().is_loopback(),
            token,
            tap,
            events,
            dropped: Arc::default(),
            history: history[skip..].to_vec(),
            rooms: rooms.to_vec(),
            dms,
            blocked: blocked.to_vec(),
            headless: args.headless,
        }))
    }

    pub fn tap(&self) -> Tap {
        Tap { tx: self.tap.clone(), dropped: self.dropped.clone() }
    }

    /// Starts the web thread. `username` and `me` are the node's own, for the page's header;
    /// `clock` marks chats from before this run as the terminal does.
    pub fn serve(
        self,
        handle: Arc<dyn NodeHandle>,
        username: &str,
        me: PublicKey,
        clock: crate::display::Clock,
    ) -> Result<Running> {
        let Web { listener, addr, public, token, tap, events, dropped, history, rooms, dms, blocked, headless } = self;
        drop(tap); // only the node's callback holds a sender: its end is the web's end
        let shown = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
            IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
            _ => addr,
        };
        let url = format!("http://{shown}/?token={token}");
        let warning = public.then(|| {
            format!(
                "warning: the web interface on {addr} is reachable from other machines, without encryption: \
                 anyone who sees the token in its URL controls this identity (see SECURITY.md)"
            )
        });
        let (quit_tx, quit) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let me = hub::Me::new(username, &me, handle.local_addr(), headless);
        let hub = hub::Hub::new(me, clock, &history, &rooms, dms, handle, dropped, Instant::now(), quit_tx);
        hub.blocked(blocked);
        let guard = server::Guard::new(addr, token);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the web interface's runtime")?;
        std::thread::Builder::new()
            .name("web".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Err(e) = server::run(listener, guard, hub, events, done_tx).await {
                        tracing::warn!("the web interface stopped: {e}");
                    }
                })
            })
            .context("cannot start the web interface's thread")?;
        Ok(Running { url, warning, quit, done })
    }
}

impl Running {
    /// The lines to print at start: the URL to open, and a warning when the page can be reached
    /// from other machines.
    pub fn banner(&self) -> String {
        let mut out = format!("web interface: open {}", self.url);
        if let Some(w) = &self.warning {
            out = format!("{w}\n{out}");
        }
        out
    }
}

/// Waits, instead of reading standard input, until `/quit` from the page; the caller then leaves
/// the network as after `/quit` in the terminal. Signals (Ctrl-C, SIGTERM) end the node as they do
/// in a terminal session (`crate::signals`).
pub fn run_headless(web: Option<&Running>) {
    {
        use std::io::Write;
        let how = if web.is_some() { "Ctrl-C, SIGTERM or /quit on the web page" } else { "Ctrl-C or SIGTERM" };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "no terminal view (--headless): standard input is not read; {how} stops the node");
        let _ = out.flush();
    }
    match web {
        // Only an error on the web thread ends the channel without a quit: then wait for a signal.
        Some(w) if w.quit.recv().is_ok() => {}
        _ => loop {
            std::thread::park();
        },
    }
}
