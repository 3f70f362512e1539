//! INSERT (VALUES or SELECT, ON CONFLICT, RETURNING), UPDATE and DELETE: bound into plans
//! and run row by row through the engine's row locks (a row changed meanwhile is re-checked
//! against the WHERE clause, as PostgreSQL's EvalPlanQual does).

use std::sync::Arc;

use sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Delete, Expr, FromTable, Insert, OnConflictAction, OnInsert,
    SelectItem, SetExpr, Spanned, TableFactor, TableObject, Update,
};
use walstream_protocol::wire::sqlstate;

use super::error::{at, err, position, unsupported, SqlResult};
use super::expr::{
    assignment_error, ident_name, literal_error, object_name, BindState, Binder, EvalCtx, Ex,
    Scope, ScopeCol,
};
use super::query::{
    bind_select, key_bounds, passes, scan_filtered, table_scope, KeyBound, SelectPlan,
};
use super::server::ServerContext;
use super::types::{cast, category, Category};
use crate::engine::{
    EngineError, InsertOutcome, RowAction, RowOutcome, SqlType, TableDef, Txn, Value,
};

/// A RETURNING list.
#[derive(Debug, Clone, Default)]
pub struct Returning {
    exprs: Vec<Ex>,
    /// The result columns (empty: no RETURNING).
    pub columns: Vec<(String, SqlType)>,
}

/// One value to assign to a column: the expression and its type.
#[derive(Debug, Clone)]
struct Assign {
    col: usize,
    ex: Ex,
    ty: SqlType,
}

/// Where INSERT's rows come from.
#[derive(Debug, Clone)]
enum InsertSource {
    Values(Vec<Vec<Option<(Ex, SqlType)>>>),
    Select(Box<SelectPlan>),
}

/// ON CONFLICT.
#[derive(Debug, Clone)]
enum Conflict {
    Error,
    Nothing,
    Update { sets: Vec<Assign>, filter: Option<Ex> },
}

/// A bound INSERT.
#[derive(Debug, Clone)]
pub struct InsertPlan {
    def: Arc<TableDef>,
    targets: Vec<usize>,
    source: InsertSource,
    conflict: Conflict,
    /// RETURNING.
    pub returning: Returning,
}

/// A bound UPDATE or DELETE.
#[derive(Debug, Clone)]
pub struct ModifyPlan {
    def: Arc<TableDef>,
    filter: Option<Ex>,
    lower: Option<(Ex, bool)>,
    upper: Option<(Ex, bool)>,
    /// `None` for DELETE.
    sets: Option<Vec<Assign>>,
    /// RETURNING.
    pub returning: Returning,
}

/// What a DML statement did: rows affected and RETURNING rows.
#[derive(Debug, Clone, Default)]
pub struct DmlResult {
    /// Rows inserted, updated or deleted.
    pub count: u64,
    /// RETURNING rows.
    pub rows: Vec<Vec<Value>>,
}

fn table_of(
    txn: &Txn,
    name: &sqlparser::ast::ObjectName,
    sql: &str,
    st: &mut BindState,
) -> SqlResult<Arc<TableDef>> {
    let def =
        txn.table(&object_name(name)).map_err(|e| at(e.into(), position(sql, name.span())))?;
    st.tables.push(def.oid);
    Ok(def)
}

fn bind_returning(
    items: &Option<Vec<SelectItem>>,
    scope: &Scope,
    sql: &str,
    st: &mut BindState,
    server: &dyn ServerContext,
) -> SqlResult<Returning> {
    let mut r = Returning::default();
    let Some(items) = items else { return Ok(r) };
    for it in items {
        match it {
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                for (i, c) in scope.cols.iter().enumerate() {
                    r.exprs.push(Ex::Col(i));
                    r.columns.push((c.name.clone(), c.ty));
                }
            }
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                let mut b = Binder { sql, scope, st, server, no_aggs: Some("RETURNING") };
                let (x, t) = b.bind(e)?;
                let name = match it {
                    SelectItem::ExprWithAlias { alias, .. } => ident_name(alias),
                    _ => match e {
                        Expr::Identifier(i) => ident_name(i),
                        Expr::CompoundIdentifier(p) => p.last().map(ident_name).unwrap_or_default(),
                        Expr::Function(f) => object_name(&f.name),
                        _ => "?column?".into(),
                    },
                };
                r.exprs.push(x);
                r.columns.push((name, if t == SqlType::Unknown { SqlType::Text } else { t }));
            }
            _ => return Err(unsupported("this RETURNING item")),
        }
    }
    Ok(r)
}

impl Returning {
    fn row(&self, row: &[Value], cx: &EvalCtx<'_>) -> SqlResult<Vec<Value>> {
        self.exprs.iter().map(|e| e.eval(row, cx)).collect()
    }
}

/// Binds an expression assigned to column `col` of `def` (an assignment cast).
fn bind_assign(
    b: &mut Binder<'_>,
    def: &TableDef,
    col: usize,
    e: &Expr,
    sql: &str,
) -> SqlResult<Assign> {
    let c = &def.columns[col];
    let (mut x, mut t) = b.bind(e)?;
    if t == SqlType::Unknown {
        match &mut x {
            Ex::Param(i) => {
                if let Some(p) = b.st.params.get_mut(*i) {
                    *p = Some(c.ty);
                }
            }
            Ex::Const(v) => {
                if let Value::Text(s) = v {
                    let s = s.clone();
                    *v = crate::engine::value::parse_text(c.ty, &s)
                        .map_err(|er| literal_error(er, super::expr::expr_position(sql, e)))?;
                }
            }
            _ => {}
        }
        t = c.ty;
    }
    let ok = t == c.ty || category(t) == category(c.ty) || category(c.ty) == Category::String;
    if !ok {
        return Err(at(assignment_error(&c.name, c.ty, t), super::expr::expr_position(sql, e)));
    }
    Ok(Assign { col, ex: x, ty: t })
}

/// Binds INSERT.
///
/// # Errors
/// Analysis errors.
pub fn bind_insert(
    ins: &Insert,
    sql: &str,
    txn: &Txn,
    server: &dyn ServerContext,
    st: &mut BindState,
) -> SqlResult<InsertPlan> {
    let TableObject::TableName(name) = &ins.table else {
        return Err(unsupported("INSERT into a table function"));
    };
    if ins.overwrite
        || ins.partitioned.is_some()
        || !ins.assignments.is_empty()
        || ins.replace_into
        || ins.ignore
    {
        return Err(unsupported("this INSERT form"));
    }
    let def = table_of(txn, name, sql, st)?;
    let qual = ins.table_alias.as_ref().map_or(def.name.clone(), |a| ident_name(&a.alias));
    let mut targets = Vec::new();
    for c in &ins.columns {
        let n = object_name(c);
        let i = def.column(&n).ok_or_else(|| {
            at(
                err(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{n}\" of relation \"{}\" does not exist", def.name),
                ),
                position(sql, c.span()),
            )
        })?;
        if targets.contains(&i) {
            return Err(at(
                err("42701", format!("column \"{n}\" specified more than once")),
                position(sql, c.span()),
            ));
        }
        targets.push(i);
    }
    let explicit_targets = !targets.is_empty();
    if !explicit_targets {
        targets = (0..def.columns.len()).collect();
    }
    let Some(src) = &ins.source else { return Err(unsupported("INSERT without VALUES or SELECT")) };
    let source = match src.body.as_ref() {
        SetExpr::Values(v) if src.order_by.is_none() && src.limit_clause.is_none() => {
            let mut rows = Vec::new();
            let empty = Scope::default();
            for row in &v.rows {
                let exprs = &row.content;
                if exprs.len() > targets.len() {
                    let e = &exprs[targets.len()];
                    return Err(at(
                        err(
                            sqlstate::SYNTAX_ERROR,
                            "INSERT has more expressions than target columns",
                        ),
                        super::expr::expr_position(sql, e),
                    ));
                }
                if exprs.len() < targets.len() && explicit_targets {
                    let c = &ins.columns[exprs.len()];
                    return Err(at(
                        err(
                            sqlstate::SYNTAX_ERROR,
                            "INSERT has more target columns than expressions",
                        ),
                        position(sql, c.span()),
                    ));
                }
                let mut out = Vec::new();
                for (e, &col) in exprs.iter().zip(&targets) {
                    if let Expr::Identifier(i) = e {
                        if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") {
                            out.push(None);
                            continue;
                        }
                    }
                    let mut b = Binder { sql, scope: &empty, st, server, no_aggs: Some("VALUES") };
                    let a = bind_assign(&mut b, &def, col, e, sql)?;
                    out.push(Some((a.ex, a.ty)));
                }
                rows.push(out);
            }
            InsertSource::Values(rows)
        }
        _ => {
            let plan = bind_select(src, sql, txn, server, st)?;
            if plan.columns.len() > targets.len() {
                return Err(err(
                    sqlstate::SYNTAX_ERROR,
                    "INSERT has more expressions than target columns",
                ));
            }
            if plan.columns.len() < targets.len() && explicit_targets {
                return Err(err(
                    sqlstate::SYNTAX_ERROR,
                    "INSERT has more target columns than expressions",
                ));
            }
            for ((_, t), &col) in plan.columns.iter().zip(&targets) {
                let c = &def.columns[col];
                if !(*t == c.ty
                    || category(*t) == category(c.ty)
                    || category(c.ty) == Category::String)
                {
                    return Err(assignment_error(&c.name, c.ty, *t));
                }
            }
            InsertSource::Select(Box::new(plan))
        }
    };
    let scope = table_scope(&def, &qual);
    let conflict = match &ins.on {
        None => Conflict::Error,
        Some(OnInsert::OnConflict(oc)) => {
            match &oc.conflict_target {
                None => {
                    if matches!(oc.action, OnConflictAction::DoUpdate(_)) {
                        return Err(err(sqlstate::SYNTAX_ERROR, "ON CONFLICT DO UPDATE requires inference specification or constraint name")
                            .with_hint("For example, ON CONFLICT (column_name)."));
                    }
                }
                Some(ConflictTarget::Columns { columns, predicate: None }) => {
                    let mut cols: Vec<usize> = Vec::new();
                    for c in columns {
                        let n = ident_name(c);
                        let i = def.column(&n).ok_or_else(|| {
                            at(
                                err(
                                    sqlstate::UNDEFINED_COLUMN,
                                    format!("column \"{n}\" does not exist"),
                                ),
                                position(sql, c.span),
                            )
                        })?;
                        cols.push(i);
                    }
                    let mut a = cols.clone();
                    a.sort_unstable();
                    a.dedup();
                    let mut p = def.pkey.clone();
                    p.sort_unstable();
                    if a != p {
                        return Err(err("42P10", "there is no unique or exclusion constraint matching the ON CONFLICT specification"));
                    }
                }
                Some(ConflictTarget::OnConstraint(n)) => {
                    if object_name(n) != def.pkey_name() {
                        return Err(err(
                            "42704",
                            format!(
                                "constraint \"{}\" for table \"{}\" does not exist",
                                object_name(n),
                                def.name
                            ),
                        ));
                    }
                }
                _ => return Err(unsupported("this ON CONFLICT target")),
            }
            match &oc.action {
                OnConflictAction::DoNothing => Conflict::Nothing,
                OnConflictAction::DoUpdate(du) => {
                    let mut both = scope.clone();
                    both.cols.extend(def.columns.iter().map(|c| ScopeCol {
                        qual: Some("excluded".into()),
                        name: c.name.clone(),
                        ty: c.ty,
                    }));
                    let sets = bind_sets(&du.assignments, &def, &both, sql, st, server)?;
                    let filter = match &du.selection {
                        Some(w) => Some(
                            Binder { sql, scope: &both, st, server, no_aggs: Some("WHERE") }
                                .bind(w)?
                                .0,
                        ),
                        None => None,
                    };
                    Conflict::Update { sets, filter }
                }
            }
        }
        Some(_) => return Err(unsupported("ON DUPLICATE KEY")),
    };
    let returning = bind_returning(&ins.returning, &scope, sql, st, server)?;
    Ok(InsertPlan { def, targets, source, conflict, returning })
}

fn bind_sets(
    assignments: &[sqlparser::ast::Assignment],
    def: &TableDef,
    scope: &Scope,
    sql: &str,
    st: &mut BindState,
    server: &dyn ServerContext,
) -> SqlResult<Vec<Assign>> {
    let mut sets = Vec::new();
    for a in assignments {
        let AssignmentTarget::ColumnName(n) = &a.target else {
            return Err(unsupported("multiple-column assignment"));
        };
        let name = object_name(n);
        let col = def.column(&name).ok_or_else(|| {
            at(
                err(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{name}\" of relation \"{}\" does not exist", def.name),
                ),
                position(sql, n.span()),
            )
        })?;
        if sets.iter().any(|s: &Assign| s.col == col) {
            return Err(at(
                err("42601", format!("multiple assignments to same column \"{name}\"")),
                position(sql, n.span()),
            ));
        }
        if let Expr::Identifier(i) = &a.value {
            if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") {
                let c = &def.columns[col];
                let v = c.default.clone().unwrap_or(Value::Null);
                sets.push(Assign { col, ex: Ex::Const(v), ty: c.ty });
                continue;
            }
        }
        let mut b = Binder { sql, scope, st, server, no_aggs: Some("UPDATE") };
        sets.push(bind_assign(&mut b, def, col, &a.value, sql)?);
    }
    Ok(sets)
}

fn table_factor_name(t: &TableFactor) -> SqlResult<(&sqlparser::ast::ObjectName, Option<String>)> {
    match t {
        TableFactor::Table { name, alias, args: None, .. } => {
            Ok((name, alias.as_ref().map(|a| ident_name(&a.name))))
        }
        _ => Err(unsupported("this target table")),
    }
}

fn bind_where(
    w: &Option<Expr>,
    scope: &Scope,
    sql: &str,
    st: &mut BindState,
    server: &dyn ServerContext,
) -> SqlResult<Option<Ex>> {
    let Some(w) = w else { return Ok(None) };
    let (x, t) = Binder { sql, scope, st, server, no_aggs: Some("WHERE") }.bind(w)?;
    if t != SqlType::Bool && t != SqlType::Unknown {
        return Err(at(
            err(
                "42804",
                format!("argument of WHERE must be type boolean, not type {}", t.base_name()),
            ),
            super::expr::expr_position(sql, w),
        ));
    }
    Ok(Some(x))
}

/// Binds UPDATE.
///
/// # Errors
/// Analysis errors.
pub fn bind_update(
    u: &Update,
    sql: &str,
    txn: &Txn,
    server: &dyn ServerContext,
    st: &mut BindState,
) -> SqlResult<ModifyPlan> {
    if !u.table.joins.is_empty() || u.from.is_some() || !u.order_by.is_empty() || u.limit.is_some()
    {
        return Err(unsupported("UPDATE with FROM, joins, ORDER BY or LIMIT"));
    }
    let (name, alias) = table_factor_name(&u.table.relation)?;
    let def = table_of(txn, name, sql, st)?;
    let scope = table_scope(&def, &alias.unwrap_or_else(|| def.name.clone()));
    let sets = bind_sets(&u.assignments, &def, &scope, sql, st, server)?;
    let filter = bind_where(&u.selection, &scope, sql, st, server)?;
    let returning = bind_returning(&u.returning, &scope, sql, st, server)?;
    let (lower, upper) = bounds(&def, &filter);
    Ok(ModifyPlan { def, filter, lower, upper, sets: Some(sets), returning })
}

fn bounds(def: &TableDef, filter: &Option<Ex>) -> (Option<KeyBound>, Option<KeyBound>) {
    match filter {
        Some(f) if def.pkey.len() == 1 => key_bounds(f, def.pkey[0]),
        _ => (None, None),
    }
}

/// Binds DELETE.
///
/// # Errors
/// Analysis errors.
pub fn bind_delete(
    d: &Delete,
    sql: &str,
    txn: &Txn,
    server: &dyn ServerContext,
    st: &mut BindState,
) -> SqlResult<ModifyPlan> {
    let tables = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    if tables.len() != 1
        || !tables[0].joins.is_empty()
        || d.using.is_some()
        || !d.tables.is_empty()
        || d.limit.is_some()
        || !d.order_by.is_empty()
    {
        return Err(unsupported("DELETE with USING, joins, ORDER BY or LIMIT"));
    }
    let (name, alias) = table_factor_name(&tables[0].relation)?;
    let def = table_of(txn, name, sql, st)?;
    let scope = table_scope(&def, &alias.unwrap_or_else(|| def.name.clone()));
    let filter = bind_where(&d.selection, &scope, sql, st, server)?;
    let returning = bind_returning(&d.returning, &scope, sql, st, server)?;
    let (lower, upper) = bounds(&def, &filter);
    Ok(ModifyPlan { def, filter, lower, upper, sets: None, returning })
}

fn apply_sets(
    sets: &[Assign],
    def: &TableDef,
    cur: &[Value],
    scope_row: &[Value],
    cx: &EvalCtx<'_>,
) -> SqlResult<Vec<Value>> {
    let mut new = cur.to_vec();
    for s in sets {
        let v = s.ex.eval(scope_row, cx)?;
        new[s.col] = cast(v, s.ty, def.columns[s.col].ty, false)?;
    }
    Ok(new)
}

impl InsertPlan {
    /// The table.
    pub fn table(&self) -> &TableDef {
        &self.def
    }

    /// Runs the INSERT.
    ///
    /// # Errors
    /// 23505, 23502, 21000, casts' errors, 40P01.
    pub async fn run(
        &self,
        txn: &mut Txn,
        server: &dyn ServerContext,
        cx: &EvalCtx<'_>,
    ) -> SqlResult<DmlResult> {
        let def = &self.def;
        let mut rows = Vec::new();
        match &self.source {
            InsertSource::Values(vs) => {
                for r in vs {
                    let mut row = defaults(def);
                    for (v, &col) in r.iter().zip(&self.targets) {
                        if let Some((e, t)) = v {
                            row[col] = cast(e.eval(&[], cx)?, *t, def.columns[col].ty, false)?;
                        }
                    }
                    rows.push(row);
                }
            }
            InsertSource::Select(plan) => {
                for r in plan.run(txn, server, cx).await? {
                    let mut row = defaults(def);
                    for ((v, (_, t)), &col) in r.into_iter().zip(&plan.columns).zip(&self.targets) {
                        row[col] = cast(v, *t, def.columns[col].ty, false)?;
                    }
                    rows.push(row);
                }
            }
        }
        let mut res = DmlResult::default();
        for row in rows {
            // CHECK_FOR_INTERRUPTS: a long INSERT yields now and then, so a cancel or a
            // timeout stops it and other sessions on this worker get their turn.
            tokio::task::consume_budget().await;
            for _ in 0..1000 {
                match txn.insert(def.oid, row.clone()).await? {
                    InsertOutcome::Inserted => {
                        res.count += 1;
                        if !self.returning.columns.is_empty() {
                            res.rows.push(self.returning.row(&row, cx)?);
                        }
                        break;
                    }
                    InsertOutcome::Conflict { same_command, .. } => match &self.conflict {
                        Conflict::Error => {
                            return Err(def.unique_violation(&def.key_of(&row)).into())
                        }
                        Conflict::Nothing => break,
                        Conflict::Update { sets, filter } => {
                            if same_command {
                                return Err(EngineError::CardinalityViolation.into());
                            }
                            let key = def.key_of(&row);
                            let outcome = txn
                                .modify_row(
                                    def.oid,
                                    &key,
                                    |cur: &Vec<Value>| -> SqlResult<RowAction> {
                                        let mut both = cur.clone();
                                        both.extend(row.iter().cloned());
                                        if !passes(filter, &both, cx)? {
                                            return Ok(RowAction::Skip);
                                        }
                                        Ok(RowAction::Update(apply_sets(
                                            sets, def, cur, &both, cx,
                                        )?))
                                    },
                                )
                                .await?;
                            match outcome {
                                RowOutcome::Updated { new, .. } => {
                                    res.count += 1;
                                    if !self.returning.columns.is_empty() {
                                        res.rows.push(self.returning.row(&new, cx)?);
                                    }
                                    break;
                                }
                                RowOutcome::Gone => continue,
                                RowOutcome::SelfModified => {
                                    return Err(EngineError::CardinalityViolation.into())
                                }
                                _ => break,
                            }
                        }
                    },
                }
            }
        }
        Ok(res)
    }
}

fn defaults(def: &TableDef) -> Vec<Value> {
    def.columns.iter().map(|c| c.default.clone().unwrap_or(Value::Null)).collect()
}

impl ModifyPlan {
    /// The table.
    pub fn table(&self) -> &TableDef {
        &self.def
    }

    /// Runs the UPDATE or DELETE.
    ///
    /// # Errors
    /// 23505, 23502, casts' errors, 40P01.
    pub async fn run(&self, txn: &mut Txn, cx: &EvalCtx<'_>) -> SqlResult<DmlResult> {
        let def = &self.def;
        let rows = scan_filtered(txn, def, &self.filter, &self.lower, &self.upper, cx)?;
        let mut res = DmlResult::default();
        for row in rows {
            // CHECK_FOR_INTERRUPTS, as in INSERT.
            tokio::task::consume_budget().await;
            let key = def.key_of(&row);
            let outcome = txn
                .modify_row(def.oid, &key, |cur: &Vec<Value>| -> SqlResult<RowAction> {
                    if !passes(&self.filter, cur, cx)? {
                        return Ok(RowAction::Skip);
                    }
                    Ok(match &self.sets {
                        None => RowAction::Delete,
                        Some(sets) => RowAction::Update(apply_sets(sets, def, cur, cur, cx)?),
                    })
                })
                .await?;
            let out = match outcome {
                RowOutcome::Updated { new, .. } => new,
                RowOutcome::Deleted(old) => old,
                _ => continue,
            };
            res.count += 1;
            if !self.returning.columns.is_empty() {
                res.rows.push(self.returning.row(&out, cx)?);
            }
        }
        Ok(res)
    }
}
