//! The FeatureStore suite, written once and run on every backend (sync and async
//! redis-rs connections, redstash's direct connections) against real redis-servers.
#![cfg(all(feature = "testkit", feature = "tokio", feature = "ndarray"))]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use ndarray::{Array1, Array2};
use redstash::dtype::ALL_DTYPES;
use redstash::testkit::RedisServer;
use redstash::{DType, Error, FeatureStore, Layout, Order, RawArray, RedisErrorKind, View};
use redstash::{Origin, ValueProblem};

/// `read_many` with the element type given (the `call!` macro takes no turbofish).
macro_rules! read_many {
    ($con:expr, $store:ident, $t:ty, $($arg:expr),*) => {{
        let r: redstash::Result<redstash::Rows<$t>> =
            call!($con, $store.read_many / read_many_async($($arg),*));
        r
    }};
}

/// `read` with the element type given.
macro_rules! read_one {
    ($con:expr, $store:ident, $t:ty, $($arg:expr),*) => {{
        let r: redstash::Result<Option<redstash::store::feature::Feature<$t>>> =
            call!($con, $store.read / read_async($($arg),*));
        r
    }};
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("e{i}")).collect()
}

/// Row `i` of a (n, dim) sample of `dtype`, as its own (dim,) array.
fn row(a: &RawArray, i: usize) -> RawArray {
    let dim = a.shape()[1];
    let size = a.dtype().size();
    let bytes = a.data().slice(i * dim * size..(i + 1) * dim * size);
    RawArray::new(a.dtype(), vec![dim], Order::C, bytes).unwrap()
}

backend_tests!(every_dtype_round_trips_in_both_layouts);
fn every_dtype_round_trips_in_both_layouts(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        for layout in [Layout::Native, Layout::Hash] {
            let store = FeatureStore::new(format!("{layout:?}")).with_chunk_entities(4);
            for dtype in ALL_DTYPES {
                let view = View::new(dtype.name(), dtype, 5).with_layout(layout);
                call!(con, store.register_view / register_view_async(&view)).unwrap();
                let values = sample(dtype, &[10, 5], Order::C);
                let n = call!(
                    con,
                    store.write_many / write_many_async(dtype.name(), &ids(10), &values)
                )
                .unwrap();
                assert_eq!(n, 10);
                let mut ask = ids(10);
                ask.insert(3, "absent".into());
                let rows = call!(
                    con,
                    store.read_views / read_views_async(&ask, &[dtype.name()])
                )
                .unwrap()
                .pop()
                .unwrap();
                assert_eq!(rows.view, dtype.name());
                assert_eq!(rows.values.shape(), &[11, 5]);
                let mut want = rows.present.clone();
                want.iter_mut().for_each(|p| *p = true);
                want[3] = false;
                assert_eq!(rows.present, want, "{backend:?} {layout:?} {dtype}");
                for i in 0..10 {
                    let j = if i < 3 { i } else { i + 1 };
                    assert_eq!(
                        row(&rows.values, j),
                        row(&values, i),
                        "{backend:?} {layout:?} {dtype} row {i}"
                    );
                    assert!(rows.written_at[j].is_some());
                }
                assert!(
                    row(&rows.values, 3).data().iter().all(|&b| b == 0),
                    "missing row is zero"
                );
                // Single writes and reads, typed.
                let one = row(&values, 7);
                call!(con, store.write / write_async(dtype.name(), "single", &one)).unwrap();
                let back = call!(
                    con,
                    store.read_views / read_views_async(&["single"], &[dtype.name()])
                )
                .unwrap()
                .pop()
                .unwrap();
                assert_eq!(row(&back.values, 0), one);
            }
            // Typed reads.
            let v = sample(DType::F32, &[10, 5], Order::C);
            let typed: Array2<f32> = v.to_ndarray().unwrap();
            let rows = read_many!(con, store, f32, "float32", &ids(10)).unwrap();
            assert_eq!(rows.values, typed, "{backend:?} {layout:?}");
            assert_eq!(rows.count_present(), 10);
            let f = read_one!(con, store, f32, "float32", "e2")
                .unwrap()
                .unwrap();
            assert_eq!(f.values, typed.row(2));
            let age = SystemTime::now().duration_since(f.written_at).unwrap();
            assert!(age < Duration::from_secs(30));
            assert!(
                read_one!(con, store, f32, "float32", "nope")
                    .unwrap()
                    .is_none()
            );
            // Several views at once.
            let both = call!(
                con,
                store.read_views / read_views_async(&ids(10), &["float32", "int64"])
            )
            .unwrap();
            assert_eq!(both.len(), 2);
            assert_eq!(both[1].values, sample(DType::I64, &[10, 5], Order::C));
            assert!(call!(con, store.delete / delete_async("float32", "e2")).unwrap());
            let rows = read_many!(con, store, f32, "float32", &ids(10)).unwrap();
            assert!(!rows.present[2]);
            assert_eq!(rows.values.row(2).sum(), 0.0);
        }
        // The native layout: timestamp + raw little-endian bytes, nothing else.
        let raw: Vec<u8> = con
            .raw(redis::cmd("GET").arg("Native:float64:e1"))
            .await
            .unwrap();
        assert_eq!(raw.len(), 8 + 5 * 8, "{backend:?}");
        let hash: Vec<String> = con
            .raw(
                redis::cmd("HMGET")
                    .arg("Hash:float64:e1")
                    .arg("dtype")
                    .arg("shape"),
            )
            .await
            .unwrap();
        assert_eq!(hash, vec!["float64".to_owned(), "[5]".to_owned()]);
    });
}

backend_tests!(ttl_expiry_and_max_age_mark_rows_missing);
fn ttl_expiry_and_max_age_mark_rows_missing(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        for layout in [Layout::Native, Layout::Hash] {
            let prefix = format!("ttl{layout:?}");
            let store = FeatureStore::new(&prefix);
            let view = View::of::<f32>("v", 4)
                .with_ttl(Duration::from_millis(300))
                .with_layout(layout);
            call!(con, store.register_view / register_view_async(&view)).unwrap();
            let x = Array2::<f32>::ones((3, 4));
            call!(con, store.write_many / write_many_async("v", &ids(3), &x)).unwrap();
            let pttl: i64 = con
                .raw(redis::cmd("PTTL").arg(format!("{prefix}:v:e1")))
                .await
                .unwrap();
            assert!(
                pttl > 0 && pttl <= 300,
                "{backend:?} {layout:?} pttl {pttl}"
            );
            let rows = read_many!(con, store, f32, "v", &ids(3)).unwrap();
            assert_eq!(rows.present, vec![true; 3]);
            tokio::time::sleep(Duration::from_millis(450)).await;
            let rows = read_many!(con, store, f32, "v", &ids(3)).unwrap();
            assert_eq!(
                rows.present,
                vec![false; 3],
                "{backend:?} {layout:?}: expired"
            );
            assert_eq!(rows.values, Array2::<f32>::zeros((3, 4)));

            // max_age: stale vectors count as missing, fresh ones do not.
            let forever = View::of::<f32>("w", 4).with_layout(layout);
            call!(con, store.register_view / register_view_async(&forever)).unwrap();
            call!(
                con,
                store.write_many / write_many_async("w", &ids(2), &Array2::<f32>::ones((2, 4)))
            )
            .unwrap();
            let strict = store.clone().with_max_age(Duration::from_millis(200));
            let rows = read_many!(con, strict, f32, "w", &ids(2)).unwrap();
            assert_eq!(rows.present, vec![true, true]);
            tokio::time::sleep(Duration::from_millis(300)).await;
            call!(
                con,
                store.write / write_async("w", "e1", &Array1::<f32>::ones(4))
            )
            .unwrap();
            let rows = read_many!(con, strict, f32, "w", &ids(2)).unwrap();
            assert_eq!(
                rows.present,
                vec![false, true],
                "{backend:?} {layout:?}: e0 is stale"
            );
            assert!(rows.written_at[0].is_none());
            let rows = read_many!(con, store, f32, "w", &ids(2)).unwrap();
            assert_eq!(
                rows.present,
                vec![true, true],
                "without max_age both are there"
            );
            assert!(rows.written_at[0] < rows.written_at[1]);
        }
    });
}

backend_tests!(registry_is_shared_and_checked);
fn registry_is_shared_and_checked(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = FeatureStore::new("reg");
        let v = View::of::<f32>("emb", 8).with_ttl(Duration::from_secs(60));
        call!(con, store.register_view / register_view_async(&v)).unwrap();
        call!(con, store.register_view / register_view_async(&v)).unwrap();
        let other = View::of::<f32>("emb", 16);
        let e = call!(con, store.register_view / register_view_async(&other)).unwrap_err();
        assert!(
            matches!(&e, Error::ViewConflict { view, .. } if view == "emb"),
            "{backend:?} {e}"
        );
        let e = call!(
            con,
            store.register_view
                / register_view_async(&View::of::<f64>("emb", 8).with_ttl(Duration::from_secs(60)))
        )
        .unwrap_err();
        assert!(matches!(e, Error::ViewConflict { .. }));
        assert_eq!(
            store.view("emb"),
            Some(v.clone()),
            "a conflict changes nothing"
        );
        // A reopened store finds the view in the registry.
        let reopened = FeatureStore::new("reg");
        assert!(reopened.view("emb").is_none());
        call!(
            con,
            reopened.write / write_async("emb", "a", &Array1::<f32>::ones(8))
        )
        .unwrap();
        assert_eq!(reopened.view("emb"), Some(v.clone()));
        let pttl: i64 = con.raw(redis::cmd("PTTL").arg("reg:emb:a")).await.unwrap();
        assert!(pttl > 50_000, "the registered TTL is used");
        // Explicit replacement.
        call!(con, store.replace_view / replace_view_async(&other)).unwrap();
        let third = FeatureStore::new("reg");
        let all = call!(con, third.load_views / load_views_async()).unwrap();
        assert_eq!(all, vec![other.clone()]);
        assert!(matches!(
            call!(
                con,
                third.write / write_async("emb", "a", &Array1::<f32>::ones(8))
            ),
            Err(Error::ShapeMismatch { .. })
        ));
        // Unknown views, for reads and writes.
        let e = read_many!(con, third, f32, "nope", &["a"]).unwrap_err();
        assert!(
            matches!(&e, Error::UnknownView(v) if v == "nope"),
            "{backend:?} {e}"
        );
        let e = call!(
            con,
            third.write / write_async("nope", "a", &Array1::<f32>::ones(8))
        )
        .unwrap_err();
        assert!(matches!(e, Error::UnknownView(_)));
        assert!(matches!(
            call!(
                con,
                store.register_view / register_view_async(&View::of::<f32>("zero", 0))
            ),
            Err(Error::InvalidArgument(_))
        ));
    });
}

backend_tests!(planted_registry_entries_with_huge_dims_are_typed_errors);
fn planted_registry_entries_with_huge_dims_are_typed_errors(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let reg = FeatureStore::new("hugedim").registry_key();
        // 2^32 f32 elements (16 GiB a vector), u64::MAX (the byte count overflows), zero.
        for (name, dim) in [
            ("d32", (1u64 << 32).to_string()),
            ("dmax", u64::MAX.to_string()),
        ] {
            let json = format!(r#"{{"dtype":"<f4","dim":{dim}}}"#);
            let _: () = con
                .raw(redis::cmd("HSET").arg(&reg).arg(name).arg(&json))
                .await
                .unwrap();
            let store = FeatureStore::new("hugedim");
            let started = std::time::Instant::now();
            let e = read_many!(con, store, f32, name, &["a", "b", "c", "d"]).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidValue {
                        problem: ValueProblem::TooLarge { .. },
                        ..
                    }
                ),
                "{backend:?} {name}: {e}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{backend:?} {name}"
            );
            let e = call!(con, store.load_views / load_views_async()).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidValue {
                        problem: ValueProblem::TooLarge { .. },
                        ..
                    }
                ),
                "{backend:?} {name}: {e}"
            );
            let _: () = con
                .raw(redis::cmd("HDEL").arg(&reg).arg(name))
                .await
                .unwrap();
        }
        let _: () = con
            .raw(
                redis::cmd("HSET")
                    .arg(&reg)
                    .arg("d0")
                    .arg(r#"{"dtype":"<f4","dim":0}"#),
            )
            .await
            .unwrap();
        let store = FeatureStore::new("hugedim");
        let e = read_many!(con, store, f32, "d0", &["a"]).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::InvalidValue {
                    origin: Origin::View(view),
                    problem: ValueProblem::Corrupt { .. },
                } if view == "d0"
            ),
            "{backend:?}: {e}"
        );
        let _: () = con
            .raw(redis::cmd("HDEL").arg(&reg).arg("d0"))
            .await
            .unwrap();
        // 2^27 f32 elements (512 MiB a vector) for four absent ids: 2 GiB of rows, over
        // a 1 GiB budget, refused before anything is sent or allocated.
        let json = format!(r#"{{"dtype":"<f4","dim":{}}}"#, 1u64 << 27);
        let _: () = con
            .raw(redis::cmd("HSET").arg(&reg).arg("d27").arg(&json))
            .await
            .unwrap();
        let store = FeatureStore::new("hugedim").with_limits(redstash::codec::Limits {
            max_value_len: 1 << 30,
            ..Default::default()
        });
        let e = read_many!(con, store, f32, "d27", &["a", "b", "c", "d"]).unwrap_err();
        assert!(
            matches!(e, Error::InvalidValue { problem: ValueProblem::TooLarge { declared, cap }, .. } if declared == 2 << 30 && cap == 1 << 30),
            "{backend:?}: {e}"
        );
        // Registering a view whose vector exceeds the limits is refused too.
        let e = call!(
            con,
            store.register_view / register_view_async(&View::of::<f32>("big", 1 << 29))
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidValue {
                    problem: ValueProblem::TooLarge { .. },
                    ..
                }
            ),
            "{backend:?}: {e}"
        );
        let _: () = con.raw(redis::cmd("DEL").arg(&reg)).await.unwrap();
    });
}

backend_tests!(bad_input_and_bad_values_are_typed_errors);
fn bad_input_and_bad_values_are_typed_errors(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = FeatureStore::new("bad");
        let native = View::of::<f32>("n", 4);
        let recipe = View::of::<f32>("r", 4).with_layout(Layout::Hash);
        for v in [&native, &recipe] {
            call!(con, store.register_view / register_view_async(v)).unwrap();
        }
        // Wrong dim / dtype / row count: rejected before anything is sent.
        let e = call!(
            con,
            store.write / write_async("n", "a", &Array1::<f32>::ones(5))
        )
        .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{backend:?} {e}");
        let e = call!(
            con,
            store.write / write_async("n", "a", &Array1::<f64>::ones(4))
        )
        .unwrap_err();
        // A write: the view's dtype is expected, the given array's is found.
        assert!(
            matches!(
                &e,
                Error::DTypeMismatch {
                    origin: Origin::View(v),
                    expected: DType::F32,
                    found: DType::F64,
                } if v == "n"
            ),
            "{backend:?} {e}"
        );
        let e = call!(
            con,
            store.write_many / write_many_async("n", &ids(3), &Array2::<f32>::ones((2, 4)))
        )
        .unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{backend:?} {e}");
        let e = read_many!(con, store, f64, "n", &ids(2)).unwrap_err();
        // A read, as `ArrayStore::get_as`: the dtype asked for is expected, the stored
        // (the view's) is found.
        assert!(
            matches!(
                &e,
                Error::DTypeMismatch {
                    origin: Origin::View(v),
                    expected: DType::F64,
                    found: DType::F32,
                } if v == "n"
            ),
            "{backend:?} {e}"
        );
        let keys: i64 = con.raw(&redis::cmd("DBSIZE")).await.unwrap();
        assert_eq!(keys, 1, "only the registry exists");
        // A native value of the wrong length.
        let _: () = con
            .raw(redis::cmd("SET").arg("bad:n:short").arg(vec![0u8; 12]))
            .await
            .unwrap();
        let e = read_many!(con, store, f32, "n", &["short"]).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidValue { origin: Origin::Key(key), problem: ValueProblem::Corrupt { .. } } if key == "bad:n:short"),
            "{backend:?} {e}"
        );
        // Recipe hashes with a corrupted field.
        for (field, value) in [
            ("dtype", "float99"),
            ("shape", "not json"),
            ("updated_at", "yesterday"),
            ("data", "xx"),
        ] {
            let mut c = redis::cmd("HSET");
            c.arg("bad:r:c")
                .arg("data")
                .arg(vec![0u8; 16])
                .arg("dtype")
                .arg("float32")
                .arg("shape")
                .arg("[4]")
                .arg("updated_at")
                .arg("1700000000.5")
                .arg(field)
                .arg(value);
            let _: i64 = con.raw(&c).await.unwrap();
            let e = read_many!(con, store, f32, "r", &["c"]).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidValue { origin: Origin::Key(key), problem: ValueProblem::Corrupt { .. } } if key == "bad:r:c"),
                "{backend:?} {field}: {e}"
            );
        }
        let mut c = redis::cmd("HSET");
        c.arg("bad:r:c")
            .arg("dtype")
            .arg("int32")
            .arg("shape")
            .arg("[4]")
            .arg("updated_at")
            .arg("1700000000.5");
        let _: i64 = con.raw(&c).await.unwrap();
        let e = read_many!(con, store, f32, "r", &["c"]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::DTypeMismatch {
                    found: DType::I32,
                    ..
                }
            ),
            "{backend:?} {e}"
        );
        let _: i64 = con
            .raw(
                redis::cmd("HSET")
                    .arg("bad:r:c")
                    .arg("dtype")
                    .arg("float32")
                    .arg("shape")
                    .arg("[2, 3]"),
            )
            .await
            .unwrap();
        let e = read_many!(con, store, f32, "r", &["c"]).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { .. }), "{backend:?} {e}");
        // WRONGTYPE both ways.
        let e = read_many!(con, store, f32, "n", &["e0", "../r/c"]).err();
        assert!(e.is_none(), "a missing key is not an error");
        let _: i64 = con
            .raw(redis::cmd("HSET").arg("bad:n:h").arg("f").arg("v"))
            .await
            .unwrap();
        let e = read_many!(con, store, f32, "n", &["e0", "h"]).unwrap_err();
        assert_eq!(
            e.redis_kind(),
            Some(RedisErrorKind::WrongType),
            "{backend:?} {e}"
        );
        let _: () = con
            .raw(redis::cmd("SET").arg("bad:r:s").arg("x"))
            .await
            .unwrap();
        let e = read_one!(con, store, f32, "r", "s").unwrap_err();
        assert_eq!(
            e.redis_kind(),
            Some(RedisErrorKind::WrongType),
            "{backend:?} {e}"
        );
        let e = call!(
            con,
            store.write / write_async("r", "s", &Array1::<f32>::ones(4))
        )
        .unwrap_err();
        assert_eq!(
            e.redis_kind(),
            Some(RedisErrorKind::WrongType),
            "{backend:?} {e}"
        );
    });
}

backend_tests!(a_failed_chunk_reports_written_and_unwritten_entities);
fn a_failed_chunk_reports_written_and_unwritten_entities(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        for atomic in [false, true] {
            let prefix = format!("pw{atomic}");
            let store = FeatureStore::new(&prefix)
                .with_chunk_entities(10)
                .with_atomic_chunks(atomic);
            let view = View::of::<f32>("r", 4)
                .with_layout(Layout::Hash)
                .with_ttl(Duration::from_secs(60));
            call!(con, store.register_view / register_view_async(&view)).unwrap();
            let _: () = con
                .raw(redis::cmd("SET").arg(format!("{prefix}:r:e15")).arg("x"))
                .await
                .unwrap();
            let x = Array2::<f32>::ones((30, 4));
            let e = call!(con, store.write_many / write_many_async("r", &ids(30), &x)).unwrap_err();
            if atomic && common::is_cluster(backend) {
                // A transaction over entities of several slots cannot run on a cluster:
                // a typed error, and nothing is written.
                assert!(matches!(e, Error::CrossSlot { .. }), "{e}");
                let n: i64 = con
                    .raw(redis::cmd("EXISTS").arg(format!("{prefix}:r:e0")))
                    .await
                    .unwrap();
                assert_eq!(n, 0);
                // Entities with a common hash tag are one slot: atomic chunks work.
                let tagged: Vec<String> = (0..30).map(|i| format!("{{t}}e{i}")).collect();
                let n = call!(con, store.write_many / write_many_async("r", &tagged, &x)).unwrap();
                assert_eq!(n, 30);
                continue;
            }
            let Error::PartialWrite {
                written,
                refused,
                unknown,
                not_sent,
                source,
            } = e
            else {
                panic!("{backend:?}: expected a partial write, got {e}");
            };
            // Every chunk is sent (pipelined); only entity 15 failed.
            let mut want_written: Vec<usize> = (0..30).collect();
            want_written.retain(|&i| i != 15);
            assert_eq!(written, want_written, "{backend:?} atomic {atomic}");
            assert_eq!(refused, vec![15], "{backend:?} atomic {atomic}");
            assert!(unknown.is_empty() && not_sent.is_empty(), "{backend:?}");
            assert_eq!(
                source.redis_kind(),
                Some(RedisErrorKind::WrongType),
                "{source}"
            );
            let rows = read_many!(con, store, f32, "r", &ids(15)).unwrap();
            assert_eq!(rows.present, vec![true; 15]);
            let rows = read_many!(con, store, f32, "r", &ids(30)[20..]).unwrap();
            assert_eq!(rows.present, vec![true; 10], "later chunks are written");
        }
    });
}

backend_tests!(out_of_memory_mid_write_is_reported_exactly, single_server);
fn out_of_memory_mid_write_is_reported_exactly(backend: Backend) {
    let srv = RedisServer::builder()
        .maxmemory(3 << 20)
        .start()
        .expect("server");
    rt().block_on(async {
        let mut con = Conn::open(backend, &srv.url()).await.expect("connect");
        let store = FeatureStore::new("oom").with_chunk_entities(500);
        call!(
            con,
            store.register_view / register_view_async(&View::of::<f32>("v", 128))
        )
        .unwrap();
        let n = 20_000;
        let x = Array2::<f32>::ones((n, 128));
        let e = call!(con, store.write_many / write_many_async("v", &ids(n), &x)).unwrap_err();
        let Error::PartialWrite {
            written,
            refused: not_written,
            unknown,
            not_sent,
            source,
        } = e
        else {
            panic!("{backend:?}: expected a partial write, got {e}");
        };
        assert_eq!(
            source.redis_kind(),
            Some(RedisErrorKind::OutOfMemory),
            "{source}"
        );
        assert!(!written.is_empty() && !not_written.is_empty());
        assert!(unknown.is_empty() && not_sent.is_empty(), "{backend:?}");
        assert_eq!(written.len() + not_written.len(), n);
        let w: Vec<String> = written.iter().map(|&i| format!("e{i}")).collect();
        let nw: Vec<String> = not_written.iter().map(|&i| format!("e{i}")).collect();
        let rows = read_many!(con, store, f32, "v", &w).unwrap();
        assert!(
            rows.present.iter().all(|&p| p),
            "{backend:?}: every written entity is there"
        );
        let rows = read_many!(con, store, f32, "v", &nw).unwrap();
        assert!(
            rows.present.iter().all(|&p| !p),
            "{backend:?}: no unwritten entity is there"
        );
    });
}

backend_tests!(send_all_streams_requests_with_a_transaction_among_them);
/// `Step::SendAll` (what `write_many` sends) on every backend: requests built one at a
/// time, a transaction and a server error among them; each request gets its own replies.
fn send_all_streams_requests_with_a_transaction_among_them(backend: Backend) {
    use redis::Value;
    use redstash::exec::{Interrupted, Request, Requests, Step};
    on_backend(backend, |backend, mut con| async move {
        let cmd = |args: &[&str]| {
            let mut c = redis::cmd(args[0]);
            for a in &args[1..] {
                c.arg(*a);
            }
            c
        };
        let reqs = vec![
            Request::single(cmd(&["SET", "n", "1"]), None),
            {
                let mut r = Request::new(Some("n"));
                r.push(cmd(&["INCR", "n"]));
                r.push(cmd(&["INCR", "n"]));
                r.atomic()
            },
            {
                let mut r = Request::new(None);
                r.push(cmd(&["LPUSH", "n", "x"]));
                r.push(cmd(&["GET", "n"]));
                r
            },
            Request::new(None).atomic(),
        ];
        let step = Step::SendAll(
            Requests::from(reqs),
            Box::new(|r| Ok(Step::Done(r.map_err(Interrupted::into_error)?))),
        );
        let replies = con.run(step).await.unwrap();
        assert_eq!(replies.len(), 4, "{backend:?}");
        assert!(replies[3].is_empty(), "{backend:?}");
        assert_eq!(replies[0], vec![Value::Okay], "{backend:?}");
        assert_eq!(
            replies[1],
            vec![Value::Int(2), Value::Int(3)],
            "{backend:?}"
        );
        assert!(
            matches!(&replies[2][..], [Value::ServerError(e), Value::BulkString(b)]
                if e.code() == "WRONGTYPE" && b == b"3"),
            "{backend:?}: {:?}",
            replies[2]
        );
        // The connection is still in sync.
        let n: i64 = con.raw(&cmd(&["INCR", "n"])).await.unwrap();
        assert_eq!(n, 4, "{backend:?}");
    });
}

backend_tests!(a_watch_abort_is_the_same_refusal_on_every_backend);
/// A transaction aborted by `WATCH` (`EXEC` replies nil) is the same error on every
/// backend: a Redis error of redis-rs kind `Server(ExecAbort)` that names the key; sent
/// as a tracked request on one server, it is refused (none of its commands ran), not in
/// flight.
fn a_watch_abort_is_the_same_refusal_on_every_backend(backend: Backend) {
    use redstash::exec::{Delivery, Request, Step};
    on_backend(backend, |backend, mut con| async move {
        let transaction = || {
            let mut r = Request::new(Some("w"));
            r.push(
                redis::cmd("SET")
                    .arg("w")
                    .arg("from the transaction")
                    .clone(),
            );
            r.atomic()
        };
        let is_watch_abort = |e: &redstash::Error| match e {
            redstash::Error::Redis { key, source, .. } => {
                key.as_deref() == Some("w")
                    && source.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort)
                    && source.to_string().contains("WATCHed key was modified")
            }
            _ => false,
        };
        // WATCH, then the key changes (on this connection: it still invalidates the
        // WATCH), then the transaction.
        con.raw::<()>(redis::cmd("WATCH").arg("w")).await.unwrap();
        con.raw::<()>(redis::cmd("SET").arg("w").arg("changed"))
            .await
            .unwrap();
        let e = con
            .run(Step::then(transaction(), Ok))
            .await
            .expect_err("EXEC nil is an error");
        assert!(is_watch_abort(&e), "{backend:?}: {e:?}");
        let v: String = con.raw(redis::cmd("GET").arg("w")).await.unwrap();
        assert_eq!(v, "changed", "{backend:?}: the transaction did not run");
        if is_cluster(backend) {
            return;
        }
        con.raw::<()>(redis::cmd("WATCH").arg("w")).await.unwrap();
        con.raw::<()>(redis::cmd("SET").arg("w").arg("again"))
            .await
            .unwrap();
        let delivered = con
            .run(Step::send_tracked(transaction(), |d| Ok(Step::Done(d))))
            .await
            .unwrap();
        let interrupted = delivered.expect_err("a WATCH abort is not answered");
        assert!(
            interrupted.failure.is_none(),
            "{backend:?}: no connection failure"
        );
        match &interrupted.requests[..] {
            [Delivery::Refused(e)] => assert!(is_watch_abort(e), "{backend:?}: {e:?}"),
            other => panic!("{backend:?}: {other:?}"),
        }
    });
}

/// A request that cannot be encoded after others were sent stops the sending: the
/// replies of those sent are still read (the connection stays in sync and usable), and
/// the plan gets what became of each request. A direct connection left with unread
/// replies (a cancelled call) never reads the stream out of sync: it connects again at
/// its next call, or, with reconnection off, refuses further calls.
#[test]
fn direct_connections_with_replies_owed_are_broken() {
    use redstash::direct::{DirectAsyncConnection, DirectConnection};
    use redstash::exec::{Delivery, Interrupted, Request, Requests, Step, run, run_async};
    let srv = server();
    let mut scan = redis::cmd("SCAN");
    scan.cursor_arg(0);
    let plan = move || -> Step<'static, Vec<Vec<redis::Value>>> {
        let reqs = vec![
            Request::single(redis::cmd("PING"), None),
            Request::single(scan.clone(), None),
        ];
        Step::SendAll(
            Requests::from(reqs),
            Box::new(|r| match r {
                Ok(_) => Err(redstash::Error::InvalidArgument("no error".into())),
                Err(i) => {
                    let Interrupted { requests, failure } = *i;
                    assert!(
                        matches!(&requests[..], [Delivery::Answered(p), Delivery::NotSent] if p == &vec![redis::Value::SimpleString("PONG".into())]),
                        "{requests:?}"
                    );
                    Err(failure.expect("the encoding error"))
                }
            }),
        )
    };
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    assert!(run(&mut con, plan()).is_err());
    assert!(con.is_open());
    assert!(con.exec(&[redis::cmd("PING")], false).is_ok());

    rt().block_on(async {
        let mut con = DirectAsyncConnection::open(srv.url().as_str())
            .await
            .unwrap();
        assert!(run_async(&mut con, plan()).await.is_err());
        assert!(con.is_open());
        // Cancelled while waiting for a reply.
        let mut con = DirectAsyncConnection::open(srv.url().as_str())
            .await
            .unwrap();
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg("nothing").arg(2);
        let step: Step<'_, Vec<Vec<redis::Value>>> = Step::SendAll(
            Requests::from(vec![Request::single(blpop, None)]),
            Box::new(|r| Ok(Step::Done(r.map_err(Interrupted::into_error)?))),
        );
        let call = run_async(&mut con, step);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), call)
                .await
                .is_err()
        );
        assert!(!con.is_open());
        // The next call connects again (nothing of the cancelled call is read).
        let pong = con.exec(&[redis::cmd("PING")], false).await.unwrap();
        assert_eq!(pong, vec![redis::Value::SimpleString("PONG".into())]);
        assert!(con.is_open());
        // Without reconnection, a connection with replies owed refuses further calls.
        let options = redstash::direct::ConnectOptions::default().with_reconnect(false);
        let mut con = DirectAsyncConnection::open_with(srv.url().as_str(), options)
            .await
            .unwrap();
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg("nothing").arg(2);
        let cmds = [blpop];
        let call = con.exec(&cmds, false);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), call)
                .await
                .is_err()
        );
        assert!(!con.is_open());
        assert!(con.exec(&[redis::cmd("PING")], false).await.is_err());
    });
}

backend_tests!(reads_over_the_call_budget_are_too_large_before_anything_is_sent);
fn reads_over_the_call_budget_are_too_large_before_anything_is_sent(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        // Vectors of 4 KiB, a 64 MiB budget per call (the value limit stays larger).
        let store = FeatureStore::new("budget").with_limits(redstash::codec::Limits {
            max_call_bytes: 64 << 20,
            ..Default::default()
        });
        for name in ["v1", "v2"] {
            let view = View::of::<f32>(name, 1024);
            call!(con, store.register_view / register_view_async(&view)).unwrap();
        }
        // 20,000 ids × 4 KiB: 80 MiB of rows for one view, over the budget.
        let many = ids(20_000);
        let t = std::time::Instant::now();
        let e = read_many!(con, store, f32, "v1", &many).unwrap_err();
        assert!(
            matches!(e, Error::InvalidValue { problem: ValueProblem::TooLarge { declared, cap }, .. } if declared == 20_000 * 4096 && cap == 64 << 20),
            "{backend:?}: {e}"
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // 10,000 ids: 40 MiB for one view fits, two views (80 MiB) do not.
        let half = ids(10_000);
        let rows = read_many!(con, store, f32, "v1", &half).unwrap();
        assert_eq!(rows.present.len(), 10_000, "{backend:?}");
        let e = call!(
            con,
            store.read_views / read_views_async(&half, &["v1", "v2"])
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::InvalidValue { problem: ValueProblem::TooLarge { declared, cap }, .. } if declared == 80_000 * 1024 && cap == 64 << 20),
            "{backend:?}: {e}"
        );
    });
}
