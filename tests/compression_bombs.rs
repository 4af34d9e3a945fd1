//! Compression bombs planted with a plain SET: `ArrayStore::get` and `get_many` fail with a
//! typed error quickly, and the process's peak memory stays small (this binary holds only
//! this test, so `VmHWM` measures the reads).
#![cfg(all(feature = "testkit", feature = "sync", feature = "zstd"))]

use std::io::Write;
use std::time::{Duration, Instant};

use redstash::ValueProblem;
use redstash::testkit::RedisServer;
use redstash::{ArrayStore, Error};

/// Bytes of zeros each bomb expands to after its `.npy` header.
const EXPANSION: usize = 96 << 20;

/// A `.npy` header declaring 4 float32 values (16 data bytes).
fn small_npy_header() -> Vec<u8> {
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + dict.len() + 1) % 64;
    let hlen = dict.len() + pad + 1;
    h.extend_from_slice(&(hlen as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h
}

fn write_bomb(w: &mut dyn Write, head: &[u8]) {
    w.write_all(head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..EXPANSION >> 20 {
        w.write_all(&zeros).unwrap();
    }
}

fn bombs(head: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    write_bomb(&mut z, head);
    let zstd_bomb = z.finish().unwrap();
    let mut d = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(1));
    write_bomb(&mut d, head);
    let zlib_bomb = d.finish().unwrap();
    // Default frame info: no content size in the frame header.
    let mut l = lz4_flex::frame::FrameEncoder::new(Vec::new());
    write_bomb(&mut l, head);
    let lz4_bomb = l.finish().unwrap();
    vec![("zstd", zstd_bomb), ("zlib", zlib_bomb), ("lz4", lz4_bomb)]
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn compression_bombs_fail_fast_with_bounded_memory() {
    let srv = RedisServer::start().unwrap();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let store = ArrayStore::new("bomb");
    let planted: Vec<(&str, Vec<u8>)> = bombs(&small_npy_header())
        .into_iter()
        .chain(bombs(b"not a npy value at all, just bytes"))
        .collect();
    let mut names = Vec::new();
    for (i, (kind, value)) in planted.iter().enumerate() {
        let name = format!("{kind}-{i}");
        redis::cmd("SET")
            .arg(store.key(&name))
            .arg(value.as_slice())
            .exec(&mut con)
            .unwrap();
        names.push(name);
    }
    drop(planted);
    let before = peak_rss_kib();
    for (i, name) in names.iter().enumerate() {
        let t = Instant::now();
        let err = store.get(&mut con, name).unwrap_err();
        let elapsed = t.elapsed();
        if i < 3 {
            assert!(
                matches!(
                    err,
                    Error::InvalidValue {
                        problem: ValueProblem::Corrupt { .. },
                        ..
                    }
                ),
                "{name}: {err:?}"
            );
        } else {
            assert!(
                matches!(
                    err,
                    Error::InvalidValue {
                        problem: ValueProblem::UnknownFormat { .. },
                        ..
                    }
                ),
                "{name}: {err:?}"
            );
        }
        assert!(
            elapsed < Duration::from_millis(500),
            "{name} took {elapsed:?}"
        );
        let err = store.get_many(&mut con, &[name]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidValue {
                    problem: ValueProblem::Corrupt { .. },
                    ..
                } | Error::InvalidValue {
                    problem: ValueProblem::UnknownFormat { .. },
                    ..
                }
            ),
            "{name}: {err:?}"
        );
    }
    let after = peak_rss_kib();
    eprintln!("peak RSS before the reads {before} KiB, after {after} KiB");
    assert!(
        after < before + 32 * 1024,
        "reads raised the peak RSS from {before} KiB to {after} KiB"
    );
}
