//! Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from values the
//! crate itself makes: `.npy` arrays in every codec, chunk manifests, view entries, table
//! manifests, Arrow values, IPC files and streams, RESP replies. scripts/fuzz-seeds runs it
//! (and adds NumPy- and pyarrow-made seeds). Usage: `fuzz_seeds <corpus dir>`.

use std::fs;
use std::path::{Path, PathBuf};

use redstash::arrowgen::GenSpec;
use redstash::codec::arrow::{IpcCompression, encode_schema, encode_stream};
use redstash::codec::arrow_file::{IpcFormat, write_ipc};
use redstash::codec::sniff::MANIFEST_MAGIC;
use redstash::dtype::ALL_DTYPES;
use redstash::{Compression, Order, RawArray, fuzzing};

fn put(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create corpus dir");
    fs::write(d.join(name), bytes).expect("write seed");
}

fn main() -> redstash::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let codecs = [
        ("npy", Compression::None),
        ("lz4", Compression::Lz4),
        ("zlib", Compression::Zlib { level: 1 }),
        ("zstd", Compression::Zstd { level: 1 }),
    ];
    // Arrays: every dtype, small shapes, both orders.
    for (i, dtype) in ALL_DTYPES.iter().enumerate() {
        let shape = match i % 3 {
            0 => vec![3],
            1 => vec![2, 3],
            _ => vec![],
        };
        let n: usize = shape.iter().product::<usize>() * dtype.size();
        let data: Vec<u8> = (0..n).map(|b| (b % 2) as u8).collect();
        let order = if i % 2 == 0 { Order::C } else { Order::F };
        let a = RawArray::new(*dtype, shape.clone(), order, data.clone().into())?;
        for (name, c) in codecs {
            let v = fuzzing::encode_array(&a, c)?;
            let seed = format!("{}-{name}", dtype.name());
            put(&dir, "decode_array", &seed, &v);
            put(&dir, "inspect", &seed, &v);
            if c == Compression::None {
                put(&dir, "npy", &seed, &v);
            }
        }
        let mut rt = vec![i as u8, (i % 2) as u8, shape.len() as u8];
        rt.extend(
            shape
                .iter()
                .take(shape.len().saturating_sub(1))
                .map(|&d| d as u8),
        );
        rt.extend(&data);
        put(&dir, "array_roundtrip", dtype.name(), &rt);
    }
    // Compression: each format over a small .npy and over text.
    let npy = fuzzing::encode_array(
        &RawArray::from_vec(vec![4], vec![1.0f32, 2.0, 3.0, 4.0])?,
        Compression::None,
    )?;
    for (name, c) in &codecs[1..] {
        for (what, input) in [
            ("npy", npy.as_slice()),
            ("text", b"hello hello hello hello".as_slice()),
        ] {
            put(
                &dir,
                &format!("decompress_{name}"),
                what,
                &c.compress(input)?,
            );
        }
    }
    // Chunk manifests: a valid one, and the one of an empty value, in the first form (no
    // checksum) and in the current one (the xxh3-64 of the value appended).
    for (name, chunks, total, chunk_len) in [("three", 3u32, 2500u64, 1000u64), ("empty", 0, 0, 1)]
    {
        let mut m = MANIFEST_MAGIC.to_vec();
        m.extend(0x1234_5678_9abc_def0u64.to_le_bytes());
        m.extend(chunks.to_le_bytes());
        m.extend(total.to_le_bytes());
        m.extend(chunk_len.to_le_bytes());
        put(&dir, "chunk_manifest", name, &m);
        let value = vec![0x5au8; total as usize];
        m.extend(xxhash_rust::xxh3::xxh3_64(&value).to_le_bytes());
        put(&dir, "chunk_manifest", &format!("{name}-checksum"), &m);
    }
    // View registry entries.
    put(
        &dir,
        "view_entry",
        "f32",
        br#"{"dtype":"float32","dim":128,"ttl_ms":null,"layout":"native"}"#,
    );
    put(
        &dir,
        "view_entry",
        "ttl",
        br#"{"dtype":"<f8","dim":4,"ttl_ms":60000}"#,
    );
    put(
        &dir,
        "view_entry",
        "recipe",
        br#"{"dtype":"int64","dim":1,"layout":"recipe"}"#,
    );
    // Arrow: values, IPC files and streams, concatenation inputs, a table manifest.
    for dict in [false, true] {
        let spec = GenSpec {
            partitions: 1,
            batches: 2,
            rows: 5,
            dict_strings: dict,
            string_cardinality: 8,
            ..GenSpec::default()
        };
        let b0 = spec.batch(0, 0)?;
        let b1 = spec.batch(0, 1)?;
        let schema = b0.schema();
        let tag = if dict { "dict" } else { "plain" };
        for comp in [
            IpcCompression::None,
            IpcCompression::Lz4,
            IpcCompression::Zstd,
        ] {
            let v = encode_stream(&schema, std::slice::from_ref(&b0), comp)?;
            put(&dir, "arrow_value", &format!("{tag}-{}", comp.name()), &v);
            for (fmt, target) in [
                (IpcFormat::Stream, "ipc_stream"),
                (IpcFormat::File, "ipc_file"),
            ] {
                let mut out = Vec::new();
                write_ipc(
                    &mut out,
                    &schema,
                    [Ok(b0.clone()), Ok(b1.clone())],
                    fmt,
                    comp,
                    |_, _| {},
                )?;
                put(&dir, target, &format!("{tag}-{}", comp.name()), &out);
                if fmt == IpcFormat::Stream {
                    put(
                        &dir,
                        "ipc_file",
                        &format!("stream-{tag}-{}", comp.name()),
                        &out,
                    );
                }
            }
            if !dict {
                for file in [0u8, 1] {
                    let mut cat = vec![file];
                    cat.extend(encode_schema(&schema)?);
                    for b in [&b0, &b1] {
                        cat.extend(b"SPLITSEP");
                        cat.extend(encode_stream(&schema, &[(*b).clone()], comp)?);
                    }
                    put(&dir, "ipc_concat", &format!("{}-{file}", comp.name()), &cat);
                }
            }
        }
        let hex: String = encode_schema(&schema)?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let manifest = format!(
            r#"{{"format":"redstash.table","version":1,"generation":7,"compression":"lz4","created_at_ms":1700000000000,"rows":10,"bytes":4096,"partitions":[{{"id":0,"batches":2,"rows":10,"bytes":4096}}],"schema":"{hex}"}}"#
        );
        put(&dir, "table_manifest", tag, manifest.as_bytes());
    }
    // RESP: two cut bytes, then replies a server sends.
    let resp: [(&str, &[u8]); 6] = [
        ("ok", b"+OK\r\n"),
        (
            "err",
            b"-ERR unknown command\r\n-WRONGTYPE Operation against a key\r\n",
        ),
        ("int", b":42\r\n:-1\r\n"),
        ("bulk", b"$5\r\nhello\r\n$-1\r\n$0\r\n\r\n"),
        (
            "array",
            b"*3\r\n$3\r\nfoo\r\n*2\r\n:1\r\n*0\r\n+QUEUED\r\n*-1\r\n",
        ),
        (
            "exec",
            b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n$2\r\nhi\r\n",
        ),
    ];
    for (name, r) in resp {
        let mut v = vec![1u8, 3];
        v.extend_from_slice(r);
        put(&dir, "resp", name, &v);
    }
    let mut large = vec![2u8, 200];
    large.extend(format!("${}\r\n", 70_000).as_bytes());
    large.extend(std::iter::repeat_n(b'x', 70_000));
    large.extend(b"\r\n");
    put(&dir, "resp", "large-bulk", &large);
    Ok(())
}
