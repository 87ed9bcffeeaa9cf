//! What a client notices, as JSON, and the differences between two such observations.
//!
//! Every answer (HTTP or Handle wire) is first turned into a JSON observation with what
//! differs by nature between two servers taken out: timestamps, nonces, session ids, the
//! servers' own addresses, ports and keys in site information, and handles other clients
//! created. Two observations are then compared member by member; each difference is a path and
//! the two values.

use serde_json::{Map, Value as Json};

/// Members whose value is new on every answer (or per server), compared only for presence.
const VOLATILE: [&str; 6] = [
    "timestamp",
    "sessionId",
    "nonce",
    "serverNonce",
    "cnonce",
    "requestDigest",
];

/// Members of site information that name the server itself: every server has its own
/// (`value` is an attribute's, such as the operator's description of the server).
const SITE_OWN: [&str; 5] = ["address", "port", "publicKey", "serialNumber", "value"];

/// Replaced for what is volatile.
pub const MASK: &str = "<volatile>";

/// Which handles of a listing are compared: those this run made, and fixed ones both sides
/// hold. Other clients' handles on a shared server are not a difference.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub run_prefix: String,
    pub fixed: Vec<String>,
}

impl Scope {
    pub fn keeps(&self, handle: &str) -> bool {
        let h = handle.to_ascii_lowercase();
        (!self.run_prefix.is_empty() && h.starts_with(&self.run_prefix.to_ascii_lowercase()))
            || self.fixed.iter().any(|f| f.eq_ignore_ascii_case(handle))
    }

    /// A listing restricted to this scope, sorted (servers list in store order).
    pub fn list(&self, handles: &[String]) -> Json {
        let mut kept: Vec<&String> = handles.iter().filter(|h| self.keeps(h)).collect();
        kept.sort();
        Json::Array(kept.into_iter().map(|h| Json::String(h.clone())).collect())
    }
}

/// Takes out of `v` what differs by nature between two servers.
pub fn normalise(v: &mut Json, scope: &Scope) {
    normalise_at(v, scope, false);
}

fn normalise_at(v: &mut Json, scope: &Scope, in_site: bool) {
    match v {
        Json::Object(m) => {
            let site = in_site || (m.contains_key("servers") && m.contains_key("protocolVersion"));
            for (k, val) in m.iter_mut() {
                if VOLATILE.contains(&k.as_str()) || (site && SITE_OWN.contains(&k.as_str())) {
                    *val = Json::String(MASK.into());
                } else if k == "handles" {
                    if let Json::Array(a) = val {
                        let names: Vec<String> = a
                            .iter()
                            .filter_map(|h| h.as_str().map(str::to_string))
                            .collect();
                        *val = listing(scope, &names);
                    }
                } else {
                    normalise_at(val, scope, site);
                }
            }
            // A listing's total counts other clients' handles too.
            if m.contains_key("handles") {
                if let Some(t) = m.get_mut("totalCount") {
                    *t = Json::String(MASK.into());
                }
            }
        }
        Json::Array(a) => a.iter_mut().for_each(|x| normalise_at(x, scope, in_site)),
        _ => {}
    }
}

/// A listing as compared: the names in scope with ASCII case folded (handles are
/// case-insensitive), and apart from them how the server spelled them, so that a server that
/// upper-cases names reads as one difference, not as every name missing.
fn listing(scope: &Scope, names: &[String]) -> Json {
    let Json::Array(kept) = scope.list(names) else {
        return Json::Null;
    };
    let kept: Vec<&str> = kept.iter().filter_map(Json::as_str).collect();
    let spelling = if kept.is_empty() {
        "none listed"
    } else if kept.iter().all(|h| *h == h.to_ascii_uppercase()) {
        "upper-cased"
    } else {
        "as created"
    };
    let mut folded: Vec<String> = kept.iter().map(|h| h.to_ascii_lowercase()).collect();
    folded.sort();
    serde_json::json!({"names": folded, "spelling": spelling})
}

/// One difference: where, and the two values (absent as `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub a: Option<Json>,
    pub b: Option<Json>,
}

impl Difference {
    /// A difference only in a free-text message (servers word their errors differently).
    pub fn is_text(&self) -> bool {
        let last = self.path.rsplit('.').next().unwrap_or("");
        last == "message" || last == "msg"
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Json>| match v {
            None => "(absent)".to_string(),
            Some(j) => {
                let s = j.to_string();
                if s.chars().count() > 240 {
                    format!("{}…", s.chars().take(240).collect::<String>())
                } else {
                    s
                }
            }
        };
        write!(
            f,
            "{}: A {} | B {}",
            self.path,
            show(&self.a),
            show(&self.b)
        )
    }
}

/// Every difference between `a` and `b`, member by member; arrays element by element.
pub fn diff(a: &Json, b: &Json) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_at("", a, b, &mut out);
    out
}

fn diff_at(path: &str, a: &Json, b: &Json, out: &mut Vec<Difference>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().collect();
            keys.extend(y.keys().filter(|k| !x.contains_key(*k)));
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff_at(&at(k), p, q, out),
                    (p, q) => out.push(Difference {
                        path: at(k),
                        a: p.cloned(),
                        b: q.cloned(),
                    }),
                }
            }
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_at(&format!("{path}[{i}]"), p, q, out);
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            // Values are compared by index where both sides list them that way, so that one
            // extra value reads as one difference, not a shifted list.
            if let (Some(p), Some(q)) = (by_index(x), by_index(y)) {
                diff_at(path, &Json::Object(p), &Json::Object(q), out);
            } else if let (Some(p), Some(q)) = (strings(x), strings(y)) {
                // Lists of names: what only one side lists.
                let only = |u: &[&str], v: &[&str]| -> Json {
                    u.iter()
                        .filter(|s| !v.contains(s))
                        .map(|s| Json::from(*s))
                        .collect()
                };
                out.push(Difference {
                    path: format!("{path} (only in one)"),
                    a: Some(only(&p, &q)),
                    b: Some(only(&q, &p)),
                });
            } else {
                out.push(Difference {
                    path: path.to_string(),
                    a: Some(a.clone()),
                    b: Some(b.clone()),
                });
            }
        }
        _ if a == b => {}
        _ => out.push(Difference {
            path: path.to_string(),
            a: Some(a.clone()),
            b: Some(b.clone()),
        }),
    }
}

fn strings(list: &[Json]) -> Option<Vec<&str>> {
    list.iter().map(Json::as_str).collect()
}

/// A list of handle values keyed by their index (`None` if it is not such a list).
fn by_index(list: &[Json]) -> Option<Map<String, Json>> {
    let mut m = Map::new();
    for v in list {
        let i = v.get("index")?.as_u64()?;
        m.insert(format!("index={i}"), v.clone());
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            run_prefix: "12345/t-1-".into(),
            fixed: vec!["12345/test1".into()],
        }
    }

    #[test]
    fn two_equal_answers_differ_in_nothing_but_volatile_members() {
        let mut a = json!({"responseCode": 1, "handle": "12345/x",
            "values": [{"index": 1, "type": "URL", "timestamp": "2026-01-01T00:00:00Z"}]});
        let mut b = json!({"responseCode": 1, "handle": "12345/x",
            "values": [{"index": 1, "type": "URL", "timestamp": "2026-12-31T23:59:59Z"}]});
        normalise(&mut a, &scope());
        normalise(&mut b, &scope());
        assert_eq!(diff(&a, &b), vec![]);
    }

    #[test]
    fn a_different_code_value_and_missing_member_are_each_reported() {
        let a = json!({"status": 201, "body": {"responseCode": 1,
            "values": [{"index": 1, "ttl": 86400}, {"index": 2, "ttl": 60}]}});
        let b = json!({"status": 200, "body": {"responseCode": 1, "extra": true,
            "values": [{"index": 1, "ttl": 3600}]}});
        let d = diff(&a, &b);
        let paths: Vec<&str> = d.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "status",
                "body.values.index=1.ttl",
                "body.values.index=2",
                "body.extra"
            ],
            "{d:?}"
        );
        assert_eq!(d[0].a, Some(json!(201)));
        assert_eq!(d[0].b, Some(json!(200)));
        assert_eq!(d[2].b, None);
        assert!(!d[0].is_text());
    }

    #[test]
    fn listings_keep_only_this_runs_handles_and_the_fixed_ones() {
        let mut a = json!({"totalCount": "7", "handles":
            ["12345/other", "12345/T-1-b", "12345/test1", "12345/t-1-a"]});
        let mut b = json!({"totalCount": "2", "handles": ["12345/t-1-a", "12345/test1"]});
        normalise(&mut a, &scope());
        normalise(&mut b, &scope());
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "handles.names (only in one)");
        assert_eq!(d[0].a, Some(json!(["12345/t-1-b"])));
        assert_eq!(d[0].b, Some(json!([])));
    }

    #[test]
    fn a_listing_in_upper_case_is_one_difference_of_spelling() {
        let mut a = json!({"handles": ["12345/T-1-A", "12345/TEST1"]});
        let mut b = json!({"handles": ["12345/test1", "12345/t-1-a"]});
        normalise(&mut a, &scope());
        normalise(&mut b, &scope());
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "handles.spelling");
        assert_eq!(d[0].a, Some(json!("upper-cased")));
    }

    #[test]
    fn site_information_names_each_server_itself_and_that_is_not_a_difference() {
        let mut a = json!({"version": 1, "protocolVersion": "2.10", "serialNumber": 3,
            "attributes": [{"name": "desc", "value": "one server"}],
            "servers": [{"serverId": 1, "address": "127.0.0.1", "publicKey": {"n": "a"},
                "interfaces": [{"protocol": "TCP", "port": 2641}]}]});
        let mut b = json!({"version": 1, "protocolVersion": "2.11", "serialNumber": 1,
            "attributes": [{"name": "desc", "value": "another"}],
            "servers": [{"serverId": 1, "address": "127.0.0.2", "publicKey": {"n": "b"},
                "interfaces": [{"protocol": "TCP", "port": 12641}]}]});
        normalise(&mut a, &scope());
        normalise(&mut b, &scope());
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "protocolVersion");
    }

    #[test]
    fn message_wording_is_a_text_difference() {
        let d = diff(
            &json!({"body": {"message": "Handle not found"}}),
            &json!({"body": {"message": "not found"}}),
        );
        assert_eq!(d.len(), 1);
        assert!(d[0].is_text());
    }
}
