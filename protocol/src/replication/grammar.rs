//! The replication command grammar of PostgreSQL 15 (`repl_gram.y`) with nom, over the
//! tokens of [`scanner`](super::scanner).

use nom::branch::alt;
use nom::combinator::{all_consuming, map, opt, value};
use nom::multi::{many0, separated_list1};
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};

use super::commands::{GenericOption, OptionValue, ReplicationCommand, ReplicationKind, SlotKind};
use super::scanner::{next_token, Keyword, Token};
use super::syntax::{PErr, ReplicationParseError};
use crate::{Lsn, TimeLineId};

type Res<'a, T> = IResult<&'a str, T, PErr>;

fn mismatch<T>() -> Res<'static, T> {
    Err(nom::Err::Error(PErr::Syntax))
}

/// One token for which `pick` gives a value; no input is consumed otherwise.
fn token_map<'a, T>(
    pick: impl Fn(Token) -> Option<T>,
) -> impl Parser<&'a str, Output = T, Error = PErr> {
    move |input: &'a str| {
        let (rest, tok) = next_token(input)?;
        match pick(tok) {
            Some(v) => Ok((rest, v)),
            None => mismatch(),
        }
    }
}

fn kw<'a>(k: Keyword) -> impl Parser<&'a str, Output = (), Error = PErr> {
    token_map(move |t| (t == Token::Keyword(k)).then_some(()))
}

fn ch<'a>(c: char) -> impl Parser<&'a str, Output = (), Error = PErr> {
    token_map(move |t| (t == Token::Char(c)).then_some(()))
}

fn ident(input: &str) -> Res<'_, String> {
    token_map(|t| if let Token::Ident(s) = t { Some(s) } else { None }).parse(input)
}

fn sconst(input: &str) -> Res<'_, String> {
    token_map(|t| if let Token::Str(s) = t { Some(s) } else { None }).parse(input)
}

fn recptr(input: &str) -> Res<'_, Lsn> {
    token_map(|t| if let Token::RecPtr(l) = t { Some(l) } else { None }).parse(input)
}

fn end(input: &str) -> Res<'_, ()> {
    token_map(|t| (t == Token::Eof).then_some(())).parse(input)
}

/// `UCONST` naming a timeline; 0 ends the parse with `invalid timeline 0`.
fn timeline(input: &str) -> Res<'_, TimeLineId> {
    let (rest, n) =
        token_map(|t| if let Token::UConst(n) = t { Some(n) } else { None }).parse(input)?;
    if n == 0 {
        // repl_gram.y: opt_timeline / timeline_history
        return Err(nom::Err::Failure(PErr::Fatal(ReplicationParseError::InvalidTimeline(n))));
    }
    Ok((rest, TimeLineId(n)))
}

/// `var_name: IDENT | var_name '.' IDENT`.
fn var_name(input: &str) -> Res<'_, String> {
    map(separated_list1(ch('.'), ident), |parts| parts.join(".")).parse(input)
}

/// `ident_or_keyword`: an identifier, or a keyword other than `READ_REPLICATION_SLOT`
/// spelled in lower case.
fn ident_or_keyword(input: &str) -> Res<'_, String> {
    token_map(|t| match t {
        Token::Ident(s) => Some(s),
        Token::Keyword(k) if k.is_option_name() => Some(k.as_str().to_ascii_lowercase()),
        _ => None,
    })
    .parse(input)
}

/// `generic_option: ident_or_keyword [IDENT | SCONST | UCONST]`.
fn generic_option(input: &str) -> Res<'_, GenericOption> {
    let value = token_map(|t| match t {
        Token::Ident(s) => Some(OptionValue::Ident(s)),
        Token::Str(s) => Some(OptionValue::Str(s)),
        Token::UConst(n) => Some(OptionValue::Int(n)),
        _ => None,
    });
    map((ident_or_keyword, opt(value)), |(name, value)| GenericOption { name, value }).parse(input)
}

/// `'(' generic_option_list ')'`.
fn generic_options(input: &str) -> Res<'_, Vec<GenericOption>> {
    delimited(ch('('), separated_list1(ch(','), generic_option), ch(')')).parse(input)
}

/// `create_slot_legacy_opt`, mapped to generic options as `repl_gram.y` does; the
/// Boolean `true` it gives `RESERVE_WAL` and `TWO_PHASE` is kept as a bare option, which
/// every reader (`defGetBoolean`) takes as true.
fn legacy_slot_option(input: &str) -> Res<'_, GenericOption> {
    token_map(|t| match t {
        Token::Keyword(Keyword::ExportSnapshot) => {
            Some(GenericOption::string("snapshot", "export"))
        }
        Token::Keyword(Keyword::NoexportSnapshot) => {
            Some(GenericOption::string("snapshot", "nothing"))
        }
        Token::Keyword(Keyword::UseSnapshot) => Some(GenericOption::string("snapshot", "use")),
        Token::Keyword(Keyword::ReserveWal) => Some(GenericOption::flag("reserve_wal")),
        Token::Keyword(Keyword::TwoPhase) => Some(GenericOption::flag("two_phase")),
        _ => None,
    })
    .parse(input)
}

/// `create_slot_options: '(' generic_option_list ')' | create_slot_legacy_opt*`.
fn create_slot_options(input: &str) -> Res<'_, Vec<GenericOption>> {
    alt((generic_options, many0(legacy_slot_option))).parse(input)
}

fn create_replication_slot(input: &str) -> Res<'_, ReplicationCommand> {
    let kind = alt((
        value(SlotKind::Physical, kw(Keyword::Physical)),
        map(preceded(kw(Keyword::Logical), ident), |plugin| SlotKind::Logical { plugin }),
    ));
    let (rest, (slot_name, temporary, kind, options)) = preceded(
        kw(Keyword::CreateReplicationSlot),
        (ident, map(opt(kw(Keyword::Temporary)), |t| t.is_some()), kind, create_slot_options),
    )
    .parse(input)?;
    Ok((rest, ReplicationCommand::CreateReplicationSlot { slot_name, temporary, kind, options }))
}

/// `plugin_opt_elem: IDENT [SCONST]`.
fn plugin_option(input: &str) -> Res<'_, GenericOption> {
    map((ident, opt(sconst)), |(name, v)| GenericOption { name, value: v.map(OptionValue::Str) })
        .parse(input)
}

fn start_physical(input: &str) -> Res<'_, ReplicationCommand> {
    let (rest, (slot_name, _, start, timeline)) = (
        opt(preceded(kw(Keyword::Slot), ident)),
        opt(kw(Keyword::Physical)),
        recptr,
        opt(preceded(kw(Keyword::Timeline), timeline)),
    )
        .parse(input)?;
    let kind = ReplicationKind::Physical;
    let options = Vec::new();
    Ok((rest, ReplicationCommand::StartReplication { kind, slot_name, timeline, start, options }))
}

fn start_logical(input: &str) -> Res<'_, ReplicationCommand> {
    let plugin_options = delimited(ch('('), separated_list1(ch(','), plugin_option), ch(')'));
    let (rest, (slot, start, options)) = (
        preceded(kw(Keyword::Slot), ident),
        preceded(kw(Keyword::Logical), recptr),
        map(opt(plugin_options), Option::unwrap_or_default),
    )
        .parse(input)?;
    let (kind, slot_name, timeline) = (ReplicationKind::Logical, Some(slot), None);
    Ok((rest, ReplicationCommand::StartReplication { kind, slot_name, timeline, start, options }))
}

fn command(input: &str) -> Res<'_, ReplicationCommand> {
    use ReplicationCommand as C;
    alt((
        value(C::IdentifySystem, kw(Keyword::IdentifySystem)),
        map(preceded(kw(Keyword::BaseBackup), opt(generic_options)), |o| C::BaseBackup {
            options: o.unwrap_or_default(),
        }),
        preceded(kw(Keyword::StartReplication), alt((start_logical, start_physical))),
        create_replication_slot,
        map(
            preceded(kw(Keyword::DropReplicationSlot), (ident, opt(kw(Keyword::Wait)))),
            |(slot_name, w)| C::DropReplicationSlot { slot_name, wait: w.is_some() },
        ),
        map(preceded(kw(Keyword::ReadReplicationSlot), var_name), |slot_name| {
            C::ReadReplicationSlot { slot_name }
        }),
        map(preceded(kw(Keyword::TimelineHistory), timeline), |tli| C::TimelineHistory { tli }),
        map(preceded(kw(Keyword::Show), var_name), |name| C::Show { name }),
    ))
    .parse(input)
}

/// Parses one replication command as PostgreSQL 15's walsender does
/// (`firstcmd: command opt_semicolon`, then the end of the string).
///
/// # Errors
/// [`ReplicationParseError`] with PostgreSQL's message: `syntax error`,
/// `unterminated quoted string` or `invalid timeline 0`. Options are not checked here:
/// PostgreSQL checks them when it runs the command (see
/// [`parse_create_slot_options`](super::parse_create_slot_options) and
/// [`parse_base_backup_options`](super::parse_base_backup_options)).
pub fn parse_command(query: &str) -> Result<ReplicationCommand, ReplicationParseError> {
    let mut parser = all_consuming(terminated(command, (opt(ch(';')), end)));
    match parser.parse(query) {
        Ok((_, cmd)) => Ok(cmd),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(match e {
            PErr::Syntax => ReplicationParseError::Syntax,
            PErr::Fatal(f) => f,
        }),
        Err(nom::Err::Incomplete(_)) => Err(ReplicationParseError::Syntax),
    }
}
