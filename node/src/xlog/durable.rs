//! Crash-safe file writes (`fd.c: durable_rename`) and removal of old WAL segments
//! (`xlog.c: KeepLogSeg`, `RemoveOldXlogFiles`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use walstream_protocol::lsn::{is_segment_file_name, parse_segment_file_name, XLogSegNo};
use walstream_protocol::{Lsn, WalSegSize};

use super::XlogError;

/// Writes `bytes` to `dir/name` so that after a crash the file holds either its old or its
/// new contents: a temporary file written and fsynced, renamed over `name`, then the
/// directory fsynced (`fd.c: durable_rename`).
///
/// # Errors
/// [`XlogError::Io`] naming the file and the step that failed.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), XlogError> {
    write_file_sized(dir, name, bytes, bytes.len() as u64)
}

/// [`write_file`] of a file `len` bytes long: `bytes`, then zeros up to `len` (a new
/// timeline's first segment, its old timeline's prefix and zeros after it).
///
/// # Errors
/// As [`write_file`].
pub fn write_file_sized(dir: &Path, name: &str, bytes: &[u8], len: u64) -> Result<(), XlogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(XlogError::io("create", &tmp))?;
    f.write_all(bytes).map_err(XlogError::io("write", &tmp))?;
    if len > bytes.len() as u64 {
        f.set_len(len).map_err(XlogError::io("extend", &tmp))?;
    }
    f.sync_all().map_err(XlogError::io("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(XlogError::io("rename", &path))?;
    fsync_dir(dir)
}

/// Fsyncs a directory, making renames and creations in it durable.
///
/// # Errors
/// [`XlogError::Io`] if the directory cannot be opened or synced.
pub fn fsync_dir(dir: &Path) -> Result<(), XlogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(XlogError::io("fsync directory", dir))
}

/// The first segment a checkpoint must keep (`CreateCheckPoint`, `KeepLogSeg`): the one
/// holding `redo`, and further back `keep_mb` (`wal_keep_size`) behind the segment of
/// `checkpoint_lsn` and the oldest slot's `restart_lsn`. Segments before it may go.
pub fn first_to_keep(
    redo: Lsn,
    checkpoint_lsn: Lsn,
    seg_size: WalSegSize,
    keep_mb: u64,
    slot_min: Option<Lsn>,
) -> XLogSegNo {
    let mut first = redo.segno(seg_size).0;
    let current = checkpoint_lsn.segno(seg_size).0;
    let keep_segs = (keep_mb * 1024 * 1024).div_ceil(u64::from(seg_size.bytes()));
    first = first.min(current.saturating_sub(keep_segs));
    if let Some(slot) = slot_min.filter(|l| l.is_valid()) {
        first = first.min(slot.segno(seg_size).0);
    }
    XLogSegNo(first)
}

/// Removes the segment files of `wal_dir` (any timeline) before segment `first_kept`
/// (`RemoveOldXlogFiles`); returns their names, sorted. Other files are left alone.
///
/// # Errors
/// [`XlogError::Io`] if the directory cannot be read or a file removed.
pub fn remove_old_segments(
    wal_dir: &Path,
    first_kept: XLogSegNo,
    seg_size: WalSegSize,
) -> Result<Vec<String>, XlogError> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(wal_dir).map_err(XlogError::io("read directory", wal_dir))? {
        let entry = entry.map_err(XlogError::io("read directory", wal_dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if !is_segment_file_name(&name) {
            continue;
        }
        let Some((_, segno)) = parse_segment_file_name(&name, seg_size) else { continue };
        if segno < first_kept {
            fs::remove_file(entry.path()).map_err(XlogError::io("remove", entry.path()))?;
            removed.push(name);
        }
    }
    removed.sort();
    if !removed.is_empty() {
        fsync_dir(wal_dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use walstream_protocol::lsn::segment_file_name;
    use walstream_protocol::TimeLineId;

    #[test]
    fn write_file_replaces_whole_contents_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "f", b"first version, long").unwrap();
        write_file(dir.path(), "f", b"second").unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"second");
        let names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn keeps_redo_segment_wal_keep_size_and_slots() {
        let mb = WalSegSize::new(1 << 20).unwrap();
        // Redo in segment 9, checkpoint record in 10: segments before 9 may go.
        assert_eq!(first_to_keep(Lsn(0x90_0028), Lsn(0xA0_0100), mb, 0, None), XLogSegNo(9));
        // wal_keep_size of 3 MB behind segment 10 keeps 7 onwards.
        assert_eq!(first_to_keep(Lsn(0x90_0028), Lsn(0xA0_0100), mb, 3, None), XLogSegNo(7));
        // A slot further back wins; an invalid one does not count.
        let slot = Some(Lsn(0x20_0000));
        assert_eq!(first_to_keep(Lsn(0x90_0028), Lsn(0xA0_0100), mb, 0, slot), XLogSegNo(2));
        let none = Some(Lsn::INVALID);
        assert_eq!(first_to_keep(Lsn(0x90_0028), Lsn(0xA0_0100), mb, 0, none), XLogSegNo(9));
    }

    #[test]
    fn removes_only_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mb = WalSegSize::new(1 << 20).unwrap();
        for (tli, seg) in [(1, 1), (1, 2), (2, 3), (2, 4)] {
            let name = segment_file_name(TimeLineId(tli), XLogSegNo(seg), mb);
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        fs::write(dir.path().join("00000002.history"), b"x").unwrap();
        let removed = remove_old_segments(dir.path(), XLogSegNo(3), mb).unwrap();
        assert_eq!(removed, vec!["000000010000000000000001", "000000010000000000000002"]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
