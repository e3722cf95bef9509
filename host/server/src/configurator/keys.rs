//! Private keys in the PEM forms `fleetspeak-config` reads and writes.
//!
//! The original writes ECDSA P-256 keys as SEC1 (`EC PRIVATE KEY`) and reads SEC1 or PKCS#1
//! (`RSA PRIVATE KEY`) CA keys; ring, under rcgen, only loads PKCS#8. The conversions here are
//! plain DER re-wrapping (no key material is computed), so they are small enough to own.

use anyhow::{Context, Result, anyhow, bail};
use rcgen::KeyPair;
use rustls_pki_types::PrivateKeyDer;

/// `id-ecPublicKey` (1.2.840.10045.2.1) as a DER TLV.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` (1.2.840.10045.3.1.7) as a DER TLV.
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `rsaEncryption` (1.2.840.113549.1.1.1) and its NULL parameters.
const ALG_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const PARAMETERS: u8 = 0xa0;

/// Loads a PEM private key for signing: SEC1 P-256, PKCS#1 RSA or PKCS#8.
pub fn load_pem(pem: &str) -> Result<KeyPair> {
    let key = rustls_pemfile::private_key(&mut pem.as_bytes())
        .context("reading the PEM")?
        .ok_or_else(|| anyhow!("no private key PEM block found"))?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der())?,
        PrivateKeyDer::Pkcs1(k) => wrap_pkcs8(ALG_RSA, k.secret_pkcs1_der()),
        _ => bail!("unsupported private key type"),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| anyhow!("unusable private key: {e}"))
}

/// A fresh P-256 key as `EC PRIVATE KEY` PEM, the form the original writes.
pub fn generate_p256() -> Result<(KeyPair, String)> {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating a P-256 key")?;
    let sec1 = pkcs8_to_sec1(&key.serialize_der())?;
    Ok((key, pem_encode("EC PRIVATE KEY", &sec1)))
}

/// SEC1 `ECPrivateKey` → PKCS#8. Only P-256 (the curve the original generates).
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>> {
    let (_, body, _) = tlv(sec1)
        .filter(|(t, ..)| *t == SEQUENCE)
        .ok_or_else(bad_sec1)?;
    let mut rest = body;
    while let Some((tag, value, next)) = tlv(rest) {
        if tag == PARAMETERS && value != OID_P256 {
            bail!("unsupported EC curve: only P-256 keys can be used");
        }
        rest = next;
    }
    let mut alg = OID_EC_PUBLIC_KEY.to_vec();
    alg.extend_from_slice(OID_P256);
    Ok(wrap_pkcs8(&alg, sec1))
}

/// PKCS#8 of a P-256 key (ring's form, without `[0] parameters` inside) → SEC1 with the
/// named curve, which Go's `x509.ParseECPrivateKey` needs.
fn pkcs8_to_sec1(pkcs8: &[u8]) -> Result<Vec<u8>> {
    let (_, outer, _) = tlv(pkcs8).ok_or_else(bad_pkcs8)?;
    let (_, _version, rest) = tlv(outer).ok_or_else(bad_pkcs8)?;
    let (_, _alg, rest) = tlv(rest).ok_or_else(bad_pkcs8)?;
    let (_, inner, _) = tlv(rest)
        .filter(|(t, ..)| *t == OCTET_STRING)
        .ok_or_else(bad_pkcs8)?;
    let (_, ec, _) = tlv(inner)
        .filter(|(t, ..)| *t == SEQUENCE)
        .ok_or_else(bad_pkcs8)?;
    let (version, rest) = split_tlv(ec)?;
    let (private_key, tail) = split_tlv(rest)?;
    let mut body = [version, private_key].concat();
    if !tail.starts_with(&[PARAMETERS]) {
        body.extend(encode(PARAMETERS, OID_P256));
    }
    body.extend_from_slice(tail);
    Ok(encode(SEQUENCE, &body))
}

/// Splits the first whole TLV off `input`.
fn split_tlv(input: &[u8]) -> Result<(&[u8], &[u8])> {
    let (_, _, rest) = tlv(input).ok_or_else(bad_pkcs8)?;
    Ok(input.split_at(input.len() - rest.len()))
}

fn wrap_pkcs8(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = encode(INTEGER, &[0]);
    body.extend(encode(SEQUENCE, algorithm));
    body.extend(encode(OCTET_STRING, key));
    encode(SEQUENCE, &body)
}

fn bad_sec1() -> anyhow::Error {
    anyhow!("malformed EC PRIVATE KEY")
}

fn bad_pkcs8() -> anyhow::Error {
    anyhow!("malformed PKCS#8 key")
}

/// One DER TLV (single-byte tags, definite lengths up to 4 bytes): tag, value, rest.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn encode(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

/// PEM armour with 64-column base64, as Go's `pem.Encode` writes it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &b)| a | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out += std::str::from_utf8(line).unwrap_or_default();
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key written by the Go `fleetspeak-config` (SEC1 with the named curve).
    const GO_KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIMJNNa0h0vzhdxYIlUjE/LdARSJQPf3f41HDZqen64lGoAoGCCqGSM49\nAwEHoUQDQgAEQgPrQGUZtoJteERjSjNImLyPa+wB3WbAmy2ZIN6SuvJIWlb72qLh\nollC8KoRbyB55lrJgjJ1p64KxsWmrv1tJg==\n-----END EC PRIVATE KEY-----\n";

    #[test]
    fn go_sec1_keys_load() {
        let key = load_pem(GO_KEY).expect("SEC1 key");
        assert!(key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256));
    }

    #[test]
    fn generated_keys_are_sec1_with_the_curve_and_load_back() {
        let (key, pem) = generate_p256().expect("generate");
        assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        // SEC1 with parameters is 121 bytes for P-256: "MHcCAQEE" like Go's.
        assert!(pem.contains("\nMHcCAQEE"), "{pem}");
        let back = load_pem(&pem).expect("reload");
        assert_eq!(back.public_key_der(), key.public_key_der());
    }

    #[test]
    fn pkcs8_keys_load() {
        let key = KeyPair::generate().expect("generate");
        assert!(load_pem(&key.serialize_pem()).is_ok());
    }

    #[test]
    fn pem_encoding_matches_base64() {
        assert_eq!(
            pem_encode("X", b"foobar\x01"),
            "-----BEGIN X-----\nZm9vYmFyAQ==\n-----END X-----\n"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(sec1_to_pkcs8(&[0x30, 0x85, 1]).is_err());
        assert!(pkcs8_to_sec1(&[0x30, 0x02, 0x02]).is_err());
        assert!(
            load_pem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
                .is_err()
        );
    }
}
