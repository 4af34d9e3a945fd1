//! How long an async read blocks its runtime thread, and what moving a decode to tokio's
//! blocking threads costs: the measurements behind `exec::OFFLOAD_THRESHOLD`.
//!
//! On a current-thread runtime (one thread runs every task), it prints:
//!
//! 1. the round trip of an empty `spawn_blocking` (the fixed cost of an offload);
//! 2. the time of an lz4 array decode by size (the work an offload moves);
//! 3. the median latency of small lz4 `get_async`s (which stay on the runtime thread);
//! 4. for a 64 MB lz4 `get_as_async`, how long it took and the longest gap of a task
//!    ticking every millisecond next to it (how long the runtime thread was blocked).
//!
//! ```sh
//! cargo run --release --example async_decode --features "tokio testkit"
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redstash::codec::{ArrayCodec, Compressed, decode_array};
use redstash::direct::DirectAsyncConnection;
use redstash::exec::AsyncConnection;
use redstash::testkit::RedisServer;
use redstash::{ArrayStore, RawArray};

/// `n` f32 values that lz4 compresses a little (about 2:1), like real measurements.
fn values(n: usize) -> RawArray {
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as f32) * 0.001).sin().mul_add(1000.0, 0.0).round() / 1000.0)
        .collect();
    RawArray::from_vec(vec![n], v).expect("shape matches")
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Run `get` while a task ticks every millisecond; the get's time and the longest gap
/// between ticks (or between the get's start and the first tick, the last tick and its
/// end).
async fn blocked<F: std::future::Future>(get: F) -> (Duration, Duration, usize) {
    let done = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let done = Arc::clone(&done);
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut at = Vec::new();
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                at.push(Instant::now());
            }
            at
        }
    });
    // Let the ticker start.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let start = Instant::now();
    std::hint::black_box(get.await);
    let end = Instant::now();
    done.store(true, Ordering::Relaxed);
    let ticks = ticker.await.expect("ticker");
    let mut edges = vec![start];
    edges.extend(ticks.iter().copied().filter(|t| *t > start && *t < end));
    edges.push(end);
    let gap = edges
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    (end - start, gap, edges.len() - 2)
}

async fn small_gets(con: &mut impl AsyncConnection, store: &ArrayStore<Compressed>) {
    for (label, n) in [("1 KB", 256), ("64 KB", 16 << 10), ("512 KB", 128 << 10)] {
        let a = values(n);
        let name = format!("small{n}");
        store.put_async(con, &name, &a).await.expect("put");
        let mut times = Vec::new();
        for _ in 0..2000.min(200_000_000 / (n * 4)) {
            let t = Instant::now();
            let back = store.get_async(con, &name).await.expect("get");
            times.push(t.elapsed());
            assert!(back.is_some());
        }
        println!("| {label} lz4 | {} | {} |", times.len(), us(median(times)));
    }
}

fn main() -> redstash::Result<()> {
    let server = RedisServer::start()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lz4 = Compressed::lz4();

    rt.block_on(async {
        let mut rounds = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            tokio::task::spawn_blocking(|| ())
                .await
                .expect("spawn_blocking");
            rounds.push(t.elapsed());
        }
        println!(
            "empty spawn_blocking round trip, current-thread runtime: median {} us\n",
            us(median(rounds))
        );
    });

    println!(
        "| decoded size | lz4 decode in place (us, median) | the same in spawn_blocking, awaited (us, median) |\n|---|---:|---:|"
    );
    for (label, n) in [
        ("64 KiB", 16 << 10),
        ("256 KiB", 64 << 10),
        ("512 KiB", 128 << 10),
        ("768 KiB", 192 << 10),
        ("1 MiB", 256 << 10),
        ("2 MiB", 512 << 10),
        ("4 MiB", 1 << 20),
        ("16 MiB", 4 << 20),
    ] {
        let value = bytes::Bytes::from(lz4.encode(&values(n).as_array_ref())?);
        let limits = redstash::codec::Limits::default();
        let runs = (400_000_000 / (n * 4)).clamp(5, 2000);
        let here = (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(decode_array(value.clone(), &limits).expect("decode"));
                t.elapsed()
            })
            .collect();
        let moved = rt.block_on(async {
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let v = value.clone();
                let t = Instant::now();
                let a = tokio::task::spawn_blocking(move || decode_array(v, &limits))
                    .await
                    .expect("spawn_blocking")
                    .expect("decode");
                times.push(t.elapsed());
                drop(std::hint::black_box(a));
            }
            times
        });
        println!("| {label} | {} | {} |", us(median(here)), us(median(moved)));
    }

    rt.block_on(async {
        let store = ArrayStore::new("ad").with_codec(Compressed::lz4());
        let mut con = DirectAsyncConnection::open(server.url().as_str()).await?;
        let mut mux = server.client()?.get_multiplexed_async_connection().await?;
        println!("\n| get_async, DirectAsyncConnection | runs | median (us) |\n|---|---:|---:|");
        small_gets(&mut con, &store).await;
        println!("\n| get_async, MultiplexedConnection | runs | median (us) |\n|---|---:|---:|");
        small_gets(&mut mux, &store).await;

        let big = values(16 << 20);
        store.put_async(&mut con, "big", &big).await?;
        println!(
            "\n| 64 MB lz4 get_as_async | get (ms) | longest ticker gap (ms) | ticks |\n|---|---:|---:|---:|"
        );
        for _ in 0..5 {
            let (took, gap, ticks) = blocked(async {
                let a: Option<ndarray::Array1<f32>> =
                    store.get_as_async(&mut con, "big").await.expect("get");
                a.map(|a| a.len())
            })
            .await;
            println!(
                "| DirectAsyncConnection | {:.1} | {:.1} | {ticks} |",
                took.as_secs_f64() * 1e3,
                gap.as_secs_f64() * 1e3
            );
        }
        for _ in 0..3 {
            let (took, gap, ticks) = blocked(async {
                let a: Option<ndarray::Array1<f32>> =
                    store.get_as_async(&mut mux, "big").await.expect("get");
                a.map(|a| a.len())
            })
            .await;
            println!(
                "| MultiplexedConnection | {:.1} | {:.1} | {ticks} |",
                took.as_secs_f64() * 1e3,
                gap.as_secs_f64() * 1e3
            );
        }
        redstash::Result::Ok(())
    })
}
