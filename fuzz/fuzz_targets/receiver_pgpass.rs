#![no_main]
//! Fuzz target: `walstream_receiver::conninfo::fuzz_pgpass_line` never panics on arbitrary input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_receiver::conninfo::fuzz_pgpass_line(data);
});
