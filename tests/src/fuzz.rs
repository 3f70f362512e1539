//! Replaying the committed cargo-fuzz corpora in ordinary test runs (CI has no nightly
//! toolchain to run libFuzzer): every target of `fuzz/Cargo.toml` with a given name prefix
//! must be replayed, and every input of its corpus must pass through its entry point.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

/// A fuzz target's entry point.
pub type Entry = fn(&[u8]);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The target names `fuzz/Cargo.toml` declares.
///
/// # Errors
/// If the manifest cannot be read.
pub fn declared_targets() -> Result<Vec<String>> {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml"))?;
    Ok(manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "walstream-fuzz")
        .map(str::to_string)
        .collect())
}

/// Checks that `targets` are exactly the declared targets whose names start with `prefix`,
/// then runs every corpus input through its entry point (a panic fails the test).
///
/// # Errors
/// A target declared but not replayed (or the reverse), or an empty or unreadable corpus.
pub fn replay_corpora(prefix: &str, targets: &[(&str, Entry)]) -> Result<()> {
    let mut declared: Vec<String> =
        declared_targets()?.into_iter().filter(|n| n.starts_with(prefix)).collect();
    let mut replayed: Vec<String> = targets.iter().map(|(n, _)| n.to_string()).collect();
    declared.sort_unstable();
    replayed.sort_unstable();
    ensure!(declared == replayed, "fuzz/Cargo.toml targets {declared:?} vs replayed {replayed:?}");
    for (target, entry) in targets {
        let dir = fuzz_dir().join("corpus").join(target);
        let mut n = 0;
        for file in fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            entry(&fs::read(file?.path())?);
            n += 1;
        }
        ensure!(n > 0, "{target}: empty corpus");
    }
    Ok(())
}
