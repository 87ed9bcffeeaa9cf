//! Fuzz target `value`: the properties are in suyuan_codec::fuzzing::value, shared with the stable
//! corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suyuan_codec::fuzzing::value(data));
