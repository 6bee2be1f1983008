//! `wire::FrameDecoder` on arbitrary bytes cut at arbitrary points (see the layout in `src/lib.rs`).
//!
//! flags bit 0: a 1 KiB frame limit instead of the default 256 KiB, so `TooLarge` is reachable.
//!
//! Checks: no panic; after draining, no more than one partial frame buffered (under the limit);
//! after a fatal error nothing buffered and nothing more decoded; the chunked stream decodes to
//! exactly what the whole stream in one push decodes to, and to what `decode` (frames decoded in
//! place, as the node reads them) gives for the same chunks; every decoded message re-encodes to a
//! frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_chat_core::wire::{self, FrameDecoder, DEFAULT_MAX_FRAME_BYTES};
use p2p_chat_fuzz::FuzzInput;

const HEADER_BYTES: usize = 4;

fuzz_target!(|data: &[u8]| {
    let input = FuzzInput::parse(data);
    let max = if input.flags & 1 != 0 { 1024 } else { DEFAULT_MAX_FRAME_BYTES };

    let mut d = FrameDecoder::new(max);
    let mut chunked = Vec::new();
    let mut failed = false;
    for chunk in input.chunks() {
        d.push(chunk);
        while let Some(r) = d.next_frame() {
            assert!(!failed, "a frame decoded after a fatal error");
            failed = matches!(&r, Err(e) if e.is_fatal());
            chunked.push(r);
        }
        if failed {
            assert_eq!(d.buffered(), 0, "memory held after a fatal error");
        } else {
            assert!(d.buffered() < HEADER_BYTES + max, "{} bytes buffered, limit {max}", d.buffered());
        }
    }

    let mut in_place = FrameDecoder::new(max);
    let mut decoded = Vec::new();
    for chunk in input.chunks() {
        in_place.decode(chunk, &mut decoded);
    }
    assert_eq!(chunked, decoded, "decode in place differs from push and next_frame");

    let mut whole = FrameDecoder::new(max);
    whole.push(input.stream);
    let at_once: Vec<_> = std::iter::from_fn(|| whole.next_frame()).collect();
    assert_eq!(chunked, at_once, "chunking changed what was decoded");

    for msg in chunked.iter().filter_map(|r| r.as_ref().ok()) {
        let frame = wire::encode(msg);
        let mut again = FrameDecoder::new(usize::MAX);
        again.push(&frame);
        match again.next_frame() {
            Some(Ok(back)) => assert_eq!(&back, msg, "re-encoded message decodes differently"),
            other => panic!("re-encoded {} does not decode: {other:?}", msg.kind()),
        }
        assert!(again.next_frame().is_none() && again.buffered() == 0);
    }
});
