//! What a WAL directory holds: segment files (complete and `.partial`) by timeline and
//! segment number, and timeline history files; and the segment size and system id that
//! the segments' long page headers announce.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use walstream_protocol::lsn::{is_segment_file_name, parse_segment_file_name, XLOG_BLCKSZ};
use walstream_protocol::wal::page::{PageHeader, SIZE_OF_LONG_PHD, XLOG_PAGE_MAGIC};
use walstream_protocol::{TimeLineId, WalSegSize, XLogSegNo};

use super::super::WalSourceError;

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SegFile {
    /// The file name (with `.partial` if it has it).
    pub name: String,
    /// Its size.
    pub len: u64,
    /// Its modification time, if the file system has one.
    pub mtime: Option<SystemTime>,
    /// Whether it is a `.partial` file (a segment still being written).
    pub partial: bool,
}

/// The WAL files of a directory.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Segment files by (timeline, segment); a complete file wins over its `.partial`.
    pub segments: BTreeMap<(TimeLineId, XLogSegNo), SegFile>,
    /// Timelines with a history file.
    pub histories: BTreeSet<TimeLineId>,
}

impl Listing {
    /// Lists `dir`, ignoring every file that is neither a segment nor a history file.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn read(dir: &Path, seg_size: WalSegSize) -> Result<Listing, WalSourceError> {
        let mut out = Listing::default();
        let io = |source| WalSourceError::Io { path: dir.display().to_string(), source };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(tli) = parse_history_file_name(&name) {
                out.histories.insert(tli);
                continue;
            }
            let Some((tli, segno)) = parse_segment_file_name(&name, seg_size) else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let partial = name.ends_with(".partial");
            let file = SegFile { name, len: meta.len(), mtime: meta.modified().ok(), partial };
            match out.segments.get(&(tli, segno)) {
                Some(existing) if !existing.partial => {}
                _ => {
                    out.segments.insert((tli, segno), file);
                }
            }
        }
        Ok(out)
    }

    /// The highest timeline of any segment or history file.
    pub fn max_tli(&self) -> Option<TimeLineId> {
        let seg = self.segments.keys().map(|k| k.0).max();
        seg.max(self.histories.iter().copied().max())
    }

    /// The file of segment `segno` on `tli`.
    pub fn segment(&self, tli: TimeLineId, segno: XLogSegNo) -> Option<&SegFile> {
        self.segments.get(&(tli, segno))
    }

    /// The segments of `tli`, oldest first.
    pub fn segments_of(
        &self,
        tli: TimeLineId,
    ) -> impl DoubleEndedIterator<Item = (XLogSegNo, &SegFile)> {
        self.segments.range((tli, XLogSegNo(0))..=(tli, XLogSegNo(u64::MAX))).map(|(k, f)| (k.1, f))
    }

    /// Whether any segment file of `tli` exists.
    pub fn has_timeline(&self, tli: TimeLineId) -> bool {
        self.segments_of(tli).next().is_some()
    }
}

/// `%08X.history` → its timeline.
pub(super) fn parse_history_file_name(name: &str) -> Option<TimeLineId> {
    let hex = name.strip_suffix(".history")?;
    if hex.len() != 8 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().filter(|&t| t > 0).map(TimeLineId)
}

/// The long page header at the start of `path`, if it is one of PostgreSQL 15 WAL with
/// a valid segment size.
pub(super) fn read_long_header(path: &Path) -> Option<(PageHeader, WalSegSize, u64)> {
    let mut buf = [0u8; SIZE_OF_LONG_PHD as usize];
    File::open(path).ok()?.read_exact(&mut buf).ok()?;
    let h = PageHeader::parse(&buf).ok()?;
    let long = h.long?;
    if h.magic != XLOG_PAGE_MAGIC || long.xlog_blcksz != XLOG_BLCKSZ {
        return None;
    }
    let seg = WalSegSize::new(u64::from(long.seg_size)).ok()?;
    Some((h, seg, long.sysid))
}

/// The segment size and system identifier of the WAL in `dir`: from the long page header
/// of the newest-named segment that has a valid one.
///
/// # Errors
/// No segment files, or none with a valid long page header.
pub(super) fn discover(dir: &Path) -> Result<(WalSegSize, u64), WalSourceError> {
    let io = |source| WalSourceError::Io { path: dir.display().to_string(), source };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_segment_file_name(n.strip_suffix(".partial").unwrap_or(n)))
        .collect();
    if names.is_empty() {
        let msg = format!("no WAL segment files in directory \"{}\"", dir.display());
        return Err(WalSourceError::Invalid(msg));
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    for name in &names {
        if let Some((_, seg, sysid)) = read_long_header(&dir.join(name)) {
            return Ok((seg, sysid));
        }
    }
    let msg = format!("no WAL segment file in \"{}\" has a valid long page header", dir.display());
    Err(WalSourceError::Invalid(msg))
}

/// Refuses complete segment files whose size is not the segment size.
///
/// # Errors
/// [`WalSourceError::Invalid`] naming the first such file.
pub(super) fn check_sizes(listing: &Listing, seg_size: WalSegSize) -> Result<(), WalSourceError> {
    let bad =
        listing.segments.values().find(|f| !f.partial && f.len != u64::from(seg_size.bytes()));
    match bad {
        Some(f) => Err(WalSourceError::Invalid(format!(
            "WAL file \"{}\" has size {}, should be {} (the segment size in its page header)",
            f.name,
            f.len,
            seg_size.bytes()
        ))),
        None => Ok(()),
    }
}
