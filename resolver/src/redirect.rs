//! The redirect face: `GET /{handle}`, what a browser following a handle link sees, as the
//! reference server's proxy servlet answers it.
//!
//! - `HS_ALIAS` is followed (up to [`MAX_ALIASES`] hops): the target is resolved and the
//!   browser sent to the target's own link on this node with 301 (the query kept), unless
//!   `ignore_aliases` is given.
//! - A record with `10320/LOC` locations redirects to one of them: `?locatt=att` or
//!   `?locatt=att:value` narrows the choice to the locations carrying that attribute, then
//!   `addresses` (CIDR ranges of the caller), the highest `score`, and a draw by `weight`
//!   (default order, or the record's `choose_by`); `href_template` fills `{hdl}` and
//!   `{hdl:path}`; `http_sc` picks 301/302/303/307/308. The record's URL values take part
//!   with weight 0 (or `urlWeight`) unless `no_legacy`.
//! - Otherwise the first URL value (a `URL.*` subtype if there is no plain URL) answers 302.
//! - `?urlappend=` is added to the chosen URL; `?index=` and `?type=` restrict the values.
//! - `?noredirect` (or `action=showvalues`) and a record with no URL answer the value page,
//!   an HTML table of the values; `action=showurls` the locations as XML.
//!
//! Country selection needs a GeoIP database, which the node does not have: like the
//! reference without one, locations are not narrowed by country.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use suyuan_codec::json::http_status;
use suyuan_codec::message::{opcode, rc};
use suyuan_codec::value::{HandleValue, TtlType};

use crate::node::{Command, Done, Executed, Resolve};
use crate::rest::{ConnInfo, RestState, execute, httpdate};

/// Aliases followed before the chain is taken for a loop.
pub const MAX_ALIASES: usize = 20;
/// Longest a redirect may be cached, whatever the values' TTLs (the reference's cap).
const MAX_CACHE_SECS: u64 = 2 * 86400;
const HTML: &str = "text/html;charset=utf-8";
const LOC_TYPE: &str = "10320/loc";

/// What the request asked for.
struct Ask {
    params: Vec<(String, String)>,
    raw_query: Option<String>,
    /// `scheme://host` of this node as the client reached it, for alias redirects.
    base: String,
    peer: IpAddr,
}

impl Ask {
    fn get<'a>(&'a self, key: &'a str) -> Option<&'a str> {
        self.all(key).next()
    }
    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers `GET /{handle}` (and HEAD).
pub async fn face(
    state: &RestState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    handle: &str,
    raw_query: Option<&str>,
    http10: bool,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let ask = Ask {
        params: form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        raw_query: raw_query.map(str::to_string),
        base: format!("{}://{host}", if conn.tls { "https" } else { "http" }),
        peer: conn.peer.ip(),
    };
    let action = ask
        .get("action")
        .map(str::to_ascii_lowercase)
        .or_else(|| ask.get("noredirect").map(|_| "showvalues".into()))
        .unwrap_or_else(|| "redirect".into());
    let mut expiry = Expiry {
        now: u64::from(crate::service::now_secs()),
        at: u64::MAX,
    };
    let mut handle = handle.to_string();
    let mut hops = 0;
    let values = loop {
        let values = match resolve(state, &handle, &ask).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let alias = values
            .iter()
            .find(|v| v.value_type.eq_ignore_ascii_case("HS_ALIAS"));
        match alias {
            Some(a) if ask.get("ignore_aliases").is_none() => {
                if hops == MAX_ALIASES {
                    return page(
                        StatusCode::NOT_FOUND,
                        "Alias chain too long",
                        &format!("The aliases starting at {handle} go on too long."),
                    );
                }
                hops += 1;
                expiry.consider(a);
                handle = String::from_utf8_lossy(&a.data).into_owned();
            }
            _ => break values,
        }
    };
    match action.as_str() {
        "showvalues" => value_page(&handle, &values),
        "showurls" => match locations(&handle, &values, &mut expiry) {
            Some(Locations { locs, .. }) if !locs.is_empty() => locations_xml(&locs),
            _ => value_page(&handle, &values),
        },
        _ if hops > 0 => {
            let query = ask
                .raw_query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let to = format!("{}/{}{query}", ask.base, encode_path(&handle));
            let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
            set_location(&mut r, &to, &expiry);
            r
        }
        _ => match choose(&handle, &values, &ask, &mut expiry) {
            Some((url, status, vary_accept)) => {
                let url = format!("{url}{}", ask.get("urlappend").unwrap_or(""));
                let esc = escape_html(&url);
                let body = format!(
                    "<html><head><title>Handle Redirect</title></head>\n<body><a href=\"{esc}\">{esc}</a></body></html>"
                );
                let mut r = for_version(status, http10).into_response();
                set_location(&mut r, &url, &expiry);
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
                *r.body_mut() = body.into();
                if vary_accept {
                    r.headers_mut()
                        .append(header::VARY, HeaderValue::from_static("Accept"));
                }
                r
            }
            None => value_page(&handle, &values),
        },
    }
}

/// The earliest time any value the answer used may be cached to.
struct Expiry {
    now: u64,
    at: u64,
}

impl Expiry {
    fn consider(&mut self, v: &HandleValue) {
        let until = match v.ttl_type {
            TtlType::Absolute => u64::try_from(v.ttl).unwrap_or(0),
            _ => self.now.saturating_add(u64::try_from(v.ttl).unwrap_or(0)),
        };
        self.at = self.at.min(until.min(self.now + MAX_CACHE_SECS));
    }
}

fn set_location(r: &mut Response, url: &str, expiry: &Expiry) {
    match HeaderValue::from_str(&encode_iri(url.trim())) {
        Ok(l) => {
            r.headers_mut().insert(header::LOCATION, l);
        }
        Err(_) => {
            *r = page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "The URL value cannot be sent as a redirect.",
            )
        }
    }
    if expiry.at < u64::MAX {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(expiry.at);
        if let Ok(e) = HeaderValue::from_str(&httpdate(t)) {
            r.headers_mut().insert(header::EXPIRES, e);
        }
    }
}

/// The handle's public values, restricted by `?index=` and `?type=` (an index that is not a
/// number is ignored, as the reference does), or the page that says why there are none.
async fn resolve(state: &RestState, handle: &str, ask: &Ask) -> Result<Vec<HandleValue>, Response> {
    let indexes: Vec<u32> = ask.all("index").filter_map(|i| i.parse().ok()).collect();
    let types: Vec<String> = ask.all("type").map(str::to_string).collect();
    let typed = !types.is_empty();
    let mut r = Resolve::public(handle, indexes, types);
    r.forward = state.node.forwards_for_http();
    let c = Command::Resolve(r);
    match execute(state, c, None).await {
        Executed::Done(Done::Values { values, .. }) => Ok(values),
        Executed::Done(_) => Ok(Vec::new()),
        Executed::Refused(rc::HANDLE_NOT_FOUND, _) => Err(page(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("The handle you requested -- {handle} -- cannot be found."),
        )),
        Executed::Refused(rc::VALUES_NOT_FOUND, _) if typed => Err(page(
            StatusCode::OK,
            "No Values Found",
            &format!(
                "The handle you requested - {handle} - exists but the values you requested were not found."
            ),
        )),
        Executed::Refused(code, _) => {
            let (status, what) = match code {
                rc::VALUES_NOT_FOUND => (StatusCode::OK, "No Values Found"),
                _ => (
                    StatusCode::from_u16(http_status(code, opcode::RESOLUTION, false))
                        .unwrap_or(StatusCode::BAD_REQUEST),
                    "Resolution Error",
                ),
            };
            Err(page(
                status,
                what,
                &format!("The handle you requested -- {handle} -- cannot be found."),
            ))
        }
        Executed::NeedAuth => Err(page(
            StatusCode::FORBIDDEN,
            "Resolution Error",
            &format!("The handle you requested -- {handle} -- cannot be resolved anonymously."),
        )),
    }
}

fn is_type(v: &HandleValue, t: &str) -> bool {
    let vt = v.value_type.as_bytes();
    vt.len() >= t.len()
        && vt[..t.len()].eq_ignore_ascii_case(t.as_bytes())
        && (vt.len() == t.len() || vt[t.len()] == b'.')
}

fn is_plain(v: &HandleValue, t: &str) -> bool {
    v.value_type.eq_ignore_ascii_case(t)
}

/// An element's attributes, in their order.
type Attributes = Vec<(String, String)>;

/// One `<location .../>` of a 10320/LOC value (attributes in their order), or a URL value
/// taking part in the choice.
#[derive(Debug, Clone, PartialEq)]
struct Loc {
    atts: Attributes,
}

impl Loc {
    fn get(&self, name: &str) -> Option<&str> {
        self.atts
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn number(&self, name: &str, default: f64) -> f64 {
        self.get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }
}

struct Locations {
    /// The attributes of each `<locations>` element, in record order.
    sets: Vec<Attributes>,
    locs: Vec<Loc>,
}

impl Locations {
    /// A location's attribute, else the first location set's that has it.
    fn attribute<'a>(&'a self, loc: Option<&'a Loc>, name: &str) -> Option<&'a str> {
        loc.and_then(|l| l.get(name)).or_else(|| {
            self.sets
                .iter()
                .find_map(|s| s.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()))
        })
    }
}

/// The locations of a record with 10320/LOC values (their URL values added as the reference
/// adds them), `None` for a record without.
fn locations(handle: &str, values: &[HandleValue], expiry: &mut Expiry) -> Option<Locations> {
    let mut sets = Vec::new();
    let mut locs = Vec::new();
    let mut any = false;
    for v in values.iter().filter(|v| is_type(v, LOC_TYPE)) {
        any = true;
        expiry.consider(v);
        let text = String::from_utf8_lossy(&v.data);
        if let Some((set, mut found)) = parse_locations(&text) {
            sets.push(set);
            locs.append(&mut found);
        }
    }
    if !any {
        return None;
    }
    let first = |name: &str| {
        sets.iter()
            .find_map(|s: &Attributes| s.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.clone())
    };
    let no_legacy = first("no_legacy").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !no_legacy {
        let url_weight = first("urlWeight")
            .and_then(|w| w.parse::<f64>().ok())
            .unwrap_or(if sets.is_empty() { 1.0 } else { 0.0 });
        let sub_weight = first("urlSubtypeWeight")
            .and_then(|w| w.parse::<f64>().ok())
            .unwrap_or(0.0);
        let has_plain = values.iter().any(|v| is_plain(v, "URL"));
        for v in values.iter().filter(|v| is_type(v, "URL")) {
            expiry.consider(v);
            let w = if !has_plain || is_plain(v, "URL") {
                url_weight
            } else {
                sub_weight
            };
            locs.push(Loc {
                atts: vec![
                    ("href".into(), String::from_utf8_lossy(&v.data).into_owned()),
                    ("weight".into(), format!("{w:?}")),
                    ("mode".into(), "legacy".into()),
                ],
            });
        }
    }
    for l in &mut locs {
        fill_template(l, handle);
    }
    Some(Locations { sets, locs })
}

fn fill_template(l: &mut Loc, handle: &str) {
    if l.get("href").is_some() {
        return;
    }
    if let Some(t) = l.get("href_template") {
        let href = t
            .replace("{hdl}", &encode_component(handle))
            .replace("{hdl:path}", &encode_path(handle));
        l.atts.push(("href".into(), href));
    }
}

/// Where to send the browser: a URL, the status, and whether the choice depended on `Accept`.
fn choose(
    handle: &str,
    values: &[HandleValue],
    ask: &Ask,
    expiry: &mut Expiry,
) -> Option<(String, StatusCode, bool)> {
    let Some(set) = locations(handle, values, expiry) else {
        // Only URL values: the first plain URL, else the first URL.* subtype.
        let v = values
            .iter()
            .find(|v| is_plain(v, "URL") || is_plain(v, "0.TYPE/URL"))
            .or_else(|| {
                values
                    .iter()
                    .find(|v| is_type(v, "URL") || is_type(v, "0.TYPE/URL"))
            })?;
        expiry.consider(v);
        return Some((
            String::from_utf8_lossy(&v.data).into_owned(),
            StatusCode::FOUND,
            false,
        ));
    };
    let conneg = set
        .locs
        .iter()
        .any(|l| l.get("http_role").is_some_and(|r| r.contains("conneg")));
    let order = set
        .attribute(None, "choose_by")
        .or_else(|| set.attribute(None, "chooseby"))
        .unwrap_or("locatt,address,country,score,weighted")
        .to_string();
    let mut locs: Vec<Loc> = set.locs.clone();
    let mut chosen = None;
    for by in order.split(',') {
        if locs.len() == 1 {
            chosen = locs.pop();
            break;
        }
        match by.trim().to_ascii_lowercase().as_str() {
            "locatt" => {
                for want in ask.all("locatt") {
                    let narrowed = by_attribute(&locs, want);
                    if !narrowed.is_empty() {
                        locs = narrowed;
                    }
                }
            }
            "address" => {
                let narrowed: Vec<Loc> = locs
                    .iter()
                    .filter(|l| {
                        l.get("addresses")
                            .is_some_and(|a| a.split(',').any(|c| in_cidr(ask.peer, c.trim())))
                    })
                    .cloned()
                    .collect();
                if !narrowed.is_empty() {
                    locs = narrowed;
                }
            }
            "score" => {
                let best = locs
                    .iter()
                    .map(|l| l.number("score", 0.0))
                    .fold(0.0f64, f64::max);
                locs.retain(|l| l.number("score", 0.0) == best);
            }
            "weighted" => {
                chosen = weighted(&locs);
                break;
            }
            _ => {}
        }
    }
    let loc = match chosen {
        Some(l) => l,
        None => weighted(&locs)?,
    };
    let href = loc.get("href")?.to_string();
    let status = match set.attribute(Some(&loc), "http_sc") {
        Some("301") => StatusCode::MOVED_PERMANENTLY,
        Some("303") => StatusCode::SEE_OTHER,
        Some("307") => StatusCode::TEMPORARY_REDIRECT,
        Some("308") => StatusCode::PERMANENT_REDIRECT,
        _ => StatusCode::FOUND,
    };
    Some((href, status, conneg))
}

/// HTTP/1.0 knows only 301 and 302: any other redirect becomes 302, as the reference sends.
fn for_version(status: StatusCode, http10: bool) -> StatusCode {
    if http10 && status != StatusCode::MOVED_PERMANENTLY {
        StatusCode::FOUND
    } else {
        status
    }
}

/// `att` keeps the locations that have the attribute, `att:value` those where it equals.
fn by_attribute(locs: &[Loc], want: &str) -> Vec<Loc> {
    let (name, value) = match want.split_once(':') {
        Some((n, v)) => (n.trim(), Some(v)),
        None => (want.trim(), None),
    };
    locs.iter()
        .filter(|l| l.get(name).is_some_and(|a| value.is_none_or(|v| v == a)))
        .cloned()
        .collect()
}

/// A draw by weight (missing: 1, negative: 0), as the reference draws (from the last
/// location back); with every weight zero, any location.
fn weighted(locs: &[Loc]) -> Option<Loc> {
    if locs.is_empty() {
        return None;
    }
    let w = |l: &Loc| l.number("weight", 1.0).max(0.0);
    let total: f64 = locs.iter().map(w).sum();
    let mut rng = rand::thread_rng();
    if total <= 0.0 {
        return locs.get(rng.gen_range(0..locs.len())).cloned();
    }
    let draw = rng.gen_range(0.0..total);
    let mut sum = 0.0;
    for l in locs.iter().rev() {
        sum += w(l);
        if sum >= draw && w(l) > 0.0 {
            return Some(l.clone());
        }
    }
    locs.first().cloned()
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits = bits.unwrap_or(width).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

/// The `<locations>` element of a 10320/LOC value: its attributes and its `<location>` (or
/// old `<loc_template>`) children. `None` when the text has no element at all.
fn parse_locations(text: &str) -> Option<(Attributes, Vec<Loc>)> {
    let mut tags = tags(text);
    let (_, root) = tags.next()?;
    let locs = tags
        .filter(|(name, _)| {
            name.eq_ignore_ascii_case("location") || name.eq_ignore_ascii_case("loc_template")
        })
        .map(|(_, atts)| Loc { atts })
        .collect();
    Some((root, locs))
}

/// The start tags of an XML text, each with its attributes (entities decoded); comments,
/// declarations and end tags skipped. Enough for 10320/LOC, which is flat.
fn tags(text: &str) -> impl Iterator<Item = (String, Attributes)> + '_ {
    let mut rest = text;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find('<')?;
            rest = &rest[start + 1..];
            if rest.starts_with('/') || rest.starts_with('?') || rest.starts_with('!') {
                let end = rest.find('>')?;
                rest = &rest[end + 1..];
                continue;
            }
            let name_end = rest
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(rest.len());
            let name = rest[..name_end].to_string();
            rest = &rest[name_end..];
            let mut atts = Vec::new();
            loop {
                rest = rest.trim_start();
                if rest.is_empty() {
                    return Some((name, atts));
                }
                if let Some(r) = rest.strip_prefix("/>").or_else(|| rest.strip_prefix('>')) {
                    rest = r;
                    return Some((name, atts));
                }
                let eq = rest.find('=')?;
                let key = rest[..eq].trim().to_string();
                rest = rest[eq + 1..].trim_start();
                let quote = rest.chars().next()?;
                if quote != '"' && quote != '\'' {
                    return None;
                }
                let close = rest[1..].find(quote)? + 1;
                atts.push((key, unescape_xml(&rest[1..close])));
                rest = &rest[close + 1..];
            }
        }
    })
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `action=showurls`: the locations as XML.
fn locations_xml(locs: &[Loc]) -> Response {
    let mut out = String::from("<locations>\n");
    for l in locs {
        out.push_str("<location");
        for (k, v) in &l.atts {
            out.push_str(&format!(" {k}=\"{}\"", escape_html(v)));
        }
        out.push_str("/>\n");
    }
    out.push_str("</locations>\n");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        out,
    )
        .into_response()
}

/// `/`: the query page, a form that resolves one handle, as the reference's proxy front page
/// offers. The form posts `hdl` (with `noredirect` and `ignore_aliases` as check boxes) back to
/// `/`, which [`form`] answers like `GET /{hdl}`.
pub fn front_page() -> Response {
    let body = "<!DOCTYPE html>\n<html><head><title>Handle Proxy</title></head>\n<body>\n\
        <h3>Resolve a Handle and View the Values</h3>\n\
        <p>Type a handle: if it has a URL, your browser is sent there; with \
        &quot;Don't Redirect to URLs&quot; the handle's values are shown instead. \
        Appending a handle to this node's address resolves it too, and the REST API \
        (<code>/api/handles/{handle}</code>) returns records as JSON.</p>\n\
        <form action=\"/\" method=\"POST\">\n\
        Handle: <input id=\"hdl\" type=\"text\" name=\"hdl\" value=\"\" size=\"45\"><br>\n\
        <input type=\"checkbox\" name=\"noredirect\" value=\"\">Don't Redirect to URLs<br>\n\
        <input type=\"checkbox\" name=\"ignore_aliases\" value=\"\">Don't Follow Aliases<br>\n\
        <input type=\"submit\" value=\"Submit\">\n</form>\n</body></html>\n";
    html(StatusCode::OK, body.to_string())
}

/// `POST /` with the front page's form (`application/x-www-form-urlencoded`): the handle in
/// `hdl`, the other fields taken as the query of `GET /{hdl}`. No `hdl` answers the page again.
pub async fn form(
    state: &RestState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    body: &[u8],
    http10: bool,
) -> Response {
    // The serializer is not Send: build the query before anything is awaited.
    let (handle, query) = {
        let mut handle = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(body) {
            if k == "hdl" {
                handle.get_or_insert_with(|| v.trim().to_string());
            } else {
                rest.append_pair(&k, &v);
            }
        }
        (handle, rest.finish())
    };
    match handle.filter(|h| !h.is_empty()) {
        Some(h) => {
            face(
                state,
                conn,
                headers,
                &h,
                Some(&query).filter(|q| !q.is_empty()).map(String::as_str),
                http10,
            )
            .await
        }
        None => front_page(),
    }
}

/// The value page: every value the caller may read, in a table (index, type, timestamp, data).
fn value_page(handle: &str, values: &[HandleValue]) -> Response {
    let h = escape_html(handle);
    let mut rows = String::new();
    for v in values {
        let data = String::from_utf8_lossy(&v.data);
        let shown = if is_type(v, "URL") {
            let d = escape_html(&data);
            format!("<a href=\"{d}\">{d}</a>")
        } else if is_type(v, "EMAIL") {
            let d = escape_html(&data);
            format!("<a href=\"mailto:{d}\">{d}</a>")
        } else {
            escape_html(&data)
        };
        let when = suyuan_codec::time::format_iso8601(v.timestamp as i64);
        rows.push_str(&format!(
            "<tr><td><b>{}</b></td><td><b>{}</b></td><td>{}</td><td>{}</td></tr>\n",
            v.index,
            escape_html(&v.value_type),
            escape_html(&when),
            shown
        ));
    }
    let body = format!(
        "<html><head><title>Handle Values for: {h}</title></head>\n<body>\n<table>\n<tr><th colspan=\"4\">Handle Values for: {h}</th></tr>\n<tr><td>Index</td><td>Type</td><td>Timestamp</td><td>Data</td></tr>\n{rows}</table>\n</body></html>\n"
    );
    html(StatusCode::OK, body)
}

/// An HTML answer; a 200 carries the reference's `Vary` as its other pages do.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, HTML)], body).into_response();
    if status == StatusCode::OK {
        r.headers_mut().insert(
            header::VARY,
            HeaderValue::from_static("Accept-Encoding, User-Agent"),
        );
    }
    r
}

/// An error page.
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<html><head><title>{}</title></head>\n<body><h1>Error - {}</h1>\n<p>{}</p></body></html>\n",
        escape_html(title),
        escape_html(title),
        escape_html(text)
    );
    html(status, body)
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Percent-encodes what may not stand in a URL as the reference's `Location` does: spaces and
/// controls, non-ASCII (as UTF-8), and `"<>\^`{|}`; `%`, `#` and the delimiters stay.
fn encode_iri(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn encode_with(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A handle as a URL path (`/` kept): `12345/a b?` → `12345/a%20b%3F`.
fn encode_path(handle: &str) -> String {
    encode_with(handle, b"/!$&'()*+,;=:@")
}

/// A handle as one URL component (`/` encoded too).
fn encode_component(handle: &str) -> String {
    encode_with(handle, b"!'()*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loc_xml_is_read() {
        let (set, locs) = parse_locations(
            "<?xml version=\"1.0\"?><locations chooseby=\"locatt\"><!-- c --><location id=\"0\" href=\"https://a.example/?x=1&amp;y=2\" weight='0' view=\"html\" /><location href=\"https://b\"></location></locations>",
        )
        .unwrap();
        assert_eq!(set, vec![("chooseby".to_string(), "locatt".to_string())]);
        assert_eq!(locs.len(), 2);
        assert_eq!(locs[0].get("href"), Some("https://a.example/?x=1&y=2"));
        assert_eq!(locs[0].get("weight"), Some("0"));
        assert_eq!(locs[1].get("href"), Some("https://b"));
        assert!(parse_locations("no xml").is_none());
    }

    #[test]
    fn encodings_as_the_reference() {
        // The reference server sent Location
        // "https://e.example/a%20b/%C3%BC?x=1&y=%3C%3E%22%7B%7D%7C%5E%60#f%41" for that URL value,
        // "/12345/a2-enc%20%C3%BC%3F%23" for an alias to "12345/a2-enc ü?#", and filled
        // "https://t.example/{hdl}/{hdl:path}" as "https://t.example/12345%2Fa2-tpl/12345/a2-tpl".
        assert_eq!(
            encode_iri("https://e.example/a b/ü?x=1&y=<>\"{}|^`#f%41"),
            "https://e.example/a%20b/%C3%BC?x=1&y=%3C%3E%22%7B%7D%7C%5E%60#f%41"
        );
        assert_eq!(
            encode_path("12345/a2-enc ü?#"),
            "12345/a2-enc%20%C3%BC%3F%23"
        );
        assert_eq!(encode_component("12345/a2-tpl"), "12345%2Fa2-tpl");
    }

    #[test]
    fn cidr_and_attributes() {
        assert!(in_cidr("10.1.2.3".parse().unwrap(), "10.0.0.0/8"));
        assert!(!in_cidr("11.1.2.3".parse().unwrap(), "10.0.0.0/8"));
        assert!(in_cidr("::1".parse().unwrap(), "::1"));
        assert!(!in_cidr("::1".parse().unwrap(), "10.0.0.0/8"));
        let l = |v: &str| Loc {
            atts: vec![("view".into(), v.into())],
        };
        let locs = vec![l("html"), l("json")];
        assert_eq!(by_attribute(&locs, "view:json"), vec![l("json")]);
        assert_eq!(by_attribute(&locs, "view").len(), 2);
        assert!(by_attribute(&locs, "view:xml").is_empty());
    }

    #[test]
    fn zero_weight_locations_are_never_drawn_beside_a_weighted_one() {
        let l = |w: &str| Loc {
            atts: vec![("weight".into(), w.into())],
        };
        for _ in 0..200 {
            assert_eq!(weighted(&[l("0"), l("1"), l("0")]), Some(l("1")));
        }
    }
}
