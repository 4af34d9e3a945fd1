//! Arrow: an Arrow value as stored (an IPC stream). No panic, no abort, bounded memory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::fuzzing;

// redstash runs the Arrow reader under `catch_unwind` and turns its panics into
// `Error::Corrupt`; libFuzzer's panic hook would abort on those caught panics, so it is
// replaced by one that is silent unless FUZZ_PRINT_PANICS is set (to see the message of a
// crash when reproducing it). A panic that escapes redstash still aborts (libfuzzer-sys
// catches it around the target and aborts), and is a finding.
fuzz_target!(init: redstash::fuzzing::quiet_panics(), |data: &[u8]| {
    let _ = fuzzing::arrow_value(data, &fuzzing::limits());
});
