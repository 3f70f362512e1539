//! Applying the node's WAL records to the engine (`xlogrecovery.c`'s redo loop, the
//! resource managers' redo): row changes are buffered per transaction and applied at its
//! commit, all at once, so readers see a transaction whole or not at all. The same replay
//! serves crash recovery and a standby's streaming replay.

use std::collections::HashSet;
use std::sync::Arc;

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::Lsn;

use crate::engine::{Change, Engine, EngineError, Xid};
use crate::error::NodeError;
use crate::xlog::{CheckPoint, NodeRecord};

/// What a replayed record was, for the caller's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Replayed {
    /// Nothing the caller needs to know about.
    Other,
    /// A transaction's commit became visible.
    Commit {
        /// Its commit timestamp.
        time: TimestampTz,
    },
    /// A checkpoint record (a standby's chance for a restartpoint).
    Checkpoint {
        /// Its body.
        checkpoint: CheckPoint,
        /// Whether it is a shutdown checkpoint.
        shutdown: bool,
    },
}

/// Replays records into one engine, starting from a checkpoint state.
///
/// Records before the state's position only matter for transactions that were running
/// when the state was taken; everything else before it is in the state already.
#[derive(Debug)]
pub struct Replay {
    engine: Arc<Engine>,
    state_lsn: Lsn,
    running_at_state: HashSet<Xid>,
    commits: u64,
    last_commit_time: Option<TimestampTz>,
}

impl Replay {
    /// A replay into `engine`, loaded from a checkpoint state taken at `state_lsn` while
    /// `running_at_state` were running.
    pub fn new(engine: Arc<Engine>, state_lsn: Lsn, running_at_state: HashSet<Xid>) -> Replay {
        Replay { engine, state_lsn, running_at_state, commits: 0, last_commit_time: None }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Commits replayed.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// The commit timestamp of the last replayed commit
    /// (`pg_last_xact_replay_timestamp()`).
    pub fn last_commit_time(&self) -> Option<TimestampTz> {
        self.last_commit_time
    }

    /// Applies the record at `lsn`.
    ///
    /// # Errors
    /// A row change that does not decode or apply.
    pub fn apply(&mut self, lsn: Lsn, record: &NodeRecord<'_>) -> Result<Replayed, NodeError> {
        let after = lsn >= self.state_lsn;
        Ok(match *record {
            NodeRecord::RowChange { xid, info, payload }
                if after || self.running_at_state.contains(&xid.0) =>
            {
                let change = Change::decode(info, payload).map_err(|e| {
                    EngineError::Internal(format!("invalid row change at {lsn}: {e}"))
                })?;
                self.engine.redo_change(xid.0, change);
                Replayed::Other
            }
            NodeRecord::Commit { xid, time } if after => {
                self.engine.redo_commit(xid.0)?;
                self.commits += 1;
                self.last_commit_time = Some(time);
                Replayed::Commit { time }
            }
            NodeRecord::Abort { xid, .. } if after => {
                self.engine.redo_abort(xid.0);
                Replayed::Other
            }
            NodeRecord::Checkpoint { shutdown, checkpoint } => {
                Replayed::Checkpoint { checkpoint, shutdown }
            }
            _ => Replayed::Other,
        })
    }
}
