//! What a run measured, in numbers: replay speed, time to the end, lag percentiles, the
//! startup process's CPU per GB, how closely a paced run kept the original times; and
//! per config medians and ratios against the first.

use serde::{Deserialize, Serialize};

use super::paced::PacingAccuracy;
use super::sample::Sample;

/// Percentiles of one series.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// 50th.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// The nearest-rank percentile `p` (0..=100) of sorted `v`.
fn nearest_rank(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

impl Percentiles {
    /// The percentiles of `values` (zeros when empty).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Percentiles {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Percentiles {
            p50: nearest_rank(&v, 50.0),
            p90: nearest_rank(&v, 90.0),
            p99: nearest_rank(&v, 99.0),
            max: v.last().copied().unwrap_or(0.0),
        }
    }
}

/// The numbers of one run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunSummary {
    /// Seconds from the standby's start to replaying the capture's end.
    pub seconds_to_end: f64,
    /// Replayed MB (2^20 bytes) per second.
    pub mb_per_second: f64,
    /// Replayed records per second.
    pub records_per_second: f64,
    /// Lag in bytes.
    pub lag_bytes: Percentiles,
    /// Lag in seconds.
    pub lag_seconds: Percentiles,
    /// The startup process's CPU seconds per GB (2^30 bytes) replayed.
    pub startup_cpu_seconds_per_gb: Option<f64>,
    /// At a paced run: when commits were made available against their original times.
    #[serde(default)]
    pub pacing: Option<PacingAccuracy>,
}

/// Summarises a run that replayed `bytes` bytes and `records` records in
/// `seconds_to_end`, from its samples.
pub fn summarize(samples: &[Sample], seconds_to_end: f64, bytes: u64, records: u64) -> RunSummary {
    let secs = seconds_to_end.max(1e-9);
    let cpu = samples
        .iter()
        .filter_map(|s| s.startup_cpu)
        .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c))));
    RunSummary {
        seconds_to_end,
        mb_per_second: bytes as f64 / 1_048_576.0 / secs,
        records_per_second: records as f64 / secs,
        lag_bytes: Percentiles::of(samples.iter().filter_map(|s| s.lag_bytes.map(|b| b as f64))),
        lag_seconds: Percentiles::of(samples.iter().filter_map(|s| s.lag_seconds)),
        startup_cpu_seconds_per_gb: cpu
            .filter(|_| bytes > 0)
            .map(|c| c / (bytes as f64 / 1_073_741_824.0)),
        pacing: None,
    }
}

/// The median of `v` (mean of the middle two for an even count; 0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians of one config's runs, and their ratios to the first config's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSummary {
    /// The config's name.
    pub config: String,
    /// Runs that reached the end.
    pub runs: usize,
    /// Median seconds to the end.
    pub seconds_to_end: f64,
    /// Median MB/s.
    pub mb_per_second: f64,
    /// Median records/s.
    pub records_per_second: f64,
    /// Median of the runs' p99 lag in seconds.
    pub lag_seconds_p99: f64,
    /// Median of the runs' p99 lag in bytes.
    pub lag_bytes_p99: f64,
    /// Median CPU seconds per GB.
    pub startup_cpu_seconds_per_gb: Option<f64>,
    /// At a paced run: the largest of the runs' worst commit errors relative to the
    /// capture's duration ([`PacingAccuracy::max_relative_error`]).
    pub pacing_max_relative_error: Option<f64>,
    /// At a paced run: the largest of the runs' `|duration_error|`.
    pub pacing_duration_error: Option<f64>,
    /// At a paced run: the largest of the runs' `max_late_seconds` (the pacer's own part).
    pub pacing_max_late_seconds: Option<f64>,
    /// `seconds_to_end` divided by the first config's.
    pub time_ratio: f64,
    /// `mb_per_second` divided by the first config's.
    pub speed_ratio: f64,
}

/// Per config medians (configs in the order given), with ratios against the first.
pub fn compare(configs: &[(String, Vec<RunSummary>)]) -> Vec<ConfigSummary> {
    let mut out: Vec<ConfigSummary> = configs
        .iter()
        .map(|(name, runs)| {
            let m = |f: fn(&RunSummary) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
            let cpu: Vec<f64> = runs.iter().filter_map(|r| r.startup_cpu_seconds_per_gb).collect();
            let worst = |f: fn(&PacingAccuracy) -> f64| {
                runs.iter().filter_map(|r| r.pacing.as_ref().map(f)).reduce(f64::max)
            };
            ConfigSummary {
                config: name.clone(),
                runs: runs.len(),
                seconds_to_end: m(|r| r.seconds_to_end),
                mb_per_second: m(|r| r.mb_per_second),
                records_per_second: m(|r| r.records_per_second),
                lag_seconds_p99: m(|r| r.lag_seconds.p99),
                lag_bytes_p99: m(|r| r.lag_bytes.p99),
                startup_cpu_seconds_per_gb: (!cpu.is_empty()).then(|| median(&cpu)),
                pacing_max_relative_error: worst(|p| p.max_relative_error),
                pacing_duration_error: worst(|p| p.duration_error.abs()),
                pacing_max_late_seconds: worst(|p| p.max_late_seconds),
                time_ratio: 1.0,
                speed_ratio: 1.0,
            }
        })
        .collect();
    if let Some(first) = out.first().cloned() {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        for c in &mut out {
            c.time_ratio = ratio(c.seconds_to_end, first.seconds_to_end);
            c.speed_ratio = ratio(c.mb_per_second, first.mb_per_second);
        }
    }
    out
}

/// The terminal table: one line per config.
pub fn table(rows: &[ConfigSummary]) -> String {
    let w = rows.iter().map(|r| r.config.chars().count()).max().unwrap_or(0).max(16);
    let mut s = format!(
        "{:<w$} {:>4} {:>10} {:>9} {:>11} {:>11} {:>12} {:>10} {:>7} {:>7}\n",
        "config",
        "runs",
        "time (s)",
        "MB/s",
        "records/s",
        "lag p99 s",
        "lag p99 MB",
        "CPU s/GB",
        "time×",
        "speed×"
    );
    for r in rows {
        let cpu = r.startup_cpu_seconds_per_gb.map_or("-".to_string(), |c| format!("{c:.2}"));
        s.push_str(&format!(
            "{:<w$} {:>4} {:>10.3} {:>9.1} {:>11.0} {:>11.3} {:>12.2} {:>10} {:>7.3} {:>7.3}\n",
            r.config,
            r.runs,
            r.seconds_to_end,
            r.mb_per_second,
            r.records_per_second,
            r.lag_seconds_p99,
            r.lag_bytes_p99 / 1_048_576.0,
            cpu,
            r.time_ratio,
            r.speed_ratio
        ));
    }
    for r in rows {
        if let (Some(e), Some(d), Some(l)) =
            (r.pacing_max_relative_error, r.pacing_duration_error, r.pacing_max_late_seconds)
        {
            s.push_str(&format!(
                "{}: commits made available within {:.3}% of the capture's duration of their original times (the pacer at most {:.1} ms late); duration off by {:.3}%\n",
                r.config,
                e * 100.0,
                l * 1000.0,
                d * 100.0
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(t: f64, lag: u64, secs: f64, cpu: f64) -> Sample {
        Sample {
            t,
            replayed: Some(0),
            replay_lsn: None,
            replay_timestamp: None,
            available: 0,
            lag_bytes: Some(lag),
            lag_seconds: Some(secs),
            startup_cpu: Some(cpu),
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from));
        assert_eq!(p, Percentiles { p50: 50.0, p90: 90.0, p99: 99.0, max: 100.0 });
        assert_eq!(Percentiles::of([]), Percentiles::default());
        assert_eq!(Percentiles::of([7.0]).p50, 7.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn a_run_in_numbers() {
        let s = [sample(0.1, 100, 0.5, 0.2), sample(0.2, 0, 0.0, 0.5)];
        let r = summarize(&s, 2.0, 1 << 30, 1000);
        assert_eq!(r.mb_per_second, 512.0);
        assert_eq!(r.records_per_second, 500.0);
        assert_eq!(r.lag_bytes.max, 100.0);
        assert_eq!(r.startup_cpu_seconds_per_gb, Some(0.5));
    }

    #[test]
    fn ratios_against_the_first() {
        let run = |secs: f64| summarize(&[], secs, 1 << 20, 10);
        let rows = compare(&[
            ("a".into(), vec![run(2.0), run(4.0), run(3.0)]),
            ("b".into(), vec![run(6.0), run(6.0)]),
        ]);
        assert_eq!(rows[0].seconds_to_end, 3.0);
        assert_eq!(rows[1].time_ratio, 2.0);
        assert_eq!(rows[1].speed_ratio, 0.5);
        assert!(table(&rows).contains("speed×"));
        assert!(!table(&rows).contains("made available"));
        // a long name widens the name column; the numbers stay aligned
        let long =
            compare(&[("a".into(), vec![run(1.0)]), ("a-rather-long-name".into(), vec![run(1.0)])]);
        let t = table(&long);
        let ends: Vec<usize> = t.lines().map(|l| l.chars().count()).collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{t}");
    }

    #[test]
    fn pacing_worst_of_the_runs() {
        let run = |rel: f64, dur: f64| RunSummary {
            pacing: Some(PacingAccuracy {
                max_relative_error: rel,
                duration_error: dur,
                max_late_seconds: 0.003,
                ..Default::default()
            }),
            ..summarize(&[], 1.0, 1, 1)
        };
        let rows = compare(&[("a".into(), vec![run(0.002, -0.004), run(0.001, 0.001)])]);
        assert_eq!(rows[0].pacing_max_relative_error, Some(0.002));
        assert_eq!(rows[0].pacing_duration_error, Some(0.004));
        let t = table(&rows);
        assert!(t.contains("within 0.200% of the capture's duration"), "{t}");
        assert!(t.contains("duration off by 0.400%"), "{t}");
        assert!(t.contains("at most 3.0 ms late"), "{t}");
    }

    proptest! {
        #[test]
        fn percentiles_are_ordered(v in proptest::collection::vec(-1e9f64..1e9, 0..200)) {
            let p = Percentiles::of(v);
            prop_assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max);
        }
    }
}
