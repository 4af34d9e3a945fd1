//! Export: a small keyspace of every Redis type to DynamoDB JSON parts (gzip), with the
//! library API, then verify the export directory and show its summary and first items.
//!
//! Uses `REDIS_URL` when set (its database is flushed: point it at a scratch server),
//! else starts a throwaway local redis-server (testkit).
//!
//! ```sh
//! cargo run --example export --features testkit,export
//! ```

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};

use redstash::exec::Scan;
use redstash::export::{
    DynamoMapping, DynamoOptions, Encode, Exporter, KeyRecord, OutputFormat, PartSink, PartWriter,
    PartWriterOptions, manifest,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keep the server (if we started one) alive until the end of main.
    let (url, _server) = redstash::testkit::url_or_start()?;
    let mut con = redis::Client::open(url.as_str())?.get_connection()?;
    let _: () = redis::cmd("FLUSHDB").query(&mut con)?;

    // 1. A keyspace of every type.
    redis::pipe()
        .cmd("SET")
        .arg("greeting")
        .arg("hello, world")
        .ignore()
        .cmd("SET")
        .arg("counter")
        .arg("42")
        .ignore()
        .cmd("SET")
        .arg("pi")
        .arg("3.14159")
        .ignore()
        .cmd("SET")
        .arg("blob")
        .arg(&[0u8, 159, 146, 150, 255][..])
        .ignore()
        .cmd("HSET")
        .arg("user:1")
        .arg(&[
            "name",
            "Ada",
            "age",
            "36",
            "email",
            "ada@example.com",
            "city",
            "London",
        ])
        .ignore()
        .cmd("RPUSH")
        .arg("queue")
        .arg(&["first", "second", "third"])
        .ignore()
        .cmd("SADD")
        .arg("tags")
        .arg(&["red", "green", "blue"])
        .ignore()
        .cmd("ZADD")
        .arg("scores")
        .arg(&["1.5", "alice", "2", "bob", "10", "carol"])
        .ignore()
        .cmd("XADD")
        .arg("events")
        .arg("1-0")
        .arg(&["kind", "login", "user", "ada"])
        .ignore()
        .cmd("XADD")
        .arg("events")
        .arg("2-0")
        .arg(&["kind", "logout"])
        .ignore()
        .cmd("SET")
        .arg("session:abc")
        .arg("token")
        .arg("EX")
        .arg(3600)
        .ignore()
        .exec(&mut con)?;

    // 2. Export it: one reading thread (one server), two encoding threads sharing a part
    //    writer, DynamoDB JSON, gzip.
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("export");
    let mut options = PartWriterOptions::new(OutputFormat::DynamoDbJson);
    // The summary's `source` (a URL with a password should not go there).
    options.source = "redstash export example".to_owned();
    let writer = Arc::new(Mutex::new(PartWriter::open(&out, options)?));
    let mapping = DynamoMapping::new(DynamoOptions::default())?;
    let encode = |rec: &KeyRecord, buf: &mut Vec<u8>| match mapping.to_item(rec) {
        Ok(item) => {
            item.write_json(buf);
            Ok(())
        }
        Err(r) => Err(r.reason),
    };
    let encode: &Encode<'_> = &encode;
    // Two encoding threads share the part writer.
    let mut sinks: Vec<PartSink> = (0..2).map(|_| PartSink::new(writer.clone())).collect();
    let mut targets = vec![redstash::direct::DirectConnection::open(url.as_str())?];
    let report = Exporter::new(Scan::all()).run(&mut targets, encode, &mut sinks, None, None)?;
    drop(sinks);
    let summary = PartSink::into_writer(writer)?.finish()?;
    println!(
        "exported {} keys ({} rejected) in {:.3}s, by type: {:?}",
        report.items, report.rejected, report.elapsed_s, report.by_type
    );
    println!("summary item count: {}", summary.item_count);

    // 3. Re-read the directory: every part listed, its MD5 and item count.
    let check = redstash::export::verify(&out)?;
    println!(
        "verify: {} parts, {} items, {} bytes uncompressed, {} compressed, problems: {}",
        check.parts,
        check.items,
        check.uncompressed_bytes,
        check.compressed_bytes,
        check.problems.len()
    );
    if !check.is_ok() {
        return Err(format!("the export does not verify: {:?}", check.problems).into());
    }

    // 4. What DynamoDB's import would read.
    println!("\n{}:", manifest::MANIFEST_SUMMARY);
    println!(
        "{}",
        std::fs::read_to_string(out.join(manifest::MANIFEST_SUMMARY))?
    );
    let parts = manifest::read_files_manifest(&out)?;
    let first = parts.first().ok_or("the export has no part")?;
    println!("\nfirst lines of {}:", first.data_file_s3_key);
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(out.join(&first.data_file_s3_key))?);
    for line in BufReader::new(gz).lines().take(10) {
        println!("{}", line?);
    }
    println!("\nexport ok");
    Ok(())
}
