//! The authentication maths the server, the Handle client and the CLI share, as the reference
//! Handle.Net 9.x computes it (`SecretKeyAuthenticationInfo`, `PublicKeyAuthenticationInfo`,
//! `AbstractMessage.signMessage`, `Util.doMac`):
//!
//! - answers to an RC 402 challenge: HS_SECKEY (PBKDF2-HMAC-SHA1 from 2.7, SHA-1 or MD5 of
//!   `secret ‖ data ‖ secret` before) and HS_PUBKEY (an RSA signature over `nonce ‖ digest`);
//! - message credentials: HS_SIGNED (the node's RSA key) and HS_MAC (a session key) over
//!   [`Message::signed_bytes`];
//! - key conversions between HS_PUBKEY data, PEM, and the reference's private-key files.
//!
//! No RNG of its own: where a salt is needed the caller passes one in. MACs are compared in
//! constant time.

use hmac::{Hmac, Mac};
use md5::Md5;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::message::{Credential, Message, credential_type};
use crate::value::{PublicKey, java_bigint_bytes};
use crate::wire::{Reader, Writer};

/// Why an authentication step failed (as opposed to a signature that simply does not verify,
/// which is `Ok(false)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("PBKDF2 parameters out of range: {0}")]
    Pbkdf2Params(String),
    #[error("the private key file is encrypted (type {0}); convert it to PEM first")]
    EncryptedKey(u32),
    #[error("key error: {0}")]
    Key(String),
}

fn malformed(what: &'static str, e: impl std::fmt::Display) -> AuthError {
    AuthError::Malformed {
        what,
        why: e.to_string(),
    }
}

/// Hash codes of secret-key answers (`Common.HASH_CODE_*`).
pub mod hash_code {
    pub const MD5_OLD_FORMAT: u8 = 0x00;
    pub const MD5: u8 = 0x01;
    pub const SHA1: u8 = 0x02;
    pub const SHA256: u8 = 0x03;
    pub const HMAC_SHA1: u8 = 0x12;
    pub const HMAC_SHA256: u8 = 0x13;
    pub const PBKDF2_HMAC_SHA1: u8 = 0x22;
}

/// Bounds on PBKDF2 parameters taken from the wire: enough for every real client, small enough
/// that one request cannot pin a core (10,000 iterations is the reference's choice).
pub const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;
pub const MAX_PBKDF2_KEY_BITS: u32 = 512;
pub const MAX_SALT_LEN: usize = 256;

/// Constant-time equality of two byte strings (their lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Java turns the secret's bytes into chars one by one (Latin-1) and PBKDF2WithHmacSHA1 encodes
/// those chars as UTF-8: bytes from 0x80 up become two bytes.
fn java_pbkdf2_password(secret: &[u8]) -> Vec<u8> {
    secret
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .into_bytes()
}

fn pbkdf2_sha1(secret: &[u8], salt: &[u8], iterations: u32, key_bits: u32) -> Vec<u8> {
    let mut dk = vec![0u8; (key_bits / 8) as usize];
    pbkdf2::pbkdf2_hmac::<Sha1>(&java_pbkdf2_password(secret), salt, iterations, &mut dk);
    dk
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `H(key ‖ data ‖ key)`, the reference's pre-HMAC keyed digest.
fn sandwich<D: Digest>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut d = D::new();
    d.update(key);
    d.update(data);
    d.update(key);
    d.finalize().to_vec()
}

/// An answer to a challenge by secret key (the `signedResponse` of OC 200, auth type
/// HS_SECKEY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKeyAnswer {
    /// 0x22, from 2.7: PBKDF2-HMAC-SHA1 of the secret, then HMAC-SHA1 of `nonce ‖ digest`.
    Pbkdf2HmacSha1 {
        salt: Vec<u8>,
        iterations: u32,
        key_bits: u32,
        mac: Vec<u8>,
    },
    /// A one-byte hash code and a keyed digest (SHA-1 from 2.1, MD5, SHA-256, HMACs).
    Keyed { code: u8, mac: Vec<u8> },
    /// Before 2.1: a bare MD5 keyed digest without the code byte.
    LegacyMd5(Vec<u8>),
}

impl SecretKeyAnswer {
    /// Decodes an answer; `legacy` is true when the negotiated version is below 2.1.
    pub fn decode(b: &[u8], legacy: bool) -> Result<Self, AuthError> {
        if legacy {
            return Ok(SecretKeyAnswer::LegacyMd5(b.to_vec()));
        }
        let (&code, rest) = b
            .split_first()
            .ok_or_else(|| malformed("secret key answer", "empty"))?;
        if code != hash_code::PBKDF2_HMAC_SHA1 {
            return Ok(SecretKeyAnswer::Keyed {
                code,
                mac: rest.to_vec(),
            });
        }
        let mut r = Reader::new(rest);
        let err = |e| malformed("PBKDF2 answer", e);
        let salt = r.bytes("salt").map_err(err)?.to_vec();
        let iterations = r.u32("iterations").map_err(err)?;
        let key_bits = r.u32("key length").map_err(err)?;
        let mac = r.bytes("mac").map_err(err)?.to_vec();
        r.finish("PBKDF2 answer").map_err(err)?;
        Ok(SecretKeyAnswer::Pbkdf2HmacSha1 {
            salt,
            iterations,
            key_bits,
            mac,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            SecretKeyAnswer::Pbkdf2HmacSha1 {
                salt,
                iterations,
                key_bits,
                mac,
            } => {
                out.put_u8(hash_code::PBKDF2_HMAC_SHA1);
                out.put_bytes(salt);
                out.put_u32(*iterations);
                out.put_u32(*key_bits);
                out.put_bytes(mac);
            }
            SecretKeyAnswer::Keyed { code, mac } => {
                out.put_u8(*code);
                out.extend_from_slice(mac);
            }
            SecretKeyAnswer::LegacyMd5(mac) => out.extend_from_slice(mac),
        }
        out
    }

    /// The PBKDF2 answer a 2.7+ client gives, with the reference's parameters (10,000
    /// iterations, 160-bit key) and the caller's salt.
    pub fn pbkdf2(secret: &[u8], nonce: &[u8], digest: &[u8], salt: [u8; 16]) -> Self {
        let dk = pbkdf2_sha1(secret, &salt, 10_000, 160);
        SecretKeyAnswer::Pbkdf2HmacSha1 {
            salt: salt.to_vec(),
            iterations: 10_000,
            key_bits: 160,
            mac: hmac_sha1(&dk, &[nonce, digest].concat()),
        }
    }

    /// The answer the reference client gives at a negotiated version: PBKDF2 from 2.7,
    /// SHA-1 from 2.1, bare MD5 below.
    pub fn for_version(
        secret: &[u8],
        nonce: &[u8],
        digest: &[u8],
        version: (u8, u8),
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Self {
        let data = [nonce, digest].concat();
        if version >= (2, 7) {
            let mut salt = [0u8; 16];
            rng.fill_bytes(&mut salt);
            Self::pbkdf2(secret, nonce, digest, salt)
        } else if version >= (2, 1) {
            SecretKeyAnswer::Keyed {
                code: hash_code::SHA1,
                mac: sandwich::<Sha1>(secret, &data),
            }
        } else {
            SecretKeyAnswer::LegacyMd5(sandwich::<Md5>(secret, &data))
        }
    }

    /// Whether this answer proves knowledge of `secret` for this challenge. Parameters out of
    /// range are an error, not a slow verification.
    pub fn verify(&self, secret: &[u8], nonce: &[u8], digest: &[u8]) -> Result<bool, AuthError> {
        let data = [nonce, digest].concat();
        let expected = match self {
            SecretKeyAnswer::Pbkdf2HmacSha1 {
                salt,
                iterations,
                key_bits,
                ..
            } => {
                if *iterations == 0 || *iterations > MAX_PBKDF2_ITERATIONS {
                    return Err(AuthError::Pbkdf2Params(format!("{iterations} iterations")));
                }
                if *key_bits == 0 || *key_bits > MAX_PBKDF2_KEY_BITS || key_bits % 8 != 0 {
                    return Err(AuthError::Pbkdf2Params(format!("{key_bits}-bit key")));
                }
                if salt.len() > MAX_SALT_LEN {
                    return Err(AuthError::Pbkdf2Params(format!("{}-byte salt", salt.len())));
                }
                hmac_sha1(&pbkdf2_sha1(secret, salt, *iterations, *key_bits), &data)
            }
            SecretKeyAnswer::Keyed { code, .. } => match *code {
                hash_code::MD5 | hash_code::MD5_OLD_FORMAT => sandwich::<Md5>(secret, &data),
                hash_code::SHA1 => sandwich::<Sha1>(secret, &data),
                hash_code::SHA256 => sandwich::<Sha256>(secret, &data),
                hash_code::HMAC_SHA1 => hmac_sha1(secret, &data),
                hash_code::HMAC_SHA256 => hmac_sha256(secret, &data),
                other => {
                    return Err(AuthError::UnsupportedAlgorithm(format!(
                        "hash code {other:#x}"
                    )));
                }
            },
            SecretKeyAnswer::LegacyMd5(_) => sandwich::<Md5>(secret, &data),
        };
        let got = match self {
            SecretKeyAnswer::Pbkdf2HmacSha1 { mac, .. } | SecretKeyAnswer::Keyed { mac, .. } => mac,
            SecretKeyAnswer::LegacyMd5(mac) => mac,
        };
        Ok(ct_eq(&expected, got))
    }
}

/// Signature hash algorithms, by the names the reference writes and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigHash {
    Sha1,
    Sha256,
}

impl SigHash {
    /// `SHA1`, `SHA-1`, `SHA-256`, `SHA256` (as `Util.getSigIdFromHashAlgId`), also as the
    /// one-byte hash codes, and the JCA names (`SHA256withRSA`).
    pub fn parse(name: &[u8]) -> Result<Self, AuthError> {
        match name {
            b"SHA1" | b"SHA-1" | [hash_code::SHA1] => return Ok(SigHash::Sha1),
            b"SHA-256" | b"SHA256" | [hash_code::SHA256] => return Ok(SigHash::Sha256),
            _ => {}
        }
        let s = String::from_utf8_lossy(name);
        if s.starts_with("SHA1with") {
            Ok(SigHash::Sha1)
        } else if s.starts_with("SHA256with") {
            Ok(SigHash::Sha256)
        } else {
            Err(AuthError::UnsupportedAlgorithm(s.into_owned()))
        }
    }

    /// The name the reference writes in answers and credentials.
    pub fn name(self) -> &'static str {
        match self {
            SigHash::Sha1 => "SHA1",
            SigHash::Sha256 => "SHA-256",
        }
    }

    /// What the reference signs with at a version: SHA-256 from 2.7, SHA-1 before.
    pub fn for_version(version: (u8, u8)) -> Self {
        if version >= (2, 7) {
            SigHash::Sha256
        } else {
            SigHash::Sha1
        }
    }

    fn scheme_and_hash(self, data: &[u8]) -> (Pkcs1v15Sign, Vec<u8>) {
        match self {
            SigHash::Sha1 => (Pkcs1v15Sign::new::<Sha1>(), Sha1::digest(data).to_vec()),
            SigHash::Sha256 => (Pkcs1v15Sign::new::<Sha256>(), Sha256::digest(data).to_vec()),
        }
    }
}

/// RSA PKCS#1 v1.5 signature of `data` (deterministic: no RNG needed).
pub fn rsa_sign(key: &RsaPrivateKey, hash: SigHash, data: &[u8]) -> Result<Vec<u8>, AuthError> {
    let (scheme, digest) = hash.scheme_and_hash(data);
    key.sign(scheme, &digest)
        .map_err(|e| AuthError::Key(e.to_string()))
}

/// Whether `signature` is a valid RSA PKCS#1 v1.5 signature of `data`.
pub fn rsa_verify(key: &RsaPublicKey, hash: SigHash, data: &[u8], signature: &[u8]) -> bool {
    let (scheme, digest) = hash.scheme_and_hash(data);
    key.verify(scheme, &digest, signature).is_ok()
}

/// An answer to a challenge by public key: `str hashAlg ‖ bytes signature` over
/// `nonce ‖ digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyAnswer {
    pub hash_alg: Vec<u8>,
    pub signature: Vec<u8>,
}

impl PublicKeyAnswer {
    pub fn decode(b: &[u8]) -> Result<Self, AuthError> {
        let mut r = Reader::new(b);
        let err = |e| malformed("public key answer", e);
        let hash_alg = r.bytes("hash algorithm").map_err(err)?.to_vec();
        let signature = r.bytes("signature").map_err(err)?.to_vec();
        r.finish("public key answer").map_err(err)?;
        Ok(PublicKeyAnswer {
            hash_alg,
            signature,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_bytes(&self.hash_alg);
        out.put_bytes(&self.signature);
        out
    }

    /// Signs a challenge as the reference client does at `version`.
    pub fn sign(
        key: &RsaPrivateKey,
        nonce: &[u8],
        digest: &[u8],
        version: (u8, u8),
    ) -> Result<Self, AuthError> {
        let hash = SigHash::for_version(version);
        Ok(PublicKeyAnswer {
            hash_alg: hash.name().as_bytes().to_vec(),
            signature: rsa_sign(key, hash, &[nonce, digest].concat())?,
        })
    }

    pub fn verify(
        &self,
        key: &RsaPublicKey,
        nonce: &[u8],
        digest: &[u8],
    ) -> Result<bool, AuthError> {
        let hash = SigHash::parse(&self.hash_alg)?;
        Ok(rsa_verify(
            key,
            hash,
            &[nonce, digest].concat(),
            &self.signature,
        ))
    }
}

/// The RSA key in HS_PUBKEY data (the reference's encoding, or PEM as IDIS stores it).
pub fn rsa_public_from_hs(key: &PublicKey) -> Result<RsaPublicKey, AuthError> {
    match key {
        PublicKey::Rsa {
            exponent, modulus, ..
        } => RsaPublicKey::new(
            BigUint::from_bytes_be(modulus),
            BigUint::from_bytes_be(exponent),
        )
        .map_err(|e| AuthError::Key(e.to_string())),
        PublicKey::Pem(pem) => rsa_public_from_pem(pem),
        PublicKey::Dsa { .. } => Err(AuthError::UnsupportedKey("DSA".into())),
        PublicKey::Dh { .. } => Err(AuthError::UnsupportedKey("DH (not a signing key)".into())),
        PublicKey::Other { key_type, .. } => Err(AuthError::UnsupportedKey(key_type.clone())),
    }
}

/// HS_PUBKEY data for an RSA key, as the reference encodes it.
pub fn hs_from_rsa_public(key: &RsaPublicKey) -> PublicKey {
    PublicKey::rsa(&key.e().to_bytes_be(), &key.n().to_bytes_be())
}

/// The label and DER bytes of the first PEM block in `text`. Lenient where real files differ
/// from RFC 7468 (Java's tools write 76-column lines and CRLF), strict on the Base64 itself.
pub fn pem_decode(text: &str) -> Result<(String, Vec<u8>), AuthError> {
    use base64::Engine;
    let err = |why: &str| malformed("PEM", why);
    let begin = text
        .find("-----BEGIN ")
        .ok_or_else(|| err("no BEGIN line"))?;
    let rest = &text[begin + 11..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| err("unterminated BEGIN line"))?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body
        .find(&end_marker)
        .ok_or_else(|| err("no matching END line"))?;
    let b64: String = body[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| malformed("PEM", e))?;
    Ok((label, der))
}

/// An RSA public key from PEM: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`).
pub fn rsa_public_from_pem(pem: &str) -> Result<RsaPublicKey, AuthError> {
    let (label, der) = pem_decode(pem)?;
    match label.as_str() {
        "PUBLIC KEY" => RsaPublicKey::from_public_key_der(&der).map_err(|e| e.to_string()),
        "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_der(&der).map_err(|e| e.to_string()),
        other => Err(format!("a PEM block labelled {other:?}")),
    }
    .map_err(|e| AuthError::Key(format!("not an RSA public key: {e}")))
}

/// An RSA private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
pub fn rsa_private_from_pem(pem: &str) -> Result<RsaPrivateKey, AuthError> {
    let (label, der) = pem_decode(pem)?;
    match label.as_str() {
        "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| e.to_string()),
        "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| e.to_string()),
        "ENCRYPTED PRIVATE KEY" => Err("it is encrypted; decrypt it first".into()),
        other => Err(format!("a PEM block labelled {other:?}")),
    }
    .map_err(|e| AuthError::Key(format!("not an RSA private key: {e}")))
}

/// Encryption types of the reference's private-key files (`Common.ENCRYPT_*`).
const ENCRYPT_NONE: u32 = 1;

/// A private key from the reference's own file format (`privkey.bin`, `admpriv.bin`): `u32`
/// encryption type, then `RSA_PRIVCRT_KEY` (n, e, d, p, q, dP, dQ, qInv) or `RSA_PRIV_KEY`
/// (n, d). Only unencrypted files are read; an encrypted one is reported as such.
pub fn rsa_private_from_reference(b: &[u8]) -> Result<RsaPrivateKey, AuthError> {
    let mut r = Reader::new(b);
    let err = |e| malformed("private key file", e);
    let enc = r.u32("encryption type").map_err(err)?;
    if enc != ENCRYPT_NONE {
        return Err(AuthError::EncryptedKey(enc));
    }
    let kind = r.bytes("key type").map_err(err)?;
    let mut int = || -> Result<BigUint, AuthError> {
        Ok(BigUint::from_bytes_be(r.bytes("key field").map_err(err)?))
    };
    let key = match kind {
        b"RSA_PRIVCRT_KEY" => {
            let n = int()?;
            let e = int()?;
            let d = int()?;
            let p = int()?;
            let q = int()?;
            RsaPrivateKey::from_components(n, e, d, vec![p, q])
        }
        b"RSA_PRIV_KEY" => {
            return Err(AuthError::UnsupportedKey(
                "RSA_PRIV_KEY without CRT parameters".into(),
            ));
        }
        other => {
            return Err(AuthError::UnsupportedKey(
                String::from_utf8_lossy(other).into_owned(),
            ));
        }
    };
    key.map_err(|e| AuthError::Key(e.to_string()))
}

/// The reference's unencrypted private-key file for an RSA key (`RSA_PRIVCRT_KEY`).
pub fn rsa_private_to_reference(key: &RsaPrivateKey) -> Result<Vec<u8>, AuthError> {
    let primes = key.primes();
    if primes.len() != 2 {
        return Err(AuthError::UnsupportedKey("multi-prime RSA".into()));
    }
    let (p, q) = (&primes[0], &primes[1]);
    let one = BigUint::from(1u8);
    let dp = key.d() % (p - &one);
    let dq = key.d() % (q - &one);
    let qinv = key
        .qinv()
        .and_then(|c| c.to_biguint())
        .ok_or_else(|| AuthError::Key("no CRT coefficient".into()))?;
    let mut out = Vec::new();
    out.put_u32(ENCRYPT_NONE);
    out.put_str("RSA_PRIVCRT_KEY");
    for f in [key.n(), key.e(), key.d(), p, q, &dp, &dq, &qinv] {
        out.put_bytes(&java_bigint_bytes(&f.to_bytes_be()));
    }
    Ok(out)
}

/// A credential as the reference writes one: version 0, no signer handle, the session counter
/// in the signer index.
fn credential(cred_type: &str, digest_alg: &str, counter: u32, signature: Vec<u8>) -> Credential {
    Credential {
        version: 0,
        reserved: 0,
        options: 0,
        signer_handle: String::new(),
        signer_index: counter,
        cred_type: cred_type.into(),
        digest_alg: digest_alg.into(),
        signature,
    }
}

/// Signs a message with the node's key as HS_SIGNED (what a CT request asks for), over
/// [`Message::signed_bytes`] with `counter` in the credential's signer index.
pub fn sign_message(msg: &mut Message, key: &RsaPrivateKey, counter: u32) -> Result<(), AuthError> {
    let hash = SigHash::for_version(msg.version());
    let signature = rsa_sign(key, hash, &msg.signed_bytes(counter))?;
    msg.credential = Some(credential(
        credential_type::HS_SIGNED,
        hash.name(),
        counter,
        signature,
    ));
    Ok(())
}

/// Verifies a message's HS_SIGNED credential with the signer's public key. `Ok(false)` for a
/// signature that does not verify; an error when there is no HS_SIGNED credential.
pub fn verify_signed_message(msg: &Message, key: &RsaPublicKey) -> Result<bool, AuthError> {
    let c = msg
        .credential
        .as_ref()
        .filter(|c| c.cred_type == credential_type::HS_SIGNED)
        .ok_or_else(|| malformed("credential", "no HS_SIGNED credential"))?;
    let hash = SigHash::parse(c.digest_alg.as_bytes())?;
    Ok(rsa_verify(
        key,
        hash,
        &msg.signed_bytes(c.signer_index),
        &c.signature,
    ))
}

fn session_mac(
    version: (u8, u8),
    key: &[u8],
    data: &[u8],
) -> Result<(&'static str, Vec<u8>), AuthError> {
    if version >= (2, 7) {
        Ok(("HMAC-SHA256", hmac_sha256(key, data)))
    } else if version >= (2, 6) {
        // 2.6 names SHA1 and computes the keyed digest, not an HMAC.
        Ok(("SHA1", sandwich::<Sha1>(key, data)))
    } else {
        Err(AuthError::UnsupportedAlgorithm(
            "session MACs before 2.6 (the reference's own layout is broken there)".into(),
        ))
    }
}

/// Puts an HS_MAC credential on a message (a session's messages carry one each).
pub fn mac_message(msg: &mut Message, session_key: &[u8], counter: u32) -> Result<(), AuthError> {
    let (alg, mac) = session_mac(msg.version(), session_key, &msg.signed_bytes(counter))?;
    msg.credential = Some(credential(credential_type::HS_MAC, alg, counter, mac));
    Ok(())
}

/// Verifies a message's HS_MAC credential with the session key.
pub fn verify_mac(msg: &Message, session_key: &[u8]) -> Result<bool, AuthError> {
    let c = msg
        .credential
        .as_ref()
        .filter(|c| c.cred_type == credential_type::HS_MAC)
        .ok_or_else(|| malformed("credential", "no HS_MAC credential"))?;
    let data = msg.signed_bytes(c.signer_index);
    let expected = match c
        .digest_alg
        .to_ascii_uppercase()
        .replace(['-', '_'], "")
        .as_str()
    {
        "HMACSHA256" => hmac_sha256(session_key, &data),
        "HMACSHA1" => hmac_sha1(session_key, &data),
        "SHA1" => sandwich::<Sha1>(session_key, &data),
        "SHA256" => sandwich::<Sha256>(session_key, &data),
        _ => return Err(AuthError::UnsupportedAlgorithm(c.digest_alg.clone())),
    };
    Ok(ct_eq(&expected, &c.signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pbkdf2_answer_round_trip() {
        let nonce = [1u8; 16];
        let digest = [2u8; 32];
        let a = SecretKeyAnswer::pbkdf2(b"secretpw", &nonce, &digest, [3; 16]);
        let b = SecretKeyAnswer::decode(&a.encode(), false).unwrap();
        assert_eq!(a, b);
        assert!(b.verify(b"secretpw", &nonce, &digest).unwrap());
        assert!(!b.verify(b"wrongpw", &nonce, &digest).unwrap());
        assert!(!b.verify(b"secretpw", &[9; 16], &digest).unwrap());
    }

    #[test]
    fn answers_at_every_version_verify() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for v in [(2, 0), (2, 1), (2, 6), (2, 7), (2, 11)] {
            let a = SecretKeyAnswer::for_version(b"s\xe9cret", b"n", b"d", v, &mut rng);
            let back = SecretKeyAnswer::decode(&a.encode(), v < (2, 1)).unwrap();
            assert!(back.verify(b"s\xe9cret", b"n", b"d").unwrap(), "{v:?}");
            assert!(!back.verify(b"secret", b"n", b"d").unwrap(), "{v:?}");
        }
    }

    #[test]
    fn absurd_pbkdf2_parameters_are_refused_not_computed() {
        let a = SecretKeyAnswer::Pbkdf2HmacSha1 {
            salt: vec![0; 16],
            iterations: u32::MAX,
            key_bits: 160,
            mac: vec![0; 20],
        };
        assert!(matches!(
            a.verify(b"x", b"n", b"d"),
            Err(AuthError::Pbkdf2Params(_))
        ));
        let a = SecretKeyAnswer::Pbkdf2HmacSha1 {
            salt: vec![0; 16],
            iterations: 1,
            key_bits: 1 << 20,
            mac: vec![0; 20],
        };
        assert!(matches!(
            a.verify(b"x", b"n", b"d"),
            Err(AuthError::Pbkdf2Params(_))
        ));
    }

    #[test]
    fn truncated_answers_are_malformed() {
        assert!(SecretKeyAnswer::decode(&[], false).is_err());
        assert!(SecretKeyAnswer::decode(&[0x22, 0, 0, 0, 99], false).is_err());
        assert!(PublicKeyAnswer::decode(&[0, 0, 0, 7, b'S']).is_err());
    }

    #[test]
    fn hash_names() {
        for (n, h) in [
            (&b"SHA1"[..], SigHash::Sha1),
            (b"SHA-1", SigHash::Sha1),
            (b"SHA-256", SigHash::Sha256),
            (b"SHA256", SigHash::Sha256),
            (b"SHA256withRSA", SigHash::Sha256),
            (&[3u8][..], SigHash::Sha256),
        ] {
            assert_eq!(SigHash::parse(n).unwrap(), h);
        }
        assert!(SigHash::parse(b"MD5").is_err());
    }

    #[test]
    fn bad_pem_is_an_error() {
        assert!(pem_decode("no pem here").is_err());
        assert!(pem_decode("-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
        assert!(pem_decode("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----").is_err());
        let (label, der) = pem_decode(
            "x\r\n-----BEGIN PUBLIC KEY-----\r\nAAEC\r\nAw==\r\n-----END PUBLIC KEY-----\r\n",
        )
        .unwrap();
        assert_eq!((label.as_str(), der), ("PUBLIC KEY", vec![0, 1, 2, 3]));
        assert!(
            rsa_public_from_pem("-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----")
                .is_err()
        );
    }

    #[test]
    fn ct_eq_semantics() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
