//! Fuzz target: the wire codec's frontend parser (never panics; what parses re-encodes to
//! bytes that parse back to the same message).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = walstream_protocol::wire::fuzz::fuzz_frontend(data);
});
