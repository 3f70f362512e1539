//! Segment files in `pg_wal` as the WAL writer uses them (`xlog.c: XLogWrite`,
//! `XLogFileInit`): created zero-filled and durable, written at their offsets, fsynced
//! when a flush asks and when the writer leaves a segment.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use walstream_protocol::lsn::{segment_file_name, XLogSegNo};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize};

use super::durable::fsync_dir;
use super::XlogError;

/// Zeros for filling files where `fallocate` is not supported.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

/// The segment files of one timeline, written in LSN order.
#[derive(Debug)]
pub(crate) struct SegmentFiles {
    wal_dir: PathBuf,
    tli: TimeLineId,
    seg_size: WalSegSize,
    fsync: bool,
    /// The open segment and whether it has unsynced writes.
    open: Option<(XLogSegNo, File, bool)>,
    /// The segment the writer started in: it holds valid WAL, so it is opened, not made.
    existing: Option<XLogSegNo>,
    fsyncs: Arc<AtomicU64>,
}

impl SegmentFiles {
    pub(crate) fn new(
        wal_dir: PathBuf,
        tli: TimeLineId,
        seg_size: WalSegSize,
        fsync: bool,
        fsyncs: Arc<AtomicU64>,
    ) -> Self {
        SegmentFiles { wal_dir, tli, seg_size, fsync, open: None, existing: None, fsyncs }
    }

    fn path(&self, segno: XLogSegNo) -> PathBuf {
        self.wal_dir.join(segment_file_name(self.tli, segno, self.seg_size))
    }

    /// Prepares to write from `start`: if its segment exists, the bytes from `start` to the
    /// segment's end are zeroed (an abandoned tail must not look like WAL) and synced;
    /// any other segment the writer enters later is made afresh.
    pub(crate) fn prepare_start(&mut self, start: Lsn) -> Result<(), XlogError> {
        let segno = start.segno(self.seg_size);
        let path = self.path(segno);
        if !path.exists() {
            return Ok(());
        }
        self.existing = Some(segno);
        let mut off = u64::from(start.segment_offset(self.seg_size));
        let end = u64::from(self.seg_size.bytes());
        let file = self.file(segno)?;
        while off < end {
            let n = (end - off).min(ZEROS.len() as u64) as usize;
            file.write_all_at(&ZEROS[..n], off).map_err(XlogError::io("write", &path))?;
            off += n as u64;
        }
        file.sync_all().map_err(XlogError::io("fsync", &path))
    }

    /// Writes `bytes`, which start at `start`, into their segments.
    pub(crate) fn write(&mut self, start: Lsn, bytes: &[u8]) -> Result<(), XlogError> {
        let (mut pos, mut left) = (start, bytes);
        while !left.is_empty() {
            let segno = pos.segno(self.seg_size);
            let off = pos.segment_offset(self.seg_size);
            let n = ((self.seg_size.bytes() - off) as usize).min(left.len());
            let (now, rest) = left.split_at(n);
            let written = self.file(segno)?.write_all_at(now, u64::from(off));
            written.map_err(|e| XlogError::io("write", &self.path(segno))(e))?;
            if let Some(o) = self.open.as_mut() {
                o.2 = true;
            }
            pos = pos + n as u64;
            left = rest;
        }
        Ok(())
    }

    /// `issue_xlog_fsync`: makes what was written to the open segment durable (a no-op
    /// with `fsync = off` or nothing written).
    pub(crate) fn sync(&mut self) -> Result<(), XlogError> {
        let Some((segno, file, dirty)) = self.open.as_mut() else { return Ok(()) };
        if !*dirty || !self.fsync {
            return Ok(());
        }
        let segno = *segno;
        let started = std::time::Instant::now();
        file.sync_data().map_err(|e| XlogError::Io {
            op: "fdatasync",
            path: self.path(segno),
            source: e,
        })?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        // Seen by the command's `--metrics` recorder, if one is installed.
        metrics::histogram!("walstream_wal_fsync_duration_seconds", "writer" => "node")
            .record(started.elapsed().as_secs_f64());
        if let Some(o) = self.open.as_mut() {
            o.2 = false;
        }
        Ok(())
    }

    /// The file of `segno`, syncing and closing the previous one when moving on.
    fn file(&mut self, segno: XLogSegNo) -> Result<&File, XlogError> {
        if self.open.as_ref().is_none_or(|o| o.0 != segno) {
            self.sync()?;
            self.open = None;
            let file = if self.existing == Some(segno) {
                let path = self.path(segno);
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(XlogError::io("open", &path))?
            } else {
                self.create(segno)?
            };
            self.open = Some((segno, file, false));
        }
        match &self.open {
            Some((_, f, _)) => Ok(f),
            None => Err(XlogError::BadStart(segno.start_lsn(self.seg_size), "no segment")),
        }
    }

    /// `XLogFileInit`: a zero-filled segment made under a temporary name, synced, renamed
    /// into place (over any stale file of that name) and the directory synced.
    fn create(&self, segno: XLogSegNo) -> Result<File, XlogError> {
        let tmp = self.wal_dir.join(format!("xlogtemp.{}", std::process::id()));
        let path = self.path(segno);
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(XlogError::io("create", &tmp))?;
        zero_fill(&file, u64::from(self.seg_size.bytes())).map_err(XlogError::io("write", &tmp))?;
        file.sync_all().map_err(XlogError::io("fsync", &tmp))?;
        fs::rename(&tmp, &path).map_err(XlogError::io("rename", &path))?;
        fsync_dir(&self.wal_dir)?;
        Ok(file)
    }
}

/// Allocates `len` zero bytes: `fallocate` where the file system supports it, else writes.
fn zero_fill(file: &File, len: u64) -> std::io::Result<()> {
    // SAFETY: fallocate on an open descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let mut off = 0;
    while off < len {
        let n = (len - off).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// The path of `pg_wal` under a data directory.
pub(crate) fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("pg_wal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_across_segments_into_zeroed_files_and_counts_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let seg = WalSegSize::new(1 << 20).unwrap();
        let n = Arc::new(AtomicU64::new(0));
        let mut f = SegmentFiles::new(dir.path().into(), TimeLineId(1), seg, true, n.clone());
        let start = Lsn((1 << 20) * 3 - 10);
        f.write(start, &[7u8; 20]).unwrap();
        f.sync().unwrap();
        f.sync().unwrap();
        let a = fs::read(dir.path().join("000000010000000000000002")).unwrap();
        let b = fs::read(dir.path().join("000000010000000000000003")).unwrap();
        assert_eq!((a.len(), b.len()), (1 << 20, 1 << 20));
        assert!(a[..(1 << 20) - 10].iter().all(|&x| x == 0) && a[(1 << 20) - 10..] == [7; 10]);
        assert!(b[..10] == [7; 10] && b[10..].iter().all(|&x| x == 0));
        // One fsync leaving segment 2, one for the flush; the second flush had nothing.
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn start_segment_is_kept_and_its_tail_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let seg = WalSegSize::new(1 << 20).unwrap();
        let name = dir.path().join("000000010000000000000001");
        fs::write(&name, vec![9u8; 1 << 20]).unwrap();
        let n = Arc::new(AtomicU64::new(0));
        let mut f = SegmentFiles::new(dir.path().into(), TimeLineId(1), seg, false, n.clone());
        f.prepare_start(Lsn((1 << 20) + 100)).unwrap();
        f.write(Lsn((1 << 20) + 100), &[1, 2]).unwrap();
        f.sync().unwrap();
        let a = fs::read(&name).unwrap();
        assert!(a[..100].iter().all(|&x| x == 9));
        assert_eq!(a[100..102], [1, 2]);
        assert!(a[102..].iter().all(|&x| x == 0));
        assert_eq!(n.load(Ordering::Relaxed), 0, "fsync = off never syncs");
    }
}
