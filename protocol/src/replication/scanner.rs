//! The replication command lexer, with the rules of PostgreSQL 15's `repl_scanner.l`.
//!
//! Flex picks the longest match and, on a tie, the earliest rule; `next_token` reproduces
//! that: upper-case keywords, identifiers folded to lower case (double-quoted ones kept as
//! they are, with no escape for `"` inside), single-quoted strings with `''`, unsigned
//! integers, `%X/%X` positions, and any other character as itself.

use nom::IResult;

use super::syntax::{PErr, ReplicationParseError};
use crate::Lsn;

/// Longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); longer ones are truncated.
pub const MAX_IDENTIFIER_LEN: usize = 63;

/// The keywords of the PostgreSQL 15 replication grammar (upper case only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    BaseBackup,
    IdentifySystem,
    ReadReplicationSlot,
    Show,
    Timeline,
    StartReplication,
    CreateReplicationSlot,
    DropReplicationSlot,
    TimelineHistory,
    Physical,
    ReserveWal,
    Logical,
    Slot,
    Temporary,
    TwoPhase,
    ExportSnapshot,
    NoexportSnapshot,
    UseSnapshot,
    Wait,
}

/// Every keyword with its spelling, in `repl_scanner.l` order.
const KEYWORDS: [(&str, Keyword); 19] = [
    ("BASE_BACKUP", Keyword::BaseBackup),
    ("IDENTIFY_SYSTEM", Keyword::IdentifySystem),
    ("READ_REPLICATION_SLOT", Keyword::ReadReplicationSlot),
    ("SHOW", Keyword::Show),
    ("TIMELINE", Keyword::Timeline),
    ("START_REPLICATION", Keyword::StartReplication),
    ("CREATE_REPLICATION_SLOT", Keyword::CreateReplicationSlot),
    ("DROP_REPLICATION_SLOT", Keyword::DropReplicationSlot),
    ("TIMELINE_HISTORY", Keyword::TimelineHistory),
    ("PHYSICAL", Keyword::Physical),
    ("RESERVE_WAL", Keyword::ReserveWal),
    ("LOGICAL", Keyword::Logical),
    ("SLOT", Keyword::Slot),
    ("TEMPORARY", Keyword::Temporary),
    ("TWO_PHASE", Keyword::TwoPhase),
    ("EXPORT_SNAPSHOT", Keyword::ExportSnapshot),
    ("NOEXPORT_SNAPSHOT", Keyword::NoexportSnapshot),
    ("USE_SNAPSHOT", Keyword::UseSnapshot),
    ("WAIT", Keyword::Wait),
];

impl Keyword {
    /// The keyword as written (`"BASE_BACKUP"`).
    pub fn as_str(self) -> &'static str {
        KEYWORDS.iter().find(|(_, k)| *k == self).map_or("", |(s, _)| s)
    }

    /// The keyword written exactly (upper case), if `word` is one.
    pub fn from_word(word: &str) -> Option<Keyword> {
        KEYWORDS.iter().find(|(s, _)| *s == word).map(|(_, k)| *k)
    }

    /// Whether the keyword may name a generic option (`ident_or_keyword` in `repl_gram.y`):
    /// every keyword except `READ_REPLICATION_SLOT`.
    pub fn is_option_name(self) -> bool {
        self != Keyword::ReadReplicationSlot
    }

    /// Whether a command can start with this keyword
    /// (`repl_scanner.l: replication_scanner_is_replication_command`).
    pub fn starts_command(self) -> bool {
        matches!(
            self,
            Keyword::IdentifySystem
                | Keyword::BaseBackup
                | Keyword::StartReplication
                | Keyword::CreateReplicationSlot
                | Keyword::DropReplicationSlot
                | Keyword::ReadReplicationSlot
                | Keyword::TimelineHistory
                | Keyword::Show
        )
    }
}

/// One token of a replication command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An upper-case keyword.
    Keyword(Keyword),
    /// An identifier: folded to lower case unless it was double-quoted (`IDENT`).
    Ident(String),
    /// A single-quoted string (`SCONST`).
    Str(String),
    /// An unsigned integer (`UCONST`), wrapped to 32 bits as `strtoul` then `uint32` does.
    UConst(u32),
    /// A WAL position `%X/%X` (`RECPTR`).
    RecPtr(Lsn),
    /// Any other character, as itself (`(`, `)`, `,`, `.`, `;`, ...).
    Char(char),
    /// The end of the command.
    Eof,
}

fn is_space(b: u8) -> bool {
    // repl_scanner.l: space [ \t\n\r\f\v]
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn run_len(bytes: &[u8], pred: fn(u8) -> bool) -> usize {
    bytes.iter().take_while(|&&b| pred(b)).count()
}

/// Parses decimal or hex digits as `strtoul` does on a 64-bit platform (saturating at
/// `u64::MAX`), then keeps the low 32 bits as the assignment to a `uint32` does.
fn strtoul_u32(digits: &str, radix: u32) -> u32 {
    let wide = digits.chars().try_fold(0u64, |acc, c| {
        let d = u64::from(c.to_digit(radix).unwrap_or(0));
        acc.checked_mul(u64::from(radix))?.checked_add(d)
    });
    wide.unwrap_or(u64::MAX) as u32
}

/// Clips an identifier to [`MAX_IDENTIFIER_LEN`] bytes at a character boundary
/// (`scansup.c: truncate_identifier`; the NOTICE PostgreSQL sends for it comes from
/// [`truncated_identifiers`]).
pub fn truncate_identifier(mut ident: String) -> String {
    if ident.len() > MAX_IDENTIFIER_LEN {
        let mut end = MAX_IDENTIFIER_LEN;
        while !ident.is_char_boundary(end) {
            end -= 1;
        }
        ident.truncate(end);
    }
    ident
}

/// An identifier the scanner truncated (`scansup.c: truncate_identifier` with `warn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedIdentifier {
    /// As written (folded to lower case unless quoted).
    pub original: String,
    /// What it became.
    pub truncated: String,
}

impl TruncatedIdentifier {
    /// The text of PostgreSQL's `NOTICE 42622` for it.
    pub fn message(&self) -> String {
        format!("identifier \"{}\" will be truncated to \"{}\"", self.original, self.truncated)
    }
}

/// The identifiers of `query` longer than [`MAX_IDENTIFIER_LEN`] bytes, in order, as the
/// scanner reads them up to the end or the first token it cannot read: PostgreSQL sends a
/// NOTICE for each as it scans the command.
pub fn truncated_identifiers(query: &str) -> Vec<TruncatedIdentifier> {
    let mut out = Vec::new();
    let mut rest = query;
    loop {
        let start = &rest[run_len(rest.as_bytes(), is_space)..];
        let (after, token) = match next_token(rest) {
            Ok((_, Token::Eof)) | Err(_) => return out,
            Ok(next) => next,
        };
        if let Token::Ident(truncated) = token {
            let text = &start[..start.len() - after.len()];
            let original = match text.strip_prefix('"') {
                Some(quoted) => quoted.strip_suffix('"').unwrap_or(quoted).to_string(),
                None => text.to_ascii_lowercase(),
            };
            if original.len() > truncated.len() {
                out.push(TruncatedIdentifier { original, truncated });
            }
        }
        rest = after;
    }
}

fn unterminated<T>() -> IResult<&'static str, T, PErr> {
    Err(nom::Err::Failure(PErr::Fatal(ReplicationParseError::UnterminatedQuotedString)))
}

/// `'...'` with `''` for a quote; `input` starts after the opening quote.
fn lex_string(input: &str) -> IResult<&str, Token, PErr> {
    let mut out = String::new();
    let mut rest = input;
    loop {
        let Some(pos) = rest.find('\'') else { return unterminated() };
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.strip_prefix('\'') {
            Some(more) => {
                out.push('\'');
                rest = more;
            }
            None => return Ok((after, Token::Str(out))),
        }
    }
}

/// `"..."`: no escapes inside (PostgreSQL 15's scanner has no rule for `""`).
fn lex_quoted_ident(input: &str) -> IResult<&str, Token, PErr> {
    let Some(pos) = input.find('"') else { return unterminated() };
    let ident = truncate_identifier(input[..pos].to_string());
    Ok((&input[pos + 1..], Token::Ident(ident)))
}

/// The token starting at the beginning of `input` (after leading whitespace).
///
/// # Errors
/// A `Failure` carrying [`ReplicationParseError::UnterminatedQuotedString`] when a quote
/// is not closed; never an `Error`.
pub(crate) fn next_token(input: &str) -> IResult<&str, Token, PErr> {
    let input = &input[run_len(input.as_bytes(), is_space)..];
    let bytes = input.as_bytes();
    let Some(&first) = bytes.first() else { return Ok((input, Token::Eof)) };
    match first {
        b'\'' => return lex_string(&input[1..]),
        b'"' => return lex_quoted_ident(&input[1..]),
        _ => {}
    }
    // Longest match among {digit}+, {hexdigit}+/{hexdigit}+ and {identifier}.
    let hex1 = run_len(bytes, |b| b.is_ascii_hexdigit());
    if hex1 > 0 && bytes.get(hex1) == Some(&b'/') {
        let hex2 = run_len(&bytes[hex1 + 1..], |b| b.is_ascii_hexdigit());
        let ident = if is_ident_start(first) { run_len(bytes, is_ident_cont) } else { 0 };
        let len = hex1 + 1 + hex2;
        if hex2 > 0 && len > ident {
            // repl_scanner.l: sscanf("%X/%X") into two uint32
            let hi = strtoul_u32(&input[..hex1], 16);
            let lo = strtoul_u32(&input[hex1 + 1..len], 16);
            let lsn = Lsn((u64::from(hi) << 32) | u64::from(lo));
            return Ok((&input[len..], Token::RecPtr(lsn)));
        }
    }
    if first.is_ascii_digit() {
        let len = run_len(bytes, |b| b.is_ascii_digit());
        return Ok((&input[len..], Token::UConst(strtoul_u32(&input[..len], 10))));
    }
    if is_ident_start(first) {
        let len = run_len(bytes, is_ident_cont);
        let word = &input[..len];
        let token = match Keyword::from_word(word) {
            Some(k) => Token::Keyword(k),
            // scansup.c: downcase_identifier folds ASCII only for UTF-8
            None => Token::Ident(truncate_identifier(word.to_ascii_lowercase())),
        };
        return Ok((&input[len..], token));
    }
    let c = input.chars().next().unwrap_or('\0');
    Ok((&input[c.len_utf8()..], Token::Char(c)))
}

/// Whether `query` is a replication command rather than SQL: its first token is one of
/// the command keywords (`repl_scanner.l: replication_scanner_is_replication_command`).
///
/// When the first token cannot be lexed (an unterminated quote) PostgreSQL raises
/// `42601 unterminated quoted string` at this point; this returns `true` so that the
/// caller's [`parse_command`](super::parse_command) reports that very error.
/// A physical walsender answers `false` with `0A000 cannot execute SQL commands in WAL
/// sender for physical replication` (`walsender.c: exec_replication_command`).
pub fn is_replication_command(query: &str) -> bool {
    match next_token(query) {
        Ok((_, Token::Keyword(k))) => k.starts_command(),
        Ok(_) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(s: &str) -> Vec<Token> {
        let mut out = Vec::new();
        let mut rest = s;
        loop {
            let (r, t) = next_token(rest).unwrap();
            if t == Token::Eof {
                return out;
            }
            out.push(t);
            rest = r;
        }
    }

    #[test]
    fn longest_match_rules() {
        use Token::*;
        assert_eq!(lex("0/1000000"), vec![RecPtr(Lsn(0x100_0000))]);
        assert_eq!(lex("DEAD/BEEF"), vec![RecPtr(Lsn(0xDEAD_0000_BEEF))]);
        assert_eq!(lex("ABC_/1"), vec![Ident("abc_".into()), Char('/'), UConst(1)]);
        assert_eq!(lex("12ab"), vec![UConst(12), Ident("ab".into())]);
        assert_eq!(
            lex("SLOT SLOTS slot"),
            vec![Keyword(super::Keyword::Slot), Ident("slots".into()), Ident("slot".into())]
        );
        assert_eq!(lex("a.b;"), vec![Ident("a".into()), Char('.'), Ident("b".into()), Char(';')]);
        assert_eq!(
            lex("'it''s' \"Ab\"\"c\""),
            vec![Str("it's".into()), Ident("Ab".into()), Ident("c".into())]
        );
        assert_eq!(lex("\u{e9}T\u{c9}"), vec![Ident("\u{e9}t\u{c9}".into())]);
        assert_eq!(lex("\x0b\x0c\t\r\n"), vec![]);
    }

    #[test]
    fn numbers_wrap_like_strtoul() {
        assert_eq!(lex("4294967296"), vec![Token::UConst(0)]);
        assert_eq!(lex("4294967297"), vec![Token::UConst(1)]);
        assert_eq!(lex("99999999999999999999999"), vec![Token::UConst(u32::MAX)]);
        assert_eq!(lex("100000000/0"), vec![Token::RecPtr(Lsn(0))]);
        assert_eq!(lex("0/FFFFFFFFFFFFFFFFFFFFF"), vec![Token::RecPtr(Lsn(0xFFFF_FFFF))]);
    }

    #[test]
    fn truncated_identifiers_are_listed_for_their_notices() {
        let long = "A".repeat(70);
        let quoted = format!("{}é", "B".repeat(63));
        let q = format!("DROP_REPLICATION_SLOT {long} \"{quoted}\" short");
        let got = truncated_identifiers(&q);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].original, "a".repeat(70));
        assert_eq!(got[0].truncated, "a".repeat(63));
        // Seen live on 15.18: the multibyte character is not cut in half.
        assert_eq!(
            got[1].message(),
            format!("identifier \"{quoted}\" will be truncated to \"{}\"", "B".repeat(63))
        );
        assert!(truncated_identifiers(&format!("SHOW {}", "x".repeat(63))).is_empty());
        assert!(truncated_identifiers("SHOW \"unterminated").is_empty());
    }

    #[test]
    fn long_identifiers_are_truncated() {
        let long = "a".repeat(70);
        assert_eq!(lex(&long), vec![Token::Ident("a".repeat(63))]);
        let multi = format!("{}\u{e9}", "a".repeat(62));
        assert_eq!(lex(&format!("\"{multi}\"")), vec![Token::Ident("a".repeat(62))]);
    }

    #[test]
    fn unterminated_quotes_fail() {
        for s in ["'abc", "\"abc", "'it''", "x 'a"] {
            let mut rest = s;
            let err = loop {
                match next_token(rest) {
                    Ok((r, _)) => rest = r,
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, nom::Err::Failure(_)), "{s}");
        }
    }

    #[test]
    fn replication_command_predicate() {
        assert!(is_replication_command("IDENTIFY_SYSTEM"));
        assert!(is_replication_command("  SHOW x"));
        assert!(is_replication_command("READ_REPLICATION_SLOT s"));
        assert!(is_replication_command("\"unterminated"));
        assert!(!is_replication_command("identify_system"));
        assert!(!is_replication_command("SELECT 1"));
        assert!(!is_replication_command(""));
        assert!(!is_replication_command("ALTER_REPLICATION_SLOT x (a)"));
        assert!(!is_replication_command("TIMELINE 1"));
    }
}
