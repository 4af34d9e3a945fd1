//! Loading from a real PostgreSQL (testkit) into a real redis-server: types, a million
//! rows in bounded memory, resume from a checkpoint, errors, shards.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redstash::direct::DirectConnection;
use redstash::load::{
    KeyTemplate, Loader, Mapping, PostgresOptions, PostgresSource, Read, Record, Source, Value,
    ValueMapping,
};
use redstash::testkit::RedisServer;
use redstash::testkit::postgres::PostgresServer;

/// Peak resident memory a load of a million rows may use, in bytes.
const MAX_RSS: u64 = 150 << 20;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// Peak resident set size (VmHWM), bytes.
    peak_rss: u64,
}

/// Runs the CLI with `args` against Redis at `redis_url`, watching its peak memory.
fn redstash(redis_url: &str, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .env("REDIS_URL", redis_url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redstash");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let mut peak_rss = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_rss = peak_rss.max(kb * 1024);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        peak_rss,
    }
}

fn redis(server: &RedisServer) -> redis::Connection {
    server.client().unwrap().get_connection().unwrap()
}

fn dbsize(con: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(con).unwrap()
}

/// A table `t` of `n` rows: id 1..=n, name, score, n, flag.
fn make_table(pg: &PostgresServer, n: u64) {
    pg.client()
        .unwrap()
        .batch_execute(&format!(
            "CREATE TABLE t (id int8 PRIMARY KEY, name text NOT NULL, score float8, \
                             n int4, flag bool);
             INSERT INTO t SELECT g, 'user-' || g, g * 0.5, (g % 1000)::int4, g % 2 = 0
               FROM generate_series(1, {n}) g;
             ANALYZE t;"
        ))
        .unwrap();
}

/// The ids of the `u:{id}` keys in Redis, sorted.
fn loaded_ids(con: &mut redis::Connection) -> Vec<u64> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("u:*").query(con).unwrap();
    let mut ids: Vec<u64> = keys.iter().map(|k| k[2..].parse().unwrap()).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn types_map_to_values_and_json() {
    let pg = PostgresServer::start().unwrap();
    let srv = RedisServer::start().unwrap();
    pg.client()
        .unwrap()
        .batch_execute(
            "CREATE TABLE typed (
                 id int4 PRIMARY KEY, small int2, big int8, f4 float4, f8 float8,
                 num numeric, flag bool, label text, code varchar(8), raw bytea,
                 doc jsonb, doc_text json, at timestamp, day date, uid uuid, tags text[],
                 nothing text);
             INSERT INTO typed VALUES
               (1, -3, 9007199254740993, 0.1, 2.5, 12345678901234567890.000000001, true,
                'tab\there \"quoted\" \\N back\\slash
newline', 'abc', '\\x00ff41', '{\"a\": [1, 2.5, null], \"b\": {\"c\": true}}',
                '[1, \"x\"]', '2024-02-29 12:34:56.789', '2024-03-01',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', ARRAY['x', 'y'], NULL);",
        )
        .unwrap();
    let query = "SELECT * FROM typed ORDER BY id";

    let mut src = PostgresSource::connect(&pg.url(), query, PostgresOptions::default()).unwrap();
    let mut r = Record::default();
    assert_eq!(src.next_record(&mut r).unwrap(), Read::Record);
    assert_eq!(r.position.record, 0);
    let get = |name: &str| r.get(name).cloned().unwrap();
    assert_eq!(get("id"), Value::Int(1));
    assert_eq!(get("small"), Value::Int(-3));
    assert_eq!(get("big"), Value::Int(9007199254740993));
    assert_eq!(get("f4"), Value::Float(0.1));
    assert_eq!(get("f8"), Value::Float(2.5));
    assert_eq!(
        get("num"),
        Value::Untyped("12345678901234567890.000000001".into())
    );
    assert_eq!(get("flag"), Value::Bool(true));
    assert_eq!(
        get("label"),
        Value::Text("tab\there \"quoted\" \\N back\\slash\nnewline".into())
    );
    assert_eq!(get("code"), Value::Text("abc".into()));
    assert_eq!(get("raw"), Value::Bytes(vec![0, 255, 0x41]));
    assert_eq!(
        get("doc"),
        Value::Json(serde_json::json!({"a": [1, 2.5, null], "b": {"c": true}}))
    );
    assert_eq!(get("doc_text"), Value::Json(serde_json::json!([1, "x"])));
    assert_eq!(get("at"), Value::Text("2024-02-29 12:34:56.789".into()));
    assert_eq!(get("day"), Value::Text("2024-03-01".into()));
    assert_eq!(
        get("uid"),
        Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
    );
    assert_eq!(get("tags"), Value::Text("{x,y}".into()));
    assert_eq!(get("nothing"), Value::Null);
    assert_eq!(src.next_record(&mut r).unwrap(), Read::End);
    assert!(!src.identity().is_empty());

    // Through the CLI into JSON values: they parse back with the right JSON types.
    let run = redstash(
        &srv.url(),
        &["load", &pg.url(), "--query", query, "--key", "row:{id}"],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let mut con = redis(&srv);
    let text: String = redis::cmd("GET").arg("row:1").query(&mut con).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["id"], serde_json::json!(1));
    assert_eq!(v["small"], serde_json::json!(-3));
    assert_eq!(v["big"].as_i64(), Some(9007199254740993));
    assert_eq!(v["f4"], serde_json::json!(0.1));
    assert_eq!(v["f8"], serde_json::json!(2.5));
    assert!(v["num"].is_number(), "{text}");
    assert!(
        text.contains("\"num\":12345678901234567890.000000001"),
        "numeric keeps its digits: {text}"
    );
    assert_eq!(v["flag"], serde_json::json!(true));
    assert_eq!(
        v["label"],
        serde_json::json!("tab\there \"quoted\" \\N back\\slash\nnewline")
    );
    assert_eq!(v["raw"].as_array().map(Vec::len), Some(3), "{text}");
    assert_eq!(v["doc"]["a"], serde_json::json!([1, 2.5, null]));
    assert_eq!(v["doc"]["b"]["c"], serde_json::json!(true));
    assert_eq!(v["doc_text"], serde_json::json!([1, "x"]));
    assert_eq!(v["at"], serde_json::json!("2024-02-29 12:34:56.789"));
    assert_eq!(v["day"], serde_json::json!("2024-03-01"));
    assert_eq!(v["tags"], serde_json::json!("{x,y}"));
    assert_eq!(v["nothing"], serde_json::Value::Null);
}

#[test]
fn a_million_rows_into_hashes_in_bounded_memory() {
    const N: u64 = 1_000_000;
    let pg = PostgresServer::start().unwrap();
    let srv = RedisServer::start().unwrap();
    make_table(&pg, N);
    let run = redstash(
        &srv.url(),
        &[
            "--json",
            "load",
            &pg.url(),
            "--query",
            "SELECT * FROM t",
            "--pg-count",
            "--key",
            "u:{id}",
            "--value",
            "hash",
        ],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["loaded"], serde_json::json!(N), "{report}");
    let mut con = redis(&srv);
    assert_eq!(dbsize(&mut con), N);
    let h: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("u:777777")
        .query(&mut con)
        .unwrap();
    let h: std::collections::HashMap<_, _> = h.into_iter().collect();
    assert_eq!(h["id"], "777777");
    assert_eq!(h["name"], "user-777777");
    assert_eq!(h["score"], "388888.5");
    assert_eq!(h["n"], "777");
    assert_eq!(h["flag"], "false");
    eprintln!(
        "1,000,000 rows: peak RSS {:.1} MiB",
        run.peak_rss as f64 / (1 << 20) as f64
    );
    assert!(run.peak_rss > 0, "no peak RSS read");
    assert!(
        run.peak_rss < MAX_RSS,
        "peak RSS {} bytes, more than {MAX_RSS}",
        run.peak_rss
    );
}

/// A source that raises a cancel flag once it has read `after` records.
struct CancelAfter {
    inner: PostgresSource,
    after: u64,
    cancel: Arc<AtomicBool>,
}

impl Source for CancelAfter {
    fn next_record(&mut self, record: &mut Record) -> redstash::Result<Read> {
        let read = self.inner.next_record(record)?;
        if self.inner.resume_point().records >= self.after {
            self.cancel.store(true, Ordering::SeqCst);
        }
        Ok(read)
    }
    fn resume_point(&self) -> redstash::load::ResumePoint {
        self.inner.resume_point()
    }
    fn identity(&self) -> String {
        self.inner.identity()
    }
}

#[test]
fn a_resumed_load_continues_where_the_checkpoint_is() {
    const N: u64 = 60_000;
    let pg = PostgresServer::start().unwrap();
    let srv = RedisServer::start().unwrap();
    make_table(&pg, N);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("pg.ckpt");
    let options = || PostgresOptions {
        key_column: Some("id".into()),
        shard: None,
        count: true,
    };
    let mapping = Mapping::new(KeyTemplate::parse("u:{id}").unwrap())
        .with_value(ValueMapping::Hash(Default::default()));

    // A first load, cancelled once 20,000 rows are read.
    let cancel = Arc::new(AtomicBool::new(false));
    let loader = Loader::new(mapping.clone())
        .with_batch_size(1_000)
        .with_window(2)
        .with_checkpoint(&checkpoint)
        .with_cancel(cancel.clone());
    let src = PostgresSource::connect(&pg.url(), "SELECT * FROM t", options()).unwrap();
    assert_eq!(src.total_rows(), Some(N));
    let mut src = CancelAfter {
        inner: src,
        after: 20_000,
        cancel: cancel.clone(),
    };
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    let first = loader.load(&mut src, &mut con).unwrap();
    assert!(first.stopped.is_some(), "{first:?}");
    let done = first.checkpoint.unwrap();
    assert!((20_000..N).contains(&done), "{first:?}");
    let mut rcon = redis(&srv);
    let first_ids = loaded_ids(&mut rcon);
    assert!(first_ids.len() as u64 >= done);
    // Rows are ordered by the key: the checkpoint's rows are ids 1..=done.
    assert!((1..=done).all(|id| first_ids.binary_search(&id).is_ok()));

    // The resumed load reads only the rows after the checkpoint.
    redis::cmd("FLUSHALL").query::<()>(&mut rcon).unwrap();
    let loader = Loader::new(mapping)
        .with_batch_size(1_000)
        .with_window(2)
        .with_checkpoint(&checkpoint);
    let mut src = PostgresSource::connect(&pg.url(), "SELECT * FROM t", options()).unwrap();
    let second = loader.load(&mut src, &mut con).unwrap();
    assert!(second.stopped.is_none(), "{second:?}");
    assert_eq!(second.resumed_from, done);
    assert_eq!(second.loaded, N - done, "{second:?}");
    let second_ids = loaded_ids(&mut rcon);
    assert_eq!(second_ids, (done + 1..=N).collect::<Vec<_>>());

    // A third run finds the load finished.
    let third = Loader::new(
        Mapping::new(KeyTemplate::parse("u:{id}").unwrap())
            .with_value(ValueMapping::Hash(Default::default())),
    )
    .with_batch_size(1_000)
    .with_window(2)
    .with_checkpoint(&checkpoint)
    .load(
        &mut PostgresSource::connect(&pg.url(), "SELECT * FROM t", options()).unwrap(),
        &mut con,
    )
    .unwrap();
    assert_eq!(third.loaded, 0);
}

#[test]
fn bad_queries_and_connections_are_clean_errors() {
    let pg = PostgresServer::start().unwrap();
    let srv = RedisServer::start().unwrap();
    let err = PostgresSource::connect(
        &pg.url(),
        "SELECT * FROM no_such_table",
        PostgresOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, redstash::Error::InvalidArgument(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("no_such_table"), "{err}");

    let err = PostgresSource::connect(
        &pg.url(),
        "SELECT 1 AS a",
        PostgresOptions {
            key_column: Some("id".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("key column"), "{err}");

    // An error found while streaming (not when preparing) ends the load with it.
    let mut src = PostgresSource::connect(
        &pg.url(),
        "SELECT g, 1 / (g - 3000) AS x FROM generate_series(1, 5000) g",
        PostgresOptions::default(),
    )
    .unwrap();
    let mut r = Record::default();
    let err = loop {
        match src.next_record(&mut r) {
            Ok(Read::Record) => {}
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("division by zero"), "{err}");

    let run = redstash(
        &srv.url(),
        &[
            "load",
            &pg.url(),
            "--query",
            "SELEC nonsense",
            "--key",
            "k:{id}",
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("syntax error"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    let run = redstash(&srv.url(), &["load", &pg.url(), "--key", "k:{id}"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--query"), "{}", run.stderr);

    // Nobody listens there: a connection error, with no password shown.
    let dead = format!("postgres://postgres:hunter2@127.0.0.1:{}/postgres", 1);
    let run = redstash(
        &srv.url(),
        &[
            "load",
            &dead,
            "--query",
            "SELECT 1 AS id",
            "--key",
            "k:{id}",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert_eq!(dbsize(&mut redis(&srv)), 0);
}

#[test]
fn two_shards_load_the_table_exactly() {
    const N: u64 = 30_000;
    let pg = PostgresServer::start().unwrap();
    let srv = RedisServer::start().unwrap();
    make_table(&pg, N);
    let mut con = redis(&srv);
    // By key hash on the server (each loader reads only its rows), then by batches
    // (each reads all rows and takes every other batch).
    for by_key in [true, false] {
        redis::cmd("FLUSHALL").query::<()>(&mut con).unwrap();
        let mut loaded = Vec::new();
        for shard in ["0/2", "1/2"] {
            let url = pg.url();
            let mut args = vec![
                "--json",
                "load",
                &url,
                "--query",
                "SELECT * FROM t ORDER BY id",
                "--key",
                "u:{id}",
                "--value",
                "hash",
                "--batch-size",
                "1000",
                "--shard",
                shard,
            ];
            if by_key {
                args.extend(["--pg-key-column", "id"]);
            }
            let run = redstash(&srv.url(), &args);
            assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
            let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
            let n = report["loaded"].as_u64().unwrap();
            loaded.push(n);
            if by_key {
                // Only this shard's rows were read.
                assert_eq!(report["read"].as_u64(), Some(n), "{report}");
            }
        }
        assert!(loaded.iter().all(|&n| n > N / 4), "{loaded:?}");
        assert_eq!(loaded.iter().sum::<u64>(), N, "{loaded:?}");
        assert_eq!(loaded_ids(&mut con), (1..=N).collect::<Vec<_>>());
    }
}
