//! SQL: statements parsed by `sqlparser`, bound and executed against the engine.
//!
//! - [`session`]: [`Session`], one per connection (the sender's `QuerySession`):
//!   transaction blocks, SET/SHOW/RESET, DDL, dispatch; [`handler`]: [`SqlHandler`], the
//!   sender's `QueryHandler` making them.
//! - [`query`]: SELECT; [`dml`]: INSERT/UPDATE/DELETE; [`expr`]: expressions bound and
//!   evaluated; [`types`]: type names, casts, result types; [`numeric`]: exact decimals.
//! - [`server`]: [`ServerContext`], what lives outside the engine (server functions and
//!   relations, CHECKPOINT, settings), and [`TestServer`] for tests.
//! - [`guc`]: a session's settings; [`error`]: PostgreSQL's errors.

pub mod dml;
pub mod error;
pub mod expr;
pub mod guc;
pub mod handler;
pub mod numeric;
pub mod query;
pub mod server;
pub mod session;
pub mod types;

pub use handler::SqlHandler;
pub use server::{RelationColumn, ServerContext, ServerFunction, SyncCommit, TestServer};
pub use session::Session;
pub use walstream_sender::backend::query::SessionInfo;

#[cfg(test)]
mod tests;

/// Fuzz entry point: any text run through a [`Session`] (simple query, then describe and
/// execute with parameters) over a small table never panics.
pub fn fuzz_sql(data: &[u8]) {
    use std::sync::Arc;
    use std::time::Duration;

    use walstream_sender::backend::query::{Param, QuerySession};

    use crate::engine::testlog::VolatileLog;
    use crate::engine::{Engine, FIRST_NORMAL_XID};

    let text = String::from_utf8_lossy(data).into_owned();
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_time().build() else {
        return;
    };
    rt.block_on(async move {
        let engine = Engine::new(FIRST_NORMAL_XID, Arc::new(VolatileLog::default()));
        let info = SessionInfo {
            pid: 1,
            user: "postgres".into(),
            database: "postgres".into(),
            application_name: "fuzz".into(),
            settings: Vec::new(),
        };
        let server: Arc<dyn ServerContext> = TestServer::new();
        let mut s = Session::new(engine, server, info);
        let limit = Duration::from_millis(200);
        let setup = "CREATE TABLE t (k int PRIMARY KEY, v text, f float8); \
                     INSERT INTO t SELECT i, 'v' || i, i / 2.0 FROM generate_series(1, 20) s(i)";
        let _ = s.simple_query(setup).await;
        let _ = tokio::time::timeout(limit, s.simple_query(&text)).await;
        if let Ok(Ok(d)) = tokio::time::timeout(limit, s.describe(&text, &[])).await {
            let params: Vec<Param> = d
                .params
                .iter()
                .enumerate()
                .map(|(i, &oid)| Param {
                    type_oid: oid,
                    format: 0,
                    value: Some(bytes::Bytes::from(if i % 2 == 0 { "1" } else { "x" })),
                })
                .collect();
            let _ = tokio::time::timeout(limit, s.execute(&text, &params)).await;
        }
        let _ = s.simple_query("ROLLBACK").await;
    });
}
