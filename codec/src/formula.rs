//! The derivation check's formula language: the text of an `mrv.formula` value, parsed,
//! checked for units and evaluated over a record's linked inputs. docs/formulas.md is the
//! reference; in short:
//!
//! ```text
//! E_fuel = sum(prov.wasDerivedFrom:reading [t])
//!        * as(one(prov.wasDerivedFrom:lab-report [%]), [1])
//!        * one(mrv.usesFactor:factor [1]) * (44/12) [tCO2/t]
//! ```
//!
//! Sans-IO like the rest of the codec: evaluation asks a [`Source`] for the inputs and their
//! numbers, so the same code checks a trace, a test's table or a fuzzer's input. Everything is
//! bounded: the text's length, the number of syntax nodes, the nesting, the path length, and
//! an evaluation budget, so no formula loops or blows up.

use std::collections::BTreeMap;
use std::fmt;

/// The longest formula accepted, in bytes.
pub const MAX_FORMULA_LEN: usize = 2048;
/// The most syntax nodes a formula may have.
const MAX_NODES: usize = 256;
/// The deepest nesting of parentheses and calls.
const MAX_DEPTH: usize = 32;
/// The most steps a selector's path may take.
const MAX_PATH: usize = 4;
/// The most symbols a unit may name.
const MAX_UNIT_SYMBOLS: usize = 8;
/// The largest exponent a unit may carry.
const MAX_EXPONENT: i32 = 8;
/// How many syntax nodes one evaluation may visit, inputs counted.
pub const EVAL_BUDGET: usize = 1_000_000;

/// Why a formula or a unit was refused: where (a 1-based character column) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormulaError {
    #[error("column {column}: {message}")]
    Syntax { column: usize, message: String },
    #[error("column {column}: {message}")]
    Units { column: usize, message: String },
    #[error("the formula is {0} bytes, at most {MAX_FORMULA_LEN}")]
    TooLong(usize),
}

/// Why a formula could not be evaluated (the check is grey, with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// A unit: named symbols with integer exponents; none is the dimensionless `1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unit(BTreeMap<String, i32>);

/// Symbols `as(…)` converts between: each to a base symbol (empty: dimensionless) and the
/// factor that takes it there. Other symbols are their own base and convert to nothing else.
const CONVERSIONS: &[(&str, &str, f64)] = &[
    ("%", "", 0.01),
    ("‰", "", 0.001),
    ("ppm", "", 1e-6),
    ("g", "t", 1e-6),
    ("kg", "t", 1e-3),
    ("t", "t", 1.0),
    ("kt", "t", 1e3),
    ("kgCO2", "tCO2", 1e-3),
    ("tCO2", "tCO2", 1.0),
    ("ktCO2", "tCO2", 1e3),
    ("kWh", "MWh", 1e-3),
    ("MWh", "MWh", 1.0),
    ("GWh", "MWh", 1e3),
    ("MJ", "MWh", 1.0 / 3600.0),
    ("GJ", "MWh", 1.0 / 3.6),
    ("TJ", "MWh", 1e6 / 3600.0),
];

impl Unit {
    pub fn one() -> Self {
        Unit::default()
    }

    /// Parses a unit: `1`, or symbols joined by `*` and `/`, each with an optional `^n`
    /// (`tCO2/MWh`, `t`, `%`, `kg*m^2/s^2`). `/` applies to the symbol after it only.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "1" {
            return Ok(Unit::one());
        }
        if t.is_empty() {
            return Err("an empty unit (write 1 for none)".into());
        }
        let mut u = Unit::one();
        let mut sign = 1;
        let mut rest = t;
        loop {
            let end = rest
                .find(|c: char| c == '*' || c == '/' || c == '^' || c.is_whitespace())
                .unwrap_or(rest.len());
            let sym = &rest[..end];
            if sym.is_empty() {
                return Err(format!("unit {t:?}: a symbol is missing"));
            }
            if sym == "1" && sign == -1 {
                return Err(format!("unit {t:?}: 1 divides nothing"));
            }
            // `1` stands for no symbol (`1/t`), anywhere but after `/`.
            if sym != "1"
                && (!sym
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_%‰".contains(c))
                    || sym.starts_with(|c: char| c.is_ascii_digit()))
            {
                return Err(format!("unit {t:?}: {sym:?} is not a symbol"));
            }
            rest = rest[end..].trim_start();
            let mut exp = 1;
            if let Some(r) = rest.strip_prefix('^') {
                let r = r.trim_start();
                let n_end = r
                    .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                    .unwrap_or(r.len());
                exp = r[..n_end]
                    .parse::<i32>()
                    .ok()
                    .filter(|e| *e != 0 && e.abs() <= MAX_EXPONENT)
                    .ok_or_else(|| format!("unit {t:?}: a bad exponent"))?;
                rest = r[n_end..].trim_start();
            }
            if sym != "1" {
                u.add(sym, sign * exp)?;
            }
            match rest.chars().next() {
                None => break,
                Some('*') => sign = 1,
                Some('/') => sign = -1,
                Some(c) => return Err(format!("unit {t:?}: {c:?} where * or / belongs")),
            }
            rest = rest[1..].trim_start();
        }
        Ok(u)
    }

    fn add(&mut self, sym: &str, exp: i32) -> Result<(), String> {
        let e = self.0.entry(sym.to_string()).or_insert(0);
        *e += exp;
        if e.abs() > MAX_EXPONENT {
            return Err(format!(
                "unit: the exponent of {sym} is over {MAX_EXPONENT}"
            ));
        }
        if *e == 0 {
            self.0.remove(sym);
        }
        if self.0.len() > MAX_UNIT_SYMBOLS {
            return Err(format!("unit: more than {MAX_UNIT_SYMBOLS} symbols"));
        }
        Ok(())
    }

    fn combine(&self, other: &Unit, sign: i32) -> Result<Unit, String> {
        let mut u = self.clone();
        for (s, e) in &other.0 {
            u.add(s, sign * e)?;
        }
        Ok(u)
    }

    fn pow(&self, n: i32) -> Result<Unit, String> {
        let mut u = Unit::one();
        for (s, e) in &self.0 {
            u.add(s, e * n)?;
        }
        Ok(u)
    }

    /// The unit in base symbols and the factor that takes a number there.
    fn base(&self) -> (Unit, f64) {
        let mut u = Unit::one();
        let mut f = 1.0;
        for (s, e) in &self.0 {
            let (b, k) = CONVERSIONS
                .iter()
                .find(|(sym, _, _)| sym == s)
                .map_or((s.as_str(), 1.0), |(_, b, k)| (*b, *k));
            f *= k.powi(*e);
            if !b.is_empty() {
                // Exponents stay within bounds: a base has no more than its symbols'.
                let _ = u.add(b, *e);
            }
        }
        (u, f)
    }

    /// The factor that converts a number in `self` to `to`, if they measure the same thing.
    pub fn factor_to(&self, to: &Unit) -> Option<f64> {
        let (a, fa) = self.base();
        let (b, fb) = to.base();
        (a == b).then_some(fa / fb)
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let up: Vec<_> = self.0.iter().filter(|(_, e)| **e > 0).collect();
        let down: Vec<_> = self.0.iter().filter(|(_, e)| **e < 0).collect();
        let sym = |s: &str, e: i32| {
            if e == 1 {
                s.to_string()
            } else {
                format!("{s}^{e}")
            }
        };
        let mut out = if up.is_empty() {
            "1".to_string()
        } else {
            up.iter()
                .map(|(s, e)| sym(s, **e))
                .collect::<Vec<_>>()
                .join("*")
        };
        for (s, e) in down {
            out.push('/');
            out.push_str(&sym(s, -e));
        }
        f.write_str(&out)
    }
}

/// One step of a selector: the relation followed from the record and, if given, the kind
/// the input must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub rel: String,
    pub kind: Option<String>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Some(k) => write!(f, "{}:{k}", self.rel),
            None => f.write_str(&self.rel),
        }
    }
}

/// The inputs a selector names: reached by its path, their `mrv.value` in `unit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub path: Vec<Step>,
    pub unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Mean,
    Min,
    Max,
    Count,
    /// Exactly one input.
    One,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Number(f64, Unit),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>, usize),
    Pow(Box<Expr>, i32, usize),
    /// A quantity annotated with a unit: a dimensionless expression times one of it.
    WithUnit(Box<Expr>, Unit, usize),
    As(Box<Expr>, Unit, usize),
    Aggregate {
        agg: Aggregate,
        sel: Selector,
        each: Option<Box<Expr>>,
        column: usize,
    },
    /// Inside an aggregate's expression: the input's `mrv.value`.
    Value,
    /// Inside an aggregate's expression: another numeric value of the input, in `unit`.
    Attr(String, Unit),
}

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    /// The name before `=`, if the formula gives one (`E_fuel = …`).
    pub name: Option<String>,
    expr: Expr,
    unit: Unit,
}

/// What evaluation reads: the inputs a step reaches from a record, and their numbers.
pub trait Source {
    /// The records `step` reaches from `from`, or why that cannot be known (an input is
    /// missing, remote, outside the window or unreadable: the check is grey).
    fn follow(&self, from: &str, step: &Step) -> Result<Vec<String>, EvalError>;
    /// The number an input's value of `value_type` holds (for `mrv.value` of an input that
    /// has a formula of its own, the value its check computed), and its unit as written
    /// (`mrv.unit`) for `mrv.value`.
    fn number(&self, handle: &str, value_type: &str) -> Result<(f64, Option<String>), EvalError>;
}

/// The value a formula computed and the inputs it read, in the order first read.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub value: f64,
    pub inputs: Vec<String>,
}

struct Parser<'a> {
    chars: Vec<(usize, char)>,
    at: usize,
    nodes: usize,
    depth: usize,
    /// Whether `value` and `attr(…)` may appear (inside an aggregate's expression).
    in_each: bool,
    _text: &'a str,
}

fn syntax(column: usize, message: impl Into<String>) -> FormulaError {
    FormulaError::Syntax {
        column,
        message: message.into(),
    }
}

fn units(column: usize, message: impl Into<String>) -> FormulaError {
    FormulaError::Units {
        column,
        message: message.into(),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.' || c == '-'
}

impl Parser<'_> {
    /// The column of the next character that is not white space.
    fn column(&mut self) -> usize {
        self.skip_ws();
        self.at + 1
    }

    fn skip_ws(&mut self) {
        while self.at < self.chars.len() && self.chars[self.at].1.is_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.get(self.at).map(|c| c.1)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), FormulaError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(syntax(
                self.column(),
                match self.peek() {
                    Some(f) => format!("expected {c:?}, found {f:?}"),
                    None => format!("expected {c:?}, found the end"),
                },
            ))
        }
    }

    fn node(&mut self) -> Result<(), FormulaError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(syntax(
                self.column(),
                format!("the formula has more than {MAX_NODES} parts"),
            ));
        }
        Ok(())
    }

    fn name(&mut self) -> String {
        self.skip_ws();
        let start = self.at;
        while self.at < self.chars.len() && is_name_char(self.chars[self.at].1) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().map(|c| c.1).collect()
    }

    fn enter(&mut self) -> Result<(), FormulaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(syntax(
                self.column(),
                format!("nested more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, FormulaError> {
        self.enter()?;
        let mut left = self.term()?;
        loop {
            let column = self.column();
            let op = if self.eat('+') {
                Op::Add
            } else if self.eat('-') {
                Op::Sub
            } else {
                break;
            };
            self.node()?;
            let right = self.term()?;
            left = Expr::Bin(op, Box::new(left), Box::new(right), column);
        }
        self.depth -= 1;
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, FormulaError> {
        let mut left = self.unary()?;
        loop {
            let column = self.column();
            let op = if self.eat('*') || self.eat('×') || self.eat('·') {
                Op::Mul
            } else if self.eat('/') {
                Op::Div
            } else {
                break;
            };
            self.node()?;
            let right = self.unary()?;
            left = Expr::Bin(op, Box::new(left), Box::new(right), column);
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FormulaError> {
        if self.eat('-') {
            self.node()?;
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(e)));
        }
        let base = self.postfix()?;
        let column = self.column();
        if self.eat('^') {
            self.node()?;
            self.skip_ws();
            let start = self.at;
            if self.chars.get(self.at).map(|c| c.1) == Some('-') {
                self.at += 1;
            }
            while self.at < self.chars.len() && self.chars[self.at].1.is_ascii_digit() {
                self.at += 1;
            }
            let text: String = self.chars[start..self.at].iter().map(|c| c.1).collect();
            let n = text
                .parse::<i32>()
                .ok()
                .filter(|n| n.abs() <= MAX_EXPONENT)
                .ok_or_else(|| {
                    syntax(
                        start + 1,
                        format!(
                            "an exponent is a whole number from -{MAX_EXPONENT} to {MAX_EXPONENT}"
                        ),
                    )
                })?;
            return Ok(Expr::Pow(Box::new(base), n, column));
        }
        Ok(base)
    }

    /// An atom, then a unit annotation if one follows.
    fn postfix(&mut self) -> Result<Expr, FormulaError> {
        let e = self.atom()?;
        if self.peek() == Some('[') {
            let column = self.column();
            let u = self.unit()?;
            self.node()?;
            return Ok(Expr::WithUnit(Box::new(e), u, column));
        }
        Ok(e)
    }

    fn unit(&mut self) -> Result<Unit, FormulaError> {
        let column = self.column();
        self.expect('[')?;
        let start = self.at;
        while self.at < self.chars.len() && self.chars[self.at].1 != ']' {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().map(|c| c.1).collect();
        self.expect(']')?;
        Unit::parse(&text).map_err(|e| syntax(column, e))
    }

    fn number(&mut self) -> Result<Expr, FormulaError> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let s = p.at;
            while p.at < p.chars.len() && p.chars[p.at].1.is_ascii_digit() {
                p.at += 1;
            }
            p.at > s
        };
        digits(self);
        if self.chars.get(self.at).map(|c| c.1) == Some('.') {
            self.at += 1;
            if !digits(self) {
                return Err(syntax(
                    self.column(),
                    "a digit must follow the decimal point",
                ));
            }
        }
        if matches!(self.chars.get(self.at).map(|c| c.1), Some('e' | 'E')) {
            self.at += 1;
            if matches!(self.chars.get(self.at).map(|c| c.1), Some('+' | '-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(syntax(self.column(), "an exponent must follow e"));
            }
        }
        let text: String = self.chars[start..self.at].iter().map(|c| c.1).collect();
        let n: f64 = text
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| syntax(start + 1, format!("{text:?} is not a number")))?;
        Ok(Expr::Number(n, Unit::one()))
    }

    fn atom(&mut self) -> Result<Expr, FormulaError> {
        self.node()?;
        let column = self.column();
        match self.peek() {
            Some('(') => {
                self.at += 1;
                let e = self.expr()?;
                self.expect(')')?;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let name = self.name();
                self.call(&name, column)
            }
            Some(c) => Err(syntax(column, format!("{c:?} cannot start a term"))),
            None => Err(syntax(column, "the formula ends where a term belongs")),
        }
    }

    fn call(&mut self, name: &str, column: usize) -> Result<Expr, FormulaError> {
        let agg = match name {
            "sum" => Some(Aggregate::Sum),
            "mean" => Some(Aggregate::Mean),
            "min" => Some(Aggregate::Min),
            "max" => Some(Aggregate::Max),
            "count" => Some(Aggregate::Count),
            "one" => Some(Aggregate::One),
            _ => None,
        };
        if let Some(agg) = agg {
            if self.in_each {
                return Err(syntax(
                    column,
                    format!("{name}(…) inside an input's expression"),
                ));
            }
            self.expect('(')?;
            self.enter()?;
            let sel = self.selector()?;
            let each = if self.eat(',') {
                self.in_each = true;
                let e = self.expr();
                self.in_each = false;
                Some(Box::new(e?))
            } else {
                None
            };
            self.expect(')')?;
            self.depth -= 1;
            return Ok(Expr::Aggregate {
                agg,
                sel,
                each,
                column,
            });
        }
        match name {
            "as" => {
                self.expect('(')?;
                self.enter()?;
                let e = self.expr()?;
                self.expect(',')?;
                let u = self.unit()?;
                self.expect(')')?;
                self.depth -= 1;
                Ok(Expr::As(Box::new(e), u, column))
            }
            "value" if self.in_each => Ok(Expr::Value),
            "attr" if self.in_each => {
                self.expect('(')?;
                let t = self.name();
                if t.is_empty() {
                    return Err(syntax(self.column(), "attr(…) names a value type"));
                }
                let u = if self.peek() == Some('[') {
                    self.unit()?
                } else {
                    Unit::one()
                };
                self.expect(')')?;
                Ok(Expr::Attr(t, u))
            }
            "value" | "attr" => Err(syntax(
                column,
                format!("{name} is an input's, used inside sum(…, expression) and the like"),
            )),
            _ => Err(syntax(
                column,
                format!(
                    "unknown name {name:?} (functions: sum, mean, min, max, count, one, as; inside them: value, attr)"
                ),
            )),
        }
    }

    /// `rel[:kind]/…  [unit]`
    fn selector(&mut self) -> Result<Selector, FormulaError> {
        let mut path = Vec::new();
        loop {
            let column = self.column();
            let rel = self.name();
            if rel.is_empty() {
                return Err(syntax(
                    column,
                    "a relation (such as prov.wasDerivedFrom) belongs here",
                ));
            }
            let kind = if self.eat(':') {
                let k = self.name();
                if k.is_empty() {
                    return Err(syntax(self.column(), "a kind belongs after ':'"));
                }
                Some(k)
            } else {
                None
            };
            path.push(Step { rel, kind });
            if path.len() > MAX_PATH {
                return Err(syntax(
                    column,
                    format!("a path of more than {MAX_PATH} steps"),
                ));
            }
            if !self.eat('/') {
                break;
            }
        }
        let unit = if self.peek() == Some('[') {
            self.unit()?
        } else {
            Unit::one()
        };
        Ok(Selector { path, unit })
    }
}

impl Formula {
    /// Parses a formula: `[NAME =] expression`, and works out the unit it computes.
    pub fn parse(text: &str) -> Result<Formula, FormulaError> {
        if text.len() > MAX_FORMULA_LEN {
            return Err(FormulaError::TooLong(text.len()));
        }
        let mut p = Parser {
            chars: text.char_indices().collect(),
            at: 0,
            nodes: 0,
            depth: 0,
            in_each: false,
            _text: text,
        };
        // A leading `NAME =` names the figure.
        let save = p.at;
        let first = p.name();
        let name = if !first.is_empty() && p.eat('=') {
            Some(first)
        } else {
            p.at = save;
            None
        };
        let expr = p.expr()?;
        if let Some(c) = p.peek() {
            return Err(syntax(
                p.column(),
                format!("{c:?} where the formula should end"),
            ));
        }
        let unit = unit_of(&expr, None)?;
        Ok(Formula { name, expr, unit })
    }

    /// The unit the formula computes.
    pub fn unit(&self) -> &Unit {
        &self.unit
    }

    /// Checks that the formula computes `stored` (a record's `mrv.unit`), exactly.
    pub fn check_unit(&self, stored: &str) -> Result<(), FormulaError> {
        let u = Unit::parse(stored).map_err(|e| units(1, format!("mrv.unit: {e}")))?;
        if u != self.unit {
            return Err(units(
                1,
                format!(
                    "the formula computes {} and the record's mrv.unit is {u}",
                    self.unit
                ),
            ));
        }
        Ok(())
    }

    /// Evaluates the formula for record `handle`, reading its inputs from `source`.
    pub fn eval(&self, handle: &str, source: &dyn Source) -> Result<Computed, EvalError> {
        self.eval_within(handle, source, &mut EVAL_BUDGET.clone())
    }

    /// The same within a budget of evaluation steps shared with other evaluations (what is
    /// left stays in `budget`); at most [`EVAL_BUDGET`] for this one.
    pub fn eval_within(
        &self,
        handle: &str,
        source: &dyn Source,
        budget: &mut usize,
    ) -> Result<Computed, EvalError> {
        let mine = (*budget).min(EVAL_BUDGET);
        let mut e = Eval {
            source,
            inputs: Vec::new(),
            budget: mine,
        };
        let r = e.eval(&self.expr, handle, None);
        *budget -= mine - e.budget;
        let value = r?;
        if !value.is_finite() {
            return Err(EvalError("the result is not a finite number".into()));
        }
        Ok(Computed {
            value,
            inputs: e.inputs,
        })
    }
}

/// The unit `e` computes; `each` is the unit of `value` inside an aggregate's expression.
fn unit_of(e: &Expr, each: Option<&Unit>) -> Result<Unit, FormulaError> {
    Ok(match e {
        Expr::Number(_, u) => u.clone(),
        Expr::Neg(e) => unit_of(e, each)?,
        Expr::Bin(op, a, b, column) => {
            let (ua, ub) = (unit_of(a, each)?, unit_of(b, each)?);
            match op {
                Op::Add | Op::Sub => {
                    if ua != ub {
                        return Err(units(
                            *column,
                            format!(
                                "cannot {} {ua} and {ub} (convert with as(…, [unit]))",
                                if *op == Op::Add { "add" } else { "subtract" }
                            ),
                        ));
                    }
                    ua
                }
                Op::Mul => ua.combine(&ub, 1).map_err(|m| units(*column, m))?,
                Op::Div => ua.combine(&ub, -1).map_err(|m| units(*column, m))?,
            }
        }
        Expr::Pow(e, n, column) => unit_of(e, each)?.pow(*n).map_err(|m| units(*column, m))?,
        Expr::WithUnit(e, u, column) => {
            let inner = unit_of(e, each)?;
            if inner != Unit::one() {
                return Err(units(
                    *column,
                    format!("[{u}] annotates a number, and this is already in {inner}"),
                ));
            }
            u.clone()
        }
        Expr::As(e, u, column) => {
            let inner = unit_of(e, each)?;
            if inner.factor_to(u).is_none() {
                return Err(units(*column, format!("{inner} does not convert to {u}")));
            }
            u.clone()
        }
        Expr::Aggregate {
            agg, sel, each: x, ..
        } => match (agg, x) {
            (Aggregate::Count, _) => Unit::one(),
            (_, Some(x)) => unit_of(x, Some(&sel.unit))?,
            (_, None) => sel.unit.clone(),
        },
        Expr::Value => each.cloned().unwrap_or_default(),
        Expr::Attr(_, u) => u.clone(),
    })
}

struct Eval<'a> {
    source: &'a dyn Source,
    inputs: Vec<String>,
    budget: usize,
}

impl Eval<'_> {
    fn spend(&mut self) -> Result<(), EvalError> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| EvalError(format!("more than {EVAL_BUDGET} steps to compute")))?;
        Ok(())
    }

    fn read(&mut self, input: &str) {
        if !self.inputs.iter().any(|i| i == input) {
            self.inputs.push(input.to_string());
        }
    }

    /// `e` for record `at`; `input` is the input an aggregate's expression is evaluated for,
    /// with the unit its `value` is declared in.
    fn eval(&mut self, e: &Expr, at: &str, input: Option<(&str, &Unit)>) -> Result<f64, EvalError> {
        self.spend()?;
        Ok(match e {
            Expr::Number(n, _) => *n,
            Expr::Neg(e) => -self.eval(e, at, input)?,
            Expr::Bin(op, a, b, _) => {
                let (x, y) = (self.eval(a, at, input)?, self.eval(b, at, input)?);
                match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    Op::Div => {
                        if y == 0.0 {
                            return Err(EvalError("a division by zero".into()));
                        }
                        x / y
                    }
                }
            }
            Expr::Pow(e, n, _) => self.eval(e, at, input)?.powi(*n),
            Expr::WithUnit(e, _, _) => self.eval(e, at, input)?,
            Expr::As(inner, u, _) => {
                // The static check proved the conversion exists.
                let from =
                    unit_of(inner, input.map(|i| i.1)).map_err(|e| EvalError(e.to_string()))?;
                let k = from
                    .factor_to(u)
                    .ok_or_else(|| EvalError(format!("{from} does not convert to {u}")))?;
                self.eval(inner, at, input)? * k
            }
            Expr::Aggregate { agg, sel, each, .. } => {
                self.aggregate(*agg, sel, each.as_deref(), at)?
            }
            Expr::Value => {
                let (h, _) = input.ok_or_else(|| EvalError("value outside an input".into()))?;
                self.number(h, "mrv.value", input.map(|i| i.1))?
            }
            Expr::Attr(t, _) => {
                let (h, _) = input.ok_or_else(|| EvalError("attr outside an input".into()))?;
                self.number(h, t, None)?
            }
        })
    }

    /// An input's number; for `mrv.value` checked against the unit the formula declares.
    fn number(
        &mut self,
        h: &str,
        value_type: &str,
        declared: Option<&Unit>,
    ) -> Result<f64, EvalError> {
        self.read(h);
        let (n, unit) = self.source.number(h, value_type)?;
        if let Some(d) = declared {
            let written = unit.as_deref().unwrap_or("1");
            let u = Unit::parse(written).map_err(|e| EvalError(format!("{h}: mrv.unit: {e}")))?;
            if &u != d {
                return Err(EvalError(format!(
                    "{h}: its mrv.unit is {u}, the formula reads it in {d}"
                )));
            }
        }
        if !n.is_finite() {
            return Err(EvalError(format!(
                "{h}: {value_type} is not a finite number"
            )));
        }
        Ok(n)
    }

    fn select(&mut self, sel: &Selector, at: &str) -> Result<Vec<String>, EvalError> {
        let mut set = vec![at.to_string()];
        for step in &sel.path {
            let mut next: Vec<String> = Vec::new();
            for h in &set {
                self.spend()?;
                for t in self.source.follow(h, step)? {
                    self.spend()?;
                    if !next.contains(&t) {
                        next.push(t);
                    }
                }
            }
            set = next;
        }
        Ok(set)
    }

    fn aggregate(
        &mut self,
        agg: Aggregate,
        sel: &Selector,
        each: Option<&Expr>,
        at: &str,
    ) -> Result<f64, EvalError> {
        let inputs = self.select(sel, at)?;
        let path = sel
            .path
            .iter()
            .map(Step::to_string)
            .collect::<Vec<_>>()
            .join("/");
        if agg == Aggregate::Count {
            for i in &inputs {
                self.read(i);
            }
            return Ok(inputs.len() as f64);
        }
        if inputs.is_empty() {
            return Err(EvalError(format!("no input {path}")));
        }
        if agg == Aggregate::One && inputs.len() != 1 {
            return Err(EvalError(format!(
                "one({path}) found {} inputs",
                inputs.len()
            )));
        }
        let mut values = Vec::with_capacity(inputs.len());
        for i in &inputs {
            let v = match each {
                Some(x) => self.eval(x, at, Some((i, &sel.unit)))?,
                None => self.number(i, "mrv.value", Some(&sel.unit))?,
            };
            values.push(v);
        }
        Ok(match agg {
            Aggregate::Sum | Aggregate::One => values.iter().sum(),
            Aggregate::Mean => values.iter().sum::<f64>() / values.len() as f64,
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregate::Count => values.len() as f64,
        })
    }
}

/// A tolerance: absolute in the figure's unit, or relative (`0.5%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    Absolute(f64),
    Relative(f64),
}

impl Tolerance {
    /// `0.01` (absolute) or `0.5%` (relative to the stored figure).
    pub fn parse(text: &str) -> Result<Tolerance, String> {
        let t = text.trim();
        let (num, rel) = match t.strip_suffix('%') {
            Some(n) => (n.trim(), true),
            None => (t, false),
        };
        let n: f64 = num
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("tolerance {t:?}: a number of zero or more, or a percentage"))?;
        Ok(if rel {
            Tolerance::Relative(n / 100.0)
        } else {
            Tolerance::Absolute(n)
        })
    }

    /// The tolerance of a figure written as `stored` when none is given: half a unit in its
    /// last written decimal place (the figure matches what rounding the computed one gives).
    pub fn of_written(stored: &str) -> Tolerance {
        let t = stored.trim();
        let mantissa = t.split(['e', 'E']).next().unwrap_or(t);
        let exp: i32 = t
            .split_once(['e', 'E'])
            .and_then(|(_, e)| e.parse().ok())
            .unwrap_or(0);
        let decimals = mantissa
            .split_once('.')
            .map_or(0, |(_, d)| i32::try_from(d.len()).unwrap_or(i32::MAX));
        Tolerance::Absolute(0.5 * 10f64.powi(exp.saturating_sub(decimals)))
    }

    /// Whether `computed` matches `stored`. A relative error of 1e-9 is allowed beyond the
    /// tolerance itself, for the rounding of the arithmetic.
    pub fn matches(&self, stored: f64, computed: f64) -> bool {
        let allowed = match self {
            Tolerance::Absolute(a) => *a,
            Tolerance::Relative(r) => r * stored.abs(),
        };
        (stored - computed).abs() <= allowed + 1e-9 * stored.abs().max(computed.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table(
        Vec<(&'static str, &'static str, &'static str)>,
        Vec<(&'static str, f64, &'static str)>,
    );

    impl Source for Table {
        fn follow(&self, from: &str, step: &Step) -> Result<Vec<String>, EvalError> {
            Ok(self
                .0
                .iter()
                .filter(|(f, rel, _)| *f == from && *rel == step.rel)
                .map(|(_, _, t)| t.to_string())
                .filter(|t| step.kind.as_ref().is_none_or(|k| t.starts_with(k.as_str())))
                .collect())
        }
        fn number(&self, h: &str, t: &str) -> Result<(f64, Option<String>), EvalError> {
            let (_, n, u) = self
                .1
                .iter()
                .find(|(x, _, _)| *x == h)
                .ok_or_else(|| EvalError(format!("{h} missing")))?;
            Ok((
                if t == "mrv.value" { *n } else { *n * 2.0 },
                Some(u.to_string()),
            ))
        }
    }

    fn demo_like() -> Table {
        Table(
            vec![
                ("fig", "prov.wasDerivedFrom", "reading-1"),
                ("fig", "prov.wasDerivedFrom", "reading-2"),
                ("fig", "prov.wasDerivedFrom", "lab-1"),
                ("fig", "mrv.usesFactor", "factor-of"),
            ],
            vec![
                ("reading-1", 1000.0, "t"),
                ("reading-2", 1500.5, "t"),
                ("lab-1", 56.25, "%"),
                ("factor-of", 0.99, "1"),
            ],
        )
    }

    const FUEL: &str = "E_fuel = sum(prov.wasDerivedFrom:reading [t]) * as(one(prov.wasDerivedFrom:lab [%]), [1]) * one(mrv.usesFactor:factor [1]) * (44/12) [tCO2/t]";

    #[test]
    fn the_demo_formula_computes_with_units() {
        let f = Formula::parse(FUEL).unwrap();
        assert_eq!(f.name.as_deref(), Some("E_fuel"));
        assert_eq!(f.unit().to_string(), "tCO2");
        f.check_unit("tCO2").unwrap();
        let c = f.eval("fig", &demo_like()).unwrap();
        let expected = 2500.5 * 0.5625 * 0.99 * 44.0 / 12.0;
        assert!((c.value - expected).abs() < 1e-9, "{}", c.value);
        assert_eq!(c.inputs, ["reading-1", "reading-2", "lab-1", "factor-of"]);
    }

    #[test]
    fn unit_mismatches_are_refused_with_their_column() {
        let e = Formula::parse("sum(prov.wasDerivedFrom:reading [t]) + one(mrv.usesFactor [MWh])")
            .unwrap_err();
        assert!(
            matches!(&e, FormulaError::Units { column: 38, message } if message.contains("cannot add t and MWh")),
            "{e}"
        );
        let f = Formula::parse("sum(prov.wasDerivedFrom:reading [t]) * 2").unwrap();
        let e = f.check_unit("tCO2").unwrap_err();
        assert!(
            e.to_string()
                .contains("computes t and the record's mrv.unit is tCO2"),
            "{e}"
        );
        // A percentage is converted explicitly, not by accident.
        assert!(Formula::parse("one(a [%]) + 1").is_err());
        assert_eq!(
            Formula::parse("as(one(a [%]), [1]) + 1")
                .unwrap()
                .unit()
                .to_string(),
            "1"
        );
        assert!(Formula::parse("as(one(a [t]), [MWh])").is_err());
        let kg = Formula::parse("as(one(a [t]), [kg])").unwrap();
        let t = Table(vec![("x", "a", "y")], vec![("y", 2.5, "t")]);
        assert_eq!(kg.eval("x", &t).unwrap().value, 2500.0);
        // 44/12 [u] annotates the 12: the unit check names the result.
        let e = Formula::parse("one(a [t]) * 44/12 [tCO2/t]")
            .unwrap()
            .check_unit("tCO2");
        assert!(e.is_err());
    }

    #[test]
    fn syntax_errors_name_the_column() {
        for (text, column) in [
            ("sum(prov.wasDerivedFrom [t]", 28),
            ("1 +", 4),
            ("1 + * 2", 5),
            ("foo(1)", 1),
            ("value * 2", 1),
            ("sum(a, sum(b))", 8),
            ("1 2", 3),
            ("one(a:)", 7),
            ("(1", 3),
            ("2 ^ 99", 5),
            ("3 [t/]", 3),
        ] {
            match Formula::parse(text) {
                Err(FormulaError::Syntax { column: c, message }) => {
                    assert_eq!(c, column, "{text}: {message}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn weighted_means_paths_and_counts() {
        let t = Table(
            vec![
                ("m", "prov.wasDerivedFrom", "lab-a"),
                ("m", "prov.wasDerivedFrom", "lab-b"),
                ("r", "mrv.reports", "filing-1"),
                ("r", "mrv.reports", "filing-2"),
                ("filing-1", "mrv.reports", "fig-1"),
                ("filing-2", "mrv.reports", "fig-2"),
                ("filing-2", "mrv.reports", "fig-1"),
            ],
            vec![
                ("lab-a", 50.0, "%"),
                ("lab-b", 60.0, "%"),
                ("fig-1", 10.0, "tCO2"),
                ("fig-2", 5.0, "tCO2"),
            ],
        );
        // attr(…) of this table is twice the value: weights 100 and 120.
        let w = Formula::parse(
            "sum(prov.wasDerivedFrom:lab [%], value * attr(mrv.mass [t])) / sum(prov.wasDerivedFrom:lab [%], attr(mrv.mass [t]))",
        )
        .unwrap();
        assert_eq!(w.unit().to_string(), "%");
        let c = w.eval("m", &t).unwrap().value;
        assert!((c - (50.0 * 100.0 + 60.0 * 120.0) / 220.0).abs() < 1e-12);
        let total = Formula::parse("sum(mrv.reports:filing/mrv.reports:fig [tCO2])").unwrap();
        assert_eq!(
            total.eval("r", &t).unwrap().value,
            15.0,
            "an input reached twice counts once"
        );
        let n = Formula::parse("count(mrv.reports/mrv.reports)").unwrap();
        assert_eq!(n.eval("r", &t).unwrap().value, 2.0);
        let e = Formula::parse("one(prov.wasDerivedFrom [%])")
            .unwrap()
            .eval("m", &t);
        assert_eq!(e.unwrap_err().0, "one(prov.wasDerivedFrom) found 2 inputs");
        let e = Formula::parse("sum(prov.wasDerivedFrom [t])")
            .unwrap()
            .eval("m", &t);
        assert!(
            e.unwrap_err()
                .0
                .contains("its mrv.unit is %, the formula reads it in t")
        );
        assert!(Formula::parse("sum(x [t])").unwrap().eval("m", &t).is_err());
    }

    #[test]
    fn bounds_hold() {
        assert!(matches!(
            Formula::parse(&"1+".repeat(2000)),
            Err(FormulaError::TooLong(_))
        ));
        assert!(Formula::parse(&format!("{}1{}", "(".repeat(40), ")".repeat(40))).is_err());
        assert!(Formula::parse("1+".repeat(300).trim_end_matches('+')).is_err());
        assert!(Formula::parse("sum(a/b/c/d/e [t])").is_err());
        assert!(
            Formula::parse("1 / 0")
                .unwrap()
                .eval("x", &demo_like())
                .is_err()
        );
    }

    #[test]
    fn tolerances() {
        assert_eq!(
            Tolerance::of_written("1234.567"),
            Tolerance::Absolute(0.5 * 10f64.powi(-3))
        );
        // A unit with nothing above the line spells itself `1/…`, which parses back.
        assert_eq!(Unit::parse("1/t").unwrap().to_string(), "1/t");
        assert!(Unit::parse("t/1").is_err());
        assert!(Tolerance::of_written("1234.567").matches(1234.567, 1234.5674));
        assert!(!Tolerance::of_written("1234.567").matches(1234.567, 1234.5676));
        assert!(Tolerance::parse("0.5%").unwrap().matches(100.0, 100.4));
        assert!(!Tolerance::parse("0.5%").unwrap().matches(100.0, 100.6));
        assert!(Tolerance::parse("-1").is_err());
    }
}
