//! `p2p-chat bench`: the real node over real TCP on 127.0.0.1, measured side by side with the
//! machine's own limits (Ed25519 sign and verify rates) in the same run.
//!
//! Per runtime, in this order:
//! 1. sign, verify and batch-verify rates of this machine (one core);
//! 2. RSS of idle nodes and idle connections: a hub and `--idle` nodes in this process, first
//!    unconnected, then each connected to the hub (both ends of each connection live here);
//! 3. a chain sender -> relay -> receiver (the sender and the receiver do not listen, and may hold
//!    one peer each, so they can never meet): latency per hop at `--rate` chats/s, then throughput
//!    of `--chats` chats sent as fast as the chain takes them (a window of `--window` in flight),
//!    with the latency per hop of that saturated run;
//! 4. with `--peers N`, one node with N connected peers (as many as the file-descriptor limit
//!    allows), its RSS, and how long one chat takes to reach every peer.
//!
//! `--runtime both` runs each runtime in a child process of its own, so the memory figures of one
//! are not flattered by what the other freed.

use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use p2p_chat_core::app::{NodeHandle, Runtime, Start};
use p2p_chat_core::identity::verify_ed25519;
use p2p_chat_core::{Body, Chat, ChatId, Command, Config, Ed25519Keys, Event, Keys};
use p2p_chat_runtime_mio::MioRuntime;
use p2p_chat_runtime_smol::SmolRuntime;
use serde::{Deserialize, Serialize};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Runtime(s) to measure; `both` runs each in turn, in a child process of its own
    #[arg(long, value_enum, default_value_t = BenchRuntime::Both)]
    pub runtime: BenchRuntime,
    /// Chats sent through the chain for the throughput (saturation) run
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub chats: u64,
    /// Chats per second of the fixed-rate latency run
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: u64,
    /// Seconds of the fixed-rate latency run
    #[arg(long, default_value_t = 3.0)]
    pub rate_secs: f64,
    /// Most chats in flight (sent, not yet at the receiver) in the throughput run
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub window: u64,
    /// Idle connections for the RSS-per-connection figure
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub idle: u64,
    /// Also run one node with this many connected peers (0: skip)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub peers: u64,
    /// Print one JSON object per runtime (one per line)
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchRuntime {
    Mio,
    Smol,
    Both,
}

/// The per-peer chat limit used in the chain (the default is 20,000/s with a burst of 40,000,
/// which a saturated chain exceeds: the relay would rightly ban the sender as a flooder).
const CHAIN_CHAT_RATE: f64 = 1e9;
/// Text of about 100 bytes: a chat frame of about 256 bytes, as in the issue and the core benches.
const PAD: usize = 90;

/// Everything one runtime's run measured. Times in microseconds, memory in KiB.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Report {
    pub runtime: String,
    pub nproc: usize,
    pub cpu: String,
    // The machine's limits, measured in this run.
    pub sign_per_s: f64,
    pub verify_per_s: f64,
    pub verify_batch_per_s: f64,
    /// Loopback TCP round trip of one byte (p50, p99, p99.9), blocking sockets, no node.
    pub rtt_us: [f64; 3],
    // Throughput (saturation) run.
    pub chats: u64,
    pub delivered: u64,
    pub window: u64,
    pub chats_per_s: f64,
    /// chats_per_s / verify_per_s
    pub ratio: f64,
    /// chats_per_s / verify_batch_per_s
    pub ratio_batch: f64,
    pub chat_rate_limit_per_s: f64,
    // Fixed-rate latency, one hop (both hops pooled), and per hop.
    pub rate: u64,
    pub rate_chats: u64,
    pub rate_delivered: u64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    pub latency_us_p999: f64,
    pub hop1_us: [f64; 3],
    pub hop2_us: [f64; 3],
    // Saturation latency, one hop pooled, and per hop.
    pub sat_latency_us_p50: f64,
    pub sat_latency_us_p99: f64,
    pub sat_latency_us_p999: f64,
    pub sat_hop1_us: [f64; 3],
    pub sat_hop2_us: [f64; 3],
    /// Whether sender and receiver only ever had the relay as a peer.
    pub chain_ok: bool,
    pub relay_chats_refused: u64,
    pub relay_duplicates: u64,
    // Memory.
    pub rss_kib_start: u64,
    pub idle_conns: u64,
    pub rss_kib_per_node: f64,
    /// Both ends of each connection: they all live in this process.
    pub rss_kib_per_conn: f64,
    /// Whole process: the hub, its `idle_conns` peer nodes and the connections between them.
    pub rss_kib_hub_with_idle: u64,
    pub rss_kib_before_sat: u64,
    pub rss_kib_after_sat: u64,
    // Many peers (only with --peers).
    pub peers_requested: u64,
    pub peers_connected: u64,
    pub nofile_limit: u64,
    pub peers_rss_kib: u64,
    pub peers_rss_kib_per_conn: f64,
    pub peers_chat_reached: u64,
    pub peers_chat_ms: f64,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let reports = match args.runtime {
        BenchRuntime::Both => vec![child(args, "mio")?, child(args, "smol")?],
        one => vec![measure(args, one)?],
    };
    let mut text = String::new();
    if args.json {
        for r in &reports {
            text += &serde_json::to_string(r)?;
            text.push('\n');
        }
    } else {
        text = table(&reports);
    }
    // A reader that went away (`bench | head`) is not a failed measurement.
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).context("cannot write to standard output")
        }
        _ => {}
    }
    Ok(())
}

/// Runs one runtime in a child process of this program and reads back its report.
fn child(args: &BenchArgs, runtime: &str) -> Result<Report> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    let out = std::process::Command::new(exe)
        .args(["bench", "--json", "--runtime", runtime])
        .args(["--chats", &args.chats.to_string(), "--rate", &args.rate.to_string()])
        .args(["--rate-secs", &args.rate_secs.to_string(), "--window", &args.window.to_string()])
        .args(["--idle", &args.idle.to_string(), "--peers", &args.peers.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the benchmark child")?;
    ensure!(out.status.success(), "the {runtime} benchmark failed ({})", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("the benchmark child printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("bad report from the {runtime} child: {line}"))
}

fn measure(args: &BenchArgs, kind: BenchRuntime) -> Result<Report> {
    let name = if kind == BenchRuntime::Mio { "mio" } else { "smol" };
    let mut r = Report {
        runtime: name.into(),
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu: cpu_model(),
        chat_rate_limit_per_s: CHAIN_CHAT_RATE,
        rss_kib_start: rss_kib(),
        ..Report::default()
    };
    note(name, "measuring sign and verify rates");
    crypto_rates(&mut r);
    r.rtt_us = loopback_rtt(5_000)?;
    note(name, &format!("idle memory: a hub and {} nodes", args.idle));
    let idle = many(kind, args.idle as usize, false)?;
    r.idle_conns = idle.connected as u64;
    r.rss_kib_per_node = idle.per_node;
    r.rss_kib_per_conn = idle.per_conn;
    r.rss_kib_hub_with_idle = idle.rss_connected;
    ensure!(idle.connected == args.idle as usize, "only {} of {} idle peers connected", idle.connected, args.idle);
    chain(args, kind, &mut r)?;
    if args.peers > 0 {
        r.peers_requested = args.peers;
        r.nofile_limit = raise_nofile();
        // Per peer: its socket, the hub's socket, and (mio) the peer's poll and waker.
        let per_peer = if kind == BenchRuntime::Mio { 4 } else { 3 };
        let allowed = (r.nofile_limit.saturating_sub(100) / per_peer) as usize;
        let n = (args.peers as usize).min(allowed);
        note(name, &format!("many peers: a hub and {n} peers (file-descriptor limit {})", r.nofile_limit));
        let m = many(kind, n, true)?;
        r.peers_connected = m.connected as u64;
        r.peers_rss_kib = m.rss_connected;
        r.peers_rss_kib_per_conn = m.per_conn;
        r.peers_chat_reached = m.reached as u64;
        r.peers_chat_ms = m.reach_ms;
    }
    Ok(r)
}

fn note(runtime: &str, what: &str) {
    eprintln!("bench [{runtime}]: {what}");
}

// ----- the machine's limits -----

fn sample_chats(keys: &Ed25519Keys, n: usize) -> Vec<Chat> {
    (0..n as u64)
        .map(|i| {
            let mut r = [0u8; 10];
            r[..8].copy_from_slice(&i.to_be_bytes());
            let id = ChatId::new_v7(1_800_000_000_000, &r);
            Chat::new(keys, id, "bench", Body::Text(text(i)))
        })
        .collect()
}

/// Operations per second of `f`, which does `per_call` operations, run for about `secs`.
fn rate_of(secs: f64, per_call: usize, mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..16 {
            f(i);
            i += 1;
        }
    }
    (i * per_call) as f64 / start.elapsed().as_secs_f64()
}

fn crypto_rates(r: &mut Report) {
    let keys = Ed25519Keys::from_seed(7);
    let chats = sample_chats(&keys, 256);
    let signed: Vec<Vec<u8>> = chats.iter().map(|c| c.signed_bytes()).collect();
    r.sign_per_s = rate_of(0.4, 1, |i| {
        std::hint::black_box(keys.sign(&signed[i % signed.len()]));
    });
    r.verify_per_s = rate_of(0.6, 1, |i| {
        let c = &chats[i % chats.len()];
        assert!(verify_ed25519(&c.author, &signed[i % signed.len()], &c.signature));
    });
    const BATCH: usize = 64;
    let items: Vec<_> = chats.iter().zip(&signed).map(|(c, s)| (&c.author, s.as_slice(), &c.signature)).collect();
    r.verify_batch_per_s = rate_of(0.6, BATCH, |i| {
        let start = (i * BATCH) % (items.len() - BATCH);
        assert!(keys.verify_batch(&items[start..start + BATCH]).iter().all(|ok| *ok));
    });
}

/// Round trips of one byte over a loopback TCP connection to an echo thread.
fn loopback_rtt(n: usize) -> Result<[f64; 3]> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        while s.read(&mut b)? == 1 {
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut b = [0u8; 1];
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        v.push(t.elapsed().as_nanos() as f64 / 1e3);
    }
    drop(s);
    let _ = echo.join();
    Ok(percentiles(&v))
}

// ----- nodes -----

/// When each benchmark chat was delivered at one node, in nanoseconds since `base` (0: not yet).
struct Rec {
    base: Instant,
    at: Vec<AtomicU64>,
    count: AtomicUsize,
}

impl Rec {
    fn new(base: Instant, n: usize) -> Arc<Rec> {
        Arc::new(Rec { base, at: (0..n).map(|_| AtomicU64::new(0)).collect(), count: AtomicUsize::new(0) })
    }

    fn on_event(&self, e: &Event) {
        let Event::Chat(d) = e else { return };
        let Body::Text(t) = &d.chat.body else { return };
        let Some(seq) = t.get(1..11).and_then(|s| s.parse::<usize>().ok()) else { return };
        if let Some(slot) = self.at.get(seq) {
            let ns = self.base.elapsed().as_nanos() as u64 + 1;
            slot.store(ns, Ordering::Relaxed);
            self.count.fetch_add(1, Ordering::Release);
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn get(&self, seq: usize) -> Option<u64> {
        match self.at[seq].load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
}

fn text(seq: u64) -> String {
    format!("b{seq:010} {}", "x".repeat(PAD))
}

fn start(
    kind: BenchRuntime,
    config: Config,
    seed: u64,
    listen: bool,
    on_event: Box<dyn FnMut(Event) + Send>,
) -> Result<Box<dyn NodeHandle>> {
    let start = Start {
        config,
        keys: Box::new(Ed25519Keys::from_seed(seed)),
        seed,
        listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
        rooms: Vec::new(),
        restore: Vec::new(),
        known: Vec::new(),
        connect: Vec::new(),
        dm: None,
        on_event,
    };
    Ok(match kind {
        BenchRuntime::Smol => SmolRuntime::start(start)?,
        _ => MioRuntime::start(start)?,
    })
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > end {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_owned())
        })
        .unwrap_or_default()
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit in force.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every target
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur as u64
}

// ----- the chain -----

fn chain(args: &BenchArgs, kind: BenchRuntime, r: &mut Report) -> Result<()> {
    let name = r.runtime.clone();
    let rate_chats = ((args.rate as f64 * args.rate_secs).round() as u64).max(1);
    let total = (rate_chats + args.chats) as usize;
    let base = Instant::now();
    let recs = [Rec::new(base, total), Rec::new(base, total), Rec::new(base, total)];
    let end_config = |user: &str| Config {
        username: user.into(),
        max_peers: 1,
        target_peers: 1,
        announce_presence: false,
        chat_rate: p2p_chat_core::rate::RateLimit::new(CHAIN_CHAT_RATE, CHAIN_CHAT_RATE),
        ..Config::default()
    };
    let relay_config = Config { username: "relay".into(), max_peers: 2, target_peers: 2, ..end_config("relay") };
    let hook = |rec: &Arc<Rec>| -> Box<dyn FnMut(Event) + Send> {
        let rec = rec.clone();
        Box::new(move |e| rec.on_event(&e))
    };
    // Nobody but the relay listens, and the ends hold one peer each: the chain stays a chain.
    let relay = start(kind, relay_config, 11, true, hook(&recs[1]))?;
    let relay_addr = relay.local_addr().context("the relay does not listen")?;
    let receiver = start(kind, end_config("receiver"), 12, false, hook(&recs[2]))?;
    receiver.command(Command::Connect(relay_addr));
    wait_until("the receiver to connect", Duration::from_secs(10), || relay.peers().len() == 1)?;
    let sender = start(kind, end_config("sender"), 10, false, hook(&recs[0]))?;
    sender.command(Command::Connect(relay_addr));
    wait_until("the sender to connect", Duration::from_secs(10), || {
        relay.peers().len() == 2 && sender.peers().len() == 1
    })?;
    let relay_id = Ed25519Keys::from_seed(11).public_key().peer_id();
    let chain_ok = || {
        let (s, v) = (sender.peers(), receiver.peers());
        s.len() == 1 && s[0].peer == relay_id && v.len() == 1 && v[0].peer == relay_id
    };
    ensure!(chain_ok(), "the chain is not a chain: the receiver or the sender has a peer other than the relay");
    note(&name, "chain sender -> relay -> receiver is up");

    // Fixed rate.
    note(&name, &format!("{rate_chats} chats at {} chats/s", args.rate));
    let t0 = Instant::now();
    for i in 0..rate_chats {
        let due = t0 + Duration::from_secs_f64(i as f64 / args.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sender.command(Command::Chat(text(i)));
    }
    let _ = wait_until("the fixed-rate chats", Duration::from_secs(10), || recs[2].count() >= rate_chats as usize);
    r.rate = args.rate;
    r.rate_chats = rate_chats;
    r.rate_delivered = recs[2].count() as u64;
    let (hop1, hop2) = hops(&recs, 0..rate_chats as usize);
    r.hop1_us = percentiles(&hop1);
    r.hop2_us = percentiles(&hop2);
    [r.latency_us_p50, r.latency_us_p99, r.latency_us_p999] = percentiles(&[hop1, hop2].concat());

    // Saturation: as fast as the chain takes them, at most `window` in flight.
    note(&name, &format!("{} chats as fast as the chain takes them", args.chats));
    r.rss_kib_before_sat = rss_kib();
    let first = rate_chats;
    let done_before = recs[2].count() as u64;
    let t0 = Instant::now();
    for i in 0..args.chats {
        while i - (recs[2].count() as u64 - done_before).min(i) >= args.window {
            std::thread::sleep(Duration::from_micros(50));
        }
        sender.command(Command::Chat(text(first + i)));
    }
    let timeout = Duration::from_secs_f64(30.0 + args.chats as f64 / 5_000.0);
    let _ = wait_until("the chats to arrive", timeout, || recs[2].count() as u64 >= done_before + args.chats);
    r.rss_kib_after_sat = rss_kib();
    let range = first as usize..total;
    let last = range.clone().filter_map(|s| recs[2].get(s)).max().unwrap_or(0);
    let elapsed = (last as f64 / 1e9 - t0.duration_since(base).as_secs_f64()).max(1e-9);
    r.chats = args.chats;
    r.delivered = recs[2].count() as u64 - done_before;
    r.window = args.window;
    r.chats_per_s = r.delivered as f64 / elapsed;
    r.ratio = r.chats_per_s / r.verify_per_s;
    r.ratio_batch = r.chats_per_s / r.verify_batch_per_s;
    let (hop1, hop2) = hops(&recs, range);
    r.sat_hop1_us = percentiles(&hop1);
    r.sat_hop2_us = percentiles(&hop2);
    [r.sat_latency_us_p50, r.sat_latency_us_p99, r.sat_latency_us_p999] = percentiles(&[hop1, hop2].concat());

    r.chain_ok = chain_ok();
    let stats = relay.stats();
    r.relay_chats_refused = stats.chats_refused;
    r.relay_duplicates = stats.duplicates;
    note(&name, &format!("{:.0} chats/s through the relay", r.chats_per_s));
    for n in [&sender, &relay, &receiver] {
        n.shutdown();
    }
    ensure!(r.rate_delivered == rate_chats, "only {} of {rate_chats} fixed-rate chats arrived", r.rate_delivered);
    ensure!(r.delivered == args.chats, "only {} of {} chats arrived", r.delivered, args.chats);
    Ok(())
}

/// Per-hop latencies in microseconds: sender -> relay, relay -> receiver.
fn hops(recs: &[Arc<Rec>; 3], range: std::ops::Range<usize>) -> (Vec<f64>, Vec<f64>) {
    let (mut h1, mut h2) = (Vec::new(), Vec::new());
    for s in range {
        if let (Some(a), Some(b), Some(c)) = (recs[0].get(s), recs[1].get(s), recs[2].get(s)) {
            h1.push(b.saturating_sub(a) as f64 / 1e3);
            h2.push(c.saturating_sub(b) as f64 / 1e3);
        }
    }
    (h1, h2)
}

/// p50, p99, p99.9 (nearest rank).
fn percentiles(v: &[f64]) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.5), at(0.99), at(0.999)]
}

// ----- many connections to one node -----

struct Many {
    connected: usize,
    per_node: f64,
    per_conn: f64,
    rss_connected: u64,
    reached: usize,
    reach_ms: f64,
}

/// A hub and `n` nodes, first unconnected, then each connected to the hub. With `chat`, one of
/// them then sends a chat and the time until every node has it is measured.
fn many(kind: BenchRuntime, n: usize, chat: bool) -> Result<Many> {
    let hub_config = Config {
        username: "hub".into(),
        max_peers: n + 16,
        target_peers: 1,
        max_conns_per_ip: n + 16,
        max_handshaking: 64,
        announce_presence: false,
        ..Config::default()
    };
    let peer_config = Config {
        username: "peer".into(),
        max_peers: 1,
        target_peers: 1,
        announce_presence: false,
        ..Config::default()
    };
    let base = Instant::now();
    let rec = Rec::new(base, 1);
    let hub = start(kind, hub_config, 1_000_000, true, Box::new(|_| {}))?;
    let hub_addr = hub.local_addr().context("the hub does not listen")?;
    std::thread::sleep(Duration::from_millis(100));
    let before = rss_kib();
    let mut peers = Vec::with_capacity(n);
    for i in 0..n {
        let rec = rec.clone();
        peers.push(start(kind, peer_config.clone(), 1_000_001 + i as u64, false, Box::new(move |e| rec.on_event(&e)))?);
    }
    std::thread::sleep(Duration::from_millis(300));
    let unconnected = rss_kib();
    // A few at a time, so the hub's handshake slots are never full.
    for (i, p) in peers.iter().enumerate() {
        p.command(Command::Connect(hub_addr));
        if i % 32 == 31 {
            let _ = wait_until("peers to connect", Duration::from_secs(10), || hub.peers().len() > i - 8);
        }
    }
    let _ = wait_until("every peer to connect", Duration::from_secs(20), || hub.peers().len() >= n);
    // Let the first sync and peer exchange of every connection happen.
    std::thread::sleep(Duration::from_millis(2500));
    let connected = hub.peers().len();
    let rss_connected = rss_kib();
    let (mut reached, mut reach_ms) = (0, 0.0);
    if chat && n > 0 {
        let t0 = Instant::now();
        peers[0].command(Command::Chat(text(0)));
        let _ = wait_until("the chat to reach every peer", Duration::from_secs(30), || rec.count() >= n);
        reached = rec.count();
        reach_ms = t0.elapsed().as_secs_f64() * 1e3;
    }
    hub.shutdown();
    for p in &peers {
        p.shutdown();
    }
    let n_f = n.max(1) as f64;
    Ok(Many {
        connected,
        per_node: unconnected.saturating_sub(before) as f64 / n_f,
        per_conn: rss_connected.saturating_sub(unconnected) as f64 / connected.max(1) as f64,
        rss_connected,
        reached,
        reach_ms,
    })
}

// ----- the table -----

fn table(reports: &[Report]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let Some(first) = reports.first() else { return s };
    let _ = writeln!(s, "p2p-chat bench on {} ({} cores), 127.0.0.1, real TCP, real Ed25519", first.cpu, first.nproc);
    let _ = writeln!(
        s,
        "chain sender -> relay -> receiver; per-peer chat limit raised to {:.0}/s for it (default 20000/s)",
        first.chat_rate_limit_per_s
    );
    let mut head = format!("{:<40}", "figure");
    for r in reports {
        let _ = write!(head, "{:>14}", r.runtime);
    }
    if reports.len() == 2 {
        let _ = write!(head, "{:>12}", "ratio");
    }
    let _ = writeln!(s, "{head}");
    let mut row = |label: &str, f: &dyn Fn(&Report) -> f64| {
        let _ = write!(s, "{label:<40}");
        for r in reports {
            // Ratios are below 10 and need two decimals; everything else reads well with one.
            let v = f(r);
            let _ = if v.abs() < 10.0 { write!(s, "{v:>14.2}") } else { write!(s, "{v:>14.1}") };
        }
        if let [a, b] = reports {
            let (x, y) = (f(a), f(b));
            let _ = write!(s, "{:>12}", if y != 0.0 { format!("{:.2}", x / y) } else { "-".into() });
        }
        s.push('\n');
    };
    row("sign /s (1 core)", &|r| r.sign_per_s);
    row("verify /s (1 core)", &|r| r.verify_per_s);
    row("batch verify /s (1 core, 64 a batch)", &|r| r.verify_batch_per_s);
    row("loopback TCP round trip p50 us", &|r| r.rtt_us[0]);
    row("  p99 us", &|r| r.rtt_us[1]);
    row("chats /s through the chain", &|r| r.chats_per_s);
    row("  ratio to verify /s", &|r| r.ratio);
    row("  ratio to batch verify /s", &|r| r.ratio_batch);
    row("one hop at fixed rate p50 us", &|r| r.latency_us_p50);
    row("  p99 us", &|r| r.latency_us_p99);
    row("  p99.9 us", &|r| r.latency_us_p999);
    row("  hop 1 (sender->relay) p50 us", &|r| r.hop1_us[0]);
    row("  hop 2 (relay->receiver) p50 us", &|r| r.hop2_us[0]);
    row("one hop at saturation p50 us", &|r| r.sat_latency_us_p50);
    row("  p99 us", &|r| r.sat_latency_us_p99);
    row("  p99.9 us", &|r| r.sat_latency_us_p999);
    row("RSS per idle node KiB", &|r| r.rss_kib_per_node);
    row("RSS per idle connection KiB (both ends)", &|r| r.rss_kib_per_conn);
    row("RSS hub + idle peers, process KiB", &|r| r.rss_kib_hub_with_idle as f64);
    row("RSS before saturation KiB", &|r| r.rss_kib_before_sat as f64);
    row("RSS after saturation KiB", &|r| r.rss_kib_after_sat as f64);
    if first.peers_requested > 0 {
        row("many peers: connected", &|r| r.peers_connected as f64);
        row("  process RSS KiB", &|r| r.peers_rss_kib as f64);
        row("  RSS per connection KiB", &|r| r.peers_rss_kib_per_conn);
        row("  peers reached by one chat", &|r| r.peers_chat_reached as f64);
        row("  ms to reach them", &|r| r.peers_chat_ms);
    }
    for r in reports {
        let _ = writeln!(
            s,
            "{}: fixed rate {} chats/s, {}/{} delivered; saturation {}/{} delivered (window {}); \
             idle connections {}; chain intact: {}; relay refused {}, duplicates {}",
            r.runtime,
            r.rate,
            r.rate_delivered,
            r.rate_chats,
            r.delivered,
            r.chats,
            r.window,
            r.idle_conns,
            r.chain_ok,
            r.relay_chats_refused,
            r.relay_duplicates
        );
    }
    s
}
