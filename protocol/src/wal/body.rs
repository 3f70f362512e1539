//! Decoding a record's body into block references, origin, top-level xid and main data
//! (`xlogreader.c: DecodeXLogRecord`), with PostgreSQL 15's consistency checks.

use super::error::WalErrorKind;
use super::page::{u32_at, u64_at};
use super::record::*;
use super::view::{BlockSpan, BodyLayout, ImageHeader};
use crate::lsn::{Lsn, Xid};

/// Parses the fixed 24-byte header (`XLogRecord`) at the start of `b`.
pub fn parse_record_header(b: &[u8]) -> Option<XLogRecordHeader> {
    let b = b.get(..SIZE_OF_XLOG_RECORD as usize)?;
    Some(XLogRecordHeader {
        tot_len: u32_at(b, 0),
        xid: Xid(u32_at(b, 4)),
        prev: Lsn(u64_at(b, 8)),
        info: b[16],
        rmid: b[17],
        crc: u32_at(b, 20),
    })
}

/// Appends the 24 header bytes of `h` to `out` (padding zeroed).
pub fn encode_record_header(h: &XLogRecordHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(&h.tot_len.to_le_bytes());
    out.extend_from_slice(&h.xid.0.to_le_bytes());
    out.extend_from_slice(&h.prev.0.to_le_bytes());
    out.extend_from_slice(&[h.info, h.rmid, 0, 0]);
    out.extend_from_slice(&h.crc.to_le_bytes());
}

/// A cursor over the header part of a record body: the bytes not read yet.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(*a)
    }
    fn u8(&mut self) -> Option<u8> {
        let (&a, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
}

/// Validates an image header as DecodeXLogRecord does; `hole_length` is the effective one
/// (`BLCKSZ - bimg_len`, wrapping, for uncompressed images).
pub(crate) fn check_image(
    bimg_info: u8,
    hole_offset: u16,
    hole_length: u16,
    bimg_len: u16,
    data_len: u16,
    at: Lsn,
) -> Result<(), WalErrorKind> {
    let compressed =
        bimg_info & (BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD) != 0;
    let has_hole = bimg_info & BKPIMAGE_HAS_HOLE != 0;
    if has_hole && (hole_offset == 0 || hole_length == 0 || bimg_len == BLCKSZ) {
        return Err(WalErrorKind::HoleInconsistent { hole_offset, hole_length, bimg_len, at });
    }
    if !has_hole && (hole_offset != 0 || hole_length != 0) {
        return Err(WalErrorKind::HoleWithoutFlag { hole_offset, hole_length, at });
    }
    if compressed && bimg_len == BLCKSZ {
        return Err(WalErrorKind::CompressedFullSize { bimg_len, at });
    }
    if !has_hole && !compressed && bimg_len != BLCKSZ {
        return Err(WalErrorKind::ImageLengthInconsistent { data_len, at });
    }
    Ok(())
}

/// Parses one block header (after its id) into a span whose payload offsets are filled
/// in later.
fn block_header(
    c: &mut Cursor<'_>,
    id: u8,
    prev_rel: Option<RelFileNode>,
    at: Lsn,
) -> Result<Option<BlockSpan>, WalErrorKind> {
    let Some(fork_flags) = c.u8() else { return Ok(None) };
    let Some(data_len) = c.u16() else { return Ok(None) };
    let has_data = fork_flags & BKPBLOCK_HAS_DATA != 0;
    if has_data && data_len == 0 {
        return Err(WalErrorKind::HasDataButNoData { at });
    }
    if !has_data && data_len != 0 {
        return Err(WalErrorKind::DataWithoutHasData { data_len, at });
    }
    let mut image = None;
    let mut bimg_len = 0;
    if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
        let (Some(len), Some(hole_offset), Some(bimg_info)) = (c.u16(), c.u16(), c.u8()) else {
            return Ok(None);
        };
        let compressed = bimg_info
            & (BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD)
            != 0;
        let hole_length = if !compressed {
            BLCKSZ.wrapping_sub(len)
        } else if bimg_info & BKPIMAGE_HAS_HOLE != 0 {
            let Some(h) = c.u16() else { return Ok(None) };
            h
        } else {
            0
        };
        check_image(bimg_info, hole_offset, hole_length, len, data_len, at)?;
        bimg_len = len;
        image = Some(ImageHeader { bimg_info, hole_offset, hole_length });
    }
    let rnode = if fork_flags & BKPBLOCK_SAME_REL == 0 {
        let (Some(spc_node), Some(db_node), Some(rel_node)) = (c.u32(), c.u32(), c.u32()) else {
            return Ok(None);
        };
        RelFileNode { spc_node, db_node, rel_node }
    } else {
        prev_rel.ok_or(WalErrorKind::SameRelWithoutPrevious { at })?
    };
    let Some(blkno) = c.u32() else { return Ok(None) };
    Ok(Some(BlockSpan {
        id,
        fork_flags,
        rnode,
        blkno,
        image,
        image_at: 0,
        image_len: bimg_len,
        data_at: 0,
        data_len,
    }))
}

/// `DecodeXLogRecord` without copying: checks the body of `rec` (exactly `xl_tot_len`
/// bytes, header included) and describes its blocks in `blocks` (cleared first) and the
/// rest in the returned layout, as offsets into `rec`.
///
/// # Errors
/// The `DecodeXLogRecord` faults: out-of-order or invalid block ids, inconsistent
/// data/image flags and lengths, `SAME_REL` on the first block, lengths not adding up.
#[inline(always)]
pub(crate) fn parse_body(
    rec: &[u8],
    read_rec_ptr: Lsn,
    blocks: &mut Vec<BlockSpan>,
) -> Result<BodyLayout, WalErrorKind> {
    match common_shape(rec, blocks) {
        Some(layout) => Ok(layout),
        None => parse_body_general(rec, read_rec_ptr, blocks),
    }
}

/// Header bytes of one block with neither image nor `SAME_REL` (id, fork_flags, data_len,
/// relation, block number) followed by the short main data's id and length.
const ONE_BLOCK_HEADERS: usize = 1 + 1 + 2 + 12 + 4 + 2;

/// The two commonest bodies, decoded with one length check each: short main data alone,
/// and block 0 without image or `SAME_REL` then short main data. Exactly what
/// [`parse_body_general`] returns for them; `None` for any other body (or a faulty one,
/// which the general path then reports).
#[inline(always)]
fn common_shape(rec: &[u8], blocks: &mut Vec<BlockSpan>) -> Option<BodyLayout> {
    const HDR: usize = SIZE_OF_XLOG_RECORD as usize;
    let body = rec.get(HDR..)?;
    match *body {
        [XLR_BLOCK_ID_DATA_SHORT, main_len, ref main @ ..]
            if main.len() == usize::from(main_len) =>
        {
            blocks.clear();
            Some(BodyLayout {
                main_at: HDR as u32 + 2,
                main_len: main_len.into(),
                ..Default::default()
            })
        }
        [0, fork_flags, d0, d1, ref rest @ ..]
            if fork_flags & (BKPBLOCK_HAS_IMAGE | BKPBLOCK_SAME_REL) == 0 =>
        {
            let (head, payload) = rest.split_first_chunk::<{ ONE_BLOCK_HEADERS - 4 }>()?;
            let data_len = u16::from_le_bytes([d0, d1]);
            if (fork_flags & BKPBLOCK_HAS_DATA != 0) != (data_len != 0)
                || head[16] != XLR_BLOCK_ID_DATA_SHORT
                || payload.len() != usize::from(data_len) + usize::from(head[17])
            {
                return None;
            }
            let u32_le = |i: usize| u32_at(head, i);
            let data_at = (HDR + ONE_BLOCK_HEADERS) as u32;
            blocks.clear();
            blocks.push(BlockSpan {
                id: 0,
                fork_flags,
                rnode: RelFileNode { spc_node: u32_le(0), db_node: u32_le(4), rel_node: u32_le(8) },
                blkno: u32_le(12),
                image: None,
                image_at: data_at,
                image_len: 0,
                data_at,
                data_len,
            });
            let main_at = data_at + u32::from(data_len);
            Some(BodyLayout { main_at, main_len: head[17].into(), ..Default::default() })
        }
        _ => None,
    }
}

/// [`parse_body`] for any body.
#[inline(never)]
fn parse_body_general(
    rec: &[u8],
    read_rec_ptr: Lsn,
    blocks: &mut Vec<BlockSpan>,
) -> Result<BodyLayout, WalErrorKind> {
    let at = read_rec_ptr;
    let short = || WalErrorKind::InvalidLength { at };
    blocks.clear();
    let body = rec.get(SIZE_OF_XLOG_RECORD as usize..).ok_or_else(short)?;
    let mut c = Cursor { rest: body };
    let mut layout = BodyLayout::default();
    let mut main_len = 0u64;
    let mut datatotal = 0u64;
    let mut max_id: i32 = -1;
    let mut prev_rel = None;
    while c.rest.len() as u64 > datatotal {
        let id = c.u8().ok_or_else(short)?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = u64::from(c.u8().ok_or_else(short)?);
                datatotal += main_len;
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = u64::from(c.u32().ok_or_else(short)?);
                datatotal += main_len;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => layout.origin = Some(c.u16().ok_or_else(short)?),
            XLR_BLOCK_ID_TOPLEVEL_XID => {
                layout.toplevel_xid = Some(Xid(c.u32().ok_or_else(short)?));
            }
            id if id <= XLR_MAX_BLOCK_ID => {
                if i32::from(id) <= max_id {
                    return Err(WalErrorKind::OutOfOrderBlockId { block_id: id, at });
                }
                max_id = i32::from(id);
                let b = block_header(&mut c, id, prev_rel, at)?.ok_or_else(short)?;
                if b.fork_flags & BKPBLOCK_SAME_REL == 0 {
                    prev_rel = Some(b.rnode);
                }
                datatotal += u64::from(b.data_len) + u64::from(b.image_len);
                blocks.push(b);
            }
            block_id => return Err(WalErrorKind::InvalidBlockId { block_id, at }),
        }
    }
    if c.rest.len() as u64 != datatotal {
        return Err(short());
    }
    // The payloads follow the headers in block order, then the main data; they add up to
    // the record length (checked above), so every offset below is inside `rec`.
    let mut pos = (rec.len() - c.rest.len()) as u32;
    for b in blocks.iter_mut() {
        b.image_at = pos;
        pos += u32::from(b.image_len);
        layout.fpi_len += u32::from(b.image_len);
        b.data_at = pos;
        pos += u32::from(b.data_len);
    }
    layout.main_at = pos;
    layout.main_len = main_len as u32;
    Ok(layout)
}
