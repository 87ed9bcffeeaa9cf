//! Replays the fuzz corpus (fuzz/corpus/<target>/) through the same checks the cargo-fuzz
//! targets run, so every `cargo test` re-checks every input the fuzzers ever kept.

use std::path::PathBuf;

use suyuan_codec::fuzzing::TARGETS;

#[test]
fn fuzz_corpus_replays_clean() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, check) in TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (the corpus must be there)", dir.display()));
        let mut n = 0;
        for e in entries {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{name}: {} fails its check", path.display());
            n += 1;
        }
        assert!(n > 0, "{name}: empty corpus");
    }
}
