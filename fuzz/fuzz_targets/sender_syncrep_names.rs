//! Fuzz target: `synchronous_standby_names` (scanner, grammar, and writing back).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    walstream_sender::syncrep::fuzz_names(data);
});
