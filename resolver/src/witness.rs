//! Witnessing per C2SP tlog-witness: this node cosigns the checkpoints of the logs it is
//! configured to witness (`POST /log/add-checkpoint`) once it has checked the log's signature
//! and a consistency proof from the last checkpoint it cosigned for that log, and it submits
//! its own log's checkpoints to the witnesses it is configured with, serving the cosigned
//! checkpoint.
//!
//! A witness keeps one record per log: the size and root it last cosigned, persisted
//! atomically (written aside, synced, renamed) before it answers, under one lock with the
//! check, so two requests can never roll a log back.

use std::collections::HashMap;
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use suyuan_codec::note::{
    Checkpoint, MAX_PROOF_HASHES, Note, NoteSignature, NoteSigner, SIG_COSIGNATURE, VerifierKey,
};
use suyuan_codec::tlog::{self, Hash};
use tracing::warn;

/// The largest add-checkpoint body taken.
const MAX_BODY: usize = 64 * 1024;
/// How long a witness may take to answer a submission.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// What an add-checkpoint request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the cosignature lines.
    Cosigned(String),
    /// 409 with the size of the latest checkpoint cosigned (`text/x.tlog.size`).
    Conflict(u64),
    /// Any other refusal: its status and why.
    Refused(u16, String),
}

/// A log this node witnesses.
#[derive(Debug, Clone)]
pub struct WitnessedLog {
    pub origin: String,
    pub key: VerifierKey,
}

/// This node as a witness.
pub struct Witness {
    signer: NoteSigner,
    logs: HashMap<String, VerifierKey>,
    dir: PathBuf,
    /// The latest cosigned (size, root) per origin; the lock is held from check to persist.
    state: Mutex<HashMap<String, (u64, Hash)>>,
    now: fn() -> u64,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("name", &self.signer.name)
            .field("logs", &self.logs.len())
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The file a log's witness record lives in.
fn state_file(dir: &Path, origin: &str) -> PathBuf {
    let h = Sha256::digest(origin.as_bytes());
    let name: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
    dir.join(name)
}

impl Witness {
    /// A witness signing as `signer`, for `logs`, keeping its records in `dir` (made if
    /// missing; records already there are loaded).
    pub fn new(signer: NoteSigner, logs: Vec<WitnessedLog>, dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut state = HashMap::new();
        for l in &logs {
            if let Ok(text) = std::fs::read_to_string(state_file(dir, &l.origin)) {
                let mut lines = text.lines();
                let origin = lines.next().unwrap_or_default();
                let size = lines.next().and_then(|s| s.parse().ok());
                let root = lines
                    .next()
                    .and_then(|r| B64.decode(r).ok()?.try_into().ok());
                match (origin == l.origin, size, root) {
                    (true, Some(size), Some(root)) => {
                        state.insert(l.origin.clone(), (size, root));
                    }
                    _ => {
                        return Err(std::io::Error::other(format!(
                            "witness record of {} is damaged",
                            l.origin
                        )));
                    }
                }
            }
        }
        Ok(Witness {
            signer,
            logs: logs.into_iter().map(|l| (l.origin, l.key)).collect(),
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            now: unix_now,
        })
    }

    /// The witness's verifier key (a cosigner's, type 0x04).
    pub fn vkey(&self) -> String {
        self.signer.cosigner().encode()
    }

    /// Carries out one add-checkpoint request. Blocks on the disk.
    pub fn add_checkpoint(&self, body: &[u8]) -> Answer {
        let bad = |why: &str| Answer::Refused(400, format!("{why}\n"));
        if body.len() > MAX_BODY {
            return Answer::Refused(413, "the request is too large\n".into());
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return bad("the body is not UTF-8");
        };
        let Some((head, note)) = text.split_once("\n\n") else {
            return bad("no empty line before the checkpoint");
        };
        let mut lines = head.split('\n');
        let old = match lines.next().and_then(|l| l.strip_prefix("old ")) {
            Some(n)
                if n == "0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())) =>
            {
                match n.parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => return bad("the old size is not a number"),
                }
            }
            _ => return bad("the first line is not `old <size>`"),
        };
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return bad("more than 63 consistency proof lines");
            }
            match B64.decode(l).ok().and_then(|h| Hash::try_from(h).ok()) {
                Some(h) => proof.push(h),
                None => return bad("a proof line is not a base64 hash"),
            }
        }
        let Ok(note) = Note::parse(note) else {
            return bad("the checkpoint is not a signed note");
        };
        let Ok(cp) = Checkpoint::parse(&note.text) else {
            return bad("the note is not a checkpoint");
        };
        let Some(key) = self.logs.get(&cp.origin) else {
            return Answer::Refused(
                404,
                format!("{} is not a log this witness witnesses\n", cp.origin),
            );
        };
        if note.verify(key).is_err() {
            return Answer::Refused(403, "no signature by the log's key verifies\n".into());
        }
        if old > cp.size {
            return bad("the old size is larger than the checkpoint's");
        }
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(e) => e.into_inner(),
        };
        let (known, known_root) = state.get(&cp.origin).copied().unwrap_or((0, [0; 32]));
        if old != known {
            return Answer::Conflict(known);
        }
        if old == 0 {
            if !proof.is_empty() {
                return Answer::Refused(422, "the proof must be empty from size 0\n".into());
            }
        } else if old == cp.size {
            if cp.root != known_root || !proof.is_empty() {
                return Answer::Conflict(known);
            }
        } else if tlog::check_consistency(&proof, cp.size, &cp.root, old, &known_root).is_err() {
            return Answer::Refused(422, "the consistency proof does not verify\n".into());
        }
        if let Err(e) = self.persist(&cp) {
            warn!(error = %e, origin = cp.origin, "cannot persist a witness record");
            return Answer::Refused(500, "cannot persist the checkpoint\n".into());
        }
        state.insert(cp.origin.clone(), (cp.size, cp.root));
        Answer::Cosigned(self.signer.cosign(&note.text, (self.now)()).line())
    }

    /// Writes the record aside, syncs it, and renames it into place.
    fn persist(&self, cp: &Checkpoint) -> std::io::Result<()> {
        let path = state_file(&self.dir, &cp.origin);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        write!(f, "{}\n{}\n{}\n", cp.origin, cp.size, B64.encode(cp.root))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// POST /log/add-checkpoint
pub(crate) async fn add_checkpoint(
    State(w): State<Option<std::sync::Arc<Witness>>>,
    body: Bytes,
) -> Response {
    let Some(w) = w else {
        return (StatusCode::NOT_FOUND, "this node witnesses no log\n").into_response();
    };
    let answer = tokio::task::spawn_blocking(move || w.add_checkpoint(&body)).await;
    match answer {
        Ok(a) => {
            let (status, body) = answer_parts(a);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            if status == StatusCode::CONFLICT {
                (status, [(header::CONTENT_TYPE, "text/x.tlog.size")], body).into_response()
            } else {
                (status, body).into_response()
            }
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// An add-checkpoint answer as a status and body, the same over HTTP and node-to-node QUIC.
pub(crate) fn answer_parts(a: Answer) -> (u16, Vec<u8>) {
    match a {
        Answer::Cosigned(lines) => (200, lines.into_bytes()),
        Answer::Conflict(size) => (409, format!("{size}\n").into_bytes()),
        Answer::Refused(status, why) => (status, why.into_bytes()),
    }
}

/// A witness this node's log submits its checkpoints to.
#[derive(Debug)]
pub struct Submit {
    /// The witness's submission prefix, `http://HOST:PORT[/path]` (`/add-checkpoint` is
    /// appended).
    pub url: String,
    pub key: VerifierKey,
    /// The size of the latest checkpoint this witness cosigned, as far as we know.
    acked: Mutex<u64>,
    /// For a witness at `quic://HOST:PORT`: the federation's QUIC link, and the runtime to
    /// drive it from the blocking submitter.
    quic: Option<(
        std::sync::Arc<suyuan_federation::quic::QuicLink>,
        tokio::runtime::Handle,
    )>,
}

impl Submit {
    pub fn new(url: &str, mut key: VerifierKey) -> Self {
        // A witness's signatures on checkpoints are cosignatures, whatever its vkey says.
        key.sig_type = SIG_COSIGNATURE;
        Submit {
            url: url.trim_end_matches('/').to_string(),
            key,
            acked: Mutex::new(0),
            quic: None,
        }
    }

    /// Submits over node-to-node QUIC (mutual TLS) when the URL is `quic://HOST:PORT`.
    /// Needs a Tokio runtime to be current.
    pub fn with_quic(mut self, link: std::sync::Arc<suyuan_federation::quic::QuicLink>) -> Self {
        self.quic = Some((link, tokio::runtime::Handle::current()));
        self
    }

    /// One add-checkpoint request: over QUIC for `quic://`, else HTTP. Blocks.
    fn send(&self, body: &[u8]) -> Result<(u16, String), String> {
        let Some(addr) = self.url.strip_prefix("quic://") else {
            return post(&self.url, "/add-checkpoint", body);
        };
        let Some((link, rt)) = &self.quic else {
            return Err(format!(
                "{}: a quic:// witness needs the federation's certificates (federation_ca, node_cert, node_key)",
                self.url
            ));
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("{}: quic://IP:PORT", self.url))?;
        let (status, text) = rt
            .block_on(link.frame(addr, suyuan_codec::fedframe::Kind::Witness, body))
            .map_err(|e| e.to_string())?;
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
    }

    /// Asks the witness to cosign `note` (a signed checkpoint of `cp`), with consistency
    /// proofs from `proof(old)`; its cosignature when it gives a valid one. Blocks.
    pub fn cosign(
        &self,
        note: &Note,
        cp: &Checkpoint,
        proof: &dyn Fn(u64) -> Option<Vec<Hash>>,
    ) -> Result<NoteSignature, String> {
        let mut acked = self.acked.lock().map_err(|e| e.to_string())?;
        // Twice at most: the first answer may tell us the size the witness holds.
        for _ in 0..2 {
            let old = (*acked).min(cp.size);
            let hashes = if old == 0 || old == cp.size {
                Vec::new()
            } else {
                proof(old).ok_or("no consistency proof")?
            };
            let mut body = format!("old {old}\n");
            for h in &hashes {
                body.push_str(&B64.encode(h));
                body.push('\n');
            }
            body.push('\n');
            body.push_str(&note.encode());
            let (status, text) = self.send(body.as_bytes())?;
            match status {
                200 => {
                    let with = format!("{}\n{text}", note.text);
                    let cosigned = Note::parse(&with).map_err(|e| e.to_string())?;
                    cosigned
                        .verify_cosignature(&self.key)
                        .map_err(|e| format!("the witness's cosignature: {e}"))?;
                    *acked = cp.size;
                    return cosigned
                        .signature_by(&self.key)
                        .cloned()
                        .ok_or_else(|| "no cosignature by the witness's key".into());
                }
                409 => {
                    *acked = text.trim().parse().map_err(|_| "409 without a size")?;
                }
                s => return Err(format!("the witness answered {s}: {}", text.trim())),
            }
        }
        Err("the witness's size changed twice in a row".into())
    }
}

/// A plain HTTP/1.1 POST; the status and the body.
fn post(base: &str, path: &str, body: &[u8]) -> Result<(u16, String), String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or("a witness URL is http://HOST:PORT[/path] (HTTPS is not supported yet)")?;
    let (host, prefix) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, String::new()),
    };
    let addr: SocketAddr = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, SUBMIT_TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(SUBMIT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(SUBMIT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .and_then(|()| s.write_all(body))
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut raw = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed HTTP answer")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed HTTP status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

pub(crate) fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = b.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        b = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    /// A log of `n` leaves in memory and its signed checkpoint.
    fn log(n: u64, log: &NoteSigner) -> (Vec<Hash>, Checkpoint, Note) {
        let mut hashes: Vec<Hash> = Vec::new();
        for i in 0..n {
            let r = |idx: &[u64]| -> Result<Vec<Hash>, tlog::TlogError> {
                Ok(idx.iter().map(|&j| hashes[j as usize]).collect())
            };
            let new =
                tlog::stored_hashes_for_leaf(i, tlog::leaf_hash(&i.to_be_bytes()), &r).unwrap();
            hashes.extend(new);
        }
        let r = |idx: &[u64]| -> Result<Vec<Hash>, tlog::TlogError> {
            Ok(idx.iter().map(|&j| hashes[j as usize]).collect())
        };
        let cp = Checkpoint {
            origin: log.name.clone(),
            size: n,
            root: tlog::tree_hash(n, &r).unwrap(),
        };
        let text = cp.text();
        let note = Note {
            signatures: vec![log.sign(&text)],
            text,
        };
        (hashes, cp, note)
    }

    fn body(old: u64, proof: &[Hash], note: &Note) -> Vec<u8> {
        let mut b = format!("old {old}\n");
        for h in proof {
            b.push_str(&B64.encode(h));
            b.push('\n');
        }
        b.push('\n');
        b.push_str(&note.encode());
        b.into_bytes()
    }

    /// The test witness of log `l`, keeping its records in `dir`.
    fn witness_of(l: &NoteSigner, dir: &Path) -> Witness {
        Witness::new(
            signer("example.test/witness", 2),
            vec![WitnessedLog {
                origin: l.name.clone(),
                key: l.verifier(),
            }],
            dir,
        )
        .unwrap()
    }

    #[test]
    fn every_answer_of_the_specification() {
        let dir = tempfile::tempdir().unwrap();
        let l = signer("example.test/log", 1);
        let w = witness_of(&l, dir.path());
        let (_, cp5, n5) = log(5, &l);
        let (h9, cp9, n9) = log(9, &l);
        // First sight: old 0, no proof, cosigned; the cosignature verifies.
        let Answer::Cosigned(line) = w.add_checkpoint(&body(0, &[], &n5)) else {
            panic!()
        };
        let cosigned = Note::parse(&format!("{}\n{line}", n5.text)).unwrap();
        cosigned
            .verify_cosignature(&signer("example.test/witness", 2).cosigner())
            .unwrap();
        // The wrong old size: 409 with the size held.
        assert_eq!(w.add_checkpoint(&body(0, &[], &n9)), Answer::Conflict(5));
        // A bad proof: 422; the right one: cosigned.
        let r = |idx: &[u64]| -> Result<Vec<Hash>, tlog::TlogError> {
            Ok(idx.iter().map(|&j| h9[j as usize]).collect())
        };
        let good = tlog::consistency_proof(9, 5, &r).unwrap();
        let mut bad = good.clone();
        bad[0][0] ^= 1;
        assert!(matches!(
            w.add_checkpoint(&body(5, &bad, &n9)),
            Answer::Refused(422, _)
        ));
        assert!(matches!(
            w.add_checkpoint(&body(5, &good, &n9)),
            Answer::Cosigned(_)
        ));
        // Old larger than new: 400. Unknown origin: 404. No trusted signature: 403.
        assert!(matches!(
            w.add_checkpoint(&body(9, &[], &n5)),
            Answer::Refused(400, _)
        ));
        let other = signer("example.test/other", 3);
        let (_, _, no) = log(3, &other);
        assert!(matches!(
            w.add_checkpoint(&body(0, &[], &no)),
            Answer::Refused(404, _)
        ));
        let forged = Note {
            signatures: vec![other.sign(&cp9.text())],
            text: cp9.text(),
        };
        let forged = Note {
            signatures: vec![NoteSignature {
                name: l.name.clone(),
                ..forged.signatures[0].clone()
            }],
            ..forged
        };
        assert!(matches!(
            w.add_checkpoint(&body(9, &[], &forged)),
            Answer::Refused(403, _)
        ));
        // The same size with another root: 409.
        let fork = Checkpoint {
            root: [7; 32],
            ..cp9.clone()
        };
        let fork_note = Note {
            signatures: vec![l.sign(&fork.text())],
            text: fork.text(),
        };
        assert_eq!(
            w.add_checkpoint(&body(9, &[], &fork_note)),
            Answer::Conflict(9)
        );
        assert!(matches!(
            w.add_checkpoint(b"old 01\n\nx"),
            Answer::Refused(400, _)
        ));
        // The record survives a restart.
        drop(w);
        let again = witness_of(&l, dir.path());
        assert_eq!(
            again.add_checkpoint(&body(0, &[], &n5)),
            Answer::Conflict(9)
        );
        let _ = cp5;
    }
}
