//! The `redstash` binary against a real redis-server.

mod common;

use std::process::Command;

use common::{sample, server};
use redstash::codec::{ArrayCodec, Npy};
use redstash::{DType, Order};

/// Run the binary with `args`, connecting to `url` (through `REDIS_URL`: `--url` is an
/// option of the subcommands that connect).
fn redstash(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .env("REDIS_URL", url)
        .args(args)
        .output()
        .expect("run redstash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn array_put_inspect_get_round_trip() {
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let a = sample(DType::F32, &[4, 5], Order::F);
    let input = dir.path().join("in.npy");
    std::fs::write(&input, Npy.encode(&a.as_array_ref()).unwrap()).unwrap();
    let url = srv.url();

    let (code, out, err) = redstash(
        &url,
        &[
            "array",
            "put",
            "a",
            input.to_str().unwrap(),
            "--codec",
            "zlib:1",
            "--ttl",
            "100",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = redstash(&url, &["--json", "inspect", "a"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["format"], "zlib+npy");
    assert_eq!(v["dtype"], "float32");
    assert_eq!(v["shape"], serde_json::json!([4, 5]));
    assert_eq!(v["order"], "F");
    assert!(v["ttl_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["stored_bytes"].as_u64().unwrap() < v["raw_bytes"].as_u64().unwrap());

    let output = dir.path().join("out.npy");
    let (code, _, err) = redstash(&url, &["array", "get", "a", "-o", output.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let back =
        redstash::codec::decode_array(std::fs::read(&output).unwrap().into(), &Default::default())
            .unwrap();
    assert_eq!(back, a);

    // Text output of inspect names the essentials.
    let (code, out, _) = redstash(&url, &["inspect", "a"]);
    assert_eq!(code, 0);
    assert!(out.contains("float32") && out.contains("[4, 5]"), "{out}");
}

#[test]
fn exit_codes_mean_something() {
    let srv = server();
    let url = srv.url();
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = redstash(&url, &["inspect", "missing"]);
    assert_eq!(code, 3, "{err}");
    let (code, out, _) = redstash(
        &url,
        &["--json", "array", "get", "missing", "-o", "/dev/null"],
    );
    assert_eq!(code, 3);
    assert!(out.contains("not found"));
    let bad = dir.path().join("bad.npy");
    std::fs::write(&bad, b"not an npy file").unwrap();
    let (code, _, err) = redstash(&url, &["array", "put", "k", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown format"), "{err}");
    let (code, _, _) = redstash(
        &url,
        &[
            "array",
            "put",
            "k",
            bad.to_str().unwrap(),
            "--codec",
            "brotli",
        ],
    );
    assert_eq!(code, 1);
    let (code, _, _) = redstash(&url, &["frobnicate"]);
    assert_eq!(code, 2);
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let (code, _, err) = redstash(&url, &["inspect", "h"]);
    assert_eq!(code, 1);
    assert!(err.contains("hash"), "{err}");
    // Server down: a clear connection error.
    drop(srv);
    let (code, _, err) = redstash(&url, &["inspect", "a"]);
    assert_eq!(code, 1);
    assert!(!err.is_empty());
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn tables_gen_split_read_info_list_delete() {
    let srv = server();
    let url = srv.url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.arrow");
    let f = file.to_str().unwrap();

    let (code, out, err) = redstash(
        &url,
        &[
            "--json",
            "gen",
            "--out",
            f,
            "--partitions",
            "3",
            "--batches",
            "2",
            "--rows",
            "500",
            "--dict-strings",
            "--seed",
            "9",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let g = json(&out);
    assert_eq!(g["rows"], 3000);
    assert_eq!(g["bytes"], std::fs::metadata(&file).unwrap().len());
    assert!(g["mb_per_s"].as_f64().unwrap() > 0.0);

    // ArrowRedis's `--batches`: runs of 2 batches per partition.
    let (code, out, err) = redstash(
        &url,
        &[
            "--json",
            "split",
            "--inp",
            f,
            "--prefix",
            "demo:v1",
            "--batches",
            "2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let s = json(&out);
    assert_eq!(
        (s["batches"].as_u64(), s["partitions"].as_u64()),
        (Some(6), Some(3))
    );
    assert_eq!(s["rows"], 3000);

    // The keys are ArrowRedis's.
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let n: usize = redis::cmd("EXISTS")
        .arg("demo:v1:{part=00002}:batch=00001")
        .arg("demo:v1:__manifest__")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);

    let out_file = dir.path().join("p1.arrow");
    let (code, out, err) = redstash(
        &url,
        &[
            "--json",
            "read",
            "--prefix",
            "demo:v1",
            "--partitions",
            "1,2",
            "--columns",
            "id64,str_c",
            "--batches",
            "2",
            "--concurrency",
            "2",
            "--out",
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["rows"], 2000);
    assert_eq!(r["columns"], serde_json::json!(["id64", "str_c"]));
    assert_eq!(r["partitions"], serde_json::json!([1, 2]));
    // The output file holds what was read.
    let back: Vec<_> = redstash::codec::arrow_file::IpcInput::open(&out_file, Default::default())
        .unwrap()
        .collect::<redstash::Result<_>>()
        .unwrap();
    assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 2000);
    assert_eq!(r["copied"], false, "a projection is decoded");
    // All columns in the table's compression: the stored batches are copied.
    let all_file = dir.path().join("all.arrow");
    let (code, out, err) = redstash(
        &url,
        &[
            "--json",
            "read",
            "--prefix",
            "demo:v1",
            "--out",
            all_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["copied"], true);
    assert_eq!(r["rows"], 3000);
    assert_eq!(
        r["written_bytes"].as_u64().unwrap(),
        std::fs::metadata(&all_file).unwrap().len()
    );
    let back: Vec<_> = redstash::codec::arrow_file::IpcInput::open(&all_file, Default::default())
        .unwrap()
        .map(|b| b.unwrap().decode(None, &Default::default()).unwrap())
        .collect();
    assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 3000);
    // A failed read leaves no file behind.
    let gone = dir.path().join("gone.arrow");
    let (code, _, err) = redstash(
        &url,
        &["read", "--prefix", "nope", "--out", gone.to_str().unwrap()],
    );
    assert_eq!(code, 3, "{err}");
    assert!(!gone.exists());
    assert!(!dir.path().join("gone.arrow.partial").exists());

    // `all`, as ArrowRedis spells it.
    let (code, out, err) = redstash(
        &url,
        &[
            "--json",
            "read",
            "--prefix",
            "demo:v1",
            "--partitions",
            "all",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["partitions"], serde_json::json!([0, 1, 2]));
    let (code, _, _) = redstash(&url, &["read", "--prefix", "demo:v1", "--partitions", "x"]);
    assert_eq!(code, 2);
    // `--redis-url`, as ArrowRedis spells it.
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .args(["--json", "read", "--redis-url", &url, "--prefix", "demo:v1"])
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout))["rows"], 3000);

    // --batches is checked.
    let (code, _, err) = redstash(&url, &["read", "--prefix", "demo:v1", "--batches", "3"]);
    assert_eq!(code, 1);
    assert!(err.contains("partition 0 has 2"), "{err}");

    let (code, out, err) = redstash(&url, &["--json", "table", "info", "demo:v1"]);
    assert_eq!(code, 0, "{err}");
    let i = json(&out);
    assert_eq!(i["batches"], 6);
    assert_eq!(i["compression"], "zstd");
    let (code, out, _) = redstash(&url, &["--json", "table", "list"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["tables"], serde_json::json!(["demo:v1"]));
    let (code, out, _) = redstash(&url, &["--json", "table", "delete", "demo:v1"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["deleted_keys"], 7);

    // Missing tables and unsupported flags.
    let (code, _, _) = redstash(&url, &["read", "--prefix", "demo:v1"]);
    assert_eq!(code, 3);
    let (code, _, _) = redstash(&url, &["table", "info", "demo:v1"]);
    assert_eq!(code, 3);
    // --cluster on against a server that is not a cluster node.
    let (code, _, err) = redstash(
        &url,
        &["split", "--inp", f, "--prefix", "x", "--cluster", "on"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cluster support disabled"), "{err}");
    let (code, _, _) = redstash(
        &url,
        &["split", "--inp", "/nonexistent.arrow", "--prefix", "x"],
    );
    assert_eq!(code, 1);
}

#[test]
fn bench_runs_a_size_end_to_end() {
    let srv = server();
    let url = srv.url();
    // The smallest ArrowRedis configuration, 4 x 8 x 50k rows.
    let (code, out, err) = redstash(&url, &["--json", "bench", "--size", "50mb"]);
    assert_eq!(code, 0, "{err}");
    let b = json(&out);
    let r = &b["results"][0];
    assert_eq!(r["rows"], 1_600_000);
    for k in ["gen_mb_per_s", "split_mb_per_s", "read_mb_per_s"] {
        assert!(r[k].as_f64().unwrap() > 0.0, "{k}: {r}");
    }
    // Nothing left behind.
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

/// `--cluster on`: split, read, table info/list/delete on a 3-primary Redis Cluster,
/// the URL being a comma-separated list of seed nodes (or one of them).
#[test]
fn tables_on_a_redis_cluster() {
    let c = redstash::testkit::RedisCluster::start().expect("start a Redis Cluster");
    let nodes = c.nodes();
    let seeds = nodes.join(",");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.arrow");
    let f = file.to_str().unwrap();
    let (code, _, err) = redstash(
        &nodes[1],
        &[
            "gen",
            "--out",
            f,
            "--partitions",
            "6",
            "--batches",
            "2",
            "--rows",
            "300",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = redstash(
        &seeds,
        &[
            "--json",
            "split",
            "--inp",
            f,
            "--prefix",
            "demo:v1",
            "--cluster",
            "on",
            "--connections",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["batches"], 12);
    // The batches are on every primary.
    let mut per_node = Vec::new();
    for n in &nodes {
        let mut con = redis::Client::open(n.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        per_node.push(redis::cmd("DBSIZE").query::<usize>(&mut con).unwrap());
    }
    assert!(per_node.iter().all(|&n| n > 0), "{per_node:?}");
    assert_eq!(per_node.iter().sum::<usize>(), 13);
    let (code, out, err) = redstash(
        &nodes[2],
        &[
            "--json",
            "read",
            "--prefix",
            "demo:v1",
            "--cluster",
            "on",
            "--concurrency",
            "2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let r = json(&out);
    assert_eq!(r["rows"], 6 * 2 * 300);
    assert_eq!(r["partitions"], serde_json::json!([0, 1, 2, 3, 4, 5]));
    // Streamed to a file.
    let out_file = dir.path().join("back.arrow");
    let (code, out, err) = redstash(
        &seeds,
        &[
            "--json",
            "read",
            "--prefix",
            "demo:v1",
            "--cluster",
            "on",
            "--partitions",
            "4,1",
            "--out",
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["rows"], 2 * 2 * 300);
    let back: usize = redstash::codec::arrow_file::IpcInput::open(&out_file, Default::default())
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(back, 2 * 2 * 300);
    let (code, out, err) = redstash(
        &nodes[0],
        &["--json", "table", "info", "demo:v1", "--cluster", "on"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["batches"], 12);
    let (code, out, err) = redstash(&seeds, &["--json", "table", "list", "--cluster", "on"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["tables"], serde_json::json!(["demo:v1"]));
    let (code, out, err) = redstash(
        &nodes[0],
        &["--json", "table", "delete", "demo:v1", "--cluster", "on"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["deleted_keys"], 13);
    // Without --cluster on, a node answers MOVED for the keys it does not serve.
    let (code, _, _) = redstash(&nodes[0], &["table", "info", "demo:v1"]);
    assert!(code == 1 || code == 3, "{code}");
}

/// Only the subcommands that connect take `--url`; the global options' help is on the
/// top-level page only (subcommand pages point there).
#[test]
fn connection_options_only_where_they_connect_and_global_help_once() {
    let unused = "redis://127.0.0.1:1/";
    let (code, gen_help, _) = redstash(unused, &["gen", "--help"]);
    assert_eq!(code, 0);
    assert!(!gen_help.contains("--url"), "{gen_help}");
    assert!(!gen_help.contains("REDIS_URL"), "{gen_help}");
    let (code, _, err) = redstash(unused, &["gen", "--out", "x.arrow", "--url", unused]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--url"), "{err}");
    let top = redstash(unused, &["--help"]).1;
    assert!(
        top.contains("--json") && top.contains("machine-readable"),
        "{top}"
    );
    for page in [
        &["inspect", "--help"][..],
        &["array", "put", "--help"],
        &["array", "get", "--help"],
        &["split", "--help"],
        &["read", "--help"],
        &["table", "info", "--help"],
        &["table", "list", "--help"],
        &["table", "delete", "--help"],
        &["bench", "--help"],
    ] {
        let (code, help, _) = redstash(unused, page);
        assert_eq!(code, 0, "{page:?}");
        assert!(help.contains("--url"), "{page:?}: {help}");
        assert!(help.contains("REDIS_URL"), "{page:?}: {help}");
        // The global options are named, their help is not repeated.
        assert!(!help.contains("machine-readable"), "{page:?}: {help}");
        assert!(help.contains("redstash --help"), "{page:?}: {help}");
    }
    // `--url` after the subcommand, and the global options on either side.
    let srv = server();
    let (code, out, err) = redstash(unused, &["table", "list", "--url", &srv.url(), "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["tables"], serde_json::json!([]));
}

/// A command line clap rejects is, under `--json`, a JSON error on standard output like
/// every other error (same exit code, 2); without `--json`, text on standard error.
#[test]
fn usage_errors_under_json_are_json() {
    let unused = "redis://127.0.0.1:1/";
    for args in [
        &["--json", "frobnicate"][..],
        &["frobnicate", "--json"],
        &["--json", "inspect"],
        &["--json", "read", "--prefix", "t", "--partitions", "x"],
        &["--json", "gen", "--out", "x.arrow", "--url", unused],
        &["--json"],
        &["--json", "array", "put", "k", "x.npy", "--chunk-size", "0"],
    ] {
        let (code, out, err) = redstash(unused, args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        let v = json(&out);
        assert_eq!(v["kind"], "usage", "{args:?}: {v}");
        assert_eq!(v["exit_code"], 2, "{args:?}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{args:?}: {v}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    let (_, out, _) = redstash(unused, &["--json", "frobnicate"]);
    assert!(json(&out)["error"].as_str().unwrap().contains("frobnicate"));
    let (_, out, _) = redstash(unused, &["--json", "inspect"]);
    assert!(
        json(&out)["error"].as_str().unwrap().contains("<KEY>"),
        "{out}"
    );
    // Other errors carry the same fields.
    let (code, out, _) = redstash(unused, &["--json", "inspect", "k"]);
    assert_eq!(code, 1);
    assert_eq!(json(&out)["kind"], "failed");
    // Without --json: text on standard error, nothing on standard output.
    let (code, out, err) = redstash(unused, &["frobnicate"]);
    assert_eq!(code, 2);
    assert!(out.is_empty() && err.contains("frobnicate"), "{out}{err}");
    // --help is help, not an error, with --json too.
    let (code, out, _) = redstash(unused, &["--json", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage"), "{out}");
}

/// Errors about a file name the file.
#[test]
fn file_errors_name_the_file() {
    let srv = server();
    let url = srv.url();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.npy");
    let m = missing.to_str().unwrap();
    let (code, _, err) = redstash(&url, &["array", "put", "k", m]);
    assert_eq!(code, 1);
    assert!(err.contains(m), "{err}");
    let (code, out, _) = redstash(&url, &["--json", "array", "put", "k", m]);
    assert_eq!(code, 1);
    assert!(json(&out)["error"].as_str().unwrap().contains(m), "{out}");
    // A file that is not .npy: the file and the reason.
    let bad = dir.path().join("bad.npy");
    std::fs::write(&bad, b"not an npy file").unwrap();
    let (code, _, err) = redstash(&url, &["array", "put", "k", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("unknown format"),
        "{err}"
    );
    // An output file that cannot be written.
    let a = sample(DType::U8, &[3], Order::C);
    let good = dir.path().join("good.npy");
    std::fs::write(&good, Npy.encode(&a.as_array_ref()).unwrap()).unwrap();
    let (code, _, err) = redstash(&url, &["array", "put", "k", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let nowhere = dir.path().join("no/such/dir/out.npy");
    let (code, _, err) = redstash(
        &url,
        &["array", "get", "k", "-o", nowhere.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(err.contains(nowhere.to_str().unwrap()), "{err}");
    // `split --inp` of a file that does not exist.
    let (code, _, err) = redstash(&url, &["split", "--inp", m, "--prefix", "t"]);
    assert_eq!(code, 1);
    assert!(err.contains(m), "{err}");
}

/// `split --inp` of a file that is not Arrow IPC says so, naming the file (it does not
/// read the first bytes as a message length).
#[test]
fn split_of_a_file_that_is_not_arrow_says_so() {
    let srv = server();
    let url = srv.url();
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("notarrow.npy");
    let a = sample(DType::F64, &[4, 4], Order::C);
    std::fs::write(&npy, Npy.encode(&a.as_array_ref()).unwrap()).unwrap();
    let text = dir.path().join("notarrow.txt");
    std::fs::write(&text, b"not an arrow file, just text\n").unwrap();
    for f in [&npy, &text] {
        let path = f.to_str().unwrap();
        let (code, _, err) = redstash(&url, &["split", "--inp", path, "--prefix", "t"]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("not an Arrow IPC file or stream: {path}")),
            "{err}"
        );
        assert!(!err.contains("too large"), "{err}");
    }
    let mut c = srv.client().unwrap().get_connection().unwrap();
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0, "nothing written");
}

/// `inspect` recognises every redstash value: arrays, chunked arrays (with their real
/// stored size), batches, feature vectors of both layouts and the view registry, table
/// batches and manifests, and the recipe layout's two keys.
#[test]
fn inspect_recognises_every_redstash_value() {
    use redstash::{ArrayStore, BatchStore, DataMetaStore, FeatureStore, Layout, View};
    let srv = server();
    let url = srv.url();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let inspect = |key: &str| {
        let (code, out, err) = redstash(&url, &["--json", "inspect", key]);
        assert_eq!(code, 0, "{key}: {out}{err}");
        let (code, text, err) = redstash(&url, &["inspect", key]);
        assert_eq!(code, 0, "{key}: {err}");
        (json(&out), text)
    };

    // A chunked array: the stored size is the manifest's and the chunks'.
    let big = sample(DType::F64, &[100, 50], Order::C);
    ArrayStore::new("")
        .with_chunk_bytes(10_000)
        .put(&mut con, "big", &big)
        .unwrap();
    let (v, text) = inspect("big");
    assert_eq!(v["kind"], "chunked array", "{v}");
    assert_eq!(v["dtype"], "float64");
    assert_eq!(v["shape"], serde_json::json!([100, 50]));
    assert_eq!(v["chunks"], 5, "{v}");
    let raw = v["raw_bytes"].as_u64().unwrap();
    let stored = v["stored_bytes"].as_u64().unwrap();
    assert_eq!(raw, 128 + 100 * 50 * 8, "{v}");
    assert_eq!(stored, raw + 44, "{v}");
    assert!(
        text.contains("ratio 1.00") || text.contains("ratio 0.99"),
        "{text}"
    );

    // A batch: a hash of arrays.
    let x = sample(DType::F32, &[4, 3], Order::C);
    let y = sample(DType::I64, &[4], Order::C);
    BatchStore::new("train")
        .put(&mut con, "b1", &(("features", &x), ("labels", &y)))
        .unwrap();
    let (v, text) = inspect("train:b1");
    assert_eq!(v["kind"], "batch", "{v}");
    let arrays = v["arrays"].as_array().unwrap();
    assert_eq!(arrays.len(), 2);
    assert_eq!(arrays[0]["name"], "features");
    assert_eq!(arrays[0]["dtype"], "float32");
    assert_eq!(arrays[0]["shape"], serde_json::json!([4, 3]));
    assert_eq!(arrays[1]["name"], "labels");
    assert_eq!(arrays[1]["dtype"], "int64");
    assert!(
        text.contains("features") && text.contains("labels"),
        "{text}"
    );

    // Feature vectors, both layouts, and the registry.
    let fs = FeatureStore::new("fs");
    fs.register_view(&mut con, &View::of::<f32>("user:emb", 8))
        .unwrap();
    fs.register_view(
        &mut con,
        &View::of::<f64>("item", 3).with_layout(Layout::Hash),
    )
    .unwrap();
    fs.write(
        &mut con,
        "user:emb",
        "u:42",
        &ndarray::Array1::from_elem(8, 1.5f32),
    )
    .unwrap();
    fs.write(
        &mut con,
        "item",
        "i7",
        &ndarray::Array1::from_elem(3, 2.0f64),
    )
    .unwrap();
    let (v, _) = inspect(&fs.key("user:emb", "u:42"));
    assert_eq!(v["kind"], "feature vector", "{v}");
    assert_eq!(v["view"], "user:emb", "{v}");
    assert_eq!(v["entity"], "u:42", "{v}");
    assert_eq!(v["dtype"], "float32");
    assert_eq!(v["shape"], serde_json::json!([8]));
    assert_eq!(v["stored_bytes"], 8 + 8 * 4);
    assert!(
        v["written_at_ms"].as_u64().unwrap() > 1_600_000_000_000,
        "{v}"
    );
    let (v, _) = inspect(&fs.key("item", "i7"));
    assert_eq!(v["kind"], "feature vector", "{v}");
    assert_eq!(v["format"], "recipe", "{v}");
    assert_eq!(v["dtype"], "float64");
    assert_eq!(v["shape"], serde_json::json!([3]));
    let (v, _) = inspect(&fs.registry_key());
    assert_eq!(v["kind"], "feature view registry", "{v}");
    assert_eq!(v["views"].as_array().unwrap().len(), 2, "{v}");

    // The recipe layout's two keys.
    let r = sample(DType::I16, &[2, 5], Order::C);
    DataMetaStore::new("").put(&mut con, "rec", &r).unwrap();
    for key in ["rec:data", "rec:meta"] {
        let (v, _) = inspect(key);
        assert_eq!(v["kind"], "recipe array", "{key}: {v}");
        assert_eq!(v["dtype"], "int16");
        assert_eq!(v["shape"], serde_json::json!([2, 5]));
    }

    // A table: its batches and its manifest.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.arrow");
    let f = file.to_str().unwrap();
    let (code, _, err) = redstash(
        &url,
        &[
            "gen",
            "--out",
            f,
            "--partitions",
            "2",
            "--batches",
            "2",
            "--rows",
            "100",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = redstash(&url, &["split", "--inp", f, "--prefix", "t:v1"]);
    assert_eq!(code, 0, "{err}");
    let (v, text) = inspect("t:v1:{part=00001}:batch=00000");
    assert_eq!(v["kind"], "table batch", "{v}");
    assert_eq!(v["table"], "t:v1");
    assert_eq!(v["partition"], 1);
    assert_eq!(v["batch"], 0);
    assert_eq!(v["rows"], 100);
    assert_eq!(v["compression"], "zstd");
    assert_eq!(v["generation"], "1");
    assert!(text.contains("table batch"), "{text}");
    let (v, _) = inspect("t:v1:__manifest__");
    assert_eq!(v["kind"], "table manifest", "{v}");
    assert_eq!(v["rows"], 400);
    assert_eq!(v["batches"], 4);
    assert_eq!(v["table"], "t:v1");

    // A plain array still says what it is.
    ArrayStore::new("").put(&mut con, "small", &x).unwrap();
    let (v, _) = inspect("small");
    assert_eq!(v["kind"], "array");
    assert_eq!(v["format"], "npy");

    // What is not a redstash value is an error naming the Redis type or the bytes.
    let _: () = redis::cmd("SET")
        .arg("junk")
        .arg("hello")
        .query(&mut con)
        .unwrap();
    let (code, _, err) = redstash(&url, &["inspect", "junk"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a redstash value"), "{err}");
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut con)
        .unwrap();
    let (code, _, err) = redstash(&url, &["inspect", "h"]);
    assert_eq!(code, 1);
    assert!(err.contains("hash"), "{err}");
}

/// Run the binary with `args` and these environment variables.
fn redstash_env(envs: &[(&str, &std::path::Path)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_os_str())))
        .args(args)
        .output()
        .expect("run redstash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rediss://` URLs with the TLS flags, against a server that requires a client
/// certificate: `array put`/`get` (redis-rs) and `table list` (redstash's direct
/// connection) with `--tls-cacert`, `--tls-cert`, `--tls-key`; the same through the
/// `REDSTASH_TLS_*` variables; without the CA, a failure that says what is wrong; with
/// `--tls-insecure`, no CA needed.
#[test]
fn tls_flags_reach_every_connection() {
    use common::tls::{CA, CLIENT_CERT, CLIENT_KEY, Pki};
    let pki = Pki::new();
    let srv = redstash::testkit::RedisServer::builder()
        .tls(pki.server_files(true))
        .start()
        .unwrap();
    let url = srv.tls_url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = sample(DType::F64, &[300, 40], Order::C);
    let input = dir.path().join("in.npy");
    std::fs::write(&input, Npy.encode(&a.as_array_ref()).unwrap()).unwrap();
    let output = dir.path().join("out.npy");
    let (ca, cert, key) = (pki.path(CA), pki.path(CLIENT_CERT), pki.path(CLIENT_KEY));
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let tls_flags = [
        "--url".to_owned(),
        url.clone(),
        "--tls-cacert".to_owned(),
        path(&ca),
        "--tls-cert".to_owned(),
        path(&cert),
        "--tls-key".to_owned(),
        path(&key),
    ];
    let with_flags = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(tls_flags.iter().map(String::as_str));
        redstash_env(&[], &v)
    };

    let (code, out, err) = with_flags(&["array", "put", "a", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = with_flags(&["array", "get", "a", "-o", output.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let back =
        redstash::codec::decode_array(std::fs::read(&output).unwrap().into(), &Default::default())
            .unwrap();
    assert_eq!(back, a);
    let (code, out, err) = with_flags(&["--json", "table", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["tables"], serde_json::json!([]));
    // The connection options before the subcommand work too
    // (`redstash --url rediss://... --tls-cacert ca.pem array get ...`).
    let mut before: Vec<&str> = tls_flags.iter().map(String::as_str).collect();
    before.extend(["--json", "inspect", "a"]);
    let (code, out, err) = redstash_env(&[], &before);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["dtype"], "float64");
    // A subcommand that does not connect still refuses them.
    let (code, _, _) = redstash_env(&[], &["--url", "redis://x/", "gen", "--out", "x.arrow"]);
    assert_eq!(code, 2);
    // The value went over the TLS port: the plain port sees it too (same server).
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let stored: Vec<u8> = redis::cmd("GET").arg("a").query(&mut con).unwrap();
    assert!(!stored.is_empty());

    // The same through the environment.
    let url_path = std::path::PathBuf::from(&url);
    let envs = [
        ("REDIS_URL", url_path.as_path()),
        ("REDSTASH_TLS_CACERT", ca.as_path()),
        ("REDSTASH_TLS_CERT", cert.as_path()),
        ("REDSTASH_TLS_KEY", key.as_path()),
    ];
    let (code, out, err) = redstash_env(&envs, &["--json", "inspect", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["dtype"], "float64");
    let (code, out, err) = redstash_env(&envs, &["--json", "table", "list"]);
    assert_eq!(code, 0, "{out}{err}");

    // Without the CA (the system's roots do not know it): a TLS error, exit code 1, on
    // the redis-rs and on the direct path.
    let (cert_s, key_s) = (path(&cert), path(&key));
    for args in [&["array", "get", "a", "-o", "-"][..], &["table", "list"]] {
        let mut v = args.to_vec();
        v.extend(["--url", &url, "--tls-cert", &cert_s, "--tls-key", &key_s]);
        let (code, _, err) = redstash_env(&[], &v);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.to_lowercase().contains("unknownissuer"),
            "{args:?}: {err}"
        );
    }
    // --tls-insecure (or its variable) needs no CA.
    let insecure = [("REDSTASH_TLS_INSECURE", std::path::Path::new("true"))];
    for args in [&["array", "get", "a", "-o", "-"][..], &["table", "list"]] {
        let mut v = args.to_vec();
        v.extend(["--url", &url, "--tls-cert", &cert_s, "--tls-key", &key_s]);
        let (code, _, err) = redstash_env(&insecure, &v);
        assert_eq!(code, 0, "{args:?}: {err}");
        v.push("--tls-insecure");
        let (code, _, err) = redstash_env(&[], &v);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    // --tls-cert without --tls-key is a usage error.
    let (code, _, err) = redstash_env(&[], &["table", "list", "--url", &url, "--tls-cert", "c"]);
    assert_eq!(code, 2, "{err}");
}

/// `CLIENT PAUSE` of `ms` milliseconds on `srv`.
fn pause(srv: &redstash::testkit::RedisServer, ms: u64) {
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("ALL")
        .query::<()>(&mut srv.client().unwrap().get_connection().unwrap())
        .unwrap();
}

/// `--timeout` bounds the waits of every connection: against a server paused for 2 s,
/// `array get` and `inspect` (redis-rs) fail in well under 2 s with exit code 1 and an
/// error saying it timed out; `table list` (redstash's direct connection, which sends
/// its read again up to 3 times) fails within a few timeouts, far below its default
/// 10 s. `REDSTASH_TIMEOUT` works too; zero, negative or not a number is a usage error.
#[test]
fn timeout_bounds_every_connection() {
    let srv = server();
    let paused_long = server();
    let url = srv.url();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut con)
        .unwrap();
    drop(con);

    pause(&srv, 2000);
    pause(&paused_long, 6000);
    for args in [
        &["array", "get", "k", "-o", "-", "--timeout", "0.3"][..],
        &["--json", "inspect", "k", "--timeout", "0.3"],
    ] {
        let t = std::time::Instant::now();
        let (code, out, err) = redstash(&url, args);
        let took = t.elapsed();
        assert!(
            took < std::time::Duration::from_millis(1300),
            "{args:?}: {took:?}"
        );
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        let msg = format!("{out}{err}");
        assert!(
            msg.contains("Timeout") && msg.contains("--timeout"),
            "{args:?}: {msg}"
        );
    }
    let t = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .env("REDIS_URL", paused_long.url())
        .env("REDSTASH_TIMEOUT", "0.3")
        .args(["table", "list"])
        .output()
        .unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
    assert!(err.contains("no progress within 300ms"), "{err}");

    for bad in ["0", "-1", "abc", "0.0"] {
        let (code, _, err) = redstash(&url, &["table", "list", "--timeout", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("--timeout"), "{bad}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .env("REDIS_URL", &url)
        .env("REDSTASH_TIMEOUT", "0")
        .args(["table", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--cluster on` with `rediss://` seeds of a TLS cluster: `split`, `read` and `table
/// list` connect to every node with TLS and the `--tls-*` flags; without the CA, a TLS
/// error.
#[test]
fn tables_on_a_tls_redis_cluster() {
    use common::tls::{CA, Pki};
    let pki = Pki::new();
    let c = redstash::testkit::RedisCluster::start_with(
        redstash::testkit::RedisServer::builder().tls(pki.server_files(false)),
    )
    .expect("start a TLS Redis Cluster");
    let seeds = c.tls_nodes().unwrap().join(",");
    let ca = pki.path(CA);
    let ca = ca.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.arrow");
    let f = file.to_str().unwrap();
    let (code, _, err) = redstash(
        "redis://127.0.0.1:1/",
        &[
            "gen",
            "--out",
            f,
            "--partitions",
            "3",
            "--batches",
            "1",
            "--rows",
            "200",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let tls = ["--cluster", "on", "--tls-cacert", ca, "--timeout", "5"];
    let with = |args: &[&str]| {
        let mut v = args.to_vec();
        v.extend(tls);
        redstash(&seeds, &v)
    };
    let (code, out, err) = with(&["--json", "split", "--inp", f, "--prefix", "t:v1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["batches"], 3);
    let (code, out, err) = with(&["--json", "read", "--prefix", "t:v1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["rows"], 3 * 200);
    let (code, out, err) = with(&["--json", "table", "list"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["tables"], serde_json::json!(["t:v1"]));
    // The keys are spread over the primaries.
    let per_node: Vec<usize> = c
        .servers()
        .iter()
        .map(|s| {
            redis::cmd("DBSIZE")
                .query(&mut s.client().unwrap().get_connection().unwrap())
                .unwrap()
        })
        .collect();
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() > 1,
        "{per_node:?}"
    );
    // Without the CA, the system's roots do not know the nodes' certificate.
    let (code, _, err) = redstash(&seeds, &["table", "list", "--cluster", "on"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.to_lowercase().contains("unknownissuer"), "{err}");
}
