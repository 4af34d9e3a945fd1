//! The BatchStore suite, written once and run on every backend (sync and async redis-rs
//! connections, redstash's direct connections) against real redis-servers.
#![cfg(all(feature = "testkit", feature = "tokio", feature = "ndarray"))]

mod common;

use std::time::Duration;

use common::*;
use ndarray::{Array1, Array2};
use redstash::codec::{ArrayCodec, Npy};
use redstash::dtype::ALL_DTYPES;
use redstash::{BatchStore, DType, Error, Order, RawArray, RedisErrorKind};
use redstash::{Origin, ValueProblem};

/// One array of every dtype, with varied shapes and orders.
fn every_dtype() -> Vec<(String, RawArray)> {
    let shapes: [&[usize]; 5] = [&[], &[0], &[7], &[3, 4], &[2, 3, 2]];
    ALL_DTYPES
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let order = if i % 2 == 0 { Order::C } else { Order::F };
            (
                d.name().to_owned(),
                sample(d, shapes[i % shapes.len()], order),
            )
        })
        .collect()
}

backend_tests!(every_dtype_and_codec_round_trips_in_one_batch);
fn every_dtype_and_codec_round_trips_in_one_batch(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let items = every_dtype();
        for codec in codecs() {
            let cname = codec.name();
            let store = BatchStore::new("b").with_codec(codec);
            call!(con, store.put / put_async(&cname, &items)).unwrap();
            let batch = call!(con, store.get / get_async(&cname))
                .unwrap()
                .expect("batch");
            assert_eq!(batch.len(), items.len(), "{backend:?} {cname}");
            for (name, a) in &items {
                assert_eq!(batch.get(name), Some(a), "{backend:?} {cname} {name}");
            }
            // One hash, one field per array.
            let n: i64 = con
                .raw(redis::cmd("HLEN").arg(format!("b:{cname}")))
                .await
                .unwrap();
            assert_eq!(n, items.len() as i64);
            // A few by name.
            let some = call!(
                con,
                store.get_some / get_some_async(&cname, &["float64", "bool"])
            )
            .unwrap()
            .expect("batch");
            assert_eq!(some.names().collect::<Vec<_>>(), vec!["bool", "float64"]);
            assert_eq!(some.get("float64"), batch.get("float64"));
        }
    });
}

backend_tests!(features_and_labels_keep_their_dtype_and_shape);
fn features_and_labels_keep_their_dtype_and_shape(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = BatchStore::new("train");
        let x = Array2::<f64>::from_shape_fn((1000, 784), |(i, j)| (i * 784 + j) as f64 * 0.5);
        let y = Array1::<i64>::from_shape_fn(1000, |i| (i % 10) as i64);
        call!(
            con,
            store.put / put_async("001", &(("features", &x), ("labels", &y)))
        )
        .unwrap();
        let batch = call!(con, store.get / get_async("001")).unwrap().unwrap();
        assert_eq!(batch.key(), "train:001");
        let bx: Array2<f64> = batch.get_as("features").unwrap();
        let by: Array1<i64> = batch.get_as("labels").unwrap();
        assert_eq!(bx, x, "{backend:?}");
        assert_eq!(by, y, "{backend:?}");
        assert!(matches!(
            batch.get_as::<f32, ndarray::Ix1>("labels"),
            Err(Error::DTypeMismatch { .. })
        ));
        assert!(matches!(
            batch.get_as::<f64, ndarray::Ix2>("weights"),
            Err(Error::MissingField { ref field, .. }) if field == "weights"
        ));
        // Partial reads: only the labels.
        let only = call!(con, store.get_some / get_some_async("001", &["labels"]))
            .unwrap()
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only.get_as::<i64, ndarray::Ix1>("labels").unwrap(), y);
        // Non-contiguous inputs are stored with their logical values.
        let strided = x.slice(ndarray::s![..;3, ..;-2]);
        let t = x.t();
        call!(
            con,
            store.put / put_async("002", &[("s", strided), ("t", t)])
        )
        .unwrap();
        let back = call!(con, store.get / get_async("002")).unwrap().unwrap();
        assert_eq!(back.get_as::<f64, ndarray::Ix2>("s").unwrap(), strided);
        assert_eq!(back.get_as::<f64, ndarray::Ix2>("t").unwrap(), t);
    });
}

backend_tests!(missing_batch_missing_name_and_bad_fields_are_distinct);
fn missing_batch_missing_name_and_bad_fields_are_distinct(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = BatchStore::new("m");
        assert_eq!(call!(con, store.get / get_async("none")).unwrap(), None);
        assert_eq!(
            call!(con, store.get_some / get_some_async("none", &["a"])).unwrap(),
            None,
            "{backend:?}"
        );
        let a = sample(DType::I32, &[4], Order::C);
        call!(con, store.put / put_async("one", &[("a", &a)])).unwrap();
        for names in [&["b"][..], &["a", "b"][..]] {
            let e = call!(con, store.get_some / get_some_async("one", names)).unwrap_err();
            assert!(
                matches!(&e, Error::MissingField { key, field } if key == "m:one" && field == "b"),
                "{backend:?} {e}"
            );
        }
        // A field that is not a redstash value.
        let _: i64 = con
            .raw(redis::cmd("HSET").arg("m:one").arg("junk").arg("hello"))
            .await
            .unwrap();
        let e = call!(con, store.get / get_async("one")).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidValue { origin: Origin::Field { key, field }, problem: ValueProblem::UnknownFormat { .. } } if key == "m:one" && field == "junk"),
            "{backend:?} {e}"
        );
        let ok = call!(con, store.get_some / get_some_async("one", &["a"])).unwrap();
        assert_eq!(ok.unwrap().get("a"), Some(&a));
        // A truncated .npy value.
        let mut npy = Npy.encode(&a.as_array_ref()).unwrap();
        npy.truncate(npy.len() - 3);
        let _: i64 = con
            .raw(redis::cmd("HSET").arg("m:one").arg("cut").arg(npy))
            .await
            .unwrap();
        let e = call!(con, store.get_some / get_some_async("one", &["cut"])).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidValue {
                    problem: ValueProblem::Truncated { .. },
                    ..
                }
            ),
            "{backend:?} {e}"
        );
        // A key of another type.
        let _: () = con
            .raw(redis::cmd("SET").arg("m:str").arg("x"))
            .await
            .unwrap();
        let e = call!(con, store.get / get_async("str")).unwrap_err();
        assert_eq!(
            e.redis_kind(),
            Some(RedisErrorKind::WrongType),
            "{backend:?} {e}"
        );
        // Bad input is rejected before anything is sent.
        let empty: Vec<(&str, RawArray)> = Vec::new();
        assert!(matches!(
            call!(con, store.put / put_async("e", &empty)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            call!(con, store.put / put_async("e", &[("a", &a), ("a", &a)])),
            Err(Error::InvalidArgument(_))
        ));
        assert!(!call!(con, store.exists / exists_async("e")).unwrap());
    });
}

backend_tests!(put_replaces_atomically_and_delete_exists_list_ttl);
fn put_replaces_atomically_and_delete_exists_list_ttl(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = BatchStore::new("l");
        let a = sample(DType::F32, &[3, 2], Order::C);
        let b = sample(DType::U8, &[5], Order::C);
        call!(con, store.put / put_async("x", &[("a", &a), ("b", &b)])).unwrap();
        call!(con, store.put / put_async("x", &[("c", &b)])).unwrap();
        let got = call!(con, store.get / get_async("x")).unwrap().unwrap();
        assert_eq!(
            got.names().collect::<Vec<_>>(),
            vec!["c"],
            "{backend:?}: replaced"
        );
        assert!(call!(con, store.exists / exists_async("x")).unwrap());
        assert!(call!(con, store.delete / delete_async("x")).unwrap());
        assert!(!call!(con, store.delete / delete_async("x")).unwrap());
        assert!(!call!(con, store.exists / exists_async("x")).unwrap());
        // list: SCAN over more keys than one page, only this store's hashes.
        let mut want: Vec<String> = (0..2500).map(|i| format!("id{i:05}")).collect();
        let mut pipe = redis::pipe();
        for id in &want {
            pipe.cmd("HSET")
                .arg(format!("l:{id}"))
                .arg("f")
                .arg("v")
                .ignore();
        }
        pipe.cmd("SET").arg("l:a-string").arg("v").ignore();
        pipe.cmd("HSET").arg("other:h").arg("f").arg("v").ignore();
        pipe.cmd("HSET").arg("l*glob:h").arg("f").arg("v").ignore();
        match &mut con {
            Conn::Sync(c) => pipe.query::<()>(c).unwrap(),
            Conn::Async(c) => pipe.query_async::<()>(c).await.unwrap(),
            Conn::AsyncManager(c) => pipe.query_async::<()>(c).await.unwrap(),
            _ => {
                let mut keys: Vec<String> = want.iter().map(|id| format!("l:{id}")).collect();
                keys.extend(["other:h".to_owned(), "l*glob:h".to_owned()]);
                for k in keys {
                    let _: i64 = con
                        .raw(redis::cmd("HSET").arg(k).arg("f").arg("v"))
                        .await
                        .unwrap();
                }
                let _: () = con
                    .raw(redis::cmd("SET").arg("l:a-string").arg("v"))
                    .await
                    .unwrap();
            }
        }
        call!(con, store.put / put_async("zz", &[("a", &a)])).unwrap();
        want.push("zz".into());
        let listed = call!(con, store.list / list_async()).unwrap();
        assert_eq!(listed, want, "{backend:?}");
        let glob = BatchStore::new("l*glob");
        assert_eq!(call!(con, glob.list / list_async()).unwrap(), vec!["h"]);
        // TTL in the same transaction.
        let short = BatchStore::new("t").with_ttl(Duration::from_millis(300));
        call!(con, short.put / put_async("y", &[("a", &a)])).unwrap();
        let pttl: i64 = con.raw(redis::cmd("PTTL").arg("t:y")).await.unwrap();
        assert!(pttl > 0 && pttl <= 300, "{backend:?} pttl {pttl}");
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(call!(con, short.get / get_async("y")).unwrap(), None);
    });
}

backend_tests!(a_put_refused_inside_multi_by_oom_reports_out_of_memory);
fn a_put_refused_inside_multi_by_oom_reports_out_of_memory(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        if is_cluster(backend) {
            return; // CONFIG SET reaches one node only
        }
        let store = BatchStore::new("oom");
        let a = sample(DType::F32, &[64, 8], Order::C);
        let _: () = con
            .raw(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1"))
            .await
            .unwrap();
        let r = call!(con, store.put / put_async("x", &[("a", &a)]));
        let _: () = con
            .raw(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0"))
            .await
            .unwrap();
        let e = r.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Redis {
                    kind: RedisErrorKind::OutOfMemory,
                    ..
                }
            ),
            "{backend:?}: {e:?}"
        );
    });
}

backend_tests!(a_put_refused_inside_multi_by_oom_reports_out_of_memory_on_every_backend);
/// The same inside MULTI on every backend, a Redis Cluster included: each server (each
/// cluster node) is started at a 1-byte `maxmemory` with `noeviction`, so the queued
/// HSET is refused with OOM and EXEC with EXECABORT; the put reports the OOM.
fn a_put_refused_inside_multi_by_oom_reports_out_of_memory_on_every_backend(backend: Backend) {
    use redstash::testkit::RedisServer;
    on_backend_with(
        backend,
        RedisServer::builder().maxmemory(1),
        None,
        |backend, mut con, _| async move {
            let store = BatchStore::new("oom");
            let a = sample(DType::F32, &[64, 8], Order::C);
            let e = call!(con, store.put / put_async("x", &[("a", &a)])).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Redis {
                        kind: RedisErrorKind::OutOfMemory,
                        ..
                    }
                ),
                "{backend:?}: {e:?}"
            );
            assert!(common::error_chain(&e).contains("OOM"), "{backend:?}: {e}");
            // Nothing of the transaction ran (its DEL either).
            assert!(!call!(con, store.exists / exists_async("x")).unwrap());
        },
    );
}

backend_tests!(a_put_by_an_acl_user_lacking_a_command_of_the_transaction_reports_noperm);
/// A real ACL user that may not run one of the commands of put's transaction (HSET in
/// the middle, PEXPIRE at the end of a put with a TTL): every backend reports the
/// NOPERM as an `Auth` error naming it, and the batch stored before is left whole (the
/// transaction's DEL did not run either).
fn a_put_by_an_acl_user_lacking_a_command_of_the_transaction_reports_noperm(backend: Backend) {
    use redstash::testkit::RedisServer;
    for (denied, ttl) in [("hset", None), ("pexpire", Some(Duration::from_secs(60)))] {
        let node = RedisServer::builder().acl_user("app", "pw", &format!("~* +@all -{denied}"));
        on_backend_with(
            backend,
            node,
            Some(("app", "pw")),
            |backend, mut con, mut admin| async move {
                let mut store = BatchStore::new("acl");
                if let Some(ttl) = ttl {
                    store = store.with_ttl(ttl);
                }
                let old = sample(DType::I32, &[3, 4], Order::C);
                let new = sample(DType::F64, &[5], Order::C);
                let plain = BatchStore::new("acl");
                call!(admin, plain.put / put_async("b", &[("old", &old)])).unwrap();
                let e = call!(con, store.put / put_async("b", &[("new", &new)])).unwrap_err();
                assert!(
                    matches!(
                        e,
                        Error::Redis {
                            kind: RedisErrorKind::Auth,
                            ..
                        }
                    ),
                    "{backend:?} -{denied}: {e:?}"
                );
                let text = common::error_chain(&e).to_lowercase();
                assert!(
                    text.contains("noperm") && text.contains(denied),
                    "{backend:?} -{denied}: {e}"
                );
                let kept = call!(admin, plain.get / get_async("b")).unwrap().unwrap();
                assert_eq!(
                    kept.names().collect::<Vec<_>>(),
                    ["old"],
                    "{backend:?} -{denied}"
                );
            },
        );
    }
}

backend_tests!(a_batch_over_the_call_budget_is_too_large);
fn a_batch_over_the_call_budget_is_too_large(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        // Three arrays of 200,000 bytes; a budget of 500,000 bytes a call.
        let store = BatchStore::new("budget").with_limits(redstash::codec::Limits {
            max_call_bytes: 500_000,
            ..Default::default()
        });
        let a = sample(DType::F64, &[25_000], Order::C);
        let items = vec![
            ("x".to_owned(), a.clone()),
            ("y".to_owned(), a.clone()),
            ("z".to_owned(), a.clone()),
        ];
        call!(con, store.put / put_async("b", &items)).unwrap();
        match call!(con, store.get / get_async("b")) {
            Err(Error::InvalidValue {
                problem: ValueProblem::TooLarge { declared, cap },
                ..
            }) => {
                assert_eq!((declared, cap), (600_000, 500_000), "{backend:?}")
            }
            other => panic!("{backend:?}: get gave {other:?}"),
        }
        match call!(con, store.get_some / get_some_async("b", &["x", "y", "z"])) {
            Err(Error::InvalidValue {
                problem: ValueProblem::TooLarge { cap, .. },
                ..
            }) => assert_eq!(cap, 500_000, "{backend:?}"),
            other => panic!("{backend:?}: get_some gave {other:?}"),
        }
        // Two of them fit.
        let two = call!(con, store.get_some / get_some_async("b", &["x", "z"]))
            .unwrap()
            .expect("batch");
        assert_eq!(two.get("z"), Some(&a), "{backend:?}");
    });
}
