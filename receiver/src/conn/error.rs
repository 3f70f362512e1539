//! `ConnError`: why a replication connection failed, and whether trying again may help.

use std::io;

use walstream_protocol::replication::{CopyDataError, IdentifySystemError};
use walstream_protocol::timeline::HistoryError;
use walstream_protocol::wire::{sqlstate, ErrorFields, WireError};

/// A failed connection attempt, query or COPY exchange.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The TCP connection could not be made (libpq's wording).
    #[error("connection to server at \"{host}\", port {port} failed: {source}")]
    Connect {
        /// Host as given.
        host: String,
        /// TCP port.
        port: u16,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// TLS could not be set up (libpq's wording, after the server's identity:
    /// `"localhost" (127.0.0.1), port 5432`).
    #[error("connection to server at {at} failed: {message}")]
    Tls {
        /// Which server, as libpq names it.
        at: String,
        /// What failed (`SSL error: certificate verify failed`).
        message: String,
    },
    /// A read or write failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server closed the connection while a message was expected.
    #[error("server closed the connection unexpectedly")]
    Closed,
    /// An ErrorResponse from the server (FATAL during startup, ERROR afterwards).
    #[error("{}", server_text(.0))]
    Server(Box<ErrorFields>),
    /// A message that is malformed or not allowed at this point.
    #[error(transparent)]
    Protocol(#[from] ProtocolViolation),
    /// Authentication could not proceed on our side (no password, unsupported method,
    /// a SCRAM server proof that does not verify).
    #[error("{0}")]
    Auth(String),
    /// `connect_timeout` expired before the connection was ready.
    #[error("timeout expired")]
    Timeout,
    /// The connection settings cannot work with this server (e.g. TLS required).
    #[error("{0}")]
    Config(String),
}

fn server_text(fields: &ErrorFields) -> String {
    let mut text = format!("{}:  {}", fields.severity, fields.message);
    if let Some(detail) = &fields.detail {
        text.push_str(&format!("\nDETAIL:  {detail}"));
    }
    text
}

/// What the server did that the protocol does not allow, with libpq's and
/// pg_receivewal's texts.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolViolation {
    /// A message that did not parse.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A message of a type not expected here (`fe-protocol3.c`).
    #[error("unexpected message type \"{}\" {context}", char::from(*.tag))]
    UnexpectedMessage {
        /// Its type byte.
        tag: u8,
        /// Where: `during startup`, `during COPY`, `in a query result`.
        context: &'static str,
    },
    /// `fe-connect.c: PQconnectPoll` (CONNECTION_AWAITING_RESPONSE).
    #[error("expected authentication request from server, but received {}", char::from(*.0))]
    NotAuthentication(u8),
    /// A SASL continue or final message outside a SASL exchange.
    #[error("SASL message received without a SASL exchange in progress")]
    SaslOutOfOrder,
    /// The answer to SSLRequest was neither `S` nor `N` (`fe-connect.c`).
    #[error("received invalid response to SSL negotiation: {}", char::from(*.0))]
    SslResponse(u8),
    /// `receivelog.c: ReadEndOfStreamingResult`, the shape.
    #[error(
        "unexpected result set after end-of-timeline: got {rows} rows and {fields} fields, expected 1 rows and 2 fields"
    )]
    EndOfTimelineShape {
        /// Rows received.
        rows: usize,
        /// Fields received.
        fields: usize,
    },
    /// `receivelog.c: ReadEndOfStreamingResult`, the position.
    #[error("could not parse next timeline's starting point \"{0}\"")]
    NextTimelineStart(String),
    /// `pg_basebackup.c`: a position result set of `BASE_BACKUP` of the wrong shape.
    #[error(
        "server returned unexpected response to BASE_BACKUP command; got {rows} rows and {fields} fields, expected 1 rows and 2 fields"
    )]
    BackupResultShape {
        /// Rows received.
        rows: usize,
        /// Fields received.
        fields: usize,
    },
    /// `pg_basebackup.c`: a position that does not parse.
    #[error("could not parse write-ahead log location \"{0}\"")]
    BackupPosition(String),
    /// `BASE_BACKUP` ended (ReadyForQuery) before its COPY OUT.
    #[error("BASE_BACKUP ended without sending a backup")]
    BackupNoCopy,
    /// Not the start position and the tablespace list before the COPY OUT.
    #[error("expected 2 result sets before the backup, got {0}")]
    BackupResultSets(usize),
    /// No end position after the backup.
    #[error("no write-ahead log end position returned from server")]
    BackupNoEnd,
    /// A CopyData we would send is over the 1 GB message limit.
    #[error("CopyData payload too large")]
    CopyDataTooLarge,
    /// IDENTIFY_SYSTEM's reply did not read.
    #[error(transparent)]
    IdentifySystem(#[from] IdentifySystemError),
    /// `SHOW wal_segment_size` gave a size PostgreSQL cannot have (`streamutil.c`).
    #[error(
        "WAL segment size must be a power of two between 1 MB and 1 GB, but the remote server reported a value of \"{0}\""
    )]
    SegSize(String),
    /// START_REPLICATION answered neither CopyBoth nor an end-of-timeline result.
    #[error("START_REPLICATION gave no stream")]
    NoStream,
    /// TIMELINE_HISTORY sent no file content.
    #[error("no history file for timeline {0}")]
    NoHistoryFile(u32),
    /// A history file that does not read.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A CopyData sub-message that does not parse.
    #[error(transparent)]
    CopyData(#[from] CopyDataError),
    /// XLogData not continuing the stream (`receivelog.c: ProcessXLogDataMsg`).
    #[error("got WAL data offset {got:08x}, expected {expected:08x}")]
    WalDataOffset {
        /// The offset in its segment of the XLogData's start.
        got: u32,
        /// The offset the stream had reached.
        expected: u32,
    },
}

impl From<WireError> for ConnError {
    fn from(e: WireError) -> ConnError {
        ConnError::Protocol(ProtocolViolation::Wire(e))
    }
}

impl ConnError {
    /// The server's error fields, for [`ConnError::Server`].
    pub fn server_fields(&self) -> Option<&ErrorFields> {
        match self {
            ConnError::Server(fields) => Some(fields),
            _ => None,
        }
    }

    /// The SQLSTATE of a server error.
    pub fn sqlstate(&self) -> Option<&str> {
        self.server_fields().map(|f| f.code.as_str())
    }

    /// Whether reconnecting later may succeed: network trouble, timeouts, and a server
    /// that is shutting down, starting up, out of connections, or reporting a connection
    /// exception (class 08). Authentication (class 28), configuration, protocol and other
    /// server errors are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnError::Connect { .. } | ConnError::Io(_) | ConnError::Closed => true,
            ConnError::Timeout => true,
            ConnError::Server(f) => {
                matches!(
                    f.code.as_str(),
                    sqlstate::ADMIN_SHUTDOWN
                        | sqlstate::CRASH_SHUTDOWN
                        | sqlstate::CANNOT_CONNECT_NOW
                        | sqlstate::TOO_MANY_CONNECTIONS
                ) || f.code.starts_with("08")
            }
            ConnError::Protocol(_)
            | ConnError::Auth(_)
            | ConnError::Config(_)
            | ConnError::Tls { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_or_permanent() {
        let server = |code: &str| ConnError::Server(Box::new(ErrorFields::fatal(code, "x")));
        assert!(server("57P01").is_transient());
        assert!(server("57P03").is_transient());
        assert!(server("08006").is_transient());
        assert!(!server("28P01").is_transient());
        assert!(!server("28000").is_transient());
        assert!(!server("XX000").is_transient());
        assert!(ConnError::Timeout.is_transient());
        assert!(ConnError::Closed.is_transient());
        assert!(!ConnError::Auth("fe_sendauth: no password supplied".into()).is_transient());
    }

    #[test]
    fn server_errors_read_like_libpq() {
        let mut f = ErrorFields::fatal("28P01", "password authentication failed for user \"u\"");
        assert_eq!(
            ConnError::Server(Box::new(f.clone())).to_string(),
            "FATAL:  password authentication failed for user \"u\""
        );
        f.detail = Some("d".into());
        assert!(ConnError::Server(Box::new(f)).to_string().ends_with("\nDETAIL:  d"));
    }

    #[test]
    fn protocol_violations_read_as_libpq_and_pg_receivewal_write_them() {
        let v = ProtocolViolation::UnexpectedMessage { tag: b'Z', context: "during COPY" };
        assert_eq!(v.to_string(), "unexpected message type \"Z\" during COPY");
        assert_eq!(
            ProtocolViolation::NotAuthentication(b'D').to_string(),
            "expected authentication request from server, but received D"
        );
        assert_eq!(
            ProtocolViolation::SslResponse(b'x').to_string(),
            "received invalid response to SSL negotiation: x"
        );
        assert_eq!(
            ProtocolViolation::WalDataOffset { got: 0x28, expected: 0x10 }.to_string(),
            "got WAL data offset 00000028, expected 00000010"
        );
        assert_eq!(
            ConnError::from(ProtocolViolation::EndOfTimelineShape { rows: 0, fields: 1 })
                .to_string(),
            "unexpected result set after end-of-timeline: got 0 rows and 1 fields, expected 1 rows and 2 fields"
        );
    }
}
