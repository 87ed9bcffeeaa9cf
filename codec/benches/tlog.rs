//! Transparency-log proof maths at scale (a bench binary, not criterion: building the tree takes
//! seconds, so each figure is measured once per run over many operations). A tree of N leaves
//! (default 10^7) is built in memory through the same append the write path uses; then
//! inclusion proofs at random leaves, their checks, and consistency proofs are timed, each
//! beside a baseline measured in the same run: one SHA-256 of 64 bytes.
//!
//!   cargo bench -p suyuan-codec --bench tlog
//!   SUYUAN_BENCH_LEAVES=1000000 cargo bench -p suyuan-codec --bench tlog   # quick

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use suyuan_codec::tlog::{
    Hash, HashReader, TlogError, check_consistency, check_inclusion, consistency_proof,
    inclusion_proof, leaf_hash, stored_hashes_for_leaf, tree_hash,
};

/// The stored hashes in memory, counting reads.
struct Mem {
    hashes: Vec<Hash>,
    reads: RefCell<u64>,
}

impl HashReader for Mem {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        *self.reads.borrow_mut() += indexes.len() as u64;
        Ok(indexes.iter().map(|&i| self.hashes[i as usize]).collect())
    }
}

fn main() {
    let n: u64 = std::env::var("SUYUAN_BENCH_LEAVES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let mut m = Mem {
        hashes: Vec::with_capacity((2 * n) as usize),
        reads: RefCell::new(0),
    };
    let t = Instant::now();
    for i in 0..n {
        let leaf = leaf_hash(&i.to_be_bytes());
        let new = stored_hashes_for_leaf(i, leaf, &m).unwrap();
        m.hashes.extend(new);
    }
    println!(
        "tlog bench: {n} leaves appended in {:.1} s ({} stored hashes)",
        t.elapsed().as_secs_f64(),
        m.hashes.len()
    );
    let root = tree_hash(n, &m).unwrap();

    // Baseline: one SHA-256 of 64 bytes, the unit of every proof's work.
    let rounds = 1_000_000u32;
    let t = Instant::now();
    let mut h = [0u8; 64];
    for i in 0..rounds {
        h[0] = i as u8;
        black_box(Sha256::digest(black_box(&h)));
    }
    let base_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let proofs = 100_000u32;
    *m.reads.borrow_mut() = 0;
    let t = Instant::now();
    let mut made = Vec::with_capacity(proofs as usize);
    for _ in 0..proofs {
        let i = rng.gen_range(0..n);
        made.push((i, inclusion_proof(n, i, &m).unwrap()));
    }
    let prove_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(proofs);
    let reads = *m.reads.borrow() as f64 / f64::from(proofs);
    let t = Instant::now();
    for (i, p) in &made {
        check_inclusion(p, n, &root, *i, &leaf_hash(&i.to_be_bytes())).unwrap();
    }
    let check_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(proofs);
    let cons = 10_000u32;
    let t = Instant::now();
    for _ in 0..cons {
        let old = rng.gen_range(1..n);
        let p = consistency_proof(n, old, &m).unwrap();
        black_box(p);
    }
    let cons_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(cons);
    let old = n / 3;
    let p = consistency_proof(n, old, &m).unwrap();
    check_consistency(&p, n, &root, old, &tree_hash(old, &m).unwrap()).unwrap();

    println!("| at {n} leaves | µs | × one SHA-256 of 64 bytes ({base_us:.3} µs) |");
    println!("|---|---|---|");
    println!(
        "| inclusion proof ({:.1} hashes, {reads:.1} stored hashes read) | {prove_us:.2} | {:.1} |",
        made[0].1.len() as f64,
        prove_us / base_us
    );
    println!("| its check | {check_us:.2} | {:.1} |", check_us / base_us);
    println!(
        "| consistency proof to a random older size | {cons_us:.2} | {:.1} |",
        cons_us / base_us
    );
}
