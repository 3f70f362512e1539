//! Physical replication slots, persistent and temporary, and the WAL they retain
//! (`replication/slot.c`, `slotfuncs.c`, the slot commands of `walsender.c`).
//!
//! A [`SlotStore`] is shared by every backend (`Arc`) and locked internally; no lock is
//! held across an `await`. Persistent slots live in `<dir>/<name>/state` (see [`state`]);
//! temporary slots only in memory, owned by the session that made them.
//!
//! # Persistence of `restart_lsn`
//! PostgreSQL writes advanced slots at checkpoints. Here [`SlotStore::advance`] writes
//! the state at most once per [`PERSIST_INTERVAL`] per slot and otherwise marks it
//! dirty; dirty slots are written on release, by [`SlotStore::flush_dirty`], and by
//! the next advance after the interval. A crash can therefore only lose recent
//! progress, leaving an older `restart_lsn` on disk: more WAL retained, never less.

mod error;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use walstream_protocol::{Lsn, TimeLineId};

pub use error::SlotError;
pub use state::{fuzz_slot_state, SlotState, StateDecodeError};

/// `NAMEDATALEN` of PostgreSQL: slot names are at most 63 bytes.
pub const NAMEDATALEN: usize = 64;

/// How often an advancing slot is written to disk at most (see the module docs).
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// What `pg_replication_slots` and `READ_REPLICATION_SLOT` show of a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// The slot name.
    pub name: String,
    /// Whether the slot is temporary (dropped at the end of its session, never on disk).
    pub temporary: bool,
    /// The backend using the slot; a temporary slot stays active for its creator.
    pub active_pid: Option<i32>,
    /// The oldest WAL the slot retains.
    pub restart_lsn: Option<Lsn>,
    /// The timeline of `restart_lsn`.
    pub restart_tli: Option<TimeLineId>,
}

#[derive(Debug)]
struct Slot {
    info: SlotInfo,
    /// `restart_lsn` changed since the state file was written.
    dirty: bool,
    last_write: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    slots: BTreeMap<String, Slot>,
}

/// All replication slots of the server.
#[derive(Debug)]
pub struct SlotStore {
    /// `pg_replslot`, or `None` for a store that persists nothing.
    dir: Option<PathBuf>,
    max_slots: usize,
    inner: Mutex<Inner>,
    /// Woken whenever a slot is released or dropped (`active_cv`).
    released: Notify,
}

impl SlotStore {
    /// Loads the persistent slots from `dir` (created if missing), removing what an
    /// interrupted create, drop or write left behind (`slot.c: StartupReplicationSlots`).
    ///
    /// # Errors
    /// A state file that cannot be read or is corrupt (naming the file), or more slots
    /// on disk than `max_replication_slots`.
    pub fn open(dir: &Path, max_replication_slots: usize) -> Result<SlotStore, SlotError> {
        std::fs::create_dir_all(dir).map_err(|e| SlotError::io(dir, e))?;
        let mut slots = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| SlotError::io(dir, e))? {
            let entry = entry.map_err(|e| SlotError::io(dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !path.is_dir() {
                continue;
            }
            if name.ends_with(".tmp") {
                std::fs::remove_dir_all(&path).map_err(|e| SlotError::io(&path, e))?;
                continue;
            }
            let info = load_slot(&path)?;
            slots.insert(info.name.clone(), Slot { info, dirty: false, last_write: None });
        }
        if slots.len() > max_replication_slots {
            return Err(SlotError::TooManyOnDisk);
        }
        Ok(SlotStore::new(Some(dir.to_path_buf()), max_replication_slots, slots))
    }

    /// A store that keeps persistent slots in memory only (tests, throwaway servers).
    pub fn in_memory(max_replication_slots: usize) -> SlotStore {
        SlotStore::new(None, max_replication_slots, BTreeMap::new())
    }

    fn new(dir: Option<PathBuf>, max_slots: usize, slots: BTreeMap<String, Slot>) -> Self {
        SlotStore { dir, max_slots, inner: Mutex::new(Inner { slots }), released: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a slot (`CREATE_REPLICATION_SLOT name [TEMPORARY] PHYSICAL [RESERVE_WAL]`),
    /// with `restart_lsn` set when `reserve` is given. The slot is released afterwards;
    /// a temporary one stays active for `owner_pid` until it is dropped, as in PostgreSQL.
    ///
    /// # Errors
    /// `max_replication_slots` is 0, an invalid name, an existing slot, no free slot, or
    /// the state file cannot be written.
    pub fn create(
        &self,
        name: &str,
        temporary: bool,
        owner_pid: i32,
        reserve: Option<(Lsn, TimeLineId)>,
    ) -> Result<SlotInfo, SlotError> {
        // slot.c: CheckSlotRequirements, then ReplicationSlotCreate's checks in order.
        if self.max_slots == 0 {
            return Err(SlotError::NotEnabled);
        }
        validate_name(name)?;
        let mut inner = self.lock();
        if inner.slots.contains_key(name) {
            return Err(SlotError::AlreadyExists(name.to_string()));
        }
        if inner.slots.len() >= self.max_slots {
            return Err(SlotError::AllInUse);
        }
        let info = SlotInfo {
            name: name.to_string(),
            temporary,
            active_pid: temporary.then_some(owner_pid),
            restart_lsn: reserve.map(|r| r.0),
            restart_tli: reserve.map(|r| r.1),
        };
        if let (Some(dir), false) = (&self.dir, temporary) {
            let state = SlotState { name: name.to_string(), restart: reserve };
            state::create_on_disk(dir, &state).map_err(|e| SlotError::io(dir, e))?;
        }
        let last_write = Some(Instant::now());
        inner.slots.insert(name.to_string(), Slot { info: info.clone(), dirty: false, last_write });
        Ok(info)
    }

    /// The slot `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<SlotInfo> {
        self.lock().slots.get(name).map(|s| s.info.clone())
    }

    /// Every slot, by name.
    pub fn list(&self) -> Vec<SlotInfo> {
        self.lock().slots.values().map(|s| s.info.clone()).collect()
    }

    /// Marks the slot as used by `pid` (`START_REPLICATION SLOT name`,
    /// `slot.c: ReplicationSlotAcquire` with nowait).
    ///
    /// # Errors
    /// No such slot; the slot is active for another pid.
    pub fn acquire(&self, name: &str, pid: i32) -> Result<SlotInfo, SlotError> {
        let mut inner = self.lock();
        let slot =
            inner.slots.get_mut(name).ok_or_else(|| SlotError::DoesNotExist(name.to_string()))?;
        match slot.info.active_pid {
            Some(other) if other != pid => {
                Err(SlotError::Active { name: name.to_string(), pid: other })
            }
            _ => {
                slot.info.active_pid = Some(pid);
                Ok(slot.info.clone())
            }
        }
    }

    /// Stops using the slot (`ReplicationSlotRelease`): a persistent slot becomes
    /// inactive and its state is written if dirty; a temporary slot stays with its owner.
    /// Does nothing unless `pid` holds the slot.
    pub fn release(&self, name: &str, pid: i32) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(name) {
            if slot.info.active_pid == Some(pid) && !slot.info.temporary {
                slot.info.active_pid = None;
                self.persist_if_dirty(slot);
            }
        }
        drop(inner);
        self.released.notify_waiters();
    }

    /// Drops the slot (`DROP_REPLICATION_SLOT name [WAIT]`). With `wait`, waits until
    /// another backend using it releases it; without, that is an error.
    ///
    /// # Errors
    /// No such slot (also when it disappears while waiting); active for another pid
    /// without `wait`; the directory cannot be removed.
    pub async fn drop_slot(&self, name: &str, pid: i32, wait: bool) -> Result<(), SlotError> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.try_drop(name, pid) {
                Err(SlotError::Active { .. }) if wait => released.await,
                other => return other,
            }
        }
    }

    fn try_drop(&self, name: &str, pid: i32) -> Result<(), SlotError> {
        let mut inner = self.lock();
        let slot =
            inner.slots.get(name).ok_or_else(|| SlotError::DoesNotExist(name.to_string()))?;
        if let Some(other) = slot.info.active_pid.filter(|&p| p != pid) {
            return Err(SlotError::Active { name: name.to_string(), pid: other });
        }
        if let (Some(dir), false) = (&self.dir, slot.info.temporary) {
            state::remove_on_disk(dir, name).map_err(|e| SlotError::io(dir, e))?;
        }
        inner.slots.remove(name);
        drop(inner);
        self.released.notify_waiters();
        Ok(())
    }

    /// Moves the slot's `restart_lsn` forward to `restart_lsn` on `tli` (from a standby's
    /// flush position); never backwards. Persisted as the module docs describe.
    ///
    /// # Errors
    /// No such slot; the state file cannot be written.
    pub fn advance(&self, name: &str, restart_lsn: Lsn, tli: TimeLineId) -> Result<(), SlotError> {
        let mut inner = self.lock();
        let slot =
            inner.slots.get_mut(name).ok_or_else(|| SlotError::DoesNotExist(name.to_string()))?;
        if slot.info.restart_lsn.is_some_and(|cur| restart_lsn <= cur) {
            return Ok(());
        }
        slot.info.restart_lsn = Some(restart_lsn);
        slot.info.restart_tli = Some(tli);
        slot.dirty = !slot.info.temporary;
        if slot.last_write.is_none_or(|t| t.elapsed() >= PERSIST_INTERVAL) {
            self.write_slot(slot)?;
        }
        Ok(())
    }

    /// Writes every slot whose `restart_lsn` moved since it was last written (call at
    /// checkpoints and shutdown).
    ///
    /// # Errors
    /// The first state file that cannot be written.
    pub fn flush_dirty(&self) -> Result<(), SlotError> {
        let mut inner = self.lock();
        for slot in inner.slots.values_mut() {
            if slot.dirty {
                self.write_slot(slot)?;
            }
        }
        Ok(())
    }

    /// Drops the temporary slots `pid` created (`ReplicationSlotCleanup`).
    pub fn drop_temporary_of(&self, pid: i32) {
        let mut inner = self.lock();
        inner.slots.retain(|_, s| !(s.info.temporary && s.info.active_pid == Some(pid)));
        drop(inner);
        self.released.notify_waiters();
    }

    /// At the end of `pid`'s session: releases any slot it holds and drops its temporary
    /// slots.
    pub fn release_all_of(&self, pid: i32) {
        let mut inner = self.lock();
        inner.slots.retain(|_, s| !(s.info.temporary && s.info.active_pid == Some(pid)));
        for slot in inner.slots.values_mut() {
            if slot.info.active_pid == Some(pid) {
                slot.info.active_pid = None;
                self.persist_if_dirty(slot);
            }
        }
        drop(inner);
        self.released.notify_waiters();
    }

    /// The oldest `restart_lsn` of all slots: WAL from there on must be kept
    /// (`ReplicationSlotsComputeRequiredLSN`).
    pub fn min_restart_lsn(&self) -> Option<Lsn> {
        self.lock().slots.values().filter_map(|s| s.info.restart_lsn).min()
    }

    fn persist_if_dirty(&self, slot: &mut Slot) {
        if slot.dirty {
            if let Err(e) = self.write_slot(slot) {
                tracing::warn!("{e}");
            }
        }
    }

    fn write_slot(&self, slot: &mut Slot) -> Result<(), SlotError> {
        if let (Some(dir), false) = (&self.dir, slot.info.temporary) {
            let state = SlotState {
                name: slot.info.name.clone(),
                restart: slot.info.restart_lsn.zip(slot.info.restart_tli),
            };
            let sdir = state::slot_dir(dir, &slot.info.name);
            state::write_state(&sdir, &state).map_err(|e| SlotError::io(&sdir, e))?;
        }
        slot.dirty = false;
        slot.last_write = Some(Instant::now());
        Ok(())
    }
}

/// Reads one slot directory, dropping a leftover `state.tmp` (`slot.c: RestoreSlotFromDisk`).
fn load_slot(path: &Path) -> Result<SlotInfo, SlotError> {
    let tmp = path.join("state.tmp");
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(|e| SlotError::io(&tmp, e))?;
    }
    let file = path.join("state");
    let data = std::fs::read(&file).map_err(|e| SlotError::io(&file, e))?;
    let st = SlotState::decode(&data)
        .map_err(|reason| SlotError::Corrupt { path: file.display().to_string(), reason })?;
    let dir_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if st.name != dir_name {
        let reason =
            StateDecodeError::Malformed(format!("name {} in directory {dir_name}", st.name));
        return Err(SlotError::Corrupt { path: file.display().to_string(), reason });
    }
    Ok(SlotInfo {
        name: st.name,
        temporary: false,
        active_pid: None,
        restart_lsn: st.restart.map(|r| r.0),
        restart_tli: st.restart.map(|r| r.1),
    })
}

/// Checks a slot name as `slot.c: ReplicationSlotValidateName` does (at `ERROR`).
///
/// # Errors
/// Empty, longer than `NAMEDATALEN - 1` bytes, or characters other than `[a-z0-9_]`.
pub fn validate_name(name: &str) -> Result<(), SlotError> {
    if name.is_empty() {
        return Err(SlotError::NameTooShort(name.to_string()));
    }
    if name.len() >= NAMEDATALEN {
        return Err(SlotError::NameTooLong(name.to_string()));
    }
    if !name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')) {
        return Err(SlotError::InvalidCharacter(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
