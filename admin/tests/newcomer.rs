//! What a new user meets first: `suyuan keygen`, `init` with a key, a secret or both, output
//! into a closed pipe, and errors that say what to do (a prefix held elsewhere, a node that is
//! not there, a JSON Lines record that lacks a key).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `suyuan ARGS` with no administrator secret in the environment.
fn bare(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SUYUAN_ADMIN_SECRET")
        .output()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn admins(data: &Path) -> Vec<String> {
    std::fs::read_to_string(data.join("node-admins"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn one_record(path: &Path, handle: &str) {
    std::fs::write(
        path,
        format!(
            "{{\"handle\": \"{handle}\", \"values\": [{{\"index\": 1, \"type\": \"URL\", \"data\": \"https://example.org/{handle}\"}}]}}\n"
        ),
    )
    .unwrap();
}

/// `init` with a public key as the only administrator.
fn init_with_key(data: &Path, prefix: &str, pubkey: &Path) {
    let out = bare(&[
        "init",
        "--prefix",
        prefix,
        "--data-dir",
        data.to_str().unwrap(),
        "--admin-pubkey",
        pubkey.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// An online import authenticated as 300:88.888.1/ADMIN with a private-key file.
fn import_with_key(file: &Path, server: &str, key: &Path) -> Output {
    bare(&[
        "import",
        file.to_str().unwrap(),
        "--server",
        server,
        "--auth",
        "300:88.888.1/ADMIN",
        "--key-file",
        key.to_str().unwrap(),
    ])
}

#[test]
fn keygen_writes_a_pair_that_init_and_import_accept_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = bare(&["keygen", "--out", keys.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (name, private) in [
        ("admpriv.pem", true),
        ("admpriv.bin", true),
        ("admpub.pem", false),
        ("admpub.bin", false),
    ] {
        let p = keys.join(name);
        assert!(p.exists(), "{name} written");
        if private {
            assert_eq!(mode(&p), 0o600, "{name} is private");
        }
    }
    assert!(
        std::fs::read_to_string(keys.join("admpriv.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert!(
        std::fs::read_to_string(keys.join("admpub.pem"))
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    // The reference's layouts: HS_PUBKEY data starts with its key type, the private-key file
    // with the "not encrypted" type and then its key type.
    let public = std::fs::read(keys.join("admpub.bin")).unwrap();
    assert_eq!(&public[..4], &[0, 0, 0, 11]);
    assert_eq!(&public[4..15], b"RSA_PUB_KEY");
    let private = std::fs::read(keys.join("admpriv.bin")).unwrap();
    assert_eq!(&private[..8], &[0, 0, 0, 1, 0, 0, 0, 15]);
    assert_eq!(&private[8..23], b"RSA_PRIVCRT_KEY");

    // Never over an existing key, and the refusal names the file.
    let again = bare(&["keygen", "--out", keys.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("admpriv.pem"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(keys.join("admpub.bin")).unwrap(), public);
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("admpub.bin"), b"mine").unwrap();
    let one = bare(&["keygen", "--out", other.to_str().unwrap()]);
    assert_eq!(one.status.code(), Some(1));
    assert!(
        text(&one.stderr).contains("admpub.bin"),
        "{}",
        text(&one.stderr)
    );
    assert!(
        !other.join("admpriv.pem").exists(),
        "a refusal writes nothing"
    );
    assert_eq!(std::fs::read(other.join("admpub.bin")).unwrap(), b"mine");

    // The default is the current directory.
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let here = Command::new(BIN)
        .arg("keygen")
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(here.status.success(), "{}", text(&here.stderr));
    assert!(cwd.join("admpriv.bin").exists() && cwd.join("admpub.pem").exists());

    // A node whose only administrator is the key: both private files authenticate.
    let data = dir.path().join("my-node");
    init_with_key(&data, "88.888.1", &keys.join("admpub.bin"));
    assert_eq!(admins(&data), ["300:88.888.1/ADMIN"]);
    let node = serve(&data);
    let server = node.handle.to_string();
    for (n, key) in ["admpriv.bin", "admpriv.pem"].iter().enumerate() {
        let file = dir.path().join(format!("r{n}.jsonl"));
        let handle = format!("88.888.1/keyed-{n}");
        one_record(&file, &handle);
        let out = import_with_key(&file, &server, &keys.join(key));
        assert!(out.status.success(), "{key}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("1 written"),
            "{}",
            text(&out.stdout)
        );
        let r = bare(&["resolve", &handle, "--server", &server]);
        assert!(
            text(&r.stdout).contains(&format!("https://example.org/{handle}")),
            "{}",
            text(&r.stderr)
        );
    }
    // Someone else's key is refused.
    let stranger = dir.path().join("stranger");
    assert!(
        bare(&["keygen", "--out", stranger.to_str().unwrap()])
            .status
            .success()
    );
    let file = dir.path().join("s.jsonl");
    one_record(&file, "88.888.1/stranger");
    let out = import_with_key(&file, &server, &stranger.join("admpriv.bin"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    stop(node.child);

    // The PEM public key is as good as the binary one.
    let pem_node = dir.path().join("pem-node");
    init_with_key(&pem_node, "88.888.2", &keys.join("admpub.pem"));
}

#[test]
fn init_takes_a_key_a_secret_or_both_and_neither_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    assert!(
        bare(&["keygen", "--out", keys.to_str().unwrap()])
            .status
            .success()
    );
    let pubkey = keys.join("admpub.bin");
    let node = |name: &str| dir.path().join(name);
    let base = |d: &Path| -> Vec<String> {
        [
            "init",
            "--prefix",
            "88.888.1",
            "--data-dir",
            d.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        bare(&a)
    };

    let out = run(base(&node("neither")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("--admin-pubkey") && err.contains("--admin-secret") && err.contains("keygen"),
        "{err}"
    );
    assert!(!node("neither").join("store").exists(), "nothing made");

    // The private half by mistake is refused, and the message says which file to give.
    for private in ["admpriv.bin", "admpriv.pem"] {
        let mut args = base(&node("private"));
        args.extend([
            "--admin-pubkey".into(),
            keys.join(private).to_str().unwrap().into(),
        ]);
        let out = run(args);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.contains("is a private key") && err.contains("admpub.bin"),
            "{err}"
        );
        assert!(!node("private").join("store").exists(), "nothing made");
    }

    let key = pubkey.to_str().unwrap();
    for (name, extra, expected) in [
        (
            "key",
            vec!["--admin-pubkey", key],
            vec!["300:88.888.1/ADMIN"],
        ),
        (
            "secret",
            vec!["--admin-secret", "secretpw"],
            vec!["301:88.888.1/ADMIN"],
        ),
        (
            "both",
            vec!["--admin-secret", "secretpw", "--admin-pubkey", key],
            vec!["300:88.888.1/ADMIN", "301:88.888.1/ADMIN"],
        ),
    ] {
        let mut args = base(&node(name));
        args.extend(extra.into_iter().map(String::from));
        let out = run(args);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert_eq!(admins(&node(name)), expected, "{name}");
    }

    // The node inited with the key alone answers for its administrator; the one with the
    // secret alone has no HS_PUBKEY to show.
    let admin_record = |name: &str| {
        let s = serve(&node(name));
        let server = s.handle.to_string();
        let r = bare(&["resolve", "88.888.1/ADMIN", "--server", &server]);
        stop(s.child);
        text(&r.stdout)
    };
    let listing = admin_record("key");
    assert!(
        listing.contains("HS_PUBKEY") && listing.contains("admin=300:88.888.1/ADMIN"),
        "{listing}"
    );
    let listing = admin_record("secret");
    assert!(
        !listing.contains("HS_PUBKEY") && listing.contains("admin=301:88.888.1/ADMIN"),
        "{listing}"
    );
}

/// A stdout whose reader has already gone: a socket whose other end is closed, so every
/// write fails with EPIPE however little the command prints (a pipe would absorb a short
/// output in its buffer and hide the failure).
fn closed_stdout() -> Stdio {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(ours);
    Stdio::from(std::os::fd::OwnedFd::from(theirs))
}

fn quietly_into_a_closed_stdout(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .stdout(closed_stdout())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(out.status.success(), "{args:?}: {err}");
}

#[test]
fn every_printing_command_ends_quietly_when_stdout_closes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let s = serve_with(&d, &["--demo"]);
    let node = format!("http://{}", s.http);
    let server = s.handle.to_string();
    quietly_into_a_closed_stdout(&["trace", "88.888.1/report-2025", "--node", &node]);
    quietly_into_a_closed_stdout(&["trace", "88.888.1/report-2025", "--json", "--node", &node]);
    quietly_into_a_closed_stdout(&["resolve", "88.888.1/report-2025", "--server", &server]);
    let file = dir.path().join("one.jsonl");
    one_record(&file, "88.888.1/piped");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, std::fs::read(d.join("admin-secret")).unwrap()).unwrap();
    quietly_into_a_closed_stdout(&[
        "import",
        file.to_str().unwrap(),
        "--server",
        &server,
        "--auth",
        "301:88.888.1/ADMIN",
        "--secret-file",
        secret.to_str().unwrap(),
    ]);

    // As a user sees it: `suyuan trace … --json | head -1`, the reader gone after one line.
    let mut child = Command::new(BIN)
        .args(["trace", "88.888.1/report-2025", "--json", "--node", &node])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = first_line(&mut child);
    assert_eq!(first.trim(), "{");
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(101));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    stop(s.child);
}

/// A node on free ports for prefix 88.888.1 (secret `secretpw`).
fn node_in(dir: &Path) -> Server {
    let d = dir.join("node");
    init(&d);
    serve(&d)
}

/// The stderr of a command that must fail (exit 1).
fn refused(args: &[&str]) -> String {
    let out = bare(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    text(&out.stderr)
}

#[test]
fn resolve_of_a_prefix_held_elsewhere_says_where_to_look() {
    let dir = tempfile::tempdir().unwrap();
    let s = node_in(dir.path());
    let server = s.handle.to_string();
    // RC 301: the node's message, then where to find who serves the prefix.
    let err = refused(&[
        "resolve",
        "99.999/x",
        "--server",
        &server,
        "--transport",
        "tcp",
    ]);
    assert!(err.contains("99.999/x: SERVER_NOT_RESP (301)"), "{err}");
    assert!(
        err.contains(&format!(
            "the node at {server} does not serve prefix 99.999; resolve 0.NA/99.999 at a top-level node"
        )),
        "{err}"
    );
    // A bare prefix is the prefix handle, and the answer says how it was read.
    let err = refused(&[
        "resolve",
        "99.999",
        "--server",
        &server,
        "--transport",
        "tcp",
    ]);
    assert!(
        err.contains("99.999 has no slash, so it was read as the prefix handle 0.NA/99.999"),
        "{err}"
    );
    assert!(err.contains("top-level"), "{err}");
    stop(s.child);
}

#[test]
fn trace_of_a_prefix_held_elsewhere_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let s = node_in(dir.path());
    let node = format!("http://{}", s.http);
    let err = refused(&["trace", "99.999/x", "--node", &node]);
    assert!(
        err.contains("prefix 99.999 is not homed at this node") && err.contains("RC 301"),
        "{err}"
    );
    assert!(!err.contains("not found"), "{err}");
    let missing = bare(&["trace", "88.888.1/nothing", "--node", &node]);
    assert!(
        text(&missing.stderr).contains("RC 100"),
        "{}",
        text(&missing.stderr)
    );
    stop(s.child);
}

#[test]
fn trace_reads_a_node_without_a_scheme_as_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = node_in(dir.path());
    let out = bare(&[
        "trace",
        "88.888.1/ADMIN",
        "--json",
        "--node",
        &s.http.to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["root"], "88.888.1/ADMIN");
    let out = bare(&[
        "trace",
        "88.888.1/ADMIN",
        "--node",
        &format!("https://{}", s.http),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("plain HTTP"),
        "{}",
        text(&out.stderr)
    );
    stop(s.child);
}

/// Records whose lines 2, 3 and 4 each lack a key.
fn lacking_keys(path: &Path) {
    std::fs::write(
        path,
        concat!(
            r#"{"handle": "88.888.1/ok", "values": [{"index": 1, "type": "URL", "data": "u"}]}"#,
            "\n",
            r#"{"handle": "88.888.1/no-values"}"#,
            "\n",
            r#"{"values": [{"index": 1, "type": "URL", "data": "u"}]}"#,
            "\n",
            r#"{"handle": "88.888.1/no-type", "values": [{"index": 1, "data": "u"}]}"#,
            "\n",
        ),
    )
    .unwrap();
}

#[test]
fn json_lines_errors_name_the_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    init(&d);
    let file = dir.path().join("bad.jsonl");
    lacking_keys(&file);
    let out = bare(&[
        "import",
        file.to_str().unwrap(),
        "--offline",
        "--data-dir",
        d.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("line 2: missing key \"values\""), "{err}");
    assert!(err.contains("line 3: missing key \"handle\""), "{err}");
    assert!(
        err.contains("line 4: missing key \"type\" in values[0]"),
        "{err}"
    );
}

#[test]
fn a_node_that_is_not_there_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.jsonl");
    one_record(&file, "88.888.1/x");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "secretpw").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap().to_string();
    drop(closed);
    for args in [
        vec![
            "resolve",
            "88.888.1/x",
            "--server",
            &gone,
            "--transport",
            "tcp",
        ],
        vec!["trace", "88.888.1/x", "--node", &gone],
        vec![
            "import",
            file.to_str().unwrap(),
            "--server",
            &gone,
            "--auth",
            "301:88.888.1/ADMIN",
            "--secret-file",
            secret.to_str().unwrap(),
        ],
    ] {
        let err = refused(&args);
        assert_eq!(
            err.to_lowercase().matches("connection refused").count(),
            1,
            "{args:?}: {err}"
        );
    }
}

/// `keygen --ca` makes a federation CA; `keygen --node-cert IDENTITY --ca-dir DIR` a node's
/// certificate naming the identity as its SAN URI; neither overwrites, and a missing CA is
/// named.
#[test]
fn keygen_makes_a_federation_ca_and_node_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, node) = (dir.path().join("ca"), dir.path().join("node"));
    let out = bare(&["keygen", "--ca", "--out", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&ca.join("ca-key.pem")), 0o600);
    let out = bare(&[
        "keygen",
        "--node-cert",
        "0.NA/88.888",
        "--ca-dir",
        ca.to_str().unwrap(),
        "--out",
        node.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&node.join("federation-key.pem")), 0o600);
    let pem = std::fs::read_to_string(node.join("federation-cert.pem")).unwrap();
    let der = suyuan_resolver::tls::certs_from_pem(pem.as_bytes()).unwrap();
    assert_eq!(
        suyuan_federation::fedtls::identity_of(&der[0]).unwrap(),
        "0.NA/88.888"
    );
    // Never over a CA; a directory without one is named.
    let again = bare(&["keygen", "--ca", "--out", ca.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("ca-cert.pem"),
        "{}",
        text(&again.stderr)
    );
    let missing = bare(&[
        "keygen",
        "--node-cert",
        "0.NA/99.9",
        "--ca-dir",
        node.to_str().unwrap(),
        "--out",
        dir.path().join("n2").to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("ca-cert.pem"),
        "{}",
        text(&missing.stderr)
    );
}
