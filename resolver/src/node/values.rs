//! Writes: create a handle, add, modify and remove values, delete a handle. Each checks what
//! the reference checks, in its order (the handle is ours, then who is calling, then the
//! record and the caller's permissions), and goes through the one write path.

use rand::RngCore;
use suyuan_codec::handle::Handle;
use suyuan_codec::message::rc;
use suyuan_codec::value::{HandleValue, admin_perm, duplicate_index, types};
use suyuan_registry::{CreateMode, Identity, Mutation, Record, RegistryError};

use super::command::Done;
use super::{ANONYMOUS, Inner, Outcome, not_found, refused};

/// Create a handle with these values (OC 100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub handle: String,
    pub values: Vec<HandleValue>,
    /// Replace a record that exists (OVRW).
    pub overwrite: bool,
    /// Append a random suffix to `handle` (MINT).
    pub mint: bool,
}

/// Add values to a record (OC 101); `overwrite` replaces values at the same indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddValues {
    pub handle: String,
    pub values: Vec<HandleValue>,
    pub overwrite: bool,
}

/// Replace values at their indexes (OC 103).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyValues {
    pub handle: String,
    pub values: Vec<HandleValue>,
}

/// Remove the values at these indexes (OC 102).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveValues {
    pub handle: String,
    pub indexes: Vec<u32>,
}

/// Delete a handle (OC 101).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub handle: String,
}

fn has_admin(values: &[HandleValue]) -> bool {
    values
        .iter()
        .any(|v| v.value_type.eq_ignore_ascii_case(types::HS_ADMIN))
}

impl Inner {
    /// The reference refuses a repeated index in a create or an add once it knows the prefix
    /// is served, before it asks who is calling.
    fn repeated_index(
        &self,
        handle: &str,
        values: &[HandleValue],
    ) -> Result<Option<Outcome>, RegistryError> {
        let Some(i) = duplicate_index(values) else {
            return Ok(None);
        };
        Ok(Some(match self.target(handle)? {
            Err(o) => o,
            Ok(_) => refused(rc::VALUE_ALREADY_EXISTS, format!("Index conflict for {i}")),
        }))
    }

    /// The caller, the handle and its record, for a change to a record that must exist: or
    /// the answer to give instead (a challenge, not served here, not found), in the
    /// reference's order.
    #[allow(clippy::type_complexity)]
    fn changing<'w>(
        &self,
        handle: &str,
        who: Option<&'w Identity>,
    ) -> Result<Result<(&'w Identity, Handle, Record), Outcome>, RegistryError> {
        let Some(who) = who else {
            return Ok(Err(Outcome::NeedAuth));
        };
        let (h, rec) = match self.target(handle)? {
            Ok(t) => t,
            Err(o) => return Ok(Err(o)),
        };
        Ok(match rec.as_ref() {
            Some(rec) => Ok((who, h, rec.clone())),
            None => Err(not_found()),
        })
    }

    pub(super) fn create(
        &self,
        c: &Create,
        who: Option<&Identity>,
    ) -> Result<Outcome, RegistryError> {
        if let Some(no) = self.repeated_index(&c.handle, &c.values)? {
            return Ok(no);
        }
        let Some(who) = who else {
            return Ok(Outcome::NeedAuth);
        };
        let h = match self.target(&c.handle)? {
            Ok((h, _)) => h,
            Err(o) => return Ok(o),
        };
        if !self.is_prefix_admin(who, h.prefix())? {
            return Ok(refused(
                rc::INVALID_ADMIN,
                format!("{who} may not create handles under {}", h.prefix()),
            ));
        }
        let handle = if c.mint {
            let mut b = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut b);
            format!(
                "{}{}",
                h.as_str(),
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        } else {
            h.as_str().to_string()
        };
        let mode = if c.overwrite {
            CreateMode::Overwrite
        } else {
            CreateMode::Plain
        };
        self.write(
            &handle,
            who,
            Mutation::Create {
                handle: handle.clone(),
                values: c.values.clone(),
                mode,
            },
        )?;
        Ok(Outcome::Done(Done::Created(handle)))
    }

    pub(super) fn add_values(
        &self,
        c: &AddValues,
        who: Option<&Identity>,
    ) -> Result<Outcome, RegistryError> {
        if let Some(no) = self.repeated_index(&c.handle, &c.values)? {
            return Ok(no);
        }
        let (who, h, existing) = match self.changing(&c.handle, who)? {
            Ok(t) => t,
            Err(o) => return Ok(o),
        };
        if let Some(no) = self.refuse_unless_may(
            who,
            &h,
            Some(&existing),
            has_admin(&c.values),
            (admin_perm::ADD_ADMIN, admin_perm::ADD_VALUE),
        )? {
            return Ok(no);
        }
        self.write(
            h.as_str(),
            who,
            Mutation::AddValues {
                handle: h.as_str().into(),
                values: c.values.clone(),
                overwrite: c.overwrite,
            },
        )?;
        Ok(Outcome::Done(Done::Nothing))
    }

    pub(super) fn remove_values(
        &self,
        c: &RemoveValues,
        who: Option<&Identity>,
    ) -> Result<Outcome, RegistryError> {
        let (who, h, rec) = match self.changing(&c.handle, who)? {
            Ok(t) => t,
            Err(o) => return Ok(o),
        };
        let removes_admin = rec.values.iter().any(|v| {
            c.indexes.contains(&v.index) && v.value_type.eq_ignore_ascii_case(types::HS_ADMIN)
        });
        if let Some(no) = self.refuse_unless_may(
            who,
            &h,
            Some(&rec),
            removes_admin,
            (admin_perm::REMOVE_ADMIN, admin_perm::REMOVE_VALUE),
        )? {
            return Ok(no);
        }
        self.write(
            h.as_str(),
            who,
            Mutation::RemoveValues {
                handle: h.as_str().into(),
                indexes: c.indexes.clone(),
            },
        )?;
        Ok(Outcome::Done(Done::Nothing))
    }

    pub(super) fn delete(
        &self,
        c: &Delete,
        who: Option<&Identity>,
    ) -> Result<Outcome, RegistryError> {
        let (who, h, rec) = match self.changing(&c.handle, who)? {
            Ok(t) => t,
            Err(o) => return Ok(o),
        };
        if !self.may(who, &h, Some(&rec), admin_perm::DELETE_HANDLE)? {
            return Ok(refused(
                rc::INSUFFICIENT_PERMISSIONS,
                format!("{who} may not delete {h}"),
            ));
        }
        self.write(
            h.as_str(),
            who,
            Mutation::Delete {
                handle: h.as_str().into(),
            },
        )?;
        Ok(Outcome::Done(Done::Nothing))
    }

    /// OC 103 (modify values) as the reference decides it. A value that allows public
    /// write may be replaced by anyone, authenticated or not, unless HS_ADMIN is involved on
    /// either side; a value administrators may not write is read-only for everyone (RC 401);
    /// several values at one index: the last one is written. An anonymous request that is
    /// not entirely public is challenged before anything about the record is told.
    pub(super) fn modify_values(
        &self,
        c: &ModifyValues,
        who: Option<&Identity>,
    ) -> Result<Outcome, RegistryError> {
        let (h, rec) = match self.target(&c.handle)? {
            Ok(t) => t,
            Err(o) => return Ok(o),
        };
        let mut last: Vec<HandleValue> = Vec::with_capacity(c.values.len());
        for v in c.values.iter().rev() {
            if !last.iter().any(|l| l.index == v.index) {
                last.push(v.clone());
            }
        }
        last.reverse();
        let is_admin = |v: &HandleValue| v.value_type.eq_ignore_ascii_case(types::HS_ADMIN);
        // Each new value with the value it replaces, None where the record has none.
        let pairs: Vec<(&HandleValue, Option<&HandleValue>)> = match rec.as_ref() {
            Some(rec) => last
                .iter()
                .map(|n| (n, rec.values.iter().find(|o| o.index == n.index)))
                .collect(),
            None => Vec::new(),
        };
        let public = rec.is_some()
            && !last.is_empty()
            && pairs.iter().all(|(n, o)| {
                o.is_some_and(|o| {
                    o.permissions.public_write()
                        && o.permissions.admin_write()
                        && !is_admin(o)
                        && !is_admin(n)
                })
            });
        let anonymous = Identity::new(0, ANONYMOUS);
        let who = match who {
            Some(w) => w,
            None if public => &anonymous,
            None => return Ok(Outcome::NeedAuth),
        };
        let Some(rec) = rec.as_ref() else {
            return Ok(not_found());
        };
        for (n, o) in &pairs {
            match o {
                None => return Ok(refused(rc::VALUES_NOT_FOUND, String::new())),
                // The reference's words.
                Some(o) if !o.permissions.admin_write() => {
                    return Ok(refused(
                        rc::INSUFFICIENT_PERMISSIONS,
                        format!("Value is read-only (index {})", n.index),
                    ));
                }
                Some(_) => {}
            }
        }
        if !public {
            let touches_admin = pairs
                .iter()
                .any(|(n, o)| is_admin(n) || o.is_some_and(is_admin));
            if let Some(no) = self.refuse_unless_may(
                who,
                &h,
                Some(rec),
                touches_admin,
                (admin_perm::MODIFY_ADMIN, admin_perm::MODIFY_VALUE),
            )? {
                return Ok(no);
            }
        }
        self.write(
            h.as_str(),
            who,
            Mutation::ModifyValues {
                handle: h.as_str().into(),
                values: last,
            },
        )?;
        Ok(Outcome::Done(Done::Nothing))
    }
}
