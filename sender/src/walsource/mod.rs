//! Where a walsender reads WAL from.
//!
//! [`WalSource`] is what the walsender needs: the system identifier and segment size, the
//! current timeline and how far WAL on it is flushed (as a watch, so walsenders wake when
//! it moves), timeline history files, and the bytes of one segment file.
//!
//! Two implementations share one segment-file reader (`segfile`):
//! - [`DirWalSource`]: a directory of segment files that may grow while it is served;
//! - [`MemWalSource`]: WAL its writer hands over as it writes it (a primary's WAL writer,
//!   a relay's receiver), served from memory while recent and from the files after.

mod dir;
mod mem;
mod segfile;
pub use dir::{DirWalSource, DirWalSourceOptions};
pub use mem::MemWalSource;

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use walstream_protocol::wire::sqlstate;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

/// The end of the WAL a source can serve: its newest timeline and the flushed end on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalEnd {
    /// The newest timeline (`ThisTimeLineID` of the server).
    pub tli: TimeLineId,
    /// WAL is flushed up to here on `tli` (`GetFlushRecPtr`).
    pub flushed: Lsn,
}

impl WalEnd {
    /// Puts `self` in `tx`, waking its receivers only if it differs from what was there.
    pub fn publish(self, tx: &watch::Sender<WalEnd>) {
        tx.send_if_modified(|cur| {
            let moved = *cur != self;
            *cur = self;
            moved
        });
    }
}

/// A source of WAL for walsenders.
///
/// Implementations must be cheap to share (`Arc<dyn WalSource>`); reads are synchronous
/// and short (at most one message's worth of one segment file).
pub trait WalSource: Send + Sync + 'static {
    /// The database system identifier in the segments' long page headers.
    fn system_id(&self) -> u64;

    /// The WAL segment size.
    fn seg_size(&self) -> WalSegSize;

    /// The current timeline and flushed end; a new value is published whenever either moves.
    fn end(&self) -> watch::Receiver<WalEnd>;

    /// The contents of `0000000N.history` for `tli`, or `None` when there is no such file.
    ///
    /// # Errors
    /// A file that exists but cannot be read.
    fn history_file(&self, tli: TimeLineId) -> Result<Option<Bytes>, WalSourceError>;

    /// Up to `len` bytes of WAL from `start`, read from the segment file of timeline
    /// `file_tli`; never crosses the end of that segment. Callers only ask for WAL that is
    /// flushed.
    ///
    /// # Errors
    /// [`WalSourceError::SegmentRemoved`] when the segment file is gone; I/O errors.
    fn read(&self, file_tli: TimeLineId, start: Lsn, len: usize) -> Result<Bytes, WalSourceError>;

    /// What [`WalSource::read`] would return, as a range of an open segment file, when the
    /// source would read it from a file: the walsender then sends it from the page cache
    /// to the socket (`sendfile`) without copying it through user space. `None`: use
    /// `read` (WAL served from memory).
    ///
    /// # Errors
    /// As [`WalSource::read`].
    fn file_range(
        &self,
        file_tli: TimeLineId,
        start: Lsn,
        len: usize,
    ) -> Result<Option<FileRange>, WalSourceError> {
        let _ = (file_tli, start, len);
        Ok(None)
    }
    /// Looks now for WAL another writer has added (a standby's `pg_wal`, filled by its
    /// walreceiver, is otherwise looked at only after its flushes while a walsender
    /// streams): a walsender calls this before it answers a command with a position. A
    /// source told of every flush has nothing to do.
    ///
    /// # Errors
    /// The files cannot be read; the end published before stays valid.
    fn refresh(&self) -> Result<(), WalSourceError> {
        Ok(())
    }
}

/// Bytes of an open segment file (see [`WalSource::file_range`]); `len` is never more than
/// the file holds at `offset` when it was made.
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The open file.
    pub file: Arc<File>,
    /// Where the bytes start in it.
    pub offset: u64,
    /// How many.
    pub len: usize,
}

/// Why WAL could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WalSourceError {
    /// The segment file does not exist (`walsender.c: WalSndSegmentOpen`).
    #[error("requested WAL segment {segment} has already been removed")]
    SegmentRemoved {
        /// The segment file name.
        segment: String,
    },
    /// Reading a file failed.
    #[error("could not read file \"{path}\": {source}")]
    Io {
        /// The file, relative to the served directory as PostgreSQL prints `pg_wal/...`.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file held something that is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

impl WalSourceError {
    /// The SQLSTATE a client gets for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            WalSourceError::SegmentRemoved { .. } => sqlstate::UNDEFINED_FILE,
            WalSourceError::Io { .. } | WalSourceError::Invalid(_) => sqlstate::INTERNAL_ERROR,
        }
    }
}
