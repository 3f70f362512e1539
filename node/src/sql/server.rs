//! [`ServerContext`]: what a session needs from the running server outside the engine:
//! its initial settings, server functions (`pg_current_wal_lsn()`, ...), server relations
//! (`pg_stat_replication`, ...), `CHECKPOINT` and whether the server is in recovery.

use std::sync::Arc;

use parking_lot::Mutex;
use walstream_protocol::wire::{sqlstate, ErrorFields};

use crate::engine::{BoxFuture, SqlType, Value};
use crate::settings::NodeSettings;

pub use crate::engine::SyncCommit;

/// The `name` type (19).
pub const NAME: SqlType = SqlType::Other { oid: 19, typlen: 64, name: "name" };

/// A server function's signature, for describe and type checking.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFunction {
    /// Its argument types, in order (a call with other argument types gets 42883).
    pub args: Vec<SqlType>,
    /// Its output columns: one for a scalar function; several for a function returning a
    /// record (`pg_create_physical_replication_slot` returns `slot_name name, lsn
    /// pg_lsn`), which `SELECT f(...)` shows as the record's text `(s1,)` and
    /// `SELECT * FROM f(...)` as columns.
    pub returns: Vec<RelationColumn>,
    /// How many of the last `args` have defaults and may be left out (the call then gets
    /// fewer arguments).
    pub defaults: usize,
}

impl ServerFunction {
    /// A scalar function named `name` returning `ty`.
    pub fn scalar(name: &str, args: Vec<SqlType>, ty: SqlType) -> ServerFunction {
        ServerFunction { args, returns: vec![RelationColumn::new(name, ty)], defaults: 0 }
    }

    /// The type `SELECT f(...)` has: the single column's, or `record`.
    pub fn result_type(&self) -> SqlType {
        match self.returns.as_slice() {
            [one] => one.ty,
            _ => RECORD,
        }
    }
}

/// The `record` type (2249).
pub const RECORD: SqlType = SqlType::Other { oid: 2249, typlen: -1, name: "record" };

/// rowtypes.c: record_out: `(a,b)`, NULL as nothing, values with special characters
/// quoted.
pub fn record_text(types: &[SqlType], values: &[Value]) -> String {
    let mut out = String::from("(");
    for (i, (t, v)) in types.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let Some(text) = super::types::text_out(*t, v) else { continue };
        let quote = text.is_empty()
            || text
                .chars()
                .any(|c| matches!(c, '"' | '\\' | '(' | ')' | ',') || c.is_ascii_whitespace());
        if quote {
            out.push('"');
            for c in text.chars() {
                if c == '"' || c == '\\' {
                    out.push(c);
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    out.push(')');
    out
}

/// One column of a server relation.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: SqlType,
}

impl RelationColumn {
    /// A column.
    pub fn new(name: impl Into<String>, ty: SqlType) -> RelationColumn {
        RelationColumn { name: name.into(), ty }
    }
}

/// What lives outside the engine, as a session sees it. The running node implements it;
/// [`TestServer`] is a stand-in for tests.
pub trait ServerContext: Send + Sync + 'static {
    /// The settings a new session starts from (its SET/SHOW/RESET work on a copy).
    fn settings(&self) -> NodeSettings;

    /// Whether the server is in recovery (a hot standby): `pg_is_in_recovery()`.
    fn in_recovery(&self) -> bool;

    /// The server function named `name` (lower case), if there is one.
    fn function(&self, name: &str) -> Option<ServerFunction>;

    /// Calls server function `name` with `args` (already of its argument types) for the
    /// session of backend `pid`: one value per output column.
    ///
    /// # Errors
    /// The function's error, as PostgreSQL reports it.
    fn call<'a>(
        &'a self,
        name: &'a str,
        args: Vec<Value>,
        pid: i32,
    ) -> BoxFuture<'a, Result<Vec<Value>, ErrorFields>>;

    /// The columns of server relation `name` (lower case), if there is one.
    fn relation(&self, name: &str) -> Option<Vec<RelationColumn>>;

    /// The rows of server relation `name` now, each as long as its columns.
    ///
    /// # Errors
    /// The relation could not be read.
    fn relation_rows<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Vec<Value>>, ErrorFields>>;

    /// A session changed one of its settings (`SET application_name`, ...), for
    /// `pg_stat_activity`. The default ignores it.
    fn setting_changed(&self, _pid: i32, _name: &str, _value: &str) {}

    /// `CHECKPOINT`: returns once the checkpoint is done.
    ///
    /// # Errors
    /// The checkpoint failed.
    fn checkpoint(&self) -> BoxFuture<'_, Result<(), ErrorFields>>;

    /// `ALTER SYSTEM SET name = value` / `RESET name` (`value` `None`) / `RESET ALL`
    /// (`name` `None`), already validated: rewrites `postgresql.auto.conf`.
    ///
    /// # Errors
    /// The file could not be written (or, by default, there is no data directory).
    fn alter_system<'a>(
        &'a self,
        _name: Option<&'a str>,
        _value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ErrorFields>> {
        Box::pin(async {
            Err(ErrorFields::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "ALTER SYSTEM is not supported here",
            ))
        })
    }

    /// Counts reloads of the configuration files: a session that sees it change takes the
    /// new [`ServerContext::settings`] for what it did not SET. The default never reloads.
    fn settings_generation(&self) -> u64 {
        0
    }

    /// What tells `pg_stat_activity` that backend `pid` waits for a row lock; `None`
    /// (the default) tells no one.
    fn lock_wait_reporter(&self, _pid: i32) -> Option<crate::engine::WaitReporter> {
        None
    }

    /// On a hot standby: what asks backend `pid` to give up its transaction when replay
    /// must drop or truncate a table it read; `None` (the default) on a primary.
    fn recovery_conflict_handler(&self, _pid: i32) -> Option<crate::engine::ConflictHandler> {
        None
    }

    /// The WARNINGs and NOTICEs the function calls of backend `pid` raised since last
    /// asked, taken (PostgreSQL sends them as they are raised).
    fn take_notices(&self, _pid: i32) -> Vec<ErrorFields> {
        Vec::new()
    }

    /// `SyncRepWaitForLSN`: after the local commit of the record ending at `lsn`, waits
    /// until the synchronous standbys have written, flushed or applied it (as `level`
    /// asks) or the wait is interrupted. The default (no standbys) does not wait.
    fn sync_rep_wait(
        &self,
        _pid: i32,
        _lsn: u64,
        _level: SyncCommit,
    ) -> BoxFuture<'_, SyncRepWaitEnd> {
        Box::pin(async { SyncRepWaitEnd::NotWaited })
    }
}

/// How a commit's wait for synchronous replication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRepWaitEnd {
    /// No wait: `synchronous_commit` below `remote_write`, or no synchronous standbys
    /// are named.
    NotWaited,
    /// The synchronous standbys reached the commit.
    Released,
    /// A cancel request ended the wait; the transaction stays committed locally.
    Canceled,
    /// A terminate request ended the wait; the connection ends after the warning.
    Terminated,
}

/// A [`ServerContext`] for tests: default settings, `pg_backend_pid()`,
/// `pg_current_wal_lsn()` (a counter the test sets), `pg_is_in_recovery()`, a
/// `pg_stat_activity` of the sessions it was told about, and a `CHECKPOINT` counter.
#[derive(Debug, Default)]
pub struct TestServer {
    /// The settings sessions start from.
    pub settings: NodeSettings,
    /// What `pg_is_in_recovery()` says.
    pub recovery: bool,
    /// What `pg_current_wal_lsn()` says.
    pub lsn: Mutex<u64>,
    /// How many `CHECKPOINT`s ran.
    pub checkpoints: Mutex<u32>,
    /// Rows of `pg_stat_activity`: (pid, application_name, state).
    pub activity: Mutex<Vec<(i32, String, String)>>,
}

impl TestServer {
    /// A test server with default settings.
    pub fn new() -> Arc<TestServer> {
        Arc::new(TestServer::default())
    }
}

impl ServerContext for TestServer {
    fn settings(&self) -> NodeSettings {
        self.settings.clone()
    }

    fn in_recovery(&self) -> bool {
        self.recovery
    }

    fn function(&self, name: &str) -> Option<ServerFunction> {
        let f = |args: Vec<SqlType>, returns| Some(ServerFunction::scalar(name, args, returns));
        match name {
            "pg_backend_pid" => f(vec![], SqlType::Int4),
            "pg_current_wal_lsn" => f(vec![], SqlType::PgLsn),
            "pg_is_in_recovery" => f(vec![], SqlType::Bool),
            "pg_switch_wal" => f(vec![], SqlType::PgLsn),
            "pg_create_physical_replication_slot" => Some(ServerFunction {
                args: vec![NAME],
                returns: vec![
                    RelationColumn::new("slot_name", NAME),
                    RelationColumn::new("lsn", SqlType::PgLsn),
                ],
                defaults: 0,
            }),
            _ => None,
        }
    }

    fn call<'a>(
        &'a self,
        name: &'a str,
        args: Vec<Value>,
        pid: i32,
    ) -> BoxFuture<'a, Result<Vec<Value>, ErrorFields>> {
        let v = match name {
            "pg_backend_pid" => Ok(vec![Value::Int4(pid)]),
            "pg_current_wal_lsn" | "pg_switch_wal" => {
                Ok(vec![Value::Int8(*self.lsn.lock() as i64)])
            }
            "pg_is_in_recovery" => Ok(vec![Value::Bool(self.recovery)]),
            "pg_create_physical_replication_slot" => {
                Ok(vec![args.into_iter().next().unwrap_or(Value::Null), Value::Null])
            }
            _ => Err(ErrorFields::error(
                sqlstate::UNDEFINED_FUNCTION,
                format!("function {name}() does not exist"),
            )),
        };
        Box::pin(async move { v })
    }

    fn relation(&self, name: &str) -> Option<Vec<RelationColumn>> {
        (name == "pg_stat_activity").then(|| {
            vec![
                RelationColumn::new("pid", SqlType::Int4),
                RelationColumn::new("application_name", SqlType::Text),
                RelationColumn::new("state", SqlType::Text),
            ]
        })
    }

    fn relation_rows<'a>(
        &'a self,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Vec<Value>>, ErrorFields>> {
        let rows = self
            .activity
            .lock()
            .iter()
            .map(|(p, a, s)| vec![Value::Int4(*p), Value::Text(a.clone()), Value::Text(s.clone())])
            .collect();
        Box::pin(async move { Ok(rows) })
    }

    fn checkpoint(&self) -> BoxFuture<'_, Result<(), ErrorFields>> {
        *self.checkpoints.lock() += 1;
        Box::pin(async { Ok(()) })
    }
}
