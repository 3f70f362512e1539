//! Replays the committed corpora of the cargo-fuzz targets in `fuzz/` through the same
//! entry points, so every test run checks that no known input panics (CI has no nightly
//! toolchain to run libFuzzer itself).

use std::fs;
use std::path::{Path, PathBuf};

use walstream_protocol::{replication, wal, wire};

/// A fuzz entry point.
type Entry = fn(&[u8]);

/// Each fuzz target of `fuzz/Cargo.toml` with the entry point it calls.
const TARGETS: &[(&str, Entry)] = &[
    ("replication_command", replication::fuzz_parse_command),
    ("copy_data", replication::fuzz_copy_data),
    ("identify_system", replication::fuzz_identify_system),
    ("wire_startup", |d| {
        let _ = wire::fuzz::fuzz_startup(d);
    }),
    ("wire_frontend", |d| {
        let _ = wire::fuzz::fuzz_frontend(d);
    }),
    ("wire_backend", |d| {
        let _ = wire::fuzz::fuzz_backend(d);
    }),
    ("wire_password", wire::fuzz::fuzz_password),
    ("wire_channel_binding", |d| {
        let _ = wire::channel_binding::tls_server_end_point(d);
    }),
    ("wal_decoder", wal::fuzz::fuzz_decoder),
    ("wal_desc", |d| {
        let _ = wal::desc::fuzz_describe(d);
    }),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn every_fuzz_target_is_replayed_here() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let declared: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "walstream-fuzz")
        // The sender's, receiver's, node's, replay-bench's and failover's targets are
        // replayed by their own crates' tests.
        .filter(|n| {
            !["sender_", "receiver_", "node_", "replaybench_", "failover_"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    let mut replayed: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    let mut declared_sorted = declared.clone();
    declared_sorted.sort_unstable();
    replayed.sort_unstable();
    assert_eq!(declared_sorted, replayed, "fuzz/Cargo.toml targets vs replayed targets");
}

#[test]
fn corpora_replay_without_panics() {
    for (target, entry) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        let inputs: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "empty corpus for {target}");
        for path in inputs {
            let data = fs::read(&path).unwrap();
            entry(&data);
        }
    }
}
