//! `redstash bench`: ArrowRedis's benchmark sizes (gen, split, read), with a summary.

use std::path::PathBuf;

use clap::Args;
use redstash::codec::arrow::IpcCompression;
use serde_json::json;

use crate::table::{GenArgs, ReadArgs, SplitArgs, gen_cmd, read_cmd, split_cmd};
use crate::{Cli, Command, Connection, Fail, mb};

/// `redstash bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Sizes to run (repeatable): 50mb (4x8x50k rows), 250mb (8x16x50k), 512mb
    /// (16x16x50k), 1gb (32x16x50k). Default: all four.
    #[arg(long, value_parser = ["50mb", "250mb", "512mb", "1gb"])]
    pub size: Vec<String>,
    /// Directory for the generated files (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the generated files and the tables in Redis.
    #[arg(long)]
    pub keep: bool,
    /// IPC body compression.
    #[arg(long, default_value = "zstd", value_parser = |s: &str| IpcCompression::from_name(s).ok_or_else(|| format!("{s:?}: expected zstd, lz4 or uncompressed")))]
    pub compression: IpcCompression,
    /// Connections for split and read.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Key prefix of the benchmark tables (the size is appended).
    #[arg(long, default_value = "redstash:bench")]
    pub prefix: String,
    #[command(flatten)]
    pub connection: Connection,
}

fn config(size: &str) -> (u32, u32, usize) {
    match size {
        "50mb" => (4, 8, 50_000),
        "250mb" => (8, 16, 50_000),
        "512mb" => (16, 16, 50_000),
        _ => (32, 16, 50_000),
    }
}

/// Run the benchmark.
pub fn run(cli: &Cli, a: &BenchArgs) -> Result<(), Fail> {
    let sizes: Vec<String> = if a.size.is_empty() {
        ["50mb", "250mb", "512mb", "1gb"].map(String::from).to_vec()
    } else {
        a.size.clone()
    };
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| Fail(1, format!("{}: {e}", d.display())))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    // The phases report nothing themselves; the summary is printed at the end.
    let inner = Cli {
        json: cli.json,
        quiet: cli.quiet,
        silent: true,
        command: Command::Bench(a.clone()),
    };
    let mut rows = Vec::new();
    for size in &sizes {
        let (partitions, batches, rows_per_batch) = config(size);
        let file = dir.join(format!("bench_{size}.arrow"));
        let prefix = format!("{}:{size}", a.prefix);
        if !cli.json {
            eprintln!(
                "{size}: {partitions} partitions x {batches} batches x {rows_per_batch} rows"
            );
        }
        let g = gen_cmd(
            &inner,
            &GenArgs {
                out: file.clone(),
                partitions,
                batches,
                rows: rows_per_batch,
                compression: a.compression,
                dict_strings: true,
                string_cardinality: 5000,
                seed: 42,
                stream: false,
                threads: None,
            },
        )?;
        let s = split_cmd(
            &inner,
            &SplitArgs {
                inp: file.clone(),
                prefix: prefix.clone(),
                batches: Some(batches),
                partition_by: None,
                round_robin: None,
                compression: a.compression,
                max_inflight: 256,
                connections: a.connections,
                trust_input: false,
                pipeline_mb: 16,
                cluster: "off".into(),
                connection: a.connection.clone(),
            },
        )?;
        let r = read_cmd(
            &inner,
            &ReadArgs {
                prefix: prefix.clone(),
                partitions: None,
                batches: Some(batches),
                pipeline: 64,
                concurrency: a.connections,
                columns: None,
                out: None,
                out_compression: IpcCompression::Zstd,
                cluster: "off".into(),
                connection: a.connection.clone(),
            },
        )?;
        let read_rows = r.rows;
        if read_rows != g.rows {
            return Err(Fail(
                1,
                format!("{size}: read {read_rows} rows, generated {}", g.rows),
            ));
        }
        if !a.keep {
            let mut con = crate::connect(&a.connection)?;
            redstash::TableStore::new("").delete(&mut con, &prefix)?;
            std::fs::remove_file(&file)?;
        }
        let stored = r.stored_bytes.unwrap_or(s.info.bytes);
        rows.push(json!({
            "size": size, "partitions": partitions, "batches": batches,
            "rows_per_batch": rows_per_batch, "rows": g.rows,
            "file_mb": mb(g.bytes), "stored_mb": mb(stored),
            "gen_s": g.seconds, "gen_mb_per_s": mb(g.bytes) / g.seconds,
            "split_s": s.seconds, "split_mb_per_s": mb(s.input_bytes) / s.seconds,
            "read_s": r.seconds, "read_mb_per_s": mb(stored) / r.seconds,
            "read_rows_per_s": g.rows as f64 / r.seconds,
            "total_s": g.seconds + s.seconds + r.seconds,
        }));
    }
    if cli.json {
        println!("{}", json!({ "command": "bench", "results": rows }));
        return Ok(());
    }
    println!(
        "{:<7} {:>9} {:>8} {:>9} {:>9} {:>10} {:>8} {:>10} {:>8} {:>10}",
        "size",
        "file MB",
        "gen s",
        "gen MB/s",
        "split s",
        "split MB/s",
        "read s",
        "read MB/s",
        "total s",
        "read Mrow/s"
    );
    for r in &rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "{:<7} {:>9.2} {:>8.2} {:>9.1} {:>9.2} {:>10.1} {:>8.2} {:>10.1} {:>8.2} {:>10.2}",
            r["size"].as_str().unwrap_or(""),
            f("file_mb"),
            f("gen_s"),
            f("gen_mb_per_s"),
            f("split_s"),
            f("split_mb_per_s"),
            f("read_s"),
            f("read_mb_per_s"),
            f("total_s"),
            f("read_rows_per_s") / 1e6
        );
    }
    Ok(())
}
