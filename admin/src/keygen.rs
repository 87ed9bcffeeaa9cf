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
}

/// The private key in PEM (PKCS#8) and in the reference's unencrypted format.
pub const PRIVATE_PEM: &str = "admpriv.pem";
pub const PRIVATE_BIN: &str = "admpriv.bin";
/// The public key in PEM (SubjectPublicKeyInfo) and as HS_PUBKEY data.
pub const PUBLIC_PEM: &str = "admpub.pem";
pub const PUBLIC_BIN: &str = "admpub.bin";

pub fn run(a: KeygenArgs) -> Result<ExitCode> {
    let path = |name: &str| a.out.join(name);
    let names: &[&str] = match a.key_type.as_str() {
        "rsa" => &[PRIVATE_PEM, PRIVATE_BIN, PUBLIC_PEM, PUBLIC_BIN],
        "sm2" => &[PRIVATE_PEM, PUBLIC_PEM, PUBLIC_BIN],
        _ => &[PRIVATE_PEM, PUBLIC_PEM],
    };
    // Checked before anything is written, so a refusal leaves no half-written pair behind.
    for name in names {
        if path(name).symlink_metadata().is_ok() {
            bail!(
                "{} already exists: keygen never overwrites a key (move it away, or use --out DIR)",
                path(name).display()
            );
        }
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
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
