//! Relays in the in-memory network of real nodes: two nodes no one can dial reach each other
//! through a reachable one, and a hostile peer that completed the real handshake cannot make a
//! relay carry more than its limits while the relay goes on serving its own chats.

mod net;

use std::collections::BTreeMap;
use std::time::Duration;

use net::{addr, Mallory, Net};
use p2p_chat_core::nat::reach::DialBackOutcome;
use p2p_chat_core::nat::{Path, Reachability, RelayLimits, RelayRefusal};
use p2p_chat_core::testing::Client;
use p2p_chat_core::wire::{encode, Message};
use p2p_chat_core::{Command, Config, ConnId, Ed25519Keys, Event, Input, Node, Output, Time};

/// Node 0 is reachable; nodes 1 and 2 are behind NAT and know only node 0.
fn behind_nat() -> Net {
    let mut net = Net::new(3, 7, Net::star_config);
    net.behind_nat = vec![false, true, true];
    net.run_for(Duration::from_secs(20));
    net
}

fn reachability(net: &Net, i: usize) -> Option<Reachability> {
    net.delivered[i].iter().rev().find_map(|e| match e {
        Event::Reachability(r) => Some(*r),
        _ => None,
    })
}

#[test]
fn nodes_behind_nat_connect_through_a_relay_and_chat() {
    let mut net = behind_nat();
    assert!(matches!(reachability(&net, 0), Some(Reachability::Reachable(a)) if a.port() == 7000));
    assert_eq!(reachability(&net, 1), Some(Reachability::BehindNat));
    assert_eq!(reachability(&net, 2), Some(Reachability::BehindNat));
    let n2 = net.nodes[2].as_ref().unwrap().peer_id();
    let peers = net.nodes[1].as_ref().unwrap().peers();
    let to_2 = peers.iter().find(|p| p.peer == n2).expect("node 1 reached node 2");
    assert!(matches!(&to_2.path, Path::Relayed { relay } if relay.starts_with("n0#")), "{:?}", to_2.path);
    // One connection between them, not one each way.
    assert_eq!(peers.iter().filter(|p| p.peer == n2).count(), 1);

    net.command(1, Command::Chat("through the relay".into()));
    net.run_for(Duration::from_secs(2));
    let got = |i: usize| {
        net.delivered[i].iter().any(|e| matches!(e, Event::Chat(d) if d.text() == Some("through the relay")))
    };
    assert!(got(0) && got(2));
    let relay = net.nodes[0].as_ref().unwrap();
    assert!(relay.stats().relay_bytes > 0);
    assert_eq!(relay.relay_load().0, 1, "one circuit");
}

#[test]
fn a_relay_going_away_closes_its_circuits() {
    let mut net = behind_nat();
    let relayed = |net: &Net| net.nodes[1].as_ref().unwrap().peers().iter().any(|p| p.path != Path::Direct);
    assert!(relayed(&net));
    net.kill(0);
    net.run_for(Duration::from_secs(1));
    assert!(net.nodes[1].as_ref().unwrap().peers().is_empty(), "the circuit went with its relay");
}

/// A node driven by hand, with every output kept per connection.
struct Driven {
    node: Node,
    now: Time,
    sent: BTreeMap<ConnId, Vec<u8>>,
    events: Vec<Event>,
    dials: Vec<std::net::SocketAddr>,
}

impl Driven {
    fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            match o {
                Output::Transmit { conn, bytes } => self.sent.entry(conn).or_default().extend(bytes),
                Output::Event(e) => self.events.push(e),
                Output::Dial { addr, .. } => self.dials.push(addr),
                _ => {}
            }
        }
    }

    fn connect(&mut self, seed: u64) -> Mallory {
        let from = addr(100 + seed as usize);
        let (mut client, first) = Client::dial(seed, "mallory");
        let conn = self.node.accept(self.now, from).expect("accepted");
        self.node.handle_input(self.now, Input::Received(conn, &first));
        self.drain();
        let reply = client.receive(&self.sent.remove(&conn).unwrap_or_default()).unwrap();
        self.node.handle_input(self.now, Input::Received(conn, &reply));
        self.drain();
        let m = Mallory { client, conn };
        assert!(m.client.is_up());
        m
    }

    fn send(&mut self, m: &mut Mallory, msg: &Message) {
        let sealed = m.client.seal(&encode(msg)).unwrap();
        self.node.handle_input(self.now, Input::Received(m.conn, &sealed));
        self.drain();
    }

    fn messages(&mut self, m: &mut Mallory) -> Vec<Message> {
        let bytes = self.sent.remove(&m.conn).unwrap_or_default();
        m.client.receive(&bytes).unwrap();
        m.client.take_messages()
    }
}

#[test]
fn a_hostile_peer_cannot_exhaust_the_relay_which_keeps_serving_its_own_chats() {
    let limits =
        RelayLimits { max_circuits: 4, max_circuits_per_peer: 2, circuit_bytes: 64 << 10, ..Default::default() };
    let config = Config {
        username: "relay".into(),
        listen_port: 7000,
        nat: p2p_chat_core::nat::NatConfig { relay: Some(limits), ..Default::default() },
        ..Config::default()
    };
    let now = Time::from_millis(net::T0_MS);
    let node = Node::new(config, Box::new(Ed25519Keys::from_seed(1)), 1, now);
    let mut d = Driven { node, now, sent: BTreeMap::new(), events: Vec::new(), dials: Vec::new() };
    let mut honest = d.connect(50);
    let mut mallory = d.connect(51);
    let mut accomplice = d.connect(52);
    d.send(&mut accomplice, &Message::Reserve);
    assert!(d.messages(&mut accomplice).contains(&Message::Reservation { refused: None }));

    // Circuits as fast as the wire allows: only its burst and its share are granted.
    let to = accomplice.client.peer_id();
    for _ in 0..50 {
        d.send(&mut mallory, &Message::CircuitOpen { to });
    }
    let answers = d.messages(&mut mallory);
    let opened: Vec<u32> = answers
        .iter()
        .filter_map(|m| match m {
            Message::CircuitOpened { circuit, .. } => Some(*circuit),
            _ => None,
        })
        .collect();
    let refused =
        |why: RelayRefusal| answers.iter().filter(|m| **m == Message::CircuitRefused { to, reason: why }).count();
    assert_eq!(opened.len(), 2, "its share of circuits");
    assert_eq!(refused(RelayRefusal::PeerFull) + refused(RelayRefusal::RateLimited), 48);
    assert!(refused(RelayRefusal::RateLimited) > 0);

    // Bytes past a circuit's limit close it at both ends; nothing beyond is forwarded.
    let chunk = vec![0xab; 16 << 10];
    for _ in 0..6 {
        d.send(&mut mallory, &Message::ToRelay { circuit: opened[0], bytes: chunk.clone() });
    }
    let closed = Message::CircuitClosed { circuit: opened[0], reason: RelayRefusal::BytesExceeded };
    assert!(d.messages(&mut mallory).contains(&closed));
    let forwarded = d.messages(&mut accomplice);
    let carried: usize = forwarded
        .iter()
        .filter_map(|m| match m {
            Message::FromRelay { bytes, .. } => Some(bytes.len()),
            _ => None,
        })
        .sum();
    assert_eq!(carried, 64 << 10);
    assert!(forwarded.contains(&closed));
    assert!(d.node.stats().relay_bytes <= 64 << 10);

    // Made-up circuits carry nothing and cost the relay nothing to answer.
    d.send(&mut mallory, &Message::ToRelay { circuit: 9999, bytes: chunk });
    assert!(d.messages(&mut accomplice).is_empty());

    // The relay still serves its own: its chat reaches the honest peer.
    d.node.handle_input(d.now, Input::Command(Command::Chat("still here".into())));
    d.drain();
    let got = d.messages(&mut honest);
    assert!(got.iter().any(
        |m| matches!(m, Message::Chat { chat, .. } if chat.body == p2p_chat_core::Body::Text("still here".into()))
    ));
    assert!(d.node.relay_load().0 <= 4);
}

#[test]
fn a_dial_back_goes_only_to_the_askers_ip_and_within_the_rate() {
    let config = Config { username: "prober".into(), listen_port: 7000, ..Config::default() };
    let now = Time::from_millis(net::T0_MS);
    let node = Node::new(config, Box::new(Ed25519Keys::from_seed(1)), 1, now);
    let mut d = Driven { node, now, sent: BTreeMap::new(), events: Vec::new(), dials: Vec::new() };
    let mut askers: Vec<Mallory> = (0..8).map(|i| d.connect(60 + i)).collect();
    for (i, m) in askers.iter_mut().enumerate() {
        // Each asks twice: the second waits for the first. A privileged port is never dialed.
        d.send(m, &Message::DialBack { port: 8000 + i as u16, nonce: 1 });
        d.send(m, &Message::DialBack { port: 22, nonce: 2 });
    }
    let ips: Vec<_> = (0..8).map(|i| addr(160 + i).ip()).collect();
    assert_eq!(d.dials.len(), 4, "four at once: {:?}", d.dials);
    for a in &d.dials {
        assert!(ips.contains(&a.ip()) && a.port() >= 8000, "{a} is not an asker's own IP");
    }
    let refused = askers
        .iter_mut()
        .flat_map(|m| d.messages(m))
        .filter(|m| matches!(m, Message::DialBackResult { outcome: DialBackOutcome::Refused, .. }))
        .count();
    assert_eq!(refused, 12, "the other asks are answered, not dialed");
}
