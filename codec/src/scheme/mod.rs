//! Identifier schemes besides handles: each parses, validates and normalises an identifier to
//! the key the alias index holds it under. A record binds one with an `id.*` value
//! (`id.oid`, `id.gs1`), stored and indexed in its normal form; an input that carries a
//! scheme's own marker (`urn:oid:`, a GS1 element string `(01)…`, a Digital Link URI or path)
//! is read by that scheme before anything else.
//!
//! Built in: [`oid`], [`gs1`] and [`ecode`] (V1); an operator's own in [`custom`], held with
//! the built-in ones in a [`Schemes`].

pub mod custom;
pub mod ecode;
pub mod gs1;
pub mod oid;

/// An identifier that its scheme refuses, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemeError {
    #[error("not a valid OID: {0}")]
    Oid(String),
    #[error("not a valid GS1 key: {0}")]
    Gs1(String),
    #[error("not a valid Ecode: {0}")]
    Ecode(String),
    #[error("not a valid {0} identifier: {1}")]
    Custom(String, String),
    #[error("scheme configuration: {0}")]
    Config(String),
    #[error("value type {0} binds no identifier scheme")]
    Unknown(String),
}

/// A value written into an identifier's path: everything but unreserved characters
/// percent-encoded, so a value with a `/` stays one segment.
pub(crate) fn path_escape(v: &str) -> String {
    const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(v, PATH).to_string()
}

/// The longest identifier any scheme reads.
pub const MAX_INPUT: usize = 2048;

/// The normal form of the identifier bound by a value of type `value_type` (`id.oid`,
/// `id.gs1`, `id.ecode`), or why it is refused. A GS1 binding may be written as an element
/// string, a Digital Link URI or a Digital Link path.
pub fn normalise(value_type: &str, data: &str) -> Result<String, SchemeError> {
    let s = data.trim();
    if s.len() > MAX_INPUT {
        return Err(SchemeError::Unknown(format!(
            "{value_type}: an identifier of more than {MAX_INPUT} bytes"
        )));
    }
    match value_type {
        "id.oid" => oid::parse(s),
        "id.gs1" => gs1_any(s),
        "id.ecode" => ecode::parse(s),
        other => Err(SchemeError::Unknown(other.to_string())),
    }
}

/// The schemes a node reads: the built-in ones and the operator's.
#[derive(Debug, Clone, Default)]
pub struct Schemes {
    custom: Vec<custom::Custom>,
}

impl Schemes {
    /// The built-in schemes and `custom`, whose names must differ.
    pub fn new(custom: Vec<custom::Custom>) -> Result<Self, SchemeError> {
        for (i, c) in custom.iter().enumerate() {
            if custom[..i].iter().any(|o| o.name == c.name) {
                return Err(SchemeError::Config(format!(
                    "scheme {} is declared twice",
                    c.name
                )));
            }
        }
        Ok(Schemes { custom })
    }

    fn custom_for(&self, value_type: &str) -> Option<&custom::Custom> {
        let name = value_type.strip_prefix("id.")?;
        self.custom.iter().find(|c| c.name == name)
    }

    /// Like [`normalise`], for the operator's schemes too.
    pub fn normalise(&self, value_type: &str, data: &str) -> Result<String, SchemeError> {
        match self.custom_for(value_type) {
            Some(c) if data.len() <= MAX_INPUT => c.parse(data),
            _ => normalise(value_type, data),
        }
    }

    /// Like [`recognise`], and an operator's scheme for a path `/<its name>/…`.
    pub fn recognise(&self, input: &str) -> Option<Result<(String, String), SchemeError>> {
        if let Some(r) = recognise(input) {
            return Some(r.map(|(t, n)| (t.to_string(), n)));
        }
        let first = input.trim().strip_prefix('/')?.split('/').next()?;
        let c = self.custom.iter().find(|c| c.name == first)?;
        Some(c.parse(input).map(|n| (c.value_type(), n)))
    }

    /// Whether values of `value_type` bind identifiers here.
    pub fn binds(&self, value_type: &str) -> bool {
        matches!(value_type, "id.oid" | "id.gs1" | "id.ecode")
            || self.custom_for(value_type).is_some()
    }

    /// The operator's schemes.
    pub fn custom(&self) -> &[custom::Custom] {
        &self.custom
    }
}

fn gs1_any(s: &str) -> Result<String, SchemeError> {
    if s.starts_with('(') {
        gs1::element_string(s)
    } else if s.starts_with("https://") || s.starts_with("http://") {
        gs1::digital_link_uri(s)
    } else {
        let (path, query) = match s.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (s, None),
        };
        gs1::digital_link_path(path, query)
    }
}

/// An input read by the scheme whose marker it carries: `Some((value type, normal form))`, an
/// error naming what is wrong, or `None` when it carries no scheme's marker. The markers:
/// `urn:oid:`, a GS1 element string `(01)…`, a Digital Link URI (`http(s)://host/…/01/…`) or
/// path (`/01/…`, or any other primary key's AI), a bare dotted OID under arc 0, 1 or 2
/// (`1.2.156.…`), and 6 to 25 digits (an Ecode).
pub fn recognise(input: &str) -> Option<Result<(&'static str, String), SchemeError>> {
    let s = input.trim();
    let oid = |s: &str| Some(oid::parse(s).map(|n| ("id.oid", n)));
    let gs1 = |s: &str| Some(gs1_any(s).map(|n| ("id.gs1", n)));
    if s.len() > MAX_INPUT {
        return None;
    }
    if s.starts_with("urn:oid:") || s.starts_with("URN:OID:") {
        return oid(s);
    }
    if s.starts_with('(') {
        return gs1(s);
    }
    if s.starts_with("https://") || s.starts_with("http://") {
        return gs1(s);
    }
    if let Some(first) = s.strip_prefix('/').and_then(|p| p.split('/').next()) {
        if ["01", "00", "414", "8003", "8004"].contains(&first) {
            return gs1(s);
        }
    }
    if (6..=25).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(ecode::parse(s).map(|n| ("id.ecode", n)));
    }
    let arc0 = ["0.", "1.", "2."].iter().any(|p| s.starts_with(p));
    if arc0 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return oid(s);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_and_inputs_are_read_by_their_scheme() {
        assert_eq!(
            normalise("id.gs1", "(01)09521234543213(21)7").unwrap(),
            "/01/09521234543213/21/7"
        );
        assert_eq!(
            normalise("id.gs1", "/01/09521234543213/21/7/").unwrap(),
            "/01/09521234543213/21/7"
        );
        assert_eq!(
            normalise("id.oid", "urn:oid:1.2.156.1").unwrap(),
            "1.2.156.1"
        );
        assert_eq!(
            normalise("id.ecode", " 100011234567 ").unwrap(),
            "100011234567"
        );
        assert!(normalise("id.ecode", "10001ABC").is_err());
        assert_eq!(
            recognise("100011234567").unwrap().unwrap(),
            ("id.ecode", "100011234567".to_string())
        );
        assert!(normalise("id.gs1", "/01/09521234543214").is_err());
        assert_eq!(
            recognise("https://example.org/01/09521234543213")
                .unwrap()
                .unwrap(),
            ("id.gs1", "/01/09521234543213".to_string())
        );
        assert_eq!(
            recognise("1.2.156.3000.1.1").unwrap().unwrap(),
            ("id.oid", "1.2.156.3000.1.1".to_string())
        );
        assert!(recognise("(01)09521234543214").unwrap().is_err());
        assert!(recognise("88.888.1/report-2025").is_none());
        assert!(recognise("88.888.1").is_none(), "a prefix is no OID");
    }
}
