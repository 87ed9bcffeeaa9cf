//! Session key maths of OC 400 (SESSION_SETUP) as the reference computes it: the
//! Diffie-Hellman exchange GenericBatch uses by default (the session key is the shared secret,
//! padded to the modulus length, leading zeros stripped, truncated to 32 bytes for AES), and the
//! RSA exchanges, which wrap `u32 algorithm ‖ key` with PKCS#1 v1.5 (the reference's own RSA
//! exchange never works: its cipher name is misspelt). The RNG is the caller's.

use num_bigint::BigUint;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};

use crate::value::{PublicKey, java_bigint_bytes};
use crate::wire::{Reader, Writer};

/// Session cipher algorithm codes (`HdlSecurityProvider.ENCRYPT_ALG_*`).
pub mod alg {
    pub const DES: u32 = 1;
    pub const DESEDE: u32 = 2;
    pub const AES: u32 = 3;
}

/// Length of an AES session key derived from Diffie-Hellman.
pub const AES_KEY_LEN: usize = 32;
/// Smallest Diffie-Hellman modulus we accept (bits): smaller groups are breakable.
pub const MIN_DH_BITS: u64 = 1024;
/// Largest modulus we accept (bits): bounds the work one request can cause.
pub const MAX_DH_BITS: u64 = 8192;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("not a Diffie-Hellman key")]
    NotDh,
    #[error("Diffie-Hellman group of {0} bits is outside {MIN_DH_BITS}..={MAX_DH_BITS}")]
    GroupSize(u64),
    #[error("the peer's Diffie-Hellman value is out of range")]
    BadPeerValue,
    #[error("malformed session data: {0}")]
    Malformed(String),
    #[error("RSA: {0}")]
    Rsa(String),
}

/// One side of a Diffie-Hellman exchange in the group `(p, g)` the client chose.
#[derive(Debug, Clone)]
pub struct DhKeyPair {
    p: BigUint,
    g: BigUint,
    x: BigUint,
    /// Our public value, as HS_PUBKEY data (`DH_PUB_KEY`, y, p, g).
    pub public: PublicKey,
}

impl DhKeyPair {
    /// A fresh key pair in the group of `peer` (a `DH_PUB_KEY`).
    pub fn in_group_of(
        peer: &PublicKey,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<Self, SessionError> {
        let PublicKey::Dh { p, g, .. } = peer else {
            return Err(SessionError::NotDh);
        };
        Self::new(p, g, rng)
    }

    /// A fresh key pair in the group `(p, g)` (big-endian, Java's encoding).
    pub fn new(
        p: &[u8],
        g: &[u8],
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<Self, SessionError> {
        let p = BigUint::from_bytes_be(p);
        let g = BigUint::from_bytes_be(g);
        let bits = p.bits();
        if !(MIN_DH_BITS..=MAX_DH_BITS).contains(&bits) {
            return Err(SessionError::GroupSize(bits));
        }
        let one = BigUint::from(1u8);
        if g <= one || g >= &p - &one {
            return Err(SessionError::BadPeerValue);
        }
        // A 256-bit private exponent, as for the 1024..2048-bit groups clients use.
        let mut xb = [0u8; 32];
        rng.fill_bytes(&mut xb);
        let x = BigUint::from_bytes_be(&xb) % (&p - &one) + &one;
        let y = g.modpow(&x, &p);
        let public = PublicKey::Dh {
            flags: 0,
            y: java_bigint_bytes(&y.to_bytes_be()),
            p: java_bigint_bytes(&p.to_bytes_be()),
            g: java_bigint_bytes(&g.to_bytes_be()),
        };
        Ok(DhKeyPair { p, g, x, public })
    }

    /// The AES session key shared with `peer`, as the reference derives it.
    pub fn session_key(&self, peer: &PublicKey) -> Result<Vec<u8>, SessionError> {
        let PublicKey::Dh { y, p, g, .. } = peer else {
            return Err(SessionError::NotDh);
        };
        if BigUint::from_bytes_be(p) != self.p || BigUint::from_bytes_be(g) != self.g {
            return Err(SessionError::BadPeerValue);
        }
        let y = BigUint::from_bytes_be(y);
        let one = BigUint::from(1u8);
        // Values 0, 1 and p-1 would force a known secret.
        if y <= one || y >= &self.p - &one {
            return Err(SessionError::BadPeerValue);
        }
        let secret = y.modpow(&self.x, &self.p).to_bytes_be();
        // Java's KeyAgreement pads the secret to the modulus length.
        let len = self.p.bits().div_ceil(8) as usize;
        let mut padded = vec![0u8; len.saturating_sub(secret.len())];
        padded.extend_from_slice(&secret);
        Ok(strip_and_truncate(&padded, AES_KEY_LEN))
    }
}

/// `GenericProvider.stripLeadingZerosAndTruncate`.
fn strip_and_truncate(secret: &[u8], length: usize) -> Vec<u8> {
    let mut i = 0;
    while i + length < secret.len() && secret[i] == 0 {
        i += 1;
    }
    secret[i..(i + length).min(secret.len())].to_vec()
}

/// The `data` of a Diffie-Hellman session setup answer: `u32 algorithm ‖ HS_PUBKEY`.
pub fn dh_response_data(algorithm: u32, public: &PublicKey) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u32(algorithm);
    out.extend_from_slice(&public.encode());
    out
}

pub fn parse_dh_response_data(data: &[u8]) -> Result<(u32, PublicKey), SessionError> {
    let mut r = Reader::new(data);
    let a = r
        .u32("algorithm")
        .map_err(|e| SessionError::Malformed(e.to_string()))?;
    let key = PublicKey::decode(r.rest()).map_err(|e| SessionError::Malformed(e.to_string()))?;
    Ok((a, key))
}

/// A session key wrapped for the holder of `key`: RSA PKCS#1 v1.5 of `u32 algorithm ‖ key`.
pub fn wrap_session_key(
    key: &RsaPublicKey,
    algorithm: u32,
    session_key: &[u8],
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<Vec<u8>, SessionError> {
    let mut plain = Vec::with_capacity(4 + session_key.len());
    plain.put_u32(algorithm);
    plain.extend_from_slice(session_key);
    key.encrypt(rng, Pkcs1v15Encrypt, &plain)
        .map_err(|e| SessionError::Rsa(e.to_string()))
}

/// The algorithm and key inside a wrapped session key.
pub fn unwrap_session_key(
    key: &RsaPrivateKey,
    wrapped: &[u8],
) -> Result<(u32, Vec<u8>), SessionError> {
    let plain = key
        .decrypt(Pkcs1v15Encrypt, wrapped)
        .map_err(|e| SessionError::Rsa(e.to_string()))?;
    if plain.len() < 5 {
        return Err(SessionError::Malformed("wrapped key too short".into()));
    }
    let a = u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]);
    Ok((a, plain[4..].to_vec()))
}

/// AES block and IV size.
pub const AES_IV_LEN: usize = 16;

/// Encrypts a message's bytes after the envelope for an encrypted session (EC), as the
/// reference's `SessionInfo.encryptBuffer` does from 2.4: AES-128-CBC with PKCS#5 padding
/// under the first 16 bytes of the session key, the IV in front of the ciphertext.
pub fn encrypt_message(
    session_key: &[u8],
    plain: &[u8],
    iv: [u8; AES_IV_LEN],
) -> Result<Vec<u8>, SessionError> {
    use cbc::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
    let key = aes_key(session_key)?;
    let enc = cbc::Encryptor::<aes::Aes128>::new(key.into(), &iv.into());
    let mut out = iv.to_vec();
    out.extend_from_slice(&enc.encrypt_padded_vec_mut::<Pkcs7>(plain));
    Ok(out)
}

/// The inverse of [`encrypt_message`]; a wrong key or damaged bytes are an error, not garbage.
pub fn decrypt_message(session_key: &[u8], data: &[u8]) -> Result<Vec<u8>, SessionError> {
    use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
    let key = aes_key(session_key)?;
    if data.len() < 2 * AES_IV_LEN || data.len() % AES_IV_LEN != 0 {
        return Err(SessionError::Malformed("encrypted message length".into()));
    }
    let (iv, ct) = data.split_at(AES_IV_LEN);
    let dec = cbc::Decryptor::<aes::Aes128>::new(key.into(), iv.into());
    dec.decrypt_padded_vec_mut::<Pkcs7>(ct)
        .map_err(|_| SessionError::Malformed("cannot decrypt with the session key".into()))
}

fn aes_key(session_key: &[u8]) -> Result<&[u8; 16], SessionError> {
    session_key
        .get(..16)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| SessionError::Malformed("session key shorter than 16 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The 1024-bit group GenericBatch offered in admin/a (RFC 2409 group 2), generator 2.
    const P: &str = "00ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7edee386bfb5a899fa5ae9f24117c4b1fe649286651ece65381ffffffffffffffff";

    #[test]
    fn both_sides_derive_the_same_32_byte_key() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let p = hex::decode(P).unwrap();
        let client = DhKeyPair::new(&p, &[2], &mut rng).unwrap();
        let server = DhKeyPair::in_group_of(&client.public, &mut rng).unwrap();
        let k1 = server.session_key(&client.public).unwrap();
        let k2 = client.session_key(&server.public).unwrap();
        assert_eq!(k1, k2);
        assert_eq!(k1.len(), 32);
        let data = dh_response_data(alg::AES, &server.public);
        assert_eq!(
            parse_dh_response_data(&data).unwrap(),
            (alg::AES, server.public.clone())
        );
    }

    #[test]
    fn weak_groups_and_values_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        assert!(matches!(
            DhKeyPair::new(&[0xff; 64], &[2], &mut rng),
            Err(SessionError::GroupSize(512))
        ));
        let p = hex::decode(P).unwrap();
        let me = DhKeyPair::new(&p, &[2], &mut rng).unwrap();
        let bad = PublicKey::Dh {
            flags: 0,
            y: vec![1],
            p: p.clone(),
            g: vec![2],
        };
        assert_eq!(me.session_key(&bad), Err(SessionError::BadPeerValue));
    }

    #[test]
    fn strip_and_truncate_like_java() {
        assert_eq!(strip_and_truncate(&[0, 0, 1, 2, 3], 2), vec![1, 2]);
        assert_eq!(
            strip_and_truncate(&[0, 0, 1], 2),
            vec![0, 1],
            "keeps enough bytes"
        );
    }

    #[test]
    fn message_encryption_round_trips_and_detects_a_wrong_key() {
        let key = [7u8; 32];
        for len in [0, 1, 15, 16, 17, 300] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let c = encrypt_message(&key, &plain, [3; 16]).unwrap();
            assert_eq!(c.len(), 16 + (len / 16 + 1) * 16);
            assert_eq!(decrypt_message(&key, &c).unwrap(), plain);
        }
        let c = encrypt_message(&key, b"hello", [3; 16]).unwrap();
        assert!(
            decrypt_message(&[8u8; 32], &c).is_err()
                || decrypt_message(&[8u8; 32], &c).unwrap() != b"hello"
        );
        assert!(decrypt_message(&key, &c[..20]).is_err());
        assert!(encrypt_message(&[1; 8], b"x", [0; 16]).is_err());
    }

    #[test]
    fn rsa_wrapping_round_trips() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let key = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let w = wrap_session_key(&key.to_public_key(), alg::AES, &[9; 16], &mut rng).unwrap();
        assert_eq!(
            unwrap_session_key(&key, &w).unwrap(),
            (alg::AES, vec![9; 16])
        );
        assert!(unwrap_session_key(&key, &w[1..]).is_err());
    }
}
