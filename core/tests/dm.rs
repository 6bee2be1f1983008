//! Direct messages on the in-memory network of `net`: delivered directly, through mailboxes while
//! the recipient is away (exactly once, even when a mailbox dies), never when altered, replayed or
//! re-addressed; and a mailbox flooded by one sender keeps serving the others.

mod net;

use std::time::Duration;

use net::{Mallory, Net};
use p2p_chat_core::dm::{self, Body, DmCrypto, DmId, DmState, Envelope, MailboxConfig, StandInCrypto};
use p2p_chat_core::random::Rng;
use p2p_chat_core::wire::{self, DepositOutcome, Message};
use p2p_chat_core::{Command, Config, Ed25519Keys, Event, Keys, Node, PeerId, Time};

fn with_dm(i: usize, node: Node) -> Node {
    node.with_dm(Box::new(StandInCrypto::new(&mut Rng::new(1000 + i as u64))))
}

fn dm_net(n: usize, seed: u64) -> Net {
    let mut net = Net::new_with(n, seed, Net::star_config, with_dm);
    net.run_for(Duration::from_secs(10));
    net
}

fn id_of(net: &Net, i: usize) -> PeerId {
    net.nodes[i].as_ref().unwrap().peer_id()
}

/// Sends `text` from `i` to `j`; the message's id.
fn send(net: &mut Net, i: usize, j: usize, text: &str) -> DmId {
    let to = id_of(net, j);
    send_to(net, i, to, text)
}

fn send_to(net: &mut Net, i: usize, to: PeerId, text: &str) -> DmId {
    let before = net.delivered[i].len();
    net.command(i, Command::Dm { to, text: text.into() });
    net.delivered[i][before..]
        .iter()
        .find_map(|e| match e {
            Event::Dm(d) if d.outgoing => Some(d.id),
            _ => None,
        })
        .expect("an outgoing message is shown at once")
}

/// The texts node `i` received with id `id`.
fn received(net: &Net, i: usize, id: DmId) -> Vec<String> {
    net.delivered[i]
        .iter()
        .filter_map(|e| match e {
            Event::Dm(d) if !d.outgoing && d.id == id => Some(d.text.clone()),
            _ => None,
        })
        .collect()
}

fn states(net: &Net, i: usize, id: DmId) -> Vec<DmState> {
    net.delivered[i]
        .iter()
        .filter_map(|e| match e {
            Event::DmState { id: x, state, .. } if *x == id => Some(*state),
            _ => None,
        })
        .collect()
}

#[test]
fn a_message_reaches_a_connected_recipient_and_its_sender_sees_it_delivered_and_read() {
    let mut net = dm_net(6, 1);
    let id = send(&mut net, 1, 2, "hello, 2");
    net.run_for(Duration::from_secs(3));
    assert_eq!(received(&net, 2, id), ["hello, 2"]);
    assert!(states(&net, 1, id).contains(&DmState::Delivered), "{:?}", states(&net, 1, id));
    let from = id_of(&net, 1);
    net.command(2, Command::DmRead { from, ids: vec![id] });
    net.run_for(Duration::from_secs(3));
    assert_eq!(states(&net, 1, id).last(), Some(&DmState::Read));
    // Nobody else saw anything of it.
    for i in [0, 3, 4, 5] {
        assert!(!net.delivered[i].iter().any(|e| matches!(e, Event::Dm(_))), "node {i}");
    }
}

#[test]
fn a_message_to_an_offline_recipient_waits_in_its_mailboxes_and_arrives_once() {
    let mut net = dm_net(8, 2);
    let b_id = id_of(&net, 3);
    let b_bundle = net.nodes[3].as_ref().unwrap().own_bundle().cloned().expect("a bundle");
    assert_eq!(b_bundle.bundle.mailboxes.len(), 3, "{:?}", b_bundle.bundle.mailboxes);
    let paused = net.pause(3);
    net.run_for(Duration::from_secs(2));
    let id = send_to(&mut net, 1, b_id, "while you were away");
    net.run_for(Duration::from_secs(10));
    assert!(states(&net, 1, id).contains(&DmState::Stored), "{:?}", states(&net, 1, id));
    let held: usize = (0..8).filter(|&i| i != 3).map(|i| net.nodes[i].as_ref().unwrap().mailbox_usage().count).sum();
    assert!(held >= 1, "a mailbox holds it");
    net.resume(3, paused);
    net.run_for(Duration::from_secs(30));
    assert_eq!(received(&net, 3, id), ["while you were away"]);
    assert_eq!(states(&net, 1, id).last(), Some(&DmState::Delivered));
    // Collected and acknowledged: the mailboxes hold nothing any more.
    net.run_for(Duration::from_secs(30));
    let held: usize = (0..8).filter(|&i| i != 3).map(|i| net.nodes[i].as_ref().unwrap().mailbox_usage().count).sum();
    assert_eq!(held, 0);
    assert_eq!(received(&net, 3, id).len(), 1, "exactly once");
}

#[test]
fn a_mailbox_killed_after_taking_the_envelope_loses_nothing() {
    let mut net = dm_net(10, 3);
    let to = id_of(&net, 4);
    let paused = net.pause(4);
    net.run_for(Duration::from_secs(2));
    let id = send_to(&mut net, 2, to, "still here?");
    net.run_for(Duration::from_secs(10));
    let holders: Vec<usize> =
        (0..10).filter(|&i| i != 4 && net.nodes[i].as_ref().unwrap().mailbox_usage().count > 0).collect();
    assert!(!holders.is_empty());
    // The first holder dies with what it held.
    net.kill(holders[0]);
    net.run_for(Duration::from_secs(2));
    net.resume(4, paused);
    net.run_for(Duration::from_secs(60));
    assert_eq!(received(&net, 4, id), ["still here?"]);
    assert!(states(&net, 2, id).contains(&DmState::Delivered));
}

/// Node 0 of a net of one, Mallory (identity 2) connected to it, and what Mallory needs to write
/// to it as itself.
fn attacked() -> (Node, Mallory, Time, StandInCrypto, Ed25519Keys) {
    let now = Time::from_millis(net::T0_MS);
    let config = Config { username: "a".into(), listen_port: 7000, ..Config::default() };
    let mut node = with_dm(0, Node::new(config, Box::new(Ed25519Keys::from_seed(0)), 5, now));
    let mallory = Mallory::connect(&mut node, 2, "10.0.9.9:4000".parse().unwrap(), now);
    while node.poll_output().is_some() {}
    let mut crypto = StandInCrypto::new(&mut Rng::new(77));
    let bundle = node.own_bundle().cloned().expect("made as Mallory came up");
    crypto.start_session(&mut Rng::new(78), node.peer_id(), &bundle.bundle.keys).unwrap();
    (node, mallory, now, crypto, Ed25519Keys::from_seed(2))
}

fn seal_text(crypto: &mut StandInCrypto, keys: &Ed25519Keys, to: PeerId, now: Time, n: u8, text: &str) -> Envelope {
    let msg = dm::Message {
        id: DmId([n; 16]),
        sender: keys.public_key(),
        to,
        sent_at: now,
        expires_at: now + Duration::from_secs(3600),
        body: Body::Text(text.into()),
    };
    dm::seal(crypto, keys, &mut Rng::new(n.into()), &msg).unwrap()
}

fn dms(node: &mut Node) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(o) = node.poll_output() {
        if let p2p_chat_core::Output::Event(Event::Dm(d)) = o {
            out.push(d.text.clone());
        }
    }
    out
}

#[test]
fn altered_replayed_and_readdressed_envelopes_are_never_shown() {
    let (mut node, mut mallory, now, mut crypto, keys) = attacked();
    let me = node.peer_id();
    let good = seal_text(&mut crypto, &keys, me, now, 1, "genuine");
    let mut altered = seal_text(&mut crypto, &keys, me, now, 2, "altered");
    let last = altered.ciphertext.len() - 1;
    altered.ciphertext[last] ^= 1;
    let mut relabelled = seal_text(&mut crypto, &keys, me, now, 3, "relabelled");
    relabelled.id = DmId([33; 16]);
    let mut readdressed = seal_text(&mut crypto, &keys, me, now, 4, "readdressed");
    readdressed.to = PeerId([9; 32]);
    for env in [&altered, &relabelled, &readdressed] {
        mallory.send(&mut node, now, &wire::encode(&Message::Dm { envelope: Box::new(env.clone()) }));
    }
    assert_eq!(dms(&mut node), Vec::<String>::new());
    mallory.send(&mut node, now, &wire::encode(&Message::Dm { envelope: Box::new(good.clone()) }));
    assert_eq!(dms(&mut node), ["genuine"]);
    // Replayed, directly or through a mailbox push it did not name: nothing more.
    mallory.send(&mut node, now, &wire::encode(&Message::Dm { envelope: Box::new(good.clone()) }));
    mallory.send(&mut node, now, &wire::encode(&Message::Mail { envelopes: vec![good], more: false }));
    assert_eq!(dms(&mut node), Vec::<String>::new());
    assert!(node.stats().dms_refused >= 2);
}

fn deposit(mallory: &mut Mallory, node: &mut Node, now: Time, env: Envelope) -> Option<DepositOutcome> {
    mallory.send(node, now, &wire::encode(&Message::Deposit { envelope: Box::new(env) }));
    let mut bytes = Vec::new();
    while let Some(o) = node.poll_output() {
        if let p2p_chat_core::Output::Transmit { conn, bytes: b } = o {
            if conn == mallory.conn {
                bytes.extend(b);
            }
        }
    }
    mallory.open(&bytes).into_iter().find_map(|m| match m {
        Message::Deposited { outcome, .. } => Some(outcome),
        _ => None,
    })
}

fn raw_envelope(from: PeerId, to: PeerId, n: u16, now: Time) -> Envelope {
    let mut id = [0; 16];
    id[..2].copy_from_slice(&n.to_be_bytes());
    Envelope { id: DmId(id), from, to, expires_at: now + Duration::from_secs(3600), ciphertext: vec![7; 200] }
}

#[test]
fn a_sender_flooding_a_mailbox_fills_only_its_own_quota() {
    let now = Time::from_millis(net::T0_MS);
    let mut config = Config { username: "box".into(), listen_port: 7000, ..Config::default() };
    config.dm.mailbox = MailboxConfig { per_sender_count: 20, ..config.dm.mailbox };
    let mut node = with_dm(0, Node::new(config, Box::new(Ed25519Keys::from_seed(0)), 5, now));
    // The recipient (identity 3) connects and names this node as its mailbox.
    let mut recipient = Mallory::connect(&mut node, 3, "10.0.3.3:4000".parse().unwrap(), now);
    let rkeys = Ed25519Keys::from_seed(3);
    let bundle = dm::SignedBundle::sign(
        &rkeys,
        dm::KeyBundle {
            identity: rkeys.public_key(),
            keys: StandInCrypto::new(&mut Rng::new(3)).prekeys(),
            mailboxes: vec![dm::MailboxAddr { peer: node.peer_id(), addr: "10.0.0.1:7000".into() }],
            version: now,
        },
    )
    .unwrap();
    recipient.send(&mut node, now, &wire::encode(&Message::Bundle { bundle: Box::new(bundle) }));
    while node.poll_output().is_some() {}
    let to = rkeys.public_key().peer_id();
    // Recipient goes away; Mallory floods, Alice then deposits.
    let mut mallory = Mallory::connect(&mut node, 2, "10.0.9.9:4000".parse().unwrap(), now);
    let mut alice = Mallory::connect(&mut node, 4, "10.0.4.4:4000".parse().unwrap(), now);
    while node.poll_output().is_some() {}
    let m_id = Ed25519Keys::from_seed(2).public_key().peer_id();
    let a_id = Ed25519Keys::from_seed(4).public_key().peer_id();
    let outcomes: Vec<Option<DepositOutcome>> =
        (0..100).map(|n| deposit(&mut mallory, &mut node, now, raw_envelope(m_id, to, n, now))).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == Some(DepositOutcome::Stored)).count(), 20);
    assert_eq!(node.mailbox_usage().count, 20);
    assert_eq!(deposit(&mut alice, &mut node, now, raw_envelope(a_id, to, 1000, now)), Some(DepositOutcome::Stored));
    // Past the rate, the flood costs Mallory its connection; what it left stays within its quota.
    for n in 100..400 {
        deposit(&mut mallory, &mut node, now, raw_envelope(m_id, to, n, now));
    }
    assert!(node.peers().iter().all(|p| p.peer != m_id), "the flooder is banned");
    assert_eq!(node.mailbox_usage().count, 21);
    // Someone else's envelope cannot be deposited in its name.
    assert_eq!(deposit(&mut alice, &mut node, now, raw_envelope(m_id, to, 2000, now)), None);
}
