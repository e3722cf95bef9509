use super::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket addr")
}

#[test]
fn v1_tcp4_tcp6_unknown() {
    let line = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nrest";
    assert_eq!(
        parse(line),
        Ok(Parsed::Header {
            len: line.len() - 4,
            source: Some(sa("192.0.2.1:56324"))
        })
    );
    let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 443\r\n";
    assert_eq!(
        parse(line),
        Ok(Parsed::Header {
            len: line.len(),
            source: Some(sa("[2001:db8::1]:1000"))
        })
    );
    let line = b"PROXY UNKNOWN\r\n";
    assert_eq!(
        parse(line),
        Ok(Parsed::Header {
            len: line.len(),
            source: None
        })
    );
    let line = b"PROXY UNKNOWN 1 2 3 4\r\n";
    assert_eq!(
        parse(line),
        Ok(Parsed::Header {
            len: line.len(),
            source: None
        })
    );
}

#[test]
fn v1_incomplete_and_malformed() {
    assert_eq!(parse(b""), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete));
    assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(Parsed::Incomplete));
    assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n").is_err());
    assert!(parse(b"PROXY TCP4 ::1 ::1 1 2\r\n").is_err());
    assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").is_err());
    assert!(parse(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n").is_err());
    assert!(parse(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat()).is_err());
}

#[test]
fn not_proxy() {
    assert_eq!(parse(&[0x16, 0x03, 0x01]), Ok(Parsed::NotProxy));
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(Parsed::NotProxy));
    assert_eq!(parse(b"PROXZ"), Ok(Parsed::NotProxy));
}

fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIG.to_vec();
    out.extend_from_slice(&[cmd, fam]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn v2_inet_inet6_local_unix() {
    let body = [10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0x01, 0xbb, 0xAA, 0xBB]; // with a TLV-ish tail
    let h = v2(0x21, 0x11, &body);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Header {
            len: h.len(),
            source: Some(sa("10.0.0.1:8080"))
        })
    );
    let mut body6 = vec![0u8; 36];
    body6[15] = 1;
    body6[32..34].copy_from_slice(&4242u16.to_be_bytes());
    let h = v2(0x21, 0x21, &body6);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Header {
            len: h.len(),
            source: Some(sa("[::1]:4242"))
        })
    );
    let h = v2(0x20, 0x00, &[]);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Header {
            len: 16,
            source: None
        })
    );
    let h = v2(0x21, 0x31, &[0u8; 216]);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Header {
            len: h.len(),
            source: None
        })
    );
}

#[test]
fn v2_errors_and_incomplete() {
    assert!(parse(&v2(0x22, 0x11, &[0; 12])).is_err());
    assert!(parse(&v2(0x21, 0x00, &[])).is_err());
    assert!(parse(&v2(0x21, 0x11, &[0; 11])).is_err());
    assert!(parse(&v2(0x21, 0x99, &[0; 12])).is_err());
    let h = v2(0x21, 0x11, &[0; 12]);
    for cut in 0..h.len() {
        assert_eq!(parse(&h[..cut]), Ok(Parsed::Incomplete), "cut {cut}");
    }
}

#[test]
fn address_formatting() {
    assert_eq!(format_addr(sa("1.2.3.4:5")), "1.2.3.4:5");
    assert_eq!(format_addr(sa("[2001:db8::1]:443")), "[2001:db8::1]:443");
    assert_eq!(format_addr(sa("[::ffff:10.1.2.3]:99")), "10.1.2.3:99");
}

#[tokio::test]
async fn accept_replays_bytes_after_the_header() {
    let mut data = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n".to_vec();
    data.extend_from_slice(b"\x16hello");
    let (mut io, src) = accept(data.as_slice(), Duration::from_secs(1))
        .await
        .expect("ok");
    assert_eq!(src, Some(sa("192.0.2.1:56324")));
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.expect("read");
    assert_eq!(rest, b"\x16hello");

    let (mut io, src) = accept(&b"\x16\x03\x01tls"[..], Duration::from_secs(1))
        .await
        .expect("ok");
    assert_eq!(src, None);
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.expect("read");
    assert_eq!(rest, b"\x16\x03\x01tls");

    assert!(
        accept(&b"PROXY BOGUS\r\n"[..], Duration::from_secs(1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn accept_times_out_on_a_partial_header() {
    let (client, server) = tokio::io::duplex(64);
    let mut client = client;
    tokio::io::AsyncWriteExt::write_all(&mut client, b"PROXY TCP4")
        .await
        .expect("write");
    let err = accept(server, Duration::from_millis(50))
        .await
        .expect_err("timeout");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn random_input_never_panics() {
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..5_000 {
        let mut data: Vec<u8> = match rng.random_range(0..3) {
            0 => b"PROXY ".to_vec(),
            1 => V2_SIG.to_vec(),
            _ => Vec::new(),
        };
        data.extend((0..rng.random_range(0..120)).map(|_| rng.random::<u8>()));
        crate::fuzzing::proxy_header(&data);
    }
}
