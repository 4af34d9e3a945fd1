//! The export's output side: parts in each compression, read back by `verify` and by
//! Python (gzip, zstandard); corruption, crash and resume, merge of shards; the
//! writer's throughput (ignored: `cargo test --release --features export --test
//! export_parts -- --ignored --nocapture`).

use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};
use redstash::export::{
    Compression, OutputFormat, PartProblem, PartWriter, PartWriterOptions, Shard, merge, verify,
};

const ID: &str = "01700000000000-0123abcd";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("REDSTASH_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "this test needs the venv of scripts/setup (zstandard): run it or set REDSTASH_PYTHON"
    );
    venv
}

fn options(format: OutputFormat, compression: Compression, part_size: u64) -> PartWriterOptions {
    PartWriterOptions {
        compression,
        part_size,
        export_id: Some(ID.into()),
        source: "redis://127.0.0.1:6379/0".into(),
        ..PartWriterOptions::new(format)
    }
}

fn item(format: OutputFormat, i: usize) -> (Vec<u8>, &'static str) {
    let t = ["string", "hash", "list"][i % 3];
    let line = match format {
        OutputFormat::DynamoDbJson => format!(
            r#"{{"Item":{{"pk":{{"S":"user:{i}"}},"type":{{"S":"{t}"}},"v":{{"S":"value number {i} {}"}}}}}}"#,
            "x".repeat(i % 97)
        ),
        OutputFormat::JsonLines => format!(
            r#"{{"key":"user:{i}","type":"{t}","value":"value number {i} {}"}}"#,
            "y".repeat(i % 89)
        ),
        OutputFormat::Resp => {
            let k = format!("user:{i}");
            let v = format!("v{i}");
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n*3\r\n$7\r\nPEXPIRE\r\n${}\r\n{k}\r\n$4\r\n1000\r\n",
                k.len(),
                v.len(),
                k.len()
            )
        }
    };
    (line.into_bytes(), t)
}

/// Write `n` items; returns the MD5 (hex) of all items as they read back, in order.
fn write_export(dir: &Path, opts: PartWriterOptions, n: usize) -> String {
    let format = opts.format;
    let mut w = PartWriter::open(dir, opts).unwrap();
    let mut all = Md5::new();
    for i in 0..n {
        let (line, t) = item(format, i);
        w.write_item(&line, t).unwrap();
        all.update(&line);
        if format != OutputFormat::Resp {
            all.update(b"\n");
        }
    }
    w.reject(b"too:big", "hash", "larger than the item limit")
        .unwrap();
    w.add_vanished(2);
    w.add_changed(1);
    let s = w.finish().unwrap();
    assert_eq!(s.key_count, n as u64);
    hex(&all.finalize())
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Python reads the parts in manifest order: (lines, MD5 of the content).
fn python_read(dir: &Path) -> (u64, String) {
    let script = r#"
import gzip, hashlib, json, os, sys, zstandard
d = sys.argv[1]
lines = 0
h = hashlib.md5()
for entry in open(os.path.join(d, "manifest-files.json")):
    e = json.loads(entry)
    path = os.path.join(d, e["dataFileS3Key"])
    raw = open(path, "rb").read()
    import base64
    assert base64.b64encode(hashlib.md5(raw).digest()).decode() == e["md5Checksum"], path
    if path.endswith(".gz"):
        data = gzip.decompress(raw)
    elif path.endswith(".zst"):
        data = zstandard.ZstdDecompressor().stream_reader(raw).read()
    else:
        data = raw
    h.update(data)
    lines += data.count(b"\n")
print(lines, h.hexdigest())
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace();
    (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().to_owned(),
    )
}

fn compressions() -> [Compression; 3] {
    [Compression::gzip(), Compression::zstd(), Compression::None]
}

#[test]
fn parts_in_every_compression_verify_and_read_in_python() {
    for format in [
        OutputFormat::DynamoDbJson,
        OutputFormat::JsonLines,
        OutputFormat::Resp,
    ] {
        for c in compressions() {
            let dir = tempfile::tempdir().unwrap();
            let n = 3000;
            let digest = write_export(dir.path(), options(format, c, 32 << 10), n);
            let report = verify(dir.path()).unwrap();
            assert!(report.is_ok(), "{format:?} {c:?}: {:?}", report.problems);
            assert!(
                report.parts >= 4,
                "{format:?} {c:?}: {} parts",
                report.parts
            );
            let items = if format == OutputFormat::Resp {
                2 * n
            } else {
                n
            };
            assert_eq!(report.items, items as u64);
            assert_eq!(report.rejected, 1);
            let summary = redstash::export::manifest::read_summary(dir.path()).unwrap();
            assert_eq!(summary.item_count, items as u64);
            assert_eq!(summary.item_count_by_type["hash"], 1000);
            assert_eq!((summary.vanished, summary.changed), (2, 1));
            assert_eq!(summary.output_format, format.name());
            assert_eq!(summary.version, "2020-06-30");
            let (lines, py_digest) = python_read(dir.path());
            assert_eq!(py_digest, digest, "{format:?} {c:?}");
            if format != OutputFormat::Resp {
                assert_eq!(lines, n as u64);
            }
            // Part names: <id>-<shard>-<seq>.<ext>
            let first = dir.path().join(format!(
                "data/{ID}-0000-000000{}{}",
                format.extension(),
                c.suffix()
            ));
            assert!(first.is_file(), "{}", first.display());
        }
    }
}

fn fresh(c: Compression) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_export(
        dir.path(),
        options(OutputFormat::DynamoDbJson, c, 16 << 10),
        1000,
    );
    assert!(verify(dir.path()).unwrap().is_ok());
    dir
}

fn part_key(dir: &Path, i: usize) -> String {
    redstash::export::manifest::read_files_manifest(dir).unwrap()[i]
        .data_file_s3_key
        .clone()
}

#[test]
fn verify_reports_each_damage() {
    for c in compressions() {
        // A corrupt byte.
        let dir = fresh(c);
        let key = part_key(dir.path(), 1);
        let path = dir.path().join(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let r = verify(dir.path()).unwrap();
        assert!(
            matches!(&r.problems[0], PartProblem::Md5Mismatch { key: k, .. } if *k == key),
            "{c:?}: {:?}",
            r.problems
        );

        // A count changed in the manifest.
        let dir = fresh(c);
        let mpath = dir.path().join("manifest-files.json");
        let text = std::fs::read_to_string(&mpath).unwrap();
        let mut lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let was = lines[2]["itemCount"].as_u64().unwrap();
        lines[2]["itemCount"] = (was + 1).into();
        let key = lines[2]["dataFileS3Key"].as_str().unwrap().to_owned();
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&mpath, text).unwrap();
        let r = verify(dir.path()).unwrap();
        assert!(
            r.problems.contains(&PartProblem::ItemCount {
                key,
                expected: was + 1,
                found: was
            }),
            "{:?}",
            r.problems
        );

        // A part deleted.
        let dir = fresh(c);
        let key = part_key(dir.path(), 0);
        std::fs::remove_file(dir.path().join(&key)).unwrap();
        let r = verify(dir.path()).unwrap();
        assert_eq!(r.problems[0], PartProblem::Missing { key: key.clone() });
        assert!(r.problems.iter().any(|p| matches!(
            p,
            PartProblem::Summary {
                field: "itemCount",
                ..
            }
        )));

        // A stray part.
        let dir = fresh(c);
        let key = part_key(dir.path(), 0);
        std::fs::copy(dir.path().join(&key), dir.path().join("data/stray.json.gz")).unwrap();
        let r = verify(dir.path()).unwrap();
        assert_eq!(
            r.problems,
            vec![PartProblem::Unlisted {
                key: "data/stray.json.gz".into()
            }]
        );
    }
}

#[test]
fn verify_refuses_hostile_manifests() {
    let dir = fresh(Compression::gzip());
    let mpath = dir.path().join("manifest-files.json");
    let good = std::fs::read_to_string(&mpath).unwrap();
    // A line over 1 MiB.
    std::fs::write(&mpath, format!("{}\n{good}", " ".repeat(2 << 20))).unwrap();
    let e = verify(dir.path()).unwrap_err().to_string();
    assert!(e.contains("longer than"), "{e}");
    // A key outside the directory, a negative and a huge count, a string count.
    for line in [
        r#"{"itemCount":1,"md5Checksum":"x","etag":"x","dataFileS3Key":"../../../etc/passwd"}"#,
        r#"{"itemCount":1,"md5Checksum":"x","etag":"x","dataFileS3Key":"/etc/passwd"}"#,
    ] {
        std::fs::write(&mpath, format!("{line}\n")).unwrap();
        let r = verify(dir.path()).unwrap();
        assert!(
            matches!(&r.problems[0], PartProblem::BadKey { .. }),
            "{:?}",
            r.problems
        );
    }
    for line in [
        r#"{"itemCount":-1,"md5Checksum":"x","etag":"x","dataFileS3Key":"data/a"}"#,
        r#"{"itemCount":1e30,"md5Checksum":"x","etag":"x","dataFileS3Key":"data/a"}"#,
        r#"{"itemCount":"1","md5Checksum":"x","etag":"x","dataFileS3Key":"data/a"}"#,
        r#"[1,2,3]"#,
    ] {
        std::fs::write(&mpath, format!("{line}\n")).unwrap();
        assert!(verify(dir.path()).is_err(), "{line}");
    }
    // Counts near u64::MAX add up without a panic.
    let entries: String = (0..3)
        .map(|i| {
            format!(
                "{{\"itemCount\":{},\"md5Checksum\":\"x\",\"etag\":\"x\",\"dataFileS3Key\":\"data/p{i}\"}}\n",
                u64::MAX
            )
        })
        .collect();
    std::fs::write(&mpath, entries).unwrap();
    let r = verify(dir.path()).unwrap();
    assert!(!r.is_ok());
    // A summary that is not one.
    std::fs::write(dir.path().join("manifest-summary.json"), b"{\"version\":1}").unwrap();
    assert!(verify(dir.path()).is_err());
}

#[test]
fn a_crashed_writer_resumes_with_its_completed_parts() {
    for c in compressions() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(OutputFormat::JsonLines, c, 8 << 10);
        let mut w = PartWriter::open(dir.path(), opts.clone()).unwrap();
        let mut i = 0;
        while w.completed_parts().len() < 3 {
            let (line, t) = item(OutputFormat::JsonLines, i);
            w.write_item(&line, t).unwrap();
            i += 1;
            if w.open_part_items() == 0 {
                continue;
            }
            w.set_checkpoint(serde_json::json!({ "next": i }));
        }
        // The checkpoint stored with part 3 is the one set before it was closed: the
        // item that opened part 4 is not covered.
        let parts: Vec<_> = w.completed_parts().to_vec();
        let covered = parts.iter().map(|p| p.item_count).sum::<u64>() as usize;
        for _ in 0..20 {
            let (line, t) = item(OutputFormat::JsonLines, i);
            w.write_item(&line, t).unwrap();
            i += 1;
        }
        w.reject(b"lost", "set", "after the last part").unwrap();
        drop(w); // a crash: no finish
        let data = dir.path().join("data");
        let tmp: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                n.ends_with(".tmp").then_some(n)
            })
            .collect();
        assert_eq!(tmp.len(), 1, "{tmp:?}");
        // A part renamed but not yet recorded when the crash came.
        let orphan = format!("{ID}-0000-000003.json{}", c.suffix());
        std::fs::copy(dir.path().join(&parts[0].key), data.join(&orphan)).unwrap();

        let mut w = PartWriter::open(dir.path(), opts.clone()).unwrap();
        assert!(w.is_resumed());
        assert_eq!(w.completed_parts(), &parts[..]);
        assert_eq!(w.counts().rejected, 0);
        let next = w.checkpoint().unwrap()["next"].as_u64().unwrap() as usize;
        assert_eq!(next, covered);
        assert!(!data.join(&tmp[0]).exists());
        assert!(!data.join(&orphan).exists());
        for j in next..next + 500 {
            let (line, t) = item(OutputFormat::JsonLines, j);
            w.write_item(&line, t).unwrap();
        }
        let s = w.finish().unwrap();
        assert_eq!(s.item_count, (next + 500) as u64);
        assert_eq!(s.rejected, 0);
        let manifest = redstash::export::manifest::read_files_manifest(dir.path()).unwrap();
        assert_eq!(
            manifest[3].data_file_s3_key,
            format!("data/{ID}-0000-000003.json{}", c.suffix())
        );
        let r = verify(dir.path()).unwrap();
        assert!(r.is_ok(), "{:?}", r.problems);
        // A finished export is not reopened.
        assert!(PartWriter::open(dir.path(), opts).is_err());
    }
}

#[test]
fn merge_three_shards() {
    let root = tempfile::tempdir().unwrap();
    let shard_dir = |i: u32| root.path().join(format!("shard-{i}"));
    for i in 0..3u32 {
        let opts = PartWriterOptions {
            shard: Shard { index: i, count: 3 },
            ..options(OutputFormat::DynamoDbJson, Compression::zstd(), 16 << 10)
        };
        write_export(&shard_dir(i), opts, 700 + i as usize * 100);
    }
    let out = root.path().join("merged");
    let report = merge(&[shard_dir(2), shard_dir(0), shard_dir(1)], &out).unwrap();
    assert_eq!(report.shards, 3);
    assert_eq!(report.summary.item_count, 700 + 800 + 900);
    assert_eq!(report.summary.rejected, 3);
    assert_eq!(report.summary.vanished, 6);
    assert_eq!(report.summary.merged_shards, 3);
    assert_eq!(report.summary.shard, Shard::WHOLE);
    let r = verify(&out).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.items, 2400);
    assert_eq!(r.rejected, 3);
    // Shard 0's parts come first.
    let m = redstash::export::manifest::read_files_manifest(&out).unwrap();
    assert!(m[0].data_file_s3_key.contains("-0000-"));
    assert!(m.last().unwrap().data_file_s3_key.contains("-0002-"));

    // A missing shard, a duplicated one.
    let e = merge(&[shard_dir(0), shard_dir(2)], &root.path().join("m2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("shards [1] of 3 are missing"), "{e}");
    let e = merge(
        &[shard_dir(0), shard_dir(1), shard_dir(1), shard_dir(2)],
        &root.path().join("m3"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("shard 1/3 is in both"), "{e}");
    // Another export's shard.
    let other = root.path().join("other");
    let opts = PartWriterOptions {
        export_id: Some("another".into()),
        shard: Shard { index: 1, count: 3 },
        ..options(OutputFormat::DynamoDbJson, Compression::zstd(), 16 << 10)
    };
    write_export(&other, opts, 10);
    assert!(
        merge(
            &[shard_dir(0), other, shard_dir(2)],
            &root.path().join("m4")
        )
        .is_err()
    );
    // An unfinished shard.
    let unfinished = root.path().join("unfinished");
    let opts = PartWriterOptions {
        shard: Shard { index: 1, count: 3 },
        ..options(OutputFormat::DynamoDbJson, Compression::zstd(), 16 << 10)
    };
    drop(PartWriter::open(&unfinished, opts).unwrap());
    let e = merge(
        &[shard_dir(0), unfinished, shard_dir(2)],
        &root.path().join("m5"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no finished export"), "{e}");
}

/// The writer's throughput, in MB/s of uncompressed lines, by compression and level.
#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn writer_throughput() {
    let lines: Vec<Vec<u8>> = (0..200_000)
        .map(|i| {
            format!(
                r#"{{"Item":{{"pk":{{"S":"session:{i:08}"}},"type":{{"S":"hash"}},"user":{{"S":"user-{}"}},"score":{{"N":"{}"}},"payload":{{"B":"{}"}}}}}}"#,
                i * 7919 % 100_003,
                (i as f64) * 1.37,
                base64_like(i)
            )
            .into_bytes()
        })
        .collect();
    let per_pass: usize = lines.iter().map(|l| l.len() + 1).sum();
    let passes = (256 << 20) / per_pass + 1;
    for c in [
        Compression::Gzip(1),
        Compression::Gzip(2),
        Compression::Gzip(3),
        Compression::Gzip(6),
        Compression::Zstd(1),
        Compression::Zstd(3),
        Compression::None,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(OutputFormat::DynamoDbJson, c, 64 << 20);
        let start = std::time::Instant::now();
        let mut w = PartWriter::open(dir.path(), opts).unwrap();
        for _ in 0..passes {
            for l in &lines {
                w.write_item(l, "hash").unwrap();
            }
        }
        let s = w.finish().unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{c:?}: {:.0} MB/s of lines, {} MB -> {} MB ({:.1}%), {} parts",
            s.billed_size_bytes as f64 / 1e6 / secs,
            s.billed_size_bytes / 1_000_000,
            s.compressed_size_bytes / 1_000_000,
            100.0 * s.compressed_size_bytes as f64 / s.billed_size_bytes as f64,
            s.part_count
        );
    }
}

/// Semi-random base64-ish text (compresses like real binary values in base64).
fn base64_like(i: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..48 + i % 64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            A[(x % 64) as usize] as char
        })
        .collect()
}
