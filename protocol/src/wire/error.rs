//! `WireError`: why bytes are not a valid message, with PostgreSQL's text and SQLSTATE.

use super::sqlstate;

/// A malformed startup packet or message.
///
/// The `Display` text is what PostgreSQL 15 says for the same fault, so a server can put it
/// in an ErrorResponse unchanged with [`WireError::sqlstate`]. Faults PostgreSQL only logs
/// (`COMMERROR`: the connection is closed without a reply) answer `false` to
/// [`WireError::reported_to_client`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A startup packet whose length word is below 8 or above 10004 (`10000` body bytes).
    #[error("invalid length of startup packet")]
    InvalidStartupLength {
        /// The length word as sent (it counts itself).
        len: u32,
    },
    /// A CancelRequest, SSLRequest or GSSENCRequest of the wrong size.
    #[error("invalid length of {request} packet")]
    InvalidRequestLength {
        /// `"cancel request"`, `"SSL request"` or `"GSSAPI encryption request"`.
        request: &'static str,
        /// The length word as sent.
        len: u32,
    },
    /// A protocol version other than 3.x. For a major version below 3 PostgreSQL answers
    /// with a protocol-2 error (see [`super::encode_v2_error_response`]).
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedProtocol {
        /// Requested major version.
        major: u16,
        /// Requested minor version.
        minor: u16,
    },
    /// Parameters that do not end with one NUL as the last byte of the packet.
    #[error("invalid startup packet layout: expected terminator as last byte")]
    StartupLayout,
    /// No `user`, or an empty one.
    #[error("no PostgreSQL user name specified in startup packet")]
    NoUserName,
    /// A `replication` value that is neither a boolean nor `database`.
    #[error("invalid value for parameter \"replication\": \"{0}\"")]
    InvalidReplicationParameter(String),
    /// A frontend message type byte PostgreSQL does not know.
    #[error("invalid frontend message type {0}")]
    UnknownFrontendType(u8),
    /// A backend message type byte a client does not know.
    #[error("unexpected message type 0x{0:02X}")]
    UnknownBackendType(u8),
    /// A length word below 4 or above the cap for that message type.
    #[error("invalid message length")]
    InvalidMessageLength {
        /// The message type byte.
        tag: u8,
        /// The length word as sent.
        len: u32,
    },
    /// The body ends before a field it must hold.
    #[error("insufficient data left in message")]
    InsufficientData {
        /// The message type byte.
        tag: u8,
    },
    /// Bytes left over after the last field.
    #[error("invalid message format")]
    InvalidMessageFormat {
        /// The message type byte.
        tag: u8,
    },
    /// A string field without its terminating NUL.
    #[error("invalid string in message")]
    InvalidString {
        /// The message type byte.
        tag: u8,
    },
    /// A string field that is not UTF-8.
    #[error("invalid byte sequence for encoding \"UTF8\"")]
    InvalidUtf8 {
        /// The message type byte.
        tag: u8,
    },
    /// A Describe or Close whose target is neither `S` nor `P`.
    #[error("invalid {message} message subtype {subtype}")]
    InvalidTarget {
        /// `"DESCRIBE"` or `"CLOSE"`.
        message: &'static str,
        /// The byte sent.
        subtype: u8,
    },
    /// A PasswordMessage whose NUL is not its last byte.
    #[error("invalid password packet size")]
    InvalidPasswordPacket,
    /// A PasswordMessage holding an empty password.
    #[error("empty password returned by client")]
    EmptyPassword,
    /// An Authentication request code a client does not know.
    #[error("authentication method {0} not supported")]
    UnknownAuthentication(i32),
    /// A ReadyForQuery status other than `I`, `T` or `E`.
    #[error("unexpected transaction status {0}")]
    InvalidTransactionStatus(u8),
    /// An ErrorResponse or NoticeResponse without a field it must carry (`S`, `C` or `M`).
    #[error("error or notice response without its {} field", char::from(*.0))]
    MissingErrorField(u8),
}

impl WireError {
    /// The SQLSTATE PostgreSQL reports for this fault.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            WireError::UnsupportedProtocol { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
            WireError::NoUserName => sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            WireError::EmptyPassword => sqlstate::INVALID_PASSWORD,
            WireError::InvalidReplicationParameter(_) => sqlstate::INVALID_PARAMETER_VALUE,
            WireError::InvalidUtf8 { .. } => sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }

    /// The HINT PostgreSQL adds, if any.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            // postmaster.c: ProcessStartupPacket
            WireError::InvalidReplicationParameter(_) => {
                Some("Valid values are: \"false\", 0, \"true\", 1, \"database\".")
            }
            _ => None,
        }
    }

    /// Whether PostgreSQL sends this fault to the client before closing (`FATAL`/`ERROR`),
    /// rather than only logging it (`COMMERROR`) and closing the connection silently.
    pub fn reported_to_client(&self) -> bool {
        !matches!(
            self,
            WireError::InvalidStartupLength { .. }
                | WireError::InvalidRequestLength { .. }
                | WireError::InvalidMessageLength { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_postgresql() {
        let e = WireError::UnsupportedProtocol { major: 4, minor: 1 };
        assert_eq!(e.to_string(), "unsupported frontend protocol 4.1: server supports 3.0 to 3.0");
        assert_eq!(e.sqlstate(), "0A000");
        assert_eq!(
            WireError::UnknownFrontendType(120).to_string(),
            "invalid frontend message type 120"
        );
        assert_eq!(WireError::NoUserName.sqlstate(), "28000");
        let e = WireError::InvalidReplicationParameter("maybe".into());
        assert_eq!(e.to_string(), "invalid value for parameter \"replication\": \"maybe\"");
        assert_eq!(e.sqlstate(), "22023");
        assert!(e.hint().is_some());
        let e = WireError::InvalidTarget { message: "DESCRIBE", subtype: 88 };
        assert_eq!(e.to_string(), "invalid DESCRIBE message subtype 88");
        assert_eq!(
            WireError::MissingErrorField(b'C').to_string(),
            "error or notice response without its C field"
        );
        assert!(!WireError::InvalidMessageLength { tag: b'S', len: 3 }.reported_to_client());
        assert!(WireError::StartupLayout.reported_to_client());
    }
}
