//! A decoded WAL record (`access/xlogrecord.h`, `DecodedXLogRecord` in `xlogreader.h`):
//! the fixed header, the block references and the main data, sharing the bytes
//! they were decoded from.

use bytes::Bytes;

use crate::lsn::{Lsn, Xid};

/// Size of the fixed record header (`SizeOfXLogRecord`).
pub const SIZE_OF_XLOG_RECORD: u32 = 24;
/// Highest block id a record can reference (`XLR_MAX_BLOCK_ID`).
pub const XLR_MAX_BLOCK_ID: u8 = 32;
/// Block id marking short main data (`XLR_BLOCK_ID_DATA_SHORT`).
pub const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
/// Block id marking long main data (`XLR_BLOCK_ID_DATA_LONG`).
pub const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
/// Block id marking a replication origin (`XLR_BLOCK_ID_ORIGIN`).
pub const XLR_BLOCK_ID_ORIGIN: u8 = 253;
/// Block id marking a top-level transaction id (`XLR_BLOCK_ID_TOPLEVEL_XID`).
pub const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;

/// `xl_info` bits reserved for the WAL machinery (`XLR_INFO_MASK`).
pub const XLR_INFO_MASK: u8 = 0x0F;
/// `xl_info` bits for the resource manager (`XLR_RMGR_INFO_MASK`).
pub const XLR_RMGR_INFO_MASK: u8 = 0xF0;
/// `XLR_SPECIAL_REL_UPDATE`.
pub const XLR_SPECIAL_REL_UPDATE: u8 = 0x01;
/// `XLR_CHECK_CONSISTENCY`.
pub const XLR_CHECK_CONSISTENCY: u8 = 0x02;

/// Fork number bits of `fork_flags` (`BKPBLOCK_FORK_MASK`).
pub const BKPBLOCK_FORK_MASK: u8 = 0x0F;
/// `BKPBLOCK_HAS_IMAGE`.
pub const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
/// `BKPBLOCK_HAS_DATA`.
pub const BKPBLOCK_HAS_DATA: u8 = 0x20;
/// `BKPBLOCK_WILL_INIT`.
pub const BKPBLOCK_WILL_INIT: u8 = 0x40;
/// `BKPBLOCK_SAME_REL`.
pub const BKPBLOCK_SAME_REL: u8 = 0x80;

/// `BKPIMAGE_HAS_HOLE`.
pub const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// `BKPIMAGE_APPLY`.
pub const BKPIMAGE_APPLY: u8 = 0x02;
/// `BKPIMAGE_COMPRESS_PGLZ`.
pub const BKPIMAGE_COMPRESS_PGLZ: u8 = 0x04;
/// `BKPIMAGE_COMPRESS_LZ4`.
pub const BKPIMAGE_COMPRESS_LZ4: u8 = 0x08;
/// `BKPIMAGE_COMPRESS_ZSTD`.
pub const BKPIMAGE_COMPRESS_ZSTD: u8 = 0x10;

/// Size of a data page (`BLCKSZ`), the uncompressed size of a full-page image.
pub const BLCKSZ: u16 = 8192;

/// The fixed 24-byte record header (`XLogRecord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XLogRecordHeader {
    /// Total length of the record, header included (`xl_tot_len`).
    pub tot_len: u32,
    /// Transaction id (`xl_xid`).
    pub xid: Xid,
    /// Start of the previous record (`xl_prev`).
    pub prev: Lsn,
    /// Flag bits; the high nibble belongs to the resource manager (`xl_info`).
    pub info: u8,
    /// Resource manager id (`xl_rmid`).
    pub rmid: u8,
    /// CRC-32C of the record (`xl_crc`).
    pub crc: u32,
}

/// A relation file locator (`RelFileNode`: tablespace, database, relation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RelFileNode {
    /// Tablespace oid.
    pub spc_node: u32,
    /// Database oid.
    pub db_node: u32,
    /// Relation filenode.
    pub rel_node: u32,
}

/// A full-page image carried by a block reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockImage {
    /// `bimg_info` flags (`BKPIMAGE_*`).
    pub bimg_info: u8,
    /// Offset of the hole in the page (`hole_offset`).
    pub hole_offset: u16,
    /// Length of the hole (`hole_length`).
    pub hole_length: u16,
    /// The image bytes as stored in the record (compressed if a compression flag is set);
    /// `data.len()` is `bimg_len`.
    pub data: Bytes,
}

impl BlockImage {
    /// Whether the stored image is compressed (PGLZ, LZ4 or ZSTD).
    pub fn is_compressed(&self) -> bool {
        self.bimg_info & (BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD)
            != 0
    }

    /// Whether redo applies the image (`BKPIMAGE_APPLY`).
    pub fn apply(&self) -> bool {
        self.bimg_info & BKPIMAGE_APPLY != 0
    }
}

/// One block reference of a record (`DecodedBkpBlock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    /// The block id (0..=32); ids are strictly increasing within a record.
    pub id: u8,
    /// The raw `fork_flags` byte.
    pub fork_flags: u8,
    /// The relation (taken from the previous block when `BKPBLOCK_SAME_REL` is set).
    pub rnode: RelFileNode,
    /// The block number.
    pub blkno: u32,
    /// The full-page image, if any.
    pub image: Option<BlockImage>,
    /// The block's data (empty unless `BKPBLOCK_HAS_DATA`).
    pub data: Bytes,
}

impl BlockRef {
    /// The fork number (0 main, 1 fsm, 2 vm, 3 init).
    pub fn fork(&self) -> u8 {
        self.fork_flags & BKPBLOCK_FORK_MASK
    }

    /// Whether redo initializes the page (`BKPBLOCK_WILL_INIT`).
    pub fn will_init(&self) -> bool {
        self.fork_flags & BKPBLOCK_WILL_INIT != 0
    }
}

/// A whole decoded record. Payloads are `Bytes` slices of the fed WAL where the record
/// lay inside one page, or of one reassembly buffer where it crossed pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Where the record starts (`ReadRecPtr`).
    pub lsn: Lsn,
    /// The first byte after the record, before alignment (`EndRecPtr` is this, MAXALIGNed,
    /// or the next segment start after an `XLOG_SWITCH`).
    pub end_lsn: Lsn,
    /// The fixed header.
    pub header: XLogRecordHeader,
    /// Block references in id order.
    pub blocks: Vec<BlockRef>,
    /// Replication origin (`XLR_BLOCK_ID_ORIGIN`), if any.
    pub origin: Option<u16>,
    /// Top-level transaction id (`XLR_BLOCK_ID_TOPLEVEL_XID`), if any.
    pub toplevel_xid: Option<Xid>,
    /// The main data.
    pub main_data: Bytes,
}

impl DecodedRecord {
    /// The resource-manager part of `xl_info` (`XLogRecGetInfo(r) & ~XLR_INFO_MASK`).
    pub fn rmgr_info(&self) -> u8 {
        self.header.info & XLR_RMGR_INFO_MASK
    }

    /// Total bytes of full-page images (`fpi_len` in pg_waldump's `XLogRecordLen`).
    pub fn fpi_len(&self) -> u32 {
        self.blocks.iter().filter_map(|b| b.image.as_ref()).map(|i| i.data.len() as u32).sum()
    }

    /// The record length as pg_waldump prints `len (rec/tot)`'s first number.
    pub fn rec_len(&self) -> u32 {
        self.header.tot_len - self.fpi_len()
    }
}
