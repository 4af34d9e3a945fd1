//! Table manifest (JSON with a hex IPC schema): no panic, bounded memory; a parsed
//! manifest encodes to a manifest that parses and encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::fuzzing;

fuzz_target!(|data: &[u8]| {
    let limits = fuzzing::limits();
    if let Ok(once) = fuzzing::table_manifest("t", data, &limits) {
        let twice = fuzzing::table_manifest("t", &once, &limits).expect("own manifest parses");
        assert_eq!(once, twice);
    }
});
