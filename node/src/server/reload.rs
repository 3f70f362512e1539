//! Reloading the configuration files (`SIGHUP`, `pg_reload_conf()`;
//! `guc-file.l: ProcessConfigFile`): settings that may change without a restart take
//! their new values, each logged as PostgreSQL logs it; the others are logged as needing
//! a restart and keep their values.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::Notify;
use walstream_sender::registry::Registry;
use walstream_sender::syncrep::SyncRepConfig;

use crate::settings::{Context, NodeSettings};

/// What a reload reads and what it updates.
pub(crate) struct Reloader {
    pub(crate) dir: PathBuf,
    pub(crate) overrides: Vec<(String, String)>,
    /// The settings sessions start from.
    pub(crate) settings: Arc<RwLock<NodeSettings>>,
    pub(crate) registry: Arc<Registry>,
    /// The role now: a primary applies `synchronous_standby_names`, a standby keeps
    /// replication asynchronous and restarts its walreceiver for a new `primary_conninfo`.
    pub(crate) current: Arc<RwLock<super::context::Current>>,
    /// Takes `max_standby_streaming_delay`.
    pub(crate) engine: Arc<crate::engine::Engine>,
    /// Set to ask for a reload.
    pub(crate) requests: Arc<Notify>,
    /// Counts reloads, for sessions to notice.
    pub(crate) generation: Arc<std::sync::atomic::AtomicU64>,
}

/// One setting whose value the files changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Applied: `parameter "x" changed to "y"`.
    Applied { name: &'static str, value: String },
    /// Needs a restart: `parameter "x" cannot be changed without restarting the server`.
    NeedsRestart { name: &'static str },
}

/// The changes from `old` to `new`, by PostgreSQL's rules for a reload.
pub(crate) fn changes(old: &NodeSettings, new: &NodeSettings) -> Vec<Change> {
    NodeSettings::names()
        .filter_map(|name| {
            let (a, b) = (old.show(name), new.show(name));
            if a == b {
                return None;
            }
            Some(match NodeSettings::context(name) {
                // Fixed by the cluster (wal_segment_size): not the files' business.
                Some(Context::Internal) | None => return None,
                Some(Context::Sighup | Context::User) => {
                    Change::Applied { name, value: b.unwrap_or_default() }
                }
                _ => Change::NeedsRestart { name },
            })
        })
        .collect()
}

impl Reloader {
    /// Reloads once: reads the files and the `-c` overrides again and applies what may
    /// change now. Files with errors change nothing (logged).
    pub(crate) fn reload(&self) {
        tracing::info!("received SIGHUP, reloading configuration files");
        let entries = match crate::conf::read_data_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("{e}; no changes were applied");
                return;
            }
        };
        let mut new = match super::settings_of(&entries, &self.overrides) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}; no changes were applied");
                return;
            }
        };
        // guc-file.l logs a value as the files (or -c) wrote it.
        let written = |name: &str| {
            let files = entries.iter().map(|e| (e.name.as_str(), e.value.as_str()));
            let args = self.overrides.iter().map(|(n, v)| (n.as_str(), v.as_str()));
            files.chain(args).rfind(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
        };
        let mut current = self.settings.write();
        let mut applied = current.clone();
        let changed = changes(&current, &new);
        for change in &changed {
            match change {
                Change::Applied { name, value } => {
                    match written(name) {
                        Some(text) => tracing::info!("parameter \"{name}\" changed to \"{text}\""),
                        None => tracing::info!(
                            "parameter \"{name}\" removed from configuration file, reset to default"
                        ),
                    }
                    // Valid: it was just loaded.
                    let _ = applied.set(name, value);
                }
                Change::NeedsRestart { name } => {
                    tracing::info!(
                        "parameter \"{name}\" cannot be changed without restarting the server"
                    );
                }
            }
        }
        new = applied;
        *current = new;
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.engine.set_standby_delay(super::standby_delay(&current));
        let side = self.current.read().side.clone();
        if let super::context::Side::Primary { .. } = side {
            let names = current.string("synchronous_standby_names");
            self.registry.sync_rep().set_config(SyncRepConfig::parse(names).ok().flatten());
        }
        let conninfo_changed =
            changed.iter().any(|c| matches!(c, Change::Applied { name: "primary_conninfo", .. }));
        if let (super::context::Side::Standby { receiver: walreceiver }, true) =
            (&side, conninfo_changed)
        {
            match walstream_receiver::conninfo::ConnInfo::parse(current.string("primary_conninfo"))
            {
                Ok(info) => {
                    walreceiver.conninfo.send_replace(info);
                }
                Err(e) => tracing::warn!("invalid connection string syntax: {e}"),
            }
        }
    }

    /// Reloads at every request until the task is dropped.
    pub(crate) async fn run(self) {
        loop {
            self.requests.notified().await;
            self.reload();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_applies_sighup_settings_and_names_the_rest() {
        let old = NodeSettings::default();
        let mut new = old.clone();
        new.set("synchronous_standby_names", "s1").unwrap();
        new.set("max_connections", "7").unwrap();
        let c = changes(&old, &new);
        assert!(
            c.contains(&Change::Applied { name: "synchronous_standby_names", value: "s1".into() })
        );
        assert!(c.contains(&Change::NeedsRestart { name: "max_connections" }));
        assert_eq!(changes(&new, &new), Vec::new());
    }
}
