//! Handle over TCP: a connection limit, accept backoff, idle and request timeouts, the KC rule
//! (close after the reply unless the request asked to keep the connection; with KC, answer
//! further requests in order) and graceful shutdown (in-flight requests finish).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::timeout;
use tracing::{debug, warn};

use suyuan_codec::framing::tcp_frame_len;
use suyuan_codec::message::{ENVELOPE_LEN, Envelope, flags, rc};

use crate::frontline::{
    Inbound, Transport, classify, encode_reply, open_encrypted, reject_with_envelope,
};
use crate::ops::Metrics;
use crate::service::{Limits, Reply, Request, Service, now_secs, observe};

const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Serves TCP until `shutdown` turns true, then waits (up to the grace period) for the
/// connections still answering.
pub async fn serve_tcp<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    limits: Limits,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        // Take a slot before accepting, so excess clients wait in the kernel's backlog instead
        // of costing us a task each.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(5);
                a
            }
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            metrics.tcp_connections.inc();
            connection(stream, peer, service, limits, &metrics, shutdown).await;
            metrics.tcp_connections.dec();
            drop(permit);
        });
    }
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        warn!("shutdown grace period over with TCP connections still open");
    }
}

enum Frame {
    Message(Vec<u8>),
    /// The peer closed between messages.
    Closed,
    /// The peer closed, or went quiet, in the middle of a message.
    Short {
        envelope: Option<Envelope>,
        announced: usize,
        received: usize,
    },
    TooLong {
        envelope: Option<Envelope>,
        len: usize,
    },
}

async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Frame> {
    loop {
        match tcp_frame_len(buf) {
            Ok(Some(n)) => return Ok(Frame::Message(buf.drain(..n).collect())),
            Ok(None) => {}
            Err(_) => {
                let envelope = Envelope::decode(&buf[..ENVELOPE_LEN]).ok();
                let len = envelope.map(|e| e.message_length as usize).unwrap_or(0);
                return Ok(Frame::TooLong { envelope, len });
            }
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(Frame::Closed);
            }
            return Ok(short(buf));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn short(buf: &[u8]) -> Frame {
    let envelope = (buf.len() >= ENVELOPE_LEN)
        .then(|| Envelope::decode(&buf[..ENVELOPE_LEN]).ok())
        .flatten();
    Frame::Short {
        envelope,
        announced: envelope
            .map(|e| e.message_length as usize)
            .unwrap_or(ENVELOPE_LEN),
        received: buf.len().saturating_sub(ENVELOPE_LEN),
    }
}

async fn connection<S: Service>(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    service: Arc<S>,
    limits: Limits,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = Vec::new();
    loop {
        let wait = if buf.is_empty() {
            limits.idle_timeout
        } else {
            limits.request_timeout
        };
        let frame = tokio::select! {
            f = timeout(wait, read_frame(&mut stream, &mut buf)) => f,
            // Between requests a shutdown closes the connection; a request being read is
            // finished first (the select only fires while we wait for bytes).
            _ = shutdown.changed(), if buf.is_empty() => return,
        };
        let reply = match frame {
            Err(_) if buf.is_empty() => return,
            Err(_) => {
                let Frame::Short {
                    envelope,
                    announced,
                    received,
                } = short(&buf)
                else {
                    return;
                };
                Reply::one(short_reply(envelope, announced, received))
            }
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "read failed");
                return;
            }
            Ok(Ok(Frame::Closed)) => return,
            Ok(Ok(Frame::Short {
                envelope,
                announced,
                received,
            })) => Reply::one(short_reply(envelope, announced, received)),
            Ok(Ok(Frame::TooLong { envelope, len })) => Reply::one(reject_with_envelope(
                envelope,
                rc::ERROR,
                format!(
                    "Message length {len} exceeds the maximum of {}",
                    suyuan_codec::wire::MAX_MESSAGE_LENGTH
                ),
                now_secs(),
            )),
            Ok(Ok(Frame::Message(bytes))) => {
                let (bytes, key) = match open_encrypted(&*service, bytes, now_secs()) {
                    Ok(x) => x,
                    Err(m) => {
                        write_reply(&mut stream, Reply::one(*m), None).await;
                        return;
                    }
                };
                let keep = match classify(&bytes, Transport::Tcp, now_secs()) {
                    Inbound::Reject(m) => {
                        write_reply(&mut stream, Reply::one(m), None).await;
                        return;
                    }
                    Inbound::Request(m) => {
                        let keep = m.header.has(flags::KC);
                        let started = std::time::Instant::now();
                        let request = Request {
                            message: m,
                            peer,
                            transport: Transport::Tcp,
                        };
                        match timeout(limits.request_timeout, service.call(request)).await {
                            Ok(reply) => {
                                observe(metrics, Transport::Tcp, &reply, started);
                                if !write_reply(&mut stream, reply, key.as_deref()).await {
                                    return;
                                }
                            }
                            Err(_) => {
                                warn!(%peer, "request timed out");
                                return;
                            }
                        }
                        keep
                    }
                };
                if keep {
                    continue;
                }
                let _ = stream.shutdown().await;
                return;
            }
        };
        write_reply(&mut stream, reply, None).await;
        let _ = stream.shutdown().await;
        return;
    }
}

fn short_reply(
    envelope: Option<Envelope>,
    announced: usize,
    received: usize,
) -> suyuan_codec::Message {
    reject_with_envelope(
        envelope,
        rc::PROTOCOL_ERROR,
        format!("Expecting {announced} bytes, only received {received}"),
        now_secs(),
    )
}

/// Writes every message of a reply (sealed with `key` for an encrypted request); false when
/// the connection is gone.
async fn write_reply(stream: &mut TcpStream, reply: Reply, key: Option<&[u8]>) -> bool {
    let Reply::Messages(messages) = reply else {
        return true;
    };
    let out: Vec<u8> = encode_reply(&messages, key).concat();
    stream.write_all(&out).await.is_ok()
}
