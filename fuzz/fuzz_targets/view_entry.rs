//! Feature-view registry entry: no panic; a parsed entry written back parses to the
//! same entry.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Ok(once) = fuzzing::view_entry("v", data) {
        let twice = fuzzing::view_entry("v", &once).expect("own entry parses");
        assert_eq!(once, twice);
    }
});
