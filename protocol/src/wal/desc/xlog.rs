//! XLOG resource manager descriptions (`rmgrdesc/xlogdesc.c: xlog_desc`).

use super::{w, Data, TimestampFormat};

/// `wal_level_options` of `xlogdesc.c`, first match by value.
fn wal_level_name(level: i32) -> &'static str {
    match level {
        0 => "minimal",
        1 => "replica",
        2 => "logical",
        _ => "?",
    }
}

fn bool_str(b: u8, yes: &'static str, no: &'static str) -> &'static str {
    if b != 0 {
        yes
    } else {
        no
    }
}

/// `xlog_desc`; `info` is `xl_info` without the `XLR_INFO_MASK` bits.
pub(super) fn desc(
    out: &mut Vec<u8>,
    info: u8,
    d: Data<'_>,
    tz: &dyn TimestampFormat,
) -> Option<()> {
    match info {
        0x00 | 0x10 => checkpoint(out, info, d)?,
        // XLOG_NEXTOID
        0x30 => w!(out, "{}", d.u32(0)?),
        // XLOG_RESTORE_POINT: xl_restore_point { rp_time, rp_name[MAXFNAMELEN] }
        0x70 => out.extend_from_slice(d.cstr(8, 64)?),
        // XLOG_BACKUP_END
        0x50 => w!(out, "{}", d.lsn(0)?),
        0x60 => parameter_change(out, d)?,
        // XLOG_FPW_CHANGE
        0x80 => w!(out, "{}", bool_str(d.u8(0)?, "true", "false")),
        // XLOG_END_OF_RECOVERY: xl_end_of_recovery { end_time, ThisTimeLineID, PrevTimeLineID }
        0x90 => {
            let (time, this, prev) = (d.i64(0)?, d.u32(8)?, d.u32(12)?);
            w!(out, "tli {this}; prev tli {prev}; time ");
            tz.write_timestamptz(out, time);
        }
        // XLOG_OVERWRITE_CONTRECORD: xl_overwrite_contrecord { overwritten_lsn, overwrite_time }
        0xD0 => {
            let (lsn, time) = (d.lsn(0)?, d.i64(8)?);
            w!(out, "lsn {lsn}; time ");
            tz.write_timestamptz(out, time);
        }
        _ => {}
    }
    Some(())
}

/// `CheckPoint` (`catalog/pg_control.h`), x86-64 layout.
fn checkpoint(out: &mut Vec<u8>, info: u8, d: Data<'_>) -> Option<()> {
    let redo = d.lsn(0)?;
    let (tli, prev_tli, fpw) = (d.u32(8)?, d.u32(12)?, d.u8(16)?);
    let next_xid = d.u64(24)?;
    let (next_oid, next_multi, next_offset) = (d.u32(32)?, d.u32(36)?, d.u32(40)?);
    let (oldest_xid, oldest_xid_db, oldest_multi, oldest_multi_db) =
        (d.u32(44)?, d.u32(48)?, d.u32(52)?, d.u32(56)?);
    let (oldest_cts, newest_cts, oldest_active) = (d.u32(72)?, d.u32(76)?, d.u32(80)?);
    w!(
        out,
        "redo {redo}; tli {tli}; prev tli {prev_tli}; fpw {}; xid {}:{}; oid {next_oid}; \
         multi {next_multi}; offset {next_offset}; oldest xid {oldest_xid} in DB {oldest_xid_db}; \
         oldest multi {oldest_multi} in DB {oldest_multi_db}; \
         oldest/newest commit timestamp xid: {oldest_cts}/{newest_cts}; \
         oldest running xid {oldest_active}; {}",
        bool_str(fpw, "true", "false"),
        next_xid >> 32,
        next_xid as u32,
        if info == 0x00 { "shutdown" } else { "online" }
    );
    Some(())
}

/// `xl_parameter_change` (`access/xlog_internal.h`).
fn parameter_change(out: &mut Vec<u8>, d: Data<'_>) -> Option<()> {
    let ints = [d.i32(0)?, d.i32(4)?, d.i32(8)?, d.i32(12)?, d.i32(16)?, d.i32(20)?];
    let (hints, cts) = (d.u8(24)?, d.u8(25)?);
    w!(
        out,
        "max_connections={} max_worker_processes={} max_wal_senders={} max_prepared_xacts={} \
         max_locks_per_xact={} wal_level={} wal_log_hints={} track_commit_timestamp={}",
        ints[0],
        ints[1],
        ints[2],
        ints[3],
        ints[4],
        wal_level_name(ints[5]),
        bool_str(hints, "on", "off"),
        bool_str(cts, "on", "off")
    );
    Some(())
}
