//! The incremental, sans-I/O WAL decoder (`xlogreader.c: XLogDecodeNextRecord`,
//! `XLogFindNextRecord`): feed contiguous WAL bytes, poll for records.

use std::mem;

use bytes::Bytes;

use super::body::{parse_body, parse_record_header};
use super::crc::whole_record_crc;
use super::encoder::XLOG_SWITCH;
use super::error::{WalError, WalErrorKind};
use super::input::Input;
use super::page::page_remaining;
use super::pagecheck::{PageChecker, PageStep};
use super::record::{DecodedRecord, XLogRecordHeader, SIZE_OF_XLOG_RECORD, XLR_RMGR_INFO_MASK};
use super::rmgr;
use super::view::{BlockSpan, BodyLayout, RecordView};
use crate::lsn::{Lsn, TimeLineId, WalSegSize, XLOG_BLCKSZ};

mod fast;

const BLCKSZ: u64 = XLOG_BLCKSZ as u64;
const HDR: u64 = SIZE_OF_XLOG_RECORD as u64;

/// Decodes PostgreSQL 15 WAL from bytes fed in any chunking.
///
/// Records are returned in order; after an error every later poll returns the same error.
/// [`WalDecoder::poll`] returns owned records whose payloads, for a record that lies in one
/// page of one fed chunk, are slices of that chunk; [`WalDecoder::poll_ref`] lends them.
#[derive(Debug)]
pub struct WalDecoder {
    input: Input,
    pages: PageChecker,
    /// `NextRecPtr`.
    next_rec: Lsn,
    /// `DecodeRecPtr`: the last record decoded; invalid for the first (random access).
    prev_rec: Lsn,
    /// `ReadRecPtr`: the last record returned, printed by the block header checks.
    read_rec_ptr: Lsn,
    phase: Phase,
    /// In `find_next` mode, records before this are decoded but not returned.
    find_target: Option<Lsn>,
    /// Nothing can progress before the input reaches this.
    need: Lsn,
    error: Option<WalError>,
    /// A record crossing pages or fed chunks, reassembled; reused.
    scratch: Vec<u8>,
    /// The block references of the last record found; reused.
    spans: Vec<BlockSpan>,
    /// Input before this is dropped at the next `poll` or `feed`: until then the last
    /// record returned may borrow it.
    discard: Lsn,
}

#[derive(Debug)]
enum Phase {
    /// `XLogFindNextRecord`'s walk over continuation data, at this page.
    Scan(Lsn),
    /// At `next_rec`, nothing of the record read yet.
    Start,
    /// Reassembling a record that crosses pages, into `scratch`.
    Cont(Reassembly),
}

#[derive(Debug, Clone, Copy)]
struct Reassembly {
    rec: Lsn,
    tot_len: u32,
    got_header: bool,
    /// The next continuation page.
    page: Lsn,
}

/// Why a step stopped.
enum Stop {
    Need(Lsn),
    Fail(WalError),
}

/// Where the bytes of a record found are: in the input at its LSN, or in `scratch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Input,
    Scratch,
}

/// A record found and checked; its bytes are at `loc`, its blocks in `spans`.
#[derive(Debug, Clone, Copy)]
struct Found {
    lsn: Lsn,
    end: Lsn,
    header: XLogRecordHeader,
    layout: BodyLayout,
    loc: Loc,
}

type Step = Result<Option<Found>, Stop>;

fn fail(lsn: Lsn, kind: WalErrorKind) -> Stop {
    Stop::Fail(WalError { lsn, kind })
}

fn page_stop(lsn: Lsn) -> impl Fn(PageStep) -> Stop {
    move |s| match s {
        PageStep::Need(l) => Stop::Need(l),
        PageStep::Fault(kind) => fail(lsn, kind),
    }
}

impl WalDecoder {
    /// Decode starting at `start`, which must be where a record begins (or a page start
    /// followed by a record). The first bytes needed are the start of `start`'s segment,
    /// whose first page header is validated first, as PostgreSQL does.
    pub fn new(start: Lsn, seg_size: WalSegSize) -> Self {
        WalDecoder {
            input: Input::new(start.segment_start(seg_size)),
            pages: PageChecker::new(seg_size),
            next_rec: start,
            prev_rec: Lsn::INVALID,
            read_rec_ptr: Lsn::INVALID,
            phase: Phase::Start,
            find_target: None,
            need: Lsn::INVALID,
            error: None,
            scratch: Vec::new(),
            spans: Vec::new(),
            discard: Lsn::INVALID,
        }
    }

    /// Like pg_waldump's `XLogFindNextRecord`: `start` may be anywhere; the first record
    /// returned is the first one that begins at or after it.
    pub fn find_next(start: Lsn, seg_size: WalSegSize) -> Self {
        let mut d = Self::new(start, seg_size);
        d.phase = Phase::Scan(start);
        d.find_target = Some(start);
        d
    }

    /// Names segments in error messages with this timeline (PostgreSQL uses the timeline
    /// of the segment file it opened). Default 1, as pg_waldump without `-t`.
    pub fn set_timeline(&mut self, tli: TimeLineId) {
        self.pages.file_tli = tli;
    }

    /// Requires every long page header to carry this system identifier (as the startup
    /// process checks against pg_control). Otherwise the first one seen is required.
    pub fn set_system_id(&mut self, sysid: u64) {
        self.pages.sysid = Some(sysid);
    }

    /// The LSN where the next [`WalDecoder::feed`] must begin.
    pub fn next_feed_lsn(&self) -> Lsn {
        self.input.end()
    }

    /// Appends WAL bytes that start at [`WalDecoder::next_feed_lsn`]. Bytes the decoder
    /// does not need (e.g. zeros after `XLOG_SWITCH`) are dropped.
    pub fn feed(&mut self, data: Bytes) {
        self.input.discard_before(self.discard);
        self.input.push(data);
    }

    /// Start of the next record to be returned (`EndRecPtr` of the last one, MAXALIGNed,
    /// or the next segment start after `XLOG_SWITCH`). Before `find_next` has found its
    /// first record, the position the search has reached.
    pub fn next_record_lsn(&self) -> Lsn {
        self.next_rec
    }

    /// System identifier from the first long page header seen (or [`Self::set_system_id`]).
    pub fn system_id(&self) -> Option<u64> {
        self.pages.sysid
    }

    /// The next record: `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// [`WalError`]: end of WAL ([`WalError::is_end_of_wal`]) or corruption. Sticky.
    pub fn poll(&mut self) -> Result<Option<DecodedRecord>, WalError> {
        let Some(f) = self.advance()? else { return Ok(None) };
        let len = f.header.tot_len as usize;
        let bytes = match f.loc {
            Loc::Input => self.input.bytes(f.lsn, len).unwrap_or_default(),
            Loc::Scratch => Bytes::from(mem::take(&mut self.scratch)),
        };
        let view =
            RecordView::new(f.lsn, f.end, self.next_rec, f.header, &bytes, &self.spans, f.layout);
        Ok(Some(view.to_shared(&bytes)))
    }

    /// The next record, borrowed from the decoder until the next `poll`, `poll_ref` or
    /// `feed`: like [`WalDecoder::poll`] without allocating or copying.
    ///
    /// # Errors
    /// As [`WalDecoder::poll`].
    pub fn poll_ref(&mut self) -> Result<Option<RecordView<'_>>, WalError> {
        if self.find_target.is_none() && self.error.is_none() && self.input.end() >= self.need {
            if let Some(f) = self.fast_step() {
                return Ok(Some(self.fast_view(&f)));
            }
        }
        let Some(f) = self.advance()? else { return Ok(None) };
        let bytes = match f.loc {
            Loc::Input => self.input.slice(f.lsn, f.header.tot_len as usize).unwrap_or_default(),
            Loc::Scratch => &self.scratch,
        };
        Ok(Some(RecordView::new(
            f.lsn,
            f.end,
            self.next_rec,
            f.header,
            bytes,
            &self.spans,
            f.layout,
        )))
    }

    /// Steps until a record to return is found, more input is needed, or an error.
    fn advance(&mut self) -> Result<Option<Found>, WalError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.input.discard_before(self.discard);
        loop {
            if self.input.end() < self.need {
                return Ok(None);
            }
            let res = match self.phase {
                Phase::Start => match self.fast_step() {
                    Some(f) => Ok(Some(Found {
                        lsn: f.lsn,
                        end: f.lsn + u64::from(f.header.tot_len),
                        header: f.header,
                        layout: f.layout,
                        loc: Loc::Input,
                    })),
                    None => self.step(),
                },
                _ => self.step(),
            };
            match res {
                Ok(Some(rec)) => {
                    if self.find_target.is_some_and(|t| rec.lsn < t) {
                        continue;
                    }
                    self.find_target = None;
                    return Ok(Some(rec));
                }
                Ok(None) => continue,
                Err(Stop::Need(lsn)) => {
                    // Never spin: a need already met would be a bug; wait for one more byte.
                    self.need = if lsn > self.input.end() { lsn } else { self.input.end() + 1 };
                    return Ok(None);
                }
                Err(Stop::Fail(e)) => {
                    self.error = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    fn step(&mut self) -> Step {
        match mem::replace(&mut self.phase, Phase::Start) {
            Phase::Scan(at) => self.scan_step(at).inspect_err(|_| self.phase = Phase::Scan(at)),
            Phase::Start => self.start_step(),
            Phase::Cont(mut r) => {
                let res = self.cont_step(&mut r);
                if matches!(res, Err(Stop::Need(_))) {
                    self.phase = Phase::Cont(r);
                }
                res
            }
        }
    }

    /// xlogreader.c: XLogFindNextRecord, skipping continuation data page by page.
    fn scan_step(&mut self, at: Lsn) -> Step {
        let page = at.page_start();
        let info = self.pages.read(&self.input, page).map_err(page_stop(at))?;
        let hdr = u64::from(info.header.size());
        let rem = (u64::from(info.header.rem_len) + 7) & !7;
        if info.header.is_contrecord() && rem >= BLCKSZ - hdr {
            self.phase = Phase::Scan(page + BLCKSZ);
            self.input.discard_before(page + BLCKSZ);
        } else {
            let skip = if info.header.is_contrecord() { rem } else { 0 };
            self.next_rec = page + hdr + skip;
            self.phase = Phase::Start;
        }
        Ok(None)
    }

    /// xlogreader.c: ValidXLogRecordHeader.
    fn valid_header(&self, rec: Lsn, h: &XLogRecordHeader) -> Result<(), Stop> {
        if h.tot_len < SIZE_OF_XLOG_RECORD {
            let kind =
                WalErrorKind::InvalidRecordLength { at: rec, wanted: HDR as u32, got: h.tot_len };
            return Err(fail(rec, kind));
        }
        if !rmgr::is_valid(h.rmid) {
            return Err(fail(rec, WalErrorKind::InvalidRmgrId { rmid: h.rmid, at: rec }));
        }
        let ok = if self.prev_rec.is_valid() { h.prev == self.prev_rec } else { h.prev < rec };
        if !ok {
            return Err(fail(rec, WalErrorKind::IncorrectPrevLink { prev: h.prev, at: rec }));
        }
        Ok(())
    }

    /// The beginning of XLogDecodeNextRecord: a record at `next_rec`.
    fn start_step(&mut self) -> Step {
        let mut rec = self.next_rec;
        let page = rec.page_start();
        let info = self.pages.read(&self.input, page).map_err(page_stop(rec))?;
        self.input.discard_before(page);
        let hdr = info.header.size();
        let off = rec.page_offset();
        if off == 0 {
            rec = rec + u64::from(hdr);
        } else if off < hdr || rec.0 % 8 != 0 {
            return Err(fail(rec, WalErrorKind::InvalidRecordOffset { at: rec }));
        }
        if info.header.is_contrecord() && rec.page_offset() == hdr {
            return Err(fail(rec, WalErrorKind::ContrecordRequested { at: rec }));
        }
        let page_end = page + BLCKSZ;
        self.need_until(Lsn((rec.0 + HDR).min(page_end.0)))?;
        let tot_len = u32::from_le_bytes(self.input.array(rec).ok_or(Stop::Need(rec + 4))?);
        let header_on_page = u64::from(page_remaining(rec)) >= HDR;
        if header_on_page {
            let h: [u8; 24] = self.input.array(rec).ok_or(Stop::Need(rec + HDR))?;
            let header = parse_record_header(&h).ok_or(Stop::Need(rec + HDR))?;
            self.valid_header(rec, &header)?;
        } else if tot_len < SIZE_OF_XLOG_RECORD {
            let kind =
                WalErrorKind::InvalidRecordLength { at: rec, wanted: HDR as u32, got: tot_len };
            return Err(fail(rec, kind));
        }
        let on_page = page_end - rec;
        if u64::from(tot_len) <= on_page {
            let end = rec + u64::from(tot_len);
            self.need_until(end)?;
            let loc = if self.input.slice(rec, tot_len as usize).is_some() {
                Loc::Input
            } else {
                self.scratch.clear();
                self.input
                    .copy_into(rec, tot_len as usize, &mut self.scratch)
                    .ok_or(Stop::Need(end))?;
                Loc::Scratch
            };
            return self.finish(rec, end, end.maxalign(), loc);
        }
        self.scratch.clear();
        self.input
            .copy_into(rec, on_page as usize, &mut self.scratch)
            .ok_or(Stop::Need(page_end))?;
        let r = Reassembly { rec, tot_len, got_header: header_on_page, page: page_end };
        self.phase = Phase::Cont(r);
        Ok(None)
    }

    fn need_until(&self, lsn: Lsn) -> Result<(), Stop> {
        if self.input.end() < lsn {
            Err(Stop::Need(lsn))
        } else {
            Ok(())
        }
    }

    /// The reassembly loop of XLogDecodeNextRecord, one continuation page per iteration.
    fn cont_step(&mut self, r: &mut Reassembly) -> Step {
        let tot = u64::from(r.tot_len);
        loop {
            let page = r.page;
            let got = self.scratch.len() as u64;
            // PostgreSQL waits for min(rest + 24, page) bytes before looking at the page
            // header; the header alone is enough to judge it, so an overwritten contrecord
            // at the end of what was fed is seen without waiting for bytes never written.
            let info = self.pages.read(&self.input, page).map_err(page_stop(r.rec))?;
            let h = info.header;
            if h.is_overwrite_contrecord() {
                // The record was abandoned; restart at this page (PG15 `goto restart`).
                self.next_rec = page;
                self.phase = Phase::Start;
                return Ok(None);
            }
            if !h.is_contrecord() {
                return Err(fail(r.rec, WalErrorKind::NoContrecordFlag { at: r.rec }));
            }
            if h.rem_len == 0 || tot != u64::from(h.rem_len) + got {
                let expected = tot as i64 - got as i64;
                let kind = WalErrorKind::InvalidContrecordLength {
                    rem_len: h.rem_len,
                    expected,
                    at: r.rec,
                };
                return Err(fail(r.rec, kind));
            }
            let hdr = u64::from(h.size());
            let len = (BLCKSZ - hdr).min(u64::from(h.rem_len));
            self.need_until(page + hdr + len)?;
            self.input
                .copy_into(page + hdr, len as usize, &mut self.scratch)
                .ok_or(Stop::Need(page + hdr + len))?;
            if !r.got_header {
                let header = parse_record_header(&self.scratch).ok_or_else(|| {
                    let kind = WalErrorKind::InvalidRecordLength {
                        at: r.rec,
                        wanted: HDR as u32,
                        got: r.tot_len,
                    };
                    fail(r.rec, kind)
                })?;
                self.valid_header(r.rec, &header)?;
                r.got_header = true;
            }
            if self.scratch.len() as u64 >= tot {
                let end = page + hdr + u64::from(h.rem_len);
                let next = page + hdr + ((u64::from(h.rem_len) + 7) & !7);
                return self.finish(r.rec, end, next, Loc::Scratch);
            }
            r.page = page + BLCKSZ;
            self.input.discard_before(r.page);
        }
    }

    /// CRC check, XLOG_SWITCH handling and DecodeXLogRecord for a complete record.
    fn finish(&mut self, rec: Lsn, end: Lsn, next: Lsn, loc: Loc) -> Step {
        let bytes = match loc {
            Loc::Input => self.input.slice(rec, (end - rec) as usize).ok_or(Stop::Need(end))?,
            Loc::Scratch => &self.scratch[..],
        };
        let header = parse_record_header(bytes).ok_or(Stop::Need(end))?;
        if whole_record_crc(bytes) != header.crc {
            return Err(fail(rec, WalErrorKind::IncorrectChecksum { at: rec }));
        }
        let layout =
            parse_body(bytes, self.read_rec_ptr, &mut self.spans).map_err(|k| fail(rec, k))?;
        self.accept(rec, next, &header);
        Ok(Some(Found { lsn: rec, end, header, layout, loc }))
    }

    /// The record at `rec` passed every check: move past it, to `next` (or the next
    /// segment after `XLOG_SWITCH`).
    #[inline(always)]
    fn accept(&mut self, rec: Lsn, next: Lsn, header: &XLogRecordHeader) {
        let mut next = next;
        if header.rmid == rmgr::RM_XLOG_ID && header.info & XLR_RMGR_INFO_MASK == XLOG_SWITCH {
            let seg = u64::from(self.pages.seg_size.bytes());
            next = Lsn(next.0.div_ceil(seg) * seg);
        }
        self.prev_rec = rec;
        self.read_rec_ptr = rec;
        self.next_rec = next;
        self.phase = Phase::Start;
        self.discard = next.page_start();
    }
}

/// Feeds `data`, which begins at `d.next_feed_lsn()`, to `d` in pieces of `sizes` bytes
/// (cycled), polling after each piece with `poll_ref` (records copied out) when
/// `borrowed`, else with `poll`, until the data runs out or an error: the records and the
/// error, if any. A convenience for tests and fuzzing.
pub fn decode_in_pieces(
    d: &mut WalDecoder,
    data: &Bytes,
    sizes: &[usize],
    borrowed: bool,
) -> (Vec<DecodedRecord>, Option<WalError>) {
    let (mut out, mut pos) = (Vec::new(), 0);
    for &size in sizes.iter().cycle() {
        if pos >= data.len() {
            break;
        }
        let n = size.clamp(1, data.len() - pos);
        d.feed(data.slice(pos..pos + n));
        pos += n;
        loop {
            let r = if borrowed {
                d.poll_ref().map(|r| r.map(|v| v.to_owned_record()))
            } else {
                d.poll()
            };
            match r {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}
