//! IDIS's SM2 signatures (`alg: SM2256`, SM2 with SM3, the default distinguishing identifier,
//! a DER signature): a value signature and a certificate chain made with SM2 keys verify and
//! fail as RSA ones do; the key travels in HS_PUBKEY as IDIS stores it (`SM2_PUB_KEY`, flags,
//! the X.509 key as PEM) and in a certificate as an EC JWK with `"crv": "SM2"`.

use suyuan_codec::trust::{
    Jwk, Jws, Link, Permission, PrivateKey, SignerKey, cert_claims, check_values,
    sm2_from_hs_pubkey, sm2_hs_pubkey, sm2_signing_key, value_claims, verify_chain,
};
use suyuan_codec::value::HandleValue;

fn key() -> PrivateKey {
    let secret = sm2::SecretKey::random(&mut rand::rngs::OsRng);
    PrivateKey::Sm2(sm2_signing_key(&secret).unwrap())
}

#[test]
fn sm2_signatures_verify_and_changed_values_do_not() {
    let signer = key();
    let values = vec![
        HandleValue::new(1, "URL", "https://example.org/m"),
        HandleValue::new(2, "mrv.value", "12.5"),
    ];
    let claims = value_claims(
        "88.888.1/m",
        &values,
        "300:88.888.1/SIGNER",
        1,
        1,
        4_102_444_800,
        None,
    );
    let jws = Jws::sign_with(&claims, &signer).unwrap();
    let text = jws.compact();
    let parsed = Jws::parse(&text).unwrap();
    assert_eq!(parsed.alg, "SM2256");
    assert_eq!(parsed.signature[0], 0x30, "a DER signature");
    parsed.verify(&signer.public()).unwrap();
    assert!(parsed.verify(&key().public()).is_err(), "another key");
    let mut forged = parsed.clone();
    forged.payload[3] ^= 1;
    let forged = Jws::parse(&format!(
        "{}.{}.{}",
        text.split('.').next().unwrap(),
        base64_url(&forged.payload),
        text.split('.').nth(2).unwrap()
    ))
    .unwrap();
    assert!(
        forged.verify(&signer.public()).is_err(),
        "a changed payload"
    );
    let mut changed = values.clone();
    changed[1].data = b"13".to_vec();
    assert_eq!(
        check_values(&parsed.claims().unwrap(), &changed)
            .unwrap()
            .bad_digest,
        [2]
    );

    // HS_PUBKEY as IDIS stores it, and the JWK of a certificate, both give the key back.
    let SignerKey::Sm2(vk) = signer.public() else {
        unreachable!()
    };
    let data = sm2_hs_pubkey(&vk).unwrap();
    assert_eq!(&data[4..15], b"SM2_PUB_KEY");
    assert!(String::from_utf8_lossy(&data).contains("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(
        SignerKey::Sm2(sm2_from_hs_pubkey(&data).unwrap()),
        signer.public()
    );
    let jwk = Jwk::of(&signer.public());
    assert_eq!((jwk.kty.as_str(), jwk.crv.as_deref()), ("EC", Some("SM2")));
    assert_eq!(jwk.key().unwrap(), signer.public());
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[test]
fn an_sm2_chain_verifies_to_an_sm2_root() {
    let (root, signer) = (key(), key());
    let cert = |iss: &str, by: &PrivateKey, sub: &str, of: &PrivateKey, perm: &str| {
        let perms = vec![Permission {
            handle: Some("0.NA/88.888.1".into()),
            perm: perm.into(),
        }];
        let c = cert_claims(iss, sub, &of.public(), perms, 1, 1, 4_102_444_800);
        let jws = Jws::sign_with(&c, by).unwrap();
        Link {
            claims: jws.claims().unwrap(),
            jws,
        }
    };
    let root_cert = cert(
        "300:88.888.1/ROOT",
        &root,
        "300:88.888.1/ROOT",
        &root,
        "handlesUnderThisPrefix",
    );
    let signer_cert = cert(
        "300:88.888.1/ROOT",
        &root,
        "300:88.888.1/SIGNER",
        &signer,
        "handlesUnderThisPrefix",
    );
    let values = vec![HandleValue::new(1, "URL", "https://example.org/m")];
    let claims = value_claims(
        "88.888.1/m",
        &values,
        "300:88.888.1/SIGNER",
        1,
        1,
        4_102_444_800,
        None,
    );
    let sig = Jws::sign_with(&claims, &signer).unwrap();
    let sig = Link {
        claims: sig.claims().unwrap(),
        jws: sig,
    };
    let chain = vec![signer_cert, root_cert];
    assert_eq!(
        verify_chain(&sig, &chain, "88.888.1/m", 1000, &[root.public()]).problem,
        None
    );
    let p = verify_chain(&sig, &chain, "88.888.1/m", 1000, &[signer.public()]).problem;
    assert!(p.unwrap().contains("not a trusted root"));
}
