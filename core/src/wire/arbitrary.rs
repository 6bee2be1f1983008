//! For the tests of this module: arbitrary messages, and bincode's own coding to compare with.

use core::net::SocketAddr;
use std::sync::Arc;

use quickcheck::{Arbitrary, Gen};

use super::codec::config;
use super::framing::HEADER_BYTES;
use super::{decode_payload, encode, Message, RoomMessage, WireError, PROTOCOL_VERSION, VERSION_BYTES};
use crate::chat::{Body, Chat, ChatId};
use crate::identity::Ed25519Keys;
use crate::sync::{Summary, SyncRange};

pub(super) fn arb_id(g: &mut Gen) -> ChatId {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = u8::arbitrary(g);
    }
    ChatId(b)
}

pub(super) fn arb_addr(g: &mut Gen) -> SocketAddr {
    if bool::arbitrary(g) {
        SocketAddr::from((u32::arbitrary(g).to_be_bytes(), u16::arbitrary(g)))
    } else {
        SocketAddr::from((u128::arbitrary(g).to_be_bytes(), u16::arbitrary(g)))
    }
}

#[derive(Clone, Debug)]
pub(super) struct AnyMessage(pub(super) Message);

impl Arbitrary for AnyMessage {
    fn arbitrary(g: &mut Gen) -> Self {
        let keys = Ed25519Keys::from_seed(u64::arbitrary(g) % 8);
        let ids = |g: &mut Gen| (0..usize::arbitrary(g) % 8).map(|_| arb_id(g)).collect::<Vec<_>>();
        let room = |g: &mut Gen| crate::rooms::RoomId(arb_id(g).0);
        let msg = match u8::arbitrary(g) % 28 {
            20..=27 => arb_dm(g, &keys),
            14 => {
                let room_keys = crate::rooms::RoomKeys::new(&crate::rooms::RoomSecret([u8::arbitrary(g); 32]));
                let (name, text) = (String::arbitrary(g), String::arbitrary(g));
                let chat = Chat::sealed(&keys, arb_id(g), &room_keys, &name, &text, [u8::arbitrary(g); 24]);
                Message::Chat { ttl: u8::arbitrary(g), hops: u8::arbitrary(g), chat: Arc::new(chat) }
            }
            15 => Message::Room {
                room: room(g),
                msg: match u8::arbitrary(g) % 7 {
                    0 => RoomMessage::IHave { ids: ids(g) },
                    1 => RoomMessage::IWant { ids: ids(g) },
                    2 => RoomMessage::Graft { ids: ids(g) },
                    3 => RoomMessage::Prune,
                    4 => RoomMessage::KeysWanted { epochs: ids(g) },
                    5 => {
                        RoomMessage::Keys { keys: ids(g).into_iter().map(|id| (id, [u8::arbitrary(g); 32])).collect() }
                    }
                    _ => RoomMessage::Sync {
                        ranges: vec![SyncRange { lower: arb_id(g), upper: arb_id(g), summary: Summary::Ids(ids(g)) }],
                    },
                },
            },
            16 => Message::Subscribe { tag: [u8::arbitrary(g); 32], public: bool::arbitrary(g).then(|| room(g)) },
            17 => Message::Unsubscribe { tag: [u8::arbitrary(g); 32] },
            18 => Message::FindRoom { room: room(g), ttl: u8::arbitrary(g) },
            19 => {
                Message::RoomPeers { room: room(g), addrs: (0..usize::arbitrary(g) % 5).map(|_| arb_addr(g)).collect() }
            }
            11 => Message::Prune,
            12 => Message::Graft { ids: ids(g) },
            13 => Message::Reply {
                hops: u8::arbitrary(g),
                chat: Arc::new(Chat::new(&keys, arb_id(g), &String::arbitrary(g), Body::Leave)),
            },
            0..=2 => {
                let body = match u8::arbitrary(g) % 3 {
                    0 => Body::Text(String::arbitrary(g)),
                    1 => Body::Join,
                    _ => Body::Leave,
                };
                let chat = Chat::new(&keys, arb_id(g), &String::arbitrary(g), body);
                Message::Chat { ttl: u8::arbitrary(g), hops: u8::arbitrary(g), chat: Arc::new(chat) }
            }
            3 => Message::IHave { ids: ids(g) },
            4 => Message::IWant { ids: ids(g) },
            5 => Message::Sync {
                ranges: (0..usize::arbitrary(g) % 4)
                    .map(|_| SyncRange {
                        lower: arb_id(g),
                        upper: arb_id(g),
                        summary: if bool::arbitrary(g) {
                            Summary::Fingerprint { count: u32::arbitrary(g), hash: u128::arbitrary(g) }
                        } else {
                            Summary::Ids(ids(g))
                        },
                    })
                    .collect(),
            },
            6 => Message::Ping { nonce: u64::arbitrary(g) },
            7 => Message::Pong { nonce: u64::arbitrary(g) },
            8 => Message::PeerRequest,
            9 => Message::PeerResponse { addrs: (0..usize::arbitrary(g) % 5).map(|_| arb_addr(g)).collect() },
            _ => Message::Announce { listen_port: u16::arbitrary(g) },
        };
        AnyMessage(msg)
    }
}

/// One of the direct messages' frames.
fn arb_dm(g: &mut Gen, keys: &Ed25519Keys) -> Message {
    use crate::dm::{Ack, DhKey, DmId, Envelope, KeyBundle, MailboxAddr, Prekeys, SignedBundle};
    use crate::identity::{Keys, PeerId};
    use crate::time::Time;
    let peer = |g: &mut Gen| PeerId([u8::arbitrary(g); 32]);
    let id = |g: &mut Gen| DmId(arb_id(g).0);
    let envelope = |g: &mut Gen| Envelope {
        id: id(g),
        from: peer(g),
        to: peer(g),
        expires_at: Time::from_micros(u64::arbitrary(g)),
        ciphertext: Vec::<u8>::arbitrary(g),
    };
    match u8::arbitrary(g) % 8 {
        0 => {
            let bundle = KeyBundle {
                identity: keys.public_key(),
                keys: Prekeys { identity: DhKey([u8::arbitrary(g); 32]), prekey: DhKey([u8::arbitrary(g); 32]) },
                mailboxes: (0..usize::arbitrary(g) % 4)
                    .map(|_| MailboxAddr { peer: peer(g), addr: arb_addr(g).to_string() })
                    .collect(),
                version: Time::from_micros(u64::arbitrary(g)),
            };
            Message::Bundle { bundle: Box::new(SignedBundle::sign(keys, bundle).unwrap()) }
        }
        1 => Message::BundleRequest { peer: peer(g), ttl: u8::arbitrary(g) },
        2 => Message::Dm { envelope: Box::new(envelope(g)) },
        3 => Message::Deposit { envelope: Box::new(envelope(g)) },
        4 => Message::Deposited {
            id: id(g),
            to: peer(g),
            outcome: [super::DepositOutcome::Stored, super::DepositOutcome::NotServed, super::DepositOutcome::Refused]
                [usize::arbitrary(g) % 3],
        },
        5 => Message::Collect { after: bool::arbitrary(g).then(|| id(g)) },
        6 => Message::Mail {
            envelopes: (0..usize::arbitrary(g) % 3).map(|_| envelope(g)).collect(),
            more: bool::arbitrary(g),
        },
        _ => Message::MailAck {
            ack: Box::new(Ack::new(keys, peer(g), (0..usize::arbitrary(g) % 4).map(|_| id(g)).collect())),
        },
    }
}

pub(super) fn bincode_body(msg: &Message) -> Vec<u8> {
    bincode::serde::encode_to_vec(msg, config()).unwrap()
}

pub(super) fn bincode_decode(body: &[u8]) -> Result<Message, WireError> {
    match bincode::serde::decode_from_slice::<Message, _>(body, config()) {
        Ok((msg, used)) if used == body.len() => Ok(msg),
        Ok((_, used)) => Err(WireError::Malformed(format!("{} trailing bytes after the message", body.len() - used))),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

pub(super) fn framed_body(msg: &Message) -> Vec<u8> {
    encode(msg)[HEADER_BYTES + VERSION_BYTES..].to_vec()
}

pub(super) fn decode_body(body: &[u8]) -> Result<Message, WireError> {
    let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
    payload.extend_from_slice(body);
    decode_payload(&payload)
}
