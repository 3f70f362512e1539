//! COPY BOTH mode: server messages one at a time (cancellation safe, or without waiting),
//! CopyData and CopyDone from our side, and what follows both CopyDones
//! (`libpqwalreceiver.c: libpqrcv_receive`, `libpqrcv_endstreaming`; `receivelog.c`).

use std::io;
use std::str::FromStr;

use bytes::Bytes;
use walstream_protocol::wire::backend::encode_copy_data_header;
use walstream_protocol::wire::{
    BackendMessage, FrontendMessage, TransactionStatus, PQ_LARGE_MESSAGE_LIMIT,
};
use walstream_protocol::{Lsn, TimeLineId};

use super::query::{unexpected, QueryResult, ResultCollector};
use super::{ConnError, ProtocolViolation, ReplicationConn, READ_CHUNK};

/// One server message in COPY mode (NoticeResponse and ParameterStatus are handled inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyEvent {
    /// A CopyData payload (`w` XLogData, `k` keepalive...), see
    /// `walstream_protocol::replication::parse_server_copy_data`.
    CopyData(Bytes),
    /// The server ended its side of the COPY (end of timeline, or our CopyDone answered).
    /// Next: [`ReplicationConn::finish_copy`] (after sending our CopyDone).
    CopyDone,
    /// CommandComplete without CopyDone, e.g. `COPY 0` when the walsender shuts down.
    CommandComplete(String),
    /// ReadyForQuery: the COPY is over.
    ReadyForQuery(TransactionStatus),
}

/// What followed the end of a COPY BOTH exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOfStream {
    /// The `(next_tli, next_tli_startpos)` row a walsender sends at the end of a historic
    /// timeline; `None` when the stream ended without one.
    pub next_timeline: Option<(TimeLineId, Lsn)>,
    /// The CommandComplete tags, in order (`START_STREAMING`, `START_REPLICATION`).
    pub command_tags: Vec<String>,
}

impl QueryResult {
    /// Reads a `(next_tli, next_tli_startpos)` result set: `None` when there are no columns.
    ///
    /// # Errors
    /// [`ConnError::Protocol`] for another shape or unparsable values (pg_receivewal's texts).
    pub fn next_timeline(&self) -> Result<Option<(TimeLineId, Lsn)>, ConnError> {
        if self.columns.is_empty() {
            return Ok(None);
        }
        // receivelog.c: ReadEndOfStreamingResult
        if self.columns.len() < 2 || self.rows.len() != 1 {
            return Err(ConnError::Protocol(ProtocolViolation::EndOfTimelineShape {
                rows: self.rows.len(),
                fields: self.columns.len(),
            }));
        }
        let tli = self.get_text(0, 0).and_then(|t| t.parse::<u32>().ok());
        let start = self.get_text(0, 1).and_then(|s| Lsn::from_str(s).ok());
        match (tli, start) {
            (Some(tli), Some(start)) => Ok(Some((TimeLineId(tli), start))),
            _ => Err(ConnError::Protocol(ProtocolViolation::NextTimelineStart(
                self.get_text(0, 1).unwrap_or_default().to_string(),
            ))),
        }
    }
}

impl ReplicationConn {
    /// The next server message in COPY mode; cancellation safe (partial messages stay
    /// buffered).
    ///
    /// # Errors
    /// [`ConnError::Server`] for an ErrorResponse (its ReadyForQuery is read by the next
    /// query), [`ConnError::Protocol`] for a message COPY mode does not allow,
    /// [`ConnError::Closed`], [`ConnError::Io`].
    pub async fn recv_copy(&mut self) -> Result<CopyEvent, ConnError> {
        loop {
            if let Some(event) = self.parse_copy()? {
                return Ok(event);
            }
            self.fill().await?;
        }
    }

    /// Like [`Self::recv_copy`] without waiting: parses what is buffered or readable from
    /// the socket right now; `Ok(None)` when no whole message is there.
    ///
    /// # Errors
    /// As [`Self::recv_copy`].
    pub fn try_recv_copy(&mut self) -> Result<Option<CopyEvent>, ConnError> {
        if let Some(event) = self.parse_copy()? {
            return Ok(Some(event));
        }
        self.read_buf.reserve(READ_CHUNK);
        match self.stream.try_read_buf(&mut self.read_buf) {
            Ok(0) => Err(ConnError::Closed),
            Ok(_) => self.parse_copy(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a whole message is already buffered, so the next [`Self::recv_copy`]
    /// returns without reading the socket (drain a burst, then flush).
    pub fn has_buffered(&self) -> bool {
        let Some(word) = self.read_buf.get(1..5) else {
            return false;
        };
        let len = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        usize::try_from(len).is_ok_and(|len| self.read_buf.len() > len)
    }

    /// Sends one CopyData message carrying `payload` (a standby status update `r`,
    /// hot standby feedback `h`) and flushes it.
    ///
    /// # Errors
    /// [`ConnError::Protocol`] for a payload above 1 GB, [`ConnError::Io`].
    pub async fn send_copy_data(&mut self, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() > (PQ_LARGE_MESSAGE_LIMIT - 4) as usize {
            return Err(ConnError::Protocol(ProtocolViolation::CopyDataTooLarge));
        }
        self.write_buf.clear();
        encode_copy_data_header(payload.len(), &mut self.write_buf);
        self.write_buf.extend_from_slice(payload);
        self.flush_write_buf().await
    }

    /// Sends CopyDone: we will send no more CopyData.
    ///
    /// # Errors
    /// [`ConnError::Io`].
    pub async fn send_copy_done(&mut self) -> Result<(), ConnError> {
        self.send(&FrontendMessage::CopyDone).await
    }

    /// After our CopyDone: reads what follows up to ReadyForQuery — the next-timeline
    /// result set if any, and the CommandCompletes. CopyData the server still sends
    /// before its CopyDone is discarded.
    ///
    /// # Errors
    /// [`ConnError::Server`] for an ErrorResponse, [`ConnError::Protocol`] for a result set
    /// of the wrong shape or another unexpected message, I/O errors.
    pub async fn finish_copy(&mut self) -> Result<EndOfStream, ConnError> {
        let mut collector = ResultCollector::default();
        let mut discarded = 0usize;
        loop {
            match self.next_message().await? {
                BackendMessage::CopyData(_) => discarded += 1,
                BackendMessage::CopyDone => {}
                msg => {
                    if collector.feed(msg)? {
                        break;
                    }
                }
            }
        }
        if discarded > 0 {
            tracing::debug!(discarded, "CopyData discarded after our CopyDone");
        }
        self.ready_pending = false;
        let (result, command_tags) = collector.finish()?;
        Ok(EndOfStream { next_timeline: result.next_timeline()?, command_tags })
    }

    /// The next buffered COPY-mode message, if a whole one is buffered.
    fn parse_copy(&mut self) -> Result<Option<CopyEvent>, ConnError> {
        match self.parse_buffered()? {
            Some(msg) => self.copy_event(msg).map(Some),
            None => Ok(None),
        }
    }

    /// A COPY-mode message as its event; an ErrorResponse or a message COPY mode does not
    /// allow is the error.
    pub(super) fn copy_event(&mut self, msg: BackendMessage) -> Result<CopyEvent, ConnError> {
        let event = match msg {
            BackendMessage::CopyData(data) => CopyEvent::CopyData(data),
            BackendMessage::CopyDone => CopyEvent::CopyDone,
            BackendMessage::CommandComplete(tag) => CopyEvent::CommandComplete(tag),
            BackendMessage::ReadyForQuery(status) => CopyEvent::ReadyForQuery(status),
            BackendMessage::ErrorResponse(fields) => {
                // An ERROR (not FATAL) is followed by ReadyForQuery (postgres.c: PostgresMain).
                let severity = fields.severity_nonlocalized.as_deref().unwrap_or(&fields.severity);
                self.ready_pending = severity == "ERROR";
                return Err(ConnError::Server(Box::new(fields)));
            }
            other => return Err(unexpected(&other, "during COPY")),
        };
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use walstream_protocol::wire::FieldDescription;

    use super::*;

    fn result(cols: &[&str], rows: &[&[&str]]) -> QueryResult {
        QueryResult {
            columns: cols.iter().map(|c| FieldDescription::new(*c, 25, -1)).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| Some(Bytes::copy_from_slice(v.as_bytes()))).collect())
                .collect(),
            tag: String::new(),
        }
    }

    #[test]
    fn next_timeline_row() {
        let r = result(&["next_tli", "next_tli_startpos"], &[&["2", "0/3000060"]]);
        assert_eq!(r.next_timeline().unwrap(), Some((TimeLineId(2), Lsn(0x300_0060))));
        assert_eq!(QueryResult::default().next_timeline().unwrap(), None);
        assert!(result(&["a"], &[&["2"]]).next_timeline().is_err());
        assert!(result(&["a", "b"], &[]).next_timeline().is_err());
        assert!(result(&["a", "b"], &[&["x", "0/1"]]).next_timeline().is_err());
        assert!(result(&["a", "b"], &[&["2", "zz"]]).next_timeline().is_err());
    }
}
