//! Micro-benchmarks of the core's hot paths: `cargo bench -p p2p-chat-core`.
//!
//! Each figure is per operation; compare them in one run (the machine is noisy). `node_chat_*`
//! measures the protocol's own overhead for one incoming chat: decryption of its record, decode,
//! dedup, delivery, and its relay sealed for the eager neighbours, with signature checking switched
//! off (a `Keys` that accepts everything) and on (Ed25519).

use std::sync::Arc;

use divan::{black_box, Bencher};
use p2p_chat_core::dedup::Dedup;
use p2p_chat_core::identity::verify_ed25519;
use p2p_chat_core::testing::Client;
use p2p_chat_core::wire::{self, FrameDecoder, Message};
use p2p_chat_core::{
    Body, Chat, ChatId, Command, Config, ConnId, Ed25519Keys, Input, Keys, Node, Output, PublicKey, Signature, Time,
};

fn main() {
    divan::main();
}

const T0_MS: u64 = 1_800_000_000_000;

/// A chat whose frame is about 256 bytes, as in the performance issue.
fn chat(keys: &dyn Keys, i: u64) -> Arc<Chat> {
    let mut r = [0u8; 10];
    r[..8].copy_from_slice(&i.to_be_bytes());
    Arc::new(Chat::new(keys, ChatId::new_v7(T0_MS, &r), "alice", Body::Text("x".repeat(100))))
}

#[divan::bench]
fn frame_encode(b: Bencher) {
    let k = Ed25519Keys::from_seed(1);
    let m = Message::Chat { ttl: 5, hops: 1, chat: chat(&k, 1) };
    let mut out = Vec::with_capacity(512);
    b.bench_local(|| {
        out.clear();
        wire::encode_into(black_box(&m), &mut out, wire::DEFAULT_MAX_FRAME_BYTES).unwrap();
        out.len()
    });
}

#[divan::bench]
fn frame_decode(b: Bencher) {
    let k = Ed25519Keys::from_seed(1);
    let frame = wire::encode(&Message::Chat { ttl: 5, hops: 1, chat: chat(&k, 1) });
    let mut d = FrameDecoder::new(wire::DEFAULT_MAX_FRAME_BYTES);
    b.bench_local(|| {
        d.push(black_box(&frame));
        d.next_frame().unwrap().unwrap()
    });
}

#[divan::bench]
fn sign(b: Bencher) {
    let k = Ed25519Keys::from_seed(1);
    let msg = chat(&k, 1).signed_bytes();
    b.bench_local(|| k.sign(black_box(&msg)));
}

#[divan::bench]
fn verify(b: Bencher) {
    let k = Ed25519Keys::from_seed(1);
    let c = chat(&k, 1);
    let msg = c.signed_bytes();
    b.bench_local(|| verify_ed25519(&c.author, black_box(&msg), &c.signature));
}

#[divan::bench]
fn dedup_check_insert(b: Bencher) {
    let k = Ed25519Keys::from_seed(1);
    let chats: Vec<Arc<Chat>> = (0..10_000).map(|i| chat(&k, i)).collect();
    let now = Time::from_millis(T0_MS);
    b.with_inputs(|| Dedup::new(std::time::Duration::from_secs(3600), 10_000, std::time::Duration::from_secs(60)))
        .bench_local_values(|mut d| {
            for c in &chats {
                if d.check(&c.id, now) == p2p_chat_core::dedup::Verdict::New {
                    d.insert(c.clone(), 1);
                }
            }
            d
        });
}

/// Accepts every signature: isolates the protocol's overhead from Ed25519's.
struct NoVerify(Ed25519Keys);
impl Keys for NoVerify {
    fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        self.0.sign(msg)
    }
    fn verify(&self, _: &PublicKey, _: &[u8], _: &Signature) -> bool {
        true
    }
}

/// A node with `peers` established neighbours (handshakes driven by hand). The first is a bare
/// peer that dialed in (the core's test client), whose encrypted session the benchmark writes
/// with; returns the node, that connection, and the peer.
fn node_with_peers(keys: Box<dyn Keys>, peers: usize) -> (Node, ConnId, Client) {
    let now = Time::from_millis(T0_MS);
    let mut a = Node::new(Config::default(), keys, 1, now);
    let (mut writer, first_msg) = Client::dial(99, "writer");
    let first = a.accept(now, std::net::SocketAddr::from(([10, 0, 1, 1], 7000))).unwrap();
    a.handle_input(now, Input::Received(first, &first_msg));
    let reply = writer.receive(&drain(&mut a, first)).expect("handshake");
    a.handle_input(now, Input::Received(first, &reply));
    writer.receive(&drain(&mut a, first)).unwrap();
    for p in 1..peers {
        let pk = Ed25519Keys::from_seed(100 + p as u64);
        let addr = std::net::SocketAddr::from(([10, 0, 0, p as u8 + 1], 7000));
        let mut b = Node::new(Config::default(), Box::new(pk), 2, now);
        a.handle_input(now, Input::Command(Command::Connect(addr)));
        let ab = loop {
            match a.poll_output() {
                Some(Output::Dial { conn, .. }) => break conn,
                Some(_) => continue,
                None => panic!("no dial"),
            }
        };
        let ba = b.accept(now, addr).unwrap();
        a.handle_input(now, Input::Connected(ab));
        for _ in 0..3 {
            let to_b: Vec<u8> = drain(&mut a, ab);
            b.handle_input(now, Input::Received(ba, &to_b));
            let to_a: Vec<u8> = drain(&mut b, ba);
            a.handle_input(now, Input::Received(ab, &to_a));
        }
    }
    while a.poll_output().is_some() {}
    (a, first, writer)
}

/// Each message sealed in its own record, in order (the session's nonces forbid replaying one).
fn sealed(writer: &mut Client, plain: &[Vec<u8>]) -> Vec<Vec<u8>> {
    plain.iter().map(|p| writer.seal(p).unwrap()).collect()
}

fn drain(n: &mut Node, conn: ConnId) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(o) = n.poll_output() {
        if let Output::Transmit { conn: c, bytes } = o {
            if c == conn {
                v.extend(bytes);
            }
        }
    }
    v
}

fn node_chat(b: Bencher, keys: Box<dyn Keys>) {
    let author = Ed25519Keys::from_seed(7);
    let frames: Vec<Vec<u8>> =
        (0..40_000).map(|i| wire::encode(&Message::Chat { ttl: 5, hops: 1, chat: chat(&author, i) })).collect();
    let (mut node, conn, mut writer) = node_with_peers(keys, 8);
    let records = sealed(&mut writer, &frames);
    let now = Time::from_millis(T0_MS);
    let mut i = 0;
    b.bench_local(|| {
        // 20 x 500 iterations: the records never run out (a replayed one would fail to open).
        node.handle_input(now, Input::Received(conn, &records[i]));
        i += 1;
        let mut n = 0;
        while node.poll_output().is_some() {
            n += 1;
        }
        n
    });
}

/// One new chat through a node with 8 neighbours, signature checking off.
#[divan::bench(sample_count = 20, sample_size = 500)]
fn node_chat_no_verify(b: Bencher) {
    node_chat(b, Box::new(NoVerify(Ed25519Keys::from_seed(1))));
}

/// The same with Ed25519 verification: what bounds a relay's throughput.
#[divan::bench(sample_count = 20, sample_size = 500)]
fn node_chat_ed25519(b: Bencher) {
    node_chat(b, Box::new(Ed25519Keys::from_seed(1)));
}

/// 64 new chats arriving in one read, verified as one Ed25519 batch: what a busy relay sees.
#[divan::bench(sample_count = 20, sample_size = 10)]
fn node_chat_ed25519_batch_of_64(b: Bencher) {
    let author = Ed25519Keys::from_seed(7);
    let reads: Vec<Vec<u8>> = (0..600u64)
        .map(|r| {
            let mut read = Vec::new();
            for i in 0..64 {
                let m = Message::Chat { ttl: 5, hops: 1, chat: chat(&author, r * 64 + i) };
                wire::encode_into(&m, &mut read, wire::DEFAULT_MAX_FRAME_BYTES).unwrap();
            }
            read
        })
        .collect();
    let (mut node, conn, mut writer) = node_with_peers(Box::new(Ed25519Keys::from_seed(1)), 8);
    let records = sealed(&mut writer, &reads);
    let now = Time::from_millis(T0_MS);
    let mut i = 0;
    b.counter(divan::counter::ItemsCount::new(64usize)).bench_local(|| {
        node.handle_input(now, Input::Received(conn, &records[i]));
        i += 1;
        let mut n = 0;
        while node.poll_output().is_some() {
            n += 1;
        }
        n
    });
}
