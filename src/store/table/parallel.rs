//! Reads and splits over several connections at once. Reads are planned once for the
//! sync and the async connections: the selected partitions shared out between the
//! connections (one [`Fetch`] each), and the table put back together in
//! partition/batch order from what each fetched. Splits take the batches in input
//! order under a lock and send them from one thread per connection.

#[cfg(any(feature = "sync", feature = "tokio"))]
use super::read::Fetch;
use super::read::Reader;
use super::*;
#[cfg(any(feature = "sync", feature = "tokio"))]
use arrow_array::RecordBatch;
#[cfg(any(feature = "sync", feature = "tokio"))]
use arrow_schema::SchemaRef;

/// What a table's key space holds: a manifest, or (ArrowRedis's layout) only batch keys.
pub(super) enum Found {
    /// The table's manifest.
    Manifest(TableInfo),
    /// No manifest: the batch keys `SCAN` found (none: no table).
    Keys(Vec<String>),
}

/// How the results of the fetches of a parallel read make one table.
#[cfg(any(feature = "sync", feature = "tokio"))]
pub(super) struct Layout {
    prefix: String,
    /// The schema of an empty result.
    schema: SchemaRef,
    generation: Option<u64>,
    selected: Vec<u32>,
}

impl TableStore {
    /// A reader of the table at `prefix` with `options`.
    pub(super) fn reader(&self, prefix: String, options: &ReadOptions) -> Reader {
        Reader {
            prefix,
            options: options.clone(),
            limits: self.limits,
            budget: self.pipeline_bytes,
            mget_keys: self.mget_keys,
        }
    }

    /// The manifest of `table`, or its batch keys (found with `SCAN`) when it has none.
    pub(super) fn plan_found(&self, table: &str) -> Result<Step<'static, Found>> {
        // Every batch is a key: the walk stops at the most batches a table may have.
        let max = usize::try_from(self.limits.max_table_batches).unwrap_or(usize::MAX);
        let scan = Scan::matching(batch_pattern(&self.prefix(table)))
            .with_max_keys(max, "table batch keys");
        Ok(self.plan_readable_manifest(table)?.and_then(move |info| {
            Ok(match info {
                Some(info) => Step::Done(Found::Manifest(info)),
                None => scan.keys().map(Found::Keys),
            })
        }))
    }

    /// The fetches of a parallel read of what `found` (over at most `n` connections)
    /// and how to put their results together; `None` if there is no table.
    #[cfg(any(feature = "sync", feature = "tokio"))]
    pub(super) fn share_out(
        &self,
        table: &str,
        found: Found,
        options: &ReadOptions,
        n: usize,
    ) -> Result<Option<(Vec<Fetch>, Layout)>> {
        let probe = self.reader(self.prefix(table), options);
        let (available, weight, layout) = match &found {
            Found::Manifest(info) => {
                let available: BTreeMap<u32, u32> =
                    info.partitions.iter().map(|p| (p.id, p.batches)).collect();
                let bytes: BTreeMap<u32, u64> =
                    info.partitions.iter().map(|p| (p.id, p.bytes)).collect();
                let layout = (probe.expected_schema(info)?, Some(info.generation));
                (available, bytes, layout)
            }
            Found::Keys(keys) => {
                let Some(available) = probe.discover(keys)? else {
                    return Ok(None);
                };
                let batches = available.iter().map(|(p, n)| (*p, u64::from(*n))).collect();
                let empty = std::sync::Arc::new(arrow_schema::Schema::empty());
                (available, batches, (empty, None))
            }
        };
        // Validates the partitions asked for.
        let selected = probe.select_or_all(&available, options.partitions.as_deref())?;
        // Heaviest partitions first (bytes from the manifest, else batches), each to the
        // least loaded connection.
        let weight = |p: &u32| weight.get(p).copied().unwrap_or(0);
        let mut by_weight = selected.clone();
        by_weight.sort_by_key(|p| std::cmp::Reverse(weight(p)));
        let mut buckets: Vec<(u64, Vec<u32>)> = vec![(0, Vec::new()); n.max(1)];
        for p in by_weight {
            if let Some(b) = buckets.iter_mut().min_by_key(|b| b.0) {
                b.0 += weight(&p).max(1);
                b.1.push(p);
            }
        }
        let mut fetches = Vec::new();
        for (_, parts) in buckets.into_iter().filter(|(_, parts)| !parts.is_empty()) {
            let options = ReadOptions {
                partitions: Some(parts),
                columns: options.columns.clone(),
            };
            let r = self.reader(probe.prefix.clone(), &options);
            fetches.push(match &found {
                Found::Manifest(info) => r.fetch(info.clone())?,
                Found::Keys(_) => r.fetch_discovered(&available)?,
            });
        }
        let (schema, generation) = layout;
        Ok(Some((
            fetches,
            Layout {
                prefix: probe.prefix,
                schema,
                generation,
                selected,
            },
        )))
    }
}

#[cfg(any(feature = "sync", feature = "tokio"))]
impl Layout {
    /// The table, from what each fetch read: batches in the order of the selected
    /// partitions.
    pub(super) fn assemble(self, results: Vec<Result<Table>>) -> Result<Table> {
        let mut schema: Option<(SchemaRef, u32)> = None;
        let mut per_part: BTreeMap<u32, Vec<RecordBatch>> = BTreeMap::new();
        for t in results {
            let t = t?;
            let first = t.partitions.first().map_or(0, |(p, _)| *p);
            // Without manifest each fetch checked its batches against its own first
            // batch: the fetches' first batches must agree too.
            if let Some((s, p)) = &schema
                && s.fields() != t.schema.fields()
            {
                return Err(Error::SchemaMismatch {
                    key: format!(
                        "{} (against partition {p})",
                        batch_key(&self.prefix, first, 0)
                    ),
                    expected: describe(s.fields()),
                    found: describe(t.schema.fields()),
                });
            }
            let mut it = t.batches.into_iter();
            for (p, n) in t.partitions {
                per_part.insert(p, it.by_ref().take(n).collect());
            }
            schema.get_or_insert((t.schema, first));
        }
        let mut batches = Vec::new();
        let mut partitions = Vec::with_capacity(self.selected.len());
        for p in self.selected {
            let b = per_part.remove(&p).unwrap_or_default();
            partitions.push((p, b.len()));
            batches.extend(b);
        }
        Ok(Table {
            schema: schema.map_or(self.schema, |(s, _)| s),
            batches,
            partitions,
            generation: self.generation,
        })
    }
}

impl TableStore {
    /// [`read`](Self::read) over several connections at once: the selected partitions
    /// are shared out between the connections (balanced by their bytes in the
    /// manifest), each connection reads and decodes its partitions on its own thread
    /// (one request of about [`with_pipeline_bytes`](Self::with_pipeline_bytes) in flight per
    /// connection), and the batches come back in the same order as [`read`](Self::read)
    /// gives them. A table without manifest (written by ArrowRedis) is discovered with
    /// `SCAN` on the first connection, then read the same way (partitions shared out by
    /// batch count, requests sized from the first values, every batch checked against
    /// the first one).
    ///
    /// From async code, use [`read_parallel_async`](Self::read_parallel_async), which
    /// decodes on tokio's blocking threads ([`read_async`](Self::read_async) decodes on
    /// the calling task, which suits small reads only).
    #[cfg(feature = "sync")]
    pub fn read_parallel<Con: crate::exec::SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        table: &str,
        options: &ReadOptions,
    ) -> Result<Option<Table>> {
        crate::store::traced(
            "TableStore",
            "read_parallel",
            &self.prefix(table),
            move || {
                let Some(first) = cons.first_mut() else {
                    return Err(Error::InvalidArgument(
                        "read_parallel needs at least one connection".into(),
                    ));
                };
                let found = crate::exec::run(first, self.plan_found(table)?)?;
                let Some((fetches, layout)) = self.share_out(table, found, options, cons.len())?
                else {
                    return Ok(None);
                };
                let results: Vec<Result<Table>> = std::thread::scope(|scope| {
                    let handles: Vec<_> = cons
                        .iter_mut()
                        .zip(fetches)
                        .map(|(con, f)| scope.spawn(move || crate::exec::run(con, f.step()?)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(Error::panicked("a table read thread")))
                        })
                        .collect()
                });
                layout.assemble(results).map(Some)
            },
        )
    }

    /// [`read_parallel`](Self::read_parallel) on async connections: the connections
    /// fetch concurrently, and every value is decoded on tokio's blocking threads (as
    /// many at once as the machine has cores), never on the async workers; the batches
    /// come back in the same order as [`read`](Self::read) gives them. A table without
    /// manifest (written by ArrowRedis) is discovered with `SCAN` on the first
    /// connection, then read the same way. Needs a tokio runtime (any flavour).
    ///
    /// ```no_run
    /// # async fn demo() -> redstash::Result<()> {
    /// use redstash::TableStore;
    /// use redstash::direct::DirectAsyncConnection;
    /// use redstash::store::table::ReadOptions;
    ///
    /// let mut cons = Vec::new();
    /// for _ in 0..4 {
    ///     cons.push(DirectAsyncConnection::open("redis://127.0.0.1:6379").await?);
    /// }
    /// let store = TableStore::new("");
    /// if let Some(t) = store.read_parallel_async(&mut cons, "demo:v1", &ReadOptions::all()).await? {
    ///     println!("{} rows", t.num_rows());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn read_parallel_async<Con: crate::exec::AsyncConnection>(
        &self,
        cons: &mut [Con],
        table: &str,
        options: &ReadOptions,
    ) -> Result<Option<Table>> {
        crate::store::traced_async(
            "TableStore",
            "read_parallel_async",
            &self.prefix(table),
            async move {
                let Some(first) = cons.first_mut() else {
                    return Err(Error::InvalidArgument(
                        "read_parallel_async needs at least one connection".into(),
                    ));
                };
                let found = crate::exec::run_async(first, self.plan_found(table)?).await?;
                let Some((fetches, layout)) = self.share_out(table, found, options, cons.len())?
                else {
                    return Ok(None);
                };
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
                let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(cores));
                let reads = cons
                    .iter_mut()
                    .zip(fetches)
                    .map(|(con, f)| read::fetch_decode_async(con, f, permits.clone()));
                let results = futures_util::future::join_all(reads).await;
                layout.assemble(results).map(Some)
            },
        )
        .await
    }

    /// [`split`](Self::split) over several connections at once: batches are taken
    /// from `batches` in order and given their keys under a lock (so a partition's
    /// batch numbers follow the input order, as with [`split`](Self::split)), then each
    /// connection encodes its share on its own thread and sends it in pipelines of about
    /// [`with_pipeline_bytes`](Self::with_pipeline_bytes) (one in flight per connection). The
    /// manifest is written last, on the first connection, once every batch is
    /// acknowledged. On an error nothing more is sent and the manifest is not written.
    #[cfg(feature = "sync")]
    pub fn split_parallel<I: BatchSource, Con: crate::exec::SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        table: &str,
        batches: I,
    ) -> Result<TableInfo> {
        crate::store::traced(
            "TableStore",
            "split_parallel",
            &self.prefix(table),
            move || self.split_parallel_pieces(cons, table, Decoded(batches)),
        )
    }

    /// [`split_ipc`](Self::split_ipc) over several connections at once, as
    /// [`split_parallel`](Self::split_parallel) does it: the file is read one batch at a
    /// time under a lock, so memory stays bounded by the batches in flight (about
    /// [`with_pipeline_bytes`](Self::with_pipeline_bytes) per connection).
    #[cfg(feature = "sync")]
    pub fn split_ipc_parallel<Con: crate::exec::SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        table: &str,
        input: IpcInput,
    ) -> Result<TableInfo> {
        crate::store::traced(
            "TableStore",
            "split_ipc_parallel",
            &self.prefix(table),
            move || self.split_parallel_pieces(cons, table, input),
        )
    }

    #[cfg(feature = "sync")]
    fn split_parallel_pieces<S: Pieces, Con: crate::exec::SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        table: &str,
        source: S,
    ) -> Result<TableInfo> {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicBool, Ordering};

        let mut splitter = self.splitter(table, source)?;
        let Some(first) = cons.first_mut() else {
            return Err(Error::InvalidArgument(
                "split_parallel needs at least one connection".into(),
            ));
        };
        let mkey = self.manifest_key(table);
        let mut c = redis::cmd("GET");
        c.arg(&mkey);
        let old = crate::exec::run(
            first,
            Step::then(Request::single(c, Some(&mkey)), |mut r| {
                let old = r.next_bytes()?;
                r.finish()?;
                Ok(old)
            }),
        )?;
        splitter.adopt_old(old, &self.limits);
        // The split-in-progress marker, with the first batch, before any other batch.
        let Some(a) = splitter.assign()? else {
            return crate::exec::run(first, splitter.finish()?);
        };
        let mut req = Request::new(Some(&mkey));
        req.push(splitter.marker());
        let (part, cmd, n) = a.into_set()?;
        req.push(cmd);
        let input = part.input;
        splitter.add_bytes(part, n);
        splitter.marked = true;
        let delivered = crate::exec::run(first, tracked(req))?;
        if let Some(e) = splitter.tally_request(delivered, true, &[input]) {
            return Err(splitter.partial(e));
        }
        let budget = self.pipeline_bytes;
        let max_batches = self.pipeline_batches;
        let shared = Mutex::new(splitter);
        let failed = AtomicBool::new(false);
        let poisoned = || Error::panicked("a split thread");
        // Why a thread stopped: Redis refused or lost a request (reported item by item),
        // or anything else (bad input, returned as it is).
        enum Stop {
            Redis(Error),
            Other(Error),
        }
        impl From<Error> for Stop {
            fn from(e: Error) -> Self {
                Stop::Other(e)
            }
        }
        let work = |con: &mut Con| -> std::result::Result<(), Stop> {
            while !failed.load(Ordering::Relaxed) {
                let mut chunk = Vec::new();
                {
                    let mut s = shared.lock().map_err(|_| poisoned())?;
                    let mut estimate = 0usize;
                    while estimate < budget && chunk.len() < max_batches {
                        match s.assign()? {
                            Some(a) => {
                                estimate += a.memory_size();
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
                let mut inputs = Vec::with_capacity(chunk.len());
                for a in chunk {
                    let (part, cmd, n) = a.into_set()?;
                    inputs.push(part.input);
                    sizes.push((part, n));
                    req.push(cmd);
                }
                let delivered = crate::exec::run(con, tracked(req))?;
                let mut s = shared.lock().map_err(|_| poisoned())?;
                for (part, n) in sizes {
                    s.add_bytes(part, n);
                }
                if let Some(e) = s.tally_request(delivered, false, &inputs) {
                    return Err(Stop::Redis(e));
                }
            }
            Ok(())
        };
        let results: Vec<std::result::Result<(), Stop>> = std::thread::scope(|scope| {
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
                .map(|h| h.join().unwrap_or_else(|_| Err(Stop::Other(poisoned()))))
                .collect()
        });
        let splitter = shared.into_inner().map_err(|_| poisoned())?;
        match results.into_iter().find_map(std::result::Result::err) {
            Some(Stop::Redis(e)) => return Err(splitter.partial(e)),
            Some(Stop::Other(e)) => return Err(e),
            None => {}
        }
        let first = cons.first_mut().ok_or_else(poisoned)?;
        crate::exec::run(first, splitter.finish()?)
    }
}

/// A plan that sends `req` and returns what became of it (so that a connection failure
/// is accounted for, not just returned).
#[cfg(feature = "sync")]
fn tracked(req: Request<'static>) -> Step<'static, crate::exec::Delivered> {
    Step::send_tracked(req, |d| Ok(Step::Done(d)))
}
