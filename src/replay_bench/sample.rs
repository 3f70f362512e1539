//! Sampling a standby while it replays: its replay position and last replayed commit
//! time through SQL, and its startup process's CPU time from `/proc`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use walstream_protocol::Lsn;

use super::parse::parse_stat;

/// One sample of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started (the standby was started).
    pub t: f64,
    /// `pg_last_wal_replay_lsn()` as bytes past the capture's start (None before the
    /// standby accepts connections).
    pub replayed: Option<u64>,
    /// `pg_last_wal_replay_lsn()`, `X/X`.
    pub replay_lsn: Option<String>,
    /// `pg_last_xact_replay_timestamp()`, seconds since the Unix epoch.
    pub replay_timestamp: Option<f64>,
    /// Bytes past the capture's start the sender had made available.
    pub available: u64,
    /// Bytes available but not yet replayed.
    pub lag_bytes: Option<u64>,
    /// How long the oldest available, unreplayed commit has been waiting, in seconds.
    pub lag_seconds: Option<f64>,
    /// The startup process's user + system CPU seconds so far.
    pub startup_cpu: Option<f64>,
}

/// The SQL a sample runs.
pub const SAMPLE_SQL: &str = "SELECT pg_last_wal_replay_lsn()::text, \
     extract(epoch FROM pg_last_xact_replay_timestamp())::float8";

/// The SQL a sample runs on a walstream node, which has no `extract`: the commit time
/// as text, parsed by [`timestamp_seconds`].
pub const NODE_SAMPLE_SQL: &str =
    "SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()::text";

/// Runs [`SAMPLE_SQL`] (on a node: [`NODE_SAMPLE_SQL`]): the replay position and last
/// replayed commit time.
///
/// # Errors
/// The query fails or its answer does not parse.
pub async fn query_replay(
    client: &tokio_postgres::Client,
    node: bool,
) -> Result<(Option<Lsn>, Option<f64>)> {
    let row = client.query_one(if node { NODE_SAMPLE_SQL } else { SAMPLE_SQL }, &[]).await?;
    let lsn: Option<String> = row.try_get(0)?;
    let ts: Option<f64> = if node {
        match row.try_get::<_, Option<String>>(1)? {
            Some(t) => Some(
                timestamp_seconds(&t).ok_or_else(|| anyhow::anyhow!("bad timestamp \"{t}\""))?,
            ),
            None => None,
        }
    } else {
        row.try_get(1)?
    };
    let lsn = match lsn {
        Some(t) => Some(t.parse::<Lsn>().map_err(|_| anyhow::anyhow!("bad LSN \"{t}\""))?),
        None => None,
    };
    Ok((lsn, ts))
}

/// Seconds since the Unix epoch of a `timestamptz` in PostgreSQL's ISO text
/// (`2026-12-07 12:05:03.817076+00`).
pub fn timestamp_seconds(text: &str) -> Option<f64> {
    let t: jiff::Timestamp = text.trim().parse().ok()?;
    Some(t.as_microsecond() as f64 / 1e6)
}

/// Connects to the standby on `port` as `postgres`.
///
/// # Errors
/// It does not accept the connection (yet).
pub async fn connect(port: u16) -> Result<tokio_postgres::Client> {
    let conf = format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2 application_name=replay-bench-sampler"
    );
    let (client, conn) = tokio_postgres::connect(&conf, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The pid of the startup process among the children of the postmaster `postmaster`
/// (`postgres: startup ...` in its command line), looked up in `proc`.
pub fn startup_pid(proc: &Path, postmaster: u32) -> Option<u32> {
    for entry in std::fs::read_dir(proc).ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if parse_stat(&stat).map(|s| s.ppid) != Some(postmaster) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.starts_with(b"postgres: startup") {
            return Some(pid);
        }
    }
    None
}

/// CPU seconds (user + system) of `pid` so far.
pub fn cpu_seconds(proc: &Path, pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(proc.join(pid.to_string()).join("stat")).ok()?;
    let s = parse_stat(&stat)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((s.utime + s.stime) as f64 / hz)
}

/// Writes every run's samples as JSON.
///
/// # Errors
/// I/O errors.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("could not write \"{}\"", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps_parse() {
        assert_eq!(timestamp_seconds("1970-01-01 00:00:01.5+00"), Some(1.5));
        assert_eq!(timestamp_seconds("1970-01-01 01:00:02+01"), Some(2.0));
        assert_eq!(timestamp_seconds("1970-01-01 00:00:00-00:30"), Some(1800.0));
        assert_eq!(timestamp_seconds("yesterday"), None);
    }

    #[test]
    fn our_own_cpu_is_readable() {
        let me = std::process::id();
        assert!(cpu_seconds(Path::new("/proc"), me).is_some());
        assert_eq!(startup_pid(Path::new("/proc"), me), None);
    }
}
