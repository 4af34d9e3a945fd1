//! Batches: a fixed number of source records read, mapped and encoded as one buffer of
//! RESP commands, with what is needed to account for each record.

use super::mapping::{Atomicity, Encoder, Mapping};
use super::record::{Position, Record};
use super::report::{RecordError, Stage};
use super::source::{Read, ResumePoint, Source};
use crate::error::Result;
use crate::resp::Packed;

/// One loader of a sharded load: it takes the batches whose sequence number is
/// `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This loader's index, from 0.
    pub index: u32,
    /// The number of loaders.
    pub count: u32,
}

impl Shard {
    /// Parse `I/N` (`0 <= I < N`).
    pub fn parse(s: &str) -> crate::Result<Shard> {
        let bad =
            || crate::Error::InvalidArgument(format!("shard {s:?}: expected I/N with 0 <= I < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether batch `seq` is this loader's.
    pub fn takes(&self, seq: u64) -> bool {
        seq % u64::from(self.count) == u64::from(self.index)
    }
}

/// One record of a batch.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) position: Position,
    /// Its commands (RESP) in the batch's buffer.
    pub(crate) range: std::ops::Range<usize>,
    pub(crate) commands: usize,
    /// The record as JSON, kept for a rejects file.
    pub(crate) reject: Option<Box<str>>,
}

/// A batch of encoded records.
pub(crate) struct Batch {
    pub(crate) seq: u64,
    pub(crate) packed: Packed,
    pub(crate) slots: Vec<Slot>,
}

/// What reading one batch's worth of records gave.
pub(crate) struct Produced {
    pub(crate) seq: u64,
    /// The records to send (`None` when none: all were skipped or another shard's).
    pub(crate) batch: Option<Batch>,
    pub(crate) end: ResumePoint,
    /// Records read.
    pub(crate) read: u64,
    pub(crate) other_shards: u64,
    /// Records that could not be read or mapped, with their JSON for a rejects file.
    pub(crate) skipped: Vec<(RecordError, Option<Box<str>>)>,
    /// The source is at its end.
    pub(crate) ended: bool,
}

/// Reads a source into batches.
pub(crate) struct Batcher<'a> {
    source: &'a mut dyn Source,
    mapping: &'a Mapping,
    batch_size: usize,
    shard: Option<Shard>,
    lua_sha: Option<String>,
    check_slots: bool,
    keep_rejects: bool,
    /// Stop at the first record that cannot be read or mapped (it is not consumed).
    stop_on_error: bool,
    enc: Encoder,
    record: Record,
    seq: u64,
    ended: bool,
    key: Vec<u8>,
    /// The capacity the last batch's buffer grew to: the next one asks for as much, so
    /// a large buffer comes back from the pool of [`crate::buffers`] (which keeps only
    /// buffers of at least `MIN_POOLED` bytes and hands them out only for requests that
    /// large) instead of being allocated anew while idle ones pile up in the pool.
    packed_capacity: usize,
}

impl<'a> Batcher<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        source: &'a mut dyn Source,
        mapping: &'a Mapping,
        batch_size: usize,
        shard: Option<Shard>,
        cluster: bool,
        keep_rejects: bool,
        stop_on_error: bool,
        first_seq: u64,
    ) -> Self {
        // A source that shards itself (by Parquet row group) gives only its records.
        let shard = shard.filter(|s| !source.take_shard(*s));
        Batcher {
            source,
            mapping,
            batch_size: batch_size.max(1),
            shard,
            lua_sha: (mapping.atomicity() == Atomicity::Lua).then(super::mapping::lua_sha),
            check_slots: cluster && mapping.atomicity() != Atomicity::None,
            keep_rejects,
            stop_on_error,
            enc: Encoder::default(),
            record: Record::default(),
            seq: first_seq,
            ended: false,
            key: Vec::new(),
            packed_capacity: batch_size.max(1) * 64,
        }
    }

    /// Bytes of the input consumed and its size.
    pub(crate) fn bytes_read(&self) -> (u64, Option<u64>) {
        self.source.bytes_read()
    }

    /// Read the next batch's records; `None` after the end.
    pub(crate) fn next(&mut self) -> Result<Option<Produced>> {
        if self.ended {
            return Ok(None);
        }
        let seq = self.seq;
        self.seq += 1;
        let mine = self.shard.is_none_or(|s| s.takes(seq));
        let mut out = Produced {
            seq,
            batch: None,
            end: self.source.resume_point(),
            read: 0,
            other_shards: 0,
            skipped: Vec::new(),
            ended: false,
        };
        let mut packed = if mine {
            Packed::with_capacity(self.packed_capacity)
        } else {
            Packed::default()
        };
        let mut slots = Vec::with_capacity(if mine { self.batch_size } else { 0 });
        while out.read < self.batch_size as u64 {
            let before = self.source.resume_point();
            let read = self.source.next_record(&mut self.record)?;
            match read {
                Read::End => {
                    self.ended = true;
                    out.ended = true;
                    break;
                }
                _ if !mine => {
                    out.read += 1;
                    out.other_shards += 1;
                }
                Read::Malformed { position, reason } => {
                    if self.stop_on_error {
                        out.read += 1;
                        out.skipped
                            .push((RecordError::new(position, None, Stage::Read, reason), None));
                        self.ended = true;
                        out.end = before;
                        return Ok(Some(self.finish(out, packed, slots)));
                    }
                    out.read += 1;
                    out.skipped
                        .push((RecordError::new(position, None, Stage::Read, reason), None));
                }
                Read::Record => {
                    let position = self.record.position;
                    let problem = match self.enc.encode(self.mapping, &self.record) {
                        Err(p) => Some(p.to_string()),
                        Ok(e) if self.check_slots && !e.one_slot() => Some(
                            "its keys are in different hash slots (atomic mode on a cluster)"
                                .to_owned(),
                        ),
                        Ok(e) => {
                            let start = packed.as_bytes().len();
                            let commands = e.write_resp(&mut packed, self.lua_sha.as_deref());
                            slots.push(Slot {
                                position,
                                range: start..packed.as_bytes().len(),
                                commands,
                                reject: self
                                    .keep_rejects
                                    .then(|| self.record.to_json().into_boxed_str()),
                            });
                            None
                        }
                    };
                    if let Some(problem) = problem {
                        self.key.clear();
                        let key = self
                            .mapping
                            .key()
                            .render(&self.record, &mut self.key)
                            .ok()
                            .map(|()| String::from_utf8_lossy(&self.key).into_owned());
                        let reject = self.record.to_json().into_boxed_str();
                        out.skipped.push((
                            RecordError::new(position, key, Stage::Map, problem),
                            Some(reject),
                        ));
                        if self.stop_on_error {
                            out.read += 1;
                            self.ended = true;
                            out.end = before;
                            return Ok(Some(self.finish(out, packed, slots)));
                        }
                    }
                    out.read += 1;
                }
            }
        }
        out.end = self.source.resume_point();
        Ok(Some(self.finish(out, packed, slots)))
    }

    fn finish(&mut self, mut out: Produced, packed: Packed, slots: Vec<Slot>) -> Produced {
        self.packed_capacity = self.packed_capacity.max(packed.resp.capacity());
        if !slots.is_empty() {
            out.batch = Some(Batch {
                seq: out.seq,
                packed,
                slots,
            });
        }
        out
    }
}
