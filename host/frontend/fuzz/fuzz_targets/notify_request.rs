#![no_main]
//! Calls `fleetgate_notify::fuzzing::notify_request`, which asserts the decoder's invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetgate_notify::fuzzing::notify_request(data);
});
