//! walstream-protocol: the formats PostgreSQL 15 speaks and writes, with no I/O.
//!
//! # Layout
//! - [`lsn`]: `Lsn`, `TimeLineId`, `XLogSegNo`, WAL segment sizes and segment file names.
//! - [`timeline`]: timeline history files (`0000000N.history`), parse and write.
//! - [`wal`]: WAL pages and records: CRC-32C, the sans-I/O decoder (`feed`/`poll`),
//!   the encoder, resource managers and record descriptions as pg_waldump prints them.
//! - [`wire`]: the frontend/backend protocol v3 messages in both directions,
//!   parsed incrementally from a `BytesMut` and encoded into the caller's buffer.
//! - [`text`]: the text and binary output of `float8`, `timestamptz` and `numeric`.
//! - [`replication`]: the replication command grammar of `repl_gram.y` and the
//!   CopyBoth sub-messages (`w`, `k`, `r`, `h`).
//!
//! Nothing here reads a file, opens a socket or asks for the time: time is an argument.

pub mod lsn;
pub mod replication;
pub mod text;
pub mod timeline;
pub mod wal;
pub mod wire;

pub use lsn::{Lsn, TimeLineId, WalSegSize, XLogSegNo};
