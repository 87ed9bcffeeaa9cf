//! `suyuan trace`: ask a running node's trace API and print the chain as an indented tree (or
//! the JSON answer with `--json`); `suyuan reindex`: rebuild a stopped store's link and alias
//! indexes.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// A handle, or an OID / Ecode / GS1 Digital Link bound to one.
    handle: String,
    /// Follow links to the sources (the default).
    #[arg(long, conflicts_with = "down")]
    up: bool,
    /// Follow the reverse index to everything the record fed.
    #[arg(long)]
    down: bool,
    #[arg(long, default_value_t = 16)]
    depth: u32,
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
    /// Follow only this relation (repeatable).
    #[arg(long = "rel", value_name = "R")]
    rels: Vec<String>,
    /// Window start: an RFC 3339 instant or a period (2025-03, 2025).
    #[arg(long)]
    from: Option<String>,
    /// Window end (a period counts to its end).
    #[arg(long)]
    to: Option<String>,
    /// Print the API's JSON answer (with each record's transparency-log proof, for `suyuan
    /// verify`).
    #[arg(long)]
    json: bool,
    /// Leave the proofs out of the JSON answer.
    #[arg(long)]
    no_proofs: bool,
    /// The node's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    node: String,
}

pub(crate) fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.1 GET (the trace API is served over plain HTTP on loopback by default).
pub(crate) async fn http_get(base: &str, path_and_query: &str) -> Result<(u16, String)> {
    let host = node_host(base)?;
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .with_context(|| format!("cannot reach the node at {host}"))?;
    let req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP status")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

/// The `HOST:PORT` of `--node`: `http://HOST:PORT`, or `HOST:PORT` alone (read as http://).
fn node_host(base: &str) -> Result<&str> {
    if base.starts_with("https://") {
        bail!(
            "--node {base:?}: trace speaks plain HTTP; give the node's HTTP address (http://HOST:PORT)"
        );
    }
    let rest = base.strip_prefix("http://").unwrap_or(base);
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#']) || host.contains("://") {
        bail!("--node {base:?}: expected http://HOST:PORT or HOST:PORT");
    }
    Ok(host)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub async fn run(a: TraceArgs) -> Result<ExitCode> {
    let direction = if a.down { "down" } else { "up" };
    let mut q = format!("direction={direction}&depth={}&limit={}", a.depth, a.limit);
    for r in &a.rels {
        q.push_str(&format!("&rel={}", pct(r)));
    }
    if let Some(f) = &a.from {
        q.push_str(&format!("&from={}", pct(f)));
    }
    if let Some(t) = &a.to {
        q.push_str(&format!("&to={}", pct(t)));
    }
    // The tree shows no proofs: do not make the node build them.
    if a.no_proofs || !a.json {
        q.push_str("&proofs=false");
    }
    let (status, body) = http_get(&a.node, &format!("/api/trace/{}?{q}", pct(&a.handle))).await?;
    let j: Json = serde_json::from_str(&body)
        .with_context(|| format!("the node answered {status} with no JSON"))?;
    if status != 200 {
        let code = j["responseCode"].as_u64().unwrap_or(0);
        bail!(
            "{}: {} (RC {code}, HTTP {status})",
            a.handle,
            j["message"].as_str().unwrap_or("refused")
        );
    }
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&j)?)?;
    } else {
        use std::io::IsTerminal;
        crate::emit(&render_tree(&j, std::io::stdout().is_terminal()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A node's derivation check as a mark: `✔`, `✘ expected … computed …`, `? why`; coloured
/// (green, red, yellow) when `colour`.
fn check_mark(n: &Json, stored: Option<&str>, colour: bool) -> String {
    let c = &n["check"];
    let paint = |code: &str, s: String| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        }
    };
    // Figures are shown with the decimals the record writes its own with.
    let decimals = stored
        .and_then(|s| s.split_once('.'))
        .map_or(0, |(_, d)| d.len());
    let num = |x: &Json| {
        x.as_f64()
            .map(|x| format!("{x:.decimals$}"))
            .unwrap_or_default()
    };
    match c["status"].as_str() {
        Some("green") => paint("32", " ✔".into()),
        Some("red") => {
            let diff = match (c["computed"].as_f64(), c["expected"].as_f64()) {
                (Some(a), Some(b)) => format!(" (difference {:+.decimals$})", a - b),
                _ => String::new(),
            };
            paint(
                "31",
                format!(
                    " ✘ expected {} computed {}{diff}",
                    num(&c["expected"]),
                    num(&c["computed"])
                ),
            )
        }
        Some(_) => paint(
            "33",
            format!(" ? {}", c["reason"].as_str().unwrap_or("not checked")),
        ),
        None => String::new(),
    }
}

/// The answer as an indented tree: each node with its kind and key values and the mark of its
/// derivation check, each child under the relation that leads to it; a node reached twice is
/// shown once and then referred to. `colour` paints the marks (for a terminal).
pub fn render_tree(t: &Json, colour: bool) -> String {
    let up = t["direction"] == "up";
    let empty = Vec::new();
    let nodes = t["nodes"].as_array().unwrap_or(&empty);
    let edges = t["edges"].as_array().unwrap_or(&empty);
    let here = nodes
        .iter()
        .find(|n| n["handle"] == t["root"])
        .and_then(|n| n["servedBy"].as_str());
    let describe = |h: &str| -> String {
        let Some(n) = nodes.iter().find(|n| n["handle"] == h) else {
            return h.to_string();
        };
        // Records another node answered for say which.
        let by = match n["servedBy"].as_str() {
            Some(b) if Some(b) != here => format!("  [served by {b}]"),
            _ => String::new(),
        };
        let kind = n["kind"]
            .as_str()
            .map(|k| format!(" ({k})"))
            .unwrap_or_default();
        let mut keys = Vec::new();
        for v in n["values"].as_array().unwrap_or(&empty) {
            let t = v["type"].as_str().unwrap_or("");
            if [
                "mrv.value",
                "mrv.unit",
                "mrv.time",
                "mrv.period",
                "mrv.formula",
                "DIGEST",
            ]
            .contains(&t)
            {
                let mut d = v["data"]["value"]
                    .as_str()
                    .or(v["data"].as_str())
                    .unwrap_or("");
                // A formula is shown by its name; the check's mark says how it came out.
                if t == "mrv.formula" {
                    d = d
                        .split_once('=')
                        .map_or("(unnamed)", |(name, _)| name.trim());
                }
                keys.push(format!("{}={d}", t.trim_start_matches("mrv.")));
            }
        }
        let keys = if keys.is_empty() {
            String::new()
        } else {
            format!("  {}", keys.join(" "))
        };
        let stored = n["values"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["type"] == "mrv.value"))
            .and_then(|v| v["data"]["value"].as_str().or(v["data"].as_str()));
        let mark = check_mark(n, stored, colour);
        format!("{h}{kind}{keys}{mark}{by}")
    };
    let mut out = String::new();
    let mut seen = HashSet::new();
    let root = t["root"].as_str().unwrap_or("");
    fn walk(
        h: &str,
        depth: usize,
        up: bool,
        edges: &[Json],
        describe: &dyn Fn(&str) -> String,
        seen: &mut HashSet<String>,
        out: &mut String,
    ) {
        for e in edges {
            let (from, to) = (
                e["from"].as_str().unwrap_or(""),
                e["to"].as_str().unwrap_or(""),
            );
            let (here, next) = if up { (from, to) } else { (to, from) };
            if here != h || next == h {
                continue;
            }
            let rel = e["rel"].as_str().unwrap_or("");
            let pad = "  ".repeat(depth);
            if seen.insert(next.to_string()) {
                out.push_str(&format!("{pad}└─ {rel} → {}\n", describe(next)));
                walk(next, depth + 1, up, edges, describe, seen, out);
            } else {
                out.push_str(&format!("{pad}└─ {rel} → {next} (shown above)\n"));
            }
        }
    }
    seen.insert(root.to_string());
    out.push_str(&format!("{}\n", describe(root)));
    walk(root, 1, up, edges, &describe, &mut seen, &mut out);
    for r in t["remote"].as_array().unwrap_or(&empty) {
        if nodes.iter().any(|n| n["handle"] == r["handle"]) {
            continue;
        }
        out.push_str(&format!(
            "remote: {} (prefix {} is not homed here)\n",
            r["handle"].as_str().unwrap_or(""),
            r["prefix"].as_str().unwrap_or("")
        ));
    }
    for u in t["unreachable"].as_array().unwrap_or(&empty) {
        out.push_str(&format!(
            "unreachable: {} ({})\n",
            u["handle"].as_str().unwrap_or(""),
            u["reason"].as_str().unwrap_or("")
        ));
    }
    for d in t["dangling"].as_array().unwrap_or(&empty) {
        let gone = if d["tombstone"].is_null() {
            "missing".to_string()
        } else {
            format!("deleted at change {}", d["tombstone"]["seq"])
        };
        out.push_str(&format!(
            "dangling: {} -[{}]-> {} ({gone})\n",
            d["from"].as_str().unwrap_or(""),
            d["rel"].as_str().unwrap_or(""),
            d["to"].as_str().unwrap_or("")
        ));
    }
    if t["truncated"] == true {
        out.push_str("(truncated: raise --limit or --depth to see more)\n");
    }
    let c = &t["checks"];
    if c.is_object() {
        out.push_str(&format!(
            "checks: {} green, {} red, {} grey\n",
            c["green"], c["red"], c["grey"]
        ));
    }
    out
}

#[derive(Args, Debug)]
pub struct ReindexArgs {
    #[arg(long, default_value = "./suyuan-data")]
    data_dir: PathBuf,
}

pub fn reindex(a: ReindexArgs) -> Result<ExitCode> {
    let dir = crate::datadir::DataDir::new(&a.data_dir);
    if !dir.initialised() {
        bail!("{} is not an initialised node", a.data_dir.display());
    }
    let reg = dir.open_registry(None)?;
    let n = reg.reindex()?;
    reg.close();
    eprintln!("reindexed {n} records in {}", a.data_dir.display());
    Ok(ExitCode::SUCCESS)
}
