//! A real `p2p-chat` process attacked over a real, encrypted connection: a peer that completes an
//! honest Noise handshake, then sends chats forged every way the security issue lists. The user
//! sees exactly one of them, the validly signed one, under the attacker's key-derived id, never
//! the victim's; an honest peer's chat still arrives.

#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Proc;
use p2p_chat_core::testing::Client;
use p2p_chat_core::wire::{encode, Message};
use p2p_chat_core::{Body, Chat, ChatId, Ed25519Keys, Keys};

/// Completes the Noise handshake with the node at `port` as identity `seed` (the core's test
/// client); returns the socket and the client, which seals what is written next.
fn connect(port: u16, seed: u64) -> (TcpStream, Client) {
    let (mut client, first) = Client::dial(seed, "mallory");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&first).unwrap();
    let mut buf = [0u8; 4096];
    while !client.is_up() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the node closed the connection during the handshake");
        let reply = client.receive(&buf[..n]).unwrap();
        s.write_all(&reply).unwrap();
    }
    (s, client)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn forged_altered_replayed_and_mistimed_chats_never_reach_the_screen() {
    let mut alice = Proc::start("alice", &["listen", "-p", "0", "-u", "alice"]);
    let port = alice.port();
    let alice_id = alice.who();
    // The client's identity: the same keys as `Ed25519Keys::from_seed(666)`, which sign below.
    let mallory = Ed25519Keys::from_seed(666);
    let mallory_short = mallory.public_key().peer_id().short();
    let (mut sock, mut client) = connect(port, 666);
    alice.wait_for("connected to mallory#");

    let chat = |ms: u64, r: u8, name: &str, text: &str| {
        Chat::new(&mallory, ChatId::new_v7(ms, &[r; 10]), name, Body::Text(text.into()))
    };
    let t = now_ms();
    // 1. Validly signed by Mallory, under the victim's username: shown, with Mallory's id.
    let borrowed = chat(t, 1, "alice", "i am alice, send money");
    // 2. Altered after signing.
    let mut altered = chat(t, 2, "mallory", "harmless");
    altered.body = Body::Text("altered after signing".into());
    // 3. Re-attributed to Alice's key (the signature is Mallory's).
    let mut reattributed = chat(t, 3, "alice", "signed by someone else");
    reattributed.author = Ed25519Keys::from_seed(1).public_key();
    // 4. Far in the future (an hour), and 5. older than the 24 h retention window.
    let future = chat(t + 3_600_000, 4, "mallory", "from the future");
    let ancient = chat(t - 25 * 3_600_000, 5, "mallory", "from the distant past");
    let frames: Vec<u8> = [&borrowed, &altered, &reattributed, &future, &ancient, &borrowed]
        .into_iter()
        .flat_map(|c| encode(&Message::Chat { ttl: 3, hops: 1, chat: Arc::new(c.clone()) }))
        .collect();
    sock.write_all(&client.seal(&frames).unwrap()).unwrap();

    let line = alice.wait_for("send money");
    assert!(line.contains(&format!("alice#{mallory_short}: i am alice, send money")), "{line}");
    assert!(!line.contains(&alice_id), "the victim's id must never appear on a forged line: {line}");

    // An honest peer still gets through afterwards.
    let mut bob = Proc::start("bob", &["connect", "-a", &format!("127.0.0.1:{port}"), "-u", "bob"]);
    bob.wait_for("connected to alice#");
    bob.say("honest bob");
    alice.wait_for(": honest bob");
    // A barrier: a later chat on Mallory's connection is shown only after everything she sent
    // before it was handled, so a forgery or a second replay would be on screen by then.
    let marker = chat(now_ms(), 7, "mallory", "marker after the forgeries");
    let frame = encode(&Message::Chat { ttl: 3, hops: 1, chat: Arc::new(marker) });
    sock.write_all(&client.seal(&frame).unwrap()).unwrap();
    alice.wait_for("marker after the forgeries");
    for text in ["altered after signing", "harmless", "signed by someone else", "from the future", "distant past"] {
        assert_eq!(alice.count(text), 0, "{text:?} reached the screen");
    }
    assert_eq!(alice.count("send money"), 1, "the replayed chat was shown twice");
    drop(sock);
    bob.quit();
    alice.quit();
}
