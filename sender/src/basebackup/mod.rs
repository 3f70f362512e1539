//! `BASE_BACKUP` as PostgreSQL 15 speaks it (`replication/basebackup.c`,
//! `basebackup_copy.c`, `basebackup_progress.c`, `basebackup_throttle.c`,
//! `backup_manifest.c`).
//!
//! The server supplies a [`BackupSource`]: its data directory, and the start and end
//! of a backup (a checkpoint, then the end of WAL the backup needs). The rest is here:
//! - [`walk`]: which files go into the archive (`sendDir` and its exclusion lists).
//! - [`tar`]: member headers as PostgreSQL writes them.
//! - [`label`]: the `backup_label` file.
//! - [`manifest`]: the backup manifest with its checksums.
//! - [`throttle`]: the `MAX_RATE` limit.
//! - [`perform`]: the command: its result sets and the COPY stream of `n`/`d`/`p`/`m`
//!   messages, through `sink` (progress, throttle, copystream or server).
//! - [`dir`]: [`DirBackupSource`], a backup of a stopped data directory whose WAL a
//!   [`crate::walsource::WalSource`] serves.

pub mod dir;
pub mod label;
pub mod manifest;
pub mod perform;
mod sink;
pub mod tar;
pub mod throttle;
pub mod walk;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use walstream_protocol::wire::ErrorFields;
use walstream_protocol::{Lsn, TimeLineId};

pub use dir::DirBackupSource;
pub use perform::perform_base_backup;

/// A boxed future, as [`BackupSource`]'s methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a backup starts (`do_pg_backup_start`'s results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupStart {
    /// The redo point of the backup's checkpoint: the start of the WAL the backup
    /// needs (`START WAL LOCATION`, the first result set).
    pub lsn: Lsn,
    /// The timeline of `lsn` (`START TIMELINE`).
    pub tli: TimeLineId,
    /// Where the checkpoint record is (`CHECKPOINT LOCATION`).
    pub checkpoint: Lsn,
    /// When the backup started, in the server's `log_timezone` (`START TIME`).
    pub time: jiff::Zoned,
    /// Whether the server is a standby (`BACKUP FROM: standby`).
    pub in_recovery: bool,
}

/// Where a backup ends (`do_pg_backup_stop`'s results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupStop {
    /// The end of the WAL the backup needs (the last result set). It must be flushed
    /// (a client streaming WAL with the backup stops there) and at most the end of
    /// valid WAL: `pg_verifybackup` reads every record from the start to here.
    pub lsn: Lsn,
    /// Its timeline.
    pub tli: TimeLineId,
}

/// What a server gives `BASE_BACKUP`.
///
/// The sequence is [`BackupSource::start`], then the files of
/// [`BackupSource::data_dir`] are read (`global/pg_control` last), then
/// [`BackupSource::stop`]. When anything fails after a successful `start` (the client
/// went away, a file could not be read), [`BackupSource::abort`] is called instead of
/// `stop`.
///
/// A primary implements `start` as PostgreSQL does: a checkpoint (`fast` asks for an
/// immediate one, else a spread one), then the checkpoint's redo point and location.
/// `stop` writes what marks the end of the backup (PostgreSQL writes an
/// `XLOG_BACKUP_END` record and switches to a new segment) and returns the flushed
/// end of that; it is what a restore must replay to.
pub trait BackupSource: Send + Sync + 'static {
    /// The data directory whose files are sent. `pg_wal`'s contents, `postmaster.pid`
    /// and the rest of PostgreSQL's exclusion list are left out.
    fn data_dir(&self) -> PathBuf;

    /// Starts a backup: a checkpoint (immediate when `fast`), its redo point, location
    /// and timeline, and the time.
    ///
    /// # Errors
    /// The ERROR the client gets (the backup then did not start).
    fn start(&self, fast: bool) -> BoxFuture<'_, Result<BackupStart, ErrorFields>>;

    /// Ends the backup started at `start`: the end of the WAL it needs.
    ///
    /// # Errors
    /// The ERROR the client gets.
    fn stop<'a>(&'a self, start: &'a BackupStart)
        -> BoxFuture<'a, Result<BackupStop, ErrorFields>>;

    /// Forgets the backup started at `start` after a failure (`do_pg_abort_backup`).
    fn abort(&self, start: &BackupStart);

    /// The control file, relative to the data directory: sent after every other file,
    /// as PostgreSQL sends `global/pg_control` (the default).
    fn control_file(&self) -> String {
        "global/pg_control".to_string()
    }

    /// Whether the file or directory `rel` (relative to the data directory, `/`
    /// separated) is left out too, beyond PostgreSQL's own list (default: nothing).
    fn exclude(&self, _rel: &[u8]) -> bool {
        false
    }

    /// Whether WAL archiving is on; when it is not and the client asked to `WAIT`,
    /// PostgreSQL's NOTICE says so (the default: off).
    fn archiving(&self) -> bool {
        false
    }
}
