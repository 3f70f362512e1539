#![no_main]
//! Fuzz target: `walstream_node::sql::fuzz_sql`: no SQL text panics a session.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_node::sql::fuzz_sql(data);
});
