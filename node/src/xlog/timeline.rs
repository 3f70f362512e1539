//! Timelines in `pg_wal` (`access/transam/timeline.c`, the timeline parts of
//! `xlogrecovery.c` and `xlog.c`): which timeline recovery follows, whether the data
//! directory's latest checkpoint lies on it, and what promotion writes — the new
//! timeline's history file and the first segment of the new timeline, copied from the old
//! one up to the switch point.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use walstream_protocol::lsn::{history_file_name, segment_file_name};
use walstream_protocol::timeline::TimelineHistory;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use super::durable::{write_file, write_file_sized};
use super::XlogError;

/// The reason PostgreSQL 15 writes in the history file when a standby is promoted with no
/// recovery target (`xlogrecovery.c: getRecoveryStopReason`).
pub const NO_RECOVERY_TARGET: &str = "no recovery target specified";

/// The contents of `tli`'s history file in `wal_dir`, `None` when it has none.
///
/// # Errors
/// The file exists but cannot be read.
pub fn history_content(wal_dir: &Path, tli: TimeLineId) -> Result<Option<Vec<u8>>, XlogError> {
    let path = wal_dir.join(history_file_name(tli));
    let mut buf = Vec::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut buf).map_err(XlogError::io("read", &path))?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(XlogError::io("open", &path)(e)),
    }
}

/// The history of `tli` as its file in `wal_dir` says (`readTimeLineHistory`); timeline 1,
/// or a timeline without a file, has no ancestors.
///
/// # Errors
/// The file cannot be read or does not parse (PostgreSQL's texts).
pub fn read_history(wal_dir: &Path, tli: TimeLineId) -> Result<TimelineHistory, XlogError> {
    match history_content(wal_dir, tli)? {
        None => Ok(TimelineHistory { tli, ancestors: Vec::new() }),
        Some(content) => TimelineHistory::parse(tli, &content).map_err(|e| {
            XlogError::Timeline(format!(
                "{e} (in \"{}\")",
                wal_dir.join(history_file_name(tli)).display()
            ))
        }),
    }
}

/// The newest timeline reachable from `start` by history files in `wal_dir`
/// (`timeline.c: findNewestTimeLine`: the probe goes up one by one while files exist).
pub fn newest_timeline(wal_dir: &Path, start: TimeLineId) -> TimeLineId {
    let mut newest = start;
    let mut probe = start.0 + 1;
    while wal_dir.join(history_file_name(TimeLineId(probe))).exists() {
        newest = TimeLineId(probe);
        probe += 1;
    }
    newest
}

/// Why the data directory cannot follow the requested timeline (`xlogrecovery.c:
/// InitWalRecovery`), with PostgreSQL's FATAL text and DETAIL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotAChild {
    /// The FATAL's text.
    pub message: String,
    /// Its DETAIL.
    pub detail: Option<String>,
}

/// Checks that the latest checkpoint, at `checkpoint` on timeline `checkpoint_tli`, lies
/// on `history` (the requested timeline's): a server whose WAL went on past the point
/// where the requested timeline forked off cannot follow it.
///
/// # Errors
/// [`NotAChild`] with PostgreSQL 15's texts.
pub fn check_checkpoint_on(
    history: &TimelineHistory,
    checkpoint: Lsn,
    checkpoint_tli: TimeLineId,
) -> Result<(), NotAChild> {
    if history.tli_of_point(checkpoint) == checkpoint_tli {
        return Ok(());
    }
    let Some((switchpoint, _)) = history.switch_point(checkpoint_tli) else {
        return Err(NotAChild {
            message: format!(
                "requested timeline {} is not in this server's history",
                checkpoint_tli.0
            ),
            detail: None,
        });
    };
    Err(NotAChild {
        message: format!(
            "requested timeline {} is not a child of this server's history",
            history.tli.0
        ),
        detail: Some(format!(
            "Latest checkpoint is at {checkpoint} on timeline {}, but in the history of the \
             requested timeline, the server forked off from that timeline at {switchpoint}.",
            checkpoint_tli.0
        )),
    })
}

/// Promotion's first writes (`xlog.c: StartupXLOG`, `writeTimeLineHistory`,
/// `XLogInitNewTimeline`): the history file of `new_tli`, forked from `parent` at
/// `switchpoint`, and — when the switch is inside a segment — that segment on the new
/// timeline, a copy of the parent's up to the switch point, zero after it. Both durable.
///
/// # Errors
/// A file cannot be read or written.
pub fn init_new_timeline(
    wal_dir: &Path,
    seg_size: WalSegSize,
    parent: TimeLineId,
    new_tli: TimeLineId,
    switchpoint: Lsn,
) -> Result<(), XlogError> {
    let parent_content = history_content(wal_dir, parent)?;
    let content = TimelineHistory::child_file(
        parent_content.as_deref(),
        parent,
        switchpoint,
        NO_RECOVERY_TARGET,
    );
    write_file(wal_dir, &history_file_name(new_tli), &content)?;
    let upto = switchpoint.segment_offset(seg_size) as usize;
    if upto == 0 {
        return Ok(());
    }
    let segno = switchpoint.segno(seg_size);
    let from = wal_dir.join(segment_file_name(parent, segno, seg_size));
    let mut prefix = vec![0u8; upto];
    File::open(&from)
        .and_then(|mut f| f.read_exact(&mut prefix))
        .map_err(XlogError::io("read", &from))?;
    let name = segment_file_name(new_tli, segno, seg_size);
    write_file_sized(wal_dir, &name, &prefix, u64::from(seg_size.bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use walstream_protocol::lsn::XLogSegNo;

    use crate::xlog::ReadOptions;

    const MB16: WalSegSize = WalSegSize::DEFAULT;

    fn history(text: &str, tli: u32) -> TimelineHistory {
        TimelineHistory::parse(TimeLineId(tli), text.as_bytes()).unwrap()
    }

    #[test]
    fn newest_timeline_probes_up_while_history_files_exist() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_timeline(dir.path(), TimeLineId(1)), TimeLineId(1));
        for t in [2, 3, 5] {
            std::fs::write(dir.path().join(history_file_name(TimeLineId(t))), b"").unwrap();
        }
        assert_eq!(newest_timeline(dir.path(), TimeLineId(1)), TimeLineId(3));
        assert_eq!(newest_timeline(dir.path(), TimeLineId(4)), TimeLineId(5));
    }

    #[test]
    fn a_checkpoint_past_the_fork_is_not_on_the_child() {
        let h = history("1\t0/3015FF0\tno recovery target specified\n", 2);
        assert!(check_checkpoint_on(&h, Lsn(0x300_0100), TimeLineId(1)).is_ok());
        assert!(check_checkpoint_on(&h, Lsn(0x300_2000), TimeLineId(2)).is_err());
        assert!(check_checkpoint_on(&h, Lsn(0x301_6000), TimeLineId(2)).is_ok());
        let e = check_checkpoint_on(&h, Lsn(0x302_5AD8), TimeLineId(1)).unwrap_err();
        // The texts of a live PostgreSQL 15.
        assert_eq!(e.message, "requested timeline 2 is not a child of this server's history");
        assert_eq!(
            e.detail.as_deref(),
            Some(
                "Latest checkpoint is at 0/3025AD8 on timeline 1, but in the history of the \
                 requested timeline, the server forked off from that timeline at 0/3015FF0."
            )
        );
        let e = check_checkpoint_on(&h, Lsn(0x302_5AD8), TimeLineId(7)).unwrap_err();
        assert_eq!(e.message, "requested timeline 7 is not in this server's history");
    }

    #[test]
    fn each_segment_is_read_from_the_newest_timeline_covering_it() {
        let dir = tempfile::tempdir().unwrap();
        let h = history("1\t0/3015FF0\tx\n\n2\t0/6000000\ty\n", 3);
        let opts = ReadOptions { seg_size: MB16, history: h, system_id: None };
        let tlis = |s: u64| opts.timelines_of(XLogSegNo(s));
        assert_eq!(tlis(2), vec![TimeLineId(1)]);
        assert_eq!(tlis(3), vec![TimeLineId(2), TimeLineId(1)]);
        assert_eq!(tlis(5), vec![TimeLineId(2)]);
        // A switch at a segment boundary: the old timeline ends in the segment before.
        assert_eq!(tlis(6), vec![TimeLineId(3)]);
        assert_eq!(tlis(9), vec![TimeLineId(3)]);
        // The newest existing file wins; a missing one falls back to the parent's.
        let touch = |tli: u32, seg: u64| {
            let name = segment_file_name(TimeLineId(tli), XLogSegNo(seg), MB16);
            std::fs::write(dir.path().join(name), b"").unwrap();
        };
        touch(1, 3);
        assert_eq!(opts.segment_file(dir.path(), XLogSegNo(3)).0, TimeLineId(1));
        touch(2, 3);
        assert_eq!(opts.segment_file(dir.path(), XLogSegNo(3)).0, TimeLineId(2));
        assert_eq!(
            opts.segment_file(dir.path(), XLogSegNo(7)),
            (TimeLineId(3), "000000030000000000000007".to_string())
        );
    }

    #[test]
    fn a_new_timeline_gets_its_history_file_and_the_switch_segment_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let seg = XLogSegNo(3);
        let old = dir.path().join(segment_file_name(TimeLineId(1), seg, MB16));
        std::fs::write(&old, vec![0xAB; MB16.bytes() as usize]).unwrap();
        let switch = Lsn(3 * u64::from(MB16.bytes()) + 0x15FF0);
        init_new_timeline(dir.path(), MB16, TimeLineId(1), TimeLineId(2), switch).unwrap();
        let text = std::fs::read_to_string(dir.path().join("00000002.history")).unwrap();
        assert_eq!(text, "1\t0/3015FF0\tno recovery target specified\n");
        let new =
            std::fs::read(dir.path().join(segment_file_name(TimeLineId(2), seg, MB16))).unwrap();
        assert_eq!(new.len(), MB16.bytes() as usize);
        assert!(new[..0x15FF0].iter().all(|b| *b == 0xAB));
        assert!(new[0x15FF0..].iter().all(|b| *b == 0));
        // A grandchild's file copies its parent's, a blank line between, as PostgreSQL's.
        let switch3 = Lsn(5 * u64::from(MB16.bytes()));
        init_new_timeline(dir.path(), MB16, TimeLineId(2), TimeLineId(3), switch3).unwrap();
        let text = std::fs::read_to_string(dir.path().join("00000003.history")).unwrap();
        assert_eq!(
            text,
            "1\t0/3015FF0\tno recovery target specified\n\n\
             2\t0/5000000\tno recovery target specified\n"
        );
        assert!(read_history(dir.path(), TimeLineId(3)).is_ok());
    }
}
