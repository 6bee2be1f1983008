//! `handshake::Handshake` fed arbitrary messages (the frames decoded from the input), as the
//! accepting side.
//!
//! flags (byte 0) bit 0: an honest peer's `Hello` comes first, so arbitrary `Auth`s are checked
//! against a real key; bit 1 (with bit 0): then the honest `Auth`, so the rest arrives after the
//! handshake completed. The rest of the input is a frame stream.
//!
//! Checks: no panic; an honest handshake completes; a completed handshake names the honest peer.
//! Small on purpose: this module is being replaced by a Noise handshake.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2p_chat_core::handshake::{Handshake, Progress};
use p2p_chat_core::wire::{FrameDecoder, DEFAULT_MAX_FRAME_BYTES};
use p2p_chat_core::{Ed25519Keys, Keys};

/// Deriving a key costs about as much as a signature: done once, not per input.
fn keys() -> &'static (Ed25519Keys, Ed25519Keys) {
    static KEYS: OnceLock<(Ed25519Keys, Ed25519Keys)> = OnceLock::new();
    KEYS.get_or_init(|| (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2)))
}

fuzz_target!(|data: &[u8]| {
    let (flags, stream) = data.split_first().map_or((0, &[][..]), |(f, s)| (*f, s));
    let (me, peer) = keys();
    let mut hs = Handshake::new([7; 32]);

    let mut script = Vec::new();
    if flags & 1 != 0 {
        let mut theirs = Handshake::new([9; 32]);
        script.push(theirs.hello(peer, "peer", 7001));
        if flags & 2 != 0 {
            let Ok(Progress::Send(auth)) = theirs.handle(peer, hs.hello(me, "me", 7000)) else {
                panic!("the honest peer refused our Hello");
            };
            script.push(auth);
        }
    }
    let honest = script.len();
    let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    d.push(stream);
    script.extend(std::iter::from_fn(|| d.next_frame()).filter_map(Result::ok));

    for (i, msg) in script.into_iter().enumerate() {
        match hs.handle(me, msg) {
            Ok(Progress::Done(hello)) => assert_eq!(hello.public_key, peer.public_key(), "completed with an impostor"),
            Ok(Progress::Send(_)) => {}
            Err(e) => assert!(i >= honest, "the honest handshake failed: {e}"),
        }
    }
});
