//! `redstash array put|get`: arrays as `.npy` files.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use redstash::codec::{self, ArrayCodec, Limits, Npy};
use redstash::{ArrayStore, Compression};

use crate::{Cli, Connection, Fail, connect, report};

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
        #[command(flatten)]
        connection: Connection,
    },
    /// Write the array at KEY to a .npy file (always plain, uncompressed .npy).
    Get {
        /// The Redis key.
        key: String,
        /// Output file (`-` for standard output).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        connection: Connection,
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
    /// Store arrays larger than this many bytes in chunks (at least 1; default 256 MiB).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: Option<u64>,
}

/// Run an `array` subcommand.
pub fn run(cli: &Cli, cmd: &ArrayCmd) -> Result<(), Fail> {
    match cmd {
        ArrayCmd::Put {
            key,
            file,
            opts,
            connection,
        } => {
            let in_file = |e: &dyn std::fmt::Display| Fail(1, format!("{}: {e}", file.display()));
            let bytes = std::fs::read(file).map_err(|e| in_file(&e))?;
            let array =
                codec::decode_array(bytes.into(), &Limits::default()).map_err(|e| in_file(&e))?;
            let compression = Compression::parse(&opts.codec)?;
            let mut store = ArrayStore::new("").with_codec(codec::codec_for(compression));
            if let Some(t) = opts.ttl {
                if !(t > 0.0 && t.is_finite()) {
                    return Err(Fail(2, format!("--ttl must be a positive number, got {t}")));
                }
                store = store.with_ttl(Duration::from_secs_f64(t));
            }
            if let Some(c) = opts.chunk_size {
                store = store.with_chunk_bytes(usize::try_from(c).unwrap_or(usize::MAX));
            }
            let mut con = connect(connection)?;
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
        ArrayCmd::Get {
            key,
            output,
            connection,
        } => {
            let mut con = connect(connection)?;
            let array = ArrayStore::new("")
                .get(&mut con, key)?
                .ok_or_else(|| Fail(3, format!("key {key:?} not found")))?;
            let npy = Npy.encode(&array.as_array_ref())?;
            if output.as_os_str() == "-" {
                std::io::stdout().write_all(&npy)?;
            } else {
                std::fs::write(output, &npy)
                    .map_err(|e| Fail(1, format!("{}: {e}", output.display())))?;
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
