//! The boundary between transports and what answers requests: transports decode bytes into a
//! [`Request`], hand it to a [`Service`], and write back whatever [`Reply`] it gives.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use suyuan_codec::Message;

pub use crate::frontline::Transport;

/// One decoded request and where it came from.
#[derive(Debug, Clone)]
pub struct Request {
    pub message: Message,
    pub peer: SocketAddr,
    pub transport: Transport,
}

/// What to send back.
#[derive(Debug, Clone)]
pub enum Reply {
    /// One message, or several (a list answered 50 handles a message, with CN on all but the last).
    Messages(Vec<Message>),
    /// Nothing at all (an over-budget UDP source, a request that must not be answered).
    Silence,
}

impl Reply {
    pub fn one(m: Message) -> Self {
        Reply::Messages(vec![m])
    }
}

/// Answers requests. Implementations must not block the async runtime: storage work belongs in
/// `spawn_blocking` or behind an async handle.
pub trait Service: Send + Sync + 'static {
    fn call(&self, request: Request) -> impl Future<Output = Reply> + Send;

    /// The key of a live session, to open requests sent encrypted (EC) in it and seal the
    /// answers; none by default (a service without sessions cannot read them).
    fn session_key(&self, _session_id: u32) -> Option<Vec<u8>> {
        None
    }
}

/// Limits every transport applies, whatever the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TCP connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a kept-open (KC) or fresh TCP connection may sit without sending a byte.
    pub idle_timeout: Duration,
    /// How long a started request may take to arrive and be answered.
    pub request_timeout: Duration,
    /// UDP requests being answered at once; datagrams beyond are dropped.
    pub max_udp_in_flight: usize,
    /// Multi-datagram UDP requests being reassembled at once.
    pub max_udp_reassembly: usize,
    /// How long the fragments of one UDP request may take to arrive.
    pub udp_reassembly_timeout: Duration,
    /// How long shutdown waits for in-flight requests before giving up on them.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_udp_in_flight: 4096,
            max_udp_reassembly: 1024,
            udp_reassembly_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Seconds since the epoch, for message expirations: the transport layer owns the clock.
pub fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// Counts an answered request in the metrics.
pub(crate) fn observe(
    metrics: &crate::ops::Metrics,
    transport: Transport,
    reply: &Reply,
    started: std::time::Instant,
) {
    let t = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Quic => "quic",
    };
    if let Reply::Messages(ms) = reply {
        for m in ms {
            let op = suyuan_codec::message::opcode::name(m.header.op_code).unwrap_or("UNKNOWN");
            metrics
                .requests
                .with_label_values(&[t, op, &m.header.response_code.to_string()])
                .inc();
        }
    }
    metrics
        .latency
        .with_label_values(&[t])
        .observe(started.elapsed().as_secs_f64());
}
