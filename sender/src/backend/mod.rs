//! The backend loop, modelled on `PostgresMain` (`tcop/postgres.c`).
//!
//! ReadyForQuery, ReadCommand, then dispatch over `Q P B E F C D H S X d c f`:
//! - `Q` goes to the walsender on a replication connection (or the 0A000 error for SQL on
//!   a physical one), else to the session's [`QuerySession`];
//! - `P B E C D` run the extended protocol ([`extended`]); in a replication connection
//!   they are refused as PostgreSQL refuses them; after an error in any of them every
//!   message up to `S` is skipped, and `S` answers one ReadyForQuery;
//! - `H` flushes, `S` ends the implicit transaction, `d c f` are ignored outside COPY,
//!   `X` and end of file end the backend; any other type is a FATAL protocol violation.
//!
//! Terminate (`pg_terminate_backend`, fast shutdown) ends the loop with FATAL 57P01 at
//! any point where the backend waits.

pub mod extended;
pub mod query;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};
use walstream_protocol::replication::is_replication_command;
use walstream_protocol::wire::{
    sqlstate, BackendMessage, ErrorFields, FrontendMessage, TransactionStatus, WireError,
};

use crate::conn::ConnError;
use crate::registry::{ActivityState, BackendEntry};
pub use crate::session::{admin_shutdown, query_canceled, BackendEnd, Connection, WalSenderExit};
use crate::walsender::{CommandOutcome, WalSender};
use extended::{simple_output, ExtendedState};
pub use query::{
    Column, Datum, DatumType, HandlerFuture, Param, QueryHandler, QueryOutput, QuerySession,
    SessionInfo, SimpleQueryResult, StatementDescription,
};

/// What the loop does with the SQL and replication commands it reads.
pub enum Mode {
    /// An ordinary connection: SQL to the handler's session.
    Sql(Box<dyn QuerySession>),
    /// A replication connection: replication commands to the walsender; SQL to the
    /// session on a `replication=database` connection.
    WalSender(Box<WalSender>, Option<Box<dyn QuerySession>>),
}

fn is_extended(tag: u8) -> bool {
    matches!(tag, b'P' | b'B' | b'E' | b'C' | b'D' | b'H')
}

/// The loop's own state between messages.
struct LoopState {
    send_ready_for_query: bool,
    /// `doing_extended_query_message`.
    doing_extended: bool,
    /// `ignore_till_sync`.
    ignore_till_sync: bool,
    extended: ExtendedState,
}

/// Runs the loop until the connection ends.
pub async fn run<R, W>(conn: &mut Connection<R, W>, mut mode: Mode) -> BackendEnd
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let mut st = LoopState {
        send_ready_for_query: true,
        doing_extended: false,
        ignore_till_sync: false,
        extended: ExtendedState::default(),
    };
    let stop = match &mode {
        Mode::WalSender(ws, _) => Some(ws.stop_signal()),
        Mode::Sql(_) => None,
    };
    let end = loop {
        let mut flush = conn.writer.wants_flush();
        if st.send_ready_for_query && !st.ignore_till_sync {
            let status = transaction_status(&mode);
            conn.writer.send(&BackendMessage::ReadyForQuery(status));
            st.send_ready_for_query = false;
            flush = true;
        }
        // postgres.c: ReadyForQuery flushes; until then replies wait in the send buffer.
        if flush {
            if let Err(e) = conn.writer.flush().await {
                break BackendEnd::Io(e);
            }
        }
        let status = transaction_status(&mode);
        conn.entry.set_state(
            match status {
                _ if st.ignore_till_sync => ActivityState::IdleInTransactionAborted,
                TransactionStatus::Failed => ActivityState::IdleInTransactionAborted,
                TransactionStatus::InTransaction => ActivityState::IdleInTransaction,
                TransactionStatus::Idle => ActivityState::Idle,
            },
            None,
        );
        // postgres.c: idle_in_transaction_session_timeout, armed while idle in a block.
        let idle_limit = match &mode {
            Mode::Sql(s) | Mode::WalSender(_, Some(s)) if status != TransactionStatus::Idle => {
                s.idle_in_transaction_timeout()
            }
            _ => None,
        };
        let idle_timeout = async move {
            match idle_limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            biased;
            _ = conn.entry.terminated() => None,
            _ = walsenders_stopping(stop.clone()) => None,
            read = conn.reader.read_message() => Some(read),
            () = idle_timeout => {
                let fatal = ErrorFields::fatal(
                    "25P03",
                    "terminating connection due to idle-in-transaction timeout",
                );
                conn.writer.send_error(fatal.clone());
                let _ = conn.writer.flush().await;
                break BackendEnd::Fatal(Box::new(fatal));
            }
        };
        let message = match read {
            None => break terminated(conn).await,
            Some(Ok(Some(m))) => m,
            Some(Ok(None)) => break BackendEnd::Eof,
            Some(Err(ConnError::Io(e))) => break BackendEnd::Io(e),
            Some(Err(ConnError::Wire(e))) => match wire_error(conn, &mut st, e).await {
                Some(end) => break end,
                None => continue,
            },
        };
        let tag = message.tag();
        // postgres.c: SocketBackend
        match tag {
            b'S' | b'X' => {
                st.ignore_till_sync = false;
                st.doing_extended = false;
            }
            t => st.doing_extended = is_extended(t),
        }
        if st.ignore_till_sync {
            continue;
        }
        match dispatch(conn, &mut mode, &mut st, message).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::End(end)) => break end,
            Err(fields) => {
                // postgres.c: the sigsetjmp error recovery
                conn.writer.send_error(fields);
                if st.doing_extended {
                    st.ignore_till_sync = true;
                }
                st.send_ready_for_query = true;
            }
        }
        if let Mode::Sql(s) | Mode::WalSender(_, Some(s)) = &mode {
            if s.exit_requested() {
                let _ = conn.writer.flush().await;
                break BackendEnd::Terminated;
            }
        }
    };
    if let Mode::WalSender(ws, _) = &mut mode {
        ws.end_session();
    }
    log_end(&conn.entry, &end);
    end
}

/// Resolves when a walsender idle in command mode must go: at shutdown it is terminated
/// like a backend (`walsender.c: HandleWalSndInitStopping`, "if replication has not yet
/// started, die like with SIGTERM").
async fn walsenders_stopping(stop: Option<tokio::sync::watch::Receiver<bool>>) {
    if let Some(mut stop) = stop {
        if stop.wait_for(|s| *s).await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

fn transaction_status(mode: &Mode) -> TransactionStatus {
    match mode {
        Mode::Sql(s) | Mode::WalSender(_, Some(s)) => s.transaction_status(),
        Mode::WalSender(_, None) => TransactionStatus::Idle,
    }
}

async fn terminated<R, W: AsyncWrite + Unpin>(conn: &mut Connection<R, W>) -> BackendEnd {
    let fatal = conn.entry.take_interrupt_reason().unwrap_or_else(admin_shutdown);
    conn.writer.send_error(fatal);
    let _ = conn.writer.flush().await;
    BackendEnd::Terminated
}

/// A frontend message that did not parse. Body errors of a known type are ERRORs (the
/// message was read whole, so the stream is still in step); a bad type or length is fatal.
async fn wire_error<R, W: AsyncWrite + Unpin>(
    conn: &mut Connection<R, W>,
    st: &mut LoopState,
    e: WireError,
) -> Option<BackendEnd> {
    let fields = ErrorFields::from_wire_error(&e, walstream_protocol::wire::Severity::Error);
    let tag = match &e {
        WireError::InsufficientData { tag }
        | WireError::InvalidMessageFormat { tag }
        | WireError::InvalidString { tag }
        | WireError::InvalidUtf8 { tag } => Some(*tag),
        WireError::InvalidTarget { .. } => Some(b'D'),
        _ => None,
    };
    match tag {
        Some(tag) => {
            st.doing_extended = is_extended(tag);
            if st.ignore_till_sync {
                return None;
            }
            conn.writer.send_error(fields);
            if st.doing_extended {
                st.ignore_till_sync = true;
            }
            st.send_ready_for_query = true;
            None
        }
        None => {
            let mut fatal = fields;
            fatal.severity = "FATAL".to_string();
            fatal.severity_nonlocalized = Some("FATAL".to_string());
            if e.reported_to_client() {
                conn.writer.send_error(fatal.clone());
                let _ = conn.writer.flush().await;
            }
            Some(BackendEnd::Fatal(Box::new(fatal)))
        }
    }
}

/// What the loop does after a message.
pub enum Flow {
    /// Read the next message.
    Continue,
    /// End the backend.
    End(BackendEnd),
}

async fn dispatch<R, W>(
    conn: &mut Connection<R, W>,
    mode: &mut Mode,
    st: &mut LoopState,
    message: FrontendMessage,
) -> Result<Flow, ErrorFields>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let replication = matches!(mode, Mode::WalSender(..));
    match message {
        FrontendMessage::Query(sql) => return simple_query(conn, mode, st, sql).await,
        FrontendMessage::Parse { .. }
        | FrontendMessage::Bind { .. }
        | FrontendMessage::Execute { .. }
        | FrontendMessage::Describe { .. }
        | FrontendMessage::Close { .. }
            if replication =>
        {
            // postgres.c: forbidden_in_wal_sender
            return Err(ErrorFields::error(
                sqlstate::PROTOCOL_VIOLATION,
                "extended query protocol not supported in a replication connection",
            ));
        }
        FrontendMessage::FunctionCall { .. } if replication => {
            return Err(ErrorFields::error(
                sqlstate::PROTOCOL_VIOLATION,
                "fastpath function calls not supported in a replication connection",
            ));
        }
        FrontendMessage::FunctionCall { .. } => {
            st.send_ready_for_query = true;
            return Err(ErrorFields::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "fastpath function calls are not supported",
            ));
        }
        FrontendMessage::Parse { name, query, param_types } => {
            let session = sql_session(mode)?;
            conn.entry.set_state(ActivityState::Active, Some(&query));
            let reply = st.extended.parse(session, name, query, param_types).await;
            // Raised while the statement was scanned (e.g. NOTICE 42622 for a truncated
            // identifier): they come before ParseComplete or the error, as in PostgreSQL.
            for n in session.take_notices() {
                conn.writer.send(&BackendMessage::NoticeResponse(n));
            }
            conn.writer.send(&reply?);
        }
        FrontendMessage::Bind { portal, statement, param_formats, params, result_formats } => {
            let session = sql_session(mode)?;
            let reply = st
                .extended
                .bind(session, portal, &statement, param_formats, params, result_formats)
                .await?;
            conn.writer.send(&reply);
        }
        FrontendMessage::Execute { portal, max_rows } => {
            let session = sql_session(mode)?;
            conn.entry.set_state(ActivityState::Active, None);
            let mut cancels = conn.entry.cancel_requests();
            cancels.mark_unchanged();
            let replies = tokio::select! {
                biased;
                _ = conn.entry.terminated() => return Ok(Flow::End(terminated(conn).await)),
                _ = cancels.changed() => {
                    return Err(conn.entry.take_interrupt_reason().unwrap_or_else(query_canceled))
                }
                r = st.extended.execute(session, &portal, max_rows) => r?,
            };
            for reply in &replies {
                conn.writer.send(reply);
            }
        }
        FrontendMessage::Describe { target, name } => {
            for reply in st.extended.describe(target, &name)? {
                conn.writer.send(&reply);
            }
        }
        FrontendMessage::Close { target, name } => {
            let reply = st.extended.close(target, &name);
            conn.writer.send(&reply);
        }
        FrontendMessage::Flush => {
            conn.writer.flush().await.map_err(io_error)?;
        }
        FrontendMessage::Sync => {
            st.extended.end_transaction();
            st.send_ready_for_query = true;
            if let Mode::Sql(s) | Mode::WalSender(_, Some(s)) = mode {
                let synced = s.sync().await;
                for n in s.take_notices() {
                    conn.writer.send(&BackendMessage::NoticeResponse(n));
                }
                synced?;
            }
        }
        FrontendMessage::Terminate => return Ok(Flow::End(BackendEnd::Terminate)),
        // postgres.c: "Accept but ignore these messages, per protocol spec"
        FrontendMessage::CopyData(_) | FrontendMessage::CopyDone | FrontendMessage::CopyFail(_) => {
        }
        FrontendMessage::Password(_) => {
            // A `p` outside authentication is an unknown message type to PostgresMain.
            let fields = ErrorFields::from_wire_error(
                &WireError::UnknownFrontendType(b'p'),
                walstream_protocol::wire::Severity::Fatal,
            );
            conn.writer.send_error(fields.clone());
            let _ = conn.writer.flush().await;
            return Ok(Flow::End(BackendEnd::Fatal(Box::new(fields))));
        }
    }
    Ok(Flow::Continue)
}

fn sql_session(mode: &mut Mode) -> Result<&mut dyn QuerySession, ErrorFields> {
    match mode {
        Mode::Sql(s) | Mode::WalSender(_, Some(s)) => Ok(s.as_mut()),
        Mode::WalSender(_, None) => Err(physical_sql_error()),
    }
}

/// `walsender.c: exec_replication_command` on a physical connection given SQL.
fn physical_sql_error() -> ErrorFields {
    ErrorFields::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "cannot execute SQL commands in WAL sender for physical replication",
    )
}

fn io_error(e: std::io::Error) -> ErrorFields {
    ErrorFields::fatal(sqlstate::CONNECTION_FAILURE, format!("could not send data to client: {e}"))
}

async fn simple_query<R, W>(
    conn: &mut Connection<R, W>,
    mode: &mut Mode,
    st: &mut LoopState,
    sql: String,
) -> Result<Flow, ErrorFields>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    conn.entry.set_state(ActivityState::Active, Some(&sql));
    st.send_ready_for_query = true;
    // The unnamed portal and statement do not survive a simple query.
    st.extended.end_transaction();
    if let Mode::WalSender(ws, session) = mode {
        if is_replication_command(&sql) {
            return match ws.exec_command(conn, &sql).await? {
                CommandOutcome::Done => Ok(Flow::Continue),
                CommandOutcome::Exit(end) => Ok(Flow::End(end)),
            };
        }
        if session.is_none() {
            return Err(physical_sql_error());
        }
    }
    let session = sql_session(mode)?;
    let mut cancels = conn.entry.cancel_requests();
    cancels.mark_unchanged();
    let result = tokio::select! {
        biased;
        _ = conn.entry.terminated() => return Ok(Flow::End(terminated(conn).await)),
        _ = cancels.changed() => {
                    return Err(conn.entry.take_interrupt_reason().unwrap_or_else(query_canceled))
                }
        r = session.simple_query(&sql) => r,
    };
    for output in result.outputs {
        for reply in simple_output(output) {
            conn.writer.send(&reply);
        }
    }
    match result.error {
        Some(e) => Err(e),
        None => Ok(Flow::Continue),
    }
}

fn log_end(entry: &BackendEntry, end: &BackendEnd) {
    let pid = entry.pid;
    match end {
        BackendEnd::Terminate | BackendEnd::Eof => debug!(pid, "backend ended: {end:?}"),
        BackendEnd::Fatal(f) => info!(pid, "FATAL:  {}", f.message),
        BackendEnd::Terminated => info!(pid, "backend terminated by administrator command"),
        BackendEnd::Io(e) => info!(pid, "could not send data to client: {e}"),
        BackendEnd::WalSenderExit(why) => info!(pid, "{why}"),
    }
}
