//! The `backup_label` file (`xlog.c: do_pg_backup_start`) and the `START TIME` format.

use walstream_protocol::lsn::segment_file_name;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

/// What the label says about the start of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFields {
    /// `START WAL LOCATION`: the redo point of the backup's checkpoint.
    pub start: Lsn,
    /// `CHECKPOINT LOCATION`.
    pub checkpoint: Lsn,
    /// `START TIMELINE`.
    pub tli: TimeLineId,
    /// `BACKUP FROM: standby` rather than `primary`.
    pub from_standby: bool,
    /// `START TIME`, in the server's `log_timezone`.
    pub time: jiff::Zoned,
    /// `LABEL`.
    pub label: String,
}

/// `pg_strftime("%Y-%m-%d %H:%M:%S %Z")`.
pub fn format_time(time: &jiff::Zoned) -> String {
    time.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// The content of `backup_label`, exactly as PostgreSQL 15 writes it.
pub fn backup_label(f: &LabelFields, seg_size: WalSegSize) -> String {
    let segno = f.start.segno(seg_size);
    format!(
        "START WAL LOCATION: {} (file {})\nCHECKPOINT LOCATION: {}\nBACKUP METHOD: streamed\n\
         BACKUP FROM: {}\nSTART TIME: {}\nLABEL: {}\nSTART TIMELINE: {}\n",
        f.start,
        segment_file_name(f.tli, segno, seg_size),
        f.checkpoint,
        if f.from_standby { "standby" } else { "primary" },
        format_time(&f.time),
        f.label,
        f.tli.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_as_postgres_15_writes_it() {
        // A backup_label from PostgreSQL 15.18 (log_timezone Etc/UTC).
        let time: jiff::Zoned = "2026-12-07T06:33:57+00:00[Etc/UTC]".parse().unwrap();
        let f = LabelFields {
            start: Lsn(0x200_0028),
            checkpoint: Lsn(0x200_0060),
            tli: TimeLineId(1),
            from_standby: false,
            time,
            label: "cap".into(),
        };
        assert_eq!(
            backup_label(&f, WalSegSize::new(16 << 20).unwrap()),
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
             CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
             START TIME: 2026-12-07 06:33:57 UTC\nLABEL: cap\nSTART TIMELINE: 1\n"
        );
    }
}
