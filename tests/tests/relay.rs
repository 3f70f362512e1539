//! `walstream relay` between a live PostgreSQL 15 primary under pgbench and three real
//! standbys plus pg_receivewal at once: the standbys stay caught up and return the
//! primary's query results, and pg_receivewal's files are byte-identical to the primary's
//! (issue 4, test 7).

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use walstream_protocol::lsn::segment_file_name;
use walstream_tests::{
    assert_same_wal_files, complete_wal_files, scenario, wait_for, ChildGuard, Lsn, PgCluster,
    ReceiveWal, TimeLineId,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// Starts `walstream relay` from `upstream_port` into `dir`, listening on a free port.
fn relay(upstream_port: u16, dir: &Path) -> anyhow::Result<(ChildGuard, u16)> {
    walstream_tests::relay::start(WALSTREAM.as_ref(), upstream_port, dir, &[])
}

/// One SQL statement through psql on an ordinary connection to 127.0.0.1:`port`.
fn psql_plain(port: u16, sql: &str) -> anyhow::Result<String> {
    let mut cmd = walstream_tests::pg_command(walstream_tests::pg_bin("psql"));
    cmd.args(["-XAt", "-w", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"))
        .args(["-c", sql]);
    let out = walstream_tests::run_bounded(&mut cmd, Duration::from_secs(30))?;
    ensure!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn three_standbys_and_pg_receivewal_through_a_relay() -> anyhow::Result<()> {
    let primary = PgCluster::start(&scenario::source_config())?;
    let dir = tempfile::tempdir()?;
    let (relay_proc, relay_port) = relay(primary.port(), dir.path())?;
    let relay_conninfo = format!("host=127.0.0.1 port={relay_port} user=postgres");
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    // Standbys from base backups of the primary; their WAL comes from the relay.
    let mut standbys = Vec::new();
    for _ in 0..3 {
        let backup = primary.basebackup(&["-X", "none", "--checkpoint=fast"])?;
        standbys.push(PgCluster::standby(backup, &scenario::source_config(), &relay_conninfo)?);
    }
    let recv = ReceiveWal::new()?;
    let mut pg_receivewal = recv.spawn(relay_port, &["-n"])?;
    // A live load while all four stream through the relay.
    primary.pgbench(&["-c", "4", "-j", "2", "-t", "1000", "-n"])?;
    let end = primary.switch_wal()?;
    for s in &standbys {
        s.wait_replayed(Lsn(end.0 - 1), Duration::from_secs(90))
            .with_context(|| relay_proc.stderr_text())?;
    }
    let want = scenario::snapshot(&primary)?;
    for s in &standbys {
        ensure!(scenario::snapshot(s)? == want, "a standby's data differs from the primary's");
    }
    // The relay lists its four downstreams.
    let list = psql_plain(relay_port, "SELECT application_name, state FROM pg_stat_replication")?;
    ensure!(list.lines().count() == 4, "relay's pg_stat_replication:\n{list}");
    ensure!(list.lines().all(|l| l.ends_with("|streaming")), "{list}");
    // pg_receivewal through the relay: the primary's segments, byte for byte.
    let last = segment_file_name(
        TimeLineId(1),
        Lsn(end.0 - 1).segno(scenario::seg_size()),
        scenario::seg_size(),
    );
    wait_for("pg_receivewal has the last segment", Duration::from_secs(60), || {
        Ok(complete_wal_files(recv.dir())?.contains(&last).then_some(()))
    })?;
    pg_receivewal.interrupt();
    pg_receivewal.wait_timeout(Duration::from_secs(10))?;
    let names = assert_same_wal_files(recv.dir(), &primary.wal_dir())?;
    ensure!(names.len() >= 3, "{names:?}");
    // And the relay's own directory holds the primary's segments too.
    assert_same_wal_files(dir.path(), &primary.wal_dir())?;
    Ok(())
}

/// A relay streaming from a standby that is promoted follows it onto timeline 2, and a
/// real standby streaming from the relay follows through the end-of-timeline handshake
/// (CONFORMANCE scenario 6).
#[test]
fn a_relay_follows_its_upstream_onto_a_new_timeline() -> anyhow::Result<()> {
    let old_primary = PgCluster::start(&scenario::source_config())?;
    old_primary.pgbench(&["-i", "-s", "1", "-q"])?;
    let upstream = PgCluster::standby(
        old_primary.basebackup(&["-X", "stream"])?,
        &scenario::source_config(),
        &old_primary.conninfo("postgres"),
    )?;
    let dir = tempfile::tempdir()?;
    let (relay_proc, relay_port) = relay(upstream.port(), dir.path())?;
    let relay_conninfo = format!("host=127.0.0.1 port={relay_port} user=postgres");
    let downstream = PgCluster::standby(
        old_primary.basebackup(&["-X", "none", "--checkpoint=fast"])?,
        &scenario::source_config(),
        &relay_conninfo,
    )?;
    old_primary.pgbench(&["-t", "300", "-n"])?;
    upstream.wait_replayed(old_primary.current_lsn()?, Duration::from_secs(60))?;
    upstream.promote()?;
    upstream.pgbench(&["-t", "300", "-n"])?;
    upstream.psql("CREATE TABLE after_switch AS SELECT g AS i FROM generate_series(1, 500) g")?;
    let end = upstream.switch_wal()?;
    downstream
        .wait_replayed(Lsn(end.0 - 1), Duration::from_secs(90))
        .with_context(|| relay_proc.stderr_text())?;
    ensure!(
        scenario::snapshot(&downstream)? == scenario::snapshot(&upstream)?,
        "the downstream standby's data differs from the new primary's"
    );
    let tli = downstream.psql("SELECT received_tli FROM pg_stat_wal_receiver")?;
    ensure!(tli == "2", "downstream receives timeline {tli}");
    let history = "00000002.history";
    ensure!(
        std::fs::read(dir.path().join(history))?
            == std::fs::read(upstream.wal_dir().join(history))?,
        "the relay's {history} differs from the new primary's"
    );
    Ok(())
}
