//! [`DirWalSource`]: WAL served from a directory of segment files (a copy of a
//! `pg_wal`, an archive, a receiver's output) that may grow while it is served.
//!
//! The flushed end is found by decoding (see `dir/tail.rs`); a background task
//! ([`DirWalSource::watch_for_growth`]) or the writer itself ([`DirWalSource::refresh`])
//! follows new bytes, new segments and new timelines.

mod listing;
mod tail;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

use self::listing::Listing;
use self::tail::{Ctx, Tail};
use super::segfile::SegmentFiles;
use super::{WalEnd, WalSource, WalSourceError};

/// How a [`DirWalSource`] behaves.
#[derive(Debug, Clone)]
pub struct DirWalSourceOptions {
    /// How often [`DirWalSource::watch_for_growth`] looks for new WAL (default 100 ms).
    pub poll_interval: Duration,
}

impl Default for DirWalSourceOptions {
    fn default() -> Self {
        DirWalSourceOptions { poll_interval: Duration::from_millis(100) }
    }
}

/// The decoding state: the current timeline and where its WAL ends.
#[derive(Debug)]
struct State {
    tli: TimeLineId,
    tail: Tail,
}

/// A directory of WAL segment files, served as a [`WalSource`].
#[derive(Debug)]
pub struct DirWalSource {
    seg_size: WalSegSize,
    system_id: u64,
    opts: DirWalSourceOptions,
    state: Mutex<State>,
    end_tx: watch::Sender<WalEnd>,
    files: SegmentFiles,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DirWalSource {
    /// Opens `dir`: finds the segment size and system id in the segments' long page
    /// headers, the current timeline (highest of segments and history files), and the
    /// flushed end by decoding.
    ///
    /// # Errors
    /// No segment files; none with a valid long page header; a complete segment file
    /// whose size is not the segment size; I/O errors.
    pub fn open(
        dir: &Path,
        opts: DirWalSourceOptions,
    ) -> Result<Arc<DirWalSource>, WalSourceError> {
        let (seg_size, system_id) = listing::discover(dir)?;
        let files = Listing::read(dir, seg_size)?;
        listing::check_sizes(&files, seg_size)?;
        let ctx = Ctx { dir, seg_size, sysid: system_id };
        let tli = files.max_tli().unwrap_or(TimeLineId(1));
        let tail = Tail::locate(&ctx, &files, tli)?;
        let end = WalEnd { tli, flushed: tail.flushed() };
        tracing::debug!("{}: timeline {tli}, WAL flushed to {}", dir.display(), end.flushed);
        Ok(Arc::new(DirWalSource {
            seg_size,
            system_id,
            opts,
            state: Mutex::new(State { tli, tail }),
            end_tx: watch::Sender::new(end),
            files: SegmentFiles::new(dir.to_path_buf(), seg_size),
        }))
    }

    /// The served directory.
    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    /// The current timeline and flushed end (what [`WalSource::end`] last published).
    pub fn current_end(&self) -> WalEnd {
        *self.end_tx.borrow()
    }

    /// Looks once for new WAL: re-lists the directory, decodes bytes written since the
    /// last look, switches to a new higher timeline, and publishes a new [`WalEnd`] if it
    /// moved. Cheap when nothing changed (one directory listing).
    ///
    /// # Errors
    /// The directory or a segment cannot be read.
    pub fn refresh(&self) -> Result<(), WalSourceError> {
        let files = Listing::read(self.files.dir(), self.seg_size)?;
        let ctx = Ctx { dir: self.files.dir(), seg_size: self.seg_size, sysid: self.system_id };
        let mut st = lock(&self.state);
        let top = files.max_tli().unwrap_or(st.tli).max(st.tli);
        let new_timeline = top > st.tli && files.has_timeline(top);
        let ancestor_now_has_files = st.tail.tli != st.tli && files.has_timeline(st.tli);
        if new_timeline || ancestor_now_has_files {
            st.tail = Tail::locate(&ctx, &files, top)?;
            st.tli = top;
        } else {
            st.tail.advance(&ctx, &files)?;
            if st.tail.lost() {
                st.tail = Tail::locate(&ctx, &files, st.tli)?;
            }
        }
        let end = WalEnd { tli: st.tli, flushed: st.tail.flushed() };
        drop(st);
        end.publish(&self.end_tx);
        Ok(())
    }

    /// Spawns a task that calls [`DirWalSource::refresh`] every `poll_interval` until
    /// `cancel` fires. Errors are logged and retried at the next tick.
    pub fn watch_for_growth(self: &Arc<Self>, cancel: CancellationToken) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.opts.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let s = Arc::clone(&this);
                match tokio::task::spawn_blocking(move || s.refresh()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("watching {}: {e}", this.files.dir().display()),
                    Err(e) => tracing::warn!("watching {}: {e}", this.files.dir().display()),
                }
            }
        })
    }

    /// Removes the complete segment files (of every timeline) before segment `keep_from`,
    /// never the one holding the flushed end nor any later one, never `.partial` or
    /// history files. Returns the names removed.
    ///
    /// # Errors
    /// The directory cannot be listed or a file cannot be removed (files removed before
    /// the failure stay removed).
    pub fn remove_old_segments(&self, keep_from: XLogSegNo) -> Result<Vec<String>, WalSourceError> {
        let flushed = self.current_end().flushed;
        let holding_end = Lsn(flushed.0.saturating_sub(1)).segno(self.seg_size);
        let limit = keep_from.min(holding_end);
        let files = Listing::read(self.files.dir(), self.seg_size)?;
        let mut removed = Vec::new();
        for (&(tli, segno), f) in &files.segments {
            if f.partial || segno >= limit {
                continue;
            }
            self.files.forget(tli, segno);
            let path = self.files.dir().join(&f.name);
            std::fs::remove_file(&path)
                .map_err(|source| WalSourceError::Io { path: f.name.clone(), source })?;
            removed.push(f.name.clone());
        }
        Ok(removed)
    }
}

impl WalSource for DirWalSource {
    fn system_id(&self) -> u64 {
        self.system_id
    }

    fn seg_size(&self) -> WalSegSize {
        self.seg_size
    }

    fn end(&self) -> watch::Receiver<WalEnd> {
        self.end_tx.subscribe()
    }

    fn history_file(&self, tli: TimeLineId) -> Result<Option<Bytes>, WalSourceError> {
        self.files.history_file(tli)
    }

    fn read(&self, file_tli: TimeLineId, start: Lsn, len: usize) -> Result<Bytes, WalSourceError> {
        self.files.read(file_tli, start, len)
    }

    fn file_range(
        &self,
        file_tli: TimeLineId,
        start: Lsn,
        len: usize,
    ) -> Result<Option<super::FileRange>, WalSourceError> {
        self.files.file_range(file_tli, start, len).map(Some)
    }

    fn refresh(&self) -> Result<(), WalSourceError> {
        DirWalSource::refresh(self)
    }
}
