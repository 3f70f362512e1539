//! Reading a directory's WAL segment and history files: the one reader behind
//! [`DirWalSource`](super::DirWalSource) and [`MemWalSource`](super::MemWalSource).
//!
//! A segment is read from its complete file, else from its `.partial` (a receiver renames
//! `.partial` when the segment is complete; an open file survives that rename). The file
//! read last stays open, as `walsender.c: WalSndSegmentOpen` keeps `sendSeg` open.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use walstream_protocol::lsn::{history_file_name, segment_file_name};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

use super::WalSourceError;

/// The segment file read last.
#[derive(Debug)]
struct OpenSegment {
    tli: TimeLineId,
    segno: XLogSegNo,
    file: Arc<File>,
}

/// The segment and history files of one directory.
#[derive(Debug)]
pub(crate) struct SegmentFiles {
    dir: PathBuf,
    seg_size: WalSegSize,
    open: Mutex<Option<OpenSegment>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SegmentFiles {
    /// The files of `dir`, whose segments are `seg_size` long.
    pub(crate) fn new(dir: PathBuf, seg_size: WalSegSize) -> Self {
        SegmentFiles { dir, seg_size, open: Mutex::new(None) }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Up to `len` bytes from `start` in the segment file of timeline `tli`, never past the
    /// end of that segment; fewer when the file is shorter.
    pub(crate) fn read(
        &self,
        tli: TimeLineId,
        start: Lsn,
        len: usize,
    ) -> Result<Bytes, WalSourceError> {
        let segno = start.segno(self.seg_size);
        let off = start.segment_offset(self.seg_size);
        let len = len.min((self.seg_size.bytes() - off) as usize);
        let file = self.segment_file(tli, segno)?;
        read_exact_at(&file, u64::from(off), len).map_err(|source| WalSourceError::Io {
            path: segment_file_name(tli, segno, self.seg_size),
            source,
        })
    }

    /// As [`SegmentFiles::read`], as a range of the open file: fewer bytes when the file is
    /// shorter (its size is read now).
    pub(crate) fn file_range(
        &self,
        tli: TimeLineId,
        start: Lsn,
        len: usize,
    ) -> Result<super::FileRange, WalSourceError> {
        let segno = start.segno(self.seg_size);
        let off = u64::from(start.segment_offset(self.seg_size));
        let len = len.min((u64::from(self.seg_size.bytes()) - off) as usize);
        let file = self.segment_file(tli, segno)?;
        let size = file.metadata().map_err(|source| WalSourceError::Io {
            path: segment_file_name(tli, segno, self.seg_size),
            source,
        })?;
        let len = len.min(size.len().saturating_sub(off) as usize);
        Ok(super::FileRange { file, offset: off, len })
    }

    /// Closes segment `segno` of `tli` if it is the open one (before removing it).
    pub(crate) fn forget(&self, tli: TimeLineId, segno: XLogSegNo) {
        let mut open = lock(&self.open);
        if open.as_ref().is_some_and(|o| o.tli == tli && o.segno == segno) {
            *open = None;
        }
    }

    /// The contents of `tli`'s history file, or `None` when there is none.
    pub(crate) fn history_file(&self, tli: TimeLineId) -> Result<Option<Bytes>, WalSourceError> {
        let name = history_file_name(tli);
        match std::fs::read(self.dir.join(&name)) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(WalSourceError::Io { path: name, source }),
        }
    }

    /// The open file of segment `segno` on `tli`: the complete file, else its `.partial`.
    fn segment_file(&self, tli: TimeLineId, segno: XLogSegNo) -> Result<Arc<File>, WalSourceError> {
        let mut open = lock(&self.open);
        if let Some(o) = open.as_ref().filter(|o| o.tli == tli && o.segno == segno) {
            return Ok(Arc::clone(&o.file));
        }
        let name = segment_file_name(tli, segno, self.seg_size);
        let file = match File::open(self.dir.join(&name)) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                File::open(self.dir.join(format!("{name}.partial")))
            }
            other => other,
        };
        let file = match file {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(WalSourceError::SegmentRemoved { segment: name });
            }
            Err(source) => return Err(WalSourceError::Io { path: name, source }),
        };
        *open = Some(OpenSegment { tli, segno, file: Arc::clone(&file) });
        Ok(file)
    }
}

/// Up to `len` bytes of `file` from `off`: fewer only at the end of the file.
pub(crate) fn read_exact_at(file: &File, off: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf.freeze())
}
