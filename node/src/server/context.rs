//! The running node's [`ServerContext`]: the WAL functions (`pg_current_wal_lsn()`,
//! `pg_switch_wal()`, `pg_last_wal_replay_lsn()`, ...), replication slot functions,
//! `pg_backend_pid()`, the system views and `CHECKPOINT`, with PostgreSQL 15's names,
//! types and errors (a primary's functions during recovery: 55000).

use std::sync::Arc;

use walstream_protocol::lsn::segment_file_name;
use walstream_protocol::wire::{sqlstate, ErrorFields};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_sender::backend::query::{Datum, DatumType};
use walstream_sender::registry::Registry;
use walstream_sender::slots::SlotStore;
use walstream_sender::views::{slot_rows, View};

use super::tasks::{request_checkpoint, CheckpointRequest};
use crate::checkpointer::CheckpointCause;
use crate::engine::{BoxFuture, SqlType, SyncCommit, Value};
use crate::settings::NodeSettings;
use crate::sql::server::SyncRepWaitEnd;
use crate::sql::server::NAME;
use crate::sql::{RelationColumn, ServerContext, ServerFunction};
use crate::standby::WalReceiverHandle;
use crate::xlog::WalWriter;

/// What the context reads, by role.
#[derive(Clone)]
pub(super) enum Side {
    /// A primary's WAL writer and checkpointer.
    Primary { writer: Arc<WalWriter>, checkpoints: tokio::sync::mpsc::Sender<CheckpointRequest> },
    /// A standby's walreceiver.
    Standby { receiver: Arc<WalReceiverHandle> },
}

/// The node as sessions see it.
pub(super) struct NodeContext {
    /// The settings new sessions start from; a reload changes them.
    pub(super) settings: Arc<parking_lot::RwLock<NodeSettings>>,
    /// The data directory (`ALTER SYSTEM` writes its `postgresql.auto.conf`).
    pub(super) dir: std::path::PathBuf,
    /// `pg_reload_conf()` asks for a reload here.
    pub(super) reload_requests: Arc<tokio::sync::Notify>,
    /// Reloads done so far.
    pub(super) generation: Arc<std::sync::atomic::AtomicU64>,
    pub(super) registry: Arc<Registry>,
    pub(super) slots: Arc<SlotStore>,
    pub(super) seg_size: WalSegSize,
    /// The role and timeline now (promotion changes both).
    pub(super) current: Arc<parking_lot::RwLock<Current>>,
    /// The roles (who is a superuser, for the signalling functions).
    pub(super) roles: Arc<walstream_sender::auth::Roles>,
    /// `pg_promote()` asks for promotion here, after writing the `promote` file.
    pub(super) promote_requests: Arc<tokio::sync::Notify>,
    /// Test builds: `walstream_fail_task(name)` makes a task or worker fail.
    pub(super) failpoints: crate::bgworker::Failpoints,
    /// WARNINGs raised by a session's function calls, until it takes them.
    pub(super) notices: parking_lot::Mutex<std::collections::HashMap<i32, Vec<ErrorFields>>>,
}

/// The node's role and timeline as sessions, the reloader and `BASE_BACKUP` see them.
#[derive(Clone)]
pub(super) struct Current {
    /// What the role offers.
    pub(super) side: Side,
    /// The timeline WAL is written (or replayed) on.
    pub(super) timeline: TimeLineId,
}

impl Current {
    /// Whether the node is a standby (`RecoveryInProgress()`).
    pub(super) fn in_recovery(&self) -> bool {
        matches!(self.side, Side::Standby { .. })
    }
}

const TEXT: SqlType = SqlType::Text;

fn recovery_in_progress(function: &str) -> ErrorFields {
    let mut e =
        ErrorFields::error(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, "recovery is in progress");
    e.hint = Some(format!("{function} cannot be executed during recovery."));
    e
}

fn wal_control_in_recovery() -> ErrorFields {
    let mut e =
        ErrorFields::error(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, "recovery is in progress");
    e.hint = Some("WAL control functions cannot be executed during recovery.".into());
    e
}

fn slot_error(e: &walstream_sender::slots::SlotError) -> ErrorFields {
    let mut f = ErrorFields::error(e.sqlstate(), e.to_string());
    f.hint = e.hint().map(str::to_string);
    f
}

fn lsn(v: Lsn) -> Value {
    Value::Int8(v.0 as i64)
}

fn arg_text(args: &[Value], i: usize) -> String {
    match args.get(i) {
        Some(Value::Text(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn arg_bool(args: &[Value], i: usize) -> bool {
    matches!(args.get(i), Some(Value::Bool(true)))
}

/// A sender view's column type as the engine's.
fn sql_type(t: DatumType) -> SqlType {
    match t {
        DatumType::Bool => SqlType::Bool,
        DatumType::Bytea => SqlType::Bytea,
        DatumType::Int8 => SqlType::Int8,
        DatumType::Int4 => SqlType::Int4,
        DatumType::Int2 => SqlType::Int2,
        DatumType::Text => SqlType::Text,
        DatumType::Float8 => SqlType::Float8,
        DatumType::Varchar => SqlType::Varchar(None),
        DatumType::Timestamptz => SqlType::Timestamptz,
        DatumType::Numeric => SqlType::Numeric,
        DatumType::PgLsn => SqlType::PgLsn,
        DatumType::Name => NAME,
        DatumType::TextOnly { oid: 3220, .. } => SqlType::PgLsn,
        DatumType::TextOnly { oid, typlen, name } => SqlType::Other { oid, typlen, name },
    }
}

/// A sender view's value as the engine's (`pg_lsn` text becomes its bits).
fn value(d: Datum, ty: SqlType) -> Value {
    match d {
        Datum::Null => Value::Null,
        Datum::Bool(b) => Value::Bool(b),
        Datum::Int2(v) => Value::Int2(v),
        Datum::Int4(v) => Value::Int4(v),
        Datum::Int8(v) => Value::Int8(v),
        Datum::Float8(v) => Value::Float8(v),
        Datum::Text(s) if ty == SqlType::PgLsn => {
            s.parse::<Lsn>().map_or(Value::Null, |l| Value::Int8(l.0 as i64))
        }
        Datum::Text(s) => Value::Text(s),
        Datum::Bytea(b) => Value::Bytea(b.to_vec()),
        Datum::Timestamptz(v) => Value::Timestamptz(v),
        Datum::Numeric(s) => Value::Numeric(s),
        Datum::PgLsn(v) => Value::Int8(v as i64),
    }
}

/// `pg_stat_wal_receiver`'s columns (PostgreSQL 15).
fn wal_receiver_columns() -> Vec<RelationColumn> {
    let other = |oid, typlen, name| SqlType::Other { oid, typlen, name };
    [
        ("pid", SqlType::Int4),
        ("status", TEXT),
        ("receive_start_lsn", SqlType::PgLsn),
        ("receive_start_tli", SqlType::Int4),
        ("written_lsn", SqlType::PgLsn),
        ("flushed_lsn", SqlType::PgLsn),
        ("received_tli", SqlType::Int4),
        ("last_msg_send_time", SqlType::Timestamptz),
        ("last_msg_receipt_time", SqlType::Timestamptz),
        ("latest_end_lsn", SqlType::PgLsn),
        ("latest_end_time", SqlType::Timestamptz),
        ("slot_name", other(19, 64, "name")),
        ("sender_host", TEXT),
        ("sender_port", SqlType::Int4),
        ("conninfo", TEXT),
    ]
    .into_iter()
    .map(|(n, t)| RelationColumn::new(n, t))
    .collect()
}

impl NodeContext {
    fn wal_receiver_rows(&self) -> Vec<Vec<Value>> {
        let Side::Standby { receiver } = self.side() else { return Vec::new() };
        let p = *receiver.positions.borrow();
        let state = receiver.state.borrow().clone();
        let status = match state {
            crate::standby::WalReceiverState::Streaming => "streaming",
            crate::standby::WalReceiverState::Waiting(_) => "waiting",
            crate::standby::WalReceiverState::Stopped => return Vec::new(),
        };
        let info = &*receiver.conninfo.borrow();
        vec![vec![
            Value::Int4(std::process::id() as i32),
            Value::Text(status.into()),
            lsn(receiver.start),
            Value::Int4(p.tli.0 as i32),
            lsn(p.write),
            lsn(p.flush),
            Value::Int4(p.tli.0 as i32),
            Value::Null,
            Value::Null,
            lsn(p.server_end),
            Value::Null,
            receiver.slot.clone().map_or(Value::Null, Value::Text),
            Value::Text(info.host.clone()),
            Value::Int4(i32::from(info.port)),
            Value::Text(info.redacted()),
        ]]
    }
}

impl ServerContext for NodeContext {
    fn sync_rep_wait(
        &self,
        pid: i32,
        lsn: u64,
        level: SyncCommit,
    ) -> BoxFuture<'_, SyncRepWaitEnd> {
        Box::pin(sync_rep_wait(&self.registry, pid, Lsn(lsn), level))
    }

    fn settings(&self) -> NodeSettings {
        self.settings.read().clone()
    }

    fn alter_system<'a>(
        &'a self,
        name: Option<&'a str>,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ErrorFields>> {
        Box::pin(async move {
            // guc.c: AlterSystemSetConfigFile — the file holds one setting per line.
            if value.is_some_and(|v| v.contains('\n')) {
                return Err(ErrorFields::error(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    "parameter value for ALTER SYSTEM must not contain a newline",
                ));
            }
            crate::conf::alter_auto_conf(&self.dir, name, value)
                .map_err(|e| ErrorFields::error(sqlstate::INTERNAL_ERROR, e.to_string()))
        })
    }

    fn in_recovery(&self) -> bool {
        self.current.read().in_recovery()
    }

    fn function(&self, name: &str) -> Option<ServerFunction> {
        let scalar = |args: Vec<SqlType>, ty| Some(ServerFunction::scalar(name, args, ty));
        match name {
            "pg_current_wal_lsn"
            | "pg_current_wal_flush_lsn"
            | "pg_current_wal_insert_lsn"
            | "pg_last_wal_receive_lsn"
            | "pg_last_wal_replay_lsn"
            | "pg_switch_wal" => scalar(vec![], SqlType::PgLsn),
            "pg_last_xact_replay_timestamp" => scalar(vec![], SqlType::Timestamptz),
            "pg_is_in_recovery" => scalar(vec![], SqlType::Bool),
            "pg_backend_pid" => scalar(vec![], SqlType::Int4),
            "pg_walfile_name" => scalar(vec![SqlType::PgLsn], TEXT),
            "pg_create_physical_replication_slot" => Some(ServerFunction {
                args: vec![NAME, SqlType::Bool, SqlType::Bool],
                returns: vec![
                    RelationColumn::new("slot_name", NAME),
                    RelationColumn::new("lsn", SqlType::PgLsn),
                ],
                defaults: 2,
            }),
            "pg_drop_replication_slot" => scalar(vec![NAME], SqlType::Void),
            "pg_cancel_backend" => scalar(vec![SqlType::Int4], SqlType::Bool),
            "pg_reload_conf" => scalar(vec![], SqlType::Bool),
            // Test builds only: makes a task ("walwriter", "checkpointer", "startup") or a
            // background worker (by name) fail at its next check.
            "walstream_fail_task" if cfg!(debug_assertions) => scalar(vec![TEXT], SqlType::Bool),
            "pg_promote" => Some(ServerFunction {
                args: vec![SqlType::Bool, SqlType::Int4],
                returns: vec![RelationColumn::new("pg_promote", SqlType::Bool)],
                defaults: 2,
            }),
            "pg_terminate_backend" => Some(ServerFunction {
                args: vec![SqlType::Int4, SqlType::Int8],
                returns: vec![RelationColumn::new("pg_terminate_backend", SqlType::Bool)],
                defaults: 1,
            }),
            _ => None,
        }
    }

    fn settings_generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lock_wait_reporter(&self, pid: i32) -> Option<crate::engine::WaitReporter> {
        let entry = self.registry.get(pid)?;
        Some(crate::engine::WaitReporter(Arc::new(move |waiting| {
            // lmgr: a wait on another transaction's xid (XactLockTableWait).
            entry.set_wait_event(waiting.then_some(("Lock", "transactionid")));
        })))
    }

    fn recovery_conflict_handler(&self, pid: i32) -> Option<crate::engine::ConflictHandler> {
        if !self.current.read().in_recovery() {
            return None;
        }
        let entry = self.registry.get(pid)?;
        Some(crate::engine::ConflictHandler(Arc::new(move || {
            use walstream_sender::registry::ActivityState;
            // postgres.c: ProcessInterrupts — a statement is canceled; a session waiting
            // for its next command inside the block is ended.
            let idle = matches!(
                entry.status().state,
                Some(ActivityState::IdleInTransaction | ActivityState::IdleInTransactionAborted)
            );
            let detail = "User was holding a relation lock for too long.";
            if idle {
                let mut e = ErrorFields::fatal(
                    sqlstate::T_R_SERIALIZATION_FAILURE,
                    "terminating connection due to conflict with recovery",
                );
                e.detail = Some(detail.into());
                e.hint = Some(
                    "In a moment you should be able to reconnect to the database and repeat \
                     your command."
                        .into(),
                );
                entry.terminate_with(e);
            } else {
                let mut e = ErrorFields::error(
                    sqlstate::T_R_SERIALIZATION_FAILURE,
                    "canceling statement due to conflict with recovery",
                );
                e.detail = Some(detail.into());
                entry.cancel_with(e);
            }
        })))
    }

    fn take_notices(&self, pid: i32) -> Vec<ErrorFields> {
        self.notices.lock().remove(&pid).unwrap_or_default()
    }

    fn call<'a>(
        &'a self,
        name: &'a str,
        args: Vec<Value>,
        pid: i32,
    ) -> BoxFuture<'a, Result<Vec<Value>, ErrorFields>> {
        Box::pin(async move {
            if name == "pg_reload_conf" {
                // The postmaster's SIGHUP: the reload happens in the background.
                self.reload_requests.notify_one();
                return Ok(vec![Value::Bool(true)]);
            }
            if let Some(signal) = Signal::of(name) {
                return self
                    .signal_backend(signal, &args, pid)
                    .await
                    .map(|ok| vec![Value::Bool(ok)]);
            }
            if name == "walstream_fail_task" && cfg!(debug_assertions) {
                self.failpoints.arm(&arg_text(&args, 0));
                return Ok(vec![Value::Bool(true)]);
            }
            if name == "pg_promote" {
                return self.promote(&args, pid).await.map(|ok| vec![Value::Bool(ok)]);
            }
            let Current { side, timeline } = self.current.read().clone();
            let standby = match &side {
                Side::Standby { receiver } => Some(receiver),
                Side::Primary { .. } => None,
            };
            let writer = match &side {
                Side::Primary { writer, .. } => Some(writer),
                Side::Standby { .. } => None,
            };
            Ok(vec![match name {
                "pg_current_wal_lsn" | "pg_current_wal_flush_lsn" => match writer {
                    Some(w) => lsn(w.flush_position()),
                    None => return Err(wal_control_in_recovery()),
                },
                "pg_current_wal_insert_lsn" => match writer {
                    Some(w) => lsn(w.insert_position()),
                    None => return Err(wal_control_in_recovery()),
                },
                "pg_switch_wal" => match writer {
                    Some(w) => {
                        let end = match w.insert_switch() {
                            Ok(Some(appended)) => appended.end_lsn,
                            Ok(None) => w.insert_position(),
                            Err(e) => {
                                return Err(ErrorFields::error(
                                    sqlstate::INTERNAL_ERROR,
                                    e.to_string(),
                                ))
                            }
                        };
                        w.flush(end).await.map_err(|e| {
                            ErrorFields::error(sqlstate::INTERNAL_ERROR, e.to_string())
                        })?;
                        lsn(end)
                    }
                    None => return Err(wal_control_in_recovery()),
                },
                "pg_last_wal_receive_lsn" => {
                    standby.map_or(Value::Null, |r| lsn(r.positions.borrow().flush))
                }
                "pg_last_wal_replay_lsn" => {
                    standby.map_or(Value::Null, |r| lsn(r.replay.borrow().replayed))
                }
                "pg_last_xact_replay_timestamp" => standby
                    .and_then(|r| r.replay.borrow().last_commit_time)
                    .map_or(Value::Null, |t| Value::Timestamptz(t.0)),
                "pg_is_in_recovery" => Value::Bool(standby.is_some()),
                "pg_backend_pid" => Value::Int4(pid),
                "pg_walfile_name" => {
                    if standby.is_some() {
                        return Err(recovery_in_progress("pg_walfile_name()"));
                    }
                    let Some(Value::Int8(bits)) = args.first() else {
                        return Ok(vec![Value::Null]);
                    };
                    // XLByteToPrevSeg: the segment holding the byte before the position.
                    let at = Lsn((*bits as u64).saturating_sub(1));
                    Value::Text(segment_file_name(timeline, at.segno(self.seg_size), self.seg_size))
                }
                "pg_create_physical_replication_slot" => {
                    let slot = arg_text(&args, 0);
                    let reserve = arg_bool(&args, 1);
                    let temporary = arg_bool(&args, 2);
                    let restart = reserve.then(|| match writer {
                        Some(w) => w.insert_position(),
                        None => standby.map_or(Lsn::INVALID, |r| r.replay.borrow().replayed),
                    });
                    let info = self
                        .slots
                        .create(&slot, temporary, pid, restart.map(|l| (l, timeline)))
                        .map_err(|e| slot_error(&e))?;
                    let restart =
                        info.restart_lsn.filter(|l| l.is_valid()).map_or(Value::Null, lsn);
                    return Ok(vec![Value::Text(info.name), restart]);
                }
                "pg_drop_replication_slot" => {
                    let slot = arg_text(&args, 0);
                    self.slots.drop_slot(&slot, pid, false).await.map_err(|e| slot_error(&e))?;
                    Value::Null
                }
                other => {
                    return Err(ErrorFields::error(
                        sqlstate::UNDEFINED_FUNCTION,
                        format!("function {other}() does not exist"),
                    ))
                }
            }])
        })
    }

    fn relation(&self, name: &str) -> Option<Vec<RelationColumn>> {
        if name == "pg_stat_wal_receiver" {
            return Some(wal_receiver_columns());
        }
        let view = View::named(name)?;
        Some(
            view.columns()
                .into_iter()
                .map(|c| RelationColumn::new(c.name, sql_type(c.ty)))
                .collect(),
        )
    }

    fn relation_rows<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Vec<Value>>, ErrorFields>> {
        Box::pin(async move {
            if name == "pg_stat_wal_receiver" {
                return Ok(self.wal_receiver_rows());
            }
            let Some(view) = View::named(name) else { return Ok(Vec::new()) };
            let types: Vec<SqlType> = view.columns().into_iter().map(|c| sql_type(c.ty)).collect();
            let rows = match view {
                View::ReplicationSlots => slot_rows(&self.slots.list()),
                _ => view.rows(&self.registry),
            };
            Ok(rows
                .into_iter()
                .map(|row| row.into_iter().zip(&types).map(|(d, t)| value(d, *t)).collect())
                .collect())
        })
    }

    fn checkpoint(&self) -> BoxFuture<'_, Result<(), ErrorFields>> {
        Box::pin(async move {
            match self.side() {
                Side::Primary { checkpoints, .. } => {
                    request_checkpoint(&checkpoints, CheckpointCause::Requested)
                        .await
                        .map(|_| ())
                        .map_err(|e| ErrorFields::error(sqlstate::INTERNAL_ERROR, e.to_string()))
                }
                // A restartpoint is made at the next replayed checkpoint record.
                Side::Standby { .. } => Ok(()),
            }
        })
    }
}

/// `pg_cancel_backend` or `pg_terminate_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Cancel,
    Terminate,
}

impl Signal {
    fn of(name: &str) -> Option<Signal> {
        match name {
            "pg_cancel_backend" => Some(Signal::Cancel),
            "pg_terminate_backend" => Some(Signal::Terminate),
            _ => None,
        }
    }
}

/// `signalfuncs.c: pg_signal_backend`'s refusals (PostgreSQL 15's texts).
fn signal_refused(signal: Signal, target_is_superuser: bool) -> ErrorFields {
    let text = match (signal, target_is_superuser) {
        (Signal::Cancel, true) => "must be a superuser to cancel superuser query",
        (Signal::Terminate, true) => "must be a superuser to terminate superuser process",
        (Signal::Cancel, false) => {
            "must be a member of the role whose query is being canceled or member of \
             pg_signal_backend"
        }
        (Signal::Terminate, false) => {
            "must be a member of the role whose process is being terminated or member of \
             pg_signal_backend"
        }
    };
    ErrorFields::error(sqlstate::INSUFFICIENT_PRIVILEGE, text)
}

impl NodeContext {
    /// The user of backend `pid`, and whether that role is a superuser.
    fn user_of(&self, pid: i32) -> Option<(String, bool)> {
        let user = self.registry.get(pid)?.status().user.clone();
        let superuser = self.roles.get(&user).is_some_and(|r| r.superuser);
        Some((user, superuser))
    }

    /// The role now.
    fn side(&self) -> Side {
        self.current.read().side.clone()
    }

    /// `xlogfuncs.c: pg_promote(wait, wait_seconds)`: writes the `promote` signal file
    /// and asks for promotion; with `wait`, polls ten times a second until recovery has
    /// ended, or returns false with PostgreSQL's WARNING after `wait_seconds`.
    async fn promote(&self, args: &[Value], caller: i32) -> Result<bool, ErrorFields> {
        // EXECUTE on pg_promote is revoked from PUBLIC.
        if !self.user_of(caller).is_some_and(|(_, superuser)| superuser) {
            return Err(ErrorFields::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "permission denied for function pg_promote",
            ));
        }
        if !self.current.read().in_recovery() {
            let mut e = ErrorFields::error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                "recovery is not in progress",
            );
            e.hint =
                Some("Recovery control functions can only be executed during recovery.".into());
            return Err(e);
        }
        let wait = !matches!(args.first(), Some(Value::Bool(false)));
        let wait_seconds = match args.get(1) {
            Some(Value::Int4(s)) => i64::from(*s),
            _ => 60,
        };
        if wait_seconds <= 0 {
            return Err(ErrorFields::error(
                sqlstate::INVALID_PARAMETER_VALUE,
                "\"wait_seconds\" must not be negative or zero",
            ));
        }
        let file = self.dir.join(crate::datadir::PROMOTE_SIGNAL_FILE);
        if let Err(e) = std::fs::write(&file, b"") {
            return Err(ErrorFields::error(
                sqlstate::INTERNAL_ERROR,
                format!("could not create file \"{}\": {e}", crate::datadir::PROMOTE_SIGNAL_FILE),
            ));
        }
        self.promote_requests.notify_one();
        if !wait {
            return Ok(true);
        }
        for _ in 0..wait_seconds * 10 {
            if !self.current.read().in_recovery() {
                return Ok(true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !self.current.read().in_recovery() {
            return Ok(true);
        }
        let unit = if wait_seconds == 1 { "second" } else { "seconds" };
        let text = format!("server did not promote within {wait_seconds} {unit}");
        let warning = walstream_sender::serve_handler::warning(text);
        self.notices.lock().entry(caller).or_default().push(warning);
        Ok(false)
    }

    /// `signalfuncs.c: pg_cancel_backend`, `pg_terminate_backend(pid, timeout)`: false
    /// with a WARNING for a pid that is no backend, or (terminate) one still there after
    /// `timeout` milliseconds.
    async fn signal_backend(
        &self,
        signal: Signal,
        args: &[Value],
        caller: i32,
    ) -> Result<bool, ErrorFields> {
        let target = match args.first() {
            Some(Value::Int4(p)) => *p,
            _ => return Ok(false),
        };
        let timeout_ms = match args.get(1) {
            Some(Value::Int8(t)) => *t,
            _ => 0,
        };
        if timeout_ms < 0 {
            return Err(ErrorFields::error(
                sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
                "\"timeout\" must not be negative",
            ));
        }
        let warn = |w: ErrorFields| {
            self.notices.lock().entry(caller).or_default().push(w);
            Ok(false)
        };
        let entry = self.registry.get(target).filter(|e| !e.backend_type.is_auxiliary());
        let Some(entry) = entry else {
            return warn(walstream_sender::serve_handler::not_a_backend(target));
        };
        // Only superusers signal superusers' backends; others only their own role's.
        let (me, i_am_superuser) = self.user_of(caller).unwrap_or_default();
        let (owner, owner_is_superuser) = self.user_of(target).unwrap_or_default();
        if !i_am_superuser && (owner_is_superuser || owner != me) {
            return Err(signal_refused(signal, owner_is_superuser));
        }
        if signal == Signal::Cancel && target == caller {
            // The signal reaches the backend inside this very statement, which its next
            // CHECK_FOR_INTERRUPTS ends.
            return Err(walstream_sender::backend::query_canceled());
        }
        match signal {
            Signal::Cancel => entry.cancel(),
            Signal::Terminate => entry.terminate(),
        }
        if signal == Signal::Terminate && target == caller {
            // As for a cancel: the backend ends inside this statement, with its FATAL and
            // no result (the command loop sees the request and drops this call).
            std::future::pending::<()>().await;
        }
        let limit = std::time::Duration::from_millis(timeout_ms as u64);
        if signal == Signal::Terminate
            && timeout_ms > 0
            && !self.registry.wait_until_gone(target, limit).await
        {
            let text = Registry::did_not_terminate(target, timeout_ms);
            return warn(walstream_sender::serve_handler::warning(text));
        }
        Ok(true)
    }
}

/// `syncrep.c: SyncRepWaitForLSN` for backend `pid`: waits (showing `IPC` / `SyncRep` in
/// `pg_stat_activity`, with cancel and terminate requests held off the command loop) until
/// the synchronous standbys' positions for `level` reach `lsn`, the setting is emptied, or
/// a request interrupts it.
async fn sync_rep_wait(
    registry: &Registry,
    pid: i32,
    lsn: Lsn,
    level: SyncCommit,
) -> SyncRepWaitEnd {
    use walstream_sender::registry::Interrupt;
    use walstream_sender::syncrep::SyncStatus;
    let pick: fn(&walstream_sender::syncrep::SyncedPositions) -> Lsn = match level {
        SyncCommit::Off | SyncCommit::Local => return SyncRepWaitEnd::NotWaited,
        SyncCommit::RemoteWrite => |p| p.write,
        SyncCommit::On => |p| p.flush,
        SyncCommit::RemoteApply => |p| p.apply,
    };
    let reached = move |s: &SyncStatus| match s {
        SyncStatus::NotDefined => true,
        SyncStatus::Waiting => false,
        SyncStatus::Reached(p) => pick(p) >= lsn,
    };
    let mut status = registry.sync_rep().watch();
    if matches!(*status.borrow(), SyncStatus::NotDefined) {
        return SyncRepWaitEnd::NotWaited;
    }
    if reached(&status.borrow()) {
        return SyncRepWaitEnd::Released;
    }
    let Some(entry) = registry.get(pid) else { return SyncRepWaitEnd::NotWaited };
    let held = entry.hold_interrupts();
    entry.set_wait_event(Some(("IPC", "SyncRep")));
    let end = tokio::select! {
        biased;
        i = held.next() => match i {
            Interrupt::Cancel => SyncRepWaitEnd::Canceled,
            Interrupt::Terminate => SyncRepWaitEnd::Terminated,
        },
        _ = status.wait_for(reached) => SyncRepWaitEnd::Released,
    };
    entry.set_wait_event(None);
    end
}
