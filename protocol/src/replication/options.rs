//! The checks PostgreSQL 15 makes on command options when it runs a command (not when it
//! parses it): `walsender.c: parseCreateReplSlotOptions`,
//! `basebackup.c: parse_basebackup_options`, and the `commands/define.c` readers.

use super::commands::{GenericOption, OptionValue, SlotKind};
use crate::wire::sqlstate;

/// An option PostgreSQL 15 refuses when it runs the command, with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// `walsender.c: parseCreateReplSlotOptions`, a repeated option or one that does not
    /// belong to the slot's kind (42601).
    #[error("conflicting or redundant options")]
    ConflictingOrRedundant,
    /// `walsender.c: parseCreateReplSlotOptions` (an `elog`, so XX000).
    #[error("unrecognized option: {0}")]
    UnrecognizedSlotOption(String),
    /// A `snapshot` value other than export/nothing/use (22023).
    #[error("unrecognized value for CREATE_REPLICATION_SLOT option \"{name}\": \"{value}\"")]
    UnrecognizedSlotOptionValue {
        /// The option name.
        name: String,
        /// The value given.
        value: String,
    },
    /// `define.c: defGetBoolean` (42601).
    #[error("{0} requires a Boolean value")]
    RequiresBoolean(String),
    /// `define.c: defGetString` with no value (42601).
    #[error("{0} requires a parameter")]
    RequiresParameter(String),
    /// `define.c: defGetInt64` with no value or a string (42601).
    #[error("{0} requires a numeric value")]
    RequiresNumeric(String),
    /// `basebackup.c: parse_basebackup_options` (42601).
    #[error("unrecognized base backup option: \"{0}\"")]
    UnrecognizedBaseBackupOption(String),
    /// A base backup option given twice (42601).
    #[error("duplicate option \"{0}\"")]
    DuplicateOption(String),
    /// `CHECKPOINT` other than fast/spread (42601).
    #[error("unrecognized checkpoint type: \"{0}\"")]
    UnrecognizedCheckpoint(String),
    /// `MAX_RATE` outside 32 .. 1048576 kB/s (22003).
    #[error(
        "{0} is outside the valid range for parameter \"MAX_RATE\" ({MAX_RATE_LOWER} .. {MAX_RATE_UPPER})"
    )]
    MaxRateOutOfRange(i32),
    /// `MANIFEST` other than a Boolean or force-encode (42601).
    #[error("unrecognized manifest option: \"{0}\"")]
    UnrecognizedManifest(String),
    /// `MANIFEST_CHECKSUMS` naming no known algorithm (42601).
    #[error("unrecognized checksum algorithm: \"{0}\"")]
    UnrecognizedChecksum(String),
    /// `COMPRESSION` naming no known algorithm (42601; names are case-sensitive).
    #[error("unrecognized compression algorithm: \"{0}\"")]
    UnrecognizedCompression(String),
    /// `MANIFEST_CHECKSUMS` with no manifest (42601).
    #[error("manifest checksums require a backup manifest")]
    ManifestChecksumsWithoutManifest,
    /// `TARGET_DETAIL` without `TARGET` (42601).
    #[error("target detail cannot be used without target")]
    TargetDetailWithoutTarget,
    /// `TARGET_DETAIL` for client or blackhole (42601).
    #[error("target \"{0}\" does not accept a target detail")]
    TargetDoesNotAcceptDetail(String),
    /// `TARGET 'server'` with no detail (42601; `basebackup_target.c`).
    #[error("target \"{0}\" requires a target detail")]
    TargetRequiresDetail(String),
    /// An unknown target (0A000; `basebackup_target.c: BaseBackupGetTargetHandle`).
    #[error("unrecognized target: \"{0}\"")]
    UnrecognizedTarget(String),
    /// `COMPRESSION_DETAIL` without `COMPRESSION` (42601).
    #[error("compression detail cannot be specified unless compression is enabled")]
    CompressionDetailWithoutCompression,
}

impl OptionError {
    /// The SQLSTATE PostgreSQL reports.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            OptionError::UnrecognizedSlotOption(_) => sqlstate::INTERNAL_ERROR,
            OptionError::UnrecognizedSlotOptionValue { .. } => sqlstate::INVALID_PARAMETER_VALUE,
            OptionError::MaxRateOutOfRange(_) => sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
            OptionError::UnrecognizedTarget(_) => sqlstate::FEATURE_NOT_SUPPORTED,
            _ => sqlstate::SYNTAX_ERROR,
        }
    }
}

/// Lowest `MAX_RATE` in kB/s (`basebackup.h: MAX_RATE_LOWER`).
pub const MAX_RATE_LOWER: i32 = 32;
/// Highest `MAX_RATE` in kB/s (`basebackup.h: MAX_RATE_UPPER`).
pub const MAX_RATE_UPPER: i32 = 1_048_576;

/// `define.c: defGetString`: numbers print as `%ld` of the (signed) `Integer` node.
pub(crate) fn def_get_string(o: &GenericOption) -> Result<String, OptionError> {
    match &o.value {
        None => Err(OptionError::RequiresParameter(o.name.clone())),
        Some(OptionValue::Ident(s) | OptionValue::Str(s)) => Ok(s.clone()),
        Some(OptionValue::Int(n)) => Ok((*n as i32).to_string()),
    }
}

/// `define.c: defGetBoolean`: absent is true; 0/1; true/false/on/off in any case.
pub(crate) fn def_get_boolean(o: &GenericOption) -> Result<bool, OptionError> {
    let err = || OptionError::RequiresBoolean(o.name.clone());
    match &o.value {
        None => Ok(true),
        Some(OptionValue::Int(0)) => Ok(false),
        Some(OptionValue::Int(1)) => Ok(true),
        Some(OptionValue::Int(_)) => Err(err()),
        Some(OptionValue::Ident(s) | OptionValue::Str(s)) => {
            match s.to_ascii_lowercase().as_str() {
                "true" | "on" => Ok(true),
                "false" | "off" => Ok(false),
                _ => Err(err()),
            }
        }
    }
}

/// `define.c: defGetInt64`: only an integer will do.
pub(crate) fn def_get_int64(o: &GenericOption) -> Result<i64, OptionError> {
    o.value
        .as_ref()
        .and_then(OptionValue::as_pg_int)
        .map(i64::from)
        .ok_or_else(|| OptionError::RequiresNumeric(o.name.clone()))
}

/// `bool.c: parse_bool`: true/false/yes/no/on/off/1/0, any case, unique prefixes.
pub fn parse_bool(s: &str) -> Option<bool> {
    let lower = s.to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| lower.len() >= min && word.starts_with(&lower);
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || lower == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || lower == "0" {
        Some(false)
    } else {
        None
    }
}

/// What `CREATE_REPLICATION_SLOT` does about a snapshot (`CRSSnapshotAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// `export` (the default): export a snapshot.
    Export,
    /// `nothing`: no snapshot.
    NoExport,
    /// `use`: use the snapshot in the current transaction.
    Use,
}

/// The options of `CREATE_REPLICATION_SLOT`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateSlotOptions {
    /// `RESERVE_WAL` (physical only).
    pub reserve_wal: bool,
    /// `SNAPSHOT` (logical only).
    pub snapshot_action: SnapshotAction,
    /// `TWO_PHASE` (logical only).
    pub two_phase: bool,
}

fn snapshot_action(o: &GenericOption) -> Result<SnapshotAction, OptionError> {
    let action = def_get_string(o)?;
    match action.as_str() {
        "export" => Ok(SnapshotAction::Export),
        "nothing" => Ok(SnapshotAction::NoExport),
        "use" => Ok(SnapshotAction::Use),
        _ => Err(OptionError::UnrecognizedSlotOptionValue { name: o.name.clone(), value: action }),
    }
}

/// Checks the options of `CREATE_REPLICATION_SLOT` as the walsender does when it runs
/// the command (`walsender.c: parseCreateReplSlotOptions`).
///
/// # Errors
/// [`OptionError`]: `conflicting or redundant options` for a repeated option or one of
/// the other kind (`RESERVE_WAL` is physical, `SNAPSHOT`/`TWO_PHASE` logical),
/// `unrecognized option: %s`, and the value errors of `defGetString`/`defGetBoolean`.
pub fn parse_create_slot_options(
    kind: &SlotKind,
    options: &[GenericOption],
) -> Result<CreateSlotOptions, OptionError> {
    let logical = matches!(kind, SlotKind::Logical { .. });
    let mut out = CreateSlotOptions {
        reserve_wal: false,
        snapshot_action: SnapshotAction::Export,
        two_phase: false,
    };
    let (mut snapshot_given, mut reserve_given, mut two_phase_given) = (false, false, false);
    for o in options {
        match o.name.as_str() {
            "snapshot" => {
                if snapshot_given || !logical {
                    return Err(OptionError::ConflictingOrRedundant);
                }
                snapshot_given = true;
                out.snapshot_action = snapshot_action(o)?;
            }
            "reserve_wal" => {
                if reserve_given || logical {
                    return Err(OptionError::ConflictingOrRedundant);
                }
                reserve_given = true;
                out.reserve_wal = def_get_boolean(o)?;
            }
            "two_phase" => {
                if two_phase_given || !logical {
                    return Err(OptionError::ConflictingOrRedundant);
                }
                two_phase_given = true;
                out.two_phase = def_get_boolean(o)?;
            }
            other => return Err(OptionError::UnrecognizedSlotOption(other.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_slot_options_like_walsender() {
        let phys = SlotKind::Physical;
        let logical = SlotKind::Logical { plugin: "pgoutput".into() };
        let opts = parse_create_slot_options(&phys, &[GenericOption::flag("reserve_wal")]);
        assert!(opts.unwrap().reserve_wal);
        let off = [GenericOption::string("reserve_wal", "OFF")];
        assert!(!parse_create_slot_options(&phys, &off).unwrap().reserve_wal);
        let two = [GenericOption::int("reserve_wal", 2)];
        let e = parse_create_slot_options(&phys, &two).unwrap_err();
        assert_eq!(e.to_string(), "reserve_wal requires a Boolean value");
        let dup = [GenericOption::flag("reserve_wal"), GenericOption::flag("reserve_wal")];
        let e = parse_create_slot_options(&phys, &dup).unwrap_err();
        assert_eq!(
            (e.to_string().as_str(), e.sqlstate()),
            ("conflicting or redundant options", "42601")
        );
        let e = parse_create_slot_options(&phys, &[GenericOption::flag("two_phase")]).unwrap_err();
        assert_eq!(e, OptionError::ConflictingOrRedundant);
        let e = parse_create_slot_options(&phys, &[GenericOption::flag("foo")]).unwrap_err();
        assert_eq!((e.to_string().as_str(), e.sqlstate()), ("unrecognized option: foo", "XX000"));
        let bogus = [GenericOption::string("snapshot", "bogus")];
        let e = parse_create_slot_options(&logical, &bogus).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unrecognized value for CREATE_REPLICATION_SLOT option \"snapshot\": \"bogus\""
        );
        assert_eq!(e.sqlstate(), "22023");
        let e = parse_create_slot_options(&logical, &[GenericOption::flag("snapshot")]);
        assert_eq!(e.unwrap_err().to_string(), "snapshot requires a parameter");
        let ok = [GenericOption::string("snapshot", "use"), GenericOption::flag("two_phase")];
        let o = parse_create_slot_options(&logical, &ok).unwrap();
        assert_eq!(
            (o.snapshot_action, o.two_phase, o.reserve_wal),
            (SnapshotAction::Use, true, false)
        );
    }

    #[test]
    fn bool_parsing() {
        for t in ["t", "TRUE", "y", "yes", "on", "1", "tr"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["f", "False", "n", "no", "off", "of", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "o", "2", "yess", "maybe", " true"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }
}
