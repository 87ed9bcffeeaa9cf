//! `suyuan serve`: run the node. Binds the Handle address (TCP and UDP on one port) and the
//! operations address, prints the ready line naming what it bound, and on SIGTERM or SIGINT
//! stops taking requests, lets those in flight finish and closes the store (queued writes are
//! committed first).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use suyuan_registry::Identity;
use suyuan_resolver::budget::BudgetConfig;
use suyuan_resolver::challenge::ChallengeConfig;
use suyuan_resolver::node::{HandleNode, NodeConfig};
use suyuan_resolver::ops::{Metrics, serve_ops};
use suyuan_resolver::{Limits, listen::bind_handle, tcp::serve_tcp, udp::serve_udp};
use tokio::sync::watch;
use tracing::info;

use crate::config::{ConfigFile, ServeConfig};
use crate::datadir::{DataDir, site_info, write_siteinfo};
use crate::site::{Membership, check_member, read_site, site_text};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A TOML file whose keys are these flags' names (with `_`).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Handle TCP and UDP, one address (port 0: any free port).
    #[arg(long)]
    handle_addr: Option<std::net::SocketAddr>,
    /// HTTP: the trace API, GET /api/trace/{handle}.
    #[arg(long)]
    http_addr: Option<std::net::SocketAddr>,
    /// Operations endpoint: /healthz, /readyz, /metrics (loopback by default).
    #[arg(long)]
    ops_addr: Option<std::net::SocketAddr>,
    /// Initialise the data dir for a demo prefix if it is missing or empty (the
    /// administrator secret from SUYUAN_ADMIN_SECRET, or generated into DIR/admin-secret) and
    /// load the demo if the store does not hold it yet; otherwise serve what is there.
    /// `plant` (the default): the MRV demo plant under 88.888.1; `grid`: the grid company's
    /// emission factors under 88.888.2. A plant started with --upstream uses the grid node's
    /// factor, one alone a copy of its own.
    #[arg(long, num_args = 0..=1, default_missing_value = "plant", value_name = "plant|grid")]
    demo: Option<Demo>,
    /// The store: a PostgreSQL URL (postgres://USER@HOST:PORT/DB); default what `init`
    /// recorded, else the embedded store in the data dir.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The site's siteinfo.json from `suyuan site merge`: published instead of this server's
    /// own, and this server answers only the handles that hash to it.
    #[arg(long)]
    site: Option<PathBuf>,
    /// A top-level node to walk the hierarchy from, for handles not served here: its Handle
    /// address (IP:PORT) or its site file (repeatable). No root is ever assumed.
    #[arg(long, value_name = "SITEINFO_OR_ADDR")]
    upstream: Vec<String>,
    /// Answer requests that set REC for handles not served here by walking the hierarchy
    /// (needs --upstream).
    #[arg(long)]
    recursion: bool,
    /// A further Handle listener (TCP and UDP) that walks every resolution it cannot answer
    /// itself, REC or not, like the IDIS recursive node (needs --upstream).
    #[arg(long, value_name = "ADDR")]
    resolver_addr: Option<std::net::SocketAddr>,
    /// The private key (PEM or the reference's format) of 300:0.NA/P for the prefixes P homed
    /// here: at start the node brings the HS_SITE values that name it in 0.NA/P at the top
    /// (the first --upstream) up to date with the site it serves.
    #[arg(long, value_name = "FILE")]
    delegation_key: Option<PathBuf>,
    /// Node-to-node QUIC with mutual TLS on this UDP address (IP:PORT, or IP for port 2642);
    /// needs --federation-ca, --node-cert and --node-key.
    #[arg(long, value_name = "ADDR", value_parser = crate::config::parse_quic_addr)]
    quic_addr: Option<std::net::SocketAddr>,
    /// The federation CA's certificate (PEM, `suyuan keygen --ca`): peers must present a
    /// certificate it issued.
    #[arg(long, value_name = "FILE")]
    federation_ca: Option<PathBuf>,
    /// This node's federation certificate (`suyuan keygen --node-cert`).
    #[arg(long, value_name = "FILE")]
    node_cert: Option<PathBuf>,
    /// This node's federation key.
    #[arg(long, value_name = "FILE")]
    node_key: Option<PathBuf>,
}

/// The prefix `--demo` serves.
pub const DEMO_PREFIX: &str = "88.888.1";

/// Which demo `--demo` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Demo {
    Plant,
    Grid,
}

impl Demo {
    fn prefix(self) -> &'static str {
        match self {
            Demo::Plant => DEMO_PREFIX,
            Demo::Grid => crate::demo::GRID_PREFIX,
        }
    }

    /// A record the loaded demo holds.
    fn marker(self) -> &'static str {
        match self {
            Demo::Plant => crate::demo::REPORT,
            Demo::Grid => crate::demo::GRID_FACTOR,
        }
    }
}

fn demo_init(dir: &DataDir, demo: Demo, cfg: &ServeConfig) -> Result<()> {
    let prefix = demo.prefix();
    let empty = std::fs::read_dir(&dir.root)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    if !empty {
        return Ok(());
    }
    let secret = match std::env::var("SUYUAN_ADMIN_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ => {
            use rand::RngCore;
            let mut b = [0u8; 18];
            rand::rngs::OsRng.fill_bytes(&mut b);
            let s: String = b.iter().map(|x| format!("{x:02x}")).collect();
            std::fs::create_dir_all(&dir.root)?;
            let path = dir.root.join("admin-secret");
            DataDir::write_private(&path, format!("{s}\n").as_bytes())?;
            eprintln!(
                "demo: administrator 301:{prefix}/ADMIN, secret written to {}",
                path.display()
            );
            s
        }
    };
    std::fs::create_dir_all(&dir.root)?;
    crate::init::initialise(
        dir,
        &crate::store::StoreSpec::Embedded(dir.store()),
        false,
        prefix,
        Some(&secret),
        None,
        // The ports it is told to serve on (the log's and witness's names say where), the
        // defaults for any port 0.
        crate::init::Place {
            public: cfg.public_address.unwrap_or("127.0.0.1".parse()?),
            handle_port: Some(cfg.handle_addr.port())
                .filter(|p| *p != 0)
                .unwrap_or(2641),
            http_port: Some(cfg.http_addr.port())
                .filter(|p| *p != 0)
                .unwrap_or(8000),
            member: Membership::ALONE,
        },
    )
}

fn merge(a: &ServeArgs) -> Result<ServeConfig> {
    let mut c = ServeConfig::default();
    if let Some(path) = &a.config {
        c = ConfigFile::load(path)?.apply(c)?;
    }
    if let Some(d) = &a.data_dir {
        c.data_dir = d.clone();
    }
    if let Some(h) = a.handle_addr {
        c.handle_addr = h;
    }
    if let Some(o) = a.ops_addr {
        c.ops_addr = o;
    }
    if let Some(h) = a.http_addr {
        c.http_addr = h;
    }
    if a.store.is_some() {
        c.store = a.store.clone();
    }
    if let Some(s) = &a.site {
        c.site = Some(s.clone());
    }
    if !a.upstream.is_empty() {
        c.upstream = a.upstream.clone();
    }
    c.recursion |= a.recursion;
    if a.resolver_addr.is_some() {
        c.resolver_addr = a.resolver_addr;
    }
    if a.delegation_key.is_some() {
        c.delegation_key = a.delegation_key.clone();
    }
    if a.quic_addr.is_some() {
        c.quic_addr = a.quic_addr;
    }
    for (flag, slot) in [
        (&a.federation_ca, &mut c.federation_ca),
        (&a.node_cert, &mut c.node_cert),
        (&a.node_key, &mut c.node_key),
    ] {
        if flag.is_some() {
            slot.clone_from(flag);
        }
    }
    if c.delegation_key.is_some() && c.upstream.is_empty() {
        bail!("--delegation-key needs the top to keep current: give --upstream IP:PORT|SITEINFO");
    }
    if (c.recursion || c.resolver_addr.is_some()) && c.upstream.is_empty() {
        bail!(
            "recursion and --resolver-addr need a top-level node to walk from: give --upstream \
             IP:PORT|SITEINFO (config key upstream)"
        );
    }
    Ok(c)
}

pub async fn run(a: ServeArgs) -> Result<ExitCode> {
    // Handlers first: a SIGTERM that arrives right after the ready line must shut down
    // gracefully, not kill the process.
    let signals = Signals::install()?;
    let cfg = merge(&a)?;
    let dir = DataDir::new(&cfg.data_dir);
    if let Some(demo) = a.demo {
        demo_init(&dir, demo, &cfg)?;
    }
    if !dir.initialised() {
        bail!(
            "{} is not an initialised node: run `suyuan init --prefix P --data-dir {}` first, or use --demo",
            cfg.data_dir.display(),
            cfg.data_dir.display()
        );
    }
    let key = dir.load_key()?;
    let registry = Arc::new(
        dir.open_registry(cfg.store.as_deref())
            .with_context(|| format!("node {}", cfg.data_dir.display()))?,
    );
    registry.set_schemes(crate::config::SchemeConfig::compile(&cfg.schemes)?);
    let demo_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let load_demo = match a.demo {
        Some(d) if registry.get(d.marker())?.is_none() => Some(d),
        _ => None,
    };
    if let Some(demo) = load_demo {
        registry.apply(suyuan_registry::Write {
            mutation: suyuan_registry::Mutation::Home {
                prefix: demo.prefix().into(),
                admins: Vec::new(),
            },
            actor: "0:SUYUAN/DEMO".into(),
            time: demo_now,
        })?;
    }
    // Signing starts before anything else is stored, the demo included.
    if cfg.sign_values {
        let path = cfg.signing_root_key.as_ref().context(
            "sign_values needs signing_root_key: the operator's RSA root key (PEM), e.g. one `suyuan keygen --out DIR` made",
        )?;
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("signing_root_key {}", path.display()))?;
        let root = suyuan_codec::trust::private_key_from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("signing_root_key {}: {e}", path.display()))?;
        let signing = match &cfg.signing_key {
            Some(p) => {
                let pem = std::fs::read_to_string(p)
                    .with_context(|| format!("signing_key {}", p.display()))?;
                suyuan_codec::trust::private_key_from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("signing_key {}: {e}", p.display()))?
            }
            None => suyuan_codec::trust::PrivateKey::Rsa(key.clone()),
        };
        let prefix = first_prefix(&registry)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        suyuan_resolver::signing::enable(
            &registry,
            &prefix,
            &signing,
            &root,
            cfg.signing_root_identity.as_deref(),
            now,
        )?;
        let (root_h, signer_h) = suyuan_resolver::signing::identities(&prefix);
        tracing::info!(signer = %signer_h, root = %root_h, "signing every record stored");
    }
    match load_demo {
        Some(Demo::Plant) => {
            let factor = if cfg.upstream.is_empty() {
                crate::demo::GridFactor::Own
            } else {
                crate::demo::GridFactor::GridNode
            };
            let records = crate::demo::plant_records(factor);
            let (written, _) = crate::demo::load_records(&registry, records, demo_now)?;
            eprintln!(
                "demo: loaded {written} records of the MRV demo (try `suyuan trace {}`){}",
                crate::demo::REPORT,
                if factor == crate::demo::GridFactor::GridNode {
                    format!("; its electricity figures use {}", crate::demo::GRID_FACTOR)
                } else {
                    String::new()
                }
            );
        }
        Some(Demo::Grid) => {
            let (written, _) =
                crate::demo::load_records(&registry, crate::demo::grid_records(), demo_now)?;
            eprintln!(
                "demo: loaded {written} records of the grid's emission factors (try `suyuan trace {}`)",
                crate::demo::GRID_FACTOR
            );
        }
        None => {}
    }
    let mut node_admins = dir.load_admins()?;
    for s in &cfg.node_admins {
        node_admins.push(Identity::parse(s).with_context(|| format!("config node_admins: {s:?}"))?);
    }

    let (tcp, udp) = bind_handle(cfg.handle_addr)
        .await
        .with_context(|| format!("cannot bind the Handle address {}", cfg.handle_addr))?;
    let handle_addr = tcp.local_addr()?;
    let http = tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("cannot bind the HTTP address {}", cfg.http_addr))?;
    let http_addr = http.local_addr()?;
    let ops = tokio::net::TcpListener::bind(cfg.ops_addr)
        .await
        .with_context(|| format!("cannot bind the operations address {}", cfg.ops_addr))?;
    let ops_addr = ops.local_addr()?;
    let federation_tls = federation_tls(&cfg)?;
    let quic = match (cfg.quic_addr, &federation_tls) {
        (Some(addr), Some(tls)) => Some(
            suyuan_resolver::quic::endpoint(addr, tls)
                .with_context(|| format!("cannot serve QUIC on {addr}"))?,
        ),
        (Some(_), None) => bail!(
            "quic_addr needs the federation's certificates: give --federation-ca, --node-cert and --node-key (suyuan keygen --ca / --node-cert make them)"
        ),
        (None, _) => None,
    };
    let quic_addr = quic.as_ref().map(|e| e.local_addr()).transpose()?;

    // The site this node publishes: its real address, port and key; the serial goes up
    // whenever that changes, so clients refresh what they cached.
    let public = cfg.public_address.unwrap_or(handle_addr.ip());
    let old = read_site(&dir.siteinfo()).ok();
    let old_serial = old.as_ref().map_or(1, |s| s.serial_number);
    let member = match &old {
        Some(s) => Membership::of(s).with_context(|| dir.siteinfo().display().to_string())?,
        None => Membership::ALONE,
    };
    let mut site = site_info(
        &key,
        public,
        handle_addr.port(),
        Some(http_addr.port()),
        old_serial,
    );
    member.mark(&mut site);
    if let Some(q) = quic_addr {
        site.attributes.push(suyuan_codec::site::SiteAttribute {
            name: suyuan_federation::site::QUIC_ATTRIBUTE.into(),
            value: q.port().to_string(),
        });
    }
    let current = std::fs::read_to_string(dir.siteinfo()).ok();
    if current.as_deref() != Some(site_text(&site)?.as_str()) {
        site.serial_number = old_serial.wrapping_add(u16::from(current.is_some()));
        write_siteinfo(&dir, &site)?;
    }
    // A server of a site of several publishes the site's file, which lists them all; alone,
    // it would claim every handle.
    let site = match &cfg.site {
        Some(path) => {
            let merged = read_site(path)?;
            check_member(&merged, &site, path)?;
            merged
        }
        None if member.servers > 1 => bail!(
            "this is server {} of a {}-server site: serve it with --site FILE, the site's siteinfo.json from `suyuan site merge` of every server's own",
            member.server_id,
            member.servers
        ),
        None => site,
    };

    // A top's root record and bootstrap file name the site it serves now.
    let own_key = suyuan_codec::auth::hs_from_rsa_public(&key.to_public_key()).encode();
    crate::init::keep_root_current(&dir, &registry, &site, &own_key)?;
    let served_site = site.clone();
    let node = Arc::new(HandleNode::new(
        registry.clone(),
        NodeConfig {
            site,
            key,
            node_admins,
            challenges: ChallengeConfig {
                max_pending: cfg.max_pending_challenges,
                max_per_source: cfg.max_pending_challenges_per_source,
                ttl: cfg.auth_timeout,
            },
            sessions: suyuan_resolver::session::SessionConfig::default(),
            cache_entries: cfg.cache_entries,
        },
    ));
    let metrics = Metrics::new();
    let quic_link = match &federation_tls {
        Some(tls) => {
            let bind = std::net::SocketAddr::new(
                if public.is_ipv6() {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                },
                0,
            );
            Some(Arc::new(
                suyuan_federation::quic::QuicLink::new(
                    tls,
                    bind,
                    cfg.request_timeout.min(std::time::Duration::from_secs(10)),
                )
                .context("the federation's QUIC client")?,
            ))
        }
        None => None,
    };
    let keep_delegations = match &cfg.delegation_key {
        Some(path) => Some(delegations(
            &registry,
            path,
            &cfg.upstream[0],
            &served_site,
            &own_key,
            quic_link.as_ref(),
        )?),
        None => None,
    };
    if quic_link.is_some() {
        for u in cfg
            .upstream
            .iter()
            .filter(|u| u.parse::<std::net::SocketAddr>().is_ok())
        {
            tracing::warn!(
                upstream = %u,
                "this top is given by its address, so it is asked over UDP and TCP, in clear: give its site file (siteinfo.json) to reach it over QUIC if it serves QUIC"
            );
        }
    }
    let node = match upstream_walker(&cfg, &metrics, quic_link.clone())? {
        Some(w) => Arc::new((*node).clone().with_upstream(w, cfg.recursion)),
        None => node,
    };
    let resolver_face = match cfg.resolver_addr {
        Some(addr) => Some((
            bind_handle(addr)
                .await
                .with_context(|| format!("cannot bind the resolver address {addr}"))?,
            Arc::new(node.recursive_face()),
        )),
        None => None,
    };
    let node_for_http = node.clone();
    let mut http_options = http_options(&cfg, &dir, public)?;
    http_options.metrics = Some(metrics.clone());
    registry.set_log(cfg.log);
    let log = if cfg.log {
        let origin = crate::init::log_origin(public, http_addr.port(), &first_prefix(&registry)?);
        let signer = suyuan_resolver::transparency::load_or_create_key(
            &dir.root,
            &origin,
            cfg.log_origin.as_deref(),
        )?;
        let mut submit = Vec::new();
        for w in &cfg.witness.submit {
            let key = suyuan_codec::note::VerifierKey::parse(&w.vkey)
                .with_context(|| format!("config [[witness.submit]] {}: vkey", w.url))?;
            let mut sub = suyuan_resolver::witness::Submit::new(&w.url, key);
            if let Some(link) = &quic_link {
                sub = sub.with_quic(link.clone());
            }
            submit.push(sub);
        }
        let log = suyuan_resolver::transparency::Transparency::witnessed(
            registry.clone(),
            signer,
            submit,
        )?;
        if let Some(path) = &cfg.log_sm2_key {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("log_sm2_key {}", path.display()))?;
            let Ok(suyuan_codec::trust::PrivateKey::Sm2(k)) =
                suyuan_codec::trust::private_key_from_pem(&pem)
            else {
                bail!(
                    "log_sm2_key {}: not an SM2 private key (suyuan keygen --type sm2 makes one)",
                    path.display()
                );
            };
            log.set_sm2(k)?;
            if let Some(vkey) = log.sm2_vkey() {
                std::fs::write(dir.root.join("log-sm2.vkey"), format!("{vkey}\n"))
                    .context("cannot write log-sm2.vkey")?;
            }
        }
        Some(log)
    } else {
        None
    };
    http_options.log = log.clone();
    if !cfg.witness.logs.is_empty() {
        let name = cfg
            .witness
            .name
            .clone()
            .unwrap_or_else(|| crate::init::witness_name(public, http_addr.port()));
        let signer = suyuan_resolver::transparency::load_or_create(
            suyuan_resolver::transparency::KeyRole::Witness,
            &dir.root,
            &name,
            cfg.witness.name.as_deref(),
        )?;
        let mut logs = Vec::new();
        for l in &cfg.witness.logs {
            let key = suyuan_codec::note::VerifierKey::parse(&l.vkey)
                .with_context(|| format!("config [[witness.logs]] {}: vkey", l.origin))?;
            logs.push(suyuan_resolver::witness::WitnessedLog {
                origin: l.origin.clone(),
                key,
            });
        }
        let w = suyuan_resolver::witness::Witness::new(signer, logs, &dir.root.join("witness"))
            .context("the witness's records")?;
        eprintln!(
            "witnessing {} log(s) as {}",
            cfg.witness.logs.len(),
            w.vkey()
        );
        http_options.witness = Some(Arc::new(w));
    }
    let federation = if node.walker().is_some() {
        let identity = match &federation_tls {
            Some(t) => t.identity().to_string(),
            None => format!(
                "{}/{}",
                suyuan_codec::handle::NA_PREFIX,
                first_prefix(&registry)?
            ),
        };
        let mut trusted = Vec::new();
        for l in &cfg.witness.logs {
            trusted.push(
                suyuan_codec::note::VerifierKey::parse(&l.vkey)
                    .with_context(|| format!("config [[witness.logs]] {}: vkey", l.origin))?,
            );
        }
        for k in &cfg.trusted_logs {
            trusted
                .push(crate::verify::vkey(k).with_context(|| format!("config trusted_logs: {k}"))?);
        }
        Some(Arc::new(suyuan_resolver::trace::Federation::new(
            identity,
            quic_link.clone(),
            trusted,
        )))
    } else {
        None
    };
    http_options.federation = federation.clone();
    {
        let (node, registry, store) = (node.clone(), registry.clone(), dir.store());
        metrics.set_probe(Arc::new(move || {
            let (hits, misses) = node.cache_stats();
            let bytes = registry.size_bytes().unwrap_or_else(|| dir_bytes(&store));
            (hits, misses, bytes, registry.last_seq())
        }));
    }
    let limits = Limits {
        max_connections: cfg.max_connections,
        idle_timeout: cfg.idle_timeout,
        request_timeout: cfg.request_timeout,
        ..Limits::default()
    };
    let budget = BudgetConfig {
        bytes_per_sec: cfg.udp_bytes_per_sec,
        burst_bytes: cfg.udp_burst_bytes,
        exempt_loopback: !cfg.udp_budget_loopback,
        ..BudgetConfig::default()
    };
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(serve_tcp(
            tcp,
            node.clone(),
            limits,
            metrics.clone(),
            rx.clone(),
        )),
        tokio::spawn(serve_udp(
            udp,
            node,
            limits,
            budget,
            metrics.clone(),
            rx.clone(),
        )),
    ];
    let mut resolver_addr = String::new();
    if let Some(((tcp, udp), face)) = resolver_face {
        resolver_addr = format!(" resolver={}", tcp.local_addr()?);
        tasks.push(tokio::spawn(serve_tcp(
            tcp,
            face.clone(),
            limits,
            metrics.clone(),
            rx.clone(),
        )));
        tasks.push(tokio::spawn(serve_udp(
            udp,
            face,
            limits,
            budget,
            metrics.clone(),
            rx.clone(),
        )));
    }
    let mut quic_line = String::new();
    if let (Some(endpoint), Some(addr)) = (quic, quic_addr) {
        quic_line = format!(" quic={addr}");
        let frames = suyuan_resolver::trace::NodeFrames {
            tracer: suyuan_resolver::trace::Tracer::new(
                registry.clone(),
                (*node_for_http).clone(),
                http_options.log.clone(),
                federation.clone(),
            ),
            witness: http_options.witness.clone(),
        };
        tasks.push(tokio::spawn(suyuan_resolver::quic::serve_quic(
            endpoint,
            node_for_http.clone(),
            Some(Arc::new(frames)),
            limits,
            metrics.clone(),
            rx.clone(),
        )));
    }
    let http_task = tokio::spawn(suyuan_resolver::http::serve_http(
        http,
        registry.clone(),
        (*node_for_http).clone(),
        http_options,
        rx.clone(),
    ));
    if let Some(log) = log {
        tasks.push(tokio::spawn(log.run(rx.clone())));
    }
    let ops_task = tokio::spawn(serve_ops(ops, metrics, ready.clone(), rx));
    ready.store(true, Ordering::Release);
    if let Some(keep) = keep_delegations {
        tokio::spawn(keep);
    }
    // The ready line: tests and operators read the real ports from it. Logs go to stderr. A
    // supervisor that closed stdout has not asked the node to stop.
    let _ = crate::outln!(
        "listening handle={handle_addr} http={http_addr} ops={ops_addr}{resolver_addr}{quic_line}"
    );
    info!(%handle_addr, %http_addr, %ops_addr, backend = registry.backend(), "serving");

    signals.wait().await;
    info!("shutting down: finishing requests in flight");
    ready.store(false, Ordering::Release);
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = http_task.await;
    let _ = ops_task.await;
    registry.close();
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The prefix a log is named after: the first this node homes below `0.`, or `0.NA` (a top).
fn first_prefix(registry: &suyuan_registry::Registry) -> Result<String> {
    Ok(registry
        .prefixes()?
        .into_iter()
        .map(|p| p.prefix)
        .find(|p| !p.starts_with("0.") && p != "0")
        .unwrap_or_else(|| suyuan_codec::handle::NA_PREFIX.to_string()))
}

/// The work of keeping this node's HS_SITE current in `0.NA/P` at `top` for every prefix P
/// homed here, authenticated as `300:0.NA/P` with the key in `key_file`; it logs what it did.
fn delegations(
    registry: &suyuan_registry::Registry,
    key_file: &std::path::Path,
    top: &str,
    site: &suyuan_codec::site::SiteInfo,
    own_key: &[u8],
    quic: Option<&Arc<suyuan_federation::quic::QuicLink>>,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let prefixes: Vec<String> = registry
        .prefixes()?
        .into_iter()
        .map(|p| p.prefix)
        .filter(|p| !p.starts_with("0.") && p != "0")
        .collect();
    let mut jobs = Vec::new();
    for p in prefixes {
        let creds = crate::auth::AuthArgs {
            auth: Some(format!("300:0.NA/{p}")),
            secret_file: None,
            key_file: Some(key_file.to_path_buf()),
        }
        .credentials("")
        .map_err(anyhow::Error::msg)?;
        jobs.push((p, creds));
    }
    let (top, site, own_key) = (top.to_string(), site.clone(), own_key.to_vec());
    let quic = quic.cloned();
    Ok(async move {
        for (p, creds) in jobs {
            match crate::delegate::keep_current(&top, &p, &creds, &site, &own_key, quic.as_deref())
                .await
            {
                Ok(said) => info!(prefix = %p, "delegation: {said}"),
                Err(e) => tracing::warn!(prefix = %p, "delegation not brought up to date: {e:#}"),
            }
        }
    })
}

/// The federation's TLS material, when the node is given it (all three files or none).
fn federation_tls(cfg: &ServeConfig) -> Result<Option<suyuan_federation::fedtls::FederationTls>> {
    let (ca, cert, key) = match (&cfg.federation_ca, &cfg.node_cert, &cfg.node_key) {
        (None, None, None) => return Ok(None),
        (Some(ca), Some(cert), Some(key)) => (ca, cert, key),
        _ => bail!("--federation-ca, --node-cert and --node-key go together"),
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let tls =
        suyuan_federation::fedtls::FederationTls::from_pem(&read(ca)?, &read(cert)?, &read(key)?)
            .with_context(|| {
            format!(
                "federation CA {} / node certificate {}",
                ca.display(),
                cert.display()
            )
        })?;
    info!(identity = %tls.identity(), "federation certificate loaded");
    Ok(Some(tls))
}

/// The walker through the hierarchy from the configured tops, if any are: over QUIC first
/// for a site that advertises it when the node has the federation's certificates.
fn upstream_walker(
    cfg: &ServeConfig,
    metrics: &Metrics,
    quic: Option<Arc<suyuan_federation::quic::QuicLink>>,
) -> Result<Option<Arc<suyuan_federation::Walker>>> {
    if cfg.upstream.is_empty() {
        return Ok(None);
    }
    let tops = cfg
        .upstream
        .iter()
        .map(|u| crate::site::upstream_site(u).with_context(|| format!("upstream {u:?}")))
        .collect::<Result<Vec<_>>>()?;
    let mut wc = suyuan_federation::WalkerConfig::new(tops);
    wc.cache_entries = cfg.upstream_cache_entries;
    if let Some(q) = quic {
        wc.links.insert(0, q);
    }
    Ok(Some(Arc::new(
        suyuan_federation::Walker::new(wc).with_observer(metrics.walker_observer()),
    )))
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// The HTTP port's TLS (the configured pair, or the data dir's self-signed one, made if
/// missing) and device rules.
fn http_options(
    cfg: &crate::config::ServeConfig,
    dir: &DataDir,
    public: std::net::IpAddr,
) -> Result<suyuan_resolver::http::HttpOptions> {
    let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            dir.ensure_tls(public)?;
            (dir.tls_cert(), dir.tls_key())
        }
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let tls = suyuan_resolver::tls::server_config(&read(&cert)?, &read(&key)?)
        .with_context(|| format!("TLS certificate {} / key {}", cert.display(), key.display()))?;
    let mut devices = Vec::new();
    for d in &cfg.devices {
        let ca = suyuan_resolver::tls::certs_from_pem(&read(&d.ca)?)
            .with_context(|| format!("device CA {}", d.ca.display()))?;
        devices.push(suyuan_resolver::rest::DeviceRule {
            ca,
            prefix: d.prefix.clone(),
            suffix_pattern: d.suffix_pattern.clone(),
        });
    }
    Ok(suyuan_resolver::http::HttpOptions {
        tls: Some(tls),
        devices,
        max_body: cfg.http_max_body,
        body_timeout: cfg.http_body_timeout,
        cors: match &cfg.cors_origins {
            Some(list) => suyuan_resolver::cors::CorsOrigins::list(list.clone()),
            None => suyuan_resolver::cors::CorsOrigins::any(),
        },
        max_connections: cfg.max_connections,
        ..Default::default()
    })
}

/// Bytes the files under `dir` take (the store: one redb file, or sled's directory).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
