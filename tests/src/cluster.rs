//! Throwaway PostgreSQL 15 clusters: a primary made by initdb, or a standby made from
//! a base backup, each on a free loopback port and stopped and removed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use walstream_protocol::{Lsn, WalSegSize};

use crate::{free_port, pg_bin, pg_bindir, pg_command, postgres_owned_tempdir, run_ok, wait_for};

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
    seg_size: WalSegSize,
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
        let seg_size = seg_size_mb(cfg.wal_segsize_mb)?;
        let cluster = PgCluster { dir, port: free_port()?, running: false, seg_size };
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

fn seg_size_mb(mb: u32) -> Result<WalSegSize> {
    WalSegSize::new(u64::from(mb) * 1024 * 1024).context("wal_segsize_mb")
}

/// A base backup taken with `pg_basebackup` into a postgres-owned temporary directory
/// (`data/` inside it); [`PgCluster::standby`] turns it into a running standby.
pub struct BaseBackup {
    dir: tempfile::TempDir,
    seg_size: WalSegSize,
}

impl BaseBackup {
    /// A backup some other program took into `dir/data` (`dir` postgres-owned).
    pub fn from_dir(dir: tempfile::TempDir, seg_size: WalSegSize) -> BaseBackup {
        BaseBackup { dir, seg_size }
    }

    /// The backup's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl PgCluster {
    /// The cluster's WAL segment size.
    pub fn seg_size(&self) -> WalSegSize {
        self.seg_size
    }

    /// The server log so far (empty if it cannot be read).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Promotes a standby (`pg_ctl promote -w`): it is a primary on a new timeline
    /// when this returns.
    ///
    /// # Errors
    /// If pg_ctl fails or the promotion does not finish within 60 s.
    pub fn promote(&self) -> Result<()> {
        run_ok(
            pg_command(pg_bin("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-t", "60", "promote"]),
        )?;
        Ok(())
    }

    fn query_lsn(&self, sql: &str) -> Result<Option<Lsn>> {
        let text = self.psql(sql)?;
        if text.is_empty() {
            return Ok(None);
        }
        Ok(Some(text.parse().with_context(|| format!("{sql} returned {text:?}"))?))
    }

    /// `pg_current_wal_flush_lsn()`: how far WAL is flushed on a primary.
    ///
    /// # Errors
    /// If the query fails (for example on a standby).
    pub fn current_lsn(&self) -> Result<Lsn> {
        self.query_lsn("SELECT pg_current_wal_flush_lsn()")?.context("no flush LSN")
    }

    /// `pg_last_wal_replay_lsn()`: how far a standby has replayed (`None` before any
    /// replay, and on a primary that was never a standby).
    ///
    /// # Errors
    /// If the query fails.
    pub fn replay_lsn(&self) -> Result<Option<Lsn>> {
        self.query_lsn("SELECT pg_last_wal_replay_lsn()")
    }

    /// Waits (at most `timeout`) until this standby has replayed up to `lsn`.
    ///
    /// # Errors
    /// On timeout; the error names how far replay got, and the server log is included.
    pub fn wait_replayed(&self, lsn: Lsn, timeout: Duration) -> Result<Lsn> {
        let mut last = None;
        let res = wait_for(&format!("replay to reach {lsn}"), timeout, || {
            last = self.replay_lsn()?;
            Ok(last.filter(|l| *l >= lsn))
        });
        res.with_context(|| format!("replay is at {last:?}\nserver log:\n{}", self.log()))
    }

    /// `pg_switch_wal()`, returning the start of the next segment: where the segment
    /// just finished ends (the value itself when no WAL was written since the last
    /// switch).
    ///
    /// # Errors
    /// If the query fails.
    pub fn switch_wal(&self) -> Result<Lsn> {
        let at = self.query_lsn("SELECT pg_switch_wal()")?.context("pg_switch_wal is NULL")?;
        Ok(next_segment_boundary(at, self.seg_size))
    }

    /// `CHECKPOINT`.
    ///
    /// # Errors
    /// If the query fails.
    pub fn checkpoint(&self) -> Result<()> {
        self.psql("CHECKPOINT").map(drop)
    }

    /// Runs `pg_basebackup` from this server into `dir` (which must not exist yet or
    /// be empty, in a place the `postgres` user can write), with `-c fast --no-sync`
    /// and `extra` arguments (e.g. `["-X", "none"]` or `["-X", "stream"]`).
    ///
    /// # Errors
    /// If pg_basebackup fails.
    pub fn basebackup_to(&self, dir: &Path, extra: &[&str]) -> Result<Output> {
        run_ok(
            pg_command(pg_bin("pg_basebackup"))
                .args(["-h", "127.0.0.1", "-U", "postgres", "-c", "fast", "--no-sync", "-p"])
                .arg(self.port.to_string())
                .arg("-D")
                .arg(dir)
                .args(extra),
        )
    }

    /// Takes a base backup (see [`PgCluster::basebackup_to`]) into a new postgres-owned
    /// temporary directory.
    ///
    /// # Errors
    /// If pg_basebackup fails.
    pub fn basebackup(&self, extra: &[&str]) -> Result<BaseBackup> {
        let dir = postgres_owned_tempdir("walstream-backup.")?;
        self.basebackup_to(&dir.path().join("data"), extra)?;
        Ok(BaseBackup { dir, seg_size: self.seg_size })
    }

    /// Makes a standby of `backup` and starts it: a free port, `cfg`'s settings and
    /// hba, `standby.signal`, `primary_conninfo`, `hot_standby = on` and
    /// `wal_retrieve_retry_interval = 500ms` (so a refused or ended stream is retried
    /// quickly). `cfg.wal_segsize_mb` and `cfg.initdb_args` are not used.
    ///
    /// # Errors
    /// If the files cannot be written or the server does not start.
    pub fn standby(backup: BaseBackup, cfg: &PgConfig, primary_conninfo: &str) -> Result<Self> {
        let BaseBackup { dir, seg_size } = backup;
        let mut cluster = PgCluster { dir, port: free_port()?, running: false, seg_size };
        let mut cfg = cfg.clone();
        cfg.settings.splice(
            0..0,
            [
                ("primary_conninfo".to_string(), primary_conninfo.to_string()),
                ("hot_standby".to_string(), "on".to_string()),
                ("wal_retrieve_retry_interval".to_string(), "500ms".to_string()),
            ],
        );
        cluster.write_config(&cfg)?;
        let signal = cluster.data_dir().join("standby.signal");
        fs::write(&signal, "")?;
        crate::chown_postgres(&signal)?;
        cluster.start_server()?;
        Ok(cluster)
    }
}

/// The first segment boundary at or after `lsn`.
pub fn next_segment_boundary(lsn: Lsn, seg_size: WalSegSize) -> Lsn {
    if lsn.segment_offset(seg_size) == 0 {
        lsn
    } else {
        lsn.segment_start(seg_size) + u64::from(seg_size.bytes())
    }
}
