//! QUIC between nodes, the connecting end: mutual TLS with the federation's certificates
//! ([`crate::fedtls`]), one request per bidirectional stream, connections kept per server and
//! reused. As a [`Link`] it carries Handle messages for the walker; [`QuicLink::frame`]
//! carries the node-to-node requests that are not Handle messages ([`suyuan_codec::fedframe`]).
//!
//! A site that advertises QUIC is reached over QUIC only: the walker does not fall back to a
//! clear transport for it ([`Link::exclusive`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suyuan_codec::fedframe::{self, Kind};
use suyuan_codec::framing::tcp_frame_len;
use suyuan_codec::message::Message;
use suyuan_codec::wire::MAX_MESSAGE_LENGTH;
use tokio::time::timeout;

use crate::client::{ClientError, Transport};
use crate::fedtls::{FedTlsError, FederationTls, SERVER_NAME};
use crate::link::{Link, Sent};

/// The connecting end of node-to-node QUIC.
pub struct QuicLink {
    endpoint: quinn::Endpoint,
    connections: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    /// A whole exchange: connecting (when no connection is kept), the request and the answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for QuicLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicLink")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Transport settings both ends use: streams enough for a busy peer, a keep-alive under the
/// idle timeout so a kept connection stays usable.
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(256u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(
        Duration::from_secs(30)
            .try_into()
            .expect("30 s is a valid idle timeout"),
    ));
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    Arc::new(t)
}

impl QuicLink {
    /// A client endpoint on an ephemeral UDP port of `bind` (an address of the family of the
    /// peers, e.g. `0.0.0.0:0`).
    pub fn new(
        tls: &FederationTls,
        bind: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, FedTlsError> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_config()?)
            .map_err(|e| FedTlsError::Config(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config());
        let mut endpoint = quinn::Endpoint::client(bind)
            .map_err(|e| FedTlsError::Config(format!("cannot bind {bind}: {e}")))?;
        endpoint.set_default_client_config(config);
        Ok(QuicLink {
            endpoint,
            connections: Mutex::new(HashMap::new()),
            timeout,
        })
    }

    async fn connection(&self, server: SocketAddr) -> Result<quinn::Connection, ClientError> {
        let kept = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server)
            .filter(|c| c.close_reason().is_none())
            .cloned();
        if let Some(c) = kept {
            return Ok(c);
        }
        let channel = |why: String| ClientError::Channel { addr: server, why };
        let c = self
            .endpoint
            .connect(server, SERVER_NAME)
            .map_err(|e| channel(e.to_string()))?
            .await
            .map_err(|e| channel(e.to_string()))?;
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server, c.clone());
        Ok(c)
    }

    /// The identity the node at `server` presented, once connected.
    pub fn peer_identity(&self, server: SocketAddr) -> Option<String> {
        let c = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server)
            .cloned()?;
        identity_of_connection(&c)
    }

    /// One stream: `request` out, the answer (at most `max` bytes) back, within the timeout.
    async fn exchange(
        &self,
        server: SocketAddr,
        request: &[u8],
        max: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let channel = |why: String| ClientError::Channel { addr: server, why };
        let work = async {
            let c = self.connection(server).await?;
            let (mut send, mut recv) = match c.open_bi().await {
                Ok(s) => s,
                Err(e) => {
                    // The kept connection died: forget it, so the next request reconnects.
                    self.forget(server);
                    return Err(channel(e.to_string()));
                }
            };
            send.write_all(request)
                .await
                .map_err(|e| channel(e.to_string()))?;
            send.finish().map_err(|e| channel(e.to_string()))?;
            recv.read_to_end(max)
                .await
                .map_err(|e| channel(e.to_string()))
        };
        match timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                // A peer that went silent may have taken the connection with it: the next
                // request connects afresh instead of waiting on it again.
                self.forget(server);
                Err(ClientError::NoAnswer(server))
            }
        }
    }

    /// Drops the kept connection to `server`.
    fn forget(&self, server: SocketAddr) {
        if let Some(c) = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&server)
        {
            c.close(0u32.into(), b"no answer");
        }
    }

    /// A node-to-node frame to `server`: its answer's status and body.
    pub async fn frame(
        &self,
        server: SocketAddr,
        kind: Kind,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let answer = self
            .exchange(
                server,
                &fedframe::encode_request(kind, body),
                fedframe::MAX_ANSWER + 2,
            )
            .await?;
        let (status, body) =
            fedframe::decode_answer(&answer).map_err(|source| ClientError::Decode {
                addr: server,
                source,
            })?;
        Ok((status, body.to_vec()))
    }

    /// Closes every kept connection.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"closing");
    }
}

impl QuicLink {
    /// Sends `request` to `server` and, if it is challenged (RC 402), answers the challenge as
    /// `creds` on a new stream: the final answer.
    pub async fn send_authenticated(
        &self,
        server: SocketAddr,
        request: &Message,
        creds: &crate::Credentials,
    ) -> Result<Message, ClientError> {
        let first = self.send(server, request).await?;
        let id = request.envelope.request_id.wrapping_add(1);
        match crate::client::challenge_reply(
            server,
            request,
            std::slice::from_ref(&first),
            creds,
            id,
        )? {
            Some(reply) => self.send(server, &reply).await,
            None => Ok(first),
        }
    }
}

/// The identity the peer of `c` presented in its certificate.
pub fn identity_of_connection(c: &quinn::Connection) -> Option<String> {
    let certs = c
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    crate::fedtls::peer_identity(&certs)
}

impl Link for QuicLink {
    fn transport(&self) -> Transport {
        Transport::Quic
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn send<'a>(&'a self, server: SocketAddr, request: &'a Message) -> Sent<'a> {
        Box::pin(async move {
            // The answer is one or more messages as on TCP; the first is the answer.
            let bytes = self
                .exchange(server, &request.encode(), 16 * MAX_MESSAGE_LENGTH)
                .await?;
            let decode = |source| ClientError::Decode {
                addr: server,
                source,
            };
            let n = tcp_frame_len(&bytes)
                .map_err(decode)?
                .ok_or_else(|| ClientError::Channel {
                    addr: server,
                    why: "the answer ended inside a message".into(),
                })?;
            let m = Message::decode(&bytes[..n]).map_err(decode)?;
            crate::client::check_id(server, request, &m)?;
            Ok(m)
        })
    }
}
