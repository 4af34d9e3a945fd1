//! Live benchmark of `FeatureStore` and `BatchStore` against their baselines
//! (`redis-cli --pipe`, raw commands), measured side by side in one run against local `redis-server`s (started by
//! `redstash::testkit`), printed as markdown tables with ratios.
//!
//! * `write_many` of 100,000 entities of 128 `f32` with a TTL (sync and async) against
//!   `redis-cli --pipe` replaying a RESP file of exactly the commands `write_many`
//!   sends (built from the plan's own commands), on the same server;
//! * `read_many` of 1,000 random ids: p50 and p90;
//! * Redis memory per entity (`used_memory` delta / entities) of every candidate
//!   layout, with their raw write rate and read latency (pipelines through redis-rs);
//! * `BatchStore` put+get of a `(1000, 784)` f64 + `(1000,)` i64 batch against a raw
//!   `HSET`/`HGETALL` of the same bytes.
//!
//! `cargo bench --bench features --features testkit,tokio` (about a minute);
//! `-- --write-only` for the `write_many` table alone, `REDSTASH_BENCH_RUNS=n` for `n`
//! interleaved runs per median (default 5).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2};
use redis::Value;
use redstash::direct::DirectConnection;
use redstash::exec::{Replies, Step};
use redstash::testkit::RedisServer;
use redstash::{BatchStore, FeatureStore, Layout, Npy, View};

const N: usize = 100_000;
const DIM: usize = 128;
const CHUNK: usize = redstash::store::feature::DEFAULT_CHUNK_ENTITIES;
const TTL: Duration = Duration::from_secs(3600);
const RUNS: usize = 5;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}k/s", n as f64 / d.as_secs_f64() / 1e3)
}

fn ids() -> Vec<String> {
    (0..N).map(|i| i.to_string()).collect()
}

fn embeddings() -> Array2<f32> {
    Array2::from_shape_fn((N, DIM), |(i, j)| ((i * 31 + j * 7) % 1000) as f32 * 0.001)
}

fn flush(con: &mut redis::Connection) -> Res<()> {
    redis::cmd("FLUSHALL").arg("SYNC").query::<()>(con)?;
    Ok(())
}

fn used_memory(con: &mut redis::Connection) -> Res<i64> {
    let info: String = redis::cmd("INFO").arg("memory").query(con)?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO".into())
}

/// Every command a plan sends, packed as RESP, by driving it with `OK` replies.
fn packed_commands<T>(mut step: Step<'_, T>) -> Res<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match step {
            Step::Done(_) => return Ok(out),
            Step::Failed(e) => return Err(e.into()),
            Step::Send(req, k) => {
                let n = req.len();
                for c in req.commands() {
                    c.write_resp(&mut out);
                }
                step = k(Replies::new(vec![Value::Okay; n], None))?;
            }
            Step::SendAll(reqs, k) => {
                let mut replies = Vec::with_capacity(reqs.len());
                for req in reqs {
                    for c in req.commands() {
                        c.write_resp(&mut out);
                    }
                    replies.push(vec![Value::Okay; req.len()]);
                }
                step = k(Ok(replies))?;
            }
            Step::Compute(work) => step = work.run()?,
        }
    }
}

/// Nanoseconds the redis-server's main thread ran or waited for a CPU (Linux
/// schedstat), to tell the time the client left it idle from the time it was busy or
/// preempted on a loaded machine.
fn server_runnable_ns(pid: Option<u32>) -> Option<u64> {
    let pid = pid?;
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/schedstat")).ok()?;
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some(f.next()?? + f.next()??)
}

/// One timed run: wall time, and the share of it the server was running or runnable.
#[derive(Clone, Copy)]
struct Sample {
    time: Duration,
    busy: Option<f64>,
}

struct Timer {
    pid: Option<u32>,
    t: Instant,
    ns: Option<u64>,
}

impl Timer {
    fn start(pid: Option<u32>) -> Self {
        Timer {
            pid,
            ns: server_runnable_ns(pid),
            t: Instant::now(),
        }
    }

    fn stop(self) -> Sample {
        let time = self.t.elapsed();
        let busy = match (self.ns, server_runnable_ns(self.pid)) {
            (Some(a), Some(b)) => Some((b - a) as f64 / 1e9 / time.as_secs_f64()),
            _ => None,
        };
        Sample { time, busy }
    }
}

/// Median time and median server busy share of samples.
fn summary(samples: &[Sample]) -> (Duration, String) {
    let time = median(samples.iter().map(|s| s.time).collect());
    let mut busy: Vec<f64> = samples.iter().filter_map(|s| s.busy).collect();
    busy.sort_by(f64::total_cmp);
    let busy = busy
        .get(busy.len() / 2)
        .map_or_else(|| "n/a".to_owned(), |b| format!("{b:.2}"));
    (time, busy)
}

fn redis_cli_pipe(port: u16, file: &std::path::Path) -> Res<()> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::from(std::fs::File::open(file)?))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("errors: 0") {
        return Err(format!("redis-cli --pipe failed: {text}").into());
    }
    Ok(())
}

/// A raw pipelined write of every entity in one candidate layout (redis-rs commands,
/// `CHUNK` entities per round trip).
fn raw_layout_write(con: &mut redis::Connection, layout: usize, x: &Array2<f32>) -> Res<()> {
    let ts = 1_700_000_000_000u64.to_le_bytes();
    let ttl = TTL.as_millis() as u64;
    for start in (0..N).step_by(CHUNK) {
        let mut p = redis::pipe();
        for i in start..(start + CHUNK).min(N) {
            let row = x.row(i);
            let bytes: &[u8] = bytemuck::cast_slice(row.as_slice().ok_or("row")?);
            match layout {
                // hash per entity, one field per view: ts + vector
                1 => {
                    let key = format!("h1:{i}");
                    let mut v = Vec::with_capacity(8 + bytes.len());
                    v.extend_from_slice(&ts);
                    v.extend_from_slice(bytes);
                    p.cmd("HSET").arg(&key).arg("emb").arg(v).ignore();
                    p.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
                }
                // hash per entity, vector field + `_ts:view` field (Feast-like)
                _ => {
                    let key = format!("h2:{i}");
                    p.cmd("HSET")
                        .arg(&key)
                        .arg("emb")
                        .arg(bytes)
                        .arg("_ts:emb")
                        .arg(&ts[..])
                        .ignore();
                    p.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
                }
            }
        }
        p.query::<()>(con)?;
    }
    Ok(())
}

fn raw_layout_read(con: &mut redis::Connection, layout: usize, pick: &[usize]) -> Res<()> {
    let mut p = redis::pipe();
    for &i in pick {
        match layout {
            1 => p.cmd("HGET").arg(format!("h1:{i}")).arg("emb"),
            _ => p
                .cmd("HMGET")
                .arg(format!("h2:{i}"))
                .arg("emb")
                .arg("_ts:emb"),
        };
    }
    let v: Vec<Value> = p.query(con)?;
    if v.len() != pick.len() {
        return Err("short read".into());
    }
    Ok(())
}

fn picks(seed: u64, rounds: usize) -> Vec<Vec<String>> {
    let mut s = seed;
    (0..rounds)
        .map(|_| {
            (0..1000)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s % N as u64) as usize).to_string()
                })
                .collect()
        })
        .collect()
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    // `REDSTASH_BENCH_RUNS=n`: more interleaved runs per median on a noisy machine.
    let runs = match std::env::var("REDSTASH_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) if !quick => n,
        _ if quick => 1,
        _ => RUNS,
    };
    // `-- --write-only`: only the write_many table (for quick comparisons).
    let write_only = std::env::args().any(|a| a == "--write-only");
    let srv = RedisServer::start()?;
    let port = srv.port();
    let client = srv.client()?;
    let mut con = client.get_connection()?;
    let mut direct = DirectConnection::open(srv.url().as_str())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // No response timeout: redis-rs's default (500 ms) bounds one pipelined call, and a
    // call may carry many megabytes of commands on a loaded machine.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut acon = rt.block_on(client.get_multiplexed_async_connection_with_config(&config))?;
    let mut adirect = rt.block_on(redstash::direct::DirectAsyncConnection::open(
        srv.url().as_str(),
    ))?;

    let ids = ids();
    let x = embeddings();
    let view = View::of::<f32>("emb", DIM).with_ttl(TTL);
    let store = FeatureStore::new("fs").with_chunk_entities(CHUNK);
    store.register_view(&mut con, &view)?;

    // ---- write_many vs redis-cli --pipe of the same commands ----
    let resp = packed_commands(store.plan_write_many("emb", &ids, &x)?)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("write_many.resp");
    std::fs::File::create(&file)?.write_all(&resp)?;
    let mut t_cli = Vec::new();
    let mut t_sync = Vec::new();
    let mut t_direct = Vec::new();
    let mut t_async = Vec::new();
    let mut t_adirect = Vec::new();
    let registry = redis::cmd("HGETALL").arg(store.registry_key()).clone();
    let keep: Vec<String> = registry.query(&mut con)?;
    let restore = |con: &mut redis::Connection| -> Res<()> {
        flush(con)?;
        redis::cmd("HSET")
            .arg(store.registry_key())
            .arg(&keep)
            .query::<()>(con)?;
        Ok(())
    };
    let info: String = redis::cmd("INFO").arg("server").query(&mut con)?;
    let pid: Option<u32> = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok());
    for _ in 0..runs {
        restore(&mut con)?;
        let t = Timer::start(pid);
        redis_cli_pipe(port, &file)?;
        t_cli.push(t.stop());
        restore(&mut con)?;
        let t = Timer::start(pid);
        store.write_many(&mut con, "emb", &ids, &x)?;
        t_sync.push(t.stop());
        restore(&mut con)?;
        let t = Timer::start(pid);
        store.write_many(&mut direct, "emb", &ids, &x)?;
        t_direct.push(t.stop());
        restore(&mut con)?;
        let t = Timer::start(pid);
        rt.block_on(store.write_many_async(&mut acon, "emb", &ids, &x))?;
        t_async.push(t.stop());
        restore(&mut con)?;
        let t = Timer::start(pid);
        rt.block_on(store.write_many_async(&mut adirect, "emb", &ids, &x))?;
        t_adirect.push(t.stop());
    }
    let (cli, cli_busy) = summary(&t_cli);
    println!(
        "\n## FeatureStore write_many: {N} entities of {DIM} f32 with TTL, {CHUNK} per request\n"
    );
    println!(
        "Medians of {runs} interleaved runs. Server busy: share of the time redis-server's \
         main thread was running or waiting for a CPU (1.00: the client never left it idle).\n"
    );
    println!(
        "| variant | time | entities/s | rate vs redis-cli --pipe (target >= 0.9) | server busy |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| redis-cli --pipe, same commands | {} ms | {} | 1.00 | {cli_busy} |",
        ms(cli),
        rate(N, cli)
    );
    for (label, t) in [
        ("redstash sync (redis::Connection)", t_sync),
        ("redstash sync (DirectConnection)", t_direct),
        ("redstash async (MultiplexedConnection)", t_async),
        ("redstash async (DirectAsyncConnection)", t_adirect),
    ] {
        let (m, busy) = summary(&t);
        println!(
            "| {label} | {} ms | {} | {:.2} | {busy} |",
            ms(m),
            rate(N, m),
            cli.as_secs_f64() / m.as_secs_f64()
        );
    }

    if write_only {
        return Ok(());
    }

    // ---- read_many of 1,000 ids ----
    let rounds = if quick { 5 } else { 300 };
    let sets = picks(7, rounds);
    let mut lat_sync = Vec::new();
    let mut lat_direct = Vec::new();
    let mut lat_async = Vec::new();
    let mut lat_mget = Vec::new();
    let mut lat_gets = Vec::new();
    for ids in &sets {
        let t = Instant::now();
        let r = store.read_many::<f32, _, _>(&mut con, "emb", ids)?;
        lat_sync.push(t.elapsed());
        assert_eq!(r.count_present(), 1000);
        let t = Instant::now();
        let _ = store.read_many::<f32, _, _>(&mut direct, "emb", ids)?;
        lat_direct.push(t.elapsed());
        let t = Instant::now();
        let _ = rt.block_on(store.read_many_async::<f32, _, _>(&mut acon, "emb", ids))?;
        lat_async.push(t.elapsed());
        let keys: Vec<String> = ids.iter().map(|i| store.key("emb", i)).collect();
        let t = Instant::now();
        let v: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query(&mut con)?;
        lat_mget.push(t.elapsed());
        assert_eq!(v.len(), 1000);
        let t = Instant::now();
        let mut p = redis::pipe();
        for k in &keys {
            p.cmd("GET").arg(k);
        }
        let v: Vec<Option<Vec<u8>>> = p.query(&mut con)?;
        lat_gets.push(t.elapsed());
        assert_eq!(v.len(), 1000);
    }
    println!("\n## FeatureStore read_many of 1,000 random ids (of {N})\n");
    println!("| variant | p50 | p90 | p50 vs 2 ms target |");
    println!("|---|---|---|---|");
    for (label, l) in [
        ("redstash sync (redis::Connection)", lat_sync),
        ("redstash sync (DirectConnection)", lat_direct),
        ("redstash async (MultiplexedConnection)", lat_async),
        ("raw redis-rs MGET of the same keys (baseline)", lat_mget),
        ("raw redis-rs pipeline of GETs (baseline)", lat_gets),
    ] {
        let p50 = pct(l.clone(), 0.5);
        println!(
            "| {label} | {} ms | {} ms | {:.2} |",
            ms(p50),
            ms(pct(l, 0.9)),
            p50.as_secs_f64() / 0.002
        );
    }

    // ---- layouts: memory per entity, write rate, read p50 ----
    println!("\n## Candidate layouts: {N} entities of {DIM} f32 (512 B) with TTL\n");
    println!(
        "| layout | used_memory / entity | vs 800 B target | write rate ({CHUNK}/round trip) | read 1,000 p50 |"
    );
    println!("|---|---|---|---|---|");
    let recipe_view = View::of::<f32>("emb", DIM)
        .with_ttl(TTL)
        .with_layout(Layout::Hash);
    let recipe = FeatureStore::new("rc").with_chunk_entities(CHUNK);
    let layouts: [(&str, usize); 4] = [
        (
            "string per (view, entity): ts + vector, SET PX (redstash)",
            0,
        ),
        (
            "hash per entity, field per view: ts + vector, HSET + PEXPIRE",
            1,
        ),
        (
            "hash per entity, vector + `_ts:view` fields, HSET + PEXPIRE",
            2,
        ),
        ("Python recipe hash (redstash Layout::Hash)", 3),
    ];
    for (label, l) in layouts {
        flush(&mut con)?;
        match l {
            0 => store.replace_view(&mut con, &view)?,
            3 => recipe.replace_view(&mut con, &recipe_view)?,
            _ => {}
        }
        let before = used_memory(&mut con)?;
        let t = Instant::now();
        match l {
            0 => {
                store.write_many(&mut con, "emb", &ids, &x)?;
            }
            3 => {
                recipe.write_many(&mut con, "emb", &ids, &x)?;
            }
            _ => raw_layout_write(&mut con, l, &x)?,
        }
        let wt = t.elapsed();
        let after = used_memory(&mut con)?;
        let per = (after - before) as f64 / N as f64;
        let mut lat = Vec::new();
        for ids in sets.iter().take(if quick { 3 } else { 100 }) {
            let t = Instant::now();
            match l {
                0 => {
                    store.read_many::<f32, _, _>(&mut con, "emb", ids)?;
                }
                3 => {
                    recipe.read_many::<f32, _, _>(&mut con, "emb", ids)?;
                }
                _ => {
                    let pick: Vec<usize> = ids.iter().filter_map(|s| s.parse().ok()).collect();
                    raw_layout_read(&mut con, l, &pick)?;
                }
            }
            lat.push(t.elapsed());
        }
        println!(
            "| {label} | {per:.0} B | {:.2} | {} | {} ms |",
            per / 800.0,
            rate(N, wt),
            ms(pct(lat, 0.5))
        );
    }

    // ---- BatchStore vs raw HSET/HGETALL ----
    flush(&mut con)?;
    let fx = Array2::<f64>::from_shape_fn((1000, 784), |(i, j)| (i * 784 + j) as f64 * 1e-3);
    let ly = Array1::<i64>::from_shape_fn(1000, |i| (i % 10) as i64);
    let batches = BatchStore::new("b");
    use redstash::ArrayCodec;
    let xb = fx.try_array_ref_bytes(&Npy)?;
    let yb = Npy.encode(&redstash::ArrayRef::from_slice(
        &[1000],
        ly.as_slice().ok_or("y")?,
    )?)?;
    let n = if quick { 2 } else { 40 };
    let mut t_raw = Vec::new();
    let mut t_bs = Vec::new();
    let mut t_bd = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        redis::cmd("HSET")
            .arg("raw:1")
            .arg("features")
            .arg(&xb)
            .arg("labels")
            .arg(&yb)
            .query::<()>(&mut con)?;
        let back: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg("raw:1").query(&mut con)?;
        t_raw.push(t.elapsed());
        assert_eq!(back.len(), 2);
        let t = Instant::now();
        batches.put(&mut con, "1", &(("features", &fx), ("labels", &ly)))?;
        let b = batches.get(&mut con, "1")?.ok_or("batch")?;
        t_bs.push(t.elapsed());
        assert_eq!(b.len(), 2);
        let t = Instant::now();
        batches.put(&mut direct, "1", &(("features", &fx), ("labels", &ly)))?;
        let b = batches.get(&mut direct, "1")?.ok_or("batch")?;
        t_bd.push(t.elapsed());
        assert_eq!(b.len(), 2);
    }
    let raw = median(t_raw);
    println!("\n## BatchStore put+get of (1000, 784) f64 + (1000,) i64 (6.3 MB)\n");
    println!("| variant | put+get | time vs raw HSET/HGETALL (target <= 1.15) |");
    println!("|---|---|---|");
    println!(
        "| raw HSET + HGETALL of the same .npy bytes (redis::Connection) | {} ms | 1.00 |",
        ms(raw)
    );
    for (label, t) in [
        ("BatchStore (redis::Connection)", t_bs),
        ("BatchStore (DirectConnection)", t_bd),
    ] {
        let m = median(t);
        println!(
            "| {label} | {} ms | {:.2} |",
            ms(m),
            m.as_secs_f64() / raw.as_secs_f64()
        );
    }
    Ok(())
}

/// `.npy` bytes of an ndarray (bench helper).
trait NpyBytes {
    fn try_array_ref_bytes(&self, codec: &Npy) -> Res<Vec<u8>>;
}

impl NpyBytes for Array2<f64> {
    fn try_array_ref_bytes(&self, codec: &Npy) -> Res<Vec<u8>> {
        use redstash::{ArrayCodec, AsArray};
        Ok(self.with_array_ref(|a| codec.encode(&a))?)
    }
}
