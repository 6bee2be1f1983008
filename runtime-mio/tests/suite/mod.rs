//! The tests every runtime must pass, on real TCP over 127.0.0.1. Each runtime's `tests/tcp.rs`
//! runs them with its own `Runtime`; `TestNode` also lets one network mix runtimes.

#![allow(dead_code)]

pub mod attack;

/// The suite's tests for runtime `$r`: each runtime's `tests/tcp.rs` says `runtime_suite!(Its)`,
/// so a test added here runs on every runtime.
macro_rules! runtime_suite {
    ($r:ty) => {
        #[test]
        fn two_nodes_chat_both_ways_exactly_once() {
            suite::two_nodes_chat_both_ways_exactly_once::<$r>();
        }

        #[test]
        fn a_chain_delivers_end_to_end_and_shutdown_is_seen() {
            suite::a_chain_delivers_end_to_end_and_shutdown_is_seen::<$r>();
        }

        #[test]
        fn a_peer_sending_garbage_is_dropped_while_honest_peers_go_on() {
            suite::a_peer_sending_garbage_is_dropped_while_honest_peers_go_on::<$r>();
        }

        #[test]
        fn listening_on_a_used_port_is_a_clear_error() {
            suite::listening_on_a_used_port_is_a_clear_error::<$r>();
        }

        #[test]
        fn peers_snapshot_follows_promptly() {
            suite::peers_snapshot_follows_promptly::<$r>();
        }

        #[test]
        fn a_node_under_attack_still_serves_honest_peers() {
            suite::a_node_under_attack_still_serves_honest_peers::<$r>();
        }

        #[test]
        fn requests_are_not_amplified() {
            suite::attack::requests_are_not_amplified::<$r>();
        }

        #[test]
        fn one_read_cannot_make_the_node_build_more_than_its_cap() {
            suite::attack::one_read_cannot_make_the_node_build_more_than_its_cap::<$r>();
        }

        #[test]
        fn peers_that_never_read_hold_little() {
            suite::attack::peers_that_never_read_hold_little::<$r>();
        }
    };
}

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use p2p_chat_core::app::{NodeHandle, Runtime, Start};
use p2p_chat_core::{Body, Command, Config, Ed25519Keys, Event, Origin};

pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestNode {
    pub handle: Box<dyn NodeHandle>,
    events: Receiver<Event>,
    seen: Vec<Event>,
}

impl TestNode {
    pub fn start_on<R: Runtime>(seed: u64, name: &str, listen: bool, connect: Vec<SocketAddr>) -> TestNode {
        TestNode::start_with::<R>(seed, Config { username: name.into(), ..Config::default() }, listen, connect)
    }

    pub fn start_with<R: Runtime>(seed: u64, config: Config, listen: bool, connect: Vec<SocketAddr>) -> TestNode {
        let (tx, events) = channel();
        let handle = R::start(Start {
            config,
            keys: Box::new(Ed25519Keys::from_seed(seed)),
            seed,
            listen: listen.then(|| "127.0.0.1:0".parse().unwrap()),
            rooms: Vec::new(),
            restore: Vec::new(),
            known: Vec::new(),
            connect,
            dm: None,
            on_event: Box::new(move |e| {
                let _ = tx.send(e);
            }),
        })
        .expect("node starts");
        TestNode { handle, events, seen: Vec::new() }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr().expect("listening")
    }

    /// Waits until an event matching `f` has been seen (now or before).
    pub fn wait_for(&mut self, what: &str, f: impl Fn(&Event) -> bool) -> Event {
        if let Some(e) = self.seen.iter().find(|e| f(e)) {
            return e.clone();
        }
        let end = Instant::now() + DEADLINE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if f(&e) {
                        return e;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("timed out waiting for {what}; saw {:#?}", self.seen);
    }

    pub fn chats(&mut self, text: &str) -> usize {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        self.seen.iter().filter(|e| matches!(e, Event::Chat(d) if d.chat.body == Body::Text(text.into()))).count()
    }
}

/// Waits until `f` holds, polling, at most `DEADLINE`: for state that a runtime publishes a moment
/// after the event that changed it (its peers snapshot).
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn is_chat(text: &str, origin: Origin) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::Chat(d) if d.chat.body == Body::Text(text.into()) && d.origin == origin)
}

pub fn two_nodes_chat_both_ways_exactly_once<R: Runtime>() {
    let mut a = TestNode::start_on::<R>(1, "alice", true, vec![]);
    let mut b = TestNode::start_on::<R>(2, "bob", false, vec![a.addr()]);
    a.wait_for("a sees bob", |e| matches!(e, Event::PeerUp(p) if p.username == "bob"));
    b.wait_for("b sees alice", |e| matches!(e, Event::PeerUp(p) if p.username == "alice"));
    a.handle.command(Command::Chat("hi bob".into()));
    b.handle.command(Command::Chat("hi alice".into()));
    a.wait_for("own chat", is_chat("hi bob", Origin::Local));
    b.wait_for("alice's chat", is_chat("hi bob", Origin::Live));
    a.wait_for("bob's chat", is_chat("hi alice", Origin::Live));
    // A barrier rather than a pause: later chats on the same connection arrive after any
    // duplicate of the earlier ones would have.
    a.handle.command(Command::Chat("marker from alice".into()));
    b.handle.command(Command::Chat("marker from bob".into()));
    b.wait_for("alice's marker", is_chat("marker from alice", Origin::Live));
    a.wait_for("bob's marker", is_chat("marker from bob", Origin::Live));
    assert_eq!(a.chats("hi alice"), 1);
    assert_eq!(b.chats("hi bob"), 1);
    eventually("alice's peers snapshot", || !a.handle.peers().is_empty());
    let peers = a.handle.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].username, "bob");
    assert!(a.handle.stats().chats_received >= 1);
}

pub fn a_chain_delivers_end_to_end_and_shutdown_is_seen<R: Runtime>() {
    let mut a = TestNode::start_on::<R>(11, "a", true, vec![]);
    let mut b = TestNode::start_on::<R>(12, "b", true, vec![a.addr()]);
    let mut c = TestNode::start_on::<R>(13, "c", false, vec![b.addr()]);
    c.wait_for("c up", |e| matches!(e, Event::PeerUp(_)));
    a.wait_for("a up", |e| matches!(e, Event::PeerUp(_)));
    a.handle.command(Command::Chat("over two hops".into()));
    c.wait_for("chat from a", is_chat("over two hops", Origin::Live));
    b.wait_for("chat at b", is_chat("over two hops", Origin::Live));
    // c announced itself (Join, at its first tick with a peer), so it will announce leaving.
    b.wait_for("c's join", |e| matches!(e, Event::Chat(d) if d.chat.body == Body::Join && d.chat.username == "c"));
    c.handle.shutdown();
    b.wait_for("c leaves", |e| matches!(e, Event::PeerDown { username, .. } if username == "c"));
    // The Leave chat went out before the connection closed.
    b.wait_for("c's leave", |e| matches!(e, Event::Chat(d) if d.chat.body == Body::Leave && d.chat.username == "c"));
    c.handle.shutdown(); // idempotent
}

pub fn a_peer_sending_garbage_is_dropped_while_honest_peers_go_on<R: Runtime>() {
    let mut a = TestNode::start_on::<R>(21, "a", true, vec![]);
    let b = TestNode::start_on::<R>(22, "b", false, vec![a.addr()]);
    a.wait_for("b up", |e| matches!(e, Event::PeerUp(_)));
    // A raw socket announcing a 4 GB frame, and another spewing random bytes.
    let mut huge = std::net::TcpStream::connect(a.addr()).unwrap();
    huge.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    let mut noise = std::net::TcpStream::connect(a.addr()).unwrap();
    let junk: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let _ = noise.write_all(&junk);
    for s in [&mut huge, &mut noise] {
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 4096];
        // The node closes them: reads end (EOF or reset) instead of timing out.
        let end = Instant::now() + DEADLINE;
        loop {
            match std::io::Read::read(s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => assert!(Instant::now() < end, "garbage peer was not disconnected"),
            }
        }
    }
    b.handle.command(Command::Chat("still here".into()));
    a.wait_for("honest chat", is_chat("still here", Origin::Live));
    eventually("only the honest peer in the snapshot", || a.handle.peers().len() == 1);
}

pub fn listening_on_a_used_port_is_a_clear_error<R: Runtime>() {
    let a = TestNode::start_on::<R>(31, "a", true, vec![]);
    let err = R::start(Start {
        config: Config::default(),
        keys: Box::new(Ed25519Keys::from_seed(32)),
        seed: 32,
        listen: Some(a.addr()),
        rooms: Vec::new(),
        restore: Vec::new(),
        known: Vec::new(),
        connect: Vec::new(),
        dm: None,
        on_event: Box::new(|_| {}),
    })
    .err()
    .expect("the port is taken");
    assert!(err.to_string().starts_with(&format!("cannot listen on {}", a.addr())), "{err}");
}

pub fn peers_snapshot_follows_promptly<R: Runtime>() {
    let mut a = TestNode::start_on::<R>(51, "a", true, vec![]);
    let _b = TestNode::start_on::<R>(52, "b", false, vec![a.addr()]);
    a.wait_for("b up", |e| matches!(e, Event::PeerUp(_)));
    let t = Instant::now();
    eventually("the peers snapshot to show b", || !a.handle.peers().is_empty());
    eprintln!("the peers snapshot showed b {:?} after its PeerUp", t.elapsed());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One node under attack from every side at once: a thousand connections that never finish their
/// handshake, and a flooder that reconnects under a fresh identity each time it is banned. An
/// honest peer's chats all still arrive (their latency is printed), and a newcomer still gets in.
pub fn a_node_under_attack_still_serves_honest_peers<R: Runtime>() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    // Attackers would come from many addresses; on loopback they share one, so the per-IP cap is
    // lifted here (its own test is in the core).
    let config = Config { username: "alice".into(), max_conns_per_ip: 5000, ..Config::default() };
    let mut a = TestNode::start_with::<R>(61, config, true, vec![]);
    let b = TestNode::start_on::<R>(62, "bob", false, vec![a.addr()]);
    a.wait_for("bob up", |e| matches!(e, Event::PeerUp(p) if p.username == "bob"));
    let addr = a.addr();

    let half_open: Vec<std::net::TcpStream> =
        (0..1000).filter_map(|_| std::net::TcpStream::connect(addr).ok()).collect();
    assert!(half_open.len() >= 900, "only {} connections opened", half_open.len());

    let stop = Arc::new(AtomicBool::new(false));
    let (bans, pings) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flooder = {
        let (stop, bans, pings) = (stop.clone(), bans.clone(), pings.clone());
        std::thread::spawn(move || {
            let ping = p2p_chat_core::wire::encode(&p2p_chat_core::wire::Message::Ping { nonce: 7 });
            let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
            let mut identity = 1000;
            while !stop.load(Ordering::Relaxed) {
                identity += 1;
                let Ok(mut h) = attack::Hostile::connect(addr, identity) else { continue };
                while h.send(&batch).is_ok() && !stop.load(Ordering::Relaxed) {
                    pings.fetch_add(1000, Ordering::Relaxed);
                }
                bans.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut latencies = Vec::new();
    for i in 0..100 {
        let text = format!("honest {i}");
        let t = Instant::now();
        b.handle.command(Command::Chat(text.clone()));
        a.wait_for("an honest chat under attack", is_chat(&text, Origin::Live));
        latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = TestNode::start_on::<R>(63, "carol", false, vec![addr]);
    c.wait_for("carol gets in", |e| matches!(e, Event::PeerUp(_)));
    c.handle.command(Command::Chat("carol made it".into()));
    a.wait_for("carol's chat", is_chat("carol made it", Origin::Live));
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    drop(half_open);

    latencies.sort();
    let (bans, pings) = (bans.load(Ordering::Relaxed), pings.load(Ordering::Relaxed));
    eprintln!(
        "under attack (1000 half-open connections, {pings} flood pings from {bans} banned identities): \
         honest chat latency p50 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    assert!(bans >= 1, "the flooder was never disconnected");
    let stats = a.handle.stats();
    assert!(stats.peers_banned >= 1, "{stats:?}");
    assert!(a.handle.peers().iter().any(|p| p.username == "bob"), "bob was dropped");
}
