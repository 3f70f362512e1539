//! The node's WAL: records, the WAL writer with group commit, segment files, the control file, recovery reads.
//!
//! # Layout
//! - [`records`]: row changes (custom resource manager [`records::RM_WALSTREAM_ID`]), real
//!   commit/abort, checkpoint, switch, end-of-recovery and overwrite-contrecord records, and
//!   their decoding into [`records::NodeRecord`].
//! - [`checkpoint`]: PostgreSQL 15's `CheckPoint` struct.
//! - [`writer`]: [`writer::WalWriter`]: inserts under a mutex, group commit by a flusher
//!   thread, the flushed position as a watch, flushed bytes handed to a hook.
//! - `segments` (private): segment files in `pg_wal`, created zero-filled and durable.
//! - [`control`]: `global/walstream_control`, with CRC-32C, written crash-safely.
//! - [`durable`]: crash-safe file writes and removal of old segments.
//! - [`recovery`]: reading WAL back from `pg_wal` for redo, and where it ends.
//! - [`timeline`]: which timeline recovery follows, and the files promotion writes.
//! - [`bootstrap()`]: a new data directory's first WAL and control file (initdb).

pub mod bootstrap;
pub mod checkpoint;
pub mod control;
pub mod durable;
pub mod records;
pub mod recovery;
mod segments;
pub mod timeline;
pub mod writer;

use std::io;
use std::path::PathBuf;

use walstream_protocol::wal::{EncodeError, WalError};
use walstream_protocol::Lsn;

pub use bootstrap::{bootstrap, system_identifier};
pub use checkpoint::CheckPoint;
pub use control::{ControlError, ControlFile, DbState};
pub use records::{NodeRecord, RecordError, RM_WALSTREAM_ID};
pub use recovery::{read_wal, EndReason, ReadOptions, RecoveryEnd, Replayed, TornRecord};
pub use writer::{FlushHook, InlineFlush, WalWriter, WriteStart, WriterConfig};

/// An error of the WAL layer.
#[derive(Debug, thiserror::Error)]
pub enum XlogError {
    /// A file operation failed.
    #[error("could not {op} \"{path}\": {source}")]
    Io {
        /// What was being done ("write", "fsync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The encoder refused a record.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A row change's info byte has bits outside `XLR_RMGR_INFO_MASK`.
    #[error(
        "invalid row change info {0:#04X}: only the high four bits are the resource manager's"
    )]
    BadRowInfo(u8),
    /// A record passed its CRC but its contents are not what its type needs.
    #[error("invalid record at {lsn}: {source}")]
    Record {
        /// The record.
        lsn: Lsn,
        /// What is wrong.
        source: RecordError,
    },
    /// WAL that must be readable is not (e.g. bootstrap's own record).
    #[error("WAL read failed: {0}")]
    Wal(#[from] WalError),
    /// The control file is unreadable or corrupt.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A write or fsync of WAL failed earlier; the writer accepts nothing more
    /// (PostgreSQL PANICs here).
    #[error("WAL writer failed: {0}")]
    WriterFailed(String),
    /// The writer was shut down.
    #[error("WAL writer is shut down")]
    ShutDown,
    /// The writer cannot start where asked.
    #[error("cannot start writing WAL at {0}: {1}")]
    BadStart(Lsn, &'static str),
    /// A timeline history file is unusable.
    #[error("{0}")]
    Timeline(String),
}

impl XlogError {
    /// An [`XlogError::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| XlogError::Io { op, path, source }
    }
}
