//! Hostile Arrow IPC values planted in Redis or written to files: buffers declaring a
//! decompressed length far over [`Limits::max_value_len`], buffers that declare 16
//! bytes and decompress to 96 MiB (bombs), negative row counts. Every reader (the
//! codec with and without a projection, `IpcInput` files and streams, `IpcConcat`,
//! `TableStore::read`, `read_each`, `read_parallel`, `read_ipc`) fails with a typed
//! error quickly, and the process's peak memory stays small (`VmHWM`; nextest runs each
//! test in a process of its own).
#![cfg(all(feature = "arrow", feature = "testkit", feature = "sync"))]

use std::io::{Cursor, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int64Array, NullArray, RecordBatch, UInt8Array};
use redstash::ValueProblem;
use redstash::codec::arrow::{IpcCompression, decode_stream, encode_stream};
use redstash::codec::arrow_concat::IpcConcat;
use redstash::codec::arrow_file::{IpcFormat, IpcInput, write_ipc};
use redstash::store::table::ReadOptions;
use redstash::testkit::RedisServer;
use redstash::{Error, Limits, TableStore};

/// Bytes of zeros each bomb buffer expands to.
const EXPANSION: usize = 96 << 20;

/// A declared decompressed length far over the default limit (4 GiB).
const HUGE: i64 = 1 << 40;

const CODECS: [IpcCompression; 2] = [IpcCompression::Zstd, IpcCompression::Lz4];

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 16 rows: `id` (int64), `u` (uint8), `d` (a dictionary of strings).
fn batch() -> RecordBatch {
    let d: DictionaryArray<Int32Type> = (0..16).map(|i| ["a", "bb", "ccc"][i % 3]).collect();
    RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..16)) as ArrayRef,
        ),
        (
            "u",
            Arc::new(UInt8Array::from_iter_values(0..16)) as ArrayRef,
        ),
        ("d", Arc::new(d) as ArrayRef),
    ])
    .unwrap()
}

/// One encapsulated message of a stream: metadata flatbuffer and body.
struct Msg {
    meta: Vec<u8>,
    body: Vec<u8>,
}

fn u32_at(v: &[u8], at: usize) -> usize {
    u32::from_le_bytes(v[at..at + 4].try_into().unwrap()) as usize
}

/// The messages of a stream written by arrow-rs (continuation markers, ends with EOS).
fn messages(v: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= v.len() {
        let len = u32_at(v, pos + 4);
        if len == 0 {
            break;
        }
        let meta = v[pos + 8..pos + 8 + len].to_vec();
        let body_len = arrow_ipc::root_as_message(&meta).unwrap().bodyLength() as usize;
        let start = pos + 8 + len;
        out.push(Msg {
            meta,
            body: v[start..start + body_len].to_vec(),
        });
        pos = start + body_len;
    }
    out
}

/// A stream of `msgs` (metadata padded to 8 bytes, end-of-stream marker).
fn assemble(msgs: &[Msg]) -> Vec<u8> {
    let mut v = Vec::new();
    for m in msgs {
        let padded = m.meta.len().next_multiple_of(8);
        v.extend_from_slice(&[0xFF; 4]);
        v.extend_from_slice(&(padded as u32).to_le_bytes());
        v.extend_from_slice(&m.meta);
        v.resize(v.len() + padded - m.meta.len(), 0);
        v.extend_from_slice(&m.body);
    }
    v.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
    v
}

/// A record batch message rebuilt after `f` changed its row count, field nodes or
/// buffers (each buffer's bytes, length prefix included when compressed).
fn rewrite_batch(
    m: &Msg,
    f: impl FnOnce(&mut i64, &mut Vec<arrow_ipc::FieldNode>, &mut Vec<Vec<u8>>),
) -> Msg {
    let msg = arrow_ipc::root_as_message(&m.meta).unwrap();
    let rb = msg.header_as_record_batch().unwrap();
    let mut length = rb.length();
    let mut nodes: Vec<arrow_ipc::FieldNode> = rb.nodes().unwrap().iter().copied().collect();
    let mut bufs: Vec<Vec<u8>> = rb
        .buffers()
        .unwrap()
        .iter()
        .map(|b| m.body[b.offset() as usize..][..b.length() as usize].to_vec())
        .collect();
    f(&mut length, &mut nodes, &mut bufs);
    let mut body = Vec::new();
    let mut specs = Vec::new();
    for b in &bufs {
        specs.push(arrow_ipc::Buffer::new(body.len() as i64, b.len() as i64));
        body.extend_from_slice(b);
        body.resize(body.len().next_multiple_of(8), 0);
    }
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let nodes = fbb.create_vector(&nodes);
    let buffers = fbb.create_vector(&specs);
    let compression = rb.compression().map(|c| {
        arrow_ipc::BodyCompression::create(
            &mut fbb,
            &arrow_ipc::BodyCompressionArgs {
                codec: c.codec(),
                method: c.method(),
            },
        )
    });
    let header = arrow_ipc::RecordBatch::create(
        &mut fbb,
        &arrow_ipc::RecordBatchArgs {
            length,
            nodes: Some(nodes),
            buffers: Some(buffers),
            compression,
            variadicBufferCounts: None,
        },
    );
    let out = arrow_ipc::Message::create(
        &mut fbb,
        &arrow_ipc::MessageArgs {
            version: msg.version(),
            header_type: arrow_ipc::MessageHeader::RecordBatch,
            header: Some(header.as_union_value()),
            bodyLength: body.len() as i64,
            custom_metadata: None,
        },
    );
    fbb.finish(out, None);
    Msg {
        meta: fbb.finished_data().to_vec(),
        body,
    }
}

/// `value` with every record batch message rewritten by `f`.
fn rewrite(
    value: &[u8],
    f: impl Fn(&mut i64, &mut Vec<arrow_ipc::FieldNode>, &mut Vec<Vec<u8>>),
) -> Vec<u8> {
    let msgs: Vec<Msg> = messages(value)
        .into_iter()
        .map(|m| {
            let is_batch = arrow_ipc::root_as_message(&m.meta)
                .unwrap()
                .header_as_record_batch()
                .is_some();
            if is_batch { rewrite_batch(&m, &f) } else { m }
        })
        .collect();
    assemble(&msgs)
}

/// Where the length prefix of the first compressed buffer of the (record batch or
/// dictionary) message at `value[at..]` is, in `value` (a stream or a file).
fn first_prefix(value: &[u8], at: usize) -> usize {
    let len = u32_at(value, at + 4);
    let msg = arrow_ipc::root_as_message(&value[at + 8..at + 8 + len]).unwrap();
    let rb = msg
        .header_as_record_batch()
        .or_else(|| msg.header_as_dictionary_batch().and_then(|d| d.data()))
        .unwrap();
    let b = rb
        .buffers()
        .unwrap()
        .iter()
        .find(|b| b.length() >= 8)
        .unwrap();
    at + 8 + len + b.offset() as usize
}

/// Offsets of the messages of a stream whose header is a dictionary (`dict`) or a
/// record batch.
fn message_offsets(value: &[u8], dict: bool) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= value.len() {
        let len = u32_at(value, pos + 4);
        if len == 0 {
            break;
        }
        let msg = arrow_ipc::root_as_message(&value[pos + 8..pos + 8 + len]).unwrap();
        let hit = if dict {
            msg.header_as_dictionary_batch().is_some()
        } else {
            msg.header_as_record_batch().is_some()
        };
        if hit {
            out.push(pos);
        }
        pos += 8 + len + msg.bodyLength() as usize;
    }
    out
}

fn patch(value: &mut [u8], at: usize, declared: i64) {
    value[at..at + 8].copy_from_slice(&declared.to_le_bytes());
}

/// A buffer declaring 16 decompressed bytes whose compressed data expands to
/// [`EXPANSION`] bytes.
fn bomb_buffer(c: IpcCompression) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut out = 16i64.to_le_bytes().to_vec();
    match c {
        IpcCompression::Zstd => {
            let mut z = zstd::stream::write::Encoder::new(&mut out, 3).unwrap();
            for _ in 0..EXPANSION >> 20 {
                z.write_all(&zeros).unwrap();
            }
            z.finish().unwrap();
        }
        IpcCompression::Lz4 => {
            let mut l = lz4_flex::frame::FrameEncoder::new(&mut out);
            for _ in 0..EXPANSION >> 20 {
                l.write_all(&zeros).unwrap();
            }
            l.finish().unwrap();
        }
        other => unreachable!("no bomb for {other:?}"),
    }
    out
}

/// The values buffer of column `u` (buffers: id validity, id values, u validity, u
/// values, ...).
const U_VALUES: usize = 3;

/// Hostile values of each kind, by name, all of [`batch`]'s schema.
fn hostile_values() -> Vec<(String, Vec<u8>)> {
    let b = batch();
    let mut out = Vec::new();
    for c in CODECS {
        let v = encode_stream(&b.schema(), std::slice::from_ref(&b), c).unwrap();
        let mut w = v.clone();
        patch(
            &mut w,
            first_prefix(&v, message_offsets(&v, false)[0]),
            HUGE,
        );
        out.push((format!("{c:?}-huge-batch-buffer"), w));
        let mut w = v.clone();
        patch(&mut w, first_prefix(&v, message_offsets(&v, true)[0]), HUGE);
        out.push((format!("{c:?}-huge-dictionary-buffer"), w));
        let bomb = bomb_buffer(c);
        let w = rewrite(&v, |_, _, bufs| bufs[U_VALUES] = bomb.clone());
        out.push((format!("{c:?}-bomb"), w));
    }
    out
}

fn is_too_large_or_corrupt(e: &Error) -> bool {
    matches!(
        e.value_problem(),
        Some(ValueProblem::TooLarge { .. } | ValueProblem::Corrupt { .. })
    )
}

fn check(name: &str, what: &str, started: Instant, r: Result<impl std::fmt::Debug, Error>) {
    let elapsed = started.elapsed();
    match r {
        Err(e) => {
            assert!(is_too_large_or_corrupt(&e), "{name} {what}: {e:?}");
            if name.contains("huge") {
                assert!(
                    matches!(
                        &e,
                        Error::InvalidValue {
                            problem: ValueProblem::TooLarge { .. },
                            ..
                        }
                    ),
                    "{name} {what}: {e:?}"
                );
            }
        }
        Ok(v) => panic!("{name} {what}: decoded {v:?}"),
    }
    assert!(
        elapsed < Duration::from_secs(2),
        "{name} {what} took {elapsed:?}"
    );
}

#[test]
fn hostile_ipc_values_fail_fast_with_bounded_memory() {
    let srv = RedisServer::start().unwrap();
    let client = srv.client().unwrap();
    let mut con = client.get_connection().unwrap();
    let mut cons: Vec<redis::Connection> =
        (0..2).map(|_| client.get_connection().unwrap()).collect();
    let store = TableStore::new("hostile");
    let lim = Limits::default();
    let values = hostile_values();
    // Each also as a table without manifest (as ArrowRedis would store it).
    for (name, v) in &values {
        redis::cmd("SET")
            .arg(store.batch_key(&format!("t-{name}"), 0, 0))
            .arg(v.as_slice())
            .exec(&mut con)
            .unwrap();
    }
    let before = peak_rss_kib();
    let id = vec!["id".to_owned()];
    let u = vec!["u".to_owned()];
    for (name, v) in &values {
        let t = Instant::now();
        check(name, "decode_stream", t, decode_stream(v, None, &lim));
        let t = Instant::now();
        check(
            name,
            "decode_stream [u]",
            t,
            decode_stream(v, Some(&u), &lim),
        );
        let t = Instant::now();
        if name.contains("huge") {
            // Declared sizes are checked over the whole value; a bomb in `u` does not
            // stop a projection that leaves `u` out.
            check(
                name,
                "decode_stream [id]",
                t,
                decode_stream(v, Some(&id), &lim),
            );
        }
        // An IPC stream read batch by batch: the batch is not decoded until asked.
        let t = Instant::now();
        let mut input = IpcInput::from_stream(Cursor::new(v.clone()), lim).unwrap();
        let encoded = input.next().unwrap().unwrap();
        check(name, "EncodedBatch::decode", t, encoded.decode(None, &lim));
        if !name.contains("dictionary") {
            // (Without dictionary columns only the batch message is decoded.)
            check(
                name,
                "EncodedBatch::decode [u]",
                t,
                encoded.decode(Some(&u), &lim),
            );
        }
        let t = Instant::now();
        let mut cat = IpcConcat::new(Vec::new(), &batch().schema(), IpcFormat::File).unwrap();
        let appended = cat.append(v, &lim).map(|_| ());
        if name.contains("bomb") {
            // IpcConcat copies batches without decoding them (a reader of its output
            // validates them): a bomb is copied, small as it is.
            assert!(appended.is_ok(), "{name}: {appended:?}");
        } else {
            check(name, "IpcConcat::append", t, appended);
        }
        let table = format!("t-{name}");
        let all = ReadOptions::all();
        let cols = ReadOptions::all().with_columns(["u"]);
        for opts in [&all, &cols] {
            let t = Instant::now();
            check(
                name,
                "TableStore::read",
                t,
                store.read(&mut con, &table, opts),
            );
            let t = Instant::now();
            check(
                name,
                "TableStore::read_each",
                t,
                store.read_each(&mut cons, &table, opts, |_, _| Ok(())),
            );
            let t = Instant::now();
            check(
                name,
                "TableStore::read_parallel",
                t,
                store.read_parallel(&mut cons, &table, opts),
            );
        }
        // read_ipc copies stored batches of the output's compression as they are
        // (a reader of the file validates them); other compressions are decoded.
        for c in [
            IpcCompression::None,
            IpcCompression::Zstd,
            IpcCompression::Lz4,
        ] {
            let t = Instant::now();
            let r = store.read_ipc(&mut cons, &table, &all, Vec::new(), IpcFormat::File, c);
            if name.contains("bomb") && name.starts_with(&format!("{c:?}")) {
                assert!(t.elapsed() < Duration::from_secs(2));
                continue;
            }
            check(
                name,
                &format!("TableStore::read_ipc {c:?}"),
                t,
                r.map(|_| ()),
            );
        }
    }
    let after = peak_rss_kib();
    eprintln!("peak RSS before the reads {before} KiB, after {after} KiB");
    assert!(
        after < before + 32 * 1024,
        "reads raised the peak RSS from {before} KiB to {after} KiB"
    );
}

/// The first buffer of a record batch (or dictionary) block of an IPC file declaring
/// [`HUGE`] decompressed bytes: `IpcInput` yields the batch undecoded, decoding it (all
/// columns, or a projection) is `TooLarge`.
#[test]
fn huge_declared_lengths_in_ipc_files_are_refused() {
    let b = batch();
    let lim = Limits::default();
    let dir = tempfile::tempdir().unwrap();
    for c in CODECS {
        let mut file = Vec::new();
        write_ipc(
            &mut file,
            &b.schema(),
            [Ok(b.clone())],
            IpcFormat::File,
            c,
            |_, _| {},
        )
        .unwrap();
        let footer_len = u32_at(&file, file.len() - 10);
        let footer_at = file.len() - 10 - footer_len;
        let footer = arrow_ipc::root_as_footer(&file[footer_at..file.len() - 10]).unwrap();
        let batch_at = footer.recordBatches().unwrap().get(0).offset() as usize;
        let dict_at = footer.dictionaries().unwrap().get(0).offset() as usize;
        for (what, at) in [("batch", batch_at), ("dictionary", dict_at)] {
            let mut w = file.clone();
            patch(&mut w, first_prefix(&file, at), HUGE);
            let path = dir.path().join(format!("{c:?}-{what}.arrow"));
            std::fs::write(&path, &w).unwrap();
            let mut input = IpcInput::open(&path, lim).unwrap();
            let encoded = input.next().unwrap().unwrap();
            let mut projections = vec![None, Some(vec!["d".to_owned()])];
            if what == "batch" {
                projections.push(Some(vec!["id".to_owned()]));
            }
            for cols in projections {
                let e = encoded.decode(cols.as_deref(), &lim).unwrap_err();
                assert!(
                    matches!(
                        e,
                        Error::InvalidValue {
                            problem: ValueProblem::TooLarge { .. },
                            ..
                        }
                    ),
                    "{c:?} {what} {cols:?}: {e:?}"
                );
            }
        }
    }
}

/// A record batch of a null column declaring -1 rows: `arrow-ipc` casts the count to
/// `usize`, so it would decode as a batch of `usize::MAX` rows.
#[test]
fn negative_row_counts_are_corrupt() {
    let b = RecordBatch::try_from_iter([("n", Arc::new(NullArray::new(5)) as ArrayRef)]).unwrap();
    let lim = Limits::default();
    for c in [IpcCompression::None, IpcCompression::Zstd] {
        let v = encode_stream(&b.schema(), std::slice::from_ref(&b), c).unwrap();
        assert_eq!(decode_stream(&v, None, &lim).unwrap().1, vec![b.clone()]);
        let w = rewrite(&v, |length, nodes, _| {
            *length = -1;
            nodes[0] = arrow_ipc::FieldNode::new(-1, -1);
        });
        match decode_stream(&w, None, &lim) {
            Err(Error::InvalidValue {
                problem: ValueProblem::Corrupt { .. },
                ..
            }) => {}
            Ok((_, got)) => panic!("{c:?}: decoded {} rows", got[0].num_rows()),
            Err(e) => panic!("{c:?}: {e:?}"),
        }
        let mut cat = IpcConcat::new(Vec::new(), &b.schema(), IpcFormat::Stream).unwrap();
        assert!(
            matches!(
                cat.append(&w, &lim),
                Err(Error::InvalidValue {
                    problem: ValueProblem::Corrupt { .. },
                    ..
                })
            ),
            "{c:?}"
        );
        let mut input = IpcInput::from_stream(Cursor::new(w.clone()), lim).unwrap();
        assert!(
            matches!(
                input.next(),
                Some(Err(Error::InvalidValue {
                    problem: ValueProblem::Corrupt { .. },
                    ..
                }))
            ),
            "{c:?}"
        );
    }
}

/// Batches of one dictionary column, each adding a value: written with delta
/// dictionaries, a base dictionary and then one delta per batch.
fn delta_batches(n: usize) -> Vec<RecordBatch> {
    let words: Vec<String> = (0..n).map(|i| format!("word-{i:04}")).collect();
    (1..=n)
        .map(|k| {
            let d: DictionaryArray<Int32Type> = words[..k].iter().map(String::as_str).collect();
            RecordBatch::try_from_iter([("d", Arc::new(d) as ArrayRef)]).unwrap()
        })
        .collect()
}

fn write_deltas(batches: &[RecordBatch], file: bool) -> Vec<u8> {
    use arrow_ipc::writer::{DictionaryHandling, FileWriter, IpcWriteOptions, StreamWriter};
    let options = IpcWriteOptions::default().with_dictionary_handling(DictionaryHandling::Delta);
    let schema = batches[0].schema();
    if file {
        let mut w = FileWriter::try_new_with_options(Vec::new(), &schema, options).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        w.into_inner().unwrap()
    } else {
        let mut w = StreamWriter::try_new_with_options(Vec::new(), &schema, options).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        w.into_inner().unwrap()
    }
}

/// A small IPC file whose footer lists one delta dictionary block many times would
/// read as a file of that many dictionaries (each held in memory for every batch):
/// blocks that overlap are corrupt. Dictionaries held for the batches of a file or a
/// stream are bounded by `max_value_len` in all (deltas without end).
#[test]
fn repeated_and_endless_delta_dictionaries_are_refused() {
    let batches = delta_batches(40);
    let file = write_deltas(&batches, true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deltas.arrow");
    std::fs::write(&path, &file).unwrap();
    let input = IpcInput::open(&path, Limits::default()).unwrap();
    let got: Vec<_> = input.collect::<redstash::Result<_>>().unwrap();
    assert_eq!(got.len(), 40);
    assert_eq!(
        got[39].decode(None, &Limits::default()).unwrap(),
        batches[39]
    );

    // The same file with its footer listing the last delta 10 000 times.
    let footer_len = u32_at(&file, file.len() - 10);
    let footer_at = file.len() - 10 - footer_len;
    let footer = arrow_ipc::root_as_footer(&file[footer_at..file.len() - 10]).unwrap();
    let mut dicts: Vec<arrow_ipc::Block> = footer.dictionaries().unwrap().iter().copied().collect();
    let last = *dicts.last().unwrap();
    dicts.extend(std::iter::repeat_n(last, 10_000));
    let batch_blocks: Vec<arrow_ipc::Block> =
        footer.recordBatches().unwrap().iter().copied().collect();
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
    let schema = arrow_ipc::convert::IpcSchemaEncoder::new()
        .with_dictionary_tracker(&mut tracker)
        .schema_to_fb_offset(&mut fbb, &batches[0].schema());
    let dictionaries = fbb.create_vector(&dicts);
    let record_batches = fbb.create_vector(&batch_blocks);
    let new_footer = arrow_ipc::Footer::create(
        &mut fbb,
        &arrow_ipc::FooterArgs {
            version: footer.version(),
            schema: Some(schema),
            dictionaries: Some(dictionaries),
            recordBatches: Some(record_batches),
            custom_metadata: None,
        },
    );
    fbb.finish(new_footer, None);
    let mut hostile = file[..footer_at].to_vec();
    hostile.extend_from_slice(fbb.finished_data());
    hostile.extend_from_slice(&(fbb.finished_data().len() as u32).to_le_bytes());
    hostile.extend_from_slice(b"ARROW1");
    let path = dir.path().join("repeated.arrow");
    std::fs::write(&path, &hostile).unwrap();
    match IpcInput::open(&path, Limits::default()) {
        Err(Error::InvalidValue {
            problem: ValueProblem::Corrupt { reason, .. },
            ..
        }) => assert!(reason.contains("overlap"), "{reason}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("a footer listing one block 10 000 times was accepted"),
    }

    // Distinct deltas over the limit in all, each message under it.
    let small = Limits {
        max_value_len: 4096,
        ..Limits::default()
    };
    match IpcInput::open(dir.path().join("deltas.arrow"), small) {
        Err(Error::InvalidValue {
            problem: ValueProblem::TooLarge { cap: 4096, .. },
            ..
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    let stream = write_deltas(&batches, false);
    let input = IpcInput::from_stream(Cursor::new(stream), small).unwrap();
    let r: redstash::Result<Vec<_>> = input.collect();
    assert!(
        matches!(
            r,
            Err(Error::InvalidValue {
                problem: ValueProblem::TooLarge { cap: 4096, .. },
                ..
            })
        ),
        "{:?}",
        r.map(|v| v.len())
    );
}
