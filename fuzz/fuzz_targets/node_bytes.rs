//! A core `Node` receiving arbitrary bytes on one inbound connection, in the chunks the input asks
//! for (see the layout in `src/lib.rs`), draining `poll_output` after every input.
//!
//! flags bit 0: first an honest peer completes the Noise handshake, and every chunk after it is
//!              sealed in that peer's session, so the bytes reach the protocol logic on an
//!              established, authenticated connection (unsealed, they would only test decryption).
//! flags bit 1: one second passes between chunks, and `Input::Timeout` is fed whenever
//!              `poll_timeout` says it is due (pings, syncs, handshake and want timeouts).
//!
//! Checks: no panic; the heap (counted by a global allocator) stays within a small multiple of the
//! bytes received, both after each input and at its peak while processing it.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use p2p_chat_core::Input;
use p2p_chat_fuzz::{drain, victim_with_conn, CountingAlloc, FuzzInput};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// What the node may keep per byte received (chats, ids waiting for repair, map overhead), plus a
/// constant; and what it may hold briefly while decoding (bincode/serde pre-allocate a claimed
/// sequence up to 1 MiB before finding it truncated).
const KEEP_PER_BYTE: usize = 64;
const KEEP_BASE: usize = 256 * 1024;
const TRANSIENT: usize = 4 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let input = FuzzInput::parse(data);
    let (mut node, conn, mut peer) = victim_with_conn(input.flags & 1 != 0);
    let base = CountingAlloc::live();
    CountingAlloc::reset_peak();

    let mut now = p2p_chat_fuzz::t0();
    let mut fed = 0usize;
    for chunk in input.chunks() {
        if input.flags & 2 != 0 {
            now = now + Duration::from_secs(1);
            for _ in 0..4 {
                match node.poll_timeout() {
                    Some((t, _)) if t <= now => {
                        node.handle_input(now, Input::Timeout);
                        drain(&mut node, None);
                    }
                    _ => break,
                }
            }
        }
        match peer.as_mut() {
            Some(p) => {
                let sealed = p.seal(chunk).expect("a fresh session seals");
                node.handle_input(now, Input::Received(conn, &sealed));
            }
            None => node.handle_input(now, Input::Received(conn, chunk)),
        }
        drain(&mut node, None);
        fed += chunk.len();

        let keep = KEEP_BASE + KEEP_PER_BYTE * fed;
        let live = CountingAlloc::live().saturating_sub(base);
        assert!(live <= keep, "{live} bytes held after receiving {fed} bytes (bound {keep})");
        let peak = CountingAlloc::peak().saturating_sub(base);
        assert!(peak <= keep + TRANSIENT, "peak {peak} bytes after receiving {fed} bytes");
    }
});
