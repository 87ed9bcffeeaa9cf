//! Node-to-node resolution over each link the walker uses (a bench binary, not criterion: one
//! figure per link per run, over many requests): a node on loopback with a record, resolved
//! sequentially over QUIC with mutual TLS (the connection kept, as `QuicLink` keeps it), TCP
//! (one connection a request, as the walker's `Tcp` link does) and UDP, in turns of 200
//! requests so that the machine's drift falls on all three alike. Figures are ratios against
//! UDP, measured in the same run.
//!
//!   cargo bench -p suyuan-resolver --bench links
//!   SUYUAN_BENCH_REQUESTS=2000 cargo bench -p suyuan-resolver --bench links   # quick

use std::sync::Arc;
use std::time::{Duration, Instant};

use suyuan_codec::site::{Interface, SiteInfo};
use suyuan_codec::value::HandleValue;
use suyuan_federation::fedtls::{FederationTls, issue_node_cert, make_ca};
use suyuan_federation::link::{Link, Tcp, Udp};
use suyuan_federation::quic::QuicLink;
use suyuan_federation::{HandleClient, Transport};
use suyuan_registry::{CreateMode, Mutation, Registry, Write};
use suyuan_resolver::budget::BudgetConfig;
use suyuan_resolver::listen::bind_handle;
use suyuan_resolver::node::{HandleNode, NodeConfig};
use suyuan_resolver::ops::Metrics;
use suyuan_resolver::{Limits, tcp::serve_tcp, udp::serve_udp};
use tokio::sync::watch;

fn tls(identity: &str, ca: &str, key: &str) -> FederationTls {
    let (cert, k) = issue_node_cert(identity, ca, key).unwrap();
    FederationTls::from_pem(ca.as_bytes(), cert.as_bytes(), k.as_bytes()).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("SUYUAN_BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(dir.path()).unwrap());
    for mutation in [
        Mutation::Home {
            prefix: "88.888.2".into(),
            admins: Vec::new(),
        },
        Mutation::Create {
            handle: "88.888.2/factor-grid-2025".into(),
            values: vec![
                HandleValue::new(2000, "mrv.value", "0.5703"),
                HandleValue::new(2001, "mrv.unit", "tCO2/MWh"),
            ],
            mode: CreateMode::Plain,
        },
    ] {
        registry
            .apply(Write {
                mutation,
                actor: "0:BENCH".into(),
                time: 1,
            })
            .unwrap();
    }
    let mut rng = rand::thread_rng();
    let key = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let (tcp, udp) = bind_handle("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let site = SiteInfo::single_server(
        1,
        addr.ip(),
        Vec::new(),
        Interface::handle_pair(u32::from(addr.port())).to_vec(),
    );
    let node = Arc::new(HandleNode::new(
        registry,
        NodeConfig {
            site,
            key,
            node_admins: Vec::new(),
            challenges: Default::default(),
            sessions: Default::default(),
            cache_entries: 100,
        },
    ));
    let (ca, ca_key) = make_ca("bench federation").unwrap();
    let endpoint = suyuan_resolver::quic::endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &tls("0.NA/88.888.2", &ca, &ca_key),
    )
    .unwrap();
    let quic_addr = endpoint.local_addr().unwrap();
    let (_stop, rx) = watch::channel(false);
    let m = Metrics::new();
    tokio::spawn(serve_tcp(
        tcp,
        node.clone(),
        Limits::default(),
        m.clone(),
        rx.clone(),
    ));
    tokio::spawn(serve_udp(
        udp,
        node.clone(),
        Limits::default(),
        BudgetConfig::default(),
        m.clone(),
        rx.clone(),
    ));
    tokio::spawn(suyuan_resolver::quic::serve_quic(
        endpoint,
        node,
        None,
        Limits::default(),
        m,
        rx,
    ));
    let quic = QuicLink::new(
        &tls("0.NA/88.888.1", &ca, &ca_key),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let tcp_link = Tcp {
        timeout: Duration::from_secs(5),
    };
    let links: [(&str, &dyn Link, std::net::SocketAddr); 3] = [
        ("udp", &Udp, addr),
        ("tcp", &tcp_link, addr),
        ("quic", &quic, quic_addr),
    ];
    let client = HandleClient::new(addr, Transport::Udp);
    // The QUIC handshake, timed apart: a kept connection pays it once.
    let t = Instant::now();
    let first = client.resolution("88.888.2/factor-grid-2025", &[], &[]);
    quic.send(quic_addr, &first).await.unwrap();
    let handshake = t.elapsed();
    let mut times: Vec<Vec<Duration>> = (0..3).map(|_| Vec::with_capacity(n)).collect();
    let turn = 200;
    for _ in 0..n.div_ceil(turn) {
        for (i, (_, link, to)) in links.iter().enumerate() {
            for _ in 0..turn {
                let req = client.resolution("88.888.2/factor-grid-2025", &[], &[]);
                let t = Instant::now();
                let answer = link.send(*to, &req).await.unwrap();
                times[i].push(t.elapsed());
                assert_eq!(answer.header.response_code, 1);
            }
        }
    }
    println!(
        "node-to-node resolution, {} requests a link, sequential:",
        times[0].len()
    );
    let base = {
        let mut u = times[0].clone();
        u.sort();
        (percentile(&u, 0.5), percentile(&u, 0.99))
    };
    for (i, (name, _, _)) in links.iter().enumerate() {
        let mut t = times[i].clone();
        t.sort();
        let (p50, p99) = (percentile(&t, 0.5), percentile(&t, 0.99));
        println!(
            "  {name:5} p50 {:8.1} µs  p99 {:8.1} µs  p50/udp {:5.2}  p99/udp {:5.2}",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            p50.as_secs_f64() / base.0.as_secs_f64(),
            p99.as_secs_f64() / base.1.as_secs_f64()
        );
    }
    println!(
        "  the QUIC handshake and first request: {:.1} µs",
        handshake.as_secs_f64() * 1e6
    );
}
