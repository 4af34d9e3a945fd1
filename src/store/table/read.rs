//! Reading a table: the batches of the selected partitions, pipelined `MGET`s, decoded
//! and checked against the manifest (or, without one, against the first batch).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};

use super::*;
use crate::codec::arrow::decode_stream_bytes;
use crate::codec::{CallBudget, Limits};
use crate::error::{Error, Result, ValueProblem};
use crate::exec::{Replies, Request, Step, reply_bytes};

/// What a read checks each batch against.
#[derive(Clone)]
enum Expect {
    /// The manifest's (projected) schema and generation.
    Manifest { schema: SchemaRef, generation: u64 },
    /// The first batch's schema (set once it is read).
    First(Option<SchemaRef>),
}

/// The state of a read.
pub(super) struct Reader {
    pub(super) prefix: String,
    pub(super) options: ReadOptions,
    pub(super) limits: Limits,
    pub(super) budget: usize,
    pub(super) mget_keys: usize,
}

impl Reader {
    /// The partitions asked for (all by default), checked against those available.
    pub(super) fn select_or_all(
        &self,
        available: &BTreeMap<u32, u32>,
        asked: Option<&[u32]>,
    ) -> Result<Vec<u32>> {
        let parts: Vec<u32> = match asked {
            None => available.keys().copied().collect(),
            Some(p) => p.to_vec(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for p in &parts {
            if !seen.insert(*p) {
                return Err(Error::InvalidArgument(format!(
                    "partition {p} is asked for twice"
                )));
            }
            if !available.contains_key(p) {
                return Err(Error::InvalidArgument(format!(
                    "table {:?} has no partition {p}",
                    self.prefix
                )));
            }
        }
        Ok(parts)
    }

    fn select(&self, available: &BTreeMap<u32, u32>) -> Result<Vec<(u32, u32)>> {
        let parts = self.select_or_all(available, self.options.partitions.as_deref())?;
        Ok(parts
            .into_iter()
            .map(|p| (p, available.get(&p).copied().unwrap_or(0)))
            .collect())
    }

    pub(super) fn with_manifest(self, info: TableInfo) -> Result<Step<'static, Table>> {
        self.fetch(info)?.step()
    }

    /// The schema of the batches read from a table with a manifest: its schema, or the
    /// selected columns of it.
    pub(super) fn expected_schema(&self, info: &TableInfo) -> Result<SchemaRef> {
        let Some(cols) = &self.options.columns else {
            return Ok(info.schema.clone());
        };
        let mut idx = Vec::with_capacity(cols.len());
        for c in cols {
            idx.push(info.schema.index_of(c).map_err(|_| {
                Error::InvalidArgument(format!("table {:?} has no column {c:?}", self.prefix))
            })?);
        }
        Ok(Arc::new(
            info.schema
                .project(&idx)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?,
        ))
    }

    /// The fetch of the selected partitions of a table with a manifest.
    pub(super) fn fetch(self, info: TableInfo) -> Result<Fetch> {
        let available: BTreeMap<u32, u32> =
            info.partitions.iter().map(|p| (p.id, p.batches)).collect();
        let parts = self.select(&available)?;
        let schema = self.expected_schema(&info)?;
        let batches = info.batches().max(1);
        let avg = (info.bytes / batches).max(1) as usize;
        let per_request = (self.budget / avg).max(1);
        let generation = info.generation;
        let verify = Verify::new(&info, self.limits);
        let limits = self.limits;
        Ok(Fetch {
            reader: self,
            keys: parts
                .iter()
                .flat_map(|&(p, n)| (0..n).map(move |b| (p, b)))
                .collect(),
            per_request,
            adaptive: None,
            expect: Expect::Manifest { schema, generation },
            batches: Vec::new(),
            missing: Vec::new(),
            partitions: parts.iter().map(|&(p, _)| (p, 0)).collect(),
            generation: Some(generation),
            verify: Some(verify),
            fetched: CallBudget::new(&limits),
        })
    }

    /// A table without manifest: the batch keys found by `SCAN`.
    pub(super) fn discovered(self, keys: Vec<String>) -> Result<Step<'static, Option<Table>>> {
        let Some(available) = self.discover(&keys)? else {
            return Ok(Step::Done(None));
        };
        Ok(self.fetch_discovered(&available)?.step()?.map(Some))
    }

    /// The partitions and batch counts of a table without manifest from its batch keys
    /// (`None` when there are none); batches missing from a selected partition (a gap
    /// in its batch numbers) are [`Error::MissingBatches`].
    pub(super) fn discover(&self, keys: &[String]) -> Result<Option<BTreeMap<u32, u32>>> {
        let mut found: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for k in keys {
            if let Some((p, b)) = parse_batch_key(&self.prefix, k) {
                found.entry(p).or_default().push(b);
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        let mut available = BTreeMap::new();
        let mut missing = Vec::new();
        let mut total = 0u64;
        for (p, mut bs) in found {
            bs.sort_unstable();
            bs.dedup();
            let n = bs.last().map_or(0, |l| l.saturating_add(1));
            // The numbering declares `n` batches: bound it before listing the gaps.
            total = total.saturating_add(u64::from(n));
            if total > self.limits.max_table_batches {
                return Err(Error::corrupt(
                    "table batch keys",
                    format!(
                        "table {:?}: batch numbers declare more than {} batches \
                         (Limits::max_table_batches)",
                        self.prefix, self.limits.max_table_batches
                    ),
                ));
            }
            if bs.len() as u32 != n {
                let mut it = bs.iter().peekable();
                for b in 0..n {
                    if it.peek() == Some(&&b) {
                        it.next();
                    } else {
                        missing.push((p, b));
                    }
                }
            }
            available.insert(p, n);
        }
        let parts = self.select(&available)?;
        let missing: Vec<String> = missing
            .into_iter()
            .filter(|(p, _)| parts.iter().any(|(q, _)| q == p))
            .map(|(p, b)| batch_key(&self.prefix, p, b))
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingBatches {
                table: self.prefix.clone(),
                missing,
            });
        }
        Ok(Some(available))
    }

    /// The fetch of the selected partitions of a table without manifest, checked
    /// against its first batch. Requests start small and grow to about `budget` bytes
    /// once the values' size is known.
    pub(super) fn fetch_discovered(self, available: &BTreeMap<u32, u32>) -> Result<Fetch> {
        let parts = self.select(available)?;
        let fetched = CallBudget::new(&self.limits);
        Ok(Fetch {
            keys: parts
                .iter()
                .flat_map(|&(p, n)| (0..n).map(move |b| (p, b)))
                .collect(),
            reader: self,
            per_request: 4,
            adaptive: Some((0, 0)),
            expect: Expect::First(None),
            batches: Vec::new(),
            missing: Vec::new(),
            partitions: parts.iter().map(|&(p, _)| (p, 0)).collect(),
            generation: None,
            verify: None,
            fetched,
        })
    }
}

/// Fetching and decoding the selected batches, one request at a time.
pub(super) struct Fetch {
    reader: Reader,
    /// The manifest's checksums of the batches (none without a manifest).
    verify: Option<Verify>,
    keys: VecDeque<(u32, u32)>,
    per_request: usize,
    /// Without manifest: (values, bytes) fetched so far, to size the next requests.
    adaptive: Option<(u64, u64)>,
    expect: Expect,
    batches: Vec<RecordBatch>,
    missing: Vec<String>,
    partitions: Vec<(u32, usize)>,
    generation: Option<u64>,
    /// The stored bytes of the batch values fetched so far, against
    /// [`Limits::max_call_bytes`] (checked before the values of a request are decoded).
    fetched: CallBudget,
}

/// The `(partition, batch)` pairs of each `MGET` of a request.
pub(super) type Groups = Vec<Vec<(u32, u32)>>;

/// One request fetching the batches `keys` (in that order) of the table at `prefix`:
/// an `MGET` per run of at most `mget_keys` batches of one partition (one cluster
/// slot), and the batches each `MGET` asks for.
pub(super) fn mget_request(
    prefix: &str,
    keys: &[(u32, u32)],
    mget_keys: usize,
) -> (Request<'static>, Groups) {
    let mut req = Request::new(Some(prefix));
    let mut groups: Groups = Vec::new();
    for &(p, b) in keys {
        match groups.last_mut() {
            Some(g) if g[0].0 == p && g.len() < mget_keys.max(1) => g.push((p, b)),
            _ => groups.push(vec![(p, b)]),
        }
    }
    for g in &groups {
        let mut c = redis::cmd("MGET");
        for &(p, b) in g {
            c.arg(batch_key(prefix, p, b));
        }
        req.push(c);
    }
    (req, groups)
}

/// The replies of an [`mget_request`], in order: `(partition, key, value)`, `None` for a
/// missing key.
/// A value is checked against the manifest's checksums when they have its batch: a
/// mismatch is [`Error::InvalidValue`] (checksum mismatch), or [`Error::TableChanged`]
/// when the value is a batch redstash wrote for another generation (a re-split under
/// the reader).
pub(super) fn mget_values(
    prefix: &str,
    groups: Groups,
    mut replies: Replies,
    verify: Option<&Verify>,
) -> Result<Vec<(u32, String, Option<bytes::Bytes>)>> {
    let mut out = Vec::new();
    for g in groups {
        let values = replies.next_array_of(g.len())?;
        for ((p, b), v) in g.into_iter().zip(values) {
            let key = batch_key(prefix, p, b);
            let v = reply_bytes(v, &key)?;
            if let (Some(bytes), Some(verify)) = (&v, verify) {
                verify.check(prefix, p, b, &key, bytes)?;
            }
            out.push((p, key, v));
        }
    }
    replies.finish()?;
    Ok(out)
}

/// What a value read under a manifest is checked against.
pub(super) struct Verify {
    pub(super) checksums: Checksums,
    pub(super) generation: u64,
    pub(super) limits: Limits,
}

impl Verify {
    pub(super) fn new(info: &TableInfo, limits: Limits) -> Self {
        Verify {
            checksums: info.checksums(),
            generation: info.generation,
            limits,
        }
    }

    fn check(&self, prefix: &str, part: u32, batch: u32, key: &str, value: &[u8]) -> Result<()> {
        let Some(&expected) = self
            .checksums
            .get(&part)
            .and_then(|c| c.get(batch as usize))
        else {
            return Ok(());
        };
        let found = checksum([value]);
        if found == expected {
            return Ok(());
        }
        // Another generation's batch (a re-split under the reader) is not corruption.
        if let Ok(schema) = crate::codec::arrow::decode_schema(value, &self.limits)
            && let Some(g) = schema
                .metadata()
                .get(GENERATION_METADATA)
                .and_then(|g| g.parse::<u64>().ok())
            && g != self.generation
        {
            return Err(Error::TableChanged {
                table: prefix.to_owned(),
                key: key.to_owned(),
                expected: self.generation,
                found: Some(g),
            });
        }
        Err(Error::invalid(ValueProblem::ChecksumMismatch { expected, found }).at_key(key))
    }
}

/// A value of table generation `generation` (else [`Error::TableChanged`]: the table
/// was re-split while it was being read).
pub(super) fn check_generation(
    prefix: &str,
    key: &str,
    schema: &Schema,
    generation: u64,
) -> Result<()> {
    let found = schema
        .metadata()
        .get(GENERATION_METADATA)
        .and_then(|g| g.parse::<u64>().ok());
    if found != Some(generation) {
        return Err(Error::TableChanged {
            table: prefix.to_owned(),
            key: key.to_owned(),
            expected: generation,
            found,
        });
    }
    Ok(())
}

/// `batch` with the table's schema (field for field the value's, without its
/// generation metadata).
pub(super) fn with_schema(
    key: &str,
    schema: &SchemaRef,
    batch: RecordBatch,
) -> Result<RecordBatch> {
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
        .map_err(|e| Error::corrupt("arrow ipc", e.to_string()).at_key(key))
}

/// A value of the expected columns (else [`Error::SchemaMismatch`]).
pub(super) fn check_fields(key: &str, expected: &Schema, found: &Schema) -> Result<()> {
    if expected.fields() != found.fields() {
        return Err(Error::SchemaMismatch {
            key: key.to_owned(),
            expected: describe(expected.fields()),
            found: describe(found.fields()),
        });
    }
    Ok(())
}

/// A fetched batch value: its partition, key and bytes.
pub(super) struct Fetched {
    part: u32,
    key: String,
    bytes: bytes::Bytes,
}

/// A decoded batch value: its schema and record batches.
pub(super) type Decoded = (SchemaRef, Vec<RecordBatch>);

/// Decode one batch value (pure: any thread can run it).
pub(super) fn decode_value(
    key: &str,
    bytes: bytes::Bytes,
    columns: Option<&[String]>,
    limits: &Limits,
) -> Result<Decoded> {
    decode_stream_bytes(bytes, columns, limits).map_err(|e| e.at_key(key))
}

impl Fetch {
    pub(super) fn step(mut self) -> Result<Step<'static, Table>> {
        let Some((req, groups)) = self.next_request() else {
            return self.finish().map(Step::Done);
        };
        Ok(Step::send(req.idempotent(), move |replies| {
            for f in self.values(groups, replies)? {
                let d = decode_value(
                    &f.key,
                    f.bytes,
                    self.reader.options.columns.as_deref(),
                    &self.reader.limits,
                )?;
                self.accept(f.part, &f.key, d)?;
            }
            self.step()
        }))
    }

    /// The next request (`MGET`s of up to `mget_keys` batches of one partition each),
    /// `None` once every batch was asked for.
    fn next_request(&mut self) -> Option<(Request<'static>, Groups)> {
        if self.keys.is_empty() {
            return None;
        }
        let n = self.per_request.min(self.keys.len());
        let keys: Vec<(u32, u32)> = self.keys.drain(..n).collect();
        Some(mget_request(
            &self.reader.prefix,
            &keys,
            self.reader.mget_keys,
        ))
    }

    /// The values of a request's replies, in order; missing keys are noted.
    fn values(&mut self, groups: Groups, replies: Replies) -> Result<Vec<Fetched>> {
        let mut out = Vec::new();
        let verify = self.verify.as_ref();
        for (part, key, v) in mget_values(&self.reader.prefix, groups, replies, verify)? {
            match v {
                None => self.missing.push(key),
                Some(bytes) => {
                    self.fetched
                        .charge(bytes.len() as u64)
                        .map_err(|e| e.at_key(&key))?;
                    out.push(Fetched { part, key, bytes });
                }
            }
        }
        if let Some((n, bytes)) = &mut self.adaptive {
            *n += out.len() as u64;
            *bytes += out.iter().map(|f| f.bytes.len() as u64).sum::<u64>();
            let avg = (*bytes / (*n).max(1)).max(1) as usize;
            self.per_request = (self.reader.budget / avg).clamp(1, 4096);
        }
        Ok(out)
    }

    /// Check a decoded value against the manifest (or the first batch) and keep its
    /// batches.
    fn accept(&mut self, part: u32, key: &str, (schema, batches): Decoded) -> Result<()> {
        let expected = match &mut self.expect {
            Expect::Manifest {
                schema: s,
                generation,
            } => {
                check_generation(&self.reader.prefix, key, &schema, *generation)?;
                s.clone()
            }
            Expect::First(Some(s)) => s.clone(),
            Expect::First(first @ None) => {
                let mut meta = schema.metadata().clone();
                meta.remove(GENERATION_METADATA);
                let s = Arc::new(Schema::new_with_metadata(schema.fields().clone(), meta));
                *first = Some(s.clone());
                s
            }
        };
        check_fields(key, &expected, &schema)?;
        for b in batches {
            self.batches.push(with_schema(key, &expected, b)?);
            if let Some(entry) = self.partitions.iter_mut().find(|(p, _)| *p == part) {
                entry.1 += 1;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Table> {
        if !self.missing.is_empty() {
            return Err(Error::MissingBatches {
                table: self.reader.prefix,
                missing: self.missing,
            });
        }
        let schema = match self.expect {
            Expect::Manifest { schema, .. } => schema,
            Expect::First(Some(s)) => s,
            Expect::First(None) => Arc::new(Schema::empty()),
        };
        Ok(Table {
            schema,
            batches: self.batches,
            partitions: self.partitions,
            generation: self.generation,
        })
    }
}

/// Run `fetch` on an async connection, decoding each value on tokio's blocking threads
/// (at most `permits` at once, which also bounds the values fetched but not decoded),
/// so the async workers only move bytes.
#[cfg(feature = "tokio")]
pub(super) async fn fetch_decode_async<C: crate::exec::AsyncConnection + ?Sized>(
    con: &mut C,
    mut fetch: Fetch,
    permits: Arc<tokio::sync::Semaphore>,
) -> Result<Table> {
    let mut pending = Vec::new();
    while let Some((req, groups)) = fetch.next_request() {
        let key = req.key().map(str::to_owned);
        let replies = Replies::new(con.run_request(req).await?, key);
        for f in fetch.values(groups, replies)? {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| Error::InvalidArgument(format!("decode permits: {e}")))?;
            let columns = fetch.reader.options.columns.clone();
            let limits = fetch.reader.limits;
            let Fetched { part, key, bytes } = f;
            let k = key.clone();
            let task = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                decode_value(&k, bytes, columns.as_deref(), &limits)
            });
            pending.push((part, key, task));
        }
    }
    for (part, key, task) in pending {
        let decoded = task
            .await
            .map_err(|e| Error::panicked(format!("the decode of batch {key:?} ({e})")))??;
        fetch.accept(part, &key, decoded)?;
    }
    fetch.finish()
}
