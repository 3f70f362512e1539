//! What the replication scanner, grammar and command printer share: the parse error
//! PostgreSQL 15 reports ([`ReplicationParseError`]), the nom error both carry, and the
//! quoting of identifiers and literals the way the scanner reads them back.
//!
//! It sits beneath [`scanner`](super::scanner) and `grammar`, so neither imports the other
//! for these (the grammar reads the scanner's tokens; nothing goes back up).

use nom::error::{ErrorKind, ParseError};

use crate::wire::sqlstate;

/// A replication command PostgreSQL 15 would refuse at parse time. Every one is
/// SQLSTATE `42601` (`ERRCODE_SYNTAX_ERROR`).
///
/// PostgreSQL's scanner also has `invalid streaming start location` for a `%X/%X` that
/// `sscanf` cannot read, but its pattern only admits hex digits around a `/`, so the
/// message cannot occur; a too-long half wraps as `sscanf` does instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationParseError {
    /// Bison's error (`repl_scanner.l: replication_yyerror`).
    #[error("syntax error")]
    Syntax,
    /// A `'` or `"` not closed (`repl_scanner.l`, for both kinds of quote).
    #[error("unterminated quoted string")]
    UnterminatedQuotedString,
    /// `TIMELINE 0` or `TIMELINE_HISTORY 0` (`repl_gram.y`).
    #[error("invalid timeline {0}")]
    InvalidTimeline(u32),
}

impl ReplicationParseError {
    /// The SQLSTATE PostgreSQL reports: `42601`.
    pub fn sqlstate(&self) -> &'static str {
        sqlstate::SYNTAX_ERROR
    }
}

/// The nom error: a recoverable mismatch, or an error that ends the parse.
#[derive(Debug)]
pub(crate) enum PErr {
    /// A mismatch: another alternative may still match.
    Syntax,
    /// An error that ends the parse.
    Fatal(ReplicationParseError),
}

impl<I> ParseError<I> for PErr {
    fn from_error_kind(_: I, _: ErrorKind) -> Self {
        PErr::Syntax
    }

    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// Quotes an identifier for the replication grammar: bare when it is lower-case
/// `[a-z_][a-z0-9_]*` (never a keyword, as keywords are upper case), else in double
/// quotes, with `"` doubled as `ruleutils.c: quote_identifier` does.
///
/// PostgreSQL 15's replication scanner has no escape for `"` inside a quoted identifier,
/// so a name containing `"` cannot be sent to it at all.
pub fn quote_ident(ident: &str) -> String {
    if is_simple_ident(ident) {
        ident.to_string()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

/// Whether `s` is `[a-z_][a-z0-9_]*`.
pub(crate) fn is_simple_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Quotes a string literal: `'...'` with `'` doubled.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("pgoutput"), "pgoutput");
        assert_eq!(quote_ident("Ab c"), "\"Ab c\"");
        assert_eq!(quote_ident(""), "\"\"");
        assert_eq!(quote_ident("1a"), "\"1a\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
