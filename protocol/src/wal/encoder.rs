//! The WAL encoder: lays records out on pages as a PostgreSQL 15 server does
//! (`xlog.c: CopyXLogRecordToWAL`, `AdvanceXLInsertBuffer`, XLOG_SWITCH handling),
//! producing contiguous bytes from a known LSN.

use bytes::{Bytes, BytesMut};

use super::assemble::{assemble, EncodeError, RecordSpec};
use super::page::*;
use super::record::XLogRecordHeader;
use super::rmgr::RM_XLOG_ID;
use crate::lsn::{segment_file_name, Lsn, TimeLineId, WalSegSize, Xid, XLOG_BLCKSZ};

/// `XLOG_SWITCH` (`catalog/pg_control.h`).
pub const XLOG_SWITCH: u8 = 0x40;

/// What identifies the WAL being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// System identifier for long page headers.
    pub system_id: u64,
    /// Timeline written in every page header.
    pub timeline: TimeLineId,
    /// Segment size.
    pub seg_size: WalSegSize,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Start of the record.
    pub lsn: Lsn,
    /// First byte after the record (before alignment).
    pub end_lsn: Lsn,
    /// Where the next record will start (`EndRecPtr`).
    pub next_lsn: Lsn,
    /// The header as written, CRC included.
    pub header: XLogRecordHeader,
}

/// Writes records as WAL bytes. Output accumulates until [`WalEncoder::take`]; a caller can
/// write it at its file offset, flush a partial page and keep appending: the encoder
/// continues mid-page without repeating the page header.
#[derive(Debug)]
pub struct WalEncoder {
    cfg: EncoderConfig,
    pos: Lsn,
    prev: Lsn,
    out: BytesMut,
    out_start: Lsn,
    overwrite_next_page: bool,
}

impl WalEncoder {
    /// An encoder whose next record starts at `start` with `xl_prev = prev`. If `start` is
    /// a page boundary the page header is written first; otherwise the page header is
    /// assumed written already.
    ///
    /// # Errors
    /// [`EncodeError::BadStart`] if `start` is not MAXALIGNed or lies inside a page header.
    pub fn new(cfg: EncoderConfig, start: Lsn, prev: Lsn) -> Result<Self, EncodeError> {
        let off = start.page_offset();
        let hdr =
            if start.segment_offset(cfg.seg_size) < XLOG_BLCKSZ { SIZE_OF_LONG_PHD } else { 24 };
        if start.0 % 8 != 0 || (off != 0 && off < hdr) {
            return Err(EncodeError::BadStart(start));
        }
        Ok(WalEncoder {
            cfg,
            pos: start,
            prev,
            out: BytesMut::new(),
            out_start: start,
            overwrite_next_page: false,
        })
    }

    /// Where the next byte will be written (`Insert->CurrBytePos` as an LSN).
    pub fn position(&self) -> Lsn {
        self.pos
    }

    /// Start of the last record written (the next record's `xl_prev`).
    pub fn prev_lsn(&self) -> Lsn {
        self.prev
    }

    /// Start LSN of the bytes not yet taken.
    pub fn pending_start(&self) -> Lsn {
        self.out_start
    }

    /// Takes the bytes written since the last call: `(their start LSN, bytes)`.
    pub fn take(&mut self) -> (Lsn, Bytes) {
        let start = self.out_start;
        self.out_start = self.pos;
        (start, self.out.split().freeze())
    }

    /// Appends a record.
    ///
    /// # Errors
    /// [`EncodeError`] if PostgreSQL would not write or read such a record.
    pub fn append(&mut self, spec: &RecordSpec) -> Result<Appended, EncodeError> {
        let (rec, header) = assemble(spec, self.prev)?;
        let (lsn, end_lsn) = self.write_record(&rec);
        self.prev = lsn;
        self.pad_to(self.pos.maxalign());
        Ok(Appended { lsn, end_lsn, next_lsn: self.pos, header })
    }

    /// Appends an `XLOG_SWITCH` record and zeroes the rest of the segment (page headers
    /// included). Like PostgreSQL, writes nothing when at the start of a segment.
    ///
    /// # Errors
    /// Never in practice; the signature matches [`WalEncoder::append`].
    pub fn switch(&mut self, xid: Xid) -> Result<Option<Appended>, EncodeError> {
        let seg_off = self.pos.segment_offset(self.cfg.seg_size);
        if seg_off == 0 || seg_off == SIZE_OF_LONG_PHD {
            return Ok(None);
        }
        let spec = RecordSpec { rmid: RM_XLOG_ID, info: XLOG_SWITCH, xid, ..Default::default() };
        let mut a = self.append(&spec)?;
        let off = self.pos.segment_offset(self.cfg.seg_size);
        if off != 0 {
            self.pad_to(self.pos + u64::from(self.cfg.seg_size.bytes() - off));
        }
        a.next_lsn = self.pos;
        Ok(Some(a))
    }

    /// Writes the part of `spec` that fits on the current page, as a record cut short by a
    /// crash, and marks the next page `XLP_FIRST_IS_OVERWRITE_CONTRECORD` as PostgreSQL
    /// does after recovery abandons it (`xlog.c: CreateOverwriteContrecordRecord`).
    /// `xl_prev` of the next record stays the last complete record. Returns the abandoned
    /// record's LSN.
    ///
    /// # Errors
    /// [`EncodeError::FitsOnPage`] if the record would not cross the page.
    pub fn append_overwritten(&mut self, spec: &RecordSpec) -> Result<Lsn, EncodeError> {
        let (rec, _) = assemble(spec, self.prev)?;
        if self.pos.page_offset() == 0 {
            self.page_header(0, false);
        }
        let room = page_remaining(self.pos) as usize;
        let first = rec.get(..room).ok_or(EncodeError::FitsOnPage(rec.len() as u32))?;
        if first.len() == rec.len() {
            return Err(EncodeError::FitsOnPage(rec.len() as u32));
        }
        let lsn = self.pos;
        self.put(first);
        self.overwrite_next_page = true;
        Ok(lsn)
    }

    /// Writes `rec` across pages; returns its start and end.
    fn write_record(&mut self, rec: &[u8]) -> (Lsn, Lsn) {
        if self.pos.page_offset() == 0 {
            self.page_header(0, false);
        }
        let lsn = self.pos;
        let mut left = rec;
        loop {
            let n = (page_remaining(self.pos) as usize).min(left.len());
            let (now, rest) = left.split_at(n);
            self.put(now);
            left = rest;
            if left.is_empty() {
                break;
            }
            self.page_header(left.len() as u32, true);
        }
        (lsn, self.pos)
    }

    /// Writes the header of the page starting at `pos`.
    fn page_header(&mut self, rem_len: u32, cont: bool) {
        let first = self.pos.segment_offset(self.cfg.seg_size) == 0;
        let mut info = XLP_BKP_REMOVABLE;
        if first {
            info |= XLP_LONG_HEADER;
        }
        if cont {
            info |= XLP_FIRST_IS_CONTRECORD;
        }
        if std::mem::take(&mut self.overwrite_next_page) {
            info |= XLP_FIRST_IS_OVERWRITE_CONTRECORD;
        }
        let long = first.then_some(LongHeader {
            sysid: self.cfg.system_id,
            seg_size: self.cfg.seg_size.bytes(),
            xlog_blcksz: XLOG_BLCKSZ,
        });
        let h = PageHeader {
            magic: XLOG_PAGE_MAGIC,
            info,
            tli: self.cfg.timeline,
            pageaddr: self.pos,
            rem_len,
            long,
        };
        let mut b = Vec::with_capacity(SIZE_OF_LONG_PHD as usize);
        h.encode(&mut b);
        self.put(&b);
    }

    fn put(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
        self.pos = self.pos + b.len() as u64;
    }

    /// Zero bytes up to `to`.
    fn pad_to(&mut self, to: Lsn) {
        let n = to.saturating_distance(self.pos) as usize;
        self.out.resize(self.out.len() + n, 0);
        self.pos = to;
    }
}

/// Lays `bytes`, which start at `start`, into zero-filled segment files:
/// `(file name, contents)` for every segment they touch, in order.
pub fn segment_files(
    start: Lsn,
    bytes: &[u8],
    tli: TimeLineId,
    seg_size: WalSegSize,
) -> Vec<(String, Vec<u8>)> {
    let size = seg_size.bytes() as usize;
    let mut files = Vec::new();
    let mut pos = start;
    let mut left = bytes;
    while !left.is_empty() {
        let off = pos.segment_offset(seg_size) as usize;
        let mut file = vec![0u8; size];
        let n = (size - off).min(left.len());
        let (now, rest) = left.split_at(n);
        file[off..off + n].copy_from_slice(now);
        files.push((segment_file_name(tli, pos.segno(seg_size), seg_size), file));
        left = rest;
        pos = pos + n as u64;
    }
    files
}
