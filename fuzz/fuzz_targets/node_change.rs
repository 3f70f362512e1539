#![no_main]
//! Fuzz target: `walstream_node::fuzz::fuzz_change` never panics and round-trips what it accepts.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_node::fuzz::fuzz_change(data);
});
