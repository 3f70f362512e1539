//! `walstream receivewal` after a local file error, side by side with pg_receivewal 15 on
//! the same primary (issue 11 §2): a directory made read-only and a `.partial` removed
//! under it are logged as pg_receivewal logs them, followed by `disconnected; waiting 5
//! seconds to try again`; streaming resumes once the cause is gone, with segments
//! byte-identical to the primary's; with `-n` both exit with "disconnected".
//!
//! Both programs run as the `postgres` user: root ignores a directory's permissions.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use walstream_tests::{
    assert_same_wal_files, pg_command, postgres_owned_tempdir, scenario, wait_for, ChildGuard,
    PgCluster, ReceiveWal,
};

const WALSTREAM: &str = env!("CARGO_BIN_EXE_walstream");
const RETRY: &str = "disconnected; waiting 5 seconds to try again";

/// `walstream receivewal` from `port` into `dir`, as postgres, with `extra` arguments.
fn spawn_walstream(port: u16, dir: &Path, extra: &[&str]) -> Result<ChildGuard> {
    let mut cmd = pg_command(WALSTREAM);
    cmd.args(["receivewal", "-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(port.to_string())
        .arg("-D")
        .arg(dir)
        .args(extra);
    ChildGuard::spawn_captured(&mut cmd, "walstream receivewal")
}

/// The name of the `.partial` in `dir`, once there is one.
fn partial_in(dir: &Path) -> Result<String> {
    wait_for("a .partial segment", Duration::from_secs(15), || {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") {
                return Ok(Some(name));
            }
        }
        Ok(None)
    })
}

fn set_mode(dir: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", dir.display()))
}

/// Waits until `child`'s stderr holds `count` lines containing `text`.
fn wait_lines(child: &ChildGuard, text: &str, count: usize) -> Result<String> {
    wait_for(&format!("{} saying {text:?}", child.name()), Duration::from_secs(20), || {
        let err = child.stderr_text();
        Ok((err.lines().filter(|l| l.contains(text)).count() >= count).then_some(err))
    })
}

/// The first line containing `text`, after the program's name, with `dir` written `DIR`.
fn line_with(stderr: &str, text: &str, dir: &Path) -> Option<String> {
    let line = stderr.lines().find(|l| l.contains(text))?;
    let (_, rest) = line.split_once(": ")?;
    Some(rest.replace(&dir.display().to_string(), "DIR"))
}

/// Both write a segment full of WAL, then a switch: the segment completes.
fn fill_and_switch(primary: &PgCluster) -> Result<()> {
    primary.psql(
        "CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t SELECT generate_series(1, 2000)",
    )?;
    primary.switch_wal()?;
    Ok(())
}

#[test]
fn a_read_only_directory_is_logged_retried_and_resumed_as_pg_receivewal_does() -> Result<()> {
    let primary = PgCluster::start(&scenario::source_config())?;
    let pg = ReceiveWal::new()?;
    let ws = postgres_owned_tempdir("walstream-file-errors.")?;
    let mut pg_child = pg.spawn(primary.port(), &[])?;
    let mut ws_child = spawn_walstream(primary.port(), ws.path(), &[])?;
    partial_in(pg.dir())?;
    partial_in(ws.path()).with_context(|| ws_child.stderr_text())?;

    set_mode(pg.dir(), 0o555)?;
    set_mode(ws.path(), 0o555)?;
    fill_and_switch(&primary)?;
    let pg_err = wait_lines(&pg_child, RETRY, 1)?;
    let ws_err = wait_lines(&ws_child, RETRY, 1)?;
    // pg_receivewal: could not rename file "DIR/X.partial" to "DIR/X": Permission denied
    let pg_line = line_with(&pg_err, "could not rename file", pg.dir()).context(pg_err.clone())?;
    let ws_line = line_with(&ws_err, "could not rename file", ws.path()).context(ws_err.clone())?;
    assert_eq!(ws_line, pg_line, "pg_receivewal:\n{pg_err}\nwalstream:\n{ws_err}");
    let retry = ws_err.lines().find(|l| l.contains(RETRY)).unwrap_or_default();
    assert_eq!(retry, format!("walstream receivewal: {RETRY}"));
    // It tries again and fails again while the directory stays read-only.
    wait_lines(&ws_child, RETRY, 2)?;
    ensure!(ws_child.try_wait()?.is_none(), "walstream receivewal exited:\n{ws_err}");
    ensure!(pg_child.try_wait()?.is_none(), "pg_receivewal exited:\n{pg_err}");

    set_mode(pg.dir(), 0o700)?;
    set_mode(ws.path(), 0o700)?;
    fill_and_switch(&primary)?;
    let wal = primary.wal_dir();
    // Both resume: the segment whose rename failed and the next are complete, and
    // byte-identical to the primary's.
    wait_for("both resumed", Duration::from_secs(30), || {
        let names = assert_same_wal_files(ws.path(), &wal)?;
        Ok((names.len() >= 2 && names == assert_same_wal_files(pg.dir(), &wal)?).then_some(()))
    })
    .with_context(|| format!("{}\n{}", ws_child.stderr_text(), pg_child.stderr_text()))?;
    ensure!(ws_child.try_wait()?.is_none(), "walstream receivewal exited");
    Ok(())
}

#[test]
fn a_removed_partial_is_streamed_again() -> Result<()> {
    let primary = PgCluster::start(&scenario::source_config())?;
    let ws = postgres_owned_tempdir("walstream-file-errors.")?;
    let mut child = spawn_walstream(primary.port(), ws.path(), &[])?;
    let partial = partial_in(ws.path()).with_context(|| child.stderr_text())?;
    std::fs::remove_file(ws.path().join(&partial))?;
    fill_and_switch(&primary)?;
    let err = wait_lines(&child, RETRY, 1)?;
    let segment = partial.trim_end_matches(".partial");
    let want = format!(
        "error: could not rename file \"DIR/{partial}\" to \"DIR/{segment}\": No such file or \
         directory"
    );
    assert_eq!(line_with(&err, "could not rename", ws.path()).as_deref(), Some(&*want), "{err}");
    // Five seconds later it streams the segment again from the start.
    let wal = primary.wal_dir();
    wait_for("the segment received again", Duration::from_secs(20), || {
        Ok(assert_same_wal_files(ws.path(), &wal)?.iter().any(|n| n == segment).then_some(()))
    })
    .with_context(|| child.stderr_text())?;
    ensure!(child.try_wait()?.is_none(), "walstream receivewal exited:\n{}", child.stderr_text());
    Ok(())
}

#[test]
fn with_no_loop_a_file_error_ends_it_as_pg_receivewal() -> Result<()> {
    let primary = PgCluster::start(&scenario::source_config())?;
    let pg = ReceiveWal::new()?;
    let ws = postgres_owned_tempdir("walstream-file-errors.")?;
    let mut pg_child = pg.spawn(primary.port(), &["-n"])?;
    let mut ws_child = spawn_walstream(primary.port(), ws.path(), &["-n"])?;
    partial_in(pg.dir())?;
    partial_in(ws.path()).with_context(|| ws_child.stderr_text())?;
    set_mode(pg.dir(), 0o555)?;
    set_mode(ws.path(), 0o555)?;
    fill_and_switch(&primary)?;
    let pg_status = pg_child.wait_timeout(Duration::from_secs(20))?.context("pg_receivewal")?;
    let ws_status = ws_child.wait_timeout(Duration::from_secs(20))?.context("walstream")?;
    let (pg_err, ws_err) = (pg_child.stderr_text(), ws_child.stderr_text());
    set_mode(pg.dir(), 0o700)?;
    set_mode(ws.path(), 0o700)?;
    assert_eq!(ws_status.code(), pg_status.code(), "pg:\n{pg_err}\nwalstream:\n{ws_err}");
    assert_eq!(ws_status.code(), Some(1));
    let last =
        |s: &str| s.lines().last().and_then(|l| l.split_once(": ")).map(|(_, r)| r.to_string());
    assert_eq!(last(&ws_err), last(&pg_err), "pg:\n{pg_err}\nwalstream:\n{ws_err}");
    assert_eq!(last(&ws_err).as_deref(), Some("error: disconnected"));
    assert_eq!(
        line_with(&ws_err, "could not rename file", ws.path()),
        line_with(&pg_err, "could not rename file", pg.dir()),
    );
    Ok(())
}
