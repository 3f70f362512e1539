//! The server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677, with
//! `tls-server-end-point` channel binding, RFC 5929) as `libpq/auth-scram.c` runs it:
//! message grammar, error texts, and the mock exchange for a role without a usable secret.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use walstream_protocol::wire::sqlstate;

use super::verifier::{hmac_sha256, ScramVerifier, SCRAM_DEFAULT_ITERATIONS, SCRAM_KEY_LEN};
use super::AuthError;

/// `SCRAM_RAW_NONCE_LEN`: random bytes in the server nonce.
const RAW_NONCE_LEN: usize = 18;
/// `SCRAM_DEFAULT_SALT_LEN`: bytes of mock salt.
const MOCK_SALT_LEN: usize = 16;

/// The per-process stand-in for the cluster's `mock_authentication_nonce` (pg_control):
/// random, made once, so a missing role gets the same salt on every attempt while the
/// process lives.
fn mock_auth_nonce() -> &'static [u8; 32] {
    static NONCE: OnceLock<[u8; 32]> = OnceLock::new();
    NONCE.get_or_init(|| {
        let mut nonce = [0; 32];
        rand::thread_rng().fill_bytes(&mut nonce);
        nonce
    })
}

/// A plausible secret for a role without one (`auth-scram.c: mock_scram_secret`,
/// `scram_mock_salt`): salt = SHA-256(name ‖ nonce)[..16], 4096 iterations, zero keys.
fn mock_verifier(user: &str) -> ScramVerifier {
    let digest =
        Sha256::new().chain_update(user.as_bytes()).chain_update(mock_auth_nonce()).finalize();
    ScramVerifier {
        iterations: SCRAM_DEFAULT_ITERATIONS,
        salt: digest.get(..MOCK_SALT_LEN).unwrap_or_default().to_vec(),
        stored_key: [0; SCRAM_KEY_LEN],
        server_key: [0; SCRAM_KEY_LEN],
    }
}

/// What one SCRAM step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Exchange {
    /// Send SASLContinue with this data and wait for the next response.
    Continue(Vec<u8>),
    /// Send SASLFinal with this data; authentication succeeded.
    Success(Vec<u8>),
    /// Wrong password (or a doomed exchange): `password authentication failed`.
    Failure,
}

#[derive(Debug)]
enum Stage {
    /// Waiting for client-first-message.
    Init,
    /// server-first-message sent; waiting for client-final-message.
    SaltSent(Box<FirstExchange>),
    /// Finished, successfully or not.
    Finished,
}

#[derive(Debug)]
struct FirstExchange {
    cbind_flag: u8,
    client_first_bare: Vec<u8>,
    client_nonce: Vec<u8>,
    server_first: String,
    server_nonce: String,
}

/// One connection's SCRAM exchange (`auth-scram.c: scram_state`).
#[derive(Debug)]
pub(super) struct ScramServer {
    verifier: ScramVerifier,
    /// The exchange must fail however it goes (no usable secret); the proof is still
    /// computed so timing does not tell.
    doomed: bool,
    stage: Stage,
    /// SCRAM-SHA-256-PLUS was selected: the server certificate's hash the client must bind.
    channel_binding: Option<Vec<u8>>,
    /// The connection is encrypted (and so could bind).
    ssl_in_use: bool,
}

impl ScramServer {
    /// An exchange against `verifier`, or a doomed mock one for `user` when it is `None`
    /// (`auth-scram.c: scram_init`).
    pub(super) fn new(user: &str, verifier: Option<&ScramVerifier>) -> ScramServer {
        let (verifier, doomed) = match verifier {
            Some(v) => (v.clone(), false),
            None => (mock_verifier(user), true),
        };
        ScramServer {
            verifier,
            doomed,
            stage: Stage::Init,
            channel_binding: None,
            ssl_in_use: false,
        }
    }

    /// The mechanism the client selected (`auth-scram.c: scram_init`): with
    /// `Some(hash)` SCRAM-SHA-256-PLUS binding to that server certificate hash; and
    /// whether the connection is encrypted.
    pub(super) fn set_channel_binding(&mut self, hash: Option<Vec<u8>>, ssl_in_use: bool) {
        self.channel_binding = hash;
        self.ssl_in_use = ssl_in_use;
    }

    /// Feeds one client message (`auth-scram.c: scram_exchange`); `None` is a
    /// SASLInitialResponse without initial data, answered with an empty challenge.
    ///
    /// # Errors
    /// A FATAL with PostgreSQL's SQLSTATE and text for a malformed message.
    pub(super) fn exchange(&mut self, input: Option<&[u8]>) -> Result<Exchange, AuthError> {
        let Some(input) = input else {
            return match self.stage {
                Stage::Init => Ok(Exchange::Continue(Vec::new())),
                _ => Err(malformed("The message is empty.")),
            };
        };
        if input.is_empty() {
            return Err(malformed("The message is empty."));
        }
        if input.contains(&0) {
            return Err(malformed("Message length does not match input length."));
        }
        match std::mem::replace(&mut self.stage, Stage::Finished) {
            Stage::Init => {
                let first = self.read_client_first(input)?;
                let out = first.server_first.clone().into_bytes();
                self.stage = Stage::SaltSent(Box::new(first));
                Ok(Exchange::Continue(out))
            }
            Stage::SaltSent(first) => self.read_client_final(&first, input),
            Stage::Finished => {
                Err(AuthError::fatal(sqlstate::INTERNAL_ERROR, "invalid SCRAM exchange state"))
            }
        }
    }

    /// `auth-scram.c: read_client_first_message`, then `build_server_first_message`.
    fn read_client_first(&self, input: &[u8]) -> Result<FirstExchange, AuthError> {
        let mut p = Cursor { input, pos: 0 };
        let cbind_flag = p.peek();
        let plus = self.channel_binding.is_some();
        match cbind_flag {
            b'n' | b'y' if plus => return Err(malformed(
                "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.",
            )),
            b'y' if self.ssl_in_use => {
                return Err(AuthError::fatal(
                    sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                    "SCRAM channel binding negotiation error",
                )
                .with_detail("The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding."))
            }
            b'n' | b'y' => {
                p.pos += 1;
                if p.peek() != b',' {
                    return Err(malformed(&format!(
                        "Comma expected, but found character \"{}\".",
                        sanitize_char(p.peek())
                    )));
                }
                p.pos += 1;
            }
            b'p' if plus => {
                let kind = p.attr_value(b'p')?;
                if kind != b"tls-server-end-point" {
                    return Err(AuthError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!(
                            "unsupported SCRAM channel-binding type \"{}\"",
                            sanitize_str(kind)
                        ),
                    ));
                }
            }
            b'p' => return Err(malformed(
                "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.",
            )),
            other => {
                return Err(malformed(&format!(
                    "Unexpected channel-binding flag \"{}\".",
                    sanitize_char(other)
                )))
            }
        }
        if p.peek() == b'a' {
            return Err(AuthError::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "client uses authorization identity, but it is not supported",
            ));
        }
        if p.peek() != b',' {
            return Err(malformed(&format!(
                "Unexpected attribute \"{}\" in client-first-message.",
                sanitize_char(p.peek())
            )));
        }
        p.pos += 1;
        let client_first_bare = p.rest().to_vec();
        if p.peek() == b'm' {
            return Err(AuthError::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "client requires an unsupported SCRAM extension",
            ));
        }
        // The user name in the message is ignored: the startup packet's is used.
        p.attr_value(b'n')?;
        let client_nonce = p.attr_value(b'r')?.to_vec();
        if !client_nonce.iter().all(|&c| (0x21..=0x7e).contains(&c) && c != b',') {
            return Err(AuthError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "non-printable characters in SCRAM nonce",
            ));
        }
        while !p.at_end() {
            p.any_attr()?;
        }
        let mut raw_nonce = [0u8; RAW_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw_nonce);
        let server_nonce = STANDARD.encode(raw_nonce);
        let server_first = format!(
            "r={}{},s={},i={}",
            String::from_utf8_lossy(&client_nonce),
            server_nonce,
            STANDARD.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        Ok(FirstExchange {
            cbind_flag,
            client_first_bare,
            client_nonce,
            server_first,
            server_nonce,
        })
    }

    /// `auth-scram.c: read_client_final_message`, the nonce and proof checks, and
    /// `build_server_final_message`.
    fn read_client_final(
        &self,
        first: &FirstExchange,
        input: &[u8],
    ) -> Result<Exchange, AuthError> {
        let mut p = Cursor { input, pos: 0 };
        let binding = p.attr_value(b'c')?;
        if let Some(hash) = &self.channel_binding {
            let input = [b"p=tls-server-end-point,,".as_slice(), hash].concat();
            if binding != STANDARD.encode(input).as_bytes() {
                return Err(AuthError::fatal(
                    sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                    "SCRAM channel binding check failed",
                ));
            }
        } else if !((binding == b"biws" && first.cbind_flag == b'n')
            || (binding == b"eSws" && first.cbind_flag == b'y'))
        {
            return Err(AuthError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "unexpected SCRAM channel-binding attribute in client-final-message",
            ));
        }
        let final_nonce = p.attr_value(b'r')?;
        let (without_proof_end, proof) = loop {
            let start = p.pos.saturating_sub(1);
            let (attr, value) = p.any_attr()?;
            if attr == b'p' {
                break (start, value);
            }
        };
        let proof: [u8; SCRAM_KEY_LEN] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| malformed("Malformed proof in client-final-message."))?;
        if !p.at_end() {
            return Err(malformed("Garbage found at the end of client-final-message."));
        }
        let expected_nonce =
            [first.client_nonce.as_slice(), first.server_nonce.as_bytes()].concat();
        if !bool::from(final_nonce.ct_eq(&expected_nonce)) {
            return Err(AuthError::fatal(sqlstate::PROTOCOL_VIOLATION, "invalid SCRAM response")
                .with_detail("Nonce does not match."));
        }
        let without_proof = input.get(..without_proof_end).unwrap_or_default();
        let auth_message: [&[u8]; 5] =
            [&first.client_first_bare, b",", first.server_first.as_bytes(), b",", without_proof];
        if !self.verify_client_proof(&proof, &auth_message) || self.doomed {
            return Ok(Exchange::Failure);
        }
        let signature = hmac_sha256(&self.verifier.server_key, &auth_message);
        Ok(Exchange::Success(format!("v={}", STANDARD.encode(signature)).into_bytes()))
    }

    /// `auth-scram.c: verify_client_proof`: H(proof XOR ClientSignature) == StoredKey.
    fn verify_client_proof(&self, proof: &[u8; SCRAM_KEY_LEN], auth_message: &[&[u8]]) -> bool {
        let signature = hmac_sha256(&self.verifier.stored_key, auth_message);
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let stored: [u8; SCRAM_KEY_LEN] = Sha256::digest(client_key).into();
        bool::from(stored.ct_eq(&self.verifier.stored_key))
    }
}

/// 08P01 `malformed SCRAM message` with a detail.
fn malformed(detail: &str) -> AuthError {
    AuthError::fatal(sqlstate::PROTOCOL_VIOLATION, "malformed SCRAM message").with_detail(detail)
}

/// A byte for an error message: `'c'` when printable ASCII, else `0x%02x`
/// (`auth-scram.c: sanitize_char`). End of input reads as NUL, as in C.
fn sanitize_char(c: u8) -> String {
    if (0x21..=0x7e).contains(&c) {
        format!("'{}'", char::from(c))
    } else {
        format!("0x{c:02x}")
    }
}

/// A string for an error message, non-printable bytes as `?` (`auth-scram.c: sanitize_str`).
fn sanitize_str(s: &[u8]) -> String {
    s.iter().map(|&c| if (0x21..=0x7e).contains(&c) { char::from(c) } else { '?' }).collect()
}

/// Reads `attr=value` items separated by commas.
struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The current byte, or 0 at the end (C's terminator).
    fn peek(&self) -> u8 {
        self.input.get(self.pos).copied().unwrap_or(0)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn rest(&self) -> &'a [u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    /// The value up to the next comma (or end); the comma is consumed.
    fn value(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let len = rest.iter().position(|&c| c == b',').unwrap_or(rest.len());
        self.pos += len + usize::from(len < rest.len());
        rest.get(..len).unwrap_or_default()
    }

    /// `=` after an attribute letter.
    fn equals(&mut self, attr: u8) -> Result<(), AuthError> {
        if self.peek() != b'=' {
            return Err(malformed(&format!(
                "Expected character \"=\" for attribute \"{}\".",
                char::from(attr)
            )));
        }
        self.pos += 1;
        Ok(())
    }

    /// `auth-scram.c: read_attr_value`.
    fn attr_value(&mut self, attr: u8) -> Result<&'a [u8], AuthError> {
        if self.peek() != attr {
            return Err(malformed(&format!(
                "Expected attribute \"{}\" but found \"{}\".",
                char::from(attr),
                sanitize_char(self.peek())
            )));
        }
        self.pos += 1;
        self.equals(attr)?;
        Ok(self.value())
    }

    /// `auth-scram.c: read_any_attr`.
    fn any_attr(&mut self) -> Result<(u8, &'a [u8]), AuthError> {
        let attr = self.peek();
        if self.at_end() {
            return Err(malformed("Attribute expected, but found end of string."));
        }
        if !attr.is_ascii_alphabetic() {
            return Err(malformed(&format!(
                "Attribute expected, but found invalid character \"{}\".",
                sanitize_char(attr)
            )));
        }
        self.pos += 1;
        self.equals(attr)?;
        Ok((attr, self.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(input: &[u8]) -> Result<Exchange, AuthError> {
        ScramServer::new("u", None).exchange(Some(input))
    }

    fn detail(r: Result<Exchange, AuthError>) -> (String, String, Option<String>) {
        let e = r.unwrap_err();
        (e.fields.code, e.fields.message, e.fields.detail)
    }

    #[test]
    fn client_first_errors() {
        let m = |d: &str| {
            ("08P01".to_owned(), "malformed SCRAM message".to_owned(), Some(d.to_owned()))
        };
        assert_eq!(detail(first(b"")), m("The message is empty."));
        assert_eq!(detail(first(b"n,,n=,r=a\0")), m("Message length does not match input length."));
        assert_eq!(detail(first(b"x,,n=,r=a")), m("Unexpected channel-binding flag \"'x'\"."));
        assert_eq!(detail(first(b"n")), m("Comma expected, but found character \"0x00\"."));
        assert_eq!(detail(first(b"y;")), m("Comma expected, but found character \"';'\"."));
        assert_eq!(
            detail(first(b"p=tls-server-end-point,,n=,r=a")),
            m("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.")
        );
        assert_eq!(
            detail(first(b"n,x,n=,r=a")),
            m("Unexpected attribute \"'x'\" in client-first-message.")
        );
        assert_eq!(detail(first(b"n,,r=a")), m("Expected attribute \"n\" but found \"'r'\"."));
        assert_eq!(detail(first(b"n,,n")), m("Expected character \"=\" for attribute \"n\"."));
        assert_eq!(detail(first(b"n,,n=")), m("Expected attribute \"r\" but found \"0x00\"."));
        assert_eq!(
            detail(first(b"n,,n=,r=a,1=x")),
            m("Attribute expected, but found invalid character \"'1'\".")
        );
        let e = detail(first(b"n,a=x,n=,r=a"));
        assert_eq!(
            (e.0.as_str(), e.1.as_str()),
            ("0A000", "client uses authorization identity, but it is not supported")
        );
        let e = detail(first(b"n,,m=x,n=,r=a"));
        assert_eq!(
            (e.0.as_str(), e.1.as_str()),
            ("0A000", "client requires an unsupported SCRAM extension")
        );
        let e = detail(first(b"n,,n=,r=a\x7fb"));
        assert_eq!(
            (e.0.as_str(), e.1.as_str()),
            ("08P01", "non-printable characters in SCRAM nonce")
        );
    }

    #[test]
    fn server_first_shape_and_mock_salt_is_stable() {
        let mut a = ScramServer::new("ghost", None);
        let Exchange::Continue(out) = a.exchange(Some(b"n,,n=,r=abc,x=ext")).unwrap() else {
            panic!("expected continue")
        };
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("r=abc"), "{text}");
        let parts: Vec<&str> = text.split(',').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 2 + 3 + 24);
        assert!(parts[2] == "i=4096");
        let b = ScramServer::new("ghost", None);
        assert_eq!(a.verifier.salt, b.verifier.salt);
        assert_eq!(a.verifier.salt.len(), 16);
        assert_ne!(ScramServer::new("other", None).verifier.salt, a.verifier.salt);
    }

    #[test]
    fn empty_initial_response_gets_empty_challenge() {
        let mut s = ScramServer::new("u", None);
        assert_eq!(s.exchange(None).unwrap(), Exchange::Continue(Vec::new()));
        assert!(matches!(s.exchange(Some(b"n,,n=,r=a")).unwrap(), Exchange::Continue(_)));
    }

    #[test]
    fn client_final_errors() {
        let server = |flag: &[u8]| {
            let mut s = ScramServer::new("u", None);
            s.exchange(Some(&[flag, b",,n=,r=abc"].concat())).unwrap();
            s
        };
        let m = |d: &str| {
            ("08P01".to_owned(), "malformed SCRAM message".to_owned(), Some(d.to_owned()))
        };
        let cb = "unexpected SCRAM channel-binding attribute in client-final-message";
        assert_eq!(detail(server(b"n").exchange(Some(b"c=eSws,r=abc,p=x"))).1, cb);
        assert_eq!(detail(server(b"y").exchange(Some(b"c=biws,r=abc,p=x"))).1, cb);
        assert_eq!(
            detail(server(b"n").exchange(Some(b"r=abc"))),
            m("Expected attribute \"c\" but found \"'r'\".")
        );
        assert_eq!(
            detail(server(b"n").exchange(Some(b"c=biws,r=abc"))),
            m("Attribute expected, but found end of string.")
        );
        assert_eq!(
            detail(server(b"n").exchange(Some(b"c=biws,r=abc,p=AAAA"))),
            m("Malformed proof in client-final-message.")
        );
        let proof = STANDARD.encode([0u8; 32]);
        let garbage = format!("c=biws,r=abc,p={proof},x=1");
        assert_eq!(
            detail(server(b"n").exchange(Some(garbage.as_bytes()))),
            m("Garbage found at the end of client-final-message.")
        );
        let wrong_nonce = format!("c=biws,r=abc,p={proof}");
        assert_eq!(
            detail(server(b"y").exchange(Some(wrong_nonce.replace("biws", "eSws").as_bytes()))),
            ("08P01".into(), "invalid SCRAM response".into(), Some("Nonce does not match.".into()))
        );
    }
}
