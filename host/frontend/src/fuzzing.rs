//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_smoke.rs`.
//!
//! Each takes arbitrary bytes, runs one pure decoder over them and asserts the invariants that must
//! hold for any input; a panic is a finding. They are public so the out-of-workspace cargo-fuzz
//! package can call them without duplicating the harness logic.

use bytes::Bytes;

use crate::{certsource, date, files, proxy, tls, wire};

const MAX_FRAME: usize = 4096;

/// Feeds `data` to a [`wire::FrameDecoder`] in chunks whose sizes come from the first byte.
pub fn frames(data: &[u8]) {
    let (step, body) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let mut dec = wire::FrameDecoder::with_magic(MAX_FRAME);
    for chunk in body.chunks(step) {
        dec.push(chunk);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX_FRAME);
                    let _ = wire::decode_wcd(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Draining after every push bounds the buffer to one frame header/payload plus one chunk.
        assert!(dec.buffered() <= MAX_FRAME + 10 + step);
    }
}

/// Parses `data` as a `WrappedContactData` and, if it parses, its inner `ContactData`.
pub fn wrapped_contact_data(data: &[u8]) {
    if let Ok(wcd) = wire::decode_wcd(data) {
        let _ = <fleetgate_pb::fleetspeak::ContactData as prost::Message>::decode(
            wcd.contact_data.as_slice(),
        );
    }
}

/// Inflates `data` as a zlib body with a small cap, in bounded output steps.
pub fn deflate_body(data: &[u8]) {
    const CAP: usize = 1 << 20;
    let mut z = wire::ZlibStream::new(Some(CAP));
    let mut input = Bytes::copy_from_slice(data);
    let mut total = 0usize;
    loop {
        let before = input.len();
        match z.decode(&mut input, 4096) {
            Ok(out) => {
                assert!(out.len() <= 4096);
                total += out.len();
                assert!(total <= CAP);
                if out.is_empty() && input.len() == before {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Parses `data` as the first bytes of a connection with the PROXY protocol enabled.
pub fn proxy_header(data: &[u8]) {
    if let Ok(proxy::Parsed::Header { len, .. }) = proxy::parse(data) {
        assert!(len <= data.len());
    }
}

/// Runs the decoders that turn a client certificate into a [`fleetgate_types::ClientId`]: DER as
/// the TLS layer hands it over, and the proxy header forms (URL-escaped PEM, Envoy's XFCC).
pub fn client_identity(data: &[u8]) {
    let check = |der: &[u8]| {
        if let Ok(id) = tls::identity_from_der(der) {
            assert!(!id.public_key.is_empty());
            assert_eq!(
                id.client_id,
                fleetgate_types::ClientId::from_public_key(&id.public_key)
            );
        }
    };
    check(data);
    if let Ok(der) = certsource::pem_certificate(data) {
        check(&der);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(der) = certsource::der_from_escaped_pem(text) {
        check(&der);
    }
    if let Ok(der) = certsource::der_from_escaped_pem(&certsource::xfcc_cert(text)) {
        check(&der);
    }
}

/// Splits `data` as a `/files/<service>/<name>` request path.
pub fn files_path(data: &[u8]) {
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = files::parse_path(path);
    }
}

/// Parses `data` as a `Range` header for a file whose size its first two bytes give: every range
/// returned lies inside the file.
pub fn files_range(data: &[u8]) {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let size = usize::from(u16::from_le_bytes([*a, *b]));
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(ranges) = files::parse_range(value, size) {
        for r in ranges {
            assert!(
                r.start <= r.end && r.end <= size,
                "{value:?} on {size} bytes gave {r:?}"
            );
        }
    }
}

/// Parses `data` as an `If-Modified-Since` date; a date that parses formats to one that parses
/// back to the same second.
pub fn http_date(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = date::parse(text) {
        let again = date::format(t);
        assert_eq!(
            date::parse(&again),
            Some(t),
            "{text:?} formats as {again:?}"
        );
    }
}

#[path = "fuzzing_tls.rs"]
mod tls_harness;

pub use tls_harness::{TlsPeers, tls_accept, tls_session};
