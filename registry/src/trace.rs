//! The trace engine: from a handle, up through its links to the sources it came from (来源可溯)
//! or down through the reverse index to everything it fed (去向可查). Breadth-first, cycle safe,
//! bounded in depth and nodes, filtered by relation and time window; the reverse index is read
//! in pages so a meter with 100,000 readings is never loaded at once. Targets under prefixes not
//! homed here are listed as remote hops for federation; missing ones as dangling edges.

use std::collections::{HashSet, VecDeque};

use serde::Serialize;
use suyuan_codec::handle::{Handle, key_of};
use suyuan_codec::time::{Span, parse_iso8601, parse_period};
use suyuan_codec::value::HandleValue;

use crate::error::RegistryError;
use crate::links::{attr, text_of};
use crate::model::Tombstone;
use crate::store::Registry;
use suyuan_codec::formula::Tolerance;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraceQuery {
    pub root: String,
    pub direction: Direction,
    pub depth: u32,
    pub limit: usize,
    /// Follow only these relations (empty: all).
    pub rels: Vec<String>,
    pub window: Option<Span>,
    /// Whether the surface adds each node's transparency-log proof (`proofs=false`: not).
    pub proofs: bool,
    /// Whether each record with a formula is checked (`checks=false`: not).
    pub checks: bool,
}

impl TraceQuery {
    pub const DEFAULT_DEPTH: u32 = 16;
    pub const DEFAULT_LIMIT: usize = 10_000;

    pub fn new(root: impl Into<String>, direction: Direction) -> Self {
        TraceQuery {
            root: root.into(),
            direction,
            depth: Self::DEFAULT_DEPTH,
            limit: Self::DEFAULT_LIMIT,
            rels: Vec::new(),
            window: None,
            proofs: true,
            checks: true,
        }
    }

    /// A window from `from` to `to`, each an RFC 3339 instant or a period (`2025-03`,
    /// `2025`): from the start of `from` to the end of `to`.
    pub fn with_window(
        mut self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Self, RegistryError> {
        let bad = |e: suyuan_codec::time::TimeError| {
            RegistryError::refused(suyuan_codec::message::rc::INVALID_VALUE, e.to_string())
        };
        let start = from
            .map(parse_period)
            .transpose()
            .map_err(bad)?
            .map_or(i64::MIN, |s| s.start);
        let end = to
            .map(parse_period)
            .transpose()
            .map_err(bad)?
            .map_or(i64::MAX, |s| s.end);
        self.window = (from.is_some() || to.is_some()).then_some(Span { start, end });
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceNode {
    pub handle: String,
    pub kind: Option<String>,
    /// Values the caller may read, in the REST JSON form.
    pub values: Vec<serde_json::Value>,
    /// The record's identifiers of other schemes (its `id.*` values the caller may read), in
    /// their normal forms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// The node that answered for this record, by its identity handle (`0.NA/<prefix>`):
    /// set by the surface that knows (this node's for local records, the remote's for a
    /// remote hop resolved through the hierarchy).
    #[serde(rename = "servedBy", skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// The change that wrote the version shown (local records only).
    #[serde(skip)]
    pub seq: Option<u64>,
    /// The transparency log's proof of the version shown, added by the surface that
    /// publishes the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<serde_json::Value>,
    /// The derivation check of a record with a formula.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::check::Check>,
}

/// An identifier of another scheme a record is bound to: the scheme (`oid`, `gs1`, `ecode`)
/// and the identifier in its normal form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Identifier {
    pub scheme: String,
    pub id: String,
}

/// A remote hop that could not be resolved: which handle, the node asked (if one was found)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Unreachable {
    pub handle: String,
    pub node: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TraceEdge {
    pub from: String,
    pub to: String,
    pub rel: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteHop {
    pub handle: String,
    pub prefix: String,
    /// How deep in the trace the hop's record sits (its links' least depth + 1).
    #[serde(skip)]
    pub depth: u32,
    /// The links that lead to it: edges of the trace once a surface resolves the hop.
    #[serde(skip)]
    pub links: Vec<TraceEdge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DanglingTombstone {
    pub seq: u64,
    pub time: u64,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Dangling {
    pub from: String,
    pub to: String,
    pub rel: String,
    pub tombstone: Option<DanglingTombstone>,
}

/// A trace answer: the records reached and the links walked between them, whether a limit cut
/// the walk short, and the targets it could not follow here (on other nodes, or missing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    pub root: String,
    pub direction: Direction,
    pub depth: u32,
    pub nodes: Vec<TraceNode>,
    pub edges: Vec<TraceEdge>,
    pub truncated: bool,
    pub remote: Vec<RemoteHop>,
    pub dangling: Vec<Dangling>,
    /// Remote hops that were to be resolved and could not be (absent until a surface tries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<Vec<Unreachable>>,
    /// How many of the checked records are green, red and grey (absent with `checks=false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<crate::check::Summary>,
    /// The values of each node the caller may read, and why some cannot be used if so: what
    /// the checks compute from.
    #[serde(skip)]
    readable: Vec<(Vec<HandleValue>, Option<String>)>,
}

/// Whether a record lies in the window: an `mrv.time` instant inside it, an `mrv.period`
/// overlapping it, or neither attribute (meters, units, plans are always kept).
pub fn in_window(values: &[HandleValue], window: Option<&Span>) -> bool {
    let Some(w) = window else { return true };
    if let Some(t) = text_of(values, attr::TIME) {
        return parse_iso8601(t).map(|t| w.contains(t)).unwrap_or(true);
    }
    if let Some(p) = text_of(values, attr::PERIOD) {
        return parse_period(p).map(|p| w.overlaps(&p)).unwrap_or(true);
    }
    true
}

/// Page size for reading the reverse index.
const BACKLINK_PAGE: usize = 1024;

impl Registry {
    /// Runs a trace. `readable` decides which values of a record the caller may see (the
    /// server passes its permission check; `|_, v| v.permissions.public_read()` for anonymous),
    /// given the handle of the record and one of its values.
    pub fn trace(
        &self,
        q: &TraceQuery,
        readable: &dyn Fn(&str, &HandleValue) -> bool,
    ) -> Result<Trace, RegistryError> {
        let mut t = self.trace_unchecked(q, readable)?;
        self.finish_trace(q, &mut t)?;
        Ok(t)
    }

    /// A trace walked but not checked yet, for a surface that adds the records of other
    /// nodes first; [`Registry::finish_trace`] checks it.
    pub fn trace_unchecked(
        &self,
        q: &TraceQuery,
        readable: &dyn Fn(&str, &HandleValue) -> bool,
    ) -> Result<Trace, RegistryError> {
        self.walk(q, readable)
    }

    /// Runs the checks of a trace (unless the query turned them off) over every record it
    /// holds, this node's and the verified ones of others.
    pub fn finish_trace(&self, q: &TraceQuery, t: &mut Trace) -> Result<(), RegistryError> {
        if q.checks {
            self.check_trace(q, t)?;
        }
        t.readable = Vec::new();
        Ok(())
    }

    /// Runs the derivation check of every record of `t` that has a formula.
    fn check_trace(&self, q: &TraceQuery, t: &mut Trace) -> Result<(), RegistryError> {
        let mut templates: std::collections::HashMap<String, Option<Tolerance>> =
            std::collections::HashMap::new();
        for (values, _) in &t.readable {
            if let Some(name) = text_of(values, attr::TEMPLATE_REF) {
                if !templates.contains_key(name) && text_of(values, attr::FORMULA).is_some() {
                    let tol = self
                        .get(name)?
                        .and_then(|r| crate::check::template_tolerance(name, &r.values));
                    templates.insert(name.to_string(), tol);
                }
            }
        }
        let tolerance_of = |name: &str| templates.get(name).copied().flatten();
        let (checks, summary) = crate::check::Checker::new(q, t, &t.readable, &tolerance_of).run();
        for (n, c) in t.nodes.iter_mut().zip(checks) {
            n.check = c;
        }
        t.checks = Some(summary);
        Ok(())
    }

    fn walk(
        &self,
        q: &TraceQuery,
        readable: &dyn Fn(&str, &HandleValue) -> bool,
    ) -> Result<Trace, RegistryError> {
        let root_rec = self.get(&q.root)?.ok_or_else(|| {
            RegistryError::refused(
                suyuan_codec::message::rc::HANDLE_NOT_FOUND,
                format!("{}: handle not found", q.root),
            )
        })?;
        let mut out = Trace {
            root: root_rec.handle.clone(),
            direction: q.direction,
            depth: q.depth,
            nodes: Vec::new(),
            edges: Vec::new(),
            truncated: false,
            remote: Vec::new(),
            unreachable: None,
            dangling: Vec::new(),
            checks: None,
            readable: Vec::new(),
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut remote_seen: HashSet<String> = HashSet::new();
        let mut queue: VecDeque<(String, u32)> = VecDeque::new();
        seen.insert(key_of(&root_rec.handle));
        out.push(
            node(&root_rec.handle, &root_rec.values, readable).at(root_rec.seq),
            &root_rec.handle,
            &root_rec.values,
            readable,
        );
        queue.push_back((root_rec.handle.clone(), 0));
        let follows = |rel: &str| q.rels.is_empty() || q.rels.iter().any(|r| r == rel);

        while let Some((handle, depth)) = queue.pop_front() {
            if depth >= q.depth {
                continue;
            }
            match q.direction {
                Direction::Up => {
                    let Some(rec) = self.get(&handle)? else {
                        continue;
                    };
                    for l in rec.links.iter().filter(|l| follows(&l.rel)) {
                        self.visit(
                            q,
                            &mut out,
                            &mut seen,
                            &mut remote_seen,
                            &mut queue,
                            readable,
                            &rec.handle,
                            &l.target,
                            &l.rel,
                            &l.target,
                            depth,
                        )?;
                        if out.truncated {
                            return Ok(out);
                        }
                    }
                }
                Direction::Down => {
                    let mut cursor: Option<Vec<u8>> = None;
                    loop {
                        let (page, next) =
                            self.backlinks(&handle, cursor.as_deref(), BACKLINK_PAGE)?;
                        for (rel, src_key) in page.iter().filter(|(rel, _)| follows(rel)) {
                            // The edge keeps the link's direction: source record -> this one.
                            self.visit(
                                q,
                                &mut out,
                                &mut seen,
                                &mut remote_seen,
                                &mut queue,
                                readable,
                                src_key,
                                &handle,
                                rel,
                                src_key,
                                depth,
                            )?;
                            if out.truncated {
                                return Ok(out);
                            }
                        }
                        match next {
                            Some(c) => cursor = Some(c),
                            None => break,
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Handles one edge `from -> to` found while walking; `next` is the end being walked to.
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        q: &TraceQuery,
        out: &mut Trace,
        seen: &mut HashSet<String>,
        remote_seen: &mut HashSet<String>,
        queue: &mut VecDeque<(String, u32)>,
        readable: &dyn Fn(&str, &HandleValue) -> bool,
        from: &str,
        to: &str,
        rel: &str,
        next: &str,
        depth: u32,
    ) -> Result<(), RegistryError> {
        // A target with a scheme's marker (urn:oid:, a Digital Link) is that scheme's, read in
        // its normal form, never a handle.
        let scheme = self.schemes().recognise(next);
        let parsed = scheme.is_none().then(|| Handle::parse(next).ok()).flatten();
        let homed = match &parsed {
            Some(h) => self.is_homed(h.prefix())?,
            None => false,
        };
        if !homed {
            // Not a handle here: an alias (OID, Ecode, GS1) may still name a local record.
            let alias_key = match &scheme {
                Some(Ok((_, normal))) => normal.clone(),
                _ => next.to_string(),
            };
            if let Some(local) = parsed
                .is_none()
                .then(|| self.alias(&alias_key))
                .transpose()?
                .flatten()
            {
                return self.visit(
                    q,
                    out,
                    seen,
                    remote_seen,
                    queue,
                    readable,
                    from,
                    &local,
                    rel,
                    &local,
                    depth,
                );
            }
            if let Some(h) = parsed {
                let link = TraceEdge {
                    from: from.to_string(),
                    to: to.to_string(),
                    rel: rel.to_string(),
                };
                if remote_seen.insert(key_of(next)) {
                    out.remote.push(RemoteHop {
                        handle: next.to_string(),
                        prefix: h.prefix().to_string(),
                        depth: depth + 1,
                        links: vec![link],
                    });
                } else if let Some(r) = out.remote.iter_mut().find(|r| r.handle == next) {
                    r.links.push(link);
                }
            }
            return Ok(());
        }
        let Some(rec) = self.get(next)? else {
            let tombstone = self.tombstone(next)?.map(|t: Tombstone| DanglingTombstone {
                seq: t.seq,
                time: t.time,
                actor: t.actor,
            });
            out.dangling.push(Dangling {
                from: from.to_string(),
                to: to.to_string(),
                rel: rel.to_string(),
                tombstone,
            });
            return Ok(());
        };
        if !in_window(&rec.values, q.window.as_ref()) {
            return Ok(());
        }
        let (from, to) = match q.direction {
            Direction::Up => (from.to_string(), rec.handle.clone()),
            Direction::Down => (rec.handle.clone(), to.to_string()),
        };
        if seen.insert(key_of(&rec.handle)) {
            if out.nodes.len() >= q.limit {
                out.truncated = true;
                return Ok(());
            }
            out.push(
                node(&rec.handle, &rec.values, readable).at(rec.seq),
                &rec.handle,
                &rec.values,
                readable,
            );
            queue.push_back((rec.handle.clone(), depth + 1));
        }
        out.edges.push(TraceEdge {
            from,
            to,
            rel: rel.to_string(),
        });
        Ok(())
    }
}

fn node(
    handle: &str,
    values: &[HandleValue],
    readable: &dyn Fn(&str, &HandleValue) -> bool,
) -> TraceNode {
    TraceNode {
        handle: handle.to_string(),
        kind: text_of(values, attr::KIND).map(str::to_string),
        values: values
            .iter()
            .filter(|v| readable(handle, v))
            .map(suyuan_codec::json::value_to_json)
            .collect(),
        identifiers: values
            .iter()
            .filter(|v| readable(handle, v))
            .filter_map(|v| {
                Some(Identifier {
                    scheme: v.value_type.strip_prefix("id.")?.to_string(),
                    id: crate::links::alias_of(v)?,
                })
            })
            .collect(),
        served_by: None,
        seq: None,
        proof: None,
        check: None,
    }
}

impl Trace {
    /// Adds a local record's node, keeping the values the caller may read for the checks.
    fn push(
        &mut self,
        n: TraceNode,
        handle: &str,
        values: &[HandleValue],
        readable: &dyn Fn(&str, &HandleValue) -> bool,
    ) {
        let shown: Vec<HandleValue> = values
            .iter()
            .filter(|v| readable(handle, v))
            .cloned()
            .collect();
        let hidden = (shown.len() < values.len())
            .then(|| "some of its values are not readable by the caller".to_string());
        self.nodes.push(n);
        self.readable.push((shown, hidden));
    }

    /// Adds a record another node answered: with its values when its proof verified against
    /// a log this node trusts (the checks may use them), else with why not (a check that
    /// needs it is grey).
    pub fn push_remote(&mut self, n: TraceNode, verified: Result<Vec<HandleValue>, String>) {
        self.nodes.push(n);
        self.readable.push(match verified {
            Ok(values) => (values, None),
            Err(why) => (Vec::new(), Some(why)),
        });
    }
}

impl TraceNode {
    fn at(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// A record's node from public values only (a remote record, answered to anyone).
    pub fn public(handle: &str, values: &[HandleValue]) -> Self {
        node(handle, values, &|_, v| v.permissions.public_read())
    }
}
