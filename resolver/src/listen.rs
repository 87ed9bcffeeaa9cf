//! Binding the Handle address: one address serves TCP and UDP on the same port. With port 0,
//! TCP picks a free port and UDP takes the same one; if UDP finds it taken, both try again.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, UdpSocket};

/// Attempts before giving up on finding a port free for both TCP and UDP.
const ATTEMPTS: usize = 16;

pub async fn bind_handle(addr: SocketAddr) -> io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let tcp = TcpListener::bind(addr).await?;
        let bound = tcp.local_addr()?;
        match UdpSocket::bind(bound).await {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")))
}
