//! A record of a source: named field values and where in the source it came from.

use std::sync::Arc;

/// A field's value, as a source gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (SQL `NULL`, JSON `null`, an Arrow null). A key template or a score
    /// that needs it is a record error, never the text `None` or `null` in a key.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string from a typed source (JSON Lines, Arrow, PostgreSQL text columns): written
    /// to JSON as a string, whatever it holds.
    Text(String),
    /// A field of an untyped source (a CSV cell): written to JSON as a number when it is
    /// one by JSON's grammar (its text kept exactly, so no precision is lost), else as a
    /// string.
    Untyped(String),
    /// Bytes that need not be UTF-8 (an Arrow/SQL binary column): stored as they are; in
    /// a JSON value, as a string when they are UTF-8, else as an array of byte values.
    Bytes(Vec<u8>),
    /// A nested JSON value (an object or array of a JSON Lines record, an Arrow list),
    /// written to JSON as it is; as hash field or raw value, its JSON text.
    Json(serde_json::Value),
}

impl Value {
    /// The value's bytes as a Redis argument (a key part, a hash field value, a raw
    /// value): text as it is, numbers in their shortest exact decimal form, booleans as
    /// `true`/`false`, nested JSON as its JSON text. `None` for [`Value::Null`].
    pub fn write_arg(&self, out: &mut Vec<u8>) -> Option<()> {
        match self {
            Value::Null => return None,
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => {
                let mut buf = itoa_buf();
                out.extend_from_slice(fmt_i64(*i, &mut buf));
            }
            Value::Float(f) => out.extend_from_slice(format_float(*f).as_bytes()),
            Value::Text(s) | Value::Untyped(s) => out.extend_from_slice(s.as_bytes()),
            Value::Bytes(b) => out.extend_from_slice(b),
            Value::Json(j) => {
                // Writing JSON to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, j);
            }
        }
        Some(())
    }

    /// The value as a number (a sorted-set score, a TTL): integers and floats, and text
    /// that parses as a finite decimal number. `None` otherwise (null, booleans, text
    /// that is not a number, NaN and infinities).
    pub fn as_f64(&self) -> Option<f64> {
        let f = match self {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            Value::Text(s) | Value::Untyped(s) => s.trim().parse::<f64>().ok()?,
            Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse::<f64>().ok()?,
            Value::Json(serde_json::Value::Number(n)) => n.as_f64()?,
            _ => return None,
        };
        f.is_finite().then_some(f)
    }

    /// Whether the value is missing for a key: null, or empty text.
    pub fn is_blank(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(s) | Value::Untyped(s) => s.is_empty(),
            Value::Bytes(b) => b.is_empty(),
            _ => false,
        }
    }
}

/// A finite float in the shortest form that reads back to the same value (`1.5`, `3`,
/// `1e-7`); NaN and infinities as `NaN`, `inf`, `-inf` (what Redis itself writes).
pub(crate) fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == f.trunc() && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    format!("{f}")
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// The decimal digits of `i` in `buf` (20 bytes hold every i64).
fn fmt_i64(i: i64, buf: &mut [u8; 20]) -> &[u8] {
    let neg = i < 0;
    let mut v = i.unsigned_abs();
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        pos -= 1;
        buf[pos] = b'-';
    }
    &buf[pos..]
}

/// Where a record came from in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The record's ordinal in the source, from 0 (data rows; a CSV header is not one).
    pub record: u64,
    /// The 1-based line the record starts on (CSV, JSON Lines), else 0.
    pub line: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}", self.line)
        } else {
            write!(f, "row {}", self.record + 1)
        }
    }
}

/// One record: field names and values in source order, and its position. Sources fill
/// a record in place ([`Source::next_record`](super::Source::next_record)), reusing its
/// memory from one record to the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Where the record came from.
    pub position: Position,
    /// `(name, value)` pairs in source order.
    pub fields: Vec<(Arc<str>, Value)>,
}

impl Record {
    /// A record of `fields` at `position`.
    ///
    /// ```
    /// use redstash::load::{Position, Record, Value};
    /// let r = Record::new(Position::default(), [("id", Value::Int(7))]);
    /// assert_eq!(r.get("id"), Some(&Value::Int(7)));
    /// ```
    pub fn new<N: Into<Arc<str>>>(
        position: Position,
        fields: impl IntoIterator<Item = (N, Value)>,
    ) -> Self {
        Record {
            position,
            fields: fields.into_iter().map(|(n, v)| (n.into(), v)).collect(),
        }
    }

    /// The value of field `name`, if the record has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }

    /// The record as a JSON object (what [`ValueMapping::Json`](super::ValueMapping)
    /// stores, with every field).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        super::json::write_object(&mut out, self.fields.iter().map(|(n, v)| (&**n, v)));
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_and_numbers() {
        let mut out = Vec::new();
        Value::Int(-120).write_arg(&mut out);
        out.push(b' ');
        Value::Float(2.5).write_arg(&mut out);
        out.push(b' ');
        Value::Float(3.0).write_arg(&mut out);
        out.push(b' ');
        Value::Bool(true).write_arg(&mut out);
        assert_eq!(out, b"-120 2.5 3 true");
        assert_eq!(Value::Null.write_arg(&mut out), None);
        assert_eq!(Value::Untyped(" 4.25 ".into()).as_f64(), Some(4.25));
        assert_eq!(Value::Untyped("abc".into()).as_f64(), None);
        assert_eq!(Value::Untyped("NaN".into()).as_f64(), None);
        assert_eq!(Value::Bool(true).as_f64(), None);
        let mut b = [0; 20];
        assert_eq!(fmt_i64(i64::MIN, &mut b), b"-9223372036854775808");
    }
}
