//! Transaction and Standby descriptions (`rmgrdesc/xactdesc.c`, `standbydesc.c`).

use super::{w, write_relpath, Data, TimestampFormat};
use crate::lsn::Lsn;

const XLOG_XACT_HAS_INFO: u8 = 0x80;
const HAS_DBINFO: u32 = 1 << 0;
const HAS_SUBXACTS: u32 = 1 << 1;
const HAS_RELFILENODES: u32 = 1 << 2;
const HAS_INVALS: u32 = 1 << 3;
const HAS_TWOPHASE: u32 = 1 << 4;
const HAS_ORIGIN: u32 = 1 << 5;
const HAS_GID: u32 = 1 << 7;
const HAS_DROPPED_STATS: u32 = 1 << 8;
const APPLY_FEEDBACK: u32 = 1 << 29;
const UPDATE_RELCACHE_FILE: u32 = 1 << 30;
const FORCE_SYNC_COMMIT: u32 = 1 << 31;
/// `sizeof(SharedInvalidationMessage)`.
const INVAL_MSG_SIZE: usize = 16;

/// A commit or abort record taken apart (`xl_xact_parsed_commit`); arrays stay as
/// slices of the main data.
#[derive(Default)]
struct Parsed<'a> {
    xact_time: i64,
    xinfo: u32,
    db_id: u32,
    ts_id: u32,
    subxacts: Data<'a>,
    rels: Data<'a>,
    stats: Data<'a>,
    msgs: Data<'a>,
    twophase_xid: u32,
    origin_lsn: Lsn,
    origin_time: i64,
}

/// Cuts `count * size` bytes at `*pos` (after a 4-byte count) and advances `*pos`.
fn counted<'a>(d: Data<'a>, pos: &mut usize, size: usize) -> Option<Data<'a>> {
    let n = usize::try_from(d.i32(*pos)?).unwrap_or(0);
    let start = *pos + 4;
    let end = start.checked_add(n.checked_mul(size)?)?;
    *pos = end;
    Some(Data(d.0.get(start..end)?))
}

// xactdesc.c: ParseCommitRecord / ParseAbortRecord (abort has no invalidations)
fn parse(info: u8, d: Data<'_>, commit: bool) -> Option<Parsed<'_>> {
    let mut p = Parsed { xact_time: d.i64(0)?, ..Parsed::default() };
    let mut pos = 8;
    if info & XLOG_XACT_HAS_INFO != 0 {
        p.xinfo = d.u32(pos)?;
        pos += 4;
    }
    if p.xinfo & HAS_DBINFO != 0 {
        (p.db_id, p.ts_id) = (d.u32(pos)?, d.u32(pos + 4)?);
        pos += 8;
    }
    if p.xinfo & HAS_SUBXACTS != 0 {
        p.subxacts = counted(d, &mut pos, 4)?;
    }
    if p.xinfo & HAS_RELFILENODES != 0 {
        p.rels = counted(d, &mut pos, 12)?;
    }
    if p.xinfo & HAS_DROPPED_STATS != 0 {
        p.stats = counted(d, &mut pos, 12)?;
    }
    if commit && p.xinfo & HAS_INVALS != 0 {
        p.msgs = counted(d, &mut pos, INVAL_MSG_SIZE)?;
    }
    if p.xinfo & HAS_TWOPHASE != 0 {
        p.twophase_xid = d.u32(pos)?;
        pos += 4;
        if p.xinfo & HAS_GID != 0 {
            pos += d.cstr(pos, usize::MAX)?.len() + 1;
        }
    }
    if p.xinfo & HAS_ORIGIN != 0 {
        (p.origin_lsn, p.origin_time) = (d.lsn(pos)?, d.i64(pos + 8)?);
    }
    Some(p)
}

/// `xact_desc`; `info` is the full `xl_info`.
pub(super) fn desc(
    out: &mut Vec<u8>,
    info: u8,
    origin: u16,
    d: Data<'_>,
    tz: &dyn TimestampFormat,
) -> Option<()> {
    match info & 0x70 {
        // XLOG_XACT_COMMIT, XLOG_XACT_COMMIT_PREPARED
        0x00 | 0x30 => commit(out, &parse(info, d, true)?, origin, tz),
        // XLOG_XACT_ABORT, XLOG_XACT_ABORT_PREPARED
        0x20 | 0x40 => abort(out, &parse(info, d, false)?, origin, tz),
        0x10 => prepare(out, origin, d, tz)?,
        // XLOG_XACT_ASSIGNMENT: xl_xact_assignment { xtop, nsubxacts, xsub[] }
        0x50 => {
            w!(out, "xtop {}: subxacts:", d.u32(0)?);
            let n = d.i32(4)?;
            for i in 0..usize::try_from(n).unwrap_or(0) {
                w!(out, " {}", d.u32(8 + 4 * i)?);
            }
        }
        // XLOG_XACT_INVALIDATIONS: xl_xact_invals { nmsgs, msgs[] }
        0x60 => {
            let msgs = counted(d, &mut 0, INVAL_MSG_SIZE)?;
            invalidations(out, msgs, 0, 0, false);
        }
        _ => {}
    }
    Some(())
}

fn twophase_prefix_and_time(out: &mut Vec<u8>, p: &Parsed<'_>, tz: &dyn TimestampFormat) {
    if p.twophase_xid != 0 {
        w!(out, "{}: ", p.twophase_xid);
    }
    tz.write_timestamptz(out, p.xact_time);
}

fn write_origin(out: &mut Vec<u8>, origin: u16, lsn: Lsn, time: i64, tz: &dyn TimestampFormat) {
    w!(out, "; origin: node {origin}, lsn {lsn}, at ");
    tz.write_timestamptz(out, time);
}

// xactdesc.c: xact_desc_commit
fn commit(out: &mut Vec<u8>, p: &Parsed<'_>, origin: u16, tz: &dyn TimestampFormat) {
    twophase_prefix_and_time(out, p, tz);
    relations(out, "rels", p.rels);
    subxacts(out, p.subxacts);
    stats(out, "", p.stats);
    invalidations(out, p.msgs, p.db_id, p.ts_id, p.xinfo & UPDATE_RELCACHE_FILE != 0);
    if p.xinfo & APPLY_FEEDBACK != 0 {
        out.extend_from_slice(b"; apply_feedback");
    }
    if p.xinfo & FORCE_SYNC_COMMIT != 0 {
        out.extend_from_slice(b"; sync");
    }
    if p.xinfo & HAS_ORIGIN != 0 {
        write_origin(out, origin, p.origin_lsn, p.origin_time, tz);
    }
}

// xactdesc.c: xact_desc_abort
fn abort(out: &mut Vec<u8>, p: &Parsed<'_>, origin: u16, tz: &dyn TimestampFormat) {
    twophase_prefix_and_time(out, p, tz);
    relations(out, "rels", p.rels);
    subxacts(out, p.subxacts);
    if p.xinfo & HAS_ORIGIN != 0 {
        write_origin(out, origin, p.origin_lsn, p.origin_time, tz);
    }
    stats(out, "", p.stats);
}

const fn maxalign(n: usize) -> usize {
    (n + 7) & !7
}

/// Takes `n * size` bytes at `*pos` and advances it by their MAXALIGNed length.
fn aligned_array<'a>(d: Data<'a>, pos: &mut usize, n: i32, size: usize) -> Option<Data<'a>> {
    let len = usize::try_from(n).unwrap_or(0).checked_mul(size)?;
    let start = *pos;
    *pos = start.checked_add(maxalign(len))?;
    Some(Data(d.0.get(start..start.checked_add(len)?)?))
}

// xactdesc.c: ParsePrepareRecord + xact_desc_prepare (xl_xact_prepare, 72 bytes)
fn prepare(out: &mut Vec<u8>, origin: u16, d: Data<'_>, tz: &dyn TimestampFormat) -> Option<()> {
    let (database, prepared_at) = (d.u32(12)?, d.i64(16)?);
    let counts = [d.i32(28)?, d.i32(32)?, d.i32(36)?, d.i32(40)?, d.i32(44)?, d.i32(48)?];
    let (initfileinval, gidlen) = (d.u8(52)?, usize::from(d.u16(54)?));
    let (origin_lsn, origin_time) = (d.lsn(56)?, d.i64(64)?);
    let mut pos = 72;
    let gid = d.cstr(pos, gidlen)?;
    pos += maxalign(gidlen);
    let subx = aligned_array(d, &mut pos, counts[0], 4)?;
    let commit_rels = aligned_array(d, &mut pos, counts[1], 12)?;
    let abort_rels = aligned_array(d, &mut pos, counts[2], 12)?;
    let commit_stats = aligned_array(d, &mut pos, counts[3], 12)?;
    let abort_stats = aligned_array(d, &mut pos, counts[4], 12)?;
    let msgs = aligned_array(d, &mut pos, counts[5], INVAL_MSG_SIZE)?;
    out.extend_from_slice(b"gid ");
    out.extend_from_slice(gid);
    out.extend_from_slice(b": ");
    tz.write_timestamptz(out, prepared_at);
    relations(out, "rels(commit)", commit_rels);
    relations(out, "rels(abort)", abort_rels);
    stats(out, "commit ", commit_stats);
    stats(out, "abort ", abort_stats);
    subxacts(out, subx);
    invalidations(out, msgs, database, 0, initfileinval != 0);
    if origin != 0 {
        write_origin(out, origin, origin_lsn, origin_time, tz);
    }
    Some(())
}

// xactdesc.c: xact_desc_relations
fn relations(out: &mut Vec<u8>, label: &str, rels: Data<'_>) {
    if rels.0.len() < 12 {
        return;
    }
    w!(out, "; {label}:");
    for off in (0..rels.0.len() / 12).map(|i| i * 12) {
        if let Some(r) = rels.rnode(off) {
            out.push(b' ');
            write_relpath(out, r, 0);
        }
    }
}

// xactdesc.c: xact_desc_subxacts
fn subxacts(out: &mut Vec<u8>, subx: Data<'_>) {
    if subx.0.len() < 4 {
        return;
    }
    out.extend_from_slice(b"; subxacts:");
    for x in subx.0.chunks_exact(4) {
        w!(out, " {}", u32::from_le_bytes([x[0], x[1], x[2], x[3]]));
    }
}

// xactdesc.c: xact_desc_stats (xl_xact_stats_item { int kind; Oid dboid; Oid objoid })
fn stats(out: &mut Vec<u8>, label: &str, items: Data<'_>) {
    if items.0.len() < 12 {
        return;
    }
    w!(out, "; {label}dropped stats:");
    for off in (0..items.0.len() / 12).map(|i| i * 12) {
        if let (Some(k), Some(db), Some(obj)) =
            (items.i32(off), items.u32(off + 4), items.u32(off + 8))
        {
            w!(out, " {k}/{db}/{obj}");
        }
    }
}

// standbydesc.c: standby_desc_invalidations
fn invalidations(out: &mut Vec<u8>, msgs: Data<'_>, db_id: u32, ts_id: u32, relcache_init: bool) {
    if msgs.0.len() < INVAL_MSG_SIZE {
        return;
    }
    if relcache_init {
        w!(out, "; relcache init file inval dbid {db_id} tsid {ts_id}");
    }
    out.extend_from_slice(b"; inval msgs:");
    for m in msgs.0.chunks_exact(INVAL_MSG_SIZE).map(Data) {
        let id = m.u8(0).unwrap_or(0) as i8;
        let (at4, at8) = (m.u32(4).unwrap_or(0), m.u32(8).unwrap_or(0));
        match id {
            0.. => w!(out, " catcache {id}"),
            -1 => w!(out, " catalog {at8}"),
            -2 => w!(out, " relcache {at8}"),
            -3 => out.extend_from_slice(b" smgr"),
            -4 => w!(out, " relmap db {at4}"),
            -5 => w!(out, " snapshot {at8}"),
            _ => w!(out, " unrecognized id {id}"),
        }
    }
}

/// `standby_desc`; `info` is `xl_info` without the `XLR_INFO_MASK` bits.
pub(super) fn standby(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    match info {
        // XLOG_STANDBY_LOCK: xl_standby_locks { nlocks, locks[] { xid, dbOid, relOid } }
        0x00 => {
            for i in 0..usize::try_from(d.i32(0)?).unwrap_or(0) {
                let off = 4 + 12 * i;
                w!(out, "xid {} db {} rel {} ", d.u32(off)?, d.u32(off + 4)?, d.u32(off + 8)?);
            }
        }
        // XLOG_RUNNING_XACTS: xl_running_xacts
        0x10 => {
            let (xcnt, ovf) = (d.i32(0)?, d.u8(8)?);
            let (next, oldest, latest) = (d.u32(12)?, d.u32(16)?, d.u32(20)?);
            w!(out, "nextXid {next} latestCompletedXid {latest} oldestRunningXid {oldest}");
            if xcnt > 0 {
                w!(out, "; {xcnt} xacts:");
                for i in 0..usize::try_from(xcnt).unwrap_or(0) {
                    w!(out, " {}", d.u32(24 + 4 * i)?);
                }
            }
            if ovf != 0 {
                out.extend_from_slice(b"; subxid ovf");
            }
        }
        // XLOG_INVALIDATIONS: xl_invalidations { dbId, tsId, relcacheInitFileInval, nmsgs, msgs[] }
        0x20 => {
            let (db, ts, init) = (d.u32(0)?, d.u32(4)?, d.u8(8)?);
            let msgs = counted(d, &mut 12, INVAL_MSG_SIZE)?;
            invalidations(out, msgs, db, ts, init != 0);
        }
        _ => {}
    }
    Some(())
}
