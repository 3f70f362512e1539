//! Messages a client sends after startup: parsed by a server, encoded by a client.
//! Which types exist and their length caps follow `tcop/postgres.c: SocketBackend`.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{put_count, put_cstr, put_nullable, take_frame, write_message, Reader};
use super::{MessageLimits, WireError};

/// What a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `S`: a prepared statement.
    Statement,
    /// `P`: a portal.
    Portal,
}

impl Target {
    fn byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }
}

/// A message from client to server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    /// `Q`: a simple query (or a replication command).
    Query(String),
    /// `P`: prepare a statement.
    Parse {
        /// Statement name; empty for the unnamed statement.
        name: String,
        /// The query text.
        query: String,
        /// Parameter type OIDs (0 = unspecified).
        param_types: Vec<u32>,
    },
    /// `B`: bind parameters to a statement, making a portal.
    Bind {
        /// Portal name; empty for the unnamed portal.
        portal: String,
        /// Statement name.
        statement: String,
        /// Parameter format codes (0 text, 1 binary): none, one for all, or one each.
        param_formats: Vec<i16>,
        /// Parameter values; `None` is NULL.
        params: Vec<Option<Bytes>>,
        /// Result column format codes, likewise.
        result_formats: Vec<i16>,
    },
    /// `E`: run a portal.
    Execute {
        /// Portal name.
        portal: String,
        /// Row limit; 0 for none.
        max_rows: i32,
    },
    /// `D`: describe a statement or portal.
    Describe {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: String,
    },
    /// `C`: close a statement or portal.
    Close {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: String,
    },
    /// `H`: flush pending output.
    Flush,
    /// `S`: end of an extended-query batch.
    Sync,
    /// `X`: the client is leaving.
    Terminate,
    /// `d`: COPY data (in replication, a `r` or `h` sub-message).
    CopyData(Bytes),
    /// `c`: end of COPY data.
    CopyDone,
    /// `f`: the client aborts a COPY FROM STDIN, with a reason.
    CopyFail(String),
    /// `F`: a fast-path function call.
    FunctionCall {
        /// The function's OID.
        function_oid: u32,
        /// Argument format codes.
        arg_formats: Vec<i16>,
        /// Argument values; `None` is NULL.
        args: Vec<Option<Bytes>>,
        /// Result format code.
        result_format: i16,
    },
    /// `p`: a password, SASL or GSS response; its meaning depends on the authentication
    /// request it answers, so the body is kept raw (see [`super::password`]).
    Password(Bytes),
}

/// The length cap for a frontend message type, or `None` for a type PostgreSQL refuses.
fn limit_for(tag: u8, limits: &MessageLimits) -> Option<u32> {
    match tag {
        b'C' | b'D' | b'E' | b'H' | b'S' | b'c' | b'f' | b'X' => Some(limits.small),
        b'Q' | b'P' | b'B' | b'F' | b'd' => Some(limits.large),
        // auth.c: recv_password_packet, auth-sasl.c: CheckSASLAuth
        b'p' => Some(limits.auth),
        _ => None,
    }
}

/// Parses one frontend message off the front of `buf`.
///
/// `Ok(None)` when the message is not complete yet. As in PostgreSQL, the type byte is
/// judged as soon as it arrives, then the length word against that type's cap. `p` is
/// accepted here; a server outside authentication should refuse it with
/// [`WireError::UnknownFrontendType`] as PostgreSQL does. This is the fuzz entry point for
/// frontend messages (with `MessageLimits::default()`).
///
/// # Errors
/// [`WireError::UnknownFrontendType`], [`WireError::InvalidMessageLength`], or a body
/// error: [`WireError::InsufficientData`], [`WireError::InvalidMessageFormat`] (trailing
/// bytes), [`WireError::InvalidString`], [`WireError::InvalidUtf8`],
/// [`WireError::InvalidTarget`].
pub fn parse_frontend(
    buf: &mut BytesMut,
    limits: &MessageLimits,
) -> Result<Option<FrontendMessage>, WireError> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    // postgres.c: SocketBackend
    let max = limit_for(tag, limits).ok_or(WireError::UnknownFrontendType(tag))?;
    match take_frame(buf, max)? {
        None => Ok(None),
        Some(body) => parse_body(tag, Reader::new(tag, body)).map(Some),
    }
}

fn parse_body(tag: u8, mut r: Reader) -> Result<FrontendMessage, WireError> {
    let message = match tag {
        b'Q' => FrontendMessage::Query(r.cstr()?),
        b'P' => FrontendMessage::Parse {
            name: r.cstr()?,
            query: r.cstr()?,
            param_types: {
                let n = r.u16()?.into();
                r.many(n, 4, Reader::u32)?
            },
        },
        b'B' => parse_bind(&mut r)?,
        b'E' => FrontendMessage::Execute { portal: r.cstr()?, max_rows: r.i32()? },
        b'D' | b'C' => return parse_target(tag, r),
        b'H' => FrontendMessage::Flush,
        b'S' => FrontendMessage::Sync,
        b'X' => FrontendMessage::Terminate,
        b'd' => FrontendMessage::CopyData(r.rest()),
        b'c' => FrontendMessage::CopyDone,
        b'f' => FrontendMessage::CopyFail(r.cstr()?),
        b'F' => parse_function_call(&mut r)?,
        b'p' => FrontendMessage::Password(r.rest()),
        other => return Err(WireError::UnknownFrontendType(other)),
    };
    r.finish()?;
    Ok(message)
}

/// Format codes: an `Int16` count, then that many `Int16`s.
fn formats(r: &mut Reader) -> Result<Vec<i16>, WireError> {
    let n = r.u16()?.into();
    r.many(n, 2, Reader::i16)
}

/// Values: an `Int16` count, then for each an `Int32` length (-1 = NULL) and the bytes.
fn values(r: &mut Reader) -> Result<Vec<Option<Bytes>>, WireError> {
    let n = r.u16()?.into();
    r.many(n, 4, Reader::nullable)
}

// postgres.c: exec_bind_message
fn parse_bind(r: &mut Reader) -> Result<FrontendMessage, WireError> {
    Ok(FrontendMessage::Bind {
        portal: r.cstr()?,
        statement: r.cstr()?,
        param_formats: formats(r)?,
        params: values(r)?,
        result_formats: formats(r)?,
    })
}

// fastpath.c: HandleFunctionRequest, parse_fcall_arguments
fn parse_function_call(r: &mut Reader) -> Result<FrontendMessage, WireError> {
    Ok(FrontendMessage::FunctionCall {
        function_oid: r.u32()?,
        arg_formats: formats(r)?,
        args: values(r)?,
        result_format: r.i16()?,
    })
}

/// Describe or Close; the subtype is judged after the whole body, as PostgreSQL does.
fn parse_target(tag: u8, mut r: Reader) -> Result<FrontendMessage, WireError> {
    let subtype = r.u8()?;
    let name = r.cstr()?;
    r.finish()?;
    let target = match subtype {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        _ => {
            let message = if tag == b'D' { "DESCRIBE" } else { "CLOSE" };
            return Err(WireError::InvalidTarget { message, subtype });
        }
    };
    Ok(if tag == b'D' {
        FrontendMessage::Describe { target, name }
    } else {
        FrontendMessage::Close { target, name }
    })
}

impl FrontendMessage {
    /// The message type byte.
    pub fn tag(&self) -> u8 {
        match self {
            FrontendMessage::Query(_) => b'Q',
            FrontendMessage::Parse { .. } => b'P',
            FrontendMessage::Bind { .. } => b'B',
            FrontendMessage::Execute { .. } => b'E',
            FrontendMessage::Describe { .. } => b'D',
            FrontendMessage::Close { .. } => b'C',
            FrontendMessage::Flush => b'H',
            FrontendMessage::Sync => b'S',
            FrontendMessage::Terminate => b'X',
            FrontendMessage::CopyData(_) => b'd',
            FrontendMessage::CopyDone => b'c',
            FrontendMessage::CopyFail(_) => b'f',
            FrontendMessage::FunctionCall { .. } => b'F',
            FrontendMessage::Password(_) => b'p',
        }
    }

    /// Appends this message to `buf` (client side). Strings end at their first NUL.
    pub fn encode(&self, buf: &mut BytesMut) {
        write_message(buf, Some(self.tag()), |b| self.encode_body(b));
    }

    fn encode_body(&self, b: &mut BytesMut) {
        match self {
            FrontendMessage::Query(s) | FrontendMessage::CopyFail(s) => put_cstr(b, s.as_bytes()),
            FrontendMessage::Parse { name, query, param_types } => {
                put_cstr(b, name.as_bytes());
                put_cstr(b, query.as_bytes());
                put_count(b, param_types.len());
                param_types.iter().for_each(|&t| b.put_u32(t));
            }
            FrontendMessage::Bind { portal, statement, param_formats, params, result_formats } => {
                put_cstr(b, portal.as_bytes());
                put_cstr(b, statement.as_bytes());
                put_formats(b, param_formats);
                put_values(b, params);
                put_formats(b, result_formats);
            }
            FrontendMessage::Execute { portal, max_rows } => {
                put_cstr(b, portal.as_bytes());
                b.put_i32(*max_rows);
            }
            FrontendMessage::Describe { target, name }
            | FrontendMessage::Close { target, name } => {
                b.put_u8(target.byte());
                put_cstr(b, name.as_bytes());
            }
            FrontendMessage::CopyData(data) | FrontendMessage::Password(data) => b.put_slice(data),
            FrontendMessage::FunctionCall { function_oid, arg_formats, args, result_format } => {
                b.put_u32(*function_oid);
                put_formats(b, arg_formats);
                put_values(b, args);
                b.put_i16(*result_format);
            }
            FrontendMessage::Flush
            | FrontendMessage::Sync
            | FrontendMessage::Terminate
            | FrontendMessage::CopyDone => {}
        }
    }
}

fn put_formats(b: &mut BytesMut, formats: &[i16]) {
    put_count(b, formats.len());
    formats.iter().for_each(|&f| b.put_i16(f));
}

fn put_values(b: &mut BytesMut, values: &[Option<Bytes>]) {
    put_count(b, values.len());
    values.iter().for_each(|v| put_nullable(b, v.as_deref()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<FrontendMessage>, WireError> {
        parse_frontend(&mut BytesMut::from(bytes), &MessageLimits::default())
    }

    #[test]
    fn standby_status_copy_data_from_capture() {
        // proxy_recvwal.log: CopyData StandbyStatus raw=72...00 (34 bytes)
        let hex = "72000000000600000000000000060000000000000000000000000303c63442cba100";
        let raw: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(raw.len(), 34);
        let mut msg = vec![b'd', 0, 0, 0, 38];
        msg.extend_from_slice(&raw);
        let parsed = parse(&msg).unwrap().unwrap();
        assert_eq!(parsed, FrontendMessage::CopyData(Bytes::from(raw)));
        let mut out = BytesMut::new();
        parsed.encode(&mut out);
        assert_eq!(&out[..], &msg[..]);
    }

    #[test]
    fn type_is_judged_before_length() {
        assert_eq!(parse(b"x"), Err(WireError::UnknownFrontendType(b'x')));
        assert_eq!(parse(b"S\0\0"), Ok(None));
        assert_eq!(
            parse(b"S\0\0\x27\x11"),
            Err(WireError::InvalidMessageLength { tag: b'S', len: 10001 })
        );
        assert_eq!(parse(b"Q\0\0\x27\x11"), Ok(None));
        assert_eq!(
            parse(b"Q\0\0\0\x03"),
            Err(WireError::InvalidMessageLength { tag: b'Q', len: 3 })
        );
        assert_eq!(
            parse(b"p\0\x01\0\0"),
            Err(WireError::InvalidMessageLength { tag: b'p', len: 65536 })
        );
    }

    #[test]
    fn bodies_as_postgresql_checks_them() {
        assert_eq!(parse(b"S\0\0\0\x05a"), Err(WireError::InvalidMessageFormat { tag: b'S' }));
        assert_eq!(parse(b"Q\0\0\0\x06ab"), Err(WireError::InvalidString { tag: b'Q' }));
        assert_eq!(parse(b"E\0\0\0\x06a\0"), Err(WireError::InsufficientData { tag: b'E' }));
        assert_eq!(
            parse(b"D\0\0\0\x08Xab\0"),
            Err(WireError::InvalidTarget { message: "DESCRIBE", subtype: b'X' })
        );
        assert_eq!(
            parse(b"C\0\0\0\x06Q\0"),
            Err(WireError::InvalidTarget { message: "CLOSE", subtype: b'Q' })
        );
        // a Bind announcing 65535 parameters in a 20-byte body
        assert_eq!(
            parse(b"B\0\0\0\x0a\0\0\0\0\xff\xff"),
            Err(WireError::InsufficientData { tag: b'B' })
        );
        assert_eq!(parse(b"Q\0\0\0\x06\xff\0"), Err(WireError::InvalidUtf8 { tag: b'Q' }));
    }

    #[test]
    fn terminate_and_sync_bytes() {
        let mut out = BytesMut::new();
        FrontendMessage::Sync.encode(&mut out);
        FrontendMessage::Terminate.encode(&mut out);
        assert_eq!(&out[..], b"S\0\0\0\x04X\0\0\0\x04");
        assert_eq!(parse(&out), Ok(Some(FrontendMessage::Sync)));
    }
}
