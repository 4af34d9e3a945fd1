//! `redstash gen|split|read|table`: partitioned Arrow tables, with ArrowRedis's flags.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use redstash::TableStore;
use redstash::arrowgen::GenSpec;
use redstash::codec::Limits;
use redstash::codec::arrow::IpcCompression;
use redstash::codec::arrow_file::{IpcFormat, IpcInput};
use redstash::store::table::{Partitioning, ReadOptions, TableInfo};
use serde_json::json;

use crate::{BulkConnection, Cli, Connection, Fail, cluster_on, mb, progress, report};

/// `redstash gen`: ArrowRedis's `gen` flags.
#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of partitions.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Batches per partition.
    #[arg(long, default_value_t = 8)]
    pub batches: u32,
    /// Rows per batch.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// IPC body compression: zstd, lz4 or uncompressed.
    #[arg(long, default_value = "zstd", value_parser = parse_compression)]
    pub compression: IpcCompression,
    /// Dictionary-encode the string column.
    #[arg(long)]
    pub dict_strings: bool,
    /// Number of distinct strings.
    #[arg(long, default_value_t = 5000)]
    pub string_cardinality: usize,
    /// Random seed.
    #[arg(long, default_value_t = 123)]
    pub seed: u64,
    /// Write an IPC stream instead of an IPC file.
    #[arg(long)]
    pub stream: bool,
    /// Generator threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `redstash split`: ArrowRedis's `split` flags, plus partitioning and connections.
#[derive(Args, Debug, Clone)]
pub struct SplitArgs {
    /// Input Arrow IPC file or stream (`-` reads a stream from standard input).
    #[arg(long)]
    pub inp: PathBuf,
    /// Key prefix of the table (keys are PREFIX:{part=XXXXX}:batch=YYYYY).
    #[arg(long)]
    pub prefix: String,
    /// Batches per partition, as ArrowRedis uses it: when the input has no integer
    /// `partition` column, consecutive runs of this many batches form a partition.
    /// (With a `partition` column, batches go by that column, as in ArrowRedis.)
    #[arg(long)]
    pub batches: Option<u32>,
    /// Partition by this integer column.
    #[arg(long, conflicts_with = "round_robin")]
    pub partition_by: Option<String>,
    /// Spread batches round robin over this many partitions.
    #[arg(long)]
    pub round_robin: Option<u32>,
    /// IPC body compression of the stored batches: zstd, lz4 or uncompressed. Batches
    /// the input already holds with this compression are stored without recompressing.
    #[arg(long, default_value = "zstd", value_parser = parse_compression)]
    pub compression: IpcCompression,
    /// Most batches (SETs) in flight over all connections.
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// Connections writing concurrently.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Store batches the input holds in the wanted compression without decoding them
    /// first (faster; a corrupt input batch is then stored and fails when read, instead
    /// of failing the split). For inputs you trust.
    #[arg(long)]
    pub trust_input: bool,
    /// Most megabytes of values per request and connection.
    #[arg(long, default_value_t = 16)]
    pub pipeline_mb: usize,
    /// `on` for a Redis Cluster (`--url` is then one or more comma-separated seed
    /// nodes), `off` for one server.
    #[arg(long, default_value = "off", value_parser = ["on", "off"], help_heading = "Connection")]
    pub cluster: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// `redstash read`: ArrowRedis's `read` flags, plus columns and an output file.
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Key prefix of the table.
    #[arg(long)]
    pub prefix: String,
    /// Comma-separated partition ids, or `all` (the default).
    #[arg(long, value_parser = parse_partitions)]
    pub partitions: Option<Partitions>,
    /// Batches each partition must have (checked; not needed: the manifest or a SCAN
    /// tells).
    #[arg(long)]
    pub batches: Option<u32>,
    /// Keys per MGET.
    #[arg(long, default_value_t = 64)]
    pub pipeline: usize,
    /// Connections reading (and decoding) concurrently.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Comma-separated columns to keep (default: all).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Write the rows read to this Arrow IPC file (streamed: memory stays bounded).
    /// With the table's own compression and all columns, the stored batches are copied
    /// as they are, without decoding; otherwise they are decoded and encoded again.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// IPC body compression of `--out`.
    #[arg(long, alias = "compression", default_value = "zstd", value_parser = parse_compression)]
    pub out_compression: IpcCompression,
    /// `on` for a Redis Cluster (`--url` is then one or more comma-separated seed
    /// nodes), `off` for one server.
    #[arg(long, default_value = "off", value_parser = ["on", "off"], help_heading = "Connection")]
    pub cluster: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// `redstash table ...`.
#[derive(Subcommand, Debug)]
pub enum TableCmd {
    /// Print a table's manifest.
    Info {
        /// Key prefix of the table.
        prefix: String,
        /// `on` for a Redis Cluster, `off` for one server.
        #[arg(long, default_value = "off", value_parser = ["on", "off"], help_heading = "Connection")]
        cluster: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the tables (with a manifest) under an optional namespace.
    List {
        /// Namespace (key prefix before the table name).
        #[arg(long, default_value = "")]
        namespace: String,
        /// `on` for a Redis Cluster (`SCAN` on every primary), `off` for one server.
        #[arg(long, default_value = "off", value_parser = ["on", "off"], help_heading = "Connection")]
        cluster: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a table: manifest and batches.
    Delete {
        /// Key prefix of the table.
        prefix: String,
        /// `on` for a Redis Cluster (`SCAN` on every primary), `off` for one server.
        #[arg(long, default_value = "off", value_parser = ["on", "off"], help_heading = "Connection")]
        cluster: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// The partitions `read --partitions` asks for.
#[derive(Debug, Clone)]
pub struct Partitions(Option<Vec<u32>>);

fn parse_partitions(s: &str) -> Result<Partitions, String> {
    if s == "all" {
        return Ok(Partitions(None));
    }
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("{p:?} is not a partition id (use 0,1,2 or all)"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| Partitions(Some(v)))
}

fn parse_compression(s: &str) -> Result<IpcCompression, String> {
    IpcCompression::from_name(s).ok_or_else(|| format!("{s:?}: expected zstd, lz4 or uncompressed"))
}

/// What `gen` did.
pub struct GenReport {
    pub bytes: u64,
    pub rows: u64,
    pub seconds: f64,
}

/// `redstash gen`.
pub fn gen_cmd(cli: &Cli, a: &GenArgs) -> Result<GenReport, Fail> {
    let spec = GenSpec {
        partitions: a.partitions,
        batches: a.batches,
        rows: a.rows,
        seed: a.seed,
        dict_strings: a.dict_strings,
        string_cardinality: a.string_cardinality,
    };
    if spec.total_batches() == 0 || a.rows == 0 {
        return Err(Fail(
            2,
            "--partitions, --batches and --rows must be > 0".into(),
        ));
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let bar = progress(cli, Some(spec.total_batches()), "gen");
    let t = Instant::now();
    let file =
        std::fs::File::create(&a.out).map_err(|e| Fail(1, format!("{}: {e}", a.out.display())))?;
    let out = std::io::BufWriter::with_capacity(4 << 20, file);
    let format = if a.stream {
        IpcFormat::Stream
    } else {
        IpcFormat::File
    };
    let bytes = spec.write_ipc(out, format, a.compression, threads, |n, b| {
        bar.set_position(n);
        bar.set_message(format!("{:.1} MB", mb(b)));
    })?;
    let seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let rows = spec.total_rows();
    report(
        cli,
        json!({
            "command": "gen", "file": a.out, "format": if a.stream { "stream" } else { "file" },
            "partitions": a.partitions, "batches": a.batches, "rows_per_batch": a.rows,
            "rows": rows, "bytes": bytes, "compression": a.compression.name(),
            "seconds": seconds, "mb_per_s": mb(bytes) / seconds, "rows_per_s": rows as f64 / seconds,
        }),
        format!(
            "wrote {} ({} partitions x {} batches x {} rows, {})\n  size {:.2} MB, {:.2} s, {:.1} MB/s, {:.0} rows/s",
            a.out.display(),
            a.partitions,
            a.batches,
            a.rows,
            a.compression.name(),
            mb(bytes),
            seconds,
            mb(bytes) / seconds,
            rows as f64 / seconds
        ),
    );
    Ok(GenReport {
        bytes,
        rows,
        seconds,
    })
}

/// What `split` did.
pub struct SplitReport {
    pub info: TableInfo,
    pub input_bytes: u64,
    pub seconds: f64,
}

/// `redstash split`.
pub fn split_cmd(cli: &Cli, a: &SplitArgs) -> Result<SplitReport, Fail> {
    let limits = Limits::default();
    let (input, input_bytes) = if a.inp.as_os_str() == "-" {
        (IpcInput::from_stream(std::io::stdin(), limits)?, 0)
    } else {
        let len = std::fs::metadata(&a.inp)
            .map_err(|e| Fail(1, format!("{}: {e}", a.inp.display())))?
            .len();
        (IpcInput::open(&a.inp, limits)?, len)
    };
    let has_partition_column = input
        .schema()
        .field_with_name("partition")
        .is_ok_and(|f| f.data_type().is_integer());
    let partitioning = if let Some(c) = &a.partition_by {
        Partitioning::Column(c.clone())
    } else if let Some(n) = a.round_robin {
        Partitioning::RoundRobin(n)
    } else if has_partition_column {
        Partitioning::Column("partition".into())
    } else if let Some(n) = a.batches {
        Partitioning::Blocks(n)
    } else {
        Partitioning::RoundRobin(1)
    };
    let connections = a.connections.max(1);
    let store = TableStore::new("")
        .with_compression(a.compression)
        .with_partitioning(partitioning)
        .with_pipeline_bytes(a.pipeline_mb.max(1) << 20)
        .with_pipeline_batches(a.max_inflight.div_ceil(connections).max(1))
        .with_verify_input(!a.trust_input);
    let mut cons = BulkConnection::open_many(&a.connection, connections, cluster_on(&a.cluster))?;
    let bar = progress(cli, input.num_batches().map(|n| n as u64), "split");
    let b2 = bar.clone();
    let input = input.on_progress(move |n, b| {
        b2.set_position(n);
        b2.set_message(format!("{:.1} MB", mb(b)));
    });
    let t = Instant::now();
    let info = store.split_ipc_parallel(&mut cons, &a.prefix, input)?;
    let seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let moved = if input_bytes > 0 {
        input_bytes
    } else {
        info.bytes
    };
    report(
        cli,
        json!({
            "command": "split", "prefix": a.prefix, "batches": info.batches(),
            "partitions": info.partitions.len(), "rows": info.rows, "stored_bytes": info.bytes,
            "input_bytes": input_bytes, "compression": info.compression.name(),
            "generation": info.generation, "seconds": seconds,
            "mb_per_s": mb(moved) / seconds, "rows_per_s": info.rows as f64 / seconds,
        }),
        format!(
            "stored {} batches ({} partitions, {} rows) under '{}:' (keys use hash tag {{part=XXXXX}}), manifest {}:__manifest__\n  {:.2} MB stored in {:.2} s, {:.1} MB/s, {:.0} rows/s",
            info.batches(),
            info.partitions.len(),
            info.rows,
            a.prefix,
            a.prefix,
            mb(info.bytes),
            seconds,
            mb(moved) / seconds,
            info.rows as f64 / seconds
        ),
    );
    Ok(SplitReport {
        info,
        input_bytes,
        seconds,
    })
}

/// What `read` did.
pub struct ReadReport {
    pub rows: u64,
    pub stored_bytes: Option<u64>,
    pub seconds: f64,
}

/// `--batches N`: every partition read must have `n` batches.
fn check_batches(n: Option<u32>, partitions: &[(u32, usize)]) -> Result<(), Fail> {
    let Some(n) = n else { return Ok(()) };
    let wrong: Vec<String> = partitions
        .iter()
        .filter(|(_, got)| *got != n as usize)
        .map(|(p, got)| format!("partition {p} has {got}"))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Fail(1, format!("--batches {n}: {}", wrong.join(", "))))
    }
}

/// `redstash read`.
pub fn read_cmd(cli: &Cli, a: &ReadArgs) -> Result<ReadReport, Fail> {
    let store = TableStore::new("").with_mget_keys(a.pipeline.max(1));
    let mut options = ReadOptions::all();
    options.partitions = a.partitions.clone().and_then(|p| p.0);
    options.columns = a.columns.clone();
    let mut cons =
        BulkConnection::open_many(&a.connection, a.concurrency.max(1), cluster_on(&a.cluster))?;
    if let Some(out) = &a.out {
        return read_to_file(cli, a, &store, &mut cons, &options, out);
    }
    let t = Instant::now();
    let info = match cons.first_mut() {
        Some(c) => store.info(c, &a.prefix)?,
        None => None,
    };
    let table = store
        .read_parallel(&mut cons, &a.prefix, &options)?
        .ok_or_else(|| Fail(3, format!("no table at prefix {:?}", a.prefix)))?;
    let seconds = t.elapsed().as_secs_f64();
    check_batches(a.batches, &table.partitions)?;
    let stored_bytes = info.as_ref().map(|i| {
        i.partitions
            .iter()
            .filter(|p| table.partitions.iter().any(|(id, _)| *id == p.id))
            .map(|p| p.bytes)
            .sum::<u64>()
    });
    let decoded: u64 = table
        .batches
        .iter()
        .map(|b| b.get_array_memory_size() as u64)
        .sum();
    let rows = table.num_rows() as u64;
    let batches: usize = table.partitions.iter().map(|(_, n)| n).sum();
    let moved = stored_bytes.unwrap_or(decoded);
    report(
        cli,
        json!({
            "command": "read", "prefix": a.prefix, "batches": batches,
            "partitions": table.partitions.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "rows": rows, "columns": table.schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>(),
            "stored_bytes": stored_bytes, "decoded_bytes": decoded, "seconds": seconds,
            "mb_per_s": mb(moved) / seconds, "rows_per_s": rows as f64 / seconds,
            "out": None::<PathBuf>,
        }),
        format!(
            "fetched and decoded {batches} batches of {} partitions in {:.2} s; rows={rows}, {} columns\n  {:.1} MB/s{}, {:.0} rows/s",
            table.partitions.len(),
            seconds,
            table.schema.fields().len(),
            mb(moved) / seconds,
            if stored_bytes.is_some() {
                " stored"
            } else {
                " decoded"
            },
            rows as f64 / seconds,
        ),
    );
    Ok(ReadReport {
        rows,
        stored_bytes,
        seconds,
    })
}

/// `redstash read --out FILE`: the table into an IPC file, written to `FILE.partial`
/// and renamed when complete (a failed read leaves no file behind).
fn read_to_file(
    cli: &Cli,
    a: &ReadArgs,
    store: &TableStore,
    cons: &mut [BulkConnection],
    options: &ReadOptions,
    out: &PathBuf,
) -> Result<ReadReport, Fail> {
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let io = |e: std::io::Error| Fail(1, format!("{}: {e}", partial.display()));
    let file = std::fs::File::create(&partial).map_err(io)?;
    let t = Instant::now();
    let result = store
        .read_ipc(
            cons,
            &a.prefix,
            options,
            std::io::BufWriter::with_capacity(4 << 20, file),
            IpcFormat::File,
            a.out_compression,
        )
        .map_err(Fail::from)
        .and_then(|r| r.ok_or_else(|| Fail(3, format!("no table at prefix {:?}", a.prefix))))
        .and_then(|(w, written)| {
            w.into_inner().map_err(|e| io(e.into_error()))?;
            check_batches(a.batches, &written.partitions)?;
            std::fs::rename(&partial, out).map_err(io)?;
            Ok(written)
        });
    let written = match result {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let seconds = t.elapsed().as_secs_f64();
    let batches: usize = written.partitions.iter().map(|(_, n)| n).sum();
    let moved = written.fetched_bytes.unwrap_or(written.written_bytes);
    let how = if written.copied {
        "batches copied as stored".to_owned()
    } else {
        format!("decoded and encoded with {}", a.out_compression.name())
    };
    report(
        cli,
        json!({
            "command": "read", "prefix": a.prefix, "batches": batches,
            "partitions": written.partitions.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "rows": written.rows, "stored_bytes": written.fetched_bytes,
            "columns": written.schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>(),
            "written_bytes": written.written_bytes, "copied": written.copied,
            "seconds": seconds, "mb_per_s": mb(moved) / seconds,
            "rows_per_s": written.rows as f64 / seconds, "out": out,
        }),
        format!(
            "read {batches} batches of {} partitions into {} in {:.2} s ({how}); rows={}\n  {:.1} MB/s, {:.0} rows/s, {:.1} MB written",
            written.partitions.len(),
            out.display(),
            seconds,
            written.rows,
            mb(moved) / seconds,
            written.rows as f64 / seconds,
            mb(written.written_bytes),
        ),
    );
    Ok(ReadReport {
        rows: written.rows,
        stored_bytes: written.fetched_bytes,
        seconds,
    })
}

/// `redstash table ...`.
pub fn table_cmd(cli: &Cli, cmd: &TableCmd) -> Result<(), Fail> {
    let (TableCmd::Info {
        cluster,
        connection,
        ..
    }
    | TableCmd::List {
        cluster,
        connection,
        ..
    }
    | TableCmd::Delete {
        cluster,
        connection,
        ..
    }) = cmd;
    let mut con = BulkConnection::open(connection, cluster_on(cluster))?;
    match cmd {
        TableCmd::Info { prefix, .. } => {
            let info = TableStore::new("")
                .info(&mut con, prefix)?
                .ok_or_else(|| Fail(3, format!("no manifest at {prefix:?}:__manifest__")))?;
            let parts: Vec<_> = info
                .partitions
                .iter()
                .map(
                    |p| json!({"id": p.id, "batches": p.batches, "rows": p.rows, "bytes": p.bytes}),
                )
                .collect();
            let fields: Vec<String> = info
                .schema
                .fields()
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.data_type()))
                .collect();
            report(
                cli,
                json!({
                    "prefix": prefix, "rows": info.rows, "bytes": info.bytes,
                    "batches": info.batches(), "compression": info.compression.name(),
                    "generation": info.generation, "created_at_ms": info.created_at_ms,
                    "format_version": info.format_version, "partitions": parts, "schema": fields,
                }),
                format!(
                    "table:       {prefix}\nrows:        {}\nbatches:     {} in {} partitions\nstored:      {:.2} MB ({})\ngeneration:  {}\nschema:      {}",
                    info.rows,
                    info.batches(),
                    info.partitions.len(),
                    mb(info.bytes),
                    info.compression.name(),
                    info.generation,
                    fields.join(", ")
                ),
            );
        }
        TableCmd::List { namespace, .. } => {
            let names = TableStore::new(namespace.clone()).list(&mut con)?;
            report(cli, json!({ "tables": names }), names.join("\n"));
        }
        TableCmd::Delete { prefix, .. } => {
            let n = TableStore::new("").delete(&mut con, prefix)?;
            if n == 0 {
                return Err(Fail(3, format!("no table at prefix {prefix:?}")));
            }
            report(
                cli,
                json!({ "prefix": prefix, "deleted_keys": n }),
                format!("deleted {n} keys of {prefix}"),
            );
        }
    }
    Ok(())
}
