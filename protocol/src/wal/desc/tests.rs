//! Unit tests of the descriptions, on records built by hand; expected texts were
//! printed by PostgreSQL 15's pg_waldump.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::lsn::Xid;
use crate::wal::record::{
    BlockImage, BlockRef, XLogRecordHeader, BKPIMAGE_APPLY, BKPIMAGE_HAS_HOLE,
};

fn rec(rmid: u8, info: u8, main: Vec<u8>) -> DecodedRecord {
    DecodedRecord {
        lsn: Lsn(0x0100_0028),
        end_lsn: Lsn(0x0100_0060),
        header: XLogRecordHeader { tot_len: 0, xid: Xid(0), prev: Lsn(0), info, rmid, crc: 0 },
        blocks: Vec::new(),
        origin: None,
        toplevel_xid: None,
        main_data: Bytes::from(main),
    }
}

fn line(r: &DecodedRecord) -> String {
    let mut out = Vec::new();
    write_desc(&mut out, r, &Utc);
    write_block_refs(&mut out, r, false);
    String::from_utf8(out).unwrap()
}

#[derive(Default)]
struct Le(Vec<u8>);
impl Le {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn pad(mut self, to: usize) -> Self {
        self.0.resize(to, 0);
        self
    }
}

#[test]
fn checkpoint_online() {
    let d = Le::default().u64(0x28003A8).u32(1).u32(1).u8(1).pad(24).u64(8404).u32(24576);
    let d = d.u32(1).u32(0).u32(716).u32(1).u32(1).u32(1).pad(64).u64(0).u32(724).u32(8402);
    let d = d.u32(8403).pad(88);
    assert_eq!(
        line(&rec(0, 0x10, d.0)),
        "CHECKPOINT_ONLINE redo 0/28003A8; tli 1; prev tli 1; fpw true; xid 0:8404; oid 24576; \
         multi 1; offset 0; oldest xid 716 in DB 1; oldest multi 1 in DB 1; oldest/newest commit \
         timestamp xid: 724/8402; oldest running xid 8403; online\n"
    );
}

#[test]
fn xlog_small_records() {
    assert_eq!(line(&rec(0, 0x40, vec![])), "SWITCH \n");
    assert_eq!(line(&rec(0, 0x30, Le::default().u32(24576).0)), "NEXTOID 24576\n");
    assert_eq!(line(&rec(0, 0x50, Le::default().u64(0x2A00028).0)), "BACKUP_END 0/2A00028\n");
    let rp = Le::default().u64(0).0.into_iter().chain(*b"rp1\0").collect();
    assert_eq!(line(&rec(0, 0x70, rp)), "RESTORE_POINT rp1\n");
    let pc = Le::default().u32(100).u32(8).u32(10).u32(5).u32(64).u32(2).u8(0).u8(1).pad(28);
    assert_eq!(
        line(&rec(0, 0x60, pc.0)),
        "PARAMETER_CHANGE max_connections=100 max_worker_processes=8 max_wal_senders=10 \
         max_prepared_xacts=5 max_locks_per_xact=64 wal_level=logical wal_log_hints=off \
         track_commit_timestamp=on\n"
    );
    assert_eq!(line(&rec(0, 0xC0, vec![])), "UNKNOWN (c0) \n");
}

#[test]
fn end_of_recovery_and_timestamps() {
    // 2026-11-21 11:25:52.597014 UTC
    let ts: i64 = 848_575_552_597_014;
    let d = Le::default().u64(ts as u64).u32(2).u32(1).pad(16);
    assert_eq!(
        line(&rec(0, 0x90, d.0)),
        "END_OF_RECOVERY tli 2; prev tli 1; time 2026-11-21 11:25:52.597014 UTC\n"
    );
    let mut out = Vec::new();
    Utc.write_timestamptz(&mut out, 0);
    assert_eq!(out, b"2000-01-01 00:00:00.000000 UTC");
}

/// A `SharedInvalidationMessage`: id, then u32 fields at offsets 4 and 8.
fn inval(id: i8, at4: u32, at8: u32) -> Vec<u8> {
    Le::default().u8(id as u8).pad(4).u32(at4).u32(at8).pad(16).0
}

#[test]
fn commit_with_subxacts_rels_invals() {
    let ts: i64 = 848_575_552_597_014;
    // xinfo: dbinfo | subxacts | relfilenodes | invals | force sync
    let xinfo = 1 | 2 | 4 | 8 | (1 << 31);
    let d = Le::default().u64(ts as u64).u32(xinfo).u32(5).u32(1663);
    let d = d.u32(2).u32(8619).u32(8620);
    let mut d = d.u32(1).u32(1663).u32(5).u32(16384).u32(2).0;
    d.extend(inval(7, 5, 0xDEAD));
    d.extend(inval(-2, 5, 16384));
    assert_eq!(
        line(&rec(1, 0x80, d)),
        "COMMIT 2026-11-21 11:25:52.597014 UTC; rels: base/5/16384; subxacts: 8619 8620; \
         inval msgs: catcache 7 relcache 16384; sync\n"
    );
}

#[test]
fn abort_prepared_and_assignment() {
    let ts: i64 = 848_575_554_851_018;
    let d = Le::default().u64(ts as u64).u32(1 << 4).u32(8630);
    assert_eq!(line(&rec(1, 0xC0, d.0)), "ABORT_PREPARED 8630: 2026-11-21 11:25:54.851018 UTC\n");
    let d = Le::default().u32(8618).u32(1).u32(8619);
    assert_eq!(line(&rec(1, 0x50, d.0)), "ASSIGNMENT xtop 8618: subxacts: 8619\n");
}

#[test]
fn running_xacts_and_lock() {
    let d = Le::default().u32(1).u32(0).u8(0).pad(12).u32(723).u32(722).u32(721).u32(722);
    assert_eq!(
        line(&rec(8, 0x10, d.0)),
        "RUNNING_XACTS nextXid 723 latestCompletedXid 721 oldestRunningXid 722; 1 xacts: 722\n"
    );
    let d = Le::default().u32(1).u32(724).u32(5).u32(16384);
    assert_eq!(line(&rec(8, 0x00, d.0)), "LOCK xid 724 db 5 rel 16384 \n");
}

#[test]
fn heap_update_with_block_ref() {
    let d = Le::default().u32(728).u16(4).u8(0).u8(0x60).u32(0).u16(6).pad(14);
    let mut r = rec(10, 0x20, d.0);
    r.blocks.push(BlockRef {
        id: 0,
        fork_flags: 0,
        rnode: RelFileNode { spc_node: 1663, db_node: 5, rel_node: 1259 },
        blkno: 0,
        image: None,
        data: Bytes::new(),
    });
    assert_eq!(
        line(&r),
        "UPDATE off 4 xmax 728 flags 0x60 ; new off 6 xmax 0, blkref #0: rel 1663/5/1259 blk 0\n"
    );
}

#[test]
fn block_refs_short_and_detailed() {
    let mut r = rec(0, 0xB0, vec![]);
    r.blocks.push(BlockRef {
        id: 0,
        fork_flags: 0x10 | 1,
        rnode: RelFileNode { spc_node: 1663, db_node: 5, rel_node: 16400 },
        blkno: 1,
        image: Some(BlockImage {
            bimg_info: BKPIMAGE_HAS_HOLE | BKPIMAGE_APPLY,
            hole_offset: 100,
            hole_length: 200,
            data: Bytes::from(vec![0; 7992]),
        }),
        data: Bytes::new(),
    });
    assert_eq!(line(&r), "FPI , blkref #0: rel 1663/5/16400 fork fsm blk 1 FPW\n");
    let mut out = Vec::new();
    write_block_refs(&mut out, &r, true);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "\n\tblkref #0: rel 1663/5/16400 fork fsm blk 1 (FPW); hole: offset: 100, length: 200\n"
    );
}

#[test]
fn custom_and_logical_message() {
    assert_eq!(line(&rec(128, 0, vec![1, 2])), "UNKNOWN (0) rmid: 128\n");
    let mut d = Le::default().u32(5).u8(1).pad(8).u64(4).u64(5).0;
    d.extend_from_slice(b"pfx\0hello");
    assert_eq!(
        line(&rec(21, 0, d)),
        "MESSAGE transactional, prefix \"pfx\"; payload (5 bytes): 68 65 6C 6C 6F\n"
    );
}

#[test]
fn storage_paths() {
    let d = Le::default().u32(1663).u32(5).u32(16384).u32(0);
    assert_eq!(line(&rec(2, 0x10, d.0)), "CREATE base/5/16384\n");
    let d = Le::default().u32(1664).u32(0).u32(1262).u32(2);
    assert_eq!(line(&rec(2, 0x10, d.0)), "CREATE global/1262_vm\n");
    let d = Le::default().u32(17000).u32(5).u32(16384).u32(0);
    assert_eq!(line(&rec(2, 0x10, d.0)), "CREATE pg_tblspc/17000/PG_15_202209061/5/16384\n");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_main_data(rmid in any::<u8>(), info in any::<u8>(),
                                           data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut input = vec![rmid, info];
        input.extend_from_slice(&data);
        let _ = fuzz_describe(&input);
    }

    #[test]
    fn utc_matches_civil_arithmetic(days in 0i64..40_000, secs in 0i64..86_400, us in 0i64..1_000_000) {
        let ts = (days * 86_400 + secs) * 1_000_000 + us;
        let mut out = Vec::new();
        Utc.write_timestamptz(&mut out, ts);
        let s = String::from_utf8(out).unwrap();
        let tail = format!(".{:06} UTC", us);
        prop_assert!(s.ends_with(&tail));
        prop_assert_eq!(s.len(), 30);
    }
}
