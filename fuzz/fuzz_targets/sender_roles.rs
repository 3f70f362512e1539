#![no_main]
//! Fuzz target: `walstream_sender::auth::fuzz_roles` never panics on arbitrary input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_sender::auth::fuzz_roles(data);
});
