//! The `BASE_BACKUP` command (`basebackup.c: perform_base_backup` with the copystream,
//! progress and throttle sinks of PostgreSQL 15).
//!
//! On the wire: the start position (`recptr`, `tli`), the tablespace list, one
//! CopyOutResponse, then CopyData messages whose first byte says what they carry
//! (`n` a new archive, `d` archive or manifest data, `p` progress, `m` the manifest
//! follows), CopyDone, the end position. PostgreSQL 15 speaks this for every target,
//! `TARGET 'client'` or none; with `TARGET 'server'` or `'blackhole'` the data stays
//! on the server or goes nowhere and the rest is the same.

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use walstream_protocol::lsn::{history_file_name, segment_file_name};
use walstream_protocol::replication::{
    BackupTarget, BaseBackupOptions, CompressionAlgorithm, ManifestOption,
};
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::wire::{sqlstate, BackendMessage, CopyResponse, ErrorFields, Severity};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use super::label::{backup_label, LabelFields};
use super::manifest::Manifest;
use super::sink::{Dest, ProgressClock, Sink, CHUNK};
use super::tar::{self, MemberKind};
use super::throttle::Throttle;
use super::walk::{self, file_error, Entry};
use super::{BackupSource, BackupStart, BackupStop};
use crate::conn::PqWriter;
use crate::walsource::WalSource;

/// `MAXPGPATH`: the longest label.
const MAX_LABEL: usize = 1024;

/// How a backup failed.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // the cold path, as `ErrorFields` everywhere
pub enum BackupFailure {
    /// An ERROR for the client; the session goes on.
    Error(ErrorFields),
    /// The socket failed; the session ends.
    Io(io::Error),
}

impl From<ErrorFields> for BackupFailure {
    fn from(e: ErrorFields) -> Self {
        BackupFailure::Error(e)
    }
}

/// A result set of the position `lsn` on `tli` (`SendXlogRecPtrResult`).
fn send_position<W: AsyncWrite + Unpin>(w: &mut PqWriter<W>, lsn: Lsn, tli: TimeLineId) {
    let col = |name: &str, oid: u32, len: i16| {
        let mut f = walstream_protocol::wire::FieldDescription::new(name, oid, len);
        f.type_modifier = 0;
        f
    };
    w.send(&BackendMessage::RowDescription(vec![col("recptr", 25, -1), col("tli", 20, -1)]));
    w.send(&BackendMessage::DataRow(vec![
        Some(Bytes::from(lsn.to_string())),
        Some(Bytes::from(tli.0.to_string())),
    ]));
    w.send(&BackendMessage::CommandComplete("SELECT".into()));
}

/// The tablespace list: the data directory only (`SendTablespaceList`), its size in
/// kB when `PROGRESS` asked for an estimate.
fn send_tablespaces<W: AsyncWrite + Unpin>(w: &mut PqWriter<W>, size: Option<u64>) {
    let col = |name: &str, oid: u32, len: i16| {
        let mut f = walstream_protocol::wire::FieldDescription::new(name, oid, len);
        f.type_modifier = 0;
        f
    };
    w.send(&BackendMessage::RowDescription(vec![
        col("spcoid", 26, 4),
        col("spclocation", 25, -1),
        col("size", 20, 8),
    ]));
    w.send(&BackendMessage::DataRow(vec![
        None,
        None,
        size.map(|s| Bytes::from((s / 1024).to_string())),
    ]));
    w.send(&BackendMessage::CommandComplete("SELECT".into()));
}

/// What walstream refuses before a backup starts: server-side compression (as a
/// PostgreSQL built without it refuses it) and a bad server target.
fn check_options(opts: &BaseBackupOptions) -> Result<Dest, ErrorFields> {
    let algorithm = match opts.compression {
        CompressionAlgorithm::None => None,
        CompressionAlgorithm::Gzip => Some("gzip"),
        CompressionAlgorithm::Lz4 => Some("lz4"),
        CompressionAlgorithm::Zstd => Some("zstd"),
    };
    let dest = match &opts.target {
        BackupTarget::Default | BackupTarget::Client => Dest::Client,
        BackupTarget::Blackhole => Dest::Blackhole,
        BackupTarget::Server { path } => server_dir(path)?,
    };
    if let Some(name) = algorithm {
        return Err(ErrorFields::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("{name} compression is not supported by this build"),
        ));
    }
    Ok(dest)
}

/// `bbsink_server_new`: an absolute directory that is missing (made) or empty.
fn server_dir(path: &str) -> Result<Dest, ErrorFields> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(ErrorFields::error(
            sqlstate::INVALID_NAME,
            "relative path not allowed for backup stored on server",
        ));
    }
    match std::fs::read_dir(&p) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(ErrorFields::error(
                    "58P02",
                    format!("directory \"{path}\" exists but is not empty"),
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .map_err(|e| file_error("create directory", path, &e))?;
        }
        Err(e) => return Err(file_error("access directory", path, &e)),
    }
    Ok(Dest::Server { dir: p, file: None })
}

/// The history of `tli` (`readTimeLineHistory`).
fn history(source: &Arc<dyn WalSource>, tli: TimeLineId) -> Result<TimelineHistory, ErrorFields> {
    if tli.0 == 1 {
        return Ok(TimelineHistory::first());
    }
    let content = source
        .history_file(tli)
        .map_err(|e| ErrorFields::error(e.sqlstate(), e.to_string()))?
        .ok_or_else(|| {
            ErrorFields::error(
                sqlstate::UNDEFINED_FILE,
                format!(
                    "could not open file \"pg_wal/{}\": No such file or directory",
                    history_file_name(tli)
                ),
            )
        })?;
    TimelineHistory::parse(tli, &content)
        .map_err(|e| ErrorFields::error(sqlstate::DATA_CORRUPTED, e.to_string()))
}

/// Runs `BASE_BACKUP` with `opts` (checked already) from `source`, whose WAL `wal`
/// serves. The caller sends `CommandComplete` after it.
///
/// # Errors
/// [`BackupFailure::Error`] for an ERROR (the backup is aborted if it had started),
/// [`BackupFailure::Io`] when the socket failed.
pub async fn perform_base_backup<W: AsyncWrite + Unpin>(
    w: &mut PqWriter<W>,
    source: &dyn BackupSource,
    wal: &Arc<dyn WalSource>,
    opts: &BaseBackupOptions,
) -> Result<(), BackupFailure> {
    let dest = check_options(opts)?;
    if opts.label.len() > MAX_LABEL {
        return Err(ErrorFields::error(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("backup label too long (max {MAX_LABEL} bytes)"),
        )
        .into());
    }
    let start = source.start(opts.fast_checkpoint).await?;
    let mut sink = Sink {
        w,
        dest,
        buf: Vec::with_capacity(CHUNK),
        bytes_done: 0,
        throttle: opts.max_rate.map(|r| Throttle::new(r, Instant::now())),
        progress: ProgressClock::new(Instant::now()),
    };
    let mut guard = AbortGuard { source, start: Some(&start) };
    run(&mut sink, &mut guard, wal, opts, &start).await
}

/// Aborts the backup unless it ended well, also when the command is dropped half-way
/// (the backend was terminated).
struct AbortGuard<'a> {
    source: &'a dyn BackupSource,
    start: Option<&'a BackupStart>,
}

impl Drop for AbortGuard<'_> {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            self.source.abort(start);
        }
    }
}

async fn run<W: AsyncWrite + Unpin>(
    sink: &mut Sink<'_, W>,
    guard: &mut AbortGuard<'_>,
    wal: &Arc<dyn WalSource>,
    opts: &BaseBackupOptions,
    start: &BackupStart,
) -> Result<(), BackupFailure> {
    let source = guard.source;
    let seg_size = wal.seg_size();
    let data_dir = source.data_dir();
    let control_name = source.control_file();
    let walked = {
        let exclude = |rel: &[u8]| source.exclude(rel);
        let skip = walk::Skip { control_file: control_name.as_bytes(), exclude: &exclude };
        walk::walk(&data_dir, &skip)?
    };
    let dir_meta = std::fs::metadata(&data_dir)
        .map_err(|e| file_error("stat directory", &data_dir.to_string_lossy(), &e))?;
    send_position(sink.w, start.lsn, start.tli);
    let estimate = opts.progress.then(|| walked.entries.iter().map(Entry::archive_size).sum());
    send_tablespaces(sink.w, estimate);
    sink.w.send(&BackendMessage::CopyOutResponse(CopyResponse::default()));
    for warning in walked.warnings {
        sink.w.send(&BackendMessage::NoticeResponse(warning));
    }
    let mut manifest = match opts.manifest {
        ManifestOption::No => None,
        m => Some(Manifest::new(m == ManifestOption::ForceEncode, opts.manifest_checksums)),
    };
    sink.begin_archive("base.tar").await?;
    let label = backup_label(
        &LabelFields {
            start: start.lsn,
            checkpoint: start.checkpoint,
            tli: start.tli,
            from_standby: start.in_recovery,
            time: start.time.clone(),
            label: opts.label.clone(),
        },
        seg_size,
    );
    let owner = (dir_meta.uid(), dir_meta.gid());
    send_content(sink, &mut manifest, b"backup_label", label.as_bytes(), owner).await?;
    if opts.tablespace_map {
        send_content(sink, &mut manifest, b"tablespace_map", b"", owner).await?;
    }
    for entry in &walked.entries {
        match entry.member.kind {
            MemberKind::File { .. } => {
                send_file(sink, &mut manifest, entry, true).await?;
            }
            _ => sink.archive(&header(&entry.member)?).await?,
        }
    }
    let control = data_dir.join(&control_name);
    let meta = std::fs::symlink_metadata(&control)
        .map_err(|e| file_error("stat control file", &control_name, &e))?;
    let kind = MemberKind::File { size: meta.len() };
    let member = walk::member(control_name.as_bytes().to_vec(), &meta, kind);
    send_file(sink, &mut manifest, &Entry { path: control, member }, false).await?;
    if !opts.include_wal {
        sink.archive(&tar::TRAILER).await?;
        sink.end_archive().await?;
    }
    let stop = source.stop(start).await?;
    // Stopped: what fails from here on has nothing left to abort.
    guard.start = None;
    if opts.wait && !source.archiving() {
        sink.w.send(&BackendMessage::NoticeResponse(ErrorFields::new(
            Severity::Notice,
            sqlstate::SUCCESSFUL_COMPLETION,
            "WAL archiving is not enabled; you must ensure that all required WAL segments \
             are copied through other means to complete the backup",
        )));
    }
    if opts.include_wal {
        send_wal(sink, &mut manifest, &data_dir, seg_size, start, &stop, owner).await?;
        sink.archive(&tar::TRAILER).await?;
        sink.end_archive().await?;
    }
    if let Some(mut m) = manifest {
        let history = history(wal, stop.tli)?;
        m.add_wal_ranges(start.lsn, start.tli, stop.lsn, &history)
            .map_err(|e| ErrorFields::error(sqlstate::INTERNAL_ERROR, e.to_string()))?;
        sink.manifest(&m.finish()).await?;
    }
    sink.w.send(&BackendMessage::CopyDone);
    send_position(sink.w, stop.lsn, stop.tli);
    Ok(())
}

fn header(m: &tar::Member) -> Result<[u8; tar::BLOCK], ErrorFields> {
    tar::header(m).map_err(|e| ErrorFields::error(sqlstate::INTERNAL_ERROR, e.to_string()))
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `sendFileWithContent`: a file made up on the spot (mode 0600, now).
async fn send_content<W: AsyncWrite + Unpin>(
    sink: &mut Sink<'_, W>,
    manifest: &mut Option<Manifest>,
    name: &[u8],
    content: &[u8],
    (uid, gid): (u32, u32),
) -> Result<(), BackupFailure> {
    let mtime = now_secs();
    let size = content.len() as u64;
    let m = tar::Member {
        name: name.to_vec(),
        kind: MemberKind::File { size },
        mode: 0o600,
        uid,
        gid,
        mtime,
    };
    sink.archive(&header(&m)?).await?;
    sink.archive(content).await?;
    sink.archive(&[0u8; tar::BLOCK][..tar::padding(size)]).await?;
    if let Some(man) = manifest {
        let mut c = man.checksum();
        c.update(content);
        man.add_file(name, size, mtime, c);
    }
    Ok(())
}

/// `sendFile`: the header, the stat'ed size of content (zeros if the file shrank),
/// the padding, the manifest line. A file that vanished is skipped when `missing_ok`.
async fn send_file<W: AsyncWrite + Unpin>(
    sink: &mut Sink<'_, W>,
    manifest: &mut Option<Manifest>,
    entry: &Entry,
    missing_ok: bool,
) -> Result<(), BackupFailure> {
    let MemberKind::File { size } = entry.member.kind else {
        return Ok(());
    };
    let shown = String::from_utf8_lossy(&entry.member.name).into_owned();
    let shown = if missing_ok { format!("./{shown}") } else { shown };
    let mut file = match std::fs::File::open(&entry.path) {
        Ok(f) => f,
        Err(e) if missing_ok && e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(file_error("open file", &shown, &e).into()),
    };
    sink.archive(&header(&entry.member)?).await?;
    let mut checksum = manifest.as_ref().map(Manifest::checksum);
    let mut done = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while done < size {
        let want = (size - done).min(CHUNK as u64) as usize;
        let n = match file.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(file_error("read file", &shown, &e).into()),
        };
        if n == 0 {
            break;
        }
        if let Some(c) = &mut checksum {
            c.update(&buf[..n]);
        }
        sink.archive(&buf[..n]).await?;
        done += n as u64;
    }
    // The file was truncated while it was read: pad it with zeros.
    while done < size {
        let n = (size - done).min(CHUNK as u64) as usize;
        buf[..n].fill(0);
        if let Some(c) = &mut checksum {
            c.update(&buf[..n]);
        }
        sink.archive(&buf[..n]).await?;
        done += n as u64;
    }
    sink.archive(&[0u8; tar::BLOCK][..tar::padding(size)]).await?;
    if let (Some(man), Some(c)) = (manifest, checksum) {
        man.add_file(&entry.member.name, size, entry.member.mtime, c);
    }
    Ok(())
}

/// `WAL`: the segments from the start to the end of the backup and every history
/// file, each marked archived with a `.done` file.
async fn send_wal<W: AsyncWrite + Unpin>(
    sink: &mut Sink<'_, W>,
    manifest: &mut Option<Manifest>,
    data_dir: &Path,
    seg_size: WalSegSize,
    start: &BackupStart,
    stop: &BackupStop,
    owner: (u32, u32),
) -> Result<(), BackupFailure> {
    let wal_dir = data_dir.join("pg_wal");
    let first = start.lsn.segno(seg_size);
    let last = stop.lsn.prev_segno(seg_size);
    let first_name = segment_file_name(start.tli, first, seg_size);
    let last_name = segment_file_name(start.tli, last, seg_size);
    let rd = std::fs::read_dir(&wal_dir).map_err(|e| file_error("open directory", "pg_wal", &e))?;
    let mut segments = Vec::new();
    let mut histories = Vec::new();
    for de in rd {
        let de = de.map_err(|e| file_error("read directory", "pg_wal", &e))?;
        let name = de.file_name().to_string_lossy().into_owned();
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        if name.len() == 24 && hex(&name) {
            if name[8..] >= first_name[8..] && name[8..] <= last_name[8..] {
                segments.push(name);
            }
        } else if name.len() == 16 && name.ends_with(".history") && hex(&name[..8]) {
            histories.push(name);
        }
    }
    segments.sort();
    segments.sort_by(|a, b| a[8..].cmp(&b[8..]));
    histories.sort();
    let missing = |name: String| {
        BackupFailure::Error(ErrorFields::error(
            sqlstate::INTERNAL_ERROR,
            format!("could not find WAL file \"{name}\""),
        ))
    };
    let segno_of = |name: &str| {
        let hi = u64::from_str_radix(&name[8..16], 16).unwrap_or(0);
        let lo = u64::from_str_radix(&name[16..24], 16).unwrap_or(0);
        hi * seg_size.segments_per_xlogid() + lo
    };
    if segments.is_empty() {
        return Err(
            ErrorFields::error(sqlstate::INTERNAL_ERROR, "could not find any WAL files").into()
        );
    }
    let mut prev = segno_of(&segments[0]);
    if prev != first.0 {
        return Err(missing(first_name));
    }
    for name in &segments[1..] {
        let s = segno_of(name);
        if s != prev && s != prev + 1 {
            let next = walstream_protocol::XLogSegNo(prev + 1);
            return Err(missing(segment_file_name(start.tli, next, seg_size)));
        }
        prev = s;
    }
    if prev != last.0 {
        return Err(missing(last_name));
    }
    for name in &segments {
        let path = wal_dir.join(name);
        let shown = format!("pg_wal/{name}");
        let meta = std::fs::metadata(&path).map_err(|e| file_error("stat file", &shown, &e))?;
        if meta.len() != u64::from(seg_size.bytes()) {
            return Err(ErrorFields::error(
                sqlstate::IO_ERROR,
                format!("unexpected WAL file size \"{name}\""),
            )
            .into());
        }
        let member =
            walk::member(shown.clone().into_bytes(), &meta, MemberKind::File { size: meta.len() });
        // Segments are not in the manifest: pg_verifybackup checks WAL by decoding it.
        send_file(sink, &mut None, &Entry { path, member }, false).await?;
        let done = format!("pg_wal/archive_status/{name}.done");
        send_content(sink, manifest, done.as_bytes(), b"", owner).await?;
    }
    for name in &histories {
        let path = wal_dir.join(name);
        let shown = format!("pg_wal/{name}");
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| file_error("stat file", &shown, &e))?;
        let member =
            walk::member(shown.clone().into_bytes(), &meta, MemberKind::File { size: meta.len() });
        send_file(sink, manifest, &Entry { path, member }, false).await?;
        let done = format!("pg_wal/archive_status/{name}.done");
        send_content(sink, manifest, done.as_bytes(), b"", owner).await?;
    }
    Ok(())
}

/// `BASE_BACKUP (options)` on a walsender: the options checked, the backup run,
/// `CommandComplete`.
///
/// # Errors
/// The ERROR to send (ReadyForQuery follows).
pub async fn base_backup_command<W: AsyncWrite + Unpin>(
    w: &mut PqWriter<W>,
    source: &dyn BackupSource,
    wal: &Arc<dyn WalSource>,
    options: &[walstream_protocol::replication::GenericOption],
) -> Result<crate::walsender::CommandOutcome, ErrorFields> {
    use crate::backend::BackendEnd;
    use crate::walsender::CommandOutcome;
    let opts = walstream_protocol::replication::parse_base_backup_options(options)
        .map_err(|e| ErrorFields::error(e.sqlstate(), e.to_string()))?;
    match perform_base_backup(w, source, wal, &opts).await {
        Ok(()) => {
            w.send(&BackendMessage::CommandComplete("BASE_BACKUP".into()));
            Ok(CommandOutcome::Done)
        }
        Err(BackupFailure::Error(e)) => Err(e),
        Err(BackupFailure::Io(e)) => Ok(CommandOutcome::Exit(BackendEnd::Io(e))),
    }
}
