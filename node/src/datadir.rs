//! A node's data directory: its layout, the checks the postmaster makes before it starts
//! (`miscinit.c: checkDataDir`, `CreateLockFile`), and the signal files that choose its role.
//!
//! ```text
//! DIR/PG_VERSION              "15"
//! DIR/postgresql.conf         settings; postgresql.auto.conf after it
//! DIR/pg_hba.conf             who may connect
//! DIR/global/                 the control file and the roles
//! DIR/base/                   the tables, as of the last checkpoint
//! DIR/pg_wal/                 WAL segments and timeline history files
//! DIR/pg_replslot/            replication slots
//! DIR/standby.signal          start as a standby (recovery.signal: recover, then promote)
//! DIR/promote                 a running standby is asked to promote (pg_promote, walstream promote)
//! DIR/postmaster.pid          the lock file of a running node
//! ```

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The major version in `PG_VERSION`.
pub const PG_MAJOR_VERSION: &str = "15";

/// The lock file's name.
pub const LOCK_FILE: &str = "postmaster.pid";

/// Why a data directory cannot be used, with the postmaster's texts.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// `miscinit.c: checkDataDir`.
    #[error("data directory \"{}\" does not exist", .0.display())]
    Missing(PathBuf),
    /// Group or world may write or read it.
    #[error(
        "data directory \"{}\" has invalid permissions\nDETAIL:  Permissions should be \
         u=rwx (0700) or u=rwx,g=rx (0750).",
        .0.display()
    )]
    Permissions(PathBuf),
    /// No `PG_VERSION` (`miscinit.c: ValidatePgVersion`).
    #[error(
        "\"{}\" is not a valid data directory\nDETAIL:  File \"{}\" is missing.",
        dir.display(),
        file.display()
    )]
    NotDataDir {
        /// The directory.
        dir: PathBuf,
        /// The missing file.
        file: PathBuf,
    },
    /// `PG_VERSION` names another major version.
    #[error(
        "database files are incompatible with server\nDETAIL:  The data directory was \
         initialized by PostgreSQL version {0}, which is not compatible with this version \
         15."
    )]
    Version(String),
    /// Another node holds the lock file.
    #[error(
        "lock file \"{LOCK_FILE}\" already exists\nHINT:  Is another postmaster (PID {pid}) \
         running in data directory \"{}\"?",
        dir.display()
    )]
    Locked {
        /// The other node's pid.
        pid: i32,
        /// The directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("could not {what} \"{}\": {source}", path.display())]
    Io {
        /// What was being done (`create lock file`, `read file`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The file that asks a running standby to promote (`PROMOTE_SIGNAL_FILE`).
pub const PROMOTE_SIGNAL_FILE: &str = "promote";

/// The file that makes a node start as a standby (`STANDBY_SIGNAL_FILE`).
pub const STANDBY_SIGNAL_FILE: &str = "standby.signal";

/// The role a data directory's signal files ask for (`xlogrecovery.c:
/// readRecoverySignalFile`): `standby.signal` wins over `recovery.signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalMode {
    /// No signal file: a primary (after crash recovery if needed).
    Primary,
    /// `standby.signal`: a standby that streams and replays.
    Standby,
    /// `recovery.signal`: targeted recovery, then promotion.
    Recovery,
}

/// A data directory, checked.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError {
    let path = path.to_path_buf();
    move |source| DataDirError::Io { what, path, source }
}

impl DataDir {
    /// Checks `path` as the postmaster does before it starts: it exists, only its owner (and
    /// group, read-only) may use it, and it is a PostgreSQL 15 data directory.
    ///
    /// # Errors
    /// [`DataDirError`] with PostgreSQL's text.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => return Err(DataDirError::Missing(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataDirError::Missing(path.to_path_buf()))
            }
            Err(e) => return Err(io("stat directory", path)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o027 != 0 {
            return Err(DataDirError::Permissions(path.to_path_buf()));
        }
        let version_file = path.join("PG_VERSION");
        let version = match std::fs::read_to_string(&version_file) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataDirError::NotDataDir {
                    dir: path.to_path_buf(),
                    file: version_file,
                })
            }
            Err(e) => return Err(io("read file", &version_file)(e)),
        };
        if version.trim() != PG_MAJOR_VERSION {
            return Err(DataDirError::Version(version.trim().to_string()));
        }
        Ok(DataDir { path: path.to_path_buf() })
    }

    /// A data directory at `path` without checks (initdb, tests).
    pub fn at(path: &Path) -> DataDir {
        DataDir { path: path.to_path_buf() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `pg_wal/`.
    pub fn wal_dir(&self) -> PathBuf {
        self.path.join("pg_wal")
    }

    /// `global/`.
    pub fn global_dir(&self) -> PathBuf {
        self.path.join("global")
    }

    /// `base/`.
    pub fn base_dir(&self) -> PathBuf {
        self.path.join("base")
    }

    /// `pg_replslot/`.
    pub fn slot_dir(&self) -> PathBuf {
        self.path.join("pg_replslot")
    }

    /// The role the signal files ask for.
    pub fn signal_mode(&self) -> SignalMode {
        if self.path.join("standby.signal").exists() {
            SignalMode::Standby
        } else if self.path.join("recovery.signal").exists() {
            SignalMode::Recovery
        } else {
            SignalMode::Primary
        }
    }

    /// Whether a `promote` file asks a standby to promote (`pg_ctl promote`), removing it.
    pub fn take_promote_signal(&self) -> bool {
        std::fs::remove_file(self.path.join("promote")).is_ok()
    }

    /// Takes the lock file for this process (`miscinit.c: CreateLockFile`); a lock file
    /// left by a process that is gone is replaced. The lock is released when the returned
    /// guard is dropped.
    ///
    /// # Errors
    /// [`DataDirError::Locked`] when a live process holds it; I/O errors.
    pub fn lock(&self, port: u16, listen: &str, now_unix: i64) -> Result<LockFile, DataDirError> {
        let path = self.path.join(LOCK_FILE);
        for _ in 0..100 {
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(mut f) => {
                    let text =
                        lock_file_text(std::process::id(), &self.path, now_unix, port, listen);
                    f.write_all(text.as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(io("write lock file", &path))?;
                    return Ok(LockFile { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let pid: i32 =
                        text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
                    if pid > 0 && pid != std::process::id() as i32 && process_alive(pid) {
                        return Err(DataDirError::Locked { pid, dir: self.path.clone() });
                    }
                    // Stale: its owner is gone (miscinit.c removes it and retries).
                    std::fs::remove_file(&path).map_err(io("remove old lock file", &path))?;
                }
                Err(e) => return Err(io("create lock file", &path)(e)),
            }
        }
        Err(io("create lock file", &path)(std::io::Error::other("too many attempts")))
    }
}

/// The lock file's lines (`miscinit.c: CreateLockFile`, `AddToDataDirLockFile`): pid, data
/// directory, start time, port, socket directory, listen address, shared memory key, status.
fn lock_file_text(pid: u32, dir: &Path, now_unix: i64, port: u16, listen: &str) -> String {
    format!(
        "{pid}\n{}\n{now_unix}\n{port}\n\n{listen}\n     0         0\nready   \n",
        dir.display()
    )
}

fn process_alive(pid: i32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The lock file of a running node; removed on drop.
#[derive(Debug)]
pub struct LockFile {
    path: PathBuf,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(d.path().join("PG_VERSION"), "15\n").unwrap();
        d
    }

    #[test]
    fn checks_give_postgresqls_texts() {
        let d = made();
        DataDir::open(d.path()).unwrap();
        let missing = d.path().join("nope");
        assert_eq!(
            DataDir::open(&missing).unwrap_err().to_string(),
            format!("data directory \"{}\" does not exist", missing.display())
        );
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        DataDir::open(d.path()).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = DataDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("has invalid permissions"), "{e}");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(d.path().join("PG_VERSION"), "14\n").unwrap();
        let e = DataDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("initialized by PostgreSQL version 14"), "{e}");
        std::fs::remove_file(d.path().join("PG_VERSION")).unwrap();
        let e = DataDir::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("is not a valid data directory"), "{e}");
    }

    #[test]
    fn signal_files_choose_the_role() {
        let d = made();
        let dir = DataDir::open(d.path()).unwrap();
        assert_eq!(dir.signal_mode(), SignalMode::Primary);
        std::fs::write(d.path().join("recovery.signal"), "").unwrap();
        assert_eq!(dir.signal_mode(), SignalMode::Recovery);
        std::fs::write(d.path().join("standby.signal"), "").unwrap();
        assert_eq!(dir.signal_mode(), SignalMode::Standby);
        assert!(!dir.take_promote_signal());
        std::fs::write(d.path().join("promote"), "").unwrap();
        assert!(dir.take_promote_signal());
        assert!(!d.path().join("promote").exists());
    }

    #[test]
    fn the_lock_file_excludes_a_second_node_and_replaces_a_stale_one() {
        let d = made();
        let dir = DataDir::open(d.path()).unwrap();
        // A lock file of a pid that does not exist is stale.
        std::fs::write(d.path().join(LOCK_FILE), "999999999\n").unwrap();
        let lock = dir.lock(5432, "127.0.0.1", 1_700_000_000).unwrap();
        let text = std::fs::read_to_string(d.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.lines().next().unwrap(), std::process::id().to_string());
        assert_eq!(text.lines().nth(3).unwrap(), "5432");
        // A live process (pid 1 always exists) holds it.
        drop(lock);
        assert!(!d.path().join(LOCK_FILE).exists());
        std::fs::write(d.path().join(LOCK_FILE), "1\n").unwrap();
        let e = dir.lock(5432, "127.0.0.1", 0).unwrap_err().to_string();
        assert!(e.starts_with("lock file \"postmaster.pid\" already exists"), "{e}");
        assert!(e.contains("(PID 1)"), "{e}");
    }
}
