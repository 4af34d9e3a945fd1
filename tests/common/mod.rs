//! Shared test support: one connection enum over every backend, so each store test is
//! written once and run on all of them; deterministic test data shared with the Python
//! interop scripts.
#![allow(dead_code)]

pub mod tls;

use half::f16;
use num_complex::Complex;
use redstash::testkit::RedisServer;
use redstash::{DType, Order, RawArray};

/// Every backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `redis::Connection`.
    Sync,
    /// `redstash::direct::DirectConnection`.
    DirectSync,
    /// `redis::aio::MultiplexedConnection`.
    Async,
    /// `redis::aio::ConnectionManager`.
    AsyncManager,
    /// `redstash::direct::DirectAsyncConnection`.
    DirectAsync,
    /// `redstash::cluster::ClusterConnection` on a 3-primary Redis Cluster.
    #[cfg(feature = "cluster")]
    Cluster,
    /// `redstash::cluster::ClusterAsyncConnection` on a 3-primary Redis Cluster.
    #[cfg(all(feature = "cluster", feature = "tokio"))]
    ClusterAsync,
}

pub const ALL_BACKENDS: [Backend; 5] = [
    Backend::Sync,
    Backend::DirectSync,
    Backend::Async,
    Backend::AsyncManager,
    Backend::DirectAsync,
];

/// The backends [`backend_tests!`] runs a case on: every single-server one, then a
/// Redis Cluster (feature `cluster`).
pub fn backends() -> Vec<Backend> {
    let mut v = ALL_BACKENDS.to_vec();
    #[cfg(feature = "cluster")]
    v.push(Backend::Cluster);
    #[cfg(all(feature = "cluster", feature = "tokio"))]
    v.push(Backend::ClusterAsync);
    v
}

/// Whether the backend is a Redis Cluster (transactions need keys of one slot there).
pub fn is_cluster(backend: Backend) -> bool {
    #[cfg(feature = "cluster")]
    if backend == Backend::Cluster {
        return true;
    }
    #[cfg(all(feature = "cluster", feature = "tokio"))]
    if backend == Backend::ClusterAsync {
        return true;
    }
    let _ = backend;
    false
}

pub enum Conn {
    #[cfg(feature = "cluster")]
    Cluster(redstash::cluster::ClusterConnection),
    #[cfg(all(feature = "cluster", feature = "tokio"))]
    ClusterAsync(redstash::cluster::ClusterAsyncConnection),
    Sync(redis::Connection),
    DirectSync(redstash::direct::DirectConnection),
    Async(redis::aio::MultiplexedConnection),
    AsyncManager(redis::aio::ConnectionManager),
    DirectAsync(redstash::direct::DirectAsyncConnection),
}

impl Conn {
    pub async fn open(backend: Backend, url: &str) -> redstash::Result<Conn> {
        let client = redis::Client::open(url)?;
        Ok(match backend {
            #[cfg(feature = "cluster")]
            Backend::Cluster => Conn::Cluster(redstash::cluster::ClusterConnection::open([url])?),
            #[cfg(all(feature = "cluster", feature = "tokio"))]
            Backend::ClusterAsync => {
                Conn::ClusterAsync(redstash::cluster::ClusterAsyncConnection::open([url]).await?)
            }
            Backend::Sync => Conn::Sync(client.get_connection()?),
            Backend::DirectSync => Conn::DirectSync(redstash::direct::DirectConnection::open(url)?),
            Backend::Async => Conn::Async(client.get_multiplexed_async_connection().await?),
            Backend::AsyncManager => {
                Conn::AsyncManager(redis::aio::ConnectionManager::new(client).await?)
            }
            Backend::DirectAsync => {
                Conn::DirectAsync(redstash::direct::DirectAsyncConnection::open(url).await?)
            }
        })
    }

    /// Drive a plan to its end.
    pub async fn run<T: Send>(&mut self, step: redstash::exec::Step<'_, T>) -> redstash::Result<T> {
        use redstash::exec::{run, run_async};
        match self {
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => run(c, step),
            #[cfg(all(feature = "cluster", feature = "tokio"))]
            Conn::ClusterAsync(c) => run_async(c, step).await,
            Conn::Sync(c) => run(c, step),
            Conn::DirectSync(c) => run(c, step),
            Conn::Async(c) => run_async(c, step).await,
            Conn::AsyncManager(c) => run_async(c, step).await,
            Conn::DirectAsync(c) => run_async(c, step).await,
        }
    }

    /// Run a raw command for checks (through a plain redis-rs call).
    pub async fn raw<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        use redstash::exec::Request;
        let req = Request::single(cmd.clone(), None);
        let v = match self {
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => redstash::exec::SyncConnection::run_request(c, &req),
            #[cfg(all(feature = "cluster", feature = "tokio"))]
            Conn::ClusterAsync(c) => redstash::exec::AsyncConnection::run_request(c, req).await,
            Conn::Sync(c) => redstash::exec::SyncConnection::run_request(c, &req),
            Conn::DirectSync(c) => redstash::exec::SyncConnection::run_request(c, &req),
            Conn::Async(c) => redstash::exec::AsyncConnection::run_request(c, req).await,
            Conn::AsyncManager(c) => redstash::exec::AsyncConnection::run_request(c, req).await,
            Conn::DirectAsync(c) => redstash::exec::AsyncConnection::run_request(c, req).await,
        };
        let v =
            v.map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "raw", e.to_string())))?;
        let one = v
            .into_iter()
            .next()
            .unwrap_or(redis::Value::Nil)
            .extract_error()?;
        redis::from_redis_value(one).map_err(Into::into)
    }
}

/// Call a store operation on any backend: `call!(con, store.put(args..))` runs `put` on
/// sync connections and `put_async` on async ones.
#[macro_export]
macro_rules! call {
    ($con:expr, $store:ident . $op:ident / $op_async:ident ( $($arg:expr),* $(,)? )) => {
        match &mut $con {
            #[cfg(feature = "cluster")]
            $crate::common::Conn::Cluster(c) => $store.$op(c $(, $arg)*),
            #[cfg(all(feature = "cluster", feature = "tokio"))]
            $crate::common::Conn::ClusterAsync(c) => $store.$op_async(c $(, $arg)*).await,
            $crate::common::Conn::Sync(c) => $store.$op(c $(, $arg)*),
            $crate::common::Conn::DirectSync(c) => $store.$op(c $(, $arg)*),
            $crate::common::Conn::Async(c) => $store.$op_async(c $(, $arg)*).await,
            $crate::common::Conn::AsyncManager(c) => $store.$op_async(c $(, $arg)*).await,
            $crate::common::Conn::DirectAsync(c) => $store.$op_async(c $(, $arg)*).await,
        }
    };
}

/// Start a plain test server.
pub fn server() -> RedisServer {
    RedisServer::start().expect("start redis-server (run scripts/setup)")
}

/// A tokio runtime for one test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The deterministic integer behind element `i` (shared with tests/python/interop.py).
pub fn base(i: usize) -> i64 {
    ((i * 37 + 11) % 97) as i64
}

/// A deterministic array of `dtype` and `shape` in `order` (logical values depend only
/// on the C-order flat index, as in tests/python/interop.py).
pub fn sample(dtype: DType, shape: &[usize], order: Order) -> RawArray {
    let n: usize = shape.iter().product();
    // Flat C index of the k-th element in memory order.
    let mem_to_c: Vec<usize> = match order {
        Order::C => (0..n).collect(),
        Order::F => {
            let mut out = Vec::with_capacity(n);
            let nd = shape.len();
            let mut idx = vec![0usize; nd];
            for _ in 0..n {
                let mut c = 0;
                for d in 0..nd {
                    c = c * shape[d] + idx[d];
                }
                out.push(c);
                for d in 0..nd {
                    idx[d] += 1;
                    if idx[d] < shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            out
        }
    };
    let f = |i: usize| (base(i) - 40) as f64 * 0.25;
    macro_rules! build {
        ($t:ty, $conv:expr) => {{
            let v: Vec<$t> = mem_to_c.iter().map(|&i| $conv(i)).collect();
            let bytes: Vec<u8> = redstash::Element::slice_as_bytes(&v[..]).to_vec();
            RawArray::new(dtype, shape.to_vec(), order, bytes.into()).unwrap()
        }};
    }
    match dtype {
        DType::Bool => build!(bool, |i| base(i) % 2 == 1),
        DType::I8 => build!(i8, |i| (base(i) - 40) as i8),
        DType::I16 => build!(i16, |i| (base(i) - 40) as i16 * 300),
        DType::I32 => build!(i32, |i| (base(i) - 40) as i32 * 70000),
        DType::I64 => build!(i64, |i| (base(i) - 40) * 5_000_000_000),
        DType::U8 => build!(u8, |i| base(i) as u8),
        DType::U16 => build!(u16, |i| base(i) as u16 * 600),
        DType::U32 => build!(u32, |i| base(i) as u32 * 40_000_000),
        DType::U64 => build!(u64, |i| base(i) as u64 * 100_000_000_000),
        DType::F16 => build!(f16, |i| f16::from_f64(f(i))),
        DType::F32 => build!(f32, |i| f(i) as f32),
        DType::F64 => build!(f64, f),
        DType::C64 => build!(Complex<f32>, |i| Complex::new(
            f(i) as f32,
            -(f(i) as f32) * 0.5
        )),
        DType::C128 => build!(Complex<f64>, |i| Complex::new(f(i), -f(i) * 0.5)),
        other => panic!("no sample values for {other}"),
    }
}

/// Shapes every round-trip test covers: 0-d, empty, 1-d to 6-d.
pub const SHAPES: &[&[usize]] = &[
    &[],
    &[0],
    &[0, 3],
    &[5],
    &[2, 3],
    &[2, 3, 4],
    &[1, 2, 3, 2],
    &[2, 1, 2, 3, 2],
    &[1, 2, 1, 2, 3, 2],
];

/// Start a 3-primary Redis Cluster.
#[cfg(feature = "cluster")]
pub fn cluster() -> redstash::testkit::RedisCluster {
    redstash::testkit::RedisCluster::start().expect("start a Redis Cluster (run scripts/setup)")
}

/// Run `case` on `backend` against its own fresh server (or cluster).
pub fn on_backend<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(Backend, Conn) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    #[cfg(feature = "cluster")]
    if is_cluster(backend) {
        let c = cluster();
        rt().block_on(async {
            let con = Conn::open(backend, &c.nodes()[0]).await.expect("connect");
            case(backend, con).await;
        });
        return;
    }
    let srv = server();
    rt().block_on(async {
        let con = Conn::open(backend, &srv.url()).await.expect("connect");
        case(backend, con).await;
    });
}

/// [`on_backend`] on a server (or cluster nodes) configured by `node` (e.g. with
/// `maxmemory` or ACL users): `case` gets a connection as `user` (user name and
/// password; `None`: the default user) and one as the default user, for setting up and
/// checking.
pub fn on_backend_with<F, Fut>(
    backend: Backend,
    node: redstash::testkit::RedisServerBuilder,
    user: Option<(&str, &str)>,
    case: F,
) where
    F: FnOnce(Backend, Conn, Conn) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    #[cfg(feature = "cluster")]
    if is_cluster(backend) {
        let c = redstash::testkit::RedisCluster::start_with(node)
            .expect("start a Redis Cluster (run scripts/setup)");
        let admin = c.nodes()[0].clone();
        let url = match user {
            Some((u, pw)) => c.nodes_for(u, pw)[0].clone(),
            None => admin.clone(),
        };
        rt().block_on(async {
            let con = Conn::open(backend, &url).await.expect("connect");
            let adm = Conn::open(backend, &admin).await.expect("connect");
            case(backend, con, adm).await;
        });
        return;
    }
    let srv = node
        .start()
        .expect("start redis-server (run scripts/setup)");
    let url = match user {
        Some((u, pw)) => srv.url_for(u, pw),
        None => srv.url(),
    };
    rt().block_on(async {
        let con = Conn::open(backend, &url).await.expect("connect");
        let adm = Conn::open(backend, &srv.url()).await.expect("connect");
        case(backend, con, adm).await;
    });
}

/// One named test per backend for a case `fn case(backend: Backend)`: a module `case`
/// with the tests `redis_sync`, `direct_sync`, `redis_async`, `redis_manager`,
/// `direct_async` and (feature `cluster`) `cluster`, `cluster_async`, so a failing
/// backend does not hide the others and one backend can be run alone
/// (`cargo nextest run -E 'test(/::direct_async$/)'`).
///
/// * `backend_tests!(case)`: every backend ([`backends`]).
/// * `backend_tests!(case, single_server)`: the single-server ones ([`ALL_BACKENDS`]).
/// * `backend_tests!(case, sync_and_async)`: `redis_sync` and `redis_async`.
#[macro_export]
macro_rules! backend_tests {
    ($case:ident) => {
        $crate::backend_tests!(@module $case;
            redis_sync => Sync, direct_sync => DirectSync, redis_async => Async,
            redis_manager => AsyncManager, direct_async => DirectAsync;
            #[cfg(feature = "cluster")] cluster => Cluster,
            #[cfg(all(feature = "cluster", feature = "tokio"))] cluster_async => ClusterAsync);
    };
    ($case:ident, single_server) => {
        $crate::backend_tests!(@module $case;
            redis_sync => Sync, direct_sync => DirectSync, redis_async => Async,
            redis_manager => AsyncManager, direct_async => DirectAsync;);
    };
    ($case:ident, sync_and_async) => {
        $crate::backend_tests!(@module $case; redis_sync => Sync, redis_async => Async;);
    };
    (@module $case:ident;
        $($test:ident => $backend:ident),*;
        $(#[$cfg:meta] $ctest:ident => $cbackend:ident),*) => {
        mod $case {
            $(
                #[test]
                fn $test() {
                    super::$case($crate::common::Backend::$backend)
                }
            )*
            $(
                #[$cfg]
                #[test]
                fn $ctest() {
                    super::$case($crate::common::Backend::$cbackend)
                }
            )*
        }
    };
}

/// Every array codec (zstd with the feature).
pub fn codecs() -> Vec<Box<dyn redstash::ArrayCodec>> {
    use redstash::{Compressed, Npy};
    let mut v: Vec<Box<dyn redstash::ArrayCodec>> = vec![
        Box::new(Npy),
        Box::new(Compressed::lz4()),
        Box::new(Compressed::zlib(1)),
        Box::new(Compressed::zlib(6)),
    ];
    if cfg!(feature = "zstd") {
        v.push(Box::new(Compressed::zstd(3)));
    }
    v
}

/// The Python of the venv `scripts/setup` makes (`REDSTASH_PYTHON` overrides it).
pub fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("REDSTASH_PYTHON") {
        return p.into();
    }
    let venv = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the interop tests need numpy, lz4 and redis-py in a venv: run scripts/setup (or set REDSTASH_PYTHON)"
    );
    venv
}

/// Run `tests/python/<script> <mode> <url>`, failing the test with its output if it fails.
pub fn run_py(script: &str, mode: &str, url: &str) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = std::process::Command::new(python())
        .arg(&path)
        .arg(mode)
        .arg(url)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {mode} failed:\n{text}");
    println!("{text}");
}

/// An error with its causes, as `anyhow`'s `{:#}` prints it: "what failed: why: why".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
