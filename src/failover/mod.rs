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
//! - [`status`]: the status file and its table;
//! - [`dcs`]: `--dcs etcd://...`, the leader lease among several managers.

pub mod config;
pub mod dcs;
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
    /// Coordinate with other managers through etcd: etcd://HOST:PORT[,HOST:PORT...]
    /// (without it, this manager runs alone and always acts).
    #[arg(long, value_name = "URL")]
    dcs: Option<String>,
    /// The key prefix in etcd is /walstream/failover/SCOPE.
    #[arg(long, value_name = "SCOPE", default_value = "walstream")]
    dcs_scope: String,
    /// This manager's name in etcd (default: hostname:pid).
    #[arg(long, value_name = "NAME")]
    dcs_name: Option<String>,
    /// Seconds the leader lease lasts without renewal.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    dcs_ttl: u64,
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
    let dcs = match &args.dcs {
        Some(url) => Some(dcs::DcsConfig {
            endpoints: dcs::parse_endpoints(url)?,
            prefix: format!("/walstream/failover/{}", args.dcs_scope),
            name: args.dcs_name.clone().unwrap_or_else(dcs::default_name),
            ttl: std::time::Duration::from_secs(args.dcs_ttl.max(3)),
        }),
        None => None,
    };
    // Alone, a manager always acts; with etcd, only while it holds the lease.
    let (leader_tx, leader) = watch::channel(dcs.is_none());
    let (hint_tx, hint) = watch::channel(None);
    let manager = manager::Manager::new(config, leader, hint);
    let (events, rx) = mpsc::channel(1024);
    if let Some(addr) = args.listen {
        proxy::start(addr, manager.targets(), events.clone(), cancel.clone()).await?;
    }
    let snapshots = manager.snapshots();
    crate::metrics::start(&args.metrics, cancel.clone(), |m| m.add_failover(snapshots)).await?;
    if let Some(dcs) = dcs {
        tokio::spawn(dcs::run(dcs, leader_tx, hint_tx, manager.snapshots(), cancel.clone()));
    }
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
