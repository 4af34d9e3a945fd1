//! Soak test (run by `scripts/soak`, not by the test suite): a bounded mixed workload on
//! every store, sync and async, against a local durable redis-server that is killed and
//! restarted every 30 s, and against a Redis Cluster with replicas failed over once. Every value is self-checking (its version and a pattern derived
//! from key and version), and the workload keeps, per key, the last version the server
//! acknowledged and the versions whose outcome is unknown (in flight at a failure), so a
//! read proves the value is one the server may hold. It prints a summary table and exits
//! non-zero on any data mismatch, any error that is not explained by a fault injected
//! (a connection or timeout error while the server is down or just back), or client
//! memory that keeps growing.
//!
//! ```text
//! scripts/soak [--seconds 300] [--tasks 64] [--restart-every 30] [--cluster-tasks 8]
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2};
use redstash::cluster::ClusterAsyncConnection;
use redstash::direct::pool::{DirectManager, DirectPool};
use redstash::direct::{ConnectOptions, DirectConnection};
use redstash::exec::AsyncConnection;
use redstash::testkit::RedisCluster;
use redstash::testkit::RedisServer;
use redstash::{ArrayStore, BatchStore, DataMetaStore, Error, FeatureStore, RedisErrorKind, View};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Elements of an array value (u32): version (2), then the pattern.
const ARRAY_LEN: usize = 4096;
/// Entities a task writes to its feature view per call, and the vector length.
const ENTITIES: usize = 50;
const DIM: usize = 16;
/// Keys per task and store.
const KEYS: u64 = 8;
/// After a restart, errors are explained by it for this long.
const FAULT_WINDOW: Duration = Duration::from_secs(10);

/// The values a key may hold: the last acknowledged version, and versions written since
/// whose outcome is unknown.
#[derive(Default, Clone)]
struct Allowed {
    acked: Option<u64>,
    maybe: Vec<u64>,
}

impl Allowed {
    fn written(&mut self, v: u64) {
        self.acked = Some(v);
        self.maybe.clear();
    }
    fn unknown(&mut self, v: u64) {
        self.maybe.push(v);
    }
    fn allows(&self, v: Option<u64>) -> bool {
        match v {
            None => self.acked.is_none(),
            Some(v) => self.acked == Some(v) || self.maybe.contains(&v),
        }
    }
}

fn pattern(seed: u64, len: usize) -> impl Iterator<Item = u32> {
    let mut x = seed | 1;
    (0..len).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u32
    })
}

fn seed(key: &str, version: u64) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A self-checking value: version, then the pattern of (key, version).
fn value(key: &str, version: u64, len: usize) -> Vec<u32> {
    let mut v = vec![version as u32, (version >> 32) as u32];
    v.extend(pattern(seed(key, version), len - 2));
    v
}

/// The version a value says it is, if its pattern is right.
fn version_of(key: &str, v: &[u32]) -> Option<u64> {
    let version = u64::from(*v.first()?) | (u64::from(*v.get(1)?) << 32);
    pattern(seed(key, version), v.len() - 2)
        .eq(v[2..].iter().copied())
        .then_some(version)
}

/// What happened, shared by every worker.
#[derive(Default)]
struct Stats {
    ops: AtomicU64,
    reads_checked: AtomicU64,
    mismatches: Mutex<Vec<String>>,
    errors: Mutex<BTreeMap<String, u64>>,
    unexplained: Mutex<Vec<String>>,
    /// When the server went down, and when it was back.
    faults: Mutex<Vec<(Instant, Option<Instant>)>>,
}

impl Stats {
    fn mismatch(&self, what: String) {
        self.mismatches.lock().unwrap().push(what);
    }

    /// Count an error; `Err` when no injected fault explains it.
    fn error(&self, what: &str, e: &dyn std::fmt::Display, kind: Option<RedisErrorKind>) {
        let name = kind.map_or_else(|| "pool".to_owned(), |k| format!("{k:?}"));
        *self.errors.lock().unwrap().entry(name).or_default() += 1;
        let now = Instant::now();
        let during_fault = self
            .faults
            .lock()
            .unwrap()
            .iter()
            .any(|(down, up)| now >= *down && up.is_none_or(|up| now <= up + FAULT_WINDOW));
        let fault_kind = matches!(
            kind,
            None | Some(
                RedisErrorKind::Connection | RedisErrorKind::Timeout | RedisErrorKind::Transient
            )
        );
        if !(during_fault && fault_kind) {
            self.unexplained
                .lock()
                .unwrap()
                .push(format!("{what}: {e}"));
        }
    }
}

/// Whether a failed write may have stored something (then its version is "unknown").
fn may_have_run(e: &Error) -> bool {
    matches!(
        e.redis_kind(),
        Some(RedisErrorKind::Connection | RedisErrorKind::Timeout)
    ) || matches!(e, Error::UnexpectedReply { .. })
}

/// What one async task writes and reads: arrays, a feature view and batches of its own,
/// and what each of its keys may hold.
struct Worker {
    arrays: ArrayStore,
    batches: BatchStore,
    features: FeatureStore,
    view: String,
    array_allowed: BTreeMap<u64, Allowed>,
    batch_allowed: BTreeMap<u64, Allowed>,
    entity_allowed: Vec<Allowed>,
    ids: Vec<String>,
    registered: bool,
    version: u64,
    step: u64,
}

impl Worker {
    fn new(name: &str) -> Self {
        Worker {
            arrays: ArrayStore::new(format!("soak:a{name}")),
            batches: BatchStore::new(format!("soak:b{name}")),
            features: FeatureStore::new(format!("soak:f{name}")),
            view: format!("v{name}"),
            array_allowed: BTreeMap::new(),
            batch_allowed: BTreeMap::new(),
            entity_allowed: vec![Allowed::default(); ENTITIES],
            ids: (0..ENTITIES).map(|i| format!("e{i}")).collect(),
            registered: false,
            version: 0,
            step: 0,
        }
    }

    /// One operation (they rotate), checked.
    async fn op<C: AsyncConnection + ?Sized>(&mut self, con: &mut C, stats: &Stats) {
        self.step += 1;
        self.version += 1;
        let (step, version) = (self.step, self.version);
        let k = step % KEYS;
        let name = k.to_string();
        match step % 6 {
            0 => {
                let key = self.arrays.key(&name);
                let a = Array1::from(value(&key, version, ARRAY_LEN));
                match self.arrays.put_async(con, &name, &a).await {
                    Ok(()) => self.array_allowed.entry(k).or_default().written(version),
                    Err(e) => {
                        if may_have_run(&e) {
                            self.array_allowed.entry(k).or_default().unknown(version);
                        }
                        stats.error("array put", &e, e.redis_kind());
                    }
                }
            }
            1 => match self.arrays.get_async(con, &name).await {
                Ok(got) => {
                    let key = self.arrays.key(&name);
                    let v = got.map(|a| version_of(&key, bytemuck::cast_slice(a.data())));
                    let allowed = self.array_allowed.entry(k).or_default();
                    match v {
                        Some(None) => stats.mismatch(format!("{key}: corrupt value")),
                        v if !allowed.allows(v.flatten()) => {
                            stats.mismatch(format!("{key}: version {v:?} not written"))
                        }
                        _ => {}
                    }
                    stats.reads_checked.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => stats.error("array get", &e, e.redis_kind()),
            },
            2 | 3 => {
                if !self.registered {
                    let view = View::of::<i64>(&self.view, DIM);
                    match self.features.register_view_async(con, &view).await {
                        Ok(()) => self.registered = true,
                        Err(e) => {
                            stats.error("register", &e, e.redis_kind());
                            return;
                        }
                    }
                }
                if step % 6 == 2 {
                    self.write_features(con, version, stats).await;
                } else {
                    self.read_features(con, stats).await;
                }
            }
            4 => {
                let key = self.batches.key(&name);
                let a = Array1::from(value(&key, version, 256));
                match self.batches.put_async(con, &name, &[("x", &a)]).await {
                    Ok(()) => self.batch_allowed.entry(k).or_default().written(version),
                    Err(e) => {
                        if may_have_run(&e) {
                            self.batch_allowed.entry(k).or_default().unknown(version);
                        }
                        stats.error("batch put", &e, e.redis_kind());
                    }
                }
            }
            _ => match self.batches.get_async(con, &name).await {
                Ok(got) => {
                    let key = self.batches.key(&name);
                    let v = match got.as_ref().map(|b| b.get("x")) {
                        None => None,
                        Some(None) => {
                            stats.mismatch(format!("{key}: batch without its array"));
                            return;
                        }
                        Some(Some(a)) => match version_of(&key, bytemuck::cast_slice(a.data())) {
                            Some(v) => Some(v),
                            None => {
                                stats.mismatch(format!("{key}: corrupt batch"));
                                return;
                            }
                        },
                    };
                    if !self.batch_allowed.entry(k).or_default().allows(v) {
                        stats.mismatch(format!("{key}: batch version {v:?} not written"));
                    }
                    stats.reads_checked.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => stats.error("batch get", &e, e.redis_kind()),
            },
        }
        stats.ops.fetch_add(1, Ordering::Relaxed);
    }

    async fn write_features<C: AsyncConnection + ?Sized>(
        &mut self,
        con: &mut C,
        version: u64,
        stats: &Stats,
    ) {
        let ids = &self.ids;
        let values = Array2::from_shape_fn((ENTITIES, DIM), |(i, j)| {
            if j == 0 {
                version as i64
            } else {
                (seed(&ids[i], version) ^ j as u64) as i64
            }
        });
        match self
            .features
            .write_many_async(con, &self.view, &self.ids, &values)
            .await
        {
            Ok(_) => self
                .entity_allowed
                .iter_mut()
                .for_each(|a| a.written(version)),
            Err(Error::PartialWrite {
                written,
                unknown,
                ref source,
                ..
            }) => {
                written
                    .iter()
                    .for_each(|&i| self.entity_allowed[i].written(version));
                unknown
                    .iter()
                    .for_each(|&i| self.entity_allowed[i].unknown(version));
                stats.error("write_many", source, source.redis_kind());
            }
            Err(e) => {
                if may_have_run(&e) {
                    self.entity_allowed
                        .iter_mut()
                        .for_each(|a| a.unknown(version));
                }
                stats.error("write_many", &e, e.redis_kind());
            }
        }
    }

    async fn read_features<C: AsyncConnection + ?Sized>(&mut self, con: &mut C, stats: &Stats) {
        match self
            .features
            .read_many_async::<i64, _, _>(con, &self.view, &self.ids)
            .await
        {
            Ok(rows) => {
                for (i, row) in rows.values.outer_iter().enumerate() {
                    let v = rows.present[i].then(|| row[0] as u64);
                    let ok = match v {
                        Some(v) => {
                            (1..DIM).all(|j| row[j] == (seed(&self.ids[i], v) ^ j as u64) as i64)
                        }
                        None => true,
                    };
                    if !ok || !self.entity_allowed[i].allows(v) {
                        stats.mismatch(format!("view {} entity {i}: {v:?}", self.view));
                    }
                }
                stats.reads_checked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => stats.error("read_many", &e, e.redis_kind()),
        }
    }
}

/// One async task through the pool.
async fn pool_worker(t: usize, pool: DirectPool, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut w = Worker::new(&t.to_string());
    while !stop.load(Ordering::Relaxed) {
        match pool.get().await {
            Ok(mut con) => w.op(&mut *con, &stats).await,
            Err(e) => {
                stats.error("pool.get", &e, None);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One async task on its own Redis Cluster connection.
async fn cluster_worker(
    t: usize,
    seeds: Vec<String>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Res<()> {
    let mut con = ClusterAsyncConnection::open(seeds).await?;
    let mut w = Worker::new(&format!("c{t}"));
    while !stop.load(Ordering::Relaxed) {
        w.op(&mut con, &stats).await;
    }
    Ok(())
}

/// One thread on a sync direct connection: arrays in the data/meta layout.
fn sync_worker(t: usize, url: String, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let store = DataMetaStore::new(format!("soak:{{s{t}}}"));
    let mut allowed: BTreeMap<u64, Allowed> = BTreeMap::new();
    let mut con: Option<DirectConnection> = None;
    let mut version = 0u64;
    while !stop.load(Ordering::Relaxed) {
        version += 1;
        let k = version % KEYS;
        let c = match con.as_mut() {
            Some(c) => c,
            None => match DirectConnection::open_with(url.as_str(), ConnectOptions::default()) {
                Ok(c) => con.insert(c),
                Err(e) => {
                    let kind = RedisErrorKind::classify(&e);
                    stats.error("sync open", &e, Some(kind));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let name = k.to_string();
        let key = format!("soak:{{s{t}}}:{name}");
        if version.is_multiple_of(2) {
            let a = Array1::from(value(&key, version, 1024));
            match store.put(c, &name, &a) {
                Ok(()) => allowed.entry(k).or_default().written(version),
                Err(e) => {
                    if may_have_run(&e) {
                        allowed.entry(k).or_default().unknown(version);
                    }
                    stats.error("sync put", &e, e.redis_kind());
                }
            }
        } else {
            match store.get(c, &name) {
                Ok(got) => {
                    let v = got.map(|a| {
                        let vals: Vec<u32> = bytemuck::cast_slice(a.data()).to_vec();
                        version_of(&key, &vals)
                    });
                    match v {
                        Some(None) => stats.mismatch(format!("{key}: corrupt value")),
                        v if !allowed.entry(k).or_default().allows(v.flatten()) => {
                            stats.mismatch(format!("{key}: version {v:?} not written"))
                        }
                        _ => {}
                    }
                    stats.reads_checked.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => stats.error("sync get", &e, e.redis_kind()),
            }
        }
        stats.ops.fetch_add(1, Ordering::Relaxed);
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = arg("--seconds", 300);
    let tasks = arg("--tasks", 64) as usize;
    let restart_every = Duration::from_secs(arg("--restart-every", 30));
    let cluster_tasks = arg("--cluster-tasks", 8) as usize;
    let mut server = RedisServer::builder().durable().start()?;
    let url = server.url();
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let options = ConnectOptions::default().with_response_timeout(Some(Duration::from_secs(2)));
    let manager = DirectManager::new(url.as_str(), options)?;
    let pool = DirectPool::builder(manager)
        .max_size(16)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(2)))
        .runtime(redstash::direct::pool::deadpool::Runtime::Tokio1)
        .build()?;
    let mut handles = Vec::new();
    for t in 0..tasks {
        handles.push(rt.spawn(pool_worker(
            t,
            pool.clone(),
            Arc::clone(&stats),
            Arc::clone(&stop),
        )));
    }
    // A Redis Cluster (3 primaries, a replica each), failed over once half-way.
    let cluster = match cluster_tasks {
        0 => None,
        _ => Some(RedisCluster::start_with_replicas(1)?),
    };
    let mut cluster_handles = Vec::new();
    if let Some(c) = &cluster {
        for t in 0..cluster_tasks {
            let (seeds, stats, stop) = (c.nodes(), Arc::clone(&stats), Arc::clone(&stop));
            cluster_handles.push(rt.spawn(cluster_worker(t, seeds, stats, stop)));
        }
    }
    let mut failed_over = false;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (url, stats, stop) = (url.clone(), Arc::clone(&stats), Arc::clone(&stop));
            std::thread::spawn(move || sync_worker(t, url, stats, stop))
        })
        .collect();

    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut next_restart = start + restart_every;
    let mut rss: Vec<(u64, f64)> = Vec::new();
    let mut restarts = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        let now = Instant::now();
        if (now - start).as_secs().is_multiple_of(5) {
            rss.push(((now - start).as_secs(), rss_mib()));
        }
        if let Some(c) = cluster.as_ref().filter(|_| !failed_over)
            && now >= start + Duration::from_secs(seconds / 2)
        {
            failed_over = true;
            stats.faults.lock().unwrap().push((Instant::now(), None));
            let replica = *c.replicas().first().ok_or("no replica")?;
            c.failover(replica)?;
            if let Some(last) = stats.faults.lock().unwrap().last_mut() {
                last.1 = Some(Instant::now());
            }
        }
        if now >= next_restart && now + Duration::from_secs(5) < end {
            stats.faults.lock().unwrap().push((Instant::now(), None));
            server.kill();
            std::thread::sleep(Duration::from_millis(500));
            server.restart()?;
            if let Some(last) = stats.faults.lock().unwrap().last_mut() {
                last.1 = Some(Instant::now());
            }
            restarts += 1;
            next_restart = Instant::now() + restart_every;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        rt.block_on(h)?;
    }
    for h in cluster_handles {
        rt.block_on(h)??;
    }
    for t in threads {
        t.join().map_err(|_| "a sync worker panicked")?;
    }

    let ops = stats.ops.load(Ordering::Relaxed);
    let mismatches = stats.mismatches.lock().unwrap().clone();
    let unexplained = stats.unexplained.lock().unwrap().clone();
    let errors = stats.errors.lock().unwrap().clone();
    // Memory after the warm-up (first 30 s, or the first third of a short run).
    let warm = (seconds / 3).min(30);
    let settled: Vec<f64> = rss
        .iter()
        .filter(|(t, _)| *t >= warm)
        .map(|r| r.1)
        .collect();
    let (first, last, max) = (
        settled.first().copied().unwrap_or(0.0),
        settled.last().copied().unwrap_or(0.0),
        settled.iter().copied().fold(0.0, f64::max),
    );
    let growth = last - first;
    println!(
        "| soak ({seconds} s: {tasks} async tasks on a pool + 4 sync threads on one server, {cluster_tasks} async tasks on a 3+3 Redis Cluster) | |"
    );
    println!("|---|---|");
    println!(
        "| operations | {ops} ({:.0}/s) |",
        ops as f64 / seconds as f64
    );
    println!(
        "| reads checked | {} |",
        stats.reads_checked.load(Ordering::Relaxed)
    );
    println!("| server restarts (SIGKILL, durable) | {restarts} |");
    println!(
        "| cluster failovers (`CLUSTER FAILOVER`) | {} |",
        u8::from(failed_over)
    );
    println!(
        "| errors seen | {} |",
        errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| errors not explained by a restart | {} |",
        unexplained.len()
    );
    println!("| data mismatches | {} |", mismatches.len());
    println!(
        "| client RSS after warm-up: first / last / max | {first:.1} / {last:.1} / {max:.1} MiB |"
    );
    for m in mismatches.iter().take(10) {
        eprintln!("mismatch: {m}");
    }
    for u in unexplained.iter().take(10) {
        eprintln!("unexplained error: {u}");
    }
    if !mismatches.is_empty() || !unexplained.is_empty() || growth > 64.0 || ops == 0 {
        return Err(format!(
            "soak failed: {} mismatches, {} unexplained errors, RSS growth {growth:.1} MiB",
            mismatches.len(),
            unexplained.len()
        )
        .into());
    }
    Ok(())
}
