//! The manager: health-check tasks report to one loop, which owns the nodes' state, finds
//! the primary, and performs the failover (promote the most advanced standby, run
//! `failover_command`, make the other standbys follow) when the primary goes down.
//!
//! The rules are in [`super::state`]; this module does the waiting and the talking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::config::{Backend, BackendFlag, Config};
use super::probe::{self, Login};
use super::state::{
    self, Candidate, CheckOutcome, Health, NodeFields, Placeholders, Probe, Role, Seen, Status,
    Transition,
};
use super::status::{self, NodeRow, Snapshot};

/// What reaches the loop.
#[derive(Debug)]
pub enum Event {
    /// A health check ended.
    Checked {
        /// The node.
        id: usize,
        /// How.
        outcome: CheckOutcome,
    },
    /// A session forwarded to node `id` broke (`failover_on_backend_error`).
    BackendError {
        /// The node.
        id: usize,
        /// What happened.
        reason: String,
    },
}

/// Where clients are sent: the primary's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The node's id.
    pub id: usize,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// Whether this manager may act (the leader lease of `--dcs`; always without it).
pub type Leadership = watch::Receiver<bool>;

/// How long a told standby has to show it streams from the new primary before it is told
/// again.
const FOLLOW_GRACE: Duration = Duration::from_secs(30);

/// The least time between two failover attempts that failed.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

/// A standby told to follow the new primary.
#[derive(Debug, Clone)]
struct Told {
    id: usize,
    at: Instant,
    /// Whether the telling itself succeeded (a failed command or query is retried).
    done: bool,
}

/// The loop's state.
pub struct Manager {
    config: Config,
    health: Vec<Health>,
    probes: Vec<Option<Probe>>,
    walsenders: Vec<probe::Walsender>,
    roles: Vec<Role>,
    primary: Option<usize>,
    failovers: u64,
    following: Vec<Told>,
    last_attempt: Option<Instant>,
    wakers: Vec<Arc<Notify>>,
    target: watch::Sender<Option<Target>>,
    snapshot: watch::Sender<Snapshot>,
    leader: Leadership,
    hint: watch::Receiver<Option<usize>>,
}

impl Manager {
    /// A manager for `config`; `leader` says when it may act; `hint` is the primary as
    /// other managers last recorded it (etcd), taken when this one has seen none.
    pub fn new(config: Config, leader: Leadership, hint: watch::Receiver<Option<usize>>) -> Self {
        let n = config.backends.len();
        let now = status::now_secs();
        let (target, _) = watch::channel(None);
        let (snapshot, _) = watch::channel(Snapshot::default());
        Manager {
            health: vec![Health::new(now); n],
            probes: vec![None; n],
            walsenders: Vec::new(),
            roles: vec![Role::Unknown; n],
            primary: None,
            failovers: 0,
            following: Vec::new(),
            last_attempt: None,
            wakers: (0..n).map(|_| Arc::new(Notify::new())).collect(),
            target,
            snapshot,
            leader,
            hint,
            config,
        }
    }

    /// Where the primary is, for the proxy.
    pub fn targets(&self) -> watch::Receiver<Option<Target>> {
        self.target.subscribe()
    }

    /// The status, for `/metrics` and the status file.
    pub fn snapshots(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.subscribe()
    }

    fn index(&self, id: usize) -> Option<usize> {
        self.config.backends.iter().position(|b| b.id == id)
    }

    fn backend(&self, i: usize) -> &Backend {
        &self.config.backends[i]
    }

    /// Runs until `cancel`: starts a health-check task per node, then takes their reports,
    /// checks replication every `sr_check_period`, and fails over when the primary is down.
    pub async fn run(
        mut self,
        events: mpsc::Sender<Event>,
        mut rx: mpsc::Receiver<Event>,
        cancel: CancellationToken,
    ) {
        for warning in &self.config.warnings {
            tracing::warn!("{warning}");
        }
        for (i, b) in self.config.backends.iter().enumerate() {
            if b.health.period.is_zero() {
                tracing::warn!(
                    "health check of node {} is off (health_check_period = 0): it is found down only by a failed session",
                    b.id
                );
                continue;
            }
            tokio::spawn(health_task(
                b.clone(),
                events.clone(),
                self.wakers[i].clone(),
                cancel.clone(),
            ));
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sr_period = self.config.sr_check.period;
        let mut last_sr: Option<Instant> = None;
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(event) = rx.recv() => self.on_event(event).await,
                _ = tick.tick() => {
                    let due = last_sr.is_none_or(|t| !sr_period.is_zero() && t.elapsed() >= sr_period);
                    if due || self.primary.is_none() || !self.following.is_empty() {
                        self.sr_check().await;
                        last_sr = Some(Instant::now());
                    }
                    if self.primary.is_none() {
                        let timeout = self.config.search_primary_node_timeout;
                        if !timeout.is_zero() && started.elapsed() > timeout && self.failovers == 0 {
                            tracing::warn!("could not find the primary node within {} seconds", timeout.as_secs());
                        }
                    }
                }
            }
            if self.primary.is_none() {
                // A manager that never saw the primary (it started after it died) takes
                // the one recorded by the managers before it.
                let hinted = *self.hint.borrow();
                if let Some(h) = hinted.filter(|h| self.index(*h).is_some()) {
                    tracing::info!("node {h} is the primary, as recorded in the DCS");
                    self.set_primary(h);
                }
            }
            if self.primary_down() && *self.leader.borrow() {
                let pause_over = self.last_attempt.is_none_or(|t| t.elapsed() >= RETRY_PAUSE);
                if pause_over {
                    self.last_attempt = Some(Instant::now());
                    if let Err(e) = self.failover().await {
                        tracing::error!("failover failed: {e:#}; trying again");
                    }
                }
            }
            if *self.leader.borrow() {
                self.tell_followers().await;
            }
            self.publish();
        }
    }

    fn primary_down(&self) -> bool {
        self.primary
            .and_then(|id| self.index(id))
            .is_some_and(|i| self.health[i].status == Status::Down)
    }

    async fn on_event(&mut self, event: Event) {
        let now = status::now_secs();
        match event {
            Event::Checked { id, outcome } => {
                let Some(i) = self.index(id) else { return };
                let retries = self.backend(i).health.max_retries;
                if let CheckOutcome::Failed(reason) = &outcome {
                    if self.health[i].status != Status::Down {
                        tracing::warn!("health check failed on node {id}: {reason}");
                    }
                }
                match self.health[i].observe(outcome, retries, now) {
                    Some(Transition::WentDown { reason }) => {
                        tracing::error!(
                            "node {id} is down: health check failed {} time(s): {reason}",
                            retries + 1
                        );
                        if self.primary == Some(id) {
                            self.target.send_replace(None);
                        }
                    }
                    Some(Transition::WentUp) => {
                        tracing::info!("node {id} is up");
                        self.sr_check().await;
                    }
                    None => {}
                }
            }
            Event::BackendError { id, reason } => {
                let Some(i) = self.index(id) else { return };
                if !self.config.failover_on_backend_error || self.health[i].status == Status::Down {
                    return;
                }
                tracing::warn!("session to node {id} failed: {reason}; checking the node now");
                // One fresh check confirms it: a node that still answers stays up.
                match probe::health_check(self.backend(i)).await {
                    Ok(()) => {}
                    Err(e) => {
                        if self.health[i].mark_down(format!("{e:#}"), now).is_some() {
                            tracing::error!("node {id} is down: a session failed ({reason}) and it does not answer: {e:#}");
                            if self.primary == Some(id) {
                                self.target.send_replace(None);
                            }
                        }
                    }
                }
                self.wakers[i].notify_one();
            }
        }
    }

    /// Asks every node that is up what it is; finds the primary and the delays.
    async fn sr_check(&mut self) {
        let n = self.config.backends.len();
        for i in 0..n {
            if self.health[i].status == Status::Down {
                self.probes[i] = None;
                continue;
            }
            let b = self.backend(i).clone();
            let got = async {
                let client = probe::connect(&b, self.sr_login(&b)).await?;
                let p = probe::replication(&client).await?;
                let senders =
                    if p.in_recovery { None } else { Some(probe::walsenders(&client).await?) };
                Ok::<_, anyhow::Error>((p, senders))
            };
            match tokio::time::timeout(self.probe_limit(&b), got).await {
                Ok(Ok((p, senders))) => {
                    if self.health[i].status == Status::Waiting {
                        // The first answer counts as a check.
                        self.health[i].observe(CheckOutcome::Answered, 0, status::now_secs());
                    }
                    if let Some(s) = senders {
                        if Some(b.id) == self.primary || self.primary.is_none() {
                            self.walsenders = s;
                        }
                    }
                    self.probes[i] = Some(p);
                }
                Ok(Err(e)) => {
                    tracing::debug!("replication check of node {} failed: {e:#}", b.id);
                    self.probes[i] = None;
                }
                Err(_) => self.probes[i] = None,
            }
        }
        let seen: Vec<Seen<'_>> = self
            .config
            .backends
            .iter()
            .zip(&self.probes)
            .filter_map(|(b, p)| {
                Some(Seen { id: b.id, host: &b.host, port: b.port, probe: p.as_ref()? })
            })
            .collect();
        let found = state::find_primary(&seen, self.primary);
        for &f in &found.false_primaries {
            if self.roles[self.index(f).unwrap_or(0)] != Role::FalsePrimary {
                tracing::error!(
                    "node {f} is not in recovery but is not the primary (a false primary): it is not followed"
                );
            }
        }
        for i in 0..n {
            let id = self.backend(i).id;
            self.roles[i] = match &self.probes[i] {
                None => self.roles[i],
                Some(_) if found.false_primaries.contains(&id) => Role::FalsePrimary,
                Some(p) if !p.in_recovery => Role::Primary,
                Some(_) => Role::Standby,
            };
        }
        self.log_delays(found.primary);
        match found.primary {
            Some(p) if self.primary != Some(p) => {
                // A known, living primary is only replaced by a failover or a node the
                // standbys follow.
                let keep = self.primary.and_then(|id| self.index(id)).is_some_and(|i| {
                    self.health[i].status == Status::Up
                        && self.probes[i].as_ref().is_some_and(|pr| !pr.in_recovery)
                });
                if !keep || found.false_primaries.contains(&self.primary.unwrap_or(usize::MAX)) {
                    tracing::info!("node {p} is the primary");
                    self.set_primary(p);
                }
            }
            Some(p) if self.target.borrow().is_none() => self.set_primary(p),
            Some(_) | None => {}
        }
    }

    /// Pgpool-II's line for each standby more than `delay_threshold` bytes behind.
    fn log_delays(&self, primary: Option<usize>) {
        let Some(p) = primary else { return };
        let Some(current) = self.index(p).and_then(|i| self.probes[i].as_ref()?.current_lsn) else {
            return;
        };
        for (b, probe) in self.config.backends.iter().zip(&self.probes) {
            let replayed = probe.as_ref().filter(|p| p.in_recovery).and_then(|p| p.replay_lsn);
            if let Some(lag) = state::behind(current, replayed, self.config.delay_threshold) {
                tracing::info!(
                    "Replication of node: {} is behind {lag} bytes from the primary server (node: {p})",
                    b.id
                );
            }
        }
    }

    fn probe_limit(&self, b: &Backend) -> Duration {
        let t = b.health.timeout.max(b.health.connect_timeout);
        if t.is_zero() {
            Duration::from_secs(30)
        } else {
            t
        }
    }

    fn sr_login<'a>(&'a self, b: &'a Backend) -> Login<'a> {
        let sr = &self.config.sr_check;
        if sr.user.is_empty() {
            Login { user: &b.health.user, password: &b.health.password, database: &sr.database }
        } else {
            Login { user: &sr.user, password: &sr.password, database: &sr.database }
        }
    }

    fn set_primary(&mut self, id: usize) {
        self.primary = Some(id);
        if let Some(i) = self.index(id) {
            let b = self.backend(i);
            self.target.send_replace(Some(Target { id, host: b.host.clone(), port: b.port }));
        }
    }

    /// The primary is down: promote the most advanced standby, run `failover_command`,
    /// make the others follow.
    async fn failover(&mut self) -> Result<()> {
        let Some(old) = self.primary else { return Ok(()) };
        let Some(oi) = self.index(old) else { return Ok(()) };
        let now = status::now_secs();
        if self.backend(oi).flag == BackendFlag::DisallowToFailover {
            bail!("node {old} has backend_flag DISALLOW_TO_FAILOVER");
        }
        // Never promote while the old primary still answers.
        if probe::health_check(self.backend(oi)).await.is_ok() {
            tracing::info!("primary node {old} answers again; no failover");
            self.health[oi].observe(CheckOutcome::Answered, 0, now);
            self.set_primary(old);
            return Ok(());
        }
        tracing::info!("failover of primary node {old} starts");
        // A standby already promoted (by us before a failure, or by someone) is taken as
        // it is: never two primaries.
        let mut candidates = Vec::new();
        for i in 0..self.config.backends.len() {
            let b = self.backend(i).clone();
            if i == oi || self.health[i].status != Status::Up {
                continue;
            }
            let got = async {
                let client = probe::connect(&b, self.sr_login(&b)).await?;
                probe::replication(&client).await
            };
            match tokio::time::timeout(self.probe_limit(&b), got).await {
                Ok(Ok(p)) if !p.in_recovery => {
                    tracing::info!(
                        "node {} is already out of recovery; it is the new primary",
                        b.id
                    );
                    return self.after_promotion(old, b.id).await;
                }
                Ok(Ok(p)) if b.flag == BackendFlag::AllowToFailover => candidates.push(Candidate {
                    id: b.id,
                    lsn: p.receive_lsn.max(p.replay_lsn),
                    weight: b.weight,
                }),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!("node {} cannot be asked for its position: {e:#}", b.id)
                }
                Err(_) => tracing::warn!("node {} did not answer for its position in time", b.id),
            }
        }
        let Some(new) = state::choose(&candidates) else {
            bail!("no standby to promote");
        };
        let lsn = candidates.iter().find(|c| c.id == new).and_then(|c| c.lsn);
        tracing::info!(
            "promoting node {new}, the standby with the most WAL received ({})",
            lsn.map_or_else(|| "none".to_string(), |l| l.to_string())
        );
        let ni = self.index(new).ok_or_else(|| anyhow!("node {new} vanished"))?;
        let b = self.backend(ni).clone();
        let client = probe::connect(&b, self.sr_login(&b)).await?;
        let wait = self
            .config
            .search_primary_node_timeout
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        probe::promote(&client, wait)
            .await
            .map_err(|e| anyhow!("could not promote node {new}: {e:#}"))?;
        tracing::info!("node {new} is promoted");
        self.after_promotion(old, new).await
    }

    /// `new` is the primary now: tell the proxy, run `failover_command`, tell the others.
    async fn after_promotion(&mut self, old: usize, new: usize) -> Result<()> {
        self.failovers += 1;
        self.set_primary(new);
        if let (Some(oi), Some(ni)) = (self.index(old), self.index(new)) {
            self.roles[ni] = Role::Primary;
            self.roles[oi] = Role::Unknown;
        }
        if !self.config.failover_command.is_empty() {
            let p = self.placeholders(old, new, old);
            let command = state::expand(&self.config.failover_command, &p);
            if let Err(e) = run_command("failover_command", &command).await {
                tracing::error!("{e:#}");
            }
        }
        let now = Instant::now();
        self.following = self
            .config
            .backends
            .iter()
            .filter(|b| b.id != old && b.id != new)
            .map(|b| Told { id: b.id, at: now, done: false })
            .collect();
        self.publish();
        self.tell_followers().await;
        Ok(())
    }

    fn fields(&self, id: usize) -> NodeFields {
        match self.index(id) {
            Some(i) => {
                let b = self.backend(i);
                NodeFields {
                    id: Some(id),
                    host: b.host.clone(),
                    port: Some(b.port),
                    data_directory: b.data_directory.clone(),
                }
            }
            None => NodeFields::default(),
        }
    }

    fn placeholders(&self, node: usize, new: usize, old: usize) -> Placeholders {
        Placeholders {
            node: self.fields(node),
            new_main: self.fields(new),
            old_main: Some(old),
            old_primary: self.fields(old),
        }
    }

    /// Tells each standby still to follow the new primary: `follow_primary_command`, else
    /// natively; checks that each one streams from it, and tells again after a while.
    async fn tell_followers(&mut self) {
        let Some(new) = self.primary else { return };
        let Some(ni) = self.index(new) else { return };
        let (host, port) = (self.backend(ni).host.clone(), self.backend(ni).port);
        let old = self.following_old_primary();
        let mut still = Vec::new();
        for mut told in std::mem::take(&mut self.following) {
            let Some(i) = self.index(told.id) else { continue };
            let streams_from_new =
                self.probes[i].as_ref().and_then(|p| p.upstream.as_ref()).is_some_and(|u| {
                    u.1 == port && (u.0 == host || is_loopback(&u.0) && is_loopback(&host))
                });
            if told.done && streams_from_new {
                tracing::info!("node {} follows the new primary node {new}", told.id);
                continue;
            }
            if self.health[i].status != Status::Up {
                still.push(told);
                continue;
            }
            if told.done && told.at.elapsed() < FOLLOW_GRACE {
                still.push(told);
                continue;
            }
            if told.done && !self.config.follow_primary_command.is_empty() {
                // The user's command ran and said it succeeded; it is not run twice.
                tracing::warn!(
                    "node {} does not stream from the new primary node {new} {} s after follow_primary_command",
                    told.id,
                    FOLLOW_GRACE.as_secs()
                );
                continue;
            }
            if told.done {
                tracing::warn!(
                    "node {} does not stream from the new primary yet; telling it again",
                    told.id
                );
            }
            let b = self.backend(i).clone();
            let result = if self.config.follow_primary_command.is_empty() {
                async {
                    let client = probe::connect(&b, self.sr_login(&b)).await?;
                    let conninfo = probe::follow(&client, &host, port).await?;
                    tracing::info!(
                        "node {} now has primary_conninfo '{}'",
                        b.id,
                        redact(&conninfo)
                    );
                    Ok(())
                }
                .await
            } else {
                let p = self.placeholders(b.id, new, old.unwrap_or(new));
                let command = state::expand(&self.config.follow_primary_command, &p);
                run_command("follow_primary_command", &command).await
            };
            match result {
                Ok(()) => told.done = true,
                Err(e) => {
                    tracing::error!("could not make node {} follow the new primary: {e:#}", b.id)
                }
            }
            told.at = Instant::now();
            still.push(told);
        }
        self.following = still;
    }

    fn following_old_primary(&self) -> Option<usize> {
        self.roles
            .iter()
            .zip(&self.config.backends)
            .zip(&self.health)
            .find(|((_, b), h)| h.status == Status::Down && Some(b.id) != self.primary)
            .map(|((_, b), _)| b.id)
    }

    fn publish(&mut self) {
        let primary_lsn = self
            .primary
            .and_then(|id| self.index(id))
            .and_then(|i| self.probes[i].as_ref())
            .and_then(|p| p.current_lsn);
        let nodes = self
            .config
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let probe = self.probes[i].as_ref();
                let standby = probe.is_some_and(|p| p.in_recovery);
                let sender = self.walsenders.iter().find(|w| {
                    !b.application_name.is_empty() && w.application_name == b.application_name
                });
                let delay = if standby {
                    primary_lsn
                        .zip(probe.and_then(|p| p.replay_lsn))
                        .map(|(p, r)| p.0.saturating_sub(r.0))
                } else {
                    None
                };
                NodeRow {
                    node_id: b.id,
                    hostname: b.host.clone(),
                    port: b.port,
                    status: self.health[i].status,
                    role: self.roles[i],
                    replication_delay: delay,
                    replication_delay_seconds: if standby {
                        Some(sender.map_or(0.0, |s| s.replay_lag))
                    } else {
                        None
                    },
                    replication_state: sender.map(|s| s.state.clone()).unwrap_or_default(),
                    replication_sync_state: sender
                        .map(|s| s.sync_state.clone())
                        .unwrap_or_default(),
                    last_status_change: status::format_time(self.health[i].last_change),
                    last_error: self.health[i].last_error.clone(),
                }
            })
            .collect();
        let snapshot = Snapshot {
            pid: std::process::id(),
            updated: status::format_time(status::now_secs()),
            primary: self.primary,
            failovers: self.failovers,
            leader: *self.leader.borrow(),
            nodes,
        };
        let changed = {
            let old = self.snapshot.borrow();
            old.nodes != snapshot.nodes
                || old.primary != snapshot.primary
                || old.leader != snapshot.leader
                || old.updated != snapshot.updated
        };
        if changed {
            if let Err(e) = status::write(&self.config.status_path(), &snapshot) {
                tracing::warn!("{e:#}");
            }
            self.snapshot.send_replace(snapshot);
        }
    }
}

fn is_loopback(h: &str) -> bool {
    matches!(h, "localhost" | "127.0.0.1" | "::1")
}

/// A conninfo with its password hidden, for the log.
fn redact(conninfo: &str) -> String {
    match walstream_receiver::conninfo::ConnInfo::parse(conninfo) {
        Ok(c) if c.password.is_some() => "(password hidden)".to_string(),
        _ => conninfo.to_string(),
    }
}

/// The longest a `failover_command` or `follow_primary_command` may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// Runs `command` with `sh -c`, as Pgpool-II runs its commands, logging it.
async fn run_command(what: &str, command: &str) -> Result<()> {
    tracing::info!("execute command: {command}");
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow!("{what} could not be run: {e}"))?;
    match tokio::time::timeout(COMMAND_LIMIT, child.wait()).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => bail!("{what} failed: {s}"),
        Ok(Err(e)) => bail!("{what} could not be waited for: {e}"),
        Err(_) => bail!("{what} did not finish within {} seconds; killed", COMMAND_LIMIT.as_secs()),
    }
}

/// One node's health checks: every `health_check_period`, or `health_check_retry_delay`
/// after a failure while retries remain; a wake-up runs one at once.
async fn health_task(
    b: Backend,
    events: mpsc::Sender<Event>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let outcome = match probe::health_check(&b).await {
            Ok(()) => {
                failures = 0;
                CheckOutcome::Answered
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                CheckOutcome::Failed(format!("{e:#}"))
            }
        };
        if events.send(Event::Checked { id: b.id, outcome }).await.is_err() {
            return;
        }
        let wait = if failures > 0 && failures <= b.health.max_retries {
            b.health.retry_delay
        } else {
            b.health.period
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
    }
}
