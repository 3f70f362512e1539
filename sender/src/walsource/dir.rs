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

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use walstream_protocol::lsn::{history_file_name, segment_file_name};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

use self::listing::Listing;
use self::tail::{Ctx, Tail};
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

/// The segment file `read` used last.
#[derive(Debug)]
struct OpenSegment {
    tli: TimeLineId,
    segno: XLogSegNo,
    file: Arc<File>,
}

/// A directory of WAL segment files, served as a [`WalSource`].
#[derive(Debug)]
pub struct DirWalSource {
    dir: PathBuf,
    seg_size: WalSegSize,
    system_id: u64,
    opts: DirWalSourceOptions,
    state: Mutex<State>,
    end_tx: watch::Sender<WalEnd>,
    open_segment: Mutex<Option<OpenSegment>>,
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
            dir: dir.to_path_buf(),
            seg_size,
            system_id,
            opts,
            state: Mutex::new(State { tli, tail }),
            end_tx: watch::Sender::new(end),
            open_segment: Mutex::new(None),
        }))
    }

    /// The served directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let files = Listing::read(&self.dir, self.seg_size)?;
        let ctx = Ctx { dir: &self.dir, seg_size: self.seg_size, sysid: self.system_id };
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
        self.end_tx.send_if_modified(|cur| {
            let moved = *cur != end;
            *cur = end;
            moved
        });
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
                    Ok(Err(e)) => tracing::warn!("watching {}: {e}", this.dir.display()),
                    Err(e) => tracing::warn!("watching {}: {e}", this.dir.display()),
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
        let files = Listing::read(&self.dir, self.seg_size)?;
        let mut removed = Vec::new();
        for (&(tli, segno), f) in &files.segments {
            if f.partial || segno >= limit {
                continue;
            }
            self.forget_open_segment(tli, segno);
            let path = self.dir.join(&f.name);
            std::fs::remove_file(&path)
                .map_err(|source| WalSourceError::Io { path: f.name.clone(), source })?;
            removed.push(f.name.clone());
        }
        Ok(removed)
    }

    fn forget_open_segment(&self, tli: TimeLineId, segno: XLogSegNo) {
        let mut open = lock(&self.open_segment);
        if open.as_ref().is_some_and(|o| o.tli == tli && o.segno == segno) {
            *open = None;
        }
    }

    /// The open file of segment `segno` on `tli`: the complete file, else its `.partial`.
    fn segment_file(&self, tli: TimeLineId, segno: XLogSegNo) -> Result<Arc<File>, WalSourceError> {
        let mut open = lock(&self.open_segment);
        if let Some(o) = open.as_ref().filter(|o| o.tli == tli && o.segno == segno) {
            return Ok(Arc::clone(&o.file));
        }
        let name = segment_file_name(tli, segno, self.seg_size);
        let file = match File::open(self.dir.join(&name)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                File::open(self.dir.join(format!("{name}.partial")))
            }
            other => other,
        };
        let file = match file {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalSourceError::SegmentRemoved { segment: name });
            }
            Err(source) => return Err(WalSourceError::Io { path: name, source }),
        };
        *open = Some(OpenSegment { tli, segno, file: Arc::clone(&file) });
        Ok(file)
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
        let name = history_file_name(tli);
        match std::fs::read(self.dir.join(&name)) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(WalSourceError::Io { path: name, source }),
        }
    }

    fn read(&self, file_tli: TimeLineId, start: Lsn, len: usize) -> Result<Bytes, WalSourceError> {
        let segno = start.segno(self.seg_size);
        let off = start.segment_offset(self.seg_size);
        let len = len.min((self.seg_size.bytes() - off) as usize);
        let file = self.segment_file(file_tli, segno)?;
        tail::read_exact_at(&file, u64::from(off), len).map_err(|source| WalSourceError::Io {
            path: segment_file_name(file_tli, segno, self.seg_size),
            source,
        })
    }
}
