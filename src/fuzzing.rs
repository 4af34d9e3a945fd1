//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`). **Not a stable API**:
//! hidden from the docs, may change or go away in any release.
//!
//! Each function is a thin wrapper over one decoder of bytes that come from Redis, a file or
//! a server: bytes in, `Result` out. Internal parsers are reached only through here. The
//! [`limits`] the targets use bound every decoded value, so a target run with
//! `-malloc_limit_mb` shows that no input makes a decoder allocate more than that.

use bytes::Bytes;

use crate::array::RawArray;
use crate::codec::{self, Compression, Format, Limits, ValueInfo};
use crate::error::Result;

/// The limits the fuzz targets decode under: 64 MiB per value, default header limit.
pub fn limits() -> Limits {
    Limits {
        max_value_len: 64 << 20,
        ..Limits::default()
    }
}

/// [`codec::npy::decode`] of `bytes`.
pub fn npy(bytes: &[u8], limits: &Limits) -> Result<RawArray> {
    codec::npy::decode(Bytes::copy_from_slice(bytes), limits)
}

/// [`codec::decode_array`] of `bytes` (any layers of compression around a `.npy`).
pub fn decode_array(bytes: &[u8], limits: &Limits) -> Result<RawArray> {
    codec::decode_array(Bytes::copy_from_slice(bytes), limits)
}

/// [`codec::inspect`] of `bytes` (the format sniffer and the header parsers).
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<ValueInfo> {
    codec::inspect(bytes, limits)
}

/// [`Format::sniff`] of `bytes`.
pub fn sniff(bytes: &[u8]) -> Format {
    Format::sniff(bytes)
}

/// Decompress `bytes` as `format` (an lz4 frame, zlib or zstd), at most `cap` bytes out.
pub fn decompress(format: Format, bytes: &[u8], cap: u64) -> Result<Vec<u8>> {
    codec::compress::decompress(format, bytes, cap)
}

/// Encode `array` with `compression` (the value a store writes).
pub fn encode_array(array: &RawArray, compression: Compression) -> Result<Vec<u8>> {
    use crate::codec::ArrayCodec;
    codec::codec_for(compression).encode(&array.as_array_ref())
}

/// Parse a chunked-array manifest (either form: 44 bytes with the value's checksum, or 36
/// without); `Ok(Some(bytes))` is the parsed manifest written back (in the same form),
/// `Ok(None)` bytes that are not a manifest. A manifest beyond [`limits`] is an error, as
/// for the stores, which check it before following it.
pub fn chunk_manifest(bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    match crate::store::chunked::Manifest::parse(bytes)? {
        Some(m) => {
            m.check("fuzz", &limits())?;
            Ok(Some(m.to_bytes()))
        }
        None => Ok(None),
    }
}

/// Parse a feature-view registry entry named `name`; `Ok` is the parsed view written back
/// as a registry entry. Checked against [`limits`], as the store does.
#[cfg(feature = "ndarray")]
pub fn view_entry(name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    Ok(
        crate::store::feature::View::from_json(name, bytes, &limits())?
            .to_json()?
            .into_bytes(),
    )
}

/// Parse a table manifest stored at `key`; `Ok` is the parsed manifest encoded again.
#[cfg(feature = "arrow")]
pub fn table_manifest(key: &str, bytes: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    let info = crate::store::table::manifest::parse_manifest("fuzz", key, bytes, limits)?;
    crate::store::table::manifest::encode_manifest(&info)
}

/// [`codec::arrow::decode_stream`] of `bytes` (an Arrow value as stored); the number of
/// rows decoded.
#[cfg(feature = "arrow")]
pub fn arrow_value(bytes: &[u8], limits: &Limits) -> Result<usize> {
    let (_, batches) = codec::arrow::decode_stream(bytes, None, limits)?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// Read `bytes` as an IPC stream with [`codec::arrow_file::IpcInput`], decoding every
/// batch; the number of rows.
#[cfg(feature = "arrow")]
pub fn ipc_stream(bytes: &[u8], limits: &Limits) -> Result<usize> {
    let input =
        codec::arrow_file::IpcInput::from_stream(std::io::Cursor::new(bytes.to_vec()), *limits)?;
    ipc_rows(input, limits)
}

/// Read `bytes` as an IPC file (or stream, by its magic) from a temporary file with
/// [`codec::arrow_file::IpcInput::open`], decoding every batch; the number of rows.
#[cfg(feature = "arrow")]
pub fn ipc_file(bytes: &[u8], limits: &Limits) -> Result<usize> {
    let path = std::env::temp_dir().join(format!("redstash-fuzz-{}.arrow", std::process::id()));
    std::fs::write(&path, bytes)?;
    let input = codec::arrow_file::IpcInput::open(&path, *limits);
    let out = input.and_then(|i| ipc_rows(i, limits));
    let _ = std::fs::remove_file(&path);
    out
}

#[cfg(feature = "arrow")]
fn ipc_rows(input: codec::arrow_file::IpcInput, limits: &Limits) -> Result<usize> {
    let mut rows = 0usize;
    for batch in input {
        rows = rows.saturating_add(batch?.decode(None, limits)?.num_rows());
    }
    Ok(rows)
}

/// Append each of `values` (stored batch values) to one IPC output of `schema_value`'s
/// schema with [`codec::arrow_concat::IpcConcat`], as a file when `file`; the output.
#[cfg(feature = "arrow")]
pub fn ipc_concat(
    schema_value: &[u8],
    values: &[&[u8]],
    file: bool,
    limits: &Limits,
) -> Result<Vec<u8>> {
    use codec::arrow_file::IpcFormat;
    let schema = codec::arrow::decode_schema(schema_value, limits)?;
    let format = if file {
        IpcFormat::File
    } else {
        IpcFormat::Stream
    };
    let mut cat = codec::arrow_concat::IpcConcat::new(Vec::new(), &schema, format)?;
    for v in values {
        cat.append(v, limits)?;
    }
    Ok(cat.finish()?.0)
}

/// Parse `bytes` as RESP2 replies of a server to a direct connection, arriving in pieces
/// cut at `cuts` (offsets, any order); the complete replies. Mirrors the read loop of the
/// direct connections (read buffer, direct reads of large bulk strings).
pub fn resp_replies(bytes: &[u8], cuts: &[usize]) -> redis::RedisResult<Vec<redis::Value>> {
    use crate::resp::{Parser, Progress, ReadBuffer};
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    bounds.push(bytes.len());
    bounds.sort_unstable();
    let mut parser = Parser::new();
    let mut rb = ReadBuffer::default();
    let mut replies = Vec::new();
    let (mut pos, mut piece) = (0usize, 0usize);
    // The bytes "received" so far: up to the current cut.
    let mut limit = bounds[0];
    loop {
        match parser.advance(&mut rb)? {
            Progress::Done(v) => replies.push(v),
            Progress::NeedMore | Progress::NeedDirect if pos == limit => {
                piece += 1;
                match bounds.get(piece) {
                    Some(&b) => limit = b,
                    None => return Ok(replies),
                }
            }
            Progress::NeedMore => {
                let spare = rb.spare_mut()?;
                let n = spare.len().min(limit - pos);
                spare[..n].copy_from_slice(&bytes[pos..pos + n]);
                rb.commit(n);
                pos += n;
            }
            Progress::NeedDirect => {
                let (vec, remaining) = parser
                    .direct_target()
                    .ok_or_else(|| crate::resp::protocol_error("no direct target"))?;
                let n = remaining.min(limit - pos);
                vec.extend_from_slice(&bytes[pos..pos + n]);
                pos += n;
            }
        }
    }
}

/// Replace the panic hook by one that prints only when `FUZZ_PRINT_PANICS` is set. For the
/// Arrow targets: redstash catches the Arrow reader's panics (they become
/// [`Error::InvalidValue`](crate::Error::InvalidValue), corrupt), and libFuzzer's own
/// hook would abort on those.
pub fn quiet_panics() {
    let print = std::env::var_os("FUZZ_PRINT_PANICS").is_some();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if print {
            default(info);
        }
    }));
}

/// Read `bytes` as a CSV (first byte even) or JSON Lines (odd) input with the load
/// sources, map every record with a mapping that uses every kind of operation (a key
/// template, hash fields, a TTL from a field, `SADD`, lookup `HSET`, `ZADD`), and check
/// that each record's commands walk back as well-formed RESP. Returns the number of
/// records mapped.
#[cfg(feature = "load")]
pub fn load_records(bytes: &[u8]) -> Result<u64> {
    use crate::load::{
        CsvOptions, CsvSource, FieldFilter, IndexOp, Input, JsonLinesSource, KeyTemplate, Mapping,
        Read, Record, Source, Ttl, TtlField, ValueMapping,
    };
    let Some((&mode, rest)) = bytes.split_first() else {
        return Ok(0);
    };
    let input = Input::from_reader(std::io::Cursor::new(rest.to_vec()), "fuzz");
    let mut source: Box<dyn Source> = if mode % 2 == 0 {
        Box::new(CsvSource::new(
            input,
            CsvOptions {
                delimiter: if mode & 2 == 0 { b',' } else { b';' },
                max_record_bytes: 1 << 20,
                ..CsvOptions::default()
            },
        )?)
    } else {
        Box::new(JsonLinesSource::new(input))
    };
    let t = KeyTemplate::parse;
    let mapping = Mapping::new(t("k:{id}:{{{b}}}")?)
        .with_value(if mode & 4 == 0 {
            ValueMapping::Json(FieldFilter::all())
        } else {
            ValueMapping::Hash(FieldFilter::all())
        })
        .with_ttl(Ttl::Field {
            field: "ttl".into(),
            kind: TtlField::Seconds,
        })
        .with_index(IndexOp::Sadd {
            set: t("s:{b}")?,
            member: None,
        })
        .with_index(IndexOp::Hset {
            hash: t("h")?,
            field: t("{id}")?,
            value: None,
        })
        .with_index(IndexOp::Zadd {
            zset: t("z")?,
            score: "score".into(),
            member: None,
        });
    let mut enc = crate::load::mapping_encoder();
    let mut record = Record::default();
    let mut mapped = 0;
    for _ in 0..10_000 {
        match source.next_record(&mut record)? {
            Read::End => break,
            Read::Malformed { .. } => continue,
            Read::Record => {}
        }
        if let Some((resp, commands)) = crate::load::encode_for_fuzzing(&mut enc, &mapping, &record)
        {
            let walked = crate::resp::walk_packed(&resp, |_, _| Ok(()))?;
            assert_eq!(walked, commands, "the RESP of a record walks back");
            mapped += 1;
        }
    }
    Ok(mapped)
}
