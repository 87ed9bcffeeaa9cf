//! The files of deploy/ and the build context's .dockerignore: the container entrypoint run
//! with `sh` against the built binary (on loopback), and what the .dockerignore keeps out.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::BIN;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `sh deploy/entrypoint.sh` with `suyuan` on its PATH, the data dir `dir/data`, loopback
/// addresses on free ports, and none of the administrator variables of the caller's shell.
fn entrypoint(dir: &Path) -> Command {
    let bin = dir.join("bin");
    if !bin.join("suyuan").exists() {
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(BIN, bin.join("suyuan")).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("sh");
    c.arg(repo().join("deploy/entrypoint.sh"))
        .env("PATH", path)
        .env("SUYUAN_DATA_DIR", dir.join("data"))
        .env("SUYUAN_PREFIX", "12345")
        .env("SUYUAN_HANDLE_ADDR", "127.0.0.1:0")
        .env("SUYUAN_HTTP_ADDR", "127.0.0.1:0")
        .env("SUYUAN_OPS_ADDR", "127.0.0.1:0");
    for v in [
        "SUYUAN_ADMIN_SECRET",
        "SUYUAN_ADMIN_SECRET_FILE",
        "SUYUAN_ADMIN_PUBKEY",
        "SUYUAN_CONFIG",
        "SUYUAN_PUBLIC_ADDRESS",
    ] {
        c.env_remove(v);
    }
    c
}

/// Starts the entrypoint and reads the node's ready line: (child, handle, http, ops).
fn start(mut c: Command) -> (Child, String, String, String) {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("listening ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the entrypoint ended without serving"
        );
    }
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
            .to_string()
    };
    let (h, w, o) = (field("handle="), field("http="), field("ops="));
    (child, h, w, o)
}

fn stop(mut child: Child) {
    // `exec` made the shell the node itself: this ends the node.
    child.kill().unwrap();
    child.wait().unwrap();
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_entrypoint_initialises_with_a_public_key_and_a_secret_file_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "pw-from-file\n").unwrap();
    let pubkey = repo().join("tests/fixtures/reference/keys/admin-300.hs_pubkey.bin");

    let mut c = entrypoint(dir.path());
    c.env("SUYUAN_ADMIN_PUBKEY", &pubkey)
        .env("SUYUAN_ADMIN_SECRET_FILE", &secret);
    let (node, handle, http, ops) = start(c);
    assert_eq!(curl(&["-fsS", &format!("http://{ops}/healthz")]), "ok\n");
    // The public key became HS_PUBKEY 300 of 12345/ADMIN ...
    let out = Command::new(BIN)
        .args([
            "resolve",
            "12345/ADMIN",
            "--server",
            &handle,
            "--index",
            "300",
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("300 HS_PUBKEY"), "{shown}");
    // ... and the file's secret (without its newline) the secret key 301.
    let basic = "301%3A12345%2FADMIN:pw-from-file";
    let url = format!("https://{http}/api/handles/12345/ADMIN?index=301");
    let answer = curl(&["-sk", "-u", basic, &url]);
    assert!(answer.contains(r#""value":"pw-from-file""#), "{answer}");
    stop(node);

    // A later start needs no administrator: it serves the store.
    let (node, _, _, ops) = start(entrypoint(dir.path()));
    assert_eq!(curl(&["-fsS", &format!("http://{ops}/healthz")]), "ok\n");
    stop(node);
}

#[test]
fn without_an_administrator_the_entrypoint_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = entrypoint(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SUYUAN_ADMIN_PUBKEY") && err.contains("SUYUAN_ADMIN_SECRET"),
        "{err}"
    );
    assert!(!dir.path().join("data/store").exists());

    let mut c = entrypoint(dir.path());
    c.env("SUYUAN_ADMIN_PUBKEY", dir.path().join("missing.bin"));
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read SUYUAN_ADMIN_PUBKEY"));
}

/// Whether `path` (relative, `/`-separated) or a folder above it matches one of the
/// .dockerignore `patterns` (`*` within a name, `**` any run of folders; anchored at the root).
fn ignored(patterns: &[&str], path: &str) -> bool {
    fn name_matches(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                name_matches(&p[1..], s) || (!s.is_empty() && name_matches(p, &s[1..]))
            }
            (Some(a), Some(b)) if a == b => name_matches(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn matches(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, _) => true, // a folder matched: everything under it goes too
            (Some(&"**"), _) => matches(&p[1..], s) || (!s.is_empty() && matches(p, &s[1..])),
            (Some(a), Some(b)) => {
                name_matches(a.as_bytes(), b.as_bytes()) && matches(&p[1..], &s[1..])
            }
            (Some(_), None) => false,
        }
    }
    let s: Vec<&str> = path.split('/').collect();
    patterns
        .iter()
        .any(|p| matches(&p.split('/').collect::<Vec<_>>(), &s))
}

#[test]
fn the_build_context_keeps_out_build_output_data_and_keys() {
    let text = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // What `init`, `serve --demo` and `keygen` write, build output, the reference's key files.
    for out in [
        "target/release/suyuan",
        "fuzz/target/x",
        "suyuan-data/store/data.redb",
        "suyuan-data/node-key.pem",
        "suyuan-data/tls-key.pem",
        "suyuan-data/admin-secret",
        "my-node/node-key.pem",
        "elsewhere/data/store/data.redb",
        "elsewhere/data/node-key.pem",
        "admpriv.pem",
        "admpriv.bin",
        "my-node-keys/admpub.bin",
        "keys/admpriv.pem",
        "svr_1/privkey.bin",
        "tests/fixtures/reference/keys/admin-300.priv.pem",
        ".git/config",
    ] {
        assert!(ignored(&patterns, out), "{out} is sent to the build");
    }
    // What the build needs.
    for kept in [
        "Cargo.toml",
        "Cargo.lock",
        "admin/Cargo.toml",
        "admin/src/main.rs",
        "registry/src/store.rs",
        "tests/Cargo.toml",
        "tests/src/lib.rs",
        "deploy/entrypoint.sh",
        "deploy/suyuan.toml",
    ] {
        assert!(!ignored(&patterns, kept), "{kept} is kept out of the build");
        assert!(repo().join(kept).exists(), "{kept}");
    }
}

#[test]
fn the_image_checks_its_health_with_a_tool_it_installs() {
    let c = std::fs::read_to_string(repo().join("deploy/Containerfile")).unwrap();
    let check = c
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<String>();
    assert!(
        check.contains("curl") && check.contains("/healthz"),
        "{check}"
    );
    // The runtime stage is the last FROM; curl must be installed there.
    let runtime = c.rsplit("\nFROM ").next().unwrap();
    assert!(runtime.contains("apt-get install") && runtime.contains("curl"));
}
