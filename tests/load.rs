//! Bulk loading against real servers: every mapping on a single server and on a Redis
//! Cluster, index structures and TTLs exactly right, the RESP file piped through the
//! real `redis-cli --pipe` giving the keyspace of a direct load, the atomic modes,
//! record errors with their lines, server refusals, checkpoints and resumes, shards,
//! several connections, async, and faults: redis-server SIGKILLed mid-load (append-only
//! file, `appendfsync always`), the loader SIGKILLed mid-load, out of memory.
#![cfg(all(
    feature = "testkit",
    feature = "load",
    feature = "cluster",
    feature = "tokio"
))]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redstash::cluster::ClusterConnection;
use redstash::direct::DirectConnection;
use redstash::load::{
    Atomicity, CsvOptions, CsvSource, FieldFilter, IndexOp, Input, IterSource, JsonLinesSource,
    KeyTemplate, LoadReport, Loader, Mapping, OnError, Position, Record, Shard, Stage, Ttl, Value,
    ValueMapping,
};
use redstash::testkit::{RedisCluster, RedisServer};
use redstash::{Error, RedisErrorKind};

fn t(s: &str) -> KeyTemplate {
    KeyTemplate::parse(s).unwrap()
}

/// `id,name,email,age,country` rows.
fn users_csv(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("users.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(f, "id,name,email,age,country").unwrap();
    for i in 0..n {
        let name = if i % 7 == 0 {
            format!("\"O'Brien, \"\"{i}\"\"\"")
        } else {
            format!("user {i}")
        };
        writeln!(
            f,
            "{i},{name},u{i}@example.com,{},{}",
            18 + i % 60,
            ["fr", "de", "us"][i % 3]
        )
        .unwrap();
    }
    path
}

fn csv(path: &Path) -> CsvSource {
    CsvSource::new(Input::open(path).unwrap(), CsvOptions::default()).unwrap()
}

/// The users mapping: a hash per user, an email lookup, a set per country, a sorted
/// set by age, a TTL.
fn users_mapping() -> Mapping {
    Mapping::new(t("user:{id}"))
        .with_value(ValueMapping::Hash(FieldFilter::all()))
        .with_ttl(Ttl::Fixed(Duration::from_secs(3600)))
        .with_index(IndexOp::Hset {
            hash: t("users:by_email"),
            field: t("{email}"),
            value: None,
        })
        .with_index(IndexOp::Sadd {
            set: t("users:country:{country}"),
            member: None,
        })
        .with_index(IndexOp::Zadd {
            zset: t("users:by_age"),
            score: "age".into(),
            member: Some(t("{id}")),
        })
}

/// Every key of every node, as `(type, canonical value, has a TTL)`.
type Snapshot = BTreeMap<String, (String, String, bool)>;

fn snapshot_of(urls: &[String]) -> Snapshot {
    let mut out = Snapshot::new();
    for url in urls {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for k in keys {
            let ty: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
            let v = match ty.as_str() {
                "string" => redis::cmd("GET").arg(&k).query::<String>(&mut c).unwrap(),
                "hash" => {
                    let m: BTreeMap<String, String> =
                        redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap();
                    format!("{m:?}")
                }
                "set" => {
                    let mut m: Vec<String> = redis::cmd("SMEMBERS").arg(&k).query(&mut c).unwrap();
                    m.sort();
                    format!("{m:?}")
                }
                "zset" => {
                    let m: Vec<(String, f64)> = redis::cmd("ZRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query(&mut c)
                        .unwrap();
                    format!("{m:?}")
                }
                "list" => {
                    let m: Vec<String> = redis::cmd("LRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .query(&mut c)
                        .unwrap();
                    format!("{m:?}")
                }
                other => panic!("unexpected type {other}"),
            };
            let ttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut c).unwrap();
            out.insert(k, (ty, v, ttl > 0));
        }
    }
    out
}

fn snapshot(srv: &RedisServer) -> Snapshot {
    snapshot_of(&[srv.url()])
}

/// What the users mapping must give for `n` users.
fn check_users(s: &Snapshot, n: usize) {
    let hashes = s.keys().filter(|k| k.starts_with("user:")).count();
    assert_eq!(hashes, n, "one hash per user");
    for i in [0, 1, 7, n - 1] {
        let (ty, v, ttl) = &s[&format!("user:{i}")];
        assert_eq!(ty, "hash");
        assert!(*ttl, "user:{i} has a TTL");
        let want_name = if i % 7 == 0 {
            format!("O'Brien, \"{i}\"")
        } else {
            format!("user {i}")
        };
        assert!(v.contains(&format!("\"name\": {want_name:?}")), "{v}");
        assert!(v.contains(&format!("\"age\": \"{}\"", 18 + i % 60)), "{v}");
    }
    let lookup = &s["users:by_email"];
    assert_eq!(lookup.0, "hash");
    assert_eq!(
        lookup.1.matches("@example.com").count(),
        n,
        "one lookup entry per user"
    );
    assert!(lookup.1.contains("\"u5@example.com\": \"user:5\""));
    let mut members = 0;
    for (c, r) in ["fr", "de", "us"].iter().zip(0..) {
        let (ty, v, _) = &s[&format!("users:country:{c}")];
        assert_eq!(ty, "set");
        let m = v.matches("user:").count();
        assert_eq!(m, (0..n).filter(|i| i % 3 == r).count(), "{c}");
        members += m;
    }
    assert_eq!(members, n);
    let (ty, z, _) = &s["users:by_age"];
    assert_eq!(ty, "zset");
    assert_eq!(z.matches("\", ").count(), n, "one member per user");
    assert!(
        z.contains(&format!("(\"{}\", {}.0)", n - 1, 18 + (n - 1) % 60)),
        "{z}"
    );
}

#[test]
fn users_with_indexes_and_ttls_on_a_single_server_and_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let n = 2_345;
    let path = users_csv(dir.path(), n);
    let srv = RedisServer::start().unwrap();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let loader = Loader::new(users_mapping()).with_batch_size(300);
    let report = loader.load(&mut csv(&path), &mut con).unwrap();
    assert_eq!(
        (report.read, report.loaded, report.failed, report.skipped),
        (n as u64, n as u64, 0, 0)
    );
    assert_eq!(
        report.commands,
        5 * n as u64,
        "HSET, PEXPIRE and three index commands"
    );
    assert!(report.is_complete());
    let single = snapshot(&srv);
    check_users(&single, n);

    let cluster = RedisCluster::start().unwrap();
    let mut ccon = ClusterConnection::open(cluster.nodes()).unwrap();
    let report = loader
        .clone()
        .for_cluster(true)
        .load(&mut csv(&path), &mut ccon)
        .unwrap();
    assert_eq!((report.loaded, report.failed), (n as u64, 0));
    let clustered = snapshot_of(&cluster.nodes());
    assert_eq!(
        clustered, single,
        "the cluster holds what the single server holds"
    );
}

#[test]
fn a_resp_file_piped_through_redis_cli_gives_the_keyspace_of_a_direct_load() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3_000;
    let path = users_csv(dir.path(), n);
    for atomicity in [Atomicity::None, Atomicity::Multi, Atomicity::Lua] {
        let mapping = users_mapping().with_atomicity(atomicity);
        let direct = RedisServer::start().unwrap();
        let mut con = DirectConnection::open(direct.url().as_str()).unwrap();
        let r = Loader::new(mapping.clone())
            .with_batch_size(500)
            .load(&mut csv(&path), &mut con)
            .unwrap();
        assert_eq!(r.loaded, n as u64, "{atomicity:?}");

        let resp = dir.path().join("users.resp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&resp).unwrap());
        let r = Loader::new(mapping)
            .emit_resp(&mut csv(&path), &mut out)
            .unwrap();
        drop(out);
        assert_eq!(r.emitted, n as u64);
        let piped = RedisServer::start().unwrap();
        let status = std::process::Command::new("redis-cli")
            .args(["-p", &piped.port().to_string(), "--pipe"])
            .stdin(std::fs::File::open(&resp).unwrap())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&status.stdout);
        assert!(
            status.status.success() && text.contains("errors: 0"),
            "{text}"
        );
        assert_eq!(snapshot(&piped), snapshot(&direct), "{atomicity:?}");
        check_users(&snapshot(&piped), n);
    }
}

#[test]
fn json_values_are_real_json_that_python_reads_back_as_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let lines = [
        r#"{"id": 1, "name": "a \"quoted\" name", "score": 1.5, "tags": ["x", "y"], "ok": true, "none": null}"#,
        r#"{"id": 2, "name": "ünïcödé ✓", "score": -2e-9, "nested": {"k": [1, {"z": null}]}, "big": 12345678901234567}"#,
        r#"{"id": 3, "name": "", "score": 0}"#,
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let srv = RedisServer::start().unwrap();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let mut src = JsonLinesSource::new(Input::open(&path).unwrap());
    let r = Loader::new(Mapping::new(t("event:{id}")))
        .load(&mut src, &mut con)
        .unwrap();
    assert_eq!(r.loaded, 3);
    // CSV cells that are JSON numbers become numbers; others (a leading zero) strings.
    let csv_path = dir.path().join("zips.csv");
    std::fs::write(&csv_path, "id,zip,price,label\n7,007,12.50,1e3x\n").unwrap();
    let r = Loader::new(Mapping::new(t("zip:{id}")))
        .load(&mut csv(&csv_path), &mut con)
        .unwrap();
    assert_eq!(r.loaded, 1);
    let script = format!(
        r#"
import json, sys, redis
r = redis.Redis(port={port})
src = [json.loads(l) for l in open({path:?})]
for rec in src:
    got = json.loads(r.get("event:%d" % rec["id"]))
    assert got == rec, (got, rec)
    assert list(got) == list(rec), "field order kept"
z = json.loads(r.get("zip:7"))
assert z == {{"id": 7, "zip": "007", "price": 12.50, "label": "1e3x"}}, z
print("ok")
"#,
        port = srv.port(),
        path = path.display().to_string()
    );
    let python = std::env::var("REDSTASH_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn record_errors_are_reported_with_their_lines_and_stop_or_skip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    // Line 3: no id; line 4: a score that is not a number; line 5: a short row;
    // line 7: the server refuses it (user:6 is a list).
    std::fs::write(&path, "id,age\n1,10\n,11\n3,old\n4\n5,14\n6,15\n7,16\n").unwrap();
    let mapping = Mapping::new(t("user:{id}"))
        .with_value(ValueMapping::Hash(FieldFilter::all()))
        .with_index(IndexOp::Zadd {
            zset: t("ages"),
            score: "age".into(),
            member: None,
        });
    let srv = RedisServer::start().unwrap();
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("user:6")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let r = Loader::new(mapping.clone())
        .with_batch_size(2)
        .with_on_error(OnError::Skip)
        .with_rejects(&rejects)
        .load(&mut csv(&path), &mut con)
        .unwrap();
    assert_eq!(
        (r.read, r.loaded, r.skipped, r.failed),
        (7, 3, 3, 1),
        "{r:?}"
    );
    let lines: Vec<(u64, Stage)> = r.errors.iter().map(|e| (e.line, e.stage)).collect();
    assert_eq!(
        lines,
        [
            (3, Stage::Map),
            (4, Stage::Map),
            (5, Stage::Read),
            (7, Stage::Server)
        ]
    );
    assert!(r.errors[0].error.contains("\"id\""), "{}", r.errors[0]);
    assert!(r.errors[3].error.contains("WRONGTYPE"), "{}", r.errors[3]);
    assert_eq!(r.errors[3].key.as_deref(), Some("user:6"));
    let rejected: Vec<serde_json::Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejected.len(), 4);
    assert_eq!(rejected[3]["data"], serde_json::json!({"id": 6, "age": 15}));
    assert_eq!(rejected[3]["line"], 7);
    let zcard: i64 = redis::cmd("ZCARD").arg("ages").query(&mut c).unwrap();
    // Without atomicity a record's other commands run when one is refused: user:6's
    // ZADD did (the record is reported failed all the same).
    assert_eq!(zcard, 4);

    // Stop: nothing after the first bad record is read.
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let r = Loader::new(mapping)
        .with_batch_size(2)
        .load(&mut csv(&path), &mut con)
        .unwrap();
    assert_eq!((r.loaded, r.skipped), (1, 1), "{r:?}");
    assert!(r.stopped.is_some());
    let keys: Vec<String> = redis::cmd("KEYS").arg("user:*").query(&mut c).unwrap();
    assert_eq!(keys, ["user:1"]);
}

/// `n` records `{id, value: "data_<id>"}`, built lazily; `cancel` is set after `stop_at`.
fn items(
    n: u64,
    stop_at: Option<(u64, Arc<AtomicBool>)>,
) -> IterSource<impl Iterator<Item = Record>> {
    IterSource::new(
        (0..n).map(move |i| {
            if let Some((at, flag)) = &stop_at
                && i == *at
            {
                flag.store(true, Ordering::SeqCst);
            }
            Record::new(
                Position::default(),
                [
                    ("id", Value::Int(i as i64)),
                    ("value", Value::Text(format!("data_{i}"))),
                ],
            )
        }),
        format!("{n} generated items"),
    )
}

fn item_mapping() -> Mapping {
    Mapping::new(t("item:{id}"))
}

/// Every `item:<i>` for `i < n` holds its JSON, and nothing else is there.
fn check_items(srv: &RedisServer, n: u64) {
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let size: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, n, "DBSIZE");
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.get(format!("item:{i}"));
        }
        let got: Vec<Option<String>> = p.query(&mut c).unwrap();
        for (i, v) in chunk.iter().zip(got) {
            assert_eq!(
                v.as_deref(),
                Some(format!("{{\"id\":{i},\"value\":\"data_{i}\"}}").as_str()),
                "item:{i}"
            );
        }
    }
}

#[test]
fn a_cancelled_load_resumes_from_its_checkpoint_to_exactly_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("items.ckpt");
    let srv = RedisServer::start().unwrap();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let n = 50_000;
    let cancel = Arc::new(AtomicBool::new(false));
    let loader = Loader::new(item_mapping())
        .with_batch_size(1_000)
        .with_checkpoint(&ck);
    let first = loader
        .clone()
        .with_cancel(cancel.clone())
        .load(&mut items(n, Some((20_000, cancel.clone()))), &mut con)
        .unwrap();
    assert_eq!(first.stopped.as_deref(), Some("cancelled"));
    let done = first.checkpoint.unwrap();
    assert!(done >= 20_000 && done < n, "{first:?}");
    assert_eq!(
        first.loaded, first.read,
        "every record read was sent and acknowledged"
    );
    let second = loader.load(&mut items(n, None), &mut con).unwrap();
    assert_eq!(second.resumed_from, done);
    assert!(second.is_complete(), "{second:?}");
    assert_eq!(second.read, n - done);
    check_items(&srv, n);
    // The checkpoint says finished: a third run reads nothing.
    let third = Loader::new(item_mapping())
        .with_batch_size(1_000)
        .with_checkpoint(&ck)
        .load(&mut items(n, None), &mut con)
        .unwrap();
    assert_eq!((third.read, third.resumed_from), (0, n));
    // Another mapping with the same checkpoint is refused.
    let other = Loader::new(Mapping::new(t("other:{id}")))
        .with_batch_size(1_000)
        .with_checkpoint(&ck);
    assert!(matches!(
        other.load(&mut items(n, None), &mut con),
        Err(Error::InvalidArgument(_))
    ));
    // A mapping that is not idempotent cannot have a checkpoint.
    let counter = item_mapping().with_index(IndexOp::Hincrby {
        hash: t("counts"),
        field: t("all"),
        by: 1,
    });
    let e = Loader::new(counter)
        .with_checkpoint(dir.path().join("c2"))
        .load(&mut items(1, None), &mut con);
    assert!(matches!(e, Err(Error::InvalidArgument(m)) if m.contains("idempotent")));
}

#[test]
fn shards_together_load_the_source_once_and_connections_in_parallel_too() {
    let srv = RedisServer::start().unwrap();
    let n = 30_001;
    let mut total = 0;
    let mut others = 0;
    for i in 0..3 {
        let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
        let r = Loader::new(item_mapping())
            .with_batch_size(1_000)
            .with_shard(Some(Shard { index: i, count: 3 }))
            .load(&mut items(n, None), &mut con)
            .unwrap();
        assert_eq!(r.read, n);
        total += r.loaded;
        others += r.other_shards;
    }
    assert_eq!(total, n);
    assert_eq!(others, 2 * n);
    check_items(&srv, n);

    let srv = RedisServer::start().unwrap();
    let mut cons: Vec<DirectConnection> = (0..3)
        .map(|_| DirectConnection::open(srv.url().as_str()).unwrap())
        .collect();
    let r = Loader::new(item_mapping())
        .with_batch_size(700)
        .load_parallel(&mut items(n, None), &mut cons)
        .unwrap();
    assert_eq!(r.loaded, n);
    check_items(&srv, n);
}

#[test]
fn async_loads_match_sync_loads() {
    let srv = RedisServer::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        let mut con = redstash::direct::DirectAsyncConnection::open(srv.url().as_str())
            .await
            .unwrap();
        let mut src = items(12_345, None);
        Loader::new(item_mapping())
            .with_batch_size(1_000)
            .load_async(&mut src, &mut con)
            .await
            .unwrap()
    });
    assert_eq!((r.read, r.loaded), (12_345, 12_345));
    check_items(&srv, 12_345);
}

#[test]
fn atomic_modes_on_a_cluster_need_one_hash_slot_per_record() {
    let cluster = RedisCluster::start().unwrap();
    let mut con = ClusterConnection::open(cluster.nodes()).unwrap();
    let spread = Mapping::new(t("user:{id}"))
        .with_atomicity(Atomicity::Multi)
        .with_index(IndexOp::Sadd {
            set: t("users"),
            member: None,
        });
    let e = Loader::new(spread)
        .for_cluster(true)
        .load(&mut items(10, None), &mut con);
    assert!(matches!(e, Err(Error::InvalidArgument(m)) if m.contains("hash slot")));
    assert!(snapshot_of(&cluster.nodes()).is_empty(), "nothing sent");
    for atomicity in [Atomicity::Multi, Atomicity::Lua] {
        let tagged = Mapping::new(t("item:{{{id}}}"))
            .with_atomicity(atomicity)
            .with_index(IndexOp::Sadd {
                set: t("tags:{{{id}}}"),
                member: Some(t("{value}")),
            });
        let r = Loader::new(tagged)
            .for_cluster(true)
            .with_batch_size(100)
            .load(&mut items(1_000, None), &mut con)
            .unwrap();
        assert_eq!((r.loaded, r.failed), (1_000, 0), "{atomicity:?}");
        let s = snapshot_of(&cluster.nodes());
        assert_eq!(s.len(), 2_000);
        assert_eq!(s["tags:{999}"].1, "[\"data_999\"]");
    }
}

#[test]
fn lua_mode_falls_back_to_eval_after_noscript() {
    let srv = RedisServer::start().unwrap();
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let m = item_mapping()
        .with_atomicity(Atomicity::Lua)
        .with_index(IndexOp::Sadd {
            set: t("all"),
            member: None,
        });
    for _ in 0..2 {
        // Empty script cache: the first EVALSHAs get NOSCRIPT.
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
        let r = Loader::new(m.clone())
            .with_batch_size(500)
            .load(&mut items(2_000, None), &mut con)
            .unwrap();
        assert_eq!((r.loaded, r.failed), (2_000, 0), "{r:?}");
    }
    let card: i64 = redis::cmd("SCARD").arg("all").query(&mut c).unwrap();
    assert_eq!(card, 2_000);
}

/// Poll `srv` until it holds `keys` keys.
fn wait_for_keys(srv: &RedisServer, keys: u64) {
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap_or(0);
        if n >= keys {
            return;
        }
        assert!(Instant::now() < deadline, "the load did not progress");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Which of `ids` are stored.
fn stored(srv: &RedisServer, ids: impl Iterator<Item = u64>) -> Vec<(u64, bool)> {
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let ids: Vec<u64> = ids.collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(10_000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.exists(format!("item:{i}"));
        }
        let e: Vec<bool> = p.query(&mut c).unwrap();
        out.extend(chunk.iter().copied().zip(e));
    }
    out
}

#[test]
fn redis_killed_mid_load_keeps_every_record_counted_and_the_resume_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ckpt");
    let n: u64 = 1_000_000;
    let mut srv = RedisServer::builder().durable().start().unwrap();
    let url = srv.url();
    let loaded = Arc::new(AtomicU64::new(0));
    let ck2 = ck.clone();
    let loader_thread = std::thread::spawn(move || {
        let mut con = DirectConnection::open(url.as_str()).unwrap();
        Loader::new(item_mapping())
            .with_checkpoint(&ck2)
            .with_retry(redstash::exec::RetryPolicy::none())
            .load(&mut items(n, None), &mut con)
            .unwrap()
    });
    wait_for_keys(&srv, 50_000);
    srv.kill();
    let report: LoadReport = loader_thread.join().unwrap();
    loaded.store(report.loaded, Ordering::SeqCst);
    assert!(report.stopped.is_some(), "{report:?}");
    assert_eq!(
        report.stop_error.as_ref().and_then(Error::redis_kind),
        Some(RedisErrorKind::Connection),
        "{:?}",
        report.stop_error
    );
    assert_eq!(
        report.read,
        report.loaded + report.unknown + report.not_sent,
        "every record read is accounted for: {report:?}"
    );
    assert!(report.loaded >= 50_000 && report.loaded < n);
    srv.restart().unwrap();
    // The checkpoint never claims more than what was acknowledged, and every record
    // before it is stored.
    let done = report.checkpoint.unwrap();
    assert!(done <= report.loaded, "{report:?}");
    let missing: Vec<u64> = stored(&srv, 0..done)
        .into_iter()
        .filter(|(_, s)| !s)
        .map(|(i, _)| i)
        .collect();
    assert!(
        missing.is_empty(),
        "{} records before the checkpoint are missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let resumed = Loader::new(item_mapping())
        .with_checkpoint(&ck)
        .load(&mut items(n, None), &mut con)
        .unwrap();
    assert!(resumed.is_complete(), "{resumed:?}");
    assert_eq!(resumed.resumed_from, done);
    check_items(&srv, n);
}

#[test]
fn a_load_rides_over_a_redis_restart_with_its_retries_and_loses_nothing() {
    let n: u64 = 300_000;
    let mut srv = RedisServer::builder().durable().start().unwrap();
    let url = srv.url();
    let loader_thread = std::thread::spawn(move || {
        let mut con = DirectConnection::open(url.as_str()).unwrap();
        Loader::new(item_mapping())
            .load(&mut items(n, None), &mut con)
            .unwrap()
    });
    wait_for_keys(&srv, 50_000);
    assert!(
        !loader_thread.is_finished(),
        "the load must still run at the kill"
    );
    srv.kill();
    srv.restart().unwrap();
    let report = loader_thread.join().unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        (report.read, report.loaded, report.unknown, report.not_sent),
        (n, n, 0, 0)
    );
    check_items(&srv, n);
}

#[test]
fn out_of_memory_stops_with_an_exact_count_and_a_resumable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ckpt");
    let srv = RedisServer::builder().maxmemory(8 << 20).start().unwrap();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let n = 200_000;
    let loader = Loader::new(item_mapping())
        .with_batch_size(2_000)
        .with_checkpoint(&ck);
    let r = loader.load(&mut items(n, None), &mut con).unwrap();
    assert_eq!(
        r.stop_error.as_ref().and_then(Error::redis_kind),
        Some(RedisErrorKind::OutOfMemory),
        "{r:?}"
    );
    assert!(r.failed > 0 && r.loaded > 0);
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let size: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, r.loaded, "loaded is exactly what the server holds");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query(&mut c)
        .unwrap();
    let resumed = loader.load(&mut items(n, None), &mut con).unwrap();
    assert!(resumed.is_complete(), "{resumed:?}");
    check_items(&srv, n);
}

#[test]
fn the_cli_killed_mid_load_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("items.csv");
    let n = 1_000_000u64;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv_path).unwrap());
        writeln!(f, "id,value").unwrap();
        for i in 0..n {
            writeln!(f, "{i},data_{i}").unwrap();
        }
    }
    let srv = RedisServer::start().unwrap();
    let ck = dir.path().join("ckpt");
    let run = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_redstash"));
        c.args([
            "load",
            csv_path.to_str().unwrap(),
            "--key",
            "item:{id}",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--json",
            "--url",
            &srv.url(),
        ]);
        c
    };
    let mut child = run().stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_for_keys(&srv, 100_000);
    // Killed once it has written a checkpoint (at most twice a second).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ck.exists() {
        assert!(Instant::now() < deadline, "no checkpoint written");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the load must still run at the kill"
    );
    child.kill().unwrap();
    let _ = child.wait();
    let out = run().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["resumed_from"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["failed"], 0);
    assert_eq!(
        report["resumed_from"].as_u64().unwrap() + report["read"].as_u64().unwrap(),
        n,
        "{report}"
    );
    check_items(&srv, n);
}
