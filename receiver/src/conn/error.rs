//! `ConnError`: why a replication connection failed, and whether trying again may help.

use std::io;

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
    #[error("{0}")]
    Protocol(String),
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

impl From<WireError> for ConnError {
    fn from(e: WireError) -> ConnError {
        ConnError::Protocol(e.to_string())
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
            ConnError::Protocol(_) | ConnError::Auth(_) | ConnError::Config(_) => false,
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
}
