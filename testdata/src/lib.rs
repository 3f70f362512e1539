//! Paths to the real PostgreSQL 15 WAL committed under `testdata/` (made by
//! `testdata/generate.sh`; see `testdata/README.md`) and pg_waldump's output for it.

use std::fs;
use std::path::PathBuf;

/// The `testdata/` directory.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `wal/shapes/`: timeline 1 WAL in many shapes.
pub fn shapes_dir() -> PathBuf {
    root().join("wal/shapes")
}

/// `wal/timeline/`: a promoted standby's WAL, timelines 1 and 2 and the history file.
pub fn timeline_dir() -> PathBuf {
    root().join("wal/timeline")
}

/// What pg_waldump printed for one run named in `testdata/README.md`.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Its exit status.
    pub status: i32,
}

/// pg_waldump's recorded output for run `name` (`shapes`, `shapes-stats`, ...).
///
/// # Panics
/// If the files are missing: the testdata is part of the repository.
pub fn expected(name: &str) -> Expected {
    let read = |ext: &str| {
        let p = root().join("expected").join(format!("{name}.{ext}"));
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    Expected {
        stdout: read("txt"),
        stderr: read("stderr"),
        status: read("status").trim().parse().expect("status is a number"),
    }
}

/// A one-line value recorded next to the expected output (`shapes.start`, ...), trimmed.
///
/// # Panics
/// If the file is missing.
pub fn expected_value(file: &str) -> String {
    let p = root().join("expected").join(file);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
}

/// Every regular file of a WAL directory, sorted by name, with its bytes.
///
/// # Panics
/// If the directory cannot be read.
pub fn wal_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = fs::read(dir.join(&n)).expect("read WAL file");
            (n, bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testdata_is_present_and_consistent() {
        let files = wal_files(&shapes_dir());
        assert!(files.len() >= 5);
        assert!(files.iter().all(|(_, b)| b.len() == 1 << 20));
        let e = expected("shapes");
        assert_eq!(e.status, 1);
        assert!(e.stdout.lines().count() > 10_000);
        assert!(timeline_dir().join("00000002.history").exists());
        assert!(expected_value("timeline.switch").contains('/'));
    }
}
