//! The postmaster: the accept loop, the startup of each connection, and shutdown
//! (`postmaster/postmaster.c`, `tcop/backend_startup`, `utils/init/postinit.c`).
//!
//! Each accepted socket gets a task that answers SSLRequest with `S` and a TLS handshake
//! when `ssl` is on (`N` otherwise), GSSENCRequest with `N`, reads the startup packet (or a CancelRequest), registers the backend, authenticates it by
//! the hba rules and the roles, sends the ParameterStatus set of a PostgreSQL 15 server
//! and BackendKeyData, and runs the backend loop.
//!
//! Shutdown follows `pg_ctl stop`: smart waits for client backends to end, fast
//! terminates them; then walsenders stop (streaming ones finish the shutdown handshake,
//! idle ones are terminated), then [`Postmaster::run`] returns. Immediate returns at once.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use walstream_protocol::wire::{
    sqlstate, Authentication, BackendMessage, ErrorFields, FrontendMessage, MessageLimits,
    ReplicationMode, Severity, StartupMessage, StartupPacket, WireError,
};

use crate::auth::{authorize, AuthStep, Authenticator, Roles};
use crate::backend::{self, query::SessionInfo, BackendEnd, Connection, Mode, QueryHandler};
use crate::config::{Settings, SERVER_VERSION};
use crate::conn::{ConnError, PqReader, PqWriter};
use crate::hba::{self, AuthMethod, HbaFile};
use crate::registry::{AuthFailure, BackendEntry, BackendType, Registry};
use crate::tls::{ReadHalf, ServerTls, WriteHalf};
use crate::tls_info::SslStatus;
use crate::walsender::{WalSender, WalSenderContext};

/// How to shut down (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShutdownMode {
    /// Wait for client backends to end.
    Smart,
    /// Terminate client backends.
    Fast,
    /// Stop at once.
    Immediate,
}

impl ShutdownMode {
    /// As `pg_ctl -m` and the postmaster's log name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownMode::Smart => "smart",
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

/// Everything connections share.
pub struct Server {
    /// The settings.
    pub settings: Settings,
    /// Authentication rules.
    pub hba: HbaFile,
    /// Roles and their verifiers.
    pub roles: Roles,
    /// The backend table.
    pub registry: Arc<Registry>,
    /// What walsenders share.
    pub walsender: Arc<WalSenderContext>,
    /// Answers SQL on ordinary connections.
    pub handler: Arc<dyn QueryHandler>,
    /// TLS, when `ssl` is on.
    pub tls: Option<Arc<ServerTls>>,
    /// Set once a shutdown begins: new connections are refused.
    shutting_down: watch::Sender<bool>,
    /// Tells walsenders to stop.
    stop_walsenders: watch::Sender<bool>,
}

/// The listening server.
pub struct Postmaster {
    listener: TcpListener,
    server: Arc<Server>,
    tracker: TaskTracker,
    /// Whether [`Postmaster::run`] logs "database system is shut down" at its end (not
    /// when its owner still has a shutdown checkpoint to write and says it then).
    logs_shut_down: bool,
}

/// What [`Postmaster::bind`] needs besides the address.
pub struct ServerParts {
    /// The settings.
    pub settings: Settings,
    /// Authentication rules.
    pub hba: HbaFile,
    /// Roles.
    pub roles: Roles,
    /// Where WAL comes from.
    pub source: Arc<dyn crate::walsource::WalSource>,
    /// The replication slots.
    pub slots: Arc<crate::slots::SlotStore>,
    /// Answers SQL on ordinary connections.
    pub handler: Arc<dyn QueryHandler>,
    /// The backend table (shared with a handler that answers `pg_terminate_backend`).
    pub registry: Arc<Registry>,
    /// What `BASE_BACKUP` backs up; `None` refuses the command.
    pub backup: Option<Arc<dyn crate::basebackup::BackupSource>>,
    /// TLS ([`ServerTls::load`]); `None` answers SSLRequest with `N`.
    pub tls: Option<Arc<ServerTls>>,
}

impl Postmaster {
    /// Binds the listening socket.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(addr: SocketAddr, parts: ServerParts) -> std::io::Result<Postmaster> {
        let listener = TcpListener::bind(addr).await?;
        let (stop_walsenders, stop_rx) = watch::channel(false);
        let walsender = Arc::new(WalSenderContext {
            settings: parts.settings.clone(),
            source: parts.source,
            slots: parts.slots,
            stop: stop_rx,
            backup: parts.backup,
        });
        let server = Arc::new(Server {
            settings: parts.settings,
            hba: parts.hba,
            roles: parts.roles,
            registry: parts.registry,
            walsender,
            handler: parts.handler,
            tls: parts.tls,
            shutting_down: watch::Sender::new(false),
            stop_walsenders,
        });
        Ok(Postmaster { listener, server, tracker: TaskTracker::new(), logs_shut_down: true })
    }

    /// The bound address (the port, when bound to port 0).
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared server state (registry, settings).
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// Leaves "database system is shut down" to the owner, which logs it after its own
    /// shutdown work (a node's shutdown checkpoint).
    pub fn owner_logs_shut_down(mut self) -> Self {
        self.logs_shut_down = false;
        self
    }

    /// Accepts connections until `shutdown` names a mode, then shuts down in that mode.
    pub async fn run(self, mut shutdown: watch::Receiver<Option<ShutdownMode>>) {
        info!("database system is ready to accept connections");
        let mut accept_failures = AcceptFailures::default();
        let mode = loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    match (changed, *shutdown.borrow_and_update()) {
                        (_, Some(mode)) => break mode,
                        (Err(_), None) => break ShutdownMode::Fast,
                        (Ok(()), None) => {}
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let server = self.server.clone();
                        // postmaster.c: canAcceptConnections, CAC_TOOMANY — past the limit a
                        // connection only gets its startup packet read (as PostgreSQL's
                        // dead-end backend) and "sorry, too many clients already".
                        let too_many = self.tracker.len() >= live_children_limit(&server.settings);
                        self.tracker.spawn(async move {
                            serve_connection(server, socket, peer, too_many).await
                        });
                    }
                    Err(e) => {
                        // pqcomm.c: StreamConnection sleeps 100 ms after a failed accept
                        // (at the descriptor limit the socket stays readable, and an
                        // immediate retry would spin); the log line is rate-limited.
                        accept_failures.failed(&e, std::time::Instant::now());
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                    }
                },
            }
        };
        self.shutdown(mode, shutdown).await;
    }

    async fn shutdown(
        self,
        mut mode: ShutdownMode,
        mut signal: watch::Receiver<Option<ShutdownMode>>,
    ) {
        info!("received {} shutdown request", mode.as_str());
        self.server.shutting_down.send_replace(true);
        // Keep refusing new connections with 57P03 while shutting down.
        let refusing = {
            let server = self.server.clone();
            let listener = self.listener;
            let tracker = self.tracker.clone();
            tokio::spawn(async move {
                while let Ok((socket, peer)) = listener.accept().await {
                    let server = server.clone();
                    tracker
                        .spawn(async move { serve_connection(server, socket, peer, false).await });
                }
            })
        };
        let registry = self.server.registry.clone();
        loop {
            match mode {
                ShutdownMode::Immediate => {
                    refusing.abort();
                    return;
                }
                ShutdownMode::Fast => {
                    for e in registry.list() {
                        if e.backend_type == BackendType::ClientBackend {
                            e.terminate();
                        }
                    }
                }
                ShutdownMode::Smart => {}
            }
            tokio::select! {
                _ = registry.wait_until_none(BackendType::ClientBackend) => break,
                _ = signal.changed() => {
                    if let Some(m) = *signal.borrow_and_update() {
                        mode = mode.max(m);
                    }
                }
            }
        }
        // Last, the walsenders (postmaster.c: PM_SHUTDOWN_2).
        self.server.stop_walsenders.send_replace(true);
        tokio::select! {
            _ = registry.wait_until_none(BackendType::WalSender) => {}
            _ = async {
                loop {
                    let _ = signal.changed().await;
                    if *signal.borrow() == Some(ShutdownMode::Immediate) { break; }
                }
            } => {}
        }
        refusing.abort();
        if self.logs_shut_down {
            info!("database system is shut down");
        }
    }
}

/// One connection, from the first byte to the end.
/// The wait after a failed `accept` (`pqcomm.c: StreamConnection`'s `pg_usleep(100000L)`).
const ACCEPT_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// At most one "could not accept new connection" line per this interval.
const ACCEPT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// `postmaster.c: MaxLivePostmasterChildren`: connections alive at once, those still in
/// startup included (twice the backends that may exist, as PostgreSQL allows).
fn live_children_limit(settings: &Settings) -> usize {
    2 * (settings.max_connections as usize + settings.max_wal_senders as usize)
}

/// Failed `accept`s, logged at most once per [`ACCEPT_LOG_INTERVAL`] with a count of the
/// ones not logged.
#[derive(Debug, Default)]
struct AcceptFailures {
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    /// Records a failure at `now`; returns the line to log, if one is due.
    fn note(&mut self, e: &std::io::Error, now: std::time::Instant) -> Option<String> {
        let due = self.last_logged.is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_INTERVAL);
        if !due {
            self.unlogged += 1;
            return None;
        }
        let more = std::mem::take(&mut self.unlogged);
        self.last_logged = Some(now);
        Some(match more {
            0 => format!("could not accept new connection: {e}"),
            n => format!(
                "could not accept new connection: {e} ({n} more since the last such message)"
            ),
        })
    }

    fn failed(&mut self, e: &std::io::Error, now: std::time::Instant) {
        if let Some(line) = self.note(e, now) {
            warn!("{line}");
        }
    }
}

async fn serve_connection(
    server: Arc<Server>,
    socket: TcpStream,
    peer: SocketAddr,
    too_many: bool,
) {
    let _ = socket.set_nodelay(true);
    let (rd, wr) = crate::tls::split_plain(socket);
    let mut reader = PqReader::new(rd, MessageLimits::default());
    let mut writer = PqWriter::with_socket(wr, crate::tls::WriteHalf::plain_socket);
    let timeout = server.settings.authentication_timeout;
    let started =
        tokio::time::timeout(timeout, startup(&server, &mut reader, &mut writer, peer, too_many))
            .await;
    let (startup_msg, handle) = match started {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return,
        Ok(Err(fatal)) => {
            return fail(&mut writer, fatal).await;
        }
        Err(_) => {
            let fields = ErrorFields::fatal(
                sqlstate::QUERY_CANCELED,
                "canceling authentication due to timeout",
            );
            return fail(&mut writer, Some(fields)).await;
        }
    };
    let entry = handle.entry().clone();
    let replication = startup_msg.replication().unwrap_or(ReplicationMode::Off);
    let info = {
        let st = entry.status();
        SessionInfo {
            pid: entry.pid,
            user: st.user.clone(),
            database: st.database.clone(),
            application_name: st.application_name.clone(),
            settings: startup_msg.session_settings(),
        }
    };
    let mode = match replication {
        ReplicationMode::Off => Mode::Sql(server.handler.session(&info)),
        ReplicationMode::Physical => Mode::WalSender(
            Box::new(WalSender::new(server.walsender.clone(), entry.clone(), replication)),
            None,
        ),
        ReplicationMode::Logical => Mode::WalSender(
            Box::new(WalSender::new(server.walsender.clone(), entry.clone(), replication)),
            Some(server.handler.session(&info)),
        ),
    };
    let mut conn = Connection { reader, writer, entry, replication };
    let end = backend::run(&mut conn, mode).await;
    if let BackendEnd::Io(e) = &end {
        debug!("connection ended: {e}");
    }
    let _ = conn.writer.close().await;
    drop(handle);
}

/// Sends a FATAL (when there is one to send) and closes.
async fn fail(writer: &mut PqWriter<WriteHalf>, fatal: Option<ErrorFields>) {
    if let Some(fields) = fatal {
        info!("FATAL:  {}", fields.message);
        writer.send_error(fields);
    }
    let _ = writer.close().await;
}

/// A FATAL, or `None` to close without a word (PostgreSQL's COMMERROR cases).
type StartupError = Option<ErrorFields>;

fn wire_fatal(e: &WireError) -> StartupError {
    e.reported_to_client().then(|| {
        let mut f = ErrorFields::from_wire_error(e, Severity::Fatal);
        if let Some(h) = e.hint() {
            f = f.with_hint(h);
        }
        f
    })
}

/// SSL/GSS negotiation, the startup packet, limits, authentication and the greeting
/// (`ProcessStartupPacket`, `InitPostgres`). `Ok(None)`: the connection ends quietly
/// (a CancelRequest, or the client left).
async fn startup(
    server: &Arc<Server>,
    reader: &mut PqReader<ReadHalf>,
    writer: &mut PqWriter<WriteHalf>,
    peer: SocketAddr,
    too_many: bool,
) -> Result<Option<(StartupMessage, crate::registry::BackendHandle)>, StartupError> {
    let (mut ssl_done, mut gss_done) = (false, false);
    let mut ssl_status: Option<SslStatus> = None;
    let msg = loop {
        let packet = match reader.read_startup().await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(ConnError::Wire(e)) => return Err(wire_fatal(&e)),
            Err(ConnError::Io(_)) => return Ok(None),
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                let ssl = matches!(packet, StartupPacket::SslRequest);
                if (ssl && ssl_done) || (!ssl && gss_done) {
                    let minor = if ssl { 5679 } else { 5680 };
                    return Err(wire_fatal(&WireError::UnsupportedProtocol { major: 1234, minor }));
                }
                if ssl {
                    ssl_done = true;
                } else {
                    gss_done = true;
                }
                let tls = server.tls.as_ref().filter(|_| ssl);
                writer.send_raw(if tls.is_some() { b"S" } else { b"N" });
                writer.flush().await.map_err(|_| None)?;
                if reader.has_buffered_data() {
                    return Err(Some(
                        ErrorFields::fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            if ssl {
                                "received unencrypted data after SSL request"
                            } else {
                                "received unencrypted data after GSSAPI encryption request"
                            },
                        )
                        .with_detail("This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."),
                    ));
                }
                if let Some(tls) = tls {
                    // postmaster.c: after the handshake a GSSENCRequest is refused too.
                    gss_done = true;
                    ssl_status =
                        Some(crate::tls::start_tls(tls, reader, writer).await.ok_or(None)?);
                }
            }
            StartupPacket::CancelRequest { pid, key } => {
                // postmaster.c: processCancelRequest; never answered.
                if !server.registry.cancel_request(pid, key) {
                    debug!(pid, "CancelRequest for no matching backend");
                }
                return Ok(None);
            }
            StartupPacket::Startup(msg) => break msg,
        }
    };
    let replication = msg.replication().map_err(|e| wire_fatal(&e))?;
    if let Some(npv) = msg.negotiate_protocol_version() {
        writer.send(&npv);
    }
    let user = msg.user().unwrap_or_default().to_string();
    let database = msg.database().unwrap_or(&user).to_string();
    if *server.shutting_down.borrow() {
        return Err(Some(ErrorFields::fatal(
            sqlstate::CANNOT_CONNECT_NOW,
            "the database system is shutting down",
        )));
    }
    let backend_type = if replication == ReplicationMode::Off {
        BackendType::ClientBackend
    } else {
        BackendType::WalSender
    };
    // proc.c: InitProcess
    if too_many
        || (backend_type == BackendType::ClientBackend
            && server.registry.count(backend_type) >= server.settings.max_connections as usize)
    {
        return Err(Some(ErrorFields::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            "sorry, too many clients already",
        )));
    }
    let handle = server.registry.register(backend_type, peer);
    {
        let mut st = handle.entry().status();
        st.user = user.clone();
        st.database = database.clone();
        st.application_name = msg.param("application_name").unwrap_or_default().to_string();
        st.ssl = ssl_status.clone();
    }
    let conn = hba::ConnInfo {
        user: &user,
        database: &database,
        replication: replication == ReplicationMode::Physical,
        ssl: ssl_status.is_some(),
    };
    let role = authenticate(server, reader, writer, peer, &conn, ssl_status.as_ref()).await?;
    // What follows fails after AuthenticationOk, as in PostgreSQL, whose checks of the
    // role, the startup options and the walsender slot come after authentication.
    writer.send(&BackendMessage::Authentication(Authentication::Ok));
    let role = authorize_role(server, role, &user, replication)?;
    check_startup_settings(server, &msg, role.superuser)?;
    // walsender.c: InitWalSenderSlot (this backend is already counted)
    let max_wal_senders = server.settings.max_wal_senders;
    if backend_type == BackendType::WalSender
        && server.registry.count(backend_type) > max_wal_senders as usize
    {
        return Err(Some(ErrorFields::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!(
                "number of requested standby connections exceeds max_wal_senders (currently {max_wal_senders})"
            ),
        )));
    }
    greet(writer, &msg, handle.entry(), &user, role.superuser);
    Ok(Some((msg, handle)))
}

/// Finds the hba rule and runs its method (`auth.c: ClientAuthentication`). Returns the
/// role, if there is one of that name.
async fn authenticate<R, W>(
    server: &Arc<Server>,
    reader: &mut PqReader<R>,
    writer: &mut PqWriter<W>,
    peer: SocketAddr,
    conn: &hba::ConnInfo<'_>,
    ssl: Option<&SslStatus>,
) -> Result<Option<crate::auth::Role>, StartupError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let user = conn.user;
    let ip = peer.ip();
    let failed = |reason: AuthFailure| server.registry.count_auth_failure(reason);
    let rule = server.hba.find(ip, conn).ok_or_else(|| {
        failed(AuthFailure::NoHbaEntry);
        Some(hba::no_entry_error(ip, conn))
    })?;
    let role = server.roles.get(user);
    let has_ca = server.tls.as_ref().is_some_and(|t| t.has_ca);
    crate::auth::cert::check_client_cert(rule, has_ca, ssl).map_err(|e| {
        failed(AuthFailure::Password);
        Some(*e.fields)
    })?;
    match rule.method {
        AuthMethod::Reject => {
            failed(AuthFailure::Rejected);
            return Err(Some(hba::reject_error(ip, conn)));
        }
        AuthMethod::Trust => {}
        AuthMethod::Cert => {}
        method => {
            let end_point = ssl.and(server.tls.as_ref()).and_then(|t| t.cert_hash.clone());
            let (mut auth, first) =
                Authenticator::start_tls(method, user, role.as_ref(), end_point);
            writer.send(&BackendMessage::Authentication(first));
            loop {
                writer.flush().await.map_err(|_| None)?;
                let body = match read_password(reader).await {
                    Ok(body) => body,
                    Err(PasswordRead::Other(tag)) => {
                        failed(AuthFailure::Protocol);
                        return Err(Some(*auth.unexpected_message(tag).fields));
                    }
                    Err(PasswordRead::Fail(e)) => return Err(*e),
                };
                let step = auth.step(body).map_err(|e| {
                    failed(AuthFailure::Password);
                    auth_failed(e, user)
                })?;
                match step {
                    AuthStep::Send(next) => writer.send(&BackendMessage::Authentication(next)),
                    AuthStep::Done { last } => {
                        if let Some(last) = last {
                            writer.send(&BackendMessage::Authentication(last));
                        }
                        break;
                    }
                }
            }
        }
    }
    // auth.c: ClientAuthentication, after the method: clientcert=verify-full, and cert.
    if rule.clientcert == hba::ClientCert::VerifyFull {
        if let Err(e) = crate::auth::cert::cert_name_matches(rule, ssl, user) {
            failed(AuthFailure::Password);
            return Err(auth_failed(e, user));
        }
    }
    Ok(role)
}

/// After AuthenticationOk, as PostgreSQL checks it (miscinit.c:
/// InitializeSessionUserId; postinit.c: InitPostgres): the role exists and may log in,
/// and a walsender's role may replicate. Returns the role.
fn authorize_role(
    server: &Server,
    role: Option<crate::auth::Role>,
    user: &str,
    replication: ReplicationMode,
) -> Result<crate::auth::Role, StartupError> {
    authorize(role.as_ref(), user, replication != ReplicationMode::Off).map_err(|e| {
        server.registry.count_auth_failure(AuthFailure::NotPermitted);
        Some(*e.fields)
    })?;
    Ok(role.unwrap_or_else(|| crate::auth::Role::new(user)))
}

/// postinit.c: process_startup_options — each run-time parameter of the packet (and of
/// its `options`) is set as PostgreSQL sets it, physical walsenders included: names and
/// contexts as PostgreSQL 15 checks them ([`crate::guc`]), then the values the handler
/// knows.
fn check_startup_settings(
    server: &Server,
    msg: &StartupMessage,
    superuser: bool,
) -> Result<(), StartupError> {
    let settings = msg.session_settings();
    let checked = settings
        .iter()
        .try_for_each(|(name, _)| crate::guc::check_startup_setting(name, superuser))
        .and_then(|()| server.handler.check_startup_settings(&settings));
    checked.map_err(|e| {
        let mut fatal = ErrorFields::fatal(&e.code, e.message);
        fatal.detail = e.detail;
        fatal.hint = e.hint;
        Some(fatal)
    })
}

/// Logs what PostgreSQL logs for a failed authentication, and gives the client's FATAL.
fn auth_failed(e: crate::auth::AuthError, user: &str) -> StartupError {
    match &e.log_detail {
        Some(detail) => info!("FATAL:  {} (user \"{user}\"; {detail})", e.fields.message),
        None => info!("FATAL:  {}", e.fields.message),
    }
    Some(*e.fields)
}

/// Why no password message came.
enum PasswordRead {
    /// Another message type arrived.
    Other(u8),
    /// The connection failed or ended.
    Fail(Box<StartupError>),
}

/// The body of the next `p` message (`auth.c: recv_password_packet`).
async fn read_password<R: AsyncRead + Unpin>(
    reader: &mut PqReader<R>,
) -> Result<Bytes, PasswordRead> {
    match reader.read_message_filtered(|tag| tag == b'p').await {
        Ok(Some(Ok(FrontendMessage::Password(body)))) => Ok(body),
        Ok(Some(Ok(other))) => Err(PasswordRead::Other(other.tag())),
        Ok(Some(Err(tag))) => Err(PasswordRead::Other(tag)),
        // The client went away: PostgreSQL logs it and says nothing.
        Ok(None) | Err(ConnError::Io(_)) => Err(PasswordRead::Fail(Box::new(None))),
        Err(ConnError::Wire(e)) => Err(PasswordRead::Fail(Box::new(wire_fatal(&e)))),
    }
}

/// ParameterStatus in PostgreSQL 15's order, then BackendKeyData.
fn greet<W: AsyncWrite + Unpin>(
    writer: &mut PqWriter<W>,
    msg: &StartupMessage,
    entry: &Arc<BackendEntry>,
    user: &str,
    superuser: bool,
) {
    let param = |name: &str, default: &str| msg.param(name).unwrap_or(default).to_string();
    let params: [(&str, String); 13] = [
        ("application_name", param("application_name", "")),
        ("client_encoding", param("client_encoding", "UTF8")),
        ("DateStyle", "ISO, MDY".to_string()),
        ("default_transaction_read_only", "off".to_string()),
        ("in_hot_standby", "off".to_string()),
        ("integer_datetimes", "on".to_string()),
        ("IntervalStyle", "postgres".to_string()),
        ("is_superuser", if superuser { "on" } else { "off" }.to_string()),
        ("server_encoding", "UTF8".to_string()),
        ("server_version", SERVER_VERSION.to_string()),
        ("session_authorization", user.to_string()),
        ("standard_conforming_strings", "on".to_string()),
        ("TimeZone", "UTC".to_string()),
    ];
    for (name, value) in params {
        writer.send(&BackendMessage::ParameterStatus { name: name.to_string(), value });
    }
    writer.send(&BackendMessage::BackendKeyData { pid: entry.pid, secret_key: entry.cancel_key });
}

#[cfg(test)]
mod accept_tests {
    use super::*;

    #[test]
    fn failed_accepts_are_logged_once_per_interval_with_a_count() {
        let mut f = AcceptFailures::default();
        let e = std::io::Error::from_raw_os_error(24);
        let t0 = std::time::Instant::now();
        let first = f.note(&e, t0).unwrap();
        assert!(first.starts_with("could not accept new connection: Too many open files"));
        for i in 1..=1000 {
            assert_eq!(f.note(&e, t0 + std::time::Duration::from_millis(i)), None);
        }
        let next = f.note(&e, t0 + ACCEPT_LOG_INTERVAL).unwrap();
        assert!(next.ends_with("(1000 more since the last such message)"), "{next}");
    }

    #[test]
    fn the_live_connection_limit_is_twice_the_backends() {
        let s = Settings::default();
        assert_eq!(live_children_limit(&s), 2 * (100 + 10));
    }
}
