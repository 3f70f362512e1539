//! A decoded record borrowed from the decoder ([`RecordView`]): the same fields as
//! [`DecodedRecord`], but payloads are slices of the bytes the decoder holds, so reading
//! one costs no allocation and no reference counting.

use bytes::Bytes;

use super::record::{
    BlockImage, BlockRef, DecodedRecord, RelFileNode, XLogRecordHeader, BKPBLOCK_FORK_MASK,
    BKPIMAGE_APPLY, BKPIMAGE_COMPRESS_LZ4, BKPIMAGE_COMPRESS_PGLZ, BKPIMAGE_COMPRESS_ZSTD,
    XLR_RMGR_INFO_MASK,
};
use crate::lsn::{Lsn, Xid};

/// The image header of a block reference (`bimg_info`, hole), without the image bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// `bimg_info` flags (`BKPIMAGE_*`).
    pub bimg_info: u8,
    /// Offset of the hole in the page (`hole_offset`).
    pub hole_offset: u16,
    /// Length of the hole (`hole_length`).
    pub hole_length: u16,
}

impl ImageHeader {
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

/// A block reference as offsets into its record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockSpan {
    pub id: u8,
    pub fork_flags: u8,
    pub rnode: RelFileNode,
    pub blkno: u32,
    pub image: Option<ImageHeader>,
    pub image_at: u32,
    pub image_len: u16,
    pub data_at: u32,
    pub data_len: u16,
}

/// Where the parts of a record body other than blocks are, as offsets into the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BodyLayout {
    pub origin: Option<u16>,
    pub toplevel_xid: Option<Xid>,
    pub main_at: u32,
    pub main_len: u32,
    /// Sum of the image lengths.
    pub fpi_len: u32,
}

/// Slices `[at, at + len)` of `rec`; [`super::body::parse_body`] checked that it is inside.
fn part(rec: &[u8], at: u32, len: usize) -> &[u8] {
    let at = at as usize;
    rec.get(at..at + len).unwrap_or_default()
}

/// A decoded record borrowed from the decoder until its next `poll`/`feed`
/// ([`super::WalDecoder::poll_ref`]).
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Where the record starts (`ReadRecPtr`).
    pub lsn: Lsn,
    /// The first byte after the record, before alignment (see [`DecodedRecord::end_lsn`]).
    pub end_lsn: Lsn,
    /// Where the next record starts (`EndRecPtr`): `end_lsn` MAXALIGNed, or the next
    /// segment start after `XLOG_SWITCH`.
    pub next_lsn: Lsn,
    /// The fixed header.
    pub header: XLogRecordHeader,
    /// Replication origin (`XLR_BLOCK_ID_ORIGIN`), if any.
    pub origin: Option<u16>,
    /// Top-level transaction id (`XLR_BLOCK_ID_TOPLEVEL_XID`), if any.
    pub toplevel_xid: Option<Xid>,
    /// The whole record, `xl_tot_len` bytes, header included.
    pub bytes: &'a [u8],
    spans: &'a [BlockSpan],
    main_at: u32,
    main_len: u32,
    fpi_len: u32,
}

/// One block reference of a [`RecordView`] (`DecodedBkpBlock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockView<'a> {
    /// The block id (0..=32).
    pub id: u8,
    /// The raw `fork_flags` byte.
    pub fork_flags: u8,
    /// The relation.
    pub rnode: RelFileNode,
    /// The block number.
    pub blkno: u32,
    /// The image header and the image bytes as stored (compressed if flagged), if any.
    pub image: Option<(ImageHeader, &'a [u8])>,
    /// The block's data (empty unless `BKPBLOCK_HAS_DATA`).
    pub data: &'a [u8],
}

impl BlockView<'_> {
    /// The fork number (0 main, 1 fsm, 2 vm, 3 init).
    pub fn fork(&self) -> u8 {
        self.fork_flags & BKPBLOCK_FORK_MASK
    }
}

impl<'a> RecordView<'a> {
    pub(crate) fn new(
        lsn: Lsn,
        end_lsn: Lsn,
        next_lsn: Lsn,
        header: XLogRecordHeader,
        bytes: &'a [u8],
        spans: &'a [BlockSpan],
        layout: BodyLayout,
    ) -> Self {
        RecordView {
            lsn,
            end_lsn,
            next_lsn,
            header,
            origin: layout.origin,
            toplevel_xid: layout.toplevel_xid,
            bytes,
            spans,
            main_at: layout.main_at,
            main_len: layout.main_len,
            fpi_len: layout.fpi_len,
        }
    }

    /// The resource-manager part of `xl_info`.
    pub fn rmgr_info(&self) -> u8 {
        self.header.info & XLR_RMGR_INFO_MASK
    }

    /// Total bytes of full-page images (`fpi_len` in pg_waldump's `XLogRecordLen`).
    pub fn fpi_len(&self) -> u32 {
        self.fpi_len
    }

    /// The record length as pg_waldump prints `len (rec/tot)`'s first number.
    pub fn rec_len(&self) -> u32 {
        self.header.tot_len - self.fpi_len
    }

    /// The main data.
    pub fn main_data(&self) -> &'a [u8] {
        part(self.bytes, self.main_at, self.main_len as usize)
    }

    /// How many block references the record has.
    pub fn block_count(&self) -> usize {
        self.spans.len()
    }

    /// Whether any block reference carries a full-page image.
    pub fn has_image(&self) -> bool {
        self.spans.iter().any(|b| b.image.is_some())
    }

    /// The block references in id order.
    pub fn blocks(&self) -> impl ExactSizeIterator<Item = BlockView<'a>> + 'a {
        let rec = self.bytes;
        self.spans.iter().map(move |b| BlockView {
            id: b.id,
            fork_flags: b.fork_flags,
            rnode: b.rnode,
            blkno: b.blkno,
            image: b.image.map(|h| (h, part(rec, b.image_at, usize::from(b.image_len)))),
            data: part(rec, b.data_at, usize::from(b.data_len)),
        })
    }

    /// An owned [`DecodedRecord`] (copies the record's bytes once).
    pub fn to_owned_record(self) -> DecodedRecord {
        self.to_shared(&Bytes::copy_from_slice(self.bytes))
    }

    /// An owned [`DecodedRecord`] whose payloads are slices of `rec`, which must hold the
    /// same bytes as [`RecordView::bytes`].
    pub(crate) fn to_shared(self, rec: &Bytes) -> DecodedRecord {
        let slice = |at: u32, len: usize| {
            let at = at as usize;
            if at + len <= rec.len() {
                rec.slice(at..at + len)
            } else {
                Bytes::new()
            }
        };
        let blocks = self
            .spans
            .iter()
            .map(|b| BlockRef {
                id: b.id,
                fork_flags: b.fork_flags,
                rnode: b.rnode,
                blkno: b.blkno,
                image: b.image.map(|h| BlockImage {
                    bimg_info: h.bimg_info,
                    hole_offset: h.hole_offset,
                    hole_length: h.hole_length,
                    data: slice(b.image_at, usize::from(b.image_len)),
                }),
                data: slice(b.data_at, usize::from(b.data_len)),
            })
            .collect();
        DecodedRecord {
            lsn: self.lsn,
            end_lsn: self.end_lsn,
            header: self.header,
            blocks,
            origin: self.origin,
            toplevel_xid: self.toplevel_xid,
            main_data: slice(self.main_at, self.main_len as usize),
        }
    }
}
