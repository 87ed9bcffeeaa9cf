//! REST answers a Handle.Net client tells apart, checked against what the reference server
//! (Handle.Net 9.3.1, prefix 12345, administrator 301:12345/ADMIN with secret `secretpw`)
//! answered the same requests: PUT statuses, the 401 challenges, unknown API paths, sessions
//! and credentials over plain HTTP, `?pretty` and list pages.

use std::net::SocketAddr;

use serde_json::{Value, json};

mod common;
use common::rest::*;

const ADMIN: &str = "301%3A12345%2FADMIN:secretpw";

fn url_value(index: u32, url: &str) -> Value {
    json!({"index": index, "type": "URL", "data": {"format": "string", "value": url}})
}

/// PUT `values` to `https://node/api/handles/{path}` as the administrator.
fn put(http: SocketAddr, path: &str, values: &[Value]) -> Answer {
    let body = json!({ "values": values }).to_string();
    curl(&[
        "-X",
        "PUT",
        &format!("https://{http}/api/handles/{path}"),
        "-u",
        ADMIN,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body,
    ])
}

fn challenges(a: &Answer) -> Vec<&str> {
    a.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The `k="v"` parameter of a challenge.
fn param<'a>(challenge: &'a str, k: &str) -> &'a str {
    let start = challenge
        .find(&format!("{k}=\""))
        .unwrap_or_else(|| panic!("no {k} in {challenge}"))
        + k.len()
        + 2;
    let len = challenge[start..].find('"').unwrap();
    &challenge[start..start + len]
}

/// A node like the reference lab's, holding `12345/test1` as the lab does.
fn node_with_test1(dir: &std::path::Path) -> common::Server {
    let node = reference_like_node(dir, &[]);
    let test1 = put(
        node.http,
        "12345/test1",
        &[url_value(1, "https://example.org/test1")],
    );
    assert_eq!(test1.status, 201);
    node
}

fn stop(mut node: common::Server) {
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

#[test]
fn put_answers_201_when_it_creates_and_200_when_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    let ok = |h: &str| json!({"responseCode": 1, "handle": h});
    let v1 = [url_value(1, "http://x")];
    // The reference server answers: a PUT that creates 201 (no overwrite, or overwrite=true),
    // one that replaces the handle 200, each with {"responseCode":1,"handle":...}.
    for (path, handle) in [
        ("12345/a", "12345/a"),
        ("12345/b?overwrite=true", "12345/b"),
    ] {
        let created = put(http, path, &v1);
        assert_eq!(
            (created.status, created.json()),
            (201, ok(handle)),
            "{path}"
        );
        let replaced = put(http, path, &v1);
        assert_eq!(
            (replaced.status, replaced.json()),
            (200, ok(handle)),
            "{path}"
        );
    }
    // ?index=N: replacing an existing value 200, adding a new one 201, a mix of both 200,
    // and index=various alike.
    for (path, values, status) in [
        ("12345/a?index=1", vec![url_value(1, "http://y")], 200),
        ("12345/a?index=2", vec![url_value(2, "http://z")], 201),
        (
            "12345/a?index=2&index=3",
            vec![url_value(2, "http://z2"), url_value(3, "http://w")],
            200,
        ),
        ("12345/a?index=various", vec![url_value(4, "http://v")], 201),
        (
            "12345/a?index=various",
            vec![url_value(4, "http://v2")],
            200,
        ),
        (
            "12345/a?index=1&overwrite=true",
            vec![url_value(1, "http://u")],
            200,
        ),
    ] {
        let a = put(http, path, &values);
        assert_eq!((a.status, a.json()), (status, ok("12345/a")), "{path}");
    }
    // Without overwrite an existing handle or value is a conflict, as before.
    let again = put(http, "12345/a?overwrite=false", &v1);
    assert_eq!(
        (again.status, again.json()),
        (409, json!({"responseCode": 101, "handle": "12345/a"}))
    );
    let values = curl(&[&format!("http://{http}/api/handles/12345/a")]).json();
    let urls: Vec<&str> = values["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["data"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(urls, ["http://u", "http://z2", "http://w", "http://v2"]);
    stop(node);
}

#[test]
fn protected_operations_over_https_are_challenged_with_basic_and_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    assert_eq!(
        put(http, "12345/kept", &[url_value(1, "http://x")]).status,
        201
    );
    let body = json!({"values": [url_value(1, "http://x")]}).to_string();
    let put_url = format!("https://{http}/api/handles/12345/new");
    let delete_url = format!("https://{http}/api/handles/12345/kept");
    let list_url = format!("https://{http}/api/handles?prefix=12345");
    // The reference server answers each with 401,
    //   WWW-Authenticate: Basic realm="handle"
    //   WWW-Authenticate: Handle sessionId="node0…", nonce="…"
    // and {"responseCode":402,"handle":...}; the session it names exists.
    for (args, handle) in [
        (
            vec![
                "-X",
                "PUT",
                put_url.as_str(),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body.as_str(),
            ],
            "12345/new",
        ),
        (vec!["-X", "DELETE", delete_url.as_str()], "12345/kept"),
        (vec![list_url.as_str()], "12345"),
    ] {
        let a = curl(&args);
        assert_eq!(a.status, 401, "{args:?}");
        let c = challenges(&a);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0], "Basic realm=\"handle\"");
        assert!(c[1].starts_with("Handle sessionId=\""), "{c:?}");
        assert!(!c[1].contains("error="), "{c:?}");
        let (sid, nonce) = (param(c[1], "sessionId"), param(c[1], "nonce"));
        let j = a.json();
        assert_eq!(
            (&j["responseCode"], &j["handle"]),
            (&json!(402), &json!(handle))
        );
        let m = j["message"].as_str().unwrap();
        assert!(m.contains("HTTPS") && m.contains("Basic"), "{m}");
        let this = curl(&[
            &format!("https://{http}/api/sessions/this"),
            "-H",
            &format!("Authorization: Handle sessionId=\"{sid}\""),
        ]);
        assert_eq!(this.status, 200, "{}", String::from_utf8_lossy(&this.body));
        assert_eq!(
            (&this.json()["sessionId"], &this.json()["nonce"]),
            (&json!(sid), &json!(nonce))
        );
    }
    // A failed login: the reference server answers 401 with
    //   WWW-Authenticate: Basic realm="handle"
    //   WWW-Authenticate: Handle sessionId="…", nonce="…", error="Identity not verified"
    // alike for a wrong secret and an identity that does not exist. Our body says how to
    // authenticate, the same words for both.
    let mut bodies = Vec::new();
    for user in [
        "301%3A12345%2FADMIN:wrong",
        "301%3A12345%2FNOBODY:wrong",
        "999%3A12345%2FADMIN:secretpw",
    ] {
        let a = curl(&[
            "-X",
            "PUT",
            &put_url,
            "-u",
            user,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ]);
        assert_eq!(a.status, 401, "{user}");
        let c = challenges(&a);
        assert_eq!(c[0], "Basic realm=\"handle\"");
        assert!(c[1].starts_with("Handle sessionId=\""), "{c:?}");
        assert!(c[1].contains("nonce=\""), "{c:?}");
        assert!(c[1].ends_with(", error=\"Identity not verified\""), "{c:?}");
        bodies.push(a.json());
    }
    let m = bodies[0]["message"].as_str().unwrap();
    assert!(
        m.contains("could not be verified") && m.contains("HTTPS"),
        "{m}"
    );
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    stop(node);
}

#[test]
fn unknown_api_paths_get_the_reference_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    // The reference server answers 404 {"responseCode":4,"message":"Unknown HTTP API endpoint
    // GET /api/"} (its method and path), over HTTP and HTTPS alike.
    for (scheme, method, path) in [
        ("http", "GET", "/api/"),
        ("https", "GET", "/api"),
        ("http", "GET", "/api/x"),
        ("https", "GET", "/api/x/y"),
        ("https", "PUT", "/api/x"),
        ("http", "DELETE", "/api/x"),
    ] {
        let a = curl(&["-X", method, &format!("{scheme}://{http}{path}")]);
        assert_eq!(a.status, 404, "{method} {path}");
        assert_eq!(
            a.header("content-type"),
            Some("application/json;charset=utf-8")
        );
        assert_eq!(
            a.json(),
            json!({"responseCode": 4, "message": format!("Unknown HTTP API endpoint {method} {path}")})
        );
    }
    // An empty handle: 400 {"responseCode":102,"message":"Empty handle invalid"}, as for
    // /api/handles without a prefix.
    for path in ["/api/handles/", "/api/handles"] {
        let a = curl(&[&format!("https://{http}{path}")]);
        assert_eq!(
            (a.status, a.json()),
            (
                400,
                json!({"responseCode": 102, "message": "Empty handle invalid"})
            ),
            "{path}"
        );
    }
    stop(node);
}

#[test]
fn sessions_are_https_only_and_a_new_one_has_a_location() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    // The reference server refuses every session request over plain HTTP with 403 (and an
    // empty body; ours says to use HTTPS).
    for (method, path) in [
        ("POST", "/api/sessions"),
        ("GET", "/api/sessions/this"),
        ("DELETE", "/api/sessions/this"),
        ("GET", "/api/sessions/x"),
    ] {
        let a = curl(&["-X", method, &format!("http://{http}{path}")]);
        assert_eq!(a.status, 403, "{method} {path}");
        let m = a.json()["message"].as_str().unwrap().to_string();
        assert!(m.contains("HTTPS"), "{m}");
    }
    // Over HTTPS: 201 with Location: /api/sessions/this.
    let open = curl(&["-X", "POST", &format!("https://{http}/api/sessions")]);
    assert_eq!(open.status, 201);
    assert_eq!(open.header("location"), Some("/api/sessions/this"));
    let basic = curl(&[
        "-X",
        "POST",
        &format!("https://{http}/api/sessions"),
        "-u",
        ADMIN,
    ]);
    assert_eq!(basic.status, 201);
    assert_eq!(basic.header("location"), Some("/api/sessions/this"));
    assert_eq!(basic.json()["id"], "301:12345/ADMIN");
    // Credentials that fail: the reference server answers 201, Location, and
    // {"sessionId":"…","nonce":"…","error":"Identity not verified"}: a session, unauthenticated.
    let failed = curl(&[
        "-X",
        "POST",
        &format!("https://{http}/api/sessions"),
        "-u",
        "301%3A12345%2FADMIN:wrong",
    ]);
    assert_eq!(failed.status, 201);
    assert_eq!(failed.header("location"), Some("/api/sessions/this"));
    let j = failed.json();
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3, "{j}");
    assert!(
        ["sessionId", "nonce", "error"]
            .iter()
            .all(|k| keys.contains(k)),
        "{j}"
    );
    assert_eq!(j["error"], "Identity not verified");
    stop(node);
}

#[test]
fn an_unknown_session_id_is_offered_a_new_session() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_test1(dir.path());
    let http = node.http;
    let bogus = "Authorization: Handle sessionId=\"bogus123\"";
    let body = json!({"values": [url_value(1, "http://x")]}).to_string();
    let read_url = format!("https://{http}/api/handles/12345/test1");
    let put_url = format!("https://{http}/api/handles/12345/g-bogus");
    // The reference server answers a session id it does not hold, on /api/handles and
    // /api/prefixes, GET or PUT alike, with 401, no Basic challenge, an empty body and
    //   WWW-Authenticate: Handle sessionId="node0…", nonce="…"
    // (a new session). Our body says what happened and how to authenticate.
    for args in [
        vec![read_url.as_str(), "-H", bogus],
        vec![
            "-X",
            "PUT",
            put_url.as_str(),
            "-H",
            bogus,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body.as_str(),
        ],
    ] {
        let a = curl(&args);
        assert_eq!(a.status, 401, "{args:?}");
        let c = challenges(&a);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].starts_with("Handle sessionId=\""), "{c:?}");
        assert!(!c[0].contains("error="), "{c:?}");
        let m = a.json()["message"].as_str().unwrap().to_string();
        assert!(m.contains("not open here"), "{m}");
        // The session offered is real.
        let this = curl(&[
            &format!("https://{http}/api/sessions/this"),
            "-H",
            &format!(
                "Authorization: Handle sessionId=\"{}\"",
                param(c[0], "sessionId")
            ),
        ]);
        assert_eq!(this.status, 200);
    }
    assert_eq!(curl(&[&put_url]).status, 404, "nothing was written");
    // A signature that names no session: 401 with the new session and
    // error="Identity not verified", again without Basic.
    let unsessioned = "Authorization: Handle id=\"300%3A12345%2FADMIN\", type=\"HS_SECKEY\", alg=\"SHA256\", cnonce=\"AAAA\", signature=\"AAAA\"";
    let a = curl(&[read_url.as_str(), "-H", unsessioned]);
    assert_eq!(a.status, 401);
    let c = challenges(&a);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("Handle sessionId=\""), "{c:?}");
    assert!(c[0].ends_with(", error=\"Identity not verified\""), "{c:?}");
    // `Handle version="0"` alone is anonymous: 200 for a public read, and
    // {"authenticated":false} for the session.
    let bare = "Authorization: Handle version=\"0\"";
    assert_eq!(curl(&[read_url.as_str(), "-H", bare]).status, 200);
    let this_url = format!("https://{http}/api/sessions/this");
    let a = curl(&[this_url.as_str(), "-H", bare]);
    assert_eq!((a.status, a.json()), (200, json!({"authenticated": false})));
    // A protected operation with a `Handle` header or a scheme it does not know: the reference
    // server's 401 offers the session alone, no Basic ({"responseCode":402,...} for the
    // former, an empty body for the latter).
    let delete_url = format!("https://{http}/api/handles/12345/test1");
    for auth in [bare, "Authorization: Bearer xyz"] {
        let a = curl(&["-X", "DELETE", delete_url.as_str(), "-H", auth]);
        assert_eq!(a.status, 401, "{auth}");
        let c = challenges(&a);
        assert_eq!(c.len(), 1, "{auth}: {c:?}");
        assert!(c[0].starts_with("Handle sessionId=\""), "{auth}: {c:?}");
    }
    // On /api/sessions/this the reference answers 403 with an empty body, for GET, POST and
    // DELETE with an unknown id or a signature naming no session, and for a DELETE that
    // names no session at all.
    for args in [
        vec![this_url.as_str(), "-H", bogus],
        vec!["-X", "POST", this_url.as_str(), "-H", bogus],
        vec!["-X", "DELETE", this_url.as_str(), "-H", bogus],
        vec!["-X", "POST", this_url.as_str(), "-H", unsessioned],
        vec!["-X", "DELETE", this_url.as_str()],
    ] {
        let a = curl(&args);
        assert_eq!(a.status, 403, "{args:?}");
        assert!(challenges(&a).is_empty(), "{args:?}");
        assert_eq!(a.json()["responseCode"], 402, "{args:?}");
    }
    stop(node);
}

#[test]
fn credentials_over_plain_http_are_told_to_use_https() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    let body = json!({"values": [url_value(1, "http://x")]}).to_string();
    let put_plain = |extra: &[&str]| {
        let url = format!("http://{http}/api/handles/12345/plain");
        let mut args = vec![
            "-X",
            "PUT",
            url.as_str(),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body.as_str(),
        ];
        args.extend_from_slice(extra);
        curl(&args)
    };
    // The reference server answers 403 {"responseCode":402,"handle":"12345/plain"} with or
    // without Basic credentials over plain HTTP: it ignores them there.
    let bare = put_plain(&[]);
    assert_eq!(
        (bare.status, bare.json()),
        (403, json!({"responseCode": 402, "handle": "12345/plain"}))
    );
    for auth in [
        vec!["-u", ADMIN],
        vec!["-H", "Authorization: Handle sessionId=\"x\""],
    ] {
        let with = put_plain(&auth);
        assert_eq!(with.status, 403, "{auth:?}");
        let mut j = with.json();
        let m = j.as_object_mut().unwrap().remove("message").unwrap();
        assert_eq!(j, json!({"responseCode": 402, "handle": "12345/plain"}));
        assert!(m.as_str().unwrap().contains("over HTTPS"), "{m}");
    }
    // Nothing was written.
    let gone = curl(&[&format!("http://{http}/api/handles/12345/plain")]);
    assert_eq!(gone.status, 404);
    stop(node);
}

#[test]
fn bare_pretty_is_pretty_and_unpaged_lists_name_no_page() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    for h in ["12345/a", "12345/b", "12345/c"] {
        assert_eq!(put(http, h, &[url_value(1, "http://x")]).status, 201);
    }
    // The reference server indents for ?pretty, ?pretty=, ?pretty=true and ?pretty=yes (any
    // case), and not for ?pretty=false, ?pretty=1 or ?pretty=on; the first one counts.
    for (query, pretty) in [
        ("pretty", true),
        ("pretty=", true),
        ("pretty=TRUE", true),
        ("pretty=Yes", true),
        ("pretty&pretty=false", true),
        ("pretty=false", false),
        ("pretty=1", false),
        ("pretty=on", false),
        ("pretty=false&pretty", false),
    ] {
        let a = curl(&[&format!("http://{http}/api/handles/12345/a?{query}")]);
        let text = String::from_utf8(a.body).unwrap();
        assert_eq!(
            text.starts_with("{\n  \"responseCode\": 1"),
            pretty,
            "{query}: {text}"
        );
    }
    let list = |query: &str| {
        let a = curl(&[
            &format!("https://{http}/api/handles?prefix=12345{query}"),
            "-u",
            ADMIN,
        ]);
        assert_eq!(a.status, 200, "{query}");
        a.json()
    };
    let all = json!(["12345/a", "12345/ADMIN", "12345/b", "12345/c"]);
    // The reference server answers {"responseCode":1,"prefix":"12345","totalCount":"4",
    // "handles":[...]} unless both page and pageSize are given and neither is negative; then
    // with "page" and "pageSize" (pageSize 0: no handles).
    for query in [
        "",
        "&pageSize=2",
        "&page=1",
        "&page=-1&pageSize=2",
        "&page=0&pageSize=-1",
    ] {
        let j = list(query);
        assert_eq!(
            j,
            json!({"responseCode": 1, "prefix": "12345", "totalCount": "4", "handles": all}),
            "{query}"
        );
    }
    for (query, page, size, handles) in [
        (
            "&page=0&pageSize=2",
            0,
            2,
            json!(["12345/a", "12345/ADMIN"]),
        ),
        ("&page=1&pageSize=3", 1, 3, json!(["12345/c"])),
        ("&page=0&pageSize=0", 0, 0, json!([])),
        ("&page=9&pageSize=2", 9, 2, json!([])),
    ] {
        assert_eq!(
            list(query),
            json!({"responseCode": 1, "prefix": "12345", "totalCount": "4",
                   "page": page, "pageSize": size, "handles": handles}),
            "{query}"
        );
    }
    stop(node);
}

#[test]
fn a_duplicate_index_in_one_write_is_an_index_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    assert_eq!(
        put(http, "12345/a", &[url_value(1, "http://x")]).status,
        201
    );
    let twice = [url_value(5, "http://x"), url_value(5, "http://y")];
    // The reference server answers 409 {"responseCode":201,"message":"Index conflict for 5",
    // "handle":...} whether the PUT creates, replaces or adds values.
    for (path, handle) in [
        ("12345/dup", "12345/dup"),
        ("12345/a", "12345/a"),
        ("12345/a?index=5", "12345/a"),
    ] {
        let a = put(http, path, &twice);
        assert_eq!(
            a.status,
            409,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let j = a.json();
        assert_eq!(
            (&j["responseCode"], &j["handle"]),
            (&json!(201), &json!(handle))
        );
    }
    let untouched = curl(&[&format!("http://{http}/api/handles/12345/a")]).json();
    assert_eq!(untouched["values"].as_array().unwrap().len(), 1);
    stop(node);
}

#[test]
fn methods_a_route_does_not_take_get_the_reference_answers() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_test1(dir.path());
    let http = node.http;
    let base = format!("https://{http}");
    let call = |method: &str, path: &str| curl(&["-X", method, &format!("{base}{path}")]);
    // The reference server answers a POST of a handle as a GET of it (200 and its values),
    // and a POST of /api/handles as a GET of it.
    let get = call("GET", "/api/handles/12345/test1");
    let post = call("POST", "/api/handles/12345/test1");
    assert_eq!((post.status, post.json()), (200, get.json()));
    let post = call("POST", "/api/handles");
    assert_eq!(
        (post.status, post.json()),
        (
            400,
            json!({"responseCode": 102, "message": "Empty handle invalid"})
        )
    );
    // A method its servlets do not know, anywhere under /api but /api/sessions: 501
    // {"responseCode":4,"message":"Unknown method PATCH"} (FOO alike), no Allow.
    for path in [
        "/api/handles/12345/test1",
        "/api/handles",
        "/api/handles/",
        "/api/prefixes",
        "/api/prefixes/12345",
        "/api/sessions/this",
        "/api/",
        "/api/x",
    ] {
        for method in ["PATCH", "FOO"] {
            let a = call(method, path);
            assert_eq!(
                (a.status, a.json()),
                (
                    501,
                    json!({"responseCode": 4, "message": format!("Unknown method {method}")})
                ),
                "{method} {path}"
            );
            assert_eq!(a.header("allow"), None, "{method} {path}");
        }
    }
    // /api/sessions takes POST alone: 405, `Allow: POST, TRACE, OPTIONS`, no body (GET, PUT,
    // DELETE, PATCH alike); /api/prefixes/{prefix} takes no GET: 405 with its own Allow.
    for (method, path, allow) in [
        ("GET", "/api/sessions", "POST, TRACE, OPTIONS"),
        ("PUT", "/api/sessions", "POST, TRACE, OPTIONS"),
        ("DELETE", "/api/sessions", "POST, TRACE, OPTIONS"),
        ("PATCH", "/api/sessions", "POST, TRACE, OPTIONS"),
        ("GET", "/api/prefixes/12345", "POST, DELETE, TRACE, OPTIONS"),
    ] {
        let a = call(method, path);
        assert_eq!(
            (a.status, a.header("allow"), a.body.len()),
            (405, Some(allow), 0),
            "{method} {path}"
        );
    }
    // PUT of /api/prefixes or a prefix: 405 with the unknown-endpoint JSON.
    for path in ["/api/prefixes", "/api/prefixes/12345"] {
        let a = call("PUT", path);
        assert_eq!(
            (a.status, a.json()),
            (
                405,
                json!({"responseCode": 4, "message": format!("Unknown HTTP API endpoint PUT {path}")})
            )
        );
    }
    // POST or DELETE of /api/prefixes without a prefix: 400.
    for (method, what) in [("POST", "homing"), ("DELETE", "unhoming")] {
        let a = call(method, "/api/prefixes");
        assert_eq!(
            (a.status, a.json()),
            (
                400,
                json!({"responseCode": 4, "message": format!("java.lang.Exception: Prefix not specified in {what} request")})
            )
        );
    }
    // PUT of /api/sessions/this is a GET of it: 200 {"authenticated":false}.
    let a = call("PUT", "/api/sessions/this");
    assert_eq!((a.status, a.json()), (200, json!({"authenticated": false})));
    // POST and DELETE of a prefix home and unhome it: the reference server challenges an
    // anonymous caller (401, {"responseCode":402,"handle":"12345"}); a node administrator
    // is served.
    for method in ["POST", "DELETE"] {
        let a = call(method, "/api/prefixes/12345");
        assert_eq!(a.status, 401, "{method}");
        assert_eq!(challenges(&a).len(), 2);
        assert_eq!(
            (&a.json()["responseCode"], &a.json()["handle"]),
            (&json!(402), &json!("12345"))
        );
    }
    let as_admin =
        |method: &str, path: &str| curl(&["-X", method, &format!("{base}{path}"), "-u", ADMIN]);
    let homed = |p: &str| {
        as_admin("GET", "/api/prefixes").json()["prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == p)
    };
    let a = as_admin("POST", "/api/prefixes/12345.g");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(homed("0.NA/12345.g"));
    let a = as_admin("DELETE", "/api/prefixes/12345.g");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(!homed("0.NA/12345.g"));
    stop(node);
}

#[test]
fn a_put_or_delete_without_a_handle_gets_the_reference_answers() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    let body = json!({"values": [url_value(1, "http://x")]}).to_string();
    for path in ["/api/handles/", "/api/handles"] {
        // The reference server answers a PUT there 400 {"responseCode":301,"message":"That
        // prefix doesn't live here"}, with or without credentials, over HTTP or HTTPS; a
        // body that is not JSON gets its JSON error first.
        for scheme in ["http", "https"] {
            for auth in [vec![], vec!["-u", ADMIN]] {
                let url = format!("{scheme}://{http}{path}");
                let mut args = vec![
                    "-X",
                    "PUT",
                    url.as_str(),
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    body.as_str(),
                ];
                args.extend_from_slice(&auth);
                let a = curl(&args);
                assert_eq!(
                    (a.status, a.json()),
                    (
                        400,
                        json!({"responseCode": 301, "message": "That prefix doesn't live here"})
                    ),
                    "{url} {auth:?}"
                );
            }
        }
        let not_json = curl(&[
            "-X",
            "PUT",
            &format!("https://{http}{path}"),
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            &body,
        ]);
        assert_eq!(not_json.status, 400);
        assert_eq!(not_json.json()["responseCode"], 4);
        // DELETE: 401 with both challenges and {"responseCode":402} when anonymous over
        // HTTPS, 403 {"responseCode":402} over HTTP, and 404 {"responseCode":100} for an
        // administrator: there is no such handle.
        let anonymous = curl(&["-X", "DELETE", &format!("https://{http}{path}")]);
        assert_eq!(anonymous.status, 401);
        assert_eq!(challenges(&anonymous).len(), 2);
        assert_eq!(anonymous.json()["responseCode"], 402);
        assert_eq!(anonymous.json().get("handle"), None);
        let plain = curl(&["-X", "DELETE", &format!("http://{http}{path}")]);
        assert_eq!(
            (plain.status, plain.json()),
            (403, json!({"responseCode": 402}))
        );
        let admin = curl(&[
            "-X",
            "DELETE",
            &format!("https://{http}{path}"),
            "-u",
            ADMIN,
        ]);
        assert_eq!(
            (admin.status, admin.json()),
            (404, json!({"responseCode": 100}))
        );
    }
    stop(node);
}

#[test]
fn credentials_that_cannot_be_read_are_challenged_without_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    assert_eq!(
        put(http, "12345/pub", &[url_value(1, "http://x")]).status,
        201
    );
    let url = format!("https://{http}/api/handles/12345/pub");
    let get = |auth: &str| curl(&[url.as_str(), "-H", &format!("Authorization: {auth}")]);
    // The reference answers a public GET with `Authorization: Bearer nothing` with 401 and
    // only a session to sign, no `error` (nothing was verified) ...
    let a = get("Bearer nothing");
    assert_eq!(a.status, 401);
    let c = challenges(&a);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("Handle sessionId=\""), "{c:?}");
    assert!(!c[0].contains("error="), "{c:?}");
    // ... a Basic value that does not decode with Basic and the session, no `error` ...
    let a = get("Basic !!!not-base64");
    assert_eq!(a.status, 401);
    let c = challenges(&a);
    assert_eq!(c[0], "Basic realm=\"handle\"");
    assert!(c[1].starts_with("Handle sessionId=\""), "{c:?}");
    assert!(!c[1].contains("error="), "{c:?}");
    // ... a wrong secret with `error="Identity not verified"` ...
    let a = get("Basic MzAxJTNBMTIzNDUlMkZBRE1JTjp3cm9uZw==");
    assert_eq!(a.status, 401);
    assert_eq!(param(challenges(&a)[1], "error"), "Identity not verified");
    // ... and a client-certificate login without a certificate as an anonymous caller: 200.
    let a = get("Handle clientCert=\"true\"");
    assert_eq!(a.status, 200, "{:?}", a.json());
    stop(node);
}

#[test]
fn a_failed_signature_in_a_session_is_offered_that_session_again() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    let url = format!("https://{http}/api/sessions");
    let opened = curl(&["-X", "POST", url.as_str()]).json();
    let (sid, nonce) = (
        opened["sessionId"].as_str().unwrap().to_string(),
        opened["nonce"].as_str().unwrap().to_string(),
    );
    let auth = format!(
        "Authorization: Handle version=\"0\", sessionId=\"{sid}\", id=\"301:12345/ADMIN\", \
         type=\"HS_SECKEY\", cnonce=\"AAECAwQFBgc=\", signature=\"AAECAwQFBgcICQoLDA0ODxAREhM=\""
    );
    let this = format!("{url}/this");
    // The reference server answers a signature that does not verify, in a session it holds,
    // with 401, `WWW-Authenticate: Handle sessionId=<the same>, nonce=<the same>, error=…`
    // and that session's JSON with the error as the body.
    let a = curl(&["-X", "POST", this.as_str(), "-H", auth.as_str()]);
    assert_eq!(a.status, 401);
    let c = challenges(&a);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(param(c[0], "sessionId"), sid);
    assert_eq!(param(c[0], "nonce"), nonce);
    assert_eq!(param(c[0], "error"), "Identity not verified");
    assert_eq!(
        a.json(),
        json!({"sessionId": sid, "nonce": nonce, "error": "Identity not verified"})
    );
    stop(node);
}

#[test]
fn an_index_that_is_not_a_number_is_a_protocol_error_without_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let node = reference_like_node(dir.path(), &[]);
    let http = node.http;
    assert_eq!(
        put(http, "12345/n", &[url_value(1, "http://x")]).status,
        201
    );
    // The reference server answers GET, PUT and DELETE with `?index=abc` with 400 and
    // {"responseCode":4,"message":"java.lang.NumberFormatException: …"}: no handle member.
    let url = format!("https://{http}/api/handles/12345/n?index=abc");
    for method in ["GET", "PUT", "DELETE"] {
        let a = curl(&[
            "-X",
            method,
            url.as_str(),
            "-u",
            ADMIN,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "{\"values\":[]}",
        ]);
        assert_eq!(a.status, 400, "{method}");
        let j = a.json();
        assert_eq!(j["responseCode"], 4, "{method}: {j}");
        assert!(j.get("handle").is_none(), "{method}: {j}");
    }
    stop(node);
}
