//! The format sniffer and `inspect`: no panic, bounded memory; when the value also
//! decodes, `inspect` agrees with the decoder about dtype and shape.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::fuzzing;

fuzz_target!(|data: &[u8]| {
    let limits = fuzzing::limits();
    let _ = fuzzing::sniff(data);
    let info = fuzzing::inspect(data, &limits);
    if let Ok(a) = fuzzing::decode_array(data, &limits) {
        let info = info.expect("inspect fails on a value that decodes");
        assert_eq!(info.dtype, a.dtype());
        assert_eq!(info.shape.as_slice(), a.shape());
    }
});
