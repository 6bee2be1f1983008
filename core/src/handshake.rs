//! Opening a connection: a Noise XX handshake whose static key is bound to the node's Ed25519
//! identity.
//!
//! Each handshake message travels as a frame: a 4-byte big-endian length, a 2-byte big-endian
//! protocol version, then the Noise message. The dialer sends `-> e`; the acceptor answers
//! `<- e, ee, s, es` with its [`Hello`] as the encrypted payload; the dialer finishes with
//! `-> s, se` and its own `Hello`. A `Hello` carries the Ed25519 public key and that key's signature
//! over the sender's Noise static key (the binding libp2p-noise uses). So:
//! - only the holder of the static private key can complete the Diffie-Hellman exchanges, and only
//!   the holder of the identity key can have signed that static key: a man in the middle can
//!   neither read the session nor pass for either side;
//! - identities travel encrypted, so an observer sees neither usernames nor keys, and the dialer
//!   reveals its own only after the acceptor has proven its.
//!
//! A peer that speaks anything else (an HTTP request, random bytes, protocol version 1) is refused
//! on its first frame header, after at most [`MAX_HANDSHAKE_FRAME`] bytes, with a reason that
//! names what it sent. After the handshake, a [`Session`] carries the frames.

use sha2::Digest as _;
use snow::params::{
    BaseChoice, CipherChoice, DHChoice, HandshakeChoice, HandshakeModifierList, HandshakePattern, HashChoice,
    NoiseParams,
};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::identity::{Keys, Signature};
use crate::random::Rng;
use crate::session::Session;
use crate::wire::{self, Hello, PROTOCOL_VERSION};

const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// The cipher named in [`NOISE_PARAMS`], which the session keys are for.
const SESSION_CIPHER: CipherChoice = CipherChoice::ChaChaPoly;

/// [`NOISE_PARAMS`], built from its parts (a test checks they agree): every handshake takes its
/// own copy, and parsing the name for each was 0.7% of the simulator's instructions.
fn noise_params() -> NoiseParams {
    let xx = HandshakeChoice { pattern: HandshakePattern::XX, modifiers: HandshakeModifierList { list: Vec::new() } };
    let name = NOISE_PARAMS.to_owned();
    NoiseParams::new(name, BaseChoice::Noise, xx, DHChoice::Curve25519, SESSION_CIPHER, HashChoice::Blake2s)
}
/// Mixed into the handshake hash: both sides must agree they run this protocol.
const PROLOGUE: &[u8] = b"p2p-chat/noise/v2";
/// What the identity key signs: this, then the Noise static public key.
const BINDING_DOMAIN: &[u8] = b"p2p-chat/noise-static-key/v2";
/// The length of that static key with the Diffie-Hellman of [`NOISE_PARAMS`].
const X25519_KEY_BYTES: usize = 32;
/// The tag the cipher of [`NOISE_PARAMS`] adds to what it encrypts.
const TAG_BYTES: usize = 16;

const HEADER_BYTES: usize = 4;
const VERSION_BYTES: usize = 2;
/// Largest handshake frame (version + Noise message). The largest honest one, the acceptor's, is
/// about 250 bytes with a 64-byte username.
pub const MAX_HANDSHAKE_FRAME: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not a p2p-chat peer (it sent {0})")]
    NotP2pChat(String),
    #[error("peer speaks protocol version {theirs}, this node speaks version {ours}")]
    Version { theirs: u16, ours: u16 },
    #[error("Noise handshake failed: {0}")]
    Noise(String),
    #[error("malformed Hello: {0}")]
    BadHello(String),
    #[error("the peer's identity key did not sign its session key")]
    BadBinding,
    #[error("connected to ourselves")]
    SelfConnection,
    #[error("username longer than {0} bytes")]
    UsernameTooLong(usize),
    #[error("peer sent more before the handshake gave it a turn")]
    OutOfTurn,
}

fn noise_error(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

/// This node's Noise static key and the identity's signature over it: made once per run, since a
/// signature per connection would cost a signing for nothing.
pub struct StaticIdentity {
    /// An X25519 private key, kept in place: every node holds one, and as the `Vec` snow gives
    /// it was 24 bytes plus a heap chunk of 48.
    private: [u8; 32],
    binding: Signature,
}

impl StaticIdentity {
    pub fn new(keys: &dyn Keys, rng: &mut Rng) -> StaticIdentity {
        let builder = builder(keys, rng);
        // Fails only if the resolver lacks X25519, which `Keys::transport_crypto` must provide.
        let pair = builder.generate_keypair().expect("the transport crypto provides X25519");
        let private = pair.private.as_slice().try_into().expect("an X25519 private key is 32 bytes");
        let binding = keys.sign(&binding_message(&pair.public));
        StaticIdentity { private, binding }
    }

    /// The identity of a given X25519 private key, for a node that keeps its static key (and for
    /// the test vectors of docs/PROTOCOL.md, which fix every key).
    pub fn from_private_key(keys: &dyn Keys, private: [u8; 32]) -> StaticIdentity {
        let mut dh =
            keys.transport_crypto().resolve_dh(&DHChoice::Curve25519).expect("the transport crypto provides X25519");
        dh.set(&private);
        let binding = keys.sign(&binding_message(dh.pubkey()));
        StaticIdentity { private, binding }
    }
}

fn binding_message(static_key: &[u8]) -> Vec<u8> {
    [BINDING_DOMAIN, static_key].concat()
}

/// Noise with the caller's primitives and the node's seeded RNG, so a handshake replays exactly.
pub(crate) fn builder<'a>(keys: &dyn Keys, rng: &mut Rng) -> snow::Builder<'a> {
    let resolver = Seeded { rng: rng.bytes(), inner: keys.transport_crypto() };
    snow::Builder::with_resolver(noise_params(), Box::new(resolver))
}

struct Seeded {
    rng: [u8; 32],
    inner: BoxedCryptoResolver,
}

struct SeededRandom(rand_chacha::ChaCha8Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        rand_core::Rng::fill_bytes(&mut self.0, dest);
        Ok(())
    }
}

impl CryptoResolver for Seeded {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(rand_core::SeedableRng::from_seed(self.rng))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        self.inner.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        self.inner.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        self.inner.resolve_cipher(choice)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Dialer, `-> e` sent.
    DialerAwaitsReply,
    /// Acceptor, nothing received yet.
    AcceptorAwaitsFirst,
    /// Acceptor, `<- e, ee, s, es` sent.
    AcceptorAwaitsLast,
}

pub struct Handshake {
    noise: Option<snow::HandshakeState>,
    step: Step,
    /// Our `Hello`, sent as the payload of our message that carries `s` (taken then: it goes once).
    hello: Vec<u8>,
    /// At most one partial handshake frame.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake").field("step", &self.step).finish_non_exhaustive()
    }
}

/// What a handshake asks of the node after some bytes.
#[derive(Debug)]
pub enum Progress {
    /// Send these bytes (possibly none) and wait for more.
    Continue(Vec<u8>),
    Done(Box<Done>),
}

#[derive(Debug)]
pub struct Done {
    pub hello: Hello,
    pub session: Session,
    /// Our last handshake message, to send before anything the session seals.
    pub send: Vec<u8>,
    /// Bytes that followed the handshake: the first records of the session.
    pub leftover: Vec<u8>,
    /// SHA-256 of the Noise handshake hash: the same at both ends of this connection and at no
    /// other, so what is bound to it (room membership tags) cannot be used anywhere else.
    pub binding: [u8; 32],
}

impl Handshake {
    /// The dialer's side, and the bytes that open the connection.
    ///
    /// Boxed here, where it is made: snow's state is about 900 bytes, and each move of a
    /// handshake returned by value (into a tuple, then into the node's box) copied all of it.
    pub fn dial(
        keys: &dyn Keys,
        me: &StaticIdentity,
        rng: &mut Rng,
        username: &str,
        listen_port: u16,
    ) -> (Box<Handshake>, Vec<u8>) {
        let mut hs = Handshake::new(keys, me, rng, username, listen_port, true, None);
        let first = hs.write(&[]).expect("the first handshake message cannot fail");
        hs.step = Step::DialerAwaitsReply;
        (hs, first)
    }

    /// The acceptor's side: it speaks second.
    pub fn accept(
        keys: &dyn Keys,
        me: &StaticIdentity,
        rng: &mut Rng,
        username: &str,
        listen_port: u16,
    ) -> Box<Handshake> {
        Handshake::new(keys, me, rng, username, listen_port, false, None)
    }

    /// [`dial`](Self::dial) (`dialer`) or [`accept`](Self::accept) with the ephemeral key fixed
    /// instead of drawn from an RNG, and the bytes that open the connection (none for the
    /// acceptor). Only for the test vectors of docs/PROTOCOL.md, which need every key of a
    /// handshake fixed: an ephemeral key used twice gives up the forward secrecy it is for, so no
    /// node calls this.
    #[doc(hidden)]
    pub fn with_fixed_ephemeral_for_test_vectors(
        keys: &dyn Keys,
        me: &StaticIdentity,
        username: &str,
        listen_port: u16,
        dialer: bool,
        ephemeral: &[u8; 32],
    ) -> (Box<Handshake>, Vec<u8>) {
        let mut rng = Rng::new(0);
        let mut hs = Handshake::new(keys, me, &mut rng, username, listen_port, dialer, Some(ephemeral));
        if !dialer {
            return (hs, Vec::new());
        }
        let first = hs.write(&[]).expect("the first handshake message cannot fail");
        hs.step = Step::DialerAwaitsReply;
        (hs, first)
    }

    fn new(
        keys: &dyn Keys,
        me: &StaticIdentity,
        rng: &mut Rng,
        username: &str,
        listen_port: u16,
        initiator: bool,
        ephemeral: Option<&[u8; 32]>,
    ) -> Box<Handshake> {
        let mut b = builder(keys, rng)
            .local_private_key(&me.private)
            .and_then(|b| b.prologue(PROLOGUE))
            .expect("a fresh builder takes a key and a prologue");
        if let Some(e) = ephemeral {
            b = b.fixed_ephemeral_key_for_testing_only(e);
        }
        let hello =
            Hello { public_key: keys.public_key(), binding: me.binding, username: username.to_owned(), listen_port };
        let mut hs = Box::new(Handshake {
            noise: None,
            step: Step::AcceptorAwaitsFirst,
            hello: wire::encode_hello(&hello),
            buf: Vec::new(),
        });
        // Built, then moved once, into the box.
        let noise = if initiator { b.build_initiator() } else { b.build_responder() };
        hs.noise = Some(noise.expect("parameters the resolver supports"));
        hs
    }

    /// Whether the peer has sent a valid first message: an honest dialer does at once, a
    /// connection that never will (slowloris) has not.
    pub fn progressed(&self) -> bool {
        self.step != Step::AcceptorAwaitsFirst
    }

    /// Feeds bytes received before the handshake finished.
    pub fn handle(&mut self, keys: &dyn Keys, bytes: &[u8]) -> Result<Progress, HandshakeError> {
        // A handshake message nearly always arrives whole, with nothing before it: it is read
        // where it lies, and only a partial frame or what follows one is copied.
        let mut held = std::mem::take(&mut self.buf);
        let data: &[u8] = if held.is_empty() {
            bytes
        } else {
            held.extend_from_slice(bytes);
            &held
        };
        if data.len() < HEADER_BYTES {
            self.buf = data.to_vec();
            return Ok(Progress::Continue(Vec::new()));
        }
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if !(VERSION_BYTES..=MAX_HANDSHAKE_FRAME).contains(&len) {
            return Err(HandshakeError::NotP2pChat(describe(data)));
        }
        if data.len() >= HEADER_BYTES + VERSION_BYTES {
            let theirs = u16::from_be_bytes([data[4], data[5]]);
            if theirs != PROTOCOL_VERSION {
                return Err(HandshakeError::Version { theirs, ours: PROTOCOL_VERSION });
            }
        }
        if data.len() < HEADER_BYTES + len {
            // Room for the whole frame at once: a frame that arrives in pieces (over a third of
            // them in the simulator) was copied at its first piece's size and grown by its next.
            let mut partial = Vec::with_capacity(HEADER_BYTES + len);
            partial.extend_from_slice(data);
            self.buf = partial;
            return Ok(Progress::Continue(Vec::new()));
        }
        let (frame, rest) = data.split_at(HEADER_BYTES + len);
        // On the stack: the payload is at most a frame, and is only looked at before returning.
        let mut payload = [0u8; MAX_HANDSHAKE_FRAME];
        let payload = self.read(&frame[HEADER_BYTES + VERSION_BYTES..], &mut payload)?;
        self.buf = rest.to_vec();
        match self.step {
            Step::AcceptorAwaitsFirst => {
                if !self.buf.is_empty() {
                    return Err(HandshakeError::OutOfTurn);
                }
                let hello = std::mem::take(&mut self.hello);
                let send = self.write(&hello)?;
                self.step = Step::AcceptorAwaitsLast;
                Ok(Progress::Continue(send))
            }
            Step::DialerAwaitsReply => {
                if !self.buf.is_empty() {
                    return Err(HandshakeError::OutOfTurn);
                }
                let hello = self.check(keys, payload)?;
                let mine = std::mem::take(&mut self.hello);
                let send = self.write(&mine)?;
                self.finish(keys, hello, send)
            }
            Step::AcceptorAwaitsLast => {
                let hello = self.check(keys, payload)?;
                self.finish(keys, hello, Vec::new())
            }
        }
    }

    fn noise(&mut self) -> &mut snow::HandshakeState {
        self.noise.as_mut().expect("the handshake state lives until `finish`")
    }

    /// The payload of the peer's handshake message `msg`, decrypted into `out`.
    fn read<'o>(&mut self, msg: &[u8], out: &'o mut [u8]) -> Result<&'o [u8], HandshakeError> {
        let n = self.noise().read_message(msg, out).map_err(noise_error)?;
        Ok(&out[..n])
    }

    /// Our next handshake message, framed. Written into a buffer sized for the largest message
    /// the pattern has with this payload, not for the largest frame: a kilobyte buffer per
    /// message, allocated and sent, was held until the peer read it, and one on the stack had
    /// to be zeroed and then copied out at its size.
    // `vec![0; n]` would be a `calloc`, which glibc serves without its per-thread cache: about
    // three times the cost of the `malloc` and small fill written here.
    #[allow(clippy::slow_vector_initialization)]
    fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        // `<- e, ee, s, es`: an ephemeral key, a static key and its tag, the payload and its tag.
        // A message larger than the frame limit fails in snow, as it did with a buffer of it.
        let room = (2 * X25519_KEY_BYTES + 2 * TAG_BYTES + payload.len()).min(MAX_HANDSHAKE_FRAME);
        let mut out = Vec::with_capacity(HEADER_BYTES + VERSION_BYTES + room);
        out.resize(HEADER_BYTES + VERSION_BYTES + room, 0);
        let n = self.noise().write_message(payload, &mut out[HEADER_BYTES + VERSION_BYTES..]).map_err(noise_error)?;
        out.truncate(HEADER_BYTES + VERSION_BYTES + n);
        out[..HEADER_BYTES].copy_from_slice(&((VERSION_BYTES + n) as u32).to_be_bytes());
        out[HEADER_BYTES..HEADER_BYTES + VERSION_BYTES].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        Ok(out)
    }

    /// The peer's `Hello`, if its identity key signed the static key this handshake proved.
    fn check(&mut self, keys: &dyn Keys, payload: &[u8]) -> Result<Hello, HandshakeError> {
        let hello = wire::decode_hello(payload).map_err(|e| HandshakeError::BadHello(e.to_string()))?;
        if hello.public_key == keys.public_key() {
            return Err(HandshakeError::SelfConnection);
        }
        if hello.username.len() > crate::chat::MAX_USERNAME_BYTES {
            return Err(HandshakeError::UsernameTooLong(crate::chat::MAX_USERNAME_BYTES));
        }
        let remote = self.noise().get_remote_static().ok_or(HandshakeError::BadBinding)?;
        // Made on the stack for the X25519 key every handshake has: this runs once per connection.
        let mut stack = [0u8; BINDING_DOMAIN.len() + X25519_KEY_BYTES];
        let heap;
        let signed: &[u8] = if remote.len() == X25519_KEY_BYTES {
            stack[..BINDING_DOMAIN.len()].copy_from_slice(BINDING_DOMAIN);
            stack[BINDING_DOMAIN.len()..].copy_from_slice(remote);
            &stack
        } else {
            heap = binding_message(remote);
            &heap
        };
        if !keys.verify(&hello.public_key, signed, &hello.binding) {
            return Err(HandshakeError::BadBinding);
        }
        Ok(hello)
    }

    /// Splits the handshake into the session's two keys, as Noise's `Split()` does (see `session`
    /// for why the transport phase is not snow's own).
    fn finish(&mut self, keys: &dyn Keys, hello: Hello, send: Vec<u8>) -> Result<Progress, HandshakeError> {
        let noise = self.noise();
        if !noise.is_handshake_finished() {
            return Err(noise_error(snow::Error::State(snow::error::StateProblem::HandshakeNotFinished)));
        }
        let binding: [u8; 32] = sha2::Sha256::digest(noise.get_handshake_hash()).into();
        let (initiator_key, responder_key) = noise.dangerously_get_raw_split();
        let (send_key, recv_key) =
            if noise.is_initiator() { (initiator_key, responder_key) } else { (responder_key, initiator_key) };
        // Dropped where it lies: taken out of the `Option` first, all of it was copied.
        self.noise = None;
        let resolver = keys.transport_crypto();
        let cipher = |key: &[u8; 32]| {
            let mut c = resolver
                .resolve_cipher(&SESSION_CIPHER)
                .ok_or(snow::Error::Init(snow::error::InitStage::GetCipherImpl));
            if let Ok(c) = c.as_mut() {
                c.set(key);
            }
            c.map_err(noise_error)
        };
        let session = Session::new(cipher(&send_key)?, cipher(&recv_key)?);
        let leftover = std::mem::take(&mut self.buf);
        Ok(Progress::Done(Box::new(Done { hello, session, send, leftover, binding })))
    }
}

/// The first bytes a stranger sent, readable in a log line.
fn describe(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    if head.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        format!("{:?}", String::from_utf8_lossy(head))
    } else {
        let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
        format!("bytes {hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Ed25519Keys;

    struct Side {
        keys: Ed25519Keys,
        me: StaticIdentity,
        rng: Rng,
    }

    fn side(seed: u64) -> Side {
        let keys = Ed25519Keys::from_seed(seed);
        let mut rng = Rng::new(seed);
        let me = StaticIdentity::new(&keys, &mut rng);
        Side { keys, me, rng }
    }

    /// Runs a handshake between dialer `a` and acceptor `b`, passing every message through
    /// `tamper(index, bytes)`. Returns both sides' results.
    fn run(
        a: &mut Side,
        b: &mut Side,
        mut tamper: impl FnMut(usize, Vec<u8>) -> Vec<u8>,
    ) -> (Result<Box<Done>, HandshakeError>, Result<Box<Done>, HandshakeError>) {
        let (mut ha, m1) = Handshake::dial(&a.keys, &a.me, &mut a.rng, "alice", 1);
        let mut hb = Handshake::accept(&b.keys, &b.me, &mut b.rng, "bob", 2);
        let m2 = match hb.handle(&b.keys, &tamper(0, m1)) {
            Ok(Progress::Continue(m)) => m,
            Ok(Progress::Done(_)) => panic!("the acceptor cannot finish on the first message"),
            Err(e) => return (Err(e.clone()), Err(e)),
        };
        let done_a = match ha.handle(&a.keys, &tamper(1, m2)) {
            Ok(Progress::Done(d)) => d,
            Ok(Progress::Continue(_)) => panic!("the dialer finishes on the second message"),
            Err(e) => return (Err(e.clone()), Err(e)),
        };
        let m3 = tamper(2, done_a.send.clone());
        let done_b = match hb.handle(&b.keys, &m3) {
            Ok(Progress::Done(d)) => Ok(d),
            Ok(Progress::Continue(_)) => panic!("the acceptor finishes on the third message"),
            Err(e) => Err(e),
        };
        (Ok(done_a), done_b)
    }

    #[test]
    fn honest_handshake_gives_each_side_the_other_and_a_working_session() {
        let (mut a, mut b) = (side(1), side(2));
        let (da, db) = run(&mut a, &mut b, |_, m| m);
        let (mut da, mut db) = (da.unwrap(), db.unwrap());
        assert_eq!(da.hello.public_key, b.keys.public_key());
        assert_eq!(db.hello.public_key, a.keys.public_key());
        assert_eq!((da.hello.username.as_str(), db.hello.username.as_str()), ("bob", "alice"));
        let mut wire = Vec::new();
        da.session.seal(b"hello bob", &mut wire).unwrap();
        assert!(!wire.windows(9).any(|w| w == b"hello bob"), "sealed bytes must not show the plaintext");
        let mut plain = Vec::new();
        db.session.open(&wire, &mut plain).unwrap();
        assert_eq!(plain, b"hello bob");
    }

    /// Messages cut anywhere, one byte at a time, finish as whole ones do; bytes that follow the
    /// last message are the session's.
    #[test]
    fn messages_fed_byte_by_byte_and_trailing_records() {
        let (mut a, mut b) = (side(1), side(2));
        let (mut ha, m1) = Handshake::dial(&a.keys, &a.me, &mut a.rng, "alice", 1);
        let mut hb = Handshake::accept(&b.keys, &b.me, &mut b.rng, "bob", 2);
        let feed = |h: &mut Handshake, keys: &Ed25519Keys, msg: &[u8]| {
            let (last, head) = msg.split_last().unwrap();
            for byte in head {
                match h.handle(keys, std::slice::from_ref(byte)) {
                    Ok(Progress::Continue(m)) => assert!(m.is_empty()),
                    other => panic!("finished or failed before the message was whole: {other:?}"),
                }
            }
            h.handle(keys, std::slice::from_ref(last)).unwrap()
        };
        let Progress::Continue(m2) = feed(&mut hb, &b.keys, &m1) else { panic!("acceptor answers") };
        let Progress::Done(da) = feed(&mut ha, &a.keys, &m2) else { panic!("dialer finishes") };
        let mut da = *da;
        let mut record = Vec::new();
        da.session.seal(b"first", &mut record).unwrap();
        let m3 = [da.send.as_slice(), &record].concat();
        let Ok(Progress::Done(db)) = hb.handle(&b.keys, &m3) else { panic!("acceptor finishes") };
        assert_eq!(db.hello.username, "alice");
        assert_eq!(db.leftover, record);
    }

    #[test]
    fn identities_never_cross_the_wire_in_clear() {
        let (mut a, mut b) = (side(1), side(2));
        let (ka, kb) = (a.keys.public_key(), b.keys.public_key());
        let mut seen = Vec::new();
        let _ = run(&mut a, &mut b, |_, m| {
            seen.extend_from_slice(&m);
            m
        });
        for key in [ka.0, kb.0] {
            assert!(!seen.windows(32).any(|w| w == key), "an identity key travelled in clear");
        }
        assert!(!seen.windows(5).any(|w| w == b"alice"));
    }

    #[test]
    fn any_flipped_bit_fails_the_handshake() {
        for msg in 0..3 {
            let (mut a, mut b) = (side(1), side(2));
            let (da, db) = run(&mut a, &mut b, |i, mut m| {
                if i == msg {
                    let last = m.len() - 1;
                    m[last] ^= 1;
                }
                m
            });
            assert!(da.is_err() || db.is_err(), "message {msg} altered yet both sides finished");
        }
    }

    /// Mallory relays the handshake but substitutes her own static key and Hello: she holds no
    /// binding signature from Bob's identity key for her static key.
    #[test]
    fn a_hello_from_another_identity_key_does_not_verify() {
        let (mut a, mut b, m) = (side(1), side(2), side(3));
        let forged =
            Hello { public_key: b.keys.public_key(), binding: m.me.binding, username: "bob".into(), listen_port: 2 };
        // Bob's Hello, as Mallory would like it to read: signed by Mallory for her own static key.
        b.me.binding = forged.binding;
        let (da, _) = run(&mut a, &mut b, |_, m| m);
        assert_eq!(da.unwrap_err(), HandshakeError::BadBinding);
    }

    #[test]
    fn strangers_and_old_versions_are_named() {
        let b = side(2);
        let mut rng = Rng::new(9);
        let mut h = Handshake::accept(&b.keys, &b.me, &mut rng, "bob", 2);
        let e = h.handle(&b.keys, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
        assert_eq!(e.to_string(), r#"not a p2p-chat peer (it sent "GET / HTTP/1.1\r\n")"#);
        let mut h = Handshake::accept(&b.keys, &b.me, &mut rng, "bob", 2);
        let v1 = [0, 0, 0, 40, 0, 1, 7, 7];
        assert_eq!(h.handle(&b.keys, &v1).unwrap_err(), HandshakeError::Version { theirs: 1, ours: PROTOCOL_VERSION });
        let mut h = Handshake::accept(&b.keys, &b.me, &mut rng, "bob", 2);
        assert!(matches!(h.handle(&b.keys, &[0xff; 3]), Ok(Progress::Continue(_))));
        assert!(matches!(h.handle(&b.keys, &[0xff; 3]), Err(HandshakeError::NotP2pChat(_))));
    }

    /// A static identity made from its private key is the one made with it.
    #[test]
    fn an_identity_from_its_private_key_is_the_same() {
        let a = side(1);
        let again = StaticIdentity::from_private_key(&a.keys, a.me.private);
        assert_eq!((again.private, again.binding), (a.me.private, a.me.binding));
    }

    #[test]
    fn the_noise_parameters_are_the_named_ones() {
        assert_eq!(noise_params(), NOISE_PARAMS.parse::<NoiseParams>().unwrap());
    }

    #[test]
    fn dialing_ourselves_is_recognised() {
        let mut a = side(1);
        let mut a2 = Side {
            keys: Ed25519Keys::from_seed(1),
            me: StaticIdentity::new(&a.keys, &mut Rng::new(5)),
            rng: Rng::new(6),
        };
        let (da, _) = run(&mut a, &mut a2, |_, m| m);
        assert_eq!(da.unwrap_err(), HandshakeError::SelfConnection);
    }
}
