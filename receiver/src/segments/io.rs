//! The segment writer's I/O thread and its staging buffers.
//!
//! Received WAL lands in a 1 MiB staging buffer of the open segment (the socket is read
//! straight into it, see `ReplicationConn::recv_wal`); full buffers, and the filled part
//! of one at a flush, are frozen into `Bytes` shared by the decoder and one I/O thread
//! that writes them in order and fdatasyncs on request, while the receiving thread goes
//! on receiving and decoding. After a flush, staging goes on in the part of the buffer
//! past what was frozen (a standby flushing after every small commit would otherwise take
//! and zero a whole buffer each time); a whole buffer is staged into again once nobody
//! holds it.
//! Segments the writer creates are written with `O_DIRECT` in whole 4 kB blocks (the
//! block being filled is written again, with more of it, at the next write-out), so WAL
//! does not pass through the page cache; a new segment's zeros are never written (its
//! blocks are reserved with `fallocate` and read as zeros).
//! Files that were already there (a `.partial` resumed, a complete segment streamed
//! again) and file systems without `O_DIRECT` get exact buffered writes instead.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::{Buf as _, Bytes, BytesMut};
use walstream_protocol::Lsn;

use super::SegmentError;

/// The alignment of direct writes: file offsets, lengths and memory.
pub(super) const BLOCK: usize = 4096;
/// The size of one staging buffer; divides every segment size (1 MB to 1 GB).
pub(super) const STAGE: usize = 1 << 20;
/// Staging buffers queued for the I/O thread before staging waits for it.
const BUFFERS: usize = 4;
/// Written buffers still held elsewhere (by the decoder, a relay's cache) that are kept
/// to be staged into again when let go; more are simply dropped.
const PENDING: usize = 16;

/// A segment file shared with the I/O thread.
#[derive(Debug)]
pub(super) struct SegFile {
    pub file: File,
    pub path: PathBuf,
    /// Written with `O_DIRECT` (cleared, for good, if the file system refuses it).
    direct: AtomicBool,
}

impl SegFile {
    /// Wraps `file`; `direct` asks for `O_DIRECT`, which is set if the file system
    /// accepts it (a new segment of zeros; never a file with data we did not write).
    pub fn new(file: File, path: PathBuf, direct: bool) -> Arc<SegFile> {
        let direct = direct && set_direct(&file, true).is_ok();
        Arc::new(SegFile { file, path, direct: AtomicBool::new(direct) })
    }

    pub fn is_direct(&self) -> bool {
        self.direct.load(Ordering::Relaxed)
    }

    /// Writes `buf[range]` at segment offset `base + range.start`. A direct file gets the
    /// whole blocks around it, the zeros after `range.end` included (a new file holds
    /// zeros there); `EINVAL` from the file system turns direct writes off.
    /// The caller zeroed `buf` from `range.end` to the end of its block.
    fn write(&self, buf: &[u8], range: Range<usize>, base: u64) -> io::Result<()> {
        if self.is_direct() {
            let start = range.start / BLOCK * BLOCK;
            let end = range.end.div_ceil(BLOCK) * BLOCK;
            match self.file.write_all_at(&buf[start..end], base + start as u64) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    set_direct(&self.file, false)?;
                    self.direct.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(&buf[range.clone()], base + range.start as u64)
    }
}

/// Sets or clears `O_DIRECT` on an open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this File owns; F_GETFL/F_SETFL take no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new [`STAGE`]-byte buffer aligned to [`BLOCK`] (advanced inside a slightly larger
/// allocation, so no unsafe code is needed).
fn new_buffer() -> BytesMut {
    let mut m = BytesMut::zeroed(STAGE + BLOCK);
    let off = m.as_ptr().align_offset(BLOCK);
    m.advance(off);
    m.truncate(STAGE);
    m
}

/// A written buffer nobody else holds, as a buffer to stage into again.
fn reclaim(b: Bytes) -> Result<BytesMut, Bytes> {
    let m = b.try_into_mut()?;
    if m.len() == STAGE && m.as_ptr().align_offset(BLOCK) == 0 {
        Ok(m)
    } else {
        Err(m.freeze())
    }
}

/// What is being staged for the open segment.
#[derive(Debug)]
pub(super) struct Stage {
    /// At most [`STAGE`] bytes (for a direct file a whole number of [`BLOCK`]s, aligned),
    /// the first `len` staged.
    pub buf: BytesMut,
    /// The segment offset of `buf[0]` (block-aligned for a direct file).
    pub base: u64,
    /// Bytes staged.
    pub len: usize,
    /// Bytes of `buf[..len]` already handed to the I/O thread.
    pub out: usize,
}

impl Stage {
    /// Room left in the buffer, within a segment of `seg_bytes`.
    pub fn room(&self, seg_bytes: u64) -> usize {
        let cap = (seg_bytes - self.base).min(self.buf.len() as u64) as usize;
        cap - self.len
    }
}

enum Job {
    Write { file: Arc<SegFile>, buf: Bytes, range: Range<usize>, base: u64, end: Lsn },
    Sync { file: Arc<SegFile> },
}

enum Done {
    Written { buf: Bytes, end: Lsn },
    Synced,
    Failed(SegmentError),
}

/// The I/O thread and what is in flight to it.
#[derive(Debug)]
pub(super) struct Io {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// Buffers to stage into.
    free: Vec<BytesMut>,
    /// Written buffers still held elsewhere, newest last.
    pending: Vec<Bytes>,
    /// Jobs sent and not answered.
    in_flight: usize,
    /// The end of what the thread has written into the kernel.
    pub written_out: Lsn,
    /// The first failure, returned by every later call.
    failed: Option<SegmentError>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Done")
    }
}

impl Io {
    pub fn start() -> Io {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("walstream-wal-writer".into())
            .spawn(move || io_thread(rx, tx))
            .expect("spawning the WAL writer thread");
        Io {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            free: Vec::new(),
            pending: Vec::new(),
            in_flight: 0,
            written_out: Lsn::INVALID,
            failed: None,
        }
    }

    /// A buffer to stage into: one let go of, else a new one, waiting for the thread
    /// first when [`BUFFERS`] are queued to it.
    pub fn buffer(&mut self) -> Result<BytesMut, SegmentError> {
        loop {
            self.collect()?;
            if let Some(b) = self.free.pop() {
                return Ok(b);
            }
            let mut still_held = Vec::new();
            for b in std::mem::take(&mut self.pending) {
                match reclaim(b) {
                    Ok(m) => self.give_back_mut(m),
                    Err(b) => still_held.push(b),
                }
            }
            self.pending = still_held;
            if let Some(b) = self.free.pop() {
                return Ok(b);
            }
            if self.in_flight < BUFFERS {
                return Ok(new_buffer());
            }
            self.wait_one()?;
        }
    }

    /// Writes `buf[range]` to `file` at segment offset `base + range.start`; `end` is the
    /// WAL position its last byte ends at. With `inline` and nothing queued, it is written
    /// here and now (a flush waits for it anyway: no hand-over to the thread and back);
    /// else it is queued.
    pub fn write(
        &mut self,
        file: &Arc<SegFile>,
        buf: Bytes,
        range: Range<usize>,
        base: u64,
        end: Lsn,
        inline: bool,
    ) -> Result<(), SegmentError> {
        self.job(Job::Write { file: file.clone(), buf, range, base, end }, inline)
    }

    /// fdatasyncs `file` after the writes before it: here and now with `inline` and nothing
    /// queued, else queued.
    pub fn sync(&mut self, file: &Arc<SegFile>, inline: bool) -> Result<(), SegmentError> {
        self.job(Job::Sync { file: file.clone() }, inline)
    }

    fn job(&mut self, job: Job, inline: bool) -> Result<(), SegmentError> {
        if !inline || self.in_flight > 0 {
            return self.send(job);
        }
        self.check()?;
        self.in_flight += 1;
        let answer = run(job);
        self.take(answer);
        self.check()
    }

    /// Waits until everything queued is done; the first failure is returned.
    pub fn wait_all(&mut self) -> Result<(), SegmentError> {
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        self.check()
    }

    /// Takes in what the thread has finished, without waiting.
    pub fn collect(&mut self) -> Result<(), SegmentError> {
        while self.in_flight > 0 {
            match self.done.try_recv() {
                Ok(d) => self.take(d),
                Err(_) => break,
            }
        }
        self.check()
    }

    fn send(&mut self, job: Job) -> Result<(), SegmentError> {
        self.check()?;
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        if !sent {
            return Err(thread_gone());
        }
        self.in_flight += 1;
        Ok(())
    }

    fn wait_one(&mut self) -> Result<(), SegmentError> {
        match self.done.recv() {
            Ok(d) => {
                self.take(d);
                self.check()
            }
            Err(_) => Err(thread_gone()),
        }
    }

    fn take(&mut self, d: Done) {
        self.in_flight -= 1;
        match d {
            Done::Written { buf, end } => {
                self.give_back(buf);
                self.written_out = self.written_out.max(end);
            }
            Done::Synced => {}
            Done::Failed(e) => {
                self.failed.get_or_insert(e);
            }
        }
    }

    fn check(&self) -> Result<(), SegmentError> {
        match &self.failed {
            None => Ok(()),
            Some(e) => Err(e.duplicate()),
        }
    }

    /// Takes back a frozen buffer the thread is done with (or that was not sent).
    pub fn give_back(&mut self, buf: Bytes) {
        match reclaim(buf) {
            Ok(m) => self.give_back_mut(m),
            Err(b) => {
                if self.pending.len() == PENDING {
                    self.pending.remove(0);
                }
                self.pending.push(b);
            }
        }
    }

    /// Takes back a buffer that was never frozen (more than [`BUFFERS`] spare ones are
    /// freed).
    pub fn give_back_mut(&mut self, buf: BytesMut) {
        if self.free.len() < BUFFERS {
            self.free.push(buf);
        }
    }
}

impl Drop for Io {
    /// What was queued is written before the thread ends.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn thread_gone() -> SegmentError {
    SegmentError::Io {
        op: "write WAL",
        path: PathBuf::new(),
        source: io::Error::other("the WAL writer thread is gone"),
    }
}

fn io_thread(jobs: Receiver<Job>, done: Sender<Done>) {
    let mut failed = false;
    while let Ok(job) = jobs.recv() {
        let answer = match job {
            // After a failure nothing more is written, so nothing later can look on disk.
            Job::Write { buf, .. } if failed => Done::Written { buf, end: Lsn::INVALID },
            Job::Sync { .. } if failed => Done::Synced,
            job => run(job),
        };
        failed |= matches!(answer, Done::Failed(_));
        if done.send(answer).is_err() {
            return;
        }
    }
}

/// fdatasync, its duration recorded for the command's `--metrics` recorder, if one is
/// installed.
fn timed_sync(file: &std::fs::File) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    let result = file.sync_data();
    metrics::histogram!("walstream_wal_fsync_duration_seconds", "writer" => "receiver")
        .record(started.elapsed().as_secs_f64());
    result
}

/// Does one job.
fn run(job: Job) -> Done {
    match job {
        Job::Write { file, buf, range, base, end } => {
            let len = range.len();
            match file.write(&buf, range, base) {
                Ok(()) => Done::Written { buf, end },
                Err(source) => {
                    Done::Failed(SegmentError::Write { len, path: file.path.clone(), source })
                }
            }
        }
        Job::Sync { file } => match timed_sync(&file.file) {
            Ok(()) => Done::Synced,
            Err(source) => Done::Failed(SegmentError::Io {
                op: super::FSYNC_FILE,
                path: file.path.clone(),
                source,
            }),
        },
    }
}
