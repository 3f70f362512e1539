//! The SQL a `walstream serve` answers on an ordinary connection: `SELECT 1` (what
//! connection poolers and health checks send) and `SHOW name`; anything else is
//! `0A000`. The node implements a real [`QueryHandler`] later.

use std::sync::Arc;

use walstream_protocol::wire::{sqlstate, ErrorFields};

use super::query::{
    Column, Datum, DatumType, HandlerFuture, Param, QueryHandler, QueryOutput, QuerySession,
    SessionInfo, SimpleQueryResult, StatementDescription,
};

/// Answers `SHOW name`; `None` for an unknown name.
pub type ShowFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The handler of `walstream serve`.
#[derive(Clone)]
pub struct ServeHandler {
    show: ShowFn,
}

impl ServeHandler {
    /// A handler whose `SHOW` asks `show`.
    pub fn new(show: ShowFn) -> ServeHandler {
        ServeHandler { show }
    }
}

impl QueryHandler for ServeHandler {
    fn session(&self, _info: &SessionInfo) -> Box<dyn QuerySession> {
        Box::new(self.clone())
    }
}

/// What one statement of the tiny grammar is.
enum Statement {
    Empty,
    SelectOne,
    Show(String),
}

fn classify(sql: &str) -> Result<Statement, ErrorFields> {
    let text = sql.trim().trim_end_matches(';').trim();
    if text.is_empty() {
        return Ok(Statement::Empty);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [select, one] if select.eq_ignore_ascii_case("select") && *one == "1" => {
            Ok(Statement::SelectOne)
        }
        [show, name] if show.eq_ignore_ascii_case("show") => {
            Ok(Statement::Show(name.trim_matches('"').to_string()))
        }
        _ => Err(ErrorFields::error(sqlstate::FEATURE_NOT_SUPPORTED, "feature not supported")
            .with_hint("walstream serve answers only SELECT 1 and SHOW; connect with replication=true to stream WAL.")),
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
        };
        Ok(StatementDescription { params: Vec::new(), columns })
    }

    fn run(&self, sql: &str) -> Result<QueryOutput, ErrorFields> {
        Ok(match classify(sql)? {
            Statement::Empty => QueryOutput::Empty,
            Statement::SelectOne => QueryOutput::Rows {
                columns: vec![Column::new("?column?", DatumType::Int4)],
                rows: vec![vec![Datum::Int4(1)]],
                tag: "SELECT 1".to_string(),
            },
            Statement::Show(name) => QueryOutput::Rows {
                columns: vec![Column::new(name.to_ascii_lowercase(), DatumType::Text)],
                rows: vec![vec![Datum::Text(self.value(&name)?)]],
                tag: "SHOW".to_string(),
            },
        })
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

impl QuerySession for ServeHandler {
    fn simple_query<'a>(&'a mut self, sql: &'a str) -> HandlerFuture<'a, SimpleQueryResult> {
        Box::pin(async move {
            match self.run(sql) {
                Ok(output) => SimpleQueryResult { outputs: vec![output], error: None },
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
        Box::pin(async move { self.run(sql) })
    }
}
