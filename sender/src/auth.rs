//! Roles, their password verifiers, and the server side of password, md5, SCRAM-SHA-256
//! and SCRAM-SHA-256-PLUS authentication (`libpq/auth.c`, `auth-sasl.c`, `auth-scram.c`,
//! `crypt.c`), sans-I/O: [`Authenticator`] turns each `p` message body into the next
//! Authentication request. [`cert`] checks client certificates (`clientcert`, `cert`).
//!
//! # The roles file
//! One role per line; blank lines and lines starting with `#` are ignored:
//! ```text
//! # name:verifier [ATTRIBUTE ...]
//! replicator:SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey> REPLICATION
//! alice:md5<32 lower-case hex digits> SUPERUSER
//! bob: REPLICATION            # no password: password methods always fail for bob
//! "odd:name":md5... NOLOGIN   # a name with ':' (or starting with '"', '#' or a space) is
//!                             # double-quoted, "" standing for one "
//! ```
//! - The name runs to the first `:` (or is quoted); it is matched exactly.
//! - The verifier runs from the `:` to the first whitespace and is what
//!   `SELECT rolname, rolpassword FROM pg_authid` shows on a real server: a
//!   `SCRAM-SHA-256$...` secret or an `md5...` hash. Plaintext passwords are refused.
//!   Nothing (whitespace or end of line right after the `:`) means no password.
//! - Attributes, case-insensitive: `SUPERUSER`/`NOSUPERUSER`, `REPLICATION`/`NOREPLICATION`,
//!   `LOGIN`/`NOLOGIN` (default `LOGIN`). A word starting with `#` begins a comment.
//! - Role names containing a line break cannot be written.
//!
//! With no roles file, [`Roles::permissive`] makes every name a SUPERUSER with
//! REPLICATION and no password.
//!
//! # Exchanges (PostgreSQL 15 behaviour)
//! - `password`: CleartextPassword; checked against either verifier kind.
//! - `md5`: MD5Password with a random salt when the role's verifier is md5; otherwise
//!   (SCRAM verifier, no password, no such role) SCRAM, as `CheckPWChallengeAuth` does
//!   with `password_encryption = scram-sha-256`.
//! - `scram-sha-256`: SCRAM; an md5 verifier cannot be used and fails like a wrong password.
//! - A missing role, or one without a usable secret, still gets a full (mock) exchange
//!   with a stable per-name salt, and then `password authentication failed`.
//!
//! `Trust` and `Reject` are the caller's: answer AuthenticationOk, or
//! [`crate::hba::reject_error`]. After success, check [`authorize`].

pub mod cert;
mod roles;
mod scram;
mod verifier;

use bytes::Bytes;
use rand::RngCore;
use subtle::ConstantTimeEq;
use walstream_protocol::wire::password::parse_password;
use walstream_protocol::wire::{
    sqlstate, Authentication, ErrorFields, SaslInitialResponse, Severity,
};

use crate::hba::AuthMethod;
pub use roles::{authorize, Role, Roles, RolesError};
use scram::{Exchange, ScramServer};
pub use verifier::{ScramVerifier, Verifier};

/// The one SASL mechanism offered (no `-PLUS`: no TLS).
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The SASL mechanism with channel binding, offered over TLS.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// An authentication failure: always FATAL; send `fields` and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", fields.message)]
pub struct AuthError {
    /// The ErrorResponse to send (boxed: it is large).
    pub fields: Box<ErrorFields>,
    /// What PostgreSQL writes only to the server log (`errdetail_log`), e.g.
    /// `Role "x" does not exist.`.
    pub log_detail: Option<String>,
}

impl AuthError {
    /// A FATAL with this SQLSTATE and message.
    pub fn fatal(code: &str, message: impl Into<String>) -> AuthError {
        AuthError { fields: Box::new(ErrorFields::fatal(code, message)), log_detail: None }
    }

    /// With a `D` field.
    pub fn with_detail(mut self, detail: impl Into<String>) -> AuthError {
        self.fields.detail = Some(detail.into());
        self
    }

    /// `password authentication failed for user "u"` (28P01, `auth.c: auth_failed`).
    pub fn password_failed(user: &str, log_detail: Option<String>) -> AuthError {
        AuthError {
            log_detail,
            ..AuthError::fatal(
                sqlstate::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            )
        }
    }

    fn from_wire(error: &walstream_protocol::wire::WireError) -> AuthError {
        AuthError {
            fields: Box::new(ErrorFields::from_wire_error(error, Severity::Fatal)),
            log_detail: None,
        }
    }
}

/// What to do after a `p` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this Authentication request and wait for the next `p` message.
    Send(Authentication),
    /// Authenticated: send `last` (SASLFinal) if any, then AuthenticationOk.
    Done {
        /// The SASLFinal message to send before AuthenticationOk.
        last: Option<Authentication>,
    },
}

#[derive(Debug)]
enum State {
    /// Waiting for a PasswordMessage with the cleartext password.
    Cleartext { verifier: Option<Verifier> },
    /// Waiting for `md5` + md5hex(stored hex + salt).
    Md5 { salt: [u8; 4], stored: String },
    /// Waiting for SASLInitialResponse.
    SaslInitial(ScramServer),
    /// Waiting for a SASLResponse.
    Sasl(ScramServer),
    /// Finished (authenticated, or failed).
    Done,
}

/// One connection's password exchange.
#[derive(Debug)]
pub struct Authenticator {
    user: String,
    /// The server certificate's `tls-server-end-point` hash, on a TLS connection.
    tls_end_point: Option<Vec<u8>>,
    state: State,
    /// The log detail for a doomed exchange, reported when it fails.
    log_detail: Option<String>,
}

impl Authenticator {
    /// Starts the exchange for `user` (the startup packet's) with its role, if any.
    /// Returns the first request: CleartextPassword, MD5Password or SASL `SCRAM-SHA-256`.
    /// `Trust` returns AuthenticationOk and an authenticator that is already done;
    /// `Reject` should not get here (use [`crate::hba::reject_error`]) and asks for a
    /// cleartext password that is never accepted.
    pub fn start(
        method: AuthMethod,
        user: &str,
        role: Option<&Role>,
    ) -> (Authenticator, Authentication) {
        Self::start_tls(method, user, role, None)
    }

    /// [`Authenticator::start`] on a TLS connection whose server certificate hashes to
    /// `tls_end_point`: SCRAM-SHA-256-PLUS is offered first (`auth-scram.c:
    /// scram_get_mechanisms`).
    pub fn start_tls(
        method: AuthMethod,
        user: &str,
        role: Option<&Role>,
        tls_end_point: Option<Vec<u8>>,
    ) -> (Authenticator, Authentication) {
        let verifier = role.and_then(|r| r.verifier.clone());
        let log_detail = missing_password_detail(user, role);
        let mut auth =
            Authenticator { user: user.to_owned(), tls_end_point, state: State::Done, log_detail };
        let request = match (method, verifier) {
            (AuthMethod::Trust | AuthMethod::Cert, _) => Authentication::Ok,
            (AuthMethod::Reject, _) => auth.set(State::Cleartext { verifier: None }),
            (AuthMethod::Password, verifier) => auth.set(State::Cleartext { verifier }),
            (AuthMethod::Md5, Some(Verifier::Md5(stored))) => {
                let mut salt = [0u8; 4];
                rand::thread_rng().fill_bytes(&mut salt);
                auth.state = State::Md5 { salt, stored };
                Authentication::Md5Password { salt }
            }
            (_, Some(Verifier::Scram(v))) => {
                auth.set(State::SaslInitial(ScramServer::new(user, Some(&v))))
            }
            (_, other) => {
                if matches!(other, Some(Verifier::Md5(_))) {
                    auth.log_detail =
                        Some(format!("User \"{user}\" does not have a valid SCRAM secret."));
                }
                auth.set(State::SaslInitial(ScramServer::new(user, None)))
            }
        };
        (auth, request)
    }

    /// Sets the state and returns the request that opens it.
    fn set(&mut self, state: State) -> Authentication {
        let request = match state {
            State::Cleartext { .. } => Authentication::CleartextPassword,
            State::Md5 { salt, .. } => Authentication::Md5Password { salt },
            State::SaslInitial(_) | State::Sasl(_) => {
                let mut mechanisms = Vec::new();
                if self.tls_end_point.is_some() {
                    mechanisms.push(SCRAM_SHA_256_PLUS.to_owned());
                }
                mechanisms.push(SCRAM_SHA_256.to_owned());
                Authentication::Sasl { mechanisms }
            }
            State::Done => Authentication::Ok,
        };
        self.state = state;
        request
    }

    /// Feeds the body of one `p` message (the bytes after the length word).
    ///
    /// # Errors
    /// Every error is FATAL and ends the exchange: 28P01 `password authentication failed
    /// for user "u"`, 28P01 `empty password returned by client`, 08P01 `invalid password
    /// packet size`, 08P01 `client selected an invalid SASL authentication mechanism`,
    /// 08P01/0A000 for malformed SCRAM messages, 08P01 for a `p` message after the end.
    pub fn step(&mut self, body: Bytes) -> Result<AuthStep, AuthError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Cleartext { verifier } => {
                let password = parse_password(&body).map_err(|e| AuthError::from_wire(&e))?;
                match verifier {
                    Some(v) if v.verify_plain(&self.user, &password) => {
                        Ok(AuthStep::Done { last: None })
                    }
                    Some(_) => Err(self.failed(Some(self.mismatch_detail()))),
                    None => Err(self.failed(self.log_detail.clone())),
                }
            }
            State::Md5 { salt, stored } => {
                let response = parse_password(&body).map_err(|e| AuthError::from_wire(&e))?;
                if md5_response_matches(&stored, salt, &response) {
                    Ok(AuthStep::Done { last: None })
                } else {
                    Err(self.failed(Some(self.mismatch_detail())))
                }
            }
            State::SaslInitial(scram) => self.sasl_initial(scram, &body),
            State::Sasl(scram) => self.sasl_continue(scram, Some(&body)),
            State::Done => Err(AuthError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid frontend message type {}", b'p'),
            )),
        }
    }

    /// The error for a message of another type where a `p` message was expected
    /// (`auth.c: recv_password_packet`, `auth-sasl.c: CheckSASLAuth`).
    pub fn unexpected_message(&self, tag: u8) -> AuthError {
        let what = match self.state {
            State::SaslInitial(_) | State::Sasl(_) => "SASL",
            _ => "password",
        };
        AuthError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("expected {what} response, got message type {tag}"),
        )
    }

    /// Whether the exchange is over (authenticated or failed).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// SASLInitialResponse: the mechanism, then the optional first data.
    fn sasl_initial(&mut self, scram: ScramServer, body: &Bytes) -> Result<AuthStep, AuthError> {
        // auth-sasl.c: CheckSASLAuth reads the name, lets scram_init check it, then the data.
        let invalid_mechanism = || {
            AuthError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "client selected an invalid SASL authentication mechanism",
            )
        };
        let tls = self.tls_end_point.is_some();
        let known = |name: &[u8]| {
            name == SCRAM_SHA_256.as_bytes() || (tls && name == SCRAM_SHA_256_PLUS.as_bytes())
        };
        let name_end = body.iter().position(|&b| b == 0);
        if name_end.is_some_and(|end| !body.get(..end).is_some_and(known)) {
            return Err(invalid_mechanism());
        }
        let initial = SaslInitialResponse::parse(body).map_err(|e| AuthError::from_wire(&e))?;
        if !known(initial.mechanism.as_bytes()) {
            return Err(invalid_mechanism());
        }
        let mut scram = scram;
        let plus = initial.mechanism == SCRAM_SHA_256_PLUS;
        scram.set_channel_binding(
            self.tls_end_point.clone().filter(|_| plus),
            self.tls_end_point.is_some(),
        );
        self.sasl_continue(scram, initial.data.as_deref())
    }

    /// One SCRAM step (`auth-sasl.c: CheckSASLAuth` loop body).
    fn sasl_continue(
        &mut self,
        mut scram: ScramServer,
        data: Option<&[u8]>,
    ) -> Result<AuthStep, AuthError> {
        match scram.exchange(data)? {
            Exchange::Continue(out) => {
                self.state = State::Sasl(scram);
                Ok(AuthStep::Send(Authentication::SaslContinue(Bytes::from(out))))
            }
            Exchange::Success(out) => {
                Ok(AuthStep::Done { last: Some(Authentication::SaslFinal(Bytes::from(out))) })
            }
            Exchange::Failure => {
                let detail = self.log_detail.clone().or_else(|| Some(self.mismatch_detail()));
                Err(self.failed(detail))
            }
        }
    }

    fn failed(&self, log_detail: Option<String>) -> AuthError {
        AuthError::password_failed(&self.user, log_detail)
    }

    fn mismatch_detail(&self) -> String {
        format!("Password does not match for user \"{}\".", self.user)
    }
}

/// The log detail for a role that cannot pass (`crypt.c: get_role_password`).
fn missing_password_detail(user: &str, role: Option<&Role>) -> Option<String> {
    match role {
        None => Some(format!("Role \"{user}\" does not exist.")),
        Some(r) if r.verifier.is_none() => {
            Some(format!("User \"{user}\" has no password assigned."))
        }
        Some(_) => None,
    }
}

/// `crypt.c: md5_crypt_verify`: the response is `md5` + md5hex(stored hex + salt).
fn md5_response_matches(stored: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let hex = stored.strip_prefix("md5").unwrap_or(stored);
    let expected = format!("md5{}", verifier::md5_hex(&[hex.as_bytes(), &salt]));
    response.len() == expected.len() && bool::from(response.ct_eq(expected.as_bytes()))
}

/// Fuzz entry point: parse arbitrary bytes (lossily decoded) as a roles file; what parses
/// must print and parse back to the same roles. Panics only on that round trip failing.
pub fn fuzz_roles(data: &[u8]) {
    if let Ok(roles) = Roles::parse(&String::from_utf8_lossy(data)) {
        let again = Roles::parse(&roles.to_string());
        assert!(again.is_ok_and(|r| r == roles), "roles file round trip");
    }
}

/// Fuzz entry point: the first byte picks the method and the role; the rest is a series
/// of `p` bodies, each a length byte and that many bytes. Must never panic.
pub fn fuzz_scram(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let method =
        [AuthMethod::Password, AuthMethod::Md5, AuthMethod::ScramSha256][usize::from(selector % 3)];
    let verifier = match (selector / 3) % 3 {
        0 => None,
        1 => Verifier::parse("md56b765adf84f3c4341e8aab77ceda3bf1"),
        _ => Some(Verifier::Scram(ScramVerifier::from_password(b"pw", b"salt", 1))),
    };
    let role = Role { verifier, ..Role::new("u") };
    // Every other selector is a TLS connection, where SCRAM-SHA-256-PLUS is offered.
    let end_point = (selector % 2 == 1).then(|| vec![0x5a; 32]);
    let (mut auth, _) =
        Authenticator::start_tls(method, "u", (selector < 128).then_some(&role), end_point);
    while let Some((&len, tail)) = rest.split_first() {
        let (body, after) = tail.split_at(usize::from(len).min(tail.len()));
        rest = after;
        match auth.step(Bytes::copy_from_slice(body)) {
            Ok(AuthStep::Send(_)) => {}
            Ok(AuthStep::Done { .. }) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests;
