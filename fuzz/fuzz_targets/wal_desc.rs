//! Fuzz target: record descriptions as pg_waldump prints them (`[rmid, info, main data...]`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = walstream_protocol::wal::desc::fuzz_describe(data);
});
