//! Framing on the socket: whole frontend messages in, backend messages out.
//!
//! The two halves are separate so that a walsender can read replies while it sends WAL.
//! [`PqReader::read_message`] is cancellation safe: a partial message stays in the
//! reader's buffer, so it can sit in a `select!` next to other work.

use bytes::{Bytes, BytesMut};

use crate::walsource::FileRange;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use walstream_protocol::wire::{
    parse_frontend, parse_startup, BackendMessage, ErrorFields, FrontendMessage, MessageLimits,
    StartupPacket, WireError,
};

/// Why reading a message failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The bytes are not a valid message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The socket failed.
    #[error("could not receive data from client: {0}")]
    Io(#[from] std::io::Error),
}

/// The reading half of a connection.
#[derive(Debug)]
pub struct PqReader<R> {
    io: R,
    buf: BytesMut,
    limits: MessageLimits,
}

impl<R: AsyncRead + Unpin> PqReader<R> {
    /// Wraps a reading half.
    pub fn new(io: R, limits: MessageLimits) -> Self {
        PqReader { io, buf: BytesMut::with_capacity(8192), limits }
    }

    /// The socket half (to swap it for an encrypted one after SSLRequest).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// Bytes received and not yet parsed (`pq_buffer_has_data`).
    pub fn has_buffered_data(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Reads more bytes into the buffer; false at end of file.
    async fn fill(&mut self) -> Result<bool, std::io::Error> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8192);
        }
        Ok(self.io.read_buf(&mut self.buf).await? > 0)
    }

    /// The startup packet; `None` at a clean end of file before any byte.
    ///
    /// # Errors
    /// A malformed packet, a socket error, or end of file inside a packet.
    pub async fn read_startup(&mut self) -> Result<Option<StartupPacket>, ConnError> {
        loop {
            if let Some(packet) = parse_startup(&mut self.buf)? {
                return Ok(Some(packet));
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// The next frontend message; `None` at end of file (`pq_getbyte` returning EOF).
    /// Cancellation safe.
    ///
    /// # Errors
    /// A malformed message or a socket error. End of file inside a message is `None`
    /// too, as PostgreSQL treats it (`unexpected EOF on client connection`).
    pub async fn read_message(&mut self) -> Result<Option<FrontendMessage>, ConnError> {
        loop {
            if let Some(message) = parse_frontend(&mut self.buf, &self.limits)? {
                return Ok(Some(message));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }
}

impl<R: AsyncRead + Unpin> PqReader<R> {
    /// Like [`PqReader::read_message`], but judges the type byte first, as a walsender in
    /// COPY mode does (`walsender.c: ProcessRepliesIfAny`): a type `accept` refuses comes
    /// back as `Some(Err(type))` as soon as its first byte arrives, the rest unread.
    /// Cancellation safe.
    ///
    /// # Errors
    /// A malformed message of an accepted type, or a socket error.
    pub async fn read_message_filtered(
        &mut self,
        accept: fn(u8) -> bool,
    ) -> Result<Option<Result<FrontendMessage, u8>>, ConnError> {
        loop {
            if let Some(&tag) = self.buf.first() {
                if !accept(tag) {
                    return Ok(Some(Err(tag)));
                }
            }
            if let Some(message) = parse_frontend(&mut self.buf, &self.limits)? {
                return Ok(Some(Ok(message)));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }
}

/// `PqSendBuffer`'s size (`pqcomm.c: PQ_SEND_BUFFER_SIZE`): past this many queued bytes
/// the main loop writes without waiting for ReadyForQuery.
pub const PQ_SEND_BUFFER_SIZE: usize = 8192;

/// The writing half of a connection: messages are buffered until [`PqWriter::flush`].
#[derive(Debug)]
pub struct PqWriter<W> {
    io: W,
    buf: BytesMut,
    /// An ErrorResponse or NoticeResponse is queued: `elog.c: send_message_to_frontend`
    /// flushes those at once.
    urgent: bool,
    /// The plain TCP socket under `io`, when there is one (not under TLS): file ranges
    /// can then go to it with `sendfile` ([`PqWriter::write_with_files`]).
    tcp_of: Option<fn(&W) -> Option<&tokio::net::TcpStream>>,
}

impl<W: AsyncWrite + Unpin> PqWriter<W> {
    /// Wraps a writing half.
    pub fn new(io: W) -> Self {
        PqWriter {
            io,
            buf: BytesMut::with_capacity(PQ_SEND_BUFFER_SIZE),
            urgent: false,
            tcp_of: None,
        }
    }

    /// Wraps a writing half that may be a plain TCP socket, `tcp_of` giving the socket
    /// while it is one (`None` once it is TLS): WAL in files can then be sent without
    /// passing through user space.
    pub fn with_socket(io: W, tcp_of: fn(&W) -> Option<&tokio::net::TcpStream>) -> Self {
        PqWriter { tcp_of: Some(tcp_of), ..PqWriter::new(io) }
    }

    /// Whether [`PqWriter::write_with_files`] can be used (a plain socket, no TLS).
    pub fn sends_files(&self) -> bool {
        self.tcp_of.and_then(|f| f(&self.io)).is_some()
    }

    /// Writes everything queued (corked with `MSG_MORE`), then `ranges` of files straight
    /// from the page cache to the socket with `sendfile(2)`: how XLogData goes out when its
    /// WAL is in a segment file.
    ///
    /// # Errors
    /// The socket failed; [`std::io::ErrorKind::Unsupported`] without a plain socket;
    /// [`std::io::ErrorKind::UnexpectedEof`] when a file holds fewer bytes than its range
    /// says (the message on the wire is then incomplete: the connection must end).
    pub async fn write_with_files(&mut self, ranges: &[FileRange]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        use tokio::io::Interest;
        let Some(tcp) = self.tcp_of.and_then(|f| f(&self.io)) else {
            return Err(std::io::ErrorKind::Unsupported.into());
        };
        self.urgent = false;
        let sock = tcp.as_raw_fd();
        while !self.buf.is_empty() {
            let head = &self.buf;
            let n = tcp
                .async_io(Interest::WRITABLE, || {
                    // SAFETY: send(2) reads `head.len()` bytes of a live buffer.
                    let r = unsafe {
                        libc::send(
                            sock,
                            head.as_ptr().cast(),
                            head.len(),
                            libc::MSG_MORE | libc::MSG_NOSIGNAL,
                        )
                    };
                    usize::try_from(r).map_err(|_| std::io::Error::last_os_error())
                })
                .await?;
            bytes::Buf::advance(&mut self.buf, n);
        }
        for range in ranges {
            let file = range.file.as_raw_fd();
            let mut offset = libc::off_t::try_from(range.offset)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            let mut left = range.len;
            while left > 0 {
                let n = tcp
                    .async_io(Interest::WRITABLE, || {
                        // SAFETY: sendfile(2) between two open descriptors; `offset` is a
                        // live local it advances.
                        let r = unsafe { libc::sendfile(sock, file, &mut offset, left) };
                        usize::try_from(r).map_err(|_| std::io::Error::last_os_error())
                    })
                    .await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "WAL segment file ended before the range sent",
                    ));
                }
                left -= n;
            }
        }
        Ok(())
    }

    /// The socket half (to swap it for an encrypted one after SSLRequest).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.io
    }

    /// Queues one message.
    pub fn send(&mut self, message: &BackendMessage) {
        if matches!(message, BackendMessage::ErrorResponse(_) | BackendMessage::NoticeResponse(_)) {
            self.urgent = true;
        }
        message.encode(&mut self.buf);
    }

    /// Whether what is queued should be written now rather than with the next
    /// ReadyForQuery: an error or notice is queued, or the send buffer is full. PostgreSQL
    /// writes the rest at ReadyForQuery, at a Flush message, or when its buffer fills, so
    /// an extended-protocol exchange (Bind, Execute, Sync) is answered in one write.
    pub fn wants_flush(&self) -> bool {
        self.urgent || self.buf.len() >= PQ_SEND_BUFFER_SIZE
    }

    /// Queues an ErrorResponse.
    pub fn send_error(&mut self, fields: ErrorFields) {
        self.send(&BackendMessage::ErrorResponse(fields));
    }

    /// Queues raw, already encoded bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to encode into directly.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Writes everything queued, then `payload` straight from its own buffer (no copy):
    /// how XLogData goes out, its header queued and its WAL bytes borrowed.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn write_with_payload(&mut self, payload: &[Bytes]) -> std::io::Result<()> {
        if self.buf.len() + payload.iter().map(Bytes::len).sum::<usize>() <= 16 * 1024 {
            // Small messages: one write beats a vectored one.
            for piece in payload {
                self.buf.extend_from_slice(piece);
            }
            return self.flush().await;
        }
        let mut head = self.buf.split().freeze();
        let mut pieces: Vec<Bytes> = payload.to_vec();
        while !head.is_empty() || pieces.iter().any(|p| !p.is_empty()) {
            let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&head)
                .chain(pieces.iter())
                .filter(|b| !b.is_empty())
                .map(|b| std::io::IoSlice::new(b))
                .collect();
            let mut n = self.io.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            for b in std::iter::once(&mut head).chain(pieces.iter_mut()) {
                let k = n.min(b.len());
                bytes::Buf::advance(b, k);
                n -= k;
            }
        }
        self.io.flush().await
    }

    /// Writes everything queued (`pq_flush`).
    ///
    /// # Errors
    /// The socket failed.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.urgent = false;
        self.io.write_all_buf(&mut self.buf).await?;
        self.io.flush().await
    }

    /// Flushes, then shuts the socket down for writing.
    ///
    /// # Errors
    /// The socket failed.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.io.shutdown().await
    }

    /// Whether messages are queued and not yet written.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }
}
