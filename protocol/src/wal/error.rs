//! Errors of the WAL decoder, with the exact texts `xlogreader.c` of PostgreSQL 15 reports.

use crate::lsn::Lsn;

/// A WAL decoding failure: where decoding stopped and why.
///
/// `lsn` is the position of the record that could not be read (`currRecPtr`): the start
/// of the record being decoded, or where the next record was expected. `Display` prints
/// only xlogreader.c's message, which pg_waldump shows after `error in WAL record at X/X: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct WalError {
    /// The record that could not be read.
    pub lsn: Lsn,
    /// What went wrong.
    pub kind: WalErrorKind,
}

impl WalError {
    /// Whether this is the ordinary end of WAL rather than corruption: zeros where a record
    /// header should be (`wanted 24, got 0`), a zeroed page (magic 0000), or a page of a
    /// recycled segment (a page address older than expected).
    pub fn is_end_of_wal(&self) -> bool {
        match &self.kind {
            WalErrorKind::InvalidRecordLength { got, .. } => *got == 0,
            WalErrorKind::InvalidMagic { magic, .. } => *magic == 0,
            WalErrorKind::UnexpectedPageAddr { pageaddr, expected, .. } => pageaddr < expected,
            _ => false,
        }
    }
}

/// The faults `xlogreader.c` detects, each printed with PostgreSQL 15's message.
///
/// `at` fields are the LSN PostgreSQL prints, which is not always the record's: the block
/// header checks of `DecodeXLogRecord` print `ReadRecPtr`, the last record returned
/// before this one (0/0 if none), exactly as PostgreSQL 15 does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalErrorKind {
    /// `xl_tot_len` below the header size (zeros at the end of WAL give `got 0`).
    #[error("invalid record length at {at}: wanted {wanted}, got {got}")]
    InvalidRecordLength {
        /// The record position.
        at: Lsn,
        /// `SizeOfXLogRecord`.
        wanted: u32,
        /// `xl_tot_len` as found.
        got: u32,
    },
    /// `xl_rmid` is neither built-in nor custom.
    #[error("invalid resource manager ID {rmid} at {at}")]
    InvalidRmgrId {
        /// The id found.
        rmid: u8,
        /// The record position.
        at: Lsn,
    },
    /// `xl_prev` is not the previous record (or, for the first record, not before it).
    #[error("record with incorrect prev-link {prev} at {at}")]
    IncorrectPrevLink {
        /// `xl_prev` as found.
        prev: Lsn,
        /// The record position.
        at: Lsn,
    },
    /// The CRC-32C does not match.
    #[error("incorrect resource manager data checksum in record at {at}")]
    IncorrectChecksum {
        /// The record position.
        at: Lsn,
    },
    /// A page header without `XLOG_PAGE_MAGIC`.
    #[error("invalid magic number {magic:04X} in log segment {segment}, offset {offset}")]
    InvalidMagic {
        /// `xlp_magic` as found.
        magic: u16,
        /// The segment file name.
        segment: String,
        /// The page's offset in the segment.
        offset: u32,
    },
    /// Unknown `xlp_info` bits, or no long header on a segment's first page.
    #[error("invalid info bits {info:04X} in log segment {segment}, offset {offset}")]
    InvalidInfoBits {
        /// `xlp_info` as found.
        info: u16,
        /// The segment file name.
        segment: String,
        /// The page's offset in the segment.
        offset: u32,
    },
    /// A long page header naming another system.
    #[error(
        "WAL file is from different database system: WAL file database system identifier \
         is {found}, pg_control database system identifier is {expected}"
    )]
    SystemIdMismatch {
        /// `xlp_sysid` as found.
        found: u64,
        /// The system identifier expected.
        expected: u64,
    },
    /// A long page header with another segment size.
    #[error("WAL file is from different database system: incorrect segment size in page header")]
    IncorrectSegSize {
        /// `xlp_seg_size` as found.
        found: u32,
    },
    /// A long page header with another WAL block size.
    #[error("WAL file is from different database system: incorrect XLOG_BLCKSZ in page header")]
    IncorrectBlcksz {
        /// `xlp_xlog_blcksz` as found.
        found: u32,
    },
    /// A page whose `xlp_pageaddr` is not its position (a recycled segment, if older).
    #[error("unexpected pageaddr {pageaddr} in log segment {segment}, offset {offset}")]
    UnexpectedPageAddr {
        /// `xlp_pageaddr` as found.
        pageaddr: Lsn,
        /// The page's position.
        expected: Lsn,
        /// The segment file name.
        segment: String,
        /// The page's offset in the segment.
        offset: u32,
    },
    /// A page whose timeline is older than the previous page's.
    #[error(
        "out-of-sequence timeline ID {tli} (after {after}) in log segment {segment}, offset {offset}"
    )]
    OutOfSequenceTimeline {
        /// `xlp_tli` as found.
        tli: u32,
        /// The previous page's timeline.
        after: u32,
        /// The segment file name.
        segment: String,
        /// The page's offset in the segment.
        offset: u32,
    },
    /// A start position inside a page header (or not MAXALIGNed).
    #[error("invalid record offset at {at}")]
    InvalidRecordOffset {
        /// The position.
        at: Lsn,
    },
    /// A record was expected where the page says continuation data lies.
    #[error("contrecord is requested by {at}")]
    ContrecordRequested {
        /// The position.
        at: Lsn,
    },
    /// The page after a record's first part lacks `XLP_FIRST_IS_CONTRECORD`.
    #[error("there is no contrecord flag at {at}")]
    NoContrecordFlag {
        /// The record position.
        at: Lsn,
    },
    /// `xlp_rem_len` disagrees with the record's remaining length.
    #[error("invalid contrecord length {rem_len} (expected {expected}) at {at}")]
    InvalidContrecordLength {
        /// `xlp_rem_len` as found.
        rem_len: u32,
        /// The bytes still expected.
        expected: i64,
        /// The record position.
        at: Lsn,
    },
    /// Block ids not strictly increasing.
    #[error("out-of-order block_id {block_id} at {at}")]
    OutOfOrderBlockId {
        /// The block id.
        block_id: u8,
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// A block id above `XLR_MAX_BLOCK_ID` and not a special id.
    #[error("invalid block_id {block_id} at {at}")]
    InvalidBlockId {
        /// The block id.
        block_id: u8,
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// `BKPBLOCK_HAS_DATA` with a zero data length.
    #[error("BKPBLOCK_HAS_DATA set, but no data included at {at}")]
    HasDataButNoData {
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// A data length without `BKPBLOCK_HAS_DATA`.
    #[error("BKPBLOCK_HAS_DATA not set, but data length is {data_len} at {at}")]
    DataWithoutHasData {
        /// The data length.
        data_len: u16,
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// `BKPIMAGE_HAS_HOLE` with an empty hole or a full-size image.
    #[error(
        "BKPIMAGE_HAS_HOLE set, but hole offset {hole_offset} length {hole_length} block image \
         length {bimg_len} at {at}"
    )]
    HoleInconsistent {
        /// `hole_offset`.
        hole_offset: u16,
        /// `hole_length`.
        hole_length: u16,
        /// `bimg_len`.
        bimg_len: u16,
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// A hole without `BKPIMAGE_HAS_HOLE`.
    #[error(
        "BKPIMAGE_HAS_HOLE not set, but hole offset {hole_offset} length {hole_length} at {at}"
    )]
    HoleWithoutFlag {
        /// `hole_offset`.
        hole_offset: u16,
        /// `hole_length`.
        hole_length: u16,
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// A compressed image as large as a page.
    #[error("BKPIMAGE_COMPRESSED set, but block image length {bimg_len} at {at}")]
    CompressedFullSize {
        /// `bimg_len`.
        bimg_len: u16,
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// An uncompressed image without hole that is not a page. PostgreSQL 15 prints the
    /// block's data length here, not the image length; so do we.
    #[error(
        "neither BKPIMAGE_HAS_HOLE nor BKPIMAGE_COMPRESSED set, but block image length is \
         {data_len} at {at}"
    )]
    ImageLengthInconsistent {
        /// The block's `data_len` (sic).
        data_len: u16,
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// `BKPBLOCK_SAME_REL` on the first block.
    #[error("BKPBLOCK_SAME_REL set but no previous rel at {at}")]
    SameRelWithoutPrevious {
        /// `ReadRecPtr`.
        at: Lsn,
    },
    /// The block headers and lengths do not add up to `xl_tot_len`.
    #[error("record with invalid length at {at}")]
    InvalidLength {
        /// `ReadRecPtr`.
        at: Lsn,
    },
}
