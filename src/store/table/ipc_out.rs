//! Reading a table into an Arrow IPC file or stream ([`TableStore::read_ipc`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::read::{Reader, check_fields, check_generation, mget_request, mget_values};
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

/// One fetched request: `(partition, key, value)`s.
type Chunk = Result<Vec<(u32, String, Option<bytes::Bytes>)>>;

/// The hand-over between the fetching threads and the writer.
struct Relay {
    /// Fetched chunks not yet written, by index.
    ready: BTreeMap<usize, Chunk>,
    /// Chunks written so far: fetchers stay within a window ahead of it.
    written: usize,
    /// Set when the writer gives up: fetchers stop.
    stop: bool,
}

fn lock(m: &Mutex<Relay>) -> MutexGuard<'_, Relay> {
    // A fetcher that panicked cannot leave the relay half-updated (one insert).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TableStore {
    /// Read a table (selected partitions and columns, as [`read`](Self::read)) into an
    /// Arrow IPC file or stream written to `out`, in partition/batch order; returns `out`
    /// and what was written, `None` if there is no table.
    ///
    /// When the table has a manifest, its compression is `compression` and no columns
    /// are selected, the stored batch messages are **copied as they are** into the
    /// output ([`IpcConcat`]: no decompression, no recompression), fetched over all the
    /// connections with a bounded window of requests ahead of the writer, so memory
    /// stays at a few requests of [`pipeline_bytes`](Self::pipeline_bytes) whatever the
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
        let Some(first) = cons.first_mut() else {
            return Err(Error::InvalidArgument(
                "read_ipc needs at least one connection".into(),
            ));
        };
        let info = self.info(first, table)?;
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
    }

    fn copy_ipc<W: Write, Con: SyncConnection + Send>(
        &self,
        cons: &mut [Con],
        info: &TableInfo,
        options: &ReadOptions,
        out: W,
        format: IpcFormat,
    ) -> Result<Option<(W, IpcWritten)>> {
        let reader = Reader {
            prefix: info.prefix.clone(),
            options: options.clone(),
            limits: self.limits,
            budget: self.pipeline_bytes,
            mget_keys: self.mget_keys,
        };
        let available: BTreeMap<u32, u32> =
            info.partitions.iter().map(|p| (p.id, p.batches)).collect();
        let parts = reader.select_or_all(&available, options.partitions.as_deref())?;
        let keys: Vec<(u32, u32)> = parts
            .iter()
            .flat_map(|&p| (0..available.get(&p).copied().unwrap_or(0)).map(move |b| (p, b)))
            .collect();
        let avg = (info.bytes / info.batches().max(1)).max(1) as usize;
        let per_request = (self.pipeline_bytes / avg).max(1);
        let chunks: Vec<&[(u32, u32)]> = keys.chunks(per_request).collect();
        let window = 2 * cons.len();
        let relay = Mutex::new(Relay {
            ready: BTreeMap::new(),
            written: 0,
            stop: false,
        });
        let moved = Condvar::new();
        let next = AtomicUsize::new(0);
        let prefix = info.prefix.as_str();
        let mget_keys = self.mget_keys;
        let mut concat = IpcConcat::new(out, &info.schema, format)?;
        let mut per_part: BTreeMap<u32, usize> = parts.iter().map(|&p| (p, 0)).collect();
        let mut rows = 0u64;
        let mut fetched = 0u64;
        let mut missing = Vec::new();
        let written: Result<()> = std::thread::scope(|scope| {
            for con in cons.iter_mut() {
                let (relay, moved, next, chunks) = (&relay, &moved, &next, &chunks);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(keys) = chunks.get(i) else { return };
                        {
                            let mut r = lock(relay);
                            while !r.stop && i >= r.written + window {
                                r = moved.wait(r).unwrap_or_else(|p| p.into_inner());
                            }
                            if r.stop {
                                return;
                            }
                        }
                        let (req, groups) = mget_request(prefix, keys, mget_keys);
                        let got = crate::exec::run(
                            con,
                            Step::then(req, move |replies| mget_values(prefix, groups, replies)),
                        );
                        lock(relay).ready.insert(i, got);
                        moved.notify_all();
                    }
                });
            }
            let mut write_all = || -> Result<()> {
                for i in 0..chunks.len() {
                    let chunk = {
                        let mut r = lock(&relay);
                        loop {
                            if let Some(c) = r.ready.remove(&i) {
                                r.written = i + 1;
                                break c;
                            }
                            r = moved.wait(r).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    moved.notify_all();
                    for (part, key, value) in chunk? {
                        let Some(bytes) = value else {
                            missing.push(key);
                            continue;
                        };
                        if !missing.is_empty() {
                            // Only finding the other missing batches now.
                            continue;
                        }
                        let bad = |e: Error| match e {
                            Error::InvalidArgument(_) | Error::Io(_) => e,
                            other => Error::BadBatch {
                                key: key.clone(),
                                source: Box::new(other),
                            },
                        };
                        let a = concat.append(&bytes, &self.limits).map_err(bad)?;
                        check_generation(prefix, &key, &a.schema, info.generation)?;
                        check_fields(&key, &info.schema, &a.schema)?;
                        rows += a.rows;
                        fetched += bytes.len() as u64;
                        *per_part.entry(part).or_default() += a.batches as usize;
                    }
                }
                Ok(())
            };
            let r = write_all();
            lock(&relay).stop = true;
            moved.notify_all();
            r
        });
        written?;
        if !missing.is_empty() {
            return Err(Error::MissingBatches {
                table: info.prefix.clone(),
                missing,
            });
        }
        let (out, written_bytes) = concat.finish()?;
        let partitions = parts
            .iter()
            .map(|p| (*p, per_part.get(p).copied().unwrap_or(0)))
            .collect();
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
