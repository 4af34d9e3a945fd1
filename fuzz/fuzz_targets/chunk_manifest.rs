//! Chunked-array manifest (with or without checksum): no panic; a parsed manifest writes
//! back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(back)) = fuzzing::chunk_manifest(data) {
        assert_eq!(back, data);
    }
});
