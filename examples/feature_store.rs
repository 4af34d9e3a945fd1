//! Feature store: register views, bulk-write embeddings, serve batch lookups (with
//! printed timings), and keep a training batch next to them.
//!
//! Uses `REDIS_URL` when set, else starts a throwaway local redis-server (testkit).
//!
//! ```sh
//! cargo run --release --example feature_store --features testkit
//! ```

use std::time::{Duration, Instant};

use ndarray::{Array1, Array2};
use redstash::{BatchStore, FeatureStore, Layout, View};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the server (if we started one) alive until the end of main.
    let (url, _server) = redstash::testkit::url_or_start()?;
    let mut con = redis::Client::open(url.as_str())?.get_connection()?;

    // 1. Views are registered once; any store under the same prefix finds them.
    let store = FeatureStore::new("example_fs");
    let users = View::of::<f32>("user_emb", 128).with_ttl(Duration::from_secs(3600));
    let items = View::of::<f64>("item_stats", 8);
    store.register_view(&mut con, &users)?;
    store.register_view(&mut con, &items)?;
    println!(
        "views: {:?}",
        store
            .load_views(&mut con)?
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
    );

    // 2. Bulk-write 50,000 user embeddings (pipelined, 20,000 per round trip, TTL included).
    let n = 50_000;
    let ids: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let emb = Array2::<f32>::from_shape_fn((n, 128), |(i, j)| ((i + j) % 100) as f32 * 0.01);
    let t = Instant::now();
    let written = store.write_many(&mut con, "user_emb", &ids, &emb)?;
    let dt = t.elapsed();
    println!(
        "write_many: {written} embeddings in {:.0} ms ({:.0} entities/s)",
        dt.as_secs_f64() * 1e3,
        written as f64 / dt.as_secs_f64()
    );
    let stats = Array2::<f64>::from_shape_fn((100, 8), |(i, j)| (i * 8 + j) as f64);
    let item_ids: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    store.write_many(&mut con, "item_stats", &item_ids, &stats)?;

    // 3. Serve batch lookups: 1,000 ids, one round trip, presence mask for the missing.
    let mut lookup: Vec<String> = (0..999).map(|i| format!("u{}", i * 37 % n)).collect();
    lookup.push("never-written".into());
    let mut times = Vec::new();
    let mut rows = None;
    for _ in 0..50 {
        let t = Instant::now();
        rows = Some(store.read_many::<f32, _, _>(&mut con, "user_emb", &lookup)?);
        times.push(t.elapsed());
    }
    times.sort();
    let rows = rows.ok_or("no lookup ran")?;
    println!(
        "read_many of {} ids: p50 {:.2} ms, {} present, last row present: {}",
        lookup.len(),
        times[times.len() / 2].as_secs_f64() * 1e3,
        rows.count_present(),
        rows.present[999]
    );
    // Several views of the same entities in one round trip.
    let both = store.read_views(&mut con, &item_ids[..3], &["user_emb", "item_stats"])?;
    println!(
        "read_views: {} -> {:?}, {} -> {:?}",
        both[0].view,
        both[0].values.shape(),
        both[1].view,
        both[1].values.shape()
    );

    // 4. Wrong input is rejected before anything is sent.
    let wrong = store.write(&mut con, "user_emb", "u1", &Array1::<f32>::zeros(64));
    println!(
        "writing a 64-long vector: {}",
        wrong.err().ok_or("accepted?")?
    );

    // 5. Compatibility: the Python recipe's layout, readable by its get_features().
    let compat = FeatureStore::new("");
    compat.register_view(
        &mut con,
        &View::of::<f32>("example_recipe", 128).with_layout(Layout::Hash),
    )?;
    compat.write(&mut con, "example_recipe", "42", &emb.row(42))?;
    let f = compat
        .read::<f32, _>(&mut con, "example_recipe", "42")?
        .ok_or("missing")?;
    println!(
        "recipe layout: entity 42 read back, {} values, equal: {}",
        f.values.len(),
        f.values == emb.row(42)
    );

    // 6. A training batch: named arrays of different dtypes in one hash, atomically.
    let batches = BatchStore::new("example_train").with_ttl(Duration::from_secs(600));
    let x = Array2::<f64>::from_shape_fn((1000, 784), |(i, j)| ((i * j) % 255) as f64 / 255.0);
    let y = Array1::<i64>::from_shape_fn(1000, |i| (i % 10) as i64);
    let t = Instant::now();
    batches.put(&mut con, "batch_0001", &(("features", &x), ("labels", &y)))?;
    let batch = batches
        .get(&mut con, "batch_0001")?
        .ok_or("missing batch")?;
    let bx: Array2<f64> = batch.get_as("features")?;
    let by: Array1<i64> = batch.get_as("labels")?;
    println!(
        "batch put+get ({:?} f64 + {:?} i64): {:.2} ms, equal: {}",
        bx.shape(),
        by.shape(),
        t.elapsed().as_secs_f64() * 1e3,
        bx == x && by == y
    );
    println!("batches: {:?}", batches.list(&mut con)?);
    println!("feature_store ok");
    Ok(())
}
