//! The Noise handshake (`handshake::Handshake`) fed arbitrary bytes in arbitrary chunks, on either
//! side, optionally after the honest peer's first message.
//!
//! flags (byte 0) bit 0: we are the dialer (else the acceptor); bit 1: the honest peer's message
//! comes first (the dialer's `-> e`, or the acceptor's reply to ours), so the arbitrary bytes land
//! in the later, encrypted stages. Byte 1: chunk size - 1. The rest: the bytes.
//!
//! Checks: no panic; a finished handshake names the honest peer and nobody else (arbitrary bytes
//! cannot carry a valid binding for another key); after an error nothing more is fed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2p_chat_core::handshake::{Handshake, Progress, StaticIdentity};
use p2p_chat_core::random::Rng;
use p2p_chat_core::{Ed25519Keys, Keys};

struct Fixture {
    me: Ed25519Keys,
    me_static: StaticIdentity,
    peer: Ed25519Keys,
    peer_static: StaticIdentity,
}

/// Keys and their bindings cost a signature each: made once.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (me, peer) = (Ed25519Keys::from_seed(1), Ed25519Keys::from_seed(2));
        let me_static = StaticIdentity::new(&me, &mut Rng::new(1));
        let peer_static = StaticIdentity::new(&peer, &mut Rng::new(2));
        Fixture { me, me_static, peer, peer_static }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (flags, rest) = data.split_first().map_or((0, &[][..]), |(a, b)| (*a, b));
    let (chunk, bytes) = rest.split_first().map_or((1, &[][..]), |(a, b)| (*a as usize + 1, b));
    let dialer = flags & 1 != 0;
    let mut rng = Rng::new(3);
    let mut hs;
    let mut script: Vec<u8> = Vec::new();
    if dialer {
        let (h, first) = Handshake::dial(&f.me, &f.me_static, &mut rng, "me", 7000);
        hs = h;
        if flags & 2 != 0 {
            let mut theirs = Handshake::accept(&f.peer, &f.peer_static, &mut Rng::new(4), "peer", 7001);
            let Ok(Progress::Continue(reply)) = theirs.handle(&f.peer, &first) else {
                panic!("the honest acceptor refused our first message")
            };
            script.extend(reply);
        }
    } else {
        hs = Handshake::accept(&f.me, &f.me_static, &mut rng, "me", 7000);
        if flags & 2 != 0 {
            let (_, first) = Handshake::dial(&f.peer, &f.peer_static, &mut Rng::new(4), "peer", 7001);
            script.extend(first);
        }
    }
    script.extend_from_slice(bytes);
    for piece in script.chunks(chunk) {
        match hs.handle(&f.me, piece) {
            Ok(Progress::Continue(_)) => {}
            Ok(Progress::Done(done)) => {
                assert_eq!(done.hello.public_key, f.peer.public_key(), "finished with an impostor");
                return;
            }
            Err(_) => return,
        }
    }
});
