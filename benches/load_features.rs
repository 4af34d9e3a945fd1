//! Live benchmark of a feature load from Parquet (`redstash::load::FeatureLoad`, what
//! `redstash load x.parquet --feature-view ...` runs) against `redis-cli --pipe` fed a
//! pre-made RESP file of the same commands (same keys, same 8-byte timestamp + 512-byte
//! vector values), measured back to back on one fresh testkit `redis-server`.
//!
//! 1,000,000 vectors of 128 `f32` (`REDSTASH_BENCH_ROWS` to change the count). The
//! Parquet file and the RESP file are written first (not timed); the Parquet file is
//! uncompressed (random floats do not compress), in row groups of 65,536 rows.
//!
//! `cargo bench --bench load_features --features parquet,ndarray,testkit,tokio`

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use redstash::direct::DirectConnection;
use redstash::load::{FeatureLoad, ParquetSource, VectorColumns};
use redstash::testkit::RedisServer;
use redstash::{FeatureStore, View};

const DIM: usize = 128;
const VIEW: &str = "bench";
const PREFIX: &str = "fs";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Component `j` of vector `i` (deterministic, not compressible).
fn component(i: usize, j: usize) -> f32 {
    let x = ((i * DIM + j) as u32).wrapping_mul(2_654_435_761);
    (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
}

fn write_parquet(path: &Path, rows: usize) -> Res<()> {
    let f = std::fs::File::create(path)?;
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(65_536))
        .set_dictionary_enabled(false)
        .build();
    let mut w: Option<ArrowWriter<std::fs::File>> = None;
    let mut f = Some(f);
    for start in (0..rows).step_by(16_384) {
        let n = 16_384.min(rows - start);
        let ids = StringArray::from_iter_values((start..start + n).map(|i| format!("e{i}")));
        let vals = Float32Array::from_iter_values(
            (start..start + n).flat_map(|i| (0..DIM).map(move |j| component(i, j))),
        );
        let emb = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            DIM as i32,
            Arc::new(vals),
            None,
        )?;
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(ids) as ArrayRef),
            ("emb", Arc::new(emb) as ArrayRef),
        ])?;
        if w.is_none() {
            let file = f.take().ok_or("no file")?;
            w = Some(ArrowWriter::try_new(
                file,
                batch.schema(),
                Some(props.clone()),
            )?);
        }
        if let Some(w) = &mut w {
            w.write(&batch)?;
        }
    }
    if let Some(w) = w {
        w.close()?;
    }
    Ok(())
}

/// The RESP of `SET fs:bench:e{i} <ts + vector>` for every row: the commands the
/// feature store sends for a view without TTL.
fn write_resp(path: &Path, rows: usize) -> Res<()> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let ts = 1_700_000_000_000u64.to_le_bytes();
    let mut value = Vec::with_capacity(8 + DIM * 4);
    for i in 0..rows {
        let key = format!("{PREFIX}:{VIEW}:e{i}");
        value.clear();
        value.extend_from_slice(&ts);
        for j in 0..DIM {
            value.extend_from_slice(&component(i, j).to_le_bytes());
        }
        write!(
            w,
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
            key.len(),
            value.len()
        )?;
        w.write_all(&value)?;
        w.write_all(b"\r\n")?;
    }
    w.flush()?;
    Ok(())
}

fn redis_cli_pipe(port: u16, file: &Path) -> Res<Duration> {
    let start = Instant::now();
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::from(std::fs::File::open(file)?))
        .output()?;
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("errors: 0") {
        return Err(format!("redis-cli --pipe failed: {text}").into());
    }
    Ok(took)
}

fn redstash_load(url: &str, file: &Path, rows: usize) -> Res<Duration> {
    let mut con = DirectConnection::open(url)?;
    let store = FeatureStore::new(PREFIX);
    store.register_view(&mut con, &View::of::<f32>(VIEW, DIM))?;
    let start = Instant::now();
    let mut src = ParquetSource::open(file)?.with_batch_rows(16_384);
    let report = FeatureLoad::new(VIEW, "id", VectorColumns::List("emb".into())).load(
        std::iter::from_fn(move || src.next_batch().transpose()),
        &store,
        &mut con,
    )?;
    let took = start.elapsed();
    if report.written != rows as u64 || report.stopped.is_some() {
        return Err(format!("the feature load fell short: {}", report.summary()).into());
    }
    Ok(took)
}

fn dbsize(con: &mut redis::Connection) -> Res<usize> {
    Ok(redis::cmd("DBSIZE").query(con)?)
}

fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let rows: usize = std::env::var("REDSTASH_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let pq = dir.path().join("features.parquet");
    let resp = dir.path().join("features.resp");
    eprintln!("writing {rows} vectors of {DIM} f32 to Parquet and RESP files...");
    write_parquet(&pq, rows)?;
    write_resp(&resp, rows)?;
    let srv = RedisServer::start()?;
    let mut rc = srv.client()?.get_connection()?;

    let cli = redis_cli_pipe(srv.port(), &resp)?;
    assert_eq!(dbsize(&mut rc)?, rows);
    redis::cmd("FLUSHALL").query::<()>(&mut rc)?;

    let ours = redstash_load(&srv.url(), &pq, rows)?;
    assert_eq!(dbsize(&mut rc)?, rows + 1); // + the view registry

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!(
        "\n{rows} feature vectors of {DIM} f32 (Parquet {} MB, RESP {} MB), one redis-server:\n",
        std::fs::metadata(&pq)?.len() >> 20,
        std::fs::metadata(&resp)?.len() >> 20
    );
    println!("| load | time | vectors/s | rate vs redis-cli --pipe (target >= 0.9) |");
    println!("|---|---|---|---|");
    println!(
        "| redis-cli --pipe, pre-made RESP file | {} ms | {:.0} | 1.00 |",
        cli.as_millis(),
        rate(cli)
    );
    println!(
        "| redstash FeatureLoad from Parquet | {} ms | {:.0} | {:.2} |",
        ours.as_millis(),
        rate(ours),
        rate(ours) / rate(cli)
    );
    Ok(())
}
