//! Unpacking a `base.tar` into the target directory while it arrives: the archive bytes
//! go through a bounded channel to a blocking thread that runs the `tar` crate's unpacker
//! (which refuses paths leaving the directory).

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::BackupError;

/// Chunks in flight between the connection and the unpacker.
const CHANNEL_DEPTH: usize = 64;

/// Reads the chunks the connection sends, blocking (on the unpacker's thread).
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// One archive being unpacked.
pub(super) struct Extractor {
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<Result<(), String>>,
    dir: PathBuf,
}

impl Extractor {
    /// Starts unpacking into `dir`.
    pub(super) fn start(dir: &Path) -> Extractor {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let target = dir.to_path_buf();
        let task = tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(ChannelReader { rx, current: Bytes::new() });
            archive.set_preserve_permissions(true);
            archive.set_overwrite(true);
            let result = archive.unpack(&target).map_err(|e| e.to_string());
            // Drain what is left so the sender never blocks on a failed unpacker.
            let mut rest = archive.into_inner();
            let _ = std::io::copy(&mut rest, &mut std::io::sink());
            result
        });
        Extractor { tx, task, dir: dir.to_path_buf() }
    }

    /// Hands the next bytes of the archive to the unpacker.
    pub(super) async fn feed(&mut self, data: Bytes) -> Result<(), BackupError> {
        if self.tx.send(data).await.is_err() {
            return Err(BackupError::Extract(format!(
                "the unpacker into \"{}\" stopped",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Ends the archive and waits for the unpacker.
    pub(super) async fn finish(self) -> Result<(), BackupError> {
        drop(self.tx);
        self.task
            .await
            .map_err(|e| BackupError::Extract(e.to_string()))?
            .map_err(BackupError::Extract)
    }
}
