//! Streaming from a primary (`replication/walreceiver.c`, `bin/pg_basebackup/receivelog.c`):
//! connect, check the system, fetch missing timeline histories, START_REPLICATION from what
//! is on disk, write and flush and apply what arrives, report positions, follow timeline
//! switches, and reconnect with a capped backoff after any failure.
//!
//! Positions only move forward and always satisfy write ≥ flush ≥ apply; flush is only ever
//! a position that is on disk, and nothing past a corrupt record is reported.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use walstream_protocol::lsn::history_file_name;
use walstream_protocol::replication::{
    parse_server_copy_data, quote_ident, IdentifySystem, ServerCopyData, StandbyStatusUpdate,
    TimestampTz,
};
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::wire::ReplicationMode;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use crate::apply::{Apply, ApplyPipeline};
use crate::conn::{
    ConnError, CopyEvent, ProtocolViolation, ReplicationConn, StartOutcome, WalEvent, WalSink,
};
use crate::conninfo::ConnInfo;
use crate::segments::SegmentWriter;

/// How a stream behaves.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Where to connect.
    pub conninfo: ConnInfo,
    /// `START_REPLICATION SLOT name`.
    pub slot: Option<String>,
    /// `wal_receiver_status_interval` / `--status-interval` (0: only when asked).
    pub status_interval: Duration,
    /// `wal_receiver_timeout` (0: none).
    pub receiver_timeout: Duration,
    /// `--synchronous`: flush after every write and report at once.
    pub synchronous: bool,
    /// Report the flush position (pg_receivewal does only with a slot or `--synchronous`;
    /// a walreceiver always does).
    pub report_flush: bool,
    /// Stop once WAL past this position has been received (`-E`).
    pub endpos: Option<Lsn>,
    /// Do not reconnect after an error (`-n`).
    pub no_loop: bool,
    /// `hot_standby_feedback`: send `h` with the applier's xmin, at most once per status
    /// interval (walreceiver.c: XLogWalRcvSendHSFeedback).
    pub hot_standby_feedback: bool,
}

/// What the receiver has done, for progress display and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    /// Timeline being received.
    pub tli: TimeLineId,
    /// Written up to here.
    pub write: Lsn,
    /// On disk up to here.
    pub flush: Lsn,
    /// Applied up to here.
    pub apply: Lsn,
    /// The server's last reported WAL end.
    pub server_end: Lsn,
}

impl Default for Positions {
    fn default() -> Self {
        Positions {
            tli: TimeLineId(1),
            write: Lsn::INVALID,
            flush: Lsn::INVALID,
            apply: Lsn::INVALID,
            server_end: Lsn::INVALID,
        }
    }
}

/// Told about WAL as it is written and flushed: how a relay serves downstream standbys
/// from memory and wakes them as soon as WAL is on disk. Called on the receiving task;
/// keep it quick.
pub trait WalObserver: Send + Sync {
    /// The upstream system was identified (every connection).
    fn identified(&self, _system_id: u64, _tli: TimeLineId) {}
    /// `data` (one XLogData's bytes, shared, not copied) was written at `start` on `tli`.
    fn written(&self, _tli: TimeLineId, _start: Lsn, _data: &Bytes) {}
    /// WAL of `tli` is on disk up to `flushed`.
    fn flushed(&self, _tli: TimeLineId, _flushed: Lsn) {}
}

/// Why streaming stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The connection failed (transient ones are retried unless `no_loop`).
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// Writing segments failed.
    #[error(transparent)]
    Segments(#[from] crate::segments::SegmentError),
    /// The WAL did not verify: streaming stops at the record before.
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    /// The server is another database system (walreceiver.c).
    #[error("database system identifier differs between the primary and standby")]
    SystemIdMismatch {
        /// The primary's identifier.
        primary: u64,
        /// Ours (from the segments on disk or an earlier connection).
        ours: u64,
    },
    /// The server broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolViolation),
    /// `wal_receiver_timeout` passed in silence.
    #[error("terminating walreceiver due to timeout")]
    Timeout,
    /// The primary ended the stream (`COPY 0` at its shutdown).
    #[error("replication terminated by primary server")]
    TerminatedByPrimary,
}

impl ReceiverError {
    /// Whether the server refused something (an ERROR or FATAL it sent).
    pub fn is_server(&self) -> bool {
        matches!(self, ReceiverError::Conn(e) if e.server_fields().is_some())
    }

    /// Whether this is a failed local file operation that pg_receivewal logs and retries
    /// after a new connection ([`crate::segments::SegmentError::is_retried_file_error`]).
    pub fn is_retried_file_error(&self) -> bool {
        matches!(self, ReceiverError::Segments(e) if e.is_retried_file_error())
    }

    /// Whether a new connection may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ReceiverError::Conn(e) => e.is_transient(),
            ReceiverError::Timeout | ReceiverError::TerminatedByPrimary => true,
            _ => false,
        }
    }
}

/// How [`Receiver::run`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// WAL past the end position was received (`-E`).
    EndPos(Lsn),
    /// Asked to stop.
    Stopped,
}

/// Events a receiver counts, for metrics: read them while it runs.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Streams that failed and were retried.
    pub reconnects: std::sync::atomic::AtomicU64,
    /// Corrupt records found (each ends a stream).
    pub corruption: std::sync::atomic::AtomicU64,
    /// WAL bytes received in XLogData messages.
    pub received_bytes: std::sync::atomic::AtomicU64,
    /// CopyData messages received (XLogData and keepalives).
    pub messages: std::sync::atomic::AtomicU64,
}

impl StreamCounters {
    fn received(&self, wal_bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.messages.fetch_add(1, Relaxed);
        self.received_bytes.fetch_add(wal_bytes, Relaxed);
    }
}

/// The state of one receiving process.
pub struct Receiver<A: Apply> {
    opts: StreamOptions,
    writer: SegmentWriter,
    applier: A,
    pipeline: Option<ApplyPipeline>,
    system_id: Option<u64>,
    /// Where the next stream starts: timeline and position.
    next: Option<(TimeLineId, Lsn)>,
    reported: Positions,
    positions: watch::Sender<Positions>,
    observer: Option<std::sync::Arc<dyn WalObserver>>,
    /// The timeline being written.
    writing_tli: TimeLineId,
    /// Whether a connection has succeeded (pg_receivewal retries server errors after that).
    connected: bool,
    counters: std::sync::Arc<StreamCounters>,
}

/// The first retry comes this soon; then the wait doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What one copy loop ended with.
enum CopyEnd {
    /// The server ended the timeline: go on with the next one.
    NextTimeline(TimeLineId, Lsn),
    /// Done for good.
    Finished(StreamEnd),
}

impl<A: Apply> Receiver<A> {
    /// A receiver writing into `writer` and applying through `applier`.
    pub fn new(opts: StreamOptions, mut writer: SegmentWriter, applier: A) -> Self {
        writer.collect_ready();
        Receiver {
            opts,
            writer,
            applier,
            pipeline: None,
            system_id: None,
            next: None,
            reported: Positions::default(),
            positions: watch::Sender::new(Positions::default()),
            observer: None,
            writing_tli: TimeLineId(1),
            connected: false,
            counters: std::sync::Arc::default(),
        }
    }

    /// Starts streaming at `lsn` of `tli`, where a record begins (a standby's replay
    /// position, as the startup process asks its walreceiver, `RequestXLogStreaming`),
    /// instead of where the directory's segments end; records are applied from there.
    /// `system_id` is the standby's own: a primary with another is refused.
    pub fn start_at(mut self, tli: TimeLineId, lsn: Lsn, system_id: u64) -> Self {
        self.next = Some((tli, lsn));
        let mut p = ApplyPipeline::at_record(lsn, self.writer.seg_size(), tli);
        p.set_system_id(system_id);
        self.pipeline = Some(p);
        self.system_id = Some(system_id);
        self
    }

    /// Tells `observer` about every write and flush.
    pub fn with_observer(mut self, observer: std::sync::Arc<dyn WalObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The segment directory's writer (its directory, segment size, positions).
    pub fn writer(&self) -> &SegmentWriter {
        &self.writer
    }

    /// A watch of the positions last reported to the server.
    pub fn positions(&self) -> watch::Receiver<Positions> {
        self.positions.subscribe()
    }

    /// Its event counters (shared: they move while it runs).
    pub fn counters(&self) -> std::sync::Arc<StreamCounters> {
        self.counters.clone()
    }

    /// Connects with `conninfo` from the next connection on (a reloaded
    /// `primary_conninfo`).
    pub fn set_conninfo(&mut self, conninfo: ConnInfo) {
        self.opts.conninfo = conninfo;
    }

    /// The applier.
    pub fn applier(&self) -> &A {
        &self.applier
    }

    /// The applier, to change (a standby's last restartpoint after streaming stopped).
    pub fn applier_mut(&mut self) -> &mut A {
        &mut self.applier
    }

    /// Forgets what was open, after a local file error: the next [`Receiver::run`]
    /// starts with a fresh writer where the files on disk end, as a new process would
    /// (pg_receivewal's next `StreamLog`: `FindStreamingStart`) — but no later than the
    /// segment of the last flush, so that a segment whose file was removed under the
    /// writer is streamed again rather than skipped. The decoder keeps its place and
    /// skips the WAL streamed again.
    ///
    /// # Errors
    /// [`ReceiverError::Segments`] when the directory cannot be opened or read again.
    pub fn restart_from_disk(&mut self) -> Result<(), ReceiverError> {
        let flushed = self.writer.flushed();
        self.writer.reopen()?;
        let seg = self.writer.seg_size();
        let on_disk = self.writer.resume_point()?.map(|r| (r.tli, r.start));
        let streamed = flushed.is_valid().then(|| (self.writing_tli, flushed.segment_start(seg)));
        self.next = match (on_disk, streamed) {
            (Some(disk), Some(flush)) => Some(if flush.1 < disk.1 { flush } else { disk }),
            (disk, flush) => disk.or(flush),
        };
        Ok(())
    }

    /// The applier, once streaming is over (a standby being promoted goes on from it).
    pub fn into_applier(self) -> A {
        self.applier
    }

    /// Streams until the end position, `cancel`, or an error that is not transient (or any
    /// error with `no_loop`); reconnects after the others with a capped backoff.
    ///
    /// # Errors
    /// The error that ended it.
    pub async fn run(&mut self, cancel: &CancellationToken) -> Result<StreamEnd, ReceiverError> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(StreamEnd::Stopped),
                r = self.connect_and_stream(cancel) => r,
            };
            match result {
                Ok(end) => return Ok(end),
                // pg_receivewal.c: once a connection has succeeded, a failed stream is
                // retried, a server ERROR too (a slot still held by a dying walsender is
                // freed, WAL may come back); a first connection that fails, local
                // failures and a different system are not.
                Err(e)
                    if self.opts.no_loop
                        || !(e.is_transient() || self.connected && e.is_server()) =>
                {
                    return Err(e)
                }
                Err(e) => {
                    warn!("{e}; reconnecting");
                    self.counters.reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if started.elapsed() > Duration::from_secs(5) {
                        backoff = FIRST_BACKOFF;
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(StreamEnd::Stopped),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One connection: identify, then stream timeline after timeline.
    async fn connect_and_stream(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<StreamEnd, ReceiverError> {
        let mut conn =
            ReplicationConn::connect(&self.opts.conninfo, ReplicationMode::Physical).await?;
        let IdentifySystem { systemid: sysid, timeline: server_tli, xlogpos: server_pos, .. } =
            identify_system(&mut conn).await?;
        self.check_system(sysid)?;
        self.connected = true;
        if let Some(o) = &self.observer {
            o.identified(sysid, server_tli);
        }
        let (mut tli, mut start) = match self.next {
            Some(next) => next,
            None => self.first_start(&mut conn, server_tli, server_pos).await?,
        };
        loop {
            self.fetch_histories(&mut conn, tli, server_tli).await?;
            let seg = self.writer.seg_size();
            start = start.segment_start(seg);
            self.next = Some((tli, start));
            let sql = match &self.opts.slot {
                Some(slot) => format!(
                    "START_REPLICATION SLOT {} {start} TIMELINE {}",
                    quote_ident(slot),
                    tli.0
                ),
                None => format!("START_REPLICATION {start} TIMELINE {}", tli.0),
            };
            info!("starting log streaming at {start} (timeline {})", tli.0);
            let end = match conn.start_copy_both(&sql).await? {
                StartOutcome::CopyBoth => {
                    self.reported_from(start);
                    self.copy_loop(&mut conn, tli, start, cancel).await?
                }
                StartOutcome::Result(r) => match r.next_timeline()? {
                    Some((next, pos)) => CopyEnd::NextTimeline(next, pos),
                    None => return Err(ProtocolViolation::NoStream.into()),
                },
            };
            match end {
                CopyEnd::Finished(end) => {
                    conn.terminate().await;
                    return Ok(end);
                }
                CopyEnd::NextTimeline(next, pos) => {
                    info!("switched to timeline {} at {pos}", next.0);
                    self.flush_and_apply()?;
                    if let Some(p) = self.pipeline.as_mut() {
                        p.switch_timeline(next, pos)?;
                    }
                    tli = next;
                    start = pos;
                    self.next = Some((tli, pos.segment_start(seg)));
                }
            }
        }
    }

    /// A stream starting at `start` reports it as written (and flushed) before anything
    /// arrives, as pg_receivewal does (`receivelog.c`: `blockpos` and `lastFlushPosition`
    /// begin at the start point): a walsender that is shutting down waits until the
    /// standby's reported position equals what it sent (`WalSndDone`), and with nothing
    /// to send that is the start point, never 0/0.
    fn reported_from(&mut self, start: Lsn) {
        let p = &mut self.reported;
        p.write = p.write.max(start);
        if self.opts.report_flush {
            p.flush = p.flush.max(start);
        }
    }

    /// walreceiver.c: the system identifier must stay the same across connections.
    fn check_system(&mut self, sysid: u64) -> Result<(), ReceiverError> {
        if self.system_id.is_none() {
            self.system_id = self.writer.resume_point()?.and_then(|r| r.system_id);
        }
        match self.system_id {
            Some(ours) if ours != sysid => {
                Err(ReceiverError::SystemIdMismatch { primary: sysid, ours })
            }
            _ => {
                self.system_id = Some(sysid);
                Ok(())
            }
        }
    }

    /// Where the first stream starts: what is on disk, else the slot's restart_lsn, else
    /// the server's position (pg_receivewal.c: FindStreamingStart, then the slot, then
    /// IDENTIFY_SYSTEM), rounded down to a segment start by the caller.
    async fn first_start(
        &mut self,
        conn: &mut ReplicationConn,
        server_tli: TimeLineId,
        server_pos: Lsn,
    ) -> Result<(TimeLineId, Lsn), ReceiverError> {
        if let Some(r) = self.writer.resume_point()? {
            return Ok((r.tli, r.start));
        }
        if let Some(slot) = &self.opts.slot {
            let r =
                conn.simple_query(&format!("READ_REPLICATION_SLOT {}", quote_ident(slot))).await?;
            if let (Some(lsn), Some(tli)) = (r.get_text(0, 1), r.get_text(0, 2)) {
                if let (Ok(lsn), Ok(tli)) = (lsn.parse::<Lsn>(), tli.parse::<u32>()) {
                    return Ok((TimeLineId(tli), lsn));
                }
            }
        }
        Ok((server_tli, server_pos))
    }

    /// TIMELINE_HISTORY for each timeline from `tli` to the server's whose file is missing.
    async fn fetch_histories(
        &mut self,
        conn: &mut ReplicationConn,
        tli: TimeLineId,
        server_tli: TimeLineId,
    ) -> Result<(), ReceiverError> {
        for n in tli.0.max(2)..=server_tli.0.max(tli.0) {
            let n = TimeLineId(n);
            if self.writer.dir().join(history_file_name(n)).exists() {
                continue;
            }
            let r = conn.simple_query(&format!("TIMELINE_HISTORY {}", n.0)).await?;
            let content = r.rows.first().and_then(|row| row.get(1)).cloned().flatten();
            let Some(content) = content else {
                return Err(ProtocolViolation::NoHistoryFile(n.0).into());
            };
            TimelineHistory::parse(n, &content).map_err(ProtocolViolation::History)?;
            self.writer.write_history(n, &content)?;
        }
        Ok(())
    }

    /// Fdatasyncs what was written and applies what decoded.
    fn flush_and_apply(&mut self) -> Result<(), ReceiverError> {
        let flushed = self.writer.flush()?;
        self.decode_ready()?;
        if let Some(o) = &self.observer {
            // Downstream walsenders only see WAL that verified (a relay never serves
            // what its own applier refused).
            let verified = self.pipeline.as_ref().map_or(flushed, ApplyPipeline::applied);
            o.flushed(self.writing_tli, flushed.min(verified));
        }
        Ok(())
    }
}

impl<A: Apply> Receiver<A> {
    /// Decodes and applies every complete record received. Done after every write, not
    /// only at flushes: corruption is found as soon as its record is complete, and the
    /// decoder lets go of the received buffers at once.
    fn apply(&mut self) -> Result<(), ReceiverError> {
        let Some(p) = self.pipeline.as_mut() else { return Ok(()) };
        if let Err(e) = p.apply_available(&mut self.applier) {
            if let crate::apply::ApplyError::Corrupt { lsn, .. } = &e {
                self.counters.corruption.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Nothing from the bad record on may look complete on disk.
                self.writer.discard_from(self.writing_tli, *lsn)?;
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// Timers of one copy loop (`walreceiver.c`: `WalRcvComputeNextWakeup`).
struct Timers {
    last_recv: Instant,
    last_status: Instant,
    ping_sent: bool,
    /// When `h` was last sent.
    last_feedback: Option<Instant>,
    /// When received WAL was last flushed.
    last_flush: Instant,
}

/// While catching up on a backlog, received WAL is flushed and reported at least this often
/// (and at every segment switch).
pub const CATCHUP_FLUSH_INTERVAL: Duration = Duration::from_millis(200);

impl<A: Apply> Receiver<A> {
    /// Receives one timeline's stream (`receivelog.c: HandleCopyStream`,
    /// `walreceiver.c: WalReceiverMain`'s loop).
    async fn copy_loop(
        &mut self,
        conn: &mut ReplicationConn,
        tli: TimeLineId,
        start: Lsn,
        cancel: &CancellationToken,
    ) -> Result<CopyEnd, ReceiverError> {
        if self.pipeline.is_none() {
            let mut p = ApplyPipeline::find_next(start, self.writer.seg_size(), tli);
            if let Some(s) = self.system_id {
                p.set_system_id(s);
            }
            self.pipeline = Some(p);
        }
        let mut expected = start;
        let now = Instant::now();
        let mut timers = Timers {
            last_recv: now,
            last_status: now,
            ping_sent: false,
            last_feedback: None,
            last_flush: now,
        };
        self.send_status(conn, false).await?;
        loop {
            let wakeup = self.next_wakeup(&timers);
            let woken = {
                let mut sink = WalIn { writer: &mut self.writer, tli, expected: &mut expected };
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => Woken::Cancelled,
                    ev = conn.recv_wal(&mut sink) => Woken::Event(ev?),
                    _ = tokio::time::sleep_until(wakeup) => Woken::Timer,
                }
            };
            let first = match woken {
                Woken::Event(ev) => ev,
                Woken::Cancelled => return self.stop_streaming(conn, StreamEnd::Stopped).await,
                Woken::Timer => {
                    self.on_timer(conn, &mut timers).await?;
                    continue;
                }
            };
            timers.last_recv = Instant::now();
            timers.ping_sent = false;
            // A batch: this event and whatever is already there (walreceiver.c drains the
            // socket before it flushes).
            let mut reply_now = false;
            let mut wrote = false;
            let mut terminal = None;
            let mut next = Some(first);
            let batch_segment = expected.segno(self.writer.seg_size());
            while let Some(ev) = next.take() {
                match ev {
                    WalEvent::XLogData { start, wal_end, len } => {
                        if start + len as u64 != expected {
                            return Err(offset_error(start, expected, self.writer.seg_size()));
                        }
                        self.counters.received(len as u64);
                        self.after_wal(tli, wal_end)?;
                        wrote = true;
                    }
                    WalEvent::Other(CopyEvent::CopyData(payload)) => {
                        let (w, r) = self.on_copy_data(tli, payload, &mut expected)?;
                        wrote |= w;
                        reply_now |= r;
                    }
                    WalEvent::Other(other) => {
                        terminal = Some(other);
                        break;
                    }
                }
                // walreceiver.c: XLogWalRcvWrite flushes and reports at each segment
                // switch, so a backlog that never empties the socket still advances flush.
                if reply_now || expected.segno(self.writer.seg_size()) != batch_segment {
                    break;
                }
                next = conn.try_recv_wal(&mut WalIn {
                    writer: &mut self.writer,
                    tli,
                    expected: &mut expected,
                })?;
            }
            // Caught up (the server has sent all it has): flush and report at once, as
            // walreceiver.c does after each batch. Catching up on a backlog: flush at each
            // segment switch and at least every CATCHUP_FLUSH_INTERVAL, so a long backlog
            // costs one fdatasync per segment rather than one per socket read.
            let caught_up = self.reported.server_end <= expected;
            let switched = expected.segno(self.writer.seg_size()) != batch_segment;
            let flush_now = wrote
                && (caught_up
                    || switched
                    || reply_now
                    || timers.last_flush.elapsed() >= CATCHUP_FLUSH_INTERVAL);
            if flush_now {
                // walreceiver.c: XLogWalRcvSendReply, then XLogWalRcvFlush — the primary
                // learns what was written before the fsync (remote_write commits need no
                // more), and what was flushed right after it.
                if self.writer.write_out()? > self.reported.write {
                    self.send_status(conn, false).await?;
                }
                self.flush_and_apply()?;
                timers.last_flush = Instant::now();
            }
            if flush_now || reply_now {
                self.send_status(conn, false).await?;
                timers.last_status = Instant::now();
                self.maybe_send_feedback(conn, &mut timers).await?;
            }
            if let Some(endpos) = self.opts.endpos {
                // pg_receivewal.c: stop_streaming, "endpos < xlogpos"
                if endpos < expected && terminal.is_none() {
                    return self.stop_streaming(conn, StreamEnd::EndPos(expected)).await;
                }
            }
            match terminal {
                None => {}
                Some(CopyEvent::CopyDone) => {
                    // The end of a timeline: answer CopyDone, read the next timeline.
                    conn.send_copy_done().await?;
                    let end = conn.finish_copy().await?;
                    return match end.next_timeline {
                        Some((next, pos)) => Ok(CopyEnd::NextTimeline(next, pos)),
                        None => Err(ReceiverError::TerminatedByPrimary),
                    };
                }
                Some(_) => return Err(ReceiverError::TerminatedByPrimary),
            }
        }
    }

    /// One CopyData: XLogData is written and fed to the decoder; a keepalive may ask for a
    /// reply. Returns (wrote, reply requested).
    fn on_copy_data(
        &mut self,
        tli: TimeLineId,
        payload: Bytes,
        expected: &mut Lsn,
    ) -> Result<(bool, bool), ReceiverError> {
        let message = parse_server_copy_data(payload).map_err(ProtocolViolation::CopyData)?;
        let wal_bytes = match &message {
            ServerCopyData::XLogData(x) => x.data.len() as u64,
            _ => 0,
        };
        self.counters.received(wal_bytes);
        match message {
            ServerCopyData::XLogData(x) => {
                if x.start != *expected {
                    return Err(offset_error(x.start, *expected, self.writer.seg_size()));
                }
                self.writer.write(tli, x.start, &x.data)?;
                *expected = Lsn(x.start.0 + x.data.len() as u64);
                self.after_wal(tli, x.wal_end)?;
                Ok((true, false))
            }
            ServerCopyData::Keepalive(k) => {
                self.reported.server_end = self.reported.server_end.max(k.wal_end);
                Ok((false, k.reply_requested))
            }
        }
    }

    /// After an XLogData's payload went into the writer (which has moved `expected`).
    fn after_wal(&mut self, tli: TimeLineId, wal_end: Lsn) -> Result<(), ReceiverError> {
        self.writing_tli = tli;
        // A new connection resumes from here (rounded down to its segment).
        self.next = Some((tli, self.writer.written()));
        self.reported.server_end = self.reported.server_end.max(wal_end);
        self.decode_ready()?;
        if self.opts.synchronous {
            self.flush_and_apply()?;
        }
        Ok(())
    }

    /// Hands what the writer has sent to disk since the last call to the observer and the
    /// decoder, and applies the records completed.
    fn decode_ready(&mut self) -> Result<(), ReceiverError> {
        for (tli, start, data) in self.writer.take_ready() {
            if let Some(o) = &self.observer {
                o.written(tli, start, &data);
            }
            if let Some(p) = self.pipeline.as_mut() {
                p.feed(start, &data)?;
            }
        }
        self.apply()
    }

    /// When the loop must wake up with nothing received.
    fn next_wakeup(&self, t: &Timers) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut wake = far;
        if !self.opts.status_interval.is_zero() {
            wake = wake.min(t.last_status + self.opts.status_interval);
        }
        let timeout = self.opts.receiver_timeout;
        if !timeout.is_zero() {
            wake = wake.min(if t.ping_sent {
                t.last_recv + timeout
            } else {
                t.last_recv + timeout / 2
            });
        }
        if self.writer.written() > self.writer.flushed() {
            wake = wake.min(t.last_flush + CATCHUP_FLUSH_INTERVAL);
        }
        wake
    }

    /// The status interval and `wal_receiver_timeout` (walreceiver.c: after half the
    /// timeout of silence a reply-requested status; after all of it, give up).
    async fn on_timer(
        &mut self,
        conn: &mut ReplicationConn,
        t: &mut Timers,
    ) -> Result<(), ReceiverError> {
        let now = Instant::now();
        let timeout = self.opts.receiver_timeout;
        if !timeout.is_zero() {
            if now >= t.last_recv + timeout {
                return Err(ReceiverError::Timeout);
            }
            if !t.ping_sent && now >= t.last_recv + timeout / 2 {
                self.flush_pending(t)?;
                self.send_status(conn, true).await?;
                t.ping_sent = true;
                t.last_status = now;
                return Ok(());
            }
        }
        let unflushed = self.writer.written() > self.writer.flushed();
        if unflushed && now >= t.last_flush + CATCHUP_FLUSH_INTERVAL {
            // A backlog that paused: what was received goes to disk and is reported.
            self.flush_pending(t)?;
            self.send_status(conn, false).await?;
            t.last_status = now;
            return Ok(());
        }
        if !self.opts.status_interval.is_zero() && now >= t.last_status + self.opts.status_interval
        {
            self.flush_pending(t)?;
            self.send_status(conn, false).await?;
            t.last_status = now;
            self.maybe_send_feedback(conn, t).await?;
        }
        Ok(())
    }

    /// Flushes what was written and not flushed yet (a backlog that paused).
    fn flush_pending(&mut self, t: &mut Timers) -> Result<(), ReceiverError> {
        if self.writer.written() > self.writer.flushed() {
            self.flush_and_apply()?;
            t.last_flush = Instant::now();
        }
        Ok(())
    }

    /// `h` when hot standby feedback is on and a status interval has passed since the last.
    async fn maybe_send_feedback(
        &mut self,
        conn: &mut ReplicationConn,
        t: &mut Timers,
    ) -> Result<(), ReceiverError> {
        if !self.opts.hot_standby_feedback {
            return Ok(());
        }
        let now = Instant::now();
        if t.last_feedback.is_some_and(|last| now < last + self.opts.status_interval) {
            return Ok(());
        }
        let (xmin, epoch) = self.applier.feedback_xmin().unwrap_or((0, 0));
        let h = walstream_protocol::replication::HotStandbyFeedback {
            send_time: TimestampTz::from_system_time(std::time::SystemTime::now()),
            xmin: walstream_protocol::lsn::Xid(xmin),
            xmin_epoch: epoch,
            catalog_xmin: walstream_protocol::lsn::Xid(0),
            catalog_xmin_epoch: 0,
        };
        let mut buf = BytesMut::new();
        h.encode(&mut buf);
        conn.send_copy_data(&buf).await?;
        t.last_feedback = Some(now);
        Ok(())
    }

    /// `r` with write, flush and apply (walreceiver.c: XLogWalRcvSendReply). Flush is what
    /// is on disk and verified (never past a record that did not decode); apply never
    /// passes flush; none goes backwards.
    async fn send_status(
        &mut self,
        conn: &mut ReplicationConn,
        reply_requested: bool,
    ) -> Result<(), ReceiverError> {
        let applied = self.pipeline.as_ref().map_or(Lsn::INVALID, ApplyPipeline::applied);
        let write = self.writer.written_out();
        let (flush, apply) = if self.opts.report_flush {
            let flush = self.writer.flushed().min(applied.max(self.reported.flush));
            (flush, applied.min(flush))
        } else {
            (Lsn::INVALID, Lsn::INVALID)
        };
        let p = &mut self.reported;
        p.write = p.write.max(write);
        p.flush = p.flush.max(flush);
        p.apply = p.apply.max(apply);
        p.tli = self.pipeline.as_ref().map_or(p.tli, ApplyPipeline::timeline);
        let r = StandbyStatusUpdate {
            write: p.write,
            flush: p.flush,
            apply: p.apply,
            send_time: TimestampTz::from_system_time(std::time::SystemTime::now()),
            reply_requested,
        };
        let mut buf = BytesMut::new();
        r.encode(&mut buf);
        conn.send_copy_data(&buf).await?;
        self.positions.send_replace(*p);
        Ok(())
    }

    /// Ends the stream from our side: CopyDone, then what the server sends until its
    /// CopyDone and the end of the command.
    async fn stop_streaming(
        &mut self,
        conn: &mut ReplicationConn,
        end: StreamEnd,
    ) -> Result<CopyEnd, ReceiverError> {
        self.flush_and_apply()?;
        self.send_status(conn, false).await?;
        conn.send_copy_done().await?;
        let drain = async {
            loop {
                match conn.recv_copy().await? {
                    CopyEvent::CopyData(_) => {}
                    CopyEvent::CopyDone => break,
                    _ => return Ok::<bool, ConnError>(false),
                }
            }
            conn.finish_copy().await.map(|_| true)
        };
        match tokio::time::timeout(Duration::from_secs(10), drain).await {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => warn!("while ending the stream: {e}"),
        }
        Ok(CopyEnd::Finished(end))
    }
}

/// The server's segment size (`streamutil.c: RetrieveWalSegSize`).
///
/// # Errors
/// The query fails, or the value is not a power of two in 1 MB ..= 1 GB (pg_receivewal's
/// text).
pub async fn show_seg_size(conn: &mut ReplicationConn) -> Result<WalSegSize, ReceiverError> {
    let show = conn.simple_query("SHOW wal_segment_size").await?;
    let text = show.get_text(0, 0).unwrap_or_default();
    parse_seg_size(text).ok_or_else(|| ProtocolViolation::SegSize(text.to_string()).into())
}

/// IDENTIFY_SYSTEM, its reply read once (`streamutil.c: RunIdentifySystem`).
///
/// # Errors
/// The query fails, or the reply does not read ([`ProtocolViolation::IdentifySystem`]).
pub async fn identify_system(conn: &mut ReplicationConn) -> Result<IdentifySystem, ReceiverError> {
    let r = conn.simple_query("IDENTIFY_SYSTEM").await?;
    let fields: Vec<Option<&[u8]>> = match r.rows.first() {
        Some(row) => row.iter().map(|f| f.as_deref()).collect(),
        // No row: the shape error counts the described fields, as PQnfields does.
        None => vec![None; r.columns.len()],
    };
    IdentifySystem::parse(r.rows.len(), &fields)
        .map_err(|e| ProtocolViolation::IdentifySystem(e).into())
}

/// The segment size a stream writes, from `SHOW wal_segment_size`.
pub fn parse_seg_size(text: &str) -> Option<WalSegSize> {
    let mb: u32 = text.strip_suffix("MB").map(str::parse).and_then(Result::ok).or_else(|| {
        text.strip_suffix("GB").and_then(|g| g.parse::<u32>().ok()).map(|g| g * 1024)
    })?;
    WalSegSize::new(u64::from(mb) * 1024 * 1024).ok()
}

/// Why the copy loop woke up.
enum Woken {
    Event(WalEvent),
    Cancelled,
    Timer,
}

/// receivelog.c: ProcessXLogDataMsg
fn offset_error(start: Lsn, expected: Lsn, seg: WalSegSize) -> ReceiverError {
    ReceiverError::Protocol(ProtocolViolation::WalDataOffset {
        got: start.segment_offset(seg),
        expected: expected.segment_offset(seg),
    })
}

/// XLogData payloads straight into the segment writer's stage, checked to continue the
/// stream.
struct WalIn<'a> {
    writer: &'a mut SegmentWriter,
    tli: TimeLineId,
    expected: &'a mut Lsn,
}

impl WalSink for WalIn<'_> {
    type Error = ReceiverError;

    fn spare(&mut self, pos: Lsn) -> Result<&mut [u8], ReceiverError> {
        if pos != *self.expected {
            return Err(offset_error(pos, *self.expected, self.writer.seg_size()));
        }
        Ok(self.writer.spare(self.tli, pos)?)
    }

    fn filled(&mut self, n: usize) -> Result<(), ReceiverError> {
        self.writer.filled(n)?;
        *self.expected = *self.expected + n as u64;
        Ok(())
    }
}
