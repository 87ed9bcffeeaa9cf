//! The HTTP port of a node started by `suyuan serve`, driven by real clients: curl for the
//! captured REST exchanges of the reference server (statuses, bodies, redirect, the Handle
//! tunnel), REST sessions signed with HS_PUBKEY and HS_SECKEY, device registration with a
//! client certificate, and pyhandle (from PyPI, in a virtualenv) over HTTPS.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use suyuan_codec::Message;
use suyuan_codec::auth::{PublicKeyAnswer, SecretKeyAnswer, rsa_private_from_pem};
use suyuan_codec::message::{Body, rc};

mod common;
use common::rest::*;
use common::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A captured request: method, path and query, headers, body.
struct Captured {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn captured(name: &str) -> Captured {
    let raw = std::fs::read(format!("{FIXTURES}/rest/{name}.request.http")).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap().split_whitespace();
    let (method, target) = (
        first.next().unwrap().to_string(),
        first.next().unwrap().to_string(),
    );
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| {
            !["host", "content-length", "connection"].contains(&k.to_ascii_lowercase().as_str())
        })
        .collect();
    Captured {
        method,
        target,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn captured_response(name: &str) -> (u16, Option<Value>) {
    let raw = std::fs::read_to_string(format!("{FIXTURES}/rest/{name}.response.json")).unwrap();
    let meta: Value = serde_json::from_str(&raw).unwrap();
    let status = meta["status"].as_u64().unwrap() as u16;
    let body = std::fs::read(format!("{FIXTURES}/rest/{name}.response-body.json"))
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap());
    (status, body)
}

/// Sends a captured request to our node, over HTTPS when it was captured over HTTPS.
fn replay(name: &str, http: std::net::SocketAddr, https: bool, dir: &Path) -> Answer {
    let c = captured(name);
    let body = dir.join(format!("{name}.body"));
    std::fs::write(&body, &c.body).unwrap();
    let url = format!(
        "{}://{http}{}",
        if https { "https" } else { "http" },
        c.target
    );
    let mut args: Vec<String> = vec!["-X".into(), c.method.clone(), url];
    for (k, v) in &c.headers {
        args.push("-H".into());
        args.push(format!("{k}: {v}"));
    }
    if !c.body.is_empty() {
        args.push("--data-binary".into());
        args.push(format!("@{}", body.display()));
    }
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Timestamps depend on when a value was written: compare everything else.
fn without_timestamps(mut v: Value) -> Value {
    if let Some(values) = v.get_mut("values").and_then(Value::as_array_mut) {
        for x in values {
            if let Some(o) = x.as_object_mut() {
                o.remove("timestamp");
            }
        }
    }
    v
}

fn https_of(name: &str) -> bool {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/index.json")).unwrap())
            .unwrap();
    index["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == format!("rest/{name}.request.http"))
        .map(|f| f["transport"] == "https")
        .unwrap()
}

#[test]
fn the_reference_rest_exchanges_get_the_reference_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    // The captures ran against a server holding 12345/test1 with these values.
    let test1 = r#"{"values": [
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {"handle": "12345/ADMIN", "index": 300, "permissions": "111111111111"}}},
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.org/test1"}},
        {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "test@example.org"}}]}"#;
    let put = curl(&[
        "-X",
        "PUT",
        &format!("https://{http}/api/handles/12345/test1"),
        "-u",
        "301%3A12345%2FADMIN:secretpw",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        test1,
    ]);
    assert_eq!(put.status, 201, "{:?}", String::from_utf8_lossy(&put.body));

    // Same status and the same JSON (timestamps aside).
    for name in [
        "01-get-handle",
        "02-get-missing",
        "03-get-type-filter",
        "04-list-prefix-unauth",
        "06-list-prefixes",
        "07-put-create",
        "08-put-create-again",
        "09-put-modify",
        "10-put-add-value",
        "12-delete-value",
        "13-delete-handle",
        "14-get-deleted",
    ] {
        let got = replay(name, http, https_of(name), dir.path());
        let (status, body) = captured_response(name);
        assert_eq!(
            got.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&got.body)
        );
        assert_eq!(
            got.header("content-type"),
            Some("application/json;charset=utf-8"),
            "{name}"
        );
        assert_eq!(
            without_timestamps(got.json()),
            without_timestamps(body.unwrap()),
            "{name}"
        );
        // The reference sends Vary on success only.
        assert_eq!(got.header("vary").is_some(), status < 300, "{name}");
    }

    // Lists: the same shape; Suyuan shows handles as created (the reference: storage keys).
    let list = replay("05-list-prefix-auth", http, true, dir.path());
    assert_eq!(list.status, 200);
    let j = list.json();
    assert_eq!(
        (j["responseCode"].clone(), j["prefix"].clone()),
        (1.into(), "12345".into())
    );
    assert_eq!(j["totalCount"], "2", "{j}");
    assert_eq!(
        j["handles"],
        serde_json::json!(["12345/ADMIN", "12345/test1"])
    );
    let prefixes = replay("06b-list-prefixes-auth", http, true, dir.path());
    let (status, body) = captured_response("06b-list-prefixes-auth");
    assert_eq!((prefixes.status, prefixes.json()), (status, body.unwrap()));

    // Malformed JSON: 400 with responseCode 4 (the message is ours, not Gson's).
    let bad = replay("16-put-bad-json", http, true, dir.path());
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["responseCode"], 4);
    assert!(
        bad.json()["message"].as_str().unwrap().contains("JSON"),
        "{}",
        bad.json()
    );

    // Credentials over plain HTTP: the reference's 403 and body, and a message saying to use
    // HTTPS.
    let plain = replay("15-put-plain-http", http, false, dir.path());
    let (status, body) = captured_response("15-put-plain-http");
    let mut got = plain.json();
    let message = got.as_object_mut().unwrap().remove("message").unwrap();
    assert_eq!((plain.status, got), (status, body.unwrap()));
    assert!(message.as_str().unwrap().contains("HTTPS"), "{message}");

    // A wrong password: 401, WWW-Authenticate for Basic and Handle (the reference sends no
    // body; ours says how to authenticate).
    let wrong = replay("17-put-wrong-password", http, true, dir.path());
    assert_eq!(wrong.status, 401);
    let challenges: Vec<&str> = wrong
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(challenges[0], "Basic realm=\"handle\"");
    assert!(challenges[1].starts_with("Handle "), "{challenges:?}");

    // The browser redirect.
    let redirect = replay("18-redirect", http, false, dir.path());
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.header("location"),
        Some("https://example.org/test1")
    );
    assert!(redirect.header("expires").is_some());
    assert_eq!(
        redirect.body,
        std::fs::read(format!("{FIXTURES}/rest/18-redirect.response-body.html")).unwrap()
    );

    // The Handle tunnel: the captured binary resolution, answered with a Handle message.
    let tunnel = replay("21-native-hdl-over-http", http, false, dir.path());
    assert_eq!(tunnel.status, 200);
    assert_eq!(
        tunnel.header("content-type"),
        Some("application/x-hdl-message")
    );
    let m = Message::decode(&tunnel.body).unwrap();
    assert_eq!(m.header.response_code, rc::SUCCESS);
    let Body::ResolutionResponse { handle, values } = m.body else {
        panic!("{:?}", m.body)
    };
    assert_eq!(handle, "12345/test1");
    assert_eq!(values.len(), 3);

    // Bodies past the limit are refused before they are read whole; outside prefixes get the
    // reference's RC 301 (400).
    let big = dir.path().join("big.json");
    std::fs::write(
        &big,
        vec![b' '; suyuan_resolver::http::DEFAULT_MAX_BODY + 1],
    )
    .unwrap();
    let too_big = curl(&[
        "-X",
        "PUT",
        &format!("https://{http}/api/handles/12345/big"),
        "-u",
        "301%3A12345%2FADMIN:secretpw",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", big.display()),
    ]);
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.json()["responseCode"], 4);
    let outside = curl(&[&format!("http://{http}/api/handles/99999/x")]);
    assert_eq!(outside.status, 400);
    assert_eq!(outside.json()["responseCode"], 301);

    // The trace API shows an admin-read value to an authenticated administrator only.
    let rec = curl(&[
        "-X",
        "PUT",
        &format!("https://{http}/api/handles/12345/sealed"),
        "-u",
        "301%3A12345%2FADMIN:secretpw",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        r#"[{"index": 1, "type": "mrv.kind", "data": "lab-report"},
            {"index": 2, "type": "DESC", "data": "confidential", "permissions": "1100"}]"#,
    ]);
    assert_eq!(rec.status, 201, "{}", String::from_utf8_lossy(&rec.body));
    let seen = |a: &Answer| a.json()["nodes"][0]["values"].as_array().unwrap().len();
    let anonymous = curl(&[&format!("http://{http}/api/trace/12345/sealed")]);
    assert_eq!(seen(&anonymous), 1, "{}", anonymous.json());
    let admin = curl(&[
        &format!("https://{http}/api/trace/12345/sealed"),
        "-u",
        "301%3A12345%2FADMIN:secretpw",
    ]);
    assert_eq!(seen(&admin), 2, "{}", admin.json());

    // Metrics: HTTP requests by route and status, cache lookups, the change log's position.
    let metrics = String::from_utf8(curl(&[&format!("http://{}/metrics", node.ops)]).body).unwrap();
    for want in [
        "suyuan_http_requests_total{method=\"GET\",route=\"/api/handles/{*handle}\",status=\"200\"}",
        "suyuan_http_requests_total{method=\"PUT\",route=\"/api/handles/{*handle}\",status=\"409\"} 1",
        "suyuan_cache_lookups_total{result=\"hit\"}",
        "suyuan_http_request_seconds_bucket{route=\"/api/trace/{*handle}\"",
    ] {
        assert!(metrics.contains(want), "{want} not in\n{metrics}");
    }
    let seq: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("suyuan_change_log_seq "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(seq >= 8, "{seq}");
    let bytes: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("suyuan_store_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(bytes > 0);
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

#[test]
fn rest_sessions_signed_with_hs_pubkey_and_hs_seckey() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = reference_like_node(dir.path(), &[]);
    let base = format!("https://{}", node.http);
    let key = rsa_private_from_pem(
        &std::fs::read_to_string(format!("{FIXTURES}/keys/admin-300.priv.pem")).unwrap(),
    )
    .unwrap();
    let cnonce = [7u8; 16];
    for (id, kind) in [
        ("300:12345/ADMIN", "HS_PUBKEY"),
        ("301:12345/ADMIN", "HS_SECKEY"),
    ] {
        let open = curl(&["-X", "POST", &format!("{base}/api/sessions")]);
        assert_eq!(open.status, 201);
        let j = open.json();
        let sid = j["sessionId"].as_str().unwrap().to_string();
        let nonce = B64.decode(j["nonce"].as_str().unwrap()).unwrap();
        assert_eq!(j.get("authenticated"), None, "{j}");
        let header = if kind == "HS_PUBKEY" {
            let a = PublicKeyAnswer::sign(&key, &nonce, &cnonce, (2, 11)).unwrap();
            format!(
                "Authorization: Handle version=\"0\", sessionId=\"{sid}\", cnonce=\"{}\", id=\"{}\", type=\"HS_PUBKEY\", alg=\"SHA256\", signature=\"{}\"",
                B64.encode(cnonce),
                id.replace(':', "%3A").replace('/', "%2F"),
                B64.encode(&a.signature)
            )
        } else {
            let SecretKeyAnswer::Pbkdf2HmacSha1 {
                salt,
                iterations,
                key_bits,
                mac,
            } = SecretKeyAnswer::pbkdf2(b"secretpw", &nonce, &cnonce, [3u8; 16])
            else {
                panic!()
            };
            format!(
                "Authorization: Handle sessionId=\"{sid}\", cnonce=\"{}\", id=\"{id}\", type=\"HS_SECKEY\", alg=\"PBKDF2-HMAC-SHA1\", signature=\"{}\", salt=\"{}\", iterations=\"{iterations}\", length=\"{key_bits}\"",
                B64.encode(cnonce),
                B64.encode(&mac),
                B64.encode(&salt)
            )
        };
        let this = curl(&[
            "-X",
            "POST",
            &format!("{base}/api/sessions/this"),
            "-H",
            &header,
        ]);
        assert_eq!(
            this.status,
            200,
            "{kind}: {}",
            String::from_utf8_lossy(&this.body)
        );
        assert_eq!(this.json()["authenticated"], true);
        assert_eq!(this.json()["id"], id);
        // The session now authenticates writes by its id alone.
        let by_session = format!("Authorization: Handle version=\"0\", sessionId=\"{sid}\"");
        let created = curl(&[
            "-X",
            "PUT",
            &format!("{base}/api/handles/12345/by-{kind}?overwrite=false"),
            "-H",
            &by_session,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"[{"index": 1, "type": "URL", "data": "https://example.org/s"}]"#,
        ]);
        assert_eq!(
            created.status,
            201,
            "{}",
            String::from_utf8_lossy(&created.body)
        );
        let end = curl(&[
            "-X",
            "DELETE",
            &format!("{base}/api/sessions/this"),
            "-H",
            &by_session,
        ]);
        assert_eq!(end.status, 204);
        let after = curl(&[
            "-X",
            "DELETE",
            &format!("{base}/api/handles/12345/by-{kind}"),
            "-H",
            &by_session,
        ]);
        // An ended session speaks for nobody: the reference server answers a session id it no
        // longer holds 401 with only a new session offered (no Basic challenge).
        assert_eq!(after.status, 401, "an ended session speaks for nobody");
        let offered: Vec<_> = after
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
            .collect();
        assert_eq!(offered.len(), 1, "{offered:?}");
        assert!(offered[0].1.starts_with("Handle sessionId="), "{offered:?}");
    }
    // A signature that does not verify.
    let open = curl(&["-X", "POST", &format!("{base}/api/sessions")]).json();
    let forged = format!(
        "Authorization: Handle sessionId=\"{}\", cnonce=\"AAAA\", id=\"300:12345/ADMIN\", type=\"HS_PUBKEY\", alg=\"SHA256\", signature=\"{}\"",
        open["sessionId"].as_str().unwrap(),
        B64.encode([1u8; 256])
    );
    let refused = curl(&[
        "-X",
        "POST",
        &format!("{base}/api/sessions/this"),
        "-H",
        &forged,
    ]);
    assert_eq!(refused.status, 401);
    // Basic works for /api/sessions/this too, as captured (rest/20).
    let basic = replay("20-get-sessions-this", node.http, true, dir.path());
    let (status, body) = captured_response("20-get-sessions-this");
    assert_eq!((basic.status, basic.json()), (status, body.unwrap()));
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

#[test]
fn rest_client_certificate_authentication() {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut node = reference_like_node(dir.path(), &[]);
    let base = format!("https://{}", node.http);
    // A certificate naming 300:12345/ADMIN, made with the key whose public half is that
    // identity's HS_PUBKEY; and one naming it with another key.
    let cert_for = |key: &KeyPair, name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "300:12345/ADMIN");
        let c = p.self_signed(key).unwrap();
        let (cp, kp) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&cp, c.pem()).unwrap();
        std::fs::write(&kp, key.serialize_pem()).unwrap();
        (cp, kp)
    };
    let admin_key = KeyPair::from_pem(
        &std::fs::read_to_string(format!("{FIXTURES}/keys/admin-300.priv.pem")).unwrap(),
    )
    .unwrap();
    let good = cert_for(&admin_key, "admin");
    let bad = cert_for(&KeyPair::generate().unwrap(), "other");
    let put = |(cert, key): &(PathBuf, PathBuf), handle: &str| {
        curl(&[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-X",
            "PUT",
            &format!("{base}/api/handles/{handle}?overwrite=false"),
            "-H",
            "Authorization: Handle clientCert=\"true\"",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"[{"index": 1, "type": "URL", "data": "https://example.org/c"}]"#,
        ])
    };
    let ok = put(&good, "12345/by-cert");
    assert_eq!(ok.status, 201, "{}", String::from_utf8_lossy(&ok.body));
    let refused = put(&bad, "12345/by-other-cert");
    assert_eq!(refused.status, 401);
    // Removing an index the record does not have: the reference's RC 200, HTTP 400.
    let missing = curl(&[
        "--cert",
        good.0.to_str().unwrap(),
        "--key",
        good.1.to_str().unwrap(),
        "-X",
        "DELETE",
        &format!("{base}/api/handles/12345/by-cert?index=99"),
        "-H",
        "Authorization: Handle clientCert=\"true\"",
    ]);
    assert_eq!(
        (missing.status, missing.json()["responseCode"].clone()),
        (400, 200.into())
    );
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

/// A CA and a device certificate issued by it (PEM files in `dir`).
fn device_pki(dir: &Path, cn: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Plant device CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let dev_key = KeyPair::generate().unwrap();
    let mut dev_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    dev_params.distinguished_name.push(DnType::CommonName, cn);
    let dev = dev_params.signed_by(&dev_key, &ca, &ca_key).unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.join("ca.pem"),
        dir.join(format!("{cn}.pem")),
        dir.join(format!("{cn}.key")),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, dev.pem()).unwrap();
    std::fs::write(&key_pem, dev_key.serialize_pem()).unwrap();
    (ca_pem, cert_pem, key_pem)
}

#[test]
fn a_device_registers_itself_with_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = device_pki(dir.path(), "gw7");
    // A certificate of the same name that no configured CA issued.
    let rogue = tempfile::tempdir().unwrap();
    let (_, rogue_cert, rogue_key) = device_pki(rogue.path(), "gw7");
    let config = dir.path().join("suyuan.toml");
    std::fs::write(
        &config,
        format!(
            "[[devices]]\nca = \"{}\"\nprefix = \"88.888.1\"\nsuffix_pattern = \"meter-{{cn}}*\"\n",
            ca.display()
        ),
    )
    .unwrap();
    let d = dir.path().join("node");
    init(&d);
    let mut node = serve_with(&d, &["--config", config.to_str().unwrap()]);
    let base = format!("https://{}", node.http);
    let body = r#"{"values": [
        {"index": 1, "type": "mrv.kind", "data": "meter"},
        {"index": 2, "type": "mrv.installedOn", "data": "88.888.1/unit-1"}]}"#;
    let register = |handle: &str, cert: &Path, key: &Path, body: &str| {
        curl(&[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-X",
            "PUT",
            &format!("{base}/api/devices/{handle}"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
    };
    let first = register("88.888.1/meter-gw7", &cert, &key, body);
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let again = register("88.888.1/meter-gw7", &cert, &key, body);
    assert_eq!(
        again.status, 200,
        "the same registration again writes nothing"
    );
    let changed = register(
        "88.888.1/meter-gw7",
        &cert,
        &key,
        r#"[{"index": 1, "type": "mrv.kind", "data": "gateway"}]"#,
    );
    assert_eq!(changed.status, 409);
    assert_eq!(changed.json()["responseCode"], 101);
    // Its link is a link: the trace API follows it (to a unit not registered yet).
    let up = curl(&[&format!(
        "http://{}/api/trace/88.888.1/meter-gw7",
        node.http
    )])
    .json();
    assert_eq!(up["dangling"][0]["to"], "88.888.1/unit-1", "{up}");
    assert_eq!(up["dangling"][0]["rel"], "mrv.installedOn", "{up}");
    // Outside its pattern, with a certificate of another issuer, or without TLS: refused.
    let other = register("88.888.1/meter-gw8", &cert, &key, body);
    assert_eq!(other.status, 403);
    let rogue = register("88.888.1/meter-gw7x", &rogue_cert, &rogue_key, body);
    assert_eq!(rogue.status, 403);
    let plain = curl(&[
        "-X",
        "PUT",
        &format!("http://{}/api/devices/88.888.1/meter-gw7", node.http),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
    ]);
    assert_eq!(plain.status, 403);
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

/// The virtualenv with pyhandle: `SUYUAN_PYTHON` if set (CI makes it), else one made here
/// under target/ on first use.
fn pyhandle_python() -> PathBuf {
    if let Ok(p) = std::env::var("SUYUAN_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv failed");
    }
    let ok = Command::new(&python)
        .args(["-m", "pip", "install", "-q", "pyhandle==1.5.0"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "pip install pyhandle failed");
    python
}

#[test]
fn pyhandle_writes_and_reads_over_https_with_a_secret_key() {
    let python = pyhandle_python();
    let dir = tempfile::tempdir().unwrap();
    let mut node = reference_like_node(dir.path(), &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/pyhandle_rest.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("https://{}", node.http))
        .args(["12345", "secretpw"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("pyhandle: all steps passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

/// Replaces every `"timestamp":"..."` by a placeholder: the only part that depends on when.
fn no_times(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\"timestamp\":\"") {
        let start = i + "\"timestamp\":\"".len();
        out.push_str(&rest[..start]);
        out.push('T');
        rest = &rest[start..];
        rest = &rest[rest.find('"').unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_readme_curl_examples_print_what_the_readme_shows() {
    let examples = readme_block("curl-examples");
    assert_eq!(examples.len(), 4, "resolve, create, trace and metrics");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("suyuan-data");
    let mut node = serve_with(&d, &["--demo"]);
    for (cmd, shown) in &examples {
        let cmd = cmd
            .replace("127.0.0.1:8000", &node.http.to_string())
            .replace("127.0.0.1:9641", &node.ops.to_string());
        let got = sh(&cmd, dir.path());
        assert_eq!(no_times(&got), no_times(&shown.join("\n")), "{cmd}");
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}
