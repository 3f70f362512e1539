//! Replays the committed corpora of the node's cargo-fuzz targets (`fuzz/`, names starting
//! `node_`) through the same entry points, so every test run checks that no known input
//! panics (CI has no nightly toolchain to run libFuzzer itself).

use walstream_tests::fuzz::{replay_corpora, Entry};

/// Each `node_*` fuzz target of `fuzz/Cargo.toml` with the entry point it calls.
const TARGETS: &[(&str, Entry)] =
    &[("node_conf", walstream_node::conf::fuzz_conf), ("node_sql", walstream_node::sql::fuzz_sql)];

#[test]
fn every_node_fuzz_target_replays_its_corpus() {
    replay_corpora("node_", TARGETS).unwrap();
}
