//! Arrow IPC files and streams on disk, read one record batch at a time **without
//! decoding it** (feature `arrow`).
//!
//! [`IpcInput`] walks an IPC *file* (`ARROW1` magic, footer with block offsets) or an IPC
//! *stream* message by message and yields each record batch as an [`EncodedBatch`]: the
//! batch message exactly as stored (body still compressed with the file's IPC body
//! compression), the dictionary messages it needs, and its row count. Turning one into a
//! Redis value ([`EncodedBatch::stream_pieces`]) is a re-framing (schema message +
//! dictionaries + batch + end-of-stream), not a decode and re-encode, so splitting a
//! zstd file into zstd values is bound by I/O, not by zstd. Memory stays bounded by one
//! batch (plus the dictionaries), whatever the file size.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Int32Array, RecordBatch};
//! use arrow_ipc::writer::FileWriter;
//! use redstash::codec::arrow_file::IpcInput;
//! use redstash::Limits;
//!
//! let batch = RecordBatch::try_from_iter([("x", Arc::new(Int32Array::from(vec![1, 2, 3])) as _)])
//!     .unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("t.arrow");
//! let mut w = FileWriter::try_new(std::fs::File::create(&path).unwrap(), &batch.schema()).unwrap();
//! w.write(&batch).unwrap();
//! w.write(&batch).unwrap();
//! w.finish().unwrap();
//!
//! let input = IpcInput::open(&path, Limits::default()).unwrap();
//! assert_eq!(input.schema(), &batch.schema());
//! let encoded: Vec<_> = input.collect::<redstash::Result<_>>().unwrap();
//! assert_eq!(encoded.len(), 2);
//! assert_eq!(encoded[1].num_rows(), 3);
//! assert_eq!(encoded[1].decode(None, &Limits::default()).unwrap(), batch);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
use arrow_schema::{Schema, SchemaRef};

use crate::codec::Limits;
use crate::codec::arrow::{IpcCompression, decode_batch_message, decode_stream};
use crate::error::{Error, Result};

/// The 8 bytes that end an IPC stream.
pub const END_OF_STREAM: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
const FILE_MAGIC: &[u8; 6] = b"ARROW1";
/// The continuation marker an IPC stream's first message starts with.
const CONTINUATION: [u8; 4] = [0xFF; 4];
/// Largest flatbuffer metadata of one message accepted from a file.
const MAX_METADATA: usize = 64 << 20;

fn corrupt(reason: impl Into<String>) -> Error {
    Error::corrupt("arrow ipc", reason)
}

/// Which IPC format an [`IpcInput`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpcFormat {
    /// The random-access file format (`ARROW1` magic and footer; `.arrow`, `.feather` v2).
    File,
    /// The streaming format (a sequence of messages).
    Stream,
}

/// One record batch of an IPC file or stream, still encoded as the input holds it.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    schema: SchemaRef,
    schema_message: Arc<Vec<u8>>,
    dictionaries: Vec<Arc<Vec<u8>>>,
    message: bytes::Bytes,
    rows: usize,
    compression: Option<IpcCompression>,
}

impl EncodedBatch {
    /// The input's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The input's schema message (encapsulated, as stored).
    pub fn schema_message(&self) -> &[u8] {
        &self.schema_message
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// The body compression of the batch message: `None` when the codec is not one
    /// redstash writes (so it cannot be re-framed as a value of a given compression).
    pub fn compression(&self) -> Option<IpcCompression> {
        self.compression
    }

    /// Bytes of the batch message (metadata and body).
    pub fn message_len(&self) -> usize {
        self.message.len()
    }

    /// The encapsulated messages of the dictionaries this batch needs, in order.
    pub fn dictionary_messages(&self) -> impl Iterator<Item = &[u8]> {
        self.dictionaries.iter().map(|d| d.as_slice())
    }

    /// The batch as an IPC stream value in pieces: `schema_message` (an encapsulated
    /// schema message whose dictionary ids are the input's, e.g. the input's own
    /// [`IpcInput::schema_message`]), the dictionaries, the batch message, end of
    /// stream. Their concatenation is what `pyarrow.ipc.open_stream` reads.
    pub fn stream_pieces<'s>(&'s self, schema_message: &'s [u8]) -> Vec<&'s [u8]> {
        let mut v = Vec::with_capacity(self.dictionaries.len() + 3);
        v.push(schema_message);
        v.extend(self.dictionaries.iter().map(|d| d.as_slice()));
        v.push(&self.message[..]);
        v.push(&END_OF_STREAM[..]);
        v
    }

    /// [`stream_pieces`](Self::stream_pieces) owning its pieces, for a command that
    /// outlives the batch (the batch message is moved, not copied).
    pub fn into_stream_pieces(self, schema_message: &[u8]) -> Vec<Cow<'static, [u8]>> {
        let mut v = Vec::with_capacity(self.dictionaries.len() + 3);
        v.push(Cow::Owned(schema_message.to_vec()));
        for d in &self.dictionaries {
            v.push(Cow::Owned(d.as_ref().clone()));
        }
        v.push(Cow::Owned(Vec::from(self.message)));
        v.push(Cow::Borrowed(&END_OF_STREAM[..]));
        v
    }

    /// Decode the batch (only `columns`, by name, when given), checked like any
    /// untrusted value ([`decode_stream`]).
    pub fn decode(&self, columns: Option<&[String]>, limits: &Limits) -> Result<RecordBatch> {
        // Columns that need no dictionary are decoded from the batch message alone,
        // without copying it into a stream.
        if let Some(cols) = columns {
            let idx = cols
                .iter()
                .map(|c| {
                    self.schema.index_of(c).map_err(|_| {
                        Error::InvalidArgument(format!("the table has no column {c:?}"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if !idx
                .iter()
                .any(|&i| has_dictionary(self.schema.field(i).data_type()))
            {
                return decode_batch_message(&self.schema, self.message.clone(), &idx, limits);
            }
        }
        let value: Vec<u8> = self.stream_pieces(&self.schema_message).concat();
        let (_, mut batches) = decode_stream(&value, columns, limits)?;
        match (batches.pop(), batches.is_empty()) {
            (Some(b), true) => Ok(b),
            _ => Err(corrupt("a batch message did not decode to one batch")),
        }
    }
}

/// Whether a type holds a dictionary anywhere (its decode needs dictionary messages).
fn has_dictionary(t: &arrow_schema::DataType) -> bool {
    use arrow_schema::DataType as D;
    match t {
        D::Dictionary(..) => true,
        D::List(f)
        | D::LargeList(f)
        | D::FixedSizeList(f, _)
        | D::ListView(f)
        | D::LargeListView(f)
        | D::Map(f, _) => has_dictionary(f.data_type()),
        D::Struct(fs) => fs.iter().any(|f| has_dictionary(f.data_type())),
        D::Union(fs, _) => fs.iter().any(|(_, f)| has_dictionary(f.data_type())),
        D::RunEndEncoded(a, b) => has_dictionary(a.data_type()) || has_dictionary(b.data_type()),
        _ => false,
    }
}

/// What an [`IpcInput`] reads from.
enum Source {
    File {
        /// Unbuffered: a batch is read with one read straight into its buffer.
        input: File,
        /// (offset, metadata length, body length) of the remaining record batches.
        blocks: std::vec::IntoIter<(u64, usize, usize)>,
    },
    Stream(Box<dyn Read + Send>),
}

/// A reader of the record batches of an Arrow IPC file or stream, one [`EncodedBatch`]
/// at a time (see the [module docs](self)).
pub struct IpcInput {
    source: Source,
    format: IpcFormat,
    schema: SchemaRef,
    schema_message: Arc<Vec<u8>>,
    /// Dictionary messages by id: the base, then its deltas.
    dictionaries: BTreeMap<i64, Vec<Arc<Vec<u8>>>>,
    /// Bytes of the messages in `dictionaries` (at most `limits.max_value_len`: every
    /// batch's value carries them all).
    dictionary_bytes: u64,
    batches: Option<usize>,
    limits: Limits,
    done: bool,
    read: (u64, u64),
    progress: Option<Box<dyn FnMut(u64, u64) + Send>>,
}

impl std::fmt::Debug for IpcInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcInput")
            .field("format", &self.format)
            .field("schema", &self.schema)
            .field("batches", &self.batches)
            .finish()
    }
}

/// A message read from the input: its encapsulated bytes and what they declare.
struct Message {
    bytes: Vec<u8>,
    kind: Kind,
}

enum Kind {
    Schema(SchemaRef),
    Dictionary {
        id: i64,
        delta: bool,
    },
    Batch {
        rows: usize,
        compression: Option<IpcCompression>,
        compressed: bool,
    },
    Other,
}

impl IpcInput {
    /// Open an IPC file or stream (told apart by the `ARROW1` magic; a stream starts
    /// with the continuation marker `FF FF FF FF`). Anything else is
    /// [`Error::InvalidValue`] ([`ValueProblem::UnknownFormat`](crate::ValueProblem::UnknownFormat)) naming the file. Values larger than
    /// `limits.max_value_len` are refused.
    pub fn open(path: impl AsRef<Path>, limits: Limits) -> Result<Self> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        })?;
        let mut magic = [0u8; 6];
        let n = read_up_to(&mut file, &mut magic)?;
        file.seek(SeekFrom::Start(0))?;
        if n == 6 && &magic == FILE_MAGIC {
            Self::file(file, limits)
        } else if n >= 4 && magic[..4] == CONTINUATION {
            Self::stream(Box::new(BufReader::with_capacity(1 << 20, file)), limits)
        } else {
            Err(Error::unknown_format(format!(
                "not an Arrow IPC file or stream: {}",
                path.display()
            )))
        }
    }

    /// Read an IPC stream from any reader (a pipe, standard input).
    pub fn from_stream(reader: impl Read + Send + 'static, limits: Limits) -> Result<Self> {
        Self::stream(Box::new(BufReader::with_capacity(1 << 20, reader)), limits)
    }

    fn stream(mut reader: Box<dyn Read + Send>, limits: Limits) -> Result<Self> {
        // The schema message comes first; nothing may precede it.
        let first = read_message(&mut reader, &limits)?
            .ok_or_else(|| corrupt("empty IPC stream: no schema message"))?;
        let Kind::Schema(schema) = first.kind else {
            return Err(corrupt(
                "the IPC stream does not start with a schema message",
            ));
        };
        Ok(IpcInput {
            source: Source::Stream(reader),
            format: IpcFormat::Stream,
            schema,
            schema_message: Arc::new(first.bytes),
            dictionaries: BTreeMap::new(),
            dictionary_bytes: 0,
            batches: None,
            limits,
            done: false,
            read: (0, 0),
            progress: None,
        })
    }

    fn file(file: File, limits: Limits) -> Result<Self> {
        let size = file.metadata()?.len();
        let mut input = file;
        if size < 18 {
            return Err(corrupt(format!("an IPC file of {size} bytes is too short")));
        }
        let mut tail = [0u8; 10];
        input.seek(SeekFrom::Start(size - 10))?;
        input.read_exact(&mut tail)?;
        if &tail[4..] != FILE_MAGIC {
            return Err(corrupt(
                "the IPC file does not end with ARROW1 (truncated?)",
            ));
        }
        let footer_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
        if footer_len + 18 > size {
            return Err(corrupt(format!(
                "footer of {footer_len} bytes in a file of {size}"
            )));
        }
        let mut footer_bytes = vec![0u8; footer_len as usize];
        input.seek(SeekFrom::Start(size - 10 - footer_len))?;
        input.read_exact(&mut footer_bytes)?;
        let footer = arrow_ipc::root_as_footer(&footer_bytes)
            .map_err(|e| corrupt(format!("invalid IPC file footer: {e}")))?;
        let block = |b: &arrow_ipc::Block| -> Result<(u64, usize, usize)> {
            let (off, meta, body) = (b.offset(), b.metaDataLength(), b.bodyLength());
            let ok = off >= 8
                && meta > 0
                && body >= 0
                && (meta as usize) <= MAX_METADATA
                && (off as u64)
                    .checked_add(meta as u64)
                    .and_then(|e| e.checked_add(body as u64))
                    .is_some_and(|e| e <= size);
            if !ok {
                return Err(corrupt(format!(
                    "block at {off} (+{meta} +{body}) outside a file of {size} bytes"
                )));
            }
            Ok((off as u64, meta as usize, body as usize))
        };
        let batch_blocks = footer
            .recordBatches()
            .map(|v| v.iter().map(block).collect::<Result<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        let dict_blocks = footer
            .dictionaries()
            .map(|v| v.iter().map(block).collect::<Result<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        // Blocks are distinct messages: a footer listing one block many times (or blocks
        // inside each other) would make a small file read as a huge one.
        let mut spans: Vec<(u64, u64)> = batch_blocks
            .iter()
            .chain(&dict_blocks)
            .map(|&(off, meta, body)| (off, off + meta as u64 + body as u64))
            .collect();
        spans.sort_unstable();
        if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(corrupt(format!(
                "the IPC file footer lists overlapping blocks at {} and {}",
                w[0].0, w[1].0
            )));
        }
        // The schema message follows the magic, padded (arrow-rs aligns it to 64 bytes).
        input.seek(SeekFrom::Start(8))?;
        let mut pos = 8u64;
        loop {
            let mut word = [0u8; 4];
            input.read_exact(&mut word)?;
            if word != [0; 4] {
                break;
            }
            pos += 4;
            if pos > 64 << 10 {
                return Err(corrupt(
                    "no schema message in the first 64 KiB of the IPC file",
                ));
            }
        }
        input.seek(SeekFrom::Start(pos))?;
        let first = read_message(&mut input, &limits)?
            .ok_or_else(|| corrupt("the IPC file has no schema message"))?;
        let Kind::Schema(schema) = first.kind else {
            return Err(corrupt("the IPC file does not start with a schema message"));
        };
        let mut dictionaries: BTreeMap<i64, Vec<Arc<Vec<u8>>>> = BTreeMap::new();
        let mut dictionary_bytes = 0u64;
        for (off, meta, body) in dict_blocks {
            let m = read_block(&mut input, off, meta, body, &limits)?;
            let Kind::Dictionary { id, delta } = m.kind else {
                return Err(corrupt(format!("block at {off} is not a dictionary")));
            };
            let entry = dictionaries.entry(id).or_default();
            if !delta && !entry.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the IPC file replaces dictionary {id}, which the file format does not allow"
                )));
            }
            dictionary_bytes = hold_dictionary(dictionary_bytes, m.bytes.len(), &limits)?;
            entry.push(Arc::new(m.bytes));
        }
        Ok(IpcInput {
            batches: Some(batch_blocks.len()),
            source: Source::File {
                input,
                blocks: batch_blocks.into_iter(),
            },
            format: IpcFormat::File,
            schema,
            schema_message: Arc::new(first.bytes),
            dictionaries,
            dictionary_bytes,
            limits,
            done: false,
            read: (0, 0),
            progress: None,
        })
    }

    /// Call `f` with (batches read, bytes of their messages) after each batch is read
    /// (for progress bars: a split reads a batch just before sending it).
    pub fn on_progress(mut self, f: impl FnMut(u64, u64) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// The input's format.
    pub fn format(&self) -> IpcFormat {
        self.format
    }

    /// The schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The input's schema message (encapsulated, as stored).
    pub fn schema_message(&self) -> &[u8] {
        &self.schema_message
    }

    /// Number of record batches, when known up front (IPC files).
    pub fn num_batches(&self) -> Option<usize> {
        self.batches
    }

    fn next_batch(&mut self) -> Result<Option<EncodedBatch>> {
        loop {
            let m = match &mut self.source {
                Source::File { input, blocks } => match blocks.next() {
                    Some((off, meta, body)) => read_block(input, off, meta, body, &self.limits)?,
                    None => return Ok(None),
                },
                Source::Stream(r) => match read_message(r, &self.limits)? {
                    Some(m) => m,
                    None => return Ok(None),
                },
            };
            match m.kind {
                Kind::Batch {
                    rows,
                    compression,
                    compressed,
                } => {
                    let dictionaries = self.dictionaries.values().flatten().cloned().collect();
                    self.read.0 += 1;
                    self.read.1 += m.bytes.len() as u64;
                    if let Some(f) = &mut self.progress {
                        f(self.read.0, self.read.1);
                    }
                    return Ok(Some(EncodedBatch {
                        schema: self.schema.clone(),
                        schema_message: self.schema_message.clone(),
                        dictionaries,
                        message: bytes::Bytes::from(m.bytes),
                        rows,
                        compression: if compressed {
                            compression
                        } else {
                            Some(IpcCompression::None)
                        },
                    }));
                }
                Kind::Dictionary { id, delta } => {
                    let entry = self.dictionaries.entry(id).or_default();
                    if !delta {
                        let dropped: usize = entry.iter().map(|d| d.len()).sum();
                        self.dictionary_bytes =
                            self.dictionary_bytes.saturating_sub(dropped as u64);
                        entry.clear();
                    }
                    self.dictionary_bytes =
                        hold_dictionary(self.dictionary_bytes, m.bytes.len(), &self.limits)?;
                    entry.push(Arc::new(m.bytes));
                }
                Kind::Schema(_) => {
                    return Err(corrupt("a second schema message in the IPC stream"));
                }
                Kind::Other => {}
            }
        }
    }
}

impl Iterator for IpcInput {
    type Item = Result<EncodedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_batch().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// A writer that counts the bytes written through it.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write `batches` (all of `schema`) to `out` as an Arrow IPC file or stream with IPC
/// body compression; `progress` is called after each batch with (batches written,
/// bytes written). Returns the bytes written. The first failing batch stops the write.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int32Array, RecordBatch};
/// use redstash::codec::arrow::IpcCompression;
/// use redstash::codec::arrow_file::{IpcFormat, write_ipc};
///
/// let b = RecordBatch::try_from_iter([("x", Arc::new(Int32Array::from(vec![1, 2])) as _)])
///     .unwrap();
/// let mut out = Vec::new();
/// let n = write_ipc(&mut out, &b.schema(), [Ok(b.clone())], IpcFormat::File,
///                   IpcCompression::Lz4, |_, _| {}).unwrap();
/// assert_eq!(n as usize, out.len());
/// assert!(out.starts_with(b"ARROW1"));
/// ```
pub fn write_ipc<W: Write>(
    out: W,
    schema: &Schema,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
    format: IpcFormat,
    compression: IpcCompression,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let options = IpcWriteOptions::default()
        .try_with_compression(compression.ipc())
        .map_err(|e| Error::InvalidArgument(format!("IPC options: {e}")))?;
    let out = Counting { inner: out, n: 0 };
    let err = |e: arrow_schema::ArrowError| match e {
        arrow_schema::ArrowError::IoError(_, io) => Error::Io(io),
        other => Error::InvalidArgument(format!("IPC write: {other}")),
    };
    let mut done = 0u64;
    // The two writers have the same methods but no common trait.
    macro_rules! write_all {
        ($w:expr) => {{
            let mut w = $w.map_err(err)?;
            for b in batches {
                w.write(&b?).map_err(err)?;
                done += 1;
                progress(done, w.get_ref().n);
            }
            w.finish().map_err(err)?;
            Ok(w.get_ref().n)
        }};
    }
    match format {
        IpcFormat::File => write_all!(FileWriter::try_new_with_options(out, schema, options)),
        IpcFormat::Stream => write_all!(StreamWriter::try_new_with_options(out, schema, options)),
    }
}

/// The dictionary bytes held once a dictionary message of `len` bytes is added to
/// `held`: every batch's value carries all of them, so more than `max_value_len` is
/// too large, an [`Error::InvalidValue`] (deltas without end, or a footer listing one
/// delta many times).
fn hold_dictionary(held: u64, len: usize, limits: &Limits) -> Result<u64> {
    let total = held.saturating_add(len as u64);
    if total > limits.max_value_len {
        return Err(Error::too_large(total, limits.max_value_len));
    }
    Ok(total)
}

/// Read as many bytes as there are, up to `buf.len()`.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Append exactly `len` bytes of `r` to `out`, growing it as bytes arrive (a lying
/// length cannot make it allocate more than the input holds).
fn read_exactly(r: &mut impl Read, len: usize, out: &mut Vec<u8>, what: &str) -> Result<()> {
    out.try_reserve(len.min(64 << 20))
        .map_err(|_| Error::too_large(len as u64, 64 << 20))?;
    let got = r.take(len as u64).read_to_end(out)?;
    if got != len {
        return Err(corrupt(format!("truncated {what}: {got} of {len} bytes")));
    }
    Ok(())
}

fn read_block(
    input: &mut File,
    off: u64,
    meta: usize,
    body: usize,
    limits: &Limits,
) -> Result<Message> {
    input.seek(SeekFrom::Start(off))?;
    let m = read_message(input, limits)?
        .ok_or_else(|| corrupt(format!("no message at block offset {off}")))?;
    if m.bytes.len() != meta + body {
        return Err(corrupt(format!(
            "block at {off} declares {} bytes, its message has {}",
            meta + body,
            m.bytes.len()
        )));
    }
    Ok(m)
}

/// Read one encapsulated message (continuation marker or legacy 4-byte length,
/// metadata, body); `None` at end of stream. The bytes returned always use the
/// continuation marker.
fn read_message(r: &mut impl Read, limits: &Limits) -> Result<Option<Message>> {
    let mut word = [0u8; 4];
    match read_up_to(r, &mut word)? {
        0 => return Ok(None),
        4 => {}
        n => return Err(corrupt(format!("truncated message header ({n} bytes)"))),
    }
    let mut len = u32::from_le_bytes(word);
    if len == 0xFFFF_FFFF {
        if read_up_to(r, &mut word)? != 4 {
            return Err(corrupt("truncated message length"));
        }
        len = u32::from_le_bytes(word);
    }
    if len == 0 {
        return Ok(None);
    }
    let len = len as usize;
    if len > MAX_METADATA {
        return Err(Error::too_large(len as u64, MAX_METADATA as u64));
    }
    let mut bytes = Vec::with_capacity(8 + len);
    bytes.extend_from_slice(&[0xFF; 4]);
    bytes.extend_from_slice(&(len as u32).to_le_bytes());
    read_exactly(r, len, &mut bytes, "message metadata")?;
    let (kind, body) = {
        let msg = arrow_ipc::root_as_message(&bytes[8..])
            .map_err(|e| corrupt(format!("invalid IPC message: {e}")))?;
        let body = u64::try_from(msg.bodyLength())
            .map_err(|_| corrupt(format!("negative body length {}", msg.bodyLength())))?;
        if body > limits.max_value_len {
            return Err(Error::too_large(body, limits.max_value_len));
        }
        let kind = if let Some(s) = msg.header_as_schema() {
            let schema = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                arrow_ipc::convert::try_fb_to_schema(s)
            }))
            .map_err(|_| corrupt("invalid schema message"))?
            .map_err(|e| corrupt(format!("invalid schema message: {e}")))?;
            Kind::Schema(Arc::new(schema))
        } else if let Some(d) = msg.header_as_dictionary_batch() {
            Kind::Dictionary {
                id: d.id(),
                delta: d.isDelta(),
            }
        } else if let Some(b) = msg.header_as_record_batch() {
            let rows = usize::try_from(b.length())
                .map_err(|_| corrupt(format!("negative row count {}", b.length())))?;
            let codec = b.compression().map(|c| c.codec());
            Kind::Batch {
                rows,
                compressed: codec.is_some(),
                compression: match codec {
                    Some(arrow_ipc::CompressionType::ZSTD) => Some(IpcCompression::Zstd),
                    Some(arrow_ipc::CompressionType::LZ4_FRAME) => Some(IpcCompression::Lz4),
                    _ => None,
                },
            }
        } else {
            Kind::Other
        };
        (kind, body as usize)
    };
    read_exactly(r, body, &mut bytes, "message body")?;
    Ok(Some(Message { bytes, kind }))
}

/// The dictionary ids of a schema message's fields, depth first (to check that two
/// schema messages number their dictionaries alike).
pub(crate) fn dictionary_ids(schema_message: &[u8]) -> Option<Vec<i64>> {
    fn walk(f: arrow_ipc::Field<'_>, out: &mut Vec<i64>) {
        if let Some(d) = f.dictionary() {
            out.push(d.id());
        }
        if let Some(children) = f.children() {
            for c in children.iter() {
                walk(c, out);
            }
        }
    }
    let meta = schema_message.get(8..)?;
    let msg = arrow_ipc::root_as_message(meta).ok()?;
    let schema = msg.header_as_schema()?;
    let mut ids = Vec::new();
    for f in schema.fields()?.iter() {
        walk(f, &mut ids);
    }
    Some(ids)
}
