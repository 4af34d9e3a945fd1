//! Arrow IPC and Parquet sources, feature vectors and `.npy` arrays loaded into a real
//! redis-server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, MapBuilder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_schema::{DataType, Field};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use redis::Commands;
use redstash::direct::DirectConnection;
use redstash::load::{
    ArrowSource, FeatureLoad, KeyTemplate, Loader, Mapping, OnError, ParquetSource, Read, Record,
    Shard, Source, Value, ValueMapping, VectorColumns,
};
use redstash::testkit::RedisServer;
use redstash::{FeatureStore, View};

/// One batch with a column of every supported type, `rows` rows from `first`.
fn all_types(first: i64, rows: usize) -> RecordBatch {
    let ids: Vec<i64> = (first..first + rows as i64).collect();
    let n = rows;
    let i8s: Int8Array = (0..n).map(|i| (i % 3 != 1).then_some(i as i8)).collect();
    let u64s = UInt64Array::from_iter_values((0..n).map(|i| u64::MAX - i as u64));
    let f32s = Float32Array::from_iter_values((0..n).map(|i| 0.1 + i as f32));
    let f64s = Float64Array::from_iter_values((0..n).map(|i| 2.5 * i as f64));
    let s = StringArray::from_iter((0..n).map(|i| (i % 4 != 2).then(|| format!("s{i}"))));
    let ls = LargeStringArray::from_iter_values((0..n).map(|i| format!("large{i}")));
    let sv = StringViewArray::from_iter_values((0..n).map(|i| format!("view-{i}")));
    let b = BinaryArray::from_iter_values((0..n).map(|i| vec![0xff, i as u8]));
    let flag = BooleanArray::from_iter((0..n).map(|i| Some(i % 2 == 0)));
    let dec = Decimal128Array::from_iter_values((0..n).map(|i| 12_340 + i as i128))
        .with_precision_and_scale(10, 3)
        .unwrap();
    let date = Date32Array::from_iter_values((0..n).map(|i| 19_783 + i as i32));
    let ts = TimestampMillisecondArray::from_iter_values(
        (0..n).map(|i| 1_709_296_200_250 + i as i64 * 1000),
    )
    .with_timezone("UTC");
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(
        (0..n).map(|i| Some(vec![Some(i as i32), None])),
    );
    let fsl = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        2,
        Arc::new(Float32Array::from_iter_values(
            (0..n).flat_map(|i| [i as f32, 0.5]),
        )),
        None,
    )
    .unwrap();
    let st = StructArray::from(vec![
        (
            Arc::new(Field::new("a", DataType::Int32, false)),
            Arc::new(Int32Array::from_iter_values((0..n).map(|i| i as i32))) as ArrayRef,
        ),
        (
            Arc::new(Field::new("b", DataType::Utf8, false)),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("b{i}")),
            )) as ArrayRef,
        ),
    ]);
    let mut mb = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
    for i in 0..n {
        mb.keys().append_value("k");
        mb.values().append_value(i as i32);
        mb.append(true).unwrap();
    }
    let map = mb.finish();
    let dict: DictionaryArray<Int32Type> = (0..n).map(|i| ["red", "green"][i % 2]).collect();
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("i8", Arc::new(i8s) as _),
        ("u64", Arc::new(u64s) as _),
        ("f32", Arc::new(f32s) as _),
        ("f64", Arc::new(f64s) as _),
        ("s", Arc::new(s) as _),
        ("ls", Arc::new(ls) as _),
        ("sv", Arc::new(sv) as _),
        ("b", Arc::new(b) as _),
        ("flag", Arc::new(flag) as _),
        ("dec", Arc::new(dec) as _),
        ("date", Arc::new(date) as _),
        ("ts", Arc::new(ts) as _),
        ("list", Arc::new(list) as _),
        ("fsl", Arc::new(fsl) as _),
        ("st", Arc::new(st) as _),
        ("map", Arc::new(map) as _),
        ("dict", Arc::new(dict) as _),
    ])
    .unwrap()
}

fn write_arrow(path: &Path, batches: &[RecordBatch], stream: bool) {
    let f = std::fs::File::create(path).unwrap();
    let schema = batches[0].schema();
    if stream {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(f, &schema).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    } else {
        let mut w = arrow_ipc::writer::FileWriter::try_new(f, &schema).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
    }
}

fn write_parquet(path: &Path, batches: &[RecordBatch], row_group: usize) {
    let f = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = ArrowWriter::try_new(f, batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn records(src: &mut dyn Source) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        let mut r = Record::default();
        match src.next_record(&mut r).unwrap() {
            Read::Record => out.push(r),
            Read::End => return out,
            Read::Malformed { reason, .. } => panic!("malformed: {reason}"),
        }
    }
}

/// The values of row 0 and row 1 of `all_types(0, _)`.
fn check_values(rs: &[Record]) {
    let r0 = &rs[0];
    let r1 = &rs[1];
    assert_eq!(r0.get("id"), Some(&Value::Int(0)));
    assert_eq!(r0.get("i8"), Some(&Value::Int(0)));
    assert_eq!(r1.get("i8"), Some(&Value::Null));
    assert_eq!(
        r0.get("u64"),
        Some(&Value::Json(serde_json::json!(u64::MAX)))
    );
    assert_eq!(r0.get("f32"), Some(&Value::Float(0.1)));
    assert_eq!(r1.get("f64"), Some(&Value::Float(2.5)));
    assert_eq!(r0.get("s"), Some(&Value::Text("s0".into())));
    assert_eq!(rs[2].get("s"), Some(&Value::Null));
    assert_eq!(r1.get("ls"), Some(&Value::Text("large1".into())));
    assert_eq!(r1.get("sv"), Some(&Value::Text("view-1".into())));
    assert_eq!(r1.get("b"), Some(&Value::Bytes(vec![0xff, 1])));
    assert_eq!(r1.get("flag"), Some(&Value::Bool(false)));
    assert_eq!(r1.get("dec"), Some(&Value::Text("12.341".into())));
    assert_eq!(r0.get("date"), Some(&Value::Text("2024-03-01".into())));
    assert_eq!(
        r0.get("ts"),
        Some(&Value::Text("2024-03-01T12:30:00.250Z".into()))
    );
    assert_eq!(
        r1.get("list"),
        Some(&Value::Json(serde_json::json!([1, null])))
    );
    assert_eq!(
        r1.get("fsl"),
        Some(&Value::Json(serde_json::json!([1.0, 0.5])))
    );
    assert_eq!(
        r1.get("st"),
        Some(&Value::Json(serde_json::json!({"a": 1, "b": "b1"})))
    );
    assert_eq!(
        r1.get("map"),
        Some(&Value::Json(serde_json::json!({"k": 1})))
    );
    assert_eq!(r1.get("dict"), Some(&Value::Text("green".into())));
}

#[test]
fn every_column_type_from_arrow_file_stream_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let batches = [all_types(0, 10), all_types(10, 7)];
    let file = dir.path().join("t.arrow");
    let stream = dir.path().join("t.arrows");
    let pq = dir.path().join("t.parquet");
    write_arrow(&file, &batches, false);
    write_arrow(&stream, &batches, true);
    write_parquet(&pq, &batches, 5);
    let mut srcs: Vec<Box<dyn Source>> = vec![
        Box::new(ArrowSource::open(&file).unwrap()),
        Box::new(ArrowSource::open(&stream).unwrap()),
        Box::new(ParquetSource::open(&pq).unwrap()),
    ];
    for src in &mut srcs {
        let rs = records(src.as_mut());
        assert_eq!(rs.len(), 17, "{}", src.identity());
        check_values(&rs);
        assert_eq!(rs[16].get("id"), Some(&Value::Int(16)));
        assert_eq!(rs[16].position.record, 16);
    }
    assert_eq!(ParquetSource::open(&pq).unwrap().row_groups(), 4);
}

fn con(srv: &RedisServer) -> DirectConnection {
    DirectConnection::open(srv.url().as_str()).unwrap()
}

#[test]
fn hashes_via_the_cli_from_parquet_and_arrow() {
    let srv = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let batches = [all_types(0, 10), all_types(10, 7)];
    let pq = dir.path().join("items.parquet");
    let ar = dir.path().join("items.arrow");
    write_parquet(&pq, &batches, 4);
    write_arrow(&ar, &batches, false);
    let mut c = srv.client().unwrap().get_connection().unwrap();
    for (path, prefix) in [(&pq, "p"), (&ar, "a")] {
        let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
            .arg("load")
            .arg(path)
            .args(["--key", &format!("{prefix}:{{id}}"), "--value", "hash"])
            .args(["--url", &srv.url()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let h: std::collections::HashMap<String, Vec<u8>> =
            c.hgetall(format!("{prefix}:1")).unwrap();
        assert_eq!(h["id"], b"1");
        assert!(!h.contains_key("i8"), "a null field is left out: {h:?}");
        assert_eq!(h["u64"], (u64::MAX - 1).to_string().as_bytes());
        assert_eq!(h["f32"], b"1.1");
        assert_eq!(h["b"], [0xff, 1]);
        assert_eq!(h["dec"], b"12.341");
        assert_eq!(h["ts"], b"2024-03-01T12:30:01.250Z");
        assert_eq!(h["st"], br#"{"a":1,"b":"b1"}"#);
        let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert!(n >= 17);
    }
    let keys: Vec<String> = c.keys("p:*").unwrap();
    assert_eq!(keys.len(), 17);
}

fn simple(first: i64, rows: usize, null_at: Option<i64>) -> RecordBatch {
    let ids: Vec<i64> = (first..first + rows as i64).collect();
    let k = StringArray::from_iter(
        ids.iter()
            .map(|&i| (Some(i) != null_at).then(|| format!("k{i}"))),
    );
    let schema = arrow_schema::Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(Int64Array::from(ids)), Arc::new(k)],
    )
    .unwrap()
}

#[test]
fn resume_from_a_checkpoint_mid_file() {
    let srv = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for kind in ["parquet", "arrow"] {
        let path = dir.path().join(format!("r.{kind}"));
        let batches: Vec<_> = (0..10).map(|b| simple(b * 100, 100, Some(537))).collect();
        match kind {
            "parquet" => write_parquet(&path, &batches, 150),
            _ => write_arrow(&path, &batches, false),
        }
        let open = || -> Box<dyn Source + Send> {
            match kind {
                "parquet" => Box::new(ParquetSource::open(&path).unwrap()),
                _ => Box::new(ArrowSource::open(&path).unwrap()),
            }
        };
        let ck = dir.path().join(format!("{kind}.ckpt"));
        let mapping = Mapping::new(KeyTemplate::parse(&format!("{kind}:{{k}}")).unwrap())
            .with_value(ValueMapping::Raw("id".into()));
        let loader = Loader::new(mapping)
            .with_batch_size(50)
            .with_checkpoint(&ck);
        let mut c = con(&srv);
        // Row 537 has no key: the load stops there, the checkpoint just before it.
        let first = loader.load(open().as_mut(), &mut c).unwrap();
        assert!(first.stopped.is_some());
        let done = first.checkpoint.unwrap();
        assert_eq!(done, 537, "{first:?}");
        // The same load again, skipping bad records, continues from the checkpoint.
        let second = loader
            .clone()
            .with_on_error(OnError::Skip)
            .load(open().as_mut(), &mut c)
            .unwrap();
        assert_eq!(second.resumed_from, 537);
        assert_eq!(second.read, 463, "{second:?}");
        assert_eq!(second.loaded, 462);
        assert_eq!(second.skipped, 1);
        let mut rc = srv.client().unwrap().get_connection().unwrap();
        let keys: Vec<String> = rc.keys(format!("{kind}:*")).unwrap();
        assert_eq!(keys.len(), 999);
        let v: String = rc.get(format!("{kind}:k999")).unwrap();
        assert_eq!(v, "999");
    }
}

#[test]
fn two_shards_load_exactly_the_whole_file() {
    let srv = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("s.parquet");
    let batches: Vec<_> = (0..7).map(|b| simple(b * 100, 100, None)).collect();
    write_parquet(&pq, &batches, 64);
    let ar = dir.path().join("s.arrow");
    write_arrow(&ar, &batches, false);
    let mut rc = srv.client().unwrap().get_connection().unwrap();
    for (path, prefix) in [(&pq, "p"), (&ar, "a")] {
        let mut total = 0;
        for i in 0..2 {
            let mut src: Box<dyn Source + Send> = if prefix == "p" {
                Box::new(ParquetSource::open(path).unwrap())
            } else {
                Box::new(ArrowSource::open(path).unwrap())
            };
            let mapping = Mapping::new(KeyTemplate::parse(&format!("{prefix}:{{id}}")).unwrap())
                .with_value(ValueMapping::Raw("k".into()));
            let r = Loader::new(mapping)
                .with_batch_size(40)
                .with_shard(Some(Shard { index: i, count: 2 }))
                .load(src.as_mut(), &mut con(&srv))
                .unwrap();
            assert!(r.stopped.is_none());
            assert!(r.loaded > 200 && r.loaded < 500, "{r:?}");
            total += r.loaded;
        }
        assert_eq!(total, 700);
        let keys: Vec<String> = rc.keys(format!("{prefix}:*")).unwrap();
        assert_eq!(keys.len(), 700);
    }
}

/// The peak resident memory of a process, polled from /proc while it runs (kB).
fn run_polling_hwm(cmd: &mut Command) -> (std::process::Output, u64) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut hwm = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            for line in s.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    hwm = hwm.max(kb);
                }
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), hwm)
}

#[test]
fn a_million_row_parquet_file_loads_in_bounded_memory() {
    let srv = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("big.parquet");
    let rows = 1_000_000usize;
    {
        let f = std::fs::File::create(&pq).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(100_000))
            .build();
        let schema = simple(0, 1, None).schema();
        let mut w = ArrowWriter::try_new(f, schema, Some(props)).unwrap();
        for b in 0..(rows / 50_000) {
            w.write(&simple((b * 50_000) as i64, 50_000, None)).unwrap();
        }
        w.close().unwrap();
    }
    let (out, hwm_kb) = run_polling_hwm(
        Command::new(env!("CARGO_BIN_EXE_redstash"))
            .arg("load")
            .arg(&pq)
            .args(["--key", "big:{id}", "--value", "raw:k", "--json"])
            .args(["--url", &srv.url()]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["loaded"], rows as u64, "{report}");
    let mut rc = srv.client().unwrap().get_connection().unwrap();
    let n: usize = redis::cmd("DBSIZE").query(&mut rc).unwrap();
    assert_eq!(n, rows);
    eprintln!("peak RSS of the load: {} MB", hwm_kb / 1024);
    assert!(hwm_kb < 200 * 1024, "peak RSS {hwm_kb} kB");
}

fn feature_file(path: &Path, rows: usize, dim: i32) -> Vec<f32> {
    let values: Vec<f32> = (0..rows * dim as usize)
        .map(|i| f32::from_bits(0x3f80_0000 ^ (i as u32).wrapping_mul(2_654_435_761) >> 9))
        .collect();
    let mut batches = Vec::new();
    for start in (0..rows).step_by(300) {
        let n = 300.min(rows - start);
        let ids = StringArray::from_iter_values((start..start + n).map(|i| format!("e{i}")));
        let vals = Float32Array::from_iter_values(
            values[start * dim as usize..(start + n) * dim as usize]
                .iter()
                .copied(),
        );
        let emb = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            dim,
            Arc::new(vals.clone()),
            None,
        )
        .unwrap();
        let lst = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            arrow_buffer::OffsetBuffer::from_lengths(std::iter::repeat_n(dim as usize, n)),
            Arc::new(vals),
            None,
        )
        .unwrap();
        let mut cols: Vec<(String, ArrayRef)> = vec![
            ("id".into(), Arc::new(ids)),
            ("emb".into(), Arc::new(emb)),
            ("lst".into(), Arc::new(lst)),
        ];
        for j in 0..dim as usize {
            cols.push((
                format!("f{j}"),
                Arc::new(Float32Array::from_iter_values(
                    (start..start + n).map(|i| values[i * dim as usize + j]),
                )),
            ));
        }
        batches.push(RecordBatch::try_from_iter(cols).unwrap());
    }
    write_parquet(path, &batches, 500);
    values
}

#[test]
fn feature_vectors_from_parquet_read_back_bit_exactly() {
    let srv = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("f.parquet");
    let (rows, dim) = (2_000usize, 8i32);
    let values = feature_file(&pq, rows, dim);
    let ids: Vec<String> = (0..rows).map(|i| format!("e{i}")).collect();
    let mut c = con(&srv);
    let store = FeatureStore::new("fs");
    // The library, each of the three vector shapes.
    for (view, vector) in [
        ("emb", VectorColumns::List("emb".into())),
        ("lst", VectorColumns::List("lst".into())),
        (
            "cols",
            VectorColumns::Columns((0..dim).map(|j| format!("f{j}")).collect()),
        ),
    ] {
        store
            .register_view(&mut c, &View::of::<f32>(view, dim as usize))
            .unwrap();
        let load = FeatureLoad::new(view, "id", vector);
        let mut src = ParquetSource::open(&pq).unwrap();
        let r = load
            .load(
                std::iter::from_fn(move || src.next_batch().transpose()),
                &store,
                &mut c,
            )
            .unwrap();
        assert_eq!((r.rows, r.written), (rows as u64, rows as u64), "{r:?}");
        assert!(r.stopped.is_none());
        let back = store.read_many::<f32, _, _>(&mut c, view, &ids).unwrap();
        assert!(back.present.iter().all(|&p| p));
        let got: Vec<u32> = back.values.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        assert!(got == want, "{view}: vectors differ");
    }
    // The CLI, registering the view from the schema.
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .arg("load")
        .arg(&pq)
        .args([
            "--feature-view",
            "cli",
            "--id-column",
            "id",
            "--vector-column",
            "emb",
        ])
        .args(["--feature-prefix", "fs", "--dtype", "f32", "--json"])
        .args(["--url", &srv.url()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["written"], rows as u64);
    let back = store.read_many::<f32, _, _>(&mut c, "cli", &ids).unwrap();
    assert_eq!(back.values.as_slice().unwrap(), &values[..]);
}

#[test]
fn bad_vectors_are_errors_naming_the_row() {
    let srv = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("bad.parquet");
    let lst = ListArray::from_iter_primitive::<arrow_array::types::Float32Type, _, _>([
        Some(vec![Some(1.0), Some(2.0)]),
        Some(vec![Some(1.0), Some(2.0)]),
        Some(vec![Some(1.0)]),
    ]);
    let nul = ListArray::from_iter_primitive::<arrow_array::types::Float32Type, _, _>([
        Some(vec![Some(1.0), Some(2.0)]),
        None,
        Some(vec![Some(1.0), Some(2.0)]),
    ]);
    let b = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ("lst", Arc::new(lst) as _),
        ("nul", Arc::new(nul) as _),
        ("txt", Arc::new(StringArray::from(vec!["a", "b", "c"])) as _),
    ])
    .unwrap();
    write_parquet(&pq, &[b], 10);
    let mut c = con(&srv);
    let store = FeatureStore::new("fs");
    store
        .register_view(&mut c, &View::of::<f32>("v", 2))
        .unwrap();
    let run = |col: &str, c: &mut DirectConnection| {
        let mut src = ParquetSource::open(&pq).unwrap();
        FeatureLoad::new("v", "id", VectorColumns::List(col.into())).load(
            std::iter::from_fn(move || src.next_batch().transpose()),
            &store,
            c,
        )
    };
    let r = run("lst", &mut c).unwrap();
    let why = r.stopped.unwrap();
    assert!(
        why.contains("row 3") && why.contains("1 components"),
        "{why}"
    );
    assert_eq!((r.written, r.not_sent), (0, 3));
    let r = run("nul", &mut c).unwrap();
    let why = r.stopped.unwrap();
    assert!(why.contains("row 2") && why.contains("null"), "{why}");
    let e = run("txt", &mut c).unwrap_err().to_string();
    assert!(e.contains("not a list of floats"), "{e}");
    // A view of another dimension, via the CLI: a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .arg("load")
        .arg(&pq)
        .args([
            "--feature-view",
            "v",
            "--id-column",
            "id",
            "--vector-columns",
            "id",
        ])
        .args(["--feature-prefix", "fs", "--url", &srv.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dimension 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Flip bytes and cut files: every read ends in records or a clean error, never a
/// panic.
#[test]
fn corrupt_arrow_and_parquet_files_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let batches = [all_types(0, 10), all_types(10, 7)];
    let good: Vec<(PathBuf, bool)> = vec![
        (dir.path().join("c.arrow"), false),
        (dir.path().join("c.arrows"), false),
        (dir.path().join("c.parquet"), true),
    ];
    write_arrow(&good[0].0, &batches, false);
    write_arrow(&good[1].0, &batches, true);
    write_parquet(&good[2].0, &batches, 5);
    let bad = dir.path().join("bad");
    let mut errors = 0;
    for (path, parquet) in &good {
        let bytes = std::fs::read(path).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for k in 0..300 {
            let mut b = bytes.clone();
            if k % 10 == 0 {
                b.truncate(k * b.len() / 300);
            } else {
                for _ in 0..1 + k % 4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let at = (seed as usize) % b.len();
                    b[at] = (seed >> 32) as u8;
                }
            }
            std::fs::write(&bad, &b).unwrap();
            let src: redstash::Result<Box<dyn Source>> = if *parquet {
                ParquetSource::open(&bad).map(|s| Box::new(s) as _)
            } else {
                ArrowSource::open(&bad).map(|s| Box::new(s) as _)
            };
            let Ok(mut src) = src else {
                errors += 1;
                continue;
            };
            let mut r = Record::default();
            loop {
                match src.next_record(&mut r) {
                    Ok(Read::Record) => {}
                    Ok(_) => break,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
        }
    }
    assert!(errors > 100, "{errors}");
    // Via the CLI: exit code 1 and a message naming the file.
    let srv = RedisServer::start().unwrap();
    std::fs::write(dir.path().join("x.parquet"), b"PAR1 not really PAR1").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .arg("load")
        .arg(dir.path().join("x.parquet"))
        .args(["--key", "x:{id}", "--url", &srv.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("x.parquet"));
}

#[test]
fn npy_files_into_an_array_store() {
    let srv = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = ndarray::Array2::<f32>::from_shape_fn((30, 7), |(i, j)| (i * 7 + j) as f32 * 0.5);
    let b = ndarray::Array1::<i64>::from_iter(0..1000);
    use redstash::AsArray;
    use redstash::codec::ArrayCodec;
    let npy_a = a.with_array_ref(|r| redstash::Npy.encode(&r)).unwrap();
    let npy_b = b.with_array_ref(|r| redstash::Npy.encode(&r)).unwrap();
    std::fs::write(dir.path().join("a.npy"), &npy_a).unwrap();
    std::fs::write(dir.path().join("b.npy"), &npy_b).unwrap();
    std::fs::write(dir.path().join("skip.txt"), b"x").unwrap();
    let pattern = dir.path().join("*.npy");
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .arg("load")
        .arg(&pattern)
        .args([
            "--arrays",
            "--key",
            "arr:{stem}",
            "--json",
            "--url",
            &srv.url(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["files"].as_u64(), report["stored"].as_u64()),
        (Some(2), Some(2))
    );
    let mut c = con(&srv);
    let store = redstash::ArrayStore::new("");
    let got = store.get(&mut c, "arr:a").unwrap().unwrap();
    assert_eq!(got.to_ndarray::<f32, ndarray::Ix2>().unwrap(), a);
    let got = store.get(&mut c, "arr:b").unwrap().unwrap();
    assert_eq!(got.to_ndarray::<i64, ndarray::Ix1>().unwrap(), b);
    // A truncated file: the load says which, and the others are counted exactly.
    let bytes = npy_a;
    std::fs::write(dir.path().join("c.npy"), &bytes[..bytes.len() - 3]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_redstash"))
        .arg("load")
        .arg(dir.path())
        .args([
            "--arrays",
            "--key",
            "arr2:{stem}",
            "--on-error",
            "skip",
            "--json",
        ])
        .args(["--url", &srv.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let first_line = out.stdout.split(|&b| b == b'\n').next().unwrap();
    let report: serde_json::Value = serde_json::from_slice(first_line).unwrap();
    assert_eq!(
        (report["stored"].as_u64(), report["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        report["errors"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("c.npy")
    );
}

#[test]
fn a_parquet_file_written_by_pyarrow_loads() {
    let Ok(python) = std::env::var("REDSTASH_PYTHON") else {
        eprintln!("REDSTASH_PYTHON not set: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("py.parquet");
    let script = format!(
        "import pyarrow as pa, pyarrow.parquet as pq\n\
         t = pa.table({{'id': pa.array(range(1000), pa.int64()),\n\
           'name': [f'n{{i}}' for i in range(1000)],\n\
           'emb': pa.FixedSizeListArray.from_arrays(pa.array([float(i) for i in range(4000)], pa.float32()), 4)}})\n\
         pq.write_table(t, {:?}, row_group_size=300, compression='snappy')\n",
        pq.display().to_string()
    );
    let st = Command::new(python).args(["-c", &script]).status().unwrap();
    assert!(st.success());
    let srv = RedisServer::start().unwrap();
    let mut src = ParquetSource::open(&pq).unwrap();
    assert_eq!(src.row_groups(), 4);
    let mapping = Mapping::new(KeyTemplate::parse("py:{id}").unwrap())
        .with_value(ValueMapping::Raw("name".into()));
    let r = Loader::new(mapping).load(&mut src, &mut con(&srv)).unwrap();
    assert_eq!(r.loaded, 1000);
    let mut rc = srv.client().unwrap().get_connection().unwrap();
    let v: String = rc.get("py:999").unwrap();
    assert_eq!(v, "n999");
    let mut c = con(&srv);
    let store = FeatureStore::new("fs");
    store
        .register_view(&mut c, &View::of::<f32>("py", 4))
        .unwrap();
    let mut src = ParquetSource::open(&pq).unwrap();
    let r = FeatureLoad::new("py", "id", VectorColumns::List("emb".into()))
        .load(
            std::iter::from_fn(move || src.next_batch().transpose()),
            &store,
            &mut c,
        )
        .unwrap();
    assert_eq!(r.written, 1000);
    let back = store
        .read_many::<f32, _, _>(&mut c, "py", &["999"])
        .unwrap();
    assert_eq!(
        back.values.as_slice().unwrap(),
        &[3996.0, 3997.0, 3998.0, 3999.0]
    );
}
