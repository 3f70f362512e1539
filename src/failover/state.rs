//! The manager's rules, without I/O: when a node is up or down, which node is the primary,
//! which standby to promote, and what `%` placeholders stand for. Time comes in as `now`.

use serde::{Deserialize, Serialize};
use walstream_protocol::Lsn;

/// Whether a node answers its health checks (Pgpool-II's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not checked yet.
    Waiting,
    /// Its last check succeeded (or failed less often than the retries allow).
    Up,
    /// Every retry failed.
    Down,
}

impl Status {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Up => "up",
            Status::Down => "down",
        }
    }
}

/// What a node is, as last seen (Pgpool-II's `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Not known yet.
    Unknown,
    /// Not in recovery and followed (or the only one).
    Primary,
    /// In recovery.
    Standby,
    /// Not in recovery, but not the primary: a node that must not be followed.
    #[serde(rename = "false primary")]
    FalsePrimary,
}

impl Role {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::FalsePrimary => "false primary",
        }
    }
}

/// How one health check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// It connected and the query answered.
    Answered,
    /// It failed, with the reason (connection refused, timeout, an error).
    Failed(String),
}

/// A change of a node's [`Status`] that the manager acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// All retries failed: the node is down.
    WentDown {
        /// The last check's reason.
        reason: String,
    },
    /// A node that was down (or not yet checked) answered.
    WentUp,
}

/// One node's health, as the checks have found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Up or down.
    pub status: Status,
    /// Failed checks in a row.
    pub failures: u32,
    /// The reason of the last failure.
    pub last_error: Option<String>,
    /// When `status` last changed (seconds since the epoch).
    pub last_change: i64,
}

impl Health {
    /// A node not checked yet, as of `now`.
    pub fn new(now: i64) -> Self {
        Health { status: Status::Waiting, failures: 0, last_error: None, last_change: now }
    }

    /// Takes one check's outcome: the node goes down only when the check and all of its
    /// `max_retries` retries have failed, never on a single failure inside that window;
    /// one answer brings it up.
    pub fn observe(
        &mut self,
        outcome: CheckOutcome,
        max_retries: u32,
        now: i64,
    ) -> Option<Transition> {
        match outcome {
            CheckOutcome::Answered => {
                self.failures = 0;
                self.last_error = None;
                (self.status != Status::Up).then(|| {
                    self.status = Status::Up;
                    self.last_change = now;
                    Transition::WentUp
                })
            }
            CheckOutcome::Failed(reason) => {
                self.failures = self.failures.saturating_add(1);
                self.last_error = Some(reason.clone());
                (self.failures > max_retries && self.status != Status::Down).then(|| {
                    self.status = Status::Down;
                    self.last_change = now;
                    Transition::WentDown { reason }
                })
            }
        }
    }

    /// Marks the node down at once (a failed check after a session error, or a node found
    /// unreachable during a failover).
    pub fn mark_down(&mut self, reason: String, now: i64) -> Option<Transition> {
        self.last_error = Some(reason.clone());
        (self.status != Status::Down).then(|| {
            self.status = Status::Down;
            self.last_change = now;
            Transition::WentDown { reason }
        })
    }
}

/// What the replication check saw on one node that answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Probe {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// The standby's WAL receiver's upstream (`pg_stat_wal_receiver.sender_host`,
    /// `sender_port`), if it streams.
    pub upstream: Option<(String, u16)>,
    /// `pg_last_wal_receive_lsn()` (standby).
    pub receive_lsn: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` (standby).
    pub replay_lsn: Option<Lsn>,
    /// `pg_current_wal_lsn()` (primary).
    pub current_lsn: Option<Lsn>,
}

/// A node as [`find_primary`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen<'a> {
    /// Its id.
    pub id: usize,
    /// Its configured host and port.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// What it said.
    pub probe: &'a Probe,
}

/// Which node is the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryFound {
    /// The primary, if any node can be it.
    pub primary: Option<usize>,
    /// Nodes not in recovery that are not the primary (reported, never followed).
    pub false_primaries: Vec<usize>,
}

/// Whether a standby's upstream names `host`:`port` (loopback names are the same host).
fn names(upstream: &(String, u16), host: &str, port: u16) -> bool {
    let loopback = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "::1");
    upstream.1 == port && (upstream.0 == host || (loopback(&upstream.0) && loopback(host)))
}

/// Finds the primary as Pgpool-II does: the one node not in recovery; when several claim
/// it, the one the standbys' WAL receivers stream from (`pg_stat_wal_receiver`); when that
/// does not tell, the primary already known (`current`), else the lowest id. The others
/// are false primaries.
pub fn find_primary(nodes: &[Seen<'_>], current: Option<usize>) -> PrimaryFound {
    let claims: Vec<&Seen<'_>> = nodes.iter().filter(|n| !n.probe.in_recovery).collect();
    if claims.len() <= 1 {
        return PrimaryFound { primary: claims.first().map(|n| n.id), false_primaries: vec![] };
    }
    let followers = |c: &Seen<'_>| {
        nodes
            .iter()
            .filter(|n| n.probe.in_recovery)
            .filter(|n| n.probe.upstream.as_ref().is_some_and(|u| names(u, c.host, c.port)))
            .count()
    };
    let followed: Vec<usize> = claims.iter().filter(|c| followers(c) > 0).map(|c| c.id).collect();
    let primary = match followed.as_slice() {
        [one] => *one,
        _ => current
            .filter(|id| claims.iter().any(|c| c.id == *id))
            .unwrap_or_else(|| claims.iter().map(|c| c.id).min().unwrap_or(0)),
    };
    PrimaryFound {
        primary: Some(primary),
        false_primaries: claims.iter().map(|c| c.id).filter(|id| *id != primary).collect(),
    }
}

/// A standby that could be promoted.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its id.
    pub id: usize,
    /// The most WAL it has: `pg_last_wal_receive_lsn()`, else its replay position.
    pub lsn: Option<Lsn>,
    /// `backend_weight`: higher is preferred among equals.
    pub weight: f64,
}

/// The standby with the most WAL received; the higher weight, then the lower id, breaks a
/// tie.
pub fn choose(candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .max_by(|a, b| a.lsn.cmp(&b.lsn).then(a.weight.total_cmp(&b.weight)).then(b.id.cmp(&a.id)))
        .map(|c| c.id)
}

/// The bytes a standby that replayed up to `replayed` is behind `primary`, when that is
/// more than `threshold` (`delay_threshold`; 0: never).
pub fn behind(primary: Lsn, replayed: Option<Lsn>, threshold: u64) -> Option<u64> {
    let lag = primary.0.saturating_sub(replayed?.0);
    (threshold > 0 && lag > threshold).then_some(lag)
}

/// What `failover_command` and `follow_primary_command` placeholders stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders {
    /// `%d`, `%h`, `%p`, `%D`: the detached (failed) node — for `follow_primary_command`,
    /// the standby told to follow.
    pub node: NodeFields,
    /// `%m`, `%H`, `%r`, `%R`: the new main (primary) node.
    pub new_main: NodeFields,
    /// `%M`: the old main node's id.
    pub old_main: Option<usize>,
    /// `%P`, `%N`, `%S`: the old primary.
    pub old_primary: NodeFields,
}

/// A node's id, host, port and data directory for [`Placeholders`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFields {
    /// Id (`-1` when there is none, as Pgpool-II writes it).
    pub id: Option<usize>,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// Data directory.
    pub data_directory: String,
}

fn id_text(id: Option<usize>) -> String {
    id.map_or_else(|| "-1".to_string(), |id| id.to_string())
}

fn port_text(port: Option<u16>) -> String {
    port.map_or_else(String::new, |p| p.to_string())
}

/// Pgpool-II's placeholders in `template` replaced (`%d %h %p %D %m %H %M %P %r %R %N %S
/// %%`); an unknown `%x` is kept as written.
pub fn expand(template: &str, p: &Placeholders) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(k) = chars.next() else {
            out.push('%');
            break;
        };
        match k {
            'd' => out.push_str(&id_text(p.node.id)),
            'h' => out.push_str(&p.node.host),
            'p' => out.push_str(&port_text(p.node.port)),
            'D' => out.push_str(&p.node.data_directory),
            'm' => out.push_str(&id_text(p.new_main.id)),
            'H' => out.push_str(&p.new_main.host),
            'r' => out.push_str(&port_text(p.new_main.port)),
            'R' => out.push_str(&p.new_main.data_directory),
            'M' => out.push_str(&id_text(p.old_main)),
            'P' => out.push_str(&id_text(p.old_primary.id)),
            'N' => out.push_str(&p.old_primary.host),
            'S' => out.push_str(&port_text(p.old_primary.port)),
            '%' => out.push('%'),
            other => {
                out.push('%');
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_goes_down_only_after_every_retry_fails() {
        let mut h = Health::new(0);
        assert_eq!(h.observe(CheckOutcome::Answered, 2, 1), Some(Transition::WentUp));
        let fail = || CheckOutcome::Failed("refused".into());
        assert_eq!(h.observe(fail(), 2, 2), None, "first failure: retry");
        assert_eq!(h.observe(fail(), 2, 3), None, "first retry failed: retry again");
        assert_eq!(h.status, Status::Up);
        assert_eq!(
            h.observe(fail(), 2, 4),
            Some(Transition::WentDown { reason: "refused".into() })
        );
        assert_eq!((h.status, h.last_change), (Status::Down, 4));
        assert_eq!(h.observe(fail(), 2, 5), None, "down once");
        assert_eq!(h.observe(CheckOutcome::Answered, 2, 6), Some(Transition::WentUp));
        assert_eq!((h.status, h.failures, h.last_change), (Status::Up, 0, 6));
    }

    #[test]
    fn an_answer_inside_the_retry_window_starts_the_count_again() {
        let mut h = Health::new(0);
        h.observe(CheckOutcome::Answered, 1, 0);
        let fail = || CheckOutcome::Failed("timeout".into());
        assert_eq!(h.observe(fail(), 1, 1), None);
        assert_eq!(h.observe(CheckOutcome::Answered, 1, 2), None);
        assert_eq!(h.observe(fail(), 1, 3), None);
        assert_eq!(h.status, Status::Up);
    }

    fn probe(in_recovery: bool, upstream: Option<u16>) -> Probe {
        Probe {
            in_recovery,
            upstream: upstream.map(|p| ("127.0.0.1".to_string(), p)),
            ..Probe::default()
        }
    }

    fn seen(id: usize, port: u16, probe: &Probe) -> Seen<'_> {
        Seen { id, host: "localhost", port, probe }
    }

    #[test]
    fn the_primary_is_the_one_not_in_recovery_or_the_one_followed() {
        let (p, s) = (probe(false, None), probe(true, Some(5000)));
        let nodes = [seen(0, 5000, &p), seen(1, 5001, &s), seen(2, 5002, &s)];
        assert_eq!(
            find_primary(&nodes, None),
            PrimaryFound { primary: Some(0), false_primaries: vec![] }
        );
        // Node 1 was promoted; node 2 follows it; node 0 came back as a primary.
        let (promoted, follows1) = (probe(false, None), probe(true, Some(5001)));
        let nodes = [seen(0, 5000, &p), seen(1, 5001, &promoted), seen(2, 5002, &follows1)];
        let found = find_primary(&nodes, Some(0));
        assert_eq!(found, PrimaryFound { primary: Some(1), false_primaries: vec![0] });
        // Nobody follows either: the known primary stays.
        let alone = probe(true, None);
        let nodes = [seen(0, 5000, &p), seen(1, 5001, &promoted), seen(2, 5002, &alone)];
        assert_eq!(find_primary(&nodes, Some(1)).primary, Some(1));
        assert_eq!(find_primary(&nodes, None).false_primaries, vec![1]);
        assert_eq!(find_primary(&[seen(2, 5002, &alone)], Some(0)).primary, None);
    }

    #[test]
    fn the_most_advanced_standby_wins_then_weight_then_id() {
        let c = |id, lsn: Option<u64>, weight| Candidate { id, lsn: lsn.map(Lsn), weight };
        assert_eq!(choose(&[c(1, Some(10), 1.0), c(2, Some(20), 0.0)]), Some(2));
        assert_eq!(choose(&[c(1, Some(20), 1.0), c(2, Some(20), 3.0)]), Some(2));
        assert_eq!(choose(&[c(2, Some(20), 1.0), c(1, Some(20), 1.0)]), Some(1));
        assert_eq!(choose(&[c(1, None, 9.0), c(2, Some(1), 0.0)]), Some(2));
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn the_status_file_spells_roles_and_statuses_as_shown() {
        for r in [Role::Unknown, Role::Primary, Role::Standby, Role::FalsePrimary] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        for s in [Status::Waiting, Status::Up, Status::Down] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn a_standby_is_behind_only_past_the_threshold() {
        assert_eq!(behind(Lsn(1000), Some(Lsn(100)), 500), Some(900));
        assert_eq!(behind(Lsn(1000), Some(Lsn(600)), 500), None);
        assert_eq!(behind(Lsn(1000), Some(Lsn(0)), 0), None, "0 turns it off");
        assert_eq!(behind(Lsn(1000), None, 1), None);
        assert_eq!(behind(Lsn(10), Some(Lsn(20)), 1), None);
    }

    #[test]
    fn placeholders_are_pgpools() {
        let node = |id, host: &str, port, dir: &str| NodeFields {
            id: Some(id),
            host: host.into(),
            port: Some(port),
            data_directory: dir.into(),
        };
        let p = Placeholders {
            node: node(0, "h0", 5000, "/d0"),
            new_main: node(1, "h1", 5001, "/d1"),
            old_main: Some(0),
            old_primary: node(0, "h0", 5000, "/d0"),
        };
        assert_eq!(
            expand("%d %h %p %D %m %H %M %P %r %R %N %S %% %x %", &p),
            "0 h0 5000 /d0 1 h1 0 0 5001 /d1 h0 5000 % %x %"
        );
        assert_eq!(expand("%m", &Placeholders::default()), "-1");
    }
}
