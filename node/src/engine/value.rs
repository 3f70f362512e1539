//! SQL values and types with PostgreSQL 15's text input and output functions.

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::error::EngineError;
use super::time;

/// A column type (`pg_type` of PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlType {
    /// `boolean` (16).
    Bool,
    /// `smallint` (21).
    Int2,
    /// `integer` (23).
    Int4,
    /// `bigint` (20).
    Int8,
    /// `double precision` (701).
    Float8,
    /// `text` (25).
    Text,
    /// `character varying(n)` (1043); `None` has no limit.
    Varchar(Option<u32>),
    /// `bytea` (17).
    Bytea,
    /// `timestamp with time zone` (1184).
    Timestamptz,
    /// `numeric` (1700): only produced by `avg`/`sum` of integers, held as text.
    Numeric,
    /// `void` (2278): what `pg_sleep` returns.
    Void,
    /// A literal of unknown type (705), as PostgreSQL types `SELECT 'a'`.
    Unknown,
    /// `pg_lsn` (3220): values are [`Value::Int8`] holding the LSN's bits.
    PgLsn,
    /// A type only the server's functions and views return (`name`, `oid`, `inet`,
    /// `interval`, `xid`, `record`): values are [`Value::Text`] in its output form.
    Other {
        /// The type's oid.
        oid: u32,
        /// `pg_type.typlen`.
        typlen: i16,
        /// Its name.
        name: &'static str,
    },
}

impl SqlType {
    /// The type's oid.
    pub fn oid(self) -> u32 {
        match self {
            SqlType::Bool => 16,
            SqlType::Int2 => 21,
            SqlType::Int4 => 23,
            SqlType::Int8 => 20,
            SqlType::Float8 => 701,
            SqlType::Text => 25,
            SqlType::Varchar(_) => 1043,
            SqlType::Bytea => 17,
            SqlType::Timestamptz => 1184,
            SqlType::Numeric => 1700,
            SqlType::Void => 2278,
            SqlType::Unknown => 705,
            SqlType::PgLsn => 3220,
            SqlType::Other { oid, .. } => oid,
        }
    }

    /// `pg_type.typlen`.
    pub fn typlen(self) -> i16 {
        match self {
            SqlType::Bool => 1,
            SqlType::Int2 => 2,
            SqlType::Int4 | SqlType::Void => 4,
            SqlType::Int8 | SqlType::Float8 | SqlType::Timestamptz | SqlType::PgLsn => 8,
            SqlType::Unknown => -2,
            SqlType::Other { typlen, .. } => typlen,
            _ => -1,
        }
    }

    /// The type's name in PostgreSQL's messages (`format_type`).
    pub fn name(self) -> String {
        match self {
            SqlType::Bool => "boolean".into(),
            SqlType::Int2 => "smallint".into(),
            SqlType::Int4 => "integer".into(),
            SqlType::Int8 => "bigint".into(),
            SqlType::Float8 => "double precision".into(),
            SqlType::Text => "text".into(),
            SqlType::Varchar(None) => "character varying".into(),
            SqlType::Varchar(Some(n)) => format!("character varying({n})"),
            SqlType::Bytea => "bytea".into(),
            SqlType::Timestamptz => "timestamp with time zone".into(),
            SqlType::Numeric => "numeric".into(),
            SqlType::Void => "void".into(),
            SqlType::Unknown => "unknown".into(),
            SqlType::PgLsn => "pg_lsn".into(),
            SqlType::Other { name, .. } => name.into(),
        }
    }

    /// The type's name without its modifier (`format_type_be`), as messages about
    /// operators, functions and assignments write it.
    pub fn base_name(self) -> String {
        match self {
            SqlType::Varchar(_) => "character varying".into(),
            t => t.name(),
        }
    }

    /// Whether the type is one of the integer types.
    pub fn is_integer(self) -> bool {
        matches!(self, SqlType::Int2 | SqlType::Int4 | SqlType::Int8)
    }

    /// Whether the type is a string type.
    pub fn is_string(self) -> bool {
        matches!(self, SqlType::Text | SqlType::Varchar(_) | SqlType::Unknown)
    }

    /// The code of this type in [`super::Change`] and image payloads.
    pub(crate) fn code(self) -> (u8, u32) {
        match self {
            SqlType::Bool => (1, 0),
            SqlType::Int2 => (2, 0),
            SqlType::Int4 => (3, 0),
            SqlType::Int8 => (4, 0),
            SqlType::Float8 => (5, 0),
            SqlType::Text => (6, 0),
            SqlType::Varchar(None) => (7, 0),
            SqlType::Varchar(Some(n)) => (8, n),
            SqlType::Bytea => (9, 0),
            SqlType::Timestamptz => (10, 0),
            SqlType::Numeric => (11, 0),
            SqlType::Void => (12, 0),
            SqlType::Unknown => (13, 0),
            SqlType::PgLsn => (14, 0),
            SqlType::Other { oid, .. } => (15, oid),
        }
    }

    /// The type with code `c` and modifier `m`, if known.
    pub(crate) fn from_code(c: u8, m: u32) -> Option<SqlType> {
        Some(match c {
            1 => SqlType::Bool,
            2 => SqlType::Int2,
            3 => SqlType::Int4,
            4 => SqlType::Int8,
            5 => SqlType::Float8,
            6 => SqlType::Text,
            7 => SqlType::Varchar(None),
            8 => SqlType::Varchar(Some(m)),
            9 => SqlType::Bytea,
            10 => SqlType::Timestamptz,
            11 => SqlType::Numeric,
            12 => SqlType::Void,
            13 => SqlType::Unknown,
            14 => SqlType::PgLsn,
            _ => return None,
        })
    }
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// `boolean`.
    Bool(bool),
    /// `smallint`.
    Int2(i16),
    /// `integer`.
    Int4(i32),
    /// `bigint`.
    Int8(i64),
    /// `double precision`.
    Float8(f64),
    /// `text`, `varchar` and unknown literals.
    Text(String),
    /// `bytea`.
    Bytea(Vec<u8>),
    /// `timestamptz`: microseconds since 2000-01-01 00:00:00 UTC.
    Timestamptz(i64),
    /// `numeric`, in its text form.
    Numeric(String),
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    /// A total order: NULL sorts last (as PostgreSQL's default ASC), integers compare
    /// across widths, floats as PostgreSQL's float8 (NaN above everything).
    fn cmp(&self, other: &Self) -> Ordering {
        use Value::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Greater,
            (_, Null) => Ordering::Less,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (Bytea(a), Bytea(b)) => a.cmp(b),
            (Timestamptz(a), Timestamptz(b)) => a.cmp(b),
            (Float8(a), Float8(b)) => float_cmp(*a, *b),
            _ => match (self.as_i64(), other.as_i64()) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => match (self.as_f64(), other.as_f64()) {
                    (Some(a), Some(b)) => float_cmp(a, b),
                    _ => self.rank().cmp(&other.rank()),
                },
            },
        }
    }
}

/// float.c: float8_cmp_internal, NaN equal to NaN and greater than all else.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 9,
            Value::Bool(_) => 0,
            Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => 1,
            Value::Float8(_) | Value::Numeric(_) => 2,
            Value::Text(_) => 3,
            Value::Bytea(_) => 4,
            Value::Timestamptz(_) => 5,
        }
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as an i64, if it is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int2(v) => Some(i64::from(*v)),
            Value::Int4(v) => Some(i64::from(*v)),
            Value::Int8(v) => Some(*v),
            _ => None,
        }
    }

    /// The value as an f64, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float8(v) => Some(*v),
            Value::Numeric(s) => s.parse().ok(),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value's text output (PostgreSQL's `typoutput`), `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Value::Int2(v) => v.to_string(),
            Value::Int4(v) => v.to_string(),
            Value::Int8(v) => v.to_string(),
            Value::Float8(v) => float8_out(*v),
            Value::Text(s) | Value::Numeric(s) => s.clone(),
            Value::Bytea(b) => bytea_out(b),
            Value::Timestamptz(t) => time::timestamptz_out(*t),
        })
    }

    /// The text as PostgreSQL shows it in `Failing row contains (...)` and key details.
    pub fn display(&self) -> String {
        self.to_text().unwrap_or_else(|| "null".to_string())
    }
}

/// The value of `ty` written `s` in text (PostgreSQL's `typinput`).
///
/// # Errors
/// PostgreSQL's input errors: 22P02 invalid syntax, 22003 out of range, 22001 too long.
pub fn parse_text(ty: SqlType, s: &str) -> Result<Value, EngineError> {
    Ok(match ty {
        SqlType::Bool => Value::Bool(bool_in(s)?),
        SqlType::Int2 => Value::Int2(int_in(s, ty)? as i16),
        SqlType::Int4 => Value::Int4(int_in(s, ty)? as i32),
        SqlType::Int8 => Value::Int8(int_in(s, ty)?),
        SqlType::Float8 => Value::Float8(float8_in(s)?),
        SqlType::Text | SqlType::Unknown => Value::Text(s.to_string()),
        SqlType::Varchar(n) => Value::Text(varchar_in(s, n, false)?),
        SqlType::Bytea => Value::Bytea(bytea_in(s)?),
        SqlType::Timestamptz => Value::Timestamptz(time::timestamptz_in(s)?),
        SqlType::Numeric => {
            let v: f64 = s.trim().parse().map_err(|_| invalid(ty, s))?;
            Value::Numeric(if v.is_finite() { s.trim().to_string() } else { float8_out(v) })
        }
        SqlType::Void => Value::Null,
        SqlType::PgLsn => Value::Int8(pg_lsn_in(s).ok_or_else(|| invalid(ty, s))? as i64),
        SqlType::Other { .. } => Value::Text(s.to_string()),
    })
}

fn invalid(ty: SqlType, s: &str) -> EngineError {
    EngineError::InvalidText { ty: ty.name(), input: s.to_string() }
}

/// pg_lsn.c: pg_lsn_in_internal: `X/Y`, each 1 to 8 hex digits.
fn pg_lsn_in(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    let ok = |p: &str| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok(hi) || !ok(lo) {
        return None;
    }
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// pg_lsn.c: pg_lsn_out.
pub fn pg_lsn_out(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// numutils.c: pg_strtoint16/32/64, with the range of `ty`.
fn int_in(s: &str, ty: SqlType) -> Result<i64, EngineError> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(ty, s));
    }
    let mut v: i128 = 0;
    for b in digits.bytes() {
        v = v * 10 + i128::from(b - b'0');
        if v > i128::from(u64::MAX) {
            break;
        }
    }
    if neg {
        v = -v;
    }
    let (lo, hi) = match ty {
        SqlType::Int2 => (i128::from(i16::MIN), i128::from(i16::MAX)),
        SqlType::Int4 => (i128::from(i32::MIN), i128::from(i32::MAX)),
        _ => (i128::from(i64::MIN), i128::from(i64::MAX)),
    };
    if v < lo || v > hi {
        return Err(EngineError::InputOutOfRange { ty: ty.name(), input: s.to_string() });
    }
    Ok(v as i64)
}

/// bool.c: parse_bool_with_len.
fn bool_in(s: &str) -> Result<bool, EngineError> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace()).to_ascii_lowercase();
    let prefix = |w: &str, min: usize| t.len() >= min && w.starts_with(t.as_str());
    if prefix("true", 1) || prefix("yes", 1) || prefix("on", 2) || t == "1" {
        Ok(true)
    } else if prefix("false", 1) || prefix("no", 1) || prefix("off", 2) || t == "0" {
        Ok(false)
    } else {
        Err(invalid(SqlType::Bool, s))
    }
}

/// float.c: float8in_internal.
fn float8_in(s: &str) -> Result<f64, EngineError> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let lower = t.to_ascii_lowercase();
    let special = match lower.trim_start_matches(['+', '-']) {
        "nan" if !lower.starts_with(['+', '-']) => Some(f64::NAN),
        "infinity" | "inf" => Some(f64::INFINITY),
        _ => None,
    };
    if let Some(v) = special {
        return Ok(if lower.starts_with('-') { -v } else { v });
    }
    let ok_chars = t.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    let v: f64 = match t.parse() {
        Ok(v) if ok_chars && !t.is_empty() => v,
        _ => return Err(invalid(SqlType::Float8, s)),
    };
    let nonzero_digits =
        t.split(['e', 'E']).next().unwrap_or("").bytes().any(|b| (b'1'..=b'9').contains(&b));
    if v.is_infinite() || (v == 0.0 && nonzero_digits) {
        return Err(EngineError::FloatOutOfRange { input: t.to_string() });
    }
    Ok(v)
}

/// float.c: float8out with extra_float_digits = 1 (one implementation, the protocol's).
pub use walstream_protocol::text::float8_out;

/// varchar.c: varchar_input (`explicit` casts truncate instead of failing).
pub fn varchar_in(s: &str, n: Option<u32>, explicit: bool) -> Result<String, EngineError> {
    let Some(n) = n else { return Ok(s.to_string()) };
    let n = n as usize;
    if s.chars().count() <= n {
        return Ok(s.to_string());
    }
    let cut: String = s.chars().take(n).collect();
    if explicit || s.chars().skip(n).all(|c| c == ' ') {
        return Ok(cut);
    }
    Err(EngineError::StringTooLong { n: n as u32 })
}

/// varlena.c: byteain (hex and escape formats).
fn bytea_in(s: &str) -> Result<Vec<u8>, EngineError> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut digits = hex.chars().filter(|c| !c.is_ascii_whitespace());
        while let Some(h) = digits.next() {
            let hi = h.to_digit(16).ok_or(EngineError::InvalidHexDigit { digit: h })?;
            let l = digits.next().ok_or(EngineError::OddHexDigits)?;
            let lo = l.to_digit(16).ok_or(EngineError::InvalidHexDigit { digit: l })?;
            out.push((hi * 16 + lo) as u8);
        }
        return Ok(out);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4).filter(|o| {
                (b'0'..=b'3').contains(&o[0]) && o[1..].iter().all(|c| (b'0'..=b'7').contains(c))
            });
            let o = oct.ok_or_else(|| invalid(SqlType::Bytea, s))?;
            out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

/// varlena.c: byteaout with bytea_output = hex.
fn bytea_out(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn int_input_errors_name_the_type() {
        let e = parse_text(SqlType::Int4, "abc").unwrap_err();
        assert_eq!(e.to_string(), "invalid input syntax for type integer: \"abc\"");
        let e = parse_text(SqlType::Int4, "99999999999").unwrap_err();
        assert_eq!(e.to_string(), "value \"99999999999\" is out of range for type integer");
        assert_eq!(parse_text(SqlType::Int2, " -32768 ").unwrap(), Value::Int2(-32768));
    }

    #[test]
    fn bool_prefixes() {
        for (s, v) in [("t", true), ("TRUE", true), ("on", true), ("of", false), ("n", false)] {
            assert_eq!(parse_text(SqlType::Bool, s).unwrap(), Value::Bool(v), "{s}");
        }
        assert!(parse_text(SqlType::Bool, "o").is_err());
    }

    #[test]
    fn float8_output_matches_postgres_forms() {
        assert_eq!(float8_out(1e20), "1e+20");
        assert_eq!(float8_out(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float8_out(1.5e-5), "1.5e-05");
        assert_eq!(float8_out(123456789012345.0), "123456789012345");
        assert_eq!(float8_out(1234567890123456.0), "1.234567890123456e+15");
        assert_eq!(float8_out(0.0001), "0.0001");
    }

    proptest! {
        #[test]
        fn float8_text_round_trips(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
            let back = parse_text(SqlType::Float8, &float8_out(v)).unwrap();
            prop_assert_eq!(back, Value::Float8(v));
        }

        #[test]
        fn int8_text_round_trips(v in any::<i64>()) {
            let t = Value::Int8(v).to_text().unwrap();
            prop_assert_eq!(parse_text(SqlType::Int8, &t).unwrap(), Value::Int8(v));
        }

        #[test]
        fn bytea_text_round_trips(v in proptest::collection::vec(any::<u8>(), 0..40)) {
            let t = Value::Bytea(v.clone()).to_text().unwrap();
            prop_assert_eq!(parse_text(SqlType::Bytea, &t).unwrap(), Value::Bytea(v));
        }

        #[test]
        fn timestamptz_text_round_trips(v in -60_000_000_000_000_000i64..250_000_000_000_000_000) {
            let t = Value::Timestamptz(v).to_text().unwrap();
            prop_assert_eq!(parse_text(SqlType::Timestamptz, &t).unwrap(), Value::Timestamptz(v));
        }
    }
}
