//! XLogData payloads read from the socket straight into the caller's buffer (a segment
//! writer's staging buffer), with no copy through the connection's read buffer.
//!
//! A payload's length is known from its message header; the bytes still to come are read
//! with one `readv` into the caller's slice and a small tail buffer, which catches the
//! next message's header. So in steady streaming each 128 kB XLogData costs one read and
//! at most a few hundred bytes are copied.

use std::io::{self, IoSliceMut, Read};

use bytes::Buf;
use tokio::io::Interest;
use walstream_protocol::wire::PQ_LARGE_MESSAGE_LIMIT;
use walstream_protocol::Lsn;

use super::tls::Stream;
use super::{ConnError, CopyEvent, ReplicationConn};

/// Socket bytes read past a payload in the same call (the next message's header).
const TAIL: usize = 512;
/// `d`, the length word, `w`, dataStart, walEnd, sendTime.
const HEADER: usize = 1 + 4 + 1 + 8 + 8 + 8;

/// Where XLogData payload bytes go ([`ReplicationConn::recv_wal`]).
pub trait WalSink {
    /// The error of the sink; connection errors convert into it.
    type Error: From<ConnError>;

    /// A non-empty slice for payload bytes that belong at WAL position `pos`.
    ///
    /// # Errors
    /// The sink's: the stream stops with it.
    fn spare(&mut self, pos: Lsn) -> Result<&mut [u8], Self::Error>;

    /// The first `n` bytes of the last [`WalSink::spare`] slice were filled.
    ///
    /// # Errors
    /// The sink's: the stream stops with it.
    fn filled(&mut self, n: usize) -> Result<(), Self::Error>;
}

/// A COPY-mode event of [`ReplicationConn::recv_wal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEvent {
    /// An XLogData message whose payload, `len` bytes from `start`, is in the sink.
    XLogData {
        /// dataStart.
        start: Lsn,
        /// walEnd: the server's end of WAL when it sent the message.
        wal_end: Lsn,
        /// Payload bytes.
        len: usize,
    },
    /// Any other message (keepalives as `CopyData`).
    Other(CopyEvent),
}

/// An XLogData message whose payload is partly received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WalInProgress {
    start: Lsn,
    wal_end: Lsn,
    len: usize,
    got: usize,
}

impl WalInProgress {
    pub(super) fn remaining(&self) -> usize {
        self.len - self.got
    }

    pub(super) fn skip(&mut self, n: usize) {
        self.got += n.min(self.remaining());
    }
}

impl ReplicationConn {
    /// The next server message in COPY mode, as [`ReplicationConn::recv_copy`], except
    /// that XLogData payloads go into `sink`. Cancellation safe: a payload interrupted
    /// continues at the next call (into the sink at its position).
    ///
    /// # Errors
    /// As [`ReplicationConn::recv_copy`], and the sink's.
    pub async fn recv_wal<S: WalSink>(&mut self, sink: &mut S) -> Result<WalEvent, S::Error> {
        loop {
            if let Some(event) = self.poll_wal(sink)? {
                return Ok(event);
            }
            self.stream.readable().await.map_err(ConnError::from)?;
        }
    }

    /// Like [`ReplicationConn::recv_wal`] without waiting: `Ok(None)` when no whole
    /// message is there yet (part of a payload may have gone to the sink).
    ///
    /// # Errors
    /// As [`ReplicationConn::recv_wal`].
    pub fn try_recv_wal<S: WalSink>(&mut self, sink: &mut S) -> Result<Option<WalEvent>, S::Error> {
        self.poll_wal(sink)
    }

    fn poll_wal<S: WalSink>(&mut self, sink: &mut S) -> Result<Option<WalEvent>, S::Error> {
        loop {
            if let Some(mut m) = self.wal_in_progress {
                // Payload bytes that are already buffered.
                while m.got < m.len && !self.read_buf.is_empty() {
                    let dst = sink.spare(m.start + m.got as u64)?;
                    let n = dst.len().min(m.remaining()).min(self.read_buf.len());
                    dst[..n].copy_from_slice(&self.read_buf[..n]);
                    self.read_buf.advance(n);
                    m.got += n;
                    self.wal_in_progress = Some(m);
                    sink.filled(n)?;
                }
                if m.got == m.len {
                    self.wal_in_progress = None;
                    let WalInProgress { start, wal_end, len, .. } = m;
                    return Ok(Some(WalEvent::XLogData { start, wal_end, len }));
                }
                // The rest from the socket into the sink, what follows into `tail`.
                let dst = sink.spare(m.start + m.got as u64)?;
                let want = dst.len().min(m.remaining());
                let mut tail = [0u8; TAIL];
                let bufs = &mut [IoSliceMut::new(&mut dst[..want]), IoSliceMut::new(&mut tail)];
                let Some(n) = self.read_now(bufs)? else { return Ok(None) };
                let k = n.min(want);
                m.got += k;
                self.wal_in_progress = Some(m);
                self.read_buf.extend_from_slice(&tail[..n - k]);
                sink.filled(k)?;
                continue;
            }
            if let Some(m) = self.take_wal_header() {
                // An empty payload is complete at once, above.
                self.wal_in_progress = Some(m);
                continue;
            }
            // One message at a time: after a notice, an XLogData may come next.
            match self.parse_one()? {
                Some(Some(msg)) => return Ok(Some(WalEvent::Other(self.copy_event(msg)?))),
                Some(None) => continue,
                None => {}
            }
            // More bytes, a few: if they begin an XLogData, its payload comes straight
            // to the sink.
            let mut tail = [0u8; TAIL];
            let Some(n) = self.read_now(&mut [IoSliceMut::new(&mut tail)])? else {
                return Ok(None);
            };
            self.read_buf.extend_from_slice(&tail[..n]);
        }
    }

    /// One read of what the socket holds into `bufs`, in order, without waiting: `None`
    /// when there is nothing; the end of the stream is [`ConnError::Closed`].
    fn read_now(&mut self, bufs: &mut [IoSliceMut<'_>]) -> Result<Option<usize>, ConnError> {
        let read = match &mut self.stream {
            Stream::Plain(stream) => {
                let stream = &*stream;
                stream.try_io(Interest::READABLE, || {
                    (&*socket2::SockRef::from(stream)).read_vectored(bufs)
                })
            }
            // Decrypted bytes go into the first buffer only; the rest come next time.
            tls @ Stream::Tls { .. } => match bufs.first_mut() {
                Some(first) => tls.try_read(first),
                None => Ok(0),
            },
        };
        match read {
            Ok(0) => Err(ConnError::Closed),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The header of a buffered XLogData message, consumed, if the buffer starts with
    /// one of a valid length (anything else is left to the message parser).
    fn take_wal_header(&mut self) -> Option<WalInProgress> {
        let h = parse_xlogdata_header(&self.read_buf)?;
        self.read_buf.advance(HEADER);
        Some(WalInProgress { start: h.start, wal_end: h.wal_end, len: h.len, got: 0 })
    }
}

/// The header of an XLogData message (`d`, length word, `w`, dataStart, walEnd,
/// sendTime), read without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XLogDataHeader {
    /// dataStart.
    pub start: Lsn,
    /// walEnd.
    pub wal_end: Lsn,
    /// The payload's length, from the length word.
    pub len: usize,
}

/// Reads the XLogData header `buf` begins with; `None` if it does not begin with one
/// whose whole header is there and whose length word a walsender could send (at least
/// the header, at most the 1 GB message limit, not past the end of the WAL address
/// space), leaving any such message to the full parser.
pub fn parse_xlogdata_header(buf: &[u8]) -> Option<XLogDataHeader> {
    let b = buf.get(..HEADER)?;
    if b[0] != b'd' || b[5] != b'w' {
        return None;
    }
    let word = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let len = u32::from_be_bytes(b[1..5].try_into().expect("4 bytes"));
    if !(HEADER as u32 - 1..=PQ_LARGE_MESSAGE_LIMIT).contains(&len) {
        return None;
    }
    let payload = (len as usize) - (HEADER - 1);
    word(6).checked_add(payload as u64)?;
    Some(XLogDataHeader { start: Lsn(word(6)), wal_end: Lsn(word(14)), len: payload })
}

/// Fuzz entry point: [`parse_xlogdata_header`] never panics, and where it reads a header
/// the full message parser reads the same message the same way.
pub fn fuzz_wal_header(data: &[u8]) {
    let Some(h) = parse_xlogdata_header(data) else { return };
    // The same header with a payload of its length (capped: the parser's answer for the
    // header does not depend on the payload's bytes).
    if h.len > 1 << 16 {
        return;
    }
    let mut msg = bytes::BytesMut::from(&data[..HEADER]);
    msg.resize(HEADER + h.len, 0xA5);
    let parsed = walstream_protocol::wire::parse_backend(&mut msg);
    let Ok(Some(walstream_protocol::wire::BackendMessage::CopyData(payload))) = parsed else {
        panic!("parse_xlogdata_header read {h:?}, the parser {parsed:?}");
    };
    match walstream_protocol::replication::parse_server_copy_data(payload) {
        Ok(walstream_protocol::replication::ServerCopyData::XLogData(x)) => {
            assert_eq!((x.start, x.wal_end, x.data.len()), (h.start, h.wal_end, h.len));
        }
        other => panic!("parse_xlogdata_header read {h:?}, the parser {other:?}"),
    }
}
