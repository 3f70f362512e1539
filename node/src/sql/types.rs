//! Types as the SQL layer sees them: type names in SQL text, the sender's result types,
//! casts (explicit `::` and assignment), and the type checks of operators.

use walstream_protocol::wire::sqlstate;
use walstream_sender::backend::query::{Datum, DatumType};

use super::error::{err, unsupported, SqlResult};
use super::numeric::Dec;
use crate::engine::value::{float8_out, parse_text, pg_lsn_out, varchar_in};
use crate::engine::{SqlType, Value};

/// The type a type name in SQL text names (`int`, `varchar(10)`, `double precision`...).
///
/// # Errors
/// 42704 for a type PostgreSQL does not have, 0A000 for one the node does not store.
pub fn type_from_name(name: &str) -> SqlResult<SqlType> {
    let n = name.trim().to_ascii_lowercase();
    let (base, modifier) = match n.split_once('(') {
        Some((b, m)) => (b.trim().to_string(), m.trim_end_matches(')').trim().parse::<u32>().ok()),
        None => (n.clone(), None),
    };
    Ok(match base.as_str() {
        "int" | "integer" | "int4" => SqlType::Int4,
        "bigint" | "int8" => SqlType::Int8,
        "smallint" | "int2" => SqlType::Int2,
        "double precision" | "float8" | "float" | "real" | "float4" => SqlType::Float8,
        "text" => SqlType::Text,
        "varchar" | "character varying" => SqlType::Varchar(modifier),
        "bool" | "boolean" => SqlType::Bool,
        "bytea" => SqlType::Bytea,
        "timestamptz" | "timestamp with time zone" => SqlType::Timestamptz,
        "numeric" | "decimal" => SqlType::Numeric,
        "pg_lsn" => SqlType::PgLsn,
        "name" => SqlType::Other { oid: 19, typlen: 64, name: "name" },
        "oid" => SqlType::Other { oid: 26, typlen: 4, name: "oid" },
        "serial"
        | "serial4"
        | "bigserial"
        | "serial8"
        | "smallserial"
        | "serial2"
        | "char"
        | "character"
        | "bpchar"
        | "date"
        | "time"
        | "timestamp"
        | "interval"
        | "json"
        | "jsonb"
        | "uuid"
        | "inet"
        | "money"
        | "xml"
        | "regclass"
        | "timestamp without time zone" => return Err(unsupported(format!("type {base}"))),
        _ => {
            return Err(err(sqlstate::UNDEFINED_OBJECT, format!("type \"{base}\" does not exist")))
        }
    })
}

/// The sender's type for `ty`.
pub fn datum_type(ty: SqlType) -> DatumType {
    match ty {
        SqlType::Bool => DatumType::Bool,
        SqlType::Int2 => DatumType::Int2,
        SqlType::Int4 => DatumType::Int4,
        SqlType::Int8 => DatumType::Int8,
        SqlType::Float8 => DatumType::Float8,
        SqlType::Text | SqlType::Unknown => DatumType::Text,
        SqlType::Varchar(_) => DatumType::Varchar,
        SqlType::Bytea => DatumType::Bytea,
        SqlType::Timestamptz => DatumType::Timestamptz,
        SqlType::Numeric => DatumType::Numeric,
        SqlType::PgLsn => DatumType::PgLsn,
        SqlType::Void => DatumType::TextOnly { oid: 2278, typlen: 4, name: "void" },
        SqlType::Other { oid: 19, .. } => DatumType::Name,
        SqlType::Other { oid, typlen, name } => DatumType::TextOnly { oid, typlen, name },
    }
}

/// `v` (of type `ty`) as the sender's value.
pub fn to_datum(ty: SqlType, v: &Value) -> Datum {
    if v.is_null() {
        return Datum::Null;
    }
    match (ty, v) {
        (SqlType::Bool, Value::Bool(b)) => Datum::Bool(*b),
        (SqlType::Int2, _) => v.as_i64().map_or(Datum::Null, |i| Datum::Int2(i as i16)),
        (SqlType::Int4, _) => v.as_i64().map_or(Datum::Null, |i| Datum::Int4(i as i32)),
        (SqlType::Int8, _) => v.as_i64().map_or(Datum::Null, Datum::Int8),
        (SqlType::Float8, _) => v.as_f64().map_or(Datum::Null, Datum::Float8),
        (SqlType::Bytea, Value::Bytea(b)) => Datum::Bytea(b.clone().into()),
        (SqlType::Timestamptz, Value::Timestamptz(t)) => Datum::Timestamptz(*t),
        (SqlType::Numeric, _) => Datum::Numeric(v.to_text().unwrap_or_default()),
        (SqlType::PgLsn, _) => v.as_i64().map_or(Datum::Null, |i| Datum::PgLsn(i as u64)),
        (SqlType::Void, _) => Datum::Text(String::new()),
        _ => Datum::Text(text_out(ty, v).unwrap_or_default()),
    }
}

/// The text output of `v` as type `ty`; `None` for NULL.
pub fn text_out(ty: SqlType, v: &Value) -> Option<String> {
    match (ty, v) {
        (_, Value::Null) => None,
        (SqlType::PgLsn, _) => v.as_i64().map(|i| pg_lsn_out(i as u64)),
        (SqlType::Void, _) => Some(String::new()),
        _ => v.to_text(),
    }
}

/// Type categories, for operator resolution (`pg_type.typcategory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// B.
    Bool,
    /// N.
    Numeric,
    /// S (and unknown).
    String,
    /// U (bytea).
    Bytes,
    /// D.
    Time,
    /// pg_lsn, name ...
    Other(u32),
}

/// `ty`'s category.
pub fn category(ty: SqlType) -> Category {
    match ty {
        SqlType::Bool => Category::Bool,
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Float8 | SqlType::Numeric => {
            Category::Numeric
        }
        SqlType::Text | SqlType::Varchar(_) | SqlType::Unknown => Category::String,
        SqlType::Other { oid: 19, .. } => Category::String,
        SqlType::Bytea => Category::Bytes,
        SqlType::Timestamptz => Category::Time,
        other => Category::Other(other.oid()),
    }
}

/// The common type of two numeric types (int2 < int4 < int8 < numeric < float8).
pub fn numeric_common(a: SqlType, b: SqlType) -> SqlType {
    let rank = |t: SqlType| match t {
        SqlType::Int2 => 0,
        SqlType::Int4 => 1,
        SqlType::Int8 => 2,
        SqlType::Numeric => 3,
        _ => 4,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

fn range_error(ty: SqlType) -> super::error::SqlError {
    err(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, format!("{} out of range", ty.name()))
}

/// An integer `v` in `ty`'s range.
///
/// # Errors
/// 22003 `integer out of range`.
pub fn int_in_range(v: i128, ty: SqlType) -> SqlResult<Value> {
    Ok(match ty {
        SqlType::Int2 => Value::Int2(i16::try_from(v).map_err(|_| range_error(ty))?),
        SqlType::Int4 => Value::Int4(i32::try_from(v).map_err(|_| range_error(ty))?),
        _ => Value::Int8(i64::try_from(v).map_err(|_| range_error(SqlType::Int8))?),
    })
}

/// The value as an exact decimal, if it is an integer or numeric.
pub fn dec_of(v: &Value) -> Option<Dec> {
    match v {
        Value::Numeric(s) => Dec::parse(s),
        _ => v.as_i64().map(|i| Dec::int(i128::from(i))),
    }
}

/// Converts `v` of type `from` to `to`: `explicit` is a `::` cast (varchar truncates);
/// otherwise an assignment cast.
///
/// # Errors
/// The input function's errors (22P02, 22003, 22001); 42846 for a cast that does not
/// exist.
pub fn cast(v: Value, from: SqlType, to: SqlType, explicit: bool) -> SqlResult<Value> {
    if v.is_null() || from == to && !matches!(to, SqlType::Varchar(Some(_))) {
        return Ok(v);
    }
    let (cf, ct) = (category(from), category(to));
    match (cf, ct) {
        (Category::Numeric, Category::Numeric) => return numeric_cast(&v, to),
        (_, Category::String) => {
            let text = match &v {
                Value::Bool(b) => b.to_string(),
                v => text_out(from, v).unwrap_or_default(),
            };
            return Ok(match to {
                SqlType::Varchar(n) => Value::Text(varchar_in(&text, n, explicit)?),
                _ => Value::Text(text),
            });
        }
        (Category::String, _) => {
            let text = text_out(from, &v).unwrap_or_default();
            return Ok(parse_text(to, &text)?);
        }
        (Category::Numeric, Category::Bool) if explicit && from == SqlType::Int4 => {
            return Ok(Value::Bool(v.as_i64() != Some(0)));
        }
        (Category::Bool, Category::Numeric) if explicit && to == SqlType::Int4 => {
            return Ok(Value::Int4(i32::from(v == Value::Bool(true))));
        }
        _ => {}
    }
    if cf == ct {
        return Ok(v);
    }
    Err(err("42846", format!("cannot cast type {} to {}", from.name(), to.name())))
}

fn numeric_cast(v: &Value, to: SqlType) -> SqlResult<Value> {
    match to {
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => {
            let i: i128 = match v {
                Value::Float8(f) => {
                    let r = f.round_ties_even();
                    if !r.is_finite() || r.abs() > 9.3e18 {
                        return Err(range_error(to));
                    }
                    r as i128
                }
                Value::Numeric(s) => {
                    let d = Dec::parse(s).ok_or_else(|| range_error(to))?;
                    let p = 10i128.pow(d.scale.min(30));
                    let (q, r) = (d.m / p, d.m % p);
                    if r.abs() * 2 >= p && p > 1 {
                        q + d.m.signum()
                    } else {
                        q
                    }
                }
                _ => i128::from(v.as_i64().unwrap_or(0)),
            };
            int_in_range(i, to)
        }
        SqlType::Float8 => Ok(Value::Float8(v.as_f64().unwrap_or(0.0))),
        _ => Ok(Value::Numeric(match v {
            Value::Float8(f) => float8_out(*f),
            _ => v.to_text().unwrap_or_default(),
        })),
    }
}
