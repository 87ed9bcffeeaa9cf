//! Signed values against what the reference library wrote (tests/fixtures/trust/README.md):
//! its signature parses and verifies, Suyuan's signature of the same claims with the same key
//! is the same text byte for byte (RS256 is deterministic), the values' digests match, the
//! reference's certificate chain is built and verified, and changed, missing, unsigned or
//! unauthorized values and untrusted roots are named.

use std::collections::HashMap;

use suyuan_codec::auth::{rsa_private_from_pem, rsa_public_from_pem};
use suyuan_codec::trust::{
    Jws, Link, Lookup, SignerKey, build_chain, check_values, value_claims, verify_chain,
};
use suyuan_codec::value::HandleValue;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/trust/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn values() -> Vec<HandleValue> {
    vec![
        HandleValue::new(1, "URL", "https://example.org/test1"),
        HandleValue::new(2, "EMAIL", "test@example.org"),
    ]
}

fn link(text: &str) -> Link {
    let jws = Jws::parse(text).unwrap();
    let claims = jws.claims().unwrap();
    Link { jws, claims }
}

struct Certs(HashMap<&'static str, Vec<HandleValue>>);

impl Lookup for Certs {
    fn values(&self, handle: &str) -> Option<Vec<HandleValue>> {
        self.0.get(handle).cloned()
    }
}

fn certs() -> Certs {
    let cert = |f: &str| {
        vec![HandleValue::new(
            400,
            "HS_CERT",
            fixture(f).trim().as_bytes(),
        )]
    };
    Certs(HashMap::from([
        ("12345/ADMIN", cert("hs_cert-admin.jws")),
        ("0.NA/12345", cert("hs_cert-prefix.jws")),
        ("0.0/0.0", cert("hs_cert-root.jws")),
    ]))
}

const NOW: i64 = 1_800_000_000;

#[test]
fn the_references_signature_verifies_and_suyuan_writes_the_same_bytes() {
    let text = fixture("hs_signature-rsa.jws");
    let jws = Jws::parse(&text).unwrap();
    assert_eq!(jws.alg, "RS256");
    let key = SignerKey::Rsa(rsa_public_from_pem(&fixture("signer-rsa.spki.pem")).unwrap());
    jws.verify(&key).unwrap();
    let claims = jws.claims().unwrap();
    assert_eq!(claims.sub.as_deref(), Some("12345/test1"));
    assert_eq!(claims.iss.as_deref(), Some("300:12345/ADMIN"));
    let r = check_values(&claims, &values()).unwrap();
    assert_eq!(r.verified, [1, 2]);
    assert!(r.bad_digest.is_empty() && r.unsigned.is_empty() && r.missing.is_empty());

    // The JSON serialisation holds the same signature.
    let json = Jws::parse(&fixture("hs_signature-rsa.jws.json")).unwrap();
    assert_eq!(json.compact(), text.trim());

    // The same claims signed by Suyuan with the same key: the same text.
    let private = rsa_private_from_pem(&fixture("signer-rsa.pkcs8.pem")).unwrap();
    let ours = value_claims(
        "12345/test1",
        &values(),
        "300:12345/ADMIN",
        1_796_417_799,
        1_700_000_000,
        4_102_444_800,
        None,
    );
    assert_eq!(ours, claims);
    assert_eq!(Jws::sign(&ours, &private).unwrap().compact(), text.trim());

    // A changed ttl, a missing value and a new one are each named.
    let mut changed = values();
    changed[0].ttl = 60;
    changed.remove(1);
    changed.push(HandleValue::new(6, "DESC", "added later"));
    let r = check_values(&claims, &changed).unwrap();
    assert_eq!(
        (r.bad_digest, r.missing, r.unsigned),
        (vec![1], vec![2], vec![6])
    );

    // Another key (the root's) does not verify it, nor does a changed signature; DSA is
    // refused by name, not misread.
    let other = link(&fixture("hs_cert-root.jws"))
        .claims
        .public_key
        .unwrap()
        .key()
        .unwrap();
    assert!(jws.verify(&other).is_err());
    let mut forged = jws.clone();
    forged.signature[10] ^= 1;
    assert!(forged.verify(&key).is_err());
    let dsa = Jws::parse(&fixture("hs_signature-dsa.jws")).unwrap();
    assert_eq!(dsa.alg, "DS256");
    assert!(dsa.verify(&key).unwrap_err().to_string().contains("DS256"));
}

#[test]
fn the_references_chain_is_built_and_verified_to_a_trusted_root() {
    let sig = link(&fixture("hs_signature-rsa.jws"));
    let chain = build_chain(&sig, &certs()).unwrap();
    let subs: Vec<_> = chain
        .iter()
        .map(|l| l.claims.sub.clone().unwrap())
        .collect();
    assert_eq!(subs, ["300:12345/ADMIN", "300:0.NA/12345", "300:0.0/0.0"]);
    let root = chain[2].claims.public_key.as_ref().unwrap().key().unwrap();
    let roots = std::slice::from_ref(&root);
    let r = verify_chain(&sig, &chain, "12345/test1", NOW, roots);
    assert_eq!(r.problem, None);

    // The explicit chain of the other vector leads to the same certificates.
    let with = link(&fixture("hs_signature-rsa-with-chain.jws"));
    let chain2 = build_chain(&with, &certs()).unwrap();
    assert_eq!(chain2, chain);
    assert_eq!(
        verify_chain(&with, &chain2, "12345/test1", NOW, roots).problem,
        None
    );

    // No trusted root, a handle the chain does not cover, a date past the signature's.
    let r = verify_chain(&sig, &chain, "12345/test1", NOW, &[]);
    assert!(r.problem.unwrap().contains("not a trusted root"));
    let r = verify_chain(&sig, &chain, "99999/x", NOW, roots);
    assert!(r.problem.unwrap().contains("not authorized for 99999/x"));
    let r = verify_chain(&sig, &chain, "12345/test1", 4_102_444_801, roots);
    assert!(r.problem.unwrap().contains("out of date"));

    // A certificate the lookup does not have is asked for by name.
    let mut partial = certs();
    partial.0.remove("0.NA/12345");
    let e = build_chain(&sig, &partial).unwrap_err();
    assert_eq!(e.to_string(), "cannot build the chain: need 0.NA/12345");
}

#[test]
fn a_record_is_verified_as_a_reference_client_trusts_it() {
    use suyuan_codec::trust::verify_record;
    let sig = HandleValue::new(
        400,
        "HS_SIGNATURE",
        fixture("hs_signature-rsa.jws").trim().as_bytes(),
    );
    let root = link(&fixture("hs_cert-root.jws"))
        .claims
        .public_key
        .unwrap()
        .key()
        .unwrap();
    let mut record = values();
    record.push(sig.clone());
    let f = verify_record(
        "12345/test1",
        &record,
        NOW,
        std::slice::from_ref(&root),
        &certs(),
    )
    .unwrap();
    let lines: Vec<_> = f.iter().map(|f| (f.ok, f.text.as_str())).collect();
    assert_eq!(
        lines,
        [
            (
                true,
                "value 1 (URL): signed by 300:12345/ADMIN (signature 400)"
            ),
            (
                true,
                "value 2 (EMAIL): signed by 300:12345/ADMIN (signature 400)"
            ),
        ]
    );
    // A value changed after signing, and one added without a signature, are named.
    let mut changed = record.clone();
    changed[0].data = b"https://example.org/elsewhere".to_vec();
    changed.push(HandleValue::new(6, "DESC", "added later"));
    let f = verify_record(
        "12345/test1",
        &changed,
        NOW,
        std::slice::from_ref(&root),
        &certs(),
    )
    .unwrap();
    let bad: Vec<_> = f
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.text.as_str())
        .collect();
    assert_eq!(
        bad,
        [
            "value 1 (URL): changed since signature 400 by 300:12345/ADMIN signed it",
            "value 6 (DESC): not signed by a signature that holds",
        ]
    );
    // Without the root key nothing is trusted; for another handle the signature is refused.
    let f = verify_record("12345/test1", &record, NOW, &[], &certs()).unwrap();
    assert!(f.iter().all(|f| !f.ok));
    assert!(f[0].text.contains("not a trusted root"), "{}", f[0].text);
    let f = verify_record("12345/TEST1", &record, NOW, &[root], &certs()).unwrap();
    assert!(
        f[0].text.contains("is for 12345/test1, not 12345/TEST1"),
        "{}",
        f[0].text
    );
}
