//! Data templates (元数据模板): a template is itself a record holding one `mrv.template` value
//! whose JSON names a kind and its attributes. A record that names a template (an
//! `mrv.templateRef` value holding its handle, at 1001 by convention or at any other index) is
//! validated against it on every write; a failing write changes nothing and names the
//! attribute.

use serde::Deserialize;
use suyuan_codec::message::rc;
use suyuan_codec::value::HandleValue;

use crate::error::RegistryError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub kind: String,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    /// The tolerance of the derivation check for records of this kind that give none of
    /// their own (`mrv.tolerance`): absolute in the figure's unit, or a percentage (`0.5%`).
    #[serde(default)]
    pub tolerance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribute {
    pub name: String,
    /// From 2000.
    pub index: u32,
    /// The value type the attribute is stored as (a relation type for references).
    #[serde(rename = "type")]
    pub value_type: String,
    #[serde(default)]
    pub required: bool,
    /// For reference attributes: the kinds the target may have (empty: any).
    #[serde(default)]
    pub reference: Option<Reference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    #[serde(default)]
    pub kinds: Vec<String>,
}

fn invalid(message: String) -> RegistryError {
    RegistryError::refused(rc::INVALID_VALUE, message)
}

impl Template {
    pub fn parse(handle: &str, json: &[u8]) -> Result<Self, RegistryError> {
        let t: Template = serde_json::from_slice(json)
            .map_err(|e| invalid(format!("template {handle}: bad mrv.template JSON: {e}")))?;
        if let Some(tol) = &t.tolerance {
            suyuan_codec::formula::Tolerance::parse(tol)
                .map_err(|e| invalid(format!("template {handle}: {e}")))?;
        }
        for a in &t.attributes {
            if a.index < 2000 {
                return Err(invalid(format!(
                    "template {handle}: attribute {} has index {} (template attributes start at 2000)",
                    a.name, a.index
                )));
            }
        }
        Ok(t)
    }

    /// The template stored in a template record's values.
    pub fn from_values(handle: &str, values: &[HandleValue]) -> Result<Self, RegistryError> {
        let v = values
            .iter()
            .find(|v| v.value_type == crate::links::attr::TEMPLATE)
            .ok_or_else(|| {
                invalid(format!(
                    "{handle} is not a template (no mrv.template value)"
                ))
            })?;
        Self::parse(handle, &v.data)
    }

    /// Value types this template declares as references (they count as links).
    pub fn reference_types(&self) -> Vec<String> {
        self.attributes
            .iter()
            .filter(|a| a.reference.is_some())
            .map(|a| a.value_type.clone())
            .collect()
    }

    /// Checks `values` against the template. `kind_of` gives the `mrv.kind` of a local target
    /// (None when it is not here: a remote or dangling target is not this write's fault).
    /// The handles whose kinds [`Template::validate`] asks `kind_of` for, for these values:
    /// a backend whose reads are asynchronous reads them first.
    pub fn reference_targets(&self, values: &[HandleValue]) -> Vec<String> {
        self.attributes
            .iter()
            .filter(|a| a.reference.as_ref().is_some_and(|r| !r.kinds.is_empty()))
            .filter_map(|a| values.iter().find(|v| v.index == a.index))
            .filter_map(reference_target)
            .map(str::to_string)
            .collect()
    }

    pub fn validate(
        &self,
        handle: &str,
        template: &str,
        values: &[HandleValue],
        kind_of: &mut dyn FnMut(&str) -> Result<Option<String>, RegistryError>,
    ) -> Result<(), RegistryError> {
        for a in &self.attributes {
            let at: Vec<&HandleValue> = values.iter().filter(|v| v.index == a.index).collect();
            match at.first() {
                None if a.required => {
                    return Err(invalid(format!(
                        "{handle}: attribute {} (index {}, {}) is required by template {template}",
                        a.name, a.index, a.value_type
                    )));
                }
                None => {}
                Some(v) if v.value_type != a.value_type => {
                    return Err(invalid(format!(
                        "{handle}: attribute {} at index {} must have type {}, not {}",
                        a.name, a.index, a.value_type, v.value_type
                    )));
                }
                Some(v) => {
                    if let Some(r) = &a.reference {
                        let target = reference_target(v).ok_or_else(|| {
                            invalid(format!("{handle}: attribute {} must name a handle", a.name))
                        })?;
                        if !r.kinds.is_empty() {
                            if let Some(k) = kind_of(target)? {
                                if !r.kinds.contains(&k) {
                                    return Err(invalid(format!(
                                        "{handle}: attribute {} points to {target} of kind {k}; template {template} allows {}",
                                        a.name,
                                        r.kinds.join(", ")
                                    )));
                                }
                            }
                        }
                    }
                }
            }
        }
        // Records of a kind say so.
        if let Some(k) = crate::links::text_of(values, crate::links::attr::KIND) {
            if k != self.kind {
                return Err(invalid(format!(
                    "{handle}: mrv.kind is {k} but template {template} is for {}",
                    self.kind
                )));
            }
        }
        Ok(())
    }
}

/// The handle a reference attribute's value names: UTF-8 text with a slash, not starting with
/// one.
fn reference_target(v: &HandleValue) -> Option<&str> {
    std::str::from_utf8(&v.data)
        .ok()
        .map(str::trim)
        .filter(|t| t.contains('/') && !t.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const METER: &str = r#"{"kind":"reading","attributes":[
        {"name":"value","index":2000,"type":"mrv.value","required":true},
        {"name":"meter","index":2001,"type":"mrv.measuredBy","required":true,"reference":{"kinds":["meter"]}}]}"#;

    #[test]
    fn validation_names_the_attribute() {
        let t = Template::parse("88.888.1/tpl/reading", METER.as_bytes()).unwrap();
        let mut kinds = |h: &str| {
            Ok(if h.ends_with("meter-1") {
                Some("meter".to_string())
            } else if h.ends_with("boiler") {
                Some("boiler".to_string())
            } else {
                None
            })
        };
        let ok = vec![
            HandleValue::new(2000, "mrv.value", "12.5"),
            HandleValue::new(2001, "mrv.measuredBy", "88.888.1/meter-1"),
        ];
        t.validate("r", "tpl", &ok, &mut kinds).unwrap();
        let missing = vec![HandleValue::new(2001, "mrv.measuredBy", "88.888.1/meter-1")];
        let e = t.validate("r", "tpl", &missing, &mut kinds).unwrap_err();
        assert!(e.to_string().contains("attribute value"), "{e}");
        assert_eq!(e.response_code(), rc::INVALID_VALUE);
        let wrong_kind = vec![
            HandleValue::new(2000, "mrv.value", "1"),
            HandleValue::new(2001, "mrv.measuredBy", "88.888.1/boiler"),
        ];
        assert!(
            t.validate("r", "tpl", &wrong_kind, &mut kinds)
                .unwrap_err()
                .to_string()
                .contains("kind boiler")
        );
        let wrong_type = vec![
            HandleValue::new(2000, "URL", "1"),
            HandleValue::new(2001, "mrv.measuredBy", "88.888.1/meter-1"),
        ];
        assert!(t.validate("r", "tpl", &wrong_type, &mut kinds).is_err());
        // A target that is not here (remote, or not yet registered) is not refused.
        let remote = vec![
            HandleValue::new(2000, "mrv.value", "1"),
            HandleValue::new(2001, "mrv.measuredBy", "88.999.7/m"),
        ];
        t.validate("r", "tpl", &remote, &mut kinds).unwrap();
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(Template::parse("t", b"{").is_err());
        assert!(
            Template::parse(
                "t",
                br#"{"kind":"x","attributes":[{"name":"a","index":5,"type":"t"}]}"#
            )
            .is_err()
        );
        assert!(Template::parse("t", br#"{"kind":"x","extra":1}"#).is_err());
    }
}
