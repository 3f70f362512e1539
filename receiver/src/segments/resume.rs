//! Where streaming resumes from what is on disk (`pg_receivewal.c: FindStreamingStart`),
//! with the last `.partial` validated by decoding it: a torn tail is never trusted.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use bytes::Bytes;
use walstream_protocol::lsn::parse_segment_file_name;
use walstream_protocol::wal::page::PageHeader;
use walstream_protocol::wal::WalDecoder;
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

use super::file::PARTIAL;
use super::SegmentError;

/// What is on disk and where streaming resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// The highest timeline with segment files.
    pub tli: TimeLineId,
    /// Where to resume streaming: [`ResumePoint::valid_end`], except when a `.partial`
    /// holds valid WAL to its very end (then its segment start, so that it is written
    /// again and renamed).
    pub start: Lsn,
    /// The start of `start`'s segment: where PostgreSQL's tools resume.
    pub segment_start: Lsn,
    /// The end of valid WAL on disk: the end (before alignment) of the last complete,
    /// valid record of the `.partial`, or the end of the last complete segment.
    pub valid_end: Lsn,
    /// The system identifier of the newest segment's long page header, if readable.
    pub system_id: Option<u64>,
}

/// What decoding a `.partial` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialCheck {
    /// The end (before alignment) of the last complete, valid record that begins in the
    /// segment, or the segment start if none does.
    pub valid_end: Lsn,
    /// The system identifier of its first page, if that page is valid.
    pub system_id: Option<u64>,
}

/// Decodes `bytes`, the contents of `tli`'s segment `segno` (possibly short or longer than
/// the segment), from its start as `XLogFindNextRecord` does, up to the first record that
/// is incomplete or invalid.
pub fn validate_partial(
    bytes: Bytes,
    tli: TimeLineId,
    segno: XLogSegNo,
    seg_size: WalSegSize,
) -> PartialCheck {
    let start = segno.start_lsn(seg_size);
    let mut d = WalDecoder::find_next(start, seg_size);
    d.set_timeline(tli);
    let len = bytes.len().min(seg_size.bytes() as usize);
    d.feed(bytes.slice(..len));
    let mut valid_end = start;
    while let Ok(Some(r)) = d.poll_ref() {
        valid_end = r.end_lsn;
    }
    PartialCheck { valid_end, system_id: d.system_id() }
}

/// The segment files of one timeline in a directory.
#[derive(Debug, Default)]
struct TimelineFiles {
    complete: Vec<XLogSegNo>,
    partial: Vec<XLogSegNo>,
}

/// pg_receivewal.c: FindStreamingStart, choosing the highest timeline.
pub(super) fn find(dir: &Path, seg_size: WalSegSize) -> Result<Option<ResumePoint>, SegmentError> {
    let files = list(dir, seg_size)?;
    let Some((&tli, tf)) = files.iter().next_back() else { return Ok(None) };
    let last_complete = tf.complete.iter().max().copied();
    let next_after_complete = last_complete.map(XLogSegNo::next);
    // A .partial right after the last complete segment (or the only files there are);
    // one further on would leave a gap, one before is stale.
    let partial =
        tf.partial.iter().copied().filter(|&p| next_after_complete.is_none_or(|n| p == n)).max();
    let name = |segno| walstream_protocol::lsn::segment_file_name(tli, segno, seg_size);
    if let Some(p) = partial {
        let path = dir.join(format!("{}{PARTIAL}", name(p)));
        let bytes = fs::read(&path).map_err(SegmentError::io("read file", &path))?;
        let check = validate_partial(Bytes::from(bytes), tli, p, seg_size);
        let seg_end = p.next().start_lsn(seg_size);
        let start =
            if check.valid_end >= seg_end { p.start_lsn(seg_size) } else { check.valid_end };
        let system_id =
            check.system_id.or_else(|| last_complete.and_then(|c| read_sysid(dir, &name(c))));
        return Ok(Some(ResumePoint {
            tli,
            start,
            segment_start: start.segment_start(seg_size),
            valid_end: check.valid_end,
            system_id,
        }));
    }
    let Some(c) = last_complete else {
        // Only stale .partial files: nothing after them is known.
        return Ok(None);
    };
    let end = c.next().start_lsn(seg_size);
    Ok(Some(ResumePoint {
        tli,
        start: end,
        segment_start: end,
        valid_end: end,
        system_id: read_sysid(dir, &name(c)),
    }))
}

/// The segment files in `dir` by timeline; complete files of the wrong size are skipped
/// with a warning, as pg_receivewal does.
fn list(
    dir: &Path,
    seg_size: WalSegSize,
) -> Result<BTreeMap<TimeLineId, TimelineFiles>, SegmentError> {
    let mut out: BTreeMap<TimeLineId, TimelineFiles> = BTreeMap::new();
    let entries = fs::read_dir(dir).map_err(SegmentError::io("read directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(SegmentError::io("read directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((tli, segno)) = parse_segment_file_name(&name, seg_size) else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let tf = out.entry(tli).or_default();
        if name.ends_with(PARTIAL) {
            tf.partial.push(segno);
        } else if meta.len() == u64::from(seg_size.bytes()) {
            tf.complete.push(segno);
        } else {
            // pg_receivewal.c: FindStreamingStart
            tracing::warn!("segment file \"{name}\" has incorrect size {}, skipping", meta.len());
        }
    }
    out.retain(|_, tf| !tf.complete.is_empty() || !tf.partial.is_empty());
    Ok(out)
}

/// The system identifier in the long page header of segment file `name`.
fn read_sysid(dir: &Path, name: &str) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let file = fs::File::open(dir.join(name)).ok()?;
    let mut head = [0u8; 40];
    file.read_exact_at(&mut head, 0).ok()?;
    PageHeader::parse(&head).ok()?.long.map(|l| l.sysid)
}

/// Fuzz entry point: `data` as the `.partial` of segment `000000010000000000000007`
/// (1 MB segments) in a temporary directory; [`super::SegmentWriter::resume_point`]
/// never panics and never resumes past the segment or before it.
pub fn fuzz_resume(data: &[u8]) {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let Ok(seg) = WalSegSize::new(1 << 20) else { return };
    let name = "000000010000000000000007.partial";
    if fs::write(tmp.path().join(name), data).is_err() {
        return;
    }
    let Ok(w) = super::SegmentWriter::open(tmp.path(), seg, super::WriterOptions::default()) else {
        return;
    };
    if let Ok(Some(r)) = w.resume_point() {
        let start = Lsn(0x70_0000);
        assert!(r.start >= start && r.valid_end < Lsn(0x80_0000) + 1, "{r:?}");
        assert!(r.start <= r.valid_end, "{r:?}");
    }
}
