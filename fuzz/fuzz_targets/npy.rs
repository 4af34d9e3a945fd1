//! `.npy` decoder: no panic, bounded memory; a decoded array written back as `.npy`
//! decodes to the same array.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::Compression;
use redstash::fuzzing;

fuzz_target!(|data: &[u8]| {
    let limits = fuzzing::limits();
    if let Ok(a) = fuzzing::npy(data, &limits) {
        let again = fuzzing::encode_array(&a, Compression::None).expect("re-encode");
        let b = fuzzing::npy(&again, &limits).expect("decode the re-encoded array");
        assert_eq!(
            (a.dtype(), a.shape(), a.order()),
            (b.dtype(), b.shape(), b.order())
        );
        assert_eq!(a.data(), b.data());
    }
});
