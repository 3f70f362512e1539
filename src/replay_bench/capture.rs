//! A capture on disk: `base/` (a plain base backup), `wal/` (the WAL streamed from the
//! backup's start on), and `manifest.json` (what they hold); checks that they belong
//! together, and a scan of the WAL for record counts and commit times.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use walstream_node::xlog::control::{ControlFile, CONTROL_FILE_NAME as NODE_CONTROL_FILE};
use walstream_protocol::lsn::segment_file_name;

use super::parse::{self, parse_manifest, CheckedManifest};
use walstream_protocol::wal::{rmgr, WalDecoder};
use walstream_protocol::{Lsn, TimeLineId, WalSegSize, XLogSegNo};

/// The manifest file's name inside a capture.
pub const MANIFEST: &str = "manifest.json";
/// The base backup's directory inside a capture.
pub const BASE_DIR: &str = "base";
/// The WAL directory inside a capture.
pub const WAL_DIR: &str = "wal";

pub use super::parse::Manifest;

impl Manifest {
    /// Reads and checks `dir/manifest.json`.
    ///
    /// # Errors
    /// A missing or malformed file.
    pub fn load(dir: &Path) -> Result<CheckedManifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read capture manifest \"{}\"", path.display()))?;
        parse_manifest(&text)
            .map_err(|e| anyhow::anyhow!("invalid capture manifest \"{}\": {e}", path.display()))
    }

    /// Writes `dir/manifest.json`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("could not write \"{}\"", path.display()))
    }
}

/// One commit record: where it ends and its `xact_time` (µs since 2000-01-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The position after the record (where the next one starts).
    pub end: Lsn,
    /// `xl_xact_commit.xact_time`.
    pub xact_time: i64,
}

/// What a scan of a capture's WAL found.
#[derive(Debug, Clone, Default)]
pub struct WalScan {
    /// Where the last whole record ends.
    pub end: Lsn,
    /// Records per resource manager name.
    pub records: BTreeMap<String, u64>,
    /// Commit records in WAL order.
    pub commits: Vec<Commit>,
    /// The system identifier of the segments' long page headers.
    pub system_id: Option<u64>,
}

// xact.h
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;

/// The file of segment `segno` in `dir`, complete or `.partial`.
fn segment_path(dir: &Path, tli: TimeLineId, segno: XLogSegNo, seg: WalSegSize) -> Option<PathBuf> {
    let name = segment_file_name(tli, segno, seg);
    let full = dir.join(&name);
    if full.is_file() {
        return Some(full);
    }
    let partial = dir.join(format!("{name}.partial"));
    partial.is_file().then_some(partial)
}

/// Decodes `dir`'s WAL of timeline `tli` from the record at `start` up to `until` (or,
/// without it, as far as whole records go), counting records and collecting commits.
///
/// # Errors
/// With `until`: a missing segment before it (a gap), or WAL that stops or fails to
/// decode before it. Always: I/O errors, and a first record that does not decode.
pub fn scan_wal(
    dir: &Path,
    tli: TimeLineId,
    seg: WalSegSize,
    start: Lsn,
    until: Option<Lsn>,
) -> Result<WalScan> {
    let mut dec = WalDecoder::new(start, seg);
    dec.set_timeline(tli);
    let mut scan = WalScan { end: start, ..Default::default() };
    let mut segno = start.segno(seg);
    let mut buf = vec![0u8; 1 << 20];
    'files: loop {
        if until.is_some_and(|u| scan.end >= u) {
            break;
        }
        let Some(path) = segment_path(dir, tli, segno, seg) else {
            match until {
                Some(u) => bail!(
                    "the capture's WAL has a gap: segment {} is missing (WAL ends at {}, the manifest says {u})",
                    segment_file_name(tli, segno, seg),
                    scan.end
                ),
                None => break,
            }
        };
        let mut file =
            File::open(&path).with_context(|| format!("could not open \"{}\"", path.display()))?;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("could not read \"{}\"", path.display()))?;
            if n == 0 {
                break;
            }
            dec.feed(Bytes::copy_from_slice(&buf[..n]));
            loop {
                match dec.poll() {
                    Ok(Some(rec)) => {
                        count(&mut scan, &rec, dec.next_record_lsn());
                        if until.is_some_and(|u| scan.end >= u) {
                            break 'files;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if let Some(u) = until {
                            bail!(
                                "the capture's WAL stops at {} before its end {u}: {e}",
                                scan.end
                            );
                        }
                        if scan.records.is_empty() {
                            bail!("no WAL record at the capture's start {start}: {e}");
                        }
                        break 'files;
                    }
                }
            }
        }
        segno = segno.next();
    }
    if let Some(u) = until {
        if scan.end < u {
            bail!("the capture's WAL stops at {} before its end {u}", scan.end);
        }
    }
    scan.system_id = dec.system_id();
    Ok(scan)
}

fn count(scan: &mut WalScan, rec: &walstream_protocol::wal::DecodedRecord, next: Lsn) {
    let name = rmgr::name(rec.header.rmid)
        .map(|n| n.into_owned())
        .unwrap_or_else(|| format!("custom{}", rec.header.rmid));
    *scan.records.entry(name).or_default() += 1;
    scan.end = next;
    if rec.header.rmid == rmgr::RM_XACT_ID {
        let op = rec.rmgr_info() & XLOG_XACT_OPMASK;
        if op == XLOG_XACT_COMMIT || op == XLOG_XACT_COMMIT_PREPARED {
            if let Some(t) = rec.main_data.get(..8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(t);
                scan.commits.push(Commit { end: next, xact_time: i64::from_le_bytes(b) });
            }
        }
    }
}

/// The system identifier in a data directory's `global/pg_control` (a node's: in
/// `global/walstream_control`).
///
/// # Errors
/// A missing or short file.
pub fn control_system_id(data: &Path) -> Result<u64> {
    let node = data.join("global").join(NODE_CONTROL_FILE);
    if node.is_file() {
        // A walstream node's base backup: its own control file.
        let bytes = std::fs::read(&node)
            .with_context(|| format!("could not read \"{}\"", node.display()))?;
        let control = ControlFile::decode(&bytes)
            .with_context(|| format!("could not read \"{}\"", node.display()))?;
        return Ok(control.system_identifier);
    }
    let path = data.join("global").join("pg_control");
    let bytes =
        std::fs::read(&path).with_context(|| format!("could not read \"{}\"", path.display()))?;
    parse::control_system_id(&bytes).with_context(|| format!("\"{}\" is too short", path.display()))
}

/// The `START WAL LOCATION` of a data directory's `backup_label`.
///
/// # Errors
/// A missing file or line.
pub fn backup_label_start(data: &Path) -> Result<Lsn> {
    let path = data.join("backup_label");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read \"{}\"", path.display()))?;
    parse::backup_label_start(&text)
        .with_context(|| format!("no START WAL LOCATION in \"{}\"", path.display()))
}

/// A capture whose parts were checked to belong together.
#[derive(Debug, Clone)]
pub struct Capture {
    /// The capture directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Start and end.
    pub start: Lsn,
    /// The end of WAL to replay.
    pub end: Lsn,
    /// The WAL scanned from start to end.
    pub scan: WalScan,
    /// The WAL segment size.
    pub seg_size: WalSegSize,
}

impl Capture {
    /// The base backup directory.
    pub fn base_dir(&self) -> PathBuf {
        self.dir.join(BASE_DIR)
    }

    /// The WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join(WAL_DIR)
    }

    /// The segment holding the start as a standby that streams from the start has it:
    /// its name, and its bytes up to the start with zeros after (a walstream node
    /// standby wants a segment in `pg_wal`; the zeros end its local WAL there).
    ///
    /// # Errors
    /// The segment cannot be read.
    pub fn start_segment(&self) -> Result<(String, Vec<u8>)> {
        let tli = TimeLineId(self.manifest.timeline);
        let name = segment_file_name(tli, self.start.segno(self.seg_size), self.seg_size);
        let path = self.wal_dir().join(&name);
        let mut bytes = std::fs::read(&path)
            .with_context(|| format!("could not read \"{}\"", path.display()))?;
        bytes.resize(self.seg_size.bytes() as usize, 0);
        let keep = self.start.segment_offset(self.seg_size) as usize;
        bytes[keep..].fill(0);
        Ok((name, bytes))
    }

    /// Opens `dir` and checks it: the manifest, the base backup's system identifier and
    /// start against it, and the WAL from start to end without a gap, of the same system.
    ///
    /// # Errors
    /// Whatever does not match, with what was found.
    pub fn open(dir: &Path) -> Result<Capture> {
        let CheckedManifest { manifest, start, end, seg_size } = Manifest::load(dir)?;
        let base = dir.join(BASE_DIR);
        let base_id = control_system_id(&base)?;
        if base_id != manifest.system_id {
            bail!(
                "the capture's base backup does not match its WAL: the base backup's system identifier is {base_id}, the manifest's {}",
                manifest.system_id
            );
        }
        let label_start = backup_label_start(&base)?;
        if label_start != start {
            bail!(
                "the capture's base backup does not match its WAL: backup_label starts at {label_start}, the manifest at {start}"
            );
        }
        let tli = TimeLineId(manifest.timeline);
        let scan = scan_wal(&dir.join(WAL_DIR), tli, seg_size, start, Some(end))?;
        match scan.system_id {
            Some(id) if id != manifest.system_id => bail!(
                "the capture's WAL is of another system: its system identifier is {id}, the base backup's {}",
                manifest.system_id
            ),
            _ => {}
        }
        Ok(Capture { dir: dir.to_path_buf(), manifest, start, end, scan, seg_size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_save_and_load() {
        let m = Manifest {
            version: 1,
            system_id: 7,
            timeline: 1,
            wal_segment_size: 1 << 20,
            start_lsn: "0/2000028".into(),
            backup_end_lsn: "0/2000100".into(),
            end_lsn: "0/3000000".into(),
            records: [("Heap".to_string(), 3)].into_iter().collect(),
            commits: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path()).unwrap();
        let loaded = Manifest::load(dir.path()).unwrap();
        assert_eq!(loaded.manifest, m);
        assert_eq!(loaded.start, Lsn(0x2000028));
    }

    #[test]
    fn a_missing_manifest_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Capture::open(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("could not read capture manifest"), "{e:#}");
    }
}
