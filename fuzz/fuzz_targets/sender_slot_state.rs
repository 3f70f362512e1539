#![no_main]
//! Fuzz target: `walstream_sender::slots::fuzz_slot_state` never panics on arbitrary input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_sender::slots::fuzz_slot_state(data);
});
