//! `replay-bench run`: for each run, a throwaway standby from the capture's base backup,
//! walstream's sender serving the capture's WAL at the chosen pace (or, for a config given
//! a `--source`, a real primary that still has that WAL), samples every 100 ms until the
//! standby has replayed the end; then the numbers, the JSON and the plot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use walstream_protocol::Lsn;
use walstream_sender::auth::Roles;
use walstream_sender::config::Settings;
use walstream_sender::hba::HbaFile;
use walstream_sender::postmaster::{Postmaster, ShutdownMode};
use walstream_sender::registry::Registry;
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{DirWalSource, DirWalSourceOptions, WalSource};

use super::capture::Capture;
use super::paced::{accuracy, schedule, Pace, PacedWalSource};
use super::report::{summarize, RunSummary};
use super::sample::{self, Sample};
use super::standby::{Standby, Target};

/// How often the standby is sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// A named set of settings for the standby (`--config NAME:GUC=VALUE,...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// The name in the report.
    pub name: String,
    /// `postgresql.conf` settings over the backup's own.
    pub settings: Vec<(String, String)>,
}

impl std::str::FromStr for BenchConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<BenchConfig, String> {
        let (name, rest) = s.split_once(':').unwrap_or((s, ""));
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("invalid config \"{s}\": expected NAME:GUC=VALUE,..."));
        }
        let mut settings = Vec::new();
        for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    settings.push((k.trim().to_string(), v.trim().to_string()))
                }
                _ => {
                    return Err(format!(
                        "invalid setting \"{pair}\" in config \"{s}\": expected GUC=VALUE"
                    ))
                }
            }
        }
        Ok(BenchConfig { name: name.to_string(), settings })
    }
}

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The configs, run alternately.
    pub configs: Vec<BenchConfig>,
    /// Runs per config.
    pub runs: usize,
    /// The pace.
    pub pace: Pace,
    /// What the standbys are.
    pub target: Target,
    /// Configs whose standbys stream from a server (a libpq connection string) instead
    /// of walstream's sender; at `max` pace only.
    pub sources: BTreeMap<String, String>,
    /// The longest a run may take.
    pub timeout: Duration,
    /// SQL run on each standby once it replayed the end (results in the JSON).
    pub verify_sql: Vec<String>,
    /// Whether to draw a progress bar.
    pub progress: bool,
    /// The backend table every run's sender registers in (what `--metrics` shows).
    pub registry: Arc<Registry>,
}

/// One query's answer on a standby after its replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The SQL.
    pub sql: String,
    /// Its rows, each column as text (None for NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

/// One run, all of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The config's name.
    pub config: String,
    /// Which run of this config (from 1).
    pub run: usize,
    /// The numbers.
    pub summary: RunSummary,
    /// Answers of `--verify-sql`.
    pub verify: Vec<Verified>,
    /// Every sample.
    pub samples: Vec<Sample>,
}

/// Runs every config `plan.runs` times, alternately (A B A B ...).
///
/// # Errors
/// A run that fails (its standby's log in the error), or ctrl-c.
pub async fn run_all(
    cap: &Capture,
    plan: &RunPlan,
    cancel: &CancellationToken,
) -> Result<Vec<RunRecord>> {
    let mut out = Vec::new();
    for run in 1..=plan.runs {
        for config in &plan.configs {
            let rec = one_run(cap, plan, config, run, cancel)
                .await
                .with_context(|| format!("run {run} of config \"{}\"", config.name))?;
            out.push(rec);
        }
    }
    Ok(out)
}

/// The sender serving the capture on a loopback port, and how to stop it.
struct Sender {
    port: u16,
    shutdown: watch::Sender<Option<ShutdownMode>>,
    task: tokio::task::JoinHandle<()>,
    _slots: tempfile::TempDir,
}

async fn start_sender(source: Arc<dyn WalSource>, registry: Arc<Registry>) -> Result<Sender> {
    let slots_dir = tempfile::Builder::new().prefix("walstream-replay-bench-slots.").tempdir()?;
    let settings = Settings::default();
    let slots = SlotStore::open(
        &slots_dir.path().join("pg_replslot"),
        settings.max_replication_slots as usize,
    )
    .context("could not set up replication slots")?;
    let parts = crate::serve::server_parts(
        settings,
        HbaFile::loopback_trust(),
        Roles::permissive(),
        source,
        Arc::new(slots),
        registry,
    );
    let postmaster = Postmaster::bind(SocketAddr::from(([127, 0, 0, 1], 0)), parts)
        .await
        .context("could not listen on 127.0.0.1")?;
    let port = postmaster.local_addr()?.port();
    let (shutdown, rx) = watch::channel(None);
    let task = tokio::spawn(postmaster.run(rx));
    Ok(Sender { port, shutdown, task, _slots: slots_dir })
}

impl Sender {
    async fn stop(self) {
        let _ = self.shutdown.send(Some(ShutdownMode::Immediate));
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// The pacer's thread; it answers when each release was published.
type Pacer = tokio::task::JoinHandle<Vec<Duration>>;

/// Where a run's standby streams from.
enum Feed {
    /// walstream's sender serving the capture, paced.
    Walstream { sender: Sender, paced: Arc<PacedWalSource> },
    /// A server given by `--source`.
    Server(String),
}

impl Feed {
    async fn start(cap: &Capture, plan: &RunPlan, config: &BenchConfig) -> Result<Feed> {
        if let Some(conninfo) = plan.sources.get(&config.name) {
            return Ok(Feed::Server(conninfo.clone()));
        }
        let dir = DirWalSource::open(&cap.wal_dir(), DirWalSourceOptions::default()).with_context(
            || format!("could not open the capture's WAL \"{}\"", cap.wal_dir().display()),
        )?;
        let served = dir.current_end().flushed;
        if served < cap.end {
            bail!(
                "the capture's WAL can be served up to {served} only, before its end {}",
                cap.end
            );
        }
        let paced = PacedWalSource::new(dir, cap.start);
        let sender = start_sender(paced.clone(), plan.registry.clone()).await?;
        Ok(Feed::Walstream { sender, paced })
    }

    fn primary_conninfo(&self) -> String {
        match self {
            Feed::Walstream { sender, .. } => format!(
                "host=127.0.0.1 port={} user=postgres application_name=replay-bench",
                sender.port
            ),
            Feed::Server(c) => c.clone(),
        }
    }

    /// The schedule of releases from `t0` (a server's: everything at once), and the
    /// pacer publishing it on a thread of its own, which answers when each was published.
    fn pace(
        &self,
        cap: &Capture,
        pace: Pace,
        t0: Instant,
        cancel: &CancellationToken,
    ) -> (Vec<(Duration, Lsn)>, Option<Pacer>) {
        match self {
            Feed::Walstream { paced, .. } => {
                let releases = schedule(&cap.scan.commits, cap.end, pace);
                let (paced, plan, stop) = (paced.clone(), releases.clone(), cancel.clone());
                let t0 = t0.into_std();
                let pacer =
                    tokio::task::spawn_blocking(move || paced.run_blocking(t0, &plan, &stop));
                (releases, Some(pacer))
            }
            Feed::Server(_) => (schedule(&cap.scan.commits, cap.end, Pace::Max), None),
        }
    }

    /// The end made available so far (a server has all of it from the start).
    fn available(&self, cap: &Capture) -> Lsn {
        match self {
            Feed::Walstream { paced, .. } => paced.available(),
            Feed::Server(_) => cap.end,
        }
    }

    async fn stop(self) {
        if let Feed::Walstream { sender, .. } = self {
            sender.stop().await;
        }
    }
}

/// A standby of `config` made from the capture's base backup, streaming from `feed` (a
/// node standby gets the start's segment, see [`Capture::start_segment`]).
async fn start_standby(
    cap: &Capture,
    plan: &RunPlan,
    config: &BenchConfig,
    feed: &Feed,
) -> Result<Standby> {
    let seed = match plan.target {
        Target::Node(_) => Some(cap.start_segment()?),
        Target::Pg(_) => None,
    };
    let (target, base, settings, conninfo) =
        (plan.target.clone(), cap.base_dir(), config.settings.clone(), feed.primary_conninfo());
    tokio::task::spawn_blocking(move || {
        Standby::start(&target, &base, &settings, &conninfo, seed.as_ref())
    })
    .await
    .map_err(|e| anyhow::anyhow!("starting the standby: {e}"))?
}

async fn one_run(
    cap: &Capture,
    plan: &RunPlan,
    config: &BenchConfig,
    run: usize,
    cancel: &CancellationToken,
) -> Result<RunRecord> {
    let feed = Feed::start(cap, plan, config).await?;
    let mut standby = match start_standby(cap, plan, config, &feed).await {
        Ok(s) => s,
        Err(e) => {
            feed.stop().await;
            return Err(e);
        }
    };
    let t0 = Instant::now();
    let pace_cancel = cancel.child_token();
    let (releases, pacer) = feed.pace(cap, plan.pace, t0, &pace_cancel);
    let bar = progress_bar(plan.progress, cap, &format!("{} #{run}", config.name));
    let result =
        sample_until_end(cap, plan, &mut standby, &feed, &releases, t0, &bar, cancel).await;
    bar.finish_and_clear();
    pace_cancel.cancel();
    let published = match pacer {
        Some(p) => p.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let result = match result {
        Ok((samples, secs, client)) => {
            let verify = verify(&client, &plan.verify_sql).await;
            verify.map(|v| (samples, secs, v))
        }
        Err(e) => Err(e),
    };
    let _ = tokio::task::spawn_blocking(move || standby.stop()).await;
    feed.stop().await;
    let (samples, secs, verify) = result?;
    let bytes = cap.end.0.saturating_sub(cap.start.0);
    let mut summary = summarize(&samples, secs, bytes, cap.manifest.total_records());
    summary.pacing = accuracy(&cap.scan.commits, cap.end, plan.pace, &published);
    Ok(RunRecord { config: config.name.clone(), run, summary, verify, samples })
}

fn progress_bar(show: bool, cap: &Capture, name: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(cap.end.0.saturating_sub(cap.start.0));
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:16} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// Lag in seconds at `t` (seconds from the run's start) with `replayed` replayed: how
/// long the oldest released, unreplayed position has been waiting.
pub fn lag_seconds(releases: &[(Duration, Lsn)], replayed: Lsn, t: f64) -> f64 {
    let i = releases.partition_point(|r| r.1 <= replayed);
    match releases.get(i) {
        Some((at, _)) if at.as_secs_f64() <= t => t - at.as_secs_f64(),
        _ => 0.0,
    }
}

#[allow(clippy::too_many_arguments)]
async fn sample_until_end(
    cap: &Capture,
    plan: &RunPlan,
    standby: &mut Standby,
    feed: &Feed,
    releases: &[(Duration, Lsn)],
    t0: Instant,
    bar: &ProgressBar,
    cancel: &CancellationToken,
) -> Result<(Vec<Sample>, f64, tokio_postgres::Client)> {
    let proc = std::path::Path::new("/proc");
    let mut samples = Vec::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut startup = None;
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => bail!("interrupted"),
            _ = tick.tick() => {}
        }
        standby.check_alive()?;
        let t = t0.elapsed().as_secs_f64();
        if t > plan.timeout.as_secs_f64() {
            let at = samples.iter().rev().find_map(|s: &Sample| s.replay_lsn.clone());
            bail!(
                "the standby did not replay up to {} within {:?} (replayed up to {}); the last lines of its log:\n{}",
                cap.end,
                plan.timeout,
                at.as_deref().unwrap_or("nothing yet"),
                standby.log_tail()
            );
        }
        if client.is_none() {
            let connected =
                tokio::time::timeout(Duration::from_secs(2), sample::connect(standby.port())).await;
            client = connected.ok().and_then(Result::ok);
        }
        let mut replay = (None, None);
        if let Some(c) = &client {
            match tokio::time::timeout(
                Duration::from_secs(2),
                sample::query_replay(c, standby.is_node()),
            )
            .await
            {
                Ok(Ok(r)) => replay = r,
                _ => client = None,
            }
        }
        if startup.is_none() {
            startup = standby.replay_pid(proc);
        }
        let available = feed.available(cap);
        let (lsn, ts) = replay;
        let s = Sample {
            t,
            replayed: lsn.map(|l: Lsn| l.0.saturating_sub(cap.start.0)),
            replay_lsn: lsn.map(|l| l.to_string()),
            replay_timestamp: ts,
            available: available.0.saturating_sub(cap.start.0),
            lag_bytes: lsn.map(|l| available.0.saturating_sub(l.0)),
            lag_seconds: lsn.map(|l| lag_seconds(releases, l, t)),
            startup_cpu: startup.and_then(|pid| sample::cpu_seconds(proc, pid)),
        };
        if let Some(r) = s.replayed {
            bar.set_position(r);
        }
        samples.push(s);
        if let (Some(l), Some(c)) = (lsn, client.take()) {
            if l >= cap.end {
                return Ok((samples, t, c));
            }
            client = Some(c);
        }
    }
}

async fn verify(client: &tokio_postgres::Client, sqls: &[String]) -> Result<Vec<Verified>> {
    let mut out = Vec::new();
    for sql in sqls {
        let msgs = client
            .simple_query(sql)
            .await
            .with_context(|| format!("--verify-sql \"{sql}\" failed on the standby"))?;
        let rows = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect();
        out.push(Verified { sql: sql.clone(), rows });
    }
    Ok(out)
}

/// Where a run's files go by default: `CAPTURE/results`.
pub fn default_output(capture: &std::path::Path) -> PathBuf {
    capture.join("results")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse() {
        let c: BenchConfig = "prefetch:recovery_prefetch=off, shared_buffers=1GB".parse().unwrap();
        assert_eq!(c.name, "prefetch");
        assert_eq!(
            c.settings,
            vec![
                ("recovery_prefetch".into(), "off".into()),
                ("shared_buffers".into(), "1GB".into())
            ]
        );
        assert_eq!("plain".parse::<BenchConfig>().unwrap().settings, vec![]);
        assert!(":a=b".parse::<BenchConfig>().is_err());
        assert!("n:novalue".parse::<BenchConfig>().is_err());
    }

    #[test]
    fn lag_is_the_oldest_waiting_release() {
        let releases = [
            (Duration::from_secs(0), Lsn(100)),
            (Duration::from_secs(2), Lsn(200)),
            (Duration::from_secs(5), Lsn(300)),
        ];
        assert_eq!(lag_seconds(&releases, Lsn(50), 1.0), 1.0);
        assert_eq!(lag_seconds(&releases, Lsn(100), 1.0), 0.0);
        assert_eq!(lag_seconds(&releases, Lsn(100), 3.5), 1.5);
        assert_eq!(lag_seconds(&releases, Lsn(300), 9.0), 0.0);
    }
}
