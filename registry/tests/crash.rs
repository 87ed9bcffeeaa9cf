//! Crash test: a child process writes in a loop from several threads and is killed with SIGKILL
//! at a random point, many times; after each kill the store must open cleanly, hold every
//! write the child saw acknowledged, and keep a gap-free change log. Runs on the backend the
//! build selects (redb by default, sled with `--features sled`).
//!
//! The test binary re-executes itself as the child (`crash_child`, which does nothing unless
//! `SUYUAN_CRASH_CHILD` names a store). `SUYUAN_CRASH_SEED` replays a run; `SUYUAN_CRASH_CYCLES`
//! makes it longer (the default keeps `cargo test` quick).

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use suyuan_codec::value::HandleValue;
use suyuan_registry::{CreateMode, Identity, Mutation, Registry, Write};

fn write(m: Mutation) -> Write {
    Write {
        mutation: m,
        actor: "0:SUYUAN/CRASH".into(),
        time: 1_740_000_000,
    }
}

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("SUYUAN_CRASH_CHILD") else {
        return;
    };
    let run: u32 = std::env::var("SUYUAN_CRASH_RUN").unwrap().parse().unwrap();
    let reg = Arc::new(Registry::open(std::path::Path::new(&dir)).unwrap());
    reg.apply(write(Mutation::Home {
        prefix: "88.888.1".into(),
        admins: vec![Identity::new(300, "88.888.1/ADMIN")],
    }))
    .unwrap();
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let reg = reg.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let handle = format!("88.888.1/c{run}-{t}-{i}");
                    let values = vec![
                        HandleValue::new(1, "mrv.kind", "reading"),
                        HandleValue::new(2, "mrv.value", format!("{i}")),
                        HandleValue::new(2001, "mrv.measuredBy", format!("88.888.1/meter-{t}")),
                        HandleValue::new(
                            2002,
                            "prov.wasDerivedFrom",
                            format!("88.888.1/c{run}-{t}-{}", i.max(1) - 1),
                        ),
                    ];
                    reg.apply(write(Mutation::Create {
                        handle: handle.clone(),
                        values,
                        mode: CreateMode::Plain,
                    }))
                    .unwrap();
                    // Only after the acknowledgement: this line is the parent's proof of it.
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {handle}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let seed: u64 = std::env::var("SUYUAN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let cycles: u32 = std::env::var("SUYUAN_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    eprintln!("crash test: seed {seed}, {cycles} cycles (SUYUAN_CRASH_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<String> = Vec::new();
    for run in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("SUYUAN_CRASH_CHILD", dir.path())
            .env("SUYUAN_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill after a random number of acknowledgements: somewhere inside a group commit,
        // a flush, or between them.
        let kill_after = rng.gen_range(1..600);
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut n = 0;
        while n < kill_after {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(h) = l.strip_prefix("ACK ") {
                        acked.push(h.to_string());
                        n += 1;
                    }
                }
                _ => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Lines already written before the kill are acknowledgements too.
        for l in lines.map_while(Result::ok) {
            if let Some(h) = l.strip_prefix("ACK ") {
                acked.push(h.to_string());
            }
        }
        child.wait().unwrap();

        let reg = Registry::open(dir.path())
            .unwrap_or_else(|e| panic!("seed {seed} run {run}: store does not open: {e}"));
        for h in &acked {
            assert!(
                reg.get(h).unwrap().is_some(),
                "seed {seed} run {run}: acknowledged {h} lost"
            );
        }
        // The change log is gap-free up to the last durable change.
        let last = reg.last_seq();
        let mut seq = 1;
        while seq <= last {
            let page = reg.changes_since(seq, 10_000).unwrap();
            assert!(
                !page.is_empty(),
                "seed {seed} run {run}: change {seq} missing"
            );
            for c in page {
                assert_eq!(c.seq, seq, "seed {seed} run {run}: gap in the change log");
                seq += 1;
            }
        }
        assert_eq!(seq, last + 1);
        reg.close();
    }
    assert!(
        acked.len() > cycles as usize,
        "the child wrote almost nothing: {}",
        acked.len()
    );
}
