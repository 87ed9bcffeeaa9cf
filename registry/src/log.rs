//! The transparency log's leaves: every change of the change log is one, appended in the same
//! write path and the same durable batch as the change ([`crate::rules::plan`] adds the
//! [`crate::Effect::LogLeaf`] every backend carries out with the change's other effects).
//!
//! A leaf is an [`Entry`]: small, versioned, canonical, and revealing nothing a public reader
//! may not see. It names the change (seq, time, actor, op, handle) and, for each value of the
//! record after the change, its index, its type and SHA-256(salt ‖ the value's wire encoding).
//! The salt of a value is HMAC-SHA-256 of the store's own salt key over (seq, index), cut to
//! 16 bytes: unpredictable to anyone without the key (so a digest cannot be brute-forced from
//! a guess of the value), the same on every server of a shared store, recomputed when asked
//! and never stored or served except to a caller who may read the value.
//!
//! The tree itself is kept as [`suyuan_codec::tlog`] lays it out: every leaf hash and every
//! hash of a complete subtree stored once, so a proof reads O(log n) hashes.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use suyuan_codec::tlog::Hash;
use suyuan_codec::value::HandleValue;
use suyuan_codec::wire::{Reader, Writer, len_u32};

use suyuan_codec::message::rc;
use suyuan_codec::tlog::{self, HashReader, TILE_WIDTH, Tile, TlogError};

use crate::error::RegistryError;
use crate::model::{Change, ChangeOp};
use crate::store::{Registry, Store, block_on};

/// The entry layout's version: its first byte.
pub const ENTRY_VERSION: u8 = 1;
/// Bytes of a value's salt.
pub const SALT_LEN: usize = 16;
/// The most values an entry lists (a record cannot hold more in one Handle message).
const MAX_ENTRY_VALUES: usize = 10_000;

/// What the write path needs to append a leaf: the log's size before it and the salt key.
#[derive(Clone)]
pub struct LogState {
    pub size: u64,
    pub salt_key: [u8; 32],
}

impl std::fmt::Debug for LogState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        write!(f, "LogState {{ size: {} }}", self.size)
    }
}

/// A store's log switch and salt key: the key lives in the store (made when it is created),
/// the switch in the process (`log = false`, for comparisons only).
pub struct LogSwitch {
    salt_key: [u8; 32],
    on: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for LogSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        write!(f, "LogSwitch {{ on: {} }}", self.key().is_some())
    }
}

impl LogSwitch {
    /// On, with this salt key.
    pub fn new(salt_key: [u8; 32]) -> Self {
        LogSwitch {
            salt_key,
            on: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub fn set(&self, on: bool) {
        self.on.store(on, std::sync::atomic::Ordering::Release);
    }

    /// The salt key, on or off: what entries of changes logged earlier are remade with.
    pub fn salt_key(&self) -> [u8; 32] {
        self.salt_key
    }

    /// The salt key while the log is on.
    pub fn key(&self) -> Option<[u8; 32]> {
        self.on
            .load(std::sync::atomic::Ordering::Acquire)
            .then_some(self.salt_key)
    }
}

/// A new random salt key.
pub fn new_salt_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut k);
    k
}

/// The salt of value `index` in the version of a record change `seq` wrote.
pub fn salt(salt_key: &[u8; 32], seq: u64, index: u32) -> [u8; SALT_LEN] {
    Salts::new(salt_key).of(seq, index)
}

/// The HMAC keyed once, for the salts of many values: keying costs two of the four SHA-256
/// blocks a salt takes, so an entry's values share it.
struct Salts(Hmac<Sha256>);

impl Salts {
    fn new(salt_key: &[u8; 32]) -> Self {
        Salts(<Hmac<Sha256> as Mac>::new_from_slice(salt_key).expect("any key length"))
    }

    fn of(&self, seq: u64, index: u32) -> [u8; SALT_LEN] {
        let mut mac = self.0.clone();
        mac.update(b"suyuan-log-salt/v1");
        mac.update(&seq.to_be_bytes());
        mac.update(&index.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(&full[..SALT_LEN]);
        s
    }
}

/// SHA-256(salt ‖ the value's wire encoding): what the entry holds of a value.
pub fn value_digest(salt: &[u8], v: &HandleValue) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(v.encode());
    h.finalize().into()
}

/// One value of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryValue {
    pub index: u32,
    pub value_type: String,
    pub digest: Hash,
}

/// A leaf of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub time: u64,
    pub actor: String,
    pub op: ChangeOp,
    pub handle: String,
    /// The record after the change; none after a delete and for prefixes.
    pub values: Option<Vec<EntryValue>>,
}

/// The salted digests of `values`, the record change `seq` wrote, in their order.
fn digests<'a>(
    seq: u64,
    values: &'a [HandleValue],
    salt_key: &[u8; 32],
) -> impl ExactSizeIterator<Item = (&'a HandleValue, Hash)> + 'a {
    let salts = Salts::new(salt_key);
    values.iter().map(move |v| {
        let salt = salts.of(seq, v.index);
        let digest = match crate::model::exported(v) {
            Some(e) => value_digest(&salt, &e),
            None => value_digest(&salt, v),
        };
        (v, digest)
    })
}

/// An entry's canonical bytes from its parts.
fn encode<'a>(
    seq: u64,
    time: u64,
    actor: &str,
    op: ChangeOp,
    handle: &str,
    values: Option<impl ExactSizeIterator<Item = (u32, &'a str, Hash)>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + actor.len() + handle.len());
    out.put_u8(ENTRY_VERSION);
    out.put_u64(seq);
    out.put_u64(time);
    out.put_str(actor);
    out.put_u8(op as u8);
    out.put_str(handle);
    match values {
        Some(vs) => {
            out.put_u8(1);
            out.put_u32(len_u32(vs.len()));
            for (index, value_type, digest) in vs {
                out.put_u32(index);
                out.put_str(value_type);
                out.extend_from_slice(&digest);
            }
        }
        None => out.put_u8(0),
    }
    out
}

impl Entry {
    /// The entry of `c`, its values digested with their salts. HS_SECKEY data is taken in
    /// its exported form (`sha256:<hex>`), as everything that leaves the node takes it.
    pub fn of(c: &Change, salt_key: &[u8; 32]) -> Entry {
        Entry {
            seq: c.seq,
            time: c.time,
            actor: c.actor.clone(),
            op: c.op,
            handle: c.handle.clone(),
            values: c.values.as_ref().map(|vs| {
                digests(c.seq, vs, salt_key)
                    .map(|(v, digest)| EntryValue {
                        index: v.index,
                        value_type: v.value_type.clone(),
                        digest,
                    })
                    .collect()
            }),
        }
    }

    /// `Entry::of(c, salt_key).encode()`, without building the entry: what the write path
    /// appends for every change.
    pub fn bytes_of(c: &Change, salt_key: &[u8; 32]) -> Vec<u8> {
        let values = c.values.as_ref().map(|vs| {
            digests(c.seq, vs, salt_key).map(|(v, d)| (v.index, v.value_type.as_str(), d))
        });
        encode(c.seq, c.time, &c.actor, c.op, &c.handle, values)
    }

    /// The canonical bytes: version, seq, time, actor, op, handle, then a flag and the
    /// values (index, type, digest) in the record's order.
    pub fn encode(&self) -> Vec<u8> {
        let values = self.values.as_ref().map(|vs| {
            vs.iter()
                .map(|v| (v.index, v.value_type.as_str(), v.digest))
        });
        encode(
            self.seq,
            self.time,
            &self.actor,
            self.op,
            &self.handle,
            values,
        )
    }

    pub fn decode(b: &[u8]) -> Result<Entry, RegistryError> {
        let mut r = Reader::new(b);
        let e = |e| RegistryError::Corrupt(format!("log entry: {e}"));
        let version = r.u8("version").map_err(e)?;
        if version != ENTRY_VERSION {
            return Err(RegistryError::Corrupt(format!(
                "log entry: version {version}, this build reads {ENTRY_VERSION}"
            )));
        }
        let seq = r.u64("seq").map_err(e)?;
        let time = r.u64("time").map_err(e)?;
        let actor = r.str("actor").map_err(e)?.to_string();
        let op = ChangeOp::from_u8(r.u8("op").map_err(e)?)
            .ok_or_else(|| RegistryError::Corrupt("log entry: unknown op".into()))?;
        let handle = r.str("handle").map_err(e)?.to_string();
        let values = match r.u8("has values").map_err(e)? {
            0 => None,
            1 => {
                let n = r.u32("value count").map_err(e)? as usize;
                if n > MAX_ENTRY_VALUES {
                    return Err(RegistryError::Corrupt("log entry: too many values".into()));
                }
                let mut vs = Vec::with_capacity(n.min(b.len() / 40 + 1));
                for _ in 0..n {
                    let index = r.u32("index").map_err(e)?;
                    let value_type = r.str("type").map_err(e)?.to_string();
                    let d = r.take(32, "digest").map_err(e)?;
                    let mut digest = [0u8; 32];
                    digest.copy_from_slice(d);
                    vs.push(EntryValue {
                        index,
                        value_type,
                        digest,
                    });
                }
                Some(vs)
            }
            f => {
                return Err(RegistryError::Corrupt(format!(
                    "log entry: a values flag of {f} (0 or 1)"
                )));
            }
        };
        if !r.is_empty() {
            return Err(RegistryError::Corrupt("log entry: trailing bytes".into()));
        }
        Ok(Entry {
            seq,
            time,
            actor,
            op,
            handle,
            values,
        })
    }
}

/// The log's stored hashes read through a store, blocking (for the blocking threads).
struct StoreHashes<'a>(&'a dyn Store);

impl HashReader for StoreHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        block_on(self.0.log_hashes(indexes.to_vec())).map_err(|e| TlogError::Read(e.to_string()))
    }
}

fn tlog_error(e: TlogError) -> RegistryError {
    match e {
        TlogError::Invalid(m) => RegistryError::refused(rc::INVALID_VALUE, m),
        e => RegistryError::Corrupt(format!("transparency log: {e}")),
    }
}

/// The transparency log, read: what checkpoints, tiles and proofs are made of. Blocking.
impl Registry {
    /// Turns the log on or off for the writes that follow.
    pub fn set_log(&self, on: bool) {
        self.store().set_log(on);
    }

    /// Whether changes get leaves.
    pub fn log_on(&self) -> bool {
        self.store().log_salt_key().is_some()
    }

    /// The leaves appended and durable.
    pub fn log_size(&self) -> Result<u64, RegistryError> {
        block_on(self.store().log_size())
    }

    /// The root of the tree of the first `size` leaves.
    pub fn log_root(&self, size: u64) -> Result<Hash, RegistryError> {
        tlog::tree_hash(size, &StoreHashes(self.store().as_ref())).map_err(tlog_error)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn log_inclusion(&self, size: u64, index: u64) -> Result<Vec<Hash>, RegistryError> {
        tlog::inclusion_proof(size, index, &StoreHashes(self.store().as_ref())).map_err(tlog_error)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new`.
    pub fn log_consistency(&self, new: u64, old: u64) -> Result<Vec<Hash>, RegistryError> {
        tlog::consistency_proof(new, old, &StoreHashes(self.store().as_ref())).map_err(tlog_error)
    }

    /// A hash tile's bytes (its hashes in order), if the log of `size` leaves has it.
    pub fn log_tile(&self, tile: Tile, size: u64) -> Result<Option<Vec<u8>>, RegistryError> {
        if !tile.within(size) {
            return Ok(None);
        }
        let hashes = block_on(self.store().log_hashes(tile.hash_indexes()))?;
        Ok(Some(hashes.concat()))
    }

    /// An entry bundle's bytes (each entry after its big-endian u16 length), if the log of
    /// `size` leaves has it.
    pub fn log_entry_bundle(
        &self,
        tile: Tile,
        size: u64,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        if !(Tile { level: 0, ..tile }).within(size) {
            return Ok(None);
        }
        let from = tile.n * TILE_WIDTH;
        let entries = block_on(self.store().log_entries(from, from + tile.width))?;
        if entries.len() as u64 != tile.width {
            return Err(RegistryError::Corrupt(format!(
                "transparency log: entries {from}..{} are not all stored",
                from + tile.width
            )));
        }
        let mut out = Vec::new();
        for e in entries {
            let len = u16::try_from(e.len()).map_err(|_| {
                RegistryError::Corrupt("transparency log: an entry over 64 KiB".into())
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&e);
        }
        Ok(Some(out))
    }

    /// The entry of leaf `index`.
    pub fn log_entry(&self, index: u64) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(block_on(self.store().log_entries(index, index + 1))?
            .into_iter()
            .next())
    }

    /// The leaf index of change `seq`.
    pub fn log_index(&self, seq: u64) -> Result<Option<u64>, RegistryError> {
        block_on(self.store().log_index(seq))
    }

    /// The salt of value `index` of the version change `seq` wrote, while the log is on.
    pub fn log_salt(&self, seq: u64, index: u32) -> Option<[u8; SALT_LEN]> {
        self.store().log_salt_key().map(|k| salt(&k, seq, index))
    }
}

/// The fuzz property of the entry decoder (the `entry` target in `fuzz/`, replayed by a
/// stable test): never panics, and what decodes re-encodes exactly.
#[doc(hidden)]
pub fn fuzz_entry(data: &[u8]) {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(e.encode(), data, "an entry re-encodes exactly");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_hides_the_values() {
        let key = [9u8; 32];
        let secret = b"very secret reading 1234.5".to_vec();
        let c = Change {
            seq: 7,
            time: 1_795_509_286,
            actor: "300:88.888/ADMIN".into(),
            op: ChangeOp::Create,
            handle: "88.888/m-1".into(),
            values: Some(vec![
                HandleValue::new(1, "mrv.value", secret.clone()),
                HandleValue::new(2, "HS_SECKEY", b"pw".to_vec()),
            ]),
        };
        let e = Entry::of(&c, &key);
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        assert_eq!(
            Entry::bytes_of(&c, &key),
            bytes,
            "the write path's bytes are the entry's"
        );
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_slice()));
        let v = &c.values.as_ref().unwrap()[0];
        assert_eq!(
            e.values.as_ref().unwrap()[0].digest,
            value_digest(&salt(&key, 7, 1), v)
        );
        // Another seq or index, another salt; another key, another digest.
        assert_ne!(salt(&key, 7, 1), salt(&key, 8, 1));
        assert_ne!(salt(&key, 7, 1), salt(&key, 7, 2));
        assert_ne!(Entry::of(&c, &[1; 32]), e);
        assert!(Entry::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert!(Entry::decode(&v2).is_err());
    }
}
