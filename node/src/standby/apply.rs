//! The standby's [`Apply`]: every streamed record goes through the node's [`Replay`] into
//! the engine, the replay position and last commit time are published for
//! `pg_last_wal_replay_lsn()` and friends, and restartpoints are made at checkpoint
//! records when due.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use std::sync::Arc;
use tokio::sync::watch;
use walstream_protocol::replication::TimestampTz;
use walstream_protocol::wal::RecordView;
use walstream_protocol::Lsn;

use walstream_receiver::apply::{Apply, ApplyError, RmgrCounts};

use crate::checkpointer::{restartpoint, RestartAt, Retention};
use crate::replay::{Replay, Replayed};
use crate::xlog::{ControlFile, NodeRecord};

/// Where replay is, as the standby's functions and views show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayStatus {
    /// The end of the last replayed record (`pg_last_wal_replay_lsn()`).
    pub replayed: Lsn,
    /// The commit time of the last replayed commit (`pg_last_xact_replay_timestamp()`).
    pub last_commit_time: Option<TimestampTz>,
    /// Commits replayed since the start.
    pub commits: u64,
}

/// When to make a restartpoint at a replayed checkpoint record.
#[derive(Debug, Clone, Copy)]
pub struct RestartpointPolicy {
    /// `checkpoint_timeout`: at most this often by time...
    pub timeout: Duration,
    /// ... or when this much WAL was replayed since the last one.
    pub wal_bytes: u64,
    /// What old WAL to keep.
    pub retention: Retention,
}

/// Where a standby's replay stopped (at promotion).
#[derive(Debug)]
pub struct Finished {
    /// The replay, with its engine.
    pub replay: Replay,
    /// The control file as last written (at the last restartpoint).
    pub control: ControlFile,
    /// The end of the last replayed record (`EndOfLog`).
    pub end: Lsn,
    /// Where that record starts.
    pub last_record: Lsn,
}

/// Applies streamed records to the standby's engine.
pub struct StandbyApplier {
    replay: Replay,
    dir: PathBuf,
    control: ControlFile,
    policy: RestartpointPolicy,
    clock: fn() -> SystemTime,
    last_restartpoint: (SystemTime, Lsn),
    /// Where the last replayed record starts (the next record's `xl_prev`).
    last_record: Lsn,
    status: watch::Sender<ReplayStatus>,
    /// Records replayed per resource manager (`--metrics`).
    rmgrs: Arc<RmgrCounts>,
    /// Test builds: `walstream_fail_task('startup')` makes the next record fail.
    failpoints: crate::bgworker::Failpoints,
}

impl std::fmt::Debug for StandbyApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandbyApplier").field("status", &*self.status.borrow()).finish()
    }
}

impl StandbyApplier {
    /// An applier going on from crash recovery's `replay`, which ended at `replayed`
    /// after the record at `last_record`.
    pub fn new(
        replay: Replay,
        dir: PathBuf,
        control: ControlFile,
        (replayed, last_record): (Lsn, Lsn),
        policy: RestartpointPolicy,
        clock: fn() -> SystemTime,
    ) -> StandbyApplier {
        let status = ReplayStatus {
            replayed,
            last_commit_time: replay.last_commit_time(),
            commits: replay.commits(),
        };
        StandbyApplier {
            replay,
            dir,
            control,
            policy,
            clock,
            last_restartpoint: (clock(), replayed),
            last_record,
            status: watch::Sender::new(status),
            rmgrs: Arc::default(),
            failpoints: crate::bgworker::Failpoints::default(),
        }
    }

    /// Where test builds ask replay to fail.
    pub fn with_failpoints(mut self, failpoints: crate::bgworker::Failpoints) -> Self {
        self.failpoints = failpoints;
        self
    }

    /// Records replayed per resource manager, readable while it runs.
    pub fn rmgr_counts(&self) -> Arc<RmgrCounts> {
        self.rmgrs.clone()
    }

    /// The replay status, published after every record.
    pub fn status(&self) -> watch::Receiver<ReplayStatus> {
        self.status.subscribe()
    }

    /// Makes a restartpoint at the replay position now (at shutdown).
    ///
    /// # Errors
    /// The state or control file could not be written.
    pub fn restartpoint_now(&mut self) -> Result<(), crate::error::NodeError> {
        let at = RestartAt {
            lsn: self.control.checkpoint,
            checkpoint: self.control.checkpoint_copy,
            replayed: self.status.borrow().replayed,
        };
        self.make_restartpoint(at)
    }

    /// What replay leaves for promotion: the replay, the control file as last written,
    /// where replay ended and the last record replayed.
    pub fn finish(self) -> Finished {
        let replayed = self.status.borrow().replayed;
        Finished {
            replay: self.replay,
            control: self.control,
            end: replayed,
            last_record: self.last_record,
        }
    }

    fn make_restartpoint(&mut self, at: RestartAt) -> Result<(), crate::error::NodeError> {
        let now = (self.clock)();
        let engine = self.replay.engine().clone();
        let removed =
            restartpoint(&self.dir, &engine, &mut self.control, at, now, self.policy.retention)?;
        tracing::debug!(redo = %at.replayed, removed = removed.len(), "restartpoint complete");
        self.last_restartpoint = (now, at.replayed);
        Ok(())
    }

    fn restartpoint_due(&self, replayed: Lsn) -> bool {
        let (when, at) = self.last_restartpoint;
        let elapsed = (self.clock)().duration_since(when).unwrap_or_default();
        elapsed >= self.policy.timeout || replayed.0.saturating_sub(at.0) >= self.policy.wal_bytes
    }
}

impl Apply for StandbyApplier {
    fn apply(&mut self, view: &RecordView<'_>) -> Result<(), ApplyError> {
        let failed = |message: String| ApplyError::Failed { lsn: view.lsn, message };
        if self.failpoints.take("startup") {
            return Err(failed("failed as a test asked".into()));
        }
        let record = NodeRecord::decode(view).map_err(|e| failed(e.to_string()))?;
        let replayed = self.replay.apply(view.lsn, &record).map_err(|e| failed(e.to_string()))?;
        self.rmgrs.count(view.header.rmid);
        self.last_record = view.lsn;
        self.status.send_modify(|s| {
            s.replayed = view.next_lsn;
            if let Replayed::Commit { time } = replayed {
                s.last_commit_time = Some(time);
                s.commits += 1;
            }
        });
        if let Replayed::Checkpoint { checkpoint, .. } = replayed {
            if self.restartpoint_due(view.next_lsn) {
                let at = RestartAt { lsn: view.lsn, checkpoint, replayed: view.next_lsn };
                self.make_restartpoint(at).map_err(|e| failed(e.to_string()))?;
            }
        }
        Ok(())
    }
}
