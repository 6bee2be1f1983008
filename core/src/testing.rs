//! Peers for tests, benches and fuzz targets (feature `testing`): a [`Client`] that completes the
//! real Noise handshake as an identity of its own and then sends whatever a test scripts, honest
//! or hostile, and [`flood`], the request floods that the node's answer limits (see
//! [`crate::serve`]) are tested against. Sans-IO like the rest of the core: a test puts a client
//! on a real socket, the simulator on a virtual link.

use crate::chat::{Body, Chat, ChatId};
use crate::handshake::{Handshake, HandshakeError, Progress, StaticIdentity};
use crate::identity::{Ed25519Keys, Keys, PeerId};
use crate::random::Rng;
use crate::session::{Session, SessionError};
use crate::wire::{self, FrameDecoder, Message, WireError};

/// Why a client could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("record: {0}")]
    Session(#[from] SessionError),
    #[error("frame: {0}")]
    Wire(#[from] WireError),
    #[error("the handshake is not done")]
    NotUp,
}

enum State {
    Handshaking(Box<Handshake>),
    Up(Session),
}

/// One connection's dialing side, speaking the protocol as the test says.
pub struct Client {
    keys: Ed25519Keys,
    state: State,
    decoder: FrameDecoder,
    /// Messages received and not yet taken.
    inbox: Vec<Message>,
    /// Bytes received from the node, handshake included.
    pub bytes_in: u64,
    /// Bytes sealed for the node, handshake included.
    pub bytes_out: u64,
    /// The connection's binding (see `handshake::Done::binding`), once up: what a room's
    /// membership tag is computed over.
    binding: [u8; 32],
}

impl Client {
    /// A client of the identity `seed`, named `username`, and the bytes that open its connection.
    pub fn dial(seed: u64, username: &str) -> (Client, Vec<u8>) {
        let keys = Ed25519Keys::from_seed(seed);
        let mut rng = Rng::new(seed);
        let me = StaticIdentity::new(&keys, &mut rng);
        let (hs, first) = Handshake::dial(&keys, &me, &mut rng, username, 0);
        let client = Client {
            keys,
            state: State::Handshaking(hs),
            decoder: FrameDecoder::new(wire::DEFAULT_MAX_FRAME_BYTES),
            inbox: Vec::new(),
            bytes_in: 0,
            bytes_out: first.len() as u64,
            binding: [0; 32],
        };
        (client, first)
    }

    pub fn peer_id(&self) -> PeerId {
        self.keys.public_key().peer_id()
    }

    pub fn keys(&self) -> &Ed25519Keys {
        &self.keys
    }

    /// The connection's binding, once the handshake is done.
    pub fn binding(&self) -> [u8; 32] {
        self.binding
    }

    /// Whether the handshake is done.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up(_))
    }

    /// Feeds bytes from the node. Returns bytes to write back (the handshake's last message).
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.bytes_in += bytes.len() as u64;
        match &mut self.state {
            State::Handshaking(hs) => match hs.handle(&self.keys, bytes)? {
                Progress::Continue(send) => {
                    self.bytes_out += send.len() as u64;
                    Ok(send)
                }
                Progress::Done(done) => {
                    let done = *done;
                    self.binding = done.binding;
                    self.state = State::Up(done.session);
                    self.bytes_out += done.send.len() as u64;
                    if !done.leftover.is_empty() {
                        self.bytes_in -= done.leftover.len() as u64;
                        self.receive(&done.leftover)?;
                    }
                    Ok(done.send)
                }
            },
            State::Up(session) => {
                let mut plain = Vec::new();
                session.open(bytes, &mut plain)?;
                let mut got = Vec::new();
                self.decoder.decode(&plain, &mut got);
                for m in got {
                    self.inbox.push(m?);
                }
                Ok(Vec::new())
            }
        }
    }

    /// The messages received since the last call.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.inbox)
    }

    /// Seals `frames` (encoded frames, any number, whole or not) into records for the node.
    pub fn seal(&mut self, frames: &[u8]) -> Result<Vec<u8>, ClientError> {
        let State::Up(session) = &mut self.state else { return Err(ClientError::NotUp) };
        let mut out = Vec::with_capacity(frames.len() + frames.len() / 1000 + 64);
        session.seal(frames, &mut out)?;
        self.bytes_out += out.len() as u64;
        Ok(out)
    }

    /// A chat signed by this client's identity.
    pub fn chat(&self, unix_ms: u64, n: u64, text: String) -> Chat {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&n.to_be_bytes());
        Chat::new(&self.keys, ChatId::new_v7(unix_ms, &random), "flooder", Body::Text(text))
    }
}

/// The request floods a hostile peer sends once connected: each answer is far larger than its
/// request, and the node must neither amplify them nor let them crowd out honest peers.
pub mod flood {
    use crate::chat::ChatId;
    use crate::sync::{Summary, SyncRange};
    use crate::wire::{encode, Message, MAX_RANGES_PER_FRAME};

    /// "I hold nothing at all": one listed range over every id, asking for every chat held.
    pub fn sync_everything() -> Vec<u8> {
        encode(&Message::Sync {
            ranges: vec![SyncRange { lower: ChatId::MIN, upper: ChatId::MAX, summary: Summary::Ids(Vec::new()) }],
        })
    }

    /// As many ranges as a frame may hold, each over every id with a fingerprint that matches
    /// nothing: each asks the node to walk its whole history and split it.
    pub fn sync_walks() -> Vec<u8> {
        let r =
            SyncRange { lower: ChatId::MIN, upper: ChatId::MAX, summary: Summary::Fingerprint { count: 1, hash: 1 } };
        encode(&Message::Sync { ranges: vec![r; MAX_RANGES_PER_FRAME] })
    }

    /// A want for `ids`.
    pub fn iwant(ids: &[ChatId]) -> Vec<u8> {
        encode(&Message::IWant { ids: ids.to_vec() })
    }

    /// A graft asking for `ids`.
    pub fn graft(ids: &[ChatId]) -> Vec<u8> {
        encode(&Message::Graft { ids: ids.to_vec() })
    }

    pub fn peer_request() -> Vec<u8> {
        encode(&Message::PeerRequest)
    }

    /// `kind` repeated `n` times, as one run of frames.
    pub fn repeat(kind: &[u8], n: usize) -> Vec<u8> {
        kind.repeat(n)
    }
}
