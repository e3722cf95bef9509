//! A bounded, stable-Rust stand-in for the cargo-fuzz targets: the same entry points fed random
//! bytes and mutations of valid inputs, so CI catches panics without nightly.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::LazyLock;

use fleetgate_frontend::fuzzing::{self, TlsPeers};
use fleetgate_frontend::wire;
use fleetgate_pb::fleetspeak::{ContactData, Message, WrappedContactData};
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 3_000;

/// Each TLS run does a real handshake; fewer of them keep this test quick.
const TLS_ROUNDS: usize = 300;

static PEERS: LazyLock<TlsPeers> = LazyLock::new(|| {
    let pki = common::pki();
    let client = common::client_cert();
    TlsPeers::new(
        &pki.server_cert_pem,
        &pki.server_key_pem,
        pki.ca_der.clone(),
        client.chain.clone(),
        rustls_pki_types::PrivateKeyDer::Pkcs8(client.key_der.clone().into()),
    )
    .unwrap()
});

/// The committed seed corpus of a fuzz target (`fuzz/seeds/<target>/`).
fn committed_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    seeds
}

fn seeds() -> Vec<Vec<u8>> {
    let cd = ContactData {
        sequencing_nonce: 42,
        messages: vec![Message {
            message_type: "t".into(),
            data: None,
            ..Default::default()
        }],
        ..Default::default()
    };
    let wcd = WrappedContactData {
        contact_data: cd.encode_to_vec(),
        client_labels: vec!["amd64".into(), "linux".into()],
        ..Default::default()
    };
    let mut stream = vec![7u8]; // chunk size for fuzzing::frames
    stream.extend_from_slice(&wire::MAGIC);
    for _ in 0..3 {
        let bytes = wcd.encode_to_vec();
        wire::encode_uvarint(bytes.len() as u64, &mut stream);
        stream.extend(bytes);
    }
    let mut zlib = flate2::Compress::new(flate2::Compression::default(), true);
    let mut deflated = Vec::with_capacity(4096);
    zlib.compress_vec(&stream, &mut deflated, flate2::FlushCompress::Sync)
        .unwrap();
    vec![
        stream,
        wcd.encode_to_vec(),
        deflated,
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n".to_vec(),
        [
            &[
                0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11,
                0, 12,
            ][..],
            &[1; 12],
        ]
        .concat(),
    ]
}

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..5) {
        let pos = if out.is_empty() {
            0
        } else {
            rng.random_range(0..out.len())
        };
        match rng.random_range(0..4) {
            0 if !out.is_empty() => out[pos] ^= 1 << rng.random_range(0..8),
            1 => out.insert(pos, rng.random()),
            2 if !out.is_empty() => {
                out.remove(pos);
            }
            _ => out.truncate(pos),
        }
    }
    out
}

fn run_all(data: &[u8]) {
    fuzzing::frames(data);
    fuzzing::wrapped_contact_data(data);
    fuzzing::deflate_body(data);
    fuzzing::proxy_header(data);
    fuzzing::client_identity(data);
    fuzzing::files_path(data);
    fuzzing::http_date(data);
}

fn run_tls(data: &[u8]) {
    fuzzing::tls_accept(PEERS.server.clone(), data);
    fuzzing::tls_session(&PEERS, data);
}

#[test]
fn random_inputs_do_not_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..ROUNDS {
        let data: Vec<u8> = (0..rng.random_range(0..512))
            .map(|_| rng.random())
            .collect();
        run_all(&data);
    }
}

#[test]
fn mutated_valid_inputs_do_not_panic() {
    let mut rng = StdRng::seed_from_u64(0xf22);
    let seeds = seeds();
    for seed in &seeds {
        run_all(seed);
    }
    for i in 0..ROUNDS {
        let seed = &seeds[i % seeds.len()];
        run_all(&mutate(&mut rng, seed));
    }
}

#[test]
fn committed_tls_seeds_do_not_panic() {
    for seed in committed_seeds("tls_accept") {
        fuzzing::tls_accept(PEERS.server.clone(), &seed);
    }
    for seed in committed_seeds("tls_session") {
        fuzzing::tls_session(&PEERS, &seed);
    }
}

#[test]
fn random_and_mutated_tls_scripts_do_not_panic() {
    let mut rng = StdRng::seed_from_u64(0x715);
    let seeds: Vec<Vec<u8>> = committed_seeds("tls_accept")
        .into_iter()
        .chain(committed_seeds("tls_session"))
        .collect();
    for i in 0..TLS_ROUNDS {
        let data: Vec<u8> = if i % 2 == 0 {
            (0..rng.random_range(0..256))
                .map(|_| rng.random())
                .collect()
        } else {
            mutate(&mut rng, &seeds[i % seeds.len()])
        };
        run_tls(&data);
    }
}

/// Found by `random_and_mutated_tls_scripts_do_not_panic`. The script: TLS 1.2 without a client
/// certificate (`bb`), transport writes of 364 bytes (`a5 34`), a bit flip at offset 0x5ef8 with
/// mask 0xa7 pending for the client's next bytes (`92 f8 5e a6`), writes of 350 bytes (`a5 32`),
/// the server's shutdown (`df`); then the client's close_notify (the flip lands in it) and the
/// server's reads. `poll_shutdown` queued our close_notify, for which rustls sets
/// `sent_fatal_alert`; the corrupt record read afterwards makes rustls send a fatal alert
/// (`handle_deframe_error` → `send_fatal_alert`), whose `debug_assert!(!self.sent_fatal_alert)`
/// fires: a panic in debug builds, a second alert after the close_notify in release.
#[test]
fn a_tls12_shutdown_script_does_not_make_rustls_send_a_second_fatal_alert() {
    let script = [0xbb, 0xa5, 0x34, 0x92, 0xf8, 0x5e, 0xa6, 0xa5, 0x32, 0xdf];
    for _ in 0..4 {
        fuzzing::tls_session(&PEERS, &script);
    }
}
