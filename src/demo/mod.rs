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
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli;
use nodes::{conninfo, Pair};
use progress::{Line, Progress, Sample, Summary};

/// How often the positions are sampled.
const TICK: Duration = Duration::from_millis(250);
/// How often a plain (not a terminal) progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(1);
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
    let commits = Arc::new(AtomicU64::new(0));
    let stop = cancel.child_token();
    let mut clients = JoinSet::new();
    for n in 1..=args.clients {
        let task =
            workload::run_client(pair.primary.local_addr(), n, stop.clone(), commits.clone());
        clients.spawn(async move { task.await.with_context(|| format!("client {n}")) });
    }
    println!("workload: {} clients writing for {} s", args.clients, args.seconds);
    let start_flush = pair.primary_flush();
    let started = Instant::now();
    let mut shown = Shown::new(args.seconds);
    let mut progress = Progress::default();
    let mut tick = tokio::time::interval(TICK);
    let run_for = Duration::from_secs(args.seconds);
    let failed = loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break None,
            Some(done) = clients.join_next() => match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break Some(e),
                Err(e) => break Some(anyhow::anyhow!("a client task failed: {e}")),
            },
            _ = tick.tick() => {
                let at = started.elapsed();
                let line = progress.observe(sample(pair, at, &commits));
                shown.show(at, &line);
                if at >= run_for {
                    break None;
                }
            }
        }
    };
    stop.cancel();
    let elapsed = started.elapsed();
    while let Some(done) = clients.join_next().await {
        if let (None, Ok(Err(e))) = (&failed, done) {
            shown.finish();
            return Err(e);
        }
    }
    if let Some(e) = failed {
        shown.finish();
        return Err(e);
    }
    if cancel.is_cancelled() {
        shown.finish();
        bail!("interrupted");
    }
    let end_flush = pair.primary_flush();
    let caught = Instant::now();
    let wait = pair.wait_replayed(end_flush, CATCH_UP_LIMIT, cancel);
    tokio::pin!(wait);
    let waited = loop {
        tokio::select! {
            r = &mut wait => break r,
            _ = tick.tick() => {
                let at = started.elapsed();
                let line = progress.observe(sample(pair, at, &commits));
                shown.show(at, &line);
            }
        }
    };
    let catch_up = caught.elapsed();
    let line = progress.observe(sample(pair, started.elapsed(), &commits));
    shown.show(started.elapsed(), &line);
    shown.finish();
    waited?;
    println!("standby: replayed up to {end_flush}, the primary's flushed WAL end");

    let commits = commits.load(Ordering::Relaxed);
    let tables_match = compare_tables(pair, commits).await?;
    let summary = Summary {
        clients: args.clients,
        commits,
        elapsed,
        wal_bytes: end_flush.saturating_distance(start_flush),
        max_lag_bytes: progress.max_lag_bytes,
        max_lag_time: progress.max_lag_time,
        catch_up,
        tables_match,
    };
    println!("\n{summary}");
    Ok(tables_match)
}

fn sample(pair: &Pair, at: Duration, commits: &AtomicU64) -> Sample {
    let p = pair.positions();
    Sample {
        at,
        commits: commits.load(Ordering::Relaxed),
        primary_flush: p.primary_flush,
        sent: p.sent,
        standby_flush: p.standby_flush,
        replayed: p.replayed,
        wall: SystemTime::now(),
        last_replayed_commit: p.last_replayed_commit,
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
