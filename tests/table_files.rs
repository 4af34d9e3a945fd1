//! `TableStore::split_ipc`: tables split from Arrow IPC files and streams on disk, on
//! every backend against real redis-servers: batches re-framed as they are stored in
//! the file (no recompression), re-encoded when the compression differs, partitioned
//! by blocks or by column, and bad files as typed errors with no manifest written.
#![cfg(all(
    feature = "arrow",
    feature = "testkit",
    feature = "tokio",
    feature = "sync"
))]

mod common;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, Schema};
use common::{Backend, on_backend, server};
use redstash::ValueProblem;
use redstash::arrowgen::GenSpec;
use redstash::codec::arrow::IpcCompression;
use redstash::codec::arrow_file::{END_OF_STREAM, IpcFormat, IpcInput};
use redstash::store::table::{Partitioning, ReadOptions};
use redstash::{Error, Limits, TableStore};

fn spec() -> GenSpec {
    GenSpec {
        partitions: 3,
        batches: 2,
        rows: 300,
        seed: 5,
        dict_strings: true,
        string_cardinality: 40,
    }
}

fn write(spec: &GenSpec, path: &Path, format: IpcFormat, c: IpcCompression) {
    let f = std::fs::File::create(path).unwrap();
    spec.write_ipc(f, format, c, 2, |_, _| {}).unwrap();
}

fn open(path: &Path) -> IpcInput {
    IpcInput::open(path, Limits::default()).unwrap()
}

backend_tests!(file_batches_are_reframed_not_recompressed);
fn file_batches_are_reframed_not_recompressed(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.arrow");
        let spec = spec();
        write(&spec, &path, IpcFormat::File, IpcCompression::Zstd);
        let input = open(&path);
        assert_eq!(input.format(), IpcFormat::File);
        assert_eq!(input.num_batches(), Some(6));
        let store = TableStore::new("f")
            .with_partitioning(Partitioning::Blocks(2))
            .with_pipeline_bytes(50_000);
        let info = call!(con, store.split_ipc / split_ipc_async("t", open(&path))).unwrap();
        assert_eq!((info.rows, info.batches()), (1800, 6), "{backend:?}");
        assert_eq!(info.partitions.len(), 3);
        let t = call!(con, store.read / read_async("t", &ReadOptions::all()))
            .unwrap()
            .expect("table");
        let want: Vec<RecordBatch> = spec.iter().collect::<redstash::Result<_>>().unwrap();
        assert_eq!(t.batches, want, "{backend:?}");
        assert_eq!(t.partitions, vec![(0, 2), (1, 2), (2, 2)]);
        // The stored value ends with the file's own batch message: re-framed, not
        // decoded and compressed again.
        let encoded: Vec<_> = open(&path).collect::<redstash::Result<_>>().unwrap();
        let pieces = encoded[3].stream_pieces(encoded[3].schema_message());
        let message = &pieces[pieces.len() - 2];
        let raw: Vec<u8> = con
            .raw(redis::cmd("GET").arg(store.batch_key("t", 1, 1)))
            .await
            .unwrap();
        assert!(raw.ends_with(&[&message[..], &END_OF_STREAM[..]].concat()));
        assert_eq!(encoded[3].compression(), Some(IpcCompression::Zstd));
    });
}

backend_tests!(streams_of_another_compression_are_reencoded_and_partitioned_by_column);
fn streams_of_another_compression_are_reencoded_and_partitioned_by_column(backend: Backend) {
    on_backend(backend, |backend, mut con| async move {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.arrows");
        let spec = spec();
        write(&spec, &path, IpcFormat::Stream, IpcCompression::Lz4);
        let input = open(&path);
        assert_eq!(input.format(), IpcFormat::Stream);
        assert_eq!(input.num_batches(), None);
        let store = TableStore::new("s")
            .with_partition_by("partition")
            .with_compression(IpcCompression::Zstd);
        let info = call!(con, store.split_ipc / split_ipc_async("t", input)).unwrap();
        assert_eq!(info.compression, IpcCompression::Zstd);
        let t = call!(
            con,
            store.read / read_async("t", &ReadOptions::all().with_partitions([2]))
        )
        .unwrap()
        .expect("table");
        assert_eq!(
            t.batches,
            vec![spec.batch(2, 0).unwrap(), spec.batch(2, 1).unwrap()]
        );
        // The stored batch is zstd now.
        let raw: Vec<u8> = con
            .raw(redis::cmd("GET").arg(store.batch_key("t", 0, 0)))
            .await
            .unwrap();
        let mut stored = IpcInput::from_stream(Cursor::new(raw), Limits::default()).unwrap();
        let b = stored.next().unwrap().unwrap();
        assert_eq!(b.compression(), Some(IpcCompression::Zstd), "{backend:?}");
        assert_eq!(b.num_rows(), 300);
    });
}

/// Batches holding several partitions each are cut (decoded); uniform ones are not.
#[test]
fn mixed_partition_batches_are_cut() {
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.arrows");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("partition", DataType::Int32, false),
    ]));
    let batch = |ids: Vec<i64>, parts: Vec<i32>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)) as ArrayRef,
                Arc::new(Int32Array::from(parts)) as ArrayRef,
            ],
        )
        .unwrap()
    };
    let input = [
        batch(vec![0, 1, 2, 3, 4], vec![0, 0, 1, 1, 2]),
        batch(vec![5, 6], vec![2, 2]),
    ];
    let opts = IpcWriteOptions::default()
        .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
        .unwrap();
    let mut w =
        StreamWriter::try_new_with_options(std::fs::File::create(&path).unwrap(), &schema, opts)
            .unwrap();
    for b in &input {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let store = TableStore::new("m").with_partition_by("partition");
    let info = store.split_ipc(&mut con, "t", open(&path)).unwrap();
    let batches: Vec<(u32, u32)> = info.partitions.iter().map(|p| (p.id, p.batches)).collect();
    assert_eq!(batches, vec![(0, 1), (1, 1), (2, 2)]);
    let t = store
        .read(&mut con, "t", &ReadOptions::all().with_partitions([2]))
        .unwrap()
        .unwrap();
    let ids: Vec<i64> = t
        .batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, vec![4, 5, 6]);
}

#[test]
fn bad_files_are_typed_errors_and_write_no_manifest() {
    let srv = server();
    let mut con = srv.client().unwrap().get_connection().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec();
    let store = TableStore::new("bad");

    // A file cut short: no footer.
    let file = dir.path().join("t.arrow");
    write(&spec, &file, IpcFormat::File, IpcCompression::Zstd);
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.arrow");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = IpcInput::open(&cut, Limits::default()).unwrap_err();
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

    // A stream cut in the middle of a batch: the batches before it are written, the
    // split fails, and there is no manifest (the table does not exist for readers).
    let stream = dir.path().join("t.arrows");
    write(&spec, &stream, IpcFormat::Stream, IpcCompression::Zstd);
    let bytes = std::fs::read(&stream).unwrap();
    let cut = dir.path().join("cut.arrows");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = store
        .split_ipc(
            &mut con,
            "t",
            IpcInput::open(&cut, Limits::default()).unwrap(),
        )
        .unwrap_err();
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
    assert!(store.info(&mut con, "t").unwrap().is_none());

    // Not Arrow at all.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"definitely not arrow, just some text\n").unwrap();
    let e = IpcInput::open(&junk, Limits::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidValue {
                problem: ValueProblem::UnknownFormat { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains(&format!(
            "not an Arrow IPC file or stream: {}",
            junk.display()
        )),
        "{e}"
    );
    // A body length beyond the cap is refused before it is read.
    let tiny = Limits {
        max_value_len: 1000,
        ..Limits::default()
    };
    let e = IpcInput::open(&stream, tiny)
        .and_then(|i| i.collect::<redstash::Result<Vec<_>>>())
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidValue {
                problem: ValueProblem::TooLarge { .. },
                ..
            }
        ),
        "{e}"
    );
    // A missing file names the path.
    let e = IpcInput::open(dir.path().join("nope.arrow"), Limits::default()).unwrap_err();
    assert!(common::error_chain(&e).contains("nope.arrow"), "{e}");
}

#[test]
fn split_ipc_parallel_matches_split_ipc() {
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.arrow");
    let spec = GenSpec {
        partitions: 4,
        batches: 3,
        ..spec()
    };
    write(&spec, &path, IpcFormat::File, IpcCompression::Zstd);
    let store = TableStore::new("p")
        .with_partitioning(Partitioning::Blocks(3))
        .with_pipeline_bytes(40_000)
        .with_pipeline_batches(2);
    let mut cons: Vec<redstash::direct::DirectConnection> = (0..3)
        .map(|_| redstash::direct::DirectConnection::open(srv.url().as_str()).unwrap())
        .collect();
    let seq = store.split_ipc(&mut cons[0], "seq", open(&path)).unwrap();
    let par = store
        .split_ipc_parallel(&mut cons, "par", open(&path))
        .unwrap();
    assert_eq!(par.partitions, seq.partitions);
    assert_eq!((par.rows, par.bytes), (seq.rows, seq.bytes));
    let t = store
        .read_parallel(&mut cons, "par", &ReadOptions::all())
        .unwrap()
        .unwrap();
    let want: Vec<RecordBatch> = spec.iter().collect::<redstash::Result<_>>().unwrap();
    assert_eq!(t.batches, want);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// A small valid IPC file or stream of the full generated schema (lz4, so a flipped
    /// byte can land in compressed buffers, lengths, flatbuffers and dictionaries).
    fn valid(stream: bool) -> Vec<u8> {
        let spec = GenSpec {
            partitions: 1,
            batches: 2,
            rows: 20,
            seed: 3,
            dict_strings: true,
            string_cardinality: 5,
        };
        let mut out = Vec::new();
        let format = if stream {
            IpcFormat::Stream
        } else {
            IpcFormat::File
        };
        spec.write_ipc(&mut out, format, IpcCompression::Lz4, 1, |_, _| {})
            .unwrap();
        out
    }

    /// Open, walk and decode everything: errors are fine, panics are not.
    fn exercise(bytes: Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, &bytes).unwrap();
        let limits = Limits {
            max_value_len: 1 << 20,
            ..Limits::default()
        };
        if let Ok(input) = IpcInput::open(&path, limits) {
            for b in input {
                match b {
                    Ok(b) => {
                        let _ = b.decode(None, &limits);
                        // The one-message path (a column that needs no dictionary).
                        let _ = b.decode(Some(&["partition".to_owned()]), &limits);
                    }
                    Err(_) => break,
                }
            }
        }
        let _ = IpcInput::from_stream(Cursor::new(bytes), limits).map(|i| i.count());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn mutated_ipc_inputs_never_panic(
            stream in any::<bool>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut bytes = valid(stream);
            for (at, v) in flips {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            exercise(bytes);
        }
    }

    #[test]
    fn the_unmutated_inputs_decode() {
        for stream in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x");
            std::fs::write(&path, valid(stream)).unwrap();
            let batches: Vec<_> = IpcInput::open(&path, Limits::default())
                .unwrap()
                .map(|b| b.unwrap().decode(None, &Limits::default()).unwrap())
                .collect();
            assert_eq!(batches.len(), 2);
        }
    }
}
