//! What a table is: its manifest ([`TableInfo`], [`PartitionInfo`]), the checksums it
//! records, and the batches a read returns ([`Table`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::TableStore;
use crate::codec::arrow::IpcCompression;
use crate::error::Result;

/// The recorded checksums of a table's batches: partition -> checksum by batch index.
pub(crate) type Checksums = std::sync::Arc<BTreeMap<u32, Vec<u64>>>;

/// The xxh3-64 checksum of a value stored in pieces.
pub(crate) fn checksum<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in pieces {
        h.update(p);
    }
    h.digest()
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
    /// The xxh3-64 checksum of each batch value, by batch index (empty in manifests
    /// written before checksums were recorded: then not verified).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<u64>,
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
    /// The recorded checksums of the batches, by partition (partitions without any
    /// left out).
    pub(crate) fn checksums(&self) -> Checksums {
        Arc::new(
            self.partitions
                .iter()
                .filter(|p| !p.checksums.is_empty())
                .map(|p| (p.id, p.checksums.clone()))
                .collect(),
        )
    }

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

    /// Write the batches to `out` as an Arrow IPC file or stream (what
    /// `pyarrow.ipc.open_file` / `open_stream` read); returns the bytes written.
    pub fn write_ipc<W: std::io::Write>(
        &self,
        out: W,
        format: crate::codec::arrow_file::IpcFormat,
        compression: IpcCompression,
    ) -> Result<u64> {
        crate::codec::arrow_file::write_ipc(
            out,
            &self.schema,
            self.batches.iter().cloned().map(Ok),
            format,
            compression,
            |_, _| {},
        )
    }
}
