//! A [`TxnLog`] test double that records what the engine logged, in order.

use std::time::SystemTime;

use parking_lot::Mutex;

use super::{BoxFuture, Change, EngineError, TxnLog, Xid};

/// One logged event.
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
    Changes(Xid, Vec<Change>),
    Commit(Xid, u64),
    Abort(Xid),
}

/// Records events; LSNs count events.
#[derive(Debug, Default)]
pub struct MemLog {
    pub events: Mutex<Vec<Logged>>,
}

impl MemLog {
    pub fn events(&self) -> Vec<Logged> {
        self.events.lock().clone()
    }
}

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

    fn wait_commit(&self, _lsn: u64) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async { Ok(()) })
    }

    fn insert_lsn(&self) -> u64 {
        self.events.lock().len() as u64 + 1
    }
}
