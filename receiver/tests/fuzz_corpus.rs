//! Replays the committed corpora of the receiver's cargo-fuzz targets (`fuzz/`, names
//! starting `receiver_`) through the same entry points, so every test run checks that no
//! known input panics (CI has no nightly toolchain to run libFuzzer itself).

use std::fs;
use std::path::{Path, PathBuf};

/// A fuzz entry point.
type Entry = fn(&[u8]);

/// Each `receiver_*` fuzz target of `fuzz/Cargo.toml` with the entry point it calls.
const TARGETS: &[(&str, Entry)] = &[("receiver_resume", walstream_receiver::segments::fuzz_resume)];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_receiver_fuzz_target_is_replayed_here() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut declared: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| n.starts_with("receiver_"))
        .collect();
    let mut replayed: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    declared.sort_unstable();
    replayed.sort_unstable();
    assert_eq!(declared, replayed, "fuzz/Cargo.toml sender targets vs replayed targets");
}

#[test]
fn corpora_replay_without_panics() {
    for (target, entry) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        let mut n = 0;
        for file in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = file.unwrap().path();
            entry(&fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "{target}: empty corpus");
    }
}
