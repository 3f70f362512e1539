#![no_main]
//! Fuzz target: `walstream_node::conf::fuzz_conf` never panics on arbitrary input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_node::conf::fuzz_conf(data);
});
