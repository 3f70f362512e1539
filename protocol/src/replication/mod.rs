//! The replication command grammar and the CopyBoth sub-messages of PostgreSQL 15.
//!
//! # Layout
//! - `syntax`: what the scanner and the grammar share: [`ReplicationParseError`] and the
//!   quoting of identifiers and literals ([`quote_ident`], [`quote_literal`]).
//! - [`scanner`]: tokens as `repl_scanner.l` makes them; [`is_replication_command`]
//!   (replication command or SQL?).
//! - `grammar`: [`parse_command`], the grammar of `repl_gram.y` with nom.
//! - `commands`: [`ReplicationCommand`] (shaped like `replnodes.h`) and its canonical text.
//! - `options` / `basebackup`: the option checks the walsender makes when it runs a
//!   command: [`parse_create_slot_options`], [`parse_base_backup_options`].
//! - `copyboth`: XLogData `w`, keepalive `k`, standby status `r`, hot standby feedback `h`.
//! - `identify`: IDENTIFY_SYSTEM's reply read into [`IdentifySystem`].
//! - `time`: [`TimestampTz`], microseconds since 2000-01-01 UTC.
//!
//! What is checked where, as in PostgreSQL 15: the parser raises `syntax error`,
//! `unterminated quoted string` and `invalid timeline 0` (all `42601`); option names and
//! values are only checked when the command runs (`walsender.c`, `basebackup.c`), which
//! is what the `parse_*_options` functions reproduce.
//!
//! PostgreSQL 15 dropped the pre-15 `BASE_BACKUP LABEL 'x' FAST ...` syntax (a live 15.18
//! answers `syntax error`), so only the parenthesized form is accepted; the legacy
//! `CREATE_REPLICATION_SLOT` options (`RESERVE_WAL`, `EXPORT_SNAPSHOT`, ...) remain.

mod basebackup;
mod commands;
mod copyboth;
mod grammar;
mod identify;
mod options;
pub mod scanner;
mod syntax;
mod time;

pub use basebackup::{
    parse_base_backup_options, BackupTarget, BaseBackupOptions, CompressionAlgorithm,
    ManifestChecksumType, ManifestOption,
};
pub use commands::{GenericOption, OptionValue, ReplicationCommand, ReplicationKind, SlotKind};
pub use copyboth::{
    parse_client_copy_data, parse_server_copy_data, ClientCopyData, CopyDataError,
    HotStandbyFeedback, PrimaryKeepalive, ServerCopyData, StandbyStatusUpdate, XLogData,
    HOT_STANDBY_FEEDBACK_LEN, KEEPALIVE_LEN, STANDBY_STATUS_LEN, XLOGDATA_HEADER_LEN,
};
pub use grammar::parse_command;
pub use identify::{fuzz_identify_system, IdentifySystem, IdentifySystemError};
pub use options::{
    parse_bool, parse_create_slot_options, CreateSlotOptions, OptionError, SnapshotAction,
    MAX_RATE_LOWER, MAX_RATE_UPPER,
};
pub use scanner::{is_replication_command, truncated_identifiers, TruncatedIdentifier};
pub use syntax::{quote_ident, quote_literal, ReplicationParseError};
pub use time::{TimestampTz, POSTGRES_EPOCH_UNIX_SECS};

/// Fuzz entry point: [`parse_command`] on arbitrary bytes (not UTF-8 → ignored).
pub fn fuzz_parse_command(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = is_replication_command(s);
        if let Ok(cmd) = parse_command(s) {
            // What parses prints back to the same command.
            assert_eq!(parse_command(&cmd.to_string()).as_ref(), Ok(&cmd), "round trip of {s:?}");
        }
    }
}

/// Fuzz entry point: both CopyData parsers on arbitrary bytes.
pub fn fuzz_copy_data(data: &[u8]) {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let _ = parse_server_copy_data(bytes.clone());
    let _ = parse_client_copy_data(bytes);
}

#[cfg(test)]
mod grammar_tests;
