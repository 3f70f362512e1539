//! pg_receivewal 15 streams every segment from `walstream serve` over a copy of a real
//! primary's pg_wal, and its files are byte-identical to the primary's: plain, with a
//! slot it created (`--create-slot`, then `--slot`), and `--synchronous`. Each variant
//! first runs against the real primary (a control run proving the test itself), then
//! against walstream serving the copy.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};

use walstream_tests::{
    assert_same_wal_files, complete_wal_files, psql_replication, scenario, wait_for, Lsn,
    ReceiveWal, ServeProcess,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// How one variant runs pg_receivewal: extra arguments, and whether it first creates
/// slot `s` with `--create-slot`.
struct Variant {
    args: &'static [&'static str],
    create_slot: bool,
}

/// Runs pg_receivewal against 127.0.0.1:`port` from `first` (the source's first
/// segment) to `end`, checks its files against `source` (a pg_wal), and returns the
/// names of the complete files it wrote.
fn receive_all(
    port: u16,
    source: &Path,
    first: &str,
    end: Lsn,
    v: &Variant,
) -> anyhow::Result<Vec<String>> {
    let recv = ReceiveWal::new()?;
    if v.create_slot {
        let out = recv.run(port, &["--create-slot", "--slot", "s"], RECEIVE_TIMEOUT)?;
        ensure!(out.status.success(), "--create-slot: {}", String::from_utf8_lossy(&out.stderr));
    }
    recv.seed_partial(first, scenario::seg_size())?;
    let log = recv.run_until(port, Lsn(end.0 - 1), v.args, RECEIVE_TIMEOUT)?;
    let names = assert_same_wal_files(recv.dir(), source)?;
    let expected = scenario::segments_between(first, end);
    ensure!(names == expected, "segments written: {names:?}, expected {expected:?}\n{log}");
    ensure!(complete_wal_files(recv.dir())? == names, "files changed while compared");
    Ok(names)
}

/// READ_REPLICATION_SLOT s, as psql prints it, with the restart LSN replaced.
fn read_slot(port: u16) -> String {
    let out = psql_replication(port, &["READ_REPLICATION_SLOT s"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_variant(v: Variant) {
    let mut src = scenario::Source::pgbench().unwrap();
    let first = src.first_segment().unwrap();

    // Control: the real primary.
    let real =
        receive_all(src.primary.port(), &src.primary.wal_dir(), &first, src.end, &v).unwrap();
    let real_slot = v.create_slot.then(|| read_slot(src.primary.port()));

    // Under test: walstream serving a copy of the primary's pg_wal.
    let waldir = src.stop_and_copy().unwrap();
    let serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();
    let ours = receive_all(serve.port(), waldir.path(), &first, src.end, &v)
        .unwrap_or_else(|e| panic!("{e:#}\nwalstream log:\n{}", serve.log()));
    assert_eq!(ours, real, "files received from walstream and from PostgreSQL");
    if let Some(real_slot) = real_slot {
        assert_eq!(read_slot(serve.port()), real_slot, "slot after streaming\n{}", serve.log());
    }
}

#[test]
fn receivewal_streams_every_segment() {
    run_variant(Variant { args: &["--no-sync"], create_slot: false });
}

#[test]
fn receivewal_with_created_slot() {
    run_variant(Variant { args: &["--no-sync", "--slot", "s"], create_slot: true });
}

#[test]
fn receivewal_synchronous() {
    run_variant(Variant { args: &["--synchronous"], create_slot: false });
}

/// pg_receivewal without `-E`, caught up and waiting for more WAL at 127.0.0.1:`port`,
/// is interrupted: it ends the stream with the CopyDone handshake and exits 0.
fn interrupt_when_caught_up(port: u16, first: &str, end: Lsn) -> anyhow::Result<()> {
    let recv = ReceiveWal::new()?;
    recv.seed_partial(first, scenario::seg_size())?;
    let mut child = recv.spawn(port, &["--no-sync", "-n", "-v"])?;
    let last = scenario::segments_between(first, end).pop().context("no segment")?;
    wait_for(&format!("{last} to be received"), RECEIVE_TIMEOUT, || {
        ensure!(child.try_wait()?.is_none(), "exited early:\n{}", child.stderr_text());
        Ok(recv.dir().join(&last).exists().then_some(()))
    })?;
    child.interrupt();
    let status = child.wait_timeout(Duration::from_secs(10))?;
    let log = child.stderr_text();
    ensure!(status.is_some_and(|s| s.success()), "status {status:?} after SIGINT:\n{log}");
    ensure!(!log.contains("error"), "{log}");
    Ok(())
}

#[test]
fn receivewal_stops_cleanly_on_sigint() {
    let mut src = scenario::Source::pgbench().unwrap();
    let first = src.first_segment().unwrap();
    interrupt_when_caught_up(src.primary.port(), &first, src.end).unwrap();
    let waldir = src.stop_and_copy().unwrap();
    let serve = ServeProcess::start(Path::new(WALSTREAM), waldir.path(), &[]).unwrap();
    interrupt_when_caught_up(serve.port(), &first, src.end)
        .unwrap_or_else(|e| panic!("{e:#}\nwalstream log:\n{}", serve.log()));
}
