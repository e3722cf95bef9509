#![no_main]
//! Calls `fleetgate_config::fuzzing::config_values`, which asserts the decoder's invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetgate_config::fuzzing::config_values(data);
});
