//! The manager's queries to a node, over tokio-postgres: the health check (connect, a
//! trivial query), the replication check, promotion and the native follow.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use walstream_protocol::Lsn;

use super::config::Backend;
use super::state::Probe;

/// The application name the manager's sessions show in `pg_stat_activity`.
const APPLICATION_NAME: &str = "walstream failover";

/// Who to connect as.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// Role.
    pub user: &'a str,
    /// Password (empty: none).
    pub password: &'a str,
    /// Database.
    pub database: &'a str,
}

/// Connects to `backend` within its `connect_timeout`.
///
/// # Errors
/// The connection or the login failed, or took too long.
pub async fn connect(backend: &Backend, login: Login<'_>) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&backend.host)
        .port(backend.port)
        .dbname(login.database)
        .application_name(APPLICATION_NAME);
    if !login.user.is_empty() {
        config.user(login.user);
    }
    if !login.password.is_empty() {
        config.password(login.password);
    }
    let timeout = backend.health.connect_timeout;
    if !timeout.is_zero() {
        config.connect_timeout(timeout);
    }
    let connecting = config.connect(NoTls);
    let (client, connection) = if timeout.is_zero() {
        connecting.await
    } else {
        tokio::time::timeout(timeout, connecting).await.map_err(|_| anyhow!("timeout expired"))?
    }
    .map_err(|e| anyhow!(pg_error_text(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A tokio-postgres error as libpq would print it: the server's message, or the
/// connection's cause.
pub fn pg_error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// The health check: connect as `health_check_user` and run `SELECT 1`, all within
/// `health_check_timeout` (0: no limit).
///
/// # Errors
/// Why the node did not answer.
pub async fn health_check(backend: &Backend) -> Result<()> {
    let h = &backend.health;
    let login = Login { user: &h.user, password: &h.password, database: &h.database };
    let check = async {
        let client = connect(backend, login).await?;
        client.simple_query("SELECT 1").await.map_err(|e| anyhow!(pg_error_text(&e)))?;
        Ok(())
    };
    if h.timeout.is_zero() {
        check.await
    } else {
        tokio::time::timeout(h.timeout, check)
            .await
            .map_err(|_| anyhow!("health check timed out after {} s", h.timeout.as_secs()))?
    }
}

/// The first row of `sql`'s answer, as text (NULL: `None`).
///
/// # Errors
/// The query failed or returned no row.
pub async fn row(client: &Client, sql: &str) -> Result<Vec<Option<String>>> {
    let messages = client.simple_query(sql).await.map_err(|e| anyhow!(pg_error_text(&e)))?;
    for m in messages {
        if let SimpleQueryMessage::Row(r) = m {
            return Ok((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    bail!("no row returned by {sql}")
}

/// Every row of `sql`'s answer, as text.
///
/// # Errors
/// The query failed.
pub async fn rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let messages = client.simple_query(sql).await.map_err(|e| anyhow!(pg_error_text(&e)))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

fn lsn(text: Option<&String>) -> Result<Option<Lsn>> {
    text.map(|t| t.parse::<Lsn>().map_err(|_| anyhow!("invalid pg_lsn \"{t}\""))).transpose()
}

/// The replication check of one node: whether it is in recovery, its positions, and the
/// upstream its WAL receiver streams from.
///
/// # Errors
/// A query failed.
pub async fn replication(client: &Client) -> Result<Probe> {
    let r = row(client, "SELECT pg_is_in_recovery()").await?;
    let in_recovery = r.first().and_then(|v| v.as_deref()) == Some("t");
    if !in_recovery {
        let r = row(client, "SELECT pg_current_wal_lsn()").await?;
        return Ok(Probe {
            in_recovery,
            current_lsn: lsn(r.first().and_then(Option::as_ref))?,
            ..Probe::default()
        });
    }
    let r = row(client, "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()").await?;
    let receive_lsn = lsn(r.first().and_then(Option::as_ref))?;
    let replay_lsn = lsn(r.get(1).and_then(Option::as_ref))?;
    let upstream = rows(client, "SELECT sender_host, sender_port FROM pg_stat_wal_receiver")
        .await?
        .into_iter()
        .find_map(|r| {
            let host = r.first()?.clone()?;
            let port = r.get(1)?.as_deref()?.parse().ok()?;
            Some((host, port))
        });
    Ok(Probe { in_recovery, upstream, receive_lsn, replay_lsn, current_lsn: None })
}

/// One walsender as the primary's `pg_stat_replication` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Walsender {
    /// `application_name`.
    pub application_name: String,
    /// `state`.
    pub state: String,
    /// `sync_state`.
    pub sync_state: String,
    /// `replay_lag`, in seconds (0 when NULL).
    pub replay_lag: f64,
}

/// The primary's walsenders.
///
/// # Errors
/// The query failed.
pub async fn walsenders(client: &Client) -> Result<Vec<Walsender>> {
    let sql = "SELECT application_name, state, sync_state, replay_lag FROM pg_stat_replication";
    Ok(rows(client, sql)
        .await?
        .into_iter()
        .map(|r| {
            let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            Walsender {
                application_name: text(0),
                state: text(1),
                sync_state: text(2),
                replay_lag: interval_seconds(&text(3)).unwrap_or(0.0),
            }
        })
        .collect())
}

/// An interval as PostgreSQL writes a short one (`00:00:01.5`, `1 day 02:00:00`), in
/// seconds.
pub fn interval_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut parts = text.split_whitespace().peekable();
    while let Some(part) = parts.next() {
        if part.contains(':') {
            let (sign, clock) = match part.strip_prefix('-') {
                Some(rest) => (-1.0, rest),
                None => (1.0, part),
            };
            let mut fields = clock.split(':');
            let h: f64 = fields.next()?.parse().ok()?;
            let m: f64 = fields.next()?.parse().ok()?;
            let s: f64 = fields.next().unwrap_or("0").parse().ok()?;
            total += sign * (h * 3600.0 + m * 60.0 + s);
        } else {
            let n: f64 = part.parse().ok()?;
            let unit = parts.next()?;
            total += n * match unit.trim_end_matches('s') {
                "day" => 86400.0,
                "mon" => 30.0 * 86400.0,
                "year" => 365.25 * 86400.0,
                _ => return None,
            };
        }
    }
    Some(total)
}

/// Promotes a standby with `pg_promote(true, wait)` and checks that it left recovery.
///
/// # Errors
/// The call failed, returned false, or the node is still in recovery.
pub async fn promote(client: &Client, wait: Duration) -> Result<()> {
    let secs = wait.as_secs().clamp(1, i32::MAX as u64);
    let r = row(client, &format!("SELECT pg_promote(true, {secs})")).await?;
    if r.first().and_then(|v| v.as_deref()) != Some("t") {
        bail!("pg_promote() returned false: the server did not promote within {secs} seconds");
    }
    let r = row(client, "SELECT pg_is_in_recovery()").await?;
    if r.first().and_then(|v| v.as_deref()) != Some("f") {
        bail!("the server is still in recovery after pg_promote()");
    }
    Ok(())
}

/// Points a standby at `host`:`port` natively: its `primary_conninfo` with the server
/// changed (user, password file and application name kept), written by `ALTER SYSTEM`
/// and applied by `pg_reload_conf()` — PostgreSQL 15 restarts its WAL receiver without a
/// server restart, and follows the new timeline (`recovery_target_timeline = 'latest'`).
///
/// # Errors
/// A query failed, or the standby's `primary_conninfo` does not parse.
pub async fn follow(client: &Client, host: &str, port: u16) -> Result<String> {
    let r = row(client, "SHOW primary_conninfo").await?;
    let current = r.first().cloned().flatten().unwrap_or_default();
    let conninfo = walstream_receiver::conninfo::retarget(&current, host, port)
        .with_context(|| format!("primary_conninfo \"{current}\""))?;
    let quoted = conninfo.replace('\'', "''");
    client
        .simple_query(&format!("ALTER SYSTEM SET primary_conninfo = '{quoted}'"))
        .await
        .map_err(|e| anyhow!(pg_error_text(&e)))?;
    row(client, "SELECT pg_reload_conf()").await?;
    Ok(conninfo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_seconds() {
        assert_eq!(interval_seconds("00:00:01.5"), Some(1.5));
        assert_eq!(interval_seconds("01:02:03"), Some(3723.0));
        assert_eq!(interval_seconds("1 day 00:00:01"), Some(86401.0));
        assert_eq!(interval_seconds("2 days"), Some(172_800.0));
        assert_eq!(interval_seconds(""), None);
        assert_eq!(interval_seconds("soon"), None);
    }
}
