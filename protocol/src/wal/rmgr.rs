//! Resource manager ids and names (`access/rmgrlist.h`, `access/rmgr.h` of PostgreSQL 15).

/// Built-in resource managers of PostgreSQL 15, in id order (`rmgrlist.h`).
pub const BUILTIN_NAMES: [&str; 22] = [
    "XLOG",
    "Transaction",
    "Storage",
    "CLOG",
    "Database",
    "Tablespace",
    "MultiXact",
    "RelMap",
    "Standby",
    "Heap2",
    "Heap",
    "Btree",
    "Hash",
    "Gin",
    "Gist",
    "Sequence",
    "SPGist",
    "BRIN",
    "CommitTs",
    "ReplicationOrigin",
    "Generic",
    "LogicalMessage",
];

/// `RM_XLOG_ID`.
pub const RM_XLOG_ID: u8 = 0;
/// `RM_XACT_ID`.
pub const RM_XACT_ID: u8 = 1;
/// `RM_STANDBY_ID`.
pub const RM_STANDBY_ID: u8 = 8;
/// `RM_HEAP2_ID`.
pub const RM_HEAP2_ID: u8 = 9;
/// `RM_HEAP_ID`.
pub const RM_HEAP_ID: u8 = 10;
/// `RM_BTREE_ID`.
pub const RM_BTREE_ID: u8 = 11;
/// `RM_LOGICALMSG_ID`.
pub const RM_LOGICALMSG_ID: u8 = 21;
/// `RM_MAX_BUILTIN_ID`.
pub const RM_MAX_BUILTIN_ID: u8 = 21;
/// `RM_MIN_CUSTOM_ID`.
pub const RM_MIN_CUSTOM_ID: u8 = 128;
/// `RM_EXPERIMENTAL_ID`, the custom id meant for experiments; walstream's KV records use it.
pub const RM_EXPERIMENTAL_ID: u8 = 128;

/// Whether `rmid` may appear in a record (`RmgrIdIsValid`): built-in or custom.
pub fn is_valid(rmid: u8) -> bool {
    rmid <= RM_MAX_BUILTIN_ID || rmid >= RM_MIN_CUSTOM_ID
}

/// Whether `rmid` is in the custom range 128..=255 (`RmgrIdIsCustom`).
pub fn is_custom(rmid: u8) -> bool {
    rmid >= RM_MIN_CUSTOM_ID
}

/// The name pg_waldump prints for `rmid`: the built-in name, `custom###` for the custom
/// range, `None` for the invalid ids 22..=127.
pub fn name(rmid: u8) -> Option<std::borrow::Cow<'static, str>> {
    if rmid <= RM_MAX_BUILTIN_ID {
        Some(BUILTIN_NAMES[usize::from(rmid)].into())
    } else if is_custom(rmid) {
        Some(format!("custom{rmid:03}").into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_pg_waldump() {
        assert_eq!(name(0).as_deref(), Some("XLOG"));
        assert_eq!(name(21).as_deref(), Some("LogicalMessage"));
        assert_eq!(name(22), None);
        assert_eq!(name(127), None);
        assert_eq!(name(128).as_deref(), Some("custom128"));
        assert_eq!(name(255).as_deref(), Some("custom255"));
        assert!(is_valid(128) && !is_valid(100));
    }
}
