//! An established connection's encryption: frames go out sealed in records, and come in opened.
//!
//! A record is a 4-byte big-endian length, then one Noise transport message (ChaCha20-Poly1305
//! ciphertext and its 16-byte tag) of at most 65,535 bytes, Noise's own limit. The length counts
//! the ciphertext. A record carries any run of frames, or part of one: the node seals whatever it
//! queued for a connection in one go, so many small frames share one tag and one write, and a
//! large frame spans records. Nonces are implicit counters, so a record that is dropped, replayed,
//! reordered or altered fails to open, and the connection closes.
//!
//! This is exactly what Noise's transport phase (snow's `TransportState`) does with the two keys
//! the handshake splits into: each direction's cipher with its own counter as nonce and no
//! associated data, nonce 2^64-1 never used. It is done here because a `TransportState` also keeps
//! what only a handshake needs (the peer's static key, the pattern) and both directions' key flags:
//! 160 bytes a connection where these need 72, in a simulator holding hundreds of thousands.

use snow::types::Cipher;

/// Bytes before a record's ciphertext (its length). A buffer to be sealed with
/// [`Session::seal_in_place`] starts with this many bytes of room.
pub const HEADER_BYTES: usize = 4;
/// Bytes a record adds after its plaintext.
pub const TAG_BYTES: usize = 16;
/// Noise's largest message.
pub const MAX_RECORD_BYTES: usize = 65_535;
const MAX_PLAINTEXT: usize = MAX_RECORD_BYTES - TAG_BYTES;
/// Most room reserved for a record before its bytes have arrived.
const MAX_EARLY_RESERVE: usize = 16 * 1024;
/// Largest plaintext `seal_in_place` seals through a copy on the stack; most writes (a chat, an
/// id list, a sync round) are far smaller. Larger ones are sealed into a new buffer.
const STACK_SEAL_BYTES: usize = 1024;
/// Most frames (a chat, an announcement, a want) fit in this much.
const TINY_SEAL_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("record of {0} bytes is outside the {TAG_BYTES}..={MAX_RECORD_BYTES} a sealed record takes")]
    BadLength(usize),
    #[error("a record failed to decrypt: altered, replayed or not from this session")]
    Decrypt,
    #[error("the session's nonces are used up")]
    Exhausted,
}

pub struct Session {
    send: Direction,
    recv: Direction,
    /// At most one partial record (plus the last chunk handed to `open`), never empty. Boxed:
    /// most reads end on a record boundary, so nearly every session, of the hundreds of thousands
    /// a simulator holds, has none, and a word is what `None` costs where a `Vec` took three.
    #[allow(clippy::box_collection)] // The box is the point: see above.
    inbox: Option<Box<Vec<u8>>>,
}

/// One direction of the session: its cipher, keyed, and the nonce of its next record.
struct Direction {
    cipher: Box<dyn Cipher>,
    nonce: u64,
}

impl Direction {
    /// Noise reserves the last nonce (2^64-1); a direction that reaches it is used up.
    fn next_nonce(&mut self) -> Option<u64> {
        let n = self.nonce;
        (n != u64::MAX).then(|| {
            self.nonce += 1;
            n
        })
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("buffered", &self.buffered()).finish_non_exhaustive()
    }
}

impl Session {
    /// `send` and `recv`: this side's ciphers for each direction, already keyed.
    pub(crate) fn new(send: Box<dyn Cipher>, recv: Box<dyn Cipher>) -> Session {
        Session { send: Direction { cipher: send, nonce: 0 }, recv: Direction { cipher: recv, nonce: 0 }, inbox: None }
    }

    /// Bytes of a partial record waiting for the rest.
    pub fn buffered(&self) -> usize {
        self.inbox.as_ref().map_or(0, |i| i.len())
    }

    /// Appends `plaintext` to `out` as records.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SessionError> {
        for chunk in plaintext.chunks(MAX_PLAINTEXT) {
            let start = out.len();
            out.resize(start + HEADER_BYTES + chunk.len() + TAG_BYTES, 0);
            let Some(nonce) = self.send.next_nonce() else {
                out.truncate(start);
                return Err(SessionError::Exhausted);
            };
            let n = self.send.cipher.encrypt(nonce, &[], chunk, &mut out[start + HEADER_BYTES..]);
            out.truncate(start + HEADER_BYTES + n);
            out[start..start + HEADER_BYTES].copy_from_slice(&(n as u32).to_be_bytes());
        }
        Ok(())
    }

    /// Seals `buf`, whose plaintext follows [`HEADER_BYTES`] bytes of room, into the very records
    /// `seal` would append to an empty buffer. A small plaintext is sealed in `buf` itself, through
    /// a copy on the stack (the cipher cannot work in place): every write then needs one buffer,
    /// handed to the caller, instead of one for the plaintext and another for the records. Room
    /// for the tag is best reserved with the plaintext.
    pub fn seal_in_place(&mut self, buf: &mut Vec<u8>) -> Result<(), SessionError> {
        let len = buf.len() - HEADER_BYTES;
        if len == 0 || len > STACK_SEAL_BYTES {
            let mut out = Vec::with_capacity(len + len.div_ceil(MAX_PLAINTEXT) * (HEADER_BYTES + TAG_BYTES));
            self.seal(&buf[HEADER_BYTES..], &mut out)?;
            *buf = out;
            return Ok(());
        }
        // Two sizes on the stack: zeroing a kilobyte for a frame of a hundred bytes was most of
        // the cost of the copy.
        let mut tiny;
        let mut small;
        let plain = if len <= TINY_SEAL_BYTES {
            tiny = [0u8; TINY_SEAL_BYTES];
            &mut tiny[..len]
        } else {
            small = [0u8; STACK_SEAL_BYTES];
            &mut small[..len]
        };
        plain.copy_from_slice(&buf[HEADER_BYTES..]);
        buf.resize(HEADER_BYTES + len + TAG_BYTES, 0);
        let Some(nonce) = self.send.next_nonce() else {
            buf.truncate(HEADER_BYTES + len);
            return Err(SessionError::Exhausted);
        };
        let n = self.send.cipher.encrypt(nonce, &[], plain, &mut buf[HEADER_BYTES..]);
        buf.truncate(HEADER_BYTES + n);
        buf[..HEADER_BYTES].copy_from_slice(&(n as u32).to_be_bytes());
        Ok(())
    }

    /// Opens every whole record among the bytes received so far, appending the plaintext to
    /// `plaintext`. An error is fatal: the stream cannot be trusted past it.
    pub fn open(&mut self, bytes: &[u8], plaintext: &mut Vec<u8>) -> Result<(), SessionError> {
        let start = plaintext.len();
        plaintext.resize(start + self.buffered() + bytes.len(), 0);
        let mut written = 0;
        let result = self.open_records(bytes, &mut plaintext[start..], &mut written);
        plaintext.truncate(start + written);
        result
    }

    /// `open`, into `out` instead of a `Vec`: returns how many bytes of it the plaintext took.
    /// `out` must hold [`buffered`](Self::buffered) plus `bytes.len()` bytes (records only shrink
    /// when opened), so that a caller can open a small read into a buffer on the stack.
    pub fn open_into(&mut self, bytes: &[u8], out: &mut [u8]) -> Result<usize, SessionError> {
        let mut written = 0;
        self.open_records(bytes, out, &mut written).map(|()| written)
    }

    fn open_records(&mut self, bytes: &[u8], out: &mut [u8], written: &mut usize) -> Result<(), SessionError> {
        let result = match self.inbox.as_mut() {
            // The common case, a read that starts on a record boundary: open in place and keep
            // only the partial record at the end.
            None => open_records(&mut self.recv, bytes, out, written).map(|used| self.keep_partial(&bytes[used..])),
            Some(inbox) => {
                inbox.extend_from_slice(bytes);
                open_records(&mut self.recv, inbox, out, written).map(|used| {
                    inbox.drain(..used);
                })
            }
        };
        if result.is_err() || self.inbox.as_ref().is_some_and(|i| i.is_empty()) {
            // Between records a connection holds no buffer: most reads end on a record boundary,
            // and thousands of idle (or simulated) connections should cost nothing here.
            self.inbox = None;
        }
        result
    }

    /// Buffers the start of a record. Room is made for all of it once its length is known, so the
    /// rest arriving does not grow the buffer a second time; up to a bound, so that a peer cannot
    /// make a node hold much more memory than it has actually sent.
    fn keep_partial(&mut self, partial: &[u8]) {
        if partial.is_empty() {
            return;
        }
        let mut inbox = Vec::new();
        if partial.len() >= HEADER_BYTES {
            let len = u32::from_be_bytes([partial[0], partial[1], partial[2], partial[3]]) as usize;
            inbox.reserve_exact((HEADER_BYTES + len).min(MAX_EARLY_RESERVE).max(partial.len()));
        }
        inbox.extend_from_slice(partial);
        self.inbox = Some(Box::new(inbox));
    }
}

/// Opens the whole records at the start of `bytes` into `out` from `written` on, advancing
/// `written` past each; returns how many bytes of `bytes` they took. `out` has room for them all:
/// a record's plaintext is shorter than the record.
fn open_records(
    recv: &mut Direction,
    bytes: &[u8],
    out: &mut [u8],
    written: &mut usize,
) -> Result<usize, SessionError> {
    let mut pos = 0;
    loop {
        let avail = &bytes[pos..];
        if avail.len() < HEADER_BYTES {
            return Ok(pos);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if !(TAG_BYTES..=MAX_RECORD_BYTES).contains(&len) {
            return Err(SessionError::BadLength(len));
        }
        if avail.len() < HEADER_BYTES + len {
            return Ok(pos);
        }
        // A record that fails leaves the nonce unused, as Noise does; the session ends anyway.
        let opened = match recv.nonce {
            u64::MAX => None,
            n => recv.cipher.decrypt(n, &[], &avail[HEADER_BYTES..HEADER_BYTES + len], &mut out[*written..]).ok(),
        };
        match opened {
            Some(n) => {
                recv.nonce += 1;
                *written += n;
            }
            None => return Err(SessionError::Decrypt),
        }
        pos += HEADER_BYTES + len;
    }
}

#[cfg(feature = "prefetch")]
impl Session {
    /// The boxed state an incoming record reads past the session itself (see [`crate::memory`]):
    /// both ciphers (the reply is sealed with the other) and a held partial record.
    pub(crate) fn memory(&self, f: crate::memory::Regions<'_>) {
        crate::memory::of(&*self.send.cipher, f);
        crate::memory::of(&*self.recv.cipher, f);
        if let Some(inbox) = &self.inbox {
            crate::memory::of(&**inbox, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{Handshake, Progress, StaticIdentity};
    use crate::identity::Ed25519Keys;
    use crate::random::Rng;

    /// A connected pair of sessions: (dialer's, acceptor's).
    fn pair() -> (Session, Session) {
        let (ka, kb) = (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2));
        let (mut ra, mut rb) = (Rng::new(1), Rng::new(2));
        let (ia, ib) = (StaticIdentity::new(&ka, &mut ra), StaticIdentity::new(&kb, &mut rb));
        let (mut a, m1) = Handshake::dial(&ka, &ia, &mut ra, "a", 0);
        let mut b = Handshake::accept(&kb, &ib, &mut rb, "b", 0);
        let Ok(Progress::Continue(m2)) = b.handle(&kb, &m1) else { panic!() };
        let Ok(Progress::Done(da)) = a.handle(&ka, &m2) else { panic!() };
        let Ok(Progress::Done(db)) = b.handle(&kb, &da.send) else { panic!() };
        (da.session, db.session)
    }

    #[test]
    fn any_chunking_of_any_sizes_round_trips() {
        let (mut a, mut b) = pair();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let mut wire = Vec::new();
        for msg in [&b"x"[..], &[], &big, b"tail"] {
            a.seal(msg, &mut wire).unwrap();
        }
        let mut plain = Vec::new();
        for piece in wire.chunks(997) {
            b.open(piece, &mut plain).unwrap();
            assert!(b.buffered() <= HEADER_BYTES + MAX_RECORD_BYTES + 997);
        }
        assert_eq!(plain, [&b"x"[..], &big, b"tail"].concat());
        assert!(b.inbox.is_none(), "an idle session keeps a buffer");
    }

    /// In place or not, the same records; and the two can follow each other on one session.
    #[test]
    fn sealing_in_place_writes_what_seal_writes() {
        let (mut a, mut b) = pair();
        let (mut c, mut d) = pair();
        let mut plain = Vec::new();
        for len in [
            0,
            1,
            100,
            TINY_SEAL_BYTES,
            TINY_SEAL_BYTES + 1,
            STACK_SEAL_BYTES,
            STACK_SEAL_BYTES + 1,
            MAX_PLAINTEXT,
            MAX_PLAINTEXT + 1,
            200_000,
        ] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let mut sealed = Vec::new();
            a.seal(&msg, &mut sealed).unwrap();
            let mut in_place = vec![0; HEADER_BYTES];
            in_place.extend_from_slice(&msg);
            c.seal_in_place(&mut in_place).unwrap();
            assert_eq!(in_place, sealed, "{len}");
            b.open(&sealed, &mut plain).unwrap();
            d.open(&in_place, &mut Vec::new()).unwrap();
        }
    }

    /// Records are Noise transport messages: a session and snow's own `TransportState`, from the
    /// two ends of one handshake, read each other.
    #[test]
    fn interoperates_with_snows_transport() {
        use crate::handshake::builder;
        use snow::resolvers::{CryptoResolver, DefaultResolver};
        let params: snow::params::NoiseParams = "Noise_XX_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
        let keys = Ed25519Keys::from_seed(1);
        let mut rng = Rng::new(1);
        let (ki, kr) = ([1u8; 32], [2u8; 32]);
        let mut i = builder(&keys, &mut rng).local_private_key(&ki).unwrap().build_initiator().unwrap();
        let mut r = builder(&keys, &mut rng).local_private_key(&kr).unwrap().build_responder().unwrap();
        let (mut buf, mut msg) = ([0u8; 1024], [0u8; 1024]);
        for turn in 0..3 {
            let (from, to) = if turn % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
            let n = from.write_message(&[], &mut msg).unwrap();
            to.read_message(&msg[..n], &mut buf).unwrap();
        }
        let (ik, rk) = i.dangerously_get_raw_split();
        let cipher = |key: &[u8; 32]| {
            let mut c = DefaultResolver.resolve_cipher(&params.cipher).unwrap();
            c.set(key);
            c
        };
        let mut ours = Session::new(cipher(&ik), cipher(&rk));
        let mut theirs = r.into_transport_mode().unwrap();
        for round in 0..3u8 {
            let text = vec![round; 100 + round as usize];
            let mut wire = Vec::new();
            ours.seal(&text, &mut wire).unwrap();
            let n = theirs.read_message(&wire[HEADER_BYTES..], &mut buf).unwrap();
            assert_eq!(&buf[..n], &text[..]);
            let n = theirs.write_message(&text, &mut msg).unwrap();
            let mut record = (n as u32).to_be_bytes().to_vec();
            record.extend_from_slice(&msg[..n]);
            let mut plain = Vec::new();
            ours.open(&record, &mut plain).unwrap();
            assert_eq!(plain, text);
        }
    }

    #[test]
    fn replayed_reordered_or_altered_records_fail() {
        let (mut a, _) = pair();
        let (mut r1, mut r2) = (Vec::new(), Vec::new());
        a.seal(b"one", &mut r1).unwrap();
        a.seal(b"two", &mut r2).unwrap();
        let open = |records: &[&[u8]]| {
            let (_, mut b) = pair();
            let mut plain = Vec::new();
            records.iter().try_for_each(|r| b.open(r, &mut plain))
        };
        assert_eq!(open(&[&r1, &r2]), Ok(()));
        assert_eq!(open(&[&r1, &r1]), Err(SessionError::Decrypt), "replay");
        assert_eq!(open(&[&r2]), Err(SessionError::Decrypt), "reorder or deletion");
        let mut altered = r1.clone();
        altered[6] ^= 0x20;
        assert_eq!(open(&[&altered]), Err(SessionError::Decrypt), "alteration");
        assert_eq!(open(&[&[0, 0, 0, 3, 1, 2, 3]]), Err(SessionError::BadLength(3)));
        assert_eq!(open(&[&[0xff, 0xff, 0xff, 0xff]]), Err(SessionError::BadLength(u32::MAX as usize)));
    }
}
