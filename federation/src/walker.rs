//! Resolution through the hierarchy, as the reference resolver (`HandleResolver`) does it: the
//! service of a handle is found at the configured tops by its prefix handle `0.NA/<prefix>`,
//! HS_SERV chains are followed to the sites they name, the server within a site is the one
//! the MD5 rule picks, and RC 302/303 referrals are followed up to a hop limit. Answers are
//! cached by their values' own TTLs.
//!
//! The walker only ever talks to the tops it was configured with and to the sites their
//! records lead to: there is no built-in root.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use suyuan_codec::handle::{Handle, NA_PREFIX};
use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::site::SiteInfo;
use suyuan_codec::value::{HandleValue, TtlType, types};

use crate::client::{ClientError, Transport};
use crate::link::{Link, udp_then_tcp};

/// The reference client's referral limit (`HandleResolver`): a walk that needs more hops is
/// going round in circles.
pub const MAX_HOPS: u32 = 40;
/// How deep HS_SERV values may lead to further HS_SERV values (`BootstrapHandles.MAX_DEPTH`).
pub const MAX_SERVICE_DEPTH: u32 = 20;
/// The longest any answer is cached, whatever its values say (`MemCache`'s maxTTL).
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// How long a server that failed is tried after the others.
const FAILED_SERVER_MEMORY: Duration = Duration::from_secs(30);
/// The handle whose sites are the configured tops.
pub const ROOT_SERVICE: &str = "0.NA/0.NA";
/// The types asked for when looking a prefix up at its service.
const SERVICE_TYPES: [&str; 4] = [
    types::HS_SITE,
    types::HS_SITE_6,
    types::HS_SERV,
    "HS_NAMESPACE",
];
/// The types whose values are sites (HS_SITE data).
const SITE_TYPES: [&str; 2] = [types::HS_SITE, types::HS_SITE_6];
/// The types whose values name a service handle, whose own sites serve.
const SERVICE_HANDLE_TYPES: [&str; 1] = [types::HS_SERV];
/// The types asked of a service handle: its sites and further service handles.
const SERVICE_HANDLE_QUERY: [&str; 3] = [types::HS_SITE, types::HS_SITE_6, types::HS_SERV];
/// The types of a referral (RC 303) that name the service of a derived prefix.
const PREFIX_REFERRAL_TYPES: [&str; 3] = [
    types::HS_SITE_PREFIX,
    types::HS_NA_DELEGATE,
    types::HS_SERV_PREFIX,
];

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    #[error("cannot resolve {handle}: no upstream top-level node is configured (serve --upstream)")]
    NoUpstream { handle: String },
    #[error(
        "prefix {prefix} is unknown to the prefix service: {service} answered HANDLE_NOT_FOUND \
         for {NA_PREFIX}/{prefix} (last site tried: {last})"
    )]
    PrefixUnknown {
        prefix: String,
        service: String,
        last: String,
    },
    #[error(
        "no service for prefix {prefix}: {NA_PREFIX}/{prefix} holds no usable HS_SITE or HS_SERV \
         (last site tried: {last})"
    )]
    ServiceNotFound { prefix: String, last: String },
    #[error("cannot resolve {handle}: every site of {service} failed (last tried {last}: {why})")]
    AllSitesDown {
        handle: String,
        service: String,
        last: String,
        why: String,
    },
    #[error(
        "cannot resolve {handle}: more than {MAX_HOPS} referrals (prefix {prefix}, last site tried: \
         {last})"
    )]
    HopLimit {
        handle: String,
        prefix: String,
        last: String,
    },
    #[error("cannot resolve {handle}: referrals go round in a loop ({chain}; prefix {prefix})")]
    Loop {
        handle: String,
        prefix: String,
        chain: String,
    },
    #[error(
        "cannot resolve {handle}: HS_SERV values lead more than {MAX_SERVICE_DEPTH} handles deep \
         or back to themselves ({chain})"
    )]
    ServiceDepth { handle: String, chain: String },
    #[error("cannot resolve {handle}: {why}")]
    Invalid { handle: String, why: String },
}

/// Who answered: the service handle the sites came from and the server asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBy {
    /// The handle whose HS_SITE values named the site (`0.NA/88.888`, a service handle, or
    /// `0.NA/0.NA` for the configured tops).
    pub service: String,
    pub server: SocketAddr,
    pub transport: Transport,
}

impl std::fmt::Display for ServedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
            _ => "udp",
        };
        write!(f, "{} at {t} {}", self.service, self.server)
    }
}

/// The final answer of a walk: the remote server's message (any response code other than a
/// referral) and where it came from.
#[derive(Debug, Clone)]
pub struct Answer {
    pub message: Message,
    pub served_by: ServedBy,
    /// Servers asked for the handle itself, referrals included (0 when it came from the
    /// cache); the lookups of its prefix's service are not counted.
    pub round_trips: u32,
    pub cached: bool,
}

/// What the walker reports as it works, for metrics. Every method does nothing by default.
pub trait Observer: Send + Sync {
    /// One request to an upstream server: `outcome` is `answered`, `no_answer` or `error`.
    fn upstream(&self, _outcome: &'static str, _elapsed: Duration) {}
    fn cache(&self, _hit: bool) {}
    /// A referral followed: its response code (302 or 303).
    fn referral(&self, _code: u32) {}
}

struct Quiet;
impl Observer for Quiet {}

/// How the walker works.
#[derive(Clone)]
pub struct WalkerConfig {
    /// The sites of the configured tops: the service of `0.NA/…` handles and of `0.NA/0.NA`.
    pub tops: Vec<SiteInfo>,
    /// Answers held in the cache at most.
    pub cache_entries: u64,
    /// The longest an answer is cached (at most [`MAX_TTL`]).
    pub max_ttl: Duration,
    /// The transports a request is tried over at each server, in order (default: UDP, then
    /// TCP with a 10-second exchange).
    pub links: Vec<Arc<dyn Link>>,
    /// Wall-clock epoch seconds, for values with absolute TTLs (injectable for tests).
    pub now_unix: fn() -> u64,
}

impl std::fmt::Debug for WalkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalkerConfig")
            .field("tops", &self.tops.len())
            .field("cache_entries", &self.cache_entries)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

impl WalkerConfig {
    pub fn new(tops: Vec<SiteInfo>) -> Self {
        WalkerConfig {
            tops,
            cache_entries: 10_000,
            max_ttl: MAX_TTL,
            links: udp_then_tcp(Duration::from_secs(10)),
            now_unix: unix_now,
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug, Clone)]
struct Cached {
    code: u32,
    values: Vec<HandleValue>,
    served_by: ServedBy,
    expires: Instant,
}

/// A set of sites and the handle that named them.
#[derive(Debug, Clone)]
struct Service {
    handle: String,
    sites: Vec<SiteInfo>,
}

/// The federation client: resolves any handle by walking from the configured tops.
pub struct Walker {
    cfg: WalkerConfig,
    /// Keyed by the upper-cased handle and the query, so that a write evicts every query of it.
    cache: moka::sync::Cache<(String, String), Arc<Cached>>,
    next_id: AtomicU32,
    observer: Arc<dyn Observer>,
    /// Servers that failed lately: their sites are tried after the others for a while, so
    /// that one dead site does not cost every request its timeouts.
    failed: moka::sync::Cache<SocketAddr, ()>,
}

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The recursion count of the request a walk answers: the requests of the walk carry one
/// more, so a chain of recursing servers ends (RC 6 past ten).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hops(pub u8);

impl Walker {
    pub fn new(cfg: WalkerConfig) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(cfg.cache_entries.max(1))
            .support_invalidation_closures()
            .build();
        let seed = std::process::id().wrapping_mul(2_246_822_519);
        Walker {
            cfg,
            cache,
            next_id: AtomicU32::new(seed | 1),
            observer: Arc::new(Quiet),
            failed: moka::sync::Cache::builder()
                .max_capacity(4096)
                .time_to_live(FAILED_SERVER_MEMORY)
                .build(),
        }
    }

    pub fn with_observer(mut self, o: Arc<dyn Observer>) -> Self {
        self.observer = o;
        self
    }

    /// Forgets every cached answer about `handle` (after a write to it).
    pub fn evict(&self, handle: &str) {
        let key = handle.to_ascii_uppercase();
        // Invalidation closures only fail when the cache was built without them.
        let _ = self.cache.invalidate_entries_if(move |k, _| k.0 == key);
    }

    /// Answers held in the cache now.
    pub fn cached_entries(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Resolves `handle` (public values of the given types and indexes, none meaning all) at
    /// the server the hierarchy names, from the cache when it holds a fresh answer.
    /// `hops` is the recursion count of the request this walk answers.
    pub async fn resolve(
        &self,
        handle: &str,
        types_: &[String],
        indexes: &[u32],
        hops: Hops,
    ) -> Result<Answer, WalkError> {
        self.resolve_at(handle, types_, indexes, hops, 0).await
    }

    /// `resolve`, `depth` lookups deep inside another (a service handle, a referral's
    /// handle): however the records chain them, a walk does a bounded amount of work.
    async fn resolve_at(
        &self,
        handle: &str,
        types_: &[String],
        indexes: &[u32],
        hops: Hops,
        depth: u32,
    ) -> Result<Answer, WalkError> {
        if depth > MAX_SERVICE_DEPTH {
            return Err(WalkError::ServiceDepth {
                handle: handle.to_string(),
                chain: format!("{depth} lookups nested inside one another"),
            });
        }
        let h = Handle::parse_lenient(handle).map_err(|e| WalkError::Invalid {
            handle: handle.to_string(),
            why: e.to_string(),
        })?;
        let key = (h.key(), query_key(types_, indexes));
        if let Some(c) = self.cache.get(&key) {
            if Instant::now() < c.expires {
                self.observer.cache(true);
                return Ok(Answer {
                    message: cached_message(h.as_str(), &c),
                    served_by: c.served_by.clone(),
                    round_trips: 0,
                    cached: true,
                });
            }
            self.cache.invalidate(&key);
        }
        self.observer.cache(false);
        let req = self.resolution(h.as_str(), types_, indexes, hops, false);
        let answer = self.walk(&h, req, depth).await?;
        let code = answer.message.header.response_code;
        let values = match &answer.message.body {
            Body::ResolutionResponse { values, .. } if code == rc::SUCCESS => Some(values.clone()),
            _ if code == rc::VALUES_NOT_FOUND => Some(Vec::new()),
            _ => None,
        };
        if let Some(values) = values {
            let ttl = self.ttl_of(&values);
            if !ttl.is_zero() {
                self.cache.insert(
                    key,
                    Arc::new(Cached {
                        code,
                        values,
                        served_by: answer.served_by.clone(),
                        expires: Instant::now() + ttl,
                    }),
                );
            }
        }
        Ok(answer)
    }

    /// Sends any request about `handle` to the server the hierarchy names, uncached; an
    /// administrative or authoritative request goes to primary sites only. The caller builds
    /// the request (and answers any challenge on the server it came from).
    pub async fn send(&self, handle: &str, request: Message) -> Result<Answer, WalkError> {
        let h = Handle::parse_lenient(handle).map_err(|e| WalkError::Invalid {
            handle: handle.to_string(),
            why: e.to_string(),
        })?;
        let answer = self.walk(&h, request, 0).await;
        self.evict(h.as_str());
        answer
    }

    /// The sites that serve `handle`'s prefix, and the handle that named them.
    pub async fn sites_for(&self, handle: &str) -> Result<(String, Vec<SiteInfo>), WalkError> {
        let h = Handle::parse_lenient(handle).map_err(|e| WalkError::Invalid {
            handle: handle.to_string(),
            why: e.to_string(),
        })?;
        let s = self.service_of(&h, 0).await?;
        Ok((s.handle, s.sites))
    }

    fn resolution(
        &self,
        handle: &str,
        types_: &[String],
        indexes: &[u32],
        hops: Hops,
        authoritative: bool,
    ) -> Message {
        let mut op_flags = flags::CA | flags::PO;
        if authoritative {
            op_flags |= flags::AT;
        }
        let mut m = Message::request(
            opcode::RESOLUTION,
            op_flags,
            self.next_id.fetch_add(1, Ordering::Relaxed),
            crate::client::expiration_at((self.cfg.now_unix)()),
            Body::Resolution {
                handle: handle.to_string(),
                indexes: indexes.to_vec(),
                types: types_.to_vec(),
            },
        );
        m.header.recursion_count = hops.0.saturating_add(1);
        m
    }

    /// How long an answer with these values may be cached: the shortest of their TTLs, capped.
    fn ttl_of(&self, values: &[HandleValue]) -> Duration {
        let cap = self.cfg.max_ttl.min(MAX_TTL);
        let now = (self.cfg.now_unix)();
        values
            .iter()
            .map(|v| {
                let secs = match v.ttl_type {
                    TtlType::Absolute => (v.ttl as u32 as u64).saturating_sub(now),
                    _ => u64::try_from(v.ttl).unwrap_or(0),
                };
                Duration::from_secs(secs)
            })
            .min()
            .unwrap_or(cap)
            .min(cap)
    }

    /// Where requests about `h` go: the tops for prefix handles, `0.NA/0.NA` and anything
    /// under a `0.` prefix, else the sites `0.NA/<prefix>` names.
    async fn service_of(&self, h: &Handle, depth: u32) -> Result<Service, WalkError> {
        if self.cfg.tops.is_empty() {
            return Err(WalkError::NoUpstream {
                handle: h.to_string(),
            });
        }
        if h.prefix().starts_with("0.") || h.prefix() == "0" {
            return Ok(self.root());
        }
        let prefix = h.prefix().to_string();
        let na = format!("{NA_PREFIX}/{prefix}");
        let wanted = owned(&SERVICE_TYPES);
        let mut last = String::from("none");
        for authoritative in [false, true] {
            // A prefix created a moment ago may not have reached a mirror: ask a primary once.
            let answer = if authoritative {
                let na_h = Handle::parse(&na).map_err(|e| WalkError::Invalid {
                    handle: na.clone(),
                    why: e.to_string(),
                })?;
                let req = self.resolution(&na, &wanted, &[], Hops(0), true);
                Box::pin(self.walk(&na_h, req, depth + 1)).await?
            } else {
                Box::pin(self.resolve_at(&na, &wanted, &[], Hops(0), depth + 1)).await?
            };
            last = answer.served_by.to_string();
            let code = answer.message.header.response_code;
            if code == rc::HANDLE_NOT_FOUND {
                return Err(WalkError::PrefixUnknown {
                    prefix,
                    service: answer.served_by.service,
                    last,
                });
            }
            let values = match &answer.message.body {
                Body::ResolutionResponse { values, .. } => values.clone(),
                _ => Vec::new(),
            };
            let mut visited = HashSet::from([na.to_ascii_uppercase()]);
            let sites = self.service_sites(&values, &mut visited, depth).await?;
            if !sites.is_empty() {
                return Ok(Service { handle: na, sites });
            }
        }
        Err(WalkError::ServiceNotFound { prefix, last })
    }

    fn root(&self) -> Service {
        Service {
            handle: ROOT_SERVICE.to_string(),
            sites: self.cfg.tops.clone(),
        }
    }

    /// The sites named by `values`: those of the site types, and those of every handle the
    /// service types name (followed to their own HS_SITE and HS_SERV values, `0.NA/0.NA`
    /// meaning the configured tops).
    async fn sites_of_values(
        &self,
        values: &[HandleValue],
        site_types: &[&str],
        service_types: &[&str],
        visited: &mut HashSet<String>,
        depth: u32,
    ) -> Result<Vec<SiteInfo>, WalkError> {
        let is =
            |v: &HandleValue, ts: &[&str]| ts.iter().any(|t| v.value_type.eq_ignore_ascii_case(t));
        let mut sites: Vec<SiteInfo> = values
            .iter()
            .filter(|v| is(v, site_types))
            .filter_map(|v| SiteInfo::decode(&v.data).ok())
            .collect();
        for v in values.iter().filter(|v| is(v, service_types)) {
            let Ok(name) = std::str::from_utf8(&v.data) else {
                continue;
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case(ROOT_SERVICE) {
                sites.extend(self.cfg.tops.iter().cloned());
                continue;
            }
            if !visited.insert(name.to_ascii_uppercase()) || depth >= MAX_SERVICE_DEPTH {
                let mut chain: Vec<String> = visited.iter().cloned().collect();
                chain.sort();
                return Err(WalkError::ServiceDepth {
                    handle: name.to_string(),
                    chain: chain.join(" → "),
                });
            }
            let wanted = owned(&SERVICE_HANDLE_QUERY);
            let answer = Box::pin(self.resolve_at(name, &wanted, &[], Hops(0), depth + 1)).await?;
            if let Body::ResolutionResponse { values, .. } = &answer.message.body {
                let more = Box::pin(self.service_sites(values, visited, depth + 1)).await?;
                sites.extend(more);
            }
        }
        Ok(sites)
    }

    /// The sites of a service's own values: HS_SITE and HS_SITE.6, and those of the service
    /// handles its HS_SERV values name.
    async fn service_sites(
        &self,
        values: &[HandleValue],
        visited: &mut HashSet<String>,
        depth: u32,
    ) -> Result<Vec<SiteInfo>, WalkError> {
        self.sites_of_values(values, &SITE_TYPES, &SERVICE_HANDLE_TYPES, visited, depth)
            .await
    }

    /// Sends `req` about `h` to its service and follows referrals to the final answer.
    async fn walk(&self, h: &Handle, req: Message, depth: u32) -> Result<Answer, WalkError> {
        let mut service = Box::pin(self.service_of(h, depth)).await?;
        let mut seen: HashSet<String> = HashSet::new();
        let mut chain = vec![service.handle.clone()];
        for round_trips in 1..=MAX_HOPS + 1 {
            let fingerprint = fingerprint(&service.sites);
            if !seen.insert(fingerprint) {
                return Err(WalkError::Loop {
                    handle: h.to_string(),
                    prefix: h.described_prefix().unwrap_or(h.prefix()).to_string(),
                    chain: chain.join(" → "),
                });
            }
            let (message, served_by) = self.send_to_service(h, &service, &req).await?;
            let code = message.header.response_code;
            let referral = match (&message.body, code) {
                (Body::Referral { handle, values }, rc::SERVICE_REFERRAL | rc::PREFIX_REFERRAL) => {
                    Some((handle.clone(), values.clone().unwrap_or_default()))
                }
                _ => None,
            };
            let Some((named, values)) = referral else {
                return Ok(Answer {
                    message,
                    served_by,
                    round_trips,
                    cached: false,
                });
            };
            self.observer.referral(code);
            let mut visited = HashSet::new();
            let next = if code == rc::SERVICE_REFERRAL {
                let mut sites = self.service_sites(&values, &mut visited, depth).await?;
                if sites.is_empty() && !named.is_empty() {
                    sites = self.named_sites(&named, depth).await?;
                }
                (
                    if named.is_empty() {
                        served_by.service.clone()
                    } else {
                        named
                    },
                    sites,
                )
            } else {
                // RC 303 only means something for prefix handles.
                if !h.is_prefix_handle() {
                    return Ok(Answer {
                        message,
                        served_by,
                        round_trips,
                        cached: false,
                    });
                }
                let mut sites = self
                    .sites_of_values(
                        &values,
                        &[types::HS_SITE_PREFIX, types::HS_NA_DELEGATE],
                        &[types::HS_SERV_PREFIX, types::HS_NA_DELEGATE],
                        &mut visited,
                        depth,
                    )
                    .await?;
                if sites.is_empty() && !named.is_empty() {
                    sites = self.named_sites(&named, depth).await?;
                }
                (h.to_string(), sites)
            };
            if next.1.is_empty() {
                return Err(WalkError::ServiceNotFound {
                    prefix: h.described_prefix().unwrap_or(h.prefix()).to_string(),
                    last: served_by.to_string(),
                });
            }
            debug!(handle = %h, code, to = %next.0, "following a referral");
            chain.push(next.0.clone());
            service = Service {
                handle: next.0,
                sites: next.1,
            };
        }
        Err(WalkError::HopLimit {
            handle: h.to_string(),
            prefix: h.described_prefix().unwrap_or(h.prefix()).to_string(),
            last: chain.last().cloned().unwrap_or_default(),
        })
    }

    /// The sites of a referral that names only a handle: that handle's delegation values.
    async fn named_sites(&self, named: &str, depth: u32) -> Result<Vec<SiteInfo>, WalkError> {
        let mut wanted = owned(&PREFIX_REFERRAL_TYPES);
        wanted.extend(owned(&SERVICE_HANDLE_QUERY));
        let answer = Box::pin(self.resolve_at(named, &wanted, &[], Hops(0), depth + 1)).await?;
        let Body::ResolutionResponse { values, .. } = &answer.message.body else {
            return Ok(Vec::new());
        };
        let mut visited = HashSet::from([named.to_ascii_uppercase()]);
        Box::pin(self.sites_of_values(
            values,
            &[
                types::HS_SITE,
                types::HS_SITE_6,
                types::HS_SITE_PREFIX,
                types::HS_NA_DELEGATE,
            ],
            &[types::HS_SERV, types::HS_SERV_PREFIX],
            &mut visited,
            depth + 1,
        ))
        .await
    }

    /// Sends `req` to the first site of `service` that answers: primaries only for
    /// administrative and authoritative requests; within a site, the server the hash picks,
    /// over UDP first and TCP when UDP gets no answer or the site has no UDP interface.
    async fn send_to_service(
        &self,
        h: &Handle,
        service: &Service,
        req: &Message,
    ) -> Result<(Message, ServedBy), WalkError> {
        let primaries_only =
            req.header.has(flags::AT) || opcode::is_administrative(req.header.op_code);
        let mut last = String::from("none");
        let mut why = String::from("no site to try");
        let mut candidates: Vec<&SiteInfo> = service
            .sites
            .iter()
            .filter(|s| !primaries_only || s.is_primary())
            .collect();
        // Stable: the sites' own order stands among those that did not fail lately.
        candidates.sort_by_key(|s| {
            self.cfg.links.iter().any(|l| {
                l.server_for(s, h.as_str())
                    .is_ok_and(|a| self.failed.contains_key(&a))
            })
        });
        if candidates.is_empty() {
            why = "no primary site".into();
        }
        for site in candidates {
            for link in &self.cfg.links {
                let transport = link.transport();
                let addr = match link.server_for(site, h.as_str()) {
                    Ok(a) => a,
                    Err(e) => {
                        why = e.to_string();
                        continue;
                    }
                };
                last = format!("{addr}");
                let started = Instant::now();
                match link.send(addr, req).await {
                    Ok(m) => {
                        self.failed.invalidate(&addr);
                        self.observer.upstream("answered", started.elapsed());
                        return Ok((
                            m,
                            ServedBy {
                                service: service.handle.clone(),
                                server: addr,
                                transport,
                            },
                        ));
                    }
                    Err(e) => {
                        let outcome = match e {
                            ClientError::NoAnswer(_) => "no_answer",
                            _ => "error",
                        };
                        self.observer.upstream(outcome, started.elapsed());
                        debug!(handle = %h, server = %addr, error = %e, "upstream server failed");
                        self.failed.insert(addr, ());
                        why = e.to_string();
                        if link.exclusive() {
                            // A peer that takes QUIC is not asked in clear instead.
                            break;
                        }
                    }
                }
            }
        }
        Err(WalkError::AllSitesDown {
            handle: h.to_string(),
            service: service.handle.clone(),
            last,
            why,
        })
    }
}

fn owned(types_: &[&str]) -> Vec<String> {
    types_.iter().map(|t| t.to_string()).collect()
}

fn query_key(types_: &[String], indexes: &[u32]) -> String {
    let mut t: Vec<String> = types_.iter().map(|t| t.to_ascii_uppercase()).collect();
    t.sort();
    let mut i = indexes.to_vec();
    i.sort_unstable();
    format!("{}|{:?}", t.join(","), i)
}

/// What identifies a set of sites for loop detection: its servers' addresses and ports.
fn fingerprint(sites: &[SiteInfo]) -> String {
    let mut parts: Vec<String> = sites
        .iter()
        .flat_map(|s| {
            s.servers.iter().map(|v| {
                let ports: Vec<u32> = v.interfaces.iter().map(|i| i.port).collect();
                format!("{}{ports:?}", v.ip())
            })
        })
        .collect();
    parts.sort();
    parts.join(";")
}

fn cached_message(handle: &str, c: &Cached) -> Message {
    let body = if c.code == rc::SUCCESS {
        Body::ResolutionResponse {
            handle: handle.to_string(),
            values: c.values.clone(),
        }
    } else {
        Body::Error { message: None }
    };
    let req = Message::request(opcode::RESOLUTION, flags::CA | flags::PO, 0, 0, Body::Empty);
    Message::response_to(&req, c.code, body)
}
