//! The node's only source of randomness: a ChaCha8 stream seeded by the caller.
//!
//! Every random choice (gossip targets, nonces, jitter, chat ids) is drawn here, so a seed and the
//! same inputs replay a node exactly.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng as _, SeedableRng};

#[derive(Clone, Debug)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.0.fill_bytes(&mut b);
        b
    }

    /// Uniform in `0..n` (n > 0). Lemire's multiply-shift; the bias is below 2^-32 for our sizes.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.0.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Moves `k` uniformly chosen elements to the front (partial Fisher-Yates) and returns them.
    pub fn choose_k<'a, T>(&mut self, items: &'a mut [T], k: usize) -> &'a [T] {
        let k = k.min(items.len());
        for i in 0..k {
            let j = i + self.below(items.len() - i);
            items.swap(i, j);
        }
        &items[..k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        assert!((0..100).all(|_| a.u64() == b.u64()));
        assert_ne!(Rng::new(6).u64(), Rng::new(5).u64());
    }

    #[test]
    fn choose_k_picks_distinct() {
        let mut r = Rng::new(1);
        let mut v: Vec<u32> = (0..10).collect();
        let mut picked = r.choose_k(&mut v, 4).to_vec();
        picked.sort();
        picked.dedup();
        assert_eq!(picked.len(), 4);
        assert_eq!(r.choose_k(&mut v, 50).len(), 10);
    }
}
