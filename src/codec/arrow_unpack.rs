//! Decoding a compressed record batch message into one block of memory (feature
//! `arrow`).
//!
//! `arrow-ipc` decompresses each buffer of a compressed message into an allocation of
//! its own, and leaves the buffers stored uncompressed (length prefix `-1`) pointing
//! into the message. Here every buffer of the message is decompressed (or copied) into
//! one block from the [buffer pool](crate::buffers), each at a 64-byte-aligned offset,
//! with one reused zstd context per thread; the message header is rewritten to describe
//! that uncompressed body, and `arrow-ipc` builds and validates the arrays over it
//! without copying. So a decoded batch never points into the Redis reply it came from,
//! and its memory goes back to the pool when it is dropped.
//!
//! Every length is checked against the message before anything is written: a lying
//! header is an [`Error::InvalidValue`] (corrupt), never a panic or an out-of-bounds write.

use std::collections::HashMap;
use std::io::Read;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::CompressionType;
use arrow_ipc::reader::read_record_batch;
use arrow_schema::SchemaRef;

use crate::codec::Limits;
use crate::error::{Error, Result};

fn corrupt(reason: impl Into<String>) -> Error {
    Error::corrupt("arrow ipc", reason)
}

/// Where one buffer of the decoded body comes from.
enum Source<'a> {
    /// A zero-length buffer.
    Empty,
    /// Stored uncompressed (length prefix `-1`): copied.
    Raw(&'a [u8]),
    /// Compressed: decompressed to exactly the declared length.
    Compressed(&'a [u8]),
}

/// One buffer of the decoded body: its source, offset in the block and length.
struct Part<'a> {
    source: Source<'a>,
    at: usize,
    len: usize,
}

/// Decode a record batch message whose header declares body compression, over its
/// `body`, with every column of `schema` (no projection: the caller keeps `arrow-ipc`'s
/// own path for projections, which decompresses only the projected columns).
pub(crate) fn read_compressed_batch(
    body: &[u8],
    batch: arrow_ipc::RecordBatch<'_>,
    version: arrow_ipc::MetadataVersion,
    schema: &SchemaRef,
    dictionaries: &HashMap<i64, ArrayRef>,
    limits: &Limits,
) -> Result<RecordBatch> {
    let codec = batch
        .compression()
        .map(|c| c.codec())
        .ok_or_else(|| corrupt("the record batch is not compressed"))?;
    let buffers = batch
        .buffers()
        .ok_or_else(|| corrupt("a record batch without a buffer list"))?;
    let mut parts = Vec::with_capacity(buffers.len());
    let mut total = 0usize;
    for b in buffers.iter() {
        let (off, len) = (b.offset(), b.length());
        let range = usize::try_from(off)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| Some(o..o.checked_add(l)?))
            .and_then(|r| body.get(r))
            .ok_or_else(|| {
                corrupt(format!(
                    "buffer [{off}, +{len}) outside a body of {} bytes",
                    body.len()
                ))
            })?;
        let (source, n) = match range.split_first_chunk::<8>() {
            None if range.is_empty() => (Source::Empty, 0),
            None => {
                return Err(corrupt(format!(
                    "a compressed buffer of {len} bytes, shorter than its length prefix"
                )));
            }
            Some((prefix, data)) => match i64::from_le_bytes(*prefix) {
                -1 => (Source::Raw(data), data.len()),
                0 => (Source::Empty, 0),
                n => {
                    let n = usize::try_from(n)
                        .map_err(|_| corrupt(format!("decompressed length {n}")))?;
                    (Source::Compressed(data), n)
                }
            },
        };
        let at = total;
        total = n
            .checked_next_multiple_of(64)
            .and_then(|a| total.checked_add(a))
            .filter(|t| (*t as u64) <= limits.max_value_len)
            .ok_or(Error::too_large(
                (at as u64).saturating_add(n as u64),
                limits.max_value_len,
            ))?;
        parts.push(Part { source, at, len: n });
    }
    let mut block = crate::buffers::take_filled(total);
    let out = block.as_mut_slice();
    for p in &parts {
        // `at + len <= total == out.len()` by construction.
        let dst = &mut out[p.at..p.at + p.len];
        match p.source {
            Source::Empty => {}
            Source::Raw(data) => dst.copy_from_slice(data),
            Source::Compressed(data) => decompress(codec, data, dst)?,
        }
    }
    let header = uncompressed_header(&batch, &parts);
    let header = flatbuffers::root::<arrow_ipc::RecordBatch>(header.finished_data())
        .map_err(|e| corrupt(format!("rewritten header: {e}")))?;
    read_record_batch(
        &arrow_buffer::Buffer::from(crate::buffers::into_bytes(block)),
        header,
        schema.clone(),
        dictionaries,
        None,
        &version,
    )
    .map_err(|e| corrupt(e.to_string()))
}

/// The header of `batch` for the decoded body: same length, nodes and variadic buffer
/// counts, the buffers at their offsets in the block, no compression.
fn uncompressed_header(
    batch: &arrow_ipc::RecordBatch<'_>,
    parts: &[Part<'_>],
) -> flatbuffers::FlatBufferBuilder<'static> {
    let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(256 + 16 * parts.len());
    let nodes: Vec<arrow_ipc::FieldNode> = batch
        .nodes()
        .map(|n| n.iter().copied().collect())
        .unwrap_or_default();
    let nodes = fbb.create_vector(&nodes);
    let buffers: Vec<arrow_ipc::Buffer> = parts
        .iter()
        .map(|p| arrow_ipc::Buffer::new(p.at as i64, p.len as i64))
        .collect();
    let buffers = fbb.create_vector(&buffers);
    let variadic = batch.variadicBufferCounts().map(|v| {
        let counts: Vec<i64> = v.iter().collect();
        fbb.create_vector(&counts)
    });
    let header = arrow_ipc::RecordBatch::create(
        &mut fbb,
        &arrow_ipc::RecordBatchArgs {
            length: batch.length(),
            nodes: Some(nodes),
            buffers: Some(buffers),
            compression: None,
            variadicBufferCounts: variadic,
        },
    );
    fbb.finish_minimal(header);
    fbb
}

/// Decompress `data` into exactly `dst` (its declared length).
fn decompress(codec: CompressionType, data: &[u8], dst: &mut [u8]) -> Result<()> {
    let expected = dst.len();
    let got = match codec {
        CompressionType::ZSTD => zstd_into(data, dst)?,
        CompressionType::LZ4_FRAME => lz4_into(data, dst)?,
        other => return Err(corrupt(format!("unknown body compression {other:?}"))),
    };
    if got != expected {
        return Err(corrupt(format!(
            "a buffer declares {expected} decompressed bytes and holds {got}"
        )));
    }
    Ok(())
}

thread_local! {
    /// One zstd decompression context per thread, reused for every buffer.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_into(data: &[u8], dst: &mut [u8]) -> Result<usize> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(
                zstd::bulk::Decompressor::new()
                    .map_err(|e| corrupt(format!("zstd context: {e}")))?,
            ),
        };
        dctx.decompress_to_buffer(data, dst)
            .map_err(|e| corrupt(format!("zstd: {e}")))
    })
}

fn lz4_into(data: &[u8], dst: &mut [u8]) -> Result<usize> {
    let mut dec = lz4_flex::frame::FrameDecoder::new(data);
    dec.read_exact(dst)
        .map_err(|e| corrupt(format!("lz4 frame: {e}")))?;
    // More data than declared is as corrupt as less.
    let mut extra = [0u8; 1];
    match dec.read(&mut extra) {
        Ok(0) => Ok(dst.len()),
        Ok(_) => Ok(dst.len() + 1),
        Err(e) => Err(corrupt(format!("lz4 frame: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Float64Array, Int64Array, StringArray};

    use super::*;
    use crate::codec::arrow::{IpcCompression, decode_stream, encode_stream};

    fn batch() -> RecordBatch {
        let n = 10_000;
        RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from_iter(
                    (0..n).map(|i| (i % 7 != 0).then_some(i as f64 * 0.37)),
                )) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("w{}", i % 100)),
                )) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    /// The position in `value` of the 8-byte length prefix of every non-empty buffer of
    /// the (only) record batch message.
    fn prefixes(value: &[u8]) -> Vec<usize> {
        let mut pos = 0;
        loop {
            let mut len = u32::from_le_bytes(value[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 4;
            if len == 0xFFFF_FFFF {
                len = u32::from_le_bytes(value[pos..pos + 4].try_into().unwrap()) as usize;
                pos += 4;
            }
            let msg = arrow_ipc::root_as_message(&value[pos..pos + len]).unwrap();
            pos += len;
            if let Some(rb) = msg.header_as_record_batch() {
                return rb
                    .buffers()
                    .unwrap()
                    .iter()
                    .filter(|b| b.length() > 0)
                    .map(|b| pos + b.offset() as usize)
                    .collect();
            }
            pos += msg.bodyLength() as usize;
        }
    }

    fn declared(value: &[u8], at: usize) -> i64 {
        i64::from_le_bytes(value[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn every_codec_decodes_into_one_block_equal_to_arrow_ipc() {
        let b = batch();
        for c in [IpcCompression::Zstd, IpcCompression::Lz4] {
            let v = encode_stream(&b.schema(), std::slice::from_ref(&b), c).unwrap();
            let (_, got) = decode_stream(&v, None, &Limits::default()).unwrap();
            assert_eq!(got, vec![b.clone()], "{c:?}");
            // All columns share one block: their value buffers lie within the body's
            // decoded size of each other.
            let ptrs: Vec<usize> = got[0]
                .columns()
                .iter()
                .map(|c| c.to_data().buffers()[0].as_ptr() as usize)
                .collect();
            let (lo, hi) = (ptrs.iter().min().unwrap(), ptrs.iter().max().unwrap());
            assert!(hi - lo < 1 << 20, "{c:?}: {ptrs:?}");
            // The same as arrow-ipc's own decoding (the projection path).
            let all: Vec<String> = vec!["id".into(), "x".into(), "s".into()];
            let (_, theirs) = decode_stream(&v, Some(&all), &Limits::default()).unwrap();
            assert_eq!(got, theirs);
        }
    }

    #[test]
    fn lying_decompressed_lengths_are_corrupt() {
        let b = batch();
        for c in [IpcCompression::Zstd, IpcCompression::Lz4] {
            let v = encode_stream(&b.schema(), std::slice::from_ref(&b), c).unwrap();
            let at = prefixes(&v)
                .into_iter()
                .find(|&p| declared(&v, p) > 64)
                .expect("a compressed buffer");
            let n = declared(&v, at);
            for lie in [n - 1, n + 1, n * 2, 1] {
                let mut w = v.clone();
                w[at..at + 8].copy_from_slice(&lie.to_le_bytes());
                let e = decode_stream(&w, None, &Limits::default()).unwrap_err();
                assert!(
                    matches!(
                        e,
                        Error::InvalidValue {
                            problem: crate::ValueProblem::Corrupt { .. },
                            ..
                        }
                    ),
                    "{c:?} {lie}: {e:?}"
                );
            }
            // A huge declared length is refused before anything is allocated.
            let mut w = v.clone();
            w[at..at + 8].copy_from_slice(&(1i64 << 50).to_le_bytes());
            let e = decode_stream(&w, None, &Limits::default()).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidValue {
                        problem: crate::ValueProblem::TooLarge { .. },
                        ..
                    }
                ),
                "{c:?}: {e:?}"
            );
            // A length prefix of -1 (stored raw) over compressed bytes: the bytes are
            // taken as they are, and the arrays built over them fail validation or hold
            // other values, never panic.
            let mut w = v.clone();
            w[at..at + 8].copy_from_slice(&(-1i64).to_le_bytes());
            if let Ok((_, got)) = decode_stream(&w, None, &Limits::default()) {
                assert_ne!(got, vec![b.clone()]);
            }
        }
    }
}
