//! Test support: a server in this process with a fake WAL source, and a raw FE/BE client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use walstream_sender::auth::Roles;
use walstream_sender::backend::QueryHandler;
use walstream_sender::config::Settings;
use walstream_sender::hba::HbaFile;
use walstream_sender::postmaster::{Postmaster, Server, ServerParts, ShutdownMode};
use walstream_sender::protocol::wire::{parse_backend, BackendMessage, StartupMessage};
use walstream_sender::protocol::{Lsn, TimeLineId, WalSegSize};
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{WalEnd, WalSource, WalSourceError};

/// A WAL source with no WAL: enough for everything but streaming.
pub struct NoWal {
    end: watch::Sender<WalEnd>,
}

impl NoWal {
    pub fn new() -> Arc<NoWal> {
        Arc::new(NoWal {
            end: watch::Sender::new(WalEnd { tli: TimeLineId(1), flushed: Lsn(0x0100_0000) }),
        })
    }
}

impl WalSource for NoWal {
    fn system_id(&self) -> u64 {
        7_000_000_000_000_000_001
    }
    fn seg_size(&self) -> WalSegSize {
        WalSegSize::new(16 << 20).unwrap()
    }
    fn end(&self) -> watch::Receiver<WalEnd> {
        self.end.subscribe()
    }
    fn history_file(&self, _tli: TimeLineId) -> Result<Option<Bytes>, WalSourceError> {
        Ok(None)
    }
    fn read(&self, _t: TimeLineId, start: Lsn, _len: usize) -> Result<Bytes, WalSourceError> {
        Err(WalSourceError::SegmentRemoved { segment: format!("{start}") })
    }
}

/// A running in-process server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Arc<Server>,
    pub shutdown: watch::Sender<Option<ShutdownMode>>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts a server on 127.0.0.1 with `handler`, trust authentication and `settings`.
pub async fn start_server(handler: Arc<dyn QueryHandler>, settings: Settings) -> TestServer {
    start_server_with(
        handler,
        settings,
        HbaFile::loopback_trust(),
        Roles::permissive(),
        NoWal::new(),
    )
    .await
}

/// Starts a server with everything chosen.
pub async fn start_server_with(
    handler: Arc<dyn QueryHandler>,
    settings: Settings,
    hba: HbaFile,
    roles: Roles,
    source: Arc<dyn WalSource>,
) -> TestServer {
    let registry = walstream_sender::registry::Registry::new();
    start_server_full(handler, settings, hba, roles, source, registry).await
}

/// Starts a server whose registry the caller made (to share it with its handler).
pub async fn start_server_full(
    handler: Arc<dyn QueryHandler>,
    settings: Settings,
    hba: HbaFile,
    roles: Roles,
    source: Arc<dyn WalSource>,
    registry: Arc<walstream_sender::registry::Registry>,
) -> TestServer {
    let slots = Arc::new(SlotStore::in_memory(settings.max_replication_slots as usize));
    start_parts(ServerParts {
        settings,
        hba,
        roles,
        source,
        slots,
        handler,
        registry,
        backup: None,
        tls: None,
    })
    .await
}

/// Binds `parts` on 127.0.0.1 and runs the postmaster in a task.
pub async fn start_parts(parts: ServerParts) -> TestServer {
    let pm = Postmaster::bind("127.0.0.1:0".parse().unwrap(), parts).await.unwrap();
    let addr = pm.local_addr().unwrap();
    let server = pm.server().clone();
    let (shutdown, rx) = watch::channel(None);
    let task = tokio::spawn(pm.run(rx));
    TestServer { addr, server, shutdown, task }
}

/// A raw client: sends bytes, reads backend messages.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient { stream: TcpStream::connect(addr).await.unwrap(), buf: BytesMut::new() }
    }

    /// Connects and completes a trust startup with these extra parameters; returns after
    /// the first ReadyForQuery.
    pub async fn startup(
        addr: SocketAddr,
        params: &[(&str, &str)],
    ) -> (RawClient, Vec<BackendMessage>) {
        let mut c = RawClient::connect(addr).await;
        let mut all = vec![("user".to_string(), "postgres".to_string())];
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut out = BytesMut::new();
        StartupMessage::new(all).encode(&mut out);
        c.send(&out).await;
        let msgs = c.until_ready().await;
        (c, msgs)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends one frontend message of `tag` with `body`.
    pub async fn send_msg(&mut self, tag: u8, body: &[u8]) {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        self.send(&out).await;
    }

    /// The next message, or `None` at end of file (5 s bound).
    pub async fn recv(&mut self) -> Option<BackendMessage> {
        loop {
            if let Some(m) = parse_backend(&mut self.buf).expect("valid backend message") {
                return Some(m);
            }
            let n =
                tokio::time::timeout(Duration::from_secs(5), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("server answered within 5 s")
                    .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// Messages up to and including ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<BackendMessage> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            let done = matches!(m, BackendMessage::ReadyForQuery(_));
            out.push(m);
            if done {
                return out;
            }
        }
        panic!("connection closed before ReadyForQuery: {out:?}");
    }

    /// Everything until the server closes the connection.
    pub async fn until_closed(&mut self) -> Vec<BackendMessage> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            out.push(m);
        }
        out
    }

    pub async fn query(&mut self, sql: &str) -> Vec<BackendMessage> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send_msg(b'Q', &body).await;
        self.until_ready().await
    }
}

/// The (code, message) of every ErrorResponse in `msgs`.
pub fn errors(msgs: &[BackendMessage]) -> Vec<(String, String, String)> {
    msgs.iter()
        .filter_map(|m| match m {
            BackendMessage::ErrorResponse(f) => {
                Some((f.severity.clone(), f.code.clone(), f.message.clone()))
            }
            _ => None,
        })
        .collect()
}

// ---- walsender test support (appended for sender/tests/walsender_*.rs) ----

use std::path::Path;

use walstream_sender::protocol::replication::{
    parse_server_copy_data, PrimaryKeepalive, ServerCopyData, StandbyStatusUpdate, TimestampTz,
    XLogData,
};
use walstream_sender::serve_handler::ServeHandler;
use walstream_sender::walsource::{DirWalSource, DirWalSourceOptions};

/// Starts a server with everything chosen, the slot store included.
pub async fn start_server_with_slots(
    settings: Settings,
    source: Arc<dyn WalSource>,
    slots: Arc<SlotStore>,
) -> TestServer {
    let registry = walstream_sender::registry::Registry::new();
    let handler: Arc<dyn QueryHandler> =
        Arc::new(ServeHandler::new(Arc::new(|_| None), registry.clone()));
    let parts = ServerParts {
        settings,
        hba: HbaFile::loopback_trust(),
        roles: Roles::permissive(),
        source,
        slots,
        handler,
        registry,
        backup: None,
        tls: None,
    };
    start_parts(parts).await
}

/// A temporary copy of a WAL directory (the tests may delete files from it).
pub fn copy_wal_dir(src: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// A server over a copy of `src` with in-memory slots; the copy lives as long as the
/// returned TempDir.
pub async fn serve_wal_copy(
    src: &Path,
    settings: Settings,
) -> (TestServer, Arc<DirWalSource>, tempfile::TempDir) {
    let dir = copy_wal_dir(src);
    let source = DirWalSource::open(dir.path(), DirWalSourceOptions::default()).unwrap();
    let slots = Arc::new(SlotStore::in_memory(settings.max_replication_slots as usize));
    let srv = start_server_with_slots(settings, source.clone(), slots).await;
    (srv, source, dir)
}

/// One replication message received in COPY mode, or something else.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Repl {
    /// `w`.
    Data(XLogData),
    /// `k`.
    Keepalive(PrimaryKeepalive),
    /// Any other backend message.
    Other(BackendMessage),
    /// The server closed the connection.
    Closed,
}

impl RawClient {
    /// A physical replication connection (`replication=true`), with its pid and key.
    pub async fn replication(addr: SocketAddr) -> (RawClient, i32, u32) {
        let (c, msgs) =
            RawClient::startup(addr, &[("database", "replication"), ("replication", "true")]).await;
        let (pid, key) = msgs
            .iter()
            .find_map(|m| match m {
                BackendMessage::BackendKeyData { pid, secret_key } => Some((*pid, *secret_key)),
                _ => None,
            })
            .expect("BackendKeyData");
        (c, pid, key)
    }

    /// The next message, with replication CopyData parsed.
    pub async fn recv_repl(&mut self) -> Repl {
        match self.recv().await {
            None => Repl::Closed,
            Some(BackendMessage::CopyData(payload)) => {
                match parse_server_copy_data(payload).expect("valid replication CopyData") {
                    ServerCopyData::XLogData(x) => Repl::Data(x),
                    ServerCopyData::Keepalive(k) => Repl::Keepalive(k),
                }
            }
            Some(m) => Repl::Other(m),
        }
    }

    /// Sends a standby status update (`r`).
    pub async fn send_status(&mut self, write: Lsn, flush: Lsn, apply: Lsn, reply: bool) {
        let r = StandbyStatusUpdate {
            write,
            flush,
            apply,
            send_time: TimestampTz::from_system_time(std::time::SystemTime::now()),
            reply_requested: reply,
        };
        let mut payload = BytesMut::new();
        r.encode(&mut payload);
        self.send_msg(b'd', &payload).await;
    }

    /// Sends CopyDone.
    pub async fn send_copy_done(&mut self) {
        self.send_msg(b'c', &[]).await;
    }

    /// Sends a Query without waiting for anything.
    pub async fn send_query(&mut self, sql: &str) {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send_msg(b'Q', &body).await;
    }
}

/// Sends a CancelRequest for `pid`/`key` on a new socket and waits for the server to
/// close it (it never answers).
pub async fn send_cancel(addr: SocketAddr, pid: i32, key: u32) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&16u32.to_be_bytes());
    out.extend_from_slice(&80_877_102u32.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&key.to_be_bytes());
    s.write_all(&out).await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("cancel socket closed within 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0, "a CancelRequest is never answered");
}

/// The text value of column `i` of a DataRow.
pub fn cell(m: &BackendMessage, i: usize) -> Option<String> {
    match m {
        BackendMessage::DataRow(cells) => {
            cells[i].as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap())
        }
        other => panic!("expected DataRow, got {other:?}"),
    }
}

/// The single DataRow of a query's answer, as text cells.
pub fn single_row(msgs: &[BackendMessage]) -> Vec<Option<String>> {
    let rows: Vec<_> = msgs.iter().filter(|m| matches!(m, BackendMessage::DataRow(_))).collect();
    assert_eq!(rows.len(), 1, "one row expected: {msgs:?}");
    match rows[0] {
        BackendMessage::DataRow(cells) => cells
            .iter()
            .map(|c| c.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap()))
            .collect(),
        _ => unreachable!(),
    }
}

/// The single ErrorResponse of `msgs`.
pub fn the_error(msgs: &[BackendMessage]) -> walstream_sender::protocol::wire::ErrorFields {
    let errs: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            BackendMessage::ErrorResponse(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errs.len(), 1, "one error expected: {msgs:?}");
    errs.into_iter().next().unwrap()
}

/// IDENTIFY_SYSTEM's xlogpos.
pub async fn identify_xlogpos(c: &mut RawClient) -> Lsn {
    let msgs = c.query("IDENTIFY_SYSTEM").await;
    assert!(msgs.iter().all(|m| !matches!(m, BackendMessage::ErrorResponse(_))), "{msgs:?}");
    let row = single_row(&msgs);
    row[2].as_ref().unwrap().parse().unwrap()
}

/// Sends START_REPLICATION and expects CopyBothResponse.
pub async fn start(c: &mut RawClient, cmd: &str) {
    c.send_query(cmd).await;
    match c.recv().await {
        Some(BackendMessage::CopyBothResponse(r)) => {
            assert_eq!(r.format, 0);
            assert!(r.column_formats.is_empty());
        }
        other => panic!("expected CopyBothResponse, got {other:?}"),
    }
}

/// Reads XLogData until `end`; returns the messages (keepalives are skipped).
pub async fn read_until(c: &mut RawClient, end: Lsn) -> Vec<XLogData> {
    let mut out: Vec<XLogData> = Vec::new();
    loop {
        match c.recv_repl().await {
            Repl::Data(x) => {
                let last = Lsn(x.start.0 + x.data.len() as u64);
                out.push(x);
                if last >= end {
                    return out;
                }
            }
            Repl::Keepalive(_) => {}
            other => panic!("unexpected while streaming: {other:?}"),
        }
    }
}

/// Streams from the last segment until caught up; returns the flushed end.
pub async fn caught_up(c: &mut RawClient) -> Lsn {
    let end = identify_xlogpos(c).await;
    start(c, "START_REPLICATION 0/F00000 TIMELINE 1").await;
    read_until(c, end).await;
    end
}
