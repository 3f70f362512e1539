//! [`TxnLog`] test doubles: [`VolatileLog`] (no WAL at all, for tests and fuzzing of the
//! layers above) and, in unit tests, a log that records what the engine logged, in order.

use std::time::SystemTime;

#[cfg(test)]
use parking_lot::Mutex;

use super::{BoxFuture, Change, EngineError, SyncCommit, TxnLog, Xid};

/// A [`TxnLog`] that writes nothing: commits are "durable" at once. For tests and fuzz
/// targets of the layers above the engine.
#[derive(Debug, Default)]
pub struct VolatileLog {
    lsn: std::sync::atomic::AtomicU64,
}

impl TxnLog for VolatileLog {
    fn log_changes(&self, _xid: Xid, _changes: &[Change]) -> Result<(), EngineError> {
        self.lsn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn log_commit(&self, _xid: Xid, _now: SystemTime) -> Result<u64, EngineError> {
        Ok(self.lsn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1)
    }

    fn log_abort(&self, _xid: Xid, _now: SystemTime) -> Result<(), EngineError> {
        Ok(())
    }

    fn wait_commit(
        &self,
        _lsn: u64,
        _level: SyncCommit,
        _siblings: usize,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }

    fn insert_lsn(&self) -> u64 {
        self.lsn.load(std::sync::atomic::Ordering::Relaxed) + 1
    }
}

/// One logged event.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
    /// log_changes.
    Changes(Xid, Vec<Change>),
    /// log_commit and its LSN.
    Commit(Xid, u64),
    /// log_abort.
    Abort(Xid),
}

#[cfg(test)]
/// Records events; LSNs count events.
#[derive(Debug, Default)]
pub struct MemLog {
    /// The events.
    pub events: Mutex<Vec<Logged>>,
    /// The `siblings` of each wait_commit, in order.
    pub siblings: Mutex<Vec<usize>>,
}

#[cfg(test)]
impl MemLog {
    /// A copy of the events.
    pub fn events(&self) -> Vec<Logged> {
        self.events.lock().clone()
    }
}

#[cfg(test)]
impl TxnLog for MemLog {
    fn log_changes(&self, xid: Xid, changes: &[Change]) -> Result<(), EngineError> {
        self.events.lock().push(Logged::Changes(xid, changes.to_vec()));
        Ok(())
    }

    fn log_commit(&self, xid: Xid, _now: SystemTime) -> Result<u64, EngineError> {
        let mut ev = self.events.lock();
        let lsn = ev.len() as u64 + 1;
        ev.push(Logged::Commit(xid, lsn));
        Ok(lsn)
    }

    fn log_abort(&self, xid: Xid, _now: SystemTime) -> Result<(), EngineError> {
        self.events.lock().push(Logged::Abort(xid));
        Ok(())
    }

    fn wait_commit(
        &self,
        _lsn: u64,
        _level: SyncCommit,
        siblings: usize,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        self.siblings.lock().push(siblings);
        Box::pin(async { Ok(()) })
    }

    fn insert_lsn(&self) -> u64 {
        self.events.lock().len() as u64 + 1
    }
}
