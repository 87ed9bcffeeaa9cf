//! The JSON forms against the reference server's captures (tests/fixtures/reference):
//! - every value the REST API emitted decodes and re-encodes to the same JSON, and every body
//!   it emitted is re-emitted byte for byte from its parsed form;
//! - every JSON request body it accepted decodes (and the one it refused is refused), and the
//!   values a PUT sent are the values a later GET returned;
//! - JSON and wire forms of the same values agree (rest/01 against udp/01 and index.json);
//! - every value in every captured wire answer survives a trip through JSON unchanged;
//! - list answers carry `totalCount` as a string; HTTP statuses follow the captures;
//! - the published HS_SITE has a `siteinfo.json` form that reads back to the same site.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value as Json;
use suyuan_codec::json::{
    JsonError, JsonLimits, RestResponse, RestSession, data_to_json, handle_list_to_json,
    http_status, key_to_jwk, prefix_list_to_json, put_body_from_json, site_from_json, site_to_json,
    value_from_json, value_to_json, values_from_json,
};
use suyuan_codec::message::{Body, Message, opcode};
use suyuan_codec::site::SiteInfo;
use suyuan_codec::value::{AdminRecord, HandleValue, PublicKey, admin_perm};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn text(name: &str) -> String {
    String::from_utf8(read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn files(dir: &str, ending: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(ending))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    v.sort();
    v
}

fn index() -> Json {
    serde_json::from_slice(&read("index.json")).unwrap()
}

fn fixture<'a>(index: &'a Json, file: &str) -> &'a Json {
    index["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == file)
        .unwrap_or_else(|| panic!("{file} not in index.json"))
}

/// The request line and the body of a captured HTTP request.
fn request(name: &str) -> (String, String, String) {
    let raw = String::from_utf8_lossy(&read(name)).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .unwrap_or((&raw, ""));
    let line = head.lines().next().unwrap_or("").to_string();
    (line, head.to_string(), body.to_string())
}

fn lim() -> JsonLimits {
    JsonLimits::default()
}

#[test]
fn every_emitted_value_round_trips() {
    let mut values = 0;
    for f in files("rest", ".response-body.json") {
        let body: Json = serde_json::from_slice(&read(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let Some(list) = body.get("values").and_then(Json::as_array) else {
            continue;
        };
        for v in list {
            let decoded = value_from_json(v, &lim()).unwrap_or_else(|e| panic!("{f}: {e}: {v}"));
            let again = value_to_json(&decoded);
            assert_eq!(&again, v, "{f}: equal as JSON");
            // Same members in the same order: the serialised text is identical too.
            assert_eq!(again.to_string(), v.to_string(), "{f}");
            values += 1;
        }
    }
    assert!(values >= 7, "only {values} values seen");
}

#[test]
fn every_emitted_body_is_re_emitted_byte_for_byte() {
    let mut bodies = 0;
    for f in files("rest", ".response-body.json") {
        let original = text(&f);
        let original = original.trim_end();
        let j: Json = serde_json::from_str(original).unwrap();
        let ours = if j.get("responseCode").is_some() {
            RestResponse::from_json_text(original, &lim())
                .unwrap_or_else(|e| panic!("{f}: {e}"))
                .to_json()
        } else {
            RestSession::from_json(&j)
                .unwrap_or_else(|e| panic!("{f}: {e}"))
                .to_json()
        };
        assert_eq!(ours.to_string(), original, "{f}");
        bodies += 1;
    }
    assert!(bodies >= 21, "only {bodies} bodies seen");
}

#[test]
fn every_accepted_request_body_decodes() {
    let mut bodies = 0;
    for f in files("rest", ".request.http") {
        let (_, head, body) = request(&f);
        if body.trim().is_empty() || !head.contains("application/json") {
            continue;
        }
        let result = put_body_from_json(&body, &lim());
        // rest/16 is the malformed body the reference refused (400, responseCode 4).
        if f.contains("16-put-bad-json") {
            assert!(
                matches!(result, Err(JsonError::Syntax(_))),
                "{f}: {result:?}"
            );
            continue;
        }
        let put = result.unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!put.values.is_empty(), "{f}");
        for v in &put.values {
            assert_eq!(
                value_from_json(&value_to_json(v), &lim()).unwrap(),
                *v,
                "{f}"
            );
        }
        bodies += 1;
    }
    assert!(bodies >= 5, "only {bodies} request bodies seen");

    // rest/07's HS_ADMIN is the one the reference stored: all twelve bits, 300:12345/ADMIN.
    let (_, _, body) = request("rest/07-put-create.request.http");
    let v = values_from_json(&body, &lim()).unwrap();
    assert_eq!(
        AdminRecord::decode(&v[0].data).unwrap(),
        AdminRecord::new(admin_perm::ALL, "12345/ADMIN", 300)
    );
}

#[test]
fn what_a_put_sent_is_what_a_get_returned() {
    // rest/09 replaced the record, rest/10 added index 2, rest/11 read it back.
    let (_, _, replace) = request("rest/09-put-modify.request.http");
    let (_, _, add) = request("rest/10-put-add-value.request.http");
    let mut sent: BTreeMap<u32, HandleValue> = BTreeMap::new();
    for v in values_from_json(&replace, &lim())
        .unwrap()
        .into_iter()
        .chain(values_from_json(&add, &lim()).unwrap())
    {
        sent.insert(v.index, v);
    }
    let got = RestResponse::from_json_text(&text("rest/11-get-auth.response-body.json"), &lim())
        .unwrap()
        .values
        .unwrap();
    assert_eq!(got.len(), sent.len());
    for v in &got {
        assert!(v.timestamp != 0, "the server set the timestamp");
        assert!(v.same_content(&sent[&v.index]), "index {}", v.index);
    }
}

#[test]
fn json_and_wire_forms_agree() {
    // rest/01 and udp/01 are the same handle resolved over HTTP and over UDP.
    let from_json =
        RestResponse::from_json_text(&text("rest/01-get-handle.response-body.json"), &lim())
            .unwrap()
            .values
            .unwrap();
    let wire = Message::decode(&read("udp/01-resolve-all.resp.bin")).unwrap();
    let Body::ResolutionResponse { values, .. } = wire.body else {
        panic!("udp/01 is not a resolution answer")
    };
    assert_eq!(from_json, values, "same values, timestamps included");

    // And against the bytes index.json decoded from the capture, HS_ADMIN first of all.
    let index = index();
    let decoded = &fixture(&index, "udp/01-resolve-all.resp.bin")["decoded_body"]["values"];
    let mut checked = 0;
    for d in decoded.as_array().unwrap() {
        let v = from_json
            .iter()
            .find(|v| u64::from(v.index) == d["index"].as_u64().unwrap())
            .expect("same indexes");
        assert_eq!(v.value_type, d["type"].as_str().unwrap());
        assert_eq!(hex::encode(&v.data), d["data_hex"].as_str().unwrap());
        assert_eq!(u64::from(v.timestamp), d["timestamp"].as_u64().unwrap());
        assert_eq!(i64::from(v.ttl), d["ttl"].as_i64().unwrap());
        assert_eq!(
            u64::from(v.permissions.0),
            d["permissions"].as_u64().unwrap()
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
    let admin = from_json
        .iter()
        .find(|v| v.value_type == "HS_ADMIN")
        .unwrap();
    assert_eq!(
        hex::encode(&admin.data),
        "0fff0000000b31323334352f41444d494e0000012c"
    );
}

#[test]
fn every_captured_wire_value_survives_json() {
    let (mut values, mut sites) = (0, 0);
    let mut formats = BTreeMap::new();
    for dir in [
        "udp",
        "tcp",
        "admin/a-genericbatch-pubkey",
        "admin/e-python-nosession",
    ] {
        for f in files(dir, ".bin") {
            let Ok(m) = Message::decode(&read(&f)) else {
                continue;
            };
            let list = match m.body {
                Body::ResolutionResponse { values, .. } => values,
                Body::HandleValues { values, .. } => values,
                Body::SiteInfo(site) => {
                    let back = site_from_json(&site_to_json(&site), &lim()).unwrap();
                    assert_eq!(back, site, "{f}");
                    sites += 1;
                    continue;
                }
                _ => continue,
            };
            for v in list {
                let j = value_to_json(&v);
                let back = value_from_json(&j, &JsonLimits::UNLIMITED)
                    .unwrap_or_else(|e| panic!("{f}: {e}: {j}"));
                assert_eq!(back, v, "{f}: {j}");
                *formats
                    .entry(j["data"]["format"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
                values += 1;
            }
        }
    }
    assert!(values >= 20, "only {values} wire values seen");
    assert!(sites >= 1, "no GET_SITE_INFO answer seen");
    // The captures hold admin records, keys and text: each gets its typed format.
    for f in ["admin", "key", "string"] {
        assert!(formats.contains_key(f), "no {f} value among {formats:?}");
    }
    assert!(!formats.contains_key("base64"), "{formats:?}");
}

#[test]
fn list_answers_keep_total_count_a_string() {
    for f in [
        "rest/05-list-prefix-auth.response-body.json",
        "rest/06b-list-prefixes-auth.response-body.json",
    ] {
        let body = text(f);
        let j: Json = serde_json::from_str(&body).unwrap();
        let total = j["totalCount"]
            .as_str()
            .unwrap_or_else(|| panic!("{f}: totalCount not a string"));
        let r = RestResponse::from_json_text(&body, &lim()).unwrap();
        let n = r.total_count.unwrap();
        assert_eq!(n.to_string(), total);
        let ours = match (&r.prefix, &r.handles, &r.prefixes) {
            (Some(p), Some(h), _) => handle_list_to_json(p, n, h),
            (None, _, Some(p)) => prefix_list_to_json(n, None, p),
            _ => panic!("{f}: neither a handle nor a prefix list"),
        };
        assert_eq!(ours.to_string(), body.trim_end(), "{f}");
        let listed = r.handles.or(r.prefixes).unwrap();
        assert_eq!(listed.len() as u64, n, "{f}");
    }
    let ours = handle_list_to_json("12345", 2, &["12345/a".into(), "12345/b".into()]);
    assert_eq!(ours["totalCount"], "2");
}

#[test]
fn http_statuses_follow_the_captures() {
    let index = index();
    let mut checked = 0;
    for f in files("rest", ".response-body.json") {
        let meta = fixture(&index, &f);
        let Some(code) = meta["json_responseCode"].as_u64() else {
            continue; // sessions: not a handle operation
        };
        let (line, _, _) = request(&f.replace(".response-body.json", ".request.http"));
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let param = |k: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v)
        };
        let op = match (method, path) {
            ("GET", "/api/prefixes") => opcode::LIST_HOMED_NAS,
            ("GET", "/api/handles") => opcode::LIST_HANDLES,
            ("GET", _) => opcode::RESOLUTION,
            ("PUT", _) if param("index").is_some() => opcode::ADD_VALUE,
            ("PUT", _) => opcode::CREATE_HANDLE,
            ("DELETE", _) if param("index").is_some() => opcode::REMOVE_VALUE,
            ("DELETE", _) => opcode::DELETE_HANDLE,
            other => panic!("{f}: {other:?}"),
        };
        let overwrite = param("overwrite").is_none_or(|v| v == "true");
        assert_eq!(
            u64::from(http_status(code as u32, op, overwrite)),
            meta["http_status"].as_u64().unwrap(),
            "{f}: {line}"
        );
        checked += 1;
    }
    assert!(checked >= 17, "only {checked} statuses checked");
}

#[test]
fn site_json_round_trips_the_published_site() {
    let bytes = read("keys/hs_site.bin");
    let site = SiteInfo::decode(&bytes).unwrap();
    let j = site_to_json(&site);
    assert_eq!(j["version"], 1);
    assert_eq!(j["protocolVersion"], "2.11");
    assert_eq!(j["serialNumber"], 1);
    assert_eq!(j["primarySite"], true);
    assert_eq!(j["multiPrimary"], false);
    assert!(j.get("hashOption").is_none(), "BY_ALL is left out");
    assert_eq!(j["attributes"][0]["name"], "desc");
    let server = &j["servers"][0];
    assert_eq!(server["serverId"], 1);
    assert_eq!(server["address"], "127.0.0.1");
    assert_eq!(server["publicKey"]["format"], "key");
    // The JWK is the server key the reference publishes on its own.
    let key = PublicKey::decode(&read("keys/server-1.hs_pubkey.bin")).unwrap();
    assert_eq!(server["publicKey"]["value"], key_to_jwk(&key).unwrap());
    assert_eq!(server["publicKey"]["value"]["kty"], "RSA");
    assert_eq!(server["publicKey"]["value"]["e"], "AQAB");
    let protocols: Vec<&str> = server["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["protocol"].as_str().unwrap())
        .collect();
    assert!(
        protocols.contains(&"TCP") && protocols.contains(&"UDP"),
        "{protocols:?}"
    );
    for i in server["interfaces"].as_array().unwrap() {
        let members: Vec<&String> = i.as_object().unwrap().keys().collect();
        assert_eq!(members, ["query", "admin", "protocol", "port"]);
    }

    // siteinfo.json (pretty-printed as the reference writes it) reads back to the same bytes.
    let file = serde_json::to_string_pretty(&j).unwrap();
    let back = site_from_json(&serde_json::from_str(&file).unwrap(), &lim()).unwrap();
    assert_eq!(back, site);
    assert_eq!(back.encode(), bytes);

    // As HS_SITE value data it is `site` format, and lossless.
    let d = data_to_json("HS_SITE", &bytes);
    assert_eq!(d["format"], "site");
    assert_eq!(d["value"], j);
}
