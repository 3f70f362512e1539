#![no_main]
//! Fuzz target: `walstream_sender::basebackup::dir::fuzz_control` (a `pg_control` read
//! for a backup) never panics on arbitrary input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_sender::basebackup::dir::fuzz_control(data);
});
