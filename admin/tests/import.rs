//! `suyuan import` as a user runs it: JSON Lines into a running node over one authenticated
//! session, twice (the second run writes nothing); an import killed halfway and run again;
//! a Handle.Net batch file offline, with bad lines reported by number.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use suyuan_codec::message::{Body, rc};
use suyuan_federation::{HandleClient, Transport};

mod common;
use common::*;

fn import(args: &[&str]) -> Output {
    Command::new(BIN).arg("import").args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `n` meter records, each linked to the one before it.
fn jsonl(path: &Path, n: usize) {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            concat!(
                r#"{{"handle": "88.888.1/m-{:05}", "values": ["#,
                r#"{{"index": 1, "type": "URL", "data": {{"format": "string", "value": "https://example.org/m/{}"}}}}, "#,
                r#"{{"index": 2, "type": "mrv.kind", "data": "meter"}}, "#,
                r#"{{"index": 3, "type": "prov.wasDerivedFrom", "data": "88.888.1/m-{:05}"}}, "#,
                r#"{{"index": 4, "type": "mrv.unit", "data": "unit-1", "ttl": 3600, "permissions": "1100"}}]}}"#,
                "\n"
            ),
            i,
            i,
            i.saturating_sub(1)
        ));
    }
    std::fs::write(path, s).unwrap();
}

fn secret_file(dir: &Path) -> String {
    let p = dir.join("secret");
    std::fs::write(&p, "secretpw\n").unwrap();
    p.to_str().unwrap().to_string()
}

fn online_args<'a>(server: &'a str, file: &'a str, secret: &'a str) -> Vec<&'a str> {
    vec![
        file,
        "--server",
        server,
        "--auth",
        "301:88.888.1/ADMIN",
        "--secret-file",
        secret,
    ]
}

fn resolves(server: std::net::SocketAddr, handle: &str) -> Option<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = HandleClient::new(server, Transport::Tcp);
    let m = rt.block_on(client.resolve(handle, &[], &[])).unwrap();
    match m.body {
        Body::ResolutionResponse { values, .. } if m.header.response_code == rc::SUCCESS => Some(
            values
                .iter()
                .map(|v| format!("{}:{}", v.value_type, String::from_utf8_lossy(&v.data)))
                .collect(),
        ),
        _ => None,
    }
}

#[test]
fn json_lines_online_twice_writes_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    init(&d);
    let mut node = serve(&d);
    let file = dir.path().join("meters.jsonl");
    jsonl(&file, 2000);
    let secret = secret_file(dir.path());
    let server = node.handle.to_string();
    let args = online_args(&server, file.to_str().unwrap(), &secret);

    let first = import(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(
        out.contains("2000 records: 2000 written, 0 unchanged, 0 failed"),
        "{out}"
    );
    // Public resolution shows the public values; index 4 (1100) is for administrators only.
    let got = resolves(node.handle, "88.888.1/m-01234").expect("imported record resolves");
    assert_eq!(
        got,
        [
            "URL:https://example.org/m/1234",
            "mrv.kind:meter",
            "prov.wasDerivedFrom:88.888.1/m-01233"
        ]
    );

    let second = import(&args);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let out = text(&second.stdout);
    assert!(
        out.contains("2000 records: 0 written, 2000 unchanged, 0 failed"),
        "{out}"
    );
    assert!(out.contains("nothing written"), "{out}");

    // A changed record is refused by number, the rest still unchanged, exit 1.
    let changed = dir.path().join("changed.jsonl");
    let body = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = body.lines().map(str::to_string).collect();
    lines[6] = lines[6].replace("https://example.org/m/6", "https://example.org/other");
    lines[9] = "{not json".into();
    lines.truncate(20);
    std::fs::write(&changed, lines.join("\n")).unwrap();
    let third = import(&online_args(&server, changed.to_str().unwrap(), &secret));
    assert_eq!(third.status.code(), Some(1));
    let err = text(&third.stderr);
    assert!(
        err.contains("line 7: 88.888.1/m-00006: HANDLE_ALREADY_EXISTS (101)"),
        "{err}"
    );
    assert!(err.contains("line 10: "), "{err}");
    let out = text(&third.stdout);
    assert!(
        out.contains(
            "19 records: 0 written, 18 unchanged, 1 failed; 0 commands skipped, 1 lines unreadable"
        ),
        "{out}"
    );

    // A wrong secret gets nothing written and says why.
    std::fs::write(&secret, "wrongpw").unwrap();
    let wrong = import(&args);
    assert_eq!(wrong.status.code(), Some(1));
    let err = text(&wrong.stderr);
    assert!(
        err.contains("301:88.888.1/ADMIN: AUTHENTICATION_FAILED (403)")
            && err.contains("nothing imported"),
        "{err}"
    );
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

#[test]
fn an_import_killed_halfway_completes_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    init(&d);
    let mut node = serve(&d);
    let file = dir.path().join("meters.jsonl");
    let n = 6000;
    jsonl(&file, n);
    let secret = secret_file(dir.path());
    let server = node.handle.to_string();
    let args = online_args(&server, file.to_str().unwrap(), &secret);
    let mut running = Command::new(BIN)
        .arg("import")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a record a quarter of the way in is there: each look is one resolution,
    // so the loop goes at the node's pace, and the deadline only bounds a stuck import.
    let t = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = HandleClient::new(node.handle, Transport::Tcp);
    while rt
        .block_on(client.resolve("88.888.1/m-01500", &[], &[]))
        .unwrap()
        .header
        .response_code
        != rc::SUCCESS
    {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "import made no progress"
        );
    }
    signal(&running, 9);
    running.wait().unwrap();

    let again = import(&args);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let out = text(&again.stdout);
    let field = |name: &str| -> usize {
        let at = out
            .find(&format!(" {name}"))
            .unwrap_or_else(|| panic!("{out}"));
        out[..at].rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (written, unchanged) = (field("written"), field("unchanged"));
    assert_eq!(written + unchanged, n, "{out}");
    assert!(written > 0 && unchanged >= 1500, "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    for i in [0, 1499, 1500, 4321, n - 1] {
        assert!(
            resolves(node.handle, &format!("88.888.1/m-{i:05}")).is_some(),
            "record {i} missing"
        );
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

#[test]
fn batch_file_offline_reports_lines_and_reruns_clean() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    init(&d);
    let batch = dir.path().join("load.txt");
    std::fs::write(
        &batch,
        "AUTHENTICATE SECKEY:301:88.888.1/ADMIN\n\
         secretpw\n\
         \n\
         CREATE 88.888.1/b-1\n\
         100 HS_ADMIN 86400 1110 ADMIN 301:111111111111:88.888.1/ADMIN\n\
         1 URL 86400 1110 UTF8 https://example.org/b1\n\
         \n\
         CREATE 88.999.9/outside\n\
         1 URL 86400 1110 UTF8 https://example.org/x\n\
         \n\
         DELETE 88.888.1/b-0\n\
         \n\
         CREATE 88.888.1/b-2\n\
         1 URL eighty 1110 UTF8 https://example.org/x\n\
         \n\
         ADD 88.888.1/b-1\n\
         2 EMAIL 86400 1110 UTF8 b1@example.org\n",
    )
    .unwrap();
    let args = [
        batch.to_str().unwrap(),
        "--offline",
        "--data-dir",
        d.to_str().unwrap(),
    ];
    let first = import(&args);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let err = text(&first.stderr);
    assert!(
        err.contains("line 8: 88.999.9/outside: SERVER_NOT_RESP (301)"),
        "{err}"
    );
    assert!(err.contains("line 11: DELETE skipped"), "{err}");
    assert!(
        err.contains("line 14: 88.888.1/b-2: error in handle value ttl string"),
        "{err}"
    );
    assert!(
        text(&first.stdout).contains(
            "3 records: 2 written, 0 unchanged, 1 failed; 1 commands skipped, 1 lines unreadable"
        ),
        "{}",
        text(&first.stdout)
    );
    // The CREATE of b-1 now meets the record its own ADD grew, and is still unchanged.
    let second = import(&args);
    assert!(
        text(&second.stdout).contains("3 records: 0 written, 2 unchanged, 1 failed"),
        "{}\n{}",
        text(&second.stdout),
        text(&second.stderr)
    );

    let mut node = serve(&d);
    let got = resolves(node.handle, "88.888.1/b-1").unwrap();
    assert!(got.contains(&"EMAIL:b1@example.org".to_string()), "{got:?}");
    // Offline while the node holds the store: refused, naming the cause.
    let busy = import(&args);
    assert_eq!(busy.status.code(), Some(1));
    assert!(
        text(&busy.stderr).contains("in use by another process"),
        "{}",
        text(&busy.stderr)
    );
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    // Online without credentials is bad usage.
    let usage = import(&[batch.to_str().unwrap()]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        text(&usage.stderr).contains("--auth"),
        "{}",
        text(&usage.stderr)
    );
}
