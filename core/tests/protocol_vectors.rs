//! The test vectors of docs/PROTOCOL.md, in docs/protocol-vectors.json, checked against the code.
//!
//! `vectors_are_what_the_code_makes` makes every vector again from the code and fails if the file
//! differs by a byte. When the wire changes on purpose (and the protocol version with it), rewrite
//! the file with
//!
//! ```text
//! UPDATE_VECTORS=1 cargo test -p p2p-chat-core --test protocol_vectors
//! ```
//!
//! Where the specification gives a formula (the signed bytes of a chat and of the binding, the
//! hello's layout), the bytes are also put together here from the formula, independently of the
//! code, so the document and the code cannot drift apart either.

use std::net::SocketAddr;
use std::sync::Arc;

use p2p_chat_core::dm::{Ack, DhKey, DmId, Envelope, KeyBundle, MailboxAddr, Prekeys, SignedBundle};
use p2p_chat_core::handshake::{Handshake, Progress, StaticIdentity};
use p2p_chat_core::nat::reach::DialBackOutcome;
use p2p_chat_core::nat::{RelayRefusal, RelayedAddr};
use p2p_chat_core::rooms::{Op, RoomKeys, RoomSecret};
use p2p_chat_core::sync::{Summary, SyncRange};
use p2p_chat_core::wire::DepositOutcome;
use p2p_chat_core::wire::{self, Hello, Message, RoomMessage, PROTOCOL_VERSION};
use p2p_chat_core::{Body, Chat, ChatId, Ed25519Keys, Keys, PeerId, PublicKey, Time};
use serde::{Deserialize, Serialize};
use serde_json::json;
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol-vectors.json");

const NOISE_PROTOCOL: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"p2p-chat/noise/v2";
const BINDING_DOMAIN: &[u8] = b"p2p-chat/noise-static-key/v2";
const CHAT_DOMAIN: &[u8] = b"p2p-chat/chat/v2";
/// 2026-01-01T00:00:00Z: the time of every chat id here.
const UNIX_MS: u64 = 1_767_225_600_000;
/// The `ttl` and `hops` of a chat as its author first pushes it, with the default `ttl` of 32.
const FIRST_TTL: u8 = 31;
const FIRST_HOPS: u8 = 1;

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vectors {
    about: String,
    protocol_version: u16,
    noise_protocol: String,
    prologue: String,
    binding_domain: String,
    chat_domain: String,
    identity: Party,
    chats: Vec<ChatVector>,
    messages: Vec<MessageVector>,
    handshake: HandshakeVector,
}

/// One side: its keys, its hello, and what identifies it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
struct Party {
    /// The Ed25519 secret key (RFC 8032's 32-byte seed).
    ed25519_seed: String,
    public_key: String,
    peer_id: String,
    username: String,
    listen_port: u16,
    noise_static_private_key: String,
    noise_static_public_key: String,
    noise_ephemeral_private_key: String,
    noise_ephemeral_public_key: String,
    /// What the identity key signs to bind the static key: the domain, then the static key.
    binding_signed_bytes: String,
    binding: String,
    hello: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct ChatVector {
    body: String,
    id: String,
    room: String,
    author: String,
    username: String,
    text: Option<String>,
    signed_bytes: String,
    signature: String,
    /// The frame its author first pushes it in: `Chat { ttl: 31, hops: 1, chat }`.
    frame: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct MessageVector {
    name: String,
    variant: u8,
    /// The field values, bytes in hex; a chat is named by its place in `chats`.
    fields: serde_json::Value,
    /// The whole frame: length prefix, version, message.
    frame: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct HandshakeVector {
    dialer: Party,
    acceptor: Party,
    /// Each handshake message as a frame: length, version, Noise message.
    message_1: String,
    message_2: String,
    message_3: String,
    /// The first record each side sends after the handshake (nonce 0 of its direction), and the
    /// frame it carries.
    dialer_first_frame: String,
    dialer_first_record: String,
    acceptor_first_frame: String,
    acceptor_first_record: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// 32 bytes counting up from `first`: keys anyone can type in.
fn counting(first: u8) -> [u8; 32] {
    std::array::from_fn(|i| first.wrapping_add(i as u8))
}

fn x25519_public(private: &[u8; 32]) -> Vec<u8> {
    let mut dh = DefaultResolver.resolve_dh(&DHChoice::Curve25519).expect("X25519");
    dh.set(private);
    dh.pubkey().to_vec()
}

/// The keys of one side of the vectors.
struct Keyring {
    seed: [u8; 32],
    keys: Ed25519Keys,
    static_private: [u8; 32],
    ephemeral_private: [u8; 32],
    username: &'static str,
    listen_port: u16,
}

fn alice() -> Keyring {
    keyring(0x00, 0x40, 0x80, "alice", 7000)
}

fn bob() -> Keyring {
    keyring(0x20, 0x60, 0xa0, "bob", 0)
}

fn keyring(seed: u8, static_key: u8, ephemeral: u8, username: &'static str, listen_port: u16) -> Keyring {
    let seed = counting(seed);
    Keyring {
        seed,
        keys: Ed25519Keys::from_secret(seed),
        static_private: counting(static_key),
        ephemeral_private: counting(ephemeral),
        username,
        listen_port,
    }
}

/// The binding's signed bytes, from the specification's formula.
fn binding_signed_bytes(static_public: &[u8]) -> Vec<u8> {
    [BINDING_DOMAIN, static_public].concat()
}

/// A varint as the specification defines it (bincode 2's), for the values used here.
fn varint(n: u64) -> Vec<u8> {
    match n {
        0..=250 => vec![n as u8],
        251..=0xffff => [&[251u8][..], &(n as u16).to_le_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[252u8][..], &(n as u32).to_le_bytes()].concat(),
        _ => [&[253u8][..], &n.to_le_bytes()].concat(),
    }
}

/// The hello's bytes, from the specification's layout.
fn hello_bytes(hello: &Hello) -> Vec<u8> {
    let mut out = hello.public_key.0.to_vec();
    out.extend_from_slice(&hello.binding.0);
    out.extend(varint(hello.username.len() as u64));
    out.extend_from_slice(hello.username.as_bytes());
    out.extend(varint(u64::from(hello.listen_port)));
    out
}

/// A chat's signed bytes, from the specification's formula.
fn chat_signed_bytes(chat: &Chat) -> Vec<u8> {
    let mut out = CHAT_DOMAIN.to_vec();
    out.extend_from_slice(&chat.id.0);
    out.extend_from_slice(&chat.room.0);
    out.extend_from_slice(&chat.author.0);
    out.extend_from_slice(&(chat.username.len() as u32).to_be_bytes());
    out.extend_from_slice(chat.username.as_bytes());
    match &chat.body {
        Body::Text(t) => {
            out.push(0);
            out.extend_from_slice(&(t.len() as u32).to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        Body::Join => out.push(1),
        Body::Leave => out.push(2),
        Body::Sealed(b) => {
            out.push(3);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        // The only operation here: `Remove` (variant 1) of a 32-byte key.
        Body::Op(Op::Remove(k)) => {
            out.push(4);
            out.extend_from_slice(&33u32.to_be_bytes());
            out.push(1);
            out.extend_from_slice(&k.0);
        }
        Body::Op(_) => unreachable!("no other operation has a vector"),
    }
    out
}

/// The private room `#team` of secret `42 42 .. 42`, owned by alice: where the operation is.
fn team_room() -> RoomKeys {
    RoomKeys::with_owner(&RoomSecret([0x42; 32]), Some(&alice().keys.public_key()))
}

/// The public room `#rust`, whose keys every chat of it here is sealed with.
fn rust_room() -> RoomKeys {
    RoomKeys::new(&RoomKeys::public_secret("#rust"))
}

/// One chat of each body, by alice, a millisecond apart: three in the default room, then one
/// sealed in `#rust` (nonce 0x00..0x17), then the operation `Remove(bob)` in `#team`.
fn chats() -> Vec<Arc<Chat>> {
    let a = alice();
    let bodies = [
        Body::Text("hello, world".into()),
        Body::Join,
        Body::Leave,
        Body::Sealed(Vec::new()),
        Body::Op(Op::Remove(bob().keys.public_key())),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let random: [u8; 10] = std::array::from_fn(|j| (0x10 * (i as u8 + 1)) + j as u8);
            let id = ChatId::new_v7(UNIX_MS + i as u64, &random);
            match body {
                Body::Sealed(_) => {
                    let nonce = std::array::from_fn(|j| j as u8);
                    Arc::new(Chat::sealed(&a.keys, id, &rust_room(), a.username, "hello, #rust", nonce))
                }
                body @ Body::Op(_) => Arc::new(Chat::in_room(&a.keys, id, team_room().id, a.username, body)),
                body => Arc::new(Chat::new(&a.keys, id, a.username, body)),
            }
        })
        .collect()
}

fn chat_vector(chat: &Arc<Chat>) -> ChatVector {
    let signed = chat.signed_bytes();
    assert_eq!(signed, chat_signed_bytes(chat), "the signed bytes are not the specification's");
    assert!(chat.verify(&alice().keys));
    let (body, text) = match &chat.body {
        Body::Text(t) => ("Text", Some(t.clone())),
        Body::Join => ("Join", None),
        Body::Leave => ("Leave", None),
        Body::Sealed(_) => ("Sealed", chat.open(&rust_room())),
        Body::Op(_) => ("Op", None),
    };
    ChatVector {
        body: body.into(),
        id: hex(&chat.id.0),
        room: hex(&chat.room.0),
        author: hex(&chat.author.0),
        username: chat.username.clone(),
        text,
        signed_bytes: hex(&signed),
        signature: hex(&chat.signature.0),
        frame: hex(&wire::encode(&Message::Chat { ttl: FIRST_TTL, hops: FIRST_HOPS, chat: chat.clone() })),
    }
}

/// One message of each variant, in variant order, with the fields the vectors show for it.
fn messages() -> Vec<(Message, serde_json::Value)> {
    let c = chats();
    let ids: Vec<ChatId> = c.iter().map(|c| c.id).collect();
    // The fingerprint of `[ids[1], MAX)` in the default room, which holds the last two of its chats.
    let hash = ids[1..3].iter().fold(0u128, |h, id| h.wrapping_add(id.as_u128()));
    let lower = ChatId::lower_bound(UNIX_MS);
    let v4 = SocketAddr::from(([192, 0, 2, 1], 7000));
    let v6: SocketAddr = "[2001:db8::1]:7001".parse().unwrap();
    let rust = rust_room().id;
    vec![
        (
            Message::Chat { ttl: FIRST_TTL, hops: FIRST_HOPS, chat: c[0].clone() },
            json!({ "ttl": FIRST_TTL, "hops": FIRST_HOPS, "chat": "chats[0]" }),
        ),
        (Message::Reply { hops: 2, chat: c[1].clone() }, json!({ "hops": 2, "chat": "chats[1]" })),
        (Message::IHave { ids: ids[..2].to_vec() }, json!({ "ids": [hex(&ids[0].0), hex(&ids[1].0)] })),
        (Message::IWant { ids: vec![ids[0]] }, json!({ "ids": [hex(&ids[0].0)] })),
        (Message::Prune, json!({})),
        (Message::Graft { ids: vec![ids[2]] }, json!({ "ids": [hex(&ids[2].0)] })),
        (
            Message::Sync {
                ranges: vec![
                    SyncRange { lower, upper: ids[1], summary: Summary::Ids(vec![ids[0]]) },
                    SyncRange { lower: ids[1], upper: ChatId::MAX, summary: Summary::Fingerprint { count: 2, hash } },
                ],
            },
            json!({ "ranges": [
                { "lower": hex(&lower.0), "upper": hex(&ids[1].0), "summary": { "Ids": [hex(&ids[0].0)] } },
                { "lower": hex(&ids[1].0), "upper": hex(&ChatId::MAX.0),
                  "summary": { "Fingerprint": { "count": 2, "hash": format!("{hash:032x}") } } },
            ] }),
        ),
        (Message::Ping { nonce: 0x0123_4567_89ab_cdef }, json!({ "nonce": "0x0123456789abcdef" })),
        (Message::Pong { nonce: 300 }, json!({ "nonce": 300 })),
        (Message::PeerRequest, json!({})),
        (Message::PeerResponse { addrs: vec![v4, v6] }, json!({ "addrs": [v4.to_string(), v6.to_string()] })),
        (Message::Announce { listen_port: 7000 }, json!({ "listen_port": 7000 })),
        (
            Message::Room { room: rust, msg: RoomMessage::IHave { ids: vec![ids[3]] } },
            json!({ "room": hex(&rust.0), "msg": { "IHave": { "ids": [hex(&ids[3].0)] } } }),
        ),
        (
            Message::Subscribe { tag: rust_room().tag(&[0x42; 32], true), public: Some(rust) },
            json!({ "tag": hex(&rust_room().tag(&[0x42; 32], true)), "binding": hex(&[0x42; 32]),
                    "from_initiator": true, "public": hex(&rust.0) }),
        ),
        (Message::Unsubscribe { tag: [0x11; 32] }, json!({ "tag": hex(&[0x11; 32]) })),
        (Message::FindRoom { room: rust, ttl: 4 }, json!({ "room": hex(&rust.0), "ttl": 4 })),
        (
            Message::RoomPeers { room: rust, addrs: vec![v4] },
            json!({ "room": hex(&rust.0), "addrs": [v4.to_string()] }),
        ),
    ]
    .into_iter()
    .chain(dm_messages())
    .chain(nat_messages())
    .collect()
}

/// The NAT traversal frames (PROTOCOL.md 9.3): alice asks bob for a dial-back and a reservation,
/// and opens a circuit through bob (the relay) to a peer whose id is 32 bytes of `cc`.
fn nat_messages() -> Vec<(Message, serde_json::Value)> {
    let (a, b) = (alice(), bob());
    let (a_id, b_id) = (a.keys.public_key().peer_id(), b.keys.public_key().peer_id());
    let c_id = PeerId([0xcc; 32]);
    let seen = SocketAddr::from(([198, 51, 100, 7], 40123));
    let dialed = SocketAddr::from(([198, 51, 100, 7], 7000));
    let relay_addr = SocketAddr::from(([192, 0, 2, 1], 7000));
    let entry = RelayedAddr { relay: b_id, relay_addr: Some(relay_addr), peer: c_id };
    let entry_json = json!({ "relay": hex(&b_id.0), "relay_addr": relay_addr.to_string(), "peer": hex(&c_id.0) });
    vec![
        (Message::Observed { addr: seen }, json!({ "addr": seen.to_string() })),
        (
            Message::DialBack { port: 7000, nonce: 0x0102_0304_0506_0708 },
            json!({ "port": 7000, "nonce": "0x0102030405060708" }),
        ),
        (
            Message::DialBackResult { nonce: 0x0102_0304_0506_0708, outcome: DialBackOutcome::Unreachable, dialed },
            json!({ "nonce": "0x0102030405060708", "outcome": "Unreachable", "dialed": dialed.to_string() }),
        ),
        (Message::Reserve, json!({})),
        (Message::Reservation { refused: Some(RelayRefusal::Full) }, json!({ "refused": "Full" })),
        (Message::Relayed { entries: vec![entry] }, json!({ "entries": [entry_json] })),
        (Message::CircuitOpen { to: c_id }, json!({ "to": hex(&c_id.0) })),
        (
            Message::CircuitOpened { circuit: 1, to: c_id, addr: seen },
            json!({ "circuit": 1, "to": hex(&c_id.0), "addr": seen.to_string() }),
        ),
        (
            Message::CircuitRefused { to: c_id, reason: RelayRefusal::NoReservation },
            json!({ "to": hex(&c_id.0), "reason": "NoReservation" }),
        ),
        (
            Message::CircuitIncoming { circuit: 1, from: a_id, addr: seen },
            json!({ "circuit": 1, "from": hex(&a_id.0), "addr": seen.to_string() }),
        ),
        (Message::ToRelay { circuit: 1, bytes: vec![0xee; 4] }, json!({ "circuit": 1, "bytes": hex(&[0xee; 4]) })),
        (Message::FromRelay { circuit: 1, bytes: vec![0xee; 4] }, json!({ "circuit": 1, "bytes": hex(&[0xee; 4]) })),
        (Message::CircuitEnd { circuit: 1 }, json!({ "circuit": 1 })),
        (
            Message::CircuitClosed { circuit: 1, reason: RelayRefusal::BytesExceeded },
            json!({ "circuit": 1, "reason": "BytesExceeded" }),
        ),
        (Message::PunchConnect { port: 7000 }, json!({ "port": 7000 })),
        (Message::PunchSync, json!({})),
    ]
}

/// The direct messages' frames (PROTOCOL.md 9.2): alice's bundle naming bob as a mailbox, an
/// envelope from alice to bob (its ciphertext 64 bytes of `ee`: the wire does not look inside),
/// and bob's ack to a mailbox.
fn dm_messages() -> Vec<(Message, serde_json::Value)> {
    let (a, b) = (alice(), bob());
    let (a_id, b_id) = (a.keys.public_key().peer_id(), b.keys.public_key().peer_id());
    let version = Time::from_millis(UNIX_MS);
    let bundle = SignedBundle::sign(
        &a.keys,
        KeyBundle {
            identity: a.keys.public_key(),
            keys: Prekeys { identity: DhKey([0x11; 32]), prekey: DhKey([0x22; 32]) },
            mailboxes: vec![MailboxAddr { peer: b_id, addr: "192.0.2.2:7000".into() }],
            version,
        },
    )
    .unwrap();
    let id = DmId::new_v7(UNIX_MS, &[7; 10]);
    let envelope = Envelope {
        id,
        from: a_id,
        to: b_id,
        expires_at: Time::from_millis(UNIX_MS + 7 * 24 * 3600 * 1000),
        ciphertext: vec![0xee; 64],
    };
    let env_json = json!({ "id": hex(&id.0), "from": hex(&a_id.0), "to": hex(&b_id.0),
                           "expires_at_us": envelope.expires_at.as_micros(), "ciphertext": hex(&envelope.ciphertext) });
    let mailbox = PeerId([0x33; 32]);
    let ack = Ack::new(&b.keys, mailbox, vec![id]);
    vec![
        (
            Message::Bundle { bundle: Box::new(bundle.clone()) },
            json!({ "identity": hex(&a.keys.public_key().0), "x25519_identity": hex(&[0x11; 32]),
                    "prekey": hex(&[0x22; 32]), "mailboxes": [{ "peer": hex(&b_id.0), "addr": "192.0.2.2:7000" }],
                    "version_us": version.as_micros(), "signature": hex(&bundle.signature.0) }),
        ),
        (Message::BundleRequest { peer: b_id, ttl: 4 }, json!({ "peer": hex(&b_id.0), "ttl": 4 })),
        (Message::Dm { envelope: Box::new(envelope.clone()) }, json!({ "envelope": env_json })),
        (Message::Deposit { envelope: Box::new(envelope.clone()) }, json!({ "envelope": env_json })),
        (
            Message::Deposited { id, to: b_id, outcome: DepositOutcome::Stored },
            json!({ "id": hex(&id.0), "to": hex(&b_id.0), "outcome": "Stored" }),
        ),
        (Message::Collect { after: None }, json!({ "after": null })),
        (Message::Mail { envelopes: vec![envelope], more: false }, json!({ "envelopes": [env_json], "more": false })),
        (
            Message::MailAck { ack: Box::new(ack.clone()) },
            json!({ "recipient": hex(&b.keys.public_key().0), "mailbox": hex(&mailbox.0), "ids": [hex(&id.0)],
                    "signature": hex(&ack.signature.0) }),
        ),
    ]
}

fn message_vectors() -> Vec<MessageVector> {
    messages()
        .into_iter()
        .enumerate()
        .map(|(variant, (msg, fields))| {
            let frame = wire::encode(&msg);
            assert_eq!(frame[6], variant as u8, "{} is not variant {variant}", msg.kind());
            MessageVector { name: msg.kind().into(), variant: variant as u8, fields, frame: hex(&frame) }
        })
        .collect()
}

/// A whole handshake between alice (dialer) and bob (acceptor) with every key fixed, and the first
/// record each sends after it.
fn handshake() -> HandshakeVector {
    let (a, b) = (alice(), bob());
    let (ia, ib) = (
        StaticIdentity::from_private_key(&a.keys, a.static_private),
        StaticIdentity::from_private_key(&b.keys, b.static_private),
    );
    let (mut ha, m1) = Handshake::with_fixed_ephemeral_for_test_vectors(
        &a.keys,
        &ia,
        a.username,
        a.listen_port,
        true,
        &a.ephemeral_private,
    );
    let (mut hb, none) = Handshake::with_fixed_ephemeral_for_test_vectors(
        &b.keys,
        &ib,
        b.username,
        b.listen_port,
        false,
        &b.ephemeral_private,
    );
    assert!(none.is_empty());
    let Ok(Progress::Continue(m2)) = hb.handle(&b.keys, &m1) else { panic!("bob answers alice's first message") };
    let Ok(Progress::Done(da)) = ha.handle(&a.keys, &m2) else { panic!("alice finishes on bob's answer") };
    let Ok(Progress::Done(db)) = hb.handle(&b.keys, &da.send) else { panic!("bob finishes on alice's last message") };
    let (mut da, mut db) = (*da, *db);
    let dialer_frame = wire::encode(&Message::Chat { ttl: FIRST_TTL, hops: FIRST_HOPS, chat: chats()[0].clone() });
    let acceptor_frame = wire::encode(&Message::Ping { nonce: 1 });
    let (mut dialer_record, mut acceptor_record) = (Vec::new(), Vec::new());
    da.session.seal(&dialer_frame, &mut dialer_record).unwrap();
    db.session.seal(&acceptor_frame, &mut acceptor_record).unwrap();
    // Each side opens the other's.
    let mut plain = Vec::new();
    db.session.open(&dialer_record, &mut plain).unwrap();
    assert_eq!(plain, dialer_frame);
    plain.clear();
    da.session.open(&acceptor_record, &mut plain).unwrap();
    assert_eq!(plain, acceptor_frame);
    HandshakeVector {
        dialer: party(&a, &db.hello),
        acceptor: party(&b, &da.hello),
        message_1: hex(&m1),
        message_2: hex(&m2),
        message_3: hex(&da.send),
        dialer_first_frame: hex(&dialer_frame),
        dialer_first_record: hex(&dialer_record),
        acceptor_first_frame: hex(&acceptor_frame),
        acceptor_first_record: hex(&acceptor_record),
    }
}

/// `k`'s side of the vectors; `hello`, its hello as the other side received it.
fn party(k: &Keyring, hello: &Hello) -> Party {
    let public_key = k.keys.public_key();
    let static_public = x25519_public(&k.static_private);
    let signed = binding_signed_bytes(&static_public);
    assert_eq!(hello.public_key, public_key);
    assert!(k.keys.verify(&public_key, &signed, &hello.binding), "the binding does not sign the specification's bytes");
    let bytes = wire::encode_hello(hello);
    assert_eq!(bytes, hello_bytes(hello), "the hello is not laid out as specified");
    Party {
        ed25519_seed: hex(&k.seed),
        public_key: hex(&public_key.0),
        peer_id: hex(&public_key.peer_id().0),
        username: k.username.into(),
        listen_port: k.listen_port,
        noise_static_private_key: hex(&k.static_private),
        noise_static_public_key: hex(&static_public),
        noise_ephemeral_private_key: hex(&k.ephemeral_private),
        noise_ephemeral_public_key: hex(&x25519_public(&k.ephemeral_private)),
        binding_signed_bytes: hex(&signed),
        binding: hex(&hello.binding.0),
        hello: hex(&bytes),
    }
}

fn vectors() -> Vectors {
    let handshake = handshake();
    Vectors {
        about: "Test vectors of docs/PROTOCOL.md. Bytes are lowercase hex; checked against the code by \
                core/tests/protocol_vectors.rs."
            .into(),
        protocol_version: PROTOCOL_VERSION,
        noise_protocol: NOISE_PROTOCOL.into(),
        prologue: hex(PROLOGUE),
        binding_domain: hex(BINDING_DOMAIN),
        chat_domain: hex(CHAT_DOMAIN),
        identity: handshake.dialer.clone(),
        chats: chats().iter().map(chat_vector).collect(),
        messages: message_vectors(),
        handshake,
    }
}

fn updating() -> bool {
    std::env::var_os("UPDATE_VECTORS").is_some_and(|v| v == "1")
}

/// The file's vectors; while it is being rewritten, the new ones.
fn read_file() -> Vectors {
    if updating() {
        return vectors();
    }
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("{VECTORS}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{VECTORS}: {e}"))
}

#[test]
fn vectors_are_what_the_code_makes() {
    let made = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if updating() {
        std::fs::write(VECTORS, &made).unwrap_or_else(|e| panic!("{VECTORS}: {e}"));
        return;
    }
    let file = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("{VECTORS}: {e}"));
    if let Some((i, (want, got))) = made.lines().zip(file.lines()).enumerate().find(|(_, (m, f))| m != f) {
        panic!(
            "docs/protocol-vectors.json differs from what the code makes, at line {}:\n  file: {got}\n  code: {want}\n\
             If the bytes on the wire changed on purpose, bump PROTOCOL_VERSION, update docs/PROTOCOL.md and run\n  \
             UPDATE_VECTORS=1 cargo test -p p2p-chat-core --test protocol_vectors",
            i + 1
        );
    }
    assert_eq!(made.lines().count(), file.lines().count(), "docs/protocol-vectors.json has a different length");
}

/// Every message listed in the file decodes from its bytes to the message it describes, and
/// every chat's signature verifies over its signed bytes.
#[test]
fn every_listed_message_decodes_from_its_bytes() {
    let file = read_file();
    let expected = messages();
    assert_eq!(file.messages.len(), expected.len());
    for (v, (msg, _)) in file.messages.iter().zip(&expected) {
        let frame = unhex(&v.frame);
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4, "{}: the length counts what follows it", v.name);
        assert_eq!(u16::from_be_bytes([frame[4], frame[5]]), PROTOCOL_VERSION);
        assert_eq!(frame[6], v.variant, "{}", v.name);
        let decoded = wire::decode_payload(&frame[4..]).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(decoded.kind(), v.name);
        assert_eq!(&decoded, msg, "{}", v.name);
    }
    let alice = alice();
    for (v, chat) in file.chats.iter().zip(chats()) {
        let frame = unhex(&v.frame);
        let Ok(Message::Chat { ttl, hops, chat: decoded }) = wire::decode_payload(&frame[4..]) else {
            panic!("{}: not a chat frame", v.body)
        };
        assert_eq!((ttl, hops), (FIRST_TTL, FIRST_HOPS));
        assert_eq!(*decoded, *chat);
        assert_eq!(decoded.signed_bytes(), unhex(&v.signed_bytes));
        let author = PublicKey(unhex(&v.author).try_into().unwrap());
        let signature = p2p_chat_core::Signature(unhex(&v.signature).try_into().unwrap());
        assert!(alice.keys.verify(&author, &unhex(&v.signed_bytes), &signature), "{}", v.body);
    }
    for party in [&file.identity, &file.handshake.dialer, &file.handshake.acceptor] {
        let hello = wire::decode_hello(&unhex(&party.hello)).unwrap();
        assert_eq!(hex(&hello.public_key.0), party.public_key);
        assert_eq!(hex(&hello.public_key.peer_id().0), party.peer_id);
        assert_eq!((hello.username.as_str(), hello.listen_port), (party.username.as_str(), party.listen_port));
        assert!(alice.keys.verify(&hello.public_key, &unhex(&party.binding_signed_bytes), &hello.binding));
    }
}

/// The handshake's messages from the file, fed to the code with the same keys, complete it, and
/// the first records open to their frames.
#[test]
fn the_listed_handshake_completes() {
    let file = read_file().handshake;
    let (a, b) = (alice(), bob());
    let ib = StaticIdentity::from_private_key(&b.keys, b.static_private);
    let (mut hb, _) = Handshake::with_fixed_ephemeral_for_test_vectors(
        &b.keys,
        &ib,
        b.username,
        b.listen_port,
        false,
        &b.ephemeral_private,
    );
    let Ok(Progress::Continue(m2)) = hb.handle(&b.keys, &unhex(&file.message_1)) else { panic!("message 1") };
    assert_eq!(hex(&m2), file.message_2);
    let Ok(Progress::Done(db)) = hb.handle(&b.keys, &unhex(&file.message_3)) else { panic!("message 3") };
    let mut db = *db;
    assert_eq!(db.hello.public_key, a.keys.public_key());
    let mut plain = Vec::new();
    db.session.open(&unhex(&file.dialer_first_record), &mut plain).unwrap();
    assert_eq!(hex(&plain), file.dialer_first_frame);
    let mut record = Vec::new();
    db.session.seal(&unhex(&file.acceptor_first_frame), &mut record).unwrap();
    assert_eq!(hex(&record), file.acceptor_first_record);
}
