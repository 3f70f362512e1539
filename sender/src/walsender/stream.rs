//! START_REPLICATION: physical streaming (`walsender.c`: `StartReplication`,
//! `WalSndLoop`, `XLogSendPhysical`, `ProcessRepliesIfAny`, `WalSndDone`).
//!
//! Two halves run at once: the reply reader parses what the standby sends (`r`, `h`,
//! CopyDone, Terminate) and hands it over a channel; the sender sends flushed WAL in
//! XLogData messages, keepalives, and the end-of-timeline and shutdown handshakes.

use crate::lag::{LagKind, LagTracker};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};
use walstream_protocol::lsn::segment_file_name;
use walstream_protocol::lsn::XLOG_BLCKSZ;
use walstream_protocol::replication::{
    ClientCopyData, PrimaryKeepalive, ReplicationKind, TimestampTz, XLogData, XLOGDATA_HEADER_LEN,
};
use walstream_protocol::wire::{
    backend::encode_copy_data_header, sqlstate, BackendMessage, CopyResponse, ErrorFields,
    FieldDescription,
};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use super::replies::{read_replies, Reply};
use super::{source_error, text_col, CommandOutcome, WalSender, WalSenderContext};
use crate::conn::PqWriter;
use crate::registry::{BackendEntry, WalSndState};
use crate::session::{admin_shutdown, query_canceled, BackendEnd, Connection, WalSenderExit};
use crate::walsource::FileRange;

/// Which timeline is streamed, and where it ends (`sendTimeLine*`).
#[derive(Debug, Clone, Copy)]
struct SendTimeline {
    tli: TimeLineId,
    /// `Some((switch point, next tli))` when the timeline is historic.
    historic: Option<(Lsn, TimeLineId)>,
}

/// Releases the slot the session acquired for streaming, however streaming ends.
struct SlotGuard {
    ctx: Arc<WalSenderContext>,
    name: String,
    pid: i32,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.ctx.slots.release(&self.name, self.pid);
    }
}

/// `START_REPLICATION [SLOT name] [PHYSICAL] X/X [TIMELINE n]`.
pub(super) async fn start_replication<R, W>(
    ws: &mut WalSender,
    conn: &mut Connection<R, W>,
    kind: ReplicationKind,
    slot_name: Option<String>,
    timeline: Option<TimeLineId>,
    start: Lsn,
) -> Result<CommandOutcome, ErrorFields>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    if kind == ReplicationKind::Logical {
        // logical.c: CheckLogicalDecodingRequirements
        return Err(ErrorFields::error(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            "logical decoding requires wal_level >= logical",
        ));
    }
    let _slot = match &slot_name {
        Some(name) => {
            ws.ctx.slots.acquire(name, ws.entry.pid).map_err(super::commands::slot_error)?;
            Some(SlotGuard { ctx: ws.ctx.clone(), name: name.clone(), pid: ws.entry.pid })
        }
        None => None,
    };
    let end = ws.wal_end();
    let send = match timeline {
        Some(tli) if tli != end.tli => {
            let history = ws.current_history(end.tli)?;
            let Some((switchpoint, next)) = history.switch_point(tli) else {
                return Err(ErrorFields::error(
                    sqlstate::INTERNAL_ERROR,
                    format!("requested timeline {} is not in this server's history", tli.0),
                ));
            };
            if switchpoint < start {
                return Err(ErrorFields::error(
                    sqlstate::INTERNAL_ERROR,
                    format!(
                        "requested starting point {start} on timeline {} is not in this server's history",
                        tli.0
                    ),
                )
                .with_detail(format!(
                    "This server's history forked from timeline {} at {switchpoint}.",
                    tli.0
                )));
            }
            SendTimeline { tli, historic: Some((switchpoint, next)) }
        }
        _ => SendTimeline { tli: end.tli, historic: None },
    };
    ws.entry.update_walsender(|s| {
        s.slot = slot_name.clone();
    });
    let w = &mut conn.writer;
    // "If there is nothing to stream, don't even enter COPY mode"
    if send.historic.is_none_or(|(upto, _)| start < upto) {
        ws.entry.update_walsender(|s| s.state = WalSndState::Catchup);
        w.send(&BackendMessage::CopyBothResponse(CopyResponse::default()));
        if end.flushed < start {
            return Err(ErrorFields::error(
                sqlstate::INTERNAL_ERROR,
                format!(
                    "requested starting point {start} is ahead of the WAL flush position of this server {}",
                    end.flushed
                ),
            ));
        }
        let mut streamer = Streamer::new(ws, send, start, slot_name.clone());
        let outcome = streamer.run(conn).await;
        ws.entry.update_walsender(|s| s.state = WalSndState::Startup);
        match outcome {
            StreamEnd::Done(final_send) => {
                let w = &mut conn.writer;
                finish(w, final_send);
            }
            StreamEnd::Exit(end) => return Ok(CommandOutcome::Exit(end)),
            StreamEnd::Error(fields) => return Err(*fields),
        }
    } else {
        finish(w, send);
    }
    Ok(CommandOutcome::Done)
}

/// The end of START_REPLICATION after COPY: the next timeline's result set when the
/// streamed timeline was historic, then both command tags.
fn finish<W: AsyncWrite + Unpin>(w: &mut PqWriter<W>, send: SendTimeline) {
    if let Some((upto, next)) = send.historic {
        w.send(&BackendMessage::RowDescription(vec![
            FieldDescription::new("next_tli", 20, 8),
            text_col("next_tli_startpos"),
        ]));
        w.send(&BackendMessage::DataRow(vec![
            Some(next.0.to_string().into()),
            Some(upto.to_string().into()),
        ]));
    }
    w.send(&BackendMessage::CommandComplete("START_STREAMING".into()));
    w.send(&BackendMessage::CommandComplete("START_REPLICATION".into()));
}

/// How streaming ended.
enum StreamEnd {
    /// Both sides sent CopyDone; back to command mode with this timeline's ending.
    Done(SendTimeline),
    /// The connection ends.
    Exit(BackendEnd),
    /// An ERROR; back to command mode.
    Error(Box<ErrorFields>),
}

/// The sending half's state.
struct Streamer {
    ctx: Arc<WalSenderContext>,
    entry: Arc<BackendEntry>,
    send: SendTimeline,
    sent: Lsn,
    slot: Option<String>,
    caught_up: bool,
    done_sending: bool,
    done_receiving: bool,
    last_reply: Instant,
    waiting_for_ping: bool,
    stopping: bool,
    write: Lsn,
    flush: Lsn,
    lag: LagTracker,
}

fn now_tz() -> TimestampTz {
    TimestampTz::from_system_time(SystemTime::now())
}

impl Streamer {
    fn new(ws: &WalSender, send: SendTimeline, start: Lsn, slot: Option<String>) -> Streamer {
        Streamer {
            ctx: ws.ctx.clone(),
            entry: ws.entry.clone(),
            send,
            sent: start,
            slot,
            caught_up: false,
            done_sending: false,
            done_receiving: false,
            last_reply: Instant::now(),
            waiting_for_ping: false,
            stopping: false,
            write: Lsn::INVALID,
            flush: Lsn::INVALID,
            lag: LagTracker::default(),
        }
    }

    /// Runs both halves until streaming ends.
    async fn run<R, W>(&mut self, conn: &mut Connection<R, W>) -> StreamEnd
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let (tx, rx) = mpsc::channel(64);
        let reader = &mut conn.reader;
        let writer = &mut conn.writer;
        let reading = async move {
            read_replies(reader, tx).await;
            std::future::pending::<()>().await
        };
        tokio::select! {
            end = self.send_loop(writer, rx) => end,
            _ = reading => unreachable_end(),
        }
    }

    /// `WalSndLoop(XLogSendPhysical)`.
    async fn send_loop<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut PqWriter<W>,
        mut replies: mpsc::Receiver<Reply>,
    ) -> StreamEnd {
        self.sent_update();
        let mut end_rx = self.ctx.source.end();
        let mut stop_rx = self.ctx.stop.clone();
        let mut cancels = self.entry.cancel_requests();
        // Compared by value: `changed()` in the wait below marks a request seen.
        let cancels_before = *cancels.borrow_and_update();
        let timeout = self.ctx.settings.wal_sender_timeout;
        loop {
            // Interrupts and replies that are already there.
            if self.entry.is_terminated() {
                return self.fatal(w, admin_shutdown()).await;
            }
            if *cancels.borrow() != cancels_before {
                return StreamEnd::Error(Box::new(query_canceled()));
            }
            if *stop_rx.borrow_and_update() && !self.stopping {
                self.stopping = true;
                self.entry.update_walsender(|s| s.state = WalSndState::Stopping);
            }
            while let Ok(reply) = replies.try_recv() {
                if let Some(end) = self.on_reply(w, reply).await {
                    return end;
                }
            }
            if self.done_receiving && self.done_sending {
                if let Err(e) = w.flush().await {
                    return StreamEnd::Exit(BackendEnd::Io(e));
                }
                return StreamEnd::Done(self.send);
            }
            if !self.done_sending {
                end_rx.borrow_and_update();
                if let Err(end) = self.send_data(w).await {
                    return end;
                }
            }
            if self.caught_up {
                self.entry.update_walsender(|s| {
                    if s.state == WalSndState::Catchup {
                        debug!("walsender has now caught up with upstream server");
                        s.state = WalSndState::Streaming;
                    }
                });
                if self.stopping {
                    if let Some(end) = self.walsnd_done(w).await {
                        return end;
                    }
                }
            }
            if let Some(end) = self.check_timeout(timeout) {
                return end;
            }
            if let Err(e) = self.keepalive_if_necessary(w, timeout).await {
                return StreamEnd::Exit(BackendEnd::Io(e));
            }
            if !self.caught_up && !self.done_sending {
                continue;
            }
            let deadline = self.next_deadline(timeout);
            let wait_for_wal = !self.done_sending && self.send.historic.is_none();
            tokio::select! {
                biased;
                _ = self.entry.terminated() => {}
                _ = cancels.changed() => {}
                _ = stop_rx.changed(), if !self.stopping => {}
                reply = replies.recv() => match reply {
                    Some(reply) => if let Some(end) = self.on_reply(w, reply).await {
                        return end;
                    },
                    None => return unreachable_end(),
                },
                _ = end_rx.changed(), if wait_for_wal => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn sent_update(&self) {
        let sent = self.sent;
        self.entry.update_walsender(|s| s.sent = sent);
    }

    /// `XLogSendPhysical`: one XLogData of at most `max_send_size` bytes, ending on a page
    /// boundary when more is pending; CopyDone at the end of a historic timeline.
    async fn send_data<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut PqWriter<W>,
    ) -> Result<(), StreamEnd> {
        let end = *self.ctx.source.end().borrow();
        if self.send.historic.is_none() && end.tli != self.send.tli {
            // The server moved to a new timeline (a promotion): this one is history now.
            let history = super::history_of(&self.ctx.source, end.tli)
                .map_err(|e| StreamEnd::Error(Box::new(e)))?;
            self.send.historic = history.switch_point(self.send.tli);
            if self.send.historic.is_none() {
                return Err(StreamEnd::Error(Box::new(ErrorFields::error(
                    sqlstate::INTERNAL_ERROR,
                    format!(
                        "requested timeline {} is not in this server's history",
                        self.send.tli.0
                    ),
                ))));
            }
        }
        let send_rqst = match self.send.historic {
            Some((upto, _)) => upto,
            None => end.flushed,
        };
        if let Some((upto, _)) = self.send.historic {
            if upto <= self.sent {
                w.send(&BackendMessage::CopyDone);
                w.flush().await.map_err(|e| StreamEnd::Exit(BackendEnd::Io(e)))?;
                self.done_sending = true;
                self.caught_up = true;
                return Ok(());
            }
        }
        if self.send.historic.is_none() {
            // LagTrackerWrite: when this WAL position was (about) flushed.
            self.lag.sent(send_rqst, SystemTime::now());
        }
        if send_rqst <= self.sent {
            self.caught_up = true;
            return Ok(());
        }
        let start = self.sent;
        let mut endptr = Lsn(start.0 + u64::from(self.ctx.settings.max_send_size));
        if send_rqst <= endptr {
            endptr = send_rqst;
            self.caught_up = self.send.historic.is_none();
        } else {
            endptr = Lsn(endptr.0 - endptr.0 % u64::from(XLOG_BLCKSZ));
            self.caught_up = false;
        }
        let files = if w.sends_files() {
            self.wal_files(start, endptr).map_err(|e| StreamEnd::Error(Box::new(e)))?
        } else {
            None
        };
        let n = if let Some(ranges) = files {
            // From the page cache to the socket, as the file holds it.
            let n: usize = ranges.iter().map(|r| r.len).sum();
            let buf = w.buffer();
            encode_copy_data_header(XLOGDATA_HEADER_LEN + n, buf);
            XLogData::encode_header(start, send_rqst, now_tz(), buf);
            w.write_with_files(&ranges).await.map_err(|e| StreamEnd::Exit(BackendEnd::Io(e)))?;
            n
        } else {
            let pieces = self.read_wal(start, endptr).map_err(|e| StreamEnd::Error(Box::new(e)))?;
            let n: usize = pieces.iter().map(Bytes::len).sum();
            let buf = w.buffer();
            encode_copy_data_header(XLOGDATA_HEADER_LEN + n, buf);
            XLogData::encode_header(start, send_rqst, now_tz(), buf);
            w.write_with_payload(&pieces).await.map_err(|e| StreamEnd::Exit(BackendEnd::Io(e)))?;
            n
        };
        // Seen by the command's `--metrics` recorder, if one is installed.
        metrics::counter!("walstream_walsender_sent_bytes_total").increment(n as u64);
        metrics::counter!("walstream_walsender_messages_sent_total").increment(1);
        self.sent = endptr;
        self.sent_update();
        Ok(())
    }

    /// The segment file of the segment holding `cur` (`WalSndSegmentOpen`): the switch
    /// point's segment is read from the next timeline's file.
    fn file_tli(&self, cur: Lsn) -> TimeLineId {
        let seg_size = self.ctx.source.seg_size();
        match self.send.historic {
            Some((upto, next)) if cur.segno(seg_size) == upto.segno(seg_size) => next,
            _ => self.send.tli,
        }
    }

    /// `[start, end)` as ranges of segment files, when the source has all of it in files
    /// (else `None`: [`Streamer::read_wal`] reads it, from memory where it is recent).
    fn wal_files(&self, start: Lsn, end: Lsn) -> Result<Option<Vec<FileRange>>, ErrorFields> {
        let seg_size = self.ctx.source.seg_size();
        let mut ranges = Vec::with_capacity(2);
        let mut cur = start;
        while cur < end {
            let seg_end = Lsn(cur.segment_start(seg_size).0 + u64::from(seg_size.bytes()));
            let want = (end.min(seg_end).0 - cur.0) as usize;
            let file_tli = self.file_tli(cur);
            let Some(range) =
                self.ctx.source.file_range(file_tli, cur, want).map_err(source_error)?
            else {
                return Ok(None);
            };
            if range.len == 0 {
                return Err(read_nothing(file_tli, cur, want, seg_size));
            }
            cur = Lsn(cur.0 + range.len as u64);
            ranges.push(range);
        }
        Ok(Some(ranges))
    }

    /// The bytes of `[start, end)`, one piece per segment file (`WALRead`).
    fn read_wal(&self, start: Lsn, end: Lsn) -> Result<Vec<Bytes>, ErrorFields> {
        let seg_size = self.ctx.source.seg_size();
        let mut pieces = Vec::with_capacity(2);
        let mut cur = start;
        while cur < end {
            let seg_end = Lsn(cur.segment_start(seg_size).0 + u64::from(seg_size.bytes()));
            let piece_end = end.min(seg_end);
            let file_tli = self.file_tli(cur);
            let want = (piece_end.0 - cur.0) as usize;
            let bytes = self.ctx.source.read(file_tli, cur, want).map_err(source_error)?;
            if bytes.is_empty() {
                return Err(read_nothing(file_tli, cur, want, seg_size));
            }
            cur = Lsn(cur.0 + bytes.len() as u64);
            pieces.push(bytes);
        }
        Ok(pieces)
    }

    /// Handles one message from the reply reader (`ProcessRepliesIfAny`).
    async fn on_reply<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut PqWriter<W>,
        reply: Reply,
    ) -> Option<StreamEnd> {
        self.last_reply = Instant::now();
        self.waiting_for_ping = false;
        metrics::counter!("walstream_walsender_messages_received_total").increment(1);
        match reply {
            Reply::Data(ClientCopyData::StandbyStatusUpdate(r)) => {
                // walsender.c: ProcessStandbyReplyMessage
                self.write = r.write;
                self.flush = r.flush;
                let now = SystemTime::now();
                self.lag.reply(r.write, r.flush, r.apply, self.sent, now);
                let lag = &self.lag;
                self.entry.update_walsender(|s| {
                    s.write = r.write;
                    s.flush = r.flush;
                    s.apply = r.apply;
                    s.reply_time = Some(now);
                    s.write_lag = lag.lag(LagKind::Write);
                    s.flush_lag = lag.lag(LagKind::Flush);
                    s.replay_lag = lag.lag(LagKind::Apply);
                });
                if let (Some(slot), true) = (&self.slot, r.flush.is_valid()) {
                    // PhysicalConfirmReceivedLocation
                    if let Err(e) = self.ctx.slots.advance(slot, r.flush, self.send.tli) {
                        return Some(StreamEnd::Error(Box::new(super::commands::slot_error(e))));
                    }
                }
                if r.reply_requested {
                    if let Err(e) = self.keepalive(w, false).await {
                        return Some(StreamEnd::Exit(BackendEnd::Io(e)));
                    }
                }
                None
            }
            Reply::Data(ClientCopyData::HotStandbyFeedback(h)) => {
                // walsender.c: ProcessStandbyHSFeedbackMessage; xmin 0 clears it
                let xmin = (h.xmin.0 != 0).then_some(h.xmin.0);
                self.entry.update_walsender(|s| s.xmin = xmin);
                None
            }
            Reply::CopyDone => {
                if !self.done_sending {
                    w.send(&BackendMessage::CopyDone);
                    self.done_sending = true;
                }
                self.done_receiving = true;
                None
            }
            Reply::Terminate => Some(StreamEnd::Exit(BackendEnd::Terminate)),
            Reply::Eof => {
                info!(pid = self.entry.pid, "unexpected EOF on standby connection");
                Some(StreamEnd::Exit(BackendEnd::Eof))
            }
            Reply::Fatal(fields) => Some(self.fatal(w, *fields).await),
            Reply::Error(fields) => Some(StreamEnd::Error(fields)),
            Reply::Unexpected(tag) => Some(StreamEnd::Exit(BackendEnd::WalSenderExit(
                WalSenderExit::UnexpectedMessageType(tag),
            ))),
            Reply::Io(e) => Some(StreamEnd::Exit(BackendEnd::Io(e))),
        }
    }

    async fn fatal<W: AsyncWrite + Unpin>(
        &self,
        w: &mut PqWriter<W>,
        fields: ErrorFields,
    ) -> StreamEnd {
        w.send_error(fields.clone());
        let _ = w.flush().await;
        if fields.code == sqlstate::ADMIN_SHUTDOWN {
            StreamEnd::Exit(BackendEnd::Terminated)
        } else {
            StreamEnd::Exit(BackendEnd::Fatal(Box::new(fields)))
        }
    }

    /// `WalSndKeepalive`.
    async fn keepalive<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut PqWriter<W>,
        reply_requested: bool,
    ) -> std::io::Result<()> {
        let k = PrimaryKeepalive { wal_end: self.sent, send_time: now_tz(), reply_requested };
        let mut payload = bytes::BytesMut::new();
        k.encode(&mut payload);
        w.send(&BackendMessage::CopyData(payload.freeze()));
        if reply_requested {
            self.waiting_for_ping = true;
        }
        w.flush().await
    }

    /// `WalSndKeepaliveIfNecessary`: a reply-requested `k` after half the timeout.
    async fn keepalive_if_necessary<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut PqWriter<W>,
        timeout: Duration,
    ) -> std::io::Result<()> {
        if timeout.is_zero() || self.waiting_for_ping {
            return Ok(());
        }
        if Instant::now() >= self.last_reply + timeout / 2 {
            self.keepalive(w, true).await?;
        }
        Ok(())
    }

    /// `WalSndCheckTimeOut`: close, without an ErrorResponse, after a whole timeout of silence.
    fn check_timeout(&self, timeout: Duration) -> Option<StreamEnd> {
        if timeout.is_zero() || Instant::now() < self.last_reply + timeout {
            return None;
        }
        Some(StreamEnd::Exit(BackendEnd::WalSenderExit(WalSenderExit::Timeout)))
    }

    /// When the loop must wake up if nothing else happens (`WalSndComputeSleeptime`).
    fn next_deadline(&self, timeout: Duration) -> Instant {
        if timeout.is_zero() {
            return Instant::now() + Duration::from_secs(3600);
        }
        if self.waiting_for_ping {
            self.last_reply + timeout
        } else {
            self.last_reply + timeout / 2
        }
    }

    /// `WalSndDone`: at shutdown, once everything is sent and the standby confirmed it,
    /// `C "COPY 0"` and exit; until then, ask for replies.
    async fn walsnd_done<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut PqWriter<W>,
    ) -> Option<StreamEnd> {
        let replicated = if self.flush.is_valid() { self.flush } else { self.write };
        if self.sent == replicated && !w.has_pending() {
            w.send(&BackendMessage::CommandComplete("COPY 0".into()));
            let _ = w.flush().await;
            return Some(StreamEnd::Exit(BackendEnd::WalSenderExit(WalSenderExit::ShutdownDone)));
        }
        if !self.waiting_for_ping {
            if let Err(e) = self.keepalive(w, true).await {
                return Some(StreamEnd::Exit(BackendEnd::Io(e)));
            }
        }
        None
    }
}

/// The reader future never finishes on its own (it parks after its last message).
fn unreachable_end() -> StreamEnd {
    StreamEnd::Exit(BackendEnd::Eof)
}

/// `WALRead`'s error when a segment file holds nothing at a flushed position.
fn read_nothing(file_tli: TimeLineId, at: Lsn, want: usize, seg_size: WalSegSize) -> ErrorFields {
    let segment = segment_file_name(file_tli, at.segno(seg_size), seg_size);
    ErrorFields::error(
        sqlstate::INTERNAL_ERROR,
        format!(
            "could not read from log segment {segment}, offset {}: read 0 of {want}",
            at.segment_offset(seg_size)
        ),
    )
}
