//! What the demo shows while it runs and at the end: samples of the positions, the replay
//! lag in bytes and time, the progress line and the summary. No I/O; time is passed in.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use walstream_protocol::Lsn;

/// How many flush samples the lag tracker keeps at most (older ones are merged away).
const MAX_PENDING: usize = 100_000;

/// The positions at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Time since the workload started.
    pub at: Duration,
    /// Transactions the clients committed so far.
    pub commits: u64,
    /// The primary's flushed WAL end.
    pub primary_flush: Lsn,
    /// What the primary's walsender sent to the standby.
    pub sent: Lsn,
    /// What the standby flushed.
    pub standby_flush: Lsn,
    /// What the standby replayed.
    pub replayed: Lsn,
    /// The primary's flushes since the previous sample: when (time since the workload
    /// started) and up to where.
    pub flushes: Vec<(Duration, Lsn)>,
}

/// How far replay is behind the primary's flushed WAL, in time: the time since the oldest
/// WAL not yet replayed was flushed on the primary, zero when none is pending (as
/// `walsender.c`'s LagTracker times replies against the WAL positions it sent).
#[derive(Debug, Default)]
pub struct LagTracker {
    /// (time first seen flushed, flushed position), ascending in both.
    pending: VecDeque<(Duration, Lsn)>,
}

impl LagTracker {
    /// Records that the primary had flushed up to `flushed` at `at`.
    pub fn record(&mut self, at: Duration, flushed: Lsn) {
        if self.pending.back().is_none_or(|&(_, lsn)| flushed > lsn) {
            if self.pending.len() == MAX_PENDING {
                // Keep the oldest time: dropping the second sample only widens it.
                self.pending.remove(1);
            }
            self.pending.push_back((at, flushed));
        }
    }

    /// Records that the primary had flushed up to `flushed` at `now`, and that replay is at
    /// `replayed`; returns the replay lag in time.
    pub fn observe(&mut self, now: Duration, flushed: Lsn, replayed: Lsn) -> Duration {
        self.record(now, flushed);
        while self.pending.front().is_some_and(|&(_, lsn)| lsn <= replayed) {
            self.pending.pop_front();
        }
        self.pending.front().map_or(Duration::ZERO, |&(t, _)| now.saturating_sub(t))
    }
}

/// One line of progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Commits per second since the previous sample.
    pub commits_per_sec: f64,
    /// All commits so far.
    pub commits: u64,
    /// The primary's walsender's sent position.
    pub sent: Lsn,
    /// The standby's flushed position.
    pub flushed: Lsn,
    /// The standby's replayed position.
    pub replayed: Lsn,
    /// Bytes of the primary's flushed WAL not yet replayed.
    pub lag_bytes: u64,
    /// The replay lag in time.
    pub lag_time: Duration,
}

impl Line {
    /// The commit rate and count.
    pub fn rate(&self) -> String {
        format!("{:>6.0} commits/s {:>9} commits", self.commits_per_sec, self.commits)
    }

    /// The positions and the replay lag.
    pub fn positions(&self) -> String {
        format!(
            "sent {}  flushed {}  replayed {}  lag {} / {}",
            self.sent,
            self.flushed,
            self.replayed,
            Bytes(self.lag_bytes),
            Millis(self.lag_time),
        )
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  {}", self.rate(), self.positions())
    }
}

/// Turns samples into progress lines and keeps the maxima for the summary.
#[derive(Debug, Default)]
pub struct Progress {
    lag: LagTracker,
    last: Option<Sample>,
    /// The largest replay lag in bytes seen.
    pub max_lag_bytes: u64,
    /// The largest replay lag in time seen.
    pub max_lag_time: Duration,
}

impl Progress {
    /// Takes one sample; returns the line to show.
    pub fn observe(&mut self, s: &Sample) -> Line {
        for &(at, lsn) in &s.flushes {
            self.lag.record(at, lsn);
        }
        let lag_time = self.lag.observe(s.at, s.primary_flush, s.replayed);
        let lag_bytes = s.primary_flush.saturating_distance(s.replayed);
        self.max_lag_bytes = self.max_lag_bytes.max(lag_bytes);
        self.max_lag_time = self.max_lag_time.max(lag_time);
        let commits_per_sec = match &self.last {
            Some(prev) if s.at > prev.at => {
                s.commits.saturating_sub(prev.commits) as f64 / (s.at - prev.at).as_secs_f64()
            }
            _ => 0.0,
        };
        self.last = Some(s.clone());
        Line {
            commits_per_sec,
            commits: s.commits,
            sent: s.sent,
            flushed: s.standby_flush,
            replayed: s.replayed,
            lag_bytes,
            lag_time,
        }
    }
}

/// What the demo did, printed at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Client connections.
    pub clients: u32,
    /// Transactions the clients committed.
    pub commits: u64,
    /// How long the workload ran.
    pub elapsed: Duration,
    /// WAL the primary wrote during the workload.
    pub wal_bytes: u64,
    /// The largest replay lag in bytes.
    pub max_lag_bytes: u64,
    /// The largest replay lag in time.
    pub max_lag_time: Duration,
    /// How long the standby took to catch up after the workload.
    pub catch_up: Duration,
    /// Whether the standby's tables equal the primary's.
    pub tables_match: bool,
}

impl Summary {
    /// Commits per second over the whole workload.
    pub fn commits_per_sec(&self) -> f64 {
        match self.elapsed.as_secs_f64() {
            s if s > 0.0 => self.commits as f64 / s,
            _ => 0.0,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "summary")?;
        writeln!(
            f,
            "  commits:           {} by {} clients in {:.1} s ({:.0} commits/s on average)",
            self.commits,
            self.clients,
            self.elapsed.as_secs_f64(),
            self.commits_per_sec()
        )?;
        writeln!(f, "  WAL written:       {}", Bytes(self.wal_bytes))?;
        writeln!(
            f,
            "  max replay lag:    {} / {}",
            Bytes(self.max_lag_bytes),
            Millis(self.max_lag_time)
        )?;
        writeln!(f, "  standby caught up: {} after the workload", Millis(self.catch_up))?;
        if self.tables_match {
            write!(f, "  tables:            the standby's tables match the primary's")
        } else {
            write!(f, "  tables:            the standby's tables DIFFER from the primary's")
        }
    }
}

/// A byte count in B, kB, MB or GB (1024-based, as PostgreSQL's `pg_size_pretty`).
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        match self.0 {
            n if n < 10 * 1024 => write!(f, "{n} B"),
            n if n < 10 * 1024 * 1024 => write!(f, "{:.0} kB", b / 1024.0),
            n if n < 10 * 1024 * 1024 * 1024 => write!(f, "{:.1} MB", b / 1048576.0),
            _ => write!(f, "{:.1} GB", b / 1073741824.0),
        }
    }
}

/// A duration in milliseconds, or seconds from 10 s on.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < Duration::from_secs(10) {
            write!(f, "{} ms", self.0.as_millis())
        } else {
            write!(f, "{:.1} s", self.0.as_secs_f64())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(at: u64, commits: u64, flush: u64, replayed: u64) -> Sample {
        Sample {
            at: ms(at),
            commits,
            primary_flush: Lsn(flush),
            sent: Lsn(flush),
            standby_flush: Lsn(replayed),
            replayed: Lsn(replayed),
            flushes: Vec::new(),
        }
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_unreplayed_flush() {
        let mut t = LagTracker::default();
        assert_eq!(t.observe(ms(0), Lsn(100), Lsn(100)), Duration::ZERO);
        assert_eq!(t.observe(ms(250), Lsn(200), Lsn(100)), Duration::ZERO);
        assert_eq!(t.observe(ms(500), Lsn(300), Lsn(150)), ms(250));
        assert_eq!(t.observe(ms(750), Lsn(300), Lsn(200)), ms(250));
        assert_eq!(t.observe(ms(1000), Lsn(300), Lsn(300)), Duration::ZERO);
    }

    #[test]
    fn lag_tracker_stays_bounded() {
        let mut t = LagTracker::default();
        for i in 0..(MAX_PENDING as u64 + 10) {
            t.observe(ms(i), Lsn(i + 1), Lsn(0));
        }
        assert_eq!(t.pending.len(), MAX_PENDING);
        assert_eq!(t.pending.front(), Some(&(ms(0), Lsn(1))));
    }

    #[test]
    fn progress_line_shows_rate_positions_and_lag() {
        let mut p = Progress::default();
        let first = p.observe(&sample(0, 0, 0x100_0000, 0x100_0000));
        assert_eq!(first.commits_per_sec, 0.0);
        p.observe(&sample(500, 100, 0x100_4000, 0x100_0000));
        let line = p.observe(&sample(1000, 600, 0x100_8000, 0x100_2000));
        assert_eq!(line.commits_per_sec, 1000.0);
        assert_eq!(line.lag_bytes, 0x6000);
        assert_eq!(line.lag_time, ms(500));
        assert_eq!(
            line.to_string(),
            "  1000 commits/s       600 commits  sent 0/1008000  flushed 0/1002000  \
             replayed 0/1002000  lag 24 kB / 500 ms"
        );
        assert_eq!(p.max_lag_bytes, 0x6000);
        assert_eq!(p.max_lag_time, ms(500));
    }

    #[test]
    fn flushes_between_samples_time_the_lag() {
        let mut p = Progress::default();
        p.observe(&sample(0, 0, 0x1000, 0x1000));
        let mut s = sample(250, 10, 0x4000, 0x1800);
        s.flushes = vec![(ms(40), Lsn(0x2000)), (ms(90), Lsn(0x3000)), (ms(240), Lsn(0x4000))];
        assert_eq!(p.observe(&s).lag_time, ms(210));
        let s = Sample { at: ms(500), replayed: Lsn(0x3000), flushes: Vec::new(), ..s };
        assert_eq!(p.observe(&s).lag_time, ms(260));
        assert_eq!(p.max_lag_time, ms(260));
    }

    #[test]
    fn summary_reads_as_a_report() {
        let s = Summary {
            clients: 4,
            commits: 12_345,
            elapsed: Duration::from_secs(10),
            wal_bytes: 3 * 1024 * 1024 + 512 * 1024,
            max_lag_bytes: 800,
            max_lag_time: ms(12),
            catch_up: ms(3),
            tables_match: true,
        };
        assert_eq!(
            s.to_string(),
            "summary\n\
             \x20 commits:           12345 by 4 clients in 10.0 s (1234 commits/s on average)\n\
             \x20 WAL written:       3584 kB\n\
             \x20 max replay lag:    800 B / 12 ms\n\
             \x20 standby caught up: 3 ms after the workload\n\
             \x20 tables:            the standby's tables match the primary's"
        );
        let differ = Summary { tables_match: false, elapsed: Duration::ZERO, ..s };
        assert_eq!(differ.commits_per_sec(), 0.0);
        assert!(differ.to_string().ends_with("the standby's tables DIFFER from the primary's"));
    }

    #[test]
    fn sizes_and_times_pick_their_unit() {
        assert_eq!(Bytes(10 * 1024 * 1024).to_string(), "10.0 MB");
        assert_eq!(Bytes(20 * 1024 * 1024 * 1024).to_string(), "20.0 GB");
        assert_eq!(Millis(Duration::from_millis(12_345)).to_string(), "12.3 s");
    }
}
