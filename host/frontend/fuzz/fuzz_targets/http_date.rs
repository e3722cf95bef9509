#![no_main]
//! Calls `fleetgate_frontend::fuzzing::http_date`, which asserts the decoder's invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetgate_frontend::fuzzing::http_date(data);
});
