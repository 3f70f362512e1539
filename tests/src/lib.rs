//! Test support: throwaway PostgreSQL 15 clusters, `walstream serve` processes and
//! `pg_receivewal` runs for integration tests.
//!
//! # Layout
//! - this file: where the PostgreSQL programs are, running them as `postgres`,
//!   bounded runs and waits, free ports, postgres-owned temporary directories.
//! - [`cluster`]: [`PgCluster`], a throwaway cluster (primary or standby), stopped
//!   (`pg_ctl -m immediate`) and removed when it is dropped — also when the test panics.
//! - [`process`]: [`ChildGuard`], a child process stopped by its own pid on drop.
//! - [`rawclient`]: a minimal replication client reporting every message it gets.
//! - [`serve`]: [`ServeProcess`], a `walstream serve` on a free loopback port.
//! - [`receivewal`]: [`ReceiveWal`], `pg_receivewal` into a postgres-owned directory.
//! - [`scenario`]: ready-made sources of real WAL (a pgbench primary, a promotion).
//! - [`standby`]: `walstream receivewal` as a standby, seen in `pg_stat_replication`.
//! - [`walfiles`]: copying a `pg_wal` and comparing the segments a client wrote.
//! - [`walcheck`]: how far a received directory equals the primary's WAL; gapless copies.
//! - [`certs`]: test certificates (a root CA, server and client certificates) from rcgen.
//! - [`proxy`]: a TCP proxy that flips one WAL byte in the XLogData it relays.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root every PostgreSQL
//! program is started as the `postgres` user (its uid and gid set on the child, so
//! the child's pid is the program's own), in a directory that user owns.

pub mod certs;
pub mod cluster;
pub mod faults;
pub mod fuzz;
pub mod node;
pub mod process;
pub mod proxy;
pub mod rawclient;
pub mod receivewal;
pub mod relay;
pub mod scenario;
pub mod serve;
pub mod standby;
pub mod walcheck;
pub mod walfiles;

use std::ffi::{CStr, CString, OsStr};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use cluster::{BaseBackup, PgCluster, PgConfig};
pub use process::ChildGuard;
pub use receivewal::ReceiveWal;
pub use serve::ServeProcess;
pub use walfiles::{assert_same_wal_files, complete_wal_files, copy_wal_files};
pub use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

/// Where the PostgreSQL 15 programs are: `$PG_BINDIR`, else Debian's location.
pub fn pg_bindir() -> PathBuf {
    std::env::var_os("PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// The path of one PostgreSQL program (`pg_waldump`, `psql`, ...).
pub fn pg_bin(name: &str) -> PathBuf {
    pg_bindir().join(name)
}

/// Whether this process runs as root (then PostgreSQL must be run as `postgres`).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The `postgres` user: uid, gid and home directory.
struct PostgresUser {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// Looks the `postgres` user up in the password database.
fn postgres_user() -> Result<PostgresUser> {
    let name = CString::new("postgres").context("user name")?;
    // SAFETY: `name` is a valid C string; getpwnam returns NULL or a pointer to a
    // static record that we copy out of before any other passwd call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("there is no postgres user to run PostgreSQL as");
    }
    // SAFETY: `pw` is non-null and points to a valid passwd record.
    let (uid, gid, dir) = unsafe { ((*pw).pw_uid, (*pw).pw_gid, (*pw).pw_dir) };
    let home = if dir.is_null() {
        PathBuf::from("/")
    } else {
        // SAFETY: pw_dir is a NUL-terminated string owned by the record.
        PathBuf::from(unsafe { CStr::from_ptr(dir) }.to_string_lossy().into_owned())
    };
    Ok(PostgresUser { uid, gid, home })
}

/// A command for a PostgreSQL program, run as `postgres` when we are root.
///
/// The child gets postgres's uid, gid, `HOME`, `USER` and `LOGNAME`; its pid is the
/// program's own, so it can be stopped by pid.
pub fn pg_command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    // Without a postgres user the child stays root, and PostgreSQL says why it will
    // not run.
    if let (true, Ok(u)) = (running_as_root(), postgres_user()) {
        c.uid(u.uid).gid(u.gid).env("HOME", &u.home);
        c.env("USER", "postgres").env("LOGNAME", "postgres");
    }
    c
}

/// Runs a command and returns its output, failing with its stderr if it exits non-zero.
///
/// # Errors
/// If the command cannot start or exits with a failure status.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("could not run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Runs a command for at most `timeout` and returns its output whatever its exit
/// status; a command still running then is stopped (SIGTERM, then SIGKILL).
///
/// # Errors
/// If the command cannot start or does not finish in time (its output so far is in
/// the error).
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = ChildGuard::spawn_captured(cmd, "command")?;
    match child.wait_timeout(timeout)? {
        Some(status) => Ok(Output { status, stdout: child.stdout()?, stderr: child.stderr()? }),
        None => {
            let (out, err) = (child.stdout_text(), child.stderr_text());
            child.stop(Duration::from_secs(5));
            bail!("{cmd:?} did not finish within {timeout:?}\nstdout:\n{out}\nstderr:\n{err}")
        }
    }
}

/// A loopback TCP port nobody is listening on right now.
///
/// # Errors
/// If no port can be bound.
pub fn free_port() -> Result<u16> {
    // The kernel may hand the same ephemeral port to two binds in a row when nothing
    // listens on it in between: never return a port twice in one test process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port found that this process has not used yet")
}

/// Makes a fresh temporary directory the `postgres` user owns (when we are root).
///
/// # Errors
/// If the directory cannot be made or handed over.
pub fn postgres_owned_tempdir(prefix: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    chown_postgres(dir.path())?;
    Ok(dir)
}

/// Hands a file or directory to the `postgres` user (when we are root).
///
/// # Errors
/// If `chown` fails.
pub fn chown_postgres(path: &std::path::Path) -> Result<()> {
    if running_as_root() {
        run_ok(Command::new("chown").arg("postgres:postgres").arg(path))?;
    }
    Ok(())
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `timeout`.
///
/// A probe that fails is retried (a server that is still starting refuses queries);
/// its last error is part of the timeout error.
///
/// # Errors
/// If `probe` has not returned `Some` within `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `commands` in one `psql` session on a physical replication connection
/// (`replication=true`) to 127.0.0.1:`port`, with `VERBOSITY=verbose` (SQLSTATEs
/// printed) and unaligned output; returns psql's output whatever its exit status.
/// psql goes on after an error, so every command runs.
///
/// # Errors
/// If psql cannot start or takes longer than 30 s.
pub fn psql_replication(port: u16, commands: &[&str]) -> Result<Output> {
    let mut cmd = pg_command(pg_bin("psql"));
    cmd.args(["-XA", "-v", "VERBOSITY=verbose", "-d"])
        .arg(format!("host=127.0.0.1 port={port} user=postgres replication=true"));
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    run_bounded(&mut cmd, Duration::from_secs(30))
}

#[cfg(test)]
mod tests;

/// The body of `GET /metrics` at 127.0.0.1:`port`.
///
/// # Errors
/// The connection, or a response other than 200 with Prometheus' text format.
pub fn scrape(port: u16) -> anyhow::Result<String> {
    use anyhow::{ensure, Context};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no end of the HTTP head")?;
    ensure!(head.starts_with("HTTP/1.1 200 "), "response: {head}");
    ensure!(head.contains("Content-Type: text/plain; version=0.0.4"), "response: {head}");
    Ok(body.to_string())
}
