#![no_main]
//! Fuzz target: the parsers of `walstream replay-bench`'s input files (capture manifest,
//! backup_label, pg_control, /proc stat) never panic on arbitrary input.

use libfuzzer_sys::fuzz_target;

#[path = "../../src/replay_bench/parse.rs"]
#[allow(dead_code)]
mod parse;

fuzz_target!(|data: &[u8]| {
    parse::fuzz_inputs(data);
});
