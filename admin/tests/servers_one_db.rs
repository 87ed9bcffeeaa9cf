//! Several Suyuan servers on one PostgreSQL database: each keeps the cache rule across servers
//! (a write acknowledged by one is never answered older by another, though the other had the
//! old value cached), and both serve the same change log. Needs `SUYUAN_TEST_STORE` (a
//! PostgreSQL URL); without it the test fails under CI and is skipped elsewhere.

mod common;

use common::rest::curl;
use common::{BIN, pg, serve, stop};

fn init(args: &[&str]) {
    let out = std::process::Command::new(BIN)
        .arg("init")
        .args(args)
        .env("SUYUAN_ADMIN_SECRET", "secretpw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const AUTH: &str = "301%3A88.888.1%2FADMIN:secretpw";

fn put(http: std::net::SocketAddr, handle: &str, url: &str) {
    let body = format!(
        r#"{{"values":[{{"index":1,"type":"URL","data":{{"format":"string","value":"{url}"}}}}]}}"#
    );
    let a = curl(&[
        "-u",
        AUTH,
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        &format!("https://{http}/api/handles/{handle}"),
    ]);
    assert!(a.status == 200 || a.status == 201, "{a:?}");
}

fn url_of(http: std::net::SocketAddr, handle: &str) -> String {
    let a = curl(&[&format!("https://{http}/api/handles/{handle}")]);
    assert_eq!(a.status, 200, "{a:?}");
    a.json()["values"][0]["data"]["value"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_write_on_one_server_is_never_answered_older_by_another() {
    let Some(store) = pg::database("two_servers") else {
        return;
    };
    let schema = pg::schema_of(&store);
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (a_s, b_s) = (a_dir.to_str().unwrap(), b_dir.to_str().unwrap());
    init(&["--prefix", "88.888.1", "--data-dir", a_s, "--store", &store]);
    init(&[
        "--prefix",
        "88.888.1",
        "--data-dir",
        b_s,
        "--store",
        &store,
        "--join",
    ]);
    let a = serve(&a_dir);
    let b = serve(&b_dir);
    let h = "88.888.1/shared-1";
    put(a.http, h, "https://v0");
    for i in 1..=12 {
        // Each server reads the current value into its cache, then the other one changes it:
        // once the change is acknowledged, neither may answer the old value.
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert_eq!(url_of(reader.http, h), format!("https://v{}", i - 1));
        assert_eq!(url_of(reader.http, h), format!("https://v{}", i - 1));
        put(writer.http, h, &format!("https://v{i}"));
        assert_eq!(
            url_of(reader.http, h),
            format!("https://v{i}"),
            "write {i} acknowledged by one server, read on the other"
        );
    }
    // One change log, one gap-free sequence, whichever server wrote.
    let line = pg::psql(
        &store,
        &format!("SELECT count(*), min(seq), max(seq) FROM {schema}.changes"),
    );
    let line = line.trim();
    let n: Vec<u64> = line.split('|').map(|x| x.parse().unwrap()).collect();
    assert_eq!(n[0], n[2] - n[1] + 1, "gap-free: {line}");
    assert!(n[0] >= 13, "{line}");
    stop(a.child);
    stop(b.child);
}
