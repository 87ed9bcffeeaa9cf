//! What a Handle client of the reference server notices: session ids a Java client takes for
//! sessions, public write, repeated indexes, keys that are not keys, RC 301's words, and that
//! a type (never an index alone) gives a value its meaning. Each expectation is what the
//! reference server (Handle.Net 9.3.1) answered to the same request, unless it says that we
//! deliberately differ.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use suyuan_codec::auth::rsa_private_from_pem;
use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::site::{Interface, SiteInfo, interface_protocol, interface_type};
use suyuan_codec::value::{AdminRecord, HandleValue, Permissions, admin_perm};
use suyuan_federation::{ClientSession, Credentials, Exchange, HandleClient, Transport};
use suyuan_registry::{CreateMode, Identity, Mutation, Registry, Write};
use suyuan_resolver::http::{HttpOptions, serve_http};
use suyuan_resolver::node::{HandleNode, NodeConfig};
use suyuan_resolver::ops::Metrics;
use suyuan_resolver::session::{SESSION_IDS, Session, SessionConfig, SessionTable};
use suyuan_resolver::{Limits, tcp::serve_tcp};

fn key_fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/keys")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

struct Lab {
    handle: SocketAddr,
    http: SocketAddr,
    registry: Arc<Registry>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn value(index: u32, t: &str, data: &str, perms: u8) -> HandleValue {
    HandleValue {
        permissions: Permissions(perms),
        ..HandleValue::new(index, t, data)
    }
}

fn admin_value() -> HandleValue {
    HandleValue::new(
        100,
        "HS_ADMIN",
        AdminRecord::new(0x0FFF, "12345/ADMIN", 301).encode(),
    )
}

/// Prefix 12345 administered by 301:12345/ADMIN (secret `secretpw`), which also administers
/// the node; `12345/b-pw` as the reference lab's check made it: a URL anyone may write (1111),
/// an EMAIL only administrators may (1110), and a URL administrators may not write (1011).
async fn start() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(dir.path()).unwrap());
    let w = |mutation| Write {
        mutation,
        actor: "0:SUYUAN/INIT".into(),
        time: 1_795_509_286,
    };
    let admin = Identity::new(301, "12345/ADMIN");
    registry
        .apply(w(Mutation::Home {
            prefix: "12345".into(),
            admins: vec![admin.clone()],
        }))
        .unwrap();
    for (handle, values) in [
        (
            "12345/ADMIN",
            vec![admin_value(), value(301, "HS_SECKEY", "secretpw", 0x0C)],
        ),
        // Someone with no rights on 12345/b-pw: a secret, no HS_ADMIN anywhere.
        (
            "12345/user",
            vec![admin_value(), value(1, "HS_SECKEY", "userpw", 0x0C)],
        ),
        (
            "12345/b-pw",
            vec![
                admin_value(),
                value(1, "URL", "https://example.org/pw", 0x0F),
                value(2, "EMAIL", "pw@example.org", 0x0E),
                value(3, "URL", "https://example.org/readonly", 0x0B),
            ],
        ),
    ] {
        registry
            .apply(w(Mutation::Create {
                handle: handle.into(),
                values,
                mode: CreateMode::Plain,
            }))
            .unwrap();
    }
    let key = rsa_private_from_pem(&String::from_utf8(key_fixture("admin-300.priv.pem")).unwrap())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = listener.local_addr().unwrap();
    let site = SiteInfo::single_server(
        1,
        handle.ip(),
        suyuan_codec::auth::hs_from_rsa_public(&key.to_public_key()).encode(),
        vec![Interface {
            kind: interface_type::ADMIN_AND_QUERY,
            protocol: interface_protocol::TCP,
            port: u32::from(handle.port()),
        }],
    );
    let node = HandleNode::new(
        registry.clone(),
        NodeConfig {
            site,
            key,
            node_admins: vec![admin],
            challenges: Default::default(),
            sessions: SessionConfig::default(),
            cache_entries: 100,
        },
    );
    let (stop, rx) = watch::channel(false);
    tokio::spawn(serve_tcp(
        listener,
        Arc::new(node.clone()),
        Limits::default(),
        Metrics::new(),
        rx.clone(),
    ));
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = http_listener.local_addr().unwrap();
    tokio::spawn(serve_http(
        http_listener,
        registry.clone(),
        node,
        HttpOptions::default(),
        rx,
    ));
    Lab {
        handle,
        http,
        registry,
        _stop: stop,
        _dir: dir,
    }
}

fn request(op: u32, body: Body) -> Message {
    Message::request(
        op,
        flags::CLIENT_DEFAULT,
        rand::random::<u32>() >> 1,
        1_795_554_056,
        body,
    )
}

fn values_req(op: u32, handle: &str, values: Vec<HandleValue>) -> Message {
    request(
        op,
        Body::HandleValues {
            handle: handle.into(),
            values,
        },
    )
}

fn secret(index: u32, handle: &str, s: &str) -> Credentials {
    Credentials::Secret {
        index,
        handle: handle.into(),
        secret: s.as_bytes().to_vec(),
    }
}

fn admin() -> Credentials {
    secret(301, "12345/ADMIN", "secretpw")
}

impl Lab {
    fn client(&self) -> HandleClient {
        HandleClient::new(self.handle, Transport::Tcp)
    }

    /// The first answer to `m` sent without credentials.
    async fn anonymous(&self, m: &Message) -> Message {
        self.client().send_tcp(m).await.unwrap().remove(0)
    }

    async fn as_(&self, m: &Message, creds: &Credentials) -> Message {
        self.client()
            .send_authenticated(m, creds)
            .await
            .unwrap()
            .remove(0)
    }

    fn data(&self, handle: &str, index: u32) -> Option<String> {
        let rec = self.registry.get(handle).unwrap()?;
        rec.values
            .iter()
            .find(|v| v.index == index)
            .map(|v| String::from_utf8_lossy(&v.data).into_owned())
    }

    /// One HTTP/1.1 exchange over plain HTTP: status and body.
    async fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.http).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }
}

fn code(m: &Message) -> u32 {
    m.header.response_code
}

fn message(m: &Message) -> String {
    match &m.body {
        Body::Error { message } => message.clone().unwrap_or_default(),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_session_table_never_hands_out_an_id_java_reads_as_no_session() {
    let now = Instant::now();
    let session = || {
        Session::new(
            vec![1; 32],
            3,
            4,
            Identity::new(301, "12345/ADMIN"),
            Duration::from_secs(60),
            now,
        )
    };
    let mut t = SessionTable::new(SessionConfig::default());
    // 0, the ids that are negative as a Java int, and 2^31 itself are skipped.
    let mut bad = [0, 0x8000_0000, 0xFFFF_FFFF, 0x8000_0001, 7].into_iter();
    assert_eq!(t.insert(session(), now, || bad.next().unwrap()), Some(7));
    let mut edge = [u32::MAX, i32::MAX as u32].into_iter();
    assert_eq!(
        t.insert(session(), now, || edge.next().unwrap()),
        Some(i32::MAX as u32)
    );
    assert_eq!(SESSION_IDS, 1..=0x7FFF_FFFF);
}

/// The request the client would send in `s`, MAC'd with the session's next counter.
fn in_session(s: &ClientSession, m: &Message) -> Message {
    let mut m = m.clone();
    m.envelope.session_id = s.id;
    suyuan_codec::auth::mac_message(&mut m, s.key(), s.next_counter()).unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_and_unhome_in_a_diffie_hellman_session_carry_a_positive_session_id() {
    // GenericBatch's HOME/UNHOME: a DH session, the first request challenged, the answers
    // MAC'd. The reference's Java client drops a MAC'd answer whose session id is <= 0 as a
    // signed int ("Message signed with MAC but no session id given").
    let lab = start().await;
    let client = lab.client();
    for _ in 0..16 {
        let s = client
            .open_session(301, "12345/ADMIN", Exchange::DiffieHellman, 600)
            .await
            .unwrap();
        assert!(SESSION_IDS.contains(&s.id), "{:#x}", s.id);
    }
    let s = client
        .open_session(301, "12345/ADMIN", Exchange::DiffieHellman, 600)
        .await
        .unwrap();
    let prefix = |op| {
        let mut m = request(
            op,
            Body::Handle {
                handle: "0.NA/12345.b-home".into(),
            },
        );
        m.header.op_flags |= flags::CT;
        m
    };
    let home = client
        .send_in_session(&s, &prefix(opcode::HOME_NA), &admin())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(code(&home), rc::SUCCESS, "{}", message(&home));
    assert_eq!(home.envelope.session_id, s.id);
    assert!((home.envelope.session_id as i32) > 0);
    assert!(lab.registry.is_homed("12345.b-home").unwrap());
    // Later requests ride on the session's MAC alone.
    let unhome = lab
        .anonymous(&in_session(&s, &prefix(opcode::UNHOME_NA)))
        .await;
    assert_eq!(code(&unhome), rc::SUCCESS, "{}", message(&unhome));
    assert!((unhome.envelope.session_id as i32) > 0);
    assert!(
        unhome.credential.is_some(),
        "a CT answer in a session is MAC'd"
    );
    assert!(!lab.registry.is_homed("12345.b-home").unwrap());
    // The reference answers an UNHOME of a prefix that is not homed with success.
    let again = lab
        .anonymous(&in_session(&s, &prefix(opcode::UNHOME_NA)))
        .await;
    assert_eq!(code(&again), rc::SUCCESS, "{}", message(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_write_values_are_modified_without_authentication_as_the_reference_allows() {
    let lab = start().await;
    let h = "12345/b-pw";
    let url = |i, s: &str, p| value(i, "URL", s, p);
    // The reference server answers an anonymous modify of a 1111 value with success.
    let m = values_req(opcode::MODIFY_VALUE, h, vec![url(1, "https://anon", 0x0F)]);
    let a = lab.anonymous(&m).await;
    assert_eq!(code(&a), rc::SUCCESS, "{}", message(&a));
    assert_eq!(lab.data(h, 1).as_deref(), Some("https://anon"));
    let changes = lab.registry.changes_since(0, 100).unwrap();
    assert_eq!(changes.last().unwrap().actor, "0:anonymous");
    // Two values at one index: the reference writes the last one.
    let m = values_req(
        opcode::MODIFY_VALUE,
        h,
        vec![url(1, "https://a", 0x0F), url(1, "https://b", 0x0F)],
    );
    assert_eq!(code(&lab.anonymous(&m).await), rc::SUCCESS);
    assert_eq!(lab.data(h, 1).as_deref(), Some("https://b"));
    // Challenged (RC 402) by the reference: a value without public write, a mix, a value
    // turned into HS_ADMIN, any add or remove.
    for m in [
        values_req(
            opcode::MODIFY_VALUE,
            h,
            vec![value(2, "EMAIL", "anon@x", 0x0E)],
        ),
        values_req(
            opcode::MODIFY_VALUE,
            h,
            vec![url(1, "https://c", 0x0F), value(2, "EMAIL", "anon@x", 0x0E)],
        ),
        values_req(opcode::MODIFY_VALUE, h, vec![admin_value()]),
        values_req(
            opcode::MODIFY_VALUE,
            h,
            vec![HandleValue {
                index: 1,
                ..admin_value()
            }],
        ),
        values_req(opcode::ADD_VALUE, h, vec![url(7, "https://7", 0x0F)]),
        request(
            opcode::REMOVE_VALUE,
            Body::RemoveValue {
                handle: h.into(),
                indexes: vec![1],
            },
        ),
        // The reference tells an anonymous caller RC 401 (read-only) and RC 200 (no such
        // index) here; we challenge instead, so that nothing about a record is told to
        // someone who has not authenticated.
        values_req(opcode::MODIFY_VALUE, h, vec![url(3, "https://ro", 0x0B)]),
        values_req(opcode::MODIFY_VALUE, h, vec![url(9, "https://9", 0x0F)]),
        values_req(
            opcode::MODIFY_VALUE,
            "12345/absent",
            vec![url(1, "https://x", 0x0F)],
        ),
    ] {
        let a = lab.anonymous(&m).await;
        assert_eq!(
            code(&a),
            rc::AUTHENTICATION_NEEDED,
            "{m:?}: {}",
            message(&a)
        );
    }
    assert_eq!(lab.data(h, 1).as_deref(), Some("https://b"));
    assert_eq!(lab.data(h, 2).as_deref(), Some("pw@example.org"));
    // Authenticated: the reference answers RC 401 "Value is read-only" for a value
    // administrators may not write, RC 200 for an index the record lacks.
    let ro = values_req(opcode::MODIFY_VALUE, h, vec![url(3, "https://ro", 0x0B)]);
    let a = lab.as_(&ro, &admin()).await;
    assert_eq!(code(&a), rc::INSUFFICIENT_PERMISSIONS);
    assert!(
        message(&a).starts_with("Value is read-only"),
        "{}",
        message(&a)
    );
    let nine = values_req(opcode::MODIFY_VALUE, h, vec![url(9, "https://9", 0x0F)]);
    assert_eq!(code(&lab.as_(&nine, &admin()).await), rc::VALUES_NOT_FOUND);
    // Someone the record gives no rights may still write the public value, not the others.
    let user = secret(1, "12345/user", "userpw");
    let m = values_req(opcode::MODIFY_VALUE, h, vec![url(1, "https://user", 0x0F)]);
    assert_eq!(code(&lab.as_(&m, &user).await), rc::SUCCESS);
    assert_eq!(lab.data(h, 1).as_deref(), Some("https://user"));
    let m = values_req(
        opcode::MODIFY_VALUE,
        h,
        vec![value(2, "EMAIL", "user@x", 0x0E)],
    );
    assert_eq!(
        code(&lab.as_(&m, &user).await),
        rc::INSUFFICIENT_PERMISSIONS
    );
    assert_eq!(lab.data(h, 2).as_deref(), Some("pw@example.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_index_in_a_create_or_add_is_value_already_exists() {
    let lab = start().await;
    let url = |i, s: &str| value(i, "URL", s, 0x0E);
    let twice = vec![url(1, "https://a"), url(1, "https://b")];
    // The reference server answers RC 201 "Index conflict for 1" before it challenges.
    for m in [
        values_req(opcode::CREATE_HANDLE, "12345/b-dup", twice.clone()),
        values_req(
            opcode::ADD_VALUE,
            "12345/b-pw",
            vec![url(5, "a"), url(5, "b")],
        ),
    ] {
        let want = if m.header.op_code == opcode::CREATE_HANDLE {
            "Index conflict for 1"
        } else {
            "Index conflict for 5"
        };
        for a in [lab.anonymous(&m).await, lab.as_(&m, &admin()).await] {
            assert_eq!(code(&a), rc::VALUE_ALREADY_EXISTS, "{}", message(&a));
            assert_eq!(message(&a), want);
        }
    }
    assert!(lab.registry.get("12345/b-dup").unwrap().is_none());
    // An index the record holds, added without OVRW: RC 201 "Index conflict for 1".
    let again = values_req(
        opcode::ADD_VALUE,
        "12345/b-pw",
        vec![url(1, "https://again")],
    );
    let a = lab.as_(&again, &admin()).await;
    assert_eq!(code(&a), rc::VALUE_ALREADY_EXISTS, "{}", message(&a));
    assert_eq!(message(&a), "Index conflict for 1");
    // A prefix not served here is still RC 301 first.
    let elsewhere = values_req(opcode::CREATE_HANDLE, "88.999/x", twice.clone());
    assert_eq!(code(&lab.anonymous(&elsewhere).await), rc::SERVER_NOT_RESP);
    // REST: the reference answers 409 with exactly this body, with or without credentials.
    let body = r#"{"values":[{"index":1,"type":"URL","data":{"format":"string","value":"http://a"}},{"index":1,"type":"URL","data":{"format":"string","value":"http://b"}}]}"#;
    let (status, json) = lab.http("PUT", "/api/handles/12345/b-rdup", body).await;
    assert_eq!(status, 409);
    assert_eq!(
        json,
        r#"{"responseCode":201,"message":"Index conflict for 1","handle":"12345/b-rdup"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs_pubkey_data_that_is_not_a_key_is_refused_on_every_write() {
    // The reference server stores "notakey" as HS_PUBKEY and answers success: refusing it is
    // deliberate, so that a broken key fails where it is written, not at a later login.
    let lab = start().await;
    let junk = HandleValue::new(300, "HS_PUBKEY", "notakey");
    let rsa = HandleValue::new(300, "HS_PUBKEY", key_fixture("admin-300.hs_pubkey.bin"));
    let h = "12345/b-key";
    let with_key = |v: HandleValue| vec![admin_value(), v];
    for m in [
        values_req(opcode::CREATE_HANDLE, h, with_key(junk.clone())),
        values_req(opcode::ADD_VALUE, "12345/b-pw", vec![junk.clone()]),
    ] {
        let a = lab.as_(&m, &admin()).await;
        assert_eq!(code(&a), rc::INVALID_VALUE, "{}", message(&a));
        assert!(
            message(&a).contains("not a usable HS_PUBKEY"),
            "{}",
            message(&a)
        );
    }
    let ok = values_req(opcode::CREATE_HANDLE, h, with_key(rsa));
    assert_eq!(code(&lab.as_(&ok, &admin()).await), rc::SUCCESS);
    let modify = values_req(opcode::MODIFY_VALUE, h, vec![junk.clone()]);
    assert_eq!(code(&lab.as_(&modify, &admin()).await), rc::INVALID_VALUE);
    let stored = lab.registry.get(h).unwrap().unwrap();
    assert!(
        stored
            .values
            .iter()
            .any(|v| v.index == 300 && v.data == key_fixture("admin-300.hs_pubkey.bin")),
        "the key is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc_301_names_the_prefix_and_how_a_slashless_handle_was_read() {
    let lab = start().await;
    let resolve = |h: &str| {
        request(
            opcode::RESOLUTION,
            Body::Resolution {
                handle: h.into(),
                indexes: vec![],
                types: vec![],
            },
        )
    };
    // The reference answers RC 301 "That prefix doesn't live here" to both; we keep its words
    // and say which prefix, and how the input was read.
    let a = lab.anonymous(&resolve("88.999/x")).await;
    assert_eq!(code(&a), rc::SERVER_NOT_RESP);
    assert_eq!(
        message(&a),
        "That prefix doesn't live here: prefix 88.999 is not served here"
    );
    let a = lab.anonymous(&resolve("abc")).await;
    assert_eq!(code(&a), rc::SERVER_NOT_RESP);
    assert_eq!(
        message(&a),
        "That prefix doesn't live here: \"abc\" has no slash, so it was read as the prefix \
         handle 0.NA/abc, and this node is not the prefix service of prefix abc (a top-level \
         node of the hierarchy says who serves it)"
    );
    let a = lab.anonymous(&resolve("0.NA/88.999")).await;
    assert_eq!(code(&a), rc::SERVER_NOT_RESP);
    assert!(
        message(&a).contains("not the prefix service of prefix 88.999")
            && message(&a).contains("a top-level node of the hierarchy says who serves it"),
        "{}",
        message(&a)
    );
    // Nothing names the prefixes that are served.
    assert!(!message(&a).contains("12345"));
    let (status, json) = lab.http("GET", "/api/handles/88.999/x", "").await;
    assert_eq!(status, 400);
    assert!(json.contains("prefix 88.999 is not served here"), "{json}");
    // The reference challenges an anonymous LIST_HOMED_NAS (OC 104); so do we.
    let list = request(opcode::LIST_HOMED_NAS, Body::Handle { handle: "/".into() });
    assert_eq!(code(&lab.anonymous(&list).await), rc::AUTHENTICATION_NEEDED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_not_indexes_give_values_their_meaning() {
    // RFC 3651 reserves no index: HS_ADMIN at 7 administers, a URL at 100 does not; a secret
    // at 1000 speaks for 1000:handle; a HS_SECKEY-looking index with another type does not.
    let lab = start().await;
    let w = |mutation| Write {
        mutation,
        actor: "0:TEST".into(),
        time: 1,
    };
    lab.registry
        .apply(w(Mutation::Create {
            handle: "12345/odd".into(),
            values: vec![
                HandleValue::new(
                    7,
                    "HS_ADMIN",
                    AdminRecord::new(admin_perm::ALL, "12345/odd", 1000).encode(),
                ),
                HandleValue::new(
                    100,
                    "URL",
                    String::from_utf8(AdminRecord::new(0x0FFF, "12345/user", 1).encode())
                        .unwrap_or_default(),
                ),
                value(1000, "HS_SECKEY", "oddpw", 0x0C),
                value(301, "EMAIL", "userpw", 0x0E),
            ],
            mode: CreateMode::Plain,
        }))
        .unwrap();
    let odd = secret(1000, "12345/odd", "oddpw");
    let add = values_req(
        opcode::ADD_VALUE,
        "12345/odd",
        vec![value(2, "URL", "https://two", 0x0E)],
    );
    assert_eq!(code(&lab.as_(&add, &odd).await), rc::SUCCESS);
    // An EMAIL at index 301 is not a secret.
    let as_301 = secret(301, "12345/odd", "userpw");
    let rm = request(
        opcode::REMOVE_VALUE,
        Body::RemoveValue {
            handle: "12345/odd".into(),
            indexes: vec![2],
        },
    );
    assert_eq!(
        code(&lab.as_(&rm, &as_301).await),
        rc::AUTHENTICATION_FAILED
    );
    // 1:12345/user is named only by a URL at index 100: no rights.
    let user = secret(1, "12345/user", "userpw");
    assert_eq!(
        code(&lab.as_(&rm, &user).await),
        rc::INSUFFICIENT_PERMISSIONS
    );
    assert_eq!(lab.data("12345/odd", 2).as_deref(), Some("https://two"));
}
