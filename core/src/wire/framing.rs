//! Framing: a byte stream cut into frames, each a 4-byte big-endian payload length, then the
//! payload (the protocol version, then one message). Owns the length prefix, the frame size limit
//! and the stream decoders (`FrameDecoder`, and `Frames`, what each connection of a node holds);
//! what a payload holds is `codec`'s.

use std::sync::Arc;

use super::codec::{decode_payload_with, ihave_in_place, no_known_chats};
use super::{Message, WireError, PROTOCOL_VERSION};
use crate::chat::{Chat, ChatId};

/// Bytes of the length prefix that starts every frame.
pub(super) const HEADER_BYTES: usize = 4;
/// What a decoder with nothing pending may keep allocated.
const IDLE_BUF_BYTES: usize = 4096;

/// Room for the length prefix, then the version: the start of every frame `out` gets.
pub(super) fn start_frame(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; HEADER_BYTES]);
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
}

/// Writes the length prefix of the frame begun at `start`, or takes the frame back out if it is
/// over `max_frame_bytes`.
pub(super) fn finish_frame(out: &mut Vec<u8>, start: usize, max_frame_bytes: usize) -> Result<(), WireError> {
    let len = out.len() - start - HEADER_BYTES;
    if len > max_frame_bytes {
        out.truncate(start);
        return Err(WireError::TooLarge { len, max: max_frame_bytes });
    }
    out[start..start + HEADER_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// A frame read by [`Frames::decode_each_with`]. `IHave` is the most frequent frame of all, and
/// its ids are only looked at once each: left in the bytes they arrived in, they need no list
/// (an allocation and a free per frame). Only frames read where they lie are left so; one
/// buffered across reads comes as a `Message`.
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    Message(Result<Message, WireError>),
    IHave(Ids<'a>),
}

/// The ids of an `IHave`, as they are on the wire: 16 bytes each.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ids<'a>(pub(super) &'a [u8]);

impl<'a> Ids<'a> {
    pub(crate) fn len(&self) -> usize {
        self.0.len() / size_of::<ChatId>()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = ChatId> + 'a {
        self.0.chunks_exact(size_of::<ChatId>()).map(|id| ChatId(id.try_into().expect("16 bytes")))
    }
}

/// Splits a byte stream, fed in arbitrary chunks, into messages.
///
/// Memory: at most one partial frame (bounded by `max_frame_bytes`) plus the last chunk pushed.
#[derive(Debug)]
pub struct FrameDecoder {
    frames: Frames,
    /// A frame's length is a `u32`, so a larger limit is no limit.
    max_frame_bytes: u32,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder { frames: Frames::default(), max_frame_bytes: limit(max_frame_bytes) }
    }

    /// Adds received bytes. Ignored after a fatal error.
    pub fn push(&mut self, bytes: &[u8]) {
        self.frames.push(bytes);
    }

    /// Decodes every whole frame of what was buffered followed by `bytes`, in order, into `out`
    /// (a fatal error comes last: nothing follows it, ever), and keeps the partial frame at the
    /// end. Same frames as `push` then `next_frame`, but bytes that make whole frames are decoded
    /// where they lie instead of being copied, and a connection between frames holds no buffer
    /// at all: thousands of simulated connections, or many idle real ones, cost nothing here.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<Result<Message, WireError>>) {
        self.decode_each(bytes, |frame| out.push(frame));
    }

    /// `decode`, handing each frame to `each` as it is read: a caller that mostly gets one frame
    /// per read need not build a list for it.
    pub fn decode_each(&mut self, bytes: &[u8], each: impl FnMut(Result<Message, WireError>)) {
        self.frames.decode_each(bytes, self.max_frame_bytes, each);
    }

    /// Bytes held that do not yet make a whole frame.
    pub fn buffered(&self) -> usize {
        self.frames.buffered()
    }

    /// The next whole message, `None` when more bytes are needed. After a fatal error it returns
    /// `None` forever and holds no bytes.
    pub fn next_frame(&mut self) -> Option<Result<Message, WireError>> {
        self.frames.next_frame(self.max_frame_bytes)
    }
}

/// A frame size limit in the four bytes a frame's length takes.
pub(crate) fn limit(max_frame_bytes: usize) -> u32 {
    u32::try_from(max_frame_bytes).unwrap_or(u32::MAX)
}

/// A [`FrameDecoder`] without its limit, which is given at each call instead: what a node's
/// connections hold, as they all share one limit (`Config::max_frame_bytes`).
///
/// One word: between frames (nearly always, as records carry whole frames) it holds nothing,
/// the partial frame, its read position and the failed flag being boxed together. Every
/// connection of a simulator's hundred thousand nodes holds one, where a `Vec`, a position, the
/// limit and the flag took five words.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    pending: Option<Box<Pending>>,
}

/// Bytes pushed that are not decoded yet, `buf[start..]`; or, once `failed`, none ever again.
#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    start: usize,
    failed: bool,
}

impl Frames {
    fn failed(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.failed)
    }

    /// Adds received bytes. Ignored after a fatal error.
    fn push(&mut self, bytes: &[u8]) {
        let p = self.pending.get_or_insert_with(Box::default);
        if p.failed {
            return;
        }
        if p.start == p.buf.len() {
            // Everything so far was decoded: an idle connection should not keep the largest burst
            // it ever received.
            if p.buf.capacity() > IDLE_BUF_BYTES {
                p.buf = Vec::new();
            } else {
                p.buf.clear();
            }
            p.start = 0;
        } else if p.start > p.buf.len() / 2 {
            p.buf.drain(..p.start);
            p.start = 0;
        }
        p.buf.extend_from_slice(bytes);
    }

    /// [`FrameDecoder::decode_each`] with the limit `max`.
    pub(crate) fn decode_each(&mut self, bytes: &[u8], max: u32, mut each: impl FnMut(Result<Message, WireError>)) {
        self.decode_each_with(bytes, max, &no_known_chats, |frame| {
            each(match frame {
                Frame::Message(m) => m,
                Frame::IHave(ids) => Ok(Message::IHave { ids: ids.iter().collect() }),
            })
        });
    }

    /// `decode_each`, reading chats as `decode_payload_with` does, and leaving an `IHave` read
    /// where it lies in `bytes` (see [`Frame`]).
    pub(crate) fn decode_each_with<'b>(
        &mut self,
        bytes: &'b [u8],
        max: u32,
        known: &impl Fn(&ChatId) -> Option<Arc<Chat>>,
        mut each: impl FnMut(Frame<'b>),
    ) {
        if self.failed() {
            return;
        }
        if self.buffered() > 0 {
            self.push(bytes);
            while let Some(frame) = self.next_frame_with(max, known) {
                each(Frame::Message(frame));
            }
        } else {
            let mut rest = bytes;
            while let Some(payload) = self.payload_at(max, &mut rest) {
                each(match payload {
                    Err(e) => Frame::Message(Err(e)),
                    Ok(p) => match ihave_in_place(p) {
                        Some(ids) => Frame::IHave(ids),
                        None => Frame::Message(self.decode(p, known)),
                    },
                });
            }
            if self.failed() {
                return;
            }
            if !rest.is_empty() {
                let p = self.pending.get_or_insert_with(Box::default);
                p.buf.clear();
                p.start = 0;
                p.buf.extend_from_slice(rest);
            }
        }
        if self.buffered() == 0 && !self.failed() {
            self.pending = None;
        }
    }

    /// Takes the first whole frame off `avail`, if there is one.
    fn frame_at(
        &mut self,
        max: u32,
        avail: &mut &[u8],
        known: &impl Fn(&ChatId) -> Option<Arc<Chat>>,
    ) -> Option<Result<Message, WireError>> {
        Some(match self.payload_at(max, avail)? {
            Ok(payload) => self.decode(payload, known),
            Err(e) => Err(e),
        })
    }

    /// Decodes a frame's payload; a fatal error ends the stream.
    fn decode(&mut self, payload: &[u8], known: &impl Fn(&ChatId) -> Option<Arc<Chat>>) -> Result<Message, WireError> {
        match decode_payload_with(payload, known) {
            Err(e) if e.is_fatal() => Err(self.fail(e)),
            other => other,
        }
    }

    /// Takes the payload of the first whole frame off `avail`, if there is one: an error if its
    /// length is over the limit (fatal: the stream has failed).
    fn payload_at<'b>(&mut self, max: u32, avail: &mut &'b [u8]) -> Option<Result<&'b [u8], WireError>> {
        if self.failed() || avail.len() < HEADER_BYTES {
            return None;
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
        if len > max {
            let (len, max) = (len as usize, max as usize);
            return Some(Err(self.fail(WireError::TooLarge { len, max })));
        }
        let len = len as usize;
        if avail.len() < HEADER_BYTES + len {
            return None;
        }
        let payload = &avail[HEADER_BYTES..HEADER_BYTES + len];
        *avail = &avail[HEADER_BYTES + len..];
        Some(Ok(payload))
    }

    fn buffered(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.buf.len() - p.start)
    }

    fn next_frame(&mut self, max: u32) -> Option<Result<Message, WireError>> {
        self.next_frame_with(max, &no_known_chats)
    }

    fn next_frame_with(
        &mut self,
        max: u32,
        known: &impl Fn(&ChatId) -> Option<Arc<Chat>>,
    ) -> Option<Result<Message, WireError>> {
        let mut p = self.pending.take()?;
        if p.failed {
            self.pending = Some(p);
            return None;
        }
        let mut avail = &p.buf[p.start..];
        let before = avail.len();
        let frame = self.frame_at(max, &mut avail, known);
        let taken = before - avail.len();
        if !self.failed() {
            p.start += taken;
            self.pending = Some(p);
        }
        frame
    }

    /// Drops what is buffered and refuses everything from now on. The flag is kept in the box
    /// (a few bytes, after an error that ends the connection) so that the decoder stays one word.
    fn fail(&mut self, e: WireError) -> WireError {
        self.pending = Some(Box::new(Pending { buf: Vec::new(), start: 0, failed: true }));
        e
    }

    /// Whether the decoder holds a buffer for bytes (tests: an idle one should not).
    #[cfg(test)]
    fn holds_buffer(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.failed)
    }
}

#[cfg(feature = "prefetch")]
impl Frames {
    /// A held partial frame, which the next bytes extend (see [`crate::memory`]).
    pub(crate) fn memory(&self, f: crate::memory::Regions<'_>) {
        if let Some(pending) = &self.pending {
            crate::memory::of(&**pending, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::arbitrary::AnyMessage;
    use super::super::{encode, encode_into, DEFAULT_MAX_FRAME_BYTES};
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    #[test]
    fn every_message_round_trips() {
        fn prop(m: AnyMessage) -> bool {
            let bytes = encode(&m.0);
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            d.push(&bytes);
            matches!(d.next_frame(), Some(Ok(ref back)) if *back == m.0) && d.next_frame().is_none()
        }
        QuickCheck::new().tests(300).quickcheck(prop as fn(AnyMessage) -> bool);
    }

    /// Many frames, cut at arbitrary points, come out whole and in order.
    #[test]
    fn any_chunking_yields_the_same_frames() {
        fn prop(msgs: Vec<AnyMessage>, cuts: Vec<u8>) -> bool {
            let mut stream = Vec::new();
            for m in &msgs {
                encode_into(&m.0, &mut stream, DEFAULT_MAX_FRAME_BYTES).unwrap();
            }
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            let mut out = Vec::new();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = (cuts.get(i).copied().unwrap_or(7) as usize % 40 + 1).min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                i += 1;
                while let Some(f) = d.next_frame() {
                    out.push(f.unwrap());
                }
            }
            out.len() == msgs.len() && out.iter().zip(&msgs).all(|(a, b)| *a == b.0)
        }
        QuickCheck::new().tests(200).quickcheck(prop as fn(Vec<AnyMessage>, Vec<u8>) -> bool);
    }

    /// Arbitrary bytes in arbitrary chunks never panic, and memory stays bounded.
    #[test]
    fn garbage_never_panics() {
        fn prop(chunks: Vec<Vec<u8>>) -> TestResult {
            let max = 1024;
            let mut d = FrameDecoder::new(max);
            for c in &chunks {
                d.push(c);
                while let Some(r) = d.next_frame() {
                    let _ = r;
                }
                if d.buffered() > max + 4 + c.len() {
                    return TestResult::failed();
                }
            }
            TestResult::passed()
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Vec<Vec<u8>>) -> TestResult);
    }

    /// `decode` (frames decoded in place) gives exactly what `push` then `next_frame` gives, for
    /// valid frames, garbage and anything between, cut anywhere; and it holds no buffer between
    /// frames.
    #[test]
    fn decode_in_place_matches_push_and_next_frame() {
        fn prop(msgs: Vec<AnyMessage>, garbage: Vec<u8>, at: u8, cuts: Vec<u8>) -> bool {
            let mut stream = Vec::new();
            for m in &msgs {
                encode_into(&m.0, &mut stream, DEFAULT_MAX_FRAME_BYTES).unwrap();
            }
            let at = (at as usize).min(stream.len());
            stream.splice(at..at, garbage);
            let (mut a, mut b) = (FrameDecoder::new(2048), FrameDecoder::new(2048));
            let (mut via_push, mut via_decode) = (Vec::new(), Vec::new());
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = (cuts.get(i).copied().unwrap_or(50) as usize % 300 + 1).min(rest.len());
                a.push(&rest[..n]);
                while let Some(f) = a.next_frame() {
                    via_push.push(f);
                }
                b.decode(&rest[..n], &mut via_decode);
                if b.buffered() == 0 && b.frames.holds_buffer() {
                    return false;
                }
                rest = &rest[n..];
                i += 1;
            }
            via_push == via_decode && a.buffered() == b.buffered()
        }
        QuickCheck::new().tests(1000).quickcheck(prop as fn(Vec<AnyMessage>, Vec<u8>, u8, Vec<u8>) -> bool);
    }

    /// Valid frames with arbitrary payload bytes: an error value, never a panic, and the stream
    /// goes on (a malformed frame is skipped).
    #[test]
    fn framed_garbage_is_skipped() {
        fn prop(payload: Vec<u8>) -> bool {
            let mut stream = Vec::new();
            stream.extend_from_slice(&((payload.len() + 2) as u32).to_be_bytes());
            stream.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
            stream.extend_from_slice(&payload);
            stream.extend_from_slice(&encode(&Message::Ping { nonce: 9 }));
            let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
            d.push(&stream);
            let _first = d.next_frame();
            matches!(d.next_frame(), Some(Ok(Message::Ping { nonce: 9 })))
        }
        QuickCheck::new().tests(2000).quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn oversized_length_fails_before_buffering() {
        let mut d = FrameDecoder::new(1000);
        d.push(&[0, 0, 0x10, 0]); // 4096 bytes announced
        assert_eq!(d.next_frame(), Some(Err(WireError::TooLarge { len: 4096, max: 1000 })));
        d.push(&[0; 5000]);
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.next_frame(), None);
    }

    #[test]
    fn other_version_is_a_clear_fatal_error() {
        let mut frame = encode(&Message::PeerRequest);
        frame[4..6].copy_from_slice(&9u16.to_be_bytes());
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        d.push(&frame);
        let err = d.next_frame().unwrap().unwrap_err();
        assert!(err.is_fatal());
        assert_eq!(
            err.to_string(),
            format!("peer speaks protocol version 9, this node speaks version {}", super::super::PROTOCOL_VERSION)
        );
    }
}
