//! Node-to-node QUIC, the accepting end: mutual TLS with the federation's certificates (a
//! peer without a certificate of the federation CA is refused in the handshake, before any
//! request is read, and the log says why), one request per bidirectional stream: a Handle
//! message answered by the node's service exactly as over TCP, or a frame
//! ([`suyuan_codec::fedframe`]) answered by the [`Frames`] the node serves (its trace, its
//! witness). A connection limit, a per-request timeout and graceful shutdown as on TCP.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use suyuan_codec::fedframe::{self, Kind};
use suyuan_codec::framing::tcp_frame_len;
use suyuan_codec::message::{ENVELOPE_LEN, Envelope, rc};
use suyuan_codec::wire::MAX_MESSAGE_LENGTH;
use suyuan_federation::fedtls::{FedTlsError, FederationTls};
use tokio::sync::{Semaphore, watch};
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::frontline::{
    Inbound, Transport, classify, encode_reply, open_encrypted, reject_with_envelope,
};
use crate::ops::Metrics;
use crate::service::{Limits, Reply, Request, Service, now_secs, observe};

/// An answer to a frame: its status (HTTP's codes) and body.
pub type FrameAnswer<'a> = Pin<Box<dyn Future<Output = (u16, Vec<u8>)> + Send + 'a>>;

/// What answers the frames of node-to-node streams.
pub trait Frames: Send + Sync + 'static {
    /// Answers a frame of `kind` from the node that presented `peer` as its identity.
    fn answer<'a>(&'a self, peer: &'a str, kind: Kind, body: Vec<u8>) -> FrameAnswer<'a>;
}

/// A server endpoint on `addr` with the federation's TLS.
pub fn endpoint(addr: SocketAddr, tls: &FederationTls) -> Result<quinn::Endpoint, FedTlsError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_config()?)
        .map_err(|e| FedTlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(suyuan_federation::quic::transport_config());
    quinn::Endpoint::server(config, addr)
        .map_err(|e| FedTlsError::Config(format!("cannot bind {addr}/udp: {e}")))
}

/// Serves node-to-node QUIC until `shutdown` turns true, then waits (up to the grace period)
/// for the streams still answering.
pub async fn serve_quic<S: Service>(
    endpoint: quinn::Endpoint,
    service: Arc<S>,
    frames: Option<Arc<dyn Frames>>,
    limits: Limits,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.changed() => break,
        };
        // Over the limit, a connection is refused at once rather than queued: the peer
        // retries or falls back, and we spend nothing on it.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics
                .federation_handshakes
                .with_label_values(&["over_limit"])
                .inc();
            incoming.refuse();
            continue;
        };
        let (service, frames, metrics, shutdown) = (
            service.clone(),
            frames.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            connection(incoming, service, frames, limits, &metrics, shutdown).await;
            drop(permit);
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
    let _ = timeout(limits.shutdown_grace, endpoint.wait_idle()).await;
}

/// What a handshake error means for an operator reading the log.
fn why_refused(e: &quinn::ConnectionError) -> &'static str {
    let text = e.to_string();
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (its certificate was not issued by this federation's CA)"
    } else if text.contains("no certificates") || text.contains("NoCertificatesPresented") {
        " (it presented no certificate)"
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        " (its certificate is outside its validity)"
    } else if text.contains("no application protocol") {
        " (it does not speak suyuan-fed/1)"
    } else {
        ""
    }
}

async fn connection<S: Service>(
    incoming: quinn::Incoming,
    service: Arc<S>,
    frames: Option<Arc<dyn Frames>>,
    limits: Limits,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let remote = incoming.remote_address();
    let conn = match timeout(limits.request_timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            metrics
                .federation_handshakes
                .with_label_values(&["refused"])
                .inc();
            warn!(peer = %remote, "federation peer refused in the handshake: {e}{}", why_refused(&e));
            return;
        }
        Err(_) => {
            metrics
                .federation_handshakes
                .with_label_values(&["refused"])
                .inc();
            warn!(peer = %remote, "federation peer refused: the handshake timed out");
            return;
        }
    };
    let Some(identity) = suyuan_federation::quic::identity_of_connection(&conn) else {
        // The CA issued it, yet it names no node: not one of ours.
        metrics
            .federation_handshakes
            .with_label_values(&["refused"])
            .inc();
        warn!(peer = %remote, "federation peer refused: its certificate names no node identity (SAN URI hdl:…)");
        conn.close(1u32.into(), b"no node identity");
        return;
    };
    metrics
        .federation_handshakes
        .with_label_values(&["accepted"])
        .inc();
    info!(peer = %remote, %identity, "federation peer connected");
    let identity: Arc<str> = identity.into();
    loop {
        let (send, recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(e) => {
                    debug!(peer = %remote, "federation connection closed: {e}");
                    return;
                }
            },
            _ = shutdown.changed() => {
                conn.close(0u32.into(), b"shutting down");
                return;
            }
        };
        let (service, frames, metrics, identity) = (
            service.clone(),
            frames.clone(),
            metrics.clone(),
            identity.clone(),
        );
        tokio::spawn(async move {
            stream(
                send, recv, remote, &identity, service, frames, limits, &metrics,
            )
            .await;
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn stream<S: Service>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    peer: SocketAddr,
    identity: &str,
    service: Arc<S>,
    frames: Option<Arc<dyn Frames>>,
    limits: Limits,
    metrics: &Metrics,
) {
    let most = (ENVELOPE_LEN + MAX_MESSAGE_LENGTH).max(fedframe::MAX_REQUEST + 4);
    let bytes = match timeout(limits.request_timeout, recv.read_to_end(most)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            debug!(%peer, "federation stream not read: {e}");
            let _ = send.reset(1u32.into());
            return;
        }
        Err(_) => {
            debug!(%peer, "federation stream: the request did not arrive in time");
            let _ = send.reset(1u32.into());
            return;
        }
    };
    let out = if fedframe::is_frame(&bytes) {
        let (status, body) = match fedframe::decode_request(&bytes) {
            Err(e) => (400, e.to_string().into_bytes()),
            Ok((kind, body)) => match &frames {
                None => (404, b"this node answers no frames".to_vec()),
                Some(f) => timeout(
                    limits.request_timeout,
                    f.answer(identity, kind, body.to_vec()),
                )
                .await
                .unwrap_or_else(|_| (504, b"the frame was not answered in time".to_vec())),
            },
        };
        fedframe::encode_answer(status, &body)
    } else {
        match handle_message(bytes, peer, &service, limits, metrics).await {
            Some(out) => out,
            None => {
                let _ = send.reset(1u32.into());
                return;
            }
        }
    };
    if send.write_all(&out).await.is_ok() {
        let _ = send.finish();
        // The stream's data must reach the peer before it is dropped.
        let _ = send.stopped().await;
    }
}

/// A Handle request on a stream, answered as over TCP: the answer's bytes, or none when the
/// request timed out.
async fn handle_message<S: Service>(
    bytes: Vec<u8>,
    peer: SocketAddr,
    service: &Arc<S>,
    limits: Limits,
    metrics: &Metrics,
) -> Option<Vec<u8>> {
    let envelope = (bytes.len() >= ENVELOPE_LEN)
        .then(|| Envelope::decode(&bytes[..ENVELOPE_LEN]).ok())
        .flatten();
    let reject = |code, why: String| {
        Some(
            encode_reply(
                &[reject_with_envelope(envelope, code, why, now_secs())],
                None,
            )
            .concat(),
        )
    };
    match tcp_frame_len(&bytes) {
        Ok(Some(n)) if n == bytes.len() => {}
        Ok(Some(n)) => {
            return reject(
                rc::PROTOCOL_ERROR,
                format!("one request a stream: {} bytes after it", bytes.len() - n),
            );
        }
        Ok(None) => {
            let announced = envelope.map_or(ENVELOPE_LEN, |e| e.message_length as usize);
            return reject(
                rc::PROTOCOL_ERROR,
                format!(
                    "Expecting {announced} bytes, only received {}",
                    bytes.len().saturating_sub(ENVELOPE_LEN)
                ),
            );
        }
        Err(e) => return reject(rc::ERROR, e.to_string()),
    }
    let (bytes, key) = match open_encrypted(&**service, bytes, now_secs()) {
        Ok(x) => x,
        Err(m) => return Some(encode_reply(&[*m], None).concat()),
    };
    let m = match classify(&bytes, Transport::Quic, now_secs()) {
        Inbound::Reject(m) => return Some(encode_reply(&[m], None).concat()),
        Inbound::Request(m) => m,
    };
    let started = std::time::Instant::now();
    let request = Request {
        message: m,
        peer,
        transport: Transport::Quic,
    };
    let Ok(reply) = timeout(limits.request_timeout, service.call(request)).await else {
        warn!(%peer, "federation request timed out");
        return None;
    };
    observe(metrics, Transport::Quic, &reply, started);
    Some(match reply {
        Reply::Messages(ms) => encode_reply(&ms, key.as_deref()).concat(),
        Reply::Silence => Vec::new(),
    })
}
