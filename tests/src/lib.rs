//! Test support: throwaway PostgreSQL 15 clusters for integration tests.
//!
//! A [`PgCluster`] is initdb'd into its own temporary directory, started on a free
//! loopback port with the settings a test asks for, and stopped (`pg_ctl -m immediate`)
//! and removed when it is dropped — also when the test panics. PostgreSQL refuses to
//! run as root, so when the tests run as root every PostgreSQL program is started as
//! the `postgres` user through `runuser`, in a directory that user owns.

use std::ffi::OsStr;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

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

/// A command for a PostgreSQL program, run as `postgres` when we are root.
pub fn pg_command(program: impl AsRef<OsStr>) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
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

/// A loopback TCP port nobody is listening on right now.
///
/// # Errors
/// If no port can be bound.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Makes a fresh temporary directory the `postgres` user owns (when we are root).
///
/// # Errors
/// If the directory cannot be made or handed over.
pub fn postgres_owned_tempdir(prefix: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    if running_as_root() {
        run_ok(Command::new("chown").arg("postgres:postgres").arg(dir.path()))?;
    }
    Ok(dir)
}

/// How to make a cluster: initdb options, postgresql.conf settings, pg_hba.conf lines.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `initdb --wal-segsize`, in MB.
    pub wal_segsize_mb: u32,
    /// Extra `name = value` lines for postgresql.conf.
    pub settings: Vec<(String, String)>,
    /// pg_hba.conf lines; when empty, trust for every local and loopback connection,
    /// replication included.
    pub hba: Vec<String>,
    /// Extra initdb arguments.
    pub initdb_args: Vec<String>,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            wal_segsize_mb: 16,
            settings: Vec::new(),
            hba: Vec::new(),
            initdb_args: Vec::new(),
        }
    }
}

impl PgConfig {
    /// A config with 1 MB WAL segments (keeps files small).
    pub fn small_segments() -> Self {
        PgConfig { wal_segsize_mb: 1, ..Default::default() }
    }

    /// Adds one postgresql.conf setting.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the WAL segment size in MB.
    pub fn wal_segsize_mb(mut self, mb: u32) -> Self {
        self.wal_segsize_mb = mb;
        self
    }

    /// Replaces pg_hba.conf with these lines.
    pub fn hba_lines(mut self, lines: &[&str]) -> Self {
        self.hba = lines.iter().map(|s| s.to_string()).collect();
        self
    }
}

const DEFAULT_HBA: &str = "\
local all all trust
local replication all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
host all all ::1/128 trust
host replication all ::1/128 trust
";

/// A running throwaway PostgreSQL 15 cluster, stopped and deleted on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

impl PgCluster {
    /// initdb a new cluster with `cfg` and start it on a free loopback port.
    ///
    /// # Errors
    /// If PostgreSQL is not installed, or initdb or the start fails.
    pub fn start(cfg: &PgConfig) -> Result<Self> {
        let mut cluster = Self::init(cfg)?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// initdb a new cluster with `cfg` without starting it.
    ///
    /// # Errors
    /// If PostgreSQL is not installed or initdb fails.
    pub fn init(cfg: &PgConfig) -> Result<Self> {
        if !pg_bin("initdb").exists() {
            bail!("PostgreSQL 15 is not installed at {} (set PG_BINDIR)", pg_bindir().display());
        }
        let dir = postgres_owned_tempdir("walstream-pg.")?;
        let data = dir.path().join("data");
        run_ok(
            pg_command(pg_bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
                .arg(format!("--wal-segsize={}", cfg.wal_segsize_mb))
                .args(&cfg.initdb_args),
        )?;
        let cluster = PgCluster { dir, port: free_port()?, running: false };
        cluster.write_config(cfg)?;
        Ok(cluster)
    }

    fn write_config(&self, cfg: &PgConfig) -> Result<()> {
        let mut conf = format!(
            "port = {}\nunix_socket_directories = '{}'\n\
             listen_addresses = '127.0.0.1'\nfsync = off\nmax_wal_senders = 10\n\
             wal_level = replica\nlog_min_messages = warning\nshared_buffers = 16MB\n",
            self.port,
            self.dir.path().display()
        );
        for (k, v) in &cfg.settings {
            conf.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
        }
        self.append_conf(&conf)?;
        let hba =
            if cfg.hba.is_empty() { DEFAULT_HBA.to_string() } else { cfg.hba.join("\n") + "\n" };
        fs::write(self.data_dir().join("pg_hba.conf"), hba)?;
        Ok(())
    }

    /// Appends lines to postgresql.conf (takes effect at the next start or reload).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn append_conf(&self, text: &str) -> Result<()> {
        use std::io::Write;
        let mut f =
            fs::OpenOptions::new().append(true).open(self.data_dir().join("postgresql.conf"))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Starts the server (`pg_ctl start -w`).
    ///
    /// # Errors
    /// If pg_ctl fails; the server log is included.
    pub fn start_server(&mut self) -> Result<()> {
        let log = self.dir.path().join("server.log");
        let res = run_ok(
            pg_command(pg_bin("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "start"]),
        );
        if let Err(e) = res {
            let text = fs::read_to_string(&log).unwrap_or_default();
            bail!("{e}\nserver log:\n{text}");
        }
        self.running = true;
        Ok(())
    }

    /// Stops the server with `mode` (`smart`, `fast`, `immediate`).
    ///
    /// # Errors
    /// If pg_ctl fails.
    pub fn stop(&mut self, mode: &str) -> Result<()> {
        if self.running {
            self.running = false;
            run_ok(
                pg_command(pg_bin("pg_ctl"))
                    .arg("-D")
                    .arg(self.data_dir())
                    .args(["-w", "-t", "60", "-m", mode, "stop"]),
            )?;
        }
        Ok(())
    }

    /// The temp directory holding `data/` and the server log.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `data/pg_wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir().join("pg_wal")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq conninfo string for `dbname` as user postgres over TCP.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={dbname}", self.port)
    }

    /// Runs SQL through `psql -XAt` (tuples only, `|`-separated) and returns stdout, trimmed.
    ///
    /// # Errors
    /// If psql fails (its stderr is in the error).
    pub fn psql(&self, sql: &str) -> Result<String> {
        let out = run_ok(
            pg_command(pg_bin("psql"))
                .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(self.conninfo("postgres"))
                .args(["-c", sql]),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Runs `pgbench` against database `postgres` with these arguments.
    ///
    /// # Errors
    /// If pgbench fails.
    pub fn pgbench(&self, args: &[&str]) -> Result<Output> {
        run_ok(
            pg_command(pg_bin("pgbench"))
                .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .args(args)
                .arg("postgres"),
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            // Immediate: nothing of a throwaway cluster needs to be kept.
            let _ = self.stop("immediate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_starts_answers_and_is_removed() {
        let root;
        {
            let c = PgCluster::start(&PgConfig::small_segments()).expect("start");
            root = c.root().to_path_buf();
            assert_eq!(c.psql("SELECT 1").unwrap(), "1");
            assert_eq!(c.psql("SHOW wal_segment_size").unwrap(), "1MB");
            let segments = fs::read_dir(c.wal_dir())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name().len() == 24
                        && e.file_name().to_string_lossy().starts_with("00000001")
                })
                .count();
            assert!(segments > 0, "no WAL segment in pg_wal");
        }
        assert!(!root.exists(), "cluster directory left behind");
    }

    #[test]
    fn per_test_segment_size_settings_and_hba() {
        let cfg = PgConfig::default()
            .wal_segsize_mb(2)
            .set("wal_sender_timeout", "12s")
            .set("cluster_name", "it's quoted")
            .hba_lines(&[
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                "host replication all 127.0.0.1/32 reject",
            ]);
        let c = PgCluster::start(&cfg).expect("start");
        assert_eq!(c.psql("SHOW wal_segment_size").unwrap(), "2MB");
        assert_eq!(c.psql("SHOW wal_sender_timeout").unwrap(), "12s");
        assert_eq!(c.psql("SHOW cluster_name").unwrap(), "it's quoted");
        let refused = pg_command(pg_bin("psql"))
            .arg(format!("{} replication=true", c.conninfo("postgres")))
            .args(["-XAtc", "IDENTIFY_SYSTEM"])
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("pg_hba.conf rejects replication connection"), "{err}");
    }

    #[test]
    fn cluster_is_stopped_when_a_test_panics() {
        let port = std::sync::Mutex::new(0u16);
        let r = std::panic::catch_unwind(|| {
            let c = PgCluster::start(&PgConfig::small_segments()).expect("start");
            *port.lock().unwrap() = c.port();
            panic!("test failure");
        });
        assert!(r.is_err());
        let port = *port.lock().unwrap();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "server still up");
    }
}
