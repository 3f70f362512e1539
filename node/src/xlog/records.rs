//! The node's WAL records: row changes of the custom resource manager, and real
//! PostgreSQL 15 transaction and XLOG records, built as [`RecordSpec`]s and decoded back
//! from a [`RecordView`] into a typed [`NodeRecord`].

use bytes::Bytes;
use walstream_protocol::lsn::Xid;
use walstream_protocol::replication::TimestampTz;
use walstream_protocol::wal::record::XLR_RMGR_INFO_MASK;
use walstream_protocol::wal::rmgr::{RM_XACT_ID, RM_XLOG_ID};
use walstream_protocol::wal::{RecordSpec, RecordView};
use walstream_protocol::{Lsn, TimeLineId};

use super::checkpoint::{CheckPoint, SIZE_OF_CHECKPOINT};
use super::XlogError;

/// The node's custom resource manager (PostgreSQL 15's extension range 128..=255);
/// pg_waldump prints it `custom200`.
pub const RM_WALSTREAM_ID: u8 = 200;

/// `XLOG_CHECKPOINT_SHUTDOWN` (`catalog/pg_control.h`).
pub const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
/// `XLOG_CHECKPOINT_ONLINE`.
pub const XLOG_CHECKPOINT_ONLINE: u8 = 0x10;
/// `XLOG_SWITCH`.
pub const XLOG_SWITCH: u8 = 0x40;
/// `XLOG_END_OF_RECOVERY`.
pub const XLOG_END_OF_RECOVERY: u8 = 0x90;
/// `XLOG_OVERWRITE_CONTRECORD`.
pub const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;

/// `XLOG_XACT_COMMIT` (`access/xact.h`).
pub const XLOG_XACT_COMMIT: u8 = 0x00;
/// `XLOG_XACT_ABORT`.
pub const XLOG_XACT_ABORT: u8 = 0x20;
/// `XLOG_XACT_OPMASK`: the operation bits of a Transaction record's info.
pub const XLOG_XACT_OPMASK: u8 = 0x70;

/// `sizeof(xl_end_of_recovery)` and `sizeof(xl_overwrite_contrecord)`.
const SIZE_OF_16: usize = 16;

/// `xl_end_of_recovery` (`access/xlog_internal.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOfRecovery {
    /// `end_time`.
    pub end_time: TimestampTz,
    /// `ThisTimeLineID`: the new timeline.
    pub this_timeline: TimeLineId,
    /// `PrevTimeLineID`: the timeline recovery ended on.
    pub prev_timeline: TimeLineId,
}

/// A record of the node's WAL, decoded. Row-change payloads borrow the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRecord<'a> {
    /// A row change of the engine (rmid [`RM_WALSTREAM_ID`]): its info and payload.
    RowChange {
        /// The transaction (`xl_xid`).
        xid: Xid,
        /// The engine's info byte (the resource manager's high nibble of `xl_info`).
        info: u8,
        /// The main data, uninterpreted.
        payload: &'a [u8],
    },
    /// `XLOG_XACT_COMMIT`.
    Commit {
        /// The transaction (`xl_xid`).
        xid: Xid,
        /// `xact_time`.
        time: TimestampTz,
    },
    /// `XLOG_XACT_ABORT`.
    Abort {
        /// The transaction (`xl_xid`).
        xid: Xid,
        /// `xact_time`.
        time: TimestampTz,
    },
    /// `XLOG_CHECKPOINT_SHUTDOWN` or `XLOG_CHECKPOINT_ONLINE`.
    Checkpoint {
        /// Whether it is a shutdown checkpoint.
        shutdown: bool,
        /// The checkpoint.
        checkpoint: CheckPoint,
    },
    /// `XLOG_SWITCH`.
    Switch,
    /// `XLOG_END_OF_RECOVERY`.
    EndOfRecovery(EndOfRecovery),
    /// `XLOG_OVERWRITE_CONTRECORD`: the record at `lsn` was abandoned.
    OverwriteContrecord {
        /// `overwritten_lsn`.
        lsn: Lsn,
        /// `overwrite_time`.
        time: TimestampTz,
    },
    /// Any other record (PostgreSQL's own, or types the node does not write).
    Other {
        /// `xl_rmid`.
        rmid: u8,
        /// `xl_info` without the `XLR_INFO_MASK` bits.
        info: u8,
    },
}

/// A row-change record: rmid [`RM_WALSTREAM_ID`], the engine's `info`, `xid`, `payload`
/// as main data.
///
/// # Errors
/// [`XlogError::BadRowInfo`] if `info` has bits outside the resource manager's high
/// nibble (`XLR_RMGR_INFO_MASK`): the low bits belong to the WAL machinery.
pub fn row_change(xid: Xid, info: u8, payload: Bytes) -> Result<RecordSpec, XlogError> {
    if info & !XLR_RMGR_INFO_MASK != 0 {
        return Err(XlogError::BadRowInfo(info));
    }
    Ok(RecordSpec { rmid: RM_WALSTREAM_ID, info, xid, main_data: payload, ..Default::default() })
}

/// The commit record of a plain top-level transaction (`xact.c: XactLogCommitRecord` with
/// no subtransactions, relations, invalidations or origin: `xinfo` 0, so no
/// `XLOG_XACT_HAS_INFO` and the main data is `xl_xact_commit` alone).
pub fn commit(xid: Xid, time: TimestampTz) -> RecordSpec {
    xact(XLOG_XACT_COMMIT, xid, time)
}

/// The abort record of a plain top-level transaction (`xact.c: XactLogAbortRecord`).
pub fn abort(xid: Xid, time: TimestampTz) -> RecordSpec {
    xact(XLOG_XACT_ABORT, xid, time)
}

fn xact(info: u8, xid: Xid, time: TimestampTz) -> RecordSpec {
    let main_data = Bytes::copy_from_slice(&time.0.to_le_bytes());
    RecordSpec { rmid: RM_XACT_ID, info, xid, main_data, ..Default::default() }
}

/// A checkpoint record (`xlog.c: CreateCheckPoint`), `xl_xid` 0.
pub fn checkpoint(cp: &CheckPoint, shutdown: bool) -> RecordSpec {
    let info = if shutdown { XLOG_CHECKPOINT_SHUTDOWN } else { XLOG_CHECKPOINT_ONLINE };
    xlog(info, Bytes::copy_from_slice(&cp.encode()))
}

/// `XLOG_END_OF_RECOVERY` (`xlog.c: CreateEndOfRecoveryRecord`).
pub fn end_of_recovery(e: &EndOfRecovery) -> RecordSpec {
    let mut b = Vec::with_capacity(SIZE_OF_16);
    b.extend_from_slice(&e.end_time.0.to_le_bytes());
    b.extend_from_slice(&e.this_timeline.0.to_le_bytes());
    b.extend_from_slice(&e.prev_timeline.0.to_le_bytes());
    xlog(XLOG_END_OF_RECOVERY, b.into())
}

/// `XLOG_OVERWRITE_CONTRECORD` (`xlog.c: CreateOverwriteContrecordRecord`).
pub fn overwrite_contrecord(aborted: Lsn, time: TimestampTz) -> RecordSpec {
    let mut b = Vec::with_capacity(SIZE_OF_16);
    b.extend_from_slice(&aborted.0.to_le_bytes());
    b.extend_from_slice(&time.0.to_le_bytes());
    xlog(XLOG_OVERWRITE_CONTRECORD, b.into())
}

fn xlog(info: u8, main_data: Bytes) -> RecordSpec {
    RecordSpec { rmid: RM_XLOG_ID, info, main_data, ..Default::default() }
}

/// Why a record that passed its CRC could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record with rmid {rmid} info {info:#04X}: main data of {len} bytes, expected {expected}")]
pub struct RecordError {
    /// `xl_rmid`.
    pub rmid: u8,
    /// `xl_info` without the `XLR_INFO_MASK` bits.
    pub info: u8,
    /// The main data length found.
    pub len: usize,
    /// What the record type needs.
    pub expected: &'static str,
}

impl<'a> NodeRecord<'a> {
    /// Decodes a record read back from WAL (recovery, a standby's replay).
    ///
    /// # Errors
    /// [`RecordError`] if a record type the node knows has main data of the wrong size.
    pub fn decode(view: &RecordView<'a>) -> Result<NodeRecord<'a>, RecordError> {
        let (rmid, info, xid) = (view.header.rmid, view.rmgr_info(), view.header.xid);
        let data = view.main_data();
        let bad = |expected| RecordError { rmid, info, len: data.len(), expected };
        Ok(match rmid {
            RM_WALSTREAM_ID => NodeRecord::RowChange { xid, info, payload: data },
            RM_XACT_ID => match info & XLOG_XACT_OPMASK {
                XLOG_XACT_COMMIT => NodeRecord::Commit {
                    xid,
                    time: TimestampTz(i64_at(data, 0).ok_or(bad("at least 8"))?),
                },
                XLOG_XACT_ABORT => NodeRecord::Abort {
                    xid,
                    time: TimestampTz(i64_at(data, 0).ok_or(bad("at least 8"))?),
                },
                _ => NodeRecord::Other { rmid, info },
            },
            RM_XLOG_ID => decode_xlog(info, data).ok_or_else(|| bad(xlog_expected(info)))?,
            _ => NodeRecord::Other { rmid, info },
        })
    }
}

fn xlog_expected(info: u8) -> &'static str {
    match info {
        XLOG_CHECKPOINT_SHUTDOWN | XLOG_CHECKPOINT_ONLINE => "88",
        _ => "16",
    }
}

fn decode_xlog(info: u8, d: &[u8]) -> Option<NodeRecord<'_>> {
    let exact = |n: usize| (d.len() == n).then_some(());
    Some(match info {
        XLOG_CHECKPOINT_SHUTDOWN | XLOG_CHECKPOINT_ONLINE => {
            exact(SIZE_OF_CHECKPOINT)?;
            let checkpoint = CheckPoint::decode(d)?;
            NodeRecord::Checkpoint { shutdown: info == XLOG_CHECKPOINT_SHUTDOWN, checkpoint }
        }
        XLOG_SWITCH => NodeRecord::Switch,
        XLOG_END_OF_RECOVERY => {
            exact(SIZE_OF_16)?;
            NodeRecord::EndOfRecovery(EndOfRecovery {
                end_time: TimestampTz(i64_at(d, 0)?),
                this_timeline: TimeLineId(u32_at(d, 8)?),
                prev_timeline: TimeLineId(u32_at(d, 12)?),
            })
        }
        XLOG_OVERWRITE_CONTRECORD => {
            exact(SIZE_OF_16)?;
            NodeRecord::OverwriteContrecord {
                lsn: Lsn(i64_at(d, 0)? as u64),
                time: TimestampTz(i64_at(d, 8)?),
            }
        }
        _ => NodeRecord::Other { rmid: RM_XLOG_ID, info },
    })
}

/// The little-endian `u32` at `at`, if there.
pub(crate) fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*d.get(at..)?.first_chunk()?))
}

/// The little-endian `i64` at `at`, if there.
pub(crate) fn i64_at(d: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_le_bytes(*d.get(at..)?.first_chunk()?))
}

/// Fuzz entry point: `data` as a record of rmid `data[0]`, info `data[1]`, main data the
/// rest, encoded and decoded back; [`NodeRecord::decode`] must not panic.
pub fn fuzz_record(data: &[u8]) {
    let (Some(&rmid), Some(&info)) = (data.first(), data.get(1)) else { return };
    let main = Bytes::copy_from_slice(data.get(2..).unwrap_or_default());
    let spec =
        RecordSpec { rmid, info: info & XLR_RMGR_INFO_MASK, main_data: main, ..Default::default() };
    let _ = with_view(&spec, |v| {
        let _ = NodeRecord::decode(v);
    });
}

/// Encodes `spec` as the first record of a page and hands its decoded view to `f`
/// (tests and fuzzing).
///
/// # Errors
/// If the encoder refuses the record or the decoder fails on it.
pub fn with_view<T>(spec: &RecordSpec, f: impl FnOnce(&RecordView<'_>) -> T) -> Result<T, String> {
    use walstream_protocol::wal::{EncoderConfig, WalDecoder, WalEncoder};
    use walstream_protocol::WalSegSize;
    let seg_size = WalSegSize::DEFAULT;
    let cfg = EncoderConfig { system_id: 1, timeline: TimeLineId(1), seg_size };
    let start = Lsn(u64::from(seg_size.bytes()));
    let mut enc = WalEncoder::new(cfg, start, Lsn::INVALID).map_err(|e| e.to_string())?;
    enc.append(spec).map_err(|e| e.to_string())?;
    let (_, bytes) = enc.take();
    let mut dec = WalDecoder::new(start, seg_size);
    dec.feed(bytes);
    match dec.poll_ref() {
        Ok(Some(v)) => Ok(f(&v)),
        Ok(None) => Err("record incomplete".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xlog::checkpoint::tests::checkpoints;
    use proptest::prelude::*;

    fn decoded(spec: &RecordSpec) -> Result<NodeRecord<'static>, RecordError> {
        // Leak-free: copy the payload out for comparison.
        with_view(spec, |v| NodeRecord::decode(v).map(own)).unwrap()
    }

    /// The record with its payload copied to a `'static` slice (tests only).
    fn own(r: NodeRecord<'_>) -> NodeRecord<'static> {
        match r {
            NodeRecord::RowChange { xid, info, payload } => NodeRecord::RowChange {
                xid,
                info,
                payload: Box::leak(payload.to_vec().into_boxed_slice()),
            },
            NodeRecord::Commit { xid, time } => NodeRecord::Commit { xid, time },
            NodeRecord::Abort { xid, time } => NodeRecord::Abort { xid, time },
            NodeRecord::Checkpoint { shutdown, checkpoint } => {
                NodeRecord::Checkpoint { shutdown, checkpoint }
            }
            NodeRecord::Switch => NodeRecord::Switch,
            NodeRecord::EndOfRecovery(e) => NodeRecord::EndOfRecovery(e),
            NodeRecord::OverwriteContrecord { lsn, time } => {
                NodeRecord::OverwriteContrecord { lsn, time }
            }
            NodeRecord::Other { rmid, info } => NodeRecord::Other { rmid, info },
        }
    }

    proptest! {
        #[test]
        fn row_change_round_trips(xid in any::<u32>(), nibble in 0u8..16,
                                  payload in proptest::collection::vec(any::<u8>(), 0..9000)) {
            let spec = row_change(Xid(xid), nibble << 4, payload.clone().into()).unwrap();
            let want = NodeRecord::RowChange { xid: Xid(xid), info: nibble << 4, payload: &payload };
            prop_assert_eq!(decoded(&spec).unwrap(), want);
        }

        #[test]
        fn commit_and_abort_round_trip(xid in any::<u32>(), t in any::<i64>()) {
            let (xid, time) = (Xid(xid), TimestampTz(t));
            prop_assert_eq!(decoded(&commit(xid, time)).unwrap(), NodeRecord::Commit { xid, time });
            prop_assert_eq!(decoded(&abort(xid, time)).unwrap(), NodeRecord::Abort { xid, time });
        }

        #[test]
        fn checkpoint_records_round_trip(cp in checkpoints(), shutdown in any::<bool>()) {
            let want = NodeRecord::Checkpoint { shutdown, checkpoint: cp };
            prop_assert_eq!(decoded(&checkpoint(&cp, shutdown)).unwrap(), want);
        }

        #[test]
        fn xlog_records_round_trip(t in any::<i64>(), a in any::<u32>(), b in any::<u32>(), l in any::<u64>()) {
            let e = EndOfRecovery { end_time: TimestampTz(t), this_timeline: TimeLineId(a), prev_timeline: TimeLineId(b) };
            prop_assert_eq!(decoded(&end_of_recovery(&e)).unwrap(), NodeRecord::EndOfRecovery(e));
            let want = NodeRecord::OverwriteContrecord { lsn: Lsn(l), time: TimestampTz(t) };
            prop_assert_eq!(decoded(&overwrite_contrecord(Lsn(l), TimestampTz(t))).unwrap(), want);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_record(&data);
        }
    }

    #[test]
    fn wrong_sizes_and_info_bits_are_errors() {
        assert!(matches!(row_change(Xid(1), 0x11, Bytes::new()), Err(XlogError::BadRowInfo(0x11))));
        let short = RecordSpec {
            rmid: RM_XLOG_ID,
            info: XLOG_CHECKPOINT_ONLINE,
            main_data: Bytes::from_static(&[0; 87]),
            ..Default::default()
        };
        assert_eq!(decoded(&short).unwrap_err().expected, "88");
        let short = RecordSpec {
            rmid: RM_XACT_ID,
            info: XLOG_XACT_COMMIT,
            main_data: Bytes::from_static(&[0; 7]),
            ..Default::default()
        };
        assert!(decoded(&short).is_err());
        let switch = RecordSpec { rmid: RM_XLOG_ID, info: XLOG_SWITCH, ..Default::default() };
        assert_eq!(decoded(&switch).unwrap(), NodeRecord::Switch);
        let heap = RecordSpec {
            rmid: 10,
            info: 0x30,
            main_data: Bytes::from_static(&[1, 2]),
            ..Default::default()
        };
        assert_eq!(decoded(&heap).unwrap(), NodeRecord::Other { rmid: 10, info: 0x30 });
    }

    #[test]
    fn plain_commit_is_34_bytes_as_postgresql_writes_it() {
        // A plain top-level commit: 24-byte header, 2-byte short data header, xact_time.
        let len = with_view(&commit(Xid(740), TimestampTz(0)), |v| v.header.tot_len).unwrap();
        assert_eq!(len, 34);
    }
}
