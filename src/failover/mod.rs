//! `walstream failover -c pgpool.conf`: a failover manager for PostgreSQL 15 clusters and
//! walstream nodes, configured as Pgpool-II is. Health checks find a dead primary; the
//! standby with the most WAL received is promoted (`pg_promote()`); `failover_command`
//! runs with Pgpool-II's placeholders; the other standbys follow (`follow_primary_command`,
//! or `ALTER SYSTEM SET primary_conninfo` + `pg_reload_conf()`). `--listen` forwards
//! clients to the current primary; `walstream failover status` shows the nodes as
//! `SHOW pool_nodes` does.
//!
//! Layout:
//! - [`config`]: pgpool.conf, its names, defaults and errors;
//! - [`state`]: the rules (up/down, which node is the primary, whom to promote,
//!   placeholders), with time passed in;
//! - [`probe`]: the queries to a node;
//! - [`manager`]: the loop that owns the state and acts;
//! - [`proxy`]: the `--listen` forwarder;
//! - [`status`]: the status file and its table.

pub mod config;
pub mod manager;
pub mod probe;
pub mod proxy;
pub mod state;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cli;
use crate::metrics::MetricsArgs;

/// `walstream failover`.
#[derive(Args, Debug)]
#[command(
    about = "Failover manager: health checks, promotion and follow, configured by a pgpool.conf",
    args_conflicts_with_subcommands = true
)]
pub struct FailoverArgs {
    #[command(subcommand)]
    command: Option<FailoverCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum FailoverCommand {
    /// Show the nodes as the running manager sees them (Pgpool-II's SHOW pool_nodes).
    Status {
        /// The pgpool.conf the manager runs with.
        #[arg(short = 'c', long = "config-file", value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The configuration file (pgpool.conf syntax and names).
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Forward client connections arriving here to the current primary.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    metrics: MetricsArgs,
}

/// Runs `walstream failover`.
pub fn main(args: FailoverArgs) -> ExitCode {
    match args.command {
        Some(FailoverCommand::Status { config }) => {
            cli::run("walstream failover status: ", cli::Flavor::CurrentThread, show_status(config))
        }
        None => {
            cli::init_logging("info");
            cli::run("walstream failover: ", cli::Flavor::MultiThread, run(args.run))
        }
    }
}

async fn show_status(path: PathBuf) -> Result<()> {
    let config = config::read(&path)?;
    let snapshot = status::read(&config.status_path())?;
    print!("{}", status::render(&snapshot));
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    let Some(path) = args.config else {
        anyhow::bail!("no configuration file given (-c FILE)");
    };
    let config = config::read(&path)?;
    let cancel = CancellationToken::new();
    cli::cancel_on_interrupt(cancel.clone());
    terminate_on_sigterm(cancel.clone());
    let (_leader_tx, leader) = watch::channel(true);
    let manager = manager::Manager::new(config, leader);
    let (events, rx) = mpsc::channel(1024);
    if let Some(addr) = args.listen {
        proxy::start(addr, manager.targets(), events.clone(), cancel.clone()).await?;
    }
    let snapshots = manager.snapshots();
    crate::metrics::start(&args.metrics, cancel.clone(), |m| m.add_failover(snapshots)).await?;
    manager.run(events, rx, cancel).await;
    Ok(())
}

/// SIGTERM stops the manager as Ctrl-C does.
fn terminate_on_sigterm(cancel: CancellationToken) {
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            cancel.cancel();
        }
    });
}
