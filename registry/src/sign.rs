//! Signed values on write: when a node signs (`sign_values = true`), every record the write
//! path stores carries an `HS_SIGNATURE` over its public values, made in the same write, so a
//! record is never stored unsigned or with a signature of an older version. The signer itself
//! (its key, its identity, its certificate chain) is the node's: the registry only asks it.

use std::sync::{Arc, RwLock};

use suyuan_codec::value::HandleValue;

/// Signs a record's values: the `HS_SIGNATURE` value for `values` of `handle`, written at
/// `time`, or `None` to leave the record unsigned.
pub trait ValueSigner: Send + Sync {
    fn sign(&self, handle: &str, values: &[HandleValue], time: u64) -> Option<HandleValue>;
}

/// A store's signer, set by the node (none: records are stored as written).
#[derive(Default)]
pub struct SignerSlot(RwLock<Option<Arc<dyn ValueSigner>>>);

impl std::fmt::Debug for SignerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerSlot {{ set: {} }}", self.get().is_some())
    }
}

impl SignerSlot {
    pub fn set(&self, signer: Option<Arc<dyn ValueSigner>>) {
        if let Ok(mut s) = self.0.write() {
            *s = signer;
        }
    }

    pub fn get(&self) -> Option<Arc<dyn ValueSigner>> {
        self.0.read().ok().and_then(|s| s.clone())
    }
}

fn is_signature(v: &HandleValue) -> bool {
    v.value_type
        .eq_ignore_ascii_case(suyuan_codec::value::types::HS_SIGNATURE)
}

/// `values` with the signer's signature over their public values in place of the signatures
/// they held (a signature over an older version would not verify).
pub(crate) fn signed(
    signer: &dyn ValueSigner,
    handle: &str,
    values: Vec<HandleValue>,
    time: u64,
) -> Vec<HandleValue> {
    let mut out: Vec<HandleValue> = values.into_iter().filter(|v| !is_signature(v)).collect();
    let public: Vec<HandleValue> = out
        .iter()
        .filter(|v| v.permissions.public_read())
        .cloned()
        .collect();
    if let Some(mut sig) = signer.sign(handle, &public, time) {
        // The first free index from 400, as the reference's tools choose it.
        let mut index = sig.index.max(400);
        while out.iter().any(|v| v.index == index) {
            index += 1;
        }
        sig.index = index;
        out.push(sig);
        out.sort_by_key(|v| v.index);
    }
    out
}

impl crate::Registry {
    /// Signs every record stored from now on with `signer` (none: stops).
    pub fn set_signer(&self, signer: Option<Arc<dyn ValueSigner>>) {
        self.store().set_signer(signer);
    }
}
