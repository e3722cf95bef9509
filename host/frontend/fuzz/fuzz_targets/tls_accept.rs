#![no_main]
//! Calls `fleetgate_frontend::fuzzing::tls_accept`: arbitrary bytes from the peer into the
//! frontend's TLS handshake, with a real server certificate.

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fleetgate_frontend::fuzzing::tls_accept(common::PEERS.server.clone(), data);
});
