//! Export against real servers: every Redis type (binary keys and values, empty strings,
//! unicode, TTLs, a big hash read in pages), as JSON Lines read back by the test and as
//! RESP replayed through the real `redis-cli --pipe` into an empty server (the same
//! keyspace), a 3-primary cluster exported completely, and slot shards that together
//! export every key once.
#![cfg(all(
    feature = "testkit",
    feature = "export",
    feature = "cluster",
    feature = "cli"
))]

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

fn cli() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_redstash"))
}

fn python() -> std::path::PathBuf {
    std::env::var("REDSTASH_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
        })
}

/// Reads every part of an export with boto3's TypeDeserializer and compares each item
/// with the key in Redis (numbers exactly, as Decimal).
const CHECK_PARTS: &str = r#"
import base64, gzip, json, os, sys
from decimal import Decimal
import redis
from boto3.dynamodb.types import TypeDeserializer, Binary

out, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = redis.Redis(port=port)
de = TypeDeserializer()
def undo_b64(v):
    # The import format carries B and BS as base64 text; boto3's deserializer takes the
    # bytes (what botocore gives it after decoding a response).
    (t, x), = v.items()
    if t == "B":
        return {"B": base64.b64decode(x, validate=True)}
    if t == "BS":
        return {"BS": [base64.b64decode(e, validate=True) for e in x]}
    if t == "L":
        return {"L": [undo_b64(e) for e in x]}
    if t == "M":
        return {"M": {k: undo_b64(e) for k, e in x.items()}}
    return v
def same(rv, dv):
    if isinstance(dv, Decimal):
        return Decimal(rv.decode()) == dv
    if isinstance(dv, Binary):
        return dv.value == rv
    if isinstance(dv, str):
        return rv.decode() == dv
    raise AssertionError((rv, dv))
seen = 0
for line in open(os.path.join(out, "manifest-files.json")):
    entry = json.loads(line)
    for raw in gzip.open(os.path.join(out, entry["dataFileS3Key"])):
        item = json.loads(raw)["Item"]
        rec = {k: de.deserialize(undo_b64(v)) for k, v in item.items()}
        key = rec["pk"].value if isinstance(rec["pk"], Binary) else rec["pk"].encode()
        t = r.type(key).decode()
        v = rec.get("value")
        if t == "string":
            assert same(r.get(key), v), (key, v)
        elif t == "hash":
            h = r.hgetall(key)
            assert set(h) == {f.encode() for f in v}, (key, v)
            for f, dv in v.items():
                assert same(h[f.encode()], dv), (key, f, dv)
        elif t == "list":
            l = r.lrange(key, 0, -1)
            assert len(l) == len(v) and all(same(a, b) for a, b in zip(l, v)), (key, v)
        elif t == "set":
            members = r.smembers(key)
            assert len(members) == len(v), (key, v)
        elif t == "zset":
            z = r.zrange(key, 0, -1, withscores=True)
            assert [m for m, _ in z] == [e["member"].encode() for e in v], (key, v)
            for (m, s), e in zip(z, v):
                assert float(e["score"]) == s, (key, e, s)
        elif t == "stream":
            entries = r.xrange(key)
            assert [e[0].decode() for e in entries] == [e["id"] for e in v], (key, v)
        else:
            raise AssertionError(t)
        if r.pttl(key) > 0:
            assert int(rec["ttl"]) * 1000 >= r.pttl(key), (key, rec)
        seen += 1
assert seen == n, (seen, n)
print("ok", seen)
"#;

#[test]
fn the_cli_writes_dynamodb_parts_that_boto3_reads_back_as_the_keyspace() {
    let srv = RedisServer::start().unwrap();
    let n = fill(&srv.url());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let run = cli()
        .args([
            "export",
            "--out",
            out.to_str().unwrap(),
            "--format",
            "dynamodb",
            "--compression",
            "gzip",
            "--part-size",
            "200000",
            "--json",
            "--url",
            &srv.url(),
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    // The big list and hash (20,000 elements) are over DynamoDB's 400 KB item limit.
    assert_eq!(report["rejected"], 0, "{report}");
    assert_eq!(report["items"].as_u64().unwrap(), n, "{report}");
    assert!(report["parts"].as_u64().unwrap() > 1, "{report}");
    let verify = cli()
        .args(["export", "verify", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let py = std::process::Command::new(python())
        .arg("-c")
        .arg(CHECK_PARTS)
        .arg(&out)
        .arg(srv.port().to_string())
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
}

#[test]
fn shards_on_two_machines_merge_into_one_verified_export() {
    let srv = RedisServer::start().unwrap();
    let n = fill(&srv.url());
    let dir = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    let mut items = 0;
    for i in 0..2 {
        let d = dir.path().join(format!("shard{i}"));
        let run = cli()
            .args([
                "export",
                "--out",
                d.to_str().unwrap(),
                "--format",
                "jsonl",
                "--compression",
                "zstd",
                "--shard",
                &format!("{i}/2"),
                "--export-id",
                "nightly-1",
                "--json",
                "--url",
                &srv.url(),
            ])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        items += r["items"].as_u64().unwrap();
        dirs.push(d);
    }
    assert_eq!(items, n);
    let merged = dir.path().join("merged");
    let mut args = vec!["export".to_owned(), "merge".to_owned()];
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    args.extend(["--out".to_owned(), merged.display().to_string()]);
    let m = cli().args(&args).output().unwrap();
    assert!(
        m.status.success(),
        "{}{}",
        String::from_utf8_lossy(&m.stdout),
        String::from_utf8_lossy(&m.stderr)
    );
    let v = cli()
        .args(["export", "verify", merged.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let r: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(r["items"].as_u64().unwrap(), n, "{r}");
}

#[test]
fn a_json_lines_export_restores_the_keyspace() {
    let src = RedisServer::start().unwrap();
    let n = fill(&src.url());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup");
    let run = cli()
        .args([
            "export",
            "--out",
            out.to_str().unwrap(),
            "--format",
            "jsonl",
            "--compression",
            "zstd",
            "--part-size",
            "300000",
            "--url",
            &src.url(),
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dst = RedisServer::start().unwrap();
    let back = cli()
        .args([
            "export",
            "restore",
            out.to_str().unwrap(),
            "--json",
            "--url",
            &dst.url(),
        ])
        .output()
        .unwrap();
    assert!(
        back.status.success(),
        "{}{}",
        String::from_utf8_lossy(&back.stdout),
        String::from_utf8_lossy(&back.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&back.stdout).unwrap();
    assert_eq!(
        (
            r["keys"].as_u64(),
            r["restored"].as_u64(),
            r["failed"].as_u64()
        ),
        (Some(n), Some(n), Some(0)),
        "{r}"
    );
    assert_eq!(snapshot(&[dst.url()]), snapshot(&[src.url()]));
}
