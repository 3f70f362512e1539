//! WAL page headers (`access/xlog_internal.h`): the short header on every page and the
//! long header on the first page of a segment.

use crate::lsn::{Lsn, TimeLineId, XLOG_BLCKSZ};

/// `XLOG_PAGE_MAGIC` of PostgreSQL 15.
pub const XLOG_PAGE_MAGIC: u16 = 0xD110;
/// The page starts with the rest of a record begun on an earlier page.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// The page has a long header.
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// Backup blocks on this page may be removed (always set by a running server).
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// The record that should continue here was abandoned (crash recovery overwrote it).
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// All defined flag bits (`XLP_ALL_FLAGS`).
pub const XLP_ALL_FLAGS: u16 = 0x000F;
/// Size of a short page header (`SizeOfXLogShortPHD`, MAXALIGNed).
pub const SIZE_OF_SHORT_PHD: u32 = 24;
/// Size of a long page header (`SizeOfXLogLongPHD`, MAXALIGNed).
pub const SIZE_OF_LONG_PHD: u32 = 40;

/// The extra fields of a long page header (`XLogLongPageHeaderData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongHeader {
    /// `xlp_sysid`.
    pub sysid: u64,
    /// `xlp_seg_size`.
    pub seg_size: u32,
    /// `xlp_xlog_blcksz`.
    pub xlog_blcksz: u32,
}

/// A page header (`XLogPageHeaderData`, plus [`LongHeader`] when `XLP_LONG_HEADER` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// `xlp_magic`.
    pub magic: u16,
    /// `xlp_info` flags.
    pub info: u16,
    /// `xlp_tli`.
    pub tli: TimeLineId,
    /// `xlp_pageaddr`: the LSN of the page.
    pub pageaddr: Lsn,
    /// `xlp_rem_len`: bytes of a continued record still to come.
    pub rem_len: u32,
    /// The long header fields, if `XLP_LONG_HEADER` is set.
    pub long: Option<LongHeader>,
}

/// A page header could not be parsed: fewer bytes than its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page header needs {needed} bytes, got {got}")]
pub struct ShortPageHeader {
    /// Bytes needed.
    pub needed: u32,
    /// Bytes given.
    pub got: u32,
}

impl PageHeader {
    /// Parses a page header from the start of `bytes`. The long part is read when
    /// `xlp_info` has `XLP_LONG_HEADER`. No field is validated here.
    ///
    /// # Errors
    /// [`ShortPageHeader`] if `bytes` is shorter than the header it announces.
    pub fn parse(bytes: &[u8]) -> Result<PageHeader, ShortPageHeader> {
        let short = |needed: u32| ShortPageHeader { needed, got: bytes.len() as u32 };
        let b = bytes.get(..SIZE_OF_SHORT_PHD as usize).ok_or_else(|| short(SIZE_OF_SHORT_PHD))?;
        let info = u16_at(b, 2);
        let long = if info & XLP_LONG_HEADER != 0 {
            let l =
                bytes.get(..SIZE_OF_LONG_PHD as usize).ok_or_else(|| short(SIZE_OF_LONG_PHD))?;
            Some(LongHeader {
                sysid: u64_at(l, 24),
                seg_size: u32_at(l, 32),
                xlog_blcksz: u32_at(l, 36),
            })
        } else {
            None
        };
        Ok(PageHeader {
            magic: u16_at(b, 0),
            info,
            tli: TimeLineId(u32_at(b, 4)),
            pageaddr: Lsn(u64_at(b, 8)),
            rem_len: u32_at(b, 16),
            long,
        })
    }

    /// The header size (`XLogPageHeaderSize`): 40 with `XLP_LONG_HEADER`, else 24.
    pub fn size(&self) -> u32 {
        header_size(self.info)
    }

    /// Appends the header's bytes (24 or 40, padding zeroed) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.magic.to_le_bytes());
        out.extend_from_slice(&self.info.to_le_bytes());
        out.extend_from_slice(&self.tli.0.to_le_bytes());
        out.extend_from_slice(&self.pageaddr.0.to_le_bytes());
        out.extend_from_slice(&self.rem_len.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        if let Some(l) = self.long {
            out.extend_from_slice(&l.sysid.to_le_bytes());
            out.extend_from_slice(&l.seg_size.to_le_bytes());
            out.extend_from_slice(&l.xlog_blcksz.to_le_bytes());
        }
    }

    /// Whether `XLP_FIRST_IS_CONTRECORD` is set.
    pub fn is_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }

    /// Whether `XLP_FIRST_IS_OVERWRITE_CONTRECORD` is set.
    pub fn is_overwrite_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0
    }
}

/// The header size that `xlp_info` announces (`XLogPageHeaderSize`).
pub fn header_size(info: u16) -> u32 {
    if info & XLP_LONG_HEADER != 0 {
        SIZE_OF_LONG_PHD
    } else {
        SIZE_OF_SHORT_PHD
    }
}

/// Bytes left on the page after `lsn`.
pub(crate) fn page_remaining(lsn: Lsn) -> u32 {
    XLOG_BLCKSZ - lsn.page_offset()
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers() -> impl Strategy<Value = PageHeader> {
        let long = proptest::option::of((any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(sysid, seg_size, xlog_blcksz)| LongHeader { sysid, seg_size, xlog_blcksz },
        ));
        (any::<u16>(), any::<u16>(), any::<u32>(), any::<u64>(), any::<u32>(), long).prop_map(
            |(magic, info, tli, addr, rem_len, long)| PageHeader {
                magic,
                info: if long.is_some() { info | XLP_LONG_HEADER } else { info & !XLP_LONG_HEADER },
                tli: TimeLineId(tli),
                pageaddr: Lsn(addr),
                rem_len,
                long,
            },
        )
    }

    #[test]
    fn real_first_page_header() {
        // The first 40 bytes of a PostgreSQL 15 segment (1 MB segments).
        let mut b = vec![0x10, 0xD1, 0x06, 0x00, 1, 0, 0, 0];
        b.extend_from_slice(&0x0100_0000u64.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&7_300_000_000_000_000_000u64.to_le_bytes());
        b.extend_from_slice(&(1u32 << 20).to_le_bytes());
        b.extend_from_slice(&8192u32.to_le_bytes());
        let h = PageHeader::parse(&b).unwrap();
        assert_eq!(h.magic, XLOG_PAGE_MAGIC);
        assert_eq!(h.size(), 40);
        assert_eq!(h.long.unwrap().seg_size, 1 << 20);
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out, b);
        assert!(PageHeader::parse(&b[..30]).is_err());
    }

    proptest! {
        #[test]
        fn page_header_round_trips(h in headers()) {
            let mut out = Vec::new();
            h.encode(&mut out);
            prop_assert_eq!(out.len() as u32, h.size());
            prop_assert_eq!(PageHeader::parse(&out).unwrap(), h);
        }

        #[test]
        fn page_header_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PageHeader::parse(&b);
        }
    }
}
