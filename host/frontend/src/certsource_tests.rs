use http::{HeaderMap, HeaderValue};

use super::*;
use crate::server::Peer;

fn cert() -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let c = rcgen::CertificateParams::new(vec!["client".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    (c.pem(), c.der().to_vec())
}

/// Go's `url.PathEscape`, as the client applies it to its PEM.
fn path_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b'$' | b'&' | b'+' | b':' | b'=' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn no_tls() -> Peer {
    Peer {
        identity: Err("TLS information not found".into()),
        observed_address: "127.0.0.1:1".into(),
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).expect("header value"));
    }
    h
}

#[test]
fn percent_decoding_is_path_style() {
    assert_eq!(path_unescape("a%20b+c%2Fd").expect("ok"), b"a b+c/d");
    assert!(path_unescape("%zz").is_err());
    assert!(path_unescape("abc%2").is_err());
}

#[test]
fn pem_must_be_one_certificate() {
    let (pem, der) = cert();
    assert_eq!(pem_certificate(pem.as_bytes()).expect("one cert"), der);
    // Bytes before BEGIN are skipped; `\r` and spaces on the END line are tolerated.
    let crlf = format!("junk\n{}", pem.trim_end().to_owned() + " \r\n");
    assert_eq!(pem_certificate(crlf.as_bytes()).expect("tolerated"), der);
    let two = format!("{pem}{pem}");
    assert!(pem_certificate(two.as_bytes()).is_err(), "two certificates");
    assert!(
        pem_certificate(format!("{pem}x").as_bytes()).is_err(),
        "trailing data"
    );
    let key = pem.replace("CERTIFICATE", "PRIVATE KEY");
    assert!(pem_certificate(key.as_bytes()).is_err(), "wrong type");
    assert!(pem_certificate(b"no pem here").is_err());
}

#[test]
fn header_mode_derives_the_same_id_as_mtls() {
    let (pem, der) = cert();
    let want = tls::identity_from_der(&der).expect("identity");
    let source = CertSource::Header {
        header: "X-Client-Cert".into(),
    };
    let h = headers(&[("x-client-cert", &path_escape(&pem))]);
    assert_eq!(identity(&source, &h, &no_tls()).expect("header"), want);
    assert!(identity(&source, &HeaderMap::new(), &no_tls()).is_err());
    assert!(identity(&source, &headers(&[("x-client-cert", "")]), &no_tls()).is_err());
    // mTLS mode ignores headers.
    assert!(identity(&CertSource::Mtls, &h, &no_tls()).is_err());
}

#[test]
fn checksum_mode_compares_unpadded_base64_sha256() {
    let (pem, der) = cert();
    let sum = checksum(&der);
    assert_eq!(sum.len(), 43);
    let source = CertSource::HeaderChecksum {
        header: "x-cert".into(),
        checksum_header: "x-cert-sum".into(),
    };
    let escaped = path_escape(&pem);
    let ok = headers(&[("x-cert", &escaped), ("x-cert-sum", &sum)]);
    assert!(identity(&source, &ok, &no_tls()).is_ok());
    let padded = format!("{sum}=");
    let bad = headers(&[("x-cert", &escaped), ("x-cert-sum", &padded)]);
    assert!(identity(&source, &bad, &no_tls()).is_err());
    let missing = headers(&[("x-cert", &escaped)]);
    assert!(identity(&source, &missing, &no_tls()).is_err());
}

#[test]
fn xfcc_takes_the_first_cert_field() {
    assert_eq!(
        xfcc_field("By=a;Cert=b;Cert=c", "Cert").as_deref(),
        Some("b")
    );
    assert_eq!(
        xfcc_field(r#"Hash=1;Cert="x;y,z";URI=u"#, "Cert").as_deref(),
        Some("x;y,z")
    );
    assert_eq!(xfcc_field(r"Cert=a\;b;c=d", "Cert").as_deref(), Some("a;b"));
    assert_eq!(
        xfcc_field(r#"Cert="a"b,Hash=1"#, "Cert").as_deref(),
        Some("ab")
    );
    // Case-sensitive key, no trimming; separators are not recognised inside keys.
    assert_eq!(xfcc_field("cert=a", "Cert"), None);
    assert_eq!(xfcc_field("By=a; Cert=b", "Cert"), None);
    assert_eq!(xfcc_field("By;Cert=b", "Cert"), None);
    // An empty key or a trailing backslash ends the scan.
    assert_eq!(xfcc_field("=x;Cert=b", "Cert"), None);
    assert_eq!(xfcc_field(r"Cert=ab\", "Cert"), None);
    // No Cert field: the whole value is the certificate.
    assert_eq!(xfcc_cert("%2D%2D"), "%2D%2D");
}

#[test]
fn xfcc_mode_reads_envoy_headers() {
    let (pem, der) = cert();
    let want = tls::identity_from_der(&der).expect("identity");
    let value = format!(
        "By=spiffe://proxy;Hash=abc;Cert=\"{}\";Subject=\"CN=x,O=y\"",
        path_escape(&pem)
    );
    let source = CertSource::Xfcc {
        header: "x-forwarded-client-cert".into(),
    };
    let h = headers(&[("x-forwarded-client-cert", &value)]);
    assert_eq!(identity(&source, &h, &no_tls()).expect("xfcc"), want);
}
