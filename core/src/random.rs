//! The node's only source of randomness: a ChaCha8 stream seeded by the caller.
//!
//! Every random choice (gossip targets, nonces, jitter, chat ids) is drawn here, so a seed and the
//! same inputs replay a node exactly.
//!
//! The stream is `rand_chacha`'s `ChaCha8Rng::seed_from_u64`, word for word (a test checks), made
//! here with one block of buffer instead of its four: 112 bytes a node instead of 304, in a
//! simulator of a hundred thousand nodes. Words are used in order and never skipped, except the
//! unused bytes of the last word of a byte fill, as `rand_core`'s block RNG does.

/// ChaCha's constant, "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
const BLOCK_WORDS: usize = 16;

#[derive(Clone)]
pub struct Rng {
    key: [u32; 8],
    /// The block to generate next (the stream id, the last two words of the state, is 0).
    counter: u64,
    block: [u32; BLOCK_WORDS],
    /// Words of `block` already used; `BLOCK_WORDS` when it is spent.
    used: u8,
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rng").finish_non_exhaustive()
    }
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // `rand_core`'s `seed_from_u64`: the 32-byte seed is eight outputs of a PCG32.
        let mut state = seed;
        let key = std::array::from_fn(|_| {
            const MUL: u64 = 6_364_136_223_846_793_005;
            const INC: u64 = 11_634_580_027_462_260_723;
            state = state.wrapping_mul(MUL).wrapping_add(INC);
            let s = state;
            let xorshifted = (((s >> 18) ^ s) >> 27) as u32;
            xorshifted.rotate_right((s >> 59) as u32)
        });
        Rng { key, counter: 0, block: [0; BLOCK_WORDS], used: BLOCK_WORDS as u8 }
    }

    /// The next word of the stream.
    fn word(&mut self) -> u32 {
        if usize::from(self.used) == BLOCK_WORDS {
            self.refill();
        }
        let w = self.block[usize::from(self.used)];
        self.used += 1;
        w
    }

    /// ChaCha with 8 rounds: block `counter` of the stream.
    ///
    /// Kept out of line: one word in sixteen needs it, and inlined into `word` its sixteen live
    /// words made every call save and restore registers, which cost more than the block itself.
    #[inline(never)]
    fn refill(&mut self) {
        let block = chacha8_block(&self.key, self.counter);
        self.block = block;
        self.counter = self.counter.wrapping_add(1);
        self.used = 0;
    }

    pub fn u64(&mut self) -> u64 {
        let lo = self.word();
        let hi = self.word();
        (u64::from(hi) << 32) | u64::from(lo)
    }

    /// Whole words, little-endian; the unused bytes of a last partial word are dropped.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for chunk in b.chunks_mut(4) {
            let w = self.word().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
        b
    }

    /// Uniform in `0..n` (n > 0). Lemire's multiply-shift; the bias is below 2^-32 for our sizes.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
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

/// The state ChaCha starts block `counter` from (the stream id, its last two words, is 0).
fn initial_state(key: &[u32; 8], counter: u64) -> [u32; BLOCK_WORDS] {
    let k = key;
    [
        SIGMA[0],
        SIGMA[1],
        SIGMA[2],
        SIGMA[3],
        k[0],
        k[1],
        k[2],
        k[3],
        k[4],
        k[5],
        k[6],
        k[7],
        counter as u32,
        (counter >> 32) as u32,
        0,
        0,
    ]
}

/// One ChaCha8 block, portable (RFC 7539's quarter round, eight rounds).
fn chacha8_block(key: &[u32; 8], counter: u64) -> [u32; BLOCK_WORDS] {
    let input = initial_state(key, counter);
    let mut x = input;
    let quarter = |x: &mut [u32; BLOCK_WORDS], a: usize, b: usize, c: usize, d: usize| {
        x[a] = x[a].wrapping_add(x[b]);
        x[d] = (x[d] ^ x[a]).rotate_left(16);
        x[c] = x[c].wrapping_add(x[d]);
        x[b] = (x[b] ^ x[c]).rotate_left(12);
        x[a] = x[a].wrapping_add(x[b]);
        x[d] = (x[d] ^ x[a]).rotate_left(8);
        x[c] = x[c].wrapping_add(x[d]);
        x[b] = (x[b] ^ x[c]).rotate_left(7);
    };
    for _ in 0..4 {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    for (x, i) in x.iter_mut().zip(input) {
        *x = x.wrapping_add(i);
    }
    x
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

    /// The stream is `rand_chacha`'s, however it is drawn: words, bytes in any lengths, across
    /// block boundaries.
    #[test]
    fn same_stream_as_rand_chacha() {
        use rand_core::{Rng as _, SeedableRng};
        for seed in [0, 1, 5, u64::MAX, 0x9e37_79b9_7f4a_7c15] {
            let (mut ours, mut theirs) = (Rng::new(seed), rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            for i in 0..2000u32 {
                match i % 5 {
                    0 | 1 => assert_eq!(ours.u64(), theirs.next_u64()),
                    2 => {
                        let mut b = [0u8; 32];
                        theirs.fill_bytes(&mut b);
                        assert_eq!(ours.bytes::<32>(), b);
                    }
                    3 => {
                        let mut b = [0u8; 10];
                        theirs.fill_bytes(&mut b);
                        assert_eq!(ours.bytes::<10>(), b);
                    }
                    _ => {
                        let mut b = [0u8; 3];
                        theirs.fill_bytes(&mut b);
                        assert_eq!(ours.bytes::<3>(), b);
                    }
                }
            }
        }
        assert!(std::mem::size_of::<Rng>() <= 112);
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
