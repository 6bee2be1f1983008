//! Rate limits: a token bucket per connection (chat and control frames) and one for the node's own
//! dials. A bucket holds only the two numbers that change; its rate and burst are kept once, in the
//! node's `Config`, because every connection of a node shares them and a simulator runs tens of
//! thousands of connections.

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

    #[test]
    fn limits_the_rate_and_the_burst() {
        let limit = (10.0, 5.0);
        let mut t = Tokens::full(limit.1, Time::ZERO);
        assert_eq!((0..100).filter(|_| t.take(Time::ZERO, limit)).count(), 5);
        assert_eq!((0..100).filter(|_| t.take(Time::from_millis(1000), limit)).count(), 5);
        assert_eq!((0..100).filter(|_| t.take(Time::from_millis(1300), limit)).count(), 3);
    }
}
