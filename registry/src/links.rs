//! The provenance vocabulary (docs/provenance.md), and which values of a record are links or
//! aliases.

use suyuan_codec::value::HandleValue;

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
    pub const TEMPLATE: &str = "mrv.template";
}

/// Value types that bind another identifier scheme to a record.
pub const ALIAS_TYPES: [&str; 3] = ["id.oid", "id.ecode", "id.gs1"];

/// Index at which a record names its data template (the IDIS convention).
pub const TEMPLATE_INDEX: u32 = 1001;

pub fn is_relation(t: &str) -> bool {
    RELATIONS.contains(&t)
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

/// The identifier an alias value binds, in its normal form (trimmed; GS1 Digital Link paths
/// without a trailing slash). Parsing the schemes fully can come later; the index cannot.
pub fn alias_of(v: &HandleValue) -> Option<String> {
    if !ALIAS_TYPES.contains(&v.value_type.as_str()) {
        return None;
    }
    let s = std::str::from_utf8(&v.data).ok()?.trim();
    let s = if v.value_type == "id.gs1" {
        s.trim_end_matches('/')
    } else {
        s
    };
    (!s.is_empty()).then(|| s.to_string())
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
