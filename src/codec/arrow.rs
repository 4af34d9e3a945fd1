//! Arrow IPC streams (feature `arrow`): how tables are stored in Redis.
//!
//! A value is a complete Arrow IPC *stream* (schema message, dictionary batches, record
//! batches, end-of-stream marker), optionally with IPC body compression (lz4 frame or
//! zstd, per buffer, as the Arrow format defines it), so `pyarrow.ipc.open_stream(value)`
//! reads it. This is what ArrowRedis stores at each of its batch keys.
//!
//! Values read from Redis are untrusted: [`decode_stream`] first walks the stream's
//! framing and checks every declared length against the bytes present and the declared
//! decompressed sizes against [`Limits::max_value_len`], then decodes with the `arrow-ipc`
//! reader (which validates the arrays) inside [`std::panic::catch_unwind`], so a hostile
//! value is an [`Error::InvalidValue`] (corrupt or too large), never a panic.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Int32Array, RecordBatch};
//! use redstash::codec::arrow::{IpcCompression, decode_stream, encode_stream};
//! use redstash::Limits;
//!
//! let batch = RecordBatch::try_from_iter([(
//!     "x",
//!     Arc::new(Int32Array::from(vec![1, 2, 3])) as _,
//! )])
//! .unwrap();
//! let value = encode_stream(&batch.schema(), &[batch.clone()], IpcCompression::Zstd).unwrap();
//! let (schema, batches) = decode_stream(&value, None, &Limits::default()).unwrap();
//! assert_eq!(schema, batch.schema());
//! assert_eq!(batches, vec![batch]);
//! ```

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, make_array};
use arrow_buffer::Buffer;
use arrow_data::ArrayData;
use arrow_ipc::reader::{StreamReader, read_dictionary, read_record_batch};
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{ArrowError, Schema, SchemaRef};

use crate::codec::Limits;
use crate::codec::arrow_unpack::read_compressed_batch;
use crate::error::{Error, Result};

/// The format name used in [`Error::InvalidValue`] (corrupt) for Arrow values.
const FORMAT: &str = "arrow ipc";

/// Arrow IPC body compression of written values (reading detects it per value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum IpcCompression {
    /// No body compression.
    None,
    /// lz4 frame per buffer (ArrowRedis `--compression lz4`).
    Lz4,
    /// zstd per buffer (ArrowRedis's default, `--compression zstd`).
    #[default]
    Zstd,
}

impl IpcCompression {
    /// The name ArrowRedis and pyarrow use: `uncompressed`, `lz4`, `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            IpcCompression::None => "uncompressed",
            IpcCompression::Lz4 => "lz4",
            IpcCompression::Zstd => "zstd",
        }
    }

    /// Parse a name as [`name`](Self::name) gives it (`none` is accepted too).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "uncompressed" | "none" => Some(IpcCompression::None),
            "lz4" | "lz4_frame" => Some(IpcCompression::Lz4),
            "zstd" => Some(IpcCompression::Zstd),
            _ => None,
        }
    }

    pub(crate) fn ipc(self) -> Option<arrow_ipc::CompressionType> {
        match self {
            IpcCompression::None => None,
            IpcCompression::Lz4 => Some(arrow_ipc::CompressionType::LZ4_FRAME),
            IpcCompression::Zstd => Some(arrow_ipc::CompressionType::ZSTD),
        }
    }
}

/// An encoding failure (the batches do not fit the schema, an unsupported type...).
fn encode_error(e: ArrowError) -> Error {
    Error::InvalidArgument(format!("cannot encode Arrow IPC: {e}"))
}

fn corrupt(reason: impl Into<String>) -> Error {
    Error::corrupt(FORMAT, reason)
}

/// Encode `batches` (all of `schema`) as one Arrow IPC stream with body compression.
pub fn encode_stream(
    schema: &Schema,
    batches: &[RecordBatch],
    compression: IpcCompression,
) -> Result<Vec<u8>> {
    let options = IpcWriteOptions::default()
        .try_with_compression(compression.ipc())
        .map_err(encode_error)?;
    let hint: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let buf = Vec::with_capacity(hint / 2 + 1024);
    let mut w = StreamWriter::try_new_with_options(buf, schema, options).map_err(encode_error)?;
    for b in batches {
        w.write(b).map_err(encode_error)?;
    }
    w.finish().map_err(encode_error)?;
    w.into_inner().map_err(encode_error)
}

/// An IPC stream holding only `schema` (no batches): how a schema is stored in a table
/// manifest. `pyarrow.ipc.open_stream(b).schema` reads it.
pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>> {
    encode_stream(schema, &[], IpcCompression::None)
}

/// The schema of an IPC stream written by [`encode_schema`] (or any stream).
pub fn decode_schema(value: &[u8], limits: &Limits) -> Result<SchemaRef> {
    check_framing(value, limits)?;
    guarded(|| {
        let r =
            StreamReader::try_new(Cursor::new(value), None).map_err(|e| corrupt(e.to_string()))?;
        Ok(r.schema())
    })
}

/// Decode an IPC stream value into its schema and batches, keeping only `columns` (by
/// name, in that order) when given. The value is untrusted (see the module docs).
///
/// A column name the schema lacks is [`Error::InvalidArgument`]; bytes that are not an
/// IPC stream are [`Error::InvalidValue`] (unknown format); a malformed stream is
/// [`Error::InvalidValue`] (corrupt).
pub fn decode_stream(
    value: &[u8],
    columns: Option<&[String]>,
    limits: &Limits,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    check_framing(value, limits)?;
    decode_checked(Buffer::from(value), columns, true, limits)
}

/// [`decode_stream`] of a value the caller owns (e.g. a reply from Redis): the decoded
/// arrays are built over the value's memory where they can be (uncompressed buffers),
/// and the value is never copied.
pub fn decode_stream_bytes(
    value: bytes::Bytes,
    columns: Option<&[String]>,
    limits: &Limits,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    check_framing(&value, limits)?;
    decode_checked(Buffer::from(value), columns, true, limits)
}

/// Decode one encapsulated record batch message of `schema` (no schema message, no
/// dictionaries: the `projection` must need none), keeping only the columns at
/// `projection`. Checked like a stream ([`check_framing`]); the body is not copied.
pub(crate) fn decode_batch_message(
    schema: &SchemaRef,
    message: bytes::Bytes,
    projection: &[usize],
    limits: &Limits,
) -> Result<RecordBatch> {
    check_framing(&message, limits)?;
    let value = Buffer::from(message);
    guarded(|| {
        let bytes = value.as_slice();
        let len = read_u32(bytes, 4).ok_or_else(|| corrupt("truncated message"))? as usize;
        let meta = bytes
            .get(8..8 + len)
            .ok_or_else(|| corrupt("truncated message"))?;
        let msg = arrow_ipc::root_as_message(meta)
            .map_err(|e| corrupt(format!("invalid message: {e}")))?;
        let rb = msg
            .header_as_record_batch()
            .ok_or_else(|| corrupt("not a record batch message"))?;
        let body_len =
            usize::try_from(msg.bodyLength()).map_err(|_| corrupt("negative body length"))?;
        if 8 + len + body_len > bytes.len() {
            return Err(corrupt("truncated message body"));
        }
        let body = value.slice_with_length(8 + len, body_len);
        read_record_batch(
            &body,
            rb,
            schema.clone(),
            &HashMap::new(),
            Some(projection),
            &msg.version(),
        )
        .map_err(|e| corrupt(e.to_string()))
    })
}

/// Decode a stream whose framing [`check_framing`] accepted: message by message, with
/// the bodies sliced out of `value` (no copy), only the projected columns decompressed;
/// with `detach_compressed`, batches of compressed messages do not point into `value`
/// (see [`detach`]).
fn decode_checked(
    value: Buffer,
    columns: Option<&[String]>,
    detach_compressed: bool,
    limits: &Limits,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    guarded(|| {
        let bytes = value.as_slice();
        let mut pos = 0usize;
        let mut schema: Option<SchemaRef> = None;
        let mut projection: Option<Vec<usize>> = None;
        let mut projected: Option<SchemaRef> = None;
        let mut dictionaries: HashMap<i64, ArrayRef> = HashMap::new();
        let mut batches = Vec::new();
        // check_framing proved every length below is inside `bytes`.
        while let Some(mut len) = read_u32(bytes, pos) {
            pos += 4;
            if len == 0xFFFF_FFFF {
                len = read_u32(bytes, pos).unwrap_or(0);
                pos += 4;
            }
            if len == 0 {
                break;
            }
            let meta = bytes
                .get(pos..pos + len as usize)
                .ok_or_else(|| corrupt("truncated message"))?;
            pos += len as usize;
            let msg = arrow_ipc::root_as_message(meta)
                .map_err(|e| corrupt(format!("invalid message: {e}")))?;
            let body_len =
                usize::try_from(msg.bodyLength()).map_err(|_| corrupt("negative body length"))?;
            if pos + body_len > bytes.len() {
                return Err(corrupt("truncated message body"));
            }
            let body = value.slice_with_length(pos, body_len);
            pos += body_len;
            let version = msg.version();
            if let Some(s) = msg.header_as_schema() {
                if schema.is_some() {
                    return Err(corrupt("a second schema message"));
                }
                let s = Arc::new(
                    arrow_ipc::convert::try_fb_to_schema(s)
                        .map_err(|e| corrupt(format!("schema: {e}")))?,
                );
                if let Some(cols) = columns {
                    let mut idx = Vec::with_capacity(cols.len());
                    for c in cols {
                        idx.push(s.index_of(c).map_err(|_| {
                            Error::InvalidArgument(format!("the table has no column {c:?}"))
                        })?);
                    }
                    projected = Some(Arc::new(
                        s.project(&idx).map_err(|e| corrupt(e.to_string()))?,
                    ));
                    projection = Some(idx);
                }
                schema = Some(s);
            } else if let Some(d) = msg.header_as_dictionary_batch() {
                let s = schema
                    .as_ref()
                    .ok_or_else(|| corrupt("a dictionary before the schema"))?;
                read_dictionary(&body, d, s, &mut dictionaries, &version)
                    .map_err(|e| corrupt(e.to_string()))?;
            } else if let Some(rb) = msg.header_as_record_batch() {
                let s = schema
                    .as_ref()
                    .ok_or_else(|| corrupt("a record batch before the schema"))?;
                let compressed = rb.compression().is_some();
                if compressed && projection.is_none() {
                    // Into one pooled block, never pointing into `value`.
                    batches.push(read_compressed_batch(
                        body.as_slice(),
                        rb,
                        version,
                        s,
                        &dictionaries,
                        limits,
                    )?);
                    continue;
                }
                let b = read_record_batch(
                    &body,
                    rb,
                    s.clone(),
                    &dictionaries,
                    projection.as_deref(),
                    &version,
                )
                .map_err(|e| corrupt(e.to_string()))?;
                batches.push(if compressed && detach_compressed {
                    detach(b, bytes)?
                } else {
                    b
                });
            } else {
                return Err(corrupt(format!(
                    "unexpected message type {:?}",
                    msg.header_type()
                )));
            }
        }
        let schema = schema.ok_or_else(|| corrupt("the stream has no schema message"))?;
        Ok((projected.unwrap_or(schema), batches))
    })
}

/// Copy out the columns of `batch` that still point into `value`: in a compressed
/// message, buffers that did not compress are stored as they are and decoded zero-copy,
/// which would keep the whole value (mostly compressed bytes, dead once decoded) alive
/// as long as the batch. Columns decoded into their own memory are kept as they are.
fn detach(batch: RecordBatch, value: &[u8]) -> Result<RecordBatch> {
    let start = value.as_ptr() as usize;
    let range = start..start + value.len();
    let mut columns = Vec::with_capacity(batch.num_columns());
    let mut copied = false;
    for c in batch.columns() {
        let data = c.to_data();
        if points_into(&data, &range) {
            columns.push(make_array(deep_copy(&data, &range)?));
            copied = true;
        } else {
            columns.push(c.clone());
        }
    }
    if !copied {
        return Ok(batch);
    }
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| corrupt(e.to_string()))
}

/// Whether any buffer of `d` (or of its children, e.g. a dictionary's values) lies in
/// `range`.
fn points_into(d: &ArrayData, range: &std::ops::Range<usize>) -> bool {
    let inside = |p: *const u8| range.contains(&(p as usize));
    d.buffers().iter().any(|b| inside(b.as_ptr()))
        || d.nulls().is_some_and(|n| inside(n.buffer().as_ptr()))
        || d.child_data().iter().any(|c| points_into(c, range))
}

/// `d` with the buffers that lie in `range` copied into memory of their own (same
/// offsets and lengths, so the copy is as valid as the original).
fn deep_copy(d: &ArrayData, range: &std::ops::Range<usize>) -> Result<ArrayData> {
    let own = |b: &Buffer| {
        if range.contains(&(b.as_ptr() as usize)) {
            Buffer::from_slice_ref(b.as_slice())
        } else {
            b.clone()
        }
    };
    let children = d
        .child_data()
        .iter()
        .map(|c| deep_copy(c, range))
        .collect::<Result<Vec<_>>>()?;
    let nulls = d.nulls().map(|n| {
        arrow_buffer::NullBuffer::new(arrow_buffer::BooleanBuffer::new(
            own(n.buffer()),
            n.offset(),
            n.len(),
        ))
    });
    ArrayData::builder(d.data_type().clone())
        .len(d.len())
        .offset(d.offset())
        .buffers(d.buffers().iter().map(own).collect())
        .child_data(children)
        .nulls(nulls)
        .build()
        .map_err(|e| corrupt(e.to_string()))
}

/// Run a decode, turning a panic of the Arrow reader into [`Error::InvalidValue`] (corrupt).
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(corrupt(format!("the Arrow reader panicked: {what}")))
        }
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_i64(b: &[u8], at: usize) -> Option<i64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(i64::from_le_bytes(a))
}

/// The row counts a record batch (or dictionary batch) header declares must be
/// non-negative: `arrow-ipc` casts them to `usize`, so `-1` rows of a null column would
/// decode as a batch of `usize::MAX` rows.
fn check_lengths(rb: &arrow_ipc::RecordBatch<'_>) -> Result<()> {
    if rb.length() < 0 {
        return Err(corrupt(format!("negative row count {}", rb.length())));
    }
    for n in rb.nodes().iter().flat_map(|v| v.iter()) {
        if n.length() < 0 || n.null_count() < 0 || n.null_count() > n.length() {
            return Err(corrupt(format!(
                "a field node of {} values and {} nulls",
                n.length(),
                n.null_count()
            )));
        }
    }
    Ok(())
}

/// Walk the stream's messages: every metadata and body length must fit in the value,
/// every message must be a valid flatbuffer, and the declared decompressed sizes of
/// compressed buffers must stay under the cap (checked before anything is allocated).
pub(crate) fn check_framing(value: &[u8], limits: &Limits) -> Result<()> {
    if !value.starts_with(&[0xFF; 4]) {
        let head: Vec<u8> = value.iter().take(8).copied().collect();
        return Err(Error::unknown_format(format!(
            "not an Arrow IPC stream (first bytes {head:02x?})"
        )));
    }
    let mut pos = 0usize;
    let mut decoded: u64 = 0;
    let mut messages = 0usize;
    loop {
        let Some(mut len) = read_u32(value, pos) else {
            // A stream may end without the end-of-stream marker.
            if pos == value.len() && messages > 0 {
                return Ok(());
            }
            return Err(corrupt(format!("truncated message header at byte {pos}")));
        };
        pos += 4;
        if len == 0xFFFF_FFFF {
            len = read_u32(value, pos)
                .ok_or_else(|| corrupt(format!("truncated message length at byte {pos}")))?;
            pos += 4;
        }
        if len == 0 {
            if messages == 0 {
                return Err(corrupt("the stream has no schema message"));
            }
            return Ok(());
        }
        let len = len as usize;
        let meta = pos
            .checked_add(len)
            .and_then(|end| value.get(pos..end))
            .ok_or_else(|| {
                corrupt(format!(
                    "message at byte {pos} declares {len} bytes of metadata, {} present",
                    value.len() - pos
                ))
            })?;
        pos += len;
        let msg = arrow_ipc::root_as_message(meta)
            .map_err(|e| corrupt(format!("invalid message at byte {}: {e}", pos - len)))?;
        let body_len = usize::try_from(msg.bodyLength())
            .map_err(|_| corrupt(format!("negative body length {}", msg.bodyLength())))?;
        let body = pos
            .checked_add(body_len)
            .and_then(|end| value.get(pos..end))
            .ok_or_else(|| {
                corrupt(format!(
                    "message body declares {body_len} bytes, {} present",
                    value.len() - pos
                ))
            })?;
        pos += body_len;
        let batch = msg
            .header_as_record_batch()
            .or_else(|| msg.header_as_dictionary_batch().and_then(|d| d.data()));
        if let Some(rb) = batch {
            check_lengths(&rb)?;
            decoded = decoded.saturating_add(body_len as u64);
            if let (Some(_), Some(buffers)) = (rb.compression(), rb.buffers()) {
                for b in buffers.iter() {
                    let (off, blen) = (b.offset(), b.length());
                    let end = off.checked_add(blen).and_then(|e| usize::try_from(e).ok());
                    if off < 0 || blen < 0 || end.is_none_or(|e| e > body.len()) {
                        return Err(corrupt(format!(
                            "buffer [{off}, +{blen}) outside a body of {body_len} bytes"
                        )));
                    }
                    if blen >= 8 {
                        // The 8-byte prefix: decompressed length, or -1 (not compressed).
                        let n = read_i64(body, off as usize).unwrap_or(-1);
                        if n > 0 {
                            decoded = decoded.saturating_add(n as u64);
                        }
                    }
                }
            }
            if decoded > limits.max_value_len {
                return Err(Error::too_large(decoded, limits.max_value_len));
            }
        }
        messages += 1;
        if pos == value.len() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray, UInt64Array};

    use super::*;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int64Array::from_iter_values(0..1000)) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (0..1000).map(|i| format!("v{}", i % 7)),
                )) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn round_trips_with_every_compression_and_projection() {
        let b = batch();
        for c in [
            IpcCompression::None,
            IpcCompression::Lz4,
            IpcCompression::Zstd,
        ] {
            let v = encode_stream(&b.schema(), &[b.clone(), b.clone()], c).unwrap();
            assert_eq!(
                crate::codec::Format::sniff(&v),
                crate::codec::Format::ArrowIpc
            );
            let (s, out) = decode_stream(&v, None, &Limits::default()).unwrap();
            assert_eq!(s, b.schema());
            assert_eq!(out, vec![b.clone(), b.clone()]);
            let (s, out) = decode_stream(&v, Some(&["s".into()]), &Limits::default()).unwrap();
            assert_eq!(s.fields().len(), 1);
            assert_eq!(out[0].column(0), b.column(1));
            assert!(matches!(
                decode_stream(&v, Some(&["nope".into()]), &Limits::default()),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    /// A column that does not compress is stored raw inside a zstd message; once
    /// decoded it must not keep the whole value alive.
    #[test]
    fn decoded_batches_do_not_hold_the_value() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u64> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        let b = RecordBatch::try_from_iter([
            ("noise", Arc::new(UInt64Array::from(noise)) as ArrayRef),
            (
                "ids",
                Arc::new(Int64Array::from_iter_values(0..20_000)) as ArrayRef,
            ),
        ])
        .unwrap();
        let value = bytes::Bytes::from(
            encode_stream(&b.schema(), std::slice::from_ref(&b), IpcCompression::Zstd).unwrap(),
        );
        let range = value.as_ptr() as usize..value.as_ptr() as usize + value.len();
        let (_, got) = decode_stream_bytes(value.clone(), None, &Limits::default()).unwrap();
        assert_eq!(got, vec![b.clone()]);
        for c in got[0].columns() {
            assert!(!points_into(&c.to_data(), &range));
        }
        // The premise: the noise column is stored uncompressed in the zstd message, so
        // arrow-ipc's own decoding (the path of projections) points into the value...
        let both = ["noise".to_owned(), "ids".to_owned()];
        let lim = Limits::default();
        let (_, zero_copy) =
            decode_checked(Buffer::from(value.clone()), Some(&both), false, &lim).unwrap();
        assert_eq!(zero_copy, vec![b.clone()]);
        assert!(points_into(&zero_copy[0].column(0).to_data(), &range));
        assert!(!points_into(&zero_copy[0].column(1).to_data(), &range));
        // ... unless detached.
        let (_, got) = decode_stream_bytes(value.clone(), Some(&both), &lim).unwrap();
        assert_eq!(got, vec![b.clone()]);
        assert!(!points_into(&got[0].column(0).to_data(), &range));
        // Uncompressed values stay zero-copy (nothing else to free).
        let raw = bytes::Bytes::from(
            encode_stream(&b.schema(), std::slice::from_ref(&b), IpcCompression::None).unwrap(),
        );
        let range = raw.as_ptr() as usize..raw.as_ptr() as usize + raw.len();
        let (_, got) = decode_stream_bytes(raw.clone(), None, &Limits::default()).unwrap();
        assert_eq!(got, vec![b]);
        assert!(points_into(&got[0].column(1).to_data(), &range));
    }

    #[test]
    fn hostile_values_are_errors_not_panics() {
        let b = batch();
        let v = encode_stream(&b.schema(), &[b], IpcCompression::Zstd).unwrap();
        let lim = Limits::default();
        assert!(matches!(
            decode_stream(b"hello", None, &lim),
            Err(Error::InvalidValue {
                problem: crate::ValueProblem::UnknownFormat { .. },
                ..
            })
        ));
        // Every truncation and a sweep of single-byte corruptions.
        for n in 0..v.len() {
            let _ = decode_stream(&v[..n], None, &lim);
        }
        for i in 0..v.len() {
            let mut w = v.clone();
            w[i] ^= 0x5A;
            let _ = decode_stream(&w, None, &lim);
        }
        let small = Limits {
            max_value_len: 100,
            ..Limits::default()
        };
        assert!(matches!(
            decode_stream(&v, None, &small),
            Err(Error::InvalidValue {
                problem: crate::ValueProblem::TooLarge { .. },
                ..
            })
        ));
    }
}
