//! Taking a base backup as `pg_basebackup` does in plain format
//! (`pg_basebackup.c: BaseBackup`): `BASE_BACKUP` on a replication connection, the `base.tar`
//! archive unpacked into the target directory as it arrives, the manifest saved as
//! `backup_manifest`, WAL either in the archive (`-X fetch`) or streamed alongside on a
//! second connection from the start to the end position (`-X stream`), and with `-R` the
//! files that make the copy a standby of the server it came from.

mod extract;
mod message;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use walstream_protocol::replication::quote_literal;
use walstream_protocol::wire::ReplicationMode;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

pub use message::{fuzz_backup_message, BackupMessage, BackupMessageError};

use crate::apply::VerifyingApplier;
use crate::conn::{ConnError, ReplicationConn};
use crate::conninfo::ConnInfo;
use crate::segments::{adopt_partial_segments, SegmentWriter, WriterOptions};
use crate::stream::{identify_system, show_seg_size, Receiver, ReceiverError, StreamOptions};

/// How the backup gets the WAL it needs (`-X`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalMethod {
    /// `none`: no WAL (the backup needs an archive to start).
    None,
    /// `fetch`: the WAL is in the archive, sent at the end of the backup.
    Fetch,
    /// `stream`: WAL is streamed on a second connection while the backup runs.
    Stream,
}

/// `pg_basebackup`'s options that walstream supports.
#[derive(Debug, Clone)]
pub struct BaseBackupOptions {
    /// `-l`.
    pub label: String,
    /// `-c fast`.
    pub fast_checkpoint: bool,
    /// `-P`: ask the server for size estimates and progress.
    pub progress: bool,
    /// Not `--no-manifest`.
    pub manifest: bool,
    /// `-r`, in kB/s.
    pub max_rate_kb: Option<u32>,
    /// `-X`.
    pub wal: WalMethod,
    /// `-R`: the `primary_conninfo` to write (the connection's own by default, without a
    /// program's default `application_name`).
    pub write_recovery_conf: Option<ConnInfo>,
    /// `-S`.
    pub slot: Option<String>,
    /// Not `-N`: fsync what was written.
    pub sync: bool,
}

impl Default for BaseBackupOptions {
    fn default() -> Self {
        BaseBackupOptions {
            label: "pg_basebackup base backup".into(),
            fast_checkpoint: false,
            progress: false,
            manifest: true,
            max_rate_kb: None,
            wal: WalMethod::Stream,
            write_recovery_conf: None,
            slot: None,
            sync: true,
        }
    }
}

impl BaseBackupOptions {
    /// The `BASE_BACKUP` command, in PostgreSQL 15's option syntax as pg_basebackup
    /// writes it.
    pub fn command(&self) -> String {
        let mut opts = vec![format!("LABEL {}", quote_literal(&self.label))];
        if self.progress {
            opts.push("PROGRESS".into());
        }
        if self.fast_checkpoint {
            opts.push("CHECKPOINT 'fast'".into());
        }
        if self.wal != WalMethod::None {
            opts.push("WAIT 0".into());
        }
        if self.wal == WalMethod::Fetch {
            opts.push("WAL".into());
        }
        if let Some(rate) = self.max_rate_kb {
            opts.push(format!("MAX_RATE {rate}"));
        }
        if self.manifest {
            opts.push("MANIFEST 'yes'".into());
        }
        opts.push("TARGET 'client'".into());
        format!("BASE_BACKUP ( {})", opts.join(",  "))
    }
}

/// How far the backup is, for a progress display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupProgress {
    /// Bytes received.
    pub done: u64,
    /// The server's estimate of the total (`PROGRESS`), in bytes.
    pub total: Option<u64>,
}

/// What a finished backup was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupDone {
    /// The start position (the checkpoint's redo point).
    pub start: Lsn,
    /// The end position: the backup is consistent once replay reaches it.
    pub end: Lsn,
    /// The timeline.
    pub tli: TimeLineId,
    /// Archive bytes received.
    pub bytes: u64,
}

/// Why a base backup failed (pg_basebackup's texts where it has them).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target exists and is not empty.
    #[error("directory \"{0}\" exists but is not empty")]
    NotEmpty(PathBuf),
    /// The connection or the server failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A CopyData message was not a backup message.
    #[error(transparent)]
    Message(#[from] BackupMessageError),
    /// The server sent a tablespace other than the data directory.
    #[error("tablespaces are not supported by walstream basebackup: archive \"{0}\"")]
    Tablespace(String),
    /// Writing the backup failed.
    #[error("could not {op} \"{}\": {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Unpacking the archive failed.
    #[error("could not extract the archive: {0}")]
    Extract(String),
    /// Streaming the WAL failed.
    #[error("could not stream write-ahead log: {0}")]
    Stream(#[from] ReceiverError),
    /// The WAL streamer did not reach the end position in time.
    #[error("write-ahead log streaming did not reach {0}")]
    StreamIncomplete(Lsn),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { op, path, source }
}

/// How long the WAL streamer may take to reach the end position after the backup ended.
const STREAM_CATCH_UP: Duration = Duration::from_secs(60);

/// Takes a base backup of the server `info` points at into `dir` (created if missing,
/// must be empty).
///
/// # Errors
/// [`BackupError`].
pub async fn take_base_backup(
    info: &ConnInfo,
    opts: &BaseBackupOptions,
    dir: &Path,
    progress: Option<&watch::Sender<BackupProgress>>,
) -> Result<BackupDone, BackupError> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::NotEmpty(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    set_mode(dir, 0o700)?;
    let mut conn = ReplicationConn::connect(info, ReplicationMode::Physical).await?;
    let seg_size = show_seg_size(&mut conn).await.map_err(|e| match e {
        ReceiverError::Conn(c) => BackupError::Conn(c),
        other => BackupError::Stream(other),
    })?;
    let system_id = identify_system(&mut conn).await?.systemid;

    let started = conn.start_base_backup(&opts.command()).await?;
    let total = started.tablespaces.iter().filter_map(|t| t.size_kb).sum::<u64>() * 1024;
    let total = opts.progress.then_some(total);
    let cancel = CancellationToken::new();
    let streamer = (opts.wal == WalMethod::Stream).then(|| {
        start_streamer(info, opts, dir, seg_size, system_id, started.tli, started.start, &cancel)
    });
    let streamer = match streamer {
        Some(s) => Some(s?),
        None => None,
    };

    let received = receive_archive(&mut conn, dir, total, progress).await;
    let end = match received {
        Ok(bytes) => conn.finish_base_backup().await.map(|(end, tli)| (end, tli, bytes)),
        Err(e) => {
            cancel.cancel();
            return Err(e);
        }
    };
    let (end, tli, bytes) = match end {
        Ok(v) => v,
        Err(e) => {
            cancel.cancel();
            return Err(e.into());
        }
    };
    conn.terminate().await;

    if let Some((positions, task)) = streamer {
        let reached = wait_streamed(positions, end).await;
        cancel.cancel();
        let result = task.await.map_err(|e| BackupError::Extract(e.to_string()))?;
        result?;
        if !reached {
            return Err(BackupError::StreamIncomplete(end));
        }
        // pg_basebackup's streamed WAL has no `.partial` suffix.
        adopt_partial_segments(&dir.join("pg_wal")).map_err(|e| BackupError::Stream(e.into()))?;
    }
    if let Some(primary) = &opts.write_recovery_conf {
        write_recovery_conf(dir, primary, opts.slot.as_deref())?;
    }
    if opts.sync {
        sync_tree(dir)?;
    }
    Ok(BackupDone { start: started.start, end, tli, bytes })
}

type Streamer =
    (watch::Receiver<crate::stream::Positions>, tokio::task::JoinHandle<Result<(), BackupError>>);

#[allow(clippy::too_many_arguments)]
fn start_streamer(
    info: &ConnInfo,
    opts: &BaseBackupOptions,
    dir: &Path,
    seg_size: WalSegSize,
    system_id: u64,
    tli: TimeLineId,
    start: Lsn,
    cancel: &CancellationToken,
) -> Result<Streamer, BackupError> {
    let wal_dir = dir.join("pg_wal");
    let writer = SegmentWriter::open(
        &wal_dir,
        seg_size,
        WriterOptions { sync: opts.sync, ..WriterOptions::default() },
    )
    .map_err(|e| BackupError::Stream(e.into()))?;
    let stream_opts = StreamOptions {
        conninfo: info.clone(),
        slot: opts.slot.clone(),
        status_interval: Duration::from_secs(10),
        receiver_timeout: Duration::ZERO,
        synchronous: true,
        report_flush: true,
        endpos: None,
        no_loop: true,
        hot_standby_feedback: false,
    };
    let mut receiver =
        Receiver::new(stream_opts, writer, VerifyingApplier::new()).start_at(tli, start, system_id);
    let positions = receiver.positions();
    let cancel = cancel.clone();
    let task = tokio::spawn(async move {
        receiver.run(&cancel).await?;
        Ok(())
    });
    Ok((positions, task))
}

/// Waits (bounded) until the streamer has WAL on disk up to `end`.
async fn wait_streamed(mut positions: watch::Receiver<crate::stream::Positions>, end: Lsn) -> bool {
    let deadline = tokio::time::Instant::now() + STREAM_CATCH_UP;
    loop {
        if positions.borrow_and_update().flush >= end {
            return true;
        }
        match tokio::time::timeout_at(deadline, positions.changed()).await {
            Ok(Ok(())) => {}
            _ => return positions.borrow().flush >= end,
        }
    }
}

/// Receives the archives and the manifest up to the server's CopyDone; returns the
/// archive bytes.
async fn receive_archive(
    conn: &mut ReplicationConn,
    dir: &Path,
    total: Option<u64>,
    progress: Option<&watch::Sender<BackupProgress>>,
) -> Result<u64, BackupError> {
    let mut extractor: Option<extract::Extractor> = None;
    let mut manifest: Option<Vec<u8>> = None;
    let mut bytes = 0u64;
    while let Some(payload) = conn.next_backup_data().await? {
        match BackupMessage::parse(&payload)? {
            BackupMessage::NewArchive { name, location } => {
                if name != "base.tar" || !location.is_empty() {
                    return Err(BackupError::Tablespace(name));
                }
                if let Some(e) = extractor.take() {
                    e.finish().await?;
                }
                extractor = Some(extract::Extractor::start(dir));
            }
            BackupMessage::Data(data) => match (&mut manifest, &mut extractor) {
                (Some(m), _) => m.extend_from_slice(&data),
                (None, Some(e)) => {
                    bytes += data.len() as u64;
                    e.feed(data).await?;
                }
                (None, None) => {
                    return Err(BackupError::Message(BackupMessageError::Malformed(
                        "data before any archive",
                    )))
                }
            },
            BackupMessage::Progress(done) => {
                if let Some(p) = progress {
                    p.send_replace(BackupProgress { done, total });
                }
            }
            BackupMessage::Manifest => {
                if let Some(e) = extractor.take() {
                    e.finish().await?;
                }
                manifest = Some(Vec::new());
            }
        }
    }
    if let Some(e) = extractor.take() {
        e.finish().await?;
    }
    if let Some(m) = manifest {
        let path = dir.join("backup_manifest");
        std::fs::write(&path, m).map_err(io_err("write", &path))?;
    }
    if let Some(p) = progress {
        p.send_replace(BackupProgress { done: bytes, total });
    }
    Ok(bytes)
}

/// `-R`: `standby.signal` and `primary_conninfo` (and `primary_slot_name`) appended to
/// `postgresql.auto.conf`, as pg_basebackup writes them.
fn write_recovery_conf(dir: &Path, info: &ConnInfo, slot: Option<&str>) -> Result<(), BackupError> {
    let signal = dir.join("standby.signal");
    std::fs::write(&signal, "").map_err(io_err("create file", &signal))?;
    let auto = dir.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    let conninfo = info.to_string();
    text.push_str(&format!("primary_conninfo = '{}'\n", conninfo.replace('\'', "''")));
    if let Some(slot) = slot {
        text.push_str(&format!("primary_slot_name = '{}'\n", slot.replace('\'', "''")));
    }
    std::fs::write(&auto, text).map_err(io_err("write", &auto))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("change permissions of", path))
}

/// fsyncs every file and directory under `dir` (pg_basebackup's `fsync_pgdata`).
fn sync_tree(dir: &Path) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("stat", &path))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err("fsync", &path))?;
        }
    }
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io_err("fsync", dir))
}
