//! Shared pieces of the fuzz targets: the input layout, the node under test, and a counting
//! allocator. Kept out of `fuzz_targets/` so the seed-corpus generator (`examples/seed_corpus.rs`)
//! writes exactly the layout the targets read.
//!
//! ## Input layout (`frame_decoder`, `node_bytes`)
//!
//! ```text
//! byte 0      flags (meaning per target)
//! byte 1      n: how many chunk-length bytes follow
//! n bytes     chunk lengths: each byte b means a chunk of b + 1 bytes, used in a cycle
//! rest        the byte stream, pushed chunk by chunk (in one piece when n = 0)
//! ```
//!
//! Deriving the cuts from the input lets libFuzzer steer where frames are split, instead of a
//! random generator it cannot see.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use p2p_chat_core::testing::Client;
use p2p_chat_core::{Config, ConnId, Ed25519Keys, Input, Node, Output, Time};

/// A fixed wall-clock time for every node (2027-01-15), so chat ids made for the seeds are fresh.
pub const T0_MS: u64 = 1_800_000_000_000;

pub fn t0() -> Time {
    Time::from_millis(T0_MS)
}

/// An input split per the layout above.
pub struct FuzzInput<'a> {
    pub flags: u8,
    cuts: &'a [u8],
    pub stream: &'a [u8],
}

impl<'a> FuzzInput<'a> {
    pub fn parse(data: &'a [u8]) -> FuzzInput<'a> {
        let flags = data.first().copied().unwrap_or(0);
        let n = data.get(1).copied().unwrap_or(0) as usize;
        let rest = data.get(2..).unwrap_or(&[]);
        let (cuts, stream) = rest.split_at(n.min(rest.len()));
        FuzzInput { flags, cuts, stream }
    }

    /// The stream in the chunks the input asks for.
    pub fn chunks(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let mut rest = self.stream;
        let mut i = 0;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let n = if self.cuts.is_empty() { rest.len() } else { self.cuts[i % self.cuts.len()] as usize + 1 };
            i += 1;
            let (chunk, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            Some(chunk)
        })
    }

    /// The inverse of `parse`, for the seed generator.
    pub fn build(flags: u8, cuts: &[u8], stream: &[u8]) -> Vec<u8> {
        assert!(cuts.len() <= 255);
        let mut v = vec![flags, cuts.len() as u8];
        v.extend_from_slice(cuts);
        v.extend_from_slice(stream);
        v
    }
}

// ----- the node under test -----

pub fn victim_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 7000))
}

/// Where the inbound connection seems to come from (the honest peer's ephemeral port).
pub fn remote_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 40000))
}

pub const VICTIM_KEY_SEED: u64 = 1;
pub const HONEST_KEY_SEED: u64 = 2;

fn victim_node() -> Node {
    let config = Config { username: "victim".into(), listen_port: 7000, ..Config::default() };
    Node::new(config, Box::new(Ed25519Keys::from_seed(VICTIM_KEY_SEED)), 42, t0())
}

/// Drains every output, as the run-loop contract requires; returns what was transmitted on `conn`.
pub fn drain(node: &mut Node, conn: Option<ConnId>) -> Vec<u8> {
    let mut sent = Vec::new();
    while let Some(out) = node.poll_output() {
        if let Output::Transmit { conn: c, bytes } = out {
            if Some(c) == conn {
                sent.extend_from_slice(&bytes);
            }
        }
    }
    sent
}

/// A fresh victim node with one inbound connection, optionally past an honest Noise handshake with
/// a peer of identity `HONEST_KEY_SEED` (the core's test client). Then that peer is returned, and a
/// target seals its bytes with it, so they reach the node's protocol logic rather than failing
/// decryption.
pub fn victim_with_conn(handshaken: bool) -> (Node, ConnId, Option<Client>) {
    let now = t0();
    let mut node = victim_node();
    drain(&mut node, None);
    let conn = node.accept(now, remote_addr()).expect("a fresh node accepts");
    drain(&mut node, None);
    if !handshaken {
        return (node, conn, None);
    }
    let (mut peer, first) = Client::dial(HONEST_KEY_SEED, "honest");
    node.handle_input(now, Input::Received(conn, &first));
    let reply = peer.receive(&drain(&mut node, Some(conn))).expect("the victim's handshake reply");
    node.handle_input(now, Input::Received(conn, &reply));
    // Opened to keep the peer's receiving nonce in step with what the victim sealed.
    peer.receive(&drain(&mut node, Some(conn))).expect("the victim seals correctly");
    assert_eq!(node.peers().len(), 1, "the honest handshake did not bring the peer up");
    (node, conn, Some(peer))
}

// ----- memory accounting -----

/// Counts the bytes the Rust heap holds, and the peak since the last `reset_peak`.
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl CountingAlloc {
    pub fn live() -> usize {
        LIVE.load(Ordering::Relaxed)
    }

    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    pub fn reset_peak() {
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn grew(n: usize) {
        let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            Self::grew(new_size);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips_and_cuts_cycle() {
        let data = FuzzInput::build(3, &[0, 2], b"abcdefgh");
        let input = FuzzInput::parse(&data);
        assert_eq!(input.flags, 3);
        let chunks: Vec<&[u8]> = input.chunks().collect();
        assert_eq!(chunks, [&b"a"[..], b"bcd", b"e", b"fgh"]);
        assert_eq!(FuzzInput::parse(&[]).chunks().count(), 0);
    }

    #[test]
    fn the_honest_session_brings_the_peer_up() {
        let (node, _, peer) = victim_with_conn(true);
        assert!(peer.is_some());
        assert_eq!(node.peers()[0].username, "honest");
    }
}
