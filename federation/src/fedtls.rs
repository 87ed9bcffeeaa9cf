//! The federation's certificates (for mutual TLS between nodes): a federation CA the operator
//! keeps, and node certificates it issues, each naming its node's identity handle as a SAN URI
//! (`hdl:0.NA/88.888`), read back with x509-parser. `suyuan keygen --ca` and `--node-cert` make
//! them; the node-to-node channel refuses a peer whose certificate this CA did not issue.
//!
//! [`FederationTls`] turns the configured CA, certificate and key into the rustls
//! configurations of both ends: TLS 1.3 only (QUIC needs it), a client certificate required,
//! and a server checked against the CA and its identity instead of a DNS name (node
//! certificates name a handle, not a host).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// The ALPN protocol name of node-to-node connections.
pub const ALPN: &[u8] = b"suyuan-fed/1";
/// The URI scheme a node's identity handle is written with in its certificate.
pub const IDENTITY_SCHEME: &str = "hdl:";

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FedTlsError {
    #[error("{what}: {why}")]
    Load { what: String, why: String },
    #[error("TLS configuration: {0}")]
    Config(String),
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

/// The federation's TLS material of one node: the CA it trusts, its certificate chain and key.
#[derive(Debug)]
pub struct FederationTls {
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    identity: String,
}

impl Clone for FederationTls {
    fn clone(&self) -> Self {
        FederationTls {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            identity: self.identity.clone(),
        }
    }
}

fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, FedTlsError> {
    let load = |why: String| FedTlsError::Load {
        what: what.to_string(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load(e.to_string()))?;
    if certs.is_empty() {
        return Err(load("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

impl FederationTls {
    /// From PEM texts: the federation CA's certificate(s), this node's certificate (chain) and
    /// its key. The certificate must name an identity and be issued by the CA.
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, FedTlsError> {
        let ca = certs("federation CA", ca_pem)?;
        let chain = certs("node certificate", cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| FedTlsError::Load {
            what: "node key".into(),
            why: e.to_string(),
        })?;
        let identity = identity_of(&chain[0])?;
        let me = FederationTls {
            ca,
            chain,
            key,
            identity,
        };
        // A node whose own certificate its peers would refuse is a configuration mistake:
        // say so at start, not at every peer's handshake.
        rustls::server::WebPkiClientVerifier::builder_with_provider(me.roots(), provider())
            .build()
            .map_err(|e| FedTlsError::Config(e.to_string()))?
            .verify_client_cert(&me.chain[0], &me.chain[1..], UnixTime::now())
            .map_err(|e| FedTlsError::Load {
                what: "node certificate".into(),
                why: format!("not valid under the federation CA: {e}"),
            })?;
        Ok(me)
    }

    /// The identity handle this node's certificate names.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.ca {
            // A CA certificate rustls cannot use is left out; the check at start then fails.
            let _ = roots.add(c.clone());
        }
        Arc::new(roots)
    }

    /// The accepting end: a client certificate from the CA is required, so a stranger is
    /// refused in the handshake, before any request is read.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, FedTlsError> {
        let config = |e: rustls::Error| FedTlsError::Config(e.to_string());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots(), provider())
                .build()
                .map_err(|e| FedTlsError::Config(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config)?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }

    /// The connecting end: the server's certificate must chain to the CA and name an
    /// identity; this node presents its own.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, FedTlsError> {
        let config = |e: rustls::Error| FedTlsError::Config(e.to_string());
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots(), provider())
                .build()
                .map_err(|e| FedTlsError::Config(e.to_string()))?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NodeVerifier { inner }))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(config)?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server name a node connects with: node certificates carry no DNS name, so the name
/// check is replaced by the identity check of [`NodeVerifier`].
pub const SERVER_NAME: &str = "suyuan-node";

/// WebPKI's chain check against the federation CA, with the identity in place of the name.
#[derive(Debug)]
struct NodeVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            // WebPKI checks the chain (issuer, validity, usage) before the name: a name error
            // means the chain held.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => match identity_of(end_entity) {
                Ok(_) => Ok(ServerCertVerified::assertion()),
                Err(_) => Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                )),
            },
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The identity a connection's peer presented (its first certificate's SAN URI).
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Option<String> {
    identity_of(certs.first()?).ok()
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
