//! The running node (`postmaster.c` and the auxiliary processes, as tasks): it checks and
//! locks the data directory, loads the settings, recovers the database, takes the
//! end-of-recovery checkpoint, then serves clients and walsenders through the sender's
//! postmaster while the checkpointer and WAL writer tasks run; at shutdown it takes the
//! shutdown checkpoint.

mod tasks;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use walstream_protocol::Lsn;
use walstream_sender::auth::Roles;
use walstream_sender::backend::serve_handler::ServeHandler;
use walstream_sender::backend::QueryHandler;
use walstream_sender::hba::HbaFile;
use walstream_sender::postmaster::{Postmaster, ServerParts, ShutdownMode};
use walstream_sender::registry::Registry;
use walstream_sender::slots::SlotStore;
use walstream_sender::walsource::{DirWalSource, DirWalSourceOptions, WalSource};

use crate::checkpointer::{CheckpointCause, CheckpointDone, Checkpointer, Schedule};
use crate::datadir::{DataDir, LockFile};
use crate::engine::Engine;
use crate::error::NodeError;
use crate::settings::NodeSettings;
use crate::startup::{open_database, RecoveryReport, StartOptions};
use crate::xlog::{DbState, WalWriter};

pub use tasks::CheckpointRequest;

/// PostgreSQL 15's `checkpoint_completion_target` default (the node has no spread
/// checkpoints, but the `max_wal_size` trigger is computed with it, as PostgreSQL does).
const CHECKPOINT_COMPLETION_TARGET: f64 = 0.9;

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The data directory (`-D`).
    pub dir: PathBuf,
    /// Where to listen; `None`: `listen_addresses` and `port` of the settings.
    pub listen: Option<SocketAddr>,
    /// `-c NAME=VALUE` overrides, after the configuration files.
    pub overrides: Vec<(String, String)>,
}

/// A running node.
pub struct Node {
    dir: DataDir,
    settings: NodeSettings,
    engine: Arc<Engine>,
    writer: Arc<WalWriter>,
    slots: Arc<SlotStore>,
    registry: Arc<Registry>,
    recovery: RecoveryReport,
    checkpoints: mpsc::Sender<CheckpointRequest>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<Option<ShutdownMode>>,
    postmaster: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    checkpointer: Arc<Checkpointer>,
    _lock: LockFile,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("dir", &self.dir.path())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// `listen_addresses` and `port` as one address: the first of the list, `localhost` and
/// `*` as loopback (walstream serves loopback only).
fn listen_from_settings(settings: &NodeSettings) -> Result<SocketAddr, NodeError> {
    let port = u16::try_from(settings.int("port")).unwrap_or(5432);
    let first = settings.string("listen_addresses").split(',').next().unwrap_or("").trim();
    let ip = match first {
        "" | "localhost" | "*" | "0.0.0.0" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "::" => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        other => other.parse().map_err(|_| {
            NodeError::Config(format!(
                "invalid value for parameter \"listen_addresses\": \"{other}\""
            ))
        })?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// The settings of the data directory's configuration files and the overrides, with the
/// postmaster's texts for what is wrong.
///
/// # Errors
/// A file that cannot be read or parsed; entries that cannot be applied.
pub fn load_settings(
    dir: &Path,
    overrides: &[(String, String)],
) -> Result<NodeSettings, NodeError> {
    let entries = crate::conf::read_data_dir(dir).map_err(|e| NodeError::Config(e.to_string()))?;
    NodeSettings::load(&entries, overrides).map_err(|errors| {
        let mut text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let file = errors
            .iter()
            .find(|e| e.line > 0)
            .map_or_else(|| "command line".to_string(), |e| e.file.clone());
        text.push(format!("configuration file \"{file}\" contains errors"));
        NodeError::Config(text.join("\n"))
    })
}

impl Node {
    /// Starts the node of `opts.dir`.
    ///
    /// # Errors
    /// The data directory's checks or lock, the settings, recovery, the listening socket.
    pub async fn start(opts: NodeOptions) -> Result<Node, NodeError> {
        let dir = DataDir::open(&opts.dir)?;
        let settings = load_settings(dir.path(), &opts.overrides)?;
        let listen = match opts.listen {
            Some(a) => a,
            None => listen_from_settings(&settings)?,
        };
        let now = SystemTime::now();
        let unix = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let lock = dir.lock(listen.port(), &listen.ip().to_string(), unix)?;

        let fsync = settings.bool("fsync");
        let path = dir.path().to_path_buf();
        let db =
            tokio::task::spawn_blocking(move || open_database(&path, StartOptions { fsync }, now))
                .await
                .map_err(|e| NodeError::State(format!("startup failed: {e}")))??;
        let was_clean = db.control.state == DbState::ShutDown && db.recovery.commits == 0;
        let checkpointer = Arc::new(Checkpointer::new(
            dir.path(),
            db.engine.clone(),
            db.writer.clone(),
            db.control,
        ));
        let slots = Arc::new(
            SlotStore::open(&dir.slot_dir(), settings.sender().max_replication_slots as usize)
                .map_err(|e| NodeError::State(format!("could not load replication slots: {e}")))?,
        );
        let retention = tasks::RetentionSource { settings: settings.clone(), slots: slots.clone() };
        if !was_clean {
            let done = checkpointer
                .checkpoint(
                    crate::checkpointer::CheckpointKind::EndOfRecovery,
                    SystemTime::now(),
                    retention.now(),
                )
                .await?;
            tracing::info!(redo = %done.redo, lsn = %done.lsn, "end-of-recovery checkpoint complete");
        } else {
            checkpointer.mark_in_production(SystemTime::now()).await?;
        }
        if !was_clean {
            tracing::info!(
                "redo done at {}: {} transactions committed, {} aborted",
                db.recovery.end.write_start().start,
                db.recovery.commits,
                db.recovery.aborted.len()
            );
        }

        let source = DirWalSource::open(&dir.wal_dir(), DirWalSourceOptions::default())
            .map_err(|e| NodeError::State(format!("could not open pg_wal for walsenders: {e}")))?;
        {
            let source = source.clone();
            db.writer.on_flush(Box::new(move |_, _| {
                if let Err(e) = source.refresh() {
                    tracing::warn!("walsenders could not see new WAL: {e}");
                }
            }));
        }

        let registry = Registry::new();
        let handler = query_handler(&settings, source.clone(), registry.clone());
        let hba = HbaFile::load(&dir.path().join("pg_hba.conf"))
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let roles = Roles::load(&dir.global_dir().join(crate::initdb::ROLES_FILE))
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let parts = ServerParts {
            settings: settings.sender().clone(),
            hba,
            roles,
            source: source.clone() as Arc<dyn WalSource>,
            slots: slots.clone(),
            handler,
            registry: registry.clone(),
        };
        let postmaster = Postmaster::bind(listen, parts).await.map_err(|source| NodeError::Io {
            op: "listen on",
            path: PathBuf::from(listen.to_string()),
            source,
        })?;
        let local_addr = postmaster.local_addr().map_err(|source| NodeError::Io {
            op: "read the address of",
            path: PathBuf::from(listen.to_string()),
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(None);
        let postmaster = tokio::spawn(postmaster.run(shutdown_rx));

        let schedule = Schedule {
            timeout: settings.sender().checkpoint_timeout,
            max_wal_size_mb: settings.sender().max_wal_size_mb.unwrap_or(1024),
            completion_target: CHECKPOINT_COMPLETION_TARGET,
            seg_size: db.control.seg_size,
        };
        let (checkpoints, requests) = mpsc::channel(16);
        let mut background = vec![tokio::spawn(tasks::checkpointer(
            checkpointer.clone(),
            db.writer.clone(),
            schedule,
            retention,
            requests,
        ))];
        background.push(tokio::spawn(tasks::wal_writer(
            db.writer.clone(),
            settings.duration("wal_writer_delay"),
        )));

        Ok(Node {
            dir,
            settings,
            engine: db.engine,
            writer: db.writer,
            slots,
            registry,
            recovery: db.recovery,
            checkpoints,
            local_addr,
            shutdown,
            postmaster,
            background,
            checkpointer,
            _lock: lock,
        })
    }

    /// Where the node listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The WAL writer.
    pub fn writer(&self) -> &Arc<WalWriter> {
        &self.writer
    }

    /// The settings the node started with.
    pub fn settings(&self) -> &NodeSettings {
        &self.settings
    }

    /// The replication slots.
    pub fn slots(&self) -> &Arc<SlotStore> {
        &self.slots
    }

    /// The backends.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// What crash recovery did at start.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// A handle that asks the checkpointer for checkpoints (`CHECKPOINT`).
    pub fn checkpoint_requests(&self) -> mpsc::Sender<CheckpointRequest> {
        self.checkpoints.clone()
    }

    /// Takes a checkpoint now and waits for it (`CHECKPOINT`).
    ///
    /// # Errors
    /// The checkpoint failed or the checkpointer is gone.
    pub async fn checkpoint(&self) -> Result<CheckpointDone, NodeError> {
        tasks::request_checkpoint(&self.checkpoints, CheckpointCause::Requested).await
    }

    /// The current WAL insert position.
    pub fn insert_lsn(&self) -> Lsn {
        self.writer.insert_position()
    }

    /// Stops the node: `Smart` waits for clients, `Fast` ends them, both end with the
    /// shutdown checkpoint; `Immediate` stops at once and the next start recovers.
    ///
    /// # Errors
    /// The shutdown checkpoint or the WAL writer failed.
    pub async fn stop(self, mode: ShutdownMode) -> Result<(), NodeError> {
        self.shutdown.send_replace(Some(mode));
        let _ = self.postmaster.await;
        for task in &self.background {
            task.abort();
        }
        for task in self.background {
            let _ = task.await;
        }
        if mode != ShutdownMode::Immediate {
            tracing::info!("shutting down");
            let retention = tasks::RetentionSource {
                settings: self.settings.clone(),
                slots: self.slots.clone(),
            };
            if let Err(e) = self.slots.flush_dirty() {
                tracing::warn!("could not save replication slots: {e}");
            }
            self.checkpointer
                .checkpoint(
                    crate::checkpointer::CheckpointKind::Shutdown,
                    SystemTime::now(),
                    retention.now(),
                )
                .await?;
            tracing::info!("database system is shut down");
        }
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || writer.shutdown())
            .await
            .map_err(|e| NodeError::State(format!("WAL writer shutdown failed: {e}")))??;
        Ok(())
    }
}

/// The handler that answers SQL on ordinary connections.
fn query_handler(
    settings: &NodeSettings,
    source: Arc<DirWalSource>,
    registry: Arc<Registry>,
) -> Arc<dyn QueryHandler> {
    let settings = settings.clone();
    Arc::new(ServeHandler::new(
        Arc::new(move |name: &str| match name.to_ascii_lowercase().as_str() {
            "wal_segment_size" => Some(source.seg_size().show()),
            other => settings.show(other),
        }),
        registry,
    ))
}

#[cfg(test)]
mod tests;
