//! Where a contact's client certificate comes from (protocol.md §4): the TLS session (mTLS, the
//! default) or a header set by a TLS-terminating proxy, optionally with a checksum header or in
//! Envoy's `x-forwarded-client-cert` format. The decoders are pure; failures are 400 bodies.

use base64::Engine as _;
use fleetgate_pb::fleetspeak::components::frontend_config::FrontendMode;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::server::Peer;
use crate::tls::{self, Identity};

/// The frontend mode's certificate source. Header names are matched case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CertSource {
    /// The TLS peer certificate (exactly one).
    #[default]
    Mtls,
    /// A URL-escaped PEM certificate in `header`.
    Header { header: String },
    /// As `Header`, and `checksum_header` must hold the unpadded standard base64 of the
    /// certificate's SHA-256 (set by the proxy from the TLS session).
    HeaderChecksum {
        header: String,
        checksum_header: String,
    },
    /// The `Cert=` field of an Envoy XFCC header.
    Xfcc { header: String },
}

/// The certificate source and whether the listener is cleartext, for a components-config
/// frontend mode (`None` is mTLS).
pub fn from_mode(mode: Option<&FrontendMode>) -> (CertSource, bool) {
    match mode {
        None | Some(FrontendMode::MtlsConfig(_)) => (CertSource::Mtls, false),
        Some(FrontendMode::HttpsHeaderConfig(c)) => (header(&c.client_certificate_header), false),
        Some(FrontendMode::HttpsHeaderChecksumConfig(c)) => (
            with_checksum(
                &c.client_certificate_header,
                &c.client_certificate_checksum_header,
            ),
            false,
        ),
        Some(FrontendMode::CleartextHeaderConfig(c)) => {
            (header(&c.client_certificate_header), true)
        }
        Some(FrontendMode::CleartextHeaderChecksumConfig(c)) => (
            with_checksum(
                &c.client_certificate_header,
                &c.client_certificate_checksum_header,
            ),
            true,
        ),
        Some(FrontendMode::CleartextXfccConfig(c)) => (
            CertSource::Xfcc {
                header: c.client_certificate_header.clone(),
            },
            true,
        ),
    }
}

fn header(name: &str) -> CertSource {
    CertSource::Header {
        header: name.to_owned(),
    }
}

fn with_checksum(name: &str, checksum: &str) -> CertSource {
    CertSource::HeaderChecksum {
        header: name.to_owned(),
        checksum_header: checksum.to_owned(),
    }
}

/// The identity of one request, or the 400 body saying why there is none.
pub fn identity(source: &CertSource, headers: &HeaderMap, peer: &Peer) -> Result<Identity, String> {
    match source {
        CertSource::Mtls => peer.identity.clone(),
        CertSource::Header { header } => {
            tls::identity_from_der(&der_from_escaped_pem(required(headers, header)?)?)
        }
        CertSource::HeaderChecksum {
            header,
            checksum_header,
        } => {
            let cert = required(headers, header)?;
            let sent = required(headers, checksum_header)?;
            // A certificate that does not decode expects "", which never matches a sent value.
            let der = der_from_escaped_pem(cert);
            let expected = der.as_deref().map(checksum).unwrap_or_default();
            if expected != sent {
                return Err(format!(
                    "client certificate checksum in {checksum_header} does not match the certificate"
                ));
            }
            tls::identity_from_der(&der?)
        }
        CertSource::Xfcc { header } => {
            let value = required(headers, header)?;
            tls::identity_from_der(&der_from_escaped_pem(&xfcc_cert(value))?)
        }
    }
}

/// The first value of `name`; missing or empty is an error.
fn required<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, String> {
    let v = headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| format!("header {name} is not ASCII"))
        })
        .transpose()?
        .unwrap_or_default();
    if v.is_empty() {
        return Err(format!("no client certificate in header {name}"));
    }
    Ok(v)
}

/// Unpadded standard base64 of SHA-256 over the DER (43 characters).
pub fn checksum(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(der))
}

/// Percent-decode (path style: `+` stays `+`), then exactly one PEM `CERTIFICATE` block.
pub fn der_from_escaped_pem(value: &str) -> Result<Vec<u8>, String> {
    pem_certificate(&path_unescape(value)?)
}

/// Go's `url.PathUnescape`.
pub fn path_unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            let Some(hex) = hex else {
                let bad = s.get(i..(i + 3).min(s.len())).unwrap_or("%");
                return Err(format!("invalid URL escape {bad:?}"));
            };
            let text = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
            out.push(u8::from_str_radix(text, 16).map_err(|e| e.to_string())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// One PEM `CERTIFICATE` block, as Go's `pem.Decode` reads it: bytes before `-----BEGIN ` are
/// skipped, trailing spaces or `\r` on the END line are fine, and nothing may follow the END
/// line's newline.
pub fn pem_certificate(data: &[u8]) -> Result<Vec<u8>, String> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let start = find(data, BEGIN).ok_or("no PEM block in the client certificate header")?;
    let rest = &data[start + BEGIN.len()..];
    let eol = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
    let kind = trim_end(&rest[..eol])
        .strip_suffix(b"-----")
        .ok_or("malformed PEM BEGIN line")?;
    if kind != b"CERTIFICATE" {
        return Err(format!(
            "PEM block is {:?}, not CERTIFICATE",
            String::from_utf8_lossy(kind)
        ));
    }
    let body = &rest[eol..];
    let end_marker = b"\n-----END CERTIFICATE-----";
    let end = find(body, end_marker).ok_or("PEM block has no END line")?;
    let after = trim_start_blank(&body[end + end_marker.len()..]);
    let after = after.strip_prefix(b"\n").unwrap_or(after);
    if !after.is_empty() {
        return Err("data after the client certificate (only one certificate allowed)".into());
    }
    let b64: Vec<u8> = pem_body(&body[..end]);
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("PEM base64: {e}"))
}

/// The base64 of a block body: optional `Key: value` headers up to a blank line are skipped,
/// whitespace removed.
fn pem_body(body: &[u8]) -> Vec<u8> {
    let text = body.strip_prefix(b"\n").unwrap_or(body);
    let first_line = text.split(|&c| c == b'\n').next().unwrap_or_default();
    let text = if first_line.contains(&b':') {
        find(text, b"\n\n").map_or(&text[text.len()..], |i| &text[i + 2..])
    } else {
        text
    };
    text.iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rposition(|c| !b" \t\r".contains(c))
        .map_or(0, |i| i + 1);
    &s[..n]
}

fn trim_start_blank(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|c| !b" \t\r".contains(c))
        .unwrap_or(s.len());
    &s[n..]
}

/// The value of the first `Cert` field of an XFCC header, else the whole value (§4.4).
pub fn xfcc_cert(value: &str) -> String {
    xfcc_field(value, "Cert").unwrap_or_else(|| value.to_owned())
}

/// Scans `key=value` pairs separated by `;` or `,` and returns the unescaped value of the first
/// pair whose key is exactly `want`. A value may start with a quoted part, in which `;` and `,`
/// are literal; `\x` stands for `x` everywhere; a trailing lone backslash ends the scan.
pub fn xfcc_field(value: &str, want: &str) -> Option<String> {
    let mut chars = value.chars().peekable();
    loop {
        let mut key = String::new();
        loop {
            match chars.next()? {
                '=' => break,
                c => key.push(c),
            }
        }
        if key.is_empty() {
            return None;
        }
        let mut out = String::new();
        let mut quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
        }
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                '"' if quoted => quoted = false,
                ';' | ',' if !quoted => break,
                c => out.push(c),
            }
        }
        if key == want {
            return Some(out);
        }
    }
}

#[cfg(test)]
#[path = "certsource_tests.rs"]
mod tests;
