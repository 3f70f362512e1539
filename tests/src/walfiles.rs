//! WAL directories: copying a server's `pg_wal` (segments and history files only)
//! and checking that what a client wrote is byte-identical to the server's files.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use walstream_protocol::lsn::is_segment_file_name;

/// Whether `name` is a timeline history file name (`%08X.history`).
fn is_history_file_name(name: &str) -> bool {
    name.strip_suffix(".history")
        .is_some_and(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The complete WAL files in `dir`, sorted: segment files (24 hex digits, no
/// `.partial`) and timeline history files.
///
/// # Errors
/// If the directory cannot be read.
pub fn complete_wal_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if is_segment_file_name(&name) || is_history_file_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Copies the segment and history files of `from` (a `pg_wal`) into `to`; returns
/// their names, sorted. `.partial`, `.backup`, `archive_status` and the rest are left.
///
/// # Errors
/// If a file cannot be read or written.
pub fn copy_wal_files(from: &Path, to: &Path) -> Result<Vec<String>> {
    let names = complete_wal_files(from)?;
    fs::create_dir_all(to)?;
    for n in &names {
        fs::copy(from.join(n), to.join(n)).with_context(|| format!("copying {n}"))?;
    }
    Ok(names)
}

/// Checks that every complete WAL file (segment or history) in `received` is
/// byte-identical to the file of the same name in `source`; returns their names.
///
/// # Errors
/// If a file is missing from `source` or differs (the first differing byte offset
/// is named).
pub fn assert_same_wal_files(received: &Path, source: &Path) -> Result<Vec<String>> {
    let names = complete_wal_files(received)?;
    for n in &names {
        let got = fs::read(received.join(n))?;
        let want = fs::read(source.join(n))
            .with_context(|| format!("{n} was received but is not in {}", source.display()))?;
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b);
            bail!(
                "{n} differs from the source's: {} bytes received, {} in the source, first \
                 difference at offset {at:?}",
                got.len(),
                want.len()
            );
        }
    }
    Ok(names)
}
