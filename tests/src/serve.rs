//! `walstream serve` as a child process: started on a free loopback port over a
//! directory of WAL, ready once it accepts TCP connections, stopped on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::{free_port, ChildGuard};

/// How long [`ServeProcess::start`] waits for the server to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `walstream serve -D WALDIR --listen 127.0.0.1:PORT ...`; its stderr (the
/// log) is captured in a file. Dropping it stops it (SIGTERM, SIGKILL after 5 s).
#[derive(Debug)]
pub struct ServeProcess {
    child: ChildGuard,
    port: u16,
    waldir: PathBuf,
}

impl ServeProcess {
    /// Starts `bin serve` (the tests pass `env!("CARGO_BIN_EXE_walstream")`) over
    /// `waldir` with `extra` arguments (`--hba FILE`, `-c name=value`, ...), and waits
    /// until it accepts TCP connections.
    ///
    /// # Errors
    /// If it cannot start, exits, or does not accept connections within
    /// [`READY_TIMEOUT`]; its stderr is in the error.
    pub fn start(bin: &Path, waldir: &Path, extra: &[&str]) -> Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("-D")
            .arg(waldir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_BACKTRACE", "1");
        let child = ChildGuard::spawn_captured(&mut cmd, "walstream serve")?;
        let mut serve = ServeProcess { child, port, waldir: waldir.to_path_buf() };
        serve.wait_ready()?;
        Ok(serve)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "walstream serve exited with {status} before accepting connections:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "walstream serve did not accept connections on port {} within {READY_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The directory it serves.
    pub fn waldir(&self) -> &Path {
        &self.waldir
    }

    /// A libpq conninfo string for user postgres over TCP (add `replication=true` or
    /// `dbname=replication` as the client needs).
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres", self.port)
    }

    /// Everything it has logged (stderr) so far.
    pub fn log(&self) -> String {
        self.child.stderr_text()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to it.
    pub fn signal(&mut self, signal: libc::c_int) {
        self.child.signal(signal);
    }

    /// Sends SIGINT (as Ctrl-C does).
    pub fn interrupt(&mut self) {
        self.child.signal(libc::SIGINT);
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) {
        self.child.signal(libc::SIGTERM);
    }

    /// Waits at most `timeout` for it to exit.
    ///
    /// # Errors
    /// If the status cannot be read.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        self.child.wait_timeout(timeout)
    }

    /// Stops it: SIGTERM, then SIGKILL after `grace`; returns its exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.child.stop(grace)
    }
}
