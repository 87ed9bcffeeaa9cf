//! The registry: one write path for every surface. Each mutation is one atomic unit that
//! updates the record, the reverse link index, the alias index and appends a change with a
//! gap-free sequence number; a single writer thread gathers queued mutations into group
//! commits (one durable batch for many mutations, a refused one not aborting the others) and
//! acknowledges none before its batch is durable.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use suyuan_codec::handle::{Handle, key_of};
use suyuan_codec::message::{HEADER_LEN, rc};
use suyuan_codec::value::{
    AdminRecord, HandleValue, PublicKey, decode_value_list, duplicate_index, types,
};
use suyuan_codec::wire::MAX_MESSAGE_LENGTH;

use crate::error::RegistryError;
use crate::kv::{Kv, Op, Table, open_embedded, prefix_end, table_key};
use crate::links::{Link, alias_of, attr, check_vocabulary, links_of, template_refs, text_of};
use crate::model::{Change, ChangeOp, Identity, PrefixEntry, Record, Tombstone};
use crate::template::Template;

/// The store layout this binary writes; a store with a higher one is refused.
pub const SCHEMA_VERSION: u32 = 1;
/// Mutations gathered into one durable commit at most.
const MAX_GROUP: usize = 4096;
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

/// The acknowledgement of a submitted write; it arrives once the write is durable (or refused).
#[derive(Debug)]
pub struct Ticket(mpsc::Receiver<Result<Applied, RegistryError>>);

impl Ticket {
    pub fn wait(self) -> Result<Applied, RegistryError> {
        self.0.recv().unwrap_or(Err(RegistryError::Closed))
    }
}

struct Job {
    write: Write,
    reply: mpsc::Sender<Result<Applied, RegistryError>>,
}

struct Shared {
    kv: Box<dyn Kv>,
    /// The last durable change's sequence number.
    last_seq: AtomicU64,
    /// Durable batches the writer committed since the store was opened.
    commits: AtomicU64,
}

/// One page of the reverse index: `(relation, source key)` pairs and the cursor of the next
/// page (none after the last).
pub type BacklinkPage = (Vec<(String, String)>, Option<Vec<u8>>);

/// The registry over an embedded store.
pub struct Registry {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("backend", &self.shared.kv.backend())
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

const META_SCHEMA: &[u8] = b"schema";
const META_SEQ: &[u8] = b"seq";

fn u64_of(b: &[u8]) -> Result<u64, RegistryError> {
    <[u8; 8]>::try_from(b)
        .map(u64::from_be_bytes)
        .map_err(|_| RegistryError::Corrupt("sequence counter".into()))
}

impl Registry {
    /// Opens (creating if needed) the store in `dir` with the embedded backend.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        Self::with_kv(open_embedded(dir)?)
    }

    pub fn with_kv(kv: Box<dyn Kv>) -> Result<Self, RegistryError> {
        match kv.get(&table_key(Table::Meta, META_SCHEMA))? {
            Some(v) => {
                let found = u32::from_be_bytes(
                    <[u8; 4]>::try_from(v.as_slice())
                        .map_err(|_| RegistryError::Corrupt("schema version".into()))?,
                );
                if found > SCHEMA_VERSION {
                    return Err(RegistryError::SchemaTooNew {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            None => kv.write(&[Op::Put(
                table_key(Table::Meta, META_SCHEMA),
                SCHEMA_VERSION.to_be_bytes().to_vec(),
            )])?,
        }
        let last = match kv.get(&table_key(Table::Meta, META_SEQ))? {
            Some(v) => u64_of(&v)?,
            None => 0,
        };
        let shared = Arc::new(Shared {
            kv,
            last_seq: AtomicU64::new(last),
            commits: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("suyuan-registry-writer".into())
            .spawn(move || writer_loop(&s, rx))
            .map_err(|e| RegistryError::Storage(format!("cannot start the writer: {e}")))?;
        Ok(Registry {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn backend(&self) -> &'static str {
        self.shared.kv.backend()
    }

    /// The last durable change. A cache may keep what it read only if this did not move while
    /// it read (see `Registry::get_consistent`).
    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Acquire)
    }

    /// Durable batches the writer has committed since the store was opened: with
    /// [`Registry::last_seq`], how well writes are grouped (fewer commits than changes).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Acquire)
    }

    /// Queues a write; the ticket is answered once it is durable or refused.
    pub fn submit(&self, write: Write) -> Ticket {
        let (reply, rx) = mpsc::channel();
        let sent = self.tx.lock().ok().and_then(|g| {
            g.as_ref().map(|tx| {
                tx.send(Job {
                    write,
                    reply: reply.clone(),
                })
            })
        });
        if !matches!(sent, Some(Ok(()))) {
            let _ = reply.send(Err(RegistryError::Closed));
        }
        Ticket(rx)
    }

    /// Writes and waits for durability.
    pub fn apply(&self, write: Write) -> Result<Applied, RegistryError> {
        self.submit(write).wait()
    }

    /// Many writes, each atomic on its own, sharing group commits; results in order.
    pub fn apply_batch(&self, writes: Vec<Write>) -> Vec<Result<Applied, RegistryError>> {
        let tickets: Vec<Ticket> = writes.into_iter().map(|w| self.submit(w)).collect();
        tickets.into_iter().map(Ticket::wait).collect()
    }

    /// Stops the writer after the queued writes; later writes answer `Closed`.
    pub fn close(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut g| g.take()) {
            let _ = h.join();
        }
    }

    fn kv(&self) -> &dyn Kv {
        self.shared.kv.as_ref()
    }

    // ---- reads ----

    pub fn get(&self, handle: &str) -> Result<Option<Record>, RegistryError> {
        get_record(self.kv(), &key_of(handle))
    }

    /// Resolution: the record's values at `indexes` or of `types` (see [`select_values`]), or
    /// `None` when the handle does not exist.
    pub fn resolve(
        &self,
        handle: &str,
        indexes: &[u32],
        types: &[String],
    ) -> Result<Option<Vec<HandleValue>>, RegistryError> {
        Ok(self.get(handle)?.map(|r| {
            select_values(&r.values, indexes, types)
                .into_iter()
                .cloned()
                .collect()
        }))
    }

    /// A read a cache may keep: the record, and the change sequence number it is current at
    /// when no write committed while it was read (if one did, the value may be older than an
    /// acknowledged write and must not be cached). A cache that inserts it must then check
    /// [`Registry::last_seq`] again and evict it if that moved: a write can commit, and evict,
    /// between this read and the insert.
    pub fn get_consistent(
        &self,
        handle: &str,
    ) -> Result<(Option<Record>, Option<u64>), RegistryError> {
        let before = self.last_seq();
        let r = self.get(handle)?;
        Ok((r, (self.last_seq() == before).then_some(before)))
    }

    pub fn prefix(&self, prefix: &str) -> Result<Option<PrefixEntry>, RegistryError> {
        self.kv()
            .get(&table_key(Table::Prefixes, key_of(prefix).as_bytes()))?
            .map(|v| PrefixEntry::decode(&v))
            .transpose()
    }

    pub fn is_homed(&self, prefix: &str) -> Result<bool, RegistryError> {
        Ok(self.prefix(prefix)?.is_some())
    }

    pub fn prefixes(&self) -> Result<Vec<PrefixEntry>, RegistryError> {
        let start = table_key(Table::Prefixes, b"");
        self.kv()
            .scan(&start, &prefix_end(&start), usize::MAX)?
            .iter()
            .map(|(_, v)| PrefixEntry::decode(v))
            .collect()
    }

    /// Handles under `prefix` in key order, as spelled when created, after the handle
    /// `after` (exclusive), at most `limit`.
    pub fn list_handles(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let base = table_key(Table::Records, format!("{}/", key_of(prefix)).as_bytes());
        let start = match after {
            Some(a) => {
                let mut k = table_key(Table::Records, key_of(a).as_bytes());
                k.push(0);
                k.max(base.clone())
            }
            None => base.clone(),
        };
        self.kv()
            .scan(&start, &prefix_end(&base), limit)?
            .iter()
            .map(|(_, v)| Record::decode(v).map(|r| r.handle))
            .collect()
    }

    pub fn count_handles(&self, prefix: &str) -> Result<u64, RegistryError> {
        let base = table_key(Table::Records, format!("{}/", key_of(prefix)).as_bytes());
        let end = prefix_end(&base);
        let mut start = base;
        let mut n = 0u64;
        loop {
            let page = self.kv().scan(&start, &end, 10_000)?;
            n += page.len() as u64;
            match page.last() {
                Some((k, _)) if page.len() == 10_000 => {
                    start = k.clone();
                    start.push(0);
                }
                _ => return Ok(n),
            }
        }
    }

    /// Changes with `seq >= from`, oldest first, at most `limit` (mirrors and audit read this).
    pub fn changes_since(&self, from: u64, limit: usize) -> Result<Vec<Change>, RegistryError> {
        let start = table_key(Table::Changes, &from.to_be_bytes());
        let end = prefix_end(&table_key(Table::Changes, b""));
        self.kv()
            .scan(&start, &end, limit)?
            .iter()
            .map(|(_, v)| Change::decode(v))
            .collect()
    }

    pub fn tombstone(&self, handle: &str) -> Result<Option<Tombstone>, RegistryError> {
        self.kv()
            .get(&table_key(Table::Tombstones, key_of(handle).as_bytes()))?
            .map(|v| Tombstone::decode(&v))
            .transpose()
    }

    /// The handle an OID, Ecode or GS1 identifier is bound to.
    pub fn alias(&self, identifier: &str) -> Result<Option<String>, RegistryError> {
        let k = table_key(
            Table::Aliases,
            identifier.trim().trim_end_matches('/').as_bytes(),
        );
        match self.kv().get(&k)? {
            Some(h) => Ok(self.get(&String::from_utf8_lossy(&h))?.map(|r| r.handle)),
            None => Ok(None),
        }
    }

    /// Records linking to `target` (reverse index), as `(relation, source key)`, in key order
    /// after `cursor`, at most `limit`: fan-out is paged, never loaded whole.
    pub fn backlinks(
        &self,
        target: &str,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> Result<BacklinkPage, RegistryError> {
        let base = backlink_prefix(target);
        let start = match cursor {
            Some(c) => {
                let mut k = c.to_vec();
                k.push(0);
                k
            }
            None => base.clone(),
        };
        let page = self.kv().scan(&start, &prefix_end(&base), limit)?;
        let next = (page.len() == limit)
            .then(|| page.last().map(|(k, _)| k.clone()))
            .flatten();
        let mut out = Vec::with_capacity(page.len());
        for (k, _) in &page {
            let rest = &k[base.len()..];
            let mut parts = rest.splitn(2, |&b| b == 0);
            let rel = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let src = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            out.push((rel, src));
        }
        Ok((out, next))
    }

    /// Rebuilds the link and alias indexes from the records (after templates change). Meant
    /// for a stopped node's store; returns the number of records indexed.
    pub fn reindex(&self) -> Result<u64, RegistryError> {
        let kv = self.kv();
        for t in [Table::Backlinks, Table::Aliases] {
            let start = table_key(t, b"");
            let end = prefix_end(&start);
            loop {
                let page = kv.scan(&start, &end, 10_000)?;
                if page.is_empty() {
                    break;
                }
                let ops: Vec<Op> = page.into_iter().map(|(k, _)| Op::Delete(k)).collect();
                kv.write(&ops)?;
            }
        }
        let start = table_key(Table::Records, b"");
        let end = prefix_end(&start);
        let mut cursor = start.clone();
        let mut n = 0;
        let mut cache = BTreeMap::new();
        loop {
            let page = kv.scan(&cursor, &end, 1000)?;
            let Some((last, _)) = page.last() else { break };
            cursor = last.clone();
            cursor.push(0);
            let mut ops = Vec::new();
            for (k, v) in &page {
                let mut rec = Record::decode(v)?;
                let extra = reference_types(kv, &mut cache, &rec.values)?;
                rec.links = links_of(&rec.values, &extra);
                let key = &k[1..];
                for l in &rec.links {
                    ops.push(Op::Put(backlink_key(&l.target, &l.rel, key), Vec::new()));
                }
                for a in rec.values.iter().filter_map(alias_of) {
                    ops.push(Op::Put(
                        table_key(Table::Aliases, a.as_bytes()),
                        key.to_vec(),
                    ));
                }
                ops.push(Op::Put(k.clone(), rec.encode()));
                n += 1;
            }
            kv.write(&ops)?;
        }
        Ok(n)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.close();
    }
}

/// The values a resolution selects: those at `indexes` or of `types` (OR-ed; a type ending in
/// `.` also matches its subtypes, ASCII case ignored), all of them when both are empty.
pub fn select_values<'a>(
    values: &'a [HandleValue],
    indexes: &[u32],
    types: &[String],
) -> Vec<&'a HandleValue> {
    values
        .iter()
        .filter(|v| {
            (indexes.is_empty() && types.is_empty())
                || indexes.contains(&v.index)
                || types.iter().any(|t| v.type_matches(t))
        })
        .collect()
}

fn get_record(kv: &dyn Kv, key: &str) -> Result<Option<Record>, RegistryError> {
    kv.get(&table_key(Table::Records, key.as_bytes()))?
        .map(|v| Record::decode(&v))
        .transpose()
}

fn backlink_prefix(target: &str) -> Vec<u8> {
    let mut k = table_key(Table::Backlinks, key_of(target).as_bytes());
    k.push(0);
    k
}

fn backlink_key(target: &str, rel: &str, source_key: &[u8]) -> Vec<u8> {
    let mut k = backlink_prefix(target);
    k.extend_from_slice(rel.as_bytes());
    k.push(0);
    k.extend_from_slice(source_key);
    k
}

/// The value types the templates a record names declare as references (none without one).
fn reference_types(
    kv: &dyn Kv,
    cache: &mut BTreeMap<String, Vec<String>>,
    values: &[HandleValue],
) -> Result<Vec<String>, RegistryError> {
    let mut out = Vec::new();
    for (_, name) in template_refs(values) {
        if let Some(r) = cache.get(&name) {
            out.extend_from_slice(r);
            continue;
        }
        let refs = match get_record(kv, &key_of(&name))? {
            Some(rec) => Template::from_values(&name, &rec.values)
                .map(|t| t.reference_types())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        out.extend_from_slice(&refs);
        cache.insert(name, refs);
    }
    Ok(out)
}

/// The writes of a group not yet committed, layered over the store, so mutations later in a
/// group see the earlier ones.
struct Overlay<'a> {
    kv: &'a dyn Kv,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.kv.get(key),
        }
    }
}

/// One mutation's writes, on top of the group's.
struct Tx<'o, 'a> {
    base: &'o Overlay<'a>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Tx<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }
    fn put(&mut self, key: Vec<u8>, v: Vec<u8>) {
        self.writes.insert(key, Some(v));
    }
    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }
    fn record(&self, key: &str) -> Result<Option<Record>, RegistryError> {
        self.get(&table_key(Table::Records, key.as_bytes()))?
            .map(|v| Record::decode(&v))
            .transpose()
    }
}

fn writer_loop(shared: &Shared, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let kv = shared.kv.as_ref();
        let mut group = Overlay {
            kv,
            writes: BTreeMap::new(),
        };
        let mut seq = shared.last_seq.load(Ordering::Acquire);
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let mut tx = Tx {
                base: &group,
                writes: BTreeMap::new(),
            };
            let r = apply_one(&mut tx, seq + 1, &job.write);
            if let Ok(Applied { seq: Some(s) }) = r {
                seq = s;
            }
            let writes = std::mem::take(&mut tx.writes);
            if r.is_ok() {
                group.writes.extend(writes);
            }
            results.push(r);
        }
        let committed = if group.writes.is_empty() {
            Ok(false)
        } else {
            let mut ops: Vec<Op> = group
                .writes
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => Op::Put(k, v),
                    None => Op::Delete(k),
                })
                .collect();
            ops.push(Op::Put(
                table_key(Table::Meta, META_SEQ),
                seq.to_be_bytes().to_vec(),
            ));
            kv.write(&ops).map(|()| true)
        };
        match committed {
            Ok(wrote) => {
                if wrote {
                    shared.commits.fetch_add(1, Ordering::AcqRel);
                }
                shared.last_seq.store(seq, Ordering::Release);
                for (job, r) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(r);
                }
            }
            Err(e) => {
                // Nothing of the group is durable: every write in it failed, refused or not.
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn refused(code: u32, message: impl Into<String>) -> RegistryError {
    RegistryError::refused(code, message)
}

/// Syntax of a handle the registry will store: a valid handle under a prefix homed here.
fn check_handle(tx: &Tx<'_, '_>, handle: &str) -> Result<Handle, RegistryError> {
    let h = Handle::parse(handle).map_err(|e| refused(rc::INVALID_HANDLE, e.to_string()))?;
    if tx
        .get(&table_key(Table::Prefixes, key_of(h.prefix()).as_bytes()))?
        .is_none()
    {
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

/// Template validation, the vocabulary check and link extraction for the record `values` will
/// make. Every `mrv.templateRef` value, at whatever index, names a template the record must
/// follow.
fn links_for(
    tx: &Tx<'_, '_>,
    handle: &str,
    values: &[HandleValue],
) -> Result<Vec<Link>, RegistryError> {
    let mut references = Vec::new();
    let mut declared = Vec::new();
    for (tv, name) in template_refs(values) {
        let trec = tx.record(&key_of(&name))?.ok_or_else(|| {
            refused(
                rc::INVALID_VALUE,
                format!(
                    "{handle}: template {name} (mrv.templateRef at index {}) does not exist",
                    tv.index
                ),
            )
        })?;
        let template = Template::from_values(&name, &trec.values)?;
        let mut kind_of = |target: &str| -> Result<Option<String>, RegistryError> {
            Ok(tx
                .record(&key_of(target))?
                .and_then(|r| text_of(&r.values, attr::KIND).map(str::to_string)))
        };
        template.validate(handle, &name, values, &mut kind_of)?;
        references.extend(template.reference_types());
        declared.extend(template.attributes.iter().map(|a| a.value_type.clone()));
    }
    check_vocabulary(handle, values, &declared)?;
    Ok(links_of(values, &references))
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

/// Writes `values` as the record of `h` (replacing `old`), with its indexes and change.
fn put_record(
    tx: &mut Tx<'_, '_>,
    seq: u64,
    w: &Write,
    h: &Handle,
    old: Option<&Record>,
    values: Vec<HandleValue>,
    op: ChangeOp,
) -> Result<Applied, RegistryError> {
    let key = h.key();
    check_answer_fits(h.as_str(), &values)?;
    let links = links_for(tx, h.as_str(), &values)?;
    // Aliases: an identifier is bound to at most one handle.
    let new_aliases: Vec<String> = values.iter().filter_map(alias_of).collect();
    for a in &new_aliases {
        if let Some(other) = tx.get(&table_key(Table::Aliases, a.as_bytes()))? {
            if other != key.as_bytes() {
                return Err(refused(
                    rc::INVALID_VALUE,
                    format!(
                        "{}: {a} is already bound to {}",
                        h,
                        String::from_utf8_lossy(&other)
                    ),
                ));
            }
        }
    }
    if let Some(old) = old {
        for l in &old.links {
            tx.delete(backlink_key(&l.target, &l.rel, key.as_bytes()));
        }
        for a in old.values.iter().filter_map(alias_of) {
            tx.delete(table_key(Table::Aliases, a.as_bytes()));
        }
    }
    for l in &links {
        tx.put(backlink_key(&l.target, &l.rel, key.as_bytes()), Vec::new());
    }
    for a in &new_aliases {
        tx.put(
            table_key(Table::Aliases, a.as_bytes()),
            key.as_bytes().to_vec(),
        );
    }
    let spelling = old
        .map(|o| o.handle.clone())
        .unwrap_or_else(|| h.as_str().to_string());
    let rec = Record {
        handle: spelling.clone(),
        values: values.clone(),
        seq,
        links,
    };
    tx.put(table_key(Table::Records, key.as_bytes()), rec.encode());
    tx.delete(table_key(Table::Tombstones, key.as_bytes()));
    log(tx, seq, w, op, &spelling, Some(values));
    Ok(Applied { seq: Some(seq) })
}

fn log(
    tx: &mut Tx<'_, '_>,
    seq: u64,
    w: &Write,
    op: ChangeOp,
    handle: &str,
    values: Option<Vec<HandleValue>>,
) {
    let c = Change {
        seq,
        time: w.time,
        actor: w.actor.clone(),
        op,
        handle: handle.to_string(),
        values,
    };
    tx.put(table_key(Table::Changes, &seq.to_be_bytes()), c.encode());
}

fn existing(tx: &Tx<'_, '_>, h: &Handle) -> Result<Record, RegistryError> {
    tx.record(&h.key())?
        .ok_or_else(|| refused(rc::HANDLE_NOT_FOUND, format!("{h}: handle not found")))
}

fn apply_one(tx: &mut Tx<'_, '_>, seq: u64, w: &Write) -> Result<Applied, RegistryError> {
    match &w.mutation {
        Mutation::Create {
            handle,
            values,
            mode,
        } => {
            let h = check_handle(tx, handle)?;
            check_values(handle, values)?;
            let old = tx.record(&h.key())?;
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
                    (_, true) => return Ok(Applied { seq: None }),
                    (CreateMode::Overwrite, false) => {}
                }
            }
            let op = if old.is_some() {
                ChangeOp::Update
            } else {
                ChangeOp::Create
            };
            put_record(tx, seq, w, &h, old.as_ref(), stamp(values, w.time), op)
        }
        Mutation::Delete { handle } => {
            let h =
                Handle::parse(handle).map_err(|e| refused(rc::INVALID_HANDLE, e.to_string()))?;
            let old = existing(tx, &h)?;
            let key = h.key();
            for l in &old.links {
                tx.delete(backlink_key(&l.target, &l.rel, key.as_bytes()));
            }
            for a in old.values.iter().filter_map(alias_of) {
                tx.delete(table_key(Table::Aliases, a.as_bytes()));
            }
            tx.delete(table_key(Table::Records, key.as_bytes()));
            let t = Tombstone {
                handle: old.handle.clone(),
                seq,
                time: w.time,
                actor: w.actor.clone(),
            };
            tx.put(table_key(Table::Tombstones, key.as_bytes()), t.encode());
            log(tx, seq, w, ChangeOp::Delete, &old.handle, None);
            Ok(Applied { seq: Some(seq) })
        }
        Mutation::AddValues {
            handle,
            values,
            overwrite,
        } => {
            let h = check_handle(tx, handle)?;
            check_values(handle, values)?;
            let old = existing(tx, &h)?;
            let mut merged: Vec<HandleValue> = Vec::with_capacity(old.values.len() + values.len());
            for v in &old.values {
                match values.iter().find(|n| n.index == v.index) {
                    Some(_) if !overwrite => {
                        // The reference's words.
                        return Err(refused(
                            rc::VALUE_ALREADY_EXISTS,
                            format!("Index conflict for {}", v.index),
                        ));
                    }
                    Some(_) => {}
                    None => merged.push(v.clone()),
                }
            }
            merged.extend(stamp(values, w.time));
            merged.sort_by_key(|v| v.index);
            check_values(handle, &merged)?;
            put_record(tx, seq, w, &h, Some(&old), merged, ChangeOp::Update)
        }
        Mutation::ModifyValues { handle, values } => {
            let h = check_handle(tx, handle)?;
            check_values(handle, values)?;
            let old = existing(tx, &h)?;
            if let Some(v) = values
                .iter()
                .find(|n| !old.values.iter().any(|o| o.index == n.index))
            {
                return Err(refused(
                    rc::VALUES_NOT_FOUND,
                    format!("{handle}: no value at index {}", v.index),
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
            put_record(tx, seq, w, &h, Some(&old), merged, ChangeOp::Update)
        }
        Mutation::RemoveValues { handle, indexes } => {
            let h = check_handle(tx, handle)?;
            let old = existing(tx, &h)?;
            // An index that is not there refuses the whole removal, as the reference does
            // (HandleServer.doRemoveValue: RC 200).
            if let Some(i) = indexes
                .iter()
                .find(|i| !old.values.iter().any(|v| v.index == **i))
            {
                return Err(refused(
                    rc::VALUES_NOT_FOUND,
                    format!("{handle}: no value at index {i}"),
                ));
            }
            let kept: Vec<HandleValue> = old
                .values
                .iter()
                .filter(|v| !indexes.contains(&v.index))
                .cloned()
                .collect();
            put_record(tx, seq, w, &h, Some(&old), kept, ChangeOp::Update)
        }
        Mutation::Home { prefix, admins } => {
            let p = prefix.trim();
            if p.is_empty() || p.contains('/') || p.chars().any(char::is_control) {
                return Err(refused(
                    rc::INVALID_HANDLE,
                    format!("{prefix:?} is not a prefix"),
                ));
            }
            let key = table_key(Table::Prefixes, key_of(p).as_bytes());
            let mut entry = match tx.get(&key)? {
                Some(v) => PrefixEntry::decode(&v)?,
                None => PrefixEntry {
                    prefix: p.to_string(),
                    admins: Vec::new(),
                },
            };
            let before = entry.clone();
            for a in admins {
                if !entry.admins.iter().any(|x| x.same_as(a)) {
                    entry.admins.push(a.clone());
                }
            }
            if tx.get(&key)?.is_some() && entry == before {
                return Ok(Applied { seq: None });
            }
            tx.put(key, entry.encode());
            log(tx, seq, w, ChangeOp::Home, &entry.prefix, None);
            Ok(Applied { seq: Some(seq) })
        }
        Mutation::Unhome { prefix } => {
            let key = table_key(Table::Prefixes, key_of(prefix.trim()).as_bytes());
            // Unhoming a prefix that is not homed succeeds and writes nothing, as the reference
            // server answers it: the state asked for already holds, and GenericBatch's UNHOME of
            // a list stops reporting failures for prefixes unhomed by an earlier run.
            let Some(entry) = tx.get(&key)?.map(|v| PrefixEntry::decode(&v)).transpose()? else {
                return Ok(Applied { seq: None });
            };
            tx.delete(key);
            log(tx, seq, w, ChangeOp::Unhome, &entry.prefix, None);
            Ok(Applied { seq: Some(seq) })
        }
    }
}
