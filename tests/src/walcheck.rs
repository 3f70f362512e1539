//! Comparing a directory a receiver wrote (complete segments and `.partial` files of
//! timeline 1) with the primary's `pg_wal`: how far its WAL equals the primary's, and
//! whether it is a gapless, byte-identical copy.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use walstream_protocol::lsn::{parse_segment_file_name, segment_file_name};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

/// One segment of the received directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSegment {
    /// Its number.
    pub segno: XLogSegNo,
    /// Whether the file is a `.partial`.
    pub partial: bool,
    /// Its file name.
    pub file: String,
}

/// The timeline-1 segment files of `dir` by segment number; a segment with both a complete
/// file and a `.partial` is an error.
///
/// # Errors
/// If the directory cannot be read, or a segment has both files.
pub fn received_segments(
    dir: &Path,
    seg_size: WalSegSize,
) -> Result<BTreeMap<XLogSegNo, ReceivedSegment>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        let Some((tli, segno)) = parse_segment_file_name(&file, seg_size) else { continue };
        ensure!(tli == TimeLineId(1), "{file}: not timeline 1");
        let partial = file.ends_with(".partial");
        let seg = ReceivedSegment { segno, partial, file: file.clone() };
        if let Some(old) = out.insert(segno, seg) {
            bail!("segment {} has two files: {} and {file}", segno.0, old.file);
        }
    }
    Ok(out)
}

/// The primary's file of segment `segno` (timeline 1).
fn primary_segment(wal_dir: &Path, segno: XLogSegNo, seg_size: WalSegSize) -> Result<Vec<u8>> {
    let name = segment_file_name(TimeLineId(1), segno, seg_size);
    fs::read(wal_dir.join(&name)).with_context(|| format!("the primary has no {name}"))
}

/// The number of leading bytes `a` and `b` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
}

/// How far the WAL in `dir` equals the primary's (`wal_dir`), from its first segment
/// on without a gap: the end of the last segment equal to the primary's, plus the
/// bytes of the next file (complete or `.partial`) that equal the primary's at the same
/// offsets. `None` if `dir` has no segment.
///
/// Segments in `known_good` are taken as equal without reading them (a cache for
/// repeated calls); those found equal are added.
///
/// # Errors
/// If a file cannot be read.
pub fn end_equal_to_primary(
    dir: &Path,
    wal_dir: &Path,
    seg_size: WalSegSize,
    known_good: &mut std::collections::BTreeSet<String>,
) -> Result<Option<Lsn>> {
    let segs = received_segments(dir, seg_size)?;
    let Some(first) = segs.keys().next().copied() else { return Ok(None) };
    let mut segno = first;
    loop {
        let start = segno.start_lsn(seg_size);
        let Some(seg) = segs.get(&segno) else { return Ok(Some(start)) };
        if !seg.partial && known_good.contains(&seg.file) {
            segno = segno.next();
            continue;
        }
        let ours = fs::read(dir.join(&seg.file))?;
        let theirs = primary_segment(wal_dir, segno, seg_size)?;
        let n = common_prefix(&ours, &theirs);
        if seg.partial || n < theirs.len() || ours.len() != theirs.len() {
            return Ok(Some(start + n as u64));
        }
        known_good.insert(seg.file.clone());
        segno = segno.next();
    }
}

/// Checks that `dir` is a gapless copy of the primary's WAL: consecutive complete
/// segments byte-identical to the primary's, then at most one `.partial`, of the next
/// segment, whose bytes equal the primary's up to some point and are zero after it.
/// Returns the complete segments' names.
///
/// # Errors
/// Naming the first file that breaks a rule and how.
pub fn assert_gapless_copy(
    dir: &Path,
    wal_dir: &Path,
    seg_size: WalSegSize,
) -> Result<Vec<String>> {
    let names = crate::assert_same_wal_files(dir, wal_dir)?;
    let segs = received_segments(dir, seg_size)?;
    let mut expect = None::<XLogSegNo>;
    let mut partial_seen = None::<String>;
    for (segno, seg) in &segs {
        if let Some(e) = expect {
            ensure!(*segno == e, "gap: {} follows segment {}", seg.file, e.0 - 1);
        }
        ensure!(partial_seen.is_none(), "{} follows {partial_seen:?}", seg.file);
        if seg.partial {
            let ours = fs::read(dir.join(&seg.file))?;
            let theirs = primary_segment(wal_dir, *segno, seg_size)?;
            let n = common_prefix(&ours, &theirs);
            let tail = ours.get(n..).unwrap_or_default();
            if let Some(bad) = tail.iter().position(|b| *b != 0) {
                bail!(
                    "{}: differs from the primary's segment at offset {n} (and is not zero \
                     there: byte {:#04x} at offset {})",
                    seg.file,
                    tail[bad],
                    n + bad
                );
            }
            ensure!(
                ours.len() as u64 == u64::from(seg_size.bytes()),
                "{}: {} bytes",
                seg.file,
                ours.len()
            );
            partial_seen = Some(seg.file.clone());
        }
        expect = Some(segno.next());
    }
    Ok(names)
}
