//! Fuzz target: the CopyBoth sub-message parsers (`w`, `k`, `r`, `h`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    walstream_protocol::replication::fuzz_copy_data(data);
});
