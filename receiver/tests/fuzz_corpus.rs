//! Replays the committed corpora of the receiver's cargo-fuzz targets (`fuzz/`, names
//! starting `receiver_`) through the same entry points, so every test run checks that no
//! known input panics (CI has no nightly toolchain to run libFuzzer itself).

use walstream_tests::fuzz::{replay_corpora, Entry};

/// Each `receiver_*` fuzz target of `fuzz/Cargo.toml` with the entry point it calls.
const TARGETS: &[(&str, Entry)] = &[
    ("receiver_resume", walstream_receiver::segments::fuzz_resume),
    ("receiver_conninfo", walstream_receiver::conninfo::fuzz_conninfo),
    ("receiver_pgpass", walstream_receiver::conninfo::fuzz_pgpass_line),
    ("receiver_wal_header", walstream_receiver::conn::fuzz_wal_header),
    ("receiver_backup_message", walstream_receiver::basebackup::fuzz_backup_message),
];

#[test]
fn every_receiver_fuzz_target_replays_its_corpus() {
    replay_corpora("receiver_", TARGETS).unwrap();
}
