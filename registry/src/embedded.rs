//! The embedded [`Store`]: the registry's operations over the ordered key-value layer
//! ([`crate::kv`]: redb by default, sled behind the `sled` feature). One writer thread gathers
//! queued writes into group commits: each write runs the rules over a view of the store with
//! the group's earlier writes layered on top, a refused one does not abort the others, and
//! none is acknowledged before the group's one batch is durable.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;

use suyuan_codec::handle::key_of;
use suyuan_codec::tlog::Hash;

use crate::error::RegistryError;
use crate::kv::{Kv, Op, Table, open_embedded, prefix_end, table_key};
use crate::links::{alias_of, links_of, template_refs};
use crate::log::{Entry, LogState, LogSwitch, new_salt_key};
use crate::model::{Change, PrefixEntry, Record, Tombstone};
use crate::rules::{Applied, Effect, View, Write, plan};
use crate::store::{
    BacklinkPage, CommitWatcher, Committed, Reply, SCHEMA_VERSION, Store, StoreFuture, Ticket,
    block_on,
};
use crate::template::Template;

/// Writes gathered into one durable commit at most.
const MAX_GROUP: usize = 4096;

const META_SCHEMA: &[u8] = b"schema";
const META_SEQ: &[u8] = b"seq";
/// The transparency log's size (leaves durable) and the key its value salts derive from.
const META_LOG_SIZE: &[u8] = b"log_size";
const META_LOG_SALT: &[u8] = b"log_salt";

struct Job {
    write: Write,
    reply: Reply,
}

struct Shared {
    kv: Box<dyn Kv>,
    /// The last durable change's sequence number.
    last_seq: AtomicU64,
    /// Durable batches the writer committed since the store was opened.
    commits: AtomicU64,
    watchers: RwLock<Vec<CommitWatcher>>,
    log: LogSwitch,
    signer: crate::sign::SignerSlot,
}

/// The registry's store over an embedded ordered key-value backend.
pub struct KvStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("backend", &self.shared.kv.backend())
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

/// Leaves a chunk of the log holds: a group commit's leaves land in a few keys, and a proof's
/// read of one hash reads at most this many leaves' bytes (about 2.5 KB).
const LEAVES_PER_CHUNK: u64 = 32;

fn chunk_key(index: u64) -> Vec<u8> {
    table_key(Table::LogChunks, &(index / LEAVES_PER_CHUNK).to_be_bytes())
}

/// Bytes leaf `index` takes in its chunk: its change's seq and the hashes its append wrote
/// (the leaf hash and one for each complete subtree it closes).
fn leaf_len(index: u64) -> usize {
    8 + 32 * (1 + index.trailing_ones() as usize)
}

/// Leaf `index`'s change seq and stored hashes, read from its chunk.
fn leaf_in_chunk(chunk: &[u8], index: u64) -> Result<(u64, &[u8]), RegistryError> {
    let first = index - index % LEAVES_PER_CHUNK;
    let at: usize = (first..index).map(leaf_len).sum();
    let leaf = chunk
        .get(at..at + leaf_len(index))
        .ok_or_else(|| RegistryError::Corrupt(format!("transparency log: leaf {index}")))?;
    let (seq, hashes) = leaf.split_at(8);
    let seq = u64::from_be_bytes(<[u8; 8]>::try_from(seq).expect("8 bytes"));
    Ok((seq, hashes))
}

/// Appends leaf `index` to its chunk (empty when the leaf starts one).
fn push_leaf(chunk: &mut Vec<u8>, index: u64, seq: u64, hashes: &[Hash]) {
    debug_assert_eq!(leaf_len(index), 8 + 32 * hashes.len());
    chunk.extend_from_slice(&seq.to_be_bytes());
    for h in hashes {
        chunk.extend_from_slice(h);
    }
}

/// The log's durable size as `kv` holds it.
fn log_size_in(kv: &dyn Kv) -> Result<u64, RegistryError> {
    kv.get(&table_key(Table::Meta, META_LOG_SIZE))?
        .map_or(Ok(0), |v| u64_of(&v))
}

/// Reads chunks straight from `kv` (no group's writes above it), for [`chunk_of`] and
/// [`stored_hashes`].
fn chunks_in(
    kv: &dyn Kv,
) -> impl FnMut(&[u8]) -> Result<Option<Cow<'static, [u8]>>, RegistryError> + '_ {
    move |k| Ok(kv.get(k)?.map(Cow::Owned))
}

/// The chunk holding leaf `index`, or the store is damaged.
fn chunk_of<'a>(
    chunk: &mut impl FnMut(&[u8]) -> Result<Option<Cow<'a, [u8]>>, RegistryError>,
    index: u64,
) -> Result<Cow<'a, [u8]>, RegistryError> {
    chunk(&chunk_key(index))?
        .ok_or_else(|| RegistryError::Corrupt(format!("transparency log: leaf {index} is missing")))
}

/// The stored hashes at `indexes`, each read from the leaf whose append wrote it.
fn stored_hashes<'a>(
    indexes: &[u64],
    mut chunk: impl FnMut(&[u8]) -> Result<Option<Cow<'a, [u8]>>, RegistryError>,
) -> Result<Vec<Hash>, RegistryError> {
    let mut last: Option<(u64, Cow<'a, [u8]>)> = None;
    let mut out = Vec::with_capacity(indexes.len());
    for &i in indexes {
        let (n, off) = suyuan_codec::tlog::leaf_of_stored_hash(i);
        let c = match last.take() {
            Some((m, c)) if m == n / LEAVES_PER_CHUNK => c,
            _ => chunk_of(&mut chunk, n)?,
        };
        let (_, hashes) = leaf_in_chunk(&c, n)?;
        let at = usize::try_from(off)
            .unwrap_or(usize::MAX)
            .saturating_mul(32);
        let h = hashes
            .get(at..at.saturating_add(32))
            .and_then(|h| Hash::try_from(h).ok())
            .ok_or_else(|| RegistryError::Corrupt(format!("transparency log: stored hash {i}")))?;
        out.push(h);
        last = Some((n / LEAVES_PER_CHUNK, c));
    }
    Ok(out)
}

/// Moves the leaves of a store written before chunks (one key a leaf) into chunks, a batch of
/// whole chunks at a time: each batch is atomic, so an interrupted move resumes where it
/// stopped.
fn move_leaves_into_chunks(kv: &dyn Kv) -> Result<(), RegistryError> {
    let start = table_key(Table::LogLeaves, b"");
    let end = prefix_end(&start);
    loop {
        let page = kv.scan(&start, &end, 2048 * LEAVES_PER_CHUNK as usize)?;
        if page.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(page.len() + page.len() / 16);
        let mut chunk: Option<(u64, Vec<u8>)> = None;
        for (k, v) in page {
            let index = k
                .get(1..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| RegistryError::Corrupt("transparency log: a leaf's key".into()))?;
            if v.len() != leaf_len(index) {
                return Err(RegistryError::Corrupt(format!(
                    "transparency log: leaf {index}"
                )));
            }
            let mut c = match chunk.take() {
                Some((n, c)) if n == index / LEAVES_PER_CHUNK => c,
                Some((n, c)) => {
                    ops.push(Op::Put(chunk_key(n * LEAVES_PER_CHUNK), c));
                    Vec::new()
                }
                None => kv.get(&chunk_key(index))?.unwrap_or_default(),
            };
            c.extend_from_slice(&v);
            chunk = Some((index / LEAVES_PER_CHUNK, c));
            ops.push(Op::Delete(k));
        }
        if let Some((n, c)) = chunk {
            ops.push(Op::Put(chunk_key(n * LEAVES_PER_CHUNK), c));
        }
        kv.write(&ops)?;
    }
}

fn u64_of(b: &[u8]) -> Result<u64, RegistryError> {
    <[u8; 8]>::try_from(b)
        .map(u64::from_be_bytes)
        .map_err(|_| RegistryError::Corrupt("sequence counter".into()))
}

impl KvStore {
    /// Opens (creating if needed) the embedded store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        Self::new(open_embedded(dir)?)
    }

    pub fn new(kv: Box<dyn Kv>) -> Result<Self, RegistryError> {
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
        let log_salt = match kv.get(&table_key(Table::Meta, META_LOG_SALT))? {
            Some(v) => <[u8; 32]>::try_from(v.as_slice())
                .map_err(|_| RegistryError::Corrupt("transparency log salt key".into()))?,
            None => {
                let k = new_salt_key();
                kv.write(&[Op::Put(table_key(Table::Meta, META_LOG_SALT), k.to_vec())])?;
                k
            }
        };
        move_leaves_into_chunks(kv.as_ref())?;
        let shared = Arc::new(Shared {
            kv,
            last_seq: AtomicU64::new(last),
            commits: AtomicU64::new(0),
            watchers: RwLock::new(Vec::new()),
            log: LogSwitch::new(log_salt),
            signer: Default::default(),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("suyuan-registry-writer".into())
            .spawn(move || writer_loop(&s, rx))
            .map_err(|e| RegistryError::Storage(format!("cannot start the writer: {e}")))?;
        Ok(KvStore {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    fn kv(&self) -> &dyn Kv {
        self.shared.kv.as_ref()
    }

    fn stored_log_size(&self) -> Result<u64, RegistryError> {
        log_size_in(self.kv())
    }

    /// The entries of leaves `from..to` that the log holds, each remade from its change.
    fn entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, RegistryError> {
        let to = to.min(self.stored_log_size()?);
        let limit = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        let chunks = self.kv().scan(
            &chunk_key(from),
            &chunk_key(to.saturating_add(LEAVES_PER_CHUNK - 1)),
            limit / LEAVES_PER_CHUNK as usize + 2,
        )?;
        (from..to)
            .map(|i| {
                let c = usize::try_from(i / LEAVES_PER_CHUNK - from / LEAVES_PER_CHUNK)
                    .ok()
                    .and_then(|at| chunks.get(at))
                    .filter(|(k, _)| *k == chunk_key(i))
                    .ok_or_else(|| {
                        RegistryError::Corrupt(format!("transparency log: leaf {i} is missing"))
                    })?;
                let (seq, _) = leaf_in_chunk(&c.1, i)?;
                let c = self
                    .kv()
                    .get(&table_key(Table::Changes, &seq.to_be_bytes()))?
                    .ok_or_else(|| {
                        RegistryError::Corrupt(format!(
                            "transparency log: change {seq} of a leaf is missing"
                        ))
                    })?;
                Ok(Entry::bytes_of(
                    &Change::decode(&c)?,
                    &self.shared.log.salt_key(),
                ))
            })
            .collect()
    }

    /// The leaf of change `seq`: leaves are in the order of their changes, so a binary search
    /// over the entries' seqs finds it in O(log n) reads.
    fn find_leaf(&self, seq: u64) -> Result<Option<u64>, RegistryError> {
        let size = self.stored_log_size()?;
        let seq_at = |i: u64| -> Result<u64, RegistryError> {
            let c = chunk_of(&mut chunks_in(self.kv()), i)?;
            Ok(leaf_in_chunk(&c, i)?.0)
        };
        let (mut lo, mut hi) = (0u64, size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match seq_at(mid)?.cmp(&seq) {
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    fn rebuild_indexes(&self) -> Result<u64, RegistryError> {
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
                    ops.push(Op::Put(
                        backlink_key(&key_of(&l.target), &l.rel, key),
                        Vec::new(),
                    ));
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

impl Drop for KvStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn get_record(kv: &dyn Kv, key: &str) -> Result<Option<Record>, RegistryError> {
    kv.get(&table_key(Table::Records, key.as_bytes()))?
        .map(|v| Record::decode(&v))
        .transpose()
}

fn backlink_prefix(target_key: &str) -> Vec<u8> {
    let mut k = table_key(Table::Backlinks, target_key.as_bytes());
    k.push(0);
    k
}

fn backlink_key(target_key: &str, rel: &str, source_key: &[u8]) -> Vec<u8> {
    let mut k = backlink_prefix(target_key);
    k.extend_from_slice(rel.as_bytes());
    k.push(0);
    k.extend_from_slice(source_key);
    k
}

/// The value types the templates a record names declare as references (none without one).
fn reference_types(
    kv: &dyn Kv,
    cache: &mut BTreeMap<String, Vec<String>>,
    values: &[suyuan_codec::value::HandleValue],
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

/// The store with a group's writes not yet committed layered on top, so writes later in a
/// group see the earlier ones.
struct Overlay<'a> {
    kv: &'a dyn Kv,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The log's salt key while the log is on.
    log: Option<[u8; 32]>,
    signer: Option<Arc<dyn crate::sign::ValueSigner>>,
    /// The log's end as the group left it, once the group has read it: kept beside the
    /// writes, not in them, so a leaf costs no search of the writes.
    tail: Option<LogTail>,
}

/// The end of the log within a group: its size and the last chunk, which the group's next
/// leaf goes on unless that leaf starts a chunk.
struct LogTail {
    size: u64,
    /// The chunk's key and its leaves.
    key: Vec<u8>,
    chunk: Vec<u8>,
    /// Whether the group appended to the log.
    grew: bool,
}

impl Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.kv.get(key),
        }
    }

    fn put(&mut self, key: Vec<u8>, v: Vec<u8>) {
        self.writes.insert(key, Some(v));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// What `get` answers, borrowed from the group's writes when it is there.
    fn get_ref(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>, RegistryError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.as_deref().map(Cow::Borrowed)),
            None => Ok(self.kv.get(key)?.map(Cow::Owned)),
        }
    }

    /// The log's end, read from the store the first time the group asks. The chunk the next
    /// leaf goes on is read now, so that a read error refuses the write instead of shortening
    /// the chunk.
    fn tail(&mut self) -> Result<&mut LogTail, RegistryError> {
        if self.tail.is_none() {
            let size = log_size_in(self.kv)?;
            let chunk = if size % LEAVES_PER_CHUNK == 0 {
                Vec::new()
            } else {
                chunk_of(&mut chunks_in(self.kv), size)?.into_owned()
            };
            self.tail = Some(LogTail {
                size,
                key: chunk_key(size),
                chunk,
                grew: false,
            });
        }
        Ok(self.tail.as_mut().expect("just set"))
    }

    /// Appends leaf `index` (the log's size) to the tail, moving a full chunk into the writes.
    fn push_leaf(&mut self, index: u64, seq: u64, hashes: &[Hash]) {
        let Some(t) = self.tail.as_mut() else {
            // The leaf was planned from the tail, so it is there.
            return;
        };
        debug_assert_eq!(index, t.size);
        if index % LEAVES_PER_CHUNK == 0 && !t.chunk.is_empty() {
            let full = std::mem::take(&mut t.chunk);
            let key = std::mem::replace(&mut t.key, chunk_key(index));
            self.writes.insert(key, Some(full));
        }
        push_leaf(&mut t.chunk, index, seq, hashes);
        t.size = index + 1;
        t.grew = true;
    }

    /// The group's writes, the log's tail among them.
    fn into_ops(mut self) -> Vec<Op> {
        if let Some(t) = self.tail.take().filter(|t| t.grew) {
            self.writes.insert(t.key, Some(t.chunk));
            self.writes.insert(
                table_key(Table::Meta, META_LOG_SIZE),
                Some(t.size.to_be_bytes().to_vec()),
            );
        }
        self.writes
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => Op::Put(k, v),
                None => Op::Delete(k),
            })
            .collect()
    }

    /// Carries out one write's effects; returns the keys they make stale.
    fn carry_out(&mut self, effects: Vec<Effect>, stale: &mut Vec<String>) {
        for e in effects {
            stale.extend(e.touches());
            match e {
                Effect::PutRecord(r) => {
                    let k = table_key(Table::Records, key_of(&r.handle).as_bytes());
                    self.put(k, r.encode());
                }
                Effect::DeleteRecord(k) => self.delete(table_key(Table::Records, k.as_bytes())),
                Effect::PutBacklink {
                    target,
                    rel,
                    source,
                } => self.put(backlink_key(&target, &rel, source.as_bytes()), Vec::new()),
                Effect::DeleteBacklink {
                    target,
                    rel,
                    source,
                } => self.delete(backlink_key(&target, &rel, source.as_bytes())),
                Effect::PutAlias { alias, key } => self.put(
                    table_key(Table::Aliases, alias.as_bytes()),
                    key.into_bytes(),
                ),
                Effect::DeleteAlias(a) => self.delete(table_key(Table::Aliases, a.as_bytes())),
                Effect::PutTombstone(k, t) => {
                    self.put(table_key(Table::Tombstones, k.as_bytes()), t.encode())
                }
                Effect::DeleteTombstone(k) => {
                    self.delete(table_key(Table::Tombstones, k.as_bytes()))
                }
                Effect::PutPrefix(k, p) => {
                    self.put(table_key(Table::Prefixes, k.as_bytes()), p.encode())
                }
                Effect::DeletePrefix(k) => self.delete(table_key(Table::Prefixes, k.as_bytes())),
                Effect::Change(c) => {
                    self.put(table_key(Table::Changes, &c.seq.to_be_bytes()), c.encode())
                }
                Effect::LogLeaf {
                    index, seq, hashes, ..
                } => {
                    // The entry is remade from the change when it is read: only its seq and
                    // the hashes are kept (an entry that no longer matches its leaf hash
                    // is what a verifier catches).
                    self.push_leaf(index, seq, &hashes);
                }
            }
        }
    }
}

impl View for Overlay<'_> {
    fn log(&mut self) -> impl Future<Output = Result<Option<LogState>, RegistryError>> + Send {
        let state = match self.log {
            None => Ok(None),
            Some(salt_key) => self.tail().map(|t| {
                Some(LogState {
                    size: t.size,
                    salt_key,
                })
            }),
        };
        ready(state)
    }

    fn signer(&self) -> Option<Arc<dyn crate::sign::ValueSigner>> {
        self.signer.clone()
    }

    fn log_hashes(
        &mut self,
        indexes: &[u64],
    ) -> impl Future<Output = Result<Vec<Hash>, RegistryError>> + Send {
        let tail = self.tail.as_ref();
        ready(stored_hashes(indexes, |k| match tail {
            Some(t) if t.key == k => Ok(Some(Cow::Borrowed(t.chunk.as_slice()))),
            _ => self.get_ref(k),
        }))
    }

    fn indexed(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Record>, RegistryError>> + Send {
        self.record(key)
    }

    fn record(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Record>, RegistryError>> + Send {
        ready(
            self.get(&table_key(Table::Records, key.as_bytes()))
                .and_then(|v| v.map(|v| Record::decode(&v)).transpose()),
        )
    }

    fn alias(
        &mut self,
        alias: &str,
    ) -> impl Future<Output = Result<Option<String>, RegistryError>> + Send {
        ready(
            self.get(&table_key(Table::Aliases, alias.as_bytes()))
                .map(|v| v.map(|k| String::from_utf8_lossy(&k).into_owned())),
        )
    }

    fn prefix(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<PrefixEntry>, RegistryError>> + Send {
        ready(
            self.get(&table_key(Table::Prefixes, key.as_bytes()))
                .and_then(|v| v.map(|v| PrefixEntry::decode(&v)).transpose()),
        )
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
            log: shared.log.key(),
            signer: shared.signer.get(),
            tail: None,
        };
        let mut seq = shared.last_seq.load(Ordering::Acquire);
        let mut stale = Vec::new();
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            // The view's reads are ready at once, so this never parks.
            let r = block_on(plan(&mut group, seq + 1, &job.write)).map(|p| {
                if let Some(s) = p.seq {
                    seq = s;
                }
                group.carry_out(p.effects, &mut stale);
                Applied { seq: p.seq }
            });
            results.push(r);
        }
        let mut ops = group.into_ops();
        let committed = if ops.is_empty() {
            Ok(false)
        } else {
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
                if wrote {
                    let c = Committed { seq, keys: stale };
                    if let Ok(ws) = shared.watchers.read() {
                        for w in ws.iter() {
                            w(&c);
                        }
                    }
                }
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

fn now<T: Send + 'static>(r: Result<T, RegistryError>) -> StoreFuture<'static, T> {
    Box::pin(ready(r))
}

impl Store for KvStore {
    fn backend(&self) -> &'static str {
        self.shared.kv.backend()
    }

    fn submit(&self, write: Write) -> Ticket {
        let (reply, ticket) = Ticket::new();
        let sent = self.tx.lock().ok().and_then(|g| {
            g.as_ref()
                .map(|tx| tx.send(Job { write, reply }).map_err(|e| e.0.reply))
        });
        match sent {
            Some(Ok(())) => ticket,
            Some(Err(reply)) => {
                let _ = reply.send(Err(RegistryError::Closed));
                ticket
            }
            None => Ticket::ready(Err(RegistryError::Closed)),
        }
    }

    fn record(&self, key: &str) -> StoreFuture<'_, Option<Record>> {
        now(get_record(self.kv(), key))
    }

    fn prefix(&self, key: &str) -> StoreFuture<'_, Option<PrefixEntry>> {
        now(self
            .kv()
            .get(&table_key(Table::Prefixes, key.as_bytes()))
            .and_then(|v| v.map(|v| PrefixEntry::decode(&v)).transpose()))
    }

    fn prefixes(&self) -> StoreFuture<'_, Vec<PrefixEntry>> {
        let start = table_key(Table::Prefixes, b"");
        now(self
            .kv()
            .scan(&start, &prefix_end(&start), usize::MAX)
            .and_then(|page| page.iter().map(|(_, v)| PrefixEntry::decode(v)).collect()))
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<String>> {
        let base = table_key(Table::Records, format!("{prefix}/").as_bytes());
        let start = match after {
            Some(a) => {
                let mut k = table_key(Table::Records, a.as_bytes());
                k.push(0);
                k.max(base.clone())
            }
            None => base.clone(),
        };
        now(self
            .kv()
            .scan(&start, &prefix_end(&base), limit)
            .and_then(|page| {
                page.iter()
                    .map(|(_, v)| Record::decode(v).map(|r| r.handle))
                    .collect()
            }))
    }

    fn list_at(&self, prefix: &str, offset: u64, limit: usize) -> StoreFuture<'_, Vec<String>> {
        let base = table_key(Table::Records, format!("{prefix}/").as_bytes());
        let end = prefix_end(&base);
        let mut start = base;
        let mut skip = offset;
        // Skipped in chunks, so a deep page never holds more than a chunk in memory.
        now(loop {
            let want = usize::try_from(skip).unwrap_or(usize::MAX).min(1024);
            if want == 0 {
                break self.kv().scan(&start, &end, limit).and_then(|page| {
                    page.iter()
                        .map(|(_, v)| Record::decode(v).map(|r| r.handle))
                        .collect()
                });
            }
            let page = match self.kv().scan(&start, &end, want) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            let Some((last, _)) = page.last() else {
                break Ok(Vec::new());
            };
            skip -= page.len() as u64;
            start = last.clone();
            start.push(0);
        })
    }

    fn count(&self, prefix: &str) -> StoreFuture<'_, u64> {
        let base = table_key(Table::Records, format!("{prefix}/").as_bytes());
        let end = prefix_end(&base);
        let mut start = base;
        let mut n = 0u64;
        now(loop {
            let page = match self.kv().scan(&start, &end, 10_000) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            n += page.len() as u64;
            match page.last() {
                Some((k, _)) if page.len() == 10_000 => {
                    start = k.clone();
                    start.push(0);
                }
                _ => break Ok(n),
            }
        })
    }

    fn backlinks(
        &self,
        target: &str,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> StoreFuture<'_, BacklinkPage> {
        let base = backlink_prefix(target);
        let start = match cursor {
            Some(c) => {
                let mut k = c.to_vec();
                k.push(0);
                k.max(base.clone())
            }
            None => base.clone(),
        };
        now(self
            .kv()
            .scan(&start, &prefix_end(&base), limit)
            .map(|page| {
                let next = (page.len() == limit)
                    .then(|| page.last().map(|(k, _)| k.clone()))
                    .flatten();
                let out = page
                    .iter()
                    .map(|(k, _)| {
                        let rest = &k[base.len()..];
                        let mut parts = rest.splitn(2, |&b| b == 0);
                        let rel = String::from_utf8_lossy(parts.next().unwrap_or_default());
                        let src = String::from_utf8_lossy(parts.next().unwrap_or_default());
                        (rel.into_owned(), src.into_owned())
                    })
                    .collect();
                (out, next)
            }))
    }

    fn alias(&self, identifier: &str) -> StoreFuture<'_, Option<String>> {
        now(self
            .kv()
            .get(&table_key(Table::Aliases, identifier.as_bytes()))
            .map(|v| v.map(|k| String::from_utf8_lossy(&k).into_owned())))
    }

    fn tombstone(&self, key: &str) -> StoreFuture<'_, Option<Tombstone>> {
        now(self
            .kv()
            .get(&table_key(Table::Tombstones, key.as_bytes()))
            .and_then(|v| v.map(|v| Tombstone::decode(&v)).transpose()))
    }

    fn set_log(&self, on: bool) {
        self.shared.log.set(on);
    }

    fn set_signer(&self, signer: Option<Arc<dyn crate::sign::ValueSigner>>) {
        self.shared.signer.set(signer);
    }

    fn log_salt_key(&self) -> Option<[u8; 32]> {
        self.shared.log.key()
    }

    fn log_size(&self) -> StoreFuture<'_, u64> {
        now(self.stored_log_size())
    }

    fn log_hashes(&self, indexes: Vec<u64>) -> StoreFuture<'_, Vec<Hash>> {
        now(stored_hashes(&indexes, chunks_in(self.kv())))
    }

    fn log_entries(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<Vec<u8>>> {
        now(self.entries(from, to))
    }

    fn log_index(&self, seq: u64) -> StoreFuture<'_, Option<u64>> {
        now(self.find_leaf(seq))
    }

    fn changes_since(&self, from: u64, limit: usize) -> StoreFuture<'_, Vec<Change>> {
        let start = table_key(Table::Changes, &from.to_be_bytes());
        let end = prefix_end(&table_key(Table::Changes, b""));
        now(self
            .kv()
            .scan(&start, &end, limit)
            .and_then(|page| page.iter().map(|(_, v)| Change::decode(v)).collect()))
    }

    fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Acquire)
    }

    fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Acquire)
    }

    fn watch(&self, watcher: CommitWatcher) {
        if let Ok(mut ws) = self.shared.watchers.write() {
            ws.push(watcher);
        }
    }

    fn reindex(&self) -> StoreFuture<'_, u64> {
        now(self.rebuild_indexes())
    }

    fn close(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut g| g.take()) {
            let _ = h.join();
        }
    }
}
