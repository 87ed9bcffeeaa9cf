//! A short run of the load generator (the benchmarks themselves are in BENCHMARKS.md, outside
//! the test run): preload, each mode at a low rate against a real node, and the ceiling.

use std::process::{Command, Stdio};

mod common;
use common::*;

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim_end_matches("/s").parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}")) as u64
}

#[test]
fn the_generator_drives_every_mode_and_the_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("node");
    init(&d);
    let out = suyuan(&[
        "bench",
        "preload",
        "--data-dir",
        d.to_str().unwrap(),
        "--prefix",
        "88.888.1",
        "--count",
        "2000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "secretpw\n").unwrap();
    let mut node = serve(&d);
    for (mode, addr) in [
        ("udp", node.handle),
        ("tcp", node.handle),
        ("tcp-connect", node.handle),
        ("rest", node.http),
        ("trace-up", node.http),
        ("trace-down", node.http),
        ("create", node.handle),
    ] {
        let out = suyuan(&[
            "bench",
            "run",
            "--mode",
            mode,
            "--server",
            &addr.to_string(),
            "--keys",
            "2000",
            "--connections",
            "2",
            "--rate",
            "200",
            "--seconds",
            "1",
            // A debug build on a loaded machine is slow; every request must still be answered.
            "--timeout-ms",
            "30000",
            "--secret-file",
            secret.to_str().unwrap(),
        ]);
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(field(&line, "sent"), 200, "{line}");
        assert_eq!(field(&line, "answered"), 200, "{mode}: {line}");
        assert_eq!(field(&line, "errors"), 0, "{mode}: {line}");
        assert_eq!(field(&line, "lost"), 0, "{mode}: {line}");
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();

    // The ceiling: the echo server answers everything the generator sends.
    let mut echo = Command::new(BIN)
        .args(["bench", "echo-udp", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let line = first_line(&mut echo);
    let addr = line
        .trim()
        .strip_prefix("listening udp=")
        .unwrap()
        .to_string();
    let out = suyuan(&[
        "bench",
        "run",
        "--mode",
        "udp",
        "--server",
        &addr,
        "--rate",
        "500",
        "--seconds",
        "1",
    ]);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(field(&line, "answered"), 500, "{line}");
    echo.kill().unwrap();
    echo.wait().unwrap();
}
