//! A new data directory's WAL and control file (`xlog.c: BootStrapXLOG`): the first
//! segment holding a shutdown checkpoint, as initdb writes it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use walstream_protocol::replication::TimestampTz;
use walstream_protocol::wal::page::SIZE_OF_LONG_PHD;
use walstream_protocol::wal::{segment_files, EncoderConfig, WalEncoder};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use super::checkpoint::CheckPoint;
use super::control::{ControlFile, DbState};
use super::durable::{fsync_dir, write_file};
use super::records::checkpoint;
use super::segments::wal_dir;
use super::XlogError;

/// A system identifier as initdb makes one (`xlog.c: BootStrapXLOG`): the seconds of
/// `now` in the high 32 bits, its microseconds shifted by 12, and the low 12 bits of `pid`.
pub fn system_identifier(now: SystemTime, pid: u32) -> u64 {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() << 32) | (u64::from(d.subsec_micros()) << 12) | u64::from(pid & 0xFFF)
}

/// Creates `DIR/pg_wal` with segment 1 (on timeline 1) beginning with a shutdown
/// checkpoint whose redo point is itself, and `DIR/global/walstream_control` saying
/// "shut down" at that checkpoint. Everything is fsynced.
///
/// # Errors
/// [`XlogError::Io`] if a directory or file cannot be made.
pub fn bootstrap(
    dir: &Path,
    seg_size: WalSegSize,
    now: SystemTime,
) -> Result<ControlFile, XlogError> {
    let system_identifier = system_identifier(now, std::process::id());
    let wal = wal_dir(dir);
    std::fs::create_dir_all(&wal).map_err(XlogError::io("create directory", &wal))?;
    let seg_start = Lsn(u64::from(seg_size.bytes()));
    let redo = seg_start + u64::from(SIZE_OF_LONG_PHD);
    let unix_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let cp = CheckPoint::bootstrap(redo, unix_secs);
    let cfg = EncoderConfig { system_id: system_identifier, timeline: TimeLineId(1), seg_size };
    let mut enc = WalEncoder::new(cfg, seg_start, Lsn::INVALID)?;
    let rec = enc.append(&checkpoint(&cp, true))?;
    let (start, bytes) = enc.take();
    for (name, contents) in segment_files(start, &bytes, TimeLineId(1), seg_size) {
        write_file(&wal, &name, &contents)?;
    }
    fsync_dir(dir)?;
    let control = ControlFile {
        system_identifier,
        state: DbState::ShutDown,
        time: TimestampTz::from_system_time(now),
        checkpoint: rec.lsn,
        checkpoint_copy: cp,
        seg_size,
        min_recovery_point: Lsn::INVALID,
        min_recovery_point_tli: TimeLineId(0),
    };
    control.write(dir)?;
    Ok(control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn system_identifier_packs_time_and_pid_as_initdb() {
        let t = UNIX_EPOCH + Duration::new(0x6000_0000, 123_456_000);
        let id = system_identifier(t, 0x1_2345);
        assert_eq!(id >> 32, 0x6000_0000);
        assert_eq!((id >> 12) & 0xF_FFFF, 123_456);
        assert_eq!(id & 0xFFF, 0x345);
    }
}
