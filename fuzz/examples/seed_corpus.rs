//! Writes the committed seed corpus, `fuzz/corpus/<target>/`: valid frames of every message type
//! encoded by the core's own `wire` module, an honest handshake, and some garbage. Deterministic,
//! so rerunning it after a wire change shows the change as a diff.
//!
//!     cd fuzz && cargo run --example seed_corpus
//!
//! Signed content uses key seed 2 (the honest peer every target knows) or 3 (a stranger).

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use p2p_chat_core::handshake::{Handshake, Progress, StaticIdentity};
use p2p_chat_core::random::Rng;
use p2p_chat_core::sync::{Summary, SyncRange};
use p2p_chat_core::wire::{self, Message, PROTOCOL_VERSION};
use p2p_chat_core::{Body, Chat, ChatId, Ed25519Keys};
use p2p_chat_fuzz::{FuzzInput, HONEST_KEY_SEED, T0_MS};

fn id(ms_before: u64, r: u8) -> ChatId {
    ChatId::new_v7(T0_MS - ms_before, &[r; 10])
}

fn chat(keys: &Ed25519Keys, ms_before: u64, r: u8, body: Body) -> Arc<Chat> {
    Arc::new(Chat::new(keys, id(ms_before, r), "stranger", body))
}

fn frames(msgs: &[Message]) -> Vec<u8> {
    msgs.iter().flat_map(wire::encode).collect()
}

/// Small deterministic garbage (xorshift).
fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One of each message type, with content a node would accept.
fn every_message() -> Vec<Message> {
    let stranger = Ed25519Keys::from_seed(3);
    let ids = vec![id(5_000, 1), id(4_000, 2), id(3_000, 3)];
    vec![
        Message::Chat { ttl: 16, hops: 1, chat: chat(&stranger, 2_000, 4, Body::Text("hello, fuzz".into())) },
        Message::Reply { hops: 2, chat: chat(&stranger, 90_000, 5, Body::Join) },
        Message::IHave { ids: ids.clone() },
        Message::IWant { ids: ids.clone() },
        Message::Prune,
        Message::Graft { ids: ids[..1].to_vec() },
        Message::Sync {
            ranges: vec![
                SyncRange {
                    lower: ChatId::MIN,
                    upper: id(3_500, 0),
                    summary: Summary::Fingerprint { count: 2, hash: 0x0123_4567_89ab_cdef },
                },
                SyncRange { lower: id(3_500, 0), upper: ChatId::MAX, summary: Summary::Ids(ids[2..].to_vec()) },
            ],
        },
        Message::Ping { nonce: 77 },
        Message::Pong { nonce: 77 },
        Message::PeerRequest,
        Message::PeerResponse {
            addrs: vec![SocketAddr::from(([10, 0, 0, 9], 7009)), "[2001:db8::1]:7010".parse().unwrap()],
        },
        Message::Announce { listen_port: 7002 },
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let msgs = every_message();
    let all = frames(&msgs);
    let stranger = Ed25519Keys::from_seed(3);

    // frame_decoder: flags, cuts, stream.
    let dir = root.join("frame_decoder");
    fs::create_dir_all(&dir).unwrap();
    for m in &msgs {
        write(&dir, &format!("one_{}", m.kind().to_lowercase()), &FuzzInput::build(0, &[], &wire::encode(m)));
    }
    write(&dir, "all_cut", &FuzzInput::build(0, &[0, 6, 2, 99, 16, 3], &all));
    let mut bad_version = wire::encode(&Message::PeerRequest);
    bad_version[4..6].copy_from_slice(&7u16.to_be_bytes());
    write(&dir, "other_version", &FuzzInput::build(0, &[], &bad_version));
    let mut too_large = 2000u32.to_be_bytes().to_vec();
    too_large.extend_from_slice(&garbage(1, 40));
    write(&dir, "too_large_small_limit", &FuzzInput::build(1, &[9], &too_large));
    let mut framed_garbage = 34u32.to_be_bytes().to_vec();
    framed_garbage.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    framed_garbage.extend_from_slice(&garbage(2, 32));
    framed_garbage.extend_from_slice(&wire::encode(&Message::Ping { nonce: 9 }));
    write(&dir, "framed_garbage", &FuzzInput::build(0, &[3], &framed_garbage));
    write(&dir, "garbage", &garbage(3, 96));

    // handshake: flags (bit 0 dialer, bit 1 honest first message), chunk size, bytes.
    let dir = root.join("handshake");
    fs::create_dir_all(&dir).unwrap();
    let peer = Ed25519Keys::from_seed(HONEST_KEY_SEED);
    let peer_static = StaticIdentity::new(&peer, &mut Rng::new(2));
    let (_, dialer_first) = Handshake::dial(&peer, &peer_static, &mut Rng::new(4), "peer", 7001);
    let mut acceptor = Handshake::accept(&peer, &peer_static, &mut Rng::new(5), "peer", 7001);
    let Ok(Progress::Continue(reply)) = acceptor.handle(&peer, &dialer_first) else { panic!("honest reply") };
    let with = |flags: u8, chunk: u8, stream: &[u8]| [&[flags, chunk][..], stream].concat();
    write(&dir, "acceptor_honest_first", &with(0, 255, &dialer_first));
    write(&dir, "acceptor_then_garbage", &with(2, 7, &garbage(4, 300)));
    write(&dir, "dialer_stray_reply", &with(1, 255, &reply));
    write(&dir, "dialer_then_garbage", &with(3, 13, &garbage(6, 200)));
    write(&dir, "http", &with(0, 3, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    write(&dir, "garbage", &garbage(4, 64));

    // node_bytes: flags (bit 0 handshaken, bit 1 timeouts), cuts, stream.
    let dir = root.join("node_bytes");
    fs::create_dir_all(&dir).unwrap();
    let up = frames(&msgs);
    write(&dir, "up_every_message", &FuzzInput::build(1, &[], &up));
    write(&dir, "up_every_message_cut_timeouts", &FuzzInput::build(3, &[40, 7, 200, 1], &up));
    let two_chats = frames(&[
        Message::Chat { ttl: 3, hops: 1, chat: chat(&stranger, 1_000, 6, Body::Text("a".into())) },
        Message::Chat { ttl: 3, hops: 1, chat: chat(&stranger, 900, 7, Body::Leave) },
    ]);
    write(&dir, "up_chat_batch", &FuzzInput::build(1, &[], &two_chats));
    write(&dir, "stranger_handshake", &FuzzInput::build(0, &[5], &dialer_first));
    write(&dir, "up_handshake_again", &FuzzInput::build(1, &[], &dialer_first));
    write(&dir, "garbage", &FuzzInput::build(1, &[], &garbage(5, 80)));
}
