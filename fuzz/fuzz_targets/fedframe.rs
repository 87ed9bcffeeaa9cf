//! Fuzz target `fedframe`: the properties are in suyuan_codec::fuzzing::fedframe, shared with
//! the stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suyuan_codec::fuzzing::fedframe(data));
