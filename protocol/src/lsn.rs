//! WAL positions and the units around them: `Lsn`, `TimeLineId`, `XLogSegNo`,
//! segment sizes and segment file names (`access/xlog_internal.h`).

use std::fmt;
use std::ops::{Add, Sub};
use std::str::FromStr;

/// Size of a WAL page (`XLOG_BLCKSZ`).
pub const XLOG_BLCKSZ: u32 = 8192;

/// A position in the WAL stream (`XLogRecPtr`), printed as PostgreSQL's `%X/%X`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `InvalidXLogRecPtr`.
    pub const INVALID: Lsn = Lsn(0);

    /// Whether this is `InvalidXLogRecPtr` (0/0).
    pub fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// Offset of this position inside its WAL page.
    pub fn page_offset(self) -> u32 {
        (self.0 % u64::from(XLOG_BLCKSZ)) as u32
    }

    /// The start of the page holding this position.
    pub fn page_start(self) -> Lsn {
        Lsn(self.0 - u64::from(self.page_offset()))
    }

    /// Offset of this position inside its segment (`XLogSegmentOffset`).
    pub fn segment_offset(self, seg_size: WalSegSize) -> u32 {
        (self.0 % u64::from(seg_size.bytes())) as u32
    }

    /// The segment holding this position (`XLByteToSeg`).
    pub fn segno(self, seg_size: WalSegSize) -> XLogSegNo {
        XLogSegNo(self.0 / u64::from(seg_size.bytes()))
    }

    /// The segment holding the byte just before this position (`XLByteToPrevSeg`).
    pub fn prev_segno(self, seg_size: WalSegSize) -> XLogSegNo {
        XLogSegNo(self.0.saturating_sub(1) / u64::from(seg_size.bytes()))
    }

    /// The start of the segment holding this position.
    pub fn segment_start(self, seg_size: WalSegSize) -> Lsn {
        Lsn(self.0 - u64::from(self.segment_offset(seg_size)))
    }

    /// Rounded up to a multiple of 8 (`MAXALIGN`).
    pub fn maxalign(self) -> Lsn {
        Lsn((self.0 + 7) & !7)
    }

    /// `self + n`, or `None` on overflow.
    pub fn checked_add(self, n: u64) -> Option<Lsn> {
        self.0.checked_add(n).map(Lsn)
    }

    /// The number of bytes from `earlier` to `self` (0 if `earlier` is later).
    pub fn saturating_distance(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Where byte `k` of a record starting at `self` lies, skipping the page headers the
    /// record's continuation crosses, as `CopyXLogRecordToWAL` lays records out (a long
    /// header of 40 bytes on a segment's first page, 24 elsewhere).
    pub fn add_record_bytes(self, k: u64, seg_size: WalSegSize) -> Lsn {
        let (mut pos, mut left) = (self, k);
        loop {
            let room = u64::from(XLOG_BLCKSZ - pos.page_offset());
            if left < room {
                return pos + left;
            }
            left -= room;
            let page = pos + room;
            pos = page + if page.segment_offset(seg_size) == 0 { 40 } else { 24 };
        }
    }

    /// The high and low halves, as PostgreSQL prints them.
    pub fn halves(self) -> (u32, u32) {
        ((self.0 >> 32) as u32, self.0 as u32)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (hi, lo) = self.halves();
        write!(f, "{hi:X}/{lo:X}")
    }
}

/// An LSN that is not `%X/%X`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN \"{0}\"")]
pub struct ParseLsnError(pub String);

impl FromStr for Lsn {
    type Err = ParseLsnError;

    /// Parses `%X/%X`: one to eight hex digits on each side, nothing else.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLsnError(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(h, 16).ok()
        };
        let (hi, lo) = (half(hi).ok_or_else(err)?, half(lo).ok_or_else(err)?);
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl Add<u64> for Lsn {
    type Output = Lsn;
    fn add(self, rhs: u64) -> Lsn {
        Lsn(self.0 + rhs)
    }
}

impl Sub<Lsn> for Lsn {
    type Output = u64;
    fn sub(self, rhs: Lsn) -> u64 {
        self.0 - rhs.0
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

impl From<Lsn> for u64 {
    fn from(l: Lsn) -> Self {
        l.0
    }
}

/// A timeline id (`TimeLineID`). Timeline 0 does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeLineId(pub u32);

impl fmt::Display for TimeLineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A transaction id (`TransactionId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Xid(pub u32);

impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A WAL segment number (`XLogSegNo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XLogSegNo(pub u64);

impl XLogSegNo {
    /// The LSN of this segment's first byte (`XLogSegNoOffsetToRecPtr` with offset 0).
    pub fn start_lsn(self, seg_size: WalSegSize) -> Lsn {
        Lsn(self.0 * u64::from(seg_size.bytes()))
    }

    /// The next segment.
    pub fn next(self) -> XLogSegNo {
        XLogSegNo(self.0 + 1)
    }
}

/// A WAL segment size: a power of two from 1 MB to 1 GB (`IsValidWalSegSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalSegSize(u32);

/// A segment size PostgreSQL does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WAL segment size {0}: must be a power of two between 1 MB and 1 GB")]
pub struct InvalidSegSize(pub u64);

impl WalSegSize {
    /// Smallest allowed size (`WalSegMinSize`).
    pub const MIN: u32 = 1024 * 1024;
    /// Largest allowed size (`WalSegMaxSize`).
    pub const MAX: u32 = 1024 * 1024 * 1024;
    /// PostgreSQL's default, 16 MB.
    pub const DEFAULT: WalSegSize = WalSegSize(16 * 1024 * 1024);

    /// Validates a size in bytes.
    ///
    /// # Errors
    /// [`InvalidSegSize`] unless it is a power of two in 1 MB ..= 1 GB.
    pub fn new(bytes: u64) -> Result<Self, InvalidSegSize> {
        if bytes.is_power_of_two() && (u64::from(Self::MIN)..=u64::from(Self::MAX)).contains(&bytes)
        {
            Ok(WalSegSize(bytes as u32))
        } else {
            Err(InvalidSegSize(bytes))
        }
    }

    /// The size in bytes.
    pub fn bytes(self) -> u32 {
        self.0
    }

    /// Segments per 4 GB "xlogid" (`XLogSegmentsPerXLogId`).
    pub fn segments_per_xlogid(self) -> u64 {
        0x1_0000_0000 / u64::from(self.0)
    }

    /// As `SHOW wal_segment_size` prints it (`16MB`, `1GB`).
    pub fn show(self) -> String {
        let mb = self.0 / (1024 * 1024);
        if mb >= 1024 && mb % 1024 == 0 {
            format!("{}GB", mb / 1024)
        } else {
            format!("{mb}MB")
        }
    }
}

impl Default for WalSegSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The file name of a WAL segment (`XLogFileName`): `%08X%08X%08X`.
pub fn segment_file_name(tli: TimeLineId, segno: XLogSegNo, seg_size: WalSegSize) -> String {
    let per = seg_size.segments_per_xlogid();
    format!("{:08X}{:08X}{:08X}", tli.0, segno.0 / per, segno.0 % per)
}

/// The file name of a timeline history file (`TLHistoryFileName`).
pub fn history_file_name(tli: TimeLineId) -> String {
    format!("{:08X}.history", tli.0)
}

/// Whether `name` looks like a WAL segment file name (`IsXLogFileName`): 24 upper-case
/// hex digits, nothing else.
pub fn is_segment_file_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// Parses a WAL segment file name (`XLogFromFileName`), ignoring a `.partial` suffix.
/// Returns `None` for anything that is not 24 upper-case hex digits naming a valid segment.
pub fn parse_segment_file_name(
    name: &str,
    seg_size: WalSegSize,
) -> Option<(TimeLineId, XLogSegNo)> {
    let name = name.strip_suffix(".partial").unwrap_or(name);
    if !is_segment_file_name(name) {
        return None;
    }
    let field = |r: std::ops::Range<usize>| u32::from_str_radix(&name[r], 16).ok();
    let (tli, log, seg) = (field(0..8)?, field(8..16)?, field(16..24)?);
    let per = seg_size.segments_per_xlogid();
    if tli == 0 || u64::from(seg) >= per {
        return None;
    }
    Some((TimeLineId(tli), XLogSegNo(u64::from(log) * per + u64::from(seg))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_display_matches_postgres() {
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x0408_EDA8).to_string(), "0/408EDA8");
        assert_eq!(Lsn(0x5_0000_0000).to_string(), "5/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn lsn_parse_rejects_malformed() {
        for bad in ["", "/", "0/", "/0", "0", "0/0/0", "g/0", "123456789/0", "0/ 1", "+1/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
        assert_eq!("16/B374D848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("0/01000028".parse::<Lsn>().unwrap(), Lsn(0x0100_0028));
    }

    #[test]
    fn segment_names() {
        let s16 = WalSegSize::DEFAULT;
        assert_eq!(segment_file_name(TimeLineId(1), XLogSegNo(1), s16), "000000010000000000000001");
        assert_eq!(
            segment_file_name(TimeLineId(2), XLogSegNo(256), s16),
            "000000020000000100000000"
        );
        let s1 = WalSegSize::new(1 << 20).unwrap();
        assert_eq!(
            segment_file_name(TimeLineId(1), XLogSegNo(4096), s1),
            "000000010000000100000000"
        );
        assert_eq!(Lsn(0x0300_0000).segno(s16), XLogSegNo(3));
        assert_eq!(Lsn(0x0300_0000).prev_segno(s16), XLogSegNo(2));
        assert_eq!(history_file_name(TimeLineId(2)), "00000002.history");
        let s1 = WalSegSize::new(1 << 20).unwrap();
        assert_eq!(Lsn(0x1FF0).add_record_bytes(15, s1), Lsn(0x1FFF));
        assert_eq!(Lsn(0x1FF0).add_record_bytes(16, s1), Lsn(0x2018));
        assert_eq!(Lsn(0xFFFF0).add_record_bytes(16, s1), Lsn(0x100028));
        assert_eq!(s16.show(), "16MB");
        assert_eq!(WalSegSize::new(1 << 30).unwrap().show(), "1GB");
        assert!(WalSegSize::new(3 << 20).is_err());
        assert!(WalSegSize::new(1 << 19).is_err());
        assert!(WalSegSize::new(1 << 31).is_err());
        assert_eq!(parse_segment_file_name("00000001000000000000000G", s16), None);
        assert_eq!(parse_segment_file_name("000000010000000000000100", s16), None);
    }

    fn seg_sizes() -> impl Strategy<Value = WalSegSize> {
        (20u32..=30).prop_map(|shift| WalSegSize::new(1u64 << shift).unwrap())
    }

    proptest! {
        #[test]
        fn lsn_round_trips(v in any::<u64>()) {
            prop_assert_eq!(Lsn(v).to_string().parse::<Lsn>().unwrap(), Lsn(v));
        }

        #[test]
        fn segment_name_round_trips(tli in 1u32.., seg in 0u64..(1 << 40), size in seg_sizes()) {
            let segno = XLogSegNo(seg % (u64::from(u32::MAX) * size.segments_per_xlogid()));
            let name = segment_file_name(TimeLineId(tli), segno, size);
            prop_assert_eq!(parse_segment_file_name(&name, size), Some((TimeLineId(tli), segno)));
            let partial = format!("{name}.partial");
            prop_assert_eq!(parse_segment_file_name(&partial, size), Some((TimeLineId(tli), segno)));
        }

        #[test]
        fn segment_arithmetic_is_consistent(v in any::<u64>(), size in seg_sizes()) {
            let l = Lsn(v);
            prop_assert_eq!(l.segno(size).start_lsn(size), l.segment_start(size));
            prop_assert_eq!(l.segment_start(size) + u64::from(l.segment_offset(size)), l);
            prop_assert!(l.page_offset() < XLOG_BLCKSZ);
        }
    }
}
