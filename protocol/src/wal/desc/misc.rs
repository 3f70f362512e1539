//! Descriptions of the small resource managers: Storage, CLOG, Database, Tablespace,
//! RelMap, Sequence, CommitTs, Generic and LogicalMessage (`rmgrdesc/*desc.c`).

use super::{w, write_relpath, Data};

/// `smgr_desc` (`xl_smgr_create { rnode, forkNum }`, `xl_smgr_truncate { blkno, rnode, flags }`).
pub(super) fn smgr(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    match info {
        0x10 => {
            let (r, fork) = (d.rnode(0)?, d.i32(12)?);
            write_relpath(out, r, u8::try_from(fork).unwrap_or(u8::MAX));
        }
        0x20 => {
            let (blkno, r, flags) = (d.u32(0)?, d.rnode(4)?, d.i32(16)?);
            write_relpath(out, r, 0);
            w!(out, " to {blkno} blocks flags {flags}");
        }
        _ => {}
    }
    Some(())
}

/// `clog_desc`.
pub(super) fn clog(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    match info {
        0x00 => w!(out, "page {}", d.i32(0)?),
        0x10 => w!(out, "page {}; oldestXact {}", d.i32(0)?, d.u32(4)?),
        _ => {}
    }
    Some(())
}

/// `commit_ts_desc`.
pub(super) fn commit_ts(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    match info {
        0x00 => w!(out, "{}", d.i32(0)?),
        0x10 => w!(out, "pageno {}, oldestXid {}", d.i32(0)?, d.u32(4)?),
        _ => {}
    }
    Some(())
}

/// `dbase_desc`.
pub(super) fn dbase(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    match info {
        // xl_dbase_create_file_copy_rec { db_id, tablespace_id, src_db_id, src_tablespace_id }
        0x00 => w!(out, "copy dir {}/{} to {}/{}", d.u32(12)?, d.u32(8)?, d.u32(4)?, d.u32(0)?),
        // xl_dbase_create_wal_log_rec { db_id, tablespace_id }
        0x10 => w!(out, "create dir {}/{}", d.u32(4)?, d.u32(0)?),
        // xl_dbase_drop_rec { db_id, ntablespaces, tablespace_ids[] }
        0x20 => {
            let db = d.u32(0)?;
            out.extend_from_slice(b"dir");
            for i in 0..usize::try_from(d.i32(4)?).unwrap_or(0) {
                w!(out, " {}/{db}", d.u32(8 + 4 * i)?);
            }
        }
        _ => {}
    }
    Some(())
}

/// `tblspc_desc` (`xl_tblspc_create_rec { ts_id, ts_path[] }`, `xl_tblspc_drop_rec { ts_id }`).
pub(super) fn tblspc(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    match info {
        0x00 => {
            w!(out, "{} \"", d.u32(0)?);
            out.extend_from_slice(d.cstr(4, usize::MAX)?);
            out.push(b'"');
        }
        0x10 => w!(out, "{}", d.u32(0)?),
        _ => {}
    }
    Some(())
}

/// `relmap_desc` (`xl_relmap_update { dbid, tsid, nbytes, data[] }`).
pub(super) fn relmap(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    if info == 0x00 {
        w!(out, "database {} tablespace {} size {}", d.u32(0)?, d.u32(4)?, d.i32(8)?);
    }
    Some(())
}

/// `seq_desc` (`xl_seq_rec { node }`).
pub(super) fn seq(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    if info == 0x00 {
        let r = d.rnode(0)?;
        w!(out, "rel {}/{}/{}", r.spc_node, r.db_node, r.rel_node);
    }
    Some(())
}

/// `generic_desc`: `offset %u, length %u` for each page fragment of the main data.
pub(super) fn generic(out: &mut Vec<u8>, d: Data<'_>) -> Option<()> {
    let mut pos = 0usize;
    while pos < d.0.len() {
        let (offset, length) = (d.u16(pos)?, d.u16(pos + 2)?);
        pos += 4 + usize::from(length);
        if pos < d.0.len() {
            w!(out, "offset {offset}, length {length}; ");
        } else {
            w!(out, "offset {offset}, length {length}");
        }
    }
    Some(())
}

/// `logicalmsg_desc` (`xl_logical_message { dbId, transactional, prefix_size,
/// message_size, message[] }`).
pub(super) fn logicalmsg(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    if info != 0x00 {
        return Some(());
    }
    let transactional = d.u8(4)?;
    let (prefix_size, message_size) = (d.u64(8)?, d.u64(16)?);
    let prefix = d.cstr(24, usize::try_from(prefix_size).unwrap_or(usize::MAX))?;
    let kind = if transactional != 0 { "transactional" } else { "non-transactional" };
    w!(out, "{kind}, prefix \"");
    out.extend_from_slice(prefix);
    w!(out, "\"; payload ({message_size} bytes): ");
    let start = 24usize.checked_add(usize::try_from(prefix_size).ok()?)?;
    let len = usize::try_from(message_size).ok()?;
    let payload = d.0.get(start..start.checked_add(len)?)?;
    for (i, b) in payload.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        w!(out, "{b:02X}");
    }
    Some(())
}
