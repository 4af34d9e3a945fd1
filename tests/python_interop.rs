//! numpy / lz4.frame / zlib interop, both ways, through a real redis-server. Needs the
//! venv that `scripts/setup` creates (`REDSTASH_PYTHON`, or `.venv/bin/python`).
#![cfg(all(feature = "testkit", feature = "sync"))]

mod common;

use common::{run_py, sample, server};
use redstash::codec::{ArrayCodec, Compressed, Npy};
use redstash::dtype::ALL_DTYPES;
use redstash::{ArrayStore, Compression, DType, DataMetaStore, Order};

fn shape_name(shape: &[usize]) -> String {
    if shape.is_empty() {
        "s".into()
    } else {
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    }
}

fn parse_shape(s: &str) -> Vec<usize> {
    if s == "s" {
        vec![]
    } else {
        s.split('x').map(|d| d.parse().unwrap()).collect()
    }
}

const SHAPES: &[&[usize]] = &[&[], &[0], &[5], &[2, 3], &[2, 3, 4], &[1, 2, 1, 2, 3, 2]];

#[test]
fn numpy_reads_what_redstash_wrote() {
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let mut codecs: Vec<Box<dyn ArrayCodec>> = vec![
        Box::new(Npy),
        Box::new(Compressed::lz4()),
        Box::new(Compressed::zlib(6)),
    ];
    if cfg!(feature = "zstd") {
        codecs.push(Box::new(Compressed::zstd(3)));
    }
    let mut n = 0;
    for codec in codecs {
        let cname = codec.name().replace(['(', ')', '+'], "");
        let store = ArrayStore::new("rs").with_codec(codec);
        for dtype in ALL_DTYPES {
            for shape in SHAPES {
                for order in [Order::C, Order::F] {
                    let o = if order == Order::C { "C" } else { "F" };
                    let key = format!("{cname}:{dtype}:{}:{o}", shape_name(shape));
                    store
                        .put(&mut con, &key, &sample(dtype, shape, order))
                        .unwrap();
                    n += 1;
                }
            }
        }
    }
    for (cname, c) in [
        ("none", Compression::None),
        ("lz4", Compression::Lz4),
        ("zlib", Compression::Zlib { level: 6 }),
    ] {
        let store = DataMetaStore::new("rsrecipe").with_compression(c);
        for dtype in ALL_DTYPES {
            let key = format!("{cname}:{dtype}:2x3");
            store
                .put(&mut con, &key, &sample(dtype, &[2, 3], Order::F))
                .unwrap();
        }
    }
    assert!(n > 300);
    run_py("interop.py", "check", &srv.url());
}

#[test]
fn redstash_reads_what_numpy_wrote() {
    let srv = server();
    run_py("interop.py", "write", &srv.url());
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("py:*").query(&mut con).unwrap();
    assert_eq!(keys.len(), ALL_DTYPES.len() * 6 * 2 * 4);
    let store = ArrayStore::new("");
    for key in &keys {
        let parts: Vec<&str> = key.split(':').collect();
        let dtype: DType = parts[2].parse().unwrap();
        let shape = parse_shape(parts[3]);
        let got = store
            .get(&mut con, key)
            .unwrap()
            .unwrap_or_else(|| panic!("{key} missing"));
        let want = sample(dtype, &shape, Order::C);
        assert_eq!(got.dtype(), dtype, "{key}");
        assert_eq!(got.shape(), &shape[..], "{key}");
        // Compare logical values in C order, whatever order numpy stored.
        let got_bytes =
            redstash::RawArray::new(dtype, shape.clone(), got.order(), got.data().clone()).unwrap();
        let c = c_order(&got_bytes);
        assert_eq!(c, want.data().to_vec(), "{key}");
        if parts[4] == "F" && shape.len() > 1 {
            assert_eq!(got.order(), Order::F, "{key}: numpy wrote Fortran order");
        }
    }
    let recipe = DataMetaStore::new("pyrecipe");
    let metas: Vec<String> = redis::cmd("KEYS")
        .arg("pyrecipe:*:meta")
        .query(&mut con)
        .unwrap();
    assert_eq!(metas.len(), ALL_DTYPES.len() * 6 * 3);
    for m in metas {
        let name = m
            .strip_prefix("pyrecipe:")
            .unwrap()
            .strip_suffix(":meta")
            .unwrap();
        let parts: Vec<&str> = name.split(':').collect();
        let dtype: DType = parts[1].parse().unwrap();
        let shape = parse_shape(parts[2]);
        let got = recipe.get(&mut con, name).unwrap().unwrap();
        assert_eq!(got.shape(), &shape[..], "{name}");
        assert_eq!(
            got.data()[..],
            sample(dtype, &shape, Order::C).data()[..],
            "{name}"
        );
    }
}

/// Element bytes of `a` in C order.
fn c_order(a: &redstash::RawArray) -> Vec<u8> {
    macro_rules! conv {
        ($t:ty) => {{
            let v: Vec<$t> = a.to_vec_c_order().unwrap();
            redstash::Element::slice_as_bytes(&v[..]).to_vec()
        }};
    }
    match a.dtype() {
        DType::Bool => conv!(bool),
        DType::I8 => conv!(i8),
        DType::U8 => conv!(u8),
        DType::I16 => conv!(i16),
        DType::U16 => conv!(u16),
        DType::F16 => conv!(half::f16),
        DType::I32 => conv!(i32),
        DType::U32 => conv!(u32),
        DType::F32 => conv!(f32),
        DType::I64 => conv!(i64),
        DType::U64 => conv!(u64),
        DType::F64 => conv!(f64),
        DType::C64 => conv!(num_complex::Complex<f32>),
        DType::C128 => conv!(num_complex::Complex<f64>),
        other => panic!("no conversion for {other}"),
    }
}
