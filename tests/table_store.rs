//! The TableStore suite (feature `arrow`), written once and run on every backend (sync
//! and async redis-rs connections, redstash's direct connections) against real
//! redis-servers.
#![cfg(all(
    feature = "arrow",
    feature = "testkit",
    feature = "tokio",
    feature = "sync"
))]

mod common;

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use common::{Backend, Conn, on_backend, rt, server};
use redstash::arrowgen::GenSpec;
use redstash::codec::arrow::{IpcCompression, decode_stream, encode_stream};
use redstash::store::table::{GENERATION_METADATA, ReadOptions};
use redstash::{Error, Limits, TableStore};
use redstash::{Origin, ValueProblem};

fn dataset(partitions: u32, batches: u32, rows: usize) -> Vec<RecordBatch> {
    GenSpec {
        partitions,
        batches,
        rows,
        seed: 7,
        string_cardinality: 50,
        ..GenSpec::default()
    }
    .iter()
    .collect::<redstash::Result<_>>()
    .unwrap()
}

const COMPRESSIONS: [IpcCompression; 3] = [
    IpcCompression::None,
    IpcCompression::Lz4,
    IpcCompression::Zstd,
];

async fn set(con: &mut Conn, key: &str, value: &[u8]) {
    let _: () = con
        .raw(redis::cmd("SET").arg(key).arg(value))
        .await
        .unwrap();
}

async fn get(con: &mut Conn, key: &str) -> Option<Vec<u8>> {
    con.raw(redis::cmd("GET").arg(key)).await.unwrap()
}

/// An ArrowRedis-style value: one batch in one IPC stream, no redstash metadata.
fn arrowredis_value(b: &RecordBatch, c: IpcCompression) -> Vec<u8> {
    encode_stream(&b.schema(), std::slice::from_ref(b), c).unwrap()
}

backend_tests!(full_schema_round_trips_with_every_compression);
fn full_schema_round_trips_with_every_compression(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let input = dataset(3, 2, 300);
        for c in COMPRESSIONS {
            let store = TableStore::new("ns")
                .with_partition_by("partition")
                .with_compression(c)
                .with_pipeline_bytes(20_000);
            let name = format!("t_{}", c.name());
            let info = call!(
                con,
                store.split / split_async(&name, input.clone().into_iter())
            )
            .unwrap();
            assert_eq!(info.generation, 1, "{backend:?} {c:?}");
            assert_eq!(info.rows, 1800);
            assert_eq!(info.compression, c);
            assert_eq!(info.partitions.len(), 3);
            assert!(
                info.partitions
                    .iter()
                    .all(|p| p.batches == 2 && p.rows == 600)
            );
            assert_eq!(info.schema, input[0].schema());
            // The manifest reads back as written.
            let again = call!(con, store.info / info_async(&name)).unwrap().unwrap();
            assert_eq!(again, info);
            // The ArrowRedis key layout, each value a complete IPC stream.
            let key = format!("ns:{name}:{{part=00002}}:batch=00001");
            assert_eq!(store.batch_key(&name, 2, 1), key);
            let raw = get(&mut con, &key).await.expect("batch key");
            assert_eq!(&raw[..4], &[0xFF; 4]);
            let (_, decoded) = decode_stream(&raw, None, &Limits::default()).unwrap();
            assert_eq!(decoded.len(), 1);
            assert_eq!(decoded[0].columns(), input[5].columns());
            // Whole table, in partition/batch order.
            let t = call!(con, store.read / read_async(&name, &ReadOptions::all()))
                .unwrap()
                .expect("table");
            assert_eq!(t.schema, input[0].schema(), "{backend:?} {c:?}");
            assert_eq!(t.batches, input, "{backend:?} {c:?}");
            assert_eq!(t.partitions, vec![(0, 2), (1, 2), (2, 2)]);
            assert_eq!(t.generation, Some(1));
        }
        let store = TableStore::new("ns");
        let names = call!(con, store.list / list_async()).unwrap();
        assert_eq!(names, vec!["t_lz4", "t_uncompressed", "t_zstd"]);
        let n = call!(con, store.delete / delete_async("t_lz4")).unwrap();
        assert_eq!(n, 7);
        assert!(
            call!(con, store.read / read_async("t_lz4", &ReadOptions::all()))
                .unwrap()
                .is_none()
        );
        assert!(
            call!(con, store.info / info_async("t_lz4"))
                .unwrap()
                .is_none()
        );
        assert_eq!(call!(con, store.list / list_async()).unwrap().len(), 2);
    });
}

backend_tests!(projection_and_partition_subsets);
fn projection_and_partition_subsets(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let input = dataset(3, 2, 100);
        let store = TableStore::new("").with_partition_by("partition");
        call!(
            con,
            store.split / split_async("p", input.clone().into_iter())
        )
        .unwrap();
        let opts = ReadOptions::all()
            .with_partitions([2, 0])
            .with_columns(["str_c", "id64"]);
        let t = call!(con, store.read / read_async("p", &opts))
            .unwrap()
            .unwrap();
        assert_eq!(t.partitions, vec![(2, 2), (0, 2)], "{backend:?}");
        let want: Vec<RecordBatch> = [4, 5, 0, 1]
            .iter()
            .map(|&i| input[i].project(&[8, 0]).unwrap())
            .collect();
        assert_eq!(t.batches, want, "{backend:?}");
        assert_eq!(t.schema.fields().len(), 2);
        // Unknown column or partition: typed errors.
        let e = call!(
            con,
            store.read / read_async("p", &ReadOptions::all().with_columns(["nope"]))
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let e = call!(
            con,
            store.read / read_async("p", &ReadOptions::all().with_partitions([9]))
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    });
}

backend_tests!(round_robin_and_column_runs, sync_and_async);
fn round_robin_and_column_runs(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let input = dataset(1, 5, 10);
        let store = TableStore::new("rr").with_round_robin(2);
        let info = call!(
            con,
            store.split / split_async("t", input.clone().into_iter())
        )
        .unwrap();
        let counts: Vec<(u32, u32)> = info.partitions.iter().map(|p| (p.id, p.batches)).collect();
        assert_eq!(counts, vec![(0, 3), (1, 2)], "{backend:?}");
        let t = call!(con, store.read / read_async("t", &ReadOptions::all()))
            .unwrap()
            .unwrap();
        let order: Vec<RecordBatch> = [0, 2, 4, 1, 3].iter().map(|&i| input[i].clone()).collect();
        assert_eq!(t.batches, order);

        // A batch mixing partition values is cut into runs.
        let mixed = RecordBatch::try_from_iter([
            (
                "k",
                Arc::new(Int32Array::from(vec![1, 1, 0, 0, 0, 1])) as ArrayRef,
            ),
            (
                "v",
                Arc::new(Int64Array::from_iter_values(0..6)) as ArrayRef,
            ),
        ])
        .unwrap();
        let store = TableStore::new("rr").with_partition_by("k");
        let info = call!(
            con,
            store.split / split_async("m", std::iter::once(mixed.clone()))
        )
        .unwrap();
        let counts: Vec<(u32, u32, u64)> = info
            .partitions
            .iter()
            .map(|p| (p.id, p.batches, p.rows))
            .collect();
        assert_eq!(counts, vec![(0, 1, 3), (1, 2, 3)]);
        let t = call!(con, store.read / read_async("m", &ReadOptions::all()))
            .unwrap()
            .unwrap();
        assert_eq!(
            t.batches,
            vec![mixed.slice(2, 3), mixed.slice(0, 2), mixed.slice(5, 1)]
        );
        // A partition column that is absent, or not an integer.
        let store = TableStore::new("rr").with_partition_by("nope");
        let e = call!(
            con,
            store.split / split_async("x", std::iter::once(mixed.clone()))
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let store = TableStore::new("rr").with_partition_by("v");
        assert!(
            call!(
                con,
                store.split / split_async("x", std::iter::once(mixed.clone()))
            )
            .is_ok()
        );
        let strings =
            RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["a"])) as ArrayRef)])
                .unwrap();
        let store = TableStore::new("rr").with_partition_by("s");
        let e = call!(
            con,
            store.split / split_async("y", std::iter::once(strings))
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    });
}

backend_tests!(
    resplit_swaps_generations_and_removes_stale_batches,
    sync_and_async
);
fn resplit_swaps_generations_and_removes_stale_batches(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = TableStore::new("g").with_partition_by("partition");
        let big = dataset(3, 3, 20);
        call!(con, store.split / split_async("t", big.into_iter())).unwrap();
        let small = dataset(2, 1, 20);
        let info = call!(
            con,
            store.split / split_async("t", small.clone().into_iter())
        )
        .unwrap();
        assert_eq!(info.generation, 2, "{backend:?}");
        let t = call!(con, store.read / read_async("t", &ReadOptions::all()))
            .unwrap()
            .unwrap();
        assert_eq!(t.batches, small);
        assert_eq!(t.generation, Some(2));
        // Only the new generation's 2 batches and the manifest remain.
        let n: i64 = con.raw(&redis::cmd("DBSIZE")).await.unwrap();
        assert_eq!(n, 3);
        // A batch of another generation under the manifest: the table changed.
        let key = store.batch_key("t", 1, 0);
        let meta: std::collections::HashMap<String, String> =
            [(GENERATION_METADATA.to_owned(), "3".to_owned())].into();
        let tagged = Arc::new(small[1].schema().as_ref().clone().with_metadata(meta));
        let newer = small[1].clone().with_schema(tagged).unwrap();
        set(
            &mut con,
            &key,
            &arrowredis_value(&newer, IpcCompression::Lz4),
        )
        .await;
        let e = call!(con, store.read / read_async("t", &ReadOptions::all())).unwrap_err();
        match e {
            Error::TableChanged {
                key: k,
                expected,
                found,
                ..
            } => {
                assert_eq!((k, expected, found), (key, 2, Some(3)));
            }
            other => panic!("{other}"),
        }
    });
}

backend_tests!(
    reads_tables_written_in_the_arrowredis_layout,
    sync_and_async
);
fn reads_tables_written_in_the_arrowredis_layout(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let input = dataset(2, 3, 40);
        // As ArrowRedis's split writes them: no manifest, one stream per key.
        for (i, b) in input.iter().enumerate() {
            let key = format!("demo:v1:{{part={:05}}}:batch={:05}", i / 3, i % 3);
            set(&mut con, &key, &arrowredis_value(b, IpcCompression::Zstd)).await;
        }
        let store = TableStore::new("");
        assert!(
            call!(con, store.info / info_async("demo:v1"))
                .unwrap()
                .is_none()
        );
        let t = call!(con, store.read / read_async("demo:v1", &ReadOptions::all()))
            .unwrap()
            .expect("discovered");
        assert_eq!(t.batches, input, "{backend:?}");
        assert_eq!(t.partitions, vec![(0, 3), (1, 3)]);
        assert_eq!(t.generation, None);
        let t = call!(
            con,
            store.read
                / read_async(
                    "demo:v1",
                    &ReadOptions::all()
                        .with_partitions([1])
                        .with_columns(["list_ints"])
                )
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.num_rows(), 120);
        assert_eq!(t.batches[0].column(0), input[3].column(9));
        // A hole in partition 0: reported with the key.
        let _: i64 = con
            .raw(redis::cmd("DEL").arg("demo:v1:{part=00000}:batch=00001"))
            .await
            .unwrap();
        let e = call!(con, store.read / read_async("demo:v1", &ReadOptions::all())).unwrap_err();
        match e {
            Error::MissingBatches { missing, .. } => {
                assert_eq!(missing, vec!["demo:v1:{part=00000}:batch=00001".to_owned()]);
            }
            other => panic!("{other}"),
        }
        // Partition 1 alone is whole.
        assert!(
            call!(
                con,
                store.read / read_async("demo:v1", &ReadOptions::all().with_partitions([1]))
            )
            .is_ok()
        );
        // A batch with another schema.
        let other =
            RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["x"])) as ArrayRef)])
                .unwrap();
        set(
            &mut con,
            "demo:v1:{part=00001}:batch=00002",
            &arrowredis_value(&other, IpcCompression::None),
        )
        .await;
        let e = call!(
            con,
            store.read / read_async("demo:v1", &ReadOptions::all().with_partitions([1]))
        )
        .unwrap_err();
        match e {
            Error::SchemaMismatch { key, .. } => {
                assert_eq!(key, "demo:v1:{part=00001}:batch=00002");
            }
            other => panic!("{other}"),
        }
        // delete finds the keys with SCAN.
        let n = call!(con, store.delete / delete_async("demo:v1")).unwrap();
        assert_eq!(n, 5);
        let n: i64 = con.raw(&redis::cmd("DBSIZE")).await.unwrap();
        assert_eq!(n, 0);
        assert!(
            call!(con, store.read / read_async("demo:v1", &ReadOptions::all()))
                .unwrap()
                .is_none()
        );
    });
}

backend_tests!(bad_values_are_typed_errors);
fn bad_values_are_typed_errors(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let input = dataset(2, 2, 30);
        let store = TableStore::new("bad").with_partition_by("partition");
        call!(
            con,
            store.split / split_async("t", input.clone().into_iter())
        )
        .unwrap();
        let k01 = store.batch_key("t", 0, 1);
        let k10 = store.batch_key("t", 1, 0);
        // A manifest without checksums (as written before they were recorded), so that
        // the values' own checks below are reached (with checksums, every planted value
        // is a `ChecksumMismatch` first: see tests/table_hostile.rs).
        let m = get(&mut con, &store.manifest_key("t")).await.unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&m).unwrap();
        for p in json["partitions"].as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("checksums");
        }
        set(
            &mut con,
            &store.manifest_key("t"),
            &serde_json::to_vec(&json).unwrap(),
        )
        .await;

        // Missing batches, named.
        let _: i64 = con
            .raw(redis::cmd("DEL").arg(&k01).arg(&k10))
            .await
            .unwrap();
        let e = call!(con, store.read / read_async("t", &ReadOptions::all())).unwrap_err();
        match e {
            Error::MissingBatches { missing, .. } => {
                assert_eq!(missing, vec![k01.clone(), k10.clone()], "{backend:?}");
            }
            other => panic!("{other}"),
        }

        // Not IPC at a batch key.
        set(&mut con, &k01, b"hello world").await;
        let e = call!(
            con,
            store.read / read_async("t", &ReadOptions::all().with_partitions([0]))
        )
        .unwrap_err();
        match e {
            Error::InvalidValue {
                origin: Origin::Key(key),
                problem: ValueProblem::UnknownFormat { .. },
            } => assert_eq!(key, k01),
            other => panic!("{other}"),
        }

        // A truncated stream.
        let good = get(&mut con, &store.batch_key("t", 0, 0)).await.unwrap();
        set(&mut con, &k01, &good[..good.len() / 2]).await;
        let e = call!(
            con,
            store.read / read_async("t", &ReadOptions::all().with_partitions([0]))
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidValue { origin: Origin::Key(key), problem: ValueProblem::Corrupt { .. } } if *key == k01),
            "{e}"
        );

        // A batch of the right generation but another schema.
        let other =
            RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["x"])) as ArrayRef)])
                .unwrap();
        let meta: std::collections::HashMap<String, String> =
            [(GENERATION_METADATA.to_owned(), "1".to_owned())].into();
        let tagged = Arc::new(other.schema().as_ref().clone().with_metadata(meta));
        let other = other.with_schema(tagged).unwrap();
        set(
            &mut con,
            &k01,
            &arrowredis_value(&other, IpcCompression::Lz4),
        )
        .await;
        let e = call!(
            con,
            store.read / read_async("t", &ReadOptions::all().with_partitions([0]))
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::SchemaMismatch { key, .. } if *key == k01),
            "{e}"
        );

        // Splitting batches of different schemas.
        let e = call!(
            con,
            store.split / split_async("u", vec![input[0].clone(), other.clone()].into_iter())
        )
        .unwrap_err();
        assert!(matches!(e, Error::SchemaMismatch { .. }), "{e}");
        // Nothing to split.
        let e = call!(con, store.split / split_async("u", std::iter::empty())).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");

        // A corrupt manifest.
        set(&mut con, &store.manifest_key("t"), b"{not json").await;
        let e = call!(con, store.read / read_async("t", &ReadOptions::all())).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidValue {
                    problem: ValueProblem::Corrupt {
                        format: "table manifest",
                        ..
                    },
                    ..
                }
            ),
            "{e}"
        );
        let e = call!(con, store.info / info_async("t")).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidValue {
                    problem: ValueProblem::Corrupt { .. },
                    ..
                }
            ),
            "{e}"
        );
        // A re-split repairs the table.
        let info = call!(
            con,
            store.split / split_async("t", input.clone().into_iter())
        )
        .unwrap();
        assert_eq!(info.generation, 1);
        let t = call!(con, store.read / read_async("t", &ReadOptions::all()))
            .unwrap()
            .unwrap();
        assert_eq!(t.batches, input);
    });
}

#[test]
fn read_parallel_matches_read() {
    let srv = server();
    let client = srv.client().unwrap();
    let input = dataset(5, 3, 200);
    let store = TableStore::new("par")
        .with_partition_by("partition")
        .with_pipeline_bytes(10_000);
    let mut con = client.get_connection().unwrap();
    store
        .split(&mut con, "t", input.clone().into_iter())
        .unwrap();
    let mut cons: Vec<redis::Connection> =
        (0..3).map(|_| client.get_connection().unwrap()).collect();
    for opts in [
        ReadOptions::all(),
        ReadOptions::all()
            .with_partitions([4, 1, 2])
            .with_columns(["ts_ns", "dec_18_4"]),
    ] {
        let want = store.read(&mut con, "t", &opts).unwrap().unwrap();
        let got = store.read_parallel(&mut cons, "t", &opts).unwrap().unwrap();
        assert_eq!(got, want);
    }
    let mut direct: Vec<redstash::direct::DirectConnection> = (0..2)
        .map(|_| redstash::direct::DirectConnection::open(srv.url().as_str()).unwrap())
        .collect();
    let got = store
        .read_parallel(&mut direct, "t", &ReadOptions::all())
        .unwrap()
        .unwrap();
    assert_eq!(got.batches, input);
    // Errors are the same as read's.
    let e = store
        .read_parallel(&mut cons, "t", &ReadOptions::all().with_partitions([1, 1]))
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let _: i64 = redis::cmd("DEL")
        .arg(store.batch_key("t", 3, 2))
        .query(&mut con)
        .unwrap();
    let e = store
        .read_parallel(&mut cons, "t", &ReadOptions::all())
        .unwrap_err();
    assert!(matches!(e, Error::MissingBatches { .. }), "{e}");
    // No manifest: read on the first connection.
    assert!(
        store
            .read_parallel(&mut cons, "none", &ReadOptions::all())
            .unwrap()
            .is_none()
    );
    let empty: &mut [redis::Connection] = &mut [];
    assert!(
        store
            .read_parallel(empty, "t", &ReadOptions::all())
            .is_err()
    );
}

#[test]
fn read_parallel_reads_arrowredis_tables_on_every_connection() {
    let srv = server();
    let client = srv.client().unwrap();
    let mut con = client.get_connection().unwrap();
    let input = dataset(5, 4, 100);
    // As ArrowRedis's split writes them: no manifest, one stream per key.
    for (i, b) in input.iter().enumerate() {
        let key = format!("ar:t:{{part={:05}}}:batch={:05}", i / 4, i % 4);
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(arrowredis_value(b, IpcCompression::Zstd))
            .query(&mut con)
            .unwrap();
    }
    // Small requests: the request size adapts to the values' size.
    let store = TableStore::new("ar").with_pipeline_bytes(20_000);
    let mut cons: Vec<redstash::direct::DirectConnection> = (0..3)
        .map(|_| redstash::direct::DirectConnection::open(srv.url().as_str()).unwrap())
        .collect();
    for opts in [
        ReadOptions::all(),
        ReadOptions::all()
            .with_partitions([3, 0])
            .with_columns(["id64", "str_c"]),
    ] {
        let want = store.read(&mut con, "t", &opts).unwrap().unwrap();
        let got = store.read_parallel(&mut cons, "t", &opts).unwrap().unwrap();
        assert_eq!(got, want);
    }
    let all = store
        .read_parallel(&mut cons, "t", &ReadOptions::all())
        .unwrap()
        .unwrap();
    assert_eq!(all.batches, input);
    assert_eq!(all.generation, None);
    rt().block_on(async {
        let mut acons = Vec::new();
        for _ in 0..3 {
            acons.push(
                redstash::direct::DirectAsyncConnection::open(srv.url().as_str())
                    .await
                    .unwrap(),
            );
        }
        let opts = ReadOptions::all()
            .with_partitions([2, 1])
            .with_columns(["float64_c"]);
        let want = store.read(&mut con, "t", &opts).unwrap().unwrap();
        let got = store
            .read_parallel_async(&mut acons, "t", &opts)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, want);
        let got = store
            .read_parallel_async(&mut acons, "t", &ReadOptions::all())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.batches, input);
    });
    // Partitions of other schemas, read on different connections: caught.
    let other =
        RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["x"])) as ArrayRef)])
            .unwrap();
    for b in 0..4 {
        let _: () = redis::cmd("SET")
            .arg(format!("ar:t:{{part=00004}}:batch={b:05}"))
            .arg(arrowredis_value(&other, IpcCompression::None))
            .query(&mut con)
            .unwrap();
    }
    let e = store
        .read_parallel(&mut cons, "t", &ReadOptions::all())
        .unwrap_err();
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e}");
    // A hole: reported with its key.
    let _: i64 = redis::cmd("DEL")
        .arg("ar:t:{part=00001}:batch=00002")
        .query(&mut con)
        .unwrap();
    let e = store
        .read_parallel(&mut cons, "t", &ReadOptions::all().with_partitions([1, 2]))
        .unwrap_err();
    match e {
        Error::MissingBatches { missing, .. } => {
            assert_eq!(missing, vec!["ar:t:{part=00001}:batch=00002".to_owned()])
        }
        other => panic!("{other}"),
    }
}

#[test]
fn read_parallel_async_matches_read() {
    let srv = server();
    let client = srv.client().unwrap();
    let input = dataset(5, 3, 200);
    let store = TableStore::new("apar")
        .with_partition_by("partition")
        .with_compression(IpcCompression::Lz4)
        .with_pipeline_bytes(10_000);
    let mut con = client.get_connection().unwrap();
    store
        .split(&mut con, "t", input.clone().into_iter())
        .unwrap();
    // A current-thread runtime too: the decoding must not need a second worker.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for runtime in [rt(), current] {
        runtime.block_on(async {
            let mut direct = Vec::new();
            for _ in 0..3 {
                direct.push(
                    redstash::direct::DirectAsyncConnection::open(srv.url().as_str())
                        .await
                        .unwrap(),
                );
            }
            let mut multiplexed = Vec::new();
            for _ in 0..2 {
                multiplexed.push(client.get_multiplexed_async_connection().await.unwrap());
            }
            for opts in [
                ReadOptions::all(),
                ReadOptions::all()
                    .with_partitions([4, 1, 2])
                    .with_columns(["ts_ns", "dec_18_4"]),
            ] {
                let want = store.read(&mut con, "t", &opts).unwrap().unwrap();
                let got = store
                    .read_parallel_async(&mut direct, "t", &opts)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, want);
                let got = store
                    .read_parallel_async(&mut multiplexed, "t", &opts)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, want);
            }
            let all = store
                .read_parallel_async(&mut direct, "t", &ReadOptions::all())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(all.batches, input);
            let e = store
                .read_parallel_async(&mut direct, "t", &ReadOptions::all().with_columns(["nope"]))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
            assert!(
                store
                    .read_parallel_async(&mut direct, "none", &ReadOptions::all())
                    .await
                    .unwrap()
                    .is_none()
            );
            let empty: &mut [redstash::direct::DirectAsyncConnection] = &mut [];
            assert!(
                store
                    .read_parallel_async(empty, "t", &ReadOptions::all())
                    .await
                    .is_err()
            );
        });
    }
    // A missing batch and a value that is not IPC: typed errors naming the keys.
    let _: i64 = redis::cmd("DEL")
        .arg(store.batch_key("t", 3, 2))
        .query(&mut con)
        .unwrap();
    let bad = store.batch_key("t", 0, 1);
    let _: () = redis::cmd("SET")
        .arg(&bad)
        .arg("not arrow")
        .query(&mut con)
        .unwrap();
    rt().block_on(async {
        let mut direct = Vec::new();
        for _ in 0..2 {
            direct.push(
                redstash::direct::DirectAsyncConnection::open(srv.url().as_str())
                    .await
                    .unwrap(),
            );
        }
        let e = store
            .read_parallel_async(&mut direct, "t", &ReadOptions::all().with_partitions([3]))
            .await
            .unwrap_err();
        match e {
            Error::MissingBatches { missing, .. } => {
                assert_eq!(missing, vec![store.batch_key("t", 3, 2)])
            }
            other => panic!("{other}"),
        }
        let e = store
            .read_parallel_async(&mut direct, "t", &ReadOptions::all().with_partitions([0]))
            .await
            .unwrap_err();
        match e {
            Error::InvalidValue {
                origin: Origin::Key(key),
                problem: ValueProblem::ChecksumMismatch { .. },
            } => assert_eq!(key, bad),
            other => panic!("{other}"),
        }
    });
}

/// Batch `b` of partition `p` of the interop table (the formula of
/// tests/python/arrow_interop.py: 3 partitions x 2 batches x 50 rows).
fn interop_batch(p: u32, b: u32) -> RecordBatch {
    use arrow_array::builder::{Int32Builder, ListBuilder};
    use arrow_array::types::Int32Type;
    use arrow_array::{
        BooleanArray, Decimal128Array, DictionaryArray, Float32Array, Float64Array,
        TimestampNanosecondArray,
    };
    const ROWS: i64 = 50;
    let g0 = (p as i64 * 2 + b as i64) * ROWS;
    let gs: Vec<i64> = (g0..g0 + ROWS).collect();
    let mut lists = ListBuilder::new(Int32Builder::new());
    for g in &gs {
        for k in 0..g % 4 {
            lists.values().append_value((g % 1000 + k) as i32);
        }
        lists.append(true);
    }
    let dict = DictionaryArray::<Int32Type>::try_new(
        Int32Array::from_iter_values(gs.iter().map(|g| (g % 4) as i32)),
        Arc::new(StringArray::from(vec!["alpha", "beta", "gamma", "delta"])),
    )
    .unwrap();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(gs.clone())),
        Arc::new(Int32Array::from(vec![p as i32; ROWS as usize])),
        Arc::new(Int32Array::from_iter_values(
            gs.iter().map(|g| ((g * 37 + 11) % 97 - 40) as i32),
        )),
        Arc::new(Float64Array::from_iter_values(
            gs.iter().map(|&g| g as f64 * 0.25),
        )),
        Arc::new(Float32Array::from_iter_values(
            gs.iter().map(|&g| g as f32 * 0.5),
        )),
        Arc::new(BooleanArray::from_iter(gs.iter().map(|g| Some(g % 3 == 0)))),
        Arc::new(TimestampNanosecondArray::from_iter_values(
            gs.iter().map(|g| 1_700_000_000_000_000_000 + g * 1000),
        )),
        Arc::new(
            Decimal128Array::from_iter_values(gs.iter().map(|&g| (g * 12345 - 500000) as i128))
                .with_precision_and_scale(18, 4)
                .unwrap(),
        ),
        Arc::new(dict),
        Arc::new(lists.finish()),
    ];
    RecordBatch::try_new(redstash::arrowgen::schema(true), cols).unwrap()
}

#[test]
fn pyarrow_reads_what_redstash_split() {
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let input: Vec<RecordBatch> = (0..3)
        .flat_map(|p| (0..2).map(move |b| interop_batch(p, b)))
        .collect();
    let store = TableStore::new("rs").with_partition_by("partition");
    store.split(&mut con, "t", input.into_iter()).unwrap();
    common::run_py("arrow_interop.py", "check", &srv.url());
}

/// The same table split from an IPC file (batches re-framed, not re-encoded).
#[test]
fn pyarrow_reads_what_redstash_split_from_an_ipc_file() {
    use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interop.arrow");
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
        .unwrap();
    let mut w = FileWriter::try_new_with_options(
        std::fs::File::create(&path).unwrap(),
        &redstash::arrowgen::schema(true),
        options,
    )
    .unwrap();
    for p in 0..3 {
        for b in 0..2 {
            w.write(&interop_batch(p, b)).unwrap();
        }
    }
    w.finish().unwrap();
    let input = redstash::codec::arrow_file::IpcInput::open(&path, Limits::default()).unwrap();
    let store = TableStore::new("rs").with_partition_by("partition");
    store.split_ipc(&mut con, "t", input).unwrap();
    common::run_py("arrow_interop.py", "check", &srv.url());
}

#[test]
fn read_ipc_copies_stored_batches_into_files_pyarrow_reads() {
    use redstash::codec::arrow_file::{IpcFormat, IpcInput};
    let srv = server();
    let client = srv.client().unwrap();
    let mut con = client.get_connection().unwrap();
    let store = TableStore::new("ri")
        .with_partition_by("partition")
        .with_compression(IpcCompression::Zstd)
        .with_pipeline_bytes(4_000);
    let input: Vec<RecordBatch> = (0..3)
        .flat_map(|p| (0..2).map(move |b| interop_batch(p, b)))
        .collect();
    store
        .split(&mut con, "t", input.clone().into_iter())
        .unwrap();
    let mut cons: Vec<redstash::direct::DirectConnection> = (0..3)
        .map(|_| redstash::direct::DirectConnection::open(srv.url().as_str()).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let read_back = |path: &std::path::Path| -> Vec<RecordBatch> {
        IpcInput::open(path, Limits::default())
            .unwrap()
            .map(|b| b.unwrap().decode(None, &Limits::default()).unwrap())
            .collect()
    };
    for (format, name) in [
        (IpcFormat::File, "t.arrow"),
        (IpcFormat::Stream, "t.arrows"),
    ] {
        let path = dir.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        let (_, w) = store
            .read_ipc(
                &mut cons,
                "t",
                &ReadOptions::all(),
                file,
                format,
                IpcCompression::Zstd,
            )
            .unwrap()
            .unwrap();
        assert!(w.copied, "same compression, all columns: copied");
        assert_eq!(w.partitions, vec![(0, 2), (1, 2), (2, 2)]);
        assert_eq!(w.rows, 300);
        assert_eq!(w.written_bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(read_back(&path), input);
        common::run_py("arrow_interop.py", "file", path.to_str().unwrap());
    }
    // Another compression or a projection: decoded and encoded again, same rows.
    let path = dir.path().join("lz4.arrow");
    let (_, w) = store
        .read_ipc(
            &mut cons,
            "t",
            &ReadOptions::all().with_partitions([2, 0]),
            std::fs::File::create(&path).unwrap(),
            IpcFormat::File,
            IpcCompression::Lz4,
        )
        .unwrap()
        .unwrap();
    assert!(!w.copied);
    assert_eq!(w.partitions, vec![(2, 2), (0, 2)]);
    let want = store
        .read(&mut con, "t", &ReadOptions::all().with_partitions([2, 0]))
        .unwrap()
        .unwrap();
    assert_eq!(read_back(&path), want.batches);
    let (buf, w) = store
        .read_ipc(
            &mut cons,
            "t",
            &ReadOptions::all().with_columns(["id64"]),
            Vec::new(),
            IpcFormat::Stream,
            IpcCompression::Zstd,
        )
        .unwrap()
        .unwrap();
    assert!(!w.copied);
    assert_eq!(w.written_bytes as usize, buf.len());
    assert!(
        store
            .read_ipc(
                &mut cons,
                "none",
                &ReadOptions::all(),
                Vec::new(),
                IpcFormat::File,
                IpcCompression::Zstd
            )
            .unwrap()
            .is_none()
    );
    // Missing batches are all reported; a value that is not IPC names its key.
    for (p, b) in [(0, 1), (2, 0)] {
        let _: i64 = redis::cmd("DEL")
            .arg(store.batch_key("t", p, b))
            .query(&mut con)
            .unwrap();
    }
    let e = store
        .read_ipc(
            &mut cons,
            "t",
            &ReadOptions::all(),
            Vec::new(),
            IpcFormat::File,
            IpcCompression::Zstd,
        )
        .unwrap_err();
    match e {
        Error::MissingBatches { missing, .. } => assert_eq!(
            missing,
            vec![store.batch_key("t", 0, 1), store.batch_key("t", 2, 0)]
        ),
        other => panic!("{other}"),
    }
    let bad = store.batch_key("t", 1, 1);
    let _: () = redis::cmd("SET")
        .arg(&bad)
        .arg("junk")
        .query(&mut con)
        .unwrap();
    let e = store
        .read_ipc(
            &mut cons,
            "t",
            &ReadOptions::all().with_partitions([1]),
            Vec::new(),
            IpcFormat::File,
            IpcCompression::Zstd,
        )
        .unwrap_err();
    match e {
        Error::InvalidValue {
            origin: Origin::Key(key),
            problem: ValueProblem::ChecksumMismatch { .. },
        } => assert_eq!(key, bad),
        other => panic!("{other}"),
    }
}

#[test]
fn read_each_delivers_what_read_returns_in_order() {
    let srv = server();
    let client = srv.client().unwrap();
    let input = dataset(5, 3, 200);
    let store = TableStore::new("each")
        .with_partition_by("partition")
        .with_pipeline_bytes(5_000);
    let mut con = client.get_connection().unwrap();
    store
        .split(&mut con, "t", input.clone().into_iter())
        .unwrap();
    let mut cons: Vec<redstash::direct::DirectConnection> = (0..3)
        .map(|_| redstash::direct::DirectConnection::open(srv.url().as_str()).unwrap())
        .collect();
    for opts in [
        ReadOptions::all(),
        ReadOptions::all()
            .with_partitions([4, 1, 2])
            .with_columns(["ts_ns", "dec_18_4", "str_c"]),
    ] {
        let want = store.read(&mut con, "t", &opts).unwrap().unwrap();
        let mut got = Vec::new();
        let mut parts = Vec::new();
        let r = store
            .read_each(&mut cons, "t", &opts, |p, b| {
                parts.push(p);
                got.push(b);
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(got, want.batches);
        assert_eq!(r.partitions, want.partitions);
        assert_eq!(r.schema, want.schema);
        assert_eq!(r.rows, want.num_rows() as u64);
        let expected: Vec<u32> = want
            .partitions
            .iter()
            .flat_map(|&(p, n)| std::iter::repeat_n(p, n))
            .collect();
        assert_eq!(parts, expected);
    }
    // The callback's error stops the read and is returned.
    let mut calls = 0;
    let e = store
        .read_each(&mut cons, "t", &ReadOptions::all(), |_, _| {
            calls += 1;
            if calls == 4 {
                Err(Error::InvalidArgument("enough".into()))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(ref m) if m == "enough"),
        "{e}"
    );
    assert_eq!(calls, 4);
    assert!(
        store
            .read_each(&mut cons, "none", &ReadOptions::all(), |_, _| Ok(()))
            .unwrap()
            .is_none()
    );
    for (p, b) in [(1, 0), (3, 2)] {
        let _: i64 = redis::cmd("DEL")
            .arg(store.batch_key("t", p, b))
            .query(&mut con)
            .unwrap();
    }
    let e = store
        .read_each(&mut cons, "t", &ReadOptions::all(), |_, _| Ok(()))
        .unwrap_err();
    match e {
        Error::MissingBatches { missing, .. } => assert_eq!(
            missing,
            vec![store.batch_key("t", 1, 0), store.batch_key("t", 3, 2)]
        ),
        other => panic!("{other}"),
    }
}

#[test]
fn redstash_reads_what_pyarrow_wrote_in_the_arrowredis_layout() {
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    common::run_py("arrow_interop.py", "write", &srv.url());
    let store = TableStore::new("py");
    let t = store
        .read(&mut con, "demo", &ReadOptions::all())
        .unwrap()
        .expect("table");
    assert_eq!(t.partitions, vec![(0, 2), (1, 2), (2, 2)]);
    let want: Vec<RecordBatch> = (0..3)
        .flat_map(|p| (0..2).map(move |b| interop_batch(p, b)))
        .collect();
    assert_eq!(t.batches, want);
}

#[test]
fn split_parallel_matches_split() {
    let srv = server();
    let client = srv.client().unwrap();
    let input = dataset(4, 5, 150);
    let store = TableStore::new("sp")
        .with_partition_by("partition")
        .with_compression(IpcCompression::Lz4)
        .with_pipeline_bytes(30_000);
    let mut con = client.get_connection().unwrap();
    let mut cons: Vec<redis::Connection> =
        (0..3).map(|_| client.get_connection().unwrap()).collect();
    let seq = store
        .split(&mut con, "seq", input.clone().into_iter())
        .unwrap();
    let par = store
        .split_parallel(&mut cons, "par", input.clone().into_iter())
        .unwrap();
    assert_eq!(par.partitions, seq.partitions);
    assert_eq!(
        (par.rows, par.bytes, par.generation),
        (seq.rows, seq.bytes, 1)
    );
    assert_eq!(store.info(&mut con, "par").unwrap().unwrap(), par);
    let t = store
        .read_parallel(&mut cons, "par", &ReadOptions::all())
        .unwrap()
        .unwrap();
    assert_eq!(t.batches, input);
    // Manifest bytes match what is stored.
    let mut stored = 0u64;
    for p in &par.partitions {
        for b in 0..p.batches {
            let n: u64 = redis::cmd("STRLEN")
                .arg(store.batch_key("par", p.id, b))
                .query(&mut con)
                .unwrap();
            stored += n;
        }
    }
    assert_eq!(stored, par.bytes);
    // A re-split in parallel is generation 2.
    let again = store
        .split_parallel(&mut cons, "par", input[..4].iter().cloned())
        .unwrap();
    assert_eq!(again.generation, 2);
    assert_eq!(
        store
            .read(&mut con, "par", &ReadOptions::all())
            .unwrap()
            .unwrap()
            .batches,
        input[..4].to_vec()
    );
    // A bad batch stops the split before the manifest.
    let other = RecordBatch::try_from_iter([(
        "partition",
        Arc::new(Int32Array::from(vec![0])) as ArrayRef,
    )])
    .unwrap();
    let mut bad = input.clone();
    bad.insert(7, other);
    let e = store
        .split_parallel(&mut cons, "bad", bad.into_iter())
        .unwrap_err();
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e}");
    // The batches stored before are not taken for a table without manifest.
    let e = store.info(&mut con, "bad").unwrap_err();
    assert!(matches!(e, Error::IncompleteTable { .. }), "{e}");
}

/// `split_parallel`, `split_ipc_parallel` and `read_parallel` over several cluster
/// connections: the partitions land on every primary, reads (with and without
/// manifest), `list` and `delete` see all of them.
#[cfg(feature = "cluster")]
#[test]
fn parallel_split_and_read_on_a_cluster() {
    use redstash::cluster::{ClusterConnection, key_slot};
    use std::collections::BTreeSet;

    let c = common::cluster();
    let mut cons: Vec<ClusterConnection> = (0..3)
        .map(|_| ClusterConnection::open(c.nodes()).unwrap())
        .collect();
    let input = dataset(8, 3, 200);
    let store = TableStore::new("cl")
        .with_partition_by("partition")
        .with_pipeline_bytes(20_000);
    let info = store
        .split_parallel(&mut cons, "t", input.clone().into_iter())
        .unwrap();
    assert_eq!(info.partitions.len(), 8);
    let owners: BTreeSet<String> = (0..8)
        .filter_map(|p| {
            let k = store.batch_key("t", p, 0);
            cons[0]
                .slot_owner(key_slot(k.as_bytes()))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(owners.len(), 3, "partitions on every primary");
    let got = store
        .read_parallel(&mut cons, "t", &ReadOptions::all())
        .unwrap()
        .unwrap();
    assert_eq!(got.batches, input);
    let some = ReadOptions::all()
        .with_partitions([7, 0, 3])
        .with_columns(["id64"]);
    let want = store.read(&mut cons[0], "t", &some).unwrap().unwrap();
    assert_eq!(
        store.read_parallel(&mut cons, "t", &some).unwrap().unwrap(),
        want
    );
    assert_eq!(want.num_rows(), 3 * 3 * 200);

    // From an IPC file, into another table.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.arrow");
    GenSpec {
        partitions: 4,
        batches: 2,
        rows: 100,
        seed: 3,
        string_cardinality: 10,
        ..GenSpec::default()
    }
    .write_ipc(
        std::fs::File::create(&path).unwrap(),
        redstash::codec::arrow_file::IpcFormat::File,
        IpcCompression::Lz4,
        2,
        |_, _| {},
    )
    .unwrap();
    let ipc = redstash::codec::arrow_file::IpcInput::open(&path, Limits::default()).unwrap();
    let info2 = store.split_ipc_parallel(&mut cons, "u", ipc).unwrap();
    assert_eq!(info2.rows, 4 * 2 * 100);
    assert_eq!(
        store.list(&mut cons[1]).unwrap(),
        vec!["t".to_owned(), "u".to_owned()]
    );

    // Without the manifest, the batches are found with SCAN on every primary.
    let _: i64 = redstash::exec::run(
        &mut cons[2],
        redstash::exec::Step::then(
            redstash::exec::Request::single(
                redis::cmd("DEL").arg(store.manifest_key("t")).clone(),
                None,
            ),
            |_| Ok(1),
        ),
    )
    .unwrap();
    let scanned = store
        .read(&mut cons[2], "t", &ReadOptions::all())
        .unwrap()
        .unwrap();
    assert_eq!(scanned.num_rows(), 8 * 3 * 200);
    // Delete finds every batch key on every primary.
    assert_eq!(store.delete(&mut cons[0], "t").unwrap(), 8 * 3);
    assert!(store.delete(&mut cons[0], "u").unwrap() > 0);
    let mut raw = 0;
    for url in c.nodes() {
        let mut n = redis::Client::open(url).unwrap().get_connection().unwrap();
        raw += redis::cmd("DBSIZE").query::<i64>(&mut n).unwrap();
    }
    assert_eq!(raw, 0, "nothing left on any primary");
}
