//! `--dcs etcd://HOST:PORT,...`: several managers coordinate through etcd, as Patroni's do.
//! One holds the leader key (`<prefix>/leader`, attached to a lease of `--dcs-ttl`
//! seconds, renewed every third of it) and acts; the others check and watch. The leader
//! keeps the primary's id and each node's row under the prefix, so a manager that takes
//! over knows which node was the primary.
//!
//! Safety: a manager counts its lease from *before* each renewal request and gives the
//! leadership up one renewal step before the lease could have expired on the etcd side,
//! so its leadership always ends before another manager's can begin; a manager that
//! cannot reach etcd is never the leader.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn,
    TxnOp,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::status::Snapshot;

/// Where and how to coordinate.
#[derive(Debug, Clone)]
pub struct DcsConfig {
    /// `host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// The key prefix (`/walstream/failover/<scope>`).
    pub prefix: String,
    /// This manager's name (the leader key's value).
    pub name: String,
    /// The lease's time to live.
    pub ttl: Duration,
}

/// Parses `etcd://HOST:PORT,HOST:PORT` (also `etcd://HOST:PORT,etcd://HOST:PORT`).
///
/// # Errors
/// Another scheme, or an empty list.
pub fn parse_endpoints(url: &str) -> Result<Vec<String>> {
    let Some(rest) = url.strip_prefix("etcd://") else {
        bail!("invalid --dcs \"{url}\": only etcd://HOST:PORT[,HOST:PORT...] is supported");
    };
    let endpoints: Vec<String> = rest
        .split(',')
        .map(|e| e.trim().trim_start_matches("etcd://").trim_end_matches('/').to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() || endpoints.iter().any(|e| !e.contains(':')) {
        bail!("invalid --dcs \"{url}\": each member must be HOST:PORT");
    }
    Ok(endpoints)
}

/// This process's default name: `hostname:pid`.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// A lease's keep-alive stream.
type Keeper = (LeaseKeeper, LeaseKeepAliveStream);

/// The leadership as it stands.
enum Role {
    Follower,
    Leader { lease: i64, renewed: Instant, keeper: Option<Box<Keeper>> },
}

/// Runs the election until `cancel`: `leader` says whether this manager may act; `hint`
/// carries the primary's id as etcd keeps it; the leader writes each new `snapshot` there.
pub async fn run(
    config: DcsConfig,
    leader: watch::Sender<bool>,
    hint: watch::Sender<Option<usize>>,
    mut snapshots: watch::Receiver<Snapshot>,
    cancel: CancellationToken,
) {
    let step = config.ttl / 3;
    let mut client: Option<Client> = None;
    let mut role = Role::Follower;
    let mut written: Option<Snapshot> = None;
    loop {
        if client.is_none() {
            let options = ConnectOptions::new()
                .with_connect_timeout(step)
                .with_timeout(step)
                .with_keep_alive(step, step);
            match Client::connect(&config.endpoints, Some(options)).await {
                Ok(c) => client = Some(c),
                Err(e) => tracing::warn!("could not connect to etcd: {e}"),
            }
        }
        if let Some(c) = client.as_mut() {
            role = match step_once(c, &config, role, step).await {
                Ok(r) => r,
                Err((r, e)) => {
                    tracing::warn!("etcd: {e:#}");
                    r
                }
            };
        } else if let Role::Leader { renewed, .. } = role {
            if renewed.elapsed() + step >= config.ttl {
                role = Role::Follower;
            }
        }
        let leading = matches!(role, Role::Leader { .. });
        if *leader.borrow() != leading {
            if leading {
                tracing::info!("this manager ({}) holds the leader lease and acts", config.name);
            } else {
                tracing::warn!(
                    "this manager ({}) does not hold the leader lease; it does not act",
                    config.name
                );
                written = None;
            }
            leader.send_replace(leading);
        }
        if let Some(c) = client.as_mut() {
            if leading {
                let snapshot = snapshots.borrow_and_update().clone();
                if written.as_ref() != Some(&snapshot) {
                    match write_state(c, &config, &snapshot).await {
                        Ok(()) => written = Some(snapshot),
                        Err(e) => tracing::warn!("could not keep the state in etcd: {e:#}"),
                    }
                }
            } else if let Ok(Some(p)) = read_primary(c, &config).await {
                if *hint.borrow() != Some(p) {
                    hint.send_replace(Some(p));
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(step) => {}
            _ = snapshots.changed(), if leading => {}
        }
    }
    if let (Some(c), Role::Leader { lease, .. }) = (client.as_mut(), role) {
        // Hand over at once rather than after the lease's time to live.
        let _ = tokio::time::timeout(step, c.lease_revoke(lease)).await;
    }
    leader.send_replace(false);
}

fn key(config: &DcsConfig, name: &str) -> String {
    format!("{}/{name}", config.prefix)
}

/// One round: a follower campaigns, a leader renews and checks the key is still its own.
async fn step_once(
    c: &mut Client,
    config: &DcsConfig,
    role: Role,
    step: Duration,
) -> Result<Role, (Role, anyhow::Error)> {
    let leader_key = key(config, "leader");
    match role {
        Role::Follower => {
            let started = Instant::now();
            let ttl = i64::try_from(config.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
            let lease = match c.lease_grant(ttl, None).await {
                Ok(l) => l.id(),
                Err(e) => return Err((Role::Follower, anyhow!("could not get a lease: {e}"))),
            };
            let txn = Txn::new()
                .when([Compare::create_revision(leader_key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    leader_key,
                    config.name.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            match c.txn(txn).await {
                Ok(r) if r.succeeded() => {
                    Ok(Role::Leader { lease, renewed: started, keeper: None })
                }
                Ok(_) => {
                    let _ = c.lease_revoke(lease).await;
                    Ok(Role::Follower)
                }
                Err(e) => Err((Role::Follower, anyhow!("could not campaign: {e}"))),
            }
        }
        Role::Leader { lease, renewed, mut keeper } => {
            let started = Instant::now();
            let renewal = async {
                if keeper.is_none() {
                    let k = c.lease_keep_alive(lease).await.context("keep-alive")?;
                    keeper = Some(Box::new(k));
                }
                let (k, stream) = &mut **keeper.as_mut().ok_or_else(|| anyhow!("no keeper"))?;
                k.keep_alive().await.context("keep-alive")?;
                let ttl = stream.message().await.context("keep-alive")?.map_or(0, |r| r.ttl());
                if ttl <= 0 {
                    return Ok(Renewal::Lost("the lease has expired"));
                }
                let ours = Txn::new().when([Compare::value(
                    leader_key.clone(),
                    CompareOp::Equal,
                    config.name.clone(),
                )]);
                if !c.txn(ours).await.context("checking the leader key")?.succeeded() {
                    return Ok(Renewal::Lost("the leader key is not ours any more"));
                }
                Ok::<_, anyhow::Error>(Renewal::Renewed)
            };
            let failed = match tokio::time::timeout(step, renewal).await {
                Ok(Ok(Renewal::Renewed)) => {
                    return Ok(Role::Leader { lease, renewed: started, keeper })
                }
                Ok(Ok(Renewal::Lost(why))) => {
                    return Err((Role::Follower, anyhow!("leadership lost: {why}")))
                }
                Ok(Err(e)) => e,
                Err(_) => anyhow!("renewing the lease timed out"),
            };
            if renewed.elapsed() + step >= config.ttl {
                Err((Role::Follower, failed.context("leadership lost")))
            } else {
                Err((Role::Leader { lease, renewed, keeper: None }, failed))
            }
        }
    }
}

/// How a leader's renewal ended, when etcd answered.
enum Renewal {
    /// The lease runs on.
    Renewed,
    /// The lease or the key is gone: leadership ends at once.
    Lost(&'static str),
}

async fn write_state(c: &mut Client, config: &DcsConfig, s: &Snapshot) -> Result<()> {
    let primary = s.primary.map_or_else(String::new, |p| p.to_string());
    let mut ops = vec![TxnOp::put(key(config, "primary"), primary, None)];
    for n in &s.nodes {
        ops.push(TxnOp::put(
            key(config, &format!("nodes/{}", n.node_id)),
            serde_json::to_string(n)?,
            None,
        ));
    }
    // Only while this manager holds the leader key.
    let txn = Txn::new()
        .when([Compare::value(key(config, "leader"), CompareOp::Equal, config.name.clone())])
        .and_then(ops);
    if !c.txn(txn).await?.succeeded() {
        bail!("the leader key is not ours");
    }
    Ok(())
}

async fn read_primary(c: &mut Client, config: &DcsConfig) -> Result<Option<usize>> {
    let r = c.get(key(config, "primary"), None).await?;
    Ok(r.kvs().first().and_then(|kv| kv.value_str().ok()?.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoints("etcd://127.0.0.1:2379,127.0.0.1:2380").unwrap(),
            vec!["127.0.0.1:2379", "127.0.0.1:2380"]
        );
        assert_eq!(parse_endpoints("etcd://a:1,etcd://b:2/").unwrap(), vec!["a:1", "b:2"]);
        assert!(parse_endpoints("consul://a:1").is_err());
        assert!(parse_endpoints("etcd://").is_err());
        assert!(parse_endpoints("etcd://nohost").is_err());
    }
}
