//! The mutation rules, written once for every backend: what a write may do (create modes,
//! value checks, templates, the vocabulary, aliases, tombstones) and which domain-level
//! effects it has (the record, its reverse links and aliases, the change). A backend runs them
//! inside its own transaction through a [`View`] of what that transaction sees, then carries
//! out the [`Effect`]s in the same transaction; none of these rules is repeated in a backend.

use std::future::Future;

use suyuan_codec::handle::{Handle, key_of};
use suyuan_codec::message::{HEADER_LEN, rc};
use suyuan_codec::tlog::{self, Hash};
use suyuan_codec::value::{
    AdminRecord, HandleValue, PublicKey, decode_value_list, duplicate_index, types,
};
use suyuan_codec::wire::MAX_MESSAGE_LENGTH;

use crate::error::RegistryError;
use crate::links::{Link, alias_of, attr, check_vocabulary, links_of, template_refs, text_of};
use crate::log::{Entry, LogState};
use crate::model::{Change, ChangeOp, Identity, PrefixEntry, Record, Tombstone};
use crate::template::Template;

/// Caps on what one record may hold, so one request cannot bloat the store.
pub const MAX_VALUES: usize = 10_000;
pub const MAX_VALUE_DATA: usize = 1 << 20;
/// Room kept in a resolution answer for what the node adds around the values: the longest
/// request digest (SHA-256 and its algorithm byte) and an HS_SIGNED credential with a
/// signature of up to 7,000-odd RSA bits, or the padding and IV of an encrypted session.
pub const ANSWER_RESERVE: usize = 33 + 1024;

/// How a create treats an existing handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// A Handle CREATE without OVRW: an existing handle is refused with RC 101.
    Plain,
    /// OVRW: replace; an equal record is success with nothing written.
    Overwrite,
    /// Import and device registration: absent creates, equal succeeds writing nothing,
    /// different is refused with RC 101.
    Register,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Create {
        handle: String,
        values: Vec<HandleValue>,
        mode: CreateMode,
    },
    Delete {
        handle: String,
    },
    /// ADD_VALUE; with `overwrite` (OVRW) existing indexes are replaced instead of refused.
    AddValues {
        handle: String,
        values: Vec<HandleValue>,
        overwrite: bool,
    },
    ModifyValues {
        handle: String,
        values: Vec<HandleValue>,
    },
    RemoveValues {
        handle: String,
        indexes: Vec<u32>,
    },
    Home {
        prefix: String,
        admins: Vec<Identity>,
    },
    Unhome {
        prefix: String,
    },
    /// Brings the indexes and the change log up to what another writer (a reference server on
    /// a shared database) stored for `handle` directly: nothing to do on a store only Suyuan
    /// writes.
    Reconcile {
        handle: String,
        /// Index it even when the indexed version holds the same values (a reindex, after
        /// the indexes were dropped).
        force: bool,
    },
}

/// A mutation with who does it and when (the caller's clock: the registry has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub mutation: Mutation,
    pub actor: String,
    /// Seconds since the epoch.
    pub time: u64,
}

/// What an acknowledged mutation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The change's sequence number; `None` when nothing needed writing (an equal record).
    pub seq: Option<u64>,
}

/// What the rules read, as the transaction they run in sees it (earlier writes of the same
/// group included). Keys are handle keys ([`key_of`]).
pub trait View: Send {
    fn record(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Record>, RegistryError>> + Send;
    /// The key of the handle `alias` is bound to.
    fn alias(
        &mut self,
        alias: &str,
    ) -> impl Future<Output = Result<Option<String>, RegistryError>> + Send;
    fn prefix(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<PrefixEntry>, RegistryError>> + Send;
    /// The version of the record the indexes were last built from: the record itself, unless
    /// another writer changed the stored values directly.
    fn indexed(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Record>, RegistryError>> + Send;
    /// The transparency log's state, `None` when the log is off.
    fn log(&mut self) -> impl Future<Output = Result<Option<LogState>, RegistryError>> + Send;
    /// The log's stored hashes at these indexes ([`suyuan_codec::tlog::stored_hash_index`]).
    fn log_hashes(
        &mut self,
        indexes: &[u64],
    ) -> impl Future<Output = Result<Vec<Hash>, RegistryError>> + Send;
    /// The signer of stored records, when the node signs them.
    fn signer(&self) -> Option<std::sync::Arc<dyn crate::sign::ValueSigner>>;
}

/// One domain-level write a mutation makes; a backend carries these out in order, in the
/// transaction the rules read from. Keys are handle keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Store this version of a record (its key is the key of `record.handle`).
    PutRecord(Record),
    DeleteRecord(String),
    PutBacklink {
        target: String,
        rel: String,
        source: String,
    },
    DeleteBacklink {
        target: String,
        rel: String,
        source: String,
    },
    /// Bind an identifier to the handle with key `key`.
    PutAlias {
        alias: String,
        key: String,
    },
    DeleteAlias(String),
    PutTombstone(String, Tombstone),
    DeleteTombstone(String),
    PutPrefix(String, PrefixEntry),
    DeletePrefix(String),
    /// Append the change (its `seq` is the next of the shared sequence).
    Change(Change),
    /// Append the change's leaf to the transparency log: its entry at `index` (the log's
    /// size before it), found by `seq`, and the stored hashes from `first_hash` on.
    LogLeaf {
        index: u64,
        seq: u64,
        entry: Vec<u8>,
        first_hash: u64,
        hashes: Vec<Hash>,
    },
}

impl Effect {
    /// The handle or prefix key whose cached answers this effect makes stale.
    pub fn touches(&self) -> Option<String> {
        match self {
            Effect::PutRecord(r) => Some(key_of(&r.handle)),
            Effect::DeleteRecord(k) | Effect::PutPrefix(k, _) | Effect::DeletePrefix(k) => {
                Some(k.clone())
            }
            _ => None,
        }
    }
}

/// What the rules decided for one write: its acknowledgement and its effects (none when
/// nothing needs writing).
#[derive(Debug, Default)]
pub struct Plan {
    pub seq: Option<u64>,
    pub effects: Vec<Effect>,
}

fn refused(code: u32, message: impl Into<String>) -> RegistryError {
    RegistryError::refused(code, message)
}

/// Syntax of a handle the registry will store: a valid handle under a prefix homed here.
async fn check_handle<V: View>(v: &mut V, handle: &str) -> Result<Handle, RegistryError> {
    let h = Handle::parse(handle).map_err(|e| refused(rc::INVALID_HANDLE, e.to_string()))?;
    if v.prefix(&key_of(h.prefix())).await?.is_none() {
        return Err(refused(
            rc::SERVER_NOT_RESP,
            format!("{handle}: prefix {} is not homed here", h.prefix()),
        ));
    }
    Ok(h)
}

/// The reference server's rules for values in a write: indexes positive and unique, sizes
/// bounded, typed data of the administrative types decodable.
fn check_values(handle: &str, values: &[HandleValue]) -> Result<(), RegistryError> {
    if values.len() > MAX_VALUES {
        return Err(refused(
            rc::INVALID_VALUE,
            format!("{handle}: {} values, more than {MAX_VALUES}", values.len()),
        ));
    }
    if let Some(i) = duplicate_index(values) {
        // The reference's code and words for a repeated index in one write.
        return Err(refused(
            rc::VALUE_ALREADY_EXISTS,
            format!("Index conflict for {i}"),
        ));
    }
    for v in values {
        if v.index == 0 {
            return Err(refused(
                rc::INVALID_VALUE,
                format!(
                    "{handle}: value index must be positive (type {})",
                    v.value_type
                ),
            ));
        }
        if v.data.len() > MAX_VALUE_DATA {
            return Err(refused(
                rc::INVALID_VALUE,
                format!(
                    "{handle}: value {} is {} bytes, more than {MAX_VALUE_DATA}",
                    v.index,
                    v.data.len()
                ),
            ));
        }
        if v.value_type.eq_ignore_ascii_case(types::HS_ADMIN)
            && AdminRecord::decode(&v.data).is_err()
        {
            return Err(refused(
                rc::INVALID_VALUE,
                format!("{handle}: value {} is not a valid HS_ADMIN", v.index),
            ));
        }
        if v.value_type.eq_ignore_ascii_case(types::HS_PUBKEY) {
            if let Err(e) = PublicKey::decode_usable(&v.data) {
                return Err(refused(
                    rc::INVALID_VALUE,
                    format!("{handle}: value {} is not a usable HS_PUBKEY: {e}", v.index),
                ));
            }
        }
        if v.value_type.eq_ignore_ascii_case(types::HS_VLIST) && decode_value_list(&v.data).is_err()
        {
            return Err(refused(
                rc::INVALID_VALUE,
                format!("{handle}: value {} is not a valid HS_VLIST", v.index),
            ));
        }
    }
    Ok(())
}

/// The bytes a resolution answer carrying every value of `handle`'s record takes (envelope
/// excluded, [`ANSWER_RESERVE`] included): what the TCP message cap is measured against.
pub fn resolution_answer_len(handle: &str, values: &[HandleValue]) -> usize {
    let body = 4 + handle.len() + 4 + values.iter().map(HandleValue::encoded_len).sum::<usize>();
    HEADER_LEN + body + ANSWER_RESERVE
}

/// A record must fit the Handle message that answers its resolution: the reference stores
/// records whose answer outgrows [`MAX_MESSAGE_LENGTH`] and then cannot serve them over TCP
/// (its own client refuses the answer), so a write that would build one is refused here, in
/// the one write path every surface shares (REST, the wire, import).
fn check_answer_fits(handle: &str, values: &[HandleValue]) -> Result<(), RegistryError> {
    let len = resolution_answer_len(handle, values);
    if len > MAX_MESSAGE_LENGTH {
        return Err(refused(
            rc::INVALID_VALUE,
            format!(
                "{handle}: the record would take {len} bytes in a resolution answer, more than \
                 the {MAX_MESSAGE_LENGTH} bytes one Handle message may carry over TCP"
            ),
        ));
    }
    Ok(())
}

fn stamp(values: &[HandleValue], time: u64) -> Vec<HandleValue> {
    let ts = u32::try_from(time).unwrap_or(u32::MAX);
    values
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.timestamp = ts;
            v
        })
        .collect()
}

/// Template validation, the vocabulary check and link extraction for the record `values` will
/// make. Every `mrv.templateRef` value, at whatever index, names a template the record must
/// follow.
async fn links_for<V: View>(
    v: &mut V,
    handle: &str,
    values: &[HandleValue],
) -> Result<Vec<Link>, RegistryError> {
    let mut references = Vec::new();
    let mut declared = Vec::new();
    for (tv, name) in template_refs(values) {
        let trec = v.record(&key_of(&name)).await?.ok_or_else(|| {
            refused(
                rc::INVALID_VALUE,
                format!(
                    "{handle}: template {name} (mrv.templateRef at index {}) does not exist",
                    tv.index
                ),
            )
        })?;
        let template = Template::from_values(&name, &trec.values)?;
        // The kinds of the records the template's references name, read before validating
        // (validation itself is synchronous).
        let mut kinds = std::collections::BTreeMap::new();
        for target in template.reference_targets(values) {
            let kind = v
                .record(&key_of(&target))
                .await?
                .and_then(|r| text_of(&r.values, attr::KIND).map(str::to_string));
            kinds.insert(target, kind);
        }
        let mut kind_of = |target: &str| -> Result<Option<String>, RegistryError> {
            Ok(kinds.get(target).cloned().flatten())
        };
        template.validate(handle, &name, values, &mut kind_of)?;
        references.extend(template.reference_types());
        declared.extend(template.attributes.iter().map(|a| a.value_type.clone()));
    }
    check_vocabulary(handle, values, &declared)?;
    Ok(links_of(values, &references))
}

/// The effects that drop what `old` put in the reverse link and alias indexes.
fn unindex(key: &str, old: &Record, out: &mut Vec<Effect>) {
    for l in &old.links {
        out.push(Effect::DeleteBacklink {
            target: key_of(&l.target),
            rel: l.rel.clone(),
            source: key.to_string(),
        });
    }
    for a in old.values.iter().filter_map(alias_of) {
        out.push(Effect::DeleteAlias(a));
    }
}

fn change(
    seq: u64,
    w: &Write,
    op: ChangeOp,
    handle: &str,
    values: Option<Vec<HandleValue>>,
) -> Effect {
    Effect::Change(Change {
        seq,
        time: w.time,
        actor: w.actor.clone(),
        op,
        handle: handle.to_string(),
        values,
    })
}

/// Writes `values` as the record of `h` (replacing `old`), with its indexes and change.
#[allow(clippy::too_many_arguments)]
async fn put_record<V: View>(
    v: &mut V,
    seq: u64,
    w: &Write,
    h: &Handle,
    old: Option<&Record>,
    mut values: Vec<HandleValue>,
    op: ChangeOp,
) -> Result<Plan, RegistryError> {
    let key = h.key();
    crate::links::read_bindings(h.as_str(), &mut values, &Default::default(), true)?;
    let values = match v.signer() {
        Some(s) => crate::sign::signed(&*s, h.as_str(), values, w.time),
        None => values,
    };
    check_answer_fits(h.as_str(), &values)?;
    crate::check::validate(h.as_str(), old.map(|o| o.values.as_slice()), &values)?;
    let links = links_for(v, h.as_str(), &values).await?;
    // Aliases: an identifier is bound to at most one handle.
    let new_aliases: Vec<String> = values.iter().filter_map(alias_of).collect();
    for a in &new_aliases {
        if let Some(other) = v.alias(a).await? {
            if other != key {
                return Err(refused(
                    rc::INVALID_VALUE,
                    format!("{h}: {a} is already bound to {other}"),
                ));
            }
        }
    }
    let mut effects = Vec::new();
    if let Some(old) = old {
        unindex(&key, old, &mut effects);
    }
    for l in &links {
        effects.push(Effect::PutBacklink {
            target: key_of(&l.target),
            rel: l.rel.clone(),
            source: key.clone(),
        });
    }
    for a in new_aliases {
        effects.push(Effect::PutAlias {
            alias: a,
            key: key.clone(),
        });
    }
    let spelling = old
        .map(|o| o.handle.clone())
        .unwrap_or_else(|| h.as_str().to_string());
    effects.push(Effect::PutRecord(Record {
        handle: spelling.clone(),
        values: values.clone(),
        seq,
        links,
    }));
    effects.push(Effect::DeleteTombstone(key));
    effects.push(change(seq, w, op, &spelling, Some(values)));
    Ok(Plan {
        seq: Some(seq),
        effects,
    })
}

async fn existing<V: View>(v: &mut V, h: &Handle) -> Result<Record, RegistryError> {
    v.record(&h.key())
        .await?
        .ok_or_else(|| refused(rc::HANDLE_NOT_FOUND, format!("{h}: handle not found")))
}

/// The rules for one write: refused, or its plan. `seq` is the sequence number its change
/// takes if it writes anything. When the log is on, a change's plan ends with its leaf: the
/// change is durable with its leaf or not at all.
pub async fn plan<V: View>(v: &mut V, seq: u64, w: &Write) -> Result<Plan, RegistryError> {
    let mut p = plan_write(v, seq, w).await?;
    let change = p.effects.iter().find_map(|e| match e {
        Effect::Change(c) => Some(c),
        _ => None,
    });
    if let Some(c) = change {
        if let Some(state) = v.log().await? {
            let leaf = log_leaf(v, &state, c).await?;
            p.effects.push(leaf);
        }
    }
    Ok(p)
}

/// The leaf of change `c` appended to the log of `state`.
async fn log_leaf<V: View>(
    v: &mut V,
    state: &LogState,
    c: &Change,
) -> Result<Effect, RegistryError> {
    let entry = Entry::bytes_of(c, &state.salt_key);
    // A tile's entry bundle gives each entry a 16-bit length.
    if entry.len() > usize::from(u16::MAX) {
        return Err(refused(
            rc::INVALID_VALUE,
            format!(
                "{}: the record has too many values for the transparency log (its entry would be {} bytes, at most 65,535)",
                c.handle,
                entry.len()
            ),
        ));
    }
    let n = state.size;
    let reads = tlog::append_reads(n);
    let old = v.log_hashes(&reads).await?;
    let hashes =
        tlog::stored_hashes_for_leaf(n, tlog::leaf_hash(&entry), &|_: &[u64]| Ok(old.clone()))
            .map_err(|e| RegistryError::Corrupt(format!("transparency log: {e}")))?;
    Ok(Effect::LogLeaf {
        index: n,
        seq: c.seq,
        entry,
        first_hash: tlog::stored_hash_count(n),
        hashes,
    })
}

async fn plan_write<V: View>(v: &mut V, seq: u64, w: &Write) -> Result<Plan, RegistryError> {
    match &w.mutation {
        Mutation::Create {
            handle,
            values,
            mode,
        } => {
            let h = check_handle(v, handle).await?;
            check_values(handle, values)?;
            let old = v.record(&h.key()).await?;
            if let Some(old) = &old {
                let equal = Record::same_values(&old.values, values);
                match (mode, equal) {
                    (CreateMode::Plain, _) => {
                        return Err(refused(
                            rc::HANDLE_ALREADY_EXISTS,
                            format!("{handle}: handle already exists"),
                        ));
                    }
                    (CreateMode::Register, false) => {
                        return Err(refused(
                            rc::HANDLE_ALREADY_EXISTS,
                            format!("{handle}: already registered with different values"),
                        ));
                    }
                    (_, true) => return Ok(Plan::default()),
                    (CreateMode::Overwrite, false) => {}
                }
            }
            let op = if old.is_some() {
                ChangeOp::Update
            } else {
                ChangeOp::Create
            };
            put_record(v, seq, w, &h, old.as_ref(), stamp(values, w.time), op).await
        }
        Mutation::Delete { handle } => {
            let h =
                Handle::parse(handle).map_err(|e| refused(rc::INVALID_HANDLE, e.to_string()))?;
            let old = existing(v, &h).await?;
            let key = h.key();
            let mut effects = Vec::new();
            unindex(&key, &old, &mut effects);
            effects.push(Effect::DeleteRecord(key.clone()));
            effects.push(Effect::PutTombstone(
                key,
                Tombstone {
                    handle: old.handle.clone(),
                    seq,
                    time: w.time,
                    actor: w.actor.clone(),
                },
            ));
            effects.push(change(seq, w, ChangeOp::Delete, &old.handle, None));
            Ok(Plan {
                seq: Some(seq),
                effects,
            })
        }
        Mutation::AddValues {
            handle,
            values,
            overwrite,
        } => {
            let h = check_handle(v, handle).await?;
            check_values(handle, values)?;
            let old = existing(v, &h).await?;
            let mut merged: Vec<HandleValue> = Vec::with_capacity(old.values.len() + values.len());
            for o in &old.values {
                match values.iter().find(|n| n.index == o.index) {
                    Some(_) if !overwrite => {
                        // The reference's words.
                        return Err(refused(
                            rc::VALUE_ALREADY_EXISTS,
                            format!("Index conflict for {}", o.index),
                        ));
                    }
                    Some(_) => {}
                    None => merged.push(o.clone()),
                }
            }
            merged.extend(stamp(values, w.time));
            merged.sort_by_key(|v| v.index);
            check_values(handle, &merged)?;
            put_record(v, seq, w, &h, Some(&old), merged, ChangeOp::Update).await
        }
        Mutation::ModifyValues { handle, values } => {
            let h = check_handle(v, handle).await?;
            check_values(handle, values)?;
            let old = existing(v, &h).await?;
            if let Some(n) = values
                .iter()
                .find(|n| !old.values.iter().any(|o| o.index == n.index))
            {
                return Err(refused(
                    rc::VALUES_NOT_FOUND,
                    format!("{handle}: no value at index {}", n.index),
                ));
            }
            let stamped = stamp(values, w.time);
            let merged: Vec<HandleValue> = old
                .values
                .iter()
                .map(|o| {
                    stamped
                        .iter()
                        .find(|n| n.index == o.index)
                        .unwrap_or(o)
                        .clone()
                })
                .collect();
            put_record(v, seq, w, &h, Some(&old), merged, ChangeOp::Update).await
        }
        Mutation::RemoveValues { handle, indexes } => {
            let h = check_handle(v, handle).await?;
            let old = existing(v, &h).await?;
            // An index that is not there refuses the whole removal, as the reference does
            // (HandleServer.doRemoveValue: RC 200).
            if let Some(i) = indexes
                .iter()
                .find(|i| !old.values.iter().any(|o| o.index == **i))
            {
                return Err(refused(
                    rc::VALUES_NOT_FOUND,
                    format!("{handle}: no value at index {i}"),
                ));
            }
            let kept: Vec<HandleValue> = old
                .values
                .iter()
                .filter(|o| !indexes.contains(&o.index))
                .cloned()
                .collect();
            put_record(v, seq, w, &h, Some(&old), kept, ChangeOp::Update).await
        }
        Mutation::Reconcile { handle, force } => reconcile(v, seq, w, handle, *force).await,
        Mutation::Home { prefix, admins } => {
            let p = prefix.trim();
            if p.is_empty() || p.contains('/') || p.chars().any(char::is_control) {
                return Err(refused(
                    rc::INVALID_HANDLE,
                    format!("{prefix:?} is not a prefix"),
                ));
            }
            let key = key_of(p);
            let found = v.prefix(&key).await?;
            let mut entry = found.clone().unwrap_or_else(|| PrefixEntry {
                prefix: p.to_string(),
                admins: Vec::new(),
            });
            for a in admins {
                if !entry.admins.iter().any(|x| x.same_as(a)) {
                    entry.admins.push(a.clone());
                }
            }
            if found.as_ref() == Some(&entry) {
                return Ok(Plan::default());
            }
            let name = entry.prefix.clone();
            Ok(Plan {
                seq: Some(seq),
                effects: vec![
                    Effect::PutPrefix(key, entry),
                    change(seq, w, ChangeOp::Home, &name, None),
                ],
            })
        }
        Mutation::Unhome { prefix } => {
            let key = key_of(prefix.trim());
            // Unhoming a prefix that is not homed succeeds and writes nothing, as the reference
            // server answers it: the state asked for already holds, and GenericBatch's UNHOME of
            // a list stops reporting failures for prefixes unhomed by an earlier run.
            let Some(entry) = v.prefix(&key).await? else {
                return Ok(Plan::default());
            };
            Ok(Plan {
                seq: Some(seq),
                effects: vec![
                    Effect::DeletePrefix(key),
                    change(seq, w, ChangeOp::Unhome, &entry.prefix, None),
                ],
            })
        }
    }
}

/// Another writer's version of a record, indexed as it is: it is already stored, so nothing in
/// it is refused; a template that is missing adds no reference types, and an alias bound to
/// another handle stays with that handle.
async fn reconcile<V: View>(
    v: &mut V,
    seq: u64,
    w: &Write,
    handle: &str,
    force: bool,
) -> Result<Plan, RegistryError> {
    let key = key_of(handle);
    let current = v.record(&key).await?;
    let indexed = v.indexed(&key).await?;
    let mut effects = Vec::new();
    let values = match (current, &indexed) {
        (None, None) => return Ok(Plan::default()),
        (None, Some(old)) => {
            unindex(&key, old, &mut effects);
            effects.push(Effect::DeleteRecord(key.clone()));
            effects.push(Effect::PutTombstone(
                key,
                Tombstone {
                    handle: old.handle.clone(),
                    seq,
                    time: w.time,
                    actor: w.actor.clone(),
                },
            ));
            effects.push(change(seq, w, ChangeOp::Delete, &old.handle, None));
            return Ok(Plan {
                seq: Some(seq),
                effects,
            });
        }
        (Some(cur), Some(old)) if !force && Record::same_values(&old.values, &cur.values) => {
            return Ok(Plan::default());
        }
        (Some(cur), _) => cur.values,
    };
    let mut references = Vec::new();
    for (_, name) in template_refs(&values) {
        if let Some(t) = v.record(&key_of(&name)).await? {
            if let Ok(t) = Template::from_values(&name, &t.values) {
                references.extend(t.reference_types());
            }
        }
    }
    let links = links_of(&values, &references);
    if let Some(old) = &indexed {
        unindex(&key, old, &mut effects);
    }
    for l in &links {
        effects.push(Effect::PutBacklink {
            target: key_of(&l.target),
            rel: l.rel.clone(),
            source: key.clone(),
        });
    }
    for a in values.iter().filter_map(alias_of) {
        match v.alias(&a).await? {
            Some(other) if other != key => {}
            _ => effects.push(Effect::PutAlias {
                alias: a,
                key: key.clone(),
            }),
        }
    }
    let spelling = indexed
        .as_ref()
        .map(|o| o.handle.clone())
        .unwrap_or_else(|| handle.to_string());
    let op = if indexed.is_some() {
        ChangeOp::Update
    } else {
        ChangeOp::Create
    };
    effects.push(Effect::PutRecord(Record {
        handle: spelling.clone(),
        values: values.clone(),
        seq,
        links,
    }));
    effects.push(Effect::DeleteTombstone(key));
    effects.push(change(seq, w, op, &spelling, Some(values)));
    Ok(Plan {
        seq: Some(seq),
        effects,
    })
}
