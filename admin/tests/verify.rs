//! `suyuan verify` as a regulator uses it, on the demo node: the report's trace verifies
//! against the node's log key alone; a legitimate change through the API verifies, and the
//! old version's receipt still verifies against the old checkpoint and the consistency proof;
//! a value changed behind the node's back (the store edited offline) fails, naming the record.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::rest::curl;
use common::{BIN, Server, serve_with, stop};
use serde_json::Value;

const REPORT: &str = "88.888.1/report-2025";

fn run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn http(s: &Server) -> String {
    format!("http://{}", s.http)
}

/// The report's trace as JSON, once every node's proof is covered by a checkpoint.
fn trace(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, out, err) = run(&["trace", REPORT, "--json", "--node", &http(s)]);
        assert_eq!(code, 0, "{err}");
        let t: Value = serde_json::from_str(&out).unwrap();
        let pending = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["proof"].get("pending").is_some());
        if !pending {
            return t;
        }
        assert!(Instant::now() < deadline, "proofs still pending");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn save(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p.to_str().unwrap().to_string()
}

fn get(s: &Server, path: &str) -> String {
    let a = curl(&[&format!("{}{path}", http(s))]);
    assert_eq!(a.status, 200, "{path}");
    String::from_utf8(a.body).unwrap()
}

/// A reading the report was derived from, with its value.
fn a_reading(t: &Value) -> (String, u64) {
    let n = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| {
            n["values"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["type"] == "mrv.value")
                && n["handle"] != REPORT
        })
        .expect("a record with a value");
    let index = n["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["type"] == "mrv.value")
        .unwrap()["index"]
        .as_u64()
        .unwrap();
    (n["handle"].as_str().unwrap().to_string(), index)
}

#[test]
fn a_report_verifies_a_legitimate_change_verifies_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let key = data.join("log.vkey");
    let key = key.to_str().unwrap();
    let s = serve_with(&data, &["--demo"]);

    // The report, as published: every record verifies against the log key alone.
    let t1 = trace(&s);
    let f1 = save(dir.path(), "t1.json", &t1);
    let (code, out, err) = run(&["verify", &f1, "--log-key", key]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), t1["nodes"].as_array().unwrap().len());
    assert!(lines.iter().all(|l| l.starts_with("ok   ")), "{out}");
    let old_checkpoint = get(&s, "/log/checkpoint");
    let old_cp = dir.path().join("old.checkpoint");
    std::fs::write(&old_cp, &old_checkpoint).unwrap();

    // A legitimate correction through the API (HTTPS, the demo administrator's secret).
    let (handle, index) = a_reading(&t1);
    let secret = std::fs::read_to_string(data.join("admin-secret")).unwrap();
    let body = format!(
        r#"{{"values":[{{"index":{index},"type":"mrv.value","data":{{"format":"string","value":"123.456"}}}}]}}"#
    );
    let a = curl(&[
        "-X",
        "PUT",
        "-u",
        &format!("301%3A88.888.1%2FADMIN:{}", secret.trim()),
        "-H",
        "Content-Type: application/json",
        "--data",
        &body,
        &format!("https://{}/api/handles/{handle}?index={index}", s.http),
    ]);
    assert!(a.status == 200 || a.status == 201, "{a:?}");
    let t2 = trace(&s);
    let f2 = save(dir.path(), "t2.json", &t2);
    let (code, out, err) = run(&["verify", &f2, "--log-key", key]);
    assert_eq!(code, 0, "{out}{err}");
    // Online, holding the old checkpoint: the new one is consistent with it.
    let (code, out, err) = run(&[
        "verify",
        REPORT,
        "--online",
        "--node",
        &http(&s),
        "--log-key",
        key,
        "--trusted",
        old_cp.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // The old trace's receipts still verify against the old checkpoint, and the old
    // checkpoint is consistent with the new one by the node's consistency proof.
    let new_cp = dir.path().join("new.checkpoint");
    let new_checkpoint = get(&s, "/log/checkpoint");
    std::fs::write(&new_cp, &new_checkpoint).unwrap();
    let size = |cp: &str| cp.lines().nth(1).unwrap().to_string();
    let proof = get(
        &s,
        &format!(
            "/log/consistency?from={}&to={}",
            size(&old_checkpoint),
            size(&new_checkpoint)
        ),
    );
    let cons = dir.path().join("consistency.txt");
    std::fs::write(&cons, proof).unwrap();
    let (code, out, err) = run(&[
        "verify",
        &f1,
        "--log-key",
        key,
        "--trusted",
        new_cp.to_str().unwrap(),
        "--consistency",
        cons.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // The old version's proof answer (by its seq) verifies on its own, with its old value.
    let old = t1["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["handle"] == handle.as_str())
        .unwrap();
    let entry = base64_decode(old["proof"]["entry"].as_str().unwrap());
    let old_seq = suyuan_registry::log::Entry::decode(&entry).unwrap().seq;
    let p: Value =
        serde_json::from_str(&get(&s, &format!("/api/proof/{handle}?seq={old_seq}"))).unwrap();
    let old_value = old["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["index"] == index)
        .unwrap()
        .clone();
    assert!(p["values"].as_array().unwrap().contains(&old_value), "{p}");
    let fp = save(dir.path(), "old-proof.json", &p);
    let (code, out, err) = run(&["verify", &fp, "--log-key", key]);
    assert_eq!(code, 0, "{out}{err}");
    stop(s.child);

    // An insider edits a stored value offline, behind the write path.
    {
        use suyuan_registry::kv::{Op, Table, open_embedded, table_key};
        let kv = open_embedded(&data.join("store")).unwrap();
        let k = table_key(
            Table::Records,
            suyuan_codec::handle::key_of(REPORT).as_bytes(),
        );
        let mut rec = suyuan_registry::Record::decode(&kv.get(&k).unwrap().unwrap()).unwrap();
        let v = rec
            .values
            .iter_mut()
            .find(|v| v.value_type == "mrv.value")
            .unwrap();
        v.data = b"1.0".to_vec();
        kv.write(&[Op::Put(k, rec.encode())]).unwrap();
    }
    let s = serve_with(&data, &[]);
    let t3 = trace(&s);
    let f3 = save(dir.path(), "t3.json", &t3);
    let (code, out, _) = run(&["verify", &f3, "--log-key", key]);
    assert_eq!(code, 1, "{out}");
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].starts_with(&format!("FAIL {REPORT}: value ")),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains("mrv.value"), "{}", failed[0]);
    // Another log's key verifies nothing; bad usage is exit 2.
    let (code, out, _) = run(&[
        "verify",
        &f1,
        "--log-key",
        "other.example/log+00000000+AZ8/yZJZKvLYZ1LQiqVKaztByM8h65bm+gKNp3M3XCuC",
    ]);
    assert_ne!(code, 0, "{out}");
    let (code, _, _) = run(&["verify", &f1]);
    assert_eq!(code, 2);
    stop(s.child);
}

/// The README's regulator session: a changed reading turns its month and the report red, by the
/// difference, and the change is in the log. Each command runs as the README shows it (with
/// `suyuan` on the PATH and the node's own address) and prints what the README shows.
#[test]
fn regulator_session_in_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("suyuan-data");
    let node = serve_with(&d, &["--demo"]);
    let url = http(&node);
    for (cmd, shown) in common::readme_block("regulator-red") {
        // A receipt follows its change within a second: wait for the checkpoint the shown
        // output names (`… of N, …`) before verifying.
        if let Some(n) = shown
            .first()
            .and_then(|l| l.split(" of ").nth(1))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let cp = get(&node, "/log/checkpoint");
                let size: u64 = cp.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(0);
                if size >= n || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let run = cmd
            .replace("127.0.0.1:8000", &node.http.to_string())
            .replace("suyuan trace ", &format!("suyuan trace --node {url} "))
            .replace("suyuan verify ", &format!("suyuan verify --node {url} "));
        assert_eq!(common::sh(&run, dir.path()), shown.join("\n"), "{cmd}");
    }
    stop(node.child);
}

/// `log_sm2_key`: every checkpoint carries an SM2 line (C2SP type 0xff, Suyuan's layout)
/// beside the Ed25519 one; `suyuan verify --log-sm2-key` requires it, and refuses another SM2
/// key's.
#[test]
fn checkpoints_carry_an_sm2_line_when_the_log_has_an_sm2_key() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["sm2", "other"] {
        let (code, _, err) = run(&[
            "keygen",
            "--type",
            "sm2",
            "--out",
            dir.path().join(name).to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let config = dir.path().join("suyuan.toml");
    std::fs::write(
        &config,
        format!(
            "log_sm2_key = {:?}\n",
            dir.path().join("sm2/admpriv.pem").display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("demo");
    let s = serve_with(&data, &["--demo", "--config", config.to_str().unwrap()]);
    let note = get(&s, "/log/checkpoint");
    let lines: Vec<&str> = note.lines().filter(|l| l.starts_with('\u{2014}')).collect();
    assert_eq!(lines.len(), 2, "{note}");
    let sm2_vkey = data.join("log-sm2.vkey");
    let vkey_text = std::fs::read_to_string(&sm2_vkey).unwrap();
    let (name, key) = suyuan_codec::note::sm2_vkey_parse(&vkey_text).unwrap();
    suyuan_codec::note::Note::parse(&note)
        .unwrap()
        .verify_sm2(&name, &key)
        .unwrap();

    let t = trace(&s);
    let f = save(dir.path(), "t.json", &t);
    let log_key = data.join("log.vkey");
    let (code, out, err) = run(&[
        "verify",
        &f,
        "--log-key",
        log_key.to_str().unwrap(),
        "--log-sm2-key",
        sm2_vkey.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // Another SM2 key (named as the log) does not verify the line.
    let other = std::fs::read_to_string(dir.path().join("other/admpub.pem")).unwrap();
    let other_key = suyuan_codec::trust::public_key_from_pem(&other).unwrap();
    let suyuan_codec::trust::SignerKey::Sm2(vk) = other_key else {
        panic!("an SM2 key")
    };
    let other_vkey = dir.path().join("other.vkey");
    std::fs::write(&other_vkey, suyuan_codec::note::sm2_vkey(&name, &vk)).unwrap();
    let (code, out, _) = run(&[
        "verify",
        &f,
        "--log-key",
        log_key.to_str().unwrap(),
        "--log-sm2-key",
        other_vkey.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("SM2"), "{out}");
    stop(s.child);
}
