//! `walstream receivewal` reconnecting to a real PostgreSQL 15 primary (CONFORMANCE
//! scenario 9): after `pg_terminate_backend` of its walsender and after a primary restart
//! it is streaming again within its backoff, resumes where it was, and its segments are
//! byte-identical to the primary's with none missing.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use walstream_protocol::lsn::segment_file_name;
use walstream_tests::standby::{
    contiguous_segments, measure_until, replication_row, spawn_receivewal, streaming_starts,
    ReplicationRow,
};
use walstream_tests::{
    assert_same_wal_files, complete_wal_files, pg_bin, pg_command, scenario, wait_for, ChildGuard,
    Lsn, PgCluster, TimeLineId,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");
const NAME: &str = "walstream receivewal";

/// The tests measure reconnection times: one at a time, so they do not slow each other.
static SERIAL: Mutex<()> = Mutex::new(());

/// A primary with pgbench tables and walstream receivewal streaming from it into `dir`.
fn primary_and_walstream(dir: &Path) -> anyhow::Result<(PgCluster, ChildGuard, ReplicationRow)> {
    let primary = PgCluster::start(&scenario::source_config())?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    let conninfo = format!("host=127.0.0.1 port={} user=postgres", primary.port());
    let child = spawn_receivewal(Path::new(WALSTREAM), &conninfo, dir, &[])?;
    let row = wait_for("walstream receivewal streaming", Duration::from_secs(15), || {
        Ok(replication_row(&primary, NAME)?.filter(|r| r.state == "streaming"))
    })
    .with_context(|| child.stderr_text())?;
    Ok((primary, child, row))
}

/// Finishes two segments (with pgbench WAL in each) and waits until walstream has
/// flushed them; returns its row then. A reconnection must not stream them again.
fn advance_segments(primary: &PgCluster, child: &ChildGuard) -> anyhow::Result<ReplicationRow> {
    primary.pgbench(&["-n", "-t", "100"])?;
    primary.switch_wal()?;
    primary.pgbench(&["-n", "-t", "100"])?;
    let sent = primary.switch_wal()?;
    wait_for("walstream caught up", Duration::from_secs(15), || {
        Ok(replication_row(primary, NAME)?.filter(|r| r.flush.is_some_and(|f| f >= sent)))
    })
    .with_context(|| child.stderr_text())
}

/// Waits for a walsender other than `old_pid` serving walstream; returns it and the time.
fn wait_new_walsender(
    primary: &PgCluster,
    child: &ChildGuard,
    old_pid: u32,
) -> anyhow::Result<(ReplicationRow, Duration)> {
    measure_until(
        "a new walsender for walstream",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || Ok(replication_row(primary, NAME)?.filter(|r| r.pid != old_pid)),
    )
    .with_context(|| child.stderr_text())
}

/// The stream started again at or after the segment start of `written` (what the
/// primary had seen written before the interruption), not earlier.
fn check_resumed_after(child: &ChildGuard, written: Lsn) -> anyhow::Result<()> {
    let stderr = child.stderr_text();
    let starts = streaming_starts(&stderr);
    eprintln!("walstream started streaming at {starts:?}; {written} was written before");
    ensure!(starts.len() >= 2, "no second START_REPLICATION logged:\n{stderr}");
    let resumed = starts[starts.len() - 1].0;
    let floor = written.segment_start(scenario::seg_size());
    ensure!(
        resumed >= floor,
        "after reconnecting walstream restarted streaming at {resumed}, before {floor} (the \
         segment of {written}, which it had written and reported): starts {starts:?}"
    );
    Ok(())
}

/// More WAL, a switch, then: walstream finishes the last segment, stops on SIGINT, and
/// its complete segments are the primary's, contiguous.
fn finish_and_compare(
    primary: &PgCluster,
    child: &mut ChildGuard,
    dir: &Path,
) -> anyhow::Result<()> {
    primary.pgbench(&["-n", "-t", "300"])?;
    let end = primary.switch_wal()?;
    let seg = scenario::seg_size();
    let last = segment_file_name(TimeLineId(1), Lsn(end.0 - 1).segno(seg), seg);
    wait_for("walstream finished the last segment", Duration::from_secs(20), || {
        Ok(complete_wal_files(dir)?.contains(&last).then_some(()))
    })
    .with_context(|| child.stderr_text())?;
    child.interrupt();
    let status = child.wait_timeout(Duration::from_secs(10))?;
    ensure!(status.is_some_and(|s| s.success()), "{status:?}\n{}", child.stderr_text());
    let names = assert_same_wal_files(dir, &primary.wal_dir())?;
    let runs = contiguous_segments(&names, seg)?;
    ensure!(runs.len() == 1 && runs[0].2 >= 2, "segments {names:?}");
    ensure!(names.last() == Some(&last), "last complete segment {:?}, want {last}", names.last());
    Ok(())
}

#[test]
fn reconnects_after_pg_terminate_backend_with_no_gap() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir()?;
    let (primary, mut child, _) = primary_and_walstream(dir.path())?;
    // Load while the walsender is terminated.
    let mut cmd = pg_command(pg_bin("pgbench"));
    cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-c", "2", "-T", "6", "-p"])
        .arg(primary.port().to_string())
        .arg("postgres");
    let mut load = ChildGuard::spawn_captured(&mut cmd, "pgbench")?;
    advance_segments(&primary, &child)?;
    let old = replication_row(&primary, NAME)?.context("walstream is not connected")?;
    let terminated = primary.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = '{NAME}'"
    ))?;
    ensure!(terminated == "t", "pg_terminate_backend returned {terminated:?}");
    let at = Instant::now();
    let (new, visible) = wait_new_walsender(&primary, &child, old.pid)?;
    measure_until("streaming again", Duration::from_secs(15), Duration::from_millis(20), || {
        Ok(replication_row(&primary, NAME)?.filter(|r| r.pid == new.pid && r.state == "streaming"))
    })
    .with_context(|| child.stderr_text())?;
    let streaming = at.elapsed();
    eprintln!(
        "pg_terminate_backend → new walsender visible after {visible:?} ({}), streaming after \
         {streaming:?}",
        new.state
    );
    ensure!(visible < Duration::from_secs(2), "reconnection took {visible:?}");
    // The walsender's FATAL reaches walstream unless the walsender dies with a send still
    // pending (walstream behind, the socket full): then its close loses the FATAL, and
    // walstream sees the connection end, as PostgreSQL's walreceiver would.
    let log = child.stderr_text();
    ensure!(
        ["57P01", "administrator command", "closed the connection", "Connection reset"]
            .iter()
            .any(|t| log.contains(t)),
        "walstream did not log the end of the terminated connection:\n{log}"
    );
    let status = load.wait_timeout(Duration::from_secs(30))?;
    ensure!(status.is_some_and(|s| s.success()), "pgbench: {}", load.stderr_text());
    finish_and_compare(&primary, &mut child, dir.path())?;
    check_resumed_after(&child, old.write.context("no write_lsn before the termination")?)
}

#[test]
fn reconnects_after_a_primary_restart_with_no_gap() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir()?;
    let (mut primary, mut child, _) = primary_and_walstream(dir.path())?;
    let old = advance_segments(&primary, &child)?;
    let stopping = Instant::now();
    primary.stop("fast")?;
    let stopped = stopping.elapsed();
    primary.start_server()?;
    let accepting = stopping.elapsed();
    let (new, visible) = wait_new_walsender(&primary, &child, old.pid)?;
    eprintln!(
        "primary stopped in {stopped:?}, accepting again {accepting:?} after the stop began; \
         walstream's new walsender visible {visible:?} later ({})",
        new.state
    );
    // The backoff doubles from 50 ms while the primary is down and is capped at 2 s: the
    // next attempt comes at most 2 s after the primary is back.
    ensure!(
        visible < Duration::from_millis(2500),
        "reconnection took {visible:?} after the restart"
    );
    finish_and_compare(&primary, &mut child, dir.path())?;
    check_resumed_after(&child, old.write.context("no write_lsn before the restart")?)
}

/// With a primary that keeps no extra WAL (no `wal_keep_size`, no slot), the segment its
/// first stream began in is removed at a checkpoint once walstream is past it; a
/// reconnection must resume where walstream is (pg_receivewal.c: FindStreamingStart),
/// not ask for that removed segment.
#[test]
fn reconnects_after_the_first_segment_was_removed() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir()?;
    let primary = PgCluster::start(&walstream_tests::PgConfig::small_segments())?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    let conninfo = format!("host=127.0.0.1 port={} user=postgres", primary.port());
    let mut child = spawn_receivewal(Path::new(WALSTREAM), &conninfo, dir.path(), &[])?;
    wait_for("walstream receivewal streaming", Duration::from_secs(15), || {
        Ok(replication_row(&primary, NAME)?.filter(|r| r.state == "streaming"))
    })
    .with_context(|| child.stderr_text())?;
    for _ in 0..2 {
        advance_segments(&primary, &child)?;
    }
    primary.checkpoint()?;
    let first = streaming_starts(&child.stderr_text()).first().map(|s| s.0).context("no start")?;
    let seg = scenario::seg_size();
    let first_name = segment_file_name(TimeLineId(1), first.segno(seg), seg);
    ensure!(
        !primary.wal_dir().join(&first_name).exists(),
        "the checkpoint kept {first_name}: the test needs it removed"
    );
    let old = replication_row(&primary, NAME)?.context("walstream is not connected")?;
    primary.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = '{NAME}'"
    ))?;
    wait_new_walsender(&primary, &child, old.pid)?;
    primary.pgbench(&["-n", "-t", "100"])?;
    let end = primary.switch_wal()?;
    wait_for("walstream streaming past the reconnection", Duration::from_secs(10), || {
        Ok(replication_row(&primary, NAME)?.filter(|r| r.flush.is_some_and(|f| f >= end)))
    })
    .with_context(|| {
        format!("walstream exited: {:?}\n{}", child.try_wait().ok().flatten(), child.stderr_text())
    })?;
    Ok(())
}
