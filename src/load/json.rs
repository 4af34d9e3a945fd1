//! A record as a JSON object: real JSON (strings escaped, numbers as numbers), never a
//! language's debug representation of its values.

use super::record::{Value, format_float};

/// Write `{"name": value, ...}` for `fields` to `out`.
pub(crate) fn write_object<'v>(
    out: &mut Vec<u8>,
    fields: impl Iterator<Item = (&'v str, &'v Value)>,
) {
    out.push(b'{');
    let mut first = true;
    for (name, value) in fields {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, name);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// One value as JSON.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(_) => {
            value.write_arg(out);
        }
        // JSON has no NaN or infinity: they are written as null.
        Value::Float(f) if !f.is_finite() => out.extend_from_slice(b"null"),
        Value::Float(f) => out.extend_from_slice(format_float(*f).as_bytes()),
        Value::Text(s) => write_str(out, s),
        Value::Untyped(s) if is_json_number(s.as_bytes()) => out.extend_from_slice(s.as_bytes()),
        Value::Untyped(s) => write_str(out, s),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => write_str(out, s),
            Err(_) => {
                // Writing JSON to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, b);
            }
        },
        Value::Json(j) => {
            let _ = serde_json::to_writer(&mut *out, j);
        }
    }
}

/// A JSON string literal.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing JSON to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Whether `s` is a number by JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
/// (So `007`, `+1`, `1.`, `.5`, ` 1`, `NaN` and `inf` are not: they stay strings.)
pub(crate) fn is_json_number(s: &[u8]) -> bool {
    let mut i = 0;
    let n = s.len();
    if i < n && s[i] == b'-' {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while i < n && s[i].is_ascii_digit() {
                i += 1;
            }
        }
        _ => return false,
    }
    if i < n && s[i] == b'.' {
        i += 1;
        let start = i;
        while i < n && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if i < n && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        if i < n && (s[i] == b'+' || s[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < n && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers() {
        for yes in [
            "0",
            "-0",
            "12",
            "1.5",
            "-3.25e-7",
            "1E10",
            "123456789012345678901234567890",
        ] {
            assert!(is_json_number(yes.as_bytes()), "{yes}");
        }
        for no in [
            "", "-", "007", "+1", "1.", ".5", " 1", "1 ", "NaN", "inf", "1e", "0x10", "1_000",
        ] {
            assert!(!is_json_number(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn objects_are_real_json() {
        let fields = [
            ("id", Value::Untyped("42".into())),
            ("zip", Value::Untyped("007".into())),
            ("name", Value::Untyped("O'Brien \"Bob\"\n".into())),
            ("score", Value::Float(1.5)),
            ("n", Value::Null),
            ("ok", Value::Bool(false)),
            ("t", Value::Text("42".into())),
            ("bin", Value::Bytes(vec![0xff, 0])),
        ];
        let mut out = Vec::new();
        write_object(&mut out, fields.iter().map(|(n, v)| (*n, v)));
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"id": 42, "zip": "007", "name": "O'Brien \"Bob\"\n", "score": 1.5,
                "n": null, "ok": false, "t": "42", "bin": [255, 0]})
        );
    }
}
