//! Replays the committed corpora of the node's cargo-fuzz targets (`fuzz/`, names starting
//! `node_`) through the same entry points, so every test run checks that no known input
//! panics (CI has no nightly toolchain to run libFuzzer itself).

use walstream_node::fuzz;
use walstream_tests::fuzz::{replay_corpora, Entry};

/// Each `node_*` fuzz target of `fuzz/Cargo.toml` with the entry point it calls.
const TARGETS: &[(&str, Entry)] = &[
    ("node_conf", fuzz::fuzz_conf),
    ("node_xlog_record", fuzz::fuzz_record),
    ("node_xlog_control", fuzz::fuzz_control),
    ("node_change", fuzz::fuzz_change),
    ("node_image", fuzz::fuzz_image),
    ("node_checkpoint_state", fuzz::fuzz_checkpoint_state),
    ("node_sql", walstream_node::sql::fuzz_sql),
];

#[test]
fn every_node_fuzz_target_replays_its_corpus() {
    replay_corpora("node_", TARGETS).unwrap();
}
