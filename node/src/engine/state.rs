//! The engine's shared state: tables of row slots, each with its committed version and at
//! most one pending version of an in-progress transaction (which is also the row lock).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::catalog::{Oid, Row, TableDef, FIRST_NORMAL_OBJECT_ID};
use super::change::Change;
use super::error::EngineError;
use super::key::RowKey;
use super::Xid;

/// transam.h: FirstNormalTransactionId.
pub const FIRST_NORMAL_XID: Xid = 3;

/// Bumped at every change of which tables exist or who sees them: a create, a drop, the
/// end of a transaction that did either, and their redo. A plan bound before a bump may
/// name a table that is gone or miss one that came. One counter for the process, so a
/// value is never seen twice, whichever engine made it.
static CATALOG_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Records a change of the catalog (made under the state's write lock).
pub(crate) fn catalog_changed() {
    CATALOG_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// The current catalog generation.
pub(crate) fn catalog_generation() -> u64 {
    CATALOG_GENERATION.load(Ordering::SeqCst)
}

/// A row's versions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slot {
    /// The committed version; `None` while only an uncommitted insert exists.
    pub committed: Option<Row>,
    /// The version an in-progress transaction wrote (`None` row: it deleted it).
    pub pending: Option<Pending>,
}

/// An uncommitted version and who wrote it.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub xid: Xid,
    /// The writing statement's command id (a statement skips rows it wrote itself).
    pub cid: u32,
    pub row: Option<Row>,
}

impl Slot {
    /// The version transaction `me` sees.
    pub fn visible(&self, me: Option<Xid>) -> Option<&Row> {
        match &self.pending {
            Some(p) if Some(p.xid) == me => p.row.as_ref(),
            _ => self.committed.as_ref(),
        }
    }

    /// The other transaction holding the row, if one does.
    pub fn holder(&self, me: Option<Xid>) -> Option<Xid> {
        self.pending.as_ref().map(|p| p.xid).filter(|x| Some(*x) != me)
    }
}

/// Whether a table's creation or drop is still uncommitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableState {
    Committed,
    CreatedBy(Xid),
    DroppedBy(Xid),
}

/// A table and its rows ordered by key.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub def: Arc<TableDef>,
    pub state: TableState,
    pub rows: BTreeMap<RowKey, Slot>,
}

impl Table {
    /// Whether transaction `me` sees the table.
    pub fn visible(&self, me: Option<Xid>) -> bool {
        match self.state {
            TableState::Committed => true,
            TableState::CreatedBy(x) => Some(x) == me,
            TableState::DroppedBy(x) => Some(x) != me,
        }
    }

    /// Another transaction holding a lock on the table or any of its rows.
    pub fn any_holder(&self, me: Xid) -> Option<Xid> {
        match self.state {
            TableState::CreatedBy(x) | TableState::DroppedBy(x) if x != me => return Some(x),
            _ => {}
        }
        self.rows.values().find_map(|s| s.holder(Some(me)))
    }
}

/// An in-progress transaction that has an xid.
#[derive(Debug)]
pub(crate) struct Running {
    /// Set to `true` when it ends; waiters subscribe.
    pub done: watch::Sender<bool>,
    /// Rows it wrote (to apply or discard at the end).
    pub slots: Vec<(Oid, RowKey)>,
    /// Tables it created or dropped.
    pub tables: Vec<Oid>,
    /// The WAL insert position before its first logged change.
    pub first_lsn: Option<u64>,
}

/// Everything behind the engine's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub tables: BTreeMap<Oid, Table>,
    pub next_oid: Oid,
    pub next_xid: Xid,
    pub running: HashMap<Xid, Running>,
    /// Who waits for whom (each waiter waits for one transaction).
    pub waits_for: HashMap<Xid, Xid>,
    /// Changes replayed for transactions whose commit or abort has not been replayed.
    pub redo: BTreeMap<Xid, Vec<Change>>,
    pub read_only: bool,
}

impl State {
    pub fn new(next_xid: Xid) -> State {
        State {
            tables: BTreeMap::new(),
            next_oid: FIRST_NORMAL_OBJECT_ID,
            next_xid: next_xid.max(FIRST_NORMAL_XID),
            running: HashMap::new(),
            waits_for: HashMap::new(),
            redo: BTreeMap::new(),
            read_only: false,
        }
    }

    /// varsup.c: GetNewTransactionId.
    pub fn assign_xid(&mut self) -> Xid {
        let xid = self.next_xid;
        self.next_xid = xid.wrapping_add(1).max(FIRST_NORMAL_XID);
        let (done, _) = watch::channel(false);
        self.running
            .insert(xid, Running { done, slots: Vec::new(), tables: Vec::new(), first_lsn: None });
        xid
    }

    /// Moves `next_xid` past `xid` (redo).
    pub fn advance_xid(&mut self, xid: Xid) {
        let next = xid.wrapping_add(1).max(FIRST_NORMAL_XID);
        if next.wrapping_sub(self.next_xid) as i32 > 0 {
            self.next_xid = next;
        }
    }

    /// The table named `name` as `me` sees it.
    pub fn find(&self, name: &str, me: Option<Xid>) -> Option<&Table> {
        self.tables.values().find(|t| t.def.name == name && t.visible(me))
    }

    /// The table `oid` as `me` sees it.
    pub fn table(&self, oid: Oid, me: Option<Xid>) -> Result<&Table, EngineError> {
        self.tables
            .get(&oid)
            .filter(|t| t.visible(me))
            .ok_or_else(|| EngineError::UndefinedTable(format!("with OID {oid}")))
    }

    pub fn table_mut(&mut self, oid: Oid) -> Result<&mut Table, EngineError> {
        self.tables
            .get_mut(&oid)
            .ok_or_else(|| EngineError::UndefinedTable(format!("with OID {oid}")))
    }

    /// Makes `xid`'s writes committed or discards them, and wakes its waiters.
    pub fn finish(&mut self, xid: Xid, commit: bool) {
        let Some(run) = self.running.remove(&xid) else { return };
        for (oid, key) in &run.slots {
            let Some(t) = self.tables.get_mut(oid) else { continue };
            let Some(slot) = t.rows.get_mut(key) else { continue };
            match slot.pending.take() {
                Some(p) if p.xid == xid => {
                    if commit {
                        slot.committed = p.row;
                    }
                }
                other => slot.pending = other,
            }
            if slot.committed.is_none() && slot.pending.is_none() {
                t.rows.remove(key);
            }
        }
        if !run.tables.is_empty() {
            catalog_changed();
        }
        for oid in &run.tables {
            let Some(t) = self.tables.get_mut(oid) else { continue };
            match (t.state, commit) {
                (TableState::CreatedBy(x), true) if x == xid => t.state = TableState::Committed,
                (TableState::DroppedBy(x), false) if x == xid => t.state = TableState::Committed,
                (TableState::CreatedBy(x), false) | (TableState::DroppedBy(x), true)
                    if x == xid =>
                {
                    self.tables.remove(oid);
                }
                _ => {}
            }
        }
        self.waits_for.remove(&xid);
        let _ = run.done.send(true);
    }

    /// Applies a committed change (redo).
    pub fn apply_committed(&mut self, change: Change) -> Result<(), EngineError> {
        match change {
            Change::CreateTable(def) => {
                self.next_oid = self.next_oid.max(def.oid.saturating_add(1));
                let t = Table {
                    def: Arc::new(def),
                    state: TableState::Committed,
                    rows: BTreeMap::new(),
                };
                self.tables.insert(t.def.oid, t);
                catalog_changed();
            }
            Change::DropTable(oid) => {
                self.tables.remove(&oid).ok_or_else(|| redo_missing(oid))?;
                catalog_changed();
            }
            Change::Truncate(oid) => {
                self.table_mut(oid).map_err(|_| redo_missing(oid))?.rows.clear()
            }
            Change::Insert { oid, row } => {
                let t = self.table_mut(oid).map_err(|_| redo_missing(oid))?;
                let key = RowKey::of_row(&t.def, &row);
                t.rows.insert(key, Slot { committed: Some(row), pending: None });
            }
            Change::Update { oid, old_key, new_row } => {
                let t = self.table_mut(oid).map_err(|_| redo_missing(oid))?;
                let (old, key) = (RowKey::new(old_key), RowKey::of_row(&t.def, &new_row));
                // A row updated in place takes one descent (insert replaces the value).
                if old != key {
                    t.rows.remove(&old);
                }
                t.rows.insert(key, Slot { committed: Some(new_row), pending: None });
            }
            Change::Delete { oid, key } => {
                let t = self.table_mut(oid).map_err(|_| redo_missing(oid))?;
                t.rows.remove(&RowKey::new(key));
            }
        }
        Ok(())
    }
}

fn redo_missing(oid: Oid) -> EngineError {
    EngineError::Internal(format!("redo: table {oid} does not exist"))
}
