//! Per-connection rate limits whose rate and burst are kept once, in the node's `Config`.
//!
//! The same token bucket as `membership::TokenBucket` (and the same arithmetic, so a flood is
//! cut off at the same frame), but a connection holds only the two numbers that change: every
//! connection of a node shares one rate and one burst, and a simulator runs tens of thousands of
//! connections, so storing them per bucket would be pure repetition.

use crate::time::Time;

/// The state of one token bucket: tokens left and when they were counted.
#[derive(Clone, Copy, Debug)]
pub struct Tokens {
    tokens: f64,
    last: Time,
}

impl Tokens {
    /// A full bucket at `now`.
    pub fn full(burst: f64, now: Time) -> Tokens {
        Tokens { tokens: burst, last: now }
    }

    /// Takes one token if there is one, refilling at `rate` per second up to `burst`.
    pub fn take(&mut self, now: Time, (rate, burst): (f64, f64)) -> bool {
        let dt = now.since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::TokenBucket;
    use std::time::Duration;

    /// Step for step the same verdicts as the address book's bucket.
    #[test]
    fn agrees_with_token_bucket() {
        let limit = (3.0, 5.0);
        let start = Time::from_millis(1_000);
        let mut a = Tokens::full(limit.1, start);
        let mut b = TokenBucket::new(limit.0, limit.1, start);
        let mut now = start;
        for i in 0..200u64 {
            now = now + Duration::from_micros((i * 7919) % 400_000);
            assert_eq!(a.take(now, limit), b.take(now), "step {i}");
        }
    }
}
