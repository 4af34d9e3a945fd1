//! zstd decompression: no panic, output never beyond the cap, memory bounded; and any
//! input compressed with zstd decompresses back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::codec::Format;
use redstash::{Compression, fuzzing};

const CAP: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = fuzzing::decompress(Format::Zstd, data, CAP) {
        assert!(out.len() as u64 <= CAP);
    }
    let packed = Compression::Zstd { level: 1 }
        .compress(data)
        .expect("compress");
    let back = fuzzing::decompress(Format::Zstd, &packed, CAP).expect("decompress own output");
    assert_eq!(back, data);
});
