//! The HTTP port's face to browsers and to careless or slow uploads, on real loopback sockets
//! with requests written byte for byte: cross-origin grants, the `GET /{handle}` redirect face,
//! the body cap (413 before the body is read), the body deadline (408, under paused time) and
//! the request-line cap (414). Every expectation is what the reference server answered to the
//! same request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use suyuan_codec::site::{Interface, SiteInfo, interface_protocol, interface_type};
use suyuan_codec::value::{AdminRecord, HandleValue};
use suyuan_registry::{CreateMode, Identity, Mutation, Registry, Write};
use suyuan_resolver::cors::CorsOrigins;
use suyuan_resolver::http::{HttpOptions, serve_http};
use suyuan_resolver::node::{HandleNode, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct Node {
    addr: SocketAddr,
    /// The node's Handle TCP port.
    tcp: SocketAddr,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

const LOC: &str = r#"<locations><location id="0" href="https://a.example/one" weight="0" view="html" /><location id="1" href="https://b.example/two" weight="1" view="json" country="de" /></locations>"#;

/// Prefix 12345 with the handles the reference lab was given for these comparisons.
async fn start(opts: HttpOptions) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(dir.path()).unwrap());
    let w = |mutation| Write {
        mutation,
        actor: "0:SUYUAN/INIT".into(),
        time: 1_795_509_286,
    };
    registry
        .apply(w(Mutation::Home {
            prefix: "12345".into(),
            admins: vec![Identity::new(301, "12345/ADMIN")],
        }))
        .unwrap();
    let admin = HandleValue::new(
        100,
        "HS_ADMIN",
        AdminRecord::new(0x0FFF, "12345/ADMIN", 301).encode(),
    );
    let records: Vec<(&str, Vec<HandleValue>)> = vec![
        (
            "12345/test1",
            vec![
                HandleValue::new(1, "URL", "https://example.org/test1"),
                HandleValue::new(2, "EMAIL", "test@example.org"),
            ],
        ),
        (
            "12345/a2-loc",
            vec![
                HandleValue::new(1, "URL", "https://url.example/u"),
                HandleValue::new(2, "10320/LOC", LOC),
                HandleValue::new(3, "EMAIL", "a@b.c"),
            ],
        ),
        (
            "12345/a2-alias",
            vec![HandleValue::new(1, "HS_ALIAS", "12345/test1")],
        ),
        (
            "12345/a2-nourl",
            vec![
                HandleValue::new(1, "EMAIL", "x@y.z"),
                HandleValue::new(2, "DESC", "<b>hi</b> & bye"),
            ],
        ),
        (
            "12345/a2-sc",
            vec![HandleValue::new(
                1,
                "10320/LOC",
                r#"<locations http_sc="303"><location href_template="https://t.example/{hdl}" /></locations>"#,
            )],
        ),
    ];
    let seckey = HandleValue {
        permissions: suyuan_codec::value::Permissions(0x0C),
        ..HandleValue::new(301, "HS_SECKEY", "secretpw")
    };
    registry
        .apply(w(Mutation::Create {
            handle: "12345/ADMIN".into(),
            values: vec![admin.clone(), seckey],
            mode: CreateMode::Plain,
        }))
        .unwrap();
    for (handle, mut values) in records {
        values.push(admin.clone());
        registry
            .apply(w(Mutation::Create {
                handle: handle.into(),
                values,
                mode: CreateMode::Plain,
            }))
            .unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = tcp_listener.local_addr().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let key = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let site = SiteInfo::single_server(
        1,
        addr.ip(),
        suyuan_codec::auth::hs_from_rsa_public(&key.to_public_key()).encode(),
        vec![Interface {
            kind: interface_type::ADMIN_AND_QUERY,
            protocol: interface_protocol::TCP,
            port: 2641,
        }],
    );
    let node = HandleNode::new(
        registry.clone(),
        NodeConfig {
            site,
            key,
            node_admins: vec![],
            challenges: Default::default(),
            sessions: Default::default(),
            cache_entries: 100,
        },
    );
    let (stop, rx) = watch::channel(false);
    tokio::spawn(suyuan_resolver::tcp::serve_tcp(
        tcp_listener,
        Arc::new(node.clone()),
        suyuan_resolver::Limits::default(),
        suyuan_resolver::ops::Metrics::new(),
        rx.clone(),
    ));
    tokio::spawn(serve_http(listener, registry, node, opts, rx));
    Node {
        addr,
        tcp,
        _stop: stop,
        _dir: dir,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The headers a browser looks at for CORS, in order.
    fn cors(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| k.starts_with("access-control-") || k == "allow" || k == "vary")
            .collect()
    }
}

/// Writes `head` (a request without its final blank line) and `body`, then reads the answer
/// until the server closes (every request says `Connection: close`).
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).await.unwrap();
    read_answer(&mut s).await
}

async fn read_answer(s: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

async fn get(addr: SocketAddr, target: &str, extra: &str) -> Answer {
    send(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: node.example{extra}"),
        b"",
    )
    .await
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const ORIGIN: &str = "\r\nOrigin: https://app.example";

#[tokio::test]
async fn cross_origin_requests_get_the_reference_grants() {
    let node = start(HttpOptions::default()).await;
    let a = node.addr;
    let preflight = |path: &'static str, method: &'static str, headers: &'static str| async move {
        send(
            a,
            &format!(
                "OPTIONS {path} HTTP/1.1\r\nHost: x{ORIGIN}\r\nAccess-Control-Request-Method: {method}\r\nAccess-Control-Request-Headers: {headers}"
            ),
            b"",
        )
        .await
    };
    // The reference server answers this preflight, on every path, with 200 and exactly these.
    let granted = pairs(&[
        ("Access-Control-Allow-Origin", "https://app.example"),
        ("Access-Control-Max-Age", "86400"),
        ("Access-Control-Allow-Methods", "GET,POST,HEAD,PUT,DELETE"),
        (
            "Access-Control-Allow-Headers",
            "X-Requested-With,Authorization,Origin,Accept,Content-Type",
        ),
    ]);
    for path in ["/api/handles/12345/test1", "/12345/test1", "/api/sessions"] {
        let r = preflight(path, "PUT", "authorization,content-type").await;
        assert_eq!(r.status, 200, "{path}");
        let got = r.cors();
        let want: Vec<_> = granted
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        assert_eq!(got, want, "{path}");
        assert_eq!(r.header("content-length"), Some("0"));
    }
    // A method (compared exactly) or a header outside the grants: a bare 200.
    for (m, h) in [("PATCH", ""), ("put", ""), ("PUT", "x-foo")] {
        let r = preflight("/api/handles/12345/test1", m, h).await;
        assert_eq!((r.status, r.cors()), (200, vec![]), "{m} {h}");
    }
    // OPTIONS without a preflight: the servlet's Allow, plus the grants when Origin is sent.
    let options = |path: &'static str, extra: &'static str| async move {
        send(
            a,
            &format!("OPTIONS {path} HTTP/1.1\r\nHost: x{extra}"),
            b"",
        )
        .await
    };
    let r = options("/api/handles/12345/test1", "").await;
    assert_eq!(
        (r.status, r.cors()),
        (
            200,
            pairs(&[("allow", "GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS")])
        )
    );
    let r = options("/api/sessions", ORIGIN).await;
    let mut cors = r.cors();
    cors.iter_mut()
        .for_each(|(k, _)| *k = k.to_ascii_lowercase());
    assert_eq!(
        cors,
        pairs(&[
            ("access-control-allow-origin", "https://app.example"),
            ("vary", "Origin"),
            ("access-control-expose-headers", "Content-Length,Allow"),
            ("allow", "POST, TRACE, OPTIONS"),
        ])
    );
    let r = options("/12345/test1", ORIGIN).await;
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST, TRACE, OPTIONS"));
    assert_eq!(r.header("access-control-expose-headers"), None);

    // Answers to requests with Origin: the grant, Vary, and on /api/ the exposed headers.
    let r = get(a, "/api/handles/12345/test1", ORIGIN).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("Content-Length")
    );
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("vary") && v == "Origin")
    );
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = get(a, "/api/handles/12345/nope", ORIGIN).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    // The redirect face: the grant, no exposed headers.
    let r = get(a, "/12345/test1", ORIGIN).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-expose-headers"), None);
    // No Origin, no grants.
    let r = get(a, "/api/handles/12345/test1", "").await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn listed_cors_origins_are_the_only_ones_granted() {
    let node = start(HttpOptions {
        cors: CorsOrigins::list(vec!["https://app.example".into()]),
        ..HttpOptions::default()
    })
    .await;
    let r = get(node.addr, "/api/handles/12345/test1", ORIGIN).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let r = get(
        node.addr,
        "/api/handles/12345/test1",
        "\r\nOrigin: https://evil.example",
    )
    .await;
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (200, None)
    );
    let r = send(
        node.addr,
        "OPTIONS /api/handles/12345/test1 HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: GET",
        b"",
    )
    .await;
    assert_eq!(
        r.cors(),
        pairs(&[("allow", "GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS")])
    );
}

#[tokio::test]
async fn the_redirect_face_answers_as_the_reference() {
    let node = start(HttpOptions::default()).await;
    let a = node.addr;
    let loc = |r: &Answer| r.header("location").map(str::to_string);
    // The reference server answers 302 to the only location with weight above 0 ...
    let r = get(a, "/12345/a2-loc", "").await;
    assert_eq!(
        (r.status, loc(&r).as_deref()),
        (302, Some("https://b.example/two"))
    );
    assert!(r.header("expires").is_some());
    assert_eq!(
        r.text(),
        "<html><head><title>Handle Redirect</title></head>\n<body><a href=\"https://b.example/two\">https://b.example/two</a></body></html>"
    );
    // ... to the location whose attribute ?locatt= names, whatever its weight; to the draw
    // when none matches or all do ...
    for (q, to) in [
        ("locatt=view:html", "https://a.example/one"),
        ("locatt=view:xml", "https://b.example/two"),
        ("locatt=view", "https://b.example/two"),
        ("urlappend=/x%3Fy", "https://b.example/two/x?y"),
        // ... to the URL value when ?index= keeps only it ...
        ("index=1", "https://url.example/u"),
        ("index=3&index=1", "https://url.example/u"),
        // ... and ignores an index that is not a number.
        ("index=x", "https://b.example/two"),
    ] {
        let r = get(a, &format!("/12345/a2-loc?{q}"), "").await;
        assert_eq!((r.status, loc(&r).as_deref()), (302, Some(to)), "{q}");
    }
    // http_sc and href_template: 303 to "https://t.example/12345%2Fa2-sc".
    let r = get(a, "/12345/a2-sc", "").await;
    assert_eq!(
        (r.status, loc(&r).as_deref()),
        (303, Some("https://t.example/12345%2Fa2-sc"))
    );
    // Over HTTP/1.0 the reference server sends 302 instead.
    let r = send(a, "GET /12345/a2-sc HTTP/1.0\r\nHost: x", b"").await;
    assert_eq!(r.status, 302);
    // HS_ALIAS: 301 to the target's link on this node, the query kept, no body.
    let r = get(a, "/12345/a2-alias?urlappend=/q", "").await;
    assert_eq!(
        (r.status, loc(&r).as_deref()),
        (301, Some("http://node.example/12345/test1?urlappend=/q"))
    );
    assert!(r.header("expires").is_some());
    assert!(r.body.is_empty());
    // The value page: ?noredirect (of the alias' target), a record without a URL, an index
    // that keeps only the EMAIL; all 200 with the values listed.
    for (target, handle, shown, hidden) in [
        (
            "/12345/a2-loc?noredirect",
            "12345/a2-loc",
            vec!["https://url.example/u", "10320/LOC", "a@b.c"],
            vec![],
        ),
        (
            "/12345/a2-alias?noredirect",
            "12345/test1",
            vec!["https://example.org/test1", "test@example.org"],
            vec![],
        ),
        (
            "/12345/a2-nourl",
            "12345/a2-nourl",
            vec!["mailto:x@y.z", "&lt;b&gt;hi&lt;/b&gt; &amp; bye"],
            vec![],
        ),
        (
            "/12345/a2-loc?index=3",
            "12345/a2-loc",
            vec!["a@b.c"],
            vec!["https://url.example/u"],
        ),
        (
            "/12345/a2-alias?ignore_aliases",
            "12345/a2-alias",
            vec!["HS_ALIAS", "12345/test1"],
            vec![],
        ),
    ] {
        let r = get(a, target, "").await;
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.header("location"), None, "{target}");
        assert_eq!(r.header("content-type"), Some("text/html;charset=utf-8"));
        let page = r.text();
        assert!(
            page.contains(&format!("Handle Values for: {handle}")),
            "{target}: {page}"
        );
        for s in shown {
            assert!(page.contains(s), "{target}: {s} in {page}");
        }
        for s in hidden {
            assert!(!page.contains(s), "{target}: {s} in {page}");
        }
    }
    // Values asked for and absent: 200, "No Values Found"; a handle that does not exist: 404.
    for q in ["index=99", "type=FOO"] {
        let r = get(a, &format!("/12345/a2-loc?{q}"), "").await;
        assert_eq!(r.status, 200, "{q}");
        assert!(r.text().contains("No Values Found"), "{q}");
    }
    let r = get(a, "/12345/a2-nope", "").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("Not Found"));
    // action=showurls: the locations as XML, the URL value as the legacy one with weight 0.0.
    let r = get(a, "/12345/a2-loc?action=showurls", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
    let xml = r.text();
    assert!(xml.contains(r#"href="https://a.example/one""#), "{xml}");
    assert!(
        xml.contains(r#"href="https://url.example/u" weight="0.0" mode="legacy""#),
        "{xml}"
    );
}

#[tokio::test]
async fn a_declared_body_over_the_cap_is_refused_before_it_is_read() {
    let node = start(HttpOptions {
        max_body: 4096,
        ..HttpOptions::default()
    })
    .await;
    // Only the headers go out; the answer comes without a byte of the body.
    let r = send(
        node.addr,
        "PUT /api/handles/12345/a2-big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000",
        b"",
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["responseCode"], 4);
    assert!(body["message"].as_str().unwrap().contains("4096"), "{body}");
    // A chunked body that passes the cap on its way is refused too.
    let chunk = "x".repeat(5000);
    let r = send(
        node.addr,
        "PUT /api/handles/12345/a2-big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
        format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_is_cut_off() {
    // The reference server gives up on a body that stops arriving after 30 s (answering 400,
    // RC 4, "Idle timeout expired: 30000/30000 ms"); Suyuan's default deadline is the same
    // 30 s, answered 408.
    let node = start(HttpOptions {
        handshake_timeout: Duration::from_secs(3600),
        ..HttpOptions::default()
    })
    .await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(
        b"PUT /api/handles/12345/a2-slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"values\"",
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(120), read_answer(&mut s))
        .await
        .expect("no answer: the body deadline did not fire");
    assert_eq!(r.status, 408, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["responseCode"], 4);
    // The deadline, not some other timer, ended it.
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(31));
}

#[tokio::test]
async fn a_request_line_over_8_kib_is_answered_414() {
    let node = start(HttpOptions::default()).await;
    // The reference server answers 414 "URI Too Long" once the request line passes 8192
    // bytes, with Jetty's page.
    let long = format!("/12345/{}", "x".repeat(8192));
    let r = get(node.addr, &long, "").await;
    assert_eq!(r.status, 414);
    assert_eq!(
        r.text(),
        "<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>"
    );
    let r = get(node.addr, &format!("/api/handles{long}"), "").await;
    assert_eq!(r.status, 414);
    // Just under the cap: an ordinary answer.
    let r = get(node.addr, &format!("/12345/{}", "x".repeat(8000)), "").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn a_path_whose_escapes_do_not_decode_is_a_bad_request() {
    let node = start(HttpOptions::default()).await;
    // The reference server answers `/api/handles/12345/%zz` and `/12345/%zz` with Jetty's 400
    // page before its servlets see them; a bad escape in the query reaches the API.
    for path in ["/api/handles/12345/%zz", "/12345/%zz", "/12345/test1%4"] {
        let r = get(node.addr, path, "").await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(
            r.text(),
            "<h1>Bad Message 400</h1><pre>reason: Bad Request</pre>",
            "{path}"
        );
    }
    // Good escapes still decode.
    let r = get(node.addr, "/api/handles/12345%2Ftest1", "").await;
    assert_eq!(r.status, 200);
}

/// Runs curl (`-k`: a self-signed certificate) and returns the status and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_rest_stores_the_handle_wire_can_serve() {
    let (cert, key) = suyuan_resolver::tls::generate_self_signed(vec!["localhost".into()]).unwrap();
    let node = start(HttpOptions {
        tls: Some(suyuan_resolver::tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap()),
        ..HttpOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // PUT `{path}` with DESC values of the given lengths at the given indexes.
    let put = |path: &str, values: &[(u32, usize)]| {
        let values: Vec<_> = values
            .iter()
            .map(|(i, len)| {
                serde_json::json!({"index": i, "type": "DESC",
                "data": {"format": "string", "value": "x".repeat(*len)}})
            })
            .collect();
        let body = serde_json::json!({ "values": values });
        let file = dir.path().join("body.json");
        std::fs::write(&file, body.to_string()).unwrap();
        let url = format!("https://{}/api/handles/12345/{path}", node.addr);
        let data = format!("@{}", file.display());
        let args: Vec<String> = [
            "-u",
            "301%3A12345%2FADMIN:secretpw",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &data,
            &url,
        ]
        .map(str::to_string)
        .to_vec();
        async move {
            tokio::task::spawn_blocking(move || {
                curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap()
        }
    };
    // 200,000 bytes of data: stored over REST, and resolved over TCP.
    let (status, body) = put("a2-wide", &[(1, 200_000)]).await;
    assert!((200..=201).contains(&status), "{status} {body}");
    let m = suyuan_codec::Message::request(
        suyuan_codec::message::opcode::RESOLUTION,
        0,
        7,
        1_795_554_056,
        suyuan_codec::message::Body::Resolution {
            handle: "12345/a2-wide".into(),
            indexes: vec![1],
            types: vec![],
        },
    );
    let answers = suyuan_federation::HandleClient::new(node.tcp, suyuan_federation::Transport::Tcp)
        .send_tcp(&m)
        .await
        .unwrap();
    let suyuan_codec::message::Body::ResolutionResponse { values, .. } = &answers[0].body else {
        panic!("{:?}", answers[0].header)
    };
    assert_eq!(values[0].data.len(), 200_000);
    // 300,000 bytes: the reference server stores it (201) and then cannot serve it over TCP
    // (its own client refuses the answer: "Invalid message length: 300084"); Suyuan refuses
    // the value, whose answer could not fit one Handle message.
    let (status, body) = put("a2-wider", &[(1, 300_000)]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("262144"), "{body}");
    // Values that each fit but together make a record whose answer does not: the reference
    // server stores such a record (a PUT of three 100,000-byte values answered 201) and its own
    // client then refuses the answer over TCP ("Invalid message length: 300193"). Suyuan
    // refuses the write, whether the record is made at once or grown by `?index=` adds.
    let (status, body) = put("a2-sum", &[(1, 140_000), (2, 140_000)]).await;
    assert_eq!(status, 400, "{body}");
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["responseCode"], 202, "{body}");
    let msg = j["message"].as_str().unwrap();
    assert!(msg.contains("262144") && msg.contains("bytes"), "{msg}");
    let (status, body) = put("a2-wide?index=2", &[(2, 100_000)]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("262144"), "{body}");
    // What stayed is what was there, and it still resolves over TCP.
    let answers = suyuan_federation::HandleClient::new(node.tcp, suyuan_federation::Transport::Tcp)
        .send_tcp(&m)
        .await
        .unwrap();
    assert_eq!(answers[0].header.response_code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_client_is_served_over_https() {
    let (cert, key) = suyuan_resolver::tls::generate_self_signed(vec!["localhost".into()]).unwrap();
    let node = start(HttpOptions {
        tls: Some(suyuan_resolver::tls::server_config(cert.as_bytes(), key.as_bytes()).unwrap()),
        ..HttpOptions::default()
    })
    .await;
    // `curl -0` offers ALPN http/1.0 alone; the reference server answers it 200 (it agrees on
    // no protocol and serves HTTP/1.1 answers).
    let url = format!("https://{}/api/handles/12345/test1", node.addr);
    let (status, body) = tokio::task::spawn_blocking(move || curl(&["-0", &url]))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["handle"], "12345/test1");
}

#[tokio::test]
async fn answers_given_before_routing_are_counted() {
    let metrics = suyuan_resolver::ops::Metrics::new();
    let node = start(HttpOptions {
        metrics: Some(metrics.clone()),
        ..HttpOptions::default()
    })
    .await;
    let ops = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_addr = ops.local_addr().unwrap();
    let (_stop, rx) = watch::channel(false);
    tokio::spawn(suyuan_resolver::ops::serve_ops(
        ops,
        metrics,
        Arc::new(std::sync::atomic::AtomicBool::new(true)),
        rx,
    ));
    let preflight = send(
        node.addr,
        "OPTIONS /api/handles/12345/test1 HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: PUT",
        b"",
    )
    .await;
    assert_eq!(preflight.status, 200);
    let allow = send(node.addr, "OPTIONS /api/sessions HTTP/1.1\r\nHost: x", b"").await;
    assert_eq!(allow.status, 200);
    let long = get(node.addr, &format!("/12345/{}", "x".repeat(8192)), "").await;
    assert_eq!(long.status, 414);
    let routed = get(node.addr, "/api/handles/12345/test1", "").await;
    assert_eq!(routed.status, 200);
    let text = get(ops_addr, "/metrics", "").await.text();
    for want in [
        r#"suyuan_http_requests_total{method="OPTIONS",route="options",status="200"} 2"#,
        r#"suyuan_http_requests_total{method="GET",route="uri-too-long",status="414"} 1"#,
        r#"suyuan_http_requests_total{method="GET",route="/api/handles/{*handle}",status="200"} 1"#,
        r#"suyuan_http_request_seconds_count{route="options"} 2"#,
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
}

#[tokio::test]
async fn the_front_page_is_a_form_that_resolves_like_the_redirect_face() {
    let node = start(HttpOptions::default()).await;
    let a = node.addr;
    // The reference answers `/` with its query page (200, HTML, a form posting `hdl` to `/`).
    let r = get(a, "/", "").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("<form action=\"/\" method=\"POST\">"));
    assert!(r.text().contains("name=\"hdl\""));
    let post = |body: &'static str| async move {
        let head = format!(
            "POST / HTTP/1.1\r\nHost: node.example\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}",
            body.len()
        );
        send(a, &head, body.as_bytes()).await
    };
    // The reference answers the form as `GET /{hdl}`: 302 to the URL ...
    let r = post("hdl=12345%2Ftest1").await;
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("https://example.org/test1"))
    );
    // ... and the value page with the box "Don't Redirect to URLs" ticked.
    let r = post("hdl=12345/test1&noredirect=").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("test@example.org"), "{}", r.text());
    // An empty form gets the page again.
    let r = post("hdl=").await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("name=\"hdl\""));
}
