//! Signed handle values as Handle.Net 9 writes and checks them (its `net.handle.hdllib.trust`):
//! an `HS_SIGNATURE` value is a JWS over digests of a record's values, an `HS_CERT` value a
//! JWS by which an issuer grants a key permissions over handles; a chain of certificates leads
//! from a signature to a trusted root key.
//!
//! Sans-IO: chains are built from a lookup the caller answers (a handle's values), time is
//! passed in. Byte for byte as the reference: compact JWS (the JSON serialisation is read too),
//! header `{"alg":"RS256"}`, the claims' members in the order its Gson writes them, each value
//! digested with SHA-256 over its wire encoding without index and timestamp (standard base64
//! with padding), RSA keys as JWK (`n`, `e`, base64url without padding).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{SigHash, rsa_sign, rsa_verify};
use crate::value::HandleValue;

/// The longest JWS text accepted, in bytes.
pub const MAX_JWS_LEN: usize = 256 * 1024;
/// The most certificates a chain may have.
pub const MAX_CHAIN: usize = 50;

/// Why a JWS, its claims or a chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    #[error("not a JWS: {0}")]
    Malformed(String),
    #[error("unsupported signature algorithm {0:?}")]
    Algorithm(String),
    #[error("bad claims: {0}")]
    Claims(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("cannot build the chain: {0}")]
    Chain(String),
    /// The chain needs this handle's values, which the lookup did not have.
    #[error("cannot build the chain: need {0}")]
    Need(String),
    #[error("{0}")]
    Key(String),
}

/// A JWS: what was signed and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jws {
    header_b64: String,
    payload_b64: String,
    pub alg: String,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Decodes base64url or standard base64, padded or not, as the reference's decoder does.
fn b64_lenient(s: &str) -> Result<Vec<u8>, TrustError> {
    let t: String = s
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|e| TrustError::Malformed(format!("base64: {e}")))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

impl Jws {
    /// Parses the compact form (`header.payload.signature`) or the JSON serialisation (its
    /// first signature).
    pub fn parse(text: &str) -> Result<Jws, TrustError> {
        let t = text.trim();
        if t.len() > MAX_JWS_LEN {
            return Err(TrustError::Malformed(format!("over {MAX_JWS_LEN} bytes")));
        }
        let (h, p, s) = if t.starts_with('{') {
            #[derive(Deserialize)]
            struct Sig {
                protected: String,
                signature: String,
            }
            #[derive(Deserialize)]
            struct Json {
                payload: String,
                signatures: Vec<Sig>,
            }
            let j: Json = serde_json::from_str(t)
                .map_err(|e| TrustError::Malformed(format!("JSON serialisation: {e}")))?;
            let first = j
                .signatures
                .into_iter()
                .next()
                .ok_or_else(|| TrustError::Malformed("no signature".into()))?;
            (first.protected, j.payload, first.signature)
        } else {
            let mut parts = t.split('.');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(h), Some(p), Some(s), None) => (h.to_string(), p.to_string(), s.to_string()),
                _ => return Err(TrustError::Malformed("not three parts".into())),
            }
        };
        let header: Header = serde_json::from_slice(&b64_lenient(&h)?)
            .map_err(|e| TrustError::Malformed(format!("header: {e}")))?;
        Ok(Jws {
            payload: b64_lenient(&p)?,
            signature: b64_lenient(&s)?,
            header_b64: h,
            payload_b64: p,
            alg: header.alg,
        })
    }

    /// The compact form.
    pub fn compact(&self) -> String {
        format!(
            "{}.{}.{}",
            self.header_b64,
            self.payload_b64,
            URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }

    fn signing_input(&self) -> String {
        format!("{}.{}", self.header_b64, self.payload_b64)
    }

    /// The claims the payload holds.
    pub fn claims(&self) -> Result<Claims, TrustError> {
        serde_json::from_slice(&self.payload).map_err(|e| TrustError::Claims(e.to_string()))
    }

    /// Checks the signature with `key`: `RS…` with an RSA key, `SM2256` (SM2 with SM3, the
    /// default distinguishing identifier, a DER or a raw r‖s signature) with an SM2 key.
    pub fn verify(&self, key: &SignerKey) -> Result<(), TrustError> {
        let input = self.signing_input();
        match key {
            SignerKey::Rsa(k) => {
                let hash = rsa_hash(&self.alg)?;
                rsa_verify(k, hash, input.as_bytes(), &self.signature)
                    .then_some(())
                    .ok_or(TrustError::Signature)
            }
            SignerKey::Sm2(k) => {
                if self.alg != SM2_ALG {
                    return Err(TrustError::Algorithm(format!(
                        "{} with an SM2 key",
                        self.alg
                    )));
                }
                use sm2::dsa::signature::Verifier;
                let rs = der_rs(&self.signature).unwrap_or_default();
                let sig = sm2::dsa::Signature::from_slice(if self.signature.len() == 64 {
                    &self.signature
                } else {
                    &rs
                })
                .map_err(|_| TrustError::Signature)?;
                k.verify(input.as_bytes(), &sig)
                    .map_err(|_| TrustError::Signature)
            }
        }
    }

    /// Signs `claims` with an RSA key (RS256).
    pub fn sign(claims: &Claims, key: &RsaPrivateKey) -> Result<Jws, TrustError> {
        Jws::sign_with(claims, &PrivateKey::Rsa(key.clone()))
    }

    /// Signs `claims` with `key`: RS256 for RSA, SM2256 for SM2 (a DER signature, as IDIS's
    /// SDK writes it through Hutool).
    pub fn sign_with(claims: &Claims, key: &PrivateKey) -> Result<Jws, TrustError> {
        let alg = match key {
            PrivateKey::Rsa(_) => "RS256",
            PrivateKey::Sm2(_) => SM2_ALG,
        };
        let header_b64 = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
        let payload = serde_json::to_vec(claims).map_err(|e| TrustError::Claims(e.to_string()))?;
        let payload_b64 = URL_SAFE_NO_PAD.encode(&payload);
        let input = format!("{header_b64}.{payload_b64}");
        let signature = match key {
            PrivateKey::Rsa(k) => rsa_sign(k, SigHash::Sha256, input.as_bytes())
                .map_err(|e| TrustError::Key(e.to_string()))?,
            PrivateKey::Sm2(k) => {
                use sm2::dsa::signature::Signer;
                let sig: sm2::dsa::Signature = k
                    .try_sign(input.as_bytes())
                    .map_err(|e| TrustError::Key(e.to_string()))?;
                rs_der(&sig.to_bytes())
            }
        };
        Ok(Jws {
            header_b64,
            payload_b64,
            alg: alg.into(),
            payload,
            signature,
        })
    }
}

/// An (r, s) signature of 64 bytes as DER: `SEQUENCE { INTEGER r, INTEGER s }`.
pub(crate) fn rs_der(rs: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| {
        let b = &b[b
            .iter()
            .take_while(|x| **x == 0)
            .count()
            .min(b.len().saturating_sub(1))..];
        let mut out = vec![0x02];
        let pad = b.first().is_some_and(|x| x & 0x80 != 0);
        out.push((b.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(b);
        out
    };
    let (r, s) = rs.split_at(rs.len() / 2);
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// The 64 bytes r ‖ s of a DER signature, if it is one with 32-byte integers.
pub(crate) fn der_rs(der: &[u8]) -> Option<Vec<u8>> {
    let (&[0x30, len], rest) = der.split_first_chunk::<2>()? else {
        return None;
    };
    if usize::from(len) != rest.len() {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    let mut rest = rest;
    for _ in 0..2 {
        let (&[0x02, n], tail) = rest.split_first_chunk::<2>()? else {
            return None;
        };
        let (int, tail) = tail.split_at_checked(usize::from(n))?;
        let int = match int {
            [0, more @ ..] if more.first().is_some_and(|b| b & 0x80 != 0) => more,
            i => i,
        };
        if int.len() > 32 {
            return None;
        }
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        rest = tail;
    }
    rest.is_empty().then_some(out)
}

/// IDIS's name for SM2 with SM3.
pub const SM2_ALG: &str = "SM2256";
/// The SM2 distinguishing identifier when none is agreed: GM/T 0009's default, which Hutool
/// (IDIS's SDK) uses.
pub const SM2_DISTID: &str = "1234567812345678";
/// The HS_PUBKEY key type of an SM2 key, as IDIS stores it.
pub const SM2_KEY_TYPE: &str = "SM2_PUB_KEY";

/// A key a signature is made with.
#[derive(Debug, Clone)]
pub enum PrivateKey {
    Rsa(RsaPrivateKey),
    Sm2(sm2::dsa::SigningKey),
}

impl PrivateKey {
    /// The key that checks what this one signs.
    pub fn public(&self) -> SignerKey {
        match self {
            PrivateKey::Rsa(k) => SignerKey::Rsa(k.to_public_key()),
            PrivateKey::Sm2(k) => SignerKey::Sm2(k.verifying_key().clone()),
        }
    }
}

/// An SM2 signing key from its secret scalar, with the default distinguishing identifier.
pub fn sm2_signing_key(secret: &sm2::SecretKey) -> Result<sm2::dsa::SigningKey, TrustError> {
    sm2::dsa::SigningKey::new(SM2_DISTID, secret).map_err(|e| TrustError::Key(e.to_string()))
}

/// HS_PUBKEY data of an SM2 key as IDIS stores it: `str "SM2_PUB_KEY", u16 flags (0), bytes`
/// of the X.509 SubjectPublicKeyInfo as PEM text.
pub fn sm2_hs_pubkey(key: &sm2::dsa::VerifyingKey) -> Result<Vec<u8>, TrustError> {
    use crate::wire::Writer;
    use sm2::pkcs8::EncodePublicKey;
    let pem = sm2::PublicKey::from_affine(*key.as_affine())
        .map_err(|e| TrustError::Key(e.to_string()))?
        .to_public_key_pem(sm2::pkcs8::LineEnding::LF)
        .map_err(|e| TrustError::Key(e.to_string()))?;
    let mut out = Vec::new();
    out.put_str(SM2_KEY_TYPE);
    out.put_u16(0);
    out.put_bytes(pem.as_bytes());
    Ok(out)
}

/// The SM2 key of HS_PUBKEY data in IDIS's layout (the key as X.509 PEM text or DER).
pub fn sm2_from_hs_pubkey(data: &[u8]) -> Result<sm2::dsa::VerifyingKey, TrustError> {
    use sm2::pkcs8::DecodePublicKey;
    let mut r = crate::wire::Reader::new(data);
    let bad = |e: String| TrustError::Key(format!("SM2 HS_PUBKEY: {e}"));
    let t = r.str("key type").map_err(|e| bad(e.to_string()))?;
    if t != SM2_KEY_TYPE {
        return Err(bad(format!("key type {t:?}")));
    }
    r.u16("flags").map_err(|e| bad(e.to_string()))?;
    let key = r.bytes("key").map_err(|e| bad(e.to_string()))?;
    let public = match std::str::from_utf8(key) {
        Ok(pem) if pem.starts_with("-----BEGIN") => sm2::PublicKey::from_public_key_pem(pem),
        _ => sm2::PublicKey::from_public_key_der(key),
    }
    .map_err(|e| bad(e.to_string()))?;
    sm2::dsa::VerifyingKey::new(SM2_DISTID, public).map_err(|e| bad(e.to_string()))
}

/// The hash an `RS…` algorithm name selects, as the reference reads it.
fn rsa_hash(alg: &str) -> Result<SigHash, TrustError> {
    let Some(rest) = alg.strip_prefix("RS") else {
        return Err(TrustError::Algorithm(alg.into()));
    };
    match rest {
        "256" => Ok(SigHash::Sha256),
        "" | "160" | "128" | "A" => Ok(SigHash::Sha1),
        _ => Err(TrustError::Algorithm(alg.into())),
    }
}

/// A key a signature is checked with.
#[derive(Debug, Clone)]
pub enum SignerKey {
    Rsa(RsaPublicKey),
    Sm2(sm2::dsa::VerifyingKey),
}

impl PartialEq for SignerKey {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SignerKey::Rsa(a), SignerKey::Rsa(b)) => a == b,
            (SignerKey::Sm2(a), SignerKey::Sm2(b)) => a.to_sec1_bytes() == b.to_sec1_bytes(),
            _ => false,
        }
    }
}

/// A public key as a JWK (`"publicKey"` of a certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// For an SM2 key (`"kty": "EC"`): `"SM2"`, and the point's coordinates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl Jwk {
    pub fn rsa(key: &RsaPublicKey) -> Jwk {
        Jwk {
            kty: "RSA".into(),
            n: Some(URL_SAFE_NO_PAD.encode(key.n().to_bytes_be())),
            e: Some(URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())),
            crv: None,
            x: None,
            y: None,
        }
    }

    /// An SM2 key as an EC JWK with `"crv": "SM2"` (Suyuan's spelling: neither the reference
    /// nor IDIS publishes one).
    pub fn sm2(key: &sm2::dsa::VerifyingKey) -> Jwk {
        // Uncompressed: 0x04, x, y.
        let point = key.to_sec1_bytes();
        let xy = point.get(1..).unwrap_or_default();
        let (x, y) = xy.split_at(xy.len() / 2);
        Jwk {
            kty: "EC".into(),
            n: None,
            e: None,
            crv: Some("SM2".into()),
            x: Some(URL_SAFE_NO_PAD.encode(x)),
            y: Some(URL_SAFE_NO_PAD.encode(y)),
        }
    }

    /// The JWK of a key.
    pub fn of(key: &SignerKey) -> Jwk {
        match key {
            SignerKey::Rsa(k) => Jwk::rsa(k),
            SignerKey::Sm2(k) => Jwk::sm2(k),
        }
    }

    pub fn key(&self) -> Result<SignerKey, TrustError> {
        match (self.kty.as_str(), &self.n, &self.e) {
            ("RSA", Some(n), Some(e)) => {
                let n = BigUint::from_bytes_be(&b64_lenient(n)?);
                let e = BigUint::from_bytes_be(&b64_lenient(e)?);
                RsaPublicKey::new(n, e)
                    .map(SignerKey::Rsa)
                    .map_err(|e| TrustError::Key(format!("publicKey: {e}")))
            }
            ("EC", _, _) if self.crv.as_deref() == Some("SM2") => {
                let (Some(x), Some(y)) = (&self.x, &self.y) else {
                    return Err(TrustError::Key(
                        "publicKey: an SM2 key without x and y".into(),
                    ));
                };
                let mut point = vec![4u8];
                point.extend(b64_lenient(x)?);
                point.extend(b64_lenient(y)?);
                sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DISTID, &point)
                    .map(SignerKey::Sm2)
                    .map_err(|e| TrustError::Key(format!("publicKey: {e}")))
            }
            (kty, _, _) => Err(TrustError::Key(format!(
                "publicKey: kty {kty:?} is not supported"
            ))),
        }
    }
}

/// One permission a certificate grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    pub perm: String,
}

impl Permission {
    /// Whether this permission covers handle `h` (the reference's rules).
    pub fn authorizes(&self, h: &str) -> bool {
        let upper = |s: &str| s.to_ascii_uppercase();
        match (self.perm.as_str(), &self.handle) {
            ("everything", _) => true,
            ("thisHandle", Some(p)) => {
                equals_prefix_ci(p, h)
                    || p.strip_prefix("0.NA/")
                        .is_some_and(|pre| upper(h).starts_with(&format!("{}/", upper(pre))))
            }
            ("handlesUnderThisPrefix", Some(p)) => p
                .strip_prefix("0.NA/")
                .is_some_and(|pre| upper(h).starts_with(&format!("{}/", upper(pre)))),
            ("derivedPrefixes", Some(p)) => {
                let dot = format!("{}.", upper(p));
                upper(h).starts_with(&dot) || upper(&format!("0.NA/{h}")).starts_with(&dot)
            }
            _ => false,
        }
    }
}

/// The reference's handle comparison: the prefix case-insensitively, the suffix exactly.
pub fn equals_prefix_ci(a: &str, b: &str) -> bool {
    match (a.split_once('/'), b.split_once('/')) {
        (Some((pa, sa)), Some((pb, sb))) => pa.eq_ignore_ascii_case(pb) && sa == sb,
        _ => a.eq_ignore_ascii_case(b),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueDigest {
    pub index: u32,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    pub alg: String,
    pub digests: Vec<ValueDigest>,
}

/// A signature's or a certificate's claims, its members in the order the reference writes
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perms: Option<Vec<Permission>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digests: Option<Digests>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Jwk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

impl Claims {
    /// Whether `now` lies within `nbf..=exp` (an absent bound is not checked).
    pub fn in_date(&self, now: i64) -> bool {
        self.nbf.is_none_or(|n| n <= now) && self.exp.is_none_or(|e| now <= e)
    }
}

/// SHA-256 of a value's wire encoding without its index and timestamp (the first 8 bytes):
/// what a signature's digest covers.
pub fn value_digest(v: &HandleValue) -> [u8; 32] {
    let enc = v.encode();
    Sha256::digest(&enc[8.min(enc.len())..]).into()
}

/// The claims of a signature by `issuer` (`index:handle`) over `values` of `handle`.
pub fn value_claims(
    handle: &str,
    values: &[HandleValue],
    issuer: &str,
    iat: i64,
    nbf: i64,
    exp: i64,
    chain: Option<Vec<String>>,
) -> Claims {
    Claims {
        digests: Some(Digests {
            alg: "SHA-256".into(),
            digests: values
                .iter()
                .map(|v| ValueDigest {
                    index: v.index,
                    digest: STANDARD.encode(value_digest(v)),
                })
                .collect(),
        }),
        chain,
        iss: Some(issuer.into()),
        sub: Some(handle.into()),
        exp: Some(exp),
        nbf: Some(nbf),
        iat: Some(iat),
        ..Claims::default()
    }
}

/// The claims of a certificate (`HS_CERT`) by `issuer` granting `subject`'s `key` the
/// permissions `perms`.
pub fn cert_claims(
    issuer: &str,
    subject: &str,
    key: &SignerKey,
    perms: Vec<Permission>,
    iat: i64,
    nbf: i64,
    exp: i64,
) -> Claims {
    Claims {
        perms: Some(perms),
        public_key: Some(Jwk::of(key)),
        iss: Some(issuer.into()),
        sub: Some(subject.into()),
        exp: Some(exp),
        nbf: Some(nbf),
        iat: Some(iat),
        ..Claims::default()
    }
}

/// How each value of a record fares against a signature's digests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValuesReport {
    pub verified: Vec<u32>,
    /// Signed, and changed since.
    pub bad_digest: Vec<u32>,
    /// There, and not signed.
    pub unsigned: Vec<u32>,
    /// Signed, and gone.
    pub missing: Vec<u32>,
}

/// Compares `values` with the digests of `claims`.
pub fn check_values(claims: &Claims, values: &[HandleValue]) -> Result<ValuesReport, TrustError> {
    let d = claims
        .digests
        .as_ref()
        .ok_or_else(|| TrustError::Claims("no digests".into()))?;
    if !d.alg.eq_ignore_ascii_case("SHA-256") {
        return Err(TrustError::Algorithm(d.alg.clone()));
    }
    let mut r = ValuesReport::default();
    for v in values {
        match d.digests.iter().find(|x| x.index == v.index) {
            Some(x) => {
                let ok = STANDARD
                    .decode(&x.digest)
                    .ok()
                    .is_some_and(|b| b == value_digest(v));
                if ok {
                    r.verified.push(v.index);
                } else {
                    r.bad_digest.push(v.index);
                }
            }
            None => r.unsigned.push(v.index),
        }
    }
    for x in &d.digests {
        if !values.iter().any(|v| v.index == x.index) {
            r.missing.push(x.index);
        }
    }
    Ok(r)
}

/// One certificate of a chain, with its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub jws: Jws,
    pub claims: Claims,
}

/// What a chain is built from: the values of a handle, or `None` when it is not known. A
/// caller that must fetch first answers `None` and learns from the error which handle to fetch.
pub trait Lookup {
    fn values(&self, handle: &str) -> Option<Vec<HandleValue>>;
}

/// Builds the chain from the signature `sig` to a self-issued certificate, as the reference's
/// `ChainBuilder` does: a chain element `idx:handle` names the certificate by value, a plain
/// handle means its `HS_CERT` whose `sub` is the child's `iss` (the newest one); without a
/// `chain` claim, the issuer's handle. Answers [`TrustError::Need`] when `lookup` lacks a
/// handle: a caller that fetches over the network fetches it and builds again.
pub fn build_chain(sig: &Link, lookup: &dyn Lookup) -> Result<Vec<Link>, TrustError> {
    let mut out: Vec<Link> = Vec::new();
    let mut current = sig.clone();
    // Explicit chain elements not used yet: a child's are used before its parents' own.
    let mut remaining: Vec<String> = Vec::new();
    loop {
        let iss = current.claims.iss.clone().unwrap_or_default();
        if current.claims.sub.as_deref() == Some(iss.as_str()) {
            return Ok(out);
        }
        if remaining.is_empty() {
            remaining = match &current.claims.chain {
                Some(c) if !c.is_empty() => c.clone(),
                _ => vec![
                    iss.split_once(':')
                        .map_or(iss.clone(), |(_, h)| h.to_string()),
                ],
            };
        }
        let next = remaining.remove(0);
        let parent = find_cert(&next, &iss, lookup)?;
        let psub = parent.claims.sub.clone().unwrap_or_default();
        if !equals_prefix_ci(&psub, &iss) {
            return Err(TrustError::Chain(format!(
                "the chain is broken: {next} certifies {psub}, the signer is {iss}"
            )));
        }
        if out.iter().any(|l| l.jws == parent.jws) {
            return Err(TrustError::Chain("the chain loops".into()));
        }
        if out.len() >= MAX_CHAIN {
            return Err(TrustError::Chain(format!(
                "more than {MAX_CHAIN} certificates"
            )));
        }
        out.push(parent.clone());
        current = parent;
    }
}

fn find_cert(element: &str, iss: &str, lookup: &dyn Lookup) -> Result<Link, TrustError> {
    let (index, handle) = match element.split_once(':') {
        Some((i, h)) if i.parse::<u32>().is_ok_and(|i| i > 0) => (i.parse::<u32>().ok(), h),
        _ => (None, element),
    };
    let values = lookup
        .values(handle)
        .ok_or_else(|| TrustError::Need(handle.to_string()))?;
    let mut best: Option<Link> = None;
    for v in &values {
        if index.is_some_and(|i| v.index != i) {
            continue;
        }
        if index.is_none() && !v.value_type.eq_ignore_ascii_case("HS_CERT") {
            continue;
        }
        let Ok(jws) = Jws::parse(&String::from_utf8_lossy(&v.data)) else {
            continue;
        };
        let Ok(claims) = jws.claims() else { continue };
        if index.is_none() && claims.sub.as_deref() != Some(iss) {
            continue;
        }
        if best.as_ref().is_none_or(|b| claims.iat > b.claims.iat) {
            best = Some(Link { jws, claims });
        }
    }
    best.ok_or_else(|| TrustError::Chain(format!("{element} holds no certificate for {iss}")))
}

/// How a chain fares: every signature checked with its parent's key, dates, authorization
/// over `handle`, and whether it ends at a trusted root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Why the chain fails, the first reason found; `None` when it holds.
    pub problem: Option<String>,
}

/// Checks `sig` and its `chain` (from [`build_chain`]) for `handle` at `now`; `roots` are the
/// keys a self-issued root may have to be trusted.
pub fn verify_chain(
    sig: &Link,
    chain: &[Link],
    handle: &str,
    now: i64,
    roots: &[SignerKey],
) -> ChainReport {
    let problem = (|| {
        let mut child = sig;
        for parent in chain {
            let key = parent
                .claims
                .public_key
                .as_ref()
                .ok_or_else(|| "a certificate has no publicKey".to_string())?
                .key()
                .map_err(|e| e.to_string())?;
            child.jws.verify(&key).map_err(|_| {
                format!(
                    "the signature of {} does not verify with the key {} certifies",
                    child.claims.iss.as_deref().unwrap_or("?"),
                    parent.claims.iss.as_deref().unwrap_or("?")
                )
            })?;
            if !child.claims.in_date(now) {
                return Err(format!(
                    "the certificate or signature by {} is out of date",
                    child.claims.iss.as_deref().unwrap_or("?")
                ));
            }
            // Every issuer, the root included, must be granted the signed handle.
            let perms = parent.claims.perms.as_deref().unwrap_or(&[]);
            if !perms.iter().any(|p| p.authorizes(handle)) {
                return Err(format!(
                    "{} is not authorized for {handle}",
                    parent.claims.sub.as_deref().unwrap_or("?")
                ));
            }
            child = parent;
        }
        // The root signs itself.
        let root = chain.last().ok_or_else(|| "no certificate".to_string())?;
        let key = root
            .claims
            .public_key
            .as_ref()
            .ok_or_else(|| "the root has no publicKey".to_string())?
            .key()
            .map_err(|e| e.to_string())?;
        root.jws
            .verify(&key)
            .map_err(|_| "the root certificate's own signature does not verify".to_string())?;
        if !root.claims.in_date(now) {
            return Err("the root certificate is out of date".into());
        }
        if !roots.contains(&key) {
            return Err(format!(
                "the chain ends at {}, whose key is not a trusted root",
                root.claims.sub.as_deref().unwrap_or("?")
            ));
        }
        Ok(())
    })()
    .err();
    ChainReport { problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RustCrypto's `sm2` test vector (`tests/sm2dsa.rs`, made with `openssl pkeyutl -sign
    /// -digest sm3 -pkeyopt distid:example@rustcrypto.org`): the signature verifies, and its
    /// DER form, as SM2256 JWS signatures carry it, goes back to the same r ‖ s.
    #[test]
    fn an_openssl_sm2_signature_verifies_and_survives_der() {
        use sm2::dsa::signature::Verifier;
        let public = hex::decode("0408D77AE04C01CC4C1104360DD8AF6B6F7DF334283D7C1A6AFD5652407B87BEE5014E2A57C36C150D16324DC664E31E6432359609C4E79847A5B161C8C7364C8A").unwrap();
        let sig = hex::decode("d1dcccedd9fb785e0f67c16b7c52901625c0b69de9bca2144acc7be713cad2fcf7d1eae6e3a157b36c65f672f738ca8b46298bf149a6510072c431b49cd88b1c").unwrap();
        let vk =
            sm2::dsa::VerifyingKey::from_sec1_bytes("example@rustcrypto.org", &public).unwrap();
        let der = rs_der(&sig);
        assert_eq!(der[0], 0x30);
        assert_eq!(der_rs(&der).unwrap(), sig);
        let s = sm2::dsa::Signature::from_slice(&der_rs(&der).unwrap()).unwrap();
        assert!(vk.verify(b"testing", &s).is_ok());
        assert!(vk.verify(b"testinG", &s).is_err());
        // Malformed DER is refused, never misread.
        assert!(der_rs(&der[..der.len() - 1]).is_none());
        assert!(der_rs(&[0x30, 0x02, 0x02, 0x00]).is_none());
    }

    #[test]
    fn permissions_as_the_reference_reads_them() {
        let p = |perm: &str, h: Option<&str>| Permission {
            perm: perm.into(),
            handle: h.map(str::to_string),
        };
        assert!(p("everything", None).authorizes("1/x"));
        assert!(p("handlesUnderThisPrefix", Some("0.NA/12345")).authorizes("12345/x"));
        assert!(!p("handlesUnderThisPrefix", Some("0.NA/12345")).authorizes("123456/x"));
        assert!(p("thisHandle", Some("12345/x")).authorizes("12345/x"));
        assert!(
            !p("thisHandle", Some("12345/x")).authorizes("12345/X"),
            "suffix exact"
        );
        assert!(p("derivedPrefixes", Some("0.NA/88")).authorizes("88.1/x"));
    }
}

/// One finding of [`verify_record`]: whether it holds, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub text: String,
}

fn finding(ok: bool, text: String) -> Finding {
    Finding { ok, text }
}

/// Checks the record `handle` with `values` as a reference client trusts it: every
/// `HS_SIGNATURE` value parsed, for this handle, its chain built (through `lookup`) and verified
/// to one of `roots` at `now`; every public value that is not itself a signature must be signed
/// by a signature that holds. One finding a value and one for each signature that fails;
/// [`TrustError::Need`] when the chain needs a handle `lookup` lacks.
pub fn verify_record(
    handle: &str,
    values: &[HandleValue],
    now: i64,
    roots: &[SignerKey],
    lookup: &dyn Lookup,
) -> Result<Vec<Finding>, TrustError> {
    let is_sig = |v: &HandleValue| v.value_type.eq_ignore_ascii_case("HS_SIGNATURE");
    let signed: Vec<HandleValue> = values
        .iter()
        .filter(|v| !is_sig(v) && v.permissions.public_read())
        .cloned()
        .collect();
    let mut out = Vec::new();
    let mut verified: Vec<(u32, String)> = Vec::new();
    let sigs: Vec<&HandleValue> = values.iter().filter(|v| is_sig(v)).collect();
    if sigs.is_empty() {
        out.push(finding(false, format!("{handle}: no HS_SIGNATURE value")));
    }
    for s in sigs {
        let i = s.index;
        let link = match Jws::parse(&String::from_utf8_lossy(&s.data))
            .and_then(|jws| jws.claims().map(|claims| Link { jws, claims }))
        {
            Ok(l) => l,
            Err(e) => {
                out.push(finding(false, format!("signature {i}: {e}")));
                continue;
            }
        };
        let iss = link.claims.iss.clone().unwrap_or_default();
        let sub = link.claims.sub.clone().unwrap_or_default();
        if !equals_prefix_ci(&sub, handle) {
            out.push(finding(
                false,
                format!("signature {i} by {iss} is for {sub}, not {handle}"),
            ));
            continue;
        }
        let chain = match build_chain(&link, lookup) {
            Ok(c) => c,
            Err(e @ TrustError::Need(_)) => return Err(e),
            Err(e) => {
                out.push(finding(false, format!("signature {i} by {iss}: {e}")));
                continue;
            }
        };
        if let Some(p) = verify_chain(&link, &chain, handle, now, roots).problem {
            out.push(finding(false, format!("signature {i} by {iss}: {p}")));
            continue;
        }
        let r = match check_values(&link.claims, &signed) {
            Ok(r) => r,
            Err(e) => {
                out.push(finding(false, format!("signature {i} by {iss}: {e}")));
                continue;
            }
        };
        let type_of = |idx: u32| {
            values
                .iter()
                .find(|v| v.index == idx)
                .map_or("?", |v| v.value_type.as_str())
        };
        for idx in r.bad_digest {
            out.push(finding(
                false,
                format!(
                    "value {idx} ({}): changed since signature {i} by {iss} signed it",
                    type_of(idx)
                ),
            ));
        }
        for idx in r.missing {
            out.push(finding(
                false,
                format!("value {idx}: signed by signature {i} by {iss}, and not in the record"),
            ));
        }
        verified.extend(
            r.verified
                .into_iter()
                .map(|idx| (idx, format!("{iss} (signature {i})"))),
        );
    }
    for v in &signed {
        match verified.iter().find(|(idx, _)| *idx == v.index) {
            Some((_, by)) => out.push(finding(
                true,
                format!("value {} ({}): signed by {by}", v.index, v.value_type),
            )),
            None if !out
                .iter()
                .any(|f| f.text.starts_with(&format!("value {} ", v.index))) =>
            {
                out.push(finding(
                    false,
                    format!(
                        "value {} ({}): not signed by a signature that holds",
                        v.index, v.value_type
                    ),
                ))
            }
            None => {}
        }
    }
    Ok(out)
}

/// A private key from PEM: RSA (PKCS#1 or PKCS#8), or SM2 (PKCS#8, as `suyuan keygen --type
/// sm2` writes it).
pub fn private_key_from_pem(pem: &str) -> Result<PrivateKey, TrustError> {
    use sm2::pkcs8::DecodePrivateKey;
    if let Ok(k) = crate::auth::rsa_private_from_pem(pem) {
        return Ok(PrivateKey::Rsa(k));
    }
    let secret = sm2::SecretKey::from_pkcs8_pem(pem)
        .map_err(|e| TrustError::Key(format!("neither an RSA nor an SM2 private key: {e}")))?;
    Ok(PrivateKey::Sm2(sm2_signing_key(&secret)?))
}

/// A public key from PEM (SubjectPublicKeyInfo): RSA or SM2.
pub fn public_key_from_pem(pem: &str) -> Result<SignerKey, TrustError> {
    use sm2::pkcs8::DecodePublicKey;
    if let Ok(k) = crate::auth::rsa_public_from_pem(pem) {
        return Ok(SignerKey::Rsa(k));
    }
    let public = sm2::PublicKey::from_public_key_pem(pem)
        .map_err(|e| TrustError::Key(format!("neither an RSA nor an SM2 public key: {e}")))?;
    sm2::dsa::VerifyingKey::new(SM2_DISTID, public)
        .map(SignerKey::Sm2)
        .map_err(|e| TrustError::Key(e.to_string()))
}

/// HS_PUBKEY data of a key: the reference's RSA layout, or IDIS's for SM2.
pub fn hs_pubkey_of(key: &SignerKey) -> Result<Vec<u8>, TrustError> {
    match key {
        SignerKey::Rsa(k) => Ok(crate::auth::hs_from_rsa_public(k).encode()),
        SignerKey::Sm2(k) => sm2_hs_pubkey(k),
    }
}
