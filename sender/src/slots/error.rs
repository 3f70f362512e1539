//! Errors of the slot store, with PostgreSQL 15's texts, hints and SQLSTATEs.

use std::path::Path;

use walstream_protocol::wire::sqlstate;

use super::state::StateDecodeError;

/// `42602` invalid_name (not in the protocol crate's list).
const INVALID_NAME: &str = "42602";

/// Why a slot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// `max_replication_slots = 0` (`slot.c: CheckSlotRequirements`).
    #[error("replication slots can only be used if max_replication_slots > 0")]
    NotEnabled,
    /// An empty name.
    #[error("replication slot name \"{0}\" is too short")]
    NameTooShort(String),
    /// A name of `NAMEDATALEN` bytes or more.
    #[error("replication slot name \"{0}\" is too long")]
    NameTooLong(String),
    /// A name with characters other than `[a-z0-9_]`.
    #[error("replication slot name \"{0}\" contains invalid character")]
    InvalidCharacter(String),
    /// A slot of that name exists.
    #[error("replication slot \"{0}\" already exists")]
    AlreadyExists(String),
    /// No slot of that name.
    #[error("replication slot \"{0}\" does not exist")]
    DoesNotExist(String),
    /// Another backend uses the slot.
    #[error("replication slot \"{name}\" is active for PID {pid}")]
    Active {
        /// The slot.
        name: String,
        /// The backend using it.
        pid: i32,
    },
    /// Every one of `max_replication_slots` is taken.
    #[error("all replication slots are in use")]
    AllInUse,
    /// More slots on disk than `max_replication_slots` (`slot.c: RestoreSlotFromDisk`).
    #[error("too many replication slots active before shutdown")]
    TooManyOnDisk,
    /// A state file that does not hold a valid state.
    #[error("replication slot file \"{path}\" is invalid: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: StateDecodeError,
    },
    /// A file operation failed.
    #[error("could not access \"{path}\": {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SlotError {
    pub(super) fn io(path: &Path, source: std::io::Error) -> SlotError {
        SlotError::Io { path: path.display().to_string(), source }
    }

    /// The SQLSTATE a client gets for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SlotError::NotEnabled => sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            SlotError::NameTooShort(_) | SlotError::InvalidCharacter(_) => INVALID_NAME,
            SlotError::NameTooLong(_) => sqlstate::NAME_TOO_LONG,
            SlotError::AlreadyExists(_) => sqlstate::DUPLICATE_OBJECT,
            SlotError::DoesNotExist(_) => sqlstate::UNDEFINED_OBJECT,
            SlotError::Active { .. } => sqlstate::OBJECT_IN_USE,
            SlotError::AllInUse | SlotError::TooManyOnDisk => {
                sqlstate::CONFIGURATION_LIMIT_EXCEEDED
            }
            SlotError::Corrupt { .. } => sqlstate::DATA_CORRUPTED,
            // fd.c: errcode_for_file_access.
            SlotError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => sqlstate::UNDEFINED_FILE,
                std::io::ErrorKind::PermissionDenied => sqlstate::INSUFFICIENT_PRIVILEGE,
                _ => sqlstate::IO_ERROR,
            },
        }
    }

    /// PostgreSQL's errhint for this error, if it has one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SlotError::InvalidCharacter(_) => Some(
                "Replication slot names may only contain lower case letters, numbers, and the \
                 underscore character.",
            ),
            SlotError::AllInUse => Some("Free one or increase max_replication_slots."),
            SlotError::TooManyOnDisk => Some("Increase max_replication_slots and try again."),
            _ => None,
        }
    }
}
