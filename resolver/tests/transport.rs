//! The transports on real loopback sockets, with a small in-test service: what the reference
//! answers to malformed bytes, the KC rule, UDP fragmentation, budgets, limits and shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, Semaphore, watch};

use suyuan_codec::framing::{Reassembly, UdpReassembler, tcp_frame_len};
use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::value::HandleValue;
use suyuan_resolver::budget::BudgetConfig;
use suyuan_resolver::listen::bind_handle;
use suyuan_resolver::ops::Metrics;
use suyuan_resolver::tcp::serve_tcp;
use suyuan_resolver::udp::serve_udp;
use suyuan_resolver::{Limits, Reply, Request, Service};

/// Answers resolutions of `12345/test1` (one URL) and `12345/big` (a 1400-byte DESC), 100 for
/// anything else; `12345/slow` waits for `gate` first.
struct Toy {
    gate: Arc<Notify>,
    /// Given a permit each time a `12345/slow` request reaches the service.
    entered: Arc<Semaphore>,
}

impl Service for Toy {
    async fn call(&self, req: Request) -> Reply {
        let m = &req.message;
        let Body::Resolution { handle, .. } = &m.body else {
            return Reply::one(Message::response_to(
                m,
                rc::OPERATION_NOT_SUPPORTED,
                Body::Error { message: None },
            ));
        };
        let values = match handle.to_ascii_uppercase().as_str() {
            "12345/TEST1" => vec![HandleValue::new(1, "URL", "https://example.org/test1")],
            "12345/BIG" => vec![HandleValue::new(1, "DESC", vec![b'x'; 1400])],
            "12345/SLOW" => {
                self.entered.add_permits(1);
                self.gate.notified().await;
                vec![HandleValue::new(1, "URL", "https://example.org/slow")]
            }
            _ => {
                return Reply::one(Message::response_to(
                    m,
                    rc::HANDLE_NOT_FOUND,
                    Body::Error {
                        message: Some(String::new()),
                    },
                ));
            }
        };
        Reply::one(Message::response_to(
            m,
            rc::SUCCESS,
            Body::ResolutionResponse {
                handle: handle.clone(),
                values,
            },
        ))
    }
}

struct Node {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    gate: Arc<Notify>,
    entered: Arc<Semaphore>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Metrics,
}

async fn start(limits: Limits, budget: BudgetConfig) -> Node {
    let (tcp, udp) = bind_handle("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    assert_eq!(udp.local_addr().unwrap().port(), addr.port());
    let gate = Arc::new(Notify::new());
    let entered = Arc::new(Semaphore::new(0));
    let service = Arc::new(Toy {
        gate: gate.clone(),
        entered: entered.clone(),
    });
    let (stop, rx) = watch::channel(false);
    let metrics = Metrics::new();
    let tasks = vec![
        tokio::spawn(serve_tcp(
            tcp,
            service.clone(),
            limits,
            metrics.clone(),
            rx.clone(),
        )),
        tokio::spawn(serve_udp(udp, service, limits, budget, metrics.clone(), rx)),
    ];
    Node {
        addr,
        stop,
        gate,
        entered,
        tasks,
        metrics,
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn resolve(handle: &str, id: u32, op_flags: u32) -> Message {
    Message::request(
        opcode::RESOLUTION,
        op_flags,
        id,
        0,
        Body::Resolution {
            handle: handle.into(),
            indexes: vec![],
            types: vec![],
        },
    )
}

async fn udp_exchange(addr: SocketAddr, bytes: &[u8]) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut r = UdpReassembler::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        match r.push(&buf[..n]).unwrap() {
            Reassembly::Complete(m) => return Message::decode(&m).unwrap(),
            Reassembly::Pending => {}
        }
    }
}

/// Lets every task run until all of them wait for something outside the runtime: with time
/// paused, a sleep returns only once the runtime has nothing else to do, and each of these
/// rounds polls the sockets again. Real time resumes after.
async fn settle() {
    tokio::time::pause();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::resume();
}

/// Whether bytes are waiting on `s`, without waiting for them.
fn has_input(s: &TcpStream) -> bool {
    match s.try_read(&mut [0u8; 1]) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("{e}"),
    }
}

/// Reads until the server closes, and splits the bytes into messages.
async fn tcp_exchange(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Vec<Message> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    split(&out)
}

fn split(mut b: &[u8]) -> Vec<Message> {
    let mut v = Vec::new();
    while let Some(n) = tcp_frame_len(b).unwrap() {
        v.push(Message::decode(&b[..n]).unwrap());
        b = &b[n..];
    }
    assert!(b.is_empty(), "trailing bytes after the last message");
    v
}

#[tokio::test]
async fn malformed_udp_requests_get_the_reference_codes() {
    let node = start(Limits::default(), BudgetConfig::default()).await;
    for (file, code) in [
        ("udp/22-malformed-bodylen-4000.req.bin", rc::ERROR),
        ("udp/23-malformed-handle-len.req.bin", rc::ERROR),
        (
            "udp/24-malformed-short-datagram.req.bin",
            rc::PROTOCOL_ERROR,
        ),
        ("udp/25-malformed-msglen-too-big.req.bin", rc::ERROR),
        ("udp/26-malformed-opcode-0.req.bin", rc::PROTOCOL_ERROR),
        ("udp/27-unknown-opcode-999.req.bin", rc::ERROR),
        ("udp/28-create-over-udp.req.bin", rc::PROTOCOL_ERROR),
        // The reference reads its zero-filled buffer here and answers 1; refusing is allowed.
        (
            "udp/20-malformed-msglen-gt-datagram.req.bin",
            rc::PROTOCOL_ERROR,
        ),
        ("udp/21-malformed-bodylen-400.req.bin", rc::ERROR),
    ] {
        let req = fixture(file);
        let resp = udp_exchange(node.addr, &req).await;
        assert_eq!(resp.header.response_code, code, "{file}");
        assert!(
            matches!(resp.body, Body::Error { message: Some(_) }),
            "{file}"
        );
        if req.len() >= 20 {
            // We echo the request id whenever we could read it.
            assert_eq!(resp.envelope.request_id.to_be_bytes(), req[8..12], "{file}");
        } else {
            assert_eq!(resp.envelope.request_id, 0xFFFF_FFFF);
            assert_eq!((resp.envelope.major, resp.envelope.minor), (2, 3));
        }
    }
    // And the node keeps serving.
    let ok = udp_exchange(node.addr, &fixture("udp/01-resolve-all.req.bin")).await;
    assert_eq!(ok.header.response_code, rc::SUCCESS);
}

#[tokio::test]
async fn malformed_tcp_requests_get_the_reference_codes() {
    let node = start(Limits::default(), BudgetConfig::default()).await;
    for (file, code) in [
        (
            "tcp/20-malformed-msglen-gt-sent.req.bin",
            rc::PROTOCOL_ERROR,
        ),
        ("tcp/21-malformed-msglen-too-big.req.bin", rc::ERROR),
        ("tcp/22-malformed-bodylen-4000.req.bin", rc::ERROR),
    ] {
        let got = tcp_exchange(node.addr, &fixture(file), true).await;
        assert_eq!(got.len(), 1, "{file}");
        assert_eq!(got[0].header.response_code, code, "{file}");
    }
    let got = tcp_exchange(
        node.addr,
        &fixture("tcp/20-malformed-msglen-gt-sent.req.bin"),
        true,
    )
    .await;
    assert_eq!(
        got[0].body,
        Body::Error {
            message: Some("Expecting 151 bytes, only received 51".into())
        }
    );
}

#[tokio::test]
async fn tcp_closes_without_kc_and_keeps_the_connection_with_kc() {
    let node = start(Limits::default(), BudgetConfig::default()).await;
    // Without KC the server closes after one answer, even if a second request was written.
    let mut two = resolve("12345/test1", 1, flags::CLIENT_DEFAULT).encode();
    two.extend_from_slice(&resolve("12345/test1", 2, flags::CLIENT_DEFAULT).encode());
    let got = tcp_exchange(node.addr, &two, false).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.request_id, 1);

    // With KC both are answered, in order, on one connection (tcp/10 differs on purpose).
    let got = tcp_exchange(
        node.addr,
        &fixture("tcp/10-two-requests-one-connection.req.0.bin")
            .into_iter()
            .chain(fixture("tcp/10-two-requests-one-connection.req.1.bin"))
            .collect::<Vec<u8>>(),
        true,
    )
    .await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m.header.response_code == rc::SUCCESS));
    assert!(got[0].envelope.request_id != got[1].envelope.request_id);
}

#[tokio::test]
async fn large_udp_answers_are_split_like_the_reference() {
    let node = start(Limits::default(), BudgetConfig::default()).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(
        &resolve("12345/big", 9, flags::CLIENT_DEFAULT).encode(),
        node.addr,
    )
    .await
    .unwrap();
    let mut r = UdpReassembler::new();
    let mut buf = [0u8; 2048];
    let mut datagrams = 0;
    let whole = loop {
        let n = sock.recv(&mut buf).await.unwrap();
        assert!(n <= 512);
        assert_eq!(
            buf[2] & 0x20,
            0x20,
            "TC set on every fragment, as 9.3.1 does"
        );
        datagrams += 1;
        if let Reassembly::Complete(m) = r.push(&buf[..n]).unwrap() {
            break Message::decode(&m).unwrap();
        }
    };
    assert_eq!(datagrams, (whole.encode().len() - 20).div_ceil(492));
    assert!(datagrams > 1);
    let Body::ResolutionResponse { values, .. } = whole.body else {
        panic!()
    };
    assert_eq!(values[0].data.len(), 1400);
}

#[tokio::test]
async fn a_source_over_its_budget_gets_silence() {
    let budget = BudgetConfig {
        bytes_per_sec: 10,
        burst_bytes: 1000,
        max_sources: 16,
        exempt_loopback: false,
    };
    let node = start(Limits::default(), budget).await;
    let req = resolve("12345/big", 5, flags::CLIENT_DEFAULT).encode();
    // The first big answer (about 1500 bytes) is over the 1000-byte burst: silence, once the
    // server has handled the request.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&req, node.addr).await.unwrap();
    settle().await;
    assert_eq!(node.metrics.dropped.with_label_values(&["budget"]).get(), 1);
    assert_eq!(
        sock.try_recv(&mut [0u8; 2048]).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    // A small one still fits.
    let small = udp_exchange(
        node.addr,
        &resolve("12345/test1", 6, flags::CLIENT_DEFAULT).encode(),
    )
    .await;
    assert_eq!(small.header.response_code, rc::SUCCESS);
    assert_eq!(node.metrics.dropped.with_label_values(&["budget"]).get(), 1);
    // TCP is not budgeted: the client falls back to it and gets its answer.
    let got = tcp_exchange(node.addr, &req, false).await;
    assert_eq!(got[0].header.response_code, rc::SUCCESS);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let node = start(limits, BudgetConfig::default()).await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    let mut b = Vec::new();
    // With time paused, the runtime jumps to the idle deadline once everything waits.
    let n = s.read_to_end(&mut b).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn connection_limit_queues_the_excess() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let node = start(limits, BudgetConfig::default()).await;
    // Two connections hold both slots while their requests wait on the gate.
    let mut held = Vec::new();
    for id in 1..=2 {
        let mut s = TcpStream::connect(node.addr).await.unwrap();
        s.write_all(&resolve("12345/slow", id, flags::CLIENT_DEFAULT).encode())
            .await
            .unwrap();
        node.entered.acquire().await.unwrap().forget();
        held.push(s);
    }
    // A third one connects (the kernel's backlog takes it) and sends its request...
    let mut third = TcpStream::connect(node.addr).await.unwrap();
    third
        .write_all(&resolve("12345/test1", 3, flags::CLIENT_DEFAULT).encode())
        .await
        .unwrap();
    // ...and however long the server runs, it is not served while both slots are held.
    settle().await;
    assert!(
        !has_input(&third),
        "the third connection must wait for a slot"
    );
    // One held connection is answered and closed: its slot goes to the third.
    node.gate.notify_one();
    let mut out = Vec::new();
    third.read_to_end(&mut out).await.unwrap();
    assert_eq!(split(&out)[0].header.response_code, rc::SUCCESS);
    node.gate.notify_one();
    for mut s in held {
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(split(&out)[0].header.response_code, rc::SUCCESS);
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let node = start(Limits::default(), BudgetConfig::default()).await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(&resolve("12345/slow", 1, flags::CLIENT_DEFAULT).encode())
        .await
        .unwrap();
    // Stop only once the request is being answered: it must still get its answer.
    node.entered.acquire().await.unwrap().forget();
    node.stop.send(true).unwrap();
    settle().await;
    node.gate.notify_one();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(split(&out)[0].header.response_code, rc::SUCCESS);
    for t in node.tasks {
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .unwrap()
            .unwrap();
    }
    // Nothing listens any more.
    assert!(TcpStream::connect(node.addr).await.is_err());
}
