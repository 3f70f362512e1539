//! Fuzz target: IDENTIFY_SYSTEM's reply parser (fields split by `0xff`, `0x00` is NULL).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    walstream_protocol::replication::fuzz_identify_system(data);
});
