//! `--metrics ADDR:PORT`: a Prometheus endpoint (`GET /metrics`) for every long-running
//! command. The text is encoded by `prometheus-client`; values are read at scrape time from
//! the state the command already keeps (the backend registry, the receiver's positions), so
//! nothing is counted twice and nothing is threaded through the internals.
//!
//! A command builds a [`Metrics`], adds what it has ([`Metrics::add_backends`],
//! [`Metrics::add_receiver`]) and calls [`Metrics::serve`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use metrics::{Key, KeyName, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use walstream_node::xlog::WalWriter;
use walstream_receiver::apply::RmgrCounts;
use walstream_receiver::stream::{Positions, StreamCounters};
use walstream_sender::registry::{AuthFailure, BackendType, Registry};

/// The `--metrics` option every long-running command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics over HTTP at `http://ADDR:PORT/metrics`.
    #[arg(long = "metrics", value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
}

/// The metrics of one command, ready to be served.
pub struct Metrics {
    sources: Vec<Box<dyn Collect>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("sources", &self.sources.len()).finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty set: only `walstream_build_info`.
    pub fn new() -> Self {
        Metrics { sources: vec![Box::new(BuildInfo)] }
    }

    /// Per-walsender positions and lags, and connections by type and state, read from
    /// `registry` at every scrape.
    pub fn add_backends(&mut self, registry: Arc<Registry>) {
        self.sources.push(Box::new(BackendCollector(registry)));
    }

    /// A receiver's positions.
    pub fn add_receiver(&mut self, positions: watch::Receiver<Positions>) {
        self.sources.push(Box::new(ReceiverCollector { positions }));
    }

    /// A receiver's bytes and messages received, reconnects and corruption found, and
    /// records applied per resource manager by its applier.
    pub fn add_receiver_events(&mut self, counters: Arc<StreamCounters>, rmgrs: Arc<RmgrCounts>) {
        self.sources.push(Box::new(ReceiverEvents { counters, rmgrs }));
    }

    /// A standby node's records replayed per resource manager.
    pub fn add_replayed_records(&mut self, rmgrs: Arc<RmgrCounts>) {
        self.sources.push(Box::new(ReplayedRecords(rmgrs)));
    }

    /// A failover manager's view of its nodes (`walstream failover`).
    pub fn add_failover(&mut self, snapshots: watch::Receiver<crate::failover::status::Snapshot>) {
        self.sources.push(Box::new(FailoverCollector(snapshots)));
    }

    /// A node primary's WAL writer: fsyncs and positions.
    pub fn add_wal_writer(&mut self, writer: Arc<WalWriter>) {
        self.sources.push(Box::new(WriterCollector(writer)));
    }

    /// The exposition text (Prometheus text format 0.0.4), as served: what the sources
    /// read now, then what was recorded as it happened (fsync latencies).
    pub fn encode(&self) -> String {
        let scrape = Scrape::new();
        for source in &self.sources {
            source.collect(&scrape);
        }
        let mut text = scrape.render();
        if let Some(events) = EVENTS.get() {
            text.push_str(&events.render());
        }
        text
    }

    /// Binds `addr` and answers `GET /metrics` until `cancel` is cancelled; returns the
    /// bound address (the real port when 0 was asked).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn serve(self, addr: SocketAddr, cancel: CancellationToken) -> Result<SocketAddr> {
        install_event_recorder();
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("could not listen for metrics on {addr}"))?;
        let addr = listener.local_addr()?;
        tracing::info!("serving metrics at http://{addr}/metrics");
        let metrics = Arc::new(self);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = cancel.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!("metrics endpoint: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let answer =
                        tokio::time::timeout(Duration::from_secs(10), answer(stream, &metrics));
                    if let Ok(Err(e)) = answer.await {
                        tracing::debug!("metrics endpoint: {e}");
                    }
                });
            }
        });
        Ok(addr)
    }
}

/// Starts the endpoint if `args` asks for one; `build` adds the command's metrics.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(
    args: &MetricsArgs,
    cancel: CancellationToken,
    build: impl FnOnce(&mut Metrics),
) -> Result<Option<SocketAddr>> {
    let Some(addr) = args.metrics else {
        return Ok(None);
    };
    let mut metrics = Metrics::new();
    build(&mut metrics);
    metrics.serve(addr, cancel).await.map(Some)
}

/// The longest request head read.
const MAX_REQUEST: usize = 8192;

/// One HTTP/1.x exchange: reads the request head, answers, closes.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "")
                .await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    match route(&head) {
        Route::Metrics => {
            let text = metrics.encode();
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &text).await
        }
        Route::NotFound => {
            respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await
        }
        Route::BadMethod => respond(&mut stream, "405 Method Not Allowed", "text/plain", "").await,
    }
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` (any query string).
    Metrics,
    /// `GET` of anything else.
    NotFound,
    /// Any other method, or no request line.
    BadMethod,
}

/// Routes a request by its head's first line; any bytes are accepted.
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => Route::Metrics,
        (b"GET", _) => Route::NotFound,
        _ => Route::BadMethod,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Labels of one series.
type Labels = Vec<(&'static str, String)>;

/// One scrape's values, rendered by `metrics-exporter-prometheus` into the Prometheus text
/// format. A fresh recorder per scrape: series of walsenders that are gone disappear.
pub struct Scrape {
    recorder: PrometheusRecorder,
}

impl Scrape {
    fn new() -> Self {
        Scrape { recorder: PrometheusBuilder::new().build_recorder() }
    }

    fn key(name: &'static str, labels: &Labels) -> Key {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, v.clone())).collect();
        Key::from_parts(name, labels)
    }

    /// Sets gauge `name{labels}` to `value`.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &Labels, value: f64) {
        self.recorder.describe_gauge(KeyName::from_const_str(name), None, help.into());
        self.recorder.register_gauge(&Self::key(name, labels), &METADATA).set(value);
    }

    /// Sets counter `name{labels}` (its name ends in `_total`) to `value`.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &Labels, value: u64) {
        self.recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
        self.recorder.register_counter(&Self::key(name, labels), &METADATA).absolute(value);
    }

    fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

/// Fsync latency buckets, in seconds.
const FSYNC_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// The process's recorder of events (fsync latencies, walsender bytes and messages,
/// recorded where they happen through the `metrics` macros); installed by the first
/// endpoint.
static EVENTS: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Installs the global recorder once; later calls do nothing.
fn install_event_recorder() {
    let _ = EVENTS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("walstream_wal_fsync_duration_seconds".into()),
                &FSYNC_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; fsync latencies not shown");
        }
        metrics::describe_histogram!(
            "walstream_wal_fsync_duration_seconds",
            metrics::Unit::Seconds,
            "How long fsyncs of WAL took (writer: node or receiver)."
        );
        metrics::describe_counter!(
            "walstream_walsender_sent_bytes_total",
            metrics::Unit::Bytes,
            "WAL bytes sent in XLogData messages by all walsenders."
        );
        metrics::describe_counter!(
            "walstream_walsender_messages_sent_total",
            "XLogData messages sent by all walsenders."
        );
        metrics::describe_counter!(
            "walstream_walsender_messages_received_total",
            "Messages (status updates, hot standby feedback) received by all walsenders."
        );
        handle
    });
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// What a command shows, read at every scrape.
trait Collect: Send + Sync {
    fn collect(&self, scrape: &Scrape);
}

/// `walstream_build_info{version}` 1.
struct BuildInfo;

impl Collect for BuildInfo {
    fn collect(&self, scrape: &Scrape) {
        let labels: Labels = vec![("version", env!("CARGO_PKG_VERSION").to_string())];
        scrape.gauge(
            "walstream_build_info",
            "The walstream version running (always 1).",
            &labels,
            1.0,
        );
    }
}

/// Reads a sender's backend registry at scrape time.
struct BackendCollector(Arc<Registry>);

impl Collect for BackendCollector {
    fn collect(&self, scrape: &Scrape) {
        let mut connections: std::collections::BTreeMap<(&'static str, &'static str), f64> =
            std::collections::BTreeMap::new();
        for entry in self.0.list() {
            let status = entry.status();
            let state = match (&status.walsender, status.state) {
                (Some(ws), _) => ws.state.as_str(),
                (None, Some(s)) => s.as_str().unwrap_or("unknown"),
                (None, None) => "none",
            };
            *connections.entry((entry.backend_type.as_str(), state)).or_default() += 1.0;
            if entry.backend_type != BackendType::WalSender {
                continue;
            }
            let Some(ws) = &status.walsender else { continue };
            let labels: Labels = vec![
                ("application_name", status.application_name.clone()),
                ("pid", entry.pid.to_string()),
            ];
            let lsns = [
                (
                    "walstream_walsender_sent_lsn_bytes",
                    "The walsender's sent position (LSN).",
                    ws.sent,
                ),
                (
                    "walstream_walsender_write_lsn_bytes",
                    "The standby's write position (LSN).",
                    ws.write,
                ),
                (
                    "walstream_walsender_flush_lsn_bytes",
                    "The standby's flush position (LSN).",
                    ws.flush,
                ),
                (
                    "walstream_walsender_replay_lsn_bytes",
                    "The standby's replay position (LSN).",
                    ws.apply,
                ),
            ];
            for (name, help, lsn) in lsns {
                scrape.gauge(name, help, &labels, lsn.0 as f64);
            }
            let lags = [
                (
                    "walstream_walsender_write_lag_seconds",
                    "pg_stat_replication.write_lag.",
                    ws.write_lag,
                ),
                (
                    "walstream_walsender_flush_lag_seconds",
                    "pg_stat_replication.flush_lag.",
                    ws.flush_lag,
                ),
                (
                    "walstream_walsender_replay_lag_seconds",
                    "pg_stat_replication.replay_lag.",
                    ws.replay_lag,
                ),
            ];
            for (name, help, lag) in lags {
                if let Some(lag) = lag {
                    scrape.gauge(name, help, &labels, lag.as_secs_f64());
                }
            }
        }
        for reason in AuthFailure::ALL {
            scrape.counter(
                "walstream_auth_failures_total",
                "Connections refused at authentication, by reason.",
                &vec![("reason", reason.as_str().to_string())],
                self.0.auth_failures(reason),
            );
        }
        for ((backend_type, state), n) in connections {
            let labels: Labels =
                vec![("backend_type", backend_type.to_string()), ("state", state.to_string())];
            scrape.gauge(
                "walstream_connections",
                "Live backends by type and state (pg_stat_activity, pg_stat_replication).",
                &labels,
                n,
            );
        }
    }
}

/// Reads a receiver's positions at scrape time.
struct ReceiverCollector {
    positions: watch::Receiver<Positions>,
}

impl Collect for ReceiverCollector {
    fn collect(&self, scrape: &Scrape) {
        let p = *self.positions.borrow();
        let none = Labels::new();
        let gauges = [
            ("walstream_receiver_write_lsn_bytes", "WAL written up to here (LSN).", p.write.0),
            ("walstream_receiver_flush_lsn_bytes", "WAL on disk up to here (LSN).", p.flush.0),
            (
                "walstream_receiver_server_end_lsn_bytes",
                "The upstream's last reported WAL end (LSN).",
                p.server_end.0,
            ),
            ("walstream_receiver_timeline", "The timeline being received.", u64::from(p.tli.0)),
        ];
        for (name, help, value) in gauges {
            scrape.gauge(name, help, &none, value as f64);
        }
    }
}

/// A standby node's records replayed, by resource manager.
struct ReplayedRecords(Arc<RmgrCounts>);

impl Collect for ReplayedRecords {
    fn collect(&self, scrape: &Scrape) {
        for (rmgr, n) in self.0.snapshot() {
            scrape.counter(
                "walstream_replay_records_total",
                "WAL records replayed into a standby node's tables, by resource manager.",
                &vec![("rmgr", rmgr)],
                n,
            );
        }
    }
}

/// A receiver's event counters and its applier's records per resource manager.
struct ReceiverEvents {
    counters: Arc<StreamCounters>,
    rmgrs: Arc<RmgrCounts>,
}

impl Collect for ReceiverEvents {
    fn collect(&self, scrape: &Scrape) {
        use std::sync::atomic::Ordering::Relaxed;
        let none = Labels::new();
        scrape.counter(
            "walstream_receiver_received_bytes_total",
            "WAL bytes received in XLogData messages.",
            &none,
            self.counters.received_bytes.load(Relaxed),
        );
        scrape.counter(
            "walstream_receiver_messages_received_total",
            "CopyData messages received (XLogData and keepalives).",
            &none,
            self.counters.messages.load(Relaxed),
        );
        scrape.counter(
            "walstream_receiver_reconnects_total",
            "Streams that failed and were retried.",
            &none,
            self.counters.reconnects.load(Relaxed),
        );
        scrape.counter(
            "walstream_receiver_corruption_detected_total",
            "Corrupt records found in received WAL.",
            &none,
            self.counters.corruption.load(Relaxed),
        );
        for (rmgr, n) in self.rmgrs.snapshot() {
            scrape.counter(
                "walstream_receiver_records_applied_total",
                "WAL records decoded and verified, by resource manager.",
                &vec![("rmgr", rmgr)],
                n,
            );
        }
    }
}

/// A node primary's WAL writer.
struct WriterCollector(Arc<WalWriter>);

impl Collect for WriterCollector {
    fn collect(&self, scrape: &Scrape) {
        let none = Labels::new();
        scrape.counter(
            "walstream_wal_fsyncs_total",
            "fsyncs of WAL issued by the WAL writer.",
            &none,
            self.0.fsync_count(),
        );
        scrape.gauge(
            "walstream_wal_insert_lsn_bytes",
            "WAL inserted up to here (LSN).",
            &none,
            self.0.insert_position().0 as f64,
        );
        scrape.gauge(
            "walstream_wal_flush_lsn_bytes",
            "WAL flushed up to here (LSN).",
            &none,
            self.0.flush_position().0 as f64,
        );
    }
}

/// `walstream failover`: per node up, primary, replication delay; failovers performed;
/// whether this manager leads.
struct FailoverCollector(watch::Receiver<crate::failover::status::Snapshot>);

impl Collect for FailoverCollector {
    fn collect(&self, scrape: &Scrape) {
        use crate::failover::state::{Role, Status};
        let s = self.0.borrow().clone();
        for n in &s.nodes {
            let labels: Labels = vec![
                ("node_id", n.node_id.to_string()),
                ("hostname", n.hostname.clone()),
                ("port", n.port.to_string()),
            ];
            let up = if n.status == Status::Up { 1.0 } else { 0.0 };
            scrape.gauge(
                "walstream_failover_node_up",
                "Whether the node answers its health checks.",
                &labels,
                up,
            );
            let primary = if n.role == Role::Primary { 1.0 } else { 0.0 };
            scrape.gauge(
                "walstream_failover_node_primary",
                "Whether the node is the primary.",
                &labels,
                primary,
            );
            if let Some(d) = n.replication_delay {
                #[allow(clippy::cast_precision_loss)]
                scrape.gauge(
                    "walstream_failover_replication_delay_bytes",
                    "WAL bytes the standby has not replayed yet.",
                    &labels,
                    d as f64,
                );
            }
            if let Some(d) = n.replication_delay_seconds {
                scrape.gauge(
                    "walstream_failover_replication_delay_seconds",
                    "The standby's replay lag (pg_stat_replication.replay_lag).",
                    &labels,
                    d,
                );
            }
        }
        scrape.counter(
            "walstream_failover_failovers_total",
            "Failovers this manager performed.",
            &vec![],
            s.failovers,
        );
        scrape.gauge(
            "walstream_failover_leader",
            "Whether this manager acts (it holds the lease, or runs alone).",
            &vec![],
            if s.leader { 1.0 } else { 0.0 },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any request head routes without panicking; a GET of /metrics with anything
        /// after it is served.
        #[test]
        fn route_never_panics(head in proptest::collection::vec(any::<u8>(), 0..300), query in "[a-z=&]{0,10}") {
            let _ = route(&head);
            let get = format!("GET /metrics?{query} HTTP/1.1\r\n\r\n");
            prop_assert_eq!(route(get.as_bytes()), Route::Metrics);
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route(b"GET /metrics HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route(b""), Route::BadMethod);
    }

    #[test]
    fn encodes_backends_and_receiver() {
        let registry = Registry::new();
        let ws = registry.register(BackendType::WalSender, SocketAddr::from(([127, 0, 0, 1], 1)));
        ws.entry().status().application_name = "s1".into();
        ws.entry().update_walsender(|w| {
            w.sent = walstream_protocol::Lsn(0x100_0000);
            w.replay_lag = Some(Duration::from_millis(1500));
        });
        let (tx, rx) = watch::channel(Positions::default());
        let mut m = Metrics::new();
        m.add_backends(registry.clone());
        m.add_receiver(rx);
        let counters = Arc::new(StreamCounters::default());
        counters.received_bytes.store(500, std::sync::atomic::Ordering::Relaxed);
        let applier = walstream_receiver::apply::VerifyingApplier::new();
        m.add_receiver_events(counters, applier.rmgr_counts());
        tx.send_modify(|p| p.write = walstream_protocol::Lsn(1000));
        let _ = m.encode();
        tx.send_modify(|p| p.write = walstream_protocol::Lsn(1500));
        let text = m.encode();
        assert!(
            text.contains("walstream_walsender_sent_lsn_bytes{application_name=\"s1\""),
            "{text}"
        );
        assert!(text.contains("walstream_walsender_replay_lag_seconds{"), "{text}");
        assert!(text.contains("walstream_receiver_received_bytes_total 500"), "{text}");
        assert!(text.contains("walstream_connections{backend_type=\"walsender\""), "{text}");
        registry.count_auth_failure(AuthFailure::Password);
        let text = m.encode();
        assert!(text.contains("walstream_auth_failures_total{reason=\"password\"} 1"), "{text}");
    }
}
