//! The comparison tool run with Suyuan on both sides: two nodes initialised alike must answer
//! all of its requests alike, and a node that lacks a handle the other holds must show up as
//! a difference (and fail the run with `--fail-on-diff`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const COMPARE: &str = env!("CARGO_BIN_EXE_suyuan-compare");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/reference/keys")
        .join(name)
}

/// The `suyuan` binary of this workspace, built if it is not (this crate cannot name another
/// package's binary as a dependency).
fn suyuan_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "suyuan", "--bin", "suyuan"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cannot build the suyuan binary");
    let bin = dir.join("suyuan");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

struct Node {
    child: Child,
    handle: String,
    http: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node for prefix 12345 with the reference lab's two administrators: 300 (RSA, the
/// fixture key) and 301 (secret `secretpw`).
fn node(bin: &Path) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(bin)
        .args(["init", "--prefix", "12345", "--data-dir"])
        .arg(&data)
        .args(["--admin-secret", "secretpw", "--admin-pubkey"])
        .arg(fixture("admin-300.hs_pubkey.bin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--handle-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--ops-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let field = |k: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in ready line {line:?}"))
            .to_string()
    };
    let (handle, http) = (field("handle="), field("http="));
    Node {
        child,
        handle,
        http: format!("https://{http}"),
        _dir: dir,
    }
}

fn compare(a: &Node, b: &Node, extra: &[&str]) -> Output {
    Command::new(COMPARE)
        .args(["--a-handle", &a.handle, "--a-http", &a.http])
        .args(["--b-handle", &b.handle, "--b-http", &b.http])
        .args(["--secret", "secretpw", "--tag", "ci", "--rsa-key"])
        .arg(fixture("admin-300.priv.pem"))
        .args(extra)
        .output()
        .unwrap()
}

fn summary(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| {
            panic!(
                "no summary in\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

/// One pair of nodes for both halves: making a node generates its RSA key, which is slow in
/// a debug build.
#[test]
fn nodes_set_up_alike_answer_alike_and_a_one_sided_handle_is_a_difference() {
    let bin = suyuan_bin();
    let (a, b) = (node(&bin), node(&bin));

    // 12345/test1 on A alone (A compared with itself, no case selected, seeds it).
    let seeded = compare(&a, &a, &["--seed", "--only", "no such group"]);
    assert!(seeded.status.success());
    assert!(
        String::from_utf8_lossy(&seeded.stdout).contains("seeded 12345/test1 on A: RC Some(1)"),
        "{}",
        String::from_utf8_lossy(&seeded.stdout)
    );
    let out = compare(&a, &b, &["--only", "RESOLUTION/tcp", "--fail-on-diff"]);
    assert_eq!(out.status.code(), Some(1), "{}", summary(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#"rc: A "1 SUCCESS" | B "100 HANDLE_NOT_FOUND""#),
        "{text}"
    );
    // Without --fail-on-diff the same differences are reported and the run succeeds.
    let out = compare(&a, &b, &["--only", "RESOLUTION/tcp"]);
    assert!(out.status.success());
    assert!(!summary(&out).contains(" 0 answered differently"));

    // Now B gets 12345/test1 too, and every request is answered alike, wording included.
    let out = compare(
        &a,
        &b,
        &[
            "--seed",
            "--fail-on-diff",
            "--strict-text",
            "--home-prefix",
            "12345.ci",
        ],
    );
    let line = summary(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("seeded 12345/test1 on B: RC Some(1)"),
        "{text}"
    );
    assert!(!text.contains("seeded 12345/test1 on A"), "{text}");
    assert!(out.status.success(), "{line}\n{text}");
    let requests: usize = line
        .trim_start_matches("summary: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(requests >= 200, "{line}");
    assert!(text.contains("\nHOME_NA/tcp "), "{text}");
    assert!(
        line.contains(" 0 answered differently (0 differences)"),
        "{line}"
    );
    assert!(line.contains(", 0 more differ only in wording"), "{line}");
    // Everything the run wrote is gone again, as many handles on each side.
    let clean = text.lines().find(|l| l.starts_with("clean-up: ")).unwrap();
    let deleted: Vec<usize> = clean
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(deleted.len(), 2, "{clean}");
    assert!(deleted[0] > 0 && deleted[0] == deleted[1], "{clean}");
}

#[test]
fn addresses_beyond_loopback_are_refused_before_anything_is_sent() {
    for (flag, value) in [
        ("--a-handle", "192.0.2.1:2641"),
        ("--b-http", "https://192.0.2.1:8000"),
        ("--b-http", "https://example.org:8000"),
    ] {
        let mut args = vec![
            "--a-handle",
            "127.0.0.1:9",
            "--a-http",
            "http://127.0.0.1:9",
            "--b-handle",
            "127.0.0.1:9",
            "--b-http",
            "http://127.0.0.1:9",
            "--secret",
            "x",
        ];
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = value;
        let out = Command::new(COMPARE).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("loopback") || err.contains("not an IP address"),
            "{err}"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing may run: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn a_node_that_does_not_answer_stops_the_run() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let silent = format!("127.0.0.1:{port}");
    let out = Command::new(COMPARE)
        .args([
            "--a-handle",
            &silent,
            "--a-http",
            &format!("http://{silent}"),
        ])
        .args([
            "--b-handle",
            &silent,
            "--b-http",
            &format!("http://{silent}"),
        ])
        .args(["--secret", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("A: no Handle answer"), "{err}");
}
