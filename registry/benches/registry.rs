//! Registry benchmark (a bench binary, not criterion: the store takes minutes to fill, so each
//! figure is measured once per run over many operations). Every figure is reported beside a
//! baseline measured in the same run on the same machine: raw redb puts and gets of the same
//! sizes, since this 2-core machine is shared and noisy.
//!
//!   cargo bench -p suyuan-registry --bench registry
//!   SUYUAN_BENCH_RECORDS=100000 cargo bench -p suyuan-registry --bench registry   # quick
//!
//! Shape: N records with about 3 links each (filler records link to 3 random earlier ones),
//! plus a binary tree 10 links deep (report at the top, 1024 meters at the bottom) for the
//! 10-hop trace up; the trace down starts at one of those meters.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use suyuan_codec::value::HandleValue;
use suyuan_registry::{CreateMode, Direction, Identity, Mutation, Registry, TraceQuery, Write};

const P: &str = "88.888.1";
const BATCH: usize = 4096;

fn w(m: Mutation) -> Write {
    Write {
        mutation: m,
        actor: "0:SUYUAN/BENCH".into(),
        time: 1_740_000_000,
    }
}

fn create(handle: String, values: Vec<HandleValue>) -> Write {
    w(Mutation::Create {
        handle,
        values,
        mode: CreateMode::Plain,
    })
}

fn filler(i: usize, rng: &mut impl Rng) -> Vec<HandleValue> {
    let mut v = vec![
        HandleValue::new(1, "mrv.kind", "reading"),
        HandleValue::new(2, "mrv.value", format!("{}", i * 7 % 1000)),
    ];
    if i > 0 {
        for k in 0..3 {
            v.push(HandleValue::new(
                2001 + k,
                "prov.wasDerivedFrom",
                format!("{P}/f{}", rng.gen_range(0..i)),
            ));
        }
    }
    v
}

fn rate(n: usize, secs: f64) -> f64 {
    n as f64 / secs
}

fn main() {
    let n: usize = std::env::var("SUYUAN_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    println!(
        "registry bench: {n} records, backend {}",
        if cfg!(feature = "sled") {
            "sled"
        } else {
            "redb"
        }
    );

    // Baseline: raw redb, same value sizes, same batch size.
    let base_dir = tempfile::tempdir().unwrap();
    let kv = suyuan_registry::kv::open_embedded(base_dir.path()).unwrap();
    let sample = suyuan_registry::Record {
        handle: format!("{P}/f123456"),
        values: filler(5, &mut rng),
        seq: 1,
        links: vec![],
    }
    .encode();
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
        let ops: Vec<_> = chunk
            .iter()
            .map(|i| {
                suyuan_registry::kv::Op::Put(format!("R{P}/F{i}").into_bytes(), sample.clone())
            })
            .collect();
        kv.write(&ops).unwrap();
    }
    let raw_put = rate(n, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let gets = 200_000.min(n * 2);
    for _ in 0..gets {
        let i = rng.gen_range(0..n);
        assert!(kv.get(format!("R{P}/F{i}").as_bytes()).unwrap().is_some());
    }
    let raw_get = rate(gets, t.elapsed().as_secs_f64());
    drop(kv);
    let raw_bytes = dir_size(base_dir.path());

    let reg = Registry::open(dir.path()).unwrap();
    reg.apply(w(Mutation::Home {
        prefix: P.into(),
        admins: vec![Identity::new(300, "88.888.1/ADMIN")],
    }))
    .unwrap();

    // Batched create: the write path with group commits, with the transparency log on (the
    // default) and, into a store of its own, off; batch by batch in turns (which store goes
    // first alternates), so a noisy neighbour slows both alike.
    let off_dir = tempfile::tempdir().unwrap();
    let off = Registry::open(off_dir.path()).unwrap();
    off.apply(w(Mutation::Home {
        prefix: P.into(),
        admins: vec![Identity::new(300, "88.888.1/ADMIN")],
    }))
    .unwrap();
    off.set_log(false);
    let (batched, batched_off) = load_in_turns(&reg, &off, n, &mut rng);
    off.close();
    drop(off_dir);

    // Inclusion proofs read from the store at its size.
    let leaves = reg.log_size().unwrap();
    let root = reg.log_root(leaves).unwrap();
    let proofs = 20_000;
    let t = Instant::now();
    for _ in 0..proofs {
        let i = rng.gen_range(0..leaves);
        let p = reg.log_inclusion(leaves, i).unwrap();
        std::hint::black_box((&p, &root));
    }
    let proof_us = t.elapsed().as_secs_f64() * 1e6 / proofs as f64;

    // The 10-deep tree: level 0 is the report, level 10 the meters.
    let name = |level: u32, k: usize| format!("{P}/L{level}-{k}");
    for level in (0..=10u32).rev() {
        let writes: Vec<Write> = (0..(1usize << level))
            .map(|k| {
                let mut v = vec![HandleValue::new(
                    1,
                    "mrv.kind",
                    if level == 10 { "meter" } else { "figure" },
                )];
                if level < 10 {
                    v.push(HandleValue::new(
                        2001,
                        "prov.wasDerivedFrom",
                        name(level + 1, 2 * k),
                    ));
                    v.push(HandleValue::new(
                        2002,
                        "prov.wasDerivedFrom",
                        name(level + 1, 2 * k + 1),
                    ));
                }
                create(name(level, k), v)
            })
            .collect();
        for r in reg.apply_batch(writes) {
            r.unwrap();
        }
    }

    // Single creates, each waiting for its own durable commit.
    let singles = 2000;
    let t = Instant::now();
    for k in 0..singles {
        reg.apply(create(format!("{P}/s{k}"), filler(k + 1, &mut rng)))
            .unwrap();
    }
    let single = rate(singles, t.elapsed().as_secs_f64());

    // Point resolve.
    let t = Instant::now();
    for _ in 0..gets {
        let k = rng.gen_range(0..n);
        assert!(reg.get(&format!("{P}/f{k}")).unwrap().is_some());
    }
    let resolve = rate(gets, t.elapsed().as_secs_f64());

    // Traces.
    let all = |_: &str, _: &HandleValue| true;
    let traces = 20;
    let mut q = TraceQuery::new(name(0, 0), Direction::Up);
    q.depth = 10;
    let t = Instant::now();
    let mut nodes = 0;
    for _ in 0..traces {
        nodes = reg.trace(&q, &all).unwrap().nodes.len();
    }
    let up_ms = t.elapsed().as_secs_f64() * 1000.0 / traces as f64;
    assert_eq!(nodes, 2047);
    let q = TraceQuery::new(name(10, 777), Direction::Down);
    let t = Instant::now();
    let mut down_nodes = 0;
    for _ in 0..traces {
        down_nodes = reg.trace(&q, &all).unwrap().nodes.len();
    }
    let down_ms = t.elapsed().as_secs_f64() * 1000.0 / traces as f64;
    reg.close();
    let bytes = dir_size(dir.path());

    println!("baseline raw redb put (batches of {BATCH}): {raw_put:>12.0} puts/s");
    println!("baseline raw redb get:                      {raw_get:>12.0} gets/s");
    println!(
        "create, batched (group commits):            {batched:>12.0} records/s  = {:.2} x raw put",
        batched / raw_put
    );
    println!(
        "create, batched, transparency log off:      {batched_off:>12.0} records/s  (log on / off = {:.3})",
        batched / batched_off
    );
    println!(
        "inclusion proof from the store, {leaves} leaves: {proof_us:>9.1} µs each = {:.1} raw gets",
        proof_us / 1e6 * raw_get
    );
    println!(
        "create, single (one durable commit each):   {single:>12.0} records/s  = {:.4} x raw put",
        single / raw_put
    );
    println!(
        "point resolve:                              {resolve:>12.0} gets/s     = {:.2} x raw get",
        resolve / raw_get
    );
    println!(
        "trace up, 10 hops, {nodes} nodes:            {up_ms:>12.2} ms each = {:.0} raw gets",
        up_ms / 1000.0 * raw_get
    );
    println!(
        "trace down from a meter, {down_nodes} nodes:     {down_ms:>12.3} ms each = {:.0} raw gets",
        down_ms / 1000.0 * raw_get
    );
    println!(
        "disk: {:.0} bytes/record (raw redb of the same values: {:.0})",
        bytes as f64 / (n + 2047 + singles) as f64,
        raw_bytes as f64 / n as f64
    );
}

/// Creates `n` filler records in batches through the group commit: records a second.
/// Loads `n` records into `a` and the same records into `b`, a batch into each in turn;
/// answers each one's records/s over the time its own batches took.
fn load_in_turns(a: &Registry, b: &Registry, n: usize, rng: &mut impl Rng) -> (f64, f64) {
    let (mut ta, mut tb) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let writes: Vec<Write> = (i..end)
            .map(|k| create(format!("{P}/f{k}"), filler(k, rng)))
            .collect();
        let mut turn = [(a, &mut ta), (b, &mut tb)];
        if (i / BATCH) % 2 == 1 {
            turn.reverse();
        }
        for (reg, spent) in turn {
            let batch = writes.clone();
            let t = Instant::now();
            for r in reg.apply_batch(batch) {
                r.unwrap();
            }
            *spent += t.elapsed().as_secs_f64();
        }
        i = end;
    }
    (rate(n, ta), rate(n, tb))
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}
