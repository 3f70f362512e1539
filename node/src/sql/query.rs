//! SELECT: bound into a [`SelectPlan`] (source, filter, key range for index scans,
//! grouping and aggregates, projection, ORDER BY, LIMIT/OFFSET) and run.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, LimitClause, OrderByKind, Query, Select, SelectItem, SetExpr,
    Spanned, TableFactor, Value as AstValue,
};
use walstream_protocol::wire::sqlstate;

use super::error::{at, err, position, unsupported, SqlResult};
use super::expr::{
    ident_name, object_name, value_cmp, AggFn, AggSpec, BindState, Binder, EvalCtx, Ex, Op, Scope,
    ScopeCol,
};
use super::numeric::Dec;
use super::server::ServerContext;
use super::types::{cast, dec_of, int_in_range};
use crate::engine::{Key, SqlType, TableDef, Txn, Value};

/// Where a SELECT's rows come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// No FROM: one empty row.
    None,
    /// A table.
    Table(Arc<TableDef>),
    /// A server relation.
    Relation(String),
    /// generate_series(start, stop[, step]).
    Series(Ex, Ex, Option<Ex>),
    /// A server function in FROM: its name and arguments.
    ServerFn(String, Vec<Ex>),
}

/// generate_series(start, stop[, step]) over integers, as a source of one column.
fn series_source(
    args: &[sqlparser::ast::FunctionArg],
    qual: String,
    col: String,
    sql: &str,
    server: &dyn ServerContext,
    st: &mut BindState,
) -> SqlResult<(Source, Scope)> {
    let mut exprs = Vec::new();
    for a in args {
        match a {
            sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(e)) => {
                exprs.push(e)
            }
            _ => return Err(unsupported("this generate_series argument")),
        }
    }
    let empty = Scope::default();
    let mut b = Binder { sql, scope: &empty, st, server, no_aggs: Some("functions in FROM") };
    let mut bound = Vec::new();
    let mut ty = SqlType::Int4;
    for e in &exprs {
        let (mut x, mut t) = b.bind(e)?;
        if t == SqlType::Unknown {
            // generate_series(unknown, unknown) resolves to integer in practice
            if let Ex::Param(i) = x {
                if let Some(p) = b.st.params.get_mut(i) {
                    *p = Some(SqlType::Int4);
                }
                t = SqlType::Int4;
            } else if let Ex::Const(Value::Text(s)) = &x {
                x = Ex::Const(crate::engine::value::parse_text(SqlType::Int4, s)?);
                t = SqlType::Int4;
            }
        }
        if !t.is_integer() {
            return Err(unsupported(format!("generate_series over {}", t.base_name())));
        }
        if t == SqlType::Int8 {
            ty = SqlType::Int8;
        }
        bound.push(x);
    }
    if !(2..=3).contains(&bound.len()) {
        return Err(super::error::undefined_function("generate_series", &[]));
    }
    let step = if bound.len() == 3 { bound.pop() } else { None };
    let stop = bound.pop().unwrap_or(Ex::Const(Value::Null));
    let start = bound.pop().unwrap_or(Ex::Const(Value::Null));
    let scope = Scope { cols: vec![ScopeCol { qual: Some(qual), name: col, ty }] };
    Ok((Source::Series(start, stop, step), scope))
}

/// The select-list item that is a bare `generate_series(...)` call (a set-returning
/// function in the select list of a query without FROM), with its output name.
fn select_list_series(s: &Select) -> Option<(usize, &[sqlparser::ast::FunctionArg], String)> {
    if !s.from.is_empty() {
        return None;
    }
    let mut found = None;
    for (i, item) in s.projection.iter().enumerate() {
        let (e, name) = match item {
            SelectItem::UnnamedExpr(e) => (e, "generate_series".to_string()),
            SelectItem::ExprWithAlias { expr, alias } => (expr, ident_name(alias)),
            _ => continue,
        };
        if let Expr::Function(f) = e {
            if object_name(&f.name) == "generate_series" {
                if let sqlparser::ast::FunctionArguments::List(l) = &f.args {
                    if found.is_some() {
                        return None;
                    }
                    found = Some((i, l.args.as_slice(), name));
                }
            }
        }
    }
    found
}

/// `FROM f(args)` for a server function: one row of its output columns.
fn server_function_source(
    n: &str,
    name: &sqlparser::ast::ObjectName,
    alias: &Option<sqlparser::ast::TableAlias>,
    args: &[sqlparser::ast::FunctionArg],
    sql: &str,
    server: &dyn ServerContext,
    st: &mut BindState,
) -> SqlResult<(Source, Scope)> {
    let pos = position(sql, name.span());
    let Some(sf) = server.function(n) else {
        return Err(at(unsupported(format!("table function {n}")), pos));
    };
    let mut xs = Vec::new();
    let empty = Scope::default();
    for a in args {
        let sqlparser::ast::FunctionArg::Unnamed(sqlparser::ast::FunctionArgExpr::Expr(e)) = a
        else {
            return Err(at(unsupported("named function arguments"), pos));
        };
        let mut b = Binder { sql, scope: &empty, st, server, no_aggs: Some("functions in FROM") };
        xs.push((b.bind(e)?, super::expr::expr_position(sql, e)));
    }
    if xs.len() != sf.args.len() {
        let shown: Vec<String> = xs.iter().map(|((_, t), _)| t.base_name()).collect();
        return Err(at(super::error::undefined_function(n, &shown), pos));
    }
    let mut bound = Vec::new();
    for (((x, t), p), want) in xs.into_iter().zip(sf.args.iter().copied()) {
        let x = match (x, t) {
            (Ex::Param(i), SqlType::Unknown) => {
                if let Some(slot) = st.params.get_mut(i) {
                    *slot = Some(want);
                }
                Ex::Param(i)
            }
            (Ex::Const(Value::Text(s)), SqlType::Unknown) => {
                Ex::Const(crate::engine::value::parse_text(want, &s).map_err(|e| at(e.into(), p))?)
            }
            (x, t) if t == want => x,
            (x, t) => Ex::Cast(Box::new(x), t, want),
        };
        bound.push(x);
    }
    let qual = alias.as_ref().map_or(n.to_string(), |a| ident_name(&a.name));
    let mut cols: Vec<ScopeCol> = sf
        .returns
        .iter()
        .map(|c| ScopeCol { qual: Some(qual.clone()), name: c.name.clone(), ty: c.ty })
        .collect();
    if let Some(a) = alias {
        for (c, ac) in cols.iter_mut().zip(&a.columns) {
            c.name = ident_name(&ac.name);
        }
        if a.columns.is_empty() && cols.len() == 1 {
            cols[0].name = qual.clone();
        }
    }
    Ok((Source::ServerFn(n.to_string(), bound), Scope { cols }))
}

/// The most rows generate_series makes (the node holds results in memory).
const MAX_SERIES: u128 = 2_000_000;

/// One end of a key range: the bound's expression and whether it is inclusive.
pub type KeyBound = (Ex, bool);

/// A sort key.
#[derive(Debug, Clone)]
enum SortKey {
    /// An output column.
    Out(usize),
    /// An expression over the source row (or the group row).
    Expr(Ex),
}

/// A bound SELECT.
#[derive(Debug, Clone)]
pub struct SelectPlan {
    source: Source,
    filter: Option<Ex>,
    lower: Option<(Ex, bool)>,
    upper: Option<(Ex, bool)>,
    grouped: Option<(Vec<Ex>, Vec<AggSpec>)>,
    having: Option<Ex>,
    proj: Vec<Ex>,
    /// The result columns.
    pub columns: Vec<(String, SqlType)>,
    order: Vec<(SortKey, bool, bool)>,
    limit: Option<Ex>,
    offset: Option<Ex>,
    distinct: bool,
}

/// The scope of a table's columns under `qual`.
pub fn table_scope(def: &TableDef, qual: &str) -> Scope {
    Scope {
        cols: def
            .columns
            .iter()
            .map(|c| ScopeCol { qual: Some(qual.to_string()), name: c.name.clone(), ty: c.ty })
            .collect(),
    }
}

/// The name PostgreSQL gives an output column (`FigureColname`).
fn column_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident_name(i),
        Expr::CompoundIdentifier(p) => {
            p.last().map(ident_name).unwrap_or_else(|| "?column?".into())
        }
        Expr::Function(f) => object_name(&f.name),
        Expr::Cast { expr, data_type, .. } => match column_name(expr).as_str() {
            "?column?" => {
                let t = data_type.to_string().to_lowercase();
                match t.as_str() {
                    "int" | "integer" | "int4" => "int4".into(),
                    "bigint" | "int8" => "int8".into(),
                    "smallint" | "int2" => "int2".into(),
                    "boolean" | "bool" => "bool".into(),
                    "double precision" | "float8" => "float8".into(),
                    "varchar" | "character varying" => "varchar".into(),
                    "timestamptz" | "timestamp with time zone" => "timestamptz".into(),
                    other => other.split('(').next().unwrap_or(other).to_string(),
                }
            }
            n => n.to_string(),
        },
        Expr::Nested(x) => column_name(x),
        Expr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

/// The single SELECT of a query, with its ORDER BY / LIMIT / OFFSET.
fn simple_select(q: &Query) -> SqlResult<&Select> {
    if q.with.is_some() {
        return Err(unsupported("WITH"));
    }
    if q.fetch.is_some() || !q.locks.is_empty() {
        return Err(unsupported("FETCH and FOR UPDATE/SHARE"));
    }
    match q.body.as_ref() {
        SetExpr::Select(s) => Ok(s),
        SetExpr::SetOperation { .. } => Err(unsupported("UNION, INTERSECT and EXCEPT")),
        SetExpr::Values(_) => Err(unsupported("VALUES as a query")),
        _ => Err(unsupported("this query form")),
    }
}

/// Binds a SELECT query.
///
/// # Errors
/// Analysis errors: 42P01, 42703, 42803, 42883, 0A000.
pub fn bind_select(
    q: &Query,
    sql: &str,
    txn: &Txn,
    server: &dyn ServerContext,
    st: &mut BindState,
) -> SqlResult<SelectPlan> {
    let s = simple_select(q)?;
    if s.top.is_some()
        || s.into.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || s.qualify.is_some()
        || !s.connect_by.is_empty()
    {
        return Err(unsupported("this SELECT clause"));
    }
    // FROM
    let srf = select_list_series(s);
    let (source, scope) = match s.from.as_slice() {
        [] => match &srf {
            Some((_, args, name)) => {
                series_source(args, "generate_series".into(), name.clone(), sql, server, st)?
            }
            None => (Source::None, Scope::default()),
        },
        [twj] if twj.joins.is_empty() => match &twj.relation {
            TableFactor::Table { name, alias, args: None, .. } => {
                let n = object_name(name);
                let qual = alias.as_ref().map_or(n.clone(), |a| ident_name(&a.name));
                match txn.table(&n) {
                    Ok(def) => {
                        st.tables.push(def.oid);
                        let scope = table_scope(&def, &qual);
                        (Source::Table(def), scope)
                    }
                    Err(_) => match server.relation(&n) {
                        Some(cols) => {
                            let scope = Scope {
                                cols: cols
                                    .into_iter()
                                    .map(|c| ScopeCol {
                                        qual: Some(qual.clone()),
                                        name: c.name,
                                        ty: c.ty,
                                    })
                                    .collect(),
                            };
                            (Source::Relation(n), scope)
                        }
                        None => {
                            return Err(at(
                                err("42P01", format!("relation \"{n}\" does not exist")),
                                position(sql, name.span()),
                            ))
                        }
                    },
                }
            }
            TableFactor::Table { name, alias, args: Some(args), .. }
                if object_name(name) != "generate_series" =>
            {
                server_function_source(
                    &object_name(name),
                    name,
                    alias,
                    &args.args,
                    sql,
                    server,
                    st,
                )?
            }
            TableFactor::Table { alias, args: Some(args), .. } => {
                let (qual, col) = match alias {
                    Some(a) => {
                        let q = ident_name(&a.name);
                        let c = a
                            .columns
                            .first()
                            .map(|c| ident_name(&c.name))
                            .unwrap_or_else(|| q.clone());
                        (q, c)
                    }
                    None => ("generate_series".to_string(), "generate_series".to_string()),
                };
                series_source(&args.args, qual, col, sql, server, st)?
            }
            _ => return Err(unsupported("this FROM item")),
        },
        _ => return Err(unsupported("joins")),
    };
    // WHERE
    let filter = match &s.selection {
        Some(w) => {
            let mut b = Binder { sql, scope: &scope, st, server, no_aggs: Some("WHERE") };
            let (mut x, mut t) = b.bind(w)?;
            if t == SqlType::Unknown {
                if let Ex::Param(i) = x {
                    if let Some(p) = b.st.params.get_mut(i) {
                        *p = Some(SqlType::Bool);
                    }
                    t = SqlType::Bool;
                } else if let Ex::Const(Value::Text(s)) = &x {
                    x = Ex::Const(crate::engine::value::parse_text(SqlType::Bool, s)?);
                    t = SqlType::Bool;
                } else if let Ex::Const(Value::Null) = &x {
                    t = SqlType::Bool;
                }
            }
            if t != SqlType::Bool {
                return Err(at(
                    err(
                        "42804",
                        format!(
                            "argument of WHERE must be type boolean, not type {}",
                            t.base_name()
                        ),
                    ),
                    super::expr::expr_position(sql, w),
                ));
            }
            Some(x)
        }
        None => None,
    };
    // projection
    st.aggs.clear();
    let mut proj = Vec::new();
    let mut columns = Vec::new();
    for (idx, item) in s.projection.iter().enumerate() {
        if let Some((i, _, name)) = &srf {
            if *i == idx {
                proj.push(Ex::Col(0));
                columns.push((name.clone(), scope.cols[0].ty));
                continue;
            }
        }
        match item {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                if scope.cols.is_empty() {
                    return Err(err(
                        sqlstate::SYNTAX_ERROR,
                        "SELECT * with no tables specified is not valid",
                    ));
                }
                for (i, c) in scope.cols.iter().enumerate() {
                    proj.push(Ex::Col(i));
                    columns.push((c.name.clone(), c.ty));
                }
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let mut b = Binder { sql, scope: &scope, st, server, no_aggs: None };
                let (x, mut t) = b.bind(e)?;
                if t == SqlType::Unknown {
                    if let Ex::Param(i) = x {
                        if let Some(p) = b.st.params.get_mut(i) {
                            *p = Some(SqlType::Text);
                        }
                    }
                    t = SqlType::Text;
                }
                let name = match item {
                    SelectItem::ExprWithAlias { alias, .. } => ident_name(alias),
                    _ => column_name(e),
                };
                proj.push(x);
                columns.push((name, t));
            }
            _ => return Err(unsupported("this select item")),
        }
    }
    // GROUP BY
    let group_exprs: Vec<Ex> = match &s.group_by {
        GroupByExpr::Expressions(es, mods) if mods.is_empty() => {
            let mut out = Vec::new();
            for e in es {
                // GROUP BY 1 / an output name
                if let Expr::Value(v) = e {
                    if let AstValue::Number(n, _) = &v.value {
                        let i: usize = n.parse().unwrap_or(0);
                        let x = proj.get(i.wrapping_sub(1)).cloned().ok_or_else(|| {
                            at(
                                err(
                                    "42P10",
                                    format!("GROUP BY position {n} is not in select list"),
                                ),
                                super::expr::expr_position(sql, e),
                            )
                        })?;
                        out.push(x);
                        continue;
                    }
                }
                let saved = std::mem::take(&mut st.aggs);
                let mut b = Binder { sql, scope: &scope, st, server, no_aggs: Some("GROUP BY") };
                let r = b.bind(e);
                st.aggs = saved;
                match r {
                    Ok((x, _)) => out.push(x),
                    Err(er) => {
                        if let Expr::Identifier(i) = e {
                            if let Some(k) = columns.iter().position(|(n, _)| *n == ident_name(i)) {
                                out.push(proj[k].clone());
                                continue;
                            }
                        }
                        return Err(er);
                    }
                }
            }
            out
        }
        _ => return Err(unsupported("this GROUP BY")),
    };
    let having_ast = s.having.as_ref();
    let mut having = None;
    if let Some(h) = having_ast {
        let mut b = Binder { sql, scope: &scope, st, server, no_aggs: None };
        let (x, _) = b.bind(h)?;
        having = Some(x);
    }
    // ORDER BY
    let mut order_raw = Vec::new();
    if let Some(ob) = &q.order_by {
        let OrderByKind::Expressions(items) = &ob.kind else {
            return Err(unsupported("ORDER BY ALL"));
        };
        for it in items {
            let desc = matches!(it.options.sort, Some(sqlparser::ast::OrderBySort::Desc));
            if matches!(it.options.sort, Some(sqlparser::ast::OrderBySort::Using(_))) {
                return Err(unsupported("ORDER BY USING"));
            }
            let nulls_first = it.options.nulls_first.unwrap_or(desc);
            let key = match &it.expr {
                Expr::Value(v) if matches!(v.value, AstValue::Number(..)) => {
                    let AstValue::Number(n, _) = &v.value else { unreachable!() };
                    let i: usize = n.parse().unwrap_or(0);
                    if i == 0 || i > columns.len() {
                        return Err(at(
                            err("42P10", format!("ORDER BY position {n} is not in select list")),
                            super::expr::expr_position(sql, &it.expr),
                        ));
                    }
                    SortKey::Out(i - 1)
                }
                Expr::Identifier(id)
                    if columns.iter().filter(|(n, _)| *n == ident_name(id)).count() == 1
                        && !matches!(s.projection.as_slice(), [SelectItem::Wildcard(_)]) =>
                {
                    SortKey::Out(
                        columns.iter().position(|(n, _)| *n == ident_name(id)).unwrap_or(0),
                    )
                }
                e => {
                    let mut b = Binder { sql, scope: &scope, st, server, no_aggs: None };
                    SortKey::Expr(b.bind(e)?.0)
                }
            };
            order_raw.push((key, desc, nulls_first));
        }
    }
    let aggs = std::mem::take(&mut st.aggs);
    let grouped = !group_exprs.is_empty() || !aggs.is_empty() || having.is_some();
    let mut order = order_raw;
    let mut grouped_plan = None;
    if grouped {
        let ng = group_exprs.len();
        let col_pos = st.col_pos.clone();
        let names: Vec<String> = scope
            .cols
            .iter()
            .map(|c| match &c.qual {
                Some(q) => format!("{q}.{}", c.name),
                None => c.name.clone(),
            })
            .collect();
        let rw = |x: Ex| -> SqlResult<Ex> {
            x.rewrite(&mut |e| {
                if let Some(j) = group_exprs.iter().position(|g| g == e) {
                    return Ok(Some(Ex::Col(j)));
                }
                match e {
                    Ex::Agg(k) => Ok(Some(Ex::Col(ng + k))),
                    Ex::Col(i) => Err(at(
                        err(
                            "42803",
                            format!(
                                "column \"{}\" must appear in the GROUP BY clause or be used in an aggregate function",
                                names.get(*i).cloned().unwrap_or_default()
                            ),
                        ),
                        col_pos.iter().find(|(c, _)| c == i).map(|(_, p)| *p),
                    )),
                    _ => Ok(None),
                }
            })
        };
        proj = proj.into_iter().map(&rw).collect::<SqlResult<_>>()?;
        having = having.map(&rw).transpose()?;
        order = order
            .into_iter()
            .map(|(k, d, n)| {
                Ok((
                    match k {
                        SortKey::Expr(x) => SortKey::Expr(rw(x)?),
                        o => o,
                    },
                    d,
                    n,
                ))
            })
            .collect::<SqlResult<_>>()?;
        grouped_plan = Some((group_exprs, aggs));
    }
    // LIMIT / OFFSET
    let (mut limit, mut offset) = (None, None);
    match &q.limit_clause {
        None => {}
        Some(LimitClause::LimitOffset { limit: l, offset: o, limit_by }) if limit_by.is_empty() => {
            let empty = Scope::default();
            let mut b = Binder { sql, scope: &empty, st, server, no_aggs: Some("LIMIT") };
            let lim = |e: &Expr, b: &mut Binder<'_>| -> SqlResult<Ex> {
                let (x, t) = b.bind(e)?;
                if t == SqlType::Unknown {
                    if let Ex::Param(i) = x {
                        if let Some(p) = b.st.params.get_mut(i) {
                            *p = Some(SqlType::Int8);
                        }
                    }
                }
                Ok(Ex::Cast(
                    Box::new(x),
                    if t == SqlType::Unknown { SqlType::Int8 } else { t },
                    SqlType::Int8,
                ))
            };
            if let Some(l) = l {
                if !matches!(l, Expr::Value(v) if v.value == AstValue::Null) {
                    limit = Some(lim(l, &mut b)?);
                }
            }
            if let Some(o) = o {
                offset = Some(lim(&o.value, &mut b)?);
            }
        }
        _ => return Err(unsupported("this LIMIT form")),
    }
    let distinct = match &s.distinct {
        None | Some(Distinct::All) => false,
        Some(Distinct::Distinct) => true,
        Some(Distinct::On(_)) => return Err(unsupported("DISTINCT ON")),
    };
    let (lower, upper) = match (&source, &filter) {
        (Source::Table(def), Some(f)) if def.pkey.len() == 1 => key_bounds(f, def.pkey[0]),
        _ => (None, None),
    };
    Ok(SelectPlan {
        source,
        filter,
        lower,
        upper,
        grouped: grouped_plan,
        having,
        proj,
        columns,
        order,
        limit,
        offset,
        distinct,
    })
}

/// Bounds on column `col` that the conjuncts of `f` give: `col op expr` with a row-free
/// expression (index scans by key).
pub fn key_bounds(f: &Ex, col: usize) -> (Option<KeyBound>, Option<KeyBound>) {
    let mut lower = None;
    let mut upper = None;
    let mut conj = vec![f];
    while let Some(e) = conj.pop() {
        match e {
            Ex::Bin(Op::And, l, r) => {
                conj.push(l);
                conj.push(r);
            }
            Ex::Bin(op, l, r) => {
                let (op, other) = match (l.as_ref(), r.as_ref()) {
                    (Ex::Col(c), o) if *c == col && o.is_row_free() => (*op, o),
                    (o, Ex::Col(c)) if *c == col && o.is_row_free() => {
                        let flipped = match op {
                            Op::Lt => Op::Gt,
                            Op::Le => Op::Ge,
                            Op::Gt => Op::Lt,
                            Op::Ge => Op::Le,
                            o => *o,
                        };
                        (flipped, o)
                    }
                    _ => continue,
                };
                match op {
                    Op::Eq => {
                        lower.get_or_insert((other.clone(), true));
                        upper.get_or_insert((other.clone(), true));
                    }
                    Op::Gt => drop(lower.get_or_insert((other.clone(), false))),
                    Op::Ge => drop(lower.get_or_insert((other.clone(), true))),
                    Op::Lt => drop(upper.get_or_insert((other.clone(), false))),
                    Op::Le => drop(upper.get_or_insert((other.clone(), true))),
                    _ => {}
                }
            }
            Ex::Between(x, lo, hi, false)
                if matches!(x.as_ref(), Ex::Col(c) if *c == col)
                    && lo.is_row_free()
                    && hi.is_row_free() =>
            {
                lower.get_or_insert((lo.as_ref().clone(), true));
                upper.get_or_insert((hi.as_ref().clone(), true));
            }
            _ => {}
        }
    }
    (lower, upper)
}

/// The values of a conjunct `col IN (row-free list)` of `f`, if it has one.
fn key_points(f: &Ex, col: usize) -> Option<&[Ex]> {
    let mut conj = vec![f];
    while let Some(e) = conj.pop() {
        match e {
            Ex::Bin(Op::And, l, r) => {
                conj.push(l);
                conj.push(r);
            }
            Ex::In(x, list, false)
                if matches!(x.as_ref(), Ex::Col(c) if *c == col)
                    && list.iter().all(Ex::is_row_free) =>
            {
                return Some(list);
            }
            _ => {}
        }
    }
    None
}

/// The key range the bounds give; `None` when a bound is NULL (no row can match).
pub fn key_range(
    lower: &Option<(Ex, bool)>,
    upper: &Option<(Ex, bool)>,
    cx: &EvalCtx<'_>,
) -> SqlResult<Option<(Bound<Key>, Bound<Key>)>> {
    let b = |x: &Option<(Ex, bool)>| -> SqlResult<Option<Bound<Key>>> {
        Ok(Some(match x {
            None => Bound::Unbounded,
            Some((e, inc)) => {
                let v = e.eval(&[], cx)?;
                if v.is_null() || matches!(v, Value::Float8(f) if f.is_nan()) {
                    return Ok(None);
                }
                if *inc {
                    Bound::Included(vec![v])
                } else {
                    Bound::Excluded(vec![v])
                }
            }
        }))
    };
    match (b(lower)?, b(upper)?) {
        (Some(l), Some(u)) => {
            // an excluded equal pair or an inverted range would upset BTreeMap::range
            if let (
                Bound::Included(a) | Bound::Excluded(a),
                Bound::Included(c) | Bound::Excluded(c),
            ) = (&l, &u)
            {
                let ord = a.cmp(c);
                if ord == Ordering::Greater
                    || (ord == Ordering::Equal
                        && (matches!(l, Bound::Excluded(_)) || matches!(u, Bound::Excluded(_))))
                {
                    return Ok(None);
                }
            }
            Ok(Some((l, u)))
        }
        _ => Ok(None),
    }
}

/// The rows of a table matching `filter` (scanning the key range), in key order.
pub fn scan_filtered(
    txn: &Txn,
    def: &TableDef,
    filter: &Option<Ex>,
    lower: &Option<(Ex, bool)>,
    upper: &Option<(Ex, bool)>,
    cx: &EvalCtx<'_>,
) -> SqlResult<Vec<Vec<Value>>> {
    if let (None, None, Some(f), [pk]) = (lower, upper, filter, def.pkey.as_slice()) {
        if let Some(list) = key_points(f, *pk) {
            // `k IN (...)`: one index probe per distinct value, in key order
            let mut keys = Vec::with_capacity(list.len());
            for e in list {
                let v = e.eval(&[], cx)?;
                if !v.is_null() {
                    keys.push(v);
                }
            }
            keys.sort_by(value_cmp);
            keys.dedup_by(|a, b| value_cmp(a, b) == Ordering::Equal);
            let mut out = Vec::new();
            for k in keys {
                let range = (Bound::Included(vec![k.clone()]), Bound::Included(vec![k]));
                for r in txn.scan(def.oid, range)? {
                    if passes(filter, &r, cx)? {
                        out.push(r);
                    }
                }
            }
            return Ok(out);
        }
    }
    let Some(range) = key_range(lower, upper, cx)? else { return Ok(Vec::new()) };
    let rows = txn.scan(def.oid, range)?;
    let mut out = Vec::new();
    for r in rows {
        if passes(filter, &r, cx)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Whether `row` satisfies `filter` (NULL does not).
pub fn passes(filter: &Option<Ex>, row: &[Value], cx: &EvalCtx<'_>) -> SqlResult<bool> {
    Ok(match filter {
        None => true,
        Some(f) => f.eval(row, cx)? == Value::Bool(true),
    })
}

/// An aggregate's running state.
#[derive(Debug, Clone)]
enum Acc {
    Count(i64),
    IntSum(Option<i128>),
    DecSum(Option<Dec>, i64),
    FloatSum(Option<f64>, i64),
    Pick(Option<Value>),
}

fn acc_new(a: &AggSpec) -> Acc {
    match a.func {
        AggFn::CountStar | AggFn::Count => Acc::Count(0),
        AggFn::Min | AggFn::Max => Acc::Pick(None),
        AggFn::Sum | AggFn::Avg => match a.arg_ty {
            SqlType::Float8 => Acc::FloatSum(None, 0),
            SqlType::Int2 | SqlType::Int4 if a.func == AggFn::Sum => Acc::IntSum(None),
            _ => Acc::DecSum(None, 0),
        },
    }
}

fn acc_add(acc: &mut Acc, a: &AggSpec, row: &[Value], cx: &EvalCtx<'_>) -> SqlResult<()> {
    let v = match &a.arg {
        Some(x) => x.eval(row, cx)?,
        None => Value::Bool(true),
    };
    if v.is_null() {
        return Ok(());
    }
    match acc {
        Acc::Count(n) => *n += 1,
        Acc::IntSum(s) => *s = Some(s.unwrap_or(0) + i128::from(v.as_i64().unwrap_or(0))),
        Acc::DecSum(s, n) => {
            let d = dec_of(&v).ok_or_else(|| {
                err(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format")
            })?;
            *s = Some(match s {
                Some(x) => x.checked_add(d)?,
                None => d,
            });
            *n += 1;
        }
        Acc::FloatSum(s, n) => {
            *s = Some(s.unwrap_or(0.0) + v.as_f64().unwrap_or(0.0));
            *n += 1;
        }
        Acc::Pick(p) => {
            let better = match p {
                None => true,
                Some(cur) => {
                    let o = value_cmp(&v, cur);
                    if a.func == AggFn::Min {
                        o == Ordering::Less
                    } else {
                        o == Ordering::Greater
                    }
                }
            };
            if better {
                *p = Some(v);
            }
        }
    }
    Ok(())
}

fn acc_result(acc: &Acc, a: &AggSpec) -> SqlResult<Value> {
    Ok(match (acc, a.func) {
        (Acc::Count(n), _) => Value::Int8(*n),
        (Acc::IntSum(s), _) => match s {
            Some(s) => int_in_range(*s, SqlType::Int8)?,
            None => Value::Null,
        },
        (Acc::DecSum(None, _), _) | (Acc::FloatSum(None, _), _) => Value::Null,
        (Acc::DecSum(Some(s), _), AggFn::Sum) => Value::Numeric(s.to_text()),
        (Acc::DecSum(Some(s), n), _) => {
            Value::Numeric(s.checked_div(Dec::int(i128::from(*n)))?.to_text())
        }
        (Acc::FloatSum(Some(s), _), AggFn::Sum) => Value::Float8(*s),
        (Acc::FloatSum(Some(s), n), _) => Value::Float8(*s / *n as f64),
        (Acc::Pick(p), _) => p.clone().unwrap_or(Value::Null),
    })
}

fn sort_rows(rows: &mut [(Vec<Value>, Vec<Value>)], order: &[(SortKey, bool, bool)]) {
    rows.sort_by(|(_, a), (_, b)| {
        for (i, (_, desc, nulls_first)) in order.iter().enumerate() {
            let (x, y) = (&a[i], &b[i]);
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => {
                    if *nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (false, true) => {
                    if *nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                _ => {
                    let o = value_cmp(x, y);
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

fn limit_value(e: &Option<Ex>, cx: &EvalCtx<'_>, what: &str) -> SqlResult<Option<usize>> {
    let Some(e) = e else { return Ok(None) };
    match e.eval(&[], cx)? {
        Value::Null => Ok(None),
        v => {
            let n = v.as_i64().unwrap_or(0);
            if n < 0 {
                return Err(err("2201W", format!("{what} must not be negative")));
            }
            Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
        }
    }
}

impl SelectPlan {
    /// Runs the query.
    ///
    /// # Errors
    /// Runtime errors of its expressions; a server relation that could not be read.
    pub async fn run(
        &self,
        txn: &Txn,
        server: &dyn ServerContext,
        cx: &EvalCtx<'_>,
    ) -> SqlResult<Vec<Vec<Value>>> {
        let rows: Vec<Vec<Value>> = match &self.source {
            Source::None => {
                if passes(&self.filter, &[], cx)? {
                    vec![Vec::new()]
                } else {
                    Vec::new()
                }
            }
            Source::Table(def) => {
                scan_filtered(txn, def, &self.filter, &self.lower, &self.upper, cx)?
            }
            Source::Relation(name) => {
                let mut out = Vec::new();
                for r in server.relation_rows(name).await? {
                    if passes(&self.filter, &r, cx)? {
                        out.push(r);
                    }
                }
                out
            }
            Source::ServerFn(name, args) => {
                let vals = args.iter().map(|a| a.eval(&[], cx)).collect::<SqlResult<Vec<_>>>()?;
                let row = server.call(name, vals, cx.pid).await?;
                if passes(&self.filter, &row, cx)? {
                    vec![row]
                } else {
                    Vec::new()
                }
            }
            Source::Series(a, b, step) => {
                let a = a.eval(&[], cx)?;
                let b = b.eval(&[], cx)?;
                let s = match step {
                    Some(s) => s.eval(&[], cx)?,
                    None => Value::Int4(1),
                };
                let (Some(a), Some(b), Some(s)) = (a.as_i64(), b.as_i64(), s.as_i64()) else {
                    return Ok(Vec::new());
                };
                if s == 0 {
                    return Err(err(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        "step size cannot equal zero",
                    ));
                }
                let count = if (s > 0 && a > b) || (s < 0 && a < b) {
                    0
                } else {
                    ((i128::from(b) - i128::from(a)) / i128::from(s)) as u128 + 1
                };
                if count > MAX_SERIES {
                    return Err(unsupported(format!(
                        "generate_series of more than {MAX_SERIES} rows"
                    )));
                }
                let mut out = Vec::new();
                let mut v = i128::from(a);
                for _ in 0..count {
                    let row = vec![Value::Int8(v as i64)];
                    if passes(&self.filter, &row, cx)? {
                        out.push(row);
                    }
                    v += i128::from(s);
                }
                out
            }
        };
        let series_ty = match &self.source {
            Source::Series(..) => Some(()),
            _ => None,
        };
        let _ = series_ty;
        // grouping
        let sources: Vec<Vec<Value>> = match &self.grouped {
            None => rows,
            Some((keys, aggs)) => {
                let mut groups: BTreeMap<Vec<Value>, Vec<Acc>> = BTreeMap::new();
                if keys.is_empty() {
                    groups.insert(Vec::new(), aggs.iter().map(acc_new).collect());
                }
                for r in &rows {
                    let k = keys.iter().map(|g| g.eval(r, cx)).collect::<SqlResult<Vec<_>>>()?;
                    let accs =
                        groups.entry(k).or_insert_with(|| aggs.iter().map(acc_new).collect());
                    for (acc, a) in accs.iter_mut().zip(aggs) {
                        acc_add(acc, a, r, cx)?;
                    }
                }
                let mut out = Vec::new();
                for (k, accs) in groups {
                    let mut g = k;
                    for (acc, a) in accs.iter().zip(aggs) {
                        g.push(acc_result(acc, a)?);
                    }
                    if passes(&self.having, &g, cx)? {
                        out.push(g);
                    }
                }
                out
            }
        };
        let mut out: Vec<(Vec<Value>, Vec<Value>)> = Vec::with_capacity(sources.len());
        for r in &sources {
            let mut o = Vec::with_capacity(self.proj.len());
            for (p, (_, ty)) in self.proj.iter().zip(&self.columns) {
                let v = p.eval(r, cx)?;
                o.push(conform(v, *ty)?);
            }
            let mut keys = Vec::with_capacity(self.order.len());
            for (k, _, _) in &self.order {
                keys.push(match k {
                    SortKey::Out(i) => o.get(*i).cloned().unwrap_or(Value::Null),
                    SortKey::Expr(x) => x.eval(r, cx)?,
                });
            }
            out.push((o, keys));
        }
        if self.distinct {
            let mut seen = std::collections::BTreeSet::new();
            out.retain(|(o, _)| seen.insert(o.clone()));
            if self.order.is_empty() {
                out.sort_by(|a, b| a.0.cmp(&b.0));
            }
        }
        if !self.order.is_empty() {
            sort_rows(&mut out, &self.order);
        }
        let offset = limit_value(&self.offset, cx, "OFFSET")?.unwrap_or(0);
        let limit = limit_value(&self.limit, cx, "LIMIT")?;
        Ok(out.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).map(|(o, _)| o).collect())
    }
}

/// `v` in the representation of `ty` (integers of another width, generate_series' int8).
pub fn conform(v: Value, ty: SqlType) -> SqlResult<Value> {
    Ok(match (&v, ty) {
        (Value::Null, _) => v,
        (
            Value::Int2(_) | Value::Int4(_) | Value::Int8(_),
            SqlType::Int2 | SqlType::Int4 | SqlType::Int8,
        ) => int_in_range(i128::from(v.as_i64().unwrap_or(0)), ty)?,
        (Value::Int2(_) | Value::Int4(_) | Value::Int8(_) | Value::Numeric(_), SqlType::Float8) => {
            cast(v, SqlType::Numeric, SqlType::Float8, true)?
        }
        _ => v,
    })
}
