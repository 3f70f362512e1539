//! `walstream node`: runs a node (a small database whose WAL is PostgreSQL 15 WAL) until
//! SIGTERM (smart shutdown), SIGINT (fast) or SIGQUIT (immediate), as the postmaster does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use tokio::sync::watch;
use walstream_node::server::{Node, NodeOptions};

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

async fn run(args: NodeArgs) -> Result<()> {
    let opts = NodeOptions {
        dir: args.pgdata,
        listen: args.listen,
        overrides: overrides(&args.settings)?,
    };
    let node = Node::start(opts).await?;
    tracing::info!("listening on {}", node.local_addr());
    let cancel = tokio_util::sync::CancellationToken::new();
    let backends = node.registry().clone();
    let _guard = cancel.clone().drop_guard();
    let writer = node.wal_writer();
    let replayed = node.replay_rmgr_counts();
    crate::metrics::start(&args.metrics, cancel, |m| {
        m.add_backends(backends);
        if let Some(writer) = writer {
            m.add_wal_writer(writer);
        }
        if let Some(rmgrs) = replayed {
            m.add_replayed_records(rmgrs);
        }
    })
    .await?;
    let (tx, mut rx) = watch::channel(None);
    tokio::spawn(cli::forward_signals(tx));
    // SIGHUP: reload the configuration files, as the postmaster does.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // SIGUSR1: a promote request (`walstream promote`), as the postmaster takes it.
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut fatal = node.fatal();
    let mode = loop {
        tokio::select! {
            _ = hangups.recv() => {
                node.reload();
                continue;
            }
            _ = usr1.recv() => {
                node.request_promotion();
                continue;
            }
            Ok(()) = fatal.changed() => {
                let why = fatal.borrow_and_update().clone();
                if let Some(why) = why {
                    node.stop(walstream_sender::postmaster::ShutdownMode::Immediate).await?;
                    bail!("{why}");
                }
                continue;
            }
            r = rx.changed() => if r.is_err() {
                bail!("the signal handler ended");
            },
        }
        if let Some(mode) = *rx.borrow_and_update() {
            break mode;
        }
    };
    node.stop(mode).await?;
    Ok(())
}
