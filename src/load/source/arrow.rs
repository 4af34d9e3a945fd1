//! Arrow IPC files and streams as a source of records (feature `parquet`), and the
//! conversion of Arrow columns to [`Value`]s that the Parquet source shares.
//!
//! The input is read one record batch at a time with the crate's hardened IPC reader
//! ([`IpcInput`]: every length a message declares is checked against the file and
//! [`Limits`], and the `arrow-ipc` decoder runs inside `catch_unwind`), so memory stays
//! bounded by one batch and a corrupt file is an [`Error`], never a panic.
//!
//! Column types and their values: see [`ArrowSource`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::{Read, ResumePoint, Source};
use crate::codec::Limits;
use crate::codec::arrow_file::{EncodedBatch, IpcInput};
use crate::error::{Error, Result};
use crate::load::record::{Position, Record, Value};

/// Records of an Arrow IPC file or stream, one per row, read one record batch at a time
/// with the crate's hardened IPC reader (memory bounded by one batch; a corrupt file is
/// an [`Error`], never a panic). A resume skips whole batches without decoding them.
///
/// # Column types
///
/// | Arrow | [`Value`] |
/// |---|---|
/// | null (any type) | `Null` |
/// | `Boolean` | `Bool` |
/// | `Int8`..`Int64`, `UInt8`..`UInt32`, `UInt64` up to `i64::MAX` | `Int` |
/// | `UInt64` above `i64::MAX` | `Json` (an exact JSON number) |
/// | `Float16`, `Float32` | `Float`: the shortest decimal of the `f32` (`0.1`, not `0.10000000149011612`) |
/// | `Float64` | `Float` |
/// | `Utf8`, `LargeUtf8`, `Utf8View` | `Text` |
/// | `Binary`, `LargeBinary`, `BinaryView`, `FixedSizeBinary` | `Bytes` |
/// | `Decimal32/64/128/256` | `Text`, exact (`"12.340"`) |
/// | `Date32`, `Date64` | `Text`, ISO 8601 (`"2024-03-01"`) |
/// | `Timestamp` | `Text`, ISO 8601 with the unit's fraction digits; with a time zone, the instant in UTC with a `Z` (`"2024-03-01T12:30:00.250Z"`), without one, the wall time as stored |
/// | `Time32`, `Time64` | `Text` (`"12:30:00.250"`) |
/// | `Duration` | `Int`, a count of the type's unit |
/// | `List`, `LargeList`, `FixedSizeList`, `Struct`, `Map` | `Json` (arrays, objects; a map with string keys as an object, else an array of `{"key", "value"}`) |
/// | `Dictionary` | the value it points to |
///
/// Other types (unions, intervals, run-end encoded, list views) are refused when the
/// source is opened, naming the column.
///
/// ```no_run
/// use redstash::load::{ArrowSource, Read, Record, Source};
/// let mut src = ArrowSource::open("events.arrow")?;
/// let mut r = Record::default();
/// while src.next_record(&mut r)? == Read::Record {
///     println!("{}", r.to_json());
/// }
/// # Ok::<(), redstash::Error>(())
/// ```
pub struct ArrowSource {
    input: IpcInput,
    limits: Limits,
    identity: String,
    total: Option<u64>,
    bytes: Arc<AtomicU64>,
    names: Vec<Arc<str>>,
    /// The batch being read, and the rows of it taken so far.
    current: Option<BatchRows>,
    /// Rows read (the ordinal of the next one).
    records: u64,
}

impl std::fmt::Debug for ArrowSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrowSource")
            .field("identity", &self.identity)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl ArrowSource {
    /// Open an Arrow IPC file or stream (told apart by the `ARROW1` magic), with the
    /// default [`Limits`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_limits(path, Limits::default())
    }

    /// Open an Arrow IPC file or stream; a message (a batch) larger than
    /// `limits.max_value_len` is refused.
    pub fn open_with_limits(path: impl AsRef<Path>, limits: Limits) -> Result<Self> {
        let path = path.as_ref();
        let size = std::fs::metadata(path)
            .map_err(|e| {
                Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                ))
            })?
            .len();
        let input =
            IpcInput::open(path, limits).map_err(|e| in_file(e, &path.display().to_string()))?;
        Self::from_ipc(
            input,
            limits,
            format!("arrow {} ({size} bytes)", path.display()),
            Some(size),
        )
    }

    /// Read an Arrow IPC stream from any reader (standard input, a pipe); `identity`
    /// names it in checkpoints.
    pub fn from_stream(
        reader: impl std::io::Read + Send + 'static,
        identity: impl Into<String>,
    ) -> Result<Self> {
        let limits = Limits::default();
        let input = IpcInput::from_stream(reader, limits)?;
        Self::from_ipc(input, limits, identity.into(), None)
    }

    fn from_ipc(
        input: IpcInput,
        limits: Limits,
        identity: String,
        total: Option<u64>,
    ) -> Result<Self> {
        check_schema(input.schema())?;
        let names = field_names(input.schema());
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        let input = input.on_progress(move |_, b| counter.store(b, Ordering::Relaxed));
        Ok(ArrowSource {
            input,
            limits,
            identity,
            total,
            bytes,
            names,
            current: None,
            records: 0,
        })
    }

    /// The schema of the input.
    pub fn schema(&self) -> &arrow_schema::SchemaRef {
        self.input.schema()
    }

    /// The next encoded batch, not decoded.
    fn next_encoded(&mut self) -> Result<Option<EncodedBatch>> {
        self.input.next().transpose()
    }

    /// The next batch of rows, decoded (the rest of the current batch if
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
        loop {
            let Some(enc) = self.next_encoded()? else {
                return Ok(None);
            };
            if enc.num_rows() == 0 {
                continue;
            }
            let batch = decode(&enc, &self.limits)?;
            self.records += batch.num_rows() as u64;
            return Ok(Some(batch));
        }
    }
}

/// An error of the reader, naming the file.
fn in_file(e: Error, file: &str) -> Error {
    match e {
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), format!("{file}: {io}"))),
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{file}: {m}")),
        other => other,
    }
}

/// Decode one batch (the decoder guarded against panics).
fn decode(enc: &EncodedBatch, limits: &Limits) -> Result<RecordBatch> {
    crate::codec::arrow::guarded(|| enc.decode(None, limits))
}

impl Source for ArrowSource {
    fn next_record(&mut self, record: &mut Record) -> Result<Read> {
        loop {
            if BatchRows::next_row(&mut self.current, &self.names, &mut self.records, record) {
                return Ok(Read::Record);
            }
            let Some(enc) = self.next_encoded()? else {
                return Ok(Read::End);
            };
            if enc.num_rows() == 0 {
                continue;
            }
            self.current = Some(BatchRows::new(decode(&enc, &self.limits)?));
        }
    }

    fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            records: self.records,
            line: 0,
            offset: None,
        }
    }

    /// Skips whole batches without decoding them (their row counts are in their
    /// headers), then rows of the batch the point falls in.
    fn resume_at(&mut self, point: &ResumePoint) -> Result<()> {
        while self.records < point.records {
            if let Some(cur) = &mut self.current {
                let left = (cur.batch.num_rows() - cur.row) as u64;
                let take = left.min(point.records - self.records);
                cur.row += take as usize;
                self.records += take;
                if cur.row == cur.batch.num_rows() {
                    self.current = None;
                }
                continue;
            }
            let Some(enc) = self.next_encoded()? else {
                return Err(Error::InvalidArgument(format!(
                    "the source ends before the checkpoint's record {}",
                    point.records
                )));
            };
            let rows = enc.num_rows() as u64;
            if self.records + rows <= point.records {
                self.records += rows;
            } else {
                self.current = Some(BatchRows::new(decode(&enc, &self.limits)?));
            }
        }
        Ok(())
    }

    fn bytes_read(&self) -> (u64, Option<u64>) {
        (self.bytes.load(Ordering::Relaxed), self.total)
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }
}

/// The names of a schema's columns, shared by every record.
pub(super) fn field_names(schema: &Schema) -> Vec<Arc<str>> {
    schema
        .fields()
        .iter()
        .map(|f| Arc::from(f.name().as_str()))
        .collect()
}

/// Refuse a schema with a column of a type records cannot hold.
pub(super) fn check_schema(schema: &Schema) -> Result<()> {
    for f in schema.fields() {
        if let Some(t) = unsupported(f.data_type()) {
            return Err(Error::InvalidArgument(format!(
                "column {:?}: Arrow type {t} is not supported by the loader",
                f.name()
            )));
        }
    }
    Ok(())
}

/// The first type in `t` that records cannot hold.
fn unsupported(t: &DataType) -> Option<&DataType> {
    use DataType as D;
    match t {
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) => unsupported(f.data_type()),
        D::Map(f, _) => unsupported(f.data_type()),
        D::Struct(fs) => fs.iter().find_map(|f| unsupported(f.data_type())),
        D::Dictionary(_, v) => unsupported(v),
        D::Union(..)
        | D::Interval(_)
        | D::RunEndEncoded(..)
        | D::ListView(_)
        | D::LargeListView(_) => Some(t),
        _ => None,
    }
}

/// A decoded batch and the next row to read of it.
pub(super) struct BatchRows {
    pub(super) batch: RecordBatch,
    pub(super) row: usize,
}

impl BatchRows {
    pub(super) fn new(batch: RecordBatch) -> Self {
        BatchRows { batch, row: 0 }
    }

    /// Fill `record` with the next row of `current`, if it has one left (counting it in
    /// `records`, the source's ordinal); `false` when a new batch is needed.
    pub(super) fn next_row(
        current: &mut Option<BatchRows>,
        names: &[Arc<str>],
        records: &mut u64,
        record: &mut Record,
    ) -> bool {
        match current {
            Some(cur) if cur.row < cur.batch.num_rows() => {
                let position = Position {
                    record: *records,
                    line: 0,
                };
                cur.fill(names, position, record);
                *records += 1;
                true
            }
            _ => {
                *current = None;
                false
            }
        }
    }

    /// Fill `record` with row `self.row` and move to the next.
    pub(super) fn fill(&mut self, names: &[Arc<str>], position: Position, record: &mut Record) {
        record.position = position;
        record.fields.clear();
        for (name, col) in names.iter().zip(self.batch.columns()) {
            record.fields.push((name.clone(), value_at(col, self.row)));
        }
        self.row += 1;
    }
}

/// The shortest decimal of an `f32`, as the `f64` it reads as (`0.1f32` is `0.1`).
fn short_f32(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    format!("{x}").parse().unwrap_or(f64::from(x))
}

/// Row `i` of a dictionary array: the index of its value (`None` when null).
fn dict_key(a: &dyn Array, i: usize) -> Option<usize> {
    if a.is_null(i) {
        return None;
    }
    let DataType::Dictionary(k, _) = a.data_type() else {
        return None;
    };
    let key = match k.as_ref() {
        DataType::Int8 => a.as_dictionary::<Int8Type>().keys().value(i) as i64,
        DataType::Int16 => a.as_dictionary::<Int16Type>().keys().value(i) as i64,
        DataType::Int32 => a.as_dictionary::<Int32Type>().keys().value(i) as i64,
        DataType::Int64 => a.as_dictionary::<Int64Type>().keys().value(i),
        DataType::UInt8 => a.as_dictionary::<UInt8Type>().keys().value(i) as i64,
        DataType::UInt16 => a.as_dictionary::<UInt16Type>().keys().value(i) as i64,
        DataType::UInt32 => a.as_dictionary::<UInt32Type>().keys().value(i) as i64,
        DataType::UInt64 => i64::try_from(a.as_dictionary::<UInt64Type>().keys().value(i)).ok()?,
        _ => return None,
    };
    usize::try_from(key).ok()
}

/// The dictionary values of a dictionary array.
fn dict_values(a: &dyn Array) -> Option<&ArrayRef> {
    a.as_any_dictionary_opt().map(|d| d.values())
}

/// Row `i` of `a` as a record value (see the [module docs](self)).
pub(crate) fn value_at(a: &dyn Array, i: usize) -> Value {
    if a.is_null(i) {
        return Value::Null;
    }
    use DataType as D;
    match a.data_type() {
        D::Null => Value::Null,
        D::Boolean => Value::Bool(a.as_boolean().value(i)),
        D::Int8 => Value::Int(a.as_primitive::<Int8Type>().value(i).into()),
        D::Int16 => Value::Int(a.as_primitive::<Int16Type>().value(i).into()),
        D::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(i).into()),
        D::Int64 => Value::Int(a.as_primitive::<Int64Type>().value(i)),
        D::UInt8 => Value::Int(a.as_primitive::<UInt8Type>().value(i).into()),
        D::UInt16 => Value::Int(a.as_primitive::<UInt16Type>().value(i).into()),
        D::UInt32 => Value::Int(a.as_primitive::<UInt32Type>().value(i).into()),
        D::UInt64 => {
            let v = a.as_primitive::<UInt64Type>().value(i);
            match i64::try_from(v) {
                Ok(v) => Value::Int(v),
                Err(_) => Value::Json(serde_json::Value::Number(v.into())),
            }
        }
        D::Float16 => Value::Float(short_f32(a.as_primitive::<Float16Type>().value(i).to_f32())),
        D::Float32 => Value::Float(short_f32(a.as_primitive::<Float32Type>().value(i))),
        D::Float64 => Value::Float(a.as_primitive::<Float64Type>().value(i)),
        D::Utf8 => Value::Text(a.as_string::<i32>().value(i).to_owned()),
        D::LargeUtf8 => Value::Text(a.as_string::<i64>().value(i).to_owned()),
        D::Utf8View => Value::Text(a.as_string_view().value(i).to_owned()),
        D::Binary => Value::Bytes(a.as_binary::<i32>().value(i).to_vec()),
        D::LargeBinary => Value::Bytes(a.as_binary::<i64>().value(i).to_vec()),
        D::BinaryView => Value::Bytes(a.as_binary_view().value(i).to_vec()),
        D::FixedSizeBinary(_) => Value::Bytes(a.as_fixed_size_binary().value(i).to_vec()),
        D::Duration(unit) => Value::Int(duration(a, *unit, i)),
        D::Dictionary(..) => match (dict_key(a, i), dict_values(a)) {
            (Some(k), Some(v)) if k < v.len() => value_at(v.as_ref(), k),
            _ => Value::Null,
        },
        D::List(_) | D::LargeList(_) | D::FixedSizeList(..) | D::Struct(_) | D::Map(..) => {
            Value::Json(json_at(a, i))
        }
        _ => match text_at(a, i) {
            Some(s) => Value::Text(s),
            None => Value::Null,
        },
    }
}

fn duration(a: &dyn Array, unit: TimeUnit, i: usize) -> i64 {
    match unit {
        TimeUnit::Second => a.as_primitive::<DurationSecondType>().value(i),
        TimeUnit::Millisecond => a.as_primitive::<DurationMillisecondType>().value(i),
        TimeUnit::Microsecond => a.as_primitive::<DurationMicrosecondType>().value(i),
        TimeUnit::Nanosecond => a.as_primitive::<DurationNanosecondType>().value(i),
    }
}

/// Decimals, dates, timestamps and times as text (`None` for other types).
fn text_at(a: &dyn Array, i: usize) -> Option<String> {
    use DataType as D;
    Some(match a.data_type() {
        D::Decimal32(..) => a.as_primitive::<Decimal32Type>().value_as_string(i),
        D::Decimal64(..) => a.as_primitive::<Decimal64Type>().value_as_string(i),
        D::Decimal128(..) => a.as_primitive::<Decimal128Type>().value_as_string(i),
        D::Decimal256(..) => a.as_primitive::<Decimal256Type>().value_as_string(i),
        D::Date32 => iso_date(a.as_primitive::<Date32Type>().value(i).into()),
        D::Date64 => {
            let ms = a.as_primitive::<Date64Type>().value(i);
            if ms.rem_euclid(86_400_000) == 0 {
                iso_date(ms.div_euclid(86_400_000))
            } else {
                iso_datetime(ms, 1_000, 3, false)
            }
        }
        D::Timestamp(unit, tz) => {
            let (v, per, digits) = match unit {
                TimeUnit::Second => (a.as_primitive::<TimestampSecondType>().value(i), 1, 0),
                TimeUnit::Millisecond => (
                    a.as_primitive::<TimestampMillisecondType>().value(i),
                    1_000,
                    3,
                ),
                TimeUnit::Microsecond => (
                    a.as_primitive::<TimestampMicrosecondType>().value(i),
                    1_000_000,
                    6,
                ),
                TimeUnit::Nanosecond => (
                    a.as_primitive::<TimestampNanosecondType>().value(i),
                    1_000_000_000,
                    9,
                ),
            };
            iso_datetime(v, per, digits, tz.is_some())
        }
        D::Time32(TimeUnit::Second) => {
            time_of_day(a.as_primitive::<Time32SecondType>().value(i).into(), 1, 0)
        }
        D::Time32(_) => time_of_day(
            a.as_primitive::<Time32MillisecondType>().value(i).into(),
            1_000,
            3,
        ),
        D::Time64(TimeUnit::Microsecond) => time_of_day(
            a.as_primitive::<Time64MicrosecondType>().value(i),
            1_000_000,
            6,
        ),
        D::Time64(_) => time_of_day(
            a.as_primitive::<Time64NanosecondType>().value(i),
            1_000_000_000,
            9,
        ),
        _ => return None,
    })
}

/// The civil date of `days` since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn iso_date(days: i64) -> String {
    let (y, m, d) = civil(days);
    if (0..=9999).contains(&y) {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{y:+05}-{m:02}-{d:02}")
    }
}

/// `HH:MM:SS` and the fraction of `v` (in `1/per` seconds) with `digits` digits.
fn clock(secs_of_day: i64, frac: i64, digits: usize) -> String {
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    if digits == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{frac:0digits$}")
    }
}

fn iso_datetime(v: i64, per: i64, digits: usize, utc: bool) -> String {
    let secs = v.div_euclid(per);
    let frac = v.rem_euclid(per);
    let days = secs.div_euclid(86_400);
    let mut s = iso_date(days);
    s.push('T');
    s.push_str(&clock(secs.rem_euclid(86_400), frac, digits));
    if utc {
        s.push('Z');
    }
    s
}

fn time_of_day(v: i64, per: i64, digits: usize) -> String {
    clock(
        v.div_euclid(per).rem_euclid(86_400),
        v.rem_euclid(per),
        digits,
    )
}

/// A float as JSON (NaN and infinities, which JSON cannot hold, as `null`).
fn json_float(f: f64) -> serde_json::Value {
    serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Row `i` of `a` as JSON (nested values of lists, structs and maps).
pub(super) fn json_at(a: &dyn Array, i: usize) -> serde_json::Value {
    use serde_json::Value as J;
    if a.is_null(i) {
        return J::Null;
    }
    let list = |values: ArrayRef| -> J {
        J::Array(
            (0..values.len())
                .map(|k| json_at(values.as_ref(), k))
                .collect(),
        )
    };
    match a.data_type() {
        DataType::List(_) => list(a.as_list::<i32>().value(i)),
        DataType::LargeList(_) => list(a.as_list::<i64>().value(i)),
        DataType::FixedSizeList(..) => list(a.as_fixed_size_list().value(i)),
        DataType::Struct(fields) => {
            let s = a.as_struct();
            J::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c): (&Arc<Field>, &ArrayRef)| {
                        (f.name().clone(), json_at(c.as_ref(), i))
                    })
                    .collect(),
            )
        }
        DataType::Map(..) => {
            let m = a.as_map();
            let entries = m.value(i);
            let (keys, values) = (entries.column(0), entries.column(1));
            let as_text: Option<Vec<String>> = (0..keys.len())
                .map(|k| match value_at(keys.as_ref(), k) {
                    Value::Text(s) => Some(s),
                    _ => None,
                })
                .collect();
            match as_text {
                Some(names) => J::Object(
                    names
                        .into_iter()
                        .enumerate()
                        .map(|(k, n)| (n, json_at(values.as_ref(), k)))
                        .collect(),
                ),
                None => J::Array(
                    (0..keys.len())
                        .map(|k| {
                            serde_json::json!({
                                "key": json_at(keys.as_ref(), k),
                                "value": json_at(values.as_ref(), k),
                            })
                        })
                        .collect(),
                ),
            }
        }
        _ => match value_at(a, i) {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(b),
            Value::Int(n) => J::Number(n.into()),
            Value::Float(f) => json_float(f),
            Value::Text(s) | Value::Untyped(s) => J::String(s),
            Value::Bytes(b) => match String::from_utf8(b) {
                Ok(s) => J::String(s),
                Err(e) => J::Array(e.into_bytes().into_iter().map(J::from).collect()),
            },
            Value::Json(j) => j,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(19_783), "2024-03-01");
        assert_eq!(iso_date(-1), "1969-12-31");
        assert_eq!(
            iso_datetime(1_709_296_200_250, 1_000, 3, true),
            "2024-03-01T12:30:00.250Z"
        );
        assert_eq!(iso_datetime(-1, 1, 0, false), "1969-12-31T23:59:59");
        assert_eq!(time_of_day(45_000_250_000, 1_000_000, 6), "12:30:00.250000");
        assert_eq!(short_f32(0.1), 0.1);
        assert!(short_f32(f32::NAN).is_nan());
    }
}
