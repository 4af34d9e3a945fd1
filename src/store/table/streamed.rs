//! Reading a table streamed, without holding it whole: batch by batch
//! ([`TableStore::read_each`]) or into an Arrow IPC file or stream
//! ([`TableStore::read_ipc`]), fetched over several connections in order
//! ([`relay`](super::relay)).

use std::collections::BTreeMap;
use std::io::Write;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::read::{
    check_fields, check_generation, decode_value, mget_request, mget_values, with_schema,
};
use super::relay::in_order;
use super::*;
use crate::codec::arrow_concat::IpcConcat;
use crate::codec::arrow_file::IpcFormat;
use crate::exec::SyncConnection;

/// What [`TableStore::read_ipc`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcWritten {
    /// The schema written (the selected columns).
    pub schema: SchemaRef,
    /// `(partition, batches)` of the selected partitions, in the order written.
    pub partitions: Vec<(u32, usize)>,
    /// Rows written.
    pub rows: u64,
    /// Bytes of the stored values fetched, when known (always when copied).
    pub fetched_bytes: Option<u64>,
    /// Bytes written to the output.
    pub written_bytes: u64,
    /// `true` when the stored batch messages were copied as they are (no decoding);
    /// `false` when the batches were decoded and encoded again.
    pub copied: bool,
}

/// What [`TableStore::read_each`] delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEach {
    /// The schema of the batches delivered (the selected columns).
    pub schema: SchemaRef,
    /// `(partition, batches)` of the selected partitions, in the order delivered.
    pub partitions: Vec<(u32, usize)>,
    /// Rows delivered.
    pub rows: u64,
}

impl TableStore {
    /// Fetch the selected batches of a table with a manifest over the connections, in
    /// requests of about [`with_pipeline_bytes`](Self::with_pipeline_bytes), at most two per
    /// connection ahead of this thread: `prepare(key, value)` runs on the fetching
    /// threads (e.g. decoding), `take(partition, key, prepared)` on this thread in
    /// partition/batch order and returns how many record batches it took. Once a batch
    /// is missing nothing more is taken; the other missing ones are still looked for and
    /// all are reported ([`Error::MissingBatches`]). Returns the batches taken per
    /// selected partition.
    fn stream_values<Con, T>(
        &self,
        cons: &mut [Con],
        info: &TableInfo,
        options: &ReadOptions,
        prepare: impl Fn(&str, bytes::Bytes) -> Result<T> + Sync,
        mut take: impl FnMut(u32, &str, T) -> Result<usize>,
    ) -> Result<Vec<(u32, usize)>>
    where
        Con: SyncConnection + Send,
        T: Send,
    {
        let available: BTreeMap<u32, u32> =
            info.partitions.iter().map(|p| (p.id, p.batches)).collect();
        let parts = self
            .reader(info.prefix.clone(), options)
            .select_or_all(&available, options.partitions.as_deref())?;
        let keys: Vec<(u32, u32)> = parts
            .iter()
            .flat_map(|&p| (0..available.get(&p).copied().unwrap_or(0)).map(move |b| (p, b)))
            .collect();
        let avg = (info.bytes / info.batches().max(1)).max(1) as usize;
        let chunks: Vec<&[(u32, u32)]> = keys.chunks((self.pipeline_bytes / avg).max(1)).collect();
        let prefix = info.prefix.as_str();
        let mget_keys = self.mget_keys;
        let sums = super::read::Verify::new(info, self.limits);
        let mut per_part: BTreeMap<u32, usize> = parts.iter().map(|&p| (p, 0)).collect();
        let mut missing = Vec::new();
        in_order(
            cons,
            chunks.len(),
            2 * cons.len(),
            |con, i| {
                let (req, groups) = mget_request(prefix, chunks[i], mget_keys);
                let sums = &sums;
                let values = crate::exec::run(
                    con,
                    Step::then(req, move |replies| {
                        mget_values(prefix, groups, replies, Some(sums))
                    }),
                )?;
                values
                    .into_iter()
                    .map(|(part, key, v)| {
                        let prepared = v.map(|bytes| prepare(&key, bytes)).transpose()?;
                        Ok((part, key, prepared))
                    })
                    .collect::<Result<Vec<_>>>()
            },
            |_, chunk| {
                for (part, key, value) in chunk {
                    match value {
                        None => missing.push(key),
                        Some(v) if missing.is_empty() => {
                            *per_part.entry(part).or_default() += take(part, &key, v)?;
                        }
                        Some(_) => {}
                    }
                }
                Ok(())
            },
        )?;
        if !missing.is_empty() {
            return Err(Error::MissingBatches {
                table: info.prefix.clone(),
                missing,
            });
        }
        Ok(parts
            .iter()
            .map(|p| (*p, per_part.get(p).copied().unwrap_or(0)))
            .collect())
    }

    /// Read a table (selected partitions and columns, as [`read`](Self::read)) batch by
    /// batch: `f(partition, batch)` is called for every record batch in partition/batch
    /// order, on this thread, while the connections fetch and decode the batches that
    /// follow (one thread each, at most two requests of about
    /// [`with_pipeline_bytes`](Self::with_pipeline_bytes) per connection ahead of `f`). So a table
    /// of any size can be read in bounded memory, e.g. to feed a training loop. Returns
    /// `None` if there is no table.
    ///
    /// Errors are those of [`read`](Self::read), or the first error `f` returns (which
    /// stops the read). A table without manifest (written by ArrowRedis) is read whole
    /// with [`read_parallel`](Self::read_parallel), then delivered.
    ///
    /// ```no_run
    /// use redstash::TableStore;
    /// use redstash::direct::DirectConnection;
    /// use redstash::store::table::ReadOptions;
    ///
    /// let mut cons: Vec<DirectConnection> = (0..4)
    ///     .map(|_| DirectConnection::open("redis://127.0.0.1:6379"))
    ///     .collect::<Result<_, _>>()?;
    /// let mut sum = 0i64;
    /// TableStore::new("").read_each(&mut cons, "demo:v1", &ReadOptions::all().with_columns(["id64"]), |_, b| {
    ///     let ids = b.column(0).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
    ///     sum += ids.values().iter().sum::<i64>();
    ///     Ok(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_each<Con, F>(
        &self,
        cons: &mut [Con],
        table: &str,
        options: &ReadOptions,
        mut f: F,
    ) -> Result<Option<ReadEach>>
    where
        Con: SyncConnection + Send,
        F: FnMut(u32, RecordBatch) -> Result<()>,
    {
        crate::store::traced("TableStore", "read_each", &self.prefix(table), move || {
            let Some(first) = cons.first_mut() else {
                return Err(Error::InvalidArgument(
                    "read_each needs at least one connection".into(),
                ));
            };
            let Some(info) = crate::exec::run(first, self.plan_readable_manifest(table)?)? else {
                let Some(t) = self.read_parallel(cons, table, options)? else {
                    return Ok(None);
                };
                let rows = t.num_rows() as u64;
                let mut batches = t.batches.into_iter();
                for &(p, n) in &t.partitions {
                    for b in batches.by_ref().take(n) {
                        f(p, b)?;
                    }
                }
                return Ok(Some(ReadEach {
                    schema: t.schema,
                    partitions: t.partitions,
                    rows,
                }));
            };
            let expected = self
                .reader(info.prefix.clone(), options)
                .expected_schema(&info)?;
            let prefix = info.prefix.as_str();
            let (columns, limits) = (options.columns.as_deref(), self.limits);
            let mut rows = 0u64;
            let partitions = self.stream_values(
                cons,
                &info,
                options,
                // Decoded on the fetching threads: all cores decode.
                |key, bytes| decode_value(key, bytes, columns, &limits),
                |part, key, (schema, batches)| {
                    check_generation(prefix, key, &schema, info.generation)?;
                    check_fields(key, &expected, &schema)?;
                    let n = batches.len();
                    for b in batches {
                        rows = rows.checked_add(b.num_rows() as u64).ok_or_else(|| {
                            Error::corrupt("arrow", "row count overflows").at_key(key)
                        })?;
                        f(part, with_schema(key, &expected, b)?)?;
                    }
                    Ok(n)
                },
            )?;
            Ok(Some(ReadEach {
                schema: expected,
                partitions,
                rows,
            }))
        })
    }

    /// Read a table (selected partitions and columns, as [`read`](Self::read)) into an
    /// Arrow IPC file or stream written to `out`, in partition/batch order; returns `out`
    /// and what was written, `None` if there is no table.
    ///
    /// When the table has a manifest, its compression is `compression` and no columns
    /// are selected, the stored batch messages are **copied as they are** into the
    /// output ([`IpcConcat`]: no decompression, no recompression), fetched over all the
    /// connections with a bounded window of requests ahead of the writer, so memory
    /// stays at a few requests of [`with_pipeline_bytes`](Self::with_pipeline_bytes) whatever the
    /// table's size. Each value's framing, schema, dictionary ids and generation are
    /// checked; its buffers are not (a reader of the output validates them). Otherwise
    /// the table is read with [`read_parallel`](Self::read_parallel) and encoded.
    ///
    /// Errors are those of [`read`](Self::read); an IPC file also cannot hold a
    /// dictionary that changes between batches ([`Error::InvalidArgument`]: write a
    /// stream). On an error `out` holds a partial file: write to a temporary file and
    /// rename it on success (as the CLI does).
    ///
    /// ```no_run
    /// use redstash::TableStore;
    /// use redstash::codec::arrow::IpcCompression;
    /// use redstash::codec::arrow_file::IpcFormat;
    /// use redstash::direct::DirectConnection;
    /// use redstash::store::table::ReadOptions;
    ///
    /// let mut cons: Vec<DirectConnection> = (0..4)
    ///     .map(|_| DirectConnection::open("redis://127.0.0.1:6379"))
    ///     .collect::<Result<_, _>>()?;
    /// let out = std::io::BufWriter::new(std::fs::File::create("table.arrow")?);
    /// let store = TableStore::new("");
    /// if let Some((_, w)) = store.read_ipc(&mut cons, "demo:v1", &ReadOptions::all(), out,
    ///                                      IpcFormat::File, IpcCompression::Zstd)? {
    ///     println!("{} rows, copied: {}", w.rows, w.copied);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_ipc<W: Write, Con: SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        table: &str,
        options: &ReadOptions,
        mut out: W,
        format: IpcFormat,
        compression: IpcCompression,
    ) -> Result<Option<(W, IpcWritten)>> {
        crate::store::traced("TableStore", "read_ipc", &self.prefix(table), move || {
            let Some(first) = cons.first_mut() else {
                return Err(Error::InvalidArgument(
                    "read_ipc needs at least one connection".into(),
                ));
            };
            let info = crate::exec::run(first, self.plan_readable_manifest(table)?)?;
            let copy = options.columns.is_none()
                && info.as_ref().is_some_and(|i| i.compression == compression);
            match info {
                Some(info) if copy => self.copy_ipc(cons, &info, options, out, format),
                info => {
                    let Some(t) = self.read_parallel(cons, table, options)? else {
                        return Ok(None);
                    };
                    let written_bytes = t.write_ipc(&mut out, format, compression)?;
                    let fetched_bytes = info.map(|i| {
                        i.partitions
                            .iter()
                            .filter(|p| t.partitions.iter().any(|(id, _)| *id == p.id))
                            .map(|p| p.bytes)
                            .sum()
                    });
                    let written = IpcWritten {
                        schema: t.schema.clone(),
                        partitions: t.partitions.clone(),
                        rows: t.num_rows() as u64,
                        fetched_bytes,
                        written_bytes,
                        copied: false,
                    };
                    Ok(Some((out, written)))
                }
            }
        })
    }

    fn copy_ipc<W: Write, Con: SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        info: &TableInfo,
        options: &ReadOptions,
        out: W,
        format: IpcFormat,
    ) -> Result<Option<(W, IpcWritten)>> {
        let prefix = info.prefix.as_str();
        let mut concat = IpcConcat::new(out, &info.schema, format)?;
        let mut rows = 0u64;
        let mut fetched = 0u64;
        let partitions = self.stream_values(
            cons,
            info,
            options,
            |_, bytes| Ok(bytes),
            |_, key, bytes| {
                let bad = |e: Error| e.at_key(key);
                let a = concat.append(&bytes, &self.limits).map_err(bad)?;
                check_generation(prefix, key, &a.schema, info.generation)?;
                check_fields(key, &info.schema, &a.schema)?;
                rows = rows
                    .checked_add(a.rows)
                    .ok_or_else(|| Error::corrupt("arrow", "row count overflows").at_key(key))?;
                fetched += bytes.len() as u64;
                Ok(a.batches as usize)
            },
        )?;
        let (out, written_bytes) = concat.finish()?;
        Ok(Some((
            out,
            IpcWritten {
                schema: info.schema.clone(),
                partitions,
                rows,
                fetched_bytes: Some(fetched),
                written_bytes,
                copied: true,
            },
        )))
    }
}
