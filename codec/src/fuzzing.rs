//! The properties every decoder must keep on arbitrary input, shared by the cargo-fuzz targets
//! in `fuzz/` and the stable test that replays their corpus (`tests/fuzz_corpus.rs`): never
//! panic, and whatever decodes re-encodes to something that decodes to the same thing. Each
//! function panics when a property fails, which is what a fuzzer reports.

#![doc(hidden)]

use crate::framing::{Reassembly, UdpReassembler, tcp_frame_len, udp_split};
use crate::message::{ENVELOPE_LEN, Envelope, HEADER_LEN, Header, Message};
use crate::site::SiteInfo;
use crate::value::{
    AdminRecord, HandleValue, PublicKey, TypedData, decode_value_list, encode_value_list,
};

/// Envelope, header and whole-message decoding.
pub fn message(data: &[u8]) {
    if data.len() >= ENVELOPE_LEN {
        let e = Envelope::decode(&data[..ENVELOPE_LEN]).expect("20 bytes always make an envelope");
        assert_eq!(
            e.encode(),
            data[..ENVELOPE_LEN],
            "envelope re-encodes exactly"
        );
    }
    if data.len() >= ENVELOPE_LEN + HEADER_LEN {
        let h = Header::decode(&data[ENVELOPE_LEN..ENVELOPE_LEN + HEADER_LEN])
            .expect("24 bytes make a header");
        let mut b = Vec::new();
        h.encode_into(&mut b);
        assert_eq!(b, data[ENVELOPE_LEN..ENVELOPE_LEN + HEADER_LEN]);
    }
    if let Ok(m) = Message::decode(data) {
        let once = m.encode();
        let again = Message::decode(&once).expect("an encoded message decodes");
        assert_eq!(again.body, m.body, "body survives a re-encode");
        assert_eq!(again.credential, m.credential);
        assert_eq!(again.encode(), once, "encoding is stable");
        let _ = m.digest_as_request((2, 11));
        let _ = m.signed_bytes(1);
    }
}

/// TCP framing, and UDP fragmentation and reassembly.
pub fn udp(data: &[u8]) {
    let _ = tcp_frame_len(data);
    // Arbitrary bytes cut into datagrams must not upset the reassembler.
    let mut r = UdpReassembler::new();
    for d in data.chunks(512) {
        if r.push(d).is_err() {
            break;
        }
    }
    let _ = r.missing();
    // A well-formed envelope around the input splits and reassembles to the same bytes.
    if data.len() >= ENVELOPE_LEN && data.len() <= 70_000 {
        let mut e = Envelope::decode(&data[..ENVELOPE_LEN]).expect("envelope");
        e.flags = 0;
        e.sequence = 0;
        e.message_length = (data.len() - ENVELOPE_LEN) as u32;
        let mut m = e.encode().to_vec();
        m.extend_from_slice(&data[ENVELOPE_LEN..]);
        let mut r = UdpReassembler::new();
        let mut whole = None;
        for d in udp_split(&m).iter().rev() {
            if let Reassembly::Complete(b) = r.push(d).expect("our own fragments are valid") {
                whole = Some(b);
            }
        }
        assert_eq!(
            whole.as_deref(),
            Some(&m[..]),
            "split then reassemble is the identity"
        );
    }
}

/// Handle values and the typed views of their data.
pub fn value(data: &[u8]) {
    if let Ok(v) = HandleValue::decode(data) {
        assert_eq!(v.encode(), data, "a value re-encodes exactly");
        assert_eq!(v.encoded_len(), data.len());
        let _ = v.typed();
    }
    // The first byte picks a type name, the rest is data.
    if let Some((&sel, rest)) = data.split_first() {
        const TYPES: [&str; 8] = [
            "HS_ADMIN",
            "HS_VLIST",
            "HS_SITE",
            "HS_PUBKEY",
            "HS_SECKEY",
            "HS_ALIAS",
            "URL",
            "HS_SITE.6",
        ];
        if let Ok(TypedData::Admin(a)) = TypedData::decode(TYPES[sel as usize % TYPES.len()], rest)
        {
            assert_eq!(a.encode(), rest);
        }
    }
}

/// HS_SITE.
pub fn site(data: &[u8]) {
    if let Ok(s) = SiteInfo::decode(data) {
        assert_eq!(s.encode(), data, "HS_SITE re-encodes exactly");
        for srv in &s.servers {
            let _ = srv.ip();
        }
        let _ = s.server_index_for("88.888.1/x");
    }
}

/// HS_ADMIN, HS_VLIST and HS_PUBKEY data.
pub fn admin(data: &[u8]) {
    if let Ok(a) = AdminRecord::decode(data) {
        assert_eq!(a.encode(), data, "HS_ADMIN re-encodes exactly");
    }
    if let Ok(l) = decode_value_list(data) {
        assert_eq!(encode_value_list(&l), data, "HS_VLIST re-encodes exactly");
    }
    if let Ok(k) = PublicKey::decode(data) {
        assert_eq!(k.encode(), data, "HS_PUBKEY re-encodes exactly");
        let _ = crate::auth::rsa_public_from_hs(&k);
    }
}

/// REST JSON: what decodes survives a trip through our own JSON.
pub fn json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = crate::json::JsonLimits::default();
    if let Ok(values) = crate::json::values_from_json(text, &limits) {
        for v in values {
            let j = crate::json::value_to_json(&v);
            let back = crate::json::value_from_json(&j, &limits).expect("our own JSON decodes");
            assert_eq!(back, v, "value survives JSON: {j}");
        }
    }
    if let Ok(j) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(s) = crate::json::site_from_json(&j, &limits) {
            let again = crate::json::site_from_json(&crate::json::site_to_json(&s), &limits)
                .expect("our own site JSON decodes");
            assert_eq!(again, s);
        }
    }
    let _ = crate::time::parse_iso8601(text);
    let _ = crate::time::parse_period(text);
}

/// The transparency log's text formats and proof maths: signed notes, receipts, verifier
/// keys, checkpoints and tile paths re-encode to what decodes the same; proofs over arbitrary
/// hashes and sizes are checked without panicking.
pub fn tlog(data: &[u8]) {
    use crate::note::{Checkpoint, Note, Receipt, VerifierKey};
    use crate::tlog::{Tile, check_consistency, check_inclusion};
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = Note::parse(text) {
            assert_eq!(
                Note::parse(&n.encode()).as_ref(),
                Ok(&n),
                "a note re-encodes"
            );
            if let Ok(c) = Checkpoint::parse(&n.text) {
                assert_eq!(Checkpoint::parse(&c.text()), Ok(c.clone()));
            }
        }
        if let Ok(r) = Receipt::parse(text) {
            assert_eq!(
                Receipt::parse(&r.encode()).as_ref(),
                Ok(&r),
                "a receipt re-encodes"
            );
        }
        if let Ok(k) = VerifierKey::parse(text) {
            assert_eq!(
                VerifierKey::parse(&k.encode()).as_ref(),
                Ok(&k),
                "a vkey re-encodes"
            );
        }
        if let Some((t, entries)) = Tile::parse(text) {
            let p = t.path(entries);
            assert_eq!(p.strip_prefix("tile/"), Some(text), "one spelling per tile");
        }
    }
    // Sizes and an index from the first 24 bytes, hashes from the rest.
    if data.len() >= 24 {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let (size, index, old) = (word(0), word(8), word(16));
        let hashes: Vec<[u8; 32]> = data[24..]
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        let root = hashes.first().copied().unwrap_or_default();
        let _ = check_inclusion(&hashes, size, &root, index, &root);
        let _ = check_consistency(&hashes, size, &root, old, &root);
    }
}

/// The formula language: any text parses or is refused without panicking; what parses has a
/// unit whose spelling parses back to it, and evaluates (over inputs made up from the text)
/// to a number or an error, within its budget.
pub fn formula(data: &[u8]) {
    use crate::formula::{EvalError, Formula, Source, Step, Tolerance, Unit};
    struct Made(u64);
    impl Source for Made {
        fn follow(&self, from: &str, step: &Step) -> Result<Vec<String>, EvalError> {
            let n = (self.0 as usize + step.rel.len() + from.len()) % 4;
            Ok((0..n).map(|i| format!("{from}/{i}")).collect())
        }
        fn number(&self, h: &str, t: &str) -> Result<(f64, Option<String>), EvalError> {
            let k = h.len() as u64 ^ t.len() as u64 ^ self.0;
            let unit = ["1", "t", "%", "MWh"][(k % 4) as usize];
            Ok(((k % 1000) as f64 / 7.0, Some(unit.to_string())))
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Tolerance::parse(text);
    if let Ok(u) = Unit::parse(text) {
        assert_eq!(
            Unit::parse(&u.to_string()).as_ref(),
            Ok(&u),
            "a unit re-spells"
        );
    }
    if let Ok(f) = Formula::parse(text) {
        let u = f.unit().to_string();
        assert_eq!(
            Unit::parse(&u).as_ref(),
            Ok(f.unit()),
            "the formula's unit re-spells"
        );
        f.check_unit(&u).expect("a formula computes its own unit");
        let seed = data
            .iter()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
        let mut budget = 100_000;
        let _ = f.eval_within("r", &Made(seed), &mut budget);
    }
}

/// Node-to-node frames: requests and answers decode without panicking and re-encode exactly.
pub fn fedframe(data: &[u8]) {
    use crate::fedframe::{decode_answer, decode_request, encode_answer, encode_request};
    if let Ok((kind, body)) = decode_request(data) {
        assert_eq!(encode_request(kind, body), data, "a request re-encodes");
    }
    if let Ok((status, body)) = decode_answer(data) {
        assert_eq!(encode_answer(status, body), data, "an answer re-encodes");
    }
}

/// Identifier schemes: nothing panics, and a normal form is its own normal form (the alias
/// key of a binding does not move when the binding is read again).
pub fn scheme(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for t in ["id.oid", "id.gs1", "id.ecode"] {
        if let Ok(n) = crate::scheme::normalise(t, text) {
            assert_eq!(
                crate::scheme::normalise(t, &n).as_ref(),
                Ok(&n),
                "{t}: the normal form is stable"
            );
        }
    }
    if let Some(Ok((t, n))) = crate::scheme::recognise(text) {
        assert_eq!(crate::scheme::normalise(t, &n).as_ref(), Ok(&n));
    }
    // An operator's scheme, as a config would declare one (compiled once).
    use crate::scheme::custom::{Custom, Part};
    static ACME: std::sync::OnceLock<Custom> = std::sync::OnceLock::new();
    let acme = ACME.get_or_init(|| {
        Custom::new(
            "acme",
            vec![Part::new("product", "[0-9]{5}").expect("a valid pattern")],
            vec![
                Part::new("batch", "[A-Z0-9]{1,10}").expect("a valid pattern"),
                Part::new("item", ".+").expect("a valid pattern"),
            ],
        )
        .expect("a valid scheme")
    });
    if let Ok(n) = acme.parse(text) {
        assert_eq!(
            acme.parse(&n).as_ref(),
            Ok(&n),
            "a custom normal form is stable"
        );
    }
}

/// A property check over one input.
pub type Check = fn(&[u8]);

/// Every check by target name, for the corpus replay.
pub const TARGETS: [(&str, Check); 10] = [
    ("message", message),
    ("udp", udp),
    ("value", value),
    ("site", site),
    ("admin", admin),
    ("json", json),
    ("tlog", tlog),
    ("formula", formula),
    ("fedframe", fedframe),
    ("scheme", scheme),
];
