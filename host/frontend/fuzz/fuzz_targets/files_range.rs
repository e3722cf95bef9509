#![no_main]
//! Calls `fleetgate_frontend::fuzzing::files_range`: a `/files` `Range` header on a file of a
//! size the input chooses; every range returned lies inside the file.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetgate_frontend::fuzzing::files_range(data);
});
