//! Checkpoints (`xlog.c: CreateCheckPoint`, `postmaster/checkpointer.c`): the engine's
//! committed state is written crash-safely to `base/`, a real checkpoint record goes to WAL,
//! the control file points at it, and segments nothing needs any more are removed.
//!
//! The state file is the truth recovery starts from: it holds the WAL position `lsn` at
//! which the state was taken (every commit record before it is in the state, none after),
//! and the `redo` point where replay must start — `lsn`, or earlier when transactions that
//! were still running had logged changes before it.

mod restartpoint;
mod schedule;

pub use restartpoint::{restartpoint, RestartAt};
pub use schedule::{CheckpointCause, Schedule};

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use walstream_protocol::replication::TimestampTz;
use walstream_protocol::{Lsn, TimeLineId};

use crate::engine::{Engine, Image};
use crate::error::NodeError;
use crate::xlog::durable::{first_to_keep, remove_old_segments, write_file};
use crate::xlog::{records, CheckPoint, ControlFile, DbState, WalWriter};

/// The state file's name, in `base/`.
pub const STATE_FILE: &str = "walstream_state";
const STATE_MAGIC: &[u8; 8] = b"WSSTATE\0";
const STATE_VERSION: u32 = 1;

/// The engine's committed state at a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointState {
    /// The WAL insert position when the state was taken.
    pub lsn: Lsn,
    /// Where replay must start to rebuild everything after `lsn`.
    pub redo: Lsn,
    /// The tables and counters.
    pub image: Image,
}

impl CheckpointState {
    /// The state of a new cluster: no tables, replay from `redo`.
    pub fn empty(redo: Lsn, next_xid: u32) -> CheckpointState {
        CheckpointState { lsn: redo, redo, image: Image { next_xid, ..Image::default() } }
    }

    /// The file's bytes: magic, version, `lsn`, `redo`, then the image (which carries its
    /// own checksum), then a CRC-32C of everything before it.
    pub fn encode(&self) -> Bytes {
        let image = self.image.encode();
        let mut b = BytesMut::with_capacity(32 + image.len() + 4);
        b.put_slice(STATE_MAGIC);
        b.put_u32_le(STATE_VERSION);
        b.put_u64_le(self.lsn.0);
        b.put_u64_le(self.redo.0);
        b.put_slice(&image);
        let crc = crc32c::crc32c(&b);
        b.put_u32_le(crc);
        b.freeze()
    }

    /// Reads what [`CheckpointState::encode`] wrote.
    ///
    /// # Errors
    /// [`NodeError::State`] for a file that is short, of another format or corrupt.
    pub fn decode(b: &[u8]) -> Result<CheckpointState, NodeError> {
        let bad = |why: &str| NodeError::State(why.to_string());
        let (body, crc) =
            b.split_at_checked(b.len().saturating_sub(4)).ok_or_else(|| bad("short"))?;
        let crc = u32::from_le_bytes(crc.try_into().map_err(|_| bad("short"))?);
        if body.len() < 28 || crc32c::crc32c(body) != crc {
            return Err(bad("checksum mismatch"));
        }
        let (head, image) = body.split_at(28);
        if &head[..8] != STATE_MAGIC {
            return Err(bad("not a state file"));
        }
        let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default());
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
        if version != STATE_VERSION {
            return Err(bad(&format!("format version {version}, expected {STATE_VERSION}")));
        }
        let image = Image::decode(image).map_err(|e| bad(&e.to_string()))?;
        Ok(CheckpointState { lsn: Lsn(word(12)), redo: Lsn(word(20)), image })
    }

    /// Reads `DIR/base/walstream_state`; `None` if there is none (a new cluster).
    ///
    /// # Errors
    /// An unreadable or corrupt file.
    pub fn read(dir: &Path) -> Result<Option<CheckpointState>, NodeError> {
        let path = dir.join("base").join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => Self::decode(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NodeError::Io { op: "read file", path, source }),
        }
    }

    /// The redo point of `DIR/base/walstream_state`, from its header alone (the file was
    /// read whole and checked at startup); `None` if there is none.
    ///
    /// # Errors
    /// An unreadable file, or one of another format.
    pub fn read_redo(dir: &Path) -> Result<Option<Lsn>, NodeError> {
        use std::io::Read;
        let path = dir.join("base").join(STATE_FILE);
        let mut head = [0u8; 28];
        let read = std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut head));
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NodeError::Io { op: "read file", path, source }),
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if &head[..8] != STATE_MAGIC || version != STATE_VERSION {
            return Err(NodeError::State("not a state file of this version".into()));
        }
        let redo = head.get(20..28).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        Ok(redo.map(Lsn))
    }

    /// Writes `DIR/base/walstream_state` crash-safely.
    ///
    /// # Errors
    /// The file could not be written and synced.
    pub fn write(&self, dir: &Path) -> Result<(), NodeError> {
        let base = dir.join("base");
        std::fs::create_dir_all(&base).map_err(|source| NodeError::Io {
            op: "create directory",
            path: base.clone(),
            source,
        })?;
        Ok(write_file(&base, STATE_FILE, &self.encode())?)
    }
}

/// What kind of checkpoint (`CHECKPOINT_IS_SHUTDOWN`, `CHECKPOINT_END_OF_RECOVERY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    /// A checkpoint while running (timed, requested, at `max_wal_size`).
    Online,
    /// At shutdown: nothing runs any more.
    Shutdown,
    /// At the end of crash recovery: the state on disk kept, its redo point kept (an online
    /// checkpoint record; PostgreSQL writes a shutdown one after writing every buffer).
    EndOfRecovery,
}

/// What a checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDone {
    /// The checkpoint record.
    pub lsn: Lsn,
    /// Its redo point.
    pub redo: Lsn,
    /// Segment files removed.
    pub removed: Vec<String>,
}

/// What a checkpoint keeps of old WAL besides its redo point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    /// `wal_keep_size` in MB.
    pub keep_mb: u64,
    /// The oldest `restart_lsn` of the replication slots.
    pub slot_min: Option<Lsn>,
}

/// Writes checkpoints for one engine and WAL writer.
pub struct Checkpointer {
    dir: std::path::PathBuf,
    engine: Arc<Engine>,
    writer: Arc<WalWriter>,
    control: tokio::sync::Mutex<ControlFile>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// A checkpointer for the data directory `dir`, starting from its control file.
    pub fn new(
        dir: &Path,
        engine: Arc<Engine>,
        writer: Arc<WalWriter>,
        control: ControlFile,
    ) -> Checkpointer {
        Checkpointer {
            dir: dir.to_path_buf(),
            engine,
            writer,
            control: tokio::sync::Mutex::new(control),
        }
    }

    /// The control file as last written.
    pub async fn control(&self) -> ControlFile {
        *self.control.lock().await
    }

    /// Marks the control file in production at a start after a clean shutdown (no
    /// checkpoint needed), so that a crash from now on is seen as one at the next start.
    ///
    /// # Errors
    /// The control file could not be written.
    pub async fn mark_in_production(&self, now: SystemTime) -> Result<(), NodeError> {
        let mut control = self.control.lock().await;
        let mut next = *control;
        next.state = DbState::InProduction;
        next.time = TimestampTz::from_system_time(now);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || next.write(&dir).map(|()| next))
            .await
            .map_err(|e| NodeError::State(format!("control file writer failed: {e}")))??;
        *control = next;
        Ok(())
    }

    /// Takes a checkpoint (one at a time).
    ///
    /// An end-of-recovery checkpoint writes no state: what redo rebuilt is, durably, the
    /// state file on disk plus the WAL from its redo point that redo just read, so the
    /// checkpoint record keeps that redo point and the end of recovery costs the same
    /// whatever the amount of WAL replayed. The next regular checkpoint writes a new state
    /// (the checkpointer's schedule counts WAL from the control file's redo point, this
    /// one, so `max_wal_size` brings it as soon as it would have come without the crash).
    ///
    /// # Errors
    /// Writing the state, the WAL or the control file failed.
    pub async fn checkpoint(
        &self,
        kind: CheckpointKind,
        now: SystemTime,
        retention: Retention,
    ) -> Result<CheckpointDone, NodeError> {
        let mut control = self.control.lock().await;
        let taken = match kind {
            CheckpointKind::EndOfRecovery => self.keep_state(&control)?,
            CheckpointKind::Online | CheckpointKind::Shutdown => self.write_state().await?,
        };
        let redo = taken.redo;
        let time = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let timeline: TimeLineId = control.timeline();
        let cp = CheckPoint {
            redo,
            this_timeline: timeline,
            prev_timeline: control.checkpoint_copy.prev_timeline,
            next_xid: u64::from(taken.next_xid),
            next_oid: taken.next_oid.max(control.checkpoint_copy.next_oid),
            time: time as i64,
            oldest_active_xid: taken.oldest_active,
            ..control.checkpoint_copy
        };
        // The end-of-recovery record is an online checkpoint: to PostgreSQL a shutdown
        // checkpoint's redo point is the record itself, and this one's is before it.
        let shutdown = kind == CheckpointKind::Shutdown;
        let rec = self.writer.insert(&records::checkpoint(&cp, shutdown))?;
        self.writer.flush(rec.end_lsn).await?;
        let mut next = *control;
        next.checkpoint = rec.lsn;
        next.checkpoint_copy = cp;
        next.time = TimestampTz::from_system_time(now);
        next.state = if kind == CheckpointKind::Shutdown {
            DbState::ShutDown
        } else {
            DbState::InProduction
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || next.write(&dir).map(|()| next))
            .await
            .map_err(|e| NodeError::State(format!("control file writer failed: {e}")))??;
        *control = next;
        let seg_size = control.seg_size;
        let first = first_to_keep(redo, rec.lsn, seg_size, retention.keep_mb, retention.slot_min);
        let wal = self.dir.join("pg_wal");
        let removed =
            tokio::task::spawn_blocking(move || remove_old_segments(&wal, first, seg_size))
                .await
                .map_err(|e| NodeError::State(format!("segment removal failed: {e}")))??;
        Ok(CheckpointDone { lsn: rec.lsn, redo, removed })
    }

    /// The engine's committed state written to `base/`.
    async fn write_state(&self) -> Result<Taken, NodeError> {
        let writer = self.writer.clone();
        let (lsn, image) = self.engine.image(|| writer.insert_position().0);
        let lsn = Lsn(lsn);
        let redo = image.in_progress.iter().map(|(_, l)| Lsn(*l)).fold(lsn, Lsn::min);
        let taken = Taken {
            redo,
            next_xid: image.next_xid,
            next_oid: image.next_oid,
            oldest_active: image.in_progress.iter().map(|(x, _)| *x).min().unwrap_or(0),
        };
        let state = CheckpointState { lsn, redo, image };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || state.write(&dir))
            .await
            .map_err(|e| NodeError::State(format!("checkpoint state writer failed: {e}")))??;
        Ok(taken)
    }

    /// The state file on disk kept: its redo point (the control file's, for a cluster that
    /// has none yet) and the engine's counters.
    fn keep_state(&self, control: &ControlFile) -> Result<Taken, NodeError> {
        let redo = CheckpointState::read_redo(&self.dir)?.unwrap_or_else(|| control.redo());
        Ok(Taken {
            redo,
            next_xid: self.engine.next_xid(),
            next_oid: self.engine.next_oid(),
            oldest_active: 0,
        })
    }
}

/// What a checkpoint's record says of the state it stands for.
struct Taken {
    redo: Lsn,
    next_xid: u32,
    next_oid: u32,
    oldest_active: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn state_files_round_trip_and_corruption_is_found() {
        let s = CheckpointState {
            lsn: Lsn(0x0200_0100),
            redo: Lsn(0x0200_0028),
            image: Image { next_xid: 900, next_oid: 16390, ..Image::default() },
        };
        let b = s.encode();
        assert_eq!(CheckpointState::decode(&b).unwrap(), s);
        let mut bad = b.to_vec();
        bad[20] ^= 1;
        assert!(CheckpointState::decode(&bad).is_err());
        assert!(CheckpointState::decode(&b[..10]).is_err());
        assert!(CheckpointState::decode(&[]).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(CheckpointState::read(dir.path()).unwrap(), None);
        s.write(dir.path()).unwrap();
        assert_eq!(CheckpointState::read(dir.path()).unwrap(), Some(s));
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CheckpointState::decode(&b);
        }
    }
}
