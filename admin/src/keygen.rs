//! `suyuan keygen`: a key pair. RSA (the default): an administrator's, in PEM and in the
//! reference's binary formats, so that the same files serve `suyuan init --admin-pubkey`,
//! `suyuan import --key-file` and the reference's own tools (hdl-admin, GenericBatch). SM2 (国密,
//! for SM2256 value signatures as IDIS makes them): PEM, and the public key as HS_PUBKEY data
//! in IDIS's layout. Ed25519: PEM only (no Handle format holds it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use suyuan_codec::auth::{hs_from_rsa_public, rsa_private_to_reference};

use crate::datadir::{DataDir, new_rsa_key};

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The directory the files are written to (made if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// The key type: rsa (2048 bits; admpriv.pem, admpriv.bin, admpub.pem, admpub.bin), sm2
    /// (admpriv.pem, admpub.pem, admpub.bin) or ed25519 (admpriv.pem, admpub.pem).
    #[arg(long = "type", default_value = "rsa", value_parser = ["rsa", "sm2", "ed25519"])]
    key_type: String,
    /// Make a federation CA instead (ca-cert.pem, ca-key.pem): the operator's, issuing the
    /// node certificates of mutual TLS between nodes.
    #[arg(long, conflicts_with_all = ["key_type", "node_cert"])]
    ca: bool,
    /// Issue a node certificate for this identity handle (e.g. 0.NA/88.888; its SAN URI
    /// hdl:<handle>) with the CA in --ca-dir: federation-cert.pem, federation-key.pem.
    #[arg(
        long,
        value_name = "IDENTITY",
        requires = "ca_dir",
        conflicts_with = "key_type"
    )]
    node_cert: Option<String>,
    /// The federation CA's directory (its ca-cert.pem and ca-key.pem), for --node-cert.
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
}

/// A federation CA's files.
pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
/// A node's federation certificate and key.
pub const FED_CERT: &str = "federation-cert.pem";
pub const FED_KEY: &str = "federation-key.pem";

/// Refuses to write over any of `names` in `out`, before anything is written.
fn refuse_existing(out: &std::path::Path, names: &[&str]) -> Result<()> {
    for name in names {
        if out.join(name).symlink_metadata().is_ok() {
            bail!(
                "{} already exists: keygen never overwrites a key (move it away, or use --out DIR)",
                out.join(name).display()
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

/// `--ca` and `--node-cert`: the federation's certificates.
fn federation(a: &KeygenArgs) -> Result<ExitCode> {
    let (cert_name, key_name, (cert, key)) = if a.ca {
        refuse_existing(&a.out, &[CA_CERT, CA_KEY])?;
        (
            CA_CERT,
            CA_KEY,
            // A name of its own: two federations' CAs never look like one to a verifier,
            // so a stranger's certificate is refused as of an unknown issuer.
            suyuan_federation::fedtls::make_ca(&format!(
                "Suyuan federation CA {:08x}",
                rand::random::<u32>()
            ))?,
        )
    } else {
        let identity = a.node_cert.as_deref().unwrap_or_default();
        let dir = a.ca_dir.as_ref().context("--node-cert needs --ca-dir")?;
        let read = |n: &str| {
            std::fs::read_to_string(dir.join(n)).with_context(|| {
                format!(
                    "{}: the federation CA (suyuan keygen --ca --out DIR)",
                    dir.join(n).display()
                )
            })
        };
        let (ca_cert, ca_key) = (read(CA_CERT)?, read(CA_KEY)?);
        refuse_existing(&a.out, &[FED_CERT, FED_KEY])?;
        (
            FED_CERT,
            FED_KEY,
            suyuan_federation::fedtls::issue_node_cert(identity, &ca_cert, &ca_key)?,
        )
    };
    DataDir::write_private(&a.out.join(key_name), key.as_bytes())?;
    DataDir::write_new(&a.out.join(cert_name), cert.as_bytes(), 0o644)?;
    eprintln!(
        "wrote {0}/{cert_name} and {0}/{key_name} (mode 0600)",
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The private key in PEM (PKCS#8) and in the reference's unencrypted format.
pub const PRIVATE_PEM: &str = "admpriv.pem";
pub const PRIVATE_BIN: &str = "admpriv.bin";
/// The public key in PEM (SubjectPublicKeyInfo) and as HS_PUBKEY data.
pub const PUBLIC_PEM: &str = "admpub.pem";
pub const PUBLIC_BIN: &str = "admpub.bin";

pub fn run(a: KeygenArgs) -> Result<ExitCode> {
    if a.ca || a.node_cert.is_some() {
        return federation(&a);
    }
    let path = |name: &str| a.out.join(name);
    let names: &[&str] = match a.key_type.as_str() {
        "rsa" => &[PRIVATE_PEM, PRIVATE_BIN, PUBLIC_PEM, PUBLIC_BIN],
        "sm2" => &[PRIVATE_PEM, PUBLIC_PEM, PUBLIC_BIN],
        _ => &[PRIVATE_PEM, PUBLIC_PEM],
    };
    // Checked before anything is written, so a refusal leaves no half-written pair behind.
    refuse_existing(&a.out, names)?;
    // (private PEM, reference private format, public PEM, HS_PUBKEY data)
    let (private_pem, private_bin, public_pem, public_bin): (
        String,
        Option<Vec<u8>>,
        String,
        Option<Vec<u8>>,
    ) = match a.key_type.as_str() {
        "rsa" => {
            let key = new_rsa_key()?;
            let public = key.to_public_key();
            (
                key.to_pkcs8_pem(LineEnding::LF)
                    .context("cannot encode the private key")?
                    .to_string(),
                Some(rsa_private_to_reference(&key)?),
                public
                    .to_public_key_pem(LineEnding::LF)
                    .context("cannot encode the public key")?,
                Some(hs_from_rsa_public(&public).encode()),
            )
        }
        "sm2" => {
            use sm2::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
            let secret = sm2::SecretKey::random(&mut rand::rngs::OsRng);
            let signing = suyuan_codec::trust::sm2_signing_key(&secret)?;
            (
                secret
                    .to_pkcs8_pem(LineEnding::LF)
                    .context("cannot encode the private key")?
                    .to_string(),
                None,
                secret
                    .public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .context("cannot encode the public key")?,
                Some(suyuan_codec::trust::sm2_hs_pubkey(signing.verifying_key())?),
            )
        }
        _ => {
            use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            (
                key.to_pkcs8_pem(LineEnding::LF)
                    .context("cannot encode the private key")?
                    .to_string(),
                None,
                key.verifying_key()
                    .to_public_key_pem(LineEnding::LF)
                    .context("cannot encode the public key")?,
                None,
            )
        }
    };
    DataDir::write_private(&path(PRIVATE_PEM), private_pem.as_bytes())?;
    if let Some(b) = &private_bin {
        DataDir::write_private(&path(PRIVATE_BIN), b)?;
    }
    DataDir::write_new(&path(PUBLIC_PEM), public_pem.as_bytes(), 0o644)?;
    if let Some(b) = &public_bin {
        DataDir::write_new(&path(PUBLIC_BIN), b, 0o644)?;
    }
    eprintln!(
        "wrote a {} key pair: {} (admpriv.* mode 0600)",
        a.key_type,
        names
            .iter()
            .map(|n| format!("{}/{n}", a.out.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
