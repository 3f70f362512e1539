//! The segment writer's I/O thread and its staging buffers.
//!
//! Received WAL is copied into a 1 MiB staging buffer of the open segment; full buffers,
//! and the filled part of one at a flush, go to one I/O thread that writes them in order
//! and fdatasyncs on request, while the receiving thread goes on receiving and decoding.
//! Segments the writer creates are written with `O_DIRECT` in whole 4 kB blocks (the
//! block being filled is written again, with more of it, at the next write-out), so WAL
//! does not pass through the page cache; the zeros of a new segment stay a sparse hole.
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

use walstream_protocol::Lsn;

use super::SegmentError;

/// The alignment of direct writes: file offsets, lengths and memory.
pub(super) const BLOCK: usize = 4096;
/// The size of one staging buffer; divides every segment size (1 MB to 1 GB).
pub(super) const STAGE: usize = 1 << 20;
/// Staging buffers per writer: one being filled, the others queued for the I/O thread.
const BUFFERS: usize = 4;

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
    fn write(&self, buf: &mut Buf, range: Range<usize>, base: u64) -> io::Result<()> {
        if self.is_direct() {
            let start = range.start / BLOCK * BLOCK;
            let end = range.end.div_ceil(BLOCK) * BLOCK;
            buf.bytes_mut()[range.end..end].fill(0);
            match self.file.write_all_at(&buf.bytes()[start..end], base + start as u64) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    set_direct(&self.file, false)?;
                    self.direct.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(&buf.bytes()[range.clone()], base + range.start as u64)
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

/// A [`STAGE`]-byte buffer aligned to [`BLOCK`] (inside a slightly larger allocation, so
/// no unsafe code is needed; moving it does not move its bytes).
#[derive(Debug)]
pub(super) struct Buf {
    mem: Vec<u8>,
    off: usize,
}

impl Buf {
    fn new() -> Buf {
        let mem = vec![0u8; STAGE + BLOCK];
        let off = mem.as_ptr().align_offset(BLOCK);
        Buf { mem, off }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.mem[self.off..self.off + STAGE]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.off..self.off + STAGE]
    }
}

/// What is being staged for the open segment.
#[derive(Debug)]
pub(super) struct Stage {
    pub buf: Buf,
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
        let cap = (seg_bytes - self.base).min(STAGE as u64) as usize;
        cap - self.len
    }
}

enum Job {
    Write { file: Arc<SegFile>, buf: Buf, range: Range<usize>, base: u64, end: Lsn },
    Sync { file: Arc<SegFile> },
}

enum Done {
    Written { buf: Buf, end: Lsn },
    Synced,
    Failed(SegmentError),
}

/// The I/O thread and what is in flight to it.
#[derive(Debug)]
pub(super) struct Io {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// Buffers back from the thread, ready to stage into.
    free: Vec<Buf>,
    /// Buffers not yet made (they are allocated on first use).
    unmade: usize,
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
            unmade: BUFFERS,
            in_flight: 0,
            written_out: Lsn::INVALID,
            failed: None,
        }
    }

    /// A buffer to stage into, waiting for the thread to give one back if all are queued.
    pub fn buffer(&mut self) -> Result<Buf, SegmentError> {
        self.collect()?;
        if let Some(b) = self.free.pop() {
            return Ok(b);
        }
        if self.unmade > 0 {
            self.unmade -= 1;
            return Ok(Buf::new());
        }
        while self.free.is_empty() {
            self.wait_one()?;
        }
        Ok(self.free.pop().expect("a buffer came back"))
    }

    /// Writes `buf[range]` to `file` at segment offset `base + range.start`; `end` is the
    /// WAL position its last byte ends at. With `inline` and nothing queued, it is written
    /// here and now (a flush waits for it anyway: no hand-over to the thread and back);
    /// else it is queued.
    pub fn write(
        &mut self,
        file: &Arc<SegFile>,
        buf: Buf,
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
                self.free.push(buf);
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
            Some(SegmentError::Io { op, path, source }) => Err(SegmentError::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            }),
            Some(other) => Err(SegmentError::Io {
                op: "write WAL",
                path: PathBuf::new(),
                source: io::Error::other(other.to_string()),
            }),
        }
    }

    /// Gives back a buffer that was not sent.
    pub fn give_back(&mut self, buf: Buf) {
        self.free.push(buf);
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

/// Does one job.
fn run(job: Job) -> Done {
    match job {
        Job::Write { file, mut buf, range, base, end } => match file.write(&mut buf, range, base) {
            Ok(()) => Done::Written { buf, end },
            Err(source) => {
                Done::Failed(SegmentError::Io { op: "write to", path: file.path.clone(), source })
            }
        },
        Job::Sync { file } => match file.file.sync_data() {
            Ok(()) => Done::Synced,
            Err(source) => {
                Done::Failed(SegmentError::Io { op: "fsync", path: file.path.clone(), source })
            }
        },
    }
}
