//! [`Txn`]: one transaction's reads, writes, row-lock waits, commit and abort.

use std::ops::Bound;
use std::sync::Arc;
use std::time::SystemTime;

use super::catalog::{Key, Oid, Row, TableDef};
use super::change::Change;
use super::error::EngineError;
use super::key::RowKey;
use super::state::{Pending, Slot, State, TableState};
use super::{Engine, SyncCommit, Xid};

/// Loops that wait for another transaction give up after this many waits.
const MAX_RETRIES: usize = 100_000;

/// What [`Txn::insert`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// The row is in.
    Inserted,
    /// A row with the same key exists (committed, or this transaction's own).
    Conflict {
        /// That row.
        existing: Row,
        /// It was written by this same statement.
        same_command: bool,
    },
}

/// What the callback of [`Txn::modify_row`] decides for the row's current version.
#[derive(Debug, Clone, PartialEq)]
pub enum RowAction {
    /// Leave it (the WHERE clause no longer holds).
    Skip,
    /// Replace it with this row (its key may change).
    Update(Row),
    /// Delete it.
    Delete,
}

/// What [`Txn::modify_row`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    /// The callback said skip.
    Skipped,
    /// The row no longer exists (deleted by a transaction that committed meanwhile).
    Gone,
    /// This statement already wrote the row (PostgreSQL: TM_SelfModified).
    SelfModified,
    /// Updated from `old` to `new`.
    Updated {
        /// The version the callback saw.
        old: Row,
        /// The version written.
        new: Row,
    },
    /// Deleted; the version the callback saw.
    Deleted(Row),
}

/// One step of an operation: done, or wait for a transaction and try again.
enum Step<T> {
    Done(T),
    Wait(Xid),
}

/// A transaction. It takes an xid at its first write; dropping it unfinished aborts it.
#[derive(Debug)]
pub struct Txn {
    engine: Arc<Engine>,
    xid: Option<Xid>,
    cid: u32,
    changes: Vec<Change>,
    logged: bool,
    ended: bool,
    lock_timeout: Option<std::time::Duration>,
    wait_reporter: Option<WaitReporter>,
    /// On a hot standby: the holder id of the tables this transaction read, and how
    /// replay asks it to give them up.
    conflict: Option<(u64, super::ConflictHandler)>,
}

/// Told `true` when a transaction starts waiting for another's row lock and `false`
/// when the wait ends (`pg_stat_activity`'s `Lock` / `transactionid`).
#[derive(Clone)]
pub struct WaitReporter(pub Arc<dyn Fn(bool) + Send + Sync>);

impl std::fmt::Debug for WaitReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitReporter")
    }
}

/// Takes an xid for the transaction if it has none (xact.c: GetCurrentTransactionId).
fn xid_in(xid: &mut Option<Xid>, st: &mut State) -> Xid {
    *xid.get_or_insert_with(|| st.assign_xid())
}

/// Removes a waiter's wait-for edge, and reports the wait's end, however it ends.
struct WaitGuard<'a> {
    engine: &'a Engine,
    me: Xid,
    reporter: Option<&'a WaitReporter>,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.engine.state.write().waits_for.remove(&self.me);
        if let Some(r) = self.reporter {
            (r.0)(false);
        }
    }
}

impl Txn {
    pub(crate) fn new(engine: Arc<Engine>) -> Txn {
        engine.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Txn {
            engine,
            xid: None,
            cid: 0,
            changes: Vec::new(),
            logged: false,
            ended: false,
            lock_timeout: None,
            wait_reporter: None,
            conflict: None,
        }
    }

    /// On a hot standby: the tables this transaction reads are held until it ends, and
    /// replay that drops or truncates one asks `handler` to give up after
    /// `max_standby_streaming_delay`.
    pub fn set_conflict_handler(&mut self, handler: Option<super::ConflictHandler>) {
        if let Some((id, _)) = self.conflict.take() {
            self.engine.relation_locks.release(id);
        }
        self.conflict = handler.map(|h| (self.engine.relation_locks.holder(), h));
    }

    /// Whether no conflict handler was set yet (a block's statements keep the first).
    pub fn conflict_handler_unset(&self) -> bool {
        self.conflict.is_none()
    }

    /// Holds table `oid` when this is a standby's transaction.
    fn hold(&self, oid: Oid) {
        if let Some((id, handler)) = &self.conflict {
            self.engine.relation_locks.hold(*id, handler, oid);
        }
    }

    /// The transaction ended: its tables are free for replay.
    fn release_relations(&mut self) {
        if let Some((id, _)) = &self.conflict {
            self.engine.relation_locks.release(*id);
        }
    }

    /// Who is told when this transaction waits for a row lock.
    pub fn set_wait_reporter(&mut self, reporter: Option<WaitReporter>) {
        self.wait_reporter = reporter;
    }

    /// `lock_timeout`: the longest a row lock wait may take before the statement fails
    /// with 55P03 (`None`: no limit).
    pub fn set_lock_timeout(&mut self, limit: Option<std::time::Duration>) {
        self.lock_timeout = limit;
    }

    /// The transaction's xid, if it has written.
    pub fn xid(&self) -> Option<Xid> {
        self.xid
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The table named `name`, as this transaction sees it.
    ///
    /// # Errors
    /// 42P01 when there is none.
    pub fn table(&self, name: &str) -> Result<Arc<TableDef>, EngineError> {
        let def = {
            let st = self.engine.state.read();
            st.find(name, self.xid)
                .map(|t| Arc::clone(&t.def))
                .ok_or_else(|| EngineError::UndefinedTable(name.into()))?
        };
        self.hold(def.oid);
        Ok(def)
    }

    /// Holds tables a reused plan names, as [`Txn::table`] holds the ones it looks up
    /// (a hot standby's replay of their DROP or TRUNCATE then waits for this transaction).
    pub fn hold_tables(&self, oids: &[Oid]) {
        for oid in oids {
            self.hold(*oid);
        }
    }

    /// The rows of table `oid` with keys in `range`, in key order, as of now (committed
    /// rows and this transaction's own writes). Never waits.
    ///
    /// # Errors
    /// 42P01 when the table is gone.
    pub fn scan(&self, oid: Oid, range: (Bound<Key>, Bound<Key>)) -> Result<Vec<Row>, EngineError> {
        let st = self.engine.state.read();
        let t = st.table(oid, self.xid)?;
        let bound = |b: Bound<Key>| b.map(RowKey::new);
        let range = (bound(range.0), bound(range.1));
        // BTreeMap::range panics on a start after the end, or equal ends both excluded.
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
            (&range.0, &range.1)
        {
            let both = matches!(range, (Bound::Excluded(_), Bound::Excluded(_)));
            if a > b || (a == b && both) {
                return Ok(Vec::new());
            }
        }
        Ok(t.rows.range(range).filter_map(|(_, s)| s.visible(self.xid).cloned()).collect())
    }

    /// Ends a statement: logs what it changed (TxnLog::log_changes) and advances the
    /// command id.
    ///
    /// # Errors
    /// The WAL could not take the records.
    pub fn end_statement(&mut self) -> Result<(), EngineError> {
        self.cid += 1;
        let Some(xid) = self.xid else { return Ok(()) };
        if self.changes.is_empty() {
            return Ok(());
        }
        if !self.logged {
            let lsn = self.engine.log.insert_lsn();
            if let Some(r) = self.engine.state.write().running.get_mut(&xid) {
                r.first_lsn = Some(lsn);
            }
        }
        let changes = std::mem::take(&mut self.changes);
        self.engine.log.log_changes(xid, &changes)?;
        self.logged = true;
        Ok(())
    }

    /// Drops what the current statement changed from the log buffer (the statement
    /// failed; the transaction will abort).
    pub fn discard_statement(&mut self) {
        self.changes.clear();
    }

    /// Waits until `holder` ends; 40P01 if that would close a wait-for cycle.
    async fn wait(&mut self, holder: Xid) -> Result<(), EngineError> {
        let mut rx = {
            let mut st = self.engine.state.write();
            let me = xid_in(&mut self.xid, &mut st);
            let Some(run) = st.running.get(&holder) else { return Ok(()) };
            let rx = run.done.subscribe();
            // deadlock.c: DeadLockCheck, for waits on transactions only.
            let mut cur = holder;
            let mut chain =
                vec![format!("Transaction {me} waits for ShareLock on transaction {holder}.")];
            for _ in 0..=st.running.len() {
                let Some(&next) = st.waits_for.get(&cur) else { break };
                chain.push(format!("Transaction {cur} waits for ShareLock on transaction {next}."));
                if next == me {
                    return Err(EngineError::Deadlock { detail: chain.join("\n") });
                }
                cur = next;
            }
            st.waits_for.insert(me, holder);
            rx
        };
        let reporter = self.wait_reporter.as_ref();
        if let Some(r) = reporter {
            (r.0)(true);
        }
        let _guard = WaitGuard { engine: &self.engine, me: self.xid.unwrap_or_default(), reporter };
        match self.lock_timeout {
            Some(limit) => {
                if tokio::time::timeout(limit, rx.wait_for(|done| *done)).await.is_err() {
                    return Err(EngineError::LockTimeout);
                }
            }
            None => {
                let _ = rx.wait_for(|done| *done).await;
            }
        }
        Ok(())
    }

    /// Runs `op` under the engine's write lock, waiting and retrying while it asks to.
    async fn with_waits<T, E: From<EngineError>>(
        &mut self,
        mut op: impl FnMut(&mut Self, &mut State) -> Result<Step<T>, E>,
    ) -> Result<T, E> {
        for _ in 0..MAX_RETRIES {
            let step = {
                let engine = Arc::clone(&self.engine);
                let mut st = engine.state.write();
                if st.read_only {
                    return Err(EngineError::ReadOnly("a write".into()).into());
                }
                op(self, &mut st)?
            };
            match step {
                Step::Done(v) => return Ok(v),
                Step::Wait(x) => self.wait(x).await?,
            }
        }
        Err(EngineError::Internal("gave up waiting for a row lock".into()).into())
    }

    /// Inserts `row` into table `oid`, waiting for a transaction that holds the same key.
    ///
    /// # Errors
    /// 23502 for a NULL in a NOT NULL column, 42P01, 40P01.
    pub async fn insert(&mut self, oid: Oid, row: Row) -> Result<InsertOutcome, EngineError> {
        self.with_waits(|tx, st| tx.try_insert(st, oid, &row)).await
    }

    fn try_insert(
        &mut self,
        st: &mut State,
        oid: Oid,
        row: &Row,
    ) -> Result<Step<InsertOutcome>, EngineError> {
        let xid = xid_in(&mut self.xid, st);
        let t = st.table(oid, Some(xid))?;
        if let TableState::DroppedBy(x) | TableState::CreatedBy(x) = t.state {
            if x != xid {
                return Ok(Step::Wait(x));
            }
        }
        t.def.check_not_null(row)?;
        let key = RowKey::of_row(&t.def, row);
        if let Some(slot) = t.rows.get(&key) {
            if let Some(h) = slot.holder(Some(xid)) {
                return Ok(Step::Wait(h));
            }
            if let Some(existing) = slot.visible(Some(xid)) {
                let same_command = slot.pending.as_ref().is_some_and(|p| p.cid == self.cid);
                return Ok(Step::Done(InsertOutcome::Conflict {
                    existing: existing.clone(),
                    same_command,
                }));
            }
        }
        let pending = Pending { xid, cid: self.cid, row: Some(row.clone()) };
        st.table_mut(oid)?.rows.entry(key.clone()).or_insert_with(Slot::default).pending =
            Some(pending);
        self.record(st, xid, oid, key);
        self.changes.push(Change::Insert { oid, row: row.clone() });
        Ok(Step::Done(InsertOutcome::Inserted))
    }

    fn record(&self, st: &mut State, xid: Xid, oid: Oid, key: RowKey) {
        if let Some(r) = st.running.get_mut(&xid) {
            r.slots.push((oid, key));
        }
    }

    /// Locks the row of table `oid` at `key` (waiting for its holder), then calls `f`
    /// with its current version, which decides to skip, update or delete it: a row that
    /// another transaction changed and committed meanwhile is re-checked (EvalPlanQual).
    ///
    /// # Errors
    /// What `f` returns; 23505 when an update moves the row onto an existing key; 23502;
    /// 40P01.
    pub async fn modify_row<E: From<EngineError>>(
        &mut self,
        oid: Oid,
        key: &Key,
        mut f: impl FnMut(&Row) -> Result<RowAction, E>,
    ) -> Result<RowOutcome, E> {
        self.with_waits(|tx, st| tx.try_modify(st, oid, key, &mut f)).await
    }

    fn try_modify<E: From<EngineError>>(
        &mut self,
        st: &mut State,
        oid: Oid,
        key: &Key,
        f: &mut impl FnMut(&Row) -> Result<RowAction, E>,
    ) -> Result<Step<RowOutcome>, E> {
        let xid = xid_in(&mut self.xid, st);
        let t = st.table(oid, Some(xid))?;
        if let TableState::DroppedBy(x) = t.state {
            if x != xid {
                return Ok(Step::Wait(x));
            }
        }
        let row_key = RowKey::from_key(key);
        let Some(slot) = t.rows.get(&row_key) else { return Ok(Step::Done(RowOutcome::Gone)) };
        if let Some(h) = slot.holder(Some(xid)) {
            return Ok(Step::Wait(h));
        }
        if slot.pending.as_ref().is_some_and(|p| p.cid == self.cid) {
            return Ok(Step::Done(RowOutcome::SelfModified));
        }
        let Some(old) = slot.visible(Some(xid)).cloned() else {
            return Ok(Step::Done(RowOutcome::Gone));
        };
        let def = Arc::clone(&t.def);
        let new = match f(&old)? {
            RowAction::Skip => return Ok(Step::Done(RowOutcome::Skipped)),
            RowAction::Delete => {
                self.set_pending(st, xid, oid, row_key, None)?;
                self.changes.push(Change::Delete { oid, key: key.clone() });
                return Ok(Step::Done(RowOutcome::Deleted(old)));
            }
            RowAction::Update(new) => new,
        };
        def.check_not_null(&new)?;
        let new_key = RowKey::of_row(&def, &new);
        if new_key != row_key {
            if let Some(s) = st.table(oid, Some(xid))?.rows.get(&new_key) {
                if let Some(h) = s.holder(Some(xid)) {
                    return Ok(Step::Wait(h));
                }
                if s.visible(Some(xid)).is_some() {
                    return Err(def.unique_violation(&def.key_of(&new)).into());
                }
            }
            self.set_pending(st, xid, oid, row_key, None)?;
        }
        self.set_pending(st, xid, oid, new_key, Some(new.clone()))?;
        self.changes.push(Change::Update { oid, old_key: key.clone(), new_row: new.clone() });
        Ok(Step::Done(RowOutcome::Updated { old, new }))
    }

    fn set_pending(
        &self,
        st: &mut State,
        xid: Xid,
        oid: Oid,
        key: RowKey,
        row: Option<Row>,
    ) -> Result<(), EngineError> {
        let pending = Pending { xid, cid: self.cid, row };
        st.table_mut(oid)?.rows.entry(key.clone()).or_default().pending = Some(pending);
        self.record(st, xid, oid, key);
        Ok(())
    }

    /// CREATE TABLE: `def` gets the next oid. `None` when `if_not_exists` and a table of
    /// that name exists.
    ///
    /// # Errors
    /// 42P07 when a table of that name exists.
    pub async fn create_table(
        &mut self,
        mut def: TableDef,
        if_not_exists: bool,
    ) -> Result<Option<Arc<TableDef>>, EngineError> {
        self.with_waits(|tx, st| {
            if st.find(&def.name, tx.xid).is_some() {
                return match if_not_exists {
                    true => Ok(Step::Done(None)),
                    false => Err(EngineError::DuplicateTable(def.name.clone())),
                };
            }
            let other = st.tables.values().find(|t| t.def.name == def.name && !t.visible(tx.xid));
            if let Some(TableState::CreatedBy(x)) = other.map(|t| t.state) {
                return Ok(Step::Wait(x));
            }
            let xid = xid_in(&mut tx.xid, st);
            def.oid = st.next_oid;
            st.next_oid = st.next_oid.checked_add(1).unwrap_or(super::FIRST_NORMAL_OBJECT_ID);
            let d = Arc::new(def.clone());
            let t = super::state::Table {
                def: Arc::clone(&d),
                state: TableState::CreatedBy(xid),
                rows: Default::default(),
            };
            st.tables.insert(def.oid, t);
            super::state::catalog_changed();
            if let Some(r) = st.running.get_mut(&xid) {
                r.tables.push(def.oid);
            }
            tx.changes.push(Change::CreateTable(def.clone()));
            Ok(Step::Done(Some(d)))
        })
        .await
    }

    /// DROP TABLE, after every other transaction writing it has ended. `None` when
    /// `if_exists` and there is no such table.
    ///
    /// # Errors
    /// 42P01 when there is no such table.
    pub async fn drop_table(
        &mut self,
        name: &str,
        if_exists: bool,
    ) -> Result<Option<Oid>, EngineError> {
        self.with_waits(|tx, st| {
            let Some(t) = st.find(name, tx.xid) else {
                return match if_exists {
                    true => Ok(Step::Done(None)),
                    false => Err(EngineError::UndefinedTable(name.into())),
                };
            };
            let oid = t.def.oid;
            let xid = xid_in(&mut tx.xid, st);
            if let Some(h) = st.table(oid, Some(xid))?.any_holder(xid) {
                return Ok(Step::Wait(h));
            }
            let t = st.table_mut(oid)?;
            super::state::catalog_changed();
            if t.state == TableState::CreatedBy(xid) {
                st.tables.remove(&oid);
            } else {
                t.state = TableState::DroppedBy(xid);
                if let Some(r) = st.running.get_mut(&xid) {
                    r.tables.push(oid);
                }
            }
            tx.changes.push(Change::DropTable(oid));
            Ok(Step::Done(Some(oid)))
        })
        .await
    }

    /// TRUNCATE, after every other transaction writing the table has ended.
    ///
    /// # Errors
    /// 42P01 when the table is gone.
    pub async fn truncate(&mut self, oid: Oid) -> Result<(), EngineError> {
        self.with_waits(|tx, st| {
            let xid = xid_in(&mut tx.xid, st);
            if let Some(h) = st.table(oid, Some(xid))?.any_holder(xid) {
                return Ok(Step::Wait(h));
            }
            let keys: Vec<RowKey> = st
                .table(oid, Some(xid))?
                .rows
                .iter()
                .filter(|(_, s)| s.visible(Some(xid)).is_some())
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                tx.set_pending(st, xid, oid, k, None)?;
            }
            tx.changes.push(Change::Truncate(oid));
            Ok(Step::Done(()))
        })
        .await
    }

    /// Commits: under the commit lock, appends the commit record and makes the changes
    /// visible; then waits for the record's durability. Returns the commit record's LSN
    /// (`None` for a transaction that logged nothing).
    ///
    /// # Errors
    /// The WAL failed (the transaction is then aborted) or durability could not be had.
    pub async fn commit(&mut self, now: SystemTime) -> Result<Option<u64>, EngineError> {
        self.commit_at(now, SyncCommit::On).await
    }

    /// [`Txn::commit`], waiting for durability as `level` (the session's
    /// synchronous_commit) asks.
    ///
    /// # Errors
    /// As [`Txn::commit`].
    pub async fn commit_at(
        &mut self,
        now: SystemTime,
        level: SyncCommit,
    ) -> Result<Option<u64>, EngineError> {
        if std::mem::replace(&mut self.ended, true) {
            return Ok(None);
        }
        self.release_relations();
        let Some(xid) = self.xid else { return Ok(None) };
        if let Err(e) = self.end_statement() {
            self.abort_in_memory(xid);
            return Err(e);
        }
        if !self.logged {
            self.engine.state.write().finish(xid, true);
            return Ok(None);
        }
        let lsn = {
            let _commit = self.engine.commit_lock.lock();
            // xact.c: RecordTransactionCommit, then ProcArrayEndTransaction.
            let lsn = self.engine.log.log_commit(xid, now);
            self.engine.state.write().finish(xid, lsn.is_ok());
            lsn?
        };
        // This one is open until dropped.
        let siblings = self.engine.open.load(std::sync::atomic::Ordering::Relaxed) - 1;
        self.engine.log.wait_commit(lsn, level, siblings).await?;
        Ok(Some(lsn))
    }

    /// Aborts: appends an abort record if the transaction logged changes, and discards
    /// its writes.
    ///
    /// # Errors
    /// The abort record could not be appended (the writes are discarded anyway).
    pub fn rollback(&mut self, now: SystemTime) -> Result<(), EngineError> {
        if std::mem::replace(&mut self.ended, true) {
            return Ok(());
        }
        self.release_relations();
        let Some(xid) = self.xid else { return Ok(()) };
        let res = if self.logged { self.engine.log.log_abort(xid, now) } else { Ok(()) };
        self.abort_in_memory(xid);
        res
    }

    fn abort_in_memory(&mut self, xid: Xid) {
        self.changes.clear();
        self.engine.state.write().finish(xid, false);
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        // An unfinished transaction of a session that went away: abort it now.
        let _ = self.rollback(SystemTime::now());
        self.release_relations();
        self.engine.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
