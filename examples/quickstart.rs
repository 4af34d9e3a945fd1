//! Quickstart: store a few arrays in Redis and read them back.
//!
//! Uses `REDIS_URL` when set, else starts a throwaway local redis-server (testkit).
//!
//! ```sh
//! cargo run --example quickstart --features testkit
//! ```

use std::time::{Duration, Instant};

use ndarray::{Array1, Array2};
use redstash::{ArrayStore, Compressed};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the server (if we started one) alive until the end of main.
    let (url, _server) = redstash::testkit::url_or_start()?;
    let mut con = redis::Client::open(url.as_str())?.get_connection()?;

    // 1. A 2-d float32 array as a plain .npy value (numpy.load reads it as is).
    let store = ArrayStore::new("quickstart");
    let embeddings =
        Array2::<f32>::from_shape_fn((1000, 128), |(i, j)| (i * 128 + j) as f32 * 0.001);
    let t = Instant::now();
    store.put(&mut con, "embeddings", &embeddings)?;
    let back: Array2<f32> = store.get_as(&mut con, "embeddings")?.ok_or("missing")?;
    assert_eq!(back, embeddings);
    println!(
        "put+get of a {:?} float32 array ({} KB): {:.2} ms",
        embeddings.shape(),
        embeddings.len() * 4 / 1024,
        t.elapsed().as_secs_f64() * 1e3
    );

    // 2. Compressed, with a TTL: lz4 frames around .npy.
    let cache = ArrayStore::new("quickstart")
        .with_codec(Compressed::lz4())
        .with_ttl(Duration::from_secs(60));
    let counts = Array1::<i64>::from_iter((0..100_000).map(|i| i % 7));
    cache.put(&mut con, "counts", &counts)?;
    let stored: Vec<u8> = redis::cmd("GET").arg("quickstart:counts").query(&mut con)?;
    println!(
        "int64 counts: {} bytes raw, {} bytes stored with lz4",
        counts.len() * 8,
        stored.len()
    );

    // 3. Any store reads any codec; a missing key is Ok(None); a wrong dtype is an error.
    let raw = store.get(&mut con, "counts")?.ok_or("missing")?;
    println!(
        "read back with a plain store: {} {:?}",
        raw.dtype(),
        raw.shape()
    );
    assert!(store.get(&mut con, "nope")?.is_none());
    let wrong: redstash::Result<Option<Array1<f64>>> = store.get_as(&mut con, "counts");
    println!("asking for float64: {}", wrong.unwrap_err());

    // 4. Many arrays in one round trip.
    let items: Vec<(String, Array1<f64>)> = (0..100)
        .map(|i| (format!("row:{i}"), Array1::from_elem(16, i as f64)))
        .collect();
    store.put_many(&mut con, &items)?;
    let names: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    let got = store.get_many(&mut con, &names)?;
    println!(
        "get_many: {} arrays, all present: {}",
        got.len(),
        got.iter().all(Option::is_some)
    );
    println!("quickstart ok");
    Ok(())
}
