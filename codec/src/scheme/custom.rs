//! Schemes an operator declares in the config (`[[schemes]]`), as the UN/CEFACT identity
//! resolver lets operators declare namespaces: a scheme's name, its identifier types (each a
//! name and a pattern its values must match) and its qualifiers (the same, in the order a
//! path writes them). An identifier is a path `/<scheme>/<type>/<value>[/<qualifier>/<value>…]`
//! (`/acme/product/12345/batch/A1B2C3`), bound with a value of type `id.<scheme>`; its normal
//! form is that path with the qualifiers in the declared order, values percent-encoded where
//! the path needs it.
//!
//! Patterns are regular expressions (the `regex` crate: linear time, no backreferences),
//! anchored to the whole value, at most 256 bytes each and compiled with a size limit, so a
//! pattern in the config cannot make a lookup slow.

use super::SchemeError;

/// The longest pattern taken.
pub const MAX_PATTERN: usize = 256;

/// A named part of an identifier and the pattern its value matches.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pattern: regex::Regex,
}

impl Part {
    /// `pattern` matched against the whole value.
    pub fn new(name: &str, pattern: &str) -> Result<Self, SchemeError> {
        let bad = |why: String| SchemeError::Config(format!("{name}: {why}"));
        if !valid_name(name) {
            return Err(bad("a name is letters, digits, '-' and '_'".into()));
        }
        if pattern.len() > MAX_PATTERN {
            return Err(bad(format!("a pattern is at most {MAX_PATTERN} bytes")));
        }
        let pattern = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| bad(format!("pattern: {e}")))?;
        Ok(Part {
            name: name.to_string(),
            pattern,
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An operator's scheme.
#[derive(Debug, Clone)]
pub struct Custom {
    pub name: String,
    pub types: Vec<Part>,
    pub qualifiers: Vec<Part>,
}

/// The names the built-in schemes hold.
const BUILT_IN: [&str; 3] = ["oid", "gs1", "ecode"];

impl Custom {
    pub fn new(name: &str, types: Vec<Part>, qualifiers: Vec<Part>) -> Result<Self, SchemeError> {
        if !valid_name(name) || BUILT_IN.contains(&name) {
            return Err(SchemeError::Config(format!(
                "scheme {name:?}: a name is letters, digits, '-' and '_', and not oid, gs1 or ecode"
            )));
        }
        if types.is_empty() {
            return Err(SchemeError::Config(format!(
                "scheme {name}: it declares no identifier type"
            )));
        }
        Ok(Custom {
            name: name.to_string(),
            types,
            qualifiers,
        })
    }

    /// The value type that binds this scheme's identifiers.
    pub fn value_type(&self) -> String {
        format!("id.{}", self.name)
    }

    /// An identifier of this scheme in its normal form: `/<name>/<type>/<value>[…]`, with or
    /// without the leading `/<name>`.
    pub fn parse(&self, input: &str) -> Result<String, SchemeError> {
        let bad = |why: String| SchemeError::Custom(self.name.clone(), why);
        let s = input.trim().trim_matches('/');
        let rest = s
            .strip_prefix(&self.name)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(s);
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.len() < 2 || segs.len() % 2 != 0 || segs.len() > 2 + 2 * self.qualifiers.len() {
            return Err(bad(format!(
                "{input:?}: an identifier is /{}/TYPE/VALUE, then QUALIFIER/VALUE pairs",
                self.name
            )));
        }
        let unescape = |v: &str| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad(format!("{v:?} is not UTF-8 once percent-decoded")))
        };
        let ty = self
            .types
            .iter()
            .find(|t| t.name == segs[0])
            .ok_or_else(|| {
                let names: Vec<&str> = self.types.iter().map(|t| t.name.as_str()).collect();
                bad(format!(
                    "{} is not an identifier type of {} (one of {})",
                    segs[0],
                    self.name,
                    names.join(", ")
                ))
            })?;
        let value = unescape(segs[1])?;
        if !ty.pattern.is_match(&value) {
            return Err(bad(format!(
                "{} {value:?} does not match its pattern {}",
                ty.name,
                pattern_text(&ty.pattern)
            )));
        }
        let mut out = format!("/{}/{}/{}", self.name, ty.name, super::path_escape(&value));
        let mut at = 0;
        for pair in segs[2..].chunks(2) {
            let pos = self
                .qualifiers
                .iter()
                .position(|q| q.name == pair[0])
                .ok_or_else(|| bad(format!("{} is not a qualifier of {}", pair[0], self.name)))?;
            if pos < at {
                return Err(bad(format!(
                    "qualifier {} comes before {}",
                    pair[0],
                    self.qualifiers[at - 1].name
                )));
            }
            at = pos + 1;
            let q = &self.qualifiers[pos];
            let v = unescape(pair[1])?;
            if !q.pattern.is_match(&v) {
                return Err(bad(format!(
                    "{} {v:?} does not match its pattern {}",
                    q.name,
                    pattern_text(&q.pattern)
                )));
            }
            out.push_str(&format!("/{}/{}", q.name, super::path_escape(&v)));
        }
        Ok(out)
    }
}

/// The pattern as the operator wrote it (without the anchors added here).
fn pattern_text(p: &regex::Regex) -> &str {
    let s = p.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> Custom {
        Custom::new(
            "acme",
            vec![Part::new("product", "[0-9]{5}").unwrap()],
            vec![
                Part::new("batch", "[A-Z0-9]{1,10}").unwrap(),
                Part::new("item", "[0-9]+").unwrap(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn an_operators_scheme_checks_its_patterns_and_order() {
        let a = acme();
        assert_eq!(
            a.parse("/acme/product/12345/batch/A1B2C3/").unwrap(),
            "/acme/product/12345/batch/A1B2C3"
        );
        assert_eq!(a.parse("product/12345").unwrap(), "/acme/product/12345");
        for (input, says) in [
            ("/acme/product/1234", "does not match its pattern [0-9]{5}"),
            ("/acme/widget/12345", "not an identifier type"),
            ("/acme/product/12345/item/1/batch/A", "comes before"),
            ("/acme/product/12345/colour/red", "not a qualifier"),
            ("/acme/product", "TYPE/VALUE"),
        ] {
            let e = a.parse(input).unwrap_err().to_string();
            assert!(e.contains(says), "{input}: {e}");
        }
        assert!(Custom::new("gs1", vec![Part::new("x", ".").unwrap()], vec![]).is_err());
        assert!(Part::new("x", "(").is_err());
        assert!(Part::new("x y", ".").is_err());
    }
}
