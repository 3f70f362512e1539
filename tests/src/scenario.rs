//! Ready-made sources of real PostgreSQL 15 WAL for the `walstream serve` tests: a
//! primary with pgbench WAL on 1 MB segments, and a copy of its pg_wal to serve.

use std::time::Duration;

use anyhow::{Context, Result};
use walstream_protocol::lsn::{parse_segment_file_name, segment_file_name};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

use crate::{complete_wal_files, copy_wal_files, BaseBackup, PgCluster, PgConfig};

/// The segment size of every scenario cluster: 1 MB.
pub fn seg_size() -> WalSegSize {
    // 1 MB is valid, so the default is never used.
    WalSegSize::new(u64::from(WalSegSize::MIN)).unwrap_or_default()
}

/// Settings for a cluster whose pg_wal will be served: 1 MB segments, and nothing
/// removed (`wal_keep_size`) or recycled into future segment names (`wal_recycle`),
/// so its pg_wal holds every segment from the first and none beyond the end.
pub fn source_config() -> PgConfig {
    PgConfig::small_segments().set("wal_keep_size", "1GB").set("wal_recycle", "off")
}

/// How long a standby gets to replay what a scenario wrote.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// The names of the timeline-1 segments from `first` up to (not including) the one
/// starting at `end` (a segment boundary).
pub fn segments_between(first: &str, end: Lsn) -> Vec<String> {
    segments_on(TimeLineId(1), first, end)
}

/// The names of the segments of timeline `tli` from the segment number of `first`
/// up to (not including) the segment holding `end`, or ending at it when `end` is a
/// segment boundary.
pub fn segments_on(tli: TimeLineId, first: &str, end: Lsn) -> Vec<String> {
    let Some((_, from)) = parse_segment_file_name(first, seg_size()) else { return Vec::new() };
    let to = end.prev_segno(seg_size()).0;
    (from.0..=to).map(|s| segment_file_name(tli, XLogSegNo(s), seg_size())).collect()
}

/// A running primary with WAL written by `pgbench -i` and a short pgbench run, its
/// last segment finished by `pg_switch_wal()` at `end`.
pub struct Source {
    /// The primary.
    pub primary: PgCluster,
    /// Where the finished WAL ends: the start of the segment after the switch.
    pub end: Lsn,
}

impl Source {
    /// Starts a primary with [`source_config`], runs `pgbench -i -s 1` and
    /// `pgbench -t 200`, and switches WAL.
    ///
    /// # Errors
    /// If a PostgreSQL program fails.
    pub fn pgbench() -> Result<Self> {
        let primary = PgCluster::start(&source_config())?;
        primary.pgbench(&["-i", "-s", "1", "-q"])?;
        primary.pgbench(&["-t", "200", "-n"])?;
        let end = primary.switch_wal()?;
        Ok(Source { primary, end })
    }

    /// The oldest segment in the primary's pg_wal.
    ///
    /// # Errors
    /// If pg_wal cannot be read or has no segment.
    pub fn first_segment(&self) -> Result<String> {
        first_segment(&self.primary)
    }

    /// Stops the primary (fast: its shutdown checkpoint goes into the segment after
    /// `end`) and copies its segments and history files into a new directory.
    ///
    /// # Errors
    /// If the stop or the copy fails.
    pub fn stop_and_copy(&mut self) -> Result<tempfile::TempDir> {
        self.primary.stop("fast")?;
        copy_pg_wal(&self.primary)
    }
}

/// The oldest segment in `cluster`'s pg_wal.
///
/// # Errors
/// If pg_wal cannot be read or has no segment.
pub fn first_segment(cluster: &PgCluster) -> Result<String> {
    complete_wal_files(&cluster.wal_dir())?
        .into_iter()
        .find(|n| !n.ends_with(".history"))
        .context("no segment in pg_wal")
}

/// Copies `cluster`'s pg_wal segments and history files into a new temporary
/// directory (owned by root when the tests run as root: walstream reads it).
///
/// # Errors
/// If the copy fails.
pub fn copy_pg_wal(cluster: &PgCluster) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("walstream-waldir.").tempdir()?;
    copy_wal_files(&cluster.wal_dir(), dir.path())?;
    Ok(dir)
}

/// A timeline switch: a primary, a standby streaming from it that is promoted to
/// timeline 2 and written to, and optionally a base backup of the old primary taken
/// before the promotion.
pub struct Promoted {
    /// The old primary (timeline 1), still running.
    pub old_primary: PgCluster,
    /// The promoted standby (timeline 2), running.
    pub promoted: PgCluster,
    /// `pg_basebackup -X none` backups of the old primary, taken while the standby
    /// streamed.
    pub old_backups: Vec<BaseBackup>,
    /// Where the promoted node's finished WAL ends (start of the segment after its
    /// `pg_switch_wal()`).
    pub end: Lsn,
}

impl Promoted {
    /// Builds the scenario: `pgbench -i` on the primary, a streaming standby
    /// (`pg_basebackup -X stream`), [the old-primary backup], `pgbench -t 200` and a
    /// table `before_switch` on the primary, replay caught up, promotion, then
    /// `pgbench -t 100`, a table `after_switch` and `pg_switch_wal()` on the new
    /// primary.
    ///
    /// # Errors
    /// If a PostgreSQL program fails or the standby does not catch up.
    pub fn new(old_backups: usize) -> Result<Self> {
        Self::build(old_backups, |_| Ok(())).map(|(scenario, ())| scenario)
    }

    /// The same scenario without old-primary backups, with `watch` called on the
    /// standby once it runs and before anything more is written on the primary (to
    /// start a client that streams from the standby and follows its promotion);
    /// returns the scenario and what `watch` returned.
    ///
    /// # Errors
    /// If `watch` fails, a PostgreSQL program fails or the standby does not catch up.
    pub fn with_standby_client<T>(
        watch: impl FnOnce(&PgCluster) -> Result<T>,
    ) -> Result<(Self, T)> {
        Self::build(0, watch)
    }

    fn build<T>(
        old_backups: usize,
        watch: impl FnOnce(&PgCluster) -> Result<T>,
    ) -> Result<(Self, T)> {
        let old_primary = PgCluster::start(&source_config())?;
        old_primary.pgbench(&["-i", "-s", "1", "-q"])?;
        let backup = old_primary.basebackup(&["-X", "stream"])?;
        let promoted =
            PgCluster::standby(backup, &source_config(), &old_primary.conninfo("postgres"))?;
        let old_backups = (0..old_backups)
            .map(|_| old_primary.basebackup(&["-X", "none"]))
            .collect::<Result<Vec<_>>>()?;
        let client = watch(&promoted)?;
        old_primary.pgbench(&["-t", "200", "-n"])?;
        old_primary
            .psql("CREATE TABLE before_switch AS SELECT g AS i FROM generate_series(1, 1000) g")?;
        promoted.wait_replayed(old_primary.current_lsn()?, REPLAY_TIMEOUT)?;
        promoted.promote()?;
        promoted.pgbench(&["-t", "100", "-n"])?;
        promoted
            .psql("CREATE TABLE after_switch AS SELECT g AS i FROM generate_series(1, 500) g")?;
        let end = promoted.switch_wal()?;
        Ok((Promoted { old_primary, promoted, old_backups, end }, client))
    }

    /// Stops the promoted node (fast) and copies its pg_wal (timeline-1 segments up to
    /// the switch, `00000002.history`, timeline-2 segments) into a new directory.
    ///
    /// # Errors
    /// If the stop or the copy fails.
    pub fn stop_and_copy(&mut self) -> Result<tempfile::TempDir> {
        self.promoted.stop("fast")?;
        copy_pg_wal(&self.promoted)
    }
}

/// What the scenario tests compare between a primary and a standby: pgbench's
/// accounts and history, and the tables a scenario made (missing ones are skipped).
///
/// # Errors
/// If a query fails.
pub fn snapshot(cluster: &PgCluster) -> Result<String> {
    let mut out = cluster.psql(
        "SELECT sum(abalance), count(*) FROM pgbench_accounts; \
         SELECT count(*), sum(delta) FROM pgbench_history",
    )?;
    for table in ["before_switch", "after_switch", "made_later"] {
        let exists = cluster.psql(&format!("SELECT to_regclass('{table}') IS NOT NULL"))?;
        if exists == "t" {
            out.push('\n');
            out.push_str(
                &cluster.psql(&format!("SELECT '{table}', count(*), sum(i) FROM {table}"))?,
            );
        }
    }
    Ok(out)
}
