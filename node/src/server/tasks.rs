//! The node's background tasks: the checkpointer (timed, at `max_wal_size`, on request)
//! and the WAL writer (flushes what asynchronous commits left every `wal_writer_delay`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use walstream_protocol::lsn::parse_segment_file_name;
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{MemWalSource, WalSource};

use crate::checkpointer::{
    CheckpointCause, CheckpointDone, CheckpointKind, Checkpointer, Retention, Schedule,
};
use crate::error::NodeError;
use crate::settings::NodeSettings;
use crate::xlog::WalWriter;

/// How often the checkpointer looks at the WAL position between timed checkpoints
/// (PostgreSQL's backends wake it when a segment fills; polling is enough here).
const WAL_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// A request to the checkpointer and where to answer.
#[derive(Debug)]
pub struct CheckpointRequest {
    /// Why.
    pub cause: CheckpointCause,
    /// Gets the result.
    pub reply: oneshot::Sender<Result<CheckpointDone, String>>,
}

/// What a checkpoint keeps besides its redo point: `wal_keep_size` and the slots.
#[derive(Debug, Clone)]
pub(super) struct RetentionSource {
    pub(super) settings: NodeSettings,
    pub(super) slots: Arc<SlotStore>,
}

impl RetentionSource {
    /// The retention as of now.
    pub(super) fn now(&self) -> Retention {
        Retention {
            keep_mb: self.settings.sender().wal_keep_size_mb,
            slot_min: self.slots.min_restart_lsn(),
        }
    }
}

/// Asks the checkpointer for a checkpoint and waits for it.
pub(super) async fn request_checkpoint(
    tx: &mpsc::Sender<CheckpointRequest>,
    cause: CheckpointCause,
) -> Result<CheckpointDone, NodeError> {
    let gone = || NodeError::State("the checkpointer is not running".into());
    let (reply, rx) = oneshot::channel();
    tx.send(CheckpointRequest { cause, reply }).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?.map_err(NodeError::State)
}

/// The checkpointer task.
pub(super) async fn checkpointer(
    cp: Arc<Checkpointer>,
    writer: Arc<WalWriter>,
    schedule: Schedule,
    retention: RetentionSource,
    mut requests: mpsc::Receiver<CheckpointRequest>,
    wal: Arc<MemWalSource>,
    failpoints: crate::bgworker::Failpoints,
) -> Result<(), String> {
    let mut last_start = SystemTime::now();
    let mut last_redo = cp.control().await.redo();
    loop {
        let wait = schedule.until_timed(SystemTime::now(), last_start).min(WAL_CHECK_INTERVAL);
        let (cause, reply) = tokio::select! {
            req = requests.recv() => match req {
                Some(r) => (Some(r.cause), Some(r.reply)),
                None => return Ok(()),
            },
            () = tokio::time::sleep(wait) => {
                let now = SystemTime::now();
                (schedule.due(now, last_start, last_redo, writer.insert_position()), None)
            }
        };
        if failpoints.take("checkpointer") {
            return Err("failed as a test asked".into());
        }
        let Some(cause) = cause else { continue };
        let now = SystemTime::now();
        tracing::debug!("checkpoint starting: {}", cause.log_words());
        let result = cp.checkpoint(CheckpointKind::Online, now, retention.now()).await;
        last_start = now;
        match &result {
            Ok(done) => {
                last_redo = done.redo;
                let (tli, seg_size) = (wal.timeline(), wal.seg_size());
                for name in &done.removed {
                    if let Some((_, segno)) = parse_segment_file_name(name, seg_size) {
                        wal.segment_removed(tli, segno);
                    }
                }
                tracing::debug!(
                    redo = %done.redo,
                    removed = done.removed.len(),
                    "checkpoint complete"
                );
            }
            Err(e) => tracing::error!("checkpoint failed: {e}"),
        }
        if let Some(reply) = reply {
            let _ = reply.send(result.map_err(|e| e.to_string()));
        }
    }
}

/// The WAL writer task: every `delay`, flushes what was written and not yet flushed
/// (`walwriter.c`), which is what makes `synchronous_commit = off` durable soon after.
pub(super) async fn wal_writer(
    writer: Arc<WalWriter>,
    delay: Duration,
    failpoints: crate::bgworker::Failpoints,
) -> Result<(), String> {
    let mut tick = tokio::time::interval(delay.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if failpoints.take("walwriter") {
            return Err("failed as a test asked".into());
        }
        if writer.flush_position() < writer.insert_position() {
            writer.request_flush();
        }
    }
}
