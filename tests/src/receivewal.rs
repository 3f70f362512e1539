//! `pg_receivewal` (PostgreSQL 15) as the `postgres` user into a postgres-owned
//! directory: run until `--endpos`, or spawned and stopped on drop.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use walstream_protocol::{Lsn, WalSegSize};

use crate::{chown_postgres, pg_bin, pg_command, postgres_owned_tempdir, ChildGuard};

/// A directory for `pg_receivewal` to write into, and ways to run it there.
pub struct ReceiveWal {
    dir: tempfile::TempDir,
}

impl ReceiveWal {
    /// A fresh, empty, postgres-owned directory.
    ///
    /// # Errors
    /// If the directory cannot be made.
    pub fn new() -> Result<Self> {
        Ok(ReceiveWal { dir: postgres_owned_tempdir("walstream-receivewal.")? })
    }

    /// The directory pg_receivewal writes into.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Puts a zero-filled `<segment>.partial` of the full segment size in the
    /// directory. pg_receivewal then starts streaming at the start of that segment
    /// (`FindStreamingStart`), which is how a test makes it stream from a chosen
    /// segment rather than from the server's current position.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn seed_partial(&self, segment: &str, seg_size: WalSegSize) -> Result<()> {
        let path = self.dir().join(format!("{segment}.partial"));
        let f = std::fs::File::create(&path)?;
        f.set_len(u64::from(seg_size.bytes()))?;
        chown_postgres(&path)
    }

    /// The `pg_receivewal` command for 127.0.0.1:`port` as user postgres into this
    /// directory, `--no-password`, with `args` after.
    pub fn command(&self, port: u16, args: &[&str]) -> Command {
        let mut cmd = pg_command(pg_bin("pg_receivewal"));
        cmd.args(["-h", "127.0.0.1", "-U", "postgres", "--no-password", "-p"])
            .arg(port.to_string())
            .arg("-D")
            .arg(self.dir())
            .args(args);
        cmd
    }

    /// Runs pg_receivewal with `args` and waits at most `timeout` for it to exit.
    /// Returns its output whatever its exit status.
    ///
    /// # Errors
    /// If it cannot start or does not exit in time (then it is stopped, and its
    /// stderr is in the error).
    pub fn run(&self, port: u16, args: &[&str], timeout: Duration) -> Result<Output> {
        crate::run_bounded(&mut self.command(port, args), timeout)
    }

    /// Runs `pg_receivewal -E endpos -n` with `args` (verbose) until it stops by itself
    /// at `endpos`; returns its stderr.
    ///
    /// pg_receivewal stops once it has received WAL *past* `endpos` (`endpos < xlogpos`
    /// in `stop_streaming`). To receive up to a segment boundary `b` and stop without
    /// waiting for more WAL, pass `b - 1`: the segment is finished (renamed) first.
    ///
    /// # Errors
    /// If it does not exit successfully within `timeout`; its stderr is in the error.
    pub fn run_until(
        &self,
        port: u16,
        endpos: Lsn,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String> {
        let end = endpos.to_string();
        let mut all = vec!["-E", end.as_str(), "-n", "-v"];
        all.extend_from_slice(args);
        let out = self.run(port, &all, timeout)?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            bail!("pg_receivewal {all:?} failed with {}:\n{stderr}", out.status);
        }
        Ok(stderr)
    }

    /// Starts pg_receivewal with `args` in the background; it is stopped when the
    /// returned guard is dropped.
    ///
    /// # Errors
    /// If it cannot start.
    pub fn spawn(&self, port: u16, args: &[&str]) -> Result<ChildGuard> {
        ChildGuard::spawn_captured(&mut self.command(port, args), "pg_receivewal")
            .context("pg_receivewal")
    }
}
