//! Golden files written by numpy, lz4, zlib, zstandard and pyarrow (tests/fixtures/, made by
//! tests/python/make_fixtures.py), decoded without Python: the interop decoding is
//! tested where the venv is absent. Each file's name says what it holds (see the
//! script); the expected arrays are [`common::sample`]'s, the values numpy wrote.

mod common;

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use common::{sample, server};
use redstash::codec::arrow::{IpcCompression, decode_stream};
use redstash::codec::arrow_file::{IpcFormat, IpcInput};
use redstash::codec::{self, Limits};
use redstash::store::table::ReadOptions;
use redstash::{DType, DataMetaStore, Order, TableStore};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

fn parse_shape(s: &str) -> Vec<usize> {
    if s == "s" {
        vec![]
    } else {
        s.split('x').map(|d| d.parse().unwrap()).collect()
    }
}

/// Every `.npy` numpy wrote (each dtype, both byte orders, C and Fortran order, 0-d and
/// empty, header versions 1 to 3, inside lz4 frames, zlib streams and zstd frames)
/// decodes to the
/// array the file name describes.
#[test]
fn npy_files_written_by_numpy_decode() {
    let files = fixtures("npy");
    assert!(files.len() >= 30, "{} .npy fixtures", files.len());
    let mut versions = std::collections::BTreeSet::new();
    for path in &files {
        let name = name_of(path);
        let stem = name.split('.').next().unwrap();
        let parts: Vec<&str> = stem.split('-').collect();
        let [container, endian, dtype, shape, order] = parts[..] else {
            panic!("{name}: not container-endian-dtype-shape-order");
        };
        let dtype: DType = dtype.parse().unwrap();
        let shape = parse_shape(shape);
        let order = if order == "F" { Order::F } else { Order::C };
        let bytes = std::fs::read(path).unwrap();
        let info =
            codec::inspect(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let layers: Vec<&str> = info.layers.iter().map(|f| f.name()).collect();
        match container {
            "lz4" => assert_eq!(layers, ["lz4", "npy"], "{name}"),
            "zlib" => assert_eq!(layers, ["zlib", "npy"], "{name}"),
            "zstd" => assert_eq!(layers, ["zstd", "npy"], "{name}"),
            _ => assert_eq!(layers, ["npy"], "{name}"),
        }
        versions.insert(info.npy_version);
        let want_version = match container {
            "npy2" => 2,
            "npy3" => 3,
            _ => 1,
        };
        assert_eq!(info.npy_version.0, want_version, "{name}");
        let got = codec::decode_array(bytes.into(), &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.dtype(), dtype, "{name}");
        assert_eq!(got.shape(), &shape[..], "{name}");
        // The values in the file's memory order, in native byte order whatever the
        // file's.
        assert_eq!(
            got,
            sample(dtype, &shape, order),
            "{name} ({endian}-endian)"
        );
    }
    assert_eq!(versions.len(), 3, "{versions:?}");
}

/// The `tobytes()` + JSON metadata layout of the Python recipe (raw, lz4, zlib), as
/// its two keys: [`DataMetaStore`] reads it.
#[test]
fn recipe_values_written_by_python_decode() {
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let metas: Vec<PathBuf> = fixtures("recipe")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "meta"))
        .collect();
    assert_eq!(metas.len(), 4);
    let store = DataMetaStore::new("py");
    for meta in metas {
        let stem = meta.file_stem().unwrap().to_str().unwrap().to_owned();
        let [_, dtype, shape] = stem.split('-').collect::<Vec<_>>()[..] else {
            panic!("{stem}: not compression-dtype-shape");
        };
        let dtype: DType = dtype.parse().unwrap();
        let shape = parse_shape(shape);
        let data = std::fs::read(meta.with_extension("data")).unwrap();
        let _: () = redis::cmd("MSET")
            .arg(format!("py:{stem}:data"))
            .arg(data)
            .arg(format!("py:{stem}:meta"))
            .arg(std::fs::read(&meta).unwrap())
            .query(&mut con)
            .unwrap();
        let got = store
            .get(&mut con, &stem)
            .unwrap_or_else(|e| panic!("{stem}: {e}"))
            .unwrap();
        assert_eq!(got, sample(dtype, &shape, Order::C), "{stem}");
    }
}

/// The table every Arrow fixture holds (rows `from..to` of it).
fn check_table(what: &str, batches: &[RecordBatch], from: i64, to: i64) {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows as i64, to - from, "{what}");
    let mut i = from;
    for b in batches {
        let names: Vec<&str> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["id", "part", "x", "s", "color", "flag"], "{what}");
        let id = b.column(0).as_primitive::<Int64Type>();
        let part = b.column(1).as_primitive::<Int32Type>();
        let x = b.column(2).as_primitive::<Float64Type>();
        let s = b.column(3).as_string::<i32>();
        let color = b.column(4).as_dictionary::<Int32Type>();
        let colors = color.values().as_string::<i32>();
        let flag = b.column(5).as_boolean();
        for r in 0..b.num_rows() {
            assert_eq!(id.value(r), i, "{what}");
            assert_eq!(i64::from(part.value(r)), i % 3, "{what}");
            assert_eq!(x.value(r), i as f64 * 0.25, "{what}");
            assert_eq!(s.value(r), format!("row{i}"), "{what}");
            let c = colors.value(color.keys().value(r) as usize);
            assert_eq!(c, ["red", "green", "blue"][(i % 3) as usize], "{what}");
            assert_eq!(flag.value(r), i % 2 == 0, "{what}");
            assert!(b.columns().iter().all(|c| c.null_count() == 0), "{what}");
            i += 1;
        }
    }
}

/// pyarrow's IPC files and streams (zstd, lz4, uncompressed; a dictionary column):
/// read batch by batch with [`IpcInput`], the streams also whole with
/// [`decode_stream`].
#[test]
fn arrow_ipc_files_and_streams_written_by_pyarrow_decode() {
    let limits = Limits::default();
    let mut seen = 0;
    for path in fixtures("arrow") {
        let name = name_of(&path);
        let Some(rest) = name.strip_prefix("table-") else {
            continue;
        };
        let (comp, ext) = rest.split_once('.').unwrap();
        let want = IpcCompression::from_name(comp).unwrap();
        let input = IpcInput::open(&path, limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        let format = if ext == "arrow" {
            IpcFormat::File
        } else {
            IpcFormat::Stream
        };
        assert_eq!(input.format(), format, "{name}");
        if format == IpcFormat::File {
            assert_eq!(input.num_batches(), Some(2), "{name}");
        }
        let mut batches = Vec::new();
        for b in input {
            let b = b.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(b.compression(), Some(want), "{name}");
            batches.push(b.decode(None, &limits).unwrap());
        }
        assert_eq!(batches.len(), 2, "{name}");
        check_table(&name, &batches, 0, 50);
        if format == IpcFormat::Stream {
            let (_, whole) = decode_stream(&std::fs::read(&path).unwrap(), None, &limits)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            check_table(&name, &whole, 0, 50);
        }
        seen += 1;
    }
    assert_eq!(seen, 6);
}

/// One batch as pyarrow writes it for a table in the ArrowRedis layout
/// (`r.set("t:{part=00000}:batch=00000", stream)`): [`TableStore`] reads the table.
#[test]
fn a_batch_value_written_by_pyarrow_reads_as_a_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arrow/batch-zstd.arrows");
    let value = std::fs::read(path).unwrap();
    let (_, batches) = decode_stream(&value, None, &Limits::default()).unwrap();
    check_table("batch-zstd.arrows", &batches, 0, 25);
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let store = TableStore::new("");
    let _: () = redis::cmd("SET")
        .arg(store.batch_key("t", 0, 0))
        .arg(value)
        .query(&mut con)
        .unwrap();
    let table = store
        .read(&mut con, "t", &ReadOptions::all())
        .unwrap()
        .unwrap();
    check_table("table t", &table.batches, 0, 25);
    assert_eq!(table.partitions, [(0, 1)]);
}
