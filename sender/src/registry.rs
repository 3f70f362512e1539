//! The backend table: one entry per connection, as `PGPROC` and `PgBackendStatus` are.
//!
//! Every connection registers itself with a pid (unique among live backends) and a
//! cancel key. The entry holds what `pg_stat_activity` and `pg_stat_replication` show and
//! the two signals other sessions send: terminate (`pg_terminate_backend`, fast
//! shutdown) and cancel (CancelRequest, `pg_cancel_backend`). The entry is removed when
//! the [`BackendHandle`] that registered it is dropped, however the connection ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use walstream_protocol::wire::ErrorFields;
use walstream_protocol::Lsn;

use crate::syncrep::SyncRepState;

/// `backend_type` in `pg_stat_activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendType {
    /// An ordinary connection.
    ClientBackend,
    /// A replication connection.
    WalSender,
    /// The node's startup process (recovery, a standby's replay).
    Startup,
    /// The node's checkpointer.
    Checkpointer,
    /// The node's WAL writer.
    WalWriter,
    /// A standby's walreceiver.
    WalReceiver,
    /// A background worker; `pg_stat_activity.backend_type` shows its `bgw_type`.
    BackgroundWorker(&'static str),
}

impl BackendType {
    /// The name `pg_stat_activity.backend_type` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::ClientBackend => "client backend",
            BackendType::WalSender => "walsender",
            BackendType::Startup => "startup",
            BackendType::Checkpointer => "checkpointer",
            BackendType::WalWriter => "walwriter",
            BackendType::WalReceiver => "walreceiver",
            BackendType::BackgroundWorker(bgw_type) => bgw_type,
        }
    }

    /// Whether it is a server task rather than a client's connection (no user, client
    /// address or query in `pg_stat_activity`).
    pub fn is_auxiliary(self) -> bool {
        !matches!(self, BackendType::ClientBackend | BackendType::WalSender)
    }

    /// `wait_event_type` and `wait_event` of a task waiting in its main loop.
    pub fn idle_wait_event(self) -> Option<(&'static str, &'static str)> {
        match self {
            BackendType::ClientBackend => None,
            BackendType::WalSender => Some(("Activity", "WalSenderMain")),
            BackendType::Startup => Some(("Activity", "RecoveryWalStream")),
            BackendType::Checkpointer => Some(("Activity", "CheckpointerMain")),
            BackendType::WalWriter => Some(("Activity", "WalWriterMain")),
            BackendType::WalReceiver => Some(("Activity", "WalReceiverMain")),
            BackendType::BackgroundWorker(_) => None,
        }
    }
}

/// `pg_stat_activity.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityState {
    /// Authenticating; not yet in the command loop.
    Starting,
    /// Waiting for a command.
    Idle,
    /// Running a command (or streaming).
    Active,
    /// Waiting for a command inside a transaction block.
    IdleInTransaction,
    /// Waiting for a command in a failed transaction block, or skipping messages after
    /// an error in the extended protocol until Sync.
    IdleInTransactionAborted,
}

impl ActivityState {
    /// The name `pg_stat_activity.state` shows (NULL while starting).
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            ActivityState::Starting => None,
            ActivityState::Idle => Some("idle"),
            ActivityState::Active => Some("active"),
            ActivityState::IdleInTransaction => Some("idle in transaction"),
            ActivityState::IdleInTransactionAborted => Some("idle in transaction (aborted)"),
        }
    }
}

/// `pg_stat_replication.state` (`WalSndState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalSndState {
    /// Connected, not streaming yet.
    Startup,
    /// Streaming WAL the standby is behind on.
    Catchup,
    /// Streaming, caught up.
    Streaming,
    /// Shutting down: sending what is left before closing.
    Stopping,
    /// Sending a base backup.
    Backup,
}

impl WalSndState {
    /// The name `pg_stat_replication.state` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            WalSndState::Startup => "startup",
            WalSndState::Catchup => "catchup",
            WalSndState::Streaming => "streaming",
            WalSndState::Stopping => "stopping",
            WalSndState::Backup => "backup",
        }
    }
}

/// What a walsender knows of its standby (`WalSnd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSenderStatus {
    /// Streaming state.
    pub state: WalSndState,
    /// WAL sent up to here.
    pub sent: Lsn,
    /// The standby's last reported write position.
    pub write: Lsn,
    /// The standby's last reported flush position.
    pub flush: Lsn,
    /// The standby's last reported replay position.
    pub apply: Lsn,
    /// When the standby's last reply arrived.
    pub reply_time: Option<SystemTime>,
    /// `write_lag` as the walsender's [`crate::lag::LagTracker`] measures it.
    pub write_lag: Option<std::time::Duration>,
    /// `flush_lag`.
    pub flush_lag: Option<std::time::Duration>,
    /// `replay_lag`.
    pub replay_lag: Option<std::time::Duration>,
    /// The replication slot in use.
    pub slot: Option<String>,
    /// The standby's xmin from hot standby feedback (`backend_xmin`); none when it sent
    /// none or an invalid one.
    pub xmin: Option<u32>,
}

impl Default for WalSenderStatus {
    fn default() -> Self {
        WalSenderStatus {
            state: WalSndState::Startup,
            sent: Lsn::INVALID,
            write: Lsn::INVALID,
            flush: Lsn::INVALID,
            apply: Lsn::INVALID,
            reply_time: None,
            write_lag: None,
            flush_lag: None,
            replay_lag: None,
            slot: None,
            xmin: None,
        }
    }
}

/// The changing part of an entry.
#[derive(Debug, Clone, Default)]
pub struct BackendStatus {
    /// The authenticated user.
    pub user: String,
    /// The database (for walsenders, what the startup packet named).
    pub database: String,
    /// `application_name`.
    pub application_name: String,
    /// The state.
    pub state: Option<ActivityState>,
    /// The current or last command.
    pub query: String,
    /// When the current command started.
    pub query_start: Option<SystemTime>,
    /// When `state` last changed.
    pub state_change: Option<SystemTime>,
    /// Walsender positions (walsenders only).
    pub walsender: Option<WalSenderStatus>,
    /// What the backend waits for now (`wait_event_type`, `wait_event`), when it waits
    /// in the middle of a command (`SyncRep` under `IPC`, say).
    pub wait_event: Option<(&'static str, &'static str)>,
    /// What the connection's TLS negotiated; `None` for a plain connection.
    pub ssl: Option<crate::tls_info::SslStatus>,
}

/// Interrupts that arrived while a backend held them off (`HOLD_INTERRUPTS` around the
/// wait for synchronous replication).
#[derive(Debug, Default)]
struct Holdoff {
    held: bool,
    cancels: u64,
    terminate: bool,
}

/// What interrupted a backend that held its interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// `pg_cancel_backend` or a CancelRequest.
    Cancel,
    /// `pg_terminate_backend` or a shutdown.
    Terminate,
}

/// Interrupts held off for as long as this lives: cancel and terminate requests are
/// delivered to [`HeldInterrupts::next`] instead of the backend's command loop. When it
/// is dropped, a terminate request that came meanwhile goes on to the loop, so the
/// backend still ends (`ProcDiePending` stays set in PostgreSQL).
#[derive(Debug)]
pub struct HeldInterrupts {
    entry: Arc<BackendEntry>,
}

impl HeldInterrupts {
    /// The next interrupt (terminate first); pending ones are consumed.
    pub async fn next(&self) -> Interrupt {
        loop {
            let notified = self.entry.interrupted.notified();
            {
                let mut h = self.entry.holdoff();
                if h.terminate {
                    return Interrupt::Terminate;
                }
                if h.cancels > 0 {
                    h.cancels = 0;
                    return Interrupt::Cancel;
                }
            }
            notified.await;
        }
    }
}

impl Drop for HeldInterrupts {
    fn drop(&mut self) {
        let mut h = self.entry.holdoff();
        h.held = false;
        h.cancels = 0;
        if std::mem::take(&mut h.terminate) {
            self.entry.terminate.cancel();
        }
    }
}

/// One live backend.
#[derive(Debug)]
pub struct BackendEntry {
    /// The process id clients see (BackendKeyData, `pg_stat_activity.pid`).
    pub pid: i32,
    /// The cancel key of BackendKeyData.
    pub cancel_key: u32,
    /// The kind of backend.
    pub backend_type: BackendType,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// When the connection was accepted.
    pub backend_start: SystemTime,
    status: Mutex<BackendStatus>,
    /// Where a walsender's name, state and positions go for synchronous replication.
    sync_rep: Option<Arc<SyncRepState>>,
    holdoff: Mutex<Holdoff>,
    interrupted: tokio::sync::Notify,
    terminate: CancellationToken,
    cancel: watch::Sender<u64>,
    /// The error a cancel or terminate request ends with, when it is not the user's
    /// request (a recovery conflict).
    reason: Mutex<Option<ErrorFields>>,
}

impl BackendEntry {
    /// Locks the changing part of the entry. Never held across an await.
    pub fn status(&self) -> MutexGuard<'_, BackendStatus> {
        self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets `state` (and `state_change`).
    pub fn set_state(&self, state: ActivityState, query: Option<&str>) {
        let now = SystemTime::now();
        let mut st = self.status();
        if st.state != Some(state) {
            st.state = Some(state);
            st.state_change = Some(now);
        }
        if let Some(q) = query {
            st.query = q.to_string();
            st.query_start = Some(now);
        }
    }

    /// Updates the walsender part of the entry.
    pub fn update_walsender(&self, f: impl FnOnce(&mut WalSenderStatus)) {
        let mut st = self.status();
        let ws = st.walsender.get_or_insert_with(WalSenderStatus::default);
        // syncrep.c counts walsenders streaming or stopping.
        let sync_view = |ws: &WalSenderStatus| {
            (
                matches!(ws.state, WalSndState::Streaming | WalSndState::Stopping),
                [ws.write, ws.flush, ws.apply],
            )
        };
        let before = sync_view(ws);
        f(ws);
        let after = sync_view(ws);
        // Only what synchronous replication looks at: not every message's sent position.
        if let (Some(sync), true) = (&self.sync_rep, after != before) {
            sync.update(self.pid, &st.application_name, after.0, after.1);
        }
    }

    /// Resolves when the backend is told to terminate.
    pub fn terminated(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.terminate.cancelled()
    }

    /// Whether the backend has been told to terminate.
    pub fn is_terminated(&self) -> bool {
        self.terminate.is_cancelled()
    }

    /// A receiver that changes each time the backend is asked to cancel what it is doing.
    pub fn cancel_requests(&self) -> watch::Receiver<u64> {
        self.cancel.subscribe()
    }

    /// Asks the backend to terminate (`SIGTERM` to a backend).
    pub fn terminate(&self) {
        let mut h = self.holdoff();
        if h.held {
            h.terminate = true;
            self.interrupted.notify_waiters();
        } else {
            self.terminate.cancel();
        }
    }

    /// Asks the backend to cancel its current command with `error` instead of "canceling
    /// statement due to user request" (`PROCSIG_RECOVERY_CONFLICT_*`).
    pub fn cancel_with(&self, error: ErrorFields) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.cancel_keeping_reason();
    }

    /// Asks the backend to end with the FATAL `error` instead of "terminating connection
    /// due to administrator command".
    pub fn terminate_with(&self, error: ErrorFields) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.terminate();
    }

    /// The error the last [`BackendEntry::cancel_with`] or
    /// [`BackendEntry::terminate_with`] asked for, taken.
    pub fn take_interrupt_reason(&self) -> Option<ErrorFields> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Asks the backend to cancel its current command (`SIGINT` to a backend). An idle
    /// backend ignores it, as PostgreSQL does.
    pub fn cancel(&self) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.cancel_keeping_reason();
    }

    fn cancel_keeping_reason(&self) {
        let mut h = self.holdoff();
        if h.held {
            h.cancels += 1;
            self.interrupted.notify_waiters();
        } else {
            self.cancel.send_modify(|n| *n += 1);
        }
    }

    /// Holds cancel and terminate requests off the command loop until the guard drops.
    pub fn hold_interrupts(self: &Arc<Self>) -> HeldInterrupts {
        self.holdoff().held = true;
        HeldInterrupts { entry: self.clone() }
    }

    fn holdoff(&self) -> MutexGuard<'_, Holdoff> {
        self.holdoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets or clears what the backend waits for (`pg_stat_activity.wait_event`).
    pub fn set_wait_event(&self, event: Option<(&'static str, &'static str)>) {
        self.status().wait_event = event;
    }
}

/// Why a connection failed authentication (counted for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthFailure {
    /// No pg_hba.conf rule matched.
    NoHbaEntry,
    /// A `reject` rule matched.
    Rejected,
    /// The password (or SCRAM proof) was wrong, or the role has none usable.
    Password,
    /// The client sent something other than the expected password message.
    Protocol,
    /// Authenticated, but the role may not log in or replicate.
    NotPermitted,
}

impl AuthFailure {
    /// Every reason, in order.
    pub const ALL: [AuthFailure; 5] = [
        AuthFailure::NoHbaEntry,
        AuthFailure::Rejected,
        AuthFailure::Password,
        AuthFailure::Protocol,
        AuthFailure::NotPermitted,
    ];

    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::NoHbaEntry => "no_hba_entry",
            AuthFailure::Rejected => "rejected",
            AuthFailure::Password => "password",
            AuthFailure::Protocol => "protocol",
            AuthFailure::NotPermitted => "not_permitted",
        }
    }
}

/// The table of live backends.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    sync_rep: Arc<SyncRepState>,
    auth_failures: [std::sync::atomic::AtomicU64; 5],
}

#[derive(Debug)]
struct Inner {
    backends: HashMap<i32, Arc<BackendEntry>>,
    next_pid: i32,
}

/// Where pids start: above what the kernel gives a small machine's first processes, so
/// they look like what they stand for.
const FIRST_PID: i32 = 10_000;

impl Default for Registry {
    fn default() -> Self {
        Registry {
            inner: Mutex::new(Inner { backends: HashMap::new(), next_pid: FIRST_PID }),
            sync_rep: Arc::default(),
            auth_failures: Default::default(),
        }
    }
}

impl Registry {
    /// A new, empty table.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new backend and returns the handle that keeps it registered.
    pub fn register(
        self: &Arc<Self>,
        backend_type: BackendType,
        client_addr: SocketAddr,
    ) -> BackendHandle {
        let mut inner = self.lock();
        // A pid never in use by a live backend; wraps around like kernel pids.
        let mut pid = inner.next_pid;
        while inner.backends.contains_key(&pid) {
            pid = if pid == i32::MAX { FIRST_PID } else { pid + 1 };
        }
        inner.next_pid = if pid == i32::MAX { FIRST_PID } else { pid + 1 };
        let entry = Arc::new(BackendEntry {
            pid,
            cancel_key: rand::random(),
            backend_type,
            client_addr,
            backend_start: SystemTime::now(),
            status: Mutex::new(BackendStatus {
                walsender: (backend_type == BackendType::WalSender).then(WalSenderStatus::default),
                ..BackendStatus::default()
            }),
            sync_rep: (backend_type == BackendType::WalSender).then(|| self.sync_rep.clone()),
            holdoff: Mutex::default(),
            interrupted: tokio::sync::Notify::new(),
            terminate: CancellationToken::new(),
            cancel: watch::Sender::new(0),
            reason: Mutex::new(None),
        });
        inner.backends.insert(pid, entry.clone());
        BackendHandle { registry: self.clone(), entry }
    }

    /// Registers a server task (`startup`, `checkpointer`, ...) for `pg_stat_activity`;
    /// it has no client.
    pub fn register_auxiliary(self: &Arc<Self>, backend_type: BackendType) -> BackendHandle {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        self.register(backend_type, nowhere)
    }

    /// Synchronous replication's state: its configuration (set by the server) and what
    /// the walsenders report.
    pub fn sync_rep(&self) -> &Arc<SyncRepState> {
        &self.sync_rep
    }

    /// Counts a failed authentication.
    pub fn count_auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Failed authentications so far, by reason.
    pub fn auth_failures(&self, reason: AuthFailure) -> u64 {
        self.auth_failures[reason as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The live backend with this pid.
    pub fn get(&self, pid: i32) -> Option<Arc<BackendEntry>> {
        self.lock().backends.get(&pid).cloned()
    }

    /// `signalfuncs.c: pg_wait_until_termination`: waits up to `limit` for backend `pid`
    /// to be gone; whether it went.
    pub async fn wait_until_gone(&self, pid: i32, limit: std::time::Duration) -> bool {
        let gone = async {
            while self.get(pid).is_some() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(limit, gone).await.is_ok()
    }

    /// The WARNING `pg_terminate_backend` gives when the backend outlived its timeout.
    pub fn did_not_terminate(pid: i32, timeout_ms: i64) -> String {
        format!("backend with PID {pid} did not terminate within {timeout_ms} milliseconds")
    }

    /// Every live backend, ordered by pid.
    pub fn list(&self) -> Vec<Arc<BackendEntry>> {
        let mut all: Vec<_> = self.lock().backends.values().cloned().collect();
        all.sort_by_key(|e| e.pid);
        all
    }

    /// How many live backends there are of this type.
    pub fn count(&self, backend_type: BackendType) -> usize {
        self.lock().backends.values().filter(|e| e.backend_type == backend_type).count()
    }

    /// Asks backend `pid` to terminate; false when there is none (`pg_terminate_backend`).
    pub fn terminate(&self, pid: i32) -> bool {
        self.get(pid).map(|e| e.terminate()).is_some()
    }

    /// Asks backend `pid` to cancel its command; false when there is none
    /// (`pg_cancel_backend`).
    pub fn cancel_pid(&self, pid: i32) -> bool {
        self.get(pid).map(|e| e.cancel()).is_some()
    }

    /// A CancelRequest: cancels backend `pid` if `key` is its cancel key
    /// (`postmaster.c: processCancelRequest`). Returns whether a backend matched.
    pub fn cancel_request(&self, pid: i32, key: u32) -> bool {
        match self.get(pid) {
            Some(e) if e.cancel_key == key => {
                e.cancel();
                true
            }
            _ => false,
        }
    }

    /// Resolves once no backend of `backend_type` is left.
    pub async fn wait_until_none(&self, backend_type: BackendType) {
        while self.count(backend_type) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Keeps a backend registered; dropping it removes the entry.
#[derive(Debug)]
pub struct BackendHandle {
    registry: Arc<Registry>,
    entry: Arc<BackendEntry>,
}

impl BackendHandle {
    /// The entry.
    pub fn entry(&self) -> &Arc<BackendEntry> {
        &self.entry
    }

    /// The table the entry is in.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        self.registry.lock().backends.remove(&self.entry.pid);
        if self.entry.sync_rep.is_some() {
            self.registry.sync_rep.remove(self.entry.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn pids_are_unique_and_entries_leave_with_their_handle() {
        let reg = Registry::new();
        let a = reg.register(BackendType::ClientBackend, addr());
        let b = reg.register(BackendType::WalSender, addr());
        assert_ne!(a.entry().pid, b.entry().pid);
        assert_eq!(reg.count(BackendType::WalSender), 1);
        assert!(b.entry().status().walsender.is_some());
        let pid = b.entry().pid;
        drop(b);
        assert!(reg.get(pid).is_none());
        assert_eq!(reg.list().len(), 1);
    }

    #[test]
    fn pids_skip_live_ones_when_they_wrap() {
        let reg = Registry::new();
        let a = reg.register(BackendType::ClientBackend, addr());
        reg.lock().next_pid = a.entry().pid;
        let b = reg.register(BackendType::ClientBackend, addr());
        assert_ne!(a.entry().pid, b.entry().pid);
        reg.lock().next_pid = i32::MAX;
        let c = reg.register(BackendType::ClientBackend, addr());
        assert_eq!(c.entry().pid, i32::MAX);
        let d = reg.register(BackendType::ClientBackend, addr());
        assert!(d.entry().pid >= FIRST_PID && d.entry().pid != a.entry().pid);
    }

    #[tokio::test]
    async fn cancel_needs_the_key_and_terminate_wakes_the_backend() {
        let reg = Registry::new();
        let h = reg.register(BackendType::WalSender, addr());
        let e = h.entry().clone();
        let mut cancels = e.cancel_requests();
        assert!(!reg.cancel_request(e.pid, e.cancel_key.wrapping_add(1)));
        assert!(!cancels.has_changed().unwrap());
        assert!(reg.cancel_request(e.pid, e.cancel_key));
        assert!(cancels.has_changed().unwrap());
        cancels.mark_unchanged();
        assert!(reg.terminate(e.pid));
        e.terminated().await;
        assert!(e.is_terminated());
        assert!(!reg.terminate(-1));
    }

    #[tokio::test]
    async fn held_interrupts_go_to_the_holder_and_a_terminate_outlives_it() {
        let reg = Registry::new();
        let h = reg.register(BackendType::ClientBackend, addr());
        let entry = h.entry().clone();
        let mut cancels = entry.cancel_requests();
        cancels.mark_unchanged();
        let held = entry.hold_interrupts();
        entry.cancel();
        assert_eq!(held.next().await, Interrupt::Cancel);
        assert!(!cancels.has_changed().unwrap(), "the loop saw a held cancel");
        entry.terminate();
        assert_eq!(held.next().await, Interrupt::Terminate);
        assert!(!entry.is_terminated());
        drop(held);
        assert!(entry.is_terminated(), "a held terminate is lost");
        // Not held: straight to the loop.
        entry.cancel();
        assert!(cancels.has_changed().unwrap());
    }
}
