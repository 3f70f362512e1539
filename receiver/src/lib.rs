//! walstream-receiver: the client side of streaming replication.
//!
//! # Layout
//! - [`conninfo`]: libpq-style connection strings and URIs, `PG*` defaults, `~/.pgpass`.
//! - [`conn`]: a replication connection: startup, authentication (trust, password, md5,
//!   SCRAM-SHA-256), simple queries, and the CopyBoth exchange.
//! - [`segments`]: `.partial` segment files written at their exact offsets, flushed,
//!   renamed when complete; where to resume after a crash, validated by decoding.
//! - [`apply`]: records in LSN order to an [`apply::Apply`], verified on the way.
//! - [`stream`]: the walreceiver loop: identify, fetch timeline histories, stream, report
//!   write/flush/apply, follow timeline switches, reconnect.
//! - [`basebackup`]: taking a base backup as pg_basebackup does (plain format, WAL
//!   fetched or streamed, `-R`).

pub mod apply;
pub mod basebackup;
pub mod conn;
pub mod conninfo;
pub mod segments;
pub mod stream;

pub use walstream_protocol as protocol;
