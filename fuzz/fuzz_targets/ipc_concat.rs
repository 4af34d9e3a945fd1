//! IPC concatenation of stored batch values: no panic, bounded memory; the output of a
//! successful concatenation reads back as IPC. Input: a flag byte (bit 0: file format),
//! then the schema value and the batch values separated by `SPLITSEP`.
//! (Concatenation copies bodies: a corrupt body yields an unreadable output, which the
//! stored checksums are to catch; that is not asserted here.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::fuzzing;

const SEP: &[u8] = b"SPLITSEP";

// redstash runs the Arrow reader under `catch_unwind` and turns its panics into
// `Error::Corrupt`; libFuzzer's panic hook would abort on those caught panics, so it is
// replaced by one that is silent unless FUZZ_PRINT_PANICS is set (to see the message of a
// crash when reproducing it). A panic that escapes redstash still aborts (libfuzzer-sys
// catches it around the target and aborts), and is a finding.
fuzz_target!(init: redstash::fuzzing::quiet_panics(), |data: &[u8]| {
    let [flags, rest @ ..] = data else { return };
    let mut parts = Vec::new();
    let mut cur = rest;
    while let Some(i) = cur.windows(SEP.len()).position(|w| w == SEP) {
        parts.push(&cur[..i]);
        cur = &cur[i + SEP.len()..];
    }
    parts.push(cur);
    let limits = fuzzing::limits();
    let file = flags & 1 == 1;
    // Concatenation copies batch bodies without decoding them, so only when every value
    // decodes on its own must the output read back.
    let all_decode = parts[1..].iter().all(|v| fuzzing::arrow_value(v, &limits).is_ok());
    if let Ok(out) = fuzzing::ipc_concat(parts[0], &parts[1..], file, &limits)
        && all_decode
    {
        let read = if file {
            fuzzing::ipc_file(&out, &limits)
        } else {
            fuzzing::ipc_stream(&out, &limits)
        };
        read.expect("the concatenation reads back");
    }
});
