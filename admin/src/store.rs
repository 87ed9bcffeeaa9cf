//! Which store a node uses, and opening it: the embedded store in the data dir (the default),
//! or a PostgreSQL database named by URL (`--store`, config `store`, or what `init --store`
//! recorded in the data dir). The data dir holds the node's keys and site file either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use suyuan_registry::Registry;
use suyuan_registry::postgres::{self, InitMode, PgStore};

use crate::datadir::DataDir;

/// A store, as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded store in this directory (a data dir's `store/`).
    Embedded(PathBuf),
    /// A PostgreSQL database (or one that speaks its protocol).
    Postgres(String),
}

impl StoreSpec {
    /// `postgres://…` or `postgresql://…` is a database; anything else is a directory: a
    /// node's data dir (its `store/` inside) or a store directory itself.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(StoreSpec::Postgres(s.to_string()));
        }
        if s.contains("://") {
            bail!("{s}: not a store (expected postgres://USER@HOST:PORT/DB or a directory)");
        }
        let p = Path::new(s);
        let dir = DataDir::new(p);
        Ok(StoreSpec::Embedded(if dir.store().exists() {
            dir.store()
        } else {
            p.to_path_buf()
        }))
    }

    /// For messages: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreSpec::Embedded(p) => p.display().to_string(),
            StoreSpec::Postgres(u) => postgres::redact(u),
        }
    }

    /// Creates the schema (a database) or checks it is there to join.
    pub fn init(&self, join: bool) -> Result<()> {
        match self {
            StoreSpec::Embedded(_) if join => {
                bail!("--join shares a database between servers: it needs --store postgres://…")
            }
            StoreSpec::Embedded(_) => Ok(()),
            StoreSpec::Postgres(url) => {
                let mode = if join {
                    InitMode::Join
                } else {
                    InitMode::Create
                };
                postgres::init_blocking(url, mode)?;
                Ok(())
            }
        }
    }

    /// Opens the store as the server `server_id` (which only a shared database uses).
    pub fn open(&self, server_id: &str) -> Result<Registry> {
        match self {
            StoreSpec::Embedded(p) => Registry::open(p)
                .with_context(|| format!("cannot open the store in {}", p.display())),
            StoreSpec::Postgres(url) => {
                let store = PgStore::open(url, server_id)
                    .with_context(|| format!("cannot open the store {}", postgres::redact(url)))?;
                Ok(Registry::with_store(Arc::new(store)))
            }
        }
    }
}

impl DataDir {
    /// Where `init --store` records the database a node uses.
    pub fn store_url(&self) -> PathBuf {
        self.root.join("store.url")
    }

    /// This server's name among the servers sharing a database (made by `init`).
    pub fn server_id_file(&self) -> PathBuf {
        self.root.join("server-id")
    }

    /// The store of this node: `explicit` (a flag or the config), else the database `init`
    /// recorded, else the embedded store in the data dir.
    pub fn store_spec(&self, explicit: Option<&str>) -> Result<StoreSpec> {
        if let Some(s) = explicit {
            return StoreSpec::parse(s);
        }
        match std::fs::read_to_string(self.store_url()) {
            Ok(url) => StoreSpec::parse(url.trim()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(StoreSpec::Embedded(self.store()))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.store_url().display())),
        }
    }

    /// Records the database and names this server (`init`).
    pub fn record_store(&self, spec: &StoreSpec) -> Result<()> {
        if let StoreSpec::Postgres(url) = spec {
            // It may carry a password.
            Self::write_private(&self.store_url(), format!("{url}\n").as_bytes())?;
        }
        let id = format!(
            "{}-{:08x}",
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "suyuan".into()),
            rand::random::<u32>()
        );
        Self::write_new(&self.server_id_file(), format!("{id}\n").as_bytes(), 0o644)
    }

    pub fn server_id(&self) -> String {
        std::fs::read_to_string(self.server_id_file())
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.root.display().to_string())
    }

    /// Opens this node's store.
    pub fn open_registry(&self, explicit: Option<&str>) -> Result<Registry> {
        self.store_spec(explicit)?.open(&self.server_id())
    }
}
