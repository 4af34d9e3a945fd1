//! Concatenating stored Arrow IPC stream values into one IPC file or stream without
//! decoding them (feature `arrow`).
//!
//! Each value redstash (or ArrowRedis) stores is a whole IPC stream: schema message,
//! dictionary batches, record batches, end-of-stream. [`IpcConcat`] writes one schema
//! message, then the dictionary and record batch messages of every value appended, as
//! they are (still compressed: IPC body compression is declared per message), and for
//! the file format the footer that indexes them. This is how a table is read into a file
//! at the speed of the network and the disk, the mirror image of
//! [`TableStore::split_ipc`](crate::TableStore::split_ipc).
//!
//! Values are untrusted: every value's framing is checked (as by
//! [`decode_stream`](super::arrow::decode_stream)), its schema must have the same
//! dictionary ids as the one written, and its messages must be schema, dictionary and
//! record batch messages. The batches' buffers are not validated (nothing is decoded); a
//! reader of the output validates them as it would any IPC file.
//!
//! An IPC *file* cannot replace a dictionary: a value whose dictionary for an id differs
//! from the one already written is an [`Error::InvalidArgument`] in the file format (the
//! stream format writes it as a replacement dictionary, which readers apply to the
//! batches that follow).
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Int32Array, RecordBatch};
//! use redstash::Limits;
//! use redstash::codec::arrow::{IpcCompression, encode_stream};
//! use redstash::codec::arrow_concat::IpcConcat;
//! use redstash::codec::arrow_file::IpcFormat;
//!
//! let b = RecordBatch::try_from_iter([("x", Arc::new(Int32Array::from(vec![1, 2])) as _)])
//!     .unwrap();
//! let v1 = encode_stream(&b.schema(), &[b.clone()], IpcCompression::Zstd).unwrap();
//! let v2 = encode_stream(&b.schema(), &[b.clone(), b.clone()], IpcCompression::Zstd).unwrap();
//! let mut w = IpcConcat::new(Vec::new(), &b.schema(), IpcFormat::File).unwrap();
//! w.append(&v1, &Limits::default()).unwrap();
//! w.append(&v2, &Limits::default()).unwrap();
//! let (file, n) = w.finish().unwrap();
//! assert_eq!(n as usize, file.len());
//! assert!(file.starts_with(b"ARROW1"));
//! ```

use std::collections::HashMap;
use std::io::Write;

use arrow_buffer::Buffer;
use arrow_ipc::reader::read_dictionary;
use arrow_ipc::writer::DictionaryTracker;
use arrow_schema::{Schema, SchemaRef};

use super::arrow::{check_framing, encode_schema, guarded};
use super::arrow_file::{IpcFormat, dictionary_ids};
use crate::codec::Limits;
use crate::error::{Error, Result};

fn corrupt(reason: impl Into<String>) -> Error {
    Error::corrupt("arrow ipc", reason)
}

/// What one appended value held.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The value's schema (with its metadata), for the caller to check.
    pub schema: SchemaRef,
    /// Record batches written.
    pub batches: u64,
    /// Rows of those batches.
    pub rows: u64,
}

/// An IPC file or stream being written from stored stream values (see the
/// [module docs](self)).
pub struct IpcConcat<W: Write> {
    out: W,
    pos: u64,
    format: IpcFormat,
    schema: SchemaRef,
    ids: Vec<i64>,
    /// The dictionary message (metadata, body) last written for each id.
    dictionaries: HashMap<i64, (Vec<u8>, Vec<u8>)>,
    dictionary_blocks: Vec<arrow_ipc::Block>,
    batch_blocks: Vec<arrow_ipc::Block>,
}

/// One encapsulated message of a value: metadata flatbuffer and body.
struct Message<'a> {
    meta: &'a [u8],
    body: &'a [u8],
}

/// The messages of a value whose framing [`check_framing`] accepted.
fn messages(value: &[u8]) -> Result<Vec<Message<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let word = |at: usize| -> Option<u32> {
        let b = value.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    while let Some(mut len) = word(pos) {
        pos += 4;
        if len == 0xFFFF_FFFF {
            len = word(pos).unwrap_or(0);
            pos += 4;
        }
        if len == 0 {
            break;
        }
        let end = pos + len as usize;
        let meta = value
            .get(pos..end)
            .ok_or_else(|| corrupt("truncated message"))?;
        let msg = arrow_ipc::root_as_message(meta)
            .map_err(|e| corrupt(format!("invalid message: {e}")))?;
        let body_len =
            usize::try_from(msg.bodyLength()).map_err(|_| corrupt("negative body length"))?;
        let body = value
            .get(end..end + body_len)
            .ok_or_else(|| corrupt("truncated message body"))?;
        out.push(Message { meta, body });
        pos = end + body_len;
    }
    Ok(out)
}

/// Whether two dictionary messages of id `id` hold equal dictionaries.
fn same_dictionary(schema: &Schema, id: i64, a: (&[u8], &[u8]), b: (&[u8], &[u8])) -> Result<bool> {
    let decode = |(meta, body): (&[u8], &[u8])| {
        guarded(|| {
            let msg = arrow_ipc::root_as_message(meta)
                .map_err(|e| corrupt(format!("invalid message: {e}")))?;
            let d = msg
                .header_as_dictionary_batch()
                .ok_or_else(|| corrupt("not a dictionary message"))?;
            let mut out = HashMap::new();
            read_dictionary(
                &Buffer::from_slice_ref(body),
                d,
                schema,
                &mut out,
                &msg.version(),
            )
            .map_err(|e| corrupt(e.to_string()))?;
            out.remove(&id)
                .ok_or_else(|| corrupt(format!("no dictionary of id {id}")))
        })
    };
    Ok(decode(a)? == decode(b)?)
}

impl<W: Write> IpcConcat<W> {
    /// Start writing `schema` (the schema every value appended must have) to `out`.
    pub fn new(out: W, schema: &Schema, format: IpcFormat) -> Result<Self> {
        let stream = encode_schema(schema)?;
        let first = messages(&stream)?
            .into_iter()
            .next()
            .ok_or_else(|| corrupt("the schema stream has no message"))?;
        let mut encapsulated = vec![0xFF; 4];
        encapsulated.extend_from_slice(&(first.meta.len() as u32).to_le_bytes());
        encapsulated.extend_from_slice(first.meta);
        let ids = dictionary_ids(&encapsulated)
            .ok_or_else(|| corrupt("the schema message cannot be read back"))?;
        let mut w = IpcConcat {
            out,
            pos: 0,
            format,
            schema: std::sync::Arc::new(schema.clone()),
            ids,
            dictionaries: HashMap::new(),
            dictionary_blocks: Vec::new(),
            batch_blocks: Vec::new(),
        };
        if format == IpcFormat::File {
            w.write(b"ARROW1\0\0")?;
        }
        w.write_message(first.meta, &[])?;
        Ok(w)
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Write one message (continuation marker, metadata length, metadata padded to 8
    /// bytes, body) and return its block in the file.
    fn write_message(&mut self, meta: &[u8], body: &[u8]) -> Result<arrow_ipc::Block> {
        let offset = self.pos;
        let padded = meta.len().next_multiple_of(8);
        let len = u32::try_from(padded).map_err(|_| corrupt("metadata over 4 GiB"))?;
        self.write(&[0xFF; 4])?;
        self.write(&len.to_le_bytes())?;
        self.write(meta)?;
        self.write(&[0u8; 8][..padded - meta.len()])?;
        let body_start = self.pos;
        self.write(body)?;
        // Bodies are multiples of 8 bytes in every writer; pad one that is not.
        let pad = (8 - (body.len() % 8)) % 8;
        self.write(&[0u8; 8][..pad])?;
        Ok(arrow_ipc::Block::new(
            offset as i64,
            (8 + padded) as i32,
            (self.pos - body_start) as i64,
        ))
    }

    /// Append the dictionary and record batch messages of one stored value (an IPC
    /// stream of a schema with the same dictionary ids), as they are.
    pub fn append(&mut self, value: &[u8], limits: &Limits) -> Result<Appended> {
        check_framing(value, limits)?;
        let msgs = messages(value)?;
        let mut schema = None;
        let mut batches = 0u64;
        let mut rows = 0u64;
        for m in msgs {
            let msg = arrow_ipc::root_as_message(m.meta)
                .map_err(|e| corrupt(format!("invalid message: {e}")))?;
            if let Some(s) = msg.header_as_schema() {
                if schema.is_some() {
                    return Err(corrupt("a second schema message"));
                }
                let mut encapsulated = vec![0xFF; 4];
                encapsulated.extend_from_slice(&(m.meta.len() as u32).to_le_bytes());
                encapsulated.extend_from_slice(m.meta);
                let ids = dictionary_ids(&encapsulated).unwrap_or_default();
                if ids != self.ids {
                    return Err(corrupt(format!(
                        "dictionary ids {ids:?}, the output's are {:?}",
                        self.ids
                    )));
                }
                schema = Some(std::sync::Arc::new(
                    arrow_ipc::convert::try_fb_to_schema(s)
                        .map_err(|e| corrupt(format!("schema: {e}")))?,
                ));
            } else if let Some(d) = msg.header_as_dictionary_batch() {
                if schema.is_none() {
                    return Err(corrupt("a dictionary before the schema"));
                }
                let id = d.id();
                if !self.ids.contains(&id) {
                    return Err(corrupt(format!("a dictionary of unknown id {id}")));
                }
                match self.dictionaries.get(&id) {
                    Some((meta, body)) if meta == m.meta && body == m.body => continue,
                    Some((meta, body)) if !d.isDelta() => {
                        // The same dictionary in other bytes (another compression or
                        // writer) is no change.
                        let s = schema.as_ref().ok_or_else(|| corrupt("no schema"))?;
                        if same_dictionary(s, id, (meta, body), (m.meta, m.body))? {
                            continue;
                        }
                        if self.format == IpcFormat::File {
                            return Err(Error::InvalidArgument(format!(
                                "the dictionary of id {id} changes between batches: an IPC \
                                 file cannot replace a dictionary (write a stream instead)"
                            )));
                        }
                    }
                    _ => {}
                }
                let block = self.write_message(m.meta, m.body)?;
                self.dictionary_blocks.push(block);
                self.dictionaries
                    .insert(id, (m.meta.to_vec(), m.body.to_vec()));
            } else if let Some(rb) = msg.header_as_record_batch() {
                if schema.is_none() {
                    return Err(corrupt("a record batch before the schema"));
                }
                let block = self.write_message(m.meta, m.body)?;
                self.batch_blocks.push(block);
                batches += 1;
                rows = u64::try_from(rb.length())
                    .ok()
                    .and_then(|n| rows.checked_add(n))
                    .ok_or_else(|| corrupt(format!("row count {} of a batch", rb.length())))?;
            } else {
                return Err(corrupt(format!(
                    "unexpected message type {:?}",
                    msg.header_type()
                )));
            }
        }
        let schema = schema.ok_or_else(|| corrupt("the value has no schema message"))?;
        Ok(Appended {
            schema,
            batches,
            rows,
        })
    }

    /// Write the end-of-stream marker (and the footer of a file); returns the output and
    /// the bytes written.
    pub fn finish(mut self) -> Result<(W, u64)> {
        self.write(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])?;
        if self.format == IpcFormat::File {
            let mut fbb = flatbuffers::FlatBufferBuilder::new();
            let mut tracker = DictionaryTracker::new(false);
            let schema = arrow_ipc::convert::IpcSchemaEncoder::new()
                .with_dictionary_tracker(&mut tracker)
                .schema_to_fb_offset(&mut fbb, &self.schema);
            let dictionaries = fbb.create_vector(&self.dictionary_blocks);
            let batches = fbb.create_vector(&self.batch_blocks);
            let footer = arrow_ipc::Footer::create(
                &mut fbb,
                &arrow_ipc::FooterArgs {
                    version: arrow_ipc::MetadataVersion::V5,
                    schema: Some(schema),
                    dictionaries: Some(dictionaries),
                    recordBatches: Some(batches),
                    custom_metadata: None,
                },
            );
            fbb.finish(footer, None);
            let footer = fbb.finished_data().to_vec();
            let len = i32::try_from(footer.len()).map_err(|_| corrupt("footer over 2 GiB"))?;
            self.write(&footer)?;
            self.write(&len.to_le_bytes())?;
            self.write(b"ARROW1")?;
        }
        self.out.flush()?;
        Ok((self.out, self.pos))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
    use arrow_ipc::reader::{FileReader, StreamReader};

    use super::*;
    use crate::arrowgen::GenSpec;
    use crate::codec::arrow::{IpcCompression, encode_stream};

    fn spec() -> GenSpec {
        GenSpec {
            partitions: 2,
            batches: 2,
            rows: 300,
            ..GenSpec::default()
        }
    }

    fn read_file(bytes: Vec<u8>) -> Vec<RecordBatch> {
        FileReader::try_new(Cursor::new(bytes), None)
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    fn read_stream(bytes: Vec<u8>) -> Vec<RecordBatch> {
        StreamReader::try_new(Cursor::new(bytes), None)
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn values_of_any_compression_concatenate_into_a_readable_file_and_stream() {
        let s = spec();
        let batches: Vec<RecordBatch> = s.iter().collect::<Result<_>>().unwrap();
        let schema = batches[0].schema();
        let codecs = [
            IpcCompression::Zstd,
            IpcCompression::Lz4,
            IpcCompression::None,
            IpcCompression::Zstd,
        ];
        let values: Vec<Vec<u8>> = batches
            .iter()
            .zip(codecs)
            .map(|(b, c)| encode_stream(&schema, std::slice::from_ref(b), c).unwrap())
            .collect();
        for format in [IpcFormat::File, IpcFormat::Stream] {
            let mut w = IpcConcat::new(Vec::new(), &schema, format).unwrap();
            let mut rows = 0;
            for v in &values {
                let a = w.append(v, &Limits::default()).unwrap();
                assert_eq!(a.batches, 1);
                assert_eq!(a.schema.fields(), schema.fields());
                rows += a.rows;
            }
            assert_eq!(rows, s.total_rows());
            let (out, n) = w.finish().unwrap();
            assert_eq!(n as usize, out.len());
            let got = match format {
                IpcFormat::File => read_file(out),
                IpcFormat::Stream => read_stream(out),
            };
            assert_eq!(got, batches, "{format:?}");
        }
    }

    fn dict_value(words: &[&str], keys: Vec<i32>) -> (SchemaRef, Vec<u8>) {
        let d = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(keys),
            Arc::new(StringArray::from(words.to_vec())),
        )
        .unwrap();
        let b = RecordBatch::try_from_iter([("s", Arc::new(d) as ArrayRef)]).unwrap();
        let v = encode_stream(&b.schema(), std::slice::from_ref(&b), IpcCompression::Zstd).unwrap();
        (b.schema(), v)
    }

    #[test]
    fn a_changed_dictionary_is_a_replacement_in_streams_and_an_error_in_files() {
        let (schema, a) = dict_value(&["x", "y"], vec![0, 1, 1]);
        let (_, same) = dict_value(&["x", "y"], vec![1, 0]);
        let (_, other) = dict_value(&["p", "q", "r"], vec![2, 0]);
        let mut w = IpcConcat::new(Vec::new(), &schema, IpcFormat::File).unwrap();
        w.append(&a, &Limits::default()).unwrap();
        w.append(&same, &Limits::default()).unwrap();
        let e = w.append(&other, &Limits::default()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        // The file written so far (same dictionary twice: written once) is valid.
        let (file, _) = w.finish().unwrap();
        let got = read_file(file);
        assert_eq!(got.len(), 2);
        let mut w = IpcConcat::new(Vec::new(), &schema, IpcFormat::Stream).unwrap();
        for v in [&a, &same, &other] {
            w.append(v, &Limits::default()).unwrap();
        }
        let (stream, _) = w.finish().unwrap();
        let got = read_stream(stream);
        let want: Vec<RecordBatch> = [&a, &same, &other]
            .iter()
            .flat_map(|v| {
                crate::codec::arrow::decode_stream(v, None, &Limits::default())
                    .unwrap()
                    .1
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn foreign_and_hostile_values_are_errors() {
        let (schema, a) = dict_value(&["x", "y"], vec![0, 1, 1]);
        let mut w = IpcConcat::new(Vec::new(), &schema, IpcFormat::File).unwrap();
        // Another schema's value (no dictionary: other ids).
        let b =
            RecordBatch::try_from_iter([("s", Arc::new(Int32Array::from(vec![1])) as ArrayRef)])
                .unwrap();
        let plain = encode_stream(&b.schema(), &[b], IpcCompression::None).unwrap();
        assert!(matches!(
            w.append(&plain, &Limits::default()),
            Err(Error::InvalidValue {
                problem: crate::ValueProblem::Corrupt { .. },
                ..
            })
        ));
        assert!(matches!(
            w.append(b"not arrow", &Limits::default()),
            Err(Error::InvalidValue {
                problem: crate::ValueProblem::UnknownFormat { .. },
                ..
            })
        ));
        for n in 0..a.len() {
            let _ = w.append(&a[..n], &Limits::default());
        }
        for i in 0..a.len() {
            let mut v = a.clone();
            v[i] ^= 0x5A;
            let _ = w.append(&v, &Limits::default());
        }
    }
}
