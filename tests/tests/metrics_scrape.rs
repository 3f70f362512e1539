//! `/metrics` scraped while WAL flows (issue 9): a real PostgreSQL 15 primary, `walstream
//! relay --metrics` streaming from it, and pg_receivewal streaming from the relay. As the
//! primary writes, the relay's receiver counters (bytes, records per resource manager) and
//! its walsender's sent LSN move, and `promtool check metrics` passes on every scrape.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use walstream_tests::{
    free_port, pg_bin, run_ok, scenario, scrape, wait_for, ChildGuard, PgCluster, ReceiveWal,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// The value of the first sample whose name and labels start with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `promtool check metrics` on `text`; promtool must be installed (Debian's
/// `prometheus` package, which .ci/run installs).
fn promtool_check(text: &str) -> anyhow::Result<()> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => bail!(
            "promtool could not be run ({e}): install Debian's `prometheus` package \
             (`apt-get install -y prometheus`), as .ci/run does"
        ),
    };
    child.stdin.take().context("promtool stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `walstream relay` from `upstream_port` into `dir`, with `--metrics` and rules (written
/// to `hba`) that reject user `nobody`; returns it, its port and its metrics port.
fn relay(upstream_port: u16, dir: &Path, hba: &Path) -> anyhow::Result<(ChildGuard, u16, u16)> {
    std::fs::write(
        hba,
        "host all nobody 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n\
         host replication all 127.0.0.1/32 trust\n",
    )?;
    let metrics_port = free_port()?;
    let metrics = format!("127.0.0.1:{metrics_port}");
    let hba = hba.to_str().context("hba path")?;
    let extra = ["--metrics", &metrics, "--log-format", "json", "--hba", hba];
    let (mut child, port) =
        walstream_tests::relay::start(WALSTREAM.as_ref(), upstream_port, dir, &extra)?;
    wait_for("walstream relay's metrics listening", Duration::from_secs(10), || {
        if let Some(status) = child.try_wait()? {
            bail!("walstream relay exited with {status}: {}", child.stderr_text());
        }
        Ok(TcpStream::connect(("127.0.0.1", metrics_port)).is_ok().then_some(()))
    })?;
    Ok((child, port, metrics_port))
}

#[test]
fn metrics_move_as_wal_flows_and_pass_promtool() -> anyhow::Result<()> {
    let primary = PgCluster::start(&scenario::source_config())?;
    let dir = tempfile::tempdir()?;
    let conf = tempfile::tempdir()?;
    let hba = conf.path().join("hba.conf");
    let (relay_proc, relay_port, metrics_port) = relay(primary.port(), dir.path(), &hba)?;
    let recv = ReceiveWal::new()?;
    let _receivewal = recv.spawn(relay_port, &["--no-sync"])?;

    const SENT: &str = "walstream_walsender_sent_lsn_bytes{application_name=\"pg_receivewal\"";
    const RECEIVED: &str = "walstream_receiver_received_bytes_total";
    let first = wait_for("pg_receivewal's walsender in /metrics", Duration::from_secs(30), || {
        let text = scrape(metrics_port)?;
        Ok(value(&text, SENT).map(|_| text))
    })
    .with_context(|| relay_proc.stderr_text())?;
    promtool_check(&first)?;
    ensure!(
        first.contains("walstream_connections{backend_type=\"walsender\",state=\"streaming\"}"),
        "no streaming walsender:\n{first}"
    );
    let (sent0, received0) = (value(&first, SENT).unwrap_or(0.0), value(&first, RECEIVED));
    ensure!(received0.is_some(), "no {RECEIVED}:\n{first}");

    primary.psql(
        "CREATE TABLE m AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 20000) g",
    )?;
    let moved = wait_for("the metrics to move", Duration::from_secs(30), || {
        let text = scrape(metrics_port)?;
        let sent = value(&text, SENT).unwrap_or(0.0);
        let received = value(&text, RECEIVED).unwrap_or(0.0);
        // The relay's walsender sends what its receiver got a moment later: wait for both.
        let sent_bytes = value(&text, "walstream_walsender_sent_bytes_total").unwrap_or(0.0);
        Ok((sent > sent0
            && received > received0.unwrap_or(0.0) + 1_000_000.0
            && sent_bytes > 1_000_000.0)
            .then_some(text))
    })
    .with_context(|| relay_proc.stderr_text())?;
    promtool_check(&moved)?;
    ensure!(
        value(&moved, "walstream_walsender_sent_bytes_total").unwrap_or(0.0) > 1_000_000.0
            && value(&moved, "walstream_walsender_messages_sent_total").unwrap_or(0.0) > 0.0,
        "walsender bytes or messages not counted:\n{moved}"
    );
    ensure!(
        value(&moved, "walstream_receiver_flush_lsn_bytes").unwrap_or(0.0) > 0.0,
        "no flush position:\n{moved}"
    );
    ensure!(
        value(&moved, "walstream_receiver_records_applied_total{rmgr=\"Heap\"}").unwrap_or(0.0)
            > 0.0,
        "no Heap records applied:\n{moved}"
    );
    ensure!(
        value(&moved, "walstream_receiver_reconnects_total") == Some(0.0)
            && value(&moved, "walstream_receiver_corruption_detected_total") == Some(0.0),
        "reconnects or corruption on a healthy stream:\n{moved}"
    );
    // A refused connection is counted by its reason.
    let mut psql = walstream_tests::pg_command(walstream_tests::pg_bin("psql"));
    psql.args(["-XAtw", "-d"])
        .arg(format!("host=127.0.0.1 port={relay_port} user=nobody dbname=postgres"))
        .args(["-c", "SELECT 1"]);
    let out = walstream_tests::run_bounded(&mut psql, Duration::from_secs(30))?;
    ensure!(!out.status.success(), "user nobody was let in");
    let text = scrape(metrics_port)?;
    ensure!(
        value(&text, "walstream_auth_failures_total{reason=\"rejected\"}") == Some(1.0),
        "rejected connection not counted:\n{text}"
    );
    promtool_check(&text)?;
    // The json log format: every line of the relay's log is a JSON object.
    let log = relay_proc.stderr_text();
    ensure!(
        log.lines().any(|l| l.starts_with('{') && l.contains("\"level\":\"INFO\"")),
        "relay log is not JSON:\n{log}"
    );
    Ok(())
}

/// One statement through psql on 127.0.0.1:`port`.
fn psql(port: u16, sql: &str) -> anyhow::Result<()> {
    let mut cmd = walstream_tests::pg_command(walstream_tests::pg_bin("psql"));
    cmd.args(["-XAtw", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"))
        .args(["-c", sql]);
    let out = walstream_tests::run_bounded(&mut cmd, Duration::from_secs(30))?;
    ensure!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[test]
fn node_metrics_count_wal_fsyncs() -> anyhow::Result<()> {
    let node_dir = walstream_tests::node::NodeDir::init(Path::new(WALSTREAM), 16)?;
    let (port, metrics_port) = (free_port()?, free_port()?);
    let mut cmd = Command::new(WALSTREAM);
    cmd.args(["node", "-D"])
        .arg(node_dir.data_dir())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics_port}")]);
    let mut node = ChildGuard::spawn_captured(&mut cmd, "walstream node")?;
    let first = wait_for("the node's /metrics", Duration::from_secs(60), || {
        if let Some(status) = node.try_wait()? {
            bail!("walstream node exited with {status}: {}", node.stderr_text());
        }
        Ok(scrape(metrics_port).ok().filter(|_| TcpStream::connect(("127.0.0.1", port)).is_ok()))
    })?;
    promtool_check(&first)?;
    let fsyncs0 = value(&first, "walstream_wal_fsyncs_total").context("no fsync count")?;
    let flush0 = value(&first, "walstream_wal_flush_lsn_bytes").context("no flush LSN")?;
    psql(port, "CREATE TABLE t (k int8 PRIMARY KEY, v text)")?;
    for k in 0..5 {
        psql(port, &format!("INSERT INTO t VALUES ({k}, 'row {k}')"))?;
    }
    let text = scrape(metrics_port)?;
    promtool_check(&text)?;
    let fsyncs = value(&text, "walstream_wal_fsyncs_total").unwrap_or(0.0);
    let flush = value(&text, "walstream_wal_flush_lsn_bytes").unwrap_or(0.0);
    ensure!(fsyncs > fsyncs0 && flush > flush0, "fsyncs or flush LSN did not move:\n{text}");
    ensure!(
        value(&text, "walstream_wal_fsync_duration_seconds_count{writer=\"node\"}").unwrap_or(0.0)
            > 0.0,
        "no fsync latencies:\n{text}"
    );
    ensure!(
        text.contains("walstream_connections{backend_type=\"checkpointer\""),
        "no auxiliary process in connections:\n{text}"
    );

    // A standby of it (pg_basebackup -R) counts the records it replays.
    let sdir = tempfile::tempdir()?;
    let sdata = sdir.path().join("data");
    run_ok(
        Command::new(pg_bin("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-c", "fast", "-X", "stream", "-R", "-p"])
            .arg(port.to_string())
            .arg("-D")
            .arg(&sdata),
    )?;
    let (sport, smetrics) = (free_port()?, free_port()?);
    let mut cmd = Command::new(WALSTREAM);
    cmd.args(["node", "-D"])
        .arg(&sdata)
        .args(["--listen", &format!("127.0.0.1:{sport}")])
        .args(["--metrics", &format!("127.0.0.1:{smetrics}")]);
    let mut standby = ChildGuard::spawn_captured(&mut cmd, "walstream node (standby)")?;
    for k in 5..10 {
        psql(port, &format!("INSERT INTO t VALUES ({k}, 'row {k}')"))?;
    }
    let replayed =
        wait_for("replayed records in the standby's /metrics", Duration::from_secs(60), || {
            if let Some(status) = standby.try_wait()? {
                bail!("the standby exited with {status}: {}", standby.stderr_text());
            }
            Ok(scrape(smetrics).ok().filter(|t| t.contains("walstream_replay_records_total{")))
        })?;
    promtool_check(&replayed)?;
    ensure!(
        value(&replayed, "walstream_replay_records_total{").unwrap_or(0.0) > 0.0,
        "no records replayed:\n{replayed}"
    );
    Ok(())
}
