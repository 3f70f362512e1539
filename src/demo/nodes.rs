//! The demo's two nodes in a temporary directory: a primary made by initdb, a standby made
//! from it through BASE_BACKUP (`-X stream -R`), their positions, and their shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use walstream_node::initdb::{initdb, InitdbOptions};
use walstream_node::server::{Node, NodeOptions, NodeRole};
use walstream_protocol::Lsn;
use walstream_receiver::basebackup::{take_base_backup, BaseBackupOptions, WalMethod};
use walstream_receiver::conninfo::ConnInfo;
use walstream_sender::postmaster::ShutdownMode;

/// The standby's `application_name`, as `pg_stat_replication` shows it.
const STANDBY_NAME: &str = "demo_standby";

/// Where the standby is at one moment, with the primary's flushed WAL end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    /// The primary's flushed WAL end.
    pub primary_flush: Lsn,
    /// What the primary's walsender sent (the standby's written position before the
    /// walsender reports).
    pub sent: Lsn,
    /// What the standby flushed.
    pub standby_flush: Lsn,
    /// What the standby replayed.
    pub replayed: Lsn,
}

/// The primary and the standby, and the directory that holds both.
pub struct Pair {
    /// The primary.
    pub primary: Node,
    /// The standby.
    pub standby: Node,
    dir: TempDir,
}

fn node_options(dir: &Path) -> NodeOptions {
    NodeOptions {
        dir: dir.to_path_buf(),
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        overrides: vec![("wal_retrieve_retry_interval".into(), "100ms".into())],
    }
}

/// A libpq connection string for `addr` as `postgres`.
pub fn conninfo(addr: SocketAddr) -> String {
    format!("host={} port={} user=postgres", addr.ip(), addr.port())
}

/// Makes and starts the primary in `dir/primary`, then calls `setup` on it (to create the
/// tables), takes a base backup of it into `dir/standby` and starts the standby there.
/// `say` reports each step.
///
/// # Errors
/// Any step failed; what was started is stopped again.
pub async fn start_pair<F, Fut>(say: impl Fn(&str), setup: F) -> Result<Pair>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let dir = tempfile::Builder::new()
        .prefix("walstream-demo.")
        .tempdir()
        .context("could not create a temporary directory")?;
    let pdir = dir.path().join("primary");
    let init =
        InitdbOptions { dir: pdir.clone(), wal_segsize_mb: 16, superuser: "postgres".into() };
    initdb(&init, SystemTime::now()).context("initdb of the primary failed")?;
    let primary = Node::start(node_options(&pdir)).await.context("the primary did not start")?;
    say(&format!("primary: {} listening on {}", pdir.display(), primary.local_addr()));
    match backup_and_start_standby(&primary, dir.path(), setup, &say).await {
        Ok(standby) => Ok(Pair { primary, standby, dir }),
        Err(e) => {
            let _ = primary.stop(ShutdownMode::Immediate).await;
            Err(e)
        }
    }
}

async fn backup_and_start_standby<F, Fut>(
    primary: &Node,
    dir: &Path,
    setup: F,
    say: &impl Fn(&str),
) -> Result<Node>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    setup(primary.local_addr()).await?;
    let env = |_: &str| None;
    let info = ConnInfo::parse_with_env(&conninfo(primary.local_addr()), &env)?;
    let mut recovery = info.clone();
    recovery.application_name = Some(STANDBY_NAME.into());
    let opts = BaseBackupOptions {
        label: "walstream demo".into(),
        fast_checkpoint: true,
        wal: WalMethod::Stream,
        write_recovery_conf: Some(recovery),
        ..BaseBackupOptions::default()
    };
    let sdir = dir.join("standby");
    let done = take_base_backup(&info, &opts, &sdir, None)
        .await
        .context("the base backup of the primary failed")?;
    say(&format!(
        "standby: base backup through BASE_BACKUP into {} ({} bytes, WAL {} to {})",
        sdir.display(),
        done.bytes,
        done.start,
        done.end
    ));
    let standby = Node::start(node_options(&sdir)).await.context("the standby did not start")?;
    if standby.role() != NodeRole::Standby {
        let _ = standby.stop(ShutdownMode::Immediate).await;
        bail!("the base backup did not start as a standby (no standby.signal)");
    }
    say(&format!("standby: listening on {}, streaming from the primary", standby.local_addr()));
    Ok(standby)
}

impl Pair {
    /// The directory holding both data directories.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The primary's flushed WAL end.
    pub fn primary_flush(&self) -> Lsn {
        self.primary.writer().map_or(Lsn::INVALID, |w| w.flush_position())
    }

    /// The primary's flushed WAL end as it changes.
    pub fn flushed(&self) -> Option<tokio::sync::watch::Receiver<Lsn>> {
        self.primary.writer().map(|w| w.flushed())
    }

    /// The positions now.
    pub fn positions(&self) -> Positions {
        let (standby_flush, written, replayed) = match self.standby.walreceiver() {
            Some(r) => {
                let p = *r.positions.borrow();
                let replayed = r.replay.borrow().replayed;
                // What was replayed is on the standby's disk (from the backup at first).
                (p.flush.max(replayed), p.write, replayed)
            }
            None => (Lsn::INVALID, Lsn::INVALID, Lsn::INVALID),
        };
        let sent = self
            .primary
            .registry()
            .list()
            .iter()
            .filter_map(|e| e.status().walsender.as_ref().map(|w| w.sent))
            .max()
            .unwrap_or(written);
        Positions { primary_flush: self.primary_flush(), sent, standby_flush, replayed }
    }

    /// Waits until the standby replayed up to `target`, at most `limit`.
    ///
    /// # Errors
    /// The time ran out or `cancel` was cancelled.
    pub async fn wait_replayed(
        &self,
        target: Lsn,
        limit: Duration,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let Some(receiver) = self.standby.walreceiver() else {
            bail!("the standby has no walreceiver");
        };
        let mut replay = receiver.replay.clone();
        let wait = async {
            while replay.borrow_and_update().replayed < target {
                if replay.changed().await.is_err() {
                    bail!("the standby's replay ended");
                }
            }
            Ok(())
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => bail!("interrupted"),
            r = tokio::time::timeout(limit, wait) => match r {
                Ok(r) => r,
                Err(_) => bail!(
                    "the standby did not replay up to {target} within {} s (replayed up to {})",
                    limit.as_secs(),
                    replay_position(&self.standby)
                ),
            },
        }
    }

    /// Stops both nodes (fast shutdown) and removes the directory.
    ///
    /// # Errors
    /// A node's shutdown or the removal failed.
    pub async fn stop(self) -> Result<()> {
        let standby = self.standby.stop(ShutdownMode::Fast).await;
        let primary = self.primary.stop(ShutdownMode::Fast).await;
        let removed = self.dir.close();
        standby.context("the standby's shutdown failed")?;
        primary.context("the primary's shutdown failed")?;
        removed.context("could not remove the demo's directory")?;
        Ok(())
    }
}

fn replay_position(standby: &Node) -> Lsn {
    standby.walreceiver().map_or(Lsn::INVALID, |r| r.replay.borrow().replayed)
}
