//! Resolution: a handle's values as the caller may read them, the node's own site for the
//! prefix handles it homes, a referral, or the recursive forwarder for what is not held here.

use suyuan_codec::message::rc;
use suyuan_codec::value::{HandleValue, admin_perm};
use suyuan_registry::{Identity, RegistryError};

use super::command::Done;
use super::{Inner, Outcome, not_found, refused};
use crate::catalog::{Allow, Route};

/// Resolve a handle: its values at `indexes` and of `types` (all when both are empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    pub handle: String,
    pub indexes: Vec<u32>,
    pub types: Vec<String>,
    /// Public values only, whoever asks (PO).
    pub public_only: bool,
    /// A referral (RC 303) may answer (false: DNRF).
    pub refer: bool,
    /// What is not held here may be walked through the hierarchy for the caller.
    pub forward: bool,
}

impl Resolve {
    /// The public values of `handle`, what the surfaces that read for anyone (the redirect
    /// face) ask; walked elsewhere only if the caller then sets `forward`.
    pub fn public(handle: &str, indexes: Vec<u32>, types: Vec<String>) -> Self {
        Resolve {
            handle: handle.to_string(),
            indexes,
            types,
            public_only: true,
            refer: true,
            forward: false,
        }
    }
}

impl Inner {
    pub(super) fn resolve(
        &self,
        c: &Resolve,
        who: Option<&Identity>,
    ) -> Result<Outcome, RegistryError> {
        let allow = Allow {
            refer: c.refer,
            forward: c.forward && self.upstream.get().is_some(),
        };
        let (h, rec) = match self.route(&c.handle, allow)? {
            Err(o) => return Ok(o),
            Ok(Route::OwnPrefix(_)) => {
                let own = self.own_prefix_values();
                let values: Vec<HandleValue> =
                    suyuan_registry::select_values(&own, &c.indexes, &c.types)
                        .into_iter()
                        .cloned()
                        .collect();
                if values.is_empty() {
                    return Ok(refused(rc::VALUES_NOT_FOUND, String::new()));
                }
                return Ok(Outcome::Done(Done::Values {
                    handle: c.handle.clone(),
                    values,
                }));
            }
            Ok(route) => match self.local(route) {
                Ok(t) => t,
                Err(o) => return Ok(o),
            },
        };
        let Some(rec) = rec.as_ref() else {
            return Ok(not_found());
        };
        let selected = suyuan_registry::select_values(&rec.values, &c.indexes, &c.types);
        let restricted = selected.iter().any(|v| !v.permissions.public_read());
        let reader = match who {
            Some(w) if restricted && !c.public_only => {
                if !self.may(w, &h, Some(rec), admin_perm::READ_VALUE)? {
                    return Ok(refused(
                        rc::INSUFFICIENT_PERMISSIONS,
                        format!("{w} may not read {h}"),
                    ));
                }
                true
            }
            None if restricted
                && !c.public_only
                && selected.iter().any(|v| v.permissions.admin_read()) =>
            {
                return Ok(Outcome::NeedAuth);
            }
            _ => false,
        };
        let values: Vec<HandleValue> = selected
            .into_iter()
            .filter(|v| v.permissions.public_read() || (reader && v.permissions.admin_read()))
            .cloned()
            .collect();
        if values.is_empty() {
            return Ok(refused(rc::VALUES_NOT_FOUND, String::new()));
        }
        // The answer spells the handle as the request did.
        Ok(Outcome::Done(Done::Values {
            handle: c.handle.clone(),
            values,
        }))
    }
}
