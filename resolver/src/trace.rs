//! The trace surface, shared by `GET /api/trace/{handle}` and the node-to-node trace frame:
//! the local walk with each record's proof, then the hops to other nodes, then the
//! derivation checks over everything gathered.
//!
//! A hop to another node is crossed in one of three ways, best first: the peer's trace over
//! QUIC (its site advertises QUIC and this node has the federation's certificates), the
//! peer's HTTPS trace API, or, for a peer that has neither (a reference server), a plain
//! resolution of the hop's record. A peer's trace is asked with what is left of the depth,
//! the node limit and the time budget, and with the nodes already on the path, so a loop
//! across nodes is cut (the peer answers 508 and the hop is marked). Every record a peer
//! answers keeps its `servedBy` and its proof; a record whose proof verifies against a log
//! key this node trusts may feed this node's checks, one that does not makes them grey.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};
use suyuan_codec::fedframe::Kind;
use suyuan_codec::handle::{Handle, key_of};
use suyuan_codec::json::{JsonLimits, value_from_json};
use suyuan_codec::message::rc;
use suyuan_codec::note::VerifierKey;
use suyuan_codec::site::{SiteInfo, interface_protocol};
use suyuan_federation::quic::QuicLink;
use suyuan_registry::trace::{Dangling, TraceEdge, TraceNode, Unreachable};
use suyuan_registry::{Direction, Identity, Registry, RegistryError, Trace, TraceQuery};
use tokio::time::Instant;
use tracing::debug;

use crate::node::HandleNode;

/// Caps on what one trace request may ask for.
pub const MAX_DEPTH: u32 = 64;
pub const MAX_LIMIT: usize = 100_000;
/// The time budget of a trace that crosses nodes, unless the request gives one.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);
/// The longest budget a request may ask for.
pub const MAX_BUDGET: Duration = Duration::from_secs(60);
/// Hops to other nodes asked at once.
const CONCURRENT_HOPS: usize = 16;

/// Parses the query of a trace request (`direction`, `depth`, `limit`, `rel` repeatable,
/// `from`, `to`, `proofs`, `checks`) into a query for `root`.
pub fn parse_trace_query(root: &str, raw: Option<&str>) -> Result<TraceQuery, String> {
    Ok(parse(root, raw)?.0)
}

/// What a trace crossing nodes carries besides the query: the nodes already on its path
/// (`visited`, repeatable, identity handles) and its time budget (`budget_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub visited: Vec<String>,
    pub budget: Duration,
}

fn parse(root: &str, raw: Option<&str>) -> Result<(TraceQuery, Crossing), String> {
    let mut direction = Direction::Up;
    let mut depth = TraceQuery::DEFAULT_DEPTH;
    let mut limit = TraceQuery::DEFAULT_LIMIT;
    let mut rels = Vec::new();
    let (mut from, mut to) = (None, None);
    let (mut proofs, mut checks) = (true, true);
    let mut crossing = Crossing {
        visited: Vec::new(),
        budget: DEFAULT_BUDGET,
    };
    let flag = |name: &str, v: &str| match v {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{name} must be true or false, not {other:?}")),
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "direction" => {
                direction = match v.as_ref() {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    other => return Err(format!("direction must be up or down, not {other:?}")),
                }
            }
            "depth" => {
                depth = v
                    .parse()
                    .ok()
                    .filter(|d| *d <= MAX_DEPTH)
                    .ok_or(format!("depth must be 0..={MAX_DEPTH}"))?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or(format!("limit must be 1..={MAX_LIMIT}"))?
            }
            "rel" => rels.push(v.into_owned()),
            "proofs" => proofs = flag("proofs", &v)?,
            "checks" => checks = flag("checks", &v)?,
            "from" => from = Some(v.into_owned()),
            "to" => to = Some(v.into_owned()),
            "visited" if crossing.visited.len() < MAX_DEPTH as usize => {
                crossing.visited.push(v.into_owned())
            }
            "visited" => return Err(format!("at most {MAX_DEPTH} visited nodes")),
            "budget_ms" => {
                crossing.budget = v
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_millis)
                    .filter(|b| !b.is_zero() && *b <= MAX_BUDGET)
                    .ok_or(format!("budget_ms must be 1..={}", MAX_BUDGET.as_millis()))?
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let mut q = TraceQuery::new(root, direction)
        .with_window(from.as_deref(), to.as_deref())
        .map_err(|e| e.to_string())?;
    q.depth = depth;
    q.limit = limit;
    q.rels = rels;
    q.proofs = proofs;
    q.checks = checks;
    Ok((q, crossing))
}

/// A trace request refused: the HTTP status, the Handle response code and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    pub status: u16,
    pub code: u32,
    pub handle: String,
    pub message: String,
}

impl TraceError {
    fn new(status: u16, code: u32, handle: &str, message: impl Into<String>) -> Self {
        TraceError {
            status,
            code,
            handle: handle.to_string(),
            message: message.into(),
        }
    }
}

/// How this node's traces cross to other nodes.
pub struct Federation {
    /// This node's identity (its federation certificate's, else `0.NA/<prefix>`): what a
    /// trace's `visited` names it by.
    pub identity: String,
    /// Node-to-node QUIC, when this node has the federation's certificates.
    pub quic: Option<Arc<QuicLink>>,
    /// The log keys of peers whose records may feed this node's checks.
    pub trusted_logs: Vec<VerifierKey>,
    https: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("identity", &self.identity)
            .field("quic", &self.quic.is_some())
            .field("trusted_logs", &self.trusted_logs.len())
            .finish_non_exhaustive()
    }
}

impl Federation {
    pub fn new(
        identity: String,
        quic: Option<Arc<QuicLink>>,
        trusted_logs: Vec<VerifierKey>,
    ) -> Self {
        Federation {
            identity,
            quic,
            trusted_logs,
            https: Arc::new(crate::tls::any_server_client_config()),
        }
    }
}

/// Runs traces: this node's walk, the hops to other nodes, the checks.
#[derive(Clone)]
pub struct Tracer {
    registry: Arc<Registry>,
    node: HandleNode,
    log: Option<Arc<crate::transparency::Transparency>>,
    federation: Option<Arc<Federation>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("federation", &self.federation)
            .finish_non_exhaustive()
    }
}

impl Tracer {
    pub fn new(
        registry: Arc<Registry>,
        node: HandleNode,
        log: Option<Arc<crate::transparency::Transparency>>,
        federation: Option<Arc<Federation>>,
    ) -> Self {
        Tracer {
            registry,
            node,
            log,
            federation,
        }
    }

    /// The trace of `input` (a handle, or an identifier bound to one) with the query `raw`,
    /// as `who` may see it (anonymous: public values only).
    pub async fn run(
        &self,
        who: Option<Identity>,
        input: String,
        raw: Option<String>,
    ) -> Result<Trace, TraceError> {
        let started = Instant::now();
        let this = self.clone();
        let walked = tokio::task::spawn_blocking(move || this.local(who, &input, raw.as_deref()))
            .await
            .map_err(|e| TraceError::new(500, rc::ERROR, "", e.to_string()))??;
        let (q, crossing, mut t) = walked;
        self.across(&q, &crossing, started, &mut t).await;
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || registry.finish_trace(&q, &mut t).map(|()| t))
            .await
            .map_err(|e| TraceError::new(500, rc::ERROR, "", e.to_string()))?
            .map_err(|e| TraceError::new(500, rc::ERROR, "", e.to_string()))
    }

    /// The walk over this node's records, each with its proof. Blocks.
    fn local(
        &self,
        who: Option<Identity>,
        input: &str,
        raw: Option<&str>,
    ) -> Result<(TraceQuery, Crossing, Trace), TraceError> {
        let store = |e: RegistryError| match e {
            RegistryError::Refused { code, message } if code == rc::HANDLE_NOT_FOUND => {
                TraceError::new(404, code, "", message)
            }
            e => TraceError::new(500, rc::ERROR, "", e.to_string()),
        };
        // An input with a scheme's marker (urn:oid:, a GS1 element string or Digital Link)
        // is read by that scheme first, in its normal form; then a handle is a handle, and
        // anything else is looked up in the alias index as written.
        let not_bound = || {
            TraceError::new(
                404,
                rc::HANDLE_NOT_FOUND,
                input,
                format!("{input}: no handle, and no identifier bound to one"),
            )
        };
        let root = match self.registry.bound(input) {
            Some(Ok(bound)) => bound.ok_or_else(not_bound)?,
            Some(Err(RegistryError::Refused { code, message })) if code == rc::INVALID_VALUE => {
                return Err(TraceError::new(400, code, input, message));
            }
            Some(Err(e)) => return Err(store(e)),
            None if Handle::parse(input).is_ok() => input.to_string(),
            None => self
                .registry
                .alias(input)
                .map_err(store)?
                .ok_or_else(not_bound)?,
        };
        // A root under a prefix held elsewhere is not "not found": say where to look instead,
        // with the status the REST API gives RC 301 (400, as the reference server does).
        // In a site of several servers, a trace starts at the server that holds its root.
        if let Some(m) = self.node.hashed_elsewhere(&root) {
            return Err(TraceError::new(400, rc::SERVER_NOT_RESP, input, m));
        }
        if let Ok(h) = Handle::parse(&root) {
            if !self.registry.is_homed(h.prefix()).map_err(store)? {
                return Err(TraceError::new(
                    400,
                    rc::SERVER_NOT_RESP,
                    input,
                    format!(
                        "{root}: prefix {} is not homed at this node; resolve 0.NA/{} at a top-level node to find who serves it",
                        h.prefix(),
                        h.prefix()
                    ),
                ));
            }
        }
        let (q, crossing) =
            parse(&root, raw).map_err(|m| TraceError::new(400, rc::INVALID_VALUE, input, m))?;
        if let Some(f) = &self.federation {
            if crossing.visited.iter().any(|v| v == &f.identity) {
                return Err(TraceError::new(
                    508,
                    rc::ERROR,
                    input,
                    format!(
                        "a loop across nodes: {} is already on this trace's path",
                        f.identity
                    ),
                ));
            }
        }
        // Anonymous callers see public values only; an authenticated one also the
        // admin-readable values of the records it may read (decided once a record).
        let decided: Mutex<HashMap<String, bool>> = Mutex::default();
        let readable = |handle: &str, v: &suyuan_codec::value::HandleValue| {
            if v.permissions.public_read() {
                return true;
            }
            let Some(who) = who.as_ref().filter(|_| v.permissions.admin_read()) else {
                return false;
            };
            let mut d = decided.lock().unwrap_or_else(|e| e.into_inner());
            *d.entry(handle.to_string())
                .or_insert_with(|| self.node.may_read(who, handle))
        };
        let mut t = self
            .registry
            .trace_unchecked(&q, &readable)
            .map_err(store)?;
        if let Some(log) = self.log.as_ref().filter(|_| q.proofs) {
            for n in &mut t.nodes {
                let Some(seq) = n.seq else { continue };
                let shown: Vec<u32> = n
                    .values
                    .iter()
                    .filter_map(|v| v.get("index").and_then(|i| i.as_u64()))
                    .filter_map(|i| u32::try_from(i).ok())
                    .collect();
                n.proof = log.proof(seq, &shown).map_err(store)?;
            }
        }
        Ok((q, crossing, t))
    }

    /// Says which node answered each record, and crosses every hop to another node within
    /// the budget: the peer's trace merged in, or its record resolved, or the hop left in
    /// `unreachable` with why.
    async fn across(&self, q: &TraceQuery, crossing: &Crossing, started: Instant, t: &mut Trace) {
        for n in &mut t.nodes {
            n.served_by = Handle::parse(&n.handle)
                .ok()
                .map(|h| format!("{}/{}", suyuan_codec::handle::NA_PREFIX, h.prefix()));
        }
        let Some(walker) = self.node.walker().cloned() else {
            return;
        };
        let deadline = started + crossing.budget;
        let mut visited = crossing.visited.clone();
        if let Some(f) = &self.federation {
            visited.push(f.identity.clone());
        }
        let hops = t.remote.clone();
        let local_nodes = t.nodes.len();
        let visited = &visited;
        let asked = hops.iter().cloned().enumerate().map(|(i, hop)| {
            let walker = walker.clone();
            async move {
                let remaining = Remaining {
                    depth: q.depth.saturating_sub(hop.depth),
                    limit: q.limit.saturating_sub(local_nodes).max(1),
                };
                let crossed = tokio::time::timeout_at(
                    deadline,
                    self.cross(&walker, q, &hop, remaining, visited, deadline),
                )
                .await;
                (i, crossed)
            }
        });
        let mut answers: Vec<_> =
            futures_util::StreamExt::collect(futures_util::StreamExt::buffer_unordered(
                futures_util::stream::iter(asked),
                CONCURRENT_HOPS,
            ))
            .await;
        // Merged in the order of the hops, whatever order they were answered in.
        answers.sort_by_key(|(i, _)| *i);
        let mut unreachable = Vec::new();
        let mut seen: HashSet<String> = t.nodes.iter().map(|n| key_of(&n.handle)).collect();
        for (i, crossed) in answers {
            let hop = &hops[i];
            match crossed {
                Err(_) => unreachable.push(Unreachable {
                    handle: hop.handle.clone(),
                    node: None,
                    reason: format!(
                        "no answer within the trace's budget of {} ms",
                        crossing.budget.as_millis()
                    ),
                }),
                Ok(Err(u)) => unreachable.push(u),
                Ok(Ok(Crossed::Record(n))) => {
                    if seen.insert(key_of(&n.handle)) {
                        let why = format!(
                            "answered by {} without a proof (a plain resolution)",
                            n.served_by.as_deref().unwrap_or("another node")
                        );
                        t.push_remote(n, Err(why));
                    }
                    t.edges.extend(hop.links.iter().cloned());
                }
                Ok(Ok(Crossed::Trace { node, answer })) => {
                    t.edges.extend(hop.links.iter().cloned());
                    self.merge(&node, answer, t, &mut seen, &mut unreachable);
                }
            }
        }
        t.unreachable = Some(unreachable);
    }

    /// Merges a peer's trace answer into `t`.
    fn merge(
        &self,
        node: &str,
        answer: Json,
        t: &mut Trace,
        seen: &mut HashSet<String>,
        unreachable: &mut Vec<Unreachable>,
    ) {
        let trusted = self
            .federation
            .as_ref()
            .map(|f| f.trusted_logs.clone())
            .unwrap_or_default();
        let trust = suyuan_registry::proof::Trust::new(trusted, Vec::new());
        let limits = JsonLimits::default();
        for n in answer["nodes"].as_array().map_or(&[][..], Vec::as_slice) {
            let Some(handle) = n["handle"].as_str() else {
                continue;
            };
            if !seen.insert(key_of(handle)) {
                continue;
            }
            let values = n["values"].as_array().cloned().unwrap_or_default();
            let proof = n.get("proof").cloned().unwrap_or(Json::Null);
            let served_by = n["servedBy"].as_str().unwrap_or(node).to_string();
            let verified = if trust.log_keys.is_empty() {
                Err(format!(
                    "answered by {served_by}, whose log key this node is not configured to trust"
                ))
            } else {
                suyuan_registry::proof::check_record(handle, &values, &proof, &trust)
                    .map_err(|why| format!("answered by {served_by}, not verified: {why}"))
                    .and_then(|_| {
                        values
                            .iter()
                            .map(|v| value_from_json(v, &limits).map_err(|e| e.to_string()))
                            .collect::<Result<Vec<_>, _>>()
                    })
            };
            t.push_remote(
                TraceNode {
                    handle: handle.to_string(),
                    kind: n["kind"].as_str().map(str::to_string),
                    values,
                    identifiers: n["identifiers"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .take(64)
                                .filter_map(|i| serde_json::from_value(i.clone()).ok())
                                .collect()
                        })
                        .unwrap_or_default(),
                    served_by: Some(served_by),
                    seq: None,
                    proof: (!proof.is_null()).then_some(proof),
                    check: None,
                },
                verified,
            );
        }
        let list = |key: &str| answer[key].as_array().cloned().unwrap_or_default();
        t.edges.extend(
            list("edges")
                .into_iter()
                .filter_map(|e| serde_json::from_value::<TraceEdge>(e).ok()),
        );
        t.dangling.extend(
            list("dangling")
                .into_iter()
                .filter_map(|d| serde_json::from_value::<Dangling>(d).ok()),
        );
        unreachable.extend(
            list("unreachable")
                .into_iter()
                .filter_map(|u| serde_json::from_value::<Unreachable>(u).ok()),
        );
        t.truncated |= answer["truncated"].as_bool() == Some(true);
    }

    /// Crosses one hop: the peer's trace from it, or its record.
    async fn cross(
        &self,
        walker: &suyuan_federation::Walker,
        q: &TraceQuery,
        hop: &suyuan_registry::trace::RemoteHop,
        remaining: Remaining,
        visited: &[String],
        deadline: Instant,
    ) -> Result<Crossed, Unreachable> {
        let unreachable = |node: Option<&str>, reason: String| Unreachable {
            handle: hop.handle.clone(),
            node: node.map(str::to_string),
            reason,
        };
        let (service, sites) = walker
            .sites_for(&hop.handle)
            .await
            .map_err(|e| unreachable(None, e.to_string()))?;
        let query = remote_query(q, remaining, visited, deadline);
        let body = json!({"handle": hop.handle, "query": query}).to_string();
        let mut why = String::from("no site to try");
        for site in &sites {
            let asked = match self.federation.as_ref() {
                Some(f) => self.ask(f, site, &hop.handle, &query, &body).await,
                None => Asked::NoTraceApi,
            };
            match asked {
                Asked::Answer(200, text) => {
                    let answer: Json = serde_json::from_slice(&text).map_err(|e| {
                        unreachable(
                            Some(&service),
                            format!("the node's trace answer is not JSON: {e}"),
                        )
                    })?;
                    return Ok(Crossed::Trace {
                        node: service,
                        answer,
                    });
                }
                Asked::Answer(404, _) | Asked::NoTraceApi => break,
                Asked::Answer(status, text) => {
                    let message = serde_json::from_slice::<Json>(&text)
                        .ok()
                        .and_then(|j| j["message"].as_str().map(str::to_string))
                        .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
                    return Err(unreachable(
                        Some(&service),
                        format!("the node answered {status}: {message}"),
                    ));
                }
                Asked::Failed(e) => {
                    debug!(hop = %hop.handle, "trace not crossed at a site: {e}");
                    why = e;
                }
            }
        }
        if !why.starts_with("no site") && self.federation.is_some() {
            return Err(unreachable(Some(&service), why));
        }
        // A peer without a trace API (a reference server): its record, resolved.
        match walker
            .resolve(&hop.handle, &[], &[], suyuan_federation::Hops(0))
            .await
        {
            Ok(a) => match a.message.body {
                suyuan_codec::message::Body::ResolutionResponse { values, .. } => {
                    let mut n = TraceNode::public(&hop.handle, &values);
                    n.served_by = Some(a.served_by.service.clone());
                    Ok(Crossed::Record(n))
                }
                _ => Err(unreachable(
                    Some(&a.served_by.service),
                    format!(
                        "{} ({})",
                        rc::name(a.message.header.response_code).unwrap_or("UNKNOWN"),
                        a.message.header.response_code
                    ),
                )),
            },
            Err(e) => Err(unreachable(None, e.to_string())),
        }
    }

    /// Asks the server of `site` that holds `handle` for its trace: over QUIC when both ends
    /// have it, else over HTTPS when the server lists an HTTP interface.
    async fn ask(
        &self,
        f: &Federation,
        site: &SiteInfo,
        handle: &str,
        query: &str,
        body: &str,
    ) -> Asked {
        if let Some(quic) = &f.quic {
            if let Ok(addr) =
                suyuan_federation::server_for(site, handle, suyuan_federation::Transport::Quic)
            {
                return match quic.frame(addr, Kind::Trace, body.as_bytes()).await {
                    Ok((status, text)) => Asked::Answer(status, text),
                    Err(e) => Asked::Failed(e.to_string()),
                };
            }
        }
        let Some(addr) = http_server_for(site, handle) else {
            return Asked::NoTraceApi;
        };
        let path = format!("/api/trace/{}?{query}", path_escape(handle));
        match crate::tls::https_get(addr, &path, f.https.clone()).await {
            Ok((status, text)) => Asked::Answer(status, text),
            Err(e) => Asked::Failed(format!("HTTPS {addr}: {e}")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Remaining {
    depth: u32,
    limit: usize,
}

enum Asked {
    Answer(u16, Vec<u8>),
    /// The server offers no trace API (no QUIC, no HTTP interface).
    NoTraceApi,
    Failed(String),
}

enum Crossed {
    /// The peer's trace answer (JSON), from the node `node`.
    Trace { node: String, answer: Json },
    /// The hop's record alone (a peer without a trace API).
    Record(TraceNode),
}

/// The query a peer is asked: this trace's, with what is left of the depth, the limit and the
/// budget (less a margin for the way back), proofs on, the peer's own checks off (this node
/// checks everything gathered), and the nodes on the path.
fn remote_query(q: &TraceQuery, left: Remaining, visited: &[String], deadline: Instant) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair(
        "direction",
        match q.direction {
            Direction::Up => "up",
            Direction::Down => "down",
        },
    );
    out.append_pair("depth", &left.depth.to_string());
    out.append_pair("limit", &left.limit.to_string());
    for r in &q.rels {
        out.append_pair("rel", r);
    }
    if let Some(w) = &q.window {
        if w.start != i64::MIN {
            out.append_pair("from", &suyuan_codec::time::format_iso8601(w.start));
        }
        if w.end != i64::MAX {
            // An instant `to` covers its second: the span's last second keeps its end.
            out.append_pair("to", &suyuan_codec::time::format_iso8601(w.end - 1));
        }
    }
    out.append_pair("checks", "false");
    for v in visited {
        out.append_pair("visited", v);
    }
    let left_ms = deadline
        .saturating_duration_since(Instant::now())
        .mul_f64(0.8)
        .as_millis()
        .max(1);
    out.append_pair("budget_ms", &left_ms.to_string());
    out.finish()
}

/// The HTTP port of the server of `site` that holds `handle`.
fn http_server_for(site: &SiteInfo, handle: &str) -> Option<SocketAddr> {
    let server = &site.servers[site.server_index_for(handle)?];
    let port = server
        .interfaces
        .iter()
        .find(|i| i.protocol == interface_protocol::HTTP || i.protocol == interface_protocol::HTTPS)
        .and_then(|i| u16::try_from(i.port).ok())?;
    Some(SocketAddr::new(server.ip(), port))
}

fn path_escape(handle: &str) -> String {
    percent_encoding::utf8_percent_encode(handle, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2F", "/")
}

/// The frames this node answers on node-to-node streams: its trace, and its witness.
#[derive(Debug)]
pub struct NodeFrames {
    pub tracer: Tracer,
    pub witness: Option<Arc<crate::witness::Witness>>,
}

impl crate::quic::Frames for NodeFrames {
    fn answer<'a>(
        &'a self,
        _peer: &'a str,
        kind: Kind,
        body: Vec<u8>,
    ) -> crate::quic::FrameAnswer<'a> {
        Box::pin(async move {
            match kind {
                Kind::Trace => {
                    let Ok(req) = serde_json::from_slice::<Json>(&body) else {
                        return (400, b"a trace frame's body is JSON".to_vec());
                    };
                    let (Some(handle), query) = (req["handle"].as_str(), req["query"].as_str())
                    else {
                        return (400, b"a trace frame names its \"handle\"".to_vec());
                    };
                    // A peer sees what anyone may: public values.
                    match self
                        .tracer
                        .run(None, handle.to_string(), query.map(str::to_string))
                        .await
                    {
                        Ok(t) => (200, serde_json::to_vec(&t).unwrap_or_default()),
                        Err(e) => (
                            e.status,
                            json!({"responseCode": e.code, "handle": e.handle, "message": e.message})
                                .to_string()
                                .into_bytes(),
                        ),
                    }
                }
                Kind::Witness => match &self.witness {
                    None => (404, b"this node witnesses no log\n".to_vec()),
                    Some(w) => {
                        let w = w.clone();
                        match tokio::task::spawn_blocking(move || w.add_checkpoint(&body)).await {
                            Ok(a) => crate::witness::answer_parts(a),
                            Err(e) => (500, e.to_string().into_bytes()),
                        }
                    }
                },
                _ => (404, b"no such frame".to_vec()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let q = parse_trace_query("88.888.1/r", Some("direction=down&depth=3&limit=9&rel=mrv.reports&rel=prov.used&from=2025-03&to=2025-04")).unwrap();
        assert_eq!(q.direction, Direction::Down);
        assert_eq!((q.depth, q.limit), (3, 9));
        assert_eq!(q.rels, vec!["mrv.reports", "prov.used"]);
        assert!(q.window.is_some());
        let d = parse_trace_query("x/y", None).unwrap();
        assert_eq!((d.direction, d.depth, d.limit), (Direction::Up, 16, 10_000));
        for bad in [
            "direction=left",
            "depth=999",
            "limit=0",
            "from=yesterday",
            "colour=red",
            "budget_ms=0",
            "budget_ms=999999",
        ] {
            assert!(parse_trace_query("x/y", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_peer_is_asked_for_what_is_left_and_the_path_so_far() {
        let (q, c) = parse(
            "88.888.1/r",
            Some("rel=mrv.usesFactor&from=2025-03&to=2025-04&visited=0.NA/88.888.9&budget_ms=5000"),
        )
        .unwrap();
        assert_eq!(c.visited, ["0.NA/88.888.9"]);
        assert_eq!(c.budget, Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        let s = remote_query(
            &q,
            Remaining {
                depth: 3,
                limit: 40,
            },
            &["0.NA/88.888.9".into(), "0.NA/88.888.1".into()],
            deadline,
        );
        let (q2, c2) = parse("88.888.2/f", Some(&s)).unwrap();
        assert_eq!((q2.depth, q2.limit), (3, 40));
        assert_eq!(q2.rels, q.rels);
        assert_eq!(q2.window, q.window);
        assert!(!q2.checks);
        assert_eq!(c2.visited, ["0.NA/88.888.9", "0.NA/88.888.1"]);
        assert!(c2.budget <= Duration::from_secs(4) && c2.budget > Duration::from_secs(3));
    }
}
