//! `walstream demo`: a primary and a hot standby of walstream's node in a temporary
//! directory, no PostgreSQL needed. initdb makes the primary, a base backup through
//! BASE_BACKUP (`-X stream -R`) the standby; clients write while the progress shows the
//! commit rate, the positions and the replay lag; then the standby catches up, its tables
//! are compared with the primary's, a summary is printed and everything is cleaned up
//! (or, with `--keep`, left running until Ctrl-C).

mod compare;
mod nodes;
mod progress;
mod workload;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use walstream_protocol::Lsn;

use crate::cli;
use nodes::{conninfo, Pair};
use progress::{Line, Progress, Sample, Summary};

/// How often the positions are sampled.
const TICK: Duration = Duration::from_millis(250);
/// How often a plain (not a terminal) progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(1);
/// How many of the primary's flushes are kept between two samples at most.
const MAX_FLUSHES: usize = 100_000;
/// How long the standby may take to catch up after the workload.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(120);

/// Arguments of `walstream demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Client connections writing at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    clients: u32,
    /// How long the clients write, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Leave the primary and the standby running (until Ctrl-C) and print how to connect.
    #[arg(long)]
    keep: bool,
}

/// Runs `walstream demo`.
pub fn main(args: DemoArgs) -> ExitCode {
    cli::init_logging("warn");
    cli::run("walstream demo: error: ", cli::Flavor::MultiThread, run(args))
}

async fn run(args: DemoArgs) -> Result<()> {
    let cancel = CancellationToken::new();
    cli::cancel_on_interrupt(cancel.clone());
    let say = |s: &str| println!("{s}");
    let start = nodes::start_pair(say, |addr| async move {
        let db = workload::connect(addr).await?;
        db.batch_execute(workload::SCHEMA).await.context("could not create the tables")
    });
    // Ctrl-C while setting up: dropping the set-up removes its directory.
    let pair = tokio::select! {
        biased;
        _ = cancel.cancelled() => bail!("interrupted"),
        pair = start => pair?,
    };
    let outcome = demo(&pair, &args, &cancel).await;
    if args.keep && outcome.is_ok() {
        println!("\nThe primary and the standby keep running; connect with psql:");
        println!("  primary: psql \"{}\"", conninfo(pair.primary.local_addr()));
        println!("  standby: psql \"{}\"", conninfo(pair.standby.local_addr()));
        println!("Their data directories are under {}.", pair.dir().display());
        println!("Press Ctrl-C to stop both and remove them.");
        cancel.cancelled().await;
    }
    let stopped = pair.stop().await;
    match outcome? {
        true => stopped,
        false => bail!("the standby's tables differ from the primary's"),
    }
}

/// The workload, the catch-up and the comparison; whether the tables match.
async fn demo(pair: &Pair, args: &DemoArgs, cancel: &CancellationToken) -> Result<bool> {
    let stop_log = cancel.child_token();
    let _stop_log = stop_log.clone().drop_guard();
    let mut watch = Watch {
        pair,
        flushes: log_flushes(pair, stop_log),
        commits: Arc::new(AtomicU64::new(0)),
        started: Instant::now(),
        shown: Shown::new(args.seconds),
        progress: Progress::default(),
        tick: tokio::time::interval(TICK),
    };
    let start_flush = pair.primary_flush();
    let workload = run_workload(&mut watch, args, cancel).await;
    let caught = Instant::now();
    let caught_up = match workload {
        Ok(()) => catch_up(&mut watch, cancel).await,
        Err(e) => Err(e),
    };
    watch.shown.finish();
    let (elapsed, end_flush) = caught_up?;
    let catch_up = caught.elapsed();
    println!("standby: replayed up to {end_flush}, the primary's flushed WAL end");

    let commits = watch.commits.load(Ordering::Relaxed);
    let tables_match = compare_tables(pair, commits).await?;
    let summary = Summary {
        clients: args.clients,
        commits,
        elapsed,
        wal_bytes: end_flush.saturating_distance(start_flush),
        max_lag_bytes: watch.progress.max_lag_bytes,
        max_lag_time: watch.progress.max_lag_time,
        catch_up,
        tables_match,
    };
    println!("\n{summary}");
    Ok(tables_match)
}

/// What the progress display is fed from, and where it goes.
struct Watch<'a> {
    pair: &'a Pair,
    flushes: Arc<Mutex<Vec<(Instant, Lsn)>>>,
    commits: Arc<AtomicU64>,
    started: Instant,
    shown: Shown,
    progress: Progress,
    tick: tokio::time::Interval,
}

impl Watch<'_> {
    /// Samples the positions and shows them; the time since the start.
    fn show(&mut self) -> Duration {
        let at = self.started.elapsed();
        let flushes = std::mem::take(&mut *lock(&self.flushes))
            .into_iter()
            .map(|(t, lsn)| (t.saturating_duration_since(self.started), lsn))
            .collect();
        let line = self.progress.observe(&sample(self.pair, at, &self.commits, flushes));
        self.shown.show(at, &line);
        at
    }
}

/// Runs the clients for `--seconds`, showing progress; the first client failure ends it.
async fn run_workload(
    watch: &mut Watch<'_>,
    args: &DemoArgs,
    cancel: &CancellationToken,
) -> Result<()> {
    let stop = cancel.child_token();
    let mut clients = JoinSet::new();
    let addr = watch.pair.primary.local_addr();
    for n in 1..=args.clients {
        let task = workload::run_client(addr, n, stop.clone(), watch.commits.clone());
        clients.spawn(async move { task.await.with_context(|| format!("client {n}")) });
    }
    println!("workload: {} clients writing for {} s", args.clients, args.seconds);
    watch.started = Instant::now();
    let run_for = Duration::from_secs(args.seconds);
    let mut failed = loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break None,
            Some(done) = clients.join_next() => {
                if let Some(e) = client_error(done) {
                    break Some(e);
                }
            }
            _ = watch.tick.tick() => {
                if watch.show() >= run_for {
                    break None;
                }
            }
        }
    };
    stop.cancel();
    while let Some(done) = clients.join_next().await {
        if failed.is_none() {
            failed = client_error(done);
        }
    }
    match failed {
        Some(e) => Err(e),
        None if cancel.is_cancelled() => bail!("interrupted"),
        None => Ok(()),
    }
}

/// Waits for the standby to replay all the primary flushed, showing progress; how long the
/// workload ran, and the primary's flushed end.
async fn catch_up(watch: &mut Watch<'_>, cancel: &CancellationToken) -> Result<(Duration, Lsn)> {
    let elapsed = watch.started.elapsed();
    let end_flush = watch.pair.primary_flush();
    let pair = watch.pair;
    let wait = pair.wait_replayed(end_flush, CATCH_UP_LIMIT, cancel);
    tokio::pin!(wait);
    let waited = loop {
        tokio::select! {
            r = &mut wait => break r,
            _ = watch.tick.tick() => {
                watch.show();
            }
        }
    };
    watch.show();
    waited.map(|()| (elapsed, end_flush))
}

/// A client's failure, if it failed.
fn client_error(done: Result<Result<()>, tokio::task::JoinError>) -> Option<anyhow::Error> {
    match done {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(anyhow::anyhow!("a client task failed: {e}")),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Logs when the primary flushes what, until `stop`, for the replay lag in time.
fn log_flushes(pair: &Pair, stop: CancellationToken) -> Arc<Mutex<Vec<(Instant, Lsn)>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut flushed) = pair.flushed() {
        let log = log.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    changed = flushed.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let lsn = *flushed.borrow_and_update();
                        let mut log = lock(&log);
                        if log.len() < MAX_FLUSHES {
                            log.push((Instant::now(), lsn));
                        }
                    }
                }
            }
        });
    }
    log
}

fn sample(pair: &Pair, at: Duration, commits: &AtomicU64, flushes: Vec<(Duration, Lsn)>) -> Sample {
    let p = pair.positions();
    Sample {
        at,
        commits: commits.load(Ordering::Relaxed),
        primary_flush: p.primary_flush,
        sent: p.sent,
        standby_flush: p.standby_flush,
        replayed: p.replayed,
        flushes,
    }
}

/// Runs the comparison queries on both nodes and prints each table's result; also checks
/// that every acknowledged commit left its history row on the primary.
async fn compare_tables(pair: &Pair, commits: u64) -> Result<bool> {
    let primary = workload::connect(pair.primary.local_addr()).await?;
    let standby = workload::connect(pair.standby.local_addr()).await?;
    let checks = compare::check_tables(&primary, &standby).await?;
    println!("comparing count, sum, min and max of every column on both nodes:");
    for c in &checks {
        let rows = c.count().map_or("?".into(), |n| n.to_string());
        let verdict = if c.matches() { "equal" } else { "DIFFERENT" };
        println!("  {:<9} {rows:>8} rows  {verdict}", c.table);
        if !c.matches() {
            println!("    primary: {:?}\n    standby: {:?}", c.primary, c.standby);
        }
    }
    let history = checks.iter().find(|c| c.table == "history").and_then(|c| c.count());
    if history != Some(commits) {
        bail!(
            "the primary's history table has {} rows for {commits} acknowledged commits",
            history.map_or("an unknown number of".into(), |n| n.to_string())
        );
    }
    Ok(checks.iter().all(compare::TableCheck::matches))
}

/// The progress on the terminal (an indicatif bar) or as plain lines.
enum Shown {
    Bar(ProgressBar),
    Plain { next: Duration },
}

impl Shown {
    fn new(seconds: u64) -> Shown {
        if !std::io::stdout().is_terminal() {
            return Shown::Plain { next: Duration::ZERO };
        }
        let bar = ProgressBar::with_draw_target(Some(seconds), ProgressDrawTarget::stdout());
        let style =
            ProgressStyle::with_template("{spinner} {bar:20} {pos:>3}/{len} s {prefix}\n  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        Shown::Bar(bar)
    }

    fn show(&mut self, at: Duration, line: &Line) {
        match self {
            Shown::Bar(bar) => {
                bar.set_position(at.as_secs().min(bar.length().unwrap_or(u64::MAX)));
                bar.set_prefix(line.rate());
                bar.set_message(line.positions());
            }
            Shown::Plain { next } if at >= *next => {
                println!("{:>6.1} s  {line}", at.as_secs_f64());
                *next = at + PLAIN_EVERY;
            }
            Shown::Plain { .. } => {}
        }
    }

    fn finish(&mut self) {
        if let Shown::Bar(bar) = self {
            bar.finish();
        }
    }
}
