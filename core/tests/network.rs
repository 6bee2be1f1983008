//! Whole-network behaviour of the real `Node`, on the in-memory network of `net.rs`.

mod net;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use net::Net;
use p2p_chat_core::serve::ServeLimits;
use p2p_chat_core::wire::{self, Message, WireError};
use p2p_chat_core::{
    Body, Chat, ChatId, CloseReason, Command, Config, Ed25519Keys, Event, Input, Keys, Node, Origin, Output, Time,
};
use quickcheck::{QuickCheck, TestResult};

/// Sends one chat from each listed node, 5 ms apart; returns their ids.
fn send_chats(net: &mut Net, senders: &[usize]) -> Vec<ChatId> {
    send_chats_every(net, senders, Duration::from_millis(5))
}

fn send_chats_every(net: &mut Net, senders: &[usize], gap: Duration) -> Vec<ChatId> {
    let mut ids = Vec::new();
    for &s in senders {
        let before = net.delivered[s].len();
        net.command(s, Command::Chat(format!("hello from {s}")));
        let id = net.delivered[s][before..]
            .iter()
            .find_map(|e| match e {
                Event::Chat(d) if d.origin == Origin::Local => Some(d.chat.id),
                _ => None,
            })
            .expect("a sent chat is delivered locally at once");
        ids.push(id);
        net.run_for(gap);
    }
    ids
}

/// Every live node delivered every id exactly once, and nothing else was delivered twice.
fn assert_converged(net: &Net, ids: &[ChatId], seed: u64) {
    for (i, n) in net.nodes.iter().enumerate() {
        if n.is_none() {
            continue;
        }
        let got = net.chats_at(i);
        for id in ids {
            assert_eq!(got.get(id), Some(&1), "node {i} delivered {id} {:?} times (seed {seed})", got.get(id));
        }
        assert!(got.values().all(|&c| c == 1), "node {i} delivered a chat twice (seed {seed})");
    }
}

#[test]
fn twenty_nodes_every_chat_everywhere_once() {
    let mut net = Net::new(20, 1, Net::star_config);
    net.run_for(Duration::from_secs(10));
    // Peer exchange spread the mesh beyond the bootstrap node.
    let degrees: Vec<usize> = net.nodes.iter().map(|n| n.as_ref().unwrap().peers().len()).collect();
    assert!(degrees[1..].iter().all(|&d| d >= 3), "degrees {degrees:?}");
    let ids = send_chats(&mut net, &(0..20).collect::<Vec<_>>());
    net.run_for(Duration::from_secs(2));
    assert_converged(&net, &ids, 1);
    // Joins are chats too: each node saw all 20 joins (its own included).
    for i in 0..20 {
        let joins =
            net.delivered[i].iter().filter(|e| matches!(e, Event::Chat(d) if d.chat.body == Body::Join)).count();
        assert_eq!(joins, 20, "node {i}");
    }
}

#[test]
fn relay_dying_mid_broadcast_loses_nothing() {
    let mut net = Net::new(20, 2, Net::star_config);
    net.run_for(Duration::from_secs(10));
    // The first three nodes other than the sender to receive the chat die on receipt, before
    // forwarding it anywhere.
    let mut victims = 0;
    net.kill_on = Some(Box::new(move |i, e| {
        let hit =
            i != 7 && victims < 3 && matches!(e, Event::Chat(d) if d.origin == Origin::Live && d.chat.username == "n7");
        if hit {
            victims += 1;
        }
        hit
    }));
    let ids = send_chats(&mut net, &[7]);
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.nodes.iter().filter(|n| n.is_none()).count(), 3);
    assert_converged(&net, &ids, 2);
}

#[test]
fn dropped_frames_are_repaired() {
    let mut net = Net::new(20, 3, Net::star_config);
    net.run_for(Duration::from_secs(10));
    net.frame_loss = 0.2;
    let ids = send_chats(&mut net, &[1, 5, 9, 13, 17]);
    net.run_for(Duration::from_secs(5));
    net.frame_loss = 0.0;
    net.run_for(Duration::from_secs(30));
    assert_converged(&net, &ids, 3);
}

#[test]
fn without_repair_a_short_ttl_misses_nodes_and_with_repair_it_does_not() {
    let config =
        |repair: bool| move |i: usize| Config { ttl: 0, fanout: 1, repair, target_peers: 3, ..Net::star_config(i) };
    let mut plain = Net::new(20, 4, config(false));
    plain.run_for(Duration::from_secs(10));
    let ids = send_chats(&mut plain, &[3]);
    plain.run_for(Duration::from_secs(5));
    let reached = (0..20).filter(|&i| plain.chats_at(i).contains_key(&ids[0])).count();
    assert!(reached < 20, "ttl 0, fanout 1 without repair reached {reached}");

    let mut repaired = Net::new(20, 4, config(true));
    repaired.run_for(Duration::from_secs(10));
    let ids = send_chats(&mut repaired, &[3]);
    repaired.run_for(Duration::from_secs(10));
    assert_converged(&repaired, &ids, 4);
}

#[test]
fn a_late_joiner_catches_up_on_history() {
    let mut net = Net::new(8, 5, |i| Config {
        bootstrap: if i == 7 { vec![] } else { vec![net::addr(0)] },
        ..Net::star_config(i)
    });
    net.run_for(Duration::from_secs(5));
    let ids = send_chats(&mut net, &[1, 2, 3]);
    net.run_for(Duration::from_secs(6));
    assert!(net.chats_at(7).is_empty());
    net.command(7, Command::Connect(net::addr(0)));
    net.run_for(Duration::from_secs(5));
    let caught_up: BTreeSet<ChatId> = net.delivered[7]
        .iter()
        .filter_map(|e| match e {
            Event::Chat(d) if d.origin == Origin::Repair => Some(d.chat.id),
            _ => None,
        })
        .collect();
    assert!(ids.iter().all(|id| caught_up.contains(id)));
    assert_converged(&net, &ids, 5);
}

/// A node that keeps few chats (`max_chats` 8) sleeps while 300 are sent, and comes back to a busy
/// room: 15 more arrive live the moment it reconnects, while its neighbours push it what it missed
/// one chat per sync answer. The newest chats it holds then all postdate the ones it missed, which
/// arrive below its floor: it shows every chat, each once.
#[test]
fn a_node_back_from_an_absence_longer_than_its_history_gets_every_chat() {
    const BACK: usize = 5;
    let seed = 11;
    let mut net = Net::new(6, seed, |i| Config {
        max_chats: if i == BACK { 8 } else { 1000 },
        // Every link eager: live chats reach it the moment it is back, ahead of its catch-up.
        fanout: 8,
        serve: ServeLimits { round_bytes: 1, ..ServeLimits::default() },
        ..Net::star_config(i)
    });
    net.run_for(Duration::from_secs(5));
    let others = [0, 1, 2, 3, 4];
    // More than it keeps, before it goes: it has evicted some already.
    let mut ids = send_chats(&mut net, &others.repeat(2));
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.nodes[BACK].as_ref().unwrap().held_chats(), 8);
    let away = net.pause(BACK);
    ids.extend(send_chats_every(&mut net, &others.repeat(60), Duration::from_millis(5)));
    net.run_for(Duration::from_secs(3));
    net.resume(BACK, away);
    // The room goes on talking, a chat every 2 ms, while it dials again (on its next tick) and
    // for 200 ms after.
    let back_at = net.delivered[BACK].len();
    let up = |net: &Net| net.delivered[BACK][back_at..].iter().any(|e| matches!(e, Event::PeerUp(_)));
    let mut talk = others.iter().cycle();
    while !up(&net) && ids.len() < 1000 {
        ids.extend(send_chats_every(&mut net, &[*talk.next().unwrap()], Duration::from_millis(2)));
    }
    assert!(up(&net), "reconnected");
    ids.extend(send_chats_every(&mut net, &others.repeat(20), Duration::from_millis(2)));
    net.run_for(Duration::from_secs(20));
    assert_converged(&net, &ids, seed);
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut net = Net::new(10, 9, Net::star_config);
        net.run_for(Duration::from_secs(5));
        send_chats(&mut net, &[2, 4]);
        net.run_for(Duration::from_secs(3));
        net.delivered.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// Node `a` with one peer: Mallory (key seed 2), who completed an honest handshake and now writes
/// whatever frames a test wants, sealed in her session.
fn attacked() -> (Node, net::Mallory, Time) {
    let now = Time::from_millis(net::T0_MS);
    let mut a =
        Node::new(Config { username: "a".into(), ..Config::default() }, Box::new(Ed25519Keys::from_seed(1)), 1, now);
    let m = net::Mallory::connect(&mut a, 2, net::addr(2), now);
    assert_eq!(a.peers().len(), 1);
    while a.poll_output().is_some() {}
    (a, m, now)
}

/// Moves everything `from` wants to send on `conn` into `to`; returns the events `to` produced.
fn pump(from: &mut Node, _conn: p2p_chat_core::ConnId, to: &mut Node, to_conn: p2p_chat_core::ConnId, now: Time) {
    let mut bytes = Vec::new();
    while let Some(o) = from.poll_output() {
        if let Output::Transmit { bytes: b, .. } = o {
            bytes.extend(b);
        }
    }
    if !bytes.is_empty() {
        to.handle_input(now, Input::Received(to_conn, &bytes));
    }
}

fn chat_events(n: &mut Node) -> Vec<Arc<Chat>> {
    let mut v = Vec::new();
    while let Some(o) = n.poll_output() {
        if let Output::Event(Event::Chat(d)) = o {
            v.push(d.chat);
        }
    }
    v
}

/// An altered chat is never delivered, whatever is altered, and the sender loses score.
#[test]
fn altered_chats_are_never_delivered() {
    fn prop(text: String, which: u8, flip: u8) -> TestResult {
        let (mut a, mut m, now) = attacked();
        let mallory_victim = Ed25519Keys::from_seed(2);
        let id = ChatId::new_v7(net::T0_MS, &[flip; 10]);
        let mut chat = Chat::new(&mallory_victim, id, "b", Body::Text(text.clone()));
        match which % 5 {
            0 => chat.body = Body::Text(format!("{text}!")),
            1 => chat.username = format!("{}x", chat.username),
            2 => chat.id = ChatId::new_v7(net::T0_MS + 1, &[flip; 10]),
            3 => chat.signature.0[(flip % 64) as usize] ^= 1 << (flip % 8),
            _ => chat.author = Ed25519Keys::from_seed(3).public_key(),
        }
        let frame = wire::encode(&Message::Chat { ttl: 3, hops: 1, chat: Arc::new(chat) });
        m.send(&mut a, now, &frame);
        let delivered = chat_events(&mut a);
        let score = a.peers()[0].score;
        TestResult::from_bool(delivered.is_empty() && score < 0 && a.stats().chats_refused == 1)
    }
    QuickCheck::new().tests(50).quickcheck(prop as fn(String, u8, u8) -> TestResult);
}

#[test]
fn a_flood_of_forgeries_gets_the_peer_banned() {
    let (mut a, mut m, now) = attacked();
    let conn = m.conn;
    let k = Ed25519Keys::from_seed(2);
    for i in 0..20u8 {
        let mut chat = Chat::new(&k, ChatId::new_v7(net::T0_MS, &[i; 10]), "b", Body::Text("x".into()));
        chat.body = Body::Text("y".into());
        m.send(&mut a, now, &wire::encode(&Message::Chat { ttl: 1, hops: 1, chat: Arc::new(chat) }));
    }
    let mut closed = false;
    let mut warned = false;
    while let Some(o) = a.poll_output() {
        closed |= matches!(o, Output::Close { conn: c } if c == conn);
        warned |= matches!(&o, Output::Event(Event::Warning(w)) if w.contains("banned"));
    }
    assert!(closed && warned);
    assert!(a.peers().is_empty());
    assert_eq!(a.stats().peers_banned, 1);
}

/// Mallory answers every PeerRequest with 64 fresh unreachable addresses (and once with far too
/// many, which costs her score and adds nothing). The node dials within its per-minute budget, its
/// address book stays within its cap, and Mallory's other traffic is still served.
///
/// Not claimed: that the bootstrap node keeps getting retries. Fresh poison has fewer failures
/// than a bootstrap node that keeps failing, so it is dialed first. Preferring vouched-for
/// addresses fixed that here, but in the simulator it sent every node back to full bootstrap
/// nodes and 2,000 nodes never filled their peer sets (see SECURITY.md).
#[test]
fn poisoned_peer_exchange_cannot_make_a_node_dial_without_bound() {
    let t0 = Time::from_millis(net::T0_MS);
    let good = net::addr(200);
    let cfg = Config { bootstrap: vec![good], ..Config::default() };
    let (per_min, burst) = (cfg.dial_rate.per_sec * 60.0, cfg.dial_rate.burst);
    let mut a = Node::new(cfg, Box::new(Ed25519Keys::from_seed(1)), 1, t0);
    let mut m = net::Mallory::connect(&mut a, 2, net::addr(2), t0);
    let mut dials = 0;
    let mut bootstrap_dials = 0;
    let mut poison = 0u32;
    let mut bogus = |n: usize| -> Vec<std::net::SocketAddr> {
        (0..n)
            .map(|_| {
                poison += 1;
                std::net::SocketAddr::from(([192, 0, 2, (poison % 250) as u8], (poison % 60000) as u16 + 1))
            })
            .collect()
    };
    let minutes = 3;
    for s in 0..minutes * 60 {
        let now = t0 + Duration::from_secs(s);
        a.handle_input(now, Input::Timeout);
        let outs: Vec<Output> = std::iter::from_fn(|| a.poll_output()).collect();
        for o in outs {
            match o {
                Output::Dial { conn, addr } => {
                    dials += 1;
                    if addr == good {
                        bootstrap_dials += 1;
                    }
                    a.handle_input(now, Input::DialFailed(conn));
                }
                Output::Transmit { conn, bytes } if conn == m.conn => {
                    for msg in m.open(&bytes) {
                        if let Message::Ping { nonce } = msg {
                            m.send(&mut a, now, &wire::encode(&Message::Pong { nonce }));
                        }
                        if msg == Message::PeerRequest {
                            let n = if s == 30 { 5000 } else { wire::MAX_ADDRS_PER_FRAME };
                            let answer = wire::encode(&Message::PeerResponse { addrs: bogus(n) });
                            m.send(&mut a, now, &answer);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let cap = (burst + per_min * minutes as f64) as usize;
    eprintln!(
        "{dials} dials in {minutes} min under peer-exchange poisoning (cap {cap}), {bootstrap_dials} to bootstrap"
    );
    assert!(dials <= cap, "{dials} dials in {minutes} minutes, cap {cap}");
    assert!(bootstrap_dials >= 1, "the bootstrap node was never dialed");
    let book = a.known_addresses().len();
    assert!(book <= Config::default().address_book_cap, "{book} addresses kept");
    assert_eq!(a.peers().len(), 1, "Mallory's poison is not a reason to drop a peer");
}

#[test]
fn a_stranger_is_refused_on_its_first_bytes_with_one_line_saying_why() {
    let now = Time::from_millis(net::T0_MS);
    let mut a = Node::new(Config::default(), Box::new(Ed25519Keys::from_seed(1)), 1, now);
    let conn = a.accept(now, net::addr(9)).unwrap();
    a.handle_input(now, Input::Received(conn, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"));
    let outs: Vec<Output> = std::iter::from_fn(|| a.poll_output()).collect();
    let warnings: Vec<&String> =
        outs.iter().filter_map(|o| if let Output::Event(Event::Warning(w)) = o { Some(w) } else { None }).collect();
    assert_eq!(warnings.len(), 1, "{outs:?}");
    assert!(warnings[0].contains("not a p2p-chat peer (it sent \"GET / HTTP/1.1"), "{}", warnings[0]);
    assert!(outs.iter().any(|o| matches!(o, Output::Close { conn: c } if *c == conn)));
    assert!(!outs.iter().any(|o| matches!(o, Output::Transmit { .. })), "nothing is said to a stranger");
}

#[test]
fn a_peer_speaking_another_version_is_disconnected_with_a_clear_reason() {
    let (mut a, mut m, now) = attacked();
    let mut frame = wire::encode(&Message::Ping { nonce: 1 });
    frame[4..6].copy_from_slice(&9u16.to_be_bytes());
    m.send(&mut a, now, &frame);
    let mut reason = None;
    while let Some(o) = a.poll_output() {
        if let Output::Event(Event::PeerDown { reason: r, .. }) = o {
            reason = Some(r);
        }
    }
    let ours = wire::PROTOCOL_VERSION;
    assert_eq!(reason, Some(CloseReason::Frame(WireError::Version { theirs: 9, ours })));
    assert_eq!(reason.unwrap().to_string(), format!("peer speaks protocol version 9, this node speaks version {ours}"));
}

#[test]
fn convergence_over_random_seeds_with_loss() {
    fn prop(seed: u64, n: u8, loss: u8) -> TestResult {
        let n = 5 + (n % 20) as usize;
        let loss = (loss % 20) as f64 / 100.0;
        let mut net = Net::new(n, seed, Net::star_config);
        net.run_for(Duration::from_secs(8));
        net.frame_loss = loss;
        let senders: Vec<usize> = (0..n).step_by(3).collect();
        let ids = send_chats(&mut net, &senders);
        net.run_for(Duration::from_secs(3));
        net.frame_loss = 0.0;
        net.run_for(Duration::from_secs(30));
        for i in 0..n {
            let got = net.chats_at(i);
            if !ids.iter().all(|id| got.get(id) == Some(&1)) {
                return TestResult::error(format!("seed {seed}, n {n}, loss {loss}: node {i} did not converge"));
            }
        }
        TestResult::passed()
    }
    QuickCheck::new().tests(15).quickcheck(prop as fn(u64, u8, u8) -> TestResult);
}

/// Plumtree prunes redundant eager links: once the tree has formed, each node receives each chat
/// once, where the seed's random push (fanout 3) receives it about three times. At ten chats a
/// second: RMR 0.00 against 2.11 (seeds 11 to 14 alike). Bursts are Plumtree's weak spot: with 15
/// senders 5 ms apart it measured 0.5 to 1.3, still below plain push.
#[test]
fn the_eager_tree_keeps_redundancy_low() {
    let rmr = |repair: bool| {
        let mut net = Net::new(30, 11, |i| Config { repair, ..Net::star_config(i) });
        net.run_for(Duration::from_secs(10));
        // Warm-up: the first chats shape the tree.
        for _ in 0..3 {
            send_chats_every(&mut net, &(0..30).collect::<Vec<_>>(), Duration::from_millis(100));
            net.run_for(Duration::from_secs(3));
        }
        let frames_before: u64 = net.nodes.iter().flatten().map(|n| n.stats().chat_frames_in).sum();
        let ids = send_chats_every(&mut net, &(0..30).step_by(2).collect::<Vec<_>>(), Duration::from_millis(100));
        net.run_for(Duration::from_secs(3));
        if repair {
            assert_converged(&net, &ids, 11);
        }
        let frames: u64 = net.nodes.iter().flatten().map(|n| n.stats().chat_frames_in).sum::<u64>() - frames_before;
        let deliveries: usize = (0..30).map(|i| ids.iter().filter(|id| net.chats_at(i).contains_key(id)).count()).sum();
        frames as f64 / (deliveries - ids.len()) as f64 - 1.0
    };
    let (tree, push) = (rmr(true), rmr(false));
    eprintln!("RMR: plumtree {tree:.2}, plain push {push:.2}");
    assert!(tree < 0.1, "plumtree RMR {tree:.2}");
    assert!(push > 1.0, "plain push RMR {push:.2}");
}

/// The connections `a` closes in what it has to say now (everything else it says is dropped).
fn closes(a: &mut Node) -> Vec<p2p_chat_core::ConnId> {
    std::iter::from_fn(|| a.poll_output())
        .filter_map(|o| if let Output::Close { conn } = o { Some(conn) } else { None })
        .collect()
}

/// When the handshake slots are full, a newcomer displaces a connection that has had time to send
/// its first message and has not, never an honest dialer whose handshake is under way, nor one
/// that has only just connected: that newcomer is refused (a crowd of joiners at a bootstrap node
/// would otherwise evict each other's handshakes before any could finish).
#[test]
fn full_handshake_slots_evict_the_silent_before_the_progressing() {
    let t0 = Time::from_millis(net::T0_MS);
    let mut a =
        Node::new(Config { max_handshaking: 2, ..Config::default() }, Box::new(Ed25519Keys::from_seed(1)), 1, t0);
    let honest = a.accept(t0, net::addr(2)).unwrap();
    let (_dialer, first) = p2p_chat_core::testing::Client::dial(2, "honest");
    a.handle_input(t0, Input::Received(honest, &first));
    let silent = a.accept(t0, net::addr(3)).unwrap();
    while a.poll_output().is_some() {}
    // Both in the slots are young: the newcomer is refused.
    let soon = t0 + Duration::from_millis(300);
    assert_eq!(a.accept(soon, net::addr(4)), None);
    assert!(closes(&mut a).is_empty());
    // A second on, the one that never spoke goes; the honest dialer stays.
    let later = t0 + Duration::from_millis(1100);
    assert!(a.accept(later, net::addr(5)).is_some());
    assert_eq!(closes(&mut a), vec![silent], "honest is {honest:?}");
}

/// Half-open connections from few networks are an attack, not a crowd: a newcomer from another
/// network group displaces one of them at once, one from the same group waits its turn, and a
/// crowd spread over many groups is queued (newcomers refused), not displaced.
#[test]
fn a_network_group_flooding_the_handshake_slots_gives_way_to_others() {
    let t0 = Time::from_millis(net::T0_MS);
    // A group may hold 2 of the 16 slots before newcomers from elsewhere displace its handshakes.
    let cfg = Config { max_handshaking: 16, max_conns_per_ip: 1000, ..Config::default() };
    let mut a = Node::new(cfg.clone(), Box::new(Ed25519Keys::from_seed(1)), 1, t0);
    let flood: Vec<_> = (0..16u8)
        .map(|i| a.accept(t0, std::net::SocketAddr::from(([10, 9, 0, i], 5000))).expect("a free slot"))
        .collect();
    while a.poll_output().is_some() {}
    let soon = t0 + Duration::from_millis(10);
    assert_eq!(a.accept(soon, std::net::SocketAddr::from(([10, 9, 1, 1], 5000))), None, "same group: refused");
    assert!(closes(&mut a).is_empty());
    assert!(a.accept(soon, net::addr(2)).is_some(), "another group gets in at once");
    assert_eq!(closes(&mut a), vec![flood[0]], "the flood's oldest made room");

    let mut b = Node::new(cfg, Box::new(Ed25519Keys::from_seed(1)), 1, t0);
    for g in 0..16u8 {
        assert!(b.accept(t0, std::net::SocketAddr::from(([10, 20 + g, 0, 1], 5000))).is_some());
    }
    while b.poll_output().is_some() {}
    assert_eq!(b.accept(soon, std::net::SocketAddr::from(([10, 50, 0, 1], 5000))), None, "a spread crowd queues");
    assert!(closes(&mut b).is_empty());
}

/// Connections that never finish their handshake cannot lock an honest peer out for long, and
/// one address cannot take every slot.
#[test]
fn half_open_connections_do_not_lock_out_honest_peers() {
    let t0 = Time::from_millis(net::T0_MS);
    let cfg = Config { max_handshaking: 8, max_conns_per_ip: 1000, ..Config::default() };
    let mut a = Node::new(cfg, Box::new(Ed25519Keys::from_seed(1)), 1, t0);
    let admitted = (0..1000u32)
        .filter(|i| {
            let attacker = std::net::SocketAddr::from(([10, 9, (i >> 8) as u8, *i as u8], 5000));
            a.accept(t0, attacker).is_some()
        })
        .count();
    while a.poll_output().is_some() {}
    // The slots filled at once; the rest were refused, displacing no one.
    assert_eq!(admitted, 8);
    let now = t0 + Duration::from_secs(1);
    let mut b = Node::new(Config::default(), Box::new(Ed25519Keys::from_seed(2)), 2, now);
    b.handle_input(now, Input::Command(Command::Connect(net::addr(1))));
    let Some(Output::Dial { conn: ba, .. }) = b.poll_output() else { panic!("dial expected") };
    let ab = a.accept(now, net::addr(2)).expect("an honest peer gets in once the silent have had their second");
    b.handle_input(now, Input::Connected(ba));
    for _ in 0..4 {
        pump(&mut a, ab, &mut b, ba, now);
        pump(&mut b, ba, &mut a, ab, now);
    }
    assert_eq!(a.peers().len(), 1);

    let mut c =
        Node::new(Config { max_conns_per_ip: 2, ..Config::default() }, Box::new(Ed25519Keys::from_seed(3)), 3, t0);
    let ip = |p| std::net::SocketAddr::from(([10, 7, 7, 7], p));
    assert!(c.accept(t0, ip(1)).is_some());
    assert!(c.accept(t0, ip(2)).is_some());
    assert!(c.accept(t0, ip(3)).is_none());
}

/// Node `a` (with `cfg`) that has dialed and connected to one peer: returns it and that link.
fn with_one_outbound_peer(cfg: Config, seed: u64, t0: Time) -> (Node, p2p_chat_core::ConnId) {
    let mut a = Node::new(cfg, Box::new(Ed25519Keys::from_seed(1)), seed, t0);
    let mut b = Node::new(Config::default(), Box::new(Ed25519Keys::from_seed(2)), 2, t0);
    a.handle_input(t0, Input::Command(Command::Connect(net::addr(2))));
    let Some(Output::Dial { conn: ab, .. }) = a.poll_output() else { panic!("dial expected") };
    let ba = b.accept(t0, net::addr(1)).unwrap();
    a.handle_input(t0, Input::Connected(ab));
    for _ in 0..4 {
        pump(&mut a, ab, &mut b, ba, t0);
        pump(&mut b, ba, &mut a, ab, t0);
    }
    (a, ab)
}

/// Inbound peer number `i`, from 10.`group`.0.`i`, connected to `a` at `at`.
fn connect_inbound(a: &mut Node, i: u64, group: u8, at: Time) -> net::Mallory {
    let from = std::net::SocketAddr::from(([10, group, 0, i as u8], 4000));
    let m = net::Mallory::connect(a, 10 + i, from, at);
    while a.poll_output().is_some() {}
    m
}

/// A node looks over its connections only when one is due (a ping, a timeout), not at every
/// tick; a peer that comes up between two such looks is still pinged, and dropped when it goes
/// silent, at the first tick after its time.
#[test]
fn a_peer_that_came_up_between_liveness_passes_is_pinged_and_dropped_on_time() {
    let t0 = Time::from_millis(net::T0_MS);
    let secs = Duration::from_secs;
    // Pings due sooner than a handshake times out: only the peer's coming up makes them due.
    let cfg = Config {
        ping_interval: secs(2),
        stale_after: secs(4),
        handshake_timeout: secs(5),
        target_peers: 1,
        ..Config::default()
    };
    let (mut a, _) = with_one_outbound_peer(cfg, 1, t0);
    let mut m = None;
    let (mut pinged, mut closed) = (Vec::new(), Vec::new());
    for tenth in 10..=130u64 {
        let now = t0 + Duration::from_millis(100 * tenth);
        if tenth == 55 {
            m = Some(connect_inbound(&mut a, 1, 8, now));
        }
        if tenth % 10 != 0 {
            continue;
        }
        a.handle_input(now, Input::Timeout);
        while let Some(o) = a.poll_output() {
            let Some(m) = m.as_mut() else { continue };
            match o {
                Output::Transmit { conn, bytes }
                    if conn == m.conn && m.open(&bytes).iter().any(|msg| matches!(msg, Message::Ping { .. })) =>
                {
                    pinged.push(tenth / 10)
                }
                Output::Close { conn } if conn == m.conn => closed.push(tenth / 10),
                _ => {}
            }
        }
    }
    // Up at 5.5 s: quiet for 2 s at 7.5 (pinged at the 8 s tick), silent for 4 s at 9.5 (closed at
    // the 10 s tick).
    assert_eq!((pinged, closed), (vec![8], vec![10]));
}

/// A full node making room for a newcomer spares the newer inbound peers with the shortest
/// measured round trips: an attacker who connects from many networks to churn a node's slots
/// cannot also be close to it.
#[test]
fn making_room_spares_the_fastest_newer_inbound_peers() {
    let t0 = Time::from_millis(net::T0_MS);
    let cfg = Config { max_peers: 5, target_peers: 1, ..Config::default() };
    for seed in 0..8u64 {
        let (mut a, _ab) = with_one_outbound_peer(cfg.clone(), seed, t0);
        // The older half (0, 1) is spared anyway; of the newer half, 2 answers pings in 5 ms, 3 in
        // 200 ms.
        let mut inbound: Vec<net::Mallory> =
            (0..4u64).map(|i| connect_inbound(&mut a, i, 8, t0 + Duration::from_secs(i + 1))).collect();
        let rtt = |i: usize| Duration::from_millis([100, 100, 5, 200][i]);
        // Quiet for over `ping_interval`: every link is pinged at the next tick.
        let ping_at = t0 + Duration::from_secs(16);
        a.handle_input(ping_at, Input::Timeout);
        let outs: Vec<Output> = std::iter::from_fn(|| a.poll_output()).collect();
        let mut pongs = Vec::new();
        for o in outs {
            let Output::Transmit { conn, bytes } = o else { continue };
            let Some(i) = inbound.iter().position(|m| m.conn == conn) else { continue };
            for msg in inbound[i].open(&bytes) {
                if let Message::Ping { nonce } = msg {
                    pongs.push((rtt(i), i, nonce));
                }
            }
        }
        pongs.sort();
        assert_eq!(pongs.len(), 4, "seed {seed}: every inbound link pinged");
        for (rtt, i, nonce) in pongs {
            inbound[i].send(&mut a, ping_at + rtt, &wire::encode(&Message::Pong { nonce }));
        }
        while a.poll_output().is_some() {}
        let at = ping_at + Duration::from_secs(1);
        connect_inbound(&mut a, 4, 8, at);
        let up: Vec<p2p_chat_core::ConnId> = a.peers().iter().map(|p| p.conn).collect();
        assert!(up.contains(&inbound[2].conn), "seed {seed}: the fast newer peer was spared: {up:?}");
        assert!(!up.contains(&inbound[3].conn), "seed {seed}: the slow newer peer made room: {up:?}");
    }
}

/// A full node takes a newcomer that dialed it by closing one of its newer inbound peers: never a
/// peer it dialed itself, never one of the longer-standing half of its inbound peers. (Without it,
/// late joiners were referred from full node to full node: the simulator found nodes that made 179
/// dials without finding a place.)
#[test]
fn a_full_node_makes_room_among_its_newer_inbound_peers() {
    let t0 = Time::from_millis(net::T0_MS);
    let cfg = Config { max_peers: 4, target_peers: 1, ..Config::default() };
    for seed in 0..8u64 {
        let (mut a, ab) = with_one_outbound_peer(cfg.clone(), seed, t0);
        let inbound: Vec<p2p_chat_core::ConnId> =
            (0..4u64).map(|i| connect_inbound(&mut a, i, 8, t0 + Duration::from_secs(i + 1)).conn).collect();
        let up: Vec<p2p_chat_core::ConnId> = a.peers().iter().map(|p| p.conn).collect();
        assert_eq!(up.len(), 4, "seed {seed}");
        assert!(up.contains(&ab) && up.contains(&inbound[0]) && up.contains(&inbound[3]), "seed {seed}: {up:?}");
        let made_room = [inbound[1], inbound[2]].iter().filter(|c| !up.contains(c)).count();
        assert_eq!(made_room, 1, "seed {seed}: one of the newer inbound peers made room: {up:?}");
    }
}

/// Making room spares the links of the gossip tree and takes from the network group holding the
/// most inbound connections, as Bitcoin Core's eviction does: connections from few places are
/// what someone churning a node's slots would have.
#[test]
fn making_room_spares_tree_links_and_takes_from_the_most_crowded_group() {
    let t0 = Time::from_millis(net::T0_MS);
    let cfg = Config { max_peers: 6, target_peers: 1, ..Config::default() };
    for seed in 0..8u64 {
        let (mut a, ab) = with_one_outbound_peer(cfg.clone(), seed, t0);
        // Oldest first; the newer half is in[2], in[3] (both of 10.9/16) and in[4] (10.7/16).
        let groups = [8u8, 8, 9, 9, 7];
        let mut inbound: Vec<net::Mallory> = (0..5)
            .map(|i| connect_inbound(&mut a, i as u64, groups[i], t0 + Duration::from_secs(i as u64 + 1)))
            .collect();
        // in[3] joins the tree: it grafts its link.
        let graft = p2p_chat_core::wire::encode(&p2p_chat_core::wire::Message::Graft { ids: Vec::new() });
        inbound[3].send(&mut a, t0 + Duration::from_secs(6), &graft);
        while a.poll_output().is_some() {}
        connect_inbound(&mut a, 20, 6, t0 + Duration::from_secs(7));
        let up: Vec<p2p_chat_core::ConnId> = a.peers().iter().map(|p| p.conn).collect();
        let gone: Vec<usize> = (0..5).filter(|&i| !up.contains(&inbound[i].conn)).collect();
        assert_eq!(gone, vec![2], "seed {seed}: in[3] carries the tree, in[4] is alone in its group");
        assert!(up.contains(&ab), "seed {seed}");
    }
}

/// A node made with a shared config goes by its own name and dials its own bootstrap list, not
/// the shared config's.
#[test]
fn a_node_with_a_shared_config_uses_its_own_name_and_bootstrap() {
    let shared = Arc::new(Config {
        username: "not me".into(),
        bootstrap: vec!["10.0.0.9:7000".parse().unwrap()],
        announce_presence: false,
        ..Config::default()
    });
    let mine = "10.0.0.1:7000".parse().unwrap();
    // Longer than a name kept inline, and one that is.
    for name in ["a name longer than sixteen bytes", "alice"] {
        let keys = Box::new(Ed25519Keys::from_seed(1));
        let mut node = Node::with_shared_config(shared.clone(), name, &[mine], keys, 7, Time::ZERO);
        assert_eq!(node.username(), name);
        node.handle_input(Time::ZERO, Input::Timeout);
        node.handle_input(Time::ZERO, Input::Command(Command::Chat("hi".into())));
        let (mut dialed, mut sent) = (Vec::new(), Vec::new());
        while let Some(out) = node.poll_output() {
            match out {
                Output::Dial { addr, .. } => dialed.push(addr),
                Output::Event(Event::Chat(d)) => sent.push(d.chat.username.clone()),
                _ => {}
            }
        }
        assert_eq!(dialed, [mine]);
        assert_eq!(sent, [name]);
    }
}
