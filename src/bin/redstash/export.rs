//! `redstash export`: a keyspace (one server or a Redis Cluster) to DynamoDB JSON, JSON
//! Lines or RESP parts in a directory laid out like DynamoDB's export to S3; `export
//! verify DIR`, `export merge DIR... --out DIR`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::{Args, Subcommand, ValueEnum};
use redstash::exec::Scan;
use redstash::export::dynamo::{HashLayout, Inference, Occurrence, SortKey};
use redstash::export::{
    Compression, DynamoMapping, DynamoOptions, Encode, ExportReport, Exporter, KeyRecord,
    OutputFormat, PartSink, PartWriter, PartWriterOptions, ReadOptions, SlotShard, json_line,
    resp_commands,
};

use crate::{Cli, Connection, Fail, cluster_on, report};

/// `redstash export` arguments.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = EXPORT_EXAMPLES
)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub command: Option<ExportCmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

const EXPORT_EXAMPLES: &str = "\
Examples:
  redstash export --out export/ --format dynamodb --compression gzip --match 'user:*'
  redstash export --out export/ --format jsonl --cluster on --url redis://node1:7000
  redstash export --out part0/ --shard 0/4      # on machine 0 of 4, then `export merge`
  redstash export verify export/";

/// `export verify` and `export merge`.
#[derive(Subcommand, Debug)]
pub enum ExportCmd {
    /// Re-read an export directory: every part listed, its MD5, its item count, the
    /// summary's totals, no stray part.
    Verify {
        /// The export directory.
        dir: PathBuf,
    },
    /// Write a JSON Lines export back into Redis (every key rebuilt: DEL, the value,
    /// PEXPIREAT), pipelined, each key's replies checked.
    Restore {
        /// The export directory.
        dir: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// Combine the directories of the shards of one export (`--shard I/N` runs) into one
    /// manifest, checking every shard 0..N is there once.
    Merge {
        /// The shards' directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The merged directory.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The export itself.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The output directory (created; an interrupted export in it is resumed).
    /// Required.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// dynamodb (DynamoDB JSON, what its import from S3 reads), jsonl (every Redis type,
    /// binary-safe), resp (commands for redis-cli --pipe into another Redis).
    #[arg(long, value_enum, default_value = "dynamodb")]
    pub format: FormatArg,
    /// gzip or zstd (the two DynamoDB's import reads), or none.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    pub compression: String,
    /// Only keys matching this glob (SCAN MATCH).
    #[arg(long = "match", value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Only keys of this type (SCAN TYPE: string, hash, list, set, zset, stream).
    #[arg(long = "type", value_name = "TYPE")]
    pub type_filter: Option<String>,
    /// Keys per SCAN call (COUNT).
    #[arg(long, default_value_t = 1000)]
    pub count: u32,
    /// Uncompressed bytes per part (e.g. 134217728).
    #[arg(long, default_value_t = 128 << 20)]
    pub part_size: u64,
    /// Take the I-th of N equal hash-slot ranges (I/N): N exporters on N machines share
    /// one keyspace, then `export merge` (needs --export-id, the same on every machine).
    #[arg(long, value_name = "I/N", requires = "export_id")]
    pub shard: Option<String>,
    /// The export's id (letters, digits, `-`, `_`; at most 64), in its part names and
    /// manifests: give every shard of one export the same. Default: the start time and a
    /// random suffix.
    #[arg(long)]
    pub export_id: Option<String>,
    /// Elements per page of a big hash, set, sorted set, list or stream.
    #[arg(long, default_value_t = 1000)]
    pub page_elements: usize,
    /// Reject values larger than this many bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_value_bytes: u64,
    /// Encoding threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// `on` when --url is a Redis Cluster (every primary is scanned in parallel).
    #[arg(long, default_value = "off", value_parser = ["on", "off"])]
    pub cluster: String,

    /// DynamoDB: the partition key attribute.
    #[arg(long, default_value = "pk")]
    pub partition_key: String,
    /// DynamoDB: split the Redis key at this separator into partition and sort key
    /// (with --sort-key).
    #[arg(long, requires = "sort_key")]
    pub key_separator: Option<String>,
    /// DynamoDB: the sort key attribute (needs --key-separator).
    #[arg(long, requires = "key_separator")]
    pub sort_key: Option<String>,
    /// DynamoDB: split at the last separator instead of the first.
    #[arg(long)]
    pub split_at_last: bool,
    /// DynamoDB: the value attribute.
    #[arg(long, default_value = "value")]
    pub value_attribute: String,
    /// DynamoDB: hash fields as top-level attributes instead of one map.
    #[arg(long)]
    pub hash_top_level: bool,
    /// DynamoDB: number inference: auto (N where DynamoDB keeps the number exactly) or
    /// off (all S/B).
    #[arg(long, default_value = "auto", value_parser = ["auto", "off"])]
    pub infer: String,
    /// DynamoDB: the TTL attribute (epoch seconds); `none` to leave it out.
    #[arg(long, default_value = "ttl")]
    pub ttl_attribute: String,

    #[command(flatten)]
    pub connection: Connection,
}

/// `--format`.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum FormatArg {
    /// DynamoDB JSON.
    Dynamodb,
    /// JSON Lines.
    Jsonl,
    /// RESP.
    Resp,
}

/// Run `redstash export`.
pub fn run(cli: &Cli, args: &ExportArgs) -> Result<(), Fail> {
    match &args.command {
        Some(ExportCmd::Verify { dir }) => verify(cli, dir),
        Some(ExportCmd::Merge { dirs, out }) => merge(cli, dirs, out),
        Some(ExportCmd::Restore { dir, connection }) => restore(cli, dir, connection),
        None => export(cli, &args.run),
    }
}

fn verify(cli: &Cli, dir: &std::path::Path) -> Result<(), Fail> {
    let r = redstash::export::verify(dir)?;
    let ok = r.is_ok();
    let problems: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
    let mut text = format!(
        "{}: {} parts, {} items, {} rejected, {} problems",
        dir.display(),
        r.parts,
        r.items,
        r.rejected,
        problems.len()
    );
    for p in problems.iter().take(20) {
        text.push_str(&format!("\n  {p}"));
    }
    report(
        cli,
        serde_json::json!({
            "dir": dir.display().to_string(), "ok": ok, "parts": r.parts, "items": r.items,
            "uncompressed_bytes": r.uncompressed_bytes, "compressed_bytes": r.compressed_bytes,
            "rejected": r.rejected, "problems": problems,
        }),
        text,
    );
    if ok {
        Ok(())
    } else {
        Err(Fail(
            1,
            format!("{}: the export does not verify", dir.display()),
        ))
    }
}

fn restore(cli: &Cli, dir: &std::path::Path, connection: &Connection) -> Result<(), Fail> {
    let mut con = redstash::direct::DirectConnection::open_with(
        connection.url.as_str(),
        connection.options()?,
    )?;
    let r = redstash::export::restore(dir, &mut con)?;
    let mut text = format!(
        "restored {} of {} keys ({} commands, {} parts) in {:.2}s; failed {}",
        r.restored, r.keys, r.commands, r.parts, r.elapsed_s, r.failed
    );
    for e in r.errors.iter().take(10) {
        text.push_str(&format!("\n  {e}"));
    }
    report(cli, serde_json::to_value(&r).unwrap_or_default(), text);
    if r.failed > 0 {
        return Err(Fail(1, format!("{} keys were not restored", r.failed)));
    }
    Ok(())
}

fn merge(cli: &Cli, dirs: &[PathBuf], out: &std::path::Path) -> Result<(), Fail> {
    let r = redstash::export::merge(dirs, out)?;
    report(
        cli,
        serde_json::json!({
            "out": out.display().to_string(), "shards": r.shards, "parts": r.parts,
            "linked": r.linked, "copied": r.copied,
            "summary": serde_json::to_value(&r.summary).unwrap_or_default(),
        }),
        format!(
            "merged {} shards ({} parts, {} items) into {}",
            r.shards,
            r.parts,
            r.summary.item_count,
            out.display()
        ),
    );
    Ok(())
}

fn dynamo_options(a: &RunArgs) -> DynamoOptions {
    DynamoOptions {
        partition_key: a.partition_key.clone(),
        sort_key: match (&a.key_separator, &a.sort_key) {
            (Some(sep), Some(attr)) => Some(SortKey {
                attribute: attr.clone(),
                separator: sep.as_bytes().to_vec(),
                occurrence: if a.split_at_last {
                    Occurrence::Last
                } else {
                    Occurrence::First
                },
            }),
            _ => None,
        },
        value_attribute: a.value_attribute.clone(),
        hash_layout: if a.hash_top_level {
            HashLayout::TopLevel
        } else {
            HashLayout::Map
        },
        inference: if a.infer == "off" {
            Inference::Off
        } else {
            Inference::Auto
        },
        ttl_attribute: (a.ttl_attribute != "none").then(|| a.ttl_attribute.clone()),
        ..DynamoOptions::default()
    }
}

fn export(cli: &Cli, a: &RunArgs) -> Result<(), Fail> {
    let usage = |m: String| Fail(2, m);
    let out = a
        .out
        .as_deref()
        .ok_or_else(|| usage("redstash export needs --out DIR (or verify DIR / merge)".into()))?;
    let shard = match &a.shard {
        None => None,
        Some(s) => {
            let (i, n) = s
                .split_once('/')
                .and_then(|(i, n)| {
                    Some((i.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
                })
                .filter(|(i, n)| *n > 0 && i < n)
                .ok_or_else(|| usage(format!("--shard {s:?}: expected I/N with 0 <= I < N")))?;
            Some(SlotShard { index: i, count: n })
        }
    };
    let format = match a.format {
        FormatArg::Dynamodb => OutputFormat::DynamoDbJson,
        FormatArg::Jsonl => OutputFormat::JsonLines,
        FormatArg::Resp => OutputFormat::Resp,
    };
    let mut options = PartWriterOptions::new(format);
    options.compression = Compression::from_name(&a.compression)?;
    options.part_size = a.part_size.max(1);
    options.source = shown_url(&a.connection.url);
    options.export_id = a.export_id.clone();
    if let Some(s) = shard {
        options.shard = redstash::export::manifest::Shard {
            index: s.index,
            count: s.count,
        };
    }
    let writer = PartWriter::open(out, options)?;
    let mapping = DynamoMapping::new(dynamo_options(a))?;
    let encode_dynamo = |rec: &KeyRecord, out: &mut Vec<u8>| match mapping.to_item(rec) {
        Ok(item) => {
            item.write_json(out);
            Ok(())
        }
        Err(r) => Err(r.reason),
    };
    let encode_jsonl = |rec: &KeyRecord, out: &mut Vec<u8>| {
        json_line(rec, out);
        Ok(())
    };
    let encode_resp = |rec: &KeyRecord, out: &mut Vec<u8>| {
        resp_commands(rec, out);
        Ok(())
    };
    let encode: &Encode<'_> = match a.format {
        FormatArg::Dynamodb => &encode_dynamo,
        FormatArg::Jsonl => &encode_jsonl,
        FormatArg::Resp => &encode_resp,
    };
    let mut scan = match &a.pattern {
        Some(p) => Scan::matching(p.clone()),
        None => Scan::all(),
    }
    .with_count(a.count);
    if let Some(t) = &a.type_filter {
        scan = scan.with_type(t.clone());
    }
    let exporter = Exporter::new(scan)
        .with_read(ReadOptions {
            page_elements: a.page_elements.max(1),
            max_value_bytes: a.max_value_bytes,
        })
        .with_shard(shard);
    let options = a.connection.options()?;
    let mut targets: Vec<redstash::direct::DirectConnection> = if cluster_on(&a.cluster) {
        let seeds: Vec<&str> = a.connection.url.split(',').map(str::trim).collect();
        let con = redstash::cluster::ClusterConnection::open_with(seeds, options.clone())?;
        let scheme = if a.connection.url.starts_with("rediss:") {
            "rediss"
        } else {
            "redis"
        };
        let auth = auth_of(&a.connection.url);
        con.primaries()
            .iter()
            .map(|addr| {
                redstash::direct::DirectConnection::open_with(
                    format!("{scheme}://{auth}{addr}/").as_str(),
                    options.clone(),
                )
                .map_err(Fail::from)
            })
            .collect::<Result<_, _>>()?
    } else {
        vec![redstash::direct::DirectConnection::open_with(
            a.connection.url.as_str(),
            options,
        )?]
    };
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let shared = Arc::new(Mutex::new(writer));
    let mut sinks: Vec<PartSink> = (0..threads)
        .map(|_| PartSink::new(shared.clone()))
        .collect();
    let bar = crate::progress(cli, None, "export");
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let show = |p: &redstash::export::ExportProgress| {
        bar.set_position(p.items);
        bar.set_message(format!(
            "{} scanned, {:.1} MB, {:.0} items/s",
            p.scanned,
            crate::mb(p.bytes),
            p.items as f64 / p.elapsed.as_secs_f64().max(1e-9)
        ));
    };
    let result = exporter.run(&mut targets, encode, &mut sinks, Some(&show), Some(&cancel));
    bar.finish_and_clear();
    let r: ExportReport = result?;
    drop(sinks);
    let mut writer = PartSink::into_writer(shared)?;
    writer.add_vanished(r.vanished);
    writer.add_changed(r.changed);
    let summary = writer.finish()?;
    let parts = summary_parts(out);
    let mut json = serde_json::to_value(&r).unwrap_or_default();
    if let Some(o) = json.as_object_mut() {
        o.insert("parts".into(), parts.into());
        o.insert("out".into(), out.display().to_string().into());
        o.insert("item_count".into(), summary.item_count.into());
    }
    report(
        cli,
        json,
        format!(
            "exported {} keys to {} ({} parts) in {:.2}s ({:.0}/s); rejected {}, vanished {}, changed {}",
            r.items,
            out.display(),
            parts,
            r.elapsed_s,
            r.rate,
            r.rejected,
            r.vanished,
            r.changed
        ),
    );
    if r.stopped.is_some() {
        return Err(Fail(1, "the export was cancelled".into()));
    }
    Ok(())
}

/// Parts listed in the directory's manifest.
fn summary_parts(dir: &std::path::Path) -> u64 {
    redstash::export::manifest::read_files_manifest(dir)
        .map(|f| f.len() as u64)
        .unwrap_or(0)
}

/// `user:pass@` of a URL (for the primaries' URLs), or nothing.
fn auth_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.split_once('@') {
        Some((auth, _)) if !auth.contains('/') => format!("{auth}@"),
        _ => String::new(),
    }
}

/// The URL without its password.
fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((auth, host)) if !auth.contains('/') => {
                let user = auth.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
