//! Reading the node's WAL back from `pg_wal` for redo (`xlogrecovery.c: PerformWalRecovery`,
//! `ReadRecord`): every valid record from a checkpoint's redo point to the end of valid
//! WAL, and where and why that end is, including a torn record that crossed a page
//! (`xlogreader.c: abortedRecPtr`, `missingContrecPtr`).

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use walstream_protocol::lsn::XLogSegNo;
use walstream_protocol::lsn::{segment_file_name, XLOG_BLCKSZ};
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::wal::page::{PageHeader, XLOG_PAGE_MAGIC};
use walstream_protocol::wal::record::SIZE_OF_XLOG_RECORD;
use walstream_protocol::wal::{WalDecoder, WalError, WalErrorKind};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use super::records::NodeRecord;
use super::writer::WriteStart;
use super::XlogError;

/// Bytes read from a segment file at a time.
const READ_CHUNK: usize = 4 << 20;
const BLCKSZ: u64 = XLOG_BLCKSZ as u64;

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The segment size.
    pub seg_size: WalSegSize,
    /// The history of the timeline recovery follows (`expectedTLEs`): each segment is read
    /// from the newest timeline of it that covers the segment and has its file.
    pub history: TimelineHistory,
    /// The system identifier long page headers must carry (from the control file).
    pub system_id: Option<u64>,
}

impl ReadOptions {
    /// Options that read the one timeline `tli`, which has no ancestors.
    pub fn single(seg_size: WalSegSize, tli: TimeLineId, system_id: Option<u64>) -> ReadOptions {
        let history = TimelineHistory { tli, ancestors: Vec::new() };
        ReadOptions { seg_size, history, system_id }
    }

    /// The timeline recovery follows (the newest of its history).
    pub fn timeline(&self) -> TimeLineId {
        self.history.tli
    }

    /// The timelines whose file may hold segment `segno`, newest first
    /// (`xlogrecovery.c: XLogFileReadAnyTLI`): a timeline covers the segments from the
    /// one its first byte is in to the one holding the byte before its switch point.
    pub fn timelines_of(&self, segno: XLogSegNo) -> Vec<TimeLineId> {
        let seg = |l: Lsn| l.segno(self.seg_size).0;
        let mut begin = Lsn(0);
        let mut spans = Vec::with_capacity(self.history.ancestors.len() + 1);
        for e in &self.history.ancestors {
            spans.push((e.tli, seg(begin), Some(seg(Lsn(e.switchpoint.0.saturating_sub(1))))));
            begin = e.switchpoint;
        }
        spans.push((self.history.tli, seg(begin), None));
        spans
            .into_iter()
            .rev()
            .filter(|(_, from, to)| *from <= segno.0 && to.is_none_or(|t| segno.0 <= t))
            .map(|(tli, _, _)| tli)
            .collect()
    }

    /// The file that holds segment `segno`: the newest covering timeline's that exists,
    /// else the newest covering timeline's name (to report as missing).
    pub fn segment_file(&self, wal_dir: &Path, segno: XLogSegNo) -> (TimeLineId, String) {
        let tlis = self.timelines_of(segno);
        let name = |tli| segment_file_name(tli, segno, self.seg_size);
        tlis.iter()
            .copied()
            .find(|tli| wal_dir.join(name(*tli)).exists())
            .or_else(|| tlis.first().copied())
            .map_or_else(|| (self.timeline(), name(self.timeline())), |tli| (tli, name(tli)))
    }
}

/// A record handed to the redo callback.
#[derive(Debug, Clone, Copy)]
pub struct Replayed<'a> {
    /// Where the record starts (`ReadRecPtr`).
    pub lsn: Lsn,
    /// The first byte after it.
    pub end_lsn: Lsn,
    /// Where the next record starts (`EndRecPtr`).
    pub next_lsn: Lsn,
    /// The record.
    pub record: NodeRecord<'a>,
}

/// A record cut short where it crossed onto a page that was never written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornRecord {
    /// The abandoned record (`abortedRecPtr`).
    pub aborted: Lsn,
    /// The page where its continuation is missing (`missingContrecPtr`): new WAL starts
    /// here, the page marked `XLP_FIRST_IS_OVERWRITE_CONTRECORD`.
    pub missing_contrec: Lsn,
}

/// Why reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The decoder's verdict: zeros or a recycled page ([`WalError::is_end_of_wal`]), or
    /// corruption.
    Wal(WalError),
    /// The next segment file does not exist.
    MissingSegment {
        /// Its name.
        segment: String,
    },
    /// A segment file shorter than the segment size.
    ShortSegment {
        /// Its name.
        segment: String,
        /// Its length.
        len: u64,
    },
}

/// Where valid WAL ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryEnd {
    /// The first byte after the last valid record (`EndOfLog`).
    pub end: Lsn,
    /// The last valid record (the next record's `xl_prev`); invalid if none was read.
    pub last_record: Lsn,
    /// How many records were replayed.
    pub records: u64,
    /// A torn record at the end that crossed a page, if any.
    pub torn: Option<TornRecord>,
    /// Why reading stopped.
    pub reason: EndReason,
}

impl RecoveryEnd {
    /// Where the WAL writer starts after this recovery.
    pub fn write_start(&self) -> WriteStart {
        let start = self.torn.map_or(self.end, |t| t.missing_contrec);
        WriteStart { start, prev: self.last_record, torn: self.torn }
    }
}

/// Reads the WAL of `wal_dir` from `from` (a redo point) to the end of valid WAL, handing
/// each record to `apply` in order.
///
/// # Errors
/// Whatever `apply` returns; [`XlogError::Record`] for a record whose contents do not fit
/// its type; [`XlogError::Io`] if a segment cannot be read.
pub fn read_wal<E, F>(
    wal_dir: &Path,
    from: Lsn,
    opts: &ReadOptions,
    mut apply: F,
) -> Result<RecoveryEnd, E>
where
    E: From<XlogError>,
    F: FnMut(&Replayed<'_>) -> Result<(), E>,
{
    let mut dec = WalDecoder::new(from, opts.seg_size);
    if let Some(id) = opts.system_id {
        dec.set_system_id(id);
    }
    let (mut last, mut records) = (Lsn::INVALID, 0u64);
    let mut segno = from.segno(opts.seg_size);
    let reason = 'segments: loop {
        let (tli, name) = opts.segment_file(wal_dir, segno);
        dec.set_timeline(tli);
        let path = wal_dir.join(&name);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                break EndReason::MissingSegment { segment: name }
            }
            Err(e) => return Err(XlogError::io("open", &path)(e).into()),
        };
        let mut read = 0u64;
        loop {
            let chunk = read_chunk(&mut file).map_err(|e| XlogError::io("read", &path)(e))?;
            if chunk.is_empty() {
                break;
            }
            read += chunk.len() as u64;
            dec.feed(chunk);
            loop {
                match dec.poll_ref() {
                    Ok(Some(v)) => {
                        let record = NodeRecord::decode(&v)
                            .map_err(|source| XlogError::Record { lsn: v.lsn, source })?;
                        let r = Replayed {
                            lsn: v.lsn,
                            end_lsn: v.end_lsn,
                            next_lsn: v.next_lsn,
                            record,
                        };
                        apply(&r)?;
                        (last, records) = (v.lsn, records + 1);
                    }
                    Ok(None) => break,
                    Err(e) => break 'segments EndReason::Wal(e),
                }
            }
        }
        if read < u64::from(opts.seg_size.bytes()) {
            break EndReason::ShortSegment { segment: name, len: read };
        }
        segno = segno.next();
    };
    let end = if records == 0 { from } else { dec.next_record_lsn() };
    let torn = find_torn(wal_dir, opts, end, &reason);
    Ok(RecoveryEnd { end, last_record: last, records, torn, reason })
}

/// Reads up to [`READ_CHUNK`] bytes; empty at end of file.
fn read_chunk(file: &mut File) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    file.by_ref().take(READ_CHUNK as u64).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// Reads `len` bytes at `lsn` from its segment file.
fn read_at(wal_dir: &Path, opts: &ReadOptions, lsn: Lsn, len: usize) -> Option<Vec<u8>> {
    let (_, name) = opts.segment_file(wal_dir, lsn.segno(opts.seg_size));
    let file = File::open(wal_dir.join(name)).ok()?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, u64::from(lsn.segment_offset(opts.seg_size))).ok()?;
    Some(buf)
}

/// Whether the failure at `end` concerned the record header itself (so nothing of a
/// record was assembled).
fn header_fault(reason: &EndReason) -> bool {
    matches!(
        reason,
        EndReason::Wal(WalError {
            kind: WalErrorKind::InvalidRecordLength { .. }
                | WalErrorKind::InvalidRmgrId { .. }
                | WalErrorKind::IncorrectPrevLink { .. }
                | WalErrorKind::InvalidRecordOffset { .. }
                | WalErrorKind::ContrecordRequested { .. },
            ..
        })
    )
}

/// `xlogreader.c`'s `abortedRecPtr`/`missingContrecPtr`: if the record at `end` has a
/// valid header and crosses a page, the first page after its start whose header does not
/// continue it (or its last page, if all do but the record still failed).
fn find_torn(
    wal_dir: &Path,
    opts: &ReadOptions,
    end: Lsn,
    reason: &EndReason,
) -> Option<TornRecord> {
    if header_fault(reason) {
        return None;
    }
    let mut rec = end;
    if rec.page_offset() == 0 {
        let h = PageHeader::parse(&read_at(wal_dir, opts, rec, 40)?).ok()?;
        if h.magic != XLOG_PAGE_MAGIC || h.pageaddr != rec || h.is_contrecord() {
            return None;
        }
        rec = rec + u64::from(h.size());
    }
    let tot = u64::from(u32::from_le_bytes(read_at(wal_dir, opts, rec, 4)?.try_into().ok()?));
    let first = BLCKSZ - u64::from(rec.page_offset());
    if tot < u64::from(SIZE_OF_XLOG_RECORD) || tot <= first {
        return None;
    }
    let (mut got, mut page) = (first, rec.page_start() + BLCKSZ);
    loop {
        let ok = read_at(wal_dir, opts, page, 40)
            .and_then(|b| PageHeader::parse(&b).ok())
            .is_some_and(|h| continues(&h, page, tot - got));
        if !ok {
            return Some(TornRecord { aborted: rec, missing_contrec: page });
        }
        let room = BLCKSZ - if page.segment_offset(opts.seg_size) == 0 { 40 } else { 24 };
        got += room;
        if got >= tot {
            return Some(TornRecord { aborted: rec, missing_contrec: page });
        }
        page = page + BLCKSZ;
    }
}

/// Whether the page header at `page` continues a record with `rem` bytes to come.
fn continues(h: &PageHeader, page: Lsn, rem: u64) -> bool {
    h.magic == XLOG_PAGE_MAGIC
        && h.pageaddr == page
        && h.is_contrecord()
        && !h.is_overwrite_contrecord()
        && u64::from(h.rem_len) == rem
}
