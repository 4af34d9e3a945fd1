//! `ArrayStore` put+get against a live `redis-server` (started by
//! `redstash::testkit`), on every kind of connection, next to two baselines: redis-rs
//! `SET`/`GET` commands of the same bytes, and a minimal hand-written RESP client on a
//! plain `TcpStream` (the physical limit, see `common/plain_socket.rs`).
//!
//! One iteration = one `put` then one `get` of the same key; the throughput counts the
//! encoded value twice (written and read). A second group reads 1,000 arrays of 1 KB
//! with one `get_many` against a raw `MGET`.
//!
//! After criterion, a median-of-15-runs pass (variants interleaved run by run) prints a
//! markdown table with the ratio of each variant to the plain socket.
//!
//! `cargo bench --bench stores --features testkit,tokio`; `REDSTASH_BENCH_QUICK=1`
//! skips the 64 MB case.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use redis::aio::MultiplexedConnection;
use redstash::codec::{ArrayCodec, Npy};
use redstash::direct::{DirectAsyncConnection, DirectConnection};
use redstash::testkit::RedisServer;
use redstash::{ArrayStore, RawArray};
use tokio::runtime::Runtime;

#[path = "common/data.rs"]
mod data;
#[path = "common/plain_socket.rs"]
mod plain_socket;
#[path = "common/timing.rs"]
mod timing;

use plain_socket::{PlainClient, pack};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Plain,
    SyncRedis,
    SyncDirect,
    AsyncMultiplexed,
    AsyncDirect,
    RedisCmd,
}

const VARIANTS: [Variant; 6] = [
    Variant::Plain,
    Variant::SyncRedis,
    Variant::SyncDirect,
    Variant::AsyncMultiplexed,
    Variant::AsyncDirect,
    Variant::RedisCmd,
];

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Plain => "plain socket",
            Variant::SyncRedis => "redstash sync (redis::Connection)",
            Variant::SyncDirect => "redstash sync (DirectConnection)",
            Variant::AsyncMultiplexed => "redstash async (MultiplexedConnection)",
            Variant::AsyncDirect => "redstash async (DirectAsyncConnection)",
            Variant::RedisCmd => "redis-rs Cmd SET+GET",
        }
    }
}

/// One array size: the array, its `.npy` value and the packed plain-socket requests.
struct Case {
    label: &'static str,
    name: String,
    key: String,
    raw: RawArray,
    npy: Vec<u8>,
    set_packed: Vec<u8>,
    get_packed: Vec<u8>,
}

impl Case {
    fn new(store: &ArrayStore, label: &'static str, values: usize) -> Case {
        let name = format!("v{values}");
        let key = store.key(&name);
        let raw = RawArray::from_vec(vec![values], data::normal_f64(values as u64, values))
            .expect("shape matches");
        let npy = Npy.encode(&raw.as_array_ref()).expect("encode");
        let set_packed = pack(&[b"SET", key.as_bytes(), &npy]);
        let get_packed = pack(&[b"GET", key.as_bytes()]);
        Case {
            label,
            name,
            key,
            raw,
            npy,
            set_packed,
            get_packed,
        }
    }
}

/// Every connection, opened once.
struct Conns {
    store: ArrayStore,
    rt: Runtime,
    redis: redis::Connection,
    direct: DirectConnection,
    mux: MultiplexedConnection,
    direct_async: DirectAsyncConnection,
    plain: PlainClient,
}

impl Conns {
    fn open(server: &RedisServer) -> Conns {
        let url = server.url();
        let client = redis::Client::open(url.as_str()).expect("client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (mux, direct_async) = rt.block_on(async {
            (
                client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("multiplexed connection"),
                DirectAsyncConnection::open(url.as_str())
                    .await
                    .expect("direct async connection"),
            )
        });
        Conns {
            store: ArrayStore::new("b"),
            redis: client.get_connection().expect("connection"),
            direct: DirectConnection::open(url.as_str()).expect("direct connection"),
            plain: PlainClient::connect(server.port()).expect("plain socket"),
            rt,
            mux,
            direct_async,
        }
    }

    /// One put+get of `case` on `v`.
    fn put_get(&mut self, v: Variant, case: &Case) {
        let store = &self.store;
        match v {
            Variant::Plain => {
                self.plain.set(&case.set_packed).expect("SET");
                let got = self.plain.get(&case.get_packed).expect("GET");
                black_box(got.map(|b| b.len()));
            }
            Variant::SyncRedis => {
                store
                    .put(&mut self.redis, &case.name, &case.raw)
                    .expect("put");
                black_box(store.get(&mut self.redis, &case.name).expect("get"));
            }
            Variant::SyncDirect => {
                store
                    .put(&mut self.direct, &case.name, &case.raw)
                    .expect("put");
                black_box(store.get(&mut self.direct, &case.name).expect("get"));
            }
            Variant::AsyncMultiplexed => {
                let con = &mut self.mux;
                self.rt.block_on(async {
                    store
                        .put_async(con, &case.name, &case.raw)
                        .await
                        .expect("put");
                    black_box(store.get_async(con, &case.name).await.expect("get"));
                });
            }
            Variant::AsyncDirect => {
                let con = &mut self.direct_async;
                self.rt.block_on(async {
                    store
                        .put_async(con, &case.name, &case.raw)
                        .await
                        .expect("put");
                    black_box(store.get_async(con, &case.name).await.expect("get"));
                });
            }
            Variant::RedisCmd => {
                redis::cmd("SET")
                    .arg(&case.key)
                    .arg(&case.npy)
                    .query::<()>(&mut self.redis)
                    .expect("SET");
                let got: Vec<u8> = redis::cmd("GET")
                    .arg(&case.key)
                    .query(&mut self.redis)
                    .expect("GET");
                black_box(got);
            }
        }
    }

    /// Every variant must read back exactly what was written.
    fn check(&mut self, case: &Case) {
        for v in VARIANTS {
            self.put_get(v, case);
        }
        let got = self.store.get(&mut self.direct, &case.name).expect("get");
        assert_eq!(got.as_ref(), Some(&case.raw), "{}", case.label);
        let plain = self.plain.get(&case.get_packed).expect("GET");
        assert_eq!(plain, Some(&case.npy[..]), "{}", case.label);
    }
}

/// 1,000 small arrays for the `get_many` group.
struct Many {
    names: Vec<String>,
    arrays: Vec<RawArray>,
    mget_packed: Vec<u8>,
}

const MANY: usize = 1000;

impl Many {
    fn new(conns: &mut Conns) -> Many {
        let names: Vec<String> = (0..MANY).map(|i| format!("m{i}")).collect();
        let arrays: Vec<RawArray> = (0..MANY)
            .map(|i| {
                RawArray::from_vec(vec![128], data::normal_f64(1000 + i as u64, 128))
                    .expect("shape")
            })
            .collect();
        let items: Vec<(&String, &RawArray)> = names.iter().zip(&arrays).collect();
        conns
            .store
            .put_many(&mut conns.direct, &items)
            .expect("put_many");
        let keys: Vec<String> = names.iter().map(|n| conns.store.key(n)).collect();
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        Many {
            mget_packed: pack(&args),
            names,
            arrays,
        }
    }

    fn run(&self, conns: &mut Conns, v: Variant) {
        match v {
            Variant::Plain => {
                let n = conns.plain.mget(&self.mget_packed).expect("MGET");
                black_box((n, conns.plain.item(n - 1).map(|b| b.len())));
            }
            Variant::SyncRedis => {
                black_box(
                    conns
                        .store
                        .get_many(&mut conns.redis, &self.names)
                        .expect("get_many"),
                );
            }
            Variant::SyncDirect => {
                black_box(
                    conns
                        .store
                        .get_many(&mut conns.direct, &self.names)
                        .expect("get_many"),
                );
            }
            other => unreachable!("{other:?} is not in the get_many group"),
        }
    }

    fn check(&self, conns: &mut Conns) {
        let got = conns
            .store
            .get_many(&mut conns.redis, &self.names)
            .expect("get_many");
        let want: Vec<Option<RawArray>> = self.arrays.iter().cloned().map(Some).collect();
        assert_eq!(got, want);
        assert_eq!(
            conns
                .store
                .get_many(&mut conns.direct, &self.names)
                .expect("get_many"),
            want
        );
        assert_eq!(conns.plain.mget(&self.mget_packed).expect("MGET"), MANY);
        let first = Npy.encode(&self.arrays[0].as_array_ref()).expect("encode");
        assert_eq!(conns.plain.item(0), Some(&first[..]));
    }
}

const MANY_VARIANTS: [Variant; 3] = [Variant::Plain, Variant::SyncRedis, Variant::SyncDirect];

fn many_label(v: Variant) -> &'static str {
    match v {
        Variant::Plain => "plain socket MGET",
        Variant::SyncRedis => "redstash get_many (redis::Connection)",
        Variant::SyncDirect => "redstash get_many (DirectConnection)",
        _ => unreachable!(),
    }
}

fn run_criterion(c: &mut Criterion, conns: &mut Conns, cases: &[Case], many: &Many) {
    for case in cases {
        let mut g = c.benchmark_group(format!("put+get/{}", case.label));
        g.throughput(Throughput::Bytes(2 * case.npy.len() as u64));
        if case.npy.len() >= 8 << 20 {
            // Tens to hundreds of ms per iteration: one iteration per sample, 10 samples.
            g.sampling_mode(SamplingMode::Flat);
            g.measurement_time(Duration::from_secs(1));
        }
        for v in VARIANTS {
            g.bench_function(v.label(), |b| b.iter(|| conns.put_get(v, case)));
        }
        g.finish();
    }
    let mut g = c.benchmark_group("get_many/1000 x 1 KB");
    g.throughput(Throughput::Elements(MANY as u64));
    for v in MANY_VARIANTS {
        g.bench_function(many_label(v), |b| b.iter(|| many.run(conns, v)));
    }
    g.finish();
}

/// Median of `runs` runs per variant, variants interleaved run by run (so that drift
/// in machine load hits all of them alike).
fn medians(runs: usize, variants: &[Variant], mut f: impl FnMut(Variant)) -> Vec<Duration> {
    for &v in variants {
        f(v); // warm-up
    }
    let mut times = vec![Vec::with_capacity(runs); variants.len()];
    for _ in 0..runs {
        for (i, &v) in variants.iter().enumerate() {
            let t = std::time::Instant::now();
            f(v);
            times[i].push(t.elapsed());
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect()
}

/// redis-py (hiredis) SET+GET medians of the same sizes, from the venv of
/// `scripts/setup` (`REDSTASH_PYTHON` or `.venv/bin/python`); empty when unavailable.
fn redis_py_medians(url: &str, runs: usize, cases: &[Case]) -> Vec<Option<f64>> {
    let python = std::env::var("REDSTASH_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
        });
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python/redis_py_put_get.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(url)
        .arg(runs.to_string())
        .args(cases.iter().map(|c| format!("{}={}", c.label, c.raw.len())))
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            eprintln!(
                "redis-py baseline failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return vec![None; cases.len()];
        }
        Err(e) => {
            eprintln!(
                "redis-py baseline skipped ({}: {e}); run scripts/setup",
                python.display()
            );
            return vec![None; cases.len()];
        }
    };
    cases
        .iter()
        .map(|c| {
            text.lines()
                .filter_map(|l| l.split_once('\t'))
                .find(|(label, _)| *label == c.label)
                .and_then(|(_, ms)| ms.trim().parse().ok())
        })
        .collect()
}

fn print_summary(conns: &mut Conns, cases: &[Case], many: &Many, url: &str) {
    const RUNS: usize = 15;
    let py = redis_py_medians(url, RUNS, cases);
    let mut t = format!(
        "\n### ArrayStore put+get, median of {RUNS} runs (ms; ratio = time / plain-socket time, lower is better)\n\n| size |"
    );
    for v in VARIANTS {
        t += &format!(" {} |", v.label());
    }
    t += " redis-py + hiredis SET+GET |";
    t += "\n|---|";
    t += &"---:|".repeat(VARIANTS.len() + 1);
    t += "\n";
    for (case, py) in cases.iter().zip(&py) {
        let m = medians(RUNS, &VARIANTS, |v| conns.put_get(v, case));
        let base = m[0].as_secs_f64();
        t += &format!("| {} |", case.label);
        for d in &m {
            t += &format!(" {} ({:.2}x) |", timing::ms(*d), d.as_secs_f64() / base);
        }
        match py {
            Some(ms) => t += &format!(" {ms:.3} ({:.2}x) |", ms / 1e3 / base),
            None => t += " n/a |",
        }
        t += "\n";
    }
    let m = medians(RUNS, &MANY_VARIANTS, |v| many.run(conns, v));
    let base = m[0].as_secs_f64();
    t += &format!(
        "\n### get_many of {MANY} arrays of 1 KB (f64 x 128), median of {RUNS} runs\n\n\
         | variant | ms | arrays/s | ratio to plain socket (time) |\n|---|---:|---:|---:|\n"
    );
    for (v, d) in MANY_VARIANTS.iter().zip(&m) {
        t += &format!(
            "| {} | {} | {:.0} | {:.2}x |\n",
            many_label(*v),
            timing::ms(*d),
            MANY as f64 / d.as_secs_f64(),
            d.as_secs_f64() / base
        );
    }
    eprintln!("{t}");
}

fn main() {
    let quick = std::env::var("REDSTASH_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let server =
        RedisServer::start().expect("start redis-server (is it installed? see scripts/setup)");
    let mut conns = Conns::open(&server);

    let mut sizes = vec![("1 KB", 128), ("1 MB", 1 << 17), ("8 MB", 1 << 20)];
    if !quick {
        sizes.push(("64 MB", 1 << 23));
    }
    let cases: Vec<Case> = sizes
        .into_iter()
        .map(|(label, n)| Case::new(&conns.store, label, n))
        .collect();
    for case in &cases {
        conns.check(case);
    }
    let many = Many::new(&mut conns);
    many.check(&mut conns);

    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    run_criterion(&mut c, &mut conns, &cases, &many);
    c.final_summary();

    if timing::benchmarking() {
        print_summary(&mut conns, &cases, &many, &server.url());
    }
    drop(conns);
    drop(server);
}
