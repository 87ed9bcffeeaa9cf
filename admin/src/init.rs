//! `suyuan init`: create the store, home the prefix, write `P/ADMIN` (its HS_ADMIN, and the
//! administrator's HS_PUBKEY at 300 and/or HS_SECKEY at 301), the node's key pair and
//! `siteinfo.json`. With `--role top`, the node is the prefix service of a federation instead:
//! it homes `0.NA`, holds `0.NA/0.NA` (the administrator's values and its own HS_SITE, as the
//! Global Handle Registry's root record does) and writes `bootstrap_handles`, the whole
//! configuration a Handle client needs to walk from it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use suyuan_codec::auth::{hs_from_rsa_public, rsa_public_from_pem};
use suyuan_codec::handle::NA_PREFIX;
use suyuan_codec::json::values_to_json;
use suyuan_codec::site::SiteInfo;
use suyuan_codec::value::{AdminRecord, HandleValue, Permissions, PublicKey, admin_perm, types};
use suyuan_registry::{CreateMode, Identity, Mutation, Write};

use crate::datadir::{DataDir, site_info, write_siteinfo};
use crate::site::Membership;
use crate::store::StoreSpec;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The prefix this node serves, e.g. 88.888.1 (not with `--role top`).
    #[arg(long, required_unless_present = "role")]
    prefix: Option<String>,
    /// `top`: a top-level node, the prefix service of a federation (it serves `0.NA/…` and
    /// delegates prefixes), with `0.NA/0.NA` as its administrator's handle.
    #[arg(long, value_enum, conflicts_with = "prefix")]
    role: Option<Role>,
    #[arg(long, default_value = "./suyuan-data")]
    data_dir: PathBuf,
    /// The administrator's secret (HS_SECKEY at 301); or set SUYUAN_ADMIN_SECRET, which keeps
    /// it out of the process list. A secret, a public key, or both.
    #[arg(long)]
    admin_secret: Option<String>,
    /// The administrator's public key (HS_PUBKEY at 300): admpub.bin or admpub.pem from
    /// `suyuan keygen`, the reference's admpub.bin, or PEM.
    #[arg(long)]
    admin_pubkey: Option<PathBuf>,
    /// The address published in siteinfo.json (default 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1")]
    public_address: std::net::IpAddr,
    /// The Handle port published in siteinfo.json.
    #[arg(long, default_value_t = 2641)]
    handle_port: u16,
    /// The HTTP(S) port published in siteinfo.json.
    #[arg(long, default_value_t = 8000)]
    http_port: u16,
    /// Keep the records in this PostgreSQL database (postgres://USER@HOST:PORT/DB) instead of
    /// the embedded store in the data dir; `serve` then uses it too.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Join a database another server of this node initialised (with --store): the prefix
    /// and its administrators are there already; this server gets its own key and site file.
    #[arg(long, requires = "store")]
    join: bool,
    /// How many servers the site has, each with its own data dir and `init` (the handles are
    /// hashed across them); `suyuan site merge` then assembles the site's siteinfo.json.
    #[arg(long, default_value_t = 1, value_name = "N")]
    site_servers: u32,
    /// This server's id in the site, 1 to N (the reference's `this_server_id`).
    #[arg(long, default_value_t = 1, value_name = "I")]
    server_num: u32,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Top,
}

/// The handle of a node's first administrator: `P/ADMIN`, or `0.NA/0.NA` on a top-level node
/// (whose prefix is `0.NA`), as the reference's practice names them.
pub fn admin_handle(prefix: &str) -> String {
    if prefix.eq_ignore_ascii_case(NA_PREFIX) {
        format!("{NA_PREFIX}/{NA_PREFIX}")
    } else {
        format!("{prefix}/ADMIN")
    }
}

/// Where a new node says, in its siteinfo.json, that it can be reached, and its place in its
/// site.
pub struct Place {
    pub public: std::net::IpAddr,
    pub handle_port: u16,
    pub http_port: u16,
    pub member: Membership,
}

/// What `init` and `serve --demo` share: a node for `prefix` with its administrator, on
/// `store` (joined, not created, with `join`).
#[allow(clippy::too_many_arguments)]
/// A log's default origin: where its node serves HTTP, and the prefix it was made for.
pub fn log_origin(public: std::net::IpAddr, http_port: u16, prefix: &str) -> String {
    format!(
        "{}/suyuan/{prefix}",
        std::net::SocketAddr::new(public, http_port)
    )
}

/// A witness's default name: where its node serves HTTP.
pub fn witness_name(public: std::net::IpAddr, http_port: u16) -> String {
    format!(
        "{}/suyuan-witness",
        std::net::SocketAddr::new(public, http_port)
    )
}

pub fn initialise(
    dir: &DataDir,
    store: &StoreSpec,
    join: bool,
    prefix: &str,
    secret: Option<&str>,
    pubkey: Option<PublicKey>,
    place: Place,
) -> Result<()> {
    if prefix.is_empty() || prefix.contains('/') || prefix.chars().any(char::is_control) {
        bail!("{prefix:?} is not a prefix (expected something like 88.888.1)");
    }
    dir.ensure_fresh()?;
    store.init(join)?;
    let key = dir.generate_key()?;
    // The log's own key; the servers of a site sharing a database share one (copy the first
    // server's log-key.pem and log.vkey into the others' data dirs).
    suyuan_resolver::transparency::load_or_create_key(
        &dir.root,
        &log_origin(place.public, place.http_port, prefix),
        None,
    )?;
    // Its key as a witness too, so that peers can be configured to submit to it before it
    // first serves (`witness.vkey`).
    suyuan_resolver::transparency::load_or_create(
        suyuan_resolver::transparency::KeyRole::Witness,
        &dir.root,
        &witness_name(place.public, place.http_port),
        None,
    )?;
    dir.record_store(store)?;
    let registry = store.open(&dir.server_id())?;
    let mut site = site_info(
        &key,
        place.public,
        place.handle_port,
        Some(place.http_port),
        1,
    );
    place.member.mark(&mut site);
    let top = prefix.eq_ignore_ascii_case(NA_PREFIX);
    if top {
        for a in site.attributes.iter_mut().filter(|a| a.name == "desc") {
            a.value = "Suyuan top-level node".into();
        }
    }
    if join {
        let entry = registry.prefix(prefix)?;
        registry.close();
        let Some(entry) = entry else {
            bail!(
                "{} does not serve prefix {prefix}: join it with the prefix its first server was \
                 initialised for",
                store.describe()
            );
        };
        return publish(dir, &entry.admins, &place, &site);
    }
    let admin = admin_handle(prefix);
    let mut admins = Vec::new();
    if pubkey.is_some() {
        admins.push(Identity::new(300, admin.clone()));
    }
    if secret.is_some() {
        admins.push(Identity::new(301, admin.clone()));
    }
    let Some(first) = admins.first().cloned() else {
        bail!("an administrator needs a secret or a public key");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let w = |mutation| Write {
        mutation,
        actor: "0:SUYUAN/INIT".into(),
        time: now,
    };
    registry.apply(w(Mutation::Home {
        prefix: prefix.to_string(),
        admins: admins.clone(),
    }))?;
    let mut values = vec![HandleValue::new(
        100,
        "HS_ADMIN",
        AdminRecord::new(admin_perm::ALL, admin.clone(), first.index).encode(),
    )];
    if let Some(k) = pubkey {
        values.push(HandleValue::new(300, "HS_PUBKEY", k.encode()));
    }
    if let Some(secret) = secret {
        // Admin read and write only: a public resolution of P/ADMIN never shows it.
        values.push(HandleValue {
            permissions: Permissions(0x0C),
            ..HandleValue::new(301, "HS_SECKEY", secret.as_bytes().to_vec())
        });
    }
    if top {
        values.push(HandleValue::new(1, types::HS_SITE, site.encode()));
    }
    registry.apply(w(Mutation::Create {
        handle: admin.clone(),
        values: values.clone(),
        mode: CreateMode::Plain,
    }))?;
    if top {
        // The root of trust answers too, so a client that refreshes its root information
        // from this top (`auto_update_root_info`) finds what its bootstrap file holds.
        registry.apply(w(Mutation::Home {
            prefix: ROOT_OF_TRUST_PREFIX.to_string(),
            admins: admins.clone(),
        }))?;
        registry.apply(w(Mutation::Create {
            handle: ROOT_OF_TRUST.to_string(),
            values: trust_values(&values),
            mode: CreateMode::Plain,
        }))?;
    }
    registry.close();
    if top {
        write_bootstrap(dir, &values, now)?;
    }
    publish(dir, &admins, &place, &site)
}

/// On a top-level node, keeps the root record's own HS_SITE (and so `bootstrap_handles`) the
/// site the node serves now: `init` wrote the site it was given, and `serve` may bind other
/// ports or another address. Only the HS_SITE values naming this server (by its key) change.
pub(crate) fn keep_root_current(
    dir: &DataDir,
    registry: &suyuan_registry::Registry,
    site: &SiteInfo,
    own_key: &[u8],
) -> Result<()> {
    let root = format!("{NA_PREFIX}/{NA_PREFIX}");
    if !registry.is_homed(NA_PREFIX)? {
        return Ok(());
    }
    let Some(rec) = registry.get(&root)? else {
        return Ok(());
    };
    let stale = crate::site::restamped(&rec.values, &[types::HS_SITE], site, own_key);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut values = rec.values.clone();
    if !stale.is_empty() {
        registry.apply(Write {
            mutation: Mutation::ModifyValues {
                handle: root.clone(),
                values: stale.clone(),
            },
            actor: "0:SUYUAN/SERVE".into(),
            time: now,
        })?;
        for v in values.iter_mut() {
            if let Some(n) = stale.iter().find(|n| n.index == v.index) {
                *v = n.clone();
            }
        }
    }
    if !stale.is_empty() || !dir.bootstrap_handles().exists() {
        write_bootstrap(dir, &values, now)?;
    }
    Ok(())
}

const ROOT_OF_TRUST_PREFIX: &str = "0.0";
const ROOT_OF_TRUST: &str = "0.0/0.0";

/// `0.0/0.0`'s values on a top: the root record's public values but its site.
fn trust_values(root_values: &[HandleValue]) -> Vec<HandleValue> {
    root_values
        .iter()
        .filter(|v| v.permissions.public_read() && v.value_type != types::HS_SITE)
        .cloned()
        .collect()
}

/// `DATA_DIR/bootstrap_handles`, in the reference client's format: `0.NA/0.NA` with its
/// public values (the top's HS_SITE, who administers it and with which key) and `0.0/0.0`,
/// the root of trust, holding the same administrator and key. A reference client whose
/// configuration directory holds this file walks from this top and from nothing else.
fn write_bootstrap(dir: &DataDir, root_values: &[HandleValue], now: u64) -> Result<()> {
    let public: Vec<HandleValue> = root_values
        .iter()
        .filter(|v| v.permissions.public_read())
        .map(|v| HandleValue {
            timestamp: u32::try_from(now).unwrap_or(u32::MAX),
            ..v.clone()
        })
        .collect();
    let trust = trust_values(&public);
    let record = |handle: &str, values: &[HandleValue]| serde_json::json!({ "handle": handle, "values": values_to_json(values) });
    let root = format!("{NA_PREFIX}/{NA_PREFIX}");
    let doc = serde_json::json!({
        "lastUpdate": now.saturating_mul(1000),
        "handles": {
            ROOT_OF_TRUST: record(ROOT_OF_TRUST, &trust),
            root.clone(): record(&root, &public),
        }
    });
    let path = dir.bootstrap_handles();
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What every server of a node writes for itself: its administrators, its TLS certificate and
/// its site file.
fn publish(dir: &DataDir, admins: &[Identity], place: &Place, site: &SiteInfo) -> Result<()> {
    dir.write_admins(admins)?;
    dir.ensure_tls(place.public)?;
    write_siteinfo(dir, site)
}

pub(crate) fn read_pubkey(path: &PathBuf) -> Result<PublicKey> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let pem = bytes.starts_with(b"-----BEGIN");
    let public = if pem {
        String::from_utf8(bytes.clone())
            .context("PEM must be text")
            .and_then(|text| Ok(hs_from_rsa_public(&rsa_public_from_pem(&text)?)))
    } else {
        PublicKey::decode(&bytes)
            .context("not a key in the reference format or PEM")
            .and_then(|key| {
                suyuan_codec::auth::rsa_public_from_hs(&key).context("not a usable RSA key")?;
                Ok(key)
            })
    };
    // admpriv.* beside admpub.* is an easy slip: say so rather than "not a key".
    let private = || {
        if pem {
            String::from_utf8_lossy(&bytes).contains("PRIVATE KEY-----")
        } else {
            // The reference's private-key files start with their encryption type, 0 to 5.
            matches!(
                suyuan_codec::auth::rsa_private_from_reference(&bytes),
                Ok(_) | Err(suyuan_codec::auth::AuthError::EncryptedKey(0..=5))
            )
        }
    };
    match public {
        Ok(key) => Ok(key),
        Err(_) if private() => bail!(
            "{} is a private key: give --admin-pubkey the public half (admpub.bin or admpub.pem) and keep this one to yourself",
            path.display()
        ),
        Err(e) => Err(e.context(path.display().to_string())),
    }
}

pub fn run(a: InitArgs) -> Result<ExitCode> {
    let secret = a
        .admin_secret
        .or_else(|| std::env::var("SUYUAN_ADMIN_SECRET").ok())
        .filter(|s| !s.is_empty());
    if secret.is_none() && a.admin_pubkey.is_none() && !a.join {
        eprintln!(
            "suyuan init: the administrator needs a public key, a secret, or both:\n  \
             --admin-pubkey admpub.bin (make one with `suyuan keygen`)\n  \
             --admin-secret S (or set SUYUAN_ADMIN_SECRET)"
        );
        return Ok(ExitCode::from(2));
    }
    let member = match Membership::new(a.server_num, a.site_servers) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("suyuan init: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let pubkey = a.admin_pubkey.as_ref().map(read_pubkey).transpose()?;
    let prefix = match (a.role, &a.prefix) {
        (Some(Role::Top), _) => NA_PREFIX.to_string(),
        (None, Some(p)) => p.clone(),
        (None, None) => unreachable!("clap requires --prefix without --role"),
    };
    let dir = DataDir::new(&a.data_dir);
    let store = match &a.store {
        Some(s) => StoreSpec::parse(s)?,
        None => StoreSpec::Embedded(dir.store()),
    };
    initialise(
        &dir,
        &store,
        a.join,
        &prefix,
        secret.as_deref(),
        pubkey,
        Place {
            public: a.public_address,
            handle_port: a.handle_port,
            http_port: a.http_port,
            member,
        },
    )?;
    let what = if a.role == Some(Role::Top) {
        format!(
            "as a top-level node (administrator {}; {} is a client's whole configuration)",
            admin_handle(&prefix),
            dir.bootstrap_handles().display()
        )
    } else {
        format!(
            "for prefix {prefix} (administrator {})",
            admin_handle(&prefix)
        )
    };
    eprintln!(
        "initialised {} {what}, store {}{}",
        a.data_dir.display(),
        store.describe(),
        if a.join { " (joined)" } else { "" }
    );
    let vkey_path = a.data_dir.join(suyuan_resolver::transparency::VKEY_FILE);
    if let Ok(vkey) = std::fs::read_to_string(&vkey_path) {
        eprintln!(
            "transparency log key: {} (also in {})",
            vkey.trim(),
            vkey_path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
