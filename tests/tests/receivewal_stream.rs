//! `walstream receivewal` streaming from a real PostgreSQL 15 primary under pgbench:
//! its files are byte-identical to the primary's segments and to pg_receivewal's, and the
//! primary's `pg_stat_replication` shows its application_name with write, flush and
//! replay advancing (issue 4, tests 1).

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use walstream_tests::{
    assert_same_wal_files, complete_wal_files, scenario, wait_for, ChildGuard, Lsn, ReceiveWal,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");

/// Starts `walstream receivewal` into `dir` from the primary on `port`.
fn receivewal(port: u16, dir: &Path, extra: &[&str]) -> anyhow::Result<ChildGuard> {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres");
    walstream_tests::standby::spawn_receivewal(WALSTREAM.as_ref(), &conninfo, dir, extra)
}

/// (write, flush, replay) of the standby called `name` in the primary's pg_stat_replication.
fn replication_row(
    primary: &walstream_tests::PgCluster,
    name: &str,
) -> anyhow::Result<Option<(Lsn, Lsn, Lsn)>> {
    let row = primary.psql(&format!(
        "SELECT write_lsn, flush_lsn, replay_lsn FROM pg_stat_replication \
         WHERE application_name = '{name}' AND replay_lsn IS NOT NULL"
    ))?;
    if row.is_empty() {
        return Ok(None);
    }
    let v: Vec<Lsn> = row.split('|').map(|s| s.parse()).collect::<Result<_, _>>()?;
    Ok(Some((v[0], v[1], v[2])))
}

#[test]
fn receivewal_under_pgbench_matches_the_primary_and_pg_receivewal() -> anyhow::Result<()> {
    let primary = walstream_tests::PgCluster::start(&scenario::source_config())?;
    primary.pgbench(&["-i", "-s", "1", "-q"])?;
    let ours = tempfile::tempdir()?;
    let mut child = receivewal(primary.port(), ours.path(), &[])?;
    let theirs = ReceiveWal::new()?;
    let mut pg = theirs.spawn(primary.port(), &["-n"])?;
    // Both connected and streaming.
    let first =
        wait_for("walstream receivewal in pg_stat_replication", Duration::from_secs(30), || {
            replication_row(&primary, "walstream receivewal")
        })?;
    primary.pgbench(&["-c", "4", "-j", "2", "-t", "1500", "-n"])?;
    let end = primary.switch_wal()?;
    // Write, flush and replay advance to the end.
    let last = wait_for("walstream receivewal caught up", Duration::from_secs(60), || {
        Ok(replication_row(&primary, "walstream receivewal")?.filter(|r| r.1 >= end && r.2 >= end))
    })
    .with_context(|| child.stderr_text())?;
    ensure!(last.0 > first.0 && last.1 > first.1 && last.2 > first.2, "{first:?} → {last:?}");
    ensure!(last.0 >= last.1 && last.1 >= last.2, "write ≥ flush ≥ replay: {last:?}");
    let last_segment = walstream_protocol::lsn::segment_file_name(
        walstream_tests::TimeLineId(1),
        Lsn(end.0 - 1).segno(scenario::seg_size()),
        scenario::seg_size(),
    );
    wait_for("pg_receivewal caught up", Duration::from_secs(60), || {
        Ok(complete_wal_files(theirs.dir())?.contains(&last_segment).then_some(()))
    })?;
    wait_for("walstream receivewal renamed the last segment", Duration::from_secs(10), || {
        Ok(complete_wal_files(ours.path())?.contains(&last_segment).then_some(()))
    })?;
    child.interrupt();
    ensure!(
        child.wait_timeout(Duration::from_secs(10))?.is_some_and(|s| s.success()),
        "{}",
        child.stderr_text()
    );
    pg.interrupt();
    pg.wait_timeout(Duration::from_secs(10))?;
    // Every complete segment is the primary's, byte for byte, and pg_receivewal's too.
    let names = assert_same_wal_files(ours.path(), &primary.wal_dir())?;
    ensure!(names.len() >= 3, "too few complete segments: {names:?}");
    let theirs_names = complete_wal_files(theirs.dir())?;
    for n in names.iter().filter(|n| theirs_names.contains(n)) {
        ensure!(
            std::fs::read(ours.path().join(n))? == std::fs::read(theirs.dir().join(n))?,
            "{n} differs from pg_receivewal's"
        );
    }
    Ok(())
}

/// `--create-slot`, `--if-not-exists` and `--drop-slot` act on the primary's slots and exit,
/// as pg_receivewal's do; a duplicate without `--if-not-exists` fails with PostgreSQL's error.
#[test]
fn slot_flags_create_and_drop_slots() -> anyhow::Result<()> {
    let primary = walstream_tests::PgCluster::start(&scenario::source_config())?;
    let dir = tempfile::tempdir()?;
    let run = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        let mut child = receivewal(primary.port(), dir.path(), args)?;
        let status = child.wait_timeout(Duration::from_secs(30))?.context("receivewal exited")?;
        Ok(std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: child.stderr_text().into_bytes(),
        })
    };
    let slots = || primary.psql("SELECT slot_name, slot_type FROM pg_replication_slots");
    ensure!(run(&["--create-slot", "-S", "rw_slot"])?.status.success());
    ensure!(slots()? == "rw_slot|physical", "{}", slots()?);
    let dup = run(&["--create-slot", "-S", "rw_slot"])?;
    ensure!(!dup.status.success());
    let text = String::from_utf8_lossy(&dup.stderr);
    ensure!(text.contains("replication slot \"rw_slot\" already exists"), "{text}");
    ensure!(run(&["--create-slot", "--if-not-exists", "-S", "rw_slot"])?.status.success());
    ensure!(run(&["--drop-slot", "-S", "rw_slot"])?.status.success());
    ensure!(slots()?.is_empty(), "{}", slots()?);
    let missing = run(&["--drop-slot", "-S", "rw_slot"])?;
    let text = String::from_utf8_lossy(&missing.stderr);
    ensure!(!missing.status.success() && text.contains("does not exist"), "{text}");
    Ok(())
}

/// `-D` naming a directory that does not exist: refused before connecting, with
/// pg_receivewal's text, and the directory is not made (issue 11 §2, "Messages").
#[test]
fn a_missing_directory_is_refused_as_pg_receivewal_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let run = |program: &Path, name: &str| {
        let out = walstream_tests::pg_command(program)
            .args(if name == "walstream" { vec!["receivewal"] } else { vec![] })
            .args(["-h", "127.0.0.1", "-p", "1", "-U", "postgres", "-n", "-D"])
            .arg(&missing)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let prefix = format!("{name}: ");
        let prefix = if name == "walstream" { "walstream receivewal: " } else { &prefix };
        err.strip_prefix(prefix).unwrap_or(&err).to_string()
    };
    let want = run(&walstream_tests::pg_bin("pg_receivewal"), "pg_receivewal");
    assert_eq!(
        want,
        format!(
            "error: could not open directory \"{}\": No such file or directory",
            missing.display()
        )
    );
    assert_eq!(run(Path::new(WALSTREAM), "walstream"), want);
    assert!(!missing.exists());
}
