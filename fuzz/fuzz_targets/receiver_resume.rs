#![no_main]
//! Fuzz target: `walstream_receiver::segments::fuzz_resume` — a `.partial` of arbitrary
//! bytes never makes the resume point panic or leave its segment.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    walstream_receiver::segments::fuzz_resume(data);
});
