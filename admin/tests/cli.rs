//! The `suyuan` binary itself: init, serve (ready line, SIGTERM), resolve, bad usage, and a
//! `kill -9` of the server while clients write, after which every acknowledged write is there.

use std::process::Command;
use std::time::Duration;

use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::value::HandleValue;
use suyuan_federation::{Credentials, HandleClient, Transport};

mod common;
use common::*;

#[test]
fn serve_needs_an_initialised_data_dir_and_init_refuses_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    let out = suyuan(&["serve", "--data-dir", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("suyuan init"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    init(&d);
    let again = suyuan(&[
        "init",
        "--prefix",
        "88.888.1",
        "--data-dir",
        d.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a node"));
    let no_secret = Command::new(BIN)
        .args([
            "init",
            "--prefix",
            "x",
            "--data-dir",
            dir.path().join("n2").to_str().unwrap(),
        ])
        .env_remove("SUYUAN_ADMIN_SECRET")
        .output()
        .unwrap();
    // Neither a secret nor a public key: bad usage.
    assert_eq!(no_secret.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("SUYUAN_ADMIN_SECRET"));
    let bad_usage = suyuan(&["resolve"]);
    assert_eq!(bad_usage.status.code(), Some(2));
    // The key is private to the node.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("node-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn serve_answers_resolve_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let mut s = serve(dir.path());
    let server = s.handle.to_string();
    let out = suyuan(&["resolve", "88.888.1/ADMIN", "--server", &server]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("HS_ADMIN"), "{stdout}");
    assert!(
        !stdout.contains("HS_SECKEY"),
        "the secret is not public: {stdout}"
    );
    let missing = suyuan(&[
        "resolve",
        "88.888.1/nothing",
        "--server",
        &server,
        "--transport",
        "tcp",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("88.888.1/nothing: HANDLE_NOT_FOUND (100)")
    );
    // siteinfo.json names the address and port actually bound, for reference clients.
    let site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("siteinfo.json")).unwrap()).unwrap();
    assert_eq!(site["servers"][0]["interfaces"][0]["port"], s.handle.port());
    // The version the node speaks, as the reference's site info has it: clients take the lower
    // of the site's and their own.
    assert_eq!(site["protocolVersion"], "2.11");
    // The operations endpoint answers.
    let ops = std::net::TcpStream::connect(s.ops).unwrap();
    drop(ops);
    signal(&s.child, 15);
    let status = wait_exit(&mut s.child, Duration::from_secs(20)).expect("serve stops on SIGTERM");
    assert!(status.success());
}

/// Acknowledged writes before the kill: enough to span several group commits.
const KILL_AFTER: usize = 200;

#[test]
fn kill_9_while_clients_write_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let mut s = serve(dir.path());
    let addr = s.handle;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked: Vec<String> = rt.block_on(async move {
        let creds = Credentials::Secret {
            index: 301,
            handle: "88.888.1/ADMIN".into(),
            secret: b"secretpw".to_vec(),
        };
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // The kill comes once enough writes were acknowledged, whatever time that takes.
        let enough = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for t in 0..4 {
            let (creds, acked, enough) = (creds.clone(), acked.clone(), enough.clone());
            tasks.push(tokio::spawn(async move {
                let client = HandleClient::new(addr, Transport::Tcp)
                    .with_tcp_timeout(Duration::from_secs(5));
                for i in 0.. {
                    let h = format!("88.888.1/k{t}-{i}");
                    let m = Message::request(
                        opcode::CREATE_HANDLE,
                        flags::CLIENT_DEFAULT,
                        client.next_request_id(),
                        0,
                        Body::HandleValues {
                            handle: h.clone(),
                            values: vec![HandleValue::new(1, "URL", "https://example.org/k")],
                        },
                    );
                    match client.send_authenticated(&m, &creds).await {
                        Ok(out) if out[0].header.response_code == rc::SUCCESS => {
                            let mut a = acked.lock().unwrap();
                            a.push(h);
                            if a.len() == KILL_AFTER {
                                enough.notify_one();
                            }
                        }
                        Ok(out) => panic!("{h}: {:?}", out[0].body),
                        Err(_) => return, // the server is gone
                    }
                }
            }));
        }
        tokio::time::timeout(Duration::from_secs(120), enough.notified())
            .await
            .expect("the clients write");
        s.child.kill().unwrap(); // SIGKILL, with writes still in flight
        s.child.wait().unwrap();
        for t in tasks {
            let _ = t.await;
        }
        acked.lock().unwrap().clone()
    });
    assert!(acked.len() >= KILL_AFTER, "{}", acked.len());
    // Restart on the same data dir: every acknowledged handle resolves.
    let s2 = serve(dir.path());
    let addr = s2.handle;
    rt.block_on(async move {
        let client = HandleClient::new(addr, Transport::Udp);
        for h in &acked {
            let r = client.resolve(h, &[], &[]).await.unwrap();
            assert_eq!(
                r.header.response_code,
                rc::SUCCESS,
                "acknowledged {h} lost after kill -9"
            );
        }
    });
    stop(s2.child);
}

#[test]
fn demo_initialises_an_empty_data_dir_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let start = || serve_with(&d, &["--demo"]);
    let first = start();
    // The demo is loaded: the report traces up through mrv.measuredBy to three meters.
    let node = format!("http://{}", first.http);
    let out = suyuan(&[
        "trace",
        "88.888.1/report-2025",
        "--up",
        "--json",
        "--node",
        &node,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let meters: std::collections::HashSet<&str> = j["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["rel"] == "mrv.measuredBy")
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert!(meters.len() >= 3, "{meters:?}");
    let down = suyuan(&[
        "trace",
        "88.888.1/meter-coal-2",
        "--down",
        "--json",
        "--node",
        &node,
    ]);
    let j: serde_json::Value = serde_json::from_slice(&down.stdout).unwrap();
    assert!(
        j["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["handle"] == "88.888.1/report-2025")
    );
    let first = first.child;
    stop(first);
    use std::os::unix::fs::PermissionsExt;
    let secret = d.join("admin-secret");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&secret).unwrap();
    // The second run serves what is there: same secret, same node.
    let second = start().child;
    stop(second);
    assert_eq!(std::fs::read(&secret).unwrap(), before);
}

#[test]
fn trace_through_the_http_api_and_reindex() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let s = serve(dir.path());
    let addr = s.handle;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let creds = Credentials::Secret {
            index: 301,
            handle: "88.888.1/ADMIN".into(),
            secret: b"secretpw".to_vec(),
        };
        let client = HandleClient::new(addr, Transport::Tcp);
        let records: [(&str, Vec<HandleValue>); 4] = [
            (
                "88.888.1/meter",
                vec![HandleValue::new(1, "mrv.kind", "meter")],
            ),
            (
                "88.888.1/reading",
                vec![
                    HandleValue::new(1, "mrv.kind", "reading"),
                    HandleValue::new(2, "mrv.value", "12.5"),
                    HandleValue::new(3, "mrv.time", "2025-03-02T08:00:00Z"),
                    HandleValue::new(2001, "mrv.measuredBy", "88.888.1/meter"),
                ],
            ),
            (
                "88.888.1/figure",
                vec![
                    HandleValue::new(1, "mrv.kind", "figure"),
                    HandleValue::new(2, "mrv.period", "2025-03"),
                    HandleValue::new(2001, "prov.wasDerivedFrom", "88.888.1/reading"),
                ],
            ),
            (
                "88.888.1/report",
                vec![
                    HandleValue::new(1, "mrv.kind", "annual-report"),
                    HandleValue::new(2001, "mrv.reports", "88.888.1/figure"),
                    HandleValue::new(2002, "mrv.usesFactor", "88.999.7/factor-2025"),
                ],
            ),
        ];
        for (h, values) in records {
            let m = Message::request(
                opcode::CREATE_HANDLE,
                flags::CLIENT_DEFAULT,
                client.next_request_id(),
                0,
                Body::HandleValues {
                    handle: h.into(),
                    values,
                },
            );
            assert_eq!(
                client.send_authenticated(&m, &creds).await.unwrap()[0]
                    .header
                    .response_code,
                rc::SUCCESS,
                "{h}"
            );
        }
    });
    let node = format!("http://{}", s.http);
    let out = suyuan(&["trace", "88.888.1/report", "--node", &node, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["direction"], "up");
    assert!(
        j["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["rel"] == "mrv.measuredBy" && e["to"] == "88.888.1/meter")
    );
    assert_eq!(j["remote"][0]["prefix"], "88.999.7");
    let tree = suyuan(&["trace", "88.888.1/report", "--node", &node]);
    let text = String::from_utf8_lossy(&tree.stdout);
    assert!(
        text.starts_with("88.888.1/report (annual-report)"),
        "{text}"
    );
    assert!(
        text.contains("mrv.measuredBy → 88.888.1/meter (meter)"),
        "{text}"
    );
    assert!(text.contains("value=12.5"), "{text}");
    assert!(text.contains("remote: 88.999.7/factor-2025"), "{text}");
    let down = suyuan(&[
        "trace",
        "88.888.1/meter",
        "--down",
        "--node",
        &node,
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&down.stdout).unwrap();
    assert!(
        j["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["handle"] == "88.888.1/report"),
        "the meter reaches the report"
    );
    // A window outside March drops the reading and the figure.
    let april = suyuan(&[
        "trace",
        "88.888.1/report",
        "--from",
        "2025-04",
        "--to",
        "2025-04",
        "--node",
        &node,
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&april.stdout).unwrap();
    assert_eq!(j["nodes"].as_array().unwrap().len(), 1);
    // Clear errors.
    let missing = suyuan(&["trace", "88.888.1/nothing", "--node", &node]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("RC 100"));
    let bad = suyuan(&[
        "trace",
        "88.888.1/report",
        "--from",
        "yesterday",
        "--node",
        &node,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("HTTP 400"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    stop(s.child);
    let r = suyuan(&["reindex", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("reindexed 5 records"));
}
