//! What the binary's tests share: running `suyuan` commands, a node started on free ports.
#![allow(dead_code)] // each test file uses its own part of this

pub mod faults;
pub mod pg;
pub mod rest;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_suyuan");

pub fn suyuan(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("SUYUAN_ADMIN_SECRET", "secretpw")
        .output()
        .unwrap()
}

pub fn init(dir: &std::path::Path) {
    let store = node_store_args();
    let mut args = vec![
        "init",
        "--prefix",
        "88.888.1",
        "--data-dir",
        dir.to_str().unwrap(),
    ];
    args.extend(store.iter().map(String::as_str));
    let out = suyuan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Server {
    pub child: Child,
    pub handle: SocketAddr,
    pub http: SocketAddr,
    pub ops: SocketAddr,
    /// The resolver face, when `--resolver-addr` opened one.
    pub resolver: Option<SocketAddr>,
    /// Node-to-node QUIC, when `--quic-addr` opened it.
    pub quic: Option<SocketAddr>,
}

/// Starts `suyuan serve` on free ports with `extra` arguments and reads the ready line.
pub fn serve_with(dir: &std::path::Path, extra: &[&str]) -> Server {
    serve_at(dir, "127.0.0.1:0", "127.0.0.1:0", extra)
}

/// Starts `suyuan serve` on the given Handle and HTTP addresses (operations on a free port).
pub fn serve_at(dir: &std::path::Path, handle: &str, http: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
            "--handle-addr",
            handle,
            "--http-addr",
            http,
            "--ops-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env_remove("SUYUAN_ADMIN_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    // listening handle=127.0.0.1:40123 ops=127.0.0.1:40125
    let field = |k: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in ready line {line:?}"))
            .parse()
            .unwrap()
    };
    let (handle, http, ops) = (field("handle="), field("http="), field("ops="));
    assert!(line.starts_with("listening "), "{line}");
    let optional = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(|a| a.parse().unwrap())
    };
    Server {
        child,
        handle,
        http,
        ops,
        resolver: optional("resolver="),
        quic: optional("quic="),
    }
}

/// The first line a child prints (its ready line, the first line of its answer).
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .unwrap();
    line
}

/// Stops a node as an operator does (SIGTERM) and checks that it ends cleanly.
pub fn stop(mut child: Child) {
    signal(&child, 15);
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("stops on SIGTERM");
    assert!(status.success(), "{status}");
}

pub fn serve(dir: &std::path::Path) -> Server {
    serve_with(dir, &[])
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY-free: libc::kill is a plain syscall wrapper.
    let rc = unsafe_free_kill(child.id() as i32, sig);
    assert_eq!(rc, 0);
}

pub fn unsafe_free_kill(pid: i32, sig: i32) -> i32 {
    // The workspace forbids unsafe code; the kill(1) command does the same.
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    if status.success() { 0 } else { -1 }
}

/// Waits for the child to exit, at most `within`; a child still running then is killed (so the
/// waiting thread ends) and `None` returned. The exit itself ends the wait, not a poll.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id() as i32;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = scope.spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            status
        });
        match rx.recv_timeout(within) {
            Ok(()) => waiter.join().unwrap().ok(),
            Err(_) => {
                unsafe_free_kill(pid, 9);
                let _ = waiter.join();
                None
            }
        }
    })
}

/// `--store URL` for `init` when the node tests run on PostgreSQL (`SUYUAN_TEST_NODE_STORE`
/// names the server; each node gets a schema of its own), nothing otherwise.
pub fn node_store_args() -> Vec<String> {
    match std::env::var("SUYUAN_TEST_NODE_STORE") {
        Ok(u) if !u.is_empty() => vec!["--store".into(), pg::schema_on(&u, "node")],
        _ => Vec::new(),
    }
}

/// The commands of the README's block after `<!-- MARKER -->`, each `$ command` with the lines
/// it printed.
pub fn readme_block(marker: &str) -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let block = readme
        .split(&format!("<!-- {marker} -->"))
        .nth(1)
        .and_then(|b| b.split("```").nth(1))
        .unwrap_or_else(|| panic!("a {marker} block in README.md"));
    let mut examples: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines().filter(|l| !l.is_empty()) {
        match line.strip_prefix("$ ") {
            Some(cmd) => examples.push((cmd.to_string(), Vec::new())),
            None => examples
                .last_mut()
                .expect("output before any command")
                .1
                .push(line.to_string()),
        }
    }
    examples
}

/// Runs `cmd` with `sh -c` in `dir`, with this build's `suyuan` first on the PATH; answers what
/// it printed, after checking that it succeeded.
pub fn sh(cmd: &str, dir: &std::path::Path) -> String {
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("PATH", path)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}
