//! A child process with its output captured in files, stopped by its own pid
//! (SIGTERM, then SIGKILL after a bound) when it is dropped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A running child process; its stdout and stderr go to files in a temporary
/// directory. Dropping it stops the process (SIGTERM, SIGKILL after 5 s).
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: String,
    logs: tempfile::TempDir,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured in files.
    ///
    /// # Errors
    /// If the files cannot be made or the command cannot start.
    pub fn spawn_captured(cmd: &mut Command, name: &str) -> Result<Self> {
        let logs = tempfile::Builder::new().prefix("walstream-log.").tempdir()?;
        let out = File::create(logs.path().join("stdout"))?;
        let err = File::create(logs.path().join("stderr"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("could not start {name}: {cmd:?}"))?;
        Ok(ChildGuard { child, name: name.to_string(), logs, status: None })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where stderr is written.
    pub fn stderr_path(&self) -> PathBuf {
        self.logs.path().join("stderr")
    }

    fn read(path: &Path) -> Result<Vec<u8>> {
        fs::read(path).with_context(|| format!("reading {}", path.display()))
    }

    /// Everything written to stdout so far.
    ///
    /// # Errors
    /// If the file cannot be read.
    pub fn stdout(&self) -> Result<Vec<u8>> {
        Self::read(&self.logs.path().join("stdout"))
    }

    /// Everything written to stderr so far.
    ///
    /// # Errors
    /// If the file cannot be read.
    pub fn stderr(&self) -> Result<Vec<u8>> {
        Self::read(&self.stderr_path())
    }

    /// stdout so far as text (empty if unreadable).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout().unwrap_or_default()).into_owned()
    }

    /// stderr so far as text (empty if unreadable).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr().unwrap_or_default()).into_owned()
    }

    /// The exit status if the process has exited, without waiting.
    ///
    /// # Errors
    /// If the status cannot be read.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits at most `timeout` for the process to exit; `None` if it is still running.
    ///
    /// # Errors
    /// If the status cannot be read.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the process (nothing if it has exited).
    pub fn signal(&mut self, signal: libc::c_int) {
        if matches!(self.try_wait(), Ok(None)) {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill has no memory-safety preconditions; the pid is our own
                // child, not yet reaped, so it cannot have been reused.
                unsafe { libc::kill(pid, signal) };
            }
        }
    }

    /// Sends SIGINT (as Ctrl-C does).
    pub fn interrupt(&mut self) {
        self.signal(libc::SIGINT);
    }

    /// Stops the process: SIGTERM, then SIGKILL if it has not exited within `grace`.
    /// Returns its exit status (`None` if even that could not be read).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        if let Ok(Some(s)) = self.wait_timeout(grace) {
            return Some(s);
        }
        let _ = self.child.kill();
        self.child.wait().ok().inspect(|s| self.status = Some(*s))
    }

    /// The name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
