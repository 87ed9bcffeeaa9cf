//! Fuzz target `scheme`: the properties are in suyuan_codec::fuzzing::scheme, shared with the
//! stable corpus replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| suyuan_codec::fuzzing::scheme(data));
