//! PostgreSQL 15's `CheckPoint` (`catalog/pg_control.h`) with its x86-64 C layout, the
//! main data of checkpoint records and a copy in the control file.

use walstream_protocol::{Lsn, TimeLineId};

use super::records::{i64_at, u32_at};

/// `sizeof(CheckPoint)` on a 64-bit platform (padding included).
pub const SIZE_OF_CHECKPOINT: usize = 88;
/// `FirstNormalTransactionId`.
pub const FIRST_NORMAL_XID: u32 = 3;
/// `FirstGenbkiObjectId`: the first oid after initdb's.
pub const FIRST_GENBKI_OID: u32 = 10000;
/// `Template1DbOid`.
pub const TEMPLATE1_DB_OID: u32 = 1;
/// `FirstMultiXactId`.
pub const FIRST_MULTI_XACT_ID: u32 = 1;

/// A checkpoint (`CheckPoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPoint {
    /// `redo`: where replay starts.
    pub redo: Lsn,
    /// `ThisTimeLineID`.
    pub this_timeline: TimeLineId,
    /// `PrevTimeLineID`.
    pub prev_timeline: TimeLineId,
    /// `fullPageWrites`.
    pub full_page_writes: bool,
    /// `nextXid` (`FullTransactionId`: epoch in the high 32 bits).
    pub next_xid: u64,
    /// `nextOid`.
    pub next_oid: u32,
    /// `nextMulti`.
    pub next_multi: u32,
    /// `nextMultiOffset`.
    pub next_multi_offset: u32,
    /// `oldestXid`.
    pub oldest_xid: u32,
    /// `oldestXidDB`.
    pub oldest_xid_db: u32,
    /// `oldestMulti`.
    pub oldest_multi: u32,
    /// `oldestMultiDB`.
    pub oldest_multi_db: u32,
    /// `time` (`pg_time_t`: seconds since 1970).
    pub time: i64,
    /// `oldestCommitTsXid`.
    pub oldest_commit_ts_xid: u32,
    /// `newestCommitTsXid`.
    pub newest_commit_ts_xid: u32,
    /// `oldestActiveXid`.
    pub oldest_active_xid: u32,
}

impl CheckPoint {
    /// The checkpoint initdb writes (`xlog.c: BootStrapXLOG`) with `redo` and `time`.
    pub fn bootstrap(redo: Lsn, time: i64) -> CheckPoint {
        CheckPoint {
            redo,
            this_timeline: TimeLineId(1),
            prev_timeline: TimeLineId(1),
            full_page_writes: true,
            next_xid: u64::from(FIRST_NORMAL_XID),
            next_oid: FIRST_GENBKI_OID,
            next_multi: FIRST_MULTI_XACT_ID,
            next_multi_offset: 0,
            oldest_xid: FIRST_NORMAL_XID,
            oldest_xid_db: TEMPLATE1_DB_OID,
            oldest_multi: FIRST_MULTI_XACT_ID,
            oldest_multi_db: TEMPLATE1_DB_OID,
            time,
            oldest_commit_ts_xid: 0,
            newest_commit_ts_xid: 0,
            oldest_active_xid: 0,
        }
    }

    /// The struct's bytes as the C compiler lays it out (padding zeroed).
    pub fn encode(&self) -> [u8; SIZE_OF_CHECKPOINT] {
        let mut b = [0u8; SIZE_OF_CHECKPOINT];
        let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(0, &self.redo.0.to_le_bytes());
        put(8, &self.this_timeline.0.to_le_bytes());
        put(12, &self.prev_timeline.0.to_le_bytes());
        put(16, &[u8::from(self.full_page_writes)]);
        put(24, &self.next_xid.to_le_bytes());
        let words = [
            self.next_oid,
            self.next_multi,
            self.next_multi_offset,
            self.oldest_xid,
            self.oldest_xid_db,
            self.oldest_multi,
            self.oldest_multi_db,
        ];
        for (i, w) in words.iter().enumerate() {
            put(32 + 4 * i, &w.to_le_bytes());
        }
        put(64, &self.time.to_le_bytes());
        put(72, &self.oldest_commit_ts_xid.to_le_bytes());
        put(76, &self.newest_commit_ts_xid.to_le_bytes());
        put(80, &self.oldest_active_xid.to_le_bytes());
        b
    }

    /// Reads the struct from the first [`SIZE_OF_CHECKPOINT`] bytes of `d`; `None` if
    /// shorter. Like PostgreSQL's `memcpy`, any nonzero `fullPageWrites` byte is true.
    pub fn decode(d: &[u8]) -> Option<CheckPoint> {
        if d.len() < SIZE_OF_CHECKPOINT {
            return None;
        }
        let w = |i: usize| u32_at(d, 32 + 4 * i);
        Some(CheckPoint {
            redo: Lsn(i64_at(d, 0)? as u64),
            this_timeline: TimeLineId(u32_at(d, 8)?),
            prev_timeline: TimeLineId(u32_at(d, 12)?),
            full_page_writes: *d.get(16)? != 0,
            next_xid: i64_at(d, 24)? as u64,
            next_oid: w(0)?,
            next_multi: w(1)?,
            next_multi_offset: w(2)?,
            oldest_xid: w(3)?,
            oldest_xid_db: w(4)?,
            oldest_multi: w(5)?,
            oldest_multi_db: w(6)?,
            time: i64_at(d, 64)?,
            oldest_commit_ts_xid: u32_at(d, 72)?,
            newest_commit_ts_xid: u32_at(d, 76)?,
            oldest_active_xid: u32_at(d, 80)?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn checkpoints() -> impl Strategy<Value = CheckPoint> {
        let a = (any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>(), any::<u64>());
        let b = proptest::array::uniform7(any::<u32>());
        let c = (any::<i64>(), any::<u32>(), any::<u32>(), any::<u32>());
        (a, b, c).prop_map(|((redo, tli, prev, fpw, nx), w, (time, ocx, ncx, oax))| CheckPoint {
            redo: Lsn(redo),
            this_timeline: TimeLineId(tli),
            prev_timeline: TimeLineId(prev),
            full_page_writes: fpw,
            next_xid: nx,
            next_oid: w[0],
            next_multi: w[1],
            next_multi_offset: w[2],
            oldest_xid: w[3],
            oldest_xid_db: w[4],
            oldest_multi: w[5],
            oldest_multi_db: w[6],
            time,
            oldest_commit_ts_xid: ocx,
            newest_commit_ts_xid: ncx,
            oldest_active_xid: oax,
        })
    }

    proptest! {
        #[test]
        fn checkpoint_round_trips(cp in checkpoints()) {
            prop_assert_eq!(CheckPoint::decode(&cp.encode()), Some(cp));
        }

        #[test]
        fn checkpoint_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..100)) {
            let r = CheckPoint::decode(&b);
            prop_assert_eq!(r.is_some(), b.len() >= SIZE_OF_CHECKPOINT);
        }
    }
}
