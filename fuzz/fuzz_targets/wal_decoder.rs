//! Fuzz target: the WAL decoder on mutated real WAL (never panics; the same records and
//! error whatever the chunking of the input, owned and borrowed paths alike).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    walstream_protocol::wal::fuzz::fuzz_decoder(data);
});
