//! Building a record's bytes from its parts (`xloginsert.c: XLogRecordAssemble`): block
//! headers, origin, top-level xid, main data header, then the payloads, then the CRC.

use bytes::Bytes;

use super::body::{check_image, encode_record_header};
use super::crc::record_crc;
use super::record::*;
use super::rmgr;
use crate::lsn::{Lsn, Xid};

/// A record to append: what a caller of `XLogInsert` registers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordSpec {
    /// Resource manager id (built-in 0..=21 or custom 128..=255).
    pub rmid: u8,
    /// `xl_info`: the resource manager's high nibble plus `XLR_SPECIAL_REL_UPDATE` /
    /// `XLR_CHECK_CONSISTENCY`.
    pub info: u8,
    /// `xl_xid`.
    pub xid: Xid,
    /// Block references with strictly increasing ids. `fork_flags` contributes its fork
    /// number and `BKPBLOCK_WILL_INIT`; `HAS_IMAGE`, `HAS_DATA` and `SAME_REL` are derived.
    pub blocks: Vec<BlockRef>,
    /// Replication origin.
    pub origin: Option<u16>,
    /// Top-level transaction id of a subtransaction's first record.
    pub toplevel_xid: Option<Xid>,
    /// Main data.
    pub main_data: Bytes,
}

/// A record the encoder refuses to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Resource manager ids 22..=127 do not exist.
    #[error("invalid resource manager ID {0}")]
    InvalidRmgr(u8),
    /// Block ids must be at most 32 and strictly increasing.
    #[error("invalid or out-of-order block_id {0}")]
    BlockId(u8),
    /// Block data longer than 65535 bytes.
    #[error("block {0} data too long: {1} bytes")]
    BlockDataTooLong(u8, usize),
    /// An image PostgreSQL would reject.
    #[error("block {block}: invalid image: {reason}")]
    Image {
        /// The block id.
        block: u8,
        /// The reader's complaint.
        reason: String,
    },
    /// `xl_tot_len` would not fit in 32 bits.
    #[error("record too long: {0} bytes")]
    TooLong(u64),
    /// The start position is inside a page header or not MAXALIGNed.
    #[error("invalid start position {0}")]
    BadStart(Lsn),
    /// `append_overwritten` needs a record that crosses the current page.
    #[error("record of {0} bytes does not cross the page")]
    FitsOnPage(u32),
}

/// The blocks as they will be written and decoded: `HAS_IMAGE`, `HAS_DATA` and `SAME_REL`
/// derived from the contents (`SAME_REL` when the relation equals the previous block's).
///
/// # Errors
/// [`EncodeError`] for bad ids, oversized data or images PostgreSQL would reject.
pub fn normalize_blocks(blocks: &[BlockRef]) -> Result<Vec<BlockRef>, EncodeError> {
    let mut out: Vec<BlockRef> = Vec::with_capacity(blocks.len());
    for b in blocks {
        if b.id > XLR_MAX_BLOCK_ID || out.last().is_some_and(|p| p.id >= b.id) {
            return Err(EncodeError::BlockId(b.id));
        }
        let data_len = u16::try_from(b.data.len())
            .map_err(|_| EncodeError::BlockDataTooLong(b.id, b.data.len()))?;
        let mut flags = b.fork_flags & (BKPBLOCK_FORK_MASK | BKPBLOCK_WILL_INIT);
        if let Some(img) = &b.image {
            let image_err = |reason: String| EncodeError::Image { block: b.id, reason };
            let len = u16::try_from(img.data.len()).map_err(|_| image_err("too long".into()))?;
            let effective = img.hole_length;
            if !img.is_compressed() && effective != BLCKSZ.wrapping_sub(len) {
                return Err(image_err(format!("hole_length must be {}", BLCKSZ.wrapping_sub(len))));
            }
            if img.is_compressed() && img.bimg_info & BKPIMAGE_HAS_HOLE == 0 && effective != 0 {
                return Err(image_err("hole_length without BKPIMAGE_HAS_HOLE".into()));
            }
            check_image(img.bimg_info, img.hole_offset, effective, len, data_len, Lsn::INVALID)
                .map_err(|e| image_err(e.to_string()))?;
            flags |= BKPBLOCK_HAS_IMAGE;
        }
        if data_len > 0 {
            flags |= BKPBLOCK_HAS_DATA;
        }
        if out.last().is_some_and(|p| p.rnode == b.rnode) {
            flags |= BKPBLOCK_SAME_REL;
        }
        out.push(BlockRef { fork_flags: flags, ..b.clone() });
    }
    Ok(out)
}

/// Assembles the whole record (`xl_tot_len` bytes, CRC set) with `xl_prev = prev`.
///
/// # Errors
/// [`EncodeError`] if the record is invalid (see [`normalize_blocks`]).
pub fn assemble(spec: &RecordSpec, prev: Lsn) -> Result<(Vec<u8>, XLogRecordHeader), EncodeError> {
    if !rmgr::is_valid(spec.rmid) {
        return Err(EncodeError::InvalidRmgr(spec.rmid));
    }
    let blocks = normalize_blocks(&spec.blocks)?;
    let mut body = Vec::with_capacity(64 + spec.main_data.len());
    for b in &blocks {
        body.push(b.id);
        body.push(b.fork_flags);
        body.extend_from_slice(&(b.data.len() as u16).to_le_bytes());
        if let Some(img) = &b.image {
            body.extend_from_slice(&(img.data.len() as u16).to_le_bytes());
            body.extend_from_slice(&img.hole_offset.to_le_bytes());
            body.push(img.bimg_info);
            if img.is_compressed() && img.bimg_info & BKPIMAGE_HAS_HOLE != 0 {
                body.extend_from_slice(&img.hole_length.to_le_bytes());
            }
        }
        if b.fork_flags & BKPBLOCK_SAME_REL == 0 {
            for v in [b.rnode.spc_node, b.rnode.db_node, b.rnode.rel_node] {
                body.extend_from_slice(&v.to_le_bytes());
            }
        }
        body.extend_from_slice(&b.blkno.to_le_bytes());
    }
    if let Some(o) = spec.origin {
        body.push(XLR_BLOCK_ID_ORIGIN);
        body.extend_from_slice(&o.to_le_bytes());
    }
    if let Some(x) = spec.toplevel_xid {
        body.push(XLR_BLOCK_ID_TOPLEVEL_XID);
        body.extend_from_slice(&x.0.to_le_bytes());
    }
    let main_len = spec.main_data.len();
    if main_len > 255 {
        let len = u32::try_from(main_len).map_err(|_| EncodeError::TooLong(main_len as u64))?;
        body.push(XLR_BLOCK_ID_DATA_LONG);
        body.extend_from_slice(&len.to_le_bytes());
    } else if main_len > 0 {
        body.push(XLR_BLOCK_ID_DATA_SHORT);
        body.push(main_len as u8);
    }
    for b in &blocks {
        if let Some(img) = &b.image {
            body.extend_from_slice(&img.data);
        }
        body.extend_from_slice(&b.data);
    }
    body.extend_from_slice(&spec.main_data);
    let tot = body.len() as u64 + u64::from(SIZE_OF_XLOG_RECORD);
    let tot_len = u32::try_from(tot).map_err(|_| EncodeError::TooLong(tot))?;
    let mut header =
        XLogRecordHeader { tot_len, xid: spec.xid, prev, info: spec.info, rmid: spec.rmid, crc: 0 };
    let mut rec = Vec::with_capacity(tot as usize);
    encode_record_header(&header, &mut rec);
    header.crc = record_crc(&rec, &body);
    rec.truncate(20);
    rec.extend_from_slice(&header.crc.to_le_bytes());
    rec.extend_from_slice(&body);
    Ok((rec, header))
}
