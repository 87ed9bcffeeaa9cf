//! The PostgreSQL [`Store`]: the registry's operations as SQL transactions on a database that
//! several Suyuan servers, and a reference Handle.Net server with SQL storage, may share.
//!
//! Layout. The reference server's own tables, as its manual lays them out for PostgreSQL:
//! `nas` (one row `0.NA/PREFIX` per homed prefix) and `handles` (one row per value, the
//! value's data in its wire encoding, handles upper-cased). Beside them, Suyuan's:
//! `suyuan_meta` (schema version and the gap-free sequence counter), `suyuan_records` (per
//! handle: the version the indexes were built from, with the spelling it was created with),
//! `suyuan_prefixes` (a prefix's administrators), `links` (the reverse link index, keyed
//! target first so a fan-out is a range scan), `aliases`, `tombstones`, `changes`,
//! `suyuan_servers` (who shares the database, how far each has seen the change log) and
//! `suyuan_dirty` (handles another writer changed, filled by a trigger on `handles`).
//!
//! Writes. One writer task per server gathers queued writes into one transaction: it locks the
//! counter row first (so every server's writers take turns and the sequence has no gaps),
//! runs the rules through a view of the transaction, carries out their effects, bumps the
//! counter and commits. A transaction that fails on a serialization conflict is retried.
//!
//! Other servers' commits reach this one through the change log: a tail reads `changes`
//! after the last sequence number it saw (woken by LISTEN/NOTIFY on PostgreSQL, polling on
//! databases without it), calls the commit watchers (the node's cache evicts there), and
//! records how far it has seen; a writer does not acknowledge a commit until every live peer
//! has seen it (or a bounded wait has passed), so no server keeps serving a value older than
//! an acknowledged write.
//!
//! Only portable SQL is on the hot path (primary-key reads and range scans, `INSERT ... ON
//! CONFLICT`, `SELECT ... FOR UPDATE`); NOTIFY and the trigger are used only on PostgreSQL
//! itself.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use suyuan_codec::handle::key_of;
use suyuan_codec::tlog::Hash;
use tokio::sync::{Notify, mpsc};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row, Statement};

use crate::error::RegistryError;
use crate::handlesql::{self, HandleRow};
use crate::log::{LogState, LogSwitch, new_salt_key};
use crate::model::{Change, PrefixEntry, Record, Tombstone};
use crate::rules::{Applied, Effect, Mutation, View, Write, plan};
use crate::store::{
    BacklinkPage, CommitWatcher, Committed, Reply, SCHEMA_VERSION, Store, StoreFuture, Ticket,
};

/// Writes gathered into one transaction at most.
const MAX_GROUP: usize = 1024;
/// Read connections per server (each pipelines concurrent queries).
const READERS: usize = 4;
/// How long a writer waits for its peers to see a commit before acknowledging it anyway.
const PEER_WAIT: Duration = Duration::from_secs(2);
/// A server whose heartbeat is older than this is not waited for.
const PEER_LIVE_SECS: u32 = 5;
/// Tail period where NOTIFY is not available (and the safety net where it is).
const TAIL_POLL: Duration = Duration::from_millis(100);
/// Transaction attempts on serialization conflicts.
const RETRIES: usize = 8;
/// The actor of changes adopted from another writer.
pub const ADOPTED: &str = "0:SUYUAN/ADOPTED";

/// The schema, one step per version: step N brings a database from version N to N+1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS nas (na bytea PRIMARY KEY);
CREATE TABLE IF NOT EXISTS handles (
  handle bytea NOT NULL, idx int4 NOT NULL, type bytea, data bytea, ttl_type int2, ttl int4,
  timestamp int4, refs text, admin_read bool, admin_write bool, pub_read bool, pub_write bool,
  PRIMARY KEY (handle, idx));
CREATE TABLE suyuan_records (handle bytea PRIMARY KEY, indexed bytea NOT NULL);
CREATE TABLE suyuan_prefixes (prefix bytea PRIMARY KEY, entry bytea NOT NULL);
CREATE TABLE links (target bytea NOT NULL, rel text NOT NULL, source bytea NOT NULL,
  PRIMARY KEY (target, rel, source));
CREATE TABLE aliases (alias text PRIMARY KEY, handle bytea NOT NULL);
CREATE TABLE tombstones (handle bytea PRIMARY KEY, tombstone bytea NOT NULL);
CREATE TABLE changes (seq int8 PRIMARY KEY, change bytea NOT NULL);
CREATE TABLE suyuan_servers (id text PRIMARY KEY, seen int8 NOT NULL, beat timestamptz NOT NULL);
CREATE TABLE suyuan_dirty (handle bytea PRIMARY KEY);
INSERT INTO suyuan_meta (name, value) VALUES ('seq', 0) ON CONFLICT (name) DO NOTHING;
"#,
    r#"
CREATE TABLE suyuan_log_entries (idx int8 PRIMARY KEY, seq int8 NOT NULL UNIQUE, entry bytea NOT NULL);
CREATE TABLE suyuan_log_hashes (idx int8 PRIMARY KEY, hash bytea NOT NULL);
CREATE TABLE suyuan_log_keys (name text PRIMARY KEY, value bytea NOT NULL);
INSERT INTO suyuan_meta (name, value) VALUES ('log_size', 0) ON CONFLICT (name) DO NOTHING;
"#,
];

/// Installed on PostgreSQL only: what another writer (a reference server) stores in `handles`
/// directly is queued for the tail, which indexes it and logs the change. Suyuan's own
/// transactions set `suyuan.writer` and are not queued.
const TRIGGER: &str = r#"
CREATE OR REPLACE FUNCTION suyuan_mark_dirty() RETURNS trigger AS $$
BEGIN
  IF coalesce(current_setting('suyuan.writer', true), '') <> 'on' THEN
    INSERT INTO suyuan_dirty (handle)
      VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.handle ELSE NEW.handle END)
      ON CONFLICT (handle) DO NOTHING;
    PERFORM pg_notify('suyuan_dirty', '');
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS suyuan_mark_dirty ON handles;
CREATE TRIGGER suyuan_mark_dirty AFTER INSERT OR UPDATE OR DELETE ON handles
  FOR EACH ROW EXECUTE FUNCTION suyuan_mark_dirty();
"#;

fn db(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(format!("postgres: {e}"))
}

fn retryable(raw: Option<&tokio_postgres::Error>) -> bool {
    raw.and_then(|e| e.code()).is_some_and(|c| {
        *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// A database error, kept so a writer can tell a conflict worth retrying.
struct TxError(RegistryError, Option<tokio_postgres::Error>);

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError(db(&e), Some(e))
    }
}

impl From<RegistryError> for TxError {
    fn from(e: RegistryError) -> Self {
        TxError(e, None)
    }
}

/// Connects and runs the connection on the current runtime; notifications go to `notes`.
async fn connect(
    url: &str,
    notes: Option<mpsc::UnboundedSender<String>>,
) -> Result<Client, RegistryError> {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| RegistryError::Storage(format!("cannot connect to {}: {e}", redact(url))))?;
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Some(tx) = &notes {
                        let _ = tx.send(n.channel().to_string());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    Ok(client)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Whether the database at `url` has Suyuan's schema, and at which version.
async fn schema_version(c: &Client) -> Result<Option<u32>, RegistryError> {
    let exists = c
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'suyuan_meta' \
             AND table_schema = current_schema()",
            &[],
        )
        .await
        .map_err(db)?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let v = c
        .query_opt("SELECT value FROM suyuan_meta WHERE name = 'schema'", &[])
        .await
        .map_err(db)?
        .map(|r| r.get::<_, i64>(0));
    Ok(v.map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
}

async fn is_postgres(c: &Client) -> Result<bool, RegistryError> {
    let v: String = c
        .query_one("SELECT version()", &[])
        .await
        .map_err(db)?
        .get(0);
    Ok(v.starts_with("PostgreSQL"))
}

/// How `init` treats a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitMode {
    /// A new node: the database must not hold a Suyuan schema yet.
    Create,
    /// Another server of the same node: the schema must be there.
    Join,
}

/// [`init`] from code that is not async (or runs inside another runtime): on a runtime of its
/// own, on another thread.
pub fn init_blocking(url: &str, mode: InitMode) -> Result<u32, RegistryError> {
    let url = url.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Storage(format!("cannot start a runtime: {e}")))?
            .block_on(init(&url, mode))
    })
    .join()
    .unwrap_or_else(|_| Err(RegistryError::Storage("schema set-up failed".into())))
}

/// Creates (or joins) the schema at `url`, migrating an older one forward. Returns the schema
/// version the database is at.
pub async fn init(url: &str, mode: InitMode) -> Result<u32, RegistryError> {
    let c = connect(url, None).await?;
    let found = schema_version(&c).await?;
    match (mode, found) {
        (InitMode::Create, Some(_)) => {
            return Err(RegistryError::Storage(format!(
                "{} already holds a Suyuan store: start another server on it with \
                 `init --store URL --join`, or serve it",
                redact(url)
            )));
        }
        (InitMode::Join, None) => {
            return Err(RegistryError::Storage(format!(
                "{} holds no Suyuan store to join: run `init --store URL` (without --join) once",
                redact(url)
            )));
        }
        _ => {}
    }
    migrate(&c).await
}

async fn migrate(c: &Client) -> Result<u32, RegistryError> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS suyuan_meta (name text PRIMARY KEY, value int8 NOT NULL);
         INSERT INTO suyuan_meta (name, value) VALUES ('schema', 0) ON CONFLICT (name) DO NOTHING;",
    )
    .await
    .map_err(db)?;
    let mut v = schema_version(c).await?.unwrap_or(0);
    if v > SCHEMA_VERSION {
        return Err(RegistryError::SchemaTooNew {
            found: v,
            supported: SCHEMA_VERSION,
        });
    }
    while (v as usize) < MIGRATIONS.len().min(SCHEMA_VERSION as usize) {
        let step = MIGRATIONS[v as usize];
        c.batch_execute(&format!(
            "BEGIN; {step} UPDATE suyuan_meta SET value = {} WHERE name = 'schema'; COMMIT;",
            v + 1
        ))
        .await
        .map_err(|e| RegistryError::Storage(format!("schema step {} failed: {e}", v + 1)))?;
        v += 1;
    }
    if is_postgres(c).await? {
        c.batch_execute(TRIGGER).await.map_err(db)?;
    }
    Ok(v)
}

/// The statements of the hot path, prepared once per connection: each is then one round trip,
/// and the effects of one write go out pipelined.
struct Prepared {
    values: Statement,
    indexed: Statement,
    na: Statement,
    prefix_entry: Statement,
    alias: Statement,
    del_handles: Statement,
    ins_value: Statement,
    up_record: Statement,
    del_record: Statement,
    ins_link: Statement,
    del_link: Statement,
    up_alias: Statement,
    del_alias: Statement,
    up_tomb: Statement,
    del_tomb: Statement,
    ins_na: Statement,
    up_prefix: Statement,
    del_na: Statement,
    del_prefix: Statement,
    ins_change: Statement,
    del_dirty: Statement,
    log_size: Statement,
    log_hashes: Statement,
    ins_log_entry: Statement,
    ins_log_hash: Statement,
    up_log_size: Statement,
}

impl Prepared {
    async fn new(c: &Client) -> Result<Self, RegistryError> {
        let p = |sql: String| async move { c.prepare(&sql).await.map_err(db) };
        Ok(Prepared {
            values: p(format!(
                "SELECT {VALUE_COLUMNS} FROM handles WHERE handle = $1 ORDER BY idx"
            ))
            .await?,
            indexed: p("SELECT indexed FROM suyuan_records WHERE handle = $1".into()).await?,
            na: p("SELECT 1 FROM nas WHERE na = $1".into()).await?,
            prefix_entry: p("SELECT entry FROM suyuan_prefixes WHERE prefix = $1".into()).await?,
            alias: p("SELECT handle FROM aliases WHERE alias = $1".into()).await?,
            del_handles: p("DELETE FROM handles WHERE handle = $1".into()).await?,
            ins_value: p(format!(
                "INSERT INTO handles (handle, {VALUE_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .await?,
            up_record: p(
                "INSERT INTO suyuan_records (handle, indexed) VALUES ($1, $2) \
                 ON CONFLICT (handle) DO UPDATE SET indexed = excluded.indexed"
                    .into(),
            )
            .await?,
            del_record: p("DELETE FROM suyuan_records WHERE handle = $1".into()).await?,
            ins_link: p(
                "INSERT INTO links (target, rel, source) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING"
                    .into(),
            )
            .await?,
            del_link: p("DELETE FROM links WHERE target = $1 AND rel = $2 AND source = $3".into())
                .await?,
            up_alias: p("INSERT INTO aliases (alias, handle) VALUES ($1, $2) \
                 ON CONFLICT (alias) DO UPDATE SET handle = excluded.handle"
                .into())
            .await?,
            del_alias: p("DELETE FROM aliases WHERE alias = $1".into()).await?,
            up_tomb: p(
                "INSERT INTO tombstones (handle, tombstone) VALUES ($1, $2) \
                 ON CONFLICT (handle) DO UPDATE SET tombstone = excluded.tombstone"
                    .into(),
            )
            .await?,
            del_tomb: p("DELETE FROM tombstones WHERE handle = $1".into()).await?,
            ins_na: p("INSERT INTO nas (na) VALUES ($1) ON CONFLICT DO NOTHING".into()).await?,
            up_prefix: p(
                "INSERT INTO suyuan_prefixes (prefix, entry) VALUES ($1, $2) \
                 ON CONFLICT (prefix) DO UPDATE SET entry = excluded.entry"
                    .into(),
            )
            .await?,
            del_na: p("DELETE FROM nas WHERE na = $1".into()).await?,
            del_prefix: p("DELETE FROM suyuan_prefixes WHERE prefix = $1".into()).await?,
            ins_change: p("INSERT INTO changes (seq, change) VALUES ($1, $2)".into()).await?,
            del_dirty: p("DELETE FROM suyuan_dirty WHERE handle = $1".into()).await?,
            log_size: p("SELECT value FROM suyuan_meta WHERE name = 'log_size'".into()).await?,
            log_hashes: p("SELECT idx, hash FROM suyuan_log_hashes WHERE idx = ANY($1)".into())
                .await?,
            ins_log_entry: p(
                "INSERT INTO suyuan_log_entries (idx, seq, entry) VALUES ($1, $2, $3)".into(),
            )
            .await?,
            ins_log_hash: p("INSERT INTO suyuan_log_hashes (idx, hash) VALUES ($1, $2)".into())
                .await?,
            up_log_size: p("UPDATE suyuan_meta SET value = $1 WHERE name = 'log_size'".into())
                .await?,
        })
    }
}

/// A connection with its prepared statements.
struct Conn {
    client: Client,
    st: Prepared,
}

impl Conn {
    async fn open(url: &str) -> Result<Self, RegistryError> {
        let client = connect(url, None).await?;
        let st = Prepared::new(&client).await?;
        Ok(Conn { client, st })
    }
}

struct Job {
    write: Write,
    reply: Reply,
}

struct Inner {
    url: String,
    id: String,
    readers: Vec<Conn>,
    next_reader: AtomicUsize,
    last_seq: AtomicU64,
    /// Set while this server may have missed other servers' commits (its tail has not caught
    /// up since it started or lost the database): nothing read then may be cached.
    unsure: AtomicBool,
    unsure_reads: AtomicU64,
    commits: AtomicU64,
    watchers: RwLock<Vec<CommitWatcher>>,
    /// Which commits the watchers have heard of, so each is told once: this server's writer
    /// tells its own before it acknowledges them, and the tail must not tell them again.
    told: Mutex<Told>,
    live_peers: AtomicUsize,
    /// The tables' size on disk, as the last heartbeat measured it.
    size_bytes: AtomicU64,
    /// Wakes writers waiting for their peers to see a commit.
    peers_seen: Notify,
    notify: bool,
    /// The log's salt key (made by the first server to start on the database, kept in it)
    /// and whether this server's writes get leaves.
    log: LogSwitch,
    signer: crate::sign::SignerSlot,
}

impl Inner {
    fn conn(&self) -> &Conn {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        &self.readers[i]
    }

    fn reader(&self) -> &Client {
        &self.conn().client
    }

    fn tell(&self, c: &Committed) {
        if let Ok(ws) = self.watchers.read() {
            for w in ws.iter() {
                w(c);
            }
        }
    }

    /// The writer's own commit of `first..=last`: told unless the tail read it first.
    fn tell_own(&self, first: u64, c: &Committed) {
        let Ok(mut told) = self.told.lock() else {
            return self.tell(c);
        };
        if told.tail >= c.seq {
            return;
        }
        told.own.push((first, c.seq));
        self.tell(c);
    }
}

/// See [`Inner::told`]. Ranges are recorded only once committed, so a range a failed group
/// took and a peer then committed is never mistaken for this server's.
struct Told {
    /// The last sequence number the tail has read.
    tail: u64,
    /// This server's commits the writer told and the tail has not yet passed.
    own: Vec<(u64, u64)>,
}

type Started = (
    Arc<Inner>,
    mpsc::UnboundedSender<Job>,
    tokio::task::JoinHandle<()>,
);

/// The registry's store on PostgreSQL (or a database that speaks its protocol).
pub struct PgStore {
    inner: Arc<Inner>,
    tx: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &redact(&self.inner.url))
            .field("server", &self.inner.id)
            .finish()
    }
}

impl PgStore {
    /// Opens the store at `url` (created by `init`), as the server named `server_id` (unique
    /// among the servers sharing the database). Its I/O runs on a small runtime of its own.
    pub fn open(url: &str, server_id: &str) -> Result<Self, RegistryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("suyuan-postgres")
            .enable_all()
            .build()
            .map_err(|e| {
                RegistryError::Storage(format!("cannot start the store's runtime: {e}"))
            })?;
        // Started as a task and waited for from here, so opening works from inside another
        // runtime too.
        let started = runtime.spawn(Self::start(url.to_string(), server_id.to_string()));
        let (inner, tx, writer) = crate::store::block_on(started)
            .map_err(|e| RegistryError::Storage(format!("the store did not start: {e}")))??;
        Ok(PgStore {
            inner,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    async fn start(url: String, server_id: String) -> Result<Started, RegistryError> {
        let (url, server_id) = (url.as_str(), server_id.as_str());
        let first = connect(url, None).await?;
        match schema_version(&first).await? {
            None => {
                return Err(RegistryError::Storage(format!(
                    "{} holds no Suyuan store: run `suyuan init --store URL` first",
                    redact(url)
                )));
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(RegistryError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(v) if v < SCHEMA_VERSION => {
                migrate(&first).await?;
            }
            Some(_) => {}
        }
        let notify = is_postgres(&first).await?;
        let st = Prepared::new(&first).await?;
        let mut readers = vec![Conn { client: first, st }];
        for _ in 1..READERS {
            readers.push(Conn::open(url).await?);
        }
        if notify {
            // What readers write (how far this server has seen, its heartbeat) must be seen by
            // the others, not survive a crash: no fsync of its own for each.
            for r in &readers {
                r.client
                    .batch_execute("SET synchronous_commit = off")
                    .await
                    .map_err(db)?;
            }
        }
        let seq: i64 = readers[0]
            .client
            .query_one("SELECT value FROM suyuan_meta WHERE name = 'seq'", &[])
            .await
            .map_err(db)?
            .get(0);
        let seq = u64::try_from(seq).unwrap_or(0);
        readers[0]
            .client
            .execute(
                "INSERT INTO suyuan_servers (id, seen, beat) VALUES ($1, $2, now())
                 ON CONFLICT (id) DO UPDATE SET seen = $2, beat = now()",
                &[&server_id, &(seq as i64)],
            )
            .await
            .map_err(db)?;
        let log_salt = log_salt_key(&readers[0].client).await?;
        let inner = Arc::new(Inner {
            url: url.to_string(),
            id: server_id.to_string(),
            readers,
            next_reader: AtomicUsize::new(0),
            last_seq: AtomicU64::new(seq),
            unsure: AtomicBool::new(false),
            unsure_reads: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            watchers: RwLock::new(Vec::new()),
            told: Mutex::new(Told {
                tail: seq,
                own: Vec::new(),
            }),
            live_peers: AtomicUsize::new(0),
            size_bytes: AtomicU64::new(0),
            peers_seen: Notify::new(),
            notify,
            log: LogSwitch::new(log_salt),
            signer: Default::default(),
        });
        let writer = Conn::open(url).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer_loop(inner.clone(), writer, rx));
        tokio::spawn(tail_loop(inner.clone(), tx.downgrade(), seq));
        Ok((inner, tx, writer))
    }

    fn spawn_read<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, RegistryError>> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let handle = self
            .runtime
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|r| r.handle().clone()));
        Box::pin(async move {
            match handle {
                Some(h) => h.spawn(f).await.unwrap_or(Err(RegistryError::Closed)),
                None => Err(RegistryError::Closed),
            }
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

// ---- rows ----

fn record_of(
    key: &str,
    rows: &[Row],
    indexed: Option<&Row>,
) -> Result<Option<Record>, RegistryError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(rows.len());
    for r in rows {
        values.push(row_from(key, r).to_value()?);
    }
    let (handle, seq, links) = match indexed {
        Some(i) => {
            let rec = Record::decode(i.get::<_, &[u8]>(0))?;
            // Rows have no order of their own: the values keep the order they were written in
            // (what a resolution answers), indexes unknown to that version last, by index.
            let at = |idx: u32| {
                rec.values
                    .iter()
                    .position(|v| v.index == idx)
                    .unwrap_or(usize::MAX)
            };
            values.sort_by_key(|v| (at(v.index), v.index));
            (rec.handle, rec.seq, rec.links)
        }
        None => (key.to_string(), 0, Vec::new()),
    };
    Ok(Some(Record {
        handle,
        values,
        seq,
        links,
    }))
}

const VALUE_COLUMNS: &str = "idx, type, data, ttl_type, ttl, timestamp, refs, admin_read, \
                             admin_write, pub_read, pub_write";

fn row_from(key: &str, r: &Row) -> HandleRow {
    HandleRow {
        handle: key.as_bytes().to_vec(),
        idx: r.get(0),
        value_type: r.get::<_, Option<Vec<u8>>>(1).unwrap_or_default(),
        data: r.get::<_, Option<Vec<u8>>>(2).unwrap_or_default(),
        ttl_type: r.get::<_, Option<i16>>(3).unwrap_or(0),
        ttl: r.get::<_, Option<i32>>(4).unwrap_or(0),
        timestamp: r.get::<_, Option<i32>>(5).unwrap_or(0),
        refs: r.get::<_, Option<String>>(6).unwrap_or_default(),
        // A NULL column reads as the reference reads it: empty, zero, false.
        admin_read: r.get::<_, Option<bool>>(7).unwrap_or(false),
        admin_write: r.get::<_, Option<bool>>(8).unwrap_or(false),
        pub_read: r.get::<_, Option<bool>>(9).unwrap_or(false),
        pub_write: r.get::<_, Option<bool>>(10).unwrap_or(false),
    }
}

/// A handle's values and indexed version, read on `c` (a client or a transaction).
async fn read_record<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    st: &Prepared,
    key: &str,
) -> Result<Option<Record>, RegistryError> {
    let k = key.as_bytes();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&k];
    let (rows, indexed) = tokio::join!(
        c.query(&st.values, &params),
        c.query_opt(&st.indexed, &params),
    );
    record_of(key, &rows.map_err(db)?, indexed.map_err(db)?.as_ref())
}

async fn read_indexed<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    st: &Prepared,
    key: &str,
) -> Result<Option<Record>, RegistryError> {
    c.query_opt(&st.indexed, &[&key.as_bytes()])
        .await
        .map_err(db)?
        .map(|r| Record::decode(r.get::<_, &[u8]>(0)))
        .transpose()
}

async fn read_prefix<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    st: &Prepared,
    key: &str,
) -> Result<Option<PrefixEntry>, RegistryError> {
    let na = handlesql::na_row(key);
    let k = key.as_bytes();
    let na_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&na];
    let key_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&k];
    let (homed, entry) = tokio::join!(
        c.query_opt(&st.na, &na_param),
        c.query_opt(&st.prefix_entry, &key_param),
    );
    if homed.map_err(db)?.is_none() {
        return Ok(None);
    }
    match entry.map_err(db)? {
        Some(r) => PrefixEntry::decode(r.get::<_, &[u8]>(0)).map(Some),
        // Homed by another writer: no administrators known here.
        None => Ok(Some(PrefixEntry {
            prefix: key.to_string(),
            admins: Vec::new(),
        })),
    }
}

async fn read_alias<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    st: &Prepared,
    alias: &str,
) -> Result<Option<String>, RegistryError> {
    Ok(c.query_opt(&st.alias, &[&alias])
        .await
        .map_err(db)?
        .map(|r| String::from_utf8_lossy(r.get::<_, &[u8]>(0)).into_owned()))
}

/// The log's salt key in the database, made by the first server that needs it.
async fn log_salt_key(c: &Client) -> Result<[u8; 32], RegistryError> {
    let k = new_salt_key();
    c.execute(
        "INSERT INTO suyuan_log_keys (name, value) VALUES ('salt', $1) ON CONFLICT (name) DO NOTHING",
        &[&k.as_slice()],
    )
    .await
    .map_err(db)?;
    let row = c
        .query_one("SELECT value FROM suyuan_log_keys WHERE name = 'salt'", &[])
        .await
        .map_err(db)?;
    <[u8; 32]>::try_from(row.get::<_, &[u8]>(0))
        .map_err(|_| RegistryError::Corrupt("transparency log salt key".into()))
}

async fn read_log_size<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    st: &Prepared,
) -> Result<u64, RegistryError> {
    let v: i64 = c.query_one(&st.log_size, &[]).await.map_err(db)?.get(0);
    Ok(u64::try_from(v).unwrap_or(0))
}

async fn read_log_hashes<C: tokio_postgres::GenericClient + Sync>(
    c: &C,
    st: &Prepared,
    indexes: &[u64],
) -> Result<Vec<Hash>, RegistryError> {
    let want: Vec<i64> = indexes
        .iter()
        .map(|&i| i64::try_from(i).unwrap_or(i64::MAX))
        .collect();
    let rows = c.query(&st.log_hashes, &[&want]).await.map_err(db)?;
    let found: std::collections::HashMap<i64, Vec<u8>> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)))
        .collect();
    want.iter()
        .map(|i| {
            found
                .get(i)
                .and_then(|h| Hash::try_from(h.as_slice()).ok())
                .ok_or_else(|| RegistryError::Corrupt(format!("transparency log: stored hash {i}")))
        })
        .collect()
}

struct TxView<'a, 't>(
    &'a tokio_postgres::Transaction<'t>,
    &'a Prepared,
    /// The log's salt key while this server's log is on.
    Option<[u8; 32]>,
    Option<std::sync::Arc<dyn crate::sign::ValueSigner>>,
);

impl View for TxView<'_, '_> {
    fn signer(&self) -> Option<std::sync::Arc<dyn crate::sign::ValueSigner>> {
        self.3.clone()
    }

    fn log(&mut self) -> impl Future<Output = Result<Option<LogState>, RegistryError>> + Send {
        let (t, st, key) = (self.0, self.1, self.2);
        async move {
            match key {
                None => Ok(None),
                Some(salt_key) => Ok(Some(LogState {
                    size: read_log_size(t, st).await?,
                    salt_key,
                })),
            }
        }
    }
    fn log_hashes(
        &mut self,
        indexes: &[u64],
    ) -> impl Future<Output = Result<Vec<Hash>, RegistryError>> + Send {
        let indexes = indexes.to_vec();
        let (t, st) = (self.0, self.1);
        async move { read_log_hashes(t, st, &indexes).await }
    }
    fn record(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Record>, RegistryError>> + Send {
        read_record(self.0, self.1, key)
    }
    fn alias(
        &mut self,
        alias: &str,
    ) -> impl Future<Output = Result<Option<String>, RegistryError>> + Send {
        read_alias(self.0, self.1, alias)
    }
    fn prefix(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<PrefixEntry>, RegistryError>> + Send {
        read_prefix(self.0, self.1, key)
    }
    fn indexed(
        &mut self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Record>, RegistryError>> + Send {
        read_indexed(self.0, self.1, key)
    }
}

/// Carries out one write's effects in `t`, sent pipelined: the server runs them in the order
/// sent, and they are all done before the next write's rules read anything.
/// `adopting`: the effects index what another writer stored in `handles`; those rows are its,
/// and writing back the values read from them could only undo a change it committed since.
async fn carry_out(
    t: &tokio_postgres::Transaction<'_>,
    st: &Prepared,
    effects: Vec<Effect>,
    stale: &mut Vec<String>,
    adopting: bool,
) -> Result<(), TxError> {
    // Parameters live here while the pipelined statements borrow them.
    enum Param {
        Bytes(Vec<u8>),
        Text(String),
        Row(Box<HandleRow>),
        Int(i64),
    }
    let mut plan: Vec<(&Statement, Vec<Param>)> = Vec::with_capacity(effects.len() * 2);
    for e in effects {
        stale.extend(e.touches());
        use Param::{Bytes, Int, Text};
        match e {
            Effect::PutRecord(r) if adopting => {
                plan.push((
                    &st.up_record,
                    vec![Bytes(key_of(&r.handle).into_bytes()), Bytes(r.encode())],
                ));
            }
            Effect::DeleteRecord(k) if adopting => {
                plan.push((&st.del_record, vec![Bytes(k.into_bytes())]))
            }
            Effect::PutRecord(r) => {
                let key = key_of(&r.handle);
                plan.push((&st.del_handles, vec![Bytes(key.clone().into_bytes())]));
                for v in &r.values {
                    let row =
                        HandleRow::from_value(key.as_bytes(), v).map_err(RegistryError::from)?;
                    plan.push((&st.ins_value, vec![Param::Row(Box::new(row))]));
                }
                plan.push((
                    &st.up_record,
                    vec![Bytes(key.into_bytes()), Bytes(r.encode())],
                ));
            }
            Effect::DeleteRecord(k) => {
                plan.push((&st.del_handles, vec![Bytes(k.clone().into_bytes())]));
                plan.push((&st.del_record, vec![Bytes(k.into_bytes())]));
            }
            Effect::PutBacklink {
                target,
                rel,
                source,
            } => plan.push((
                &st.ins_link,
                vec![
                    Bytes(target.into_bytes()),
                    Text(rel),
                    Bytes(source.into_bytes()),
                ],
            )),
            Effect::DeleteBacklink {
                target,
                rel,
                source,
            } => plan.push((
                &st.del_link,
                vec![
                    Bytes(target.into_bytes()),
                    Text(rel),
                    Bytes(source.into_bytes()),
                ],
            )),
            Effect::PutAlias { alias, key } => {
                plan.push((&st.up_alias, vec![Text(alias), Bytes(key.into_bytes())]))
            }
            Effect::DeleteAlias(a) => plan.push((&st.del_alias, vec![Text(a)])),
            Effect::PutTombstone(k, ts) => {
                plan.push((&st.up_tomb, vec![Bytes(k.into_bytes()), Bytes(ts.encode())]))
            }
            Effect::DeleteTombstone(k) => plan.push((&st.del_tomb, vec![Bytes(k.into_bytes())])),
            Effect::PutPrefix(k, p) => {
                plan.push((&st.ins_na, vec![Bytes(handlesql::na_row(&k))]));
                plan.push((
                    &st.up_prefix,
                    vec![Bytes(k.into_bytes()), Bytes(p.encode())],
                ));
            }
            Effect::DeletePrefix(k) => {
                plan.push((&st.del_na, vec![Bytes(handlesql::na_row(&k))]));
                plan.push((&st.del_prefix, vec![Bytes(k.into_bytes())]));
            }
            Effect::Change(c) => {
                plan.push((&st.ins_change, vec![Int(c.seq as i64), Bytes(c.encode())]))
            }
            Effect::LogLeaf {
                index,
                seq,
                entry,
                first_hash,
                hashes,
            } => {
                plan.push((
                    &st.ins_log_entry,
                    vec![Int(index as i64), Int(seq as i64), Bytes(entry)],
                ));
                for (i, h) in (first_hash..).zip(hashes) {
                    plan.push((&st.ins_log_hash, vec![Int(i as i64), Bytes(h.to_vec())]));
                }
                plan.push((&st.up_log_size, vec![Int(index as i64 + 1)]));
            }
        }
    }
    let all: Vec<Vec<&(dyn tokio_postgres::types::ToSql + Sync)>> = plan
        .iter()
        .map(|(_, params)| {
            let mut refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
            for p in params {
                match p {
                    Param::Bytes(b) => refs.push(b),
                    Param::Text(t) => refs.push(t),
                    Param::Int(i) => refs.push(i),
                    Param::Row(row) => refs.extend([
                        &row.handle as &(dyn tokio_postgres::types::ToSql + Sync),
                        &row.idx,
                        &row.value_type,
                        &row.data,
                        &row.ttl_type,
                        &row.ttl,
                        &row.timestamp,
                        &row.refs,
                        &row.admin_read,
                        &row.admin_write,
                        &row.pub_read,
                        &row.pub_write,
                    ]),
                }
            }
            refs
        })
        .collect();
    let pending: Vec<_> = plan
        .iter()
        .zip(&all)
        .map(|((stmt, _), refs)| t.execute(*stmt, refs))
        .collect();
    for r in futures_util::future::join_all(pending).await {
        r?;
    }
    Ok(())
}

struct Group {
    /// The first sequence number the group took (when it wrote) and the last.
    first: u64,
    seq: u64,
    wrote: bool,
    stale: Vec<String>,
    results: Vec<Result<Applied, RegistryError>>,
}

async fn commit_group(inner: &Inner, conn: &mut Conn, jobs: &[Job]) -> Result<Group, TxError> {
    let st = &conn.st;
    let t = conn.client.transaction().await?;
    if inner.notify {
        t.batch_execute("SET LOCAL suyuan.writer = 'on'").await?;
    }
    let start: i64 = t
        .query_one(
            "SELECT value FROM suyuan_meta WHERE name = 'seq' FOR UPDATE",
            &[],
        )
        .await?
        .get(0);
    let start = u64::try_from(start).unwrap_or(0);
    let mut seq = start;
    let mut stale = Vec::new();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        // Off the queue before it is read: another writer's change committed after these
        // reads queues the handle again (its trigger's insert waits for this transaction), so
        // it is adopted next instead of lost.
        let adopting = match &job.write.mutation {
            Mutation::Reconcile { handle, .. } => {
                t.execute(&st.del_dirty, &[&handle.as_bytes()]).await?;
                true
            }
            _ => false,
        };
        let log = inner.log.key();
        match plan(
            &mut TxView(&t, st, log, inner.signer.get()),
            seq + 1,
            &job.write,
        )
        .await
        {
            Ok(p) => {
                if let Some(s) = p.seq {
                    seq = s;
                }
                carry_out(&t, st, p.effects, &mut stale, adopting).await?;
                results.push(Ok(Applied { seq: p.seq }));
            }
            Err(e @ RegistryError::Refused { .. }) => results.push(Err(e)),
            // A read failed: the transaction is lost, and every write of the group with it.
            Err(e) => return Err(e.into()),
        }
    }
    let wrote = seq > start;
    if wrote {
        t.execute(
            "UPDATE suyuan_meta SET value = $1 WHERE name = 'seq'",
            &[&(seq as i64)],
        )
        .await?;
        if inner.notify {
            t.execute("SELECT pg_notify('suyuan_change', '')", &[])
                .await?;
        }
    }
    t.commit().await?;
    Ok(Group {
        first: start + 1,
        seq,
        wrote,
        stale,
        results,
    })
}

async fn writer_loop(inner: Arc<Inner>, mut conn: Conn, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if conn.client.is_closed() {
            match Conn::open(&inner.url).await {
                Ok(c) => conn = c,
                Err(e) => {
                    for j in jobs {
                        let _ = j.reply.send(Err(e.clone()));
                    }
                    continue;
                }
            }
        }
        let mut attempt = 0;
        let outcome = loop {
            match commit_group(&inner, &mut conn, &jobs).await {
                Err(TxError(_, raw)) if attempt + 1 < RETRIES && retryable(raw.as_ref()) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                }
                r => break r,
            }
        };
        match outcome {
            Ok(g) => {
                if g.wrote {
                    inner.commits.fetch_add(1, Ordering::AcqRel);
                    inner.last_seq.fetch_max(g.seq, Ordering::AcqRel);
                    inner.tell_own(
                        g.first,
                        &Committed {
                            seq: g.seq,
                            keys: g.stale,
                        },
                    );
                    wait_for_peers(&inner, g.seq).await;
                }
                for (job, r) in jobs.into_iter().zip(g.results) {
                    let _ = job.reply.send(r);
                }
            }
            Err(TxError(e, _)) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Waits until every live peer has seen `seq` (their caches evicted what it changed), at most
/// [`PEER_WAIT`].
async fn wait_for_peers(inner: &Inner, seq: u64) {
    if inner.live_peers.load(Ordering::Acquire) == 0 {
        return;
    }
    let deadline = tokio::time::Instant::now() + PEER_WAIT;
    loop {
        // Armed before the query, so a peer's word that arrives meanwhile is not lost.
        let seen = inner.peers_seen.notified();
        tokio::pin!(seen);
        seen.as_mut().enable();
        let behind = inner
            .reader()
            .query_one(
                &format!(
                    "SELECT count(*) FROM suyuan_servers WHERE id <> $1 AND seen < $2 \
                     AND beat > now() - interval '{PEER_LIVE_SECS} seconds'"
                ),
                &[&inner.id, &(seq as i64)],
            )
            .await
            .map(|r| r.get::<_, i64>(0));
        match behind {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => return,
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            tracing::warn!(
                seq,
                "a peer on the shared store has not seen the change in time"
            );
            return;
        }
        let _ = tokio::time::timeout(left.min(TAIL_POLL), seen).await;
    }
}

/// Follows the change log (every server's commits), the peers' progress and the handles other
/// writers changed.
async fn tail_loop(inner: Arc<Inner>, writes: mpsc::WeakUnboundedSender<Job>, mut seen: u64) {
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let mut listener: Option<Client> = None;
    let mut beat = tokio::time::Instant::now() - Duration::from_secs(60);
    loop {
        if inner.notify && listener.as_ref().is_none_or(Client::is_closed) {
            listener = match connect(&inner.url, Some(notes_tx.clone())).await {
                Ok(c) => {
                    match c
                        .batch_execute(
                            "LISTEN suyuan_change; LISTEN suyuan_seen; LISTEN suyuan_dirty;",
                        )
                        .await
                    {
                        Ok(()) => Some(c),
                        Err(_) => None,
                    }
                }
                Err(_) => None,
            };
            if listener.is_none() {
                // Commits may be missed until the listener is back: read nothing into caches.
                inner.unsure.store(true, Ordering::Release);
            }
        }
        let mut dirty = false;
        match tokio::time::timeout(TAIL_POLL, notes.recv()).await {
            Ok(Some(ch)) => {
                dirty |= ch == "suyuan_dirty";
                if ch == "suyuan_seen" {
                    inner.peers_seen.notify_waiters();
                }
                while let Ok(ch) = notes.try_recv() {
                    dirty |= ch == "suyuan_dirty";
                    if ch == "suyuan_seen" {
                        inner.peers_seen.notify_waiters();
                    }
                }
            }
            Ok(None) => return,
            Err(_) => dirty = true,
        }
        // The store is closing once nothing else holds the writer's queue.
        let Some(writes) = writes.upgrade() else {
            return;
        };
        match catch_up(&inner, seen).await {
            Ok(s) => {
                if s > seen || inner.unsure.load(Ordering::Acquire) {
                    seen = s;
                    let _ = inner
                        .reader()
                        .execute(
                            "UPDATE suyuan_servers SET seen = $2, beat = now() WHERE id = $1",
                            &[&inner.id, &(seen as i64)],
                        )
                        .await;
                    if inner.notify {
                        let _ = inner
                            .reader()
                            .execute("SELECT pg_notify('suyuan_seen', '')", &[])
                            .await;
                    }
                }
                if listener.is_some() || !inner.notify {
                    inner.unsure.store(false, Ordering::Release);
                }
            }
            Err(_) => inner.unsure.store(true, Ordering::Release),
        }
        if dirty {
            adopt(&inner, &writes, false).await;
        }
        if beat.elapsed() >= Duration::from_secs(1) {
            beat = tokio::time::Instant::now();
            heartbeat(&inner).await;
        }
    }
}

/// Reads the changes after `seen`, tells the watchers, and returns the last one seen.
async fn catch_up(inner: &Inner, mut seen: u64) -> Result<u64, RegistryError> {
    loop {
        let rows = inner
            .reader()
            .query(
                "SELECT change FROM changes WHERE seq > $1 ORDER BY seq LIMIT 1000",
                &[&(seen as i64)],
            )
            .await
            .map_err(db)?;
        if rows.is_empty() {
            return Ok(seen);
        }
        let mut changes = Vec::with_capacity(rows.len());
        for r in &rows {
            changes.push(Change::decode(r.get::<_, &[u8]>(0))?);
        }
        let mut told = inner.told.lock().map_err(|_| {
            RegistryError::Storage("the commit bookkeeping was poisoned by a panic".into())
        })?;
        let mut keys = Vec::with_capacity(changes.len());
        let mut last_foreign = 0;
        for c in &changes {
            seen = seen.max(c.seq);
            if !told.own.iter().any(|&(a, b)| (a..=b).contains(&c.seq)) {
                last_foreign = last_foreign.max(c.seq);
                keys.push(key_of(&c.handle));
            }
        }
        told.tail = told.tail.max(seen);
        told.own.retain(|&(_, b)| b > seen);
        // The sequence moves first, so a read in flight is not cached, then the caches evict.
        inner.last_seq.fetch_max(seen, Ordering::AcqRel);
        if !keys.is_empty() {
            inner.tell(&Committed {
                seq: last_foreign,
                keys,
            });
        }
        drop(told);
        if rows.len() < 1000 {
            return Ok(seen);
        }
    }
}

/// Queues a reconciliation for each handle another writer changed.
async fn adopt(inner: &Inner, writes: &mpsc::UnboundedSender<Job>, force: bool) {
    let Ok(rows) = inner
        .reader()
        .query("SELECT handle FROM suyuan_dirty LIMIT 1000", &[])
        .await
    else {
        return;
    };
    let mut tickets = Vec::new();
    for r in rows {
        let handle = String::from_utf8_lossy(r.get::<_, &[u8]>(0)).into_owned();
        let (reply, ticket) = Ticket::new();
        let job = Job {
            write: Write {
                mutation: Mutation::Reconcile { handle, force },
                actor: ADOPTED.to_string(),
                time: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            },
            reply,
        };
        if writes.send(job).is_err() {
            return;
        }
        tickets.push(ticket);
    }
    for t in tickets {
        let _ = t.await;
    }
}

async fn heartbeat(inner: &Inner) {
    let c = inner.reader();
    // For the operations endpoint; PostgreSQL's own function, off the hot path.
    if let Ok(r) = c
        .query_one(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            &[],
        )
        .await
    {
        let n: i64 = r.get(0);
        inner
            .size_bytes
            .store(u64::try_from(n).unwrap_or(0), Ordering::Release);
    }
    let _ = c
        .execute(
            "UPDATE suyuan_servers SET beat = now() WHERE id = $1",
            &[&inner.id],
        )
        .await;
    if let Ok(r) = c
        .query_one(
            &format!(
                "SELECT count(*) FROM suyuan_servers WHERE id <> $1 \
                 AND beat > now() - interval '{PEER_LIVE_SECS} seconds'"
            ),
            &[&inner.id],
        )
        .await
    {
        let n: i64 = r.get(0);
        inner
            .live_peers
            .store(usize::try_from(n).unwrap_or(0), Ordering::Release);
    }
}

/// The spelling each handle key was created with (the key itself for handles another writer
/// stored and Suyuan has not indexed yet).
async fn spellings(inner: &Inner, keys: Vec<Vec<u8>>) -> Result<Vec<String>, RegistryError> {
    let rows = inner
        .reader()
        .query(
            "SELECT handle, indexed FROM suyuan_records WHERE handle = ANY($1)",
            &[&keys],
        )
        .await
        .map_err(db)?;
    let mut names: HashMap<Vec<u8>, String> = HashMap::new();
    for r in &rows {
        let rec = Record::decode(r.get::<_, &[u8]>(1))?;
        names.insert(r.get::<_, Vec<u8>>(0), rec.handle);
    }
    Ok(keys
        .into_iter()
        .map(|k| {
            names
                .remove(&k)
                .unwrap_or_else(|| String::from_utf8_lossy(&k).into_owned())
        })
        .collect())
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
        let (inner, key) = (self.inner.clone(), key.to_string());
        self.spawn_read(async move {
            let c = inner.conn();
            read_record(&c.client, &c.st, &key).await
        })
    }

    fn prefix(&self, key: &str) -> StoreFuture<'_, Option<PrefixEntry>> {
        let (inner, key) = (self.inner.clone(), key.to_string());
        self.spawn_read(async move {
            let c = inner.conn();
            read_prefix(&c.client, &c.st, &key).await
        })
    }

    fn prefixes(&self) -> StoreFuture<'_, Vec<PrefixEntry>> {
        let inner = self.inner.clone();
        self.spawn_read(async move {
            let rows = inner
                .reader()
                .query("SELECT na FROM nas ORDER BY na", &[])
                .await
                .map_err(db)?;
            let mut out = Vec::new();
            for r in rows {
                let na = String::from_utf8_lossy(r.get::<_, &[u8]>(0)).into_owned();
                let key = na.strip_prefix("0.NA/").map(str::to_string).unwrap_or(na);
                let c = inner.conn();
                if let Some(p) = read_prefix(&c.client, &c.st, &key).await? {
                    out.push(p);
                }
            }
            Ok(out)
        })
    }

    fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<String>> {
        let inner = self.inner.clone();
        let lo = format!("{prefix}/").into_bytes();
        let hi = crate::kv::prefix_end(&lo);
        let after = after.map(|a| a.as_bytes().to_vec());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.spawn_read(async move {
            let from = match after {
                Some(a) if a > lo => a,
                _ => lo.clone(),
            };
            let exclusive = from != lo;
            // One row per handle: its lowest index. Portable and ordered by the primary key.
            let q = if exclusive {
                "SELECT DISTINCT handle FROM handles WHERE handle > $1 AND handle < $2 \
                 ORDER BY handle LIMIT $3"
            } else {
                "SELECT DISTINCT handle FROM handles WHERE handle >= $1 AND handle < $2 \
                 ORDER BY handle LIMIT $3"
            };
            let rows = inner
                .reader()
                .query(q, &[&from, &hi, &limit])
                .await
                .map_err(db)?;
            spellings(
                &inner,
                rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect(),
            )
            .await
        })
    }

    fn list_at(&self, prefix: &str, offset: u64, limit: usize) -> StoreFuture<'_, Vec<String>> {
        let inner = self.inner.clone();
        let lo = format!("{prefix}/").into_bytes();
        let hi = crate::kv::prefix_end(&lo);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.spawn_read(async move {
            let rows = inner
                .reader()
                .query(
                    "SELECT DISTINCT handle FROM handles WHERE handle >= $1 AND handle < $2 \
                     ORDER BY handle OFFSET $3 LIMIT $4",
                    &[&lo, &hi, &offset, &limit],
                )
                .await
                .map_err(db)?;
            spellings(
                &inner,
                rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect(),
            )
            .await
        })
    }

    fn count(&self, prefix: &str) -> StoreFuture<'_, u64> {
        let inner = self.inner.clone();
        let lo = format!("{prefix}/").into_bytes();
        let hi = crate::kv::prefix_end(&lo);
        self.spawn_read(async move {
            let n: i64 = inner
                .reader()
                .query_one(
                    "SELECT count(DISTINCT handle) FROM handles WHERE handle >= $1 AND handle < $2",
                    &[&lo, &hi],
                )
                .await
                .map_err(db)?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn backlinks(
        &self,
        target: &str,
        cursor: Option<&[u8]>,
        limit: usize,
    ) -> StoreFuture<'_, BacklinkPage> {
        let inner = self.inner.clone();
        let target = target.as_bytes().to_vec();
        // The cursor is the last (relation, source) pair returned, NUL-separated.
        let after = cursor.map(|c| {
            let mut parts = c.splitn(2, |&b| b == 0);
            let rel = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let src = parts.next().unwrap_or_default().to_vec();
            (rel, src)
        });
        let lim = i64::try_from(limit).unwrap_or(i64::MAX);
        self.spawn_read(async move {
            let rows = match &after {
                Some((rel, src)) => {
                    inner
                        .reader()
                        .query(
                            "SELECT rel, source FROM links WHERE target = $1 \
                             AND (rel > $2 OR (rel = $2 AND source > $3)) \
                             ORDER BY rel, source LIMIT $4",
                            &[&target, rel, src, &lim],
                        )
                        .await
                }
                None => {
                    inner
                        .reader()
                        .query(
                            "SELECT rel, source FROM links WHERE target = $1 \
                             ORDER BY rel, source LIMIT $2",
                            &[&target, &lim],
                        )
                        .await
                }
            }
            .map_err(db)?;
            let out: Vec<(String, String)> = rows
                .iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        String::from_utf8_lossy(r.get::<_, &[u8]>(1)).into_owned(),
                    )
                })
                .collect();
            let next = (out.len() == limit)
                .then(|| {
                    out.last().map(|(rel, src)| {
                        let mut c = rel.as_bytes().to_vec();
                        c.push(0);
                        c.extend_from_slice(src.as_bytes());
                        c
                    })
                })
                .flatten();
            Ok((out, next))
        })
    }

    fn alias(&self, identifier: &str) -> StoreFuture<'_, Option<String>> {
        let (inner, id) = (self.inner.clone(), identifier.to_string());
        self.spawn_read(async move {
            let c = inner.conn();
            read_alias(&c.client, &c.st, &id).await
        })
    }

    fn tombstone(&self, key: &str) -> StoreFuture<'_, Option<Tombstone>> {
        let (inner, key) = (self.inner.clone(), key.to_string());
        self.spawn_read(async move {
            inner
                .reader()
                .query_opt(
                    "SELECT tombstone FROM tombstones WHERE handle = $1",
                    &[&key.as_bytes()],
                )
                .await
                .map_err(db)?
                .map(|r| Tombstone::decode(r.get::<_, &[u8]>(0)))
                .transpose()
        })
    }

    fn set_log(&self, on: bool) {
        self.inner.log.set(on);
    }

    fn set_signer(&self, signer: Option<std::sync::Arc<dyn crate::sign::ValueSigner>>) {
        self.inner.signer.set(signer);
    }

    fn log_salt_key(&self) -> Option<[u8; 32]> {
        self.inner.log.key()
    }

    fn log_size(&self) -> StoreFuture<'_, u64> {
        let inner = self.inner.clone();
        self.spawn_read(async move {
            let c = inner.conn();
            read_log_size(&c.client, &c.st).await
        })
    }

    fn log_hashes(&self, indexes: Vec<u64>) -> StoreFuture<'_, Vec<Hash>> {
        let inner = self.inner.clone();
        self.spawn_read(async move {
            let c = inner.conn();
            read_log_hashes(&c.client, &c.st, &indexes).await
        })
    }

    fn log_entries(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<Vec<u8>>> {
        let inner = self.inner.clone();
        self.spawn_read(async move {
            let rows = inner
                .reader()
                .query(
                    "SELECT entry FROM suyuan_log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                    &[
                        &i64::try_from(from).unwrap_or(i64::MAX),
                        &i64::try_from(to).unwrap_or(i64::MAX),
                    ],
                )
                .await
                .map_err(db)?;
            Ok(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
        })
    }

    fn log_index(&self, seq: u64) -> StoreFuture<'_, Option<u64>> {
        let inner = self.inner.clone();
        self.spawn_read(async move {
            let row = inner
                .reader()
                .query_opt(
                    "SELECT idx FROM suyuan_log_entries WHERE seq = $1",
                    &[&i64::try_from(seq).unwrap_or(i64::MAX)],
                )
                .await
                .map_err(db)?;
            Ok(row.map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
        })
    }

    fn changes_since(&self, from: u64, limit: usize) -> StoreFuture<'_, Vec<Change>> {
        let inner = self.inner.clone();
        let lim = i64::try_from(limit).unwrap_or(i64::MAX);
        self.spawn_read(async move {
            let rows = inner
                .reader()
                .query(
                    "SELECT change FROM changes WHERE seq >= $1 ORDER BY seq LIMIT $2",
                    &[&(i64::try_from(from).unwrap_or(i64::MAX)), &lim],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| Change::decode(r.get::<_, &[u8]>(0)))
                .collect()
        })
    }

    fn last_seq(&self) -> u64 {
        if self.inner.unsure.load(Ordering::Acquire) {
            // Moves on every call, so no read made now is cached.
            return u64::MAX / 2 + self.inner.unsure_reads.fetch_add(1, Ordering::AcqRel);
        }
        self.inner.last_seq.load(Ordering::Acquire)
    }

    fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Acquire)
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.inner.size_bytes.load(Ordering::Acquire)).filter(|&n| n > 0)
    }

    fn watch(&self, watcher: CommitWatcher) {
        if let Ok(mut ws) = self.inner.watchers.write() {
            ws.push(watcher);
        }
    }

    fn reindex(&self) -> StoreFuture<'_, u64> {
        // Every handle is reconciled from its rows, through the writer.
        let inner = self.inner.clone();
        let tx = self.tx.lock().ok().and_then(|g| g.clone());
        self.spawn_read(async move {
            let Some(tx) = tx else {
                return Err(RegistryError::Closed);
            };
            inner
                .reader()
                .batch_execute(
                    "DELETE FROM links; DELETE FROM aliases; \
                     INSERT INTO suyuan_dirty (handle) SELECT DISTINCT handle FROM handles \
                     ON CONFLICT DO NOTHING;",
                )
                .await
                .map_err(db)?;
            let n: i64 = inner
                .reader()
                .query_one("SELECT count(*) FROM suyuan_dirty", &[])
                .await
                .map_err(db)?
                .get(0);
            adopt(&inner, &tx, true).await;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn close(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        // The writer finishes the queued writes, then the runtime goes (without blocking, so
        // this may run inside another runtime).
        if let Some(w) = self.writer.lock().ok().and_then(|mut g| g.take()) {
            let _ = crate::store::block_on(w);
            // No longer a peer the others wait for.
            let handle = self
                .runtime
                .lock()
                .ok()
                .and_then(|g| g.as_ref().map(|r| r.handle().clone()));
            if let Some(h) = handle {
                let inner = self.inner.clone();
                let _ = crate::store::block_on(h.spawn(async move {
                    let _ = inner
                        .reader()
                        .execute("DELETE FROM suyuan_servers WHERE id = $1", &[&inner.id])
                        .await;
                }));
            }
        }
        if let Some(rt) = self.runtime.lock().ok().and_then(|mut g| g.take()) {
            rt.shutdown_background();
        }
    }
}
