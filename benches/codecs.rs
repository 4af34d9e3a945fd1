//! Codec throughput, no server: encode and decode of `.npy` values, plain and inside
//! lz4 / zlib / zstd frames, next to a memcpy baseline of the same bytes.
//!
//! Datasets (deterministic, 2^20 values each): standard-normal f64 (8 MB), the same
//! rounded to 2 decimals, and Poisson(3) counts as i32 (4 MB). Throughput is counted in
//! raw `.npy` bytes for every codec, so the numbers compare directly.
//!
//! `decode` is what `ArrayStore::get` does after the read: `decode_array` (which
//! decompresses compressed values; a plain `.npy` is a zero-copy slice). `decode+to_vec`
//! also copies the elements out into a typed `Vec`, the closest analogue of `to_vec()`.
//!
//! Besides criterion's output the bench prints two markdown tables: compression ratios
//! (before the benchmarks) and a median-of-runs summary with ratios to memcpy (after).
//!
//! `cargo bench --bench codecs [--features zstd]`

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use redstash::codec::{ArrayCodec, Compressed, Limits, Npy, decode_array};
use redstash::{DType, RawArray};

#[path = "common/data.rs"]
mod data;
#[path = "common/timing.rs"]
mod timing;

const N: usize = 1 << 20;

struct Dataset {
    name: &'static str,
    raw: RawArray,
    /// Size of the plain `.npy` encoding (header + data).
    npy_len: usize,
}

fn datasets() -> Vec<Dataset> {
    let normal = data::normal_f64(1, N);
    let rounded: Vec<f64> = normal.iter().map(|x| (x * 100.0).round() / 100.0).collect();
    let counts = data::poisson_i32(2, 3.0, N);
    let arrays = [
        ("normal f64 (8 MB)", RawArray::from_vec(vec![N], normal)),
        (
            "normal f64, 2 decimals (8 MB)",
            RawArray::from_vec(vec![N], rounded),
        ),
        ("poisson(3) i32 (4 MB)", RawArray::from_vec(vec![N], counts)),
    ];
    arrays
        .into_iter()
        .map(|(name, raw)| {
            let raw = raw.expect("shape matches");
            let npy_len = Npy.encode(&raw.as_array_ref()).expect("encode").len();
            Dataset { name, raw, npy_len }
        })
        .collect()
}

fn codecs() -> Vec<Box<dyn ArrayCodec>> {
    #[allow(unused_mut)]
    let mut v: Vec<Box<dyn ArrayCodec>> = vec![
        Box::new(Npy),
        Box::new(Compressed::lz4()),
        Box::new(Compressed::zlib(1)),
        Box::new(Compressed::zlib(6)),
    ];
    #[cfg(feature = "zstd")]
    {
        v.push(Box::new(Compressed::zstd(1)));
        v.push(Box::new(Compressed::zstd(3)));
    }
    v
}

fn encode(codec: &dyn ArrayCodec, raw: &RawArray) -> Bytes {
    Bytes::from(codec.encode(&raw.as_array_ref()).expect("encode"))
}

/// Decode and touch the result (length, first and last byte of the data).
fn decode(value: &Bytes) -> RawArray {
    let a = decode_array(value.clone(), &Limits::default()).expect("decode");
    let d = a.data();
    black_box((d.len(), d.first(), d.last()));
    a
}

/// Decode, then copy the elements out into a typed `Vec` (dropped at once).
fn decode_to_vec(value: &Bytes) -> usize {
    let a = decode_array(value.clone(), &Limits::default()).expect("decode");
    match a.dtype() {
        DType::F64 => black_box(a.to_vec::<f64>().expect("f64")).len(),
        DType::I32 => black_box(a.to_vec::<i32>().expect("i32")).len(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn memcpy_fresh(src: &[u8]) -> Vec<u8> {
    black_box(src).to_vec()
}

fn memcpy_reused(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(black_box(src));
    black_box(&*dst);
}

fn print_ratio_table(sets: &[Dataset], codecs: &[Box<dyn ArrayCodec>]) {
    let mut t = String::from("\n### Compression ratio (raw .npy size / encoded size)\n\n| codec |");
    for d in sets {
        t += &format!(" {} |", d.name);
    }
    t += "\n|---|";
    t += &"---:|".repeat(sets.len());
    t += "\n";
    for c in codecs {
        t += &format!("| {} |", c.name());
        for d in sets {
            let enc = encode(c.as_ref(), &d.raw);
            // Round-trip check: the benchmarks are only meaningful if decoding is exact.
            assert_eq!(decode(&enc), d.raw, "{} round trip of {}", c.name(), d.name);
            t += &format!(" {:.2} |", d.npy_len as f64 / enc.len() as f64);
        }
        t += "\n";
    }
    eprintln!("{t}");
}

fn bench_dataset(
    g: &mut BenchmarkGroup<'_, WallTime>,
    d: &Dataset,
    codecs: &[Box<dyn ArrayCodec>],
) {
    let src = d.raw.data().as_ref();
    g.bench_function("memcpy/to_vec", |b| b.iter(|| memcpy_fresh(src)));
    let mut dst = vec![0u8; src.len()];
    g.bench_function("memcpy/reused buffer", |b| {
        b.iter(|| memcpy_reused(src, &mut dst))
    });
    for c in codecs {
        let name = c.name();
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| c.encode(&black_box(&d.raw).as_array_ref()).expect("encode"))
        });
        let enc = encode(c.as_ref(), &d.raw);
        g.bench_function(format!("decode/{name}"), |b| b.iter(|| decode(&enc)));
        if name == "npy" {
            g.bench_function(format!("decode+to_vec/{name}"), |b| {
                b.iter(|| decode_to_vec(&enc))
            });
        }
    }
}

fn run_criterion(c: &mut Criterion, sets: &[Dataset], codecs: &[Box<dyn ArrayCodec>]) {
    for d in sets {
        let mut g = c.benchmark_group(format!("codecs/{}", d.name));
        g.throughput(Throughput::Bytes(d.npy_len as u64));
        // Compressed encodes of 8 MB take up to a few hundred ms: one iteration per
        // sample keeps them inside the time budget.
        g.sampling_mode(SamplingMode::Flat);
        bench_dataset(&mut g, d, codecs);
        g.finish();
    }
}

/// Median-of-runs summary with ratios to memcpy (`to_vec` into a fresh `Vec`).
fn print_summary(sets: &[Dataset], codecs: &[Box<dyn ArrayCodec>]) {
    let budget = Duration::from_millis(400);
    let mut t = String::from(
        "\n### Codec throughput (median of runs; GB/s of raw .npy bytes; ratio = memcpy to_vec time / op time, higher is faster)\n\n\
         | dataset | op | GB/s | vs memcpy (to_vec) |\n|---|---|---:|---:|\n",
    );
    for d in sets {
        let src = d.raw.data().as_ref();
        let base = timing::median_within(budget, 9, 101, || {
            black_box(memcpy_fresh(src));
        });
        let mut dst = vec![0u8; src.len()];
        let reused = timing::median_within(budget, 9, 101, || memcpy_reused(src, &mut dst));
        let mut row = |op: &str, dur: Duration| {
            t += &format!(
                "| {} | {op} | {:.2} | {:.2}x |\n",
                d.name,
                timing::gbps(d.npy_len, dur),
                base.as_secs_f64() / dur.as_secs_f64()
            );
        };
        row("memcpy (to_vec)", base);
        row("memcpy (reused buffer)", reused);
        for c in codecs {
            let name = c.name();
            let enc_t = timing::median_within(budget, 5, 101, || {
                black_box(c.encode(&d.raw.as_array_ref()).expect("encode"));
            });
            row(&format!("encode {name}"), enc_t);
            let enc = encode(c.as_ref(), &d.raw);
            let dec_t = timing::median_within(budget, 5, 101, || {
                black_box(decode(&enc));
            });
            row(&format!("decode {name}"), dec_t);
            if name == "npy" {
                let dv_t = timing::median_within(budget, 9, 101, || {
                    black_box(decode_to_vec(&enc));
                });
                row(&format!("decode+to_vec {name}"), dv_t);
            }
        }
    }
    eprintln!("{t}");
}

fn main() {
    let sets = datasets();
    let codecs = codecs();
    print_ratio_table(&sets, &codecs);

    // 45 benchmarks: 1.5 s of measurement each keeps the binary under 3 minutes on
    // 2 cores.
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_millis(1500))
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    run_criterion(&mut c, &sets, &codecs);
    c.final_summary();

    if timing::benchmarking() {
        print_summary(&sets, &codecs);
    }
}
