//! `suyuan serve` configuration: embedded defaults, overridden by a TOML file (`--config`),
//! overridden by flags. The file's keys are the flags' names with `_` for `-`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Everything `serve` needs, after defaults, file and flags are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub handle_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    /// The address published in HS_SITE and siteinfo.json (default: the handle address).
    pub public_address: Option<std::net::IpAddr>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    /// UDP answer bytes per second per source (0: no budget).
    pub udp_bytes_per_sec: u64,
    pub udp_burst_bytes: u64,
    /// Apply the UDP budget to loopback sources too (off by default so benchmarks measure the node).
    pub udp_budget_loopback: bool,
    pub max_pending_challenges: usize,
    pub max_pending_challenges_per_source: usize,
    pub auth_timeout: Duration,
    /// Entries in the resolution cache.
    pub cache_entries: u64,
    /// Node administrators besides those `init` recorded (`index:handle`).
    pub node_admins: Vec<String>,
    /// The HTTPS certificate and key (PEM); default: the data dir's self-signed pair.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Largest HTTP request body, in bytes.
    pub http_max_body: usize,
    /// How long an HTTP request body may take to arrive.
    pub http_body_timeout: Duration,
    /// Origins browser applications may call the HTTP port from; `None`: any origin.
    pub cors_origins: Option<Vec<String>>,
    /// Devices that may register themselves over HTTPS with a client certificate.
    pub devices: Vec<DeviceConfig>,
    /// The store: a PostgreSQL URL; `None` for what `init` recorded (or the embedded store).
    pub store: Option<String>,
    /// The site's siteinfo.json (`suyuan site merge`) for a server of a multi-server site.
    pub site: Option<PathBuf>,
    /// The top-level nodes this node walks the hierarchy from: each a Handle address
    /// (IP:PORT) or a site file. None: the node reaches no other node.
    pub upstream: Vec<String>,
    /// Walk the hierarchy for requests that set REC (the reference's `allow_recursion`).
    pub recursion: bool,
    /// A Handle listener (TCP and UDP) that walks every resolution it cannot answer itself.
    pub resolver_addr: Option<SocketAddr>,
    /// Foreign answers held in the walker's cache.
    pub upstream_cache_entries: u64,
    /// The private key of `300:0.NA/P` for the prefixes P homed here: with it the node keeps
    /// the HS_SITE values naming it at the top (the first `upstream`) current.
    pub delegation_key: Option<PathBuf>,
    /// Keep the transparency log (every change a leaf, checkpoints, proofs). Off only to
    /// measure what it costs.
    pub log: bool,
    /// The log's origin (its key's name), instead of the one `log.vkey` records.
    pub log_origin: Option<String>,
    /// An SM2 private key (PEM): every checkpoint carries an SM2 signature line by it too.
    pub log_sm2_key: Option<PathBuf>,
    /// Sign every record stored (`HS_SIGNATURE` by `300:<prefix>/SIGNER`, the node's key).
    pub sign_values: bool,
    /// The operator's root key (an RSA or SM2 private key, PEM) the signer's certificate chain ends
    /// at: `<prefix>/TRUST-ROOT` holds its self-signed certificate. Required by `sign_values`.
    pub signing_root_key: Option<PathBuf>,
    /// The key the node signs values with, instead of its own RSA key: an RSA or an SM2
    /// private key (PEM; SM2 signs SM2256 as IDIS does).
    pub signing_key: Option<PathBuf>,
    /// The identity the root certificate names (`300:<prefix>/TRUST-ROOT` by default);
    /// `300:0.0/0.0` for a root reference clients trust.
    pub signing_root_identity: Option<String>,
    /// Witnessing: the logs this node cosigns, the witnesses its own log is submitted to.
    pub witness: WitnessConfig,
    /// Node-to-node QUIC (mutual TLS): the UDP address it listens on; off when `None`.
    pub quic_addr: Option<SocketAddr>,
    /// The federation CA's certificate (PEM): peers must present a certificate it issued.
    pub federation_ca: Option<PathBuf>,
    /// This node's federation certificate and key (`suyuan keygen --node-cert`).
    pub node_cert: Option<PathBuf>,
    pub node_key: Option<PathBuf>,
    /// Log keys (vkey texts or files) of peers whose records, verified against them, may feed
    /// this node's derivation checks; the logs of `[[witness.logs]]` are trusted too.
    pub trusted_logs: Vec<String>,
    /// The operator's identifier schemes (`[[schemes]]`), bound with `id.<name>` values.
    pub schemes: Vec<SchemeConfig>,
}

/// `[[schemes]]`: a scheme's name, its identifier types and its qualifiers (in path order),
/// each a name and a pattern (a regular expression matched against the whole value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeConfig {
    pub name: String,
    pub types: Vec<PartConfig>,
    #[serde(default)]
    pub qualifiers: Vec<PartConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartConfig {
    pub name: String,
    pub pattern: String,
}

impl SchemeConfig {
    /// The configured schemes, compiled (their names unique, their patterns valid).
    pub fn compile(all: &[SchemeConfig]) -> Result<suyuan_codec::scheme::Schemes, ConfigError> {
        use suyuan_codec::scheme::custom::{Custom, Part};
        let bad = |e: suyuan_codec::scheme::SchemeError| ConfigError::Invalid(e.to_string());
        let parts = |ps: &[PartConfig]| {
            ps.iter()
                .map(|p| Part::new(&p.name, &p.pattern))
                .collect::<Result<Vec<_>, _>>()
        };
        let custom = all
            .iter()
            .map(|c| {
                Custom::new(
                    &c.name,
                    parts(&c.types).map_err(bad)?,
                    parts(&c.qualifiers).map_err(bad)?,
                )
                .map_err(bad)
            })
            .collect::<Result<Vec<_>, _>>()?;
        suyuan_codec::scheme::Schemes::new(custom).map_err(bad)
    }
}

/// The UDP port node-to-node QUIC listens on when `quic_addr` names an address alone.
pub const DEFAULT_QUIC_PORT: u16 = 2642;

/// A QUIC listen address: `IP:PORT`, or an IP alone for port 2642.
pub fn parse_quic_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_QUIC_PORT))
        .map_err(|_| format!("{s:?} is not IP:PORT or an IP address"))
}

/// `[witness]`: `[[witness.logs]]` this node witnesses (by origin, with the log's vkey), and
/// `[[witness.submit]]` witnesses its own checkpoints are submitted to (a submission prefix
/// `http://HOST:PORT`, and the witness's vkey).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's name (its key's name); default `<public address>:<http port>/suyuan-witness`.
    pub name: Option<String>,
    #[serde(default)]
    pub logs: Vec<WitnessLogConfig>,
    #[serde(default)]
    pub submit: Vec<WitnessSubmitConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessLogConfig {
    pub origin: String,
    pub vkey: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessSubmitConfig {
    pub url: String,
    pub vkey: String,
}

/// One device rule: certificates issued by `ca` may register `prefix/<suffix>` where the
/// suffix matches `suffix_pattern` (`*` any run of characters, `{cn}` the certificate's
/// common name).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub ca: PathBuf,
    pub prefix: String,
    pub suffix_pattern: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            data_dir: PathBuf::from("./suyuan-data"),
            handle_addr: "127.0.0.1:2641".parse().expect("literal"),
            http_addr: "127.0.0.1:8000".parse().expect("literal"),
            ops_addr: "127.0.0.1:9641".parse().expect("literal"),
            public_address: None,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            udp_bytes_per_sec: 256 * 1024,
            udp_burst_bytes: 512 * 1024,
            udp_budget_loopback: false,
            max_pending_challenges: 65_536,
            max_pending_challenges_per_source: 256,
            auth_timeout: Duration::from_secs(60),
            cache_entries: 100_000,
            node_admins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            http_max_body: suyuan_resolver::http::DEFAULT_MAX_BODY,
            http_body_timeout: Duration::from_secs(30),
            cors_origins: None,
            devices: Vec::new(),
            store: None,
            site: None,
            upstream: Vec::new(),
            recursion: false,
            resolver_addr: None,
            upstream_cache_entries: 10_000,
            delegation_key: None,
            log: true,
            log_origin: None,
            log_sm2_key: None,
            sign_values: false,
            signing_root_key: None,
            signing_key: None,
            signing_root_identity: None,
            witness: WitnessConfig::default(),
            quic_addr: None,
            federation_ca: None,
            node_cert: None,
            node_key: None,
            trusted_logs: Vec::new(),
            schemes: Vec::new(),
        }
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub handle_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub ops_addr: Option<SocketAddr>,
    pub public_address: Option<std::net::IpAddr>,
    pub max_connections: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub udp_bytes_per_sec: Option<u64>,
    pub udp_burst_bytes: Option<u64>,
    pub udp_budget_loopback: Option<bool>,
    pub max_pending_challenges: Option<usize>,
    pub max_pending_challenges_per_source: Option<usize>,
    pub auth_timeout_secs: Option<u64>,
    pub cache_entries: Option<u64>,
    pub node_admins: Option<Vec<String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub http_max_body: Option<usize>,
    pub http_body_timeout_secs: Option<u64>,
    pub cors_origins: Option<Vec<String>>,
    pub devices: Option<Vec<DeviceConfig>>,
    pub store: Option<String>,
    pub site: Option<PathBuf>,
    pub upstream: Option<Vec<String>>,
    pub recursion: Option<bool>,
    pub resolver_addr: Option<SocketAddr>,
    pub upstream_cache_entries: Option<u64>,
    pub delegation_key: Option<PathBuf>,
    pub log: Option<bool>,
    pub log_origin: Option<String>,
    pub log_sm2_key: Option<PathBuf>,
    pub signing_root_identity: Option<String>,
    pub sign_values: Option<bool>,
    pub signing_root_key: Option<PathBuf>,
    pub signing_key: Option<PathBuf>,
    pub witness: Option<WitnessConfig>,
    pub quic_addr: Option<String>,
    pub federation_ca: Option<PathBuf>,
    pub node_cert: Option<PathBuf>,
    pub node_key: Option<PathBuf>,
    pub trusted_logs: Option<Vec<String>>,
    pub schemes: Option<Vec<SchemeConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config: {0}")]
    Invalid(String),
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Lays the file over `base`.
    pub fn apply(self, mut c: ServeConfig) -> Result<ServeConfig, ConfigError> {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(
            data_dir,
            handle_addr,
            http_addr,
            ops_addr,
            max_connections,
            udp_bytes_per_sec,
            udp_burst_bytes,
            udp_budget_loopback,
            max_pending_challenges,
            max_pending_challenges_per_source,
            cache_entries,
            node_admins,
            http_max_body,
            devices,
            upstream,
            recursion,
            upstream_cache_entries,
            log,
            sign_values,
            witness,
            trusted_logs,
            schemes
        );
        // The optional ones: a value in the file replaces the default, none keeps it.
        macro_rules! set_some {
            ($($field:ident),*) => { $( if self.$field.is_some() { c.$field = self.$field; } )* };
        }
        set_some!(
            signing_root_key,
            signing_key,
            log_sm2_key,
            signing_root_identity,
            log_origin,
            resolver_addr,
            delegation_key,
            federation_ca,
            node_cert,
            node_key
        );
        if let Some(q) = &self.quic_addr {
            c.quic_addr = Some(
                parse_quic_addr(q).map_err(|e| ConfigError::Invalid(format!("quic_addr: {e}")))?,
            );
        }
        if self.tls_cert.is_some() || self.tls_key.is_some() {
            match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => {
                    c.tls_cert = Some(cert);
                    c.tls_key = Some(key);
                }
                _ => {
                    return Err(ConfigError::Invalid(
                        "tls_cert and tls_key go together".into(),
                    ));
                }
            }
        }
        if self.public_address.is_some() {
            c.public_address = self.public_address;
        }
        if self.cors_origins.is_some() {
            c.cors_origins = self.cors_origins;
        }
        if self.store.is_some() {
            c.store = self.store;
        }
        if self.site.is_some() {
            c.site = self.site;
        }
        for (secs, slot) in [
            (self.idle_timeout_secs, &mut c.idle_timeout),
            (self.request_timeout_secs, &mut c.request_timeout),
            (self.auth_timeout_secs, &mut c.auth_timeout),
            (self.http_body_timeout_secs, &mut c.http_body_timeout),
        ] {
            if let Some(s) = secs {
                *slot = Duration::from_secs(s);
            }
        }
        if c.http_body_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "http_body_timeout_secs must be at least 1".into(),
            ));
        }
        SchemeConfig::compile(&c.schemes)?;
        if c.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "max_connections must be at least 1".into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults() {
        let f: ConfigFile = toml::from_str(
            "handle_addr = \"127.0.0.1:0\"\nrequest_timeout_secs = 5\nudp_budget_loopback = true\n",
        )
        .unwrap();
        let c = f.apply(ServeConfig::default()).unwrap();
        assert_eq!(c.handle_addr.port(), 0);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert!(c.udp_budget_loopback);
        assert_eq!(c.ops_addr, ServeConfig::default().ops_addr);
    }

    #[test]
    fn cors_origins_and_body_deadline() {
        let d = ServeConfig::default();
        assert_eq!(d.cors_origins, None);
        assert_eq!(d.http_body_timeout, Duration::from_secs(30));
        let f: ConfigFile =
            toml::from_str("cors_origins = [\"https://app.example\"]\nhttp_body_timeout_secs = 5")
                .unwrap();
        let c = f.apply(ServeConfig::default()).unwrap();
        assert_eq!(
            c.cors_origins,
            Some(vec!["https://app.example".to_string()])
        );
        assert_eq!(c.http_body_timeout, Duration::from_secs(5));
        let f: ConfigFile = toml::from_str("http_body_timeout_secs = 0").unwrap();
        assert!(f.apply(ServeConfig::default()).is_err());
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../deploy/suyuan.toml");
        let f: ConfigFile = toml::from_str(text).unwrap();
        let c = f.apply(ServeConfig::default()).unwrap();
        assert_eq!(c.handle_addr.port(), 2641);
        assert_eq!(c.public_address, Some("192.0.2.10".parse().unwrap()));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<ConfigFile>("handel_addr = \"x\"").is_err());
        assert!(toml::from_str::<ConfigFile>("handle_addr = \"not an address\"").is_err());
        let f: ConfigFile = toml::from_str("max_connections = 0").unwrap();
        assert!(f.apply(ServeConfig::default()).is_err());
    }
}
