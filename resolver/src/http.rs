//! The node's HTTP port: HTTP and HTTPS on one port (a connection opening with a TLS
//! handshake is HTTPS), with a connection limit, handshake and header timeouts, accept
//! backoff and graceful shutdown. It serves the Handle.Net REST API and the rest of
//! [`crate::rest`], and `GET /api/trace/{handle}`, the trace answer (docs/trace-api.md) with
//! the values the caller may read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use serde_json::json;
use suyuan_codec::json::JsonLimits;
use suyuan_codec::message::rc;
use suyuan_codec::wire::MAX_MESSAGE_LENGTH;
use suyuan_registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::cors::{self, CorsOrigins};
use crate::node::HandleNode;
use crate::rest::{self, ConnInfo, DeviceRule, RestState};
use crate::tls::ClientCert;

pub use crate::trace::{MAX_DEPTH, MAX_LIMIT, parse_trace_query};

/// The default body cap: room for any PUT whose record still fits one Handle message over
/// TCP ([`MAX_MESSAGE_LENGTH`]) in the widest JSON form of its data (hex doubles the bytes,
/// `\u00XX` escapes multiply them by six), so whatever the REST API accepts can also be
/// resolved over the wire.
pub const DEFAULT_MAX_BODY: usize = 2 << 20;

/// The longest request line taken, as the reference's HTTP port (Jetty's 8 KiB header buffer):
/// longer gets 414.
pub const MAX_REQUEST_LINE: usize = 8192;

/// How the HTTP port serves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// TLS for the same port (a connection that starts with a TLS record is HTTPS).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub devices: Vec<DeviceRule>,
    /// Largest request body taken: a larger declared `Content-Length` is refused with 413
    /// before a byte of the body is read, a longer body when it passes the cap.
    pub max_body: usize,
    /// How long a request's body may take to arrive once its headers have (longer: 408).
    pub body_timeout: Duration,
    /// Origins that get cross-origin grants.
    pub cors: CorsOrigins,
    pub max_connections: usize,
    /// How long a connection may take to send its first bytes or finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// REST sessions kept at once (`/api/sessions`).
    pub max_sessions: usize,
    /// Where HTTP requests are counted.
    pub metrics: Option<crate::ops::Metrics>,
    /// The node's transparency log, published under `/log/` and `/api/proof/`.
    pub log: Option<Arc<crate::transparency::Transparency>>,
    /// This node as a witness of other logs (`POST /log/add-checkpoint`).
    pub witness: Option<Arc<crate::witness::Witness>>,
    /// How traces cross to other nodes (none: a remote hop is resolved, not traced).
    pub federation: Option<Arc<crate::trace::Federation>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            tls: None,
            devices: Vec::new(),
            max_body: DEFAULT_MAX_BODY,
            body_timeout: Duration::from_secs(30),
            cors: CorsOrigins::any(),
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            max_sessions: 65_536,
            metrics: None,
            log: None,
            witness: None,
            federation: None,
        }
    }
}

#[derive(Clone)]
struct HttpState {
    rest: RestState,
    tracer: crate::trace::Tracer,
    log: Option<Arc<crate::transparency::Transparency>>,
    witness: Option<Arc<crate::witness::Witness>>,
}

impl axum::extract::FromRef<HttpState> for Option<Arc<crate::witness::Witness>> {
    fn from_ref(s: &HttpState) -> Self {
        s.witness.clone()
    }
}

impl axum::extract::FromRef<HttpState> for crate::transparency::LogState {
    fn from_ref(s: &HttpState) -> Self {
        crate::transparency::LogState {
            log: s.log.clone(),
            rest: s.rest.clone(),
        }
    }
}

impl axum::extract::FromRef<HttpState> for RestState {
    fn from_ref(s: &HttpState) -> RestState {
        s.rest.clone()
    }
}

/// The routes of the HTTP port.
fn router(registry: Arc<Registry>, node: HandleNode, opts: &HttpOptions) -> Router {
    let rest = RestState {
        node,
        devices: Arc::new(opts.devices.clone()),
        // One value's data may not outgrow a Handle message: what REST stores, TCP can serve.
        limits: JsonLimits {
            max_body: opts.max_body,
            max_data: MAX_MESSAGE_LENGTH,
            ..JsonLimits::default()
        },
        sessions: Arc::new(Mutex::new(rest::RestSessions::new(
            opts.max_sessions,
            Duration::from_secs(30 * 60),
        ))),
    };
    let app = Router::new()
        .route("/api/trace/{*handle}", get(trace))
        .route("/api/proof/{*handle}", get(crate::transparency::proof))
        .route("/log/key", get(crate::transparency::key))
        .route("/log/checkpoint", get(crate::transparency::checkpoint))
        .route("/log/consistency", get(crate::transparency::consistency))
        .route("/log/tile/{*tile}", get(crate::transparency::tile))
        .route(
            "/log/add-checkpoint",
            axum::routing::post(crate::witness::add_checkpoint),
        )
        // The reference answers a POST where it answers a GET, on handles and sessions alike.
        .route(
            "/api/handles",
            get(rest::list_handles)
                .post(rest::list_handles)
                .put(rest::put_no_handle)
                .delete(rest::delete_no_handle),
        )
        .route(
            "/api/handles/{*handle}",
            get(rest::get_handle)
                .post(rest::get_handle)
                .put(rest::put_handle)
                .delete(rest::delete_handle),
        )
        .route(
            "/api/handles/",
            get(rest::empty_handle)
                .post(rest::empty_handle)
                .put(rest::put_no_handle)
                .delete(rest::delete_no_handle),
        )
        .route(
            "/api/prefixes",
            get(rest::list_prefixes)
                .post(rest::prefix_not_specified)
                .delete(rest::prefix_not_specified),
        )
        .route(
            "/api/prefixes/{*prefix}",
            axum::routing::post(rest::home_prefix).delete(rest::home_prefix),
        )
        .route("/api/sessions", axum::routing::post(rest::open_session))
        .route(
            "/api/sessions/this",
            get(rest::this_session)
                .post(rest::this_session)
                .put(rest::this_session)
                .delete(rest::this_session),
        )
        .route(
            "/api/devices/{*handle}",
            axum::routing::put(rest::register_device),
        )
        .route("/api", axum::routing::any(rest::unknown_endpoint))
        .route("/api/", axum::routing::any(rest::unknown_endpoint))
        .route("/api/{*rest}", axum::routing::any(rest::unknown_endpoint))
        .fallback(rest::fallback)
        .layer(DefaultBodyLimit::max(opts.max_body))
        .with_state(HttpState {
            tracer: crate::trace::Tracer::new(
                registry.clone(),
                rest.node.clone(),
                opts.log.clone(),
                opts.federation.clone(),
            ),
            rest,
            log: opts.log.clone(),
            witness: opts.witness.clone(),
        })
        .layer(axum::middleware::from_fn_with_state(
            BodyLimits {
                max: opts.max_body,
                timeout: opts.body_timeout,
            },
            body_limits,
        ));
    let app = app.layer(axum::middleware::from_fn(route_label));
    // Around the routes, not inside them: a route's method router would add its own `Allow`
    // to the OPTIONS answers.
    let outer = Router::new()
        .fallback_service(app)
        // Outside the routes too: a route's method router adds its `Allow` to answers for
        // methods it does not take, which the reference's do not carry.
        .layer(axum::middleware::from_fn(rest::api_methods))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(opts.cors.clone()),
            cors::layer,
        ))
        .layer(axum::middleware::from_fn(request_line_limit));
    // Outermost, so the answers given before routing (OPTIONS, 414) are counted too.
    match &opts.metrics {
        Some(m) => outer.layer(axum::middleware::from_fn_with_state(m.clone(), count)),
        None => outer,
    }
}

/// The route an answer came from, for the metrics: its pattern, not its path (handles would
/// explode the labels). Answers given before routing are labelled where they are made.
#[derive(Debug, Clone)]
pub(crate) struct RouteLabel(pub(crate) std::borrow::Cow<'static, str>);

impl RouteLabel {
    /// Labels an answer made outside the routes.
    pub(crate) fn mark(mut r: Response, label: &'static str) -> Response {
        r.extensions_mut()
            .insert(RouteLabel(std::borrow::Cow::Borrowed(label)));
        r
    }
}

async fn route_label(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| std::borrow::Cow::Owned(p.as_str().to_string()))
        .unwrap_or(std::borrow::Cow::Borrowed("other"));
    let mut r = next.run(req).await;
    r.extensions_mut().insert(RouteLabel(route));
    r
}

/// 414 for a request line longer than [`MAX_REQUEST_LINE`], and 400 for a path whose escapes
/// do not decode, with the reference's answers.
async fn request_line_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().len())
        .unwrap_or(0);
    // "METHOD SP target SP HTTP/1.1 CRLF"
    let line = req.method().as_str().len() + 1 + target + 1 + 8 + 2;
    if line > MAX_REQUEST_LINE {
        return RouteLabel::mark(
            (
                StatusCode::URI_TOO_LONG,
                [
                    (header::CONTENT_TYPE, "text/html;charset=iso-8859-1"),
                    (header::CONNECTION, "close"),
                ],
                "<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>",
            )
                .into_response(),
            "uri-too-long",
        );
    }
    // A path whose percent-escapes do not decode is no URI at all: the reference's HTTP layer
    // answers it 400 before any servlet sees it (a bad escape in the query reaches the API).
    if !escapes_decode(req.uri().path().as_bytes()) {
        return RouteLabel::mark(
            (
                StatusCode::BAD_REQUEST,
                [
                    (header::CONTENT_TYPE, "text/html;charset=iso-8859-1"),
                    (header::CONNECTION, "close"),
                ],
                "<h1>Bad Message 400</h1><pre>reason: Bad Request</pre>",
            )
                .into_response(),
            "bad-uri",
        );
    }
    next.run(req).await
}

/// Every `%` is followed by two hex digits.
fn escapes_decode(path: &[u8]) -> bool {
    path.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || path
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

#[derive(Clone, Copy)]
struct BodyLimits {
    max: usize,
    timeout: Duration,
}

/// A REST-form error (`responseCode`, `message`) that also closes the connection: the body
/// it answers was not read to its end. RC 4, as the reference answers a body it could not
/// read (its own deadline, 30 s without a byte, answers 400 with RC 4).
fn body_refused(status: StatusCode, message: String) -> Response {
    let body = json!({"responseCode": rc::PROTOCOL_ERROR, "message": message});
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json;charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The largest refused body read to its end before the 413 is answered (larger ones are
/// answered at once, the connection closed).
const DRAIN_MAX: u64 = 16 * 1024 * 1024;

/// Takes the whole body before any route sees the request: a declared length over the cap
/// is refused before reading (413), a body that passes the cap while arriving is refused when
/// it does (413), and one that has not arrived within the deadline is cut off (408).
async fn body_limits(
    State(l): State<BodyLimits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > l.max as u64) {
        // A client still sending when the answer comes and the connection closes gets a reset
        // instead of the answer: read what it sends first, when that is bounded and quick.
        if n <= DRAIN_MAX {
            let mut body = req.into_body();
            let _ = tokio::time::timeout(l.timeout, async {
                while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {}
            })
            .await;
        }
        return body_refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body of {n} bytes exceeds the limit of {} bytes",
                l.max
            ),
        );
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(l.timeout, axum::body::to_bytes(body, l.max)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_long = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_long {
                body_refused(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body exceeds the limit of {} bytes", l.max),
                )
            } else {
                body_refused(StatusCode::BAD_REQUEST, format!("Request body: {e}"))
            };
        }
        Err(_) => {
            return body_refused(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "Request body did not arrive within {} seconds",
                    l.timeout.as_secs()
                ),
            );
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// Counts an HTTP request by its route ([`RouteLabel`]); answers given before any route was
/// reached carry the label their maker gave them: `options` (CORS and `Allow` answers),
/// `uri-too-long` (414), `bad-uri` (400 for a path that does not decode), else `other`.
async fn count(
    State(m): State<crate::ops::Metrics>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let r = next.run(req).await;
    let route = r
        .extensions()
        .get::<RouteLabel>()
        .map_or("other", |RouteLabel(route)| route.as_ref());
    let method = method.as_str();
    m.http_requests
        .with_label_values(&[route, method, r.status().as_str()])
        .inc();
    m.http_latency
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    r
}

/// Serves HTTP, and HTTPS on the same port when `opts.tls` is set, until `shutdown` turns
/// true; then finishes the requests in flight.
pub async fn serve_http(
    listener: TcpListener,
    registry: Arc<Registry>,
    node: HandleNode,
    opts: HttpOptions,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(registry, node, &opts);
    let acceptor = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => { backoff = Duration::from_millis(5); x }
                Err(e) => {
                    // Out of descriptors and the like: wait, then try again.
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let (app, acceptor, shutdown) = (app.clone(), acceptor.clone(), shutdown.clone());
        let handshake = opts.handshake_timeout;
        tasks.spawn(async move {
            connection(stream, peer, app, acceptor, handshake, shutdown).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// One connection: HTTPS if it opens with a TLS handshake record, plain HTTP otherwise.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handshake: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    let is_tls = match tokio::time::timeout(handshake, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == 0x16,
        _ => return,
    };
    match (is_tls, acceptor) {
        (true, Some(acceptor)) => {
            let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| ClientCert { der: c.to_vec() });
            let info = ConnInfo {
                peer,
                tls: true,
                cert,
            };
            serve_conn(tls, app, info, shutdown).await;
        }
        (true, None) => {} // TLS without a certificate configured: nothing to say.
        (false, _) => {
            let info = ConnInfo {
                peer,
                tls: false,
                cert: None,
            };
            serve_conn(stream, app, info, shutdown).await;
        }
    }
}

async fn serve_conn<I>(io: I, app: Router, info: ConnInfo, mut shutdown: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        app.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn error(status: StatusCode, code: u32, handle: &str, message: String) -> Response {
    let body = json!({"responseCode": code, "handle": handle, "message": message});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn trace(
    State(s): State<HttpState>,
    Extension(conn): Extension<ConnInfo>,
    Path(input): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let who = match rest::caller(&s.rest, &conn, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match s.tracer.run(who, input, raw).await {
        Ok(t) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&t).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.code,
            &e.handle,
            e.message,
        ),
    }
}
