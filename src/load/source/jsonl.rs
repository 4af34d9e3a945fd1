//! JSON Lines: one JSON object per line (blank lines are skipped), fields in the order
//! the line gives them.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::sync::Arc;

use serde::de::{Deserializer, MapAccess, Visitor};

use super::{Input, Read, ResumePoint, Source};
use crate::error::Result;
use crate::load::record::{Position, Record, Value};

/// Longest line read (a longer one is a malformed record, not an allocation).
pub const MAX_LINE_BYTES: usize = 256 << 20;

/// Records of a JSON Lines input.
///
/// ```
/// use redstash::load::{Input, JsonLinesSource, Read, Record, Source, Value};
/// let input = Input::from_reader(&b"{\"id\": 1, \"tags\": [\"a\"]}\n\nnot json\n"[..], "example");
/// let mut src = JsonLinesSource::new(input);
/// let mut r = Record::default();
/// assert_eq!(src.next_record(&mut r)?, Read::Record);
/// assert_eq!(r.get("id"), Some(&Value::Int(1)));
/// assert!(matches!(src.next_record(&mut r)?, Read::Malformed { position, .. } if position.line == 3));
/// # Ok::<(), redstash::Error>(())
/// ```
pub struct JsonLinesSource {
    reader: BufReader<Input>,
    line: Vec<u8>,
    records: u64,
    /// Lines consumed.
    lines: u64,
    offset: u64,
    seekable: bool,
    names: HashMap<String, Arc<str>>,
}

impl JsonLinesSource {
    /// Read `input` as JSON Lines.
    pub fn new(input: Input) -> Self {
        let seekable = input.is_seekable();
        JsonLinesSource {
            reader: BufReader::with_capacity(1 << 16, input),
            line: Vec::new(),
            records: 0,
            lines: 0,
            offset: 0,
            seekable,
            names: HashMap::new(),
        }
    }

    fn name(&mut self, n: String) -> Arc<str> {
        if let Some(a) = self.names.get(&n) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(n.as_str());
        if self.names.len() < 10_000 {
            self.names.insert(n, a.clone());
        }
        a
    }

    /// Read one line into `self.line` (without its end); false at the end.
    fn read_line(&mut self) -> Result<bool> {
        self.line.clear();
        let n = std::io::Read::take(&mut self.reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Ok(false);
        }
        self.offset += n as u64;
        self.lines += 1;
        if self.line.len() > MAX_LINE_BYTES {
            // Drop the rest of the overlong line.
            if self.line.last() != Some(&b'\n') {
                loop {
                    let buf = self.reader.fill_buf()?;
                    if buf.is_empty() {
                        break;
                    }
                    match buf.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            self.reader.consume(i + 1);
                            self.offset += i as u64 + 1;
                            break;
                        }
                        None => {
                            let k = buf.len();
                            self.reader.consume(k);
                            self.offset += k as u64;
                        }
                    }
                }
            }
            self.line.clear();
            self.line.extend_from_slice(b"\x00overlong");
            return Ok(true);
        }
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(true)
    }
}

/// A JSON object's members in their order.
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8).min(64));
                while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn value_of(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Json(serde_json::Value::Number(n)),
        },
        serde_json::Value::String(s) => Value::Text(s),
        other => Value::Json(other),
    }
}

impl Source for JsonLinesSource {
    fn next_record(&mut self, record: &mut Record) -> Result<Read> {
        loop {
            if !self.read_line()? {
                return Ok(Read::End);
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let position = Position {
            record: self.records,
            line: self.lines,
        };
        self.records += 1;
        if self.line.first() == Some(&0) {
            return Ok(Read::Malformed {
                position,
                reason: format!("line longer than {MAX_LINE_BYTES} bytes"),
            });
        }
        let parsed: Ordered = match serde_json::from_slice(&self.line) {
            Ok(o) => o,
            Err(e) => {
                return Ok(Read::Malformed {
                    position,
                    reason: format!("not a JSON object: {e}"),
                });
            }
        };
        record.position = position;
        record.fields.clear();
        for (k, v) in parsed.0 {
            let name = self.name(k);
            record.fields.push((name, value_of(v)));
        }
        Ok(Read::Record)
    }

    fn resume_point(&self) -> ResumePoint {
        ResumePoint {
            records: self.records,
            line: self.lines + 1,
            offset: self.seekable.then_some(self.offset),
        }
    }

    fn resume_at(&mut self, point: &ResumePoint) -> Result<()> {
        match point.offset {
            Some(offset) if self.seekable => {
                self.reader.seek(SeekFrom::Start(offset))?;
                self.offset = offset;
                self.records = point.records;
                self.lines = point.line.saturating_sub(1);
                Ok(())
            }
            _ => super::skip_to(self, point),
        }
    }

    fn bytes_read(&self) -> (u64, Option<u64>) {
        self.reader.get_ref().bytes_read()
    }

    fn identity(&self) -> String {
        format!("jsonl {}", self.reader.get_ref().identity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_types_and_resume() {
        let text = "{\"b\": 1, \"a\": \"x\", \"f\": 1.5, \"n\": null, \"o\": {\"k\": [1]}}\r\n\n[1]\n{\"id\": 9}\n";
        let mut src = JsonLinesSource::new(Input::from_reader(text.as_bytes(), "t"));
        let mut r = Record::default();
        assert_eq!(src.next_record(&mut r).unwrap(), Read::Record);
        let names: Vec<&str> = r.fields.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["b", "a", "f", "n", "o"]);
        assert_eq!(
            r.to_json(),
            r#"{"b":1,"a":"x","f":1.5,"n":null,"o":{"k":[1]}}"#
        );
        assert!(
            matches!(src.next_record(&mut r).unwrap(), Read::Malformed { position, .. } if position.line == 3)
        );
        let point = src.resume_point();
        assert_eq!(src.next_record(&mut r).unwrap(), Read::Record);
        assert_eq!(r.position, Position { record: 2, line: 4 });
        let mut again = JsonLinesSource::new(Input::from_reader(text.as_bytes(), "t"));
        again.resume_at(&point).unwrap();
        assert_eq!(again.next_record(&mut r).unwrap(), Read::Record);
        assert_eq!(r.get("id"), Some(&Value::Int(9)));
    }
}
