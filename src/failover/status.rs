//! What `walstream failover status` shows and `/metrics` serves: per node its id, host,
//! port, status, role, replication delay and last status change — the columns of
//! Pgpool-II's `SHOW pool_nodes`. The running manager keeps it in `work_dir` (as
//! Pgpool-II keeps `pgpool_status` there), replaced atomically on every change.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::state::{Role, Status};

/// One node's line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    /// `node_id`.
    pub node_id: usize,
    /// `hostname`.
    pub hostname: String,
    /// `port`.
    pub port: u16,
    /// `status`.
    pub status: Status,
    /// `role`.
    pub role: Role,
    /// `replication_delay`, in bytes of WAL not yet replayed (standbys).
    pub replication_delay: Option<u64>,
    /// The same in seconds (`pg_stat_replication.replay_lag`).
    pub replication_delay_seconds: Option<f64>,
    /// `replication_state` (`pg_stat_replication.state`).
    pub replication_state: String,
    /// `replication_sync_state` (`pg_stat_replication.sync_state`).
    pub replication_sync_state: String,
    /// `last_status_change`, as `YYYY-MM-DD HH:MM:SS` (UTC).
    pub last_status_change: String,
    /// Why the last check failed, if it did.
    pub last_error: Option<String>,
}

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// The manager's process id.
    pub pid: u32,
    /// When this was written.
    pub updated: String,
    /// The primary's id, when one is known.
    pub primary: Option<usize>,
    /// Failovers performed by this manager.
    pub failovers: u64,
    /// Whether this manager acts (without `--dcs`, always; with it, while it leads).
    pub leader: bool,
    /// The nodes, by id.
    pub nodes: Vec<NodeRow>,
}

/// A time as `YYYY-MM-DD HH:MM:SS` (UTC), as `last_status_change` shows it.
pub fn format_time(unix_secs: i64) -> String {
    jiff::Timestamp::from_second(unix_secs)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Writes `snapshot` to `path` atomically (a temporary file renamed over it).
///
/// # Errors
/// The file cannot be written.
pub fn write(path: &Path, snapshot: &Snapshot) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(snapshot)?;
    let mut f = std::fs::File::create(&tmp)
        .with_context(|| format!("could not create file \"{}\"", tmp.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("could not write to file \"{}\"", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        format!("could not rename file \"{}\" to \"{}\"", tmp.display(), path.display())
    })
}

/// Reads a status file.
///
/// # Errors
/// The file cannot be read or is not a status file.
pub fn read(path: &Path) -> Result<Snapshot> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not open file \"{}\"", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("file \"{}\" is not a walstream failover status", path.display()))
}

/// The table `walstream failover status` prints, aligned as psql prints `SHOW pool_nodes`.
pub fn render(s: &Snapshot) -> String {
    let header = [
        "node_id",
        "hostname",
        "port",
        "status",
        "role",
        "replication_delay",
        "replication_delay_seconds",
        "replication_state",
        "replication_sync_state",
        "last_status_change",
    ];
    let rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node_id.to_string(),
                n.hostname.clone(),
                n.port.to_string(),
                n.status.as_str().to_string(),
                n.role.as_str().to_string(),
                n.replication_delay.map_or_else(String::new, |d| d.to_string()),
                n.replication_delay_seconds.map_or_else(String::new, |d| format!("{d:.3}")),
                n.replication_state.clone(),
                n.replication_sync_state.clone(),
                n.last_status_change.clone(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!(" {c:<w$} ")).collect();
        parts.join("|").trim_end().to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(&header.map(str::to_string)));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    let _ = writeln!(out, "{}", rule.join("+"));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    let _ = writeln!(out, "({} row{})", rows.len(), if rows.len() == 1 { "" } else { "s" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: usize, status: Status, role: Role) -> NodeRow {
        NodeRow {
            node_id: id,
            hostname: "127.0.0.1".into(),
            port: 5432 + u16::try_from(id).unwrap(),
            status,
            role,
            replication_delay: (role == Role::Standby).then_some(0),
            replication_delay_seconds: (role == Role::Standby).then_some(0.0),
            replication_state: if role == Role::Standby {
                "streaming".into()
            } else {
                String::new()
            },
            replication_sync_state: if role == Role::Standby {
                "async".into()
            } else {
                String::new()
            },
            last_status_change: format_time(1_796_000_000),
            last_error: None,
        }
    }

    #[test]
    fn the_table_reads_like_show_pool_nodes() {
        let s = Snapshot {
            nodes: vec![row(0, Status::Up, Role::Primary), row(1, Status::Down, Role::Standby)],
            ..Snapshot::default()
        };
        let text = render(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(" node_id | hostname  | port | status | role    |"), "{text}");
        assert!(lines[2].starts_with(" 0       | 127.0.0.1 | 5432 | up     | primary |"), "{text}");
        assert!(lines[3].contains("| down   | standby | 0"), "{text}");
        assert!(lines[3].ends_with(&format_time(1_796_000_000)), "{text}");
        assert_eq!(lines[4], "(2 rows)");
    }

    #[test]
    fn the_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let s = Snapshot {
            pid: 7,
            primary: Some(0),
            nodes: vec![row(0, Status::Up, Role::Primary)],
            ..Snapshot::default()
        };
        write(&path, &s).unwrap();
        assert_eq!(read(&path).unwrap(), s);
        assert!(read(&dir.path().join("none")).is_err());
    }
}
