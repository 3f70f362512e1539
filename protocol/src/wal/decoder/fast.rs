//! The decoder's fast path: a record that lies whole in one already validated page and in
//! the first fed chunk, decoded with no reassembly and one lookup of the input.

use super::{Phase, WalDecoder};
use crate::lsn::{Lsn, XLOG_BLCKSZ};
use crate::wal::body::{parse_body, parse_record_header};
use crate::wal::crc::whole_record_crc;
use crate::wal::record::{XLogRecordHeader, SIZE_OF_XLOG_RECORD};
use crate::wal::view::{BodyLayout, RecordView};

/// A record the fast path found: where it starts in the first chunk, and what it holds.
#[derive(Clone, Copy)]
pub(super) struct Fast {
    pub lsn: Lsn,
    pub header: XLogRecordHeader,
    pub layout: BodyLayout,
    /// Offset of the record in the first chunk.
    pub at: usize,
}

impl WalDecoder {
    /// xlogreader.c: XLogDecodeNextRecord for a record inside one page of one chunk.
    ///
    /// Does exactly the checks of the general path (`start_step`, then `finish`), and
    /// returns `None`, having changed nothing that path relies on, if the record is not
    /// of this kind or fails any check: the general path then redoes the work and
    /// reports the fault or waits for bytes. Only for a decoder at the start of a record
    /// with no error, so `poll_ref` can call it before the general loop.
    #[inline(always)]
    pub(super) fn fast_step(&mut self) -> Option<Fast> {
        if !matches!(self.phase, Phase::Start) {
            return None;
        }
        let rec = self.next_rec;
        let page = rec.page_start();
        let off = rec.page_offset();
        // Offset 0, inside the page header, or where a continuation belongs: the general
        // path handles (or reports) these, as it does unaligned records.
        if off < self.pages.cached_first_free(page)? || rec.0 % 8 != 0 {
            return None;
        }
        self.input.discard_before(page);
        let (chunk_lsn, chunk) = self.input.front()?;
        let at = usize::try_from(rec.0.checked_sub(chunk_lsn)?).ok()?;
        let avail = chunk.get(at..)?;
        let head: &[u8; SIZE_OF_XLOG_RECORD as usize] = avail.first_chunk()?;
        let h = parse_record_header(head)?;
        if h.tot_len < SIZE_OF_XLOG_RECORD || h.tot_len > XLOG_BLCKSZ - off {
            return None;
        }
        let bytes = avail.get(..h.tot_len as usize)?;
        self.valid_header(rec, &h).ok()?;
        if whole_record_crc(bytes) != h.crc {
            return None;
        }
        let layout = parse_body(bytes, self.read_rec_ptr, &mut self.spans).ok()?;
        let end = rec + u64::from(h.tot_len);
        self.accept(rec, end.maxalign(), &h);
        Some(Fast { lsn: rec, header: h, layout, at })
    }

    /// The record the fast path found, borrowed from the first chunk.
    #[inline(always)]
    pub(super) fn fast_view(&self, f: &Fast) -> RecordView<'_> {
        let chunk = self.input.front().map_or(&[][..], |(_, c)| c);
        let bytes = chunk.get(f.at..f.at + f.header.tot_len as usize).unwrap_or_default();
        let end = f.lsn + u64::from(f.header.tot_len);
        RecordView::new(f.lsn, end, self.next_rec, f.header, bytes, &self.spans, f.layout)
    }
}
