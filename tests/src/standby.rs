//! `walstream receivewal` as a standby of a real PostgreSQL 15 server: starting it, the
//! server's `pg_stat_replication` view of it, and checks on the segment names it wrote.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use walstream_protocol::lsn::parse_segment_file_name;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use crate::{ChildGuard, PgCluster};

/// Starts `walstream` (the binary at `bin`) as `receivewal -d conninfo -D dir -v` with
/// `extra` arguments after; stderr is captured.
///
/// # Errors
/// If it cannot start.
pub fn spawn_receivewal(
    bin: &Path,
    conninfo: &str,
    dir: &Path,
    extra: &[&str],
) -> Result<ChildGuard> {
    let mut cmd = Command::new(bin);
    cmd.arg("receivewal")
        .arg("-d")
        .arg(conninfo)
        .arg("-D")
        .arg(dir)
        .arg("-v")
        .args(extra)
        .env("RUST_BACKTRACE", "1");
    ChildGuard::spawn_captured(&mut cmd, "walstream receivewal")
}

/// One standby's row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRow {
    /// The walsender's pid.
    pub pid: u32,
    /// `state` (`startup`, `catchup`, `streaming`, ...).
    pub state: String,
    /// `sync_state` (`async`, `sync`, `potential`, `quorum`).
    pub sync_state: String,
    /// `write_lsn` (NULL before the first reply).
    pub write: Option<Lsn>,
    /// `flush_lsn`.
    pub flush: Option<Lsn>,
    /// `replay_lsn`.
    pub replay: Option<Lsn>,
}

/// The newest `pg_stat_replication` row of the standby called `application_name` on
/// `server`, if it is connected.
///
/// # Errors
/// If the query fails or returns something unexpected.
pub fn replication_row(
    server: &PgCluster,
    application_name: &str,
) -> Result<Option<ReplicationRow>> {
    let name = application_name.replace('\'', "''");
    let text = server.psql(&format!(
        "SELECT pid, state, sync_state, coalesce(write_lsn::text, ''), \
         coalesce(flush_lsn::text, ''), coalesce(replay_lsn::text, '') \
         FROM pg_stat_replication WHERE application_name = '{name}' \
         ORDER BY backend_start DESC LIMIT 1"
    ))?;
    if text.is_empty() {
        return Ok(None);
    }
    let f: Vec<&str> = text.split('|').collect();
    let [pid, state, sync_state, write, flush, replay] = f[..] else {
        bail!("unexpected pg_stat_replication row {text:?}");
    };
    let lsn = |s: &str| -> Result<Option<Lsn>> {
        if s.is_empty() {
            Ok(None)
        } else {
            Ok(Some(s.parse().with_context(|| format!("LSN {s:?}"))?))
        }
    };
    Ok(Some(ReplicationRow {
        pid: pid.parse().with_context(|| format!("pid {pid:?}"))?,
        state: state.to_string(),
        sync_state: sync_state.to_string(),
        write: lsn(write)?,
        flush: lsn(flush)?,
        replay: lsn(replay)?,
    }))
}

/// Polls `probe` every `every` until it returns `Some`, for at most `timeout`; returns
/// the value and how long it took. Probe errors are retried (a restarting server
/// refuses queries); the last one is in the timeout error.
///
/// # Errors
/// If `probe` has not returned `Some` within `timeout`.
pub fn measure_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<(T, Duration)> {
    let started = Instant::now();
    let mut last_error = None;
    loop {
        match probe() {
            Ok(Some(v)) => return Ok((v, started.elapsed())),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if started.elapsed() >= timeout {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(every);
    }
}

/// Checks that the segment names among `names` (history files are skipped) form, for
/// each timeline, one run of consecutive segment numbers; returns (timeline, first
/// segment number, count) for each timeline, in order.
///
/// # Errors
/// If a name does not parse or a segment is missing between two others.
pub fn contiguous_segments(
    names: &[String],
    seg_size: WalSegSize,
) -> Result<Vec<(TimeLineId, u64, u64)>> {
    let mut runs: Vec<(TimeLineId, u64, u64)> = Vec::new();
    let mut segments = Vec::new();
    for n in names.iter().filter(|n| !n.ends_with(".history")) {
        let Some((tli, segno)) = parse_segment_file_name(n, seg_size) else {
            bail!("{n} is not a segment file name");
        };
        segments.push((tli.0, segno.0));
    }
    segments.sort_unstable();
    for (tli, segno) in segments {
        match runs.last_mut() {
            Some((t, first, count)) if t.0 == tli => {
                if segno != *first + *count {
                    bail!(
                        "timeline {tli}: segment number {segno:X} follows {:X}, a gap: {names:?}",
                        *first + *count - 1
                    );
                }
                *count += 1;
            }
            _ => runs.push((TimeLineId(tli), segno, 1)),
        }
    }
    Ok(runs)
}

/// The positions `walstream receivewal -v` logged as `starting log streaming at X
/// (timeline N)`, in order.
pub fn streaming_starts(stderr: &str) -> Vec<(Lsn, u32)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.split("starting log streaming at ").nth(1)?;
            let (lsn, tli) = rest.split_once(" (timeline ")?;
            Some((lsn.trim().parse().ok()?, tli.trim_end_matches(')').trim().parse().ok()?))
        })
        .collect()
}
