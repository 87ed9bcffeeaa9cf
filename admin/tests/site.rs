//! A three-server site on loopback as an operator builds it: `init` each server with its
//! number, `suyuan site merge` their siteinfo.json files, `serve --site` each on the merged
//! file; then every handle is written to and answered by the one server its hash picks, the
//! others answer RC 301, and `suyuan resolve --site` finds each handle by itself.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Output;

use suyuan_codec::message::{Body, opcode, rc};
use suyuan_codec::site::SiteInfo;
use suyuan_federation::{HandleClient, Transport};

mod common;
use common::*;

const N: usize = 3;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A port free on TCP and UDP both, for a server whose site file must name its port before
/// it runs (the site file is made from every server's before any serves).
fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Member {
    dir: PathBuf,
    handle_port: u16,
    http_port: u16,
}

fn init_member(root: &Path, num: usize) -> Member {
    let dir = root.join(format!("svr_{num}"));
    let (handle_port, http_port) = (free_port(), free_port());
    let out = suyuan(&[
        "init",
        "--prefix",
        "88.888.1",
        "--data-dir",
        dir.to_str().unwrap(),
        "--handle-port",
        &handle_port.to_string(),
        "--http-port",
        &http_port.to_string(),
        "--site-servers",
        &N.to_string(),
        "--server-num",
        &num.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    Member {
        dir,
        handle_port,
        http_port,
    }
}

fn siteinfo(m: &Member) -> String {
    m.dir.join("siteinfo.json").to_str().unwrap().to_string()
}

fn merge(files: &[String], out: &Path) -> Output {
    let mut args = vec!["site", "merge", "--out", out.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    suyuan(&args)
}

fn serve_member(m: &Member, site: &Path) -> Server {
    serve_at(
        &m.dir,
        &format!("127.0.0.1:{}", m.handle_port),
        &format!("127.0.0.1:{}", m.http_port),
        &["--site", site.to_str().unwrap()],
    )
}

/// The answer's response code and message to a resolution of `handle` at `server`.
fn ask(server: SocketAddr, handle: &str) -> (u32, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = HandleClient::new(server, Transport::Udp);
    let m = rt.block_on(client.resolve(handle, &[], &[])).unwrap();
    let msg = match m.body {
        Body::Error { message } => message.unwrap_or_default(),
        _ => String::new(),
    };
    (m.header.response_code, msg)
}

fn site_info_of(server: SocketAddr) -> SiteInfo {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = HandleClient::new(server, Transport::Tcp);
    let req = client.request(opcode::GET_SITE_INFO, 0, Body::Empty);
    match rt.block_on(client.send(&req)).unwrap().body {
        Body::SiteInfo(s) => s,
        b => panic!("not a site: {b:?}"),
    }
}

#[test]
fn three_servers_answer_their_partitions_and_resolve_finds_each_handle() {
    let root = tempfile::tempdir().unwrap();
    let members: Vec<Member> = (1..=N).map(|i| init_member(root.path(), i)).collect();
    let files: Vec<String> = members.iter().map(siteinfo).collect();
    let site_path = root.path().join("siteinfo.json");

    // A missing server, or the same server twice, is refused by name.
    let two = merge(&files[..2], &site_path);
    assert_eq!(two.status.code(), Some(1));
    assert!(
        text(&two.stderr).contains("no file for server 3"),
        "{}",
        text(&two.stderr)
    );
    let twice = merge(
        &[files[0].clone(), files[0].clone(), files[2].clone()],
        &site_path,
    );
    assert!(
        text(&twice.stderr).contains("are both server 1"),
        "{}",
        text(&twice.stderr)
    );
    assert!(!site_path.exists());

    let merged = merge(&files, &site_path);
    assert!(merged.status.success(), "{}", text(&merged.stderr));
    let site = suyuan_codec::json::site_from_json(
        &serde_json::from_str(&std::fs::read_to_string(&site_path).unwrap()).unwrap(),
        &suyuan_codec::json::JsonLimits::DEFAULT,
    )
    .unwrap();
    let ids: Vec<u32> = site.servers.iter().map(|s| s.server_id).collect();
    assert_eq!(ids, [1, 2, 3]);

    // A server of a site does not serve as if it were alone.
    let alone = suyuan(&["serve", "--data-dir", members[1].dir.to_str().unwrap()]);
    assert_eq!(alone.status.code(), Some(1));
    assert!(
        text(&alone.stderr).contains("server 2 of a 3-server site"),
        "{}",
        text(&alone.stderr)
    );

    // Each server is preloaded with the benchmark records that hash to it.
    let mut preloaded = 0;
    for m in &members {
        let out = suyuan(&[
            "bench",
            "preload",
            "--data-dir",
            m.dir.to_str().unwrap(),
            "--prefix",
            "88.888.1",
            "--count",
            "300",
            "--site",
            site_path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let said = text(&out.stderr);
        let n: u64 = said
            .split("preload: ")
            .last()
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{said}"));
        assert!(n < 300, "{said}");
        preloaded += n;
    }
    assert_eq!(preloaded, 300);

    let servers: Vec<Server> = members
        .iter()
        .map(|m| serve_member(m, &site_path))
        .collect();
    for s in &servers {
        assert_eq!(
            site_info_of(s.handle),
            site,
            "each server publishes the merged site"
        );
    }

    // The same records imported into every server: each takes the handles that hash to it
    // and refuses the others with RC 301.
    let handles: Vec<String> = (0..30).map(|i| format!("88.888.1/m-{i:03}")).collect();
    let jsonl = root.path().join("records.jsonl");
    let lines: String = handles
        .iter()
        .map(|h| {
            format!(
                "{{\"handle\":\"{h}\",\"values\":[{{\"index\":1,\"type\":\"URL\",\"data\":{{\"format\":\"string\",\"value\":\"https://example.org/{h}\"}}}}]}}\n"
            )
        })
        .collect();
    std::fs::write(&jsonl, lines).unwrap();
    let secret = root.path().join("secret");
    std::fs::write(&secret, "secretpw\n").unwrap();
    let mut held = [0usize; N];
    for (i, s) in servers.iter().enumerate() {
        let out = suyuan(&[
            "import",
            jsonl.to_str().unwrap(),
            "--server",
            &s.handle.to_string(),
            "--auth",
            "301:88.888.1/ADMIN",
            "--secret-file",
            secret.to_str().unwrap(),
        ]);
        let expected = handles
            .iter()
            .filter(|h| site.server_index_for(h) == Some(i))
            .count();
        held[i] = expected;
        let report = text(&out.stdout);
        assert!(
            report.contains(&format!("{expected} written")),
            "server {}: {report}\n{}",
            i + 1,
            text(&out.stderr)
        );
        assert!(
            report.contains(&format!("{} failed", handles.len() - expected)),
            "{report}"
        );
    }
    assert_eq!(held.iter().sum::<usize>(), handles.len());
    assert!(held.iter().all(|&n| n > 0), "{held:?}");

    for h in &handles {
        let owner = site.server_index_for(h).unwrap();
        for (i, s) in servers.iter().enumerate() {
            let (code, msg) = ask(s.handle, h);
            if i == owner {
                assert_eq!(code, rc::SUCCESS, "{h} at its server {}", i + 1);
            } else {
                // The reference server answers a handle of another server of its site with
                // RC 301 "Request was hashed incorrectly", before it looks at the prefix.
                assert_eq!(code, rc::SERVER_NOT_RESP, "{h} at server {}", i + 1);
                assert!(msg.starts_with("Request was hashed incorrectly"), "{msg}");
            }
        }
        let out = suyuan(&["resolve", h, "--site", site_path.to_str().unwrap()]);
        assert!(out.status.success(), "{h}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(&format!("https://example.org/{h}")),
            "{}",
            text(&out.stdout)
        );
    }
    // The load generator sends each request to the server of its handle: every answer is a
    // record or a planned miss. Sent all to one server, two thirds are RC 301 (errors).
    let bench = |target: &[&str]| {
        let mut args = vec![
            "bench",
            "run",
            "--mode",
            "udp",
            "--keys",
            "300",
            "--rate",
            "300",
            "--seconds",
            "1",
        ];
        args.extend_from_slice(target);
        let out = suyuan(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let line = text(&out.stdout);
        let field = |k: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in {line}"))
        };
        (field("answered"), field("errors"))
    };
    assert_eq!(bench(&["--site", site_path.to_str().unwrap()]), (300, 0));
    let (answered, errors) = bench(&["--server", &servers[0].handle.to_string()]);
    assert_eq!(answered, 300);
    assert!(
        (100..300).contains(&errors),
        "{errors} of 300 answered RC 301"
    );

    // The trace API, which reads the store itself, is partitioned too: RC 301, HTTP 400 (the
    // status the REST API gives RC 301, as the reference's does).
    let h = &handles[0];
    let owner = site.server_index_for(h).unwrap();
    for (i, s) in servers.iter().enumerate() {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}/api/trace/{h}", s.http))
            .output()
            .unwrap();
        let want = if i == owner { "200" } else { "400" };
        assert_eq!(text(&out.stdout), want, "trace of {h} at server {}", i + 1);
    }

    // The prefix's administrator handle hashes to one server too.
    let admin_owner = site.server_index_for("88.888.1/ADMIN").unwrap();
    let (code, _) = ask(servers[(admin_owner + 1) % N].handle, "88.888.1/ADMIN");
    assert_eq!(code, rc::SERVER_NOT_RESP);

    // A site file that does not list a server as it is is refused at start.
    let mut moved = site.clone();
    moved.servers[0].interfaces[0].port = 1;
    let moved_path = root.path().join("moved.json");
    std::fs::write(
        &moved_path,
        serde_json::to_string(&suyuan_codec::json::site_to_json(&moved)).unwrap(),
    )
    .unwrap();
    for s in servers {
        stop(s.child);
    }
    let out = suyuan(&[
        "serve",
        "--data-dir",
        members[0].dir.to_str().unwrap(),
        "--handle-addr",
        &format!("127.0.0.1:{}", members[0].handle_port),
        "--http-addr",
        &format!("127.0.0.1:{}", members[0].http_port),
        "--ops-addr",
        "127.0.0.1:0",
        "--site",
        moved_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("merge again"),
        "{}",
        text(&out.stderr)
    );
}
