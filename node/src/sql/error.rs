//! PostgreSQL 15's errors as the SQL layer raises them: engine errors with their SQLSTATE,
//! DETAIL and constraint fields, syntax errors with their position, and the analysis
//! errors (42703, 42883, 42803, 0A000 ...).

use sqlparser::parser::ParserError;
use sqlparser::tokenizer::Span;
use walstream_protocol::wire::{sqlstate, ErrorFields};

use crate::engine::EngineError;

/// A SQL error: every field PostgreSQL would send.
pub type SqlError = ErrorFields;

/// A result of the SQL layer.
pub type SqlResult<T> = Result<T, SqlError>;

/// The ErrorResponse fields of an engine error.
pub fn engine_error(e: &EngineError) -> SqlError {
    let mut f = ErrorFields::error(e.sqlstate(), e.to_string());
    if let Some(d) = e.detail() {
        f = f.with_detail(d);
    }
    if let Some(h) = e.hint() {
        f = f.with_hint(h);
    }
    match e {
        EngineError::UniqueViolation { constraint, .. } => {
            f.schema = Some("public".into());
            f.table = constraint.strip_suffix("_pkey").map(str::to_string);
            f.constraint = Some(constraint.clone());
        }
        EngineError::NotNullViolation { column, table, .. } => {
            f.schema = Some("public".into());
            f.table = Some(table.clone());
            f.column = Some(column.clone());
        }
        _ => {}
    }
    f
}

/// An error with SQLSTATE `code`.
pub fn err(code: &str, message: impl Into<String>) -> SqlError {
    ErrorFields::error(code, message)
}

/// 0A000 naming what is not supported.
pub fn unsupported(what: impl std::fmt::Display) -> SqlError {
    err(sqlstate::FEATURE_NOT_SUPPORTED, format!("{what} is not supported"))
}

/// Sets the error's cursor position (1-based characters) if it has none.
pub fn at(mut e: SqlError, pos: Option<usize>) -> SqlError {
    if e.position.is_none() {
        e.position = pos.map(|p| p.to_string());
    }
    e
}

/// The 1-based character position in `sql` where `span` starts (sqlparser counts lines
/// and columns from 1).
pub fn position(sql: &str, span: Span) -> Option<usize> {
    let (line, col) = (span.start.line, span.start.column);
    if line == 0 || col == 0 {
        return None;
    }
    let mut pos = 0usize;
    for (i, l) in sql.split('\n').enumerate() {
        if (i as u64) + 1 == line {
            return Some(pos + usize::try_from(col).ok()?);
        }
        pos += l.chars().count() + 1;
    }
    None
}

/// scan.l: scanner_yyerror: `syntax error at or near "x"` / `at end of input`, from
/// sqlparser's `Expected: ..., found: x at Line: l, Column: c`.
pub fn syntax_error(sql: &str, e: &ParserError) -> SqlError {
    let text = match e {
        ParserError::ParserError(s) | ParserError::TokenizerError(s) => s.as_str(),
        ParserError::RecursionLimitExceeded => {
            return err("54001", "stack depth limit exceeded")
                .with_hint("Increase the configuration parameter \"max_stack_depth\" (currently 2048kB), after ensuring the platform's stack depth limit is adequate.");
        }
    };
    let (body, loc) = match text.rfind(" at Line: ") {
        Some(i) => (&text[..i], Some(&text[i + 10..])),
        None => (text, None),
    };
    let pos = loc.and_then(|l| {
        let (line, col) = l.split_once(", Column: ")?;
        let line: u64 = line.trim().parse().ok()?;
        let col: u64 = col.trim().parse().ok()?;
        let span = Span::new(
            sqlparser::tokenizer::Location::new(line, col),
            sqlparser::tokenizer::Location::new(line, col),
        );
        position(sql, span)
    });
    if let ParserError::TokenizerError(_) = e {
        if body.contains("Unterminated string literal") {
            let rest: String = pos.map_or(String::new(), |p| sql.chars().skip(p - 1).collect());
            return at(
                err(
                    sqlstate::SYNTAX_ERROR,
                    format!("unterminated quoted string at or near \"{rest}\""),
                ),
                pos,
            );
        }
    }
    let found = body.rsplit_once("found: ").map(|(_, f)| f.trim());
    match found {
        Some("EOF") | None if body.contains("EOF") || found.is_none() => {
            let end = sql.trim_end_matches([';', ' ', '\n', '\t', '\r']).chars().count();
            at(err(sqlstate::SYNTAX_ERROR, "syntax error at end of input"), Some(end + 1))
        }
        Some(tok) => {
            at(err(sqlstate::SYNTAX_ERROR, format!("syntax error at or near \"{tok}\"")), pos)
        }
        None => at(err(sqlstate::SYNTAX_ERROR, "syntax error at end of input"), pos),
    }
}

/// 25P02.
pub fn in_failed_transaction() -> SqlError {
    err("25P02", "current transaction is aborted, commands ignored until end of transaction block")
}

/// 42703 for a column of no relation.
pub fn undefined_column(name: &str) -> SqlError {
    err(sqlstate::UNDEFINED_COLUMN, format!("column {name} does not exist"))
}

/// 42883 for an operator.
pub fn undefined_operator(op: &str, l: &str, r: Option<&str>) -> SqlError {
    let m = match r {
        Some(r) => format!("operator does not exist: {l} {op} {r}"),
        None => format!("operator does not exist: {op} {l}"),
    };
    err(sqlstate::UNDEFINED_FUNCTION, m).with_hint(
        "No operator matches the given name and argument types. You might need to add explicit type casts.",
    )
}

/// 42883 for a function.
pub fn undefined_function(name: &str, args: &[String]) -> SqlError {
    err(sqlstate::UNDEFINED_FUNCTION, format!("function {name}({}) does not exist", args.join(", ")))
        .with_hint("No function matches the given name and argument types. You might need to add explicit type casts.")
}

/// Engine errors convert into SQL errors (for the engine's generic callbacks and `?`).
pub trait IntoSql<T> {
    /// The result with an engine error turned into its ErrorResponse fields.
    ///
    /// # Errors
    /// The engine's error, converted.
    fn sql(self) -> SqlResult<T>;
}

impl<T> IntoSql<T> for Result<T, EngineError> {
    fn sql(self) -> SqlResult<T> {
        self.map_err(|e| engine_error(&e))
    }
}

impl From<EngineError> for ErrorFields {
    fn from(e: EngineError) -> Self {
        engine_error(&e)
    }
}
