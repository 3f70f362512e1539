//! `MAX_RATE` (`replication/basebackup_throttle.c`): after every eighth of a second's
//! worth of bytes, wait until at least an eighth of a second has passed since the last
//! check.

use std::time::{Duration, Instant};

/// Checks per second (`THROTTLING_FREQUENCY`).
const FREQUENCY: u64 = 8;

/// The throttle's state.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Bytes per period (`throttling_sample`).
    sample: u64,
    /// The least time a period may take (`elapsed_min_unit`).
    min_unit: Duration,
    /// Bytes sent and not yet accounted for (`throttling_counter`).
    counter: u64,
    /// When the current period began (`throttled_last`).
    last: Instant,
}

impl Throttle {
    /// A throttle for `max_rate` kB/s, its first period starting at `now`.
    pub fn new(max_rate_kb: u32, now: Instant) -> Self {
        Throttle {
            sample: (u64::from(max_rate_kb) * 1024 / FREQUENCY).max(1),
            min_unit: Duration::from_micros(1_000_000 / FREQUENCY),
            counter: 0,
            last: now,
        }
    }

    /// Accounts for `n` more bytes sent; how long to wait before sending more, if at all.
    /// After waiting (or when nothing is to be waited for) call [`Throttle::period_done`].
    pub fn sent(&mut self, n: u64, now: Instant) -> Option<Duration> {
        self.counter += n;
        if self.counter < self.sample {
            return None;
        }
        let periods = u32::try_from(self.counter / self.sample).unwrap_or(u32::MAX);
        let elapsed_min = self.min_unit.saturating_mul(periods);
        let elapsed = now.saturating_duration_since(self.last);
        if elapsed >= elapsed_min {
            self.period_done(now);
            return None;
        }
        Some(elapsed_min - elapsed)
    }

    /// A new period starts at `now` (the transfer rate was at most the maximum).
    pub fn period_done(&mut self, now: Instant) {
        self.counter %= self.sample;
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_out_each_eighth_of_a_second() {
        let t0 = Instant::now();
        // 32 kB/s: 4096 bytes per eighth of a second.
        let mut t = Throttle::new(32, t0);
        assert_eq!(t.sent(4095, t0), None);
        let wait = t.sent(1, t0 + Duration::from_millis(25)).unwrap();
        assert_eq!(wait, Duration::from_millis(100));
        t.period_done(t0 + Duration::from_millis(125));
        // Two periods' worth at once: a quarter second from the new start.
        let wait = t.sent(8192, t0 + Duration::from_millis(125)).unwrap();
        assert_eq!(wait, Duration::from_millis(250));
        t.period_done(t0 + Duration::from_millis(375));
        // Slower than the limit: no wait.
        assert_eq!(t.sent(5000, t0 + Duration::from_secs(2)), None);
        assert_eq!(t.counter, 5000 % 4096);
    }
}
