#![no_main]
//! Fuzz target: `walstream_receiver::conn::fuzz_wal_header`: the XLogData header reader of
//! the zero-copy receive path never panics and agrees with the full message parser.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_receiver::conn::fuzz_wal_header(data);
});
