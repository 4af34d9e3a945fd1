//! Splitting a table: assigning batches to partitions and keys, encoding them (or
//! re-framing batches read encoded from an IPC file), the manifest last.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};
use redis::Value;

use super::manifest::{encode_manifest, parse_manifest};
use super::*;
use crate::codec::Limits;
use crate::codec::arrow::{IpcCompression, encode_schema, encode_stream};
use crate::codec::arrow_file::{EncodedBatch, IpcInput, dictionary_ids};
use crate::error::{Error, Result};
use crate::exec::{Command, Delivered, Delivery, Replies, Request, Step};
use crate::store::tally::Tally;

/// The runs of equal values of a batch's partition column (integer, non-negative, no
/// nulls): `(partition, start, len)`, in row order. Compared as stored; only the first
/// value of each run is converted.
fn partition_runs(col: &dyn Array, name: &str) -> Result<Vec<(u32, usize, usize)>> {
    if col.null_count() > 0 {
        return Err(Error::InvalidArgument(format!(
            "partition column {name:?} has nulls"
        )));
    }
    macro_rules! runs {
        ($t:ty) => {{
            let values = col.as_primitive::<$t>().values();
            let mut runs = Vec::new();
            let mut start = 0;
            while start < values.len() {
                let v = values[start];
                let len = values[start..].iter().take_while(|&&x| x == v).count();
                let part = u32::try_from(v).map_err(|_| {
                    Error::InvalidArgument(format!(
                        "partition column {name:?}: value {v} is not a partition id (0..2^32)"
                    ))
                })?;
                runs.push((part, start, len));
                start += len;
            }
            Ok(runs)
        }};
    }
    match col.data_type() {
        DataType::Int8 => runs!(Int8Type),
        DataType::Int16 => runs!(Int16Type),
        DataType::Int32 => runs!(Int32Type),
        DataType::Int64 => runs!(Int64Type),
        DataType::UInt8 => runs!(UInt8Type),
        DataType::UInt16 => runs!(UInt16Type),
        DataType::UInt32 => runs!(UInt32Type),
        DataType::UInt64 => runs!(UInt64Type),
        other => Err(Error::InvalidArgument(format!(
            "partition column {name:?} is {other}, not an integer"
        ))),
    }
}

/// A batch to write: decoded, or still encoded as an IPC file held it.
pub(super) enum Piece {
    Decoded(RecordBatch),
    Encoded(EncodedBatch),
}

impl Piece {
    fn num_rows(&self) -> usize {
        match self {
            Piece::Decoded(b) => b.num_rows(),
            Piece::Encoded(e) => e.num_rows(),
        }
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Piece::Decoded(b) => b.schema(),
            Piece::Encoded(e) => e.schema().clone(),
        }
    }
}

/// Where a split takes its batches from.
pub(super) trait Pieces: Send {
    fn next_piece(&mut self) -> Option<Result<Piece>>;
}

/// Record batches given by the caller.
pub(super) struct Decoded<I>(pub(super) I);

impl<I: BatchSource> Pieces for Decoded<I> {
    fn next_piece(&mut self) -> Option<Result<Piece>> {
        self.0.next().map(|b| Ok(Piece::Decoded(b)))
    }
}

impl Pieces for IpcInput {
    fn next_piece(&mut self) -> Option<Result<Piece>> {
        self.next().map(|r| r.map(Piece::Encoded))
    }
}

/// The state of a split between requests.
pub(super) struct Splitter<S> {
    pub(super) source: S,
    pub(super) prefix: String,
    pub(super) manifest_key: String,
    pub(super) compression: IpcCompression,
    pub(super) partitioning: Partitioning,
    pub(super) budget: usize,
    pub(super) max_batches: usize,
    pub(super) limits: Limits,
    pub(super) generation: u64,
    /// The table's schema (the first batch's).
    pub(super) schema: Option<SchemaRef>,
    /// The same with the generation in its metadata (what is written).
    pub(super) tagged: Option<SchemaRef>,
    /// For batches read encoded: the tagged schema as an encapsulated message, if its
    /// dictionary ids are the input's (then batches of the wanted compression are
    /// re-framed, not decoded and encoded again).
    framing: Option<Arc<Vec<u8>>>,
    pub(super) parts: BTreeMap<u32, PartitionInfo>,
    pub(super) seen: u64,
    /// Pieces to write: partition, piece, index of the input batch it comes from.
    pending: VecDeque<(u32, Piece, usize)>,
    /// What became of the pieces of each input batch read so far.
    inputs: Vec<InputState>,
    pub(super) old: Option<TableInfo>,
    /// Whether the split-in-progress marker was sent (before the first batch).
    pub(super) marked: bool,
    /// Decode re-framed batches before storing them (see `TableStore::with_verify_input`).
    verify: bool,
}

impl<'a, S: Pieces + 'a> Splitter<S> {
    /// A splitter of `source` (nothing read yet).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        source: S,
        prefix: String,
        manifest_key: String,
        compression: IpcCompression,
        partitioning: Partitioning,
        budget: usize,
        max_batches: usize,
        limits: Limits,
    ) -> Self {
        Splitter {
            source,
            prefix,
            manifest_key,
            compression,
            partitioning,
            budget,
            max_batches,
            limits,
            generation: 1,
            schema: None,
            tagged: None,
            framing: None,
            parts: BTreeMap::new(),
            seen: 0,
            pending: VecDeque::new(),
            inputs: Vec::new(),
            old: None,
            marked: false,
            verify: true,
        }
    }

    /// Whether to decode re-framed batches before storing them.
    pub(super) fn verifying(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    fn marker_key(&self) -> String {
        format!("{}:{PENDING_SUFFIX}", self.prefix)
    }

    /// `SET` of the split-in-progress marker (the generation being written).
    pub(super) fn marker(&self) -> Command<'static> {
        let mut c = redis::cmd("SET");
        c.arg(self.marker_key()).arg(self.generation);
        c.into()
    }

    /// Take the schema of the first piece; check the others against it.
    fn check_schema(&mut self, piece: &Piece) -> Result<()> {
        let s = piece.schema();
        match &self.schema {
            None => {
                let mut meta = s.metadata().clone();
                meta.remove(GENERATION_METADATA);
                let plain = Arc::new(Schema::new_with_metadata(s.fields().clone(), meta));
                let mut tagged_meta = plain.metadata().clone();
                tagged_meta.insert(GENERATION_METADATA.to_owned(), self.generation.to_string());
                let tagged = Arc::new(Schema::new_with_metadata(s.fields().clone(), tagged_meta));
                if let Piece::Encoded(e) = piece {
                    self.framing = framing(&tagged, e.schema_message())?;
                }
                self.tagged = Some(tagged);
                self.schema = Some(plain);
                Ok(())
            }
            Some(expected) if expected.fields() != s.fields() => Err(Error::SchemaMismatch {
                key: self.prefix.clone(),
                expected: describe(expected.fields()),
                found: describe(s.fields()),
            }),
            Some(_) => Ok(()),
        }
    }

    /// The next (partition, piece, input batch) to write.
    fn next_piece(&mut self) -> Result<Option<(u32, Piece, usize)>> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Ok(Some(p));
            }
            let Some(piece) = self.source.next_piece().transpose()? else {
                return Ok(None);
            };
            self.check_schema(&piece)?;
            let index = self.seen;
            self.seen += 1;
            let input = self.inputs.len();
            self.inputs.push(InputState::default());
            match &self.partitioning {
                Partitioning::RoundRobin(n) => {
                    let part = (index % (*n).max(1) as u64) as u32;
                    self.pending.push_back((part, piece, input));
                }
                Partitioning::Blocks(n) => {
                    let part = u32::try_from(index / (*n).max(1) as u64).map_err(|_| {
                        Error::InvalidArgument(format!("more than 2^32 partitions of {n}"))
                    })?;
                    self.pending.push_back((part, piece, input));
                }
                Partitioning::Column(name) => {
                    let name = name.clone();
                    self.by_column(&name, piece, input)?;
                }
            }
        }
    }

    /// Queue the runs of equal `name` values of a piece. A batch read encoded whose
    /// column holds one value is kept encoded (only that column is decoded to check).
    fn by_column(&mut self, name: &str, piece: Piece, input: usize) -> Result<()> {
        let batch = match piece {
            Piece::Decoded(b) => b,
            Piece::Encoded(e) => {
                let cols = [name.to_owned()];
                let col = e.decode(Some(&cols), &self.limits)?;
                match partition_runs(col.column(0).as_ref(), name)?[..] {
                    [] => return Ok(()),
                    [(part, _, _)] => {
                        self.pending.push_back((part, Piece::Encoded(e), input));
                        return Ok(());
                    }
                    _ => e.decode(None, &self.limits)?,
                }
            }
        };
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| Error::InvalidArgument(format!("no partition column {name:?}")))?;
        for (part, start, len) in partition_runs(col.as_ref(), name)? {
            self.pending
                .push_back((part, Piece::Decoded(batch.slice(start, len)), input));
        }
        Ok(())
    }

    /// The next batch to write, under its key; counted in its partition (but for its
    /// bytes, see [`add_bytes`](Self::add_bytes)).
    pub(super) fn assign(&mut self) -> Result<Option<Assigned>> {
        let Some((part, piece, input)) = self.next_piece()? else {
            return Ok(None);
        };
        if let Some(st) = self.inputs.get_mut(input) {
            st.pieces += 1;
        }
        let schema = self
            .tagged
            .clone()
            .ok_or_else(|| Error::InvalidArgument("internal: a batch before the schema".into()))?;
        let info = self.parts.entry(part).or_insert(PartitionInfo {
            id: part,
            batches: 0,
            rows: 0,
            bytes: 0,
            checksums: Vec::new(),
        });
        let batch = info.batches;
        let key = batch_key(&self.prefix, part, batch);
        info.batches += 1;
        // Set once the batch is written (`add_bytes`).
        info.checksums.push(0);
        info.rows = info
            .rows
            .checked_add(piece.num_rows() as u64)
            .ok_or_else(|| Error::InvalidArgument("the table's row count overflows u64".into()))?;
        Ok(Some(Assigned {
            key,
            part,
            batch,
            input,
            piece,
            schema,
            framing: self.framing.clone(),
            verify: self.verify,
            compression: self.compression,
            limits: self.limits,
        }))
    }

    /// Count a written batch: its bytes and checksum.
    pub(super) fn add_bytes(&mut self, written: WrittenBatch, n: usize) {
        if let Some(p) = self.parts.get_mut(&written.part) {
            p.bytes += n as u64;
            if let Some(c) = p.checksums.get_mut(written.batch as usize) {
                *c = written.checksum;
            }
        }
    }

    /// Take the previous manifest (the reply to its `GET`) into account.
    pub(super) fn adopt_old(&mut self, value: Option<bytes::Bytes>, limits: &Limits) {
        // A corrupt manifest is replaced (a re-split is how it is repaired).
        if let Some(b) = value
            && let Ok(old) = parse_manifest(&self.prefix, &self.manifest_key, &b, limits)
        {
            self.generation = old.generation.saturating_add(1);
            self.old = Some(old);
        }
    }

    pub(super) fn step(mut self) -> Result<Step<'a, TableInfo>> {
        let mut req = Request::new(Some(&self.prefix));
        let mut bytes = 0usize;
        let mut inputs = Vec::new();
        let mut marker = false;
        while bytes < self.budget && req.len() < self.max_batches {
            let Some(a) = self.assign()? else {
                break;
            };
            if !self.marked {
                req.push(self.marker());
                self.marked = true;
                marker = true;
            }
            let (part, cmd, n) = a.into_set()?;
            inputs.push(part.input);
            self.add_bytes(part, n);
            bytes += n;
            req.push(cmd);
        }
        if req.is_empty() {
            return self.finish();
        }
        Ok(Step::send_tracked(req, move |d| {
            match self.tally_request(d, marker, &inputs) {
                None => self.step(),
                Some(e) => Err(self.partial(e)),
            }
        }))
    }

    /// Record what became of a request of batches (`inputs`: the input batch of each
    /// `SET`, after the marker's `SET` when `marker`); the error that stops the split,
    /// if any.
    pub(super) fn tally_request(
        &mut self,
        d: Delivered,
        marker: bool,
        inputs: &[usize],
    ) -> Option<Error> {
        let (replies, failure): (Vec<Option<Value>>, Option<Error>) =
            match d {
                Ok(mut all) => (
                    all.pop()
                        .unwrap_or_default()
                        .into_iter()
                        .map(Some)
                        .collect(),
                    None,
                ),
                Err(i) => {
                    let crate::exec::Interrupted {
                        mut requests,
                        failure,
                    } = *i;
                    match requests.pop() {
                        Some(Delivery::Answered(r)) => (r.into_iter().map(Some).collect(), failure),
                        Some(Delivery::InFlight(r)) => (r, failure),
                        Some(Delivery::Refused(e)) => {
                            inputs
                                .iter()
                                .for_each(|&i| self.piece(i, PieceState::Refused));
                            return Some(failure.unwrap_or(e));
                        }
                        Some(Delivery::NotSent) | None => {
                            return Some(failure.unwrap_or_else(|| {
                                Error::unexpected("split request not sent", None)
                            }));
                        }
                    }
                }
            };
        let mut it = replies.into_iter();
        let mut stop = failure;
        if marker && let Some(Some(Value::ServerError(e))) = it.next() {
            stop.get_or_insert(Error::redis(e.into(), Some(&self.prefix)));
        }
        for &input in inputs {
            match it.next().flatten() {
                None => self.piece(input, PieceState::Unknown),
                Some(Value::ServerError(e)) => {
                    let e = Error::redis(e.into(), Some(&self.prefix));
                    self.piece(input, PieceState::Refused);
                    stop.get_or_insert(e);
                }
                Some(_) => self.piece(input, PieceState::Written),
            }
        }
        stop
    }

    fn piece(&mut self, input: usize, state: PieceState) {
        if let Some(st) = self.inputs.get_mut(input) {
            match state {
                PieceState::Written => st.written += 1,
                PieceState::Refused => st.refused = true,
                PieceState::Unknown => st.unknown = true,
            }
        }
    }

    /// The split stopped on `failure`: what became of each input batch read so far
    /// ([`Error::PartialWrite`]; the error itself when nothing was sent). The table
    /// reads as incomplete until it is split again.
    pub(super) fn partial(&self, failure: Error) -> Error {
        let mut tally = Tally::default();
        for (i, st) in self.inputs.iter().enumerate() {
            if st.refused {
                tally.refused(
                    i,
                    Error::unexpected("batch refused", Some(self.prefix.clone())),
                );
            } else if st.unknown || (st.written > 0 && st.written < st.pieces) {
                tally.unknown(i);
            } else if st.written == st.pieces {
                tally.written(i);
            } else {
                tally.not_sent(i);
            }
        }
        match tally.finish(Some(failure)) {
            Err(e) => e,
            Ok(_) => Error::unexpected("split failed", Some(self.prefix.clone())),
        }
    }

    /// Write the manifest, then delete what the previous generation had beyond the new.
    pub(super) fn finish(mut self) -> Result<Step<'a, TableInfo>> {
        let marker_key = self.marker_key();
        let Some(schema) = self.schema else {
            return Err(Error::InvalidArgument(format!(
                "table {:?}: no batches to split",
                self.prefix
            )));
        };
        let partitions: Vec<PartitionInfo> = self.parts.into_values().collect();
        let created_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let info = TableInfo {
            prefix: self.prefix.clone(),
            rows: partitions.iter().map(|p| p.rows).sum(),
            bytes: partitions.iter().map(|p| p.bytes).sum(),
            schema,
            partitions,
            compression: self.compression,
            generation: self.generation,
            created_at_ms,
            format_version: MANIFEST_VERSION,
        };
        let key = self.manifest_key.clone();
        let mut req = Request::new(Some(&self.manifest_key));
        let mut c = redis::cmd("SET");
        c.arg(&self.manifest_key).arg(encode_manifest(&info)?);
        req.push(c);
        let mut c = redis::cmd("DEL");
        c.arg(marker_key);
        req.push(c);
        if let Some(old) = &self.old {
            let new: BTreeMap<u32, u32> =
                info.partitions.iter().map(|p| (p.id, p.batches)).collect();
            for p in &old.partitions {
                let keep = new.get(&p.id).copied().unwrap_or(0);
                let stale: Vec<String> = (keep..p.batches)
                    .map(|b| batch_key(&self.prefix, p.id, b))
                    .collect();
                for chunk in stale.chunks(512) {
                    let mut c = redis::cmd("DEL");
                    c.arg(chunk);
                    req.push(c);
                }
            }
        }
        let inputs = std::mem::take(&mut self.inputs);
        let prefix = self.prefix;
        Ok(Step::send_tracked(req, move |d| {
            let failure = match d {
                Ok(mut all) => Replies::new(all.pop().unwrap_or_default(), Some(key))
                    .finish_ok()
                    .err(),
                Err(i) => Some(i.into_error()),
            };
            match failure {
                None => Ok(Step::Done(info)),
                // Every batch is stored; the manifest may not be: the table reads
                // as incomplete (or its old generation) until it is split again.
                Some(e) => {
                    let mut tally = Tally::default();
                    (0..inputs.len()).for_each(|i| tally.written(i));
                    tally.also_failed(e);
                    Err(tally
                        .finish(None)
                        .err()
                        .unwrap_or_else(|| Error::unexpected("split failed", Some(prefix))))
                }
            }
        }))
    }
}

/// The schema message written before re-framed batches.
fn framing(tagged: &SchemaRef, input_message: &[u8]) -> Result<Option<Arc<Vec<u8>>>> {
    let mut message = encode_schema(tagged)?;
    // encode_schema gives a stream: the schema message, then the end-of-stream marker.
    message.truncate(message.len().saturating_sub(8));
    let same_ids = match (dictionary_ids(&message), dictionary_ids(input_message)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    Ok(same_ids.then(|| Arc::new(message)))
}

/// What became of the pieces (stored batches) of one input batch.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct InputState {
    /// Pieces assigned to keys.
    pieces: u32,
    /// Pieces acknowledged.
    written: u32,
    /// A piece was refused.
    refused: bool,
    /// A piece was in flight when the connection failed.
    unknown: bool,
}

/// What became of one piece.
#[derive(Debug, Clone, Copy)]
pub(super) enum PieceState {
    Written,
    Refused,
    Unknown,
}

/// A batch as written: partition, index in it, checksum of its value.
#[derive(Debug, Clone, Copy)]
pub(super) struct WrittenBatch {
    part: u32,
    batch: u32,
    checksum: u64,
    /// The input batch it comes from.
    pub(super) input: usize,
}

/// A batch with its key, ready to encode.
pub(super) struct Assigned {
    pub(super) key: String,
    pub(super) part: u32,
    batch: u32,
    /// The input batch it comes from.
    input: usize,
    piece: Piece,
    schema: SchemaRef,
    framing: Option<Arc<Vec<u8>>>,
    compression: IpcCompression,
    limits: Limits,
    verify: bool,
}

impl Assigned {
    /// Rough memory held by the piece (for in-flight accounting).
    #[cfg(feature = "sync")]
    pub(super) fn memory_size(&self) -> usize {
        match &self.piece {
            Piece::Decoded(b) => b.get_array_memory_size(),
            Piece::Encoded(e) => e.message_len(),
        }
    }

    /// The value as pieces: re-framed when the batch is encoded with the compression
    /// wanted and the dictionary ids agree, encoded (again) otherwise.
    fn value(self) -> Result<Vec<Cow<'static, [u8]>>> {
        let batch = match self.piece {
            Piece::Encoded(e) => match &self.framing {
                Some(msg) if e.compression() == Some(self.compression) => {
                    // Stored as the file holds it: decoded once (and dropped) so that a
                    // corrupt input batch is an error now, not a stored value.
                    if self.verify {
                        e.decode(None, &self.limits)?;
                    }
                    return Ok(e.into_stream_pieces(msg));
                }
                _ => e.decode(None, &self.limits)?,
            },
            Piece::Decoded(b) => b,
        };
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| Error::InvalidArgument(format!("batch: {e}")))?;
        Ok(vec![Cow::Owned(encode_stream(
            &self.schema,
            std::slice::from_ref(&batch),
            self.compression,
        )?)])
    }

    /// `SET key value` for this batch: (the batch, command, value bytes).
    pub(super) fn into_set(mut self) -> Result<(WrittenBatch, Command<'static>, usize)> {
        let (part, batch, input) = (self.part, self.batch, self.input);
        let key = std::mem::take(&mut self.key).into_bytes();
        let value = self.value()?;
        let n = value.iter().map(|p| p.len()).sum();
        let checksum = checksum(value.iter().map(|p| &p[..]));
        Ok((
            WrittenBatch {
                part,
                batch,
                checksum,
                input,
            },
            Command::Pieces(vec![
                vec![Cow::Borrowed(&b"SET"[..])],
                vec![Cow::Owned(key)],
                value,
            ]),
            n,
        ))
    }
}
