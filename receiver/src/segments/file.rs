//! Opening and creating segment files (`walmethods.c: dir_open_for_write`), and the
//! copy of a switch-point segment's beginning from the previous timeline.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use walstream_protocol::lsn::parse_segment_file_name;
use walstream_protocol::{Lsn, TimeLineId, XLogSegNo};

use super::io::SegFile;
use super::{SegmentError, SegmentWriter, FSYNC_FILE};

/// pg_receivewal's words for a segment it could not create or pad
/// (`receivelog.c: open_walfile`).
const OPEN_SEGMENT: &str = "open write-ahead log file";

/// The suffix of a segment being written.
pub(super) const PARTIAL: &str = ".partial";

/// A segment file open for writing.
#[derive(Debug)]
pub(super) struct OpenSegment {
    pub tli: TimeLineId,
    pub segno: XLogSegNo,
    /// The file and its path now, shared with the I/O thread.
    pub file: Arc<SegFile>,
    /// Its final name's path, if it is a `.partial`.
    final_path: Option<PathBuf>,
    /// Written to since the last sync.
    pub dirty: bool,
}

impl OpenSegment {
    /// Opens `tli`'s segment `segno`: the complete file if it is there at its full size
    /// (it is overwritten in place, as pg_receivewal does), else its `.partial` (brought
    /// to the full size), else a new `.partial` of zeros, which alone is written with
    /// `O_DIRECT` (whole blocks, zeros after the data: right only for a file of zeros).
    pub fn open(
        w: &SegmentWriter,
        tli: TimeLineId,
        segno: XLogSegNo,
    ) -> Result<OpenSegment, SegmentError> {
        let name = w.segment_name(tli, segno);
        let final_path = w.dir.join(&name);
        let partial = w.dir.join(format!("{name}{PARTIAL}"));
        let size = u64::from(w.seg_size.bytes());
        let seg = |file, path, final_path, fresh| OpenSegment {
            tli,
            segno,
            file: SegFile::new(file, path, fresh && w.opts.direct),
            final_path,
            dirty: false,
        };
        if file_len(&final_path) == Some(size) {
            let file = open_rw(&final_path)?;
            return Ok(seg(file, final_path, None, false));
        }
        if file_len(&partial).is_some() {
            let file = open_rw(&partial)?;
            if file_len(&partial) != Some(size) {
                file.set_len(size)
                    .map_err(SegmentError::io("extend write-ahead log file", &partial))?;
            }
            return Ok(seg(file, partial, Some(final_path), false));
        }
        let file = create_partial(w, &partial)?;
        Ok(seg(file, partial, Some(final_path), true))
    }

    /// The final name's path, if the file is a `.partial`.
    pub fn final_path(&self) -> Option<PathBuf> {
        self.final_path.clone()
    }

    /// The file's path now.
    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

/// Makes sure the bytes of `tli`'s segment before `start` are on disk: its own file, or a
/// new `.partial` holding a copy of them from the `previous` timeline's file of that
/// segment, else the newest earlier timeline's (xlog.c: XLogInitNewTimeline).
pub(super) fn prepare_mid_segment(
    w: &SegmentWriter,
    tli: TimeLineId,
    previous: Option<TimeLineId>,
    start: Lsn,
) -> Result<(), SegmentError> {
    let segno = start.segno(w.seg_size);
    let name = w.segment_name(tli, segno);
    let own = [w.dir.join(&name), w.dir.join(format!("{name}{PARTIAL}"))];
    if own.iter().any(|p| file_len(p).is_some()) {
        return Ok(());
    }
    let missing = || SegmentError::MidSegmentStart { tli, start, segment: name.clone() };
    let source = previous
        .and_then(|t| existing_file(w, t, segno))
        .or_else(|| older_timeline_file(w, tli, segno))
        .ok_or_else(missing)?;
    let len = start.segment_offset(w.seg_size) as usize;
    let mut prefix = vec![0u8; len];
    let src = File::open(&source).map_err(SegmentError::io("open file", &source))?;
    src.read_exact_at(&mut prefix, 0).map_err(|_| missing())?;
    let path = &own[1];
    let file = create_partial(w, path)?;
    file.write_all_at(&prefix, 0).map_err(SegmentError::io("write to file", path))?;
    if w.opts.sync {
        file.sync_data().map_err(SegmentError::io(FSYNC_FILE, path))?;
    }
    Ok(())
}

/// The complete file or `.partial` of `tli`'s segment `segno`, if either is there.
fn existing_file(w: &SegmentWriter, tli: TimeLineId, segno: XLogSegNo) -> Option<PathBuf> {
    let name = w.segment_name(tli, segno);
    [w.dir.join(&name), w.dir.join(format!("{name}{PARTIAL}"))]
        .into_iter()
        .find(|p| file_len(p).is_some())
}

/// The file of segment `segno` of the newest timeline before `tli` that has one.
fn older_timeline_file(w: &SegmentWriter, tli: TimeLineId, segno: XLogSegNo) -> Option<PathBuf> {
    let entries = fs::read_dir(&w.dir).ok()?;
    let newest = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_segment_file_name(&e.file_name().to_string_lossy(), w.seg_size))
        .filter(|&(t, s)| s == segno && t < tli)
        .map(|(t, _)| t)
        .max()?;
    existing_file(w, newest, segno)
}

/// Creates a `.partial` of the segment size, reading as zeros, synced with its directory.
/// Its blocks are reserved with `fallocate` (pg_receivewal writes the zeros instead; a
/// file system without `fallocate` gets a sparse file).
fn create_partial(w: &SegmentWriter, path: &Path) -> Result<File, SegmentError> {
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(SegmentError::io(OPEN_SEGMENT, path))?;
    let size = u64::from(w.seg_size.bytes());
    // SAFETY: fallocate on a descriptor this File owns; it takes no pointers.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) } != 0 {
        let e = std::io::Error::last_os_error();
        let unsupported = matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS));
        let sized = if unsupported { file.set_len(size) } else { Err(e) };
        if let Err(e) = sized {
            // No space for the segment: no half-made file is left (walmethods.c).
            drop(file);
            let _ = fs::remove_file(path);
            return Err(SegmentError::io(OPEN_SEGMENT, path)(e));
        }
    }
    if w.opts.sync {
        file.sync_all().map_err(SegmentError::io(FSYNC_FILE, path))?;
        fsync_dir(&w.dir)?;
    }
    Ok(file)
}

fn open_rw(path: &Path) -> Result<File, SegmentError> {
    File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(SegmentError::io("open existing write-ahead log file", path))
}

/// The length of a regular file, `None` if there is none.
pub(super) fn file_len(path: &Path) -> Option<u64> {
    fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len())
}

/// fsyncs a directory, so renames and creations in it are durable.
pub(super) fn fsync_dir(dir: &Path) -> Result<(), SegmentError> {
    // file_utils.c: fsync_fname, whose texts say "file" for a directory too.
    let d = File::open(dir).map_err(SegmentError::io("open file", dir))?;
    d.sync_all().map_err(SegmentError::io(FSYNC_FILE, dir))
}
