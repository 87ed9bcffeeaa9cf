//! The store at the registry's level, and the [`Registry`] every surface holds.
//!
//! A [`Store`] is one backend doing the registry's operations: apply a write (its
//! acknowledgement arrives asynchronously, once the write is durable or refused), read a
//! record, list under a prefix in pages, page through backlinks, aliases, tombstones, changes
//! since a sequence number, and tell who listens of committed changes. The mutation rules sit
//! above every backend, in [`crate::rules`]: a backend runs them in its own transaction and
//! carries out the effects they plan. Backends: [`crate::embedded`] (redb by default, sled
//! behind the `sled` feature) and [`crate::postgres`].
//!
//! [`Registry`] wraps a store with the handle-level API the node and the tools use, both
//! blocking (for code on blocking threads) and asynchronous.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use suyuan_codec::handle::key_of;
use suyuan_codec::value::HandleValue;

use crate::embedded::KvStore;
use crate::error::RegistryError;
use crate::kv::Kv;
use crate::model::{Change, PrefixEntry, Record, Tombstone};
pub use crate::rules::{
    ANSWER_RESERVE, Applied, CreateMode, MAX_VALUE_DATA, MAX_VALUES, Mutation, Write,
    resolution_answer_len,
};

/// The store layout this binary writes; a store with a higher one is refused.
pub const SCHEMA_VERSION: u32 = 2;

/// A backend's answer to come.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

/// One page of the reverse index: `(relation, source key)` pairs and the cursor of the next
/// page (none after the last). The cursor is the backend's own.
pub type BacklinkPage = (Vec<(String, String)>, Option<Vec<u8>>);

/// What one durable commit changed: the last sequence number it took and the handle and prefix
/// keys whose cached answers it made stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub seq: u64,
    pub keys: Vec<String>,
}

/// Called with every commit, before any write of it is acknowledged, and for commits by other
/// servers on a shared database before this server serves anything newer: a cache evicts here.
pub type CommitWatcher = Box<dyn Fn(&Committed) + Send + Sync>;

/// The registry's operations, as one backend does them. Keys are handle keys ([`key_of`]).
pub trait Store: Send + Sync + fmt::Debug + 'static {
    fn backend(&self) -> &'static str;
    /// Queues a write; the ticket is answered once it is durable or refused.
    fn submit(&self, write: Write) -> Ticket;
    fn record(&self, key: &str) -> StoreFuture<'_, Option<Record>>;
    fn prefix(&self, key: &str) -> StoreFuture<'_, Option<PrefixEntry>>;
    fn prefixes(&self) -> StoreFuture<'_, Vec<PrefixEntry>>;
    /// Handles under the prefix with key `prefix`, in key order, as spelled when created,
    /// after the handle with key `after` (exclusive), at most `limit`.
    fn list(&self, prefix: &str, after: Option<&str>, limit: usize)
    -> StoreFuture<'_, Vec<String>>;
    /// The page of that listing that starts `offset` handles in (offset pages, as the
    /// reference's REST API numbers them), at most `limit`.
    fn list_at(&self, prefix: &str, offset: u64, limit: usize) -> StoreFuture<'_, Vec<String>>;
    fn count(&self, prefix: &str) -> StoreFuture<'_, u64>;
    /// Records linking to `target`, as `(relation, source key)`, after `cursor`, at most
    /// `limit`: fan-out is paged, never loaded whole.
    fn backlinks(
        &self,
        target: &str,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> StoreFuture<'_, BacklinkPage>;
    /// The key of the handle an identifier (already normalised) is bound to.
    fn alias(&self, identifier: &str) -> StoreFuture<'_, Option<String>>;
    fn tombstone(&self, key: &str) -> StoreFuture<'_, Option<Tombstone>>;
    /// Changes with `seq >= from`, oldest first, at most `limit`.
    fn changes_since(&self, from: u64, limit: usize) -> StoreFuture<'_, Vec<Change>>;
    /// Turns the transparency log on or off for the writes that follow (on by default; off
    /// only for the benchmark's comparison: the changes written meanwhile get no leaves).
    fn set_log(&self, on: bool);
    /// Every record this store's write path stores is signed by `signer` (none: not signed).
    fn set_signer(&self, signer: Option<std::sync::Arc<dyn crate::sign::ValueSigner>>);
    /// The key the log's value salts derive from, while the log is on.
    fn log_salt_key(&self) -> Option<[u8; 32]>;
    /// The log's durable size: leaves appended.
    fn log_size(&self) -> StoreFuture<'_, u64>;
    /// The log's stored hashes at these indexes, in order.
    fn log_hashes(&self, indexes: Vec<u64>) -> StoreFuture<'_, Vec<suyuan_codec::tlog::Hash>>;
    /// The entries of leaves `from..to`.
    fn log_entries(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<Vec<u8>>>;
    /// The leaf index of change `seq`, if it has one.
    fn log_index(&self, seq: u64) -> StoreFuture<'_, Option<u64>>;
    /// The last committed change this server knows of (its own and, on a shared database,
    /// the others' once their commit reached it).
    fn last_seq(&self) -> u64;
    /// Durable commits this server made since it opened the store.
    fn commits(&self) -> u64;
    /// What the store takes on disk, when the store itself knows (a database; the embedded
    /// store's files are measured by whoever knows its directory).
    fn size_bytes(&self) -> Option<u64> {
        None
    }
    /// Registers a function called with every commit (see [`CommitWatcher`]).
    fn watch(&self, watcher: CommitWatcher);
    /// Rebuilds the link and alias indexes from the records; returns the records indexed.
    fn reindex(&self) -> StoreFuture<'_, u64>;
    /// Stops taking writes after the queued ones; later writes answer `Closed`.
    fn close(&self);
}

/// The acknowledgement of a submitted write: await it, or [`Ticket::wait`] on a thread that
/// may block.
#[derive(Debug)]
pub struct Ticket(tokio::sync::oneshot::Receiver<Result<Applied, RegistryError>>);

/// The sending half of a [`Ticket`], for backends.
pub type Reply = tokio::sync::oneshot::Sender<Result<Applied, RegistryError>>;

impl Ticket {
    pub fn new() -> (Reply, Ticket) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, Ticket(rx))
    }

    /// A ticket already answered.
    pub fn ready(r: Result<Applied, RegistryError>) -> Ticket {
        let (tx, t) = Ticket::new();
        let _ = tx.send(r);
        t
    }

    pub fn wait(self) -> Result<Applied, RegistryError> {
        block_on(self)
    }
}

impl Future for Ticket {
    type Output = Result<Applied, RegistryError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(RegistryError::Closed)))
    }
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread. The embedded store's futures are ready at once;
/// the PostgreSQL store's run their I/O on the store's own runtime, so blocking here never
/// starves it.
pub fn block_on<F: Future>(f: F) -> F::Output {
    // Outside tokio's budget: on a thread inside a runtime's context (a `#[tokio::main]`
    // thread), a budgeted channel would answer Pending and wake at once, forever.
    let mut f = std::pin::pin!(tokio::task::unconstrained(f));
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The registry: the handle-level API over one [`Store`].
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    /// The identifier schemes bindings are read by: the built-in ones and the operator's.
    schemes: Arc<std::sync::RwLock<Arc<suyuan_codec::scheme::Schemes>>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("backend", &self.store.backend())
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

impl Registry {
    /// Opens (creating if needed) the store in `dir` with the embedded backend.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        Ok(Self::with_store(Arc::new(KvStore::open(dir)?)))
    }

    pub fn with_kv(kv: Box<dyn Kv>) -> Result<Self, RegistryError> {
        Ok(Self::with_store(Arc::new(KvStore::new(kv)?)))
    }

    pub fn with_store(store: Arc<dyn Store>) -> Self {
        Registry {
            store,
            schemes: Default::default(),
        }
    }

    /// Reads bindings of the operator's schemes (`id.<name>`) by them from now on.
    pub fn set_schemes(&self, schemes: suyuan_codec::scheme::Schemes) {
        *self.schemes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(schemes);
    }

    /// The schemes bindings are read by.
    pub fn schemes(&self) -> Arc<suyuan_codec::scheme::Schemes> {
        self.schemes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// The last durable change. A cache may keep what it read only if this did not move while
    /// it read (see `Registry::get_consistent`).
    pub fn last_seq(&self) -> u64 {
        self.store.last_seq()
    }

    /// Durable commits since the store was opened: with [`Registry::last_seq`], how well
    /// writes are grouped (fewer commits than changes).
    pub fn commits(&self) -> u64 {
        self.store.commits()
    }

    pub fn size_bytes(&self) -> Option<u64> {
        self.store.size_bytes()
    }

    /// Queues a write; the ticket is answered once it is durable or refused.
    pub fn submit(&self, mut write: Write) -> Ticket {
        // Bindings of the operator's schemes are read here, where the configuration is.
        if let Mutation::Create { handle, values, .. }
        | Mutation::AddValues { handle, values, .. }
        | Mutation::ModifyValues { handle, values } = &mut write.mutation
        {
            let schemes = self.schemes();
            if let Err(e) = crate::links::read_bindings(handle, values, &schemes, false) {
                return Ticket::ready(Err(e));
            }
        }
        self.store.submit(write)
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
        self.store.close();
    }

    pub fn watch(&self, watcher: CommitWatcher) {
        self.store.watch(watcher);
    }

    /// The committed changes as a stream: every commit's [`Committed`] (this server's and, on a
    /// shared database, the others'), at least once and before the commit is acknowledged, for
    /// followers that may lag: a receiver that falls more
    /// than `capacity` commits behind is told so (`Lagged`) and reads the change log instead.
    pub fn subscribe(&self, capacity: usize) -> tokio::sync::broadcast::Receiver<Committed> {
        let (tx, rx) = tokio::sync::broadcast::channel(capacity.max(1));
        self.store.watch(Box::new(move |c| {
            let _ = tx.send(c.clone());
        }));
        rx
    }

    // ---- reads ----

    pub async fn get_async(&self, handle: &str) -> Result<Option<Record>, RegistryError> {
        self.store.record(&key_of(handle)).await
    }

    pub fn get(&self, handle: &str) -> Result<Option<Record>, RegistryError> {
        block_on(self.get_async(handle))
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
        block_on(self.store.prefix(&key_of(prefix)))
    }

    pub fn is_homed(&self, prefix: &str) -> Result<bool, RegistryError> {
        Ok(self.prefix(prefix)?.is_some())
    }

    pub fn prefixes(&self) -> Result<Vec<PrefixEntry>, RegistryError> {
        block_on(self.store.prefixes())
    }

    /// Handles under `prefix` in key order, as spelled when created, after the handle
    /// `after` (exclusive), at most `limit`.
    pub fn list_handles(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, RegistryError> {
        let after = after.map(key_of);
        block_on(self.store.list(&key_of(prefix), after.as_deref(), limit))
    }

    /// The handles under `prefix` from the `offset`-th on, at most `limit`, read as a page.
    pub fn list_page(
        &self,
        prefix: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<String>, RegistryError> {
        block_on(self.store.list_at(&key_of(prefix), offset, limit))
    }

    pub fn count_handles(&self, prefix: &str) -> Result<u64, RegistryError> {
        block_on(self.store.count(&key_of(prefix)))
    }

    /// Changes with `seq >= from`, oldest first, at most `limit` (mirrors and audit read this).
    pub fn changes_since(&self, from: u64, limit: usize) -> Result<Vec<Change>, RegistryError> {
        block_on(self.store.changes_since(from, limit))
    }

    pub fn tombstone(&self, handle: &str) -> Result<Option<Tombstone>, RegistryError> {
        block_on(self.store.tombstone(&key_of(handle)))
    }

    /// The handle an OID, Ecode or GS1 identifier is bound to. An identifier its scheme
    /// recognises is looked up in its normal form (a wrong check digit finds nothing);
    /// anything else as written, trimmed.
    pub fn alias(&self, identifier: &str) -> Result<Option<String>, RegistryError> {
        match self.bound(identifier) {
            Some(Err(RegistryError::Refused { .. })) | None => {
                self.bound_to(identifier.trim().trim_end_matches('/'))
            }
            Some(r) => r,
        }
    }

    /// What an input with an identifier scheme's marker names: `None` when it carries none,
    /// a refusal (RC 202, saying what is wrong) when its scheme refuses it, else the handle
    /// it is bound to, if any.
    pub fn bound(&self, input: &str) -> Option<Result<Option<String>, RegistryError>> {
        Some(match self.schemes().recognise(input)? {
            Ok((_, normal)) => self.bound_to(&normal),
            Err(e) => Err(RegistryError::refused(
                suyuan_codec::message::rc::INVALID_VALUE,
                e.to_string(),
            )),
        })
    }

    /// The handle bound to the alias key `key`.
    fn bound_to(&self, key: &str) -> Result<Option<String>, RegistryError> {
        match block_on(self.store.alias(key))? {
            Some(key) => Ok(self.get(&key)?.map(|r| r.handle)),
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
        block_on(self.store.backlinks(&key_of(target), cursor, limit))
    }

    /// Rebuilds the link and alias indexes from the records (after templates change). Meant
    /// for a stopped node's store; returns the number of records indexed.
    pub fn reindex(&self) -> Result<u64, RegistryError> {
        block_on(self.store.reindex())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The last holder stops the writer after the queued writes.
        if Arc::strong_count(&self.store) == 1 {
            self.store.close();
        }
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
