//! zlib decompression: no panic, output never beyond the cap, memory bounded; and any
//! input compressed with zlib decompresses back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::codec::Format;
use redstash::{Compression, fuzzing};

const CAP: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = fuzzing::decompress(Format::Zlib, data, CAP) {
        assert!(out.len() as u64 <= CAP);
    }
    let packed = Compression::Zlib { level: 1 }
        .compress(data)
        .expect("compress");
    let back = fuzzing::decompress(Format::Zlib, &packed, CAP).expect("decompress own output");
    assert_eq!(back, data);
});
