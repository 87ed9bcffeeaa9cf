//! The JSON forms against the reference server's REST captures: every value it emitted decodes
//! and re-encodes to the same JSON, every JSON request body it accepted decodes, and JSON and
//! wire forms of the same value agree.

use std::path::PathBuf;

use serde_json::Value as Json;
use suyuan_codec::json::{
    JsonLimits, site_from_json, site_to_json, value_from_json, value_to_json, values_from_json,
};
use suyuan_codec::message::{Body, Message};
use suyuan_codec::site::SiteInfo;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn files(ending: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("rest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(ending))
        .map(|n| format!("rest/{n}"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_emitted_value_round_trips() {
    let lim = JsonLimits::default();
    let mut values = 0;
    for f in files(".response-body.json") {
        let body: Json = serde_json::from_slice(&read(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let Some(list) = body.get("values").and_then(Json::as_array) else {
            continue;
        };
        for v in list {
            let decoded = value_from_json(v, &lim).unwrap_or_else(|e| panic!("{f}: {e}: {v}"));
            // Same members in the same order: compare the serialised text.
            assert_eq!(value_to_json(&decoded).to_string(), v.to_string(), "{f}");
            values += 1;
        }
    }
    assert!(values >= 7, "only {values} values seen");
}

#[test]
fn every_accepted_request_body_decodes() {
    let lim = JsonLimits::default();
    let mut bodies = 0;
    for f in files(".request.http") {
        let raw = String::from_utf8_lossy(&read(&f)).into_owned();
        let Some((head, body)) = raw
            .split_once("\r\n\r\n")
            .or_else(|| raw.split_once("\n\n"))
        else {
            continue;
        };
        if body.trim().is_empty() || !head.contains("application/json") {
            continue;
        }
        // rest/16 is the malformed body the reference refused (400, responseCode 4).
        let result = values_from_json(body, &lim);
        if f.contains("16-put-bad-json") {
            assert!(result.is_err(), "{f}");
        } else {
            let v = result.unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(!v.is_empty(), "{f}");
            bodies += 1;
        }
    }
    assert!(bodies >= 3, "only {bodies} request bodies seen");
}

#[test]
fn json_and_wire_forms_agree() {
    // rest/01 and udp/01 are the same handle resolved over HTTP and over UDP.
    let body: Json =
        serde_json::from_slice(&read("rest/01-get-handle.response-body.json")).unwrap();
    let from_json: Vec<_> = body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| value_from_json(v, &JsonLimits::default()).unwrap())
        .collect();
    let wire = Message::decode(&read("udp/01-resolve-all.resp.bin")).unwrap();
    let Body::ResolutionResponse { values, .. } = wire.body else {
        panic!()
    };
    assert_eq!(from_json, values, "same values, timestamps included");
}

#[test]
fn list_answers_keep_total_count_a_string() {
    for f in [
        "rest/05-list-prefix-auth.response-body.json",
        "rest/06b-list-prefixes-auth.response-body.json",
    ] {
        let body: Json = serde_json::from_slice(&read(f)).unwrap();
        let total = body["totalCount"]
            .as_str()
            .unwrap_or_else(|| panic!("{f}: totalCount not a string"));
        let n: usize = total.parse().unwrap();
        let list = body
            .get("handles")
            .or_else(|| body.get("prefixes"))
            .unwrap();
        assert_eq!(list.as_array().unwrap().len(), n, "{f}");
    }
    let ours =
        suyuan_codec::json::handle_list_to_json("12345", 2, &["12345/a".into(), "12345/b".into()]);
    assert_eq!(ours["totalCount"], "2");
}

#[test]
fn site_json_round_trips_the_published_site() {
    let site = SiteInfo::decode(&read("keys/hs_site.bin")).unwrap();
    let j = site_to_json(&site);
    assert_eq!(j["servers"][0]["address"], "127.0.0.1");
    assert_eq!(j["servers"][0]["publicKey"]["format"], "key");
    assert_eq!(j["servers"][0]["publicKey"]["value"]["kty"], "RSA");
    assert_eq!(j["servers"][0]["interfaces"][0]["protocol"], "TCP");
    assert_eq!(site_from_json(&j, &JsonLimits::default()).unwrap(), site);
}
