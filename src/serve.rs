//! `walstream serve`: serve a directory of WAL segments to standbys, as a walsender.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::sync::watch;
use walstream_sender::auth::Roles;
use walstream_sender::config::Settings;
use walstream_sender::hba::HbaFile;
use walstream_sender::postmaster::{Postmaster, ServerParts};
use walstream_sender::registry::Registry;
use walstream_sender::serve_handler::ServeHandler;
use walstream_sender::slots::SlotStore;
use walstream_sender::tls::ServerTls;
use walstream_sender::walsource::{DirWalSource, DirWalSourceOptions, WalSource};

use crate::cli::{self, Flavor};
use crate::metrics::{self, MetricsArgs};

/// Arguments of `walstream serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The directory of WAL segment files (and history files) to serve.
    #[arg(short = 'D', long = "directory", value_name = "WALDIR")]
    directory: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

/// What every walstream server takes: where to listen, who may connect, settings.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5432")]
    pub listen: SocketAddr,
    /// Authentication rules in pg_hba.conf syntax (default: trust on loopback only).
    #[arg(long, value_name = "FILE")]
    pub hba: Option<PathBuf>,
    /// Roles, one `role:verifier [ATTRIBUTES]` per line, verifiers as in pg_authid.rolpassword
    /// (default: any role name, superuser, no password).
    #[arg(long, value_name = "FILE")]
    pub passwords: Option<PathBuf>,
    /// Set a setting by its PostgreSQL name: wal_sender_timeout, max_wal_senders,
    /// max_connections, max_replication_slots, walstream.max_send_size, ...
    #[arg(short = 'c', value_name = "NAME=VALUE")]
    pub settings: Vec<String>,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

impl ServerArgs {
    /// The settings, hba rules and roles these arguments name.
    ///
    /// # Errors
    /// A bad `-c`, or a file that cannot be read or parsed.
    pub fn load(&self) -> Result<(Settings, HbaFile, Roles)> {
        let settings = parse_settings(&self.settings)?;
        let hba = match &self.hba {
            Some(path) => {
                HbaFile::load(path).with_context(|| format!("loading {}", path.display()))?
            }
            None => HbaFile::loopback_trust(),
        };
        let roles = match &self.passwords {
            Some(path) => {
                Roles::load(path).with_context(|| format!("loading {}", path.display()))?
            }
            None => Roles::permissive(),
        };
        Ok((settings, hba, roles))
    }
}

/// A server's parts around `source`: a fresh registry and the serve handler
/// (`SELECT 1`, `SHOW`, the signalling functions, the stat views).
pub fn server_parts(
    settings: Settings,
    hba: HbaFile,
    roles: Roles,
    source: Arc<dyn WalSource>,
    slots: Arc<SlotStore>,
    registry: Arc<Registry>,
) -> ServerParts {
    let show_source = source.clone();
    let show_settings = settings.clone();
    let handler = ServeHandler::new(
        Arc::new(move |name: &str| match name.to_ascii_lowercase().as_str() {
            "wal_segment_size" => Some(show_source.seg_size().show()),
            other => show_settings.show(other),
        }),
        registry.clone(),
    )
    .with_settings(settings.clone());
    ServerParts {
        settings,
        hba,
        roles,
        source,
        slots,
        handler: Arc::new(handler),
        registry,
        backup: None,
        tls: None,
    }
}

/// The TLS the `ssl*` settings describe, files relative to `dir` (as PostgreSQL takes them
/// from its data directory); `None` with `ssl=off`.
///
/// # Errors
/// A certificate, key or CA file that cannot be used, with PostgreSQL's FATAL text.
pub fn load_tls(settings: &Settings, dir: &std::path::Path) -> Result<Option<Arc<ServerTls>>> {
    ServerTls::load(&settings.ssl, dir).map_err(|e| match e.detail {
        Some(detail) => anyhow::anyhow!("{}\nDETAIL:  {detail}", e.message),
        None => anyhow::anyhow!("{}", e.message),
    })
}

/// Binds `listen` and runs the postmaster until a signal shuts it down.
///
/// # Errors
/// The address cannot be bound.
pub async fn run_postmaster(listen: SocketAddr, parts: ServerParts) -> Result<()> {
    let postmaster = Postmaster::bind(listen, parts)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    tracing::info!("listening on {}", postmaster.local_addr()?);
    let (tx, rx) = watch::channel(None);
    tokio::spawn(cli::forward_signals(tx));
    postmaster.run(rx).await;
    Ok(())
}

/// Runs `walstream serve`.
pub fn main(args: ServeArgs) -> ExitCode {
    cli::init_logging("info");
    cli::run("walstream serve: ", Flavor::MultiThread, serve(args))
}

fn parse_settings(pairs: &[String]) -> Result<Settings> {
    let mut settings = Settings::default();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("-c {pair}: expected NAME=VALUE");
        };
        settings.set(name.trim(), value.trim()).map_err(|e| anyhow::anyhow!("-c {pair}: {e}"))?;
    }
    Ok(settings)
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (settings, hba, roles) = args.server.load()?;
    let tls = load_tls(&settings, &args.directory)?;
    let source = DirWalSource::open(&args.directory, DirWalSourceOptions::default())
        .with_context(|| format!("opening WAL directory {}", args.directory.display()))?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let growth = source.watch_for_growth(cancel.clone());
    let slots = SlotStore::open(
        &args.directory.join("pg_replslot"),
        settings.max_replication_slots as usize,
    )
    .context("loading replication slots")?;
    let slots = Arc::new(slots);
    let retention = settings.max_wal_size_mb.map(|max_wal_size| {
        let keep_mb = max_wal_size.max(settings.wal_keep_size_mb);
        tokio::spawn(walstream_sender::retention::run(
            source.clone(),
            slots.clone(),
            keep_mb,
            settings.checkpoint_timeout,
            cancel.clone(),
        ))
    });
    let shared: Arc<dyn WalSource> = source.clone();
    let end = *shared.end().borrow();
    tracing::info!(
        "serving {}: system identifier {}, timeline {}, WAL flushed to {}",
        args.directory.display(),
        shared.system_id(),
        end.tli.0,
        end.flushed
    );
    let mut parts = server_parts(settings, hba, roles, shared, slots, Registry::new());
    parts.tls = tls;
    let backends = parts.registry.clone();
    metrics::start(&args.server.metrics, cancel.clone(), |m| m.add_backends(backends)).await?;
    run_postmaster(args.server.listen, parts).await?;
    cancel.cancel();
    let _ = growth.await;
    if let Some(task) = retention {
        let _ = task.await;
    }
    Ok(())
}
