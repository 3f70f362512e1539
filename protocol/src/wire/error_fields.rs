//! The fields of ErrorResponse (`E`) and NoticeResponse (`N`), written in the order of
//! `utils/error/elog.c: send_message_to_frontend`: S V C M D H W s t c d n P p q F L R.

use bytes::{BufMut, BytesMut};

use super::codec::{put_cstr, Reader};
use super::WireError;

/// A message severity, as PostgreSQL names it in the `S` and `V` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `ERROR`: the command failed; the session continues.
    Error,
    /// `FATAL`: the session ends.
    Fatal,
    /// `PANIC`: the server restarts.
    Panic,
    /// `WARNING`.
    Warning,
    /// `NOTICE`.
    Notice,
    /// `DEBUG`.
    Debug,
    /// `INFO`.
    Info,
    /// `LOG`.
    Log,
}

impl Severity {
    /// The non-localized name (`error_severity` in `elog.c`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Log => "LOG",
        }
    }

    /// The severity with this non-localized name.
    pub fn from_name(name: &str) -> Option<Severity> {
        [
            Severity::Error,
            Severity::Fatal,
            Severity::Panic,
            Severity::Warning,
            Severity::Notice,
            Severity::Debug,
            Severity::Info,
            Severity::Log,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether a message of this severity goes out as ErrorResponse (`E`) rather than
    /// NoticeResponse (`N`).
    pub fn is_error(self) -> bool {
        matches!(self, Severity::Error | Severity::Fatal | Severity::Panic)
    }
}

/// Every field of an ErrorResponse or NoticeResponse. Values that are not UTF-8 are
/// decoded lossily: a diagnostic is worth more than a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    /// `S`: severity, possibly localized.
    pub severity: String,
    /// `V`: severity, never localized.
    pub severity_nonlocalized: Option<String>,
    /// `C`: SQLSTATE.
    pub code: String,
    /// `M`: primary message.
    pub message: String,
    /// `D`: detail.
    pub detail: Option<String>,
    /// `H`: hint.
    pub hint: Option<String>,
    /// `W`: context (call stack).
    pub context: Option<String>,
    /// `s`: schema name.
    pub schema: Option<String>,
    /// `t`: table name.
    pub table: Option<String>,
    /// `c`: column name.
    pub column: Option<String>,
    /// `d`: data type name.
    pub datatype: Option<String>,
    /// `n`: constraint name.
    pub constraint: Option<String>,
    /// `P`: cursor position in the query string, 1-based, in decimal.
    pub position: Option<String>,
    /// `p`: position in an internally generated query, in decimal.
    pub internal_position: Option<String>,
    /// `q`: the internally generated query.
    pub internal_query: Option<String>,
    /// `F`: source file.
    pub file: Option<String>,
    /// `L`: source line, in decimal.
    pub line: Option<String>,
    /// `R`: source routine.
    pub routine: Option<String>,
    /// Fields with codes this version does not know, in the order received; written last.
    pub other: Vec<(u8, String)>,
}

impl ErrorFields {
    /// Fields with `S` and `V` set to `severity`, a SQLSTATE and a primary message.
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> ErrorFields {
        ErrorFields {
            severity: severity.as_str().to_owned(),
            severity_nonlocalized: Some(severity.as_str().to_owned()),
            code: code.to_owned(),
            message: message.into(),
            ..ErrorFields::default()
        }
    }

    /// An `ERROR`: the command fails, the session goes on.
    pub fn error(code: &str, message: impl Into<String>) -> ErrorFields {
        ErrorFields::new(Severity::Error, code, message)
    }

    /// A `FATAL`: the session ends after it.
    pub fn fatal(code: &str, message: impl Into<String>) -> ErrorFields {
        ErrorFields::new(Severity::Fatal, code, message)
    }

    /// The ErrorResponse PostgreSQL sends for a malformed message or startup packet.
    pub fn from_wire_error(error: &WireError, severity: Severity) -> ErrorFields {
        let fields = ErrorFields::new(severity, error.sqlstate(), error.to_string());
        match error.hint() {
            Some(hint) => fields.with_hint(hint),
            None => fields,
        }
    }

    /// With a `D` field.
    pub fn with_detail(mut self, detail: impl Into<String>) -> ErrorFields {
        self.detail = Some(detail.into());
        self
    }

    /// With an `H` field.
    pub fn with_hint(mut self, hint: impl Into<String>) -> ErrorFields {
        self.hint = Some(hint.into());
        self
    }

    /// With a `W` field.
    pub fn with_context(mut self, context: impl Into<String>) -> ErrorFields {
        self.context = Some(context.into());
        self
    }

    /// The severity, read from `V` if present, else from `S`.
    pub fn parsed_severity(&self) -> Option<Severity> {
        Severity::from_name(self.severity_nonlocalized.as_deref().unwrap_or(&self.severity))
    }

    /// The known fields in PostgreSQL's order, `None` where absent.
    fn known(&self) -> [(u8, Option<&str>); 18] {
        [
            (b'S', Some(&self.severity)),
            (b'V', Option::as_deref(&self.severity_nonlocalized)),
            (b'C', Some(&self.code)),
            (b'M', Some(&self.message)),
            (b'D', Option::as_deref(&self.detail)),
            (b'H', Option::as_deref(&self.hint)),
            (b'W', Option::as_deref(&self.context)),
            (b's', Option::as_deref(&self.schema)),
            (b't', Option::as_deref(&self.table)),
            (b'c', Option::as_deref(&self.column)),
            (b'd', Option::as_deref(&self.datatype)),
            (b'n', Option::as_deref(&self.constraint)),
            (b'P', Option::as_deref(&self.position)),
            (b'p', Option::as_deref(&self.internal_position)),
            (b'q', Option::as_deref(&self.internal_query)),
            (b'F', Option::as_deref(&self.file)),
            (b'L', Option::as_deref(&self.line)),
            (b'R', Option::as_deref(&self.routine)),
        ]
    }

    /// Where a known optional field is stored.
    fn slot(&mut self, code: u8) -> Option<&mut Option<String>> {
        Some(match code {
            b'V' => &mut self.severity_nonlocalized,
            b'D' => &mut self.detail,
            b'H' => &mut self.hint,
            b'W' => &mut self.context,
            b's' => &mut self.schema,
            b't' => &mut self.table,
            b'c' => &mut self.column,
            b'd' => &mut self.datatype,
            b'n' => &mut self.constraint,
            b'P' => &mut self.position,
            b'p' => &mut self.internal_position,
            b'q' => &mut self.internal_query,
            b'F' => &mut self.file,
            b'L' => &mut self.line,
            b'R' => &mut self.routine,
            _ => return None,
        })
    }

    /// Appends the message body: each field as code byte and C string, then a NUL.
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        let known = self.known().into_iter().filter_map(|(c, v)| v.map(|v| (c, v)));
        let other = self.other.iter().map(|(c, v)| (*c, v.as_str()));
        for (code, value) in known.chain(other).filter(|(c, _)| *c != 0) {
            buf.put_u8(code);
            put_cstr(buf, value.as_bytes());
        }
        buf.put_u8(0);
    }

    /// Reads a message body written by [`ErrorFields::encode_body`] or by PostgreSQL.
    pub(crate) fn parse_body(mut r: Reader) -> Result<ErrorFields, WireError> {
        let mut fields = ErrorFields::default();
        let (mut s, mut c, mut m) = (None, None, None);
        loop {
            let code = r.u8()?;
            if code == 0 {
                break;
            }
            let value = String::from_utf8_lossy(&r.cstr_bytes()?).into_owned();
            match code {
                b'S' => s = Some(value),
                b'C' => c = Some(value),
                b'M' => m = Some(value),
                _ => match fields.slot(code) {
                    Some(slot) => *slot = Some(value),
                    None => fields.other.push((code, value)),
                },
            }
        }
        r.finish()?;
        fields.severity = s.ok_or(WireError::MissingErrorField(b'S'))?;
        fields.code = c.ok_or(WireError::MissingErrorField(b'C'))?;
        fields.message = m.ok_or(WireError::MissingErrorField(b'M'))?;
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn terminate_backend_from_capture() {
        // proxy_cascade.log: the FATAL 57P01 a terminated walsender sends
        let body = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0Fpostgres.c\0L3211\0RProcessInterrupts\0\0";
        let f = ErrorFields::parse_body(Reader::new(b'E', Bytes::from_static(body))).unwrap();
        assert_eq!(f.code, "57P01");
        assert_eq!(f.parsed_severity(), Some(Severity::Fatal));
        assert_eq!(f.routine.as_deref(), Some("ProcessInterrupts"));
        let mut out = BytesMut::new();
        f.encode_body(&mut out);
        assert_eq!(&out[..], &body[..]);
    }

    #[test]
    fn fields_go_out_in_elog_order() {
        let mut f = ErrorFields::error("42601", "syntax error").with_hint("h").with_detail("d");
        f.position = Some("1".into());
        f.context = Some("w".into());
        f.file = Some("scan.l".into());
        f.other.push((b'Z', "z".into()));
        let mut out = BytesMut::new();
        f.encode_body(&mut out);
        let codes: Vec<u8> =
            out[..].split(|&b| b == 0).filter_map(|s| s.first().copied()).collect();
        assert_eq!(codes, b"SVCMDHWPFZ");
    }

    #[test]
    fn required_fields_are_checked() {
        let parse =
            |b: &'static [u8]| ErrorFields::parse_body(Reader::new(b'E', Bytes::from_static(b)));
        assert_eq!(parse(b"SERROR\0Mm\0\0"), Err(WireError::MissingErrorField(b'C')));
        assert_eq!(parse(b"SERROR\0C1\0Mm\0"), Err(WireError::InsufficientData { tag: b'E' }));
        assert_eq!(
            parse(b"SERROR\0C1\0Mm\0\0x"),
            Err(WireError::InvalidMessageFormat { tag: b'E' })
        );
        assert_eq!(parse(b"SERROR\0C1\0Mm"), Err(WireError::InvalidString { tag: b'E' }));
    }

    #[test]
    fn from_wire_error_carries_hint() {
        let e = WireError::InvalidReplicationParameter("maybe".into());
        let f = ErrorFields::from_wire_error(&e, Severity::Fatal);
        assert_eq!(f.code, "22023");
        assert_eq!(f.hint.as_deref(), e.hint());
    }
}
