//! The Handle.Net REST API (`/api/handles`, `/api/prefixes`), the `GET /{handle}` dispatch
//! to [`crate::redirect`],
//! the handle-over-HTTP tunnel and device registration, as the reference server's servlets
//! answer them (statuses, headers and JSON bodies as captured in tests/fixtures/reference/rest/).
//!
//! Every request is parsed into the node's typed [`Command`] and carried out by the node
//! ([`HandleNode::run`]): one set of rules and one write path for every surface. Credentials count only over HTTPS (over plain HTTP they are ignored, as the
//! reference does): Basic with a secret key (user `index:handle`, percent-encoded), or
//! `Handle clientCert="true"` with a client certificate whose key is an HS_PUBKEY of the
//! identity its subject names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use serde_json::Value as Json;
use suyuan_codec::auth::{PublicKeyAnswer, SecretKeyAnswer, hash_code};
use suyuan_codec::handle::Handle;
use suyuan_codec::json::{
    JsonLimits, ListPage, RestSession, handle_list_page_to_json, http_status, prefix_list_to_json,
    put_body_from_json, resolution_to_json, response_to_json, values_not_found_to_json,
};
use suyuan_codec::message::{Message, opcode, rc};
use suyuan_registry::Identity;

use crate::frontline::{Inbound, Transport, classify, encode_reply, open_encrypted};
use crate::node::{
    AddValues, Command, Create, Delete, Done, Executed, HandleNode, Home, ListHandles,
    RemoveValues, Resolve, Unhome,
};
use crate::service::{Reply, Request, Service, now_secs};
use crate::tls::ClientCert;

/// What the HTTP layer knows of a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    pub cert: Option<ClientCert>,
}

/// Devices that may register themselves: certificates issued by `ca` may create handles
/// `prefix/<suffix>` where the suffix matches `suffix_pattern` (`*` any run of characters,
/// `{cn}` the certificate's common name).
#[derive(Debug, Clone)]
pub struct DeviceRule {
    /// DER of the issuing CA certificate(s).
    pub ca: Vec<Vec<u8>>,
    pub prefix: String,
    pub suffix_pattern: String,
}

#[derive(Debug, Clone)]
pub struct RestState {
    pub node: HandleNode,
    pub devices: Arc<Vec<DeviceRule>>,
    pub limits: JsonLimits,
    pub sessions: Arc<Mutex<RestSessions>>,
}

/// Sessions of the REST API (`/api/sessions`): a server nonce to sign, and once a signature
/// over it verified, the identity. Bounded in number; idle ones expire.
#[derive(Debug)]
pub struct RestSessions {
    map: HashMap<String, RestSessionState>,
    max: usize,
    ttl: Duration,
}

#[derive(Debug, Clone)]
struct RestSessionState {
    nonce: [u8; 16],
    id: Option<Identity>,
    expires: Instant,
}

impl RestSessions {
    pub fn new(max: usize, ttl: Duration) -> Self {
        RestSessions {
            map: HashMap::new(),
            max,
            ttl,
        }
    }

    /// A new session with a fresh nonce; `None` when the table is full even after dropping
    /// the expired ones.
    fn open(&mut self, id: Option<Identity>) -> Option<(String, RestSessionState)> {
        let now = Instant::now();
        if self.map.len() >= self.max {
            self.map.retain(|_, s| s.expires > now);
            if self.map.len() >= self.max {
                return None;
            }
        }
        let mut rng = rand::thread_rng();
        let mut raw = [0u8; 16];
        rng.fill_bytes(&mut raw);
        let sid = format!("suyuan{}", hex(&raw));
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let st = RestSessionState {
            nonce,
            id,
            expires: now + self.ttl,
        };
        self.map.insert(sid.clone(), st.clone());
        Some((sid, st))
    }

    /// The live session `sid`, its idle timer restarted.
    fn get(&mut self, sid: &str) -> Option<RestSessionState> {
        let now = Instant::now();
        let ttl = self.ttl;
        match self.map.get_mut(sid) {
            Some(s) if s.expires > now => {
                s.expires = now + ttl;
                Some(s.clone())
            }
            Some(_) => {
                self.map.remove(sid);
                None
            }
            None => None,
        }
    }

    fn authenticate(&mut self, sid: &str, id: Identity) {
        if let Some(s) = self.map.get_mut(sid) {
            s.id = Some(id);
        }
    }

    fn close(&mut self, sid: &str) -> bool {
        self.map.remove(sid).is_some()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const JSON_TYPE: &str = "application/json;charset=utf-8";
const HDL_TYPE: &str = "application/x-hdl-message";

/// A JSON answer with the reference's headers (success also carries its `Vary`).
fn json_response(status: u16, body: &Json, pretty: bool) -> Response {
    let text = if pretty {
        serde_json::to_string_pretty(body)
    } else {
        serde_json::to_string(body)
    }
    .unwrap_or_default();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, [(header::CONTENT_TYPE, JSON_TYPE)], text).into_response();
    if status.is_success() {
        r.headers_mut().insert(
            header::VARY,
            HeaderValue::from_static("Accept-Encoding, User-Agent"),
        );
    }
    r
}

/// The query's parameters in order (repeatable ones appear several times).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn get<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.all(key).next()
    }
    /// Java's `Boolean.parseBoolean`: only "true" (any case) is true.
    fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| v.eq_ignore_ascii_case("true"))
    }
    /// The reference reads `pretty` more leniently than other flags: bare (`?pretty`),
    /// empty, `true` or `yes` in any case.
    fn pretty(&self) -> bool {
        self.get("pretty").is_some_and(|v| {
            v.is_empty() || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
        })
    }
    /// `index` values; `Err` names the bad one.
    fn indexes(&self) -> Result<Vec<u32>, String> {
        self.all("index")
            .filter(|v| *v != "various")
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("index {v:?} is not a number"))
            })
            .collect()
    }
}

fn protocol_error(handle: Option<&str>, message: &str, pretty: bool) -> Response {
    json_response(
        400,
        &response_to_json(rc::PROTOCOL_ERROR, handle, Some(message)),
        pretty,
    )
}

/// Who the request speaks for: `Ok(None)` for an anonymous caller (or any caller over plain
/// HTTP), `Err` with the reference's 401 when credentials do not verify.
pub(crate) async fn caller(
    state: &RestState,
    conn: &ConnInfo,
    headers: &HeaderMap,
) -> Result<Option<Identity>, Response> {
    if !conn.tls {
        return Ok(None);
    }
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let node = state.node.clone();
    if let Some(b64) = auth
        .strip_prefix("Basic ")
        .or_else(|| auth.strip_prefix("basic "))
    {
        let Some((id, secret)) = basic_credentials(b64.trim()) else {
            return Err(challenge(state, Unverified::Unreadable, None, true));
        };
        let who = id.clone();
        let ok = tokio::task::spawn_blocking(move || node.verify_secret(&who, &secret))
            .await
            .unwrap_or(false);
        return if ok {
            Ok(Some(id))
        } else {
            Err(not_verified(state, true))
        };
    }
    if auth.starts_with("Handle") && auth.contains("clientCert=\"true\"") {
        // No certificate came with the connection: the reference takes the caller as
        // anonymous (a public read is answered, anything else challenged).
        let Some(cert) = conn.cert.clone() else {
            return Ok(None);
        };
        let Some(id) = cert.subject_name().and_then(|n| Identity::parse(&n).ok()) else {
            return Err(not_verified(state, false));
        };
        let Some(key) = cert.rsa_key() else {
            return Err(not_verified(state, false));
        };
        let who = id.clone();
        let ok = tokio::task::spawn_blocking(move || node.holds_public_key(&who, &key))
            .await
            .unwrap_or(false);
        return if ok {
            Ok(Some(id))
        } else {
            Err(not_verified(state, false))
        };
    }
    if let Some(h) = HandleAuth::parse(auth) {
        // `Handle version="0"` alone names no session and signs nothing: the reference takes
        // the caller as anonymous.
        if h.session_id.is_none() && !h.signs() {
            return Ok(None);
        }
        return handle_auth(state, &h).await.map(|(_, id)| id);
    }
    Err(challenge(state, Unverified::Unreadable, None, false))
}

/// The parameters of `Authorization: Handle k="v", ...` (`HandleAuthorizationHeader`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HandleAuth {
    pub session_id: Option<String>,
    /// `index:handle`, percent-decoded.
    pub id: Option<String>,
    pub auth_type: Option<String>,
    pub alg: Option<String>,
    pub cnonce: Option<String>,
    pub signature: Option<String>,
    pub salt: Option<String>,
    pub iterations: Option<String>,
    pub length: Option<String>,
}

impl HandleAuth {
    /// `None` unless the scheme is `Handle` and the parameters parse (quoted strings with
    /// backslash escapes, or tokens, separated by commas).
    pub fn parse(header: &str) -> Option<Self> {
        let h = header.trim();
        let (scheme, mut rest) = h.split_at(h.find(char::is_whitespace)?);
        if !scheme.eq_ignore_ascii_case("Handle") {
            return None;
        }
        let mut out = HandleAuth::default();
        loop {
            rest = rest.trim_start().trim_start_matches(',').trim_start();
            if rest.is_empty() {
                return Some(out);
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_ascii_lowercase();
            rest = rest[eq + 1..].trim_start();
            let value = if let Some(q) = rest.strip_prefix('"') {
                let mut v = String::new();
                let mut it = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = it.next() {
                    match c {
                        '\\' => v.push(it.next()?.1),
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => v.push(c),
                    }
                }
                rest = &q[end?..];
                v
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                let v = rest[..end].trim().to_string();
                rest = &rest[end..];
                v
            };
            let slot = match key.as_str() {
                "sessionid" => &mut out.session_id,
                "id" => {
                    out.id = Some(percent_decode(value.as_bytes()));
                    continue;
                }
                "type" => &mut out.auth_type,
                "alg" => &mut out.alg,
                "cnonce" => &mut out.cnonce,
                "signature" => &mut out.signature,
                "salt" => &mut out.salt,
                "iterations" => &mut out.iterations,
                "length" => &mut out.length,
                _ => continue,
            };
            *slot = Some(value);
        }
    }

    fn signs(&self) -> bool {
        self.signature.is_some()
    }

    /// The challenge answer the header carries, as an OC 200 `signedResponse` whose nonce is
    /// the session's and whose digest is the client's nonce: HS_SECKEY gets the algorithm's
    /// code (PBKDF2 with its salt, iterations and length), HS_PUBKEY the algorithm's name.
    fn answer(&self) -> Option<(String, Vec<u8>, Vec<u8>)> {
        let b64 = |s: &Option<String>| -> Option<Vec<u8>> {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_deref()?.trim())
                .ok()
        };
        let signature = b64(&self.signature)?;
        let cnonce = b64(&self.cnonce)?;
        let alg = self.alg.as_deref()?.to_ascii_uppercase();
        let t = self.auth_type.as_deref()?;
        let answer = match t {
            "HS_PUBKEY" => PublicKeyAnswer {
                hash_alg: alg.into_bytes(),
                signature,
            }
            .encode(),
            "HS_SECKEY" => {
                let code = match alg.as_str() {
                    "MD5" => hash_code::MD5,
                    "SHA1" | "SHA-1" => hash_code::SHA1,
                    "SHA256" | "SHA-256" => hash_code::SHA256,
                    "HMAC-SHA1" => hash_code::HMAC_SHA1,
                    "HMAC-SHA256" => hash_code::HMAC_SHA256,
                    "PBKDF2-HMAC-SHA1" => hash_code::PBKDF2_HMAC_SHA1,
                    _ => return None,
                };
                if code == hash_code::PBKDF2_HMAC_SHA1 {
                    SecretKeyAnswer::Pbkdf2HmacSha1 {
                        salt: b64(&self.salt)?,
                        iterations: self.iterations.as_deref()?.trim().parse().ok()?,
                        key_bits: self.length.as_deref()?.trim().parse().ok()?,
                        mac: signature,
                    }
                    .encode()
                } else {
                    SecretKeyAnswer::Keyed {
                        code,
                        mac: signature,
                    }
                    .encode()
                }
            }
            _ => return None,
        };
        Some((t.to_string(), answer, cnonce))
    }
}

/// Checks a `Handle` authorization: a signature over the session's nonce authenticates the
/// session; a bare `sessionId` speaks for the identity the session already proved. Returns
/// the session id and the identity (`None`: a live session not yet authenticated).
async fn handle_auth(
    state: &RestState,
    h: &HandleAuth,
) -> Result<(String, Option<Identity>), Response> {
    let sessions = || state.sessions.lock().unwrap_or_else(|e| e.into_inner());
    let Some(sid) = h.session_id.clone() else {
        // A signature without a session signed no nonce of ours: offer a session to sign.
        return Err(challenge(state, Unverified::NoSession, None, false));
    };
    let Some(session) = sessions().get(&sid) else {
        return Err(challenge(state, Unverified::UnknownSession, None, false));
    };
    if !h.signs() {
        return Ok((sid, session.id));
    }
    let (Some(id), Some((auth_type, answer, cnonce))) = (
        h.id.as_deref().and_then(|i| Identity::parse(i).ok()),
        h.answer(),
    ) else {
        return Err(not_verified(state, false));
    };
    let node = state.node.clone();
    let who = id.clone();
    let nonce = session.nonce;
    let ok = tokio::task::spawn_blocking(move || {
        node.verify_challenge_answer(&who, &auth_type, &answer, &nonce, &cnonce, (2, 11))
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or(false);
    if !ok {
        return Err(not_verified(state, false));
    }
    sessions().authenticate(&sid, id.clone());
    Ok((sid, Some(id)))
}

/// Why a 401 is sent: no credentials for an operation that needs them, credentials that did
/// not verify, or a session id this node does not hold (never opened, ended or expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unverified {
    Missing,
    Failed,
    UnknownSession,
    /// A `Handle` signature that names no session.
    NoSession,
    /// An `Authorization` header that is not credentials this node reads (another scheme, a
    /// Basic value that does not decode to `user:password`): nothing was verified, so the
    /// reference's challenge carries no `error`.
    Unreadable,
}

/// The reference's word for credentials that failed (`error` of a challenge or a session).
const IDENTITY_NOT_VERIFIED: &str = "Identity not verified";

/// How to authenticate, in every 401 body. The same words whether the identity is unknown
/// or its secret wrong, so the answer cannot be used to find out which identities exist.
const HOW_TO_AUTHENTICATE: &str = "authenticate over HTTPS with Basic authentication \
    (user index:handle, percent-encoded, e.g. 300%3A12345%2FADMIN, and the identity's secret key \
    as password), or sign the nonce of the session offered in WWW-Authenticate \
    (Authorization: Handle sessionId=..., id=..., type=HS_PUBKEY or HS_SECKEY, cnonce=..., \
    signature=...)";

/// Whether a 401 to this request offers Basic: the reference offers it to a request without
/// credentials or with Basic ones, and to any other (a `Handle` header, an unknown scheme)
/// only a session to sign.
fn offers_basic(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|a| a.trim_start().to_ascii_lowercase().starts_with("basic "))
}

/// The reference's 401: `WWW-Authenticate` offers a fresh session with its nonce to sign (a
/// session that exists, as the reference's does), after Basic when `basic`, with `error`
/// when credentials were sent and failed. The body, which the reference leaves empty or
/// bare, says what went wrong and how to authenticate.
fn challenge(state: &RestState, why: Unverified, handle: Option<&str>, basic: bool) -> Response {
    let opened = state
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .open(None);
    let (code, message) = match why {
        Unverified::Missing => (
            rc::AUTHENTICATION_NEEDED,
            format!("Authentication needed: {HOW_TO_AUTHENTICATE}"),
        ),
        Unverified::Failed => (
            rc::AUTHENTICATION_FAILED,
            format!("The identity could not be verified: {HOW_TO_AUTHENTICATE}"),
        ),
        Unverified::UnknownSession => (
            rc::AUTHENTICATION_NEEDED,
            format!("{UNKNOWN_SESSION}: {HOW_TO_AUTHENTICATE}"),
        ),
        Unverified::NoSession => (
            rc::AUTHENTICATION_FAILED,
            format!("The signature names no session (sessionId): {HOW_TO_AUTHENTICATE}"),
        ),
        Unverified::Unreadable => (
            rc::AUTHENTICATION_FAILED,
            format!(
                "The Authorization header holds no credentials this node reads: {HOW_TO_AUTHENTICATE}"
            ),
        ),
    };
    let mut r = json_response(401, &response_to_json(code, handle, Some(&message)), false);
    let failed = matches!(why, Unverified::Failed | Unverified::NoSession);
    let h = r.headers_mut();
    if basic {
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"handle\""),
        );
    }
    if let Some(v) = handle_challenge(opened.as_ref().map(|(sid, st)| (sid.as_str(), st)), failed) {
        h.append(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `WWW-Authenticate: Handle`: the session to sign and its nonce (none when the table is full
/// and no session could be offered), with `error` when credentials were read and failed.
fn handle_challenge(
    session: Option<(&str, &RestSessionState)>,
    failed: bool,
) -> Option<HeaderValue> {
    let mut params = Vec::new();
    if let Some((sid, st)) = session {
        let nonce = base64::engine::general_purpose::STANDARD.encode(st.nonce);
        params.push(format!("sessionId=\"{sid}\""));
        params.push(format!("nonce=\"{nonce}\""));
    }
    if failed {
        params.push(format!("error=\"{IDENTITY_NOT_VERIFIED}\""));
    }
    HeaderValue::from_str(format!("Handle {}", params.join(", ")).trim_end()).ok()
}

const UNKNOWN_SESSION: &str =
    "The session named in Authorization, if any, is not open here (never opened, ended or expired)";

/// The answer to credentials that do not verify (an unknown identity, a wrong secret or
/// signature alike).
fn not_verified(state: &RestState, basic: bool) -> Response {
    challenge(state, Unverified::Failed, None, basic)
}

/// 401 to a failed signature in session `sid`: `WWW-Authenticate: Handle` names that same
/// session and nonce with `error`, and the body is the session's JSON with the error.
fn session_not_verified(state: &RestState, sid: &str, pretty: bool) -> Response {
    let st = state
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(sid);
    let body = RestSession {
        error: Some(IDENTITY_NOT_VERIFIED.to_string()),
        ..session_json(Some(sid), st.as_ref(), None)
    };
    let mut r = json_response(401, &body.to_json(), pretty);
    if let Some(v) = handle_challenge(st.as_ref().map(|st| (sid, st)), true) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn session_json(
    sid: Option<&str>,
    st: Option<&RestSessionState>,
    id: Option<&Identity>,
) -> RestSession {
    RestSession {
        session_id: sid.map(str::to_string),
        nonce: st.map(|s| s.nonce.to_vec()),
        id: id.map(|i| i.to_string()),
        ..Default::default()
    }
}

/// POST /api/sessions: a new session and its nonce (authenticated at once by Basic).
pub async fn open_session(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pretty = Query::parse(raw.as_deref()).pretty();
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.to_ascii_lowercase().starts_with("basic "));
    // Credentials that fail still get a session, unauthenticated, with the error in its
    // answer, as the reference answers.
    let (who, error) = if basic {
        match caller(&state, &conn, &headers).await {
            Ok(w) => (w, None),
            Err(_) => (None, Some(IDENTITY_NOT_VERIFIED)),
        }
    } else {
        (None, None)
    };
    let opened = state
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .open(who.clone());
    match opened {
        Some((sid, st)) => {
            let mut r = json_response(
                201,
                &RestSession {
                    error: error.map(str::to_string),
                    ..session_json(Some(&sid), Some(&st), who.as_ref())
                }
                .to_json(),
                pretty,
            );
            r.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_static("/api/sessions/this"),
            );
            r
        }
        None => json_response(
            503,
            &response_to_json(rc::SERVER_TOO_BUSY, None, Some("too many sessions")),
            pretty,
        ),
    }
}

/// The reference refuses every session request over plain HTTP with 403 (and no body): a
/// session is a credential ([`api_methods`] answers it for every session path). The body
/// here says where to go instead.
fn sessions_need_https(pretty: bool) -> Response {
    json_response(
        403,
        &response_to_json(
            rc::AUTHENTICATION_NEEDED,
            None,
            Some(
                "Sessions are only offered over HTTPS, where credentials cannot be read on the way: send the same request over HTTPS",
            ),
        ),
        pretty,
    )
}

/// Any other path under /api: the reference's JSON error, not the redirect face.
pub async fn unknown_endpoint(method: Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    json_response(
        404,
        &response_to_json(
            rc::PROTOCOL_ERROR,
            None,
            Some(&format!("Unknown HTTP API endpoint {method} {path}")),
        ),
        false,
    )
}

/// The methods the reference's servlets know; any other is answered 501 under /api.
const KNOWN_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
];

/// The reference's answers under /api to methods a path does not take, before any route
/// sees the request: every session request over plain HTTP refused (403, whatever the
/// method); `/api/sessions` taking POST alone and `/api/prefixes/{prefix}` no GET (405 with
/// the path's `Allow`, no body); a method its servlets do not know (PATCH and the like)
/// answered 501 `{"responseCode":4,"message":"Unknown method PATCH"}`; any other method a
/// path does not take, 405 with the unknown-endpoint JSON (`PUT /api/prefixes`). What a path
/// takes is what its `OPTIONS` answer allows ([`crate::cors::allow_for`]), but TRACE, which
/// is not served (the reference echoes the request).
pub async fn api_methods(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    if !(path == "/api" || path.starts_with("/api/")) {
        return next.run(req).await;
    }
    let tls = req.extensions().get::<ConnInfo>().is_some_and(|c| c.tls);
    let sessions = path == "/api/sessions" || path.starts_with("/api/sessions/");
    if sessions && !tls {
        return sessions_need_https(Query::parse(req.uri().query()).pretty());
    }
    let method = req.method();
    let prefix_path = path.starts_with("/api/prefixes/");
    if (path == "/api/sessions" && method != Method::POST)
        || (prefix_path && (method == Method::GET || method == Method::HEAD))
    {
        return not_allowed(path);
    }
    let unknown = |message: String| {
        json_response(
            if KNOWN_METHODS.contains(method) {
                405
            } else {
                501
            },
            &response_to_json(rc::PROTOCOL_ERROR, None, Some(&message)),
            false,
        )
    };
    if !KNOWN_METHODS.contains(method) {
        return unknown(format!("Unknown method {method}"));
    }
    // A path that takes nothing is no endpoint at all: its route answers 404.
    if !takes(path, method.as_str()) {
        return unknown(format!("Unknown HTTP API endpoint {method} {path}"));
    }
    next.run(req).await
}

/// Whether `path` takes `method`, by what its `OPTIONS` answer allows (TRACE and OPTIONS aside,
/// which are answered elsewhere); a path that takes nothing is left to its route.
fn takes(path: &str, method: &str) -> bool {
    let mut allowed = crate::cors::allow_for(path)
        .split(", ")
        .filter(|m| *m != "TRACE" && *m != "OPTIONS")
        .peekable();
    allowed.peek().is_none() || allowed.any(|m| m == method)
}

/// 405 with the path's `Allow` and no body, as the reference's servlets answer a method they
/// know but the path does not take.
fn not_allowed(path: &str) -> Response {
    let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
    r.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static(crate::cors::allow_for(path)),
    );
    r
}

/// POST and DELETE of `/api/prefixes` without a prefix: the reference's 400.
pub async fn prefix_not_specified(method: Method) -> Response {
    let what = if method == Method::DELETE {
        "unhoming"
    } else {
        "homing"
    };
    protocol_error(
        None,
        &format!("java.lang.Exception: Prefix not specified in {what} request"),
        false,
    )
}

/// POST /api/prefixes/{prefix} homes the prefix here, DELETE unhomes it: the node's
/// HOME_NA and UNHOME_NA, for node administrators.
pub async fn home_prefix(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    Path(prefix): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (_, pretty, who) = match prologue(&state, &conn, &headers, raw.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let na = if prefix.contains('/') {
        prefix.clone()
    } else {
        format!("0.NA/{prefix}")
    };
    let c = if method == Method::DELETE {
        Command::Unhome(Unhome { prefix: na })
    } else {
        Command::Home(Home { prefix: na })
    };
    write_answer(&state, &conn, &headers, c, who, 200, &prefix, pretty).await
}

/// `/api/handles/` (no handle), answered as the reference answers a GET of it (its answers to
/// a PUT or DELETE there are accidents of its lookup order: RC 301 and RC 100, matched by
/// [`put_no_handle`] and [`delete_no_handle`]).
pub async fn empty_handle(RawQuery(raw): RawQuery) -> Response {
    empty_handle_invalid(Query::parse(raw.as_deref()).pretty())
}

fn empty_handle_invalid(pretty: bool) -> Response {
    json_response(
        400,
        &response_to_json(rc::INVALID_HANDLE, None, Some("Empty handle invalid")),
        pretty,
    )
}

/// GET, POST and PUT /api/sessions/this: the caller's session (a signature authenticates
/// it); DELETE ends it. A session id not held here, or a DELETE without a session, is
/// refused with 403, as the reference refuses them.
pub async fn this_session(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pretty = Query::parse(raw.as_deref()).pretty();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let handle =
        HandleAuth::parse(auth).filter(|h| conn.tls && (h.session_id.is_some() || h.signs()));
    if let Some(h) = handle {
        let known = |sid: &String| {
            state
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(sid)
                .is_some()
        };
        let named_unknown = h.session_id.as_ref().is_some_and(|sid| !known(sid));
        if named_unknown || (h.session_id.is_none() && h.signs()) {
            return no_such_session(pretty);
        }
        let (sid, id) = match handle_auth(&state, &h).await {
            Ok(x) => x,
            Err(_) => {
                // A session this node holds whose signature did not verify: the reference
                // answers 401 offering the same session again, with its state as the body.
                let sid = h.session_id.clone().unwrap_or_default();
                return session_not_verified(&state, &sid, pretty);
            }
        };
        if method == Method::DELETE {
            state
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .close(&sid);
            return StatusCode::NO_CONTENT.into_response();
        }
        let st = state
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sid);
        return json_response(
            200,
            &session_json(Some(&sid), st.as_ref(), id.as_ref()).to_json(),
            pretty,
        );
    }
    let who = match caller(&state, &conn, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if method == Method::DELETE {
        return no_such_session(pretty);
    }
    json_response(
        200,
        &session_json(None, None, who.as_ref()).to_json(),
        pretty,
    )
}

/// `/api/sessions/this` for a session this node does not hold (an unknown id, or none to
/// end): the reference answers 403 with an empty body; ours says why.
fn no_such_session(pretty: bool) -> Response {
    json_response(
        403,
        &response_to_json(rc::AUTHENTICATION_NEEDED, None, Some(UNKNOWN_SESSION)),
        pretty,
    )
}

/// `index:handle` (percent-encoded, as clients send it) and the secret of a Basic header.
pub fn basic_credentials(b64: &str) -> Option<(Identity, Vec<u8>)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let (user, secret) = (&raw[..colon], raw[colon + 1..].to_vec());
    let user = percent_decode(user);
    if let Ok(id) = Identity::parse(&user) {
        return Some((id, secret));
    }
    // Not percent-encoded: `300:12345/ADMIN:secret` split at the first colon left the index
    // alone; the handle runs to the next colon.
    if user.bytes().all(|b| b.is_ascii_digit()) {
        let rest = &raw[colon + 1..];
        let c2 = rest.iter().position(|b| *b == b':')?;
        let id =
            Identity::parse(&format!("{user}:{}", String::from_utf8_lossy(&rest[..c2]))).ok()?;
        return Some((id, rest[c2 + 1..].to_vec()));
    }
    None
}

/// `%XX` escapes decoded, as in a URL path or a Basic user (`+` stays `+`); invalid UTF-8 is
/// replaced, so the result fails to parse as an identity or handle rather than panicking.
fn percent_decode(b: &[u8]) -> String {
    percent_encoding::percent_decode(b)
        .decode_utf8_lossy()
        .into_owned()
}

/// The handles of a list answer (LIST_HANDLES, LIST_HOMED_NAS).
fn listed(d: Done) -> Vec<String> {
    match d {
        Done::Handles(handles) => handles,
        _ => Vec::new(),
    }
}

/// Carries out `c` for `who` ([`HandleNode::execute`]).
pub(crate) async fn execute(state: &RestState, c: Command, who: Option<Identity>) -> Executed {
    state.node.execute(c, who).await
}

/// An error answer for `op`: the reference's status and `{responseCode, [message], handle}`.
fn refusal(code: u32, message: &str, op: u32, handle: Option<&str>, pretty: bool) -> Response {
    // The reference's answers to these carry no message, and clients compare bodies.
    let quiet = matches!(
        code,
        rc::HANDLE_NOT_FOUND | rc::HANDLE_ALREADY_EXISTS | rc::VALUES_NOT_FOUND
    );
    let msg = (!message.is_empty() && !quiet).then_some(message);
    json_response(
        http_status(code, op, false),
        &response_to_json(code, handle, msg),
        pretty,
    )
}

/// Only an authenticated caller may do this. Over HTTPS the reference's 401 with its
/// challenges; over plain HTTP, where credentials are ignored, its 403, and a caller who
/// sent credentials there is told to send them over HTTPS instead.
fn need_auth(
    state: &RestState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    handle: Option<&str>,
    pretty: bool,
) -> Response {
    if conn.tls {
        return challenge(state, Unverified::Missing, handle, offers_basic(headers));
    }
    let message = headers
        .contains_key(header::AUTHORIZATION)
        .then_some(CREDENTIALS_NEED_HTTPS);
    json_response(
        http_status(rc::AUTHENTICATION_NEEDED, opcode::RESOLUTION, false),
        &response_to_json(rc::AUTHENTICATION_NEEDED, handle, message),
        pretty,
    )
}

const CREDENTIALS_NEED_HTTPS: &str = "Credentials are not accepted over plain HTTP, where \
    anyone on the way could read them: send the same request over HTTPS";

/// What every REST handler starts with: the query, `pretty`, and who is calling.
async fn prologue(
    state: &RestState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<(Query, bool, Option<Identity>), Response> {
    let q = Query::parse(raw);
    let pretty = q.pretty();
    let who = caller(state, conn, headers).await?;
    Ok((q, pretty, who))
}

/// GET /api/handles/{handle}
pub async fn get_handle(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    Path(handle): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (q, pretty, who) = match prologue(&state, &conn, &headers, raw.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let indexes = match q.indexes() {
        Ok(i) => i,
        Err(why) => return protocol_error(None, &why, pretty),
    };
    let types: Vec<String> = q.all("type").map(str::to_string).collect();
    // An identifier of another scheme (an OID, a GS1 key) answers the record it is bound to.
    let node = state.node.clone();
    let input = handle.clone();
    let handle = match tokio::task::spawn_blocking(move || node.bound(&input)).await {
        Ok(None) => handle,
        Ok(Some(Ok(Some(bound)))) => bound,
        Ok(Some(Ok(None))) => {
            return refusal(
                rc::HANDLE_NOT_FOUND,
                "",
                opcode::RESOLUTION,
                Some(&handle),
                pretty,
            );
        }
        Ok(Some(Err(why))) => {
            return refusal(
                rc::INVALID_HANDLE,
                &why,
                opcode::RESOLUTION,
                Some(&handle),
                pretty,
            );
        }
        Err(e) => {
            return refusal(
                rc::ERROR,
                &e.to_string(),
                opcode::RESOLUTION,
                Some(&handle),
                pretty,
            );
        }
    };
    // The reference leaves restricted values out unless the caller authenticated, or asked
    // with publicOnly=false.
    let public_only = q.flag("publicOnly").unwrap_or(who.is_none());
    let c = Command::Resolve(Resolve {
        handle: handle.clone(),
        indexes,
        types,
        public_only,
        refer: true,
        forward: state.node.forwards_for_http(),
    });
    match execute(&state, c, who).await {
        Executed::Done(Done::Values { values, .. }) => json_response(
            200,
            &resolution_to_json(rc::SUCCESS, &handle, &values),
            pretty,
        ),
        Executed::Done(_) => refusal(rc::ERROR, "", opcode::RESOLUTION, Some(&handle), pretty),
        Executed::Refused(rc::VALUES_NOT_FOUND, msg) => json_response(
            200,
            &values_not_found_to_json(&handle, (!msg.is_empty()).then_some(msg.as_str())),
            pretty,
        ),
        Executed::Refused(code, msg) => {
            refusal(code, &msg, opcode::RESOLUTION, Some(&handle), pretty)
        }
        Executed::NeedAuth => need_auth(&state, &conn, &headers, Some(&handle), pretty),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| t == "application/json" || t.ends_with("+json") || t == "text/json")
}

/// PUT /api/handles/{handle}: create (or replace), or with `index` add values.
pub async fn put_handle(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    Path(handle): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    put(state, conn, handle, raw, headers, body).await
}

/// PUT /api/handles/ and /api/handles (no handle): the body is read as for any PUT, then
/// refused as the reference refuses it, RC 301 "That prefix doesn't live here" (the empty
/// handle's prefix is served nowhere), credentials or not.
pub async fn put_no_handle(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    put(state, conn, String::new(), raw, headers, body).await
}

/// DELETE /api/handles/ and /api/handles (no handle): as the reference answers, a challenge
/// when anonymous and RC 100 (404) when authenticated: no such handle.
pub async fn delete_no_handle(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (_, pretty, who) = match prologue(&state, &conn, &headers, raw.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if who.is_none() {
        return need_auth(&state, &conn, &headers, None, pretty);
    }
    refusal(
        rc::HANDLE_NOT_FOUND,
        "",
        opcode::DELETE_HANDLE,
        None,
        pretty,
    )
}

async fn put(
    state: RestState,
    conn: ConnInfo,
    handle: String,
    raw: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (q, pretty, who) = match prologue(&state, &conn, &headers, raw.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !is_json(&headers) {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("null");
        return json_response(
            400,
            &response_to_json(
                rc::PROTOCOL_ERROR,
                None,
                Some(&format!("java.lang.Exception: Unsupported media type {ct}")),
            ),
            pretty,
        );
    }
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => return protocol_error(None, "the body is not UTF-8", pretty),
    };
    let parsed = match put_body_from_json(text, &state.limits) {
        Ok(p) => p,
        Err(e) => return protocol_error(None, &e.to_string(), pretty),
    };
    if handle.is_empty() {
        return json_response(
            400,
            &response_to_json(rc::SERVER_NOT_RESP, None, Some(crate::catalog::NOT_HERE)),
            pretty,
        );
    }
    if let Some(h) = &parsed.handle {
        if !h.eq_ignore_ascii_case(&handle) {
            return protocol_error(
                None,
                "java.lang.Exception: Mismatched handle in PUT request",
                pretty,
            );
        }
    }
    let various = q.all("index").any(|v| v == "various");
    let indexes = match q.indexes() {
        Ok(i) => i,
        Err(why) => return protocol_error(None, &why, pretty),
    };
    let add = various || !indexes.is_empty();
    if add && !various {
        let mut a: Vec<u32> = indexes.clone();
        let mut b: Vec<u32> = parsed.values.iter().map(|v| v.index).collect();
        a.sort_unstable();
        a.dedup();
        b.sort_unstable();
        b.dedup();
        if a != b {
            return protocol_error(
                None,
                "java.lang.Exception: Mismatched indexes in PUT request",
                pretty,
            );
        }
    }
    // The reference's default: a PUT replaces what is there.
    let overwrite = q.flag("overwrite").unwrap_or(true);
    let mint = q.flag("mintNewSuffix").unwrap_or(false);
    // Without overwrite a write that succeeds created everything it wrote; with it, whether
    // something was replaced is known only by looking first.
    let replaces = overwrite
        && !mint
        && existed(
            &state,
            &handle,
            add.then(|| parsed.values.iter().map(|v| v.index).collect()),
            who.clone(),
        )
        .await;
    let c = if add {
        Command::AddValues(AddValues {
            handle: handle.clone(),
            values: parsed.values,
            overwrite,
        })
    } else {
        Command::Create(Create {
            handle: handle.clone(),
            values: parsed.values,
            overwrite,
            mint,
        })
    };
    let done = if replaces { 200 } else { 201 };
    write_answer(&state, &conn, &headers, c, who, done, &handle, pretty).await
}

/// Whether `handle` exists or, given `indexes`, holds a value at one of them: the reference
/// answers a PUT that replaced something 200 and one that only created 201. Read before the
/// write, so a concurrent writer can make the status stale, never the data.
async fn existed(
    state: &RestState,
    handle: &str,
    indexes: Option<Vec<u32>>,
    who: Option<Identity>,
) -> bool {
    let by_index = indexes.is_some();
    let c = Command::Resolve(Resolve {
        handle: handle.to_string(),
        indexes: indexes.unwrap_or_default(),
        types: Vec::new(),
        public_only: false,
        refer: true,
        forward: false,
    });
    match execute(state, c, who).await {
        Executed::Refused(rc::HANDLE_NOT_FOUND, _) => false,
        Executed::Refused(rc::VALUES_NOT_FOUND, _) => !by_index,
        // Found, or hidden from this caller (which needs a value there).
        _ => true,
    }
}

/// A write's answer: `done` (the reference's status for this success), or the refusal.
#[allow(clippy::too_many_arguments)]
async fn write_answer(
    state: &RestState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    c: Command,
    who: Option<Identity>,
    done: u16,
    handle: &str,
    pretty: bool,
) -> Response {
    let op = c.opcode();
    match execute(state, c, who).await {
        Executed::Done(d) => {
            let h = match d {
                Done::Created(h) => h,
                _ => handle.to_string(),
            };
            json_response(done, &response_to_json(rc::SUCCESS, Some(&h), None), pretty)
        }
        Executed::Refused(code, msg) => refusal(code, &msg, op, Some(handle), pretty),
        Executed::NeedAuth => need_auth(state, conn, headers, Some(handle), pretty),
    }
}

/// DELETE /api/handles/{handle}: the handle, or with `index` some of its values.
pub async fn delete_handle(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    Path(handle): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (q, pretty, who) = match prologue(&state, &conn, &headers, raw.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let indexes = match q.indexes() {
        Ok(i) => i,
        Err(why) => return protocol_error(None, &why, pretty),
    };
    let c = if indexes.is_empty() {
        Command::Delete(Delete {
            handle: handle.clone(),
        })
    } else {
        Command::RemoveValues(RemoveValues {
            handle: handle.clone(),
            indexes,
        })
    };
    write_answer(&state, &conn, &headers, c, who, 200, &handle, pretty).await
}

/// The `page`/`pageSize` of a list request (the reference's ListCallback: pages count from 0;
/// unless both are given and neither is negative the list is whole, and its answer names no
/// page).
fn page_of(q: &Query) -> Result<Option<ListPage>, String> {
    let int = |k: &str| -> Result<Option<i32>, String> {
        q.get(k)
            .map(|v| v.parse().map_err(|_| format!("{k} {v:?} is not a number")))
            .transpose()
    };
    Ok(match (int("page")?, int("pageSize")?) {
        (Some(page), Some(page_size)) if page >= 0 && page_size >= 0 => {
            Some(ListPage { page, page_size })
        }
        _ => None,
    })
}

fn paged(items: &[String], page: Option<ListPage>) -> &[String] {
    let Some(ListPage { page, page_size }) = page else {
        return items;
    };
    let size = usize::try_from(page_size).unwrap_or(0);
    let start = usize::try_from(page)
        .unwrap_or(0)
        .saturating_mul(size)
        .min(items.len());
    &items[start..start.saturating_add(size).min(items.len())]
}

/// GET /api/handles?prefix=P
pub async fn list_handles(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let pretty = q.pretty();
    let Some(prefix) = q.get("prefix").map(str::to_string) else {
        return empty_handle_invalid(pretty);
    };
    let who = match caller(&state, &conn, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let page = match page_of(&q) {
        Ok(p) => p,
        Err(why) => return protocol_error(Some(&prefix), &why, pretty),
    };
    let na = if prefix.contains('/') {
        prefix.clone()
    } else {
        format!("0.NA/{prefix}")
    };
    if let Some(p) = page {
        // A page is read from the store as a page: the prefix is never loaded whole to cut it.
        let size = usize::try_from(p.page_size).unwrap_or(0);
        let offset = u64::try_from(p.page)
            .unwrap_or(0)
            .saturating_mul(size as u64);
        let node = state.node.clone();
        let listed_page =
            tokio::task::spawn_blocking(move || node.list_page(who.as_ref(), &na, offset, size))
                .await;
        let (total, answer) = listed_page.unwrap_or_else(|_| {
            (
                0,
                Executed::Refused(rc::ERROR, "request handler failed".into()),
            )
        });
        return match answer {
            Executed::Done(d) => json_response(
                200,
                &handle_list_page_to_json(&prefix, total, page, &listed(d)),
                pretty,
            ),
            Executed::Refused(code, msg) => {
                refusal(code, &msg, opcode::LIST_HANDLES, Some(&prefix), pretty)
            }
            Executed::NeedAuth => need_auth(&state, &conn, &headers, Some(&prefix), pretty),
        };
    }
    let c = Command::ListHandles(ListHandles { prefix: na });
    match execute(&state, c, who).await {
        Executed::Done(d) => {
            let all = listed(d);
            json_response(
                200,
                &handle_list_page_to_json(&prefix, all.len() as u64, None, &all),
                pretty,
            )
        }
        Executed::Refused(code, msg) => {
            refusal(code, &msg, opcode::LIST_HANDLES, Some(&prefix), pretty)
        }
        Executed::NeedAuth => need_auth(&state, &conn, &headers, Some(&prefix), pretty),
    }
}

/// GET /api/prefixes
pub async fn list_prefixes(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (q, pretty, who) = match prologue(&state, &conn, &headers, raw.as_deref()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let page = match page_of(&q) {
        Ok(p) => p,
        Err(why) => return protocol_error(None, &why, pretty),
    };
    match execute(&state, Command::ListHomed, who).await {
        Executed::Done(d) => {
            let all = listed(d);
            json_response(
                200,
                &prefix_list_to_json(all.len() as u64, page, paged(&all, page)),
                pretty,
            )
        }
        Executed::Refused(code, msg) => refusal(code, &msg, opcode::LIST_HOMED_NAS, None, pretty),
        Executed::NeedAuth => need_auth(&state, &conn, &headers, None, pretty),
    }
}

/// Anything else: `GET /{handle}` redirects to the handle's URL; a POST of
/// `application/x-hdl-message` is a Handle message (the reference client's HTTP interface).
pub async fn fallback(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    method: Method,
    version: axum::http::Version,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hdl = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(HDL_TYPE));
    if method == Method::POST && hdl {
        return tunnel(&state, &conn, body.to_vec()).await;
    }
    let http10 = version == axum::http::Version::HTTP_10;
    if uri.path() == "/" {
        return match method {
            Method::GET | Method::HEAD => crate::redirect::front_page(),
            Method::POST => crate::redirect::form(&state, &conn, &headers, &body, http10).await,
            _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = uri.path().trim_start_matches('/');
    let handle = percent_decode(path.as_bytes());
    if Handle::parse(&handle).is_err() {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    crate::redirect::face(&state, &conn, &headers, &handle, uri.query(), http10).await
}

/// An HTTP date (RFC 9110 IMF-fixdate).
pub fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86400;
    let rem = secs % 86400;
    let (y, m, d) = suyuan_codec::time::civil_from_days(days as i64);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[(days % 7) as usize],
        d,
        MO[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One Handle message over HTTP, answered as over TCP.
async fn tunnel(state: &RestState, conn: &ConnInfo, bytes: Vec<u8>) -> Response {
    let node = &state.node;
    let (bytes, key) = match open_encrypted(node, bytes, now_secs()) {
        Ok(x) => x,
        Err(m) => return hdl_response(&[*m], None),
    };
    let m = match classify(&bytes, Transport::Tcp, now_secs()) {
        Inbound::Reject(m) => return hdl_response(&[m], None),
        Inbound::Request(m) => m,
    };
    let reply = node
        .call(Request {
            message: m,
            peer: conn.peer,
            transport: Transport::Tcp,
        })
        .await;
    match reply {
        Reply::Messages(ms) => hdl_response(&ms, key.as_deref()),
        Reply::Silence => StatusCode::NO_CONTENT.into_response(),
    }
}

fn hdl_response(messages: &[Message], key: Option<&[u8]>) -> Response {
    let out: Vec<u8> = encode_reply(messages, key).concat();
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, HDL_TYPE)], out).into_response();
    r.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Accept-Encoding, User-Agent"),
    );
    r
}

/// Whether `suffix` matches `pattern` (`*` any run of characters, `{cn}` the device's name),
/// ASCII-case-insensitively like handles.
pub fn suffix_matches(pattern: &str, suffix: &str, cn: &str) -> bool {
    let pattern = pattern.replace("{cn}", cn).to_ascii_uppercase();
    let suffix = suffix.to_ascii_uppercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == suffix;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !suffix.starts_with(first) || suffix.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &suffix[first.len()..suffix.len() - last.len()];
    if !suffix.ends_with(last) {
        return false;
    }
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// PUT /api/devices/{handle}: a device registers itself (and its links: they are values) at
/// install time with its client certificate. Register mode: sending the same registration
/// again is success with nothing written (200), a different record is refused (409).
pub async fn register_device(
    State(state): State<RestState>,
    Extension(conn): Extension<ConnInfo>,
    Path(handle): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let pretty = Query::parse(raw.as_deref()).pretty();
    let deny = |code: u32, why: &str| {
        json_response(
            403,
            &response_to_json(code, Some(&handle), Some(why)),
            pretty,
        )
    };
    if !conn.tls {
        return deny(
            rc::AUTHENTICATION_NEEDED,
            "device registration needs HTTPS with a client certificate",
        );
    }
    let Some(cert) = conn.cert.clone() else {
        return deny(rc::AUTHENTICATION_NEEDED, "no client certificate");
    };
    let Ok(h) = Handle::parse(&handle) else {
        return json_response(
            400,
            &response_to_json(rc::INVALID_HANDLE, Some(&handle), Some("not a handle")),
            pretty,
        );
    };
    let cn = cert.subject_name().unwrap_or_default();
    let allowed = state.devices.iter().any(|r| {
        r.prefix.eq_ignore_ascii_case(h.prefix())
            && r.ca.iter().any(|ca| cert.issued_by(ca))
            && suffix_matches(&r.suffix_pattern, h.suffix(), &cn)
    });
    if !allowed {
        return deny(
            rc::INSUFFICIENT_PERMISSIONS,
            &format!("device {cn:?} may not register {handle}"),
        );
    }
    let values = match std::str::from_utf8(&body)
        .map_err(|_| "the body is not UTF-8".to_string())
        .and_then(|t| put_body_from_json(t, &state.limits).map_err(|e| e.to_string()))
    {
        Ok(b) => b.values,
        Err(why) => return protocol_error(Some(&handle), &why, pretty),
    };
    let actor = Identity::new(0, format!("{}/DEVICE/{cn}", h.prefix()));
    let node = state.node.clone();
    let h2 = h.as_str().to_string();
    let done = tokio::task::spawn_blocking(move || node.register(&h2, values, &actor)).await;
    match done {
        Ok(Ok(applied)) => json_response(
            if applied.seq.is_some() { 201 } else { 200 },
            &response_to_json(rc::SUCCESS, Some(&handle), None),
            pretty,
        ),
        Ok(Err(e)) => {
            let code = e.response_code();
            json_response(
                http_status(code, opcode::CREATE_HANDLE, false),
                &response_to_json(code, Some(&handle), Some(&e.to_string())),
                pretty,
            )
        }
        Err(_) => refusal(rc::ERROR, "", opcode::CREATE_HANDLE, Some(&handle), pretty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_user_percent_encoded_or_not() {
        let b = base64::engine::general_purpose::STANDARD;
        let (id, s) = basic_credentials(&b.encode("301%3A12345%2FADMIN:secretpw")).unwrap();
        assert_eq!(
            (id.index, id.handle.as_str(), &s[..]),
            (301, "12345/ADMIN", &b"secretpw"[..])
        );
        let (id, s) = basic_credentials(&b.encode("300:12345/ADMIN:pw:with:colons")).unwrap();
        assert_eq!(
            (id.index, id.handle.as_str(), &s[..]),
            (300, "12345/ADMIN", &b"pw:with:colons"[..])
        );
        // `+` in a handle is a `+`, not a form-encoded space.
        let (id, _) = basic_credentials(&b.encode("300%3A12345%2Fa+b:pw")).unwrap();
        assert_eq!(id.handle, "12345/a+b");
        assert!(basic_credentials("!!!").is_none());
        assert!(basic_credentials(&b.encode("nobody:pw")).is_none());
    }

    #[test]
    fn device_suffix_patterns() {
        assert!(suffix_matches("meter-{cn}", "METER-gw7", "gw7"));
        assert!(suffix_matches("meter-{cn}/*", "meter-gw7/reading-1", "gw7"));
        assert!(!suffix_matches(
            "meter-{cn}/*",
            "meter-gw8/reading-1",
            "gw7"
        ));
        assert!(suffix_matches("*", "anything", "x"));
        assert!(!suffix_matches("a*b", "ab-c", "x"));
        assert!(suffix_matches("a*b*c", "a-b-c", "x"));
    }

    #[test]
    fn http_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_597_389);
        assert_eq!(httpdate(t), "Wed, 25 Nov 2026 09:03:09 GMT");
    }
}
