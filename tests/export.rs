//! Export against real servers: every Redis type (binary keys and values, empty strings,
//! unicode, TTLs, a big hash read in pages), as JSON Lines read back by the test and as
//! RESP replayed through the real `redis-cli --pipe` into an empty server (the same
//! keyspace), a 3-primary cluster exported completely, and slot shards that together
//! export every key once.
#![cfg(all(feature = "testkit", feature = "export", feature = "cluster"))]

use std::collections::BTreeMap;

use redstash::direct::DirectConnection;
use redstash::exec::Scan;
use redstash::export::{Exporter, MemorySink, ReadOptions, SlotShard, json_line, resp_commands};
use redstash::testkit::{RedisCluster, RedisServer};

/// Fill `url`'s server with keys of every type; returns the number of keys.
fn fill(url: &str) -> u64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut p = redis::pipe();
    p.cmd("SET").arg("s:plain").arg("hello");
    p.cmd("SET").arg("s:empty").arg("");
    p.cmd("SET").arg("s:unicode ✓").arg("ünïcödé");
    p.cmd("SET")
        .arg(b"s:bin\xff\x00".as_slice())
        .arg(b"\x00\x01\xfe\xff".as_slice());
    p.cmd("SET").arg("s:ttl").arg("x").arg("PX").arg(600_000);
    p.cmd("HSET")
        .arg("h:user")
        .arg("name")
        .arg("Ada")
        .arg("age")
        .arg("36")
        .arg("bin")
        .arg(b"\xff".as_slice());
    p.cmd("RPUSH")
        .arg("l:list")
        .arg("a")
        .arg("b")
        .arg("a")
        .arg("");
    p.cmd("SADD").arg("set:s").arg("x").arg("y").arg("z");
    p.cmd("ZADD")
        .arg("z:z")
        .arg(1.5)
        .arg("a")
        .arg(-2)
        .arg("b")
        .arg("+inf")
        .arg("c");
    p.cmd("XADD")
        .arg("x:stream")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .arg("g")
        .arg("w");
    p.cmd("XADD").arg("x:stream").arg("2-0").arg("f").arg("v2");
    p.cmd("PEXPIRE").arg("h:user").arg(900_000);
    let _: () = p.query(&mut c).unwrap();
    // A big hash (read in pages) and a big list.
    let mut p = redis::pipe();
    for i in 0..20_000 {
        p.cmd("HSET")
            .arg("h:big")
            .arg(format!("f{i}"))
            .arg(format!("v{i}"))
            .ignore();
        p.cmd("RPUSH").arg("l:big").arg(format!("e{i}")).ignore();
    }
    let _: () = p.query(&mut c).unwrap();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("many:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    redis::cmd("DBSIZE").query(&mut c).unwrap()
}

/// Every key's (type, canonical value, has a TTL) on the servers at `urls`.
fn snapshot(urls: &[String]) -> BTreeMap<Vec<u8>, (String, String, bool)> {
    let mut out = BTreeMap::new();
    for url in urls {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for k in keys {
            let ty: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
            let v = match ty.as_str() {
                "string" => format!(
                    "{:?}",
                    redis::cmd("GET").arg(&k).query::<Vec<u8>>(&mut c).unwrap()
                ),
                "hash" => format!(
                    "{:?}",
                    redis::cmd("HGETALL")
                        .arg(&k)
                        .query::<BTreeMap<Vec<u8>, Vec<u8>>>(&mut c)
                        .unwrap()
                ),
                "list" => format!(
                    "{:?}",
                    redis::cmd("LRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .query::<Vec<Vec<u8>>>(&mut c)
                        .unwrap()
                ),
                "set" => {
                    let mut m: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&k).query(&mut c).unwrap();
                    m.sort();
                    format!("{m:?}")
                }
                "zset" => format!(
                    "{:?}",
                    redis::cmd("ZRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query::<Vec<Vec<u8>>>(&mut c)
                        .unwrap()
                ),
                "stream" => format!(
                    "{:?}",
                    redis::cmd("XRANGE")
                        .arg(&k)
                        .arg("-")
                        .arg("+")
                        .query::<redis::Value>(&mut c)
                        .unwrap()
                ),
                other => panic!("{other}"),
            };
            let ttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut c).unwrap();
            out.insert(k, (ty, v, ttl > 0));
        }
    }
    out
}

fn export_with(
    urls: &[String],
    encode: &redstash::export::Encode<'_>,
    exporter: &Exporter,
) -> (redstash::export::ExportReport, Vec<MemorySink>) {
    let mut cons: Vec<DirectConnection> = urls
        .iter()
        .map(|u| DirectConnection::open(u.as_str()).unwrap())
        .collect();
    let mut sinks = vec![MemorySink::default(), MemorySink::default()];
    let r = exporter
        .run(&mut cons, encode, &mut sinks, None, None)
        .unwrap();
    (r, sinks)
}

#[test]
fn json_lines_hold_every_type_binary_safe() {
    let srv = RedisServer::start().unwrap();
    let n = fill(&srv.url());
    let exporter = Exporter::new(Scan::all().with_count(100)).with_read(ReadOptions {
        page_elements: 500,
        ..ReadOptions::default()
    });
    let encode = |rec: &redstash::export::KeyRecord, out: &mut Vec<u8>| {
        json_line(rec, out);
        Ok(())
    };
    let (report, sinks) = export_with(&[srv.url()], &encode, &exporter);
    assert_eq!(
        (report.items, report.rejected, report.vanished),
        (n, 0, 0),
        "{report:?}"
    );
    let lines: BTreeMap<String, serde_json::Value> = sinks
        .iter()
        .flat_map(|s| s.items.iter())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            (v["key"].to_string(), v)
        })
        .collect();
    assert_eq!(lines.len() as u64, n, "each key exactly once");
    let get = |k: &str| &lines[&serde_json::to_string(k).unwrap()];
    assert_eq!(get("s:empty")["value"], "");
    assert_eq!(get("s:unicode ✓")["value"], "ünïcödé");
    assert!(get("s:ttl")["ttl"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(get("s:plain")["ttl"], serde_json::Value::Null);
    let bin = &lines[&serde_json::json!({"base64": "czpiaW7/AA=="}).to_string()];
    assert_eq!(bin["value"], serde_json::json!({"base64": "AAH+/w=="}));
    assert_eq!(
        get("z:z")["value"],
        serde_json::json!([["b", -2.0], ["a", 1.5], ["c", "inf"]])
    );
    assert_eq!(
        get("l:list")["value"],
        serde_json::json!(["a", "b", "a", ""])
    );
    assert_eq!(
        get("x:stream")["value"][1],
        serde_json::json!({"id": "2-0", "fields": [["f", "v2"]]})
    );
    let big = get("h:big")["value"].as_array().unwrap();
    assert_eq!(big.len(), 20_000, "a hash read in pages, each field once");
    assert_eq!(get("l:big")["value"].as_array().unwrap().len(), 20_000);
    assert_eq!(report.by_type["hash"], 2);
}

#[test]
fn resp_replayed_through_redis_cli_rebuilds_the_keyspace() {
    let src = RedisServer::start().unwrap();
    fill(&src.url());
    let encode = |rec: &redstash::export::KeyRecord, out: &mut Vec<u8>| {
        resp_commands(rec, out);
        Ok(())
    };
    let (report, sinks) = export_with(&[src.url()], &encode, &Exporter::default());
    assert_eq!(report.rejected, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.resp");
    let bytes: Vec<u8> = sinks
        .iter()
        .flat_map(|s| s.items.iter())
        .flatten()
        .copied()
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let dst = RedisServer::start().unwrap();
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &dst.port().to_string(), "--pipe"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("errors: 0"), "{text}");
    assert_eq!(snapshot(&[dst.url()]), snapshot(&[src.url()]));
}

#[test]
fn a_cluster_is_exported_completely_and_slot_shards_split_it_once() {
    let cluster = RedisCluster::start().unwrap();
    let mut con = redstash::cluster::ClusterConnection::open(cluster.nodes()).unwrap();
    use redstash::exec::{Request, SyncConnection};
    for i in 0..5_000 {
        let cmd = redis::cmd("SET").arg(format!("k:{i}")).arg(i).clone();
        con.run_request(&Request::single(cmd, None)).unwrap();
    }
    let primaries: Vec<String> = con
        .primaries()
        .iter()
        .map(|a| format!("redis://{a}/"))
        .collect();
    assert_eq!(primaries.len(), 3);
    let encode = |rec: &redstash::export::KeyRecord, out: &mut Vec<u8>| {
        json_line(rec, out);
        Ok(())
    };
    let (report, _) = export_with(&primaries, &encode, &Exporter::default());
    assert_eq!(report.items, 5_000, "{report:?}");
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for index in 0..3 {
        let ex = Exporter::default().with_shard(Some(SlotShard { index, count: 3 }));
        let (r, sinks) = export_with(&primaries, &encode, &ex);
        total += r.items;
        assert_eq!(r.items + r.other_shards, 5_000);
        for l in sinks.iter().flat_map(|s| s.items.iter()) {
            assert!(seen.insert(l.clone()), "a key in two shards");
        }
    }
    assert_eq!(total, 5_000);
}
