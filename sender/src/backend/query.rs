//! The [`QueryHandler`] trait that answers ordinary SQL, and the values it answers with.
//!
//! The backend loop owns the protocol (statements, portals, formats, errors); a handler
//! only runs SQL text. Values are [`Datum`]s of a few built-in types, which the loop
//! encodes in text or binary as the client asked (`Bind` result formats).

use std::future::Future;
use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use walstream_protocol::text;
use walstream_protocol::wire::{
    sqlstate, BackendMessage, CopyResponse, ErrorFields, FieldDescription, TransactionStatus,
};

/// A boxed future borrowed from the session, as the handler methods return.
pub type HandlerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who a session is, handed to [`QueryHandler::session`].
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The backend's pid.
    pub pid: i32,
    /// The authenticated user.
    pub user: String,
    /// The database.
    pub database: String,
    /// `application_name`.
    pub application_name: String,
    /// Run-time parameters of the startup packet and of its `options` (`-c name=value`),
    /// in order, applied as the session's own settings.
    pub settings: Vec<(String, String)>,
}

/// Makes one [`QuerySession`] per connection.
pub trait QueryHandler: Send + Sync + 'static {
    /// A new session for a connection that finished its startup.
    fn session(&self, info: &SessionInfo) -> Box<dyn QuerySession>;

    /// Checks the startup packet's run-time parameters (`postinit.c:
    /// process_startup_options`): the FATAL for one that is unknown or invalid. The
    /// default accepts everything.
    ///
    /// # Errors
    /// The FATAL the connection ends with.
    fn check_startup_settings(&self, _settings: &[(String, String)]) -> Result<(), ErrorFields> {
        Ok(())
    }
}

/// The SQL side of one connection.
pub trait QuerySession: Send {
    /// `Q`: runs every statement of `sql` in order, stopping at the first error.
    fn simple_query<'a>(&'a mut self, sql: &'a str) -> HandlerFuture<'a, SimpleQueryResult>;

    /// `P` and `D`: what one statement takes and returns.
    fn describe<'a>(
        &'a mut self,
        sql: &'a str,
        param_types: &'a [u32],
    ) -> HandlerFuture<'a, Result<StatementDescription, ErrorFields>>;

    /// `B`'s look at a prepared statement before it runs again (`GetCachedPlan` →
    /// `RevalidateCachedQuery`): `param_types` and `columns` are what its Parse
    /// described. An error fails the Bind: the statement's tables are gone, or its result
    /// would no longer be `columns` (0A000 `cached plan must not change result type`).
    fn revalidate<'a>(
        &'a mut self,
        _sql: &'a str,
        _param_types: &'a [u32],
        _columns: Option<&'a [Column]>,
    ) -> HandlerFuture<'a, Result<(), ErrorFields>> {
        Box::pin(async { Ok(()) })
    }

    /// `E`: runs one statement with bound parameters.
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Param],
    ) -> HandlerFuture<'a, Result<QueryOutput, ErrorFields>>;

    /// The session ended its connection from inside a command (a terminate request
    /// during the wait for synchronous replication): the loop writes what is queued and
    /// ends, sending nothing more.
    fn exit_requested(&self) -> bool {
        false
    }

    /// The WARNINGs and NOTICEs the last [`QuerySession::execute`] raised, taken: the
    /// extended protocol sends them before the statement's result, as PostgreSQL sends
    /// them when raised.
    fn take_notices(&mut self) -> Vec<ErrorFields> {
        Vec::new()
    }

    /// `S`: ends the extended protocol's implicit transaction (`finish_xact_command`),
    /// before ReadyForQuery.
    fn sync(&mut self) -> HandlerFuture<'_, Result<(), ErrorFields>> {
        Box::pin(async { Ok(()) })
    }

    /// `idle_in_transaction_session_timeout` when set (asked only while the session is
    /// idle in a transaction block).
    fn idle_in_transaction_timeout(&self) -> Option<std::time::Duration> {
        None
    }

    /// The transaction status ReadyForQuery reports.
    fn transaction_status(&self) -> TransactionStatus {
        TransactionStatus::Idle
    }
}

/// What `Q` produced: the outputs of the statements that ran, then the error that
/// stopped it, if one did.
#[derive(Debug, Clone, Default)]
pub struct SimpleQueryResult {
    /// One output per statement that completed.
    pub outputs: Vec<QueryOutput>,
    /// The error of the statement that failed.
    pub error: Option<ErrorFields>,
}

/// The output of one statement.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryOutput {
    /// An empty query string (EmptyQueryResponse).
    Empty,
    /// A WARNING or NOTICE raised along the way (NoticeResponse); in the extended
    /// protocol only the statement's result is sent.
    Notice(Box<ErrorFields>),
    /// A statement that returns no rows: its command tag (`CREATE TABLE`, `INSERT 0 1`).
    Command(String),
    /// A statement that returns rows.
    Rows {
        /// The columns.
        columns: Vec<Column>,
        /// The rows, each as long as `columns`.
        rows: Vec<Vec<Datum>>,
        /// Its command tag (`SELECT 3`, `SHOW`).
        tag: String,
    },
    /// `COPY ... TO STDOUT` in text format: CopyOutResponse, one CopyData per line,
    /// CopyDone, then `COPY n`.
    CopyOut {
        /// How many columns each line has.
        columns: usize,
        /// The lines, each ending in a newline.
        lines: Vec<Bytes>,
    },
}

impl QueryOutput {
    /// The messages of a `COPY ... TO STDOUT` (`copyto.c`: text format).
    pub fn copy_out_messages(columns: usize, lines: Vec<Bytes>) -> Vec<BackendMessage> {
        let n = lines.len();
        let mut out = Vec::with_capacity(n + 3);
        out.push(BackendMessage::CopyOutResponse(CopyResponse {
            format: 0,
            column_formats: vec![0; columns],
        }));
        out.extend(lines.into_iter().map(BackendMessage::CopyData));
        out.push(BackendMessage::CopyDone);
        out.push(BackendMessage::CommandComplete(format!("COPY {n}")));
        out
    }
}

/// What `P` / `D` learn about a statement.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementDescription {
    /// Parameter type oids.
    pub params: Vec<u32>,
    /// Result columns; `None` when the statement returns no rows (NoData).
    pub columns: Option<Vec<Column>>,
}

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: DatumType,
}

impl Column {
    /// A column.
    pub fn new(name: impl Into<String>, ty: DatumType) -> Column {
        Column { name: name.into(), ty }
    }

    /// Its RowDescription field, in `format` (0 text, 1 binary).
    pub fn field(&self, format: i16) -> FieldDescription {
        let mut f = FieldDescription::new(self.name.clone(), self.ty.oid(), self.ty.typlen());
        f.format = format;
        f
    }
}

/// The types a handler can return (`pg_type` oids of PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatumType {
    /// `bool` (16).
    Bool,
    /// `bytea` (17).
    Bytea,
    /// `int8` (20).
    Int8,
    /// `int4` (23).
    Int4,
    /// `text` (25).
    Text,
    /// `int2` (21).
    Int2,
    /// `float8` (701).
    Float8,
    /// `varchar` (1043): values are [`Datum::Text`].
    Varchar,
    /// `timestamptz` (1184).
    Timestamptz,
    /// `numeric` (1700): values are [`Datum::Numeric`].
    Numeric,
    /// `pg_lsn` (3220): values are [`Datum::PgLsn`]; its binary form is an int8.
    PgLsn,
    /// `name` (19): values are [`Datum::Text`]; its binary form is the text's bytes.
    Name,
    /// A type written in text only (`oid`, `inet`, `pg_lsn`, `timestamptz`, `interval`,
    /// `xid`, `name`); its values are [`Datum::Text`] and binary output is refused.
    TextOnly {
        /// The type's oid.
        oid: u32,
        /// `pg_type.typlen`.
        typlen: i16,
        /// The type's name, for the error a binary request gets.
        name: &'static str,
    },
}

impl DatumType {
    /// The type's oid.
    pub fn oid(self) -> u32 {
        match self {
            DatumType::Bool => 16,
            DatumType::Bytea => 17,
            DatumType::Int8 => 20,
            DatumType::Int4 => 23,
            DatumType::Text => 25,
            DatumType::Int2 => 21,
            DatumType::Float8 => 701,
            DatumType::Varchar => 1043,
            DatumType::Timestamptz => 1184,
            DatumType::Numeric => 1700,
            DatumType::PgLsn => 3220,
            DatumType::Name => 19,
            DatumType::TextOnly { oid, .. } => oid,
        }
    }

    /// The error PostgreSQL gives when a client asks for this type in binary, if it
    /// cannot be sent so.
    pub fn binary_unsupported(self) -> Option<ErrorFields> {
        match self {
            DatumType::TextOnly { name, .. } => Some(ErrorFields::error(
                sqlstate::UNDEFINED_FUNCTION,
                format!("no binary output function available for type {name}"),
            )),
            _ => None,
        }
    }

    /// `pg_type.typlen`.
    pub fn typlen(self) -> i16 {
        match self {
            DatumType::Bool => 1,
            DatumType::Int2 => 2,
            DatumType::Int8 | DatumType::Float8 | DatumType::Timestamptz | DatumType::PgLsn => 8,
            DatumType::Int4 => 4,
            DatumType::Bytea | DatumType::Text | DatumType::Varchar | DatumType::Numeric => -1,
            DatumType::Name => 64,
            DatumType::TextOnly { typlen, .. } => typlen,
        }
    }
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// SQL NULL.
    Null,
    /// `bool`.
    Bool(bool),
    /// `int4`.
    Int4(i32),
    /// `int8`.
    Int8(i64),
    /// `text`.
    Text(String),
    /// `bytea`.
    Bytea(Bytes),
    /// `int2`.
    Int2(i16),
    /// `float8`.
    Float8(f64),
    /// `timestamptz`: microseconds since 2000-01-01 00:00:00 UTC.
    Timestamptz(i64),
    /// `numeric`, in its text form.
    Numeric(String),
    /// `pg_lsn`.
    PgLsn(u64),
}

impl Datum {
    /// The value on the wire in `format` (0 text as the type's output function writes it,
    /// 1 binary as its send function does); `None` for NULL.
    pub fn encode(&self, format: i16) -> Option<Bytes> {
        let binary = format == 1;
        Some(match self {
            Datum::Null => return None,
            Datum::Bool(b) if binary => Bytes::from(vec![u8::from(*b)]),
            Datum::Bool(b) => Bytes::from_static(if *b { b"t" } else { b"f" }),
            Datum::Int4(v) if binary => Bytes::copy_from_slice(&v.to_be_bytes()),
            Datum::Int4(v) => Bytes::from(v.to_string()),
            Datum::Int8(v) if binary => Bytes::copy_from_slice(&v.to_be_bytes()),
            Datum::Int8(v) => Bytes::from(v.to_string()),
            Datum::Text(s) => Bytes::from(s.clone()),
            Datum::Int2(v) if binary => Bytes::copy_from_slice(&v.to_be_bytes()),
            Datum::Int2(v) => Bytes::from(v.to_string()),
            Datum::Float8(v) if binary => Bytes::copy_from_slice(&v.to_bits().to_be_bytes()),
            Datum::Float8(v) => Bytes::from(text::float8_out(*v)),
            Datum::Timestamptz(v) if binary => Bytes::copy_from_slice(&v.to_be_bytes()),
            Datum::Timestamptz(v) => Bytes::from(text::timestamptz_out(*v)),
            Datum::Numeric(t) if binary => Bytes::from(text::numeric_send(t)?),
            Datum::Numeric(t) => Bytes::from(t.clone()),
            Datum::PgLsn(v) if binary => Bytes::copy_from_slice(&v.to_be_bytes()),
            Datum::PgLsn(v) => Bytes::from(format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)),
            Datum::Bytea(b) if binary => b.clone(),
            Datum::Bytea(b) => {
                // byteaout with bytea_output = hex
                let mut out = BytesMut::with_capacity(2 + b.len() * 2);
                out.put_slice(b"\\x");
                for byte in b.iter() {
                    out.put_slice(format!("{byte:02x}").as_bytes());
                }
                out.freeze()
            }
        })
    }
}

/// One bound parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Its type oid (0 when the client left it unspecified).
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
    /// The bytes; `None` is NULL.
    pub value: Option<Bytes>,
}

impl Param {
    /// The value as text, decoding the binary forms of the [`DatumType`]s.
    ///
    /// # Errors
    /// `22P03 incorrect binary data format in bind parameter N` for binary data of the
    /// wrong size or a type this server does not know, as PostgreSQL reports it.
    pub fn to_text(&self, index: usize) -> Result<Option<String>, ErrorFields> {
        let Some(v) = &self.value else { return Ok(None) };
        let bad = || {
            ErrorFields::error(
                sqlstate::INVALID_BINARY_REPRESENTATION,
                format!("incorrect binary data format in bind parameter {}", index + 1),
            )
        };
        if self.format == 0 {
            return String::from_utf8(v.to_vec()).map(Some).map_err(|_| {
                ErrorFields::error(
                    sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                    "invalid byte sequence for encoding \"UTF8\"",
                )
            });
        }
        let text = match self.type_oid {
            16 => match v.as_ref() {
                [b] => if *b != 0 { "t" } else { "f" }.to_string(),
                _ => return Err(bad()),
            },
            3220 => {
                let v = u64::from_be_bytes(v.as_ref().try_into().map_err(|_| bad())?);
                format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)
            }
            20 => i64::from_be_bytes(v.as_ref().try_into().map_err(|_| bad())?).to_string(),
            21 => i16::from_be_bytes(v.as_ref().try_into().map_err(|_| bad())?).to_string(),
            701 => text::float8_out(f64::from_bits(u64::from_be_bytes(
                v.as_ref().try_into().map_err(|_| bad())?,
            ))),
            1184 => {
                text::timestamptz_out(i64::from_be_bytes(v.as_ref().try_into().map_err(|_| bad())?))
            }
            23 => i32::from_be_bytes(v.as_ref().try_into().map_err(|_| bad())?).to_string(),
            25 | 1043 | 19 | 0 => String::from_utf8(v.to_vec()).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        Ok(Some(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datums_encode_as_postgresql_outputs_them() {
        assert_eq!(Datum::Int4(-7).encode(0).unwrap(), "-7");
        assert_eq!(Datum::Int4(1).encode(1).unwrap().as_ref(), &[0, 0, 0, 1]);
        assert_eq!(Datum::Bool(true).encode(0).unwrap(), "t");
        assert_eq!(Datum::Bytea(Bytes::from_static(b"\x01\xab")).encode(0).unwrap(), "\\x01ab");
        assert_eq!(Datum::Null.encode(1), None);
        assert_eq!(Datum::Int2(-2).encode(1).unwrap().as_ref(), &[0xff, 0xfe]);
        assert_eq!(Datum::Float8(1e20).encode(0).unwrap(), "1e+20");
        assert_eq!(Datum::Float8(1.0).encode(1).unwrap().as_ref(), &1f64.to_bits().to_be_bytes());
        assert_eq!(Datum::Timestamptz(0).encode(0).unwrap(), "2000-01-01 00:00:00+00");
        assert_eq!(Datum::Numeric("-0.5".into()).encode(0).unwrap(), "-0.5");
        assert_eq!(Datum::PgLsn(0x1_0000_00A8).encode(0).unwrap(), "1/A8");
        assert_eq!(Datum::PgLsn(1).encode(1).unwrap().as_ref(), &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            Datum::Numeric("-0.5".into()).encode(1).unwrap().as_ref(),
            &[0, 1, 0xff, 0xff, 0x40, 0, 0, 1, 0x13, 0x88]
        );
    }

    #[test]
    fn binary_params_decode_to_text() {
        let p = Param { type_oid: 23, format: 1, value: Some(Bytes::from_static(&[0, 0, 1, 0])) };
        assert_eq!(p.to_text(0).unwrap().as_deref(), Some("256"));
        let p = Param {
            type_oid: 701,
            format: 1,
            value: Some(Bytes::copy_from_slice(&2.5f64.to_bits().to_be_bytes())),
        };
        assert_eq!(p.to_text(0).unwrap().as_deref(), Some("2.5"));
        let p = Param { type_oid: 21, format: 1, value: Some(Bytes::from_static(&[0, 7])) };
        assert_eq!(p.to_text(0).unwrap().as_deref(), Some("7"));
        let p = Param { type_oid: 23, format: 1, value: Some(Bytes::from_static(&[1])) };
        assert_eq!(
            p.to_text(2).unwrap_err().message,
            "incorrect binary data format in bind parameter 3"
        );
    }
}
