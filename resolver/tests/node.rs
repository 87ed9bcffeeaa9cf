//! The node's Handle service on real loopback sockets, against the requests captured from the
//! reference server and a client of our own doing session-less challenge-response with the
//! fixture keys (the flows of admin/e-python-nosession, with fresh nonces).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rand::SeedableRng;
use tokio::sync::watch;

use suyuan_codec::auth::{SecretKeyAnswer, rsa_private_from_pem, verify_signed_message};
use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::site::{Interface, SiteInfo, interface_protocol, interface_type};
use suyuan_codec::value::{AdminRecord, HandleValue, Permissions};
use suyuan_federation::{Credentials, HandleClient, Transport};
use suyuan_registry::{CreateMode, Identity, Mutation, Registry, Write};
use suyuan_resolver::budget::BudgetConfig;
use suyuan_resolver::challenge::ChallengeConfig;
use suyuan_resolver::listen::bind_handle;
use suyuan_resolver::node::{HandleNode, NodeConfig};
use suyuan_resolver::ops::Metrics;
use suyuan_resolver::session::{SessionClock, SessionConfig};
use suyuan_resolver::{Limits, tcp::serve_tcp, udp::serve_udp};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

struct Node {
    addr: SocketAddr,
    service: Arc<HandleNode>,
    registry: Arc<Registry>,
    server_key: rsa::RsaPublicKey,
    /// The session table's clock, moved on by tests instead of waiting.
    clock: SessionClock,
    metrics: Metrics,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// A node set up like the reference lab: prefix 12345, 12345/ADMIN with HS_ADMIN, the fixture
/// public key at 300 and secret `secretpw` at 301, 12345/test1 with a URL and an EMAIL.
async fn start() -> Node {
    start_with(BudgetConfig::default()).await
}

async fn start_with(budget: BudgetConfig) -> Node {
    start_cfg(budget, ChallengeConfig::default()).await
}

async fn start_cfg(budget: BudgetConfig, challenges: ChallengeConfig) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(dir.path()).unwrap());
    let admins = vec![
        Identity::new(300, "12345/ADMIN"),
        Identity::new(301, "12345/ADMIN"),
    ];
    let w = |mutation| Write {
        mutation,
        actor: "0:SUYUAN/INIT".into(),
        time: 1_795_509_286,
    };
    registry
        .apply(w(Mutation::Home {
            prefix: "12345".into(),
            admins,
        }))
        .unwrap();
    let seckey = HandleValue {
        permissions: Permissions(0x0C),
        ..HandleValue::new(301, "HS_SECKEY", "secretpw")
    };
    let admin_values = vec![
        HandleValue::new(
            100,
            "HS_ADMIN",
            AdminRecord::new(0x0FFF, "12345/ADMIN", 300).encode(),
        ),
        HandleValue::new(300, "HS_PUBKEY", fixture("keys/admin-300.hs_pubkey.bin")),
        seckey,
    ];
    registry
        .apply(w(Mutation::Create {
            handle: "12345/ADMIN".into(),
            values: admin_values,
            mode: CreateMode::Plain,
        }))
        .unwrap();
    let test1 = vec![
        HandleValue::new(
            100,
            "HS_ADMIN",
            AdminRecord::new(0x0FFF, "12345/ADMIN", 300).encode(),
        ),
        HandleValue::new(1, "URL", "https://example.org/test1"),
        HandleValue::new(2, "EMAIL", "test@example.org"),
    ];
    registry
        .apply(w(Mutation::Create {
            handle: "12345/test1".into(),
            values: test1,
            mode: CreateMode::Plain,
        }))
        .unwrap();
    // 12345/fx-big as the reference served it (a 1400-byte DESC: a multi-datagram answer).
    let big = Message::decode(&fixture(
        "udp/15-resolve-big-multipacket.resp.reassembled.bin",
    ))
    .unwrap();
    let Body::ResolutionResponse {
        values: big_values, ..
    } = big.body
    else {
        panic!()
    };
    registry
        .apply(w(Mutation::Create {
            handle: "12345/fx-big".into(),
            values: big_values,
            mode: CreateMode::Plain,
        }))
        .unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let key = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let server_key = key.to_public_key();
    let (tcp, udp) = bind_handle("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let site = SiteInfo::single_server(
        1,
        addr.ip(),
        suyuan_codec::auth::hs_from_rsa_public(&server_key).encode(),
        vec![
            Interface {
                kind: interface_type::ADMIN_AND_QUERY,
                protocol: interface_protocol::TCP,
                port: addr.port() as u32,
            },
            Interface {
                kind: interface_type::QUERY,
                protocol: interface_protocol::UDP,
                port: addr.port() as u32,
            },
        ],
    );
    let clock = SessionClock::manual();
    let node = Arc::new(HandleNode::new(
        registry.clone(),
        NodeConfig {
            site,
            key,
            node_admins: vec![Identity::new(300, "0.NA/12345")],
            challenges,
            sessions: SessionConfig {
                clock,
                ..SessionConfig::default()
            },
            cache_entries: 1000,
        },
    ));
    let (stop, rx) = watch::channel(false);
    let metrics = Metrics::new();
    tokio::spawn(serve_tcp(
        tcp,
        node.clone(),
        Limits::default(),
        metrics.clone(),
        rx.clone(),
    ));
    tokio::spawn(serve_udp(
        udp,
        node.clone(),
        Limits::default(),
        budget,
        metrics.clone(),
        rx,
    ));
    Node {
        addr,
        service: node,
        registry,
        server_key,
        clock,
        metrics,
        _stop: stop,
        _dir: dir,
    }
}

async fn udp(node: &Node, m: &Message) -> Message {
    HandleClient::new(node.addr, Transport::Udp)
        .send(m)
        .await
        .unwrap()
}

async fn tcp(node: &Node, m: &Message) -> Vec<Message> {
    HandleClient::new(node.addr, Transport::Tcp)
        .send_tcp(m)
        .await
        .unwrap()
}

fn request(op: u32, op_flags: u32, body: Body) -> Message {
    Message::request(
        op,
        op_flags,
        rand::random::<u32>() >> 1,
        1_795_554_056,
        body,
    )
}

enum Cred {
    Secret(&'static str),
    PubKey,
}

/// Sends an administrative request, answers the 402 as identity 300 (public key) or 301
/// (secret) with our own client, and returns the final answer.
async fn authenticated(node: &Node, m: &Message, cred: Cred) -> Message {
    let creds = match cred {
        Cred::Secret(s) => Credentials::Secret {
            index: 301,
            handle: "12345/ADMIN".into(),
            secret: s.as_bytes().to_vec(),
        },
        Cred::PubKey => Credentials::PublicKey {
            index: 300,
            handle: "12345/ADMIN".into(),
            key: Box::new(rsa_private_from_pem(&text("keys/admin-300.priv.pem")).unwrap()),
        },
    };
    let out = HandleClient::new(node.addr, Transport::Tcp)
        .send_authenticated(m, &creds)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        out.header.op_code, m.header.op_code,
        "the answer is the original operation's"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_resolutions_get_the_reference_answers() {
    let node = start().await;
    for (file, code) in [
        ("udp/01-resolve-all.req.bin", rc::SUCCESS),
        ("udp/02-resolve-type-url.req.bin", rc::SUCCESS),
        ("udp/03-resolve-index-2.req.bin", rc::SUCCESS),
        ("udp/04-resolve-rd-v2.11.req.bin", rc::SUCCESS),
        ("udp/05-resolve-rd-v2.1.req.bin", rc::SUCCESS),
        ("udp/07-resolve-v2.1.req.bin", rc::SUCCESS),
        ("udp/08-resolve-v2.15.req.bin", rc::SUCCESS),
        ("udp/09-resolve-nonexistent.req.bin", rc::HANDLE_NOT_FOUND),
        ("udp/10-resolve-not-homed.req.bin", rc::SERVER_NOT_RESP),
        ("udp/12-get-site-info.req.bin", rc::SUCCESS),
        ("udp/13-resolve-admin-public.req.bin", rc::SUCCESS),
        (
            "udp/14-resolve-admin-no-po.req.bin",
            rc::AUTHENTICATION_NEEDED,
        ),
        ("udp/16-resolve-uppercase.req.bin", rc::SUCCESS),
        ("udp/17-resolve-types-and-index.req.bin", rc::SUCCESS),
        (
            "udp/18-resolve-no-matching-values.req.bin",
            rc::VALUES_NOT_FOUND,
        ),
    ] {
        let req = Message::decode(&fixture(file)).unwrap();
        let ours = udp(&node, &req).await;
        assert_eq!(ours.header.response_code, code, "{file}: {:?}", ours.body);
        let theirs = Message::decode(&fixture(&file.replace(".req.", ".resp."))).unwrap();
        assert_eq!(
            ours.header.response_code, theirs.header.response_code,
            "{file}"
        );
        assert_eq!(
            ours.envelope.version(),
            theirs.envelope.version(),
            "{file}: version"
        );
        assert_eq!(
            ours.request_digest.as_ref().map(|d| d.alg),
            theirs.request_digest.as_ref().map(|d| d.alg),
            "{file}: digest"
        );
        match (&ours.body, &theirs.body) {
            (
                Body::ResolutionResponse {
                    handle: a,
                    values: va,
                },
                Body::ResolutionResponse {
                    handle: b,
                    values: vb,
                },
            ) => {
                assert_eq!(a, b, "{file}: handle spelled as requested");
                let strip = |v: &[HandleValue]| {
                    v.iter()
                        .map(|x| (x.index, x.value_type.clone(), x.data.clone(), x.permissions))
                        .collect::<Vec<_>>()
                };
                assert_eq!(strip(va), strip(vb), "{file}: same values");
            }
            // RC 301 keeps the reference's words and adds which prefix is not served.
            (Body::Error { message: Some(a) }, Body::Error { message: Some(b) })
                if code == rc::SERVER_NOT_RESP =>
            {
                assert!(a.starts_with(b.as_str()), "{file}: {a:?} after {b:?}")
            }
            (Body::Error { message: a }, Body::Error { message: b }) => {
                assert_eq!(a, b, "{file}: same message")
            }
            (Body::Challenge { nonce }, Body::Challenge { .. }) => assert_eq!(nonce.len(), 16),
            (Body::SiteInfo(s), Body::SiteInfo(_)) => assert_eq!(s.servers[0].ip(), node.addr.ip()),
            (a, b) => panic!("{file}: {a:?} vs {b:?}"),
        }
        // Without signing asked for, the byte-identical parts of the reference answer match.
        if code == rc::SUCCESS && file.contains("resolve") {
            assert_eq!(
                ours.header.op_flags, theirs.header.op_flags,
                "{file}: op flags"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrative_requests_are_challenged_and_udp_is_query_only() {
    let node = start().await;
    let create = request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: "12345/x".into(),
            values: vec![HandleValue::new(1, "URL", "https://x")],
        },
    );
    let over_udp = udp(&node, &create).await;
    assert_eq!(over_udp.header.response_code, rc::PROTOCOL_ERROR);
    let challenge = tcp(&node, &create).await.remove(0);
    assert_eq!(challenge.header.response_code, rc::AUTHENTICATION_NEEDED);
    assert_ne!(challenge.envelope.session_id, 0);
    assert!(challenge.header.has(flags::RD) && !challenge.header.has(flags::PO));
    assert!(node.registry.get("12345/x").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_and_public_key_flows_write_through_every_opcode() {
    let node = start().await;
    let h = "12345/fx-py";
    let create = request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: h.into(),
            values: vec![
                HandleValue::new(
                    100,
                    "HS_ADMIN",
                    AdminRecord::new(0x0FFF, "12345/ADMIN", 300).encode(),
                ),
                HandleValue::new(1, "URL", "https://example.org/fx-py"),
            ],
        },
    );
    let out = authenticated(&node, &create, Cred::PubKey).await;
    assert_eq!(out.header.response_code, rc::SUCCESS, "{:?}", out.body);
    assert_eq!(
        out.body,
        Body::Created {
            handle: Some(h.into())
        },
        "the reference names the created handle"
    );
    // Again: RC 101, as every Handle client expects.
    let again = authenticated(&node, &create, Cred::Secret("secretpw")).await;
    assert_eq!(again.header.response_code, rc::HANDLE_ALREADY_EXISTS);

    let add = request(
        opcode::ADD_VALUE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: h.into(),
            values: vec![HandleValue::new(2, "EMAIL", "fx@example.org")],
        },
    );
    assert_eq!(
        authenticated(&node, &add, Cred::Secret("secretpw"))
            .await
            .header
            .response_code,
        rc::SUCCESS
    );
    let modify = request(
        opcode::MODIFY_VALUE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: h.into(),
            values: vec![HandleValue::new(1, "URL", "https://example.org/mod")],
        },
    );
    assert_eq!(
        authenticated(&node, &modify, Cred::PubKey)
            .await
            .header
            .response_code,
        rc::SUCCESS
    );
    let remove = request(
        opcode::REMOVE_VALUE,
        flags::CLIENT_DEFAULT,
        Body::RemoveValue {
            handle: h.into(),
            indexes: vec![2],
        },
    );
    assert_eq!(
        authenticated(&node, &remove, Cred::Secret("secretpw"))
            .await
            .header
            .response_code,
        rc::SUCCESS
    );
    let rec = node.registry.get(h).unwrap().unwrap();
    assert_eq!(rec.values.len(), 2);
    assert!(
        rec.values
            .iter()
            .any(|v| v.data == b"https://example.org/mod")
    );
    // Resolution sees the write at once (the cache never serves an older value).
    let r = udp(
        &node,
        &request(
            opcode::RESOLUTION,
            flags::CLIENT_DEFAULT,
            Body::Resolution {
                handle: h.into(),
                indexes: vec![1],
                types: vec![],
            },
        ),
    )
    .await;
    let Body::ResolutionResponse { values, .. } = r.body else {
        panic!()
    };
    assert_eq!(values[0].data, b"https://example.org/mod");

    let list = request(
        opcode::LIST_HANDLES,
        flags::CLIENT_DEFAULT,
        Body::Handle {
            handle: "0.NA/12345".into(),
        },
    );
    let listed = authenticated(&node, &list, Cred::Secret("secretpw")).await;
    let Body::HandleList { handles } = listed.body else {
        panic!("{:?}", listed.body)
    };
    assert!(handles.contains(&h.to_string()));

    let delete = request(
        opcode::DELETE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::Handle { handle: h.into() },
    );
    assert_eq!(
        authenticated(&node, &delete, Cred::PubKey)
            .await
            .header
            .response_code,
        rc::SUCCESS
    );
    assert!(node.registry.get(h).unwrap().is_none());
    assert!(node.registry.tombstone(h).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_and_changes_nothing() {
    let node = start().await;
    let before = node.registry.last_seq();
    let create = request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: "12345/fx-bad".into(),
            values: vec![HandleValue::new(1, "URL", "https://x")],
        },
    );
    let out = authenticated(&node, &create, Cred::Secret("wrongpw")).await;
    assert_eq!(out.header.response_code, rc::AUTHENTICATION_FAILED);
    assert_eq!(
        out.body,
        Body::Error {
            message: Some(String::new())
        },
        "RC 403 with an empty message, as the reference"
    );
    assert_eq!(node.registry.last_seq(), before);
    // A handle outside the homed prefixes: RC 301 even for an administrator.
    let outside = request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: "99999/x".into(),
            values: vec![HandleValue::new(1, "URL", "https://x")],
        },
    );
    assert_eq!(
        authenticated(&node, &outside, Cred::Secret("secretpw"))
            .await
            .header
            .response_code,
        rc::SERVER_NOT_RESP
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_read_values_need_authentication_and_ct_answers_are_signed() {
    let node = start().await;
    // Without PO, 12345/ADMIN's secret (admin read only) needs a challenge, even over UDP.
    let read = request(
        opcode::RESOLUTION,
        flags::REC | flags::CA,
        Body::Resolution {
            handle: "12345/ADMIN".into(),
            indexes: vec![],
            types: vec![],
        },
    );
    let out = authenticated(&node, &read, Cred::PubKey).await;
    let Body::ResolutionResponse { values, .. } = out.body else {
        panic!("{:?}", out.body)
    };
    assert!(
        values.iter().any(|v| v.value_type == "HS_SECKEY"),
        "the administrator reads it"
    );
    // With PO only public values, never the secret.
    let public = request(
        opcode::RESOLUTION,
        flags::CLIENT_DEFAULT,
        Body::Resolution {
            handle: "12345/ADMIN".into(),
            indexes: vec![],
            types: vec![],
        },
    );
    let Body::ResolutionResponse { values, .. } = udp(&node, &public).await.body else {
        panic!()
    };
    assert!(values.iter().all(|v| v.value_type != "HS_SECKEY"));
    // CT: the answer carries our HS_SIGNED credential, verifiable with the key in our HS_SITE.
    let signed = request(
        opcode::RESOLUTION,
        flags::CLIENT_DEFAULT | flags::CT,
        Body::Resolution {
            handle: "12345/test1".into(),
            indexes: vec![],
            types: vec![],
        },
    );
    let ans = udp(&node, &signed).await;
    assert!(verify_signed_message(&ans, &node.server_key).unwrap());
    // OC 201: verify a secret-key answer for an identity stored here.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let a = SecretKeyAnswer::for_version(b"secretpw", b"nonce", b"digest", (2, 11), &mut rng);
    let verify = |sr: Vec<u8>| {
        request(
            opcode::VERIFY_RESPONSE,
            flags::CLIENT_DEFAULT,
            Body::VerifyResponse {
                handle: "12345/ADMIN".into(),
                index: 301,
                nonce: b"nonce".to_vec(),
                request_digest: b"digest".to_vec(),
                signed_response: sr,
            },
        )
    };
    assert_eq!(
        tcp(&node, &verify(a.encode())).await[0].body,
        Body::VerifyResult { valid: 1 }
    );
    let wrong = SecretKeyAnswer::for_version(b"wrongpw", b"nonce", b"digest", (2, 11), &mut rng);
    assert_eq!(
        tcp(&node, &verify(wrong.encode())).await[0].body,
        Body::VerifyResult { valid: 0 }
    );
}

/// Writes straight into the node's store (setup that needs no protocol).
fn admin_write(node: &Node, mutation: Mutation) {
    node.registry
        .apply(Write {
            mutation,
            actor: "0:SUYUAN/TEST".into(),
            time: 1,
        })
        .unwrap();
}

/// The nonce and digest of a recorded 402, and the recorded OC 200 answering it.
fn recorded(
    flow: &str,
    challenge: &str,
    answer: &str,
) -> (Vec<u8>, Vec<u8>, String, Identity, Vec<u8>) {
    let c = Message::decode(&fixture(&format!("admin/{flow}/{challenge}"))).unwrap();
    let Body::Challenge { nonce } = c.body else {
        panic!()
    };
    let a = Message::decode(&fixture(&format!("admin/{flow}/{answer}"))).unwrap();
    let Body::ChallengeResponse {
        auth_type,
        id_handle,
        id_index,
        signed_response,
    } = a.body
    else {
        panic!()
    };
    (
        nonce,
        c.request_digest.unwrap().digest,
        auth_type,
        Identity::new(id_index, id_handle),
        signed_response,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_genericbatch_answers_check_out_in_the_node_verifier() {
    let node = start().await;
    let n = node.service.clone();
    for (flow, ch, ans, ok) in [
        (
            "a-genericbatch-pubkey",
            "04-s2c-conn2-CREATE_HANDLE-AUTHENTICATION_NEEDED.bin",
            "05-c2s-conn3-CHALLENGE_RESPONSE.bin",
            true,
        ),
        (
            "b-genericbatch-seckey",
            "04-s2c-conn2-CREATE_HANDLE-AUTHENTICATION_NEEDED.bin",
            "05-c2s-conn3-CHALLENGE_RESPONSE.bin",
            true,
        ),
        (
            "c-genericbatch-wrong-seckey",
            "04-s2c-conn2-CREATE_HANDLE-AUTHENTICATION_NEEDED.bin",
            "05-c2s-conn3-CHALLENGE_RESPONSE.bin",
            false,
        ),
        (
            "e-python-nosession",
            "02-s2c-CREATE_HANDLE-AUTHENTICATION_NEEDED.bin",
            "03-c2s-CHALLENGE_RESPONSE.bin",
            true,
        ),
        (
            "e-python-nosession",
            "06-s2c-DELETE_HANDLE-AUTHENTICATION_NEEDED.bin",
            "07-c2s-CHALLENGE_RESPONSE.bin",
            true,
        ),
    ] {
        let (nonce, digest, auth_type, who, answer) = recorded(flow, ch, ans);
        let verdict = n
            .verify_challenge_answer(&who, &auth_type, &answer, &nonce, &digest, (2, 11))
            .unwrap();
        assert_eq!(verdict, ok, "{flow}/{ans}");
        // The same answer to any other nonce is refused.
        assert!(
            !n.verify_challenge_answer(&who, &auth_type, &answer, &[0; 16], &digest, (2, 11))
                .unwrap(),
            "{flow}: replay"
        );
    }
}

/// A deliberate difference: the reference answers RC 301 for `0.NA/12345` although it homes
/// 12345; Suyuan is the prefix service of what it homes and answers with its own HS_SITE, so a
/// client walking the hierarchy can be referred here for prefixes under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_homed_prefix_handle_answers_with_the_site_where_the_reference_says_301() {
    let node = start().await;
    let site = match udp(
        &node,
        &Message::decode(&fixture("udp/12-get-site-info.req.bin")).unwrap(),
    )
    .await
    .body
    {
        Body::SiteInfo(s) => s,
        other => panic!("site info: {other:?}"),
    };
    for (file, ours) in [
        (
            "udp/11-resolve-0.NA-12345",
            udp(
                &node,
                &Message::decode(&fixture("udp/11-resolve-0.NA-12345.req.bin")).unwrap(),
            )
            .await,
        ),
        (
            "tcp/07-resolve-0.NA-12345",
            tcp(
                &node,
                &Message::decode(&fixture("tcp/07-resolve-0.NA-12345.req.bin")).unwrap(),
            )
            .await
            .remove(0),
        ),
    ] {
        let theirs = Message::decode(&fixture(&format!("{file}.resp.bin"))).unwrap();
        assert_eq!(theirs.header.response_code, rc::SERVER_NOT_RESP, "{file}");
        assert_eq!(ours.header.response_code, rc::SUCCESS, "{file}");
        let Body::ResolutionResponse { handle, values } = &ours.body else {
            panic!("{file}: {:?}", ours.body)
        };
        assert_eq!(handle, "0.NA/12345");
        let sites: Vec<_> = values
            .iter()
            .filter(|v| v.value_type == "HS_SITE")
            .collect();
        assert_eq!(sites.len(), 1, "{file}: {values:?}");
        let published = suyuan_codec::site::SiteInfo::decode(&sites[0].data).unwrap();
        assert_eq!(
            published, site,
            "{file}: the HS_SITE is the node's own site"
        );
    }
    // A prefix under the homed one that this node does not home itself is not its to answer.
    let mut under = Message::decode(&fixture("udp/11-resolve-0.NA-12345.req.bin")).unwrap();
    if let Body::Resolution { handle, .. } = &mut under.body {
        *handle = "0.NA/99999".into();
    }
    assert_eq!(
        udp(&node, &under).await.header.response_code,
        rc::SERVER_NOT_RESP
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_tcp_requests_get_the_reference_codes() {
    let node = start().await;
    for f in [
        "01-resolve-all",
        "02-resolve-type-url",
        "03-resolve-index-2",
        "04-resolve-rd-v2.11",
        "05-resolve-nonexistent",
        "06-resolve-not-homed",
        "08-get-site-info",
        "09-resolve-kc",
        "12-resolve-admin-no-po",
    ] {
        let req = Message::decode(&fixture(&format!("tcp/{f}.req.bin"))).unwrap();
        let theirs = Message::decode(&fixture(&format!("tcp/{f}.resp.bin"))).unwrap();
        let ours = tcp(&node, &req).await.remove(0);
        assert_eq!(
            ours.header.response_code, theirs.header.response_code,
            "tcp/{f}"
        );
    }
    // Truncated and oversized messages: the reference's codes, and the node keeps serving.
    for (f, code) in [
        ("20-malformed-msglen-gt-sent", rc::PROTOCOL_ERROR),
        ("21-malformed-msglen-too-big", rc::ERROR),
        ("22-malformed-bodylen-4000", rc::ERROR),
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
        s.write_all(&fixture(&format!("tcp/{f}.req.bin")))
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(
            Message::decode(&out).unwrap().header.response_code,
            code,
            "tcp/{f}"
        );
    }
    let again = Message::decode(&fixture("tcp/01-resolve-all.req.bin")).unwrap();
    assert_eq!(
        tcp(&node, &again).await[0].header.response_code,
        rc::SUCCESS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovrw_mint_prefixes_and_groups() {
    let node = start().await;
    let secret = Cred::Secret("secretpw");
    // MINT: the node picks the suffix and names the handle it created.
    let mint = request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT | flags::MINT,
        Body::HandleValues {
            handle: "12345/m-".into(),
            values: vec![HandleValue::new(1, "URL", "https://m")],
        },
    );
    let out = authenticated(&node, &mint, Cred::Secret("secretpw")).await;
    let Body::Created {
        handle: Some(minted),
    } = out.body
    else {
        panic!("{:?}", out.body)
    };
    assert!(minted.starts_with("12345/m-") && minted.len() > "12345/m-".len());
    assert!(node.registry.get(&minted).unwrap().is_some());
    // OVRW replaces an existing handle instead of RC 101.
    let ovrw = request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT | flags::OVRW,
        Body::HandleValues {
            handle: minted.clone(),
            values: vec![HandleValue::new(1, "URL", "https://n")],
        },
    );
    assert_eq!(
        authenticated(&node, &ovrw, secret)
            .await
            .header
            .response_code,
        rc::SUCCESS
    );
    assert_eq!(
        node.registry.get(&minted).unwrap().unwrap().values[0].data,
        b"https://n"
    );

    // Home, list and unhome prefixes: node administrators only (300:0.NA/12345 here).
    let home = request(
        opcode::HOME_NA,
        flags::CLIENT_DEFAULT,
        Body::Handle {
            handle: "0.NA/12345.7".into(),
        },
    );
    assert_eq!(
        authenticated(&node, &home, Cred::Secret("secretpw"))
            .await
            .header
            .response_code,
        rc::INVALID_ADMIN,
        "a prefix administrator is not a node administrator"
    );
    admin_write(
        &node,
        Mutation::Create {
            handle: "12345/ops".into(),
            values: vec![HandleValue {
                permissions: Permissions(0x0C),
                ..HandleValue::new(301, "HS_SECKEY", "opspw")
            }],
            mode: CreateMode::Plain,
        },
    );
    let group = HandleValue::new(
        200,
        "HS_VLIST",
        suyuan_codec::value::encode_value_list(&[suyuan_codec::value::ValueReference {
            handle: "12345/ops".into(),
            index: 301,
        }]),
    );
    admin_write(
        &node,
        Mutation::Create {
            handle: "12345/group".into(),
            values: vec![group],
            mode: CreateMode::Plain,
        },
    );
    // A record administered by the group 200:12345/group (ADD_VALUE and MODIFY_VALUE only).
    let perms =
        suyuan_codec::value::admin_perm::ADD_VALUE | suyuan_codec::value::admin_perm::MODIFY_VALUE;
    admin_write(
        &node,
        Mutation::Create {
            handle: "12345/managed".into(),
            values: vec![
                HandleValue::new(
                    100,
                    "HS_ADMIN",
                    AdminRecord::new(perms, "12345/group", 200).encode(),
                ),
                HandleValue::new(1, "URL", "https://a"),
            ],
            mode: CreateMode::Plain,
        },
    );
    let ops = Credentials::Secret {
        index: 301,
        handle: "12345/ops".into(),
        secret: b"opspw".to_vec(),
    };
    let client = HandleClient::new(node.addr, Transport::Tcp);
    let modify = request(
        opcode::MODIFY_VALUE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: "12345/managed".into(),
            values: vec![HandleValue::new(1, "URL", "https://b")],
        },
    );
    assert_eq!(
        client.send_authenticated(&modify, &ops).await.unwrap()[0]
            .header
            .response_code,
        rc::SUCCESS,
        "a member of the HS_VLIST group may modify"
    );
    let delete = request(
        opcode::DELETE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::Handle {
            handle: "12345/managed".into(),
        },
    );
    assert_eq!(
        client.send_authenticated(&delete, &ops).await.unwrap()[0]
            .header
            .response_code,
        rc::INSUFFICIENT_PERMISSIONS,
        "but not delete"
    );
    let other = request(
        opcode::MODIFY_VALUE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: "12345/test1".into(),
            values: vec![HandleValue::new(1, "URL", "https://c")],
        },
    );
    assert_eq!(
        client.send_authenticated(&other, &ops).await.unwrap()[0]
            .header
            .response_code,
        rc::INSUFFICIENT_PERMISSIONS,
        "nor touch what it does not administer"
    );
    let create = request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: "12345/new".into(),
            values: vec![HandleValue::new(1, "URL", "https://c")],
        },
    );
    assert_eq!(
        client.send_authenticated(&create, &ops).await.unwrap()[0]
            .header
            .response_code,
        rc::INVALID_ADMIN,
        "nor create under the prefix"
    );
    assert!(node.registry.get("12345/managed").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_administrators_home_and_unhome_prefixes() {
    let node = start().await;
    // 300:0.NA/12345 is this node's administrator: give it a key to answer with.
    admin_write(
        &node,
        Mutation::Home {
            prefix: "0.NA".into(),
            admins: vec![],
        },
    );
    admin_write(
        &node,
        Mutation::Create {
            handle: "0.NA/12345".into(),
            values: vec![HandleValue::new(
                300,
                "HS_PUBKEY",
                fixture("keys/admin-300.hs_pubkey.bin"),
            )],
            mode: CreateMode::Plain,
        },
    );
    let creds = Credentials::PublicKey {
        index: 300,
        handle: "0.NA/12345".into(),
        key: Box::new(rsa_private_from_pem(&text("keys/admin-300.priv.pem")).unwrap()),
    };
    let client = HandleClient::new(node.addr, Transport::Tcp);
    let home = request(
        opcode::HOME_NA,
        flags::CLIENT_DEFAULT,
        Body::Handle {
            handle: "0.NA/88.888.1".into(),
        },
    );
    assert_eq!(
        client.send_authenticated(&home, &creds).await.unwrap()[0]
            .header
            .response_code,
        rc::SUCCESS
    );
    assert!(node.registry.is_homed("88.888.1").unwrap());
    let list = request(
        opcode::LIST_HOMED_NAS,
        flags::CLIENT_DEFAULT,
        Body::Handle { handle: "/".into() },
    );
    let Body::HandleList { handles } = client
        .send_authenticated(&list, &creds)
        .await
        .unwrap()
        .remove(0)
        .body
    else {
        panic!()
    };
    assert!(
        handles.contains(&"0.NA/88.888.1".to_string())
            && handles.contains(&"0.NA/12345".to_string()),
        "{handles:?}"
    );
    let unhome = request(
        opcode::UNHOME_NA,
        flags::CLIENT_DEFAULT,
        Body::Handle {
            handle: "0.NA/88.888.1".into(),
        },
    );
    assert_eq!(
        client.send_authenticated(&unhome, &creds).await.unwrap()[0]
            .header
            .response_code,
        rc::SUCCESS
    );
    assert!(!node.registry.is_homed("88.888.1").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wire_write_builds_a_record_too_big_to_resolve_over_tcp() {
    let node = start().await;
    let h = "12345/g-wide";
    let desc = |index: u32, n: usize| HandleValue::new(index, "DESC", "x".repeat(n));
    let admin = HandleValue::new(
        100,
        "HS_ADMIN",
        AdminRecord::new(0x0FFF, "12345/ADMIN", 300).encode(),
    );
    let write = |op: u32, values: Vec<HandleValue>| {
        request(
            op,
            flags::CLIENT_DEFAULT,
            Body::HandleValues {
                handle: h.into(),
                values,
            },
        )
    };
    let refused = |m: &Message| match &m.body {
        Body::Error { message } => {
            assert_eq!(m.header.response_code, rc::INVALID_VALUE, "{message:?}");
            let text = message.as_deref().unwrap_or_default();
            assert!(text.contains("262144"), "{text}");
        }
        other => panic!("{:?} {other:?}", m.header),
    };
    // Each request fits a message; the record the second one would make does not. The
    // reference server stores such records and its own client then cannot read them over TCP.
    let m = write(opcode::CREATE_HANDLE, vec![admin.clone(), desc(1, 140_000)]);
    let a = authenticated(&node, &m, Cred::Secret("secretpw")).await;
    assert_eq!(a.header.response_code, rc::SUCCESS);
    let m = write(opcode::ADD_VALUE, vec![desc(2, 140_000)]);
    refused(&authenticated(&node, &m, Cred::Secret("secretpw")).await);
    let m = write(opcode::ADD_VALUE, vec![desc(2, 100_000)]);
    let a = authenticated(&node, &m, Cred::Secret("secretpw")).await;
    assert_eq!(a.header.response_code, rc::SUCCESS);
    let m = write(opcode::MODIFY_VALUE, vec![desc(2, 140_000)]);
    refused(&authenticated(&node, &m, Cred::Secret("secretpw")).await);
    // A CREATE that replaces (OVRW) is measured the same way: this one fits a request message,
    // but not with the digest and signature room its answer needs.
    let mut m = write(
        opcode::CREATE_HANDLE,
        vec![admin, desc(1, 130_600), desc(2, 130_600)],
    );
    m.header.op_flags |= flags::OVRW;
    refused(&authenticated(&node, &m, Cred::Secret("secretpw")).await);
    // What is stored still resolves over TCP, signed when asked (CT).
    let r = request(
        opcode::RESOLUTION,
        flags::CLIENT_DEFAULT | flags::CT,
        Body::Resolution {
            handle: h.into(),
            indexes: vec![],
            types: vec![],
        },
    );
    let answer = &tcp(&node, &r).await[0];
    assert_eq!(answer.header.response_code, rc::SUCCESS);
    let Body::ResolutionResponse { values, .. } = &answer.body else {
        panic!("{:?}", answer.body)
    };
    let desc: Vec<(u32, usize)> = values
        .iter()
        .filter(|v| v.value_type == "DESC")
        .map(|v| (v.index, v.data.len()))
        .collect();
    assert_eq!(desc, vec![(1, 140_000), (2, 100_000)]);
    assert!(answer.credential.is_some(), "CT asks for a signed answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flood_from_one_source_gets_silence_and_the_node_keeps_serving() {
    // A refill too slow to matter while the test runs: what the source gets is the burst.
    const BURST: u64 = 4000;
    let node = start_with(BudgetConfig {
        bytes_per_sec: 1,
        burst_bytes: BURST,
        max_sources: 1024,
        exempt_loopback: false,
    })
    .await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = Message::decode(&fixture("udp/01-resolve-all.req.bin"))
        .unwrap()
        .encode();
    let dropped = |reason: &str| node.metrics.dropped.with_label_values(&[reason]).get();
    let started = std::time::Instant::now();
    let (mut sent, mut answers, mut answer_len) = (0u64, 0u64, 0usize);
    let mut buf = [0u8; 1024];
    // Waves small enough for the socket buffers, sent back to back; a wave is over when each
    // of its requests has been answered (the answer arrives here) or withheld (the node counts
    // it), not after a quiet period.
    for _ in 0..12 {
        for _ in 0..25 {
            sock.send_to(&req, node.addr).await.unwrap();
        }
        sent += 25;
        let wave = async {
            while answers + dropped("budget") + dropped("in_flight") < sent {
                // Wake to look at the counters as well as for an answer.
                let wait = std::time::Duration::from_millis(10);
                if let Ok(r) = tokio::time::timeout(wait, sock.recv(&mut buf)).await {
                    answer_len = r.unwrap();
                    answers += 1;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), wave)
            .await
            .expect("every request is answered or counted as withheld");
    }
    let withheld = dropped("budget");
    assert_eq!(answers + withheld + dropped("in_flight"), sent);
    // The burst and whatever trickled in since buy this many answers, and no more.
    let budget = BURST + started.elapsed().as_secs() + 1;
    assert!(
        answer_len > 0 && withheld > 0,
        "{answers} answers, {withheld} withheld"
    );
    assert!(
        answers * answer_len as u64 <= budget && (answers + 1) * answer_len as u64 > BURST,
        "{answers} answers of {answer_len} bytes for a budget of {budget} bytes"
    );
    // TCP is not budgeted, so the reference client's fallback works.
    assert_eq!(
        tcp(&node, &Message::decode(&req).unwrap()).await[0]
            .header
            .response_code,
        rc::SUCCESS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_and_old_digests() {
    let node = start().await;
    // udp/15: the answer is split into 512-byte datagrams like the reference's four.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(
        &fixture("udp/15-resolve-big-multipacket.req.bin"),
        node.addr,
    )
    .await
    .unwrap();
    let mut r = suyuan_codec::framing::UdpReassembler::new();
    let mut buf = [0u8; 1024];
    let mut n = 0;
    let whole = loop {
        let len = sock.recv(&mut buf).await.unwrap();
        assert!(len <= 512);
        n += 1;
        if let suyuan_codec::framing::Reassembly::Complete(m) = r.push(&buf[..len]).unwrap() {
            break Message::decode(&m).unwrap();
        }
    };
    assert_eq!(n, 4, "as many datagrams as the reference sent");
    let theirs = Message::decode(&fixture(
        "udp/15-resolve-big-multipacket.resp.reassembled.bin",
    ))
    .unwrap();
    let Body::ResolutionResponse { values: ours, .. } = &whole.body else {
        panic!()
    };
    let Body::ResolutionResponse {
        values: ref_values, ..
    } = &theirs.body
    else {
        panic!()
    };
    assert!(
        ours.iter().zip(ref_values).all(|(a, b)| a.same_content(b))
            && ours.len() == ref_values.len()
    );
    // tcp/11: the same over TCP, one message.
    let req = Message::decode(&fixture("tcp/11-resolve-big.req.bin")).unwrap();
    assert_eq!(tcp(&node, &req).await[0].header.response_code, rc::SUCCESS);
    // udp/06: a 2.0 request with RD gets RD and the pre-2.1 digest form (u8 0, u32 16, MD5),
    // which the reference garbles (README, "Matching these bytes").
    let req = Message::decode(&fixture("udp/06-resolve-rd-v2.0.req.bin")).unwrap();
    let ours = udp(&node, &req).await;
    assert!(ours.header.has(flags::RD));
    let d = ours.request_digest.unwrap();
    assert_eq!((d.alg, d.digest.len()), (0, 16));
    assert_eq!(ours.envelope.version(), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_challenge_table_answers_server_too_busy() {
    let cfg = ChallengeConfig {
        max_pending: 1000,
        max_per_source: 3,
        ttl: std::time::Duration::from_secs(60),
    };
    let node = start_cfg(BudgetConfig::default(), cfg).await;
    let create = request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: "12345/x".into(),
            values: vec![HandleValue::new(1, "URL", "https://x")],
        },
    );
    let codes: Vec<u32> = futures_codes(&node, &create, 5).await;
    assert_eq!(
        codes,
        vec![402, 402, 402, 3, 3],
        "three pending challenges per source, then RC 3"
    );
}

async fn futures_codes(node: &Node, m: &Message, n: usize) -> Vec<u32> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(tcp(node, m).await[0].header.response_code);
    }
    out
}

fn admin_key() -> rsa::RsaPrivateKey {
    rsa_private_from_pem(&text("keys/admin-300.priv.pem")).unwrap()
}

fn seckey() -> Credentials {
    Credentials::Secret {
        index: 301,
        handle: "12345/ADMIN".into(),
        secret: b"secretpw".to_vec(),
    }
}

fn create_req(h: &str) -> Message {
    request(
        opcode::CREATE_HANDLE,
        flags::CLIENT_DEFAULT,
        Body::HandleValues {
            handle: h.into(),
            values: vec![HandleValue::new(1, "URL", "https://s")],
        },
    )
}

/// A request MAC'd in `session` with the next counter.
fn in_session(session: &suyuan_federation::ClientSession, m: &Message) -> Message {
    let mut m = m.clone();
    m.envelope.session_id = session.id;
    suyuan_codec::auth::mac_message(&mut m, session.key(), session.next_counter()).unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diffie_hellman_session_like_genericbatch() {
    let node = start().await;
    let client = HandleClient::new(node.addr, Transport::Tcp);
    let s = client
        .open_session(
            301,
            "12345/ADMIN",
            suyuan_federation::Exchange::DiffieHellman,
            86400,
        )
        .await
        .unwrap();
    // Java clients take an id <= 0 (as a signed int) for "no session".
    assert!((1..=i32::MAX as u32).contains(&s.id), "{:#x}", s.id);
    // The first administrative request is challenged and answered as without sessions.
    let first = in_session(&s, &create_req("12345/fx-dh"));
    let challenge = tcp(&node, &first).await.remove(0);
    assert_eq!(challenge.header.response_code, rc::AUTHENTICATION_NEEDED);
    assert_eq!(
        challenge.envelope.session_id, s.id,
        "the 402 carries the session id"
    );
    let out = client
        .send_in_session(&s, &create_req("12345/fx-dh"), &seckey())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(out.header.response_code, rc::SUCCESS, "{:?}", out.body);
    assert_eq!(out.envelope.session_id, s.id);
    // Later ones are accepted on the session's HS_MAC alone: no challenge.
    let add = in_session(
        &s,
        &request(
            opcode::ADD_VALUE,
            flags::CLIENT_DEFAULT,
            Body::HandleValues {
                handle: "12345/fx-dh".into(),
                values: vec![HandleValue::new(2, "EMAIL", "a@b")],
            },
        ),
    );
    assert_eq!(tcp(&node, &add).await[0].header.response_code, rc::SUCCESS);
    // The same message again is a replay.
    assert_eq!(
        tcp(&node, &add).await[0].header.response_code,
        rc::SESSION_MESSAGE_REJECTED
    );
    // A MAC that does not verify is refused.
    let mut forged = in_session(
        &s,
        &request(
            opcode::DELETE_HANDLE,
            flags::CLIENT_DEFAULT,
            Body::Handle {
                handle: "12345/fx-dh".into(),
            },
        ),
    );
    forged.credential.as_mut().unwrap().signature[0] ^= 1;
    assert_eq!(
        tcp(&node, &forged).await[0].header.response_code,
        rc::INVALID_CREDENTIAL
    );
    assert!(node.registry.get("12345/fx-dh").unwrap().is_some());
    // CT in a session: the answer carries an HS_MAC with the session key.
    let ct = in_session(
        &s,
        &request(
            opcode::RESOLUTION,
            flags::CLIENT_DEFAULT | flags::CT,
            Body::Resolution {
                handle: "12345/fx-dh".into(),
                indexes: vec![],
                types: vec![],
            },
        ),
    );
    let ans = tcp(&node, &ct).await.remove(0);
    assert!(suyuan_codec::auth::verify_mac(&ans, s.key()).unwrap());
    // OC 401 ends the session; it is gone afterwards.
    let end = in_session(
        &s,
        &request(
            opcode::SESSION_TERMINATE,
            flags::CLIENT_DEFAULT,
            Body::Handle { handle: "/".into() },
        ),
    );
    assert_eq!(tcp(&node, &end).await[0].header.response_code, rc::SUCCESS);
    let after = in_session(
        &s,
        &request(
            opcode::DELETE_HANDLE,
            flags::CLIENT_DEFAULT,
            Body::Handle {
                handle: "12345/fx-dh".into(),
            },
        ),
    );
    assert_eq!(
        tcp(&node, &after).await[0].header.response_code,
        rc::SESSION_TIMEOUT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rsa_session_mode_completes() {
    let node = start().await;
    let client = HandleClient::new(node.addr, Transport::Tcp);
    let key = admin_key();
    let pubkey = Credentials::PublicKey {
        index: 300,
        handle: "12345/ADMIN".into(),
        key: Box::new(admin_key()),
    };
    for (n, exchange) in [
        suyuan_federation::Exchange::ClientCipher(&key),
        suyuan_federation::Exchange::HandleCipher {
            handle: "12345/ADMIN",
            index: 300,
            key: &key,
        },
        suyuan_federation::Exchange::ServerCipher,
    ]
    .into_iter()
    .enumerate()
    {
        let s = client
            .open_session(300, "12345/ADMIN", exchange, 600)
            .await
            .unwrap_or_else(|e| panic!("mode #{n}: {e}"));
        let h = format!("12345/fx-rsa-{n}");
        let out = client
            .send_in_session(&s, &create_req(&h), &pubkey)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            out.header.response_code,
            rc::SUCCESS,
            "mode #{n}: {:?}",
            out.body
        );
        let del = in_session(
            &s,
            &request(
                opcode::DELETE_HANDLE,
                flags::CLIENT_DEFAULT,
                Body::Handle { handle: h.clone() },
            ),
        );
        assert_eq!(
            tcp(&node, &del).await[0].header.response_code,
            rc::SUCCESS,
            "mode #{n}: MAC only"
        );
    }
    // A handle-cipher session whose handle holds no key fails cleanly.
    let e = client
        .open_session(
            300,
            "12345/ADMIN",
            suyuan_federation::Exchange::HandleCipher {
                handle: "12345/test1",
                index: 300,
                key: &key,
            },
            600,
        )
        .await;
    assert!(e.is_err());
}

/// A session setup as the Java client lays it out: its body ends in two zero bytes, because it
/// sizes the two-byte mode as four.
fn java_session_setup(mode: u16, exchange: suyuan_codec::message::KeyExchange) -> Message {
    let mut m = request(
        opcode::SESSION_SETUP,
        flags::CLIENT_DEFAULT | flags::CT | flags::RD,
        Body::SessionSetup(suyuan_codec::message::SessionSetupRequest {
            mode,
            timeout: 86400,
            id_handle: "12345/ADMIN".into(),
            id_index: 300,
            exchange,
        }),
    );
    m.trailing = vec![0, 0];
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_key_exchanges_answer_501_with_the_reference_message() {
    use suyuan_codec::message::KeyExchange;
    let node = start().await;
    let rsa_key = suyuan_codec::auth::hs_from_rsa_public(&admin_key().to_public_key()).encode();
    let key_ref = |handle: &str, index| KeyExchange::KeyRef {
        handle: handle.into(),
        index,
    };
    // The reference server answers each of these RC 501 with this message.
    let cases = [
        (7, KeyExchange::None, "Unrecognized key exchange mode"),
        (0, KeyExchange::None, "Unrecognized key exchange mode"),
        (
            4,
            KeyExchange::PublicKey(b"garbage".to_vec()),
            "Error encoding public session key",
        ),
        (
            4,
            KeyExchange::PublicKey(rsa_key),
            "Error encoding public session key",
        ),
        (
            1,
            KeyExchange::PublicKey(b"garbage".to_vec()),
            "Error performing client cipher key exchange.",
        ),
        (
            3,
            key_ref("12345/nothere", 300),
            "Error performing hdl cipher key exchange.",
        ),
        (
            3,
            key_ref("12345/test1", 1),
            "No key found in key exchange handle.",
        ),
        (
            3,
            key_ref("12345/ADMIN", 301),
            "No key found in key exchange handle.",
        ),
    ];
    for (mode, exchange, message) in cases {
        let what = format!("mode {mode} {exchange:?}");
        let a = tcp(&node, &java_session_setup(mode, exchange))
            .await
            .remove(0);
        assert_eq!(a.header.response_code, rc::SESSION_FAILED, "{what}");
        assert_eq!(
            a.body,
            Body::Error {
                message: Some(message.into())
            },
            "{what}"
        );
        assert_eq!(a.envelope.session_id, 0, "{what}: no session");
    }
    // The Java client sends its server-cipher key without the session's id; the reference
    // answers RC 500 with this message.
    let key = request(
        opcode::SESSION_EXCHANGEKEY,
        flags::CLIENT_DEFAULT,
        Body::SessionExchangeKey {
            encrypted_key: vec![7; 256],
        },
    );
    let a = tcp(&node, &key).await.remove(0);
    assert_eq!(a.header.response_code, rc::SESSION_TIMEOUT);
    assert_eq!(
        a.body,
        Body::Error {
            message: Some("Invalid session id or session time out. Please try again.".into())
        }
    );
    // The same layout with a usable key opens a session.
    let ok = tcp(&node, &java_session_setup(3, key_ref("12345/ADMIN", 300)))
        .await
        .remove(0);
    assert_eq!(ok.header.response_code, rc::SUCCESS, "{:?}", ok.body);
    assert_ne!(ok.envelope.session_id, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_answers_session_timeout() {
    let node = start().await;
    let client = HandleClient::new(node.addr, Transport::Tcp);
    let s = client
        .open_session(
            301,
            "12345/ADMIN",
            suyuan_federation::Exchange::DiffieHellman,
            600,
        )
        .await
        .unwrap();
    // Until it expires the session is live: the node challenges the request made in it.
    let m = in_session(&s, &create_req("12345/early"));
    assert_eq!(
        tcp(&node, &m).await[0].header.response_code,
        rc::AUTHENTICATION_NEEDED
    );
    node.clock.advance(std::time::Duration::from_secs(600));
    let m = in_session(&s, &create_req("12345/late"));
    assert_eq!(
        tcp(&node, &m).await[0].header.response_code,
        rc::SESSION_TIMEOUT
    );
    // An unknown session id likewise.
    let mut bogus = create_req("12345/late");
    bogus.envelope.session_id = 0x8000_1234;
    assert_eq!(
        tcp(&node, &bogus).await[0].header.response_code,
        rc::SESSION_TIMEOUT
    );
}

/// Seals a message for an encrypted session: EC set, everything after the envelope encrypted.
fn seal(m: &Message, key: &[u8]) -> Vec<u8> {
    let plain = m.encode();
    let body = suyuan_codec::session::encrypt_message(key, &plain[20..], [5; 16]).unwrap();
    let mut env = m.envelope;
    env.flags |= suyuan_codec::message::envelope_flags::EC;
    env.message_length = body.len() as u32;
    let mut out = env.encode().to_vec();
    out.extend_from_slice(&body);
    out
}

async fn raw_tcp(node: &Node, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_messages_are_opened_and_answered_encrypted() {
    let node = start().await;
    let client = HandleClient::new(node.addr, Transport::Tcp);
    let s = client
        .open_session(
            301,
            "12345/ADMIN",
            suyuan_federation::Exchange::DiffieHellman,
            600,
        )
        .await
        .unwrap();
    let out = client
        .send_in_session(&s, &create_req("12345/fx-ec"), &seckey())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(out.header.response_code, rc::SUCCESS);
    // An encrypted, MAC'd administrative request in the authenticated session.
    let add = in_session(
        &s,
        &request(
            opcode::ADD_VALUE,
            flags::CLIENT_DEFAULT,
            Body::HandleValues {
                handle: "12345/fx-ec".into(),
                values: vec![HandleValue::new(2, "EMAIL", "ec@example.org")],
            },
        ),
    );
    let answer = raw_tcp(&node, &seal(&add, s.key())).await;
    let env = suyuan_codec::message::Envelope::decode(&answer[..20]).unwrap();
    assert!(env.encrypted(), "the answer is encrypted too");
    let plain = suyuan_codec::session::decrypt_message(s.key(), &answer[20..]).unwrap();
    let mut whole = answer[..20].to_vec();
    whole.extend_from_slice(&plain);
    whole[2] &= !suyuan_codec::message::envelope_flags::EC;
    whole[16..20].copy_from_slice(&(plain.len() as u32).to_be_bytes());
    let m = Message::decode(&whole).unwrap();
    assert_eq!(m.header.response_code, rc::SUCCESS, "{:?}", m.body);
    assert_eq!(
        node.registry
            .get("12345/fx-ec")
            .unwrap()
            .unwrap()
            .values
            .len(),
        2
    );
    // Encrypted for a session the node does not know: RC 501, in the clear.
    let mut stray = add.clone();
    stray.envelope.session_id = 0x8000_0042;
    let answer = raw_tcp(&node, &seal(&stray, s.key())).await;
    assert_eq!(
        Message::decode(&answer).unwrap().header.response_code,
        rc::SESSION_FAILED
    );
    // Encrypted with the wrong key: refused, nothing written. (Usually RC 501; when the
    // garbage happens to unpad, whatever it decodes to is refused with RC 2 or 4.)
    let bad = in_session(
        &s,
        &request(
            opcode::DELETE_HANDLE,
            flags::CLIENT_DEFAULT,
            Body::Handle {
                handle: "12345/fx-ec".into(),
            },
        ),
    );
    let answer = raw_tcp(&node, &seal(&bad, &[9u8; 32])).await;
    let code = Message::decode(&answer).unwrap().header.response_code;
    assert!(
        [rc::SESSION_FAILED, rc::ERROR, rc::PROTOCOL_ERROR].contains(&code),
        "RC {code}"
    );
    assert!(node.registry.get("12345/fx-ec").unwrap().is_some());
}
