//! The ArrayStore / DataMetaStore suite, written once and run on every backend (sync and
//! async redis-rs connections, redstash's direct connections) against real redis-servers.
#![cfg(all(feature = "testkit", feature = "tokio", feature = "ndarray"))]

mod common;

use std::time::Duration;

use common::*;
use redstash::codec::{ArrayCodec, Compressed};
use redstash::dtype::ALL_DTYPES;
use redstash::testkit::RedisServer;
use redstash::{ArrayStore, Compression, DataMetaStore, Error, Order, RawArray, RedisErrorKind};
use redstash::{DType, Origin, ValueProblem};

backend_tests!(every_dtype_shape_order_and_codec_round_trips);
fn every_dtype_shape_order_and_codec_round_trips(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        for codec in codecs() {
            let name = codec.name();
            let store = ArrayStore::new("rt").with_codec(codec);
            for dtype in ALL_DTYPES {
                for shape in SHAPES {
                    for order in [Order::C, Order::F] {
                        let a = sample(dtype, shape, order);
                        let key = format!("{name}:{dtype}:{shape:?}:{order:?}");
                        call!(con, store.put / put_async(&key, &a)).unwrap();
                        let back = call!(con, store.get / get_async(&key)).unwrap();
                        assert_eq!(back.as_ref(), Some(&a), "{backend:?} {key}");
                    }
                }
            }
        }
    });
}

backend_tests!(typed_get_checks_dtype_and_ndim);
fn typed_get_checks_dtype_and_ndim(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("typed");
        let a = ndarray::Array2::<f32>::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32);
        call!(con, store.put / put_async("a", &a)).unwrap();
        let back: Option<ndarray::Array2<f32>> =
            call!(con, store.get_as / get_as_async("a")).unwrap();
        assert_eq!(back, Some(a.clone()), "{backend:?}");
        let dynamic: Option<ndarray::ArrayD<f32>> =
            call!(con, store.get_as / get_as_async("a")).unwrap();
        assert_eq!(dynamic.unwrap().shape(), &[3, 4]);
        let wrong: redstash::Result<Option<ndarray::Array2<f64>>> =
            call!(con, store.get_as / get_as_async("a"));
        assert!(
            matches!(
                &wrong,
                Err(Error::DTypeMismatch {
                    origin: Origin::Key(k),
                    expected: DType::F64,
                    found: DType::F32,
                }) if k == "typed:a"
            ),
            "{backend:?} {wrong:?}"
        );
        let wrong: redstash::Result<Option<ndarray::Array3<f32>>> =
            call!(con, store.get_as / get_as_async("a"));
        assert!(
            matches!(wrong, Err(Error::ShapeMismatch { .. })),
            "{backend:?}"
        );
        let missing: Option<ndarray::Array2<f32>> =
            call!(con, store.get_as / get_as_async("nope")).unwrap();
        assert!(missing.is_none());
        // Fortran-order and strided inputs keep their logical values.
        let f = a.t().to_owned();
        call!(con, store.put / put_async("t", &a.t())).unwrap();
        let back: Option<ndarray::Array2<f32>> =
            call!(con, store.get_as / get_as_async("t")).unwrap();
        assert_eq!(back.unwrap(), f);
        let s = a.slice(ndarray::s![..;2, ..;-1]);
        call!(con, store.put / put_async("s", &s)).unwrap();
        let back: Option<ndarray::Array2<f32>> =
            call!(con, store.get_as / get_as_async("s")).unwrap();
        assert_eq!(back.unwrap(), s);
    });
}

backend_tests!(missing_delete_exists_and_prefix);
fn missing_delete_exists_and_prefix(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("p");
        assert_eq!(
            call!(con, store.get / get_async("x")).unwrap(),
            None,
            "{backend:?}"
        );
        assert!(!call!(con, store.exists / exists_async("x")).unwrap());
        assert!(!call!(con, store.delete / delete_async("x")).unwrap());
        let a = sample(redstash::DType::I64, &[4], Order::C);
        call!(con, store.put / put_async("x", &a)).unwrap();
        assert!(call!(con, store.exists / exists_async("x")).unwrap());
        let raw: Vec<u8> = con.raw(redis::cmd("GET").arg("p:x")).await.unwrap();
        assert!(
            raw.starts_with(b"\x93NUMPY"),
            "stored under prefix:name as .npy"
        );
        assert!(call!(con, store.delete / delete_async("x")).unwrap());
        assert!(!call!(con, store.exists / exists_async("x")).unwrap());
        let bare = ArrayStore::new("");
        call!(con, bare.put / put_async("bare", &a)).unwrap();
        assert_eq!(
            con.raw::<i64>(redis::cmd("EXISTS").arg("bare"))
                .await
                .unwrap(),
            1
        );
    });
}

backend_tests!(ttl_is_set_with_the_value);
fn ttl_is_set_with_the_value(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("ttl").with_ttl(Duration::from_millis(300));
        let a = sample(redstash::DType::F32, &[10], Order::C);
        call!(con, store.put / put_async("a", &a)).unwrap();
        let pttl: i64 = con.raw(redis::cmd("PTTL").arg("ttl:a")).await.unwrap();
        assert!(pttl > 0 && pttl <= 300, "{backend:?} pttl {pttl}");
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(call!(con, store.get / get_async("a")).unwrap(), None);
        let persistent = ArrayStore::new("ttl");
        call!(con, persistent.put / put_async("b", &a)).unwrap();
        let pttl: i64 = con.raw(redis::cmd("PTTL").arg("ttl:b")).await.unwrap();
        assert_eq!(pttl, -1);
    });
}

backend_tests!(put_many_and_get_many_in_order_with_missing);
fn put_many_and_get_many_in_order_with_missing(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("many")
            .with_codec(Compressed::lz4())
            .with_ttl(Duration::from_secs(60));
        let items: Vec<(String, RawArray)> = (0..200)
            .map(|i| {
                (
                    format!("k{i}"),
                    sample(redstash::DType::F64, &[i % 7, 3], Order::C),
                )
            })
            .collect();
        call!(con, store.put_many / put_many_async(&items)).unwrap();
        let mut names: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
        names.insert(50, "absent".into());
        let got = call!(con, store.get_many / get_many_async(&names)).unwrap();
        assert_eq!(got.len(), 201);
        assert_eq!(got[50], None, "{backend:?}");
        for (i, (_, a)) in items.iter().enumerate() {
            let j = if i < 50 { i } else { i + 1 };
            assert_eq!(got[j].as_ref(), Some(a), "{backend:?} item {i}");
        }
        let pttl: i64 = con.raw(redis::cmd("PTTL").arg("many:k3")).await.unwrap();
        assert!(pttl > 0);
        let empty: Vec<String> = Vec::new();
        assert!(
            call!(con, store.get_many / get_many_async(&empty))
                .unwrap()
                .is_empty()
        );
    });
}

/// A predicate on the error a bad value must produce.
type ErrorCheck = fn(&Error) -> bool;

/// Replace the first `from` in `hay` by `to`.
fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    [&hay[..i], to, &hay[i + from.len()..]].concat()
}

async fn count_keys(con: &mut Conn, pattern: &str) -> usize {
    let keys: Vec<String> = con.raw(redis::cmd("KEYS").arg(pattern)).await.unwrap();
    keys.len()
}

backend_tests!(large_arrays_are_chunked_with_manifest_last_and_cleaned_up);
fn large_arrays_are_chunked_with_manifest_last_and_cleaned_up(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("big")
            .with_chunk_bytes(1000)
            .with_ttl(Duration::from_secs(100));
        let a = sample(redstash::DType::F64, &[40, 30], Order::C); // 9600 B + header
        call!(con, store.put / put_async("a", &a)).unwrap();
        assert_eq!(
            count_keys(&mut con, "{big:a}:chunk:*").await,
            10,
            "{backend:?}"
        );
        let pttl: i64 = con.raw(redis::cmd("PTTL").arg("big:a")).await.unwrap();
        assert!(pttl > 0);
        assert_eq!(
            call!(con, store.get / get_async("a")).unwrap().as_ref(),
            Some(&a)
        );
        // get_many mixes chunked and plain values.
        let small = sample(redstash::DType::I8, &[3], Order::C);
        call!(con, store.put / put_async("s", &small)).unwrap();
        let got = call!(con, store.get_many / get_many_async(&["s", "a", "zz"])).unwrap();
        assert_eq!(got, vec![Some(small.clone()), Some(a.clone()), None]);
        // Rewriting with another chunked value replaces the chunks.
        let b = sample(redstash::DType::I32, &[600], Order::C);
        call!(con, store.put / put_async("a", &b)).unwrap();
        assert_eq!(count_keys(&mut con, "{big:a}:chunk:*").await, 3);
        assert_eq!(call!(con, store.get / get_async("a")).unwrap(), Some(b));
        // Overwriting with a small value removes the chunks.
        call!(con, store.put / put_async("a", &small)).unwrap();
        assert_eq!(count_keys(&mut con, "{big:a}:chunk:*").await, 0);
        // Delete removes the chunks too.
        call!(con, store.put / put_async("a", &a)).unwrap();
        assert!(call!(con, store.delete / delete_async("a")).unwrap());
        assert_eq!(count_keys(&mut con, "*chunk*").await, 0);
        // put_many with a chunked item.
        let items = vec![("m1", a.clone()), ("m2", small.clone())];
        call!(con, store.put_many / put_many_async(&items)).unwrap();
        let got = call!(con, store.get_many / get_many_async(&["m1", "m2"])).unwrap();
        assert_eq!(got, vec![Some(a.clone()), Some(small.clone())]);
        // put_many of chunked items only; then small values over them remove their chunks.
        let only_big = vec![("m3", a.clone()), ("m4", a.clone())];
        call!(con, store.put_many / put_many_async(&only_big)).unwrap();
        let got = call!(con, store.get_many / get_many_async(&["m3", "m4"])).unwrap();
        assert_eq!(got, vec![Some(a.clone()), Some(a.clone())]);
        let over = vec![
            ("m1", small.clone()),
            ("m3", small.clone()),
            ("m4", small.clone()),
        ];
        call!(con, store.put_many / put_many_async(&over)).unwrap();
        for k in ["{big:m1}:chunk:*", "{big:m3}:chunk:*", "{big:m4}:chunk:*"] {
            assert_eq!(count_keys(&mut con, k).await, 0, "{backend:?} {k}");
        }
        let got = call!(con, store.get_many / get_many_async(&["m1", "m3", "m4"])).unwrap();
        assert_eq!(got, vec![Some(small.clone()); 3]);
        // A missing chunk is reported, with which one.
        call!(con, store.put / put_async("c", &a)).unwrap();
        let keys: Vec<String> = con
            .raw(redis::cmd("KEYS").arg("{big:c}:chunk:*:3"))
            .await
            .unwrap();
        let _: i64 = con.raw(redis::cmd("DEL").arg(&keys[0])).await.unwrap();
        match call!(con, store.get / get_async("c")) {
            Err(Error::MissingChunks { key, missing }) => {
                assert_eq!(key, "big:c");
                assert_eq!(missing, vec![3]);
            }
            other => panic!("{backend:?}: expected MissingChunks, got {other:?}"),
        }
    });
}

backend_tests!(any_store_reads_any_codec);
fn any_store_reads_any_codec(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let a = sample(redstash::DType::U16, &[5, 5], Order::F);
        for codec in codecs() {
            let w = ArrayStore::new("x").with_codec(codec);
            call!(con, w.put / put_async("v", &a)).unwrap();
            let r = ArrayStore::new("x");
            assert_eq!(
                call!(con, r.get / get_async("v")).unwrap().as_ref(),
                Some(&a),
                "{backend:?}"
            );
        }
    });
}

backend_tests!(bad_values_are_typed_errors);
fn bad_values_are_typed_errors(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("");
        let a = sample(redstash::DType::F64, &[8], Order::C);
        call!(con, store.put / put_async("good", &a)).unwrap();
        let good: Vec<u8> = con.raw(redis::cmd("GET").arg("good")).await.unwrap();
        let set = |k: &str, v: &[u8]| {
            let mut c = redis::cmd("SET");
            c.arg(k).arg(v);
            c
        };
        // Truncated, bad magic, trailing bytes, lying header, unknown dtype, huge shape.
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() - 3].to_vec()),
            ("text", b"hello world".to_vec()),
            ("trailing", [&good[..], b"xx"].concat()),
            (
                "lz4-garbage",
                [&[0x04u8, 0x22, 0x4d, 0x18][..], &[0u8; 20]].concat(),
            ),
            ("empty", Vec::new()),
        ];
        for (k, v) in &cases {
            let _: () = con.raw(&set(k, v)).await.unwrap();
        }
        let lie = replace(&good, b"(8,)", b"(9,)");
        let _: () = con.raw(&set("lie", &lie)).await.unwrap();
        let huge = replace(&good[..good.len() - 64], b"(8,), ", b"(9999999999999,)");
        let _: () = con.raw(&set("huge", &huge)).await.unwrap();
        let obj = replace(&good, b"'<f8'", b"'|O8'");
        let _: () = con.raw(&set("object", &obj)).await.unwrap();
        let mut checks: Vec<(&str, ErrorCheck)> = vec![
            ("truncated", |e| {
                matches!(
                    e,
                    Error::InvalidValue {
                        problem: ValueProblem::Truncated { .. },
                        ..
                    }
                )
            }),
            ("text", |e| {
                matches!(
                    e,
                    Error::InvalidValue {
                        origin: Origin::Key(_),
                        problem: ValueProblem::UnknownFormat { .. }
                    }
                )
            }),
            ("trailing", |e| {
                matches!(
                    e,
                    Error::InvalidValue {
                        problem: ValueProblem::Corrupt { .. },
                        ..
                    }
                )
            }),
            ("lz4-garbage", |e| {
                matches!(
                    e,
                    Error::InvalidValue {
                        problem: ValueProblem::Corrupt { .. },
                        ..
                    }
                )
            }),
            ("empty", |e| {
                matches!(
                    e,
                    Error::InvalidValue {
                        origin: Origin::Key(_),
                        problem: ValueProblem::UnknownFormat { .. }
                    }
                )
            }),
            ("lie", |e| {
                matches!(
                    e,
                    Error::InvalidValue {
                        problem: ValueProblem::Truncated { .. },
                        ..
                    }
                )
            }),
            ("huge", |e| {
                matches!(
                    e,
                    Error::InvalidValue {
                        problem: ValueProblem::TooLarge { .. },
                        ..
                    }
                )
            }),
            ("object", |e| matches!(e, Error::UnsupportedDType { .. })),
        ];
        for (k, check) in checks.drain(..) {
            match call!(con, store.get / get_async(k)) {
                Err(e) => assert!(check(&e), "{backend:?} {k}: wrong error {e:?}"),
                Ok(v) => panic!("{backend:?} {k}: accepted {v:?}"),
            }
        }
        // WRONGTYPE keeps its key.
        let _: i64 = con
            .raw(redis::cmd("LPUSH").arg("list").arg("x"))
            .await
            .unwrap();
        match call!(con, store.get / get_async("list")) {
            Err(Error::Redis {
                kind: RedisErrorKind::WrongType,
                key: Some(k),
                ..
            }) => assert_eq!(k, "list"),
            other => panic!("{backend:?}: {other:?}"),
        }
        // The connection is still usable after all of it.
        assert_eq!(call!(con, store.get / get_async("good")).unwrap(), Some(a));
    });
}

backend_tests!(server_errors_oom_auth_and_down, single_server);
fn server_errors_oom_auth_and_down(backend: Backend) {
    rt().block_on(async {
        // OOM: the old value stays, chunks of a failed chunked write are removed.
        let srv = RedisServer::builder().maxmemory(3 << 20).start().unwrap();
        let mut con = Conn::open(backend, &srv.url()).await.unwrap();
        let store = ArrayStore::new("oom");
        let small = sample(redstash::DType::U8, &[16], Order::C);
        call!(con, store.put / put_async("a", &small)).unwrap();
        let big = RawArray::from_vec(vec![8 << 20], vec![7u8; 8 << 20]).unwrap();
        match call!(con, store.put / put_async("a", &big)) {
            Err(e) => assert_eq!(
                e.redis_kind(),
                Some(RedisErrorKind::OutOfMemory),
                "{backend:?} {e}"
            ),
            Ok(()) => panic!("{backend:?}: 8 MB write under a 3 MB maxmemory succeeded"),
        }
        assert_eq!(
            call!(con, store.get / get_async("a")).unwrap(),
            Some(small.clone())
        );
        let chunked = ArrayStore::new("oom").with_chunk_bytes(512 << 10);
        assert!(call!(con, chunked.put / put_async("a", &big)).is_err());
        assert_eq!(
            count_keys(&mut con, "*chunk*").await,
            0,
            "{backend:?}: chunks left behind"
        );
        assert_eq!(call!(con, store.get / get_async("a")).unwrap(), Some(small));

        // Auth: a connection without the password gets an Auth error.
        let srv = RedisServer::builder().password("s3cret").start().unwrap();
        let url = format!("redis://127.0.0.1:{}/", srv.port());
        let res = async {
            let mut con = Conn::open(backend, &url).await?;
            call!(con, store.get / get_async("a"))
        }
        .await;
        assert_eq!(
            res.unwrap_err().redis_kind(),
            Some(RedisErrorKind::Auth),
            "{backend:?}"
        );
        // A wrong password is Auth too, on every connection kind (redis-rs reports it
        // as its own AuthenticationFailed kind, the direct connections as WRONGPASS).
        let wrong = format!("redis://:nope@127.0.0.1:{}/", srv.port());
        let res = Conn::open(backend, &wrong).await.map(|_| ());
        assert_eq!(
            res.unwrap_err().redis_kind(),
            Some(RedisErrorKind::Auth),
            "{backend:?}: wrong password"
        );
        let mut con = Conn::open(backend, &srv.url()).await.unwrap();
        assert_eq!(call!(con, store.get / get_async("a")).unwrap(), None);

        // Server down: a connection error, no panic.
        let mut srv = server();
        let mut con = Conn::open(backend, &srv.url()).await.unwrap();
        srv.stop();
        let err = call!(con, store.get / get_async("a")).unwrap_err();
        assert_eq!(
            err.redis_kind(),
            Some(RedisErrorKind::Connection),
            "{backend:?}: {err:?}"
        );
    });
}

backend_tests!(recipe_layout_round_trips_and_reports_half_written_values);
fn recipe_layout_round_trips_and_reports_half_written_values(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        // The two keys of an array are written in one transaction: on a Redis Cluster
        // they need a common hash tag (here the prefix's), else it is a typed error.
        let p = if common::is_cluster(backend) {
            "{r}"
        } else {
            "r"
        };
        if common::is_cluster(backend) {
            let untagged = DataMetaStore::new("r");
            let a = sample(redstash::DType::F32, &[2], Order::C);
            let e = call!(con, untagged.put / put_async("a", &a)).unwrap_err();
            assert!(matches!(e, Error::CrossSlot { .. }), "{e}");
        }
        for c in [
            Compression::None,
            Compression::Lz4,
            Compression::Zlib { level: 6 },
        ] {
            let store = DataMetaStore::new(p)
                .with_compression(c)
                .with_ttl(Duration::from_secs(60));
            for dtype in ALL_DTYPES {
                for order in [Order::C, Order::F] {
                    let a = sample(dtype, &[3, 4], order);
                    call!(con, store.put / put_async("a", &a)).unwrap();
                    let back = call!(con, store.get / get_async("a")).unwrap().unwrap();
                    assert_eq!(back.order(), Order::C);
                    assert_eq!(
                        back.data()[..],
                        sample(dtype, &[3, 4], Order::C).data()[..],
                        "{backend:?} {c:?} {dtype}"
                    );
                }
            }
            let meta: String = con
                .raw(redis::cmd("GET").arg(format!("{p}:a:meta")))
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_str(&meta).unwrap();
            assert_eq!(json["dtype"], "complex128");
            assert_eq!(json["shape"], serde_json::json!([3, 4]));
        }
        let store = DataMetaStore::new(p);
        assert_eq!(call!(con, store.get / get_async("none")).unwrap(), None);
        let _: () = con
            .raw(redis::cmd("SET").arg(format!("{p}:half:data")).arg("xx"))
            .await
            .unwrap();
        assert!(matches!(
            call!(con, store.get / get_async("half")),
            Err(Error::InvalidValue {
                origin: Origin::Key(_),
                problem: ValueProblem::Corrupt { .. }
            })
        ));
        let _: () = con
            .raw(redis::cmd("SET").arg(format!("{p}:bad:data")).arg("xx"))
            .await
            .unwrap();
        let _: () = con
            .raw(
                redis::cmd("SET")
                    .arg(format!("{p}:bad:meta"))
                    .arg("{not json"),
            )
            .await
            .unwrap();
        assert!(matches!(
            call!(con, store.get / get_async("bad")),
            Err(Error::InvalidValue {
                origin: Origin::Key(_),
                problem: ValueProblem::Corrupt { .. }
            })
        ));
        assert!(call!(con, store.exists / exists_async("a")).unwrap());
        assert!(call!(con, store.delete / delete_async("a")).unwrap());
        assert!(!call!(con, store.exists / exists_async("a")).unwrap());
    });
}

/// A chunked-array manifest as redstash writes it (magic, generation, chunk count, total
/// length, chunk length), with whatever sizes an attacker chooses.
fn planted_manifest(chunks: u32, total_len: u64, chunk_len: u64) -> Vec<u8> {
    let mut m = b"\x93RSTASH\x01".to_vec();
    m.extend_from_slice(&7u64.to_le_bytes());
    m.extend_from_slice(&chunks.to_le_bytes());
    m.extend_from_slice(&total_len.to_le_bytes());
    m.extend_from_slice(&chunk_len.to_le_bytes());
    m
}

backend_tests!(planted_chunk_manifests_fail_fast_on_every_operation);
fn planted_chunk_manifests_fail_fast_on_every_operation(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("");
        let a = sample(redstash::DType::F32, &[4], Order::C);
        // A 2^62-byte chunk, a 2^63-byte chunk, 4 billion chunks, 20 million 1-byte chunks.
        let cases = [
            ("chunk-2^62", planted_manifest(1, 1 << 62, 1 << 62)),
            ("chunk-2^63", planted_manifest(1, 1 << 63, 1 << 63)),
            (
                "4e9-chunks",
                planted_manifest(4_000_000_000, 4_000_000_000, 1),
            ),
            ("20e6-chunks", planted_manifest(20_000_000, 20_000_000, 1)),
        ];
        for (key, bytes) in &cases {
            let _: () = con
                .raw(redis::cmd("SET").arg(*key).arg(&bytes[..]))
                .await
                .unwrap();
            let t = std::time::Instant::now();
            match call!(con, store.get / get_async(key)) {
                Err(
                    Error::InvalidValue {
                        problem: ValueProblem::Corrupt { .. },
                        ..
                    }
                    | Error::InvalidValue {
                        problem: ValueProblem::TooLarge { .. },
                        ..
                    },
                ) => {}
                other => panic!("{backend:?} {key}: get gave {other:?}"),
            }
            match call!(con, store.get_many / get_many_async(&[*key, "absent"])) {
                Err(
                    Error::InvalidValue {
                        problem: ValueProblem::Corrupt { .. },
                        ..
                    }
                    | Error::InvalidValue {
                        problem: ValueProblem::TooLarge { .. },
                        ..
                    },
                ) => {}
                other => panic!("{backend:?} {key}: get_many gave {other:?}"),
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{backend:?} {key}: reads took {:?}",
                t.elapsed()
            );
            // A write over the planted manifest, and a delete, do not follow it either.
            call!(con, store.put / put_async(key, &a)).unwrap();
            assert_eq!(
                call!(con, store.get / get_async(key)).unwrap(),
                Some(a.clone())
            );
            let _: () = con
                .raw(redis::cmd("SET").arg(*key).arg(&bytes[..]))
                .await
                .unwrap();
            assert!(call!(con, store.delete / delete_async(key)).unwrap());
            assert!(
                t.elapsed() < Duration::from_secs(4),
                "{backend:?} {key}: took {:?}",
                t.elapsed()
            );
        }
    });
}

/// A chunked array whose every element is `seed`: a reader can tell a whole value from
/// one mixed out of two writes.
fn self_checking(seed: u32) -> ndarray::Array1<u32> {
    ndarray::Array1::from_elem(64 << 10, seed)
}

#[test]
fn readers_racing_writers_of_a_chunked_array_get_whole_values() {
    let srv = RedisServer::start().unwrap();
    // 256 KiB values in 16 KiB chunks: every write replaces 16 chunk keys.
    let store = ArrayStore::new("race").with_chunk_bytes(16 << 10);
    let mut con = srv.client().unwrap().get_connection().unwrap();
    store.put(&mut con, "a", &self_checking(0)).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..4u32 {
            let (srv, store, stop) = (&srv, &store, &stop);
            s.spawn(move || {
                let mut con = srv.client().unwrap().get_connection().unwrap();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    store
                        .put(&mut con, "a", &self_checking(w * 1_000_000 + i))
                        .unwrap();
                }
            });
        }
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (srv, store, reads) = (&srv, &store, &reads);
                s.spawn(move || -> Result<(), String> {
                    let mut con = srv.client().unwrap().get_connection().unwrap();
                    for _ in 0..150 {
                        let v: ndarray::Array1<u32> = store
                            .get_as(&mut con, "a")
                            .map_err(|e| format!("a read failed: {e}"))?
                            .ok_or("the array vanished")?;
                        let first = v[0];
                        if !v.iter().all(|&x| x == first) {
                            return Err("a mixed value".into());
                        }
                        reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        let outcomes: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for o in outcomes {
            o.expect("reader panicked").unwrap();
        }
    });
    assert_eq!(reads.into_inner(), 600);
}

#[test]
fn put_and_delete_by_a_user_without_getrange_report_it() {
    let srv = RedisServer::builder()
        .acl_user("nogr", "pw", "~* +@all -getrange")
        .start()
        .unwrap();
    let store = ArrayStore::new("acl").with_chunk_bytes(16 << 10);
    let mut admin = srv.client().unwrap().get_connection().unwrap();
    let mut user = redis::Client::open(srv.url_for("nogr", "pw"))
        .unwrap()
        .get_connection()
        .unwrap();
    // A chunked value whose chunks a write over it must find and delete.
    store.put(&mut admin, "a", &self_checking(1)).unwrap();
    for result in [
        store.put(&mut user, "a", &self_checking(2)),
        store.delete(&mut user, "a").map(|_| ()),
    ] {
        match result {
            Err(Error::Redis {
                kind: RedisErrorKind::Auth,
                ..
            }) => {}
            other => panic!("a write without GETRANGE gave {other:?}"),
        }
    }
}

/// The key of chunk `i` of the chunked array at `key` (no hash tag) whose manifest is
/// `manifest`.
fn chunk_key_of(key: &str, manifest: &[u8], i: u32) -> String {
    let generation = u64::from_le_bytes(manifest[8..16].try_into().unwrap());
    format!("{{{key}}}:chunk:{generation:016x}:{i}")
}

backend_tests!(a_corrupted_chunk_is_a_checksum_error_for_get_and_get_many);
fn a_corrupted_chunk_is_a_checksum_error_for_get_and_get_many(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("sum").with_chunk_bytes(1000);
        let a = sample(redstash::DType::F64, &[40, 30], Order::C); // 10 chunks
        let small = sample(redstash::DType::I8, &[3], Order::C);
        call!(con, store.put / put_async("a", &a)).unwrap();
        call!(con, store.put / put_async("s", &small)).unwrap();
        let manifest: Vec<u8> = con.raw(redis::cmd("GET").arg("sum:a")).await.unwrap();
        // The current form: 36 bytes of sizes, then the value's xxh3-64.
        assert_eq!(manifest.len(), 44, "{backend:?}");
        let recorded = u64::from_le_bytes(manifest[36..44].try_into().unwrap());
        // put_many records the same checksum for the same value.
        call!(con, store.put_many / put_many_async(&[("b", a.clone())])).unwrap();
        let other: Vec<u8> = con.raw(redis::cmd("GET").arg("sum:b")).await.unwrap();
        assert_eq!(other.len(), 44, "{backend:?}");
        assert_eq!(other[36..], manifest[36..], "{backend:?}");
        // Flip one bit of one data byte of chunk 2: without a checksum this decodes to
        // another array.
        let ck = chunk_key_of("sum:a", &manifest, 2);
        let byte: Vec<u8> = con
            .raw(redis::cmd("GETRANGE").arg(&ck).arg(17).arg(17))
            .await
            .unwrap();
        let set = |b: u8| {
            let mut c = redis::cmd("SETRANGE");
            c.arg(&ck).arg(17).arg(&[b][..]);
            c
        };
        let _: i64 = con.raw(&set(byte[0] ^ 0x01)).await.unwrap();
        let check = |r: redstash::Result<_>, op: &str| match r {
            Err(Error::InvalidValue {
                origin: Origin::Key(key),
                problem: ValueProblem::ChecksumMismatch { expected, found },
            }) => {
                assert_eq!(key, "sum:a", "{backend:?} {op}");
                assert_eq!(expected, recorded, "{backend:?} {op}");
                assert_ne!(found, recorded, "{backend:?} {op}");
            }
            other => panic!("{backend:?} {op}: expected ChecksumMismatch, got {other:?}"),
        };
        check(call!(con, store.get / get_async("a")).map(|_| ()), "get");
        check(
            call!(con, store.get_many / get_many_async(&["s", "a"])).map(|_| ()),
            "get_many",
        );
        // Restored, the chunk reads again.
        let _: i64 = con.raw(&set(byte[0])).await.unwrap();
        assert_eq!(
            call!(con, store.get / get_async("a")).unwrap().as_ref(),
            Some(&a)
        );
        assert_eq!(
            call!(con, store.get_many / get_many_async(&["s", "a"])).unwrap(),
            vec![Some(small), Some(a)]
        );
    });
}

backend_tests!(chunked_arrays_with_a_manifest_without_checksum_still_read_and_clean_up);
fn chunked_arrays_with_a_manifest_without_checksum_still_read_and_clean_up(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let store = ArrayStore::new("old").with_chunk_bytes(1000);
        let a = sample(redstash::DType::I32, &[1000], Order::C);
        // The first form of the manifest (36 bytes, no checksum) and its chunks, as an
        // earlier version wrote them.
        let value = redstash::Npy.encode(&a.as_array_ref()).unwrap();
        let manifest =
            planted_manifest(value.len().div_ceil(1000) as u32, value.len() as u64, 1000);
        assert_eq!(manifest.len(), 36);
        let chunk_keys: Vec<String> = (0..value.len().div_ceil(1000) as u32)
            .map(|i| chunk_key_of("old:a", &manifest, i))
            .collect();
        for (k, c) in chunk_keys.iter().zip(value.chunks(1000)) {
            let _: () = con.raw(redis::cmd("SET").arg(k).arg(c)).await.unwrap();
        }
        let _: () = con
            .raw(redis::cmd("SET").arg("old:a").arg(&manifest[..]))
            .await
            .unwrap();
        assert_eq!(
            call!(con, store.get / get_async("a")).unwrap().as_ref(),
            Some(&a),
            "{backend:?}"
        );
        assert_eq!(
            call!(con, store.get_many / get_many_async(&["a", "zz", "a"])).unwrap(),
            vec![Some(a.clone()), None, Some(a.clone())]
        );
        // A write over it finds its chunks and deletes them.
        let small = sample(redstash::DType::I8, &[3], Order::C);
        call!(con, store.put / put_async("a", &small)).unwrap();
        for k in &chunk_keys {
            let n: i64 = con.raw(redis::cmd("EXISTS").arg(k)).await.unwrap();
            assert_eq!(n, 0, "{backend:?}: {k} left behind");
        }
    });
}

#[test]
fn readers_racing_writers_of_chunked_arrays_get_many_whole_values() {
    let srv = RedisServer::start().unwrap();
    // 256 KiB values in 16 KiB chunks: every write replaces 16 chunk keys.
    let store = ArrayStore::new("race").with_chunk_bytes(16 << 10);
    let mut con = srv.client().unwrap().get_connection().unwrap();
    for name in ["a", "b"] {
        store.put(&mut con, name, &self_checking(0)).unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reads = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..4u32 {
            let (srv, store, stop) = (&srv, &store, &stop);
            s.spawn(move || {
                let mut con = srv.client().unwrap().get_connection().unwrap();
                let name = if w % 2 == 0 { "a" } else { "b" };
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    store
                        .put(&mut con, name, &self_checking(w * 1_000_000 + i))
                        .unwrap();
                }
            });
        }
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (srv, store, reads) = (&srv, &store, &reads);
                s.spawn(move || -> Result<(), String> {
                    let mut con = srv.client().unwrap().get_connection().unwrap();
                    for _ in 0..100 {
                        let got = store
                            .get_many(&mut con, &["a", "b", "a"])
                            .map_err(|e| format!("a read failed: {e}"))?;
                        for v in got {
                            let v = v
                                .ok_or("an array vanished")?
                                .to_ndarray::<u32, ndarray::Ix1>()
                                .map_err(|e| e.to_string())?;
                            let first = v[0];
                            if !v.iter().all(|&x| x == first) {
                                return Err("a mixed value".into());
                            }
                        }
                        reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        let outcomes: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for o in outcomes {
            o.expect("reader panicked").unwrap();
        }
    });
    assert_eq!(reads.into_inner(), 400);
}

backend_tests!(get_many_over_the_call_budget_is_too_large_before_the_rest_is_decoded);
fn get_many_over_the_call_budget_is_too_large_before_the_rest_is_decoded(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let limits = redstash::codec::Limits {
            max_value_len: 1 << 20,
            max_call_bytes: 1 << 20,
            ..Default::default()
        };
        let store = ArrayStore::new("budget")
            .with_chunk_bytes(256 << 10)
            .with_limits(limits);
        // Arrays of 200,000 bytes (under the 1 MiB value limit, not chunked): five fit
        // the 1 MiB budget of a call, six do not.
        let a = ndarray::Array1::<f64>::from_elem(25_000, 1.5);
        let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        for n in &names {
            call!(con, store.put / put_async(n, &a)).unwrap();
        }
        let five = call!(con, store.get_many / get_many_async(&names[..5])).unwrap();
        assert_eq!(five.len(), 5, "{backend:?}");
        // The seventh is not an array: decoded, it would be an unknown format.
        let _: () = con
            .raw(redis::cmd("SET").arg("budget:p6").arg("not an array"))
            .await
            .unwrap();
        let t = std::time::Instant::now();
        match call!(con, store.get_many / get_many_async(&names)) {
            Err(Error::InvalidValue {
                problem: ValueProblem::TooLarge { declared, cap },
                ..
            }) => {
                assert_eq!((declared, cap), (1_200_000, 1 << 20), "{backend:?}");
            }
            other => panic!("{backend:?}: get_many gave {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Chunked arrays count their declared size before their chunks are fetched: the
        // chunks of the second are gone, fetching them would be MissingChunks.
        let big = ndarray::Array1::<f64>::from_elem(75_000, 2.5); // 600,000 bytes
        for n in ["c0", "c1"] {
            call!(con, store.put / put_async(n, &big)).unwrap();
        }
        let manifest: Vec<u8> = con.raw(redis::cmd("GET").arg("budget:c1")).await.unwrap();
        let chunks = u32::from_le_bytes(manifest[16..20].try_into().unwrap());
        assert!(chunks > 1);
        for i in 0..chunks {
            let k = chunk_key_of("budget:c1", &manifest, i);
            let _: i64 = con.raw(redis::cmd("DEL").arg(&k)).await.unwrap();
        }
        match call!(con, store.get_many / get_many_async(&["c0", "c1"])) {
            Err(Error::InvalidValue {
                problem: ValueProblem::TooLarge { cap, .. },
                ..
            }) => assert_eq!(cap, 1 << 20, "{backend:?}"),
            other => panic!("{backend:?}: get_many of chunked arrays gave {other:?}"),
        }
        // One get of a chunked array over the call budget (under the value limit).
        let tight = ArrayStore::new("budget").with_limits(redstash::codec::Limits {
            max_call_bytes: 512 << 10,
            ..limits
        });
        match call!(con, tight.get / get_async("c0")) {
            Err(Error::InvalidValue {
                problem: ValueProblem::TooLarge { cap, .. },
                ..
            }) => assert_eq!(cap, 512 << 10, "{backend:?}"),
            other => panic!("{backend:?}: get gave {other:?}"),
        }
        // And one of a plain value over it.
        match call!(con, tight.get / get_async("p0")) {
            Ok(Some(_)) => {}
            other => panic!("{backend:?}: get of a value under the budget gave {other:?}"),
        }
    });
}

/// `put_many` of many small arrays keeps client memory bounded: requests of at most
/// 1,000 items are encoded as they are sent (one pipeline of every item took about
/// 1.2 KB per item: 360 MB here). Each test runs in its own process under nextest, so
/// the peak RSS is this test's.
#[test]
fn put_many_of_many_small_arrays_keeps_client_memory_bounded() {
    fn rss_kib(field: &str) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
    let srv = RedisServer::start().unwrap();
    let mut con = redstash::direct::DirectConnection::open(srv.url().as_str()).unwrap();
    let n = 300_000;
    let items: Vec<(String, ndarray::Array1<f32>)> = (0..n)
        .map(|i| (format!("m{i}"), ndarray::Array1::from_elem(16, i as f32)))
        .collect();
    let before = rss_kib("VmRSS:");
    let store = ArrayStore::new("mem");
    store.put_many(&mut con, &items).unwrap();
    let peak = rss_kib("VmHWM:");
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!("put_many of {n} arrays: peak RSS {grown_mib} MiB over the input");
    assert!(grown_mib < 150, "peak RSS grew by {grown_mib} MiB");
    let last = store
        .get(&mut con, &format!("m{}", n - 1))
        .unwrap()
        .unwrap();
    assert_eq!(last.shape(), &[16]);
    let dbsize: i64 = redis::cmd("DBSIZE")
        .query(&mut srv.client().unwrap().get_connection().unwrap())
        .unwrap();
    assert_eq!(dbsize, n as i64);
}

/// `VmHWM` (peak RSS) of this process, in KiB, after resetting it to the current RSS
/// when the kernel allows it (`/proc/self/clear_refs`).
fn reset_peak_rss_kib() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    peak_rss_kib()
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Run the test `name` of this binary alone in a child process (so that the peak RSS it
/// measures is its own whatever runs the tests); `true` in that child.
fn in_a_process_of_its_own(name: &str) -> bool {
    const CHILD: &str = "REDSTASH_TEST_ALONE";
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .status()
        .unwrap();
    assert!(status.success(), "{name} failed in its own process");
    false
}

/// A chunked `put` sends each chunk from the array's own memory: putting a 256 MiB array
/// in 16 MiB chunks raises the client's peak RSS by far less than one copy of the array
/// (concatenating the value, then building every chunk's command up front, took two).
#[test]
fn chunked_put_streams_chunks_from_the_arrays_memory() {
    if !in_a_process_of_its_own("chunked_put_streams_chunks_from_the_arrays_memory") {
        return;
    }
    let srv = RedisServer::start().unwrap();
    let mut con = redstash::direct::DirectConnection::open(srv.url().as_str()).unwrap();
    let n = 64 << 20;
    let a = ndarray::Array1::<f32>::from_shape_fn(n, |i| i as f32);
    let store = ArrayStore::new("stream").with_chunk_bytes(16 << 20);
    let before = reset_peak_rss_kib();
    store.put(&mut con, "a", &a).unwrap();
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    eprintln!("chunked put of a 256 MiB array: peak RSS grew by {grown_mib} MiB");
    assert!(
        grown_mib < 64,
        "peak RSS grew by {grown_mib} MiB putting a 256 MiB array"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("{stream:a}:chunk:*")
        .query(&mut srv.client().unwrap().get_connection().unwrap())
        .unwrap();
    assert_eq!(keys.len(), 17, "256 MiB plus the header in 16 MiB chunks");
    let back: ndarray::Array1<f32> = store.get_as(&mut con, "a").unwrap().unwrap();
    assert!(back == a);
}

backend_tests!(
    out_of_memory_mid_put_many_is_reported_exactly,
    single_server
);
/// `put_many` past `maxmemory`: the arrays the server refused with OOM are reported
/// refused and are not stored; those reported written are.
fn out_of_memory_mid_put_many_is_reported_exactly(backend: Backend) {
    let srv = RedisServer::builder()
        .maxmemory(3 << 20)
        .start()
        .expect("server");
    rt().block_on(async {
        let mut con = Conn::open(backend, &srv.url()).await.expect("connect");
        let store = ArrayStore::new("oom");
        let n = 10_000;
        let items: Vec<(String, ndarray::Array1<f32>)> = (0..n)
            .map(|i| (format!("a{i}"), ndarray::Array1::from_elem(128, 1.0)))
            .collect();
        let e = call!(con, store.put_many / put_many_async(&items)).unwrap_err();
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
        assert_eq!(
            source.redis_kind(),
            Some(RedisErrorKind::OutOfMemory),
            "{source}"
        );
        assert!(!written.is_empty() && !refused.is_empty(), "{backend:?}");
        assert!(unknown.is_empty() && not_sent.is_empty(), "{backend:?}");
        assert_eq!(written.len() + refused.len(), n);
        let names = |set: &[usize]| set.iter().map(|i| format!("a{i}")).collect::<Vec<_>>();
        let got = call!(con, store.get_many / get_many_async(&names(&written))).unwrap();
        assert!(
            got.iter().all(Option::is_some),
            "{backend:?}: a written array is missing"
        );
        let got = call!(con, store.get_many / get_many_async(&names(&refused))).unwrap();
        assert!(
            got.iter().all(Option::is_none),
            "{backend:?}: a refused array is stored"
        );
    });
}

/// A chunk size of zero is refused before anything is sent (it was raised to 1 byte, so
/// an array was stored as one key per byte).
#[test]
fn a_zero_chunk_size_is_refused() {
    let a = ndarray::Array1::<f32>::zeros(44);
    let store = ArrayStore::new("z").with_chunk_bytes(0);
    assert!(
        matches!(store.plan_put("a", &a), Err(Error::InvalidArgument(_))),
        "put"
    );
    let items = [("a", a.clone())];
    assert!(
        matches!(store.plan_put_many(&items), Err(Error::InvalidArgument(_))),
        "put_many"
    );
    // One byte is a (silly but) valid chunk size.
    assert!(
        ArrayStore::new("z")
            .with_chunk_bytes(1)
            .plan_put("a", &a)
            .is_ok()
    );
}

/// An async connection that says when the replies of its last request arrived.
struct Watched<C> {
    inner: C,
    replied: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<C: redstash::exec::AsyncConnection> redstash::exec::AsyncConnection for Watched<C> {
    async fn run_request(
        &mut self,
        req: redstash::exec::Request<'_>,
    ) -> redstash::Result<Vec<redis::Value>> {
        let replies = self.inner.run_request(req).await;
        self.replied
            .store(true, std::sync::atomic::Ordering::SeqCst);
        replies
    }

    async fn run_requests(
        &mut self,
        reqs: redstash::exec::Requests<'_>,
    ) -> redstash::exec::Delivered {
        self.inner.run_requests(reqs).await
    }
}

/// Run `get` on the only thread of the runtime next to a task ticking every millisecond;
/// the ticks seen once the replies of the get had arrived (while it decoded), and the
/// longest time between two ticks (or the get's start and end).
async fn ticks_while_decoding<F: std::future::Future>(
    replied: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    get: F,
) -> (usize, Duration, F::Output) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let done = Arc::new(AtomicBool::new(false));
    replied.store(false, SeqCst);
    let ticker = tokio::spawn({
        let (done, replied) = (Arc::clone(&done), Arc::clone(replied));
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let (mut decoding, mut last, mut gap) = (0, std::time::Instant::now(), Duration::ZERO);
            while !done.load(SeqCst) {
                tick.tick().await;
                gap = gap.max(last.elapsed());
                last = std::time::Instant::now();
                if replied.load(SeqCst) && !done.load(SeqCst) {
                    decoding += 1;
                }
            }
            (decoding, gap)
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let out = get.await;
    done.store(true, SeqCst);
    let (decoding, gap) = ticker.await.expect("ticker");
    (decoding, gap, out)
}

#[tokio::test(flavor = "current_thread")]
async fn large_async_gets_decode_off_the_runtime_thread() {
    let srv = server();
    let replied = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = ArrayStore::new("offload").with_codec(Compressed::lz4());
    // 16 MB (a decode of tens of ms in a release build, far more in a debug one). Not
    // larger: under `cargo test` the tests share one process, whose peak memory
    // `put_many_of_many_small_arrays_keeps_client_memory_bounded` measures.
    let n = 4 << 20;
    let a = ndarray::Array1::from_shape_fn(n, |i| ((i as f32) * 0.001).sin());
    let mut direct = Watched {
        inner: redstash::direct::DirectAsyncConnection::open(srv.url())
            .await
            .unwrap(),
        replied: replied.clone(),
    };
    let mut mux = Watched {
        inner: srv
            .client()
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap(),
        replied: replied.clone(),
    };
    store.put_async(&mut direct, "a", &a).await.unwrap();

    let (ticks, gap, raw) = ticks_while_decoding(&replied, store.get_async(&mut direct, "a")).await;
    eprintln!("get_async: {ticks} ticks while decoding, longest gap {gap:?}");
    assert_eq!(raw.unwrap().unwrap().shape(), &[n]);
    assert!(
        ticks >= 2,
        "the runtime thread was blocked: {ticks} ticks while decoding"
    );

    get_as_while_ticking(&store, &mut direct, &replied, &a).await;
    get_as_while_ticking(&store, &mut mux, &replied, &a).await;
}

async fn get_as_while_ticking<C: redstash::exec::AsyncConnection>(
    store: &ArrayStore<Compressed>,
    con: &mut C,
    replied: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    a: &ndarray::Array1<f32>,
) {
    let (ticks, gap, back) = ticks_while_decoding(
        replied,
        store.get_as_async::<f32, ndarray::Ix1, _>(con, "a"),
    )
    .await;
    eprintln!("get_as_async: {ticks} ticks while decoding, longest gap {gap:?}");
    assert_eq!(back.unwrap().as_ref(), Some(a));
    assert!(
        ticks >= 2,
        "the runtime thread was blocked: {ticks} ticks while decoding"
    );
}
