//! `suyuan bench`: an open-loop load generator and the machine's ceiling servers.
//!
//! Request i is due at `t0 + i / rate`, whether or not earlier ones were answered, and its
//! latency is measured from that due time (not from when it was actually sent), so a stalled
//! server shows up in the tail instead of silently slowing the generator down (coordinated
//! omission). Latencies go into an HDR histogram; the report gives p50, p99, p99.9, max, the
//! answers later than the timeout and the requests never answered.
//!
//! Modes: Handle resolution over UDP, over TCP (persistent pipelined connections, or a new
//! connection per request), REST GET, trace up and down over HTTP, and authenticated creates
//! (in sessions, HS_MAC per request). Keys are drawn Zipf-like over N preloaded handles, with a
//! share of misses. `sweep` raises the rate until 99.9% of requests are no longer answered
//! within 10 ms. `echo-udp` and `echo-http` are the ceiling: the least a server can do.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use suyuan_codec::framing::tcp_frame_len;
use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::value::HandleValue;
use suyuan_federation::{ClientSession, Credentials, Exchange, HandleClient, Transport};
use suyuan_registry::{CreateMode, Mutation, Registry, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};

use crate::datadir::DataDir;

// The store comparison (PostgreSQL against redb, servers sharing a database) lives beside the
// generator it drives.
#[path = "bench_store.rs"]
mod bench_store;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Write N benchmark records into a stopped node's store (`P/bench-00000000`...).
    Preload(PreloadArgs),
    /// One run at a fixed rate.
    Run(RunArgs),
    /// Runs at rising rates until p99.9 exceeds 10 ms (or requests are lost).
    Sweep(SweepArgs),
    /// PostgreSQL against redb and two servers on one database against one, on real nodes
    /// this command starts (see BENCHMARKS.md).
    Store(bench_store::StoreArgs),
    /// The ceiling: a UDP server that sends every datagram back.
    EchoUdp {
        #[arg(long, value_parser = crate::parse_addr)]
        addr: SocketAddr,
    },
    /// The ceiling: an HTTP server that answers every request with a small fixed body.
    EchoHttp {
        #[arg(long, value_parser = crate::parse_addr)]
        addr: SocketAddr,
    },
}

#[derive(Args, Debug)]
struct PreloadArgs {
    #[arg(long, default_value = "./suyuan-data")]
    data_dir: PathBuf,
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    count: u64,
    /// For a server of a multi-server site: the site's siteinfo.json; only the records that
    /// hash to this server are written (each server of the site is preloaded with its own).
    #[arg(long, value_name = "FILE")]
    site: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Handle resolution over UDP.
    Udp,
    /// Handle resolution over persistent TCP connections (KC, pipelined).
    Tcp,
    /// Handle resolution, a new TCP connection per request.
    TcpConnect,
    /// REST GET /api/handles/{handle}.
    Rest,
    /// GET /api/trace/{handle} up from a record (its links).
    TraceUp,
    /// GET /api/trace/{handle} down from a record (the reverse index).
    TraceDown,
    /// Authenticated CREATE in sessions (HS_MAC), each acknowledged after its durable commit.
    Create,
}

#[derive(Args, Debug, Clone)]
struct Target {
    #[arg(long, value_enum)]
    mode: Mode,
    /// The server: its Handle address (udp, tcp, create) or HTTP address (rest, trace).
    #[arg(long, value_parser = crate::parse_addr, required_unless_present = "site")]
    server: Option<SocketAddr>,
    /// Instead of --server, for udp: a multi-server site's siteinfo.json; each request goes
    /// to the server its handle hashes to, as a Handle client sends it.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    site: Option<PathBuf>,
    /// The prefix the records were preloaded under.
    #[arg(long, default_value = "88.888.1")]
    prefix: String,
    /// How many records were preloaded (keys are drawn from these).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Zipf exponent of the key popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Share of requests for handles that do not exist.
    #[arg(long, default_value_t = 0.05)]
    miss: f64,
    /// Connections (TCP, HTTP, create).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests in flight per connection at most; more wait their turn (and their wait counts).
    #[arg(long, default_value_t = 64)]
    depth: usize,
    /// An answer later than this counts as a timeout; none by then after the last send: lost.
    #[arg(long, default_value = "1000")]
    timeout_ms: u64,
    /// For create: a file holding the secret of 301:PREFIX/ADMIN.
    #[arg(long)]
    secret_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[derive(Args, Debug)]
struct SweepArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 2000.0)]
    from: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.25)]
    factor: f64,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The p99.9 bound, in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    p999_ms: f64,
    /// A run at the starting rate before the first step, not reported: it brings the store's
    /// pages and the cache to a steady state (a cold start reads from disk).
    #[arg(long, default_value_t = 5)]
    warmup_seconds: u64,
}

impl Target {
    fn server(&self) -> Result<SocketAddr> {
        self.server
            .with_context(|| format!("mode {:?} needs --server (--site is for udp)", self.mode))
    }
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    match a.command {
        BenchCommand::Preload(p) => preload(p),
        BenchCommand::EchoUdp { addr } => echo_udp(addr),
        BenchCommand::EchoHttp { addr } => rt()?.block_on(echo_http(addr)),
        BenchCommand::Run(r) => {
            let report = rt()?.block_on(run_once(&r.target, r.rate, r.seconds))?;
            crate::outln!("{}", report.line(&r.target))?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Sweep(s) => sweep(s),
        BenchCommand::Store(s) => bench_store::run(s),
    }
}

/// The generator runs on one thread, so `taskset` can pin it to one core.
fn rt() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

// ---------------------------------------------------------------------------------------------
// Preload
// ---------------------------------------------------------------------------------------------

/// The record of benchmark handle `i`: 4 values, 2 of them links (like an MRV record's), so trace
/// up from `i` follows `i/2` and `i/3`... a tree whose depth grows with log(i).
fn bench_record(prefix: &str, i: u64) -> Vec<HandleValue> {
    vec![
        HandleValue::new(
            1,
            "URL",
            format!("https://example.org/bench/{i}").into_bytes(),
        ),
        HandleValue::new(2, "mrv.kind", b"reading".to_vec()),
        HandleValue::new(
            3,
            "prov.wasDerivedFrom",
            format!("{prefix}/bench-{:08}", i / 2).into_bytes(),
        ),
        HandleValue::new(
            4,
            "mrv.measuredBy",
            format!("{prefix}/bench-{:08}", i / 3).into_bytes(),
        ),
    ]
}

fn preload(a: PreloadArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir);
    if !dir.initialised() {
        bail!(
            "{} holds no node: run `suyuan init --prefix {}` first",
            a.data_dir.display(),
            a.prefix
        );
    }
    let reg = dir.open_registry(None)?;
    if !reg.is_homed(&a.prefix)? {
        bail!(
            "prefix {} is not homed in {}",
            a.prefix,
            a.data_dir.display()
        );
    }
    // A server of a site holds only the records that hash to it.
    let partition = match &a.site {
        Some(path) => {
            let site = crate::site::read_site(path)?;
            let me = crate::site::Membership::of(&crate::site::read_site(&dir.siteinfo())?)?;
            let position = site.position_of(me.server_id).with_context(|| {
                format!("{} does not list server {}", path.display(), me.server_id)
            })?;
            Some((site, position))
        }
        None => None,
    };
    let ours = |h: &str| {
        partition
            .as_ref()
            .is_none_or(|(site, p)| site.server_index_for(h) == Some(*p))
    };
    let written = load(&reg, &a.prefix, a.count, &ours)?;
    reg.close();
    if partition.is_some() {
        eprintln!(
            "preload: {written} of {} records hash to this server",
            a.count
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the benchmark records 0..count that `keep` keeps through the registry's group
/// commit, in batches of 5,000; returns how many it wrote.
fn load(reg: &Registry, prefix: &str, count: u64, keep: &dyn Fn(&str) -> bool) -> Result<u64> {
    let started = Instant::now();
    let mut written = 0u64;
    let batch = 5_000u64;
    let mut i = 0;
    while i < count {
        let end = (i + batch).min(count);
        let writes = (i..end)
            .map(|k| (k, format!("{prefix}/bench-{k:08}")))
            .filter(|(_, h)| keep(h))
            .map(|(k, handle)| Write {
                mutation: Mutation::Create {
                    handle,
                    values: bench_record(prefix, k),
                    mode: CreateMode::Register,
                },
                actor: "0:SUYUAN/BENCH".into(),
                time: 1_767_225_600,
            })
            .collect::<Vec<_>>();
        written += writes.len() as u64;
        for r in reg.apply_batch(writes) {
            r?;
        }
        i = end;
        if i % 100_000 == 0 || i == count {
            eprintln!(
                "preload: {i} records, {:.0}/s",
                i as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Report {
    rate: f64,
    seconds: f64,
    sent: u64,
    answered: u64,
    timeouts: u64,
    errors: u64,
    /// Microseconds from due time to answer.
    hist: Histogram<u64>,
}

impl Report {
    fn new(rate: f64) -> Self {
        Report {
            rate,
            seconds: 0.0,
            sent: 0,
            answered: 0,
            timeouts: 0,
            errors: 0,
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds"),
        }
    }

    fn merge(&mut self, o: Report) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.timeouts += o.timeouts;
        self.errors += o.errors;
        let _ = self.hist.add(&o.hist);
    }

    fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.answered)
    }

    fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Within `p999_ms` at p99.9 counting every lost or timed-out request as too late.
    fn passes(&self, p999_ms: f64) -> bool {
        let late = self.lost() + self.timeouts;
        let within = self.hist.count_between(0, (p999_ms * 1000.0) as u64);
        self.sent > 0 && late * 1000 <= self.sent && within as f64 >= 0.999 * self.sent as f64
    }

    fn line(&self, t: &Target) -> String {
        format!(
            "mode={:?} rate={:.0}/s achieved={:.0}/s sent={} answered={} p50={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.3}ms timeouts={} lost={} errors={}",
            t.mode,
            self.rate,
            self.answered as f64 / self.seconds.max(1e-9),
            self.sent,
            self.answered,
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.hist.max() as f64 / 1000.0,
            self.timeouts,
            self.lost(),
            self.errors,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and schedule
// ---------------------------------------------------------------------------------------------

/// Which handle request i asks for: Zipf over the preloaded keys, or a miss.
struct Keys {
    zipf: Zipf<f64>,
    n: u64,
    miss: f64,
    rng: rand::rngs::StdRng,
    prefix: String,
}

impl Keys {
    fn new(t: &Target, seed: u64) -> Result<Self> {
        Ok(Keys {
            zipf: Zipf::new(t.keys.max(1), t.zipf).context("zipf parameters")?,
            n: t.keys.max(1),
            miss: t.miss,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            prefix: t.prefix.clone(),
        })
    }

    fn next(&mut self) -> String {
        if self.rng.gen_bool(self.miss.clamp(0.0, 1.0)) {
            return format!("{}/miss-{}", self.prefix, self.rng.r#gen::<u32>());
        }
        // Zipf ranks start at 1; scatter the popular ranks over the key space.
        let rank = self.zipf.sample(&mut self.rng) as u64 - 1;
        let k = rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.n;
        format!("{}/bench-{k:08}", self.prefix)
    }
}

/// When request i is due.
#[derive(Clone, Copy)]
struct Schedule {
    t0: Instant,
    rate: f64,
}

impl Schedule {
    fn due(&self, i: u64) -> Instant {
        self.t0 + Duration::from_secs_f64(i as f64 / self.rate)
    }
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

async fn run_once(t: &Target, rate: f64, seconds: u64) -> Result<Report> {
    if rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let total = (rate * seconds as f64).round() as u64;
    let timeout = Duration::from_millis(t.timeout_ms);
    let mut report = match t.mode {
        Mode::Udp => udp(t, rate, total, timeout).await?,
        Mode::TcpConnect => tcp_connect(t, rate, total, timeout).await?,
        Mode::Tcp | Mode::Rest | Mode::TraceUp | Mode::TraceDown | Mode::Create => {
            pipelined(t, rate, total, timeout).await?
        }
    };
    report.rate = rate;
    report.seconds = seconds as f64;
    Ok(report)
}

/// An encoded resolution; `extra_flags` such as KC on top of the reference client's.
fn resolution(handle: String, id: u32, extra_flags: u32) -> Vec<u8> {
    Message::request(
        opcode::RESOLUTION,
        flags::REC | flags::CA | flags::PO | extra_flags,
        id,
        u32::MAX,
        Body::Resolution {
            handle,
            indexes: Vec::new(),
            types: Vec::new(),
        },
    )
    .encode()
}

/// The request id of an encoded message (envelope bytes 8..12).
fn request_id(b: &[u8]) -> Option<u32> {
    b.get(8..12)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

/// The response code of an encoded Handle message (header bytes 4..8 after the envelope).
fn response_code(b: &[u8]) -> Option<u32> {
    b.get(24..28)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn record(r: &mut Report, due: Instant, timeout: Duration, ok: bool) {
    count(r, due.elapsed(), timeout, ok);
}

fn count(r: &mut Report, lat: Duration, timeout: Duration, ok: bool) {
    r.answered += 1;
    if lat > timeout {
        r.timeouts += 1;
    }
    if !ok {
        r.errors += 1;
    }
    let _ = r.hist.record((lat.as_micros() as u64).max(1));
}

/// Handle answers that are not errors: found (1) or, for a planned miss, not found (100); or
/// the request itself sent back by the echo server of the ceiling (code 0, which no server
/// answers with).
fn handle_ok(code: Option<u32>) -> bool {
    matches!(
        code,
        Some(rc::SUCCESS) | Some(rc::HANDLE_NOT_FOUND) | Some(0)
    )
}

/// Waits until `due`: the timer for the bulk of the wait (it has millisecond resolution), then
/// yielding to the receivers until the moment, so requests leave on time, not in bursts.
async fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        if due - now > Duration::from_millis(2) {
            tokio::time::sleep_until((due - Duration::from_millis(1)).into()).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

async fn udp(t: &Target, rate: f64, total: u64, timeout: Duration) -> Result<Report> {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    // One server: a connected socket. A site: each request to the server its handle hashes
    // to (the client's MD5 is part of the cost measured, as it is for every Handle client).
    let site = t.site.as_deref().map(crate::site::read_site).transpose()?;
    if site.is_none() {
        sock.connect(t.server()?).await?;
    }
    let sched = Schedule {
        t0: Instant::now() + Duration::from_millis(50),
        rate,
    };
    let rx = sock.clone();
    let receiver = tokio::spawn(async move {
        let mut r = Report::new(rate);
        let mut seen = vec![false; total as usize];
        let mut buf = vec![0u8; 65_536];
        let end_of_sends = sched.due(total);
        loop {
            let deadline = end_of_sends + timeout;
            let n = match tokio::time::timeout_at(deadline.into(), rx.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => continue,
                Err(_) => break,
            };
            let Some(id) = request_id(&buf[..n]) else {
                continue;
            };
            let i = id as usize;
            if i >= seen.len() || seen[i] {
                continue;
            }
            seen[i] = true;
            record(
                &mut r,
                sched.due(id as u64),
                timeout,
                handle_ok(response_code(&buf[..n])),
            );
            if r.answered == total {
                break;
            }
        }
        r
    });
    let mut keys = Keys::new(t, 1)?;
    let mut sent = 0;
    for i in 0..total {
        let due = sched.due(i);
        wait_until(due).await;
        let key = keys.next();
        let to = match &site {
            Some(site) => Some(suyuan_federation::server_for(site, &key, Transport::Udp)?),
            None => None,
        };
        let bytes = resolution(key, i as u32, 0);
        let ok = match to {
            Some(addr) => sock.send_to(&bytes, addr).await.is_ok(),
            None => sock.send(&bytes).await.is_ok(),
        };
        if ok {
            sent += 1;
        }
    }
    let mut r = receiver.await?;
    r.sent = sent;
    Ok(r)
}

async fn tcp_connect(t: &Target, rate: f64, total: u64, timeout: Duration) -> Result<Report> {
    let sched = Schedule {
        t0: Instant::now() + Duration::from_millis(50),
        rate,
    };
    // Each answer is timed where it arrives (in its task), and counted here afterwards.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Duration, bool)>();
    // Bounded so a stalled server cannot make the generator open unlimited sockets.
    let slots = Arc::new(Semaphore::new(t.connections * t.depth));
    let mut keys = Keys::new(t, 2)?;
    let server = t.server()?;
    for i in 0..total {
        let due = sched.due(i);
        wait_until(due).await;
        let bytes = resolution(keys.next(), i as u32, 0);
        let permit = slots.clone().acquire_owned().await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let ok = async {
                let mut s = TcpStream::connect(server).await.ok()?;
                s.set_nodelay(true).ok()?;
                s.write_all(&bytes).await.ok()?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).await.ok()?;
                Some(handle_ok(response_code(&out)))
            };
            let got = tokio::time::timeout(timeout * 2, ok).await.ok().flatten();
            if let Some(ok) = got {
                let _ = tx.send((due.elapsed(), ok));
            }
            drop(permit);
        });
    }
    drop(tx);
    let mut r = Report::new(rate);
    r.sent = total;
    while let Some((lat, ok)) = rx.recv().await {
        count(&mut r, lat, timeout, ok);
    }
    Ok(r)
}

/// Persistent connections, requests dealt round-robin, up to `depth` in flight on each.
async fn pipelined(t: &Target, rate: f64, total: u64, timeout: Duration) -> Result<Report> {
    let conns = t.connections.max(1);
    let http = matches!(t.mode, Mode::Rest | Mode::TraceUp | Mode::TraceDown);
    // Creates go in sessions, one a connection, each authenticated before the clock starts.
    let mut sessions = Vec::new();
    if t.mode == Mode::Create {
        for _ in 0..conns {
            sessions.push(create_session(t).await?);
        }
    }
    // Handles of this run's creates differ from every earlier run's.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let sched = Schedule {
        t0: Instant::now() + Duration::from_millis(200),
        rate,
    };
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    let mut halves = Vec::new();
    for _ in 0..conns {
        let server = t.server()?;
        let stream = TcpStream::connect(server)
            .await
            .with_context(|| format!("cannot connect to {server}"))?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel::<(u64, Vec<u8>)>(1 << 16);
        let slots = Arc::new(Semaphore::new(t.depth.max(1)));
        let (fifo_tx, fifo_rx) = mpsc::unbounded_channel::<u64>();
        writers.push(tx);
        halves.push(tokio::spawn(write_loop(wr, rx, slots.clone(), fifo_tx)));
        readers.push(tokio::spawn(read_loop(
            rd, http, fifo_rx, slots, sched, timeout, total,
        )));
    }
    let mut keys = Keys::new(t, 3)?;
    for i in 0..total {
        let due = sched.due(i);
        wait_until(due).await;
        let c = (i as usize) % conns;
        let key = keys.next();
        // A trace starts at a record that exists (a planned miss becomes a low key).
        let root = || key.replace("/miss-", "/bench-0000000");
        let bytes = match t.mode {
            // KC: keep the connection for the next request.
            Mode::Tcp => resolution(key.clone(), i as u32, flags::KC),
            Mode::Rest => http_get(&format!("/api/handles/{key}")),
            Mode::TraceUp => http_get(&format!("/api/trace/{}?depth=10", root())),
            Mode::TraceDown => http_get(&format!(
                "/api/trace/{}?direction=down&depth=2&limit=100",
                root()
            )),
            Mode::Create => create_request(t, &sessions[c], run, i)?,
            Mode::Udp | Mode::TcpConnect => unreachable!("not pipelined"),
        };
        if writers[c].send((i, bytes)).await.is_err() {
            break;
        }
    }
    drop(writers);
    let mut r = Report::new(rate);
    for h in readers {
        r.merge(h.await?);
    }
    drop(halves);
    r.sent = total;
    Ok(r)
}

fn http_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

/// Writes requests as their turn comes; returns the write half rather than dropping it, since
/// dropping it half-closes the connection and an HTTP server then drops the answers still
/// owed (hyper does).
async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<(u64, Vec<u8>)>,
    slots: Arc<Semaphore>,
    fifo: mpsc::UnboundedSender<u64>,
) -> tokio::net::tcp::OwnedWriteHalf {
    while let Some((i, bytes)) = rx.recv().await {
        let Ok(p) = slots.acquire().await else { break };
        p.forget();
        if fifo.send(i).is_err() || wr.write_all(&bytes).await.is_err() {
            break;
        }
    }
    wr
}

/// Reads answers in order; each is matched to the oldest request sent on this connection.
async fn read_loop(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    http: bool,
    mut fifo: mpsc::UnboundedReceiver<u64>,
    slots: Arc<Semaphore>,
    sched: Schedule,
    timeout: Duration,
    total: u64,
) -> Report {
    let mut r = Report::new(0.0);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut pending: VecDeque<u64> = VecDeque::new();
    let mut closed = false;
    let deadline = sched.due(total) + timeout;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        // Take every complete answer in the buffer.
        loop {
            let (len, ok) = if http {
                match http_answer(&buf) {
                    Some(x) => x,
                    None => break,
                }
            } else {
                match tcp_frame_len(&buf) {
                    Ok(Some(n)) => (n, handle_ok(response_code(&buf[..n]))),
                    Ok(None) => break,
                    Err(_) => return r,
                }
            };
            buf.drain(..len);
            while let Ok(i) = fifo.try_recv() {
                pending.push_back(i);
            }
            let Some(i) = pending.pop_front() else {
                return r;
            };
            record(&mut r, sched.due(i), timeout, ok);
            slots.add_permits(1);
        }
        // Read, but stop as soon as every request of this connection is answered and the
        // writer is done: nothing more is owed, so the run need not wait out the timeout.
        let got = tokio::time::timeout_at(deadline.into(), async {
            loop {
                if closed && pending.is_empty() {
                    return None;
                }
                tokio::select! {
                    n = rd.read(&mut chunk) => return Some(n),
                    i = fifo.recv(), if !closed => match i {
                        Some(i) => pending.push_back(i),
                        None if pending.is_empty() => return None,
                        None => closed = true,
                    },
                }
            }
        })
        .await;
        match got {
            Err(_) | Ok(None) | Ok(Some(Ok(0))) | Ok(Some(Err(_))) => return r,
            Ok(Some(Ok(n))) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The length of the first complete HTTP/1.1 answer in `b`, and whether its status is 2xx or
/// 404 (a planned miss).
fn http_answer(b: &[u8]) -> Option<(usize, bool)> {
    let end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&b[..end]).ok()?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    (b.len() >= end + len).then_some((end + len, (200..300).contains(&status) || status == 404))
}

/// A session of 301:PREFIX/ADMIN, authenticated by one create.
async fn create_session(t: &Target) -> Result<ClientSession> {
    let path = t
        .secret_file
        .as_ref()
        .context("create needs --secret-file: the secret of 301:PREFIX/ADMIN")?;
    let secret = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .trim_end_matches(['\n', '\r'])
        .to_string();
    let client = HandleClient::new(t.server()?, Transport::Tcp);
    let admin = format!("{}/ADMIN", t.prefix);
    let session = client
        .open_session(301, &admin, Exchange::DiffieHellman, 3600)
        .await?;
    let creds = Credentials::Secret {
        index: 301,
        handle: admin.clone(),
        secret: secret.into_bytes(),
    };
    let warm = client.request(
        opcode::CREATE_HANDLE,
        flags::REC | flags::CA | flags::OVRW,
        Body::HandleValues {
            handle: format!("{}/bench-warm", t.prefix),
            values: bench_record(&t.prefix, 0),
        },
    );
    let a = client.send_in_session(&session, &warm, &creds).await?;
    if a.first().map(|m| m.header.response_code) != Some(rc::SUCCESS) {
        bail!("the session did not authenticate as 301:{admin}");
    }
    Ok(session)
}

fn create_request(t: &Target, s: &ClientSession, run: u64, i: u64) -> Result<Vec<u8>> {
    let mut m = Message::request(
        opcode::CREATE_HANDLE,
        flags::REC | flags::CA | flags::KC,
        i as u32,
        u32::MAX,
        Body::HandleValues {
            handle: format!("{}/load-{:x}-{i}", t.prefix, run & 0xFFFF_FFFF),
            values: bench_record(&t.prefix, i),
        },
    );
    m.envelope.session_id = s.id;
    suyuan_codec::auth::mac_message(&mut m, s.key(), s.next_counter())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(m.encode())
}

// ---------------------------------------------------------------------------------------------
// Sweep
// ---------------------------------------------------------------------------------------------

fn sweep(s: SweepArgs) -> Result<ExitCode> {
    let rt = rt()?;
    let steps = Steps {
        from: s.from,
        factor: s.factor,
        seconds: s.seconds,
        p999_ms: s.p999_ms,
        warmup_seconds: s.warmup_seconds,
        max_steps: usize::MAX,
    };
    let best = sweep_with(
        &steps,
        |rate, seconds| rt.block_on(run_once(&s.target, rate, seconds)),
        |step, r| match step {
            Step::WarmUp => crate::outln!("warm-up: {}", r.line(&s.target)),
            Step::Pass => crate::outln!("{} PASS", r.line(&s.target)),
            Step::Fail => crate::outln!("{} FAIL", r.line(&s.target)),
        },
    )?;
    match best {
        Some(b) => crate::outln!(
            "max rate with p99.9 <= {} ms: {:.0}/s (p50 {:.3} ms, p99 {:.3} ms)",
            s.p999_ms,
            b.rate,
            b.ms(0.5),
            b.ms(0.99)
        )?,
        None => crate::outln!(
            "no rate passed: p99.9 above {} ms at {:.0}/s",
            s.p999_ms,
            s.from
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The rates a sweep steps through and where it stops.
struct Steps {
    from: f64,
    /// Each step multiplies the rate by this.
    factor: f64,
    seconds: u64,
    /// The p99.9 bound a step must keep, in milliseconds.
    p999_ms: f64,
    /// A run at the first rate before the first step, not judged.
    warmup_seconds: u64,
    max_steps: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    WarmUp,
    Pass,
    Fail,
}

/// Runs `run(rate, seconds)` at rising rates and returns the highest that passed; `show` sees
/// every run. Whatever `run` drives (one server, several), the steps and the stop rule are
/// these.
fn sweep_with(
    s: &Steps,
    mut run: impl FnMut(f64, u64) -> Result<Report>,
    mut show: impl FnMut(Step, &Report) -> Result<()>,
) -> Result<Option<Report>> {
    if s.warmup_seconds > 0 {
        show(Step::WarmUp, &run(s.from, s.warmup_seconds)?)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut rate = s.from;
    let mut best: Option<Report> = None;
    // One step can fail on a hiccup of this shared machine: stop at the second failure in a
    // row, and report the highest rate that passed.
    let mut failures = 0;
    for _ in 0..s.max_steps {
        let r = run(rate, s.seconds)?;
        let pass = r.passes(s.p999_ms);
        show(if pass { Step::Pass } else { Step::Fail }, &r)?;
        if pass {
            failures = 0;
            best = Some(r);
        } else {
            failures += 1;
            if failures == 2 {
                break;
            }
        }
        rate *= s.factor;
        // Let the server drain before the next step.
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(best)
}

// ---------------------------------------------------------------------------------------------
// Ceiling servers
// ---------------------------------------------------------------------------------------------

fn echo_udp(addr: SocketAddr) -> Result<ExitCode> {
    let s = std::net::UdpSocket::bind(addr)?;
    let _ = crate::outln!("listening udp={}", s.local_addr()?);
    let mut buf = [0u8; 65_536];
    loop {
        let (n, from) = s.recv_from(&mut buf)?;
        let _ = s.send_to(&buf[..n], from);
    }
}

async fn echo_http(addr: SocketAddr) -> Result<ExitCode> {
    let l = tokio::net::TcpListener::bind(addr).await?;
    let _ = crate::outln!("listening http={}", l.local_addr()?);
    const BODY: &[u8] = br#"{"responseCode":1,"handle":"88.888.1/bench-00000001","values":[]}"#;
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(
                    hyper::Response::builder()
                        .header("content-type", "application/json;charset=utf-8")
                        .body(http_body_util::Full::new(hyper::body::Bytes::from_static(
                            BODY,
                        )))
                        .expect("static response"),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
        });
    }
}
