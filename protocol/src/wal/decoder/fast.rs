//! The decoder's fast path: a record that lies whole in one already validated page and in
//! the first fed chunk, decoded with no reassembly and one lookup of the input.

use super::{Found, Loc, WalDecoder};
use crate::lsn::XLOG_BLCKSZ;
use crate::wal::body::{parse_body, parse_record_header};
use crate::wal::crc::whole_record_crc;
use crate::wal::record::SIZE_OF_XLOG_RECORD;

impl WalDecoder {
    /// xlogreader.c: XLogDecodeNextRecord for a record inside one page of one chunk.
    ///
    /// Does exactly the checks of the general path (`start_step`, then `finish`), and
    /// returns `None`, having changed nothing that path relies on, if the record is not
    /// of this kind or fails any check: the general path then redoes the work and
    /// reports the fault or waits for bytes.
    pub(super) fn fast_step(&mut self) -> Option<Found> {
        let rec = self.next_rec;
        let page = rec.page_start();
        let header = &self.pages.cached(page)?.header;
        let off = rec.page_offset();
        let hdr = header.size();
        // Offset 0, inside the page header, unaligned, or where a continuation belongs:
        // the general path handles (or reports) these.
        if off < hdr || rec.0 % 8 != 0 || (off == hdr && header.is_contrecord()) {
            return None;
        }
        let (at, chunk) = self.input.front()?;
        let start = usize::try_from(rec.0.checked_sub(at)?).ok()?;
        let avail = chunk.get(start..)?;
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
        self.input.discard_before(page);
        let end = rec + u64::from(h.tot_len);
        Some(self.accept(rec, end, end.maxalign(), h, layout, Loc::Input))
    }
}
