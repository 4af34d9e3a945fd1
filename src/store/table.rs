//! [`TableStore`] (feature `arrow`): partitioned Arrow tables in the ArrowRedis layout.
//!
//! # Layout
//!
//! A table `t` of a store with namespace `ns` has the key prefix `ns:t` (`t` without a
//! namespace), and:
//!
//! * one key per batch, `{prefix}:{part=XXXXX}:batch=YYYYY` (partition and batch index
//!   in the partition, zero-padded to 5 digits, wider when larger, as ArrowRedis formats
//!   them), each holding a complete Arrow IPC stream of one record batch (schema,
//!   dictionaries, batch, end-of-stream) with IPC body compression (zstd, lz4 or none).
//!   The hash tag `{part=XXXXX}` keeps a partition in one Redis Cluster slot, so one
//!   `MGET` reads many batches of a partition. This is exactly what ArrowRedis's `split`
//!   writes, so ArrowRedis (`read --prefix ns:t --batches N`) and pyarrow
//!   (`pyarrow.ipc.open_stream(r.get(key))`) read what redstash writes, and redstash
//!   reads what ArrowRedis writes.
//! * one manifest key, `{prefix}:__manifest__`, written **last** by
//!   [`split`](TableStore::split): JSON `{"format": "redstash.table", "version": 1,
//!   "generation", "compression", "created_at_ms", "rows", "bytes", "partitions": [{"id",
//!   "batches", "rows", "bytes"}], "schema"}` where `schema` is the hex of an IPC stream
//!   holding only the schema. It lets readers know the batch counts without being told
//!   and without `SCAN`. ArrowRedis's discovery pattern `{prefix}:{part=*}:batch=*`
//!   does not match it.
//!
//! # Generations (re-splitting a table)
//!
//! Batch keys carry no generation, so that they stay readable by ArrowRedis at the
//! prefix the user chose. Instead every batch redstash writes has the custom schema
//! metadata `redstash.generation` (ignored by pyarrow/ArrowRedis, removed from what
//! [`read`](TableStore::read) returns), and the manifest records the generation. A
//! re-split writes generation `n + 1` over the same keys, then swaps the manifest, then
//! deletes the keys of generation `n` the new one did not overwrite. A reader checks
//! every batch against the manifest it read: a table rewritten under it is
//! [`Error::TableChanged`] (read again), never a silent mix of generations. The cost of
//! this choice: readers are not isolated from a concurrent re-split (they get an error,
//! not the old data); concurrent splits of one table are not supported.
//!
//! # Tables without a manifest (written by ArrowRedis)
//!
//! [`read`](TableStore::read) discovers the batches with
//! `SCAN MATCH {prefix}:{part=*}:batch=*`; the batch indices of each partition must run
//! from 0 without gaps (a gap is [`Error::MissingBatches`] naming the keys; missing
//! *trailing* batches cannot be detected without a manifest). Every batch must have the
//! first batch's schema ([`Error::SchemaMismatch`]).
//!
//! `SCAN`-based operations ([`list`](TableStore::list), [`delete`](TableStore::delete),
//! reading a table without manifest) walk one server; on a Redis Cluster they need a
//! per-primary scan, which this store does not do yet.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Fields, Schema, SchemaRef};
use redis::Value;
use serde::{Deserialize, Serialize};

use crate::codec::Limits;
use crate::codec::arrow::{IpcCompression, decode_schema, decode_stream, encode_stream};
use crate::error::{Error, Result};
use crate::exec::{Request, Step, replies_ok, reply_bytes, reply_int, reply_ok};
use crate::store::batch::glob_escape;
use crate::store::{join_key, sync_and_async};

/// Suffix of a table's manifest key: `{prefix}:__manifest__`.
pub const MANIFEST_SUFFIX: &str = "__manifest__";
/// Schema metadata key holding the generation of a batch redstash wrote.
pub const GENERATION_METADATA: &str = "redstash.generation";
/// The manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
const MANIFEST_FORMAT: &str = "redstash.table";

/// How [`TableStore::split`] assigns batches to partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioning {
    /// Batch `i` of the input goes to partition `i % n` (`n >= 1`).
    RoundRobin(u32),
    /// By the value of an integer column (non-negative, no nulls). A batch holding
    /// several values is cut into zero-copy slices, one per run of equal values, so
    /// input sorted by the column (like ArrowRedis's data) gives one slice per batch.
    Column(String),
}

impl Default for Partitioning {
    fn default() -> Self {
        Partitioning::RoundRobin(1)
    }
}

/// What [`TableStore::read`] returns: which partitions and which columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Partitions to read, in this order; `None`: all, in ascending order.
    pub partitions: Option<Vec<u32>>,
    /// Columns to keep, in this order; `None`: all.
    pub columns: Option<Vec<String>>,
}

impl ReadOptions {
    /// Every partition and column.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only these partitions.
    pub fn partitions(mut self, parts: impl IntoIterator<Item = u32>) -> Self {
        self.partitions = Some(parts.into_iter().collect());
        self
    }

    /// Only these columns.
    pub fn columns<S: Into<String>>(mut self, cols: impl IntoIterator<Item = S>) -> Self {
        self.columns = Some(cols.into_iter().map(Into::into).collect());
        self
    }
}

/// One partition of a table's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition id (the `XXXXX` of `{part=XXXXX}`).
    pub id: u32,
    /// Number of batches (`batch=00000` to `batch=batches-1`).
    pub batches: u32,
    /// Rows in the partition.
    pub rows: u64,
    /// Bytes of its values in Redis.
    pub bytes: u64,
}

/// A table's manifest: what [`TableStore::split`] wrote and [`TableStore::info`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// The table's key prefix.
    pub prefix: String,
    /// The table's schema.
    pub schema: SchemaRef,
    /// Partitions, by ascending id.
    pub partitions: Vec<PartitionInfo>,
    /// Total rows.
    pub rows: u64,
    /// Total bytes of batch values.
    pub bytes: u64,
    /// Body compression of the batches.
    pub compression: IpcCompression,
    /// Generation: 1 for the first split, +1 for each re-split.
    pub generation: u64,
    /// When the split finished, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Manifest format version.
    pub format_version: u32,
}

impl TableInfo {
    /// Total number of batches.
    pub fn batches(&self) -> u64 {
        self.partitions.iter().map(|p| p.batches as u64).sum()
    }
}

/// Batches read by [`TableStore::read`], in partition then batch order.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The (projected) schema of every batch.
    pub schema: SchemaRef,
    /// The batches.
    pub batches: Vec<RecordBatch>,
    /// `(partition id, number of batches)`, in the order of `batches`.
    pub partitions: Vec<(u32, usize)>,
    /// The manifest's generation; `None` for a table without manifest.
    pub generation: Option<u64>,
}

impl Table {
    /// Total rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Input of [`TableStore::split`]: any `Send` iterator of record batches.
pub trait BatchSource: Iterator<Item = RecordBatch> + Send {}
impl<T: Iterator<Item = RecordBatch> + Send> BatchSource for T {}

#[derive(Serialize, Deserialize)]
struct ManifestJson {
    format: String,
    version: u32,
    generation: u64,
    compression: String,
    created_at_ms: u64,
    rows: u64,
    bytes: u64,
    partitions: Vec<PartitionInfo>,
    schema: String,
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let v = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks(2)
        .map(|p| Some(v(p[0])? << 4 | v(p[1])?))
        .collect()
}

/// Partitioned Arrow tables in Redis, in the ArrowRedis key layout (see the
/// [module docs](self) for the layout, the manifest and re-splits).
///
/// * [`split`](Self::split) writes record batches, one IPC stream per key, pipelined in
///   requests of about [`pipeline_bytes`](Self::pipeline_bytes), then the manifest.
/// * [`read`](Self::read) reads all or selected partitions (pipelined `MGET`s, one
///   partition per `MGET`), optionally only some columns; tables written by ArrowRedis
///   (no manifest) are discovered with `SCAN`.
/// * [`info`](Self::info), [`list`](Self::list), [`delete`](Self::delete).
///
/// ```no_run
/// use redstash::TableStore;
/// use redstash::arrowgen::GenSpec;
/// use redstash::store::table::ReadOptions;
/// # fn main() -> redstash::Result<()> {
/// let mut con = redis::Client::open("redis://127.0.0.1/")?.get_connection()?;
/// let store = TableStore::new("").partition_by("partition");
/// let batches: Vec<_> = GenSpec::default().iter().collect::<redstash::Result<_>>()?;
/// let info = store.split(&mut con, "demo:v1", batches.into_iter())?;
/// let t = store.read(&mut con, "demo:v1", &ReadOptions::all().partitions([1]).columns(["id64"]))?;
/// assert_eq!(t.unwrap().num_rows() as u64, info.partitions[1].rows);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TableStore {
    namespace: String,
    compression: IpcCompression,
    partitioning: Partitioning,
    pipeline_bytes: usize,
    mget_keys: usize,
    limits: Limits,
}

impl TableStore {
    /// A store of tables under `namespace` (`""` for none: the table name is the whole
    /// ArrowRedis prefix); zstd body compression, one partition, 16 MiB pipelines.
    pub fn new(namespace: impl Into<String>) -> Self {
        TableStore {
            namespace: namespace.into(),
            compression: IpcCompression::Zstd,
            partitioning: Partitioning::default(),
            pipeline_bytes: 16 << 20,
            mget_keys: 64,
            limits: Limits::default(),
        }
    }

    /// Body compression of written batches (reading accepts any).
    pub fn compression(mut self, c: IpcCompression) -> Self {
        self.compression = c;
        self
    }

    /// Partition written batches by an integer column (see [`Partitioning::Column`]).
    pub fn partition_by(mut self, column: impl Into<String>) -> Self {
        self.partitioning = Partitioning::Column(column.into());
        self
    }

    /// Spread written batches over `n` partitions, round robin.
    pub fn round_robin(mut self, n: u32) -> Self {
        self.partitioning = Partitioning::RoundRobin(n);
        self
    }

    /// How written batches are partitioned.
    pub fn partitioning(mut self, p: Partitioning) -> Self {
        self.partitioning = p;
        self
    }

    /// Approximate bytes of batch values sent (or expected back) per request (default
    /// 16 MiB; at least one batch per request).
    pub fn pipeline_bytes(mut self, n: usize) -> Self {
        self.pipeline_bytes = n.max(1);
        self
    }

    /// Keys per `MGET` when reading (default 64).
    pub fn mget_keys(mut self, n: usize) -> Self {
        self.mget_keys = n.max(1);
        self
    }

    /// Decoding limits (size caps against hostile values).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The key prefix of a table (`namespace:table`).
    pub fn prefix(&self, table: &str) -> String {
        join_key(&self.namespace, table)
    }

    /// The key of batch `batch` of partition `part` of a table.
    pub fn batch_key(&self, table: &str, part: u32, batch: u32) -> String {
        batch_key(&self.prefix(table), part, batch)
    }

    /// The key of a table's manifest.
    pub fn manifest_key(&self, table: &str) -> String {
        format!("{}:{MANIFEST_SUFFIX}", self.prefix(table))
    }

    /// Plan of [`info`](Self::info).
    pub fn plan_info(&self, table: &str) -> Result<Step<'static, Option<TableInfo>>> {
        let prefix = self.prefix(table);
        let key = self.manifest_key(table);
        let limits = self.limits;
        let mut c = redis::cmd("GET");
        c.arg(&key);
        Ok(Step::then(
            Request::single(c, Some(&key)),
            move |mut r| match reply_bytes(r.pop().unwrap_or(Value::Nil), &key)? {
                None => Ok(None),
                Some(b) => parse_manifest(&prefix, &key, &b, &limits).map(Some),
            },
        ))
    }

    /// Plan of [`split`](Self::split).
    pub fn plan_split<'a, I: BatchSource + 'a>(
        &self,
        table: &str,
        batches: I,
    ) -> Result<Step<'a, TableInfo>> {
        let mkey = self.manifest_key(table);
        let limits = self.limits;
        let splitter = self.splitter(table, batches)?;
        let mut c = redis::cmd("GET");
        c.arg(&mkey);
        Ok(Step::send(Request::single(c, Some(&mkey)), move |mut r| {
            let mut s = splitter;
            s.adopt_old(reply_bytes(r.pop().unwrap_or(Value::Nil), &mkey)?, &limits);
            s.step()
        }))
    }

    fn splitter<I: BatchSource>(&self, table: &str, batches: I) -> Result<Splitter<I>> {
        if let Partitioning::RoundRobin(0) = self.partitioning {
            return Err(Error::InvalidArgument(
                "round robin over 0 partitions".into(),
            ));
        }
        Ok(Splitter {
            iter: batches,
            prefix: self.prefix(table),
            manifest_key: self.manifest_key(table),
            compression: self.compression,
            partitioning: self.partitioning.clone(),
            budget: self.pipeline_bytes,
            generation: 1,
            schema: None,
            tagged: None,
            parts: BTreeMap::new(),
            seen: 0,
            pending: VecDeque::new(),
            old: None,
        })
    }

    /// Plan of [`read`](Self::read).
    pub fn plan_read(
        &self,
        table: &str,
        options: &ReadOptions,
    ) -> Result<Step<'static, Option<Table>>> {
        let prefix = self.prefix(table);
        let mkey = self.manifest_key(table);
        let reader = Reader {
            prefix: prefix.clone(),
            options: options.clone(),
            limits: self.limits,
            budget: self.pipeline_bytes,
            mget_keys: self.mget_keys,
        };
        let mut c = redis::cmd("GET");
        c.arg(&mkey);
        Ok(Step::send(
            Request::single(c, Some(&mkey)),
            move |mut r| match reply_bytes(r.pop().unwrap_or(Value::Nil), &mkey)? {
                Some(b) => {
                    let info = parse_manifest(&prefix, &mkey, &b, &reader.limits)?;
                    reader.with_manifest(info).map(|s| s.map(Some))
                }
                None => {
                    let pattern = batch_pattern(&prefix);
                    Ok(scan_keys(pattern, 0, Vec::new())
                        .and_then(move |keys| reader.discovered(keys))?)
                }
            },
        ))
    }

    /// Plan of [`delete`](Self::delete).
    pub fn plan_delete(&self, table: &str) -> Result<Step<'static, u64>> {
        let prefix = self.prefix(table);
        let mkey = self.manifest_key(table);
        let mut c = redis::cmd("DEL");
        c.arg(&mkey);
        Ok(Step::send(Request::single(c, Some(&mkey)), move |mut r| {
            let manifest = reply_int(r.pop().unwrap_or(Value::Nil), &mkey)?.max(0) as u64;
            scan_keys(batch_pattern(&prefix), 0, Vec::new()).and_then(move |keys| {
                let mut by_part: BTreeMap<u32, Vec<String>> = BTreeMap::new();
                for k in keys {
                    if let Some((p, _)) = parse_batch_key(&prefix, &k) {
                        by_part.entry(p).or_default().push(k);
                    }
                }
                if by_part.is_empty() {
                    return Ok(Step::Done(manifest));
                }
                let mut req = Request::new(Some(&prefix));
                for keys in by_part.values() {
                    for chunk in keys.chunks(512) {
                        let mut c = redis::cmd("DEL");
                        c.arg(chunk);
                        req.push(c);
                    }
                }
                Ok(Step::then(req, move |replies| {
                    let mut n = manifest;
                    for v in replies {
                        n += reply_int(v, &prefix)?.max(0) as u64;
                    }
                    Ok(n)
                }))
            })
        }))
    }

    /// Plan of [`list`](Self::list).
    pub fn plan_list(&self) -> Result<Step<'static, Vec<String>>> {
        let (pattern, strip) = if self.namespace.is_empty() {
            (format!("*:{MANIFEST_SUFFIX}"), 0)
        } else {
            (
                format!("{}:*:{MANIFEST_SUFFIX}", glob_escape(&self.namespace)),
                self.namespace.len() + 1,
            )
        };
        let suffix = MANIFEST_SUFFIX.len() + 1;
        Ok(scan_keys(pattern, 0, Vec::new()).map(move |keys| {
            let mut names: Vec<String> = keys
                .into_iter()
                .filter_map(|k| {
                    k.get(strip..k.len().checked_sub(suffix)?)
                        .map(str::to_owned)
                })
                .filter(|n| !n.is_empty())
                .collect();
            names.sort();
            names.dedup();
            names
        }))
    }

    /// [`read`](Self::read) over several connections at once: the selected partitions
    /// are shared out between the connections (balanced by their bytes in the
    /// manifest), each connection reads and decodes its partitions on its own thread
    /// (one request of about [`pipeline_bytes`](Self::pipeline_bytes) in flight per
    /// connection), and the batches come back in the same order as [`read`](Self::read)
    /// gives them. A table without manifest (written by ArrowRedis) is read by
    /// [`read`](Self::read) on the first connection.
    #[cfg(feature = "sync")]
    pub fn read_parallel<Con: crate::exec::SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        table: &str,
        options: &ReadOptions,
    ) -> Result<Option<Table>> {
        let Some(first) = cons.first_mut() else {
            return Err(Error::InvalidArgument(
                "read_parallel needs at least one connection".into(),
            ));
        };
        let Some(info) = self.info(first, table)? else {
            return self.read(first, table, options);
        };
        let available: BTreeMap<u32, u32> =
            info.partitions.iter().map(|p| (p.id, p.batches)).collect();
        let reader = |partitions: Vec<u32>| Reader {
            prefix: info.prefix.clone(),
            options: ReadOptions {
                partitions: Some(partitions),
                columns: options.columns.clone(),
            },
            limits: self.limits,
            budget: self.pipeline_bytes,
            mget_keys: self.mget_keys,
        };
        // Validates the partitions asked for.
        let selected: Vec<u32> =
            reader(Vec::new()).select_or_all(&available, options.partitions.as_deref())?;
        let bytes: BTreeMap<u32, u64> = info.partitions.iter().map(|p| (p.id, p.bytes)).collect();
        // Largest partitions first, each to the least loaded connection.
        let mut by_size = selected.clone();
        by_size.sort_by_key(|p| std::cmp::Reverse(bytes.get(p).copied().unwrap_or(0)));
        let mut buckets: Vec<(u64, Vec<u32>)> = vec![(0, Vec::new()); cons.len()];
        for p in by_size {
            if let Some(b) = buckets.iter_mut().min_by_key(|b| b.0) {
                b.0 += bytes.get(&p).copied().unwrap_or(0).max(1);
                b.1.push(p);
            }
        }
        let results: Vec<Result<Table>> = std::thread::scope(|scope| {
            let handles: Vec<_> = cons
                .iter_mut()
                .zip(buckets)
                .filter(|(_, (_, parts))| !parts.is_empty())
                .map(|(con, (_, parts))| {
                    let r = reader(parts);
                    let info = info.clone();
                    scope.spawn(move || crate::exec::run(con, r.with_manifest(info)?))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::InvalidArgument("a read thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut schema = None;
        let mut per_part: BTreeMap<u32, Vec<RecordBatch>> = BTreeMap::new();
        for t in results {
            let t = t?;
            let mut it = t.batches.into_iter();
            for (p, n) in t.partitions {
                per_part.insert(p, it.by_ref().take(n).collect());
            }
            schema = Some(t.schema);
        }
        let mut batches = Vec::new();
        let mut partitions = Vec::with_capacity(selected.len());
        for p in selected {
            let b = per_part.remove(&p).unwrap_or_default();
            partitions.push((p, b.len()));
            batches.extend(b);
        }
        Ok(Some(Table {
            schema: schema.unwrap_or_else(|| info.schema.clone()),
            batches,
            partitions,
            generation: Some(info.generation),
        }))
    }

    /// [`split`](Self::split) over several connections at once: batches are taken
    /// from `batches` in order and given their keys under a lock (so a partition's
    /// batch numbers follow the input order, as with [`split`](Self::split)), then each
    /// connection encodes its share on its own thread and sends it in pipelines of about
    /// [`pipeline_bytes`](Self::pipeline_bytes) (one in flight per connection). The
    /// manifest is written last, on the first connection, once every batch is
    /// acknowledged. On an error nothing more is sent and the manifest is not written.
    #[cfg(feature = "sync")]
    pub fn split_parallel<I: BatchSource, Con: crate::exec::SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        table: &str,
        batches: I,
    ) -> Result<TableInfo> {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicBool, Ordering};

        let mut splitter = self.splitter(table, batches)?;
        let Some(first) = cons.first_mut() else {
            return Err(Error::InvalidArgument(
                "split_parallel needs at least one connection".into(),
            ));
        };
        let mkey = self.manifest_key(table);
        let mut c = redis::cmd("GET");
        c.arg(&mkey);
        let key = mkey.clone();
        let old = crate::exec::run(
            first,
            Step::then(Request::single(c, Some(&mkey)), move |mut r| {
                reply_bytes(r.pop().unwrap_or(Value::Nil), &key)
            }),
        )?;
        splitter.adopt_old(old, &self.limits);
        let compression = self.compression;
        let budget = self.pipeline_bytes;
        let shared = Mutex::new(splitter);
        let failed = AtomicBool::new(false);
        let poisoned = || Error::InvalidArgument("a split thread panicked".into());
        let work = |con: &mut Con| -> Result<()> {
            while !failed.load(Ordering::Relaxed) {
                let mut chunk = Vec::new();
                {
                    let mut s = shared.lock().map_err(|_| poisoned())?;
                    let mut estimate = 0usize;
                    while estimate < budget && chunk.len() < 4096 {
                        match s.assign()? {
                            Some(a) => {
                                estimate += a.batch.get_array_memory_size();
                                chunk.push(a);
                            }
                            None => break,
                        }
                    }
                }
                if chunk.is_empty() {
                    return Ok(());
                }
                let mut req = Request::new(Some(&mkey));
                let mut sizes = Vec::with_capacity(chunk.len());
                for a in &chunk {
                    let value = a.encode(compression)?;
                    sizes.push((a.part, value.len()));
                    let mut c = redis::cmd("SET");
                    c.arg(&a.key).arg(value);
                    req.push(c);
                }
                let key = mkey.clone();
                crate::exec::run(
                    con,
                    Step::then(req, move |replies| replies_ok(replies, &key)),
                )?;
                let mut s = shared.lock().map_err(|_| poisoned())?;
                for (part, n) in sizes {
                    s.add_bytes(part, n);
                }
            }
            Ok(())
        };
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = cons
                .iter_mut()
                .map(|con| {
                    let work = &work;
                    let failed = &failed;
                    scope.spawn(move || {
                        let r = work(con);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(poisoned())))
                .collect()
        });
        for r in results {
            r?;
        }
        let splitter = shared.into_inner().map_err(|_| poisoned())?;
        let first = cons.first_mut().ok_or_else(poisoned)?;
        crate::exec::run(first, splitter.finish()?)
    }

    sync_and_async! {
        /// Write `batches` as table `table`: one Arrow IPC stream per batch at
        /// `{prefix}:{part=XXXXX}:batch=YYYYY` (pipelined `SET`s), then the manifest.
        /// Re-splitting a table replaces it (new generation, see the module docs). All
        /// batches must have the same fields ([`Error::SchemaMismatch`]); an empty input
        /// is [`Error::InvalidArgument`].
        fn split / split_async<I: BatchSource>(table: &str, batches: I) -> TableInfo = plan_split;
        /// Read a table (selected partitions and columns): `None` if it has neither a
        /// manifest nor batch keys. Missing batches are [`Error::MissingBatches`], a
        /// value that is not an IPC stream [`Error::BadBatch`], a batch of another
        /// schema [`Error::SchemaMismatch`], a table rewritten meanwhile
        /// [`Error::TableChanged`]; a partition the table lacks or an unknown column is
        /// [`Error::InvalidArgument`].
        fn read / read_async(table: &str, options: &ReadOptions) -> Option<Table> = plan_read;
        /// A table's manifest; `None` when it has none (not a table, or written by
        /// ArrowRedis). A manifest that cannot be parsed is [`Error::Corrupt`].
        fn info / info_async(table: &str) -> Option<TableInfo> = plan_info;
        /// Delete a table: its manifest, then every `{prefix}:{part=*}:batch=*` key found
        /// by `SCAN`. Returns the number of keys deleted.
        fn delete / delete_async(table: &str) -> u64 = plan_delete;
        /// The names of the tables of the store's namespace that have a manifest
        /// (`SCAN`, never `KEYS`), sorted.
        fn list / list_async() -> Vec<String> = plan_list;
    }
}

fn batch_key(prefix: &str, part: u32, batch: u32) -> String {
    format!("{prefix}:{{part={part:05}}}:batch={batch:05}")
}

fn batch_pattern(prefix: &str) -> String {
    format!("{}:{{part=*}}:batch=*", glob_escape(prefix))
}

/// `(partition, batch)` of a batch key of the table at `prefix`.
fn parse_batch_key(prefix: &str, key: &str) -> Option<(u32, u32)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{part=")?;
    let (p, rest) = rest.split_once("}:batch=")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(p) || !digits(rest) {
        return None;
    }
    Some((p.parse().ok()?, rest.parse().ok()?))
}

fn manifest_error(key: &str, reason: impl std::fmt::Display) -> Error {
    Error::corrupt("table manifest", format!("key {key:?}: {reason}"))
}

fn parse_manifest(prefix: &str, key: &str, bytes: &[u8], limits: &Limits) -> Result<TableInfo> {
    let m: ManifestJson = serde_json::from_slice(bytes).map_err(|e| manifest_error(key, e))?;
    if m.format != MANIFEST_FORMAT {
        return Err(manifest_error(key, format!("format {:?}", m.format)));
    }
    if m.version != MANIFEST_VERSION {
        return Err(manifest_error(
            key,
            format!(
                "version {} (this build reads {MANIFEST_VERSION})",
                m.version
            ),
        ));
    }
    let compression = IpcCompression::from_name(&m.compression)
        .ok_or_else(|| manifest_error(key, format!("compression {:?}", m.compression)))?;
    let schema_bytes = unhex(&m.schema).ok_or_else(|| manifest_error(key, "schema is not hex"))?;
    let schema = decode_schema(&schema_bytes, limits)
        .map_err(|e| manifest_error(key, format!("schema: {e}")))?;
    let mut last = None;
    for p in &m.partitions {
        if last.is_some_and(|l| l >= p.id) {
            return Err(manifest_error(key, "partitions not in ascending order"));
        }
        last = Some(p.id);
    }
    Ok(TableInfo {
        prefix: prefix.to_owned(),
        schema,
        partitions: m.partitions,
        rows: m.rows,
        bytes: m.bytes,
        compression,
        generation: m.generation,
        created_at_ms: m.created_at_ms,
        format_version: m.version,
    })
}

fn describe(fields: &Fields) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The partition values of a batch's column (integer, non-negative, no nulls).
fn partition_values(col: &dyn Array, name: &str) -> Result<Vec<u32>> {
    if col.null_count() > 0 {
        return Err(Error::InvalidArgument(format!(
            "partition column {name:?} has nulls"
        )));
    }
    macro_rules! conv {
        ($t:ty) => {
            col.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| {
                    u32::try_from(v).map_err(|_| {
                        Error::InvalidArgument(format!(
                            "partition column {name:?}: value {v} is not a partition id (0..2^32)"
                        ))
                    })
                })
                .collect()
        };
    }
    match col.data_type() {
        DataType::Int8 => conv!(Int8Type),
        DataType::Int16 => conv!(Int16Type),
        DataType::Int32 => conv!(Int32Type),
        DataType::Int64 => conv!(Int64Type),
        DataType::UInt8 => conv!(UInt8Type),
        DataType::UInt16 => conv!(UInt16Type),
        DataType::UInt32 => conv!(UInt32Type),
        DataType::UInt64 => conv!(UInt64Type),
        other => Err(Error::InvalidArgument(format!(
            "partition column {name:?} is {other}, not an integer"
        ))),
    }
}

/// The state of a split between requests.
struct Splitter<I> {
    iter: I,
    prefix: String,
    manifest_key: String,
    compression: IpcCompression,
    partitioning: Partitioning,
    budget: usize,
    generation: u64,
    /// The table's schema (the first batch's).
    schema: Option<SchemaRef>,
    /// The same with the generation in its metadata (what is written).
    tagged: Option<SchemaRef>,
    parts: BTreeMap<u32, PartitionInfo>,
    seen: u64,
    pending: VecDeque<(u32, RecordBatch)>,
    old: Option<TableInfo>,
}

impl<'a, I: BatchSource + 'a> Splitter<I> {
    /// The next (partition, batch) to write.
    fn next_piece(&mut self) -> Result<Option<(u32, RecordBatch)>> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Ok(Some(p));
            }
            let Some(batch) = self.iter.next() else {
                return Ok(None);
            };
            match &self.schema {
                None => {
                    let s = batch.schema();
                    let mut meta = s.metadata().clone();
                    meta.remove(GENERATION_METADATA);
                    let plain = Arc::new(Schema::new_with_metadata(s.fields().clone(), meta));
                    let mut tagged_meta = plain.metadata().clone();
                    tagged_meta.insert(GENERATION_METADATA.to_owned(), self.generation.to_string());
                    self.tagged = Some(Arc::new(Schema::new_with_metadata(
                        s.fields().clone(),
                        tagged_meta,
                    )));
                    self.schema = Some(plain);
                }
                Some(s) if s.fields() != batch.schema().fields() => {
                    return Err(Error::SchemaMismatch {
                        key: self.prefix.clone(),
                        expected: describe(s.fields()),
                        found: describe(batch.schema().fields()),
                    });
                }
                Some(_) => {}
            }
            let index = self.seen;
            self.seen += 1;
            match &self.partitioning {
                Partitioning::RoundRobin(n) => {
                    let part = (index % (*n).max(1) as u64) as u32;
                    self.pending.push_back((part, batch));
                }
                Partitioning::Column(name) => {
                    let col = batch.column_by_name(name).ok_or_else(|| {
                        Error::InvalidArgument(format!("no partition column {name:?}"))
                    })?;
                    let values = partition_values(col.as_ref(), name)?;
                    let mut start = 0;
                    while start < values.len() {
                        let part = values[start];
                        let mut end = start + 1;
                        while end < values.len() && values[end] == part {
                            end += 1;
                        }
                        self.pending
                            .push_back((part, batch.slice(start, end - start)));
                        start = end;
                    }
                }
            }
        }
    }

    /// The next batch to write, under its key and with the tagged schema; counted in
    /// its partition (but for its bytes, see [`add_bytes`](Self::add_bytes)).
    fn assign(&mut self) -> Result<Option<Assigned>> {
        let Some((part, batch)) = self.next_piece()? else {
            return Ok(None);
        };
        let schema = self
            .tagged
            .clone()
            .ok_or_else(|| Error::InvalidArgument("internal: a batch before the schema".into()))?;
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|e| Error::InvalidArgument(format!("batch: {e}")))?;
        let info = self.parts.entry(part).or_insert(PartitionInfo {
            id: part,
            batches: 0,
            rows: 0,
            bytes: 0,
        });
        let key = batch_key(&self.prefix, part, info.batches);
        info.batches += 1;
        info.rows += batch.num_rows() as u64;
        Ok(Some(Assigned {
            key,
            part,
            batch,
            schema,
        }))
    }

    fn add_bytes(&mut self, part: u32, n: usize) {
        if let Some(p) = self.parts.get_mut(&part) {
            p.bytes += n as u64;
        }
    }

    /// Take the previous manifest (the reply to its `GET`) into account.
    fn adopt_old(&mut self, value: Option<bytes::Bytes>, limits: &Limits) {
        // A corrupt manifest is replaced (a re-split is how it is repaired).
        if let Some(b) = value
            && let Ok(old) = parse_manifest(&self.prefix, &self.manifest_key, &b, limits)
        {
            self.generation = old.generation.saturating_add(1);
            self.old = Some(old);
        }
    }

    fn step(mut self) -> Result<Step<'a, TableInfo>> {
        let mut req = Request::new(Some(&self.prefix));
        let mut bytes = 0usize;
        while bytes < self.budget && req.len() < 4096 {
            let Some(a) = self.assign()? else {
                break;
            };
            let value = a.encode(self.compression)?;
            self.add_bytes(a.part, value.len());
            bytes += value.len();
            let mut c = redis::cmd("SET");
            c.arg(&a.key).arg(value);
            req.push(c);
        }
        if req.is_empty() {
            return self.finish();
        }
        Ok(Step::send(req, move |replies| {
            replies_ok(replies, &self.prefix)?;
            self.step()
        }))
    }

    /// Write the manifest, then delete what the previous generation had beyond the new.
    fn finish(self) -> Result<Step<'a, TableInfo>> {
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
            schema: schema.clone(),
            partitions,
            compression: self.compression,
            generation: self.generation,
            created_at_ms,
            format_version: MANIFEST_VERSION,
        };
        let json = ManifestJson {
            format: MANIFEST_FORMAT.to_owned(),
            version: MANIFEST_VERSION,
            generation: info.generation,
            compression: info.compression.name().to_owned(),
            created_at_ms,
            rows: info.rows,
            bytes: info.bytes,
            partitions: info.partitions.clone(),
            schema: hex(&crate::codec::arrow::encode_schema(&schema)?),
        };
        let mut req = Request::new(Some(&self.manifest_key));
        let mut c = redis::cmd("SET");
        c.arg(&self.manifest_key).arg(serde_json::to_vec(&json)?);
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
        let key = self.manifest_key;
        Ok(Step::then(req, move |replies| {
            replies_ok(replies, &key)?;
            Ok(info)
        }))
    }
}

/// A batch with its key, ready to encode.
struct Assigned {
    key: String,
    part: u32,
    batch: RecordBatch,
    schema: SchemaRef,
}

impl Assigned {
    fn encode(&self, compression: IpcCompression) -> Result<Vec<u8>> {
        encode_stream(&self.schema, std::slice::from_ref(&self.batch), compression)
    }
}

/// What a read checks each batch against.
#[derive(Clone)]
enum Expect {
    /// The manifest's (projected) schema and generation.
    Manifest { schema: SchemaRef, generation: u64 },
    /// The first batch's schema (set once it is read).
    First(Option<SchemaRef>),
}

/// The state of a read.
struct Reader {
    prefix: String,
    options: ReadOptions,
    limits: Limits,
    budget: usize,
    mget_keys: usize,
}

impl Reader {
    /// The partitions asked for (all by default), checked against those available.
    fn select_or_all(
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

    fn with_manifest(self, info: TableInfo) -> Result<Step<'static, Table>> {
        let available: BTreeMap<u32, u32> =
            info.partitions.iter().map(|p| (p.id, p.batches)).collect();
        let parts = self.select(&available)?;
        let schema = match &self.options.columns {
            None => info.schema.clone(),
            Some(cols) => {
                let mut idx = Vec::with_capacity(cols.len());
                for c in cols {
                    idx.push(info.schema.index_of(c).map_err(|_| {
                        Error::InvalidArgument(format!(
                            "table {:?} has no column {c:?}",
                            self.prefix
                        ))
                    })?);
                }
                Arc::new(
                    info.schema
                        .project(&idx)
                        .map_err(|e| Error::InvalidArgument(e.to_string()))?,
                )
            }
        };
        let batches = info.batches().max(1);
        let avg = (info.bytes / batches).max(1) as usize;
        let per_request = (self.budget / avg).max(1);
        let generation = info.generation;
        let state = Fetch {
            reader: self,
            keys: parts
                .iter()
                .flat_map(|&(p, n)| (0..n).map(move |b| (p, b)))
                .collect(),
            per_request,
            expect: Expect::Manifest { schema, generation },
            batches: Vec::new(),
            missing: Vec::new(),
            partitions: parts.iter().map(|&(p, _)| (p, 0)).collect(),
            generation: Some(generation),
        };
        state.step()
    }

    /// A table without manifest: the batch keys found by `SCAN`.
    fn discovered(self, keys: Vec<String>) -> Result<Step<'static, Option<Table>>> {
        let mut found: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for k in &keys {
            if let Some((p, b)) = parse_batch_key(&self.prefix, k) {
                found.entry(p).or_default().push(b);
            }
        }
        if found.is_empty() {
            return Ok(Step::Done(None));
        }
        let mut available = BTreeMap::new();
        let mut missing = Vec::new();
        for (p, mut bs) in found {
            bs.sort_unstable();
            bs.dedup();
            let n = bs.last().map_or(0, |l| l + 1);
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
                table: self.prefix,
                missing,
            });
        }
        let per_request = 256;
        let state = Fetch {
            keys: parts
                .iter()
                .flat_map(|&(p, n)| (0..n).map(move |b| (p, b)))
                .collect(),
            reader: self,
            per_request,
            expect: Expect::First(None),
            batches: Vec::new(),
            missing: Vec::new(),
            partitions: parts.iter().map(|&(p, _)| (p, 0)).collect(),
            generation: None,
        };
        Ok(state.step()?.map(Some))
    }
}

/// Fetching and decoding the selected batches, one request at a time.
struct Fetch {
    reader: Reader,
    keys: VecDeque<(u32, u32)>,
    per_request: usize,
    expect: Expect,
    batches: Vec<RecordBatch>,
    missing: Vec<String>,
    partitions: Vec<(u32, usize)>,
    generation: Option<u64>,
}

impl Fetch {
    fn step(mut self) -> Result<Step<'static, Table>> {
        if self.keys.is_empty() {
            return self.finish().map(Step::Done);
        }
        let n = self.per_request.min(self.keys.len());
        let batch: Vec<(u32, u32)> = self.keys.drain(..n).collect();
        let mut req = Request::new(Some(&self.reader.prefix));
        let mut groups: Vec<Vec<(u32, u32)>> = Vec::new();
        for &(p, b) in &batch {
            match groups.last_mut() {
                Some(g) if g[0].0 == p && g.len() < self.reader.mget_keys => g.push((p, b)),
                _ => groups.push(vec![(p, b)]),
            }
        }
        for g in &groups {
            let mut c = redis::cmd("MGET");
            for &(p, b) in g {
                c.arg(batch_key(&self.reader.prefix, p, b));
            }
            req.push(c);
        }
        Ok(Step::send(req, move |replies| {
            for (g, reply) in groups.into_iter().zip(replies) {
                let values = match reply_ok(reply, &self.reader.prefix)? {
                    Value::Array(v) if v.len() == g.len() => v,
                    other => {
                        return Err(Error::unexpected(
                            format!("MGET of {} keys replied {other:?}", g.len()),
                            Some(self.reader.prefix.clone()),
                        ));
                    }
                };
                for ((p, b), v) in g.into_iter().zip(values) {
                    let key = batch_key(&self.reader.prefix, p, b);
                    match reply_bytes(v, &key)? {
                        None => self.missing.push(key),
                        Some(bytes) => self.decode(p, &key, &bytes)?,
                    }
                }
            }
            self.step()
        }))
    }

    fn decode(&mut self, part: u32, key: &str, bytes: &[u8]) -> Result<()> {
        let (schema, batches) = decode_stream(
            bytes,
            self.reader.options.columns.as_deref(),
            &self.reader.limits,
        )
        .map_err(|e| match e {
            Error::InvalidArgument(_) => e,
            other => Error::BadBatch {
                key: key.to_owned(),
                source: Box::new(other),
            },
        })?;
        let expected = match &mut self.expect {
            Expect::Manifest {
                schema: s,
                generation,
            } => {
                let found = schema
                    .metadata()
                    .get(GENERATION_METADATA)
                    .and_then(|g| g.parse::<u64>().ok());
                if found != Some(*generation) {
                    return Err(Error::TableChanged {
                        table: self.reader.prefix.clone(),
                        key: key.to_owned(),
                        expected: *generation,
                        found,
                    });
                }
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
        if expected.fields() != schema.fields() {
            return Err(Error::SchemaMismatch {
                key: key.to_owned(),
                expected: describe(expected.fields()),
                found: describe(schema.fields()),
            });
        }
        for b in batches {
            let b = RecordBatch::try_new(expected.clone(), b.columns().to_vec()).map_err(|e| {
                Error::BadBatch {
                    key: key.to_owned(),
                    source: Box::new(Error::corrupt("arrow ipc", e.to_string())),
                }
            })?;
            self.batches.push(b);
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

/// `SCAN` with `MATCH pattern` until the cursor is back to 0; keys in discovery order.
fn scan_keys(pattern: String, cursor: u64, mut found: Vec<String>) -> Step<'static, Vec<String>> {
    let mut c = redis::cmd("SCAN");
    c.arg(cursor)
        .arg("MATCH")
        .arg(&pattern)
        .arg("COUNT")
        .arg(1000);
    Step::send(Request::single(c, None), move |mut r| {
        let (next, keys) = match reply_ok(r.pop().unwrap_or(Value::Nil), &pattern)? {
            Value::Array(v) if v.len() == 2 => {
                let mut it = v.into_iter();
                let cur = match it.next() {
                    Some(Value::BulkString(b)) => std::str::from_utf8(&b)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok()),
                    Some(Value::Int(i)) => u64::try_from(i).ok(),
                    _ => None,
                };
                match (cur, it.next()) {
                    (Some(c), Some(Value::Array(k))) => (c, k),
                    (c, k) => {
                        return Err(Error::unexpected(
                            format!("SCAN replied cursor {c:?}, keys {k:?}"),
                            None,
                        ));
                    }
                }
            }
            other => return Err(Error::unexpected(format!("SCAN replied {other:?}"), None)),
        };
        for k in keys {
            if let Value::BulkString(b) = k
                && let Ok(s) = String::from_utf8(b)
            {
                found.push(s);
            }
        }
        if next == 0 {
            Ok(Step::Done(found))
        } else {
            Ok(scan_keys(pattern, next, found))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_hex() {
        assert_eq!(
            batch_key("demo:v1", 3, 12),
            "demo:v1:{part=00003}:batch=00012"
        );
        assert_eq!(batch_key("p", 123456, 0), "p:{part=123456}:batch=00000");
        assert_eq!(
            parse_batch_key("demo:v1", "demo:v1:{part=00003}:batch=00012"),
            Some((3, 12))
        );
        assert_eq!(
            parse_batch_key("demo", "demo:v1:{part=00003}:batch=00012"),
            None
        );
        assert_eq!(
            parse_batch_key("demo:v1", "demo:v1:{part=0x}:batch=1"),
            None
        );
        assert_eq!(batch_pattern("a*b"), "a\\*b:{part=*}:batch=*");
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
