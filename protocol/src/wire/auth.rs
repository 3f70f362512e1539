//! Authentication request messages (`R`), as `libpq/auth.c: sendAuthRequest` writes them.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{put_cstr, Reader};
use super::WireError;

/// An Authentication message: a request code and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// 0: authentication succeeded.
    Ok,
    /// 2: Kerberos V5 (no longer supported by servers).
    KerberosV5,
    /// 3: send the password in clear text.
    CleartextPassword,
    /// 5: send `"md5" + md5hex(md5hex(password + user) + salt)`.
    Md5Password {
        /// The 4-byte salt.
        salt: [u8; 4],
    },
    /// 7: start GSSAPI.
    Gss,
    /// 8: more GSSAPI or SSPI data.
    GssContinue(Bytes),
    /// 9: start SSPI.
    Sspi,
    /// 10: start SASL with one of these mechanisms (e.g. `SCRAM-SHA-256`).
    Sasl {
        /// Mechanism names, in the server's order of preference.
        mechanisms: Vec<String>,
    },
    /// 11: a SASL challenge.
    SaslContinue(Bytes),
    /// 12: the SASL outcome data.
    SaslFinal(Bytes),
}

impl Authentication {
    /// The request code (`AUTH_REQ_*` in `libpq/protocol.h`).
    pub fn code(&self) -> i32 {
        match self {
            Authentication::Ok => 0,
            Authentication::KerberosV5 => 2,
            Authentication::CleartextPassword => 3,
            Authentication::Md5Password { .. } => 5,
            Authentication::Gss => 7,
            Authentication::GssContinue(_) => 8,
            Authentication::Sspi => 9,
            Authentication::Sasl { .. } => 10,
            Authentication::SaslContinue(_) => 11,
            Authentication::SaslFinal(_) => 12,
        }
    }

    /// Appends the message body: the code, then the data.
    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_i32(self.code());
        match self {
            Authentication::Md5Password { salt } => buf.put_slice(salt),
            Authentication::GssContinue(data)
            | Authentication::SaslContinue(data)
            | Authentication::SaslFinal(data) => buf.put_slice(data),
            Authentication::Sasl { mechanisms } => {
                for m in mechanisms {
                    put_cstr(buf, m.as_bytes());
                }
                buf.put_u8(0);
            }
            _ => {}
        }
    }

    /// Reads a message body.
    pub(crate) fn parse_body(mut r: Reader) -> Result<Authentication, WireError> {
        let auth = match r.i32()? {
            0 => Authentication::Ok,
            2 => Authentication::KerberosV5,
            3 => Authentication::CleartextPassword,
            5 => Authentication::Md5Password { salt: r.array()? },
            7 => Authentication::Gss,
            8 => Authentication::GssContinue(r.rest()),
            9 => Authentication::Sspi,
            10 => Authentication::Sasl { mechanisms: parse_mechanisms(&mut r)? },
            11 => Authentication::SaslContinue(r.rest()),
            12 => Authentication::SaslFinal(r.rest()),
            other => return Err(WireError::UnknownAuthentication(other)),
        };
        r.finish()?;
        Ok(auth)
    }
}

/// Mechanism names up to an empty one.
fn parse_mechanisms(r: &mut Reader) -> Result<Vec<String>, WireError> {
    let mut mechanisms = Vec::new();
    loop {
        let m = r.cstr()?;
        if m.is_empty() {
            return Ok(mechanisms);
        }
        mechanisms.push(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &'static [u8]) -> Result<Authentication, WireError> {
        Authentication::parse_body(Reader::new(b'R', Bytes::from_static(body)))
    }

    #[test]
    fn sasl_body_is_scram_list() {
        let auth = Authentication::Sasl { mechanisms: vec!["SCRAM-SHA-256".into()] };
        let mut out = BytesMut::new();
        auth.encode_body(&mut out);
        assert_eq!(&out[..], b"\0\0\0\x0aSCRAM-SHA-256\0\0");
        assert_eq!(parse(b"\0\0\0\x0aSCRAM-SHA-256\0\0"), Ok(auth));
    }

    #[test]
    fn malformed_bodies() {
        assert_eq!(parse(b"\0\0\0\x05ab"), Err(WireError::InsufficientData { tag: b'R' }));
        assert_eq!(parse(b"\0\0\0\x05abcde"), Err(WireError::InvalidMessageFormat { tag: b'R' }));
        assert_eq!(parse(b"\0\0\0\x06"), Err(WireError::UnknownAuthentication(6)));
        assert_eq!(parse(b"\0\0\0\x0aSCRAM"), Err(WireError::InvalidString { tag: b'R' }));
        assert_eq!(parse(b"\0\0\0\0x"), Err(WireError::InvalidMessageFormat { tag: b'R' }));
        assert_eq!(parse(b"\0\0"), Err(WireError::InsufficientData { tag: b'R' }));
    }
}
