//! The Handle service of a Suyuan node: resolution, site info, and the administrative
//! operations, authenticated by challenge-response as the reference server does without
//! sessions (RC 402, then OC 200 with an HS_SECKEY or HS_PUBKEY answer), authorised by the
//! prefix's administrators, the node's administrators and the handle's HS_ADMIN values with
//! HS_VLIST groups. Answers are signed with the node's key when a request sets CT.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::RngCore;
use rsa::RsaPrivateKey;
use suyuan_codec::auth::{PublicKeyAnswer, SecretKeyAnswer, rsa_public_from_hs, sign_message};
use suyuan_codec::handle::{Handle, key_of};
use suyuan_codec::message::{Body, Message, flags, negotiate_version, opcode, rc};
use suyuan_codec::site::SiteInfo;
use suyuan_codec::value::{
    AdminRecord, HandleValue, PublicKey, admin_perm, decode_value_list, types,
};
use suyuan_registry::{
    CreateMode, Identity, Mutation, PrefixEntry, Record, Registry, RegistryError, Write,
};
use tracing::{debug, warn};

mod command;
mod prefixes;
mod read;
mod values;

pub use command::{
    AddValues, Command, Create, Delete, Done, Executed, Home, ListHandles, ModifyValues,
    RemoveValues, Resolve, Unhome,
};

use crate::catalog::{self, Allow, Holdings, NOT_HERE, Route};
use crate::challenge::{ChallengeConfig, ChallengeTable, Pending};
use crate::service::{Reply, Request, Service, Transport, now_secs};
use crate::session::{Lookup, Session, SessionConfig, SessionTable};

/// How the node answers, besides its store.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The HS_SITE this node publishes.
    pub site: SiteInfo,
    /// The node's own key: it signs answers when a request sets CT.
    pub key: RsaPrivateKey,
    /// Identities that administer the node itself (home and unhome prefixes, list them).
    pub node_admins: Vec<Identity>,
    pub challenges: ChallengeConfig,
    pub sessions: SessionConfig,
    /// Records held in the resolution cache.
    pub cache_entries: u64,
}

/// Set in every session id, clear in every pending-challenge id. Not the top bit: Java clients
/// read the id as a signed int, and a negative one means "no session" to them.
const SESSION_ID_BIT: u32 = 0x4000_0000;
/// The random bits of either kind of id, below [`SESSION_ID_BIT`].
const ID_RANDOM_BITS: u32 = SESSION_ID_BIT - 1;

/// What the reference answers (RC 501) when a session's key exchange fails, whatever the cause
/// (an undecodable or non-RSA key, a key handle it cannot resolve): one message per mode, and
/// one for a key handle without an HS_PUBKEY at the index.
const DH_EXCHANGE_FAILED: &str = "Error encoding public session key";
const CLIENT_CIPHER_FAILED: &str = "Error performing client cipher key exchange.";
const HDL_CIPHER_FAILED: &str = "Error performing hdl cipher key exchange.";
const NO_EXCHANGE_KEY: &str = "No key found in key exchange handle.";
const UNKNOWN_EXCHANGE_MODE: &str = "Unrecognized key exchange mode";
/// The reference's RC 500 message for a session id it does not know (or no longer knows).
const INVALID_SESSION: &str = "Invalid session id or session time out. Please try again.";

/// The change log's actor for a public write nobody authenticated (no handle has no slash, so
/// it names no identity).
const ANONYMOUS: &str = "anonymous";

/// How deep HS_VLIST groups may nest before we stop following them.
const MAX_GROUP_DEPTH: usize = 5;

/// The node's Handle service (cheap to clone: everything is shared).
#[derive(Clone)]
pub struct HandleNode {
    inner: Arc<Inner>,
    /// A resolver face: every resolution this node cannot answer itself is walked for the
    /// client, REC or not.
    always_recurse: bool,
}

/// How the node reaches handles it does not hold.
struct Upstream {
    walker: Arc<suyuan_federation::Walker>,
    /// Whether a request that sets REC gets its answer walked for it (the reference's
    /// `allow_recursion`).
    recursion: bool,
}

/// The reference server's limit on recursion: a request that went through more servers than
/// this is answered RC 6.
pub const MAX_RECURSION: u8 = 10;

impl std::fmt::Debug for HandleNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandleNode").finish_non_exhaustive()
    }
}

struct Inner {
    registry: Arc<Registry>,
    cfg: NodeConfig,
    cache: moka::sync::Cache<String, Arc<Option<Record>>>,
    /// Prefix entries (homed or not, and their administrators), evicted as records are.
    prefixes: moka::sync::Cache<String, Arc<Option<PrefixEntry>>>,
    challenges: Mutex<ChallengeTable>,
    sessions: Mutex<SessionTable>,
    cache_hits: std::sync::atomic::AtomicU64,
    cache_misses: std::sync::atomic::AtomicU64,
    /// This server's place among its site's servers, found by its own key (every server of
    /// a site has its own); `None` when the site does not list it.
    position: Option<usize>,
    /// How the node reaches handles and identities whose records live on other nodes (set
    /// once, with an upstream).
    upstream: std::sync::OnceLock<Upstream>,
}

/// What carrying out a request gave.
enum Outcome {
    Done(Done),
    /// RC 303: these values say who serves the derived prefix asked for.
    Referral(Vec<HandleValue>),
    /// An answer only the Handle wire gives (site info, OC 201, a session's end), or a remote
    /// server's answer passed on: this code and body.
    Wire(u32, Body),
    /// Not held here: the recursive forwarder walks it (see [`HandleNode::call`]).
    Forward,
    Refused(u32, String),
    /// Only an authenticated administrator may do this: challenge the client.
    NeedAuth,
}

/// What the blocking part of a Handle request gave: an answer, or the walk still to do.
enum Step {
    Answered(Reply),
    Forward,
}

fn refused(code: u32, msg: impl Into<String>) -> Outcome {
    Outcome::Refused(code, msg.into())
}

impl From<RegistryError> for Outcome {
    fn from(e: RegistryError) -> Self {
        match e {
            // The answer carries the code already; the message is the reason alone.
            RegistryError::Refused { code, message } => Outcome::Refused(code, message),
            e => {
                warn!(error = %e, "registry failure");
                Outcome::Refused(e.response_code(), e.to_string())
            }
        }
    }
}

impl From<Outcome> for Executed {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Done(d) => Executed::Done(d),
            Outcome::Refused(code, msg) => Executed::Refused(code, msg),
            // Surfaces other than the Handle wire do not carry referrals: say where to ask.
            Outcome::Referral(_) => Executed::Refused(
                rc::PREFIX_REFERRAL,
                "a prefix referral: ask the prefix service it names over the Handle protocol"
                    .into(),
            ),
            // Neither is asked for by the commands other surfaces build.
            Outcome::Forward => Executed::Refused(rc::SERVER_NOT_RESP, NOT_HERE.into()),
            // A remote server's refusal, passed on with its words.
            Outcome::Wire(code, Body::Error { message }) => {
                Executed::Refused(code, message.unwrap_or_default())
            }
            Outcome::Wire(code, _) => Executed::Refused(code, String::new()),
            Outcome::NeedAuth => Executed::NeedAuth,
        }
    }
}

impl HandleNode {
    /// What an input with another scheme's marker (`codec::scheme::recognise`) names: `None`
    /// when it carries none (a handle), `Some(Err(why))` when its scheme refuses it, else the
    /// handle it is bound to, if any. Blocks.
    pub fn bound(&self, input: &str) -> Option<Result<Option<String>, String>> {
        Some(self.inner.registry.bound(input)?.map_err(|e| match e {
            RegistryError::Refused { message, .. } => message,
            e => e.to_string(),
        }))
    }

    pub fn new(registry: Arc<Registry>, cfg: NodeConfig) -> Self {
        let cache: moka::sync::Cache<String, Arc<Option<Record>>> =
            moka::sync::Cache::new(cfg.cache_entries.max(1));
        // Every commit evicts what it changed before it is acknowledged, whichever server on
        // a shared store made it: the cache never serves a value older than an acknowledged
        // write.
        let prefixes: moka::sync::Cache<String, Arc<Option<PrefixEntry>>> =
            moka::sync::Cache::new(4096);
        let (evict, evict_prefixes) = (cache.clone(), prefixes.clone());
        registry.watch(Box::new(move |c| {
            for k in &c.keys {
                evict.invalidate(k);
                evict_prefixes.invalidate(k);
            }
        }));
        let challenges = Mutex::new(ChallengeTable::new(cfg.challenges));
        let sessions = Mutex::new(SessionTable::new(cfg.sessions));
        let own_key = suyuan_codec::auth::hs_from_rsa_public(&cfg.key.to_public_key()).encode();
        let position = cfg
            .site
            .servers
            .iter()
            .position(|s| s.public_key == own_key);
        HandleNode {
            always_recurse: false,
            inner: Arc::new(Inner {
                position,
                registry,
                cfg,
                cache,
                prefixes,
                challenges,
                sessions,
                cache_hits: Default::default(),
                cache_misses: Default::default(),
                upstream: std::sync::OnceLock::new(),
            }),
        }
    }
}

impl HandleNode {
    /// Checks a challenge answer (`signedResponse` of OC 200) for `identity` against its key
    /// or secret stored here: the verifier behind OC 200 and OC 201. `Err` carries the
    /// response code and message of an answer that cannot be checked at all.
    pub fn verify_challenge_answer(
        &self,
        identity: &Identity,
        auth_type: &str,
        answer: &[u8],
        nonce: &[u8],
        digest: &[u8],
        version: (u8, u8),
    ) -> Result<bool, (u32, String)> {
        self.inner
            .verify_answer(identity, auth_type, answer, nonce, digest, version)
            .map_err(|o| match o {
                Outcome::Refused(code, msg) => (code, msg),
                _ => (rc::ERROR, String::new()),
            })
    }
}

impl HandleNode {
    /// Carries out `c` for `who`, whom the calling surface has already authenticated (HTTPS:
    /// Basic with a secret key, a client certificate). The same code as a Handle request
    /// after its challenge: the same checks, the same write path. Blocks on the store.
    pub fn run(&self, c: &Command, who: Option<&Identity>) -> Executed {
        self.inner.run(c, who).into()
    }

    /// One page of the handles under `na` for `who` (REST's `page`/`pageSize`), read from the
    /// store as a page, with the total: `Done` holds the list. Blocks.
    pub fn list_page(
        &self,
        who: Option<&Identity>,
        na: &str,
        offset: u64,
        limit: usize,
    ) -> (u64, Executed) {
        let inner = &self.inner;
        let page = || -> Result<Result<(u64, Vec<String>), Outcome>, RegistryError> {
            let prefix = match inner.may_list(who, na)? {
                Ok(p) => p,
                Err(o) => return Ok(Err(o)),
            };
            let total = inner.registry.count_handles(&prefix)?;
            let handles = inner.registry.list_page(&prefix, offset, limit)?;
            Ok(Ok((total, handles)))
        };
        match page() {
            Ok(Ok((total, handles))) => (total, Executed::Done(Done::Handles(handles))),
            Ok(Err(o)) => (0, Executed::from(o)),
            Err(e) => (0, Executed::Refused(e.response_code(), e.to_string())),
        }
    }

    /// Whether `secret` is an HS_SECKEY of `who` (REST Basic authentication), checked by the
    /// same verifier as a Handle challenge answer, so hashed secrets work alike. Blocks.
    pub fn verify_secret(&self, who: &Identity, secret: &[u8]) -> bool {
        let mut rng = rand::thread_rng();
        let mut nonce = [0u8; 16];
        let mut digest = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        rng.fill_bytes(&mut digest);
        let answer = SecretKeyAnswer::for_version(secret, &nonce, &digest, (2, 11), &mut rng);
        matches!(
            self.inner
                .verify_answer(who, "HS_SECKEY", &answer.encode(), &nonce, &digest, (2, 11)),
            Ok(true)
        )
    }

    /// Whether `key` is an HS_PUBKEY of `who` (client-certificate authentication: the
    /// certificate names the identity and must carry its key). Blocks.
    pub fn holds_public_key(&self, who: &Identity, key: &rsa::RsaPublicKey) -> bool {
        let Ok(rec) = self.inner.record(&who.handle) else {
            return false;
        };
        let Some(rec) = rec.as_ref() else {
            return false;
        };
        identity_rsa_keys(rec, who).any(|k| &k == key)
    }

    /// Registers `handle` in register mode for a device, whose right to it the calling surface
    /// has checked: absent creates, equal writes nothing, different is refused with RC 101.
    /// Blocks.
    pub fn register(
        &self,
        handle: &str,
        values: Vec<HandleValue>,
        actor: &Identity,
    ) -> Result<suyuan_registry::Applied, RegistryError> {
        let h = Handle::parse(handle)
            .map_err(|e| RegistryError::refused(rc::INVALID_HANDLE, e.to_string()))?;
        if let Err(o) = self.inner.target(h.as_str())? {
            let (code, message) = match o {
                Outcome::Refused(code, m) => (code, m),
                Outcome::Referral(_) => (rc::PREFIX_REFERRAL, format!("{h} is served elsewhere")),
                _ => (rc::ERROR, format!("{h} cannot be registered here")),
            };
            return Err(RegistryError::refused(code, message));
        }
        self.inner.write(
            h.as_str(),
            actor,
            Mutation::Create {
                handle: h.as_str().to_string(),
                values,
                mode: CreateMode::Register,
            },
        )
    }

    /// Whether `who` may read the admin-readable values of `handle` (the trace API's rule:
    /// the same as a resolution's). Blocks.
    pub fn may_read(&self, who: &Identity, handle: &str) -> bool {
        let Ok(h) = Handle::parse(handle) else {
            return false;
        };
        let Ok(rec) = self.inner.record(handle) else {
            return false;
        };
        self.inner
            .may(who, &h, rec.as_ref().as_ref(), admin_perm::READ_VALUE)
            .unwrap_or(false)
    }

    /// Whether `m` is answered on the calling task: a resolution outside a session that asks
    /// for no signature is a cache lookup or one read of the store, cheaper than a handoff to
    /// the blocking pool. Everything else (writes wait for their durable commit, signatures
    /// and key exchanges cost milliseconds) belongs on a blocking thread.
    pub fn answers_inline(m: &Message) -> bool {
        m.header.op_code == opcode::RESOLUTION
            && m.envelope.session_id == 0
            && !m.header.has(flags::CT)
    }

    /// Record lookups answered from the cache, and those that went to the store.
    pub fn cache_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.cache_hits.load(Relaxed),
            self.inner.cache_misses.load(Relaxed),
        )
    }

    /// RC 301's message when `handle` hashes to another server of this node's site (for the
    /// surfaces that read the store themselves, such as the trace API).
    pub fn hashed_elsewhere(&self, handle: &str) -> Option<String> {
        self.inner.wrong_server(&Handle::parse(handle).ok()?)
    }

    /// The HS_SITE this node publishes.
    pub fn site(&self) -> &SiteInfo {
        &self.inner.cfg.site
    }
}

impl HandleNode {
    /// This node with a way to handles it does not hold: `recursion` lets requests that set
    /// REC have their answers walked for them. Writes committed here evict the walker's
    /// cached answers for what they changed.
    /// A node has one upstream: a second call changes nothing.
    pub fn with_upstream(self, walker: Arc<suyuan_federation::Walker>, recursion: bool) -> Self {
        let evict = walker.clone();
        if self
            .inner
            .upstream
            .set(Upstream { walker, recursion })
            .is_ok()
        {
            self.inner.registry.watch(Box::new(move |c| {
                for k in &c.keys {
                    evict.evict(k);
                }
            }));
        }
        self
    }

    /// The same node as a resolver face (the IDIS recursive node's role): it walks every
    /// resolution it cannot answer itself, whether the request sets REC or not.
    pub fn recursive_face(&self) -> Self {
        HandleNode {
            always_recurse: true,
            ..self.clone()
        }
    }

    /// The walker this node reaches other nodes with, if it has one.
    pub fn walker(&self) -> Option<&Arc<suyuan_federation::Walker>> {
        self.inner.upstream.get().map(|u| &u.walker)
    }

    /// Whether this node walks the resolutions it does not hold for the callers of surfaces
    /// that cannot ask for recursion themselves (REST, the redirect face): when it has an
    /// upstream and recursion is allowed (or it is the resolver face).
    pub fn forwards_for_http(&self) -> bool {
        self.inner
            .upstream
            .get()
            .is_some_and(|up| up.recursion || self.always_recurse)
    }

    /// Carries out `c` for `who` as [`HandleNode::run`] does, on the calling task when it is
    /// light and on a blocking thread otherwise, and walks what the catalog forwards: the
    /// entry point of the surfaces other than the Handle wire.
    pub async fn execute(&self, c: Command, who: Option<Identity>) -> Executed {
        let outcome = if c.is_light() {
            self.inner.run(&c, who.as_ref())
        } else {
            let inner = self.inner.clone();
            let blocking = move || (inner.run(&c, who.as_ref()), c);
            match tokio::task::spawn_blocking(blocking).await {
                Ok((o, back)) => return self.forwarded(o, &back).await,
                Err(_) => return Executed::Refused(rc::ERROR, "request handler failed".into()),
            }
        };
        self.forwarded(outcome, &c).await
    }

    /// `o`, or, when the catalog forwarded `c`, the answer walked for it.
    async fn forwarded(&self, o: Outcome, c: &Command) -> Executed {
        match (o, c, self.inner.upstream.get()) {
            (Outcome::Forward, Command::Resolve(r), Some(up)) => {
                walk(up, &r.handle, &r.types, &r.indexes, 0).await.into()
            }
            (o, _, _) => o.into(),
        }
    }

    /// Whether a resolution in `m` that this node does not hold (it would answer RC 301, or
    /// RC 303 with a referral) is walked through the hierarchy for the client: on the
    /// resolver face always, elsewhere when the request sets REC and recursion is allowed;
    /// never inside a session, whose answers this node MACs as its own.
    fn forwards(&self, m: &Message) -> bool {
        let Some(up) = self.inner.upstream.get() else {
            return false;
        };
        (self.always_recurse || (up.recursion && m.header.has(flags::REC)))
            && m.envelope.session_id == 0
    }

    /// The recursive forwarder: walks `m` through the hierarchy and answers it as the remote
    /// server did, with a new digest for `m`, not authoritative, and signed by us when `m`
    /// asks for it.
    async fn recurse(&self, m: &Message) -> Reply {
        let Some(up) = self.inner.upstream.get() else {
            return Reply::Silence;
        };
        let Body::Resolution {
            handle,
            indexes,
            types: types_,
        } = &m.body
        else {
            return Reply::Silence;
        };
        let outcome = walk(up, handle, types_, indexes, m.header.recursion_count).await;
        let mut reply = self.inner.reply(m, m, outcome);
        if let Reply::Messages(ms) = &mut reply {
            for r in ms.iter_mut() {
                // Not ours to vouch for: the answer comes from another server (or our cache
                // of it). The signature, if any, was made over the header with AT: redo it.
                r.header.op_flags &= !flags::AT;
                if m.header.has(flags::CT) {
                    if let Err(e) = sign_message(r, &self.inner.cfg.key, 0) {
                        warn!(error = %e, "cannot sign an answer");
                    }
                }
            }
        }
        reply
    }
}

impl Service for HandleNode {
    fn session_key(&self, session_id: u32) -> Option<Vec<u8>> {
        let mut t = self.inner.sessions.lock().ok()?;
        let s = t.get_mut(session_id, Instant::now()).ok()?;
        (!s.key.is_empty()).then(|| s.key.clone())
    }

    async fn call(&self, request: Request) -> Reply {
        let forward = self.forwards(&request.message);
        let (step, request) = if HandleNode::answers_inline(&request.message) {
            (self.inner.handle(&request, forward), request)
        } else {
            let inner = self.inner.clone();
            // The request comes back with the answer: the forwarder may still need it.
            let blocking = move || (inner.handle(&request, forward), request);
            match tokio::task::spawn_blocking(blocking).await {
                Ok(done) => done,
                Err(e) => {
                    warn!(error = %e, "request handler failed");
                    return Reply::Silence;
                }
            }
        };
        match step {
            Step::Answered(reply) => reply,
            Step::Forward => self.recurse(&request.message).await,
        }
    }
}

impl Holdings for Inner {
    fn homed(&self, prefix: &str) -> Result<bool, RegistryError> {
        Ok(self.prefix_entry(prefix)?.is_some())
    }

    fn record(&self, handle: &str) -> Result<Arc<Option<Record>>, RegistryError> {
        Inner::record(self, handle)
    }

    fn elsewhere(&self, h: &Handle) -> Option<String> {
        self.wrong_server(h)
    }
}

impl Inner {
    /// Answers a Handle request, or says that the forwarder is to walk it (`forward`: it
    /// may).
    fn handle(&self, req: &Request, forward: bool) -> Step {
        let m = &req.message;
        let reply = match m.header.op_code {
            opcode::CHALLENGE_RESPONSE => self.answer_challenge(req),
            opcode::SESSION_SETUP => self.setup_session(req),
            opcode::SESSION_EXCHANGEKEY => self.exchange_key(req),
            _ => return self.handle_request(req, forward),
        };
        Step::Answered(reply)
    }

    fn handle_request(&self, req: &Request, forward: bool) -> Step {
        let m = &req.message;
        // A request in a session speaks for the session's identity once a challenge proved it,
        // and must carry a fresh, valid HS_MAC.
        let mut who = None;
        let mut session_key = None;
        if m.envelope.session_id != 0 {
            match self.check_session(m) {
                Ok((id, key)) => {
                    who = id;
                    session_key = Some(key);
                }
                Err(o) => return Step::Answered(self.reply(m, m, o)),
            }
        }
        let outcome = match m.header.op_code {
            opcode::GET_SITE_INFO => {
                Outcome::Wire(rc::SUCCESS, Body::SiteInfo(self.cfg.site.clone()))
            }
            opcode::VERIFY_RESPONSE => self.verify_response(m),
            opcode::SESSION_TERMINATE => {
                let gone = self
                    .sessions
                    .lock()
                    .map(|mut t| t.remove(m.envelope.session_id))
                    .unwrap_or(false);
                if gone {
                    Outcome::Wire(rc::SUCCESS, Body::Empty)
                } else {
                    refused(rc::SESSION_TIMEOUT, INVALID_SESSION)
                }
            }
            _ => self.execute(m, who.as_ref(), forward),
        };
        let reply = match outcome {
            Outcome::Forward => return Step::Forward,
            Outcome::NeedAuth => self.challenge(req),
            o => self.reply(m, m, o),
        };
        Step::Answered(self.mac_reply(m, reply, session_key.as_deref()))
    }

    /// The session a request names: its authenticated identity (if any) and its key.
    fn check_session(&self, m: &Message) -> Result<(Option<Identity>, Vec<u8>), Outcome> {
        let mut table = self
            .sessions
            .lock()
            .map_err(|_| refused(rc::ERROR, "session table poisoned"))?;
        let s = match table.get_mut(m.envelope.session_id, Instant::now()) {
            Ok(s) => s,
            Err(Lookup::Unknown | Lookup::Expired) => {
                return Err(refused(rc::SESSION_TIMEOUT, INVALID_SESSION));
            }
        };
        if s.key.is_empty() {
            return Err(refused(
                rc::SESSION_FAILED,
                "the session's key exchange is not complete",
            ));
        }
        match &m.credential {
            Some(c) if c.cred_type == suyuan_codec::message::credential_type::HS_MAC => {
                if !suyuan_codec::auth::verify_mac(m, &s.key).unwrap_or(false) {
                    return Err(refused(
                        rc::INVALID_CREDENTIAL,
                        "HS_MAC does not verify with the session key",
                    ));
                }
                if !s.accept_counter(c.signer_index) {
                    return Err(refused(
                        rc::SESSION_MESSAGE_REJECTED,
                        format!("session counter {} was used before", c.signer_index),
                    ));
                }
                Ok((s.authenticated.clone(), s.key.clone()))
            }
            // Without a MAC nothing proves the message comes from the session's client.
            _ => Ok((None, s.key.clone())),
        }
    }

    /// In a session, a request with CT gets its answers MAC'd with the session key rather
    /// than signed with the node's key.
    fn mac_reply(&self, request: &Message, reply: Reply, key: Option<&[u8]>) -> Reply {
        let (Some(key), true, Reply::Messages(ms)) = (key, request.header.has(flags::CT), &reply)
        else {
            return reply;
        };
        let counter = request.credential.as_ref().map_or(0, |c| c.signer_index);
        Reply::Messages(
            ms.iter()
                .cloned()
                .map(|mut r| {
                    if let Err(e) = suyuan_codec::auth::mac_message(&mut r, key, counter) {
                        warn!(error = %e, "cannot MAC an answer");
                    }
                    r
                })
                .collect(),
        )
    }

    /// OC 400: agree a session key with the client.
    fn setup_session(&self, req: &Request) -> Reply {
        let m = &req.message;
        let Body::SessionSetup(s) = &m.body else {
            return self.reply(
                m,
                m,
                refused(rc::INVALID_SESSIONSETUP_REQUEST, "not a session setup"),
            );
        };
        if m.envelope.suggested_version() < (2, 4) {
            return self.reply(
                m,
                m,
                refused(rc::SESSION_FAILED, "sessions need protocol 2.4 or newer"),
            );
        }
        use suyuan_codec::message::{KeyExchange, session_mode};
        use suyuan_codec::session::{DhKeyPair, alg, dh_response_data, wrap_session_key};
        let aes_key = || {
            let mut k = vec![0u8; 16];
            rand::thread_rng().fill_bytes(&mut k);
            k
        };
        // A fresh key, and the key wrapped for the RSA key in `bytes` (HS_PUBKEY data).
        let wrap_for = |bytes: &[u8]| -> Result<(Vec<u8>, Vec<u8>), String> {
            let pk = PublicKey::decode(bytes)
                .map_err(|e| e.to_string())
                .and_then(|k| rsa_public_from_hs(&k).map_err(|e| e.to_string()))?;
            let key = aes_key();
            let data = wrap_session_key(&pk, alg::AES, &key, &mut rand::rngs::OsRng)
                .map_err(|e| e.to_string())?;
            Ok((key, data))
        };
        // The session key and the answer's data; or, for RC 501, the one message the reference
        // gives for the mode and the cause (for the log only).
        type Made = Result<(Vec<u8>, Vec<u8>), (&'static str, String)>;
        let made: Made = match (s.mode, &s.exchange) {
            (session_mode::DIFFIE_HELLMAN, KeyExchange::PublicKey(k)) => PublicKey::decode(k)
                .map_err(|e| e.to_string())
                .and_then(|client| {
                    let mine = DhKeyPair::in_group_of(&client, &mut rand::rngs::OsRng)
                        .map_err(|e| e.to_string())?;
                    let key = mine.session_key(&client).map_err(|e| e.to_string())?;
                    Ok((key, dh_response_data(alg::AES, &mine.public)))
                })
                .map_err(|e| (DH_EXCHANGE_FAILED, e)),
            (session_mode::CIPHER_CLIENT, KeyExchange::PublicKey(k)) => {
                wrap_for(k).map_err(|e| (CLIENT_CIPHER_FAILED, e))
            }
            (session_mode::CIPHER_HDL, KeyExchange::KeyRef { handle, index }) => {
                match self.record(handle).as_deref() {
                    Ok(Some(r)) => r
                        .values
                        .iter()
                        .find(|v| {
                            v.index == *index && v.value_type.eq_ignore_ascii_case(types::HS_PUBKEY)
                        })
                        .ok_or((NO_EXCHANGE_KEY, format!("{index}:{handle}")))
                        .and_then(|v| wrap_for(&v.data).map_err(|e| (HDL_CIPHER_FAILED, e))),
                    // The reference fails to resolve a handle it does not hold, and says only
                    // that the exchange failed.
                    Ok(None) => Err((HDL_CIPHER_FAILED, format!("{handle} does not exist"))),
                    Err(e) => Err((HDL_CIPHER_FAILED, e.to_string())),
                }
            }
            // The client will send the key, wrapped for our key, with OC 402.
            (session_mode::CIPHER_SERVER, _) => Ok((
                Vec::new(),
                suyuan_codec::auth::hs_from_rsa_public(&self.cfg.key.to_public_key()).encode(),
            )),
            _ => Err((UNKNOWN_EXCHANGE_MODE, format!("mode {}", s.mode))),
        };
        let (key, data) = match made {
            Ok(x) => x,
            Err((message, cause)) => {
                debug!(mode = s.mode, %cause, "session key exchange failed");
                return self.reply(m, m, refused(rc::SESSION_FAILED, message));
            }
        };
        let mut table = match self.sessions.lock() {
            Ok(t) => t,
            Err(_) => return Reply::Silence,
        };
        let timeout =
            std::time::Duration::from_secs(u64::from(s.timeout.max(1))).min(table.max_timeout());
        let session = Session::new(
            key,
            suyuan_codec::session::alg::AES,
            s.mode,
            Identity::new(s.id_index, s.id_handle.clone()),
            timeout,
            Instant::now(),
        );
        // Session ids have bit 30 set, pending-challenge ids do not: they share the envelope's
        // one field and must never collide. The top bit stays clear, since a Java client reads
        // an id <= 0 as "no session".
        let id = table.insert(session, Instant::now(), || {
            (rand::thread_rng().next_u32() & ID_RANDOM_BITS) | SESSION_ID_BIT
        });
        drop(table);
        let Some(id) = id else {
            return self.reply(m, m, refused(rc::SERVER_TOO_BUSY, "too many sessions"));
        };
        let mut resp = Message::response_to(
            m,
            rc::SUCCESS,
            Body::SessionSetupResponse { mode: s.mode, data },
        );
        // Java sizes the mode as four bytes: the reference's answers end in two zero bytes.
        resp.trailing = vec![0, 0];
        resp.envelope.session_id = id;
        Reply::one(self.finish(m, resp))
    }

    /// OC 402: the client's session key for a server-cipher session, wrapped for our key.
    fn exchange_key(&self, req: &Request) -> Reply {
        let m = &req.message;
        let Body::SessionExchangeKey { encrypted_key } = &m.body else {
            return self.reply(m, m, refused(rc::PROTOCOL_ERROR, "not a key exchange"));
        };
        let outcome = match self.sessions.lock() {
            Ok(mut t) => match t.get_mut(m.envelope.session_id, Instant::now()) {
                Ok(s)
                    if s.mode == suyuan_codec::message::session_mode::CIPHER_SERVER
                        && s.key.is_empty() =>
                {
                    match suyuan_codec::session::unwrap_session_key(&self.cfg.key, encrypted_key) {
                        Ok((alg, key)) if !key.is_empty() => {
                            s.key = key;
                            s.algorithm = alg;
                            Outcome::Wire(rc::SUCCESS, Body::Empty)
                        }
                        _ => refused(rc::SESSION_FAILED, "Can't decrypt client session key."),
                    }
                }
                Ok(_) => refused(rc::SESSION_FAILED, "Invalid session id. Session failed."),
                Err(_) => refused(rc::SESSION_TIMEOUT, INVALID_SESSION),
            },
            Err(_) => return Reply::Silence,
        };
        self.reply(m, m, outcome)
    }

    /// Builds the answer to `request`, on the envelope of `via` (the OC 200 that completed a
    /// challenge, or the request itself).
    fn reply(&self, request: &Message, via: &Message, outcome: Outcome) -> Reply {
        let bodies = match outcome {
            Outcome::Done(d) => wire_bodies(request, d)
                .into_iter()
                .map(|b| (rc::SUCCESS, b))
                .collect(),
            Outcome::Refused(code, msg) => vec![(code, Body::Error { message: Some(msg) })],
            Outcome::Wire(code, body) => vec![(code, body)],
            Outcome::Referral(values) => vec![(
                rc::PREFIX_REFERRAL,
                Body::Referral {
                    handle: String::new(),
                    values: Some(values),
                },
            )],
            // The caller walks instead of answering; nothing to say if it reaches here.
            Outcome::Forward => vec![(
                rc::SERVER_NOT_RESP,
                Body::Error {
                    message: Some(NOT_HERE.into()),
                },
            )],
            Outcome::NeedAuth => vec![(
                rc::AUTHENTICATION_NEEDED,
                Body::Error {
                    message: Some(String::new()),
                },
            )],
        };
        let n = bodies.len();
        let mut out = Vec::with_capacity(n);
        for (i, (code, body)) in bodies.into_iter().enumerate() {
            let mut resp = Message::response_to(request, code, body);
            resp.envelope.request_id = via.envelope.request_id;
            // Answers in a session carry its id; session-less ones 0 (not the pending id).
            resp.envelope.session_id = if via.envelope.session_id & SESSION_ID_BIT != 0 {
                via.envelope.session_id
            } else {
                0
            };
            if request.header.has(flags::RD) || via.header.has(flags::RD) {
                resp.header.op_flags |= flags::RD;
                resp.request_digest =
                    Some(request.digest_as_request(negotiate_version(&request.envelope)));
            }
            if i + 1 < n {
                resp.header.op_flags |= flags::CN;
            }
            out.push(self.finish(via, resp));
        }
        Reply::Messages(out)
    }

    /// What every answer gets: AT (this node is the primary), our site serial, and our
    /// signature when the request asked for one (CT).
    fn finish(&self, request: &Message, mut resp: Message) -> Message {
        resp.header.op_flags |= flags::AT;
        resp.header.site_info_serial = self.cfg.site.serial_number;
        if request.header.has(flags::CT) {
            if let Err(e) = sign_message(&mut resp, &self.cfg.key, 0) {
                warn!(error = %e, "cannot sign an answer");
            }
        }
        resp
    }

    fn record(&self, handle: &str) -> Result<Arc<Option<Record>>, RegistryError> {
        let key = key_of(handle);
        if let Some(r) = self.cache.get(&key) {
            self.cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(r);
        }
        self.cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (rec, at) = self.registry.get_consistent(handle)?;
        let rec = Arc::new(rec);
        // Keep it only if no write committed while it was read, and drop it again if one
        // committed (and evicted an empty slot) before the insert: never older than an
        // acknowledged write.
        // `cache_entries = 0` is no cache at all (for a store another writer changes too).
        if let Some(seq) = at.filter(|_| self.cfg.cache_entries > 0) {
            self.cache.insert(key.clone(), rec.clone());
            if self.registry.last_seq() != seq {
                self.cache.invalidate(&key);
            }
        }
        Ok(rec)
    }

    fn write(
        &self,
        handle: &str,
        who: &Identity,
        mutation: Mutation,
    ) -> Result<suyuan_registry::Applied, RegistryError> {
        let r = self.registry.apply(Write {
            mutation,
            actor: who.to_string(),
            time: u64::from(now_secs()),
        });
        self.cache.invalidate(&key_of(handle));
        r
    }

    /// RC 301's message for a handle another server of this node's site answers. The
    /// reference checks this before anything else about a handle (whether its prefix is homed,
    /// who asks) for resolutions, OC 201 and every write of a handle, and only in a site of
    /// several servers.
    fn wrong_server(&self, h: &Handle) -> Option<String> {
        let site = &self.cfg.site;
        if self.position.is_some_and(|p| site.answers(p, h.as_str())) || site.servers.len() <= 1 {
            return None;
        }
        let owner = match site.server_index_for(h.as_str()) {
            Some(i) => format!(
                "server {} of the site's {}",
                site.servers[i].server_id,
                site.servers.len()
            ),
            None => "no server of the site (its hash has no index there)".to_string(),
        };
        Some(format!("{WRONG_SERVER}: {h} is answered by {owner}"))
    }

    /// A prefix's entry, through a cache of its own under the same rule as records' (every
    /// request reads it: on a database it would be a round trip each time).
    fn prefix_entry(&self, prefix: &str) -> Result<Arc<Option<PrefixEntry>>, RegistryError> {
        let key = key_of(prefix);
        if let Some(p) = self.prefixes.get(&key) {
            return Ok(p);
        }
        let before = self.registry.last_seq();
        let entry = Arc::new(self.registry.prefix(prefix)?);
        if self.cfg.cache_entries > 0 && self.registry.last_seq() == before {
            self.prefixes.insert(key.clone(), entry.clone());
            if self.registry.last_seq() != before {
                self.prefixes.invalidate(&key);
            }
        }
        Ok(entry)
    }

    /// Where a request about `handle` goes (see [`crate::catalog`]), given what the request
    /// allows.
    fn route(&self, handle: &str, allow: Allow) -> Result<Result<Route, Outcome>, RegistryError> {
        let h = match parse(handle) {
            Ok(h) => h,
            Err(o) => return Ok(Err(o)),
        };
        Ok(Ok(catalog::route(self, h, handle, allow)?))
    }

    /// The handle a request names, checked to be ours, with its record (if any): or the
    /// answer to give instead (RC 102 for bad syntax, RC 301 for a prefix not homed here,
    /// RC 303 for a derived prefix delegated elsewhere).
    #[allow(clippy::type_complexity)]
    fn target(
        &self,
        handle: &str,
    ) -> Result<Result<(Handle, Arc<Option<Record>>), Outcome>, RegistryError> {
        Ok(match self.route(handle, Allow::LOCAL)? {
            Err(o) => Err(o),
            Ok(r) => self.local(r),
        })
    }

    /// The registry's handle and record for a route that ends here, or the answer to give.
    #[allow(clippy::type_complexity)]
    fn local(&self, route: Route) -> Result<(Handle, Arc<Option<Record>>), Outcome> {
        match route {
            Route::Local(h, rec) => Ok((h, rec)),
            Route::OwnPrefix(h) => Err(refused(
                rc::SERVER_NOT_RESP,
                format!(
                    "{NOT_HERE}: {h} is this node's own site, answered from its configuration; \
                     it is changed where the prefix was delegated (a top-level node)"
                ),
            )),
            Route::Referral(values) => Err(Outcome::Referral(values)),
            Route::Forward => Err(Outcome::Forward),
            Route::Refused(code, m) => Err(refused(code, m)),
        }
    }

    /// The values this node answers `0.NA/P` with for a prefix P it homes: its own site.
    fn own_prefix_values(&self) -> Vec<HandleValue> {
        vec![HandleValue::new(1, types::HS_SITE, self.cfg.site.encode())]
    }

    fn is_node_admin(&self, who: &Identity) -> bool {
        self.cfg.node_admins.iter().any(|a| a.same_as(who))
    }

    fn is_prefix_admin(&self, who: &Identity, prefix: &str) -> Result<bool, RegistryError> {
        Ok(self.is_node_admin(who)
            || self
                .prefix_entry(prefix)?
                .as_ref()
                .as_ref()
                .is_some_and(|p| p.admins.iter().any(|a| a.same_as(who))))
    }

    /// Whether `who` is `admin_handle:admin_index` or, through HS_VLIST groups, a member.
    fn in_group(
        &self,
        who: &Identity,
        admin_handle: &str,
        admin_index: u32,
        depth: usize,
    ) -> Result<bool, RegistryError> {
        if admin_handle.eq_ignore_ascii_case(&who.handle)
            && (admin_index == 0 || admin_index == who.index)
        {
            return Ok(true);
        }
        if depth >= MAX_GROUP_DEPTH {
            return Ok(false);
        }
        let rec = self.record(admin_handle)?;
        let Some(rec) = rec.as_ref() else {
            return Ok(false);
        };
        for v in rec
            .values
            .iter()
            .filter(|v| v.value_type.eq_ignore_ascii_case(types::HS_VLIST))
        {
            if admin_index != 0 && v.index != admin_index {
                continue;
            }
            for member in decode_value_list(&v.data).unwrap_or_default() {
                if self.in_group(who, &member.handle, member.index, depth + 1)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// `None` when `who` may change `h`'s values with the permission `admin` (when HS_ADMIN
    /// values are among them) or `value` (otherwise); else the refusal to answer.
    fn refuse_unless_may(
        &self,
        who: &Identity,
        h: &Handle,
        rec: Option<&Record>,
        touches_admin: bool,
        (admin, value): (u16, u16),
    ) -> Result<Option<Outcome>, RegistryError> {
        let need = if touches_admin { admin } else { value };
        Ok((!self.may(who, h, rec, need)?).then(|| {
            refused(
                rc::INSUFFICIENT_PERMISSIONS,
                format!("{who} lacks the permission on {h}"),
            )
        }))
    }

    /// Whether `who` may do what `perm` names to `handle` (existing record `rec`).
    fn may(
        &self,
        who: &Identity,
        h: &Handle,
        rec: Option<&Record>,
        perm: u16,
    ) -> Result<bool, RegistryError> {
        if self.is_prefix_admin(who, h.prefix())? {
            return Ok(true);
        }
        let Some(rec) = rec else { return Ok(false) };
        for v in rec
            .values
            .iter()
            .filter(|v| v.value_type.eq_ignore_ascii_case(types::HS_ADMIN))
        {
            if let Ok(a) = AdminRecord::decode(&v.data) {
                if a.has(perm) && self.in_group(who, &a.admin_handle, a.admin_index, 0)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Carries out a Handle request as `who` (None: not authenticated).
    fn execute(&self, m: &Message, who: Option<&Identity>, forward: bool) -> Outcome {
        match Command::from_message(m, forward) {
            Ok(c) => self.run(&c, who),
            Err((code, message)) => refused(code, message),
        }
    }

    /// Carries out a command as `who`: the one place every surface's operations go through.
    fn run(&self, c: &Command, who: Option<&Identity>) -> Outcome {
        let done = match c {
            Command::Resolve(c) => self.resolve(c, who),
            Command::Create(c) => self.create(c, who),
            Command::AddValues(c) => self.add_values(c, who),
            Command::ModifyValues(c) => self.modify_values(c, who),
            Command::RemoveValues(c) => self.remove_values(c, who),
            Command::Delete(c) => self.delete(c, who),
            Command::ListHandles(c) => self.list_handles(c, who),
            Command::Home(c) => self.change_home(&c.prefix, true, who),
            Command::Unhome(c) => self.change_home(&c.prefix, false, who),
            Command::ListHomed => self.list_homed(who),
        };
        done.unwrap_or_else(Outcome::from)
    }

    /// Answers with RC 402 and remembers the request until the client answers the nonce.
    fn challenge(&self, req: &Request) -> Reply {
        let m = &req.message;
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let digest = m.digest_as_request(negotiate_version(&m.envelope));
        let pending = Pending {
            request: m.clone(),
            nonce,
            digest: digest.clone(),
            source: req.peer.ip(),
            created: Instant::now(),
        };
        let session = m.envelope.session_id;
        let id = match self.challenges.lock() {
            Ok(mut t) if session != 0 => t
                .insert_for_session(session, pending, Instant::now())
                .map(|()| session),
            Ok(mut t) => t.insert(pending, Instant::now(), || {
                rand::thread_rng().next_u32() & ID_RANDOM_BITS
            }),
            Err(_) => return Reply::Silence,
        };
        let id = match id {
            Ok(id) => id,
            Err(e) => return self.reply(m, m, refused(rc::SERVER_TOO_BUSY, e.to_string())),
        };
        let mut resp = Message::response_to(
            m,
            rc::AUTHENTICATION_NEEDED,
            Body::Challenge {
                nonce: nonce.to_vec(),
            },
        );
        resp.request_digest = Some(digest);
        resp.header.op_flags = (resp.header.op_flags | flags::RD) & !flags::PO;
        resp.envelope.session_id = id;
        Reply::one(self.finish(m, resp))
    }

    fn answer_challenge(&self, req: &Request) -> Reply {
        let answer = &req.message;
        let Body::ChallengeResponse {
            auth_type,
            id_handle,
            id_index,
            signed_response,
        } = &answer.body
        else {
            return self.reply(
                answer,
                answer,
                refused(rc::PROTOCOL_ERROR, "not a challenge response"),
            );
        };
        let pending = self
            .challenges
            .lock()
            .ok()
            .and_then(|mut t| t.take(answer.envelope.session_id, Instant::now()));
        let Some(p) = pending else {
            return self.reply(
                answer,
                answer,
                refused(rc::AUTHEN_TIMEOUT, "no such challenge, or it expired"),
            );
        };
        let who = Identity::new(*id_index, id_handle.clone());
        let verified = self.verify_answer(
            &who,
            auth_type,
            signed_response,
            &p.nonce,
            &p.digest.digest,
            p.request.version(),
        );
        match verified {
            Ok(true) => {
                if let Ok(mut t) = self.sessions.lock() {
                    if let Ok(s) = t.get_mut(answer.envelope.session_id, Instant::now()) {
                        s.authenticated = Some(who.clone());
                    }
                }
                if req.transport == Transport::Udp
                    && opcode::is_administrative(p.request.header.op_code)
                {
                    return self.reply(
                        &p.request,
                        answer,
                        refused(
                            rc::PROTOCOL_ERROR,
                            "Received admin request on non-admin interface",
                        ),
                    );
                }
                let outcome = self.execute(&p.request, Some(&who), false);
                self.reply(&p.request, answer, outcome)
            }
            Ok(false) => {
                debug!(identity = %who, "challenge answer did not verify");
                self.reply(
                    &p.request,
                    answer,
                    Outcome::Refused(rc::AUTHENTICATION_FAILED, String::new()),
                )
            }
            Err(o) => self.reply(&p.request, answer, o),
        }
    }

    /// Checks an answer against the identity's key stored here.
    fn verify_answer(
        &self,
        who: &Identity,
        auth_type: &str,
        answer: &[u8],
        nonce: &[u8],
        digest: &[u8],
        version: (u8, u8),
    ) -> Result<bool, Outcome> {
        let mut rec = self.record(&who.handle).map_err(Outcome::from)?;
        if rec.is_none() {
            if let Some(w) = self.elsewhere_identity(who)? {
                match auth_type {
                    // Its home checks the secret: we never see it.
                    "HS_SECKEY" => return remote_secret_check(&w, who, answer, nonce, digest),
                    // Its public key, found through the hierarchy, is checked here.
                    _ => rec = Arc::new(remote_keys(&w, who)),
                }
            }
        }
        let Some(rec) = rec.as_ref() else {
            return Err(refused(rc::AUTHENTICATION_FAILED, String::new()));
        };
        match auth_type {
            "HS_SECKEY" => {
                let a = SecretKeyAnswer::decode(answer, version < (2, 1))
                    .map_err(|e| refused(rc::INVALID_CREDENTIAL, e.to_string()))?;
                for v in identity_values(rec, who, types::HS_SECKEY) {
                    if a.verify(&v.data, nonce, digest)
                        .map_err(|e| refused(rc::INVALID_CREDENTIAL, e.to_string()))?
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            "HS_PUBKEY" => {
                let a = PublicKeyAnswer::decode(answer)
                    .map_err(|e| refused(rc::INVALID_CREDENTIAL, e.to_string()))?;
                Ok(identity_rsa_keys(rec, who)
                    .any(|key| a.verify(&key, nonce, digest).unwrap_or(false)))
            }
            other => Err(refused(
                rc::INVALID_CREDENTIAL,
                format!("unknown authentication type {other:?}"),
            )),
        }
    }

    /// The walker to verify `who` with, when its handle is under a prefix not homed here and
    /// this node has an upstream.
    fn elsewhere_identity(
        &self,
        who: &Identity,
    ) -> Result<Option<Arc<suyuan_federation::Walker>>, Outcome> {
        let Some(w) = self.upstream.get().map(|u| &u.walker) else {
            return Ok(None);
        };
        let Ok(h) = Handle::parse(&who.handle) else {
            return Ok(None);
        };
        if self
            .prefix_entry(h.prefix())
            .map_err(Outcome::from)?
            .is_some()
        {
            return Ok(None);
        }
        Ok(Some(w.clone()))
    }

    /// OC 201: another server asks whether a secret-key answer is right for an identity here.
    fn verify_response(&self, m: &Message) -> Outcome {
        let Body::VerifyResponse {
            handle,
            index,
            nonce,
            request_digest,
            signed_response,
        } = &m.body
        else {
            return refused(rc::PROTOCOL_ERROR, "not a verify request");
        };
        if let Some(m) = parse(handle).ok().and_then(|h| self.wrong_server(&h)) {
            return refused(rc::SERVER_NOT_RESP, m);
        }
        let who = Identity::new(*index, handle.clone());
        match self.verify_answer(
            &who,
            "HS_SECKEY",
            signed_response,
            nonce,
            request_digest,
            m.version(),
        ) {
            Ok(valid) => Outcome::Wire(
                rc::SUCCESS,
                Body::VerifyResult {
                    valid: u8::from(valid),
                },
            ),
            Err(o) => o,
        }
    }
}

/// The recursive forwarder's walk of a resolution through the hierarchy, for a request that
/// went through `recursion_count` servers already: the remote server's answer (the handle
/// spelled as asked), or why there is none.
async fn walk(
    up: &Upstream,
    handle: &str,
    types_: &[String],
    indexes: &[u32],
    recursion_count: u8,
) -> Outcome {
    if recursion_count >= MAX_RECURSION {
        return refused(
            rc::RECURSION_COUNT_TOO_HIGH,
            format!(
                "{handle}: the request went through {recursion_count} servers already \
                 (at most {MAX_RECURSION})"
            ),
        );
    }
    let hops = suyuan_federation::Hops(recursion_count);
    match up.walker.resolve(handle, types_, indexes, hops).await {
        Ok(a) => {
            let code = a.message.header.response_code;
            match a.message.body {
                Body::ResolutionResponse { values, .. } if code == rc::SUCCESS => {
                    Outcome::Done(Done::Values {
                        handle: handle.to_string(),
                        values,
                    })
                }
                b => Outcome::Wire(code, b),
            }
        }
        Err(e) => {
            debug!(handle, error = %e, "recursion failed");
            let code = match e {
                suyuan_federation::WalkError::PrefixUnknown { .. } => rc::HANDLE_NOT_FOUND,
                _ => rc::ERROR,
            };
            refused(code, e.to_string())
        }
    }
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own: identity checks are
/// synchronous (they run on the blocking pool), the walker is async.
fn run_walk<F>(f: F) -> Option<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
                .map(|rt| rt.block_on(f))
        })
        .join()
        .ok()
        .flatten()
    })
}

/// The HS_PUBKEY values of a remote identity, resolved through the hierarchy (cached by
/// their TTLs), as a record of its own; none when it cannot be found.
fn remote_keys(w: &suyuan_federation::Walker, who: &Identity) -> Option<Record> {
    let indexes: Vec<u32> = if who.index == 0 {
        vec![]
    } else {
        vec![who.index]
    };
    let types_ = vec![types::HS_PUBKEY.to_string()];
    let walk = w.resolve(&who.handle, &types_, &indexes, suyuan_federation::Hops(0));
    match run_walk(walk) {
        Some(Ok(a)) => match a.message.body {
            Body::ResolutionResponse { values, .. } => Some(Record {
                handle: who.handle.clone(),
                values,
                seq: 0,
                links: Vec::new(),
            }),
            _ => None,
        },
        Some(Err(e)) => {
            debug!(identity = %who, error = %e, "cannot resolve a remote identity");
            None
        }
        None => None,
    }
}

/// Asks the home of `who` whether a secret-key answer is right (OC 201, as the reference
/// server asks): the secret never leaves its home.
fn remote_secret_check(
    w: &suyuan_federation::Walker,
    who: &Identity,
    answer: &[u8],
    nonce: &[u8],
    digest: &[u8],
) -> Result<bool, Outcome> {
    let m = Message::request(
        opcode::VERIFY_RESPONSE,
        flags::CA,
        rand::random::<u32>() >> 1,
        now_secs().saturating_add(12 * 3600),
        Body::VerifyResponse {
            handle: who.handle.clone(),
            index: who.index,
            nonce: nonce.to_vec(),
            request_digest: digest.to_vec(),
            signed_response: answer.to_vec(),
        },
    );
    match run_walk(w.send(&who.handle, m)) {
        Some(Ok(a)) => match a.message.body {
            Body::VerifyResult { valid } => Ok(valid != 0),
            _ => Err(refused(
                rc::AUTHENTICATION_FAILED,
                format!(
                    "{who}'s home ({}) could not check the answer: {}",
                    a.served_by,
                    rc::name(a.message.header.response_code).unwrap_or("UNKNOWN")
                ),
            )),
        },
        Some(Err(e)) => Err(refused(
            rc::AUTHENTICATION_FAILED,
            format!("cannot reach {who}'s home to check the answer: {e}"),
        )),
        None => Err(refused(rc::ERROR, "the identity check failed to run")),
    }
}

/// The values of type `t` that speak for `who` in its record (any index when `who.index` is 0).
fn identity_values<'a>(
    rec: &'a Record,
    who: &'a Identity,
    t: &'a str,
) -> impl Iterator<Item = &'a HandleValue> + 'a {
    rec.values.iter().filter(move |v| {
        v.value_type.eq_ignore_ascii_case(t) && (who.index == 0 || v.index == who.index)
    })
}

/// The RSA keys among `who`'s HS_PUBKEY values (others are skipped).
fn identity_rsa_keys<'a>(
    rec: &'a Record,
    who: &'a Identity,
) -> impl Iterator<Item = rsa::RsaPublicKey> + 'a {
    identity_values(rec, who, types::HS_PUBKEY).filter_map(|v| {
        PublicKey::decode(&v.data)
            .ok()
            .and_then(|k| rsa_public_from_hs(&k).ok())
    })
}

/// A success's bodies on the Handle wire: a list of handles a message per
/// [`prefixes::LIST_PAGE`] for OC 105 (one, empty, when there are none), as the reference
/// sends it.
fn wire_bodies(request: &Message, d: Done) -> Vec<Body> {
    match d {
        Done::Values { handle, values } => vec![Body::ResolutionResponse { handle, values }],
        Done::Created(handle) => vec![Body::Created {
            handle: Some(handle),
        }],
        Done::Handles(handles) if request.header.op_code == opcode::LIST_HANDLES => {
            let mut pages: Vec<Body> = handles
                .chunks(prefixes::LIST_PAGE)
                .map(|c| Body::HandleList {
                    handles: c.to_vec(),
                })
                .collect();
            if pages.is_empty() {
                pages.push(Body::HandleList {
                    handles: Vec::new(),
                });
            }
            pages
        }
        Done::Handles(handles) => vec![Body::HandleList { handles }],
        Done::Nothing => vec![Body::Empty],
    }
}

fn parse(handle: &str) -> Result<Handle, Outcome> {
    Handle::parse_lenient(handle).map_err(|e| refused(rc::INVALID_HANDLE, e.to_string()))
}

fn not_found() -> Outcome {
    // The reference's 100 carries an empty message.
    refused(rc::HANDLE_NOT_FOUND, String::new())
}

const WRONG_SERVER: &str = "Request was hashed incorrectly";
