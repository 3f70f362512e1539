//! The file formats replay-bench reads, parsed without I/O: the capture's
//! `manifest.json`, `backup_label`'s start, `pg_control`'s system identifier, and
//! `/proc/<pid>/stat`. Self-contained (the fuzz target includes this file).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use walstream_protocol::{Lsn, WalSegSize};

/// `manifest.json`: what a capture holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format (1).
    pub version: u32,
    /// The database system identifier.
    pub system_id: u64,
    /// The timeline of the backup and the WAL.
    pub timeline: u32,
    /// The WAL segment size in bytes.
    pub wal_segment_size: u32,
    /// The base backup's start (its checkpoint's redo pointer), `X/X`.
    pub start_lsn: String,
    /// The base backup's end: a standby is consistent from here, `X/X`.
    pub backup_end_lsn: String,
    /// The end of the last whole record in `wal/`, `X/X`.
    pub end_lsn: String,
    /// Records from `start_lsn` to `end_lsn` per resource manager name.
    pub records: BTreeMap<String, u64>,
    /// Commit records among them.
    pub commits: u64,
}

/// A manifest that parsed and holds valid values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedManifest {
    /// The manifest as written.
    pub manifest: Manifest,
    /// `start_lsn`.
    pub start: Lsn,
    /// `end_lsn`.
    pub end: Lsn,
    /// `wal_segment_size`.
    pub seg_size: WalSegSize,
}

impl Manifest {
    /// Total records.
    pub fn total_records(&self) -> u64 {
        self.records.values().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Parses and checks `manifest.json`'s text.
///
/// # Errors
/// Malformed JSON, an unknown version, positions or a segment size that are not valid,
/// an end before the start.
pub fn parse_manifest(text: &str) -> Result<CheckedManifest, String> {
    let manifest: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if manifest.version != 1 {
        return Err(format!("unsupported version {}", manifest.version));
    }
    let lsn = |what: &str, t: &str| -> Result<Lsn, String> {
        t.parse().map_err(|_| format!("invalid {what} \"{t}\""))
    };
    let start = lsn("start_lsn", &manifest.start_lsn)?;
    let end = lsn("end_lsn", &manifest.end_lsn)?;
    lsn("backup_end_lsn", &manifest.backup_end_lsn)?;
    if end < start {
        return Err(format!("end_lsn {end} is before start_lsn {start}"));
    }
    let seg_size = WalSegSize::new(u64::from(manifest.wal_segment_size))
        .map_err(|_| format!("invalid wal_segment_size {}", manifest.wal_segment_size))?;
    if manifest.timeline == 0 {
        return Err("invalid timeline 0".into());
    }
    Ok(CheckedManifest { manifest, start, end, seg_size })
}

/// The `START WAL LOCATION` of a `backup_label`.
pub fn backup_label_start(text: &str) -> Option<Lsn> {
    text.lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|lsn| lsn.parse().ok())
}

/// The system identifier of a `pg_control` file (its first 8 bytes, little-endian as
/// the machines PostgreSQL runs on here).
pub fn control_system_id(bytes: &[u8]) -> Option<u64> {
    let head: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// The parts of `/proc/<pid>/stat` a sample needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 4.
    pub ppid: u32,
    /// Field 14, clock ticks.
    pub utime: u64,
    /// Field 15, clock ticks.
    pub stime: u64,
}

/// Parses `/proc/<pid>/stat` (the command name may hold spaces and parentheses: the
/// fields start after the last `)`).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        ppid: f.get(1)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
    })
}

/// Fuzz entry point: every parser here on `data`; none may panic.
// Called by the fuzz target and the corpus replay test only.
#[cfg_attr(not(test), allow(dead_code))]
pub fn fuzz_inputs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = parse_manifest(&text) {
        let _ = m.manifest.total_records();
    }
    let _ = backup_label_start(&text);
    let _ = control_system_id(data);
    let _ = parse_stat(&text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MANIFEST: &str = r#"{"version":1,"system_id":7,"timeline":1,"wal_segment_size":1048576,
        "start_lsn":"0/2000028","backup_end_lsn":"0/2000100","end_lsn":"0/3000000",
        "records":{"Heap":3,"XLOG":2},"commits":1}"#;

    #[test]
    fn manifests_parse_and_are_checked() {
        let m = parse_manifest(MANIFEST).unwrap();
        assert_eq!((m.start, m.end), (Lsn(0x2000028), Lsn(0x3000000)));
        assert_eq!(m.manifest.total_records(), 5);
        let again = parse_manifest(&serde_json::to_string(&m.manifest).unwrap()).unwrap();
        assert_eq!(again, m);
        for (from, to, why) in [
            ("\"version\":1", "\"version\":2", "unsupported version"),
            ("\"0/3000000\"", "\"0/1\"", "before start_lsn"),
            ("1048576", "1000", "invalid wal_segment_size"),
            ("\"0/2000028\"", "\"zz\"", "invalid start_lsn"),
        ] {
            let e = parse_manifest(&MANIFEST.replace(from, to)).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn labels_and_control_files() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n";
        assert_eq!(backup_label_start(label), Some(Lsn(0x2000028)));
        assert_eq!(backup_label_start("nothing"), None);
        assert_eq!(control_system_id(&7u64.to_le_bytes()), Some(7));
        assert_eq!(control_system_id(&[1, 2]), None);
    }

    #[test]
    fn stat_lines_parse() {
        let line =
            "1234 (postgres: x) y) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat(line), Some(ProcStat { ppid: 77, utime: 250, stime: 31 }));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn the_fuzz_corpus_replays() {
        walstream_tests::fuzz::replay_corpora(
            "replaybench_",
            &[("replaybench_inputs", fuzz_inputs)],
        )
        .unwrap();
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            fuzz_inputs(&data);
        }

        #[test]
        fn manifests_round_trip(sysid in any::<u64>(), tli in 1u32.., a in any::<u32>(), n in any::<u64>()) {
            let m = Manifest {
                version: 1, system_id: sysid, timeline: tli, wal_segment_size: 16 << 20,
                start_lsn: Lsn(u64::from(a)).to_string(), backup_end_lsn: Lsn(u64::from(a)).to_string(),
                end_lsn: Lsn(u64::from(a) + 1).to_string(),
                records: [("Heap".to_string(), n)].into_iter().collect(), commits: n,
            };
            let parsed = parse_manifest(&serde_json::to_string(&m).unwrap()).unwrap();
            prop_assert_eq!(parsed.manifest, m);
        }
    }
}
