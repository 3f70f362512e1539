//! [`DirBackupSource`]: a base backup of a PostgreSQL data directory that no server is
//! writing (a stopped cluster, a copy), with its WAL served by a
//! [`WalSource`].
//!
//! The backup starts at the redo point of the checkpoint `global/pg_control` names and
//! ends at the end of the WAL the source serves: nothing moves, so no checkpoint is
//! made and no record is written.

use std::path::PathBuf;
use std::sync::Arc;

use walstream_protocol::wire::{sqlstate, ErrorFields};
use walstream_protocol::{Lsn, TimeLineId};

use super::walk::file_error;
use super::{BackupSource, BackupStart, BackupStop, BoxFuture};
use crate::walsource::WalSource;

/// `PG_CONTROL_VERSION` of PostgreSQL 15.
pub const PG_CONTROL_VERSION: u32 = 1300;

/// What a backup needs from `pg_control` (`ControlFileData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPoint {
    /// `system_identifier`.
    pub system_id: u64,
    /// `state` (`DBState`: 1 shut down, 2 shut down in recovery, 6 in production...).
    pub state: u32,
    /// `checkPoint`: the latest checkpoint's location.
    pub checkpoint: Lsn,
    /// `checkPointCopy.redo`.
    pub redo: Lsn,
    /// `checkPointCopy.ThisTimeLineID`.
    pub tli: TimeLineId,
}

/// Why `pg_control` was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Too short for the fields read.
    #[error("control file is too short ({0} bytes)")]
    TooShort(usize),
    /// Another version's layout.
    #[error("control file has version {0}, expected {PG_CONTROL_VERSION} (PostgreSQL 15)")]
    Version(u32),
}

/// Reads the fields of a PostgreSQL 15 `pg_control` (little-endian, 64-bit layout).
///
/// # Errors
/// Fewer than 56 bytes; a version other than 15's.
pub fn parse_control(bytes: &[u8]) -> Result<ControlPoint, ControlError> {
    if bytes.len() < 56 {
        return Err(ControlError::TooShort(bytes.len()));
    }
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let u32_at = |o: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[o..o + 4]);
        u32::from_le_bytes(b)
    };
    let version = u32_at(8);
    if version != PG_CONTROL_VERSION {
        return Err(ControlError::Version(version));
    }
    Ok(ControlPoint {
        system_id: u64_at(0),
        state: u32_at(16),
        checkpoint: Lsn(u64_at(32)),
        redo: Lsn(u64_at(40)),
        tli: TimeLineId(u32_at(48)),
    })
}

/// For a fuzz target: [`parse_control`] must never panic.
pub fn fuzz_control(data: &[u8]) {
    if let Ok(c) = parse_control(data) {
        assert!(data.len() >= 56);
        let _ = (c.redo, c.tli);
    }
}

/// A data directory at rest, backed up with the WAL of `wal`.
pub struct DirBackupSource {
    data_dir: PathBuf,
    wal: Arc<dyn WalSource>,
    time_zone: jiff::tz::TimeZone,
}

impl DirBackupSource {
    /// The backup source of `data_dir`, whose WAL (at least from the last checkpoint's
    /// redo point on) `wal` serves. `START TIME` is shown in the system's time zone.
    pub fn new(data_dir: impl Into<PathBuf>, wal: Arc<dyn WalSource>) -> Self {
        DirBackupSource { data_dir: data_dir.into(), wal, time_zone: jiff::tz::TimeZone::system() }
    }

    /// Shows `START TIME` in `tz` (the server's `log_timezone`).
    pub fn with_time_zone(mut self, tz: jiff::tz::TimeZone) -> Self {
        self.time_zone = tz;
        self
    }

    fn read_control(&self) -> Result<ControlPoint, ErrorFields> {
        let path = self.data_dir.join("global/pg_control");
        let bytes =
            std::fs::read(&path).map_err(|e| file_error("open file", "global/pg_control", &e))?;
        let c = parse_control(&bytes)
            .map_err(|e| ErrorFields::error(sqlstate::DATA_CORRUPTED, e.to_string()))?;
        if c.system_id != self.wal.system_id() {
            return Err(ErrorFields::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "database system identifier differs between the data directory and its WAL: {} vs {}",
                    c.system_id,
                    self.wal.system_id()
                ),
            ));
        }
        Ok(c)
    }
}

impl BackupSource for DirBackupSource {
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    fn start(&self, _fast: bool) -> BoxFuture<'_, Result<BackupStart, ErrorFields>> {
        Box::pin(async move {
            let c = self.read_control()?;
            Ok(BackupStart {
                lsn: c.redo,
                tli: c.tli,
                checkpoint: c.checkpoint,
                time: jiff::Timestamp::now().to_zoned(self.time_zone.clone()),
                in_recovery: matches!(c.state, 2 | 5),
            })
        })
    }

    fn stop<'a>(
        &'a self,
        start: &'a BackupStart,
    ) -> BoxFuture<'a, Result<BackupStop, ErrorFields>> {
        Box::pin(async move {
            let end = *self.wal.end().borrow();
            if end.flushed < start.lsn {
                return Err(ErrorFields::error(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "WAL ends at {} before the backup's start point {}",
                        end.flushed, start.lsn
                    ),
                ));
            }
            Ok(BackupStop { lsn: end.flushed, tli: end.tli })
        })
    }

    fn abort(&self, _start: &BackupStart) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_checkpoint_fields() {
        let mut b = vec![0u8; 8192];
        b[0..8].copy_from_slice(&7_716_445_197_738_051_335u64.to_le_bytes());
        b[8..12].copy_from_slice(&1300u32.to_le_bytes());
        b[16..20].copy_from_slice(&1u32.to_le_bytes());
        b[32..40].copy_from_slice(&0x200_0060u64.to_le_bytes());
        b[40..48].copy_from_slice(&0x200_0028u64.to_le_bytes());
        b[48..52].copy_from_slice(&3u32.to_le_bytes());
        let c = parse_control(&b).unwrap();
        assert_eq!(
            (c.checkpoint, c.redo, c.tli, c.state),
            (Lsn(0x200_0060), Lsn(0x200_0028), TimeLineId(3), 1)
        );
        assert_eq!(parse_control(&b[..55]), Err(ControlError::TooShort(55)));
        b[8] = 0;
        assert!(matches!(parse_control(&b), Err(ControlError::Version(_))));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            fuzz_control(&data);
        }
    }
}
