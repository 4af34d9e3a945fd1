//! CSV (the `csv` crate): a header row or given field names, any delimiter and quote,
//! gzip/zstd input detected. Cells are [`Value::Untyped`]: JSON values write them as
//! numbers when they are numbers.

use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use super::{Input, Read, ResumePoint, Source};
use crate::error::{Error, Result};
use crate::load::record::{Position, Record, Value};

/// How to read a CSV input.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The field separator (`,`; `\t` for TSV).
    pub delimiter: u8,
    /// The quote character (`"`).
    pub quote: u8,
    /// The field names when the input has no header row; `None`: the first row names
    /// the fields.
    pub fields: Option<Vec<String>>,
    /// The longest record read ([`DEFAULT_MAX_RECORD_BYTES`]): a longer one (an unclosed
    /// quote that would swallow the rest of the file) stops the load with an error
    /// instead of growing one record to the size of the input.
    pub max_record_bytes: u64,
}

/// The longest CSV record read by default: 256 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 256 << 20;

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            fields: None,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// The input, failing a read once more than `limit` bytes were read since the last
/// record ended (`mark`).
struct Bounded {
    inner: Input,
    since_mark: u64,
    limit: u64,
}

impl Bounded {
    fn mark(&mut self) {
        self.since_mark = 0;
    }
}

impl std::io::Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since_mark > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a CSV record longer than {} bytes (an unclosed quote?)",
                    self.limit
                ),
            ));
        }
        let n = self.inner.read(buf)?;
        self.since_mark += n as u64;
        Ok(n)
    }
}

impl Seek for Bounded {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.since_mark = 0;
        self.inner.seek(pos)
    }
}

/// Records of a CSV input.
///
/// ```
/// use redstash::load::{CsvOptions, CsvSource, Input, Read, Record, Source, Value};
/// let input = Input::from_reader(&b"id,name\n1,ada\n"[..], "example");
/// let mut src = CsvSource::new(input, CsvOptions::default())?;
/// let mut r = Record::default();
/// assert_eq!(src.next_record(&mut r)?, Read::Record);
/// assert_eq!(r.get("name"), Some(&Value::Untyped("ada".into())));
/// assert_eq!(r.position.line, 2);
/// assert_eq!(src.next_record(&mut r)?, Read::End);
/// # Ok::<(), redstash::Error>(())
/// ```
pub struct CsvSource {
    reader: csv::Reader<Bounded>,
    names: Vec<Arc<str>>,
    row: csv::ByteRecord,
    records: u64,
    seekable: bool,
    /// Position (byte, line) after the last record read.
    next_byte: u64,
    next_line: u64,
}

impl CsvSource {
    /// Read `input` as CSV.
    pub fn new(input: Input, options: CsvOptions) -> Result<Self> {
        let seekable = input.is_seekable();
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(options.delimiter)
            .quote(options.quote)
            .has_headers(options.fields.is_none())
            .flexible(true)
            .buffer_capacity(1 << 16)
            .from_reader(Bounded {
                inner: input,
                since_mark: 0,
                limit: options.max_record_bytes.max(1 << 16),
            });
        let names: Vec<Arc<str>> = match &options.fields {
            Some(f) => f.iter().map(|n| Arc::from(n.as_str())).collect(),
            None => {
                let h = reader.headers().map_err(csv_error)?;
                h.iter().map(Arc::from).collect()
            }
        };
        if names.is_empty() {
            return Err(Error::InvalidArgument(
                "the CSV input has no header row (give the field names)".into(),
            ));
        }
        let pos = reader.position().clone();
        Ok(CsvSource {
            reader,
            names,
            row: csv::ByteRecord::new(),
            records: 0,
            seekable,
            next_byte: pos.byte(),
            next_line: pos.line(),
        })
    }

    /// The field names.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }
}

fn csv_error(e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::Io(io),
        other => Error::InvalidArgument(format!("CSV: {other:?}")),
    }
}

impl Source for CsvSource {
    fn next_record(&mut self, record: &mut Record) -> Result<Read> {
        self.reader.get_mut().mark();
        let read = self.reader.read_byte_record(&mut self.row);
        let start_line = self
            .row
            .position()
            .map(|p| p.line())
            .unwrap_or(self.next_line);
        let pos = self.reader.position();
        self.next_byte = pos.byte();
        self.next_line = pos.line();
        let position = Position {
            record: self.records,
            line: start_line,
        };
        match read {
            Ok(false) => return Ok(Read::End),
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(csv_error(e));
                }
                self.records += 1;
                return Ok(Read::Malformed {
                    position,
                    reason: format!("malformed CSV: {e}"),
                });
            }
        }
        self.records += 1;
        if self.row.len() != self.names.len() {
            return Ok(Read::Malformed {
                position,
                reason: format!(
                    "{} fields, the header has {}",
                    self.row.len(),
                    self.names.len()
                ),
            });
        }
        record.position = position;
        let reuse = record.fields.len() == self.names.len()
            && record
                .fields
                .iter()
                .zip(&self.names)
                .all(|((a, _), b)| Arc::ptr_eq(a, b));
        if !reuse {
            record.fields.clear();
            for n in &self.names {
                record
                    .fields
                    .push((n.clone(), Value::Untyped(String::new())));
            }
        }
        for ((_, v), cell) in record.fields.iter_mut().zip(self.row.iter()) {
            match std::str::from_utf8(cell) {
                Ok(s) => match v {
                    Value::Untyped(buf) => {
                        buf.clear();
                        buf.push_str(s);
                    }
                    other => *other = Value::Untyped(s.to_owned()),
                },
                Err(_) => *v = Value::Bytes(cell.to_vec()),
            }
        }
        Ok(Read::Record)
    }

    fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            records: self.records,
            line: self.next_line,
            offset: self.seekable.then_some(self.next_byte),
        }
    }

    fn resume_at(&mut self, point: &ResumePoint) -> Result<()> {
        match point.offset {
            Some(offset) if self.seekable => {
                let mut pos = csv::Position::new();
                pos.set_byte(offset).set_line(point.line.max(1));
                self.reader
                    .seek_raw(SeekFrom::Start(offset), pos)
                    .map_err(csv_error)?;
                self.records = point.records;
                self.next_byte = offset;
                self.next_line = point.line;
                Ok(())
            }
            _ => super::skip_to(self, point),
        }
    }

    fn bytes_read(&self) -> (u64, Option<u64>) {
        self.reader.get_ref().inner.bytes_read()
    }

    fn identity(&self) -> String {
        format!("csv {}", self.reader.get_ref().inner.identity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_lines_quotes_and_malformed_rows() {
        let text = "id,name\n1,\"a, \"\"b\"\"\"\n2,\"multi\nline\"\n3\n4,d\n";
        let mut src = CsvSource::new(
            Input::from_reader(text.as_bytes(), "t"),
            CsvOptions::default(),
        )
        .unwrap();
        let mut r = Record::default();
        assert_eq!(src.next_record(&mut r).unwrap(), Read::Record);
        assert_eq!(r.get("name"), Some(&Value::Untyped("a, \"b\"".into())));
        assert_eq!(src.next_record(&mut r).unwrap(), Read::Record);
        assert_eq!(r.position.line, 3);
        assert_eq!(r.get("name"), Some(&Value::Untyped("multi\nline".into())));
        match src.next_record(&mut r).unwrap() {
            Read::Malformed { position, .. } => assert_eq!(position.line, 5),
            other => panic!("{other:?}"),
        }
        assert_eq!(src.next_record(&mut r).unwrap(), Read::Record);
        assert_eq!(r.position, Position { record: 3, line: 6 });
        assert_eq!(src.next_record(&mut r).unwrap(), Read::End);
    }

    #[test]
    fn an_unclosed_quote_is_an_error_not_a_record_the_size_of_the_input() {
        let mut text = b"id,name\n1,\"never closed\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 1 << 20));
        let options = CsvOptions {
            max_record_bytes: 1 << 17,
            ..CsvOptions::default()
        };
        let mut src =
            CsvSource::new(Input::from_reader(std::io::Cursor::new(text), "t"), options).unwrap();
        let mut r = Record::default();
        let e = src.next_record(&mut r).unwrap_err();
        assert!(
            e.to_string().contains("unclosed quote") || format!("{e:?}").contains("unclosed quote"),
            "{e:?}"
        );
    }

    #[test]
    fn resume_by_offset_and_by_skipping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        let text: String = std::iter::once("id\n".to_owned())
            .chain((0..100).map(|i| format!("{i}\n")))
            .collect();
        std::fs::write(&path, &text).unwrap();
        let mut src = CsvSource::new(Input::open(&path).unwrap(), CsvOptions::default()).unwrap();
        let mut r = Record::default();
        for _ in 0..40 {
            src.next_record(&mut r).unwrap();
        }
        let point = src.resume_point();
        assert_eq!(point.records, 40);
        assert!(point.offset.is_some());
        for via_offset in [true, false] {
            let input = if via_offset {
                Input::open(&path).unwrap()
            } else {
                Input::from_reader(std::io::Cursor::new(text.clone().into_bytes()), "t")
            };
            let mut src = CsvSource::new(input, CsvOptions::default()).unwrap();
            src.resume_at(&point).unwrap();
            assert_eq!(src.next_record(&mut r).unwrap(), Read::Record);
            assert_eq!(r.get("id"), Some(&Value::Untyped("40".into())));
            assert_eq!(
                r.position,
                Position {
                    record: 40,
                    line: 42
                }
            );
        }
    }
}
