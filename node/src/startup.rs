//! Starting a node's database from its data directory (`xlog.c: StartupXLOG`,
//! `xlogrecovery.c: PerformWalRecovery`): the checkpoint state is loaded, WAL is replayed
//! from its redo point to the end of valid WAL, transactions that never ended are aborted,
//! and the WAL writer opens where valid WAL ends (after an `XLOG_OVERWRITE_CONTRECORD` when
//! the last record was torn).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::Lsn;

use crate::checkpointer::CheckpointState;
use crate::engine::{Engine, Xid};
use crate::error::NodeError;
use crate::replay::Replay;
use crate::txnlog::WalTxnLog;
use crate::xlog::{timeline, ControlFile, ReadOptions, RecoveryEnd, WalWriter, WriterConfig};

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
    /// The history of the timeline replay followed; WAL goes on on its newest.
    pub history: TimelineHistory,
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
pub fn recover(dir: &Path, follow: Follow) -> Result<Recovered, NodeError> {
    let control = ControlFile::read(dir)?;
    let wal_dir = dir.join("pg_wal");
    let history = target_history(&wal_dir, &control, follow)?;
    let state = CheckpointState::read(dir)?
        .unwrap_or_else(|| CheckpointState::empty(control.redo(), control.next_xid() as u32));
    let log = WalTxnLog::new();
    let redo = state.redo;
    let running_at_state = state.image.in_progress.iter().map(|(x, _)| *x).collect();
    let state_lsn = state.lsn;
    let engine = Engine::from_image(state.image, log.clone());
    let read = ReadOptions {
        seg_size: control.seg_size,
        history: history.clone(),
        system_id: Some(control.system_identifier),
    };
    let mut replay = Replay::new(engine.clone(), state_lsn, running_at_state);
    let end = redo::redo(&wal_dir, redo, &read, &mut replay)?;
    Ok(Recovered { engine, log, control, history, end, replay, redo })
}

/// Which timeline recovery follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The newest one the history files in `pg_wal` lead to (a standby's
    /// `recovery_target_timeline = 'latest'`).
    Latest,
    /// The control file's (crash recovery): the latest checkpoint's timeline, or the
    /// minimum recovery point's if that is later (a promotion whose first checkpoint did
    /// not complete).
    ControlFile,
}

/// The history of the timeline recovery follows, checked to hold the latest checkpoint
/// (`xlogrecovery.c: InitWalRecovery`).
///
/// # Errors
/// A history file that cannot be read; PostgreSQL's FATAL when the latest checkpoint is
/// not on the requested timeline's history.
fn target_history(
    wal_dir: &Path,
    control: &ControlFile,
    follow: Follow,
) -> Result<TimelineHistory, NodeError> {
    let own = control.timeline().max(control.min_recovery_point_tli);
    let target = match follow {
        Follow::Latest => timeline::newest_timeline(wal_dir, own),
        Follow::ControlFile => own,
    };
    let history = timeline::read_history(wal_dir, target)?;
    timeline::check_checkpoint_on(&history, control.checkpoint, control.timeline())
        .map_err(|e| NodeError::Fatal { message: e.message, detail: e.detail })?;
    Ok(history)
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
    let Recovered { engine, log, control, history, end, replay, redo } =
        recover(dir, Follow::ControlFile)?;
    let commits = replay.commits();
    let mut aborted = engine.redo_pending_xids();
    aborted.sort_unstable();
    for xid in &aborted {
        engine.redo_abort(*xid);
    }
    let mut cfg = WriterConfig::new(
        dir.to_path_buf(),
        control.system_identifier,
        history.tli,
        control.seg_size,
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
