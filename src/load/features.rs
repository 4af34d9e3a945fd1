//! Loading feature vectors straight from Arrow record batches (an Arrow IPC or Parquet
//! file) into a [`FeatureStore`] view (features `parquet` and `ndarray`).
//!
//! No record is built: each batch's float buffer is handed to
//! [`FeatureStore::write_many`] as one slice (a list column of `Float32`/`Float64`/
//! `Float16` values is contiguous in Arrow), so the only copy is the one into the
//! commands sent. Batches are read and decoded on a second thread while the previous
//! one is written.

use std::sync::mpsc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema};

use crate::array::ArrayRef as RawRef;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::exec::SyncConnection;
use crate::store::feature::{FeatureStore, View};

/// Where the vectors are in a record batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorColumns {
    /// One column of lists of floats: `FixedSizeList<Float32|Float64|Float16>` (its size
    /// is the dimension) or `List`/`LargeList` of floats (every row as long as the
    /// view's dimension).
    List(String),
    /// One numeric column per component, in order (`f0,f1,...`): any integer or float
    /// type, converted to the view's dtype.
    Columns(Vec<String>),
}

/// A load of feature vectors into a view: an id column and the vectors. Each record
/// batch's float buffer goes to [`FeatureStore::write_many`] as one slice (no record per
/// row), while the next batch is read and decoded on a second thread.
///
/// ```no_run
/// use redstash::direct::DirectConnection;
/// use redstash::load::{FeatureLoad, ParquetSource, VectorColumns};
/// use redstash::{FeatureStore, View};
///
/// let mut source = ParquetSource::open("embeddings.parquet")?;
/// let load = FeatureLoad::new("item_emb", "id", VectorColumns::List("emb".into()));
/// let mut con = DirectConnection::open("redis://127.0.0.1/")?;
/// let store = FeatureStore::new("fs");
/// let view = load.infer_view(source.schema(), None)?;
/// store.register_view(&mut con, &view)?;
/// let report = load.load(std::iter::from_fn(|| source.next_batch().transpose()), &store, &mut con)?;
/// println!("{} vectors written", report.written);
/// # Ok::<(), redstash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureLoad {
    /// The view's name (registered in the store).
    pub view: String,
    /// The column of entity ids (strings or integers; a null id is an error).
    pub id_column: String,
    /// The vectors.
    pub vector: VectorColumns,
}

/// What a [`FeatureLoad`] did: every row read is written, refused, of unknown fate or
/// not sent.
#[derive(Debug, Default)]
pub struct FeatureLoadReport {
    /// Rows read from the batches.
    pub rows: u64,
    /// Vectors the server acknowledged.
    pub written: u64,
    /// Vectors the server refused (an error reply: `OOM`, `WRONGTYPE`...).
    pub refused: u64,
    /// Vectors sent whose reply never came (the connection failed): they may or may
    /// not be stored.
    pub unknown: u64,
    /// Rows read but not sent (after a stop: a bad row, a failure).
    pub not_sent: u64,
    /// Record batches read.
    pub batches: u64,
    /// Seconds the load took.
    pub elapsed_s: f64,
    /// Why the load stopped before the end, if it did.
    pub stopped: Option<String>,
    /// The error that stopped it.
    pub stop_error: Option<Error>,
    /// The first refusals (at most [`MAX_REPORTED_ERRORS`](super::MAX_REPORTED_ERRORS)).
    pub errors: Vec<String>,
}

impl FeatureLoadReport {
    /// Vectors written per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.written as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} rows read, {} vectors written, {} refused, {} unknown, {} not sent in {:.2} s ({:.0}/s)",
            self.rows,
            self.written,
            self.refused,
            self.unknown,
            self.not_sent,
            self.elapsed_s,
            self.rate()
        );
        if let Some(why) = &self.stopped {
            s.push_str(&format!("; stopped: {why}"));
        }
        s
    }
}

/// The dtype of a float Arrow type.
fn float_dtype(t: &DataType) -> Option<DType> {
    match t {
        DataType::Float16 => Some(DType::F16),
        DataType::Float32 => Some(DType::F32),
        DataType::Float64 => Some(DType::F64),
        _ => None,
    }
}

fn column_index(schema: &Schema, name: &str, what: &str) -> Result<usize> {
    schema.index_of(name).map_err(|_| {
        let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::InvalidArgument(format!(
            "no {what} column {name:?} (the columns: {})",
            have.join(", ")
        ))
    })
}

/// The float values of a primitive float array, as bytes.
fn float_bytes(a: &dyn Array) -> Option<&[u8]> {
    Some(match a.data_type() {
        DataType::Float16 => bytemuck::cast_slice(a.as_primitive::<Float16Type>().values()),
        DataType::Float32 => bytemuck::cast_slice(a.as_primitive::<Float32Type>().values()),
        DataType::Float64 => bytemuck::cast_slice(a.as_primitive::<Float64Type>().values()),
        _ => return None,
    })
}

/// Row `i` of a numeric column as `f64` (`None` for a null or a non-numeric type).
fn numeric(a: &dyn Array, i: usize) -> Option<f64> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i) as f64,
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i) as f64,
        DataType::Float16 => a.as_primitive::<Float16Type>().value(i).to_f64(),
        DataType::Float32 => a.as_primitive::<Float32Type>().value(i).into(),
        DataType::Float64 => a.as_primitive::<Float64Type>().value(i),
        _ => return None,
    })
}

/// The ids of a batch: their text, and where each ends.
struct Prepared {
    ids_text: String,
    ids_ends: Vec<usize>,
}

/// The vectors of a batch, contiguous in the view's dtype.
enum Vectors {
    /// The float values of a list column (a zero-copy slice of the batch's buffer).
    Arrow(arrow_array::ArrayRef),
    /// Assembled from numeric columns.
    Owned(Vec<u8>),
}

impl Vectors {
    fn bytes(&self) -> &[u8] {
        match self {
            Vectors::Arrow(a) => float_bytes(a.as_ref()).unwrap_or_default(),
            Vectors::Owned(v) => v,
        }
    }
}

impl FeatureLoad {
    /// A load of `vector` by `id_column` into `view`.
    pub fn new(
        view: impl Into<String>,
        id_column: impl Into<String>,
        vector: VectorColumns,
    ) -> Self {
        FeatureLoad {
            view: view.into(),
            id_column: id_column.into(),
            vector,
        }
    }

    /// The view the columns of `schema` make: its dtype that of the vector column
    /// (`dtype` when given; f32 for numeric columns that are not all floats of one
    /// type), its dimension the `FixedSizeList`'s size or the number of columns. A
    /// variable-length `List` column does not say its dimension:
    /// [`Error::InvalidArgument`] (register the view yourself).
    pub fn infer_view(&self, schema: &Schema, dtype: Option<DType>) -> Result<View> {
        column_index(schema, &self.id_column, "id")?;
        let (found, dim) = match &self.vector {
            VectorColumns::List(name) => {
                let f = schema.field(column_index(schema, name, "vector")?);
                match f.data_type() {
                    DataType::FixedSizeList(item, n) => {
                        let t = float_dtype(item.data_type()).ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "vector column {name:?} holds lists of {}, not of floats",
                                item.data_type()
                            ))
                        })?;
                        (t, usize::try_from(*n).unwrap_or(0))
                    }
                    DataType::List(_) | DataType::LargeList(_) => {
                        return Err(Error::InvalidArgument(format!(
                            "vector column {name:?} is a variable-length list: its dimension is \
                             not in the schema (register the view first, or write a FixedSizeList)"
                        )));
                    }
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "vector column {name:?} is {other}, not a list of floats"
                        )));
                    }
                }
            }
            VectorColumns::Columns(cols) => {
                let mut types = Vec::new();
                for c in cols {
                    let t = schema.field(column_index(schema, c, "vector")?).data_type();
                    if !t.is_numeric() {
                        return Err(Error::InvalidArgument(format!(
                            "vector column {c:?} is {t}, not numeric"
                        )));
                    }
                    types.push(float_dtype(t));
                }
                let t = match types.first() {
                    Some(Some(t)) if types.iter().all(|x| *x == Some(*t)) => *t,
                    _ => DType::F32,
                };
                (t, cols.len())
            }
        };
        if dim == 0 {
            return Err(Error::InvalidArgument(
                "the vectors have no component".into(),
            ));
        }
        Ok(View::new(self.view.clone(), dtype.unwrap_or(found), dim))
    }

    /// Check that `schema` can feed `view` (before anything is sent).
    fn check_schema(&self, schema: &Schema, view: &View) -> Result<()> {
        column_index(schema, &self.id_column, "id")?;
        let id_type = schema
            .field(column_index(schema, &self.id_column, "id")?)
            .data_type();
        if !(id_type.is_integer()
            || matches!(
                id_type,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ))
        {
            return Err(Error::InvalidArgument(format!(
                "id column {:?} is {id_type}: ids must be strings or integers",
                self.id_column
            )));
        }
        match &self.vector {
            VectorColumns::List(name) => {
                let t = schema
                    .field(column_index(schema, name, "vector")?)
                    .data_type();
                let (item, fixed) = match t {
                    DataType::FixedSizeList(item, n) => (item, Some(*n)),
                    DataType::List(item) | DataType::LargeList(item) => (item, None),
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "vector column {name:?} is {other}, not a list of floats"
                        )));
                    }
                };
                let Some(found) = float_dtype(item.data_type()) else {
                    return Err(Error::InvalidArgument(format!(
                        "vector column {name:?} holds lists of {}, not of floats",
                        item.data_type()
                    )));
                };
                if found != view.dtype() {
                    return Err(Error::InvalidArgument(format!(
                        "vector column {name:?} holds {found} values, view {:?} is {} \
                         (vectors are stored bit-exactly, never converted)",
                        view.name(),
                        view.dtype()
                    )));
                }
                if let Some(n) = fixed
                    && usize::try_from(n).ok() != Some(view.dim())
                {
                    return Err(Error::InvalidArgument(format!(
                        "vector column {name:?} holds vectors of {n}, view {:?} has dimension {}",
                        view.name(),
                        view.dim()
                    )));
                }
            }
            VectorColumns::Columns(cols) => {
                if cols.len() != view.dim() {
                    return Err(Error::InvalidArgument(format!(
                        "{} vector columns, view {:?} has dimension {}",
                        cols.len(),
                        view.name(),
                        view.dim()
                    )));
                }
                if !matches!(view.dtype(), DType::F32 | DType::F64) {
                    return Err(Error::InvalidArgument(format!(
                        "numeric columns load into float32 or float64 views, view {:?} is {}",
                        view.name(),
                        view.dtype()
                    )));
                }
                for c in cols {
                    let t = schema.field(column_index(schema, c, "vector")?).data_type();
                    if !t.is_numeric()
                        || matches!(
                            t,
                            DataType::Decimal128(..)
                                | DataType::Decimal256(..)
                                | DataType::Decimal32(..)
                                | DataType::Decimal64(..)
                        )
                    {
                        return Err(Error::InvalidArgument(format!(
                            "vector column {c:?} is {t}, not an integer or float column"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The ids of `batch` (rows `first_row..` of the input, for errors).
    fn ids(&self, batch: &RecordBatch, first_row: u64, out: &mut Prepared) -> Result<()> {
        let col = batch.column(column_index(&batch.schema(), &self.id_column, "id")?);
        out.ids_text.clear();
        out.ids_ends.clear();
        for i in 0..batch.num_rows() {
            match super::source::arrow_value(col.as_ref(), i) {
                super::Value::Text(s) => out.ids_text.push_str(&s),
                super::Value::Int(n) => {
                    use std::fmt::Write;
                    let _ = write!(out.ids_text, "{n}");
                }
                super::Value::Json(serde_json::Value::Number(n)) => {
                    use std::fmt::Write;
                    let _ = write!(out.ids_text, "{n}");
                }
                super::Value::Null => {
                    return Err(Error::InvalidArgument(format!(
                        "row {}: the id ({:?}) is null",
                        first_row + i as u64 + 1,
                        self.id_column
                    )));
                }
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "row {}: the id ({:?}) is {other:?}, not a string or integer",
                        first_row + i as u64 + 1,
                        self.id_column
                    )));
                }
            }
            out.ids_ends.push(out.ids_text.len());
        }
        Ok(())
    }

    /// The vectors of `batch` as `rows * dim` contiguous values of the view's dtype:
    /// borrowed from the batch for a list column, assembled for numeric columns.
    fn vectors(&self, batch: &RecordBatch, view: &View, first_row: u64) -> Result<Vectors> {
        let n = batch.num_rows();
        let dim = view.dim();
        let row = |i: usize| first_row + i as u64 + 1;
        let schema = batch.schema();
        match &self.vector {
            VectorColumns::List(name) => {
                let col = batch.column(column_index(&schema, name, "vector")?);
                if let Some(i) = (0..n).find(|&i| col.is_null(i)) {
                    return Err(Error::InvalidArgument(format!(
                        "row {}: the vector ({name:?}) is null",
                        row(i)
                    )));
                }
                let values = match col.data_type() {
                    DataType::FixedSizeList(..) => {
                        let l = col.as_fixed_size_list();
                        l.values().slice(l.value_offset_at(0), n * dim)
                    }
                    DataType::List(_) => {
                        let l = col.as_list::<i32>();
                        let off = l.value_offsets();
                        check_lengths(
                            off.windows(2).map(|w| (w[1] - w[0]) as i64),
                            dim,
                            name,
                            first_row,
                        )?;
                        l.values().slice(off[0] as usize, n * dim)
                    }
                    DataType::LargeList(_) => {
                        let l = col.as_list::<i64>();
                        let off = l.value_offsets();
                        check_lengths(off.windows(2).map(|w| w[1] - w[0]), dim, name, first_row)?;
                        l.values().slice(off[0] as usize, n * dim)
                    }
                    other => {
                        return Err(Error::InvalidArgument(format!(
                            "vector column {name:?} is {other}, not a list of floats"
                        )));
                    }
                };
                if values.null_count() > 0
                    && let Some(k) = (0..values.len()).find(|&k| values.is_null(k))
                {
                    return Err(Error::InvalidArgument(format!(
                        "row {}: component {} of the vector ({name:?}) is null",
                        row(k / dim),
                        k % dim
                    )));
                }
                if float_bytes(values.as_ref()).is_none() {
                    return Err(Error::InvalidArgument(format!(
                        "vector column {name:?} holds {}, not floats",
                        values.data_type()
                    )));
                }
                Ok(Vectors::Arrow(values))
            }
            VectorColumns::Columns(cols) => {
                let arrays = cols
                    .iter()
                    .map(|c| Ok(batch.column(column_index(&schema, c, "vector")?).as_ref()))
                    .collect::<Result<Vec<&dyn Array>>>()?;
                let size = view.dtype().size();
                let mut buf = Vec::with_capacity(n * dim * size);
                for i in 0..n {
                    for (j, a) in arrays.iter().enumerate() {
                        let v = numeric(*a, i).ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "row {}: vector column {:?} is null",
                                row(i),
                                cols[j]
                            ))
                        })?;
                        match view.dtype() {
                            DType::F64 => buf.extend_from_slice(&v.to_ne_bytes()),
                            _ => buf.extend_from_slice(&(v as f32).to_ne_bytes()),
                        }
                    }
                }
                Ok(Vectors::Owned(buf))
            }
        }
    }

    /// Write the vectors of `batches` to the view (registered in `store`), one
    /// `write_many` per batch while the next batch is read on another thread. Returns
    /// the report; a bad row (a null or wrong-length vector, a null id) stops the load
    /// before its batch is sent, the report saying which row. Errors before anything is
    /// sent (an unknown view, columns that do not fit it) are `Err`.
    pub fn load<I, C>(
        &self,
        batches: I,
        store: &FeatureStore,
        con: &mut C,
    ) -> Result<FeatureLoadReport>
    where
        I: IntoIterator<Item = Result<RecordBatch>>,
        I::IntoIter: Send,
        C: SyncConnection,
    {
        let start = Instant::now();
        let view = store
            .load_views(con)?
            .into_iter()
            .find(|v| v.name() == self.view)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("no view {:?} is registered", self.view))
            })?;
        let mut report = FeatureLoadReport::default();
        let batches = batches.into_iter();
        let (tx, rx) = mpsc::sync_channel::<Result<RecordBatch>>(2);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            let stop = &stop;
            s.spawn(move || {
                for b in batches {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let failed = b.is_err();
                    if tx.send(b).is_err() || failed {
                        break;
                    }
                }
            });
            let r = self.write_batches(&rx, &view, store, con, &mut report);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            // Let the reader see the stop (it may be blocked on a full channel).
            drop(rx);
            r
        });
        report.elapsed_s = start.elapsed().as_secs_f64();
        result.map(|()| report)
    }

    fn write_batches<C: SyncConnection>(
        &self,
        rx: &mpsc::Receiver<Result<RecordBatch>>,
        view: &View,
        store: &FeatureStore,
        con: &mut C,
        report: &mut FeatureLoadReport,
    ) -> Result<()> {
        let mut checked = false;
        let mut prepared = Prepared {
            ids_text: String::new(),
            ids_ends: Vec::new(),
        };
        for batch in rx.iter() {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    report.stopped = Some(format!("the source failed: {e}"));
                    report.stop_error = Some(e);
                    return Ok(());
                }
            };
            if !checked {
                self.check_schema(&batch.schema(), view)?;
                checked = true;
            }
            let n = batch.num_rows();
            if n == 0 {
                continue;
            }
            let first_row = report.rows;
            report.rows += n as u64;
            report.batches += 1;
            let vectors = self
                .ids(&batch, first_row, &mut prepared)
                .and_then(|()| self.vectors(&batch, view, first_row));
            let vectors = match vectors {
                Ok(d) => d,
                Err(e) => {
                    report.not_sent += n as u64;
                    report.stopped = Some(e.to_string());
                    report.stop_error = Some(e);
                    return Ok(());
                }
            };
            let shape = [n, view.dim()];
            let array = RawRef::new(view.dtype(), &shape, crate::Order::C, vectors.bytes())?;
            let ids: Vec<&str> = ids_of(&prepared);
            match store.write_many(con, &self.view, &ids, &array) {
                Ok(k) => report.written += k as u64,
                Err(Error::PartialWrite {
                    written,
                    refused,
                    unknown,
                    not_sent,
                    source,
                }) => {
                    report.written += written.len() as u64;
                    report.refused += refused.len() as u64;
                    report.unknown += unknown.len() as u64;
                    report.not_sent += not_sent.len() as u64;
                    if report.errors.len() < super::MAX_REPORTED_ERRORS {
                        for &i in refused.iter().take(super::MAX_REPORTED_ERRORS) {
                            report.errors.push(format!(
                                "row {} (id {:?}): refused: {source}",
                                first_row + i as u64 + 1,
                                ids.get(i).copied().unwrap_or_default()
                            ));
                        }
                    }
                    if !unknown.is_empty()
                        || !not_sent.is_empty()
                        || matches!(
                            *source,
                            Error::Redis {
                                kind: crate::error::RedisErrorKind::OutOfMemory,
                                ..
                            }
                        )
                    {
                        report.stopped = Some(format!("the write failed: {source}"));
                        report.stop_error = Some(*source);
                        return Ok(());
                    }
                }
                Err(e) => {
                    report.not_sent += n as u64;
                    report.stopped = Some(format!("the write failed: {e}"));
                    report.stop_error = Some(e);
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn ids_of(p: &Prepared) -> Vec<&str> {
    let mut start = 0;
    p.ids_ends
        .iter()
        .map(|&end| {
            let s = &p.ids_text[start..end];
            start = end;
            s
        })
        .collect()
}

/// Every list of a variable-length list column is `dim` long.
fn check_lengths(
    lens: impl Iterator<Item = i64>,
    dim: usize,
    name: &str,
    first_row: u64,
) -> Result<()> {
    for (i, len) in lens.enumerate() {
        if usize::try_from(len).ok() != Some(dim) {
            return Err(Error::InvalidArgument(format!(
                "row {}: the vector ({name:?}) has {len} components, the view's dimension is {dim}",
                first_row + i as u64 + 1
            )));
        }
    }
    Ok(())
}
