//! `walstream relay`: a receiver and a sender in one process. It streams from an upstream
//! (real PostgreSQL or walstream) into a directory and serves that directory to any number
//! of downstream standbys, from memory while the WAL is recent, waking them as soon as new
//! WAL is flushed. Downstream, IDENTIFY_SYSTEM reports the upstream's system and timeline,
//! and timeline switches follow the upstream's.

mod source;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use walstream_protocol::replication::IdentifySystem;
use walstream_protocol::wire::ReplicationMode;
use walstream_receiver::apply::VerifyingApplier;
use walstream_receiver::conn::ReplicationConn;
use walstream_receiver::conninfo::ConnInfo;
use walstream_receiver::segments::{SegmentWriter, WriterOptions};
use walstream_receiver::stream::{identify_system, show_seg_size, Receiver, StreamOptions};
use walstream_sender::postmaster::{Postmaster, ShutdownMode};
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{MemWalSource, WalEnd, WalSource};

pub use source::RelayObserver;

use crate::cli::{self, forward_signals, Flavor};
use crate::serve::{server_parts, ServerArgs};

/// Arguments of `walstream relay`.
#[derive(Args, Debug)]
pub struct RelayArgs {
    /// The directory the relay writes WAL into and serves from.
    #[arg(short = 'D', long = "directory", value_name = "DIR")]
    directory: PathBuf,
    /// The upstream server, as a libpq connection string.
    #[arg(long, value_name = "CONNINFO")]
    upstream: String,
    /// Stream from the upstream through this physical replication slot.
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Recent WAL kept in memory for downstream standbys, in MB.
    #[arg(long = "cache-mb", value_name = "MB", default_value_t = 64)]
    cache_mb: usize,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `walstream relay`.
pub fn main(args: RelayArgs) -> ExitCode {
    cli::init_logging("info");
    cli::run("walstream relay: ", Flavor::MultiThread, relay(args))
}

/// What the upstream said about itself.
struct Upstream {
    seg_size: walstream_protocol::WalSegSize,
    ident: IdentifySystem,
}

async fn identify(info: &ConnInfo) -> Result<Upstream> {
    let mut conn = ReplicationConn::connect(info, ReplicationMode::Physical)
        .await
        .context("connecting to the upstream")?;
    let seg_size = show_seg_size(&mut conn).await?;
    let ident = identify_system(&mut conn).await.context("identifying the upstream")?;
    conn.terminate().await;
    Ok(Upstream { seg_size, ident })
}

async fn relay(args: RelayArgs) -> Result<()> {
    let (settings, hba, roles) = args.server.load()?;
    let tls = crate::serve::load_tls(&settings, &args.directory)?;
    let mut info = ConnInfo::parse(&args.upstream)?;
    if info.application_name.is_none() {
        info.application_name = Some("walstream relay".to_string());
    }
    let up = identify(&info).await?;
    let writer = SegmentWriter::open(&args.directory, up.seg_size, WriterOptions::default())?;
    // What is already here is served at once; otherwise nothing until the first flush.
    let end = match writer.resume_point()? {
        Some(r) => WalEnd { tli: r.tli, flushed: r.valid_end },
        None => {
            WalEnd { tli: up.ident.timeline, flushed: up.ident.xlogpos.segment_start(up.seg_size) }
        }
    };
    tracing::info!(
        "relaying system {} (timeline {}, upstream at {}) into {}",
        up.ident.systemid,
        up.ident.timeline.0,
        up.ident.xlogpos,
        args.directory.display()
    );
    let source = Arc::new(MemWalSource::new(
        args.directory.clone(),
        up.ident.systemid,
        up.seg_size,
        end,
        args.cache_mb * 1024 * 1024,
    ));
    let opts = StreamOptions {
        conninfo: info,
        slot: args.slot.clone(),
        status_interval: Duration::from_secs(10),
        receiver_timeout: Duration::from_secs(60),
        synchronous: false,
        report_flush: true,
        endpos: None,
        no_loop: false,
        hot_standby_feedback: false,
    };
    let mut receiver = Receiver::new(opts, writer, VerifyingApplier::new())
        .with_observer(Arc::new(RelayObserver(source.clone())));
    let slots = SlotStore::open(
        &args.directory.join("pg_replslot"),
        settings.max_replication_slots as usize,
    )
    .context("loading replication slots")?;
    let shared: Arc<dyn WalSource> = source.clone();
    let registry = walstream_sender::registry::Registry::new();
    let mut parts = server_parts(settings, hba, roles, shared, Arc::new(slots), registry);
    parts.tls = tls;
    let cancel = CancellationToken::new();
    let (backends, positions) = (parts.registry.clone(), receiver.positions());
    let (counters, rmgrs) = (receiver.counters(), receiver.applier().rmgr_counts());
    crate::metrics::start(&args.server.metrics, cancel.clone(), |m| {
        m.add_backends(backends);
        m.add_receiver(positions);
        m.add_receiver_events(counters, rmgrs);
    })
    .await?;
    let postmaster = Postmaster::bind(args.server.listen, parts)
        .await
        .with_context(|| format!("could not listen on {}", args.server.listen))?;
    tracing::info!("listening on {}", postmaster.local_addr()?);
    let (tx, rx) = watch::channel(None);
    tokio::spawn(forward_signals(tx.clone()));
    let receiving = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let result = receiver.run(&cancel).await;
            if let Err(e) = &result {
                tracing::error!("streaming from the upstream failed: {e}");
                // A relay that can no longer receive shuts down rather than serve stale WAL.
                tx.send_modify(|m| *m = Some(m.unwrap_or(ShutdownMode::Fast)));
            }
            result
        })
    };
    postmaster.run(rx).await;
    cancel.cancel();
    let (hits, misses) = source.cache_stats();
    tracing::info!("served {hits} reads from memory and {misses} from files");
    match receiving.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!("the receiver task failed: {e}")),
    }
}
