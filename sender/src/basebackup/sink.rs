//! Where `BASE_BACKUP`'s bytes go: PostgreSQL 15's chain of sinks (`basebackup_sink.c`)
//! of progress, throttle and copystream (`basebackup_copy.c`), or a server directory
//! (`basebackup_server.c`) or nowhere.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWrite;
use walstream_protocol::wire::BackendMessage;

use super::perform::BackupFailure;
use super::throttle::Throttle;
use super::walk::file_error;
use crate::conn::PqWriter;

/// The size of the chunks the archive is sent in (`SINK_BUFFER_LENGTH`).
pub(super) const CHUNK: usize = 32768;

/// Progress is looked at after this many bytes (`PROGRESS_REPORT_BYTE_INTERVAL`)...
const PROGRESS_BYTES: u64 = 65536;

/// ...and sent when this much time has passed since the last report.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(1000);

/// Where the archive bytes go.
pub(super) enum Dest {
    /// CopyData messages to the client.
    Client,
    /// Nowhere.
    Blackhole,
    /// Files in a directory of the server (`basebackup_server.c`).
    Server {
        /// The directory.
        dir: PathBuf,
        /// The file being written.
        file: Option<std::fs::File>,
    },
}

/// When a progress report is due (`bbsink_copystream_archive_contents`): looked at
/// every [`PROGRESS_BYTES`], sent when [`PROGRESS_INTERVAL`] has passed (or the clock
/// went back).
#[derive(Debug, Clone, Copy)]
pub(super) struct ProgressClock {
    last_report: Instant,
    bytes_at_last_check: u64,
}

impl ProgressClock {
    /// A clock whose last report was at `now`.
    pub(super) fn new(now: Instant) -> Self {
        ProgressClock { last_report: now, bytes_at_last_check: 0 }
    }

    /// Whether to report `bytes_done` at `now`.
    pub(super) fn due(&mut self, bytes_done: u64, now: Instant) -> bool {
        if self.bytes_at_last_check + PROGRESS_BYTES > bytes_done {
            return false;
        }
        self.bytes_at_last_check = bytes_done;
        if now.saturating_duration_since(self.last_report) < PROGRESS_INTERVAL {
            return false;
        }
        self.last_report = now;
        true
    }

    /// A report was forced at `now` (the end of an archive).
    pub(super) fn reported(&mut self, bytes_done: u64, now: Instant) {
        self.bytes_at_last_check = bytes_done;
        self.last_report = now;
    }
}

/// The chain of PostgreSQL's sinks: progress, throttle, copystream (and server).
pub(super) struct Sink<'a, W> {
    pub(super) w: &'a mut PqWriter<W>,
    pub(super) dest: Dest,
    pub(super) buf: Vec<u8>,
    pub(super) bytes_done: u64,
    pub(super) throttle: Option<Throttle>,
    pub(super) progress: ProgressClock,
}

fn copy_data(kind: u8, body: &[u8]) -> BackendMessage {
    let mut b = BytesMut::with_capacity(body.len() + 1);
    b.put_u8(kind);
    b.put_slice(body);
    BackendMessage::CopyData(b.freeze())
}

impl<W: AsyncWrite + Unpin> Sink<'_, W> {
    async fn flush(&mut self) -> Result<(), BackupFailure> {
        self.w.flush().await.map_err(BackupFailure::Io)
    }

    fn server_error(dir: &Path, name: &str, e: &io::Error) -> BackupFailure {
        let path = dir.join(name);
        BackupFailure::Error(file_error("write file", &path.to_string_lossy(), e))
    }

    /// `bbsink_begin_archive`: `n`, the name and the tablespace path (none: the data
    /// directory).
    pub(super) async fn begin_archive(&mut self, name: &str) -> Result<(), BackupFailure> {
        let mut body = Vec::with_capacity(name.len() + 2);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"\0\0");
        self.w.send(&copy_data(b'n', &body));
        if let Dest::Server { dir, file } = &mut self.dest {
            let f = create_file(&dir.join(name)).map_err(|e| Self::server_error(dir, name, &e))?;
            *file = Some(f);
        }
        self.flush().await
    }

    /// Archive bytes; sent in whole chunks.
    pub(super) async fn archive(&mut self, data: &[u8]) -> Result<(), BackupFailure> {
        self.bytes_done += data.len() as u64;
        let mut data = data;
        while !data.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                self.send_buffer(b'd').await?;
            }
        }
        Ok(())
    }

    /// Sends what is buffered as one `kind` message, throttled.
    async fn send_buffer(&mut self, kind: u8) -> Result<(), BackupFailure> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.buf);
        if let Some(t) = &mut self.throttle {
            if let Some(wait) = t.sent(chunk.len() as u64, Instant::now()) {
                tokio::time::sleep(wait).await;
                t.period_done(Instant::now());
            }
        }
        match &mut self.dest {
            Dest::Client => self.w.send(&copy_data(kind, &chunk)),
            Dest::Blackhole => {}
            Dest::Server { dir, file } => {
                if let Some(f) = file {
                    f.write_all(&chunk).map_err(|e| Self::server_error(dir, "base.tar", &e))?;
                }
            }
        }
        self.buf = chunk;
        self.buf.clear();
        if kind == b'd' && self.progress.due(self.bytes_done, Instant::now()) {
            self.report();
        }
        self.flush().await
    }

    fn report(&mut self) {
        self.w.send(&copy_data(b'p', &self.bytes_done.to_be_bytes()));
    }

    /// `bbsink_end_archive`: the rest of the buffer and a progress report.
    pub(super) async fn end_archive(&mut self) -> Result<(), BackupFailure> {
        self.send_buffer(b'd').await?;
        if let Dest::Server { dir, file } = &mut self.dest {
            if let Some(f) = file.take() {
                f.sync_all().map_err(|e| Self::server_error(dir, "base.tar", &e))?;
            }
        }
        self.progress.reported(self.bytes_done, Instant::now());
        self.report();
        self.flush().await
    }

    /// `SendBackupManifest`: `m`, then the manifest in chunks.
    pub(super) async fn manifest(&mut self, text: &[u8]) -> Result<(), BackupFailure> {
        self.w.send(&copy_data(b'm', &[]));
        if let Dest::Server { dir, .. } = &self.dest {
            let path = dir.join("backup_manifest");
            create_file(&path)
                .and_then(|mut f| f.write_all(text).and_then(|()| f.sync_all()))
                .map_err(|e| Self::server_error(dir, "backup_manifest", &e))?;
        }
        for piece in text.chunks(CHUNK) {
            self.buf.extend_from_slice(piece);
            let dest_is_client = matches!(self.dest, Dest::Client);
            if dest_is_client {
                self.send_buffer(b'd').await?;
            } else {
                self.buf.clear();
            }
        }
        self.flush().await
    }
}

pub(super) fn create_file(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_reported_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut p = ProgressClock::new(t0);
        assert!(!p.due(65_535, t0 + Duration::from_secs(5)));
        assert!(p.due(65_536, t0 + Duration::from_secs(5)));
        // Enough bytes, too soon.
        assert!(!p.due(200_000, t0 + Duration::from_millis(5500)));
        // Enough time, too few bytes since the last look.
        assert!(!p.due(210_000, t0 + Duration::from_secs(9)));
        assert!(p.due(300_000, t0 + Duration::from_secs(9)));
        p.reported(300_000, t0 + Duration::from_secs(9));
        assert!(!p.due(400_000, t0 + Duration::from_millis(9500)));
    }
}
