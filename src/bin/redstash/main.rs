//! The `redstash` command-line tool (feature `cli`).
//!
//! Exit codes: 0 success, 1 error (Redis, I/O, bad value), 2 usage, 3 key not found.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use redstash::codec::{self, ArrayCodec, Format, Limits, Npy};
use redstash::{ArrayStore, Compression, Error};

/// Keep NumPy arrays in Redis.
#[derive(Parser, Debug)]
#[command(name = "redstash", version, about)]
struct Cli {
    /// Redis URL (redis://[user:pass@]host:port/db, rediss:// for TLS, redis+unix:///path).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        global = true
    )]
    url: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store and fetch arrays (.npy files).
    #[command(subcommand)]
    Array(ArrayCmd),
    /// Describe the value at KEY: format, dtype, shape, compression, sizes.
    Inspect {
        /// The Redis key.
        key: String,
    },
}

#[derive(Subcommand, Debug)]
enum ArrayCmd {
    /// Store FILE.npy (any numpy .npy: any byte order, C or Fortran order) at KEY.
    Put {
        /// The Redis key.
        key: String,
        /// The .npy file to read.
        file: PathBuf,
        #[command(flatten)]
        opts: PutOpts,
    },
    /// Write the array at KEY to a .npy file (always plain, uncompressed .npy).
    Get {
        /// The Redis key.
        key: String,
        /// Output file (`-` for standard output).
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Args, Debug)]
struct PutOpts {
    /// Compression: none, lz4, zlib[:LEVEL], zstd[:LEVEL].
    #[arg(long, default_value = "none")]
    codec: String,
    /// Expire the key after this many seconds.
    #[arg(long)]
    ttl: Option<f64>,
    /// Store arrays larger than this many bytes in chunks.
    #[arg(long)]
    chunk_size: Option<usize>,
}

/// A failure with its exit code.
struct Fail(u8, String);

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
    match run(&cli) {
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

fn connect(url: &str) -> Result<redis::Connection, Fail> {
    Ok(redis::Client::open(url)?.get_connection()?)
}

fn run(cli: &Cli) -> Result<(), Fail> {
    match &cli.command {
        Command::Array(ArrayCmd::Put { key, file, opts }) => {
            let bytes = std::fs::read(file)?;
            let array = codec::decode_array(bytes.into(), &Limits::default())?;
            let compression = Compression::parse(&opts.codec)?;
            let mut store = ArrayStore::new("").with_codec(codec::codec_for(compression));
            if let Some(t) = opts.ttl {
                if !(t > 0.0 && t.is_finite()) {
                    return Err(Fail(2, format!("--ttl must be a positive number, got {t}")));
                }
                store = store.ttl(Duration::from_secs_f64(t));
            }
            if let Some(c) = opts.chunk_size {
                store = store.chunk_size(c);
            }
            let mut con = connect(&cli.url)?;
            store.put(&mut con, key, &array)?;
            report(
                cli.json,
                serde_json::json!({
                    "key": key, "dtype": array.dtype().name(), "shape": array.shape(),
                    "codec": store.codec().name(),
                }),
                format!(
                    "stored {} {:?} at {key} ({})",
                    array.dtype(),
                    array.shape(),
                    store.codec().name()
                ),
            );
        }
        Command::Array(ArrayCmd::Get { key, output }) => {
            let mut con = connect(&cli.url)?;
            let array = ArrayStore::new("")
                .get(&mut con, key)?
                .ok_or_else(|| Fail(3, format!("key {key:?} not found")))?;
            let npy = Npy.encode(&array.as_array_ref())?;
            if output.as_os_str() == "-" {
                std::io::stdout().write_all(&npy)?;
            } else {
                std::fs::write(output, &npy)?;
                report(
                    cli.json,
                    serde_json::json!({
                        "key": key, "file": output, "dtype": array.dtype().name(),
                        "shape": array.shape(), "bytes": npy.len(),
                    }),
                    format!(
                        "wrote {} {:?} to {}",
                        array.dtype(),
                        array.shape(),
                        output.display()
                    ),
                );
            }
        }
        Command::Inspect { key } => inspect(cli, key)?,
    }
    Ok(())
}

fn inspect(cli: &Cli, key: &str) -> Result<(), Fail> {
    let mut con = connect(&cli.url)?;
    let kind: String = redis::cmd("TYPE").arg(key).query(&mut con)?;
    match kind.as_str() {
        "none" => return Err(Fail(3, format!("key {key:?} not found"))),
        "string" => {}
        other => {
            return Err(Fail(
                1,
                format!("key {key:?} holds a Redis {other}, not a value"),
            ));
        }
    }
    let raw: Vec<u8> = redis::cmd("GET").arg(key).query(&mut con)?;
    let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut con)?;
    let ttl = (pttl >= 0).then_some(pttl as f64 / 1000.0);
    let (layers, info) = match Format::sniff(&raw) {
        Format::ChunkManifest => {
            let a = ArrayStore::new("")
                .get(&mut con, key)?
                .ok_or_else(|| Fail(3, format!("key {key:?} vanished")))?;
            let header = codec::npy::header_len(&a.as_array_ref());
            (
                "chunked".to_owned(),
                (
                    a.dtype(),
                    a.shape().to_vec(),
                    a.order(),
                    header + a.nbytes(),
                ),
            )
        }
        _ => {
            let i = codec::inspect(&raw, &Limits::default())?;
            let names: Vec<&str> = i.layers.iter().map(|f| f.name()).collect();
            (names.join("+"), (i.dtype, i.shape, i.order, i.raw_len))
        }
    };
    let (dtype, shape, order, raw_len) = info;
    report(
        cli.json,
        serde_json::json!({
            "key": key, "format": layers, "dtype": dtype.name(), "descr": dtype.descr(),
            "shape": shape, "order": format!("{order:?}"), "stored_bytes": raw.len(),
            "raw_bytes": raw_len, "ttl_seconds": ttl,
        }),
        format!(
            "key:      {key}\nformat:   {layers}\ndtype:    {dtype} ({})\nshape:    {shape:?}\norder:    {order:?}\nstored:   {} bytes\nraw npy:  {raw_len} bytes (ratio {:.2})\nttl:      {}",
            dtype.descr(),
            raw.len(),
            raw_len as f64 / raw.len().max(1) as f64,
            ttl.map(|t| format!("{t:.3} s"))
                .unwrap_or_else(|| "none".into())
        ),
    );
    Ok(())
}

fn report(json: bool, value: serde_json::Value, text: String) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}
