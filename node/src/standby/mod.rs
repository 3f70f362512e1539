//! The standby (`xlogrecovery.c` in standby mode, `walreceiver.c`): after crash recovery
//! of its own WAL, the standby streams from `primary_conninfo` into its `pg_wal` with the
//! receiver crate, replays every record into its read-only engine through
//! [`StandbyApplier`], reports write/flush/apply positions, makes restartpoints, and
//! reconnects when the primary goes away.

mod apply;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use walstream_protocol::{Lsn, TimeLineId};
use walstream_receiver::conninfo::ConnInfo;
use walstream_receiver::segments::{SegmentWriter, WriterOptions};
use walstream_receiver::stream::{Positions, Receiver, StreamOptions, WalObserver};

pub use apply::{Finished, ReplayStatus, RestartpointPolicy, StandbyApplier};

use crate::error::NodeError;
use crate::settings::NodeSettings;

/// How the standby's walreceiver connects and reports.
#[derive(Debug, Clone)]
pub struct WalReceiverOptions {
    /// `primary_conninfo`.
    pub conninfo: ConnInfo,
    /// `primary_slot_name`.
    pub slot: Option<String>,
    /// `wal_receiver_status_interval`.
    pub status_interval: Duration,
    /// `wal_receiver_timeout`.
    pub timeout: Duration,
    /// `wal_retrieve_retry_interval`: the wait before a new walreceiver after one ended.
    pub retry_interval: Duration,
    /// `hot_standby_feedback`.
    pub hot_standby_feedback: bool,
    /// `fsync`.
    pub fsync: bool,
}

impl WalReceiverOptions {
    /// The walreceiver's options from the settings.
    ///
    /// # Errors
    /// `primary_conninfo` is empty or does not parse (libpq's texts).
    pub fn from_settings(settings: &NodeSettings) -> Result<WalReceiverOptions, NodeError> {
        let text = settings.string("primary_conninfo");
        if text.trim().is_empty() {
            return Err(NodeError::Config(
                "standby mode requires primary_conninfo to be set".to_string(),
            ));
        }
        let conninfo = ConnInfo::parse(text)
            .map_err(|e| NodeError::Config(format!("invalid connection string syntax: {e}")))?;
        let slot = Some(settings.string("primary_slot_name").to_string()).filter(|s| !s.is_empty());
        Ok(WalReceiverOptions {
            conninfo,
            slot,
            status_interval: settings.duration("wal_receiver_status_interval"),
            timeout: settings.duration("wal_receiver_timeout"),
            retry_interval: settings.duration("wal_retrieve_retry_interval"),
            hot_standby_feedback: settings.bool("hot_standby_feedback"),
            fsync: settings.bool("fsync"),
        })
    }
}

/// What the running walreceiver shows (`pg_stat_wal_receiver`, the positions).
#[derive(Debug, Clone)]
pub struct WalReceiverHandle {
    /// The positions last reported to the primary.
    pub positions: watch::Receiver<Positions>,
    /// The replay status.
    pub replay: watch::Receiver<ReplayStatus>,
    /// Whether a walreceiver is streaming right now, and its last error.
    pub state: watch::Receiver<WalReceiverState>,
    /// Where streaming started (`receive_start_lsn`).
    pub start: Lsn,
    /// The connection (`pg_stat_wal_receiver.conninfo`, shown without the password); a
    /// reload that changes `primary_conninfo` sends the new one here, and the walreceiver
    /// restarts with it.
    pub conninfo: watch::Sender<ConnInfo>,
    /// `primary_slot_name`.
    pub slot: Option<String>,
    /// Records replayed per resource manager.
    pub rmgrs: Arc<walstream_receiver::apply::RmgrCounts>,
}

/// The walreceiver's state (`pg_stat_wal_receiver.status`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WalReceiverState {
    /// Not connected (between attempts).
    #[default]
    Stopped,
    /// Streaming.
    Streaming,
    /// The last attempt failed: waiting `wal_retrieve_retry_interval`.
    Waiting(String),
}

/// `.partial` segments a walreceiver left in `pg_wal` become the segment itself, so crash
/// recovery reads them ([`walstream_receiver::segments::adopt_partial_segments`]).
///
/// # Errors
/// A rename failed.
pub fn adopt_partial_segments(wal_dir: &Path) -> Result<(), NodeError> {
    walstream_receiver::segments::adopt_partial_segments(wal_dir)
        .map_err(|e| NodeError::State(format!("could not adopt .partial segments: {e}")))
}

/// Where the standby's WAL is and where streaming starts.
#[derive(Debug, Clone)]
pub struct StreamStart {
    /// `pg_wal`.
    pub wal_dir: std::path::PathBuf,
    /// The segment size.
    pub seg_size: walstream_protocol::WalSegSize,
    /// The standby's system identifier (the primary's must match).
    pub system_id: u64,
    /// The timeline to stream.
    pub tli: TimeLineId,
    /// Where replay is: the first record streaming applies.
    pub start: Lsn,
}

/// Starts the walreceiver task: streams from `at` into `pg_wal`, applies through
/// `applier`, tells `observer` about flushed WAL (cascading walsenders), until `cancel`;
/// the task then returns the applier (for the last restartpoint, or promotion).
///
/// # Errors
/// `pg_wal` cannot be opened for writing.
pub fn start_walreceiver(
    opts: WalReceiverOptions,
    at: StreamStart,
    applier: StandbyApplier,
    observer: Arc<dyn WalObserver>,
    cancel: CancellationToken,
    fatal: watch::Sender<Option<String>>,
) -> Result<(WalReceiverHandle, JoinHandle<StandbyApplier>), NodeError> {
    let writer = SegmentWriter::open(
        &at.wal_dir,
        at.seg_size,
        WriterOptions { sync: opts.fsync, direct: false },
    )
    .map_err(|e| NodeError::State(format!("could not open pg_wal for streaming: {e}")))?;
    let stream_opts = StreamOptions {
        conninfo: opts.conninfo.clone(),
        slot: opts.slot.clone(),
        status_interval: opts.status_interval,
        receiver_timeout: opts.timeout,
        synchronous: false,
        report_flush: true,
        endpos: None,
        no_loop: false,
        hot_standby_feedback: opts.hot_standby_feedback,
    };
    let replay = applier.status();
    let rmgrs = applier.rmgr_counts();
    let (state_tx, state) = watch::channel(WalReceiverState::Stopped);
    let mut receiver = Receiver::new(stream_opts, writer, applier)
        .start_at(at.tli, at.start, at.system_id)
        .with_observer(observer);
    let handle = WalReceiverHandle {
        positions: receiver.positions(),
        replay,
        state,
        start: at.start,
        conninfo: watch::Sender::new(opts.conninfo.clone()),
        slot: opts.slot.clone(),
        rmgrs,
    };
    let mut conninfo = handle.conninfo.subscribe();
    let retry = opts.retry_interval;
    let wal_dir = at.wal_dir.clone();
    // The walreceiver and replay run on a thread of their own with their own runtime, as
    // PostgreSQL's walreceiver and startup processes are their own processes: applying a
    // large transaction or making a restartpoint never holds up the threads that serve
    // queries, so a hot standby answers while it catches up.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("walreceiver")
        .build()
        .map_err(|e| NodeError::State(format!("could not start the walreceiver: {e}")))?;
    let task = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            loop {
                state_tx.send_replace(WalReceiverState::Streaming);
                let result = tokio::select! {
                    r = receiver.run(&cancel) => r,
                    Ok(()) = conninfo.changed() => {
                        // xlogrecovery.c: StartupRequestWalReceiverRestart.
                        tracing::info!("wal receiver process shutdown requested");
                        receiver.set_conninfo(conninfo.borrow_and_update().clone());
                        continue;
                    }
                };
                if cancel.is_cancelled() {
                    break;
                }
                if let Err(walstream_receiver::stream::ReceiverError::Apply(
                    e @ walstream_receiver::apply::ApplyError::Failed { .. },
                )) = &result
                {
                    // A record that does not replay ends the startup process, and with it the
                    // server (postmaster.c: "shutting down due to startup process failure").
                    tracing::error!("FATAL:  {e}");
                    tracing::info!("startup process exited with exit code 1");
                    tracing::info!("terminating any other active server processes");
                    tracing::info!("shutting down due to startup process failure");
                    fatal.send_replace(Some(format!("startup process failed: {e}")));
                    break;
                }
                let why = match result {
                    Ok(end) => format!("streaming ended: {end:?}"),
                    Err(e) => e.to_string(),
                };
                tracing::warn!("walreceiver: {why}");
                let tli = receiver.positions().borrow().tli;
                let replayed = receiver.applier().status().borrow().replayed;
                if let Some(line) = forked_before(&wal_dir, tli, replayed) {
                    tracing::info!("{line}");
                }
                state_tx.send_replace(WalReceiverState::Waiting(why));
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(retry) => {}
                }
            }
            state_tx.send_replace(WalReceiverState::Stopped);
            receiver.into_applier()
        })
    });
    Ok((handle, task))
}

/// `xlogrecovery.c: rescanLatestTimeLine`'s refusal: a newer timeline whose history file
/// the walreceiver fetched, which forked off `tli` before `replayed`, cannot be followed.
fn forked_before(wal_dir: &Path, tli: TimeLineId, replayed: Lsn) -> Option<String> {
    let newest = crate::xlog::timeline::newest_timeline(wal_dir, tli);
    if newest == tli {
        return None;
    }
    let history = crate::xlog::timeline::read_history(wal_dir, newest).ok()?;
    let (switchpoint, _) = history.switch_point(tli)?;
    (switchpoint < replayed).then(|| {
        format!(
            "new timeline {} forked off current database system timeline {} before current \
             recovery point {replayed}",
            newest.0, tli.0
        )
    })
}

/// The restartpoint policy from the settings: `checkpoint_timeout`, and the WAL a
/// primary's `max_wal_size` would allow between checkpoints.
pub fn restartpoint_policy(
    settings: &NodeSettings,
    retention: crate::checkpointer::Retention,
) -> RestartpointPolicy {
    let max_wal_mb = settings.sender().max_wal_size_mb.unwrap_or(1024);
    RestartpointPolicy {
        timeout: settings.sender().checkpoint_timeout,
        wal_bytes: max_wal_mb * 1024 * 1024 / 2,
        retention,
    }
}

/// The wall clock, for the applier's restartpoint schedule.
pub fn wall_clock() -> SystemTime {
    SystemTime::now()
}
