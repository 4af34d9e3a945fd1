//! The `redstash` command-line tool (feature `cli`).
//!
//! Exit codes: 0 success, 1 error (Redis, I/O, bad value), 2 usage, 3 key or table not
//! found.

mod array;
mod bench;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use redis::Value;
use redstash::Error;
use redstash::cluster::ClusterConnection;
use redstash::direct::DirectConnection;
use redstash::exec::{Request, Requests, SyncConnection};

/// Keep NumPy arrays and Arrow tables in Redis.
#[derive(Parser, Debug)]
#[command(name = "redstash", version, about)]
pub struct Cli {
    /// Redis URL (redis://[user:pass@]host:port/db, redis+unix:///path; rediss:// (TLS)
    /// is not supported by this build yet;
    /// `--redis-url` as in ArrowRedis works too). With `--cluster on`: one or more
    /// comma-separated seed nodes of a Redis Cluster.
    #[arg(
        long,
        alias = "redis-url",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        global = true
    )]
    url: String,
    /// Print machine-readable JSON instead of text (and no progress bars).
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    /// Print nothing (set by `bench` for its phases).
    #[arg(skip)]
    silent: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store and fetch arrays (.npy files).
    #[command(subcommand)]
    Array(array::ArrayCmd),
    /// Describe the value at KEY: format, dtype, shape, compression, sizes.
    Inspect {
        /// The Redis key.
        key: String,
    },
    /// Generate the ArrowRedis benchmark dataset as an Arrow IPC file.
    Gen(table::GenArgs),
    /// Write an Arrow IPC file or stream to Redis as a partitioned table.
    Split(table::SplitArgs),
    /// Read a table (all or some partitions and columns).
    Read(table::ReadArgs),
    /// Tables: info, list, delete.
    #[command(subcommand)]
    Table(table::TableCmd),
    /// gen + split + read of the ArrowRedis benchmark sizes, with a summary.
    Bench(bench::BenchArgs),
}

/// A failure with its exit code.
pub struct Fail(u8, String);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail(1, e.to_string())
    }
}

impl From<redis::RedisError> for Fail {
    fn from(e: redis::RedisError) -> Self {
        Error::from(e).into()
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail(1, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::Array(cmd) => array::run(&cli, cmd),
        Command::Inspect { key } => array::inspect(&cli, key),
        Command::Gen(args) => table::gen_cmd(&cli, args).map(|_| ()),
        Command::Split(args) => table::split_cmd(&cli, args).map(|_| ()),
        Command::Read(args) => table::read_cmd(&cli, args).map(|_| ()),
        Command::Table(cmd) => table::table_cmd(&cli, cmd),
        Command::Bench(args) => bench::run(&cli, args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if cli.json {
                println!("{}", serde_json::json!({ "error": msg, "exit_code": code }));
            } else {
                eprintln!("redstash: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

/// A redis-rs connection (every URL redis-rs takes).
pub fn connect(url: &str) -> Result<redis::Connection, Fail> {
    Ok(redis::Client::open(url)?.get_connection()?)
}

/// The fastest connection for bulk data: redstash's direct connection, or redis-rs for
/// what it does not speak (TLS), or a Redis Cluster connection (`--cluster on`).
pub enum BulkConnection {
    /// redstash's RESP2 fast path.
    Direct(DirectConnection),
    /// redis-rs.
    Redis(redis::Connection),
    /// A Redis Cluster (one direct connection per primary).
    Cluster(ClusterConnection),
}

/// Whether a `--cluster` flag says `on`.
pub fn cluster_on(flag: &str) -> bool {
    flag == "on"
}

impl BulkConnection {
    /// Open one; with `cluster`, `url` is one or more comma-separated seed nodes of a
    /// Redis Cluster.
    pub fn open(url: &str, cluster: bool) -> Result<Self, Fail> {
        if cluster {
            let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
            return Ok(BulkConnection::Cluster(ClusterConnection::open(seeds)?));
        }
        if url.starts_with("rediss:") {
            return Ok(BulkConnection::Redis(connect(url)?));
        }
        Ok(BulkConnection::Direct(DirectConnection::open(url)?))
    }

    /// Open `n` (at least one).
    pub fn open_many(url: &str, n: usize, cluster: bool) -> Result<Vec<Self>, Fail> {
        (0..n.max(1)).map(|_| Self::open(url, cluster)).collect()
    }
}

impl SyncConnection for BulkConnection {
    fn run_request(&mut self, req: &Request<'_>) -> redstash::Result<Vec<Value>> {
        match self {
            BulkConnection::Direct(c) => c.run_request(req),
            BulkConnection::Redis(c) => c.run_request(req),
            BulkConnection::Cluster(c) => c.run_request(req),
        }
    }

    fn run_requests(&mut self, reqs: Requests<'_>) -> redstash::exec::Delivered {
        match self {
            BulkConnection::Direct(c) => c.run_requests(reqs),
            BulkConnection::Redis(c) => c.run_requests(reqs),
            BulkConnection::Cluster(c) => c.run_requests(reqs),
        }
    }
}

/// Print `value` (with `--json`) or `text`.
pub fn report(cli: &Cli, value: serde_json::Value, text: String) {
    if cli.silent {
        return;
    }
    if cli.json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

/// A progress bar on standard error counting batches (the message shows bytes),
/// hidden with `--json`, `--quiet` or when standard error is not a terminal.
pub fn progress(cli: &Cli, len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    if cli.json || cli.quiet || cli.silent {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if len.is_some() {
        "{prefix:10} [{bar:30}] {pos}/{len} batches {msg} {elapsed_precise} (eta {eta})"
    } else {
        "{prefix:10} {spinner} {pos} batches {msg} {elapsed_precise}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_owned());
    bar
}

/// Megabytes (10^6 bytes, as ArrowRedis reports them).
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
