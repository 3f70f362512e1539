#![no_main]
//! Fuzz target: `walstream failover`'s reading of a pgpool.conf never panics on arbitrary
//! input.

use libfuzzer_sys::fuzz_target;

#[path = "../../src/failover/config.rs"]
#[allow(dead_code)]
mod config;

fuzz_target!(|data: &[u8]| {
    config::fuzz_config(data);
});
