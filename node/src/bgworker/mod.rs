//! Background workers and the node's own tasks under one supervisor (`bgworker.c`,
//! `postmaster.c`).
//!
//! A [`BgWorker`] is registered with a name, a type (its `pg_stat_activity.backend_type`),
//! when it starts ([`BgWorkerStart`]) and a restart interval ([`Restart`]). Its main
//! function gets a SQL session and a shutdown token. When it returns:
//! - `Ok(())` (exit code 0): it is unregistered and never restarted;
//! - `Err` (exit code 1): it is restarted after its interval, or never (`Restart::Never`);
//! - a panic (a crashed process): the whole server goes through the crash-restart cycle.
//!
//! The node's critical tasks (the WAL writer, the checkpointer, a standby's startup /
//! walreceiver) run through [`Supervisor::critical`]: any end of theirs but a shutdown is
//! a crash. A crash is published on [`Supervisor::crashed`]; whoever runs the node stops it
//! (every backend gets FATAL 57P02) and starts it again, which runs crash recovery.

pub mod sampler;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use walstream_sender::backend::query::{QueryHandler, QuerySession, SessionInfo};
use walstream_sender::registry::{BackendType, Registry};

/// When a worker starts (`bgw_start_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgWorkerStart {
    /// `BgWorkerStart_PostmasterStart`: as soon as the server runs.
    PostmasterStart,
    /// `BgWorkerStart_ConsistentState`: once a standby is consistent (a node standby is
    /// consistent when it starts accepting connections).
    ConsistentState,
    /// `BgWorkerStart_RecoveryFinished`: on a primary, or once a standby is promoted.
    RecoveryFinished,
}

/// When a failed worker starts again (`bgw_restart_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// After this long.
    After(Duration),
    /// `BGW_NEVER_RESTART`.
    Never,
}

/// What a worker's main function returns.
pub type WorkerFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A worker's main function.
pub type WorkerMain = Arc<dyn Fn(WorkerContext) -> WorkerFuture + Send + Sync>;

/// A background worker registration (`BackgroundWorker`).
#[derive(Clone)]
pub struct BgWorker {
    /// `bgw_name`, in the log.
    pub name: String,
    /// `bgw_type`: `pg_stat_activity.backend_type`.
    pub bgw_type: &'static str,
    /// When it starts.
    pub start: BgWorkerStart,
    /// When it starts again after failing.
    pub restart: Restart,
    /// Its main function.
    pub main: WorkerMain,
}

impl std::fmt::Debug for BgWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BgWorker")
            .field("name", &self.name)
            .field("bgw_type", &self.bgw_type)
            .field("start", &self.start)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

/// What a worker runs with.
pub struct WorkerContext {
    /// Its pid in `pg_stat_activity`.
    pub pid: i32,
    /// A SQL session as the bootstrap superuser on database `postgres`.
    pub sql: Box<dyn QuerySession>,
    /// Fires when the server stops: return then.
    pub shutdown: CancellationToken,
    /// Test builds: set when a test asked this worker to fail.
    pub failpoints: Failpoints,
    /// The worker's name.
    pub name: String,
}

/// How a worker's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// Returned `Ok` (exit code 0).
    Done,
    /// Returned `Err` (exit code 1).
    Failed(String),
    /// Panicked (a crashed process).
    Crashed(String),
}

/// What the supervisor does next about a worker whose run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Forget it.
    Unregister,
    /// Start it again after this long.
    RestartAfter(Duration),
    /// Crash-restart the server.
    CrashRestart,
}

/// `postmaster.c: CleanupBackgroundWorker`'s rules.
pub fn next_after(exit: &WorkerExit, restart: Restart) -> Next {
    match (exit, restart) {
        (WorkerExit::Done, _) | (WorkerExit::Failed(_), Restart::Never) => Next::Unregister,
        (WorkerExit::Failed(_), Restart::After(d)) => Next::RestartAfter(d),
        (WorkerExit::Crashed(_), _) => Next::CrashRestart,
    }
}

/// Test-only failures: names of tasks asked to fail at their next check
/// (`walstream_fail_task(name)`, a SQL function of debug builds).
#[derive(Debug, Clone, Default)]
pub struct Failpoints(Arc<(std::sync::atomic::AtomicBool, Mutex<HashSet<String>>)>);

impl Failpoints {
    /// Asks task or worker `name` to fail.
    pub fn arm(&self, name: &str) {
        self.0 .1.lock().insert(name.to_string());
        self.0 .0.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether `name` was asked to fail (once). Nearly free while none is armed: it is
    /// checked on hot paths (every replayed record).
    pub fn take(&self, name: &str) -> bool {
        if !self.0 .0.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        self.0 .1.lock().remove(name)
    }
}

/// Runs the workers and watches the critical tasks of one node instance.
pub struct Supervisor {
    registry: Arc<Registry>,
    /// Where workers' SQL sessions come from (set once the node's handler exists).
    handler: std::sync::OnceLock<(Arc<dyn QueryHandler>, String)>,
    stop: CancellationToken,
    crashed: watch::Sender<Option<String>>,
    /// Whether recovery has finished (a primary, or a promoted standby).
    production: watch::Receiver<bool>,
    failpoints: Failpoints,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor of one node instance; `production` says whether recovery has
    /// finished.
    pub fn new(
        registry: Arc<Registry>,
        production: watch::Receiver<bool>,
        failpoints: Failpoints,
    ) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            registry,
            handler: std::sync::OnceLock::new(),
            stop: CancellationToken::new(),
            crashed: watch::Sender::new(None),
            production,
            failpoints,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Workers' SQL sessions come from `handler`, as role `superuser`.
    pub fn set_sessions(&self, handler: Arc<dyn QueryHandler>, superuser: String) {
        let _ = self.handler.set((handler, superuser));
    }

    /// Set, with the reason, when a critical task or a worker crashed.
    pub fn crashed(&self) -> watch::Receiver<Option<String>> {
        self.crashed.subscribe()
    }

    /// The test-only failures.
    pub fn failpoints(&self) -> &Failpoints {
        &self.failpoints
    }

    fn crash(&self, why: String) {
        if self.stop.is_cancelled() {
            return;
        }
        tracing::info!("{why}");
        tracing::info!("terminating any other active server processes");
        self.crashed.send_if_modified(|c| {
            let first = c.is_none();
            if first {
                *c = Some(why);
            }
            first
        });
    }

    /// Runs critical task `name` (a `pg_stat_activity` process `pid`): its end, unless
    /// the server is stopping, is a crash (`postmaster.c: HandleChildCrash`).
    pub fn critical<F>(self: &Arc<Self>, name: &'static str, pid: i32, task: F)
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let this = self.clone();
        let handle = tokio::spawn(async move {
            let inner = tokio::spawn(task);
            let abort = inner.abort_handle();
            let ended = tokio::select! {
                r = inner => r,
                () = this.stop.cancelled() => {
                    abort.abort();
                    return;
                }
            };
            let why = match ended {
                Ok(Ok(())) => format!("{name} process (PID {pid}) exited with exit code 0"),
                Ok(Err(e)) => {
                    format!("{name} process (PID {pid}) exited with exit code 1: {e}")
                }
                Err(e) if e.is_cancelled() => return,
                Err(e) => format!("{name} process (PID {pid}) was terminated: {e}"),
            };
            this.crash(why);
        });
        self.tasks.lock().push(handle);
    }

    /// Registers `worker`: it starts when its start time comes and is restarted by its
    /// rules until the server stops.
    pub fn register(self: &Arc<Self>, worker: BgWorker) {
        let this = self.clone();
        let handle = tokio::spawn(async move { this.supervise(worker).await });
        self.tasks.lock().push(handle);
    }

    async fn supervise(self: Arc<Self>, w: BgWorker) {
        if w.start == BgWorkerStart::RecoveryFinished {
            let mut production = self.production.clone();
            tokio::select! {
                () = self.stop.cancelled() => return,
                r = production.wait_for(|p| *p) => if r.is_err() { return },
            }
        }
        let Some((handler, superuser)) = self.handler.get().cloned() else {
            tracing::error!("background worker \"{}\" registered before the server runs", w.name);
            return;
        };
        loop {
            let handle =
                self.registry.register_auxiliary(BackendType::BackgroundWorker(w.bgw_type));
            let pid = handle.entry().pid;
            let info = SessionInfo {
                pid,
                user: superuser.clone(),
                database: "postgres".into(),
                application_name: String::new(),
                settings: Vec::new(),
            };
            let ctx = WorkerContext {
                pid,
                sql: handler.session(&info),
                shutdown: self.stop.child_token(),
                failpoints: self.failpoints.clone(),
                name: w.name.clone(),
            };
            let run = tokio::spawn((w.main)(ctx));
            let abort = run.abort_handle();
            let ended = tokio::select! {
                r = run => r,
                () = self.stop.cancelled() => {
                    // The worker was told through its shutdown token; give it a moment.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    abort.abort();
                    return;
                }
            };
            drop(handle);
            let exit = match ended {
                Ok(Ok(())) => WorkerExit::Done,
                Ok(Err(e)) => WorkerExit::Failed(e),
                Err(e) => WorkerExit::Crashed(e.to_string()),
            };
            let what = format!("background worker \"{}\" (PID {pid})", w.name);
            match next_after(&exit, w.restart) {
                Next::Unregister => {
                    let code = i32::from(exit != WorkerExit::Done);
                    tracing::info!("{what} exited with exit code {code}");
                    return;
                }
                Next::RestartAfter(d) => {
                    if let WorkerExit::Failed(e) = &exit {
                        tracing::info!("{what} exited with exit code 1: {e}");
                    }
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(d) => {}
                    }
                }
                Next::CrashRestart => {
                    let WorkerExit::Crashed(e) = exit else { return };
                    self.crash(format!("{what} was terminated: {e}"));
                    return;
                }
            }
        }
    }

    /// Stops every worker and task (a shutdown: nothing of it is a crash); each ends
    /// its own run on the shutdown token.
    pub async fn stop(&self) {
        self.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock());
        for mut t in tasks {
            if tokio::time::timeout(Duration::from_secs(2), &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_0_unregisters_1_restarts_by_the_interval_and_a_crash_restarts_the_server() {
        let every = Restart::After(Duration::from_secs(5));
        assert_eq!(next_after(&WorkerExit::Done, every), Next::Unregister);
        assert_eq!(
            next_after(&WorkerExit::Failed("x".into()), every),
            Next::RestartAfter(Duration::from_secs(5))
        );
        assert_eq!(next_after(&WorkerExit::Failed("x".into()), Restart::Never), Next::Unregister);
        assert_eq!(
            next_after(&WorkerExit::Crashed("x".into()), Restart::Never),
            Next::CrashRestart
        );
    }

    #[test]
    fn a_failpoint_fires_once() {
        let f = Failpoints::default();
        f.arm("walwriter");
        assert!(!f.take("checkpointer"));
        assert!(f.take("walwriter"));
        assert!(!f.take("walwriter"));
    }
}
