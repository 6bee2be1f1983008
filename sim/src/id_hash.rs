//! Hashing for the simulator's tables keyed by chat id.
//!
//! Every delivery and every chat a node keeps is looked up by id (`Metrics`, `SharedChats`), and
//! SipHash, built to resist keys chosen by an attacker, cost more than the rest of the lookup. An id
//! is a UUIDv7, ten of its sixteen bytes random, so folding its two halves is enough here. Tables
//! using it are only looked up, never iterated, so the hash cannot reach a run's outcome.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use p2p_chat_core::ChatId;

pub type IdMap<V> = HashMap<ChatId, V, BuildHasherDefault<IdHasher>>;

#[derive(Clone, Copy, Default)]
pub struct IdHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(word)).wrapping_mul(MIX);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(23) ^ n as u64).wrapping_mul(MIX);
    }

    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits and its tag from the high ones; a product's
        // low bits see only the low bits of what was multiplied, so fold the high half down.
        self.0 ^ (self.0 >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_buckets() {
        let mut buckets = [0u32; 64];
        for i in 0..6400u64 {
            let id = ChatId::new_v7(
                1_800_000_000_000 + i / 8,
                &(i * 7919).to_le_bytes().repeat(2)[..10].try_into().unwrap(),
            );
            let mut h = IdHasher::default();
            std::hash::Hash::hash(&id, &mut h);
            buckets[(h.finish() % 64) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| (50..150).contains(&b)), "{buckets:?}");
    }
}
