//! Attacks on a node's services by peers that completed the real handshake (the core's
//! `testing::Client` on a real socket): every answer stays within what the asking peer pays for
//! (see the core's `serve`), what a peer that does not read can make the node hold is bounded, and
//! honest peers are served throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use p2p_chat_core::app::Runtime;
use p2p_chat_core::testing::{flood, Client};
use p2p_chat_core::{ChatId, Command, Config, Event, Origin};

use super::{is_chat, percentile, TestNode, DEADLINE};

/// A hostile peer on a real socket. Its reader only counts what the node sends (it needs none of
/// it), or reads nothing at all.
pub struct Hostile {
    stream: TcpStream,
    client: Client,
    received: Arc<AtomicU64>,
    eof: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Hostile {
    /// Connects as identity `seed` and reads (counting) everything the node sends.
    pub fn connect(to: SocketAddr, seed: u64) -> std::io::Result<Hostile> {
        Hostile::open(to, seed, true)
    }

    /// Connects as identity `seed` and, once the handshake is done, never reads again.
    pub fn connect_deaf(to: SocketAddr, seed: u64) -> std::io::Result<Hostile> {
        Hostile::open(to, seed, false)
    }

    fn open(to: SocketAddr, seed: u64, read: bool) -> std::io::Result<Hostile> {
        let (mut client, first) = Client::dial(seed, "flooder");
        let mut stream = TcpStream::connect(to)?;
        stream.set_read_timeout(Some(DEADLINE))?;
        stream.write_all(&first)?;
        let mut buf = [0u8; 4096];
        while !client.is_up() {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let reply = client.receive(&buf[..n]).map_err(std::io::Error::other)?;
            stream.write_all(&reply)?;
        }
        let (received, eof) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let reader = read.then(|| {
            let (mut s, received, eof) = (stream.try_clone().expect("clone"), received.clone(), eof.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.set_read_timeout(None);
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
                eof.store(true, Ordering::Relaxed);
            })
        });
        Ok(Hostile { stream, client, received, eof, reader })
    }

    /// Seals and writes frames; fails once the node has closed the connection.
    pub fn send(&mut self, frames: &[u8]) -> std::io::Result<()> {
        let sealed = self.client.seal(frames).map_err(std::io::Error::other)?;
        self.stream.write_all(&sealed)
    }

    /// Bytes sent after the handshake (sealed records).
    pub fn sent(&self) -> u64 {
        self.client.bytes_out
    }

    /// Bytes received after the handshake.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Whether the node closed the connection.
    pub fn closed(&self) -> bool {
        self.eof.load(Ordering::Relaxed)
    }

    /// Waits until nothing has arrived for `quiet` (at most `DEADLINE`).
    pub fn wait_quiet(&self, quiet: Duration) {
        let end = Instant::now() + DEADLINE;
        let mut last = self.received();
        while Instant::now() < end {
            std::thread::sleep(quiet);
            let now = self.received();
            if now == last {
                return;
            }
            last = now;
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// A node holding `n` chats of its own of `bytes` bytes each; returns it and their ids.
fn victim<R: Runtime>(seed: u64, n: usize, bytes: usize) -> (TestNode, Vec<ChatId>) {
    // Attackers would come from many addresses; on loopback they share one.
    let config = Config { username: "victim".into(), max_conns_per_ip: 5000, ..Config::default() };
    let mut a = TestNode::start_with::<R>(seed, config, true, vec![]);
    for i in 0..n {
        a.handle.command(Command::Chat(format!("{i:0>bytes$}")));
    }
    let last = format!("{:0>bytes$}", n - 1);
    a.wait_for("the victim's history", is_chat(&last, Origin::Local));
    let ids = a
        .seen
        .iter()
        .filter_map(|e| match e {
            Event::Chat(d) if d.origin == Origin::Local => Some(d.chat.id),
            _ => None,
        })
        .collect();
    (a, ids)
}

/// What one flooding connection measured after its catch-up.
struct Measured {
    kind: &'static str,
    sent: u64,
    received: u64,
    banned: bool,
}

/// Frames per second a flooder paces itself to: just under the node's control-frame rate, so it
/// is never cut off for rate alone.
const PACED_PER_SEC: usize = 1_900;
/// How long each flood runs after the catch-up.
const FLOOD: Duration = Duration::from_secs(10);

/// One connection: catches up once as a new peer would, then sends `frame` paced just under the
/// rate limit for `FLOOD`, counting what goes each way from then on.
fn flood_paced(to: SocketAddr, seed: u64, kind: &'static str, frame: Vec<u8>) -> Measured {
    let mut h = Hostile::connect(to, seed).expect("the flooder completes its handshake");
    h.send(&flood::sync_everything()).expect("catch-up request");
    h.wait_quiet(Duration::from_millis(300));
    let (sent0, received0) = (h.sent(), h.received());
    let per_tick = PACED_PER_SEC / 100;
    let batch = flood::repeat(&frame, per_tick);
    let start = Instant::now();
    let mut ticks = 0u32;
    while start.elapsed() < FLOOD {
        if h.send(&batch).is_err() {
            break;
        }
        ticks += 1;
        if let Some(wait) = (start + Duration::from_millis(10) * ticks).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    h.wait_quiet(Duration::from_millis(300));
    Measured { kind, sent: h.sent() - sent0, received: h.received() - received0, banned: h.closed() }
}

/// Five connections flood a node holding 300 chats of 200 bytes, each with one kind of request,
/// paced just under the rate limit for 10 s after catching up: none gets back more than twice
/// what it sends, and an honest peer's chats keep arriving at once.
pub fn requests_are_not_amplified<R: Runtime>() {
    let (mut a, ids) = victim::<R>(81, 300, 200);
    let b = TestNode::start_on::<R>(82, "bob", false, vec![a.addr()]);
    a.wait_for("bob up", |e| matches!(e, Event::PeerUp(p) if p.username == "bob"));
    let to = a.addr();
    let kinds: Vec<(&'static str, Vec<u8>)> = vec![
        ("Sync of everything, as new", flood::sync_everything()),
        ("Sync of 64 mismatched ranges", flood::sync_walks()),
        ("IWant of every held id", flood::iwant(&ids)),
        ("Graft of every held id", flood::graft(&ids)),
        ("PeerRequest", flood::peer_request()),
    ];
    let flooders: Vec<_> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, (kind, frame))| std::thread::spawn(move || flood_paced(to, 9000 + i as u64, kind, frame)))
        .collect();

    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < FLOOD {
        let text = format!("honest {i}");
        let t = Instant::now();
        b.handle.command(Command::Chat(text.clone()));
        a.wait_for("an honest chat under the floods", is_chat(&text, Origin::Live));
        latencies.push(t.elapsed());
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    latencies.sort();
    eprintln!(
        "honest one-hop latency under 5 paced floods: p50 {:?}, p99 {:?}, max {:?} ({} chats)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    for f in flooders {
        let m = f.join().expect("flooder");
        let ratio = m.received as f64 / m.sent.max(1) as f64;
        eprintln!(
            "{}: sent {} B, got {} B back: x{ratio:.3}{}",
            m.kind,
            m.sent,
            m.received,
            if m.banned { ", banned" } else { "" }
        );
        assert!(ratio <= 2.0, "{} was amplified x{ratio:.2}", m.kind);
    }
    let stats = a.handle.stats();
    eprintln!(
        "victim: {} answer bytes, {} requests refused, {} deferred, {} repeats ignored, {} banned",
        stats.answer_bytes, stats.answers_refused, stats.answers_deferred, stats.repeats_ignored, stats.peers_banned
    );
    // No bound on the latency itself (wall-clock time on a shared machine proves little): every
    // honest chat arrived within `wait_for`'s deadline, and the figures are printed above.
    assert!(a.handle.peers().iter().any(|p| p.username == "bob"), "bob was dropped");
}

/// One record packed with a thousand requests for everything, from a peer that reads nothing:
/// the node builds answers only up to its watermark for that peer, not one per request.
pub fn one_read_cannot_make_the_node_build_more_than_its_cap<R: Runtime>() {
    let (a, _) = victim::<R>(83, 300, 4000);
    let mut h = Hostile::connect_deaf(a.addr(), 84).expect("handshake");
    let before = a.handle.stats();
    let record = flood::repeat(&flood::sync_everything(), 1000);
    assert!(record.len() < 65_000, "one record");
    h.send(&record).expect("send");
    // The node answers (up to its watermark) within moments; the figure cannot grow later, as the
    // peer reads nothing and asks nothing more.
    std::thread::sleep(Duration::from_millis(500));
    let after = a.handle.stats();
    let built = after.bytes_out - before.bytes_out;
    eprintln!("one record of 1,000 requests for 1.2 MB each: {built} bytes built, {} deferred", after.answers_deferred);
    let cap = Config::default().serve;
    assert!(built as usize <= cap.answer_watermark + cap.round_bytes + 64 * 1024, "{built} bytes built");
    assert!(after.answers_deferred > before.answers_deferred, "nothing was held back");
}

/// Thirty peers ask for a large history and never read: each gets at most its watermark and the
/// answer that crossed it (instead of a backlog of megabytes each), and honest chats go on.
pub fn peers_that_never_read_hold_little<R: Runtime>() {
    let (mut a, ids) = victim::<R>(85, 2000, 200);
    let b = TestNode::start_on::<R>(86, "bob", false, vec![a.addr()]);
    a.wait_for("bob up", |e| matches!(e, Event::PeerUp(p) if p.username == "bob"));
    let before = a.handle.stats().bytes_out;
    let want = flood::iwant(&ids[..1024]);
    let deaf: Vec<Hostile> = (0..30)
        .map(|i| {
            let mut h = Hostile::connect_deaf(a.addr(), 7000 + i).expect("handshake");
            for _ in 0..20 {
                if h.send(&want).is_err() {
                    break;
                }
            }
            h
        })
        .collect();
    b.handle.command(Command::Chat("past the deaf peers".into()));
    a.wait_for("an honest chat", is_chat("past the deaf peers", Origin::Live));
    std::thread::sleep(Duration::from_millis(500));
    let built = a.handle.stats().bytes_out - before;
    let cap = Config::default().serve;
    let bound = 30 * (cap.answer_watermark + cap.round_bytes) as u64;
    eprintln!("30 peers that never read: {built} bytes built for them (bound {bound})");
    assert!(built <= bound, "{built} bytes built for peers that never read");
    assert!(a.handle.peers().iter().any(|p| p.username == "bob"), "bob was dropped");
    drop(deaf);
}
