//! The registry's conformance suite, on real stores: every test runs once on the embedded
//! backend the build selects (`embedded::…`: redb; with `--features sled`: sled) and once on
//! PostgreSQL (`postgres::…`) when `SUYUAN_TEST_STORE` names a server
//! (`postgres://USER@HOST:PORT/DB`; each test gets a schema of its own there). Tests that need
//! the embedded layer itself (a counting key-value store, reopening a directory) open it
//! directly and run once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use suyuan_codec::message::rc;
use suyuan_codec::value::{HandleValue, Permissions};
use suyuan_registry::kv::{Kv, Op, Pairs, Table, open_embedded, table_key};
use suyuan_registry::{
    ChangeOp, CreateMode, Direction, Identity, Mutation, Registry, RegistryError, Ticket,
    TraceQuery, Write,
};

const P: &str = "88.888.1";

/// The backend a conformance test runs on (set by the wrappers `conformance!` makes).
#[derive(Clone, Copy)]
enum Backend {
    Embedded,
    Postgres,
}

thread_local! {
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Embedded) };
}

/// The PostgreSQL server the `postgres` runs use; a CI run without one is a failure, not a
/// silent skip.
fn postgres_url() -> Option<String> {
    match std::env::var("SUYUAN_TEST_STORE") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI runs the conformance suite on PostgreSQL too: set SUYUAN_TEST_STORE")
        }
        _ => {
            eprintln!("SUYUAN_TEST_STORE is not set: the PostgreSQL run is skipped");
            None
        }
    }
}

fn run_on(backend: Backend, test: fn()) {
    if matches!(backend, Backend::Postgres) && postgres_url().is_none() {
        return;
    }
    BACKEND.with(|b| b.set(backend));
    test();
}

/// Every conformance test, once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $name() { super::run_on(super::Backend::Embedded, super::$name) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::run_on(super::Backend::Postgres, super::$name) } )*
        }
    };
}

/// A new, empty store of the backend under test.
fn fresh(dir: &std::path::Path) -> Registry {
    match BACKEND.with(|b| b.get()) {
        Backend::Postgres => {
            let url = postgres_url().expect("checked by run_on");
            let name = format!("suite_{}_{}", std::process::id(), rand::random::<u32>());
            // A schema of its own on the server's database, first on the search path.
            let out = std::process::Command::new("psql")
                .args([url.as_str(), "-qXc", &format!("CREATE SCHEMA {name}")])
                .output()
                .expect("psql runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let sep = if url.contains('?') { '&' } else { '?' };
            let db = format!("{url}{sep}options=-csearch_path%3D{name}");
            suyuan_registry::postgres::init_blocking(
                &db,
                suyuan_registry::postgres::InitMode::Create,
            )
            .unwrap();
            let store = suyuan_registry::postgres::PgStore::open(&db, "suite").unwrap();
            Registry::with_store(Arc::new(store))
        }
        Backend::Embedded => Registry::open(dir).unwrap(),
    }
}

fn open() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let reg = fresh(dir.path());
    reg.apply(w(Mutation::Home {
        prefix: P.into(),
        admins: vec![Identity::new(300, "88.888.1/ADMIN")],
    }))
    .unwrap();
    (dir, reg)
}

fn w(mutation: Mutation) -> Write {
    Write {
        mutation,
        actor: "300:88.888.1/ADMIN".into(),
        time: 1_740_000_000,
    }
}

fn create(
    reg: &Registry,
    handle: &str,
    values: Vec<HandleValue>,
) -> Result<Option<u64>, RegistryError> {
    reg.apply(w(Mutation::Create {
        handle: handle.into(),
        values,
        mode: CreateMode::Plain,
    }))
    .map(|a| a.seq)
}

fn v(index: u32, t: &str, data: &str) -> HandleValue {
    HandleValue::new(index, t, data)
}

fn code(r: Result<impl std::fmt::Debug, RegistryError>) -> u32 {
    r.expect_err("expected a refusal").response_code()
}

fn records_resolve_list_and_page() {
    let (_d, reg) = open();
    for i in 0..25 {
        create(
            &reg,
            &format!("{P}/Meter-{i:03}"),
            vec![v(1, "URL", "https://x")],
        )
        .unwrap();
    }
    let r = reg.get("88.888.1/METER-007").unwrap().unwrap();
    assert_eq!(
        r.handle, "88.888.1/Meter-007",
        "lists and reads show the spelling it was created with"
    );
    assert_eq!(
        r.values[0].timestamp, 1_740_000_000,
        "timestamps are set by the server"
    );
    let first = reg.list_handles(P, None, 10).unwrap();
    assert_eq!(first.len(), 10);
    let second = reg
        .list_handles(P, first.last().map(String::as_str), 10)
        .unwrap();
    assert_eq!(second[0], "88.888.1/Meter-010");
    let last = reg
        .list_handles(P, second.last().map(String::as_str), 10)
        .unwrap();
    assert_eq!(last.len(), 5);
    assert_eq!(reg.count_handles(P).unwrap(), 25);
    // Offset pages, as REST numbers them, read from the store as pages.
    assert_eq!(reg.list_page(P, 10, 10).unwrap(), second);
    assert_eq!(reg.list_page(P, 20, 10).unwrap(), last);
    assert_eq!(reg.list_page(P, 0, 3).unwrap(), first[..3].to_vec());
    assert!(reg.list_page(P, 25, 10).unwrap().is_empty());
    assert!(reg.list_page(P, 5000, 10).unwrap().is_empty());
    assert_eq!(
        reg.list_handles("88.888", None, 100).unwrap().len(),
        0,
        "88.888 is another prefix"
    );
    assert!(reg.get("88.888.1/nothing").unwrap().is_none());
}

fn create_modes() {
    let (_d, reg) = open();
    let h = "88.888.1/m-1";
    let vals = vec![v(1, "URL", "https://a"), v(2, "EMAIL", "a@b")];
    assert!(create(&reg, h, vals.clone()).unwrap().is_some());
    assert_eq!(
        code(create(&reg, h, vals.clone())),
        rc::HANDLE_ALREADY_EXISTS
    );
    let seq = reg.last_seq();
    // Overwrite with an equal record: success, nothing written.
    let a = reg
        .apply(w(Mutation::Create {
            handle: h.into(),
            values: vals.clone(),
            mode: CreateMode::Overwrite,
        }))
        .unwrap();
    assert_eq!((a.seq, reg.last_seq()), (None, seq));
    // Register: equal is success without a change; different is RC 101.
    let a = reg
        .apply(w(Mutation::Create {
            handle: "88.888.1/M-1".into(),
            values: vals.clone(),
            mode: CreateMode::Register,
        }))
        .unwrap();
    assert_eq!(a.seq, None);
    let other = vec![v(1, "URL", "https://b")];
    assert_eq!(
        code(reg.apply(w(Mutation::Create {
            handle: h.into(),
            values: other.clone(),
            mode: CreateMode::Register
        }))),
        rc::HANDLE_ALREADY_EXISTS
    );
    // Overwrite with a different record replaces it.
    reg.apply(w(Mutation::Create {
        handle: h.into(),
        values: other,
        mode: CreateMode::Overwrite,
    }))
    .unwrap();
    assert_eq!(reg.get(h).unwrap().unwrap().values.len(), 1);
    assert_eq!(reg.last_seq(), seq + 1);
}

fn reference_validation_rules() {
    let (_d, reg) = open();
    assert_eq!(
        code(create(&reg, "88.888.1/z", vec![v(0, "URL", "x")])),
        rc::INVALID_VALUE
    );
    assert_eq!(
        code(create(
            &reg,
            "88.888.1/z",
            vec![v(1, "URL", "x"), v(1, "EMAIL", "y")]
        )),
        // The reference server answers a repeated index with 201 "Index conflict for 1".
        rc::VALUE_ALREADY_EXISTS
    );
    // The reference server stores any bytes as HS_PUBKEY; we refuse what is not a key.
    assert_eq!(
        code(create(
            &reg,
            "88.888.1/z",
            vec![v(300, "HS_PUBKEY", "notakey")]
        )),
        rc::INVALID_VALUE
    );
    assert_eq!(
        code(create(
            &reg,
            "88.888.1/z",
            vec![HandleValue::new(100, "HS_ADMIN", vec![1, 2])]
        )),
        rc::INVALID_VALUE
    );
    assert_eq!(
        code(create(&reg, "99.1/z", vec![v(1, "URL", "x")])),
        rc::SERVER_NOT_RESP,
        "prefix not homed"
    );
    assert_eq!(
        code(create(&reg, "88.888.1.5/z", vec![v(1, "URL", "x")])),
        rc::SERVER_NOT_RESP,
        "a derived prefix is homed on its own"
    );
    assert_eq!(
        code(create(&reg, "no-slash", vec![v(1, "URL", "x")])),
        rc::INVALID_HANDLE
    );
    assert_eq!(reg.last_seq(), 1, "refusals wrote nothing");
}

fn resolution_filters() {
    let (_d, reg) = open();
    create(
        &reg,
        "88.888.1/f",
        vec![
            v(1, "URL", "a"),
            v(2, "URL.mirror", "b"),
            v(3, "EMAIL", "c"),
            v(4, "DESC", "d"),
        ],
    )
    .unwrap();
    let got = |i: &[u32], t: &[&str]| -> Vec<u32> {
        let t: Vec<String> = t.iter().map(|s| s.to_string()).collect();
        reg.resolve("88.888.1/F", i, &t)
            .unwrap()
            .unwrap()
            .iter()
            .map(|v| v.index)
            .collect()
    };
    assert_eq!(got(&[], &[]), vec![1, 2, 3, 4]);
    assert_eq!(
        got(&[], &["url"]),
        vec![1],
        "types match ignoring ASCII case, exactly"
    );
    assert_eq!(
        got(&[], &["URL."]),
        vec![2],
        "a type ending in '.' matches its subtypes"
    );
    assert_eq!(
        got(&[4], &["EMAIL"]),
        vec![3, 4],
        "indexes and types are OR-ed"
    );
    assert_eq!(got(&[9], &[]), Vec::<u32>::new());
    assert!(reg.resolve("88.888.1/none", &[], &[]).unwrap().is_none());
}

fn value_operations() {
    let (_d, reg) = open();
    let h = "88.888.1/v";
    create(&reg, h, vec![v(1, "URL", "https://a")]).unwrap();
    let add = |vals, overwrite| {
        reg.apply(w(Mutation::AddValues {
            handle: h.into(),
            values: vals,
            overwrite,
        }))
    };
    add(vec![v(2, "EMAIL", "a@b")], false).unwrap();
    assert_eq!(
        code(add(vec![v(2, "EMAIL", "c@d")], false)),
        rc::VALUE_ALREADY_EXISTS
    );
    add(vec![v(2, "EMAIL", "c@d")], true).unwrap();
    assert_eq!(
        code(reg.apply(w(Mutation::ModifyValues {
            handle: h.into(),
            values: vec![v(9, "URL", "x")]
        }))),
        rc::VALUES_NOT_FOUND
    );
    reg.apply(w(Mutation::ModifyValues {
        handle: h.into(),
        values: vec![v(1, "URL", "https://z")],
    }))
    .unwrap();
    // An index that is not there refuses the whole removal (the reference's RC 200).
    assert_eq!(
        code(reg.apply(w(Mutation::RemoveValues {
            handle: h.into(),
            indexes: vec![2, 77],
        }))),
        rc::VALUES_NOT_FOUND
    );
    assert_eq!(reg.get(h).unwrap().unwrap().values.len(), 2);
    reg.apply(w(Mutation::RemoveValues {
        handle: h.into(),
        indexes: vec![2],
    }))
    .unwrap();
    let r = reg.get(h).unwrap().unwrap();
    assert_eq!(r.values.len(), 1);
    assert_eq!(r.values[0].data, b"https://z");
    assert_eq!(
        code(reg.apply(w(Mutation::AddValues {
            handle: "88.888.1/none".into(),
            values: vec![v(1, "URL", "x")],
            overwrite: false
        }))),
        rc::HANDLE_NOT_FOUND
    );
}

/// What a Handle answer to a resolution of every value of `h` takes, envelope excluded,
/// encoded by the codec as the node would send it (SHA-256 request digest, no credential).
fn answer_len(h: &str, values: Vec<HandleValue>) -> usize {
    use suyuan_codec::message::{Body, Message, opcode};
    let req = Message::request(
        opcode::RESOLUTION,
        0,
        1,
        0,
        Body::Resolution {
            handle: h.into(),
            indexes: vec![],
            types: vec![],
        },
    );
    let mut answer = Message::request(
        opcode::RESOLUTION,
        0,
        1,
        0,
        Body::ResolutionResponse {
            handle: h.into(),
            values,
        },
    );
    answer.request_digest = Some(req.digest_as_request((2, 11)));
    answer.encode().len() - suyuan_codec::message::ENVELOPE_LEN
}

fn no_write_builds_a_record_whose_answer_outgrows_a_tcp_message() {
    use suyuan_codec::wire::MAX_MESSAGE_LENGTH;
    use suyuan_registry::store::{ANSWER_RESERVE, resolution_answer_len};
    let (_d, reg) = open();
    let big = |index: u32, n: usize| v(index, "DESC", &"x".repeat(n));
    // The measure is the codec's own encoding of the answer (with its SHA-256 digest), whose
    // 4-byte empty credential gives way to the room kept for a signature.
    let vals = vec![big(1, 1000), v(2, "URL", "https://a")];
    let exact = answer_len("88.888.1/w", vals.clone());
    assert_eq!(
        resolution_answer_len("88.888.1/w", &vals),
        exact - 4 + (ANSWER_RESERVE - 33)
    );
    // Each value alone is well under the per-value cap; together they are not.
    let refused = create(&reg, "88.888.1/w", vec![big(1, 140_000), big(2, 140_000)]);
    let e = refused.expect_err("two 140,000-byte values cannot be answered in one message");
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    let msg = e.to_string();
    assert!(
        msg.contains("262144") && msg.contains("88.888.1/w"),
        "{msg}"
    );
    assert!(reg.get("88.888.1/w").unwrap().is_none());
    // Adds and modifications are measured on the record they make.
    create(&reg, "88.888.1/w", vec![big(1, 140_000)]).unwrap();
    let add = reg.apply(w(Mutation::AddValues {
        handle: "88.888.1/w".into(),
        values: vec![big(2, 140_000)],
        overwrite: false,
    }));
    assert_eq!(code(add), rc::INVALID_VALUE);
    reg.apply(w(Mutation::AddValues {
        handle: "88.888.1/w".into(),
        values: vec![big(2, 100_000)],
        overwrite: false,
    }))
    .unwrap();
    let modify = reg.apply(w(Mutation::ModifyValues {
        handle: "88.888.1/w".into(),
        values: vec![big(2, 140_000)],
    }));
    assert_eq!(code(modify), rc::INVALID_VALUE);
    assert_eq!(
        reg.get("88.888.1/w").unwrap().unwrap().values[1].data.len(),
        100_000
    );
    // Right at the cap is still taken: the largest DESC that fits.
    let base = resolution_answer_len("88.888.1/edge", &[big(1, 0)]);
    let fits = MAX_MESSAGE_LENGTH - base;
    assert_eq!(
        code(create(&reg, "88.888.1/edge", vec![big(1, fits + 1)])),
        rc::INVALID_VALUE
    );
    create(&reg, "88.888.1/edge", vec![big(1, fits)]).unwrap();
    assert!(answer_len("88.888.1/edge", vec![big(1, fits)]) <= MAX_MESSAGE_LENGTH);
}

fn change_log_is_gap_free_with_actors_and_tombstones() {
    let (_d, reg) = open();
    create(
        &reg,
        "88.888.1/a",
        vec![v(1, "URL", "x"), v(301, "HS_SECKEY", "secretpw")],
    )
    .unwrap();
    create(&reg, "88.888.1/b", vec![v(1, "URL", "y")]).unwrap();
    let _ = create(&reg, "88.888.1/b", vec![v(1, "URL", "y")]);
    reg.apply(w(Mutation::Delete {
        handle: "88.888.1/A".into(),
    }))
    .unwrap();
    let changes = reg.changes_since(1, 100).unwrap();
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(
        changes.iter().map(|c| c.op).collect::<Vec<_>>(),
        vec![
            ChangeOp::Home,
            ChangeOp::Create,
            ChangeOp::Create,
            ChangeOp::Delete
        ]
    );
    assert!(changes.iter().all(|c| c.actor == "300:88.888.1/ADMIN"));
    assert_eq!(reg.changes_since(3, 1).unwrap()[0].handle, "88.888.1/b");
    // Exports never carry the secret.
    let exported = changes[1].for_export();
    let sec = &exported.values.as_ref().unwrap()[1];
    assert!(sec.data.starts_with(b"sha256:"));
    assert!(
        !exported
            .values
            .unwrap()
            .iter()
            .any(|v| v.data == b"secretpw")
    );
    let t = reg.tombstone("88.888.1/a").unwrap().unwrap();
    assert_eq!((t.seq, t.handle.as_str()), (4, "88.888.1/a"));
    // Re-creating clears the tombstone.
    create(&reg, "88.888.1/a", vec![v(1, "URL", "x")]).unwrap();
    assert!(reg.tombstone("88.888.1/a").unwrap().is_none());
}

/// A store whose next write, once armed, waits inside the commit until the test lets it go, so
/// the test knows that the writer is busy while more writes queue behind it.
struct HeldKv {
    inner: Box<dyn Kv>,
    armed: Arc<AtomicBool>,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl Kv for HeldKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
        self.inner.get(key)
    }
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, RegistryError> {
        self.inner.scan(start, end, limit)
    }
    fn write(&self, ops: &[Op]) -> Result<(), RegistryError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.lock().unwrap().send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
        self.inner.write(ops)
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[test]
fn concurrent_writers_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let kv = HeldKv {
        inner: open_embedded(dir.path()).unwrap(),
        armed: armed.clone(),
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    };
    let reg = Arc::new(Registry::with_kv(Box::new(kv)).unwrap());
    reg.apply(w(Mutation::Home {
        prefix: P.into(),
        admins: vec![Identity::new(300, "88.888.1/ADMIN")],
    }))
    .unwrap();
    let put = |h: String| {
        w(Mutation::Create {
            handle: h,
            values: vec![v(1, "URL", "x")],
            mode: CreateMode::Plain,
        })
    };
    // Hold the writer inside the commit of one write...
    armed.store(true, Ordering::SeqCst);
    let first = reg.submit(put("88.888.1/first".into()));
    entered.recv().unwrap();
    let before = reg.commits();
    // ...while eight threads queue 1600 writes behind it.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| reg.submit(put(format!("88.888.1/t{t}-{i}"))))
                    .collect::<Vec<Ticket>>()
            })
        })
        .collect();
    let tickets: Vec<Ticket> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    release.send(()).unwrap();
    assert_eq!(first.wait().unwrap().seq, Some(2));
    let mut seqs: Vec<u64> = tickets
        .into_iter()
        .map(|t| t.wait().unwrap().seq.unwrap())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (3..=1602).collect::<Vec<u64>>(),
        "every write acknowledged once, gap-free"
    );
    assert_eq!(
        reg.commits() - before,
        2,
        "the held commit, then one group commit for the 1600 writes queued behind it"
    );
    assert_eq!(reg.count_handles(P).unwrap(), 1601);
}

fn a_refused_write_does_not_abort_its_group() {
    let (_d, reg) = open();
    let writes = vec![
        w(Mutation::Create {
            handle: "88.888.1/g1".into(),
            values: vec![v(1, "URL", "x")],
            mode: CreateMode::Plain,
        }),
        w(Mutation::Create {
            handle: "88.888.1/g1".into(),
            values: vec![v(1, "URL", "x")],
            mode: CreateMode::Plain,
        }),
        w(Mutation::Create {
            handle: "88.888.1/g2".into(),
            values: vec![v(0, "URL", "x")],
            mode: CreateMode::Plain,
        }),
        w(Mutation::Create {
            handle: "88.888.1/g3".into(),
            values: vec![v(1, "URL", "x")],
            mode: CreateMode::Plain,
        }),
    ];
    let r = reg.apply_batch(writes);
    assert!(r[0].is_ok() && r[3].is_ok());
    assert_eq!(
        r[1].as_ref().unwrap_err().response_code(),
        rc::HANDLE_ALREADY_EXISTS,
        "sees the earlier write of its own group"
    );
    assert_eq!(
        r[2].as_ref().unwrap_err().response_code(),
        rc::INVALID_VALUE
    );
    assert!(reg.get("88.888.1/g3").unwrap().is_some());
    assert!(reg.get("88.888.1/g2").unwrap().is_none());
}

const READING_TPL: &str = r#"{"kind":"reading","attributes":[
    {"name":"value","index":2000,"type":"mrv.value","required":true},
    {"name":"meter","index":2001,"type":"mrv.measuredBy","required":true,"reference":{"kinds":["meter"]}},
    {"name":"gateway","index":2002,"type":"site.via","reference":{}}]}"#;

fn templates_validate_every_write() {
    let (_d, reg) = open();
    create(
        &reg,
        "88.888.1/tpl/reading",
        vec![v(1, "mrv.template", READING_TPL)],
    )
    .unwrap();
    create(&reg, "88.888.1/meter-1", vec![v(1, "mrv.kind", "meter")]).unwrap();
    create(&reg, "88.888.1/boiler-1", vec![v(1, "mrv.kind", "boiler")]).unwrap();
    let tpl = || v(1001, "mrv.templateRef", "88.888.1/tpl/reading");
    let seq = reg.last_seq();
    let e = create(
        &reg,
        "88.888.1/r-1",
        vec![tpl(), v(2001, "mrv.measuredBy", "88.888.1/meter-1")],
    )
    .unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    assert!(e.to_string().contains("attribute value"), "{e}");
    let e = create(
        &reg,
        "88.888.1/r-1",
        vec![
            tpl(),
            v(2000, "mrv.value", "1"),
            v(2001, "mrv.measuredBy", "88.888.1/boiler-1"),
        ],
    )
    .unwrap_err();
    assert!(e.to_string().contains("kind boiler"), "{e}");
    let e = create(
        &reg,
        "88.888.1/r-1",
        vec![
            v(1001, "mrv.templateRef", "88.888.1/tpl/none"),
            v(2000, "mrv.value", "1"),
        ],
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert_eq!(reg.last_seq(), seq, "invalid writes changed nothing");
    create(
        &reg,
        "88.888.1/r-1",
        vec![
            tpl(),
            v(2000, "mrv.value", "1"),
            v(2001, "mrv.measuredBy", "88.888.1/meter-1"),
            v(2002, "site.via", "88.888.1/gw-1"),
        ],
    )
    .unwrap();
    // The template's reference attribute counts as a link.
    let (down, _) = reg.backlinks("88.888.1/gw-1", None, 10).unwrap();
    assert_eq!(
        down,
        vec![("site.via".to_string(), "88.888.1/R-1".to_string())]
    );
    // Removing a required attribute is refused too.
    let e = reg
        .apply(w(Mutation::RemoveValues {
            handle: "88.888.1/r-1".into(),
            indexes: vec![2000],
        }))
        .unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
}

fn a_type_decides_what_a_value_means_not_its_index() {
    let (_d, reg) = open();
    create(
        &reg,
        "88.888.1/tpl/reading",
        vec![v(1, "mrv.template", READING_TPL)],
    )
    .unwrap();
    create(&reg, "88.888.1/meter-1", vec![v(1, "mrv.kind", "meter")]).unwrap();
    // Index 1001 has no meaning of its own: existing Handle data keeps whatever it put there.
    // The reference server answers a REST PUT of a URL at index 1001 with 201 Created.
    create(
        &reg,
        "88.888.1/legacy",
        vec![v(1001, "URL", "https://example.org/landing")],
    )
    .unwrap();
    assert_eq!(
        reg.resolve("88.888.1/legacy", &[1001], &[])
            .unwrap()
            .unwrap()[0]
            .data,
        b"https://example.org/landing"
    );
    // A template reference is validated wherever it sits.
    let at7 = || v(7, "mrv.templateRef", "88.888.1/tpl/reading");
    let e = create(
        &reg,
        "88.888.1/r-7",
        vec![at7(), v(2001, "mrv.measuredBy", "88.888.1/meter-1")],
    )
    .unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    assert!(e.to_string().contains("attribute value"), "{e}");
    let e = create(
        &reg,
        "88.888.1/r-7",
        vec![
            v(7, "mrv.templateRef", "88.888.1/tpl/none"),
            v(2000, "mrv.value", "1"),
        ],
    )
    .unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    assert!(
        e.to_string()
            .contains("template 88.888.1/tpl/none (mrv.templateRef at index 7) does not exist"),
        "{e}"
    );
    create(
        &reg,
        "88.888.1/r-7",
        vec![
            at7(),
            v(2000, "mrv.value", "1"),
            v(2001, "mrv.measuredBy", "88.888.1/meter-1"),
            v(2002, "site.via", "88.888.1/gw-7"),
        ],
    )
    .unwrap();
    // The template's reference attribute is a link because the template applied.
    assert_eq!(reg.backlinks("88.888.1/gw-7", None, 10).unwrap().0.len(), 1);
}

fn unknown_vocabulary_types_are_refused_unless_a_template_declares_them() {
    let (_d, reg) = open();
    // A typo of a relation would be stored as a value that links nothing: refused, naming
    // the relations that exist. (The reference server, which knows no vocabulary, stores it:
    // 201 Created. Refusing is deliberate: a provenance chain must not break silently.)
    let seq = reg.last_seq();
    let e = create(
        &reg,
        "88.888.1/fig",
        vec![v(2001, "prov.wasDerivedFrm", "88.888.1/d-1")],
    )
    .unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    let m = e.to_string();
    assert!(
        m.contains("value 2001 has type prov.wasDerivedFrm")
            && m.contains("known relations: prov.wasDerivedFrom, prov.wasGeneratedBy")
            && m.contains("mrv.operatedOn")
            && m.contains("attribute types: mrv.kind"),
        "{m}"
    );
    // Other spellings of the namespaces too, and on every write path.
    assert_eq!(
        code(create(
            &reg,
            "88.888.1/fig",
            vec![v(1, "PROV.wasDerivedFrom", "88.888.1/d-1")]
        )),
        rc::INVALID_VALUE
    );
    create(&reg, "88.888.1/fig", vec![v(1, "URL", "x")]).unwrap();
    assert_eq!(
        code(reg.apply(w(Mutation::AddValues {
            handle: "88.888.1/fig".into(),
            values: vec![v(2, "mrv.unti", "t")],
            overwrite: false,
        }))),
        rc::INVALID_VALUE
    );
    assert_eq!(reg.last_seq(), seq + 1, "only the valid write was stored");
    // Every attribute type and relation of the vocabulary is accepted, and types outside its
    // namespaces are not its business.
    let mut values: Vec<HandleValue> = [
        "mrv.kind",
        "mrv.time",
        "mrv.period",
        "mrv.value",
        "mrv.unit",
        "mrv.formula",
        "mrv.tolerance",
        "mrv.template",
        "site.via",
        "DESC",
    ]
    .iter()
    .enumerate()
    // A formula and a tolerance are checked when written: these agree with the unit `x`.
    .map(|(i, t)| {
        let data = match *t {
            "mrv.formula" => "2 [x]",
            "mrv.tolerance" => "0.1",
            _ => "x",
        };
        v(10 + i as u32, t, data)
    })
    .collect();
    values.extend(
        suyuan_registry::links::RELATIONS
            .iter()
            .enumerate()
            .map(|(i, t)| v(100 + i as u32, t, "88.888.1/src")),
    );
    create(&reg, "88.888.1/all", values).unwrap();
    // A template may declare types of its own in the namespaces, as attributes or references.
    create(
        &reg,
        "88.888.1/tpl/ratio",
        vec![v(
            1,
            "mrv.template",
            r#"{"kind":"ratio","attributes":[
                {"name":"ratio","index":2000,"type":"mrv.ratio"},
                {"name":"feed","index":2001,"type":"prov.fedBy","reference":{}}]}"#,
        )],
    )
    .unwrap();
    let declared = || {
        vec![
            v(2000, "mrv.ratio", "0.5"),
            v(2001, "prov.fedBy", "88.888.1/src"),
        ]
    };
    assert_eq!(
        code(create(&reg, "88.888.1/ratio", declared())),
        rc::INVALID_VALUE,
        "without the template they are typos"
    );
    let mut with = declared();
    with.push(v(1001, "mrv.templateRef", "88.888.1/tpl/ratio"));
    create(&reg, "88.888.1/ratio", with).unwrap();
}

fn reverse_index_follows_every_write() {
    let (_d, reg) = open();
    create(
        &reg,
        "88.888.1/r",
        vec![v(2001, "mrv.measuredBy", "88.888.1/meter-1")],
    )
    .unwrap();
    assert_eq!(
        reg.backlinks("88.888.1/METER-1", None, 10).unwrap().0.len(),
        1
    );
    reg.apply(w(Mutation::ModifyValues {
        handle: "88.888.1/r".into(),
        values: vec![v(2001, "mrv.measuredBy", "88.888.1/meter-2")],
    }))
    .unwrap();
    assert_eq!(
        reg.backlinks("88.888.1/meter-1", None, 10).unwrap().0.len(),
        0
    );
    assert_eq!(
        reg.backlinks("88.888.1/meter-2", None, 10).unwrap().0.len(),
        1
    );
    reg.apply(w(Mutation::Delete {
        handle: "88.888.1/r".into(),
    }))
    .unwrap();
    assert_eq!(
        reg.backlinks("88.888.1/meter-2", None, 10).unwrap().0.len(),
        0
    );
}

fn aliases_bind_one_handle() {
    let (_d, reg) = open();
    create(
        &reg,
        "88.888.1/prod-1",
        vec![
            v(10, "id.oid", "1.2.156.3000.1.1"),
            v(11, "id.gs1", "/01/09521234543213/21/7"),
        ],
    )
    .unwrap();
    assert_eq!(
        reg.alias("1.2.156.3000.1.1").unwrap().as_deref(),
        Some("88.888.1/prod-1")
    );
    assert_eq!(
        reg.alias("/01/09521234543213/21/7/").unwrap().as_deref(),
        Some("88.888.1/prod-1")
    );
    let e = create(
        &reg,
        "88.888.1/prod-2",
        vec![v(10, "id.oid", "1.2.156.3000.1.1")],
    )
    .unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    assert!(
        e.to_string().contains("88.888.1/PROD-1"),
        "names the other handle: {e}"
    );
    reg.apply(w(Mutation::Delete {
        handle: "88.888.1/prod-1".into(),
    }))
    .unwrap();
    assert!(reg.alias("1.2.156.3000.1.1").unwrap().is_none());
    create(
        &reg,
        "88.888.1/prod-2",
        vec![v(10, "id.oid", "1.2.156.3000.1.1")],
    )
    .unwrap();
    // Bindings are read by their scheme and stored in its normal form: an element string, a
    // GTIN-13 in a Digital Link URI, an OID as a URN; any spelling finds the record.
    create(
        &reg,
        "88.888.1/prod-3",
        vec![
            v(10, "id.gs1", "(01)09521234543213(10)LOT-9(21)42"),
            v(11, "id.oid", "urn:oid:1.2.156.3000.1.2"),
        ],
    )
    .unwrap();
    let rec = reg.get("88.888.1/prod-3").unwrap().unwrap();
    let data = |i: u32| {
        let v = rec.values.iter().find(|v| v.index == i).unwrap();
        String::from_utf8(v.data.clone()).unwrap()
    };
    assert_eq!(data(10), "/01/09521234543213/10/LOT-9/21/42");
    assert_eq!(data(11), "1.2.156.3000.1.2");
    for spelling in [
        "https://id.example.com/01/9521234543213/10/LOT-9/21/42?17=261231",
        "(01)09521234543213(10)LOT-9(21)42",
        "/01/09521234543213/10/LOT-9/21/42",
    ] {
        assert_eq!(
            reg.alias(spelling).unwrap().as_deref(),
            Some("88.888.1/prod-3"),
            "{spelling}"
        );
    }
    assert_eq!(
        reg.alias("urn:oid:1.2.156.3000.1.2").unwrap().as_deref(),
        Some("88.888.1/prod-3")
    );
    // A wrong check digit is refused, naming the right one; so is a malformed OID.
    let e = create(
        &reg,
        "88.888.1/prod-4",
        vec![v(10, "id.gs1", "/01/09521234543214")],
    )
    .unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    assert!(
        e.to_string()
            .contains("the check digit is 4, it should be 3"),
        "{e}"
    );
    let e = create(&reg, "88.888.1/prod-4", vec![v(10, "id.oid", "1.2.0156")]).unwrap_err();
    assert!(e.to_string().contains("leading zero"), "{e}");
}

/// report -> figure(2025-03) -> reading(2025-03-02) -> meter; figure(2025-04) too; a remote
/// factor; a deleted lab report; a cycle.
fn chain(reg: &Registry) {
    create(reg, "88.888.1/meter", vec![v(1, "mrv.kind", "meter")]).unwrap();
    create(
        reg,
        "88.888.1/reading",
        vec![
            v(1, "mrv.kind", "reading"),
            v(2, "mrv.time", "2025-03-02T08:00:00Z"),
            v(2001, "mrv.measuredBy", "88.888.1/meter"),
        ],
    )
    .unwrap();
    create(reg, "88.888.1/lab", vec![v(1, "mrv.kind", "lab-report")]).unwrap();
    create(
        reg,
        "88.888.1/fig-03",
        vec![
            v(1, "mrv.kind", "figure"),
            v(2, "mrv.period", "2025-03"),
            v(2001, "prov.wasDerivedFrom", "88.888.1/reading"),
            v(2002, "mrv.usesFactor", "88.999.7/factor-2025"),
            v(2003, "prov.wasDerivedFrom", "88.888.1/lab"),
        ],
    )
    .unwrap();
    create(
        reg,
        "88.888.1/fig-04",
        vec![
            v(1, "mrv.kind", "figure"),
            v(2, "mrv.period", "2025-04"),
            v(2001, "prov.wasDerivedFrom", "88.888.1/meter"),
        ],
    )
    .unwrap();
    create(
        reg,
        "88.888.1/report",
        vec![
            v(1, "mrv.kind", "annual-report"),
            v(2, "mrv.period", "2025"),
            v(2001, "mrv.reports", "88.888.1/fig-03"),
            v(2002, "mrv.reports", "88.888.1/fig-04"),
            v(2003, "prov.wasDerivedFrom", "88.888.1/report"),
        ],
    )
    .unwrap();
    reg.apply(w(Mutation::Delete {
        handle: "88.888.1/lab".into(),
    }))
    .unwrap();
}

fn trace_up_and_down() {
    let (_d, reg) = open();
    chain(&reg);
    let all = |_: &str, _: &HandleValue| true;
    let up = reg
        .trace(&TraceQuery::new("88.888.1/report", Direction::Up), &all)
        .unwrap();
    let handles: Vec<&str> = up.nodes.iter().map(|n| n.handle.as_str()).collect();
    assert_eq!(
        handles,
        vec![
            "88.888.1/report",
            "88.888.1/fig-03",
            "88.888.1/fig-04",
            "88.888.1/reading",
            "88.888.1/meter"
        ]
    );
    assert_eq!(up.nodes[0].kind.as_deref(), Some("annual-report"));
    assert!(up.edges.iter().any(|e| e.from == "88.888.1/reading"
        && e.to == "88.888.1/meter"
        && e.rel == "mrv.measuredBy"));
    assert!(
        up.edges
            .iter()
            .any(|e| e.from == "88.888.1/report" && e.to == "88.888.1/report"),
        "the self-cycle is an edge, not a loop"
    );
    assert_eq!(up.remote.len(), 1);
    assert_eq!(up.remote[0].prefix, "88.999.7");
    assert_eq!(up.dangling.len(), 1);
    assert_eq!(up.dangling[0].to, "88.888.1/lab");
    assert!(up.dangling[0].tombstone.is_some());
    assert!(!up.truncated);

    let down = reg
        .trace(&TraceQuery::new("88.888.1/meter", Direction::Down), &all)
        .unwrap();
    assert!(
        down.nodes.iter().any(|n| n.handle == "88.888.1/report"),
        "the meter reaches the report"
    );
    // Edges keep the link's direction, dependent -> source.
    assert!(
        down.edges
            .iter()
            .any(|e| e.from == "88.888.1/reading" && e.to == "88.888.1/meter")
    );

    // Depth, relation filter, window, limit.
    let mut q = TraceQuery::new("88.888.1/report", Direction::Up);
    q.depth = 1;
    assert_eq!(reg.trace(&q, &all).unwrap().nodes.len(), 3);
    q.depth = 16;
    q.rels = vec!["mrv.reports".into()];
    assert_eq!(reg.trace(&q, &all).unwrap().nodes.len(), 3);
    let q = TraceQuery::new("88.888.1/report", Direction::Up)
        .with_window(Some("2025-03"), Some("2025-03"))
        .unwrap();
    let t = reg.trace(&q, &all).unwrap();
    assert!(
        t.nodes.iter().all(|n| n.handle != "88.888.1/fig-04"),
        "April is outside March"
    );
    assert!(t.nodes.iter().any(|n| n.handle == "88.888.1/meter"));
    let mut q = TraceQuery::new("88.888.1/report", Direction::Up);
    q.limit = 2;
    let t = reg.trace(&q, &all).unwrap();
    assert!(t.truncated);
    assert_eq!(t.nodes.len(), 2);
    // Values the caller may not read are not shown.
    let public = |_: &str, v: &HandleValue| v.permissions.public_read();
    reg.apply(w(Mutation::AddValues {
        handle: "88.888.1/meter".into(),
        values: vec![HandleValue {
            permissions: Permissions(0x0C),
            ..v(9, "DESC", "secret note")
        }],
        overwrite: false,
    }))
    .unwrap();
    let t = reg
        .trace(&TraceQuery::new("88.888.1/meter", Direction::Up), &public)
        .unwrap();
    assert_eq!(t.nodes[0].values.len(), 1);
    // The answer has the JSON shape the trace API serves.
    let j = serde_json::to_value(&up).unwrap();
    for k in [
        "root",
        "direction",
        "depth",
        "nodes",
        "edges",
        "truncated",
        "remote",
        "dangling",
    ] {
        assert!(j.get(k).is_some(), "{k}");
    }
    assert_eq!(j["direction"], "up");
}

fn large_fan_out_is_paged() {
    let (_d, reg) = open();
    create(&reg, "88.888.1/busy-meter", vec![v(1, "mrv.kind", "meter")]).unwrap();
    let writes = (0..5000)
        .map(|i| {
            w(Mutation::Create {
                handle: format!("88.888.1/rd-{i:05}"),
                values: vec![v(2001, "mrv.measuredBy", "88.888.1/busy-meter")],
                mode: CreateMode::Plain,
            })
        })
        .collect();
    assert!(reg.apply_batch(writes).iter().all(Result::is_ok));
    let mut q = TraceQuery::new("88.888.1/busy-meter", Direction::Down);
    q.limit = 3000;
    let t = reg.trace(&q, &|_, _| true).unwrap();
    assert!(t.truncated);
    assert_eq!(t.nodes.len(), 3000);
    q.limit = 10_000;
    let t = reg.trace(&q, &|_, _| true).unwrap();
    assert_eq!(t.nodes.len(), 5001);
    assert!(!t.truncated);
}

fn prefixes_home_and_unhome() {
    let (_d, reg) = open();
    let p = reg.prefix("88.888.1").unwrap().unwrap();
    assert_eq!(p.admins, vec![Identity::new(300, "88.888.1/ADMIN")]);
    // Homing again with the same admins writes nothing.
    assert_eq!(
        reg.apply(w(Mutation::Home {
            prefix: P.into(),
            admins: p.admins.clone()
        }))
        .unwrap()
        .seq,
        None
    );
    reg.apply(w(Mutation::Home {
        prefix: "88.888.2".into(),
        admins: vec![],
    }))
    .unwrap();
    assert_eq!(reg.prefixes().unwrap().len(), 2);
    reg.apply(w(Mutation::Unhome {
        prefix: "88.888.2".into(),
    }))
    .unwrap();
    // A second unhome succeeds and writes nothing, as the reference server answers it.
    let seq = reg.last_seq();
    let again = reg
        .apply(w(Mutation::Unhome {
            prefix: "88.888.2".into(),
        }))
        .unwrap();
    assert_eq!(again.seq, None);
    assert_eq!(reg.last_seq(), seq);
    assert!(!reg.is_homed("88.888.2").unwrap());
    assert_eq!(
        code(reg.apply(w(Mutation::Home {
            prefix: "a/b".into(),
            admins: vec![]
        }))),
        rc::INVALID_HANDLE
    );
}

#[test]
fn reopening_keeps_everything_and_refuses_newer_stores() {
    let dir = tempfile::tempdir().unwrap();
    {
        let reg = Registry::open(dir.path()).unwrap();
        reg.apply(w(Mutation::Home {
            prefix: P.into(),
            admins: vec![],
        }))
        .unwrap();
        create(&reg, "88.888.1/kept", vec![v(1, "URL", "x")]).unwrap();
    }
    {
        let reg = Registry::open(dir.path()).unwrap();
        assert!(reg.get("88.888.1/kept").unwrap().is_some());
        assert_eq!(reg.last_seq(), 2);
        create(&reg, "88.888.1/next", vec![v(1, "URL", "x")]).unwrap();
        assert_eq!(reg.last_seq(), 3, "the sequence continues without a gap");
    }
    {
        let kv = suyuan_registry::kv::open_embedded(dir.path()).unwrap();
        kv.write(&[Op::Put(
            table_key(Table::Meta, b"schema"),
            99u32.to_be_bytes().to_vec(),
        )])
        .unwrap();
    }
    let e = Registry::open(dir.path()).unwrap_err();
    assert!(
        matches!(e, RegistryError::SchemaTooNew { found: 99, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade"), "{e}");
}

#[test]
fn a_store_with_the_log_one_key_a_leaf_is_moved_into_chunks_when_opened() {
    use suyuan_codec::tlog;
    let dir = tempfile::tempdir().unwrap();
    let (size, root, entries) = {
        let reg = Registry::open(dir.path()).unwrap();
        reg.apply(w(Mutation::Home {
            prefix: P.into(),
            admins: vec![],
        }))
        .unwrap();
        for i in 0..75 {
            create(&reg, &format!("{P}/old-{i}"), vec![v(1, "URL", "x")]).unwrap();
        }
        let size = reg.log_size().unwrap();
        let entries: Vec<Vec<u8>> = (0..size)
            .map(|i| reg.log_entry(i).unwrap().unwrap())
            .collect();
        (size, reg.log_root(size).unwrap(), entries)
    };
    // Rewrite the chunks as the earlier layout kept the leaves: one key a leaf, its index
    // after the table byte, its change's seq and the hashes its append wrote.
    {
        let kv = suyuan_registry::kv::open_embedded(dir.path()).unwrap();
        let start = table_key(Table::LogChunks, b"");
        let chunks = kv
            .scan(&start, &suyuan_registry::kv::prefix_end(&start), 1000)
            .unwrap();
        assert_eq!(chunks.len(), 3, "76 leaves in chunks of 32");
        let mut ops = Vec::new();
        let mut index = 0u64;
        for (k, c) in chunks {
            let mut rest = c.as_slice();
            while !rest.is_empty() {
                let len = 8 + 32 * (1 + index.trailing_ones() as usize);
                let (leaf, tail) = rest.split_at(len);
                ops.push(Op::Put(
                    table_key(Table::LogLeaves, &index.to_be_bytes()),
                    leaf.to_vec(),
                ));
                rest = tail;
                index += 1;
            }
            ops.push(Op::Delete(k));
        }
        assert_eq!(index, size);
        kv.write(&ops).unwrap();
    }
    let reg = Registry::open(dir.path()).unwrap();
    assert_eq!(reg.log_size().unwrap(), size);
    assert_eq!(reg.log_root(size).unwrap(), root);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(reg.log_entry(i as u64).unwrap().as_ref(), Some(e));
        let p = reg.log_inclusion(size, i as u64).unwrap();
        tlog::check_inclusion(&p, size, &root, i as u64, &tlog::leaf_hash(e)).unwrap();
    }
    // The log goes on from there.
    create(&reg, &format!("{P}/new"), vec![v(1, "URL", "x")]).unwrap();
    let grown = reg.log_root(size + 1).unwrap();
    let p = reg.log_consistency(size + 1, size).unwrap();
    tlog::check_consistency(&p, size + 1, &grown, size, &root).unwrap();
    drop(reg);
    let kv = suyuan_registry::kv::open_embedded(dir.path()).unwrap();
    let start = table_key(Table::LogLeaves, b"");
    assert!(
        kv.scan(&start, &suyuan_registry::kv::prefix_end(&start), 1)
            .unwrap()
            .is_empty(),
        "no leaf is left in the earlier layout"
    );
}

fn consistent_reads_for_the_cache_and_reindex() {
    let (_d, reg) = open();
    create(
        &reg,
        "88.888.1/c",
        vec![v(2001, "mrv.measuredBy", "88.888.1/m")],
    )
    .unwrap();
    let (r, at) = reg.get_consistent("88.888.1/c").unwrap();
    assert!(r.is_some());
    assert_eq!(at, Some(reg.last_seq()));
    assert_eq!(reg.reindex().unwrap(), 1);
    assert_eq!(reg.backlinks("88.888.1/m", None, 10).unwrap().0.len(), 1);
    let closed = {
        reg.close();
        create(&reg, "88.888.1/d", vec![v(1, "URL", "x")])
    };
    assert!(matches!(closed, Err(RegistryError::Closed)));
}

#[test]
fn a_postgres_schema_is_created_once_joined_and_refused_when_newer() {
    use suyuan_registry::postgres::{InitMode, PgStore, init_blocking};
    let Some(url) = postgres_url() else { return };
    let name = format!("schema_{}_{}", std::process::id(), rand::random::<u32>());
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([url.as_str(), "-qXc", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("CREATE SCHEMA {name}"));
    let sep = if url.contains('?') { '&' } else { '?' };
    let db = format!("{url}{sep}options=-csearch_path%3D{name}");
    let e = PgStore::open(&db, "s1").unwrap_err();
    assert!(e.to_string().contains("suyuan init --store"), "{e}");
    let e = init_blocking(&db, InitMode::Join).unwrap_err();
    assert!(
        e.to_string().contains("holds no Suyuan store to join"),
        "{e}"
    );
    assert_eq!(
        init_blocking(&db, InitMode::Create).unwrap(),
        suyuan_registry::store::SCHEMA_VERSION
    );
    let e = init_blocking(&db, InitMode::Create).unwrap_err();
    assert!(
        e.to_string().contains("already holds a Suyuan store"),
        "{e}"
    );
    assert_eq!(
        init_blocking(&db, InitMode::Join).unwrap(),
        suyuan_registry::store::SCHEMA_VERSION
    );
    // A store a newer binary wrote is refused, by name.
    psql(&format!(
        "UPDATE {name}.suyuan_meta SET value = 99 WHERE name = 'schema'"
    ));
    let e = PgStore::open(&db, "s1").unwrap_err();
    assert!(
        matches!(e, RegistryError::SchemaTooNew { found: 99, .. }),
        "{e}"
    );
}

fn commits_stream_to_subscribers() {
    let (_d, reg) = open();
    let mut rx = reg.subscribe(16);
    let s = create(&reg, "88.888.1/streamed", vec![v(1, "URL", "https://x")])
        .unwrap()
        .unwrap();
    let c = rx
        .try_recv()
        .expect("the commit is announced before it is acknowledged");
    assert_eq!(c.seq, s);
    assert!(c.keys.contains(&"88.888.1/STREAMED".to_string()), "{c:?}");
}

/// Every change is a leaf, durable with it: the entries are the changes' entries, in order;
/// the root is the RFC 6962 hash of them; a proof of every leaf verifies; a refused write
/// appends nothing; the log turned off appends nothing.
fn the_log_has_a_leaf_for_every_change_and_proves_each() {
    use suyuan_codec::tlog;
    use suyuan_registry::log::Entry;
    let (_dir, reg) = open();
    for i in 0..20 {
        create(
            &reg,
            &format!("{P}/m-{i}"),
            vec![v(1, "URL", "https://example.org/m")],
        )
        .unwrap();
    }
    assert!(create(&reg, &format!("{P}/m-3"), vec![v(1, "URL", "x")]).is_err());
    // One commit of many leaves, going on the leaves of earlier commits and on past them.
    let batch = (20..90)
        .map(|i| {
            w(Mutation::Create {
                handle: format!("{P}/m-{i}"),
                values: vec![v(1, "URL", "https://example.org/m")],
                mode: CreateMode::Plain,
            })
        })
        .collect();
    assert!(reg.apply_batch(batch).iter().all(Result::is_ok));
    for i in 90..100 {
        create(&reg, &format!("{P}/m-{i}"), vec![v(1, "URL", "y")]).unwrap();
    }
    let size = reg.log_size().unwrap();
    assert_eq!(
        size,
        reg.last_seq(),
        "one leaf per change, the refused write none"
    );
    let changes = reg.changes_since(1, 1000).unwrap();
    let key_entries: Vec<Vec<u8>> = (0..size)
        .map(|i| reg.log_entry(i).unwrap().unwrap())
        .collect();
    for (c, e) in changes.iter().zip(&key_entries) {
        let entry = Entry::decode(e).unwrap();
        assert_eq!((entry.seq, &entry.handle), (c.seq, &c.handle));
        assert_eq!(reg.log_index(c.seq).unwrap(), Some(c.seq - 1));
        // The entry's digests are the salted digests of the change's values.
        if let (Some(vs), Some(ds)) = (&c.values, &entry.values) {
            for (v, d) in vs.iter().zip(ds) {
                let salt = reg.log_salt(c.seq, v.index).unwrap();
                assert_eq!(suyuan_registry::log::value_digest(&salt, v), d.digest);
            }
        }
    }
    let leaves: Vec<tlog::Hash> = key_entries.iter().map(|e| tlog::leaf_hash(e)).collect();
    let root = reg.log_root(size).unwrap();
    for (i, leaf) in leaves.iter().enumerate() {
        let p = reg.log_inclusion(size, i as u64).unwrap();
        tlog::check_inclusion(&p, size, &root, i as u64, leaf).unwrap();
    }
    for old_size in [5, 33, 64, 90] {
        let old = reg.log_root(old_size).unwrap();
        let p = reg.log_consistency(size, old_size).unwrap();
        tlog::check_consistency(&p, size, &root, old_size, &old).unwrap();
    }

    reg.set_log(false);
    create(&reg, &format!("{P}/unlogged"), vec![v(1, "URL", "u")]).unwrap();
    assert_eq!(reg.log_size().unwrap(), size);
    assert!(!reg.log_on());
}

/// Formulas that are not the demo's: a weighted mean, a product with a percentage (green, red
/// beyond the record's tolerance, green within its template's), a unit mismatch and a syntax
/// error refused at write time naming the column, and a check made grey by a value the caller
/// may not read.
fn formulas_are_checked_on_write_and_recomputed_on_trace() {
    use suyuan_registry::check::Status;
    let (_dir, reg) = open();
    let rec = |kind: &str, extra: Vec<HandleValue>| {
        let mut vs = vec![v(1, "mrv.kind", kind)];
        vs.extend(extra);
        vs
    };
    for (name, value, weight) in [("lab-a", "50", "100"), ("lab-b", "60", "300")] {
        create(
            &reg,
            &format!("{P}/{name}"),
            rec(
                "lab-report",
                vec![
                    v(2, "mrv.value", value),
                    v(3, "mrv.unit", "%"),
                    v(4, "weight", weight),
                ],
            ),
        )
        .unwrap();
    }
    let mean = "C = sum(prov.wasDerivedFrom:lab-report [%], value * attr(weight [t])) / sum(prov.wasDerivedFrom:lab-report [%], attr(weight [t]))";
    create(
        &reg,
        &format!("{P}/blend"),
        rec(
            "figure",
            vec![
                v(2, "mrv.value", "57.5"),
                v(3, "mrv.unit", "%"),
                v(4, "mrv.formula", mean),
                v(10, "prov.wasDerivedFrom", &format!("{P}/lab-a")),
                v(11, "prov.wasDerivedFrom", &format!("{P}/lab-b")),
            ],
        ),
    )
    .unwrap();
    create(
        &reg,
        &format!("{P}/gross"),
        rec(
            "reading",
            vec![v(2, "mrv.value", "100"), v(3, "mrv.unit", "MWh")],
        ),
    )
    .unwrap();
    create(
        &reg,
        &format!("{P}/share"),
        rec(
            "factor",
            vec![v(2, "mrv.value", "95"), v(3, "mrv.unit", "%")],
        ),
    )
    .unwrap();
    create(
        &reg,
        &format!("{P}/tpl/net"),
        vec![v(
            1,
            "mrv.template",
            r#"{"kind": "figure", "tolerance": "2%"}"#,
        )],
    )
    .unwrap();
    let net = "one(prov.wasDerivedFrom:reading [MWh]) * as(one(mrv.usesFactor:factor [%]), [1])";
    let figure = |value: &str, extra: Vec<HandleValue>| {
        let mut vs = rec(
            "figure",
            vec![
                v(2, "mrv.value", value),
                v(3, "mrv.unit", "MWh"),
                v(4, "mrv.formula", net),
                v(10, "prov.wasDerivedFrom", &format!("{P}/gross")),
                v(11, "mrv.usesFactor", &format!("{P}/share")),
            ],
        );
        vs.extend(extra);
        vs
    };
    create(&reg, &format!("{P}/net-exact"), figure("95.000", vec![])).unwrap();
    create(
        &reg,
        &format!("{P}/net-off"),
        figure("96", vec![v(5, "mrv.tolerance", "0.5%")]),
    )
    .unwrap();
    create(
        &reg,
        &format!("{P}/net-template"),
        figure(
            "96",
            vec![v(1001, "mrv.templateRef", &format!("{P}/tpl/net"))],
        ),
    )
    .unwrap();

    // Refused at write time: the units do not agree, the text does not parse, a bad tolerance.
    let mut wrong = figure("95", vec![]);
    wrong[2] = v(3, "mrv.unit", "t");
    let e = create(&reg, &format!("{P}/net-wrong-unit"), wrong).unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    assert!(
        e.to_string().contains("mrv.formula (index 4), column 1: the formula computes MWh and the record's mrv.unit is t"),
        "{e}"
    );
    let mut bad = figure("95", vec![]);
    bad[3] = v(4, "mrv.formula", "one(prov.wasDerivedFrom [MWh]) * * 2");
    let e = create(&reg, &format!("{P}/net-bad"), bad).unwrap_err();
    assert_eq!(e.response_code(), rc::INVALID_VALUE);
    assert!(
        e.to_string().contains("column 34: '*' cannot start a term"),
        "{e}"
    );
    let e = create(
        &reg,
        &format!("{P}/net-bad-tolerance"),
        figure("95", vec![v(5, "mrv.tolerance", "a lot")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("mrv.tolerance"), "{e}");
    // A percentage added to a plain number is refused: conversions are explicit.
    let mut pct = figure("95", vec![]);
    pct[3] = v(4, "mrv.formula", "one(mrv.usesFactor [%]) + 1");
    assert!(create(&reg, &format!("{P}/net-pct"), pct).is_err());

    let all = |_: &str, _: &HandleValue| true;
    let check = |root: &str, readable: &dyn Fn(&str, &HandleValue) -> bool| {
        let t = reg
            .trace(
                &TraceQuery::new(format!("{P}/{root}"), Direction::Up),
                readable,
            )
            .unwrap();
        t.nodes[0].check.clone().unwrap()
    };
    let blend = check("blend", &all);
    assert_eq!(blend.status, Status::Green, "{blend:?}");
    assert_eq!(blend.computed, Some(57.5));
    assert_eq!(check("net-exact", &all).status, Status::Green);
    let off = check("net-off", &all);
    assert_eq!(off.status, Status::Red, "{off:?}");
    assert_eq!((off.expected, off.computed), (Some(96.0), Some(95.0)));
    assert_eq!(
        check("net-template", &all).status,
        Status::Green,
        "2% of 96 holds"
    );
    // A weight the caller may not read makes the mean grey, never green.
    let lab_b = format!("{P}/lab-b");
    let hidden = |h: &str, v: &HandleValue| !(h == lab_b && v.value_type == "weight");
    let grey = check("blend", &hidden);
    assert_eq!(grey.status, Status::Grey);
    assert!(grey.reason.unwrap().contains("not readable"));
}

conformance!(
    formulas_are_checked_on_write_and_recomputed_on_trace,
    the_log_has_a_leaf_for_every_change_and_proves_each,
    commits_stream_to_subscribers,
    records_resolve_list_and_page,
    create_modes,
    reference_validation_rules,
    resolution_filters,
    value_operations,
    no_write_builds_a_record_whose_answer_outgrows_a_tcp_message,
    change_log_is_gap_free_with_actors_and_tombstones,
    a_refused_write_does_not_abort_its_group,
    templates_validate_every_write,
    a_type_decides_what_a_value_means_not_its_index,
    unknown_vocabulary_types_are_refused_unless_a_template_declares_them,
    reverse_index_follows_every_write,
    aliases_bind_one_handle,
    trace_up_and_down,
    large_fan_out_is_paged,
    prefixes_home_and_unhome,
    consistent_reads_for_the_cache_and_reindex,
);
