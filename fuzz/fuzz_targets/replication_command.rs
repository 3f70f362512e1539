//! Fuzz target: the replication command grammar (never panics; what parses, prints back
//! to the same command).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    walstream_protocol::replication::fuzz_parse_command(data);
});
