//! The SQL a `walstream serve` answers on an ordinary connection: `SELECT 1` (what
//! connection poolers and health checks send), `SHOW name`, the signalling functions
//! `pg_terminate_backend(pid [, timeout])` and `pg_cancel_backend(pid)`, and
//! `SELECT items FROM pg_stat_activity | pg_stat_replication | pg_stat_ssl` where an item is `*`, a
//! column, or one of the two functions applied to `pid`; anything else is `0A000`. The
//! node implements a real [`QueryHandler`] later.

use std::sync::Arc;
use std::time::Duration;

use walstream_protocol::wire::{sqlstate, ErrorFields, Severity};

use crate::backend::query::{
    Column, Datum, DatumType, HandlerFuture, Param, QueryHandler, QueryOutput, QuerySession,
    SessionInfo, SimpleQueryResult, StatementDescription,
};
use crate::config::Settings;
use crate::registry::Registry;
use crate::views::View;

/// Answers `SHOW name`; `None` for an unknown name.
pub type ShowFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The handler of `walstream serve`.
#[derive(Clone)]
pub struct ServeHandler {
    show: ShowFn,
    registry: Arc<Registry>,
    /// The server's settings, to check a startup packet's values against.
    settings: Option<Settings>,
}

impl ServeHandler {
    /// A handler whose `SHOW` asks `show` and whose signalling functions act on `registry`.
    pub fn new(show: ShowFn, registry: Arc<Registry>) -> ServeHandler {
        ServeHandler { show, registry, settings: None }
    }

    /// Checks the values a startup packet gives the settings serve has (the names and
    /// contexts are checked before, as PostgreSQL's).
    pub fn with_settings(mut self, settings: Settings) -> ServeHandler {
        self.settings = Some(settings);
        self
    }
}

impl QueryHandler for ServeHandler {
    fn session(&self, _info: &SessionInfo) -> Box<dyn QuerySession> {
        Box::new(self.clone())
    }

    /// The values of the settings serve has must parse (`22023 invalid value for
    /// parameter`); the other parameters PostgreSQL has are accepted as given.
    fn check_startup_settings(&self, settings: &[(String, String)]) -> Result<(), ErrorFields> {
        let Some(server) = &self.settings else { return Ok(()) };
        let mut scratch = server.clone();
        for (name, value) in settings {
            match scratch.set(name, value) {
                Err(e) if e.fields.code != sqlstate::UNDEFINED_OBJECT => return Err(e.fields),
                _ => {}
            }
        }
        Ok(())
    }
}

/// What one statement of the tiny grammar is.
enum Statement {
    Empty,
    SelectOne,
    Show(String),
    /// `pg_terminate_backend(pid, timeout ms)`.
    Terminate(i32, i64),
    /// `pg_cancel_backend(pid)`.
    Cancel(i32),
    /// `SELECT items FROM view`.
    View(View, Vec<Item>),
}

/// One item of a select list over a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// The view's column at this index.
    Column(usize),
    /// `pg_terminate_backend(pid)`.
    Terminate,
    /// `pg_cancel_backend(pid)`.
    Cancel,
}

/// `SELECT items FROM view`, or `None` when `text` is not of that shape.
fn select_from_view(text: &str) -> Option<Result<Statement, ErrorFields>> {
    let lower = text.to_ascii_lowercase();
    let rest = lower.strip_prefix("select")?;
    let from = rest.find(" from ")?;
    // serve has no slot store to show (the node has).
    let view = View::named(rest[from + 6..].trim()).filter(|v| *v != View::ReplicationSlots)?;
    let columns = view.columns();
    let mut items = Vec::new();
    for item in rest[..from].split(',').map(str::trim) {
        match item.replace(' ', "").as_str() {
            "*" => items.extend((0..columns.len()).map(Item::Column)),
            "pg_terminate_backend(pid)" => items.push(Item::Terminate),
            "pg_cancel_backend(pid)" => items.push(Item::Cancel),
            name => match columns.iter().position(|c| c.name == name) {
                Some(i) => items.push(Item::Column(i)),
                None => {
                    return Some(Err(ErrorFields::error(
                        sqlstate::UNDEFINED_COLUMN,
                        format!("column \"{name}\" does not exist"),
                    )))
                }
            },
        }
    }
    Some(Ok(Statement::View(view, items)))
}

fn unsupported() -> ErrorFields {
    ErrorFields::error(sqlstate::FEATURE_NOT_SUPPORTED, "feature not supported").with_hint(
        "walstream serve answers only SELECT 1, SHOW, pg_terminate_backend and pg_cancel_backend; connect with replication=true to stream WAL.",
    )
}

/// `select f(a, b)` → (`f`, [`a`, `b`]).
fn function_call(text: &str) -> Option<(String, Vec<String>)> {
    let rest = text.get(..6).filter(|w| w.eq_ignore_ascii_case("select")).map(|_| &text[6..])?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (name, args) = rest.trim().split_once('(')?;
    let args = args.trim().strip_suffix(')')?;
    let args = args.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
    Some((name.trim().to_ascii_lowercase(), args))
}

fn int_arg<T: std::str::FromStr>(arg: &str) -> Result<T, ErrorFields> {
    arg.parse().map_err(|_| {
        ErrorFields::error(
            sqlstate::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type integer: \"{arg}\""),
        )
    })
}

fn classify(sql: &str) -> Result<Statement, ErrorFields> {
    let text = sql.trim().trim_end_matches(';').trim();
    if text.is_empty() {
        return Ok(Statement::Empty);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [select, one] if select.eq_ignore_ascii_case("select") && *one == "1" => {
            return Ok(Statement::SelectOne)
        }
        [show, name] if show.eq_ignore_ascii_case("show") => {
            return Ok(Statement::Show(name.trim_matches('"').to_string()))
        }
        _ => {}
    }
    if let Some(view) = select_from_view(text) {
        return view;
    }
    match function_call(text) {
        Some((name, args)) if name == "pg_terminate_backend" && matches!(args.len(), 1 | 2) => {
            let timeout = args.get(1).map_or(Ok(0), |t| int_arg(t))?;
            if timeout < 0 {
                // signalfuncs.c: pg_terminate_backend
                return Err(ErrorFields::error(
                    sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
                    "\"timeout\" must not be negative",
                ));
            }
            Ok(Statement::Terminate(int_arg(&args[0])?, timeout))
        }
        Some((name, args)) if name == "pg_cancel_backend" && args.len() == 1 => {
            Ok(Statement::Cancel(int_arg(&args[0])?))
        }
        _ => Err(unsupported()),
    }
}

/// A WARNING (01000), as the signalling functions raise them.
pub fn warning(message: String) -> ErrorFields {
    let mut w = ErrorFields::new(Severity::Warning, sqlstate::WARNING, message);
    w.severity_nonlocalized = Some("WARNING".to_string());
    w
}

fn bool_result(name: &str, value: bool) -> QueryOutput {
    QueryOutput::Rows {
        columns: vec![Column::new(name, DatumType::Bool)],
        rows: vec![vec![Datum::Bool(value)]],
        tag: "SELECT 1".to_string(),
    }
}

impl ServeHandler {
    fn describe_now(&self, sql: &str) -> Result<StatementDescription, ErrorFields> {
        let columns = match classify(sql)? {
            Statement::Empty => None,
            Statement::SelectOne => Some(vec![Column::new("?column?", DatumType::Int4)]),
            Statement::Show(name) => {
                self.value(&name)?;
                Some(vec![Column::new(name.to_ascii_lowercase(), DatumType::Text)])
            }
            Statement::Terminate(..) => {
                Some(vec![Column::new("pg_terminate_backend", DatumType::Bool)])
            }
            Statement::Cancel(_) => Some(vec![Column::new("pg_cancel_backend", DatumType::Bool)]),
            Statement::View(view, items) => Some(view_columns(view, &items)),
        };
        Ok(StatementDescription { params: Vec::new(), columns })
    }

    async fn run(&self, sql: &str) -> Result<Vec<QueryOutput>, ErrorFields> {
        Ok(match classify(sql)? {
            Statement::Empty => vec![QueryOutput::Empty],
            Statement::SelectOne => vec![QueryOutput::Rows {
                columns: vec![Column::new("?column?", DatumType::Int4)],
                rows: vec![vec![Datum::Int4(1)]],
                tag: "SELECT 1".to_string(),
            }],
            Statement::Show(name) => vec![QueryOutput::Rows {
                columns: vec![Column::new(name.to_ascii_lowercase(), DatumType::Text)],
                rows: vec![vec![Datum::Text(self.value(&name)?)]],
                tag: "SHOW".to_string(),
            }],
            Statement::Terminate(pid, timeout) => self.terminate(pid, timeout).await,
            Statement::View(view, items) => vec![self.select_view(view, &items)],
            Statement::Cancel(pid) => match self.registry.cancel_pid(pid) {
                true => vec![bool_result("pg_cancel_backend", true)],
                false => vec![
                    QueryOutput::Notice(Box::new(not_a_backend(pid))),
                    bool_result("pg_cancel_backend", false),
                ],
            },
        })
    }

    /// `pg_terminate_backend(pid, timeout)`: signals, then waits up to `timeout` ms for
    /// the backend to go (signalfuncs.c: pg_wait_until_termination).
    async fn terminate(&self, pid: i32, timeout_ms: i64) -> Vec<QueryOutput> {
        let name = "pg_terminate_backend";
        if !self.registry.terminate(pid) {
            return vec![
                QueryOutput::Notice(Box::new(not_a_backend(pid))),
                bool_result(name, false),
            ];
        }
        let limit = Duration::from_millis(timeout_ms as u64);
        if timeout_ms > 0 && !self.registry.wait_until_gone(pid, limit).await {
            let text = Registry::did_not_terminate(pid, timeout_ms);
            return vec![QueryOutput::Notice(Box::new(warning(text))), bool_result(name, false)];
        }
        vec![bool_result(name, true)]
    }

    /// Rows of `view`, the signalling functions applied row by row.
    fn select_view(&self, view: View, items: &[Item]) -> QueryOutput {
        let rows: Vec<Vec<Datum>> = view
            .rows(&self.registry)
            .into_iter()
            .map(|row| {
                let pid = match view {
                    View::Activity => row.get(2),
                    View::Replication | View::Ssl => row.first(),
                    View::ReplicationSlots => row.get(7),
                };
                let pid = match pid {
                    Some(Datum::Int4(pid)) => *pid,
                    _ => 0,
                };
                items
                    .iter()
                    .map(|item| match item {
                        Item::Column(i) => row.get(*i).cloned().unwrap_or(Datum::Null),
                        Item::Terminate => Datum::Bool(self.registry.terminate(pid)),
                        Item::Cancel => Datum::Bool(self.registry.cancel_pid(pid)),
                    })
                    .collect()
            })
            .collect();
        let tag = format!("SELECT {}", rows.len());
        QueryOutput::Rows { columns: view_columns(view, items), rows, tag }
    }

    fn value(&self, name: &str) -> Result<String, ErrorFields> {
        (self.show)(name).ok_or_else(|| {
            ErrorFields::error(
                sqlstate::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            )
        })
    }
}

fn view_columns(view: View, items: &[Item]) -> Vec<Column> {
    let all = view.columns();
    items
        .iter()
        .map(|item| match item {
            Item::Column(i) => all[*i].clone(),
            Item::Terminate => Column::new("pg_terminate_backend", DatumType::Bool),
            Item::Cancel => Column::new("pg_cancel_backend", DatumType::Bool),
        })
        .collect()
}

/// `signalfuncs.c: pg_signal_backend`'s WARNING for a pid that is no backend.
/// `signalfuncs.c`'s WARNING for a pid that is no backend (or an auxiliary process).
pub fn not_a_backend(pid: i32) -> ErrorFields {
    warning(format!("PID {pid} is not a PostgreSQL backend process"))
}

impl QuerySession for ServeHandler {
    fn simple_query<'a>(&'a mut self, sql: &'a str) -> HandlerFuture<'a, SimpleQueryResult> {
        Box::pin(async move {
            match self.run(sql).await {
                Ok(outputs) => SimpleQueryResult { outputs, error: None },
                Err(e) => SimpleQueryResult { outputs: Vec::new(), error: Some(e) },
            }
        })
    }

    fn describe<'a>(
        &'a mut self,
        sql: &'a str,
        _param_types: &'a [u32],
    ) -> HandlerFuture<'a, Result<StatementDescription, ErrorFields>> {
        Box::pin(async move { self.describe_now(sql) })
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        _params: &'a [Param],
    ) -> HandlerFuture<'a, Result<QueryOutput, ErrorFields>> {
        Box::pin(async move {
            let outputs = self.run(sql).await?;
            // The statement's own result is the last output; warnings are dropped here.
            Ok(outputs.into_iter().last().unwrap_or(QueryOutput::Empty))
        })
    }
}
