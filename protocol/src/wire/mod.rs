//! The frontend/backend protocol, version 3.0, in both directions.
//!
//! A server parses what clients send and encodes its replies; a client does the reverse.
//! Every parser takes bytes off the front of a `BytesMut` and answers `Ok(None)` when the
//! message is not complete yet; every encoder appends to the caller's `BytesMut`.
//!
//! - [`startup`]: the first packet (no type byte): StartupMessage, SSLRequest,
//!   GSSENCRequest, CancelRequest — [`parse_startup`].
//! - [`frontend`]: messages a client sends after startup — [`parse_frontend`].
//! - [`password`]: the context-dependent bodies of `p` messages.
//! - [`backend`]: messages a server sends — [`parse_backend`], [`BackendMessage::encode`].
//! - [`error_fields`]: the fields of ErrorResponse and NoticeResponse, in PostgreSQL's order.
//! - [`sqlstate`]: the SQLSTATE codes walstream reports.
//! - [`fuzz`]: `&[u8]` entry points for cargo-fuzz targets.

pub mod auth;
pub mod backend;
pub mod channel_binding;
mod codec;
pub mod error;
pub mod error_fields;
pub mod frontend;
pub mod fuzz;
pub mod password;
pub mod sqlstate;
pub mod startup;

#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod strategies;

pub use auth::Authentication;
pub use backend::{
    parse_backend, BackendMessage, CopyResponse, FieldDescription, TransactionStatus,
};
pub use error::WireError;
pub use error_fields::{ErrorFields, Severity};
pub use frontend::{parse_frontend, FrontendMessage, Target};
pub use password::SaslInitialResponse;
pub use startup::{
    encode_v2_error_response, parse_startup, ReplicationMode, StartupMessage, StartupPacket,
};

/// Largest length word of C, D, E, H, S, c, f and X messages (`libpq/libpq.h`).
pub const PQ_SMALL_MESSAGE_LIMIT: u32 = 10_000;
/// Largest length word of Q, P, B, F and d messages (`libpq/libpq.h`).
pub const PQ_LARGE_MESSAGE_LIMIT: u32 = 0x3fff_ffff;
/// Largest length word of a `p` message during authentication (`libpq/auth.h`).
pub const PG_MAX_AUTH_TOKEN_LENGTH: u32 = 65_535;
/// Largest startup packet body, after its length word (`libpq/pqcomm.h`).
pub const MAX_STARTUP_PACKET_LENGTH: u32 = 10_000;
/// Protocol version 3.0 as sent in a StartupMessage (`PG_PROTOCOL(3,0)`).
pub const PROTOCOL_3_0: u32 = 196_608;
/// CancelRequest code (`CANCEL_REQUEST_CODE`, `PG_PROTOCOL(1234,5678)`).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// SSLRequest code (`NEGOTIATE_SSL_CODE`, `PG_PROTOCOL(1234,5679)`).
pub const NEGOTIATE_SSL_CODE: u32 = 80_877_103;
/// GSSENCRequest code (`NEGOTIATE_GSS_CODE`, `PG_PROTOCOL(1234,5680)`).
pub const NEGOTIATE_GSS_CODE: u32 = 80_877_104;

/// The largest length word accepted for each class of frontend message.
///
/// The defaults are PostgreSQL 15's; tests and cautious servers may lower them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// For C, D, E, H, S, c, f and X.
    pub small: u32,
    /// For Q, P, B, F and d.
    pub large: u32,
    /// For `p` (password, SASL and GSS responses).
    pub auth: u32,
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits {
            small: PQ_SMALL_MESSAGE_LIMIT,
            large: PQ_LARGE_MESSAGE_LIMIT,
            auth: PG_MAX_AUTH_TOKEN_LENGTH,
        }
    }
}
