//! Sources of records: any iterator, CSV, JSON Lines (and, with features, Arrow IPC,
//! Parquet and PostgreSQL), read as a stream: memory stays bounded whatever the input.

#[cfg(feature = "parquet")]
mod arrow;
mod csv;
mod input;
mod iter;
mod jsonl;
#[cfg(feature = "parquet")]
mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::path::Path;

#[cfg(all(feature = "parquet", feature = "ndarray"))]
pub(crate) use self::arrow::value_at as arrow_value;
pub use self::csv::{CsvOptions, CsvSource, DEFAULT_MAX_RECORD_BYTES};
pub use self::input::Input;
pub use self::iter::IterSource;
pub use self::jsonl::JsonLinesSource;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresOptions, PostgresSource};
#[cfg(feature = "parquet")]
pub use self::{
    arrow::ArrowSource,
    parquet::{DEFAULT_PARQUET_BATCH_ROWS, ParquetSource},
};

use super::batch::Shard;
use super::record::{Position, Record};
use crate::error::{Error, Result};

/// What [`Source::next_record`] read.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The record was filled.
    Record,
    /// The next record could not be read (a malformed CSV row, a line that is not a
    /// JSON object): it is reported with its position and the load goes on or stops as
    /// its `on_error` option says.
    Malformed {
        /// Where.
        position: Position,
        /// Why.
        reason: String,
    },
    /// No more records.
    End,
}

/// Where to resume a source: the number of records read before it, and where possible
/// a byte offset to seek to instead of reading them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ResumePoint {
    /// Records read (the ordinal of the next one).
    pub records: u64,
    /// The line the next record starts on (text sources), else 0.
    pub line: u64,
    /// The byte offset of the next record in an uncompressed file, when the source can
    /// seek to it.
    pub offset: Option<u64>,
}

/// A source of records, read one at a time into a reused [`Record`].
///
/// Implement it for a source of your own, or wrap any iterator with [`IterSource`].
pub trait Source {
    /// Read the next record into `record` (reusing its memory). An `Err` is a failure
    /// of the source itself (I/O): the load stops.
    fn next_record(&mut self, record: &mut Record) -> Result<Read>;

    /// Where the source is: the point after the last record read.
    fn resume_point(&self) -> ResumePoint;

    /// Continue from `point` (a [`resume_point`](Self::resume_point) of an earlier run
    /// over the same input). The default reads and drops records until there.
    fn resume_at(&mut self, point: &ResumePoint) -> Result<()> {
        skip_to(self, point)
    }

    /// Bytes of the input consumed so far and the total, when known (for progress).
    fn bytes_read(&self) -> (u64, Option<u64>) {
        (0, None)
    }

    /// Take only `shard`'s part of the input itself (a Parquet source: every N-th row
    /// group), before any record is read. `false` (the default) when the source does
    /// not: the loader then takes every N-th batch of records it reads.
    fn take_shard(&mut self, shard: Shard) -> bool {
        let _ = shard;
        false
    }

    /// A description of the input that a checkpoint records, so that resuming on a
    /// different input is refused (a path and size, a query).
    fn identity(&self) -> String;
}

/// Read and drop records until `source` is at `point` (how a source that cannot seek
/// resumes); an error when the input ends first.
pub fn skip_to<S: Source + ?Sized>(source: &mut S, point: &ResumePoint) -> Result<()> {
    let mut r = Record::default();
    while source.resume_point().records < point.records {
        if source.next_record(&mut r)? == Read::End {
            return Err(Error::InvalidArgument(format!(
                "the input ends before the checkpoint's record {}",
                point.records
            )));
        }
    }
    Ok(())
}

/// The formats a path can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values (or another delimiter).
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// Arrow IPC file or stream (feature `parquet`).
    Arrow,
    /// Parquet (feature `parquet`).
    Parquet,
}

impl Format {
    /// The format a file name says (`.csv`, `.tsv`, `.jsonl`, `.ndjson`, `.json`,
    /// `.arrow`, `.ipc`, `.feather`, `.arrows`, `.parquet`, each optionally followed by
    /// `.gz` or `.zst`).
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(&name);
        let ext = name.rsplit('.').next()?;
        Some(match ext {
            "csv" | "tsv" | "txt" => Format::Csv,
            "jsonl" | "ndjson" | "json" => Format::JsonLines,
            "arrow" | "ipc" | "feather" | "arrows" => Format::Arrow,
            "parquet" | "pq" => Format::Parquet,
            _ => return None,
        })
    }

    /// The format named `name` (`csv`, `jsonl`, `arrow`, `parquet`).
    pub fn parse(name: &str) -> Result<Format> {
        Ok(match name {
            "csv" | "tsv" => Format::Csv,
            "jsonl" | "ndjson" | "json" => Format::JsonLines,
            "arrow" | "ipc" => Format::Arrow,
            "parquet" => Format::Parquet,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown format {other:?} (csv, jsonl, arrow, parquet)"
                )));
            }
        })
    }
}
