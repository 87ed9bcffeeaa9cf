//! JSON forms identical to the Handle.Net REST API (`GsonUtility` in the reference): handle
//! values with their `data` formats (string, base64, hex, admin, vlist, site, key), permission
//! strings, relative and absolute TTLs, ISO-8601 timestamps, site info (`siteinfo.json`) and
//! the request bodies a PUT accepts. Emits what the reference emits, field order included;
//! decodes what it accepts, with an error that names the field.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value as Json, json};

use crate::site::{
    HashOption, Interface, ServerInfo, SiteAttribute, SiteInfo, interface_protocol, interface_type,
};
use crate::time::{format_iso8601, parse_iso8601};
use crate::value::{
    AdminRecord, HandleValue, Permissions, PublicKey, TtlType, ValueReference, admin_perm,
    decode_value_list, encode_value_list, java_bigint_bytes, types,
};

/// Why JSON was refused; the field is named so a client can fix its request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    #[error("malformed JSON: {0}")]
    Syntax(String),
    #[error("{field}: {why}")]
    Field { field: String, why: String },
    #[error("{what}: {len} exceeds the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

fn field(field: impl Into<String>, why: impl Into<String>) -> JsonError {
    JsonError::Field {
        field: field.into(),
        why: why.into(),
    }
}

/// Caps on decoded JSON, so a request cannot make us hold more than it is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Bytes of one value's decoded data.
    pub max_data: usize,
    /// Values in one record.
    pub max_values: usize,
    /// References, HS_VLIST entries, site servers or attributes in one value.
    pub max_items: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_data: 1 << 20,
            max_values: 10_000,
            max_items: 10_000,
        }
    }
}

/// The reference's `Util.looksLikeBinary`: not UTF-8, or control characters other than the
/// bytes it lets pass (0x09..=0x13, as written in its source).
pub fn looks_like_binary(data: &[u8]) -> bool {
    if std::str::from_utf8(data).is_err() {
        return true;
    }
    data.iter()
        .any(|&b| !(0x09..=0x13).contains(&b) && (b < 0x20 || b == 0x7F))
}

/// `HandleValue.hasType`: equal ignoring ASCII case, or a subtype (`HS_SITE.6` has HS_SITE).
fn has_type(value_type: &str, t: &str) -> bool {
    value_type.eq_ignore_ascii_case(t)
        || (value_type.len() > t.len()
            && value_type.as_bytes()[t.len()] == b'.'
            && value_type.as_bytes()[..t.len()].eq_ignore_ascii_case(t.as_bytes()))
}

fn data_of(format: &str, value: Json) -> Json {
    json!({"format": format, "value": value})
}

/// The `data` member of a value, formatted as the reference chooses: typed formats for the
/// types with a layout (falling back when the bytes do not decode), else string or base64.
pub fn data_to_json(value_type: &str, data: &[u8]) -> Json {
    let typed = if has_type(value_type, types::HS_ADMIN) {
        AdminRecord::decode(data)
            .ok()
            .map(|a| data_of("admin", admin_to_json(&a)))
    } else if has_type(value_type, types::HS_VLIST) {
        decode_value_list(data)
            .ok()
            .map(|r| data_of("vlist", refs_to_json(&r)))
    } else if has_type(value_type, types::HS_SITE) || has_type(value_type, "HS_NA_DELEGATE") {
        SiteInfo::decode(data)
            .ok()
            .map(|s| data_of("site", site_to_json(&s)))
    } else if has_type(value_type, types::HS_PUBKEY) {
        PublicKey::decode(data)
            .ok()
            .and_then(|k| key_to_jwk(&k))
            .map(|k| data_of("key", k))
    } else {
        None
    };
    typed.unwrap_or_else(|| {
        if looks_like_binary(data) {
            data_of("base64", Json::String(STANDARD.encode(data)))
        } else {
            data_of(
                "string",
                Json::String(String::from_utf8_lossy(data).into_owned()),
            )
        }
    })
}

/// `"1110"`: admin read, admin write, public read, public write.
pub fn permissions_to_string(p: Permissions) -> String {
    [
        p.admin_read(),
        p.admin_write(),
        p.public_read(),
        p.public_write(),
    ]
    .iter()
    .map(|&b| if b { '1' } else { '0' })
    .collect()
}

/// As the reference reads it: `*` is all four; otherwise the last four characters, right
/// aligned (a shorter string leaves the missing bits at their defaults).
pub fn permissions_from_string(s: &str) -> Result<Permissions, JsonError> {
    if s == "*" {
        return Ok(Permissions(0x0F));
    }
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b == b'0' || b == b'1') {
        return Err(field(
            "permissions",
            format!("{s:?} is not 1 to 4 characters of 0 and 1"),
        ));
    }
    let mut p = Permissions::DEFAULT.0;
    for (i, bit) in s.bytes().rev().enumerate() {
        let mask = 1u8 << i;
        if bit == b'1' {
            p |= mask;
        } else {
            p &= !mask;
        }
    }
    Ok(Permissions(p))
}

fn admin_perms_to_string(p: u16) -> String {
    admin_perm::NAMES
        .iter()
        .map(|(_, bit)| if p & bit != 0 { '1' } else { '0' })
        .collect()
}

fn admin_perms_from_json(v: Option<&Json>) -> Result<u16, JsonError> {
    let from_bits = |s: &str| -> Result<u16, JsonError> {
        if s == "*" {
            return Ok(admin_perm::ALL);
        }
        if s.len() > 12 || !s.bytes().all(|b| b == b'0' || b == b'1') {
            return Err(field(
                "data.value.permissions",
                format!("{s:?} is not 12 characters of 0 and 1"),
            ));
        }
        Ok(s.bytes()
            .rev()
            .enumerate()
            .filter(|(_, b)| *b == b'1')
            .fold(0u16, |acc, (i, _)| acc | (1 << i)))
    };
    match v {
        None | Some(Json::Null) => Ok(0),
        Some(Json::String(s)) => from_bits(s),
        Some(Json::Bool(true)) => Ok(admin_perm::ALL),
        Some(Json::Bool(false)) => Ok(0),
        Some(Json::Number(n)) => n
            .as_u64()
            .filter(|n| *n <= admin_perm::ALL as u64)
            .map(|n| n as u16)
            .ok_or_else(|| field("data.value.permissions", "out of range")),
        Some(_) => Err(field(
            "data.value.permissions",
            "expected a string of 0 and 1",
        )),
    }
}

pub fn admin_to_json(a: &AdminRecord) -> Json {
    let mut m = Map::new();
    m.insert("handle".into(), json!(a.admin_handle));
    m.insert("index".into(), json!(a.admin_index));
    m.insert(
        "permissions".into(),
        json!(admin_perms_to_string(a.permissions)),
    );
    if a.legacy_trailer.is_some() {
        m.insert("legacyByteLength".into(), json!(true));
    }
    Json::Object(m)
}

fn get<'a>(obj: &'a Map<String, Json>, key: &str, path: &str) -> Result<&'a Json, JsonError> {
    obj.get(key)
        .ok_or_else(|| field(format!("{path}.{key}"), "missing"))
}

fn as_obj<'a>(v: &'a Json, path: &str) -> Result<&'a Map<String, Json>, JsonError> {
    v.as_object()
        .ok_or_else(|| field(path, "expected an object"))
}

fn as_str<'a>(v: &'a Json, path: &str) -> Result<&'a str, JsonError> {
    v.as_str().ok_or_else(|| field(path, "expected a string"))
}

fn as_u32(v: &Json, path: &str) -> Result<u32, JsonError> {
    // Gson's getAsInt also reads numbers written as strings ("index": "100").
    let n = match v {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| field(path, "expected a non-negative 32-bit integer"))
}

fn as_array<'a>(v: &'a Json, path: &str, max: usize) -> Result<&'a Vec<Json>, JsonError> {
    let a = v
        .as_array()
        .ok_or_else(|| field(path, "expected an array"))?;
    if a.len() > max {
        return Err(JsonError::TooLarge {
            what: "array",
            len: a.len(),
            max,
        });
    }
    Ok(a)
}

pub fn admin_from_json(v: &Json) -> Result<AdminRecord, JsonError> {
    let p = "data.value";
    let o = as_obj(v, p)?;
    let mut a = AdminRecord::new(
        admin_perms_from_json(o.get("permissions"))?,
        as_str(get(o, "handle", p)?, "data.value.handle")?,
        as_u32(get(o, "index", p)?, "data.value.index")?,
    );
    if o.get("legacyByteLength").and_then(Json::as_bool) == Some(true) {
        a.legacy_trailer = Some([0, 0]);
    }
    Ok(a)
}

pub fn refs_to_json(refs: &[ValueReference]) -> Json {
    Json::Array(
        refs.iter()
            .map(|r| json!({"handle": r.handle, "index": r.index}))
            .collect(),
    )
}

pub fn refs_from_json(v: &Json, path: &str, max: usize) -> Result<Vec<ValueReference>, JsonError> {
    as_array(v, path, max)?
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = format!("{path}[{i}]");
            let o = as_obj(r, &p)?;
            Ok(ValueReference {
                handle: as_str(get(o, "handle", &p)?, &format!("{p}.handle"))?.to_string(),
                index: as_u32(get(o, "index", &p)?, &format!("{p}.index"))?,
            })
        })
        .collect()
}

fn b64url(unsigned_be: &[u8]) -> Json {
    let start = unsigned_be
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(unsigned_be.len().saturating_sub(1));
    Json::String(URL_SAFE_NO_PAD.encode(&unsigned_be[start..]))
}

/// A public key as the reference's JWK (`kty`, and `n`/`e` or `y`/`p`/`q`/`g`, base64url).
pub fn key_to_jwk(k: &PublicKey) -> Option<Json> {
    match k {
        PublicKey::Rsa {
            exponent, modulus, ..
        } => Some(json!({"kty": "RSA", "n": b64url(modulus), "e": b64url(exponent)})),
        PublicKey::Dsa { q, p, g, y, .. } => Some(json!({
            "kty": "DSA", "y": b64url(y), "p": b64url(p), "q": b64url(q), "g": b64url(g)
        })),
        _ => None,
    }
}

/// Commons-codec's `decodeBase64` reads both alphabets, with or without padding.
fn b64_any(s: &str, path: &str) -> Result<Vec<u8>, JsonError> {
    let t: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let t = t.trim_end_matches('=').replace('-', "+").replace('_', "/");
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t)
        .map_err(|e| field(path, format!("bad base64: {e}")))
}

pub fn key_from_jwk(v: &Json) -> Result<PublicKey, JsonError> {
    let p = "data.value";
    let o = as_obj(v, p)?;
    let part = |k: &str| -> Result<Vec<u8>, JsonError> {
        let path = format!("{p}.{k}");
        Ok(java_bigint_bytes(&b64_any(
            as_str(get(o, k, p)?, &path)?,
            &path,
        )?))
    };
    match as_str(get(o, "kty", p)?, "data.value.kty")?
        .to_ascii_uppercase()
        .as_str()
    {
        "RSA" => Ok(PublicKey::Rsa {
            flags: 0,
            exponent: part("e")?,
            modulus: part("n")?,
            trailer: vec![0; 4],
        }),
        "DSA" => Ok(PublicKey::Dsa {
            flags: 0,
            q: part("q")?,
            p: part("p")?,
            g: part("g")?,
            y: part("y")?,
        }),
        other => Err(field(
            "data.value.kty",
            format!("unsupported key type {other:?}"),
        )),
    }
}

fn protocol_name(p: u8) -> Json {
    match p {
        interface_protocol::UDP => json!("UDP"),
        interface_protocol::TCP => json!("TCP"),
        interface_protocol::HTTP => json!("HTTP"),
        interface_protocol::HTTPS => json!("HTTPS"),
        other => json!(other),
    }
}

/// Site info in the form of `siteinfo.json` and of REST `site` data.
pub fn site_to_json(s: &SiteInfo) -> Json {
    let mut m = Map::new();
    m.insert("version".into(), json!(s.data_format_version));
    m.insert(
        "protocolVersion".into(),
        json!(format!("{}.{}", s.protocol_major, s.protocol_minor)),
    );
    m.insert("serialNumber".into(), json!(s.serial_number));
    m.insert("primarySite".into(), json!(s.is_primary()));
    m.insert("multiPrimary".into(), json!(s.is_multi_primary()));
    if s.hash_option != HashOption::ByAll {
        m.insert("hashOption".into(), json!(s.hash_option.to_u8()));
    }
    if !s.hash_filter.is_empty() {
        m.insert("hashFilter".into(), json!(s.hash_filter));
    }
    m.insert(
        "attributes".into(),
        Json::Array(
            s.attributes
                .iter()
                .map(|a| json!({"name": a.name, "value": a.value}))
                .collect(),
        ),
    );
    let servers = s
        .servers
        .iter()
        .map(|srv| {
            let key = PublicKey::decode(&srv.public_key)
                .ok()
                .and_then(|k| key_to_jwk(&k))
                .map(|k| data_of("key", k))
                .unwrap_or_else(|| data_of("base64", json!(STANDARD.encode(&srv.public_key))));
            let interfaces: Vec<Json> = srv
                .interfaces
                .iter()
                .map(|i| {
                    json!({"query": i.query(), "admin": i.admin(), "protocol": protocol_name(i.protocol), "port": i.port})
                })
                .collect();
            json!({
                "serverId": srv.server_id,
                "address": srv.ip().to_string(),
                "publicKey": key,
                "interfaces": interfaces,
            })
        })
        .collect();
    m.insert("servers".into(), Json::Array(servers));
    Json::Object(m)
}

pub fn site_from_json(v: &Json, limits: &JsonLimits) -> Result<SiteInfo, JsonError> {
    let p = "site";
    let o = as_obj(v, p)?;
    let num = |k: &str, default: u32| -> Result<u32, JsonError> {
        o.get(k)
            .map_or(Ok(default), |x| as_u32(x, &format!("{p}.{k}")))
    };
    let (major, minor) = match o.get("protocolVersion") {
        Some(x) => {
            let s = as_str(x, "site.protocolVersion")?;
            let (a, b) = s
                .split_once('.')
                .ok_or_else(|| field("site.protocolVersion", "expected MAJOR.MINOR"))?;
            let parse = |t: &str| {
                t.parse::<u8>()
                    .map_err(|_| field("site.protocolVersion", "expected MAJOR.MINOR"))
            };
            (parse(a)?, parse(b)?)
        }
        None => (2, 10),
    };
    let flag = |k: &str| o.get(k).and_then(Json::as_bool).unwrap_or(false);
    let attributes = match o.get("attributes") {
        None => Vec::new(),
        Some(Json::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                Ok(SiteAttribute {
                    name: k.clone(),
                    value: as_str(v, "site.attributes")?.to_string(),
                })
            })
            .collect::<Result<_, JsonError>>()?,
        Some(a) => as_array(a, "site.attributes", limits.max_items)?
            .iter()
            .map(|x| {
                let ao = as_obj(x, "site.attributes[]")?;
                Ok(SiteAttribute {
                    name: as_str(
                        get(ao, "name", "site.attributes[]")?,
                        "site.attributes[].name",
                    )?
                    .to_string(),
                    value: as_str(
                        get(ao, "value", "site.attributes[]")?,
                        "site.attributes[].value",
                    )?
                    .to_string(),
                })
            })
            .collect::<Result<_, JsonError>>()?,
    };
    let servers_json = o
        .get("servers")
        .ok_or_else(|| field("site.servers", "missing"))?;
    let mut servers = Vec::new();
    for (i, sj) in as_array(servers_json, "site.servers", limits.max_items)?
        .iter()
        .enumerate()
    {
        let sp = format!("site.servers[{i}]");
        let so = as_obj(sj, &sp)?;
        let addr: std::net::IpAddr = as_str(get(so, "address", &sp)?, &format!("{sp}.address"))?
            .parse()
            .map_err(|_| field(format!("{sp}.address"), "not an IP address"))?;
        let public_key = match so.get("publicKey") {
            None => Vec::new(),
            Some(k) => data_from_json(k, limits)
                .map_err(|e| field(format!("{sp}.publicKey"), e.to_string()))?,
        };
        let mut interfaces = Vec::new();
        if let Some(ifs) = so.get("interfaces") {
            for (j, ij) in as_array(ifs, &format!("{sp}.interfaces"), limits.max_items)?
                .iter()
                .enumerate()
            {
                let ip = format!("{sp}.interfaces[{j}]");
                let io = as_obj(ij, &ip)?;
                let q = io.get("query").and_then(Json::as_bool).unwrap_or(false);
                let a = io.get("admin").and_then(Json::as_bool).unwrap_or(false);
                let kind = match (q, a) {
                    (true, true) => interface_type::ADMIN_AND_QUERY,
                    (true, false) => interface_type::QUERY,
                    (false, true) => interface_type::ADMIN,
                    (false, false) => interface_type::OUT_OF_SERVICE,
                };
                let protocol = match get(io, "protocol", &ip)? {
                    Json::String(s) => match s.as_str() {
                        "UDP" => interface_protocol::UDP,
                        "TCP" => interface_protocol::TCP,
                        "HTTP" => interface_protocol::HTTP,
                        "HTTPS" => interface_protocol::HTTPS,
                        other => other
                            .parse()
                            .map_err(|_| field(format!("{ip}.protocol"), "unknown protocol"))?,
                    },
                    n => u8::try_from(as_u32(n, &format!("{ip}.protocol"))?)
                        .map_err(|_| field(format!("{ip}.protocol"), "out of range"))?,
                };
                interfaces.push(Interface {
                    kind,
                    protocol,
                    port: as_u32(get(io, "port", &ip)?, &format!("{ip}.port"))?,
                });
            }
        }
        servers.push(ServerInfo {
            server_id: num_of(so, "serverId", &sp, 1)?,
            address: ServerInfo::address_of(addr),
            public_key,
            interfaces,
        });
    }
    Ok(SiteInfo {
        data_format_version: u16::try_from(num("version", 1)?)
            .map_err(|_| field("site.version", "out of range"))?,
        protocol_major: major,
        protocol_minor: minor,
        serial_number: u16::try_from(num("serialNumber", 1)?)
            .map_err(|_| field("site.serialNumber", "out of range"))?,
        flags: if flag("primarySite") {
            crate::site::SITE_PRIMARY
        } else {
            0
        } | if flag("multiPrimary") {
            crate::site::SITE_MULTI_PRIMARY
        } else {
            0
        },
        hash_option: HashOption::from_u8(
            u8::try_from(num("hashOption", 2)?)
                .map_err(|_| field("site.hashOption", "out of range"))?,
        ),
        hash_filter: o
            .get("hashFilter")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string(),
        attributes,
        servers,
    })
}

fn num_of(o: &Map<String, Json>, k: &str, path: &str, default: u32) -> Result<u32, JsonError> {
    o.get(k)
        .map_or(Ok(default), |x| as_u32(x, &format!("{path}.{k}")))
}

/// The bytes of a `data` member: a plain string, or `{format, value}`.
pub fn data_from_json(v: &Json, limits: &JsonLimits) -> Result<Vec<u8>, JsonError> {
    let bytes = match v {
        Json::String(s) => s.as_bytes().to_vec(),
        Json::Object(o) => {
            let format = as_str(get(o, "format", "data")?, "data.format")?;
            let value = get(o, "value", "data")?;
            match format.to_ascii_lowercase().as_str() {
                "string" => as_str(value, "data.value")?.as_bytes().to_vec(),
                "base64" => b64_any(as_str(value, "data.value")?, "data.value")?,
                "hex" => hex::decode(as_str(value, "data.value")?.trim())
                    .map_err(|e| field("data.value", format!("bad hex: {e}")))?,
                "admin" => admin_from_json(value)?.encode(),
                "vlist" => {
                    encode_value_list(&refs_from_json(value, "data.value", limits.max_items)?)
                }
                "site" => site_from_json(value, limits)?.encode(),
                "key" => key_from_jwk(value)?.encode(),
                other => return Err(field("data.format", format!("unknown format {other:?}"))),
            }
        }
        _ => return Err(field("data", "expected a string or {format, value}")),
    };
    if bytes.len() > limits.max_data {
        return Err(JsonError::TooLarge {
            what: "data",
            len: bytes.len(),
            max: limits.max_data,
        });
    }
    Ok(bytes)
}

/// A value as the reference serialises it: index, type, data, permissions (only when not
/// 1110), ttl, timestamp (only when set), references (only when any).
pub fn value_to_json(v: &HandleValue) -> Json {
    let mut m = Map::new();
    m.insert("index".into(), json!(v.index));
    m.insert("type".into(), json!(v.value_type));
    m.insert("data".into(), data_to_json(&v.value_type, &v.data));
    if v.permissions.0 & 0x0F != Permissions::DEFAULT.0 {
        m.insert(
            "permissions".into(),
            json!(permissions_to_string(v.permissions)),
        );
    }
    m.insert(
        "ttl".into(),
        match v.ttl_type {
            TtlType::Absolute => json!(format_iso8601(v.ttl as i64)),
            _ => json!(v.ttl),
        },
    );
    if v.timestamp != 0 {
        m.insert(
            "timestamp".into(),
            json!(format_iso8601(v.timestamp as i64)),
        );
    }
    if !v.references.is_empty() {
        m.insert("references".into(), refs_to_json(&v.references));
    }
    Json::Object(m)
}

/// Reads one value. Missing `ttl` means 86400 relative, missing `permissions` 1110.
pub fn value_from_json(v: &Json, limits: &JsonLimits) -> Result<HandleValue, JsonError> {
    let o = as_obj(v, "value")?;
    let index = as_u32(get(o, "index", "value")?, "index")?;
    let value_type = as_str(get(o, "type", "value")?, "type")?.to_string();
    let data = match o.get("data") {
        Some(d) => data_from_json(d, limits)?,
        None => Vec::new(),
    };
    let mut out = HandleValue::new(index, value_type, data);
    if let Some(p) = o.get("permissions") {
        out.permissions = permissions_from_string(as_str(p, "permissions")?)?;
    }
    match o.get("ttl") {
        None | Some(Json::Null) => {}
        Some(Json::String(s)) => {
            out.ttl_type = TtlType::Absolute;
            out.ttl = parse_iso8601(s)
                .ok()
                .and_then(|t| i32::try_from(t).ok())
                .ok_or_else(|| field("ttl", format!("{s:?} is not an ISO-8601 time")))?;
        }
        Some(Json::Number(n)) => {
            out.ttl = n
                .as_i64()
                .and_then(|t| i32::try_from(t).ok())
                .ok_or_else(|| field("ttl", "expected a 32-bit integer"))?;
        }
        Some(_) => return Err(field("ttl", "expected seconds or an ISO-8601 time")),
    }
    if let Some(t) = o.get("timestamp") {
        let s = as_str(t, "timestamp")?;
        out.timestamp = parse_iso8601(s)
            .ok()
            .and_then(|t| u32::try_from(t).ok())
            .ok_or_else(|| field("timestamp", format!("{s:?} is not an ISO-8601 time")))?;
    }
    if let Some(r) = o.get("references").filter(|r| !r.is_null()) {
        out.references = refs_from_json(r, "references", limits.max_items)?;
    }
    Ok(out)
}

/// The values of a PUT body: a JSON array of values, `{"values": [...]}`, or one value.
pub fn values_from_json(body: &str, limits: &JsonLimits) -> Result<Vec<HandleValue>, JsonError> {
    let v: Json = serde_json::from_str(body).map_err(|e| JsonError::Syntax(e.to_string()))?;
    let list = match &v {
        Json::Array(_) => &v,
        Json::Object(o) if o.contains_key("values") => &o["values"],
        Json::Object(_) => return Ok(vec![value_from_json(&v, limits)?]),
        _ => {
            return Err(field(
                "body",
                "expected values: an array, {\"values\": [...]} or one value",
            ));
        }
    };
    let arr = as_array(list, "values", limits.max_values)?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            value_from_json(x, limits).map_err(|e| match e {
                JsonError::Field { field: f, why } => field(format!("values[{i}].{f}"), why),
                other => other,
            })
        })
        .collect()
}

/// A resolution answer: `{responseCode, handle, values}`.
pub fn resolution_to_json(response_code: u32, handle: &str, values: &[HandleValue]) -> Json {
    json!({
        "responseCode": response_code,
        "handle": handle,
        "values": values.iter().map(value_to_json).collect::<Vec<_>>(),
    })
}

/// A handle list answer; `totalCount` is a string, as the reference writes it and clients
/// parse it.
pub fn handle_list_to_json(prefix: &str, total: u64, handles: &[String]) -> Json {
    json!({
        "responseCode": 1,
        "prefix": prefix,
        "totalCount": total.to_string(),
        "handles": handles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> JsonLimits {
        JsonLimits::default()
    }

    #[test]
    fn permission_strings() {
        assert_eq!(permissions_to_string(Permissions(0x0E)), "1110");
        assert_eq!(permissions_to_string(Permissions(0x0C)), "1100");
        assert_eq!(permissions_from_string("1100").unwrap(), Permissions(0x0C));
        assert_eq!(permissions_from_string("*").unwrap(), Permissions(0x0F));
        assert_eq!(permissions_from_string("01").unwrap(), Permissions(0x0D));
        for bad in ["", "11111", "11a0"] {
            assert!(permissions_from_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_permission_string_order() {
        let a = AdminRecord::new(
            admin_perm::ALL & !admin_perm::LIST_HANDLES,
            "0.NA/88.100",
            300,
        );
        let j = admin_to_json(&a);
        assert_eq!(j["permissions"], "011111111111");
        assert_eq!(admin_from_json(&j).unwrap(), a);
        let one =
            admin_from_json(&json!({"handle": "x/y", "index": 1, "permissions": "000000000001"}))
                .unwrap();
        assert_eq!(one.permissions, admin_perm::ADD_HANDLE);
    }

    #[test]
    fn data_formats_round_trip() {
        for (t, data) in [
            ("URL", b"https://example.org".to_vec()),
            ("DESC", vec![0, 1, 2, 0xff]),
            (
                "HS_ADMIN",
                AdminRecord::new(0x0fff, "12345/ADMIN", 300).encode(),
            ),
            (
                "HS_VLIST",
                encode_value_list(&[ValueReference {
                    handle: "a/b".into(),
                    index: 300,
                }]),
            ),
            ("HS_SECKEY", b"secret".to_vec()),
        ] {
            let mut v = HandleValue::new(7, t, data);
            v.timestamp = 1_795_509_286;
            v.permissions = Permissions(0x0C);
            v.references = vec![ValueReference {
                handle: "x/y".into(),
                index: 1,
            }];
            let j = value_to_json(&v);
            assert_eq!(value_from_json(&j, &lim()).unwrap(), v, "{t}: {j}");
        }
    }

    #[test]
    fn emits_in_the_reference_order_and_shape() {
        let mut v = HandleValue::new(1, "URL", "https://example.org/test1");
        v.timestamp = 1_795_509_286;
        assert_eq!(
            value_to_json(&v).to_string(),
            r#"{"index":1,"type":"URL","data":{"format":"string","value":"https://example.org/test1"},"ttl":86400,"timestamp":"2026-11-24T08:34:46Z"}"#
        );
        v.ttl_type = TtlType::Absolute;
        v.ttl = 1_795_509_286;
        assert_eq!(value_to_json(&v)["ttl"], "2026-11-24T08:34:46Z");
    }

    #[test]
    fn put_bodies_in_all_three_shapes() {
        let one = r#"{"index":1,"type":"URL","data":"https://a"}"#;
        let v = values_from_json(one, &lim()).unwrap();
        assert_eq!(v, vec![HandleValue::new(1, "URL", "https://a")]);
        assert_eq!(values_from_json(&format!("[{one}]"), &lim()).unwrap(), v);
        assert_eq!(
            values_from_json(&format!("{{\"values\":[{one}]}}"), &lim()).unwrap(),
            v
        );
    }

    #[test]
    fn bad_json_names_the_field() {
        let cases = [
            (
                r#"{"values":[{"index":-1,"type":"URL","data":"x"}]}"#,
                "values[0].index",
            ),
            (
                r#"{"values":[{"index":1,"type":"URL","data":{"format":"base64","value":"!!"}}]}"#,
                "values[0].data.value",
            ),
            (
                r#"{"values":[{"index":1,"type":"URL","data":{"format":"nope","value":""}}]}"#,
                "values[0].data.format",
            ),
            (
                r#"{"values":[{"index":1,"data":"x"}]}"#,
                "values[0].value.type",
            ),
            (
                r#"{"values":[{"index":1,"type":"URL","data":"x","ttl":true}]}"#,
                "values[0].ttl",
            ),
        ];
        for (body, f) in cases {
            match values_from_json(body, &lim()) {
                Err(JsonError::Field { field, .. }) => assert_eq!(field, f, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(matches!(
            values_from_json("{", &lim()),
            Err(JsonError::Syntax(_))
        ));
    }

    #[test]
    fn caps_are_enforced() {
        let small = JsonLimits {
            max_data: 4,
            max_values: 1,
            max_items: 1,
        };
        assert!(matches!(
            values_from_json(r#"{"index":1,"type":"URL","data":"too long"}"#, &small),
            Err(JsonError::TooLarge { .. })
        ));
        assert!(matches!(
            values_from_json(
                r#"[{"index":1,"type":"A","data":""},{"index":2,"type":"A","data":""}]"#,
                &small
            ),
            Err(JsonError::TooLarge { .. })
        ));
    }

    #[test]
    fn binary_detection_follows_the_reference() {
        assert!(!looks_like_binary(b"hello\tworld\n"));
        assert!(!looks_like_binary("中文".as_bytes()));
        assert!(looks_like_binary(&[0x00]));
        assert!(looks_like_binary(&[0x7f]));
        assert!(looks_like_binary(&[0xff, 0xfe]));
    }
}
