//! Starting a node's database from its data directory (`xlog.c: StartupXLOG`,
//! `xlogrecovery.c: PerformWalRecovery`): the checkpoint state is loaded, WAL is replayed
//! from its redo point to the end of valid WAL, transactions that never ended are aborted,
//! and the WAL writer opens where valid WAL ends (after an `XLOG_OVERWRITE_CONTRECORD` when
//! the last record was torn).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::Lsn;

use crate::checkpointer::CheckpointState;
use crate::engine::{Engine, Xid};
use crate::error::NodeError;
use crate::replay::Replay;
use crate::txnlog::WalTxnLog;
use crate::xlog::{ControlFile, ReadOptions, RecoveryEnd, WalWriter, WriterConfig};

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

/// The database as replay left it, before anything is written: what a primary opens its
/// WAL writer on and a standby goes on streaming into.
pub struct Recovered {
    /// The engine; transactions whose end was not replayed are still pending in it.
    pub engine: Arc<Engine>,
    /// The engine's log (no writer yet).
    pub log: Arc<WalTxnLog>,
    /// The control file as read.
    pub control: ControlFile,
    /// Where valid WAL ends and why.
    pub end: RecoveryEnd,
    /// The replay, to go on with.
    pub replay: Replay,
    /// Where replay started.
    pub redo: Lsn,
}

impl std::fmt::Debug for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovered").field("redo", &self.redo).field("end", &self.end).finish()
    }
}

/// Loads the checkpoint state of data directory `dir` and replays its WAL to the end of
/// valid WAL, writing nothing.
///
/// # Errors
/// A missing or corrupt control file or state file, WAL that cannot be read, a change
/// that does not apply.
pub fn recover(dir: &Path) -> Result<Recovered, NodeError> {
    let control = ControlFile::read(dir)?;
    let state = CheckpointState::read(dir)?
        .unwrap_or_else(|| CheckpointState::empty(control.redo(), control.next_xid() as u32));
    let log = WalTxnLog::new();
    let redo = state.redo;
    let running_at_state = state.image.in_progress.iter().map(|(x, _)| *x).collect();
    let state_lsn = state.lsn;
    let engine = Engine::from_image(state.image, log.clone());
    let read = ReadOptions {
        seg_size: control.seg_size,
        timeline: control.timeline(),
        system_id: Some(control.system_identifier),
    };
    let mut replay = Replay::new(engine.clone(), state_lsn, running_at_state);
    let end = redo::redo(&dir.join("pg_wal"), redo, &read, &mut replay)?;
    Ok(Recovered { engine, log, control, end, replay, redo })
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
    let Recovered { engine, log, control, end, replay, redo } = recover(dir)?;
    let commits = replay.commits();
    let mut aborted = engine.redo_pending_xids();
    aborted.sort_unstable();
    for xid in &aborted {
        engine.redo_abort(*xid);
    }
    let read = ReadOptions {
        seg_size: control.seg_size,
        timeline: control.timeline(),
        system_id: Some(control.system_identifier),
    };
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

mod redo;
#[cfg(test)]
mod tests;
