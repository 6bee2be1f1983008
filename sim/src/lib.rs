//! # p2p-chat-sim
//!
//! A deterministic simulator: thousands of virtual nodes running the real `p2p_chat_core::Node` on
//! virtual time, joined through bootstrap nodes and peer exchange, under loss, latency, churn and
//! partitions. One seed decides everything, so any run replays exactly.
//!
//! A run has phases, after TigerBeetle's VOPR: nodes join; the mesh settles; a fault phase (chats
//! are sent while loss, crashes and a partition are in force); then the faults heal (crashed nodes
//! restart with no memory) and the network must converge within a bound: every live node delivers
//! every chat exactly once, and no forged chat anywhere. A run that does not is an error that prints
//! the command replaying it.

mod attack;
mod cheap_keys;
mod hint;
mod id_hash;
mod metrics;
mod plot;
mod report;
mod rooms;
mod shared_chats;
mod world;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use p2p_chat_core::Time;

pub use attack::Flood;
pub use cheap_keys::CheapKeys;
pub use report::Report;
pub use shared_chats::SharedChats;
pub use world::{NoTrace, Trace, Tracer, World};

/// Everything a run depends on.
#[derive(Clone, Debug)]
pub struct Params {
    pub nodes: usize,
    pub messages: usize,
    pub fanout: usize,
    pub ttl: u8,
    /// Probability that a piece of data is lost (and retransmitted) during the fault phase.
    pub loss: f64,
    pub latency_ms: (u64, u64),
    /// Share of nodes that crash during the fault phase (restarted when it ends).
    pub churn: f64,
    /// All of them at one instant (a quarter into the fault phase) rather than spread over its
    /// first half.
    pub crash_at_once: bool,
    pub partition: bool,
    pub seed: u64,
    pub real_crypto: bool,
    pub repair: bool,
    /// Nodes announce themselves with Join chats (N^2 deliveries for N nodes).
    pub joins: bool,
    /// Altered chats injected by malicious neighbours during the fault phase.
    pub forgeries: usize,
    pub target_peers: usize,
    /// Most connections a node keeps (`Config::max_peers`): with few, nodes fill up as the
    /// well-connected do in a large network.
    pub max_peers: usize,
    /// Well-known bootstrap nodes (the first ones to start); each node is told of three of them.
    pub bootstrap: usize,
    pub join_s: f64,
    pub settle_s: f64,
    pub fault_s: f64,
    /// How long after healing the network has to converge.
    pub converge_s: f64,
    /// Attacker peers flooding honest nodes with requests during the fault phase (see
    /// `attack`). They speak the real handshake, so they need `real_crypto`.
    pub attackers: usize,
    /// Rooms besides the default one (see `rooms`); chats are spread over them.
    pub rooms: usize,
    /// Direct messages sent between random pairs during the fault phase (`world::dms`).
    pub dms: usize,
    /// Members removed from private rooms during the fault phase (`world::moderation`).
    pub kicks: usize,
    /// Share of nodes behind NAT, of those behind a symmetric one, and of those whose router
    /// maps ports when asked (UPnP) (`world::nat`).
    pub nat: f64,
    pub symmetric_share: f64,
    pub upnp_share: f64,
}

impl Params {
    pub fn new(nodes: usize, seed: u64) -> Params {
        Params {
            nodes,
            messages: 20,
            fanout: 3,
            ttl: 32,
            loss: 0.0,
            latency_ms: (10, 100),
            churn: 0.0,
            crash_at_once: false,
            partition: false,
            seed,
            real_crypto: false,
            repair: true,
            joins: true,
            forgeries: 1,
            target_peers: p2p_chat_core::Config::default().target_peers,
            max_peers: p2p_chat_core::Config::default().max_peers,
            bootstrap: 3,
            join_s: 5.0,
            settle_s: 10.0,
            fault_s: 20.0,
            converge_s: 120.0,
            attackers: 0,
            rooms: 0,
            dms: 0,
            kicks: 0,
            nat: 0.0,
            symmetric_share: 1.0 / 3.0,
            upnp_share: 0.0,
        }
    }

    /// The flood each attacker sends: the kinds in turn, from an offset the seed chooses.
    pub fn attack_kinds(&self) -> Vec<Flood> {
        let mut x = self.seed ^ 0x5eed_a77a_c4e5_0000;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let offset = ((x ^ (x >> 31)) % Flood::ALL.len() as u64) as usize;
        (0..self.attackers).map(|a| Flood::ALL[(offset + a) % Flood::ALL.len()]).collect()
    }

    /// One line saying what the attackers do, for the start of a run.
    pub fn attack_plan(&self) -> String {
        let kinds: Vec<String> =
            self.attack_kinds().iter().enumerate().map(|(a, k)| format!("attacker{a} {}", k.name())).collect();
        format!(
            "attackers: {}, each dialing {} honest nodes, floods paced at {} frames/s after one catch-up: {}",
            self.attackers,
            attack::VICTIMS_EACH,
            attack::PACED_PER_SEC,
            kinds.join(", ")
        )
    }
}

impl Params {
    /// The `p2p-chat simulate` command line that replays this run exactly.
    pub fn replay(&self) -> String {
        let mut c = format!(
            "p2p-chat simulate --nodes {} --messages {} --fanout {} --ttl {} --loss {} --latency-ms {}..{} --churn {} \
             --bootstrap {} --max-peers {} --forgeries {}",
            self.nodes,
            self.messages,
            self.fanout,
            self.ttl,
            self.loss,
            self.latency_ms.0,
            self.latency_ms.1,
            self.churn,
            self.bootstrap,
            self.max_peers,
            self.forgeries
        );
        let flags = [
            (self.crash_at_once, " --crash-at-once"),
            (self.partition, " --partition"),
            (!self.repair, " --no-repair"),
            (self.real_crypto, " --real-crypto"),
            (!self.joins, " --no-joins"),
        ];
        if self.attackers > 0 {
            c += &format!(" --attackers {}", self.attackers);
        }
        if self.rooms > 0 {
            c += &format!(" --rooms {}", self.rooms);
        }
        if self.dms > 0 {
            c += &format!(" --dms {}", self.dms);
        }
        if self.kicks > 0 {
            c += &format!(" --kicks {}", self.kicks);
        }
        if self.nat > 0.0 {
            c += &format!(" --nat {} --symmetric-share {}", self.nat, self.symmetric_share);
            if self.upnp_share > 0.0 {
                c += &format!(" --upnp-share {}", self.upnp_share);
            }
        }
        for (on, flag) in flags {
            if on {
                c += flag;
            }
        }
        c + &format!(
            " --join-s {} --settle-s {} --fault-s {} --converge-s {} --seed {}",
            self.join_s, self.settle_s, self.fault_s, self.converge_s, self.seed
        )
    }
}

/// Runs one scenario to the end of its convergence bound (or until converged).
pub fn run(p: &Params, progress: impl FnMut(&World, Time)) -> Report {
    run_traced(p, progress, &mut NoTrace).expect("nothing stops an untraced run")
}

/// `run`, showing `tracer` every event; `None` if the tracer stopped the run.
pub fn run_traced<T: Tracer>(p: &Params, mut progress: impl FnMut(&World, Time), tracer: &mut T) -> Option<Report> {
    let wall = Instant::now();
    let mut w = World::new(p.clone());
    let end = w.heal_at + Duration::from_secs_f64(p.converge_s);
    if !w.run_until_traced(w.heal_at, |w| progress(w, end), tracer) {
        return None;
    }
    let mut converged_at = None;
    while w.now < end {
        let next = w.now + Duration::from_millis(500);
        if !w.run_until_traced(next, |w| progress(w, end), tracer) {
            return None;
        }
        let live: Vec<usize> = (0..w.node_count()).filter(|&i| w.is_live(i)).collect();
        // Converged: nothing missing, and every node has had its peers (a crowd still queueing
        // at a bootstrap node has not converged, though it may miss no chat yet).
        let peered = w.metrics.full_peer_set_at.is_some();
        if w.metrics.missing(&live) == 0 && w.dms_settled() && w.moderation_settled() && peered {
            converged_at = Some(w.now);
            break;
        }
    }
    w.check_invariants();
    Some(Report::new(p, &w, converged_at, wall.elapsed()))
}

/// Events a traced run hands over at a time.
const TRACE_BATCH: usize = 4096;

/// The first run's side of `run_twice`: hands its events over in batches.
struct TraceSender {
    tx: std::sync::mpsc::SyncSender<Vec<Trace>>,
    batch: Vec<Trace>,
}

impl Tracer for TraceSender {
    const ON: bool = true;
    fn step(&mut self, t: Trace) -> bool {
        self.batch.push(t);
        if self.batch.len() < TRACE_BATCH {
            return true;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(TRACE_BATCH));
        self.tx.send(full).is_ok()
    }
}

/// The second run's side: compares each of its events with the first run's.
struct TraceChecker {
    rx: std::sync::mpsc::Receiver<Vec<Trace>>,
    theirs: std::vec::IntoIter<Trace>,
    /// The first pair that differed: the first run's event (none: it had ended) and ours.
    diverged: Option<(Option<Trace>, Option<Trace>)>,
}

impl TraceChecker {
    fn next_theirs(&mut self) -> Option<Trace> {
        loop {
            if let Some(t) = self.theirs.next() {
                return Some(t);
            }
            self.theirs = self.rx.recv().ok()?.into_iter();
        }
    }
}

impl Tracer for TraceChecker {
    const ON: bool = true;
    fn step(&mut self, ours: Trace) -> bool {
        let theirs = self.next_theirs();
        if theirs == Some(ours) {
            return true;
        }
        self.diverged = Some((theirs, Some(ours)));
        false
    }
}

/// Runs the scenario twice side by side (the first on another thread) and compares them event by
/// event: `Err` says where they first differed. Both runs are in memory at once, so the peak RSS
/// reported covers two.
pub fn run_twice(p: &Params, progress: impl FnMut(&World, Time)) -> Result<Report, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    std::thread::scope(|scope| {
        let first = scope.spawn(move || {
            let mut sender = TraceSender { tx, batch: Vec::with_capacity(TRACE_BATCH) };
            let report = run_traced(p, |_, _| {}, &mut sender);
            let rest = std::mem::take(&mut sender.batch);
            if !rest.is_empty() {
                let _ = sender.tx.send(rest);
            }
            report.map(|r| r.fingerprint)
        });
        let mut checker = TraceChecker { rx, theirs: Vec::new().into_iter(), diverged: None };
        let second = run_traced(p, progress, &mut checker);
        if checker.diverged.is_none() {
            if let Some(t) = checker.next_theirs() {
                checker.diverged = Some((Some(t), None));
            }
        }
        let TraceChecker { rx, diverged, .. } = checker;
        // The first run stops at its next batch once nobody listens.
        drop(rx);
        let first = first.join().expect("the first run does not panic");
        let describe = |t: Option<Trace>| t.map_or_else(|| "(run over)".to_string(), |t| t.to_string());
        match (diverged, second, first) {
            (Some((theirs, ours)), _, _) => {
                Err(format!("the two runs diverged; first run: {}; second run: {}", describe(theirs), describe(ours)))
            }
            (None, Some(report), Some(fingerprint)) if fingerprint == report.fingerprint => Ok(report),
            (None, Some(_), _) => Err("the two runs had the same events but different figures".to_string()),
            (None, None, _) => Err("the second run was stopped without a difference".to_string()),
        }
    })
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("expected MIN..MAX, got {s:?}"))?;
    let (a, b): (u64, u64) =
        (a.trim().parse().map_err(|e| format!("{e}"))?, b.trim().parse().map_err(|e| format!("{e}"))?);
    if a > b || b > 60_000 {
        return Err(format!("need MIN <= MAX <= 60000, got {a}..{b}"));
    }
    Ok((a, b))
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("must be between 0 and 1, got {v}"));
    }
    Ok(v)
}

/// `p2p-chat simulate`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Number of virtual nodes
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub nodes: u32,
    /// Chats sent during the fault phase, by random nodes
    #[arg(long, default_value_t = 100)]
    pub messages: u32,
    /// Gossip fanout (eager links per node)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fanout: u32,
    /// Eager hops a chat may take
    #[arg(long, default_value_t = 32)]
    pub ttl: u8,
    /// Share of data pieces lost and retransmitted during the fault phase (0..1)
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub loss: f64,
    /// Link latency range in ms, MIN..MAX (each connection draws its own)
    #[arg(long, default_value = "10..100", value_parser = parse_range)]
    pub latency_ms: (u64, u64),
    /// Share of nodes that crash during the fault phase, restarted without memory when it ends (0..1)
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub churn: f64,
    /// Crash the --churn share all at one instant (a quarter into the fault phase) instead of
    /// spreading the crashes over its first half
    #[arg(long)]
    pub crash_at_once: bool,
    /// Split the network in two halves for the fault phase, then heal
    #[arg(long)]
    pub partition: bool,
    /// Seed: the same seed replays the same run exactly [default: random, printed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object instead of the table
    #[arg(long)]
    pub json: bool,
    /// Also draw delivery over time to this SVG file
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// Plain push gossip as originally described (fanout + TTL, no lazy repair, no anti-entropy)
    #[arg(long)]
    pub no_repair: bool,
    /// Real Ed25519 signatures instead of the cheap stand-in (much slower at scale)
    #[arg(long)]
    pub real_crypto: bool,
    /// No Join chats: every node announcing itself to every other costs N^2 deliveries, which
    /// dominates runs of many thousands of nodes
    #[arg(long)]
    pub no_joins: bool,
    /// Well-known bootstrap nodes (the first to start); each joining node is told of three of them
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub bootstrap: u32,
    /// Most connections a node keeps; a small value makes nodes fill up as the well-connected
    /// ones of a large network do
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub max_peers: u32,
    /// Chats altered after signing that malicious neighbours inject during the fault phase (none
    /// may be delivered)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub forgeries: u32,
    /// Run twice and fail if the two runs differ in any way
    #[arg(long)]
    pub check_determinism: bool,
    /// Attacker peers that complete the real handshake with a few honest nodes each and flood
    /// them with requests during the fault phase, paced just under the control rate (implies
    /// --real-crypto)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub attackers: u32,
    /// Rooms besides the default one: sizes Zipf-distributed (the largest a tenth of the network,
    /// none under 5 members), members scattered at random, --messages spread over them and the
    /// default room
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub rooms: u32,
    /// Virtual seconds over which the nodes start (join)
    #[arg(long, default_value_t = 5.0)]
    pub join_s: f64,
    /// Virtual seconds for the mesh to settle before the fault phase
    #[arg(long, default_value_t = 10.0)]
    pub settle_s: f64,
    /// Length of the fault phase in virtual seconds
    #[arg(long, default_value_t = 20.0)]
    pub fault_s: f64,
    /// Virtual seconds allowed to converge after healing
    #[arg(long, default_value_t = 120.0)]
    pub converge_s: f64,
    /// Direct messages sent between random pairs during the fault phase, half of them (under
    /// --churn) to nodes that will crash and come back with their state
    #[arg(long, default_value_t = 0)]
    pub dms: u32,
    /// With --rooms: every room is private, and its owner and an admin remove this many members
    /// in all (every other one banned) during the fault phase; fails if the members disagree on
    /// the membership after heal, or a removed node can open a chat written after its removal
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub kicks: u32,
    /// Share of nodes behind NAT (never a bootstrap node): nobody can dial them, and they are
    /// reached through relays
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub nat: f64,
    /// Of the nodes behind NAT, the share behind a symmetric NAT
    #[arg(long, default_value_t = 1.0 / 3.0, value_parser = share)]
    pub symmetric_share: f64,
    /// Of the nodes behind NAT, the share whose router maps a port when asked (UPnP): those
    /// become dialable once they have asked
    #[arg(long, default_value_t = 0.0, value_parser = share)]
    pub upnp_share: f64,
}

/// A share, from 0 to 1.
fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a share from 0 to 1")),
    }
}

impl SimulateArgs {
    pub fn params(&self, seed: u64) -> Params {
        Params {
            messages: self.messages as usize,
            fanout: self.fanout as usize,
            ttl: self.ttl,
            loss: self.loss,
            latency_ms: self.latency_ms,
            churn: self.churn,
            crash_at_once: self.crash_at_once,
            partition: self.partition,
            // Attackers speak the real handshake (the core's test client has real keys only).
            real_crypto: self.real_crypto || self.attackers > 0,
            repair: !self.no_repair,
            joins: !self.no_joins,
            join_s: self.join_s,
            settle_s: self.settle_s,
            fault_s: self.fault_s,
            converge_s: self.converge_s,
            bootstrap: self.bootstrap as usize,
            max_peers: self.max_peers as usize,
            forgeries: self.forgeries as usize,
            attackers: self.attackers as usize,
            rooms: self.rooms as usize,
            dms: self.dms as usize,
            kicks: self.kicks as usize,
            nat: self.nat,
            symmetric_share: self.symmetric_share,
            upnp_share: self.upnp_share,
            ..Params::new(self.nodes as usize, seed)
        }
    }

    /// The command line that replays this run.
    pub fn replay(&self, seed: u64) -> String {
        self.params(seed).replay()
    }
}

/// Writes a line to stdout. A reader that went away (`simulate | head`) is not the run's failure.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write to standard output"),
        _ => Ok(()),
    }
}

/// The `simulate` command: runs, prints, and fails when the run did not converge.
pub fn run_simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    let seed = match args.seed {
        Some(s) => s,
        None => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        }
    };
    // A day of virtual time is far beyond any useful run, and keeps every duration representable.
    let phase = |v: f64, zero_ok: bool| v.is_finite() && v <= 86_400.0 && (v > 0.0 || (zero_ok && v == 0.0));
    if !phase(args.fault_s, false) || !phase(args.converge_s, false) {
        bail!("--fault-s and --converge-s must be positive, at most 86400");
    }
    if !phase(args.join_s, true) || !phase(args.settle_s, true) {
        bail!("--join-s and --settle-s must be between 0 and 86400");
    }
    // Opened before the run, so that a path that cannot be written fails at once, not after
    // minutes of simulation whose report would then be thrown away. Not truncated until the plot
    // is written: an interrupted run leaves an earlier plot as it was.
    let cannot = |path: &std::path::Path| format!("cannot write the plot to {}", path.display());
    let plot = match &args.plot {
        Some(path) => Some((
            path,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .with_context(|| cannot(path))?,
        )),
        None => None,
    };
    let params = args.params(seed);
    if params.attackers > 0 && !args.json {
        print_stdout(&params.attack_plan())?;
    }
    let show_progress = !args.json && std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let progress = |w: &World, end: Time| {
        if show_progress && last.elapsed() >= Duration::from_millis(200) {
            last = Instant::now();
            let t0 = Time::from_millis(world::T0_MS);
            let done = w.now.since(t0).as_secs_f64() / end.since(t0).as_secs_f64().max(1e-9);
            let bar = "#".repeat((done * 30.0) as usize);
            eprint!("\r[{bar:<30}] virtual {:.0}s, {} events ", w.now.since(t0).as_secs_f64(), w.events);
        }
    };
    let report = if args.check_determinism {
        match run_twice(&params, progress) {
            Ok(report) => report,
            Err(why) => {
                if show_progress {
                    eprint!("\r{:60}\r", "");
                }
                bail!(
                    "two runs with seed {seed} differed, the simulation is not deterministic: {why}; replay with: {}",
                    args.replay(seed)
                )
            }
        }
    } else {
        run(&params, progress)
    };
    if show_progress {
        eprint!("\r{:60}\r", "");
    }
    if args.json {
        print_stdout(&report.json(args.check_determinism))?;
    } else {
        print_stdout(&report.table(args.check_determinism))?;
    }
    if let Some((path, mut file)) = plot {
        file.set_len(0)
            .and_then(|()| file.write_all(report.svg().as_bytes()))
            .and_then(|()| file.sync_all())
            .with_context(|| cannot(path))?;
        if !args.json {
            print_stdout(&format!("plot written to {}", path.display()))?;
        }
    }
    if let Some(why) = report.failure() {
        bail!("{why} (seed {seed}); replay with: {}", args.replay(seed));
    }
    Ok(())
}
