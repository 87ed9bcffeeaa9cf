//! Which part of the node answers a handle, decided once for every request and every surface
//! (the Handle wire, REST, the redirect face), the way hickory-dns's `Catalog` picks a zone's
//! handler: the local registry, another server of this site, this node as the prefix service
//! of what it homes, a referral to the node a prefix was delegated to, or, for a request the
//! node may walk for its client, the recursive forwarder over the federation walker.
//!
//! Prefix handles `0.NA/P` follow the reference server's rules. A top-level node (one that
//! homes `0.NA` itself) stores them: what it stores it answers, and an unstored `0.NA/P.x`
//! under a stored ancestor whose public HS_SITE.PREFIX, HS_NA_DELEGATE or HS_SERV.PREFIX
//! values name who serves the derived prefixes is answered with RC 303 and those values. Any
//! other node answers `0.NA/P` for each prefix P it homes with its own site, so that it is the
//! prefix service one level down, and RC 301 for prefix handles it has nothing to do with.

use std::sync::Arc;

use suyuan_codec::handle::{Handle, NA_PREFIX, parent_prefix};
use suyuan_codec::message::rc;
use suyuan_codec::value::{HandleValue, types};
use suyuan_registry::{Record, RegistryError};

/// The types whose values refer a derived prefix to its service (RC 303).
pub const DELEGATION_TYPES: [&str; 3] = [
    types::HS_SITE_PREFIX,
    types::HS_NA_DELEGATE,
    types::HS_SERV_PREFIX,
];

/// Where a request about a handle goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// The registry answers: the handle is under a prefix homed here (its record, if any).
    Local(Handle, Arc<Option<Record>>),
    /// `0.NA/P` for a prefix P homed here that is not stored: this node's own site answers.
    OwnPrefix(Handle),
    /// RC 303: these values say who serves the derived prefix asked for.
    Referral(Vec<HandleValue>),
    /// Not held here, and the request may be walked through the hierarchy for its client:
    /// the recursive forwarder answers (what would otherwise be RC 301 or RC 303).
    Forward,
    /// Not answered here: this code and message.
    Refused(u32, String),
}

/// What a request allows the catalog to answer with besides the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allow {
    /// A referral (RC 303): false when the request sets DNRF.
    pub refer: bool,
    /// The recursive forwarder: the node has an upstream and this request may be walked.
    pub forward: bool,
}

impl Allow {
    /// Neither referrals nor forwarding: what a write needs to find its record.
    pub const LOCAL: Allow = Allow {
        refer: true,
        forward: false,
    };
}

/// What the catalog needs to know of the node.
pub(crate) trait Holdings {
    fn homed(&self, prefix: &str) -> Result<bool, RegistryError>;
    fn record(&self, handle: &str) -> Result<Arc<Option<Record>>, RegistryError>;
    /// RC 301's message when another server of this node's site answers `h`.
    fn elsewhere(&self, h: &Handle) -> Option<String>;
}

/// The route for `h`, as parsed from what the client sent (`asked`), given what the request
/// allows.
pub(crate) fn route(
    held: &impl Holdings,
    h: Handle,
    asked: &str,
    allow: Allow,
) -> Result<Route, RegistryError> {
    let not_here = |message: String| {
        if allow.forward {
            Route::Forward
        } else {
            Route::Refused(rc::SERVER_NOT_RESP, message)
        }
    };
    if let Some(m) = held.elsewhere(&h) {
        // Another server of this site holds it: the walk finds that server by the same hash.
        return Ok(not_here(m));
    }
    let Some(described) = h.described_prefix().map(str::to_string) else {
        if held.homed(h.prefix())? {
            let rec = held.record(h.as_str())?;
            return Ok(Route::Local(h, rec));
        }
        return Ok(not_here(not_served(&h, asked, false)));
    };
    let top = held.homed(NA_PREFIX)?;
    if top {
        let rec = held.record(h.as_str())?;
        if rec.is_some() || !allow.refer {
            return Ok(Route::Local(h, rec));
        }
        if let Some(values) = delegation(held, &described)? {
            return Ok(if allow.forward {
                Route::Forward
            } else {
                Route::Referral(values)
            });
        }
        return Ok(Route::Local(h, rec));
    }
    if held.homed(&described)? {
        return Ok(Route::OwnPrefix(h));
    }
    // A prefix derived from one homed here is ours to describe: it does not exist.
    let mut up = parent_prefix(&described);
    while let Some(p) = up {
        if held.homed(p)? {
            return Ok(Route::Refused(rc::HANDLE_NOT_FOUND, String::new()));
        }
        up = parent_prefix(p);
    }
    Ok(not_here(not_served(&h, asked, true)))
}

/// The public delegation values of the nearest stored ancestor of `prefix` that has any, as
/// the reference server walks `0.NA/P.x` → `0.NA/P` → ….
fn delegation(
    held: &impl Holdings,
    prefix: &str,
) -> Result<Option<Vec<HandleValue>>, RegistryError> {
    let mut up = parent_prefix(prefix);
    while let Some(p) = up {
        let rec = held.record(&format!("{NA_PREFIX}/{p}"))?;
        if let Some(rec) = rec.as_ref() {
            let values: Vec<HandleValue> = rec
                .values
                .iter()
                .filter(|v| {
                    v.permissions.public_read()
                        && DELEGATION_TYPES
                            .iter()
                            .any(|t| v.value_type.eq_ignore_ascii_case(t))
                })
                .cloned()
                .collect();
            if !values.is_empty() {
                return Ok(Some(values));
            }
        }
        up = parent_prefix(p);
    }
    Ok(None)
}

/// The reference's words for RC 301, which every such answer of ours starts with.
pub(crate) const NOT_HERE: &str = "That prefix doesn't live here";

/// RC 301's message for `h`, parsed from what the client sent (`asked`): which prefix is not
/// served, and, for input without a slash, how it was read. It names no prefix that is
/// served: the list of those is for authenticated administrators (OC 104).
fn not_served(h: &Handle, asked: &str, prefix_handle: bool) -> String {
    let read_as = if asked.contains('/') {
        String::new()
    } else {
        format!("{asked:?} has no slash, so it was read as the prefix handle {h}, and ")
    };
    // "prefix 0.NA is not served here" would be true and useless: a prefix handle is answered
    // by the prefix service of the hierarchy, so say that and name the prefix it describes.
    match h.described_prefix().filter(|_| prefix_handle) {
        Some(p) => format!(
            "{NOT_HERE}: {read_as}this node is not the prefix service of prefix {p} \
             (a top-level node of the hierarchy says who serves it)"
        ),
        None => prefix_not_served(h.prefix()),
    }
}

/// RC 301's message for a prefix this node does not home.
pub(crate) fn prefix_not_served(prefix: &str) -> String {
    format!("{NOT_HERE}: prefix {prefix} is not served here")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use suyuan_codec::value::Permissions;

    #[derive(Default)]
    struct Held {
        homed: Vec<&'static str>,
        records: HashMap<String, Vec<HandleValue>>,
    }

    impl Holdings for Held {
        fn homed(&self, prefix: &str) -> Result<bool, RegistryError> {
            Ok(self.homed.iter().any(|p| p.eq_ignore_ascii_case(prefix)))
        }
        fn record(&self, handle: &str) -> Result<Arc<Option<Record>>, RegistryError> {
            Ok(Arc::new(
                self.records
                    .get(&handle.to_ascii_uppercase())
                    .map(|values| Record {
                        handle: handle.to_string(),
                        values: values.clone(),
                        seq: 1,
                        links: Vec::new(),
                    }),
            ))
        }
        fn elsewhere(&self, _: &Handle) -> Option<String> {
            None
        }
    }

    fn go(held: &Held, asked: &str, refer: bool) -> Route {
        let allow = Allow {
            refer,
            forward: false,
        };
        route(held, Handle::parse_lenient(asked).unwrap(), asked, allow).unwrap()
    }

    fn walked(held: &Held, asked: &str) -> Route {
        let allow = Allow {
            refer: true,
            forward: true,
        };
        route(held, Handle::parse_lenient(asked).unwrap(), asked, allow).unwrap()
    }

    fn top() -> Held {
        let mut h = Held {
            homed: vec!["0.NA"],
            ..Held::default()
        };
        h.records.insert(
            "0.NA/88.888".into(),
            vec![
                HandleValue::new(1, "HS_SITE", vec![1]),
                HandleValue::new(2, "HS_SITE.PREFIX", vec![2]),
                HandleValue {
                    permissions: Permissions(0x0C),
                    ..HandleValue::new(3, "HS_NA_DELEGATE", vec![3])
                },
            ],
        );
        h
    }

    #[test]
    fn a_top_answers_what_it_stores_and_refers_derived_prefixes() {
        let t = top();
        assert!(matches!(go(&t, "0.NA/88.888", true), Route::Local(_, r) if r.is_some()));
        // Derived, unstored: the nearest ancestor's public delegation values, nothing else.
        match go(&t, "0.NA/88.888.1.7", true) {
            Route::Referral(v) => {
                assert_eq!(v.len(), 1);
                assert_eq!(v[0].value_type, "HS_SITE.PREFIX");
            }
            r => panic!("{r:?}"),
        }
        // Slash-less input is the prefix handle.
        assert!(matches!(go(&t, "88.888.1", true), Route::Referral(_)));
        // DNRF: no referral, the top's own answer (not found).
        assert!(matches!(go(&t, "0.NA/88.888.1", false), Route::Local(_, r) if r.is_none()));
        // Not derived from anything delegated: not found at the top.
        assert!(matches!(go(&t, "0.NA/99.1", true), Route::Local(_, r) if r.is_none()));
    }

    #[test]
    fn a_secondary_is_the_prefix_service_of_what_it_homes() {
        let s = Held {
            homed: vec!["88.888", "88.888.1"],
            ..Held::default()
        };
        assert!(matches!(go(&s, "0.NA/88.888.1", true), Route::OwnPrefix(_)));
        assert!(matches!(go(&s, "88.888", true), Route::OwnPrefix(_)));
        assert!(matches!(
            go(&s, "0.NA/88.888.2", true),
            Route::Refused(rc::HANDLE_NOT_FOUND, _)
        ));
        match go(&s, "0.NA/99.1", true) {
            Route::Refused(rc::SERVER_NOT_RESP, m) => {
                assert!(m.contains("not the prefix service of prefix 99.1"), "{m}")
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(go(&s, "88.888.1/x", true), Route::Local(..)));
        match go(&s, "77.1/x", true) {
            Route::Refused(rc::SERVER_NOT_RESP, m) => {
                assert!(m.contains("prefix 77.1 is not served here"), "{m}")
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn the_forwarder_takes_what_would_be_a_referral_or_not_served_and_nothing_else() {
        let s = Held {
            homed: vec!["88.888"],
            ..Held::default()
        };
        assert!(matches!(walked(&s, "77.1/x"), Route::Forward));
        assert!(matches!(walked(&s, "0.NA/99.1"), Route::Forward));
        // What this node is authoritative for is answered here, found or not.
        assert!(matches!(walked(&s, "88.888/x"), Route::Local(..)));
        assert!(matches!(walked(&s, "0.NA/88.888"), Route::OwnPrefix(_)));
        assert!(matches!(
            walked(&s, "0.NA/88.888.2"),
            Route::Refused(rc::HANDLE_NOT_FOUND, _)
        ));
        let t = top();
        assert!(matches!(walked(&t, "0.NA/88.888.1.7"), Route::Forward));
        assert!(matches!(walked(&t, "0.NA/99.1"), Route::Local(_, r) if r.is_none()));
    }
}
