//! The CA and server certificate `fleetspeak-config` creates when they are missing
//! (config.md §5.2), and the checks on the files it is given instead.

use std::net::IpAddr;

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::X509Name;

use super::keys;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed CA: P-256, `CN=<name> Fleetspeak CA`, valid 87 600 h, CA:TRUE (critical).
pub fn create_ca(name: &str) -> Result<Issued> {
    let (key, key_pem) = keys::generate_p256()?;
    let mut params = base_params(&format!("{name} Fleetspeak CA"), 87_600)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    let cert = params
        .self_signed(&key)
        .context("signing the CA certificate")?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem,
    })
}

/// A server certificate signed by the CA: P-256, `CN=<name> Fleetspeak Server`, valid
/// 8 760 h, one SAN per `public_host_port` host. Unlike the original it is not a CA and it
/// carries the serverAuth extended key usage.
pub fn create_server_cert(
    name: &str,
    ca_cert_pem: &str,
    ca_key_pem: &str,
    public_host_ports: &[String],
) -> Result<Issued> {
    let ca_key = keys::load_pem(ca_key_pem).context("loading the CA key")?;
    let issuer = issuer_stand_in(ca_cert_pem, &ca_key)?;
    let (key, key_pem) = keys::generate_p256()?;
    let mut params = base_params(&format!("{name} Fleetspeak Server"), 8_760)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = public_host_ports
        .iter()
        .map(|hp| san(hp))
        .collect::<Result<_>>()?;
    let cert = params
        .signed_by(&key, &issuer, &ca_key)
        .context("signing the server certificate")?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem,
    })
}

fn base_params(common_name: &str, valid_hours: i64) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, printable(common_name));
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + Duration::hours(valid_hours);
    // A random positive 128-bit serial, as Go's rand.Int(2^128).
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

/// Go writes a name as PrintableString when it can, UTF8String otherwise.
fn printable(s: &str) -> DnValue {
    match rcgen::PrintableString::try_from(s) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(s.to_owned()),
    }
}

/// rcgen signs with a `Certificate` as issuer but only uses its subject and key identifier.
/// Rebuild those from the existing CA file so the issuer name matches byte for byte and the
/// AKI names the CA's SKI.
fn issuer_stand_in(ca_cert_pem: &str, ca_key: &KeyPair) -> Result<Certificate> {
    let der = first_certificate(ca_cert_pem)?;
    let (_, ca) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow!("parsing the CA certificate: {e}"))?;
    if ca.public_key().raw != ca_key.public_key_der().as_slice() {
        bail!("the CA key does not belong to the CA certificate");
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(ca.subject())?;
    if let Some(ski) = subject_key_id(&ca) {
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
    }
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .self_signed(ca_key)
        .context("preparing the CA for signing")
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let [attr] = rdn.iter().collect::<Vec<_>>()[..] else {
            bail!("the CA subject has a multi-valued RDN, which cannot be reproduced");
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| anyhow!("the CA subject has an unusual attribute OID"))?
            .collect();
        let value = attr.attr_value();
        let text = std::str::from_utf8(value.data)
            .map_err(|_| anyhow!("the CA subject has a non-UTF-8 attribute"))?;
        let value = match value.header.tag() {
            Tag::PrintableString => DnValue::PrintableString(text.try_into()?),
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::Ia5String => DnValue::Ia5String(text.try_into()?),
            other => bail!("the CA subject uses string type {other}, which is not supported"),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// The DER of the first PEM block, which must be a `CERTIFICATE` (as the original requires).
pub fn first_certificate(pem: &str) -> Result<Vec<u8>> {
    let item = rustls_pemfile::read_one(&mut pem.as_bytes())
        .context("reading the PEM")?
        .ok_or_else(|| anyhow!("no PEM block found"))?;
    match item {
        rustls_pemfile::Item::X509Certificate(der) => Ok(der.to_vec()),
        _ => bail!("the first PEM block is not a CERTIFICATE"),
    }
}

/// Fails unless `key_pem` is the private key of the first certificate in `cert_pem`.
pub fn check_key_pair(cert_pem: &str, key_pem: &str) -> Result<()> {
    let der = first_certificate(cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow!("parsing: {e}"))?;
    let key = keys::load_pem(key_pem)?;
    if cert.public_key().raw != key.public_key_der().as_slice() {
        bail!("the key does not belong to the certificate");
    }
    Ok(())
}

/// The SAN for one `host:port`: an IP SAN for an address, a DNS SAN otherwise.
fn san(host_port: &str) -> Result<SanType> {
    let host = split_host(host_port).with_context(|| format!("public_host_port {host_port:?}"))?;
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            host.try_into()
                .map_err(|e| anyhow!("public_host_port {host_port:?}: {e}"))?,
        ),
    })
}

/// Go's `net.SplitHostPort`, host part only: `host:port`, `[v6]:port`.
pub fn split_host(host_port: &str) -> Result<&str> {
    if let Some(rest) = host_port.strip_prefix('[') {
        let (host, port) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("missing ']' in address"))?;
        if !port.starts_with(':') {
            bail!("missing port in address");
        }
        return Ok(host);
    }
    match host_port.rsplit_once(':') {
        None => bail!("missing port in address"),
        Some((host, _)) if host.contains(':') => bail!("too many colons in address"),
        Some((host, _)) => Ok(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pem: &str) -> Vec<u8> {
        first_certificate(pem).expect("PEM")
    }

    #[test]
    fn hosts_split_like_go() {
        assert_eq!(split_host("example.com:4443").ok(), Some("example.com"));
        assert_eq!(split_host("[::1]:4443").ok(), Some("::1"));
        assert_eq!(split_host(":4443").ok(), Some(""));
        assert!(split_host("example.com").is_err());
        assert!(split_host("::1:4443").is_err());
    }

    #[test]
    fn server_cert_chains_to_the_ca_and_is_not_a_ca() {
        let ca = create_ca("Test").expect("CA");
        let hosts = ["fs.example.com:4443".to_owned(), "10.0.0.5:4443".to_owned()];
        let server = create_server_cert("Test", &ca.cert_pem, &ca.key_pem, &hosts).expect("cert");
        check_key_pair(&server.cert_pem, &server.key_pem).expect("key pair");

        let (ca_der, server_der) = (parse(&ca.cert_pem), parse(&server.cert_pem));
        let (_, ca_x) = x509_parser::parse_x509_certificate(&ca_der).expect("CA");
        let (_, s) = x509_parser::parse_x509_certificate(&server_der).expect("server");
        assert_eq!(ca_x.subject().to_string(), "CN=Test Fleetspeak CA");
        assert!(ca_x.is_ca());
        assert_eq!(s.issuer().as_raw(), ca_x.subject().as_raw());
        assert_eq!(s.subject().to_string(), "CN=Test Fleetspeak Server");
        assert!(!s.is_ca());
        let aki = s
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0)
                }
                _ => None,
            });
        assert_eq!(aki.map(<[u8]>::to_vec), subject_key_id(&ca_x));
        let eku = s.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.server_auth);
        let sans = s.subject_alternative_name().expect("san").expect("present");
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["DNSName(fs.example.com)", "IPAddress(0a:00:00:05)"]);
        let days =
            (s.validity().not_after.timestamp() - s.validity().not_before.timestamp()) / 86_400;
        assert_eq!(days, 365);
    }

    #[test]
    fn a_ca_key_that_does_not_match_is_refused() {
        let (ca, other) = (create_ca("A").expect("CA"), create_ca("B").expect("CA"));
        let err = create_server_cert("A", &ca.cert_pem, &other.key_pem, &["h:1".into()])
            .expect_err("mismatch");
        assert!(format!("{err:#}").contains("does not belong"), "{err:#}");
    }
}
