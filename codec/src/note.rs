//! The small text formats of C2SP transparency logs: signed notes (c2sp.org/signed-note)
//! with Ed25519 signatures and verifier keys, checkpoints (c2sp.org/tlog-checkpoint),
//! Ed25519 cosignatures (c2sp.org/tlog-cosignature) and offline proofs
//! (c2sp.org/tlog-proof@v1). Parsing is bounded: a note of at most [`MAX_NOTE`] bytes and
//! [`MAX_SIGNATURES`] signature lines, a proof of at most 63 hashes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, Verifier};
use sha2::{Digest, Sha256};

use crate::tlog::Hash;

/// The longest note accepted.
pub const MAX_NOTE: usize = 1 << 20;
/// The most signature lines accepted (C2SP asks verifiers to take at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// The most hashes an offline proof or a witness request carries.
pub const MAX_PROOF_HASHES: usize = 63;

/// Signature type of an Ed25519 note signature.
pub const SIG_ED25519: u8 = 0x01;
/// Signature type of a timestamped Ed25519 cosignature (cosignature/v1).
pub const SIG_COSIGNATURE: u8 = 0x04;

/// The first line of an offline proof.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a note, key or proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("no signature by a known key verifies")]
    Unverified,
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

fn malformed(why: impl Into<String>) -> NoteError {
    NoteError::Malformed(why.into())
}

/// C2SP's key ID: the first four bytes of SHA-256(name ‖ "\n" ‖ type ‖ public key).
pub fn key_id(name: &str, sig_type: u8, key: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Whether `name` may name a key: not empty, no spaces or `+`, no control characters.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
}

/// A verifier key: `<name>+<hex key ID>+<base64(type ‖ key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub sig_type: u8,
    pub key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// The key of an Ed25519 note signer (`sig_type` [`SIG_ED25519`]) or cosigner
    /// ([`SIG_COSIGNATURE`]).
    pub fn new(name: &str, sig_type: u8, key: ed25519_dalek::VerifyingKey) -> Self {
        VerifierKey {
            name: name.to_string(),
            sig_type,
            key,
        }
    }

    pub fn id(&self) -> [u8; 4] {
        key_id(&self.name, self.sig_type, self.key.as_bytes())
    }

    /// The vkey text.
    pub fn encode(&self) -> String {
        let mut body = vec![self.sig_type];
        body.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex(&self.id()), B64.encode(body))
    }

    /// Parses a vkey; its key ID must match its name and key.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim();
        // The name has no '+'; the base64 key may.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("a verifier key is name+id+key"));
        };
        if !valid_key_name(name) {
            return Err(malformed(format!("{name:?} is not a key name")));
        }
        let body = B64
            .decode(b64)
            .map_err(|_| malformed("the key is not base64"))?;
        let (&sig_type, key) = body
            .split_first()
            .ok_or_else(|| malformed("the key is empty"))?;
        if sig_type != SIG_ED25519 && sig_type != SIG_COSIGNATURE {
            return Err(malformed(format!(
                "signature type {sig_type:#04x} is not Ed25519 (0x01) or an Ed25519 cosignature (0x04)"
            )));
        }
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| malformed("an Ed25519 key is 32 bytes"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| malformed("not an Ed25519 public key"))?;
        let vk = VerifierKey {
            name: name.to_string(),
            sig_type,
            key,
        };
        if hex(&vk.id()) != id.to_ascii_lowercase() || id.len() != 8 {
            return Err(malformed("the key ID does not match the name and key"));
        }
        Ok(vk)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: [u8; 4],
    pub sig: Vec<u8>,
}

impl NoteSignature {
    pub fn line(&self) -> String {
        let mut b = self.id.to_vec();
        b.extend_from_slice(&self.sig);
        format!("\u{2014} {} {}\n", self.name, B64.encode(b))
    }
}

/// A signed note: its text (ending in a newline) and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// The note as served: the text, a blank line, the signature lines.
    pub fn encode(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }

    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE {
            return Err(malformed("the note is too long"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line before the signatures"))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(malformed("control characters in the text"));
        }
        if !sigs.ends_with('\n') {
            return Err(malformed("the last signature line has no newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(malformed("too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| malformed("a signature line starts with an em dash and a space"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| malformed("a signature line is: — name signature"))?;
            if !valid_key_name(name) {
                return Err(malformed(format!("{name:?} is not a key name")));
            }
            let b = B64
                .decode(b64)
                .map_err(|_| malformed("a signature is not base64"))?;
            if b.len() < 5 {
                return Err(malformed("a signature is too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                id: [b[0], b[1], b[2], b[3]],
                sig: b[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(malformed("no signature"));
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The signature of `key` (by name and ID) on this note, if there is one.
    pub fn signature_by(&self, key: &VerifierKey) -> Option<&NoteSignature> {
        let id = key.id();
        self.signatures
            .iter()
            .find(|s| s.name == key.name && s.id == id)
    }

    /// Checks the Ed25519 note signature of `key`: present and valid.
    pub fn verify(&self, key: &VerifierKey) -> Result<(), NoteError> {
        if key.sig_type != SIG_ED25519 {
            return Err(NoteError::Unverified);
        }
        let s = self.signature_by(key).ok_or(NoteError::Unverified)?;
        let sig = ed25519_dalek::Signature::from_slice(&s.sig)
            .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
        key.key
            .verify(self.text.as_bytes(), &sig)
            .map_err(|_| NoteError::BadSignature(key.name.clone()))
    }

    /// Checks the cosignature of `key` ([`SIG_COSIGNATURE`]): its timestamp when valid.
    pub fn verify_cosignature(&self, key: &VerifierKey) -> Result<u64, NoteError> {
        if key.sig_type != SIG_COSIGNATURE {
            return Err(NoteError::Unverified);
        }
        let s = self.signature_by(key).ok_or(NoteError::Unverified)?;
        if s.sig.len() != 8 + 64 {
            return Err(NoteError::BadSignature(key.name.clone()));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&s.sig[..8]);
        let time = u64::from_be_bytes(t);
        let sig = ed25519_dalek::Signature::from_slice(&s.sig[8..])
            .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
        key.key
            .verify(&cosigned_message(time, &self.text), &sig)
            .map_err(|_| NoteError::BadSignature(key.name.clone()))?;
        Ok(time)
    }
}

/// What a cosignature/v1 signs: a header with its time, then the checkpoint's text.
pub fn cosigned_message(time: u64, text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{text}").into_bytes()
}

/// An Ed25519 signer of notes under a key name.
pub struct NoteSigner {
    pub name: String,
    pub key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        write!(f, "NoteSigner({})", self.name)
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: ed25519_dalek::SigningKey) -> Self {
        NoteSigner {
            name: name.to_string(),
            key,
        }
    }

    /// The note signer's verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey::new(&self.name, SIG_ED25519, self.key.verifying_key())
    }

    /// The cosigner's verifier key (same key, cosignature type).
    pub fn cosigner(&self) -> VerifierKey {
        VerifierKey::new(&self.name, SIG_COSIGNATURE, self.key.verifying_key())
    }

    /// The note signature of `text`.
    pub fn sign(&self, text: &str) -> NoteSignature {
        let vk = self.verifier();
        NoteSignature {
            name: self.name.clone(),
            id: vk.id(),
            sig: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        }
    }

    /// The cosignature of `text` at `time` (seconds since the epoch).
    pub fn cosign(&self, text: &str, time: u64) -> NoteSignature {
        let vk = self.cosigner();
        let mut sig = time.to_be_bytes().to_vec();
        sig.extend_from_slice(&self.key.sign(&cosigned_message(time, text)).to_bytes());
        NoteSignature {
            name: self.name.clone(),
            id: vk.id(),
            sig,
        }
    }
}

/// A checkpoint's text: the log's origin, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint's text (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(malformed("a checkpoint has an origin, a size and a root"));
        };
        if origin.is_empty() {
            return Err(malformed("the checkpoint has no origin"));
        }
        if size.is_empty()
            || size.len() > 20
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(malformed("the size is not a decimal number"));
        }
        let size = size
            .parse()
            .map_err(|_| malformed("the size is not a decimal number"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| malformed("the root is not a base64 SHA-256 hash"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// An offline proof (c2sp.org/tlog-proof@v1): that the entry at `index` is in the tree the
/// signed `checkpoint` commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub proof: Vec<Hash>,
    /// The signed (and perhaps cosigned) checkpoint note.
    pub checkpoint: String,
}

impl Receipt {
    pub fn encode(&self) -> String {
        let mut s = format!("{PROOF_HEADER}\n");
        if let Some(e) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(e)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    pub fn parse(text: &str) -> Result<Self, NoteError> {
        if text.len() > MAX_NOTE {
            return Err(malformed("the proof is too long"));
        }
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| malformed("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(PROOF_HEADER) {
            return Err(malformed(format!("the first line is not {PROOF_HEADER}")));
        }
        let mut line = lines.next();
        let mut extra = None;
        if let Some(e) = line.and_then(|l| l.strip_prefix("extra ")) {
            extra = Some(
                B64.decode(e)
                    .map_err(|_| malformed("extra is not base64"))?,
            );
            line = lines.next();
        }
        let index = line
            .and_then(|l| l.strip_prefix("index "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| malformed("no index line"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return Err(malformed("too many proof hashes"));
            }
            let h: Hash = B64
                .decode(l)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| malformed("a proof line is not a base64 SHA-256 hash"))?;
            proof.push(h);
        }
        Ok(Receipt {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

/// The signature type of an SM2 note signature: C2SP leaves 0xff for types it does not assign;
/// Suyuan's layout (docs/transparency.md): the key is `"sm2"` ‖ the SEC1 uncompressed point, the
/// key ID SHA-256(name ‖ "\n" ‖ 0xff ‖ key)[..4] as for any type, the signature SM2 with SM3
/// (distinguishing identifier `1234567812345678`) over the note's text, DER-encoded.
pub const SIG_SM2: u8 = 0xff;

fn sm2_key_body(key: &sm2::dsa::VerifyingKey) -> Vec<u8> {
    let mut b = b"sm2".to_vec();
    b.extend_from_slice(&key.to_sec1_bytes());
    b
}

/// The vkey of an SM2 note signer: `<name>+<hex key ID>+<base64(0xff ‖ "sm2" ‖ point)>`.
pub fn sm2_vkey(name: &str, key: &sm2::dsa::VerifyingKey) -> String {
    let body = sm2_key_body(key);
    let mut b = vec![SIG_SM2];
    b.extend_from_slice(&body);
    format!(
        "{name}+{}+{}",
        hex(&key_id(name, SIG_SM2, &body)),
        B64.encode(b)
    )
}

/// Parses an SM2 vkey ([`sm2_vkey`]); its key ID must match.
pub fn sm2_vkey_parse(text: &str) -> Result<(String, sm2::dsa::VerifyingKey), NoteError> {
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("a verifier key is name+id+key"));
    };
    let body = B64
        .decode(b64)
        .map_err(|_| malformed("the key is not base64"))?;
    let Some((&SIG_SM2, rest)) = body.split_first() else {
        return Err(malformed("not an SM2 verifier key (type 0xff)"));
    };
    let point = rest
        .strip_prefix(b"sm2")
        .ok_or_else(|| malformed("not an SM2 verifier key (type 0xff, \"sm2\")"))?;
    let key = sm2::dsa::VerifyingKey::from_sec1_bytes(crate::trust::SM2_DISTID, point)
        .map_err(|_| malformed("not an SM2 public key"))?;
    if hex(&key_id(name, SIG_SM2, rest)) != id.to_ascii_lowercase() {
        return Err(malformed("the key ID does not match the name and key"));
    }
    Ok((name.to_string(), key))
}

/// An SM2 signature line over `text` by `name`.
pub fn sm2_sign(
    name: &str,
    key: &sm2::dsa::SigningKey,
    text: &str,
) -> Result<NoteSignature, NoteError> {
    use sm2::dsa::signature::Signer;
    let sig: sm2::dsa::Signature = key
        .try_sign(text.as_bytes())
        .map_err(|e| malformed(format!("SM2: {e}")))?;
    Ok(NoteSignature {
        name: name.to_string(),
        id: key_id(name, SIG_SM2, &sm2_key_body(key.verifying_key())),
        sig: crate::trust::rs_der(&sig.to_bytes()),
    })
}

impl Note {
    /// Checks the note's SM2 signature by `name` with `key`.
    pub fn verify_sm2(&self, name: &str, key: &sm2::dsa::VerifyingKey) -> Result<(), NoteError> {
        use sm2::dsa::signature::Verifier;
        let id = key_id(name, SIG_SM2, &sm2_key_body(key));
        let s = self
            .signatures
            .iter()
            .find(|s| s.name == name && s.id == id)
            .ok_or_else(|| malformed(format!("no SM2 signature by {name}")))?;
        let rs =
            crate::trust::der_rs(&s.sig).ok_or_else(|| malformed("not a DER SM2 signature"))?;
        let sig =
            sm2::dsa::Signature::from_slice(&rs).map_err(|_| malformed("not an SM2 signature"))?;
        key.verify(self.text.as_bytes(), &sig)
            .map_err(|_| malformed(format!("the SM2 signature by {name} does not verify")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    #[test]
    fn a_checkpoint_signed_and_cosigned_verifies_and_a_changed_one_does_not() {
        let log = signer("example.test/suyuan/88.888", 1);
        let witness = signer("witness.example", 2);
        let cp = Checkpoint {
            origin: "example.test/suyuan/88.888".into(),
            size: 42,
            root: [7; 32],
        };
        let text = cp.text();
        let note = Note {
            text: text.clone(),
            signatures: vec![log.sign(&text), witness.cosign(&text, 1_700_000_000)],
        };
        let parsed = Note::parse(&note.encode()).unwrap();
        assert_eq!(parsed, note);
        parsed.verify(&log.verifier()).unwrap();
        assert_eq!(
            parsed.verify_cosignature(&witness.cosigner()).unwrap(),
            1_700_000_000
        );
        assert_eq!(Checkpoint::parse(&parsed.text).unwrap(), cp);
        // A key the note does not name, and a note whose text changed.
        assert_eq!(
            parsed.verify(&witness.verifier()),
            Err(NoteError::Unverified)
        );
        let forged = note.encode().replace("\n42\n", "\n43\n");
        assert!(matches!(
            Note::parse(&forged).unwrap().verify(&log.verifier()),
            Err(NoteError::BadSignature(_))
        ));
        let vk = log.verifier().encode();
        assert_eq!(VerifierKey::parse(&vk).unwrap(), log.verifier());
        // Keys whose base64 holds a '+' (one in four or so).
        for seed in 0..32u8 {
            let k = signer("n", seed).verifier();
            assert_eq!(VerifierKey::parse(&k.encode()).unwrap(), k);
        }
        assert!(VerifierKey::parse(&vk.replacen('+', "x+", 1)).is_err());
    }

    #[test]
    fn a_receipt_round_trips() {
        let r = Receipt {
            extra: Some(b"seq 9".to_vec()),
            index: 8,
            proof: vec![[1; 32], [2; 32]],
            checkpoint: "o\n9\nAAAA\n\n\u{2014} o AAAAAAA=\n".into(),
        };
        assert_eq!(Receipt::parse(&r.encode()).unwrap(), r);
        assert!(Receipt::parse("c2sp.org/tlog-proof@v2\nindex 1\n\nx").is_err());
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            "no blank line\n\u{2014} a AAAAAAA=\n",
            "text\n\n",
            "text\n\n- a AAAAAAA=\n",
            "text\n\n\u{2014} a+b AAAAAAA=\n",
            "text\n\n\u{2014} a AAAA\n",
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
    }
}
