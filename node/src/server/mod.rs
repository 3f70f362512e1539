//! The running node (`postmaster.c` and the auxiliary processes, as tasks): it checks and
//! locks the data directory, loads the settings, recovers the database, takes the
//! end-of-recovery checkpoint, then serves clients and walsenders through the sender's
//! postmaster while the checkpointer and WAL writer tasks run; at shutdown it takes the
//! shutdown checkpoint.

mod backup;
mod context;
mod promote;
mod reload;
mod source;
mod tasks;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::wire::ErrorFields;
use walstream_protocol::{Lsn, TimeLineId};
use walstream_receiver::stream::WalObserver;
use walstream_sender::auth::Roles;
use walstream_sender::backend::QueryHandler;
use walstream_sender::hba::HbaFile;
use walstream_sender::postmaster::{Postmaster, ServerParts, ShutdownMode};
use walstream_sender::registry::{BackendHandle, BackendType, Registry};
use walstream_sender::slots::SlotStore;
use walstream_sender::syncrep::SyncRepConfig;
use walstream_sender::walsource::{
    DirWalSource, DirWalSourceOptions, MemWalSource, WalEnd, WalSource,
};

use crate::bgworker::{BgWorker, Failpoints, Supervisor};
use crate::checkpointer::{
    CheckpointCause, CheckpointDone, CheckpointKind, Checkpointer, Schedule,
};
use crate::datadir::{DataDir, LockFile, SignalMode};
use crate::engine::Engine;
use crate::error::NodeError;
use crate::settings::NodeSettings;
use crate::sql::SqlHandler;
use crate::standby::{
    start_walreceiver, StandbyApplier, StreamStart, WalReceiverHandle, WalReceiverOptions,
};
use crate::startup::{open_database, recover, Follow, RecoveryReport, StartOptions};
use crate::txnlog::WalTxnLog;
use crate::xlog::{ControlFile, DbState, WalWriter};
use context::{Current, NodeContext, Side};
use source::SwitchSource;

pub use tasks::CheckpointRequest;

/// PostgreSQL 15's `checkpoint_completion_target` default (the node has no spread
/// checkpoints, but the `max_wal_size` trigger is computed with it, as PostgreSQL does).
const CHECKPOINT_COMPLETION_TARGET: f64 = 0.9;

/// Recent WAL a primary keeps in memory for its walsenders.
const WAL_CACHE_BYTES: usize = 64 << 20;

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
    slots: Arc<SlotStore>,
    registry: Arc<Registry>,
    recovery: RecoveryReport,
    local_addr: SocketAddr,
    shutdown: watch::Sender<Option<ShutdownMode>>,
    postmaster: JoinHandle<()>,
    /// The role's parts; promotion replaces a standby's with a primary's.
    roles: Arc<RoleState>,
    /// A standby's promoter, waiting for a promotion request.
    promoter: Option<JoinHandle<()>>,
    /// Reloads the configuration files when asked (`SIGHUP`, `pg_reload_conf()`).
    reloader: JoinHandle<()>,
    reload_requests: Arc<tokio::sync::Notify>,
    _lock: LockFile,
}

/// What runs besides the postmaster, by role.
enum Role {
    /// A primary: the WAL writer, the checkpointer, their tasks.
    Primary(PrimaryParts),
    /// A hot standby: the walreceiver and replay.
    Standby(StandbyParts),
    /// Neither: promotion is under way, or failed.
    Gone,
}

/// A primary's WAL writer and checkpointer (their tasks run under the supervisor).
struct PrimaryParts {
    writer: Arc<WalWriter>,
    checkpointer: Arc<Checkpointer>,
    checkpoints: mpsc::Sender<CheckpointRequest>,
    /// The auxiliary processes in `pg_stat_activity`.
    _aux: Vec<BackendHandle>,
}

/// A standby's walreceiver, replay and what promotion needs of them.
struct StandbyParts {
    receiver: Arc<WalReceiverHandle>,
    /// Returns the applier when streaming stops.
    task: JoinHandle<StandbyApplier>,
    cancel: CancellationToken,
    /// The engine's log, which gets a WAL writer at promotion.
    log: Arc<WalTxnLog>,
    /// The history of the timeline replay follows.
    history: TimelineHistory,
    /// The auxiliary processes in `pg_stat_activity`.
    _aux: Vec<BackendHandle>,
}

/// The role's parts and what sessions see of them, shared by the node, its promoter and
/// its sessions.
struct RoleState {
    role: tokio::sync::Mutex<Role>,
    current: Arc<parking_lot::RwLock<Current>>,
    /// A standby's walsenders' source: switched to the WAL writer's at promotion.
    source: Option<Arc<SwitchSource>>,
    /// Set by `pg_promote()` and [`Node::request_promotion`].
    promote_requests: Arc<tokio::sync::Notify>,
    /// Why the node must stop (a promotion that failed halfway), for its owner.
    fatal: watch::Sender<Option<String>>,
    /// Runs the critical tasks and the background workers.
    supervisor: Arc<Supervisor>,
    /// Whether recovery has finished (a primary, or a promoted standby).
    production: watch::Sender<bool>,
}

/// Whether a node runs as a primary or a standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Writes its own WAL.
    Primary,
    /// Replays a primary's WAL (`standby.signal`).
    Standby,
}

/// Tells the walsenders of a standby (cascading) about WAL as its walreceiver flushes it.
/// The walreceiver only wakes a task that looks at `pg_wal` (walreceiver.c wakes them with
/// `WalSndWakeup`, a latch): looking there (a directory listing and reading the new bytes)
/// inline held up each flush report to the primary, which a synchronous commit waits for.
/// With no walsender connected nobody is woken (the look, on the other core, still
/// delayed the primary's wake-up for the flush report by ~0.3 ms at one client); a
/// walsender that connects looks for itself before it answers with a position
/// ([`WalSource::refresh`]).
struct CascadeObserver {
    wake: Arc<tokio::sync::Notify>,
    registry: Arc<Registry>,
}

impl CascadeObserver {
    /// Starts the task that refreshes `source` when woken (several flushes while it works
    /// make one refresh), until `cancel`.
    fn start(
        source: Arc<DirWalSource>,
        registry: Arc<Registry>,
        cancel: CancellationToken,
    ) -> Self {
        let wake = Arc::new(tokio::sync::Notify::new());
        let woken = wake.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = woken.notified() => {}
                }
                if let Err(e) = source.refresh() {
                    tracing::warn!("cascading walsenders could not see new WAL: {e}");
                }
            }
        });
        CascadeObserver { wake, registry }
    }
}

impl WalObserver for CascadeObserver {
    fn flushed(&self, _tli: TimeLineId, _flushed: Lsn) {
        if self.registry.count(BackendType::WalSender) > 0 {
            self.wake.notify_one();
        }
    }
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
    settings_of(&entries, overrides)
}

/// The settings of configuration file `entries` and the overrides, as [`load_settings`].
///
/// # Errors
/// Entries that cannot be applied.
pub(crate) fn settings_of(
    entries: &[crate::conf::ConfEntry],
    overrides: &[(String, String)],
) -> Result<NodeSettings, NodeError> {
    NodeSettings::load(entries, overrides).map_err(|errors| {
        let mut text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let file = errors
            .iter()
            .find(|e| e.line > 0)
            .map_or_else(|| "command line".to_string(), |e| e.file.clone());
        text.push(format!("configuration file \"{file}\" contains errors"));
        NodeError::Config(text.join("\n"))
    })
}

/// What a primary's role is started from: at start after crash recovery, or at promotion.
struct PrimaryStart<'a> {
    dir: &'a Path,
    settings: &'a NodeSettings,
    engine: Arc<Engine>,
    writer: Arc<WalWriter>,
    control: ControlFile,
    retention: &'a tasks::RetentionSource,
    begin: Begin<'a>,
}

/// How a primary's role begins.
enum Begin<'a> {
    /// After a clean shutdown: the control file is only marked in production.
    Clean,
    /// After crash recovery: the end-of-recovery checkpoint.
    Crash(&'a RecoveryReport),
    /// At promotion, after the end-of-recovery record (the promoter takes the
    /// end-of-recovery checkpoint).
    Promotion,
}

/// Starts a primary's checkpointer and WAL writer tasks and its walsenders' source: the
/// end-of-recovery checkpoint first when recovery ran.
///
/// # Errors
/// The end-of-recovery checkpoint or the control file failed.
async fn start_primary(
    p: PrimaryStart<'_>,
    registry: &Arc<Registry>,
    supervisor: &Arc<Supervisor>,
) -> Result<(PrimaryParts, Arc<MemWalSource>), NodeError> {
    let checkpointer =
        Arc::new(Checkpointer::new(p.dir, p.engine.clone(), p.writer.clone(), p.control));
    let end_of_recovery = || {
        checkpointer.checkpoint(CheckpointKind::EndOfRecovery, SystemTime::now(), p.retention.now())
    };
    match p.begin {
        Begin::Crash(recovery) => {
            let done = end_of_recovery().await?;
            tracing::info!(
                "redo done at {}: {} transactions committed, {} aborted; end-of-recovery \
                 checkpoint at {}",
                recovery.end.write_start().start,
                recovery.commits,
                recovery.aborted.len(),
                done.lsn
            );
        }
        // Taken by the promoter once sessions see the new role (pg_ctl waits for the
        // control file to say "in production").
        Begin::Promotion => {}
        Begin::Clean => checkpointer.mark_in_production(SystemTime::now()).await?,
    }
    // Walsenders read what was just flushed from memory, older WAL from pg_wal, and are
    // woken at every flush.
    let mem = Arc::new(MemWalSource::new(
        p.dir.join("pg_wal"),
        p.control.system_identifier,
        p.control.seg_size,
        WalEnd { tli: p.writer.timeline(), flushed: p.writer.flush_position() },
        WAL_CACHE_BYTES,
    ));
    {
        let mem = mem.clone();
        p.writer.on_flush(Box::new(move |start, bytes| {
            let end = Lsn(start.0 + bytes.len() as u64);
            mem.append(start, bytes);
            mem.set_flushed(end);
        }));
    }
    let schedule = Schedule {
        timeout: p.settings.sender().checkpoint_timeout,
        max_wal_size_mb: p.settings.sender().max_wal_size_mb.unwrap_or(1024),
        completion_target: CHECKPOINT_COMPLETION_TARGET,
        seg_size: p.control.seg_size,
    };
    let (checkpoints, requests) = mpsc::channel(16);
    // syncrep.c: only a primary's walsenders are synchronous.
    let names = p.settings.string("synchronous_standby_names");
    registry.sync_rep().set_config(SyncRepConfig::parse(names).ok().flatten());
    let aux: Vec<BackendHandle> = [BackendType::Checkpointer, BackendType::WalWriter]
        .iter()
        .map(|t| registry.register_auxiliary(*t))
        .collect();
    let failpoints = supervisor.failpoints().clone();
    supervisor.critical(
        "checkpointer",
        aux[0].entry().pid,
        tasks::checkpointer(
            checkpointer.clone(),
            p.writer.clone(),
            schedule,
            p.retention.clone(),
            requests,
            mem.clone(),
            failpoints.clone(),
        ),
    );
    supervisor.critical(
        "WAL writer",
        aux[1].entry().pid,
        tasks::wal_writer(p.writer.clone(), p.settings.duration("wal_writer_delay"), failpoints),
    );
    let parts = PrimaryParts { writer: p.writer, checkpointer, checkpoints, _aux: aux };
    Ok((parts, mem))
}

/// `max_standby_streaming_delay` as replay's conflict rule (`-1`: wait forever).
pub(crate) fn standby_delay(settings: &NodeSettings) -> crate::engine::StandbyDelay {
    match settings.int("max_standby_streaming_delay") {
        ms if ms < 0 => crate::engine::StandbyDelay::Forever,
        ms => crate::engine::StandbyDelay::After(std::time::Duration::from_millis(ms as u64)),
    }
}

impl Node {
    /// Starts the node of `opts.dir`.
    ///
    /// # Errors
    /// The data directory's checks or lock, the settings, recovery, the listening socket.
    pub async fn start(opts: NodeOptions) -> Result<Node, NodeError> {
        Node::start_with_workers(opts, Vec::new()).await
    }

    /// Starts the node of `opts.dir` with background `workers` registered
    /// (`RegisterBackgroundWorker` from a preloaded library); each starts at its start time.
    ///
    /// # Errors
    /// As [`Node::start`].
    pub async fn start_with_workers(
        opts: NodeOptions,
        workers: Vec<BgWorker>,
    ) -> Result<Node, NodeError> {
        let dir = DataDir::open(&opts.dir)?;
        // `SHOW port` tells the port really listened on, as PostgreSQL's does: a
        // `--listen` port counts as `-c port=N` (and so survives reloads).
        let mut overrides = opts.overrides.clone();
        if let Some(a) = opts.listen.filter(|a| a.port() != 0) {
            overrides.push(("port".to_string(), a.port().to_string()));
        }
        let settings = load_settings(dir.path(), &overrides)?;
        let listen = match opts.listen {
            Some(a) => a,
            None => listen_from_settings(&settings)?,
        };
        let now = SystemTime::now();
        let unix = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let lock = dir.lock(listen.port(), &listen.ip().to_string(), unix)?;
        // postmaster.c: a promote request left over from before the start is void.
        dir.take_promote_signal();

        let fsync = settings.bool("fsync");
        let standby = dir.signal_mode() == SignalMode::Standby;
        if standby {
            crate::standby::adopt_partial_segments(&dir.wal_dir())?;
        }
        let slots = Arc::new(
            SlotStore::open(&dir.slot_dir(), settings.sender().max_replication_slots as usize)
                .map_err(|e| NodeError::State(format!("could not load replication slots: {e}")))?,
        );
        let retention = tasks::RetentionSource { settings: settings.clone(), slots: slots.clone() };
        let registry = Registry::new();
        let fatal = watch::Sender::new(None);
        let failpoints = Failpoints::default();
        let production = watch::Sender::new(!standby);
        let supervisor =
            Supervisor::new(registry.clone(), production.subscribe(), failpoints.clone());
        let path = dir.path().to_path_buf();
        let fatal_start = |e: NodeError| {
            if let NodeError::Fatal { message, detail } = &e {
                tracing::error!("FATAL:  {message}");
                if let Some(d) = detail {
                    tracing::error!("DETAIL:  {d}");
                }
            }
            e
        };
        // The control file as startup read it: its segment size stays put.
        let (engine, recovery, source, role, control, timeline, switch) = if standby {
            let rec = tokio::task::spawn_blocking(move || {
                let mut rec = recover(&path, Follow::Latest)?;
                // xlog.c: StartupXLOG marks the control file "in archive recovery" (a
                // base backup's says "in production"), so that pg_ctl promote waits for
                // the promotion itself.
                if rec.control.state != DbState::InArchiveRecovery {
                    rec.control.state = DbState::InArchiveRecovery;
                    rec.control.write(&path)?;
                }
                Ok::<_, NodeError>(rec)
            })
            .await
            .map_err(|e| NodeError::State(format!("startup failed: {e}")))?
            .map_err(fatal_start)?;
            let end = rec.end.write_start().start;
            tracing::info!(
                "entering standby mode; redo starts at {}, consistent at {end}",
                rec.redo
            );
            rec.engine.set_read_only(true);
            rec.engine.set_standby_delay(standby_delay(&settings));
            let dir_source = DirWalSource::open(&dir.wal_dir(), DirWalSourceOptions::default())
                .map_err(|e| {
                    NodeError::State(format!("could not open pg_wal for walsenders: {e}"))
                })?;
            let opts = WalReceiverOptions::from_settings(&settings)?;
            let tli = rec.history.tli_of_point(end);
            let at = StreamStart {
                wal_dir: dir.wal_dir(),
                seg_size: rec.control.seg_size,
                system_id: rec.control.system_identifier,
                tli,
                start: end,
            };
            let report = RecoveryReport {
                redo: rec.redo,
                end: rec.end.clone(),
                commits: rec.replay.commits(),
                aborted: Vec::new(),
            };
            let engine = rec.engine.clone();
            let control = rec.control;
            let applier = StandbyApplier::new(
                rec.replay,
                dir.path().to_path_buf(),
                rec.control,
                (end, rec.end.last_record),
                crate::standby::restartpoint_policy(&settings, retention.now()),
                crate::standby::wall_clock,
            )
            .with_failpoints(failpoints.clone());
            let cancel = CancellationToken::new();
            let observer = Arc::new(CascadeObserver::start(
                dir_source.clone(),
                registry.clone(),
                cancel.clone(),
            ));
            let (receiver, task) =
                start_walreceiver(opts, at, applier, observer, cancel.clone(), fatal.clone())?;
            let switch = SwitchSource::new(dir_source as Arc<dyn WalSource>);
            let aux = [BackendType::Startup, BackendType::Checkpointer, BackendType::WalReceiver]
                .iter()
                .map(|t| registry.register_auxiliary(*t))
                .collect();
            let role = Role::Standby(StandbyParts {
                receiver: Arc::new(receiver),
                task,
                cancel,
                log: rec.log,
                history: rec.history,
                _aux: aux,
            });
            let source = switch.clone() as Arc<dyn WalSource>;
            (engine, report, source, role, control, tli, Some(switch))
        } else {
            let db = tokio::task::spawn_blocking(move || {
                open_database(&path, StartOptions { fsync }, now)
            })
            .await
            .map_err(|e| NodeError::State(format!("startup failed: {e}")))?
            .map_err(fatal_start)?;
            let was_clean = db.control.state == DbState::ShutDown && db.recovery.commits == 0;
            let timeline = db.writer.timeline();
            let (parts, mem) = start_primary(
                PrimaryStart {
                    dir: dir.path(),
                    settings: &settings,
                    engine: db.engine.clone(),
                    writer: db.writer,
                    control: db.control,
                    retention: &retention,
                    begin: if was_clean { Begin::Clean } else { Begin::Crash(&db.recovery) },
                },
                &registry,
                &supervisor,
            )
            .await?;
            let source = mem as Arc<dyn WalSource>;
            (db.engine, db.recovery, source, Role::Primary(parts), db.control, timeline, None)
        };

        let side = match &role {
            Role::Primary(p) => {
                Side::Primary { writer: p.writer.clone(), checkpoints: p.checkpoints.clone() }
            }
            Role::Standby(s) => Side::Standby { receiver: s.receiver.clone() },
            Role::Gone => unreachable!("a node starts as a primary or a standby"),
        };
        let current = Arc::new(parking_lot::RwLock::new(Current { side, timeline }));
        let promote_requests = Arc::new(tokio::sync::Notify::new());
        let roles = Arc::new(RoleState {
            role: tokio::sync::Mutex::new(role),
            current: current.clone(),
            source: switch,
            promote_requests: promote_requests.clone(),
            fatal,
            supervisor: supervisor.clone(),
            production,
        });
        let mut session_settings = settings.clone();
        session_settings.set_wal_segment_size(control.seg_size);
        let session_settings = Arc::new(parking_lot::RwLock::new(session_settings));
        let reload_requests = Arc::new(tokio::sync::Notify::new());
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reloader = tokio::spawn(
            reload::Reloader {
                dir: dir.path().to_path_buf(),
                overrides,
                settings: session_settings.clone(),
                registry: registry.clone(),
                current: current.clone(),
                engine: engine.clone(),
                requests: reload_requests.clone(),
                generation: generation.clone(),
            }
            .run(),
        );
        let promoter = standby.then(|| {
            tokio::spawn(
                promote::Promoter {
                    dir: dir.path().to_path_buf(),
                    settings: session_settings.clone(),
                    engine: engine.clone(),
                    registry: registry.clone(),
                    roles: roles.clone(),
                    retention: retention.clone(),
                }
                .run(),
            )
        });
        let roles_file = Roles::load(&dir.global_dir().join(crate::initdb::ROLES_FILE))
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let context = NodeContext {
            roles: Arc::new(roles_file.clone()),
            settings: session_settings,
            dir: dir.path().to_path_buf(),
            reload_requests: reload_requests.clone(),
            generation,
            registry: registry.clone(),
            slots: slots.clone(),
            seg_size: control.seg_size,
            current: current.clone(),
            promote_requests,
            failpoints,
            notices: Default::default(),
        };
        let handler: Arc<dyn QueryHandler> = SqlHandler::new(engine.clone(), Arc::new(context));
        let superuser = roles_file
            .iter()
            .into_iter()
            .flatten()
            .find(|r| r.superuser)
            .map_or_else(|| "postgres".to_string(), |r| r.name.clone());
        supervisor.set_sessions(handler.clone(), superuser);
        for w in workers {
            supervisor.register(w);
        }
        let hba = HbaFile::load(&dir.path().join("pg_hba.conf"))
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let backup = Arc::new(backup::NodeBackup { dir: dir.path().to_path_buf(), current })
            as Arc<dyn walstream_sender::basebackup::BackupSource>;
        let tls = walstream_sender::tls::ServerTls::load(&settings.sender().ssl, dir.path())
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let parts = ServerParts {
            tls,
            backup: Some(backup),
            settings: settings.sender().clone(),
            hba,
            roles: roles_file,
            source,
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
        let postmaster = tokio::spawn(postmaster.owner_logs_shut_down().run(shutdown_rx));

        Ok(Node {
            dir,
            settings,
            engine,
            slots,
            registry,
            recovery,
            local_addr,
            shutdown,
            postmaster,
            roles,
            promoter,
            reloader,
            reload_requests,
            _lock: lock,
        })
    }

    /// A standby's records replayed per resource manager; `None` on a primary.
    pub fn replay_rmgr_counts(&self) -> Option<Arc<walstream_receiver::apply::RmgrCounts>> {
        self.walreceiver().map(|r| r.rmgrs.clone())
    }

    /// Reloads the configuration files (what `SIGHUP` does), in the background.
    pub fn reload(&self) {
        self.reload_requests.notify_one();
    }

    /// Asks a standby to promote if its data directory has a `promote` file (what
    /// `SIGUSR1` from `pg_ctl promote` / `walstream promote` does); nothing on a primary.
    pub fn request_promotion(&self) {
        self.roles.promote_requests.notify_one();
    }

    /// Set, with the reason, when a critical task or a background worker crashed: the
    /// node must go through the crash-restart cycle ([`Node::crash_stop`], then start
    /// again, which runs crash recovery).
    pub fn crashed(&self) -> watch::Receiver<Option<String>> {
        self.roles.supervisor.crashed()
    }

    /// The stop of the crash-restart cycle (`postmaster.c: HandleChildCrash`): every
    /// backend ends with FATAL 57P02, then everything stops as in an immediate shutdown,
    /// writing nothing; the next start recovers from the WAL.
    ///
    /// # Errors
    /// As [`Node::stop`].
    pub async fn crash_stop(self) -> Result<(), NodeError> {
        for e in self.registry.list() {
            if e.backend_type.is_auxiliary() {
                continue;
            }
            let mut fatal = ErrorFields::fatal(
                walstream_protocol::wire::sqlstate::CRASH_SHUTDOWN,
                "terminating connection because of crash of another server process",
            );
            fatal.detail = Some(
                "The postmaster has commanded this server process to roll back the current \
                 transaction and exit, because another server process exited abnormally and \
                 possibly corrupted shared memory."
                    .into(),
            );
            fatal.hint = Some(
                "In a moment you should be able to reconnect to the database and repeat your \
                 command."
                    .into(),
            );
            e.terminate_with(fatal);
        }
        let gone = async {
            self.registry.wait_until_none(BackendType::ClientBackend).await;
            self.registry.wait_until_none(BackendType::WalSender).await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), gone).await;
        self.stop_quietly(ShutdownMode::Immediate).await?;
        tracing::info!("all server processes terminated; reinitializing");
        Ok(())
    }

    /// Set when the node must stop (a promotion that failed halfway): the reason.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.roles.fatal.subscribe()
    }

    /// Where the node listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The WAL writer (a primary's, or a promoted standby's).
    pub fn writer(&self) -> Option<Arc<WalWriter>> {
        match &self.roles.current.read().side {
            Side::Primary { writer, .. } => Some(writer.clone()),
            Side::Standby { .. } => None,
        }
    }

    /// Whether the node is a primary or a standby now.
    pub fn role(&self) -> NodeRole {
        match self.roles.current.read().side {
            Side::Primary { .. } => NodeRole::Primary,
            Side::Standby { .. } => NodeRole::Standby,
        }
    }

    /// The timeline the node writes or replays now.
    pub fn timeline(&self) -> TimeLineId {
        self.roles.current.read().timeline
    }

    /// A standby's walreceiver: its positions, replay status and state.
    pub fn walreceiver(&self) -> Option<Arc<WalReceiverHandle>> {
        match &self.roles.current.read().side {
            Side::Standby { receiver } => Some(receiver.clone()),
            Side::Primary { .. } => None,
        }
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

    /// A handle that asks a primary's checkpointer for checkpoints (`CHECKPOINT`).
    pub fn checkpoint_requests(&self) -> Option<mpsc::Sender<CheckpointRequest>> {
        match &self.roles.current.read().side {
            Side::Primary { checkpoints, .. } => Some(checkpoints.clone()),
            Side::Standby { .. } => None,
        }
    }

    /// Takes a checkpoint now and waits for it (`CHECKPOINT` on a primary).
    ///
    /// # Errors
    /// The checkpoint failed or the checkpointer is gone; a standby.
    pub async fn checkpoint(&self) -> Result<CheckpointDone, NodeError> {
        match self.checkpoint_requests() {
            Some(checkpoints) => {
                tasks::request_checkpoint(&checkpoints, CheckpointCause::Requested).await
            }
            None => Err(NodeError::State(
                "a standby makes restartpoints at replayed checkpoints".into(),
            )),
        }
    }

    /// The current WAL insert position (a primary's; a standby's replay position).
    pub fn insert_lsn(&self) -> Lsn {
        match &self.roles.current.read().side {
            Side::Primary { writer, .. } => writer.insert_position(),
            Side::Standby { receiver } => receiver.replay.borrow().replayed,
        }
    }

    /// Stops the node: `Smart` waits for clients, `Fast` ends them, both end with the
    /// shutdown checkpoint; `Immediate` stops at once and the next start recovers.
    ///
    /// # Errors
    /// The shutdown checkpoint or the WAL writer failed.
    pub async fn stop(self, mode: ShutdownMode) -> Result<(), NodeError> {
        self.stop_quietly(mode).await?;
        tracing::info!("database system is shut down");
        Ok(())
    }

    /// [`Node::stop`] without its last log line (the crash-restart cycle goes on).
    async fn stop_quietly(self, mode: ShutdownMode) -> Result<(), NodeError> {
        self.shutdown.send_replace(Some(mode));
        self.reloader.abort();
        if let Some(p) = &self.promoter {
            p.abort();
        }
        let _ = self.postmaster.await;
        if let Some(p) = self.promoter {
            let _ = p.await;
        }
        self.roles.supervisor.stop().await;
        if let Err(e) = self.slots.flush_dirty() {
            tracing::warn!("could not save replication slots: {e}");
        }
        let role = std::mem::replace(&mut *self.roles.role.lock().await, Role::Gone);
        match role {
            Role::Gone => Ok(()),
            Role::Standby(s) => {
                s.cancel.cancel();
                if mode == ShutdownMode::Immediate {
                    s.task.abort();
                    let _ = s.task.await;
                    return Ok(());
                }
                // The last restartpoint, at the replay position.
                if let Ok(mut applier) = s.task.await {
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = applier.restartpoint_now() {
                            tracing::warn!("restartpoint at shutdown failed: {e}");
                        }
                    })
                    .await
                    .map_err(|e| NodeError::State(format!("restartpoint failed: {e}")))?;
                }
                Ok(())
            }
            Role::Primary(p) => {
                if mode != ShutdownMode::Immediate {
                    tracing::info!("shutting down");
                    let retention = tasks::RetentionSource {
                        settings: self.settings.clone(),
                        slots: self.slots.clone(),
                    };
                    p.checkpointer
                        .checkpoint(CheckpointKind::Shutdown, SystemTime::now(), retention.now())
                        .await?;
                }
                let writer = p.writer;
                tokio::task::spawn_blocking(move || writer.shutdown())
                    .await
                    .map_err(|e| NodeError::State(format!("WAL writer shutdown failed: {e}")))??;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
