//! walstream-node: a small database whose WAL is real PostgreSQL 15 WAL.
//!
//! # Layout
//! - [`engine`]: the I/O-free core: values and types, tables ordered by primary key,
//!   transactions at READ COMMITTED with row locks, the row changes a transaction logs
//!   ([`engine::Change`]) and their redo.
//! - [`sql`]: statements parsed by `sqlparser` (PostgreSQL dialect), bound and executed
//!   against the engine, with PostgreSQL 15's errors (SQLSTATE, message, DETAIL, position).
//! - [`xlog`]: the node's WAL: its records (a custom resource manager for row changes, real
//!   `XLOG_XACT_COMMIT`/`ABORT`, checkpoint and switch records), the WAL writer with group
//!   commit, segment files, the control file, and reading WAL back for recovery.
//! - [`conf`]: configuration files in `postgresql.conf` syntax (`postgresql.conf`,
//!   `postgresql.auto.conf`, includes).
//! - [`datadir`]: the data directory's layout, the postmaster's checks, the lock file and
//!   the signal files that choose the node's role.
//! - [`initdb`]: a new data directory.
//! - [`txnlog`]: the engine's transaction log over the WAL writer.
//! - [`checkpointer`]: checkpoints: the committed state to `base/`, the checkpoint record,
//!   the control file, old segments removed.
//! - [`startup`]: opening the database: the checkpoint state, redo to the end of valid WAL,
//!   the WAL writer opened where it ends.
//! - [`error`]: the node's error, wrapping each layer's.
//! - [`fuzz`]: the fuzz entry points of the node's decoders.
//! - [`replay`]: WAL records applied to the engine, for crash recovery and standbys.
//! - [`server`]: the running node: startup, the postmaster, the checkpointer and WAL
//!   writer tasks, shutdown.
//! - [`standby`]: the walreceiver streaming into `pg_wal` and the standby's replay.
//! - [`settings`]: the server's settings by PostgreSQL's GUC names, defaults and units.

// Errors a client sees are `ErrorFields` (PostgreSQL's every field); they are the cold path,
// so they travel by value rather than boxed, as in the sender.
#![allow(clippy::result_large_err)]

pub mod bgworker;
pub mod checkpointer;
pub mod conf;
pub mod datadir;
pub mod engine;
pub mod error;
pub mod fuzz;
pub mod initdb;
pub mod replay;
pub mod server;
pub mod settings;
pub mod sql;
pub mod standby;
pub mod startup;
pub mod txnlog;
pub mod xlog;

pub use walstream_protocol as protocol;
