//! `redstash load SOURCE`: bulk loading from CSV, JSON Lines (and Arrow/Parquet,
//! PostgreSQL with their features) into keys, hashes and index structures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use redstash::load::{
    Atomicity, CsvOptions, CsvSource, FieldFilter, Format, IndexOp, Input, JsonLinesSource,
    KeyTemplate, LoadReport, Loader, Mapping, OnError, Shard, Source, Ttl, TtlField, ValueMapping,
};

use crate::{BulkConnection, Cli, Connection, Fail, cluster_on};

/// `redstash load` arguments.
#[derive(Args, Debug)]
#[command(after_help = LOAD_EXAMPLES)]
pub struct LoadArgs {
    /// The input: a file (CSV, JSON Lines; gzip or zstd compressed files are
    /// detected; Arrow IPC, Parquet), `-` for standard input, or a postgres:// URL with
    /// --query.
    pub source: PathBuf,
    /// The input's format (default: from the file name; CSV for standard input).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// CSV without a header row: the field names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub fields: Option<Vec<String>>,
    /// CSV field delimiter (one character; `\t` for tab). Default `,` (tab for .tsv).
    #[arg(long)]
    pub delimiter: Option<String>,

    /// The whole mapping as a JSON file (key, value, ttl, indexes, atomicity: see
    /// `redstash::load::Mapping`), instead of the mapping flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "key", "value", "include", "exclude", "ttl", "ttl_field", "sadd", "hset", "zadd",
        "rpush", "hincrby", "atomic",
    ])]
    pub mapping: Option<PathBuf>,
    /// The key of each record: a template of `{field}`s, e.g. 'user:{id}' (`{{`/`}}`
    /// are literal braces).
    #[arg(long)]
    pub key: Option<String>,
    /// What is stored at the key: json (a JSON object of the fields, numbers as
    /// numbers), hash (one hash field per record field), raw:FIELD (that field's value
    /// as a string), none (only the index operations).
    #[arg(long, default_value = "json")]
    pub value: String,
    /// Only these fields in the JSON or hash value (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub include: Vec<String>,
    /// Leave these fields out of the JSON or hash value (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Expire every key this many seconds after it is written.
    #[arg(long, conflicts_with = "ttl_field")]
    pub ttl: Option<f64>,
    /// Expire each key at the time a field gives (see --ttl-unit).
    #[arg(long)]
    pub ttl_field: Option<String>,
    /// What --ttl-field holds: seconds or ms from now, or a unix time in seconds
    /// (unix) or milliseconds (unix-ms).
    #[arg(long, value_enum, default_value = "seconds")]
    pub ttl_unit: TtlUnit,
    /// Add each record to a set: SET[=MEMBER] (templates; MEMBER defaults to the key),
    /// e.g. --sadd 'users:country:{country}'. Repeatable.
    #[arg(long, value_name = "SET[=MEMBER]")]
    pub sadd: Vec<String>,
    /// Keep a lookup hash: HASH=FIELD[=VALUE] (VALUE defaults to the key), e.g.
    /// --hset 'users:by_email={email}'. Repeatable.
    #[arg(long, value_name = "HASH=FIELD[=VALUE]")]
    pub hset: Vec<String>,
    /// Keep a sorted set scored by a numeric field: ZSET=SCORE_FIELD[=MEMBER], e.g.
    /// --zadd 'users:by_age=age'. Repeatable.
    #[arg(long, value_name = "ZSET=SCORE_FIELD[=MEMBER]")]
    pub zadd: Vec<String>,
    /// Append to a list: LIST[=VALUE] (not idempotent: no --checkpoint). Repeatable.
    #[arg(long, value_name = "LIST[=VALUE]")]
    pub rpush: Vec<String>,
    /// Count records in a hash: HASH=FIELD[=BY] (not idempotent: no --checkpoint).
    /// Repeatable.
    #[arg(long, value_name = "HASH=FIELD[=BY]")]
    pub hincrby: Vec<String>,
    /// Apply each record's commands atomically: multi (MULTI/EXEC) or lua (one script
    /// run with EVALSHA). On a cluster, a record's keys must share a hash tag.
    #[arg(long, value_enum, default_value = "off")]
    pub atomic: AtomicArg,

    /// Records per pipelined batch.
    #[arg(long, default_value_t = redstash::load::DEFAULT_BATCH_SIZE, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub batch_size: usize,
    /// Batches queued for sending (memory is bounded by about twice this many).
    #[arg(long, default_value_t = redstash::load::DEFAULT_WINDOW, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub window: usize,
    /// Connections sending in parallel.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256).map(|v| v as usize))]
    pub connections: usize,
    /// `on` when --url is a Redis Cluster (commands are sent to each key's node).
    #[arg(long, default_value = "off", value_parser = ["on", "off"])]
    pub cluster: String,
    /// A record that cannot be read, mapped or stored: stop, or skip it (and go on).
    #[arg(long, value_enum, default_value = "stop")]
    pub on_error: OnErrorArg,
    /// With --on-error skip: stop once more than this many records failed.
    #[arg(long)]
    pub max_errors: Option<u64>,
    /// Write each failed or skipped record (with its line and error) to FILE, as JSON
    /// Lines.
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Keep the position of the load in FILE: after a crash or Ctrl-C, the same
    /// command continues from there.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Take every N-th batch starting with the I-th (I/N, from 0/N): N loaders, on N
    /// machines, share one load.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Write the commands to FILE as RESP (for `redis-cli --pipe`) instead of sending
    /// them (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub emit_resp: Option<PathBuf>,
    #[command(flatten)]
    pub checks: Box<crate::load_checks::CheckArgs>,
    #[command(flatten)]
    pub store: crate::load_features::StoreLoadArgs,
    #[command(flatten)]
    pub postgres: crate::load_postgres::PostgresArgs,
    #[command(flatten)]
    pub connection: Connection,
}

const LOAD_EXAMPLES: &str = "\
Examples:
  redstash load users.csv --key 'user:{id}' --value hash \\
      --hset 'users:by_email={email}' --sadd 'users:all' --zadd 'users:by_age=age'
  redstash load events.jsonl.gz --key 'event:{id}' --ttl 86400 --checkpoint events.ckpt
  redstash load items.csv --key 'item:{id}' --emit-resp items.resp && redis-cli --pipe < items.resp
  redstash load big.csv --key 'k:{id}' --shard 0/4    # on machine 0 of 4
  redstash load postgres://app@db/shop --query 'SELECT * FROM users' --pg-key-column id \\
      --key 'user:{id}' --value hash --checkpoint users.ckpt";

/// `--format`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum FormatArg {
    /// Comma-separated values.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Arrow IPC file or stream.
    Arrow,
    /// Parquet.
    Parquet,
}

/// `--ttl-unit`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum TtlUnit {
    /// Seconds from now.
    Seconds,
    /// Milliseconds from now.
    Ms,
    /// Unix time in seconds.
    Unix,
    /// Unix time in milliseconds.
    UnixMs,
}

/// `--atomic`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum AtomicArg {
    /// Plain pipelining.
    Off,
    /// MULTI/EXEC per record.
    Multi,
    /// A Lua script per record (EVALSHA).
    Lua,
}

/// `--on-error`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum OnErrorArg {
    /// Stop at the first failed record.
    Stop,
    /// Report it and go on.
    Skip,
}

fn usage(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

fn template(s: &str) -> Result<KeyTemplate, Fail> {
    KeyTemplate::parse(s).map_err(|e| usage(e.to_string()))
}

/// Split `A=B=C` at the `=` signs outside `{...}` placeholders.
fn split_spec(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '=' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn opt_template(parts: &[&str], i: usize) -> Result<Option<KeyTemplate>, Fail> {
    parts.get(i).map(|p| template(p)).transpose()
}

/// The mapping the flags describe.
fn mapping(args: &LoadArgs) -> Result<Mapping, Fail> {
    let key = args
        .key
        .as_deref()
        .ok_or_else(|| usage("--key is required"))?;
    let filter = FieldFilter {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
    };
    let value = match args.value.as_str() {
        "json" => ValueMapping::Json(filter),
        "hash" => ValueMapping::Hash(filter),
        "none" => ValueMapping::None,
        other => match other.strip_prefix("raw:") {
            Some(f) if !f.is_empty() => ValueMapping::Raw(f.to_owned()),
            _ => {
                return Err(usage(format!(
                    "--value {other:?}: expected json, hash, raw:FIELD or none"
                )));
            }
        },
    };
    let mut m = Mapping::new(template(key)?).with_value(value);
    if let Some(secs) = args.ttl {
        if !(secs > 0.0 && secs.is_finite()) {
            return Err(usage(format!("--ttl {secs}: must be more than 0 seconds")));
        }
        m = m.with_ttl(Ttl::Fixed(Duration::from_secs_f64(secs)));
    }
    if let Some(field) = &args.ttl_field {
        let kind = match args.ttl_unit {
            TtlUnit::Seconds => TtlField::Seconds,
            TtlUnit::Ms => TtlField::Milliseconds,
            TtlUnit::Unix => TtlField::UnixSeconds,
            TtlUnit::UnixMs => TtlField::UnixMilliseconds,
        };
        m = m.with_ttl(Ttl::Field {
            field: field.clone(),
            kind,
        });
    }
    for s in &args.sadd {
        let p = split_spec(s);
        if p.len() > 2 {
            return Err(usage(format!("--sadd {s:?}: expected SET[=MEMBER]")));
        }
        m = m.with_index(IndexOp::Sadd {
            set: template(p[0])?,
            member: opt_template(&p, 1)?,
        });
    }
    for s in &args.hset {
        let p = split_spec(s);
        if !(2..=3).contains(&p.len()) {
            return Err(usage(format!("--hset {s:?}: expected HASH=FIELD[=VALUE]")));
        }
        m = m.with_index(IndexOp::Hset {
            hash: template(p[0])?,
            field: template(p[1])?,
            value: opt_template(&p, 2)?,
        });
    }
    for s in &args.zadd {
        let p = split_spec(s);
        if !(2..=3).contains(&p.len()) || p[1].is_empty() {
            return Err(usage(format!(
                "--zadd {s:?}: expected ZSET=SCORE_FIELD[=MEMBER]"
            )));
        }
        m = m.with_index(IndexOp::Zadd {
            zset: template(p[0])?,
            score: p[1].to_owned(),
            member: opt_template(&p, 2)?,
        });
    }
    for s in &args.rpush {
        let p = split_spec(s);
        if p.len() > 2 {
            return Err(usage(format!("--rpush {s:?}: expected LIST[=VALUE]")));
        }
        m = m.with_index(IndexOp::Rpush {
            list: template(p[0])?,
            value: opt_template(&p, 1)?,
        });
    }
    for s in &args.hincrby {
        let p = split_spec(s);
        if !(2..=3).contains(&p.len()) {
            return Err(usage(format!("--hincrby {s:?}: expected HASH=FIELD[=BY]")));
        }
        let by = match p.get(2) {
            Some(b) => b
                .parse()
                .map_err(|_| usage(format!("--hincrby {s:?}: BY must be an integer")))?,
            None => 1,
        };
        m = m.with_index(IndexOp::Hincrby {
            hash: template(p[0])?,
            field: template(p[1])?,
            by,
        });
    }
    let atomicity = match args.atomic {
        AtomicArg::Off => Atomicity::None,
        AtomicArg::Multi => Atomicity::Multi,
        AtomicArg::Lua => Atomicity::Lua,
    };
    Ok(m.with_atomicity(atomicity))
}

fn delimiter(args: &LoadArgs, path: &Path) -> Result<u8, Fail> {
    match args.delimiter.as_deref() {
        None => {
            let tsv = path
                .to_str()
                .is_some_and(|p| p.ends_with(".tsv") || p.ends_with(".tsv.gz"));
            Ok(if tsv { b'\t' } else { b',' })
        }
        Some("\\t") | Some("\t") => Ok(b'\t'),
        Some(d) if d.len() == 1 => Ok(d.as_bytes()[0]),
        Some(d) => Err(usage(format!("--delimiter {d:?}: one ASCII character"))),
    }
}

/// The format a `--format` names.
pub fn format_of(f: FormatArg) -> Format {
    match f {
        FormatArg::Csv => Format::Csv,
        FormatArg::Jsonl => Format::JsonLines,
        FormatArg::Arrow => Format::Arrow,
        FormatArg::Parquet => Format::Parquet,
    }
}

/// The source the arguments name.
pub fn open_source(args: &LoadArgs) -> Result<Box<dyn Source + Send>, Fail> {
    if let Some(source) = crate::load_postgres::open(args)? {
        return Ok(source);
    }
    let path = &args.source;
    let format = match args.format {
        Some(f) => format_of(f),
        None if path.as_os_str() == "-" => Format::Csv,
        None => Format::from_path(path).ok_or_else(|| {
            usage(format!(
                "{}: cannot tell the format from the name: give --format",
                path.display()
            ))
        })?,
    };
    let input = || Input::open(path).map_err(Fail::from);
    Ok(match format {
        Format::Csv => Box::new(CsvSource::new(
            input()?,
            CsvOptions {
                delimiter: delimiter(args, path)?,
                quote: b'"',
                fields: args.fields.clone(),
                ..CsvOptions::default()
            },
        )?),
        Format::JsonLines => Box::new(JsonLinesSource::new(input()?)),
        Format::Arrow if path.as_os_str() == "-" => Box::new(
            redstash::load::ArrowSource::from_stream(std::io::stdin(), "stdin (arrow)")?,
        ),
        Format::Arrow => Box::new(redstash::load::ArrowSource::open(path)?),
        Format::Parquet => Box::new(redstash::load::ParquetSource::open(path)?),
    })
}

/// A progress bar of the input's bytes (records and rate in its message), on a
/// terminal only.
fn progress_bar(cli: &Cli) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::new(0);
    if cli.json || cli.quiet || cli.silent {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "load [{bar:30}] {bytes}/{total_bytes} {msg} {elapsed_precise} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Run `redstash load`.
pub fn run(cli: &Cli, args: &LoadArgs) -> Result<(), Fail> {
    if args.store.active() {
        return crate::load_features::run(cli, args);
    }
    let mapping = mapping(args)?;
    let cluster = cluster_on(&args.cluster);
    if args.checks.alone() {
        return crate::load_checks::run_alone(cli, args, &mapping, cluster);
    }
    let shard = args
        .shard
        .as_deref()
        .map(Shard::parse)
        .transpose()
        .map_err(|e| usage(e.to_string()))?;
    let bar = progress_bar(cli);
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second Ctrl-C ends the process at once.
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                crate::load_checks::on_forced_exit();
                std::process::exit(130);
            }
        });
    }
    let mut loader = Loader::new(mapping)
        .with_batch_size(args.batch_size)
        .with_window(args.window)
        .with_on_error(match args.on_error {
            OnErrorArg::Stop => OnError::Stop,
            OnErrorArg::Skip => OnError::Skip,
        })
        .with_max_errors(args.max_errors)
        .with_shard(shard.filter(|_| !crate::load_postgres::shards_in_source(args)))
        .for_cluster(cluster)
        .with_cancel(cancel.clone());
    {
        let bar = bar.clone();
        loader = loader.with_progress(move |p| {
            if let Some(t) = p.bytes_total {
                bar.set_length(t);
            }
            bar.set_position(p.bytes_read);
            bar.set_message(format!(
                "{} records, {} loaded, {} errors, {:.0}/s",
                p.read,
                p.loaded,
                p.errors,
                p.rate()
            ));
        });
    }
    if let Some(c) = &args.checkpoint {
        loader = loader.with_checkpoint(c);
    }
    if let Some(r) = &args.rejects {
        loader = loader.with_rejects(r);
    }
    let mut source = open_source(args)?;
    if crate::load_postgres::is_postgres(&args.source) {
        crate::load_postgres::rows_bar(&bar);
    }
    let report = if let Some(out) = &args.emit_resp {
        if out.as_os_str() == "-" {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            loader.emit_resp(source.as_mut(), &mut w)?
        } else {
            let f = std::fs::File::create(out)
                .map_err(|e| Fail(1, format!("{}: {e}", out.display())))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            loader.emit_resp(source.as_mut(), &mut w)?
        }
    } else {
        let session = crate::load_checks::before_load(cli, args, loader.mapping(), cluster)?;
        let mut cons = BulkConnection::open_many(&args.connection, args.connections, cluster)?;
        let report = loader.load_parallel(source.as_mut(), &mut cons);
        session.finish(cli);
        report?
    };
    bar.finish_and_clear();
    print_report(
        cli,
        args,
        &report,
        args.emit_resp
            .as_ref()
            .is_some_and(|p| p.as_os_str() == "-"),
    );
    match &report.stopped {
        None => crate::load_checks::after_load(cli, args, loader.mapping(), cluster),
        Some(why) => Err(Fail(1, format!("the load stopped: {why}"))),
    }
}

fn print_report(cli: &Cli, args: &LoadArgs, r: &LoadReport, resp_on_stdout: bool) {
    if cli.silent {
        return;
    }
    if cli.json {
        let mut v = r.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "source".into(),
                crate::load_postgres::shown_source(&args.source).into(),
            );
        }
        if resp_on_stdout {
            eprintln!("{v}");
        } else {
            println!("{v}");
        }
        return;
    }
    let mut text = r.summary();
    for e in r.errors.iter().take(10) {
        text.push_str(&format!("\n  {e}"));
    }
    if r.errors.len() > 10 || (r.failed + r.skipped) as usize > r.errors.len() {
        text.push_str(&format!(
            "\n  ... {} record errors in all{}",
            r.failed + r.skipped,
            if args.rejects.is_some() {
                " (see the rejects file)"
            } else {
                ""
            }
        ));
    }
    if let Some(c) = r.checkpoint.filter(|_| args.checkpoint.is_some()) {
        text.push_str(&format!("\ncheckpoint: {c} records done"));
    }
    // The summary goes to standard error when standard output carries the RESP.
    if resp_on_stdout {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}
