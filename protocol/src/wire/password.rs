//! The bodies of `p` messages. One type byte serves PasswordMessage, SASLInitialResponse,
//! SASLResponse and GSSResponse; which one it is depends on the authentication request it
//! answers, so [`super::FrontendMessage::Password`] keeps the body raw and these functions
//! read (server side) or build (client side) each kind.

use bytes::{Bytes, BytesMut};

use super::codec::{put_cstr, put_nullable, Reader};
use super::{FrontendMessage, WireError};

/// A PasswordMessage carrying `password` (cleartext, or `md5...` for MD5 authentication).
pub fn password(password: &[u8]) -> FrontendMessage {
    let mut body = BytesMut::with_capacity(password.len() + 1);
    put_cstr(&mut body, password);
    FrontendMessage::Password(body.freeze())
}

/// Reads a `p` body as a PasswordMessage: the password, without its NUL.
///
/// # Errors
/// [`WireError::InvalidPasswordPacket`] when the first NUL is not the last byte,
/// [`WireError::EmptyPassword`] (28P01) for an empty password (`auth.c: recv_password_packet`).
pub fn parse_password(body: &Bytes) -> Result<Bytes, WireError> {
    let mut r = Reader::new(b'p', body.clone());
    let pw = r.cstr_bytes().map_err(|_| WireError::InvalidPasswordPacket)?;
    r.finish().map_err(|_| WireError::InvalidPasswordPacket)?;
    if pw.is_empty() {
        return Err(WireError::EmptyPassword);
    }
    Ok(pw)
}

/// A SASLInitialResponse: the chosen mechanism and the client's first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse {
    /// The mechanism, e.g. `SCRAM-SHA-256`.
    pub mechanism: String,
    /// The initial client response; `None` is sent as length -1.
    pub data: Option<Bytes>,
}

impl SaslInitialResponse {
    /// Reads a `p` body as a SASLInitialResponse (`libpq/auth-sasl.c: CheckSASLAuth`).
    ///
    /// # Errors
    /// [`WireError::InvalidString`], [`WireError::InvalidUtf8`] for the mechanism name,
    /// [`WireError::InsufficientData`] for a bad data length, and
    /// [`WireError::InvalidMessageFormat`] for trailing bytes.
    pub fn parse(body: &Bytes) -> Result<SaslInitialResponse, WireError> {
        let mut r = Reader::new(b'p', body.clone());
        let mechanism = r.cstr()?;
        let data = r.nullable()?;
        r.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// The `p` message carrying this response.
    pub fn to_message(&self) -> FrontendMessage {
        let mut body = BytesMut::new();
        put_cstr(&mut body, self.mechanism.as_bytes());
        put_nullable(&mut body, self.data.as_deref());
        FrontendMessage::Password(body.freeze())
    }
}

/// A SASLResponse: the body is the SASL data as is.
pub fn sasl_response(data: Bytes) -> FrontendMessage {
    FrontendMessage::Password(data)
}

/// A GSSResponse: the body is the GSSAPI or SSPI token as is.
pub fn gss_response(data: Bytes) -> FrontendMessage {
    FrontendMessage::Password(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(m: FrontendMessage) -> Bytes {
        match m {
            FrontendMessage::Password(b) => b,
            other => panic!("not a p message: {other:?}"),
        }
    }

    #[test]
    fn password_round_trip_and_checks() {
        let b = body(password(b"md5abc"));
        assert_eq!(&b[..], b"md5abc\0");
        assert_eq!(parse_password(&b).unwrap(), Bytes::from_static(b"md5abc"));
        assert_eq!(
            parse_password(&Bytes::from_static(b"a\0b\0")),
            Err(WireError::InvalidPasswordPacket)
        );
        assert_eq!(
            parse_password(&Bytes::from_static(b"ab")),
            Err(WireError::InvalidPasswordPacket)
        );
        assert_eq!(parse_password(&Bytes::from_static(b"\0")), Err(WireError::EmptyPassword));
    }

    #[test]
    fn sasl_initial_response_layout() {
        let r = SaslInitialResponse {
            mechanism: "SCRAM-SHA-256".into(),
            data: Some(Bytes::from_static(b"n,,n=,r=abc")),
        };
        let b = body(r.to_message());
        assert_eq!(&b[..], b"SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc");
        assert_eq!(SaslInitialResponse::parse(&b), Ok(r));
        let none = Bytes::from_static(b"X\0\xff\xff\xff\xff");
        assert_eq!(SaslInitialResponse::parse(&none).unwrap().data, None);
        let short = Bytes::from_static(b"X\0\0\0\0\x05ab");
        assert_eq!(
            SaslInitialResponse::parse(&short),
            Err(WireError::InsufficientData { tag: b'p' })
        );
    }
}
