//! Opening a connection: TCP, SSL negotiation by `sslmode`, the StartupMessage,
//! authentication (trust, cleartext, MD5, SCRAM-SHA-256), then ParameterStatus and
//! BackendKeyData until ReadyForQuery (`fe-connect.c: PQconnectPoll`, `fe-auth.c`).

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
    /// TLS is not implemented: `sslmode=prefer` falls back to a plain connection when the
    /// server offers TLS, `require` and stricter fail.
    ///
    /// # Errors
    /// [`ConnError::Connect`] when the TCP connection fails, [`ConnError::Timeout`],
    /// [`ConnError::Config`] when TLS is required, [`ConnError::Server`] for the server's
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
        let stream = open_negotiated(info).await?;
        let mut conn = ReplicationConn::new(stream);
        let startup = startup_message(info, mode);
        let database = startup.param("database").unwrap_or_default().to_string();
        conn.write_buf.clear();
        StartupPacket::Startup(startup).encode(&mut conn.write_buf);
        conn.flush_write_buf().await?;
        conn.authenticate(info, &database).await?;
        conn.read_until_ready().await?;
        Ok(conn)
    }

    /// Answers authentication requests until AuthenticationOk (`fe-auth.c: pg_fe_sendauth`).
    async fn authenticate(&mut self, info: &ConnInfo, database: &str) -> Result<(), ConnError> {
        let mut scram: Option<ScramState> = None;
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
                    let state = start_scram(&mechanisms, &need_password(info, database)?)?;
                    let first = SaslInitialResponse {
                        mechanism: SCRAM_SHA_256.to_string(),
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

/// A SCRAM exchange in progress; `verified` once the server's proof checked out.
struct ScramState {
    client: ScramSha256,
    verified: bool,
}

/// SCRAM-SHA-256 without channel binding (we have no TLS, so never `-PLUS`).
fn start_scram(mechanisms: &[String], password: &str) -> Result<ScramState, ConnError> {
    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
        return Err(ConnError::Auth(
            "none of the server's SASL authentication mechanisms are supported".into(),
        ));
    }
    let client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    Ok(ScramState { client, verified: false })
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

/// A TCP connection that went through SSL negotiation as `sslmode` asks.
async fn open_negotiated(info: &ConnInfo) -> Result<TcpStream, ConnError> {
    match info.sslmode {
        SslMode::Disable | SslMode::Allow => open_tcp(info).await,
        SslMode::Prefer => {
            let mut stream = open_tcp(info).await?;
            if request_ssl(&mut stream).await? {
                // Offered TLS, which we cannot do: start over in plain text, as a libpq
                // without SSL support would have connected in the first place.
                tracing::debug!("server offers SSL; reconnecting without it");
                drop(stream);
                return open_tcp(info).await;
            }
            Ok(stream)
        }
        mode => {
            let mut stream = open_tcp(info).await?;
            if request_ssl(&mut stream).await? {
                Err(ConnError::Config(format!(
                    "sslmode value \"{mode}\" invalid when SSL support is not compiled in"
                )))
            } else {
                Err(ConnError::Config("server does not support SSL, but SSL was required".into()))
            }
        }
    }
}

async fn open_tcp(info: &ConnInfo) -> Result<TcpStream, ConnError> {
    let connect_error =
        |source| ConnError::Connect { host: info.host.clone(), port: info.port, source };
    let stream =
        TcpStream::connect((info.host.as_str(), info.port)).await.map_err(connect_error)?;
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

    #[test]
    fn scram_needs_the_plain_mechanism() {
        assert!(start_scram(&["SCRAM-SHA-256-PLUS".into()], "pw").is_err());
        assert!(start_scram(&["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()], "pw").is_ok());
        let unverified = start_scram(&["SCRAM-SHA-256".into()], "pw").ok();
        assert!(finish_scram(unverified).is_err());
        assert!(finish_scram(None).is_ok());
    }
}
