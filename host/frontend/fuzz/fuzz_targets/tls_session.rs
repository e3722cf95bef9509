#![no_main]
//! Calls `fleetgate_frontend::fuzzing::tls_session`: a real rustls client against the frontend's
//! TLS stream, with a script of writes, reads, key updates, closes and corruptions.

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetgate_frontend::fuzzing::tls_session(&common::PEERS, data);
});
