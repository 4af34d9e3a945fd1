//! RESP2 replies of a hostile or broken server to a direct connection: no panic,
//! bounded memory; the replies do not depend on how the bytes are cut into reads.
//! Input: two cut offsets (u8 each, scaled), then the server's bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use redstash::fuzzing;

fuzz_target!(|data: &[u8]| {
    let [a, b, stream @ ..] = data else { return };
    let whole = fuzzing::resp_replies(stream, &[]);
    let cut = fuzzing::resp_replies(stream, &[*a as usize * 7, *b as usize * 131]);
    match (whole, cut) {
        (Ok(w), Ok(c)) => assert_eq!(w, c),
        (Err(_), Err(_)) => {}
        (w, c) => panic!("whole {w:?} but cut {c:?}"),
    }
});
