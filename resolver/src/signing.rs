//! The node's value signer (`sign_values = true`): every record the node stores under its
//! prefixes carries an `HS_SIGNATURE` by `300:<prefix>/SIGNER` (the node's own key), whose
//! `HS_CERT` is issued by `300:<prefix>/TRUST-ROOT`, a certificate the operator's root key
//! signs itself. A client that trusts the root key checks every record (`suyuan resolve
//! --verify --trust-root`), as the reference's trust classes check signed values.

use std::sync::Arc;

use suyuan_codec::trust::{
    Jwk, Jws, Permission, PrivateKey, SignerKey, cert_claims, hs_pubkey_of, value_claims,
};
use suyuan_codec::value::{HandleValue, types};
use suyuan_registry::sign::ValueSigner;
use suyuan_registry::{CreateMode, Mutation, Registry, RegistryError, Write};

/// How long a signature holds: as the reference's tools make them, two years of 366 days;
/// its `nbf` ten minutes before it was made, for clocks a little behind.
const VALID_SECS: u64 = 2 * 366 * 86_400;
const EARLY_SECS: u64 = 600;
/// A certificate is issued again at start when it ends within this.
const RENEW_SECS: u64 = 30 * 86_400;
/// The index the certificates are kept at.
const CERT_INDEX: u32 = 400;

/// Signs values as `300:<prefix>/SIGNER` with the node's key (RSA: RS256) or a configured
/// SM2 key (SM2256).
pub struct NodeSigner {
    key: PrivateKey,
    issuer: String,
    /// The certificates by value (`400:<prefix>/SIGNER`, `400:<prefix>/TRUST-ROOT`), so a
    /// verifier finds them whatever the root's identity.
    chain: Vec<String>,
}

impl std::fmt::Debug for NodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        write!(f, "NodeSigner {{ issuer: {} }}", self.issuer)
    }
}

impl ValueSigner for NodeSigner {
    fn sign(&self, handle: &str, values: &[HandleValue], time: u64) -> Option<HandleValue> {
        let t = i64::try_from(time).ok()?;
        let claims = value_claims(
            handle,
            values,
            &self.issuer,
            t,
            t - EARLY_SECS as i64,
            t + VALID_SECS as i64,
            Some(self.chain.clone()),
        );
        let jws = Jws::sign_with(&claims, &self.key).ok()?;
        let mut v = HandleValue::new(CERT_INDEX, types::HS_SIGNATURE, jws.compact());
        v.timestamp = u32::try_from(time).unwrap_or(u32::MAX);
        Some(v)
    }
}

/// The identity handles of a prefix's signing: the root and the signer.
pub fn identities(prefix: &str) -> (String, String) {
    (format!("{prefix}/TRUST-ROOT"), format!("{prefix}/SIGNER"))
}

fn cert(
    issuer: &str,
    issuer_key: &PrivateKey,
    subject: &str,
    key: &SignerKey,
    perms: Vec<Permission>,
    now: u64,
) -> Result<String, RegistryError> {
    let t = i64::try_from(now).unwrap_or(i64::MAX);
    let claims = cert_claims(
        issuer,
        subject,
        key,
        perms,
        t,
        t - EARLY_SECS as i64,
        t + VALID_SECS as i64,
    );
    Jws::sign_with(&claims, issuer_key)
        .map(|j| j.compact())
        .map_err(|e| RegistryError::Storage(format!("cannot sign a certificate: {e}")))
}

/// Whether `handle` holds a certificate for `subject` with `key`, valid well past `now`.
fn holds_cert(registry: &Registry, handle: &str, subject: &str, key: &SignerKey, now: u64) -> bool {
    let Ok(Some(r)) = registry.get(handle) else {
        return false;
    };
    r.values.iter().any(|v| {
        v.value_type.eq_ignore_ascii_case(types::HS_CERT)
            && Jws::parse(&String::from_utf8_lossy(&v.data))
                .and_then(|j| j.claims())
                .is_ok_and(|c| {
                    c.sub.as_deref() == Some(subject)
                        && c.public_key.as_ref() == Some(&Jwk::of(key))
                        && c.exp.is_some_and(|e| e > (now + RENEW_SECS) as i64)
                })
    })
}

/// Sets `registry` up to sign every record it stores from now on, as `300:<prefix>/SIGNER`
/// with `node_key`: the certificates of `<prefix>/TRUST-ROOT` (signed by `root_key`, itself)
/// and `<prefix>/SIGNER` (signed by `root_key`, for `node_key`) are written first unless they
/// hold already. Either key may be RSA or SM2. Blocks on the store.
///
/// `root_identity` is the identity the root certificate names (`300:<prefix>/TRUST-ROOT` when
/// none is given): `300:0.0/0.0` for a root a reference client trusts (its verifier trusts only
/// a root certificate of `0.0/0.0` whose key its configuration holds). The certificate is kept
/// at `<prefix>/TRUST-ROOT` either way; signatures name both certificates by value.
pub fn enable(
    registry: &Registry,
    prefix: &str,
    node_key: &PrivateKey,
    root_key: &PrivateKey,
    root_identity: Option<&str>,
    now: u64,
) -> Result<Arc<NodeSigner>, RegistryError> {
    let (root_h, signer_h) = identities(prefix);
    let root_id = root_identity.map_or_else(|| format!("300:{root_h}"), str::to_string);
    let signer_id = format!("300:{signer_h}");
    let grant = || {
        vec![
            Permission {
                handle: Some(format!("0.NA/{prefix}")),
                perm: "handlesUnderThisPrefix".into(),
            },
            Permission {
                handle: Some(format!("0.NA/{prefix}")),
                perm: "derivedPrefixes".into(),
            },
        ]
    };
    let write = |handle: &str, key: &SignerKey, cert: String| {
        let pubkey = hs_pubkey_of(key)
            .map_err(|e| RegistryError::Storage(format!("cannot encode a key: {e}")))?;
        registry.apply(Write {
            mutation: Mutation::Create {
                handle: handle.into(),
                values: vec![
                    HandleValue::new(300, types::HS_PUBKEY, pubkey),
                    HandleValue::new(CERT_INDEX, types::HS_CERT, cert),
                ],
                mode: CreateMode::Overwrite,
            },
            actor: "0:SUYUAN/SIGNING".into(),
            time: now,
        })
    };
    let root_pub = root_key.public();
    if !holds_cert(registry, &root_h, &root_id, &root_pub, now) {
        let c = cert(&root_id, root_key, &root_id, &root_pub, grant(), now)?;
        write(&root_h, &root_pub, c)?;
    }
    let node_pub = node_key.public();
    if !holds_cert(registry, &signer_h, &signer_id, &node_pub, now) {
        let c = cert(&root_id, root_key, &signer_id, &node_pub, grant(), now)?;
        write(&signer_h, &node_pub, c)?;
    }
    let signer = Arc::new(NodeSigner {
        key: node_key.clone(),
        issuer: signer_id,
        chain: vec![
            format!("{CERT_INDEX}:{signer_h}"),
            format!("{CERT_INDEX}:{root_h}"),
        ],
    });
    registry.set_signer(Some(signer.clone()));
    Ok(signer)
}
