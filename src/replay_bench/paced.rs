//! `--pace`: a [`WalSource`] wrapper that makes the capture's WAL available as it first
//! arrived — each commit record's end at its original `xact_time`, scaled — or all at once.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
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
    /// Wraps `inner`, publishing `initial` as its end until [`PacedWalSource::run`] moves it.
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
    /// until cancelled.
    pub async fn run(
        self: Arc<Self>,
        t0: Instant,
        plan: Vec<(Duration, Lsn)>,
        cancel: CancellationToken,
    ) {
        let mut i = 0;
        while i < plan.len() {
            let at = t0 + plan[i].0;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(at) => {}
            }
            let now = Instant::now();
            let mut upto = plan[i].1;
            while i < plan.len() && t0 + plan[i].0 <= now {
                upto = plan[i].1;
                i += 1;
            }
            self.end_tx.send_modify(|e| e.flushed = e.flushed.max(upto));
        }
    }
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
