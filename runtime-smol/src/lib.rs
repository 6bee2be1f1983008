//! p2p-chat over real TCP on smol: one thread, one single-threaded executor, one `Node`.
//!
//! One task owns the node and waits on whichever comes first: a command, something from a
//! connection task (accepted, connected, bytes, closed), or the node's next deadline. Each connection
//! has a reader task and a writer task; the writer coalesces queued frames into large writes. As in
//! the mio runtime, every protocol decision is the core's: the driver reports each connection's
//! unwritten bytes (`Input::Backlog`), pauses a connection's reader while the node says so
//! (`Node::wants_read`), and closes what the node closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2p_chat_core::app::{DmSave, NodeHandle, NodeState, Runtime, Start, StartError};
use p2p_chat_core::nat::mapping::{MapFailure, MapRequest, Mapped};
use p2p_chat_core::{Command, ConnId, Event, Input, Node, Output, PeerSummary, Stats, Time};
use smol::channel::{self, Receiver, Sender};
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

// One file for both runtimes: how a socket shares the listening port is the operating system's
// rule, not the runtime's.
#[path = "../../runtime-mio/src/sockets.rs"]
mod sockets;
// Likewise: talking to the router is the same blocking work on a thread of its own.
#[path = "../../runtime-mio/src/portmap.rs"]
mod portmap;

/// How long a hole punch's dial may take (the kernel retries its SYN meanwhile).
const PUNCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
use smol::{LocalExecutor, Task, Timer};

const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
const READ_BUF_BYTES: usize = 64 * 1024;
/// Largest single write the writer assembles from queued frames.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Messages from connection tasks waiting for the node; readers pause when it is full.
const INBOX_CAPACITY: usize = 1024;
/// How long a connection the node closed may take to flush what was sent to it before its writer
/// is dropped anyway (a peer that does not read would keep it for ever).
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long a query from another thread waits for the loop before using the last snapshot.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// The smol runtime (see the crate docs).
pub struct SmolRuntime;

enum Ctl {
    Command(Command),
    /// A fresh snapshot, answered at once by the loop.
    Query(std::sync::mpsc::Sender<NodeState>),
    /// What to save of direct messages, answered at once by the loop.
    DmSave(std::sync::mpsc::Sender<Option<DmSave>>),
    Shutdown,
}

enum Inbox {
    Accepted(TcpStream, SocketAddr),
    Connected(ConnId, TcpStream),
    DialFailed(ConnId),
    Bytes(ConnId, Vec<u8>),
    /// The writer wrote a batch: the backlog shrank.
    Written(ConnId),
    Closed(ConnId),
    /// The router's answer, from the port mapping thread.
    PortMapped(Result<Mapped, MapFailure>),
}

struct Handle {
    ctl: Sender<Ctl>,
    snapshot: Arc<Mutex<NodeState>>,
    local_addr: Option<SocketAddr>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Runtime for SmolRuntime {
    fn start(mut start: Start) -> Result<Box<dyn NodeHandle>, StartError> {
        start.config.validate()?;
        let listener = match start.listen {
            Some(addr) => Some(sockets::listen(addr).map_err(|source| StartError::Listen { addr, source })?),
            None => None,
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(a) = local_addr {
            start.config.listen_port = a.port();
            // A router cannot forward to a listener on loopback only (`--bind 127.0.0.1`).
            start.config.nat.port_mapping &= !a.ip().is_loopback();
        }
        let (ctl, ctl_rx) = channel::unbounded();
        let snapshot = Arc::new(Mutex::new(NodeState::default()));
        let shared = snapshot.clone();
        let thread = std::thread::Builder::new()
            .name("p2p-chat-smol".into())
            .spawn(move || {
                let ex: LocalExecutor<'static> = LocalExecutor::new();
                let listener = match listener.map(TcpListener::try_from).transpose() {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("cannot watch the listener: {e}"),
                };
                smol::block_on(ex.run(drive(&ex, start, listener, ctl_rx, shared)));
            })
            .map_err(StartError::Runtime)?;
        Ok(Box::new(Handle { ctl, snapshot, local_addr, thread: Mutex::new(Some(thread)) }))
    }
}

impl NodeHandle for Handle {
    fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
    fn command(&self, cmd: Command) {
        let _ = self.ctl.try_send(Ctl::Command(cmd));
    }
    fn peers(&self) -> Vec<PeerSummary> {
        self.query().peers
    }

    fn rooms(&self) -> Vec<p2p_chat_core::RoomSummary> {
        self.query().rooms
    }
    fn stats(&self) -> Stats {
        self.query().stats
    }
    fn known_addresses(&self) -> Vec<SocketAddr> {
        self.query().known
    }

    fn reachability(&self) -> p2p_chat_core::nat::Reachability {
        self.query().reachability
    }
    fn dm_save(&self) -> Option<DmSave> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.ctl.try_send(Ctl::DmSave(tx)).ok()?;
        rx.recv_timeout(QUERY_TIMEOUT).ok().flatten()
    }
    fn shutdown(&self) {
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else { return };
        let _ = self.ctl.try_send(Ctl::Shutdown);
        let _ = thread.join();
    }
}

impl Handle {
    /// Asks the node task for the current state; once it has stopped, the last snapshot it left.
    fn query(&self) -> NodeState {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.ctl.try_send(Ctl::Query(tx)).is_ok() {
            if let Ok(s) = rx.recv_timeout(QUERY_TIMEOUT) {
                return s;
            }
        }
        self.snapshot.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Microseconds since the Unix epoch, never going backwards.
#[derive(Default)]
struct Clock {
    last: Time,
}

impl Clock {
    fn now(&mut self) -> Time {
        let us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        self.last = self.last.max(Time::from_micros(us));
        self.last
    }
}

struct Conn {
    /// Frames for the writer task; dropping it lets the writer finish and close.
    out: Sender<Vec<u8>>,
    pending: Arc<AtomicUsize>,
    /// The backlog last reported to the node.
    reported: usize,
    /// Set while the node does not want this connection read; the reader waits on `resume`.
    paused: Arc<std::sync::atomic::AtomicBool>,
    resume: Sender<()>,
    _reader: Task<()>,
    writer: Task<()>,
}

enum Wake {
    Ctl(Option<Ctl>),
    Inbox(Option<Inbox>),
    Timer,
}

struct Driver<'a> {
    ex: &'a LocalExecutor<'static>,
    node: Node,
    clock: Clock,
    conns: HashMap<ConnId, Conn>,
    /// Connections closed by the node whose writers are still flushing, until when they may.
    draining: Vec<(Arc<AtomicUsize>, Task<()>, Instant)>,
    inbox: Sender<Inbox>,
    /// Started at the node's first request; dropped with the driver, after the removal of the
    /// mapping reached the router (or its grace ran out).
    mapper: Option<portmap::PortMapper>,
    on_event: Box<dyn FnMut(Event) + Send>,
}

async fn drive(
    ex: &LocalExecutor<'static>,
    start: Start,
    listener: Option<TcpListener>,
    ctl: Receiver<Ctl>,
    snapshot: Arc<Mutex<NodeState>>,
) {
    let mut clock = Clock::default();
    let now = clock.now();
    let mut node = p2p_chat_core::app::node(start.config, start.keys, start.seed, now, start.dm);
    p2p_chat_core::app::prime(&mut node, now, start.rooms, start.restore, start.known, start.connect);
    let (inbox, inbox_rx) = channel::bounded(INBOX_CAPACITY);
    let _acceptor = listener.map(|l| ex.spawn(accept_loop(l, inbox.clone())));
    let mut d = Driver {
        ex,
        node,
        clock,
        conns: HashMap::new(),
        draining: Vec::new(),
        inbox,
        mapper: None,
        on_event: start.on_event,
    };
    d.drain();
    let mut shutdown_by: Option<Instant> = None;
    loop {
        let mut deadline = d.node.poll_timeout().map(|(at, _)| Instant::now() + at.since(d.clock.now()));
        if let Some(by) = shutdown_by {
            deadline = Some(deadline.map_or(by, |t| t.min(by)));
        }
        let wake = future::or(
            future::or(async { Wake::Ctl(ctl.recv().await.ok()) }, async { Wake::Inbox(inbox_rx.recv().await.ok()) }),
            async {
                match deadline {
                    Some(at) => {
                        Timer::at(at).await;
                    }
                    None => future::pending::<()>().await,
                }
                Wake::Timer
            },
        )
        .await;
        let now = d.clock.now();
        match wake {
            Wake::Ctl(Some(Ctl::Command(cmd))) => d.node.handle_input(now, Input::Command(cmd)),
            Wake::Ctl(Some(Ctl::Query(reply))) => {
                let _ = reply.send(NodeState::of(&d.node));
            }
            Wake::Ctl(Some(Ctl::DmSave(reply))) => {
                let _ = reply.send(DmSave::of(&d.node));
            }
            Wake::Ctl(Some(Ctl::Shutdown)) | Wake::Ctl(None) => {
                if shutdown_by.is_none() {
                    d.node.handle_input(now, Input::Command(Command::Leave));
                    shutdown_by = Some(Instant::now() + SHUTDOWN_GRACE);
                }
            }
            Wake::Inbox(Some(msg)) => d.on_inbox(now, msg),
            Wake::Inbox(None) => {}
            Wake::Timer => {
                if let Some((_, why)) = d.node.poll_timeout().filter(|(at, _)| *at <= now) {
                    tracing::trace!(?why, "timer due");
                    d.node.handle_input(now, Input::Timeout);
                }
            }
        }
        d.drain();
        let linger_now = Instant::now();
        d.draining.retain(|(pending, _, by)| pending.load(Ordering::Relaxed) > 0 && *by > linger_now);
        if let Some(by) = shutdown_by {
            if (d.node.is_closed() && d.draining.is_empty()) || Instant::now() >= by {
                if let Ok(mut s) = snapshot.lock() {
                    *s = NodeState::of(&d.node);
                }
                return;
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, inbox: Sender<Inbox>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if inbox.send(Inbox::Accepted(stream, remote)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Usually out of file descriptors: back off a little instead of spinning.
                tracing::warn!("accept failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_loop(
    conn: ConnId,
    mut stream: TcpStream,
    inbox: Sender<Inbox>,
    paused: Arc<std::sync::atomic::AtomicBool>,
    resume: Receiver<()>,
) {
    let mut buf = vec![0u8; READ_BUF_BYTES];
    loop {
        while paused.load(Ordering::Relaxed) {
            if resume.recv().await.is_err() {
                return;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = inbox.send(Inbox::Closed(conn)).await;
                return;
            }
            Ok(n) => {
                if inbox.send(Inbox::Bytes(conn, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn write_loop(
    conn: ConnId,
    mut stream: TcpStream,
    frames: Receiver<Vec<u8>>,
    pending: Arc<AtomicUsize>,
    inbox: Sender<Inbox>,
) {
    while let Ok(mut batch) = frames.recv().await {
        while batch.len() < WRITE_BATCH_BYTES {
            match frames.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = stream.write_all(&batch).await {
            // Not reported from here: the peer may have gone after saying its last words (a
            // `Leave`) that the read loop has not read yet, and a `Closed` from this loop could
            // overtake them. A write fails only on a broken connection, so the read loop reads
            // what is left, then fails or ends too and reports it (and a node closes a silent
            // link after `stale_after` anyway).
            tracing::debug!("{conn:?}: write failed: {e}");
            pending.store(0, Ordering::Relaxed);
            return;
        }
        let left = pending.fetch_sub(batch.len(), Ordering::Relaxed) - batch.len();
        // The node hears that the backlog shrank; once it is gone it must hear (a paused reader
        // waits for it), before that a full inbox may skip one.
        if left == 0 {
            if inbox.send(Inbox::Written(conn)).await.is_err() {
                return;
            }
        } else if inbox.try_send(Inbox::Written(conn)).is_err() && inbox.is_closed() {
            return;
        }
    }
    // The node closed the connection and everything queued is written.
    let _ = stream.flush().await;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    pending.store(0, Ordering::Relaxed);
}

impl Driver<'_> {
    fn on_inbox(&mut self, now: Time, msg: Inbox) {
        match msg {
            Inbox::Accepted(stream, remote) => match self.node.accept(now, remote) {
                Some(conn) => self.attach(conn, stream),
                None => tracing::debug!("refused a connection from {remote}"),
            },
            Inbox::Connected(conn, stream) => {
                self.attach(conn, stream);
                self.node.handle_input(now, Input::Connected(conn));
            }
            Inbox::DialFailed(conn) => self.node.handle_input(now, Input::DialFailed(conn)),
            Inbox::Bytes(conn, bytes) => {
                if self.conns.contains_key(&conn) {
                    self.node.handle_input(now, Input::Received(conn, &bytes));
                }
            }
            Inbox::Written(conn) => self.report_backlog(now, conn),
            Inbox::Closed(conn) => {
                if self.conns.remove(&conn).is_some() {
                    self.node.handle_input(now, Input::Closed(conn));
                }
            }
            Inbox::PortMapped(answer) => self.node.handle_input(now, Input::PortMapped(answer)),
        }
    }

    fn attach(&mut self, conn: ConnId, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (out, frames) = channel::unbounded();
        let pending = Arc::new(AtomicUsize::new(0));
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (resume, resumed) = channel::bounded(1);
        let reader = self.ex.spawn(read_loop(conn, stream.clone(), self.inbox.clone(), paused.clone(), resumed));
        let writer = self.ex.spawn(write_loop(conn, stream, frames, pending.clone(), self.inbox.clone()));
        self.conns.insert(conn, Conn { out, pending, reported: 0, paused, resume, _reader: reader, writer });
    }

    /// Tells the node what waits to be written to `conn`, when that changed, and pauses or
    /// resumes its reader as the node wants.
    fn report_backlog(&mut self, now: Time, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let pending = c.pending.load(Ordering::Relaxed);
        if pending != c.reported {
            c.reported = pending;
            self.node.handle_input(now, Input::Backlog(conn, pending));
        }
        let Some(c) = self.conns.get(&conn) else { return };
        let pause = !self.node.wants_read(conn);
        if c.paused.swap(pause, Ordering::Relaxed) && !pause {
            let _ = c.resume.try_send(());
        }
    }

    /// Handles outputs until the node has none left (the run-loop contract).
    fn drain(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Transmit { conn, bytes } => {
                    let Some(c) = self.conns.get(&conn) else { continue };
                    c.pending.fetch_add(bytes.len(), Ordering::Relaxed);
                    let _ = c.out.try_send(bytes);
                    let now = self.clock.now();
                    self.report_backlog(now, conn);
                }
                Output::Dial { conn, addr } => {
                    let inbox = self.inbox.clone();
                    self.ex
                        .spawn(async move {
                            let msg = match TcpStream::connect(addr).await {
                                Ok(s) => Inbox::Connected(conn, s),
                                Err(e) => {
                                    tracing::debug!("dial {addr}: {e}");
                                    Inbox::DialFailed(conn)
                                }
                            };
                            let _ = inbox.send(msg).await;
                        })
                        .detach();
                }
                Output::Punch { conn, addr, port } => {
                    let inbox = self.inbox.clone();
                    self.ex
                        .spawn(async move {
                            // Blocking, on smol's thread pool: connect() from a bound socket2
                            // socket, SYNs retried by the kernel until the timeout.
                            let dialed = smol::unblock(move || {
                                let s = sockets::punch_socket(addr, port)?;
                                s.connect_timeout(&addr.into(), PUNCH_TIMEOUT)?;
                                Ok::<_, std::io::Error>(std::net::TcpStream::from(s))
                            })
                            .await
                            .and_then(TcpStream::try_from);
                            let msg = match dialed {
                                Ok(s) => Inbox::Connected(conn, s),
                                Err(e) => {
                                    tracing::debug!("punch {addr}: {e}");
                                    Inbox::DialFailed(conn)
                                }
                            };
                            let _ = inbox.send(msg).await;
                        })
                        .detach();
                }
                Output::Close { conn } => {
                    // Dropping the sender lets the writer flush what is queued, then close; the
                    // reader task is cancelled with the rest of `Conn`.
                    if let Some(c) = self.conns.remove(&conn) {
                        self.draining.push((c.pending, c.writer, Instant::now() + CLOSE_LINGER));
                    }
                }
                Output::PortMapping(req) => self.port_mapping(req),
                Output::Event(e) => (self.on_event)(e),
            }
        }
    }

    /// Hands a request to the port mapping thread, started at the first.
    fn port_mapping(&mut self, req: MapRequest) {
        let inbox = &self.inbox;
        let report = || -> portmap::Report {
            let inbox = inbox.clone();
            Box::new(move |answer| {
                let _ = inbox.send_blocking(Inbox::PortMapped(answer));
            })
        };
        if let Some(answer) = portmap::PortMapper::hand_over(&mut self.mapper, req, report) {
            let now = self.clock.now();
            self.node.handle_input(now, Input::PortMapped(answer));
        }
    }
}
