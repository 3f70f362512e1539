//! Cancel and terminate of a streaming walsender, done the way an operator does it
//! (`SELECT pg_cancel_backend(pid) FROM pg_stat_replication`, likewise
//! `pg_terminate_backend`) while a real pg_receivewal streams: walstream serve and a real
//! PostgreSQL 15 primary must look the same to psql and to pg_receivewal (CONFORMANCE §7:
//! cancel → 57014 and back to command mode; terminate → FATAL 57P01).

use std::time::Duration;

use anyhow::{ensure, Context};
use walstream_protocol::lsn::parse_segment_file_name;
use walstream_tests::standby::spawn_receivewal;
use walstream_tests::{
    pg_bin, pg_command, run_bounded, scenario, wait_for, ChildGuard, Lsn, ReceiveWal, ServeProcess,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// One SQL statement through psql on an ordinary connection; stdout, trimmed.
fn sql(port: u16, statement: &str) -> anyhow::Result<String> {
    let mut cmd = pg_command(pg_bin("psql"));
    cmd.args(["-XAt", "-w", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"))
        .arg("-c")
        .arg(statement);
    let out = run_bounded(&mut cmd, Duration::from_secs(30))?;
    ensure!(out.status.success(), "{statement}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts pg_receivewal against `port` and waits until the server lists it as streaming.
fn streaming_receiver(port: u16, recv: &ReceiveWal) -> anyhow::Result<ChildGuard> {
    let child = recv.spawn(port, &["-n", "-v"])?;
    wait_for("pg_receivewal streaming", Duration::from_secs(30), || {
        let state = sql(port, "SELECT state FROM pg_stat_replication")?;
        Ok((state == "streaming").then_some(()))
    })?;
    Ok(child)
}

/// What pg_receivewal printed after the signal, from the first error on, with the
/// server-specific parts removed.
fn error_lines(child: &mut ChildGuard) -> anyhow::Result<String> {
    let status = child.wait_timeout(Duration::from_secs(30))?.context("pg_receivewal exited")?;
    ensure!(!status.success(), "pg_receivewal succeeded after a signal");
    let text = child.stderr_text();
    Ok(text
        .lines()
        .filter(|l| l.contains("error") || l.contains("FATAL") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Cancel, then terminate, the walsender of a streaming pg_receivewal on `port`;
/// returns what pg_receivewal said each time.
fn cancel_and_terminate(port: u16) -> anyhow::Result<(String, String)> {
    let recv = ReceiveWal::new()?;
    let mut child = streaming_receiver(port, &recv)?;
    let canceled = sql(port, "SELECT pg_cancel_backend(pid) FROM pg_stat_replication")?;
    ensure!(canceled == "t", "pg_cancel_backend: {canceled}");
    let after_cancel = error_lines(&mut child)?;
    let recv = ReceiveWal::new()?;
    let mut child = streaming_receiver(port, &recv)?;
    let terminated = sql(port, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")?;
    ensure!(terminated == "t", "pg_terminate_backend: {terminated}");
    let after_terminate = error_lines(&mut child)?;
    wait_for("walsender gone", Duration::from_secs(10), || {
        Ok(sql(port, "SELECT pid FROM pg_stat_replication")
            .ok()
            .filter(|p| p.is_empty())
            .map(|_| ()))
    })
    .ok();
    Ok((after_cancel, after_terminate))
}

#[test]
fn cancel_and_terminate_a_streaming_walsender_as_postgresql_does() -> anyhow::Result<()> {
    let src = scenario::Source::pgbench()?;
    let wal = scenario::copy_pg_wal(&src.primary)?;
    let real = cancel_and_terminate(src.primary.port())?;
    assert!(real.0.contains("canceling statement due to user request"), "{}", real.0);
    assert!(real.1.contains("terminating connection due to administrator command"), "{}", real.1);
    let serve = ServeProcess::start(WALSTREAM.as_ref(), wal.path(), &[])?;
    let ours = cancel_and_terminate(serve.port()).with_context(|| serve.log())?;
    assert_eq!(ours.0, real.0, "after pg_cancel_backend\n{}", serve.log());
    assert_eq!(ours.1, real.1, "after pg_terminate_backend\n{}", serve.log());
    Ok(())
}

/// A fast shutdown while a standby streams that has nothing to receive (its WAL ends where
/// the server's does): the walsender's `WalSndDone` waits until the standby's reported
/// position equals what it sent, the start point. pg_receivewal reports the start point
/// before receiving anything; `walstream receivewal` must too (it reported 0/0, and the
/// shutdown waited for it forever, answering each reply with a new keepalive).
#[test]
fn fast_shutdown_finishes_with_a_standby_that_has_received_nothing() -> anyhow::Result<()> {
    let mut src = scenario::Source::pgbench()?;
    let seg = scenario::seg_size();
    let end = src.primary.switch_wal()?;
    let end = Lsn(end.0.div_ceil(u64::from(seg.bytes())) * u64::from(seg.bytes()));
    let wal = src.stop_and_copy()?;
    // The server's WAL and each standby's: the complete segments before `end`.
    let complete = |dir: &std::path::Path| -> anyhow::Result<()> {
        for entry in std::fs::read_dir(wal.path())? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let keep = parse_segment_file_name(&name, seg)
                .is_some_and(|(_, segno)| segno.0 * u64::from(seg.bytes()) < end.0);
            if keep {
                std::fs::copy(wal.path().join(&name), dir.join(&name))?;
            }
        }
        Ok(())
    };
    let served = tempfile::tempdir()?;
    complete(served.path())?;
    let pg_client = ReceiveWal::new()?;
    complete(pg_client.dir())?;
    let ours = tempfile::tempdir()?;
    complete(ours.path())?;

    let run = |client: &mut dyn FnMut(u16) -> anyhow::Result<ChildGuard>| -> anyhow::Result<()> {
        let mut serve = ServeProcess::start(WALSTREAM.as_ref(), served.path(), &[])?;
        let port = serve.port();
        let mut child = client(port)?;
        wait_for("a standby streaming", Duration::from_secs(30), || {
            let row = sql(port, "SELECT state, sent_lsn FROM pg_stat_replication")?;
            Ok((row == format!("streaming|{end}")).then_some(()))
        })
        .with_context(|| serve.log())?;
        serve.interrupt();
        let status = serve.wait_timeout(Duration::from_secs(15))?;
        let log = serve.log();
        let _ = child.stop(Duration::from_secs(5));
        ensure!(status.is_some(), "the fast shutdown did not finish in 15 s:\n{log}");
        Ok(())
    };
    run(&mut |port| pg_client.spawn(port, &["-v"])).context("pg_receivewal")?;
    run(&mut |port| {
        let conninfo = format!("host=127.0.0.1 port={port} user=postgres");
        spawn_receivewal(WALSTREAM.as_ref(), &conninfo, ours.path(), &[])
    })
    .context("walstream receivewal")
}
