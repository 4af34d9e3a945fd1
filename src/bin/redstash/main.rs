//! The `redstash` command-line tool (feature `cli`).
//!
//! Exit codes: 0 success, 1 error (Redis, I/O, bad value), 2 usage, 3 key or table not
//! found. With `--json`, every error (a usage error too) is one JSON object on standard
//! output: `{"error": message, "kind": "failed" | "usage" | "not_found", "exit_code"}`.

mod array;
mod bench;
mod export;
mod inspect;
mod load;
mod load_checks;
mod load_features;
mod load_postgres;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use redis::Value;
use redstash::Error;
use redstash::cluster::ClusterConnection;
use redstash::direct::{ConnectOptions, DirectConnection, TlsOptions};
use redstash::exec::{Request, Requests, SyncConnection};

/// Keep NumPy arrays and Arrow tables in Redis.
#[derive(Parser, Debug)]
#[command(name = "redstash", version, about, after_help = GLOBAL_OPTIONS)]
pub struct Cli {
    /// Print machine-readable JSON (see the global options below).
    #[arg(long, global = true, hide = true)]
    json: bool,
    /// No progress bars (see the global options below).
    #[arg(long, global = true, hide = true)]
    quiet: bool,
    /// Print nothing (set by `bench` for its phases).
    #[arg(skip)]
    silent: bool,
    #[command(subcommand)]
    command: Command,
}

/// The global options' help, shown once on the top-level page (each subcommand takes
/// them, before or after its name, but does not repeat their help).
const GLOBAL_OPTIONS: &str = "\
Global options (before or after the subcommand):
      --json   Print machine-readable JSON instead of text, errors included (usage
               errors too), and no progress bars
      --quiet  No progress bars";

/// What every subcommand's page says of the global options.
const SUBCOMMAND_NOTE: &str =
    "Global options: --json, --quiet (before or after the subcommand; see `redstash --help`).";

/// How to reach Redis: the options of the subcommands that connect.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Connection")]
pub struct Connection {
    /// Redis URL: redis://[user:pass@]host:port/db, rediss://... (TLS) or
    /// redis+unix:///path.
    ///
    /// rediss:// connects with TLS, verifying the server's certificate against the
    /// system's root certificates or --tls-cacert. `--redis-url`, as in ArrowRedis,
    /// works too. With `--cluster on` (split, read, table): one or more comma-separated
    /// seed nodes of a Redis Cluster, all redis:// or all rediss:// (TLS to every node,
    /// with the --tls-* flags).
    #[arg(
        long,
        alias = "redis-url",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub url: String,
    /// The longest wait for the server, in seconds (e.g. 0.5): to connect, and for each
    /// reply (a stalled server fails the command with a timeout error).
    ///
    /// Applies to every connection (cluster nodes included). Without it, redstash's own
    /// connections (split, read, table) wait 5 s to connect and 10 s for a reply, and
    /// redis-rs's (array, inspect) as long as the operating system does. On one server,
    /// redstash's own connections send a read that timed out again (up to 3 times, after
    /// short pauses), so a read may wait a few timeouts before it fails.
    #[arg(
        long,
        env = "REDSTASH_TIMEOUT",
        value_name = "SECONDS",
        value_parser = parse_timeout,
        allow_negative_numbers = true
    )]
    pub timeout: Option<Duration>,
    /// CA certificate(s), PEM, to verify a rediss:// server with (instead of the
    /// system's root certificates).
    #[arg(long, env = "REDSTASH_TLS_CACERT", value_name = "FILE")]
    pub tls_cacert: Option<PathBuf>,
    /// Client certificate, PEM, for a server that requires one (mutual TLS; with
    /// --tls-key).
    #[arg(
        long,
        env = "REDSTASH_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key, PEM.
    #[arg(
        long,
        env = "REDSTASH_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Accept any server certificate on rediss:// (dangerous: the server is not
    /// authenticated; for tests and self-signed servers on a trusted network).
    #[arg(long, env = "REDSTASH_TLS_INSECURE")]
    pub tls_insecure: bool,
}

/// A `--timeout`: a positive number of seconds.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("must be more than 0 seconds, not {s}"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s} seconds: {e}"))
}

impl Connection {
    /// Whether the URL asks for TLS.
    fn is_tls(&self) -> bool {
        self.url.starts_with("rediss:")
    }

    /// The TLS settings of the flags (used for rediss:// URLs only).
    fn tls(&self) -> Result<TlsOptions, Fail> {
        let mut tls = TlsOptions::default().with_insecure(self.tls_insecure);
        if let Some(ca) = &self.tls_cacert {
            tls = tls.with_ca_file(ca)?;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.with_client_cert_files(cert, key)?;
        }
        Ok(tls)
    }

    /// The options of redstash's connections (direct, and every node of a cluster): the
    /// defaults, with `--timeout` as the connect and response timeouts and the TLS
    /// flags.
    pub fn options(&self) -> Result<ConnectOptions, Fail> {
        let mut options = ConnectOptions::default();
        if let Some(t) = self.timeout {
            options = options
                .with_connect_timeout(Some(t))
                .with_response_timeout(Some(t));
        }
        if !self.is_tls() {
            return Ok(options);
        }
        Ok(options.with_tls(self.tls()?))
    }

    /// A redis-rs client for the URL, with the TLS flags for a rediss:// one.
    fn client(&self) -> Result<redis::Client, Fail> {
        if !self.is_tls() {
            return Ok(redis::Client::open(self.url.as_str())?);
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| Fail(1, format!("{}: {e}", path.display())))
        };
        let root_cert = self.tls_cacert.as_ref().map(read).transpose()?;
        let client_tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            _ => None,
        };
        let mut url = self.url.clone();
        if self.tls_insecure && !url.contains('#') {
            url.push_str("#insecure");
        }
        Ok(redis::Client::build_with_tls(
            url.as_str(),
            redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        )?)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store and fetch arrays (.npy files).
    #[command(subcommand)]
    Array(array::ArrayCmd),
    /// Describe the value at KEY: what redstash value it is (array, chunked array,
    /// batch, feature vector, table batch or manifest, ...) and its dtype, shape,
    /// compression and sizes.
    Inspect(inspect::InspectArgs),
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
    /// Bulk-load records (CSV, JSON Lines, Arrow, Parquet, PostgreSQL) into keys, hashes
    /// and indexes: pipelined, exact, resumable (--checkpoint), shardable (--shard I/N);
    /// or feature vectors into a view (--feature-view), .npy files into arrays (--arrays).
    Load(Box<load::LoadArgs>),
    /// Export the keyspace (one server or a cluster) to DynamoDB JSON, JSON Lines or
    /// RESP parts in a directory laid out like DynamoDB's export to S3; `export verify`,
    /// `export merge`.
    Export(Box<export::ExportArgs>),
}

/// A failure with its exit code.
pub struct Fail(u8, String);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let mut msg = error_chain(&e);
        if e.redis_kind() == Some(redstash::RedisErrorKind::Timeout) {
            msg.push_str(" (no answer from the server within the timeout; see --timeout)");
        }
        Fail(1, msg)
    }
}

/// An error and its causes, outermost first: "what failed: why: why".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<redis::RedisError> for Fail {
    fn from(e: redis::RedisError) -> Self {
        Error::from(e).into()
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail(1, error_chain(&e))
    }
}

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let r = match &cli.command {
        Command::Array(cmd) => array::run(&cli, cmd),
        Command::Inspect(args) => inspect::inspect(&cli, args),
        Command::Gen(args) => table::gen_cmd(&cli, args).map(|_| ()),
        Command::Split(args) => table::split_cmd(&cli, args).map(|_| ()),
        Command::Read(args) => table::read_cmd(&cli, args).map(|_| ()),
        Command::Table(cmd) => table::table_cmd(&cli, cmd),
        Command::Bench(args) => bench::run(&cli, args),
        Command::Load(args) => load::run(&cli, args),
        Command::Export(args) => export::run(&cli, args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if cli.json {
                println!("{}", error_json(code, &msg));
            } else {
                eprintln!("redstash: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

/// The JSON of a failure: `{"error": message, "kind": ..., "exit_code": code}`.
fn error_json(code: u8, msg: &str) -> serde_json::Value {
    let kind = match code {
        2 => "usage",
        3 => "not_found",
        _ => "failed",
    };
    serde_json::json!({ "error": msg, "kind": kind, "exit_code": code })
}

/// The command line, parsed. The global options' help is on the top-level page only;
/// every subcommand's page points there.
fn parse_args() -> Result<Cli, clap::Error> {
    let args = connection_options_last(std::env::args_os().collect());
    let matches = with_note(Cli::command(), false).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// The connection options (`--url`, `--timeout`, `--tls-*`) belong to the subcommands
/// that connect, but may also be given before the subcommand
/// (`redstash --url rediss://... --tls-cacert ca.pem array get ...`): those are moved to
/// the end of the command line, where the subcommand reads them (a subcommand that does
/// not connect then refuses them as it should).
fn connection_options_last(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const WITH_VALUE: [&str; 6] = [
        "--url",
        "--redis-url",
        "--timeout",
        "--tls-cacert",
        "--tls-cert",
        "--tls-key",
    ];
    const FLAGS: [&str; 1] = ["--tls-insecure"];
    let mut out = Vec::with_capacity(args.len());
    let mut moved = Vec::new();
    let mut it = args.into_iter();
    out.extend(it.next()); // the program name
    while let Some(a) = it.next() {
        let text = a.to_string_lossy().into_owned();
        let name = text.split('=').next().unwrap_or_default();
        if WITH_VALUE.contains(&name) {
            let has_value = text.contains('=');
            moved.push(a);
            if !has_value {
                moved.extend(it.next());
            }
        } else if FLAGS.contains(&name) {
            moved.push(a);
        } else if text.starts_with('-') {
            out.push(a);
        } else {
            // The subcommand: everything from here on is its own.
            out.push(a);
            out.extend(it.by_ref());
        }
    }
    out.extend(moved);
    out
}

fn with_note(cmd: clap::Command, is_subcommand: bool) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut cmd = if is_subcommand {
        cmd.after_help(SUBCOMMAND_NOTE)
    } else {
        cmd
    };
    for name in names {
        cmd = cmd.mut_subcommand(name, |s| with_note(s, true));
    }
    cmd
}

/// Report a command line clap could not parse (or `--help`/`--version`): as JSON under
/// `--json`, like every other error, with the same exit code (2).
fn usage_error(e: clap::Error) -> ExitCode {
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if !json || !e.use_stderr() {
        e.exit();
    }
    let rendered = e.render().to_string();
    // The first paragraph (the usage line and tips follow).
    let message = rendered
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let code = u8::try_from(e.exit_code()).unwrap_or(2);
    println!("{}", error_json(code, &message));
    ExitCode::from(code)
}

/// A redis-rs connection (every URL redis-rs takes; rediss:// with the TLS flags), with
/// `--timeout` as its connect, read and write timeouts.
pub fn connect(connection: &Connection) -> Result<redis::Connection, Fail> {
    let client = connection.client()?;
    let Some(t) = connection.timeout else {
        return Ok(client.get_connection()?);
    };
    let con = client.get_connection_with_timeout(t)?;
    con.set_read_timeout(Some(t))?;
    con.set_write_timeout(Some(t))?;
    Ok(con)
}

/// The fastest connection for bulk data: redstash's direct connection (TLS included),
/// or a Redis Cluster connection (`--cluster on`).
#[allow(
    clippy::large_enum_variant,
    reason = "a few connections per process, opened once: a few hundred bytes apart"
)]
pub enum BulkConnection {
    /// redstash's RESP2 fast path.
    Direct(DirectConnection),
    /// A Redis Cluster (one direct connection per node).
    Cluster(ClusterConnection),
}

/// Whether a `--cluster` flag says `on`.
pub fn cluster_on(flag: &str) -> bool {
    flag == "on"
}

impl BulkConnection {
    /// Open one; with `cluster`, `url` is one or more comma-separated seed nodes of a
    /// Redis Cluster (each node connection with the same options: `--timeout`, TLS).
    pub fn open(connection: &Connection, cluster: bool) -> Result<Self, Fail> {
        Self::open_with(connection, &connection.options()?, cluster)
    }

    fn open_with(
        connection: &Connection,
        options: &ConnectOptions,
        cluster: bool,
    ) -> Result<Self, Fail> {
        let url = connection.url.as_str();
        if cluster {
            let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
            let con = ClusterConnection::open_with(seeds, options.clone())?;
            return Ok(BulkConnection::Cluster(con));
        }
        Ok(BulkConnection::Direct(DirectConnection::open_with(
            url,
            options.clone(),
        )?))
    }

    /// Open `n` (at least one), with the same settings (TLS configured once).
    pub fn open_many(connection: &Connection, n: usize, cluster: bool) -> Result<Vec<Self>, Fail> {
        let options = connection.options()?;
        (0..n.max(1))
            .map(|_| Self::open_with(connection, &options, cluster))
            .collect()
    }
}

impl SyncConnection for BulkConnection {
    fn run_request(&mut self, req: &Request<'_>) -> redstash::Result<Vec<Value>> {
        match self {
            BulkConnection::Direct(c) => c.run_request(req),
            BulkConnection::Cluster(c) => c.run_request(req),
        }
    }

    fn run_requests(&mut self, reqs: Requests<'_>) -> redstash::exec::Delivered {
        match self {
            BulkConnection::Direct(c) => c.run_requests(reqs),
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
