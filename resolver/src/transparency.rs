//! The node's transparency log, published: checkpoints signed with the log's own Ed25519 key
//! (C2SP signed notes), the tiles and entry bundles of C2SP tlog-tiles under `/log/tile/`,
//! consistency proofs, and the proof of a record's version (`/api/proof/{handle}`, and per
//! node of a trace): its entry, the salts of the values the caller may read, and a C2SP
//! tlog-proof receipt against the latest checkpoint.
//!
//! Checkpoints follow the store: a new one within a second of a commit. The tree is a pure
//! function of the change log, so two checkpoints of this log can never be inconsistent;
//! tiles are served for the published checkpoint's size only, so what a client fetches
//! always matches a checkpoint it can get.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Extension, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde_json::{Value as Json, json};
use suyuan_codec::note::{Checkpoint, Note, NoteSigner, Receipt, valid_key_name};
use suyuan_codec::tlog::{Hash, Tile};
use suyuan_codec::value::HandleValue;
use suyuan_registry::{Registry, RegistryError};
use tokio::sync::watch;
use tracing::warn;

use crate::rest::{self, ConnInfo, RestState};

/// The log's key file in the data dir (PKCS#8 PEM, 0600) and its verifier key.
pub const KEY_FILE: &str = "log-key.pem";
pub const VKEY_FILE: &str = "log.vkey";
/// The witness's own key and verifier key (a cosigner's, type 0x04).
pub const WITNESS_KEY_FILE: &str = "witness-key.pem";
pub const WITNESS_VKEY_FILE: &str = "witness.vkey";

/// Which key: the log's, or the witness's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    Log,
    Witness,
}

impl KeyRole {
    fn files(self) -> (&'static str, &'static str) {
        match self {
            KeyRole::Log => (KEY_FILE, VKEY_FILE),
            KeyRole::Witness => (WITNESS_KEY_FILE, WITNESS_VKEY_FILE),
        }
    }

    fn verifier(self, s: &NoteSigner) -> suyuan_codec::note::VerifierKey {
        match self {
            KeyRole::Log => s.verifier(),
            KeyRole::Witness => s.cosigner(),
        }
    }
}

/// How often the checkpoint is brought up to date at most, and at least.
const REFRESH_AT_MOST: Duration = Duration::from_millis(200);
const REFRESH_AT_LEAST: Duration = Duration::from_secs(1);

/// Why the log's key could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogKeyError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("{0:?} cannot name a log: a key name has no spaces and no '+'")]
    Name(String),
}

/// The log's signing key in `dir`, made (with `log.vkey`) when there is none. `origin` names
/// the log; a `log.vkey` already there keeps the name it was made with unless `origin` is
/// given explicitly (`configured`).
pub fn load_or_create_key(
    dir: &Path,
    default_origin: &str,
    configured: Option<&str>,
) -> Result<NoteSigner, LogKeyError> {
    load_or_create(KeyRole::Log, dir, default_origin, configured)
}

/// The key of `role` in `dir` (see [`load_or_create_key`]), made when there is none.
pub fn load_or_create(
    role: KeyRole,
    dir: &Path,
    default_origin: &str,
    configured: Option<&str>,
) -> Result<NoteSigner, LogKeyError> {
    let (key_file, vkey_file) = role.files();
    let file_err = |path: &Path, why: String| LogKeyError::File {
        path: path.display().to_string(),
        why,
    };
    let key_path = dir.join(key_file);
    let vkey_path = dir.join(vkey_file);
    let key = match std::fs::read_to_string(&key_path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| file_err(&key_path, format!("not an Ed25519 PKCS#8 key: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key
                .to_pkcs8_pem(Default::default())
                .map_err(|e| file_err(&key_path, e.to_string()))?;
            write_private(&key_path, pem.as_bytes()).map_err(|e| file_err(&key_path, e))?;
            key
        }
        Err(e) => return Err(file_err(&key_path, e.to_string())),
    };
    let recorded = std::fs::read_to_string(&vkey_path)
        .ok()
        .and_then(|v| suyuan_codec::note::VerifierKey::parse(&v).ok())
        .filter(|v| v.key == key.verifying_key())
        .map(|v| v.name);
    let name = configured
        .map(str::to_string)
        .or(recorded.clone())
        .unwrap_or_else(|| default_origin.to_string());
    if !valid_key_name(&name) {
        return Err(LogKeyError::Name(name));
    }
    let signer = NoteSigner::new(&name, key);
    if recorded.as_deref() != Some(name.as_str()) {
        std::fs::write(&vkey_path, format!("{}\n", role.verifier(&signer).encode()))
            .map_err(|e| file_err(&vkey_path, e.to_string()))?;
    }
    Ok(signer)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| e.to_string())?;
    f.write_all(bytes).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())
}

/// A signed checkpoint as published.
#[derive(Debug, Clone)]
pub struct Published {
    pub size: u64,
    pub root: Hash,
    /// The signed note.
    pub note: String,
    /// Whether the configured witnesses were asked to cosign it (their cosignatures, those
    /// that came, are in the note).
    pub witnessed: bool,
}

/// The published log of one node.
pub struct Transparency {
    registry: Arc<Registry>,
    signer: NoteSigner,
    /// The log's SM2 key, when one is configured: each checkpoint carries its line too.
    sm2: Mutex<Option<sm2::dsa::SigningKey>>,
    /// The witnesses each new checkpoint is submitted to.
    witnesses: Vec<crate::witness::Submit>,
    latest: Mutex<Arc<Published>>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Transparency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transparency")
            .field("origin", &self.signer.name)
            .finish_non_exhaustive()
    }
}

impl Transparency {
    /// The log over `registry`'s store, signed by `signer` (whose name is the origin), with
    /// its first checkpoint made now. Blocks on the store.
    pub fn new(registry: Arc<Registry>, signer: NoteSigner) -> Result<Arc<Self>, RegistryError> {
        Self::witnessed(registry, signer, Vec::new())
    }

    /// The same, each checkpoint submitted to `witnesses` and served with their cosignatures.
    pub fn witnessed(
        registry: Arc<Registry>,
        signer: NoteSigner,
        witnesses: Vec<crate::witness::Submit>,
    ) -> Result<Arc<Self>, RegistryError> {
        let first = sign(&registry, &signer, None, registry.log_size()?)?;
        let (changed, _) = watch::channel(first.size);
        Ok(Arc::new(Transparency {
            registry,
            signer,
            sm2: Mutex::new(None),
            witnesses,
            latest: Mutex::new(Arc::new(first)),
            changed,
        }))
    }

    /// Signs every checkpoint with `key` too (an SM2 line beside the Ed25519 one), the latest
    /// again now (the same size and root, one more signature). Blocks on the store.
    pub fn set_sm2(&self, key: sm2::dsa::SigningKey) -> Result<(), RegistryError> {
        let size = self.latest().size;
        let p = Arc::new(sign(&self.registry, &self.signer, Some(&key), size)?);
        if let Ok(mut k) = self.sm2.lock() {
            *k = Some(key);
        }
        if let Ok(mut l) = self.latest.lock() {
            if l.size == p.size {
                *l = p.clone();
            }
        }
        self.changed.send_replace(p.size);
        Ok(())
    }

    /// The SM2 verifier key of the log, when it signs with one.
    pub fn sm2_vkey(&self) -> Option<String> {
        self.sm2
            .lock()
            .ok()?
            .as_ref()
            .map(|k| suyuan_codec::note::sm2_vkey(&self.signer.name, k.verifying_key()))
    }

    pub fn origin(&self) -> &str {
        &self.signer.name
    }

    /// The verifier key, in the C2SP vkey format.
    pub fn vkey(&self) -> String {
        self.signer.verifier().encode()
    }

    pub fn latest(&self) -> Arc<Published> {
        self.latest
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Signs a checkpoint of the store's log if it grew. Blocks on the store.
    pub fn refresh(&self) -> Result<Arc<Published>, RegistryError> {
        let size = self.registry.log_size()?;
        let latest = self.latest();
        if size <= latest.size {
            return Ok(latest);
        }
        let sm2 = self.sm2.lock().ok().and_then(|k| k.clone());
        let p = Arc::new(sign(&self.registry, &self.signer, sm2.as_ref(), size)?);
        self.publish(&p);
        Ok(p)
    }

    fn publish(&self, p: &Arc<Published>) {
        if let Ok(mut l) = self.latest.lock() {
            // Never step back: a slower refresh may finish after a faster one, and a
            // cosigned checkpoint after a newer one was signed.
            if l.size < p.size || (l.size == p.size && p.witnessed && !l.witnessed) {
                *l = p.clone();
            }
        }
        self.changed.send_replace(p.size);
    }

    /// Submits the latest checkpoint to the configured witnesses and publishes it again with
    /// their cosignatures. Blocks, up to each witness's timeout; the checkpoint was published
    /// before, so a slow or absent witness delays only its cosignature.
    pub fn cosign_latest(&self) -> Arc<Published> {
        let latest = self.latest();
        if self.witnesses.is_empty() || latest.witnessed {
            return latest;
        }
        let Some((mut note, cp)) = Note::parse(&latest.note)
            .ok()
            .and_then(|n| Checkpoint::parse(&n.text).ok().map(|cp| (n, cp)))
        else {
            return latest;
        };
        let proof = |old: u64| self.registry.log_consistency(latest.size, old).ok();
        for w in &self.witnesses {
            match w.cosign(&note, &cp, &proof) {
                Ok(sig) => note.signatures.push(sig),
                Err(e) => warn!(witness = w.url, error = e, "checkpoint not cosigned"),
            }
        }
        let p = Arc::new(Published {
            note: note.encode(),
            witnessed: true,
            ..(*latest).clone()
        });
        self.publish(&p);
        p
    }

    /// A receiver told the size of every new checkpoint.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Keeps the checkpoint current until `shutdown`: after each commit (at most five times a
    /// second) and every second in any case.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if !self.witnesses.is_empty() {
            tokio::spawn(self.clone().cosign_each(shutdown.clone()));
        }
        let mut commits = self.registry.subscribe(64);
        loop {
            tokio::select! {
                _ = commits.recv() => {}
                _ = tokio::time::sleep(REFRESH_AT_LEAST) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "cannot sign a checkpoint"),
                Err(e) => warn!(error = %e, "checkpoint task failed"),
            }
            tokio::time::sleep(REFRESH_AT_MOST).await;
        }
    }

    /// Has each new checkpoint cosigned (the newest, when several came while the witnesses
    /// were asked), the first one at once, until `shutdown`.
    async fn cosign_each(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changed = self.subscribe();
        loop {
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.cosign_latest()).await {
                warn!(error = %e, "cosigning task failed");
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// The proof of the version change `seq` wrote of `handle`, for a caller who may read
    /// the values `shown` of it (their salts are given): `{"index", "entry", "salts",
    /// "receipt"}`, or `{"pending": true, "seq"}` until a checkpoint covers it; `None` when
    /// the change has no leaf (written while the log was off). Blocks.
    pub fn proof(&self, seq: u64, shown: &[u32]) -> Result<Option<Json>, RegistryError> {
        let Some(index) = self.registry.log_index(seq)? else {
            return Ok(None);
        };
        let latest = self.latest();
        if index >= latest.size {
            return Ok(Some(json!({"pending": true, "seq": seq})));
        }
        let Some(entry) = self.registry.log_entry(index)? else {
            return Ok(None);
        };
        let proof = self.registry.log_inclusion(latest.size, index)?;
        let receipt = Receipt {
            extra: None,
            index,
            proof,
            checkpoint: latest.note.clone(),
        };
        let salts: serde_json::Map<String, Json> = shown
            .iter()
            .filter_map(|&i| {
                self.registry
                    .log_salt(seq, i)
                    .map(|s| (i.to_string(), Json::String(B64.encode(s))))
            })
            .collect();
        Ok(Some(json!({
            "index": index,
            "entry": B64.encode(&entry),
            "salts": salts,
            "receipt": receipt.encode(),
        })))
    }
}

/// The checkpoint of the first `size` leaves, signed, and cosigned by every witness that
/// answers (one that does not is left out, and said so in the log).
/// The checkpoint of the log at `size`, signed by the log's key alone.
fn sign(
    registry: &Registry,
    signer: &NoteSigner,
    sm2: Option<&sm2::dsa::SigningKey>,
    size: u64,
) -> Result<Published, RegistryError> {
    let root = registry.log_root(size)?;
    let text = Checkpoint {
        origin: signer.name.clone(),
        size,
        root,
    }
    .text();
    let mut signatures = vec![signer.sign(&text)];
    if let Some(k) = sm2 {
        signatures.push(
            suyuan_codec::note::sm2_sign(&signer.name, k, &text)
                .map_err(|e| RegistryError::Storage(format!("cannot sign a checkpoint: {e}")))?,
        );
    }
    let note = Note { signatures, text };
    Ok(Published {
        size,
        root,
        note: note.encode(),
        witnessed: false,
    })
}

/// What the log's routes need: the log, if this node keeps one.
#[derive(Clone)]
pub(crate) struct LogState {
    pub log: Option<Arc<Transparency>>,
    pub rest: RestState,
}

fn no_log() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "this node keeps no transparency log (log = false)\n".into(),
    )
}

/// The log of a route's state, or the answer that there is none.
macro_rules! log_or_404 {
    ($s:expr) => {
        match &$s.log {
            Some(l) => l.clone(),
            None => return no_log(),
        }
    };
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// GET /log/key
pub(crate) async fn key(State(s): State<LogState>) -> Response {
    let log = log_or_404!(s);
    text(StatusCode::OK, format!("{}\n", log.vkey()))
}

/// GET /log/checkpoint: the latest signed checkpoint, never cached.
pub(crate) async fn checkpoint(State(s): State<LogState>) -> Response {
    let log = log_or_404!(s);
    let mut r = text(StatusCode::OK, log.latest().note.clone());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// GET /log/tile/{path}: a hash tile or an entry bundle of the published checkpoint's tree,
/// immutable once served.
pub(crate) async fn tile(State(s): State<LogState>, UrlPath(path): UrlPath<String>) -> Response {
    let log = log_or_404!(s);
    let Some((tile, entries)) = Tile::parse(&path) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "tile/{path}: not a tile path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])\n"
            ),
        );
    };
    let size = log.latest().size;
    let registry = log.registry.clone();
    let got = tokio::task::spawn_blocking(move || {
        if entries {
            registry.log_entry_bundle(tile, size)
        } else {
            registry.log_tile(tile, size)
        }
    })
    .await;
    match got {
        Ok(Ok(Some(bytes))) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        Ok(Ok(None)) => text(
            StatusCode::NOT_FOUND,
            format!("tile/{path}: not in the tree of the latest checkpoint (size {size})\n"),
        ),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn query_u64(raw: Option<&str>, key: &str) -> Result<Option<u64>, String> {
    let Some(raw) = raw else { return Ok(None) };
    for pair in raw.split('&') {
        if let Some(v) = pair.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            return v
                .parse()
                .map(Some)
                .map_err(|_| format!("{key}={v:?} is not a number"));
        }
    }
    Ok(None)
}

/// GET /log/consistency?from=N&to=M: the RFC 6962 consistency proof from the tree of N
/// leaves to the tree of M (default: the latest checkpoint's size), one base64 hash a line.
pub(crate) async fn consistency(State(s): State<LogState>, RawQuery(raw): RawQuery) -> Response {
    let log = log_or_404!(s);
    let size = log.latest().size;
    let (from, to) = match (
        query_u64(raw.as_deref(), "from"),
        query_u64(raw.as_deref(), "to"),
    ) {
        (Ok(Some(f)), Ok(t)) => (f, t.unwrap_or(size)),
        (Ok(None), _) => return text(StatusCode::BAD_REQUEST, "from=N is required\n".into()),
        (Err(e), _) | (_, Err(e)) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    if from < 1 || from > to || to > size {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "no consistency proof from {from} to {to}: 1 <= from <= to <= {size} (the latest checkpoint's size)\n"
            ),
        );
    }
    let registry = log.registry.clone();
    match tokio::task::spawn_blocking(move || registry.log_consistency(to, from)).await {
        Ok(Ok(p)) => text(
            StatusCode::OK,
            p.iter().map(|h| format!("{}\n", B64.encode(h))).collect(),
        ),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// The indexes of the values of `values` the caller may read (`readable`).
pub(crate) fn shown(values: &[HandleValue], readable: &dyn Fn(&HandleValue) -> bool) -> Vec<u32> {
    values
        .iter()
        .filter(|v| readable(v))
        .map(|v| v.index)
        .collect()
}

fn proof_error(status: StatusCode, handle: &str, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"handle": handle, "message": message}).to_string(),
    )
        .into_response()
}

/// GET /api/proof/{handle}[?seq=N]: the proof of the handle's current version, or of the
/// version change N wrote.
pub(crate) async fn proof(
    State(s): State<LogState>,
    Extension(conn): Extension<ConnInfo>,
    UrlPath(handle): UrlPath<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let log = log_or_404!(s);
    let who = match rest::caller(&s.rest, &conn, &headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let seq = match query_u64(raw.as_deref(), "seq") {
        Ok(q) => q,
        Err(e) => return proof_error(StatusCode::BAD_REQUEST, &handle, e),
    };
    let node = s.rest.node.clone();
    let h = handle.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<Response, RegistryError> {
        let registry = &log.registry;
        // The version asked for: its change's record, checked to be of this handle.
        let (seq, values) = match seq {
            None => match registry.get(&h)? {
                Some(rec) => (rec.seq, rec.values),
                None => {
                    return Ok(proof_error(
                        StatusCode::NOT_FOUND,
                        &h,
                        format!("{h}: handle not found"),
                    ));
                }
            },
            Some(n) => match registry.changes_since(n, 1)?.into_iter().next() {
                Some(c) if c.seq == n && c.handle.eq_ignore_ascii_case(&h) => {
                    (n, c.values.unwrap_or_default())
                }
                _ => {
                    return Ok(proof_error(
                        StatusCode::NOT_FOUND,
                        &h,
                        format!("{h}: change {n} is not a change of this handle"),
                    ));
                }
            },
        };
        let may_read = who.as_ref().is_some_and(|w| node.may_read(w, &h));
        let shown = shown(&values, &|v| {
            v.permissions.public_read() || (may_read && v.permissions.admin_read())
        });
        let Some(mut p) = log.proof(seq, &shown)? else {
            return Ok(proof_error(
                StatusCode::NOT_FOUND,
                &h,
                format!("{h}: change {seq} has no leaf (it was written while the log was off)"),
            ));
        };
        let pending = p.get("pending").is_some();
        if let Some(o) = p.as_object_mut() {
            o.insert("handle".into(), Json::String(h.clone()));
            o.insert("seq".into(), json!(seq));
            // The values the salts open, so the answer is checked on its own.
            let readable: Vec<Json> = values
                .iter()
                .filter(|v| shown.contains(&v.index))
                .map(suyuan_codec::json::value_to_json)
                .collect();
            o.insert("values".into(), Json::Array(readable));
        }
        let status = if pending {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            [(header::CONTENT_TYPE, "application/json")],
            p.to_string(),
        )
            .into_response())
    })
    .await;
    match answer {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => proof_error(StatusCode::INTERNAL_SERVER_ERROR, &handle, e.to_string()),
        Err(e) => proof_error(StatusCode::INTERNAL_SERVER_ERROR, &handle, e.to_string()),
    }
}
