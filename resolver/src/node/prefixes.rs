//! Prefixes: the handles under one (its administrators), the prefixes this node homes, and
//! homing or unhoming one (the node's administrators).

use suyuan_codec::handle::Handle;
use suyuan_codec::message::rc;
use suyuan_registry::{Identity, Mutation, RegistryError};

use super::command::Done;
use super::{Inner, Outcome, refused};
use crate::catalog::Holdings;

/// The handles under a prefix, named as `0.NA/P` or `P` (OC 105).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListHandles {
    pub prefix: String,
}

/// Home a prefix here: this node serves it from now on (OC 300); named as `0.NA/P`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub prefix: String,
}

/// Stop serving a prefix (OC 301); named as `0.NA/P`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhome {
    pub prefix: String,
}

/// Handle lists are read from the store this many handles at a time (and answered on the
/// wire this many a message, as the reference does).
pub(super) const LIST_PAGE: usize = 50;

impl Inner {
    /// Who may list the handles under `na` (`0.NA/P` or `P`): the prefix named, or the answer
    /// to give instead.
    pub(super) fn may_list(
        &self,
        who: Option<&Identity>,
        na: &str,
    ) -> Result<Result<String, Outcome>, RegistryError> {
        let Some(who) = who else {
            return Ok(Err(Outcome::NeedAuth));
        };
        let prefix = Handle::parse_lenient(na)
            .ok()
            .and_then(|h| h.described_prefix().map(str::to_string))
            .unwrap_or_else(|| na.to_string());
        if !self.homed(&prefix)? {
            return Ok(Err(refused(
                rc::SERVER_NOT_RESP,
                crate::catalog::prefix_not_served(&prefix),
            )));
        }
        if !self.is_prefix_admin(who, &prefix)? {
            return Ok(Err(refused(
                rc::INSUFFICIENT_PERMISSIONS,
                format!("{who} may not list {prefix}"),
            )));
        }
        Ok(Ok(prefix))
    }

    pub(super) fn list_handles(
        &self,
        c: &ListHandles,
        who: Option<&Identity>,
    ) -> Result<Outcome, RegistryError> {
        let prefix = match self.may_list(who, &c.prefix)? {
            Ok(p) => p,
            Err(o) => return Ok(o),
        };
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .registry
                .list_handles(&prefix, after.as_deref(), LIST_PAGE)?;
            let done = page.len() < LIST_PAGE;
            after = page.last().cloned();
            all.extend(page);
            if done {
                break;
            }
        }
        Ok(Outcome::Done(Done::Handles(all)))
    }

    /// Only the node's administrators home, unhome and list prefixes.
    fn node_admin<'a>(&self, who: Option<&'a Identity>) -> Result<&'a Identity, Outcome> {
        let Some(who) = who else {
            return Err(Outcome::NeedAuth);
        };
        if !self.is_node_admin(who) {
            return Err(refused(
                rc::INVALID_ADMIN,
                format!("{who} is not an administrator of this node"),
            ));
        }
        Ok(who)
    }

    pub(super) fn list_homed(&self, who: Option<&Identity>) -> Result<Outcome, RegistryError> {
        if let Err(o) = self.node_admin(who) {
            return Ok(o);
        }
        let handles = self
            .registry
            .prefixes()?
            .into_iter()
            .map(|p| format!("0.NA/{}", p.prefix))
            .collect();
        Ok(Outcome::Done(Done::Handles(handles)))
    }

    /// Homes (`home`) or unhomes the prefix `na` names.
    pub(super) fn change_home(
        &self,
        na: &str,
        home: bool,
        who: Option<&Identity>,
    ) -> Result<Outcome, RegistryError> {
        let who = match self.node_admin(who) {
            Ok(w) => w,
            Err(o) => return Ok(o),
        };
        let prefix = Handle::parse_lenient(na)
            .ok()
            .and_then(|h| h.described_prefix().map(str::to_string))
            .ok_or_else(|| {
                RegistryError::refused(
                    rc::INVALID_HANDLE,
                    format!("{na:?} is not a prefix handle 0.NA/P"),
                )
            })?;
        let mutation = if home {
            Mutation::Home {
                prefix,
                admins: Vec::new(),
            }
        } else {
            Mutation::Unhome { prefix }
        };
        self.write(na, who, mutation)?;
        Ok(Outcome::Done(Done::Nothing))
    }
}
