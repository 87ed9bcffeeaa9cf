//! `suyuan migrate` and `suyuan import --from-handle-sql`, run as the binary on real stores:
//! redb data dirs and, with `SUYUAN_TEST_STORE`, schemas of their own on a PostgreSQL server.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::rest::curl;
use common::{BIN, pg, serve_with, stop, suyuan, wait_exit};

/// Rows a Handle.Net 9.3.1 server wrote on PostgreSQL (the ones `handlesql.rs` checks against
/// what that server answered), with one value of `12345/PGLAB-BATCH-MIXED` stamped at another
/// time; plus a prefix handle and two damaged rows.
const REFERENCE_ROWS: &str = r#"
insert into nas values ('0.NA/12345'::bytea), ('0.NA/PGLAB.SUB'::bytea);
insert into handles values
(decode('31323334352f50474c41422d524553542d4d49584544','hex'),1,decode('55524c','hex'),decode('687474703a2f2f6578616d706c652e6f72672f72657374','hex'),1,1893553445,1796163235,'',true,true,true,false),
(decode('31323334352f50474c41422d524553542d4d49584544','hex'),2,decode('454d41494c','hex'),decode('72657374406578616d706c652e6f7267','hex'),0,120,1796163235,E'1:12345/Other%0009300:12345/a\\tb\\\\c%0025d/%00E9%D83D%DE00\\n\\r:x%00092147483647:',true,true,false,true),
(decode('31323334352f50474c41422d524553542d4d49584544','hex'),3,decode('44415441','hex'),decode('00ff09250a','hex'),0,86400,1796163235,'',true,true,true,false),
(decode('31323334352f50474c41422d524553542d4d49584544','hex'),100,decode('48535f41444d494e','hex'),decode('07f30000000b31323334352f41444d494e0000012c','hex'),0,86400,1796163235,'',true,true,true,false),
(decode('31323334352f50474c41422d42415443482d4d49584544','hex'),2,decode('454d41494c','hex'),decode('70676c6162406578616d706c652e6f7267','hex'),0,60,1796163230,'',true,true,false,true),
(decode('31323334352f50474c41422d42415443482d4d49584544','hex'),3,decode('48535f564c495354','hex'),decode('000000020000000b31323334352f41444d494e0000012c0000001731323334352f70676c61622d42617463682d4d6958656400000001','hex'),0,86400,1796163230,'',true,false,true,false),
(decode('31323334352f50474c41422d42415443482d4d49584544','hex'),4,decode('44455343','hex'),decode('c3bc6ec3af636f64652064c3a474c3a420e29c93','hex'),0,0,1796163100,'',false,true,true,true),
(decode('31323334352f50474c41422d53545241c39f452dc3a9','hex'),100,decode('48535f41444d494e','hex'),decode('03330000000b31323334352f41444d494e0000012d','hex'),0,86400,1796163230,'',true,true,true,false),
('0.NA/PGLAB.SUB'::bytea,100,'HS_ADMIN'::bytea,decode('0ff20000000b31323334352f41444d494e0000012c','hex'),0,86400,1796163000,'',true,true,true,false),
('12345/BAD-IDX'::bytea,0,'URL'::bytea,'http://x'::bytea,0,86400,1796163000,'',true,true,true,false),
('12345/BAD-REFS'::bytea,1,'URL'::bytea,'http://x'::bytea,0,86400,1796163000,'1:12345/x%00',true,true,true,false);
"#;

/// A database laid out as the reference server's, holding [`REFERENCE_ROWS`].
fn reference_database(url: &str) {
    let tables = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/postgres/handle-tables.sql"
    );
    pg::psql_args(url, &["-f", tables]);
    pg::psql(url, REFERENCE_ROWS);
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn init(dir: &Path, prefix: &str) {
    let out = suyuan(&[
        "init",
        "--prefix",
        prefix,
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `n` records under 88.888.1, `URL` at 1 naming `tag`.
fn import_meters(dir: &Path, n: usize, tag: &str) {
    let file = dir.join(format!("meters-{tag}.jsonl"));
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "{{\"handle\": \"88.888.1/m-{i:05}\", \"values\": [{{\"index\": 1, \"type\": \"URL\", \"data\": \"https://example.org/{tag}/{i}\"}}]}}\n"
            )
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = suyuan(&[
        "import",
        "--offline",
        "--data-dir",
        dir.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The digests of the `source:` and `target:` lines a migration prints.
fn digests(stdout: &str) -> (String, String) {
    let of = |side: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(side))
            .unwrap_or_else(|| panic!("no {side} line in {stdout}"))
            .to_string()
    };
    let (s, t) = (of("source:"), of("target:"));
    (
        s.trim_start_matches("source:").to_string(),
        t.trim_start_matches("target:").to_string(),
    )
}

fn migrate(from: &str, to: &str) -> std::process::Output {
    suyuan(&["migrate", "--from", from, "--to", to])
}

/// The timestamps a node's REST API shows for a handle's values, by index.
fn timestamps(http: std::net::SocketAddr, handle: &str) -> Vec<(u64, String)> {
    let a = curl(&[&format!("https://{http}/api/handles/{handle}")]);
    assert_eq!(a.status, 200, "{}", text(&a.body));
    let v = a.json();
    v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["index"].as_u64().unwrap(),
                x["timestamp"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_handle_net_database_is_imported_with_its_timestamps_and_its_bad_rows_named() {
    let Some(db) = pg::database("import_handle_sql") else {
        return;
    };
    reference_database(&db);
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    init(&node, "12345");
    let import = || {
        suyuan(&[
            "import",
            "--from-handle-sql",
            &db,
            "--data-dir",
            node.to_str().unwrap(),
        ])
    };
    let out = import();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // Two damaged handles: the run fails, naming them, and imports the rest.
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("(Handle.Net SQL): 3 records: 3 written, 0 unchanged, 0 failed; 1 prefixes homed, 1 prefix handles skipped, 2 handles and 0 nas rows unreadable"),
        "{stdout}"
    );
    for line in [
        "import: 12345/BAD-IDX: not imported: row with idx 0: row index 0 is not a positive value index",
        "import: 12345/BAD-REFS: not imported: row with idx 1: row refs \"1:12345/x%00\": % not followed by four hex digits",
        "import: 0.NA/PGLAB.SUB: skipped (a prefix handle, which the global registry keeps)",
    ] {
        assert!(stderr.contains(line), "{line} in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    let again = import();
    assert!(
        text(&again.stdout)
            .contains("3 records: 0 written, 3 unchanged, 0 failed; 0 prefixes homed"),
        "{}",
        text(&again.stdout)
    );

    let node_srv = serve_with(&node, &[]);
    // Each value keeps the time the reference stamped it with (1796163230 and 1796163100).
    assert_eq!(
        timestamps(node_srv.http, "12345/PGLAB-BATCH-MIXED"),
        [
            (3, "2026-12-01T22:13:50Z".to_string()),
            (4, "2026-12-01T22:11:40Z".to_string())
        ]
    );
    let out = Command::new(BIN)
        .args([
            "resolve",
            "--server",
            &node_srv.handle.to_string(),
            "12345/PGLAB-STRAßE-é",
        ])
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("100 HS_ADMIN ttl=86400 perms=1110 admin=301:12345/ADMIN"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    stop(node_srv.child);
}

#[test]
fn redb_to_postgres_to_redb_keeps_every_record_byte_for_byte() {
    let Some(db) = pg::database("migrate_round_trip") else {
        return;
    };
    let Some(reference) = pg::database("migrate_round_trip_ref") else {
        return;
    };
    reference_database(&reference);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    init(&a, "88.888.1");
    import_meters(&a, 300, "a");
    // Records whose values carry different timestamps, from the reference's rows.
    let out = suyuan(&[
        "import",
        "--from-handle-sql",
        &reference,
        "--data-dir",
        a.to_str().unwrap(),
    ]);
    assert!(
        text(&out.stdout).contains("3 written"),
        "{}",
        text(&out.stdout)
    );

    let there = migrate(a.to_str().unwrap(), &db);
    let stdout = text(&there.stdout);
    assert!(there.status.success(), "{stdout}{}", text(&there.stderr));
    assert!(
        stdout.contains(": 304 records: 304 written, 0 unchanged, 0 held other values, 0 refused"),
        "{stdout}"
    );
    let (s1, t1) = digests(&stdout);
    assert_eq!(s1, t1);
    assert!(s1.starts_with(" 3 prefixes, 304 records, sha256 "), "{s1}");

    let c = dir.path().join("c-store");
    let back = migrate(&db, c.to_str().unwrap());
    let stdout = text(&back.stdout);
    assert!(back.status.success(), "{stdout}{}", text(&back.stderr));
    let (s2, t2) = digests(&stdout);
    assert_eq!((&s2, &t2), (&s1, &s1));

    // A node on the store that came back serves what the first held.
    let node = serve_with(&a, &["--store", c.to_str().unwrap()]);
    assert_eq!(
        timestamps(node.http, "12345/PGLAB-BATCH-MIXED"),
        [
            (3, "2026-12-01T22:13:50Z".to_string()),
            (4, "2026-12-01T22:11:40Z".to_string())
        ]
    );
    let a299 = curl(&[&format!(
        "https://{}/api/handles/88.888.1/m-00299",
        node.http
    )]);
    let body = text(&a299.body);
    assert!(body.contains("https://example.org/a/299"), "{body}");
    stop(node.child);
}

/// Kills a migration of a few thousand records partway (after its third progress line), runs
/// it again and checks it completed without writing anything twice.
fn interrupted_then_completed(to: &str, dir: &Path) {
    let a = dir.join("a");
    init(&a, "88.888.1");
    import_meters(&a, 3000, "a");
    let mut child = Command::new(BIN)
        .args([
            "migrate",
            "--from",
            a.to_str().unwrap(),
            "--to",
            to,
            "--batch",
            "50",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut progress = 0;
    while progress < 3 {
        let line = lines.next().expect("progress lines").unwrap();
        if line.contains("records read") {
            progress += 1;
        }
    }
    common::signal(&child, 9);
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("killed");
    assert!(
        !status.success(),
        "the migration ended before it was killed"
    );

    let again = migrate(a.to_str().unwrap(), to);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}{}", text(&again.stderr));
    let summary = stdout.lines().find(|l| l.contains(" records: ")).unwrap();
    // 3001 records (the admin's included), some already there from the first run, none twice.
    let n = |what: &str| -> u64 {
        summary
            .split(", ")
            .flat_map(|p| p.split(": "))
            .find_map(|p| p.strip_suffix(what))
            .unwrap_or_else(|| panic!("{what} in {summary}"))
            .trim()
            .parse()
            .unwrap()
    };
    let (written, unchanged) = (n(" written"), n(" unchanged"));
    assert!(unchanged >= 100, "{summary}");
    assert!(written > 0, "{summary}");
    assert_eq!(written + unchanged, 3001, "{summary}");
    let (s, t) = digests(&stdout);
    assert_eq!(s, t);
    assert!(s.starts_with(" 1 prefixes, 3001 records"), "{s}");
}

#[test]
fn an_interrupted_migration_into_postgres_completes_when_run_again() {
    let Some(db) = pg::database("migrate_interrupted") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    interrupted_then_completed(&db, dir.path());
}

#[test]
fn an_interrupted_migration_into_redb_completes_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("to-store");
    interrupted_then_completed(to.to_str().unwrap(), dir.path());
}

#[test]
fn a_target_holding_other_values_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init(&a, "88.888.1");
    import_meters(&a, 20, "a");
    init(&b, "88.888.1");
    import_meters(&b, 5, "b");
    let out = migrate(a.to_str().unwrap(), b.to_str().unwrap());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    for i in 0..5 {
        let line =
            format!("migrate: 88.888.1/m-{i:05}: the target already holds other values for it");
        assert!(stderr.contains(&line), "{line} in {stderr}");
    }
    // The 15 records the target lacks are copied (and its administrator, equal but for its
    // timestamps, brought to the source's), the 5 others left alone.
    assert!(stdout.contains(": 21 records: "), "{stdout}");
    assert!(
        stdout.contains(" unchanged, 5 held other values, 0 refused"),
        "{stdout}"
    );
    let (s, t) = digests(&stdout);
    assert_ne!(s, t);
    assert!(
        stderr.contains("the target holds other values for 5 handle(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the target does not hold what the source holds (counts or digest differ)"),
        "{stderr}"
    );
}

#[test]
fn a_store_a_running_node_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    init(&a, "88.888.1");
    let node = serve_with(&a, &[]);
    let to = dir.path().join("to");
    let out = migrate(a.to_str().unwrap(), to.to_str().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is in use by another process (is `suyuan serve` running?): a running node holds it; stop the node before migrating its store"),
        "{stderr}"
    );
    assert!(!to.exists(), "nothing written to the target");
    stop(node.child);
    // Once the node is stopped, the same command works.
    let out = migrate(a.to_str().unwrap(), to.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out.stderr));
}
