//! The WAL writer (`xlog.c: XLogInsertRecord`, `XLogFlush`, `XLogWrite`; `walwriter.c`):
//! records are inserted under a short mutex into an in-memory buffer. A commit that finds
//! no write in progress writes and fsyncs everything inserted so far itself, on its own
//! thread, as a PostgreSQL backend does in `XLogFlush` (no hand-off to another thread and
//! back in the commit's path); one that finds a write in progress asks the flusher thread
//! for the next one, so concurrent commits share one fsync (group commit). Background
//! flushes (full buffers, asynchronous commit) always go to the flusher thread.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use walstream_protocol::lsn::Xid;
use walstream_protocol::replication::TimestampTz;
use walstream_protocol::wal::page::XLP_FIRST_IS_OVERWRITE_CONTRECORD;
use walstream_protocol::wal::{Appended, EncoderConfig, RecordSpec, WalEncoder};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use super::records::{overwrite_contrecord, XLOG_SWITCH};
use super::recovery::TornRecord;
use super::segments::{wal_dir, SegmentFiles};
use super::XlogError;

/// Receives every flushed range of WAL, in order and contiguous, after it is durable and
/// before the flushed position is published.
pub type FlushHook = Box<dyn Fn(Lsn, Bytes) + Send + Sync>;

/// What a flush the caller does itself does with the caller's thread, on a multi-threaded
/// tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InlineFlush {
    /// Hand the worker's other tasks to another thread first (`block_in_place`), so other
    /// sessions do not wait behind this fsync.
    HandOff,
    /// Keep the worker through the fsync, as a PostgreSQL backend does: for a commit with
    /// no other transaction open beside it, whose hand-off (a thread woken to take the
    /// worker, and back) would cost its client more than it could save anyone else.
    Hold,
}

/// Zeros handed to the hook for the rest of a segment after `XLOG_SWITCH`.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// How the writer writes.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The data directory; segments go to `DIR/pg_wal`.
    pub dir: PathBuf,
    /// The system identifier written in long page headers.
    pub system_id: u64,
    /// The timeline being written.
    pub timeline: TimeLineId,
    /// The segment size.
    pub seg_size: WalSegSize,
    /// `fsync`: when false, WAL is written but never fsynced (tests only).
    pub fsync: bool,
    /// `wal_buffers`: past this many unwritten bytes an insert asks for a background write.
    pub wal_buffers: usize,
}

impl WriterConfig {
    /// A configuration with `fsync = on` and 16 MB of WAL buffers.
    pub fn new(dir: PathBuf, system_id: u64, timeline: TimeLineId, seg_size: WalSegSize) -> Self {
        WriterConfig { dir, system_id, timeline, seg_size, fsync: true, wal_buffers: 16 << 20 }
    }
}

/// Where writing starts: the end of valid WAL as recovery found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStart {
    /// The first byte to write (recovery's `EndOfLog`).
    pub start: Lsn,
    /// The last valid record, the next record's `xl_prev`.
    pub prev: Lsn,
    /// A record cut short by a crash that crossed a page; writing then starts at its
    /// missing page with an `XLOG_OVERWRITE_CONTRECORD` record.
    pub torn: Option<TornRecord>,
}

/// Bytes inserted and not yet written.
#[derive(Debug)]
enum Chunk {
    Data(Lsn, Bytes),
    /// The rest of a segment after `XLOG_SWITCH`: already zero on disk.
    Zeros(Lsn, u64),
}

#[derive(Debug)]
struct Insert {
    cfg: EncoderConfig,
    enc: WalEncoder,
    /// Bytes of segments left by `XLOG_SWITCH`, before the encoder's.
    pending: Vec<Chunk>,
}

impl Insert {
    fn take_all(&mut self) -> Vec<Chunk> {
        let mut out = std::mem::take(&mut self.pending);
        let (start, bytes) = self.enc.take();
        if !bytes.is_empty() {
            out.push(Chunk::Data(start, bytes));
        }
        out
    }

    fn unwritten(&self) -> u64 {
        self.enc.position() - self.enc.pending_start()
    }
}

#[derive(Debug, Default)]
struct Request {
    want: Lsn,
    shutdown: bool,
}

struct Shared {
    insert: Mutex<Insert>,
    /// The segment files; whoever holds this lock is the one writer (`WALWriteLock`).
    files: Mutex<SegmentFiles>,
    request: Mutex<Request>,
    wake: Condvar,
    flushed: watch::Sender<Lsn>,
    fsyncs: Arc<AtomicU64>,
    hook: Mutex<Option<FlushHook>>,
    failure: OnceLock<String>,
    wal_buffers: u64,
}

/// The WAL writer. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct WalWriter {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalWriter")
            .field("insert", &self.insert_position())
            .field("flush", &self.flush_position())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WalWriter {
    /// Opens the writer at `at` (`xlog.c: StartupXLOG`'s end of recovery). The tail of the
    /// segment holding `at.start` is zeroed; with a torn record, the
    /// `XLOG_OVERWRITE_CONTRECORD` record (time `now`) is written and flushed first, its
    /// page marked `XLP_FIRST_IS_OVERWRITE_CONTRECORD` (`CreateOverwriteContrecordRecord`).
    ///
    /// # Errors
    /// [`XlogError::BadStart`] for a start inside a page header or, with a torn record,
    /// not at a page boundary; [`XlogError::Io`] if the segment cannot be prepared.
    pub fn open(
        cfg: WriterConfig,
        at: WriteStart,
        now: TimestampTz,
    ) -> Result<WalWriter, XlogError> {
        let wal = wal_dir(&cfg.dir);
        std::fs::create_dir_all(&wal).map_err(XlogError::io("create directory", &wal))?;
        let fsyncs = Arc::new(AtomicU64::new(0));
        let mut files =
            SegmentFiles::new(wal, cfg.timeline, cfg.seg_size, cfg.fsync, fsyncs.clone());
        let ecfg = EncoderConfig {
            system_id: cfg.system_id,
            timeline: cfg.timeline,
            seg_size: cfg.seg_size,
        };
        let mut enc = WalEncoder::new(ecfg, at.start, at.prev)
            .map_err(|_| XlogError::BadStart(at.start, "inside a page header or not MAXALIGNed"))?;
        files.prepare_start(at.start)?;
        if let Some(torn) = at.torn {
            write_overwrite_contrecord(&mut enc, &mut files, torn, at.start, now)?;
        }
        let (flushed, _) = watch::channel(enc.position());
        let shared = Arc::new(Shared {
            insert: Mutex::new(Insert { cfg: ecfg, enc, pending: Vec::new() }),
            files: Mutex::new(files),
            request: Mutex::new(Request::default()),
            wake: Condvar::new(),
            flushed,
            fsyncs,
            hook: Mutex::new(None),
            failure: OnceLock::new(),
            wal_buffers: cfg.wal_buffers as u64,
        });
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("walwriter".into())
            .spawn(move || flusher(&s))
            .map_err(XlogError::io("start the WAL flusher thread", &cfg.dir))?;
        Ok(WalWriter { shared, flusher: Mutex::new(Some(handle)) })
    }

    /// Sets the hook that receives every flushed range from now on.
    pub fn on_flush(&self, hook: FlushHook) {
        *lock(&self.shared.hook) = Some(hook);
    }

    /// Inserts a record (`XLogInsert`): reserves its place and copies it into the WAL
    /// buffer. Nothing is durable until a [`WalWriter::flush`] covers `end_lsn`.
    ///
    /// # Errors
    /// [`XlogError::Encode`] for a record PostgreSQL would refuse;
    /// [`XlogError::WriterFailed`] / [`XlogError::ShutDown`] after a failure or shutdown.
    pub fn insert(&self, spec: &RecordSpec) -> Result<Appended, XlogError> {
        self.check_usable()?;
        let mut ins = lock(&self.shared.insert);
        let a = ins.enc.append(spec)?;
        let full = ins.unwritten() > self.shared.wal_buffers;
        drop(ins);
        if full {
            self.request_flush();
        }
        Ok(a)
    }

    /// Inserts `XLOG_SWITCH` (`xlog.c: RequestXLogSwitch`): the rest of the segment is
    /// skipped. `None` at the very start of a segment, where PostgreSQL writes nothing.
    ///
    /// # Errors
    /// As [`WalWriter::insert`].
    pub fn insert_switch(&self) -> Result<Option<Appended>, XlogError> {
        self.check_usable()?;
        let mut ins = lock(&self.shared.insert);
        let seg = u64::from(ins.cfg.seg_size.bytes());
        if ins.enc.position().0 % seg == 0 {
            return Ok(None);
        }
        let spec = RecordSpec { rmid: 0, info: XLOG_SWITCH, xid: Xid(0), ..Default::default() };
        let mut a = ins.enc.append(&spec)?;
        let pos = ins.enc.position();
        let next = Lsn(pos.0.div_ceil(seg) * seg);
        let (start, bytes) = ins.enc.take();
        ins.pending.push(Chunk::Data(start, bytes));
        if next > pos {
            ins.pending.push(Chunk::Zeros(pos, next - pos));
        }
        ins.enc = WalEncoder::new(ins.cfg, next, a.lsn)?;
        a.next_lsn = next;
        Ok(Some(a))
    }

    /// `pg_switch_wal()`: inserts `XLOG_SWITCH` and flushes to the next segment; returns
    /// the end of the switch record (or the insert position if nothing was written).
    ///
    /// # Errors
    /// As [`WalWriter::insert`] and [`WalWriter::flush`].
    pub async fn switch(&self) -> Result<Lsn, XlogError> {
        match self.insert_switch()? {
            Some(a) => {
                self.flush(a.next_lsn).await?;
                Ok(a.end_lsn)
            }
            None => Ok(self.insert_position()),
        }
    }

    /// Waits until WAL up to `upto` is on disk (`XLogFlush`); returns the flushed position.
    /// The flush happens or is requested when this is called, not when the future is first
    /// polled: if no write is in progress the caller writes and fsyncs everything inserted
    /// itself, right here (on a multi-threaded tokio runtime inside `block_in_place`, so
    /// the worker's other tasks move on); otherwise the flusher thread's next write, shared
    /// by every waiter, is asked for. `upto` beyond the insert position is taken as the
    /// insert position.
    ///
    /// # Errors
    /// [`XlogError::WriterFailed`] if writing or syncing failed (sticky).
    pub fn flush(
        &self,
        upto: Lsn,
    ) -> impl Future<Output = Result<Lsn, XlogError>> + Send + 'static {
        self.flush_as(upto, InlineFlush::HandOff)
    }

    /// [`WalWriter::flush`], with a flush done here treating the thread as `how` says.
    ///
    /// # Errors
    /// [`XlogError::WriterFailed`] if writing or syncing failed (sticky).
    pub fn flush_as(
        &self,
        upto: Lsn,
        how: InlineFlush,
    ) -> impl Future<Output = Result<Lsn, XlogError>> + Send + 'static {
        let shared = self.shared.clone();
        let mut rx = shared.flushed.subscribe();
        let target = upto.min(self.insert_position());
        if *rx.borrow() < target && !shared.flush_here(target, how) {
            shared.request(target);
        }
        async move {
            let failed = || shared.failure.get().is_some();
            let res = rx.wait_for(|v| *v >= target || failed()).await.map(|v| *v);
            match (shared.failure.get(), res) {
                (_, Ok(v)) if v >= target => Ok(v),
                (Some(e), _) => Err(XlogError::WriterFailed(e.clone())),
                _ => Err(XlogError::ShutDown),
            }
        }
    }

    /// `XLogBackgroundFlush`: asks for everything inserted to be written and synced,
    /// without waiting (asynchronous commit, full buffers).
    pub fn request_flush(&self) {
        let target = self.insert_position();
        if self.flush_position() < target {
            self.shared.request(target);
        }
    }

    /// The WAL writer process for `synchronous_commit = off` (`walwriter.c`): every
    /// `delay` (`wal_writer_delay`) requests a background flush, until `cancel`.
    pub async fn run_wal_writer(self: Arc<Self>, delay: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.request_flush(),
            }
        }
    }

    /// The flushed position, published after each flush (walsenders wake on it).
    pub fn flushed(&self) -> watch::Receiver<Lsn> {
        self.shared.flushed.subscribe()
    }

    /// Where the next record will be inserted.
    pub fn insert_position(&self) -> Lsn {
        lock(&self.shared.insert).enc.position()
    }

    /// The start of the last record inserted (the next record's `xl_prev`).
    pub fn prev_record(&self) -> Lsn {
        lock(&self.shared.insert).enc.prev_lsn()
    }

    /// The timeline WAL is written on.
    pub fn timeline(&self) -> TimeLineId {
        lock(&self.shared.insert).cfg.timeline
    }

    /// WAL up to here is durable.
    pub fn flush_position(&self) -> Lsn {
        *self.shared.flushed.borrow()
    }

    /// How many fsyncs of WAL the writer has issued.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Flushes everything inserted and stops the flusher thread; later calls fail with
    /// [`XlogError::ShutDown`]. Blocks until the flusher is done.
    ///
    /// # Errors
    /// [`XlogError::WriterFailed`] if the last flush failed.
    pub fn shutdown(&self) -> Result<Lsn, XlogError> {
        {
            let mut r = lock(&self.shared.request);
            r.want = r.want.max(self.insert_position());
            r.shutdown = true;
        }
        self.shared.wake.notify_all();
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
        match self.shared.failure.get() {
            Some(e) => Err(XlogError::WriterFailed(e.clone())),
            None => Ok(self.flush_position()),
        }
    }

    fn check_usable(&self) -> Result<(), XlogError> {
        if let Some(e) = self.shared.failure.get() {
            return Err(XlogError::WriterFailed(e.clone()));
        }
        if lock(&self.shared.request).shutdown {
            return Err(XlogError::ShutDown);
        }
        Ok(())
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl Shared {
    /// Writes and syncs everything inserted on this thread if no one else is writing
    /// (`XLogFlush` getting `WALWriteLock` at once); false if someone is.
    fn flush_here(&self, target: Lsn, how: InlineFlush) -> bool {
        let Ok(mut files) = self.files.try_lock() else { return false };
        if *self.flushed.borrow() >= target || self.failure.get().is_some() {
            return true;
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread && how == InlineFlush::HandOff {
            tokio::task::block_in_place(|| self.write_inserted(&mut files));
        } else {
            self.write_inserted(&mut files);
        }
        true
    }

    /// `XLogWrite` under `WALWriteLock`: writes and syncs everything inserted, hands the
    /// bytes to the hook, publishes the new flushed position. False once the writer has
    /// failed (the failure is recorded and every waiter woken).
    fn write_inserted(&self, files: &mut SegmentFiles) -> bool {
        if self.failure.get().is_some() {
            return false;
        }
        let chunks = lock(&self.insert).take_all();
        match write_chunks(files, &chunks) {
            Ok(Some(end)) => {
                if let Some(hook) = lock(&self.hook).as_ref() {
                    hand_to_hook(hook, &chunks);
                }
                self.flushed.send_replace(end);
                true
            }
            Ok(None) => true,
            Err(e) => {
                let _ = self.failure.set(e.to_string());
                tracing::error!("WAL writer failed: {e}");
                self.flushed.send_modify(|_| {});
                false
            }
        }
    }

    fn request(&self, target: Lsn) {
        let mut r = lock(&self.request);
        if target > r.want {
            r.want = target;
            drop(r);
            self.wake.notify_one();
        }
    }
}

/// Writes the overwrite-contrecord record at the missing page and syncs it.
fn write_overwrite_contrecord(
    enc: &mut WalEncoder,
    files: &mut SegmentFiles,
    torn: TornRecord,
    start: Lsn,
    now: TimestampTz,
) -> Result<(), XlogError> {
    if start.page_offset() != 0 || start != torn.missing_contrec {
        return Err(XlogError::BadStart(
            start,
            "a torn record's missing page is where writing starts",
        ));
    }
    enc.append(&overwrite_contrecord(torn.aborted, now))?;
    let (at, bytes) = enc.take();
    let mut page = bytes.to_vec();
    // The encoder wrote this page's header; mark it as PostgreSQL does.
    let info = u16::from_le_bytes([page[2], page[3]]) | XLP_FIRST_IS_OVERWRITE_CONTRECORD;
    page[2..4].copy_from_slice(&info.to_le_bytes());
    files.write(at, &page)?;
    files.sync()
}

/// The flusher thread: waits for a request, then writes as [`Shared::write_inserted`].
fn flusher(shared: &Shared) {
    loop {
        {
            let mut r = lock(&shared.request);
            loop {
                if r.want > *shared.flushed.borrow() {
                    break;
                }
                if r.shutdown {
                    return;
                }
                r = shared.wake.wait(r).unwrap_or_else(|p| p.into_inner());
            }
        }
        let mut files = lock(&shared.files);
        if !shared.write_inserted(&mut files) {
            return;
        }
        // What was asked for may have been written already (by a committing session, or
        // nothing was inserted past it): forget requests the flushed position covers.
        let flushed = *shared.flushed.borrow();
        let mut r = lock(&shared.request);
        if r.want <= flushed {
            r.want = flushed;
        }
    }
}

/// `XLogWrite`: writes the chunks and fsyncs; the end of the last chunk, if any.
fn write_chunks(files: &mut SegmentFiles, chunks: &[Chunk]) -> Result<Option<Lsn>, XlogError> {
    let mut end = None;
    for c in chunks {
        end = Some(match c {
            Chunk::Data(start, bytes) => {
                files.write(*start, bytes)?;
                *start + bytes.len() as u64
            }
            Chunk::Zeros(start, len) => *start + *len,
        });
    }
    files.sync()?;
    Ok(end)
}

fn hand_to_hook(hook: &FlushHook, chunks: &[Chunk]) {
    for c in chunks {
        match c {
            Chunk::Data(start, bytes) => hook(*start, bytes.clone()),
            Chunk::Zeros(start, len) => {
                let mut at = 0;
                while at < *len {
                    let n = (len - at).min(ZEROS.len() as u64) as usize;
                    hook(*start + at, Bytes::from_static(&ZEROS[..n]));
                    at += n as u64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use walstream_protocol::lsn::Xid;
    use walstream_protocol::{Lsn, WalSegSize};

    use super::{FlushHook, InlineFlush, WalWriter};
    use crate::startup::{open_database, StartOptions};
    use crate::xlog::{bootstrap, records};

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    type Seen = Arc<Mutex<Vec<(Lsn, usize)>>>;

    /// A fresh data directory's writer (fsync on: the count of fsyncs is the point) and
    /// every range its hook was handed.
    fn writer(dir: &std::path::Path) -> (Arc<WalWriter>, Seen) {
        bootstrap(dir, WalSegSize::new(16 << 20).unwrap(), now()).unwrap();
        let db = open_database(dir, StartOptions { fsync: true }, now()).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let hook: FlushHook =
            Box::new(move |start, bytes| s.lock().unwrap().push((start, bytes.len())));
        db.writer.on_flush(hook);
        (db.writer.clone(), seen)
    }

    fn commit_record(w: &WalWriter, xid: u32) -> Lsn {
        let time = walstream_protocol::replication::TimestampTz(1);
        w.insert(&records::commit(Xid(xid), time)).unwrap().end_lsn
    }

    /// The hook saw one contiguous run of WAL ending at the flushed position.
    fn assert_contiguous(seen: &[(Lsn, usize)], end: Lsn) {
        for pair in seen.windows(2) {
            assert_eq!(pair[0].0 .0 + pair[0].1 as u64, pair[1].0 .0, "{seen:?}");
        }
        let (last, len) = seen.last().copied().unwrap();
        assert_eq!(Lsn(last.0 + len as u64), end);
    }

    #[test]
    fn a_lone_commit_flushes_on_its_own_thread_with_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let (w, seen) = writer(dir.path());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let before = w.fsync_count();
        let end = commit_record(&w, 1000);
        // The flush is done when `flush` returns, before its future is polled: this thread
        // wrote it (the flusher thread would still be waking up).
        let _guard = rt.enter();
        let fut = w.flush(end);
        assert!(w.flush_position() >= end);
        assert_eq!(w.fsync_count(), before + 1);
        assert!(rt.block_on(fut).unwrap() >= end);
        assert_contiguous(&seen.lock().unwrap(), w.flush_position());
        // Already durable: no second fsync.
        rt.block_on(w.flush(end)).unwrap();
        assert_eq!(w.fsync_count(), before + 1);
    }

    #[test]
    fn a_commit_that_holds_its_worker_flushes_inline_too() {
        let dir = tempfile::tempdir().unwrap();
        let (w, seen) = writer(dir.path());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let w2 = w.clone();
        let (before, after, flushed) = rt.block_on(async move {
            tokio::spawn(async move {
                let before = w2.fsync_count();
                let end = commit_record(&w2, 1000);
                let fut = w2.flush_as(end, InlineFlush::Hold);
                let after = (w2.fsync_count(), w2.flush_position() >= end);
                (before, after, fut.await.unwrap() >= end)
            })
            .await
            .unwrap()
        });
        assert_eq!(after, (before + 1, true), "flushed by the caller, once");
        assert!(flushed);
        assert_contiguous(&seen.lock().unwrap(), w.flush_position());
    }

    #[test]
    fn concurrent_commits_all_become_durable_in_order_sharing_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (w, seen) = writer(dir.path());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let before = w.fsync_count();
        let next = Arc::new(AtomicU64::new(1000));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (w, next) = (w.clone(), next.clone());
                rt.spawn(async move {
                    for _ in 0..50 {
                        let xid = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let end = commit_record(&w, xid as u32);
                        let flushed = w.flush(end).await.unwrap();
                        assert!(flushed >= end);
                        assert!(w.flush_position() >= end);
                    }
                })
            })
            .collect();
        rt.block_on(async {
            for t in tasks {
                t.await.unwrap();
            }
        });
        let fsyncs = w.fsync_count() - before;
        assert!((1..=400).contains(&fsyncs), "{fsyncs} fsyncs for 400 commits");
        assert_eq!(w.flush_position(), w.insert_position());
        assert_contiguous(&seen.lock().unwrap(), w.flush_position());
    }

    #[test]
    fn a_current_thread_runtime_flushes_too() {
        let dir = tempfile::tempdir().unwrap();
        let (w, seen) = writer(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for xid in 1000..1010 {
            let end = commit_record(&w, xid);
            assert!(rt.block_on(w.flush(end)).unwrap() >= end);
        }
        assert_contiguous(&seen.lock().unwrap(), w.flush_position());
    }
}
