//! Signed values end to end: records on a node carrying HS_SIGNATURE and HS_CERT values made
//! with the reference's format (codec::trust, golden-tested against the reference library),
//! checked by `suyuan resolve --verify`: a record whose chain ends at the trusted root key
//! verifies value by value; a value changed afterwards, a value added unsigned, and a missing
//! or unknown root are each named, with exit code 1.

mod common;

use common::rest::{curl, reference_like_node};
use common::{BIN, stop};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use suyuan_codec::trust::{Jws, Permission, SignerKey, cert_claims, value_claims};
use suyuan_codec::value::HandleValue;

const NBF: i64 = 1_700_000_000;
const EXP: i64 = 4_102_444_800;

fn put(http: std::net::SocketAddr, handle: &str, index: Option<u32>, body: &str) {
    let q = index.map_or("?overwrite=true".to_string(), |i| format!("?index={i}"));
    let a = curl(&[
        "-u",
        "301%3A12345%2FADMIN:secretpw",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        &format!("https://{http}/api/handles/{handle}{q}"),
        "-d",
        body,
    ]);
    assert!(
        a.status == 200 || a.status == 201,
        "{handle}: {} {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
}

fn value_json(index: u32, t: &str, data: &str) -> String {
    serde_json::json!({"index": index, "type": t, "data": data}).to_string()
}

/// A certificate by `issuer_key` (as `issuer`) granting `subject`'s key `perms`.
fn cert(
    issuer: &str,
    issuer_key: &RsaPrivateKey,
    subject: &str,
    key: &RsaPrivateKey,
    perms: Vec<Permission>,
) -> String {
    let key = SignerKey::Rsa(key.to_public_key());
    let claims = cert_claims(issuer, subject, &key, perms, NBF, NBF, EXP);
    Jws::sign(&claims, issuer_key).unwrap().compact()
}

fn verify(server: std::net::SocketAddr, roots: &[&std::path::Path]) -> (i32, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "resolve",
        "12345/signed",
        "--server",
        &server.to_string(),
        "--verify",
    ]);
    for r in roots {
        cmd.arg("--trust-root").arg(r);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let checks = text
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("FAIL"))
        .collect::<Vec<_>>()
        .join("\n");
    (out.status.code().unwrap_or(-1), checks)
}

#[test]
fn resolve_verify_checks_signed_values_to_a_trusted_root() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let mut rng = rand::thread_rng();
    let root = RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let signer = RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let stranger = RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let pem = |k: &RsaPrivateKey, name: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            k.to_public_key().to_public_key_pem(LineEnding::LF).unwrap(),
        )
        .unwrap();
        p
    };
    let (root_pem, stranger_pem) = (pem(&root, "root.pem"), pem(&stranger, "stranger.pem"));

    // 12345/ROOT signs itself; it certifies 300:12345/SIGNER for the handles under 12345.
    let everything = vec![Permission {
        handle: None,
        perm: "everything".into(),
    }];
    let under = vec![Permission {
        handle: Some("0.NA/12345".into()),
        perm: "handlesUnderThisPrefix".into(),
    }];
    put(
        node.http,
        "12345/ROOT",
        None,
        &format!(
            "[{}]",
            value_json(
                400,
                "HS_CERT",
                &cert("300:12345/ROOT", &root, "300:12345/ROOT", &root, everything)
            )
        ),
    );
    put(
        node.http,
        "12345/SIGNER",
        None,
        &format!(
            "[{}]",
            value_json(
                400,
                "HS_CERT",
                &cert("300:12345/ROOT", &root, "300:12345/SIGNER", &signer, under)
            )
        ),
    );
    let values = vec![
        HandleValue::new(1, "URL", "https://example.org/signed"),
        HandleValue::new(2, "mrv.value", "1234.5"),
    ];
    let claims = value_claims(
        "12345/signed",
        &values,
        "300:12345/SIGNER",
        NBF,
        NBF,
        EXP,
        None,
    );
    let sig = Jws::sign(&claims, &signer).unwrap().compact();
    put(
        node.http,
        "12345/signed",
        None,
        &format!(
            "[{}, {}, {}]",
            value_json(1, "URL", "https://example.org/signed"),
            value_json(2, "mrv.value", "1234.5"),
            value_json(400, "HS_SIGNATURE", &sig)
        ),
    );

    let (code, out) = verify(node.handle, &[&root_pem]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "ok   value 1 (URL): signed by 300:12345/SIGNER (signature 400)\nok   value 2 (mrv.value): signed by 300:12345/SIGNER (signature 400)"
    );

    // Another root key, or none: the chain is not trusted.
    let (code, out) = verify(node.handle, &[&stranger_pem]);
    assert_eq!(code, 1);
    assert!(out.contains("FAIL signature 400 by 300:12345/SIGNER: the chain ends at 300:12345/ROOT, whose key is not a trusted root"), "{out}");
    assert_eq!(verify(node.handle, &[]).0, 1);

    // The figure changed after it was signed, and a value added without a signature.
    put(
        node.http,
        "12345/signed",
        Some(2),
        &format!("[{}]", value_json(2, "mrv.value", "9999")),
    );
    put(
        node.http,
        "12345/signed",
        Some(3),
        &format!("[{}]", value_json(3, "DESC", "added later")),
    );
    let (code, out) = verify(node.handle, &[&root_pem]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "FAIL value 2 (mrv.value): changed since signature 400 by 300:12345/SIGNER signed it\nok   value 1 (URL): signed by 300:12345/SIGNER (signature 400)\nFAIL value 3 (DESC): not signed by a signature that holds"
    );
    stop(node.child);
}

/// `sign_values = true`: the node signs every record it stores, in the write that stores it,
/// as `300:12345/SIGNER` certified by the operator's root key (`signing_root_key`); a record
/// created and then changed over REST verifies each time against the root's public key alone.
#[test]
fn a_signing_node_signs_every_record_it_stores() {
    let dir = tempfile::tempdir().unwrap();
    let root = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let root_key = dir.path().join("root-key.pem");
    std::fs::write(
        &root_key,
        rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&root, LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let root_pub = dir.path().join("root.pem");
    std::fs::write(
        &root_pub,
        root.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let config = dir.path().join("suyuan.toml");
    std::fs::write(
        &config,
        format!(
            "sign_values = true\nsigning_root_key = {:?}\n",
            root_key.display().to_string()
        ),
    )
    .unwrap();
    let node = reference_like_node(dir.path(), &["--config", config.to_str().unwrap()]);
    put(
        node.http,
        "12345/signed",
        None,
        &format!(
            "[{}, {}]",
            value_json(1, "URL", "https://example.org/signed"),
            value_json(2, "mrv.value", "1234.5")
        ),
    );
    let (code, out) = verify(node.handle, &[&root_pub]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "ok   value 1 (URL): signed by 300:12345/SIGNER (signature 400)\nok   value 2 (mrv.value): signed by 300:12345/SIGNER (signature 400)"
    );
    // A change is signed again in the same write; the old signature is gone.
    put(
        node.http,
        "12345/signed",
        Some(2),
        &format!("[{}]", value_json(2, "mrv.value", "1300")),
    );
    let (code, out) = verify(node.handle, &[&root_pub]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 2);
    // Another key as the root: not trusted.
    let (code, _) = verify(node.handle, &[]);
    assert_eq!(code, 1);
    stop(node.child);
}

/// 国密: a node signing with an SM2 key (`signing_key`) under an SM2 root, both made by
/// `suyuan keygen --type sm2`, the root naming itself `300:0.0/0.0` as reference clients
/// require of a root: its records carry SM2256 signatures, its certificates SM2 keys (HS_PUBKEY
/// as IDIS stores them), and `resolve --verify` checks them to the SM2 root.
#[test]
fn a_node_signs_with_sm2_keys() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["root", "signer"] {
        let out = std::process::Command::new(BIN)
            .args(["keygen", "--type", "sm2", "--out"])
            .arg(dir.path().join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = dir.path().join("suyuan.toml");
    std::fs::write(
        &config,
        format!(
            "sign_values = true\nsigning_root_key = {:?}\nsigning_key = {:?}\nsigning_root_identity = \"300:0.0/0.0\"\n",
            dir.path().join("root/admpriv.pem").display().to_string(),
            dir.path().join("signer/admpriv.pem").display().to_string()
        ),
    )
    .unwrap();
    let node = reference_like_node(dir.path(), &["--config", config.to_str().unwrap()]);
    put(
        node.http,
        "12345/signed",
        None,
        &format!("[{}]", value_json(1, "URL", "https://example.org/sm2")),
    );
    let root_pub = dir.path().join("root/admpub.pem");
    let (code, out) = verify(node.handle, &[&root_pub]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "ok   value 1 (URL): signed by 300:12345/SIGNER (signature 400)"
    );
    // The signature is SM2256, the signer's HS_PUBKEY IDIS's SM2 layout.
    let rec = curl(&[&format!(
        "http://{}/api/handles/12345/signed?type=HS_SIGNATURE",
        node.http
    )])
    .json();
    let jws = rec["values"][0]["data"]["value"].as_str().unwrap();
    assert_eq!(Jws::parse(jws).unwrap().alg, "SM2256");
    let out = std::process::Command::new(BIN)
        .args([
            "resolve",
            "12345/SIGNER",
            "--server",
            &node.handle.to_string(),
            "--type",
            "HS_PUBKEY",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("HS_PUBKEY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The signer's own key is not a root.
    assert_eq!(
        verify(node.handle, &[&dir.path().join("signer/admpub.pem")]).0,
        1
    );
    stop(node.child);
}
