//! Replays the `entry` fuzz corpus (fuzz/corpus/entry/) through the property its cargo-fuzz
//! target checks.

use std::path::PathBuf;

#[test]
fn entry_fuzz_corpus_replays_clean() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/entry");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| suyuan_registry::log::fuzz_entry(&data));
        assert!(r.is_ok(), "{} fails its check", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus");
}
