//! Handle over UDP: query-only, answers split into 512-byte datagrams as the reference does,
//! multi-datagram requests reassembled (bounded table, fragments expire), a per-source answer
//! budget (over budget: silence) and a cap on requests in flight (beyond it: dropped).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};
use tokio::time::timeout;
use tracing::{debug, warn};

use suyuan_codec::framing::{Reassembly, UdpReassembler, udp_split};
use suyuan_codec::message::{ENVELOPE_LEN, Envelope, rc};

use crate::budget::{BudgetConfig, BudgetTable};
use crate::frontline::{
    Inbound, Transport, classify, encode_reply, open_encrypted, reject_with_envelope,
};
use crate::ops::Metrics;
use crate::service::{Limits, Reply, Request, Service, now_secs, observe};

/// Largest datagram we read; requests are at most 512 bytes a datagram, but reading more lets
/// us tell an oversized datagram from a truncated one.
const RECV_BUF: usize = 65_536;

struct Pending {
    reassembler: UdpReassembler,
    started: Instant,
}

/// Serves UDP until `shutdown` turns true, then waits for the requests in flight.
pub async fn serve_udp<S: Service>(
    socket: UdpSocket,
    service: Arc<S>,
    limits: Limits,
    budget: BudgetConfig,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let budget = Arc::new(Mutex::new(BudgetTable::new(budget)));
    let in_flight = Arc::new(Semaphore::new(limits.max_udp_in_flight));
    let mut pending: HashMap<(SocketAddr, u32), Pending> = HashMap::new();
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some systems: not fatal.
                    debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let datagram = &buf[..n];
        let early = match reassemble(&mut pending, datagram, peer, &limits) {
            Arrival::Whole(m) => Ok(m),
            Arrival::Wait => continue,
            Arrival::Dropped => {
                metrics.dropped.with_label_values(&["reassembly"]).inc();
                continue;
            }
            Arrival::Reject(m) => Err(*m),
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            debug!(%peer, "udp request dropped: too many in flight");
            metrics.dropped.with_label_values(&["in_flight"]).inc();
            continue;
        };
        let socket = socket.clone();
        let service = service.clone();
        let budget = budget.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut key = None;
            let inbound = match early
                .map_err(Box::new)
                .and_then(|b| open_encrypted(&*service, b, now_secs()))
            {
                Ok((bytes, k)) => {
                    key = k;
                    classify(&bytes, Transport::Udp, now_secs())
                }
                Err(m) => Inbound::Reject(*m),
            };
            let reply = match inbound {
                Inbound::Reject(m) => Reply::one(m),
                Inbound::Request(m) => {
                    let request = Request {
                        message: m,
                        peer,
                        transport: Transport::Udp,
                    };
                    match timeout(limits.request_timeout, service.call(request)).await {
                        Ok(r) => r,
                        Err(_) => Reply::Silence,
                    }
                }
            };
            observe(&metrics, Transport::Udp, &reply, started);
            if !send_reply(&socket, peer, reply, key.as_deref(), &budget).await {
                metrics.dropped.with_label_values(&["budget"]).inc();
            }
            drop(permit);
        });
    }
    let all = u32::try_from(limits.max_udp_in_flight).unwrap_or(u32::MAX);
    if timeout(limits.shutdown_grace, in_flight.acquire_many(all))
        .await
        .is_err()
    {
        warn!("shutdown grace period over with UDP requests still in flight");
    }
}

enum Arrival {
    /// A whole request: this datagram alone, or the last missing fragment of one.
    Whole(Vec<u8>),
    /// Fragments are still missing.
    Wait,
    /// No room to reassemble another request.
    Dropped,
    /// A fragment that cannot belong to a valid request: answered at once, so the client does
    /// not sit out its timeout.
    Reject(Box<suyuan_codec::Message>),
}

fn reassemble(
    pending: &mut HashMap<(SocketAddr, u32), Pending>,
    datagram: &[u8],
    peer: SocketAddr,
    limits: &Limits,
) -> Arrival {
    let env = (datagram.len() >= ENVELOPE_LEN)
        .then(|| Envelope::decode(&datagram[..ENVELOPE_LEN]).ok())
        .flatten();
    let Some(env) = env.filter(|e| e.truncated()) else {
        return Arrival::Whole(datagram.to_vec());
    };
    let now = Instant::now();
    let key = (peer, env.request_id);
    if !pending.contains_key(&key) {
        pending.retain(|_, p| now.duration_since(p.started) < limits.udp_reassembly_timeout);
        if pending.len() >= limits.max_udp_reassembly {
            debug!(%peer, "udp fragment dropped: reassembly table full");
            return Arrival::Dropped;
        }
    }
    let entry = pending.entry(key).or_insert_with(|| Pending {
        reassembler: UdpReassembler::new(),
        started: now,
    });
    match entry.reassembler.push(datagram) {
        Ok(Reassembly::Pending) => Arrival::Wait,
        Ok(Reassembly::Complete(m)) => {
            pending.remove(&key);
            Arrival::Whole(m)
        }
        Err(e) => {
            pending.remove(&key);
            Arrival::Reject(Box::new(reject_with_envelope(
                Some(env),
                rc::PROTOCOL_ERROR,
                format!("Bad request fragment: {e}"),
                now_secs(),
            )))
        }
    }
}

async fn send_reply(
    socket: &UdpSocket,
    peer: SocketAddr,
    reply: Reply,
    key: Option<&[u8]>,
    budget: &Mutex<BudgetTable>,
) -> bool {
    let Reply::Messages(messages) = reply else {
        return true;
    };
    let datagrams: Vec<Vec<u8>> = encode_reply(&messages, key)
        .iter()
        .flat_map(|m| udp_split(m))
        .collect();
    let total: usize = datagrams.iter().map(Vec::len).sum();
    let allowed = budget
        .lock()
        .map(|mut b| b.allow(peer.ip(), total, Instant::now()))
        .unwrap_or(false);
    if !allowed {
        debug!(%peer, bytes = total, "udp answer withheld: source over budget");
        return false;
    }
    for d in datagrams {
        if let Err(e) = socket.send_to(&d, peer).await {
            debug!(%peer, error = %e, "udp send failed");
            break;
        }
    }
    true
}
