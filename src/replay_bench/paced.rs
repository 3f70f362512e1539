//! `--pace`: a [`WalSource`] wrapper that makes the capture's WAL available as it first
//! arrived — each commit record's end at its original `xact_time`, scaled — or all at once;
//! and how closely a run kept to the original times ([`accuracy`]).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_sender::walsource::{WalEnd, WalSource, WalSourceError};

use super::capture::Commit;

/// How fast the capture's WAL is made available.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Everything at once: catch-up speed.
    Max,
    /// Each commit at its original time divided by this factor (`original` is 1).
    Scaled(f64),
}

impl FromStr for Pace {
    type Err = String;

    fn from_str(s: &str) -> Result<Pace, String> {
        match s {
            "max" => Ok(Pace::Max),
            "original" => Ok(Pace::Scaled(1.0)),
            _ => match s.strip_prefix('x').and_then(|n| n.parse::<f64>().ok()) {
                Some(n) if n.is_finite() && n > 0.0 => Ok(Pace::Scaled(n)),
                _ => Err(format!("invalid pace \"{s}\": expected original, max, or xN with N > 0")),
            },
        }
    }
}

impl std::fmt::Display for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pace::Max => f.write_str("max"),
            Pace::Scaled(n) if *n == 1.0 => f.write_str("original"),
            Pace::Scaled(n) => write!(f, "x{n}"),
        }
    }
}

/// The latest offset a schedule uses (a century: later times are clamped).
const MAX_OFFSET: Duration = Duration::from_secs(100 * 365 * 86_400);

/// When each position becomes available, as offsets from the start of a run: WAL before
/// the first commit at once, each commit's end at `(xact_time - first) / factor` (never
/// earlier than the one before), and everything after the last commit with it.
pub fn schedule(commits: &[Commit], end: Lsn, pace: Pace) -> Vec<(Duration, Lsn)> {
    let Pace::Scaled(factor) = pace else {
        return vec![(Duration::ZERO, end)];
    };
    let Some(first) = commits.first() else {
        return vec![(Duration::ZERO, end)];
    };
    let mut out: Vec<(Duration, Lsn)> = Vec::with_capacity(commits.len() + 1);
    let mut latest = Duration::ZERO;
    for c in commits.iter().filter(|c| c.end <= end) {
        let micros = c.xact_time.saturating_sub(first.xact_time).max(0) as f64 / factor;
        let at = Duration::try_from_secs_f64(micros / 1e6)
            .unwrap_or(MAX_OFFSET)
            .min(MAX_OFFSET)
            .max(latest);
        latest = at;
        out.push((at, c.end));
    }
    out.push((latest, end));
    out
}

/// A source whose flushed end follows a schedule; reads go to the wrapped source.
pub struct PacedWalSource {
    inner: Arc<dyn WalSource>,
    end_tx: watch::Sender<WalEnd>,
}

impl PacedWalSource {
    /// Wraps `inner`, publishing `initial` as its end until
    /// [`PacedWalSource::run_blocking`] moves it.
    pub fn new(inner: Arc<dyn WalSource>, initial: Lsn) -> Arc<PacedWalSource> {
        let tli = inner.end().borrow().tli;
        let (end_tx, _) = watch::channel(WalEnd { tli, flushed: initial });
        Arc::new(PacedWalSource { inner, end_tx })
    }

    /// The end published now.
    pub fn available(&self) -> Lsn {
        self.end_tx.borrow().flushed
    }

    /// Publishes each scheduled position at `t0` plus its offset, until the last or
    /// until cancelled. Returns when each entry of `plan` was published, as offsets from
    /// `t0` (entries not reached are left out).
    ///
    /// Blocking: run it on a thread of its own (`spawn_blocking`), so that its timing
    /// does not wait for the runtime's workers, which serve the walsender and the
    /// sampler; `thread::sleep` also wakes to well under tokio's 1 ms timer tick.
    pub fn run_blocking(
        &self,
        t0: std::time::Instant,
        plan: &[(Duration, Lsn)],
        cancel: &CancellationToken,
    ) -> Vec<Duration> {
        /// The longest sleep between looks at `cancel`.
        const CANCEL_CHECK: Duration = Duration::from_millis(20);
        let mut published = Vec::with_capacity(plan.len());
        while let Some(next) = plan.get(published.len()) {
            if cancel.is_cancelled() {
                break;
            }
            let wait = next.0.saturating_sub(t0.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait.min(CANCEL_CHECK));
                continue;
            }
            let now = t0.elapsed();
            let (upto, n) = due(plan, published.len(), now);
            published.resize(published.len() + n, now);
            if let Some(upto) = upto {
                self.end_tx.send_modify(|e| e.flushed = e.flushed.max(upto));
            }
        }
        published
    }
}

/// At `now` (an offset from the run's start), with entries before `from` published: the
/// position to publish (the last due entry's) and how many entries are due.
pub fn due(plan: &[(Duration, Lsn)], from: usize, now: Duration) -> (Option<Lsn>, usize) {
    let rest = plan.get(from..).unwrap_or_default();
    let n = rest.partition_point(|p| p.0 <= now);
    (n.checked_sub(1).map(|i| rest[i].1), n)
}

/// How closely a paced run made each commit available at its original time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PacingAccuracy {
    /// The capture's duration from its first commit to its last, in original seconds.
    pub original_seconds: f64,
    /// The same span in the run: from the first commit's publication to the last's,
    /// times the pace factor (original seconds).
    pub replayed_seconds: f64,
    /// `replayed_seconds / original_seconds - 1`.
    pub duration_error: f64,
    /// The largest `|published - original offset|` over the commits, in original seconds.
    pub max_offset_error_seconds: f64,
    /// Its 99th percentile.
    pub p99_offset_error_seconds: f64,
    /// `max_offset_error_seconds / original_seconds`: the worst commit's error relative
    /// to the capture's duration.
    pub max_relative_error: f64,
    /// The part of the error that is the pacer's own: the largest delay of a publication
    /// after its scheduled time, in original seconds (timer wake-ups on a busy machine).
    pub max_late_seconds: f64,
    /// The original offset of the commit published that late, in seconds.
    pub max_late_at_seconds: f64,
    /// The part that is the capture's: commits whose `xact_time` is earlier than that of
    /// a commit before them in the WAL (a backend took its commit time, then inserted its
    /// record after another's); their WAL cannot be made available before what precedes
    /// it, so they are scheduled with the latest before them.
    pub out_of_order_commits: u64,
    /// The largest such difference, in seconds.
    pub max_out_of_order_seconds: f64,
}

/// Compares when commits were published (`published[i]`, offsets from the run's start,
/// for commit `i` of those ending at or before `end`) with their original commit times
/// (`xact_time` since the first commit) at `pace`. None at `max`, without commits or
/// without publications.
pub fn accuracy(
    commits: &[Commit],
    end: Lsn,
    pace: Pace,
    published: &[Duration],
) -> Option<PacingAccuracy> {
    let Pace::Scaled(factor) = pace else { return None };
    let first = commits.first()?.xact_time;
    let pairs: Vec<(f64, f64)> = commits
        .iter()
        .filter(|c| c.end <= end)
        .zip(published)
        .map(|(c, p)| ((c.xact_time - first) as f64 / 1e6, p.as_secs_f64() * factor))
        .collect();
    let (first_pub, last) = (pairs.first()?.1, pairs.last()?);
    let original_seconds = last.0;
    let replayed_seconds = last.1 - first_pub;
    let errors = pairs.iter().map(|(orig, publ)| (publ - orig).abs());
    let p = super::report::Percentiles::of(errors);
    let rel = |x: f64| if original_seconds > 0.0 { x / original_seconds } else { 0.0 };
    // The schedule: each commit at its original offset, never before one earlier in the WAL.
    let (mut latest, mut late, mut late_at) = (0.0f64, 0.0f64, 0.0f64);
    let (mut out_of_order, mut behind) = (0, 0.0f64);
    for (orig, publ) in &pairs {
        if *orig < latest {
            out_of_order += 1;
            behind = behind.max(latest - orig);
        }
        latest = latest.max(*orig);
        if publ - latest > late {
            (late, late_at) = (publ - latest, *orig);
        }
    }
    Some(PacingAccuracy {
        original_seconds,
        replayed_seconds,
        duration_error: rel(replayed_seconds) - if original_seconds > 0.0 { 1.0 } else { 0.0 },
        max_offset_error_seconds: p.max,
        p99_offset_error_seconds: p.p99,
        max_relative_error: rel(p.max),
        max_late_seconds: late,
        max_late_at_seconds: late_at,
        out_of_order_commits: out_of_order,
        max_out_of_order_seconds: behind,
    })
}

impl WalSource for PacedWalSource {
    fn system_id(&self) -> u64 {
        self.inner.system_id()
    }

    fn seg_size(&self) -> WalSegSize {
        self.inner.seg_size()
    }

    fn end(&self) -> watch::Receiver<WalEnd> {
        self.end_tx.subscribe()
    }

    fn history_file(&self, tli: TimeLineId) -> Result<Option<Bytes>, WalSourceError> {
        self.inner.history_file(tli)
    }

    fn read(&self, file_tli: TimeLineId, start: Lsn, len: usize) -> Result<Bytes, WalSourceError> {
        self.inner.read(file_tli, start, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(end: u64, t: i64) -> Commit {
        Commit { end: Lsn(end), xact_time: t }
    }

    #[test]
    fn paces_parse_and_print() {
        assert_eq!("max".parse::<Pace>().unwrap(), Pace::Max);
        assert_eq!("original".parse::<Pace>().unwrap(), Pace::Scaled(1.0));
        assert_eq!("x2.5".parse::<Pace>().unwrap(), Pace::Scaled(2.5));
        for bad in ["x0", "x-1", "fast", "x", "xNaN", "xinf"] {
            assert!(bad.parse::<Pace>().is_err(), "{bad}");
        }
        assert_eq!(Pace::Scaled(1.0).to_string(), "original");
        assert_eq!(Pace::Scaled(4.0).to_string(), "x4");
    }

    #[test]
    fn original_times_scaled_and_monotonic() {
        let commits = [c(100, 1_000_000), c(200, 3_000_000), c(300, 2_000_000)];
        let plan = schedule(&commits, Lsn(400), Pace::Scaled(2.0));
        assert_eq!(
            plan,
            vec![
                (Duration::ZERO, Lsn(100)),
                (Duration::from_secs(1), Lsn(200)),
                (Duration::from_secs(1), Lsn(300)),
                (Duration::from_secs(1), Lsn(400)),
            ]
        );
        assert_eq!(schedule(&commits, Lsn(400), Pace::Max), vec![(Duration::ZERO, Lsn(400))]);
        assert_eq!(schedule(&[], Lsn(9), Pace::Scaled(1.0)), vec![(Duration::ZERO, Lsn(9))]);
    }

    #[test]
    fn due_entries_at_now() {
        let plan = [
            (Duration::ZERO, Lsn(100)),
            (Duration::from_millis(10), Lsn(200)),
            (Duration::from_millis(10), Lsn(300)),
            (Duration::from_millis(30), Lsn(400)),
        ];
        assert_eq!(due(&plan, 0, Duration::ZERO), (Some(Lsn(100)), 1));
        assert_eq!(due(&plan, 1, Duration::from_millis(9)), (None, 0));
        // entries at the same offset go out together, as the last one's position
        assert_eq!(due(&plan, 1, Duration::from_millis(10)), (Some(Lsn(300)), 2));
        // a late wake-up publishes everything due, once
        assert_eq!(due(&plan, 1, Duration::from_secs(1)), (Some(Lsn(400)), 3));
        assert_eq!(due(&plan, 4, Duration::from_secs(1)), (None, 0));
        assert_eq!(due(&plan, 9, Duration::from_secs(1)), (None, 0));
    }

    #[test]
    fn accuracy_against_original_commit_times() {
        // commits at 0, 1 s, 2 s, 10 s original time; replayed at x2
        let commits = [c(10, 0), c(20, 1_000_000), c(30, 2_000_000), c(40, 10_000_000)];
        let ms = Duration::from_millis;
        let exact = [ms(0), ms(500), ms(1000), ms(5000)];
        let a = accuracy(&commits, Lsn(50), Pace::Scaled(2.0), &exact).unwrap();
        assert_eq!(a.original_seconds, 10.0);
        assert_eq!(a.replayed_seconds, 10.0);
        assert_eq!(a.duration_error, 0.0);
        assert_eq!(a.max_offset_error_seconds, 0.0);
        // the third commit published 50 ms late (100 ms original), the last 25 ms early
        let late = [ms(0), ms(500), ms(1050), ms(4975)];
        let a = accuracy(&commits, Lsn(50), Pace::Scaled(2.0), &late).unwrap();
        assert!((a.max_offset_error_seconds - 0.1).abs() < 1e-9, "{a:?}");
        assert!((a.max_relative_error - 0.01).abs() < 1e-9, "{a:?}");
        assert!((a.duration_error + 0.005).abs() < 1e-9, "{a:?}");
        assert!((a.max_late_seconds - 0.1).abs() < 1e-9, "{a:?}");
        assert_eq!(a.max_late_at_seconds, 2.0);
        assert_eq!(a.out_of_order_commits, 0);
        // a commit whose time is before the one ahead of it in the WAL waits for it: an
        // error of the capture's order, not the pacer's lateness
        let swapped = [c(10, 0), c(20, 2_000_000), c(30, 1_900_000), c(40, 10_000_000)];
        let on_time = [ms(0), ms(1000), ms(1000), ms(5000)];
        let a = accuracy(&swapped, Lsn(50), Pace::Scaled(2.0), &on_time).unwrap();
        assert_eq!(a.out_of_order_commits, 1);
        assert!((a.max_out_of_order_seconds - 0.1).abs() < 1e-9, "{a:?}");
        assert!((a.max_offset_error_seconds - 0.1).abs() < 1e-9, "{a:?}");
        assert!(a.max_late_seconds.abs() < 1e-9, "{a:?}");
        // commits past the end, `max`, no commits, nothing published: nothing to say
        let a = accuracy(&commits, Lsn(25), Pace::Scaled(1.0), &[ms(0), ms(1000)]).unwrap();
        assert_eq!(a.original_seconds, 1.0);
        assert_eq!(accuracy(&commits, Lsn(50), Pace::Max, &exact), None);
        assert_eq!(accuracy(&[], Lsn(50), Pace::Scaled(1.0), &exact), None);
        assert_eq!(accuracy(&commits, Lsn(50), Pace::Scaled(1.0), &[]), None);
    }

    proptest! {
        #[test]
        fn schedules_never_go_back(times in proptest::collection::vec(any::<i64>(), 0..50),
                                   factor in 0.001f64..1000.0) {
            let commits: Vec<Commit> =
                times.iter().enumerate().map(|(i, t)| c(i as u64 * 10 + 10, *t)).collect();
            let plan = schedule(&commits, Lsn(10_000), Pace::Scaled(factor));
            prop_assert_eq!(plan.last().map(|p| p.1), Some(Lsn(10_000)));
            for w in plan.windows(2) {
                prop_assert!(w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
            }
        }
    }
}
