//! p2p-chat over real TCP with mio: one thread, one event loop, one `Node`.
//!
//! The loop only moves bytes and fires timers: it reads sockets into `Input::Received`, writes
//! `Output::Transmit`, dials on `Output::Dial`, and sleeps in `poll` until the node's next deadline.
//! Every protocol decision is the core's. Commands from other threads arrive over a channel and wake
//! the loop through a `mio::Waker`.
//!
//! Memory per connection is bounded by the core: the loop reports each connection's unwritten
//! bytes (`Input::Backlog`), stops reading a peer while the node says so (`Node::wants_read`), and
//! closes whatever the node closes. Reading is fair: each readable connection gets one read of at
//! most [`READ_BUF_BYTES`] in turn, so one fast sender cannot keep the loop to itself.

mod clock;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

mod portmap;
mod sockets;
use mio::{Events, Interest, Poll, Token, Waker};
use p2p_chat_core::app::{DmSave, NodeHandle, NodeState, Runtime, Start, StartError};
use p2p_chat_core::nat::mapping::{MapFailure, MapRequest, Mapped};
use p2p_chat_core::{Command, ConnId, Event, Input, Node, Output, PeerSummary, Stats};

pub use clock::Clock;

/// How long `shutdown` waits for `Leave` and pending bytes to go out.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Size of the one read buffer shared by every connection: the most one connection is read at
/// its turn.
const READ_BUF_BYTES: usize = 64 * 1024;
/// How long a connection the node closed may take to flush what was sent to it before it is
/// dropped anyway (a peer that does not read would keep it open for ever).
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long a query from another thread waits for the loop before using the last snapshot.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

fn token(conn: ConnId) -> Token {
    Token(conn.0 as usize + 2)
}

/// The mio runtime (see the crate docs).
pub struct MioRuntime;

enum Ctl {
    Command(Command),
    /// A fresh snapshot, answered at once by the loop.
    Query(std::sync::mpsc::Sender<NodeState>),
    /// What to save of direct messages, answered at once by the loop.
    DmSave(std::sync::mpsc::Sender<Option<DmSave>>),
    Shutdown,
    /// The router's answer, from the port mapping thread.
    PortMapped(Result<Mapped, MapFailure>),
}

struct Handle {
    ctl: Sender<Ctl>,
    waker: Arc<Waker>,
    snapshot: Arc<Mutex<NodeState>>,
    local_addr: Option<SocketAddr>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Runtime for MioRuntime {
    fn start(mut start: Start) -> Result<Box<dyn NodeHandle>, StartError> {
        start.config.validate()?;
        let poll = Poll::new().map_err(StartError::Runtime)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(StartError::Runtime)?);
        let listener = match start.listen {
            Some(addr) => {
                let l = sockets::listen(addr).map_err(|source| StartError::Listen { addr, source })?;
                l.set_nonblocking(true).map_err(StartError::Runtime)?;
                let mut l = TcpListener::from_std(l);
                poll.registry().register(&mut l, LISTENER, Interest::READABLE).map_err(StartError::Runtime)?;
                Some(l)
            }
            None => None,
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(a) = local_addr {
            start.config.listen_port = a.port();
            // A router cannot forward to a listener on loopback only (`--bind 127.0.0.1`).
            start.config.nat.port_mapping &= !a.ip().is_loopback();
        }
        let mut clock = Clock::default();
        let now = clock.now();
        let mut node = p2p_chat_core::app::node(start.config, start.keys, start.seed, now, start.dm);
        p2p_chat_core::app::prime(&mut node, now, start.rooms, start.restore, start.known, start.connect);
        let (ctl, ctl_rx) = mpsc::channel();
        let snapshot = Arc::new(Mutex::new(NodeState::default()));
        let mut event_loop = Loop {
            node,
            clock,
            poll,
            listener,
            socks: HashMap::new(),
            ready: VecDeque::new(),
            lingering: VecDeque::new(),
            ctl: ctl_rx,
            ctl_tx: ctl.clone(),
            waker: waker.clone(),
            mapper: None,
            on_event: start.on_event,
            snapshot: snapshot.clone(),
            closed: Vec::new(),
            shutdown_by: None,
        };
        let thread = std::thread::Builder::new()
            .name("p2p-chat-mio".into())
            .spawn(move || event_loop.run())
            .map_err(StartError::Runtime)?;
        Ok(Box::new(Handle { ctl, waker, snapshot, local_addr, thread: Mutex::new(Some(thread)) }))
    }
}

impl NodeHandle for Handle {
    fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    fn command(&self, cmd: Command) {
        if self.ctl.send(Ctl::Command(cmd)).is_ok() {
            let _ = self.waker.wake();
        }
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
        let (tx, rx) = mpsc::channel();
        self.ctl.send(Ctl::DmSave(tx)).ok()?;
        self.waker.wake().ok()?;
        rx.recv_timeout(QUERY_TIMEOUT).ok().flatten()
    }

    fn shutdown(&self) {
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else { return };
        if self.ctl.send(Ctl::Shutdown).is_ok() {
            let _ = self.waker.wake();
        }
        let _ = thread.join();
    }
}

impl Handle {
    /// Asks the loop for the current state; once the loop has stopped, the last snapshot it left.
    fn query(&self) -> NodeState {
        let (tx, rx) = mpsc::channel();
        if self.ctl.send(Ctl::Query(tx)).is_ok() && self.waker.wake().is_ok() {
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

struct Sock {
    stream: TcpStream,
    /// Bytes not yet written, from `sent` on.
    out: Vec<u8>,
    sent: usize,
    connecting: bool,
    /// The node closed it: drop once `out` is flushed, or at this time.
    closing: Option<Instant>,
    /// Readable, and in `Loop::ready` to be read at its turn.
    queued: bool,
    /// The backlog last reported to the node.
    reported: usize,
    /// A write failed: nothing more is written, and the node hears of it once what the peer sent
    /// before is read (see `Loop::drain`).
    failed: bool,
    wants_write: bool,
}

impl Sock {
    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Writes what it can. `Err` means the connection is broken.
    fn flush(&mut self) -> io::Result<()> {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        Ok(())
    }
}

struct Loop {
    node: Node,
    clock: Clock,
    poll: Poll,
    listener: Option<TcpListener>,
    socks: HashMap<ConnId, Sock>,
    ctl: Receiver<Ctl>,
    /// For the port mapping thread's answers.
    ctl_tx: Sender<Ctl>,
    waker: Arc<Waker>,
    /// Started at the node's first request; dropped with the loop, after the removal of the
    /// mapping reached the router (or its grace ran out).
    mapper: Option<portmap::PortMapper>,
    on_event: Box<dyn FnMut(Event) + Send>,
    snapshot: Arc<Mutex<NodeState>>,
    /// Connections that broke while outputs were being handled, reported to the node after.
    closed: Vec<ConnId>,
    /// Readable connections, each read once at its turn (see `read_ready`).
    ready: VecDeque<ConnId>,
    /// Connections the node closed, with the time they are dropped if still not flushed, in that
    /// order (the linger is the same for all).
    lingering: VecDeque<(Instant, ConnId)>,
    shutdown_by: Option<Instant>,
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_BUF_BYTES];
        self.drain();
        loop {
            let timeout = self.node.poll_timeout().map(|(at, _)| at.since(self.clock.now()));
            // Connections still readable are read at once, after any new events; a lingering close
            // is dropped on time.
            let timeout = if self.ready.is_empty() { timeout } else { Some(Duration::ZERO) };
            let timeout = match self.lingering.front() {
                Some((by, _)) => {
                    let linger = by.saturating_duration_since(Instant::now());
                    Some(timeout.map_or(linger, |t| t.min(linger)))
                }
                None => timeout,
            };
            let timeout = match self.shutdown_by {
                Some(by) => Some(timeout.unwrap_or(SHUTDOWN_GRACE).min(by.saturating_duration_since(Instant::now()))),
                None => timeout,
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("poll failed, stopping the node: {e}");
                    return;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.commands(),
                    t => {
                        let conn = ConnId(t.0 as u64 - 2);
                        if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                            self.on_writable(conn);
                        }
                        if ev.is_readable() || ev.is_read_closed() {
                            self.mark_ready(conn);
                        }
                    }
                }
            }
            self.read_ready(&mut buf);
            self.drop_lingering();
            let now = self.clock.now();
            if let Some((_, why)) = self.node.poll_timeout().filter(|(at, _)| *at <= now) {
                tracing::trace!(?why, "timer due");
                self.node.handle_input(now, Input::Timeout);
                self.drain();
            }
            if let Some(by) = self.shutdown_by {
                let flushed = self.socks.values().all(|s| s.pending() == 0);
                if (self.node.is_closed() && flushed) || Instant::now() >= by {
                    self.refresh_snapshot();
                    return;
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((mut stream, remote)) => {
                    let now = self.clock.now();
                    let Some(conn) = self.node.accept(now, remote) else {
                        tracing::debug!("refused a connection from {remote}");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    if let Err(e) = self.poll.registry().register(&mut stream, token(conn), Interest::READABLE) {
                        tracing::warn!("cannot watch a connection from {remote}: {e}");
                        self.node.handle_input(now, Input::Closed(conn));
                    } else {
                        tracing::debug!("accepted {remote} as {conn:?}");
                        self.socks.insert(conn, sock(stream, false));
                    }
                    self.drain();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Usually out of file descriptors: the node goes on with the peers it has.
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn commands(&mut self) {
        while let Ok(ctl) = self.ctl.try_recv() {
            let now = self.clock.now();
            match ctl {
                Ctl::Command(cmd) => self.node.handle_input(now, Input::Command(cmd)),
                Ctl::Query(reply) => {
                    let _ = reply.send(NodeState::of(&self.node));
                }
                Ctl::DmSave(reply) => {
                    let _ = reply.send(DmSave::of(&self.node));
                }
                Ctl::Shutdown => {
                    self.node.handle_input(now, Input::Command(Command::Leave));
                    self.shutdown_by = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                Ctl::PortMapped(answer) => self.node.handle_input(now, Input::PortMapped(answer)),
            }
            self.drain();
        }
    }

    fn on_writable(&mut self, conn: ConnId) {
        let Some(s) = self.socks.get_mut(&conn) else { return };
        if s.connecting {
            let failed = match s.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match s.stream.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // not yet
                    Err(e) => Some(e),
                },
            };
            let now = self.clock.now();
            if let Some(e) = failed {
                tracing::debug!("dial {conn:?} failed: {e}");
                self.remove(conn);
                self.node.handle_input(now, Input::DialFailed(conn));
            } else {
                s.connecting = false;
                let _ = s.stream.set_nodelay(true);
                self.node.handle_input(now, Input::Connected(conn));
            }
            self.drain();
            return;
        }
        self.write(conn);
        self.drain();
    }

    /// Queues `conn` to be read at its turn (mio reports readiness once per edge: the loop must
    /// come back to a socket it did not read to the end).
    fn mark_ready(&mut self, conn: ConnId) {
        if let Some(s) = self.socks.get_mut(&conn) {
            if !s.queued {
                s.queued = true;
                self.ready.push_back(conn);
            }
        }
    }

    /// Gives each connection that was readable one read, in turn. One that may have more stays
    /// in the queue for the next pass; one the node does not want read now waits until its
    /// backlog drains (see `write`).
    fn read_ready(&mut self, buf: &mut [u8]) {
        for _ in 0..self.ready.len() {
            let Some(conn) = self.ready.pop_front() else { return };
            let Some(s) = self.socks.get_mut(&conn) else { continue };
            s.queued = false;
            if s.connecting || !self.node.wants_read(conn) {
                continue;
            }
            let more = match s.stream.read(buf) {
                Ok(0) => {
                    self.broken(conn, "closed by peer");
                    false
                }
                Ok(n) => {
                    let now = self.clock.now();
                    self.node.handle_input(now, Input::Received(conn, &buf[..n]));
                    self.drain();
                    true
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                Err(e) => {
                    self.broken(conn, &e.to_string());
                    false
                }
            };
            if more {
                self.mark_ready(conn);
            }
        }
    }

    /// Drops connections the node closed whose peer has not taken what was left for it in time.
    fn drop_lingering(&mut self) {
        let now = Instant::now();
        while let Some(&(by, conn)) = self.lingering.front().filter(|(by, _)| *by <= now) {
            self.lingering.pop_front();
            if self.socks.get(&conn).is_some_and(|s| s.closing == Some(by)) {
                tracing::debug!("{conn:?}: dropped with unsent bytes after closing");
                self.remove(conn);
            }
        }
    }

    fn broken(&mut self, conn: ConnId, why: &str) {
        tracing::debug!("{conn:?}: {why}");
        let closing = self.socks.get(&conn).is_some_and(|s| s.closing.is_some());
        self.remove(conn);
        if !closing {
            let now = self.clock.now();
            self.node.handle_input(now, Input::Closed(conn));
            self.drain();
        }
    }

    fn remove(&mut self, conn: ConnId) {
        if let Some(mut s) = self.socks.remove(&conn) {
            let _ = self.poll.registry().deregister(&mut s.stream);
        }
    }

    /// Handles outputs until the node has none left (the run-loop contract).
    fn drain(&mut self) {
        loop {
            while let Some(out) = self.node.poll_output() {
                match out {
                    Output::Transmit { conn, bytes } => self.transmit(conn, bytes),
                    Output::Dial { conn, addr } => self.dial(conn, addr),
                    Output::Punch { conn, addr, port } => self.punch(conn, addr, port),
                    Output::Close { conn } => {
                        if let Some(s) = self.socks.get_mut(&conn) {
                            let by = Instant::now() + CLOSE_LINGER;
                            s.closing = Some(by);
                            self.lingering.push_back((by, conn));
                        }
                        self.write(conn);
                    }
                    Output::PortMapping(req) => self.port_mapping(req),
                    Output::Event(e) => (self.on_event)(e),
                }
            }
            if self.closed.is_empty() {
                return;
            }
            for conn in std::mem::take(&mut self.closed) {
                // A write fails once the peer has gone, maybe before its last bytes (its `Leave`)
                // were read: under load, answering its earlier bytes was enough to lose them.
                self.read_remaining(conn);
                self.remove(conn);
                let now = self.clock.now();
                self.node.handle_input(now, Input::Closed(conn));
            }
        }
    }

    /// Hands the node what is still in a broken socket: bounded, so a peer cannot keep the loop
    /// here, and without draining outputs in between (`drain`, the caller, does that after).
    fn read_remaining(&mut self, conn: ConnId) {
        let mut buf = [0u8; 16 * 1024];
        let mut budget = READ_BUF_BYTES;
        while budget > 0 {
            let Some(s) = self.socks.get_mut(&conn) else { return };
            match s.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let now = self.clock.now();
                    self.node.handle_input(now, Input::Received(conn, &buf[..n]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Nothing more buffered, or the error that broke it.
                Err(_) => return,
            }
        }
    }

    fn transmit(&mut self, conn: ConnId, bytes: Vec<u8>) {
        let Some(s) = self.socks.get_mut(&conn).filter(|s| !s.failed) else { return };
        if s.out.is_empty() {
            s.out = bytes;
            s.sent = 0;
        } else {
            s.out.extend_from_slice(&bytes);
        }
        if s.connecting {
            self.report_backlog(conn);
        } else {
            self.write(conn);
        }
    }

    /// Writes what the socket takes, watches for writability while bytes remain, and finishes a
    /// close once everything is out.
    fn write(&mut self, conn: ConnId) {
        let Some(s) = self.socks.get_mut(&conn) else { return };
        if s.connecting || s.failed {
            return;
        }
        if let Err(e) = s.flush() {
            tracing::debug!("{conn:?}: write failed: {e}");
            if s.closing.is_some() {
                self.remove(conn);
            } else {
                // Kept until `drain` has read what the peer sent before it went.
                s.failed = true;
                s.out = Vec::new();
                s.sent = 0;
                self.closed.push(conn);
            }
            return;
        }
        if s.closing.is_some() && s.pending() == 0 {
            let _ = s.stream.shutdown(std::net::Shutdown::Both);
            self.remove(conn);
            return;
        }
        let wants_write = s.pending() > 0;
        if wants_write != s.wants_write {
            s.wants_write = wants_write;
            let interest = if wants_write { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let _ = self.poll.registry().reregister(&mut s.stream, token(conn), interest);
        }
        self.report_backlog(conn);
    }

    /// Tells the node what waits to be written to `conn`, when that changed. The node may close
    /// the connection for it (the caller drains outputs, as after any input), and once it drains
    /// a connection whose reading was paused is read again.
    fn report_backlog(&mut self, conn: ConnId) {
        let Some(s) = self.socks.get_mut(&conn) else { return };
        let pending = s.pending();
        if pending == s.reported || s.closing.is_some() {
            return;
        }
        s.reported = pending;
        let paused = !self.node.wants_read(conn);
        let now = self.clock.now();
        self.node.handle_input(now, Input::Backlog(conn, pending));
        if paused && self.node.wants_read(conn) {
            self.mark_ready(conn);
        }
    }

    /// A hole punch's dial, from the listening port: non-blocking, it completes (or fails) as a
    /// dial does.
    fn punch(&mut self, conn: ConnId, addr: SocketAddr, port: u16) {
        let connected = sockets::punch_socket(addr, port).and_then(|s| {
            s.set_nonblocking(true)?;
            match s.connect(&addr.into()) {
                Ok(()) => {}
                #[cfg(unix)]
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            Ok(TcpStream::from_std(s.into()))
        });
        self.dialed(conn, addr, connected);
    }

    fn dial(&mut self, conn: ConnId, addr: SocketAddr) {
        self.dialed(conn, addr, TcpStream::connect(addr));
    }

    fn dialed(&mut self, conn: ConnId, addr: SocketAddr, stream: std::io::Result<TcpStream>) {
        match stream {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                match self.poll.registry().register(&mut stream, token(conn), interest) {
                    Ok(()) => {
                        let mut s = sock(stream, true);
                        s.wants_write = true;
                        self.socks.insert(conn, s);
                    }
                    Err(e) => {
                        tracing::debug!("dial {addr}: {e}");
                        self.fail_dial(conn);
                    }
                }
            }
            Err(e) => {
                tracing::debug!("dial {addr}: {e}");
                self.fail_dial(conn);
            }
        }
    }

    /// Hands a request to the port mapping thread, started at the first.
    fn port_mapping(&mut self, req: MapRequest) {
        let (ctl, waker) = (&self.ctl_tx, &self.waker);
        let report = || -> portmap::Report {
            let (ctl, waker) = (ctl.clone(), waker.clone());
            Box::new(move |answer| {
                if ctl.send(Ctl::PortMapped(answer)).is_ok() {
                    let _ = waker.wake();
                }
            })
        };
        if let Some(answer) = portmap::PortMapper::hand_over(&mut self.mapper, req, report) {
            let now = self.clock.now();
            self.node.handle_input(now, Input::PortMapped(answer));
        }
    }

    fn fail_dial(&mut self, conn: ConnId) {
        let now = self.clock.now();
        self.node.handle_input(now, Input::DialFailed(conn));
    }

    /// What `peers()`/`stats()` answer once the loop has stopped.
    fn refresh_snapshot(&mut self) {
        if let Ok(mut s) = self.snapshot.lock() {
            *s = NodeState::of(&self.node);
        }
    }
}

fn sock(stream: TcpStream, connecting: bool) -> Sock {
    Sock {
        stream,
        out: Vec::new(),
        sent: 0,
        connecting,
        closing: None,
        queued: false,
        reported: 0,
        failed: false,
        wants_write: false,
    }
}
