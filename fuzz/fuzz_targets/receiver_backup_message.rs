#![no_main]
//! Fuzz target: `walstream_receiver::basebackup::fuzz_backup_message` never panics and
//! round-trips what it parses.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_receiver::basebackup::fuzz_backup_message(data);
});
