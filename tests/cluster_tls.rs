//! The cluster connections over TLS (features `cluster` and `tls`), against real Redis
//! Clusters whose nodes run `tls-cluster yes` (their `CLUSTER SLOTS` names the TLS ports
//! to TLS clients) with certificates made here: the stores' round trips on both cluster
//! connections, every node connection on a TLS port (replicas included), a wrong CA,
//! the response timeout against a paused node, and seeds of mixed schemes.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::tls::{CA, OTHER_CA, Pki};
use common::{rt, sample};
use redstash::cluster::{ClusterAsyncConnection, ClusterConnection, key_slot};
use redstash::direct::{ConnectOptions, TlsOptions};
use redstash::exec::{Request, SyncConnection};
use redstash::testkit::{RedisCluster, RedisServer};
use redstash::{ArrayStore, DType, Error, FeatureStore, Order, RawArray, RedisErrorKind, View};

/// How quickly a failure must be reported (a loaded 2-core CI machine).
const QUICK: Duration = Duration::from_secs(2);

/// A 3-primary cluster whose nodes have a TLS port, the bus and replication over TLS.
fn tls_cluster(pki: &Pki) -> RedisCluster {
    RedisCluster::start_with(RedisServer::builder().tls(pki.server_files(false)))
        .expect("start a TLS Redis Cluster (run scripts/setup)")
}

fn seeds(cluster: &RedisCluster) -> Vec<String> {
    cluster.tls_nodes().expect("started with TLS")
}

/// Trust `pki`'s CA.
fn trusting(pki: &Pki) -> ConnectOptions {
    ConnectOptions::default().with_tls(TlsOptions::default().with_ca_file(pki.path(CA)).unwrap())
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

/// Names whose slots fall on every primary (a third of the slots each), two per primary
/// at least.
fn names(con: &ClusterConnection) -> Vec<String> {
    let names: Vec<String> = (0..24).map(|i| format!("tls-array-{i}")).collect();
    let owners: BTreeSet<&str> = names
        .iter()
        .filter_map(|n| con.slot_owner(key_slot(store().key(n).as_bytes())))
        .collect();
    assert_eq!(owners.len(), 3, "names not spread over every primary");
    names
}

/// An array per name, of varied types and sizes (one of 1 MiB).
fn arrays(names: &[String]) -> Vec<(String, RawArray)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let a = match i % 3 {
                0 => sample(DType::F32, &[3, 4], Order::C),
                1 => sample(DType::I64, &[100 + i], Order::C),
                _ if i == 2 => sample(DType::F64, &[1 << 17], Order::C),
                _ => sample(DType::U8, &[7, 5], Order::F),
            };
            (n.clone(), a)
        })
        .collect()
}

fn store() -> ArrayStore {
    ArrayStore::new("arr")
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("e{i}")).collect()
}

/// The TLS ports of the cluster's nodes, as `host:port` of the slot map.
fn tls_addrs(cluster: &RedisCluster) -> BTreeSet<String> {
    cluster
        .servers()
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.tls_port().expect("a TLS port")))
        .collect()
}

/// The clients of node `i` (but the one asking) that came in on its TLS port and on its
/// plain port, as `CLIENT LIST` lines (a replica's link to its primary is neither).
fn clients_by_port(cluster: &RedisCluster, i: usize) -> (Vec<String>, Vec<String>) {
    let srv = &cluster.servers()[i];
    let list: String = cmd(&["CLIENT", "LIST"])
        .query(&mut srv.client().unwrap().get_connection().unwrap())
        .unwrap();
    let on = |port: u16| {
        let laddr = format!("laddr=127.0.0.1:{port} ");
        list.lines()
            .filter(|l| l.contains(&laddr) && !l.contains("cmd=client|list"))
            .map(str::to_owned)
            .collect()
    };
    (on(srv.tls_port().unwrap()), on(srv.port()))
}

/// Every node in `nodes` has a connection of the cluster connection on its TLS port
/// and none on its plain one (the testkit's own connections are closed by then).
fn assert_clients_on_tls_ports(cluster: &RedisCluster, nodes: &[usize]) {
    for &i in nodes {
        let (tls, plain) = clients_by_port(cluster, i);
        assert!(!tls.is_empty(), "node {i}: no client on the TLS port");
        assert!(
            plain.is_empty(),
            "node {i}: clients on the plain port: {plain:?}"
        );
    }
}

/// The stores' round trips over a TLS cluster, sync and async: arrays put and got one
/// by one and with `put_many`/`get_many` (spread over every primary, one of 1 MiB), a
/// FeatureStore's `write_many`/`read_many`; the slot map names the TLS ports, and every
/// primary's client is on its TLS port.
#[test]
fn stores_round_trip_over_a_tls_cluster_on_both_cluster_connections() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let seeds = seeds(&cluster);
    let tls_ports = tls_addrs(&cluster);

    let mut con = ClusterConnection::open_with([seeds[0].as_str()], trusting(&pki)).unwrap();
    let primaries: BTreeSet<String> = con.primaries().iter().cloned().collect();
    assert_eq!(primaries, tls_ports, "the slot map TLS clients get");
    let items = arrays(&names(&con));
    for (name, a) in &items {
        store().put(&mut con, name, a).unwrap();
        assert_eq!(
            store().get(&mut con, name).unwrap().as_ref(),
            Some(a),
            "{name}"
        );
    }
    let many: Vec<(String, RawArray)> = items
        .iter()
        .map(|(n, a)| (format!("many-{n}"), a.clone()))
        .collect();
    store().put_many(&mut con, &many).unwrap();
    let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
    let back = store().get_many(&mut con, &names).unwrap();
    for ((name, a), got) in many.iter().zip(&back) {
        assert_eq!(got.as_ref(), Some(a), "{name}");
    }
    let features = FeatureStore::new("feat");
    features
        .register_view(&mut con, &View::of::<f32>("emb", 5))
        .unwrap();
    let values = sample(DType::F32, &[40, 5], Order::C);
    features
        .write_many(&mut con, "emb", &ids(40), &values)
        .unwrap();
    let rows = features
        .read_many::<f32, _, _>(&mut con, "emb", &ids(40))
        .unwrap();
    assert_eq!(rows.count_present(), 40);
    assert_eq!(
        rows.values,
        values.to_ndarray::<f32, ndarray::Ix2>().unwrap()
    );
    assert_clients_on_tls_ports(&cluster, &[0, 1, 2]);
    drop(con);

    rt().block_on(async {
        let mut con = ClusterAsyncConnection::open_with(seeds.clone(), trusting(&pki))
            .await
            .unwrap();
        let primaries: BTreeSet<String> = con.primaries().iter().cloned().collect();
        assert_eq!(primaries, tls_ports);
        for (name, a) in &items {
            let key = format!("async-{name}");
            store().put_async(&mut con, &key, a).await.unwrap();
            // What one connection wrote, the other reads.
            let got = store().get_async(&mut con, name).await.unwrap();
            assert_eq!(got.as_ref(), Some(a), "{name}");
        }
        let many: Vec<(String, RawArray)> = items
            .iter()
            .map(|(n, a)| (format!("async-many-{n}"), a.clone()))
            .collect();
        store().put_many_async(&mut con, &many).await.unwrap();
        let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
        let back = store().get_many_async(&mut con, &names).await.unwrap();
        for ((name, a), got) in many.iter().zip(&back) {
            assert_eq!(got.as_ref(), Some(a), "{name}");
        }
        let values = sample(DType::F32, &[30, 5], Order::C);
        let ids: Vec<String> = (0..30).map(|i| format!("async-e{i}")).collect();
        features
            .write_many_async(&mut con, "emb", &ids, &values)
            .await
            .unwrap();
        let rows = features
            .read_many_async::<f32, _, _>(&mut con, "emb", &ids)
            .await
            .unwrap();
        assert_eq!(rows.count_present(), 30);
        assert_eq!(
            rows.values,
            values.to_ndarray::<f32, ndarray::Ix2>().unwrap()
        );
        assert_clients_on_tls_ports(&cluster, &[0, 1, 2]);
    });
}

/// With replicas replicating over TLS, reads sent to the replicas go over TLS too: the
/// slot map names the replicas' TLS ports, and each replica's client is on it (in
/// `READONLY` mode, flag `r`).
#[test]
fn replica_reads_over_a_tls_cluster_connect_to_the_replicas_with_tls() {
    let pki = Pki::new();
    let cluster =
        RedisCluster::start_replicated_with(RedisServer::builder().tls(pki.server_files(false)), 1)
            .expect("start a TLS Redis Cluster with replicas");
    let replicas = cluster.replicas();
    assert_eq!(replicas.len(), 3);
    // The replicas replicate over TLS: their link to the primary is on its TLS port.
    for &r in &replicas {
        let info: String = cmd(&["INFO", "replication"])
            .query(
                &mut cluster.servers()[r]
                    .client()
                    .unwrap()
                    .get_connection()
                    .unwrap(),
            )
            .unwrap();
        let tls_ports: Vec<String> = cluster
            .servers()
            .iter()
            .map(|s| format!("master_port:{}", s.tls_port().unwrap()))
            .collect();
        assert!(
            tls_ports.iter().any(|p| info.contains(p.as_str())),
            "{info}"
        );
        assert!(info.contains("master_link_status:up"), "{info}");
    }

    let mut con = ClusterConnection::open_with(seeds(&cluster), trusting(&pki))
        .unwrap()
        .with_wait(1, Duration::from_secs(5))
        .with_replica_reads(true);
    let items = arrays(&names(&con));
    store().put_many(&mut con, &items).unwrap();
    let names: Vec<&str> = items.iter().map(|(n, _)| n.as_str()).collect();
    let back = store().get_many(&mut con, &names).unwrap();
    for ((name, a), got) in items.iter().zip(&back) {
        assert_eq!(got.as_ref(), Some(a), "{name}");
    }
    assert_clients_on_tls_ports(&cluster, &replicas);
    for &r in &replicas {
        let (tls, _) = clients_by_port(&cluster, r);
        assert!(
            tls.iter().any(|l| l.contains("flags=r ")),
            "node {r}: no READONLY client: {tls:?}"
        );
    }
}

/// A cluster whose certificate another CA signed: opening fails quickly with a `Tls`
/// error, sync and async.
#[test]
fn a_wrong_ca_fails_quickly_with_a_tls_error() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let other = ConnectOptions::default().with_tls(
        TlsOptions::default()
            .with_ca_file(pki.path(OTHER_CA))
            .unwrap(),
    );

    let t = Instant::now();
    let e = ClusterConnection::open_with(seeds(&cluster), other.clone()).unwrap_err();
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::Tls), "{e}");

    rt().block_on(async {
        let t = Instant::now();
        let e = ClusterAsyncConnection::open_with(seeds(&cluster), other)
            .await
            .unwrap_err();
        assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
        assert_eq!(e.redis_kind(), Some(RedisErrorKind::Tls), "{e}");
    });

    // The default options trust the system's roots, which do not know the test CA.
    let e = ClusterConnection::open(seeds(&cluster)).unwrap_err();
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::Tls), "{e}");
}

/// `CLIENT PAUSE` of `ms` milliseconds on node `i` (through its plain port).
fn pause(cluster: &RedisCluster, i: usize, ms: u64) {
    let _: () = cmd(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"])
        .query(
            &mut cluster.servers()[i]
                .client()
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
}

/// Polls `f` until it is `Ok` or `within` passed (then panics with the last error).
fn eventually<T>(within: Duration, mut f: impl FnMut() -> redstash::Result<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("still failing: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A node paused with `CLIENT PAUSE`: opening a cluster connection through it (its
/// `CLUSTER SLOTS`) fails with a `Timeout` within the short response timeout, and works
/// once the pause is over; a read of a key of a paused node fails likewise (the
/// cluster's failover retries do not resend after a timeout, only after a lost
/// connection) and the same connection reads it after the pause. Sync and async.
#[test]
fn a_paused_node_times_out_within_the_response_timeout_and_works_after() {
    let pki = Pki::new();
    let cluster = tls_cluster(&pki);
    let seed = seeds(&cluster)[0].clone();
    let short = Duration::from_millis(300);
    let options = trusting(&pki).with_response_timeout(Some(short));

    pause(&cluster, 0, 1500);
    let t = Instant::now();
    let e = ClusterConnection::open_with([seed.as_str()], options.clone()).unwrap_err();
    assert!(t.elapsed() < short + QUICK, "{:?}", t.elapsed());
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::Timeout), "{e}");
    let mut con = eventually(Duration::from_secs(10), || {
        ClusterConnection::open_with([seed.as_str()], options.clone())
    });

    // A key of node 0's slots.
    let node0 = con.primaries()[0].clone();
    let key = (0..)
        .map(|i| format!("paused-{i}"))
        .find(|k| con.slot_owner(key_slot(k.as_bytes())) == Some(node0.as_str()))
        .unwrap();
    let get = || Request::single(cmd(&["GET", &key]), None);
    con.run_request(&Request::single(cmd(&["SET", &key, "v"]), None))
        .unwrap();
    let i = cluster
        .servers()
        .iter()
        .position(|s| node0.ends_with(&format!(":{}", s.tls_port().unwrap())))
        .unwrap();
    pause(&cluster, i, 1500);
    let t = Instant::now();
    let e = con.run_request(&get()).unwrap_err();
    assert!(t.elapsed() < short + QUICK, "{:?}", t.elapsed());
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::Timeout), "{e}");
    let v = eventually(Duration::from_secs(10), || con.run_request(&get()));
    assert_eq!(v, vec![redis::Value::BulkString(b"v".to_vec())]);

    rt().block_on(async {
        pause(&cluster, 0, 1500);
        let t = Instant::now();
        let e = ClusterAsyncConnection::open_with([seed.as_str()], options.clone())
            .await
            .unwrap_err();
        assert!(t.elapsed() < short + QUICK, "{:?}", t.elapsed());
        assert_eq!(e.redis_kind(), Some(RedisErrorKind::Timeout), "{e}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ClusterAsyncConnection::open_with([seed.as_str()], options.clone()).await {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => panic!("still failing: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
}

/// Seeds that mix `redis://` and `rediss://` are refused before anything is sent.
#[test]
fn seeds_of_mixed_schemes_are_refused() {
    let seeds = ["redis://127.0.0.1:1/", "rediss://127.0.0.1:2/"];
    let e = ClusterConnection::open(seeds).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("mix schemes")),
        "{e}"
    );
    let e = rt()
        .block_on(ClusterAsyncConnection::open(seeds))
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}
