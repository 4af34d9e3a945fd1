//! Crash consistency of bulk writes: redis-server is killed (SIGKILL, append-only file
//! with `appendfsync always`) in the middle of a bulk write, restarted, and what the
//! write reported is checked against what the server holds: every item reported
//! written is there, no item reported refused or not sent is, and every item is in
//! exactly one of the four sets. Run on every single-server connection kind.
#![cfg(all(feature = "testkit", feature = "tokio", feature = "ndarray"))]

mod common;

use std::time::{Duration, Instant};

use common::*;
use ndarray::Array2;
use redstash::testkit::RedisServer;
use redstash::{Error, FeatureStore, RedisErrorKind, View};

/// What a bulk write reported, item by item.
#[derive(Debug)]
struct Report {
    written: Vec<usize>,
    refused: Vec<usize>,
    unknown: Vec<usize>,
    not_sent: Vec<usize>,
}

/// The accounting of a bulk write of `n` items cut short by a kill (a plain connection
/// error means nothing was sent: every item not sent).
fn report(result: redstash::Result<usize>, n: usize) -> Report {
    report_of(result, n, true)
}

/// The same; with `all_listed` false, only a prefix of the items may be listed (a
/// split lists the input batches it read from its source).
fn report_of(result: redstash::Result<usize>, n: usize, all_listed: bool) -> Report {
    match result {
        Ok(_) => panic!("the write finished before the kill: make it longer"),
        Err(Error::PartialWrite {
            written,
            refused,
            unknown,
            not_sent,
            source,
        }) => {
            assert_eq!(
                source.redis_kind(),
                Some(RedisErrorKind::Connection),
                "{source}"
            );
            let r = Report {
                written,
                refused,
                unknown,
                not_sent,
            };
            let mut all: Vec<usize> = [&r.written, &r.refused, &r.unknown, &r.not_sent]
                .into_iter()
                .flatten()
                .copied()
                .collect();
            all.sort_unstable();
            let listed = if all_listed { n } else { all.len().min(n) };
            assert_eq!(
                all,
                (0..listed).collect::<Vec<_>>(),
                "every item exactly once"
            );
            r
        }
        Err(e) => {
            assert_eq!(e.redis_kind(), Some(RedisErrorKind::Connection), "{e}");
            Report {
                written: Vec::new(),
                refused: Vec::new(),
                unknown: Vec::new(),
                not_sent: (0..n).collect(),
            }
        }
    }
}

/// Kill `srv` once it holds at least `keys` keys (polled through its own connection).
fn kill_after(srv: &mut RedisServer, keys: i64) {
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap_or(0);
        if n >= keys {
            break;
        }
        assert!(Instant::now() < deadline, "the write did not progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    srv.kill();
}

/// Which of `ids` exist after the restart.
fn existing(srv: &RedisServer, keys: impl Iterator<Item = String>) -> Vec<bool> {
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let keys: Vec<String> = keys.collect();
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(10_000) {
        let mut p = redis::pipe();
        for k in chunk {
            p.exists(k);
        }
        let e: Vec<bool> = p.query(&mut c).unwrap();
        out.extend(e);
    }
    out
}

/// Check a report against the restarted server: `key(i)` is item `i`'s key.
fn check(srv: &RedisServer, r: &Report, key: impl Fn(usize) -> String, what: &str) {
    let present = existing(srv, r.written.iter().map(|&i| key(i)));
    let missing = present.iter().filter(|p| !**p).count();
    assert_eq!(
        missing, 0,
        "{what}: {missing} items reported written are not stored"
    );
    for (set, name) in [(&r.refused, "refused"), (&r.not_sent, "not sent")] {
        let present = existing(srv, set.iter().map(|&i| key(i)));
        let stored = present.iter().filter(|p| **p).count();
        assert_eq!(
            stored, 0,
            "{what}: {stored} items reported {name} are stored"
        );
    }
    assert!(r.refused.is_empty(), "{what}: nothing was refused");
}

#[test]
fn feature_write_many_killed_mid_way_reports_exactly_what_is_stored() {
    let n = 300_000;
    let dim = 16;
    for backend in ALL_BACKENDS {
        let mut srv = RedisServer::builder().durable().start().expect("server");
        let url = srv.url();
        let writer = std::thread::spawn(move || {
            rt().block_on(async {
                let mut con = Conn::open(backend, &url).await.expect("connect");
                let store = FeatureStore::new("crash");
                let view = View::of::<f32>("v", dim);
                call!(con, store.register_view / register_view_async(&view)).unwrap();
                let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
                let x = Array2::<f32>::from_elem((n, dim), 1.5);
                call!(con, store.write_many / write_many_async("v", &ids, &x))
            })
        });
        kill_after(&mut srv, (n / 10) as i64);
        let r = report(writer.join().unwrap(), n);
        srv.restart().expect("restart");
        check(
            &srv,
            &r,
            |i| format!("crash:v:e{i}"),
            &format!("{backend:?}"),
        );
        eprintln!(
            "{backend:?}: {} written, {} unknown, {} not sent",
            r.written.len(),
            r.unknown.len(),
            r.not_sent.len()
        );
        assert!(
            !r.written.is_empty(),
            "{backend:?}: items acknowledged before the kill are reported written"
        );
    }
}

#[test]
fn array_put_many_killed_mid_way_reports_exactly_what_is_stored() {
    use redstash::ArrayStore;
    let n = 200_000;
    for backend in ALL_BACKENDS {
        let mut srv = RedisServer::builder().durable().start().expect("server");
        let url = srv.url();
        let writer = std::thread::spawn(move || {
            rt().block_on(async {
                let mut con = Conn::open(backend, &url).await.expect("connect");
                let store = ArrayStore::new("crash");
                let items: Vec<(String, ndarray::Array1<f32>)> = (0..n)
                    .map(|i| (format!("a{i}"), ndarray::Array1::from_elem(8, i as f32)))
                    .collect();
                call!(con, store.put_many / put_many_async(&items)).map(|()| n)
            })
        });
        kill_after(&mut srv, (n / 10) as i64);
        let r = report(writer.join().unwrap(), n);
        srv.restart().expect("restart");
        check(&srv, &r, |i| format!("crash:a{i}"), &format!("{backend:?}"));
        eprintln!(
            "put_many {backend:?}: {} written, {} unknown, {} not sent",
            r.written.len(),
            r.unknown.len(),
            r.not_sent.len()
        );
        assert!(!r.written.is_empty(), "{backend:?}");
    }
}

#[cfg(feature = "arrow")]
#[test]
fn table_split_killed_mid_way_reports_exactly_what_is_stored() {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use redstash::TableStore;
    use redstash::store::table::Partitioning;

    let n = 20_000;
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    for backend in ALL_BACKENDS {
        let mut srv = RedisServer::builder().durable().start().expect("server");
        let url = srv.url();
        let schema = schema.clone();
        let writer = std::thread::spawn(move || {
            rt().block_on(async {
                let mut con = Conn::open(backend, &url).await.expect("connect");
                let store = TableStore::new("crash")
                    .with_partitioning(Partitioning::RoundRobin(1))
                    .with_pipeline_batches(16);
                let batches = (0..n).map(move |i| {
                    let x = Int64Array::from_iter_values((0..256).map(|j| (i * 256 + j) as i64));
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(x)]).unwrap()
                });
                call!(con, store.split / split_async("t", batches)).map(|_| n)
            })
        });
        kill_after(&mut srv, (n / 10) as i64);
        let r = report_of(writer.join().unwrap(), n, false);
        srv.restart().expect("restart");
        let store = TableStore::new("crash");
        // Batches not read from the input yet are not listed: only check those listed.
        let listed = r.written.len() + r.unknown.len() + r.not_sent.len() + r.refused.len();
        assert!(listed > 0 && listed <= n, "{backend:?}");
        check(
            &srv,
            &r,
            |i| store.batch_key("t", 0, i as u32),
            &format!("{backend:?}"),
        );
        // The interrupted first split reads as incomplete.
        let mut c = srv.client().unwrap().get_connection().unwrap();
        let e = store.info(&mut c, "t").unwrap_err();
        assert!(matches!(e, Error::IncompleteTable { .. }), "{e}");
        eprintln!(
            "split {backend:?}: {} written, {} unknown, {} not sent",
            r.written.len(),
            r.unknown.len(),
            r.not_sent.len()
        );
        assert!(!r.written.is_empty(), "{backend:?}");
    }
}

/// A cluster node killed during `write_many` (the other nodes keep working): every
/// entity reported written is stored once the node is back, no entity reported refused
/// or not sent is.
#[cfg(feature = "cluster")]
#[test]
fn feature_write_many_on_a_cluster_with_a_node_killed_reports_exactly_what_is_stored() {
    use redstash::testkit::RedisCluster;
    let n = 150_000;
    let dim = 8;
    let backends = [
        Backend::Cluster,
        #[cfg(feature = "tokio")]
        Backend::ClusterAsync,
    ];
    for backend in backends {
        let mut cluster =
            RedisCluster::start_with(RedisServer::builder().durable()).expect("cluster");
        let url = cluster.nodes()[0].clone();
        let writer = std::thread::spawn(move || {
            rt().block_on(async {
                let mut con = Conn::open(backend, &url).await.expect("connect");
                let store = FeatureStore::new("crash");
                let view = View::of::<f32>("v", dim);
                call!(con, store.register_view / register_view_async(&view)).unwrap();
                let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
                let x = Array2::<f32>::from_elem((n, dim), 0.5);
                call!(con, store.write_many / write_many_async("v", &ids, &x))
            })
        });
        kill_after(&mut cluster.servers_mut()[1], (n / 30) as i64);
        let r = report(writer.join().unwrap(), n);
        cluster.servers_mut()[1].restart().expect("restart");
        // Read back through the cluster once it is whole again.
        let store = FeatureStore::new("crash");
        let mut con = redstash::cluster::ClusterConnection::open(cluster.nodes()).unwrap();
        let present = |items: &[usize], con: &mut redstash::cluster::ClusterConnection| {
            let ids: Vec<String> = items.iter().map(|i| format!("e{i}")).collect();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match store.read_many::<f32, _, _>(con, "v", &ids) {
                    Ok(rows) => return rows.present,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(200));
                        let _ = con.refresh();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        };
        let written = present(&r.written, &mut con);
        assert!(
            written.iter().all(|&p| p),
            "{backend:?}: a written entity is missing"
        );
        let not_sent = present(&r.not_sent, &mut con);
        assert!(
            not_sent.iter().all(|&p| !p),
            "{backend:?}: a not-sent entity is stored"
        );
        assert!(r.refused.is_empty(), "{backend:?}");
        eprintln!(
            "cluster {backend:?}: {} written, {} unknown, {} not sent",
            r.written.len(),
            r.unknown.len(),
            r.not_sent.len()
        );
        assert!(!r.written.is_empty(), "{backend:?}");
    }
}
