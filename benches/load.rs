//! Bulk loading, live: `redstash::load` against `redis-cli --pipe` fed a pre-made RESP
//! file of the same commands (its generation not counted), the common Python loader
//! (redis-py pipelines) and its 4-process variant, on one fresh redis-server, measured
//! back to back and alternated. Prints markdown tables with ratios.
//!
//! Cases: 1,000,000 CSV records `{id, value: "data_<id>"}` into `SET item:<id> <json>`
//! (CSV parsing included); the same records into hashes with an `SADD` index and a
//! `ZADD` by id; the peak RSS of the CLI loading a 10,000,000-record CSV (set
//! `REDSTASH_BENCH_RSS_RECORDS`, 0 to skip).
//!
//! `cargo bench --features testkit,load,cli --bench load`; `REDSTASH_BENCH_RUNS` (3)
//! rounds; `REDSTASH_BENCH_RECORDS` (1,000,000); `REDSTASH_PYTHON` (the venv's python,
//! with redis-py; skipped when missing).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redstash::direct::DirectConnection;
use redstash::load::{
    CsvOptions, CsvSource, FieldFilter, IndexOp, Input, KeyTemplate, Loader, Mapping, ValueMapping,
};
use redstash::testkit::RedisServer;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_csv(path: &Path, n: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(f, "id,value").unwrap();
    for i in 0..n {
        writeln!(f, "{i},data_{i}").unwrap();
    }
}

fn t(s: &str) -> KeyTemplate {
    KeyTemplate::parse(s).unwrap()
}

fn flush(srv: &RedisServer) {
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let _: () = redis::cmd("FLUSHALL").arg("SYNC").query(&mut c).unwrap();
}

fn dbsize(srv: &RedisServer) -> u64 {
    let mut c = srv.client().unwrap().get_connection().unwrap();
    redis::cmd("DBSIZE").query(&mut c).unwrap()
}

/// `redis-cli --pipe < resp`: its wall time.
fn redis_cli_pipe(srv: &RedisServer, resp: &Path) -> Duration {
    let start = Instant::now();
    let out = Command::new("redis-cli")
        .args(["-p", &srv.port().to_string(), "--pipe"])
        .stdin(std::fs::File::open(resp).unwrap())
        .output()
        .expect("redis-cli");
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("errors: 0"), "{text}");
    took
}

/// redstash's load of `csv` (CSV parsing included): its wall time.
fn redstash_load(srv: &RedisServer, csv: &Path, mapping: &Mapping) -> Duration {
    let start = Instant::now();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let mut src = CsvSource::new(Input::open(csv).unwrap(), CsvOptions::default()).unwrap();
    let r = Loader::new(mapping.clone())
        .load(&mut src, &mut con)
        .unwrap();
    let took = start.elapsed();
    assert!(r.is_complete(), "{r:?}");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn python() -> Option<PathBuf> {
    let p = std::env::var("REDSTASH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    p.exists().then_some(p)
}

/// The Python loader with `procs` processes: its wall time.
fn python_load(srv: &RedisServer, csv: &Path, procs: u32) -> Option<Duration> {
    let py = python()?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python/load_csv.py");
    let start = Instant::now();
    let out = Command::new(py)
        .arg(script)
        .arg(csv)
        .arg(srv.port().to_string())
        .arg(procs.to_string())
        .output()
        .ok()?;
    let took = start.elapsed();
    if !out.status.success() {
        eprintln!(
            "python loader failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(took)
}

/// Pairs of (redis-cli --pipe, redstash) times, alternated.
fn compare(
    srv: &RedisServer,
    csv: &Path,
    mapping: &Mapping,
    runs: u64,
    keys: u64,
) -> (Duration, Duration) {
    let dir = csv.parent().unwrap();
    let resp = dir.join("same.resp");
    {
        let mut out =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&resp).unwrap());
        let mut src = CsvSource::new(Input::open(csv).unwrap(), CsvOptions::default()).unwrap();
        Loader::new(mapping.clone())
            .emit_resp(&mut src, &mut out)
            .unwrap();
    }
    let (mut pipe, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        flush(srv);
        pipe.push(redis_cli_pipe(srv, &resp));
        assert_eq!(dbsize(srv), keys);
        flush(srv);
        ours.push(redstash_load(srv, csv, mapping));
        assert_eq!(dbsize(srv), keys);
    }
    let _ = std::fs::remove_file(&resp);
    (median(pipe), median(ours))
}

/// Peak RSS (VmHWM, kB) of the CLI loading `csv`.
fn cli_peak_rss(srv: &RedisServer, csv: &Path) -> Option<(u64, Duration)> {
    let exe = env!("CARGO_BIN_EXE_redstash");
    let start = Instant::now();
    let mut child = Command::new(exe)
        .args([
            "load",
            csv.to_str()?,
            "--key",
            "item:{id}",
            "--json",
            "--url",
            &srv.url(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status)
            && let Some(line) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            peak = peak.max(line.split_whitespace().nth(1)?.parse().ok()?);
        }
        if child.try_wait().ok()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((peak, start.elapsed()))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = env_u64("REDSTASH_BENCH_RUNS", 3).max(1);
    let n = env_u64("REDSTASH_BENCH_RECORDS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("items.csv");
    write_csv(&csv, n);
    let srv = RedisServer::start().unwrap();

    println!(
        "\n## Bulk load: {n} CSV records, same commands, one redis-server (median of {runs})\n"
    );
    println!(
        "| case | redis-cli --pipe (pre-made RESP) | redstash load (CSV parsed) | redstash / pipe time | redstash rate |"
    );
    println!("|---|---|---|---|---|");
    let json = Mapping::new(t("item:{id}"));
    let (pipe, ours) = compare(&srv, &csv, &json, runs, n);
    println!(
        "| SET item:<id> <json> | {:.2} s ({:.0}/s) | {:.2} s | {:.2}x | {:.0}/s |",
        secs(pipe),
        n as f64 / secs(pipe),
        secs(ours),
        secs(ours) / secs(pipe),
        n as f64 / secs(ours)
    );
    let hashes = Mapping::new(t("item:{id}"))
        .with_value(ValueMapping::Hash(FieldFilter::all()))
        .with_index(IndexOp::Sadd {
            set: t("items:all"),
            member: None,
        })
        .with_index(IndexOp::Zadd {
            zset: t("items:by_id"),
            score: "id".into(),
            member: None,
        });
    let (pipe_h, ours_h) = compare(&srv, &csv, &hashes, runs, n + 2);
    println!(
        "| HSET + SADD + ZADD | {:.2} s ({:.0} rec/s) | {:.2} s | {:.2}x | {:.0} rec/s |",
        secs(pipe_h),
        n as f64 / secs(pipe_h),
        secs(ours_h),
        secs(ours_h) / secs(pipe_h),
        n as f64 / secs(ours_h)
    );

    println!(
        "\n## The common Python loader (redis-py pipelines of 10,000), same CSV, SET item:<id> <json>\n"
    );
    println!("| loader | time | rate | redstash speed-up |");
    println!("|---|---|---|---|");
    for procs in [1, 4] {
        flush(&srv);
        match python_load(&srv, &csv, procs) {
            Some(d) => {
                assert_eq!(dbsize(&srv), n);
                println!(
                    "| Python, {procs} process{} | {:.2} s | {:.0}/s | {:.1}x |",
                    if procs > 1 { "es" } else { "" },
                    secs(d),
                    n as f64 / secs(d),
                    secs(d) / secs(ours)
                );
            }
            None => println!("| Python, {procs} processes | skipped (no venv with redis-py) | | |"),
        }
    }

    let big = env_u64("REDSTASH_BENCH_RSS_RECORDS", 10_000_000);
    if big > 0 {
        flush(&srv);
        let big_csv = dir.path().join("big.csv");
        write_csv(&big_csv, big);
        let size = std::fs::metadata(&big_csv).map(|m| m.len()).unwrap_or(0);
        if let Some((kb, took)) = cli_peak_rss(&srv, &big_csv) {
            assert_eq!(dbsize(&srv), big);
            println!(
                "\n## Memory: the CLI loading {big} CSV records ({:.0} MB file)\n",
                size as f64 / 1e6
            );
            println!("| peak RSS | time | rate |");
            println!("|---|---|---|");
            println!(
                "| {:.1} MB | {:.1} s | {:.0}/s |",
                kb as f64 / 1024.0,
                secs(took),
                big as f64 / secs(took)
            );
        }
    }
}
