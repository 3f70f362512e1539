//! WAL segment files as pg_receivewal and the walreceiver write them
//! (`receivelog.c: ProcessXLogDataMsg`, `walmethods.c`, `walreceiver.c: XLogWalRcvWrite`):
//! `<segment>.partial` at its full size, written in place, renamed when complete.
//!
//! - [`SegmentWriter`]: writes streamed bytes at their exact offsets, crossing segments,
//!   flushes, renames complete segments, writes history files.
//! - [`ResumePoint`] ([`SegmentWriter::resume_point`]): what is on disk, with the last
//!   `.partial` validated by decoding it ([`validate_partial`]).

mod file;
mod io;
mod resume;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use walstream_protocol::lsn::history_file_name;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

pub use resume::{fuzz_resume, validate_partial, PartialCheck, ResumePoint};

use file::{fsync_dir, OpenSegment};
use io::{Io, Stage, BLOCK};

/// Errors of the segment layer.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A file system call failed; the text is pg_receivewal's for the same call
    /// (`receivelog.c`, `walmethods.c`, `file_utils.c`).
    #[error("could not {op} \"{path}\": {source}")]
    Io {
        /// What was attempted, as PostgreSQL words it (`open write-ahead log file`,
        /// `fsync file`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Writing streamed WAL into a segment failed (`receivelog.c: ProcessXLogDataMsg`).
    #[error("could not write {len} bytes to WAL file \"{path}\": {source}")]
    Write {
        /// How many bytes were to be written.
        len: usize,
        /// The segment file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A rename failed (`file_utils.c: durable_rename`).
    #[error("could not rename file \"{from}\" to \"{to}\": {source}")]
    Rename {
        /// The file's name before.
        from: PathBuf,
        /// The name it was to get.
        to: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Data that does not continue what was written (`receivelog.c: ProcessXLogDataMsg`).
    #[error("got WAL data at {got}, expected {expected}")]
    NotContiguous {
        /// Where the data starts.
        got: Lsn,
        /// Where the data written so far ends.
        expected: Lsn,
    },
    /// A stream starting inside a segment with nothing on disk before it.
    #[error(
        "cannot start timeline {tli} at {start}: no earlier WAL of segment \"{segment}\" \
         on disk"
    )]
    MidSegmentStart {
        /// The timeline.
        tli: TimeLineId,
        /// Where the data starts.
        start: Lsn,
        /// The segment file name.
        segment: String,
    },
    /// `start + data.len()` does not fit in an LSN.
    #[error("WAL data at {start} of {len} bytes is past the end of the WAL address space")]
    Overflow {
        /// Where the data starts.
        start: Lsn,
        /// Its length.
        len: usize,
    },
}

/// `op` of an fsync failure ([`SegmentError::is_retried_file_error`]).
pub(crate) const FSYNC_FILE: &str = "fsync file";

impl SegmentError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError {
        let path = path.to_path_buf();
        move |source| SegmentError::Io { op, path, source }
    }

    fn rename(from: &Path, to: &Path) -> impl FnOnce(std::io::Error) -> SegmentError {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        move |source| SegmentError::Rename { from, to, source }
    }

    /// A local file operation failed that pg_receivewal logs and retries after a new
    /// connection: any but an fsync, whose failure it never retries, as what was written
    /// may be lost (`receivelog.c`: `pg_fatal("could not fsync file ...")`).
    pub fn is_retried_file_error(&self) -> bool {
        match self {
            SegmentError::Io { op, .. } => *op != FSYNC_FILE,
            SegmentError::Write { .. } | SegmentError::Rename { .. } => true,
            _ => false,
        }
    }

    /// A copy of this error (the I/O thread's first failure is returned by every later
    /// call).
    pub(crate) fn duplicate(&self) -> SegmentError {
        let copy = |e: &std::io::Error| match e.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::new(e.kind(), e.to_string()),
        };
        match self {
            SegmentError::Io { op, path, source } => {
                SegmentError::Io { op, path: path.clone(), source: copy(source) }
            }
            SegmentError::Write { len, path, source } => {
                SegmentError::Write { len: *len, path: path.clone(), source: copy(source) }
            }
            SegmentError::Rename { from, to, source } => {
                SegmentError::Rename { from: from.clone(), to: to.clone(), source: copy(source) }
            }
            SegmentError::NotContiguous { got, expected } => {
                SegmentError::NotContiguous { got: *got, expected: *expected }
            }
            SegmentError::MidSegmentStart { tli, start, segment } => {
                SegmentError::MidSegmentStart { tli: *tli, start: *start, segment: segment.clone() }
            }
            SegmentError::Overflow { start, len } => {
                SegmentError::Overflow { start: *start, len: *len }
            }
        }
    }
}

/// How a [`SegmentWriter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// fdatasync segments and fsync the directory (pg_receivewal's default; `--no-sync`
    /// turns it off, and then [`SegmentWriter::flush`] reports what was written).
    pub sync: bool,
    /// Write new segments with `O_DIRECT` (WAL that is only stored need not fill the page
    /// cache). Off, WAL goes through the page cache as PostgreSQL's walreceiver writes it:
    /// a write is then done in microseconds and can be reported before its fsync (what
    /// `synchronous_commit = remote_write` waits for), and a standby that replays the WAL
    /// reads it back from memory.
    pub direct: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { sync: true, direct: true }
    }
}

/// Writes streamed WAL into a directory of segment files.
///
/// Bytes are staged in memory and written by an I/O thread (see the `io` module):
/// [`SegmentWriter::written`] is what was accepted, [`SegmentWriter::written_out`] what
/// is in the kernel, [`SegmentWriter::flushed`] what is on disk.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    seg_size: WalSegSize,
    opts: WriterOptions,
    /// The segment being written.
    current: Option<OpenSegment>,
    /// What is staged for the current segment.
    stage: Option<Stage>,
    /// The I/O thread.
    io: Io,
    /// Record what is staged as [`SegmentWriter::take_ready`] pieces.
    collect_ready: bool,
    /// Staged bytes frozen since the last [`SegmentWriter::take_ready`].
    ready: Vec<(TimeLineId, Lsn, Bytes)>,
    /// The timeline of the stream, once something was written.
    tli: Option<TimeLineId>,
    written: Lsn,
    flushed: Lsn,
}

impl SegmentWriter {
    /// Opens a directory (created if missing) of WAL segments of `seg_size`.
    ///
    /// # Errors
    /// [`SegmentError::Io`] if the directory cannot be created.
    pub fn open(
        dir: &Path,
        seg_size: WalSegSize,
        opts: WriterOptions,
    ) -> Result<Self, SegmentError> {
        std::fs::create_dir_all(dir).map_err(SegmentError::io("create directory", dir))?;
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            seg_size,
            opts,
            current: None,
            stage: None,
            io: Io::start(),
            collect_ready: false,
            ready: Vec::new(),
            tli: None,
            written: Lsn::INVALID,
            flushed: Lsn::INVALID,
        })
    }

    /// Drops what is open and staged (staged bytes are not written: they come again
    /// with the stream) and starts over as a writer newly opened on the same directory,
    /// with a new I/O thread: how writing resumes after a failed file operation.
    ///
    /// # Errors
    /// As [`SegmentWriter::open`].
    pub fn reopen(&mut self) -> Result<(), SegmentError> {
        let mut fresh = SegmentWriter::open(&self.dir, self.seg_size, self.opts)?;
        fresh.collect_ready = self.collect_ready;
        self.stage = None;
        drop(std::mem::replace(self, fresh));
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// WAL of `tli` from `lsn` on did not verify: nothing from there may look complete on
    /// disk. The segment holding `lsn` goes back to `.partial` (so that a restart validates
    /// it and re-streams from its last valid record) and later segments are removed; the
    /// writer forgets its open segment.
    ///
    /// # Errors
    /// [`SegmentError::Io`] if a file cannot be renamed or removed.
    pub fn discard_from(&mut self, tli: TimeLineId, lsn: Lsn) -> Result<(), SegmentError> {
        self.submit(false, true)?;
        self.io.wait_all()?;
        self.ready.clear();
        self.current = None;
        let first = lsn.segno(self.seg_size);
        let entries =
            std::fs::read_dir(&self.dir).map_err(SegmentError::io("read directory", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(SegmentError::io("read directory", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((t, segno)) =
                walstream_protocol::lsn::parse_segment_file_name(&name, self.seg_size)
            else {
                continue;
            };
            if t != tli || segno < first {
                continue;
            }
            let path = entry.path();
            if segno > first {
                std::fs::remove_file(&path).map_err(SegmentError::io("remove file", &path))?;
            } else if !name.ends_with(file::PARTIAL) {
                let partial = self.dir.join(format!("{name}{}", file::PARTIAL));
                std::fs::rename(&path, &partial).map_err(SegmentError::rename(&path, &partial))?;
            }
        }
        fsync_dir(&self.dir)?;
        self.written = self.written.min(lsn);
        self.flushed = self.flushed.min(lsn);
        Ok(())
    }

    /// The segment size.
    pub fn seg_size(&self) -> WalSegSize {
        self.seg_size
    }

    /// Where the streaming can resume from what is on disk (pg_receivewal.c:
    /// FindStreamingStart, with the last `.partial` validated by decoding it); `None` for
    /// a directory without segments. See [`ResumePoint`].
    ///
    /// # Errors
    /// [`SegmentError::Io`] reading the directory or a file.
    pub fn resume_point(&self) -> Result<Option<ResumePoint>, SegmentError> {
        resume::find(&self.dir, self.seg_size)
    }

    /// The end of what was written in this session (0/0 before the first write): staged
    /// in memory, or further.
    pub fn written(&self) -> Lsn {
        self.written
    }

    /// The end of what was written into the kernel (what a status update reports as
    /// written), at least what was flushed.
    pub fn written_out(&mut self) -> Lsn {
        // A failure shows at the next write or flush.
        let _ = self.io.collect();
        self.io.written_out.min(self.written).max(self.flushed)
    }

    /// Writes what is staged into the kernel now (on this thread when the I/O thread is
    /// idle), without syncing: what a status update may then report as written before
    /// [`SegmentWriter::flush`] syncs it.
    ///
    /// # Errors
    /// [`SegmentError::Io`].
    pub fn write_out(&mut self) -> Result<Lsn, SegmentError> {
        self.io.collect()?;
        self.submit(true, true)?;
        Ok(self.written_out())
    }

    /// The end of what is known to be on disk (0/0 before the first write).
    pub fn flushed(&self) -> Lsn {
        self.flushed
    }

    /// Writes `data` of timeline `tli`, which begins at WAL position `start`, into the
    /// segment files at its exact offsets, crossing into the next segments as needed.
    ///
    /// `start` must continue what was written, unless it begins a fresh stream: at a
    /// segment start (anything written before stays on disk, a `.partial` of that segment
    /// is overwritten in place), or, for the first write of a timeline, inside a segment
    /// whose `.partial` of that timeline is on disk (resuming at
    /// [`ResumePoint::start`]) or whose earlier bytes a previous timeline's file holds (a
    /// timeline switch point; they are copied, as `xlog.c: XLogInitNewTimeline` does).
    /// A segment whose last byte is written is synced, renamed to its final name and the
    /// directory synced.
    ///
    /// # Errors
    /// [`SegmentError::NotContiguous`], [`SegmentError::MidSegmentStart`],
    /// [`SegmentError::Overflow`], [`SegmentError::Io`].
    pub fn write(&mut self, tli: TimeLineId, start: Lsn, data: &[u8]) -> Result<(), SegmentError> {
        let overflow = || SegmentError::Overflow { start, len: data.len() };
        start.checked_add(data.len() as u64).ok_or_else(overflow)?;
        let (mut pos, mut rest) = (start, data);
        while !rest.is_empty() {
            let dst = self.spare(tli, pos)?;
            let n = dst.len().min(rest.len());
            dst[..n].copy_from_slice(&rest[..n]);
            self.filled(n)?;
            pos = pos + n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Where the next bytes of `tli`'s WAL at `pos` go, to be filled in place (by a socket
    /// read) and then counted with [`SegmentWriter::filled`]: a non-empty slice of the
    /// stage, ending at the segment's end at the latest. `pos` must be what
    /// [`SegmentWriter::write`] accepts as `start`.
    ///
    /// # Errors
    /// As [`SegmentWriter::write`].
    pub fn spare(&mut self, tli: TimeLineId, pos: Lsn) -> Result<&mut [u8], SegmentError> {
        self.check_position(tli, pos)?;
        self.segment_for(tli, pos)?;
        let off = u64::from(pos.segment_offset(self.seg_size));
        let seg_bytes = u64::from(self.seg_size.bytes());
        if self.stage.as_ref().is_some_and(|st| st.room(seg_bytes) == 0) {
            self.submit(false, false)?;
        }
        if self.stage.is_none() {
            let direct = self.current.as_ref().is_some_and(|c| c.file.is_direct());
            // A direct file is written in whole blocks: the stage starts at the block
            // holding `off`, whose earlier bytes are the new file's zeros.
            let base = if direct { off / BLOCK as u64 * BLOCK as u64 } else { off };
            let mut buf = self.io.buffer()?;
            let before = (off - base) as usize;
            buf[..before].fill(0);
            self.stage = Some(Stage { buf, base, len: before, out: before });
        }
        let st = self.stage.as_mut().expect("a stage was just made");
        debug_assert_eq!(st.base + st.len as u64, off, "the stage continues the data");
        let room = st.room(seg_bytes);
        Ok(&mut st.buf[st.len..st.len + room])
    }

    /// Counts `n` bytes filled into the slice [`SegmentWriter::spare`] gave (at most its
    /// length). A full stage goes to the I/O thread; a segment whose last byte this was is
    /// synced, renamed to its final name and the directory synced.
    ///
    /// # Errors
    /// [`SegmentError::Io`].
    pub fn filled(&mut self, n: usize) -> Result<(), SegmentError> {
        let seg_bytes = u64::from(self.seg_size.bytes());
        let Some(st) = self.stage.as_mut() else { return Ok(()) };
        let n = n.min(st.room(seg_bytes));
        st.len += n;
        self.written = self.written + n as u64;
        if self.written.segment_offset(self.seg_size) == 0 {
            self.complete_segment()?;
        } else if st.room(seg_bytes) == 0 {
            self.submit(false, false)?;
        }
        Ok(())
    }

    /// From now on, staged bytes are also handed out, in order and once each, as
    /// `(timeline, start, bytes)` pieces by [`SegmentWriter::take_ready`] when they go to
    /// the I/O thread (a full stage, a flush, a segment's end): zero-copy input for a
    /// decoder.
    pub fn collect_ready(&mut self) {
        self.collect_ready = true;
    }

    /// The pieces frozen since the last call (see [`SegmentWriter::collect_ready`]).
    pub fn take_ready(&mut self) -> Vec<(TimeLineId, Lsn, Bytes)> {
        std::mem::take(&mut self.ready)
    }

    /// fdatasyncs what was written since the last flush; returns the flushed position.
    /// With [`WriterOptions::sync`] off nothing is synced and the written position is
    /// returned, as pg_receivewal `--no-sync` reports it.
    ///
    /// # Errors
    /// [`SegmentError::Io`] if the sync fails (nothing more is then reported flushed).
    pub fn flush(&mut self) -> Result<Lsn, SegmentError> {
        // Caught up, the thread is idle and the write and sync are done right here.
        self.io.collect()?;
        self.submit(true, true)?;
        if let Some(cur) = self.current.as_mut() {
            if cur.dirty && self.opts.sync {
                self.io.sync(&cur.file, true)?;
            }
            cur.dirty = false;
        }
        self.io.wait_all()?;
        self.flushed = self.written;
        Ok(self.flushed)
    }

    /// Writes timeline `tli`'s history file through `<name>.tmp`, synced, renamed, the
    /// directory synced (receivelog.c: writeTimeLineHistoryFile).
    ///
    /// # Errors
    /// [`SegmentError::Io`].
    pub fn write_history(&mut self, tli: TimeLineId, content: &[u8]) -> Result<(), SegmentError> {
        let name = history_file_name(tli);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let f =
            File::create(&tmp).map_err(SegmentError::io("create timeline history file", &tmp))?;
        f.write_all_at(content, 0)
            .map_err(SegmentError::io("write timeline history file", &tmp))?;
        if self.opts.sync {
            f.sync_all().map_err(SegmentError::io(FSYNC_FILE, &tmp))?;
        }
        drop(f);
        std::fs::rename(&tmp, &path).map_err(SegmentError::rename(&tmp, &path))?;
        self.sync_dir()
    }

    /// Accepts `start` as the continuation of what was written or as a fresh stream.
    fn check_position(&mut self, tli: TimeLineId, start: Lsn) -> Result<(), SegmentError> {
        let same_tli = self.tli == Some(tli);
        if same_tli && self.written.is_valid() && start == self.written {
            return Ok(());
        }
        let fresh_timeline = !same_tli || !self.written.is_valid();
        if start.segment_offset(self.seg_size) != 0 && !fresh_timeline {
            return Err(SegmentError::NotContiguous { got: start, expected: self.written });
        }
        // A fresh stream: close what was open, keeping its name if incomplete.
        self.close_current()?;
        let previous = self.tli.filter(|&t| t != tli);
        if start.segment_offset(self.seg_size) != 0 {
            file::prepare_mid_segment(self, tli, previous, start)?;
        }
        self.tli = Some(tli);
        self.written = start;
        self.flushed = start;
        Ok(())
    }

    /// The open file of `tli`'s segment holding `pos`, opening it if needed.
    fn segment_for(&mut self, tli: TimeLineId, pos: Lsn) -> Result<&mut OpenSegment, SegmentError> {
        let segno = pos.segno(self.seg_size);
        let cur = match self.current.take() {
            Some(c) if c.tli == tli && c.segno == segno => c,
            other => {
                self.current = other;
                self.close_current()?;
                OpenSegment::open(self, tli, segno)?
            }
        };
        Ok(self.current.insert(cur))
    }

    /// The current segment was written to its end: sync, rename, sync the directory
    /// (walmethods.c: dir_close with CLOSE_NORMAL).
    fn complete_segment(&mut self) -> Result<(), SegmentError> {
        self.submit(false, true)?;
        let Some(cur) = self.current.take() else { return Ok(()) };
        if self.opts.sync {
            self.io.sync(&cur.file, true)?;
        }
        self.io.wait_all()?;
        if let Some(final_path) = cur.final_path() {
            std::fs::rename(cur.path(), &final_path)
                .map_err(SegmentError::rename(cur.path(), &final_path))?;
            self.sync_dir()?;
        }
        if self.opts.sync {
            self.flushed = self.written;
        }
        Ok(())
    }

    /// Closes the current segment without renaming it, syncing what was written to it.
    fn close_current(&mut self) -> Result<(), SegmentError> {
        self.submit(false, true)?;
        if let Some(cur) = self.current.take() {
            if cur.dirty && self.opts.sync {
                self.io.sync(&cur.file, true)?;
            }
        }
        self.io.wait_all()
    }

    /// Hands what is staged and not yet sent to the I/O thread (or writes it at once, with
    /// `inline`, if the thread is idle). With `keep`, staging goes on in a new buffer from
    /// the block being filled (a direct file gets that block again, fuller, at the next
    /// write-out); without, the stage ends.
    fn submit(&mut self, keep: bool, inline: bool) -> Result<(), SegmentError> {
        let Some(mut st) = self.stage.take() else { return Ok(()) };
        let Some(cur) = self.current.as_mut() else {
            self.io.give_back_mut(st.buf);
            return Ok(());
        };
        if st.len == st.out {
            if keep {
                self.stage = Some(st);
            } else {
                self.io.give_back_mut(st.buf);
            }
            return Ok(());
        }
        let seg_start = Lsn(cur.segno.0 * u64::from(self.seg_size.bytes()));
        let end = seg_start + st.base + st.len as u64;
        let direct = cur.file.is_direct();
        // What is written goes out frozen — for a direct file up to the end of its block,
        // whose bytes after the data are the new file's zeros; the rest of the buffer
        // (never handed out) stays to be staged into, so a flush after every small commit
        // does not take (and zero) a whole new buffer each time.
        let frozen_len = if direct { st.len.div_ceil(BLOCK) * BLOCK } else { st.len };
        st.buf[st.len..frozen_len].fill(0);
        let rest = st.buf.split_off(frozen_len);
        let frozen = st.buf.freeze();
        if self.collect_ready {
            let piece = frozen.slice(st.out..st.len);
            self.ready.push((cur.tli, seg_start + st.base + st.out as u64, piece));
        }
        if keep {
            // A direct file gets the block being filled again, fuller, at the next
            // write-out: its bytes so far start the next stage.
            let tail = if direct { st.len / BLOCK * BLOCK } else { st.len };
            let carried = st.len - tail;
            let mut next = if rest.len() > carried { rest } else { self.io.buffer()? };
            next[..carried].copy_from_slice(&frozen[tail..st.len]);
            self.stage =
                Some(Stage { buf: next, base: st.base + tail as u64, len: carried, out: carried });
        }
        let cur = self.current.as_mut().expect("the segment is open");
        cur.dirty = true;
        self.io.write(&cur.file, frozen, st.out..st.len, st.base, end, inline)
    }

    fn sync_dir(&self) -> Result<(), SegmentError> {
        if self.opts.sync {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn segment_name(&self, tli: TimeLineId, segno: XLogSegNo) -> String {
        walstream_protocol::lsn::segment_file_name(tli, segno, self.seg_size)
    }
}

impl Drop for SegmentWriter {
    /// What was staged is written (not synced) before the I/O thread ends, as a buffered
    /// write would be in the kernel.
    fn drop(&mut self) {
        let _ = self.submit(false, true);
    }
}

/// Gives every `.partial` segment in `dir` its own name, unless a file of that name is
/// already there: what a walreceiver left becomes an ordinary segment (full-size, zeros
/// past what was received), as PostgreSQL's walreceiver and pg_basebackup's streamed WAL
/// have them.
///
/// # Errors
/// [`SegmentError::Io`] when the directory cannot be read or a rename fails.
pub fn adopt_partial_segments(dir: &Path) -> Result<(), SegmentError> {
    for entry in std::fs::read_dir(dir).map_err(SegmentError::io("read directory", dir))? {
        let entry = entry.map_err(SegmentError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some(segment) = name.to_str().and_then(|n| n.strip_suffix(file::PARTIAL)) else {
            continue;
        };
        let target = dir.join(segment);
        if segment.len() == 24 && !target.exists() {
            std::fs::rename(entry.path(), &target)
                .map_err(SegmentError::rename(&entry.path(), &target))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
