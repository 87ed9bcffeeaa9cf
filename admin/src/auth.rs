//! Who a command that writes over the wire authenticates as: `--auth INDEX:HANDLE` with the
//! identity's secret or private key, shared by every such command so each reads keys alike.

use std::path::PathBuf;

use clap::Args;
use suyuan_federation::Credentials;
use suyuan_registry::Identity;

#[derive(Args, Debug, Clone, Default)]
pub struct AuthArgs {
    /// Who the session authenticates as, `index:handle` (e.g. 301:88.888.1/ADMIN).
    #[arg(long, value_name = "INDEX:HANDLE")]
    pub auth: Option<String>,
    /// A file holding the secret key (HS_SECKEY) of `--auth`.
    #[arg(long, conflicts_with = "key_file")]
    pub secret_file: Option<PathBuf>,
    /// A file holding the private key (HS_PUBKEY) of `--auth`: PEM or the reference's format.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

impl AuthArgs {
    /// The credentials the flags name; `hint` says what the caller may do instead when
    /// `--auth` is missing.
    pub fn credentials(&self, hint: &str) -> Result<Credentials, String> {
        let auth = self
            .auth
            .as_deref()
            .ok_or_else(|| format!("--auth index:handle is required {hint}"))?;
        let id = Identity::parse(auth).map_err(|e| format!("--auth {auth:?}: {e}"))?;
        if let Some(path) = &self.secret_file {
            let mut secret =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            // A file written with echo ends in a newline that is not part of the secret.
            while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                secret.pop();
            }
            return Ok(Credentials::Secret {
                index: id.index,
                handle: id.handle,
                secret,
            });
        }
        if let Some(path) = &self.key_file {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = if bytes.starts_with(b"-----BEGIN") {
                let text = String::from_utf8(bytes).map_err(|_| "a PEM file must be text")?;
                suyuan_codec::auth::rsa_private_from_pem(&text)
            } else {
                suyuan_codec::auth::rsa_private_from_reference(&bytes)
            }
            .map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(Credentials::PublicKey {
                index: id.index,
                handle: id.handle,
                key: Box::new(key),
            });
        }
        Err("--auth needs --secret-file FILE or --key-file FILE".into())
    }
}
