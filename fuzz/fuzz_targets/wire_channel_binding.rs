#![no_main]
//! Fuzz target: `tls_server_end_point` reads any bytes as a certificate without panicking.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = walstream_protocol::wire::channel_binding::tls_server_end_point(data);
});
