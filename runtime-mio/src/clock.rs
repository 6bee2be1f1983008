//! The wall clock as the core wants it: microseconds since the Unix epoch, never going backwards.

use std::time::{SystemTime, UNIX_EPOCH};

use p2p_chat_core::Time;

#[derive(Default)]
pub struct Clock {
    last: Time,
}

impl Clock {
    /// Now, or the last reading if the system clock stepped back.
    pub fn now(&mut self) -> Time {
        let us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        self.last = self.last.max(Time::from_micros(us));
        self.last
    }
}
