//! Reading and validating page headers as the decoder reaches pages
//! (`xlogreader.c: ReadPageInternal`, `XLogReaderValidatePageHeader`).

use super::error::WalErrorKind;
use super::input::Input;
use super::page::{PageHeader, SIZE_OF_SHORT_PHD, XLOG_PAGE_MAGIC, XLP_ALL_FLAGS};
use crate::lsn::{segment_file_name, Lsn, TimeLineId, WalSegSize, XLogSegNo, XLOG_BLCKSZ};

/// A page whose header was validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageInfo {
    /// The page's LSN.
    pub ptr: Lsn,
    /// Its parsed header.
    pub header: PageHeader,
}

/// Why a page could not be read yet, or at all.
#[derive(Debug)]
pub(crate) enum PageStep {
    /// More bytes are needed, up to this LSN.
    Need(Lsn),
    /// The header is invalid.
    Fault(WalErrorKind),
}

/// Page-level state of the reader: which segment and page were read, the latest timeline,
/// the system identifier.
#[derive(Debug)]
pub(crate) struct PageChecker {
    pub seg_size: WalSegSize,
    /// Timeline used to name segments in messages (`ws_tli`).
    pub file_tli: TimeLineId,
    /// System identifier from the first long header, or set by the caller.
    pub sysid: Option<u64>,
    cur_seg: Option<XLogSegNo>,
    latest_page: Lsn,
    latest_tli: u32,
    last: Option<PageInfo>,
    /// `last`'s LSN, or `u64::MAX` (never a page start) if none.
    last_ptr: u64,
    /// The lowest offset in `last` where a record may start without the general path's
    /// checks: after the header, and after the first byte if it holds a continuation.
    last_first_free: u32,
}

impl PageChecker {
    pub(crate) fn new(seg_size: WalSegSize) -> Self {
        PageChecker {
            seg_size,
            file_tli: TimeLineId(1),
            sysid: None,
            cur_seg: None,
            latest_page: Lsn::INVALID,
            latest_tli: 0,
            last: None,
            last_ptr: u64::MAX,
            last_first_free: 0,
        }
    }

    /// The page at `ptr`, validated; first the segment's first page when entering a new
    /// segment elsewhere than its start, as ReadPageInternal does.
    pub(crate) fn read(&mut self, input: &Input, ptr: Lsn) -> Result<PageInfo, PageStep> {
        if let Some(last) = self.last.filter(|l| l.ptr == ptr) {
            return Ok(last);
        }
        let segno = ptr.segno(self.seg_size);
        if self.cur_seg != Some(segno) && ptr.segment_offset(self.seg_size) != 0 {
            let first = ptr.segment_start(self.seg_size);
            if self.last.is_none_or(|l| l.ptr != first) {
                self.read_fresh(input, first)?;
            }
        }
        self.read_fresh(input, ptr)
    }

    /// If the page at `ptr` is the last one validated (what [`PageChecker::read`] returns
    /// for it without reading anything): the lowest offset in it where a record starts
    /// with no more page checks (past the header, and not where a continuation belongs).
    #[inline]
    pub(crate) fn cached_first_free(&self, ptr: Lsn) -> Option<u32> {
        (self.last_ptr == ptr.0).then_some(self.last_first_free)
    }

    fn read_fresh(&mut self, input: &Input, ptr: Lsn) -> Result<PageInfo, PageStep> {
        let short = SIZE_OF_SHORT_PHD as u64;
        let b: [u8; 24] = input.array(ptr).ok_or(PageStep::Need(ptr + short))?;
        let info = super::page::u16_at(&b, 2);
        let size = super::page::header_size(info);
        let full = input.bytes(ptr, size as usize).ok_or(PageStep::Need(ptr + u64::from(size)))?;
        let header = PageHeader::parse(&full).map_err(|_| PageStep::Need(ptr + u64::from(size)))?;
        self.validate(ptr, &header).map_err(PageStep::Fault)?;
        self.cur_seg = Some(ptr.segno(self.seg_size));
        let page = PageInfo { ptr, header };
        self.last = Some(page);
        self.last_ptr = ptr.0;
        self.last_first_free = header.size() + u32::from(header.is_contrecord());
        Ok(page)
    }

    /// xlogreader.c: XLogReaderValidatePageHeader.
    fn validate(&mut self, ptr: Lsn, h: &PageHeader) -> Result<(), WalErrorKind> {
        let offset = ptr.segment_offset(self.seg_size);
        let (tli, seg_size) = (self.file_tli, self.seg_size);
        let segment = move || segment_file_name(tli, ptr.segno(seg_size), seg_size);
        if h.magic != XLOG_PAGE_MAGIC {
            return Err(WalErrorKind::InvalidMagic { magic: h.magic, segment: segment(), offset });
        }
        if h.info & !XLP_ALL_FLAGS != 0 {
            return Err(WalErrorKind::InvalidInfoBits { info: h.info, segment: segment(), offset });
        }
        if let Some(long) = h.long {
            match self.sysid {
                Some(expected) if expected != long.sysid => {
                    return Err(WalErrorKind::SystemIdMismatch { found: long.sysid, expected });
                }
                _ => {}
            }
            if long.seg_size != self.seg_size.bytes() {
                return Err(WalErrorKind::IncorrectSegSize { found: long.seg_size });
            }
            if long.xlog_blcksz != XLOG_BLCKSZ {
                return Err(WalErrorKind::IncorrectBlcksz { found: long.xlog_blcksz });
            }
            self.sysid.get_or_insert(long.sysid);
        } else if offset == 0 {
            return Err(WalErrorKind::InvalidInfoBits { info: h.info, segment: segment(), offset });
        }
        if h.pageaddr != ptr {
            return Err(WalErrorKind::UnexpectedPageAddr {
                pageaddr: h.pageaddr,
                expected: ptr,
                segment: segment(),
                offset,
            });
        }
        if ptr > self.latest_page && h.tli.0 < self.latest_tli {
            return Err(WalErrorKind::OutOfSequenceTimeline {
                tli: h.tli.0,
                after: self.latest_tli,
                segment: segment(),
                offset,
            });
        }
        self.latest_page = ptr;
        self.latest_tli = h.tli.0;
        Ok(())
    }
}
