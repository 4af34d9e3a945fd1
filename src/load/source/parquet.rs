//! Parquet files as a source of records (feature `parquet`), read one row group at a
//! time (memory bounded by one row group's pages and one batch of rows).
//!
//! Column values are those of the Arrow source (see [`ArrowSource`](super::ArrowSource)):
//! the `parquet` crate reads each row group into Arrow record batches. A load resumes at
//! a row group and a row in it (row counts are in the file's metadata, so the row groups
//! before are not read), and a sharded load ([`Shard`]) takes every N-th row group
//! ([`Source::take_shard`]).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use ::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use arrow_array::RecordBatch;

use super::arrow::{BatchRows, check_schema, field_names};
use super::{Read, ResumePoint, Source};
use crate::error::{Error, Result};
use crate::load::batch::Shard;
use crate::load::record::Record;

/// Rows per decoded batch by default.
pub const DEFAULT_PARQUET_BATCH_ROWS: usize = 8_192;

/// Records of a Parquet file, one per row, read one row group at a time; column values
/// as [`ArrowSource`](super::ArrowSource) gives them. A resume goes straight to its row
/// group (by the metadata's row counts); a shard takes every N-th row group.
///
/// ```no_run
/// use redstash::load::{ParquetSource, Read, Record, Source};
/// let mut src = ParquetSource::open("items.parquet")?;
/// println!("{} row groups", src.row_groups());
/// let mut r = Record::default();
/// while src.next_record(&mut r)? == Read::Record {
///     println!("{}", r.to_json());
/// }
/// # Ok::<(), redstash::Error>(())
/// ```
pub struct ParquetSource {
    file: File,
    name: String,
    size: u64,
    meta: ArrowReaderMetadata,
    names: Vec<Arc<str>>,
    batch_rows: usize,
    /// The row groups this source reads, in order (all, or a shard's).
    groups: Vec<usize>,
    /// The index in `groups` of the next row group to open.
    next_group: usize,
    reader: Option<ParquetRecordBatchReader>,
    current: Option<BatchRows>,
    /// Rows read (the ordinal, among this source's row groups, of the next one).
    records: u64,
    /// Rows to skip before the next one is read (a resume, applied lazily so that a
    /// shard taken afterwards still counts).
    skip: u64,
    /// Compressed bytes of the row groups opened.
    bytes: u64,
}

impl std::fmt::Debug for ParquetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSource")
            .field("file", &self.name)
            .field("row_groups", &self.groups.len())
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

fn parquet_error(file: &str, e: impl std::fmt::Display) -> Error {
    Error::corrupt("parquet", format!("{file}: {e}"))
}

/// Run `f`, a panic of the Parquet reader (on a hostile file) becoming an error.
fn guarded<T>(file: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(parquet_error(
                file,
                format!("the Parquet reader panicked: {what}"),
            ))
        }
    }
}

impl ParquetSource {
    /// Open a Parquet file (its footer is read and checked; no row is read yet).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| Error::Io(std::io::Error::new(e.kind(), format!("{name}: {e}"))))?;
        let size = file.metadata()?.len();
        let meta = guarded(&name, || {
            ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
                .map_err(|e| parquet_error(&name, e))
        })?;
        check_schema(meta.schema()).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{name}: {m}")),
            e => e,
        })?;
        let groups = (0..meta.metadata().num_row_groups()).collect();
        Ok(ParquetSource {
            names: field_names(meta.schema()),
            file,
            name,
            size,
            meta,
            batch_rows: DEFAULT_PARQUET_BATCH_ROWS,
            groups,
            next_group: 0,
            reader: None,
            current: None,
            records: 0,
            skip: 0,
            bytes: 0,
        })
    }

    /// Rows per decoded batch (at least 1): the memory a row group's reading holds at
    /// once, besides its pages.
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// The file's row groups.
    pub fn row_groups(&self) -> usize {
        self.meta.metadata().num_row_groups()
    }

    /// The rows of this source's row groups (all, or its shard's), from the metadata.
    pub fn num_rows(&self) -> u64 {
        self.groups.iter().map(|&g| self.group_rows(g)).sum()
    }

    /// The Arrow schema the rows are read as.
    pub fn schema(&self) -> &arrow_schema::SchemaRef {
        self.meta.schema()
    }

    fn group_rows(&self, g: usize) -> u64 {
        u64::try_from(self.meta.metadata().row_group(g).num_rows()).unwrap_or(0)
    }

    /// Open the next row group with a reader (skipping `self.skip` rows: whole row groups
    /// by their metadata, then rows of the one the skip ends in); false after the last.
    fn open_group(&mut self) -> Result<bool> {
        loop {
            let Some(&g) = self.groups.get(self.next_group) else {
                return Ok(false);
            };
            self.next_group += 1;
            let rows = self.group_rows(g);
            let rg = self.meta.metadata().row_group(g);
            self.bytes += u64::try_from(rg.compressed_size()).unwrap_or(0);
            if self.skip >= rows {
                self.skip -= rows;
                self.records += rows;
                continue;
            }
            let offset = usize::try_from(self.skip).unwrap_or(usize::MAX);
            self.records += self.skip;
            self.skip = 0;
            let file = self.file.try_clone()?;
            let meta = self.meta.clone();
            let batch_rows = self.batch_rows;
            let reader = guarded(&self.name, || {
                ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
                    .with_row_groups(vec![g])
                    .with_batch_size(batch_rows)
                    .with_offset(offset)
                    .build()
                    .map_err(|e| parquet_error(&self.name, e))
            })?;
            self.reader = Some(reader);
            return Ok(true);
        }
    }

    /// The next decoded batch of the open row group reader.
    fn read_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.reader.is_none() && !self.open_group()? {
                return Ok(None);
            }
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            let name = &self.name;
            let next = guarded(name, || {
                reader
                    .next()
                    .transpose()
                    .map_err(|e| parquet_error(name, e))
            })?;
            match next {
                Some(b) if b.num_rows() > 0 => {
                    if b.schema().fields() != self.meta.schema().fields() {
                        return Err(parquet_error(
                            &self.name,
                            "a row group's columns differ from the file's schema",
                        ));
                    }
                    return Ok(Some(b));
                }
                Some(_) => {}
                None => self.reader = None,
            }
        }
    }

    /// The next batch of rows (the rest of the current batch if
    /// [`next_record`](Source::next_record) took some of it): the columnar path, for
    /// readers that do not want one [`Record`] per row (a feature load).
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(cur) = self.current.take()
            && cur.row < cur.batch.num_rows()
        {
            let rest = cur.batch.slice(cur.row, cur.batch.num_rows() - cur.row);
            self.records += rest.num_rows() as u64;
            return Ok(Some(rest));
        }
        let b = self.read_batch()?;
        if let Some(b) = &b {
            self.records += b.num_rows() as u64;
        }
        Ok(b)
    }
}

impl Source for ParquetSource {
    fn next_record(&mut self, record: &mut Record) -> Result<Read> {
        loop {
            if BatchRows::next_row(&mut self.current, &self.names, &mut self.records, record) {
                return Ok(Read::Record);
            }
            match self.read_batch()? {
                Some(b) => self.current = Some(BatchRows::new(b)),
                None => return Ok(Read::End),
            }
        }
    }

    fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            records: self.records + self.skip,
            line: 0,
            offset: None,
        }
    }

    /// Moves to the row group the point falls in and the row in it, by the row counts
    /// of the metadata: nothing before it is read.
    fn resume_at(&mut self, point: &ResumePoint) -> Result<()> {
        let here = self.records + self.skip;
        if point.records < here {
            return Err(Error::InvalidArgument(format!(
                "cannot resume {} at record {}: it is already at {here}",
                self.name, point.records
            )));
        }
        if point.records > self.num_rows() {
            return Err(Error::InvalidArgument(format!(
                "the source ends before the checkpoint's record {}",
                point.records
            )));
        }
        self.skip += point.records - here;
        Ok(())
    }

    fn bytes_read(&self) -> (u64, Option<u64>) {
        (self.bytes, Some(self.size))
    }

    fn identity(&self) -> String {
        format!("parquet {} ({} bytes)", self.name, self.size)
    }

    /// Takes every `count`-th row group from the `index`-th (before any row is read).
    fn take_shard(&mut self, shard: Shard) -> bool {
        if self.next_group > 0 || self.records > 0 {
            return false;
        }
        self.groups = (0..self.row_groups())
            .filter(|&g| shard.takes(g as u64))
            .collect();
        true
    }
}
