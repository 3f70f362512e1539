//! A walstream node run as its own process (`walstream initdb`, `walstream node`), for
//! tests that must kill it (`kill -9`) or drive it with PostgreSQL's client programs.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::{free_port, run_ok, ChildGuard};

/// How long a node may take to accept connections after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A node's data directory, made by `walstream initdb` in a temporary directory.
pub struct NodeDir {
    bin: PathBuf,
    tmp: tempfile::TempDir,
}

/// A running `walstream node`; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct NodeProcess {
    child: ChildGuard,
    port: u16,
}

impl NodeDir {
    /// Runs `bin initdb` (the `walstream` binary) with `--wal-segsize seg_mb`.
    ///
    /// # Errors
    /// If initdb fails.
    pub fn init(bin: &Path, seg_mb: u32) -> Result<NodeDir> {
        let tmp = tempfile::Builder::new().prefix("walstream-node.").tempdir()?;
        run_ok(
            Command::new(bin)
                .args(["initdb", "--wal-segsize", &seg_mb.to_string(), "-D"])
                .arg(tmp.path().join("data")),
        )?;
        Ok(NodeDir { bin: bin.to_path_buf(), tmp })
    }

    /// A standby of the server on `port`, made with `pg_basebackup -R -X stream -c fast`
    /// (and `extra` arguments), run with `bin`.
    ///
    /// # Errors
    /// If pg_basebackup fails.
    pub fn basebackup(bin: &Path, port: u16, extra: &[&str]) -> Result<NodeDir> {
        let tmp = tempfile::Builder::new().prefix("walstream-nodebb.").tempdir()?;
        run_ok(
            Command::new(crate::pg_bin("pg_basebackup"))
                .args(["-h", "127.0.0.1", "-U", "postgres", "-c", "fast", "-X", "stream", "-R"])
                .args(["-p", &port.to_string(), "-D"])
                .arg(tmp.path().join("data"))
                .args(extra),
        )?;
        Ok(NodeDir::adopt(bin, tmp))
    }

    /// A data directory another program made at `tmp/data` (e.g. `pg_basebackup`), run
    /// with `bin`.
    pub fn adopt(bin: &Path, tmp: tempfile::TempDir) -> NodeDir {
        NodeDir { bin: bin.to_path_buf(), tmp }
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// Starts `walstream node` on a free loopback port with `-c` settings, and waits
    /// until it accepts connections.
    ///
    /// # Errors
    /// If it exits or does not listen within a minute (its stderr is in the error).
    pub fn start(&self, settings: &[&str]) -> Result<NodeProcess> {
        self.start_on(free_port()?, settings)
    }

    /// As [`NodeDir::start`], on `port`.
    ///
    /// # Errors
    /// As [`NodeDir::start`].
    pub fn start_on(&self, port: u16, settings: &[&str]) -> Result<NodeProcess> {
        self.start_on_with(port, &[], settings)
    }

    /// As [`NodeDir::start`], with more arguments for `walstream node`.
    ///
    /// # Errors
    /// As [`NodeDir::start`].
    pub fn start_with_args(&self, args: &[&str], settings: &[&str]) -> Result<NodeProcess> {
        self.start_on_with(free_port()?, args, settings)
    }

    fn start_on_with(&self, port: u16, args: &[&str], settings: &[&str]) -> Result<NodeProcess> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["node", "-D"])
            .arg(self.data_dir())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args);
        for s in settings {
            cmd.args(["-c", s]);
        }
        let mut child = ChildGuard::spawn_captured(&mut cmd, "walstream node")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(NodeProcess { child, port });
            }
            if let Some(status) = child.try_wait()? {
                bail!("walstream node exited with {status}: {}", child.stderr_text());
            }
            if Instant::now() > deadline {
                bail!("walstream node did not listen in time: {}", child.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl NodeProcess {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq connection string for `dbname` as user postgres.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={dbname}", self.port)
    }

    /// Runs `sql` with psql (`-X -A -t`, stopping at the first error): its output,
    /// trimmed, or psql's stderr when it fails.
    pub fn psql(&self, sql: &str) -> std::result::Result<String, String> {
        let out = Command::new(crate::pg_bin("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.conninfo("postgres")])
            .args(["-c", sql])
            .output()
            .map_err(|e| format!("could not run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Waits up to `timeout` for the node to exit on its own: its exit status, or `None`.
    ///
    /// # Errors
    /// If waiting fails.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        self.child.wait_timeout(timeout)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to the node process.
    pub fn signal(&mut self, signal: libc::c_int) {
        self.child.signal(signal);
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.child.stderr_text()
    }

    /// `kill -9`, and waits for it to be gone.
    pub fn kill9(mut self) -> String {
        self.child.signal(libc::SIGKILL);
        let _ = self.child.wait_timeout(Duration::from_secs(10));
        self.child.stderr_text()
    }

    /// SIGINT (fast shutdown), waiting at most a minute.
    ///
    /// # Errors
    /// If it does not exit in time or exits with an error.
    pub fn stop(mut self) -> Result<String> {
        self.child.interrupt();
        match self.child.wait_timeout(Duration::from_secs(60))? {
            Some(s) if s.success() => Ok(self.child.stderr_text()),
            Some(s) => bail!("walstream node exited with {s}: {}", self.child.stderr_text()),
            None => bail!("walstream node did not stop: {}", self.child.stderr_text()),
        }
    }
}

/// A fresh PostgreSQL 15 cluster and a fresh node (16 MB segments) started beside it,
/// for tests that run the same exchange on both and compare. The node stops before its
/// directory goes.
pub struct PgAndNode {
    /// The node.
    pub node: NodeProcess,
    /// Its data directory.
    pub node_dir: NodeDir,
    /// The PostgreSQL cluster.
    pub pg: crate::PgCluster,
}

impl PgAndNode {
    /// Starts both: PostgreSQL with `pg`, the node (the `walstream` binary `bin`) with
    /// `-c` settings `node`.
    ///
    /// # Errors
    /// Either fails to start.
    pub fn start(bin: &Path, pg: &crate::PgConfig, node: &[&str]) -> Result<PgAndNode> {
        let pg = crate::PgCluster::start(pg)?;
        let node_dir = NodeDir::init(bin, 16)?;
        let node = node_dir.start(node)?;
        Ok(PgAndNode { node, node_dir, pg })
    }
}
