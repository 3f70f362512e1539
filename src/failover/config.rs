//! `pgpool.conf`, read as Pgpool-II reads it: `postgresql.conf` syntax, backends as
//! numbered settings (`backend_hostname0`, `backend_port0`, ...), per-node health-check
//! settings that fall back to the unnumbered ones (`health_check_period1`, else
//! `health_check_period`), and Pgpool-II's defaults.
//!
//! Settings the manager has no use for (load balancing, the watchdog, the query cache, ...)
//! are accepted with a warning naming them, so a Pgpool-II user's file carries over;
//! unknown names and bad values are errors naming the file and line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use walstream_node::conf::{self, ConfEntry, ConfError};
use walstream_node::settings::parse_bool;

/// How one backend is checked (`health_check_*`, `connect_timeout`; each per node or
/// shared).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// `health_check_period` (0: no health checks for this node).
    pub period: Duration,
    /// `health_check_timeout`: the limit for one check (0: none).
    pub timeout: Duration,
    /// `health_check_max_retries`: failed checks retried before the node is marked down.
    pub max_retries: u32,
    /// `health_check_retry_delay`.
    pub retry_delay: Duration,
    /// `connect_timeout` (milliseconds in the file; 0: none).
    pub connect_timeout: Duration,
    /// `health_check_user`.
    pub user: String,
    /// `health_check_password` (empty: none, or the password file).
    pub password: String,
    /// `health_check_database`.
    pub database: String,
}

/// `backend_flagN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendFlag {
    /// `ALLOW_TO_FAILOVER` (the default): the node may be detached and promoted.
    AllowToFailover,
    /// `DISALLOW_TO_FAILOVER`: the node is checked and shown, never detached or promoted.
    DisallowToFailover,
}

/// One `backend_*N` group.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// N.
    pub id: usize,
    /// `backend_hostnameN`.
    pub host: String,
    /// `backend_portN` (5432).
    pub port: u16,
    /// `backend_weightN` (1): the priority among equally advanced standbys, higher first.
    pub weight: f64,
    /// `backend_data_directoryN` (for `%D` and `%R`).
    pub data_directory: String,
    /// `backend_application_nameN`: the name the node uses as a standby.
    pub application_name: String,
    /// `backend_flagN`.
    pub flag: BackendFlag,
    /// Its health check.
    pub health: HealthCheck,
}

/// The streaming-replication check (`sr_check_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct SrCheck {
    /// `sr_check_period` (10 s; 0: only at start and after a failover).
    pub period: Duration,
    /// `sr_check_user` (empty: `health_check_user`).
    pub user: String,
    /// `sr_check_password`.
    pub password: String,
    /// `sr_check_database`.
    pub database: String,
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file read.
    pub path: PathBuf,
    /// The backends, by id.
    pub backends: Vec<Backend>,
    /// The replication check.
    pub sr_check: SrCheck,
    /// `delay_threshold`: bytes of replay lag above which a standby is logged as behind at
    /// each replication check (0: never).
    pub delay_threshold: u64,
    /// `failover_command` (empty: none).
    pub failover_command: String,
    /// `follow_primary_command` (empty: standbys follow natively).
    pub follow_primary_command: String,
    /// `search_primary_node_timeout` (300 s; 0: wait for ever).
    pub search_primary_node_timeout: Duration,
    /// `failover_on_backend_error` (on).
    pub failover_on_backend_error: bool,
    /// `work_dir` (formerly `logdir`): where the status file is kept.
    pub work_dir: PathBuf,
    /// Settings read but not used, as warnings to log.
    pub warnings: Vec<String>,
}

/// The name of the status file in `work_dir` (Pgpool-II keeps `pgpool_status` there).
pub const STATUS_FILE: &str = "walstream_failover_status.json";

/// A configuration file that cannot be used, with PostgreSQL's texts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read or does not parse.
    #[error(transparent)]
    File(#[from] ConfError),
    /// A name neither the manager nor Pgpool-II knows.
    #[error("unrecognized configuration parameter \"{name}\" in file \"{}\" line {line}", file.display())]
    Unrecognized {
        /// The name as written.
        name: String,
        /// The file.
        file: PathBuf,
        /// The line.
        line: u32,
    },
    /// A value of the wrong form.
    #[error("invalid value for parameter \"{name}\": \"{value}\" in file \"{}\" line {line}", file.display())]
    InvalidValue {
        /// The name as written.
        name: String,
        /// The value.
        value: String,
        /// The file.
        file: PathBuf,
        /// The line.
        line: u32,
    },
    /// A number outside its range.
    #[error("{value} is outside the valid range for parameter \"{name}\" ({min} .. {max}) in file \"{}\" line {line}", file.display())]
    OutOfRange {
        /// The name as written.
        name: String,
        /// The value.
        value: i64,
        /// The least allowed.
        min: i64,
        /// The most allowed.
        max: i64,
        /// The file.
        file: PathBuf,
        /// The line.
        line: u32,
    },
    /// A `backend_*N` setting without `backend_hostnameN`.
    #[error("backend_hostname{id} is not set in file \"{}\", but line {line} sets \"{name}\"", file.display())]
    NoHostname {
        /// N.
        id: usize,
        /// The setting that names it.
        name: String,
        /// The file.
        file: PathBuf,
        /// Its line.
        line: u32,
    },
    /// No backend at all.
    #[error("no backend is configured in file \"{}\" (backend_hostname0 is not set)", .0.display())]
    NoBackends(PathBuf),
}

/// Settings that are numbered per backend.
const PER_BACKEND: &[&str] = &[
    "backend_hostname",
    "backend_port",
    "backend_weight",
    "backend_data_directory",
    "backend_application_name",
    "backend_flag",
];

/// Health-check settings: shared, or numbered per backend.
const PER_NODE_OR_SHARED: &[&str] = &[
    "health_check_period",
    "health_check_timeout",
    "health_check_max_retries",
    "health_check_retry_delay",
    "connect_timeout",
    "health_check_user",
    "health_check_password",
    "health_check_database",
];

/// Unnumbered settings the manager uses.
const GLOBAL: &[&str] = &[
    "sr_check_period",
    "sr_check_user",
    "sr_check_password",
    "sr_check_database",
    "delay_threshold",
    "failover_command",
    "follow_primary_command",
    "search_primary_node_timeout",
    "failover_on_backend_error",
    "work_dir",
    "logdir",
];

/// Pgpool-II 4.x settings the manager does not use (accepted with a warning).
const PGPOOL_UNUSED: &[&str] = &[
    "allow_clear_text_frontend_auth",
    "allow_multiple_failover_requests_from_node",
    "allow_sql_comments",
    "app_name_redirect_preference_list",
    "arping_cmd",
    "arping_path",
    "authentication_timeout",
    "auto_failback",
    "auto_failback_interval",
    "backend_clustering_mode",
    "cache_safe_memqcache_table_list",
    "cache_unsafe_memqcache_table_list",
    "check_temp_table",
    "check_unlogged_table",
    "child_life_time",
    "child_max_connections",
    "clear_memqcache_on_escalation",
    "client_idle_limit",
    "client_idle_limit_in_recovery",
    "client_min_messages",
    "connection_cache",
    "connection_life_time",
    "database_redirect_preference_list",
    "delay_threshold_by_time",
    "delegate_ip",
    "detach_false_primary",
    "disable_load_balance_on_write",
    "dml_adaptive_object_relationship_list",
    "enable_consensus_with_half_votes",
    "enable_pool_hba",
    "enable_shared_relcache",
    "failback_command",
    "failover_if_affected_tuples_mismatch",
    "failover_on_backend_shutdown",
    "failover_require_consensus",
    "failover_when_quorum_exists",
    "if_cmd_path",
    "if_down_cmd",
    "if_up_cmd",
    "ignore_leading_white_space",
    "insert_lock",
    "listen_addresses",
    "listen_backlog_multiplier",
    "load_balance_mode",
    "lobj_lock_table",
    "log_backend_messages",
    "log_client_messages",
    "log_connections",
    "log_destination",
    "log_directory",
    "log_disconnections",
    "log_error_verbosity",
    "log_file_mode",
    "log_filename",
    "log_hostname",
    "log_line_prefix",
    "log_min_messages",
    "log_pcp_processes",
    "log_per_node_statement",
    "log_rotation_age",
    "log_rotation_size",
    "log_standby_delay",
    "log_statement",
    "log_truncate_on_rotation",
    "logging_collector",
    "master_slave_mode",
    "master_slave_sub_mode",
    "max_pool",
    "max_spare_children",
    "memory_cache_enabled",
    "memqcache_auto_cache_invalidation",
    "memqcache_cache_block_size",
    "memqcache_expire",
    "memqcache_max_num_cache",
    "memqcache_maxcache",
    "memqcache_memcached_host",
    "memqcache_memcached_port",
    "memqcache_method",
    "memqcache_oiddir",
    "memqcache_total_size",
    "min_spare_children",
    "notice_per_node_statement",
    "num_init_children",
    "pcp_listen_addresses",
    "pcp_port",
    "pcp_socket_dir",
    "pid_file_name",
    "ping_path",
    "pool_passwd",
    "port",
    "prefer_lower_delay_standby",
    "primary_routing_query_pattern_list",
    "process_management_mode",
    "process_management_strategy",
    "read_only_function_list",
    "recovery_1st_stage_command",
    "recovery_2nd_stage_command",
    "recovery_database",
    "recovery_password",
    "recovery_timeout",
    "recovery_user",
    "relcache_expire",
    "relcache_query_target",
    "relcache_size",
    "replicate_select",
    "replication_delay_source_cmd",
    "replication_delay_source_timeout",
    "replication_stop_on_mismatch",
    "reserved_connections",
    "reset_query_list",
    "serialize_accept",
    "ssl",
    "ssl_ca_cert",
    "ssl_ca_cert_dir",
    "ssl_cert",
    "ssl_ciphers",
    "ssl_crl_file",
    "ssl_dh_params_file",
    "ssl_ecdh_curve",
    "ssl_key",
    "ssl_passphrase_command",
    "ssl_prefer_server_ciphers",
    "statement_level_load_balance",
    "syslog_facility",
    "syslog_ident",
    "track_table_mutation_cold_start_duration",
    "track_table_mutation_max_staleness",
    "track_table_mutation_table_buckets",
    "track_table_mutation_table_size",
    "track_table_mutation_ttl_factor",
    "trusted_server_command",
    "trusted_servers",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
    "use_watchdog",
    "user_redirect_preference_list",
    "wd_authkey",
    "wd_de_escalation_command",
    "wd_escalation_command",
    "wd_heartbeat_deadtime",
    "wd_heartbeat_keepalive",
    "wd_heartbeat_listen_addresses",
    "wd_heartbeat_listen_port",
    "wd_interval",
    "wd_ipc_socket_dir",
    "wd_life_point",
    "wd_lifecheck_dbname",
    "wd_lifecheck_method",
    "wd_lifecheck_password",
    "wd_lifecheck_query",
    "wd_lifecheck_user",
    "wd_listen_address",
    "wd_listen_port",
    "wd_lost_node_removal_timeout",
    "wd_monitoring_interfaces_list",
    "wd_no_show_node_removal_timeout",
    "wd_priority",
    "wd_remove_shutdown_nodes",
    "write_function_list",
];

/// Pgpool-II settings numbered per watchdog member, also unused.
const PGPOOL_UNUSED_NUMBERED: &[&str] = &[
    "heartbeat_device",
    "heartbeat_hostname",
    "heartbeat_port",
    "hostname",
    "pgpool_port",
    "wd_port",
];

/// `name` split into a base and a trailing number (`backend_port12` → `("backend_port", 12)`).
fn split_index(name: &str) -> Option<(&str, usize)> {
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits == name.len() || digits > 3 {
        return None;
    }
    let (base, n) = name.split_at(name.len() - digits);
    Some((base, n.parse().ok()?))
}

/// One entry's name, as the manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot<'a> {
    /// A backend's own setting.
    Backend(&'a str, usize),
    /// A health-check setting for every node.
    Shared(&'a str),
    /// A global setting.
    Global(&'a str),
    /// Known to Pgpool-II, not used here.
    Unused,
}

fn classify(name: &str) -> Option<Slot<'_>> {
    if let Some((base, n)) = split_index(name) {
        if PER_BACKEND.contains(&base) || PER_NODE_OR_SHARED.contains(&base) {
            return Some(Slot::Backend(base, n));
        }
        if PGPOOL_UNUSED_NUMBERED.contains(&base) {
            return Some(Slot::Unused);
        }
    }
    if PER_NODE_OR_SHARED.contains(&name) {
        Some(Slot::Shared(name))
    } else if GLOBAL.contains(&name) {
        Some(Slot::Global(name))
    } else if PGPOOL_UNUSED.contains(&name) {
        Some(Slot::Unused)
    } else {
        None
    }
}

/// Reads and checks `path`.
///
/// # Errors
/// [`ConfigError`] for the first problem, naming the file and line.
pub fn read(path: &Path) -> Result<Config, ConfigError> {
    let entries = conf::read(path)?;
    from_entries(path, &entries)
}

/// Values by name, the last one written winning (as PostgreSQL's).
#[derive(Default)]
struct Given<'a> {
    entries: Vec<(String, &'a ConfEntry)>,
}

impl<'a> Given<'a> {
    fn set(&mut self, key: String, entry: &'a ConfEntry) {
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, entry));
    }

    fn get(&self, key: &str) -> Option<&'a ConfEntry> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, e)| *e)
    }
}

fn invalid(e: &ConfEntry) -> ConfigError {
    ConfigError::InvalidValue {
        name: e.name.clone(),
        value: e.value.clone(),
        file: e.file.clone(),
        line: e.line,
    }
}

fn int(e: &ConfEntry, min: i64, max: i64) -> Result<i64, ConfigError> {
    let v: i64 = e.value.trim().parse().map_err(|_| invalid(e))?;
    if v < min || v > max {
        return Err(ConfigError::OutOfRange {
            name: e.name.clone(),
            value: v,
            min,
            max,
            file: e.file.clone(),
            line: e.line,
        });
    }
    Ok(v)
}

fn seconds(e: Option<&ConfEntry>, default: u64) -> Result<Duration, ConfigError> {
    match e {
        None => Ok(Duration::from_secs(default)),
        Some(e) => Ok(Duration::from_secs(int(e, 0, i64::from(i32::MAX))?.unsigned_abs())),
    }
}

fn string(e: Option<&ConfEntry>, default: &str) -> String {
    e.map_or_else(|| default.to_string(), |e| e.value.clone())
}

/// Builds a [`Config`] from parsed entries (the file's lines in order).
///
/// # Errors
/// [`ConfigError`] for an unknown name, a bad value or a backend without a host name.
pub fn from_entries(path: &Path, entries: &[ConfEntry]) -> Result<Config, ConfigError> {
    let mut given = Given::default();
    let mut warnings = Vec::new();
    let mut ids: Vec<(usize, &ConfEntry)> = Vec::new();
    for e in entries {
        let name = e.name.to_ascii_lowercase();
        match classify(&name) {
            None => {
                return Err(ConfigError::Unrecognized {
                    name: e.name.clone(),
                    file: e.file.clone(),
                    line: e.line,
                })
            }
            Some(Slot::Unused) => warnings.push(format!(
                "parameter \"{}\" is not used by walstream failover and is ignored (file \"{}\" line {})",
                e.name,
                e.file.display(),
                e.line
            )),
            Some(Slot::Backend(_, n)) => {
                ids.push((n, e));
                given.set(name.clone(), e);
            }
            Some(Slot::Shared(_) | Slot::Global(_)) => given.set(name.clone(), e),
        }
    }
    let mut backends = Vec::new();
    for &(id, e) in &ids {
        if given.get(&format!("backend_hostname{id}")).is_none_or(|h| h.value.is_empty()) {
            return Err(ConfigError::NoHostname {
                id,
                name: e.name.clone(),
                file: e.file.clone(),
                line: e.line,
            });
        }
    }
    let mut seen: Vec<usize> = ids.iter().map(|(id, _)| *id).collect();
    seen.sort_unstable();
    seen.dedup();
    for id in seen {
        backends.push(backend(&given, id)?);
    }
    if backends.is_empty() {
        return Err(ConfigError::NoBackends(path.to_path_buf()));
    }
    let sr_check = SrCheck {
        period: seconds(given.get("sr_check_period"), 10)?,
        user: string(given.get("sr_check_user"), ""),
        password: string(given.get("sr_check_password"), ""),
        database: string(given.get("sr_check_database"), "postgres"),
    };
    let delay_threshold = match given.get("delay_threshold") {
        None => 0,
        Some(e) => int(e, 0, i64::MAX)?.unsigned_abs(),
    };
    let failover_on_backend_error = match given.get("failover_on_backend_error") {
        None => true,
        Some(e) => parse_bool(&e.value).ok_or_else(|| invalid(e))?,
    };
    let work_dir = given
        .get("work_dir")
        .or_else(|| given.get("logdir"))
        .map_or_else(|| PathBuf::from("/tmp"), |e| PathBuf::from(&e.value));
    Ok(Config {
        path: path.to_path_buf(),
        backends,
        sr_check,
        delay_threshold,
        failover_command: string(given.get("failover_command"), ""),
        follow_primary_command: string(given.get("follow_primary_command"), ""),
        search_primary_node_timeout: seconds(given.get("search_primary_node_timeout"), 300)?,
        failover_on_backend_error,
        work_dir,
        warnings,
    })
}

fn backend(given: &Given<'_>, id: usize) -> Result<Backend, ConfigError> {
    let own = |base: &str| given.get(&format!("{base}{id}"));
    let either = |base: &str| own(base).or_else(|| given.get(base));
    let port = match own("backend_port") {
        None => 5432,
        Some(e) => u16::try_from(int(e, 1024, 65535)?).map_err(|_| invalid(e))?,
    };
    let weight = match own("backend_weight") {
        None => 1.0,
        Some(e) => match e.value.trim().parse::<f64>() {
            Ok(w) if w.is_finite() && w >= 0.0 => w,
            _ => return Err(invalid(e)),
        },
    };
    let flag = match own("backend_flag") {
        None => BackendFlag::AllowToFailover,
        Some(e) => parse_flag(&e.value).ok_or_else(|| invalid(e))?,
    };
    let max_retries = match either("health_check_max_retries") {
        None => 0,
        Some(e) => u32::try_from(int(e, 0, i64::from(i32::MAX))?).map_err(|_| invalid(e))?,
    };
    let connect_timeout = match either("connect_timeout") {
        None => Duration::from_millis(10_000),
        Some(e) => Duration::from_millis(int(e, 0, i64::from(i32::MAX))?.unsigned_abs()),
    };
    Ok(Backend {
        id,
        host: string(own("backend_hostname"), ""),
        port,
        weight,
        data_directory: string(own("backend_data_directory"), ""),
        application_name: string(own("backend_application_name"), ""),
        flag,
        health: HealthCheck {
            period: seconds(either("health_check_period"), 0)?,
            timeout: seconds(either("health_check_timeout"), 20)?,
            max_retries,
            retry_delay: seconds(either("health_check_retry_delay"), 1)?,
            connect_timeout,
            user: string(either("health_check_user"), ""),
            password: string(either("health_check_password"), ""),
            database: string(either("health_check_database"), "postgres"),
        },
    })
}

/// `backend_flag`: flags joined by `|`; `ALWAYS_PRIMARY` is accepted (the manager then never
/// detaches the node either).
fn parse_flag(value: &str) -> Option<BackendFlag> {
    let mut flag = BackendFlag::AllowToFailover;
    for part in value.split('|') {
        match part.trim().to_ascii_uppercase().as_str() {
            "ALLOW_TO_FAILOVER" => {}
            "DISALLOW_TO_FAILOVER" | "ALWAYS_PRIMARY" => flag = BackendFlag::DisallowToFailover,
            _ => return None,
        }
    }
    Some(flag)
}

impl Config {
    /// The status file's path.
    pub fn status_path(&self) -> PathBuf {
        self.work_dir.join(STATUS_FILE)
    }
}

/// Fuzz entry (`fuzz/fuzz_targets/failover_config.rs`): any bytes, read as a `pgpool.conf`, give a configuration or an error, never
/// a panic.
// Called by the fuzz target and the corpus replay test only.
#[cfg_attr(not(test), allow(dead_code))]
pub fn fuzz_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.conf");
    if let Ok(entries) = conf::parse(&text, path) {
        if let Ok(config) = from_entries(path, &entries) {
            let _ = config.status_path();
        }
    }
}

#[cfg(test)]
mod tests;
