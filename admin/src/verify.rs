//! `suyuan verify`: checks a trace answer or a proof answer against a log key, trusting nothing
//! else. For each record it recomputes the digest of every value shown from its salt, finds it
//! in the logged entry, checks the entry's inclusion proof against the receipt's checkpoint,
//! the checkpoint's signature by the log key and the cosignatures of the witnesses given, and,
//! with `--trusted`, that the checkpoint is consistent with one the caller already trusts.
//! `--online` fetches the trace (and the key, trusted on first use unless given) from a node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Args;
use serde_json::Value as Json;
use suyuan_codec::json::{JsonLimits, value_from_json};
use suyuan_codec::note::{Checkpoint, Note, Receipt, SIG_COSIGNATURE, VerifierKey};
use suyuan_codec::tlog::{self, Hash};
use suyuan_registry::log::{Entry, value_digest};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A trace answer (`suyuan trace --json`, GET /api/trace) or a proof answer (GET
    /// /api/proof); `-` reads standard input. With --online: the handle to trace.
    target: String,
    /// The log's verifier key (the vkey text, or a file holding it, such as a node's
    /// log.vkey); repeat it for a trace that crosses nodes.
    #[arg(long = "log-key", value_name = "VKEY")]
    log_keys: Vec<String>,
    /// A witness whose cosignature every checkpoint must carry (vkey text or file).
    #[arg(long = "witness-key", value_name = "VKEY")]
    witness_keys: Vec<String>,
    /// The log's SM2 verifier key (a node's log-sm2.vkey): every checkpoint must carry a valid
    /// SM2 line by it too.
    #[arg(long = "log-sm2-key", value_name = "VKEY")]
    sm2_keys: Vec<String>,
    /// A checkpoint already trusted (a file): every checkpoint must be consistent with it.
    #[arg(long, value_name = "FILE")]
    trusted: Option<PathBuf>,
    /// The consistency proof between the trusted checkpoint and the receipts' (the lines of
    /// GET /log/consistency), for an offline check when their sizes differ.
    #[arg(long, value_name = "FILE")]
    consistency: Option<PathBuf>,
    /// Trace TARGET at a node and fetch what the check needs from it.
    #[arg(long)]
    online: bool,
    /// The node's HTTP address, for --online.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    node: String,
}

/// A vkey's text, given as text or as a file holding it.
fn vkey_text(arg: &str) -> Result<String> {
    if arg.contains('+') && !std::path::Path::new(arg).exists() {
        Ok(arg.to_string())
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("cannot read the key file {arg}"))
    }
}

/// A vkey given as text or as a file holding it.
fn vkey(arg: &str) -> Result<VerifierKey> {
    VerifierKey::parse(&vkey_text(arg)?).with_context(|| format!("{arg} is not a verifier key"))
}

/// What every record's check is held against.
struct Trust {
    log_keys: Vec<VerifierKey>,
    witnesses: Vec<VerifierKey>,
    /// SM2 keys (name, key) whose line every checkpoint must carry.
    sm2: Vec<(String, sm2::dsa::VerifyingKey)>,
    /// The trusted checkpoint, and the consistency proof to the receipts' checkpoints.
    trusted: Option<Checkpoint>,
    consistency: Option<Vec<Hash>>,
    /// Checkpoint notes checked already: the records of one trace share one.
    checked: std::cell::RefCell<std::collections::HashMap<String, Result<Checkpoint, String>>>,
}

impl Trust {
    fn new(log_keys: Vec<VerifierKey>, witnesses: Vec<VerifierKey>) -> Self {
        Trust {
            log_keys,
            witnesses,
            sm2: Vec::new(),
            trusted: None,
            consistency: None,
            checked: Default::default(),
        }
    }

    fn checkpoint(&self, note: &str) -> Result<Checkpoint, String> {
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

fn b64_hash(s: &str) -> Option<Hash> {
    B64.decode(s.trim()).ok()?.try_into().ok()
}

/// Checks a signed checkpoint note: the log key's signature, every witness's cosignature.
fn check_note(note: &str, trust: &Trust) -> Result<Checkpoint, String> {
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
fn check_record(
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

/// The records of a trace answer or the one record of a proof answer: handle, values, proof.
fn records(doc: &Json) -> Result<Vec<(String, Vec<Json>, Json)>> {
    if let Some(nodes) = doc.get("nodes").and_then(Json::as_array) {
        return Ok(nodes
            .iter()
            .map(|n| {
                (
                    n["handle"].as_str().unwrap_or("?").to_string(),
                    n["values"].as_array().cloned().unwrap_or_default(),
                    n.get("proof").cloned().unwrap_or(Json::Null),
                )
            })
            .collect());
    }
    if doc.get("receipt").is_some() || doc.get("pending").is_some() {
        return Ok(vec![(
            doc["handle"].as_str().unwrap_or("?").to_string(),
            doc["values"].as_array().cloned().unwrap_or_default(),
            doc.clone(),
        )]);
    }
    bail!("neither a trace answer (with \"nodes\") nor a proof answer (with \"receipt\")")
}

/// Verifies every record of `doc`; prints a line each; true when all hold.
fn verify_doc(doc: &Json, trust: &Trust) -> Result<bool> {
    let mut all = true;
    let recs = records(doc)?;
    if recs.is_empty() {
        bail!("the answer holds no record");
    }
    for (handle, values, proof) in recs {
        match check_record(&handle, &values, &proof, trust) {
            Ok(what) => println!("ok   {handle} {what}"),
            Err(why) => {
                all = false;
                println!("FAIL {handle}: {why}");
            }
        }
    }
    Ok(all)
}

pub async fn run(a: VerifyArgs) -> Result<ExitCode> {
    let mut log_keys = a
        .log_keys
        .iter()
        .map(|k| vkey(k))
        .collect::<Result<Vec<_>>>()?;
    let witnesses = a
        .witness_keys
        .iter()
        .map(|k| {
            let mut v = vkey(k)?;
            // A witness's vkey names its key; its signatures on checkpoints are cosignatures.
            v.sig_type = SIG_COSIGNATURE;
            Ok(v)
        })
        .collect::<Result<Vec<_>>>()?;
    let trusted_note = a
        .trusted
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("{}", p.display())))
        .transpose()?;
    let mut consistency = a
        .consistency
        .as_ref()
        .map(|p| -> Result<Vec<Hash>> {
            std::fs::read_to_string(p)
                .with_context(|| format!("{}", p.display()))?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    b64_hash(l).with_context(|| format!("{}: not a base64 hash: {l}", p.display()))
                })
                .collect()
        })
        .transpose()?;
    let doc: Json = if a.online {
        let path = format!("/api/trace/{}", crate::trace::pct(&a.target));
        let (status, body) = crate::trace::http_get(&a.node, &path).await?;
        if status != 200 {
            bail!("the node answered {status} to {path}: {body}");
        }
        if log_keys.is_empty() {
            let (status, key) = crate::trace::http_get(&a.node, "/log/key").await?;
            if status != 200 {
                bail!("the node answered {status} to /log/key: {key}");
            }
            let k = VerifierKey::parse(&key).context("the node's /log/key")?;
            eprintln!(
                "trusting the node's log key on first use: {} (pass --log-key to check against one you hold)",
                k.encode()
            );
            log_keys.push(k);
        }
        let doc: Json = serde_json::from_str(&body).context("the trace answer is not JSON")?;
        if let (Some(t), None) = (&trusted_note, &consistency) {
            // The proof from the trusted checkpoint to the receipts' (all of one checkpoint).
            let t = Checkpoint::parse(&Note::parse(t).context("--trusted")?.text)
                .context("--trusted")?;
            let size = receipt_size(&doc);
            if let Some(size) = size.filter(|s| *s != t.size) {
                let (from, to) = (t.size.min(size), t.size.max(size));
                let (status, lines) = crate::trace::http_get(
                    &a.node,
                    &format!("/log/consistency?from={from}&to={to}"),
                )
                .await?;
                if status == 200 {
                    consistency = Some(lines.lines().filter_map(b64_hash).collect());
                }
            }
        }
        doc
    } else {
        let text = if a.target == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        } else {
            std::fs::read_to_string(&a.target)
                .with_context(|| format!("cannot read {}", a.target))?
        };
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", a.target))?
    };
    if log_keys.is_empty() {
        eprintln!(
            "suyuan verify: give the log's key with --log-key VKEY (a node's log.vkey), or use --online"
        );
        return Ok(ExitCode::from(2));
    }
    let mut trust = Trust::new(log_keys, witnesses);
    for k in &a.sm2_keys {
        trust.sm2.push(
            suyuan_codec::note::sm2_vkey_parse(&vkey_text(k)?)
                .with_context(|| format!("{k} is not an SM2 verifier key"))?,
        );
    }
    if let Some(t) = &trusted_note {
        // The trusted checkpoint must be the log's own, witnessed or not.
        let only_log = Trust::new(trust.log_keys.clone(), Vec::new());
        trust.trusted =
            Some(check_note(t, &only_log).map_err(|e| anyhow::anyhow!("--trusted: {e}"))?);
    }
    trust.consistency = consistency;
    Ok(if verify_doc(&doc, &trust)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The size of the checkpoint the first receipt of `doc` is against.
fn receipt_size(doc: &Json) -> Option<u64> {
    let recs = records(doc).ok()?;
    recs.iter().find_map(|(_, _, p)| {
        let r = Receipt::parse(p["receipt"].as_str()?).ok()?;
        let n = Note::parse(&r.checkpoint).ok()?;
        Checkpoint::parse(&n.text).ok().map(|c| c.size)
    })
}
