//! walstream-sender: the server side of streaming replication.
//!
//! # Layout
//! The modules follow a connection's life, from accept to streaming:
//! - [`config`]: the settings, by PostgreSQL's GUC names and units (`-c name=value`).
//! - [`guc`]: PostgreSQL 15's parameter names and when each may be set, for a startup
//!   packet's settings.
//! - [`postmaster`]: the accept loop; SSLRequest/GSSENCRequest, the startup packet,
//!   CancelRequest, the connection caps, shutdown.
//! - [`hba`] and [`auth`]: `pg_hba.conf` rules, roles and their verifiers, and the
//!   server side of trust, password, md5, SCRAM-SHA-256(-PLUS) and client certificates.
//! - [`tls`] and [`tls_info`]: TLS from the `ssl*` settings, the socket before and after
//!   the handshake, and what `pg_stat_ssl` shows of it.
//! - [`conn`]: framing on the socket: read one frontend message, write backend messages.
//! - [`registry`]: the backend table (pid, cancel key, type, state, query, client,
//!   start times, walsender positions): what `pg_stat_activity`, `pg_stat_replication`,
//!   `pg_terminate_backend` and `pg_cancel_backend` read and act on.
//! - [`session`]: what the loop and the walsender share: the [`session::Connection`], why a
//!   backend ended ([`session::BackendEnd`]), and the FATAL/ERROR sent when interrupted.
//! - [`backend`]: the loop modelled on `PostgresMain` (`tcop/postgres.c`), and the
//!   [`backend::query::QueryHandler`] trait that answers ordinary SQL.
//! - [`lag`]: `write_lag`, `flush_lag`, `replay_lag` as the walsender's LagTracker measures them, for `pg_stat_replication`.
//! - [`views`]: the system views (`pg_stat_activity`, `pg_stat_replication`,
//!   `pg_replication_slots`) as rows of `Datum`s, shared by `walstream serve` and the node.
//! - [`serve_handler`]: the SQL `walstream serve` answers (`SELECT 1`, `SHOW`, the views,
//!   the signalling functions).
//! - [`walsender`]: replication commands and streaming (`replication/walsender.c`).
//! - [`walsource`]: where the walsender reads WAL from ([`walsource::WalSource`]): a
//!   directory of segment files that may grow while it is served, or WAL its writer hands
//!   over, served from memory while recent ([`walsource::MemWalSource`]).
//! - [`slots`]: physical replication slots, persistent and temporary, and the WAL they retain.
//! - [`retention`]: which old segments may be removed (opt-in, `max_wal_size`).
//! - [`basebackup`]: `BASE_BACKUP` from a [`basebackup::BackupSource`] the server supplies.
//! - [`syncrep`]: synchronous replication's rules: `synchronous_standby_names`, standby
//!   priorities, which standbys are synchronous and the positions they all reached.

// Errors a client sees are `ErrorFields` (PostgreSQL's every field, ~450 bytes). They are
// the cold path of every command, so they travel by value rather than boxed.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod backend;
pub mod basebackup;
pub mod config;
pub mod conn;
pub mod guc;
pub mod hba;
pub mod lag;
pub mod postmaster;
pub mod registry;
pub mod retention;
pub mod serve_handler;
pub mod session;
pub mod slots;
pub mod syncrep;
pub mod tls;
pub mod tls_info;
pub mod views;
pub mod walsender;
pub mod walsource;

pub use walstream_protocol as protocol;
