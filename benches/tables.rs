//! Live benchmark of `TableStore` against the physical limit (a plain-socket client), measured side
//! by side in one run against a local `redis-server` (started by `redstash::testkit`),
//! printed as a markdown table with ratios:
//!
//! * `gen`: the ArrowRedis dataset written as a zstd IPC file (MB/s of file written);
//! * `split` of that file (`split_ipc_parallel`, C direct connections) against writing
//!   the very same stored values with pipelined `SET`s through the plain-socket client
//!   (C threads, one connection each, about 16 MiB per pipeline);
//! * `read` of the whole table (`read_parallel`, C connections, decoded) against
//!   fetching the same stored bytes with pipelined `MGET`s of 64 keys through the
//!   plain-socket client (C threads), with no decoding; the first read of the process
//!   (no pooled memory to reuse yet, see `redstash::buffers`) is
//!   printed apart from the median, and with feature `tokio` so is
//!   `read_parallel_async` on C `DirectAsyncConnection`s;
//! * peak RSS of each phase above the RSS before it (`/proc/self/clear_refs`), against
//!   the in-flight window (split) and the decoded table size (read).
//!
//! `cargo bench --bench tables --features arrow,testkit,tokio` runs the 250MB configuration
//! (8 partitions x 16 batches x 50,000 rows, zstd, dictionary strings);
//! `REDSTASH_BENCH_SIZE=50mb|250mb|512mb|1gb` and `REDSTASH_BENCH_CONNECTIONS` (default
//! 4) change it. Under `cargo test --benches` it runs once on a tiny table.
//!
//! ArrowRedis side by side: with `REDSTASH_ARROWREDIS=/path/to/bench_arrow.py` (a
//! checkout of github.com/fcenedes/ArrowRedis, not part of this repository) and
//! `REDSTASH_ARROWREDIS_PYTHON` (a python with its requirements; default `python3`),
//! the same run also times its `gen`, `split` and `read` of the same configuration
//! against the same server, and prints the ratios.

#[path = "common/plain_socket.rs"]
mod plain_socket;
#[path = "common/timing.rs"]
mod timing;

use std::time::{Duration, Instant};

use plain_socket::{PlainClient, pack};
use redstash::TableStore;
use redstash::arrowgen::GenSpec;
use redstash::codec::Limits;
use redstash::codec::arrow::IpcCompression;
use redstash::codec::arrow_file::{IpcFormat, IpcInput};
use redstash::direct::DirectConnection;
use redstash::store::table::{Partitioning, ReadOptions};
use redstash::testkit::RedisServer;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const RUNS: usize = 4;

fn spec(size: &str) -> GenSpec {
    let (partitions, batches, rows) = match size {
        "tiny" => (2, 2, 2_000),
        "50mb" => (4, 8, 50_000),
        "512mb" => (16, 16, 50_000),
        "1gb" => (32, 16, 50_000),
        _ => (8, 16, 50_000),
    };
    GenSpec {
        partitions,
        batches,
        rows,
        seed: 123,
        dict_strings: true,
        string_cardinality: 5000,
    }
}

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Run `f` and return its result with the peak RSS it added (bytes above the RSS
/// before it).
fn peak_rss<T>(f: impl FnOnce() -> T) -> (T, u64) {
    // "5" resets the peak (VmHWM) to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = proc_status("VmRSS:");
    let r = f();
    (r, proc_status("VmHWM:").saturating_sub(before))
}

/// User + system CPU seconds this process has used (`/proc/self/stat`, in clock ticks
/// of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 of `rest`.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

/// Bytes of the distinct buffers a table holds (a buffer shared by several arrays, e.g.
/// a reply several columns are sliced from, counts once): what the table really costs.
fn table_bytes(batches: &[arrow_array::RecordBatch]) -> u64 {
    use arrow_array::Array;
    fn walk(d: &arrow_data::ArrayData, seen: &mut std::collections::HashSet<usize>, n: &mut u64) {
        let bufs = d.buffers().iter().chain(d.nulls().map(|x| x.buffer()));
        for b in bufs {
            // One allocation (a decoded block, a reply) counts once, whole.
            if seen.insert(b.data_ptr().as_ptr() as usize) {
                *n += b.capacity() as u64;
            }
        }
        for c in d.child_data() {
            walk(c, seen, n);
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    for b in batches {
        for c in b.columns() {
            walk(&c.to_data(), &mut seen, &mut n);
        }
    }
    n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// ArrowRedis's times for one phase: the process's wall time and its own report.
struct Theirs {
    wall: Duration,
    own: Option<f64>,
}

/// Run `bench_arrow.py ARGS` and time it; `own` parses the time it reports itself.
fn arrowredis(args: &[&str]) -> Res<Theirs> {
    let Ok(script) = std::env::var("REDSTASH_ARROWREDIS") else {
        return Err("REDSTASH_ARROWREDIS is not set".into());
    };
    let python = std::env::var("REDSTASH_ARROWREDIS_PYTHON").unwrap_or_else(|_| "python3".into());
    let t = Instant::now();
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()?;
    let wall = t.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("ArrowRedis {args:?} failed: {text}").into());
    }
    let num = |s: &str| s.trim_end_matches(['s', ';', ',']).parse::<f64>().ok();
    // "Time: 2.45s" (gen, split); "Fetched n/N present chunks in 0.23s; parsed in 0.15s".
    let mut own = None;
    for line in text.lines() {
        if let Some(rest) = line.split("Time:").nth(1) {
            own = rest.split_whitespace().next().and_then(num);
        }
        if line.contains("present chunks in") {
            // The number after the first "in" (fetch) and after the last (parse).
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |i: Option<usize>| i.and_then(|i| words.get(i + 1)).and_then(|x| num(x));
            let fetch = after(words.iter().position(|x| *x == "in"));
            let parse = after(words.iter().rposition(|x| *x == "in"));
            if let (Some(f), Some(p)) = (fetch, parse) {
                own = Some(f + p);
            }
        }
    }
    Ok(Theirs { wall, own })
}

fn flush(port: u16) -> Res<()> {
    let mut c = PlainClient::connect(port)?;
    c.set(&pack(&[b"FLUSHALL"]))?;
    Ok(())
}

fn main() -> Res<()> {
    let bench = timing::benchmarking();
    let size = if bench {
        std::env::var("REDSTASH_BENCH_SIZE").unwrap_or_else(|_| "250mb".into())
    } else {
        "tiny".into()
    };
    let conns: usize = std::env::var("REDSTASH_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let spec = spec(&size);
    let server = RedisServer::builder().arg("--save").arg("").start()?;
    let port = server.port();
    let url = server.url();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("t.arrow");

    // ---- gen ----
    let t = Instant::now();
    let out = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(&file)?);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let file_bytes = spec.write_ipc(
        out,
        IpcFormat::File,
        IpcCompression::Zstd,
        threads,
        |_, _| {},
    )?;
    let gen_time = t.elapsed();

    // The stored values (re-framed from the file, as split stores them) and their keys.
    let store = TableStore::new("")
        .with_partitioning(Partitioning::Blocks(spec.batches))
        .with_compression(IpcCompression::Zstd);
    let mut cons: Vec<DirectConnection> = (0..conns)
        .map(|_| DirectConnection::open(url.as_str()))
        .collect::<Result<_, _>>()?;
    store.split_ipc_parallel(&mut cons, "ref", IpcInput::open(&file, Limits::default())?)?;
    let mut values: Vec<(String, Vec<u8>)> = Vec::new();
    {
        let mut c = redis::Client::open(url.as_str())?.get_connection()?;
        for p in 0..spec.partitions {
            for b in 0..spec.batches {
                let key = store.batch_key("ref", p, b);
                let v: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut c)?;
                values.push((store.batch_key("t", p, b), v));
            }
        }
    }
    let stored: u64 = values.iter().map(|(_, v)| v.len() as u64).sum();

    // ---- split: plain-socket SETs of the same values vs split_ipc_parallel ----
    let packed: Vec<Vec<(Vec<u8>, usize)>> = (0..conns)
        .map(|c| {
            let mut pipes: Vec<(Vec<u8>, usize)> = vec![(Vec::new(), 0)];
            for (key, v) in values.iter().skip(c).step_by(conns) {
                if pipes.last().is_some_and(|p| p.0.len() > 16 << 20) {
                    pipes.push((Vec::new(), 0));
                }
                if let Some(p) = pipes.last_mut() {
                    p.0.extend_from_slice(&pack(&[b"SET", key.as_bytes(), v]));
                    p.1 += 1;
                }
            }
            pipes
        })
        .collect();
    drop(values);
    let mut plain_split = Vec::new();
    let mut ours_split = Vec::new();
    let mut split_rss = 0;
    for run in 0..RUNS {
        // Alternate which goes first: the server's allocator state favours neither.
        for first in [run % 2 == 0, run % 2 != 0] {
            if first {
                flush(port)?;
                let mut clients: Vec<PlainClient> = (0..conns)
                    .map(|_| PlainClient::connect(port))
                    .collect::<Result<_, _>>()?;
                let t = Instant::now();
                std::thread::scope(|s| {
                    for (c, pipes) in clients.iter_mut().zip(&packed) {
                        s.spawn(move || {
                            for (p, n) in pipes {
                                c.set_many(p, *n).expect("plain SET pipeline");
                            }
                        });
                    }
                });
                plain_split.push(t.elapsed());
            } else {
                flush(port)?;
                let input = IpcInput::open(&file, Limits::default())?;
                let t = Instant::now();
                let (r, rss) = peak_rss(|| store.split_ipc_parallel(&mut cons, "t", input));
                r?;
                ours_split.push(t.elapsed());
                split_rss = split_rss.max(rss);
            }
        }
    }
    drop(packed);
    let (plain_split, ours_split) = (median(plain_split), median(ours_split));
    // The runs alternate, so the last writer of "t" may have been the plain client (no
    // manifest): the reads below read the table as split wrote it.
    flush(port)?;
    store.split_ipc_parallel(&mut cons, "t", IpcInput::open(&file, Limits::default())?)?;

    // ---- read: plain-socket MGETs of the same keys vs read_parallel ----
    let mgets: Vec<Vec<Vec<u8>>> = (0..conns)
        .map(|c| {
            (0..spec.partitions)
                .skip(c)
                .step_by(conns)
                .flat_map(|p| {
                    let keys: Vec<String> = (0..spec.batches)
                        .map(|b| store.batch_key("t", p, b))
                        .collect();
                    keys.chunks(64)
                        .map(|ch| {
                            let mut args: Vec<&[u8]> = vec![b"MGET"];
                            args.extend(ch.iter().map(|k| k.as_bytes()));
                            pack(&args)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect();
    let mut plain_read = Vec::new();
    let mut ours_read = Vec::new();
    let mut ours_read_async: Vec<Duration> = Vec::new();
    // CPU seconds of this process (user + system) per read: decoding is CPU work.
    let (mut plain_cpu, mut ours_cpu): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut read_rss = 0;
    let mut decoded = 0u64;
    let mut rows = 0usize;
    let mut clients: Vec<PlainClient> = (0..conns)
        .map(|_| PlainClient::connect(port))
        .collect::<Result<_, _>>()?;
    for _ in 0..RUNS {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let got: usize = std::thread::scope(|s| {
            let hs: Vec<_> = clients
                .iter_mut()
                .zip(&mgets)
                .map(|(c, reqs)| {
                    s.spawn(move || {
                        let mut n = 0usize;
                        for r in reqs {
                            let k = c.mget(r).expect("plain MGET");
                            n += (0..k)
                                .filter_map(|i| c.item(i))
                                .map(|v| v.len())
                                .sum::<usize>();
                        }
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        plain_read.push(t.elapsed());
        plain_cpu.push(cpu_seconds() - cpu);
        assert_eq!(
            got as u64, stored,
            "the plain client fetched every stored byte"
        );

        let (t, cpu) = (Instant::now(), cpu_seconds());
        let (table, rss) = peak_rss(|| store.read_parallel(&mut cons, "t", &ReadOptions::all()));
        let table = table?.ok_or("table vanished")?;
        ours_read.push(t.elapsed());
        ours_cpu.push(cpu_seconds() - cpu);
        read_rss = read_rss.max(rss);
        decoded = table_bytes(&table.batches);
        rows = table.num_rows();
        drop(table);
        #[cfg(feature = "tokio")]
        {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let t = rt.block_on(async {
                let mut acons = Vec::new();
                for _ in 0..conns {
                    acons.push(redstash::direct::DirectAsyncConnection::open(url.as_str()).await?);
                }
                let t = Instant::now();
                let table = store
                    .read_parallel_async(&mut acons, "t", &ReadOptions::all())
                    .await?
                    .ok_or("table vanished")?;
                let t = t.elapsed();
                assert_eq!(table.num_rows() as u64, spec.total_rows());
                Res::Ok(t)
            })?;
            ours_read_async.push(t);
        }
    }
    let first_read = ours_read[0];
    let first_cpu = ours_cpu[0];
    let median_f = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (plain_cpu, ours_cpu) = (median_f(plain_cpu), median_f(ours_cpu));
    let (plain_read, ours_read) = (median(plain_read), median(ours_read));

    // ---- read of the same table in ArrowRedis's layout (no manifest: SCAN) ----
    {
        let mut c = redis::Client::open(url.as_str())?.get_connection()?;
        let _: i64 = redis::cmd("DEL")
            .arg(store.manifest_key("t"))
            .query(&mut c)?;
    }
    let mut ours_read_scan = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let table = store
            .read_parallel(&mut cons, "t", &ReadOptions::all())?
            .ok_or("table vanished")?;
        ours_read_scan.push(t.elapsed());
        assert_eq!(table.num_rows() as u64, spec.total_rows());
    }
    let ours_read_scan = median(ours_read_scan);
    assert_eq!(rows as u64, spec.total_rows());

    // ---- ArrowRedis, same configuration, same server (optional) ----
    let theirs = if bench && std::env::var("REDSTASH_ARROWREDIS").is_ok() {
        flush(port)?;
        let ar_file = dir.path().join("arrowredis.arrow");
        let (p, b, r) = (
            spec.partitions.to_string(),
            spec.batches.to_string(),
            spec.rows.to_string(),
        );
        let f = ar_file.to_string_lossy().into_owned();
        let g = arrowredis(&[
            "gen",
            "--out",
            &f,
            "--partitions",
            &p,
            "--batches",
            &b,
            "--rows",
            &r,
            "--compression",
            "zstd",
            "--dict-strings",
            "--seed",
            "42",
        ])?;
        let sp = arrowredis(&[
            "split",
            "--inp",
            &f,
            "--redis-url",
            &url,
            "--prefix",
            "ar",
            "--batches",
            &b,
            "--compression",
            "zstd",
        ])?;
        let rd = arrowredis(&[
            "read",
            "--redis-url",
            &url,
            "--prefix",
            "ar",
            "--partitions",
            "all",
            "--batches",
            &b,
        ])?;
        Some((g, sp, rd))
    } else {
        None
    };

    println!(
        "\n## TableStore, {size}: {} partitions x {} batches x {} rows, zstd, {conns} connections\n",
        spec.partitions, spec.batches, spec.rows
    );
    println!(
        "file {:.1} MB, stored {:.1} MB, decoded {:.1} MB\n",
        file_bytes as f64 / 1e6,
        stored as f64 / 1e6,
        decoded as f64 / 1e6
    );
    println!("| phase | baseline | redstash | ratio (throughput vs baseline) |");
    println!("|---|---|---|---|");
    println!(
        "| gen | ArrowRedis 7.5 MB/s (issue anchor) | {:.2} s, {:.1} MB/s | {:.1}x |",
        gen_time.as_secs_f64(),
        mbps(file_bytes, gen_time),
        mbps(file_bytes, gen_time) / 7.5
    );
    println!(
        "| split | plain SET pipelines {:.3} s, {:.0} MB/s | {:.3} s, {:.0} MB/s | {:.2}x |",
        plain_split.as_secs_f64(),
        mbps(stored, plain_split),
        ours_split.as_secs_f64(),
        mbps(stored, ours_split),
        plain_split.as_secs_f64() / ours_split.as_secs_f64()
    );
    println!(
        "| read | plain MGET, no decoding {:.3} s, {:.0} MB/s | {:.3} s, {:.0} MB/s | {:.2}x |",
        plain_read.as_secs_f64(),
        mbps(stored, plain_read),
        ours_read.as_secs_f64(),
        mbps(stored, ours_read),
        plain_read.as_secs_f64() / ours_read.as_secs_f64()
    );
    println!(
        "| read, CPU seconds of this process (user + system) | {plain_cpu:.2} s | {ours_cpu:.2} s (first read {first_cpu:.2} s) | |"
    );
    println!(
        "| read, first in the process (no memory to reuse) | same | {:.3} s, {:.0} MB/s | {:.2}x |",
        first_read.as_secs_f64(),
        mbps(stored, first_read),
        plain_read.as_secs_f64() / first_read.as_secs_f64()
    );
    println!(
        "| read, ArrowRedis layout (no manifest: SCAN) | same | {:.3} s, {:.0} MB/s | {:.2}x |",
        ours_read_scan.as_secs_f64(),
        mbps(stored, ours_read_scan),
        plain_read.as_secs_f64() / ours_read_scan.as_secs_f64()
    );
    if !ours_read_async.is_empty() {
        let a = median(ours_read_async);
        println!(
            "| read, `read_parallel_async` (DirectAsyncConnection) | same | {:.3} s, {:.0} MB/s | {:.2}x |",
            a.as_secs_f64(),
            mbps(stored, a),
            plain_read.as_secs_f64() / a.as_secs_f64()
        );
    }
    if let Some((g, sp, rd)) = &theirs {
        let secs = |t: &Theirs| t.own.unwrap_or(t.wall.as_secs_f64());
        println!(
            "\n| phase | ArrowRedis (own timing / whole process) | redstash | redstash speed-up |"
        );
        println!("|---|---|---|---|");
        for (name, t, ours) in [
            ("gen", g, gen_time),
            ("split", sp, ours_split),
            ("read", rd, ours_read),
        ] {
            println!(
                "| {name} | {:.2} s / {:.2} s | {:.3} s | {:.1}x (own timing), {:.1}x (process) |",
                secs(t),
                t.wall.as_secs_f64(),
                ours.as_secs_f64(),
                secs(t) / ours.as_secs_f64(),
                t.wall.as_secs_f64() / ours.as_secs_f64()
            );
        }
    }
    println!(
        "\npeak RSS above start: split {:.0} MB (window {} x 16 MiB + 64 MB = {:.0} MB), read {:.0} MB (1.5 x decoded = {:.0} MB)",
        split_rss as f64 / 1e6,
        conns,
        (conns as f64 * 16.0 * 1.048576) + 64.0,
        read_rss as f64 / 1e6,
        1.5 * decoded as f64 / 1e6
    );
    Ok(())
}
