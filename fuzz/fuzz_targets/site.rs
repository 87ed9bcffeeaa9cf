//! Fuzz target `site`: the properties are in suyuan_codec::fuzzing::site, shared with the stable
//! corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suyuan_codec::fuzzing::site(data));
