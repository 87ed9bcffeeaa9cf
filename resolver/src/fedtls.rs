//! The federation's certificates (for mutual TLS between nodes): a federation CA the operator
//! keeps, and node certificates it issues, each naming its node's identity handle as a SAN URI
//! (`hdl:0.NA/88.888`), read back with x509-parser. `suyuan keygen --ca` and `--node-cert` make
//! them; the node-to-node channel refuses a peer whose certificate this CA did not issue.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The ALPN protocol name of node-to-node connections.
pub const ALPN: &[u8] = b"suyuan-fed/1";
/// The URI scheme a node's identity handle is written with in its certificate.
pub const IDENTITY_SCHEME: &str = "hdl:";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FedTlsError {
    #[error("cannot make the certificate: {0}")]
    Make(String),
    #[error("not a certificate: {0}")]
    Parse(String),
    #[error("the certificate names no node identity (a SAN URI hdl:<handle>)")]
    NoIdentity,
}

fn make(e: impl std::fmt::Display) -> FedTlsError {
    FedTlsError::Make(e.to_string())
}

/// A federation CA named `name`: `(cert PEM, key PEM)`, valid ten years.
pub fn make_ca(name: &str) -> Result<(String, String), FedTlsError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(make)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let (start, end) = validity(3650);
    p.not_before = start;
    p.not_after = end;
    let key = KeyPair::generate().map_err(make)?;
    let cert = p.self_signed(&key).map_err(make)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn validity(days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (
        now - time::Duration::hours(1),
        now + time::Duration::days(days),
    )
}

/// A certificate for the node `identity` (a handle such as `0.NA/88.888`), issued by the CA
/// (`ca_cert_pem`, `ca_key_pem`), for both ends of a connection: `(cert PEM, key PEM)`, valid
/// two years.
pub fn issue_node_cert(
    identity: &str,
    ca_cert_pem: &str,
    ca_key_pem: &str,
) -> Result<(String, String), FedTlsError> {
    if identity.is_empty()
        || identity
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(FedTlsError::Make(format!("{identity:?} is not a handle")));
    }
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(make)?;
    let ca = CertificateParams::from_ca_cert_pem(ca_cert_pem)
        .map_err(make)?
        .self_signed(&ca_key)
        .map_err(make)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(make)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity);
    p.distinguished_name = dn;
    let uri = format!("{IDENTITY_SCHEME}{identity}");
    p.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(make)?)];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let (start, end) = validity(730);
    p.not_before = start;
    p.not_after = end;
    let key = KeyPair::generate().map_err(make)?;
    let cert = p.signed_by(&key, &ca, &ca_key).map_err(make)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The node identity a certificate (DER) names: its SAN URI `hdl:<handle>`.
pub fn identity_of(cert_der: &[u8]) -> Result<String, FedTlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| FedTlsError::Parse(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| FedTlsError::Parse(e.to_string()))?
        .ok_or(FedTlsError::NoIdentity)?;
    san.value
        .general_names
        .iter()
        .find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => {
                u.strip_prefix(IDENTITY_SCHEME).map(str::to_string)
            }
            _ => None,
        })
        .filter(|h| !h.is_empty())
        .ok_or(FedTlsError::NoIdentity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, UnixTime};
    use std::sync::Arc;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// The checks mutual TLS makes of a peer: a node certificate of the federation CA verifies
    /// and names its identity; one of another CA is refused.
    #[test]
    fn a_node_certificate_names_its_identity_and_only_its_ca_verifies_it() {
        let (ca_cert, ca_key) = make_ca("test federation").unwrap();
        let (other_cert, other_key) = make_ca("another federation").unwrap();
        let (node, _) = issue_node_cert("0.NA/88.888", &ca_cert, &ca_key).unwrap();
        let (stranger, _) = issue_node_cert("0.NA/99.9", &other_cert, &other_key).unwrap();
        assert_eq!(identity_of(&der(&node)).unwrap(), "0.NA/88.888");
        assert!(matches!(
            identity_of(&der(&ca_cert)),
            Err(FedTlsError::NoIdentity)
        ));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&ca_cert)).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier
            .verify_client_cert(&der(&node), &[], UnixTime::now())
            .unwrap();
        let refused = verifier.verify_client_cert(&der(&stranger), &[], UnixTime::now());
        assert!(refused.is_err(), "another CA's node is refused");
        assert!(issue_node_cert("has space", &ca_cert, &ca_key).is_err());
    }
}
