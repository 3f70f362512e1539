//! Record descriptions as pg_waldump prints them: the type name of each resource
//! manager's `*_identify`, the text of its `*_desc`, and the block-reference tail of
//! `XLogRecGetBlockRefInfo` (PostgreSQL 15, `access/rmgrdesc/*.c`).
//!
//! Output goes into a caller's `Vec<u8>` (pg_waldump prints raw C strings, which need
//! not be UTF-8). A description never panics: when the main data is shorter than the
//! record type needs, the text stops where the data ran out.

mod heap;
mod identify;
mod misc;
mod xact;
mod xlog;

use crate::lsn::Lsn;
use crate::text::civil_from_days;
use crate::wal::record::{DecodedRecord, RelFileNode, BLCKSZ, XLR_INFO_MASK};
use crate::wal::rmgr;

pub use identify::identify;

/// Seconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const POSTGRES_EPOCH_UNIX_SECS: i64 = 946_684_800;
/// `USECS_PER_SEC`.
const USECS_PER_SEC: i64 = 1_000_000;

/// Writes `ap` to `out`, ignoring the (impossible) error of writing to a `Vec`.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = ::std::io::Write::write_fmt($out, format_args!($($arg)*));
    }};
}
pub(crate) use w;

/// Formats a `TimestampTz` (microseconds since 2000-01-01 UTC) as pg_waldump's
/// `timestamptz_to_str` does (`pg_waldump/compat.c`): `%Y-%m-%d %H:%M:%S.%06d %Z`
/// in the process's local time zone. The protocol crate has no clock and no time zone
/// database; the caller supplies the zone.
pub trait TimestampFormat {
    /// Appends the formatted timestamp to `out`.
    fn write_timestamptz(&self, out: &mut Vec<u8>, ts: i64);
}

/// Formats timestamps in UTC (what pg_waldump prints when `TZ` is UTC or unset on a
/// system whose local time is UTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct Utc;

impl TimestampFormat for Utc {
    fn write_timestamptz(&self, out: &mut Vec<u8>, ts: i64) {
        let (secs, micros) = split_timestamptz(ts);
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        w!(
            out,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06} UTC",
            tod / 3600,
            tod / 60 % 60,
            tod % 60
        );
    }
}

/// Unix seconds and the microsecond remainder, as `compat.c` computes them: C division,
/// truncating toward zero, so a negative timestamp has a negative remainder.
pub fn split_timestamptz(ts: i64) -> (i64, i32) {
    (ts / USECS_PER_SEC + POSTGRES_EPOCH_UNIX_SECS, (ts % USECS_PER_SEC) as i32)
}

/// Appends the description of `rec` as pg_waldump prints it after `desc: ` (the type
/// name, a space, the rmgr's description), without the block-reference tail.
pub fn write_desc(out: &mut Vec<u8>, rec: &DecodedRecord, tz: &dyn TimestampFormat) {
    let rmid = rec.header.rmid;
    let info = rec.header.info;
    match identify(rmid, info) {
        Some(id) => w!(out, "{id} "),
        None => w!(out, "UNKNOWN ({:x}) ", info & !XLR_INFO_MASK),
    }
    describe_into(out, rec, tz);
}

/// Appends the rmgr's own description of `rec` (the text after the type name).
pub fn describe_into(out: &mut Vec<u8>, rec: &DecodedRecord, tz: &dyn TimestampFormat) {
    let d = Data(&rec.main_data);
    let info = rec.header.info & !XLR_INFO_MASK;
    let _ = match rec.header.rmid {
        rmgr::RM_XLOG_ID => xlog::desc(out, info, d, tz),
        rmgr::RM_XACT_ID => xact::desc(out, rec.header.info, rec.origin.unwrap_or(0), d, tz),
        2 => misc::smgr(out, info, d),
        3 => misc::clog(out, info, d),
        4 => misc::dbase(out, info, d),
        5 => misc::tblspc(out, info, d),
        7 => misc::relmap(out, info, d),
        rmgr::RM_STANDBY_ID => xact::standby(out, info, d),
        rmgr::RM_HEAP2_ID => heap::heap2(out, info, d),
        rmgr::RM_HEAP_ID => heap::heap(out, info, d),
        rmgr::RM_BTREE_ID => heap::btree(out, info, d, rec),
        15 => misc::seq(out, info, d),
        18 => misc::commit_ts(out, info, d),
        20 => misc::generic(out, d),
        rmgr::RM_LOGICALMSG_ID => misc::logicalmsg(out, info, d),
        r if rmgr::is_custom(r) => {
            // pg_waldump/rmgrdesc.c: default_desc
            w!(out, "rmid: {r}");
            Some(())
        }
        _ => None,
    };
}

/// The description of `rec` as a `String` (type name and text, UTC timestamps, no block
/// references), lossy where the record holds non-UTF-8 names.
pub fn describe(rec: &DecodedRecord) -> String {
    let mut out = Vec::new();
    describe_into(&mut out, rec, &Utc);
    String::from_utf8_lossy(&out).into_owned()
}

/// Fork names of `common/relpath.c` (`forkNames`).
pub const FORK_NAMES: [&str; 4] = ["main", "fsm", "vm", "init"];

fn fork_name(fork: u8) -> &'static str {
    FORK_NAMES.get(usize::from(fork)).copied().unwrap_or("?")
}

/// Appends the block references of `rec` as `XLogRecGetBlockRefInfo(pretty = true)` does:
/// `, blkref #0: rel 1663/5/1259 blk 0 FPW` (short) or, with `detailed`, one
/// `\tblkref #0: rel ... fork main blk 0 (FPW); hole: offset: 100, length: 200` line per
/// block. Ends with the record's newline.
pub fn write_block_refs(out: &mut Vec<u8>, rec: &DecodedRecord, detailed: bool) {
    if detailed {
        out.push(b'\n');
    }
    for b in &rec.blocks {
        let r = b.rnode;
        let fork = b.fork();
        if detailed {
            w!(
                out,
                "\tblkref #{}: rel {}/{}/{} fork {} blk {}",
                b.id,
                r.spc_node,
                r.db_node,
                r.rel_node,
                fork_name(fork),
                b.blkno
            );
            if let Some(img) = &b.image {
                let verify = if img.apply() { "" } else { " for WAL verification" };
                w!(
                    out,
                    " (FPW{verify}); hole: offset: {}, length: {}",
                    img.hole_offset,
                    img.hole_length
                );
                if img.is_compressed() {
                    let saved =
                        i64::from(BLCKSZ) - i64::from(img.hole_length) - img.data.len() as i64;
                    w!(
                        out,
                        ", compression saved: {}, method: {}",
                        saved as u32,
                        compression_method(img.bimg_info)
                    );
                }
            }
            out.push(b'\n');
        } else {
            w!(out, ", blkref #{}: rel {}/{}/{}", b.id, r.spc_node, r.db_node, r.rel_node);
            if fork != 0 {
                w!(out, " fork {}", fork_name(fork));
            }
            w!(out, " blk {}", b.blkno);
            match &b.image {
                Some(img) if img.apply() => out.extend_from_slice(b" FPW"),
                Some(_) => out.extend_from_slice(b" FPW for WAL verification"),
                None => {}
            }
        }
    }
    if !detailed {
        out.push(b'\n');
    }
}

fn compression_method(bimg_info: u8) -> &'static str {
    use crate::wal::record::{
        BKPIMAGE_COMPRESS_LZ4, BKPIMAGE_COMPRESS_PGLZ, BKPIMAGE_COMPRESS_ZSTD,
    };
    if bimg_info & BKPIMAGE_COMPRESS_PGLZ != 0 {
        "pglz"
    } else if bimg_info & BKPIMAGE_COMPRESS_LZ4 != 0 {
        "lz4"
    } else if bimg_info & BKPIMAGE_COMPRESS_ZSTD != 0 {
        "zstd"
    } else {
        "unknown"
    }
}

/// `TABLESPACE_VERSION_DIRECTORY` of PostgreSQL 15.
const TABLESPACE_VERSION_DIRECTORY: &str = "PG_15_202209061";

/// Appends `relpathperm(rnode, fork)` (`common/relpath.c: GetRelationPath`).
fn write_relpath(out: &mut Vec<u8>, r: RelFileNode, fork: u8) {
    match r.spc_node {
        1664 => w!(out, "global/{}", r.rel_node),
        1663 => w!(out, "base/{}/{}", r.db_node, r.rel_node),
        spc => {
            w!(out, "pg_tblspc/{spc}/{TABLESPACE_VERSION_DIRECTORY}/{}/{}", r.db_node, r.rel_node)
        }
    }
    if fork != 0 {
        w!(out, "_{}", fork_name(fork));
    }
}

/// Little-endian reads at offsets of a record's main data, `None` past its end.
#[derive(Clone, Copy, Default)]
pub(crate) struct Data<'a>(pub &'a [u8]);

impl<'a> Data<'a> {
    fn bytes<const N: usize>(self, off: usize) -> Option<[u8; N]> {
        self.0.get(off..off.checked_add(N)?)?.try_into().ok()
    }
    pub(crate) fn u8(self, off: usize) -> Option<u8> {
        self.0.get(off).copied()
    }
    pub(crate) fn u16(self, off: usize) -> Option<u16> {
        self.bytes(off).map(u16::from_le_bytes)
    }
    pub(crate) fn u32(self, off: usize) -> Option<u32> {
        self.bytes(off).map(u32::from_le_bytes)
    }
    pub(crate) fn i32(self, off: usize) -> Option<i32> {
        self.bytes(off).map(i32::from_le_bytes)
    }
    pub(crate) fn u64(self, off: usize) -> Option<u64> {
        self.bytes(off).map(u64::from_le_bytes)
    }
    pub(crate) fn i64(self, off: usize) -> Option<i64> {
        self.bytes(off).map(i64::from_le_bytes)
    }
    pub(crate) fn lsn(self, off: usize) -> Option<Lsn> {
        self.u64(off).map(Lsn)
    }
    pub(crate) fn rnode(self, off: usize) -> Option<RelFileNode> {
        Some(RelFileNode {
            spc_node: self.u32(off)?,
            db_node: self.u32(off + 4)?,
            rel_node: self.u32(off + 8)?,
        })
    }
    /// The NUL-terminated string at `off`, at most `max` bytes (the whole rest if no NUL).
    pub(crate) fn cstr(self, off: usize, max: usize) -> Option<&'a [u8]> {
        let rest = self.0.get(off..)?;
        let rest = &rest[..rest.len().min(max)];
        Some(rest.iter().position(|&b| b == 0).map_or(rest, |n| &rest[..n]))
    }
}

/// A fuzz entry point: describes a record whose rmid, info and main data come from
/// `data` (`[rmid, info, main data...]`). Never panics.
pub fn fuzz_describe(data: &[u8]) -> Vec<u8> {
    use crate::wal::record::XLogRecordHeader;
    let (rmid, info) = (data.first().copied().unwrap_or(0), data.get(1).copied().unwrap_or(0));
    let main = bytes::Bytes::copy_from_slice(data.get(2..).unwrap_or(&[]));
    let rec = DecodedRecord {
        lsn: Lsn(0),
        end_lsn: Lsn(0),
        header: XLogRecordHeader {
            tot_len: 0,
            xid: Default::default(),
            prev: Lsn(0),
            info,
            rmid,
            crc: 0,
        },
        blocks: Vec::new(),
        origin: None,
        toplevel_xid: None,
        main_data: main,
    };
    let mut out = Vec::new();
    write_desc(&mut out, &rec, &Utc);
    write_block_refs(&mut out, &rec, true);
    out
}

#[cfg(test)]
pub(crate) mod tests;
