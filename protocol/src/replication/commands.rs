//! The replication commands as values, shaped like PostgreSQL 15's `nodes/replnodes.h`,
//! and their canonical text (what a PostgreSQL 15 client sends).

use std::fmt;

use super::scanner::Keyword;
use super::syntax::{is_simple_ident, quote_ident, quote_literal};
use crate::{Lsn, TimeLineId};

/// A parsed replication command (`replnodes.h` node types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationCommand {
    /// `IDENTIFY_SYSTEM` (`IdentifySystemCmd`).
    IdentifySystem,
    /// `BASE_BACKUP [ ( option [value] [, ...] ) ]` (`BaseBackupCmd`).
    BaseBackup {
        /// The options, unchecked; see [`parse_base_backup_options`](super::parse_base_backup_options).
        options: Vec<GenericOption>,
    },
    /// `CREATE_REPLICATION_SLOT name [TEMPORARY] {PHYSICAL | LOGICAL plugin} [options]`
    /// (`CreateReplicationSlotCmd`).
    CreateReplicationSlot {
        /// The slot name.
        slot_name: String,
        /// `TEMPORARY`.
        temporary: bool,
        /// Physical, or logical with its output plugin.
        kind: SlotKind,
        /// The options, legacy ones mapped as `repl_gram.y` maps them; unchecked, see
        /// [`parse_create_slot_options`](super::parse_create_slot_options).
        options: Vec<GenericOption>,
    },
    /// `DROP_REPLICATION_SLOT name [WAIT]` (`DropReplicationSlotCmd`).
    DropReplicationSlot {
        /// The slot name.
        slot_name: String,
        /// `WAIT`.
        wait: bool,
    },
    /// `START_REPLICATION [SLOT name] [PHYSICAL] X/X [TIMELINE n]` or
    /// `START_REPLICATION SLOT name LOGICAL X/X [(options)]` (`StartReplicationCmd`).
    StartReplication {
        /// Physical or logical.
        kind: ReplicationKind,
        /// The slot (always present for logical).
        slot_name: Option<String>,
        /// `TIMELINE n` (physical only; never 0).
        timeline: Option<TimeLineId>,
        /// The start position.
        start: Lsn,
        /// The output plugin's options (logical only; values are strings or absent).
        options: Vec<GenericOption>,
    },
    /// `READ_REPLICATION_SLOT name` (`ReadReplicationSlotCmd`).
    ReadReplicationSlot {
        /// The slot name (a dotted `var_name` is accepted and kept with its dots).
        slot_name: String,
    },
    /// `TIMELINE_HISTORY n` (`TimeLineHistoryCmd`); never timeline 0.
    TimelineHistory {
        /// The timeline whose history file is asked for.
        tli: TimeLineId,
    },
    /// `SHOW name` (`VariableShowStmt`); `name` may be dotted (`a.b`).
    Show {
        /// The parameter name.
        name: String,
    },
}

/// The kind of slot `CREATE_REPLICATION_SLOT` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    /// `PHYSICAL`.
    Physical,
    /// `LOGICAL plugin`.
    Logical {
        /// The output plugin.
        plugin: String,
    },
}

/// Physical or logical replication (`ReplicationKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationKind {
    /// `REPLICATION_KIND_PHYSICAL`.
    Physical,
    /// `REPLICATION_KIND_LOGICAL`.
    Logical,
}

/// One option: a `DefElem` with its name folded to lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericOption {
    /// The option name (`defname`).
    pub name: String,
    /// The value (`arg`), absent for a bare option such as `PROGRESS`.
    pub value: Option<OptionValue>,
}

/// The value of an option (`DefElem.arg`). PostgreSQL makes a `String` node of both an
/// identifier and a quoted string; the two are kept apart here only to print them back
/// as they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    /// An identifier (`IDENT`, folded unless quoted).
    Ident(String),
    /// A single-quoted string (`SCONST`).
    Str(String),
    /// An unsigned integer (`UCONST`).
    Int(u32),
}

impl GenericOption {
    /// An option with no value.
    pub fn flag(name: &str) -> Self {
        GenericOption { name: name.to_string(), value: None }
    }

    /// An option with a string value.
    pub fn string(name: &str, value: &str) -> Self {
        GenericOption { name: name.to_string(), value: Some(OptionValue::Str(value.to_string())) }
    }

    /// An option with an integer value.
    pub fn int(name: &str, value: u32) -> Self {
        GenericOption { name: name.to_string(), value: Some(OptionValue::Int(value)) }
    }
}

impl OptionValue {
    /// The value as the `Integer` node holds it: `makeInteger((int) uint32)`, so numbers
    /// above `i32::MAX` wrap to negative, as in PostgreSQL.
    pub fn as_pg_int(&self) -> Option<i32> {
        match self {
            OptionValue::Int(n) => Some(*n as i32),
            _ => None,
        }
    }
}

impl ReplicationCommand {
    /// The CommandComplete tag PostgreSQL sends for this command.
    pub fn tag(&self) -> &'static str {
        match self {
            ReplicationCommand::IdentifySystem => "IDENTIFY_SYSTEM",
            ReplicationCommand::BaseBackup { .. } => "BASE_BACKUP",
            ReplicationCommand::CreateReplicationSlot { .. } => "CREATE_REPLICATION_SLOT",
            ReplicationCommand::DropReplicationSlot { .. } => "DROP_REPLICATION_SLOT",
            ReplicationCommand::StartReplication { .. } => "START_REPLICATION",
            ReplicationCommand::ReadReplicationSlot { .. } => "READ_REPLICATION_SLOT",
            ReplicationCommand::TimelineHistory { .. } => "TIMELINE_HISTORY",
            ReplicationCommand::Show { .. } => "SHOW",
        }
    }
}

/// A slot name as clients write it: always double-quoted.
fn slot(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A dotted `var_name`: each part quoted as needed.
fn var_name(name: &str) -> String {
    name.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
}

/// An option name: upper case when that reads back as the same name (a keyword that
/// `ident_or_keyword` accepts, or an identifier that folds back), else quoted.
fn option_name(name: &str) -> String {
    if !is_simple_ident(name) {
        return quote_ident(name);
    }
    let upper = name.to_ascii_uppercase();
    match Keyword::from_word(&upper) {
        Some(k) if !k.is_option_name() => name.to_string(),
        _ => upper,
    }
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Ident(s) => f.write_str(&quote_ident(s)),
            OptionValue::Str(s) => f.write_str(&quote_literal(s)),
            OptionValue::Int(n) => write!(f, "{n}"),
        }
    }
}

fn write_options(f: &mut fmt::Formatter<'_>, options: &[GenericOption]) -> fmt::Result {
    if options.is_empty() {
        return Ok(());
    }
    f.write_str(" (")?;
    for (i, o) in options.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(&option_name(&o.name))?;
        if let Some(v) = &o.value {
            write!(f, " {v}")?;
        }
    }
    f.write_str(")")
}

/// Plugin options: `name ['value']`, names as identifiers and values always strings,
/// as `plugin_opt_elem` requires.
fn write_plugin_options(f: &mut fmt::Formatter<'_>, options: &[GenericOption]) -> fmt::Result {
    if options.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = options
        .iter()
        .map(|o| match &o.value {
            None => quote_ident(&o.name),
            Some(OptionValue::Str(s) | OptionValue::Ident(s)) => {
                format!("{} {}", quote_ident(&o.name), quote_literal(s))
            }
            Some(OptionValue::Int(n)) => {
                format!("{} {}", quote_ident(&o.name), quote_literal(&n.to_string()))
            }
        })
        .collect();
    write!(f, " ({})", parts.join(", "))
}

fn write_start(
    f: &mut fmt::Formatter<'_>,
    kind: ReplicationKind,
    slot_name: Option<&str>,
    timeline: Option<TimeLineId>,
    start: Lsn,
    options: &[GenericOption],
) -> fmt::Result {
    f.write_str("START_REPLICATION")?;
    if let Some(s) = slot_name {
        write!(f, " SLOT {}", slot(s))?;
    }
    match kind {
        ReplicationKind::Physical => {
            write!(f, " PHYSICAL {start}")?;
            if let Some(tli) = timeline {
                write!(f, " TIMELINE {tli}")?;
            }
            Ok(())
        }
        ReplicationKind::Logical => {
            write!(f, " LOGICAL {start}")?;
            write_plugin_options(f, options)
        }
    }
}

impl fmt::Display for ReplicationCommand {
    /// The canonical PostgreSQL 15 text: `parse_command(&cmd.to_string()) == Ok(cmd)` for
    /// every command the parser can produce whose names hold no `"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicationCommand::IdentifySystem => f.write_str("IDENTIFY_SYSTEM"),
            ReplicationCommand::BaseBackup { options } => {
                f.write_str("BASE_BACKUP")?;
                write_options(f, options)
            }
            ReplicationCommand::CreateReplicationSlot { slot_name, temporary, kind, options } => {
                write!(f, "CREATE_REPLICATION_SLOT {}", slot(slot_name))?;
                if *temporary {
                    f.write_str(" TEMPORARY")?;
                }
                match kind {
                    SlotKind::Physical => f.write_str(" PHYSICAL")?,
                    SlotKind::Logical { plugin } => write!(f, " LOGICAL {}", quote_ident(plugin))?,
                }
                write_options(f, options)
            }
            ReplicationCommand::DropReplicationSlot { slot_name, wait } => {
                write!(f, "DROP_REPLICATION_SLOT {}", slot(slot_name))?;
                if *wait {
                    f.write_str(" WAIT")?;
                }
                Ok(())
            }
            ReplicationCommand::StartReplication { kind, slot_name, timeline, start, options } => {
                write_start(f, *kind, slot_name.as_deref(), *timeline, *start, options)
            }
            ReplicationCommand::ReadReplicationSlot { slot_name } => {
                write!(f, "READ_REPLICATION_SLOT {}", var_name(slot_name))
            }
            ReplicationCommand::TimelineHistory { tli } => write!(f, "TIMELINE_HISTORY {tli}"),
            ReplicationCommand::Show { name } => write!(f, "SHOW {}", var_name(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text() {
        let cmd = ReplicationCommand::StartReplication {
            kind: ReplicationKind::Physical,
            slot_name: Some("s".into()),
            timeline: Some(TimeLineId(1)),
            start: Lsn(0x300_0000),
            options: vec![],
        };
        assert_eq!(cmd.to_string(), "START_REPLICATION SLOT \"s\" PHYSICAL 0/3000000 TIMELINE 1");
        let cmd = ReplicationCommand::CreateReplicationSlot {
            slot_name: "x".into(),
            temporary: true,
            kind: SlotKind::Physical,
            options: vec![GenericOption::flag("reserve_wal")],
        };
        assert_eq!(
            cmd.to_string(),
            "CREATE_REPLICATION_SLOT \"x\" TEMPORARY PHYSICAL (RESERVE_WAL)"
        );
        let cmd = ReplicationCommand::BaseBackup {
            options: vec![
                GenericOption::string("label", "it's"),
                GenericOption::flag("progress"),
                GenericOption::int("wait", 0),
                GenericOption::flag("read_replication_slot"),
                GenericOption::flag("Odd Name"),
            ],
        };
        assert_eq!(
            cmd.to_string(),
            "BASE_BACKUP (LABEL 'it''s', PROGRESS, WAIT 0, read_replication_slot, \"Odd Name\")"
        );
        assert_eq!(ReplicationCommand::Show { name: "A.b".into() }.to_string(), "SHOW \"A\".b");
        assert_eq!(ReplicationCommand::BaseBackup { options: vec![] }.to_string(), "BASE_BACKUP");
        assert_eq!(ReplicationCommand::BaseBackup { options: vec![] }.tag(), "BASE_BACKUP");
        assert_eq!(OptionValue::Int(u32::MAX).as_pg_int(), Some(-1));
    }
}
