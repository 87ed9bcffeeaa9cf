//! `suyuan init`: create the store, home the prefix, write `P/ADMIN` (its HS_ADMIN, and the
//! administrator's HS_PUBKEY at 300 and/or HS_SECKEY at 301), the node's key pair and
//! `siteinfo.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use suyuan_codec::auth::{hs_from_rsa_public, rsa_public_from_pem};
use suyuan_codec::value::{AdminRecord, HandleValue, Permissions, PublicKey, admin_perm};
use suyuan_registry::{CreateMode, Identity, Mutation, Write};

use crate::datadir::{DataDir, site_info, write_siteinfo};
use crate::site::Membership;
use crate::store::StoreSpec;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The prefix this node serves, e.g. 88.888.1.
    #[arg(long)]
    prefix: String,
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
    dir.record_store(store)?;
    let registry = store.open(&dir.server_id())?;
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
        return publish(dir, &key, &entry.admins, &place);
    }
    let admin = format!("{prefix}/ADMIN");
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
    registry.apply(w(Mutation::Create {
        handle: admin.clone(),
        values,
        mode: CreateMode::Plain,
    }))?;
    registry.close();
    publish(dir, &key, &admins, &place)
}

/// What every server of a node writes for itself: its administrators, its TLS certificate and
/// its site file.
fn publish(
    dir: &DataDir,
    key: &rsa::RsaPrivateKey,
    admins: &[Identity],
    place: &Place,
) -> Result<()> {
    dir.write_admins(admins)?;
    dir.ensure_tls(place.public)?;
    let mut site = site_info(
        key,
        place.public,
        place.handle_port,
        Some(place.http_port),
        1,
    );
    place.member.mark(&mut site);
    write_siteinfo(dir, &site)
}

fn read_pubkey(path: &PathBuf) -> Result<PublicKey> {
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
    let dir = DataDir::new(&a.data_dir);
    let store = match &a.store {
        Some(s) => StoreSpec::parse(s)?,
        None => StoreSpec::Embedded(dir.store()),
    };
    initialise(
        &dir,
        &store,
        a.join,
        &a.prefix,
        secret.as_deref(),
        pubkey,
        Place {
            public: a.public_address,
            handle_port: a.handle_port,
            http_port: a.http_port,
            member,
        },
    )?;
    eprintln!(
        "initialised {} for prefix {} (administrator {}/ADMIN), store {}{}",
        a.data_dir.display(),
        a.prefix,
        a.prefix,
        store.describe(),
        if a.join { " (joined)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
