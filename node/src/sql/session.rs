//! [`Session`]: one client connection's SQL: statements parsed, bound and run, the
//! transaction block (BEGIN/COMMIT/ROLLBACK, 25P02 after an error), SET/SHOW/RESET,
//! DDL, and the sender's [`QuerySession`] protocol hooks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use sqlparser::ast::{
    ColumnOption, CopyOption, CopySource, CopyTarget, CreateTable, Expr, ObjectType, Reset, Set,
    Spanned, Statement, TableConstraint, Value as AstValue,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use walstream_protocol::wire::{sqlstate, ErrorFields, Severity, TransactionStatus};
use walstream_sender::backend::query::{
    Column, Datum, DatumType, HandlerFuture, Param, QueryOutput, QuerySession, SessionInfo,
    SimpleQueryResult, StatementDescription,
};

use super::dml::{bind_delete, bind_insert, bind_update, InsertPlan, ModifyPlan};
use super::error::{
    at, err, in_failed_transaction, position, syntax_error, unsupported, SqlResult,
};
use super::expr::{ident_name, object_name, BindState, Binder, EvalCtx, Ex, PreCall, Scope};
use super::guc::SessionSettings;
use super::query::{bind_select, SelectPlan};
use super::server::{ServerContext, SyncRepWaitEnd};
use super::types::{cast, datum_type, to_datum, type_from_name};
use crate::engine::time::timestamp_from_system;
use crate::engine::value::parse_text;
use crate::engine::{ColumnDef, Engine, SqlType, TableDef, Txn, Value};
use crate::settings::{Context, NodeSettings};

/// Statements longer than this are refused (PostgreSQL's limit is 1 GB; the node's
/// parser is recursive, so keep it sane).
const MAX_SQL_LEN: usize = 16 << 20;

/// A statement bound for execution.
#[derive(Debug)]
enum Plan {
    Select(Box<SelectPlan>),
    /// `COPY ... TO STDOUT`: the rows of a query, as COPY's text format.
    CopyOut(Box<SelectPlan>),
    Insert(Box<InsertPlan>),
    Update(ModifyPlan),
    Delete(ModifyPlan),
    Begin,
    Commit,
    Rollback,
    Set {
        name: String,
        value: Option<String>,
        /// `SET LOCAL`: until the end of the transaction block.
        local: bool,
    },
    Show(String),
    Reset(Option<String>),
    CreateTable {
        def: TableDef,
        if_not_exists: bool,
    },
    Drop {
        names: Vec<String>,
        if_exists: bool,
    },
    Truncate(Vec<String>),
    Discard,
}

impl Plan {
    fn columns(&self) -> Option<Vec<(String, SqlType)>> {
        match self {
            Plan::Select(p) => Some(p.columns.clone()),
            Plan::Insert(p) if !p.returning.columns.is_empty() => Some(p.returning.columns.clone()),
            Plan::Update(p) | Plan::Delete(p) if !p.returning.columns.is_empty() => {
                Some(p.returning.columns.clone())
            }
            Plan::Show(n) => Some(vec![(n.clone(), SqlType::Text)]),
            _ => None,
        }
    }

    /// The command name a read-only transaction refuses, for writes.
    fn write_name(&self) -> Option<&'static str> {
        Some(match self {
            Plan::Insert(_) => "INSERT",
            Plan::Update(_) => "UPDATE",
            Plan::Delete(_) => "DELETE",
            Plan::CreateTable { .. } => "CREATE TABLE",
            Plan::Drop { .. } => "DROP TABLE",
            Plan::Truncate(_) => "TRUNCATE TABLE",
            _ => return None,
        })
    }
}

/// The transaction state.
#[derive(Debug, Default)]
enum TxState {
    /// No transaction block.
    #[default]
    Idle,
    /// In a block: its transaction and start time.
    Block(Box<Txn>, i64),
    /// A block that failed: everything but COMMIT/ROLLBACK gets 25P02.
    Failed,
    /// The extended protocol's implicit transaction (`TBLOCK_STARTED` between Syncs):
    /// every Execute until Sync runs in it, Sync commits it, an error rolls all of it
    /// back (`postgres.c: exec_execute_message`, `finish_xact_command`).
    Implicit(Box<Txn>, i64),
}

/// One client connection's SQL over the engine.
pub struct Session {
    engine: Arc<Engine>,
    server: Arc<dyn ServerContext>,
    info: SessionInfo,
    settings: Arc<SessionSettings>,
    tx: TxState,
    /// Parsed statements of recent extended-protocol texts (prepared statements run the
    /// same text again and again), with their plans.
    parsed: HashMap<String, Parsed>,
    /// WARNINGs and NOTICEs of the last Execute, for the extended protocol to send.
    notices: Vec<ErrorFields>,
    /// A terminate request ended the wait for synchronous replication: the connection
    /// ends once the warning is out.
    exit: bool,
    /// The statement running is inside a transaction block (SET LOCAL applies).
    in_block: bool,
    /// Settings changed in the current transaction block, to settle at its end.
    guc_txn: Option<GucTxn>,
    /// The server's reload count this session's settings reflect.
    settings_generation: u64,
}

/// `guc.c: AtEOXact_GUC` for one transaction block: the settings when it began (what a
/// rollback restores) and with only its plain SETs (what a commit keeps; SET LOCAL ends
/// with the block).
#[derive(Debug)]
struct GucTxn {
    at_begin: Arc<SessionSettings>,
    session: Arc<SessionSettings>,
}

/// A statement text's parse, its plan once an Execute has bound it, and its last
/// description with the catalog generation it was made at.
#[derive(Clone)]
struct Parsed {
    stmts: Arc<Vec<Statement>>,
    plan: Option<Arc<Bound>>,
    described: Option<Arc<(u64, Option<Vec<Column>>)>>,
}

/// A bound plan (`plancache.c`'s generic plan): kept for the next Execute of the same text,
/// and reused while the catalog generation and the parameter types it was bound with are
/// the same.
struct Bound {
    generation: u64,
    param_types: Vec<u32>,
    plan: Plan,
    st: BindState,
}

impl Parsed {
    /// A text just parsed: no plan or description yet.
    fn new(stmts: Arc<Vec<Statement>>) -> Parsed {
        Parsed { stmts, plan: None, described: None }
    }
}

impl Bound {
    /// Whether `plan` may be kept: row statements, whose binding depends only on the
    /// tables and the parameter types.
    fn keepable(plan: &Plan) -> bool {
        matches!(plan, Plan::Select(_) | Plan::Insert(_) | Plan::Update(_) | Plan::Delete(_))
    }
}

/// How many texts [`Session`] keeps parsed.
const PARSED_CACHE: usize = 256;

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pid", &self.info.pid)
            .field("tx", &self.tx)
            .finish_non_exhaustive()
    }
}

fn now_ts() -> i64 {
    timestamp_from_system(SystemTime::now())
}

fn notice(sev: Severity, code: &str, msg: impl Into<String>) -> QueryOutput {
    QueryOutput::Notice(Box::new(ErrorFields::new(sev, code, msg)))
}

/// `scansup.c: truncate_identifier` with `warn`: NOTICE 42622 for each identifier longer
/// than 63 bytes, in the order the scanner meets them, before the statements run (or fail
/// to parse). The names themselves are clipped where they are folded (`ident_name`).
fn truncation_notices(sql: &str) -> Vec<ErrorFields> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    use walstream_protocol::replication::scanner::{truncate_identifier, MAX_IDENTIFIER_LEN};
    use walstream_protocol::replication::TruncatedIdentifier;
    if !may_hold_long_identifier(sql) {
        return Vec::new();
    }
    // tokenizer errors are reported by the parser
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Vec::new();
    };
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => {
                let original = super::expr::folded(&w.value, w.quote_style.is_some());
                (original.len() > MAX_IDENTIFIER_LEN).then(|| {
                    let truncated = truncate_identifier(original.clone());
                    let t = TruncatedIdentifier { original, truncated };
                    ErrorFields::new(Severity::Notice, sqlstate::NAME_TOO_LONG, t.message())
                })
            }
            _ => None,
        })
        .collect()
}

/// Whether `sql` may hold an identifier over 63 bytes (a quoted one, or a run of that many
/// identifier bytes): most statements are let through without tokenizing them again.
fn may_hold_long_identifier(sql: &str) -> bool {
    let mut run = 0usize;
    for &b in sql.as_bytes() {
        if b == b'"' {
            return true;
        }
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 {
            run += 1;
            if run > walstream_protocol::replication::scanner::MAX_IDENTIFIER_LEN {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Parses `sql` into statements (CHECKPOINT, which sqlparser does not know, by hand).
fn parse(sql: &str) -> SqlResult<Vec<Statement>> {
    if sql.len() > MAX_SQL_LEN {
        return Err(err("54000", "statement is too long"));
    }
    let dialect = PostgreSqlDialect {};
    check_depth(sql, &dialect)?;
    Parser::new(&dialect)
        .with_recursion_limit(200)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| syntax_error(sql, &e))
}

/// The longest chain of operators one expression may have: sqlparser builds chains like
/// `1+1+1...` iteratively into trees as deep as they are long, and binding, evaluating and
/// dropping such trees recurses.
const MAX_CHAIN: usize = 256;

/// postgres.c: check_stack_depth, before parsing: refuses operator chains longer than
/// [`MAX_CHAIN`] within one parenthesis level and list item.
fn check_depth(sql: &str, dialect: &PostgreSqlDialect) -> SqlResult<()> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    // tokenizer errors are reported by the parser
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else { return Ok(()) };
    let mut chain = vec![0usize];
    for t in &tokens {
        match t {
            Token::LParen | Token::LBracket => chain.push(0),
            Token::RParen | Token::RBracket => {
                chain.pop();
                if chain.is_empty() {
                    chain.push(0);
                }
            }
            Token::Comma | Token::SemiColon => {
                if let Some(c) = chain.last_mut() {
                    *c = 0;
                }
            }
            Token::Word(w)
                if !matches!(
                    w.keyword,
                    sqlparser::keywords::Keyword::AND
                        | sqlparser::keywords::Keyword::OR
                        | sqlparser::keywords::Keyword::NOT
                ) => {}
            Token::Word(_)
            | Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::DoubleColon => {
                if let Some(c) = chain.last_mut() {
                    *c += 1;
                    if *c > MAX_CHAIN || chain.len() > MAX_CHAIN {
                        return Err(err("54001", "stack depth limit exceeded").with_hint(
                            "Increase the configuration parameter \"max_stack_depth\" (currently 2048kB), after ensuring the platform's stack depth limit is adequate.",
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `sql` is `CHECKPOINT` (with an optional `;`).
/// The rest of an `ALTER SYSTEM ...` statement after those two words (sqlparser does not
/// know the statement).
fn alter_system_rest(sql: &str) -> Option<&str> {
    let t = sql.trim_start();
    let (w1, rest) = t.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let (w2, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    (w1.eq_ignore_ascii_case("alter") && w2.eq_ignore_ascii_case("system")).then_some(rest)
}

/// 42601 at the first word of `rest` (or at the end of input).
fn syntax_error_at(rest: &str) -> super::error::SqlError {
    match rest.split_whitespace().next() {
        Some(w) => err("42601", format!("syntax error at or near \"{w}\"")),
        None => err("42601", "syntax error at end of input"),
    }
}

/// `xact.c: IsTransactionExitStmt`: what a failed transaction block still takes.
fn is_transaction_exit(stmt: &Statement) -> bool {
    matches!(stmt, Statement::Commit { .. } | Statement::Rollback { .. })
}

fn is_checkpoint(sql: &str) -> bool {
    let t = sql.trim().trim_end_matches(';').trim();
    t.eq_ignore_ascii_case("checkpoint")
}

/// The text of a SET's value list (`DEFAULT`: `None`; several values joined by ", ").
fn set_values(values: &[Expr]) -> SqlResult<Option<String>> {
    match values {
        [v] => set_value(v),
        vs => Ok(Some(
            vs.iter()
                .map(|v| set_value(v).map(Option::unwrap_or_default))
                .collect::<SqlResult<Vec<_>>>()?
                .join(", "),
        )),
    }
}

/// The text of a SET value.
fn set_value(e: &Expr) -> SqlResult<Option<String>> {
    Ok(Some(match e {
        Expr::Value(v) => match &v.value {
            AstValue::SingleQuotedString(s) | AstValue::EscapedStringLiteral(s) => s.clone(),
            AstValue::Number(n, _) => n.clone(),
            AstValue::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
            other => return Err(unsupported(format!("SET value {other}"))),
        },
        Expr::Identifier(i)
            if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") =>
        {
            return Ok(None)
        }
        Expr::Identifier(i) => ident_name(i),
        Expr::UnaryOp { op: sqlparser::ast::UnaryOperator::Minus, expr } => {
            format!("-{}", set_value(expr)?.unwrap_or_default())
        }
        other => return Err(unsupported(format!("SET value {other}"))),
    }))
}

fn bind_create(
    ct: &CreateTable,
    sql: &str,
    server: &dyn ServerContext,
    settings: &SessionSettings,
) -> SqlResult<TableDef> {
    if ct.query.is_some() {
        return Err(unsupported("CREATE TABLE AS"));
    }
    if ct.temporary || ct.external || ct.or_replace || ct.like.is_some() || ct.clone.is_some() {
        return Err(unsupported("this CREATE TABLE form"));
    }
    let name = object_name(&ct.name);
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut pkey: Option<Vec<usize>> = None;
    let multiple_pk =
        || err("42P16", format!("multiple primary keys for table \"{name}\" are not allowed"));
    for c in &ct.columns {
        let cname = ident_name(&c.name);
        if columns.iter().any(|x| x.name == cname) {
            return Err(err("42701", format!("column \"{cname}\" specified more than once")));
        }
        let ty = type_from_name(&c.data_type.to_string())
            .map_err(|e| at(e, position(sql, c.data_type_span(sql))))?;
        let mut col = ColumnDef { name: cname.clone(), ty, not_null: false, default: None };
        for o in &c.options {
            match &o.option {
                ColumnOption::NotNull => col.not_null = true,
                ColumnOption::Null => {}
                ColumnOption::Default(e) => {
                    let empty = Scope::default();
                    let mut st = BindState::default();
                    let (x, t) = Binder {
                        sql,
                        scope: &empty,
                        st: &mut st,
                        server,
                        no_aggs: Some("DEFAULT expressions"),
                    }
                    .bind(e)?;
                    let constant = matches!(x, Ex::Const(_))
                        || (x.is_row_free() && st.pre.is_empty() && st.params.is_empty() && {
                            let mut pure = true;
                            x.walk(&mut |n| {
                                if matches!(n, Ex::Func(..)) {
                                    pure = false
                                }
                            });
                            pure
                        });
                    if !constant {
                        return Err(unsupported("non-constant DEFAULT expressions"));
                    }
                    let cx = EvalCtx {
                        params: &[],
                        pre: &[],
                        txn_start: 0,
                        stmt_start: 0,
                        settings,
                        pid: 0,
                    };
                    let v = x.eval(&[], &cx)?;
                    let v = if t == SqlType::Unknown {
                        match v {
                            Value::Text(s) => parse_text(ty, &s)?,
                            v => v,
                        }
                    } else {
                        cast(v, t, ty, false)?
                    };
                    col.default = Some(v);
                }
                ColumnOption::PrimaryKey(_) => {
                    if pkey.is_some() {
                        // sqlparser keeps no span for the option: find its keyword
                        let from = position(sql, c.name.span).unwrap_or(1);
                        let rest: String =
                            sql.chars().skip(from - 1).collect::<String>().to_ascii_lowercase();
                        let pos = rest.find("primary").map(|i| from + rest[..i].chars().count());
                        return Err(at(multiple_pk(), pos));
                    }
                    pkey = Some(vec![columns.len()]);
                    col.not_null = true;
                }
                other => return Err(unsupported(format!("column constraint {other}"))),
            }
        }
        columns.push(col);
    }
    for tc in &ct.constraints {
        match tc {
            TableConstraint::PrimaryKey(pk) => {
                if pkey.is_some() {
                    return Err(multiple_pk());
                }
                let mut idx = Vec::new();
                for ic in &pk.columns {
                    let Expr::Identifier(i) = &ic.column.expr else {
                        return Err(unsupported("expressions in PRIMARY KEY"));
                    };
                    let n = ident_name(i);
                    let k = columns.iter().position(|c| c.name == n).ok_or_else(|| {
                        at(
                            err(
                                sqlstate::UNDEFINED_COLUMN,
                                format!("column \"{n}\" named in key does not exist"),
                            ),
                            position(sql, i.span),
                        )
                    })?;
                    columns[k].not_null = true;
                    idx.push(k);
                }
                pkey = Some(idx);
            }
            other => return Err(unsupported(format!("table constraint {other}"))),
        }
    }
    let Some(pkey) = pkey else { return Err(unsupported("a table without a primary key")) };
    Ok(TableDef { oid: 0, name, columns, pkey })
}

trait DataTypeSpan {
    fn data_type_span(&self, sql: &str) -> sqlparser::tokenizer::Span;
}

impl DataTypeSpan for sqlparser::ast::ColumnDef {
    fn data_type_span(&self, _sql: &str) -> sqlparser::tokenizer::Span {
        self.name.span
    }
}

/// One row in COPY's text format (`copyto.c: CopyAttributeOutText`): tab-separated,
/// NULL as `\N`, backslash and control characters escaped, a newline at the end.
fn copy_text_line(types: &[SqlType], row: &[Value]) -> bytes::Bytes {
    let mut line = String::new();
    for (i, (t, v)) in types.iter().zip(row).enumerate() {
        if i > 0 {
            line.push('\t');
        }
        match super::types::text_out(*t, v) {
            None => line.push_str("\\N"),
            Some(text) => {
                for c in text.chars() {
                    match c {
                        '\\' => line.push_str("\\\\"),
                        '\u{8}' => line.push_str("\\b"),
                        '\u{c}' => line.push_str("\\f"),
                        '\n' => line.push_str("\\n"),
                        '\r' => line.push_str("\\r"),
                        '\t' => line.push_str("\\t"),
                        '\u{b}' => line.push_str("\\v"),
                        c => line.push(c),
                    }
                }
            }
        }
    }
    line.push('\n');
    bytes::Bytes::from(line)
}

impl Session {
    /// A session of backend `info` over `engine`, with what lives outside it from `server`.
    pub fn new(engine: Arc<Engine>, server: Arc<dyn ServerContext>, info: SessionInfo) -> Session {
        // The generation first: a reload in between only makes the first command rebase.
        let settings_generation = server.settings_generation();
        let mut settings = SessionSettings::new(server.settings(), &info.application_name);
        // The startup packet's settings (checked before the session was made).
        for (name, value) in &info.settings {
            let _ = settings.set(name, value);
        }
        let settings = Arc::new(settings);
        Session {
            engine,
            server,
            info,
            settings,
            tx: TxState::Idle,
            parsed: HashMap::new(),
            notices: Vec::new(),
            exit: false,
            in_block: false,
            guc_txn: None,
            settings_generation,
        }
    }

    /// `ProcessConfigFile` at the next command: after a reload, what this session did not
    /// SET takes the files' new values (also in the block's saved settings).
    fn take_reload(&mut self) {
        let g = self.server.settings_generation();
        if g == self.settings_generation {
            return;
        }
        self.settings_generation = g;
        let files = self.server.settings();
        Arc::make_mut(&mut self.settings).rebase(files.clone());
        if let Some(t) = &mut self.guc_txn {
            Arc::make_mut(&mut t.at_begin).rebase(files.clone());
            Arc::make_mut(&mut t.session).rebase(files);
        }
    }

    /// The session's settings.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    fn bind(&self, stmt: &Statement, sql: &str, txn: &Txn, st: &mut BindState) -> SqlResult<Plan> {
        let server = self.server.as_ref();
        Ok(match stmt {
            Statement::Query(q) => Plan::Select(Box::new(bind_select(q, sql, txn, server, st)?)),
            Statement::Insert(i) => Plan::Insert(Box::new(bind_insert(i, sql, txn, server, st)?)),
            Statement::Update(u) => Plan::Update(bind_update(u, sql, txn, server, st)?),
            Statement::Delete(d) => Plan::Delete(bind_delete(d, sql, txn, server, st)?),
            Statement::StartTransaction { statements, exception, modes, .. }
                if statements.is_empty() && exception.is_none() =>
            {
                use sqlparser::ast::{
                    TransactionAccessMode, TransactionIsolationLevel, TransactionMode,
                };
                for m in modes {
                    match m {
                        TransactionMode::IsolationLevel(
                            TransactionIsolationLevel::ReadCommitted
                            | TransactionIsolationLevel::ReadUncommitted,
                        )
                        | TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => {}
                        other => return Err(unsupported(format!("transaction mode {other}"))),
                    }
                }
                Plan::Begin
            }
            Statement::Commit { chain: false, .. } => Plan::Commit,
            Statement::Rollback { chain: false, savepoint: None } => Plan::Rollback,
            Statement::Set(Set::SingleAssignment { variable, values, scope, .. }) => {
                let local = matches!(scope, Some(sqlparser::ast::ContextModifier::Local));
                let name = object_name(variable);
                Plan::Set { name, value: set_values(values)?, local }
            }
            Statement::Set(Set::SetTimeZone { value, local, .. }) => {
                Plan::Set { name: "TimeZone".into(), value: set_value(value)?, local: *local }
            }
            Statement::ShowVariable { variable } => {
                let name = variable.iter().map(ident_name).collect::<Vec<_>>().join(" ");
                let name = match name.as_str() {
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    "time zone" => "TimeZone".to_string(),
                    "all" => return Err(unsupported("SHOW ALL")),
                    _ => name,
                };
                self.settings.show(&name)?;
                let shown =
                    if name == "TimeZone" { "TimeZone".to_string() } else { name.to_lowercase() };
                Plan::Show(shown)
            }
            Statement::Reset(r) => match &r.reset {
                Reset::ALL => Plan::Reset(None),
                Reset::ConfigurationParameter(n) => Plan::Reset(Some(object_name(n))),
                Reset::SessionAuthorization => {
                    return Err(unsupported("RESET SESSION AUTHORIZATION"))
                }
            },
            Statement::CreateTable(ct) => {
                let def = bind_create(ct, sql, server, &self.settings)?;
                Plan::CreateTable { def, if_not_exists: ct.if_not_exists }
            }
            Statement::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                cascade: false,
                temporary: false,
                ..
            } => {
                Plan::Drop { names: names.iter().map(object_name).collect(), if_exists: *if_exists }
            }
            Statement::Truncate(t)
                if t.partitions.is_none() && !t.if_exists && t.on_cluster.is_none() =>
            {
                Plan::Truncate(t.table_names.iter().map(|n| object_name(&n.name)).collect())
            }
            Statement::Discard { .. } => Plan::Discard,
            Statement::Copy { source, to, target, options, legacy_options, .. } => {
                let unsupported_copy =
                    |what: &str| at(unsupported(what), position(sql, stmt.span()));
                if !*to {
                    return Err(unsupported_copy("COPY FROM"));
                }
                if !matches!(target, CopyTarget::Stdout) {
                    return Err(unsupported_copy("COPY TO a file or program"));
                }
                for o in options {
                    match o {
                        CopyOption::Format(f) if f.value.eq_ignore_ascii_case("text") => {}
                        other => return Err(unsupported_copy(&format!("COPY option {other}"))),
                    }
                }
                if let Some(other) = legacy_options.first() {
                    return Err(unsupported_copy(&format!("COPY option {other}")));
                }
                let plan = match source {
                    CopySource::Query(q) => bind_select(q, sql, txn, server, st)?,
                    CopySource::Table { table_name, columns } => {
                        let cols = if columns.is_empty() {
                            "*".to_string()
                        } else {
                            columns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                        };
                        let text = format!("SELECT {cols} FROM {table_name}");
                        let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &text)
                            .map_err(|e| unsupported_copy(&format!("COPY of {table_name}: {e}")))?;
                        let Some(Statement::Query(q)) = parsed.first() else {
                            return Err(unsupported_copy("COPY of this source"));
                        };
                        bind_select(q, &text, txn, server, st)?
                    }
                };
                Plan::CopyOut(Box::new(plan))
            }
            other => {
                let first = other.to_string();
                let word = first.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                return Err(at(unsupported(word), position(sql, other.span())));
            }
        })
    }

    /// Runs every statement of `sql` (the simple query protocol).
    pub async fn run_simple(&mut self, sql: &str) -> SimpleQueryResult {
        self.take_reload();
        let mut res = SimpleQueryResult::default();
        let notices = truncation_notices(sql);
        res.outputs.extend(notices.into_iter().map(|f| QueryOutput::Notice(Box::new(f))));
        if let Some(rest) = alter_system_rest(sql) {
            match self.alter_system(rest).await {
                Ok(o) => res.outputs.push(o),
                Err(e) => {
                    self.fail_block();
                    res.error = Some(e);
                }
            }
            return res;
        }
        if is_checkpoint(sql) {
            match self.checkpoint().await {
                Ok(o) => res.outputs.push(o),
                Err(e) => res.error = Some(e),
            }
            return res;
        }
        let stmts = match parse(sql) {
            Ok(s) => s,
            Err(e) => {
                self.fail_block();
                res.error = Some(e);
                return res;
            }
        };
        if stmts.is_empty() {
            res.outputs.push(QueryOutput::Empty);
            return res;
        }
        // postgres.c: several statements in one Query run in one implicit transaction
        // block, unless they manage transactions themselves.
        let mut implicit = stmts.len() > 1 && matches!(self.tx, TxState::Idle);
        if implicit {
            self.tx = TxState::Block(Box::new(self.engine.begin()), now_ts());
        }
        if matches!(self.tx, TxState::Implicit(..)) {
            // A Query before the Sync: it runs in the same transaction, and ends it.
            if let TxState::Implicit(txn, start) = std::mem::take(&mut self.tx) {
                self.tx = TxState::Block(txn, start);
                implicit = true;
            }
        }
        for stmt in &stmts {
            if implicit {
                match stmt {
                    Statement::StartTransaction { .. } => {
                        implicit = false;
                        res.outputs.push(QueryOutput::Command("BEGIN".into()));
                        continue;
                    }
                    Statement::Commit { .. } | Statement::Rollback { .. } => {
                        // xact.c: EndImplicitTransactionBlock's callers warn, then end it
                        implicit = false;
                        res.outputs.push(notice(
                            Severity::Warning,
                            "25P01",
                            "there is no transaction in progress",
                        ));
                    }
                    _ => {}
                }
            }
            match self.run_statement(stmt, sql, None, None).await {
                Ok(outs) => res.outputs.extend(outs),
                Err(e) => {
                    res.error = Some(e);
                    if implicit {
                        // the implicit block is rolled back and gone
                        self.tx = TxState::Idle;
                        implicit = false;
                    }
                    break;
                }
            }
        }
        if implicit {
            if let TxState::Block(mut txn, _) = std::mem::take(&mut self.tx) {
                let committed = self.commit(&mut txn).await;
                self.settle_settings(committed.is_ok());
                match committed {
                    Ok(notes) if self.exit => {
                        // The last statement's CommandComplete is not sent.
                        res.outputs.pop();
                        res.outputs.extend(notes);
                    }
                    Ok(notes) => {
                        let last = res.outputs.pop();
                        res.outputs.extend(notes);
                        res.outputs.extend(last);
                    }
                    Err(e) => res.error = Some(e),
                }
            }
        }
        res
    }

    /// Commits `txn` (`RecordTransactionCommit`), then waits for synchronous replication
    /// as `synchronous_commit` asks (`SyncRepWaitForLSN`). Returns the WARNING an
    /// interrupted wait gives; after a terminate request the session asks to exit.
    ///
    /// # Errors
    /// The local commit failed.
    async fn commit(&mut self, txn: &mut Txn) -> SqlResult<Vec<QueryOutput>> {
        let level = self.settings.sync_commit();
        let Some(lsn) = txn.commit_at(SystemTime::now(), level).await? else {
            return Ok(Vec::new());
        };
        const DETAIL: &str =
            "The transaction has already committed locally, but might not have been replicated to the standby.";
        let warning = |code: &str, msg: &str| {
            QueryOutput::Notice(Box::new(
                ErrorFields::new(Severity::Warning, code, msg).with_detail(DETAIL),
            ))
        };
        Ok(match self.server.sync_rep_wait(self.info.pid, lsn, level).await {
            SyncRepWaitEnd::NotWaited | SyncRepWaitEnd::Released => Vec::new(),
            SyncRepWaitEnd::Canceled => vec![warning(
                "01000",
                "canceling wait for synchronous replication due to user request",
            )],
            SyncRepWaitEnd::Terminated => {
                // syncrep.c: the warning, then nothing more to the client
                // (whereToSendOutput = DestNone) and the backend exits.
                self.exit = true;
                vec![warning(
                    "57P01",
                    "canceling the wait for synchronous replication and terminating connection due to administrator command",
                )]
            }
        })
    }

    /// SET or RESET: changes the session's settings; inside a block also what the block's
    /// commit keeps, unless `local` (the block's starting settings are saved first).
    fn change_settings(
        &mut self,
        local: bool,
        apply: impl Fn(&mut Arc<SessionSettings>) -> SqlResult<()>,
    ) -> SqlResult<()> {
        if self.in_block {
            let g = self.guc_txn.get_or_insert_with(|| GucTxn {
                at_begin: self.settings.clone(),
                session: self.settings.clone(),
            });
            if !local {
                apply(&mut g.session)?;
            }
        }
        apply(&mut self.settings)
    }

    /// The end of a transaction block for its settings: a commit keeps its plain SETs
    /// and drops its SET LOCALs; a rollback (or an abort) drops both.
    fn settle_settings(&mut self, committed: bool) {
        if let Some(g) = self.guc_txn.take() {
            self.settings = if committed { g.session } else { g.at_begin };
            if let Ok(v) = self.settings.show("application_name") {
                self.server.setting_changed(self.info.pid, "application_name", &v);
            }
        }
    }

    fn fail_block(&mut self) {
        self.tx = match std::mem::take(&mut self.tx) {
            TxState::Block(mut txn, _) => {
                let _ = txn.rollback(SystemTime::now());
                self.settle_settings(false);
                TxState::Failed
            }
            TxState::Implicit(mut txn, _) => {
                let _ = txn.rollback(SystemTime::now());
                TxState::Idle
            }
            other => other,
        };
    }

    /// Sync (`finish_xact_command`): commits the extended protocol's implicit
    /// transaction, if one is open.
    ///
    /// # Errors
    /// The commit failed.
    pub async fn sync(&mut self) -> SqlResult<()> {
        match std::mem::take(&mut self.tx) {
            TxState::Implicit(mut txn, _) => {
                for note in self.commit(&mut txn).await? {
                    if let QueryOutput::Notice(f) = note {
                        self.notices.push(*f);
                    }
                }
            }
            other => self.tx = other,
        }
        Ok(())
    }

    /// `ALTER SYSTEM SET name { TO | = } { value [, ...] | DEFAULT }` and
    /// `ALTER SYSTEM RESET { name | ALL }` (`guc.c: AlterSystemSetConfigFile`): validated
    /// as SET validates, written to `postgresql.auto.conf`, applied at the next reload.
    async fn alter_system(&mut self, rest: &str) -> SqlResult<QueryOutput> {
        if !matches!(self.tx, TxState::Idle) {
            return Err(err("25001", "ALTER SYSTEM cannot run inside a transaction block"));
        }
        let rest = rest.trim().trim_end_matches(';').trim_end();
        let word = rest.split_whitespace().next().unwrap_or("");
        let (name, value) = if word.eq_ignore_ascii_case("set") {
            match parse(rest)?.as_slice() {
                [Statement::Set(Set::SingleAssignment { variable, values, scope: None, .. })] => {
                    (Some(object_name(variable)), set_values(values)?)
                }
                _ => return Err(syntax_error_at(rest)),
            }
        } else if word.eq_ignore_ascii_case("reset") {
            match parse(rest)?.as_slice() {
                [Statement::Reset(r)] => match &r.reset {
                    Reset::ALL => (None, None),
                    Reset::ConfigurationParameter(n) => (Some(object_name(n)), None),
                    Reset::SessionAuthorization => return Err(syntax_error_at(rest)),
                },
                _ => return Err(syntax_error_at(rest)),
            }
        } else {
            return Err(syntax_error_at(rest));
        };
        let name = match name {
            None => None,
            Some(n) => {
                let Some(canonical) = NodeSettings::canonical_name(&n) else {
                    return Err(err(
                        "42704",
                        format!("unrecognized configuration parameter \"{n}\""),
                    ));
                };
                if NodeSettings::context(canonical) == Some(Context::Internal) {
                    return Err(err(
                        "55P02",
                        format!("parameter \"{canonical}\" cannot be changed"),
                    ));
                }
                if let Some(v) = &value {
                    self.server.settings().set(canonical, v).map_err(|e| e.fields)?;
                }
                Some(canonical)
            }
        };
        self.server.alter_system(name, value.as_deref()).await?;
        Ok(QueryOutput::Command("ALTER SYSTEM".into()))
    }

    async fn checkpoint(&mut self) -> SqlResult<QueryOutput> {
        if matches!(self.tx, TxState::Failed) {
            return Err(in_failed_transaction());
        }
        if self.server.in_recovery() || self.engine.is_read_only() {
            // PostgreSQL runs a restartpoint on a standby; the server decides.
        }
        self.server.checkpoint().await?;
        Ok(QueryOutput::Command("CHECKPOINT".into()))
    }

    /// Describes one statement (the extended protocol's Parse).
    ///
    /// # Errors
    /// Syntax and analysis errors; 25P02 in a failed block.
    pub fn describe_sql(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> SqlResult<StatementDescription> {
        self.notices.extend(truncation_notices(sql));
        if is_checkpoint(sql) || alter_system_rest(sql).is_some() {
            return Ok(StatementDescription { params: Vec::new(), columns: None });
        }
        let r = self.describe_inner(sql, param_types);
        if r.is_err() {
            self.fail_block();
        }
        r
    }

    /// Bind's look at a prepared statement (`RevalidateCachedQuery`): while no table was
    /// created or dropped since `sql` was last described as `columns`, nothing to do;
    /// else it is described again, and a different result is 0A000, as PostgreSQL
    /// refuses to change a prepared statement's result type. In a failed transaction
    /// block only COMMIT or ROLLBACK without parameters may be bound (`exec_bind_message`).
    ///
    /// # Errors
    /// 25P02 in a failed block; the statement's binding error (its table is gone:
    /// 42P01); 0A000.
    pub fn revalidate_sql(
        &mut self,
        sql: &str,
        param_types: &[u32],
        columns: Option<&[Column]>,
    ) -> SqlResult<()> {
        if matches!(self.tx, TxState::Failed) {
            let stmts = self.parse_cached(sql)?;
            let exit = stmts.first().is_some_and(is_transaction_exit);
            return if exit && param_types.is_empty() {
                Ok(())
            } else {
                Err(in_failed_transaction())
            };
        }
        if is_checkpoint(sql) || alter_system_rest(sql).is_some() {
            return Ok(());
        }
        let generation = self.engine.catalog_generation();
        let same = |d: &(u64, Option<Vec<Column>>)| d.0 == generation && d.1.as_deref() == columns;
        if self.parsed.get(sql).and_then(|p| p.described.as_deref()).is_some_and(same) {
            return Ok(());
        }
        let r = self.describe_inner(sql, param_types).and_then(|now| {
            if now.columns.as_deref() == columns {
                Ok(())
            } else {
                Err(err(sqlstate::FEATURE_NOT_SUPPORTED, "cached plan must not change result type"))
            }
        });
        if r.is_err() {
            self.fail_block();
        }
        r
    }

    /// `sql` parsed, from the cache when it was seen before.
    fn parse_cached(&mut self, sql: &str) -> SqlResult<Arc<Vec<Statement>>> {
        self.parse_cached_with_plan(sql).map(|p| p.stmts)
    }

    /// As [`Session::parse_cached`], with the plan kept for the text, if one is.
    fn parse_cached_with_plan(&mut self, sql: &str) -> SqlResult<Parsed> {
        if let Some(p) = self.parsed.get(sql) {
            return Ok(p.clone());
        }
        let stmts = Arc::new(parse(sql)?);
        if sql.len() > 8192 {
            return Ok(Parsed::new(stmts));
        }
        if self.parsed.len() >= PARSED_CACHE {
            self.parsed.clear();
        }
        self.parsed.insert(sql.to_string(), Parsed::new(Arc::clone(&stmts)));
        Ok(Parsed::new(stmts))
    }

    /// Which plan is kept for `sql` (its address), for tests to see a plan reused.
    #[cfg(test)]
    pub(super) fn kept_plan(&self, sql: &str) -> Option<usize> {
        self.parsed.get(sql)?.plan.as_ref().map(|b| Arc::as_ptr(b) as usize)
    }

    /// Keeps `bound` for the next Execute of `sql` (if the text is kept at all).
    fn keep_plan(&mut self, sql: &str, bound: &Arc<Bound>) {
        if let Some(p) = self.parsed.get_mut(sql) {
            p.plan = Some(Arc::clone(bound));
        }
    }

    fn describe_inner(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> SqlResult<StatementDescription> {
        let stmts = self.parse_cached(sql)?;
        let stmt = match stmts.as_slice() {
            [] => return Ok(StatementDescription { params: param_types.to_vec(), columns: None }),
            [s] => s,
            _ => {
                return Err(err(
                    sqlstate::SYNTAX_ERROR,
                    "cannot insert multiple commands into a prepared statement",
                ))
            }
        };
        if matches!(self.tx, TxState::Failed) && !is_transaction_exit(stmt) {
            return Err(in_failed_transaction());
        }
        let generation = self.engine.catalog_generation();
        let mut st = BindState::new(param_types)?;
        let plan = match &self.tx {
            TxState::Block(txn, _) | TxState::Implicit(txn, _) => {
                self.bind(stmt, sql, txn, &mut st)?
            }
            _ => {
                let txn = self.engine.begin();
                self.bind(stmt, sql, &txn, &mut st)?
            }
        };
        let columns: Option<Vec<Column>> = plan
            .columns()
            .map(|cols| cols.into_iter().map(|(n, t)| Column::new(n, datum_type(t))).collect());
        if let Some(p) = self.parsed.get_mut(sql) {
            p.described = Some(Arc::new((generation, columns.clone())));
        }
        Ok(StatementDescription {
            params: st.param_types().into_iter().map(SqlType::oid).collect(),
            columns,
        })
    }

    /// Runs one statement with bound parameters (the extended protocol's Execute).
    ///
    /// # Errors
    /// The statement's error.
    pub async fn execute_sql(&mut self, sql: &str, params: &[Param]) -> SqlResult<QueryOutput> {
        self.take_reload();
        if let Some(rest) = alter_system_rest(sql) {
            let r = self.alter_system(rest).await;
            if r.is_err() {
                self.fail_block();
            }
            return r;
        }
        if is_checkpoint(sql) {
            return self.checkpoint().await;
        }
        let Parsed { stmts, plan: kept, .. } = match self.parse_cached_with_plan(sql) {
            Ok(s) => s,
            Err(e) => {
                self.fail_block();
                return Err(e);
            }
        };
        let Some(stmt) = stmts.first() else { return Ok(QueryOutput::Empty) };
        let outs = self.run_statement(stmt, sql, Some(params), kept).await?;
        let mut result = QueryOutput::Empty;
        for o in outs {
            match o {
                QueryOutput::Notice(fields) => self.notices.push(*fields),
                o => result = o,
            }
        }
        Ok(result)
    }

    async fn run_statement(
        &mut self,
        stmt: &Statement,
        sql: &str,
        params: Option<&[Param]>,
        kept: Option<Arc<Bound>>,
    ) -> SqlResult<Vec<QueryOutput>> {
        let failed = matches!(self.tx, TxState::Failed);
        if failed && !is_transaction_exit(stmt) {
            return Err(in_failed_transaction());
        }
        let r = match self.statement_timeout() {
            Some(limit) => {
                match tokio::time::timeout(limit, self.run_inner(stmt, sql, params, kept)).await {
                    Ok(r) => r,
                    // postgres.c: ProcessInterrupts; the statement's work was dropped (its
                    // transaction rolled back, or its block left failed).
                    Err(_) => Err(ErrorFields::error(
                        sqlstate::QUERY_CANCELED,
                        "canceling statement due to statement timeout",
                    )),
                }
            }
            None => self.run_inner(stmt, sql, params, kept).await,
        };
        if r.is_err() {
            self.fail_block();
        }
        let raised = self.server.take_notices(self.info.pid);
        r.map(|outs| {
            raised.into_iter().map(|f| QueryOutput::Notice(Box::new(f))).chain(outs).collect()
        })
    }

    /// `statement_timeout`, when set.
    fn statement_timeout(&self) -> Option<std::time::Duration> {
        self.timeout_setting("statement_timeout")
    }

    /// A millisecond session setting that is off at 0 (asked once or more per statement,
    /// so read in place).
    fn timeout_setting(&self, name: &str) -> Option<std::time::Duration> {
        let text = self.settings.session_value(name)?;
        let unit = walstream_sender::config::Unit::Ms;
        let ms = walstream_sender::config::parse_int(name, text, unit).ok()?;
        (ms > 0).then(|| std::time::Duration::from_millis(ms as u64))
    }

    async fn run_inner(
        &mut self,
        stmt: &Statement,
        sql: &str,
        params: Option<&[Param]>,
        kept: Option<Arc<Bound>>,
    ) -> SqlResult<Vec<QueryOutput>> {
        let types: Vec<u32> =
            params.map(|p| p.iter().map(|x| x.type_oid).collect()).unwrap_or_default();
        // Read before binding: a catalog change during the bind then makes the plan stale.
        let generation = self.engine.catalog_generation();
        let kept = kept.filter(|b| b.generation == generation && b.param_types == types);
        let st = match kept {
            Some(_) => None,
            None => Some(BindState::new(&types)?),
        };
        // The extended protocol (parameters given) keeps an implicit transaction open
        // until Sync; the simple protocol commits it after the statement.
        let extended = params.is_some();
        let (mut txn, start, implicit, continued) = match std::mem::take(&mut self.tx) {
            TxState::Block(t, s) => (t, s, false, false),
            TxState::Implicit(t, s) => (t, s, true, true),
            TxState::Failed => {
                // only COMMIT / ROLLBACK get here
                self.tx = TxState::Idle;
                return Ok(vec![QueryOutput::Command("ROLLBACK".into())]);
            }
            TxState::Idle => (Box::new(self.engine.begin()), now_ts(), true, false),
        };
        txn.set_lock_timeout(self.timeout_setting("lock_timeout"));
        txn.set_wait_reporter(self.server.lock_wait_reporter(self.info.pid));
        if txn.conflict_handler_unset() {
            txn.set_conflict_handler(self.server.recovery_conflict_handler(self.info.pid));
        }
        if !implicit {
            // While the block's transaction is out of `self.tx`, a dropped (canceled)
            // statement leaves the block failed, as a canceled statement does.
            self.tx = TxState::Failed;
        }
        let bound = match (kept, st) {
            (Some(b), _) => {
                txn.hold_tables(&b.st.tables);
                b
            }
            (None, st) => {
                let mut st = st.unwrap_or_default();
                let plan = match self.bind(stmt, sql, &txn, &mut st) {
                    Ok(p) => p,
                    Err(e) => {
                        if !implicit {
                            self.tx = TxState::Block(txn, start);
                        }
                        return Err(e);
                    }
                };
                let keep = extended && Bound::keepable(&plan);
                let b = Arc::new(Bound { generation, param_types: types, plan, st });
                if keep {
                    self.keep_plan(sql, &b);
                }
                b
            }
        };
        let (plan, st) = (&bound.plan, &bound.st);
        // transaction control
        match plan {
            Plan::Begin => {
                if implicit {
                    // xact.c: BeginTransactionBlock; from TBLOCK_STARTED the block takes
                    // in what the implicit transaction did so far.
                    self.tx = TxState::Block(txn, if continued { start } else { now_ts() });
                    return Ok(vec![QueryOutput::Command("BEGIN".into())]);
                }
                self.tx = TxState::Block(txn, start);
                return Ok(vec![
                    notice(
                        Severity::Warning,
                        "25001",
                        "there is already a transaction in progress",
                    ),
                    QueryOutput::Command("BEGIN".into()),
                ]);
            }
            Plan::Commit | Plan::Rollback => {
                let tag = if matches!(plan, Plan::Commit) { "COMMIT" } else { "ROLLBACK" };
                if implicit {
                    // xact.c: EndTransactionBlock / UserAbortTransactionBlock in
                    // TBLOCK_STARTED warn, then end the implicit transaction as asked.
                    let mut out = vec![notice(
                        Severity::Warning,
                        "25P01",
                        "there is no transaction in progress",
                    )];
                    if matches!(plan, Plan::Commit) {
                        out.extend(self.commit(&mut txn).await?);
                    } else {
                        txn.rollback(SystemTime::now())?;
                    }
                    if !self.exit {
                        out.push(QueryOutput::Command(tag.into()));
                    }
                    return Ok(out);
                }
                self.tx = TxState::Idle;
                // The commit runs with the block's settings (SET LOCAL synchronous_commit),
                // which end with it.
                let committed = matches!(plan, Plan::Commit);
                let mut out = Vec::new();
                let ended = if committed {
                    self.commit(&mut txn).await
                } else {
                    txn.rollback(SystemTime::now()).map(|()| Vec::new()).map_err(Into::into)
                };
                self.settle_settings(committed && ended.is_ok());
                out.extend(ended?);
                if !self.exit {
                    out.push(QueryOutput::Command(tag.into()));
                }
                return Ok(out);
            }
            _ => {}
        }
        if let Some(w) = plan.write_name() {
            if self.engine.is_read_only() || self.server.in_recovery() {
                if !implicit {
                    self.tx = TxState::Block(txn, start);
                }
                return Err(err("25006", format!("cannot execute {w} in a read-only transaction")));
            }
        }
        // parameters
        let ptypes = st.param_types();
        let mut pvals = Vec::with_capacity(ptypes.len());
        match params {
            None => {
                if !ptypes.is_empty() {
                    if !implicit {
                        self.tx = TxState::Block(txn, start);
                    }
                    return Err(err("42P02", "there is no parameter $1"));
                }
            }
            Some(ps) => {
                for (i, ty) in ptypes.iter().enumerate() {
                    let v = match ps.get(i) {
                        None => Value::Null,
                        Some(p) if p.format == 1 && *ty == SqlType::Bytea => {
                            p.value.as_ref().map_or(Value::Null, |b| Value::Bytea(b.to_vec()))
                        }
                        Some(p) => match p.to_text(i) {
                            Ok(None) => Value::Null,
                            Ok(Some(t)) => match parse_text(*ty, &t) {
                                Ok(v) => v,
                                Err(e) => {
                                    if !implicit {
                                        self.tx = TxState::Block(txn, start);
                                    }
                                    return Err(e.into());
                                }
                            },
                            Err(e) => {
                                if !implicit {
                                    self.tx = TxState::Block(txn, start);
                                }
                                return Err(e);
                            }
                        },
                    };
                    pvals.push(v);
                }
            }
        }
        let stmt_start = now_ts();
        let txn_start = if implicit && !continued { stmt_start } else { start };
        self.in_block = !implicit;
        let result = self.exec(plan, &mut txn, &st.pre, &pvals, txn_start, stmt_start).await;
        self.in_block = false;
        let result = match result {
            Ok(o) => txn.end_statement().map(|_| o).map_err(ErrorFields::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(outs) => {
                if implicit && extended {
                    // Committed at Sync.
                    self.tx = TxState::Implicit(txn, txn_start);
                } else if implicit {
                    let notes = self.commit(&mut txn).await?;
                    if self.exit {
                        return Ok(notes);
                    }
                    return Ok(notes.into_iter().chain(outs).collect());
                } else {
                    self.tx = TxState::Block(txn, start);
                }
                Ok(outs)
            }
            Err(e) => {
                txn.discard_statement();
                let _ = txn.rollback(SystemTime::now());
                if !implicit {
                    self.tx = TxState::Failed;
                    self.settle_settings(false);
                }
                Err(e)
            }
        }
    }

    /// Evaluates the statement's server calls; returns their values and the seconds its
    /// `pg_sleep` calls ask for, for the caller to sleep (per row of a SELECT, as
    /// PostgreSQL evaluates its target list once per row).
    async fn pre_calls(&self, pre: &[PreCall], cx: &EvalCtx<'_>) -> SqlResult<(Vec<Value>, f64)> {
        let mut out = Vec::with_capacity(pre.len());
        let mut sleep = 0.0;
        for p in pre {
            let cx2 = EvalCtx {
                pid: cx.pid,
                params: cx.params,
                pre: &out,
                txn_start: cx.txn_start,
                stmt_start: cx.stmt_start,
                settings: cx.settings,
            };
            match p {
                PreCall::Server { name, args, types } => {
                    if args.iter().any(|a| !a.is_row_free()) {
                        return Err(unsupported(format!("{name}() over table columns")));
                    }
                    let vals =
                        args.iter().map(|a| a.eval(&[], &cx2)).collect::<SqlResult<Vec<_>>>()?;
                    let vals = self.server.call(name, vals, self.info.pid).await?;
                    out.push(match vals.as_slice() {
                        [one] if types.len() == 1 => one.clone(),
                        vs => Value::Text(super::server::record_text(types, vs)),
                    });
                }
                PreCall::Sleep(x) => {
                    if !x.is_row_free() {
                        return Err(unsupported("pg_sleep() over table columns"));
                    }
                    let secs = x.eval(&[], &cx2)?.as_f64().unwrap_or(0.0);
                    if secs > 0.0 && secs.is_finite() {
                        sleep += secs;
                    }
                    out.push(Value::Text(String::new()));
                }
            }
        }
        Ok((out, sleep))
    }

    async fn exec(
        &mut self,
        plan: &Plan,
        txn: &mut Txn,
        pre: &[PreCall],
        params: &[Value],
        txn_start: i64,
        stmt_start: i64,
    ) -> SqlResult<Vec<QueryOutput>> {
        let settings = Arc::clone(&self.settings);
        let pid = self.info.pid;
        let cx0 = EvalCtx { params, pre: &[], txn_start, stmt_start, settings: &settings, pid };
        let (pre_vals, sleep) = self.pre_calls(pre, &cx0).await?;
        let pause = |times: usize| async move {
            let secs = (sleep * times as f64).min(86_400.0);
            if secs > 0.0 {
                tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
            }
        };
        if !matches!(plan, Plan::Select(_)) {
            pause(1).await;
        }
        let cx =
            EvalCtx { params, pre: &pre_vals, txn_start, stmt_start, settings: &settings, pid };
        let server = Arc::clone(&self.server);
        let rows_out = |cols: Vec<(String, SqlType)>, rows: Vec<Vec<Value>>, tag: String| {
            let datums = rows
                .iter()
                .map(|r| r.iter().zip(&cols).map(|(v, (_, t))| to_datum(*t, v)).collect())
                .collect();
            QueryOutput::Rows {
                columns: cols.into_iter().map(|(n, t)| Column::new(n, datum_type(t))).collect(),
                rows: datums,
                tag,
            }
        };
        Ok(vec![match plan {
            Plan::CopyOut(p) => {
                let rows = p.run(txn, server.as_ref(), &cx).await?;
                let types: Vec<SqlType> = p.columns.iter().map(|(_, t)| *t).collect();
                let lines = rows.iter().map(|r| copy_text_line(&types, r)).collect();
                QueryOutput::CopyOut { columns: types.len(), lines }
            }
            Plan::Select(p) => {
                let rows = p.run(txn, server.as_ref(), &cx).await?;
                pause(rows.len()).await;
                let tag = format!("SELECT {}", rows.len());
                rows_out(p.columns.clone(), rows, tag)
            }
            Plan::Insert(p) => {
                let r = p.run(txn, server.as_ref(), &cx).await?;
                let tag = format!("INSERT 0 {}", r.count);
                match p.returning.columns.is_empty() {
                    true => QueryOutput::Command(tag),
                    false => rows_out(p.returning.columns.clone(), r.rows, tag),
                }
            }
            Plan::Update(p) | Plan::Delete(p) => {
                let r = p.run(txn, &cx).await?;
                let verb = if matches!(plan, Plan::Update(_)) { "UPDATE" } else { "DELETE" };
                let tag = format!("{verb} {}", r.count);
                match p.returning.columns.is_empty() {
                    true => QueryOutput::Command(tag),
                    false => rows_out(p.returning.columns.clone(), r.rows, tag),
                }
            }
            Plan::Set { name, value, local } => {
                if *local && !self.in_block {
                    // xact.c: CheckTransactionBlock (WARNING, and the SET lasts only
                    // for its own single-statement transaction).
                    let mut probe = (*self.settings).clone();
                    match value {
                        Some(v) => probe.set(name, v)?,
                        None => probe.reset(name)?,
                    }
                    return Ok(vec![
                        notice(
                            Severity::Warning,
                            "25P01",
                            "SET LOCAL can only be used in transaction blocks",
                        ),
                        QueryOutput::Command("SET".into()),
                    ]);
                }
                self.change_settings(*local, |s| match value {
                    Some(v) => Arc::make_mut(s).set(name, v),
                    None => Arc::make_mut(s).reset(name),
                })?;
                if let Ok(v) = self.settings.show(name) {
                    self.server.setting_changed(self.info.pid, name, &v);
                }
                QueryOutput::Command("SET".into())
            }
            Plan::Show(name) => {
                let v = self.settings.show(name)?;
                QueryOutput::Rows {
                    columns: vec![Column::new(name.clone(), DatumType::Text)],
                    rows: vec![vec![Datum::Text(v)]],
                    tag: "SHOW".into(),
                }
            }
            Plan::Reset(name) => {
                self.change_settings(false, |s| match name {
                    Some(n) => Arc::make_mut(s).reset(n),
                    None => {
                        Arc::make_mut(s).reset_all();
                        Ok(())
                    }
                })?;
                QueryOutput::Command("RESET".into())
            }
            Plan::CreateTable { def, if_not_exists } => {
                let name = def.name.clone();
                match txn.create_table(def.clone(), *if_not_exists).await? {
                    Some(_) => QueryOutput::Command("CREATE TABLE".into()),
                    None => {
                        return Ok(vec![
                            notice(
                                Severity::Notice,
                                "42P07",
                                format!("relation \"{name}\" already exists, skipping"),
                            ),
                            QueryOutput::Command("CREATE TABLE".into()),
                        ])
                    }
                }
            }
            Plan::Drop { names, if_exists } => {
                let mut outs = Vec::new();
                for n in names {
                    let dropped = txn.drop_table(n, *if_exists).await.map_err(|e| match e {
                        crate::engine::EngineError::UndefinedTable(t) => {
                            err("42P01", format!("table \"{t}\" does not exist"))
                        }
                        e => e.into(),
                    })?;
                    if dropped.is_none() {
                        outs.push(notice(
                            Severity::Notice,
                            "00000",
                            format!("table \"{n}\" does not exist, skipping"),
                        ));
                    }
                }
                outs.push(QueryOutput::Command("DROP TABLE".into()));
                return Ok(outs);
            }
            Plan::Truncate(names) => {
                for n in names {
                    let def = txn.table(n)?;
                    txn.truncate(def.oid).await?;
                }
                QueryOutput::Command("TRUNCATE TABLE".into())
            }
            Plan::Discard => QueryOutput::Command("DISCARD ALL".into()),
            Plan::Begin | Plan::Commit | Plan::Rollback => QueryOutput::Empty,
        }])
    }

    /// The transaction status ReadyForQuery reports.
    pub fn status(&self) -> TransactionStatus {
        match self.tx {
            // Sync commits the implicit transaction before ReadyForQuery reports.
            TxState::Idle | TxState::Implicit(..) => TransactionStatus::Idle,
            TxState::Block(..) => TransactionStatus::InTransaction,
            TxState::Failed => TransactionStatus::Failed,
        }
    }
}

impl QuerySession for Session {
    fn simple_query<'a>(&'a mut self, sql: &'a str) -> HandlerFuture<'a, SimpleQueryResult> {
        Box::pin(self.run_simple(sql))
    }

    fn describe<'a>(
        &'a mut self,
        sql: &'a str,
        param_types: &'a [u32],
    ) -> HandlerFuture<'a, Result<StatementDescription, ErrorFields>> {
        Box::pin(async move { self.describe_sql(sql, param_types) })
    }

    fn revalidate<'a>(
        &'a mut self,
        sql: &'a str,
        param_types: &'a [u32],
        columns: Option<&'a [Column]>,
    ) -> HandlerFuture<'a, Result<(), ErrorFields>> {
        Box::pin(async move { self.revalidate_sql(sql, param_types, columns) })
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> HandlerFuture<'a, Result<QueryOutput, ErrorFields>> {
        Box::pin(self.execute_sql(sql, params))
    }

    fn idle_in_transaction_timeout(&self) -> Option<std::time::Duration> {
        self.timeout_setting("idle_in_transaction_session_timeout")
    }

    fn exit_requested(&self) -> bool {
        self.exit
    }

    fn take_notices(&mut self) -> Vec<ErrorFields> {
        std::mem::take(&mut self.notices)
    }

    fn sync(&mut self) -> HandlerFuture<'_, Result<(), ErrorFields>> {
        Box::pin(Session::sync(self))
    }

    fn transaction_status(&self) -> TransactionStatus {
        self.status()
    }
}
