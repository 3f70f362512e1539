//! Heap, Heap2 and Btree descriptions (`rmgrdesc/heapdesc.c`, `nbtdesc.c`).

use super::{w, Data};
use crate::wal::record::DecodedRecord;

// heapdesc.c: out_infobits
fn infobits(out: &mut Vec<u8>, bits: u8) {
    for (bit, name) in [
        (0x01, "IS_MULTI "),
        (0x02, "LOCK_ONLY "),
        (0x04, "EXCL_LOCK "),
        (0x08, "KEYSHR_LOCK "),
        (0x10, "KEYS_UPDATED "),
    ] {
        if bits & bit != 0 {
            out.extend_from_slice(name.as_bytes());
        }
    }
}

/// `heap_desc`; `info` is `xl_info` without the `XLR_INFO_MASK` bits.
pub(super) fn heap(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    match info & 0x70 {
        // xl_heap_insert { offnum, flags }
        0x00 => w!(out, "off {} flags 0x{:02X}", d.u16(0)?, d.u8(2)?),
        // xl_heap_delete { xmax, offnum, infobits_set, flags }
        0x10 => {
            w!(out, "off {} flags 0x{:02X} ", d.u16(4)?, d.u8(7)?);
            infobits(out, d.u8(6)?);
        }
        // xl_heap_update { old_xmax, old_offnum, old_infobits_set, flags, new_xmax, new_offnum }
        0x20 | 0x40 => {
            w!(out, "off {} xmax {} flags 0x{:02X} ", d.u16(4)?, d.u32(0)?, d.u8(7)?);
            infobits(out, d.u8(6)?);
            w!(out, "; new off {} xmax {}", d.u16(12)?, d.u32(8)?);
        }
        // xl_heap_truncate { dbId, nrelids, flags, relids[] }
        0x30 => {
            let (n, flags) = (d.u32(4)?, d.u8(8)?);
            if flags & 0x01 != 0 {
                out.extend_from_slice(b"cascade ");
            }
            if flags & 0x02 != 0 {
                out.extend_from_slice(b"restart_seqs ");
            }
            w!(out, "nrelids {n} relids");
            for i in 0..n as usize {
                w!(out, " {}", d.u32(12 + 4 * i)?);
            }
        }
        // xl_heap_confirm { offnum }, xl_heap_inplace { offnum }
        0x50 | 0x70 => w!(out, "off {}", d.u16(0)?),
        // xl_heap_lock { locking_xid, offnum, infobits_set, flags }
        0x60 => {
            w!(out, "off {}: xid {}: flags 0x{:02X} ", d.u16(4)?, d.u32(0)?, d.u8(7)?);
            infobits(out, d.u8(6)?);
        }
        _ => {}
    }
    Some(())
}

/// `heap2_desc`; `info` is `xl_info` without the `XLR_INFO_MASK` bits.
pub(super) fn heap2(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    match info & 0x70 {
        // xl_heap_prune { latestRemovedXid, nredirected, ndead }
        0x10 => {
            w!(out, "latestRemovedXid {} nredirected {} ndead {}", d.u32(0)?, d.u16(4)?, d.u16(6)?)
        }
        // xl_heap_vacuum { nunused }
        0x20 => w!(out, "nunused {}", d.u16(0)?),
        // xl_heap_freeze_page { cutoff_xid, ntuples }
        0x30 => w!(out, "cutoff xid {} ntuples {}", d.u32(0)?, d.u16(4)?),
        // xl_heap_visible { cutoff_xid, flags }
        0x40 => w!(out, "cutoff xid {} flags 0x{:02X}", d.u32(0)?, d.u8(4)?),
        // xl_heap_multi_insert { flags, ntuples, offsets[] }
        0x50 => w!(out, "{} tuples flags 0x{:02X}", d.u16(2)?, d.u8(0)?),
        // xl_heap_lock_updated { xmax, offnum, infobits_set, flags }
        0x60 => {
            w!(out, "off {}: xmax {}: flags 0x{:02X} ", d.u16(4)?, d.u32(0)?, d.u8(7)?);
            infobits(out, d.u8(6)?);
        }
        // xl_heap_new_cid { top_xid, cmin, cmax, combocid, target_node, target_tid }
        0x70 => {
            let r = d.rnode(16)?;
            let blk = (u32::from(d.u16(28)?) << 16) | u32::from(d.u16(30)?);
            w!(out, "rel {}/{}/{}; tid {}/{}", r.spc_node, r.db_node, r.rel_node, blk, d.u16(32)?);
            w!(out, "; cmin: {}, cmax: {}, combo: {}", d.u32(4)?, d.u32(8)?, d.u32(12)?);
        }
        _ => {}
    }
    Some(())
}

/// `btree_desc`; `info` is `xl_info` without the `XLR_INFO_MASK` bits.
pub(super) fn btree(out: &mut Vec<u8>, info: u8, d: Data<'_>, rec: &DecodedRecord) -> Option<()> {
    match info {
        // xl_btree_insert { offnum }
        0x00 | 0x10 | 0x20 | 0x50 => w!(out, "off {}", d.u16(0)?),
        // xl_btree_split { level, firstrightoff, newitemoff, postingoff }
        0x30 | 0x40 => w!(
            out,
            "level {}, firstrightoff {}, newitemoff {}, postingoff {}",
            d.u32(0)?,
            d.u16(4)?,
            d.u16(6)?,
            d.u16(8)?
        ),
        // xl_btree_dedup { nintervals }
        0x60 => w!(out, "nintervals {}", d.u16(0)?),
        // xl_btree_vacuum { ndeleted, nupdated }
        0xC0 => w!(out, "ndeleted {}; nupdated {}", d.u16(0)?, d.u16(2)?),
        // xl_btree_delete { latestRemovedXid, ndeleted, nupdated }
        0x70 => w!(
            out,
            "latestRemovedXid {}; ndeleted {}; nupdated {}",
            d.u32(0)?,
            d.u16(4)?,
            d.u16(6)?
        ),
        // xl_btree_mark_page_halfdead { poffset, leafblk, leftblk, rightblk, topparent }
        0xB0 => w!(
            out,
            "topparent {}; leaf {}; left {}; right {}",
            d.u32(16)?,
            d.u32(4)?,
            d.u32(8)?,
            d.u32(12)?
        ),
        // xl_btree_unlink_page
        0x80 | 0x90 => {
            let safexid = d.u64(16)?;
            w!(
                out,
                "left {}; right {}; level {}; safexid {}:{}; ",
                d.u32(0)?,
                d.u32(4)?,
                d.u32(8)?,
                safexid >> 32,
                safexid as u32
            );
            w!(
                out,
                "leafleft {}; leafright {}; leaftopparent {}",
                d.u32(24)?,
                d.u32(28)?,
                d.u32(32)?
            );
        }
        // xl_btree_newroot { rootblk, level }
        0xA0 => w!(out, "lev {}", d.u32(4)?),
        // xl_btree_reuse_page { node, block, latestRemovedFullXid }
        0xD0 => {
            let (r, fxid) = (d.rnode(0)?, d.u64(16)?);
            w!(
                out,
                "rel {}/{}/{}; latestRemovedXid {}:{}",
                r.spc_node,
                r.db_node,
                r.rel_node,
                fxid >> 32,
                fxid as u32
            );
        }
        // XLOG_BTREE_META_CLEANUP: xl_btree_metadata in block 0's data
        0xE0 => {
            let b = rec.blocks.iter().find(|b| b.id == 0)?;
            w!(out, "last_cleanup_num_delpages {}", Data(&b.data).u32(20)?);
        }
        _ => {}
    }
    Some(())
}
