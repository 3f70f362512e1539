//! Messages a server sends: encoded by a server, parsed by a client. Length checks follow
//! libpq (`interfaces/libpq/fe-protocol3.c: pqParseInput3`).

use bytes::{BufMut, Bytes, BytesMut};

use super::auth::Authentication;
use super::codec::{put_count, put_cstr, put_nullable, take_frame, write_message, Reader};
use super::error_fields::ErrorFields;
use super::{WireError, PQ_LARGE_MESSAGE_LIMIT};

/// Largest length word libpq accepts for a message type that is not "long"
/// (`T`, `D`, `d`, `V`, `E`, `N`, `A` are long).
pub const LIBPQ_SHORT_MESSAGE_LIMIT: u32 = 30_000;

/// The transaction status in ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block.
    Failed,
}

impl TransactionStatus {
    /// The status byte.
    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// OID of the table it comes from, or 0.
    pub table_oid: u32,
    /// Attribute number in that table, or 0.
    pub column_id: i16,
    /// Type OID (25 text, 23 int4, 20 int8, 26 oid...).
    pub type_oid: u32,
    /// Type length (`pg_type.typlen`), -1 for varlena.
    pub type_size: i16,
    /// Type modifier (`pg_attribute.atttypmod`), -1 when none.
    pub type_modifier: i32,
    /// Format code: 0 text, 1 binary.
    pub format: i16,
}

impl FieldDescription {
    /// A text-format column of type `type_oid` with no table, as walsender describes its
    /// result columns (`typlen` as in `pg_type`, typmod -1).
    pub fn new(name: impl Into<String>, type_oid: u32, type_size: i16) -> FieldDescription {
        FieldDescription {
            name: name.into(),
            table_oid: 0,
            column_id: 0,
            type_oid,
            type_size,
            type_modifier: -1,
            format: 0,
        }
    }
}

/// The body of CopyInResponse, CopyOutResponse and CopyBothResponse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyResponse {
    /// Overall format: 0 text, 1 binary.
    pub format: u8,
    /// Per-column format codes.
    pub column_formats: Vec<i16>,
}

/// A message from server to client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    /// `R`: an authentication request or outcome.
    Authentication(Authentication),
    /// `K`: cancellation key data.
    BackendKeyData {
        /// Backend process id.
        pid: i32,
        /// Secret key for CancelRequest.
        secret_key: u32,
    },
    /// `S`: a run-time parameter's value.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
    },
    /// `Z`: ready for a new query.
    ReadyForQuery(TransactionStatus),
    /// `T`: the columns of the rows that follow.
    RowDescription(Vec<FieldDescription>),
    /// `D`: one row; `None` is NULL.
    DataRow(Vec<Option<Bytes>>),
    /// `C`: a command finished, with its tag (`SELECT 1`, `START_REPLICATION`...).
    CommandComplete(String),
    /// `I`: the query string was empty.
    EmptyQueryResponse,
    /// `E`: an error.
    ErrorResponse(ErrorFields),
    /// `N`: a notice or warning.
    NoticeResponse(ErrorFields),
    /// `1`.
    ParseComplete,
    /// `2`.
    BindComplete,
    /// `3`.
    CloseComplete,
    /// `n`: the statement returns no rows.
    NoData,
    /// `s`: Execute's row limit was reached.
    PortalSuspended,
    /// `t`: parameter type OIDs of a prepared statement.
    ParameterDescription(Vec<u32>),
    /// `G`: start of COPY FROM STDIN.
    CopyInResponse(CopyResponse),
    /// `H`: start of COPY TO STDOUT.
    CopyOutResponse(CopyResponse),
    /// `W`: start of both-way COPY (streaming replication: format 0, no columns).
    CopyBothResponse(CopyResponse),
    /// `d`: COPY data (in replication, a `w` or `k` sub-message).
    CopyData(Bytes),
    /// `c`: end of COPY data.
    CopyDone,
    /// `v`: the server does not support the requested minor version or `_pq_.` options.
    NegotiateProtocolVersion {
        /// The newest protocol version the server supports for the requested major
        /// version, as a full version number (PostgreSQL 15 sends 196608, i.e. 3.0).
        newest_version: u32,
        /// The `_pq_.` options it did not recognize.
        unrecognized_options: Vec<String>,
    },
    /// `A`: a NOTIFY.
    NotificationResponse {
        /// Notifying backend's process id.
        pid: i32,
        /// Channel name.
        channel: String,
        /// Payload.
        payload: String,
    },
    /// `V`: a fast-path function call's result; `None` is NULL.
    FunctionCallResponse(Option<Bytes>),
}

/// The length cap for a backend message type, or `None` for an unknown type.
fn limit_for(tag: u8) -> Option<u32> {
    match tag {
        b'T' | b'D' | b'd' | b'V' | b'E' | b'N' | b'A' => Some(PQ_LARGE_MESSAGE_LIMIT),
        b'R' | b'K' | b'S' | b'Z' | b'C' | b'I' | b'1' | b'2' | b'3' | b'n' | b's' | b't'
        | b'G' | b'H' | b'W' | b'c' | b'v' => Some(LIBPQ_SHORT_MESSAGE_LIMIT),
        _ => None,
    }
}

/// Parses one backend message off the front of `buf`.
///
/// `Ok(None)` when the message is not complete yet. Data payloads (CopyData, DataRow
/// columns, SASL data) share the buffer's storage: nothing is copied. This is the fuzz
/// entry point for backend messages.
///
/// # Errors
/// [`WireError::UnknownBackendType`], [`WireError::InvalidMessageLength`] (below 4, or
/// above 30000 for a short type as libpq checks), or a body error:
/// [`WireError::InsufficientData`], [`WireError::InvalidMessageFormat`],
/// [`WireError::InvalidString`], [`WireError::InvalidUtf8`],
/// [`WireError::UnknownAuthentication`], [`WireError::InvalidTransactionStatus`],
/// [`WireError::MissingErrorField`].
pub fn parse_backend(buf: &mut BytesMut) -> Result<Option<BackendMessage>, WireError> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    let max = limit_for(tag).ok_or(WireError::UnknownBackendType(tag))?;
    match take_frame(buf, max)? {
        None => Ok(None),
        Some(body) => parse_body(tag, Reader::new(tag, body)).map(Some),
    }
}

fn parse_body(tag: u8, mut r: Reader) -> Result<BackendMessage, WireError> {
    let message = match tag {
        b'R' => return Authentication::parse_body(r).map(BackendMessage::Authentication),
        b'E' => return ErrorFields::parse_body(r).map(BackendMessage::ErrorResponse),
        b'N' => return ErrorFields::parse_body(r).map(BackendMessage::NoticeResponse),
        b'K' => BackendMessage::BackendKeyData { pid: r.i32()?, secret_key: r.u32()? },
        b'S' => BackendMessage::ParameterStatus { name: r.cstr()?, value: r.cstr()? },
        b'Z' => BackendMessage::ReadyForQuery(transaction_status(r.u8()?)?),
        b'T' => {
            let n = r.u16()?.into();
            BackendMessage::RowDescription(r.many(n, 19, field_description)?)
        }
        b'D' => {
            let n = r.u16()?.into();
            BackendMessage::DataRow(r.many(n, 4, Reader::nullable)?)
        }
        b'C' => BackendMessage::CommandComplete(r.cstr()?),
        b'I' => BackendMessage::EmptyQueryResponse,
        b'1' => BackendMessage::ParseComplete,
        b'2' => BackendMessage::BindComplete,
        b'3' => BackendMessage::CloseComplete,
        b'n' => BackendMessage::NoData,
        b's' => BackendMessage::PortalSuspended,
        b't' => {
            let n = r.u16()?.into();
            BackendMessage::ParameterDescription(r.many(n, 4, Reader::u32)?)
        }
        b'G' => BackendMessage::CopyInResponse(copy_response(&mut r)?),
        b'H' => BackendMessage::CopyOutResponse(copy_response(&mut r)?),
        b'W' => BackendMessage::CopyBothResponse(copy_response(&mut r)?),
        b'd' => BackendMessage::CopyData(r.rest()),
        b'c' => BackendMessage::CopyDone,
        b'v' => negotiate_protocol_version(&mut r)?,
        b'A' => BackendMessage::NotificationResponse {
            pid: r.i32()?,
            channel: r.cstr()?,
            payload: r.cstr()?,
        },
        b'V' => BackendMessage::FunctionCallResponse(r.nullable()?),
        other => return Err(WireError::UnknownBackendType(other)),
    };
    r.finish()?;
    Ok(message)
}

fn transaction_status(byte: u8) -> Result<TransactionStatus, WireError> {
    match byte {
        b'I' => Ok(TransactionStatus::Idle),
        b'T' => Ok(TransactionStatus::InTransaction),
        b'E' => Ok(TransactionStatus::Failed),
        other => Err(WireError::InvalidTransactionStatus(other)),
    }
}

fn field_description(r: &mut Reader) -> Result<FieldDescription, WireError> {
    Ok(FieldDescription {
        name: r.cstr()?,
        table_oid: r.u32()?,
        column_id: r.i16()?,
        type_oid: r.u32()?,
        type_size: r.i16()?,
        type_modifier: r.i32()?,
        format: r.i16()?,
    })
}

fn copy_response(r: &mut Reader) -> Result<CopyResponse, WireError> {
    let format = r.u8()?;
    let n = r.u16()?.into();
    Ok(CopyResponse { format, column_formats: r.many(n, 2, Reader::i16)? })
}

fn negotiate_protocol_version(r: &mut Reader) -> Result<BackendMessage, WireError> {
    let newest_version = r.u32()?;
    let n = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
    Ok(BackendMessage::NegotiateProtocolVersion {
        newest_version,
        unrecognized_options: r.many(n, 1, Reader::cstr)?,
    })
}

/// Appends the 5-byte header of a CopyData carrying `payload_len` bytes, so a sender can
/// write the payload (e.g. WAL) from its own buffer without copying it into `buf`.
pub fn encode_copy_data_header(payload_len: usize, buf: &mut BytesMut) {
    buf.put_u8(b'd');
    buf.put_u32(u32::try_from(payload_len.saturating_add(4)).unwrap_or(u32::MAX));
}

impl BackendMessage {
    /// ErrorResponse or NoticeResponse, by the severity in `fields` (unknown → error).
    pub fn from_fields(fields: ErrorFields) -> BackendMessage {
        match fields.parsed_severity() {
            Some(s) if !s.is_error() => BackendMessage::NoticeResponse(fields),
            _ => BackendMessage::ErrorResponse(fields),
        }
    }

    /// The message type byte.
    pub fn tag(&self) -> u8 {
        match self {
            BackendMessage::Authentication(_) => b'R',
            BackendMessage::BackendKeyData { .. } => b'K',
            BackendMessage::ParameterStatus { .. } => b'S',
            BackendMessage::ReadyForQuery(_) => b'Z',
            BackendMessage::RowDescription(_) => b'T',
            BackendMessage::DataRow(_) => b'D',
            BackendMessage::CommandComplete(_) => b'C',
            BackendMessage::EmptyQueryResponse => b'I',
            BackendMessage::ErrorResponse(_) => b'E',
            BackendMessage::NoticeResponse(_) => b'N',
            BackendMessage::ParseComplete => b'1',
            BackendMessage::BindComplete => b'2',
            BackendMessage::CloseComplete => b'3',
            BackendMessage::NoData => b'n',
            BackendMessage::PortalSuspended => b's',
            BackendMessage::ParameterDescription(_) => b't',
            BackendMessage::CopyInResponse(_) => b'G',
            BackendMessage::CopyOutResponse(_) => b'H',
            BackendMessage::CopyBothResponse(_) => b'W',
            BackendMessage::CopyData(_) => b'd',
            BackendMessage::CopyDone => b'c',
            BackendMessage::NegotiateProtocolVersion { .. } => b'v',
            BackendMessage::NotificationResponse { .. } => b'A',
            BackendMessage::FunctionCallResponse(_) => b'V',
        }
    }

    /// Appends this message to `buf` (server side). Strings end at their first NUL.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_message(buf, Some(self.tag()), |b| self.encode_body(b));
    }

    fn encode_body(&self, b: &mut BytesMut) {
        match self {
            BackendMessage::Authentication(a) => a.encode_body(b),
            BackendMessage::BackendKeyData { pid, secret_key } => {
                b.put_i32(*pid);
                b.put_u32(*secret_key);
            }
            BackendMessage::ParameterStatus { name, value } => {
                put_cstr(b, name.as_bytes());
                put_cstr(b, value.as_bytes());
            }
            BackendMessage::ReadyForQuery(status) => b.put_u8(status.byte()),
            BackendMessage::RowDescription(fields) => {
                put_count(b, fields.len());
                fields.iter().for_each(|f| put_field_description(b, f));
            }
            BackendMessage::DataRow(columns) => {
                put_count(b, columns.len());
                columns.iter().for_each(|c| put_nullable(b, c.as_deref()));
            }
            BackendMessage::CommandComplete(tag) => put_cstr(b, tag.as_bytes()),
            BackendMessage::ErrorResponse(f) | BackendMessage::NoticeResponse(f) => {
                f.encode_body(b);
            }
            BackendMessage::ParameterDescription(oids) => {
                put_count(b, oids.len());
                oids.iter().for_each(|&o| b.put_u32(o));
            }
            BackendMessage::CopyInResponse(c)
            | BackendMessage::CopyOutResponse(c)
            | BackendMessage::CopyBothResponse(c) => {
                b.put_u8(c.format);
                put_count(b, c.column_formats.len());
                c.column_formats.iter().for_each(|&f| b.put_i16(f));
            }
            BackendMessage::CopyData(data) => b.put_slice(data),
            BackendMessage::NegotiateProtocolVersion { newest_version, unrecognized_options } => {
                b.put_u32(*newest_version);
                b.put_u32(u32::try_from(unrecognized_options.len()).unwrap_or(u32::MAX));
                unrecognized_options.iter().for_each(|o| put_cstr(b, o.as_bytes()));
            }
            BackendMessage::NotificationResponse { pid, channel, payload } => {
                b.put_i32(*pid);
                put_cstr(b, channel.as_bytes());
                put_cstr(b, payload.as_bytes());
            }
            BackendMessage::FunctionCallResponse(v) => put_nullable(b, v.as_deref()),
            BackendMessage::EmptyQueryResponse
            | BackendMessage::ParseComplete
            | BackendMessage::BindComplete
            | BackendMessage::CloseComplete
            | BackendMessage::NoData
            | BackendMessage::PortalSuspended
            | BackendMessage::CopyDone => {}
        }
    }
}

fn put_field_description(b: &mut BytesMut, f: &FieldDescription) {
    put_cstr(b, f.name.as_bytes());
    b.put_u32(f.table_oid);
    b.put_i16(f.column_id);
    b.put_u32(f.type_oid);
    b.put_i16(f.type_size);
    b.put_i32(f.type_modifier);
    b.put_i16(f.format);
}

#[cfg(test)]
mod tests {
    use super::super::error_fields::Severity;
    use super::*;

    fn encode(m: &BackendMessage) -> BytesMut {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        out
    }

    #[test]
    fn copy_both_response_as_walsender_sends_it() {
        // CONFORMANCE §5 and every capture: `W`, len 7, format 0, 0 columns
        let m = BackendMessage::CopyBothResponse(CopyResponse::default());
        assert_eq!(&encode(&m)[..], b"W\0\0\0\x07\0\0\0");
    }

    #[test]
    fn keepalive_copy_data_from_capture() {
        // proxy_cascade.log: Keepalive raw=6b...00, 18 bytes
        let raw = b"\x6b\0\0\0\0\x06\0\x2b\x60\0\x03\x03\xc6\x34\x99\xa0\x55\0";
        assert_eq!(raw.len(), 18);
        let mut wire = encode(&BackendMessage::CopyData(Bytes::from_static(raw)));
        assert_eq!(wire.len(), 23);
        let mut header = BytesMut::new();
        encode_copy_data_header(raw.len(), &mut header);
        assert_eq!(&header[..], &wire[..5]);
        let parsed = parse_backend(&mut wire).unwrap().unwrap();
        assert_eq!(parsed, BackendMessage::CopyData(Bytes::from_static(raw)));
    }

    #[test]
    fn identify_system_row_description_layout() {
        let m = BackendMessage::RowDescription(vec![FieldDescription::new("timeline", 23, 4)]);
        assert_eq!(
            &encode(&m)[..],
            b"T\0\0\0\x21\0\x01timeline\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0"
        );
    }

    #[test]
    fn error_response_seen_live() {
        // PostgreSQL 15.18's reply to a StartupMessage without `user`
        let wire = b"E\0\0\0\x79SFATAL\0VFATAL\0C28000\0Mno PostgreSQL user name specified in startup packet\0Fpostmaster.c\0L2351\0RProcessStartupPacket\0\0";
        let mut fields = ErrorFields::from_wire_error(&WireError::NoUserName, Severity::Fatal);
        fields.file = Some("postmaster.c".into());
        fields.line = Some("2351".into());
        fields.routine = Some("ProcessStartupPacket".into());
        let m = BackendMessage::ErrorResponse(fields);
        assert_eq!(&encode(&m)[..], &wire[..]);
        assert_eq!(parse_backend(&mut BytesMut::from(&wire[..])), Ok(Some(m)));
    }

    #[test]
    fn copy_data_shares_the_read_buffer() {
        let mut buf = BytesMut::new();
        BackendMessage::CopyData(Bytes::from_static(b"w0123456789")).encode(&mut buf);
        let start = buf.as_ptr() as usize;
        let Ok(Some(BackendMessage::CopyData(data))) = parse_backend(&mut buf) else {
            panic!("not CopyData")
        };
        assert_eq!(data.as_ptr() as usize, start + 5);
    }

    #[test]
    fn libpq_length_rules() {
        let mut big_s = BytesMut::from(&b"S\0\0\x75\x31"[..]);
        assert_eq!(
            parse_backend(&mut big_s),
            Err(WireError::InvalidMessageLength { tag: b'S', len: 30001 })
        );
        let mut big_d = BytesMut::from(&b"D\0\0\x75\x31"[..]);
        assert_eq!(parse_backend(&mut big_d), Ok(None));
        let mut unknown = BytesMut::from(&b"x"[..]);
        assert_eq!(parse_backend(&mut unknown), Err(WireError::UnknownBackendType(b'x')));
        let mut bad_z = BytesMut::from(&b"Z\0\0\0\x05Q"[..]);
        assert_eq!(parse_backend(&mut bad_z), Err(WireError::InvalidTransactionStatus(b'Q')));
        let mut huge_npv = BytesMut::from(&b"v\0\0\0\x0c\0\x03\0\0\xff\xff\xff\xff"[..]);
        assert_eq!(parse_backend(&mut huge_npv), Err(WireError::InsufficientData { tag: b'v' }));
    }

    #[test]
    fn fields_choose_error_or_notice() {
        let n = BackendMessage::from_fields(ErrorFields::new(Severity::Warning, "01000", "w"));
        assert_eq!(n.tag(), b'N');
        assert_eq!(BackendMessage::from_fields(ErrorFields::fatal("57P01", "x")).tag(), b'E');
    }
}
