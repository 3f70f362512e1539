//! Opening a connection: TCP, SSL negotiation by `sslmode`, the StartupMessage,
//! authentication (trust, cleartext, MD5, SCRAM-SHA-256), then ParameterStatus and
//! BackendKeyData until ReadyForQuery (`fe-connect.c: PQconnectPoll`, `fe-auth.c`).

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::{self, Stream};
use walstream_protocol::wire::password::{password, sasl_response};
use walstream_protocol::wire::{
    Authentication, BackendMessage, SaslInitialResponse, StartupMessage, StartupPacket,
};

use super::{ConnError, ProtocolViolation, ReplicationConn, ReplicationMode};
use crate::conninfo::{ConnInfo, SslMode};

/// libpq's text when the server asks for a password and none is known (`fe-auth.c`).
pub const NO_PASSWORD_SUPPLIED: &str = "fe_sendauth: no password supplied";

impl ReplicationConn {
    /// Connects, authenticates and waits for ReadyForQuery, all within `connect_timeout`.
    ///
    /// `mode` picks the `replication` startup parameter: `true` for
    /// [`ReplicationMode::Physical`] (database `replication` unless `dbname` is given, as
    /// pg_receivewal sends), `database` for [`ReplicationMode::Logical`], none for `Off`.
    /// TLS follows `sslmode` as libpq does: `prefer` tries TLS and, when the handshake or
    /// the authentication over it fails, once more without; `allow` tries without and,
    /// when the server refuses, once more with TLS; `require` and stricter insist.
    ///
    /// # Errors
    /// [`ConnError::Connect`] when the TCP connection fails, [`ConnError::Timeout`],
    /// [`ConnError::Config`] when TLS is required and the server has none,
    /// [`ConnError::Tls`] for a handshake or certificate that fails, [`ConnError::Server`] for the server's
    /// FATAL (e.g. 28P01 wrong password), [`ConnError::Auth`] (`fe_sendauth: no password
    /// supplied`, unsupported methods, a SCRAM server proof that does not verify),
    /// [`ConnError::Protocol`] for unexpected messages, [`ConnError::Io`], [`ConnError::Closed`].
    pub async fn connect(
        info: &ConnInfo,
        mode: ReplicationMode,
    ) -> Result<ReplicationConn, ConnError> {
        let attempt = Self::connect_unbounded(info, mode);
        match info.connect_timeout {
            Some(limit) => {
                tokio::time::timeout(limit, attempt).await.map_err(|_| ConnError::Timeout)?
            }
            None => attempt.await,
        }
    }

    async fn connect_unbounded(
        info: &ConnInfo,
        mode: ReplicationMode,
    ) -> Result<ReplicationConn, ConnError> {
        // fe-connect.c: PQconnectPoll's allow_ssl_try / wait_ssl_try.
        let first_tls = !matches!(info.sslmode, SslMode::Disable | SslMode::Allow);
        match Self::attempt(info, mode, first_tls).await {
            Ok(conn) => Ok(conn),
            Err(failed) => {
                let retry = match info.sslmode {
                    SslMode::Prefer => failed.in_tls,
                    SslMode::Allow => failed.refused_in_auth,
                    _ => false,
                };
                if !retry {
                    return Err(failed.error);
                }
                tracing::debug!("{}; trying again with sslmode toggled", failed.error);
                Self::attempt(info, mode, !first_tls).await.map_err(|f| f.error)
            }
        }
    }

    /// One connection attempt, with TLS when `tls` (and the server offers it).
    async fn attempt(
        info: &ConnInfo,
        mode: ReplicationMode,
        tls: bool,
    ) -> Result<ReplicationConn, Failed> {
        let plain = |error| Failed { error, in_tls: false, refused_in_auth: false };
        let stream = open_negotiated(info, tls).await.map_err(|(error, in_tls)| Failed {
            error,
            in_tls,
            refused_in_auth: false,
        })?;
        let in_tls = stream.is_tls();
        let mut conn = ReplicationConn::new(stream);
        let startup = startup_message(info, mode);
        let database = startup.param("database").unwrap_or_default().to_string();
        conn.write_buf.clear();
        StartupPacket::Startup(startup).encode(&mut conn.write_buf);
        conn.flush_write_buf().await.map_err(plain)?;
        if let Err(error) = conn.authenticate(info, &database).await {
            let refused_in_auth = matches!(error, ConnError::Server(_));
            return Err(Failed { in_tls: in_tls && refused_in_auth, refused_in_auth, error });
        }
        conn.read_until_ready().await.map_err(plain)?;
        Ok(conn)
    }

    /// Answers authentication requests until AuthenticationOk (`fe-auth.c: pg_fe_sendauth`).
    async fn authenticate(&mut self, info: &ConnInfo, database: &str) -> Result<(), ConnError> {
        let mut scram: Option<ScramState> = None;
        let binding = ChannelBindingMode::of(info);
        loop {
            let request = match self.next_message().await? {
                BackendMessage::Authentication(request) => request,
                BackendMessage::ErrorResponse(fields) => {
                    return Err(ConnError::Server(Box::new(fields)))
                }
                BackendMessage::NegotiateProtocolVersion {
                    newest_version,
                    unrecognized_options,
                } => {
                    tracing::debug!(newest_version, ?unrecognized_options, "protocol negotiated");
                    continue;
                }
                other => return Err(unexpected_during_auth(&other)),
            };
            check_expected_request(binding, &request, scram.as_ref())?;
            match request {
                Authentication::Ok => return finish_scram(scram),
                Authentication::CleartextPassword => {
                    let pw = need_password(info, database)?;
                    self.send(&password(pw.as_bytes())).await?;
                }
                Authentication::Md5Password { salt } => {
                    let pw = need_password(info, database)?;
                    let hash = md5_hash(info.user.as_bytes(), pw.as_bytes(), salt);
                    self.send(&password(hash.as_bytes())).await?;
                }
                Authentication::Sasl { mechanisms } => {
                    let tls = TlsState {
                        in_use: self.stream.is_tls(),
                        end_point: self.stream.server_end_point(),
                    };
                    let pw = need_password(info, database)?;
                    let state = start_scram(&mechanisms, &pw, binding, &tls)?;
                    let first = SaslInitialResponse {
                        mechanism: state.mechanism.to_string(),
                        data: Some(Bytes::copy_from_slice(state.client.message())),
                    };
                    self.send(&first.to_message()).await?;
                    scram = Some(state);
                }
                Authentication::SaslContinue(data) => {
                    let state = scram.as_mut().ok_or_else(sasl_out_of_order)?;
                    state.client.update(&data).map_err(|e| ConnError::Auth(e.to_string()))?;
                    let reply = Bytes::copy_from_slice(state.client.message());
                    self.send(&sasl_response(reply)).await?;
                }
                Authentication::SaslFinal(data) => {
                    let state = scram.as_mut().ok_or_else(sasl_out_of_order)?;
                    state.client.finish(&data).map_err(|e| ConnError::Auth(e.to_string()))?;
                    state.verified = true;
                }
                other => return Err(unsupported_method(&other)),
            }
        }
    }

    /// Records ParameterStatus and BackendKeyData until ReadyForQuery.
    async fn read_until_ready(&mut self) -> Result<(), ConnError> {
        loop {
            match self.next_message().await? {
                BackendMessage::BackendKeyData { pid, secret_key } => {
                    self.backend_key = Some((pid, secret_key));
                }
                BackendMessage::ReadyForQuery(_) => return Ok(()),
                BackendMessage::ErrorResponse(fields) => {
                    return Err(ConnError::Server(Box::new(fields)))
                }
                other => return Err(super::query::unexpected(&other, "during startup")),
            }
        }
    }
}

/// A failed attempt, and what libpq's retry rules look at.
struct Failed {
    error: ConnError,
    /// Failed in the TLS handshake, or refused by the server over TLS.
    in_tls: bool,
    /// The server refused during authentication (an ErrorResponse before
    /// AuthenticationOk).
    refused_in_auth: bool,
}

/// A SCRAM exchange in progress; `verified` once the server's proof checked out.
struct ScramState {
    client: ScramSha256,
    /// The mechanism selected (`SCRAM-SHA-256-PLUS` when channel-bound).
    mechanism: &'static str,
    verified: bool,
}

/// `channel_binding` (`fe-connect.c`; `PGCHANNELBINDING`; default `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelBindingMode {
    Disable,
    Prefer,
    Require,
}

impl ChannelBindingMode {
    /// The connection's setting (the value was checked when the conninfo was parsed).
    fn of(info: &ConnInfo) -> ChannelBindingMode {
        match info.channel_binding() {
            "disable" => ChannelBindingMode::Disable,
            "require" => ChannelBindingMode::Require,
            _ => ChannelBindingMode::Prefer,
        }
    }
}

/// What SCRAM needs of the connection's TLS.
struct TlsState {
    in_use: bool,
    /// The server certificate's `tls-server-end-point` hash.
    end_point: Option<Vec<u8>>,
}

/// `fe-auth.c: check_expected_areq` for `channel_binding=require`: only SASL requests,
/// and AuthenticationOk only after a channel-bound SCRAM exchange.
fn check_expected_request(
    binding: ChannelBindingMode,
    request: &Authentication,
    scram: Option<&ScramState>,
) -> Result<(), ConnError> {
    if binding != ChannelBindingMode::Require {
        return Ok(());
    }
    match request {
        Authentication::Sasl { .. }
        | Authentication::SaslContinue(_)
        | Authentication::SaslFinal(_) => Ok(()),
        Authentication::Ok if scram.is_some_and(|s| s.mechanism == SCRAM_SHA_256_PLUS) => Ok(()),
        Authentication::Ok => Err(ConnError::Auth(
            "channel binding required, but server authenticated client without channel binding"
                .into(),
        )),
        _ => Err(ConnError::Auth(
            "channel binding required but not supported by server's authentication request".into(),
        )),
    }
}

/// `fe-auth.c: pg_SASL_init`: SCRAM-SHA-256-PLUS over TLS unless `channel_binding` is
/// `disable`, else SCRAM-SHA-256 (flag `y` over TLS: the client could bind, the server
/// offered not to; `fe-auth-scram.c: build_client_first_message`).
fn start_scram(
    mechanisms: &[String],
    password: &str,
    binding: ChannelBindingMode,
    tls: &TlsState,
) -> Result<ScramState, ConnError> {
    if binding == ChannelBindingMode::Require && !tls.in_use {
        return Err(ConnError::Auth("channel binding required, but SSL not in use".into()));
    }
    let mut selected = None;
    if mechanisms.iter().any(|m| m == SCRAM_SHA_256_PLUS) {
        if !tls.in_use {
            return Err(ConnError::Auth(
                "server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection".into(),
            ));
        }
        if binding != ChannelBindingMode::Disable {
            selected = Some(SCRAM_SHA_256_PLUS);
        }
    }
    if selected.is_none() && mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
        selected = Some(SCRAM_SHA_256);
    }
    if binding == ChannelBindingMode::Require && selected != Some(SCRAM_SHA_256_PLUS) {
        return Err(ConnError::Auth(
            "channel binding is required, but server did not offer an authentication method that supports channel binding".into(),
        ));
    }
    let Some(mechanism) = selected else {
        return Err(ConnError::Auth(
            "none of the server's SASL authentication mechanisms are supported".into(),
        ));
    };
    let channel = if mechanism == SCRAM_SHA_256_PLUS {
        let hash = tls
            .end_point
            .clone()
            .ok_or_else(|| ConnError::Auth("could not get server certificate hash".into()))?;
        ChannelBinding::tls_server_end_point(hash)
    } else if tls.in_use && binding != ChannelBindingMode::Disable {
        ChannelBinding::unrequested()
    } else {
        ChannelBinding::unsupported()
    };
    let client = ScramSha256::new(password.as_bytes(), channel);
    Ok(ScramState { client, mechanism, verified: false })
}

/// AuthenticationOk is only accepted after the server proved it knows the password.
fn finish_scram(scram: Option<ScramState>) -> Result<(), ConnError> {
    match scram {
        Some(ScramState { verified: false, .. }) => Err(ConnError::Auth(
            "server sent AuthenticationOk before completing SCRAM authentication".into(),
        )),
        _ => Ok(()),
    }
}

fn sasl_out_of_order() -> ConnError {
    ConnError::Protocol(ProtocolViolation::SaslOutOfOrder)
}

fn need_password(info: &ConnInfo, database: &str) -> Result<String, ConnError> {
    info.password_for(database)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ConnError::Auth(NO_PASSWORD_SUPPLIED.into()))
}

// fe-auth.c: pg_fe_sendauth
fn unsupported_method(request: &Authentication) -> ConnError {
    ConnError::Auth(match request {
        Authentication::KerberosV5 => "Kerberos 5 authentication not supported".into(),
        Authentication::Gss | Authentication::GssContinue(_) => {
            "GSSAPI authentication not supported".into()
        }
        Authentication::Sspi => "SSPI authentication not supported".into(),
        other => format!("authentication method {} not supported", other.code()),
    })
}

// fe-connect.c: PQconnectPoll (CONNECTION_AWAITING_RESPONSE)
fn unexpected_during_auth(msg: &BackendMessage) -> ConnError {
    ConnError::Protocol(ProtocolViolation::NotAuthentication(msg.tag()))
}

/// The StartupMessage in libpq's parameter order (`fe-protocol3.c: build_startup_packet`).
fn startup_message(info: &ConnInfo, mode: ReplicationMode) -> StartupMessage {
    let database = match mode {
        ReplicationMode::Physical => info.dbname.as_deref().unwrap_or("replication"),
        ReplicationMode::Logical | ReplicationMode::Off => info.database(),
    };
    let mut params = vec![("user", info.user.as_str()), ("database", database)];
    match mode {
        ReplicationMode::Physical => params.push(("replication", "true")),
        ReplicationMode::Logical => params.push(("replication", "database")),
        ReplicationMode::Off => {}
    }
    if let Some(options) = info.option("options").filter(|o| !o.is_empty()) {
        params.push(("options", options));
    }
    let app = info.application_name.as_deref().or(info.option("fallback_application_name"));
    if let Some(app) = app.filter(|a| !a.is_empty()) {
        params.push(("application_name", app));
    }
    if let Some(enc) = info.option("client_encoding").filter(|e| !e.is_empty() && *e != "auto") {
        params.push(("client_encoding", enc));
    }
    StartupMessage::new(params.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
}

/// A TCP connection that went through SSL negotiation (when `tls`) as `sslmode` asks.
/// The error comes with whether it failed in the TLS handshake.
async fn open_negotiated(info: &ConnInfo, tls: bool) -> Result<Stream, (ConnError, bool)> {
    let mut stream = open_tcp(info).await.map_err(|e| (e, false))?;
    if !tls {
        return Ok(Stream::Plain(stream));
    }
    if !request_ssl(&mut stream).await.map_err(|e| (e, false))? {
        if info.sslmode.requires_tls() {
            let e = ConnError::Config("server does not support SSL, but SSL was required".into());
            return Err((e, false));
        }
        return Ok(Stream::Plain(stream));
    }
    let at = server_identity(info, &stream);
    tls::handshake(info, stream).await.map_err(|message| (ConnError::Tls { at, message }, true))
}

/// The host to connect to: `hostaddr` when given, else `host`.
fn connect_host(info: &ConnInfo) -> &str {
    info.option("hostaddr").filter(|a| !a.is_empty()).unwrap_or(&info.host)
}

/// The server as libpq's messages name it (`fe-connect.c: emitHostIdentityInfo`):
/// `"localhost" (127.0.0.1), port 5432`, the address only when it differs from the name.
fn server_identity(info: &ConnInfo, stream: &TcpStream) -> String {
    let shown = connect_host(info);
    match stream.peer_addr() {
        Ok(addr) if addr.ip().to_string() != shown => {
            format!("\"{shown}\" ({}), port {}", addr.ip(), info.port)
        }
        _ => format!("\"{shown}\", port {}", info.port),
    }
}

async fn open_tcp(info: &ConnInfo) -> Result<TcpStream, ConnError> {
    let connect_error =
        |source| ConnError::Connect { host: info.host.clone(), port: info.port, source };
    let stream =
        TcpStream::connect((connect_host(info), info.port)).await.map_err(connect_error)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends SSLRequest; `true` when the server answers `S`, `false` for `N`.
async fn request_ssl(stream: &mut TcpStream) -> Result<bool, ConnError> {
    let mut buf = BytesMut::new();
    StartupPacket::SslRequest.encode(&mut buf);
    stream.write_all(&buf).await?;
    let answer = match stream.read_u8().await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ConnError::Closed),
        Err(e) => return Err(e.into()),
    };
    match answer {
        b'S' => Ok(true),
        b'N' => Ok(false),
        other => Err(ConnError::Protocol(ProtocolViolation::SslResponse(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(s: &str) -> ConnInfo {
        ConnInfo::parse_with_env(s, &|k| (k == "USER").then(|| "me".to_string())).unwrap()
    }

    #[test]
    fn physical_startup_like_pg_receivewal() {
        let m = startup_message(&info("application_name=pg_receivewal"), ReplicationMode::Physical);
        let got: Vec<_> = m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            got,
            [
                "user=me",
                "database=replication",
                "replication=true",
                "application_name=pg_receivewal"
            ]
        );
    }

    #[test]
    fn logical_and_plain_startup() {
        let i =
            info("dbname=db options='-c x=1' fallback_application_name=fb client_encoding=UTF8");
        let m = startup_message(&i, ReplicationMode::Logical);
        assert_eq!(m.param("database"), Some("db"));
        assert_eq!(m.param("replication"), Some("database"));
        assert_eq!(m.param("options"), Some("-c x=1"));
        assert_eq!(m.param("application_name"), Some("fb"));
        assert_eq!(m.param("client_encoding"), Some("UTF8"));
        let m = startup_message(&info(""), ReplicationMode::Off);
        assert_eq!(m.param("database"), Some("me"));
        assert_eq!(m.param("replication"), None);
    }

    fn err(r: Result<ScramState, ConnError>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn scram_mechanism_selection_as_libpq() {
        use ChannelBindingMode::*;
        let plain = TlsState { in_use: false, end_point: None };
        let tls = TlsState { in_use: true, end_point: Some(vec![1; 32]) };
        let both: Vec<String> = vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()];
        let only: Vec<String> = vec!["SCRAM-SHA-256".into()];
        assert_eq!(
            err(start_scram(&both, "pw", Prefer, &plain)),
            "server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection"
        );
        assert_eq!(start_scram(&both, "pw", Prefer, &tls).unwrap().mechanism, SCRAM_SHA_256_PLUS);
        assert_eq!(start_scram(&both, "pw", Disable, &tls).unwrap().mechanism, SCRAM_SHA_256);
        assert_eq!(start_scram(&only, "pw", Prefer, &plain).unwrap().mechanism, SCRAM_SHA_256);
        assert_eq!(
            err(start_scram(&only, "pw", Require, &plain)),
            "channel binding required, but SSL not in use"
        );
        assert_eq!(
            err(start_scram(&only, "pw", Require, &tls)),
            "channel binding is required, but server did not offer an authentication method that supports channel binding"
        );
        assert_eq!(
            err(start_scram(&["SCRAM-SHA-512".into()], "pw", Prefer, &plain)),
            "none of the server's SASL authentication mechanisms are supported"
        );
        let unverified = start_scram(&only, "pw", Prefer, &plain).ok();
        assert!(finish_scram(unverified).is_err());
        assert!(finish_scram(None).is_ok());
    }

    #[test]
    fn channel_binding_require_refuses_what_libpq_refuses() {
        use ChannelBindingMode::*;
        let ok = Authentication::Ok;
        let md5 = Authentication::Md5Password { salt: [0; 4] };
        assert!(check_expected_request(Prefer, &ok, None).is_ok());
        assert_eq!(
            check_expected_request(Require, &ok, None).unwrap_err().to_string(),
            "channel binding required, but server authenticated client without channel binding"
        );
        assert_eq!(
            check_expected_request(Require, &md5, None).unwrap_err().to_string(),
            "channel binding required but not supported by server's authentication request"
        );
    }
}
