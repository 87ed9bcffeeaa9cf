//! The authentication maths against the reference server's recorded challenges: every answer
//! in tests/fixtures/reference/admin verifies (or, made with the wrong secret, does not), and
//! every HS_SIGNED credential the server put on its answers verifies with its key. Which key or
//! secret verifies what comes from index.json.

use std::path::PathBuf;

use serde_json::Value as Json;
use suyuan_codec::auth::{
    PublicKeyAnswer, SecretKeyAnswer, hs_from_rsa_public, mac_message, rsa_private_from_pem,
    rsa_private_from_reference, rsa_private_to_reference, rsa_public_from_hs, rsa_public_from_pem,
    sign_message, verify_mac, verify_signed_message,
};
use suyuan_codec::message::{Body, Message, credential_type};
use suyuan_codec::value::PublicKey;

fn read(file: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference")
        .join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn text(file: &str) -> String {
    String::from_utf8(read(file)).unwrap()
}

fn index() -> Json {
    serde_json::from_slice(&read("index.json")).unwrap()
}

/// The nonce and request digest of a recorded 402.
fn challenge(file: &str) -> (Vec<u8>, Vec<u8>) {
    let m = Message::decode(&read(file)).unwrap();
    let Body::Challenge { nonce } = m.body else {
        panic!("{file}: not a challenge")
    };
    (
        nonce,
        m.request_digest.expect("a 402 carries the digest").digest,
    )
}

#[test]
fn recorded_challenge_answers_verify() {
    let idx = index();
    let admin_pub = rsa_public_from_pem(&text("keys/admin-300.pub.pem")).unwrap();
    // The HS_PUBKEY value and the PEM are the same key.
    let hs = PublicKey::decode(&read("keys/admin-300.hs_pubkey.bin")).unwrap();
    assert_eq!(rsa_public_from_hs(&hs).unwrap(), admin_pub);
    let (mut pubkey_checks, mut seckey_checks) = (0, 0);
    for f in idx["fixtures"].as_array().unwrap() {
        let Some(check) = f
            .get("challenge_answer_check")
            .filter(|c| c.get("challenge_file").is_some())
        else {
            continue;
        };
        let file = f["file"].as_str().unwrap();
        let (nonce, digest) = challenge(check["challenge_file"].as_str().unwrap());
        assert_eq!(check["nonce_hex"], hex::encode(&nonce), "{file}");
        let answer = Message::decode(&read(file)).unwrap();
        let Body::ChallengeResponse {
            auth_type,
            signed_response,
            ..
        } = &answer.body
        else {
            panic!("{file}: not a challenge response")
        };
        match auth_type.as_str() {
            "HS_PUBKEY" => {
                let a = PublicKeyAnswer::decode(signed_response).unwrap();
                assert_eq!(a.encode(), *signed_response, "{file}");
                assert!(
                    a.verify(&admin_pub, &nonce, &digest).unwrap(),
                    "{file}: must verify"
                );
                // Any other challenge, or a flipped bit, must not.
                let mut other = nonce.clone();
                other[0] ^= 1;
                assert!(!a.verify(&admin_pub, &other, &digest).unwrap(), "{file}");
                let mut bad = a.clone();
                bad.signature[10] ^= 0x40;
                assert!(!bad.verify(&admin_pub, &nonce, &digest).unwrap(), "{file}");
                pubkey_checks += 1;
            }
            "HS_SECKEY" => {
                let a = SecretKeyAnswer::decode(signed_response, false).unwrap();
                assert_eq!(a.encode(), *signed_response, "{file}");
                let SecretKeyAnswer::Pbkdf2HmacSha1 {
                    salt,
                    iterations,
                    key_bits,
                    mac,
                } = &a
                else {
                    panic!("{file}: expected the PBKDF2 form")
                };
                assert_eq!(check["salt_hex"], hex::encode(salt), "{file}");
                assert_eq!(check["iterations"], *iterations, "{file}");
                assert_eq!(check["keyLengthBits"], *key_bits, "{file}");
                assert_eq!(check["mac_hex"], hex::encode(mac), "{file}");
                // `recomputed_match` says which secrets verify; flow e names one `secret`.
                let expectations: Vec<(String, bool)> = match check.get("recomputed_match") {
                    Some(Json::Object(m)) => m
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_bool().unwrap()))
                        .collect(),
                    _ => vec![(check["secret"].as_str().unwrap().to_string(), true)],
                };
                for (secret, ok) in expectations {
                    assert_eq!(
                        a.verify(secret.as_bytes(), &nonce, &digest).unwrap(),
                        ok,
                        "{file}: {secret}"
                    );
                }
                seckey_checks += 1;
            }
            other => panic!("{file}: auth type {other}"),
        }
    }
    assert_eq!(
        (pubkey_checks, seckey_checks),
        (2, 3),
        "flows a and e (pubkey); b, c and e (seckey)"
    );
}

#[test]
fn server_signed_credentials_verify() {
    let idx = index();
    let server = rsa_public_from_pem(&text("keys/server-1.pub.pem")).unwrap();
    let hs = PublicKey::decode(&read("keys/server-1.hs_pubkey.bin")).unwrap();
    assert_eq!(rsa_public_from_hs(&hs).unwrap(), server);
    assert_eq!(
        hs_from_rsa_public(&server).encode(),
        read("keys/server-1.hs_pubkey.bin")
    );
    let mut checked = 0;
    for f in idx["fixtures"].as_array().unwrap() {
        let file = f["file"].as_str().unwrap();
        if f["credential"]["type"] != credential_type::HS_SIGNED || !file.ends_with(".bin") {
            continue;
        }
        let m = Message::decode(&read(file)).unwrap();
        assert!(verify_signed_message(&m, &server).unwrap(), "{file}");
        let mut tampered = m.clone();
        tampered.header.expiration ^= 1;
        assert!(
            !verify_signed_message(&tampered, &server).unwrap(),
            "{file}: tampered"
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "session setup answers of flows a-d: {checked}"
    );
}

#[test]
fn signing_with_the_test_key_round_trips() {
    let key = rsa_private_from_pem(&text("keys/admin-300.priv.pem")).unwrap();
    let public = rsa_public_from_pem(&text("keys/admin-300.pub.pem")).unwrap();
    assert_eq!(
        hs_from_rsa_public(&key.to_public_key()).encode(),
        read("keys/admin-300.hs_pubkey.bin")
    );
    let (nonce, digest) =
        challenge("admin/e-python-nosession/02-s2c-CREATE_HANDLE-AUTHENTICATION_NEEDED.bin");
    let a = PublicKeyAnswer::sign(&key, &nonce, &digest, (2, 11)).unwrap();
    assert_eq!(a.hash_alg, b"SHA-256");
    assert!(a.verify(&public, &nonce, &digest).unwrap());
    // PKCS#1 v1.5 is deterministic: our signature is the one recorded from the Python client.
    let recorded = Message::decode(&read(
        "admin/e-python-nosession/03-c2s-CHALLENGE_RESPONSE.bin",
    ))
    .unwrap();
    let Body::ChallengeResponse {
        signed_response, ..
    } = recorded.body
    else {
        panic!()
    };
    assert_eq!(
        PublicKeyAnswer::decode(&signed_response).unwrap().signature,
        a.signature
    );

    // The reference's private-key file format round-trips the same key.
    let file = rsa_private_to_reference(&key).unwrap();
    assert_eq!(&file[..4], &[0, 0, 0, 1], "unencrypted");
    assert_eq!(rsa_private_from_reference(&file).unwrap(), key);
    let mut encrypted = file.clone();
    encrypted[3] = 4;
    assert!(rsa_private_from_reference(&encrypted).is_err());

    // HS_SIGNED and HS_MAC on a message of our own.
    let mut m = Message::decode(&read(
        "admin/a-genericbatch-pubkey/07-c2s-conn4-ADD_VALUE.bin",
    ))
    .unwrap();
    sign_message(&mut m, &key, 9).unwrap();
    assert!(verify_signed_message(&Message::decode(&m.encode()).unwrap(), &public).unwrap());
    mac_message(&mut m, b"session key", 10).unwrap();
    let back = Message::decode(&m.encode()).unwrap();
    assert_eq!(back.credential.as_ref().unwrap().digest_alg, "HMAC-SHA256");
    assert!(verify_mac(&back, b"session key").unwrap());
    assert!(!verify_mac(&back, b"other key").unwrap());
}
