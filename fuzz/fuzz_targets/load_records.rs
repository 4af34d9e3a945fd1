//! The load sources (CSV, JSON Lines) and the mapping of their records to commands:
//! no panic and well-formed RESP on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = redstash::fuzzing::load_records(data);
});
