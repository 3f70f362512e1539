//! Promotion of a standby node (`xlog.c: StartupXLOG` after `CheckForStandbyTrigger`):
//! the walreceiver stops, replay ends where the received WAL ends, a new timeline is
//! chosen and its history file written, the switch segment is copied onto it, the
//! end-of-recovery record starts it, and the node goes on as a primary without a restart —
//! sessions stay connected and may write, and cascading walsenders end the old timeline so
//! their standbys follow onto the new one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_sender::registry::Registry;
use walstream_sender::walsource::WalSource;

use super::context::{Current, Side};
use super::{start_primary, tasks, Begin, PrimaryStart, Role, RoleState};
use crate::checkpointer::CheckpointKind;
use crate::datadir::{PROMOTE_SIGNAL_FILE, STANDBY_SIGNAL_FILE};
use crate::engine::Engine;
use crate::error::NodeError;
use crate::settings::NodeSettings;
use crate::standby::Finished;
use crate::xlog::records::{end_of_recovery, EndOfRecovery};
use crate::xlog::{timeline, WalWriter, WriteStart, WriterConfig};

/// Waits for a promotion request and carries it out.
pub(super) struct Promoter {
    pub(super) dir: PathBuf,
    pub(super) settings: Arc<parking_lot::RwLock<NodeSettings>>,
    pub(super) engine: Arc<Engine>,
    pub(super) registry: Arc<Registry>,
    pub(super) roles: Arc<RoleState>,
    pub(super) retention: tasks::RetentionSource,
}

/// Where new WAL starts after replay ended at `end`: a position just past a page header
/// means the record before ended at the page boundary, and the new timeline writes that
/// page afresh (its header may never have been received).
pub(super) fn end_of_log(end: Lsn, seg_size: WalSegSize) -> Lsn {
    const SHORT: u32 = 24;
    const LONG: u32 = 40;
    let in_segment = end.segment_offset(seg_size);
    if in_segment == LONG || (end.page_offset() == SHORT && in_segment != SHORT) {
        end.page_start()
    } else {
        end
    }
}

impl Promoter {
    /// Promotes at the first request whose `promote` file is there
    /// (`CheckPromoteSignal`); a promotion that fails halfway stops the node.
    pub(super) async fn run(self) {
        loop {
            self.roles.promote_requests.notified().await;
            if std::fs::remove_file(self.dir.join(PROMOTE_SIGNAL_FILE)).is_err() {
                continue;
            }
            match self.promote().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!("FATAL:  promotion failed: {e}");
                    self.roles.fatal.send_replace(Some(format!("promotion failed: {e}")));
                    return;
                }
            }
        }
    }

    async fn promote(&self) -> Result<(), NodeError> {
        tracing::info!("received promote request");
        let mut role = self.roles.role.lock().await;
        let standby = match std::mem::replace(&mut *role, Role::Gone) {
            Role::Standby(s) => s,
            other => {
                *role = other;
                return Ok(());
            }
        };
        standby.cancel.cancel();
        tracing::info!("FATAL:  terminating walreceiver process due to administrator command");
        let received_tli = standby.receiver.positions.borrow().tli;
        let applier = standby
            .task
            .await
            .map_err(|e| NodeError::State(format!("the walreceiver task failed: {e}")))?;
        let Finished { control, end, last_record, .. } = applier.finish();
        let seg_size = control.seg_size;
        let end = end_of_log(end, seg_size);
        tracing::info!("redo done at {last_record}");
        let wal_dir = self.dir.join("pg_wal");
        crate::standby::adopt_partial_segments(&wal_dir)?;
        let parent = standby.history.tli_of_point(end).max(received_tli);
        let dir = self.dir.clone();
        let new_tli = tokio::task::spawn_blocking(move || {
            let wal_dir = dir.join("pg_wal");
            let new_tli = TimeLineId(timeline::newest_timeline(&wal_dir, parent).0 + 1);
            tracing::info!("selected new timeline ID: {}", new_tli.0);
            timeline::init_new_timeline(&wal_dir, seg_size, parent, new_tli, end)?;
            Ok::<_, NodeError>(new_tli)
        })
        .await
        .map_err(|e| NodeError::State(format!("promotion failed: {e}")))??;
        tracing::info!("archive recovery complete");

        // What was running on the old timeline never ends: abort it.
        let mut aborted = self.engine.redo_pending_xids();
        aborted.sort_unstable();
        for xid in &aborted {
            self.engine.redo_abort(*xid);
        }
        let settings = self.settings.read().clone();
        let mut cfg =
            WriterConfig::new(self.dir.clone(), control.system_identifier, new_tli, seg_size);
        cfg.fsync = settings.bool("fsync");
        let now = SystemTime::now();
        let at = WriteStart { start: end, prev: last_record, torn: None };
        let writer = Arc::new(WalWriter::open(cfg, at, TimestampTz::from_system_time(now))?);
        standby.log.set_writer(writer.clone());
        let eor = EndOfRecovery {
            end_time: TimestampTz::from_system_time(now),
            this_timeline: new_tli,
            prev_timeline: parent,
        };
        let rec = writer.insert(&end_of_recovery(&eor))?;
        writer.flush(rec.end_lsn).await?;

        // xlog.c: CreateEndOfRecoveryRecord sets the minimum recovery point on the new
        // timeline, so that a crash from here on recovers along it; then the signal file
        // goes (XLogInitNewTimeline), so that such a crash recovers as a primary.
        let mut control = control;
        control.min_recovery_point = rec.end_lsn;
        control.min_recovery_point_tli = new_tli;
        let (dir, written) = (self.dir.clone(), control);
        tokio::task::spawn_blocking(move || {
            written.write(&dir)?;
            let signal = dir.join(STANDBY_SIGNAL_FILE);
            std::fs::remove_file(&signal).map_err(|source| NodeError::Io {
                op: "remove",
                path: signal,
                source,
            })?;
            crate::xlog::durable::fsync_dir(&dir).map_err(NodeError::from)
        })
        .await
        .map_err(|e| NodeError::State(format!("promotion failed: {e}")))??;
        control.checkpoint_copy.this_timeline = new_tli;
        control.checkpoint_copy.prev_timeline = new_tli;
        drop(standby._aux);
        let (parts, mem) = start_primary(
            PrimaryStart {
                dir: &self.dir,
                settings: &settings,
                engine: self.engine.clone(),
                writer: writer.clone(),
                control,
                retention: &self.retention,
                begin: Begin::Promotion,
            },
            &self.registry,
            &self.roles.supervisor,
        )
        .await?;
        *self.roles.current.write() = Current {
            side: Side::Primary { writer, checkpoints: parts.checkpoints.clone() },
            timeline: new_tli,
        };
        self.engine.set_read_only(false);
        self.roles.production.send_replace(true);
        if let Some(source) = &self.roles.source {
            source.switch(mem as Arc<dyn WalSource>);
        }
        // The control file says "in production" (what pg_ctl promote waits for) once
        // sessions see the primary.
        let done = parts
            .checkpointer
            .checkpoint(CheckpointKind::EndOfRecovery, SystemTime::now(), self.retention.now())
            .await?;
        tracing::info!("end-of-recovery checkpoint at {}", done.lsn);
        *role = Role::Primary(parts);
        drop(role);
        tracing::info!("database system is ready to accept connections");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_wal_starts_at_a_page_whose_header_follows_the_last_record() {
        let seg = WalSegSize::DEFAULT;
        assert_eq!(end_of_log(Lsn(0x301_5FF0), seg), Lsn(0x301_5FF0));
        assert_eq!(end_of_log(Lsn(0x301_6018), seg), Lsn(0x301_6000));
        assert_eq!(end_of_log(Lsn(0x400_0028), seg), Lsn(0x400_0000));
        // 24 bytes into a segment is inside its long header: never a record's end.
        assert_eq!(end_of_log(Lsn(0x301_6020), seg), Lsn(0x301_6020));
    }
}
