//! Synchronous replication's rules: `synchronous_standby_names` as PostgreSQL 15 parses
//! it (`syncrep_scanner.l`, `syncrep_gram.y`, `check_synchronous_standby_names`), each
//! walsender's priority (`SyncRepGetStandbyPriority`), which standbys are synchronous
//! (`SyncRepGetCandidateStandbys`), the positions they have all reached
//! (`SyncRepGetSyncRecPtr`) and `pg_stat_replication.sync_state`.
//!
//! Pure functions over values: the walsender registry supplies the candidates, the
//! commit path the positions it waits for.

use std::fmt::Write as _;

use walstream_protocol::Lsn;

/// `FIRST n (…)` (or `n (…)`, or a bare list) waits for the `n` highest-priority
/// standbys; `ANY n (…)` for any `n` of them (quorum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRepMethod {
    /// `SYNC_REP_PRIORITY`.
    Priority,
    /// `SYNC_REP_QUORUM`.
    Quorum,
}

/// A parsed, valid `synchronous_standby_names` (`SyncRepConfigData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRepConfig {
    /// How many standbys a commit waits for (greater than zero).
    pub num_sync: i32,
    /// Priority or quorum.
    pub method: SyncRepMethod,
    /// The names in the list, in order; `*` matches any standby.
    pub members: Vec<String>,
}

/// Why a value of `synchronous_standby_names` was refused, with PostgreSQL's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncRepNamesError {
    /// 42601 `invalid value for parameter "synchronous_standby_names": "…"`, the DETAIL
    /// being the parser's message (`syntax error at or near "x"`, `… at end of input`,
    /// `unterminated quoted identifier at end of input`).
    #[error("invalid value for parameter \"synchronous_standby_names\": \"{value}\"")]
    Syntax {
        /// The value as given.
        value: String,
        /// The parser's message.
        detail: String,
    },
    /// 22023 `number of synchronous standbys (0) must be greater than zero`.
    #[error("number of synchronous standbys ({0}) must be greater than zero")]
    NumSync(i32),
}

impl SyncRepNamesError {
    /// The SQLSTATE PostgreSQL reports.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SyncRepNamesError::Syntax { .. } => "42601",
            SyncRepNamesError::NumSync(_) => "22023",
        }
    }

    /// The error as a client sees it.
    pub fn fields(&self) -> walstream_protocol::wire::ErrorFields {
        let f = walstream_protocol::wire::ErrorFields::error(self.sqlstate(), self.to_string());
        match self.detail() {
            Some(d) => f.with_detail(d),
            None => f,
        }
    }

    /// The DETAIL line, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            SyncRepNamesError::Syntax { detail, .. } => Some(detail),
            SyncRepNamesError::NumSync(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Name(String),
    Num(String),
    Any,
    First,
    Comma,
    Open,
    Close,
    Junk,
    /// A quoted identifier that never closed: the scanner's own error.
    Unterminated,
}

/// A token and the text flex's `yytext` holds after scanning it (what an error quotes).
#[derive(Debug, Clone)]
struct Scanned {
    tok: Tok,
    text: String,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_ident_cont(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// `syncrep_scanner.l`: whitespace separates; `ANY` and `FIRST` in any case are
/// keywords; identifiers, digits, `"quoted ""names"""`, `*`, `,`, `(`, `)`; anything
/// else is junk.
fn scan(input: &str) -> Vec<Scanned> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let tok = |tok, text: &str| Scanned { tok, text: text.to_string() };
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b') {
            continue;
        }
        if c == '"' {
            let mut name = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                if c == '"' {
                    if chars.peek().is_some_and(|(_, n)| *n == '"') {
                        chars.next();
                        name.push('"');
                        continue;
                    }
                    closed = true;
                    break;
                }
                name.push(c);
            }
            if !closed {
                out.push(tok(Tok::Unterminated, ""));
                return out;
            }
            out.push(tok(Tok::Name(name), "\""));
            continue;
        }
        if c.is_ascii_digit() {
            let mut end = i + 1;
            while let Some(&(j, d)) = chars.peek() {
                if !d.is_ascii_digit() {
                    break;
                }
                end = j + 1;
                chars.next();
            }
            let text = &input[i..end];
            out.push(tok(Tok::Num(text.to_string()), text));
            continue;
        }
        if is_ident_start(c) {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !is_ident_cont(d) {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            let text = &input[i..end];
            let t = if text.eq_ignore_ascii_case("any") {
                Tok::Any
            } else if text.eq_ignore_ascii_case("first") {
                Tok::First
            } else {
                Tok::Name(text.to_string())
            };
            out.push(tok(t, text));
            continue;
        }
        let t = match c {
            '*' => Tok::Name("*".into()),
            ',' => Tok::Comma,
            '(' => Tok::Open,
            ')' => Tok::Close,
            _ => Tok::Junk,
        };
        out.push(Scanned { tok: t, text: c.to_string() });
    }
    out
}

/// C's `atoi` on a run of digits: `strtol` saturating at `LONG_MAX`, then cast to int.
fn atoi(digits: &str) -> i32 {
    let v = digits
        .bytes()
        .fold(0i64, |acc, b| acc.saturating_mul(10).saturating_add(i64::from(b - b'0')));
    v as i32
}

struct Parser<'a> {
    toks: &'a [Scanned],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|s| &s.tok)
    }

    /// The first error at the current token, worded as `syncrep_yyerror` words it.
    fn error(&self) -> String {
        match self.toks.get(self.at) {
            Some(Scanned { tok: Tok::Unterminated, .. }) => {
                "unterminated quoted identifier at end of input".to_string()
            }
            Some(s) => format!("syntax error at or near \"{}\"", s.text),
            None => "syntax error at end of input".to_string(),
        }
    }

    fn bump(&mut self) {
        self.at += 1;
    }

    fn expect(&mut self, want: &Tok) -> Result<(), String> {
        if self.peek() == Some(want) {
            self.bump();
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Name(n) | Tok::Num(n)) => {
                let n = n.clone();
                self.bump();
                Ok(n)
            }
            _ => Err(self.error()),
        }
    }

    fn list(&mut self) -> Result<Vec<String>, String> {
        let mut names = vec![self.name()?];
        while self.peek() == Some(&Tok::Comma) {
            self.bump();
            names.push(self.name()?);
        }
        Ok(names)
    }

    fn num(&mut self) -> Result<i32, String> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                let v = atoi(n);
                self.bump();
                Ok(v)
            }
            _ => Err(self.error()),
        }
    }

    fn parenthesized(&mut self) -> Result<Vec<String>, String> {
        self.expect(&Tok::Open)?;
        let names = self.list()?;
        self.expect(&Tok::Close)?;
        Ok(names)
    }

    /// `standby_config`, then the end of input.
    fn config(&mut self) -> Result<(i32, SyncRepMethod, Vec<String>), String> {
        let cfg = match self.peek() {
            Some(Tok::Any) => {
                self.bump();
                let n = self.num()?;
                (n, SyncRepMethod::Quorum, self.parenthesized()?)
            }
            Some(Tok::First) => {
                self.bump();
                let n = self.num()?;
                (n, SyncRepMethod::Priority, self.parenthesized()?)
            }
            Some(Tok::Num(_)) if self.toks.get(self.at + 1).map(|s| &s.tok) == Some(&Tok::Open) => {
                let n = self.num()?;
                (n, SyncRepMethod::Priority, self.parenthesized()?)
            }
            _ => (1, SyncRepMethod::Priority, self.list()?),
        };
        if self.at < self.toks.len() {
            return Err(self.error());
        }
        Ok(cfg)
    }
}

impl SyncRepConfig {
    /// Parses `synchronous_standby_names`; `None` for an empty (or blank) value, which
    /// makes replication asynchronous.
    ///
    /// # Errors
    /// The value is refused as PostgreSQL 15 refuses it.
    pub fn parse(value: &str) -> Result<Option<SyncRepConfig>, SyncRepNamesError> {
        // check_synchronous_standby_names: "" is "not defined".
        if value.is_empty() {
            return Ok(None);
        }
        let toks = scan(value);
        let mut p = Parser { toks: &toks, at: 0 };
        let (num_sync, method, members) = p
            .config()
            .map_err(|detail| SyncRepNamesError::Syntax { value: value.to_string(), detail })?;
        if num_sync <= 0 {
            return Err(SyncRepNamesError::NumSync(num_sync));
        }
        Ok(Some(SyncRepConfig { num_sync, method, members }))
    }

    /// The value written back in PostgreSQL's syntax (`FIRST n (…)` / `ANY n (…)`, names
    /// quoted where they must be); it parses to the same configuration.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let kw = match self.method {
            SyncRepMethod::Priority => "FIRST",
            SyncRepMethod::Quorum => "ANY",
        };
        let _ = write!(out, "{kw} {} (", self.num_sync);
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&quote_name(m));
        }
        out.push(')');
        out
    }

    /// `SyncRepGetStandbyPriority`: a standby's priority by its `application_name`: its
    /// 1-based place in the list (the first match, names compared without case, `*`
    /// matching all), 1 for every listed standby under `ANY`, 0 when not listed.
    pub fn priority(&self, application_name: &str) -> i32 {
        let found =
            self.members.iter().position(|m| m == "*" || m.eq_ignore_ascii_case(application_name));
        match (found, self.method) {
            (None, _) => 0,
            (Some(i), SyncRepMethod::Priority) => i32::try_from(i + 1).unwrap_or(i32::MAX),
            (Some(_), SyncRepMethod::Quorum) => 1,
        }
    }
}

/// A name as it must be written to scan back as itself: bare when it is an identifier
/// that is not a keyword (or `*`, or digits), else in double quotes with `"` doubled.
fn quote_name(name: &str) -> String {
    let mut chars = name.chars();
    let bare_ident = chars.next().is_some_and(is_ident_start)
        && chars.all(is_ident_cont)
        && !name.eq_ignore_ascii_case("any")
        && !name.eq_ignore_ascii_case("first");
    let digits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
    if bare_ident || digits || name == "*" {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// One walsender as synchronous replication sees it (`SyncRepStandbyData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its place in the walsender table (ties in priority go to the lower).
    pub index: usize,
    /// [`SyncRepConfig::priority`] of its `application_name` (0: asynchronous).
    pub priority: i32,
    /// Streaming (or stopping): only those count.
    pub streaming: bool,
    /// A cascading walsender (a standby serving WAL) is never synchronous.
    pub cascading: bool,
    /// Positions the standby reported.
    pub write: Lsn,
    /// Flushed.
    pub flush: Lsn,
    /// Replayed.
    pub apply: Lsn,
}

/// `SyncRepGetCandidateStandbys`: the synchronous standbys, in the order PostgreSQL
/// lists them: every eligible one under `ANY`, the `num_sync` of highest priority
/// (lowest number, then lowest index) under `FIRST`. Eligible: streaming, listed, not
/// cascading, with a valid flush position.
pub fn sync_standbys(cfg: &SyncRepConfig, standbys: &[Candidate]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = standbys
        .iter()
        .filter(|s| s.streaming && !s.cascading && s.priority > 0 && s.flush.is_valid())
        .copied()
        .collect();
    if cfg.method == SyncRepMethod::Priority {
        let n = usize::try_from(cfg.num_sync).unwrap_or(0);
        if out.len() > n {
            out.sort_by_key(|s| (s.priority, s.index));
            out.truncate(n);
        }
    }
    out
}

/// Write, flush and apply positions every waiting commit may be released up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedPositions {
    /// `remote_write` waiters up to here.
    pub write: Lsn,
    /// `on` waiters up to here.
    pub flush: Lsn,
    /// `remote_apply` waiters up to here.
    pub apply: Lsn,
}

/// `SyncRepGetSyncRecPtr`: with fewer synchronous standbys than `num_sync`, `None`
/// (commits keep waiting); under `FIRST` the oldest positions among them, under `ANY`
/// the `num_sync`-th latest of each.
pub fn synced_positions(cfg: &SyncRepConfig, standbys: &[Candidate]) -> Option<SyncedPositions> {
    let sync = sync_standbys(cfg, standbys);
    let n = usize::try_from(cfg.num_sync).ok()?;
    if sync.len() < n || n == 0 {
        return None;
    }
    Some(match cfg.method {
        SyncRepMethod::Priority => SyncedPositions {
            write: sync.iter().map(|s| s.write).min()?,
            flush: sync.iter().map(|s| s.flush).min()?,
            apply: sync.iter().map(|s| s.apply).min()?,
        },
        SyncRepMethod::Quorum => {
            let nth = |f: fn(&Candidate) -> Lsn| {
                let mut v: Vec<Lsn> = sync.iter().map(f).collect();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v[n - 1]
            };
            SyncedPositions {
                write: nth(|s| s.write),
                flush: nth(|s| s.flush),
                apply: nth(|s| s.apply),
            }
        }
    })
}

/// `pg_stat_replication.sync_state`: `async` (priority 0), `sync` / `quorum` for one of
/// [`sync_standbys`], `potential` for the other listed ones.
pub fn sync_state(method: SyncRepMethod, priority: i32, is_sync: bool) -> &'static str {
    match (priority, is_sync, method) {
        (0, _, _) => "async",
        (_, true, SyncRepMethod::Priority) => "sync",
        (_, true, SyncRepMethod::Quorum) => "quorum",
        (_, false, _) => "potential",
    }
}

/// One walsender's part in synchronous replication, as the registry keeps it.
#[derive(Debug, Clone, Default)]
struct Standby {
    application_name: String,
    streaming: bool,
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
}

/// Whether commits wait for standbys, and how far the synchronous ones have come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// `synchronous_standby_names` is empty (or this server is a standby): nothing waits.
    NotDefined,
    /// Fewer synchronous standbys than `num_sync` are streaming: commits wait.
    Waiting,
    /// Waiting commits up to these positions may go.
    Reached(SyncedPositions),
}

#[derive(Debug, Default)]
struct StateInner {
    config: Option<SyncRepConfig>,
    standbys: std::collections::BTreeMap<i32, Standby>,
    /// The synchronous standbys already announced in the log.
    announced: std::collections::BTreeSet<i32>,
}

/// The server's synchronous replication state (`WalSndCtl`'s part of it): the
/// configuration, each walsender's name, state and reported positions by pid, and the
/// resulting [`SyncStatus`], published whenever it changes.
#[derive(Debug)]
pub struct SyncRepState {
    inner: std::sync::Mutex<StateInner>,
    status: tokio::sync::watch::Sender<SyncStatus>,
}

impl Default for SyncRepState {
    fn default() -> Self {
        SyncRepState {
            inner: std::sync::Mutex::default(),
            status: tokio::sync::watch::Sender::new(SyncStatus::NotDefined),
        }
    }
}

impl SyncRepState {
    fn lock(&self) -> std::sync::MutexGuard<'_, StateInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the configuration (at start and on reload; `None` when not defined).
    pub fn set_config(&self, config: Option<SyncRepConfig>) {
        let mut inner = self.lock();
        inner.config = config;
        self.publish(&mut inner);
    }

    /// The configuration in force.
    pub fn config(&self) -> Option<SyncRepConfig> {
        self.lock().config.clone()
    }

    /// A walsender's name, whether it streams, and its reported positions changed.
    pub fn update(&self, pid: i32, application_name: &str, streaming: bool, positions: [Lsn; 3]) {
        let mut inner = self.lock();
        let s = inner.standbys.entry(pid).or_default();
        if s.application_name != application_name {
            s.application_name = application_name.to_string();
        }
        s.streaming = streaming;
        [s.write, s.flush, s.apply] = positions;
        self.publish(&mut inner);
    }

    /// A walsender ended.
    pub fn remove(&self, pid: i32) {
        let mut inner = self.lock();
        if inner.standbys.remove(&pid).is_some() {
            self.publish(&mut inner);
        }
    }

    /// The published status, to wait on.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    /// `sync_priority` and `sync_state` of the walsender `pid` for `pg_stat_replication`
    /// (0 and `async` while it reports no flush position, as PostgreSQL shows it).
    pub fn describe(&self, pid: i32) -> (i32, &'static str) {
        let inner = self.lock();
        let (Some(cfg), Some(me)) = (&inner.config, inner.standbys.get(&pid)) else {
            return (0, "async");
        };
        // pg_stat_get_wal_senders: "Treat a standby such as a pg_basebackup background
        // process which always returns an invalid flush location, as an asynchronous
        // standby."
        let priority = if me.flush.is_valid() { cfg.priority(&me.application_name) } else { 0 };
        let is_sync =
            sync_standbys(cfg, &candidates(cfg, &inner)).iter().any(|c| c.index == pid as usize);
        (priority, sync_state(cfg.method, priority, is_sync))
    }

    fn publish(&self, inner: &mut StateInner) {
        let status = match &inner.config {
            None => SyncStatus::NotDefined,
            Some(cfg) => match synced_positions(cfg, &candidates(cfg, inner)) {
                Some(p) => SyncStatus::Reached(p),
                None => SyncStatus::Waiting,
            },
        };
        self.status.send_if_modified(|s| std::mem::replace(s, status) != status);
        self.announce(inner);
    }

    /// `SyncRepReleaseWaiters`' announcement, once per standby as it becomes synchronous.
    fn announce(&self, inner: &mut StateInner) {
        let now: std::collections::BTreeSet<i32> = match &inner.config {
            None => Default::default(),
            Some(cfg) => sync_standbys(cfg, &candidates(cfg, inner))
                .iter()
                .filter_map(|c| i32::try_from(c.index).ok())
                .collect(),
        };
        if let Some(cfg) = &inner.config {
            for pid in now.difference(&inner.announced) {
                let Some(s) = inner.standbys.get(pid) else { continue };
                let name = &s.application_name;
                match cfg.method {
                    SyncRepMethod::Priority => tracing::info!(
                        "standby \"{name}\" is now a synchronous standby with priority {}",
                        cfg.priority(name)
                    ),
                    SyncRepMethod::Quorum => tracing::info!(
                        "standby \"{name}\" is now a candidate for quorum synchronous standby"
                    ),
                }
            }
        }
        inner.announced = now;
    }
}

/// The walsenders as candidates, ordered (and tie-broken) by pid.
fn candidates(cfg: &SyncRepConfig, inner: &StateInner) -> Vec<Candidate> {
    inner
        .standbys
        .iter()
        .map(|(pid, s)| Candidate {
            index: usize::try_from(*pid).unwrap_or(usize::MAX),
            priority: cfg.priority(&s.application_name),
            streaming: s.streaming,
            cascading: false,
            write: s.write,
            flush: s.flush,
            apply: s.apply,
        })
        .collect()
}

/// Fuzzing entry: parses anything without panicking; what parses writes back as text
/// that parses to the same configuration.
pub fn fuzz_names(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(Some(cfg)) = SyncRepConfig::parse(text) {
        let again = SyncRepConfig::parse(&cfg.to_text());
        assert_eq!(again, Ok(Some(cfg)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(text: &str) -> SyncRepConfig {
        SyncRepConfig::parse(text).unwrap().unwrap()
    }

    fn syntax(text: &str) -> String {
        match SyncRepConfig::parse(text) {
            Err(SyncRepNamesError::Syntax { detail, value }) => {
                assert_eq!(value, text);
                detail
            }
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_form_postgresql_accepts() {
        let first = |n, m: &[&str]| SyncRepConfig {
            num_sync: n,
            method: SyncRepMethod::Priority,
            members: m.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(cfg("a, b"), first(1, &["a", "b"]));
        assert_eq!(cfg("*"), first(1, &["*"]));
        assert_eq!(cfg("2 (a, \"B c\")"), first(2, &["a", "B c"]));
        assert_eq!(cfg("first 1 (a)"), first(1, &["a"]));
        assert_eq!(cfg("FIRST 1 (\"x\"\"y\")"), first(1, &["x\"y"]));
        assert_eq!(cfg("FIRST 1 (a, \"\")"), first(1, &["a", ""]));
        assert_eq!(cfg("1"), first(1, &["1"]));
        assert_eq!(cfg("a$b, c"), first(1, &["a$b", "c"]));
        assert_eq!(cfg("é, b"), first(1, &["é", "b"]));
        assert_eq!(cfg("9999999999 (a)").num_sync, 1_410_065_407);
        let any = cfg("any 1 (*)");
        assert_eq!(
            (any.method, any.num_sync, any.members.clone()),
            (SyncRepMethod::Quorum, 1, vec!["*".to_string()])
        );
        assert_eq!(SyncRepConfig::parse(""), Ok(None));
    }

    #[test]
    fn refuses_with_postgresql_15_texts() {
        // ALTER SYSTEM SET synchronous_standby_names = '…' on PostgreSQL 15.18.
        assert_eq!(syntax("FIRST (a"), "syntax error at or near \"(\"");
        assert_eq!(syntax("a,,b"), "syntax error at or near \",\"");
        assert_eq!(syntax("ANY 2 (a, b"), "syntax error at end of input");
        assert_eq!(syntax("a b"), "syntax error at or near \"b\"");
        assert_eq!(syntax("first 1 (a) x"), "syntax error at or near \"x\"");
        assert_eq!(syntax("\"unterminated"), "unterminated quoted identifier at end of input");
        assert_eq!(syntax("ANY x (a)"), "syntax error at or near \"x\"");
        assert_eq!(syntax("(a)"), "syntax error at or near \"(\"");
        assert_eq!(syntax("3 ()"), "syntax error at or near \")\"");
        assert_eq!(syntax("\"a\" \"b\""), "syntax error at or near \"\"\"");
        assert_eq!(syntax("a \"b c\""), "syntax error at or near \"\"\"");
        assert_eq!(syntax("a,"), "syntax error at end of input");
        assert_eq!(syntax("ANY"), "syntax error at end of input");
        assert_eq!(syntax("a (b)"), "syntax error at or near \"(\"");
        assert_eq!(syntax("ANY 1 (a) , b"), "syntax error at or near \",\"");
        assert_eq!(syntax("-1 (a)"), "syntax error at or near \"-\"");
        assert_eq!(syntax("1a"), "syntax error at or near \"a\"");
        assert_eq!(syntax(" "), "syntax error at end of input");
        let zero = SyncRepConfig::parse("FIRST 0 (a)").unwrap_err();
        assert_eq!(
            zero.to_string(),
            "number of synchronous standbys (0) must be greater than zero"
        );
        assert_eq!(zero.sqlstate(), "22023");
        let bad = SyncRepConfig::parse("a b").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "invalid value for parameter \"synchronous_standby_names\": \"a b\""
        );
        assert_eq!(bad.sqlstate(), "42601");
    }

    #[test]
    fn priorities_follow_the_list() {
        let c = cfg("FIRST 2 (s1, S2, *)");
        assert_eq!(c.priority("s1"), 1);
        assert_eq!(c.priority("s2"), 2);
        assert_eq!(c.priority("other"), 3);
        let q = cfg("ANY 2 (s1, s2)");
        assert_eq!((q.priority("s2"), q.priority("s3")), (1, 0));
    }

    fn standby(index: usize, priority: i32, flush: u64) -> Candidate {
        Candidate {
            index,
            priority,
            streaming: true,
            cascading: false,
            write: Lsn(flush + 10),
            flush: Lsn(flush),
            apply: Lsn(flush - 10),
        }
    }

    #[test]
    fn first_waits_for_the_oldest_of_the_highest_priorities() {
        let c = cfg("FIRST 2 (a, b, c)");
        let all = [standby(0, 3, 300), standby(1, 1, 100), standby(2, 2, 200)];
        let sync: Vec<usize> = sync_standbys(&c, &all).iter().map(|s| s.index).collect();
        assert_eq!(sync, vec![1, 2]);
        let p = synced_positions(&c, &all).unwrap();
        assert_eq!((p.write, p.flush, p.apply), (Lsn(110), Lsn(100), Lsn(90)));
        // Only one eligible: not enough, commits wait.
        assert_eq!(synced_positions(&c, &all[..1]), None);
        let mut gone = all;
        gone[1].streaming = false;
        gone[2].flush = Lsn::INVALID;
        assert_eq!(synced_positions(&c, &gone), None);
    }

    #[test]
    fn any_waits_for_the_nth_latest() {
        let c = cfg("ANY 2 (a, b, c)");
        let all = [standby(0, 1, 300), standby(1, 1, 100), standby(2, 1, 200)];
        assert_eq!(sync_standbys(&c, &all).len(), 3);
        assert_eq!(synced_positions(&c, &all).unwrap().flush, Lsn(200));
        assert_eq!(sync_state(c.method, 1, true), "quorum");
        assert_eq!(sync_state(SyncRepMethod::Priority, 1, true), "sync");
        assert_eq!(sync_state(SyncRepMethod::Priority, 2, false), "potential");
        assert_eq!(sync_state(SyncRepMethod::Priority, 0, false), "async");
    }

    #[test]
    fn the_state_publishes_what_commits_may_pass() {
        let st = SyncRepState::default();
        let rx = st.watch();
        assert_eq!(*rx.borrow(), SyncStatus::NotDefined);
        st.update(10_001, "s1", true, [Lsn(30), Lsn(20), Lsn(10)]);
        st.update(10_002, "s2", true, [Lsn(60), Lsn(50), Lsn(40)]);
        st.update(10_003, "other", true, [Lsn(90), Lsn(80), Lsn(70)]);
        st.set_config(Some(cfg("FIRST 1 (s2, s1)")));
        let want = SyncedPositions { write: Lsn(60), flush: Lsn(50), apply: Lsn(40) };
        assert_eq!(*rx.borrow(), SyncStatus::Reached(want));
        assert_eq!(st.describe(10_002), (1, "sync"));
        assert_eq!(st.describe(10_001), (2, "potential"));
        assert_eq!(st.describe(10_003), (0, "async"));
        // The sync standby goes: the potential one takes over.
        st.remove(10_002);
        assert_eq!(st.describe(10_001), (2, "sync"));
        assert!(matches!(*rx.borrow(), SyncStatus::Reached(p) if p.flush == Lsn(20)));
        st.update(10_001, "s1", false, [Lsn(30), Lsn(20), Lsn(10)]);
        assert_eq!(*rx.borrow(), SyncStatus::Waiting);
        st.update(10_004, "s2", true, [Lsn(30), Lsn::INVALID, Lsn::INVALID]);
        assert_eq!(st.describe(10_004), (0, "async"));
        st.set_config(None);
        assert_eq!(*rx.borrow(), SyncStatus::NotDefined);
        assert_eq!(st.describe(10_001), (0, "async"));
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z_][a-zA-Z0-9_$]{0,8}",
            "[0-9]{1,4}",
            Just("*".to_string()),
            "[ -~]{0,8}",
            Just("any".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn written_configs_parse_back(
            num_sync in 1i32..1000,
            quorum in any::<bool>(),
            members in proptest::collection::vec(name(), 1..5),
        ) {
            let c = SyncRepConfig {
                num_sync,
                method: if quorum { SyncRepMethod::Quorum } else { SyncRepMethod::Priority },
                members,
            };
            prop_assert_eq!(SyncRepConfig::parse(&c.to_text()), Ok(Some(c)));
        }

        #[test]
        fn any_text_parses_or_fails_without_panicking(text in "[ -~é]{0,24}") {
            fuzz_names(text.as_bytes());
        }
    }
}
