//! One line of a configuration file, with the token rules of PostgreSQL 15's
//! `utils/misc/guc-file.l`.
//!
//! A line is empty, a comment, or `name [=] value [# comment]`. Names are identifiers,
//! possibly qualified (`walstream.max_send_size`); values are single-quoted strings (with
//! `''` and backslash escapes), unquoted words, numbers with a unit, or identifiers.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, satisfy, space0};
use nom::combinator::{opt, recognize};
use nom::multi::many0;
use nom::sequence::{pair, preceded};
use nom::{IResult, Parser};

/// A parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Blank or comment only.
    Empty,
    /// `name [=] value`, the value de-escaped.
    Setting {
        /// The name as written.
        name: String,
        /// The value.
        value: String,
    },
}

/// Where a line stopped making sense: the token PostgreSQL reports (`None`: end of line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The offending token, or `None` at the end of the line.
    pub near: Option<String>,
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_letter_or_digit(c: char) -> bool {
    is_letter(c) || c.is_ascii_digit() || c == '$'
}

/// `{LETTER}{LETTER_OR_DIGIT}*`, optionally followed by `.` and another such word.
fn identifier(i: &str) -> IResult<&str, &str> {
    let word = || recognize(pair(satisfy(is_letter), take_while(is_letter_or_digit)));
    recognize(pair(word(), opt(preceded(char('.'), word())))).parse(i)
}

/// `{LETTER}({LETTER_OR_DIGIT}|[-._:/])*`.
fn unquoted(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        satisfy(is_letter),
        take_while(|c| is_letter_or_digit(c) || "-._:/".contains(c)),
    ))
    .parse(i)
}

/// `{SIGN}?({DIGIT}+|0x{HEXDIGIT}+){UNIT_LETTER}*` and reals (`1.5`, `.5`, `1e3`), with
/// their unit letters.
fn number(i: &str) -> IResult<&str, &str> {
    let digits = || take_while1(|c: char| c.is_ascii_digit());
    let hex = recognize(pair(tag("0x"), take_while1(|c: char| c.is_ascii_hexdigit())));
    let real = recognize((
        opt(digits()),
        opt(pair(char('.'), take_while(|c: char| c.is_ascii_digit()))),
        opt((alt((char('e'), char('E'))), opt(alt((char('+'), char('-')))), digits())),
    ));
    recognize((
        opt(alt((char('+'), char('-')))),
        alt((hex, real)),
        take_while(|c: char| c.is_ascii_alphabetic()),
    ))
    .parse(i)
    .and_then(|(rest, s)| {
        // `real` may match nothing at all: a number needs a digit.
        if s.chars().any(|c| c.is_ascii_digit()) {
            Ok((rest, s))
        } else {
            Err(nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Digit)))
        }
    })
}

/// `'([^'\\\n]|\\.|'')*'`, returned raw (quotes included).
fn quoted(i: &str) -> IResult<&str, &str> {
    let body = many0(alt((
        recognize(satisfy(|c| c != '\'' && c != '\\' && c != '\n')),
        recognize(pair(char('\\'), satisfy(|c| c != '\n'))),
        tag("''"),
    )));
    recognize((char('\''), body, char('\''))).parse(i)
}

/// Removes the quotes and resolves escapes (`guc-file.l: DeescapeQuotedString`).
pub fn deescape(raw: &str) -> String {
    let inner = raw.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(d @ '0'..='7') => {
                    let mut v = d.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match chars.peek().and_then(|c| c.to_digit(8)) {
                            Some(n) => {
                                v = v * 8 + n;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                Some(other) => out.push(other),
                None => {}
            },
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Quotes a value for a configuration file, as `ALTER SYSTEM` writes it
/// (`guc.c: write_auto_conf_file`, `escape_single_quotes_ascii`: `'` and `\` doubled).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The first token of `i` as the scanner would see it, for an error message.
fn token_at(i: &str) -> Option<String> {
    let i = i.trim_start_matches([' ', '\t', '\r']);
    if i.is_empty() || i.starts_with('#') {
        return None;
    }
    let tok = alt((quoted, number, unquoted, identifier)).parse(i).map(|(_, t)| t);
    Some(match tok {
        Ok(t) => t.to_string(),
        Err(_) => i.chars().next().map(String::from).unwrap_or_default(),
    })
}

fn value(i: &str) -> IResult<&str, String> {
    alt((
        quoted.map(deescape),
        number.map(str::to_string),
        unquoted.map(str::to_string),
        identifier.map(str::to_string),
    ))
    .parse(i)
}

fn end_of_line(i: &str) -> bool {
    let rest = i.trim_start_matches([' ', '\t', '\r']);
    rest.is_empty() || rest.starts_with('#')
}

/// Parses one line (without its newline).
///
/// # Errors
/// [`SyntaxError`] naming the token where the line stopped parsing.
pub fn parse_line(line: &str) -> Result<Line, SyntaxError> {
    if end_of_line(line) {
        return Ok(Line::Empty);
    }
    let syntax = |rest: &str| SyntaxError { near: token_at(rest) };
    let (rest, _) = space0::<_, ()>(line).map_err(|_| syntax(line))?;
    let (rest, name) = identifier(rest).map_err(|_| syntax(rest))?;
    let rest = rest.trim_start_matches([' ', '\t', '\r']);
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    let rest = rest.trim_start_matches([' ', '\t', '\r']);
    let (after, value) = value(rest).map_err(|_| syntax(rest))?;
    if !end_of_line(after) {
        return Err(syntax(after));
    }
    Ok(Line::Setting { name: name.to_string(), value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(line: &str) -> (String, String) {
        match parse_line(line).unwrap() {
            Line::Setting { name, value } => (name, value),
            Line::Empty => panic!("empty: {line}"),
        }
    }

    #[test]
    fn lines_parse_as_guc_file_l_reads_them() {
        assert_eq!(setting("port = 5433"), ("port".into(), "5433".into()));
        assert_eq!(setting("port 5433"), ("port".into(), "5433".into()));
        assert_eq!(
            setting("  shared_buffers=128MB   # min 128kB"),
            ("shared_buffers".into(), "128MB".into())
        );
        assert_eq!(setting("listen_addresses = '*'"), ("listen_addresses".into(), "*".into()));
        assert_eq!(
            setting("primary_conninfo = 'user=postgres passfile=''/root/.pgpass'' host=127.0.0.1'"),
            (
                "primary_conninfo".into(),
                "user=postgres passfile='/root/.pgpass' host=127.0.0.1".into()
            )
        );
        assert_eq!(setting("a = 'x\\ty\\'z\\101'"), ("a".into(), "x\ty'zA".into()));
        assert_eq!(
            setting("walstream.max_send_size = 1MB"),
            ("walstream.max_send_size".into(), "1MB".into())
        );
        assert_eq!(
            setting("log_destination = stderr"),
            ("log_destination".into(), "stderr".into())
        );
        assert_eq!(setting("x = -1"), ("x".into(), "-1".into()));
        assert_eq!(setting("x = 0x1F"), ("x".into(), "0x1F".into()));
        assert_eq!(setting("x = 1.5e3"), ("x".into(), "1.5e3".into()));
        assert_eq!(setting("x = .5"), ("x".into(), ".5".into()));
        assert_eq!(setting("timezone = Europe/Paris"), ("timezone".into(), "Europe/Paris".into()));
        assert_eq!(parse_line("   # comment").unwrap(), Line::Empty);
        assert_eq!(parse_line("").unwrap(), Line::Empty);
    }

    #[test]
    fn errors_name_the_token_postgresql_names() {
        assert_eq!(parse_line("port = 5433 5434").unwrap_err().near.as_deref(), Some("5434"));
        assert_eq!(parse_line("port =").unwrap_err().near, None);
        assert_eq!(parse_line("port = 'unterminated").unwrap_err().near.as_deref(), Some("'"));
        assert_eq!(parse_line("= 5").unwrap_err().near.as_deref(), Some("="));
        // `$` is not a letter: PostgreSQL's sample file quotes '$libdir'.
        assert_eq!(
            parse_line("dynamic_library_path = $libdir").unwrap_err().near.as_deref(),
            Some("$")
        );
    }

    #[test]
    fn quote_round_trips_through_deescape() {
        for v in ["", "a'b", "user=x passfile='/p'", "''", "C:\\dir\\n"] {
            assert_eq!(deescape(&quote(v)), v);
        }
    }
}
