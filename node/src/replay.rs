//! Applying the node's WAL records to the engine (`xlogrecovery.c`'s redo loop, the
//! resource managers' redo): row changes are buffered per transaction and applied at its
//! commit, all at once, so readers see a transaction whole or not at all. The same replay
//! serves crash recovery and a standby's streaming replay.

use std::collections::HashSet;
use std::sync::Arc;

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::Lsn;

use crate::engine::{Change, Engine, EngineError, RedoBatch, Xid};
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

/// A record decoded for redo, owning what it carries, so that decoding can run on another
/// thread than applying ([`RedoFilter::decode`], [`Replay::apply_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RedoRecord {
    /// A row change to buffer until its transaction ends.
    Change {
        /// The transaction.
        xid: Xid,
        /// The change.
        change: Change,
    },
    /// A commit to apply.
    Commit {
        /// The transaction.
        xid: Xid,
        /// Its commit timestamp.
        time: TimestampTz,
    },
    /// An abort to apply.
    Abort {
        /// The transaction.
        xid: Xid,
    },
    /// A checkpoint record.
    Checkpoint {
        /// Its body.
        checkpoint: CheckPoint,
        /// Whether it is a shutdown checkpoint.
        shutdown: bool,
    },
    /// An end-of-recovery record: a new timeline starts, and what was still running on
    /// the old one was aborted by the server that wrote it.
    EndOfRecovery,
    /// Nothing to apply: a record of another kind, or one the checkpoint state holds.
    Skip,
}

/// Which records of the WAL a replay applies, and their decoding: no engine needed.
///
/// Records before the state's position only matter for transactions that were running
/// when the state was taken; everything else before it is in the state already.
#[derive(Debug, Clone)]
pub struct RedoFilter {
    state_lsn: Lsn,
    running_at_state: HashSet<Xid>,
}

impl RedoFilter {
    /// Whether a row change of `xid` at `lsn` is replayed.
    pub fn wants_change(&self, lsn: Lsn, xid: Xid) -> bool {
        lsn >= self.state_lsn || self.running_at_state.contains(&xid)
    }

    /// Decodes the record at `lsn` for redo.
    ///
    /// # Errors
    /// A row change that does not decode.
    pub fn decode(&self, lsn: Lsn, record: &NodeRecord<'_>) -> Result<RedoRecord, NodeError> {
        let after = lsn >= self.state_lsn;
        Ok(match *record {
            NodeRecord::RowChange { xid, info, payload } if self.wants_change(lsn, xid.0) => {
                RedoRecord::Change { xid: xid.0, change: decode_change(lsn, info, payload)? }
            }
            NodeRecord::Commit { xid, time } if after => RedoRecord::Commit { xid: xid.0, time },
            NodeRecord::Abort { xid, .. } if after => RedoRecord::Abort { xid: xid.0 },
            NodeRecord::Checkpoint { shutdown, checkpoint } => {
                RedoRecord::Checkpoint { checkpoint, shutdown }
            }
            NodeRecord::EndOfRecovery(_) if after => RedoRecord::EndOfRecovery,
            _ => RedoRecord::Skip,
        })
    }
}

/// The row change of the record at `lsn` with `info` and `payload`.
///
/// # Errors
/// A payload that does not decode.
pub fn decode_change(lsn: Lsn, info: u8, payload: &[u8]) -> Result<Change, NodeError> {
    Change::decode(info, payload)
        .map_err(|e| EngineError::Internal(format!("invalid row change at {lsn}: {e}")).into())
}

/// Replays records into one engine, starting from a checkpoint state.
#[derive(Debug)]
pub struct Replay {
    engine: Arc<Engine>,
    filter: RedoFilter,
    commits: u64,
    last_commit_time: Option<TimestampTz>,
}

impl Replay {
    /// A replay into `engine`, loaded from a checkpoint state taken at `state_lsn` while
    /// `running_at_state` were running.
    pub fn new(engine: Arc<Engine>, state_lsn: Lsn, running_at_state: HashSet<Xid>) -> Replay {
        let filter = RedoFilter { state_lsn, running_at_state };
        Replay { engine, filter, commits: 0, last_commit_time: None }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Which records this replay applies, for decoding them elsewhere.
    pub fn filter(&self) -> RedoFilter {
        self.filter.clone()
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
        let r = self.filter.decode(lsn, record)?;
        let engine = Arc::clone(&self.engine);
        if let RedoRecord::Commit { xid, .. } = r {
            // A hot standby's readers of a table this commit drops or truncates give it up
            // first.
            engine.resolve_recovery_conflicts(xid);
        }
        let mut batch = engine.redo_batch();
        self.apply_one(&mut batch, r)
    }

    /// Applies decoded records in order, holding the engine's lock once for all of them.
    ///
    /// # Errors
    /// The first record that failed to decode, or a change that does not apply; the
    /// records after it are not applied.
    pub fn apply_batch(
        &mut self,
        records: impl IntoIterator<Item = Result<RedoRecord, NodeError>>,
    ) -> Result<(), NodeError> {
        let engine = Arc::clone(&self.engine);
        let mut batch = engine.redo_batch();
        for r in records {
            self.apply_one(&mut batch, r?)?;
        }
        Ok(())
    }

    fn apply_one(
        &mut self,
        batch: &mut RedoBatch<'_>,
        r: RedoRecord,
    ) -> Result<Replayed, NodeError> {
        Ok(match r {
            RedoRecord::Change { xid, change } => {
                batch.change(xid, change);
                Replayed::Other
            }
            RedoRecord::Commit { xid, time } => {
                batch.commit(xid)?;
                self.commits += 1;
                self.last_commit_time = Some(time);
                Replayed::Commit { time }
            }
            RedoRecord::Abort { xid } => {
                batch.abort(xid);
                Replayed::Other
            }
            RedoRecord::Checkpoint { checkpoint, shutdown } => {
                Replayed::Checkpoint { checkpoint, shutdown }
            }
            RedoRecord::EndOfRecovery => {
                batch.abort_all();
                Replayed::Other
            }
            RedoRecord::Skip => Replayed::Other,
        })
    }
}
