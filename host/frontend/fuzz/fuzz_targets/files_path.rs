#![no_main]
//! Calls `fleetgate_frontend::fuzzing::files_path`, which asserts the decoder's invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetgate_frontend::fuzzing::files_path(data);
});
