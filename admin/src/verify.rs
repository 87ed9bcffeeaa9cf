//! `suyuan verify`: checks a trace answer or a proof answer against a log key, trusting nothing
//! else. For each record it recomputes the digest of every value shown from its salt, finds it
//! in the logged entry, checks the entry's inclusion proof against the receipt's checkpoint,
//! the checkpoint's signature by the log key and the cosignatures of the witnesses given, and,
//! with `--trusted`, that the checkpoint is consistent with one the caller already trusts.
//! `--online` fetches the trace (and the key, trusted on first use unless given) from a node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value as Json;
use suyuan_codec::note::{Checkpoint, Note, Receipt, SIG_COSIGNATURE, VerifierKey};
use suyuan_codec::tlog::Hash;
use suyuan_registry::proof::{Trust, b64_hash, check_note, check_record};

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
pub(crate) fn vkey(arg: &str) -> Result<VerifierKey> {
    VerifierKey::parse(&vkey_text(arg)?).with_context(|| format!("{arg} is not a verifier key"))
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
