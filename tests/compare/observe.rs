//! Sends one case to one side and turns the answer into the JSON observation the differ
//! compares: for HTTP the status, the headers a client acts on and the body; for the Handle
//! wire each answer's response code and body (values with their index, type, data, TTL and
//! permissions; timestamps left out).

use serde_json::{Map, Value as Json, json};
use suyuan_codec::json::{data_to_json, permissions_to_string, refs_to_json, site_to_json};
use suyuan_codec::message::{Body, Message, opcode, rc};
use suyuan_codec::value::{HandleValue, TtlType};
use suyuan_federation::{ClientError, Exchange, Transport};

use crate::cases::{Case, Kind, SessionMode, WireAuth};
use crate::diff::{Scope, normalise};
use crate::http::{self, Response};
use crate::{Creds, Side};

pub fn case(
    rt: &tokio::runtime::Runtime,
    side: &mut Side,
    case: &Case,
    creds: &Creds,
    scope: &Scope,
) -> Json {
    let mut obs = match &case.kind {
        Kind::Http { tls, req, capture } => {
            let mut req = req.clone();
            for (_, v) in req.headers.iter_mut() {
                *v = placeholders(v, side, creds);
            }
            let base = side.base.with_tls(*tls);
            let res = http::send(&base, &req);
            if let (Some(name), Ok(r)) = (capture, &res) {
                if let Some(id) = serde_json::from_slice::<Json>(&r.body).ok().and_then(|j| {
                    j.get("sessionId")
                        .and_then(Json::as_str)
                        .map(str::to_string)
                }) {
                    side.rest_sessions.insert(name, id);
                }
                if let Some(nonce) = serde_json::from_slice::<Json>(&r.body).ok().and_then(|j| {
                    j.get("nonce").and_then(Json::as_str).and_then(|n| {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.decode(n).ok()
                    })
                }) {
                    side.rest_nonces.insert(name, nonce);
                }
            }
            match res {
                Ok(r) => http_observation(&r, side),
                Err(e) => json!({"error": format!("no HTTP answer: {}", e.root_cause())}),
            }
        }
        Kind::Wire {
            transport,
            op,
            flags,
            body,
            auth,
        } => {
            let res = rt.block_on(wire(side, *transport, *op, *flags, body, *auth, creds));
            if *op == opcode::SESSION_TERMINATE {
                side.session = None;
            }
            answers(res)
        }
        Kind::RawTcp(bytes) => answers(rt.block_on(raw_tcp(side, bytes))),
        Kind::OpenSession(mode) => {
            let (index, handle) = creds.good.identity();
            let handle = handle.to_string();
            let rsa = match &creds.rsa {
                Some(suyuan_federation::Credentials::PublicKey { index, handle, key }) => {
                    Some((*index, handle.as_str(), key.as_ref()))
                }
                _ => None,
            };
            let exchange = match (mode, rsa) {
                (SessionMode::ServerCipher, _) => Exchange::ServerCipher,
                (SessionMode::ClientCipher, Some((_, _, key))) => Exchange::ClientCipher(key),
                (SessionMode::HandleCipher, Some((index, handle, key))) => {
                    Exchange::HandleCipher { handle, index, key }
                }
                _ => Exchange::DiffieHellman,
            };
            match rt.block_on(side.tcp.open_session(index, &handle, exchange, 3600)) {
                Ok(s) => {
                    side.session = Some(s);
                    json!({"session": "open"})
                }
                Err(e) => {
                    side.session = None;
                    json!({"error": client_error(&e)})
                }
            }
        }
    };
    normalise(&mut obs, scope);
    obs
}

/// `{session:NAME}` becomes the id of the session captured as NAME on this side;
/// `{signature:NAME:HOW}` a whole `Handle` authorization signing that session's nonce, HOW
/// being `seckey`, `pubkey` or `wrong` (a wrong secret).
fn placeholders(v: &str, side: &Side, creds: &Creds) -> String {
    let mut out = v.to_string();
    for (tag, sign) in [("{session:", false), ("{signature:", true)] {
        while let Some(start) = out.find(tag) {
            let Some(len) = out[start..].find('}') else {
                break;
            };
            let inner = out[start + tag.len()..start + len].to_string();
            let (name, how) = inner.split_once(':').unwrap_or((&inner, ""));
            let id = side
                .rest_sessions
                .get(name)
                .cloned()
                .unwrap_or_else(|| "no-session-was-opened".into());
            let text = if sign {
                let nonce = side.rest_nonces.get(name).cloned().unwrap_or_default();
                signed_authorization(&id, &nonce, how, creds)
            } else {
                id
            };
            out.replace_range(start..start + len + 1, &text);
        }
    }
    out
}

/// The `Authorization: Handle` header a REST client sends to authenticate a session: the
/// session's nonce and a client nonce, signed as a challenge answer is.
fn signed_authorization(session: &str, nonce: &[u8], how: &str, creds: &Creds) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut cnonce = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut cnonce);
    let cred = match how {
        "pubkey" => creds.rsa.as_ref(),
        "wrong" => Some(&creds.wrong),
        _ => Some(&creds.good),
    };
    let (auth_type, alg, signature, who) = match cred {
        Some(suyuan_federation::Credentials::Secret {
            index,
            handle,
            secret,
        }) => {
            // The SHA-1 keyed digest (a 2.1-2.6 answer): `alg` names it.
            let answer = suyuan_codec::auth::SecretKeyAnswer::for_version(
                secret,
                nonce,
                &cnonce,
                (2, 6),
                &mut rand::rngs::OsRng,
            );
            let mac = match answer {
                suyuan_codec::auth::SecretKeyAnswer::Keyed { mac, .. } => mac,
                _ => Vec::new(),
            };
            (
                "HS_SECKEY",
                "SHA1".to_string(),
                mac,
                format!("{index}:{handle}"),
            )
        }
        Some(suyuan_federation::Credentials::PublicKey { index, handle, key }) => {
            match suyuan_codec::auth::PublicKeyAnswer::sign(key, nonce, &cnonce, (2, 11)) {
                Ok(a) => (
                    "HS_PUBKEY",
                    String::from_utf8_lossy(&a.hash_alg).into_owned(),
                    a.signature,
                    format!("{index}:{handle}"),
                ),
                Err(_) => (
                    "HS_PUBKEY",
                    String::new(),
                    Vec::new(),
                    format!("{index}:{handle}"),
                ),
            }
        }
        _ => ("none", String::new(), Vec::new(), String::new()),
    };
    let id = who
        .replace('%', "%25")
        .replace(':', "%3A")
        .replace('/', "%2F");
    format!(
        r#"Handle sessionId="{session}", id="{id}", type="{auth_type}", cnonce="{}", alg="{alg}", signature="{}""#,
        b64(&cnonce),
        b64(&signature)
    )
}

async fn wire(
    side: &mut Side,
    transport: Transport,
    op: u32,
    fl: u32,
    body: &Body,
    auth: WireAuth,
    creds: &Creds,
) -> Result<Vec<Message>, String> {
    let client = if transport == Transport::Udp {
        &side.udp
    } else {
        &side.tcp
    };
    let req = client.request(op, fl, body.clone());
    let cred = match auth {
        WireAuth::None => None,
        WireAuth::Secret | WireAuth::Session => Some(&creds.good),
        WireAuth::WrongSecret => Some(&creds.wrong),
        WireAuth::PubKey => creds.rsa.as_ref(),
    };
    let r = match (auth, cred) {
        (WireAuth::Session, Some(c)) => match &side.session {
            Some(s) => side.tcp.send_in_session(s, &req, c).await,
            None => return Err("no session is open".into()),
        },
        // A UDP request is sent as it is: the server decides what it takes over UDP.
        (_, _) if transport == Transport::Udp => client.send(&req).await.map(|m| vec![m]),
        (_, Some(c)) => side.tcp.send_authenticated(&req, c).await,
        (_, None) => side.tcp.send_tcp(&req).await,
    };
    r.map_err(|e| client_error(&e))
}

async fn raw_tcp(side: &Side, bytes: &[u8]) -> Result<Vec<Message>, String> {
    use tokio::io::AsyncWriteExt;
    let addr = side.tcp.server();
    crate::ensure_loopback(addr.ip()).map_err(|e| e.to_string())?;
    let go = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {}", e.kind()))?;
        s.write_all(bytes)
            .await
            .map_err(|e| format!("cannot send: {}", e.kind()))?;
        // A half-close tells the server nothing more is coming, so it answers what it has.
        let _ = s.shutdown().await;
        suyuan_federation::client::read_answers(&mut s, addr)
            .await
            .map_err(|e| client_error(&e))
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), go)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

/// A client error without the address (which differs by side by nature).
fn client_error(e: &ClientError) -> String {
    match e {
        ClientError::NoAnswer(_) => "no answer".into(),
        ClientError::Io { source, .. } => format!("network error: {}", source.kind()),
        ClientError::Decode { .. } => "undecodable answer".into(),
        ClientError::Mismatch { .. } => "answer to another request id".into(),
        ClientError::Auth { why, .. } => format!("authentication: {why}"),
        other => other.to_string(),
    }
}

fn answers(r: Result<Vec<Message>, String>) -> Json {
    match r {
        Err(e) => json!({"error": e}),
        Ok(ms) if ms.len() == 1 => answer(&ms[0]),
        Ok(ms) => Json::Array(ms.iter().map(answer).collect()),
    }
}

pub fn answer(m: &Message) -> Json {
    let code = m.header.response_code;
    let mut o = Map::new();
    // One member for the code and its name, so that one different code is one difference.
    let name = rc::name(code).unwrap_or("unknown");
    o.insert("rc".into(), json!(format!("{code} {name}")));
    let mut put = |k: &str, v: Json| {
        o.insert(k.into(), v);
    };
    match &m.body {
        Body::ResolutionResponse { handle, values } => {
            put("handle", json!(handle));
            put("values", values_json(values));
        }
        Body::SiteInfo(s) => put("site", site_to_json(s)),
        Body::Created { handle } => put("created", json!(handle)),
        Body::HandleList { handles } => put("handles", json!(handles)),
        Body::Challenge { .. } => put("challenge", json!(true)),
        Body::Referral { handle, values } => {
            put("referral", json!(handle));
            if let Some(v) = values {
                put("values", values_json(v));
            }
        }
        Body::Error { message } => {
            if let Some(t) = message {
                put("message", json!(t));
            }
        }
        Body::SessionSetupResponse { mode, .. } => put("sessionMode", json!(mode)),
        Body::VerifyResult { valid } => put("valid", json!(valid)),
        Body::Empty => {}
        Body::Raw(b) => put("rawBody", json!(b.len())),
        other => put(
            "body",
            json!(format!("{other:?}").split([' ', '(', '{']).next()),
        ),
    }
    Json::Object(o)
}

fn values_json(values: &[HandleValue]) -> Json {
    let mut v: Vec<&HandleValue> = values.iter().collect();
    v.sort_by_key(|x| x.index);
    Json::Array(
        v.into_iter()
            .map(|x| {
                let ttl_type = match x.ttl_type {
                    TtlType::Relative => json!("relative"),
                    TtlType::Absolute => json!("absolute"),
                    TtlType::Other(b) => json!(b),
                };
                json!({
                    "index": x.index,
                    "type": x.value_type,
                    "data": data_to_json(&x.value_type, &x.data),
                    "ttlType": ttl_type,
                    "ttl": x.ttl,
                    "permissions": permissions_to_string(x.permissions),
                    "references": refs_to_json(&x.references),
                })
            })
            .collect(),
    )
}

/// Header names compared as they are (after trimming); the `Access-Control-*` family and
/// `Allow` are compared as sets.
fn http_observation(r: &Response, side: &Side) -> Json {
    let mut h = Map::new();
    if let Some(ct) = r.header("content-type") {
        h.insert(
            "content-type".into(),
            json!(ct.to_ascii_lowercase().replace(' ', "")),
        );
    }
    if let Some(loc) = r.header("location") {
        h.insert("location".into(), json!(location(loc, side)));
    }
    let challenges: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "www-authenticate")
        .flat_map(|(_, v)| schemes(v))
        .collect();
    if !challenges.is_empty() {
        let mut c = challenges;
        c.sort();
        h.insert("www-authenticate".into(), json!(c));
    }
    for (n, v) in &r.headers {
        if n.starts_with("access-control-") || n == "allow" {
            let set = if n == "access-control-allow-origin" || n == "access-control-max-age" {
                json!(v)
            } else {
                let mut items: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect();
                items.sort();
                items.dedup();
                json!(items)
            };
            h.insert(n.clone(), set);
        }
    }
    // A redirect's body is not what a client looks at: it follows the Location.
    let redirect = (300..400).contains(&r.status) && r.header("location").is_some();
    let body = if r.body.is_empty() || redirect {
        Json::Null
    } else {
        match serde_json::from_slice::<Json>(&r.body) {
            Ok(j) => j,
            Err(_) => {
                // A page for people (the redirect face's value page, an error page): which of
                // the values the run stored it shows is what a reader would notice.
                let text = String::from_utf8_lossy(&r.body);
                let shown: Vec<&str> = crate::cases::MARKERS
                    .iter()
                    .copied()
                    .filter(|m| text.contains(m))
                    .collect();
                // One string, so that a page where the other side answered JSON is one
                // difference.
                let media = r
                    .header("content-type")
                    .and_then(|c| c.split(';').next())
                    .unwrap_or("untyped");
                json!(format!("<{media} page showing [{}]>", shown.join(", ")))
            }
        }
    };
    json!({"status": r.status, "headers": h, "body": body})
}

/// A `Location` with the node's own base URL replaced, so both sides read alike.
fn location(loc: &str, side: &Side) -> String {
    for tls in [true, false] {
        for base in side.base.with_tls(tls).spellings() {
            if let Some(rest) = loc.strip_prefix(&base) {
                return format!("{{base}}{rest}");
            }
        }
    }
    loc.to_string()
}

/// The challenges of a `WWW-Authenticate` value: each scheme with the names of its
/// parameters (a Basic realm with its value; nonces and session ids vary).
pub fn schemes(v: &str) -> Vec<String> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in v.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (first, rest) = part.split_once(' ').unwrap_or((part, ""));
        if !first.contains('=') {
            out.push((first.to_string(), Vec::new()));
            if !rest.trim().is_empty() {
                param(&mut out, rest.trim());
            }
        } else {
            param(&mut out, part);
        }
    }
    out.into_iter()
        .map(|(s, p)| {
            if p.is_empty() {
                s
            } else {
                format!("{s} {}", p.join(", "))
            }
        })
        .collect()
}

fn param(out: &mut [(String, Vec<String>)], p: &str) {
    let Some(last) = out.last_mut() else { return };
    let (k, v) = p.split_once('=').unwrap_or((p, ""));
    let k = k.trim();
    if last.0.eq_ignore_ascii_case("basic") && k.eq_ignore_ascii_case("realm") {
        last.1.push(format!("{k}={}", v.trim()));
    } else {
        last.1.push(k.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_as_schemes_with_their_parameter_names() {
        assert_eq!(
            schemes(r#"Handle sessionId="abc", nonce="xyz""#),
            ["Handle sessionId, nonce"]
        );
        assert_eq!(
            schemes(r#"Basic realm="handle", Handle sessionId="a", nonce="b""#),
            [r#"Basic realm="handle""#, "Handle sessionId, nonce"]
        );
    }
}
