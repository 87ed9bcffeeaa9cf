//! A federation in one process, on real loopback sockets: a top, secondaries, sites of two
//! servers, a dead site and two misconfigured tops, walked by the federation client and by a
//! node that recurses. What is checked: the hierarchy is followed as the reference client
//! does, answers are cached by their TTLs (time moved on, not waited for), failures are
//! skipped or named.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::watch;

use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::site::{Interface, ServerInfo, SiteInfo};
use suyuan_codec::value::HandleValue;
use suyuan_federation::{HandleClient, Hops, Transport, WalkError, Walker, WalkerConfig};
use suyuan_registry::{CreateMode, Mutation, Registry, Write};
use suyuan_resolver::budget::BudgetConfig;
use suyuan_resolver::http::{HttpOptions, serve_http};
use suyuan_resolver::listen::bind_handle;
use suyuan_resolver::node::{HandleNode, NodeConfig};
use suyuan_resolver::ops::Metrics;
use suyuan_resolver::{Limits, tcp::serve_tcp, udp::serve_udp};

struct Node {
    addr: SocketAddr,
    /// The node's HTTP port (REST, the redirect face).
    http: SocketAddr,
    site: SiteInfo,
    registry: Arc<Registry>,
    service: Arc<HandleNode>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn key() -> rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap()
    })
    .clone()
}

fn interfaces(port: u16) -> Vec<Interface> {
    Interface::handle_pair(u32::from(port)).to_vec()
}

fn write(registry: &Registry, mutation: Mutation) {
    registry
        .apply(Write {
            mutation,
            actor: "0:SUYUAN/TEST".into(),
            time: 1_795_509_286,
        })
        .unwrap();
}

fn put(node: &Node, handle: &str, values: Vec<HandleValue>) {
    write(
        &node.registry,
        Mutation::Create {
            handle: handle.into(),
            values,
            mode: CreateMode::Plain,
        },
    );
}

fn site_value(index: u32, t: &str, site: &SiteInfo) -> HandleValue {
    HandleValue::new(index, t, site.encode())
}

/// A node homing `prefixes` (`0.NA` makes it a top), optionally walking from `upstream`.
async fn node(prefixes: &[&str], upstream: Option<(Arc<Walker>, bool)>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(dir.path()).unwrap());
    for p in prefixes {
        write(
            &registry,
            Mutation::Home {
                prefix: (*p).into(),
                admins: Vec::new(),
            },
        );
    }
    let key = key();
    let (tcp, udp) = bind_handle("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let site = SiteInfo::single_server(
        1,
        addr.ip(),
        suyuan_codec::auth::hs_from_rsa_public(&key.to_public_key()).encode(),
        interfaces(addr.port()),
    );
    let mut n = HandleNode::new(
        registry.clone(),
        NodeConfig {
            site: site.clone(),
            key,
            node_admins: Vec::new(),
            challenges: Default::default(),
            sessions: Default::default(),
            cache_entries: 100,
        },
    );
    if let Some((w, recursion)) = upstream {
        n = n.with_upstream(w, recursion);
    }
    let (stop, rx) = watch::channel(false);
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_listener.local_addr().unwrap();
    tokio::spawn(serve_http(
        http_listener,
        registry.clone(),
        n.clone(),
        HttpOptions::default(),
        rx.clone(),
    ));
    let n = Arc::new(n);
    let service = n.clone();
    let metrics = Metrics::new();
    tokio::spawn(serve_tcp(
        tcp,
        n.clone(),
        Limits::default(),
        metrics.clone(),
        rx.clone(),
    ));
    tokio::spawn(serve_udp(
        udp,
        n,
        Limits::default(),
        BudgetConfig::default(),
        metrics,
        rx,
    ));
    Node {
        addr,
        http,
        site,
        registry,
        service,
        _stop: stop,
        _dir: dir,
    }
}

/// A site nobody answers at: ports bound for a moment and let go.
async fn dead_site() -> SiteInfo {
    let (tcp, udp) = bind_handle("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    drop((tcp, udp));
    SiteInfo::single_server(1, addr.ip(), Vec::new(), interfaces(addr.port()))
}

fn walker(tops: Vec<SiteInfo>) -> Walker {
    let mut cfg = WalkerConfig::new(tops);
    cfg.links = suyuan_federation::link::udp_then_tcp(Duration::from_secs(2));
    Walker::new(cfg)
}

fn url(values: &[HandleValue]) -> Vec<String> {
    values
        .iter()
        .filter(|v| v.value_type == "URL")
        .map(|v| String::from_utf8_lossy(&v.data).into_owned())
        .collect()
}

fn values(m: &Message) -> Vec<HandleValue> {
    match &m.body {
        Body::ResolutionResponse { values, .. } => values.clone(),
        b => panic!("RC {} {b:?}", m.header.response_code),
    }
}

fn url_value(data: &str, ttl: i32) -> HandleValue {
    HandleValue {
        ttl,
        ..HandleValue::new(1, "URL", data)
    }
}

/// A top with `0.NA/P` → the secondary's site for each secondary given.
async fn top_for(delegations: &[(&str, Vec<HandleValue>)]) -> Node {
    let top = node(&["0.NA"], None).await;
    for (prefix, values) in delegations {
        put(&top, &format!("0.NA/{prefix}"), values.clone());
    }
    top
}

#[tokio::test]
async fn referrals_lead_to_the_secondary_and_its_enterprise_prefix() {
    let sec = node(&["88.888", "88.888.1"], None).await;
    put(
        &sec,
        "88.888/m-1",
        vec![url_value("https://example.org/m-1", 60)],
    );
    put(
        &sec,
        "88.888.1/r-1",
        vec![url_value("https://example.org/r-1", 60)],
    );
    let top = top_for(&[(
        "88.888",
        vec![
            site_value(1, "HS_SITE", &sec.site),
            site_value(2, "HS_SITE.PREFIX", &sec.site),
        ],
    )])
    .await;
    let w = walker(vec![top.site.clone()]);
    let a = w.resolve("88.888/m-1", &[], &[], Hops(0)).await.unwrap();
    assert_eq!(url(&values(&a.message)), ["https://example.org/m-1"]);
    assert_eq!(a.served_by.service, "0.NA/88.888");
    assert_eq!(a.served_by.server, sec.addr);
    assert_eq!(a.round_trips, 1);
    // 0.NA/88.888.1 is not stored at the top: RC 303 to the secondary, which answers it.
    let b = w.resolve("88.888.1/r-1", &[], &[], Hops(0)).await.unwrap();
    assert_eq!(url(&values(&b.message)), ["https://example.org/r-1"]);
    assert_eq!(b.served_by.service, "0.NA/88.888.1");
    // The answer for a handle that does not exist is the secondary's own.
    let c = w.resolve("88.888/none", &[], &[], Hops(0)).await.unwrap();
    assert_eq!(c.message.header.response_code, rc::HANDLE_NOT_FOUND);
    // Nobody delegated 77.1: named as such.
    match w.resolve("77.1/x", &[], &[], Hops(0)).await {
        Err(WalkError::PrefixUnknown { prefix, .. }) => assert_eq!(prefix, "77.1"),
        r => panic!("{r:?}"),
    }
    // Nothing configured: no walk at all.
    match walker(Vec::new())
        .resolve("88.888/m-1", &[], &[], Hops(0))
        .await
    {
        Err(e @ WalkError::NoUpstream { .. }) => {
            assert!(e.to_string().contains("--upstream"), "{e}")
        }
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl_and_evicted_on_demand() {
    let sec = node(&["88.888"], None).await;
    put(
        &sec,
        "88.888/m-1",
        vec![url_value("https://example.org/old", 60)],
    );
    let top = top_for(&[("88.888", vec![site_value(1, "HS_SITE", &sec.site)])]).await;
    let w = walker(vec![top.site.clone()]);
    let first = w.resolve("88.888/m-1", &[], &[], Hops(0)).await.unwrap();
    assert!(!first.cached);
    let change = |data: &str| {
        write(
            &sec.registry,
            Mutation::ModifyValues {
                handle: "88.888/m-1".into(),
                values: vec![url_value(data, 60)],
            },
        )
    };
    change("https://example.org/new");
    // Within the value's 60 s, the cached answer; after them, the new one.
    let again = w.resolve("88.888/m-1", &[], &[], Hops(0)).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.round_trips, 0);
    assert_eq!(url(&values(&again.message)), ["https://example.org/old"]);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(59)).await;
    tokio::time::resume();
    assert!(
        w.resolve("88.888/m-1", &[], &[], Hops(0))
            .await
            .unwrap()
            .cached
    );
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::resume();
    let fresh = w.resolve("88.888/m-1", &[], &[], Hops(0)).await.unwrap();
    assert!(!fresh.cached);
    assert_eq!(url(&values(&fresh.message)), ["https://example.org/new"]);
    // Evicting (as a write through the node does) forgets it at once.
    change("https://example.org/newer");
    w.evict("88.888/M-1");
    let evicted = w.resolve("88.888/m-1", &[], &[], Hops(0)).await.unwrap();
    assert_eq!(
        url(&values(&evicted.message)),
        ["https://example.org/newer"]
    );

    // "Values not found" is cached; "handle not found" is not.
    let t = vec!["EMAIL".to_string()];
    let none = w.resolve("88.888/m-1", &t, &[], Hops(0)).await.unwrap();
    assert_eq!(none.message.header.response_code, rc::VALUES_NOT_FOUND);
    assert!(
        w.resolve("88.888/m-1", &t, &[], Hops(0))
            .await
            .unwrap()
            .cached
    );
    let missing = w.resolve("88.888/m-2", &[], &[], Hops(0)).await.unwrap();
    assert_eq!(missing.message.header.response_code, rc::HANDLE_NOT_FOUND);
    put(
        &sec,
        "88.888/m-2",
        vec![url_value("https://example.org/m-2", 60)],
    );
    let now_there = w.resolve("88.888/m-2", &[], &[], Hops(0)).await.unwrap();
    assert_eq!(
        url(&values(&now_there.message)),
        ["https://example.org/m-2"]
    );
    // A TTL beyond an hour is cut to an hour.
    put(
        &sec,
        "88.888/long",
        vec![url_value("https://example.org/l", 86_400)],
    );
    w.resolve("88.888/long", &[], &[], Hops(0)).await.unwrap();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3601)).await;
    tokio::time::resume();
    assert!(
        !w.resolve("88.888/long", &[], &[], Hops(0))
            .await
            .unwrap()
            .cached
    );
}

#[tokio::test]
async fn a_dead_site_is_skipped_and_a_site_of_two_servers_is_asked_by_the_hash() {
    // Two servers of one site, each holding what the hash gives it.
    let one = node(&["88.777"], None).await;
    let two = node(&["88.777"], None).await;
    let mut site = one.site.clone();
    site.servers.push(ServerInfo {
        server_id: 2,
        ..two.site.servers[0].clone()
    });
    let handles = ["88.777/a", "88.777/b", "88.777/c", "88.777/d"];
    for h in handles {
        let i = site.server_index_for(h).unwrap();
        let holder = if i == 0 { &one } else { &two };
        put(
            holder,
            h,
            vec![url_value(&format!("https://example.org/{h}"), 60)],
        );
    }
    let dead = dead_site().await;
    let top = top_for(&[(
        "88.777",
        vec![
            site_value(1, "HS_SITE", &dead),
            site_value(2, "HS_SITE", &site),
        ],
    )])
    .await;
    // The first configured top is dead too: the second answers.
    let w = walker(vec![dead_site().await, top.site.clone()]);
    for h in handles {
        let a = w.resolve(h, &[], &[], Hops(0)).await.unwrap();
        assert_eq!(
            url(&values(&a.message)),
            [format!("https://example.org/{h}")]
        );
        let i = site.server_index_for(h).unwrap();
        assert_eq!(a.served_by.server, if i == 0 { one.addr } else { two.addr });
    }
    // Every site dead: the error names the service and the last server tried.
    let all_dead = top_for(&[("88.666", vec![site_value(1, "HS_SITE", &dead)])]).await;
    match walker(vec![all_dead.site.clone()])
        .resolve("88.666/x", &[], &[], Hops(0))
        .await
    {
        Err(e @ WalkError::AllSitesDown { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("0.NA/88.666") && m.contains(&dead.servers[0].ip().to_string()),
                "{m}"
            );
        }
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn referrals_in_a_loop_are_cut() {
    // Two tops that each say the other serves prefixes derived from 55.
    let t1 = node(&["0.NA"], None).await;
    let t2 = node(&["0.NA"], None).await;
    put(
        &t1,
        "0.NA/55",
        vec![site_value(1, "HS_SITE.PREFIX", &t2.site)],
    );
    put(
        &t2,
        "0.NA/55",
        vec![site_value(1, "HS_SITE.PREFIX", &t1.site)],
    );
    let w = walker(vec![t1.site.clone()]);
    match w.resolve("55.1/x", &[], &[], Hops(0)).await {
        Err(e @ WalkError::Loop { .. }) => assert!(e.to_string().contains("loop"), "{e}"),
        r => panic!("{r:?}"),
    }
    // HS_SERV values that name each other.
    let t = node(&["0.NA", "0.SERV"], None).await;
    put(
        &t,
        "0.NA/66",
        vec![HandleValue::new(1, "HS_SERV", "0.SERV/a")],
    );
    put(
        &t,
        "0.SERV/a",
        vec![HandleValue::new(1, "HS_SERV", "0.SERV/b")],
    );
    put(
        &t,
        "0.SERV/b",
        vec![HandleValue::new(1, "HS_SERV", "0.SERV/a")],
    );
    match walker(vec![t.site.clone()])
        .resolve("66/x", &[], &[], Hops(0))
        .await
    {
        Err(e @ WalkError::ServiceDepth { .. }) => {
            assert!(e.to_string().contains("0.SERV/A"), "{e}")
        }
        r => panic!("{r:?}"),
    }
}

/// A secondary holding `88.888/m-1`, its top, and two nodes for `99.9` walking from that top:
/// one that allows recursion, one that does not.
async fn recursing_pair() -> [Node; 4] {
    let sec = node(&["88.888"], None).await;
    put(
        &sec,
        "88.888/m-1",
        vec![url_value("https://example.org/m-1", 60)],
    );
    let top = top_for(&[("88.888", vec![site_value(1, "HS_SITE", &sec.site)])]).await;
    let w = Arc::new(walker(vec![top.site.clone()]));
    let open = node(&["99.9"], Some((w.clone(), true))).await;
    let closed = node(&["99.9"], Some((w, false))).await;
    [sec, top, open, closed]
}

#[tokio::test]
async fn a_node_recurses_only_when_asked_and_allowed_and_not_forever() {
    let [_sec, _top, open, closed] = recursing_pair().await;
    let ask = |to: SocketAddr, op_flags: u32, hops: u8| async move {
        let c = HandleClient::new(to, Transport::Udp);
        let mut m = c.resolution("88.888/m-1", &[], &[]);
        m.header.op_flags = op_flags;
        m.header.recursion_count = hops;
        c.send(&m).await.unwrap()
    };
    let rec = flags::REC | flags::CA | flags::PO;
    let answered = ask(open.addr, rec, 0).await;
    assert_eq!(answered.header.response_code, rc::SUCCESS);
    assert_eq!(url(&values(&answered)), ["https://example.org/m-1"]);
    // Another server's values: not authoritative from us.
    assert!(!answered.header.has(flags::AT));
    // Without REC, or where recursion is off: not served here.
    let no_rec = ask(open.addr, flags::CA | flags::PO, 0).await;
    assert_eq!(no_rec.header.response_code, rc::SERVER_NOT_RESP);
    let off = ask(closed.addr, rec, 0).await;
    assert_eq!(off.header.response_code, rc::SERVER_NOT_RESP);
    // A request that went through ten servers already goes no further.
    let deep = ask(open.addr, rec, 10).await;
    assert_eq!(deep.header.response_code, rc::RECURSION_COUNT_TOO_HIGH);
    // Local handles are answered locally, REC or not.
    put(
        &open,
        "99.9/here",
        vec![url_value("https://example.org/here", 60)],
    );
    let c = HandleClient::new(open.addr, Transport::Tcp);
    let local = c.send(&c.resolution("99.9/here", &[], &[])).await.unwrap();
    assert!(local.header.has(flags::AT));
    assert_eq!(opcode::RESOLUTION, local.header.op_code);
}

/// The status line and body of `GET target` at `addr`.
async fn http_get(addr: SocketAddr, target: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

#[tokio::test]
async fn rest_and_the_redirect_face_walk_foreign_handles_only_where_recursion_is_allowed() {
    let [_sec, _top, open, closed] = recursing_pair().await;

    let (status, _, body) = http_get(open.http, "/api/handles/88.888/m-1").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["responseCode"], 1);
    assert_eq!(json["handle"], "88.888/m-1");
    assert_eq!(
        json["values"][0]["data"]["value"],
        "https://example.org/m-1"
    );
    let (status, head, _) = http_get(open.http, "/88.888/m-1").await;
    assert_eq!(status, 302, "{head}");
    assert!(head.contains("https://example.org/m-1"), "{head}");
    // A handle the walk finds nowhere: not found, as a local one would be.
    let (status, _, body) = http_get(open.http, "/api/handles/88.888/none").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, json["responseCode"].as_u64()),
        (404, Some(100)),
        "{body}"
    );

    // Recursion off: not served here, over REST and the redirect face alike.
    let (_, _, body) = http_get(closed.http, "/api/handles/88.888/m-1").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["responseCode"], 301, "{body}");
    let (status, _, _) = http_get(closed.http, "/88.888/m-1").await;
    assert_ne!(status, 302);
}

#[tokio::test]
async fn an_administrator_whose_record_lives_on_another_node_is_verified_there() {
    use suyuan_codec::value::{AdminRecord, Permissions};
    use suyuan_federation::Credentials;
    // The identity 88.888/ADMIN lives on the secondary: a public key at 300, a secret at 301.
    let home = node(&["88.888"], None).await;
    let admin_key = key();
    put(
        &home,
        "88.888/ADMIN",
        vec![
            HandleValue::new(
                300,
                "HS_PUBKEY",
                suyuan_codec::auth::hs_from_rsa_public(&admin_key.to_public_key()).encode(),
            ),
            HandleValue {
                permissions: Permissions(0x0C),
                ..HandleValue::new(301, "HS_SECKEY", "homesecret")
            },
        ],
    );
    let top = top_for(&[("88.888", vec![site_value(1, "HS_SITE", &home.site)])]).await;
    let w = Arc::new(walker(vec![top.site.clone()]));
    // A node for 99.9 whose prefix that identity administers.
    let here = node(&["99.9"], Some((w, false))).await;
    write(
        &here.registry,
        Mutation::Home {
            prefix: "99.9".into(),
            admins: vec![
                suyuan_registry::Identity::new(300, "88.888/ADMIN"),
                suyuan_registry::Identity::new(301, "88.888/ADMIN"),
            ],
        },
    );
    let client = HandleClient::new(here.addr, Transport::Tcp);
    let create = |suffix: &str| {
        let admin = AdminRecord::new(0x0FFF, "88.888/ADMIN", 300);
        client.request(
            opcode::CREATE_HANDLE,
            flags::CA,
            Body::HandleValues {
                handle: format!("99.9/{suffix}"),
                values: vec![
                    HandleValue::new(100, "HS_ADMIN", admin.encode()),
                    url_value("https://example.org/x", 60),
                ],
            },
        )
    };
    let code = |answers: Vec<Message>| answers[0].header.response_code;
    // Its public key, resolved through the hierarchy.
    let by_key = Credentials::PublicKey {
        index: 300,
        handle: "88.888/ADMIN".into(),
        key: Box::new(admin_key),
    };
    let r = client
        .send_authenticated(&create("by-key"), &by_key)
        .await
        .unwrap();
    assert_eq!(code(r), rc::SUCCESS);
    // Its secret, checked by its home (OC 201): right, then wrong.
    let secret = |s: &str| Credentials::Secret {
        index: 301,
        handle: "88.888/ADMIN".into(),
        secret: s.as_bytes().to_vec(),
    };
    let r = client
        .send_authenticated(&create("by-secret"), &secret("homesecret"))
        .await
        .unwrap();
    assert_eq!(code(r), rc::SUCCESS);
    let r = client
        .send_authenticated(&create("wrong"), &secret("guess"))
        .await
        .unwrap();
    assert_eq!(code(r), rc::AUTHENTICATION_FAILED);
    assert!(here.registry.get("99.9/by-secret").unwrap().is_some());
    assert!(here.registry.get("99.9/wrong").unwrap().is_none());
}

/// Node-to-node QUIC: a walker with the federation's certificates reaches a secondary whose
/// site advertises QUIC over QUIC, with the secondary's identity; one whose certificate
/// another CA issued is refused in the handshake and is not answered in clear instead.
#[tokio::test]
async fn a_site_that_advertises_quic_is_walked_over_mutual_tls_and_a_stranger_is_refused() {
    use suyuan_federation::fedtls::{FederationTls, issue_node_cert, make_ca};
    use suyuan_federation::quic::QuicLink;
    let (ca, ca_key) = make_ca("test federation").unwrap();
    let tls = |identity: &str, ca: &str, key: &str| {
        let (cert, k) = issue_node_cert(identity, ca, key).unwrap();
        FederationTls::from_pem(ca.as_bytes(), cert.as_bytes(), k.as_bytes()).unwrap()
    };
    let mut sec = node(&["88.300"], None).await;
    put(
        &sec,
        "88.300/m-1",
        vec![url_value("https://example.org/m", 60)],
    );
    let server_tls = tls("0.NA/88.300", &ca, &ca_key);
    let endpoint =
        suyuan_resolver::quic::endpoint("127.0.0.1:0".parse().unwrap(), &server_tls).unwrap();
    let quic_port = endpoint.local_addr().unwrap().port();
    let metrics = Metrics::new();
    let (_stop_quic, rx) = watch::channel(false);
    tokio::spawn(suyuan_resolver::quic::serve_quic(
        endpoint,
        sec.service.clone(),
        None,
        Limits::default(),
        metrics.clone(),
        rx,
    ));
    sec.site.attributes.push(suyuan_codec::site::SiteAttribute {
        name: suyuan_federation::site::QUIC_ATTRIBUTE.into(),
        value: quic_port.to_string(),
    });
    let top = top_for(&[("88.300", vec![site_value(1, "HS_SITE", &sec.site)])]).await;
    let walker_with = |link: QuicLink| {
        let mut cfg = WalkerConfig::new(vec![top.site.clone()]);
        let mut links: Vec<Arc<dyn suyuan_federation::Link>> = vec![Arc::new(link)];
        links.extend(suyuan_federation::link::udp_then_tcp(Duration::from_secs(
            2,
        )));
        cfg.links = links;
        Walker::new(cfg)
    };
    let bind = "127.0.0.1:0".parse().unwrap();
    let client = QuicLink::new(
        &tls("0.NA/88.301", &ca, &ca_key),
        bind,
        Duration::from_secs(5),
    )
    .unwrap();
    let w = walker_with(client);
    let a = w.resolve("88.300/m-1", &[], &[], Hops(0)).await.unwrap();
    assert_eq!(url(&values(&a.message)), ["https://example.org/m"]);
    assert_eq!(a.served_by.transport, Transport::Quic);
    assert_eq!(a.served_by.server.port(), quic_port);
    // The top advertises no QUIC: it was asked over UDP.
    let accepted = || {
        metrics
            .federation_handshakes
            .with_label_values(&["accepted"])
            .get()
    };
    assert_eq!(accepted(), 1);
    // A node of another CA (that trusts ours, so the refusal is the server's): refused at
    // the handshake, and not asked over UDP or TCP instead.
    let (other, other_key) = make_ca("another federation").unwrap();
    let (cert, k) = issue_node_cert("0.NA/99.9", &other, &other_key).unwrap();
    let both = format!("{ca}{other}");
    let stranger_tls =
        FederationTls::from_pem(both.as_bytes(), cert.as_bytes(), k.as_bytes()).unwrap();
    let stranger = QuicLink::new(&stranger_tls, bind, Duration::from_secs(5)).unwrap();
    match walker_with(stranger)
        .resolve("88.300/m-1", &[], &[], Hops(0))
        .await
    {
        Err(WalkError::AllSitesDown { why, .. }) => {
            assert!(why.contains("federation channel"), "{why}")
        }
        r => panic!("a stranger got {r:?}"),
    }
    let refused = || {
        metrics
            .federation_handshakes
            .with_label_values(&["refused"])
            .get()
    };
    // The server counts its refusal as its side of the handshake ends.
    for _ in 0..100 {
        if refused() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused(), 1);
    assert_eq!(accepted(), 1);
}
