//! The node's [`BackupSource`]: `BASE_BACKUP` of a primary node (`do_pg_backup_start`,
//! `do_pg_backup_stop`). A backup starts with a checkpoint and sends the data directory;
//! it ends where WAL is flushed after the files were read. The checkpoint state file in
//! the copy is consistent by itself (written whole and renamed), and every checkpoint
//! during the backup has its redo point between the backup's start and end, so a standby
//! made from the copy replays from the state it holds to the end and is consistent.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use walstream_protocol::wire::{sqlstate, ErrorFields};
use walstream_protocol::TimeLineId;
use walstream_sender::basebackup::{BackupSource, BackupStart, BackupStop, BoxFuture};

use super::context::{Current, Side};
use super::tasks::{request_checkpoint, CheckpointRequest};
use crate::checkpointer::CheckpointCause;
use crate::xlog::WalWriter;

/// A primary node's data directory as a backup source.
pub(super) struct NodeBackup {
    pub(super) dir: PathBuf,
    /// The role now: a standby refuses (until it is promoted).
    pub(super) current: Arc<parking_lot::RwLock<Current>>,
}

impl NodeBackup {
    /// The primary's WAL writer, checkpoint requests and timeline; a standby's refusal.
    fn primary(
        &self,
    ) -> Result<(Arc<WalWriter>, mpsc::Sender<CheckpointRequest>, TimeLineId), ErrorFields> {
        let current = self.current.read();
        match &current.side {
            Side::Primary { writer, checkpoints } => {
                Ok((writer.clone(), checkpoints.clone(), current.timeline))
            }
            Side::Standby { .. } => Err(ErrorFields::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "BASE_BACKUP of a standby node is not supported by walstream",
            )),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ErrorFields {
    ErrorFields::error(sqlstate::INTERNAL_ERROR, e.to_string())
}

impl BackupSource for NodeBackup {
    fn data_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    fn start(&self, _fast: bool) -> BoxFuture<'_, Result<BackupStart, ErrorFields>> {
        // The node's checkpoints are always immediate; `spread` takes the same one.
        Box::pin(async move {
            let (_, checkpoints, tli) = self.primary()?;
            let done = request_checkpoint(&checkpoints, CheckpointCause::Requested)
                .await
                .map_err(internal)?;
            Ok(BackupStart {
                lsn: done.redo,
                tli,
                checkpoint: done.lsn,
                time: jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC),
                in_recovery: false,
            })
        })
    }

    fn stop<'a>(
        &'a self,
        _start: &'a BackupStart,
    ) -> BoxFuture<'a, Result<BackupStop, ErrorFields>> {
        Box::pin(async move {
            let (writer, _, tli) = self.primary()?;
            let end = writer.insert_position();
            writer.flush(end).await.map_err(internal)?;
            Ok(BackupStop { lsn: end, tli })
        })
    }

    fn abort(&self, _start: &BackupStart) {}

    fn control_file(&self) -> String {
        format!("global/{}", crate::xlog::control::CONTROL_FILE_NAME)
    }

    fn exclude(&self, rel: &[u8]) -> bool {
        // Crash-safe writes in progress (`xlog::durable::write_file`).
        rel.ends_with(b".tmp")
    }
}
