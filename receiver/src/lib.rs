//! walstream-receiver: the client side of streaming replication (connection,
//! streaming, segment files, apply, feedback).
//!
//! # Layout
//! - [`conninfo`]: libpq-compatible connection strings, `PG*` defaults and `~/.pgpass`.
//! - [`conn`]: a replication connection on tokio: startup, authentication, simple
//!   queries and CopyBoth.

pub use walstream_protocol as protocol;

pub mod conn;
pub mod conninfo;
