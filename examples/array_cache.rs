//! An async service that caches computed arrays in Redis with a TTL.
//!
//! Requests for the same input hit the cache; misses compute the array (here: a slow
//! moving-average filter) and store it lz4-compressed with a TTL. Uses `REDIS_URL` when
//! set, else starts a local redis-server (testkit).
//!
//! ```sh
//! cargo run --release --example array_cache --features "tokio testkit"
//! ```

use std::time::{Duration, Instant};

use ndarray::Array1;
use redstash::testkit::RedisServer;
use redstash::{ArrayStore, Compressed};

/// The expensive computation being cached.
fn smooth(seed: u64, n: usize, window: usize) -> Array1<f64> {
    let mut x = seed | 1;
    let noisy: Vec<f64> = (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (i as f64 / 100.0).sin() + (x % 1000) as f64 / 5000.0
        })
        .collect();
    Array1::from_iter((0..n).map(|i| {
        let lo = i.saturating_sub(window);
        noisy[lo..=i].iter().sum::<f64>() / (i - lo + 1) as f64
    }))
}

struct Cache<C> {
    store: ArrayStore<Compressed>,
    con: C,
}

impl<C: redstash::exec::AsyncConnection> Cache<C> {
    async fn get_or_compute(&mut self, seed: u64) -> redstash::Result<(Array1<f64>, bool)> {
        let key = format!("smooth:{seed}");
        if let Some(hit) = self.store.get_as_async(&mut self.con, &key).await? {
            return Ok((hit, true));
        }
        let value = tokio::task::spawn_blocking(move || smooth(seed, 200_000, 50))
            .await
            .map_err(|e| redstash::Error::InvalidArgument(e.to_string()))?;
        self.store.put_async(&mut self.con, &key, &value).await?;
        Ok((value, false))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let s = RedisServer::start()?;
            (s.url(), Some(s))
        }
    };
    let client = redis::Client::open(url.as_str())?;
    let con = redis::aio::ConnectionManager::new(client).await?;
    let store = ArrayStore::new("cache")
        .with_codec(Compressed::lz4())
        .with_ttl(Duration::from_secs(2));
    let mut cache = Cache { store, con };

    for round in 0..2 {
        for seed in [1u64, 2, 3] {
            let t = Instant::now();
            let (a, hit) = cache.get_or_compute(seed).await?;
            println!(
                "round {round} seed {seed}: {} ({} values) in {:.2} ms",
                if hit { "hit " } else { "miss" },
                a.len(),
                t.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    println!("waiting for the TTL (2 s) to expire...");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_, hit) = cache.get_or_compute(1).await?;
    println!(
        "after expiry seed 1: {}",
        if hit { "hit" } else { "miss (expired)" }
    );
    assert!(!hit);
    Ok(())
}
