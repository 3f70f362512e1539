//! Paths to the real PostgreSQL 15 WAL committed under `testdata/` (made by
//! `testdata/generate.sh`).

use std::path::PathBuf;

/// The `testdata/` directory.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
