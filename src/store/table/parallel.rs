//! Parallel reads, planned once for the sync and the async connections: the selected
//! partitions shared out between the connections (one [`Fetch`] each), and the table
//! put back together in partition/batch order from what each fetched.

#[cfg(any(feature = "sync", feature = "tokio"))]
use super::read::Fetch;
use super::read::Reader;
use super::*;

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
        let scan =
            Scan::matching(batch_pattern(&self.prefix(table))).max_keys(max, "table batch keys");
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
