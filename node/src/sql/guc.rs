//! A session's settings: its copy of the server's [`NodeSettings`] plus the per-session
//! parameters clients set (`application_name`, `DateStyle`, ...), for SET / SHOW / RESET
//! and `current_setting()`.

use std::collections::BTreeMap;

use walstream_protocol::wire::sqlstate;

use super::error::{err, SqlResult};
use crate::engine::SyncCommit;
use crate::settings::NodeSettings;

/// Session parameters the node keeps per session, with PostgreSQL 15's defaults.
const SESSION_DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("search_path", "\"$user\", public"),
    ("statement_timeout", "0"),
    ("lock_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("client_min_messages", "notice"),
    ("standard_conforming_strings", "on"),
    ("server_version", "15.0"),
    ("server_version_num", "150000"),
    ("server_encoding", "UTF8"),
    ("integer_datetimes", "on"),
    ("is_superuser", "on"),
    ("transaction_isolation", "read committed"),
    ("default_transaction_isolation", "read committed"),
    ("bytea_output", "hex"),
    ("row_security", "on"),
    ("work_mem", "4MB"),
    ("max_stack_depth", "2MB"),
];

/// Parameters that cannot be changed by SET (`guc.c`: PGC_INTERNAL).
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
];

/// A session's settings.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    initial: NodeSettings,
    node: NodeSettings,
    session: BTreeMap<&'static str, String>,
    /// Names this session SET itself: a reload of the files leaves them alone
    /// (`PGC_S_SESSION` outranks `PGC_S_FILE`).
    explicit: std::collections::BTreeSet<&'static str>,
}

fn session_name(name: &str) -> Option<&'static str> {
    SESSION_DEFAULTS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(n, _)| *n)
}

impl SessionSettings {
    /// The settings a session starts with.
    pub fn new(initial: NodeSettings, application_name: &str) -> SessionSettings {
        // A session setting the server's files set (statement_timeout = '5s' in
        // postgresql.conf) starts from the files' value.
        let mut session: BTreeMap<&'static str, String> = SESSION_DEFAULTS
            .iter()
            .map(|(n, v)| (*n, initial.show(n).unwrap_or_else(|| v.to_string())))
            .collect();
        session.insert("application_name", application_name.to_string());
        SessionSettings {
            node: initial.clone(),
            initial,
            session,
            explicit: std::collections::BTreeSet::new(),
        }
    }

    /// The server reloaded its files (`ProcessConfigFile` in every backend): what this
    /// session did not SET takes the new values.
    pub fn rebase(&mut self, files: NodeSettings) {
        for (n, default) in SESSION_DEFAULTS {
            if *n != "application_name" && !self.explicit.contains(n) {
                self.session.insert(n, files.show(n).unwrap_or_else(|| default.to_string()));
            }
        }
        let mut node = files.clone();
        for n in &self.explicit {
            if session_name(n).is_none() {
                if let Some(v) = self.node.show(n) {
                    let _ = node.set(n, &v);
                }
            }
        }
        self.node = node;
        self.initial = files;
    }

    /// The value of session setting `name` (one of SESSION_DEFAULTS, as spelled there),
    /// without copying it; `None` for other names.
    pub fn session_value(&self, name: &str) -> Option<&str> {
        self.session.get(name).map(String::as_str)
    }

    /// `SHOW name` / `current_setting(name)`.
    ///
    /// # Errors
    /// 42704 `unrecognized configuration parameter "x"`.
    pub fn show(&self, name: &str) -> SqlResult<String> {
        if let Some(n) = session_name(name) {
            return Ok(self.session.get(n).cloned().unwrap_or_default());
        }
        self.node.show(name).ok_or_else(|| unrecognized(name))
    }

    /// `SET name = value`.
    ///
    /// # Errors
    /// 42704 for an unknown name, 22023 for a bad value, 55P02 for a setting that cannot
    /// change now.
    pub fn set(&mut self, name: &str, value: &str) -> SqlResult<()> {
        if let Some(n) = session_name(name) {
            if READ_ONLY.contains(&n) {
                return Err(err(
                    "55P02",
                    format!("parameter \"{}\" cannot be changed", name.to_ascii_lowercase()),
                ));
            }
            self.session.insert(n, value.to_string());
            self.explicit.insert(n);
            return Ok(());
        }
        match NodeSettings::context(name) {
            None => return Err(unrecognized(name)),
            Some(crate::settings::Context::User) => {}
            Some(crate::settings::Context::Internal) => {
                return Err(err(
                    "55P02",
                    format!("parameter \"{}\" cannot be changed", name.to_ascii_lowercase()),
                ))
            }
            Some(crate::settings::Context::Sighup) => {
                return Err(err(
                    "55P02",
                    format!("parameter \"{}\" cannot be changed now", name.to_ascii_lowercase()),
                ))
            }
            Some(_) => {
                return Err(err(
                    "55P02",
                    format!(
                        "parameter \"{}\" cannot be changed without restarting the server",
                        name.to_ascii_lowercase()
                    ),
                ))
            }
        }
        self.node.set(name, value).map_err(|e| e.fields)?;
        if let Some(n) = NodeSettings::canonical_name(name) {
            self.explicit.insert(n);
        }
        Ok(())
    }

    /// `RESET name`.
    ///
    /// # Errors
    /// As [`SessionSettings::set`].
    pub fn reset(&mut self, name: &str) -> SqlResult<()> {
        if let Some(n) = session_name(name) {
            let d = SESSION_DEFAULTS.iter().find(|(k, _)| *k == n).map_or("", |(_, v)| v);
            self.session.insert(n, self.initial.show(n).unwrap_or_else(|| d.to_string()));
            self.explicit.remove(n);
            return Ok(());
        }
        let v = self.initial.show(name).ok_or_else(|| unrecognized(name))?;
        self.set(name, &v)?;
        if let Some(n) = NodeSettings::canonical_name(name) {
            self.explicit.remove(n);
        }
        Ok(())
    }

    /// `RESET ALL`.
    pub fn reset_all(&mut self) {
        let app = self.session.get("application_name").cloned().unwrap_or_default();
        *self = SessionSettings::new(self.initial.clone(), &app);
    }

    /// The session's `synchronous_commit`.
    pub fn sync_commit(&self) -> SyncCommit {
        SyncCommit::from_setting(self.node.string("synchronous_commit")).unwrap_or_default()
    }
}

fn unrecognized(name: &str) -> super::error::SqlError {
    err(
        sqlstate::UNDEFINED_OBJECT,
        format!("unrecognized configuration parameter \"{}\"", name.to_ascii_lowercase()),
    )
}
