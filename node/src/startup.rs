//! Starting a node's database from its data directory (`xlog.c: StartupXLOG`,
//! `xlogrecovery.c: PerformWalRecovery`): the checkpoint state is loaded, WAL is replayed
//! from its redo point to the end of valid WAL, transactions that never ended are aborted,
//! and the WAL writer opens where valid WAL ends (after an `XLOG_OVERWRITE_CONTRECORD` when
//! the last record was torn).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::Lsn;

use crate::checkpointer::CheckpointState;
use crate::engine::{Change, Engine, EngineError, Xid};
use crate::error::NodeError;
use crate::txnlog::WalTxnLog;
use crate::xlog::{
    read_wal, ControlFile, NodeRecord, ReadOptions, RecoveryEnd, Replayed, WalWriter, WriterConfig,
};

/// How the database is opened.
#[derive(Debug, Clone, Copy)]
pub struct StartOptions {
    /// `fsync`.
    pub fsync: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { fsync: true }
    }
}

/// What replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Where replay started.
    pub redo: Lsn,
    /// Where it ended and why.
    pub end: RecoveryEnd,
    /// Transactions whose commit was replayed.
    pub commits: u64,
    /// Transactions with replayed changes and no end: aborted.
    pub aborted: Vec<Xid>,
}

/// A started database: the engine, the WAL writer that logs it, and the control file.
pub struct Database {
    /// The engine, holding the recovered state.
    pub engine: Arc<Engine>,
    /// The WAL writer, open at the end of valid WAL.
    pub writer: Arc<WalWriter>,
    /// The engine's log over `writer`.
    pub log: Arc<WalTxnLog>,
    /// The control file as read.
    pub control: ControlFile,
    /// What replay did.
    pub recovery: RecoveryReport,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("recovery", &self.recovery).finish_non_exhaustive()
    }
}

/// Replays one record into the engine. Records before the state's position only matter for
/// transactions that were running when the state was taken; everything else before it is
/// in the state already.
struct Redo<'a> {
    engine: &'a Engine,
    state_lsn: Lsn,
    running_at_state: HashSet<Xid>,
    commits: u64,
}

impl Redo<'_> {
    fn apply(&mut self, r: &Replayed<'_>) -> Result<(), NodeError> {
        let after = r.lsn >= self.state_lsn;
        match r.record {
            NodeRecord::RowChange { xid, info, payload }
                if after || self.running_at_state.contains(&xid.0) =>
            {
                let change = Change::decode(info, payload).map_err(|e| {
                    EngineError::Internal(format!("invalid row change at {}: {e}", r.lsn))
                })?;
                self.engine.redo_change(xid.0, change);
            }
            NodeRecord::Commit { xid, .. } if after => {
                self.engine.redo_commit(xid.0)?;
                self.commits += 1;
            }
            NodeRecord::Abort { xid, .. } if after => self.engine.redo_abort(xid.0),
            _ => {}
        }
        Ok(())
    }
}

/// Opens the database of data directory `dir`: loads its checkpoint state, replays WAL to
/// the end, aborts what never ended and opens the WAL writer there.
///
/// # Errors
/// A missing or corrupt control file or state file, WAL that cannot be read, a change
/// that does not apply, a WAL writer that cannot open.
pub fn open_database(
    dir: &Path,
    opts: StartOptions,
    now: SystemTime,
) -> Result<Database, NodeError> {
    let control = ControlFile::read(dir)?;
    let state = CheckpointState::read(dir)?
        .unwrap_or_else(|| CheckpointState::empty(control.redo(), control.next_xid() as u32));
    let log = WalTxnLog::new();
    let running_at_state = state.image.in_progress.iter().map(|(x, _)| *x).collect();
    let (state_lsn, redo) = (state.lsn, state.redo);
    let engine = Engine::from_image(state.image, log.clone());
    let read = ReadOptions {
        seg_size: control.seg_size,
        timeline: control.timeline(),
        system_id: Some(control.system_identifier),
    };
    let mut replay = Redo { engine: &engine, state_lsn, running_at_state, commits: 0 };
    let end = read_wal(&dir.join("pg_wal"), redo, &read, |r| replay.apply(r))?;
    let commits = replay.commits;
    let mut aborted = engine.redo_pending_xids();
    aborted.sort_unstable();
    for xid in &aborted {
        engine.redo_abort(*xid);
    }
    let mut cfg = WriterConfig::new(
        dir.to_path_buf(),
        control.system_identifier,
        read.timeline,
        read.seg_size,
    );
    cfg.fsync = opts.fsync;
    let writer =
        Arc::new(WalWriter::open(cfg, end.write_start(), TimestampTz::from_system_time(now))?);
    log.set_writer(writer.clone());
    let recovery = RecoveryReport { redo, end, commits, aborted };
    Ok(Database { engine, writer, log, control, recovery })
}

#[cfg(test)]
mod tests;
