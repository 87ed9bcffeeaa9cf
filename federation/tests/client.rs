//! The client against answers captured from the reference server, served back over real
//! loopback sockets (request ids patched to the client's).

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use suyuan_codec::message::{Body, rc};
use suyuan_federation::{HandleClient, Transport};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn with_id(mut datagram: Vec<u8>, id: [u8; 4]) -> Vec<u8> {
    datagram[8..12].copy_from_slice(&id);
    datagram
}

#[tokio::test]
async fn udp_reassembles_the_reference_fragments() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let (n, peer) = server.recv_from(&mut buf).await.unwrap();
        assert!(n >= 20);
        let id = [buf[8], buf[9], buf[10], buf[11]];
        // Out of order, as UDP may deliver them.
        for k in [2, 0, 3, 1] {
            let d = with_id(
                fixture(&format!("udp/15-resolve-big-multipacket.resp.{k}.bin")),
                id,
            );
            server.send_to(&d, peer).await.unwrap();
        }
    });
    let client = HandleClient::new(addr, Transport::Udp);
    let answer = client.resolve("12345/fx-big", &[], &[]).await.unwrap();
    assert_eq!(answer.header.response_code, rc::SUCCESS);
    let Body::ResolutionResponse { handle, values } = answer.body else {
        panic!("{:?}", answer.body)
    };
    assert_eq!(handle, "12345/fx-big");
    assert!(
        values
            .iter()
            .any(|v| v.value_type == "DESC" && v.data.len() == 1400)
    );
}

// Paused time: the runtime skips the UDP waits once every task is idle, so the test does not
// sit out the reference client's 3-second schedule.
#[tokio::test(start_paused = true)]
async fn auto_falls_back_to_tcp_when_udp_is_silent() {
    // A UDP socket that never answers, and a TCP listener on the same port that does.
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let _silent = UdpSocket::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let (mut s, _) = tcp.accept().await.unwrap();
        let mut req = vec![0u8; 20];
        s.read_exact(&mut req).await.unwrap();
        let len = u32::from_be_bytes([req[16], req[17], req[18], req[19]]) as usize;
        let mut rest = vec![0u8; len];
        s.read_exact(&mut rest).await.unwrap();
        let resp = with_id(
            fixture("tcp/01-resolve-all.resp.bin"),
            [req[8], req[9], req[10], req[11]],
        );
        s.write_all(&resp).await.unwrap();
    });
    let client = HandleClient::new(addr, Transport::Auto);
    let answer = client.resolve("12345/test1", &[], &[]).await.unwrap();
    let Body::ResolutionResponse { values, .. } = answer.body else {
        panic!()
    };
    assert!(
        values
            .iter()
            .any(|v| v.data == b"https://example.org/test1")
    );
}

#[tokio::test]
async fn an_answer_to_another_request_is_refused() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let (_, peer) = server.recv_from(&mut buf).await.unwrap();
        let d = with_id(fixture("udp/01-resolve-all.resp.bin"), [0, 0, 0, 42]);
        server.send_to(&d, peer).await.unwrap();
    });
    let client = HandleClient::new(addr, Transport::Udp);
    let err = client.resolve("12345/test1", &[], &[]).await.unwrap_err();
    assert!(
        matches!(
            err,
            suyuan_federation::ClientError::Mismatch { got: 42, .. }
        ),
        "{err}"
    );
}
