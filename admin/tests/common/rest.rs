//! REST over real HTTP: a node set up like the reference lab, and curl to talk to it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{BIN, Server, serve_with};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/reference");

/// A node for prefix 12345 with the reference fixtures' administrator: HS_PUBKEY 300 from
/// keys/admin-300.pub.pem, HS_SECKEY 301 `secretpw`.
pub fn reference_like_node(dir: &Path, extra: &[&str]) -> Server {
    let d = dir.join("node");
    let out = Command::new(BIN)
        .args(["init", "--prefix", "12345", "--data-dir"])
        .arg(&d)
        .arg("--admin-pubkey")
        .arg(format!("{FIXTURES}/keys/admin-300.pub.pem"))
        .args(super::node_store_args())
        .env("SUYUAN_ADMIN_SECRET", "secretpw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serve_with(&d, extra)
}

/// An HTTP answer as curl received it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Runs curl (`-k`: the node's certificate is self-signed) and parses what it printed.
pub fn curl(args: &[&str]) -> Answer {
    let out = Command::new("curl")
        .args(["-sk", "-i", "--max-time", "30", "-H", "Expect:"])
        .args(args)
        .output()
        .expect("curl must be installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}
