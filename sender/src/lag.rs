//! `pg_stat_replication`'s `write_lag`, `flush_lag` and `replay_lag`, measured as
//! PostgreSQL's walsender does (`walsender.c`: `LagTrackerWrite`, `LagTrackerRead`): when
//! WAL is sent, its end and the time are sampled; when the standby reports a position, the
//! lag is the time since the newest sample it has passed, interpolated between samples
//! while it is between two. Time is passed in.

use std::time::{Duration, SystemTime};

use walstream_protocol::Lsn;

/// `LAG_TRACKER_BUFFER_SIZE`.
const BUFFER_SIZE: usize = 8192;

/// Which reported position (`SYNC_REP_WAIT_WRITE`, `_FLUSH`, `_APPLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagKind {
    /// The standby's write position.
    Write = 0,
    /// Its flush position.
    Flush = 1,
    /// Its replay position.
    Apply = 2,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    lsn: Lsn,
    time: Option<SystemTime>,
}

/// One walsender's samples and read heads.
#[derive(Debug, Clone)]
pub struct LagTracker {
    last_lsn: Lsn,
    buffer: Vec<Sample>,
    write_head: usize,
    read_heads: [usize; 3],
    last_read: [Sample; 3],
    fully_applied_last_time: bool,
    lags: [Option<Duration>; 3],
}

impl Default for LagTracker {
    fn default() -> Self {
        LagTracker {
            last_lsn: Lsn::INVALID,
            buffer: vec![Sample::default(); BUFFER_SIZE],
            write_head: 0,
            read_heads: [0; 3],
            last_read: [Sample::default(); 3],
            fully_applied_last_time: false,
            lags: [None; 3],
        }
    }
}

impl LagTracker {
    /// `LagTrackerWrite`: WAL up to `lsn` is being sent at `now`. Only a new position makes
    /// a sample; a full buffer overwrites its newest sample (lowering the sampling rate).
    pub fn sent(&mut self, lsn: Lsn, now: SystemTime) {
        if self.last_lsn == lsn {
            return;
        }
        self.last_lsn = lsn;
        let mut new_write_head = (self.write_head + 1) % BUFFER_SIZE;
        if self.read_heads.contains(&new_write_head) {
            new_write_head = self.write_head;
            self.write_head = self.write_head.checked_sub(1).unwrap_or(BUFFER_SIZE - 1);
        }
        self.buffer[self.write_head] = Sample { lsn, time: Some(now) };
        self.write_head = new_write_head;
    }

    /// `ProcessStandbyReplyMessage`'s lag part: the standby reported `write`, `flush` and
    /// `apply` at `now`, with `sent` the walsender's send position. Lags the report lets
    /// us measure are updated; once the standby has been fully caught up for two reports
    /// in a row, they are cleared (shown as NULL).
    pub fn reply(&mut self, write: Lsn, flush: Lsn, apply: Lsn, sent: Lsn, now: SystemTime) {
        let mut clear = false;
        if write == sent && flush == sent && apply == sent {
            if self.fully_applied_last_time {
                clear = true;
            }
            self.fully_applied_last_time = true;
        } else {
            self.fully_applied_last_time = false;
        }
        for (kind, lsn) in
            [(LagKind::Write, write), (LagKind::Flush, flush), (LagKind::Apply, apply)]
        {
            let lag = self.read(kind, lsn, now);
            if lag.is_some() || clear {
                self.lags[kind as usize] = lag;
            }
        }
    }

    /// The current lag of `kind` (`None` is NULL).
    pub fn lag(&self, kind: LagKind) -> Option<Duration> {
        self.lags[kind as usize]
    }

    /// `LagTrackerRead`: the time since WAL up to `lsn` was sent, `None` when it cannot be
    /// known.
    fn read(&mut self, kind: LagKind, lsn: Lsn, now: SystemTime) -> Option<Duration> {
        let head = kind as usize;
        let mut time = None;
        while self.read_heads[head] != self.write_head
            && self.buffer[self.read_heads[head]].lsn <= lsn
        {
            let s = self.buffer[self.read_heads[head]];
            time = s.time;
            self.last_read[head] = s;
            self.read_heads[head] = (self.read_heads[head] + 1) % BUFFER_SIZE;
        }
        // Everything sent was processed: nothing to interpolate from next time.
        if self.read_heads[head] == self.write_head {
            self.last_read[head].time = None;
        }
        let time = match time {
            Some(t) => t,
            None if self.read_heads[head] == self.write_head => return None,
            None => {
                let next = self.buffer[self.read_heads[head]];
                let prev = self.last_read[head];
                match (prev.time, next.time) {
                    (Some(pt), Some(nt)) => {
                        // Reported positions going back (a timeline change) or a clock that
                        // went back: not found.
                        if lsn < prev.lsn || pt > nt {
                            return None;
                        }
                        let fraction =
                            (lsn.0 - prev.lsn.0) as f64 / (next.lsn.0 - prev.lsn.0).max(1) as f64;
                        pt + nt.duration_since(pt).unwrap_or_default().mul_f64(fraction)
                    }
                    // Only a future sample: the lag if it were processed now.
                    (None, Some(nt)) => nt,
                    _ => return None,
                }
            }
        };
        // A sample from the future (the clock went back): not found.
        now.duration_since(time).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn lags_are_the_time_since_the_passed_sample() {
        let mut lt = LagTracker::default();
        lt.sent(Lsn(100), t(0));
        lt.sent(Lsn(200), t(10));
        // Write caught up with 200 at 15: 5 ms since it was sent; flush past 100 only.
        lt.reply(Lsn(200), Lsn(100), Lsn(0), Lsn(200), t(15));
        assert_eq!(lt.lag(LagKind::Write), Some(Duration::from_millis(5)));
        assert_eq!(lt.lag(LagKind::Flush), Some(Duration::from_millis(15)));
        // Apply has reached no sample: only a future one, the lag if it were applied now.
        assert_eq!(lt.lag(LagKind::Apply), Some(Duration::from_millis(15)));
        // Flush between 100 (t 0) and 200 (t 10): interpolated to t 5, at 20 → 15 ms.
        lt.reply(Lsn(200), Lsn(150), Lsn(0), Lsn(200), t(20));
        assert_eq!(lt.lag(LagKind::Flush), Some(Duration::from_millis(15)));
    }

    #[test]
    fn caught_up_twice_clears_the_lags() {
        let mut lt = LagTracker::default();
        lt.sent(Lsn(100), t(0));
        lt.reply(Lsn(100), Lsn(100), Lsn(100), Lsn(100), t(3));
        assert_eq!(lt.lag(LagKind::Apply), Some(Duration::from_millis(3)));
        // Nothing new was sent: no sample to measure, the lag stays...
        lt.reply(Lsn(100), Lsn(100), Lsn(100), Lsn(100), t(9));
        // ...until the second caught-up report in a row clears it.
        assert_eq!(lt.lag(LagKind::Apply), None);
        assert_eq!(lt.lag(LagKind::Write), None);
    }

    #[test]
    fn the_same_position_makes_one_sample_and_a_full_buffer_overwrites_the_newest() {
        let mut lt = LagTracker::default();
        lt.sent(Lsn(1), t(0));
        lt.sent(Lsn(1), t(5));
        lt.reply(Lsn(1), Lsn(0), Lsn(0), Lsn(1), t(6));
        assert_eq!(lt.lag(LagKind::Write), Some(Duration::from_millis(6)), "the first sample");
        for i in 2..(BUFFER_SIZE as u64 + 100) {
            lt.sent(Lsn(i), t(i));
        }
        // Flush never read: the buffer is full, the newest slot keeps being replaced.
        let last = BUFFER_SIZE as u64 + 99;
        lt.reply(Lsn(last), Lsn(last), Lsn(last), Lsn(last), t(last + 1));
        assert_eq!(lt.lag(LagKind::Write), Some(Duration::from_millis(1)));
        assert_eq!(lt.lag(LagKind::Flush), Some(Duration::from_millis(1)));
    }

    #[test]
    fn a_clock_that_went_back_is_not_a_lag() {
        let mut lt = LagTracker::default();
        lt.sent(Lsn(100), t(50));
        lt.reply(Lsn(100), Lsn(100), Lsn(100), Lsn(200), t(10));
        assert_eq!(lt.lag(LagKind::Write), None);
    }
}
