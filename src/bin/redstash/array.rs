//! `redstash array put|get` and `redstash inspect`: arrays as `.npy` files.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use redstash::codec::{self, ArrayCodec, Format, Limits, Npy};
use redstash::{ArrayStore, Compression};

use crate::{Cli, Fail, connect, report};

#[derive(Subcommand, Debug)]
pub enum ArrayCmd {
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
pub struct PutOpts {
    /// Compression: none, lz4, zlib[:LEVEL], zstd[:LEVEL].
    #[arg(long, default_value = "none")]
    pub codec: String,
    /// Expire the key after this many seconds.
    #[arg(long)]
    pub ttl: Option<f64>,
    /// Store arrays larger than this many bytes in chunks.
    #[arg(long)]
    pub chunk_size: Option<usize>,
}

/// Run an `array` subcommand.
pub fn run(cli: &Cli, cmd: &ArrayCmd) -> Result<(), Fail> {
    match cmd {
        ArrayCmd::Put { key, file, opts } => {
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
                cli,
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
        ArrayCmd::Get { key, output } => {
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
                    cli,
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
    }
    Ok(())
}

/// `redstash inspect KEY`.
pub fn inspect(cli: &Cli, key: &str) -> Result<(), Fail> {
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
        cli,
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
