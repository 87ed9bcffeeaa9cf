//! The derivation check (数据比对, 红绿码): a record's `mrv.formula`, in the language of
//! [`suyuan_codec::formula`] (docs/formulas.md), is checked when written (it parses, its units
//! agree with the record's `mrv.unit`) and recomputed on every trace from the values of the
//! record's traced inputs: green when the stored `mrv.value` matches within the tolerance, red
//! with the stored and computed figures, grey when it cannot be computed from what the caller
//! may see here.

use std::collections::HashMap;

use serde::Serialize;
use suyuan_codec::formula::{EvalError, Formula, Source, Step, Tolerance};
use suyuan_codec::handle::key_of;
use suyuan_codec::message::rc;
use suyuan_codec::value::HandleValue;

use crate::error::RegistryError;
use crate::links::{attr, text_of};
use crate::template::Template;
use crate::trace::{Direction, Trace, TraceQuery};

/// The evaluation steps one trace's checks may take in all.
const TRACE_BUDGET: usize = 20_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Green,
    Red,
    Grey,
}

/// One record's check, as a trace node carries it (`"check"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub status: Status,
    /// The figure the record states (`mrv.value`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
    /// The figure its formula gives from its inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub computed: Option<f64>,
    /// The inputs the formula read.
    pub inputs: Vec<String>,
    /// Why it is grey, or how far red is off and what tolerance held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The counts a trace answer carries at its top (`"checks"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub green: usize,
    pub red: usize,
    pub grey: usize,
}

fn refused(message: String) -> RegistryError {
    RegistryError::refused(rc::INVALID_VALUE, message)
}

/// The write-time rules: a record's formula parses and computes its `mrv.unit`, its
/// `mrv.tolerance` parses. Checked when the record is created and whenever its formula or unit
/// changes, so a record written before a rule existed can still be edited otherwise.
pub(crate) fn validate(
    handle: &str,
    old: Option<&[HandleValue]>,
    values: &[HandleValue],
) -> Result<(), RegistryError> {
    let of = |t: &'static str| values.iter().filter(move |v| v.value_type == t);
    if of(attr::FORMULA).count() > 1 {
        return Err(refused(format!("{handle}: more than one mrv.formula")));
    }
    if let Some(v) = of(attr::TOLERANCE).next() {
        Tolerance::parse(&String::from_utf8_lossy(&v.data))
            .map_err(|e| refused(format!("{handle}: mrv.tolerance (index {}): {e}", v.index)))?;
    }
    let Some(fv) = of(attr::FORMULA).next() else {
        return Ok(());
    };
    let unit = text_of(values, attr::UNIT);
    let text = String::from_utf8_lossy(&fv.data);
    if let Some(old) = old {
        if text_of(old, attr::FORMULA) == Some(&*text) && text_of(old, attr::UNIT) == unit {
            return Ok(());
        }
    }
    let formula = Formula::parse(&text)
        .map_err(|e| refused(format!("{handle}: mrv.formula (index {}), {e}", fv.index)))?;
    if let Some(u) = unit {
        formula
            .check_unit(u)
            .map_err(|e| refused(format!("{handle}: mrv.formula (index {}), {e}", fv.index)))?;
    }
    Ok(())
}

/// What a check needs of one trace node.
struct NodeFacts<'a> {
    handle: &'a str,
    kind: Option<&'a str>,
    values: &'a [HandleValue],
    /// Why some of the record's values cannot be used (the caller may not read them, or a
    /// remote record did not verify): one may be a link or the figure.
    hidden: Option<&'a str>,
}

/// The derivation checks of a trace's local nodes; `tolerance_of` answers a template's
/// tolerance by its handle.
pub(crate) struct Checker<'a> {
    trace: &'a Trace,
    nodes: HashMap<String, NodeFacts<'a>>,
    /// (from, rel) → the records the trace reached by that link.
    reached: HashMap<(String, &'a str), Vec<&'a str>>,
    tolerance_of: &'a dyn Fn(&str) -> Option<Tolerance>,
    done: HashMap<String, Check>,
    budget: usize,
    /// Why a linked input may be missing from this trace, as its query explains it.
    untraced: &'static str,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(
        q: &TraceQuery,
        trace: &'a Trace,
        readable: &'a [(Vec<HandleValue>, Option<String>)],
        tolerance_of: &'a dyn Fn(&str) -> Option<Tolerance>,
    ) -> Self {
        let untraced = if q.direction == Direction::Down {
            "a trace down reaches a figure from one of its inputs"
        } else if q.window.is_some() {
            "outside the window, or past the depth"
        } else if !q.rels.is_empty() {
            "a relation the trace does not follow, or past the depth"
        } else {
            "past the depth or the limit"
        };
        let nodes = trace
            .nodes
            .iter()
            .zip(readable)
            .map(|(n, (values, hidden))| {
                (
                    key_of(&n.handle),
                    NodeFacts {
                        handle: &n.handle,
                        kind: n.kind.as_deref(),
                        values,
                        hidden: hidden.as_deref(),
                    },
                )
            })
            .collect();
        let mut reached: HashMap<(String, &str), Vec<&str>> = HashMap::new();
        for e in &trace.edges {
            reached
                .entry((key_of(&e.from), e.rel.as_str()))
                .or_default()
                .push(e.to.as_str());
        }
        Checker {
            trace,
            nodes,
            reached,
            tolerance_of,
            done: HashMap::new(),
            budget: TRACE_BUDGET,
            untraced,
        }
    }

    /// The check of every node with a formula, in the trace's order (none for the others).
    /// Inputs are checked before the records that read them (a depth-first order over the
    /// trace's links), so an input with a formula of its own gives what its formula computes.
    pub(crate) fn run(mut self) -> (Vec<Option<Check>>, Summary) {
        for key in self.inputs_first() {
            let Some(facts) = self.nodes.get(&key) else {
                continue;
            };
            let Some(formula) = text_of(facts.values, attr::FORMULA).map(str::to_string) else {
                continue;
            };
            let handle = facts.handle.to_string();
            let c = self.compute(&handle, &key, &formula);
            self.done.insert(key, c);
        }
        let mut summary = Summary::default();
        let out = self
            .trace
            .nodes
            .iter()
            .map(|n| {
                let c = self.done.get(&key_of(&n.handle)).cloned();
                if let Some(c) = &c {
                    match c.status {
                        Status::Green => summary.green += 1,
                        Status::Red => summary.red += 1,
                        Status::Grey => summary.grey += 1,
                    }
                }
                c
            })
            .collect();
        (out, summary)
    }

    /// The trace's nodes, each after every node its links reach (post-order, iterative: a
    /// trace may be deep); in a cycle, one is first.
    fn inputs_first(&self) -> Vec<String> {
        let mut next: HashMap<String, Vec<String>> = HashMap::new();
        for ((from, _), tos) in &self.reached {
            next.entry(from.clone())
                .or_default()
                .extend(tos.iter().map(|t| key_of(t)));
        }
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut seen = std::collections::HashSet::new();
        for n in &self.trace.nodes {
            let start = key_of(&n.handle);
            if !seen.insert(start.clone()) {
                continue;
            }
            let mut stack = vec![(start, 0usize)];
            while let Some((k, i)) = stack.pop() {
                let child = next.get(&k).and_then(|c| c.get(i)).cloned();
                match child {
                    Some(c) => {
                        stack.push((k, i + 1));
                        if seen.insert(c.clone()) {
                            stack.push((c, 0));
                        }
                    }
                    None => order.push(k),
                }
            }
        }
        order
    }

    fn compute(&mut self, handle: &str, key: &str, text: &str) -> Check {
        let grey = |reason: String, inputs: Vec<String>| Check {
            status: Status::Grey,
            expected: None,
            computed: None,
            inputs,
            reason: Some(reason),
        };
        let Some(facts) = self.nodes.get(key) else {
            return grey("not in the trace".into(), Vec::new());
        };
        if let Some(why) = facts.hidden {
            return grey(why.to_string(), Vec::new());
        }
        let stored_text = text_of(facts.values, attr::VALUE).map(str::to_string);
        let template = text_of(facts.values, attr::TEMPLATE_REF).map(str::to_string);
        let own_tolerance = text_of(facts.values, attr::TOLERANCE).map(str::to_string);
        let formula = match Formula::parse(text) {
            Ok(f) => f,
            Err(e) => return grey(format!("its formula does not parse: {e}"), Vec::new()),
        };
        let mut budget = self.budget;
        let r = formula.eval_within(handle, &*self, &mut budget);
        self.budget = budget;
        let computed = match r {
            Ok(c) => c,
            Err(EvalError(reason)) => return grey(reason, Vec::new()),
        };
        let Some(stored_text) = stored_text else {
            return grey("it states no mrv.value".into(), computed.inputs);
        };
        let Some(stored) = stored_text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite())
        else {
            return grey(
                format!("its mrv.value {stored_text:?} is not a finite number"),
                computed.inputs,
            );
        };
        let tolerance = own_tolerance
            .and_then(|t| Tolerance::parse(&t).ok())
            .or_else(|| template.as_deref().and_then(self.tolerance_of))
            .unwrap_or_else(|| Tolerance::of_written(&stored_text));
        let green = tolerance.matches(stored, computed.value);
        Check {
            status: if green { Status::Green } else { Status::Red },
            expected: Some(stored),
            computed: Some(computed.value),
            inputs: computed.inputs,
            reason: (!green).then(|| {
                format!(
                    "off by {} (tolerance {})",
                    computed.value - stored,
                    match tolerance {
                        Tolerance::Absolute(a) => format!("{a}"),
                        Tolerance::Relative(r) => format!("{}%", r * 100.0),
                    }
                )
            }),
        }
    }

    /// Why input `h` reached from `from` cannot be read here, if it was not traced.
    fn absent(&self, from: &str, rel: &str) -> EvalError {
        let from_key = key_of(from);
        if let Some(r) = self.trace.remote.iter().find(|r| {
            r.links
                .iter()
                .any(|l| key_of(&l.from) == from_key && l.rel == rel)
        }) {
            return EvalError(format!(
                "input {} is on another node (prefix {}), not verified here",
                r.handle, r.prefix
            ));
        }
        if let Some(d) = self
            .trace
            .dangling
            .iter()
            .find(|d| key_of(&d.from) == from_key && d.rel == rel)
        {
            return EvalError(format!("input {} is missing", d.to));
        }
        EvalError(format!(
            "an input by {rel} of {from} is not in this trace ({})",
            self.untraced
        ))
    }
}

impl Source for Checker<'_> {
    fn follow(&self, from: &str, step: &Step) -> Result<Vec<String>, EvalError> {
        let key = key_of(from);
        let facts = self
            .nodes
            .get(&key)
            .ok_or_else(|| EvalError(format!("{from} is not in the trace")))?;
        if let Some(why) = facts.hidden {
            return Err(EvalError(format!("{from}: {why}")));
        }
        // The distinct records the relation links to (a record linked twice is one input).
        let mut targets: Vec<&[u8]> = Vec::new();
        for v in facts.values.iter().filter(|v| v.value_type == step.rel) {
            if !targets.contains(&v.data.as_slice()) {
                targets.push(&v.data);
            }
        }
        let links = targets.len();
        let reached: &[&str] = self
            .reached
            .get(&(key, step.rel.as_str()))
            .map_or(&[], Vec::as_slice);
        // Every link of the relation must have been walked, or an input is unaccounted for.
        let mut distinct: Vec<&str> = Vec::new();
        for r in reached {
            if !distinct.contains(r) {
                distinct.push(r);
            }
        }
        if distinct.len() < links {
            return Err(self.absent(from, &step.rel));
        }
        let mut out = Vec::new();
        for t in distinct {
            let Some(n) = self.nodes.get(&key_of(t)) else {
                return Err(self.absent(from, &step.rel));
            };
            if step.kind.as_deref().is_none_or(|k| n.kind == Some(k)) {
                out.push(t.to_string());
            }
        }
        Ok(out)
    }

    fn number(&self, handle: &str, value_type: &str) -> Result<(f64, Option<String>), EvalError> {
        let facts = self
            .nodes
            .get(&key_of(handle))
            .ok_or_else(|| EvalError(format!("{handle} is not in the trace")))?;
        if let Some(why) = facts.hidden {
            return Err(EvalError(format!("{handle}: {why}")));
        }
        let unit = text_of(facts.values, attr::UNIT).map(str::to_string);
        if value_type == attr::VALUE && text_of(facts.values, attr::FORMULA).is_some() {
            // An input with a formula of its own gives what its own check computed (inputs are
            // checked first; only an input in a cycle is not).
            return match self.done.get(&key_of(handle)) {
                Some(c) if c.computed.is_some() => Ok((c.computed.unwrap_or_default(), unit)),
                Some(c) => Err(EvalError(format!(
                    "input {handle} could not be checked: {}",
                    c.reason.as_deref().unwrap_or("grey")
                ))),
                None => Err(EvalError(format!(
                    "input {handle} is in a cycle of formulas"
                ))),
            };
        }
        let text = text_of(facts.values, value_type)
            .ok_or_else(|| EvalError(format!("input {handle} has no {value_type}")))?;
        let n = text.trim().parse::<f64>().map_err(|_| {
            EvalError(format!(
                "input {handle}: {value_type} {text:?} is not a number"
            ))
        })?;
        Ok((n, unit))
    }
}

/// A template's tolerance (`"tolerance"` in its JSON), read from its record.
pub(crate) fn template_tolerance(name: &str, values: &[HandleValue]) -> Option<Tolerance> {
    Template::from_values(name, values)
        .ok()?
        .tolerance
        .and_then(|t| Tolerance::parse(&t).ok())
}
