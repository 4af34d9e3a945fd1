//! The formats a key is written in: JSON Lines (every Redis type, binary-safe) and RESP
//! (commands that rebuild the key in another Redis, for `redis-cli --pipe`).

use super::value::{KeyRecord, RedisValue};

/// Elements per command when a collection is written as RESP (a huge hash becomes several
/// `HSET`s, so no command is unbounded).
pub const RESP_ELEMENTS_PER_COMMAND: usize = 1_000;

/// A string or bytes as JSON: the string when it is UTF-8, else `{"base64": "..."}`.
fn bytes_json(out: &mut Vec<u8>, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => {
            // Writing JSON to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Err(_) => {
            use base64::Engine as _;
            out.extend_from_slice(b"{\"base64\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            );
            out.extend_from_slice(b"\"}");
        }
    }
}

/// A score as JSON: a number, or the string `inf` / `-inf`.
fn score_json(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &f);
    } else if f > 0.0 {
        out.extend_from_slice(b"\"inf\"");
    } else {
        out.extend_from_slice(b"\"-inf\"");
    }
}

fn pairs_json(out: &mut Vec<u8>, pairs: &[(Vec<u8>, Vec<u8>)]) {
    out.push(b'[');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        bytes_json(out, k);
        out.push(b',');
        bytes_json(out, v);
        out.push(b']');
    }
    out.push(b']');
}

/// One key as a JSON Lines object (no newline):
/// `{"key": K, "type": T, "ttl": EXPIRE_AT_MS|null, "value": V}`. Strings and bytes are
/// JSON strings when UTF-8, else `{"base64": "..."}`; `ttl` is the expiry as Unix time in
/// milliseconds; `value` is a string for a string, `[[field, value], ...]` for a hash (in
/// Redis's order), an array for a list or set, `[[member, score], ...]` in score order for
/// a sorted set (scores `inf`/`-inf` as strings), `[{"id", "fields": [[f, v], ...]}, ...]`
/// for a stream.
pub fn json_line(rec: &KeyRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"key\":");
    bytes_json(out, &rec.key);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(rec.value.type_name().as_bytes());
    out.extend_from_slice(b"\",\"ttl\":");
    match rec.expire_at_ms {
        Some(ms) => out.extend_from_slice(ms.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"value\":");
    match &rec.value {
        RedisValue::String(s) => bytes_json(out, s),
        RedisValue::Hash(h) => pairs_json(out, h),
        RedisValue::List(items) | RedisValue::Set(items) => {
            out.push(b'[');
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                bytes_json(out, e);
            }
            out.push(b']');
        }
        RedisValue::ZSet(z) => {
            out.push(b'[');
            for (i, (m, s)) in z.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                bytes_json(out, m);
                out.push(b',');
                score_json(out, *s);
                out.push(b']');
            }
            out.push(b']');
        }
        RedisValue::Stream(entries) => {
            out.push(b'[');
            for (i, e) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"id\":");
                let _ = serde_json::to_writer(&mut *out, &e.id);
                out.extend_from_slice(b",\"fields\":");
                pairs_json(out, &e.fields);
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

fn resp_header(out: &mut Vec<u8>, prefix: u8, n: usize) {
    out.push(prefix);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn resp_arg(out: &mut Vec<u8>, a: &[u8]) {
    resp_header(out, b'$', a.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b"\r\n");
}

fn resp_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    resp_header(out, b'*', args.len());
    for a in args {
        resp_arg(out, a);
    }
}

/// A score as Redis reads it (`inf`, `-inf`, else the shortest exact decimal).
fn score_text(f: f64) -> String {
    if f.is_finite() {
        format!("{f:?}")
    } else if f > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// One key as RESP commands that rebuild it: `DEL key`, then `SET`, `HSET`, `RPUSH`,
/// `SADD`, `ZADD` (at most [`RESP_ELEMENTS_PER_COMMAND`] elements each) or one `XADD`
/// per stream entry (with its ID), then `PEXPIREAT key ms` when it expires. Plain
/// commands (no `RESTORE`): any Redis version or Redis-compatible server replays them.
/// Returns the number of commands. An empty stream (no entry) gives only its `DEL`.
pub fn resp_commands(rec: &KeyRecord, out: &mut Vec<u8>) -> usize {
    let key = rec.key.as_slice();
    resp_command(out, &[b"DEL", key]);
    let mut n = 1;
    let chunked = |out: &mut Vec<u8>, cmd: &[u8], elems: &mut dyn Iterator<Item = Vec<Vec<u8>>>| {
        let mut buf: Vec<Vec<u8>> = Vec::new();
        let mut count = 0;
        let flush = |out: &mut Vec<u8>, buf: &mut Vec<Vec<u8>>| {
            if buf.is_empty() {
                return 0;
            }
            resp_header(out, b'*', 2 + buf.len());
            resp_arg(out, cmd);
            resp_arg(out, key);
            for a in buf.iter() {
                resp_arg(out, a);
            }
            buf.clear();
            1
        };
        let mut commands = 0;
        for group in elems {
            buf.extend(group);
            count += 1;
            if count == RESP_ELEMENTS_PER_COMMAND {
                commands += flush(out, &mut buf);
                count = 0;
            }
        }
        commands + flush(out, &mut buf)
    };
    match &rec.value {
        RedisValue::String(s) => {
            resp_command(out, &[b"SET", key, s]);
            n += 1;
        }
        RedisValue::Hash(h) => {
            n += chunked(
                out,
                b"HSET",
                &mut h.iter().map(|(f, v)| vec![f.clone(), v.clone()]),
            );
        }
        RedisValue::List(l) => {
            n += chunked(out, b"RPUSH", &mut l.iter().map(|e| vec![e.clone()]));
        }
        RedisValue::Set(s) => {
            n += chunked(out, b"SADD", &mut s.iter().map(|e| vec![e.clone()]));
        }
        RedisValue::ZSet(z) => {
            n += chunked(
                out,
                b"ZADD",
                &mut z
                    .iter()
                    .map(|(m, s)| vec![score_text(*s).into_bytes(), m.clone()]),
            );
        }
        RedisValue::Stream(entries) => {
            for e in entries {
                resp_header(out, b'*', 3 + 2 * e.fields.len());
                resp_arg(out, b"XADD");
                resp_arg(out, key);
                resp_arg(out, e.id.as_bytes());
                for (f, v) in &e.fields {
                    resp_arg(out, f);
                    resp_arg(out, v);
                }
                n += 1;
            }
        }
    }
    if let Some(ms) = rec.expire_at_ms {
        resp_command(out, &[b"PEXPIREAT", key, ms.to_string().as_bytes()]);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::StreamEntry;

    #[test]
    fn json_lines_are_binary_safe_json() {
        let rec = KeyRecord {
            key: b"k\xff".to_vec(),
            value: RedisValue::ZSet(vec![(b"a".to_vec(), 1.5), (b"b".to_vec(), f64::INFINITY)]),
            expire_at_ms: Some(1_700_000_000_000),
        };
        let mut out = Vec::new();
        json_line(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"key": {"base64": "a/8="}, "type": "zset", "ttl": 1_700_000_000_000u64,
                "value": [["a", 1.5], ["b", "inf"]]})
        );
        let rec = KeyRecord {
            key: b"s".to_vec(),
            value: RedisValue::Stream(vec![StreamEntry {
                id: "1-1".into(),
                fields: vec![(b"f".to_vec(), b"v".to_vec())],
            }]),
            expire_at_ms: None,
        };
        out.clear();
        json_line(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["value"],
            serde_json::json!([{"id": "1-1", "fields": [["f", "v"]]}])
        );
    }

    #[test]
    fn resp_rebuilds_in_chunks() {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..2_500)
            .map(|i| (format!("f{i}").into_bytes(), b"v".to_vec()))
            .collect();
        let rec = KeyRecord {
            key: b"h".to_vec(),
            value: RedisValue::Hash(fields),
            expire_at_ms: Some(5),
        };
        let mut out = Vec::new();
        // DEL, 3 HSETs (1000 + 1000 + 500 fields), PEXPIREAT.
        assert_eq!(resp_commands(&rec, &mut out), 5);
        assert!(out.starts_with(b"*2\r\n$3\r\nDEL\r\n$1\r\nh\r\n*2002\r\n$4\r\nHSET\r\n"));
    }
}
