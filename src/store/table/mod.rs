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
//!   "batches", "rows", "bytes", "checksums"}], "schema"}` where `schema` is the hex of
//!   an IPC stream holding only the schema and `checksums` the xxh3-64 of each batch
//!   value (verified on every read: a mismatch is an [`Error::InvalidValue`]). It lets
//!   readers know the batch counts without being told and without `SCAN`. ArrowRedis's discovery
//!   pattern `{prefix}:{part=*}:batch=*` does not match it. What it declares is
//!   checked against [`Limits`] (`max_table_batches`) before any key list is built.
//! * a split-in-progress marker, `{prefix}:__pending__`, written before the first batch
//!   of a split and deleted with the manifest's write (ArrowRedis ignores it). Batch
//!   keys with the marker and no manifest are an interrupted first split
//!   ([`Error::IncompleteTable`]), not a table without manifest; the marker next to a
//!   manifest is an interrupted re-split ([`Error::ResplitInterrupted`]): split again.
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
//! # Splitting Arrow IPC files
//!
//! [`split_ipc`](TableStore::split_ipc) (and `split_ipc_async`,
//! [`split_ipc_parallel`](TableStore::split_ipc_parallel)) take an [`IpcInput`]: an IPC
//! file or stream read one batch at a time, never decoded when it need not be. A batch
//! whose body compression is the store's is stored by re-framing: the value is the
//! store's schema message (with the generation), the dictionary messages the batch
//! needs and the batch message exactly as the file holds it, so neither zstd nor lz4
//! runs. Otherwise (another compression, or dictionary ids that do not line up) the
//! batch is decoded and encoded. [`Partitioning::Column`] decodes only the partition
//! column of each batch to find its partition; [`Partitioning::Blocks`] is ArrowRedis's
//! `--batches`. Memory stays bounded by the batches in flight.
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
//! reading a table without manifest) walk the whole keyspace: one server, or every
//! primary of a Redis Cluster through a `cluster::ClusterConnection` (feature
//! `cluster`), which gives the plan's `SCAN` loop one composite cursor over all of them.

mod info;
mod keys;
pub(crate) mod manifest;
mod options;
mod parallel;
mod read;
#[cfg(feature = "sync")]
mod relay;
mod split;
#[cfg(feature = "sync")]
mod streamed;

pub use info::{PartitionInfo, Table, TableInfo};
pub use keys::{MANIFEST_SUFFIX, PENDING_SUFFIX};
pub use options::{BatchSource, Partitioning, ReadOptions};
#[cfg(feature = "sync")]
pub use streamed::{IpcWritten, ReadEach};

use info::{Checksums, checksum};
use keys::{batch_key, batch_pattern, parse_batch_key};
use manifest::parse_manifest;
use parallel::Found;
use split::{Decoded, Pieces, Splitter};

use std::collections::BTreeMap;

use arrow_schema::Fields;

use crate::codec::Limits;
use crate::codec::arrow::IpcCompression;
pub use crate::codec::arrow_file::IpcInput;
use crate::error::{Error, Result};
use crate::exec::{Request, Scan, Step};
use crate::store::batch::glob_escape;
use crate::store::{join_key, sync_and_async};

/// Schema metadata key holding the generation of a batch redstash wrote.
pub const GENERATION_METADATA: &str = "redstash.generation";
/// The manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
const MANIFEST_FORMAT: &str = "redstash.table";

/// Partitioned Arrow tables in Redis, in the ArrowRedis key layout (see the
/// [module docs](self) for the layout, the manifest and re-splits).
///
/// * [`split`](Self::split) writes record batches, one IPC stream per key, pipelined in
///   requests of about [`with_pipeline_bytes`](Self::with_pipeline_bytes), then the manifest.
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
/// let store = TableStore::new("").with_partition_by("partition");
/// let batches: Vec<_> = GenSpec::default().iter().collect::<redstash::Result<_>>()?;
/// let info = store.split(&mut con, "demo:v1", batches.into_iter())?;
/// let t = store.read(&mut con, "demo:v1", &ReadOptions::all().with_partitions([1]).with_columns(["id64"]))?;
/// assert_eq!(t.unwrap().num_rows() as u64, info.partitions[1].rows);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TableStore {
    namespace: String,
    compression: IpcCompression,
    partitioning: Partitioning,
    pipeline_bytes: usize,
    pipeline_batches: usize,
    mget_keys: usize,
    limits: Limits,
    verify_input: bool,
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
            pipeline_batches: 4096,
            mget_keys: 64,
            verify_input: true,
            limits: Limits::default(),
        }
    }

    /// Body compression of written batches (reading accepts any).
    pub fn with_compression(mut self, c: IpcCompression) -> Self {
        self.compression = c;
        self
    }

    /// Partition written batches by an integer column (see [`Partitioning::Column`]).
    pub fn with_partition_by(mut self, column: impl Into<String>) -> Self {
        self.partitioning = Partitioning::Column(column.into());
        self
    }

    /// Spread written batches over `n` partitions, round robin.
    pub fn with_round_robin(mut self, n: u32) -> Self {
        self.partitioning = Partitioning::RoundRobin(n);
        self
    }

    /// How written batches are partitioned.
    pub fn with_partitioning(mut self, p: Partitioning) -> Self {
        self.partitioning = p;
        self
    }

    /// Approximate bytes of batch values sent (or expected back) per request (default
    /// 16 MiB; at least one batch per request).
    pub fn with_pipeline_bytes(mut self, n: usize) -> Self {
        self.pipeline_bytes = n.max(1);
        self
    }

    /// Whether [`split_ipc`](Self::split_ipc) decodes the batches it stores as the file
    /// holds them (same body compression), so that a corrupt input file is an error at
    /// split time (default `true`). That decode costs a decompression of every batch:
    /// with it, splitting the 250 MB benchmark table took 0.66 s instead of 0.34 s on a
    /// shared 2-core machine. Turn it off for inputs you trust: a corrupt batch is then
    /// stored, and reads of it fail (it is never returned as other data).
    pub fn with_verify_input(mut self, verify: bool) -> Self {
        self.verify_input = verify;
        self
    }

    /// Most batches written per request (default 4096; at least 1): with
    /// [`split_parallel`](Self::split_parallel), connections x this bounds the `SET`s in
    /// flight (ArrowRedis's `--max-inflight`).
    pub fn with_pipeline_batches(mut self, n: usize) -> Self {
        self.pipeline_batches = n.max(1);
        self
    }

    /// Keys per `MGET` when reading (default 64).
    pub fn with_mget_keys(mut self, n: usize) -> Self {
        self.mget_keys = n.max(1);
        self
    }

    /// Decoding limits (size caps against hostile values).
    pub fn with_limits(mut self, limits: Limits) -> Self {
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

    /// The key of a table's split-in-progress marker (see [`PENDING_SUFFIX`]).
    pub fn pending_key(&self, table: &str) -> String {
        format!("{}:{PENDING_SUFFIX}", self.prefix(table))
    }

    /// The manifest of `table` (if any) and whether its split-in-progress marker is
    /// there, read in one request.
    fn plan_manifest(&self, table: &str) -> Step<'static, (Option<TableInfo>, bool)> {
        let prefix = self.prefix(table);
        let key = self.manifest_key(table);
        let pending = self.pending_key(table);
        let limits = self.limits;
        let mut req = Request::new(Some(&key));
        let mut c = redis::cmd("GET");
        c.arg(&key);
        req.push(c);
        let mut c = redis::cmd("EXISTS");
        c.arg(&pending);
        req.push(c);
        Step::then(req, move |mut r| {
            let manifest = r.next_bytes()?;
            let marked = r.next_int()? > 0;
            r.finish()?;
            let info = match manifest {
                None => None,
                Some(b) => Some(parse_manifest(&prefix, &key, &b, &limits)?),
            };
            Ok((info, marked))
        })
    }

    /// The manifest of `table` for a reader: an interrupted split (the marker present)
    /// is an error, [`Error::IncompleteTable`] or [`Error::ResplitInterrupted`].
    pub(super) fn plan_readable_manifest(
        &self,
        table: &str,
    ) -> Result<Step<'static, Option<TableInfo>>> {
        let prefix = self.prefix(table);
        Ok(self.plan_manifest(table).try_map(move |found| match found {
            (info, false) => Ok(info),
            (Some(info), true) => Err(Error::ResplitInterrupted {
                table: prefix,
                generation: info.generation,
            }),
            (None, true) => Err(Error::IncompleteTable { table: prefix }),
        }))
    }

    /// Plan of [`info`](Self::info).
    pub fn plan_info(&self, table: &str) -> Result<Step<'static, Option<TableInfo>>> {
        let prefix = self.prefix(table);
        Ok(self.plan_manifest(table).try_map(move |found| match found {
            (None, true) => Err(Error::IncompleteTable { table: prefix }),
            (info, _) => Ok(info),
        }))
    }

    /// Plan of [`split`](Self::split).
    pub fn plan_split<'a, I: BatchSource + 'a>(
        &self,
        table: &str,
        batches: I,
    ) -> Result<Step<'a, TableInfo>> {
        self.plan_split_pieces(table, Decoded(batches))
    }

    /// Plan of [`split_ipc`](Self::split_ipc).
    pub fn plan_split_ipc(&self, table: &str, input: IpcInput) -> Result<Step<'static, TableInfo>> {
        self.plan_split_pieces(table, input)
    }

    fn plan_split_pieces<'a, S: Pieces + 'a>(
        &self,
        table: &str,
        source: S,
    ) -> Result<Step<'a, TableInfo>> {
        let mkey = self.manifest_key(table);
        let limits = self.limits;
        let splitter = self.splitter(table, source)?;
        let mut c = redis::cmd("GET");
        c.arg(&mkey);
        Ok(Step::send(
            Request::single(c, Some(&mkey)).idempotent(),
            move |mut r| {
                let old = r.next_bytes()?;
                r.finish()?;
                let mut s = splitter;
                s.adopt_old(old, &limits);
                s.step()
            },
        ))
    }

    fn splitter<S: Pieces>(&self, table: &str, source: S) -> Result<Splitter<S>> {
        match self.partitioning {
            Partitioning::RoundRobin(0) => Err(Error::InvalidArgument(
                "round robin over 0 partitions".into(),
            )),
            Partitioning::Blocks(0) => Err(Error::InvalidArgument(
                "blocks of 0 batches per partition".into(),
            )),
            _ => Ok(Splitter::new(
                source,
                self.prefix(table),
                self.manifest_key(table),
                self.compression,
                self.partitioning.clone(),
                self.pipeline_bytes,
                self.pipeline_batches,
                self.limits,
            )
            .verifying(self.verify_input)),
        }
    }

    /// Plan of [`read`](Self::read).
    pub fn plan_read(
        &self,
        table: &str,
        options: &ReadOptions,
    ) -> Result<Step<'static, Option<Table>>> {
        let reader = self.reader(self.prefix(table), options);
        Ok(self.plan_found(table)?.and_then(move |found| match found {
            Found::Manifest(info) => reader.with_manifest(info).map(|s| s.map(Some)),
            Found::Keys(keys) => reader.discovered(keys),
        }))
    }

    /// Plan of [`delete`](Self::delete).
    pub fn plan_delete(&self, table: &str) -> Result<Step<'static, u64>> {
        let prefix = self.prefix(table);
        let mkey = self.manifest_key(table);
        let pending = self.pending_key(table);
        // The marker first, so that a delete interrupted half-way leaves an incomplete
        // table (an error to read), not a smaller one; deleted last.
        let mut req = Request::new(Some(&mkey));
        let mut c = redis::cmd("SET");
        c.arg(&pending).arg("delete");
        req.push(c);
        let mut c = redis::cmd("DEL");
        c.arg(&mkey);
        req.push(c);
        Ok(Step::send(req, move |mut r| {
            r.next_ok()?;
            let manifest = r.next_int()?.max(0) as u64;
            r.finish()?;
            let mut unmark = redis::cmd("DEL");
            unmark.arg(&pending);
            Ok(Scan::matching(batch_pattern(&prefix))
                .keys()
                .and_then(move |keys| {
                    let mut by_part: BTreeMap<u32, Vec<String>> = BTreeMap::new();
                    for k in keys {
                        if let Some((p, _)) = parse_batch_key(&prefix, &k) {
                            by_part.entry(p).or_default().push(k);
                        }
                    }
                    let mut req = Request::new(Some(&prefix));
                    for keys in by_part.values() {
                        for chunk in keys.chunks(512) {
                            let mut c = redis::cmd("DEL");
                            c.arg(chunk);
                            req.push(c);
                        }
                    }
                    let dels = req.len();
                    req.push(unmark);
                    Ok(Step::then(req, move |mut r| {
                        let mut n = manifest;
                        for _ in 0..dels {
                            n += r.next_int()?.max(0) as u64;
                        }
                        // The marker's DEL.
                        r.skip(1)?;
                        r.finish()?;
                        Ok(n)
                    }))
                }))
        }))
    }

    /// Plan of [`list`](Self::list).
    pub fn plan_list(&self) -> Result<Step<'static, Vec<String>>> {
        // Manifests and split-in-progress markers (an incomplete table is listed, so
        // that it can be found and deleted or split again).
        let (pattern, strip) = if self.namespace.is_empty() {
            ("*:__*__".to_owned(), 0)
        } else {
            (
                format!("{}:*:__*__", glob_escape(&self.namespace)),
                self.namespace.len() + 1,
            )
        };
        Ok(Scan::matching(pattern).keys().map(move |keys| {
            let mut names: Vec<String> = keys
                .into_iter()
                .filter_map(|k| {
                    let name = [MANIFEST_SUFFIX, PENDING_SUFFIX]
                        .into_iter()
                        .find_map(|s| k.strip_suffix(s)?.strip_suffix(':'))?;
                    name.get(strip..).map(str::to_owned)
                })
                .filter(|n| !n.is_empty())
                .collect();
            names.sort();
            names.dedup();
            names
        }))
    }

    sync_and_async! {
        /// Write `batches` as table `table`: one Arrow IPC stream per batch at
        /// `{prefix}:{part=XXXXX}:batch=YYYYY` (pipelined `SET`s), then the manifest.
        /// Re-splitting a table replaces it (new generation, see the module docs). All
        /// batches must have the same fields ([`Error::SchemaMismatch`]); an empty input
        /// is [`Error::InvalidArgument`].
        fn split / split_async<I: BatchSource>(table: &str, batches: I) -> TableInfo = plan_split;
        /// [`split`](Self::split) the record batches of an Arrow IPC file or stream
        /// ([`IpcInput`]), read one at a time. Batches whose body compression is the
        /// store's are re-framed into values as they are (no decompression, no
        /// recompression); others are decoded and encoded with the store's compression.
        /// Partitioning by a column decodes only that column of each batch (a batch
        /// holding several partitions is decoded and cut).
        fn split_ipc / split_ipc_async(table: &str, input: IpcInput) -> TableInfo = plan_split_ipc;
        /// Read a table (selected partitions and columns): `None` if it has neither a
        /// manifest nor batch keys. Missing batches are [`Error::MissingBatches`], a
        /// value that is not an IPC stream [`Error::InvalidValue`], a batch of another
        /// schema [`Error::SchemaMismatch`], a table rewritten meanwhile
        /// [`Error::TableChanged`]; a partition the table lacks or an unknown column is
        /// [`Error::InvalidArgument`].
        fn read / read_async(table: &str, options: &ReadOptions) -> Option<Table> = plan_read;
        /// A table's manifest; `None` when it has none (not a table, or written by
        /// ArrowRedis). A manifest that cannot be parsed is [`Error::InvalidValue`]; a table
        /// whose first split did not finish is [`Error::IncompleteTable`].
        fn info / info_async(table: &str) -> Option<TableInfo> = plan_info;
        /// Delete a table: its manifest, then every `{prefix}:{part=*}:batch=*` key found
        /// by `SCAN`, then its split-in-progress marker (set while the delete runs, so an
        /// interrupted delete reads as [`Error::IncompleteTable`]). Returns the number of
        /// manifest and batch keys deleted.
        fn delete / delete_async(table: &str) -> u64 = plan_delete;
        /// The names of the tables of the store's namespace that have a manifest or a
        /// split-in-progress marker (`SCAN`, never `KEYS`), sorted.
        fn list / list_async() -> Vec<String> = plan_list;
    }
}

fn describe(fields: &Fields) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    format!("[{}]", parts.join(", "))
}
