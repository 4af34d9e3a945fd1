//! Bulk load: a CSV of users into Redis hashes, with an email lookup hash, an index set
//! per country and a progress bar, then a few reads of what it built.
//!
//! Uses `REDIS_URL` when set, else starts a throwaway local redis-server (testkit).
//!
//! ```sh
//! cargo run --release --example bulk_load --features testkit,cli
//! ```

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};
use redstash::direct::DirectConnection;
use redstash::load::{
    CsvOptions, CsvSource, FieldFilter, IndexOp, Input, KeyTemplate, Loader, Mapping, OnError,
    ValueMapping,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = redstash::testkit::url_or_start()?;

    // 1. A CSV of 200,000 users (one row with a missing id, to show a record error).
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("users.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(f, "id,name,email,country,age")?;
    for i in 0..200_000 {
        let id = if i == 1234 {
            String::new()
        } else {
            i.to_string()
        };
        let country = ["fr", "de", "us", "jp"][i % 4];
        writeln!(
            f,
            "{id},user {i},user{i}@example.com,{country},{}",
            18 + i % 60
        )?;
    }
    drop(f);

    // 2. What each record becomes: HSET user:<id> (all fields), HSET users:by_email
    //    <email> user:<id>, SADD users:country:<country> user:<id>.
    let t = |s: &str| KeyTemplate::parse(s);
    let mapping = Mapping::new(t("user:{id}")?)
        .with_value(ValueMapping::Hash(FieldFilter::all()))
        .with_index(IndexOp::Hset {
            hash: t("users:by_email")?,
            field: t("{email}")?,
            value: None,
        })
        .with_index(IndexOp::Sadd {
            set: t("users:country:{country}")?,
            member: None,
        });

    // 3. Load, with a progress bar over the file's bytes.
    let bar = ProgressBar::new(std::fs::metadata(&path)?.len());
    bar.set_style(ProgressStyle::with_template(
        "[{bar:30}] {bytes}/{total_bytes} {msg} (eta {eta})",
    )?);
    let shown = bar.clone();
    let loader = Loader::new(mapping)
        .with_on_error(OnError::Skip)
        .with_progress(move |p| {
            shown.set_position(p.bytes_read);
            shown.set_message(format!("{} loaded, {:.0} records/s", p.loaded, p.rate()));
        });
    let mut source = CsvSource::new(Input::open(&path)?, CsvOptions::default())?;
    let mut con = DirectConnection::open(url.as_str())?;
    let report = loader.load(&mut source, &mut con)?;
    bar.finish_and_clear();
    println!("{}", report.summary());
    for e in &report.errors {
        println!("  rejected: {e}");
    }
    assert_eq!((report.loaded, report.skipped), (199_999, 1));

    // 4. Use what it built.
    let mut c = redis::Client::open(url.as_str())?.get_connection()?;
    let key: String = redis::cmd("HGET")
        .arg("users:by_email")
        .arg("user42@example.com")
        .query(&mut c)?;
    let name: String = redis::cmd("HGET").arg(&key).arg("name").query(&mut c)?;
    let in_fr: u64 = redis::cmd("SCARD").arg("users:country:fr").query(&mut c)?;
    println!("user42@example.com -> {key} ({name}); {in_fr} users in fr");
    Ok(())
}
