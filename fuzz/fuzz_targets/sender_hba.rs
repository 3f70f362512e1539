#![no_main]
//! Fuzz target: `walstream_sender::hba::fuzz_hba` never panics on arbitrary input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_sender::hba::fuzz_hba(data);
});
