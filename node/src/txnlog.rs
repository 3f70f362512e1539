//! The engine's [`TxnLog`] over the WAL writer: row changes become records of the node's
//! resource manager, commits and aborts real `XLOG_XACT_COMMIT` / `XLOG_XACT_ABORT`
//! records (`xact.c: RecordTransactionCommit`, `RecordTransactionAbort`).

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use walstream_protocol::lsn::Xid as WalXid;
use walstream_protocol::replication::TimestampTz;
use walstream_protocol::Lsn;

use crate::engine::{BoxFuture, Change, EngineError, SyncCommit, TxnLog, Xid};
use crate::xlog::{records, InlineFlush, WalWriter, XlogError};

/// Writes the engine's transactions to WAL. The writer is set once recovery has found
/// where WAL ends; before that (during redo) nothing may be logged.
#[derive(Debug, Default)]
pub struct WalTxnLog {
    writer: OnceLock<Arc<WalWriter>>,
}

fn log_error(e: XlogError) -> EngineError {
    EngineError::Log(e.to_string())
}

impl WalTxnLog {
    /// A log with no writer yet.
    pub fn new() -> Arc<WalTxnLog> {
        Arc::new(WalTxnLog::default())
    }

    /// Sets the writer (once, when recovery ends); later calls are ignored.
    pub fn set_writer(&self, writer: Arc<WalWriter>) {
        let _ = self.writer.set(writer);
    }

    /// The writer, once set.
    pub fn writer(&self) -> Option<&Arc<WalWriter>> {
        self.writer.get()
    }

    fn w(&self) -> Result<&Arc<WalWriter>, EngineError> {
        self.writer.get().ok_or_else(|| EngineError::ReadOnly("a write".to_string()))
    }
}

impl TxnLog for WalTxnLog {
    fn log_changes(&self, xid: Xid, changes: &[Change]) -> Result<(), EngineError> {
        let w = self.w()?;
        for change in changes {
            let (info, payload) = change.encode();
            let spec = records::row_change(WalXid(xid), info, payload).map_err(log_error)?;
            w.insert(&spec).map_err(log_error)?;
        }
        Ok(())
    }

    fn log_commit(&self, xid: Xid, now: SystemTime) -> Result<u64, EngineError> {
        let spec = records::commit(WalXid(xid), TimestampTz::from_system_time(now));
        // The commit is durable once the whole record is: wait for its end.
        Ok(self.w()?.insert(&spec).map_err(log_error)?.end_lsn.0)
    }

    fn log_abort(&self, xid: Xid, now: SystemTime) -> Result<(), EngineError> {
        let spec = records::abort(WalXid(xid), TimestampTz::from_system_time(now));
        self.w()?.insert(&spec).map(|_| ()).map_err(log_error)
    }

    fn wait_commit(
        &self,
        lsn: u64,
        level: SyncCommit,
        siblings: usize,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        // Off: the WAL writer flushes within wal_writer_delay; the other levels wait for
        // the local flush (synchronous standbys are not waited for yet).
        if level == SyncCommit::Off {
            return Box::pin(async { Ok(()) });
        }
        // A commit alone keeps its thread through its own fsync; beside others it hands
        // the worker's other sessions on first.
        let how = if siblings == 0 { InlineFlush::Hold } else { InlineFlush::HandOff };
        let flush = self.w().map(|w| w.flush_as(Lsn(lsn), how));
        Box::pin(async move { flush?.await.map(|_| ()).map_err(log_error) })
    }

    fn insert_lsn(&self) -> u64 {
        self.writer.get().map_or(0, |w| w.insert_position().0)
    }
}
