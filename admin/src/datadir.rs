//! The data directory's layout: the store, the node's key, its site file and its
//! administrators. One place names these paths, so `init` and `serve` agree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use suyuan_codec::auth::{hs_from_rsa_public, rsa_private_from_pem};
use suyuan_codec::site::{Interface, SiteAttribute, SiteInfo, interface_protocol, interface_type};
use suyuan_registry::Identity;

pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        DataDir {
            root: root.to_path_buf(),
        }
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn key(&self) -> PathBuf {
        self.root.join("node-key.pem")
    }
    pub fn siteinfo(&self) -> PathBuf {
        self.root.join("siteinfo.json")
    }
    /// A top-level node's `bootstrap_handles` (the reference client's root configuration).
    pub fn bootstrap_handles(&self) -> PathBuf {
        self.root.join("bootstrap_handles")
    }

    pub fn admins(&self) -> PathBuf {
        self.root.join("node-admins")
    }
    /// The HTTPS port's certificate and key (PEM), unless the config names others.
    pub fn tls_cert(&self) -> PathBuf {
        self.root.join("tls-cert.pem")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.root.join("tls-key.pem")
    }

    /// Generates a self-signed certificate for the HTTPS port when the data dir has none
    /// (`init` does; `serve` does for a data dir made before it did). Names: localhost,
    /// 127.0.0.1 and the public address.
    pub fn ensure_tls(&self, public: std::net::IpAddr) -> Result<()> {
        if self.tls_cert().exists() && self.tls_key().exists() {
            return Ok(());
        }
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if !public.is_loopback() {
            names.push(public.to_string());
        }
        let (cert, key) = suyuan_resolver::tls::generate_self_signed(names)?;
        let _ = std::fs::remove_file(self.tls_key());
        Self::write_private(&self.tls_key(), key.as_bytes())?;
        std::fs::write(self.tls_cert(), cert)
            .with_context(|| format!("cannot write {}", self.tls_cert().display()))?;
        Ok(())
    }
    /// Whether `init` has run here.
    pub fn initialised(&self) -> bool {
        (self.store().exists() || self.store_url().exists()) && self.key().exists()
    }

    /// Writes a secret file readable by the owner only.
    pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
        Self::write_new(path, bytes, 0o600)
    }

    /// Writes a file that must not exist yet, with `mode` (less the umask).
    pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(())
    }

    pub fn generate_key(&self) -> Result<RsaPrivateKey> {
        let key = new_rsa_key()?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .context("cannot encode the node key")?;
        Self::write_private(&self.key(), pem.as_bytes())?;
        Ok(key)
    }

    pub fn load_key(&self) -> Result<RsaPrivateKey> {
        let pem = std::fs::read_to_string(self.key())
            .with_context(|| format!("cannot read {}", self.key().display()))?;
        Ok(rsa_private_from_pem(&pem)?)
    }

    pub fn load_admins(&self) -> Result<Vec<Identity>> {
        let Ok(text) = std::fs::read_to_string(self.admins()) else {
            return Ok(Vec::new());
        };
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                Identity::parse(l)
                    .with_context(|| format!("{}: bad identity {l:?}", self.admins().display()))
            })
            .collect()
    }

    pub fn write_admins(&self, admins: &[Identity]) -> Result<()> {
        let mut text =
            String::from("# Identities that administer this node (index:handle), one a line.\n");
        for a in admins {
            text.push_str(&format!("{a}\n"));
        }
        std::fs::write(self.admins(), text)
            .with_context(|| format!("cannot write {}", self.admins().display()))
    }

    /// Refuses a directory that already holds a node.
    pub fn ensure_fresh(&self) -> Result<()> {
        if self.store().exists()
            || self.store_url().exists()
            || self.key().exists()
            || self.siteinfo().exists()
        {
            bail!(
                "{} already holds a node (remove it, or use `suyuan serve` on it)",
                self.root.display()
            );
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))
    }
}

/// A fresh 2048-bit RSA key (the node's own, or an administrator's from `keygen`).
pub fn new_rsa_key() -> Result<RsaPrivateKey> {
    RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).context("cannot generate an RSA key")
}

/// The node's HS_SITE: one primary server at `public` with TCP (admin and query) and UDP
/// (query only) on the handle port and HTTP on the http port.
pub fn site_info(
    key: &RsaPrivateKey,
    public: std::net::IpAddr,
    handle_port: u16,
    http_port: Option<u16>,
    serial: u16,
) -> SiteInfo {
    let mut interfaces = Interface::handle_pair(u32::from(handle_port)).to_vec();
    if let Some(p) = http_port {
        interfaces.push(Interface {
            kind: interface_type::ADMIN_AND_QUERY,
            protocol: interface_protocol::HTTP,
            port: u32::from(p),
        });
    }
    let mut site = SiteInfo::single_server(
        serial,
        public,
        hs_from_rsa_public(&key.to_public_key()).encode(),
        interfaces,
    );
    site.attributes.push(SiteAttribute {
        name: "desc".into(),
        value: "Suyuan secondary node".into(),
    });
    site
}

pub fn write_siteinfo(dir: &DataDir, site: &SiteInfo) -> Result<()> {
    std::fs::write(dir.siteinfo(), crate::site::site_text(site)?)
        .with_context(|| format!("cannot write {}", dir.siteinfo().display()))
}
