//! `walstream node`: runs a node (a small database whose WAL is PostgreSQL 15 WAL) until
//! SIGTERM (smart shutdown), SIGINT (fast) or SIGQUIT (immediate), as the postmaster does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use std::time::Duration;
use tokio::sync::watch;

use walstream_node::bgworker::sampler;
use walstream_node::server::{Node, NodeOptions};
use walstream_sender::postmaster::ShutdownMode;

use crate::cli;

/// Arguments of `walstream node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The data directory (made by `walstream initdb` or `pg_basebackup`).
    #[arg(short = 'D', value_name = "DATADIR")]
    pgdata: PathBuf,
    /// Where to listen (default: `listen_addresses` and `port` of the settings).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Sets a run-time parameter, after the configuration files.
    #[arg(short = 'c', value_name = "NAME=VALUE")]
    settings: Vec<String>,
    /// Runs the example background worker that copies pg_stat_replication into the table
    /// walstream_replication_samples every SECS seconds (on a primary).
    #[arg(long, value_name = "SECS")]
    sample_replication: Option<u64>,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
}

/// Runs `walstream node`.
pub fn main(args: NodeArgs) -> ExitCode {
    cli::init_logging("info");
    cli::run("walstream node: ", cli::Flavor::MultiThread, run(args))
}

fn overrides(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((n, v)) => Ok((n.trim().to_string(), v.trim().to_string())),
            None => bail!("-c {pair} requires a value"),
        })
        .collect()
}

/// What ended one run of the node.
enum RunEnd {
    /// A shutdown signal: stop in this mode.
    Stop(ShutdownMode),
    /// A crash: the crash-restart cycle.
    Crash,
}

async fn run(args: NodeArgs) -> Result<()> {
    let mut opts = NodeOptions {
        dir: args.pgdata,
        listen: args.listen,
        overrides: overrides(&args.settings)?,
    };
    let workers = || {
        args.sample_replication
            .map(|secs| sampler::registration(Duration::from_secs(secs.max(1))))
            .into_iter()
            .collect::<Vec<_>>()
    };
    let (tx, mut rx) = watch::channel(None);
    tokio::spawn(cli::forward_signals(tx));
    // SIGHUP: reload the configuration files, as the postmaster does.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // SIGUSR1: a promote request (`walstream promote`), as the postmaster takes it.
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let mut first = true;
    loop {
        let node = Node::start_with_workers(opts.clone(), workers()).await?;
        tracing::info!("listening on {}", node.local_addr());
        if first {
            // The metrics follow the first run's backends and WAL writer.
            let backends = node.registry().clone();
            let writer = node.writer();
            let replayed = node.replay_rmgr_counts();
            crate::metrics::start(&args.metrics, cancel.clone(), |m| {
                m.add_backends(backends);
                if let Some(writer) = writer {
                    m.add_wal_writer(writer);
                }
                if let Some(rmgrs) = replayed {
                    m.add_replayed_records(rmgrs);
                }
            })
            .await?;
            first = false;
        }
        let mut fatal = node.fatal();
        let mut crashed = node.crashed();
        let end = loop {
            tokio::select! {
                _ = hangups.recv() => node.reload(),
                _ = usr1.recv() => node.request_promotion(),
                Ok(()) = fatal.changed() => {
                    let why = fatal.borrow_and_update().clone();
                    if let Some(why) = why {
                        node.stop(ShutdownMode::Immediate).await?;
                        bail!("{why}");
                    }
                }
                Ok(()) = crashed.changed() => {
                    if crashed.borrow_and_update().is_some() {
                        break RunEnd::Crash;
                    }
                }
                r = rx.changed() => {
                    if r.is_err() {
                        bail!("the signal handler ended");
                    }
                    if let Some(mode) = *rx.borrow_and_update() {
                        break RunEnd::Stop(mode);
                    }
                }
            }
        };
        match end {
            RunEnd::Stop(mode) => {
                node.stop(mode).await?;
                return Ok(());
            }
            RunEnd::Crash => {
                // postmaster.c: PostmasterStateMachine — reinitialize on the same port.
                opts.listen = Some(node.local_addr());
                node.crash_stop().await?;
            }
        }
    }
}
