//! The check of a record's transparency-log proof, trusting nothing but the keys given: the
//! digest of every value shown recomputed from its salt and found in the logged entry, the
//! entry's inclusion proof against the receipt's checkpoint, the checkpoint's signature by a
//! log key and the cosignatures and SM2 lines required, and consistency with a checkpoint
//! already trusted. `suyuan verify` runs it over a trace answer; a node runs it over the
//! records other nodes answer in a federated trace before its checks use them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value as Json;
use suyuan_codec::json::{JsonLimits, value_from_json};
use suyuan_codec::note::{Checkpoint, Note, Receipt, VerifierKey};
use suyuan_codec::tlog::{self, Hash};

use crate::log::{Entry, value_digest};

/// What every record's check is held against.
#[derive(Debug)]
pub struct Trust {
    pub log_keys: Vec<VerifierKey>,
    pub witnesses: Vec<VerifierKey>,
    /// SM2 keys (name, key) whose line every checkpoint must carry.
    pub sm2: Vec<(String, sm2::dsa::VerifyingKey)>,
    /// The trusted checkpoint, and the consistency proof to the receipts' checkpoints.
    pub trusted: Option<Checkpoint>,
    pub consistency: Option<Vec<Hash>>,
    /// Checkpoint notes checked already: the records of one trace share one.
    checked: std::cell::RefCell<std::collections::HashMap<String, Result<Checkpoint, String>>>,
}

impl Trust {
    pub fn new(log_keys: Vec<VerifierKey>, witnesses: Vec<VerifierKey>) -> Self {
        Trust {
            log_keys,
            witnesses,
            sm2: Vec::new(),
            trusted: None,
            consistency: None,
            checked: Default::default(),
        }
    }

    pub fn checkpoint(&self, note: &str) -> Result<Checkpoint, String> {
        if let Some(r) = self.checked.borrow().get(note) {
            return r.clone();
        }
        let r = check_note(note, self);
        self.checked
            .borrow_mut()
            .insert(note.to_string(), r.clone());
        r
    }
}

pub fn b64_hash(s: &str) -> Option<Hash> {
    B64.decode(s.trim()).ok()?.try_into().ok()
}

/// Checks a signed checkpoint note: the log key's signature, every witness's cosignature.
pub fn check_note(note: &str, trust: &Trust) -> Result<Checkpoint, String> {
    let note = Note::parse(note).map_err(|e| format!("the checkpoint: {e}"))?;
    let signed = trust.log_keys.iter().any(|k| note.verify(k).is_ok());
    if !signed {
        let names: Vec<&str> = note.signatures.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "the checkpoint is not signed by the log key given (signed by: {})",
            names.join(", ")
        ));
    }
    for w in &trust.witnesses {
        note.verify_cosignature(w)
            .map_err(|e| format!("witness {}: {e}", w.name))?;
    }
    for (name, k) in &trust.sm2 {
        note.verify_sm2(name, k).map_err(|e| format!("SM2: {e}"))?;
    }
    Checkpoint::parse(&note.text).map_err(|e| format!("the checkpoint: {e}"))
}

/// One record's proof checked; `Ok` carries what was shown to hold.
pub fn check_record(
    handle: &str,
    values: &[Json],
    proof: &Json,
    trust: &Trust,
) -> Result<String, String> {
    if proof.is_null() {
        return Err(
            "no proof (the node keeps no log, or the trace was asked with proofs=false)".into(),
        );
    }
    if proof.get("pending").and_then(Json::as_bool) == Some(true) {
        return Err(format!(
            "change {} is not covered by a checkpoint yet: ask again in a second",
            proof["seq"]
        ));
    }
    let entry_bytes = proof["entry"]
        .as_str()
        .and_then(|e| B64.decode(e).ok())
        .ok_or("the proof has no entry")?;
    let entry = Entry::decode(&entry_bytes).map_err(|e| e.to_string())?;
    if !entry.handle.eq_ignore_ascii_case(handle) {
        return Err(format!(
            "the logged entry is of {}, not of this record",
            entry.handle
        ));
    }
    let logged = entry.values.as_deref().unwrap_or_default();
    let limits = JsonLimits::default();
    for v in values {
        let v = value_from_json(v, &limits).map_err(|e| format!("a value shown: {e}"))?;
        let salt = proof["salts"][v.index.to_string()]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| format!("no salt for the value at index {}", v.index))?;
        let found = logged.iter().find(|l| l.index == v.index);
        match found {
            Some(l) if l.digest == value_digest(&salt, &v) && l.value_type == v.value_type => {}
            Some(_) => {
                return Err(format!(
                    "value {} ({}) is not the value logged at seq {}: it was changed after it was written",
                    v.index, v.value_type, entry.seq
                ));
            }
            None => {
                return Err(format!(
                    "value {} ({}) was not in the version logged at seq {}",
                    v.index, v.value_type, entry.seq
                ));
            }
        }
    }
    let receipt = proof["receipt"]
        .as_str()
        .ok_or("the proof has no receipt")
        .and_then(|r| Receipt::parse(r).map_err(|_| "the receipt is malformed"))?;
    let cp = trust.checkpoint(&receipt.checkpoint)?;
    tlog::check_inclusion(
        &receipt.proof,
        cp.size,
        &cp.root,
        receipt.index,
        &tlog::leaf_hash(&entry_bytes),
    )
    .map_err(|_| {
        format!(
            "the entry is not leaf {} of the tree the checkpoint of size {} commits to",
            receipt.index, cp.size
        )
    })?;
    if let Some(t) = &trust.trusted {
        if t.origin != cp.origin {
            return Err(format!(
                "the checkpoint is of {}, the trusted one of {}",
                cp.origin, t.origin
            ));
        }
        let consistent = if t.size == cp.size {
            t.root == cp.root
        } else {
            let Some(p) = &trust.consistency else {
                return Err(format!(
                    "the trusted checkpoint has size {}, the receipt's {}: give --consistency (GET /log/consistency?from={}&to={}) or use --online",
                    t.size,
                    cp.size,
                    t.size.min(cp.size),
                    t.size.max(cp.size)
                ));
            };
            let (old, new) = if t.size < cp.size { (t, &cp) } else { (&cp, t) };
            tlog::check_consistency(p, new.size, &new.root, old.size, &old.root).is_ok()
        };
        if !consistent {
            return Err(format!(
                "the checkpoint of size {} is not consistent with the trusted one of size {}: the log was rewritten",
                cp.size, t.size
            ));
        }
    }
    Ok(format!(
        "seq {} (leaf {} of {}, {} value{} checked)",
        entry.seq,
        receipt.index,
        cp.size,
        values.len(),
        if values.len() == 1 { "" } else { "s" }
    ))
}
