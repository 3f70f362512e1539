//! A replication connection on tokio, as libpq and `libpqwalreceiver.c` use one: startup
//! and authentication, simple queries, and the CopyBoth exchange of START_REPLICATION.
//!
//! - `startup`: TCP, SSL negotiation, StartupMessage, authentication.
//! - `tls`: the TLS handshake as `sslmode` and the ssl files ask, libpq's checks and texts,
//!   and the socket, plain or encrypted.
//! - `query`: simple queries and the START_REPLICATION answer.
//! - `basebackup`: the client side of `BASE_BACKUP`.
//! - `copy`: reading and writing in COPY mode, and the end of a stream.
//! - `wal`: XLogData payloads read straight into the caller's buffer.
//!
//! Reads go through one buffer and are cancellation safe: a future dropped in `select!`
//! loses no bytes. Writes are not (a dropped send may leave half a message on the wire).

mod basebackup;
mod copy;
mod error;
mod query;
mod startup;
mod tls;
mod wal;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use walstream_protocol::wire::{parse_backend, BackendMessage, ErrorFields, FrontendMessage};

pub use basebackup::{BackupStarted, TablespaceRow};
pub use copy::{CopyEvent, EndOfStream};
pub use error::{ConnError, ProtocolViolation};
pub use query::{QueryResult, StartOutcome};
pub use tls::verify_peer_name;
pub use wal::{fuzz_wal_header, parse_xlogdata_header, WalEvent, WalSink, XLogDataHeader};
pub use walstream_protocol::wire::ReplicationMode;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 256 * 1024;

/// An open, authenticated connection to a walsender (or any PostgreSQL backend).
#[derive(Debug)]
pub struct ReplicationConn {
    stream: tls::Stream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    parameters: Vec<(String, String)>,
    backend_key: Option<(i32, u32)>,
    /// An ERROR was returned in COPY mode; its ReadyForQuery is still to be read.
    ready_pending: bool,
    /// An XLogData whose payload [`ReplicationConn::recv_wal`] has partly received.
    wal_in_progress: Option<wal::WalInProgress>,
    /// A write found the connection closed by the server (`PGconn.write_failed`): later
    /// output is discarded, and reading reports what the server said last.
    write_failed: bool,
}

impl ReplicationConn {
    fn new(stream: tls::Stream) -> ReplicationConn {
        ReplicationConn {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::new(),
            parameters: Vec::new(),
            backend_key: None,
            ready_pending: false,
            write_failed: false,
            wal_in_progress: None,
        }
    }

    /// A run-time parameter the server reported (ParameterStatus), e.g. `server_version`,
    /// `integer_datetimes`, `application_name`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every reported parameter, in the order first reported.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.parameters
    }

    /// The server version as `PQserverVersion` computes it: `15.18 (Debian 15.18-1)` →
    /// 150018, `9.6.1` → 90601; `None` when unknown.
    pub fn server_version_num(&self) -> Option<u32> {
        self.parameter("server_version").and_then(server_version_num)
    }

    /// The `tls-server-end-point` channel binding data: the server certificate's hash
    /// (`None` without TLS, or for a certificate whose signature has no hash).
    pub fn tls_server_end_point(&self) -> Option<Vec<u8>> {
        self.stream.server_end_point()
    }

    /// Whether the connection is encrypted by TLS.
    pub fn ssl_in_use(&self) -> bool {
        self.stream.is_tls()
    }

    /// The BackendKeyData `(pid, secret key)`, for a CancelRequest.
    pub fn backend_key(&self) -> Option<(i32, u32)> {
        self.backend_key
    }

    /// Sends Terminate and closes the socket; errors are ignored (the peer may be gone).
    pub async fn terminate(mut self) {
        let _ = self.send(&FrontendMessage::Terminate).await;
        let _ = self.stream.shutdown().await;
    }

    /// Encodes `msg` and writes it out.
    async fn send(&mut self, msg: &FrontendMessage) -> Result<(), ConnError> {
        self.write_buf.clear();
        msg.encode(&mut self.write_buf);
        self.flush_write_buf().await
    }

    async fn flush_write_buf(&mut self) -> Result<(), ConnError> {
        if self.write_failed {
            self.write_buf.clear();
            return Ok(());
        }
        let written = async {
            self.stream.write_all(&self.write_buf).await?;
            self.stream.flush().await
        }
        .await;
        self.write_buf.clear();
        match written {
            Ok(()) => Ok(()),
            // fe-misc.c: pqSendSome — a write to a connection the server has closed is not
            // the error to report: the output is discarded, and the read side reports the
            // server's last message (a walsender's FATAL) or that it closed the connection.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                self.write_failed = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads more bytes into the buffer (cancellation safe).
    ///
    /// # Errors
    /// [`ConnError::Closed`] at end of stream, [`ConnError::Io`].
    async fn fill(&mut self) -> Result<(), ConnError> {
        self.read_buf.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.read_buf).await? {
            0 => Err(ConnError::Closed),
            _ => Ok(()),
        }
    }

    /// The next buffered message that is not a NoticeResponse or ParameterStatus (those
    /// are logged or recorded here), without reading the socket.
    fn parse_buffered(&mut self) -> Result<Option<BackendMessage>, ConnError> {
        // The rest of a payload `recv_wal` did not finish (the stream is being ended) is
        // dropped: the next message begins after it.
        if let Some(mut m) = self.wal_in_progress.take() {
            let n = m.remaining().min(self.read_buf.len());
            bytes::Buf::advance(&mut self.read_buf, n);
            m.skip(n);
            if m.remaining() > 0 {
                self.wal_in_progress = Some(m);
                return Ok(None);
            }
        }
        while let Some(parsed) = self.parse_one()? {
            if let Some(msg) = parsed {
                return Ok(Some(msg));
            }
        }
        Ok(None)
    }

    /// One buffered message, `None` if no whole one is buffered. A NoticeResponse or
    /// ParameterStatus is logged or recorded here and comes back as `Some(None)`.
    fn parse_one(&mut self) -> Result<Option<Option<BackendMessage>>, ConnError> {
        let Some(msg) = parse_backend(&mut self.read_buf)? else { return Ok(None) };
        Ok(Some(match msg {
            BackendMessage::NoticeResponse(fields) => {
                log_notice(&fields);
                None
            }
            BackendMessage::ParameterStatus { name, value } => {
                self.set_parameter(name, value);
                None
            }
            other => Some(other),
        }))
    }

    /// The next message, as [`Self::parse_buffered`], reading as needed (cancellation safe).
    async fn next_message(&mut self) -> Result<BackendMessage, ConnError> {
        loop {
            if let Some(msg) = self.parse_buffered()? {
                return Ok(msg);
            }
            self.fill().await?;
        }
    }

    fn set_parameter(&mut self, name: String, value: String) {
        match self.parameters.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.parameters.push((name, value)),
        }
    }
}

/// Logs a NoticeResponse (libpq prints them to stderr).
fn log_notice(fields: &ErrorFields) {
    if fields.severity == "WARNING" {
        tracing::warn!(code = %fields.code, "{}", fields.message);
    } else {
        tracing::info!(severity = %fields.severity, code = %fields.code, "{}", fields.message);
    }
}

/// `PQserverVersion` from a `server_version` string (`fe-exec.c: pqSaveParameterStatus`).
fn server_version_num(value: &str) -> Option<u32> {
    let mut parts = Vec::with_capacity(3);
    let mut rest = value.trim_start();
    for _ in 0..3 {
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let Ok(n) = rest[..end].parse::<u32>() else {
            break;
        };
        parts.push(u64::from(n));
        match rest[end..].strip_prefix('.') {
            Some(after) => rest = after,
            None => break,
        }
    }
    // Each part fits in u32, so none of these overflow u64.
    let num = match parts.as_slice() {
        [major, minor, rev] => (100 * major + minor) * 100 + rev,
        [major, minor] if *major >= 10 => 10_000 * major + minor,
        [major, minor] => (100 * major + minor) * 100,
        [major] => 10_000 * major,
        _ => 0,
    };
    u32::try_from(num).ok().filter(|n| *n != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_version_like_pq_server_version() {
        assert_eq!(server_version_num("15.18 (Debian 15.18-1.pgdg120+1)"), Some(150_018));
        assert_eq!(server_version_num("15.4"), Some(150_004));
        assert_eq!(server_version_num("16devel"), Some(160_000));
        assert_eq!(server_version_num("9.6.1"), Some(90_601));
        assert_eq!(server_version_num("9.6"), Some(90_600));
        assert_eq!(server_version_num("x"), None);
        assert_eq!(server_version_num(""), None);
        assert_eq!(server_version_num("99999999999.1"), None);
    }
}
