//! What a caller asks of a table: how a split partitions the batches
//! ([`Partitioning`]), what a read returns ([`ReadOptions`]), what a split takes
//! ([`BatchSource`]).

use arrow_array::RecordBatch;

#[cfg(doc)]
use super::TableStore;

/// How [`TableStore::split`] assigns batches to partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Partitioning {
    /// Batch `i` of the input goes to partition `i % n` (`n >= 1`).
    RoundRobin(u32),
    /// Batch `i` of the input goes to partition `i / n` (`n >= 1`): consecutive runs of
    /// `n` batches per partition. This is ArrowRedis's `split --batches n`, for files
    /// written partition after partition.
    Blocks(u32),
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
    pub fn with_partitions(mut self, parts: impl IntoIterator<Item = u32>) -> Self {
        self.partitions = Some(parts.into_iter().collect());
        self
    }

    /// Only these columns.
    pub fn with_columns<S: Into<String>>(mut self, cols: impl IntoIterator<Item = S>) -> Self {
        self.columns = Some(cols.into_iter().map(Into::into).collect());
        self
    }
}

/// Input of [`TableStore::split`]: any `Send` iterator of record batches.
pub trait BatchSource: Iterator<Item = RecordBatch> + Send {}
impl<T: Iterator<Item = RecordBatch> + Send> BatchSource for T {}
