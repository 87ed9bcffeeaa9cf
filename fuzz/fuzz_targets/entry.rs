//! Fuzz target `entry`: the transparency log's entry decoder; the property is
//! suyuan_registry::log::fuzz_entry, replayed over the corpus by registry/tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suyuan_registry::log::fuzz_entry(data));
