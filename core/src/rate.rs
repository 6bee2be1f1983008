//! Rate limits: a token bucket per connection (chat and control frames) and one for the node's own
//! dials. A bucket holds only the two numbers that change; its rate and burst are kept once, in the
//! node's `Config`, because every connection of a node shares them and a simulator runs tens of
//! thousands of connections.

use crate::time::Time;

/// A token bucket's rate and burst: `per_sec` tokens a second, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_sec: f64,
    pub burst: f64,
}

impl RateLimit {
    pub const fn new(per_sec: f64, burst: f64) -> RateLimit {
        RateLimit { per_sec, burst }
    }

    /// `per_minute` tokens a minute.
    pub const fn per_minute(per_minute: f64, burst: f64) -> RateLimit {
        RateLimit { per_sec: per_minute / 60.0, burst }
    }
}

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

    /// Takes one token if there is one, refilling at `limit`.
    pub fn take(&mut self, now: Time, limit: RateLimit) -> bool {
        let RateLimit { per_sec: rate, burst } = limit;
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
        let limit = RateLimit::new(10.0, 5.0);
        let mut t = Tokens::full(limit.burst, Time::ZERO);
        assert_eq!((0..100).filter(|_| t.take(Time::ZERO, limit)).count(), 5);
        assert_eq!((0..100).filter(|_| t.take(Time::from_millis(1000), limit)).count(), 5);
        assert_eq!((0..100).filter(|_| t.take(Time::from_millis(1300), limit)).count(), 3);
    }
}
