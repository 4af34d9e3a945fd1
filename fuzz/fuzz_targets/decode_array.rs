//! Any stored array value (`.npy` in up to four compression layers): no panic, bounded
//! memory (the fuzz limits cap each layer at 64 MiB).
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::fuzzing;

fuzz_target!(|data: &[u8]| {
    let limits = fuzzing::limits();
    if let Ok(a) = fuzzing::decode_array(data, &limits) {
        assert!(a.nbytes() as u64 <= limits.max_value_len);
    }
});
