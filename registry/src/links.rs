//! The provenance vocabulary (docs/provenance.md), and which values of a record are links or
//! aliases. A value's meaning comes from its type, never from its index: existing Handle data
//! uses any index for anything, and is stored as it is.

use suyuan_codec::message::rc;
use suyuan_codec::value::HandleValue;

use crate::error::RegistryError;

/// Relation types: each points from the dependent record to its source.
pub const RELATIONS: [&str; 13] = [
    "prov.wasDerivedFrom",
    "prov.wasGeneratedBy",
    "prov.used",
    "prov.wasAttributedTo",
    "mrv.measuredBy",
    "mrv.installedOn",
    "mrv.partOf",
    "mrv.calibratedBy",
    "mrv.analyses",
    "mrv.usesFactor",
    "mrv.governedBy",
    "mrv.reports",
    "mrv.operatedOn",
];

/// Attribute types of the MRV data model.
pub mod attr {
    pub const KIND: &str = "mrv.kind";
    pub const TIME: &str = "mrv.time";
    pub const PERIOD: &str = "mrv.period";
    pub const VALUE: &str = "mrv.value";
    pub const UNIT: &str = "mrv.unit";
    pub const FORMULA: &str = "mrv.formula";
    /// How far a figure may be from what its formula computes: absolute in its unit, or a
    /// percentage of it (`0.5%`).
    pub const TOLERANCE: &str = "mrv.tolerance";
    pub const TEMPLATE: &str = "mrv.template";
    /// Names the data template a record follows (Suyuan writes it at index 1001, the IDIS
    /// convention; any index will do).
    pub const TEMPLATE_REF: &str = "mrv.templateRef";
}

/// The attribute types of the vocabulary (the types that are neither relations nor declared by
/// a template).
pub const ATTRIBUTE_TYPES: [&str; 9] = [
    attr::KIND,
    attr::TIME,
    attr::PERIOD,
    attr::VALUE,
    attr::UNIT,
    attr::FORMULA,
    attr::TOLERANCE,
    attr::TEMPLATE,
    attr::TEMPLATE_REF,
];

/// The namespaces the vocabulary claims: a type in them that the vocabulary does not know is a
/// typo (`prov.wasDerivedFrm`) that would otherwise be stored as a value that links nothing.
const NAMESPACES: [&str; 2] = ["prov.", "mrv."];

/// Value types that bind another identifier scheme to a record.
pub const ALIAS_TYPES: [&str; 3] = ["id.oid", "id.ecode", "id.gs1"];

/// Whether values of type `t` bind an identifier of another scheme: `id.<scheme>`, a built-in
/// scheme or an operator's.
pub fn is_binding(t: &str) -> bool {
    t.strip_prefix("id.").is_some_and(|s| !s.is_empty())
}

pub fn is_relation(t: &str) -> bool {
    RELATIONS.contains(&t)
}

/// Refuses a value whose type is in a vocabulary namespace (ASCII case ignored, so `PROV.used`
/// is caught too) but neither in the vocabulary nor among the types a template of the record
/// `declared`.
pub fn check_vocabulary(
    handle: &str,
    values: &[HandleValue],
    declared: &[String],
) -> Result<(), RegistryError> {
    let unknown = values.iter().find(|v| {
        let t = v.value_type.as_str();
        NAMESPACES
            .iter()
            .any(|n| t.get(..n.len()).is_some_and(|p| p.eq_ignore_ascii_case(n)))
            && !is_relation(t)
            && !ATTRIBUTE_TYPES.contains(&t)
            && !declared.iter().any(|d| d == t)
    });
    match unknown {
        None => Ok(()),
        Some(v) => Err(RegistryError::refused(
            rc::INVALID_VALUE,
            format!(
                "{handle}: value {} has type {}, which is not in the provenance vocabulary \
                 (known relations: {}; attribute types: {}); other types need a template that \
                 declares them",
                v.index,
                v.value_type,
                RELATIONS.join(", "),
                ATTRIBUTE_TYPES.join(", ")
            ),
        )),
    }
}

/// The templates `values` name: each `mrv.templateRef` value and the template handle it holds.
pub fn template_refs(values: &[HandleValue]) -> impl Iterator<Item = (&HandleValue, String)> {
    values
        .iter()
        .filter(|v| v.value_type == attr::TEMPLATE_REF)
        .map(|v| (v, String::from_utf8_lossy(&v.data).trim().to_string()))
}

/// A link of a record: relation type and target identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    pub rel: String,
    pub target: String,
}

/// The links among `values`: values whose type is a relation, or one of `extra` (reference
/// attributes a template declares), with UTF-8 data naming the target.
pub fn links_of(values: &[HandleValue], extra: &[String]) -> Vec<Link> {
    let mut out: Vec<Link> = values
        .iter()
        .filter(|v| is_relation(&v.value_type) || extra.iter().any(|e| e == &v.value_type))
        .filter_map(|v| {
            let target = std::str::from_utf8(&v.data).ok()?.trim();
            // Keys of the reverse index are NUL-separated: a target with control characters
            // is not an identifier, so it is no link either.
            (!target.is_empty() && !target.chars().any(char::is_control)).then(|| Link {
                rel: v.value_type.clone(),
                target: target.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.rel, &a.target).cmp(&(&b.rel, &b.target)));
    out.dedup();
    out
}

/// The identifier an alias value binds, in its scheme's normal form (`codec::scheme`); a value
/// its scheme refuses (stored before schemes were checked, or by another writer) is keyed as
/// written, trimmed, so that it can still be found and removed.
pub fn alias_of(v: &HandleValue) -> Option<String> {
    if !is_binding(&v.value_type) {
        return None;
    }
    let s = std::str::from_utf8(&v.data).ok()?.trim();
    if s.is_empty() {
        return None;
    }
    Some(suyuan_codec::scheme::normalise(&v.value_type, s).unwrap_or_else(|_| s.to_string()))
}

/// Reads the identifier bindings (`id.*`) of `values` by their schemes, writing each in its
/// scheme's normal form; the first one refused, with what is wrong, refuses the write (a
/// binding of a scheme nobody configured too). `built_in` picks which: the built-in schemes'
/// bindings (read by the write path's rules, on every backend), or the others, which
/// `schemes`, the operator's, read above the store, where the configuration is.
pub fn read_bindings(
    handle: &str,
    values: &mut [HandleValue],
    schemes: &suyuan_codec::scheme::Schemes,
    built_in: bool,
) -> Result<(), crate::RegistryError> {
    for v in values.iter_mut().filter(|v| {
        is_binding(&v.value_type) && ALIAS_TYPES.contains(&v.value_type.as_str()) == built_in
    }) {
        let refuse = |why: String| {
            crate::RegistryError::refused(
                suyuan_codec::message::rc::INVALID_VALUE,
                format!("{handle}: value {} ({}): {why}", v.index, v.value_type),
            )
        };
        if !schemes.binds(&v.value_type) {
            return Err(refuse(
                "no identifier scheme of that name is configured here ([[schemes]])".into(),
            ));
        }
        let text = std::str::from_utf8(&v.data).map_err(|_| refuse("not UTF-8".into()))?;
        let normal = schemes
            .normalise(&v.value_type, text)
            .map_err(|e| refuse(e.to_string()))?;
        v.data = normal.into_bytes();
    }
    Ok(())
}

/// The text of the first value of type `t`.
pub fn text_of<'a>(values: &'a [HandleValue], t: &str) -> Option<&'a str> {
    values
        .iter()
        .find(|v| v.value_type == t)
        .and_then(|v| std::str::from_utf8(&v.data).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_aliases() {
        let values = vec![
            HandleValue::new(2001, "mrv.measuredBy", "88.888.1/meter-1"),
            HandleValue::new(2002, "prov.wasDerivedFrom", " 88.888.1/d-1 "),
            HandleValue::new(2003, "prov.wasDerivedFrom", "88.888.1/d-1"),
            HandleValue::new(2004, "site.feeds", "88.888.1/x"),
            HandleValue::new(1, "URL", "https://example.org"),
            HandleValue::new(5, "id.gs1", "/01/09521234543213/21/7/"),
        ];
        let l = links_of(&values, &[]);
        assert_eq!(l.len(), 2, "duplicates folded, URL is not a link: {l:?}");
        assert_eq!(links_of(&values, &["site.feeds".into()]).len(), 3);
        assert_eq!(
            alias_of(&values[5]).as_deref(),
            Some("/01/09521234543213/21/7")
        );
        assert_eq!(alias_of(&values[4]), None);
    }
}
