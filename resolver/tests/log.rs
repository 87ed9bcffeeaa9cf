//! The transparency log as a client outside Suyuan sees it, checked with independent
//! implementations of the same formats: `signed_note` (C2SP signed notes and vkeys) for the
//! checkpoint's signature, `tlog_tiles` (a port of Go's tlog: checkpoints, tiles, proofs) for
//! the checkpoint's text, the tiles, the tree hash and the inclusion proofs, and `ct-merkle`
//! for the RFC 6962 inclusion and consistency maths. A node on loopback, real HTTP.

use std::io::{Read, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use suyuan_codec::value::HandleValue;
use suyuan_registry::{CreateMode, Mutation, Registry, Write};
use suyuan_resolver::http::{HttpOptions, serve_http};
use suyuan_resolver::node::{HandleNode, NodeConfig};
use suyuan_resolver::transparency::{KeyRole, Transparency, load_or_create, load_or_create_key};
use suyuan_resolver::witness::{Submit, Witness, WitnessedLog};
use tokio::sync::watch;

/// `GET target` at `addr`, blocking: the status and the body's bytes.
fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + n]);
        b = &b[line_end + 2 + n + 2..];
    }
}

struct Node {
    http: SocketAddr,
    log: Arc<Transparency>,
    registry: Arc<Registry>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn node() -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = load_or_create_key(dir.path(), "example.test/suyuan/88.888", None).unwrap();
    serve(listener, dir, signer, Vec::new(), None).await
}

/// A node on `listener` keeping its store in `dir`, its log signed by `signer` and submitted
/// to `submit`, witnessing with `witness`.
async fn serve(
    listener: tokio::net::TcpListener,
    dir: tempfile::TempDir,
    signer: suyuan_codec::note::NoteSigner,
    submit: Vec<Submit>,
    witness: Option<Witness>,
) -> Node {
    let registry = Arc::new(Registry::open(&dir.path().join("store")).unwrap());
    let log = Transparency::witnessed(registry.clone(), signer, submit).unwrap();
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    let site = suyuan_codec::site::SiteInfo::single_server(
        1,
        "127.0.0.1".parse().unwrap(),
        suyuan_codec::auth::hs_from_rsa_public(&key.to_public_key()).encode(),
        Vec::new(),
    );
    let node = HandleNode::new(
        registry.clone(),
        NodeConfig {
            site,
            key,
            node_admins: Vec::new(),
            challenges: Default::default(),
            sessions: Default::default(),
            cache_entries: 100,
        },
    );
    let (stop, rx) = watch::channel(false);
    let http = listener.local_addr().unwrap();
    tokio::spawn(serve_http(
        listener,
        registry.clone(),
        node,
        HttpOptions {
            log: Some(log.clone()),
            witness: witness.map(Arc::new),
            ..HttpOptions::default()
        },
        rx,
    ));
    Node {
        http,
        log,
        registry,
        _stop: stop,
        _dir: dir,
    }
}

fn write(registry: &Registry, mutation: Mutation) {
    registry
        .apply(Write {
            mutation,
            actor: "300:88.888/ADMIN".into(),
            time: 1_795_509_286,
        })
        .unwrap();
}

/// Reads the tiles of the node's log over HTTP, for `tlog_tiles`.
struct HttpTiles(SocketAddr);

impl tlog_tiles::TileReader for HttpTiles {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        Ok(tiles
            .iter()
            .map(|t| {
                // tlog_tiles writes Go's sumdb paths, `tile/<H>/<L>/<N>`; C2SP tlog-tiles
                // fixes H at 8 and leaves it out.
                let path = t.path().replacen("tile/8/", "tile/", 1);
                let (status, body) = get(self.0, &format!("/log/{path}"));
                assert_eq!(status, 200, "{path}");
                body
            })
            .collect())
    }
    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_implementations_verify_the_checkpoint_tiles_and_proofs() {
    let n = node().await;
    write(
        &n.registry,
        Mutation::Home {
            prefix: "88.888".into(),
            admins: Vec::new(),
        },
    );
    // More than a full tile of leaves, so full and partial tiles are both served.
    for i in 0..300 {
        write(
            &n.registry,
            Mutation::Create {
                handle: format!("88.888/m-{i}"),
                values: vec![HandleValue::new(
                    1,
                    "URL",
                    format!("https://example.org/{i}"),
                )],
                mode: CreateMode::Plain,
            },
        );
    }
    let first = n.log.latest();
    assert_eq!(first.size, 0);
    let published = n.log.refresh().unwrap();
    assert_eq!(published.size, 301);
    // The checkpoint also carries an SM2 line (type 0xff): the independent verifier below
    // must still find the Ed25519 signature among the lines it does not know.
    let sm2 = suyuan_codec::trust::sm2_signing_key(&sm2::SecretKey::random(&mut rand::rngs::OsRng))
        .unwrap();
    n.log.set_sm2(sm2).unwrap();
    assert_eq!(n.log.latest().size, 301);
    let http = n.http;
    let registry = n.registry.clone();
    tokio::task::spawn_blocking(move || {
        // The key and the checkpoint's signature, by signed_note.
        let (status, vkey) = get(http, "/log/key");
        assert_eq!(status, 200);
        let vkey = String::from_utf8(vkey).unwrap();
        let verifier = signed_note::StandardVerifier::new(vkey.trim()).unwrap();
        let (_, note) = get(http, "/log/checkpoint");
        let note = signed_note::Note::from_bytes(&note).unwrap();
        let verifiers = signed_note::VerifierList::new(vec![Box::new(verifier)]);
        let (verified, unverified) = note.verify(&verifiers).unwrap();
        assert_eq!(
            (verified.len(), unverified.len()),
            (1, 1),
            "Ed25519 verified, SM2 left"
        );
        // The checkpoint's text, by tlog_tiles.
        let cp = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
        assert_eq!(
            (cp.origin(), cp.size()),
            ("example.test/suyuan/88.888", 301)
        );

        // The tiles, read and authenticated by tlog_tiles against the checkpoint's root.
        let tiles = HttpTiles(http);
        let reader = tlog_tiles::TileHashReader::new(cp.size(), *cp.hash(), &tiles);
        assert_eq!(
            tlog_tiles::tree_hash(cp.size(), &reader).unwrap(),
            *cp.hash()
        );
        for index in [0u64, 1, 255, 256, 300] {
            let theirs = tlog_tiles::prove_record(cp.size(), index, &reader).unwrap();
            // Our proof answer for the record at that leaf (leaf 0 is the homing, a prefix).
            if index == 0 {
                continue;
            }
            let (status, body) = get(http, &format!("/api/proof/88.888/m-{}", index - 1));
            assert_eq!(status, 200);
            let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(p["index"], index);
            let receipt =
                suyuan_codec::note::Receipt::parse(p["receipt"].as_str().unwrap()).unwrap();
            let ours: Vec<[u8; 32]> = receipt.proof.clone();
            assert_eq!(ours, theirs.iter().map(|h| h.0).collect::<Vec<_>>());
            // The entry, hashed as a leaf, is in the tree: by tlog_tiles and by ct-merkle.
            let entry = B64.decode(p["entry"].as_str().unwrap()).unwrap();
            let leaf = tlog_tiles::record_hash(&entry);
            tlog_tiles::check_record(&theirs, cp.size(), *cp.hash(), index, leaf).unwrap();
            let root = ct_merkle::RootHash::<sha2_11::Sha256>::new(cp.hash().0.into(), cp.size());
            let proof = ct_merkle::InclusionProof::<sha2_11::Sha256>::from_bytes(ours.concat());
            root.verify_inclusion(&entry, index, &proof).unwrap();
            // The salt given opens the value's digest in the entry.
            let e = suyuan_registry::log::Entry::decode(&entry).unwrap();
            let salt = B64.decode(p["salts"]["1"].as_str().unwrap()).unwrap();
            let rec = registry
                .get(&format!("88.888/m-{}", index - 1))
                .unwrap()
                .unwrap();
            assert_eq!(
                suyuan_registry::log::value_digest(&salt, &rec.values[0]),
                e.values.as_ref().unwrap()[0].digest
            );
            let mut changed = rec.values[0].clone();
            changed.data = b"https://example.org/forged".to_vec();
            assert_ne!(
                suyuan_registry::log::value_digest(&salt, &changed),
                e.values.unwrap()[0].digest
            );
        }
        // The entry bundle of the first tile: its entries hash to the leaf tile's hashes.
        let (status, bundle) = get(http, "/log/tile/entries/000");
        assert_eq!(status, 200);
        let (_, leaves) = get(http, "/log/tile/0/000");
        assert_eq!(leaves.len(), 256 * 32);
        let mut rest = &bundle[..];
        for i in 0..256 {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let entry = &rest[2..2 + len];
            assert_eq!(
                tlog_tiles::record_hash(entry).0,
                leaves[i * 32..(i + 1) * 32]
            );
            rest = &rest[2 + len..];
        }
        assert!(rest.is_empty());
        // A partial tile beyond the checkpoint is not served; a bad path is not a tile.
        assert_eq!(get(http, "/log/tile/0/001.p/46").0, 404);
        assert_eq!(get(http, "/log/tile/0/001.p/45").0, 200);
        assert_eq!(get(http, "/log/tile/0/01").0, 404);

        // Consistency from the tree of 100 leaves to the checkpoint, by ct-merkle.
        let (status, body) = get(http, "/log/consistency?from=100&to=301");
        assert_eq!(status, 200);
        let hashes: Vec<Vec<u8>> = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| B64.decode(l).unwrap())
            .collect();
        let old = tlog_tiles::tree_hash(100, &reader).unwrap();
        let theirs = tlog_tiles::prove_tree(301, 100, &reader).unwrap();
        assert_eq!(
            hashes,
            theirs.iter().map(|h| h.0.to_vec()).collect::<Vec<_>>()
        );
        let new_root = ct_merkle::RootHash::<sha2_11::Sha256>::new(cp.hash().0.into(), 301);
        let old_root = ct_merkle::RootHash::<sha2_11::Sha256>::new(old.0.into(), 100);
        let proof = ct_merkle::ConsistencyProof::<sha2_11::Sha256>::try_from_bytes(hashes.concat())
            .unwrap();
        new_root.verify_consistency(&old_root, &proof).unwrap();
        assert_eq!(get(http, "/log/consistency?from=0&to=301").0, 400);
        assert_eq!(get(http, "/log/consistency?from=5&to=999").0, 400);
    })
    .await
    .unwrap();
}

/// `POST target` with `body` at `addr`, blocking: status, content type, body.
fn post(addr: SocketAddr, target: &str, body: &[u8]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: node\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_witness_each_other() {
    let (la, lb) = (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let (addr_a, addr_b) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log_a = load_or_create_key(da.path(), "a.example/suyuan/88.888", None).unwrap();
    let log_b = load_or_create_key(db.path(), "b.example/suyuan/99.9", None).unwrap();
    let wit_a = load_or_create(KeyRole::Witness, da.path(), "a.example/witness", None).unwrap();
    let wit_b = load_or_create(KeyRole::Witness, db.path(), "b.example/witness", None).unwrap();
    let (vk_log_a, vk_log_b) = (log_a.verifier(), log_b.verifier());
    let (vk_wit_a, vk_wit_b) = (wit_a.cosigner(), wit_b.cosigner());
    let witness_a = Witness::new(
        wit_a,
        vec![WitnessedLog {
            origin: vk_log_b.name.clone(),
            key: vk_log_b.clone(),
        }],
        &da.path().join("witness"),
    )
    .unwrap();
    let witness_b = Witness::new(
        wit_b,
        vec![WitnessedLog {
            origin: vk_log_a.name.clone(),
            key: vk_log_a.clone(),
        }],
        &db.path().join("witness"),
    )
    .unwrap();
    let a = serve(
        la,
        da,
        log_a,
        vec![Submit::new(
            &format!("http://{addr_b}/log"),
            vk_wit_b.clone(),
        )],
        Some(witness_a),
    )
    .await;
    let b = serve(
        lb,
        db,
        log_b,
        vec![Submit::new(
            &format!("http://{addr_a}/log"),
            vk_wit_a.clone(),
        )],
        Some(witness_b),
    )
    .await;
    for (n, prefix) in [(&a, "88.888"), (&b, "99.9")] {
        write(
            &n.registry,
            Mutation::Home {
                prefix: prefix.into(),
                admins: Vec::new(),
            },
        );
    }
    let (ra, rb) = (a.registry.clone(), b.registry.clone());
    let (ta, tb) = (a.log.clone(), b.log.clone());
    tokio::task::spawn_blocking(move || {
        for round in 0..3 {
            for (reg, log, prefix) in [(&ra, &ta, "88.888"), (&rb, &tb, "99.9")] {
                write(
                    reg,
                    Mutation::Create {
                        handle: format!("{prefix}/r-{round}"),
                        values: vec![HandleValue::new(1, "URL", "https://example.org/r")],
                        mode: CreateMode::Plain,
                    },
                );
                log.refresh().unwrap();
                log.cosign_latest();
            }
        }
        // Each log's checkpoint carries the other node's cosignature, which verifies.
        for (addr, log_key, witness_key) in [
            (addr_a, &vk_log_a, &vk_wit_b),
            (addr_b, &vk_log_b, &vk_wit_a),
        ] {
            let (_, body) = get(addr, "/log/checkpoint");
            let note = suyuan_codec::note::Note::parse(&String::from_utf8(body).unwrap()).unwrap();
            note.verify(log_key).unwrap();
            note.verify_cosignature(witness_key).unwrap();
            let cp = suyuan_codec::note::Checkpoint::parse(&note.text).unwrap();
            assert_eq!(cp.size, 4);
        }
        // The witness's answers over HTTP: 409 says its size as text/x.tlog.size, an unknown
        // log is 404, a malformed body 400.
        let (_, cp_a) = get(addr_a, "/log/checkpoint");
        let cp_a = String::from_utf8(cp_a).unwrap();
        let (status, ctype, body) = post(
            addr_b,
            "/log/add-checkpoint",
            format!("old 0\n\n{cp_a}").as_bytes(),
        );
        assert_eq!(
            (status, ctype.as_str(), body.as_str()),
            (409, "text/x.tlog.size", "4\n")
        );
        let (_, cp_b) = get(addr_b, "/log/checkpoint");
        let cp_b = String::from_utf8(cp_b).unwrap();
        let (status, _, _) = post(
            addr_b,
            "/log/add-checkpoint",
            format!("old 0\n\n{cp_b}").as_bytes(),
        );
        assert_eq!(status, 404);
        let (status, _, _) = post(addr_b, "/log/add-checkpoint", b"old x\n\n");
        assert_eq!(status, 400);
        // Re-submitting the same checkpoint at its size is cosigned again.
        let (status, _, body) = post(
            addr_b,
            "/log/add-checkpoint",
            format!("old 4\n\n{cp_a}").as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with('\u{2014}'));
    })
    .await
    .unwrap();
}

/// A witness that takes the connection and never answers holds back only its own cosignature:
/// the checkpoint of a write is published without asking it, and asking it ends (its timeout)
/// with the checkpoint published as it was, signed by the log alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_witness_does_not_hold_back_the_checkpoint() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let witness_key = load_or_create(
        KeyRole::Witness,
        tempfile::tempdir().unwrap().path(),
        "silent.example/witness",
        None,
    )
    .unwrap()
    .cosigner();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let signer = load_or_create_key(dir.path(), "example.test/suyuan/88.888", None).unwrap();
    let log_key = signer.verifier();
    let submit = vec![Submit::new(
        &format!("http://{}", silent.local_addr().unwrap()),
        witness_key,
    )];
    let n = serve(listener, dir, signer, submit, None).await;
    let (reg, log, addr) = (n.registry.clone(), n.log.clone(), n.http);
    tokio::task::spawn_blocking(move || {
        write(
            &reg,
            Mutation::Home {
                prefix: "88.888".into(),
                admins: Vec::new(),
            },
        );
        let p = log.refresh().unwrap();
        assert_eq!((p.size, p.witnessed), (1, false));
        let (status, body) = get(addr, "/log/checkpoint");
        assert_eq!(status, 200);
        let note = suyuan_codec::note::Note::parse(&String::from_utf8(body).unwrap()).unwrap();
        note.verify(&log_key).unwrap();
        let cp = suyuan_codec::note::Checkpoint::parse(&note.text).unwrap();
        assert_eq!(cp.size, 1, "published before any witness was asked");

        let asked = log.cosign_latest();
        assert!(asked.witnessed);
        let note = suyuan_codec::note::Note::parse(&asked.note).unwrap();
        assert_eq!(note.signatures.len(), 1, "no cosignature came");
        assert_eq!(log.latest().size, 1);
    })
    .await
    .unwrap();
    drop(silent);
}
