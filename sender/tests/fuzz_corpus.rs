//! Replays the committed corpora of the sender's cargo-fuzz targets (`fuzz/`, names
//! starting `sender_`) through the same entry points, so every test run checks that no
//! known input panics (CI has no nightly toolchain to run libFuzzer itself).

use walstream_tests::fuzz::{replay_corpora, Entry};

/// Each `sender_*` fuzz target of `fuzz/Cargo.toml` with the entry point it calls.
const TARGETS: &[(&str, Entry)] = &[
    ("sender_hba", walstream_sender::hba::fuzz_hba),
    ("sender_roles", walstream_sender::auth::fuzz_roles),
    ("sender_scram", walstream_sender::auth::fuzz_scram),
    ("sender_slot_state", walstream_sender::slots::fuzz_slot_state),
    ("sender_backup_control", walstream_sender::basebackup::dir::fuzz_control),
    ("sender_syncrep_names", walstream_sender::syncrep::fuzz_names),
];

#[test]
fn every_sender_fuzz_target_replays_its_corpus() {
    replay_corpora("sender_", TARGETS).unwrap();
}
