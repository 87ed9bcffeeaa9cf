//! The operations endpoint (loopback by default, so internals are not public): `/healthz`
//! (the process answers), `/readyz` (the node has bound its listeners and opened its store)
//! and `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The node's metrics, registered in a registry of their own (no global state, so tests and
/// several nodes in one process do not collide).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests answered, by transport, opcode name and response code.
    pub requests: IntCounterVec,
    /// Time from decoded request to reply, by transport.
    pub latency: HistogramVec,
    /// Requests or answers dropped, by reason (budget, in_flight, reassembly).
    pub dropped: IntCounterVec,
    /// TCP connections open now.
    pub tcp_connections: IntGauge,
    /// HTTP requests answered, by route, method and status.
    pub http_requests: IntCounterVec,
    /// Time to answer an HTTP request, by route.
    pub http_latency: HistogramVec,
    /// Record lookups by result (hit: from the cache; miss: from the store).
    pub cache_lookups: IntCounterVec,
    /// Bytes the store takes on disk.
    pub store_bytes: IntGauge,
    /// The change log's last sequence number (every acknowledged write moves it).
    pub change_seq: IntGauge,
    /// Requests to upstream servers on a walk through the hierarchy, by outcome
    /// (answered, no_answer, error).
    pub upstream_requests: IntCounterVec,
    /// Time an upstream server took, by outcome.
    pub upstream_latency: HistogramVec,
    /// Foreign resolutions by result (hit: from the walker's cache; miss: walked).
    pub upstream_cache: IntCounterVec,
    /// Referrals followed on walks, by response code (302, 303).
    pub referrals: IntCounterVec,
    /// Node-to-node QUIC handshakes by outcome (accepted, refused).
    pub federation_handshakes: IntCounterVec,
    /// Read at every scrape for what is not counted as it happens.
    probe: ProbeSlot,
}

struct WalkMetrics(Metrics);

impl suyuan_federation::Observer for WalkMetrics {
    fn upstream(&self, outcome: &'static str, elapsed: std::time::Duration) {
        self.0.upstream_requests.with_label_values(&[outcome]).inc();
        self.0
            .upstream_latency
            .with_label_values(&[outcome])
            .observe(elapsed.as_secs_f64());
    }
    fn cache(&self, hit: bool) {
        let r = if hit { "hit" } else { "miss" };
        self.0.upstream_cache.with_label_values(&[r]).inc();
    }
    fn referral(&self, code: u32) {
        self.0
            .referrals
            .with_label_values(&[&code.to_string()])
            .inc();
    }
}

#[derive(Clone, Default)]
struct ProbeSlot(Arc<std::sync::Mutex<Option<Probe>>>);

impl std::fmt::Debug for ProbeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeSlot")
    }
}

/// What a scrape asks of the node: `(cache hits, cache misses, store bytes, change seq)`.
pub type Probe = Arc<dyn Fn() -> (u64, u64, u64, u64) + Send + Sync>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("suyuan".into()), None).unwrap_or_else(|_| Registry::new());
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Handle requests answered"),
            &["transport", "op", "rc"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new("request_seconds", "Time to answer a Handle request").buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
            &["transport"],
        )
        .expect("static metric definition");
        let dropped = IntCounterVec::new(
            Opts::new("dropped_total", "Requests or answers dropped"),
            &["reason"],
        )
        .expect("static metric definition");
        let tcp_connections =
            IntGauge::new("tcp_connections", "TCP connections open").expect("static metric");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let http_latency = HistogramVec::new(
            HistogramOpts::new("http_request_seconds", "Time to answer an HTTP request")
                .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["route"],
        )
        .expect("static metric definition");
        let cache_lookups = IntCounterVec::new(
            Opts::new("cache_lookups_total", "Record lookups by result"),
            &["result"],
        )
        .expect("static metric definition");
        let store_bytes =
            IntGauge::new("store_bytes", "Bytes the store takes on disk").expect("static metric");
        let change_seq = IntGauge::new("change_log_seq", "Last sequence number of the change log")
            .expect("static metric");
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "upstream_requests_total",
                "Requests to upstream Handle servers",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new("upstream_seconds", "Time an upstream Handle server took").buckets(
                vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 10.0],
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let upstream_cache = IntCounterVec::new(
            Opts::new(
                "upstream_cache_lookups_total",
                "Foreign resolutions by cache result",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let referrals = IntCounterVec::new(
            Opts::new(
                "referrals_followed_total",
                "Referrals followed through the hierarchy",
            ),
            &["rc"],
        )
        .expect("static metric definition");
        let federation_handshakes = IntCounterVec::new(
            Opts::new(
                "federation_handshakes_total",
                "Node-to-node QUIC handshakes by outcome",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(federation_handshakes.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_latency.clone()),
            Box::new(upstream_cache.clone()),
            Box::new(referrals.clone()),
            Box::new(latency.clone()),
            Box::new(dropped.clone()),
            Box::new(tcp_connections.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_latency.clone()),
            Box::new(cache_lookups.clone()),
            Box::new(store_bytes.clone()),
            Box::new(change_seq.clone()),
        ] {
            // Registration only fails for duplicate names, which these fixed ones are not.
            let _ = registry.register(c);
        }
        Metrics {
            registry,
            requests,
            latency,
            dropped,
            tcp_connections,
            http_requests,
            http_latency,
            cache_lookups,
            store_bytes,
            change_seq,
            upstream_requests,
            upstream_latency,
            upstream_cache,
            referrals,
            federation_handshakes,
            probe: ProbeSlot::default(),
        }
    }

    /// What a walker through the hierarchy reports, counted here.
    pub fn walker_observer(&self) -> Arc<dyn suyuan_federation::Observer> {
        Arc::new(WalkMetrics(self.clone()))
    }

    /// Sets what a scrape reads from the node.
    pub fn set_probe(&self, probe: Probe) {
        if let Ok(mut p) = self.probe.0.lock() {
            *p = Some(probe);
        }
    }

    fn refresh(&self) {
        let probe = self.probe.0.lock().ok().and_then(|p| p.clone());
        let Some(probe) = probe else { return };
        let (hits, misses, bytes, seq) = probe();
        for (label, now) in [("hit", hits), ("miss", misses)] {
            let c = self.cache_lookups.with_label_values(&[label]);
            c.inc_by(now.saturating_sub(c.get()));
        }
        self.store_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.change_seq.set(i64::try_from(seq).unwrap_or(i64::MAX));
    }

    pub fn render(&self) -> String {
        self.refresh();
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct OpsState {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
}

/// Serves the operations endpoint until `shutdown` turns true.
pub async fn serve_ops(
    listener: TcpListener,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState { metrics, ready });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

async fn readyz(State(s): State<OpsState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics_text(State(s): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let metrics = Metrics::new();
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve_ops(l, metrics.clone(), ready.clone(), rx));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        ready.store(true, Ordering::Release);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        metrics
            .requests
            .with_label_values(&["udp", "RESOLUTION", "1"])
            .inc();
        let text = get(addr, "/metrics").await;
        assert!(
            text.contains("suyuan_requests_total{op=\"RESOLUTION\",rc=\"1\",transport=\"udp\"} 1"),
            "{text}"
        );
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }
}
