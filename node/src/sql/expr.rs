//! Expressions: sqlparser's `Expr` bound against a scope of columns into [`Ex`] (columns
//! resolved, types checked and inferred — including `$n` parameter types as PostgreSQL
//! infers them from `k = $1`), and evaluated over a row.

use sqlparser::ast::{
    BinaryOperator, CastKind, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, InTarget, ObjectName, Spanned, UnaryOperator, Value as AstValue,
};
use walstream_protocol::replication::scanner::truncate_identifier;
use walstream_protocol::wire::sqlstate;

use super::error::{
    at, err, position, undefined_function, undefined_operator, unsupported, SqlError, SqlResult,
};
use super::guc::SessionSettings;
use super::numeric::Dec;
use super::server::ServerContext;
use super::types::{
    cast, category, dec_of, int_in_range, numeric_common, text_out, type_from_name, Category,
};
use crate::engine::value::{float8_out, parse_text};
use crate::engine::{SqlType, Value};

/// A column a name can refer to.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeCol {
    /// The relation's name or alias (`excluded` for ON CONFLICT's proposed row).
    pub qual: Option<String>,
    /// The column's name.
    pub name: String,
    /// Its type.
    pub ty: SqlType,
}

/// The columns expressions are bound against, in row order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// The columns.
    pub cols: Vec<ScopeCol>,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `+` with its result type.
    Add(SqlType),
    /// `-`.
    Sub(SqlType),
    /// `*`.
    Mul(SqlType),
    /// `/`.
    Div(SqlType),
    /// `%`.
    Mod(SqlType),
    /// `||`.
    Concat,
    /// `=`.
    Eq,
    /// `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// AND.
    And,
    /// OR.
    Or,
}

/// Built-in scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// now(), current_timestamp, transaction_timestamp().
    Now,
    /// statement_timestamp(), clock_timestamp().
    Clock,
    /// random().
    Random,
    /// md5(text).
    Md5,
    /// length(text).
    Length,
    /// lower(text).
    Lower,
    /// upper(text).
    Upper,
    /// coalesce(...).
    Coalesce,
    /// version().
    Version,
    /// current_setting(text).
    CurrentSetting,
    /// pg_wal_lsn_diff(pg_lsn, pg_lsn).
    LsnDiff,
    /// abs(x).
    Abs,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    /// count(*).
    CountStar,
    /// count(x).
    Count,
    /// sum(x).
    Sum,
    /// min(x).
    Min,
    /// max(x).
    Max,
    /// avg(x).
    Avg,
}

/// One aggregate call of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct AggSpec {
    /// The function.
    pub func: AggFn,
    /// Its argument (none for count(*)).
    pub arg: Option<Ex>,
    /// The argument's type.
    pub arg_ty: SqlType,
    /// Its result type.
    pub ty: SqlType,
}

/// A call that must run before the statement (it is async): a server function or
/// pg_sleep; its arguments may not refer to columns.
#[derive(Debug, Clone, PartialEq)]
pub enum PreCall {
    /// A server function.
    Server {
        /// Its name.
        name: String,
        /// Its arguments.
        args: Vec<Ex>,
        /// Its output columns' types (several: a record).
        types: Vec<SqlType>,
    },
    /// pg_sleep(seconds).
    Sleep(Ex),
}

/// A bound expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Ex {
    /// A constant.
    Const(Value),
    /// The row's column.
    Col(usize),
    /// A `$n` parameter (0-based).
    Param(usize),
    /// An aggregate's result (replaced by a column of the group row after binding).
    Agg(usize),
    /// A pre-call's result.
    Pre(usize),
    /// `-x`.
    Neg(Box<Ex>),
    /// `NOT x`.
    Not(Box<Ex>),
    /// A binary operator.
    Bin(Op, Box<Ex>, Box<Ex>),
    /// `x IS [NOT] NULL`.
    IsNull(Box<Ex>, bool),
    /// `x IS [NOT] TRUE/FALSE`: (x, which, negated).
    IsBool(Box<Ex>, bool, bool),
    /// `x [NOT] IN (...)`.
    In(Box<Ex>, Vec<Ex>, bool),
    /// `x [NOT] BETWEEN a AND b`.
    Between(Box<Ex>, Box<Ex>, Box<Ex>, bool),
    /// `x [NOT] LIKE p` (case-insensitive for ILIKE).
    Like(Box<Ex>, Box<Ex>, bool, bool),
    /// A cast.
    Cast(Box<Ex>, SqlType, SqlType),
    /// A built-in function.
    Func(Builtin, Vec<Ex>),
    /// CASE WHEN c THEN r ... ELSE e END.
    Case(Vec<(Ex, Ex)>, Option<Box<Ex>>),
}

/// What binding collects beyond the expression.
#[derive(Debug, Default)]
pub struct BindState {
    /// Parameter types (`None` until known).
    pub params: Vec<Option<SqlType>>,
    /// Aggregates, when the clause allows them.
    pub aggs: Vec<AggSpec>,
    /// Pre-calls.
    pub pre: Vec<PreCall>,
    /// Where each column reference was written: (scope index, position).
    pub col_pos: Vec<(usize, usize)>,
    /// The tables the statement names (held again when its plan is reused).
    pub tables: Vec<crate::engine::Oid>,
}

impl BindState {
    /// A state with the client's parameter types (0: unspecified).
    pub fn new(param_types: &[u32]) -> SqlResult<BindState> {
        let params = param_types
            .iter()
            .map(|&oid| match oid {
                0 => Ok(None),
                oid => type_of_oid(oid).map(Some),
            })
            .collect::<SqlResult<_>>()?;
        Ok(BindState { params, ..BindState::default() })
    }

    /// The final parameter types (unknown ones are text, as PostgreSQL resolves them).
    pub fn param_types(&self) -> Vec<SqlType> {
        self.params.iter().map(|p| p.unwrap_or(SqlType::Text)).collect()
    }
}

/// The type with `oid`.
///
/// # Errors
/// 42704 for a type the node does not know.
pub fn type_of_oid(oid: u32) -> SqlResult<SqlType> {
    Ok(match oid {
        16 => SqlType::Bool,
        17 => SqlType::Bytea,
        20 => SqlType::Int8,
        21 => SqlType::Int2,
        23 => SqlType::Int4,
        25 | 705 => SqlType::Text,
        700 | 701 => SqlType::Float8,
        1043 => SqlType::Varchar(None),
        1184 => SqlType::Timestamptz,
        1700 => SqlType::Numeric,
        3220 => SqlType::PgLsn,
        19 => SqlType::Other { oid: 19, typlen: 64, name: "name" },
        _ => {
            return Err(err(
                sqlstate::UNDEFINED_OBJECT,
                format!("type with OID {oid} does not exist"),
            ))
        }
    })
}

/// Where `e` starts in `sql` (1-based characters), found by walking down the leftmost
/// operands without recursion (sqlparser's `span()` recurses through whole operator
/// chains).
pub fn expr_position(sql: &str, e: &Expr) -> Option<usize> {
    let mut cur = e;
    loop {
        cur = match cur {
            Expr::BinaryOp { left, .. } => left,
            Expr::Nested(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsFalse(x)
            | Expr::IsNotFalse(x) => x,
            Expr::In { expr, .. }
            | Expr::Between { expr, .. }
            | Expr::Like { expr, .. }
            | Expr::ILike { expr, .. } => expr,
            Expr::Cast { kind: CastKind::DoubleColon, expr, .. } => expr,
            leaf => return position(sql, leaf.span()),
        };
    }
}

/// Where `e` ends (the position just after its last token), walking down the rightmost
/// operands without recursion.
fn expr_end(sql: &str, e: &Expr) -> Option<usize> {
    let mut cur = e;
    loop {
        cur = match cur {
            Expr::BinaryOp { right, .. } => right,
            leaf => {
                let end = leaf.span().end;
                return position(sql, sqlparser::tokenizer::Span::new(end, end));
            }
        };
    }
}

/// A name as PostgreSQL's scanner makes it (`scansup.c: downcase_truncate_identifier`):
/// unquoted identifiers with ASCII letters folded to lower case (in a UTF-8 database
/// nothing else is folded), then any identifier clipped to 63 bytes at a character
/// boundary (the NOTICE for that is sent when the statement is scanned, by
/// `session::truncation_notices`).
pub fn ident_name(i: &Ident) -> String {
    truncate_identifier(folded(&i.value, i.quote_style.is_some()))
}

/// An identifier's text as the scanner folds it, before truncation: quoted as written,
/// unquoted with ASCII letters in lower case.
pub fn folded(value: &str, quoted: bool) -> String {
    if quoted {
        value.to_string()
    } else {
        value.to_ascii_lowercase()
    }
}

/// The last part of an object name, folded.
pub fn object_name(n: &ObjectName) -> String {
    n.0.last().and_then(|p| p.as_ident()).map(ident_name).unwrap_or_default()
}

/// An input error of a literal: PostgreSQL points at the literal, except for length
/// checks (a separate coercion step).
pub fn literal_error(e: crate::engine::EngineError, pos: Option<usize>) -> SqlError {
    let e: SqlError = e.into();
    if e.code == "22001" {
        e
    } else {
        at(e, pos)
    }
}

/// Binds expressions of one clause.
pub struct Binder<'a> {
    /// The statement's text (for positions).
    pub sql: &'a str,
    /// The columns names refer to.
    pub scope: &'a Scope,
    /// Parameters, aggregates, pre-calls.
    pub st: &'a mut BindState,
    /// The server (for its functions).
    pub server: &'a dyn ServerContext,
    /// Where aggregates are not allowed: the clause's name (`WHERE`); `None` allows them.
    pub no_aggs: Option<&'static str>,
}

impl Binder<'_> {
    fn pos(&self, e: &Expr) -> Option<usize> {
        expr_position(self.sql, e)
    }

    /// Coerces an unknown literal or untyped parameter to `target`.
    fn resolve(
        &mut self,
        ex: &mut Ex,
        ty: &mut SqlType,
        target: SqlType,
        pos: Option<usize>,
    ) -> SqlResult<()> {
        if *ty != SqlType::Unknown || target == SqlType::Unknown {
            return Ok(());
        }
        match ex {
            Ex::Param(i) => {
                if let Some(slot) = self.st.params.get_mut(*i) {
                    *slot = Some(target);
                }
            }
            Ex::Const(v) => {
                if let Value::Text(s) = v {
                    let s = s.clone();
                    *v = parse_text(target, &s).map_err(|e| literal_error(e, pos))?;
                }
            }
            _ => {}
        }
        *ty = target;
        Ok(())
    }

    /// Binds `e`, returning it with its type.
    ///
    /// # Errors
    /// PostgreSQL's analysis errors: 42703, 42883, 42803, 22P02 in literals, 0A000.
    #[recursive::recursive]
    pub fn bind(&mut self, e: &Expr) -> SqlResult<(Ex, SqlType)> {
        match e {
            Expr::Identifier(i) => self.column(None, i, e),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, c] => self.column(Some(q), c, e),
                [_, q, c] => self.column(Some(q), c, e),
                _ => Err(at(unsupported("this column reference"), self.pos(e))),
            },
            Expr::Value(v) => self.literal(&v.value, e),
            Expr::Nested(inner) => self.bind(inner),
            Expr::UnaryOp { op, expr } => self.unary(*op, expr, e),
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right, e),
            Expr::IsNull(x) | Expr::IsNotNull(x) => {
                let (x, _) = self.bind(x)?;
                Ok((Ex::IsNull(Box::new(x), matches!(e, Expr::IsNotNull(_))), SqlType::Bool))
            }
            Expr::IsTrue(x) | Expr::IsNotTrue(x) | Expr::IsFalse(x) | Expr::IsNotFalse(x) => {
                let (mut bx, mut t) = self.bind(x)?;
                self.resolve(&mut bx, &mut t, SqlType::Bool, self.pos(x))?;
                let which = matches!(e, Expr::IsTrue(_) | Expr::IsNotTrue(_));
                let neg = matches!(e, Expr::IsNotTrue(_) | Expr::IsNotFalse(_));
                Ok((Ex::IsBool(Box::new(bx), which, neg), SqlType::Bool))
            }
            Expr::In { expr, target: InTarget::List(list), negated, .. } => {
                let (mut x, mut xt) = self.bind(expr)?;
                let mut items = Vec::new();
                let mut tys = Vec::new();
                for i in list {
                    items.push(self.bind(i)?);
                    tys.push(self.pos(i));
                }
                let target = items.iter().map(|(_, t)| *t).find(|t| *t != SqlType::Unknown);
                if let Some(t) = target {
                    self.resolve(&mut x, &mut xt, t, self.pos(expr))?;
                }
                let mut out = Vec::new();
                for ((mut ix, mut it), p) in items.into_iter().zip(tys) {
                    self.resolve(&mut ix, &mut it, xt, p)?;
                    self.check_comparable("=", xt, it, p)?;
                    out.push(ix);
                }
                Ok((Ex::In(Box::new(x), out, *negated), SqlType::Bool))
            }
            Expr::Between { expr, negated, low, high } => {
                let (mut x, mut xt) = self.bind(expr)?;
                let (mut l, mut lt) = self.bind(low)?;
                let (mut h, mut ht) = self.bind(high)?;
                let known = [xt, lt, ht].into_iter().find(|t| *t != SqlType::Unknown);
                if let Some(t) = known {
                    self.resolve(&mut x, &mut xt, t, self.pos(expr))?;
                    self.resolve(&mut l, &mut lt, t, self.pos(low))?;
                    self.resolve(&mut h, &mut ht, t, self.pos(high))?;
                }
                self.check_comparable(">=", xt, lt, self.pos(e))?;
                self.check_comparable("<=", xt, ht, self.pos(e))?;
                Ok((Ex::Between(Box::new(x), Box::new(l), Box::new(h), *negated), SqlType::Bool))
            }
            Expr::Like { negated, expr, pattern, escape_char: None, .. }
            | Expr::ILike { negated, expr, pattern, escape_char: None, .. } => {
                let (mut x, mut xt) = self.bind(expr)?;
                let (mut p, mut pt) = self.bind(pattern)?;
                self.resolve(&mut x, &mut xt, SqlType::Text, None)?;
                self.resolve(&mut p, &mut pt, SqlType::Text, None)?;
                if category(xt) != Category::String || category(pt) != Category::String {
                    return Err(at(
                        undefined_operator("~~", &xt.base_name(), Some(&pt.base_name())),
                        self.pos(e),
                    ));
                }
                let ci = matches!(e, Expr::ILike { .. });
                Ok((Ex::Like(Box::new(x), Box::new(p), *negated, ci), SqlType::Bool))
            }
            Expr::Cast { kind, expr, data_type, format: None }
                if *kind != CastKind::TryCast && *kind != CastKind::SafeCast =>
            {
                let to =
                    type_from_name(&data_type.to_string()).map_err(|er| at(er, self.pos(e)))?;
                let (mut x, mut xt) = self.bind(expr)?;
                if xt == SqlType::Unknown {
                    if let (Ex::Const(Value::Text(s)), SqlType::Varchar(n)) = (&mut x, to) {
                        *s = crate::engine::value::varchar_in(s, n, true)?;
                        return Ok((x, to));
                    }
                    let p = self.pos(expr);
                    self.resolve(&mut x, &mut xt, to, p)?;
                    return Ok((x, to));
                }
                if let Ex::Const(v) = &x {
                    let v = cast(v.clone(), xt, to, true)?;
                    return Ok((Ex::Const(v), to));
                }
                Ok((Ex::Cast(Box::new(x), xt, to), to))
            }
            Expr::TypedString(ts) => {
                let to = type_from_name(&ts.data_type.to_string())?;
                let s = ts.value.value.clone().into_string().unwrap_or_default();
                let v = parse_text(to, &s).map_err(|er| at(er.into(), self.pos(e)))?;
                Ok((Ex::Const(v), to))
            }
            Expr::Function(f) => self.function(f, e),
            Expr::Case { operand, conditions, else_result, .. } => {
                let mut arms = Vec::new();
                let mut ty = SqlType::Unknown;
                let op = match operand {
                    Some(o) => Some(self.bind(o)?),
                    None => None,
                };
                for w in conditions {
                    let (c, ct) = match &op {
                        Some((ox, ot)) => {
                            let (mut wx, mut wt) = self.bind(&w.condition)?;
                            self.resolve(&mut wx, &mut wt, *ot, None)?;
                            self.check_comparable("=", *ot, wt, self.pos(&w.condition))?;
                            (Ex::Bin(Op::Eq, Box::new(ox.clone()), Box::new(wx)), SqlType::Bool)
                        }
                        None => self.bind(&w.condition)?,
                    };
                    let _ = ct;
                    let (r, rt) = self.bind(&w.result)?;
                    if ty == SqlType::Unknown {
                        ty = rt;
                    } else if rt != SqlType::Unknown
                        && category(rt) == Category::Numeric
                        && category(ty) == Category::Numeric
                    {
                        ty = numeric_common(ty, rt);
                    }
                    arms.push((c, r));
                }
                let els = match else_result {
                    Some(x) => {
                        let (ex, et) = self.bind(x)?;
                        if ty == SqlType::Unknown {
                            ty = et;
                        }
                        Some(Box::new(ex))
                    }
                    None => None,
                };
                let ty = if ty == SqlType::Unknown { SqlType::Text } else { ty };
                Ok((Ex::Case(arms, els), ty))
            }
            _ => Err(at(unsupported(format!("expression \"{e}\"")), self.pos(e))),
        }
    }

    fn column(&mut self, qual: Option<&Ident>, name: &Ident, e: &Expr) -> SqlResult<(Ex, SqlType)> {
        let n = ident_name(name);
        let q = qual.map(ident_name);
        let mut found = None;
        for (i, c) in self.scope.cols.iter().enumerate() {
            if c.name == n && (q.is_none() || c.qual == q) {
                if found.is_some() {
                    return Err(at(
                        err("42702", format!("column reference \"{n}\" is ambiguous")),
                        self.pos(e),
                    ));
                }
                found = Some(i);
            }
        }
        match found {
            Some(i) => {
                if let Some(p) = self.pos(e) {
                    self.st.col_pos.push((i, p));
                }
                Ok((Ex::Col(i), self.scope.cols[i].ty))
            }
            None => {
                let pos = self.pos(e);
                if let Some(q) = &q {
                    if !self.scope.cols.iter().any(|c| c.qual.as_ref() == Some(q)) {
                        return Err(at(
                            err("42P01", format!("missing FROM-clause entry for table \"{q}\"")),
                            pos,
                        ));
                    }
                    return Err(at(super::error::undefined_column(&format!("{q}.{n}")), pos));
                }
                Err(at(super::error::undefined_column(&format!("\"{n}\"")), pos))
            }
        }
    }

    fn literal(&mut self, v: &AstValue, e: &Expr) -> SqlResult<(Ex, SqlType)> {
        Ok(match v {
            AstValue::Number(s, _) => number(s).map_err(|er| at(er, self.pos(e)))?,
            AstValue::SingleQuotedString(s)
            | AstValue::EscapedStringLiteral(s)
            | AstValue::DollarQuotedString(sqlparser::ast::DollarQuotedString {
                value: s, ..
            }) => (Ex::Const(Value::Text(s.clone())), SqlType::Unknown),
            AstValue::Boolean(b) => (Ex::Const(Value::Bool(*b)), SqlType::Bool),
            AstValue::Null => (Ex::Const(Value::Null), SqlType::Unknown),
            AstValue::Placeholder(p) => {
                let n: usize = p
                    .strip_prefix('$')
                    .and_then(|d| d.parse().ok())
                    .filter(|n| (1..=65535).contains(n))
                    .ok_or_else(|| {
                        at(
                            err(sqlstate::SYNTAX_ERROR, format!("syntax error at or near \"{p}\"")),
                            self.pos(e),
                        )
                    })?;
                if self.st.params.len() < n {
                    self.st.params.resize(n, None);
                }
                let t = self.st.params[n - 1].unwrap_or(SqlType::Unknown);
                (Ex::Param(n - 1), t)
            }
            _ => return Err(at(unsupported(format!("literal {v}")), self.pos(e))),
        })
    }

    fn unary(&mut self, op: UnaryOperator, x: &Expr, e: &Expr) -> SqlResult<(Ex, SqlType)> {
        match op {
            UnaryOperator::Minus => {
                if let Expr::Value(v) = x {
                    if let AstValue::Number(s, _) = &v.value {
                        return number(&format!("-{s}")).map_err(|er| at(er, self.pos(e)));
                    }
                }
                let (bx, t) = self.bind(x)?;
                if category(t) != Category::Numeric {
                    return Err(at(undefined_operator("-", &t.base_name(), None), self.pos(e)));
                }
                Ok((Ex::Neg(Box::new(bx)), t))
            }
            UnaryOperator::Plus => self.bind(x),
            UnaryOperator::Not => {
                let (mut bx, mut t) = self.bind(x)?;
                self.resolve(&mut bx, &mut t, SqlType::Bool, self.pos(x))?;
                if t != SqlType::Bool {
                    return Err(at(
                        err(
                            "42804",
                            format!(
                                "argument of NOT must be type boolean, not type {}",
                                t.base_name()
                            ),
                        ),
                        self.pos(x),
                    ));
                }
                Ok((Ex::Not(Box::new(bx)), SqlType::Bool))
            }
            _ => Err(at(unsupported(format!("operator {op}")), self.pos(e))),
        }
    }

    fn check_comparable(
        &self,
        op: &str,
        l: SqlType,
        r: SqlType,
        pos: Option<usize>,
    ) -> SqlResult<()> {
        let (cl, cr) = (category(l), category(r));
        if cl == cr || l == SqlType::Unknown || r == SqlType::Unknown {
            return Ok(());
        }
        Err(at(undefined_operator(op, &l.base_name(), Some(&r.base_name())), pos))
    }

    fn binary(
        &mut self,
        left: &Expr,
        op: &BinaryOperator,
        right: &Expr,
        e: &Expr,
    ) -> SqlResult<(Ex, SqlType)> {
        let (mut l, mut lt) = self.bind(left)?;
        let (mut r, mut rt) = self.bind(right)?;
        let (lp, rp) = (self.pos(left), self.pos(right));
        let op_pos = self.op_position(left, right);
        let sym = op.to_string();
        match op {
            BinaryOperator::And | BinaryOperator::Or => {
                self.resolve(&mut l, &mut lt, SqlType::Bool, lp)?;
                self.resolve(&mut r, &mut rt, SqlType::Bool, rp)?;
                for (t, p) in [(lt, lp), (rt, rp)] {
                    if t != SqlType::Bool {
                        return Err(at(
                            err(
                                "42804",
                                format!(
                                    "argument of {sym} must be type boolean, not type {}",
                                    t.base_name()
                                ),
                            ),
                            p,
                        ));
                    }
                }
                let o = if matches!(op, BinaryOperator::And) { Op::And } else { Op::Or };
                Ok((Ex::Bin(o, Box::new(l), Box::new(r)), SqlType::Bool))
            }
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq => {
                if lt == SqlType::Unknown && rt == SqlType::Unknown {
                    self.resolve(&mut l, &mut lt, SqlType::Text, lp)?;
                    self.resolve(&mut r, &mut rt, SqlType::Text, rp)?;
                }
                self.resolve(&mut l, &mut lt, rt, lp)?;
                self.resolve(&mut r, &mut rt, lt, rp)?;
                self.check_comparable(&sym, lt, rt, op_pos)?;
                let o = match op {
                    BinaryOperator::Eq => Op::Eq,
                    BinaryOperator::NotEq => Op::Ne,
                    BinaryOperator::Lt => Op::Lt,
                    BinaryOperator::LtEq => Op::Le,
                    BinaryOperator::Gt => Op::Gt,
                    _ => Op::Ge,
                };
                Ok((Ex::Bin(o, Box::new(l), Box::new(r)), SqlType::Bool))
            }
            BinaryOperator::StringConcat => {
                if lt == SqlType::Unknown {
                    self.resolve(&mut l, &mut lt, SqlType::Text, lp)?;
                }
                if rt == SqlType::Unknown {
                    self.resolve(&mut r, &mut rt, SqlType::Text, rp)?;
                }
                if category(lt) != Category::String && category(rt) != Category::String {
                    return Err(at(
                        undefined_operator("||", &lt.base_name(), Some(&rt.base_name())),
                        op_pos,
                    ));
                }
                Ok((Ex::Bin(Op::Concat, Box::new(l), Box::new(r)), SqlType::Text))
            }
            BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::Modulo => {
                if lt == SqlType::Unknown && rt == SqlType::Unknown {
                    return Err(at(
                        err("42725", format!("operator is not unique: unknown {sym} unknown")),
                        op_pos,
                    )
                    .with_hint("Could not choose a best candidate operator. You might need to add explicit type casts."));
                }
                self.resolve(&mut l, &mut lt, rt, lp)?;
                self.resolve(&mut r, &mut rt, lt, rp)?;
                if matches!(op, BinaryOperator::Minus)
                    && lt == SqlType::PgLsn
                    && rt == SqlType::PgLsn
                {
                    // pg_lsn.c: pg_lsn_mi
                    return Ok((Ex::Func(Builtin::LsnDiff, vec![l, r]), SqlType::Numeric));
                }
                let ok = category(lt) == Category::Numeric && category(rt) == Category::Numeric;
                let ts = lt == SqlType::Timestamptz || rt == SqlType::Timestamptz;
                if !ok || ts {
                    return Err(at(
                        undefined_operator(&sym, &lt.base_name(), Some(&rt.base_name())),
                        op_pos,
                    ));
                }
                let ty = numeric_common(lt, rt);
                let o = match op {
                    BinaryOperator::Plus => Op::Add(ty),
                    BinaryOperator::Minus => Op::Sub(ty),
                    BinaryOperator::Multiply => Op::Mul(ty),
                    BinaryOperator::Divide => Op::Div(ty),
                    _ => Op::Mod(ty),
                };
                Ok((Ex::Bin(o, Box::new(l), Box::new(r)), ty))
            }
            _ => Err(at(unsupported(format!("operator {op}")), self.pos(e))),
        }
    }

    /// The position of a binary operator: the first non-blank after the left operand.
    fn op_position(&self, left: &Expr, _right: &Expr) -> Option<usize> {
        let start = expr_end(self.sql, left)?;
        // `start` is the 1-based position just after the left operand
        let rest: Vec<char> = self.sql.chars().skip(start - 1).collect();
        let mut p = start;
        for c in rest {
            if c == ')' || c.is_whitespace() {
                p += 1;
            } else {
                break;
            }
        }
        Some(p)
    }

    fn function(&mut self, f: &Function, e: &Expr) -> SqlResult<(Ex, SqlType)> {
        let name = object_name(&f.name);
        let pos = self.pos(e);
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(at(unsupported("window functions and aggregate FILTER"), pos));
        }
        let (args, star, distinct) = match &f.args {
            FunctionArguments::None => (Vec::new(), false, false),
            FunctionArguments::Subquery(_) => return Err(at(unsupported("subqueries"), pos)),
            FunctionArguments::List(l) => {
                if !l.clauses.is_empty() {
                    return Err(at(unsupported("function argument clauses"), pos));
                }
                let mut args = Vec::new();
                let mut star = false;
                for a in &l.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(x),
                        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                        _ => return Err(at(unsupported("named function arguments"), pos)),
                    }
                }
                (args, star, matches!(l.duplicate_treatment, Some(DuplicateTreatment::Distinct)))
            }
        };
        let agg = match name.as_str() {
            "count" if star => Some(AggFn::CountStar),
            "count" => Some(AggFn::Count),
            "sum" => Some(AggFn::Sum),
            "min" => Some(AggFn::Min),
            "max" => Some(AggFn::Max),
            "avg" => Some(AggFn::Avg),
            _ => None,
        };
        if let Some(func) = agg {
            if args.len() != usize::from(func != AggFn::CountStar) {
                return Err(at(undefined_function(&name, &[]), pos));
            }
            if let Some(clause) = self.no_aggs {
                return Err(at(
                    err("42803", format!("aggregate functions are not allowed in {clause}")),
                    pos,
                ));
            }
            if distinct {
                return Err(at(unsupported("DISTINCT in aggregates"), pos));
            }
            // arguments of an aggregate may not contain aggregates
            let saved = self.no_aggs.replace("aggregate function calls");
            let bound = args.first().map(|a| self.bind(a)).transpose();
            self.no_aggs = saved;
            let bound = bound.map_err(|mut er| {
                if er.message == "aggregate functions are not allowed in aggregate function calls" {
                    er.message = "aggregate function calls cannot be nested".into();
                }
                er
            })?;
            let (arg, mut arg_ty) = match bound {
                Some((x, t)) => (Some(x), t),
                None => (None, SqlType::Int8),
            };
            let mut arg = arg;
            if arg_ty == SqlType::Unknown {
                if let Some(a) = arg.as_mut() {
                    self.resolve(a, &mut arg_ty, SqlType::Text, None)?;
                }
            }
            let ty = match func {
                AggFn::CountStar | AggFn::Count => SqlType::Int8,
                AggFn::Sum => match arg_ty {
                    SqlType::Int2 | SqlType::Int4 => SqlType::Int8,
                    SqlType::Int8 | SqlType::Numeric => SqlType::Numeric,
                    SqlType::Float8 => SqlType::Float8,
                    t => return Err(at(undefined_function("sum", &[t.base_name()]), pos)),
                },
                AggFn::Avg => match arg_ty {
                    SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Numeric => {
                        SqlType::Numeric
                    }
                    SqlType::Float8 => SqlType::Float8,
                    t => return Err(at(undefined_function("avg", &[t.base_name()]), pos)),
                },
                AggFn::Min | AggFn::Max => match arg_ty {
                    SqlType::Varchar(_) => SqlType::Text,
                    t => t,
                },
            };
            self.st.aggs.push(AggSpec { func, arg, arg_ty, ty });
            return Ok((Ex::Agg(self.st.aggs.len() - 1), ty));
        }
        if star || distinct {
            return Err(at(undefined_function(&name, &[]), pos));
        }
        let mut bound = Vec::new();
        for a in &args {
            bound.push((self.bind(a)?, self.pos(a)));
        }
        let names = |b: &[((Ex, SqlType), Option<usize>)]| -> Vec<String> {
            b.iter().map(|((_, t), _)| t.base_name()).collect()
        };
        let nargs = bound.len();
        let text_arg =
            |me: &mut Self, b: &mut Vec<((Ex, SqlType), Option<usize>)>| -> SqlResult<bool> {
                let Some(((x, t), p)) = b.first_mut() else { return Ok(false) };
                me.resolve(x, t, SqlType::Text, *p)?;
                Ok(category(*t) == Category::String)
            };
        let (builtin, ty) = match (name.as_str(), nargs) {
            ("now" | "current_timestamp" | "transaction_timestamp", 0) => {
                (Builtin::Now, SqlType::Timestamptz)
            }
            ("statement_timestamp" | "clock_timestamp", 0) => {
                (Builtin::Clock, SqlType::Timestamptz)
            }
            ("random", 0) => (Builtin::Random, SqlType::Float8),
            ("version", 0) => (Builtin::Version, SqlType::Text),
            ("md5", 1) if text_arg(self, &mut bound)? => (Builtin::Md5, SqlType::Text),
            ("length" | "octet_length", 1) if bound[0].0 .1 == SqlType::Bytea => {
                (Builtin::Length, SqlType::Int4)
            }
            ("length" | "char_length" | "character_length", 1) if text_arg(self, &mut bound)? => {
                (Builtin::Length, SqlType::Int4)
            }
            ("lower", 1) if text_arg(self, &mut bound)? => (Builtin::Lower, SqlType::Text),
            ("upper", 1) if text_arg(self, &mut bound)? => (Builtin::Upper, SqlType::Text),
            ("current_setting", 1) if text_arg(self, &mut bound)? => {
                (Builtin::CurrentSetting, SqlType::Text)
            }
            ("abs", 1) if category(bound[0].0 .1) == Category::Numeric => {
                (Builtin::Abs, bound[0].0 .1)
            }
            ("coalesce", n) if n > 0 => {
                let mut ty = bound
                    .iter()
                    .map(|((_, t), _)| *t)
                    .find(|t| *t != SqlType::Unknown)
                    .unwrap_or(SqlType::Text);
                for ((_, t), _) in &bound {
                    if *t != SqlType::Unknown
                        && category(*t) == Category::Numeric
                        && category(ty) == Category::Numeric
                    {
                        ty = numeric_common(ty, *t);
                    } else if *t != SqlType::Unknown && category(*t) != category(ty) {
                        return Err(at(
                            err(
                                "42804",
                                format!(
                                    "COALESCE types {} and {} cannot be matched",
                                    ty.base_name(),
                                    t.base_name()
                                ),
                            ),
                            pos,
                        ));
                    }
                }
                for ((x, t), p) in bound.iter_mut() {
                    self.resolve(x, t, ty, *p)?;
                }
                let xs = bound
                    .into_iter()
                    .map(|((x, t), _)| if t != ty { Ex::Cast(Box::new(x), t, ty) } else { x })
                    .collect();
                return Ok((Ex::Func(Builtin::Coalesce, xs), ty));
            }
            ("pg_wal_lsn_diff", 2) => {
                for ((x, t), p) in bound.iter_mut() {
                    self.resolve(x, t, SqlType::PgLsn, *p)?;
                }
                if bound.iter().any(|((_, t), _)| *t != SqlType::PgLsn) {
                    return Err(at(undefined_function(&name, &names(&bound)), pos));
                }
                (Builtin::LsnDiff, SqlType::Numeric)
            }
            ("pg_sleep", 1) => {
                let ((mut x, mut t), p) =
                    bound.pop().unwrap_or(((Ex::Const(Value::Null), SqlType::Unknown), None));
                self.resolve(&mut x, &mut t, SqlType::Float8, p)?;
                if category(t) != Category::Numeric {
                    return Err(at(undefined_function(&name, &[t.base_name()]), pos));
                }
                self.st.pre.push(PreCall::Sleep(Ex::Cast(Box::new(x), t, SqlType::Float8)));
                return Ok((Ex::Pre(self.st.pre.len() - 1), SqlType::Void));
            }
            _ => {
                if let Some(sf) = self.server.function(&name) {
                    if nargs <= sf.args.len() && nargs + sf.defaults >= sf.args.len() {
                        let mut xs = Vec::new();
                        let mut ok = true;
                        for (((mut x, mut t), p), want) in
                            bound.iter().cloned().zip(sf.args.iter().copied())
                        {
                            self.resolve(&mut x, &mut t, want, p)?;
                            if t != want && category(t) != category(want) {
                                ok = false;
                            }
                            xs.push(if t != want { Ex::Cast(Box::new(x), t, want) } else { x });
                        }
                        if ok {
                            let types = sf.returns.iter().map(|c| c.ty).collect();
                            self.st.pre.push(PreCall::Server {
                                name: name.clone(),
                                args: xs,
                                types,
                            });
                            return Ok((Ex::Pre(self.st.pre.len() - 1), sf.result_type()));
                        }
                    }
                }
                let shown: Vec<String> = bound
                    .iter()
                    .map(
                        |((_, t), _)| {
                            if *t == SqlType::Unknown {
                                "unknown".into()
                            } else {
                                t.base_name()
                            }
                        },
                    )
                    .collect();
                return Err(at(undefined_function(&name, &shown), pos));
            }
        };
        Ok((Ex::Func(builtin, bound.into_iter().map(|((x, _), _)| x).collect()), ty))
    }
}

/// A numeric literal as PostgreSQL types it: int4, int8, else numeric.
fn number(s: &str) -> SqlResult<(Ex, SqlType)> {
    if let Ok(v) = s.parse::<i32>() {
        return Ok((Ex::Const(Value::Int4(v)), SqlType::Int4));
    }
    if let Ok(v) = s.parse::<i64>() {
        return Ok((Ex::Const(Value::Int8(v)), SqlType::Int8));
    }
    if let Some(d) = Dec::parse(s) {
        return Ok((Ex::Const(Value::Numeric(d.to_text())), SqlType::Numeric));
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok((Ex::Const(Value::Numeric(float8_out(f))), SqlType::Numeric)),
        _ => Err(err(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format")),
    }
}

/// What evaluation reads besides the row.
pub struct EvalCtx<'a> {
    /// Parameter values.
    pub params: &'a [Value],
    /// Pre-call results.
    pub pre: &'a [Value],
    /// The transaction's start (now()).
    pub txn_start: i64,
    /// The statement's start.
    pub stmt_start: i64,
    /// Settings, for current_setting().
    pub settings: &'a SessionSettings,
    /// The backend's pid, for server functions.
    pub pid: i32,
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn int_arith(op: Op, a: i64, b: i64, ty: SqlType) -> SqlResult<Value> {
    let (a, b) = (i128::from(a), i128::from(b));
    let r = match op {
        Op::Add(_) => a + b,
        Op::Sub(_) => a - b,
        Op::Mul(_) => a * b,
        Op::Div(_) | Op::Mod(_) if b == 0 => return Err(err("22012", "division by zero")),
        Op::Div(_) => a / b,
        _ => a % b,
    };
    int_in_range(r, ty)
}

fn arith(op: Op, ty: SqlType, l: Value, r: Value) -> SqlResult<Value> {
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    match ty {
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => {
            int_arith(op, l.as_i64().unwrap_or(0), r.as_i64().unwrap_or(0), ty)
        }
        SqlType::Numeric => {
            let (a, b) = match (dec_of(&l), dec_of(&r)) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    return Err(err(
                        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
                        "value overflows numeric format",
                    ))
                }
            };
            let d = match op {
                Op::Add(_) => a.checked_add(b)?,
                Op::Sub(_) => a.checked_sub(b)?,
                Op::Mul(_) => a.checked_mul(b)?,
                Op::Div(_) => a.checked_div(b)?,
                _ => a.checked_rem(b)?,
            };
            Ok(Value::Numeric(d.to_text()))
        }
        _ => {
            let (a, b) = (l.as_f64().unwrap_or(0.0), r.as_f64().unwrap_or(0.0));
            let v = match op {
                Op::Add(_) => a + b,
                Op::Sub(_) => a - b,
                Op::Mul(_) => a * b,
                Op::Div(_) | Op::Mod(_) if b == 0.0 => {
                    return Err(err("22012", "division by zero"))
                }
                Op::Div(_) => a / b,
                _ => a % b,
            };
            if v.is_infinite() && a.is_finite() && b.is_finite() {
                return Err(err(
                    sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
                    "value out of range: overflow",
                ));
            }
            Ok(Value::Float8(v))
        }
    }
}

/// A total order of values as PostgreSQL's comparison operators (numeric by value, NULL
/// last).
pub fn value_cmp(l: &Value, r: &Value) -> std::cmp::Ordering {
    match (l, r) {
        (Value::Null, _) | (_, Value::Null) => l.cmp(r),
        (Value::Numeric(_), _) | (_, Value::Numeric(_)) => match (dec_of(l), dec_of(r)) {
            (Some(a), Some(b)) => {
                let s = a.scale.max(b.scale);
                let p = |d: Dec| d.m.checked_mul(10i128.pow((s - d.scale).min(30)));
                match (p(a), p(b)) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    _ => l.cmp(r),
                }
            }
            _ => l.cmp(r),
        },
        _ => l.cmp(r),
    }
}

fn compare(op: Op, l: &Value, r: &Value) -> Value {
    if l.is_null() || r.is_null() {
        return Value::Null;
    }
    let ord = value_cmp(l, r);
    use std::cmp::Ordering::*;
    Value::Bool(match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        _ => ord != Less,
    })
}

/// One element of a LIKE pattern.
#[derive(Clone, Copy, PartialEq)]
enum Pat {
    Any,
    One,
    Lit(char),
}

/// SQL LIKE with `%`, `_` and `\` escapes, in O(len(s) × len(p)) at worst (the classic
/// backtrack-to-the-last-`%` matcher).
fn like(s: &[char], p: &[char]) -> bool {
    let mut pat = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '%' => pat.push(Pat::Any),
            '_' => pat.push(Pat::One),
            '\\' if i + 1 < p.len() => {
                i += 1;
                pat.push(Pat::Lit(p[i]));
            }
            c => pat.push(Pat::Lit(c)),
        }
        i += 1;
    }
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match pat.get(pi) {
            Some(Pat::Any) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(Pat::One) => {
                si += 1;
                pi += 1;
            }
            Some(Pat::Lit(c)) if *c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    pat[pi.min(pat.len())..].iter().all(|x| *x == Pat::Any)
}

/// The text of a value as a cast to text writes it (booleans as `true`/`false`).
fn text_of(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        v => v.to_text().unwrap_or_default(),
    }
}

/// The version() string.
pub const VERSION: &str = "PostgreSQL 15.0 (walstream node) on x86_64-pc-linux-gnu, 64-bit";

impl Ex {
    /// Evaluates the expression over `row`.
    ///
    /// # Errors
    /// Runtime errors: 22012, 22003, casts' input errors.
    #[recursive::recursive]
    pub fn eval(&self, row: &[Value], cx: &EvalCtx<'_>) -> SqlResult<Value> {
        Ok(match self {
            Ex::Const(v) => v.clone(),
            Ex::Col(i) | Ex::Agg(i) => row.get(*i).cloned().unwrap_or(Value::Null),
            Ex::Param(i) => cx.params.get(*i).cloned().unwrap_or(Value::Null),
            Ex::Pre(i) => cx.pre.get(*i).cloned().unwrap_or(Value::Null),
            Ex::Neg(x) => match x.eval(row, cx)? {
                Value::Null => Value::Null,
                Value::Int2(v) => Value::Int2(
                    v.checked_neg().ok_or_else(|| err("22003", "smallint out of range"))?,
                ),
                Value::Int4(v) => Value::Int4(
                    v.checked_neg().ok_or_else(|| err("22003", "integer out of range"))?,
                ),
                Value::Int8(v) => {
                    Value::Int8(v.checked_neg().ok_or_else(|| err("22003", "bigint out of range"))?)
                }
                Value::Float8(v) => Value::Float8(-v),
                v => match dec_of(&v) {
                    Some(d) => Value::Numeric(Dec { m: -d.m, scale: d.scale }.to_text()),
                    None => Value::Null,
                },
            },
            Ex::Not(x) => match truth(&x.eval(row, cx)?) {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            },
            Ex::Bin(Op::And, l, r) => {
                let a = truth(&l.eval(row, cx)?);
                if a == Some(false) {
                    return Ok(Value::Bool(false));
                }
                match (a, truth(&r.eval(row, cx)?)) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Ex::Bin(Op::Or, l, r) => {
                let a = truth(&l.eval(row, cx)?);
                if a == Some(true) {
                    return Ok(Value::Bool(true));
                }
                match (a, truth(&r.eval(row, cx)?)) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Ex::Bin(Op::Concat, l, r) => {
                let (a, b) = (l.eval(row, cx)?, r.eval(row, cx)?);
                if a.is_null() || b.is_null() {
                    Value::Null
                } else {
                    Value::Text(format!("{}{}", text_of(&a), text_of(&b)))
                }
            }
            Ex::Bin(
                op @ (Op::Add(t) | Op::Sub(t) | Op::Mul(t) | Op::Div(t) | Op::Mod(t)),
                l,
                r,
            ) => arith(*op, *t, l.eval(row, cx)?, r.eval(row, cx)?)?,
            Ex::Bin(op, l, r) => compare(*op, &l.eval(row, cx)?, &r.eval(row, cx)?),
            Ex::IsNull(x, neg) => Value::Bool(x.eval(row, cx)?.is_null() != *neg),
            Ex::IsBool(x, which, neg) => {
                let is = truth(&x.eval(row, cx)?) == Some(*which);
                Value::Bool(is != *neg)
            }
            Ex::In(x, list, neg) => {
                let v = x.eval(row, cx)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for i in list {
                    match compare(Op::Eq, &v, &i.eval(row, cx)?) {
                        Value::Bool(true) => return Ok(Value::Bool(!neg)),
                        Value::Null => saw_null = true,
                        _ => {}
                    }
                }
                if saw_null {
                    Value::Null
                } else {
                    Value::Bool(*neg)
                }
            }
            Ex::Between(x, lo, hi, neg) => {
                let v = x.eval(row, cx)?;
                let a = compare(Op::Ge, &v, &lo.eval(row, cx)?);
                let b = compare(Op::Le, &v, &hi.eval(row, cx)?);
                let r = match (truth(&a), truth(&b)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                match r {
                    Some(b) => Value::Bool(b != *neg),
                    None => Value::Null,
                }
            }
            Ex::Like(x, p, neg, ci) => {
                let (v, pat) = (x.eval(row, cx)?, p.eval(row, cx)?);
                if v.is_null() || pat.is_null() {
                    return Ok(Value::Null);
                }
                let (mut s, mut pt) = (text_of(&v), text_of(&pat));
                if *ci {
                    s = s.to_lowercase();
                    pt = pt.to_lowercase();
                }
                let (s, pt): (Vec<char>, Vec<char>) = (s.chars().collect(), pt.chars().collect());
                Value::Bool(like(&s, &pt) != *neg)
            }
            Ex::Cast(x, from, to) => cast(x.eval(row, cx)?, *from, *to, true)?,
            Ex::Case(arms, els) => {
                for (c, r) in arms {
                    if truth(&c.eval(row, cx)?) == Some(true) {
                        return r.eval(row, cx);
                    }
                }
                match els {
                    Some(e) => e.eval(row, cx)?,
                    None => Value::Null,
                }
            }
            Ex::Func(f, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(a.eval(row, cx)?);
                }
                builtin(*f, vals, cx)?
            }
        })
    }

    /// Whether the expression refers to no column (it can be computed before a scan).
    pub fn is_row_free(&self) -> bool {
        let mut free = true;
        self.walk(&mut |e| {
            if matches!(e, Ex::Col(_) | Ex::Agg(_)) {
                free = false;
            }
        });
        free
    }

    /// Calls `f` on every node.
    #[recursive::recursive]
    pub fn walk(&self, f: &mut dyn FnMut(&Ex)) {
        f(self);
        match self {
            Ex::Neg(x)
            | Ex::Not(x)
            | Ex::IsNull(x, _)
            | Ex::IsBool(x, _, _)
            | Ex::Cast(x, _, _) => x.walk(f),
            Ex::Bin(_, l, r) | Ex::Like(l, r, _, _) => {
                l.walk(f);
                r.walk(f);
            }
            Ex::In(x, l, _) => {
                x.walk(f);
                l.iter().for_each(|i| i.walk(f));
            }
            Ex::Between(a, b, c, _) => {
                a.walk(f);
                b.walk(f);
                c.walk(f);
            }
            Ex::Func(_, a) => a.iter().for_each(|i| i.walk(f)),
            Ex::Case(arms, els) => {
                for (c, r) in arms {
                    c.walk(f);
                    r.walk(f);
                }
                if let Some(e) = els {
                    e.walk(f);
                }
            }
            Ex::Const(_) | Ex::Col(_) | Ex::Param(_) | Ex::Agg(_) | Ex::Pre(_) => {}
        }
    }

    /// Rewrites the tree bottom-up-first: `f` may replace a node (returning `Some`).
    #[recursive::recursive]
    pub fn rewrite(self, f: &mut dyn FnMut(&Ex) -> SqlResult<Option<Ex>>) -> SqlResult<Ex> {
        if let Some(r) = f(&self)? {
            return Ok(r);
        }
        let b = |x: Box<Ex>,
                 f: &mut dyn FnMut(&Ex) -> SqlResult<Option<Ex>>|
         -> SqlResult<Box<Ex>> { Ok(Box::new(x.rewrite(f)?)) };
        Ok(match self {
            Ex::Neg(x) => Ex::Neg(b(x, f)?),
            Ex::Not(x) => Ex::Not(b(x, f)?),
            Ex::IsNull(x, n) => Ex::IsNull(b(x, f)?, n),
            Ex::IsBool(x, w, n) => Ex::IsBool(b(x, f)?, w, n),
            Ex::Cast(x, a, c) => Ex::Cast(b(x, f)?, a, c),
            Ex::Bin(o, l, r) => Ex::Bin(o, b(l, f)?, b(r, f)?),
            Ex::Like(l, r, n, c) => Ex::Like(b(l, f)?, b(r, f)?, n, c),
            Ex::In(x, l, n) => {
                let x = b(x, f)?;
                let l = l.into_iter().map(|i| i.rewrite(f)).collect::<SqlResult<_>>()?;
                Ex::In(x, l, n)
            }
            Ex::Between(x, lo, hi, n) => Ex::Between(b(x, f)?, b(lo, f)?, b(hi, f)?, n),
            Ex::Func(bf, a) => {
                Ex::Func(bf, a.into_iter().map(|i| i.rewrite(f)).collect::<SqlResult<_>>()?)
            }
            Ex::Case(arms, els) => {
                let arms = arms
                    .into_iter()
                    .map(|(c, r)| Ok((c.rewrite(f)?, r.rewrite(f)?)))
                    .collect::<SqlResult<_>>()?;
                let els = match els {
                    Some(e) => Some(b(e, f)?),
                    None => None,
                };
                Ex::Case(arms, els)
            }
            other => other,
        })
    }
}

fn builtin(f: Builtin, vals: Vec<Value>, cx: &EvalCtx<'_>) -> SqlResult<Value> {
    let first = vals.first().cloned().unwrap_or(Value::Null);
    Ok(match f {
        Builtin::Now => Value::Timestamptz(cx.txn_start),
        Builtin::Clock => Value::Timestamptz(cx.stmt_start),
        Builtin::Random => Value::Float8(rand::random::<f64>()),
        Builtin::Version => Value::Text(VERSION.into()),
        Builtin::Coalesce => vals.into_iter().find(|v| !v.is_null()).unwrap_or(Value::Null),
        _ if first.is_null() => Value::Null,
        Builtin::Md5 => {
            use md5::Digest;
            let d = md5::Md5::digest(text_of(&first).as_bytes());
            Value::Text(d.iter().map(|b| format!("{b:02x}")).collect())
        }
        Builtin::Length => match &first {
            Value::Bytea(b) => Value::Int4(b.len() as i32),
            v => Value::Int4(text_of(v).chars().count() as i32),
        },
        Builtin::Lower => Value::Text(text_of(&first).to_lowercase()),
        Builtin::Upper => Value::Text(text_of(&first).to_uppercase()),
        Builtin::CurrentSetting => Value::Text(cx.settings.show(&text_of(&first))?),
        Builtin::Abs => match first {
            Value::Int2(v) => {
                Value::Int2(v.checked_abs().ok_or_else(|| err("22003", "smallint out of range"))?)
            }
            Value::Int4(v) => {
                Value::Int4(v.checked_abs().ok_or_else(|| err("22003", "integer out of range"))?)
            }
            Value::Int8(v) => {
                Value::Int8(v.checked_abs().ok_or_else(|| err("22003", "bigint out of range"))?)
            }
            Value::Float8(v) => Value::Float8(v.abs()),
            v => match dec_of(&v) {
                Some(d) => Value::Numeric(Dec { m: d.m.abs(), scale: d.scale }.to_text()),
                None => Value::Null,
            },
        },
        Builtin::LsnDiff => {
            let b = vals.get(1).cloned().unwrap_or(Value::Null);
            match (first.as_i64(), b.as_i64()) {
                (Some(a), Some(b)) => {
                    Value::Numeric((i128::from(a as u64) - i128::from(b as u64)).to_string())
                }
                _ => Value::Null,
            }
        }
    })
}

/// The text of `v` of type `ty` (NULL as None), for `||` and text casts.
pub fn value_text(ty: SqlType, v: &Value) -> Option<String> {
    text_out(ty, v)
}

/// A 42804 error for assigning `from` to column `col` of type `to`.
pub fn assignment_error(col: &str, to: SqlType, from: SqlType) -> SqlError {
    err(
        "42804",
        format!(
            "column \"{col}\" is of type {} but expression is of type {}",
            to.base_name(),
            from.base_name()
        ),
    )
    .with_hint("You will need to rewrite or cast the expression.")
}
