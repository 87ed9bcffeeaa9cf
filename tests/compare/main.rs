//! `suyuan-compare`: sends the same requests to two Handle nodes (REST and the Handle wire
//! protocol, over UDP and TCP) and reports every difference a client would notice, with a
//! count per REST route and per opcode. See README.md next to this file.
//!
//! It only ever talks to loopback addresses: anything else is refused before a packet leaves.

mod cases;
mod diff;
mod http;
mod observe;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::Value as Json;
use suyuan_codec::message::{Body, flags, opcode, rc};
use suyuan_codec::value::HandleValue;
use suyuan_federation::{ClientSession, Credentials, HandleClient, Transport};

use cases::{Case, Kind, Plan};
use diff::{Difference, Scope};
use http::BaseUrl;

#[derive(Parser, Debug)]
#[command(
    name = "suyuan-compare",
    about = "Send the same Handle and REST requests to two nodes on loopback and report every difference"
)]
struct Args {
    /// Node A's Handle address (TCP and UDP), e.g. 127.0.0.1:12641.
    #[arg(long)]
    a_handle: String,
    /// Node A's HTTP(S) base URL, e.g. https://127.0.0.1:18000.
    #[arg(long)]
    a_http: String,
    #[arg(long)]
    b_handle: String,
    #[arg(long)]
    b_http: String,
    /// What to call A and B in the report.
    #[arg(long, default_value = "A")]
    a_name: String,
    #[arg(long, default_value = "B")]
    b_name: String,
    /// The prefix both nodes serve.
    #[arg(long, default_value = "12345")]
    prefix: String,
    /// The administrator with a secret key, index:handle (default 301:PREFIX/ADMIN).
    #[arg(long)]
    admin: Option<String>,
    /// That administrator's secret (or set SUYUAN_COMPARE_SECRET).
    #[arg(long)]
    secret: Option<String>,
    /// An RSA private key (the reference's unencrypted admpriv.bin, or PEM) for the requests
    /// that authenticate with a public key; without it they are left out.
    #[arg(long)]
    rsa_key: Option<PathBuf>,
    /// Whose key --rsa-key is, index:handle (default 300:PREFIX/ADMIN).
    #[arg(long)]
    rsa_admin: Option<String>,
    /// Handles this run writes are named PREFIX/TAG-RUNID-NAME.
    #[arg(long, default_value = "cmp")]
    tag: String,
    /// Create PREFIX/test1 (URL at 1, EMAIL at 2, as the reference lab holds it) on a node
    /// that lacks it, before comparing.
    #[arg(long)]
    seed: bool,
    /// Also home and unhome this prefix (in a Diffie-Hellman session and outside one), as
    /// GenericBatch HOME/UNHOME do; the administrator must be one of the server's. Off by
    /// default: it changes what the servers serve while it runs.
    #[arg(long)]
    home_prefix: Option<String>,
    /// Only the cases whose group (route or opcode) contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Print every case with both observations, not only those that differ.
    #[arg(long)]
    verbose: bool,
    /// List the cases and send nothing.
    #[arg(long)]
    list: bool,
    /// Exit 1 when any request was answered differently.
    #[arg(long)]
    fail_on_diff: bool,
    /// Count differences in message wording alone as differences (by default they are
    /// listed apart).
    #[arg(long)]
    strict_text: bool,
}

/// Refuses anything beyond the loopback network.
fn ensure_loopback(ip: IpAddr) -> Result<()> {
    if !ip.is_loopback() {
        bail!("{ip} is not a loopback address: the comparison only talks to 127.0.0.0/8 and ::1");
    }
    Ok(())
}

/// `host:port` with an IP literal or `localhost` (no name is looked up), on loopback only.
fn loopback_addr(s: &str, default_port: u16) -> Result<SocketAddr> {
    let addr = if let Ok(a) = s.parse::<SocketAddr>() {
        a
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("bad port in {s:?}"))?,
            ),
            _ => (s, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().with_context(|| {
                format!("{host:?} is not an IP address (names are not looked up)")
            })?
        };
        SocketAddr::new(ip, port)
    };
    ensure_loopback(addr.ip())?;
    Ok(addr)
}

fn identity(s: &str) -> Result<(u32, String)> {
    let (i, h) = s
        .split_once(':')
        .with_context(|| format!("{s:?}: an identity is index:handle"))?;
    Ok((
        i.parse().with_context(|| format!("bad index in {s:?}"))?,
        h.to_string(),
    ))
}

/// One node under comparison and what this run holds for it.
struct Side {
    pub name: String,
    pub base: BaseUrl,
    pub udp: HandleClient,
    pub tcp: HandleClient,
    pub session: Option<ClientSession>,
    pub rest_sessions: HashMap<&'static str, String>,
    pub rest_nonces: HashMap<&'static str, Vec<u8>>,
}

impl Side {
    fn new(name: &str, handle: &str, http: &str) -> Result<Self> {
        let addr =
            loopback_addr(handle, 2641).with_context(|| format!("{name}'s Handle address"))?;
        let base = BaseUrl::parse(http)?;
        Ok(Side {
            name: name.to_string(),
            base,
            udp: HandleClient::new(addr, Transport::Udp),
            tcp: HandleClient::new(addr, Transport::Tcp)
                .with_tcp_timeout(std::time::Duration::from_secs(15)),
            session: None,
            rest_sessions: HashMap::new(),
            rest_nonces: HashMap::new(),
        })
    }
}

/// Who the wire requests authenticate as.
struct Creds {
    pub good: Credentials,
    pub wrong: Credentials,
    pub rsa: Option<Credentials>,
}

/// The outcome of one case: what each side answered and how they differ.
struct Outcome {
    pub case: Case,
    pub a: Json,
    pub b: Json,
    pub diffs: Vec<Difference>,
}

impl Outcome {
    pub fn differs(&self, strict_text: bool) -> bool {
        self.diffs.iter().any(|d| strict_text || !d.is_text())
    }
}

/// Runs every case against both sides in turn, A then B, so that both see the same sequence
/// of writes.
struct Engine {
    pub a: Side,
    pub b: Side,
    pub creds: Creds,
    pub plan: Plan,
    pub scope: Scope,
    rt: tokio::runtime::Runtime,
}

impl Engine {
    pub fn run_case(&mut self, case: &Case) -> Outcome {
        let a = observe::case(&self.rt, &mut self.a, case, &self.creds, &self.scope);
        let b = observe::case(&self.rt, &mut self.b, case, &self.creds, &self.scope);
        let diffs = diff::diff(&a, &b);
        Outcome {
            case: case.clone(),
            a,
            b,
            diffs,
        }
    }

    /// Both sides answer at all (site information over TCP, anything over HTTP): comparing
    /// with a node that is not there would only list its silence.
    fn reachable(&self) -> Result<()> {
        for side in [&self.a, &self.b] {
            let req = side.tcp.request(
                opcode::GET_SITE_INFO,
                flags::CLIENT_DEFAULT,
                Body::GetSiteInfo {
                    handle: String::new(),
                },
            );
            self.rt
                .block_on(side.tcp.send_tcp(&req))
                .map_err(|e| anyhow::anyhow!("{}: no Handle answer: {e}", side.name))?;
            let probe = http::Request {
                method: "GET".into(),
                target: "/".into(),
                headers: Vec::new(),
                body: None,
            };
            http::send(&side.base, &probe)
                .with_context(|| format!("{}: no HTTP answer", side.name))?;
        }
        Ok(())
    }

    /// Creates PREFIX/test1 where it is missing.
    fn seed(&mut self) -> Vec<String> {
        let p = self.plan.prefix.clone();
        let h = format!("{p}/test1");
        let mut notes = Vec::new();
        for side in [&self.a, &self.b] {
            let found = self.rt.block_on(side.tcp.resolve(&h, &[], &[]));
            if matches!(&found, Ok(m) if m.header.response_code == rc::HANDLE_NOT_FOUND) {
                let values = vec![
                    HandleValue::new(
                        100,
                        "HS_ADMIN",
                        suyuan_codec::value::AdminRecord::new(0x0FFF, format!("{p}/ADMIN"), 300)
                            .encode(),
                    ),
                    HandleValue::new(1, "URL", "https://example.org/test1"),
                    HandleValue::new(2, "EMAIL", "test@example.org"),
                ];
                let req = side.tcp.request(
                    opcode::CREATE_HANDLE,
                    flags::CLIENT_DEFAULT,
                    Body::HandleValues {
                        handle: h.clone(),
                        values,
                    },
                );
                let r = self
                    .rt
                    .block_on(side.tcp.send_authenticated(&req, &self.creds.good));
                let code = r
                    .ok()
                    .and_then(|m| m.first().map(|m| m.header.response_code));
                notes.push(format!("seeded {h} on {}: RC {code:?}", side.name));
            }
        }
        notes
    }

    /// Deletes what this run may have made, on both sides, in one session each (one
    /// challenge answered per side, not one per handle); returns how many each side deleted.
    fn clean_up(&mut self, written: &[String]) -> (usize, usize) {
        let mut counts = [0usize; 2];
        let (index, handle) = self.creds.good.identity();
        let handle = handle.to_string();
        for (i, side) in [&self.a, &self.b].into_iter().enumerate() {
            let session = self.rt.block_on(side.tcp.open_session(
                index,
                &handle,
                suyuan_federation::Exchange::DiffieHellman,
                600,
            ));
            for h in written {
                let req = side.tcp.request(
                    opcode::DELETE_HANDLE,
                    flags::CLIENT_DEFAULT,
                    Body::Handle { handle: h.clone() },
                );
                let sent = self.rt.block_on(async {
                    match &session {
                        Ok(s) => side.tcp.send_in_session(s, &req, &self.creds.good).await,
                        Err(_) => side.tcp.send_authenticated(&req, &self.creds.good).await,
                    }
                });
                if let Ok(m) = sent {
                    if m.first()
                        .is_some_and(|m| m.header.response_code == rc::SUCCESS)
                    {
                        counts[i] += 1;
                    }
                }
            }
        }
        (counts[0], counts[1])
    }
}

fn run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut n = secs ^ (u64::from(std::process::id()) << 32);
    let mut s = String::new();
    while n > 0 {
        let d = (n % 36) as u32;
        s.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    s.chars().take(7).collect()
}

fn basic(identity: &str, secret: &str) -> String {
    use base64::Engine as _;
    let user: String = identity
        .bytes()
        .map(|b| match b {
            b':' => "%3A".to_string(),
            b'/' => "%2F".to_string(),
            b'%' => "%25".to_string(),
            _ => (b as char).to_string(),
        })
        .collect();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

fn load_rsa(path: &std::path::Path) -> Result<rsa::RsaPrivateKey> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if text.contains("-----BEGIN") {
            return suyuan_codec::auth::rsa_private_from_pem(text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        }
    }
    suyuan_codec::auth::rsa_private_from_reference(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (an encrypted reference key is not supported: convert it with the reference's KeyConverter or use PEM)",
            path.display()
        )
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("suyuan-compare: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let args = Args::parse();
    let prefix = args.prefix.trim_matches('/').to_string();
    let admin = args.admin.clone().unwrap_or(format!("301:{prefix}/ADMIN"));
    let (admin_index, admin_handle) = identity(&admin)?;
    let secret = match (&args.secret, std::env::var("SUYUAN_COMPARE_SECRET")) {
        (Some(s), _) => s.clone(),
        (None, Ok(s)) if !s.is_empty() => s,
        _ if args.list => String::new(),
        _ => bail!("give the administrator's secret with --secret or SUYUAN_COMPARE_SECRET"),
    };
    let rsa = match &args.rsa_key {
        Some(p) => {
            let who = args
                .rsa_admin
                .clone()
                .unwrap_or(format!("300:{prefix}/ADMIN"));
            let (index, handle) = identity(&who)?;
            Some(Credentials::PublicKey {
                index,
                handle,
                key: Box::new(load_rsa(p)?),
            })
        }
        None => None,
    };
    let run = format!("{prefix}/{}-{}-", args.tag, run_id());
    let plan = Plan {
        prefix: prefix.clone(),
        run: run.clone(),
        admin: admin.clone(),
        basic: basic(&admin, &secret),
        basic_wrong: basic(&admin, &format!("{secret}-wrong")),
        with_rsa: rsa.is_some(),
        home: args.home_prefix.clone(),
    };
    let mut all = cases::all(&plan);
    if let Some(o) = &args.only {
        all.retain(|c| c.group.contains(o.as_str()));
    }
    if args.list {
        for (i, c) in all.iter().enumerate() {
            println!("{:>4} [{}] {}", i + 1, c.group, c.what);
        }
        println!("{} cases", all.len());
        return Ok(ExitCode::SUCCESS);
    }
    let a = Side::new(&args.a_name, &args.a_handle, &args.a_http)?;
    let b = Side::new(&args.b_name, &args.b_handle, &args.b_http)?;
    let creds = Creds {
        good: Credentials::Secret {
            index: admin_index,
            handle: admin_handle.clone(),
            secret: secret.clone().into_bytes(),
        },
        wrong: Credentials::Secret {
            index: admin_index,
            handle: admin_handle,
            secret: format!("{secret}-wrong").into_bytes(),
        },
        rsa,
    };
    let scope = Scope {
        run_prefix: run.clone(),
        fixed: vec![format!("{prefix}/test1"), format!("{prefix}/ADMIN")],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut engine = Engine {
        a,
        b,
        creds,
        plan,
        scope,
        rt,
    };
    engine.reachable()?;
    println!(
        "suyuan-compare: A = {} ({}, {}), B = {} ({}, {})",
        args.a_name, args.a_handle, args.a_http, args.b_name, args.b_handle, args.b_http
    );
    println!("handles of this run: {run}*");
    if args.seed {
        for n in engine.seed() {
            println!("{n}");
        }
    }
    println!();
    let outcomes: Vec<Outcome> = all.iter().map(|c| engine.run_case(c)).collect();
    let mut written: Vec<String> = all.iter().filter_map(|c| c.writes(&engine.plan)).collect();
    written.sort();
    written.dedup();
    let (da, db) = engine.clean_up(&written);
    let text = report(&outcomes, &args);
    print!("{text}");
    println!("clean-up: deleted {da} handles of this run on A, {db} on B");
    let differing = outcomes
        .iter()
        .filter(|o| o.differs(args.strict_text))
        .count();
    Ok(if args.fail_on_diff && differing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The readable report: each differing case with its differences, then the counts per
/// group, then the summary line.
fn report(outcomes: &[Outcome], args: &Args) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let strict = args.strict_text;
    let _ = writeln!(
        s,
        "== differences (A = {}, B = {})",
        args.a_name, args.b_name
    );
    for (i, o) in outcomes.iter().enumerate() {
        let hard: Vec<&Difference> = o.diffs.iter().filter(|d| strict || !d.is_text()).collect();
        if hard.is_empty() && !args.verbose {
            continue;
        }
        let _ = writeln!(s, "[{}] {} — {}", i + 1, o.case.group, o.case.what);
        for d in &o.diffs {
            let mark = if d.is_text() && !strict {
                " (wording)"
            } else {
                ""
            };
            let _ = writeln!(s, "    {d}{mark}");
        }
        if args.verbose {
            let _ = writeln!(s, "    A: {}", o.a);
            let _ = writeln!(s, "    B: {}", o.b);
        }
    }
    let wording: Vec<(usize, &Outcome)> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.differs(strict) && !o.diffs.is_empty())
        .collect();
    if !wording.is_empty() && !args.verbose {
        let _ = writeln!(s, "\n== answers that differ only in message wording");
        for (i, o) in &wording {
            let _ = writeln!(s, "[{}] {} — {}", i + 1, o.case.group, o.case.what);
            for d in &o.diffs {
                let _ = writeln!(s, "    {d}");
            }
        }
    }
    // The same difference in several requests is usually one cause: list those together.
    let mut recurring: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, o) in outcomes.iter().enumerate() {
        for d in o.diffs.iter().filter(|d| strict || !d.is_text()) {
            let e = recurring.entry(d.to_string()).or_insert((0, String::new()));
            e.0 += 1;
            if e.0 <= 12 {
                e.1.push_str(&format!(" [{}]", i + 1));
            }
        }
    }
    let mut recurring: Vec<(String, (usize, String))> =
        recurring.into_iter().filter(|(_, (n, _))| *n > 1).collect();
    recurring.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    if !recurring.is_empty() {
        let _ = writeln!(s, "\n== differences seen in several requests");
        for (d, (n, at)) in &recurring {
            let more = if *n > 12 { " …" } else { "" };
            let _ = writeln!(s, "{n:>4}x {d}\n       in{at}{more}");
        }
    }
    #[derive(Default)]
    struct Count {
        requests: usize,
        differing: usize,
        differences: usize,
        wording: usize,
    }
    let mut groups: BTreeMap<(bool, String), Count> = BTreeMap::new();
    for o in outcomes {
        let rest = matches!(o.case.kind, Kind::Http { .. });
        let c = groups.entry((!rest, o.case.group.clone())).or_default();
        c.requests += 1;
        if o.differs(strict) {
            c.differing += 1;
        } else if !o.diffs.is_empty() {
            c.wording += 1;
        }
        c.differences += o.diffs.iter().filter(|d| strict || !d.is_text()).count();
    }
    let _ = writeln!(
        s,
        "\n== counts per REST route and per opcode/transport\n{:<44} {:>8} {:>9} {:>11} {:>8}",
        "group", "requests", "differing", "differences", "wording"
    );
    let (mut rest_n, mut wire_n) = (0, 0);
    for ((wire, g), c) in &groups {
        if *wire {
            wire_n += c.requests;
        } else {
            rest_n += c.requests;
        }
        let _ = writeln!(
            s,
            "{:<44} {:>8} {:>9} {:>11} {:>8}",
            g, c.requests, c.differing, c.differences, c.wording
        );
    }
    let differing = outcomes.iter().filter(|o| o.differs(strict)).count();
    let differences: usize = groups.values().map(|c| c.differences).sum();
    let _ = writeln!(
        s,
        "\nsummary: {} requests ({rest_n} REST, {wire_n} Handle wire), {differing} answered differently ({differences} differences), {} more differ only in wording",
        outcomes.len(),
        wording.len()
    );
    s
}
