//! The maths of an append-only Merkle tree log (RFC 6962 hashing, as C2SP tlog-tiles requires),
//! kept as Go's `golang.org/x/mod/sumdb/tlog` keeps it: every leaf hash and every hash of a
//! complete subtree is stored once, in a fixed order ([`stored_hash_index`]), so appending a
//! leaf writes a few hashes and a proof reads O(log n) of them, never rebuilding the tree.
//! Storage is the caller's ([`HashReader`]); nothing here does I/O.
//!
//! Also the tile layout of C2SP tlog-tiles: tiles of 2^8 hashes, their paths
//! (`tile/<L>/<N>[.p/<W>]`, `N` in groups of three digits prefixed by `x`) and contents.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The height of a tile: 2^8 = 256 hashes a full tile.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// What a proof or tree hash could not be computed or checked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    #[error("invalid tree sizes or index: {0}")]
    Invalid(String),
    #[error("the proof does not verify")]
    ProofFailed,
    #[error("stored hashes could not be read: {0}")]
    Read(String),
}

/// Reads stored hashes by their [`stored_hash_index`], in the order asked.
pub trait HashReader {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError>;
}

impl<F> HashReader for F
where
    F: Fn(&[u64]) -> Result<Vec<Hash>, TlogError>,
{
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        self(indexes)
    }
}

/// RFC 6962: the hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 6962: the root of the empty tree, SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Where the `n`th hash at `level` (level 0: leaves) is stored: level L's nth hash right after
/// level L+1's (2n+1)th, so that every append writes at the end.
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    let mut n = n;
    for _ in 0..level {
        n = 2 * n + 1;
    }
    let mut i = 0u64;
    let mut m = n;
    while m > 0 {
        i += m;
        m >>= 1;
    }
    i + u64::from(level)
}

/// How many hashes a tree of `n` leaves stores.
pub fn stored_hash_count(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut count = stored_hash_index(0, n - 1) + 1;
    let mut i = n - 1;
    while i & 1 != 0 {
        count += 1;
        i >>= 1;
    }
    count
}

/// Which append wrote stored hash `i`: the leaf `n` and the place among the hashes its append
/// wrote (0: the leaf's own hash, then the subtrees it completed), so that a store may keep
/// each leaf's hashes together.
pub fn leaf_of_stored_hash(i: u64) -> (u64, u64) {
    // stored_hash_count grows with n; the leaf is the last n whose hashes start at or before i.
    let (mut lo, mut hi) = (0u64, i.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if stored_hash_count(mid) <= i {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (lo, i - stored_hash_count(lo))
}

/// The stored hashes that appending leaf `n` (zero based) combines with: the roots of the
/// complete subtrees the new leaf completes, lowest level last.
pub fn append_reads(n: u64) -> Vec<u64> {
    let m = (n + 1).trailing_zeros();
    (0..m)
        .rev()
        .map(|i| stored_hash_index(i, (n >> i) - 1))
        .collect()
}

/// The hashes to store, in order from index [`stored_hash_count`]`(n)`, when leaf `n` (zero
/// based) with hash `leaf` is appended: the leaf hash, then one hash per subtree it completes.
pub fn stored_hashes_for_leaf(
    n: u64,
    leaf: Hash,
    r: &impl HashReader,
) -> Result<Vec<Hash>, TlogError> {
    let indexes = append_reads(n);
    let m = indexes.len() as u32;
    let old = r.read_hashes(&indexes)?;
    check_len(&old, indexes.len())?;
    let mut hashes = Vec::with_capacity(m as usize + 1);
    let mut h = leaf;
    hashes.push(h);
    for i in 0..m as usize {
        h = node_hash(&old[m as usize - 1 - i], &h);
        hashes.push(h);
    }
    Ok(hashes)
}

fn check_len(got: &[Hash], want: usize) -> Result<(), TlogError> {
    if got.len() == want {
        Ok(())
    } else {
        Err(TlogError::Read(format!(
            "asked for {want} hashes, got {}",
            got.len()
        )))
    }
}

/// The largest power of two smaller than `n` (n ≥ 2), and its exponent.
fn split(n: u64) -> (u64, u32) {
    let mut l = 0u32;
    // 2^63 is the largest power of two a u64 holds: stop there, whatever `n` is.
    while l < 63 && (1u64 << (l + 1)) < n {
        l += 1;
    }
    (1u64 << l, l)
}

/// The stored hashes whose combination is the hash of leaves `lo..hi`: complete subtrees, as
/// large as possible from the left.
fn sub_tree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let (k, level) = split(hi - lo + 1);
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

fn sub_tree_count(mut lo: u64, hi: u64) -> usize {
    let mut n = 0;
    while lo < hi {
        let (k, _) = split(hi - lo + 1);
        n += 1;
        lo += k;
    }
    n
}

/// The hash of leaves `lo..hi` from the hashes [`sub_tree_index`] named, consumed from
/// the front of `hashes`.
fn sub_tree_hash(lo: u64, hi: u64, hashes: &[Hash]) -> Result<(Hash, &[Hash]), TlogError> {
    let n = sub_tree_count(lo, hi);
    if n == 0 || hashes.len() < n {
        return Err(TlogError::Read("too few hashes for a subtree".into()));
    }
    let mut h = hashes[n - 1];
    for i in (0..n - 1).rev() {
        h = node_hash(&hashes[i], &h);
    }
    Ok((h, &hashes[n..]))
}

/// The root of the tree of the first `n` leaves.
pub fn tree_hash(n: u64, r: &impl HashReader) -> Result<Hash, TlogError> {
    if n == 0 {
        return Ok(empty_root());
    }
    let mut need = Vec::new();
    sub_tree_index(0, n, &mut need);
    let hashes = r.read_hashes(&need)?;
    check_len(&hashes, need.len())?;
    Ok(sub_tree_hash(0, n, &hashes)?.0)
}

fn leaf_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if lo + 1 == hi {
        return;
    }
    let (k, _) = split(hi - lo);
    if n < lo + k {
        leaf_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        leaf_proof_index(lo + k, hi, n, need);
    }
}

fn leaf_proof<'a>(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &'a [Hash],
    out: &mut Vec<Hash>,
) -> Result<&'a [Hash], TlogError> {
    if lo + 1 == hi {
        return Ok(hashes);
    }
    let (k, _) = split(hi - lo);
    let (rest, th) = if n < lo + k {
        let rest = leaf_proof(lo, lo + k, n, hashes, out)?;
        let (th, rest) = sub_tree_hash(lo + k, hi, rest)?;
        (rest, th)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes)?;
        (leaf_proof(lo + k, hi, n, rest, out)?, th)
    };
    out.push(th);
    Ok(rest)
}

/// The RFC 6962 inclusion proof of leaf `index` in the tree of `size` leaves, leaf side
/// first.
pub fn inclusion_proof(size: u64, index: u64, r: &impl HashReader) -> Result<Vec<Hash>, TlogError> {
    if index >= size {
        return Err(TlogError::Invalid(format!(
            "leaf {index} is not in a tree of {size}"
        )));
    }
    let mut need = Vec::new();
    leaf_proof_index(0, size, index, &mut need);
    if need.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = r.read_hashes(&need)?;
    check_len(&hashes, need.len())?;
    let mut out = Vec::new();
    leaf_proof(0, size, index, &hashes, &mut out)?;
    Ok(out)
}

fn run_inclusion(p: &[Hash], lo: u64, hi: u64, n: u64, leaf: Hash) -> Result<Hash, TlogError> {
    if lo + 1 == hi {
        return if p.is_empty() {
            Ok(leaf)
        } else {
            Err(TlogError::ProofFailed)
        };
    }
    let Some((last, rest)) = p.split_last() else {
        return Err(TlogError::ProofFailed);
    };
    let (k, _) = split(hi - lo);
    Ok(if n < lo + k {
        node_hash(&run_inclusion(rest, lo, lo + k, n, leaf)?, last)
    } else {
        node_hash(last, &run_inclusion(rest, lo + k, hi, n, leaf)?)
    })
}

/// Whether `proof` shows leaf `index` with hash `leaf` in the tree of `size` leaves and root
/// `root`.
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: &Hash,
    index: u64,
    leaf: &Hash,
) -> Result<(), TlogError> {
    if index >= size || proof.len() > 64 {
        return Err(TlogError::ProofFailed);
    }
    if run_inclusion(proof, 0, size, index, *leaf)? == *root {
        Ok(())
    } else {
        Err(TlogError::ProofFailed)
    }
}

fn tree_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if n == hi {
        if lo != 0 {
            sub_tree_index(lo, hi, need);
        }
        return;
    }
    let (k, _) = split(hi - lo);
    if n <= lo + k {
        tree_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        tree_proof_index(lo + k, hi, n, need);
    }
}

fn tree_proof<'a>(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &'a [Hash],
    out: &mut Vec<Hash>,
) -> Result<&'a [Hash], TlogError> {
    if n == hi {
        if lo == 0 {
            return Ok(hashes);
        }
        let (th, rest) = sub_tree_hash(lo, hi, hashes)?;
        out.push(th);
        return Ok(rest);
    }
    let (k, _) = split(hi - lo);
    let (rest, th) = if n <= lo + k {
        let rest = tree_proof(lo, lo + k, n, hashes, out)?;
        let (th, rest) = sub_tree_hash(lo + k, hi, rest)?;
        (rest, th)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes)?;
        (tree_proof(lo + k, hi, n, rest, out)?, th)
    };
    out.push(th);
    Ok(rest)
}

/// The RFC 6962 consistency proof that the tree of `old` leaves is a prefix of the tree of
/// `new` leaves (empty when they are the same size).
pub fn consistency_proof(new: u64, old: u64, r: &impl HashReader) -> Result<Vec<Hash>, TlogError> {
    if old < 1 || old > new {
        return Err(TlogError::Invalid(format!(
            "no consistency proof from {old} to {new}"
        )));
    }
    let mut need = Vec::new();
    tree_proof_index(0, new, old, &mut need);
    if need.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = r.read_hashes(&need)?;
    check_len(&hashes, need.len())?;
    let mut out = Vec::new();
    tree_proof(0, new, old, &hashes, &mut out)?;
    Ok(out)
}

/// Runs a consistency proof: the old tree's root and the new tree's root it implies.
fn run_tree(p: &[Hash], lo: u64, hi: u64, n: u64, old: Hash) -> Result<(Hash, Hash), TlogError> {
    if n == hi {
        if lo == 0 {
            return if p.is_empty() {
                Ok((old, old))
            } else {
                Err(TlogError::ProofFailed)
            };
        }
        return match p {
            [h] => Ok((*h, *h)),
            _ => Err(TlogError::ProofFailed),
        };
    }
    let Some((last, rest)) = p.split_last() else {
        return Err(TlogError::ProofFailed);
    };
    let (k, _) = split(hi - lo);
    if n <= lo + k {
        let (oh, th) = run_tree(rest, lo, lo + k, n, old)?;
        Ok((oh, node_hash(&th, last)))
    } else {
        let (oh, th) = run_tree(rest, lo + k, hi, n, old)?;
        Ok((node_hash(last, &oh), node_hash(last, &th)))
    }
}

/// Whether `proof` shows the tree of `old` leaves with root `old_root` to be a prefix of the
/// tree of `new` leaves with root `new_root`.
pub fn check_consistency(
    proof: &[Hash],
    new: u64,
    new_root: &Hash,
    old: u64,
    old_root: &Hash,
) -> Result<(), TlogError> {
    if old < 1 || old > new || proof.len() > 128 {
        return Err(TlogError::ProofFailed);
    }
    let (oh, th) = run_tree(proof, 0, new, old, *old_root)?;
    if oh == *old_root && th == *new_root {
        Ok(())
    } else {
        Err(TlogError::ProofFailed)
    }
}

/// A tile of C2SP tlog-tiles: `level` counts tiles (level 0 holds leaf hashes, level 1 the
/// hashes of 256-leaf subtrees, …), `n` is its place in the level, `width` the hashes it
/// holds (256 when full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub level: u32,
    pub n: u64,
    pub width: u64,
}

impl Tile {
    /// The tile's path under the log's prefix: `tile/<L>/<N>[.p/<W>]`, or for entries
    /// (`level` ignored) `tile/entries/<N>[.p/<W>]`.
    pub fn path(&self, entries: bool) -> String {
        let level = if entries {
            "entries".to_string()
        } else {
            self.level.to_string()
        };
        let mut p = format!("tile/{level}/{}", index_path(self.n));
        if self.width < TILE_WIDTH {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Parses `<L or entries>/<N>[.p/<W>]` (what follows `tile/`): the tile and whether it
    /// is an entry bundle.
    pub fn parse(rest: &str) -> Option<(Tile, bool)> {
        let (level, rest) = rest.split_once('/')?;
        let entries = level == "entries";
        let level: u32 = if entries {
            0
        } else {
            // One spelling: no leading zero, and no level a tree of 2^64 leaves lacks.
            let l = parse_decimal(level)?;
            if l > 8 {
                return None;
            }
            l as u32
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w: u64 = parse_decimal(w)?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return None;
                }
                (i, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let groups: Vec<&str> = index.split('/').collect();
        let mut n = 0u64;
        for (i, g) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let digits = if last { *g } else { g.strip_prefix('x')? };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n = n
                .checked_mul(1000)?
                .checked_add(digits.parse::<u64>().ok()?)?;
        }
        // One spelling per index: no superfluous leading groups.
        if index_path(n) != index {
            return None;
        }
        Some((Tile { level, n, width }, entries))
    }

    /// The stored-hash indexes of the hashes this tile holds, in order.
    pub fn hash_indexes(&self) -> Vec<u64> {
        let level = self.level * TILE_HEIGHT;
        (0..self.width)
            .map(|i| stored_hash_index(level, self.n * TILE_WIDTH + i))
            .collect()
    }

    /// Whether the tile exists in a tree of `size` leaves (a partial tile only at the edge).
    pub fn within(&self, size: u64) -> bool {
        let shift = self.level * TILE_HEIGHT;
        let hashes_at_level = if shift >= 64 { 0 } else { size >> shift };
        let full = hashes_at_level / TILE_WIDTH;
        if self.width == TILE_WIDTH {
            self.n < full
        } else {
            self.n == full && hashes_at_level % TILE_WIDTH == self.width
        }
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// `N` as tlog-tiles writes it: groups of three digits, every group but the last with `x`.
fn index_path(n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut m = n / 1000;
    while m > 0 {
        groups.push(format!("x{:03}", m % 1000));
        m /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A tree in memory, built by appending through [`stored_hashes_for_leaf`].
    struct Mem(RefCell<Vec<Hash>>);

    impl HashReader for Mem {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
            let v = self.0.borrow();
            indexes
                .iter()
                .map(|&i| {
                    v.get(i as usize)
                        .copied()
                        .ok_or(TlogError::Read(i.to_string()))
                })
                .collect()
        }
    }

    fn tree(n: u64) -> Mem {
        let m = Mem(RefCell::new(Vec::new()));
        for i in 0..n {
            assert_eq!(m.0.borrow().len() as u64, stored_hash_count(i));
            let hs = stored_hashes_for_leaf(i, leaf_hash(&i.to_be_bytes()), &m).unwrap();
            m.0.borrow_mut().extend(hs);
        }
        m
    }

    /// RFC 6962's MTH, recursively, for comparison.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let (k, _) = split(n as u64);
                node_hash(&mth(&leaves[..k as usize]), &mth(&leaves[k as usize..]))
            }
        }
    }

    #[test]
    fn roots_and_proofs_agree_with_the_recursive_definition() {
        let m = tree(70);
        let leaves: Vec<Hash> = (0..70u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for size in 1..=70u64 {
            let root = tree_hash(size, &m).unwrap();
            assert_eq!(root, mth(&leaves[..size as usize]), "size {size}");
            for i in 0..size {
                let p = inclusion_proof(size, i, &m).unwrap();
                check_inclusion(&p, size, &root, i, &leaves[i as usize]).unwrap();
                let wrong = leaf_hash(b"other");
                assert!(check_inclusion(&p, size, &root, i, &wrong).is_err());
            }
            for old in 1..=size {
                let p = consistency_proof(size, old, &m).unwrap();
                let old_root = tree_hash(old, &m).unwrap();
                check_consistency(&p, size, &root, old, &old_root).unwrap();
                if old < size {
                    assert!(check_consistency(&p, size, &old_root, old, &root).is_err());
                }
            }
        }
        assert_eq!(tree_hash(0, &m).unwrap(), empty_root());
        assert!(inclusion_proof(3, 3, &m).is_err());
        assert!(consistency_proof(3, 0, &m).is_err());
    }

    #[test]
    fn every_stored_hash_is_found_with_the_leaf_that_wrote_it() {
        let mut i = 0u64;
        for n in 0..5000u64 {
            // The leaf's own hash and one per subtree it completes.
            let wrote = 1 + u64::from((n + 1).trailing_zeros());
            for off in 0..wrote {
                assert_eq!(leaf_of_stored_hash(i), (n, off), "stored hash {i}");
                i += 1;
            }
        }
    }

    #[test]
    fn tile_paths_are_spelled_as_tlog_tiles_spells_them() {
        let t = Tile {
            level: 0,
            n: 1_234_067,
            width: 256,
        };
        assert_eq!(t.path(false), "tile/0/x001/x234/067");
        let p = Tile {
            level: 1,
            n: 5,
            width: 7,
        };
        assert_eq!(p.path(false), "tile/1/005.p/7");
        assert_eq!(p.path(true), "tile/entries/005.p/7");
        assert_eq!(Tile::parse("0/x001/x234/067"), Some((t, false)));
        assert_eq!(
            Tile::parse("entries/005.p/7"),
            Some((Tile { level: 0, ..p }, true))
        );
        for bad in [
            "0/1",
            "0/x000/001",
            "0/005.p/256",
            "0/005.p/0",
            "0/005.p/07",
            "a/001",
            "0/x01/001",
            "00/001",
        ] {
            assert_eq!(Tile::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_tile_holds_the_hashes_of_its_level() {
        let m = tree(600);
        // Level 1, tile 0: the roots of the first two 256-leaf subtrees.
        let t = Tile {
            level: 1,
            n: 0,
            width: 2,
        };
        assert!(t.within(600) && t.within(767) && !t.within(768) && !t.within(511));
        let hs = m.read_hashes(&t.hash_indexes()).unwrap();
        let leaves: Vec<Hash> = (0..600u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        assert_eq!(hs[0], mth(&leaves[..256]));
        assert_eq!(hs[1], mth(&leaves[256..512]));
        let full = Tile {
            level: 0,
            n: 1,
            width: 256,
        };
        assert!(full.within(600));
        assert!(!Tile { n: 2, ..full }.within(600));
        assert!(
            Tile {
                n: 2,
                width: 88,
                level: 0
            }
            .within(600)
        );
    }
}
