//! A small online feature service: an HTTP endpoint (axum) that serves batch lookups of
//! feature vectors (`FeatureStore::read_many`) from a pool of direct connections
//! (feature `pool`), plus a built-in load test.
//!
//! ```text
//! cargo run --release --example feature_server --features pool,testkit -- [--load CLIENTS] [--seconds S]
//! ```
//!
//! It uses `REDIS_URL` when set, else starts a throwaway local redis-server; writes
//! 100,000 entities of 128 `f32` to the view `user_emb`; serves
//! `GET /features/user_emb?ids=u1,u2,...` as JSON `{"present": [..], "values": [[..]..]}`
//! on a free local port. With `--load N` it then runs N concurrent HTTP/1.1 keep-alive
//! clients for S seconds (default 64 clients, 10 s), each asking for 100 random ids per
//! request, and prints requests/s and the p50/p99/max latency; without, it serves until
//! killed.
//!
//! Measured on the shared 2-core development machine (client, server and Redis on the
//! same two cores, release build, pool of 16, 64 clients, 100 ids of 128 f32 per request,
//! 10 s): see README.md, "Connections for services".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use ndarray::Array2;
use redstash::direct::ConnectOptions;
use redstash::direct::pool::{DirectManager, DirectPool};
use redstash::{FeatureStore, View};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ENTITIES: usize = 100_000;
const DIM: usize = 128;
const IDS_PER_REQUEST: usize = 100;

#[derive(Clone)]
struct App {
    pool: DirectPool,
    store: FeatureStore,
}

#[derive(Deserialize)]
struct Lookup {
    ids: String,
}

#[derive(Serialize)]
struct Rows {
    present: Vec<bool>,
    values: Vec<Vec<f32>>,
}

async fn features(
    State(app): State<Arc<App>>,
    Path(view): Path<String>,
    Query(q): Query<Lookup>,
) -> Result<Json<Rows>, (StatusCode, String)> {
    let ids: Vec<&str> = q.ids.split(',').filter(|s| !s.is_empty()).collect();
    let fail = |code: StatusCode| move |e: &dyn std::fmt::Display| (code, e.to_string());
    let mut con = app
        .pool
        .get()
        .await
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE)(&e))?;
    let rows = app
        .store
        .read_many_async::<f32, _, _>(&mut *con, &view, &ids)
        .await
        .map_err(|e| match e {
            redstash::Error::UnknownView(_) => fail(StatusCode::NOT_FOUND)(&e),
            e => fail(StatusCode::INTERNAL_SERVER_ERROR)(&e),
        })?;
    Ok(Json(Rows {
        present: rows.present,
        values: rows.values.outer_iter().map(|r| r.to_vec()).collect(),
    }))
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Write the view's vectors (entity `i` holds `i * DIM + j` at `j`).
async fn load_view(pool: &DirectPool, store: &FeatureStore) -> Res<()> {
    let mut con = pool.get().await?;
    store
        .register_view_async(&mut *con, &View::of::<f32>("user_emb", DIM))
        .await?;
    let ids: Vec<String> = (0..ENTITIES).map(|i| format!("u{i}")).collect();
    let values = Array2::from_shape_fn((ENTITIES, DIM), |(i, j)| (i * DIM + j) as f32);
    store
        .write_many_async(&mut *con, "user_emb", &ids, &values)
        .await?;
    Ok(())
}

/// One HTTP/1.1 GET on a keep-alive connection; the response body.
async fn http_get(stream: &mut TcpStream, path: &str, buf: &mut Vec<u8>) -> Res<Vec<u8>> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    buf.clear();
    let header_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 16 << 10];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..header_end])?.to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(format!("response: {}", head.lines().next().unwrap_or("")).into());
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .ok_or("no content-length")?
        .trim()
        .parse()?;
    while buf.len() < header_end + len {
        let mut chunk = vec![0u8; header_end + len - buf.len()];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf[header_end..header_end + len].to_vec())
}

/// `clients` keep-alive clients asking for random ids for `seconds`; every answer is
/// checked. Prints requests/s and latency percentiles.
async fn load(addr: SocketAddr, clients: usize, seconds: u64) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
            let mut latencies = Vec::new();
            let mut buf = Vec::new();
            while Instant::now() < deadline {
                let ids: Vec<usize> = (0..IDS_PER_REQUEST)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        (seed % ENTITIES as u64) as usize
                    })
                    .collect();
                let list: Vec<String> = ids.iter().map(|i| format!("u{i}")).collect();
                let path = format!("/features/user_emb?ids={}", list.join(","));
                let t = Instant::now();
                let body = http_get(&mut stream, &path, &mut buf).await?;
                latencies.push(t.elapsed());
                let rows: serde_json::Value = serde_json::from_slice(&body)?;
                let first = rows["values"][0][1].as_f64().ok_or("no values")?;
                if first != (ids[0] * DIM + 1) as f64 {
                    return Err(format!("wrong vector for u{}", ids[0]).into());
                }
            }
            Res::Ok(latencies)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "{clients} clients, {seconds} s: {} requests, {:.0} requests/s ({:.0} vectors/s), latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        all.len() as f64 / elapsed,
        (all.len() * IDS_PER_REQUEST) as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3,
    );
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let clients = arg("--load");
    let seconds = arg("--seconds").unwrap_or(10);
    let (url, _server) = redstash::testkit::url_or_start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let manager = DirectManager::new(url.as_str(), ConnectOptions::default())?;
        let pool = DirectPool::builder(manager).max_size(16).build()?;
        let store = FeatureStore::new("feature_server");
        load_view(&pool, &store).await?;
        let app = Arc::new(App { pool, store });
        let router = Router::new()
            .route("/features/{view}", get(features))
            .with_state(app);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        println!("serving http://{addr}/features/user_emb?ids=u1,u2");
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        match clients {
            Some(n) => load(addr, n as usize, seconds).await?,
            None => server.await??,
        }
        Res::Ok(())
    })
}
