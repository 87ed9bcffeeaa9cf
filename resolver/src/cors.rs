//! Cross-origin requests, answered as the reference server's HTTP port answers them (Jetty's
//! cross-origin filter with the methods and headers the reference configures, credentials not
//! allowed, preflights not passed on; and on `/api/` its filter that exposes every header the
//! answer set), so a browser application on another origin can use the REST API and the
//! redirect face.
//!
//! Every `OPTIONS` request is answered here, never by a route: a preflight (an allowed
//! `Origin` and `Access-Control-Request-Method`) with the `Access-Control-*` grants, or with
//! nothing when it asks for a method or header outside them; any other `OPTIONS` with the
//! path's `Allow`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::RouteLabel;

/// The metrics' route label of the `OPTIONS` answers made here.
const OPTIONS_LABEL: &str = "options";

/// The methods and request headers a preflight may ask for, and how long a browser may keep
/// the grant, as the reference configures them.
pub const ALLOW_METHODS: &str = "GET,POST,HEAD,PUT,DELETE";
pub const ALLOW_HEADERS: &str = "X-Requested-With,Authorization,Origin,Accept,Content-Type";
pub const MAX_AGE_SECS: &str = "86400";

/// Which origins get cross-origin grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins {
    /// `None`: every origin (the reference's default). `Some(list)`: only these (an entry `*`
    /// admits every origin); an `Origin` header listing several origins needs one of them.
    pub only: Option<Vec<String>>,
}

impl CorsOrigins {
    pub fn any() -> Self {
        CorsOrigins { only: None }
    }

    pub fn list(origins: Vec<String>) -> Self {
        CorsOrigins {
            only: Some(origins),
        }
    }

    fn admits(&self, origin: &str) -> bool {
        match &self.only {
            None => true,
            Some(list) => {
                list.iter().any(|o| o == "*")
                    || origin
                        .split(' ')
                        .filter(|o| !o.is_empty())
                        .any(|o| list.iter().any(|a| a == o))
            }
        }
    }
}

/// The `Allow` the reference's servlets answer a plain `OPTIONS` with, by path (the routes
/// Suyuan adds list what they serve).
pub fn allow_for(path: &str) -> &'static str {
    const ALL: &str = "GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS";
    // Asked of every request under /api: compared in place, nothing allocated.
    let under = |base: &str| {
        path.strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/api/handles") || under("/api/sessions/this") {
        ALL
    } else if under("/api/sessions") {
        "POST, TRACE, OPTIONS"
    } else if path == "/api/prefixes" {
        "GET, HEAD, POST, DELETE, TRACE, OPTIONS"
    } else if under("/api/prefixes") {
        "POST, DELETE, TRACE, OPTIONS"
    } else if under("/api/site") {
        "GET, HEAD, TRACE, OPTIONS"
    } else if path.starts_with("/api/trace/") {
        "GET, HEAD, OPTIONS"
    } else if path.starts_with("/api/devices/") {
        "PUT, OPTIONS"
    } else if under("/api") {
        "TRACE, OPTIONS"
    } else {
        "GET, HEAD, POST, TRACE, OPTIONS"
    }
}

/// The middleware: answers `OPTIONS`, and adds the grants to the answers of other requests
/// from an admitted origin.
pub async fn layer(State(origins): State<Arc<CorsOrigins>>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| origins.admits(o))
        .map(str::to_string);
    let path = req.uri().path().to_string();
    let api = path == "/api" || path.starts_with("/api/");
    if req.method() == Method::OPTIONS {
        if let Some(origin) = &origin
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return RouteLabel::mark(preflight(req.headers(), origin), OPTIONS_LABEL);
        }
        let mut r = empty(StatusCode::OK);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow_for(&path)));
        let r = match origin {
            Some(o) => granted(r, &o, api),
            None => r,
        };
        return RouteLabel::mark(r, OPTIONS_LABEL);
    }
    let r = next.run(req).await;
    match origin {
        Some(o) => granted(r, &o, api),
        None => r,
    }
}

fn empty(status: StatusCode) -> Response {
    let mut r = status.into_response();
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A preflight: the grants when every method and header asked for is allowed (methods
/// compared exactly, headers without regard to case); otherwise a bare 200, which a browser
/// takes as a refusal.
fn preflight(headers: &HeaderMap, origin: &str) -> Response {
    let asked = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let method = asked(header::ACCESS_CONTROL_REQUEST_METHOD);
    let method_ok = ALLOW_METHODS.split(',').any(|m| m == method.trim());
    let asked_headers = asked(header::ACCESS_CONTROL_REQUEST_HEADERS);
    let headers_ok = asked_headers
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .all(|h| ALLOW_HEADERS.split(',').any(|a| a.eq_ignore_ascii_case(h)));
    let mut r = empty(StatusCode::OK);
    if !(method_ok && headers_ok) {
        return r;
    }
    let Ok(o) = HeaderValue::from_str(origin) else {
        return r;
    };
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    r
}

/// Adds `Access-Control-Allow-Origin` and `Vary: Origin` in front of the answer's headers, and
/// on `/api/` the `Access-Control-Expose-Headers` that lets a script read them.
fn granted(mut r: Response, origin: &str, api: bool) -> Response {
    let Ok(o) = HeaderValue::from_str(origin) else {
        return r;
    };
    let old = std::mem::take(r.headers_mut());
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if api {
        let exposed = exposed(old.keys());
        if let Ok(v) = HeaderValue::from_str(&exposed.join(",")) {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
    let mut last = None;
    for (k, v) in old {
        if let Some(k) = k {
            last = Some(k);
        }
        if let Some(k) = &last {
            h.append(k.clone(), v);
        }
    }
    r
}

/// The headers a script may not read unless exposed, named as the reference names them, in
/// the order the reference lists them (the iteration order of a Java `HashSet` of the names).
/// `Content-Length` is always there; the headers the reference adds outside its servlets
/// (`Date`, `Vary`, the transfer framing) and the ones every script may read are not.
fn exposed<'a>(names: impl Iterator<Item = &'a HeaderName>) -> Vec<String> {
    const NOT: &[&str] = &[
        "cache-control",
        "content-language",
        "content-type",
        "expires",
        "last-modified",
        "pragma",
        "date",
        "vary",
        "content-length",
        "transfer-encoding",
        "connection",
        "content-encoding",
    ];
    let mut set = vec!["Content-Length".to_string()];
    for n in names {
        let n = n.as_str();
        if NOT.contains(&n) || n.starts_with("access-control-") {
            continue;
        }
        let name = canonical(n);
        if !set.contains(&name) {
            set.push(name);
        }
    }
    java_hash_set_order(set)
}

/// `www-authenticate` → `WWW-Authenticate`, `location` → `Location`.
fn canonical(name: &str) -> String {
    if name == "www-authenticate" {
        return "WWW-Authenticate".into();
    }
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Orders `names` (given in insertion order) as a `java.util.HashSet<String>` iterates them:
/// by bucket (the spread `String.hashCode` masked to the table size, 16 doubling past a 0.75
/// load), insertion order within a bucket.
fn java_hash_set_order(names: Vec<String>) -> Vec<String> {
    let mut table = 16usize;
    while names.len() * 4 > table * 3 {
        table *= 2;
    }
    let bucket = |s: &str| {
        let h = s
            .encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32)) as u32;
        ((h ^ (h >> 16)) as usize) & (table - 1)
    };
    let mut keyed: Vec<(usize, usize, String)> = names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (bucket(&n), i, n))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_headers_in_the_reference_order() {
        // The reference server answers Access-Control-Expose-Headers "WWW-Authenticate,Content-Length"
        // on a 401, "Content-Length,Location" on POST /api/sessions, "Content-Length,Allow" on OPTIONS.
        let names = |v: &[&'static str]| -> Vec<HeaderName> {
            v.iter().map(|n| HeaderName::from_static(n)).collect()
        };
        let ex = |v: &[&'static str]| exposed(names(v).iter()).join(",");
        assert_eq!(
            ex(&["www-authenticate", "content-type", "content-length"]),
            "WWW-Authenticate,Content-Length"
        );
        assert_eq!(ex(&["location", "vary"]), "Content-Length,Location");
        assert_eq!(ex(&["allow", "content-length"]), "Content-Length,Allow");
        assert_eq!(ex(&["content-type", "vary", "date"]), "Content-Length");
    }

    #[test]
    fn allow_by_path_as_the_reference() {
        for (p, a) in [
            (
                "/api/handles/12345/test1",
                "GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS",
            ),
            (
                "/api/handles",
                "GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS",
            ),
            ("/api/sessions", "POST, TRACE, OPTIONS"),
            (
                "/api/sessions/this",
                "GET, HEAD, POST, PUT, DELETE, TRACE, OPTIONS",
            ),
            ("/api/prefixes", "GET, HEAD, POST, DELETE, TRACE, OPTIONS"),
            ("/api/prefixes/12345", "POST, DELETE, TRACE, OPTIONS"),
            ("/api/", "TRACE, OPTIONS"),
            ("/api", "TRACE, OPTIONS"),
            ("/12345/test1", "GET, HEAD, POST, TRACE, OPTIONS"),
            ("/", "GET, HEAD, POST, TRACE, OPTIONS"),
        ] {
            assert_eq!(allow_for(p), a, "{p}");
        }
    }

    #[test]
    fn listed_origins_only() {
        let o = CorsOrigins::list(vec!["https://app.example".into()]);
        assert!(o.admits("https://app.example"));
        assert!(o.admits("https://x.example https://app.example"));
        assert!(!o.admits("https://evil.example"));
        assert!(CorsOrigins::any().admits("null"));
        assert!(CorsOrigins::list(vec!["*".into()]).admits("https://a.b"));
    }
}
