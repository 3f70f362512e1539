//! The messages inside CopyData during streaming replication (`walsender.c`,
//! `receivelog.c`): XLogData `w` and keepalive `k` from the server, standby status
//! update `r` and hot standby feedback `h` from the client. Big-endian throughout.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::time::TimestampTz;
use crate::lsn::Xid;
use crate::wire::sqlstate;
use crate::Lsn;

/// Size of the XLogData header: `w`, start, end, send time.
pub const XLOGDATA_HEADER_LEN: usize = 25;
/// Size of a keepalive message.
pub const KEEPALIVE_LEN: usize = 18;
/// Size of a standby status update.
pub const STANDBY_STATUS_LEN: usize = 34;
/// Size of a hot standby feedback message.
pub const HOT_STANDBY_FEEDBACK_LEN: usize = 25;

/// A CopyData payload that is not a valid replication message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyDataError {
    /// Server to client: a type other than `w`/`k` (`receivelog.c: HandleCopyStream`).
    #[error("unrecognized streaming header: \"{}\"", char::from(*.0))]
    UnrecognizedStreamingHeader(u8),
    /// Server to client: shorter than its header (`receivelog.c`); the length is the
    /// whole payload's, type byte included.
    #[error("streaming header too small: {0}")]
    StreamingHeaderTooSmall(usize),
    /// Client to server: a type other than `r`/`h`
    /// (`walsender.c: ProcessStandbyMessage`; the walsender then exits).
    #[error("unexpected message type \"{}\"", char::from(*.0))]
    UnexpectedMessageType(u8),
    /// Client to server: an empty payload (`pqformat.c: pq_getmsgbyte`).
    #[error("no data left in message")]
    NoDataLeft,
    /// Client to server: shorter than its fields (`pqformat.c: pq_copymsgbytes`).
    #[error("insufficient data left in message")]
    InsufficientData,
}

impl CopyDataError {
    /// The SQLSTATE: `08P01` (`ERRCODE_PROTOCOL_VIOLATION`). The client-side errors have
    /// none in PostgreSQL (pg_receivewal just logs them); the same code is used.
    pub fn sqlstate(&self) -> &'static str {
        sqlstate::PROTOCOL_VIOLATION
    }
}

/// `w`: WAL bytes starting at `start`, with the server's WAL end and clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// `dataStart`: the position of the first byte of `data`.
    pub start: Lsn,
    /// `walEnd`: the end of WAL on the server.
    pub wal_end: Lsn,
    /// `sendTime`.
    pub send_time: TimestampTz,
    /// The WAL bytes (shares the received buffer, no copy).
    pub data: Bytes,
}

/// `k`: the server's WAL end and clock, and whether it wants an `r` right away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// `walEnd`.
    pub wal_end: Lsn,
    /// `sendTime`.
    pub send_time: TimestampTz,
    /// `replyRequested`.
    pub reply_requested: bool,
}

/// `r`: how far the standby has written, flushed and applied WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Written to disk (not necessarily flushed).
    pub write: Lsn,
    /// Flushed to disk.
    pub flush: Lsn,
    /// Applied (replayed).
    pub apply: Lsn,
    /// `sendTime`.
    pub send_time: TimestampTz,
    /// Whether the standby wants a `k` right away.
    pub reply_requested: bool,
}

/// `h`: the standby's oldest xmin, for `hot_standby_feedback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotStandbyFeedback {
    /// `sendTime`.
    pub send_time: TimestampTz,
    /// The standby's xmin (0 = none).
    pub xmin: Xid,
    /// Its epoch.
    pub xmin_epoch: u32,
    /// The standby's catalog xmin (0 = none).
    pub catalog_xmin: Xid,
    /// Its epoch.
    pub catalog_xmin_epoch: u32,
}

/// A CopyData payload from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCopyData {
    /// `w`.
    XLogData(XLogData),
    /// `k`.
    Keepalive(PrimaryKeepalive),
}

/// A CopyData payload from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCopyData {
    /// `r`.
    StandbyStatusUpdate(StandbyStatusUpdate),
    /// `h`.
    HotStandbyFeedback(HotStandbyFeedback),
}

/// Parses a CopyData payload the server sent, as `receivelog.c` reads it: bytes after a
/// keepalive's last field are ignored, as there.
///
/// # Errors
/// [`CopyDataError::UnrecognizedStreamingHeader`] for an unknown type,
/// [`CopyDataError::StreamingHeaderTooSmall`] for a short message (also an empty one).
pub fn parse_server_copy_data(mut payload: Bytes) -> Result<ServerCopyData, CopyDataError> {
    let len = payload.len();
    let Some(&kind) = payload.first() else {
        return Err(CopyDataError::StreamingHeaderTooSmall(0));
    };
    let need = match kind {
        b'w' => XLOGDATA_HEADER_LEN,
        b'k' => KEEPALIVE_LEN,
        other => return Err(CopyDataError::UnrecognizedStreamingHeader(other)),
    };
    if len < need {
        return Err(CopyDataError::StreamingHeaderTooSmall(len));
    }
    payload.advance(1);
    let lsn = |b: &mut Bytes| Lsn(b.get_u64());
    Ok(if kind == b'w' {
        let (start, wal_end) = (lsn(&mut payload), lsn(&mut payload));
        let send_time = TimestampTz(payload.get_i64());
        ServerCopyData::XLogData(XLogData { start, wal_end, send_time, data: payload })
    } else {
        let wal_end = lsn(&mut payload);
        let send_time = TimestampTz(payload.get_i64());
        let reply_requested = payload.get_u8() != 0;
        ServerCopyData::Keepalive(PrimaryKeepalive { wal_end, send_time, reply_requested })
    })
}

/// Parses a CopyData payload the client sent, as `walsender.c: ProcessStandbyMessage`
/// reads it: bytes after the last field are ignored, as there.
///
/// # Errors
/// [`CopyDataError::UnexpectedMessageType`] for a type other than `r`/`h`,
/// [`CopyDataError::NoDataLeft`] for an empty payload and
/// [`CopyDataError::InsufficientData`] for a short one.
pub fn parse_client_copy_data(mut payload: Bytes) -> Result<ClientCopyData, CopyDataError> {
    let Some(&kind) = payload.first() else { return Err(CopyDataError::NoDataLeft) };
    let need = match kind {
        b'r' => STANDBY_STATUS_LEN,
        b'h' => HOT_STANDBY_FEEDBACK_LEN,
        other => return Err(CopyDataError::UnexpectedMessageType(other)),
    };
    if payload.len() < need {
        return Err(CopyDataError::InsufficientData);
    }
    payload.advance(1);
    let p = &mut payload;
    Ok(if kind == b'r' {
        let (write, flush, apply) = (Lsn(p.get_u64()), Lsn(p.get_u64()), Lsn(p.get_u64()));
        let send_time = TimestampTz(p.get_i64());
        let reply_requested = p.get_u8() != 0;
        let r = StandbyStatusUpdate { write, flush, apply, send_time, reply_requested };
        ClientCopyData::StandbyStatusUpdate(r)
    } else {
        let send_time = TimestampTz(p.get_i64());
        let (xmin, xmin_epoch) = (Xid(p.get_u32()), p.get_u32());
        let (catalog_xmin, catalog_xmin_epoch) = (Xid(p.get_u32()), p.get_u32());
        let h =
            HotStandbyFeedback { send_time, xmin, xmin_epoch, catalog_xmin, catalog_xmin_epoch };
        ClientCopyData::HotStandbyFeedback(h)
    })
}

impl XLogData {
    /// Writes the 25-byte header alone, so that the WAL bytes can follow from their own
    /// buffer without being copied (`walsender.c: XLogSendPhysical`).
    pub fn encode_header(start: Lsn, wal_end: Lsn, send_time: TimestampTz, buf: &mut BytesMut) {
        buf.reserve(XLOGDATA_HEADER_LEN);
        buf.put_u8(b'w');
        buf.put_u64(start.0);
        buf.put_u64(wal_end.0);
        buf.put_i64(send_time.0);
    }

    /// The 25-byte header of this message.
    pub fn header(&self) -> [u8; XLOGDATA_HEADER_LEN] {
        let mut out = [0u8; XLOGDATA_HEADER_LEN];
        let mut w = &mut out[..];
        w.put_u8(b'w');
        w.put_u64(self.start.0);
        w.put_u64(self.wal_end.0);
        w.put_i64(self.send_time.0);
        out
    }

    /// Writes the header and copies the data after it.
    pub fn encode(&self, buf: &mut BytesMut) {
        Self::encode_header(self.start, self.wal_end, self.send_time, buf);
        buf.extend_from_slice(&self.data);
    }
}

impl PrimaryKeepalive {
    /// Writes the 18 bytes (`walsender.c: WalSndKeepalive`).
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(KEEPALIVE_LEN);
        buf.put_u8(b'k');
        buf.put_u64(self.wal_end.0);
        buf.put_i64(self.send_time.0);
        buf.put_u8(u8::from(self.reply_requested));
    }
}

impl StandbyStatusUpdate {
    /// Writes the 34 bytes (`walreceiver.c: XLogWalRcvSendReply`).
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(STANDBY_STATUS_LEN);
        buf.put_u8(b'r');
        buf.put_u64(self.write.0);
        buf.put_u64(self.flush.0);
        buf.put_u64(self.apply.0);
        buf.put_i64(self.send_time.0);
        buf.put_u8(u8::from(self.reply_requested));
    }
}

impl HotStandbyFeedback {
    /// Writes the 25 bytes (`walreceiver.c: XLogWalRcvSendHSFeedback`).
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.reserve(HOT_STANDBY_FEEDBACK_LEN);
        buf.put_u8(b'h');
        buf.put_i64(self.send_time.0);
        buf.put_u32(self.xmin.0);
        buf.put_u32(self.xmin_epoch);
        buf.put_u32(self.catalog_xmin.0);
        buf.put_u32(self.catalog_xmin_epoch);
    }
}

impl ServerCopyData {
    /// Writes the message.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            ServerCopyData::XLogData(w) => w.encode(buf),
            ServerCopyData::Keepalive(k) => k.encode(buf),
        }
    }
}

impl ClientCopyData {
    /// Writes the message.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            ClientCopyData::StandbyStatusUpdate(r) => r.encode(buf),
            ClientCopyData::HotStandbyFeedback(h) => h.encode(buf),
        }
    }
}

#[cfg(test)]
#[path = "copyboth_tests.rs"]
mod tests;
