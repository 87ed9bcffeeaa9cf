//! `suyuan keygen`: an administrator's RSA key pair, in PEM and in the reference's binary
//! formats, so that the same files serve `suyuan init --admin-pubkey`, `suyuan import
//! --key-file` and the reference's own tools (hdl-admin, GenericBatch).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use suyuan_codec::auth::{hs_from_rsa_public, rsa_private_to_reference};

use crate::datadir::{DataDir, new_rsa_key};

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The directory the four files are written to (made if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// The private key in PEM (PKCS#8) and in the reference's unencrypted format.
pub const PRIVATE_PEM: &str = "admpriv.pem";
pub const PRIVATE_BIN: &str = "admpriv.bin";
/// The public key in PEM (SubjectPublicKeyInfo) and as HS_PUBKEY data.
pub const PUBLIC_PEM: &str = "admpub.pem";
pub const PUBLIC_BIN: &str = "admpub.bin";

pub fn run(a: KeygenArgs) -> Result<ExitCode> {
    let path = |name: &str| a.out.join(name);
    // Checked before anything is written, so a refusal leaves no half-written pair behind.
    for name in [PRIVATE_PEM, PRIVATE_BIN, PUBLIC_PEM, PUBLIC_BIN] {
        if path(name).symlink_metadata().is_ok() {
            bail!(
                "{} already exists: keygen never overwrites a key (move it away, or use --out DIR)",
                path(name).display()
            );
        }
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let key = new_rsa_key()?;
    let public = key.to_public_key();
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("cannot encode the private key")?;
    DataDir::write_private(&path(PRIVATE_PEM), private_pem.as_bytes())?;
    DataDir::write_private(&path(PRIVATE_BIN), &rsa_private_to_reference(&key)?)?;
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .context("cannot encode the public key")?;
    DataDir::write_new(&path(PUBLIC_PEM), public_pem.as_bytes(), 0o644)?;
    DataDir::write_new(
        &path(PUBLIC_BIN),
        &hs_from_rsa_public(&public).encode(),
        0o644,
    )?;
    eprintln!(
        "wrote {0}/{PRIVATE_PEM} and {0}/{PRIVATE_BIN} (private, mode 0600), {0}/{PUBLIC_PEM} and {0}/{PUBLIC_BIN}",
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
