//! Identifiers of other schemes on a running node: an OID and a GS1 key bound to a meter over
//! REST in any of their spellings are stored in their normal form and reach the meter's trace
//! by any spelling; a wrong check digit is refused at write and at lookup, naming the digit.

mod common;
use common::rest::curl;
use common::*;

#[test]
fn an_oid_and_a_gs1_key_bound_to_a_meter_reach_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve_with(&dir.path().join("d"), &["--demo"]);
    let secret = std::fs::read_to_string(dir.path().join("d/admin-secret")).unwrap();
    let auth = format!("301%3A88.888.1%2FADMIN:{}", secret.trim());
    let put = |body: &str| {
        curl(&[
            "-u",
            &auth,
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            &format!("https://{}/api/handles/88.888.1/meter-oid", node.http),
            "-d",
            body,
        ])
    };
    let a = put(r#"[{"index": 1, "type": "mrv.kind", "data": "meter"},
            {"index": 2, "type": "mrv.installedOn", "data": "88.888.1/unit-1"},
            {"index": 10, "type": "id.oid", "data": "urn:oid:1.2.156.3000.7.1"},
            {"index": 11, "type": "id.gs1", "data": "(8004)0952123MTR-0001"}]"#);
    assert!(
        a.status == 201 || a.status == 200,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let rec = curl(&[&format!(
        "http://{}/api/handles/88.888.1/meter-oid",
        node.http
    )])
    .json();
    let data = |i: u64| {
        rec["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["index"] == i)
            .map(|v| v["data"]["value"].clone())
            .unwrap()
    };
    assert_eq!(data(10), "1.2.156.3000.7.1");
    assert_eq!(data(11), "/8004/0952123MTR-0001");
    for spelling in [
        "urn:oid:1.2.156.3000.7.1",
        "1.2.156.3000.7.1",
        "%288004%290952123MTR-0001",
        "8004/0952123MTR-0001",
    ] {
        let path = if spelling.starts_with("8004") {
            format!("/api/trace//{spelling}")
        } else {
            format!("/api/trace/{spelling}")
        };
        let t = curl(&[&format!("http://{}{path}?depth=1", node.http)]);
        assert_eq!(
            t.status,
            200,
            "{spelling}: {}",
            String::from_utf8_lossy(&t.body)
        );
        let t = t.json();
        assert_eq!(t["root"], "88.888.1/meter-oid", "{spelling}");
        assert_eq!(t["nodes"][1]["handle"], "88.888.1/unit-1", "{spelling}");
        assert_eq!(
            t["nodes"][0]["identifiers"],
            serde_json::json!([
                {"scheme": "oid", "id": "1.2.156.3000.7.1"},
                {"scheme": "gs1", "id": "/8004/0952123MTR-0001"}
            ])
        );
        // REST answers the record the identifier is bound to.
        let r = curl(&[&format!(
            "http://{}/api/handles/{}",
            node.http,
            path.trim_start_matches("/api/trace/")
        )]);
        assert_eq!(
            r.status,
            200,
            "{spelling}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["handle"], "88.888.1/meter-oid");
    }
    let r = curl(&[&format!(
        "http://{}/api/handles/urn:oid:1.2.156.9",
        node.http
    )]);
    assert_eq!(r.status, 404);
    let r = curl(&[&format!(
        "http://{}/api/handles/urn:oid:1.2.0156",
        node.http
    )]);
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("leading zero"));
    // A wrong check digit: refused when bound, and when looked up, naming the right one.
    let a = put(r#"[{"index": 12, "type": "id.gs1", "data": "/01/09521234543214"}]"#);
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert!(
        String::from_utf8_lossy(&a.body).contains("the check digit is 4, it should be 3"),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let t = curl(&[&format!(
        "http://{}/api/trace/%2801%2909521234543214",
        node.http
    )]);
    assert_eq!(t.status, 400);
    assert!(
        String::from_utf8_lossy(&t.body).contains("it should be 3"),
        "{}",
        String::from_utf8_lossy(&t.body)
    );
    stop(node.child);
}

/// An operator's scheme from the config (`[[schemes]]`): its bindings are checked against its
/// patterns and found by their path; a scheme nobody configured is refused.
#[test]
fn an_operators_scheme_from_the_config_binds_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("suyuan.toml");
    std::fs::write(
        &config,
        r#"
[[schemes]]
name = "acme"
[[schemes.types]]
name = "product"
pattern = "[0-9]{5}"
[[schemes.qualifiers]]
name = "batch"
pattern = "[A-Z0-9]{1,10}"
"#,
    )
    .unwrap();
    let node = serve_with(
        &dir.path().join("d"),
        &["--demo", "--config", config.to_str().unwrap()],
    );
    let secret = std::fs::read_to_string(dir.path().join("d/admin-secret")).unwrap();
    let auth = format!("301%3A88.888.1%2FADMIN:{}", secret.trim());
    let put = |suffix: &str, t: &str, data: &str| {
        curl(&[
            "-u",
            &auth,
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            &format!("https://{}/api/handles/88.888.1/{suffix}", node.http),
            "-d",
            &format!(
                r#"[{{"index": 1, "type": "mrv.kind", "data": "unit"}}, {{"index": 10, "type": "{t}", "data": "{data}"}}]"#
            ),
        ])
    };
    let a = put("acme-1", "id.acme", "acme/product/12345/batch/A1B2");
    assert!(
        a.status == 201 || a.status == 200,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let t = curl(&[&format!(
        "http://{}/api/trace//acme/product/12345/batch/A1B2",
        node.http
    )]);
    assert_eq!(t.status, 200, "{}", String::from_utf8_lossy(&t.body));
    let t = t.json();
    assert_eq!(t["root"], "88.888.1/acme-1");
    assert_eq!(
        t["nodes"][0]["identifiers"],
        serde_json::json!([{"scheme": "acme", "id": "/acme/product/12345/batch/A1B2"}])
    );
    let a = put("acme-2", "id.acme", "/acme/product/1234");
    assert_eq!(a.status, 400);
    assert!(
        String::from_utf8_lossy(&a.body).contains("does not match its pattern [0-9]{5}"),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let a = put("acme-3", "id.other", "/other/x/1");
    assert_eq!(a.status, 400);
    assert!(String::from_utf8_lossy(&a.body).contains("no identifier scheme of that name"));
    stop(node.child);
    // A pattern that does not compile stops the node at start, naming it.
    std::fs::write(
        &config,
        "[[schemes]]\nname = \"bad\"\n[[schemes.types]]\nname = \"t\"\npattern = \"(\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("t: pattern"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
