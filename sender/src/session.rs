//! What the backend loop and the walsender share about one session: the connection past
//! authentication, why a backend ended, and the errors both send when interrupted
//! (`tcop/postgres.c: ProcessInterrupts`).
//!
//! It sits beneath [`crate::backend`] and [`crate::walsender`] so that neither needs the other
//! for these (the loop dispatches to the walsender; nothing goes back up).

use std::sync::Arc;

use walstream_protocol::wire::{sqlstate, ErrorFields, ReplicationMode};

use crate::conn::{PqReader, PqWriter};
use crate::registry::BackendEntry;

/// A connection past authentication: both halves of the socket and who it is.
pub struct Connection<R, W> {
    /// Reading half.
    pub reader: PqReader<R>,
    /// Writing half.
    pub writer: PqWriter<W>,
    /// This backend's registry entry.
    pub entry: Arc<BackendEntry>,
    /// The startup packet's `replication` parameter.
    pub replication: ReplicationMode,
}

/// Why a backend ended (expected endings are logged at info level).
#[derive(Debug)]
pub enum BackendEnd {
    /// The client sent Terminate.
    Terminate,
    /// The client closed the connection.
    Eof,
    /// The backend was terminated (FATAL 57P01 sent).
    Terminated,
    /// A FATAL error was sent (or, for a bad length word, only logged).
    Fatal(Box<ErrorFields>),
    /// The socket failed.
    Io(std::io::Error),
    /// The walsender ended the connection.
    WalSenderExit(WalSenderExit),
}

/// Why a walsender ended its connection without an error to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WalSenderExit {
    /// No reply for a whole `wal_sender_timeout`; the connection is closed without an
    /// ErrorResponse (`walsender.c: WalSndCheckTimeOut`).
    #[error("terminating walsender process due to replication timeout")]
    Timeout,
    /// At shutdown, everything was sent and the standby confirmed it; `COPY 0` was sent
    /// (`walsender.c: WalSndDone`).
    #[error("walsender stopped at shutdown: all WAL was replicated")]
    ShutdownDone,
    /// The standby sent a CopyData of a type other than `r` and `h`: PostgreSQL logs it
    /// (COMMERROR) and exits without a word to the client (`walsender.c:
    /// ProcessStandbyMessage`).
    #[error("unexpected message type \"{}\"", char::from(*.0))]
    UnexpectedMessageType(u8),
}

/// The FATAL a terminated backend sends (`postgres.c: ProcessInterrupts`).
pub fn admin_shutdown() -> ErrorFields {
    ErrorFields::fatal(
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection due to administrator command",
    )
}

/// `57014 canceling statement due to user request`.
pub fn query_canceled() -> ErrorFields {
    ErrorFields::error(sqlstate::QUERY_CANCELED, "canceling statement due to user request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walsender_exits_read_as_postgresql_logs_them() {
        assert_eq!(
            WalSenderExit::Timeout.to_string(),
            "terminating walsender process due to replication timeout"
        );
        assert_eq!(
            WalSenderExit::ShutdownDone.to_string(),
            "walsender stopped at shutdown: all WAL was replicated"
        );
        assert_eq!(
            WalSenderExit::UnexpectedMessageType(b'z').to_string(),
            "unexpected message type \"z\""
        );
    }
}
