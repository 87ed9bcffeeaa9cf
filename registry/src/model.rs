//! What the registry stores, and its byte layouts: records (the handle as created plus its
//! values in the wire encoding, so nothing is lost or reinterpreted), changes, tombstones,
//! prefixes and identities.

use std::fmt;

use serde::Serialize;
use suyuan_codec::value::{HandleValue, encode_values};
use suyuan_codec::wire::{Reader, Writer, len_u32};

use crate::error::RegistryError;
use crate::links::Link;

/// An identity as written everywhere: `index:handle`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub index: u32,
    pub handle: String,
}

impl Identity {
    pub fn new(index: u32, handle: impl Into<String>) -> Self {
        Identity {
            index,
            handle: handle.into(),
        }
    }

    /// Parses `index:handle`.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let (i, h) = s.split_once(':').ok_or_else(|| {
            RegistryError::refused(
                suyuan_codec::message::rc::INVALID_ADMIN,
                format!("{s:?} is not index:handle"),
            )
        })?;
        let index = i.parse().map_err(|_| {
            RegistryError::refused(
                suyuan_codec::message::rc::INVALID_ADMIN,
                format!("{s:?}: bad index"),
            )
        })?;
        if h.is_empty() {
            return Err(RegistryError::refused(
                suyuan_codec::message::rc::INVALID_ADMIN,
                format!("{s:?}: empty handle"),
            ));
        }
        Ok(Identity::new(index, h))
    }

    /// Same identity under the ASCII case folding of handles.
    pub fn same_as(&self, other: &Identity) -> bool {
        self.index == other.index && self.handle.eq_ignore_ascii_case(&other.handle)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.index, self.handle)
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The handle as it was spelled when created.
    pub handle: String,
    pub values: Vec<HandleValue>,
    /// Sequence number of the change that wrote this version.
    pub seq: u64,
    /// The links this version had when written (with the template of that moment), so the
    /// reverse index is maintained from exactly what was indexed.
    pub links: Vec<Link>,
}

const RECORD_FORMAT: u8 = 1;

fn corrupt(what: &str, e: impl fmt::Display) -> RegistryError {
    RegistryError::Corrupt(format!("{what}: {e}"))
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 + self.values.iter().map(|v| v.encoded_len()).sum::<usize>());
        out.put_u8(RECORD_FORMAT);
        out.put_u64(self.seq);
        out.put_str(&self.handle);
        encode_values(&self.values, &mut out);
        out.put_u32(len_u32(self.links.len()));
        for l in &self.links {
            out.put_str(&l.rel);
            out.put_str(&l.target);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, RegistryError> {
        let mut r = Reader::new(b);
        let e = |e| corrupt("record", e);
        let fmt = r.u8("record format").map_err(e)?;
        if fmt != RECORD_FORMAT {
            return Err(corrupt("record", format!("unknown format {fmt}")));
        }
        let seq = r.u64("seq").map_err(e)?;
        let handle = r.str("handle").map_err(e)?.to_string();
        let values = decode_values(&mut r).map_err(e)?;
        let n = r.count(8, "links").map_err(e)?;
        let mut links = Vec::with_capacity(n);
        for _ in 0..n {
            let rel = r.str("rel").map_err(e)?.to_string();
            let target = r.str("target").map_err(e)?.to_string();
            links.push(Link { rel, target });
        }
        Ok(Record {
            handle,
            values,
            seq,
            links,
        })
    }

    /// Equal as a create compares records: same values in index, type, data, TTL,
    /// permissions and references; timestamps ignored; order of values ignored.
    pub fn same_values(a: &[HandleValue], b: &[HandleValue]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut a: Vec<&HandleValue> = a.iter().collect();
        let mut b: Vec<&HandleValue> = b.iter().collect();
        a.sort_by_key(|v| v.index);
        b.sort_by_key(|v| v.index);
        a.iter().zip(&b).all(|(x, y)| x.same_content(y))
    }
}

fn decode_values(r: &mut Reader<'_>) -> Result<Vec<HandleValue>, suyuan_codec::DecodeError> {
    let n = r.count(suyuan_codec::value::MIN_VALUE_SIZE, "values")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(HandleValue::decode_from(r)?);
    }
    Ok(v)
}

/// What a change did. The numbers are the replication actions of the reference's
/// transaction log, so mirrors can be fed from this log unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Create = 1,
    Delete = 2,
    Update = 3,
    Home = 4,
    Unhome = 5,
}

impl ChangeOp {
    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => ChangeOp::Create,
            2 => ChangeOp::Delete,
            3 => ChangeOp::Update,
            4 => ChangeOp::Home,
            5 => ChangeOp::Unhome,
            _ => return None,
        })
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Gap-free, from 1.
    pub seq: u64,
    /// Seconds since the epoch, as the writer's caller gave it.
    pub time: u64,
    pub actor: String,
    pub op: ChangeOp,
    /// The handle (or, for home/unhome, the prefix) as spelled.
    pub handle: String,
    /// The record after the change (none after a delete or for prefixes).
    pub values: Option<Vec<HandleValue>>,
}

impl Change {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u64(self.seq);
        out.put_u64(self.time);
        out.put_str(&self.actor);
        out.put_u8(self.op as u8);
        out.put_str(&self.handle);
        match &self.values {
            Some(v) => {
                out.put_u8(1);
                encode_values(v, &mut out);
            }
            None => out.put_u8(0),
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, RegistryError> {
        let mut r = Reader::new(b);
        let e = |e| corrupt("change", e);
        let seq = r.u64("seq").map_err(e)?;
        let time = r.u64("time").map_err(e)?;
        let actor = r.str("actor").map_err(e)?.to_string();
        let op = ChangeOp::from_u8(r.u8("op").map_err(e)?)
            .ok_or_else(|| corrupt("change", "unknown op"))?;
        let handle = r.str("handle").map_err(e)?.to_string();
        let values = match r.u8("has record").map_err(e)? {
            0 => None,
            _ => Some(decode_values(&mut r).map_err(e)?),
        };
        Ok(Change {
            seq,
            time,
            actor,
            op,
            handle,
            values,
        })
    }

    /// The change as it may leave the node for anything but its own mirrors (audit, escrow
    /// sync, the Merkle log): every HS_SECKEY value's data replaced by `sha256:<hex>`.
    pub fn for_export(&self) -> Change {
        let mut c = self.clone();
        if let Some(values) = &mut c.values {
            for v in values.iter_mut() {
                if let Some(e) = exported(v) {
                    *v = e;
                }
            }
        }
        c
    }
}

/// A value as it may leave the node: an HS_SECKEY value with `sha256:<hex>` for its data;
/// `None` for every other value, which leaves as it is.
pub fn exported(v: &HandleValue) -> Option<HandleValue> {
    use sha2::{Digest, Sha256};
    v.value_type
        .eq_ignore_ascii_case(suyuan_codec::value::types::HS_SECKEY)
        .then(|| HandleValue {
            data: format!("sha256:{}", hex_lower(&Sha256::digest(&v.data))).into_bytes(),
            ..v.clone()
        })
}

pub(crate) fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What remains of a deleted record, so a trace through it shows what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tombstone {
    pub handle: String,
    pub seq: u64,
    pub time: u64,
    pub actor: String,
}

impl Tombstone {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_str(&self.handle);
        out.put_u64(self.seq);
        out.put_u64(self.time);
        out.put_str(&self.actor);
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, RegistryError> {
        let mut r = Reader::new(b);
        let e = |e| corrupt("tombstone", e);
        Ok(Tombstone {
            handle: r.str("handle").map_err(e)?.to_string(),
            seq: r.u64("seq").map_err(e)?,
            time: r.u64("time").map_err(e)?,
            actor: r.str("actor").map_err(e)?.to_string(),
        })
    }
}

/// A homed prefix and the identities that administer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixEntry {
    pub prefix: String,
    pub admins: Vec<Identity>,
}

impl PrefixEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_str(&self.prefix);
        out.put_u32(len_u32(self.admins.len()));
        for a in &self.admins {
            out.put_str(&a.to_string());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, RegistryError> {
        let mut r = Reader::new(b);
        let e = |e| corrupt("prefix", e);
        let prefix = r.str("prefix").map_err(e)?.to_string();
        let n = r.count(4, "admins").map_err(e)?;
        let mut admins = Vec::with_capacity(n);
        for _ in 0..n {
            admins.push(
                Identity::parse(r.str("admin").map_err(e)?).map_err(|x| corrupt("prefix", x))?,
            );
        }
        Ok(PrefixEntry { prefix, admins })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let mut v = HandleValue::new(1, "URL", "https://example.org");
        v.timestamp = 5;
        let r = Record {
            handle: "88.888.1/Meter-1".into(),
            values: vec![v.clone()],
            seq: 9,
            links: vec![Link {
                rel: "mrv.measuredBy".into(),
                target: "88.888.1/m".into(),
            }],
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        let c = Change {
            seq: 3,
            time: 1_700_000_000,
            actor: "300:88.888.1/ADMIN".into(),
            op: ChangeOp::Update,
            handle: "88.888.1/x".into(),
            values: Some(vec![v, HandleValue::new(301, "HS_SECKEY", "secret")]),
        };
        assert_eq!(Change::decode(&c.encode()).unwrap(), c);
        let exported = c.for_export();
        let sec = &exported.values.as_ref().unwrap()[1];
        assert!(String::from_utf8_lossy(&sec.data).starts_with("sha256:2bb80d53"));
        let p = PrefixEntry {
            prefix: "88.888.1".into(),
            admins: vec![Identity::new(300, "88.888.1/ADMIN")],
        };
        assert_eq!(PrefixEntry::decode(&p.encode()).unwrap(), p);
        assert!(Record::decode(&[9, 9]).is_err());
    }

    #[test]
    fn identities() {
        let i = Identity::parse("300:88.888.1/ADMIN").unwrap();
        assert_eq!(i.to_string(), "300:88.888.1/ADMIN");
        assert!(i.same_as(&Identity::parse("300:88.888.1/admin").unwrap()));
        for bad in ["300", "x:88/a", "300:"] {
            assert!(Identity::parse(bad).is_err(), "{bad}");
        }
    }
}
