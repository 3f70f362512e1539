//! The control file, `global/walstream_control`: walstream's own fixed-size format in the
//! spirit of `pg_control` (`catalog/pg_control.h`), with a CRC-32C, written crash-safely.

use std::fmt;
use std::path::{Path, PathBuf};

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use super::checkpoint::{CheckPoint, SIZE_OF_CHECKPOINT};
use super::durable::write_file;
use super::records::{i64_at, u32_at};
use super::XlogError;

/// The control file's name under `global/`.
pub const CONTROL_FILE_NAME: &str = "walstream_control";
/// The file's size: one 512-byte sector, written whole.
pub const CONTROL_FILE_SIZE: usize = 512;
/// Magic number at offset 0: `WSCF`.
pub const CONTROL_MAGIC: u32 = u32::from_le_bytes(*b"WSCF");
/// Format version.
pub const CONTROL_VERSION: u32 = 1;
/// Offset of the CRC-32C, which covers every byte before it.
const CRC_AT: usize = CONTROL_FILE_SIZE - 4;
const CHECKPOINT_AT: usize = 56;

/// The cluster state (`DBState`, with PostgreSQL's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    /// `DB_STARTUP`.
    Startup = 0,
    /// `DB_SHUTDOWNED`.
    ShutDown = 1,
    /// `DB_SHUTDOWNED_IN_RECOVERY`.
    ShutDownInRecovery = 2,
    /// `DB_SHUTDOWNING`.
    ShuttingDown = 3,
    /// `DB_IN_CRASH_RECOVERY`.
    InCrashRecovery = 4,
    /// `DB_IN_ARCHIVE_RECOVERY`.
    InArchiveRecovery = 5,
    /// `DB_IN_PRODUCTION`.
    InProduction = 6,
}

impl DbState {
    fn from_u32(v: u32) -> Option<DbState> {
        use DbState::*;
        [Startup, ShutDown, ShutDownInRecovery, ShuttingDown]
            .into_iter()
            .chain([InCrashRecovery, InArchiveRecovery, InProduction])
            .find(|s| *s as u32 == v)
    }
}

impl fmt::Display for DbState {
    /// As `pg_controldata: dbState` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbState::Startup => "starting up",
            DbState::ShutDown => "shut down",
            DbState::ShutDownInRecovery => "shut down in recovery",
            DbState::ShuttingDown => "shutting down",
            DbState::InCrashRecovery => "in crash recovery",
            DbState::InArchiveRecovery => "in archive recovery",
            DbState::InProduction => "in production",
        })
    }
}

/// Why a control file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Not [`CONTROL_FILE_SIZE`] bytes.
    #[error("control file has {0} bytes, expected {CONTROL_FILE_SIZE}")]
    Size(usize),
    /// Not a walstream control file.
    #[error("control file has magic {0:#010X}, not a walstream control file")]
    Magic(u32),
    /// Another format version.
    #[error("control file version {0} is not supported (expected {CONTROL_VERSION})")]
    Version(u32),
    /// The CRC does not match (`xlog.c: ReadControlFile`'s message).
    #[error("incorrect checksum in control file")]
    Crc,
    /// An unknown state value.
    #[error("control file has invalid state {0}")]
    State(u32),
    /// A segment size PostgreSQL does not allow.
    #[error("control file has invalid WAL segment size {0}")]
    SegSize(u32),
}

/// The control file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlFile {
    /// `system_identifier`.
    pub system_identifier: u64,
    /// `state`.
    pub state: DbState,
    /// `time`: when the file was last written.
    pub time: TimestampTz,
    /// `checkPoint`: the latest checkpoint record's location.
    pub checkpoint: Lsn,
    /// `checkPointCopy`: that checkpoint (redo point, timeline, next xid...).
    pub checkpoint_copy: CheckPoint,
    /// `xlog_seg_size`.
    pub seg_size: WalSegSize,
    /// `minRecoveryPoint`: replay must reach this before the data is consistent.
    pub min_recovery_point: Lsn,
    /// `minRecoveryPointTLI`.
    pub min_recovery_point_tli: TimeLineId,
}

impl ControlFile {
    /// The redo point of the latest checkpoint.
    pub fn redo(&self) -> Lsn {
        self.checkpoint_copy.redo
    }

    /// The current timeline (the latest checkpoint's `ThisTimeLineID`).
    pub fn timeline(&self) -> TimeLineId {
        self.checkpoint_copy.this_timeline
    }

    /// The next transaction id (`FullTransactionId`) at the latest checkpoint.
    pub fn next_xid(&self) -> u64 {
        self.checkpoint_copy.next_xid
    }

    /// The file's bytes: fields, zero padding, CRC-32C of everything before it.
    pub fn encode(&self) -> [u8; CONTROL_FILE_SIZE] {
        let mut b = [0u8; CONTROL_FILE_SIZE];
        let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(0, &CONTROL_MAGIC.to_le_bytes());
        put(4, &CONTROL_VERSION.to_le_bytes());
        put(8, &self.system_identifier.to_le_bytes());
        put(16, &(self.state as u32).to_le_bytes());
        put(20, &self.seg_size.bytes().to_le_bytes());
        put(24, &self.time.0.to_le_bytes());
        put(32, &self.checkpoint.0.to_le_bytes());
        put(40, &self.min_recovery_point.0.to_le_bytes());
        put(48, &self.min_recovery_point_tli.0.to_le_bytes());
        put(CHECKPOINT_AT, &self.checkpoint_copy.encode());
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks the file's bytes.
    ///
    /// # Errors
    /// [`ControlError`] for a wrong size, magic, version, CRC, state or segment size.
    pub fn decode(b: &[u8]) -> Result<ControlFile, ControlError> {
        if b.len() != CONTROL_FILE_SIZE {
            return Err(ControlError::Size(b.len()));
        }
        let u32f = |at| u32_at(b, at).unwrap_or_default();
        let u64f = |at| i64_at(b, at).unwrap_or_default() as u64;
        if u32f(0) != CONTROL_MAGIC {
            return Err(ControlError::Magic(u32f(0)));
        }
        if u32f(4) != CONTROL_VERSION {
            return Err(ControlError::Version(u32f(4)));
        }
        if crc32c::crc32c(&b[..CRC_AT]) != u32f(CRC_AT) {
            return Err(ControlError::Crc);
        }
        let state = DbState::from_u32(u32f(16)).ok_or(ControlError::State(u32f(16)))?;
        let seg_size =
            WalSegSize::new(u64::from(u32f(20))).map_err(|_| ControlError::SegSize(u32f(20)))?;
        let copy = b.get(CHECKPOINT_AT..CHECKPOINT_AT + SIZE_OF_CHECKPOINT).unwrap_or_default();
        Ok(ControlFile {
            system_identifier: u64f(8),
            state,
            time: TimestampTz(u64f(24) as i64),
            checkpoint: Lsn(u64f(32)),
            checkpoint_copy: CheckPoint::decode(copy)
                .unwrap_or(CheckPoint::bootstrap(Lsn::INVALID, 0)),
            seg_size,
            min_recovery_point: Lsn(u64f(40)),
            min_recovery_point_tli: TimeLineId(u32f(48)),
        })
    }

    /// `DIR/global/walstream_control`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("global").join(CONTROL_FILE_NAME)
    }

    /// Reads `DIR/global/walstream_control`.
    ///
    /// # Errors
    /// [`XlogError::Io`] if unreadable, [`XlogError::Control`] if corrupt.
    pub fn read(dir: &Path) -> Result<ControlFile, XlogError> {
        let path = Self::path(dir);
        let b = std::fs::read(&path).map_err(XlogError::io("read", &path))?;
        Ok(ControlFile::decode(&b)?)
    }

    /// Writes `DIR/global/walstream_control` crash-safely (temp file, fsync, rename,
    /// directory fsync), creating `global/` if needed (`xlog.c: UpdateControlFile`).
    ///
    /// # Errors
    /// [`XlogError::Io`].
    pub fn write(&self, dir: &Path) -> Result<(), XlogError> {
        let global = dir.join("global");
        std::fs::create_dir_all(&global).map_err(XlogError::io("create directory", &global))?;
        write_file(&global, CONTROL_FILE_NAME, &self.encode())
    }
}

/// Fuzz entry point: [`ControlFile::decode`] never panics, and what it accepts encodes back
/// to the same bytes except the padding.
pub fn fuzz_control(data: &[u8]) {
    if let Ok(c) = ControlFile::decode(data) {
        let again = ControlFile::decode(&c.encode());
        assert_eq!(again, Ok(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xlog::checkpoint::tests::checkpoints;
    use proptest::prelude::*;

    fn controls() -> impl Strategy<Value = ControlFile> {
        let states = proptest::sample::select(vec![
            DbState::Startup,
            DbState::ShutDown,
            DbState::ShutDownInRecovery,
            DbState::ShuttingDown,
            DbState::InCrashRecovery,
            DbState::InArchiveRecovery,
            DbState::InProduction,
        ]);
        let head = (any::<u64>(), states, any::<i64>(), any::<u64>(), 0u32..=10);
        (head, checkpoints(), any::<u64>(), any::<u32>()).prop_map(
            |((sysid, state, time, cp, seg), copy, minrp, tli)| ControlFile {
                system_identifier: sysid,
                state,
                time: TimestampTz(time),
                checkpoint: Lsn(cp),
                checkpoint_copy: copy,
                seg_size: WalSegSize::new(1 << (20 + seg)).unwrap(),
                min_recovery_point: Lsn(minrp),
                min_recovery_point_tli: TimeLineId(tli),
            },
        )
    }

    proptest! {
        #[test]
        fn control_file_round_trips(c in controls()) {
            prop_assert_eq!(ControlFile::decode(&c.encode()), Ok(c));
        }

        #[test]
        fn any_flipped_bit_is_detected(c in controls(), bit in 0usize..CONTROL_FILE_SIZE * 8) {
            let mut b = c.encode();
            b[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(ControlFile::decode(&b).is_err());
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            fuzz_control(&b);
        }
    }

    #[test]
    fn crc_mismatch_and_bad_fields_are_reported() {
        let c = ControlFile {
            system_identifier: 7,
            state: DbState::InProduction,
            time: TimestampTz(1),
            checkpoint: Lsn(0x100_0028),
            checkpoint_copy: CheckPoint::bootstrap(Lsn(0x100_0028), 5),
            seg_size: WalSegSize::DEFAULT,
            min_recovery_point: Lsn::INVALID,
            min_recovery_point_tli: TimeLineId(0),
        };
        let good = c.encode();
        let mut b = good;
        b[100] ^= 0xFF;
        assert_eq!(ControlFile::decode(&b), Err(ControlError::Crc));
        let mut b = good;
        b[0] = b'X';
        assert!(matches!(ControlFile::decode(&b), Err(ControlError::Magic(_))));
        assert_eq!(ControlFile::decode(&good[..100]), Err(ControlError::Size(100)));
        let mut b = good;
        b[16] = 9;
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(ControlFile::decode(&b), Err(ControlError::State(9)));
    }

    #[test]
    fn write_is_readable_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ControlFile {
            system_identifier: 7,
            state: DbState::ShutDown,
            time: TimestampTz(1),
            checkpoint: Lsn(0x100_0028),
            checkpoint_copy: CheckPoint::bootstrap(Lsn(0x100_0028), 5),
            seg_size: WalSegSize::DEFAULT,
            min_recovery_point: Lsn::INVALID,
            min_recovery_point_tli: TimeLineId(0),
        };
        c.write(dir.path()).unwrap();
        assert_eq!(ControlFile::read(dir.path()).unwrap(), c);
        c.state = DbState::InProduction;
        c.write(dir.path()).unwrap();
        assert_eq!(ControlFile::read(dir.path()).unwrap(), c);
        let raw = std::fs::read(ControlFile::path(dir.path())).unwrap();
        assert_eq!(raw.len(), CONTROL_FILE_SIZE);
    }
}
