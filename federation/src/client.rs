//! A Handle wire client for one server address: UDP with the reference client's retry schedule
//! (500, 1000, 1500 ms) and reassembly of multi-datagram answers, or TCP (one request per
//! connection, or several in order with KC).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use suyuan_codec::DecodeError;
use suyuan_codec::framing::{Reassembly, UdpReassembler, tcp_frame_len};
use suyuan_codec::message::{Body, Message, flags, opcode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP first, TCP when UDP gets no answer (as the reference client does).
    Auto,
    Udp,
    Tcp,
    /// QUIC with mutual TLS, between nodes of a federation ([`crate::quic`]).
    Quic,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("no answer from {0}")]
    NoAnswer(SocketAddr),
    #[error("network error talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("undecodable answer from {addr}: {source}")]
    Decode {
        addr: SocketAddr,
        #[source]
        source: DecodeError,
    },
    #[error("answer from {addr} does not match the request (request id {expected}, got {got})")]
    Mismatch {
        addr: SocketAddr,
        expected: u32,
        got: u32,
    },
    #[error("cannot answer the challenge from {addr}: {why}")]
    Auth { addr: SocketAddr, why: String },
    #[error("no server of the site for {handle}: {why}")]
    NoServer { handle: String, why: String },
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("federation channel to {addr}: {why}")]
    Channel { addr: SocketAddr, why: String },
}

/// Who a client authenticates as, and with what.
#[derive(Clone)]
pub enum Credentials {
    /// HS_SECKEY: the secret stored at `index:handle`.
    Secret {
        index: u32,
        handle: String,
        secret: Vec<u8>,
    },
    /// HS_PUBKEY: the private half of the key stored at `index:handle`.
    PublicKey {
        index: u32,
        handle: String,
        key: Box<rsa::RsaPrivateKey>,
    },
}

impl Credentials {
    /// Whom these credentials speak for: `(index, handle)`.
    pub fn identity(&self) -> (u32, &str) {
        match self {
            Credentials::Secret { index, handle, .. }
            | Credentials::PublicKey { index, handle, .. } => (*index, handle),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret or the key.
        let kind = match self {
            Credentials::Secret { .. } => "Secret",
            Credentials::PublicKey { .. } => "PublicKey",
        };
        let (index, handle) = self.identity();
        write!(f, "{kind}({index}:{handle})")
    }
}

/// UDP retry schedule of the reference client.
const UDP_WAITS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1500),
];

#[derive(Debug)]
pub struct HandleClient {
    server: SocketAddr,
    transport: Transport,
    tcp_timeout: Duration,
    next_id: AtomicU32,
}

impl HandleClient {
    pub fn new(server: SocketAddr, transport: Transport) -> Self {
        // Request ids only need to differ between requests in flight; start somewhere that is
        // unlikely to collide with another client on the same host.
        let seed = std::process::id().wrapping_mul(2_654_435_761);
        HandleClient {
            server,
            transport,
            tcp_timeout: Duration::from_secs(60),
            next_id: AtomicU32::new(seed | 1),
        }
    }

    pub fn with_tcp_timeout(mut self, t: Duration) -> Self {
        self.tcp_timeout = t;
        self
    }

    pub fn next_request_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A request with a fresh id and the reference client's 12-hour expiration.
    pub fn request(&self, op: u32, op_flags: u32, body: Body) -> Message {
        Message::request(op, op_flags, self.next_request_id(), expiration(), body)
    }

    /// A resolution request with the reference client's default flags.
    pub fn resolution(&self, handle: &str, types: &[String], indexes: &[u32]) -> Message {
        Message::request(
            opcode::RESOLUTION,
            flags::CLIENT_DEFAULT,
            self.next_request_id(),
            expiration(),
            Body::Resolution {
                handle: handle.to_string(),
                indexes: indexes.to_vec(),
                types: types.to_vec(),
            },
        )
    }

    pub async fn resolve(
        &self,
        handle: &str,
        types: &[String],
        indexes: &[u32],
    ) -> Result<Message, ClientError> {
        let req = self.resolution(handle, types, indexes);
        self.send(&req).await
    }

    /// Sends one request and returns the (first) answer.
    pub async fn send(&self, request: &Message) -> Result<Message, ClientError> {
        match self.transport {
            Transport::Udp => self.send_udp(request).await,
            Transport::Tcp => Ok(self.send_tcp(request).await?.remove(0)),
            Transport::Auto => match self.send_udp(request).await {
                Ok(m) => Ok(m),
                Err(ClientError::NoAnswer(_)) => Ok(self.send_tcp(request).await?.remove(0)),
                Err(e) => Err(e),
            },
            Transport::Quic => Err(ClientError::Unsupported(
                "QUIC goes through a quic::QuicLink, which holds the federation's certificates",
            )),
        }
    }

    async fn send_udp(&self, request: &Message) -> Result<Message, ClientError> {
        let addr = self.server;
        let io = |source| ClientError::Io { addr, source };
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("literal")
        } else {
            "0.0.0.0:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(bind).await.map_err(io)?;
        sock.connect(addr).await.map_err(io)?;
        let bytes = request.encode();
        let datagrams = suyuan_codec::framing::udp_split(&bytes);
        let mut buf = vec![0u8; 65_536];
        for wait in UDP_WAITS {
            for d in &datagrams {
                sock.send(d).await.map_err(io)?;
            }
            let mut r = UdpReassembler::new();
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    // ICMP port unreachable and friends: the next attempt may do better.
                    Ok(Err(_)) | Err(_) => break,
                };
                match r.push(&buf[..n]) {
                    Ok(Reassembly::Complete(m)) => {
                        let m = Message::decode(&m)
                            .map_err(|source| ClientError::Decode { addr, source })?;
                        check_id(addr, request, &m)?;
                        return Ok(m);
                    }
                    Ok(Reassembly::Pending) => {}
                    // A stray or stale datagram: keep listening for ours.
                    Err(_) => r = UdpReassembler::new(),
                }
            }
        }
        Err(ClientError::NoAnswer(addr))
    }

    /// Sends over a fresh TCP connection and reads until the server closes (or, with CN, until
    /// the last message of a multi-message answer).
    pub async fn send_tcp(&self, request: &Message) -> Result<Vec<Message>, ClientError> {
        // Without KC the server closes after its answer; the exchange is the same.
        self.connect_kept().await?.exchange(request).await
    }
}

impl HandleClient {
    /// Sends a request over TCP and, if the server challenges it (RC 402), answers the
    /// challenge as `creds` on a new connection (as the reference client does), returning the
    /// final answer(s). The challenge's digest is checked against our own request first: we
    /// never sign for a request we did not send.
    pub async fn send_authenticated(
        &self,
        request: &Message,
        creds: &Credentials,
    ) -> Result<Vec<Message>, ClientError> {
        self.answer_if_challenged(request, creds).await
    }

    /// The server this client talks to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub(crate) async fn answer_if_challenged(
        &self,
        request: &Message,
        creds: &Credentials,
    ) -> Result<Vec<Message>, ClientError> {
        let first = self.send_tcp(request).await?;
        self.answer_challenge(request, first, creds).await
    }

    /// If `answers` (to `request`) is a challenge (RC 402), answers it as `creds` on a new
    /// connection and returns the final answer(s); otherwise returns `answers` unchanged.
    pub(crate) async fn answer_challenge(
        &self,
        request: &Message,
        answers: Vec<Message>,
        creds: &Credentials,
    ) -> Result<Vec<Message>, ClientError> {
        match challenge_reply(
            self.server,
            request,
            &answers,
            creds,
            self.next_request_id(),
        )? {
            Some(reply) => self.send_tcp(&reply).await,
            None => Ok(answers),
        }
    }
}

/// The answer to a challenge (RC 402) among `answers` to our `request`, as `creds`, with the
/// request id `id`; none when the first answer is not a challenge. The challenge's digest is
/// checked against our own request first: we never sign for a request we did not send. The
/// answer goes out on a new connection or stream (the server finds its challenge by the
/// session id), whatever the transport.
pub fn challenge_reply(
    addr: SocketAddr,
    request: &Message,
    answers: &[Message],
    creds: &Credentials,
    id: u32,
) -> Result<Option<Message>, ClientError> {
    let Some(challenge) = answers
        .first()
        .filter(|m| m.header.response_code == suyuan_codec::message::rc::AUTHENTICATION_NEEDED)
    else {
        return Ok(None);
    };
    let auth = |why: String| ClientError::Auth { addr, why };
    let Body::Challenge { nonce } = &challenge.body else {
        return Err(auth("a 402 without a nonce".into()));
    };
    let digest = challenge
        .request_digest
        .as_ref()
        .ok_or_else(|| auth("a 402 without the request digest".into()))?;
    let version = (challenge.envelope.major, challenge.envelope.minor);
    let ours =
        suyuan_codec::message::RequestDigest::compute(digest.alg, &request.header_and_body());
    if &ours != digest {
        return Err(auth("the challenge is not for our request".into()));
    }
    let (auth_type, index, handle, answer) = match creds {
        Credentials::Secret {
            index,
            handle,
            secret,
        } => {
            let a = suyuan_codec::auth::SecretKeyAnswer::for_version(
                secret,
                nonce,
                &digest.digest,
                version,
                &mut rand::rngs::OsRng,
            );
            ("HS_SECKEY", *index, handle, a.encode())
        }
        Credentials::PublicKey { index, handle, key } => {
            let a = suyuan_codec::auth::PublicKeyAnswer::sign(key, nonce, &digest.digest, version)
                .map_err(|e| auth(e.to_string()))?;
            ("HS_PUBKEY", *index, handle, a.encode())
        }
    };
    let mut reply = Message::request(
        opcode::CHALLENGE_RESPONSE,
        request.header.op_flags & !(flags::KC | flags::CN),
        id,
        request.header.expiration,
        Body::ChallengeResponse {
            auth_type: auth_type.into(),
            id_handle: handle.clone(),
            id_index: index,
            signed_response: answer,
        },
    );
    reply.envelope.session_id = challenge.envelope.session_id;
    Ok(Some(reply))
}

/// A TCP connection kept open with KC: requests go one at a time, each answered in order.
/// Many of these side by side keep many requests in flight without a connection per request
/// (which would use up the client's ephemeral ports in a bulk load).
#[derive(Debug)]
pub struct KeptConnection {
    stream: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
}

impl HandleClient {
    pub async fn connect_kept(&self) -> Result<KeptConnection, ClientError> {
        let addr = self.server;
        let io = |source| ClientError::Io { addr, source };
        let stream = timeout(self.tcp_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::NoAnswer(addr))?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        Ok(KeptConnection {
            stream,
            addr,
            timeout: self.tcp_timeout,
        })
    }
}

impl KeptConnection {
    /// Sends `request` (which must carry KC, or the server closes after answering) and reads
    /// its answer(s). After an error the connection is in an unknown state: drop it.
    pub async fn exchange(&mut self, request: &Message) -> Result<Vec<Message>, ClientError> {
        let addr = self.addr;
        let fut = async {
            self.stream
                .write_all(&request.encode())
                .await
                .map_err(|source| ClientError::Io { addr, source })?;
            read_answers(&mut self.stream, addr).await
        };
        let answers = timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::NoAnswer(addr))??;
        for m in &answers {
            check_id(addr, request, m)?;
        }
        Ok(answers)
    }
}

/// Reads messages until one without CN arrives or the stream closes.
pub async fn read_answers(
    s: &mut TcpStream,
    addr: SocketAddr,
) -> Result<Vec<Message>, ClientError> {
    let io = |source| ClientError::Io { addr, source };
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(n) =
            tcp_frame_len(&buf).map_err(|source| ClientError::Decode { addr, source })?
        {
            let m = Message::decode(&buf[..n])
                .map_err(|source| ClientError::Decode { addr, source })?;
            buf.drain(..n);
            let more = m.header.has(flags::CN);
            out.push(m);
            if !more {
                return Ok(out);
            }
        }
        let n = s.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            return if out.is_empty() {
                Err(ClientError::NoAnswer(addr))
            } else {
                Ok(out)
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The id a server uses when it could not read the request's (the reference does this for
/// errors raised before decoding): such an answer is still ours.
const UNKNOWN_REQUEST_ID: u32 = 0xFFFF_FFFF;

pub(crate) fn check_id(
    addr: SocketAddr,
    request: &Message,
    answer: &Message,
) -> Result<(), ClientError> {
    let (expected, got) = (request.envelope.request_id, answer.envelope.request_id);
    if expected != got && got != UNKNOWN_REQUEST_ID {
        return Err(ClientError::Mismatch {
            addr,
            expected,
            got,
        });
    }
    Ok(())
}

/// Requests expire 12 hours from now, as the reference client's do.
fn expiration() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(u32::MAX, |d| expiration_at(d.as_secs()))
}

/// The expiration of a request sent at `now` (epoch seconds): 12 hours on.
pub(crate) fn expiration_at(now: u64) -> u32 {
    u32::try_from(now + 12 * 3600).unwrap_or(u32::MAX)
}
