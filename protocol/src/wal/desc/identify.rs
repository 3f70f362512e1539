//! Record type names: each resource manager's `*_identify` of PostgreSQL 15.

use crate::wal::record::XLR_INFO_MASK;

/// The record type name pg_waldump prints after `desc: ` for `rmid` and the full
/// `xl_info` byte, or `None` where PostgreSQL's `*_identify` returns NULL (pg_waldump
/// then prints `UNKNOWN (%x)`). Custom resource managers always give `None`.
pub fn identify(rmid: u8, info: u8) -> Option<&'static str> {
    let op = info & !XLR_INFO_MASK;
    let table: &[(u8, &'static str)] = match rmid {
        0 => XLOG,
        // xactdesc.c: xact_identify masks with XLOG_XACT_OPMASK
        1 => return lookup(XACT, info & 0x70),
        2 => &[(0x10, "CREATE"), (0x20, "TRUNCATE")],
        3 => &[(0x00, "ZEROPAGE"), (0x10, "TRUNCATE")],
        4 => &[(0x00, "CREATE_FILE_COPY"), (0x10, "CREATE_WAL_LOG"), (0x20, "DROP")],
        5 => &[(0x00, "CREATE"), (0x10, "DROP")],
        6 => &[
            (0x00, "ZERO_OFF_PAGE"),
            (0x10, "ZERO_MEM_PAGE"),
            (0x20, "CREATE_ID"),
            (0x30, "TRUNCATE_ID"),
        ],
        7 => &[(0x00, "UPDATE")],
        8 => &[(0x00, "LOCK"), (0x10, "RUNNING_XACTS"), (0x20, "INVALIDATIONS")],
        9 => HEAP2,
        10 => HEAP,
        11 => BTREE,
        12 => HASH,
        13 => GIN,
        14 => GIST,
        15 => &[(0x00, "LOG")],
        16 => SPGIST,
        17 => BRIN,
        // committsdesc.c and replorigindesc.c switch on the unmasked info
        18 => return lookup(&[(0x00, "ZEROPAGE"), (0x10, "TRUNCATE")], info),
        19 => return lookup(&[(0x00, "SET"), (0x10, "DROP")], info),
        // genericdesc.c: generic_identify
        20 => return Some("Generic"),
        21 => &[(0x00, "MESSAGE")],
        _ => return None,
    };
    lookup(table, op)
}

fn lookup(table: &[(u8, &'static str)], key: u8) -> Option<&'static str> {
    table.iter().find(|(k, _)| *k == key).map(|(_, name)| *name)
}

// xlogdesc.c: xlog_identify
const XLOG: &[(u8, &str)] = &[
    (0x00, "CHECKPOINT_SHUTDOWN"),
    (0x10, "CHECKPOINT_ONLINE"),
    (0x20, "NOOP"),
    (0x30, "NEXTOID"),
    (0x40, "SWITCH"),
    (0x50, "BACKUP_END"),
    (0x60, "PARAMETER_CHANGE"),
    (0x70, "RESTORE_POINT"),
    (0x80, "FPW_CHANGE"),
    (0x90, "END_OF_RECOVERY"),
    (0xA0, "FPI_FOR_HINT"),
    (0xB0, "FPI"),
    (0xD0, "OVERWRITE_CONTRECORD"),
];

// xactdesc.c: xact_identify
const XACT: &[(u8, &str)] = &[
    (0x00, "COMMIT"),
    (0x10, "PREPARE"),
    (0x20, "ABORT"),
    (0x30, "COMMIT_PREPARED"),
    (0x40, "ABORT_PREPARED"),
    (0x50, "ASSIGNMENT"),
    (0x60, "INVALIDATION"),
];

// heapdesc.c: heap_identify
const HEAP: &[(u8, &str)] = &[
    (0x00, "INSERT"),
    (0x80, "INSERT+INIT"),
    (0x10, "DELETE"),
    (0x20, "UPDATE"),
    (0xA0, "UPDATE+INIT"),
    (0x40, "HOT_UPDATE"),
    (0xC0, "HOT_UPDATE+INIT"),
    (0x30, "TRUNCATE"),
    (0x50, "HEAP_CONFIRM"),
    (0x60, "LOCK"),
    (0x70, "INPLACE"),
];

// heapdesc.c: heap2_identify
const HEAP2: &[(u8, &str)] = &[
    (0x00, "REWRITE"),
    (0x10, "PRUNE"),
    (0x20, "VACUUM"),
    (0x30, "FREEZE_PAGE"),
    (0x40, "VISIBLE"),
    (0x50, "MULTI_INSERT"),
    (0xD0, "MULTI_INSERT+INIT"),
    (0x60, "LOCK_UPDATED"),
    (0x70, "NEW_CID"),
];

// nbtdesc.c: btree_identify
const BTREE: &[(u8, &str)] = &[
    (0x00, "INSERT_LEAF"),
    (0x10, "INSERT_UPPER"),
    (0x20, "INSERT_META"),
    (0x30, "SPLIT_L"),
    (0x40, "SPLIT_R"),
    (0x50, "INSERT_POST"),
    (0x60, "DEDUP"),
    (0x70, "DELETE"),
    (0x80, "UNLINK_PAGE"),
    (0x90, "UNLINK_PAGE_META"),
    (0xA0, "NEWROOT"),
    (0xB0, "MARK_PAGE_HALFDEAD"),
    (0xC0, "VACUUM"),
    (0xD0, "REUSE_PAGE"),
    (0xE0, "META_CLEANUP"),
];

// hashdesc.c: hash_identify
const HASH: &[(u8, &str)] = &[
    (0x00, "INIT_META_PAGE"),
    (0x10, "INIT_BITMAP_PAGE"),
    (0x20, "INSERT"),
    (0x30, "ADD_OVFL_PAGE"),
    (0x40, "SPLIT_ALLOCATE_PAGE"),
    (0x50, "SPLIT_PAGE"),
    (0x60, "SPLIT_COMPLETE"),
    (0x70, "MOVE_PAGE_CONTENTS"),
    (0x80, "SQUEEZE_PAGE"),
    (0x90, "DELETE"),
    (0xA0, "SPLIT_CLEANUP"),
    (0xB0, "UPDATE_META_PAGE"),
    (0xC0, "VACUUM_ONE_PAGE"),
];

// gindesc.c: gin_identify
const GIN: &[(u8, &str)] = &[
    (0x10, "CREATE_PTREE"),
    (0x20, "INSERT"),
    (0x30, "SPLIT"),
    (0x40, "VACUUM_PAGE"),
    (0x50, "DELETE_PAGE"),
    (0x60, "UPDATE_META_PAGE"),
    (0x70, "INSERT_LISTPAGE"),
    (0x80, "DELETE_LISTPAGE"),
    (0x90, "VACUUM_DATA_LEAF_PAGE"),
];

// gistdesc.c: gist_identify
const GIST: &[(u8, &str)] = &[
    (0x00, "PAGE_UPDATE"),
    (0x10, "DELETE"),
    (0x20, "PAGE_REUSE"),
    (0x30, "PAGE_SPLIT"),
    (0x60, "PAGE_DELETE"),
    (0x70, "ASSIGN_LSN"),
];

// spgdesc.c: spg_identify
const SPGIST: &[(u8, &str)] = &[
    (0x10, "ADD_LEAF"),
    (0x20, "MOVE_LEAFS"),
    (0x30, "ADD_NODE"),
    (0x40, "SPLIT_TUPLE"),
    (0x50, "PICKSPLIT"),
    (0x60, "VACUUM_LEAF"),
    (0x70, "VACUUM_ROOT"),
    (0x80, "VACUUM_REDIRECT"),
];

// brindesc.c: brin_identify
const BRIN: &[(u8, &str)] = &[
    (0x00, "CREATE_INDEX"),
    (0x10, "INSERT"),
    (0x90, "INSERT+INIT"),
    (0x20, "UPDATE"),
    (0xA0, "UPDATE+INIT"),
    (0x30, "SAMEPAGE_UPDATE"),
    (0x40, "REVMAP_EXTEND"),
    (0x50, "DESUMMARIZE"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_pg_identify() {
        assert_eq!(identify(0, 0x00), Some("CHECKPOINT_SHUTDOWN"));
        assert_eq!(identify(0, 0xB0), Some("FPI"));
        assert_eq!(identify(0, 0xC0), None);
        assert_eq!(identify(1, 0x80), Some("COMMIT"));
        assert_eq!(identify(1, 0xE0), Some("INVALIDATION"));
        assert_eq!(identify(10, 0xC0), Some("HOT_UPDATE+INIT"));
        assert_eq!(identify(10, 0x01 | 0x40), Some("HOT_UPDATE"));
        assert_eq!(identify(9, 0xD0), Some("MULTI_INSERT+INIT"));
        assert_eq!(identify(18, 0x01), None);
        assert_eq!(identify(20, 0x70), Some("Generic"));
        assert_eq!(identify(128, 0), None);
        assert_eq!(identify(50, 0), None);
    }
}
