//! The node's server settings by PostgreSQL's GUC names, defaults, units and contexts
//! (`utils/misc/guc.c`), read from the data directory's configuration files and `-c`.
//!
//! The settings the sender already knows (connections, walsenders, slots, timeouts, WAL
//! retention) are kept in its [`Settings`]; the node's own are in a table here. Values are
//! kept in their canonical text (`on`, `200ms`) and read back typed.

use std::collections::BTreeMap;
use std::time::Duration;

use walstream_sender::config::{
    checked_range, format_int, parse_int, SettingError, Settings, Unit,
};

use walstream_sender::syncrep::SyncRepConfig;

use crate::conf::ConfEntry;

/// When a setting may change (`GucContext`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Fixed when the cluster was made (`wal_segment_size`).
    Internal,
    /// At server start only.
    Postmaster,
    /// In the configuration files; a reload applies it.
    Sighup,
    /// Anywhere, per session too.
    User,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int {
        unit: Unit,
        min: i64,
        max: i64,
    },
    /// Accepted spellings and the canonical one each maps to.
    Enum(&'static [(&'static str, &'static str)]),
    Str,
    /// `synchronous_standby_names`, checked as `check_synchronous_standby_names` does.
    SyncStandbyNames,
}

#[derive(Debug, Clone, Copy)]
struct Def {
    name: &'static str,
    kind: Kind,
    context: Context,
    default: &'static str,
}

const INT_MAX: i64 = i32::MAX as i64;

/// `synchronous_commit`'s spellings (`guc.c: synchronous_commit_options`).
const SYNC_COMMIT: &[(&str, &str)] = &[
    ("local", "local"),
    ("remote_write", "remote_write"),
    ("remote_apply", "remote_apply"),
    ("on", "on"),
    ("off", "off"),
    ("true", "on"),
    ("false", "off"),
    ("yes", "on"),
    ("no", "off"),
    ("1", "on"),
    ("0", "off"),
];

/// The node's own settings, with PostgreSQL 15's defaults.
const DEFS: &[Def] = &[
    Def {
        name: "listen_addresses",
        kind: Kind::Str,
        context: Context::Postmaster,
        default: "localhost",
    },
    Def {
        name: "port",
        kind: Kind::Int { unit: Unit::None, min: 1, max: 65535 },
        context: Context::Postmaster,
        default: "5432",
    },
    Def {
        name: "synchronous_commit",
        kind: Kind::Enum(SYNC_COMMIT),
        context: Context::User,
        default: "on",
    },
    Def { name: "fsync", kind: Kind::Bool, context: Context::Sighup, default: "on" },
    Def { name: "wal_segment_size", kind: Kind::Str, context: Context::Internal, default: "16MB" },
    Def {
        name: "wal_writer_delay",
        kind: Kind::Int { unit: Unit::Ms, min: 1, max: 10_000 },
        context: Context::Sighup,
        default: "200",
    },
    Def {
        name: "min_wal_size",
        kind: Kind::Int { unit: Unit::Mb, min: 2, max: INT_MAX },
        context: Context::Sighup,
        default: "80",
    },
    Def { name: "hot_standby", kind: Kind::Bool, context: Context::Postmaster, default: "on" },
    Def { name: "primary_conninfo", kind: Kind::Str, context: Context::Sighup, default: "" },
    Def { name: "primary_slot_name", kind: Kind::Str, context: Context::Sighup, default: "" },
    Def {
        name: "recovery_target_timeline",
        kind: Kind::Str,
        context: Context::Postmaster,
        default: "latest",
    },
    Def {
        name: "wal_receiver_status_interval",
        kind: Kind::Int { unit: Unit::S, min: 0, max: INT_MAX / 1000 },
        context: Context::Sighup,
        default: "10",
    },
    Def {
        name: "wal_receiver_timeout",
        kind: Kind::Int { unit: Unit::Ms, min: 0, max: INT_MAX },
        context: Context::Sighup,
        default: "60000",
    },
    Def {
        name: "wal_retrieve_retry_interval",
        kind: Kind::Int { unit: Unit::Ms, min: 1, max: INT_MAX },
        context: Context::Sighup,
        default: "5000",
    },
    Def {
        name: "hot_standby_feedback",
        kind: Kind::Bool,
        context: Context::Sighup,
        default: "off",
    },
    Def {
        name: "synchronous_standby_names",
        kind: Kind::SyncStandbyNames,
        context: Context::Sighup,
        default: "",
    },
    Def {
        name: "max_standby_streaming_delay",
        kind: Kind::Int { unit: Unit::Ms, min: -1, max: INT_MAX },
        context: Context::Sighup,
        default: "30000",
    },
    Def {
        name: "statement_timeout",
        kind: Kind::Int { unit: Unit::Ms, min: 0, max: INT_MAX },
        context: Context::User,
        default: "0",
    },
    Def {
        name: "lock_timeout",
        kind: Kind::Int { unit: Unit::Ms, min: 0, max: INT_MAX },
        context: Context::User,
        default: "0",
    },
    Def {
        name: "idle_in_transaction_session_timeout",
        kind: Kind::Int { unit: Unit::Ms, min: 0, max: INT_MAX },
        context: Context::User,
        default: "0",
    },
];

/// Settings the sender keeps, and the node's default where it differs from `serve`'s.
const SENDER_NAMES: &[(&str, Option<&str>)] = &[
    ("max_connections", None),
    ("superuser_reserved_connections", None),
    ("max_wal_senders", None),
    ("max_replication_slots", None),
    ("wal_sender_timeout", None),
    ("wal_keep_size", None),
    ("max_slot_wal_keep_size", None),
    // A node owns its pg_wal: PostgreSQL's 1GB, not serve's "keep everything".
    ("max_wal_size", Some("1GB")),
    ("checkpoint_timeout", None),
    ("authentication_timeout", None),
    ("cluster_name", None),
    ("walstream.max_send_size", None),
    ("ssl", None),
    ("ssl_cert_file", None),
    ("ssl_key_file", None),
    ("ssl_ca_file", None),
    ("ssl_min_protocol_version", None),
];

/// A configuration file entry that could not be applied, as the postmaster logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} in file \"{file}\" line {line}")]
pub struct EntryError {
    /// The setting's error (`unrecognized configuration parameter "x"`, ...).
    pub message: String,
    /// The file.
    pub file: String,
    /// The line.
    pub line: u32,
}

/// The node's settings.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    values: BTreeMap<&'static str, String>,
    sender: Settings,
}

impl Default for NodeSettings {
    fn default() -> Self {
        let mut s = NodeSettings { values: BTreeMap::new(), sender: Settings::default() };
        for def in DEFS {
            let v = canonical(def, def.default).unwrap_or_else(|_| def.default.to_string());
            s.values.insert(def.name, v);
        }
        for (name, default) in SENDER_NAMES {
            if let Some(v) = default {
                // The defaults are valid values.
                let _ = s.sender.set(name, v);
            }
        }
        s
    }
}

/// A value in the canonical form `SHOW` prints (`guc.c: parse_and_validate_value`,
/// `ShowGUCOption`).
fn canonical(def: &Def, value: &str) -> Result<String, SettingError> {
    match def.kind {
        Kind::Bool => parse_bool(value)
            .map(|b| if b { "on" } else { "off" }.to_string())
            .ok_or_else(|| SettingError::invalid(def.name, value, None)),
        Kind::Int { unit, min, max } => {
            let v = checked_range(def.name, parse_int(def.name, value, unit)?, min, max)?;
            Ok(format_int(v, unit))
        }
        Kind::Enum(options) => options
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(value.trim()))
            .map(|(_, c)| c.to_string())
            .ok_or_else(|| {
                let mut seen: Vec<&str> = Vec::new();
                for (_, c) in options {
                    if !seen.contains(c) {
                        seen.push(c);
                    }
                }
                let hint = format!("Available values: {}.", seen.join(", "));
                SettingError::invalid(def.name, value, Some(&hint))
            }),
        Kind::Str => Ok(value.to_string()),
        Kind::SyncStandbyNames => match SyncRepConfig::parse(value) {
            Ok(_) => Ok(value.to_string()),
            Err(e) => Err(SettingError { fields: e.fields() }),
        },
    }
}

/// `guc.c: parse_bool`, as the sender reads its own boolean settings.
pub use walstream_sender::config::parse_bool;

fn def_of(name: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

fn is_sender_name(name: &str) -> bool {
    SENDER_NAMES.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

impl NodeSettings {
    /// The settings of configuration file entries in order (later ones win), then `-c`
    /// overrides.
    ///
    /// # Errors
    /// Every entry that could not be applied (PostgreSQL logs each, then refuses to start:
    /// `configuration file "..." contains errors`); an invalid `-c` value.
    pub fn load(
        entries: &[ConfEntry],
        overrides: &[(String, String)],
    ) -> Result<NodeSettings, Vec<EntryError>> {
        let mut s = NodeSettings::default();
        let mut errors = Vec::new();
        for e in entries {
            if let Err(err) = s.set(&e.name, &e.value) {
                errors.push(EntryError {
                    message: err.fields.message,
                    file: e.file.display().to_string(),
                    line: e.line,
                });
            }
        }
        for (name, value) in overrides {
            if let Err(err) = s.set(name, value) {
                errors.push(EntryError {
                    message: err.fields.message,
                    file: "command line".to_string(),
                    line: 0,
                });
            }
        }
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(errors)
        }
    }

    /// Sets `name` to `value`.
    ///
    /// # Errors
    /// `42704` for an unknown name, `22023` for a bad value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        if let Some(def) = def_of(name) {
            let v = canonical(def, value)?;
            self.values.insert(def.name, v);
            return Ok(());
        }
        if is_sender_name(name) {
            return self.sender.set(name, value);
        }
        Err(SettingError::unrecognized(name))
    }

    /// Every setting name the node knows, as PostgreSQL spells it.
    pub fn names() -> impl Iterator<Item = &'static str> {
        DEFS.iter().map(|d| d.name).chain(SENDER_NAMES.iter().map(|(n, _)| *n))
    }

    /// `name` as PostgreSQL spells it (`timezone` is `TimeZone`); `None` if unknown.
    pub fn canonical_name(name: &str) -> Option<&'static str> {
        Self::names().find(|n| n.eq_ignore_ascii_case(name))
    }

    /// When `name` may change; `None` for a name the node does not know.
    pub fn context(name: &str) -> Option<Context> {
        if let Some(def) = def_of(name) {
            return Some(def.context);
        }
        let postmaster = ["max_connections", "superuser_reserved_connections", "max_wal_senders"];
        if postmaster.iter().any(|n| n.eq_ignore_ascii_case(name))
            || name.eq_ignore_ascii_case("max_replication_slots")
        {
            return Some(Context::Postmaster);
        }
        is_sender_name(name).then_some(Context::Sighup)
    }

    /// What `SHOW name` prints; `None` for an unknown name.
    pub fn show(&self, name: &str) -> Option<String> {
        match def_of(name) {
            Some(def) => self.values.get(def.name).cloned(),
            None => self.sender.show(name),
        }
    }

    /// `wal_segment_size`, fixed by the cluster's control file.
    pub fn set_wal_segment_size(&mut self, seg_size: walstream_protocol::WalSegSize) {
        self.values.insert("wal_segment_size", seg_size.show());
    }

    /// The sender's part (connections, walsenders, slots, timeouts, retention).
    pub fn sender(&self) -> &Settings {
        &self.sender
    }

    fn raw(&self, name: &'static str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// A boolean setting of the node's table.
    pub fn bool(&self, name: &'static str) -> bool {
        parse_bool(self.raw(name)).unwrap_or(false)
    }

    /// An integer setting of the node's table, in its base unit.
    pub fn int(&self, name: &'static str) -> i64 {
        let unit = match def_of(name).map(|d| d.kind) {
            Some(Kind::Int { unit, .. }) => unit,
            _ => Unit::None,
        };
        parse_int(name, self.raw(name), unit).unwrap_or(0)
    }

    /// A duration setting of the node's table (base unit ms or s).
    pub fn duration(&self, name: &'static str) -> Duration {
        let v = u64::try_from(self.int(name)).unwrap_or(0);
        match def_of(name).map(|d| d.kind) {
            Some(Kind::Int { unit: Unit::S, .. }) => Duration::from_secs(v),
            _ => Duration::from_millis(v),
        }
    }

    /// A string or enum setting of the node's table.
    pub fn string(&self, name: &'static str) -> &str {
        self.raw(name)
    }
}

#[cfg(test)]
mod tests;
