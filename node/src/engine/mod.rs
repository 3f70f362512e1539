//! The I/O-free core of the node: values, tables, transactions, row locks, changes and redo.
//!
//! Transactions run at READ COMMITTED as PostgreSQL's do: a reader sees the committed
//! state as of its statement (it takes the engine's lock once per scan) and never waits;
//! a writer of a row another transaction holds waits until that one ends, then re-reads
//! the row and re-checks it (EvalPlanQual). Commit takes the commit lock, appends the
//! commit record through [`TxnLog`], makes the changes visible, then waits for durability.

mod catalog;
mod change;
mod codec;
mod conflict;
mod error;
mod image;
mod key;
mod state;
pub mod time;
mod txn;
pub mod value;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

pub use catalog::{ColumnDef, Key, Oid, Row, TableDef, FIRST_NORMAL_OBJECT_ID};
pub use change::Change;
pub use codec::DecodeError;
pub use conflict::{ConflictHandler, StandbyDelay};
pub use error::EngineError;
pub use image::{Image, TableImage};
pub use state::FIRST_NORMAL_XID;
pub use txn::{InsertOutcome, RowAction, RowOutcome, Txn, WaitReporter};
pub use value::{SqlType, Value};

use state::State;

/// A transaction id (PostgreSQL's 32-bit `TransactionId`).
pub type Xid = u32;

/// A boxed future, as [`TxnLog::wait_commit`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a commit waits before the client is told (`synchronous_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncCommit {
    /// `off`: don't wait; the WAL writer flushes within `wal_writer_delay`.
    Off,
    /// `local`: wait for the local flush.
    Local,
    /// `remote_write`: and for synchronous standbys to write it.
    RemoteWrite,
    /// `on`: and for synchronous standbys to flush it.
    #[default]
    On,
    /// `remote_apply`: and for synchronous standbys to apply it.
    RemoteApply,
}

impl SyncCommit {
    /// The level a `synchronous_commit` value names (its canonical spellings and
    /// `guc.c`'s aliases); `None` for anything else.
    pub fn from_setting(value: &str) -> Option<SyncCommit> {
        Some(match value.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "no" | "0" => SyncCommit::Off,
            "local" => SyncCommit::Local,
            "remote_write" => SyncCommit::RemoteWrite,
            "on" | "true" | "yes" | "1" => SyncCommit::On,
            "remote_apply" => SyncCommit::RemoteApply,
            _ => return None,
        })
    }
}

/// What the engine needs from the WAL: implemented by the node's WAL writer.
pub trait TxnLog: Send + Sync + 'static {
    /// Appends records for changes a statement made (not yet flushed). Called at the end of
    /// every statement that changed something, in order, before the statement returns.
    ///
    /// # Errors
    /// The WAL could not take the records.
    fn log_changes(&self, xid: Xid, changes: &[Change]) -> Result<(), EngineError>;
    /// Appends the commit record. Called while the engine holds its commit lock, so
    /// commit records are in WAL in the order transactions become visible. Returns its LSN.
    ///
    /// # Errors
    /// The WAL could not take the record.
    fn log_commit(&self, xid: Xid, now: SystemTime) -> Result<u64, EngineError>;
    /// Appends an abort record for a transaction that logged changes.
    ///
    /// # Errors
    /// The WAL could not take the record.
    fn log_abort(&self, xid: Xid, now: SystemTime) -> Result<(), EngineError>;
    /// Waits until the commit record at `lsn` is durable as the session's
    /// synchronous_commit (`level`) asks; called after the commit became visible, before
    /// the client is told. `siblings`: how many other transactions, readers too, were
    /// open when it committed.
    fn wait_commit(
        &self,
        lsn: u64,
        level: SyncCommit,
        siblings: usize,
    ) -> BoxFuture<'_, Result<(), EngineError>>;
    /// The current WAL insert position; called just before a transaction's first
    /// `log_changes`, so a checkpoint [`Image`] can say where its redo must start.
    fn insert_lsn(&self) -> u64;
}

/// The database: tables, transactions and redo.
pub struct Engine {
    state: RwLock<State>,
    commit_lock: Mutex<()>,
    log: Arc<dyn TxnLog>,
    /// Tables held by a hot standby's transactions.
    relation_locks: conflict::RelationLocks,
    /// `max_standby_streaming_delay`.
    standby_delay: Mutex<StandbyDelay>,
    /// Transactions begun and not yet dropped, readers too.
    open: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("next_xid", &self.next_xid()).finish_non_exhaustive()
    }
}

impl Engine {
    /// An empty engine whose first transaction gets `next_xid`.
    pub fn new(next_xid: Xid, log: Arc<dyn TxnLog>) -> Arc<Engine> {
        Arc::new(Engine {
            state: RwLock::new(State::new(next_xid)),
            commit_lock: Mutex::new(()),
            log,
            relation_locks: conflict::RelationLocks::default(),
            standby_delay: Mutex::new(StandbyDelay::After(std::time::Duration::from_secs(30))),
            open: Default::default(),
        })
    }

    /// A new transaction (it gets an xid at its first write).
    pub fn begin(self: &Arc<Self>) -> Txn {
        Txn::new(Arc::clone(self))
    }

    /// The xid the next writing transaction gets.
    pub fn next_xid(&self) -> Xid {
        self.state.read().next_xid
    }

    /// The oid the next table gets.
    pub fn next_oid(&self) -> Oid {
        self.state.read().next_oid
    }

    /// Hot standby: every write fails with 25006.
    pub fn set_read_only(&self, read_only: bool) {
        self.state.write().read_only = read_only;
    }

    /// Whether writes are refused (hot standby).
    pub fn is_read_only(&self) -> bool {
        self.state.read().read_only
    }

    /// Changes whenever tables are created or dropped, or such a change commits or aborts
    /// (`plancache.c`'s invalidation, coarsely): a plan bound at one generation names the
    /// tables every transaction sees while the generation stays the same.
    pub fn catalog_generation(&self) -> u64 {
        state::catalog_generation()
    }

    /// Committed table definitions, by oid.
    pub fn tables(&self) -> Vec<Arc<TableDef>> {
        let st = self.state.read();
        st.tables.values().filter(|t| t.visible(None)).map(|t| Arc::clone(&t.def)).collect()
    }

    /// Xids that hold an xid and have not ended.
    pub fn running_xids(&self) -> Vec<Xid> {
        let mut v: Vec<Xid> = self.state.read().running.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Redo under one hold of the engine's lock: a batch of replayed records applied
    /// together (readers still see each transaction whole or not at all).
    pub fn redo_batch(&self) -> RedoBatch<'_> {
        RedoBatch { st: self.state.write() }
    }

    /// Redo: buffers `change` of transaction `xid` until its commit or abort is replayed.
    pub fn redo_change(&self, xid: Xid, change: Change) {
        self.redo_batch().change(xid, change);
    }

    /// Redo: applies everything `xid` changed at once (readers see all or nothing).
    ///
    /// # Errors
    /// A change that does not apply (a table that does not exist); the others still apply.
    pub fn redo_commit(&self, xid: Xid) -> Result<(), EngineError> {
        self.redo_batch().commit(xid)
    }

    /// Redo: discards what `xid` changed.
    pub fn redo_abort(&self, xid: Xid) {
        self.redo_batch().abort(xid);
    }

    /// `max_standby_streaming_delay`, for replay's conflicts with standby transactions.
    pub fn set_standby_delay(&self, delay: StandbyDelay) {
        *self.standby_delay.lock() = delay;
    }

    /// Before the replayed commit of `xid`: the standby transactions holding a table it
    /// drops or truncates give it up (`standby.c: ResolveRecoveryConflictWithLock`),
    /// cancelled after `max_standby_streaming_delay`; returns how many were asked.
    /// Nothing is looked at while no standby transaction holds a table. Blocks the
    /// thread (the tokio worker is handed over while it does).
    pub fn resolve_recovery_conflicts(&self, xid: Xid) -> usize {
        if !self.relation_locks.any() {
            return 0;
        }
        let oids: Vec<Oid> = self.state.read().redo.get(&xid).map_or_else(Vec::new, |changes| {
            changes
                .iter()
                .filter_map(|c| match c {
                    Change::DropTable(oid) | Change::Truncate(oid) => Some(*oid),
                    _ => None,
                })
                .collect()
        });
        if oids.is_empty() {
            return 0;
        }
        let delay = *self.standby_delay.lock();
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi {
            tokio::task::block_in_place(|| self.relation_locks.resolve(&oids, delay))
        } else {
            self.relation_locks.resolve(&oids, delay)
        }
    }

    /// Xids with replayed changes but no replayed commit or abort (at promotion or the end
    /// of crash recovery these are aborted).
    pub fn redo_pending_xids(&self) -> Vec<Xid> {
        self.state.read().redo.keys().copied().collect()
    }
}

/// The engine's lock held for a batch of redo ([`Engine::redo_batch`]).
pub struct RedoBatch<'a> {
    st: parking_lot::RwLockWriteGuard<'a, State>,
}

impl std::fmt::Debug for RedoBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedoBatch").finish_non_exhaustive()
    }
}

impl RedoBatch<'_> {
    /// Buffers `change` of transaction `xid` until its commit or abort is replayed.
    pub fn change(&mut self, xid: Xid, change: Change) {
        self.st.advance_xid(xid);
        self.st.redo.entry(xid).or_default().push(change);
    }

    /// Applies everything `xid` changed.
    ///
    /// # Errors
    /// A change that does not apply (a table that does not exist); the others still apply.
    pub fn commit(&mut self, xid: Xid) -> Result<(), EngineError> {
        let st = &mut *self.st;
        st.advance_xid(xid);
        let mut first_err = None;
        for c in st.redo.remove(&xid).unwrap_or_default() {
            if let Err(e) = st.apply_committed(c) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Discards what `xid` changed.
    pub fn abort(&mut self, xid: Xid) {
        self.st.advance_xid(xid);
        self.st.redo.remove(&xid);
    }

    /// Discards every transaction still pending: at an end-of-recovery record, what was
    /// running on the old timeline can never end (the promoted server aborted it).
    pub fn abort_all(&mut self) {
        self.st.redo.clear();
    }
}

pub mod testlog;
#[cfg(test)]
mod tests;
